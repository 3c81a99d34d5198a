//! Finding devices and choosing a stream format.

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{SampleFormat, SupportedStreamConfig, SupportedStreamConfigRange};
use ruang_audio::SAMPLE_RATE;

use crate::error::{DeviceError, Direction};

/// A sound device as the audio system lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The identifier to open it by (an ALSA PCM name such as `default`, `null` or
    /// `hw:CARD=0,DEV=0`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Audio host (`ALSA`, ...).
    pub host: String,
    /// It can capture.
    pub is_input: bool,
    /// It can play.
    pub is_output: bool,
    /// It is the system's default input.
    pub default_input: bool,
    /// It is the system's default output.
    pub default_output: bool,
}

/// The audio host (ALSA on Linux), without panicking when none is usable.
pub(crate) fn host() -> Result<cpal::Host, DeviceError> {
    let mut reasons = Vec::new();
    for id in cpal::available_hosts() {
        match cpal::host_from_id(id) {
            Ok(host) => return Ok(host),
            Err(e) => reasons.push(format!("{}: {e}", id.name())),
        }
    }
    let reason = if reasons.is_empty() {
        "no audio host compiled in".to_string()
    } else {
        reasons.join("; ")
    };
    Err(DeviceError::NoHost { reason })
}

fn device_id(device: &cpal::Device) -> String {
    device
        .id()
        .map(|id| id.id().to_string())
        .unwrap_or_else(|_| device.to_string())
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| device_id(device))
}

/// Every device the audio system knows, inputs and outputs. An empty list (or only virtual
/// devices such as `null`) means there is no sound card.
pub fn list_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    // With no sound card ALSA still offers its `null` device (described as "Discard all
    // samples (playback) or generate zero samples (capture)"), and asking for defaults makes
    // alsa-lib print errors: there is nothing to list.
    if no_sound_card() {
        return Ok(Vec::new());
    }
    let host = host()?;
    let default_in = host.default_input_device().map(|d| device_id(&d));
    let default_out = host.default_output_device().map(|d| device_id(&d));
    let devices = host.devices().map_err(|e| DeviceError::NoHost {
        reason: e.to_string(),
    })?;
    let mut list: Vec<DeviceInfo> = devices
        .map(|d| {
            let id = device_id(&d);
            DeviceInfo {
                name: device_name(&d),
                host: host.id().name().to_string(),
                is_input: d.supports_input(),
                is_output: d.supports_output(),
                default_input: default_in.as_deref() == Some(id.as_str()),
                default_output: default_out.as_deref() == Some(id.as_str()),
                id,
            }
        })
        .collect();
    list.dedup_by(|a, b| a.id == b.id);
    Ok(list)
}

/// Whether Linux says this machine has no sound card at all (`/proc/asound/cards`). Elsewhere,
/// or when the file cannot be read, assume there may be one.
fn no_sound_card() -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    match std::fs::read_to_string("/proc/asound/cards") {
        Ok(text) => text.contains("no soundcards") || text.trim().is_empty(),
        // No ALSA in the kernel at all.
        Err(e) => {
            e.kind() == std::io::ErrorKind::NotFound
                && !std::path::Path::new("/proc/asound").exists()
        }
    }
}

/// The device to open: by id or name, or the default of `direction`.
pub(crate) fn find(
    host: &cpal::Host,
    name: Option<&str>,
    direction: Direction,
) -> Result<cpal::Device, DeviceError> {
    let Some(name) = name.filter(|n| *n != "default") else {
        // Asking ALSA for its default device on a machine with no sound card makes alsa-lib
        // print a screenful of errors to stderr (silencing them needs an unsafe variadic
        // callback); the kernel can tell us first.
        if no_sound_card() {
            return Err(DeviceError::NoDevice {
                direction,
                reason: "the kernel lists no sound card".to_string(),
            });
        }
        let device = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return device.ok_or_else(|| DeviceError::NoDevice {
            direction,
            reason: "the audio system reports no default device".to_string(),
        });
    };
    let devices = host.devices().map_err(|e| DeviceError::NoHost {
        reason: e.to_string(),
    })?;
    let mut available = Vec::new();
    for d in devices {
        let usable = match direction {
            Direction::Input => d.supports_input(),
            Direction::Output => d.supports_output(),
        };
        if device_id(&d) == name || device_name(&d) == name {
            return Ok(d);
        }
        if usable {
            available.push(device_id(&d));
        }
    }
    Err(DeviceError::NotFound {
        direction,
        name: name.to_string(),
        available,
    })
}

