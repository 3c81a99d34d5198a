//! Ogg Opus recording (RFC 7845); see [`OggOpusWriter`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::{Sink, SinkError};
use crate::codec::{self, Encoder, EncoderConfig, OPUS_LOOKAHEAD};
use crate::format::SAMPLE_RATE;

/// Default number of audio packets per Ogg page (one second of 20 ms frames).
pub const PAGE_PACKETS: u32 = 50;

/// Vendor string written into `OpusTags`.
const VENDOR: &str = concat!("ruang-audio ", env!("CARGO_PKG_VERSION"), " (libopus)");

/// Settings of an [`OggOpusWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OggOpusConfig {
    /// Ogg stream serial number. Pick it at random when files may be chained or multiplexed.
    pub serial: u32,
    /// Samples the player skips at the start (the encoder lookahead). Default 312.
    pub pre_skip: u16,
    /// Encoder for PCM input. Default: 20 ms frames, 48 kbps VBR, no FEC (a file loses
    /// nothing).
    pub encoder: EncoderConfig,
    /// Audio packets per page. Default [`PAGE_PACKETS`](crate::sink::PAGE_PACKETS).
    pub page_packets: u32,
    /// `KEY=value` comments for `OpusTags` (e.g. `TITLE=Morning news`).
    pub comments: Vec<String>,
}

impl Default for OggOpusConfig {
    fn default() -> Self {
        OggOpusConfig {
            serial: 0x7275_616e, // "ruan"
            pre_skip: OPUS_LOOKAHEAD as u16,
            encoder: EncoderConfig {
                bitrate_bps: 48_000,
                fec: false,
                packet_loss_pct: 0,
                ..EncoderConfig::default()
            },
            page_packets: PAGE_PACKETS,
            comments: Vec::new(),
        }
    }
}

/// Ogg Opus recording (RFC 7845): a standard `.opus` file.
///
/// The file is one logical Ogg stream: a page with `OpusHead`, a page with `OpusTags`, then
/// audio pages of up to [`OggOpusConfig::page_packets`] packets each (one second at 20 ms), the
/// last one flagged end-of-stream. Granule positions count 48 kHz samples including the
/// pre-skip, and the final granule marks where the audio really ends, so players trim both the
/// encoder's start-up delay and the padding of the last packet.
///
/// Two ways in, freely mixed:
///
/// - [`OggOpusWriter::push_packet`]: an Opus packet as it came off the wire (one speaker: the
///   recording costs no CPU and no quality); [`OggOpusWriter::push_missing`] marks a lost one
///   (a one-byte packet that players conceal).
/// - [`OggOpusWriter::push_pcm`] (and [`Sink::push_frame`]): PCM (the mix of several speakers),
///   encoded by the writer's own encoder.
///
/// The pre-skip is the encoder lookahead (312 samples, 6.5 ms) unless configured otherwise.
/// Packet mode: the final granule is the total of the packets' samples (the sender's encoder
/// was never flushed, so its last 6.5 ms of input are not in the stream). PCM mode: the writer
/// flushes its encoder with silence, and the final granule is exactly the samples pushed plus
/// the pre-skip.
pub struct OggOpusWriter<W: Write> {
    /// Always `Some` until `into_inner` takes it.
    out: Option<PacketWriter<'static, W>>,
    path: PathBuf,
    config: OggOpusConfig,
    /// Samples of every packet queued so far (the granule after the newest packet).
    granule: u64,
    /// Granule position where the real audio ends.
    audio_end: u64,
    /// The newest packet, held back so the last one can carry the end-of-stream flag.
    pending: Option<(Vec<u8>, u64)>,
    in_page: u32,
    encoder: Option<Encoder>,
    pcm: Vec<f32>,
    pcm_mode: bool,
    pcm_start: u64,
    pcm_in: u64,
    last_toc: Option<(u8, u32)>,
    packets: u64,
    finished: bool,
}

impl<W: Write> std::fmt::Debug for OggOpusWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("path", &self.path)
            .field("granule", &self.granule)
            .field("packets", &self.packets)
            .finish_non_exhaustive()
    }
}

