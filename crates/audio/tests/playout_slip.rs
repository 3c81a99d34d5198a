//! A playout that slips ([`pace::Slip`]) moves its ticks to just after the frames arrive, in
//! the pauses between talk spurts: the listener hears the speaker sooner, every frame is
//! still played as decoded, nothing is concealed, and nothing but silence is left out.
//!
//! Timing: frame `i` is sent at `T + i × frame` and arrives 3 ms later (plus up to 1 ms of
//! jitter); the playout's periods start 1 ms before the earliest arrivals (at `T + 2 ms +
//! period`), so without a slip a frame waits almost a whole period for its tick.

mod support;

use ruang_audio::FrameDuration;
use ruang_audio::codec::EncoderConfig;
use ruang_audio::format::samples_to_micros;
use ruang_audio::jitter::{Config, SpeakerStream};
use ruang_audio::pace::Slip;
use ruang_audio::wire::{Flags, Frame};
use support::encode_frames;

const T: u64 = 1_000_000;
/// Talk spurts of 1.5 s, each followed by 0.3 s of silence.
const SPURTS: u64 = 3;
const SPURT_MS: u64 = 1_500;
const PAUSE_MS: u64 = 300;

/// Whether the sample `ms` milliseconds in is in a talk spurt.
fn talking(ms: u64) -> bool {
    ms % (SPURT_MS + PAUSE_MS) < SPURT_MS
}

/// The frames of the spurts and pauses at `frame`, encoded, with what each decodes to.
fn speech(frame: FrameDuration) -> (Vec<Frame>, Vec<f32>) {
    let samples = SPURTS * (SPURT_MS + PAUSE_MS) * 48;
    let pcm: Vec<f32> = (0..samples)
        .map(|t| {
            if talking(t / 48) {
                0.3 * (t as f32 * 0.05).sin()
            } else {
                0.0
            }
        })
        .collect();
    let config = EncoderConfig {
        frame,
        dtx: false,
        ..EncoderConfig::default()
    };
    encode_frames(config, &pcm, |pcm, last| {
        match (pcm.iter().any(|s| *s != 0.0), last) {
            (_, true) => Flags::END,
            (true, false) => Flags::VOICE,
            (false, false) => Flags::empty(),
        }
    })
}

struct Played {
    track: Vec<f32>,
    decoded: Vec<f32>,
    stream: SpeakerStream,
    slipped_us: u64,
    /// The largest slack of a frame in the last talk spurt, µs.
    last_spurt_slack_us: u64,
}

/// Plays the speech at `frame` in periods of `period`, slipping when `slipping`.
fn play(frame: FrameDuration, period: FrameDuration, slipping: bool) -> Played {
    let (frames, decoded) = speech(frame);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let arrivals: Vec<u64> = (0..frames.len() as u64)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            T + i * frame.as_micros() + 3_000 + seed % 1_001
        })
        .collect();
    let mut stream = SpeakerStream::new(Config::new(frame)).unwrap();
    let mut slip = Slip::new(period);
    let mut out = vec![0.0; period.samples()];
    let mut track = Vec::new();
    let mut next = 0;
    let mut slipped_us = 0;
    let mut last_spurt_slack_us = 0;
    let last_spurt_ms = (SPURTS - 1) * (SPURT_MS + PAUSE_MS);
    let periods = (arrivals[arrivals.len() - 1] - T + 500_000) / period.as_micros();
    for k in 0..periods {
        let now = T + 2_000 + (k + 1) * period.as_micros() - slipped_us;
        while next < frames.len() && arrivals[next] <= now {
            stream.push(frames[next].clone(), arrivals[next]);
            next += 1;
        }
        stream.pull_into(now, &mut out);
        let timing = stream.timing();
        slip.observe(now, timing);
        if now > T + last_spurt_ms * 1_000 + 100_000
            && let Some(slack) = timing.slack_us
        {
            last_spurt_slack_us = last_spurt_slack_us.max(slack);
        }
        let keep = if slipping {
            slip.keep(now, &out)
        } else {
            out.len()
        };
        track.extend_from_slice(&out[..keep]);
        slipped_us += samples_to_micros(out.len() - keep);
    }
    assert_eq!(slipped_us, slip.slipped_us());
    Played {
        track,
        decoded,
        stream,
        slipped_us,
        last_spurt_slack_us,
    }
}

/// The samples that can be heard (at or above −60 dBFS), in order.
fn audible(pcm: &[f32]) -> Vec<f32> {
    pcm.iter().copied().filter(|s| s.abs() >= 1e-3).collect()
}

/// Where the last talk spurt starts in a track, in samples.
fn last_spurt_start(track: &[f32]) -> usize {
    let pause = (PAUSE_MS as usize - 50) * 48;
    let mut quiet = 0;
    let mut start = None;
    for (i, s) in track.iter().enumerate() {
        if s.abs() >= 1e-3 {
            if quiet >= pause {
                start = Some(i);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    start.expect("the track has pauses")
}

fn assert_slips(frame: FrameDuration, period: FrameDuration) -> u64 {
    let fixed = play(frame, period, false);
    let slipped = play(frame, period, true);
    for p in [&fixed, &slipped] {
        let stats = p.stream.stats();
        assert_eq!(
            stats.jitter.played as usize,
            p.decoded.len() / frame.samples()
        );
        assert_eq!(
            stats.jitter.concealed + stats.jitter.stretched + stats.jitter.lost,
            0,
            "{stats:?}"
        );
        assert!(
            audible(&p.track) == audible(&p.decoded),
            "only silence is left out"
        );
    }
    assert_eq!(fixed.slipped_us, 0);
    // Without a slip, a frame waits almost a period (of the shorter of the two) for its
    // tick, less the jitter.
    let shorter_us = frame.as_micros().min(period.as_micros());
    assert!(
        fixed.last_spurt_slack_us >= shorter_us - 4_000,
        "{}",
        fixed.last_spurt_slack_us
    );
    // With it, no more than the 3 ms margin, the whole-millisecond rounding and the jitter.
    assert!(
        slipped.last_spurt_slack_us <= 5_000,
        "{}",
        slipped.last_spurt_slack_us
    );
    // The track is one continuous clock from its first sample: the last spurt starts
    // earlier in it by what was slipped.
    let earlier = last_spurt_start(&fixed.track) - last_spurt_start(&slipped.track);
    assert_eq!(samples_to_micros(earlier), slipped.slipped_us);
    slipped.slipped_us
}

#[test]
fn the_playout_slips_to_the_arrivals_in_a_pause() {
    let slipped = assert_slips(FrameDuration::Ms20, FrameDuration::Ms20);
    assert!(slipped >= 14_000, "{slipped} µs");
}

#[test]
fn ten_ms_frames_and_mixed_lengths_slip_too() {
    for (frame, period) in [
        (FrameDuration::Ms10, FrameDuration::Ms10),
        (FrameDuration::Ms20, FrameDuration::Ms10),
        (FrameDuration::Ms10, FrameDuration::Ms20),
    ] {
        // 7–9 ms of slack less the 3 ms margin.
        let slipped = assert_slips(frame, period);
        assert!(slipped >= 4_000, "{frame:?} in {period:?}: {slipped} µs");
    }
}
