//! WAV files of other rates and channel counts come out as 48 kHz mono with the same pitch,
//! the same length and the same timing.

use std::path::Path;

use ruang_audio::FrameDuration;
use ruang_audio::source::{Source, SourceError, WavSource};

/// Writes `seconds` of a `freq` tone at `rate` with `channels` channels (16-bit), left and
/// right in phase, at amplitude 0.5.
fn write_tone(path: &Path, rate: u32, channels: u16, freq: f64, seconds: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (rate as f64 * seconds) as usize;
    for i in 0..n {
        let s =
            (0.5 * (std::f64::consts::TAU * freq * i as f64 / rate as f64).sin() * 32_767.0) as i16;
        for _ in 0..channels {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

fn read_all(mut src: WavSource) -> Vec<f32> {
    let mut out = Vec::new();
    let mut frame = vec![0.0; src.frame_duration().samples()];
    while src.next_frame(&mut frame).unwrap() {
        out.extend_from_slice(&frame);
    }
    out
}

/// Power of `freq` in `x` at 48 kHz (Goertzel), normalised by the signal's energy.
fn goertzel(x: &[f32], freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let energy: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    power / (energy * x.len() as f64 / 2.0)
}

#[test]
fn a_44k1_stereo_tone_keeps_its_frequency_at_48k_mono() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    write_tone(&path, 44_100, 2, 1_000.0, 2.0);
    let src = WavSource::open(&path, FrameDuration::Ms20).unwrap();
    let info = src.info();
    assert_eq!(
        (info.sample_rate, info.channels, info.frames),
        (44_100, 2, 88_200)
    );
    let out = read_all(src);
    // 2 s at 48 kHz, in whole 20 ms frames.
    assert_eq!(out.len(), 96_000);

    // 1000 rising zero crossings per second, away from the edges.
    let mid = &out[24_000..72_000];
    let crossings = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    assert!(
        (999..=1_001).contains(&crossings),
        "{crossings} crossings in 1 s"
    );
    // Nearly all the energy at 1 kHz, none at its neighbours.
    let at = goertzel(mid, 1_000.0);
    let near = goertzel(mid, 1_100.0).max(goertzel(mid, 900.0));
    assert!(at > 0.98, "energy at 1 kHz: {at}");
    assert!(near < 0.001, "energy next to it: {near}");
    // Both channels were in phase: the mono mix keeps the 0.5 amplitude.
    let peak = mid.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!((peak - 0.5).abs() < 0.01, "peak {peak}");
}

#[test]
fn common_rates_and_channel_counts() {
    let dir = tempfile::tempdir().unwrap();
    for (rate, channels) in [
        (8_000, 1),
        (16_000, 1),
        (22_050, 2),
        (32_000, 1),
        (48_000, 2),
        (96_000, 6),
    ] {
        let path = dir.path().join(format!("t{rate}x{channels}.wav"));
        write_tone(&path, rate, channels, 440.0, 1.0);
        let out = read_all(WavSource::open(&path, FrameDuration::Ms10).unwrap());
        assert_eq!(out.len(), 48_000, "{rate} Hz x {channels}");
        let crossings = out[4_800..43_200]
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!(
            (351..=353).contains(&crossings),
            "{rate} Hz: {crossings} crossings in 0.8 s"
        );
    }
}

#[test]
fn a_short_file_pads_its_last_frame_and_loops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.wav");
    write_tone(&path, 48_000, 1, 500.0, 0.05); // 2.5 frames
    let out = read_all(WavSource::open(&path, FrameDuration::Ms20).unwrap());
    assert_eq!(out.len(), 3 * 960);
    assert!(
        out[2_400..].iter().all(|&x| x == 0.0),
        "padding after the end"
    );

    let mut looping = WavSource::open_looping(&path, FrameDuration::Ms20).unwrap();
    let mut frame = vec![0.0; 960];
    let mut all = Vec::new();
    for _ in 0..100 {
        assert!(looping.next_frame(&mut frame).unwrap());
        all.extend_from_slice(&frame);
    }
    // The 50 ms file repeats seamlessly: sample i equals sample i + 2400.
    for i in 0..10_000 {
        assert!((all[i] - all[i + 2_400]).abs() < 1e-6, "sample {i}");
    }
}

#[test]
fn bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = WavSource::open(dir.path().join("nope.wav"), FrameDuration::Ms20).unwrap_err();
    assert!(matches!(missing, SourceError::Wav { .. }));
    assert!(missing.to_string().contains("nope.wav"));
    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"RIFF\x10\x00\x00\x00WAVEnot really").unwrap();
    assert!(WavSource::open(&garbage, FrameDuration::Ms20).is_err());
}
