//! The send side in one piece: PCM frame in, [`crate::wire::Frame`] out.
//!
//! A [`Sender`] owns the Opus encoder, a voice-activity detector and the stream's sequence
//! number and timestamp, and fills in every field of the frame: level, `VOICE`, `FEC`, `DTX`
//! and `END` flags. The timestamp follows the capture clock even while nothing is sent (muted,
//! DTX), as the receiver's jitter buffer expects.

use crate::codec::{CodecError, Encoder, EncoderConfig};
use crate::level::{Activity, Vad, VadConfig, to_wire};
use crate::wire::{Flags, Frame};

/// Encodes one speaker's frames for the wire (see the [module docs](crate::send)).
#[derive(Debug)]
pub struct Sender {
    speaker: u64,
    encoder: Encoder,
    vad: Vad,
    seq: u32,
    timestamp: u32,
    in_dtx: bool,
    activity: Activity,
}

impl Sender {
    /// A sender for `speaker` whose first frame has sequence number `seq` and timestamp
    /// `timestamp` (pick both at random, as RTP does, so a restarted sender is recognised as
    /// a new stream).
    pub fn new(
        speaker: u64,
        config: EncoderConfig,
        seq: u32,
        timestamp: u32,
    ) -> Result<Sender, CodecError> {
        Ok(Sender {
            speaker,
            encoder: Encoder::new(config)?,
            vad: Vad::new(VadConfig {
                frame: config.frame,
                ..VadConfig::default()
            }),
            seq,
            timestamp,
            in_dtx: false,
            activity: Activity::default(),
        })
    }

    /// Encodes the next captured frame. `None` means "send nothing": the encoder is in DTX
    /// and already said so (the first DTX frame is sent, flagged, so receivers stop
    /// concealing).
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Option<Frame>, CodecError> {
        self.activity = self.vad.update(pcm);
        let payload = self.encoder.encode(pcm)?;
        let dtx = self.encoder.config().dtx && self.encoder.in_dtx();
        let timestamp = self.timestamp;
        self.timestamp = self
            .timestamp
            .wrapping_add(self.encoder.config().frame.ticks());
        if dtx && self.in_dtx {
            return Ok(None);
        }
        self.in_dtx = dtx;
        let flags = Flags::empty()
            .set(Flags::VOICE, self.activity.active && !dtx)
            .set(Flags::FEC, self.encoder.config().fec)
            .set(Flags::DTX, dtx);
        Ok(Some(self.frame(timestamp, flags, payload)))
    }

    /// Encodes the last frame before the speaker stops sending (mute, step down, end of a
    /// file): flagged `END`, so receivers go quiet without concealment.
    pub fn encode_last(&mut self, pcm: &[f32]) -> Result<Frame, CodecError> {
        self.activity = self.vad.update(pcm);
        let payload = self.encoder.encode(pcm)?;
        let timestamp = self.timestamp;
        self.timestamp = self
            .timestamp
            .wrapping_add(self.encoder.config().frame.ticks());
        self.in_dtx = false;
        self.vad.reset();
        let flags = Flags::END
            .set(Flags::VOICE, self.activity.active)
            .set(Flags::FEC, self.encoder.config().fec);
        Ok(self.frame(timestamp, flags, payload))
    }

    /// Lets `frames` frame periods pass without sending (muted): the timestamp keeps up
    /// with the capture clock.
    pub fn skip(&mut self, frames: u32) {
        let ticks = self.encoder.config().frame.ticks().wrapping_mul(frames);
        self.timestamp = self.timestamp.wrapping_add(ticks);
    }

    /// Level and voice flag of the last frame encoded (for the local "I am talking" light).
    pub fn activity(&self) -> Activity {
        self.activity
    }

    /// The encoder, e.g. to adapt bitrate or the packet-loss hint.
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Sequence number the next frame will carry.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    fn frame(&mut self, timestamp: u32, flags: Flags, payload: Vec<u8>) -> Frame {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        Frame {
            speaker: self.speaker,
            seq,
            timestamp,
            level: to_wire(self.activity.level_dbfs),
            flags,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FrameDuration;
    use crate::jitter::{Config, Kind, SpeakerStream};
    use crate::source::{Source, VoiceSource};

    #[test]
    fn frames_carry_sequence_timestamp_level_and_flags() {
        let mut tx = Sender::new(42, EncoderConfig::default(), u32::MAX, 1_000).unwrap();
        let mut voice = VoiceSource::new(3, FrameDuration::Ms20);
        let mut pcm = vec![0.0; 960];
        let mut frames = Vec::new();
        for _ in 0..100 {
            voice.next_frame(&mut pcm).unwrap();
            frames.push(tx.encode(&pcm).unwrap().unwrap());
        }
        assert_eq!(frames[0].seq, u32::MAX);
        assert_eq!(frames[1].seq, 0);
        assert_eq!(frames[2].timestamp, 1_000 + 2 * 960);
        assert!(
            frames
                .iter()
                .all(|f| f.speaker == 42 && f.flags.contains(Flags::FEC))
        );
        assert!(frames.iter().any(|f| f.flags.contains(Flags::VOICE)));
        assert!(
            frames.iter().any(|f| f.level < 40),
            "speech is louder than -40 dBFS"
        );
        tx.skip(10);
        let last = tx.encode_last(&pcm).unwrap();
        assert!(last.flags.contains(Flags::END));
        assert_eq!(last.timestamp, 1_000 + 110 * 960);
        assert_eq!(last.seq, 99);
    }

    #[test]
    fn dtx_sends_one_flagged_frame_then_nothing() {
        let config = EncoderConfig {
            dtx: true,
            ..EncoderConfig::default()
        };
        let mut tx = Sender::new(1, config, 0, 0).unwrap();
        let silence = vec![0.0; 960];
        let sent: Vec<Option<Frame>> = (0..60).map(|_| tx.encode(&silence).unwrap()).collect();
        let first_dtx = sent
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.flags.contains(Flags::DTX)));
        let first_dtx = first_dtx.expect("the encoder enters DTX in silence");
        assert!(sent[first_dtx + 1..].iter().filter(|f| f.is_none()).count() > 20);
        // Sequence numbers stay contiguous over what was sent.
        let seqs: Vec<u32> = sent.iter().flatten().map(|f| f.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn sender_to_speaker_stream() {
        let mut tx = Sender::new(7, EncoderConfig::default(), 500, 77).unwrap();
        let mut rx = SpeakerStream::new(Config::new(FrameDuration::Ms20)).unwrap();
        let mut voice = VoiceSource::new(9, FrameDuration::Ms20);
        let mut pcm = vec![0.0; 960];
        let mut kinds = Vec::new();
        for i in 0..50u64 {
            voice.next_frame(&mut pcm).unwrap();
            if let Some(f) = tx.encode(&pcm).unwrap() {
                rx.push(f, i * 20_000 + 1_000);
            }
            kinds.push(rx.pull(i * 20_000 + 8_000).kind);
        }
        assert!(kinds.iter().all(|k| *k == Kind::Packet), "{kinds:?}");
    }
}
