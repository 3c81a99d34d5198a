//! Flags and configuration file merged into what a command needs (flags win).

use ruang_audio::voice::VoiceConfig;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ruang_audio::format::FrameDuration;
use ruang_net::Multiaddr;
use ruang_node::Builder;
use ruang_proto::{Identity, PublicKey};

use crate::args::{Cli, RoomOptions};
use crate::audio_io::{Input, Output};
use crate::config::{self, FileConfig};

/// The identity file people use, in the configuration folder.
pub const USER_KEY_FILE: &str = "identity.key";

/// The identity file `ruang node` uses by default, in the configuration folder: a node is a
/// service, not its operator.
pub const NODE_KEY_FILE: &str = "node.key";

/// The settings shared by every command.
pub struct Settings {
    /// The user's identity.
    pub identity: Identity,
    /// Where it is stored.
    pub identity_path: PathBuf,
    /// Whether the key file was created by this run.
    pub created: bool,
    /// The identity's lock, held while this process runs a node with it (see
    /// [`Settings::lock_identity`]).
    identity_lock: Option<std::fs::File>,
    /// The configuration file's contents.
    pub file: FileConfig,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    relays: Vec<Multiaddr>,
    mdns: bool,
    /// Reach and be reached only through relays.
    pub hide_ip: bool,
    auto_relay: bool,
    websocket_tls: ruang_net::WebSocketTls,
}

fn parse_addrs(list: &[String], what: &str) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|s| {
            s.parse::<Multiaddr>()
                .with_context(|| format!("{what} {s:?} in the config file is not a multiaddr"))
        })
        .collect()
}

/// The TLS settings for WebSocket from `--tls-cert`/`--tls-key`/`--tls-trust` (or the
/// configuration file's).
fn websocket_tls(cli: &Cli, file: &FileConfig) -> Result<ruang_net::WebSocketTls> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
    };
    let mut tls = ruang_net::WebSocketTls::default();
    let cert = cli.tls_cert.as_ref().or(file.tls_cert.as_ref());
    let key = cli.tls_key.as_ref().or(file.tls_key.as_ref());
    match (cert, key) {
        (Some(cert), Some(key)) => tls
            .serve_pem(&read(cert, "certificate")?, &read(key, "key")?)
            .with_context(|| {
                format!(
                    "--tls-cert {} / --tls-key {}",
                    cert.display(),
                    key.display()
                )
            })?,
        (None, None) => {}
        _ => bail!("a TLS certificate needs its key: give both --tls-cert and --tls-key"),
    }
    let trust = if cli.tls_trust.is_empty() {
        &file.tls_trust
    } else {
        &cli.tls_trust
    };
    for path in trust {
        tls.trust_pem(&read(path, "trusted certificate file")?)
            .with_context(|| format!("--tls-trust {}", path.display()))?;
    }
    Ok(tls)
}

impl Settings {
    /// Loads the identity (creating it on first use) and the configuration file.
    pub fn load(cli: &Cli) -> Result<Settings> {
        let file = config::load(cli.config.as_deref())?;
        // `ruang node` runs as its own peer, not as the person using the machine.
        let default_key = match cli.command {
            crate::args::Command::Node { .. } => NODE_KEY_FILE,
            _ => USER_KEY_FILE,
        };
        let identity_path = match &cli.identity {
            Some(p) => p.clone(),
            None => config::config_dir()
                .context(
                    "cannot find a configuration folder (is $HOME set?); pass --identity PATH",
                )?
                .join(default_key),
        };
        let (identity, created) =
            ruang_proto::keyfile::load_or_create(&identity_path, &mut rand::rng())?;
        let pick = |flags: &[Multiaddr], from_file: &[String], what| -> Result<Vec<Multiaddr>> {
            if flags.is_empty() {
                parse_addrs(from_file, what)
            } else {
                Ok(flags.to_vec())
            }
        };
        let hide_ip = cli.hide_ip || file.hide_ip.unwrap_or(false);
        if hide_ip && !cli.listen.is_empty() {
            bail!("--hide-ip listens on nothing (others reach you through a relay): drop --listen");
        }
        let websocket_tls = websocket_tls(cli, &file)?;
        Ok(Settings {
            websocket_tls,
            listen: pick(&cli.listen, &file.listen, "listen address")?,
            bootstrap: pick(&cli.bootstrap, &file.bootstrap, "bootstrap peer")?,
            relays: pick(&cli.via_relay, &file.relays, "relay")?,
            mdns: !cli.no_mdns && file.mdns.unwrap_or(true),
            hide_ip: cli.hide_ip || file.hide_ip.unwrap_or(false),
            auto_relay: !cli.no_auto_relay && file.auto_relay.unwrap_or(true),
            identity,
            identity_path,
            created,
            identity_lock: None,
            file,
        })
    }

