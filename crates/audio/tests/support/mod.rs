//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ruang_audio::FrameDuration;
use ruang_audio::codec::{Decoder, Encoder, EncoderConfig};
use ruang_audio::source::{Source, VoiceSource};
use ruang_audio::wire::{Flags, Frame};

/// Encodes `pcm`, whole frames of `config.frame`, as speaker 1's wire frames numbered from 0,
/// each with the flags `flags` gives its PCM and whether it is the last (level 20 when voiced,
/// else 0); returns them with what they decode to.
pub fn encode_frames(
    config: EncoderConfig,
    pcm: &[f32],
    flags: impl Fn(&[f32], bool) -> Flags,
) -> (Vec<Frame>, Vec<f32>) {
    let frame = config.frame;
    let mut encoder = Encoder::new(config).unwrap();
    let mut decoder = Decoder::new(frame).unwrap();
    let chunks: Vec<&[f32]> = pcm.chunks_exact(frame.samples()).collect();
    let mut frames = Vec::new();
    let mut decoded = Vec::new();
    for (seq, chunk) in chunks.iter().enumerate() {
        let seq = seq as u32;
        let payload = encoder.encode(chunk).unwrap();
        decoded.extend_from_slice(decoder.decode(&payload).unwrap());
        let flags = flags(chunk, seq as usize + 1 == chunks.len());
        frames.push(Frame {
            speaker: 1,
            seq,
            timestamp: seq * frame.ticks(),
            level: if flags.contains(Flags::VOICE) { 20 } else { 0 },
            flags,
            payload,
        });
    }
    (frames, decoded)
}

/// `seconds` of the synthetic voice `seed` at 48 kHz.
pub fn voice(seed: u64, seconds: f32, frame: FrameDuration) -> Vec<f32> {
    let mut v = VoiceSource::new(seed, frame);
    let frames = (seconds * 1000.0) as usize / frame.as_millis() as usize;
    let mut out = vec![0.0; frames * frame.samples()];
    for chunk in out.chunks_mut(frame.samples()) {
        assert!(v.next_frame(chunk).unwrap());
    }
    out
}

/// Pearson correlation of two equally long signals.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Correlation of `output` delayed by `lag` samples against `input`.
pub fn correlation_at(input: &[f32], output: &[f32], lag: usize) -> f64 {
    if lag >= output.len() {
        return 0.0;
    }
    correlation(input, &output[lag..])
}

/// The lag in `0..max_lag` where `output` best matches `input`, and the correlation there.
pub fn best_lag(input: &[f32], output: &[f32], max_lag: usize) -> (usize, f64) {
    (0..max_lag)
        .map(|lag| (lag, correlation_at(input, output, lag)))
        .fold(
            (0, f64::MIN),
            |best, cur| if cur.1 > best.1 { cur } else { best },
        )
}
