//! Audio levels and voice activity: what drives the "who is talking" indicator.
//!
//! - [`rms_dbfs`] / [`peak`]: the level of one frame.
//! - [`to_wire`] / [`from_wire`]: the 7-bit level carried in [`crate::wire::Frame::level`]
//!   (RFC 6464 convention: the value is -dBov, 0 = full scale, 127 = silence or quieter).
//! - [`Vad`]: an energy voice-activity detector with an adaptive noise floor and a hangover, so
//!   the indicator neither flickers between words nor lights up on steady background noise.

use crate::format::FrameDuration;

/// The level reported for digital silence, in dBFS (and the floor of every level).
pub const SILENCE_DBFS: f32 = -127.0;

/// RMS level of `pcm` in dBFS (a full-scale square wave is 0 dBFS, a full-scale sine
/// -3 dBFS), floored at [`SILENCE_DBFS`]. Non-finite samples count as zero.
pub fn rms_dbfs(pcm: &[f32]) -> f32 {
    if pcm.is_empty() {
        return SILENCE_DBFS;
    }
    let sum: f64 = pcm
        .iter()
        .map(|&x| {
            if x.is_finite() {
                (x as f64) * (x as f64)
            } else {
                0.0
            }
        })
        .sum();
    let mean = sum / pcm.len() as f64;
    if mean <= 0.0 {
        return SILENCE_DBFS;
    }
    ((10.0 * mean.log10()) as f32).max(SILENCE_DBFS)
}

/// Largest absolute sample of `pcm` (0 for an empty slice; non-finite samples are ignored).
pub fn peak(pcm: &[f32]) -> f32 {
    pcm.iter()
        .filter(|x| x.is_finite())
        .fold(0.0f32, |m, &x| m.max(x.abs()))
}

/// Encodes a dBFS level as the wire's 7-bit -dBov (0 = 0 dBFS or louder, 127 = -127 dBFS or
/// quieter).
pub fn to_wire(dbfs: f32) -> u8 {
    if dbfs.is_nan() {
        return 127;
    }
    (-dbfs).round().clamp(0.0, 127.0) as u8
}

/// Decodes the wire's 7-bit level back to dBFS.
pub fn from_wire(level: u8) -> f32 {
    -(level.min(127) as f32)
}

/// Settings of the [`Vad`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VadConfig {
    /// A frame quieter than this (dBFS) is never voice. Default -50.
    pub floor_dbfs: f32,
    /// A frame must be this many dB above the tracked noise floor to count as voice. Default 9.
    pub margin_db: f32,
    /// How long the flag stays on after the last voiced frame, in ms. Default 300 (bridges the
    /// gaps between words).
    pub hangover_ms: u32,
    /// Frame duration the detector is fed.
    pub frame: FrameDuration,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            floor_dbfs: -50.0,
            margin_db: 9.0,
            hangover_ms: 300,
            frame: FrameDuration::Ms20,
        }
    }
}

/// What the [`Vad`] concluded about one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Activity {
    /// RMS level of the frame in dBFS.
    pub level_dbfs: f32,
    /// Someone is talking (including the hangover after the last voiced frame).
    pub active: bool,
}

/// Energy voice-activity detector with an adaptive noise floor and hangover.
///
/// The noise floor follows quiet frames quickly and loud frames very slowly (a minimum
/// tracker), so steady background noise is learnt and ignored while speech stays above it.
#[derive(Clone, Debug)]
pub struct Vad {
    config: VadConfig,
    noise_dbfs: f32,
    hangover_frames: u32,
    remaining: u32,
}

impl Vad {
    /// A detector with `config`.
    pub fn new(config: VadConfig) -> Vad {
        let frame_ms = config.frame.as_millis() as u32;
        Vad {
            config,
            noise_dbfs: config.floor_dbfs - config.margin_db,
            hangover_frames: config.hangover_ms.div_ceil(frame_ms),
            remaining: 0,
        }
    }

