//! Bitrate under congestion: a speaker lowers its Opus bitrate while its path cannot carry
//! it, and raises it again once it can; and [`Protection`], the speaker's whole answer to its
//! listeners' paths (bitrate, copies of every frame, FEC), which the capture thread applies.
//!
//! Two signals say "send less":
//!
//! - **The listeners' loss reports** ([`crate::loss`]): audio goes over reliable streams, so a
//!   path narrower than the audio does not lose it outright — the transport buffers and
//!   retransmits, frames arrive after their playout time and count as lost. Above
//!   [`CONGESTED_LOSS_PERMILLE`] (15 %), averaged over several seconds ([`SmoothedLoss`]), the
//!   path is taken as congested — Google Congestion Control's loss-based rule
//!   (draft-ietf-rmcat-gcc) lowers the rate above 10 %, but per packet over UDP; here a burst
//!   of lost packets on a wide path makes a second with a quarter of its frames late, and
//!   must not count. While no report is fresh the average holds (for [`SILENCE_HELD_MS`]): a
//!   narrow path carries the reports late or not at all, and silence is not a clean path.
//! - **The sender's own link queues**: over TCP (and QUIC once its buffers are full) a slow
//!   path blocks the writes, frames wait in the link's queue of a few frames and the oldest is
//!   dropped. A backlog of half the queue, or a frame dropped from it, is congestion seen
//!   before any listener reports it.
//!
//! The speaker encodes once for every listener, so one slow listener would lower the quality
//! for the whole room: as with the loss hint, a listener counts only among the worst tenth
//! ([`room_congested`], [`crate::loss::worst_loss`]). [`Bitrate`] steps down by a quarter at
//! most once a second (reports come once a second, and a queue needs a moment to drain) to
//! [`MIN_BITRATE_BPS`], and back up a step after [`STEP_UP_AFTER_MS`] without congestion, to
//! the configured bitrate.

/// Reported loss above this (‰, the 90th-percentile listener's, smoothed by
/// [`SmoothedLoss`]) means the path is congested.
pub const CONGESTED_LOSS_PERMILLE: u16 = 150;

/// Time constant of [`SmoothedLoss`], ms: a sustained loss shows within seconds; one bad
/// second of a lossy but wide path (a burst of lost packets stalls a QUIC lane and a quarter
/// of a second's frames come late) does not.
pub const LOSS_SMOOTHING_MS: u64 = 6_000;

/// The lowest bitrate congestion may push the encoder to (wideband speech stays intelligible).
pub const MIN_BITRATE_BPS: u32 = 12_000;

/// A link whose queue holds this many frames at a check is congested (half its queue).
pub const CONGESTED_BACKLOG_FRAMES: usize = 4;

/// The shortest time between two steps down, ms.
pub const STEP_DOWN_EVERY_MS: u64 = 1_000;

/// How long no link may be congested before the bitrate goes up a step, ms.
pub const STEP_UP_AFTER_MS: u64 = 10_000;

/// What one link showed since the previous check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkLoad {
    /// Frames waiting in its queue now.
    pub queued: usize,
    /// Frames its queue dropped since the previous check.
    pub dropped: u64,
}

impl LinkLoad {
    /// Whether this link could not carry the audio: it dropped frames or has a backlog.
    pub fn congested(&self) -> bool {
        self.dropped > 0 || self.queued >= CONGESTED_BACKLOG_FRAMES
    }
}

/// Whether the room's 90th-percentile link is congested (any link while there are fewer than
/// ten; two of twenty do not count, three do — the same rank as [`crate::loss::worst_loss`]).
pub fn room_congested(links: &[LinkLoad]) -> bool {
    let n = links.len();
    if n == 0 {
        return false;
    }
    let rank = (n * 9).div_ceil(10).max(1);
    let congested = links.iter().filter(|l| l.congested()).count();
    // The rank-th best link (sorted clean first) is congested.
    congested > n - rank
}

/// The reported loss averaged over time (an exponential average with time constant
/// [`LOSS_SMOOTHING_MS`]). Listeners report the loss of each second: at 5 % random loss one
/// second in twenty-five has 6 of its 50 frames missing (over 10 %); a path too narrow for the
/// audio misses a quarter of them second after second. Only the second should lower the
/// bitrate.
#[derive(Clone, Debug, Default)]
pub struct SmoothedLoss {
    permille: f64,
    last_ms: Option<u64>,
}

impl SmoothedLoss {
    /// No loss seen yet.
    pub fn new() -> SmoothedLoss {
        SmoothedLoss::default()
    }

