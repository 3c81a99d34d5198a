//! Real-time pacing for files and synthetic audio: sleep to absolute deadlines.
//!
//! Frame `i` is due at `t0 + i × frame` ([`ruang_audio::pace::Schedule`]); the thread sleeps
//! until that instant, never for "one frame", so a late wake-up is made up by the next frame
//! and no drift accumulates. A thread that falls behind (suspended, overloaded) runs the missed
//! frames back to back; downstream queues drop the oldest if that is too much.
//!
//! The latency benchmark needs wall-clock anchors, so the pacers record them:
//! [`PacedSource`] the unix time (µs) at which its frame 0 was due, [`PacedSink`] the unix time
//! at which its first sample was played (written). Both are readable from other threads
//! through a [`Stamp`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ruang_audio::format::samples_to_micros;
use ruang_audio::pace::Schedule;
use ruang_audio::{FrameDuration, Sink, SinkError, Source, SourceError};

/// The current unix time in µs (0 if the system clock is before 1970).
pub fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A monotonic clock in µs since its creation, tied to the unix time at creation, so that
/// monotonic deadlines can be reported as wall-clock times.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    origin_unix_us: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock starting at 0 now.
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            origin_unix_us: unix_now_us(),
        }
    }

    /// Microseconds since the clock was created (the `now_us` of `ruang-audio`).
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The unix time (µs) of monotonic time `mono_us`.
    pub fn unix_us(&self, mono_us: u64) -> u64 {
        self.origin_unix_us + mono_us
    }

    /// The [`Instant`] of monotonic time `mono_us`.
    pub fn instant(&self, mono_us: u64) -> Instant {
        self.origin + Duration::from_micros(mono_us)
    }

    /// Sleeps until monotonic time `mono_us` (returns at once if it has passed).
    pub fn sleep_until(&self, mono_us: u64) {
        let deadline = self.instant(mono_us);
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }
}

/// A timestamp written once by a pacer and readable from any thread.
#[derive(Clone, Debug, Default)]
pub struct Stamp(Arc<AtomicU64>);

