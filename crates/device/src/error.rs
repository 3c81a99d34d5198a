//! Errors of the device backend, worded for the person at the keyboard.

/// Which way audio flows through a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Capture (microphone).
    Input,
    /// Playback (loudspeaker, headphones).
    Output,
}

impl Direction {
    /// The command-line flag that replaces a device of this direction with a WAV file.
    pub fn file_flag(self) -> &'static str {
        match self {
            Direction::Input => "--input FILE.wav",
            Direction::Output => "--output FILE.wav",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// What went wrong with a sound device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No audio system could be reached at all.
    #[error("no audio system is available ({reason}); use {} or {} to work with WAV files instead", Direction::Input.file_flag(), Direction::Output.file_flag())]
    NoHost {
        /// Why.
        reason: String,
    },
    /// The default device of a direction does not exist or cannot be opened.
    #[error("no audio {direction} device is available ({reason}); this machine may have no sound card: use {} to use a WAV file instead", direction.file_flag())]
    NoDevice {
        /// Input or output.
        direction: Direction,
        /// What the audio system said.
        reason: String,
    },
    /// A device asked for by name does not exist.
    #[error("no audio {direction} device named {name:?}; available: {}; or use {} to use a WAV file instead", if available.is_empty() { "none".to_string() } else { available.join(", ") }, direction.file_flag())]
    NotFound {
        /// Input or output.
        direction: Direction,
        /// The name asked for.
        name: String,
        /// Names that exist (for that direction).
        available: Vec<String>,
    },
    /// The device exists but could not be opened or started.
    #[error("cannot open audio {direction} device {name:?}: {reason}")]
    Open {
        /// Input or output.
        direction: Direction,
        /// The device.
        name: String,
        /// What the audio system said.
        reason: String,
    },
    /// The device offers no format we can convert from/to.
    #[error("audio {direction} device {name:?} offers no usable format: {reason}")]
    Format {
        /// Input or output.
        direction: Direction,
        /// The device.
        name: String,
        /// Details.
        reason: String,
    },
    /// Sample-rate conversion could not be set up.
    #[error(transparent)]
    Resample(#[from] ruang_audio::resample::ResampleError),
    /// A processing thread could not be started.
    #[error("cannot start the audio thread: {0}")]
    Thread(#[source] std::io::Error),
}