/// Sample formats we can convert, best first.
const FORMATS: [SampleFormat; 6] = [
    SampleFormat::F32,
    SampleFormat::I16,
    SampleFormat::I32,
    SampleFormat::I24,
    SampleFormat::U16,
    SampleFormat::U8,
];

/// Channel counts we accept (more than this is surely not a voice device).
const MAX_CHANNELS: u16 = 32;

/// Picks the stream format closest to the pipeline's: 48 kHz if offered (no resampling),
/// then the fewest channels (mono), then the best sample format.
pub(crate) fn choose_config(
    device: &cpal::Device,
    direction: Direction,
    name: &str,
) -> Result<SupportedStreamConfig, DeviceError> {
    let open_err = |e: cpal::Error| DeviceError::Open {
        direction,
        name: name.to_string(),
        reason: e.to_string(),
    };
    let ranges: Vec<SupportedStreamConfigRange> = match direction {
        Direction::Input => device
            .supported_input_configs()
            .map_err(open_err)?
            .collect(),
        Direction::Output => device
            .supported_output_configs()
            .map_err(open_err)?
            .collect(),
    };
    let score = |r: &SupportedStreamConfigRange| {
        let rate_ok = r.min_sample_rate() <= SAMPLE_RATE && SAMPLE_RATE <= r.max_sample_rate();
        let format_rank = FORMATS
            .iter()
            .position(|f| *f == r.sample_format())
            .unwrap_or(usize::MAX);
        (!rate_ok, r.channels(), format_rank)
    };
    let best = ranges
        .into_iter()
        .filter(|r| {
            FORMATS.contains(&r.sample_format()) && (1..=MAX_CHANNELS).contains(&r.channels())
        })
        .min_by_key(score)
        .ok_or_else(|| DeviceError::Format {
            direction,
            name: name.to_string(),
            reason: "no integer or float PCM format with 1 to 32 channels".to_string(),
        })?;
    let rate = if best.min_sample_rate() <= SAMPLE_RATE && SAMPLE_RATE <= best.max_sample_rate() {
        SAMPLE_RATE
    } else if best.max_sample_rate() < SAMPLE_RATE {
        best.max_sample_rate()
    } else {
        best.min_sample_rate()
    };
    Ok(best.with_sample_rate(rate))
}

/// The format a stream runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFormat {
    /// Device sample rate in Hz.
    pub sample_rate: u32,
    /// Device channels.
    pub channels: u16,
    /// Device sample format.
    pub sample_format: SampleFormat,
}

impl From<&SupportedStreamConfig> for StreamFormat {
    fn from(c: &SupportedStreamConfig) -> Self {
        StreamFormat {
            sample_rate: c.sample_rate(),
            channels: c.channels(),
            sample_format: c.sample_format(),
        }
    }
}

/// Turns an error from opening the *default* device into "there is no device", which is what
/// it means on a machine without a sound card.
pub(crate) fn default_missing(
    err: DeviceError,
    name: Option<&str>,
    direction: Direction,
) -> DeviceError {
    match (name, err) {
        (
            None | Some("default"),
            DeviceError::Open { reason, .. } | DeviceError::Format { reason, .. },
        ) => DeviceError::NoDevice { direction, reason },
        (_, err) => err,
    }
}
