//! The pipeline's one audio format: 48 kHz mono `f32` in frames of 10 or 20 ms.
//!
//! Everything inside ruang speaks this format; conversion happens once, at the edges
//! ([`crate::source::WavSource`], [`crate::resample`], `ruang-device`).

/// Sample rate of the whole pipeline, in Hz. Opus runs natively at 48 kHz, so nothing between
/// capture and playout ever resamples.
pub const SAMPLE_RATE: u32 = 48_000;

/// Number of channels of the pipeline: voice rooms are mono.
pub const CHANNELS: u16 = 1;

/// Samples per millisecond at [`SAMPLE_RATE`].
pub const SAMPLES_PER_MS: u32 = SAMPLE_RATE / 1_000;

/// Duration of one audio frame: the unit that is captured, encoded, sent, buffered, mixed and
/// played out.
///
/// 20 ms is the default (the usual choice for VoIP: half the packets of 10 ms at the cost of
/// 10 ms more algorithmic delay); 10 ms is selectable for lower latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameDuration {
    /// 10 ms frames (480 samples).
    Ms10,
    /// 20 ms frames (960 samples), the default.
    #[default]
    Ms20,
}

impl FrameDuration {
    /// Samples in one frame at [`SAMPLE_RATE`] (480 or 960).
    pub const fn samples(self) -> usize {
        match self {
            FrameDuration::Ms10 => 480,
            FrameDuration::Ms20 => 960,
        }
    }

    /// Duration in milliseconds (10 or 20).
    pub const fn as_millis(self) -> u64 {
        match self {
            FrameDuration::Ms10 => 10,
            FrameDuration::Ms20 => 20,
        }
    }

    /// Duration in microseconds (10 000 or 20 000), the unit of every `now_us` in this crate.
    pub const fn as_micros(self) -> u64 {
        self.as_millis() * 1_000
    }

    /// Duration in 48 kHz timestamp ticks (same as [`samples`](Self::samples)).
    pub const fn ticks(self) -> u32 {
        self.samples() as u32
    }

    /// As a [`std::time::Duration`], for the threads that sleep to a schedule.
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.as_micros())
    }

    /// The frame duration whose length is `ms` milliseconds, if there is one.
    pub const fn from_millis(ms: u64) -> Option<FrameDuration> {
        match ms {
            10 => Some(FrameDuration::Ms10),
            20 => Some(FrameDuration::Ms20),
            _ => None,
        }
    }
}

impl std::fmt::Display for FrameDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.as_millis())
    }
}

/// Converts 48 kHz ticks to microseconds, exactly (one tick is 125/6 µs).
pub const fn ticks_to_micros(ticks: u64) -> u64 {
    ticks * 125 / 6
}

/// The length of `samples` of 48 kHz PCM (one sample a tick), µs.
pub const fn samples_to_micros(samples: usize) -> u64 {
    ticks_to_micros(samples as u64)
}

/// Converts microseconds to 48 kHz ticks, rounding down.
pub const fn micros_to_ticks(us: u64) -> u64 {
    us * 6 / 125
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_agree() {
        for f in [FrameDuration::Ms10, FrameDuration::Ms20] {
            assert_eq!(
                f.samples() as u64,
                SAMPLE_RATE as u64 * f.as_millis() / 1000
            );
            assert_eq!(ticks_to_micros(f.ticks() as u64), f.as_micros());
            assert_eq!(micros_to_ticks(f.as_micros()), f.ticks() as u64);
            assert_eq!(FrameDuration::from_millis(f.as_millis()), Some(f));
        }
        assert_eq!(FrameDuration::default(), FrameDuration::Ms20);
        assert_eq!(FrameDuration::from_millis(15), None);
    }
}
