//! # ruang-device: sound cards and real-time threads
//!
//! The one crate of ruang that links the sound system (cpal, ALSA on Linux) and the one
//! that sleeps: it turns a microphone into a `ruang_audio::Source`, a loudspeaker into a
//! `ruang_audio::Sink`, and plays files and synthetic voices in real time.
//!
//! # Layout
//!
//! - [`list_devices`]: what the audio system offers ([`DeviceInfo`]).
//! - [`Microphone`]: capture, any device format converted to 48 kHz mono frames.
//! - [`Speaker`]: playback, 48 kHz mono frames converted to the device's format.
//! - [`pace`]: [`pace::PacedSource`] / [`pace::PacedSink`] / [`pace::Pacer`] sleep to absolute
//!   frame deadlines and record the wall-clock anchors the latency benchmark needs.
//! - [`DeviceError`]: what went wrong, worded for a person; without a sound card it says so
//!   and suggests `--input FILE.wav` / `--output FILE.wav`.
//!
//! # Threads and the real-time rules
//!
//! Each open device has two threads: cpal's callback thread and a processing thread of ours.
//! The callback only moves samples through a lock-free SPSC ring (`ringbuf`): no allocation,
//! no lock, no blocking, no resampling. The processing thread converts channels and rate
//! (`ruang_audio::resample`) and talks to the caller through a small bounded queue that drops
//! the oldest frame when full. Real-time audio never waits: a slow consumer loses old audio,
//! it never delays new audio.
//!
//! # Example
//!
//! ```no_run
//! use ruang_audio::{FrameDuration, Sink, Source};
//! use ruang_device::{Microphone, Speaker};
//!
//! let frame = FrameDuration::Ms20;
//! let mut mic = Microphone::open(None, frame)?;
//! let mut speaker = Speaker::open(None, frame)?;
//! let mut pcm = vec![0.0; frame.samples()];
//! for _ in 0..250 {
//!     mic.next_frame(&mut pcm)?; // blocks until the next 20 ms are captured
//!     speaker.push_frame(&pcm)?; // never blocks
//! }
//! speaker.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod devices;
mod error;
mod microphone;
pub mod pace;
mod queue;
mod speaker;

pub use devices::{DeviceInfo, StreamFormat, list_devices};
pub use error::{DeviceError, Direction};
pub use microphone::{CAPTURE_TIMEOUT, Microphone, StreamStats};
pub use speaker::{MAX_BUFFER_MS, Speaker};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn devices_and_pacers_can_move_to_their_threads() {
        assert_send::<Microphone>();
        assert_send::<Speaker>();
        assert_send::<pace::PacedSource<Box<dyn ruang_audio::Source + Send>>>();
        assert_send::<pace::PacedSink<ruang_audio::sink::WavSink>>();
        assert_send::<pace::Stamp>();
    }
}
