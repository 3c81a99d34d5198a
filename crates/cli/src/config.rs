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

/// Rooms an identity was banned from: `<room id> <key> <unix seconds>` lines in the state
/// folder, kept to explain a refused join later (the room's members refuse a banned peer's
/// connections, so the node itself cannot learn why). Never used to refuse a join: a
/// moderator may have lifted the ban since.
pub mod bans {
    use std::path::{Path, PathBuf};

    use ruang_proto::PublicKey;
    use ruang_proto::room::RoomId;

    /// Bans remembered, newest kept.
    const MAX_REMEMBERED: usize = 256;

    /// The default file.
    pub fn file() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "ruang").map(|d| {
            d.state_dir()
                .unwrap_or_else(|| d.cache_dir())
                .join("banned-rooms")
        })
    }

    /// Remembers that `me` was banned from `room` at `unix_s`. Failures are only logged.
    pub fn remember(path: &Path, room: &RoomId, me: &PublicKey, unix_s: u64) {
        let mut lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{} {}", room.to_hex(), me.to_hex())))
            .map(str::to_string)
            .collect();
        lines.push(format!("{} {} {unix_s}", room.to_hex(), me.to_hex()));
        let keep = lines.len().saturating_sub(MAX_REMEMBERED);
        let text = lines[keep..].join("\n") + "\n";
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, text));
        if let Err(e) = written {
            tracing::warn!("cannot remember the ban in {}: {e}", path.display());
        }
    }

    /// When `me` was banned from `room`, if that was remembered (unix seconds).
    pub fn since(path: &Path, room: &RoomId, me: &PublicKey) -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        let prefix = format!("{} {} ", room.to_hex(), me.to_hex());
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
    }
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

    #[test]
    fn bans_are_remembered_per_room_and_identity() {
        use ruang_proto::room::RoomId;
        use ruang_proto::{Hash, PublicKey};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/banned-rooms");
        let (room, other_room) = (RoomId(Hash([1; 32])), RoomId(Hash([2; 32])));
        let (me, someone) = (PublicKey([3; 32]), PublicKey([4; 32]));
        assert_eq!(bans::since(&path, &room, &me), None);
        bans::remember(&path, &room, &me, 100);
        bans::remember(&path, &room, &me, 200);
        assert_eq!(bans::since(&path, &room, &me), Some(200));
        assert_eq!(bans::since(&path, &other_room, &me), None);
        assert_eq!(bans::since(&path, &room, &someone), None);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 1, "one line per room and identity");
    }

    /// The packaged sample configuration, every key uncommented, is a valid file.
    #[test]
    fn the_packaged_sample_parses() {
        let sample = include_str!("../../../packaging/config.sample.toml");
        let uncommented: String = sample
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = "))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        let c: FileConfig = toml::from_str(&uncommented).unwrap();
        assert!(c.name.is_some() && c.bootstrap.len() == 1 && c.gain_control == Some(true));
        assert!(c.tls_cert.is_some() && c.input_device.is_some() && c.frame_ms == Some(20));
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