    /// The average, unchanged, at `now_ms`: no listener reported lately, which says nothing
    /// about the path (its reports may be the first thing a collapsing path stops carrying).
    pub fn hold(&mut self, now_ms: u64) -> u16 {
        self.last_ms = Some(now_ms);
        self.average()
    }

    /// Takes the loss in force at `now_ms` (the latest reports, ‰); returns the average.
    pub fn update(&mut self, now_ms: u64, permille: u16) -> u16 {
        let dt = self.last_ms.map_or(0, |t| now_ms.saturating_sub(t));
        self.last_ms = Some(now_ms);
        let weight = 1.0 - (-(dt as f64) / LOSS_SMOOTHING_MS as f64).exp();
        self.permille += (f64::from(permille) - self.permille) * weight;
        self.average()
    }

    fn average(&self) -> u16 {
        self.permille.round().clamp(0.0, 1000.0) as u16
    }
}

/// The encoder bitrate over time: down a quarter per second of congestion, up a step after a
/// quiet hold.
#[derive(Clone, Debug)]
pub struct Bitrate {
    ceiling_bps: u32,
    current_bps: u32,
    /// When the bitrate last went down, ms.
    last_down_ms: Option<u64>,
    /// When a link was last congested (or the bitrate last went up), ms.
    quiet_since_ms: u64,
}

impl Bitrate {
    /// Starts at `configured_bps`, which is also the ceiling it returns to.
    pub fn new(configured_bps: u32) -> Bitrate {
        Bitrate {
            ceiling_bps: configured_bps,
            current_bps: configured_bps,
            last_down_ms: None,
            quiet_since_ms: 0,
        }
    }

    /// The bitrate in force, bits per second.
    pub fn current(&self) -> u32 {
        self.current_bps
    }

    /// Takes whether the room's links are congested at `now_ms`; returns the bitrate to set.
    pub fn update(&mut self, now_ms: u64, congested: bool) -> u32 {
        let floor = MIN_BITRATE_BPS.min(self.ceiling_bps);
        if congested {
            self.quiet_since_ms = now_ms;
            let may_step = self
                .last_down_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= STEP_DOWN_EVERY_MS);
            if may_step && self.current_bps > floor {
                self.current_bps = (self.current_bps / 4 * 3).max(floor);
                self.last_down_ms = Some(now_ms);
            }
        } else if self.current_bps < self.ceiling_bps
            && now_ms.saturating_sub(self.quiet_since_ms) >= STEP_UP_AFTER_MS
        {
            self.current_bps = (self.current_bps / 3 * 4).min(self.ceiling_bps);
            self.quiet_since_ms = now_ms;
        }
        self.current_bps
    }
}

/// How long the loss average holds while no listener reports, ms; after that it decays as if
/// they reported a clean path (they may have left).
pub const SILENCE_HELD_MS: u64 = 30_000;

/// After a sign that the path is too narrow (a backed-up link, a report of
/// [`CONGESTED_LOSS_PERMILLE`] or more), no copies for this long, ms: doubling the audio on
/// such a path makes it collapse before the bitrate can come down.
pub const COPIES_BACKOFF_MS: u64 = 30_000;

/// What a speaker sends, as [`Protection`] decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The encoder's bitrate, bits per second.
    pub bitrate_bps: u32,
    /// The encoder's packet-loss hint, % (0: in-band FEC off).
    pub fec_hint_pct: u8,
    /// Whether every frame goes out twice (the copy with the next frame, on another lane).
    pub copies: bool,
}

/// A speaker's protection against its listeners' paths, from their loss reports and its own
/// links: clean paths get every bit for the voice; lossy ones get copies of every frame (a
/// lost packet on a reliable stream is resent a round trip later, after its frame's playout;
/// the copy plays in its place), with FEC off; a path too narrow for copies gets FEC sized to
/// the loss ([`crate::loss`]) and, while it cannot carry the audio, a lower bitrate
/// ([`Bitrate`]).
#[derive(Clone, Debug)]
pub struct Protection {
    configured_bps: u32,
    hint: crate::loss::LossHint,
    smoothed: SmoothedLoss,
    bitrate: Bitrate,
    no_copies_until_ms: u64,
    /// When a fresh report was last taken.
    last_report_ms: Option<u64>,
}

impl Protection {
    /// For an encoder configured at `configured_bps` (also the ceiling).
    pub fn new(configured_bps: u32) -> Protection {
        Protection {
            configured_bps,
            hint: crate::loss::LossHint::new(),
            smoothed: SmoothedLoss::new(),
            bitrate: Bitrate::new(configured_bps),
            no_copies_until_ms: 0,
            last_report_ms: None,
        }
    }

