//! The real-time schedule, without the sleeping.
//!
//! Frame `i` of a paced source or sink is due at `t0 + i × frame`: absolute deadlines, so a
//! late wake-up delays one frame and is made up by the next, and drift never accumulates (a
//! loop that sleeps "one frame" after each frame drifts by its own processing time, every
//! frame). [`Schedule`] only does the arithmetic; the thread that sleeps to it lives where I/O
//! is allowed (`ruang-device`'s `pace` module, or the node).
//!
//! A playout's deadlines keep the phase they started with, which is unrelated to when the
//! speakers' frames arrive: a frame that arrives just after a tick waits almost a whole period
//! for the next one. [`Slip`] moves the deadlines earlier, by dropping part of a silent period,
//! when every frame has been played later than it could have been.
//!
//! Times are `u64` microseconds on a monotonic clock chosen by the caller.

use crate::format::{FrameDuration, SAMPLES_PER_MS};
use crate::jitter::Timing;

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

/// How long every frame played must have had slack before the playout moves earlier, µs.
const SLIP_EVIDENCE_US: u64 = 1_000_000;
/// Frames played in that time, at least.
const SLIP_EVIDENCE_FRAMES: u32 = 25;
/// Evidence older than this, with no frame played since, no longer counts (a speaker who
/// starts after a pause may arrive at another phase), µs.
const SLIP_STALE_US: u64 = 1_000_000;
/// Slack first left after a slip for the path's jitter beyond what the jitter buffer allows
/// for, µs. Before slipping, the playout's phase hid a jitter tail the buffer's target does
/// not cover (on loopback, a frame a few ms late once in a minute); every frame missed after
/// a slip doubles the margin, up to half a period.
const SLIP_MARGIN_US: u64 = 3_000;
/// Smallest slip worth making, µs.
const SLIP_MIN_US: u64 = 1_000;
/// A period whose every sample is below this (−60 dBFS) is silent: dropping its end cannot
/// be heard.
const SILENT_PEAK: f32 = 1e-3;

/// Moves a playout's deadlines earlier when the frames it plays arrive well before their
/// tick: after a second in which every frame played had at least `s` of slack
/// ([`jitter::Timing`](crate::jitter::Timing)), the next silent period plays only its first
/// part (`s` less a margin, in whole milliseconds, at most a period less 1 ms) and the next
/// period starts that much earlier. Nothing audible is dropped, the listener hears everyone
/// sooner, and a concealed frame, a stale observation or a slip starts the evidence afresh.
/// A frame missed after a slip doubles the margin (up to half a period): the path's jitter
/// tail needed it.
/// The output stays one continuous track: it is shorter by what was dropped, and each sample
/// still plays at the time its position says.
#[derive(Clone, Debug)]
pub struct Slip {
    period_samples: usize,
    /// When the current evidence began, its least slack and its frame count.
    since_us: Option<u64>,
    least_us: u64,
    frames: u32,
    last_us: u64,
    slipped_us: u64,
    /// Slack a slip leaves, µs.
    margin_us: u64,
    /// The most `margin_us` grows to.
    most_margin_us: u64,
}

impl Slip {
    /// A slip for a playout of `period`, with no evidence yet.
    pub fn new(period: FrameDuration) -> Slip {
        Slip {
            period_samples: period.samples(),
            since_us: None,
            least_us: 0,
            frames: 0,
            last_us: 0,
            slipped_us: 0,
            margin_us: SLIP_MARGIN_US,
            most_margin_us: (period.as_micros() / 2).max(SLIP_MARGIN_US),
        }
    }

    /// Takes the timing of one speaker's frames in the period starting at `now_us`.
    pub fn observe(&mut self, now_us: u64, timing: Timing) {
        if timing.missed {
            self.since_us = None;
            if self.slipped_us > 0 {
                self.margin_us = (self.margin_us * 2).min(self.most_margin_us);
            }
            return;
        }
        let Some(slack) = timing.slack_us else {
            return;
        };
        match self.since_us {
            Some(_) if now_us.saturating_sub(self.last_us) <= SLIP_STALE_US => {
                self.least_us = self.least_us.min(slack);
                self.frames += 1;
            }
            _ => {
                self.since_us = Some(now_us);
                self.least_us = slack;
                self.frames = 1;
            }
        }
        self.last_us = now_us;
    }

    /// How many samples of `pcm`, the mix of the period starting at `now_us`, to play: all
    /// of them, or fewer when the playout slips earlier now (the next period is then due
    /// earlier by what was left out, [`samples_to_micros`](crate::format::samples_to_micros) of the difference).
    pub fn keep(&mut self, now_us: u64, pcm: &[f32]) -> usize {
        let n = pcm.len();
        let Some(since) = self.since_us else {
            return n;
        };
        let ready = now_us.saturating_sub(since) >= SLIP_EVIDENCE_US
            && self.frames >= SLIP_EVIDENCE_FRAMES
            && now_us.saturating_sub(self.last_us) <= SLIP_STALE_US;
        let per_ms = SAMPLES_PER_MS as usize;
        let most_ms = (n.min(self.period_samples) / per_ms).saturating_sub(1) as u64;
        let cut_ms = (self.least_us.saturating_sub(self.margin_us) / 1_000).min(most_ms);
        if !ready || cut_ms * 1_000 < SLIP_MIN_US || !is_silent(pcm) {
            return n;
        }
        self.since_us = None;
        self.slipped_us += cut_ms * 1_000;
        n - cut_ms as usize * per_ms
    }

