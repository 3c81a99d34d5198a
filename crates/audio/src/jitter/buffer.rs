//! The jitter buffer proper: reordering window, playout cursor and the hold/skip decisions.

use super::estimator::Estimator;
use super::{Config, Playout, Stats};
use crate::format::ticks_to_micros;
use crate::wire::{Flags, Frame};

/// A sequence-number jump larger than this (either way) is a restarted stream, not loss.
const RESYNC_GAP: u64 = 1_000;

/// Start of the extended (64-bit) sequence and timestamp spaces, so that early reordering
/// never goes below zero.
const EXT_BASE: u64 = 1 << 32;

/// Sequence numbers remembered behind the cursor to tell duplicates from late frames.
const HISTORY_BITS: u64 = 64;

#[derive(Clone, Debug)]
struct Slot {
    seq: u64,
    ts: u64,
    arrival_us: u64,
    frame: Frame,
    /// Copies of this frame that arrived before it was played (a speaker on a lossy path
    /// sends each frame twice).
    copies: u8,
}

/// How far behind its target the playout must be before it drops a voiced frame to catch up
/// (silent frames go as soon as it is behind at all). After a stall the target shrinks by a
/// frame a second, so a talker who goes on without a pause would fall a frame further
/// behind every second; a dropped voiced frame is a cut in a word, which costs more than the
/// delay: at 3 frames (60 ms) the 2 % bursty path scored a PESQ-WB p10 of 2.87–3.25, at 100 ms
/// 3.11–3.40 (`ruang-bench playout`, 4 seeds; bench/RESULTS.md). Speech pauses every few
/// seconds, and the pause takes the rest.
const VOICED_SKIP_BEHIND_US: i64 = 100_000;

/// A frame played from one copy counts as [`Stats::copy_missing`] only if its other copy has
/// not come this long (past one frame) after it was played, µs. The copy is sent a frame after
/// the original, so on a jittery path it is often a little late; a lost one is resent a round
/// trip after it was sent, later than this on any path where copies matter. Counted as lost,
/// late copies inflate the report (a path losing 5 % of the copies, a quarter of them a little
/// late, reported 17.5 %: test `copies_a_little_late_are_not_reported_as_lost`), and one
/// report of 15 % stops the copies for 30 s.
const COPY_LATE_GRACE_US: u64 = 10_000;

/// Late copies that arrive within this of the previous late copy were released by the same
/// resend, µs: on a striped QUIC link a lost packet holds back every later frame of its lane
/// until its resend comes, and they are read at once. They count as one loss (test
/// `a_stalled_lane_counts_as_one_loss`): counted apart, one lost packet made two or three
/// late copies, and a path losing 5 % reported 10–25 %.
const SAME_RELEASE_US: u64 = 2_000;

/// How long a frame played from one copy waits for its other copy before that copy counts
/// as lost, µs: longer than a resend takes (a round trip plus loss detection), so that a
/// resent copy is counted when it comes, with the late copies it releases.
const COPY_RESEND_HORIZON_US: u64 = 500_000;

/// Frames played from one copy whose other copy may still come, at most (a 5 % path keeps
/// two or three waiting for their resend at a time).
const PENDING_COPIES: usize = 16;

/// Arrivals of one kind grouped by the resend that released them ([`SAME_RELEASE_US`]).
#[derive(Clone, Copy, Debug, Default)]
struct Releases {
    last_us: Option<u64>,
}

