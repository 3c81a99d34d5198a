//! Opus encoder and decoder (libopus through the `opus` crate), set up for voice.
//!
//! - [`Encoder`]: `Application::Voip`, 48 kHz mono, one [`FrameDuration`] per packet,
//!   bitrate / VBR / in-band FEC with a packet-loss hint / DTX / complexity from
//!   [`EncoderConfig`].
//! - [`Decoder`]: [`decode`](Decoder::decode) a packet, [`conceal`](Decoder::conceal) a
//!   missing one (Opus packet-loss concealment), or [`decode_fec`](Decoder::decode_fec): rebuild
//!   the missing frame from the in-band FEC copy carried by the *next* packet.
//!
//! A corrupt packet is an error ([`CodecError::Opus`]), never a panic; callers conceal instead.

use crate::format::{FrameDuration, SAMPLE_RATE};

/// Largest Opus packet the encoder may produce, in bytes (the Opus maximum for one frame,
/// RFC 6716 §3.4). It also fits in a [`crate::wire::Frame`] with room to spare.
pub const MAX_PACKET_LEN: usize = 1275;

/// Largest frame libopus can decode from one packet: 120 ms at 48 kHz.
const MAX_DECODE_SAMPLES: usize = 5760;

/// A packet this short or shorter is a DTX packet: the encoder has nothing new to say (silence
/// or comfort noise) and the sender may skip it.
pub const DTX_PACKET_MAX_LEN: usize = 2;

/// Algorithmic delay of the Opus encoder in `Voip` mode at 48 kHz, in samples (6.5 ms). This
/// is the pre-skip an Ogg Opus file of our packets declares.
pub const OPUS_LOOKAHEAD: usize = 312;

/// What went wrong in the codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus refused (a corrupt packet, an impossible setting, an internal failure).
    #[error("opus {operation} failed: {source}")]
    Opus {
        /// What we asked libopus to do.
        operation: &'static str,
        /// The libopus error.
        #[source]
        source: opus::Error,
    },
    /// The PCM handed to the encoder is not exactly one frame long.
    #[error("the encoder takes {expected} samples per frame, got {got}")]
    FrameSize {
        /// Samples in one frame.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// A zero-length packet: there is nothing to decode (use [`Decoder::conceal`]).
    #[error("empty opus packet")]
    EmptyPacket,
    /// A setting outside its range.
    #[error("invalid encoder setting: {0}")]
    InvalidConfig(&'static str),
}

fn opus_err(operation: &'static str) -> impl FnOnce(opus::Error) -> CodecError {
    move |source| CodecError::Opus { operation, source }
}

/// Encoder settings. The defaults are the room defaults of DESIGN.md §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Frame duration of every packet.
    pub frame: FrameDuration,
    /// Target bitrate in bits per second (Opus accepts 500..=512 000). Default 32 000.
    pub bitrate_bps: u32,
    /// Variable bitrate (default on): better quality at the same average rate.
    pub vbr: bool,
    /// In-band forward error correction (default on): each packet carries a coarse copy of
    /// the previous frame, so a single loss can be repaired from the next packet.
    pub fec: bool,
    /// Expected packet loss in percent (0..=100), a hint that sizes the FEC data. Default 5.
    pub packet_loss_pct: u8,
    /// Discontinuous transmission (default off): in silence, emit a tiny packet every 400 ms
    /// instead of a packet per frame.
    pub dtx: bool,
    /// Widest audio bandwidth the encoder may use (default [`Bandwidth::Fullband`]).
    /// [`Bandwidth::Wideband`] keeps Opus in its SILK layer: about half the CPU on both sides
    /// for 8 kHz of audio bandwidth, which speech mostly fits in.
    pub max_bandwidth: Bandwidth,
    /// Encoder complexity 0..=10 (default 10: PESQ-WB on speech 4.06 at 32 kbps against 3.56
    /// at 5, for ~150 µs of CPU per 20 ms frame, under 1 % of a core; `ruang-bench codec`).
    pub complexity: u8,
    /// libopus's tuning target (default [`Application::Voip`]).
    pub application: Application,
    /// With [`vbr`](Self::vbr): keep each packet's size near the average (libopus's default
    /// "constrained VBR"), trading a little quality for a steadier bitrate.
    pub constrained_vbr: bool,
}