    /// How far the playout has moved earlier in all, µs.
    pub fn slipped_us(&self) -> u64 {
        self.slipped_us
    }

    /// The slack the next slip leaves, µs.
    pub fn margin_us(&self) -> u64 {
        self.margin_us
    }
}

fn is_silent(pcm: &[f32]) -> bool {
    pcm.iter().all(|s| s.abs() < SILENT_PEAK)
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

    fn slack(us: u64) -> Timing {
        Timing {
            slack_us: Some(us),
            missed: false,
        }
    }

    /// Feeds `frames` 20 ms periods whose frames had `slack_us`, from `t0`; returns the
    /// time after them.
    fn feed(slip: &mut Slip, t0: u64, frames: u64, slack_us: u64) -> u64 {
        for i in 0..frames {
            slip.observe(t0 + i * 20_000, slack(slack_us));
        }
        t0 + frames * 20_000
    }

    #[test]
    fn a_second_of_slack_slips_in_the_next_silent_period() {
        let mut slip = Slip::new(FrameDuration::Ms20);
        let silent = vec![0.0f32; 960];
        let loud = vec![0.3f32; 960];
        // Under a second of evidence: nothing yet.
        let t = feed(&mut slip, 0, 40, 14_300);
        assert_eq!(slip.keep(t, &silent), 960);
        let t = feed(&mut slip, t, 15, 14_300);
        // Speech is never cut.
        assert_eq!(slip.keep(t, &loud), 960);
        // 14.3 ms of slack less the 3 ms margin, in whole ms: 11 ms (528 samples) dropped.
        assert_eq!(slip.keep(t, &silent), 960 - 528);
        assert_eq!(slip.slipped_us(), 11_000);
        assert_eq!(crate::format::samples_to_micros(528), 11_000);
        // The evidence starts again.
        assert_eq!(slip.keep(t + 20_000, &silent), 960);
    }

    #[test]
    fn the_least_slack_of_any_speaker_bounds_the_slip_and_a_miss_resets_it() {
        let mut slip = Slip::new(FrameDuration::Ms20);
        let silent = vec![0.0f32; 960];
        for i in 0..60 {
            let now = i * 20_000;
            slip.observe(now, slack(15_000));
            // A second speaker whose frames come 10 ms later.
            slip.observe(now, slack(5_000));
        }
        assert_eq!(slip.keep(1_200_000, &silent), 960 - 2 * 48);

        let t = feed(&mut slip, 1_220_000, 60, 15_000);
        slip.observe(
            t,
            Timing {
                slack_us: None,
                missed: true,
            },
        );
        assert_eq!(slip.keep(t, &silent), 960, "a concealed frame: no slip");
        // It came after a slip: the next slip leaves twice the margin.
        assert_eq!(slip.margin_us(), 6_000);
        let t = feed(&mut slip, t, 60, 7_000);
        assert_eq!(slip.keep(t, &silent), 960 - 48);
        // Slack no larger than the margin plus a millisecond is left alone.
        let t = feed(&mut slip, t, 60, 6_900);
        assert_eq!(slip.keep(t, &silent), 960);
    }

    #[test]
    fn misses_before_any_slip_leave_the_margin_and_it_grows_to_half_a_period() {
        let mut slip = Slip::new(FrameDuration::Ms20);
        let missed = Timing {
            slack_us: None,
            missed: true,
        };
        slip.observe(0, missed);
        assert_eq!(slip.margin_us(), 3_000, "a lost frame, not a slip's doing");
        let t = feed(&mut slip, 20_000, 60, 6_000);
        assert_eq!(slip.keep(t, &[0.0; 960]), 960 - 3 * 48);
        for i in 0..5 {
            slip.observe(t + i, missed);
        }
        assert_eq!(slip.margin_us(), 10_000);
    }

    #[test]
    fn a_slip_is_at_most_a_period_less_a_millisecond_and_stale_evidence_is_dropped() {
        let mut slip = Slip::new(FrameDuration::Ms10);
        let silent = vec![0.0f32; 480];
        let t = feed(&mut slip, 0, 60, 80_000);
        assert_eq!(slip.keep(t, &silent), 48);
        // Evidence, then over a second with no frame played: a new speaker may arrive at
        // another phase.
        let t = feed(&mut slip, t, 60, 8_000);
        assert_eq!(slip.keep(t + 1_100_000, &silent), 480);
        // A fresh second after the pause counts on its own.
        let t = feed(&mut slip, t + 1_100_000, 60, 6_000);
        assert_eq!(slip.keep(t, &silent), 480 - 3 * 48);
    }
}
