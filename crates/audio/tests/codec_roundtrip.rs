//! Opus round trip of the synthetic voice at 32 kbps: the decoded audio, aligned for the codec
//! delay, correlates with the input; scrambling the packet order (or skipping the codec and
//! comparing with another voice) breaks that, so the threshold means something.

mod support;

use ruang_audio::FrameDuration;
use ruang_audio::codec::{Decoder, Encoder, EncoderConfig, OPUS_LOOKAHEAD};
use support::{best_lag, correlation_at, voice};

/// Measured with libopus 1.6.1 (bundled by opusic-sys 0.7.7), the encoder's defaults of the
/// time (complexity 5, FEC) and voice seed 11 at 32 kbps: 0.922 (20 ms) and 0.919 (10 ms) at the
/// best lag (308 / 307 samples; 0.88 at exactly the 312-sample lookahead). Scrambled packets
/// give 0.02, another voice -0.003.
const THRESHOLD: f64 = 0.9;

fn round_trip(input: &[f32], frame: FrameDuration, scramble: bool) -> Vec<f32> {
    let mut enc = Encoder::new(EncoderConfig {
        frame,
        ..EncoderConfig::default()
    })
    .unwrap();
    let mut packets: Vec<Vec<u8>> = input
        .chunks(frame.samples())
        .map(|f| enc.encode(f).unwrap())
        .collect();
    if scramble {
        // A fixed permutation: reverse every block of 8 packets.
        for block in packets.chunks_mut(8) {
            block.reverse();
        }
    }
    let mut dec = Decoder::new(frame).unwrap();
    packets
        .iter()
        .flat_map(|p| dec.decode(p).unwrap().to_vec())
        .collect()
}

#[test]
fn voice_survives_opus_at_32_kbps() {
    for frame in [FrameDuration::Ms20, FrameDuration::Ms10] {
        let input = voice(11, 10.0, frame);
        let output = round_trip(&input, frame, false);
        assert_eq!(output.len(), input.len());

        // Find the codec delay from the signals themselves (first 3 s, lags up to 40 ms).
        // It is the encoder lookahead give or take the phase response of the SILK layer.
        let probe = 2 * 48_000;
        let (lag, _) = best_lag(&input[..probe], &output[..probe + 1_000], 1_000);
        assert!(
            lag.abs_diff(OPUS_LOOKAHEAD) <= 8,
            "codec delay {lag}, lookahead {OPUS_LOOKAHEAD}"
        );
        println!(
            "{frame}: at the lookahead {:.4}",
            correlation_at(&input, &output, OPUS_LOOKAHEAD)
        );

        let c = correlation_at(&input, &output, lag);
        println!("{frame}: correlation {c:.4} at lag {lag}");
        assert!(c >= THRESHOLD, "{frame}: correlation {c} below {THRESHOLD}");

        let scrambled = round_trip(&input, frame, true);
        let cs = correlation_at(&input, &scrambled, lag);
        println!("{frame}: scrambled packets give {cs:.4}");
        assert!(cs < THRESHOLD, "scrambled packets must fail the threshold");

        let other = voice(12, 10.0, frame);
        let co = correlation_at(&other, &output, lag);
        println!("{frame}: another voice gives {co:.4}");
        assert!(co < THRESHOLD);
    }
}
