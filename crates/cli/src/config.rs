//! The configuration file (`$XDG_CONFIG_HOME/ruang/config.toml`), merged with the flags
//! (flags win).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// What the configuration file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Display name.
    pub name: Option<String>,
    /// Bootstrap peers (multiaddrs with /p2p/<id>).
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Listen addresses.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Relays to be reachable through.
    #[serde(default)]
    pub relays: Vec<String>,
    /// mDNS on the local network.
    pub mdns: Option<bool>,
    /// Hide the IP address (relays only), as `--hide-ip`.
    pub hide_ip: Option<bool>,
    /// Look for relays by ourselves (default true), as the opposite of `--no-auto-relay`.
    pub auto_relay: Option<bool>,
    /// Certificate chain (PEM) for `/tls/ws` listen addresses, as `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM), as `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// Extra certificate authorities (PEM files) trusted for `/tls/ws`, as `--tls-trust`.
    #[serde(default)]
    pub tls_trust: Vec<PathBuf>,
    /// Default input: mic, voice, tone, silence or a WAV path.
    pub input: Option<String>,
    /// Default output: speaker, null, or a file path.
    pub output: Option<String>,
    /// Microphone device name.
    pub input_device: Option<String>,
    /// Speaker device name.
    pub output_device: Option<String>,
    /// Opus bitrate in kbit/s.
    pub bitrate: Option<u32>,
    /// Frame length in ms (10 or 20).
    pub frame_ms: Option<u32>,
    /// Microphone echo cancellation (default true), as `--no-echo-cancel`.
    pub echo_cancel: Option<bool>,
    /// Microphone noise suppression (default true), as `--no-noise-suppression`.
    pub noise_suppression: Option<bool>,
    /// Microphone automatic gain control (default true), as `--no-gain-control`.
    pub gain_control: Option<bool>,
}

/// Where ruang keeps its files.
pub fn config_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "ruang").map(|d| d.config_dir().to_path_buf())
}

/// The default log file for the terminal UI.
pub fn default_log_file() -> PathBuf {
    directories::ProjectDirs::from("", "", "ruang")
        .map(|d| {
            d.state_dir()
                .unwrap_or_else(|| d.cache_dir())
                .join("ruang.log")
        })
        .unwrap_or_else(|| std::env::temp_dir().join("ruang.log"))
}

/// Loads the file at `path`, or the default one if it exists; a missing default is no error.
pub fn load(path: Option<&Path>) -> Result<FileConfig> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match config_dir() {
            Some(dir) => (dir.join("config.toml"), false),
            None => return Ok(FileConfig::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(FileConfig::default());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()));
        }
    };
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_refuses_unknown_keys() {
        let c: FileConfig = toml::from_str(
            "name = \"ana\"\nbootstrap = [\"/ip4/1.2.3.4/udp/4001/quic-v1\"]\nmdns = false\nbitrate = 24\n",
        )
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("ana"));
        assert_eq!(c.bootstrap.len(), 1);
        assert_eq!(c.mdns, Some(false));
        assert!(toml::from_str::<FileConfig>("nmae = \"typo\"").is_err());
    }

    /// The README's sample file, with its commented-out keys turned on, is a valid file.
    #[test]
    fn the_readme_sample_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Configuration").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let sample = &section[start..start + section[start..].find("```").unwrap()];
        let uncommented: String = sample
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c: FileConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(c.tls_key.as_deref(), Some(Path::new("key.pem")));
        assert!(c.input.is_some() && c.frame_ms.is_some());
    }
}