impl Releases {
    /// Notes an arrival at `at_us`; whether it starts a release (is not part of the last).
    fn new_release(&mut self, at_us: u64) -> bool {
        let same = self
            .last_us
            .is_some_and(|last| at_us.abs_diff(last) <= SAME_RELEASE_US);
        self.last_us = Some(at_us);
        !same
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a frame to start (or restart) playout with.
    Idle,
    /// Playing: one frame per pull from the cursor on.
    Playing,
}

/// An adaptive jitter buffer for one speaker. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct Buffer {
    config: Config,
    frame_us: i64,
    frame_ticks: u64,
    /// Slot of extended sequence number `s` is `s % capacity`; only the window
    /// `[next, next + capacity)` is held.
    slots: Vec<Option<Slot>>,
    len: usize,
    /// Extended sequence number of the next frame to play.
    next: Option<u64>,
    /// Extended seq / timestamp of the newest frame seen: the reference for extending.
    seq_ref: Option<(u64, u64)>,
    /// Predicted extended timestamp of `next` while playing.
    cursor_ts: u64,
    state: State,
    /// Whether anything was played since the stream (re)started.
    started: bool,
    /// Bit i set: sequence number `next - 1 - i` was consumed from a packet.
    history: u64,
    last_flags: Flags,
    underrun: u32,
    /// Frames of this stream carry FEC.
    fec_seen: bool,
    estimator: Estimator,
    stats: Stats,
    /// How much earlier the last pull could have come and played the same frame.
    slack_us: Option<u64>,
    /// Frames played from one copy while copies are sent, with when: their other copy may
    /// still come (within [`COPY_RESEND_HORIZON_US`]).
    single: [Option<(u64, u64)>; PENDING_COPIES],
    /// Copies that came after their grace, by release.
    late_copies: Releases,
    /// Frames that came after a later one, by release.
    held_back: Releases,
}

