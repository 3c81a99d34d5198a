//! Mixing any number of speakers into one output, with a soft limiter.
//!
//! Summing voices can exceed full scale. Clamping would distort harshly and converting an
//! out-of-range float to an integer format would wrap around; instead the [`Limiter`] rides the
//! gain down smoothly (instant attack, ~150 ms release) so the output peaks at most at
//! [`LIMIT`], and shapes what is left through a soft knee that approaches but never reaches
//! 1.0. Signals below [`KNEE`] pass untouched.
//!
//! Per-speaker levels and the voice flag come from [`crate::level::Vad`]; a
//! [`crate::jitter::SpeakerStream`] computes them for every pulled frame.

use crate::format::{FrameDuration, SAMPLE_RATE};

/// Level (linear, full scale = 1.0) below which the limiter does nothing.
pub const KNEE: f32 = 0.7;

/// Peak the limiter's gain control aims for.
pub const LIMIT: f32 = 0.95;

/// Release time constant of the gain in seconds: how fast the gain recovers after a peak.
const RELEASE_S: f32 = 0.150;

/// Look-ahead-free peak limiter with a soft knee.
#[derive(Clone, Debug)]
pub struct Limiter {
    envelope: f32,
    release: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl Limiter {
    /// A limiter at rest (unity gain).
    pub fn new() -> Limiter {
        Limiter {
            envelope: 0.0,
            release: (-1.0 / (RELEASE_S * SAMPLE_RATE as f32)).exp(),
        }
    }

    /// Limits `buf` in place. Afterwards every sample is finite and within `(-1.0, 1.0)`.
    pub fn process(&mut self, buf: &mut [f32]) {
        for x in buf.iter_mut() {
            let v = if x.is_finite() { *x } else { 0.0 };
            let a = v.abs();
            // Peak envelope: jumps up at once, decays with the release time constant.
            self.envelope = if a > self.envelope {
                a
            } else {
                a + self.release * (self.envelope - a)
            };
            let gain = if self.envelope > LIMIT {
                LIMIT / self.envelope
            } else {
                1.0
            };
            *x = soft_knee(v * gain);
        }
    }

    /// The gain currently applied to a full-scale input (1.0 = none).
    pub fn gain_reduction(&self) -> f32 {
        if self.envelope > LIMIT {
            LIMIT / self.envelope
        } else {
            1.0
        }
    }
}

/// Identity below [`KNEE`]; above it, a tanh curve with slope 1 at the knee that tends to (and
/// never reaches) 1.0. Continuous and smooth, so it adds no clicks.
pub fn soft_knee(x: f32) -> f32 {
    let a = x.abs();
    if a <= KNEE {
        return x;
    }
    let room = 1.0 - KNEE;
    let y = KNEE + room * ((a - KNEE) / room).tanh();
    // tanh rounds to exactly 1.0 for large arguments in f32; keep strictly inside full scale.
    y.min(1.0 - f32::EPSILON).copysign(x)
}

/// Sums speaker frames into one output frame and limits the result.
#[derive(Clone, Debug)]
pub struct Mixer {
    frame: FrameDuration,
    limiter: Limiter,
    acc: Vec<f32>,
}

impl Mixer {
    /// A mixer for frames of `frame`.
    pub fn new(frame: FrameDuration) -> Mixer {
        Mixer {
            frame,
            limiter: Limiter::new(),
            acc: vec![0.0; frame.samples()],
        }
    }

    /// Frame duration this mixer works in.
    pub fn frame(&self) -> FrameDuration {
        self.frame
    }

    /// Mixes `inputs` (each one frame of 48 kHz mono; shorter inputs count as padded with
    /// silence, longer ones are cut) into `out`, which must be one frame long.
    ///
    /// No inputs, or only silent ones, give silence.
    pub fn mix<'a>(&mut self, inputs: impl IntoIterator<Item = &'a [f32]>, out: &mut [f32]) {
        self.mix_with_gains(inputs.into_iter().map(|pcm| (pcm, 1.0)), out);
    }

    /// Like [`mix`](Self::mix), with a linear gain per input (e.g. a per-speaker volume).
    pub fn mix_with_gains<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = (&'a [f32], f32)>,
        out: &mut [f32],
    ) {
        let n = self.frame.samples();
        debug_assert_eq!(out.len(), n, "mixer output must be one frame");
        self.acc.iter_mut().for_each(|s| *s = 0.0);
        for (pcm, gain) in inputs {
            for (acc, &x) in self.acc.iter_mut().zip(pcm.iter().take(n)) {
                *acc += x * gain;
            }
        }
        self.limiter.process(&mut self.acc);
        let len = out.len().min(n);
        out[..len].copy_from_slice(&self.acc[..len]);
        out[len..].iter_mut().for_each(|s| *s = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knee_is_continuous_monotonic_and_bounded() {
        let mut prev = -10.0f32;
        let mut last_y = soft_knee(prev);
        for i in 0..20_000 {
            let x = -10.0 + i as f32 * 0.001;
            let y = soft_knee(x);
            assert!(y.abs() < 1.0);
            assert!(y >= last_y, "not monotonic at {x}");
            assert!((y - last_y).abs() <= (x - prev).abs() + 1e-6, "jump at {x}");
            prev = x;
            last_y = y;
        }
        assert_eq!(soft_knee(0.5), 0.5);
        assert_eq!(soft_knee(-0.7), -0.7);
        assert!(soft_knee(1e9) < 1.0);
    }

    #[test]
    fn limiter_passes_quiet_signals_untouched() {
        let mut lim = Limiter::new();
        let original: Vec<f32> = (0..960).map(|i| 0.6 * (i as f32 * 0.05).sin()).collect();
        let mut buf = original.clone();
        lim.process(&mut buf);
        assert_eq!(buf, original);
        assert_eq!(lim.gain_reduction(), 1.0);
    }

    #[test]
    fn limiter_tames_garbage() {
        let mut lim = Limiter::new();
        let mut buf = vec![f32::NAN, f32::INFINITY, -1e30, 3.0, -2.0];
        lim.process(&mut buf);
        assert!(
            buf.iter().all(|x| x.is_finite() && x.abs() < 1.0),
            "{buf:?}"
        );
    }
}