/// What libopus tunes the encoder for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Application {
    /// Speech intelligibility (high-pass, formant emphasis): the default.
    #[default]
    Voip,
    /// Faithfulness to the input (music, or speech when fidelity matters more).
    Audio,
    /// Lowest delay: CELT only, no SILK (no in-band FEC; 2.5 ms of look-ahead instead of
    /// 6.5, but PESQ-WB 2.82 against 3.72 at 32 kbps, 10 ms frames: `ruang-bench codec`).
    LowDelay,
}

impl Application {
    fn to_opus(self) -> opus::Application {
        match self {
            Application::Voip => opus::Application::Voip,
            Application::Audio => opus::Application::Audio,
            Application::LowDelay => opus::Application::LowDelay,
        }
    }
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            frame: FrameDuration::Ms20,
            bitrate_bps: 32_000,
            vbr: true,
            fec: true,
            packet_loss_pct: 5,
            dtx: false,
            max_bandwidth: Bandwidth::Fullband,
            complexity: 10,
            application: Application::Voip,
            constrained_vbr: true,
        }
    }
}

/// Audio bandwidth limits of the encoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bandwidth {
    /// 4 kHz (telephone).
    Narrowband,
    /// 6 kHz.
    Mediumband,
    /// 8 kHz (wideband speech).
    Wideband,
    /// 12 kHz.
    SuperWideband,
    /// 20 kHz, the default: Opus picks what the bitrate allows.
    #[default]
    Fullband,
}

impl Bandwidth {
    fn to_opus(self) -> opus::Bandwidth {
        match self {
            Bandwidth::Narrowband => opus::Bandwidth::Narrowband,
            Bandwidth::Mediumband => opus::Bandwidth::Mediumband,
            Bandwidth::Wideband => opus::Bandwidth::Wideband,
            Bandwidth::SuperWideband => opus::Bandwidth::Superwideband,
            Bandwidth::Fullband => opus::Bandwidth::Fullband,
        }
    }
}