    /// Feeds one frame; returns its level and the voice flag.
    pub fn update(&mut self, pcm: &[f32]) -> Activity {
        self.update_level(rms_dbfs(pcm))
    }

    /// Feeds the level of one frame (when the PCM is not at hand, e.g. the wire level).
    pub fn update_level(&mut self, level_dbfs: f32) -> Activity {
        // Minimum tracker: fall fast to quieter frames, creep up ~0.1 dB per frame (5 dB/s at
        // 20 ms) so a long loud stretch does not become "noise".
        if level_dbfs < self.noise_dbfs {
            self.noise_dbfs = 0.7 * self.noise_dbfs + 0.3 * level_dbfs;
        } else {
            self.noise_dbfs += 0.1 * self.config.frame.as_millis() as f32 / 20.0;
        }
        self.noise_dbfs = self.noise_dbfs.max(SILENCE_DBFS);
        let voiced = level_dbfs >= self.config.floor_dbfs
            && level_dbfs >= self.noise_dbfs + self.config.margin_db;
        if voiced {
            self.remaining = self.hangover_frames;
        } else {
            self.remaining = self.remaining.saturating_sub(1);
        }
        Activity {
            level_dbfs,
            active: voiced || self.remaining > 0,
        }
    }

    /// Current noise-floor estimate in dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        self.noise_dbfs
    }

    /// Forgets the hangover (e.g. when a speaker is muted).
    pub fn reset(&mut self) {
        self.remaining = 0;
    }
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new(VadConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amp: f32, n: usize) -> Vec<f32> {
        (0..n).map(|i| amp * (i as f32 * 0.1).sin()).collect()
    }

    #[test]
    fn levels() {
        assert_eq!(rms_dbfs(&[0.0; 960]), SILENCE_DBFS);
        assert_eq!(rms_dbfs(&[]), SILENCE_DBFS);
        assert!((rms_dbfs(&[1.0; 960])).abs() < 1e-6);
        assert!((rms_dbfs(&[0.5, -0.5]) + 6.0206).abs() < 1e-3);
        assert!((rms_dbfs(&sine(1.0, 48_000)) + 3.01).abs() < 0.05);
        assert_eq!(rms_dbfs(&[f32::NAN, f32::INFINITY]), SILENCE_DBFS);
        assert_eq!(peak(&[0.1, -0.7, f32::NAN]), 0.7);
    }

    #[test]
    fn wire_level_round_trip() {
        assert_eq!(to_wire(0.0), 0);
        assert_eq!(to_wire(6.0), 0);
        assert_eq!(to_wire(-20.4), 20);
        assert_eq!(to_wire(-500.0), 127);
        assert_eq!(to_wire(f32::NAN), 127);
        assert_eq!(from_wire(to_wire(-33.0)), -33.0);
        assert_eq!(from_wire(255), -127.0);
    }

    #[test]
    fn vad_flags_speech_with_hangover_and_ignores_silence() {
        let mut vad = Vad::default();
        for _ in 0..20 {
            assert!(!vad.update(&[0.0; 960]).active);
        }
        assert!(vad.update(&sine(0.3, 960)).active);
        // 300 ms hangover at 20 ms frames: 15 frames stay active, then it drops.
        let after: Vec<bool> = (0..20).map(|_| vad.update(&[0.0; 960]).active).collect();
        assert!(after[..14].iter().all(|&a| a), "{after:?}");
        assert!(!after[19]);
    }

    #[test]
    fn vad_learns_steady_noise() {
        let mut vad = Vad::default();
        // Steady noise at about -30 dBFS: loud enough to pass the floor, but it is the floor.
        let noise = sine(0.045, 960);
        let active: Vec<bool> = (0..500).map(|_| vad.update(&noise).active).collect();
        assert!(active[0]);
        assert!(!active[499], "noise floor {}", vad.noise_floor_dbfs());
        // Speech 20 dB above the noise is still voice.
        assert!(vad.update(&sine(0.45, 960)).active);
    }
}