impl OggOpusWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes the headers.
    pub fn create(path: impl AsRef<Path>, config: OggOpusConfig) -> Result<Self, SinkError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| SinkError::Io {
            path: path.clone(),
            source,
        })?;
        OggOpusWriter::with_name(BufWriter::new(file), path, config)
    }
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes an Ogg Opus stream to `writer`, headers first.
    pub fn new(writer: W, config: OggOpusConfig) -> Result<Self, SinkError> {
        OggOpusWriter::with_name(writer, PathBuf::from("<stream>"), config)
    }

    fn with_name(writer: W, path: PathBuf, config: OggOpusConfig) -> Result<Self, SinkError> {
        let mut w = OggOpusWriter {
            out: Some(PacketWriter::new(writer)),
            path,
            config,
            granule: 0,
            audio_end: 0,
            pending: None,
            in_page: 0,
            encoder: None,
            pcm: Vec::new(),
            pcm_mode: false,
            pcm_start: 0,
            pcm_in: 0,
            last_toc: None,
            packets: 0,
            finished: false,
        };
        let head = opus_head(w.config.pre_skip);
        let tags = opus_tags(&w.config.comments);
        w.write(head, PacketWriteEndInfo::EndPage, 0)?;
        w.write(tags, PacketWriteEndInfo::EndPage, 0)?;
        Ok(w)
    }

    /// Audio packets written (or queued) so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Samples of audio packets so far, at 48 kHz (the granule position after the newest
    /// packet).
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Appends an Opus packet of `samples` samples (48 kHz), as received: no re-encoding.
    pub fn push_packet(&mut self, packet: &[u8], samples: u32) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Finished);
        }
        let parsed =
            codec::packet_samples(packet).map_err(|e| SinkError::InvalidPacket(e.to_string()))?;
        if parsed != samples as usize {
            return Err(SinkError::InvalidPacket(format!(
                "packet holds {parsed} samples, caller said {samples}"
            )));
        }
        self.leave_pcm_mode()?;
        self.last_toc = Some((packet[0] & !0b11, samples));
        self.queue(packet.to_vec(), samples)?;
        self.audio_end = self.granule;
        Ok(())
    }

    /// Appends a packet that was lost: `samples` of silence the player fills with its
    /// concealment (a one-byte Opus packet: the TOC of a frame with no data).
    pub fn push_missing(&mut self, samples: u32) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Finished);
        }
        let toc = match self.last_toc {
            Some((toc, n)) if n == samples => toc,
            _ => plc_toc(samples).ok_or_else(|| {
                SinkError::InvalidPacket(format!("no Opus frame lasts {samples} samples"))
            })?,
        };
        self.leave_pcm_mode()?;
        self.queue(vec![toc], samples)?;
        self.audio_end = self.granule;
        Ok(())
    }

    /// Appends PCM (48 kHz mono, any length), encoded by the writer's own encoder.
    pub fn push_pcm(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Finished);
        }
        if !self.pcm_mode {
            match self.encoder.as_mut() {
                Some(enc) => enc.reset()?,
                None => self.encoder = Some(Encoder::new(self.config.encoder)?),
            }
            self.pcm_mode = true;
            self.pcm_start = self.granule;
            self.pcm_in = 0;
        }
        self.pcm.extend_from_slice(pcm);
        self.pcm_in += pcm.len() as u64;
        self.encode_full_frames()?;
        self.audio_end = self.pcm_start + self.lookahead() + self.pcm_in;
        Ok(())
    }

    /// Ends the stream: flushes the encoder (PCM mode), writes the last page with the
    /// end-of-stream flag and the final granule, and flushes the writer. Idempotent.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        if self.finished {
            return Ok(());
        }
        if self.pcm_mode {
            let frame = self.frame_samples();
            if !self.pcm.is_empty() {
                self.pcm.resize(frame, 0.0);
                self.encode_full_frames()?;
            }
            // Feed silence until the encoder's delayed output covers every input sample.
            while self.granule < self.audio_end {
                self.pcm.resize(frame, 0.0);
                self.encode_full_frames()?;
            }
        }
        if self.pending.is_none() {
            // No audio at all: one concealment packet, trimmed away entirely.
            let toc = plc_toc(960).unwrap_or(0xf8);
            self.pending = Some((vec![toc], 0));
            self.granule += 960;
            self.audio_end = (self.config.pre_skip as u64).min(self.granule);
        }
        if let Some((packet, _)) = self.pending.take() {
            let end = self.audio_end;
            self.write(packet, PacketWriteEndInfo::EndStream, end)?;
        }
        self.finished = true;
        match self.out.as_mut() {
            Some(out) => out.inner_mut().flush().map_err(|source| SinkError::Io {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Finishes (if not done yet) and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, SinkError> {
        self.finish()?;
        match self.out.take() {
            Some(out) => Ok(out.into_inner()),
            // `out` is only taken here, and `self` is consumed.
            None => Err(SinkError::Finished),
        }
    }

    fn lookahead(&self) -> u64 {
        self.encoder
            .as_ref()
            .map_or(OPUS_LOOKAHEAD, |e| e.lookahead()) as u64
    }

    fn frame_samples(&self) -> usize {
        self.config.encoder.frame.samples()
    }

    fn encode_full_frames(&mut self) -> Result<(), SinkError> {
        let frame = self.frame_samples();
        while self.pcm.len() >= frame {
            let Some(enc) = self.encoder.as_mut() else {
                return Ok(());
            };
            let packet = enc.encode(&self.pcm[..frame])?;
            self.pcm.drain(..frame);
            self.last_toc = packet.first().map(|t| (t & !0b11, frame as u32));
            self.queue(packet, frame as u32)?;
        }
        Ok(())
    }

    /// Switching from PCM to packets: encode what is buffered (the encoder's last lookahead is
    /// dropped; the next packets come from another encoder anyway).
    fn leave_pcm_mode(&mut self) -> Result<(), SinkError> {
        if self.pcm_mode {
            if !self.pcm.is_empty() {
                let frame = self.frame_samples();
                self.pcm.resize(frame, 0.0);
                self.encode_full_frames()?;
            }
            self.pcm_mode = false;
        }
        Ok(())
    }

    /// Queues a packet; writes the previously queued one, closing the page when it is full.
    fn queue(&mut self, packet: Vec<u8>, samples: u32) -> Result<(), SinkError> {
        self.granule += samples as u64;
        self.packets += 1;
        if let Some((prev, granule)) = self.pending.replace((packet, self.granule)) {
            self.in_page += 1;
            let end = if self.in_page >= self.config.page_packets.max(1) {
                self.in_page = 0;
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.write(prev, end, granule)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        packet: Vec<u8>,
        end: PacketWriteEndInfo,
        granule: u64,
    ) -> Result<(), SinkError> {
        let serial = self.config.serial;
        let Some(out) = self.out.as_mut() else {
            return Err(SinkError::Finished);
        };
        out.write_packet(packet, serial, end, granule)
            .map_err(|source| SinkError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

impl<W: Write> Sink for OggOpusWriter<W> {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        self.push_pcm(pcm)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        OggOpusWriter::finish(self)
    }
}

impl<W: Write> Drop for OggOpusWriter<W> {
    fn drop(&mut self) {
        // Best effort: a writer dropped without finish still leaves a complete file.
        let _ = OggOpusWriter::finish(self);
    }
}

/// The `OpusHead` identification header (RFC 7845 §5.1), mono, channel mapping family 0.
fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(1); // channels
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // input sample rate, informational
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family
    h
}

/// The `OpusTags` comment header (RFC 7845 §5.2).
fn opus_tags(comments: &[String]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    t.extend_from_slice(VENDOR.as_bytes());
    t.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in comments {
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(c.as_bytes());
    }
    t
}

/// A TOC byte (code 0, mono) of an Opus configuration lasting `samples`, for a frame with no
/// data (which decoders conceal): CELT fullband for 2.5–20 ms, SILK wideband for 40/60 ms.
fn plc_toc(samples: u32) -> Option<u8> {
    let config: u8 = match samples {
        120 => 28,
        240 => 29,
        480 => 30,
        960 => 31,
        1920 => 10,
        2880 => 11,
        _ => return None,
    };
    Some(config << 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plc_packets_decode_as_concealment_of_the_right_length() {
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut out = vec![0.0f32; 5760];
        for samples in [120u32, 240, 480, 960, 1920, 2880] {
            let toc = plc_toc(samples).unwrap();
            assert_eq!(codec::packet_samples(&[toc]).unwrap(), samples as usize);
            assert_eq!(
                dec.decode_float(&[toc], &mut out, false).unwrap(),
                samples as usize
            );
        }
        assert_eq!(plc_toc(100), None);
    }

    #[test]
    fn headers_are_well_formed() {
        let head = opus_head(312);
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
        let tags = opus_tags(&["TITLE=x".to_string()]);
        assert_eq!(&tags[..8], b"OpusTags");
        assert!(tags.ends_with(b"\x07\x00\x00\x00TITLE=x"));
    }
}