impl Stamp {
    /// The recorded unix time in µs, once recorded.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    fn set_once(&self, unix_us: u64) {
        let _ = self
            .0
            .compare_exchange(0, unix_us.max(1), Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Sleeps from frame deadline to frame deadline.
#[derive(Clone, Debug)]
pub struct Pacer {
    clock: Clock,
    schedule: Schedule,
    next: u64,
}

impl Pacer {
    /// Frame 0 due at `t0_us` on `clock`.
    pub fn new(clock: Clock, t0_us: u64, frame: FrameDuration) -> Pacer {
        Pacer {
            clock,
            schedule: Schedule::new(t0_us, frame),
            next: 0,
        }
    }

    /// Frame 0 due now, on a new clock.
    pub fn start_now(frame: FrameDuration) -> Pacer {
        let clock = Clock::new();
        let t0 = clock.now_us();
        Pacer::new(clock, t0, frame)
    }

    /// Sleeps until the next frame is due and returns its index.
    pub fn wait_next(&mut self) -> u64 {
        let i = self.next;
        self.clock.sleep_until(self.schedule.due(i));
        self.next += 1;
        i
    }

    /// Runs `tick(index, now_us)` once per frame on schedule until it returns `false`.
    pub fn run(&mut self, mut tick: impl FnMut(u64, u64) -> bool) {
        loop {
            let i = self.wait_next();
            if !tick(i, self.clock.now_us()) {
                break;
            }
        }
    }

    /// The schedule (deadlines on [`clock`](Self::clock)).
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// The clock the deadlines are on.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Unix time (µs) at which frame 0 is due.
    pub fn t0_unix_us(&self) -> u64 {
        self.clock.unix_us(self.schedule.t0_us())
    }

    /// Frames handed out so far.
    pub fn frames(&self) -> u64 {
        self.next
    }
}

/// Plays a file or synthetic [`Source`] in real time: frame `i` is returned at its deadline.
#[derive(Debug)]
pub struct PacedSource<S> {
    inner: S,
    start: Option<(Clock, u64)>,
    pacer: Option<Pacer>,
    started: Stamp,
}

impl<S: Source> PacedSource<S> {
    /// Paces `inner`; frame 0 is due at the first call of `next_frame`.
    pub fn new(inner: S) -> PacedSource<S> {
        PacedSource {
            inner,
            start: None,
            pacer: None,
            started: Stamp::default(),
        }
    }

    /// Paces `inner` with frame 0 due at `t0_us` on `clock` (to line several up).
    pub fn starting_at(inner: S, clock: Clock, t0_us: u64) -> PacedSource<S> {
        PacedSource {
            inner,
            start: Some((clock, t0_us)),
            pacer: None,
            started: Stamp::default(),
        }
    }

    /// Unix time (µs) at which frame 0 was due, once it was.
    pub fn started_unix_us(&self) -> Option<u64> {
        self.started.get()
    }

    /// A handle to read [`started_unix_us`](Self::started_unix_us) from another thread.
    pub fn stamp(&self) -> Stamp {
        self.started.clone()
    }

    /// The wrapped source.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Source> Source for PacedSource<S> {
    fn frame_duration(&self) -> FrameDuration {
        self.inner.frame_duration()
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        let frame = self.inner.frame_duration();
        let start = self.start;
        let pacer = self.pacer.get_or_insert_with(|| match start {
            Some((clock, t0)) => Pacer::new(clock, t0, frame),
            None => Pacer::start_now(frame),
        });
        pacer.wait_next();
        self.started.set_once(pacer.t0_unix_us());
        self.inner.next_frame(out)
    }
}

/// Writes to a file [`Sink`] in real time, as a loudspeaker would play it: each push is
/// written when its first sample is due, `t0 + samples before it / 48 kHz` (a frame per
/// frame period, and a shorter push moves the next one earlier).
#[derive(Debug)]
pub struct PacedSink<K> {
    inner: K,
    /// The clock and when the first sample played (on it).
    start: Option<(Clock, u64)>,
    /// Samples written so far.
    samples: u64,
    first_played: Stamp,
}

impl<K: Sink> PacedSink<K> {
    /// Paces `inner`; the first push plays as soon as it is made.
    pub fn new(inner: K) -> PacedSink<K> {
        PacedSink {
            inner,
            start: None,
            samples: 0,
            first_played: Stamp::default(),
        }
    }

    /// Unix time (µs) at which the first sample was played, once it was.
    pub fn first_played_unix_us(&self) -> Option<u64> {
        self.first_played.get()
    }

    /// A handle to read [`first_played_unix_us`](Self::first_played_unix_us) from another
    /// thread.
    pub fn stamp(&self) -> Stamp {
        self.first_played.clone()
    }

    /// The wrapped sink.
    pub fn into_inner(self) -> K {
        self.inner
    }
}

impl<K: Sink> Sink for PacedSink<K> {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        let (clock, t0) = *self.start.get_or_insert_with(|| {
            let clock = Clock::new();
            (clock, clock.now_us())
        });
        clock.sleep_until(t0 + samples_to_micros(self.samples as usize));
        let result = self.inner.push_frame(pcm);
        self.samples += pcm.len() as u64;
        self.first_played.set_once(clock.unix_us(t0));
        result
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruang_audio::sink::MemorySink;
    use ruang_audio::source::{Limited, SilenceSource};

    #[test]
    fn deadlines_do_not_drift_and_stamps_are_recorded() {
        let frame = FrameDuration::Ms10;
        let before = unix_now_us();
        let mut src = PacedSource::new(Limited::new(SilenceSource::new(frame), 20));
        let stamp = src.stamp();
        assert_eq!(stamp.get(), None);
        let mut buf = vec![0.0; frame.samples()];
        let start = Instant::now();
        let mut n = 0;
        while src.next_frame(&mut buf).unwrap() {
            // Work that would drift a relative-sleep loop: 8 ms of every 10 ms frame.
            std::thread::sleep(Duration::from_millis(8));
            n += 1;
        }
        assert_eq!(n, 20);
        let elapsed = start.elapsed();
        // 21 deadlines (the last call ends the source) ≈ 200 ms; a loop sleeping one frame
        // after its work would take 21 × 18 ms = 378 ms. The upper bound sits between, with
        // room for a loaded machine.
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(320), "{elapsed:?}");
        let t0 = stamp.get().unwrap();
        assert!(t0 >= before && t0 <= unix_now_us());
        assert_eq!(src.started_unix_us(), Some(t0));
    }

    #[test]
    fn the_sink_records_its_first_sample() {
        let mut sink = PacedSink::new(MemorySink::new(10_000));
        let before = unix_now_us();
        for _ in 0..3 {
            sink.push_frame(&[0.0; 480]).unwrap();
        }
        let t = sink.first_played_unix_us().unwrap();
        assert!(t >= before);
        assert_eq!(sink.into_inner().samples().len(), 1_440);
    }

    #[test]
    fn run_ticks_on_schedule() {
        let mut pacer = Pacer::start_now(FrameDuration::Ms10);
        let schedule = pacer.schedule();
        let mut seen = Vec::new();
        pacer.run(|i, now| {
            assert!(now >= schedule.due(i));
            seen.push(i);
            i < 4
        });
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert_eq!(pacer.frames(), 5);
    }
}
