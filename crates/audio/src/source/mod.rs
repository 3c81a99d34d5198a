//! Where audio comes from: the [`Source`] trait and its file and synthetic implementations.
//!
//! A source hands out one frame of 48 kHz mono PCM per call. File and synthetic sources are
//! as fast as the CPU; to run them in real time, wrap them in `ruang-device`'s pacer (frame
//! `i` at `t0 + i × frame`, see [`crate::pace`]). The microphone in `ruang-device` implements
//! the same trait and blocks until its next frame is captured.
//!
//! - [`WavSource`]: a WAV file of any common rate and channel count, converted to 48 kHz
//!   mono with a real resampler; optionally looping.
//! - [`VoiceSource`]: a seeded, speech-like synthetic voice.
//! - [`ToneSource`], [`SilenceSource`]: test signals.
//! - [`Limited`]: ends any source after a number of frames.

mod voice;
mod wav;

pub use voice::VoiceSource;
pub use wav::{WavInfo, WavSource};

use std::path::PathBuf;

use crate::format::{FrameDuration, SAMPLE_RATE};
use crate::resample::ResampleError;

/// What went wrong producing audio.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A WAV file could not be opened or read.
    #[error("cannot read WAV file {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// hound's reason.
        #[source]
        source: hound::Error,
    },
    /// A WAV file in a format we do not read.
    #[error("unsupported WAV file {path}: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// Sample-rate conversion failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The output buffer is not one frame long.
    #[error("a frame is {expected} samples, the buffer holds {got}")]
    FrameSize {
        /// Samples in one frame.
        expected: usize,
        /// Buffer length.
        got: usize,
    },
    /// A live source (microphone) produced nothing within the timeout.
    #[error("no audio from the device within {0:?}")]
    Timeout(std::time::Duration),
    /// A live source failed.
    #[error("audio device error: {0}")]
    Device(String),
}

/// A producer of 48 kHz mono frames.
pub trait Source {
    /// Duration of the frames this source produces.
    fn frame_duration(&self) -> FrameDuration;

    /// Fills `out` (exactly one frame) with the next frame. Returns `Ok(false)` once the
    /// source has ended (then `out` is silence); a source that ends mid-frame pads the last
    /// frame with silence and returns `Ok(true)` for it.
    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError>;
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn frame_duration(&self) -> FrameDuration {
        (**self).frame_duration()
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        (**self).next_frame(out)
    }
}

/// Checks that `out` is one frame of `frame`.
pub(crate) fn check_frame(frame: FrameDuration, out: &[f32]) -> Result<(), SourceError> {
    if out.len() == frame.samples() {
        Ok(())
    } else {
        Err(SourceError::FrameSize {
            expected: frame.samples(),
            got: out.len(),
        })
    }
}

/// A sine tone.
#[derive(Clone, Debug)]
pub struct ToneSource {
    frame: FrameDuration,
    freq_hz: f32,
    amplitude: f32,
    phase: f64,
}

impl ToneSource {
    /// A tone of `freq_hz` with peak `amplitude` (full scale = 1.0), starting at phase 0.
    pub fn new(freq_hz: f32, amplitude: f32, frame: FrameDuration) -> ToneSource {
        ToneSource {
            frame,
            freq_hz,
            amplitude,
            phase: 0.0,
        }
    }
}

impl Source for ToneSource {
    fn frame_duration(&self) -> FrameDuration {
        self.frame
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        check_frame(self.frame, out)?;
        let step = std::f64::consts::TAU * self.freq_hz as f64 / SAMPLE_RATE as f64;
        for s in out.iter_mut() {
            *s = self.amplitude * self.phase.sin() as f32;
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
        Ok(true)
    }
}

/// Endless digital silence.
#[derive(Clone, Copy, Debug)]
pub struct SilenceSource {
    frame: FrameDuration,
}

impl SilenceSource {
    /// Silence in frames of `frame`.
    pub fn new(frame: FrameDuration) -> SilenceSource {
        SilenceSource { frame }
    }
}

impl Source for SilenceSource {
    fn frame_duration(&self) -> FrameDuration {
        self.frame
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        check_frame(self.frame, out)?;
        out.iter_mut().for_each(|s| *s = 0.0);
        Ok(true)
    }
}

/// Ends a source after a number of frames.
#[derive(Clone, Debug)]
pub struct Limited<S> {
    inner: S,
    remaining: u64,
}

impl<S: Source> Limited<S> {
    /// `inner`, ended after `frames` frames (or earlier if it ends by itself).
    pub fn new(inner: S, frames: u64) -> Limited<S> {
        Limited {
            inner,
            remaining: frames,
        }
    }

    /// `inner`, ended after `ms` milliseconds (rounded up to whole frames).
    pub fn millis(inner: S, ms: u64) -> Limited<S> {
        let frames = ms.div_ceil(inner.frame_duration().as_millis());
        Limited::new(inner, frames)
    }

    /// The wrapped source.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Source> Source for Limited<S> {
    fn frame_duration(&self) -> FrameDuration {
        self.inner.frame_duration()
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        check_frame(self.inner.frame_duration(), out)?;
        if self.remaining == 0 {
            out.iter_mut().for_each(|s| *s = 0.0);
            return Ok(false);
        }
        self.remaining -= 1;
        self.inner.next_frame(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_has_its_frequency_and_amplitude() {
        let mut tone = ToneSource::new(1_000.0, 0.5, FrameDuration::Ms20);
        let mut all = Vec::new();
        let mut frame = vec![0.0; 960];
        for _ in 0..50 {
            assert!(tone.next_frame(&mut frame).unwrap());
            all.extend_from_slice(&frame);
        }
        let crossings = all.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((999..=1001).contains(&crossings), "{crossings}");
        assert!((crate::level::peak(&all) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn limited_ends_and_checks_sizes() {
        let mut s = Limited::millis(SilenceSource::new(FrameDuration::Ms10), 25);
        let mut frame = vec![1.0; 480];
        let results: Vec<bool> = (0..5).map(|_| s.next_frame(&mut frame).unwrap()).collect();
        assert_eq!(results, vec![true, true, true, false, false]);
        assert!(frame.iter().all(|&x| x == 0.0));
        assert!(matches!(
            s.next_frame(&mut [0.0; 960]),
            Err(SourceError::FrameSize {
                expected: 480,
                got: 960
            })
        ));
    }
}