impl Buffer {
    /// An empty buffer with `config`.
    pub fn new(config: Config) -> Buffer {
        let capacity = config.capacity_frames.max(2);
        let config = Config {
            capacity_frames: capacity,
            ..config
        };
        Buffer {
            frame_us: config.frame.as_micros() as i64,
            frame_ticks: config.frame.ticks() as u64,
            slots: vec![None; capacity],
            len: 0,
            next: None,
            seq_ref: None,
            cursor_ts: 0,
            state: State::Idle,
            started: false,
            history: 0,
            last_flags: Flags::empty(),
            underrun: 0,
            fec_seen: false,
            estimator: Estimator::new(&config),
            stats: Stats::default(),
            slack_us: None,
            single: [None; PENDING_COPIES],
            late_copies: Releases::default(),
            held_back: Releases::default(),
            config,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How much earlier the last [`pull`](Self::pull) could have come and still played the
    /// frame it played, µs: the frame had arrived and the target delay was met by then.
    /// `None` when it played no packet (silence, concealment, FEC or a held frame). A playout
    /// whose every frame comes with slack is ticking later than the path needs.
    pub fn slack_us(&self) -> Option<u64> {
        self.slack_us
    }

    /// Frames held now (never more than [`capacity`](Self::capacity)).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most frames ever held.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether playout is running (as opposed to waiting for a talk spurt).
    pub fn is_playing(&self) -> bool {
        self.state == State::Playing
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let target_us = self.estimator.allowance() + self.frame_us;
        Stats {
            target_delay_ms: ((target_us + 999) / 1_000) as u32,
            depth_ms: (self.len as u64 * self.config.frame.as_millis()) as u32,
            ..self.stats
        }
    }

    /// Forgets every frame and the stream's clock (keeps counters and the learnt jitter).
    pub fn reset(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.len = 0;
        self.next = None;
        self.seq_ref = None;
        self.state = State::Idle;
        self.started = false;
        self.history = 0;
        self.single = [None; PENDING_COPIES];
        self.late_copies = Releases::default();
        self.held_back = Releases::default();
        self.last_flags = Flags::empty();
        self.underrun = 0;
        self.estimator.reset_clock();
    }

    /// Takes a frame that arrived at `arrival_us` (the caller's monotonic clock, the same one
    /// `pull` gets).
    pub fn push(&mut self, frame: Frame, arrival_us: u64) {
        self.stats.received += 1;
        self.fec_seen |= frame.flags.contains(Flags::FEC);
        let (seq, ts) = self.extend(frame.seq, frame.timestamp);
        let d = arrival_us as i64 - media_us(ts);
        let cap = self.capacity() as u64;

        let Some(mut next) = self.next else {
            self.next = Some(seq);
            self.store(Slot {
                seq,
                ts,
                arrival_us,
                frame,
                copies: 1,
            });
            self.estimator.observe(d, arrival_us);
            return;
        };

        if seq < next {
            let newest = self.seq_ref.map_or(seq, |(s, _)| s);
            if !self.started && newest - seq < cap {
                // Reordered before playout began: widen the window backwards.
                self.next = Some(seq);
                next = seq;
            } else {
                let back = next - 1 - seq;
                if back < HISTORY_BITS && self.history & (1 << back) != 0 {
                    self.stats.duplicate += 1;
                    self.other_copy_came(seq, arrival_us);
                } else {
                    self.stats.late += 1;
                    // Its slot passed; if a later frame came, it was held back.
                    let after_later = self.seq_ref.is_some_and(|(newest, _)| seq < newest);
                    self.note_held_back(arrival_us, after_later);
                    // A straggler: a later frame came first, so this one was lost in transit
                    // and resent (on a striped QUIC link, its own lane's retransmission). With
                    // FEC its slot was rebuilt from that later frame; waiting a round trip for
                    // every resent packet would cost everyone ~100 ms of delay for nothing, so
                    // it neither grows the target nor enters the delay histogram. Without FEC,
                    // and for frames late in order (everything was slow), grow at once.
                    let straggler = self.fec_seen && newest > seq;
                    if !straggler {
                        let j = self.estimator.observe(d, arrival_us);
                        self.estimator.grow_for_late(j);
                    }
                }
                return;
            }
        }

        if seq >= next + cap {
            self.advance_window(seq + 1 - cap);
        }
        if let Some(slot) = self.slots[(seq % cap) as usize]
            .as_mut()
            .filter(|s| s.seq == seq)
        {
            slot.copies = slot.copies.saturating_add(1);
            self.stats.duplicate += 1;
            return;
        }
        let waited = self.newer_came_before(seq, arrival_us);
        self.note_held_back(arrival_us, waited);
        let j = self.estimator.observe(d, arrival_us);
        if self.underrun > 0 && Some(seq) == self.next {
            // The playout has been waiting for exactly this frame.
            self.estimator.grow_for_late(j);
        }
        self.store(Slot {
            seq,
            ts,
            arrival_us,
            frame,
            copies: 1,
        });
    }

    /// What to play for the frame period starting at `now_us`. Call exactly once per frame
    /// period.
    pub fn pull(&mut self, now_us: u64) -> Playout {
        self.slack_us = None;
        self.count_missing_copies(now_us);
        self.estimator.decay(now_us);
        let now = now_us as i64;
        if self.state == State::Idle && !self.try_start(now) {
            return Playout::Silence;
        }
        let allowance = self.estimator.allowance();
        let d_min = self.estimator.d_min().unwrap_or(0);
        let mut skipped_now = false;
        loop {
            // Playing: `next` is set whenever the state is Playing.
            let Some(next) = self.next else {
                return Playout::Silence;
            };
            let cap = self.capacity() as u64;
            let idx = (next % cap) as usize;
            let present = self.slots[idx]
                .as_ref()
                .filter(|s| s.seq == next)
                .map(|s| (s.ts, s.frame.flags));
            let ts = present.map_or(self.cursor_ts, |(ts, _)| ts);
            // How long after its fastest-path arrival this frame would be played now.
            let wait = now - (media_us(ts) + d_min);
            if wait < allowance {
                // Early: the target grew. Hold one frame.
                self.stats.stretched += 1;
                return self.filler();
            }
            match present {
                Some((ts, flags)) => {
                    let behind = wait - (allowance + self.frame_us);
                    let silent = !flags.contains(Flags::VOICE) || flags.contains(Flags::DTX);
                    // Skip only onto a frame that is here, so shrinking never causes a loss.
                    let skip = behind > self.frame_us / 4
                        && (silent || behind > VOICED_SKIP_BEHIND_US)
                        && self.holds(next + 1);
                    let slot = self.take(idx);
                    self.advance_cursor(true, ts);
                    if skip && !skipped_now && slot.is_some() {
                        skipped_now = true;
                        self.stats.skipped += 1;
                        continue;
                    }
                    let Some(slot) = slot else {
                        return Playout::Silence;
                    };
                    self.stats.played += 1;
                    // Earlier, the frame must have been here and the target met.
                    let here_for = now_us.saturating_sub(slot.arrival_us);
                    let over_target = u64::try_from(wait - allowance).unwrap_or(0);
                    self.slack_us = Some(here_for.min(over_target));
                    self.note_copies(&slot, now_us);
                    self.stats.delay_ms = (now_us.saturating_sub(slot.arrival_us) / 1_000) as u32;
                    self.underrun = 0;
                    self.last_flags = slot.frame.flags;
                    if flags.contains(Flags::END) || flags.contains(Flags::DTX) {
                        self.state = State::Idle;
                    }
                    return Playout::Packet(slot.frame);
                }
                None => {
                    if let Some(playout) = self.missing(next, now_us) {
                        return playout;
                    }
                }
            }
        }
    }

    /// The frame at the cursor is due and missing. `None`: the cursor moved on, look again.
    fn missing(&mut self, next: u64, now_us: u64) -> Option<Playout> {
        let cap = self.capacity() as u64;
        let later = (next + 1..next + cap).find(|&s| self.holds(s));
        match later {
            Some(s) if self.underrun > 0 => {
                // Concealment already filled the slots of the frames we were waiting for; a
                // later frame shows they are lost: give them up without playing more filler.
                let give_up = (s - next).min(self.underrun as u64);
                for _ in 0..give_up {
                    self.stats.lost += 1;
                    let ts = self.cursor_ts;
                    self.advance_cursor(false, ts);
                }
                self.underrun = 0;
                self.note_loss(now_us);
                None
            }
            Some(s) => {
                self.stats.lost += 1;
                self.underrun = 0;
                let ts = self.cursor_ts;
                self.advance_cursor(false, ts);
                self.note_loss(now_us);
                let fec = (s == next + 1)
                    .then(|| self.slots[(s % cap) as usize].as_ref())
                    .flatten()
                    .filter(|slot| {
                        slot.frame.flags.contains(Flags::FEC) && !slot.frame.payload.is_empty()
                    });
                Some(match fec {
                    Some(slot) => {
                        self.stats.fec_recovered += 1;
                        Playout::Fec(slot.frame.payload.clone())
                    }
                    None => {
                        self.stats.concealed += 1;
                        Playout::Conceal
                    }
                })
            }
            None if self.underrun < self.config.max_underrun_frames => {
                // Nothing buffered: conceal while waiting, without giving the frame up.
                self.underrun += 1;
                self.stats.concealed += 1;
                Some(Playout::Conceal)
            }
            None => {
                self.state = State::Idle;
                Some(Playout::Silence)
            }
        }
    }

    /// A frame was lost. With FEC in the stream, keep one frame more buffered for a while, so
    /// the next loss finds the following packet (and its FEC copy) already here.
    fn note_loss(&mut self, now_us: u64) {
        if self.fec_seen {
            self.estimator.hold_floor(self.frame_us, now_us);
        }
    }

    /// In Idle: starts playout if a buffered frame is due. Returns whether it started.
    fn try_start(&mut self, now: i64) -> bool {
        let Some(next) = self.next else { return false };
        let cap = self.capacity() as u64;
        let Some(first) = (next..next + cap).find(|&s| self.holds(s)) else {
            return false;
        };
        let ts = match &self.slots[(first % cap) as usize] {
            Some(slot) => slot.ts,
            None => return false,
        };
        let d_min = self.estimator.d_min().unwrap_or(0);
        if now < media_us(ts) + d_min + self.estimator.allowance() {
            return false;
        }
        // Sequence numbers between the last played frame and this one never came.
        let gap = first - next;
        if gap > 0 {
            self.stats.lost += gap;
            self.history = self.history.checked_shl(gap as u32).unwrap_or(0);
        }
        self.next = Some(first);
        self.cursor_ts = ts;
        self.state = State::Playing;
        self.started = true;
        true
    }

    /// Filler for a hold: concealment inside a talk spurt, silence outside.
    fn filler(&mut self) -> Playout {
        let in_voice = self.last_flags.contains(Flags::VOICE)
            && !self.last_flags.contains(Flags::END)
            && !self.last_flags.contains(Flags::DTX);
        if in_voice {
            self.stats.concealed += 1;
            Playout::Conceal
        } else {
            Playout::Silence
        }
    }

    /// Moves the cursor one frame on; `had_packet` records whether that frame was here.
    fn advance_cursor(&mut self, had_packet: bool, ts: u64) {
        self.history = (self.history << 1) | had_packet as u64;
        self.cursor_ts = ts + self.frame_ticks;
        self.next = self.next.map(|n| n + 1);
    }

    /// Drops the oldest sequence numbers until `new_next` is the first of the window.
    fn advance_window(&mut self, new_next: u64) {
        let Some(next) = self.next else { return };
        let cap = self.capacity() as u64;
        for s in next..new_next.min(next + cap) {
            let idx = (s % cap) as usize;
            if self.slots[idx].as_ref().is_some_and(|slot| slot.seq == s) {
                let slot = self.take(idx);
                self.stats.overflow += 1;
                if let Some(slot) = slot {
                    self.cursor_ts = slot.ts + self.frame_ticks;
                }
                self.history = (self.history << 1) | 1;
            } else {
                if self.started {
                    self.stats.lost += 1;
                }
                self.cursor_ts += self.frame_ticks;
                self.history <<= 1;
            }
        }
        let beyond = new_next.saturating_sub(next + cap);
        if beyond > 0 {
            if self.started {
                self.stats.lost += beyond;
            }
            self.history = self.history.checked_shl(beyond as u32).unwrap_or(0);
            self.cursor_ts += beyond * self.frame_ticks;
        }
        self.next = Some(new_next);
    }

    fn holds(&self, seq: u64) -> bool {
        let cap = self.capacity() as u64;
        self.slots[(seq % cap) as usize]
            .as_ref()
            .is_some_and(|s| s.seq == seq)
    }

    /// Counts the copies a played frame had: a frame the speaker sent twice
    /// ([`Flags::COPIED`]) played from one copy means the other was late or lost
    /// ([`Stats::copy_missing`]); it waits for the other copy to tell which.
    fn note_copies(&mut self, slot: &Slot, now_us: u64) {
        let sending_copies = slot.frame.flags.contains(Flags::COPIED);
        if sending_copies && slot.copies < 2 {
            let free_or_oldest = match self.single.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    // Full: the longest waiting copy counts as lost.
                    let oldest = (0..PENDING_COPIES)
                        .min_by_key(|&i| self.single[i].map_or(0, |(_, at)| at))
                        .unwrap_or(0);
                    self.stats.copy_missing += 1;
                    oldest
                }
            };
            self.single[free_or_oldest] = Some((slot.seq, now_us));
        }
        self.stats.copies_sent = sending_copies;
    }

