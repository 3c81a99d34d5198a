//! A stall on a lossy QUIC path: a burst of lost packets holds every lane back until the
//! retransmissions arrive, ~200 ms later, and then the held frames come at once. The jitter
//! buffer waits for them (it plays every frame, late, rather than lose them) and its delay
//! grows by the stall; afterwards the target shrinks again, and the playout follows it by
//! dropping frames. A dropped voiced frame is a cut in the middle of a word, which is what
//! PESQ-WB punished on the 2 % bursty path (`ruang-bench playout`): the playout drops silent
//! frames, and voiced ones only when it is far behind.
//!
//! Timing: frame `i` is sent at `T + i × 20 ms` and arrives 30 ms later; the playout pulls
//! every 20 ms, 5 ms after the arrivals.

use std::collections::BTreeSet;

use ruang_audio::FrameDuration;
use ruang_audio::jitter::{Buffer, Config, Playout};
use ruang_audio::wire::{Flags, Frame};

const T: u64 = 1_000_000;
const FRAME_US: u64 = 20_000;
/// Frames of the run: 18 s.
const N: u32 = 900;
/// Frames 100..=110 are held back and arrive with frame 110 (a 220 ms stall).
const STALL: std::ops::RangeInclusive<u32> = 100..=110;
/// The talker pauses for 2 s here (silent frames, still sent).
const PAUSE: std::ops::Range<u32> = 600..700;

fn voiced(seq: u32) -> bool {
    !PAUSE.contains(&seq)
}

fn frame(seq: u32) -> Frame {
    Frame {
        speaker: 1,
        seq,
        timestamp: seq * 960,
        level: 20,
        flags: if voiced(seq) {
            Flags::VOICE
        } else {
            Flags::empty()
        },
        payload: vec![seq as u8],
    }
}

#[test]
fn after_a_stall_the_playout_shrinks_in_a_pause_without_dropping_voiced_frames() {
    let arrival = |i: u32| {
        let sent_as = if STALL.contains(&i) { *STALL.end() } else { i };
        T + u64::from(sent_as) * FRAME_US + 30_000
    };
    let mut buf = Buffer::new(Config::new(FrameDuration::Ms20));
    let mut played = BTreeSet::new();
    // When each frame played, µs after it was sent.
    let mut delay_us = vec![None; N as usize];
    let mut next = 0;
    for j in 0..u64::from(N) + 50 {
        let now = T + j * FRAME_US + 35_000;
        while next < N && arrival(next) <= now {
            buf.push(frame(next), arrival(next));
            next += 1;
        }
        if let Playout::Packet(f) = buf.pull(now) {
            played.insert(f.seq);
            delay_us[f.seq as usize] = Some(now - (T + u64::from(f.seq) * FRAME_US));
        }
    }
    let stats = buf.stats();
    // The stall was waited for: every held frame played, none concealed in its place.
    for seq in STALL {
        assert!(
            played.contains(&seq),
            "frame {seq} of the stall was not played"
        );
    }
    // The delay grew by the stall...
    let after_stall = delay_us[120].expect("frame 120 played");
    assert!(
        after_stall >= 200_000,
        "delay after the stall {after_stall} µs"
    );
    // ...and in the next 4 s of speech no voiced frame was dropped to shrink it.
    let dropped: Vec<u32> = (0..300)
        .filter(|&s| voiced(s) && !played.contains(&s))
        .collect();
    assert!(
        dropped.is_empty(),
        "voiced frames dropped in the 4 s after the stall: {dropped:?} ({stats:?})"
    );
    // The pause took the rest: after it the delay is back near the path's.
    let after_pause = delay_us[PAUSE.end as usize + 10].expect("a frame after the pause played");
    assert!(
        after_pause <= 80_000,
        "delay after the pause {after_pause} µs ({stats:?})"
    );
    assert!(stats.skipped > 0, "{stats:?}");
}
