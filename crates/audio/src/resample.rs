//! Sample-rate and channel conversion at the edges of the pipeline (files and sound cards).
//!
//! [`Resampler`] streams mono audio from any rate to any rate with rubato's FFT resampler (a
//! band-limited, synchronous converter: exact for every integer rate pair), in chunks of about
//! 10 ms, through an internal FIFO: push whatever you have, pop whatever you need.
//! [`downmix`] and [`upmix`] convert between interleaved multi-channel and mono.

use std::collections::VecDeque;

use rubato::{FftFixedIn, Resampler as _};

/// Input chunk the resampler works in, in ms (rounded up to the rate pair's smallest chunk).
const CHUNK_MS: usize = 10;

/// What went wrong converting sample rates.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The rate pair cannot be converted (a rate of zero).
    #[error("cannot resample from {from} Hz to {to} Hz: {source}")]
    Construction {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// rubato's reason.
        #[source]
        source: rubato::ResamplerConstructionError,
    },
    /// rubato failed while processing (should not happen with our buffer sizes).
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
}

/// Streaming mono sample-rate converter with an output FIFO.
pub struct Resampler {
    from: u32,
    to: u32,
    inner: Option<FftFixedIn<f32>>,
    chunk_in: usize,
    pending: Vec<f32>,
    input: [Vec<f32>; 1],
    output: [Vec<f32>; 1],
    fifo: VecDeque<f32>,
    /// Output samples still to drop at the start (delay compensation).
    trim: usize,
    compensating: bool,
    pushed_in: u64,
    produced_out: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("chunk_in", &self.chunk_in)
            .field("buffered", &self.fifo.len())
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz. Equal rates pass samples through untouched.
    pub fn new(from: u32, to: u32) -> Result<Resampler, ResampleError> {
        let construction = |source| ResampleError::Construction { from, to, source };
        let (inner, chunk_in) = if from == to {
            (None, (from as usize * CHUNK_MS / 1000).max(1))
        } else {
            if from == 0 || to == 0 {
                // Let rubato produce the error value for us.
                return Err(construction(
                    FftFixedIn::<f32>::new(from as usize, to as usize, 1, 1, 1)
                        .err()
                        .unwrap_or(rubato::ResamplerConstructionError::InvalidSampleRate {
                            input: from as usize,
                            output: to as usize,
                        }),
                ));
            }
            let g = gcd(from as usize, to as usize);
            let min_chunk = from as usize / g;
            let wanted = (from as usize * CHUNK_MS / 1000).max(1);
            let mut chunk = wanted.div_ceil(min_chunk) * min_chunk;
            // With an odd FFT length the reported delay is half a sample off; keep it even.
            if chunk % 2 == 1 {
                chunk *= 2;
            }
            let inner = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1)
                .map_err(construction)?;
            (Some(inner), chunk)
        };
        let out_max = inner.as_ref().map_or(chunk_in, |r| r.output_frames_max());
        Ok(Resampler {
            from,
            to,
            inner,
            chunk_in,
            pending: Vec::with_capacity(chunk_in),
            input: [vec![0.0; chunk_in]],
            output: [vec![0.0; out_max]],
            fifo: VecDeque::with_capacity(out_max * 4),
            trim: 0,
            compensating: false,
            pushed_in: 0,
            produced_out: 0,
        })
    }

    /// Drops the converter's own delay from the start of the output, so output sample `n`
    /// lines up with input time `n / to` (what a file reader wants; live capture keeps the
    /// delay instead of waiting for more input). Call before pushing anything.
    pub fn compensate_delay(&mut self) {
        self.trim = self.delay();
        self.compensating = true;
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Delay the converter adds, in output samples (0 when the rates are equal).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Output samples ready to pop.
    pub fn available(&self) -> usize {
        self.fifo.len()
    }

    /// Input samples the converter takes per internal chunk (its granularity).
    pub fn chunk_len(&self) -> usize {
        self.chunk_in
    }

    /// Feeds mono input; converted output becomes available chunk by chunk.
    pub fn push(&mut self, input: &[f32]) -> Result<(), ResampleError> {
        self.pushed_in += input.len() as u64;
        if self.inner.is_none() {
            self.emit_passthrough(input);
            return Ok(());
        }
        let mut rest = input;
        while !rest.is_empty() {
            let take = (self.chunk_in - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.chunk_in {
                self.process_pending()?;
            }
        }
        Ok(())
    }

    /// End of input: pads with silence until every input sample has come out (and trims the
    /// padding beyond the input's length when delay compensation is on).
    pub fn flush(&mut self) -> Result<(), ResampleError> {
        if self.inner.is_none() {
            return Ok(());
        }
        let expected = (self.pushed_in * self.to as u64).div_ceil(self.from as u64);
        let target = if self.trim_enabled() {
            expected
        } else {
            expected + self.delay() as u64
        };
        // Each round emits a whole chunk; a bounded number of rounds covers the delay.
        let mut rounds = 0;
        while self.produced_out < target && rounds < 64 {
            let fill = self.chunk_in - self.pending.len();
            self.pending.extend(std::iter::repeat_n(0.0, fill));
            self.process_pending()?;
            rounds += 1;
        }
        let excess = self.produced_out.saturating_sub(target) as usize;
        let keep = self.fifo.len().saturating_sub(excess);
        self.fifo.truncate(keep);
        self.produced_out = target;
        Ok(())
    }

    /// Pops up to `out.len()` samples; returns how many were written.
    pub fn pop(&mut self, out: &mut [f32]) -> usize {
        let n = out.len().min(self.fifo.len());
        for (o, s) in out.iter_mut().zip(self.fifo.drain(..n)) {
            *o = s;
        }
        n
    }

    /// Forgets all buffered audio and state.
    pub fn reset(&mut self) {
        if let Some(r) = self.inner.as_mut() {
            r.reset();
        }
        self.pending.clear();
        self.fifo.clear();
        self.pushed_in = 0;
        self.produced_out = 0;
        if self.compensating {
            self.trim = self.delay();
        }
    }

    fn trim_enabled(&self) -> bool {
        self.compensating
    }

    fn emit_passthrough(&mut self, input: &[f32]) {
        self.fifo.extend(input.iter().copied());
        self.produced_out += input.len() as u64;
    }

    fn process_pending(&mut self) -> Result<(), ResampleError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        self.input[0].copy_from_slice(&self.pending);
        self.pending.clear();
        let (_, written) = inner.process_into_buffer(&self.input, &mut self.output, None)?;
        let produced = &self.output[0][..written];
        let skip = self.trim.min(produced.len());
        self.trim -= skip;
        self.fifo.extend(produced[skip..].iter().copied());
        self.produced_out += (written - skip) as u64;
        Ok(())
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Averages interleaved `channels`-channel audio into mono, appending to `out`.
pub fn downmix(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() * scale),
    );
}

