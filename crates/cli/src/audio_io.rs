//! Choosing what a node speaks from (`--input`) and plays into (`--output`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ruang_audio::format::FrameDuration;
use ruang_audio::sink::{OggOpusConfig, OggOpusWriter, Sink, SinkError, WavFormat, WavSink};
use ruang_audio::source::{SilenceSource, Source, ToneSource, VoiceSource, WavSource};
use ruang_node::Pacing;

/// An `--input` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The default (or named) microphone.
    Mic,
    /// A seeded synthetic voice.
    Voice,
    /// A 440 Hz tone.
    Tone,
    /// Silence.
    Silence,
    /// A WAV file, played in real time.
    Wav(PathBuf),
}

impl Input {
    /// Parses `mic|voice|tone|silence|FILE.wav`.
    pub fn parse(text: &str) -> Result<Input> {
        Ok(match text {
            "mic" => Input::Mic,
            "voice" => Input::Voice,
            "tone" => Input::Tone,
            "silence" => Input::Silence,
            path if path.to_ascii_lowercase().ends_with(".wav") => Input::Wav(PathBuf::from(path)),
            other => bail!("--input {other:?}: expected mic, voice, tone, silence or a .wav file"),
        })
    }

    /// Opens the source.
    pub fn open(
        &self,
        frame: FrameDuration,
        device: Option<&str>,
    ) -> Result<(Box<dyn Source + Send>, Pacing)> {
        Ok(match self {
            Input::Mic => {
                let mic = ruang_device::Microphone::open(device, frame)?;
                (Box::new(mic), Pacing::Device)
            }
            Input::Voice => (
                Box::new(VoiceSource::new(rand::random(), frame)),
                Pacing::RealTime,
            ),
            Input::Tone => (
                Box::new(ToneSource::new(440.0, 0.3, frame)),
                Pacing::RealTime,
            ),
            Input::Silence => (Box::new(SilenceSource::new(frame)), Pacing::RealTime),
            Input::Wav(path) => {
                let source = WavSource::open(path, frame)
                    .with_context(|| format!("cannot play {} as input", path.display()))?;
                (Box::new(source), Pacing::RealTime)
            }
        })
    }
}

/// An `--output` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The default (or named) speaker.
    Speaker,
    /// Nothing (audio is still received, decoded and measured).
    Null,
    /// A WAV file: one continuous track from `playout_started` on.
    Wav(PathBuf),
    /// An Ogg Opus file.
    Opus(PathBuf),
}

impl Output {
    /// Parses `speaker|null|FILE.wav|FILE.opus`.
    pub fn parse(text: &str) -> Result<Output> {
        let lower = text.to_ascii_lowercase();
        Ok(match text {
            "speaker" => Output::Speaker,
            "null" => Output::Null,
            _ if lower.ends_with(".wav") => Output::Wav(PathBuf::from(text)),
            _ if lower.ends_with(".opus") || lower.ends_with(".ogg") => {
                Output::Opus(PathBuf::from(text))
            }
            other => bail!("--output {other:?}: expected speaker, null, a .wav or a .opus file"),
        })
    }

    /// Opens the sink.
    pub fn open(
        &self,
        frame: FrameDuration,
        device: Option<&str>,
        title: &str,
    ) -> Result<Box<dyn Sink + Send>> {
        Ok(match self {
            Output::Speaker => Box::new(ruang_device::Speaker::open(device, frame)?),
            Output::Null => Box::new(NullSink),
            Output::Wav(path) => Box::new(create_wav(path)?),
            Output::Opus(path) => {
                prepare_parent(path)?;
                let mut config = OggOpusConfig::default();
                config.encoder.frame = frame;
                config.comments.push(format!("TITLE={title}"));
                config.comments.push("ENCODER=ruang".into());
                Box::new(
                    OggOpusWriter::create(path, config)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )
            }
        })
    }
}

/// Creates a 16-bit 48 kHz mono WAV file (and its folder).
pub fn create_wav(path: &Path) -> Result<WavSink> {
    prepare_parent(path)?;
    WavSink::create(path, WavFormat::Int16)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn prepare_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    Ok(())
}

/// A sink that discards audio.
pub struct NullSink;

impl Sink for NullSink {
    fn push_frame(&mut self, _pcm: &[f32]) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!(Input::parse("voice").unwrap(), Input::Voice);
        assert_eq!(
            Input::parse("talk.WAV").unwrap(),
            Input::Wav("talk.WAV".into())
        );
        assert!(Input::parse("talk.mp3").is_err());
        assert_eq!(
            Output::parse("x.opus").unwrap(),
            Output::Opus("x.opus".into())
        );
        assert_eq!(Output::parse("null").unwrap(), Output::Null);
        assert!(Output::parse("loud").is_err());
    }

    #[test]
    fn a_missing_wav_is_a_clear_error() {
        let err = Input::Wav("/nonexistent/talk.wav".into())
            .open(FrameDuration::Ms20, None)
            .err()
            .unwrap();
        let text = format!("{err:#}");
        assert!(text.contains("/nonexistent/talk.wav"), "{text}");
    }
}
