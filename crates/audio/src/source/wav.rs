//! WAV file source: any common rate and channel count in, 48 kHz mono frames out.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::{Source, SourceError, check_frame};
use crate::format::{FrameDuration, SAMPLE_RATE};
use crate::resample::{Resampler, downmix};

/// Most channels a WAV file may have (more is surely not a voice recording).
const MAX_CHANNELS: u16 = 32;
/// Accepted sample-rate range in Hz.
const RATE_RANGE: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// What a WAV file holds, as read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavInfo {
    /// Sample rate of the file in Hz.
    pub sample_rate: u32,
    /// Channels of the file.
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Whether samples are floating point.
    pub float: bool,
    /// Length in sample frames (per channel).
    pub frames: u32,
}

impl WavInfo {
    /// Length of the file as a duration.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.frames as f64 / self.sample_rate as f64)
    }
}

/// Plays a WAV file as 48 kHz mono frames: channels are averaged, the rate is converted with
/// [`Resampler`] (delay-compensated, so the output lines up with the file), integer and float
/// formats of 8–32 bits are read. Reads the file incrementally, never whole.
pub struct WavSource {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    info: WavInfo,
    frame: FrameDuration,
    looping: bool,
    resampler: Resampler,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
    /// Every sample of the file has been read and the resampler flushed.
    drained: bool,
    /// The last frame (possibly padded) has been handed out.
    ended: bool,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("looping", &self.looping)
            .finish_non_exhaustive()
    }
}

impl WavSource {
    /// Opens `path` for frames of `frame`; plays once.
    pub fn open(path: impl AsRef<Path>, frame: FrameDuration) -> Result<WavSource, SourceError> {
        let path = path.as_ref().to_path_buf();
        let wav_err = |source| SourceError::Wav {
            path: path.clone(),
            source,
        };
        let reader = hound::WavReader::open(&path).map_err(wav_err)?;
        let spec = reader.spec();
        let unsupported = |reason: String| SourceError::Unsupported {
            path: path.clone(),
            reason,
        };
        if spec.channels == 0 || spec.channels > MAX_CHANNELS {
            return Err(unsupported(format!("{} channels", spec.channels)));
        }
        if !RATE_RANGE.contains(&spec.sample_rate) {
            return Err(unsupported(format!("sample rate {} Hz", spec.sample_rate)));
        }
        let float = spec.sample_format == hound::SampleFormat::Float;
        if float && spec.bits_per_sample != 32 {
            return Err(unsupported(format!(
                "{}-bit float samples",
                spec.bits_per_sample
            )));
        }
        if !float && !(8..=32).contains(&spec.bits_per_sample) {
            return Err(unsupported(format!(
                "{}-bit integer samples",
                spec.bits_per_sample
            )));
        }
        let info = WavInfo {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
            bits_per_sample: spec.bits_per_sample,
            float,
            frames: reader.duration(),
        };
        let mut resampler = Resampler::new(spec.sample_rate, SAMPLE_RATE)?;
        resampler.compensate_delay();
        Ok(WavSource {
            path,
            reader,
            info,
            frame,
            looping: false,
            resampler,
            interleaved: Vec::new(),
            mono: Vec::new(),
            drained: false,
            ended: false,
        })
    }

    /// Opens `path` and plays it in a loop, forever.
    pub fn open_looping(
        path: impl AsRef<Path>,
        frame: FrameDuration,
    ) -> Result<WavSource, SourceError> {
        let mut source = WavSource::open(path, frame)?;
        // An empty file cannot loop; it just ends.
        source.looping = source.info.frames > 0;
        Ok(source)
    }

    /// The file's format.
    pub fn info(&self) -> WavInfo {
        self.info
    }

    /// Reads about one resampler chunk from the file into the resampler.
    fn refill(&mut self) -> Result<(), SourceError> {
        let channels = self.info.channels as usize;
        let want = self.resampler.chunk_len() * channels;
        self.interleaved.clear();
        let path = &self.path;
        let wav_err = |source| SourceError::Wav {
            path: path.clone(),
            source,
        };
        if self.info.float {
            for s in self.reader.samples::<f32>().take(want) {
                let s = s.map_err(wav_err)?;
                self.interleaved.push(if s.is_finite() { s } else { 0.0 });
            }
        } else {
            let scale = 1.0 / (1u64 << (self.info.bits_per_sample - 1)) as f32;
            for s in self.reader.samples::<i32>().take(want) {
                self.interleaved.push(s.map_err(wav_err)? as f32 * scale);
            }
        }
        // A truncated last sample frame (fewer samples than channels) is dropped.
        let whole = self.interleaved.len() / channels * channels;
        self.interleaved.truncate(whole);
        self.mono.clear();
        downmix(&self.interleaved, channels, &mut self.mono);
        self.resampler.push(&self.mono)?;
        if self.interleaved.len() < want {
            // End of file.
            if self.looping {
                self.reader.seek(0).map_err(|e| SourceError::Wav {
                    path: self.path.clone(),
                    source: hound::Error::IoError(e),
                })?;
            } else {
                self.resampler.flush()?;
                self.drained = true;
            }
        }
        Ok(())
    }
}

impl Source for WavSource {
    fn frame_duration(&self) -> FrameDuration {
        self.frame
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        check_frame(self.frame, out)?;
        if self.ended {
            out.iter_mut().for_each(|s| *s = 0.0);
            return Ok(false);
        }
        while self.resampler.available() < out.len() && !self.drained {
            self.refill()?;
        }
        let n = self.resampler.pop(out);
        out[n..].iter_mut().for_each(|s| *s = 0.0);
        if self.drained && self.resampler.available() == 0 {
            self.ended = true;
            // A frame with at least one sample of the file is still a frame of the file.
            return Ok(n > 0);
        }
        Ok(true)
    }
}