/// An Opus voice encoder for one stream.
pub struct Encoder {
    inner: opus::Encoder,
    config: EncoderConfig,
    lookahead: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Creates an encoder with `config`.
    pub fn new(config: EncoderConfig) -> Result<Encoder, CodecError> {
        if !(500..=512_000).contains(&config.bitrate_bps) {
            return Err(CodecError::InvalidConfig(
                "bitrate must be 500..=512000 bps",
            ));
        }
        if config.complexity > 10 {
            return Err(CodecError::InvalidConfig("complexity must be 0..=10"));
        }
        if config.packet_loss_pct > 100 {
            return Err(CodecError::InvalidConfig("packet loss must be 0..=100 %"));
        }
        let mut inner = opus::Encoder::new(
            SAMPLE_RATE,
            opus::Channels::Mono,
            config.application.to_opus(),
        )
        .map_err(opus_err("encoder_create"))?;
        inner
            .set_bitrate(opus::Bitrate::Bits(config.bitrate_bps as i32))
            .map_err(opus_err("set_bitrate"))?;
        inner.set_vbr(config.vbr).map_err(opus_err("set_vbr"))?;
        inner
            .set_vbr_constraint(config.constrained_vbr)
            .map_err(opus_err("set_vbr_constraint"))?;
        inner
            .set_inband_fec(config.fec)
            .map_err(opus_err("set_inband_fec"))?;
        inner
            .set_packet_loss_perc(config.packet_loss_pct as i32)
            .map_err(opus_err("set_packet_loss_perc"))?;
        inner.set_dtx(config.dtx).map_err(opus_err("set_dtx"))?;
        inner
            .set_complexity(config.complexity as i32)
            .map_err(opus_err("set_complexity"))?;
        inner
            .set_signal(opus::Signal::Voice)
            .map_err(opus_err("set_signal"))?;
        inner
            .set_max_bandwidth(config.max_bandwidth.to_opus())
            .map_err(opus_err("set_max_bandwidth"))?;
        let lookahead = inner.get_lookahead().map_err(opus_err("get_lookahead"))?;
        // libopus never reports a negative lookahead; fall back to the documented value if it did.
        let lookahead = usize::try_from(lookahead).unwrap_or(OPUS_LOOKAHEAD);
        Ok(Encoder {
            inner,
            config,
            lookahead,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Samples per frame this encoder takes.
    pub fn frame_samples(&self) -> usize {
        self.config.frame.samples()
    }

    /// Algorithmic delay in samples at 48 kHz (the Ogg Opus pre-skip): the decoded signal lags
    /// the input by this much.
    pub fn lookahead(&self) -> usize {
        self.lookahead
    }

    /// Encodes one frame (exactly [`frame_samples`](Self::frame_samples) samples) into a new
    /// packet.
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Vec<u8>, CodecError> {
        let mut out = vec![0u8; MAX_PACKET_LEN];
        let n = self.encode_into(pcm, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Encodes one frame into `out` (at least [`MAX_PACKET_LEN`] bytes is always enough) and
    /// returns the packet length. A packet of [`DTX_PACKET_MAX_LEN`] bytes or fewer is a DTX
    /// packet.
    pub fn encode_into(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, CodecError> {
        let expected = self.frame_samples();
        if pcm.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        let limit = out.len().min(MAX_PACKET_LEN);
        self.inner
            .encode_float(pcm, &mut out[..limit])
            .map_err(opus_err("encode"))
    }

    /// Updates the packet-loss hint (percent, clamped to 100), e.g. from receiver reports.
    pub fn set_packet_loss(&mut self, pct: u8) -> Result<(), CodecError> {
        let pct = pct.min(100);
        self.inner
            .set_packet_loss_perc(pct as i32)
            .map_err(opus_err("set_packet_loss_perc"))?;
        self.config.packet_loss_pct = pct;
        Ok(())
    }

    /// Changes the target bitrate.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        if !(500..=512_000).contains(&bitrate_bps) {
            return Err(CodecError::InvalidConfig(
                "bitrate must be 500..=512000 bps",
            ));
        }
        self.inner
            .set_bitrate(opus::Bitrate::Bits(bitrate_bps as i32))
            .map_err(opus_err("set_bitrate"))?;
        self.config.bitrate_bps = bitrate_bps;
        Ok(())
    }

    /// Forgets all encoder state, as if newly created (settings are kept).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.inner.reset_state().map_err(opus_err("reset"))
    }

    /// Whether the encoder is currently in DTX (sending only keep-alive packets).
    pub fn in_dtx(&mut self) -> bool {
        self.inner.get_in_dtx().unwrap_or(false)
    }
}

/// Whether `packet` is a DTX packet (no audio of its own: decode it or conceal, both give
/// comfort noise / silence).
pub fn is_dtx_packet(packet: &[u8]) -> bool {
    packet.len() <= DTX_PACKET_MAX_LEN
}

/// Number of 48 kHz samples `packet` decodes to, or an error for a malformed packet.
pub fn packet_samples(packet: &[u8]) -> Result<usize, CodecError> {
    if packet.is_empty() {
        return Err(CodecError::EmptyPacket);
    }
    opus::packet::get_nb_samples(packet, SAMPLE_RATE).map_err(opus_err("packet_get_nb_samples"))
}

/// An Opus decoder for one stream, with concealment and FEC recovery.
///
/// Every method returns the decoded PCM as a borrowed slice of an internal buffer, so decoding
/// does not allocate.
pub struct Decoder {
    inner: opus::Decoder,
    frame: FrameDuration,
    out: Vec<f32>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Creates a decoder that conceals and recovers in units of `frame`.
    pub fn new(frame: FrameDuration) -> Result<Decoder, CodecError> {
        let inner = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
            .map_err(opus_err("decoder_create"))?;
        Ok(Decoder {
            inner,
            frame,
            out: vec![0.0; MAX_DECODE_SAMPLES],
        })
    }

    /// The frame duration used for concealment and FEC.
    pub fn frame(&self) -> FrameDuration {
        self.frame
    }

    /// Decodes `packet`. The result normally has one frame of samples; a packet of another
    /// duration (a sender with different settings) decodes to its own length.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[f32], CodecError> {
        if packet.is_empty() {
            return Err(CodecError::EmptyPacket);
        }
        let n = self
            .inner
            .decode_float(packet, &mut self.out, false)
            .map_err(opus_err("decode"))?;
        Ok(&self.out[..n])
    }

    /// Produces one frame of packet-loss concealment for a packet that never came. Opus fades
    /// repeated concealment towards silence by itself.
    pub fn conceal(&mut self) -> Result<&[f32], CodecError> {
        let len = self.frame.samples();
        let n = self
            .inner
            .decode_float(&[], &mut self.out[..len], false)
            .map_err(opus_err("conceal"))?;
        Ok(&self.out[..n])
    }

    /// Rebuilds the frame *before* `next` from the FEC data that `next` carries (if it carries
    /// none, libopus falls back to concealment). Decode `next` itself afterwards as usual.
    pub fn decode_fec(&mut self, next: &[u8]) -> Result<&[f32], CodecError> {
        if next.is_empty() {
            return self.conceal();
        }
        let len = self.frame.samples();
        let n = self
            .inner
            .decode_float(next, &mut self.out[..len], true)
            .map_err(opus_err("decode_fec"))?;
        Ok(&self.out[..n])
    }

    /// Forgets all decoder state (e.g. when a speaker's stream restarts).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.inner.reset_state().map_err(opus_err("reset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, offset: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                0.3 * (2.0 * std::f32::consts::PI * 440.0 * (i + offset) as f32 / 48_000.0).sin()
            })
            .collect()
    }

    #[test]
    fn encodes_and_decodes_one_frame_per_packet() {
        for frame in [FrameDuration::Ms10, FrameDuration::Ms20] {
            let mut enc = Encoder::new(EncoderConfig {
                frame,
                ..Default::default()
            })
            .unwrap();
            let mut dec = Decoder::new(frame).unwrap();
            assert_eq!(enc.lookahead(), OPUS_LOOKAHEAD);
            for i in 0..10 {
                let pcm = tone(frame.samples(), i * frame.samples());
                let packet = enc.encode(&pcm).unwrap();
                assert!(!packet.is_empty() && packet.len() <= MAX_PACKET_LEN);
                assert_eq!(packet_samples(&packet).unwrap(), frame.samples());
                assert_eq!(dec.decode(&packet).unwrap().len(), frame.samples());
            }
            assert_eq!(dec.conceal().unwrap().len(), frame.samples());
        }
    }

    #[test]
    fn wrong_frame_size_is_an_error() {
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let err = enc.encode(&[0.0; 100]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the encoder takes 960 samples per frame, got 100"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for config in [
            EncoderConfig {
                bitrate_bps: 10,
                ..Default::default()
            },
            EncoderConfig {
                complexity: 11,
                ..Default::default()
            },
            EncoderConfig {
                packet_loss_pct: 101,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                Encoder::new(config),
                Err(CodecError::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn corrupt_packets_are_errors_not_panics() {
        let mut dec = Decoder::new(FrameDuration::Ms20).unwrap();
        assert!(matches!(dec.decode(&[]), Err(CodecError::EmptyPacket)));
        // TOC code 3 (arbitrary frame count) with a frame count byte of zero is invalid.
        assert!(dec.decode(&[0x03, 0x00]).is_err());
        // Garbage of every length must not panic, whatever libopus makes of it.
        let mut x: u32 = 12345;
        for len in 1..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = dec.decode(&bytes);
            let _ = dec.decode_fec(&bytes);
            let _ = packet_samples(&bytes);
        }
        assert_eq!(dec.conceal().unwrap().len(), 960);
    }

    #[test]
    fn dtx_produces_tiny_packets_in_silence() {
        let mut enc = Encoder::new(EncoderConfig {
            dtx: true,
            ..Default::default()
        })
        .unwrap();
        let silence = vec![0.0; 960];
        let sizes: Vec<usize> = (0..100)
            .map(|_| enc.encode(&silence).unwrap().len())
            .collect();
        // After a short hangover, only a comfort-noise update every 400 ms is a real packet.
        let tiny = sizes[20..]
            .iter()
            .filter(|&&n| n <= DTX_PACKET_MAX_LEN)
            .count();
        assert!(tiny >= 70, "{sizes:?}");
        assert!(enc.in_dtx());
    }
}