/// Copies mono audio to every channel of an interleaved buffer, appending to `out`.
pub fn upmix(mono: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(mono);
        return;
    }
    for &s in mono {
        out.extend(std::iter::repeat_n(s, channels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn passthrough_at_equal_rates() {
        let mut r = Resampler::new(48_000, 48_000).unwrap();
        r.push(&[1.0, 2.0, 3.0]).unwrap();
        let mut out = [0.0; 5];
        assert_eq!(r.pop(&mut out), 3);
        assert_eq!(&out[..3], &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn length_is_preserved_with_delay_compensation() {
        for from in [8_000, 16_000, 22_050, 44_100, 96_000] {
            let mut r = Resampler::new(from, 48_000).unwrap();
            r.compensate_delay();
            let input = sine(from, 440.0, from as usize / 3 + 17);
            for chunk in input.chunks(333) {
                r.push(chunk).unwrap();
            }
            r.flush().unwrap();
            let expected = (input.len() as u64 * 48_000).div_ceil(from as u64) as usize;
            assert_eq!(r.available(), expected, "from {from}");
            // The output is aligned: compare with an ideal 440 Hz sine at 48 kHz in the middle.
            let mut out = vec![0.0; expected];
            r.pop(&mut out);
            let ideal = sine(48_000, 440.0, expected);
            let mid = expected / 2;
            let err: f32 = (mid..mid + 480)
                .map(|i| (out[i] - ideal[i]).abs())
                .fold(0.0, f32::max);
            // Aligned to the sample: one sample off would be an error of 0.058.
            assert!(err < 1e-3, "from {from}: max error {err}");
        }
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(matches!(
            Resampler::new(0, 48_000),
            Err(ResampleError::Construction { .. })
        ));
    }

    #[test]
    fn mixing_channels() {
        let mut mono = Vec::new();
        downmix(&[1.0, 0.0, 0.5, 0.5], 2, &mut mono);
        assert_eq!(mono, vec![0.5, 0.5]);
        let mut st = Vec::new();
        upmix(&[0.1, 0.2], 3, &mut st);
        assert_eq!(st, vec![0.1, 0.1, 0.1, 0.2, 0.2, 0.2]);
    }
}
