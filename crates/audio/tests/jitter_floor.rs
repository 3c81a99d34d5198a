//! The jitter buffer's delay follows the path at 10 ms frames: on a clean path a frame plays at
//! the first pull after it arrives (one frame of target, not the 20 ms floor of before), and as
//! soon as the path jitters the target grows to cover it.
//!
//! Timing: frame `i` is sent at `T + i × 10 ms` and arrives 3 ms later plus the path's jitter;
//! the playout clock pulls at `T + j × 10 ms + 6 ms`.

use ruang_audio::FrameDuration;
use ruang_audio::jitter::{Buffer, Config, Playout, Stats};
use ruang_audio::wire::{Flags, Frame};

const T: u64 = 1_000_000;
const FRAME_US: u64 = 10_000;

/// Frame `seq` of `n` (the last one ends the talk spurt, so nothing is concealed after it).
fn frame(seq: u32, n: u32) -> Frame {
    Frame {
        speaker: 1,
        seq,
        timestamp: seq * 480,
        level: 20,
        flags: if seq + 1 == n {
            Flags::VOICE | Flags::END
        } else {
            Flags::VOICE
        },
        payload: vec![1],
    }
}

/// Plays `n` frames whose one-way jitter is `jitter_us(i)`; returns the stats after frame
/// `checkpoint` and at the end, and the concealments.
fn run(n: u32, jitter_us: impl Fn(u32) -> u64, checkpoint: u32) -> (Stats, Stats, u32) {
    let mut arrivals: Vec<(u64, u32)> = (0..n)
        .map(|i| (T + u64::from(i) * FRAME_US + 3_000 + jitter_us(i), i))
        .collect();
    arrivals.sort();
    let mut buf = Buffer::new(Config::new(FrameDuration::Ms10));
    let mut next = 0;
    let mut concealed = 0;
    let mut at_checkpoint = Stats::default();
    for j in 0..u64::from(n) + 30 {
        let now = T + j * FRAME_US + 6_000;
        while next < arrivals.len() && arrivals[next].0 <= now {
            buf.push(frame(arrivals[next].1, n), arrivals[next].0);
            next += 1;
        }
        if buf.pull(now) == Playout::Conceal {
            concealed += 1;
        }
        if j == u64::from(checkpoint) {
            at_checkpoint = buf.stats();
        }
    }
    (at_checkpoint, buf.stats(), concealed)
}

#[test]
fn a_clean_path_at_10_ms_frames_waits_one_frame_at_most() {
    // Sub-millisecond jitter, as on loopback.
    let (_, stats, concealed) = run(500, |i| u64::from(i * 7919 % 500), 0);
    assert!(stats.target_delay_ms <= 12, "{stats:?}");
    assert!(stats.delay_ms <= 4, "a frame waited {} ms", stats.delay_ms);
    assert_eq!(stats.late, 0, "{stats:?}");
    assert_eq!(concealed, 0, "no concealment on the clean path");
    assert_eq!(stats.played, 500);
}

#[test]
fn the_target_grows_at_once_when_the_path_starts_to_jitter() {
    // Clean for 3 s, then ±8 ms of jitter (0–16 ms on top of the 3 ms).
    let jitter = |i: u32| {
        if i < 300 {
            0
        } else {
            u64::from(i.wrapping_mul(2_654_435_761) % 16_000)
        }
    };
    let (clean, end, _) = run(800, jitter, 299);
    assert!(clean.target_delay_ms <= 12, "before the jitter: {clean:?}");
    assert!(end.target_delay_ms >= 18, "with ±8 ms of jitter: {end:?}");
    // It grew within the first frames late, not after seconds of them.
    assert!(end.late <= 20, "{end:?}");
}
