//! Voice processing for microphones: acoustic echo cancellation, noise suppression and
//! automatic gain control, through sonora (a pure-Rust port of WebRTC's audio processing
//! module: AEC3, its noise suppressor, AGC2, the high-pass filter).
//!
//! A person on a laptop without headphones feeds the room back its own sound: the
//! loudspeaker plays the other speakers, the microphone hears them again. The
//! [`VoiceProcessor`] takes the audio as it is played ([`render`](VoiceProcessor::render), the
//! far-end reference) and each microphone frame ([`capture`](VoiceProcessor::capture), in
//! place) and removes what it can predict of the first in the second, then the steady
//! background noise, then levels the voice. Everything runs on buffers: no device, no clock.
//!
//! Processing is per 10 ms block (480 samples at 48 kHz); frames of 10 or 20 ms are split.

use crate::format::SAMPLE_RATE;

/// Samples per processing block (10 ms at 48 kHz).
pub const BLOCK: usize = SAMPLE_RATE as usize / 100;

/// Which processing runs on the microphone's audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoiceConfig {
    /// Remove the echo of what the loudspeaker plays (needs [`VoiceProcessor::render`]).
    pub echo_cancellation: bool,
    /// Suppress steady background noise (fans, hum, street).
    pub noise_suppression: bool,
    /// Level the voice (adaptive digital gain with a limiter).
    pub gain_control: bool,
}

impl VoiceConfig {
    /// Everything on: the default for a microphone.
    pub fn microphone() -> VoiceConfig {
        VoiceConfig {
            echo_cancellation: true,
            noise_suppression: true,
            gain_control: true,
        }
    }

    /// Everything off: the default for files and synthetic sources.
    pub fn off() -> VoiceConfig {
        VoiceConfig {
            echo_cancellation: false,
            noise_suppression: false,
            gain_control: false,
        }
    }

    /// Whether any processing is on.
    pub fn any(&self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.gain_control
    }
}

/// Echo cancellation, noise suppression and gain control for one microphone.
pub struct VoiceProcessor {
    apm: sonora::AudioProcessing,
    config: VoiceConfig,
    out: Vec<f32>,
    /// Render audio not yet a whole block.
    render_pending: Vec<f32>,
    dither: Dither,
}

/// Noise added to every sample the processor takes, at most ± this (−140 dBFS, far under a
/// 16-bit recording's own noise floor at −96 dBFS). A player's silence is exact zeros, and
/// from there the echo canceller's smoothed spectra and filter states decay into subnormal
/// floats, which x86 computes tens of times slower: after the far end stopped talking,
/// processing a 20 ms frame took ~1.9 ms of CPU instead of ~0.3 ms. The noise keeps them
/// normal. (The CPU's flush-to-zero flags would too, but only through `unsafe` code that Rust
/// documents as undefined behaviour.)
pub const ANTI_DENORMAL_NOISE: f32 = 1e-7;

/// A fixed sequence of noise within ±[`ANTI_DENORMAL_NOISE`] (xorshift32: only its level
/// matters, not its randomness).
#[derive(Clone, Debug)]
struct Dither(u32);

impl Dither {
    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * ANTI_DENORMAL_NOISE
    }
}

impl std::fmt::Debug for VoiceProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceProcessor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VoiceProcessor {
    /// A processor doing what `config` asks (48 kHz mono in and out).
    pub fn new(config: VoiceConfig) -> VoiceProcessor {
        use sonora::config::{EchoCanceller, GainController2, HighPassFilter, NoiseSuppression};
        let apm_config = sonora::Config {
            high_pass_filter: config.any().then(HighPassFilter::default),
            echo_canceller: config.echo_cancellation.then(EchoCanceller::default),
            noise_suppression: config.noise_suppression.then(NoiseSuppression::default),
            gain_controller2: config.gain_control.then(|| GainController2 {
                adaptive_digital: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let stream = sonora::StreamConfig::new(SAMPLE_RATE, 1);
        let apm = sonora::AudioProcessing::builder()
            .config(apm_config)
            .capture_config(stream)
            .render_config(stream)
            .build();
        VoiceProcessor {
            apm,
            config,
            out: vec![0.0; BLOCK],
            render_pending: Vec::with_capacity(2 * BLOCK),
            dither: Dither(0x9e37_79b9),
        }
    }

    /// What this processor does.
    pub fn config(&self) -> VoiceConfig {
        self.config
    }

    /// Tells the echo canceller how long after [`render`](Self::render) the played audio
    /// reaches the microphone, ms (0..=500; it estimates the rest itself).
    pub fn set_delay_ms(&mut self, ms: u32) {
        let _ = self.apm.set_stream_delay_ms(ms.min(500) as i32);
    }

    /// Takes audio as it is played (any length; kept until it makes whole blocks). Without
    /// echo cancellation it is ignored.
    pub fn render(&mut self, played: &[f32]) {
        if !self.config.echo_cancellation {
            return;
        }
        let dither = &mut self.dither;
        self.render_pending
            .extend(played.iter().map(|v| v + dither.next()));
        let blocks = self.render_pending.len() / BLOCK;
        for b in 0..blocks {
            let block = &self.render_pending[b * BLOCK..(b + 1) * BLOCK];
            // The render output (unchanged audio) is not used.
            let _ = self
                .apm
                .process_render_f32(&[block], &mut [self.out.as_mut_slice()]);
        }
        self.render_pending.drain(..blocks * BLOCK);
    }

    /// Processes one microphone frame in place. Its length must be a whole number of 10 ms
    /// blocks; a trailing partial block is left as it is.
    pub fn capture(&mut self, frame: &mut [f32]) {
        if !self.config.any() {
            return;
        }
        for block in frame.chunks_exact_mut(BLOCK) {
            for v in block.iter_mut() {
                *v += self.dither.next();
            }
            if self
                .apm
                .process_capture_f32(&[&*block], &mut [self.out.as_mut_slice()])
                .is_ok()
            {
                block.copy_from_slice(&self.out);
            }
        }
    }

    /// The echo canceller's own estimate of how much echo it removes, dB (after it has
    /// converged; `None` before or without echo cancellation).
    pub fn echo_return_loss_enhancement_db(&self) -> Option<f64> {
        self.apm.statistics().echo_return_loss_enhancement
    }
}