    /// Takes the identity's lock (`<key file>.lock`, an advisory lock the system drops when
    /// this process ends, however it ends) for as long as these settings live. Two nodes with
    /// one identity would be one peer id in two places: each would cut the other's
    /// connections and both would miss messages. A folder where the lock cannot be written
    /// (read-only) only gets a warning.
    pub fn lock_identity(&mut self) -> Result<()> {
        let mut name = self.identity_path.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(
                    "cannot write {} ({e}): not checking whether this identity is already running",
                    path.display()
                );
                return Ok(());
            }
        };
        match file.try_lock() {
            Ok(()) => {
                self.identity_lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "the identity {} is in use by another ruang on this machine; stop that one, or \
                 run this one as someone else with --identity PATH (created on first use)",
                self.identity_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!("cannot lock {} ({e}): not checking", path.display());
                Ok(())
            }
        }
    }

    /// The display name: `--name`, else the config file's, else "anonymous".
    pub fn name(&self, flag: Option<&str>) -> String {
        flag.map(str::to_string)
            .or_else(|| self.file.name.clone())
            .unwrap_or_else(|| "anonymous".into())
    }

    /// A node builder with the network settings.
    pub fn node_builder(&self, name: String) -> Builder {
        let mut b = ruang_node::Node::builder(self.identity.clone())
            .name(name)
            .mdns(self.mdns && !self.hide_ip)
            .hide_ip(self.hide_ip)
            .websocket_tls(self.websocket_tls.clone())
            .auto_relays(if self.auto_relay {
                ruang_net::DEFAULT_AUTO_RELAYS
            } else {
                0
            });
        for a in &self.listen {
            b = b.listen(a.clone());
        }
        for a in &self.bootstrap {
            b = b.bootstrap(a.clone());
        }
        for a in &self.relays {
            b = b.relay(a.clone());
        }
        b
    }
}

/// In-room settings, resolved.
pub struct Room {
    /// Display name.
    pub name: String,
    /// What to speak from.
    pub input: Input,
    /// Whether `--input` was given (a failing default microphone is only a warning).
    pub input_explicit: bool,
    /// What to play into.
    pub output: Output,
    /// Whether `--output` was given.
    pub output_explicit: bool,
    /// Frame duration.
    pub frame: FrameDuration,
    /// Opus bitrate, bits per second.
    pub bitrate_bps: u32,
    /// Voice processing for a microphone.
    pub voice: VoiceConfig,
    /// JSON-lines mode.
    pub json: bool,
}

impl Room {
    /// Resolves `--input`, `--output`, `--frame-ms`, `--bitrate` and the voice-processing
    /// switches against the config file.
    pub fn resolve(settings: &Settings, opts: &RoomOptions) -> Result<Room> {
        let input_text = opts.input.clone().or_else(|| settings.file.input.clone());
        let output_text = opts.output.clone().or_else(|| settings.file.output.clone());
        let frame_ms: u32 = match &opts.frame_ms {
            Some(s) => s.parse().context("--frame-ms")?,
            None => settings.file.frame_ms.unwrap_or(20),
        };
        let frame = match frame_ms {
            10 => FrameDuration::Ms10,
            20 => FrameDuration::Ms20,
            other => bail!("frame length {other} ms is not supported: use 10 or 20"),
        };
        let kbps = opts.bitrate.or(settings.file.bitrate).unwrap_or(32);
        if !(6..=128).contains(&kbps) {
            bail!("bitrate {kbps} kbit/s is out of range: use 6 to 128");
        }
        Ok(Room {
            name: settings.name(opts.name.as_deref()),
            input: Input::parse(input_text.as_deref().unwrap_or("mic"))?,
            input_explicit: input_text.is_some(),
            output: Output::parse(output_text.as_deref().unwrap_or("speaker"))?,
            output_explicit: output_text.is_some(),
            frame,
            bitrate_bps: kbps * 1_000,
            voice: VoiceConfig {
                echo_cancellation: !opts.no_echo_cancel
                    && settings.file.echo_cancel.unwrap_or(true),
                noise_suppression: !opts.no_noise_suppression
                    && settings.file.noise_suppression.unwrap_or(true),
                gain_control: !opts.no_gain_control && settings.file.gain_control.unwrap_or(true),
            },
            json: opts.json,
        })
    }
}

/// Parses a person named on the command line or in a JSON command: a key in hex (as `ruang id`
/// prints it) or a peer id (12D3KooW...).
pub fn parse_person(text: &str) -> Result<PublicKey> {
    let text = text.trim();
    if let Some(key) = PublicKey::from_hex(text) {
        return Ok(key);
    }
    if let Ok(peer) = text.parse::<ruang_net::PeerId>()
        && let Some(key) = ruang_node::ids::public_key(&peer)
    {
        return Ok(key);
    }
    bail!("{text:?} is not a person's key (64 hex digits) or peer id (12D3KooW...)")
}
