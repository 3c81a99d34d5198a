//! Loss-adaptive protection: listeners measure the loss their playout saw and report it; the
//! speaker sets its protection from the reports — copies of every frame on a wide path (see
//! `ruang-node`'s capture thread), else the encoder's packet-loss hint (in-band FEC).
//!
//! The hint is what turns Opus's in-band FEC on and sizes it: at hint 0 the encoder spends
//! every bit on the frame itself, above 0 it carries a coarse copy of the previous frame.
//! `ruang-bench codec` (32 kbps, complexity 10, speech, PESQ-WB): hint 0 scores 4.06 on a
//! clean path and 2.47 at 5 % random loss; hint 5 scores 3.91 clean and 3.51 at 5 % loss, 3.69
//! at 2 %; a larger hint buys little more (hint 20: 3.54 at 5 %, 3.20 at 10 %) and costs on
//! clean paths. Hence [`hint_for_loss`]: off on a clean path, at least 5 once loss is seen,
//! following the loss up to 25.
//!
//! - Listener: [`measured_loss`] from two snapshots of a speaker's jitter-buffer counters.
//! - Speaker: [`worst_loss`] over the listeners' reports (their 90th percentile, so one
//!   listener on a bad path — or lying — moves the hint only in rooms of under ten; it takes
//!   more than a tenth of the listeners), and [`LossHint`],
//!   which raises the hint at once and lowers it only after [`LOSS_HINT_HOLD_MS`] of cleaner
//!   reports (a second without a loss at 2 % loss is common: 50 frames, e^-1).

use crate::jitter::Stats;

/// Loss below this, in ‰, counts as a clean path (FEC off).
pub const CLEAN_BELOW_PERMILLE: u16 = 5;

/// Smallest hint once the path loses packets, %.
pub const MIN_LOSSY_HINT_PCT: u8 = 5;

/// Largest hint, %.
pub const MAX_HINT_PCT: u8 = 25;

/// How long reports must stay below the current hint before it is lowered, ms.
pub const LOSS_HINT_HOLD_MS: u64 = 10_000;

/// The packet-loss hint for a measured loss in ‰: 0 on a clean path, else the loss in
/// percent rounded up, within [`MIN_LOSSY_HINT_PCT`]..=[`MAX_HINT_PCT`].
pub fn hint_for_loss(permille: u16) -> u8 {
    if permille < CLEAN_BELOW_PERMILLE {
        return 0;
    }
    let pct = permille.div_ceil(10).min(u16::from(MAX_HINT_PCT)) as u8;
    pct.max(MIN_LOSSY_HINT_PCT)
}

/// Loss a listener's playout saw between two snapshots of one speaker's counters, in ‰ of the
/// frame slots it moved past (late frames count as lost: they were not there in time), or
/// the frames held back for a resend ([`Stats::held_back`]) if more: a buffer that has grown
/// to wait for resends loses no frame, and the path would look clean.
/// While the speaker sends every frame twice ([`Stats::copies_sent`]), in ‰ of the copies:
/// the loss of the path, not the little left after the copies repaired it (or the speaker
/// would stop sending them). `None` when no slot passed (the speaker was silent or the stream
/// restarted).
pub fn measured_loss(before: &Stats, now: &Stats) -> Option<u16> {
    let played = now.played.checked_sub(before.played)?;
    let lost = now.lost.checked_sub(before.lost)?;
    let slots = played + lost;
    if slots == 0 {
        return None;
    }
    let (missing, expected) = if now.copies_sent {
        let one_copy = now.copy_missing.checked_sub(before.copy_missing)?;
        (one_copy + 2 * lost, 2 * slots)
    } else {
        let held_back = now.held_back.checked_sub(before.held_back)?;
        (lost.max(held_back), slots)
    };
    Some(((missing * 1000) / expected).min(1000) as u16)
}

/// The loss to protect against, from every listener's latest report (‰): the 90th percentile
/// by nearest rank (the worst report while there are fewer than ten). `None` without reports.
pub fn worst_loss(reports: &mut [u16]) -> Option<u16> {
    if reports.is_empty() {
        return None;
    }
    reports.sort_unstable();
    let rank = (reports.len() * 9).div_ceil(10).max(1);
    Some(reports[rank - 1])
}

/// The speaker's packet-loss hint over time: up at once, down after a hold — to the most
/// any report asked for during the hold, not to the last report's (at 2 % bursty loss most
/// seconds lose nothing).
#[derive(Clone, Debug, Default)]
pub struct LossHint {
    current: u8,
    /// When a report last asked for the current hint or more, ms.
    held_since_ms: u64,
    /// The most a report asked for since then.
    asked_since: u8,
}

impl LossHint {
    /// A hint of 0 (a clean path until a listener says otherwise).
    pub fn new() -> LossHint {
        LossHint::default()
    }

    /// The hint in force, %.
    pub fn current(&self) -> u8 {
        self.current
    }

