//! A seeded synthetic voice: something speech-like to send when there is no microphone.
//!
//! Additive synthesis of a voiced source shaped by vowel formants:
//!
//! - pitch: a per-voice base of 100–220 Hz with a falling declination over each phrase, a
//!   pitch accent on stressed syllables and a slow wobble;
//! - timbre: the harmonics of the pitch up to 4 kHz, weighted by a -6 dB/octave tilt and the
//!   formant resonances (F1–F3) of a vowel picked per syllable, gliding between vowels;
//! - rhythm: syllables at 4–5.5 per second with a rise-and-fall amplitude envelope, some
//!   starting with a short fricative noise burst, grouped in phrases of 5–14 syllables
//!   separated by 0.3–0.9 s pauses of silence.
//!
//! Opus and voice-activity detectors treat it as speech (voiced frames, syllabic modulation,
//! real pauses), and the same seed always gives the same samples.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Source, SourceError, check_frame};
use crate::format::{FrameDuration, SAMPLE_RATE};

/// Highest harmonic frequency synthesised, in Hz.
const MAX_HARMONIC_HZ: f32 = 4_000.0;
/// Control-rate block: pitch, envelope and harmonic weights are updated this often (1 ms).
const BLOCK: usize = 48;
/// Most harmonics (4 kHz over the lowest pitch).
const MAX_HARMONICS: usize = 64;
/// Peak output level (full scale = 1.0).
const GAIN: f32 = 0.5;

/// Formants (F1, F2, F3) in Hz of five vowels (a, e, i, o, u), adult male averages.
const VOWELS: [[f32; 3]; 5] = [
    [730.0, 1090.0, 2440.0],
    [530.0, 1840.0, 2480.0],
    [270.0, 2290.0, 3010.0],
    [570.0, 840.0, 2410.0],
    [300.0, 870.0, 2240.0],
];
/// Half-bandwidths of the formant resonances in Hz.
const FORMANT_WIDTH: [f32; 3] = [90.0, 120.0, 170.0];
/// Relative strength of the formants.
const FORMANT_GAIN: [f32; 3] = [1.0, 0.7, 0.35];

#[derive(Clone, Debug)]
enum Segment {
    Syllable {
        len: usize,
        pos: usize,
        peak: f32,
        accent: f32,
        from: [f32; 3],
        to: [f32; 3],
        fricative: usize,
    },
    Pause {
        len: usize,
        pos: usize,
    },
}

/// A seeded, speech-like synthetic voice (see the module docs). Endless; wrap it in
/// [`super::Limited`] for a fixed length.
#[derive(Clone, Debug)]
pub struct VoiceSource {
    frame: FrameDuration,
    rng: ChaCha8Rng,
    base_f0: f32,
    formant_scale: f32,
    syllable_rate: f32,
    segment: Segment,
    syllables_left: u32,
    phrase_len: u32,
    vowel: [f32; 3],
    phase: f32,
    wobble: f32,
    weights: [f32; MAX_HARMONICS],
    harmonics: usize,
    step: f32,
    env_prev: f32,
    env_next: f32,
    block_pos: usize,
    noise_prev: f32,
}

impl VoiceSource {
    /// A voice picked by `seed` (pitch, timbre, pace), in frames of `frame`.
    pub fn new(seed: u64, frame: FrameDuration) -> VoiceSource {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let base_f0 = rng.random_range(100.0..220.0);
        // Higher voices have shorter vocal tracts: scale formants with the pitch a little.
        let formant_scale = 1.0 + (base_f0 - 100.0) / 120.0 * 0.17;
        let syllable_rate = rng.random_range(4.0..5.5);
        let vowel = VOWELS[rng.random_range(0..VOWELS.len())].map(|f| f * formant_scale);
        let mut voice = VoiceSource {
            frame,
            rng,
            base_f0,
            formant_scale,
            syllable_rate,
            segment: Segment::Pause { len: 0, pos: 0 },
            syllables_left: 0,
            phrase_len: 1,
            vowel,
            phase: 0.0,
            wobble: 0.0,
            weights: [0.0; MAX_HARMONICS],
            harmonics: 0,
            step: 0.0,
            env_prev: 0.0,
            env_next: 0.0,
            block_pos: BLOCK,
            noise_prev: 0.0,
        };
        // Start talking at once: a short lead-in pause of 100 ms.
        voice.segment = Segment::Pause {
            len: SAMPLE_RATE as usize / 10,
            pos: 0,
        };
        voice
    }

    /// The voice's base pitch in Hz.
    pub fn base_pitch_hz(&self) -> f32 {
        self.base_f0
    }

    fn next_segment(&mut self) {
        if self.syllables_left == 0 {
            if matches!(self.segment, Segment::Syllable { .. }) {
                let len = (self.rng.random_range(0.3..0.9) * SAMPLE_RATE as f32) as usize;
                self.segment = Segment::Pause { len, pos: 0 };
                return;
            }
            self.phrase_len = self.rng.random_range(5..=14);
            self.syllables_left = self.phrase_len;
        }
        self.syllables_left -= 1;
        let secs = self.rng.random_range(0.8..1.25) / self.syllable_rate;
        let len = (secs * SAMPLE_RATE as f32) as usize;
        let to = VOWELS[self.rng.random_range(0..VOWELS.len())].map(|f| f * self.formant_scale);
        let from = self.vowel;
        self.vowel = to;
        let fricative = if self.rng.random_bool(0.45) {
            (self.rng.random_range(0.03..0.08) * SAMPLE_RATE as f32) as usize
        } else {
            0
        };
        self.segment = Segment::Syllable {
            len,
            pos: 0,
            peak: self.rng.random_range(0.55..1.0),
            accent: if self.rng.random_bool(0.3) {
                self.rng.random_range(0.05..0.15)
            } else {
                0.0
            },
            from,
            to,
            fricative,
        };
    }

