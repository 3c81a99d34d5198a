//! A speaker's frames played in periods of another length: each node picks its own frame
//! length, so a listener at 10 ms plays a speaker at 20 ms (half a frame per period) and one
//! at 20 ms plays a speaker at 10 ms (two frames per period). On a clean path every frame is
//! played as decoded, with nothing concealed, stretched or lost; on a jittery one nothing is
//! concealed or lost either.
//!
//! Timing: frame `i` is sent at `T + i × frame` and arrives 3 ms later (plus the jitter); the
//! playout pulls at `T + k × period + 6 ms`.

mod support;

use ruang_audio::FrameDuration;
use ruang_audio::codec::EncoderConfig;
use ruang_audio::jitter::{Config, SpeakerStream};
use ruang_audio::wire::{Flags, Frame};
use support::{encode_frames, voice};

const T: u64 = 1_000_000;
/// Frames of speech sent.
const FRAMES: u32 = 150;

/// `FRAMES` frames of a synthetic voice at `frame`, encoded, with what each decodes to.
fn speech(frame: FrameDuration) -> (Vec<Frame>, Vec<f32>) {
    let pcm = voice(3, FRAMES as f32 * frame.as_millis() as f32 / 1_000.0, frame);
    let config = EncoderConfig {
        frame,
        ..EncoderConfig::default()
    };
    encode_frames(config, &pcm, |_, last| {
        if last {
            Flags::VOICE | Flags::END
        } else {
            Flags::VOICE
        }
    })
}

/// Plays a speaker at `frame` in periods of `period` over a path that delays each frame by
/// 3 ms plus up to `jitter_us` more (seeded, the same every run); returns what was played and
/// the stream.
fn play(
    frame: FrameDuration,
    period: FrameDuration,
    jitter_us: u64,
) -> (Vec<f32>, Vec<f32>, SpeakerStream) {
    let (frames, decoded) = speech(frame);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let arrivals: Vec<u64> = (0..u64::from(FRAMES))
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            T + i * frame.as_micros() + 3_000 + seed % (jitter_us + 1)
        })
        .collect();
    let mut stream = SpeakerStream::new(Config::new(frame)).unwrap();
    let mut out = vec![0.0; period.samples()];
    let mut played = Vec::new();
    let mut pushed = vec![false; frames.len()];
    // The speech and half a second more.
    let periods = (u64::from(FRAMES) * frame.as_micros() + 500_000) / period.as_micros();
    for k in 0..periods {
        let now = T + k * period.as_micros() + 6_000;
        for (i, f) in frames.iter().enumerate() {
            if !pushed[i] && arrivals[i] <= now {
                stream.push(f.clone(), arrivals[i]);
                pushed[i] = true;
            }
        }
        stream.pull_into(now, &mut out);
        played.extend_from_slice(&out);
    }
    (played, decoded, stream)
}

/// Plays a speaker at `frame` in periods of `period` and asserts every frame is played as
/// decoded, sample for sample, after some silence, with nothing concealed, stretched or
/// failing to decode; returns how many milliseconds of silence came first.
fn assert_plays_clean(frame: FrameDuration, period: FrameDuration) -> usize {
    let (played, decoded, stream) = play(frame, period, 0);
    let lead = (0..=played.len() - decoded.len())
        .find(|&d| played[d..d + decoded.len()] == *decoded)
        .expect("the speech is played as decoded, without a gap or a repeat");
    assert!(played[..lead].iter().all(|&s| s == 0.0), "silence first");
    let stats = stream.stats();
    assert_eq!(stats.jitter.played, u64::from(FRAMES));
    assert_eq!(
        stats.jitter.concealed + stats.jitter.stretched,
        0,
        "{stats:?}"
    );
    assert_eq!(stats.decode_errors, 0);
    lead / 48
}

#[test]
fn a_listener_at_10_ms_plays_half_a_20_ms_frame_per_period() {
    let lead_ms = assert_plays_clean(FrameDuration::Ms20, FrameDuration::Ms10);
    // The first frame arrives 3 ms in and is played at the next pull after it: no more delay
    // than a listener at 20 ms would add.
    assert!(lead_ms <= 20, "{lead_ms} ms before the speech");
}

#[test]
fn a_listener_at_20_ms_plays_two_10_ms_frames_per_period() {
    // A period plays two frames, so the first waits for the second.
    let lead_ms = assert_plays_clean(FrameDuration::Ms10, FrameDuration::Ms20);
    assert!(lead_ms <= 40, "{lead_ms} ms before the speech");
}

#[test]
fn the_same_length_plays_as_pull_does() {
    for frame in [FrameDuration::Ms10, FrameDuration::Ms20] {
        assert_plays_clean(frame, frame);
    }
}

#[test]
fn a_jittery_path_loses_nothing_whatever_the_lengths() {
    // 0–8 ms of jitter: the buffer's target grows to cover it (stretching at the start),
    // and then every frame is played, the last one of each period too.
    for (frame, period) in [
        (FrameDuration::Ms10, FrameDuration::Ms20),
        (FrameDuration::Ms20, FrameDuration::Ms10),
        (FrameDuration::Ms20, FrameDuration::Ms20),
        (FrameDuration::Ms10, FrameDuration::Ms10),
    ] {
        let (_, _, stream) = play(frame, period, 8_000);
        let stats = stream.stats();
        assert_eq!(
            (
                stats.jitter.played,
                stats.jitter.concealed,
                stats.jitter.lost
            ),
            (u64::from(FRAMES), 0, 0),
            "{frame} frames in {period} periods: {stats:?}"
        );
    }
}
