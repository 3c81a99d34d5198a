//! One remote speaker, ready to mix: a jitter [`Buffer`], an Opus [`Decoder`] and a [`Vad`].

use super::{Buffer, Config, Playout, Stats};
use crate::codec::{CodecError, Decoder};
use crate::format::samples_to_micros;
use crate::level::{Activity, Vad, VadConfig};
use crate::wire::Frame;

/// What one pull of a [`SpeakerStream`] produced.
#[derive(Clone, Copy, Debug)]
pub struct Pulled<'a> {
    /// One frame of 48 kHz mono PCM to mix.
    pub pcm: &'a [f32],
    /// Where it came from.
    pub kind: Kind,
    /// Its level and the voice flag (with hangover), for the "who is talking" indicator.
    pub activity: Activity,
}

/// Where a pulled frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Decoded from its own packet.
    Packet,
    /// Rebuilt from the next packet's FEC.
    Fec,
    /// Opus concealment.
    Conceal,
    /// Silence: nothing to play.
    Silence,
}

/// How the frames pulled in one playout period were timed (see
/// [`SpeakerStream::timing`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// The least [`Buffer::slack_us`] of the packets played: how much earlier the period
    /// could have started and played the same. `None` when no packet was played.
    pub slack_us: Option<u64>,
    /// A frame was concealed or rebuilt from FEC: one the playout wanted was not here.
    pub missed: bool,
}

/// Counters of a [`SpeakerStream`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeakerStats {
    /// The jitter buffer's counters.
    pub jitter: Stats,
    /// Packets that failed to decode (corrupt, or another frame duration) and were concealed.
    pub decode_errors: u64,
}

/// A remote speaker's receive path: push frames as they arrive, pull one frame of PCM per
/// frame period.
///
/// ```
/// use ruang_audio::{codec, format::FrameDuration, jitter, wire};
/// let frame = FrameDuration::Ms20;
/// let mut enc = codec::Encoder::new(codec::EncoderConfig::default()).unwrap();
/// let mut alice = jitter::SpeakerStream::new(jitter::Config::new(frame)).unwrap();
/// for i in 0..5u32 {
///     let payload = enc.encode(&[0.0; 960]).unwrap();
///     let f = wire::Frame { seq: i, timestamp: i * 960, payload, ..Default::default() };
///     let arrival = i as u64 * 20_000;
///     alice.push(f, arrival);
///     let out = alice.pull(arrival + 5_000); // the playout clock ticks 5 ms after arrivals
///     assert_eq!(out.kind, jitter::Kind::Packet);
///     assert_eq!(out.pcm.len(), 960);
/// }
/// assert_eq!(alice.stats().jitter.played, 5);
/// ```
#[derive(Debug)]
pub struct SpeakerStream {
    buffer: Buffer,
    decoder: Decoder,
    vad: Vad,
    /// The last frame pulled.
    pcm: Vec<f32>,
    /// Samples of `pcm` already handed out by [`SpeakerStream::pull_into`].
    used: usize,
    /// The activity of the last frame pulled.
    activity: Activity,
    /// The timing of the frames pulled by the last [`SpeakerStream::pull_into`].
    timing: Timing,
    decode_errors: u64,
}

impl SpeakerStream {
    /// A stream with an empty buffer and a fresh decoder.
    pub fn new(config: Config) -> Result<SpeakerStream, CodecError> {
        Ok(SpeakerStream {
            decoder: Decoder::new(config.frame)?,
            vad: Vad::new(VadConfig {
                frame: config.frame,
                ..VadConfig::default()
            }),
            pcm: vec![0.0; config.frame.samples()],
            used: config.frame.samples(),
            activity: Activity::default(),
            timing: Timing::default(),
            buffer: Buffer::new(config),
            decode_errors: 0,
        })
    }

    /// Takes a frame that arrived at `arrival_us`.
    pub fn push(&mut self, frame: Frame, arrival_us: u64) {
        self.buffer.push(frame, arrival_us);
    }