    /// The other copy of frame `seq`, already played, came at `arrival_us`. If the frame
    /// was played from one copy, this one is either a little late, within
    /// [`COPY_LATE_GRACE_US`] (not counted), or was lost and resent: a loss, unless the same
    /// resend released one counted already.
    fn other_copy_came(&mut self, seq: u64, arrival_us: u64) {
        let Some(p) = self
            .single
            .iter_mut()
            .find(|p| p.is_some_and(|(s, _)| s == seq))
        else {
            return;
        };
        let played_at = p.map_or(arrival_us, |(_, at)| at);
        *p = None;
        let grace = self.frame_us as u64 + COPY_LATE_GRACE_US;
        if arrival_us.saturating_sub(played_at) <= grace {
            return;
        }
        if self.late_copies.new_release(arrival_us) {
            self.stats.copy_missing += 1;
        }
    }

    /// Whether a frame later than `seq` (held, not yet played) arrived before `arrival_us`
    /// by more than [`SAME_RELEASE_US`]. Frames delivered together (a burst after a queue
    /// drained) reach the buffer in any order, one lane's reader before another's: that is
    /// not a resend.
    fn newer_came_before(&self, seq: u64, arrival_us: u64) -> bool {
        let Some((newest, _)) = self.seq_ref else {
            return false;
        };
        let cap = self.capacity() as u64;
        (seq + 1..=newest).take(cap as usize).any(|s| {
            self.slots[(s % cap) as usize]
                .as_ref()
                .is_some_and(|slot| slot.seq == s && slot.arrival_us + SAME_RELEASE_US < arrival_us)
        })
    }

