//! # ruang-audio: the audio pipeline, without I/O
//!
//! Everything between a microphone and a loudspeaker except the network and the sound card:
//! Opus encoding and decoding, the frame format on the wire, a per-speaker adaptive jitter
//! buffer with FEC recovery and concealment, the mixer with its soft limiter, levels and voice
//! activity, and WAV / Ogg Opus files. There is no async runtime, no thread, no clock and no
//! sound system in here (`ruang-device` has the sound card and the real-time threads), so the
//! whole pipeline runs in tests at CPU speed and every run is reproducible.
//!
//! # Layout
//!
//! - [`mod@format`]: 48 kHz mono `f32`; [`FrameDuration`] 20 ms (default) or 10 ms.
//! - [`codec`]: Opus [`codec::Encoder`] (Voip, VBR, FEC, DTX) and [`codec::Decoder`]
//!   (decode, conceal, FEC recovery).
//! - [`wire`]: the [`wire::Frame`] sent to peers.
//! - [`send`]: the [`send::Sender`], PCM frame in, wire frame out (encoder + levels + flags +
//!   sequence numbers and timestamps).
//! - [`jitter`]: the adaptive [`jitter::Buffer`] and the ready-to-mix
//!   [`jitter::SpeakerStream`] (buffer + decoder + voice activity).
//! - [`loss`]: loss-adaptive FEC: the loss a listener measured, the speaker's loss hint.
//! - [`congestion`]: the speaker's bitrate while its links cannot carry it, and its
//!   protection (copies, FEC) as one decision.
//! - [`mixer`]: sums speakers through a soft [`mixer::Limiter`].
//! - [`level`]: RMS levels, the wire's 7-bit level, the voice-activity detector.
//! - [`source`] / [`sink`]: the two small traits audio flows through, with WAV, synthetic
//!   voice, tone, silence, WAV sink and Ogg Opus recording.
//! - [`voice`]: echo cancellation, noise suppression and gain control for microphones.
//! - [`resample`]: rate and channel conversion at the edges (files, sound cards).
//! - [`pace`]: the real-time schedule (absolute deadlines), as arithmetic, and the playout's
//!   [`pace::Slip`] towards the arrivals.
//!
//! # Time model
//!
//! Time is an argument: `now_us` / `arrival_us`, `u64` microseconds on one monotonic clock that
//! the caller owns (`ruang-node` uses its process clock, tests a counter). Nothing here reads a
//! clock or sleeps. Randomness (the synthetic voice) comes from a seed.
//!
//! # Run loop
//!
//! Send side, once per frame period (paced by the capture device or by `ruang-device`'s
//! pacer):
//!
//! ```text
//! source.next_frame(&mut pcm)          // microphone, WAV file or synthetic voice
//! frame = sender.encode(&pcm)          // send::Sender: Opus + level + VOICE/FEC/DTX flags
//! frame.encode()                       -> network (ruang-net frames it on the stream)
//! ```
//!
//! Receive side: on every frame from the network, `streams[speaker].push(frame, now_us)`; once
//! per frame period, on the playout clock:
//!
//! ```text
//! for each speaker: pulled = stream.pull(now_us)  // PCM (decoded / FEC / concealed / silence)
//!                   talking[speaker] = pulled.activity.active
//! mixer.mix(all pulled PCM, &mut out)
//! keep = slip.keep(now_us, &out)                  // pace::Slip: a silent period may be cut
//! sink.push_frame(&out[..keep])                   // loudspeaker, WAV or Ogg Opus file
//! ```
//!
//! # Example
//!
//! A frame from one side to the other, through the wire format and a jitter buffer:
//!
//! ```
//! use ruang_audio::{codec, jitter, mixer::Mixer, wire, FrameDuration};
//! let frame = FrameDuration::Ms20;
//! let mut encoder = codec::Encoder::new(codec::EncoderConfig::default()).unwrap();
//! let mut alice = jitter::SpeakerStream::new(jitter::Config::new(frame)).unwrap();
//! let mut mixer = Mixer::new(frame);
//! let mut out = vec![0.0; frame.samples()];
//!
//! let tone: Vec<f32> = (0..960).map(|i| 0.3 * (i as f32 * 0.06).sin()).collect();
//! let bytes = wire::Frame {
//!     speaker: 1, seq: 0, timestamp: 0, level: 10, flags: wire::Flags::VOICE,
//!     payload: encoder.encode(&tone).unwrap(),
//! }.encode();
//!
//! // It arrives at 1.000 s; the playout clock pulls at 1.005 s.
//! alice.push(wire::Frame::decode(&bytes).unwrap(), 1_000_000);
//! let pulled = alice.pull(1_005_000);
//! assert_eq!(pulled.kind, jitter::Kind::Packet);
//! mixer.mix([pulled.pcm], &mut out);
//! assert!(out.iter().all(|x| x.abs() < 1.0));
//! ```

pub mod codec;
pub mod congestion;
pub mod format;
pub mod jitter;
pub mod level;
pub mod loss;
pub mod mixer;
pub mod pace;
pub mod resample;
pub mod send;
pub mod sink;
pub mod source;
pub mod voice;
pub mod wire;

pub use format::{FrameDuration, SAMPLE_RATE};
pub use sink::{Sink, SinkError};
pub use source::{Source, SourceError};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn pipeline_parts_can_move_to_audio_threads() {
        assert_send::<codec::Encoder>();
        assert_send::<codec::Decoder>();
        assert_send::<jitter::SpeakerStream>();
        assert_send::<send::Sender>();
        assert_send::<mixer::Mixer>();
        assert_send::<source::WavSource>();
        assert_send::<source::VoiceSource>();
        assert_send::<sink::WavSink>();
        assert_send::<sink::OggOpusWriter<std::io::BufWriter<std::fs::File>>>();
        assert_send::<Box<dyn Source + Send>>();
    }
}