    /// One frame of audio for the period starting at `now_us`. Call once per frame period.
    pub fn pull(&mut self, now_us: u64) -> Pulled<'_> {
        let kind = match self.buffer.pull(now_us) {
            Playout::Packet(frame) if frame.payload.is_empty() => self.silence(),
            Playout::Packet(frame) => {
                let decoded = self.decoder.decode(&frame.payload);
                if copy_frame(decoded, &mut self.pcm) {
                    Kind::Packet
                } else {
                    self.decode_errors += 1;
                    self.conceal()
                }
            }
            Playout::Fec(next) => {
                if copy_frame(self.decoder.decode_fec(&next), &mut self.pcm) {
                    Kind::Fec
                } else {
                    self.decode_errors += 1;
                    self.conceal()
                }
            }
            Playout::Conceal => self.conceal(),
            Playout::Silence => self.silence(),
        };
        let activity = self.vad.update(&self.pcm);
        self.activity = activity;
        self.used = self.pcm.len();
        Pulled {
            pcm: &self.pcm,
            kind,
            activity,
        }
    }

    /// Fills `out` (any length: one period of the playout) with the stream's audio, pulling
    /// a frame of the stream each time the last one is used up, and returns the activity of
    /// the latest frame. A playout whose period differs from the speaker's frames plays them
    /// through this: a 20 ms frame over two 10 ms periods, or two 10 ms frames in one 20 ms
    /// period. The frames of a period are pulled at times that end at `now_us`, a frame
    /// apart (two 10 ms frames in a 20 ms period: at `now_us - 10 ms`, then `now_us`): the
    /// buffer is never asked about a time that has not come, so the last frame of the period
    /// gets the whole margin the buffer keeps for the path's jitter. Call once per period; a
    /// [`SpeakerStream::pull`] in between drops what was left of a frame.
    pub fn pull_into(&mut self, now_us: u64, out: &mut [f32]) -> Activity {
        // How far the period's first frame is pulled before its last.
        let lead_us = samples_to_micros(out.len().saturating_sub(self.pcm.len()));
        let mut filled = 0;
        let mut timing = Timing::default();
        while filled < out.len() {
            if self.used >= self.pcm.len() {
                let at = (now_us + samples_to_micros(filled)).saturating_sub(lead_us);
                let kind = self.pull(at).kind;
                timing.missed |= matches!(kind, Kind::Conceal | Kind::Fec);
                if let Some(slack) = self.buffer.slack_us() {
                    timing.slack_us = Some(timing.slack_us.map_or(slack, |s| s.min(slack)));
                }
                self.used = 0;
            }
            let take = (out.len() - filled).min(self.pcm.len() - self.used);
            out[filled..filled + take].copy_from_slice(&self.pcm[self.used..self.used + take]);
            filled += take;
            self.used += take;
        }
        self.timing = timing;
        self.activity
    }

    /// How the frames pulled by the last [`SpeakerStream::pull_into`] were timed (nothing
    /// pulled, when that period played the rest of an earlier frame).
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Counters of the buffer and the decoder.
    pub fn stats(&self) -> SpeakerStats {
        SpeakerStats {
            jitter: self.buffer.stats(),
            decode_errors: self.decode_errors,
        }
    }

    /// The jitter buffer (e.g. for its length and capacity).
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    fn conceal(&mut self) -> Kind {
        if !copy_frame(self.decoder.conceal(), &mut self.pcm) {
            self.pcm.iter_mut().for_each(|s| *s = 0.0);
        }
        Kind::Conceal
    }

    fn silence(&mut self) -> Kind {
        self.pcm.iter_mut().for_each(|s| *s = 0.0);
        Kind::Silence
    }
}

/// Copies a decoded frame into `out` if it decoded to exactly one frame.
fn copy_frame(decoded: Result<&[f32], CodecError>, out: &mut [f32]) -> bool {
    match decoded {
        Ok(pcm) if pcm.len() == out.len() => {
            out.copy_from_slice(pcm);
            true
        }
        _ => false,
    }
}