    /// The loss hint the reports call for, % (what `stats` shows; the encoder's own is 0
    /// while copies are sent).
    pub fn loss_hint(&self) -> u8 {
        self.hint.current()
    }

    /// Takes the listeners' latest loss ([`crate::loss::worst_loss`] of the fresh reports;
    /// `None` when none are fresh) and whether a link backed up ([`room_congested`]) at
    /// `now_ms`; returns what to send.
    pub fn update(
        &mut self,
        now_ms: u64,
        reported: Option<u16>,
        links_congested: bool,
    ) -> Decision {
        let worst = reported.unwrap_or(0);
        self.hint.update(now_ms, worst);
        // Without a fresh report the average holds: taking silence for a clean path kept the
        // bitrate up on a path too narrow for the audio, whose reports got through only now
        // and then (`ruang-node`'s `a_narrow_path_lowers_the_hosts_bitrate…` under load).
        // The hold lasts [`SILENCE_HELD_MS`]: listeners that left say nothing either.
        let smoothed = match reported {
            Some(worst) => {
                self.last_report_ms = Some(now_ms);
                self.smoothed.update(now_ms, worst)
            }
            None if self
                .last_report_ms
                .is_some_and(|at| now_ms.saturating_sub(at) < SILENCE_HELD_MS) =>
            {
                self.smoothed.hold(now_ms)
            }
            None => self.smoothed.update(now_ms, 0),
        };
        let lossy = smoothed > CONGESTED_LOSS_PERMILLE;
        let congested = links_congested || lossy;
        let bitrate_bps = self.bitrate.update(now_ms, congested);
        if congested || worst >= CONGESTED_LOSS_PERMILLE {
            self.no_copies_until_ms = now_ms + COPIES_BACKOFF_MS;
        }
        // Copies only on what listeners say now (a link that went quiet — down, or collapsed
        // under the copies — gets none), on a path wide enough: the bitrate not lowered, the
        // loss moderate, no sign of a narrow path for a while.
        let copies = now_ms >= self.no_copies_until_ms
            && reported.is_some_and(|w| w < CONGESTED_LOSS_PERMILLE)
            && self.hint.current() > 0
            && bitrate_bps >= self.configured_bps;
        Decision {
            bitrate_bps,
            // With copies a frame is missing only when both are: FEC, whose bits come out of
            // the frame's own, would rarely be used.
            fec_hint_pct: if copies { 0 } else { self.hint.current() },
            copies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: LinkLoad = LinkLoad {
        queued: 0,
        dropped: 0,
    };
    const SLOW: LinkLoad = LinkLoad {
        queued: CONGESTED_BACKLOG_FRAMES,
        dropped: 0,
    };
    const DROPPING: LinkLoad = LinkLoad {
        queued: 1,
        dropped: 2,
    };

    #[test]
    fn a_link_is_congested_when_it_drops_or_backs_up() {
        assert!(!CLEAN.congested());
        assert!(
            !LinkLoad {
                queued: CONGESTED_BACKLOG_FRAMES - 1,
                dropped: 0
            }
            .congested()
        );
        assert!(SLOW.congested());
        assert!(DROPPING.congested());
    }

    #[test]
    fn the_room_follows_its_ninetieth_percentile_link() {
        assert!(!room_congested(&[]));
        assert!(room_congested(&[CLEAN, SLOW, CLEAN]));
        let mut twenty = vec![CLEAN; 18];
        twenty.extend([SLOW, DROPPING]);
        assert!(!room_congested(&twenty), "two of twenty");
        twenty[0] = SLOW;
        assert!(room_congested(&twenty), "three of twenty");
    }

    #[test]
    fn congestion_steps_down_once_a_second_to_the_floor() {
        let mut b = Bitrate::new(32_000);
        assert_eq!(b.update(0, false), 32_000);
        assert_eq!(b.update(200, true), 24_000);
        // The queue needs time to drain: no second step within a second.
        assert_eq!(b.update(400, true), 24_000);
        assert_eq!(b.update(1_200, true), 18_000);
        let mut at = 2_200;
        while b.current() > MIN_BITRATE_BPS {
            b.update(at, true);
            at += 1_000;
            assert!(at < 20_000, "never reached the floor");
        }
        assert_eq!(b.update(at, true), MIN_BITRATE_BPS);
    }

    #[test]
    fn quiet_links_bring_the_bitrate_back_step_by_step() {
        let mut b = Bitrate::new(32_000);
        b.update(0, true);
        b.update(1_000, true);
        assert_eq!(b.current(), 18_000);
        // Ten quiet seconds after the last congestion, one step up; ten more, the next.
        assert_eq!(b.update(10_999, false), 18_000);
        assert_eq!(b.update(11_000, false), 24_000);
        assert_eq!(b.update(15_000, false), 24_000);
        // Congestion again resets the hold.
        assert_eq!(b.update(16_000, true), 18_000);
        assert_eq!(b.update(26_000, false), 24_000);
        assert_eq!(b.update(36_000, false), 32_000);
        assert_eq!(
            b.update(60_000, false),
            32_000,
            "never above the configured bitrate"
        );
    }

    /// Per-second reports at 5 % random loss (50 frames a second), or with a 25 % second
    /// every five (bursts on a wide path), never add up to congestion over ten minutes; a
    /// steady 24 % does within six seconds.
    #[test]
    fn smoothing_tells_a_lossy_path_from_a_narrow_one() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1000) as u16
        };
        let mut lossy = SmoothedLoss::new();
        let mut worst_second = 0;
        for second in 0..600u64 {
            let mut missed = (0..50).filter(|_| rand() < 50).count() as u16;
            if second % 5 == 0 {
                missed = missed.max(13);
            }
            worst_second = worst_second.max(missed * 20);
            for tick in 0..5 {
                let avg = lossy.update(second * 1000 + tick * 200, missed * 20);
                assert!(avg <= CONGESTED_LOSS_PERMILLE, "second {second}: {avg} ‰");
            }
        }
        assert!(
            worst_second > CONGESTED_LOSS_PERMILLE,
            "some second was over 10 %"
        );
        let mut narrow = SmoothedLoss::new();
        narrow.update(0, 0);
        let at = (1..=50u64)
            .map(|i| i * 200)
            .find(|&t| narrow.update(t, 243) > CONGESTED_LOSS_PERMILLE)
            .expect("never congested");
        assert!(at <= 6_000, "congested only after {at} ms");
    }

    #[test]
    fn protection_sends_copies_on_a_lossy_path_and_backs_off_on_a_narrow_one() {
        let mut p = Protection::new(32_000);
        let clean = p.update(0, Some(0), false);
        assert_eq!(
            (clean.copies, clean.fec_hint_pct, clean.bitrate_bps),
            (false, 0, 32_000)
        );
        // 5 % loss: copies, FEC off.
        let lossy = p.update(1_000, Some(50), false);
        assert_eq!((lossy.copies, lossy.fec_hint_pct), (true, 0));
        assert_eq!(p.loss_hint(), 5);
        // Reports stop (the link went quiet): no copies, FEC at the hint.
        let quiet = p.update(2_000, None, false);
        assert_eq!((quiet.copies, quiet.fec_hint_pct), (false, 5));
        // One report of 20 %: no copies for COPIES_BACKOFF_MS, even once the loss is 5 % again.
        assert!(!p.update(3_000, Some(200), false).copies);
        assert!(!p.update(4_000, Some(50), false).copies);
        assert!(
            !p.update(3_000 + COPIES_BACKOFF_MS - 1, Some(50), false)
                .copies
        );
        assert!(p.update(3_000 + COPIES_BACKOFF_MS, Some(50), false).copies);
        // A backed-up link lowers the bitrate and stops the copies.
        let narrow = p.update(40_000, Some(50), true);
        assert_eq!((narrow.copies, narrow.bitrate_bps), (false, 24_000));
    }

    #[test]
    fn reports_that_get_through_now_and_then_still_lower_the_bitrate() {
        // A narrow path: the listener misses a quarter of the frames, and its reports, sent
        // every second, reach the speaker one time in four (each fresh for 5 s there, checked
        // every 200 ms): fresh for 5 s, then 15 s without.
        let mut p = Protection::new(32_000);
        let mut lowest = 32_000;
        for tick in 0..300u64 {
            let now = tick * 200;
            let fresh = now % 20_000 < 5_000;
            let decision = p.update(now, fresh.then_some(250), false);
            lowest = lowest.min(decision.bitrate_bps);
        }
        assert!(lowest < 32_000, "the bitrate stayed at {lowest}");
        // The listener leaves: after SILENCE_HELD_MS the average decays, and the bitrate
        // climbs back to the configured one.
        let mut last = lowest;
        for tick in 300..1_500u64 {
            last = p.update(tick * 200, None, false).bitrate_bps;
        }
        assert_eq!(last, 32_000);
    }

    #[test]
    fn a_configured_bitrate_below_the_floor_is_kept() {
        let mut b = Bitrate::new(8_000);
        assert_eq!(b.update(0, true), 8_000);
    }
}