    /// Takes the worst reported loss (‰) at `now_ms`; returns the hint to set.
    pub fn update(&mut self, now_ms: u64, worst_permille: u16) -> u8 {
        let target = hint_for_loss(worst_permille);
        let held_long_enough = now_ms.saturating_sub(self.held_since_ms) >= LOSS_HINT_HOLD_MS;
        if target >= self.current {
            self.current = target;
            self.held_since_ms = now_ms;
            self.asked_since = 0;
        } else if held_long_enough {
            // Down to the most asked for during the hold; that level is held again.
            self.current = self.asked_since.max(target);
            self.held_since_ms = now_ms;
            self.asked_since = target;
        } else {
            self.asked_since = self.asked_since.max(target);
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(played: u64, lost: u64) -> Stats {
        Stats {
            played,
            lost,
            ..Stats::default()
        }
    }

    #[test]
    fn hint_is_off_on_a_clean_path_and_follows_loss() {
        assert_eq!(hint_for_loss(0), 0);
        assert_eq!(hint_for_loss(4), 0);
        assert_eq!(hint_for_loss(5), 5);
        assert_eq!(hint_for_loss(20), 5);
        assert_eq!(hint_for_loss(51), 6);
        assert_eq!(hint_for_loss(100), 10);
        assert_eq!(hint_for_loss(1000), 25);
    }

    #[test]
    fn measured_loss_counts_slots_without_their_frame() {
        assert_eq!(measured_loss(&stats(0, 0), &stats(95, 5)), Some(50));
        assert_eq!(measured_loss(&stats(95, 5), &stats(95, 5)), None);
        // Counters that went backwards (a restarted stream) measure nothing.
        assert_eq!(measured_loss(&stats(95, 5), &stats(10, 0)), None);
    }

    #[test]
    fn frames_held_back_for_a_resend_count_when_more_than_the_lost() {
        let held = |played, lost, held_back| Stats {
            held_back,
            ..stats(played, lost)
        };
        // 100 slots, none lost, 6 frames held back for their resend.
        assert_eq!(measured_loss(&held(0, 0, 0), &held(100, 0, 6)), Some(60));
        // A held-back frame that also missed its playout counts once.
        assert_eq!(measured_loss(&held(0, 0, 0), &held(97, 3, 3)), Some(30));
        assert_eq!(measured_loss(&held(0, 0, 0), &held(95, 5, 2)), Some(50));
    }

    #[test]
    fn with_copies_the_loss_of_each_copy_is_measured() {
        let before = Stats {
            copies_sent: true,
            ..stats(0, 0)
        };
        // 100 slots: 90 played from two copies, 9 from one, 1 lost altogether: 11 of 200
        // copies missing.
        let now = Stats {
            copy_missing: 9,
            copies_sent: true,
            ..stats(99, 1)
        };
        assert_eq!(measured_loss(&before, &now), Some(55));
    }

    #[test]
    fn worst_loss_is_the_ninetieth_percentile() {
        assert_eq!(worst_loss(&mut []), None);
        assert_eq!(worst_loss(&mut [0, 300, 0]), Some(300));
        // One bad listener among twenty does not set the hint for the room.
        let mut many = vec![0u16; 19];
        many.push(500);
        assert_eq!(worst_loss(&mut many), Some(0));
        let mut two_bad = vec![0u16; 18];
        two_bad.extend([500, 500]);
        assert_eq!(worst_loss(&mut two_bad), Some(0));
        let mut three_bad = vec![0u16; 17];
        three_bad.extend([500, 500, 500]);
        assert_eq!(worst_loss(&mut three_bad), Some(500));
    }

    #[test]
    fn the_hint_rises_at_once_and_falls_after_the_hold() {
        let mut h = LossHint::new();
        assert_eq!(h.update(0, 0), 0);
        assert_eq!(h.update(1_000, 50), 5);
        // A lossless second at 2 % loss does not turn FEC off.
        assert_eq!(h.update(2_000, 0), 5);
        assert_eq!(h.update(3_000, 20), 5);
        assert_eq!(h.update(12_999, 0), 5);
        assert_eq!(h.update(13_000, 0), 0);
    }

    /// After a bad second asked for 17 %, a path that keeps losing a little comes down to
    /// what it still asks for, not to nothing because the last second was clean.
    #[test]
    fn the_hint_falls_to_the_most_asked_for_during_the_hold() {
        let mut h = LossHint::new();
        assert_eq!(h.update(0, 170), 17);
        assert_eq!(h.update(4_000, 50), 17);
        assert_eq!(h.update(10_000, 0), 5);
        // Ten clean seconds more: off.
        assert_eq!(h.update(15_000, 0), 5);
        assert_eq!(h.update(20_000, 0), 0);
    }

    /// The figure: the hint follows measured loss within 2 s of a change. A listener
    /// measures each second's loss (Bernoulli losses, 50 frames a second) and the speaker
    /// updates on each report; loss starts at 10 s.
    #[test]
    fn the_hint_follows_a_change_in_loss_within_two_seconds() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1000) as u16
        };
        for loss_permille in [20u16, 50, 100] {
            let mut hint = LossHint::new();
            let mut counters = stats(0, 0);
            let mut first_protected = None;
            for second in 1..=30u64 {
                let before = counters;
                for _ in 0..50 {
                    let lossy = second > 10 && rand() < loss_permille;
                    if lossy {
                        counters.lost += 1;
                    } else {
                        counters.played += 1;
                    }
                }
                let measured = measured_loss(&before, &counters).unwrap();
                let h = hint.update(second * 1000, measured);
                if second <= 10 {
                    assert_eq!(h, 0, "clean path, second {second}");
                } else if h > 0 && first_protected.is_none() {
                    first_protected = Some(second);
                }
            }
            let at = first_protected.expect("the hint never rose");
            assert!(at <= 12, "{loss_permille} ‰ protected only at second {at}");
            assert!(hint.current() >= MIN_LOSSY_HINT_PCT);
        }
    }
}