    /// Updates pitch, envelope target and harmonic weights for the next control block.
    fn control(&mut self) {
        self.wobble = 0.97 * self.wobble + self.rng.random_range(-0.004..0.004);
        let (env, f0, formants) = match &self.segment {
            Segment::Pause { .. } => (0.0, self.base_f0, self.vowel),
            Segment::Syllable {
                len,
                pos,
                peak,
                accent,
                from,
                to,
                ..
            } => {
                let x = *pos as f32 / *len as f32;
                // Rise and fall within the syllable, never quite silent mid-phrase.
                let env = peak * (std::f32::consts::PI * x).sin().powf(0.8);
                let done = 1.0 - self.syllables_left as f32 / self.phrase_len as f32;
                let declination = 0.12 - 0.24 * done;
                let f0 = self.base_f0
                    * (1.0 + declination + accent * (std::f32::consts::PI * x).sin() + self.wobble);
                let glide = (x / 0.3).min(1.0);
                let formants = [0, 1, 2].map(|i| from[i] + (to[i] - from[i]) * glide);
                (env, f0, formants)
            }
        };
        self.env_prev = self.env_next;
        self.env_next = env;
        self.step = std::f32::consts::TAU * f0 / SAMPLE_RATE as f32;
        self.harmonics = ((MAX_HARMONIC_HZ / f0) as usize).clamp(1, MAX_HARMONICS);
        let mut total = 0.0;
        for k in 1..=self.harmonics {
            let f = k as f32 * f0;
            let resonance: f32 = (0..3)
                .map(|i| {
                    let d = (f - formants[i]) / FORMANT_WIDTH[i];
                    FORMANT_GAIN[i] / (1.0 + d * d)
                })
                .sum();
            let w = (resonance + 0.02) / k as f32;
            self.weights[k - 1] = w;
            total += w;
        }
        let norm = if total > 0.0 { 1.0 / total } else { 0.0 };
        for w in &mut self.weights[..self.harmonics] {
            *w *= norm;
        }
    }

    fn sample(&mut self) -> f32 {
        if self.block_pos == BLOCK {
            self.block_pos = 0;
            self.control();
        }
        let env =
            self.env_prev + (self.env_next - self.env_prev) * self.block_pos as f32 / BLOCK as f32;
        self.block_pos += 1;

        // Harmonics by complex rotation: 4 multiplications per harmonic, one sin/cos per sample.
        let (s1, c1) = self.phase.sin_cos();
        let (mut s, mut c) = (s1, c1);
        let mut voiced = 0.0;
        for &w in &self.weights[..self.harmonics] {
            voiced += w * s;
            (s, c) = (s * c1 + c * s1, c * c1 - s * s1);
        }
        self.phase = (self.phase + self.step) % std::f32::consts::TAU;

        let mut noise = 0.0;
        let advance = match &mut self.segment {
            Segment::Pause { len, pos } => {
                *pos += 1;
                *pos >= *len
            }
            Segment::Syllable {
                len,
                pos,
                fricative,
                peak,
                ..
            } => {
                if *pos < *fricative {
                    let white: f32 = self.rng.random_range(-1.0..1.0);
                    // A first difference tilts the noise towards the highs, like a fricative.
                    let x = *pos as f32 / *fricative as f32;
                    noise = 0.25 * *peak * (1.0 - x) * (white - self.noise_prev);
                    self.noise_prev = white;
                }
                *pos += 1;
                *pos >= *len
            }
        };
        if advance {
            self.next_segment();
        }
        GAIN * (env * voiced + noise)
    }
}

impl Source for VoiceSource {
    fn frame_duration(&self) -> FrameDuration {
        self.frame
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        check_frame(self.frame, out)?;
        for s in out.iter_mut() {
            *s = self.sample();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::{Vad, rms_dbfs};

    fn render(seed: u64, seconds: usize) -> Vec<f32> {
        let mut v = VoiceSource::new(seed, FrameDuration::Ms20);
        let mut out = vec![0.0; seconds * 48_000];
        for chunk in out.chunks_mut(960) {
            v.next_frame(chunk).unwrap();
        }
        out
    }

    #[test]
    fn same_seed_same_voice_other_seed_other_voice() {
        assert_eq!(render(7, 1), render(7, 1));
        assert_ne!(render(7, 1), render(8, 1));
    }

    #[test]
    fn sounds_like_speech() {
        let pcm = render(3, 20);
        assert!(pcm.iter().all(|x| x.abs() < 0.8));
        let levels: Vec<f32> = pcm.chunks(960).map(rms_dbfs).collect();
        let loud = levels.iter().filter(|&&l| l > -30.0).count();
        let silent = levels.iter().filter(|&&l| l < -60.0).count();
        // Mostly talking, with real pauses.
        assert!(
            loud > levels.len() / 3,
            "loud frames {loud} of {}",
            levels.len()
        );
        assert!(silent > levels.len() / 20, "silent frames {silent}");
        // The VAD sees phrases and pauses, not one long block.
        let mut vad = Vad::default();
        let flags: Vec<bool> = pcm.chunks(960).map(|f| vad.update(f).active).collect();
        let onsets = flags.windows(2).filter(|w| !w[0] && w[1]).count();
        assert!(onsets >= 4, "{onsets} talk spurts in 20 s");
        // Syllable-rate modulation: the envelope crosses its median several times a second.
        let mut sorted = levels.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let crossings = levels
            .windows(2)
            .filter(|w| (w[0] < median) != (w[1] < median))
            .count();
        assert!(
            crossings > 2 * 20 * 2,
            "{crossings} envelope crossings in 20 s"
        );
    }
}
