//! Where audio goes: the [`Sink`] trait and its file implementations.
//!
//! - [`WavSink`]: a 48 kHz mono WAV file, 16-bit integer or 32-bit float.
//! - [`OggOpusWriter`]: a standard `.opus` file, from Opus packets as they came off the wire
//!   (no re-encoding) and/or from PCM it encodes itself (the mix).
//! - [`MemorySink`]: PCM kept in memory, for tests and analysis.
//!
//! File sinks write as fast as they are fed; `ruang-device`'s pacer plays them in real time and
//! records when the first sample "played". The speaker in `ruang-device` implements the same
//! trait.

mod ogg;
mod wav;

pub use self::ogg::{OggOpusConfig, OggOpusWriter, PAGE_PACKETS};
pub use self::wav::{WavFormat, WavSink};

use std::path::PathBuf;

use crate::codec::CodecError;

/// What went wrong writing audio.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// hound failed writing a WAV file.
    #[error("cannot write WAV file {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// hound's reason.
        #[source]
        source: hound::Error,
    },
    /// Encoding for an Ogg Opus file failed.
    #[error("cannot encode audio for the recording: {0}")]
    Codec(#[from] CodecError),
    /// A packet handed to the Ogg writer is not a usable Opus packet.
    #[error("invalid opus packet for the recording: {0}")]
    InvalidPacket(String),
    /// Written to after [`Sink::finish`].
    #[error("the sink is already finished")]
    Finished,
    /// The sink holds as much as it may.
    #[error("the sink is full ({0} samples)")]
    Full(usize),
    /// A live sink (loudspeaker) failed.
    #[error("audio device error: {0}")]
    Device(String),
}

/// A consumer of 48 kHz mono PCM.
pub trait Sink {
    /// Takes the next samples (normally one frame). Real-time sinks never block for long: a
    /// full queue drops its oldest audio.
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError>;

    /// Flushes and closes. Further pushes fail with [`SinkError::Finished`]; finishing twice
    /// is harmless.
    fn finish(&mut self) -> Result<(), SinkError>;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        (**self).push_frame(pcm)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        (**self).finish()
    }
}

/// Keeps PCM in memory, up to a bound.
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    samples: Vec<f32>,
    limit: usize,
    finished: bool,
}

impl MemorySink {
    /// A sink that holds at most `limit` samples (then refuses with [`SinkError::Full`]).
    pub fn new(limit: usize) -> MemorySink {
        MemorySink {
            samples: Vec::new(),
            limit,
            finished: false,
        }
    }

    /// Everything pushed so far.
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// Takes the samples out.
    pub fn into_samples(self) -> Vec<f32> {
        self.samples
    }
}

impl Sink for MemorySink {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Finished);
        }
        if self.samples.len() + pcm.len() > self.limit {
            return Err(SinkError::Full(self.limit));
        }
        self.samples.extend_from_slice(pcm);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.finished = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sink_is_bounded() {
        let mut sink = MemorySink::new(4);
        sink.push_frame(&[1.0, 2.0, 3.0]).unwrap();
        assert!(matches!(
            sink.push_frame(&[4.0, 5.0]),
            Err(SinkError::Full(4))
        ));
        sink.push_frame(&[4.0]).unwrap();
        sink.finish().unwrap();
        assert!(matches!(sink.push_frame(&[]), Err(SinkError::Finished)));
        assert_eq!(sink.samples(), &[1.0, 2.0, 3.0, 4.0]);
    }
}