    /// Counts a frame new to the buffer, arrived at `arrival_us` after a later frame
    /// (`after_later`), as [`Stats::held_back`], unless the same resend released one counted
    /// already.
    fn note_held_back(&mut self, arrival_us: u64, after_later: bool) {
        if !after_later {
            return;
        }
        if self.held_back.new_release(arrival_us) {
            self.stats.held_back += 1;
        }
    }

    /// Counts as [`Stats::copy_missing`] the frames played from one copy whose other copy
    /// has not come within [`COPY_RESEND_HORIZON_US`]: not resent in time, or never sent.
    fn count_missing_copies(&mut self, now_us: u64) {
        for p in &mut self.single {
            if p.is_some_and(|(_, at)| now_us.saturating_sub(at) > COPY_RESEND_HORIZON_US) {
                *p = None;
                self.stats.copy_missing += 1;
            }
        }
    }

    fn store(&mut self, slot: Slot) {
        let idx = (slot.seq % self.capacity() as u64) as usize;
        if self.slots[idx].replace(slot).is_none() {
            self.len += 1;
        }
    }

    fn take(&mut self, idx: usize) -> Option<Slot> {
        let slot = self.slots[idx].take();
        if slot.is_some() {
            self.len -= 1;
        }
        slot
    }

    /// Extends 32-bit seq/timestamp to 64 bits around the newest frame seen, detecting
    /// restarted streams.
    fn extend(&mut self, seq: u32, ts: u32) -> (u64, u64) {
        let Some((ref_seq, ref_ts)) = self.seq_ref else {
            let ext = (EXT_BASE + seq as u64, EXT_BASE + ts as u64);
            self.seq_ref = Some(ext);
            return ext;
        };
        let ds = seq.wrapping_sub(ref_seq as u32) as i32 as i64;
        let dt = ts.wrapping_sub(ref_ts as u32) as i32 as i64;
        let ext_seq = ref_seq as i64 + ds;
        let jumped = ds.unsigned_abs() > RESYNC_GAP
            || self
                .next
                .is_some_and(|n| ext_seq < n as i64 - RESYNC_GAP as i64);
        if jumped || ext_seq < 0 {
            self.stats.resets += 1;
            self.reset();
            let ext = (EXT_BASE + seq as u64, EXT_BASE + ts as u64);
            self.seq_ref = Some(ext);
            return ext;
        }
        let ext_ts = (ref_ts as i64 + dt).max(0) as u64;
        let ext = (ext_seq as u64, ext_ts);
        if ds > 0 {
            self.seq_ref = Some(ext);
        }
        ext
    }
}

/// Media time of an extended 48 kHz timestamp, in µs.
fn media_us(ts: u64) -> i64 {
    ticks_to_micros(ts) as i64
}
