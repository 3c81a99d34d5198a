//! WAV file sink: 48 kHz mono.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{Sink, SinkError};
use crate::format::{CHANNELS, SAMPLE_RATE};

/// Sample format of a [`WavSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WavFormat {
    /// 16-bit integer PCM (what every player reads). Samples are clamped to full scale.
    #[default]
    Int16,
    /// 32-bit float PCM (lossless for the pipeline's samples).
    Float32,
}

/// Writes 48 kHz mono PCM to a WAV file. The header is completed by [`Sink::finish`] (or, on a
/// best-effort basis, when dropped).
pub struct WavSink {
    path: PathBuf,
    format: WavFormat,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    samples: u64,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

impl WavSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>, format: WavFormat) -> Result<WavSink, SinkError> {
        let path = path.as_ref().to_path_buf();
        let spec = hound::WavSpec {
            channels: CHANNELS,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: match format {
                WavFormat::Int16 => 16,
                WavFormat::Float32 => 32,
            },
            sample_format: match format {
                WavFormat::Int16 => hound::SampleFormat::Int,
                WavFormat::Float32 => hound::SampleFormat::Float,
            },
        };
        let writer = hound::WavWriter::create(&path, spec).map_err(|source| SinkError::Wav {
            path: path.clone(),
            source,
        })?;
        Ok(WavSink {
            path,
            format,
            writer: Some(writer),
            samples: 0,
        })
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.samples
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for WavSink {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(SinkError::Finished);
        };
        let path = &self.path;
        let err = |source| SinkError::Wav {
            path: path.clone(),
            source,
        };
        for &s in pcm {
            let s = if s.is_finite() { s } else { 0.0 };
            match self.format {
                WavFormat::Int16 => writer
                    .write_sample((s.clamp(-1.0, 1.0) * 32_767.0).round() as i16)
                    .map_err(err)?,
                WavFormat::Float32 => writer.write_sample(s).map_err(err)?,
            }
        }
        self.samples += pcm.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|source| SinkError::Wav {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_readable_file_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        for format in [WavFormat::Int16, WavFormat::Float32] {
            let path = dir.path().join(format!("{format:?}.wav"));
            let mut sink = WavSink::create(&path, format).unwrap();
            sink.push_frame(&[0.5, -0.5, 2.0, f32::NAN]).unwrap();
            sink.finish().unwrap();
            sink.finish().unwrap();
            assert!(matches!(sink.push_frame(&[0.0]), Err(SinkError::Finished)));
            let mut reader = hound::WavReader::open(&path).unwrap();
            assert_eq!(reader.spec().sample_rate, 48_000);
            assert_eq!(reader.spec().channels, 1);
            let got: Vec<f32> = match format {
                WavFormat::Int16 => reader
                    .samples::<i16>()
                    .map(|s| s.unwrap() as f32 / 32_767.0)
                    .collect(),
                WavFormat::Float32 => reader.samples::<f32>().map(|s| s.unwrap()).collect(),
            };
            let expected = match format {
                WavFormat::Int16 => [0.5, -0.5, 1.0, 0.0],
                WavFormat::Float32 => [0.5, -0.5, 2.0, 0.0],
            };
            for (g, e) in got.iter().zip(expected) {
                assert!((g - e).abs() < 1e-4, "{format:?}: {got:?}");
            }
        }
    }
}
