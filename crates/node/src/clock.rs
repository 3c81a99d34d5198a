//! The node's clocks: a monotonic clock in microseconds for audio timing, and unix time for
//! signed timestamps. The audio threads sleep to absolute deadlines on the monotonic clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (for signed events, presence, announcements).
pub fn unix_ms() -> u64 {
    unix_us() / 1_000
}

/// Unix time in microseconds.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A monotonic clock counting microseconds from its creation, with the unix time it started
/// at, so a monotonic instant converts to wall-clock microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
    epoch_unix_us: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
            epoch_unix_us: unix_us(),
        }
    }

    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Microseconds on this clock at `instant`.
    pub fn at(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Unix microseconds of a point on this clock.
    pub fn unix_us(&self, mono_us: u64) -> u64 {
        self.epoch_unix_us + mono_us
    }

    /// Sleeps until `mono_us` on this clock (returns at once if it has passed).
    pub fn sleep_until(&self, mono_us: u64) {
        let now = self.now_us();
        if mono_us > now {
            std::thread::sleep(Duration::from_micros(mono_us - now));
        }
    }
}
