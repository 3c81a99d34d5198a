//! The real-time schedule, without the sleeping.
//!
//! Frame `i` of a paced source or sink is due at `t0 + i × frame`: absolute deadlines, so a
//! late wake-up delays one frame and is made up by the next, and drift never accumulates (a
//! loop that sleeps "one frame" after each frame drifts by its own processing time, every
//! frame). [`Schedule`] only does the arithmetic; the thread that sleeps to it lives where I/O
//! is allowed (`ruang-device`'s `pace` module, or the node).
//!
//! Times are `u64` microseconds on a monotonic clock chosen by the caller.

use crate::format::FrameDuration;

/// Absolute frame deadlines from a start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    t0_us: u64,
    frame_us: u64,
}

impl Schedule {
    /// Frame 0 due at `t0_us`, then one frame of `frame` after another.
    pub fn new(t0_us: u64, frame: FrameDuration) -> Schedule {
        Schedule {
            t0_us,
            frame_us: frame.as_micros(),
        }
    }

    /// When frame 0 is due (the time the latency benchmark measures from).
    pub fn t0_us(&self) -> u64 {
        self.t0_us
    }

    /// Frame period in µs.
    pub fn frame_us(&self) -> u64 {
        self.frame_us
    }

    /// When frame `i` is due.
    pub fn due(&self, i: u64) -> u64 {
        self.t0_us.saturating_add(i.saturating_mul(self.frame_us))
    }

    /// Index of the latest frame due at or before `now_us` (`None` before `t0`).
    pub fn index_at(&self, now_us: u64) -> Option<u64> {
        now_us.checked_sub(self.t0_us).map(|d| d / self.frame_us)
    }

    /// The first frame due strictly after `now_us`, with its deadline.
    pub fn next_after(&self, now_us: u64) -> (u64, u64) {
        let i = self.index_at(now_us).map_or(0, |i| i + 1);
        (i, self.due(i))
    }

    /// How far `now_us` is behind frame `i`'s deadline (0 when early or on time).
    pub fn lateness(&self, i: u64, now_us: u64) -> u64 {
        now_us.saturating_sub(self.due(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_absolute() {
        let s = Schedule::new(1_000, FrameDuration::Ms20);
        assert_eq!(s.t0_us(), 1_000);
        assert_eq!(s.due(0), 1_000);
        assert_eq!(s.due(50), 1_001_000);
        // A million frames later there is still no drift.
        assert_eq!(s.due(1_000_000), 1_000 + 20_000_000_000);
        assert_eq!(s.index_at(999), None);
        assert_eq!(s.index_at(1_000), Some(0));
        assert_eq!(s.index_at(20_999), Some(0));
        assert_eq!(s.index_at(21_000), Some(1));
        assert_eq!(s.next_after(500), (0, 1_000));
        assert_eq!(s.next_after(1_000), (1, 21_000));
        assert_eq!(s.next_after(25_000), (2, 41_000));
        assert_eq!(s.lateness(1, 25_000), 4_000);
        assert_eq!(s.lateness(2, 25_000), 0);
        assert_eq!(Schedule::new(0, FrameDuration::Ms10).due(3), 30_000);
    }
}
