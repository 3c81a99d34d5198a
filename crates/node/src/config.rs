//! How a node is set up: [`Config`] and its builder.

use ruang_audio::voice::VoiceConfig;
use std::time::Duration;

use ruang_audio::format::FrameDuration;
use ruang_net::{Multiaddr, Transport, WebSocketTls};
use ruang_proto::Identity;

/// Default number of listeners a speaker streams to directly.
pub const DEFAULT_FANOUT: usize = 64;
/// Default Opus bitrate.
pub const DEFAULT_BITRATE_BPS: u32 = 32_000;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// The user's identity: signs events, and is the libp2p key.
    pub identity: Identity,
    /// Display name (at most 32 bytes; longer is cut).
    pub name: String,
    /// Listen addresses; empty means the network layer's defaults (QUIC and TCP, any port).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers (with `/p2p/<id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Relays to reserve a circuit on, so peers that cannot reach us directly can.
    pub relays: Vec<Multiaddr>,
    /// Local discovery with mDNS.
    pub mdns: bool,
    /// Serve as a circuit relay for others.
    pub relay_server: bool,
    /// Hide our IP address: reach and be reached only through relays (see
    /// `ruang_net::Config::hide_ip`). Presence and tickets then carry relay circuits only.
    pub hide_ip: bool,
    /// Relays to find and reserve on by ourselves (see `ruang_net::Config::auto_relays`).
    pub auto_relays: usize,
    /// Transports.
    pub transport: Transport,
    /// TLS for WebSocket: a certificate for `/tls/ws` listen addresses, extra trusted
    /// authorities.
    pub websocket_tls: WebSocketTls,
    /// Listeners a speaker streams to directly, at most.
    pub fanout: usize,
    /// Audio frame duration.
    pub frame: FrameDuration,
    /// Opus bitrate.
    pub bitrate_bps: u32,
    /// Whether to decode and mix received audio (a relay or benchmark node may not).
    pub decode_audio: bool,
    /// Presence heartbeat interval; presence lasts three intervals.
    pub presence_interval: Duration,
    /// Directory re-announcement interval.
    pub announce_interval: Duration,
    /// Anti-entropy sync interval (ask a member for events we may lack).
    pub sync_interval: Duration,
    /// Echo cancellation, noise suppression and gain control for a microphone
    /// ([`Pacing::Device`](crate::Pacing::Device) sources; files and synthetic sources are
    /// sent as they are). All on by default.
    pub voice: VoiceConfig,
    /// A Prometheus registry the network layer records libp2p's metrics into (see
    /// `ruang_net::Config::metrics`). None by default.
    pub metrics: Option<std::sync::Arc<std::sync::Mutex<ruang_net::Registry>>>,
}

impl Config {
    /// Defaults for `identity`.
    pub fn new(identity: Identity) -> Config {
        Config {
            identity,
            name: String::new(),
            listen: Vec::new(),
            bootstrap: Vec::new(),
            relays: Vec::new(),
            mdns: true,
            relay_server: false,
            hide_ip: false,
            auto_relays: ruang_net::DEFAULT_AUTO_RELAYS,
            transport: Transport::default(),
            websocket_tls: WebSocketTls::default(),
            fanout: DEFAULT_FANOUT,
            frame: FrameDuration::Ms20,
            bitrate_bps: DEFAULT_BITRATE_BPS,
            decode_audio: true,
            presence_interval: Duration::from_secs(2),
            announce_interval: Duration::from_millis(ruang_proto::directory::ANNOUNCE_INTERVAL_MS),
            sync_interval: Duration::from_secs(5),
            voice: VoiceConfig::microphone(),
            metrics: None,
        }
    }
}

/// Builds and starts a node: `Node::builder(identity).name("ana").spawn().await`.
#[must_use]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// A builder with the defaults of [`Config::new`].
    pub fn new(identity: Identity) -> Builder {
        Builder {
            config: Config::new(identity),
        }
    }

    /// From a full configuration.
    pub fn from_config(config: Config) -> Builder {
        Builder { config }
    }

    /// Display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Adds a listen address.
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.config.listen.push(addr);
        self
    }

    /// Adds a bootstrap peer.
    pub fn bootstrap(mut self, addr: Multiaddr) -> Self {
        self.config.bootstrap.push(addr);
        self
    }

    /// Adds a relay to be reachable through.
    pub fn relay(mut self, addr: Multiaddr) -> Self {
        self.config.relays.push(addr);
        self
    }

    /// mDNS on or off.
    pub fn mdns(mut self, on: bool) -> Self {
        self.config.mdns = on;
        self
    }

    /// Serve as a relay.
    pub fn relay_server(mut self, on: bool) -> Self {
        self.config.relay_server = on;
        self
    }

    /// Record libp2p's metrics into this Prometheus registry.
    pub fn metrics(
        mut self,
        registry: std::sync::Arc<std::sync::Mutex<ruang_net::Registry>>,
    ) -> Self {
        self.config.metrics = Some(registry);
        self
    }

    /// Hide our IP address (relays only).
    pub fn hide_ip(mut self, on: bool) -> Self {
        self.config.hide_ip = on;
        self
    }

    /// Relays to find and reserve on by ourselves (0: none).
    pub fn auto_relays(mut self, n: usize) -> Self {
        self.config.auto_relays = n;
        self
    }

    /// Transports.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// TLS for WebSocket (`/tls/ws`).
    pub fn websocket_tls(mut self, tls: WebSocketTls) -> Self {
        self.config.websocket_tls = tls;
        self
    }

    /// Direct listeners per speaker.
    pub fn fanout(mut self, fanout: usize) -> Self {
        self.config.fanout = fanout;
        self
    }

    /// Audio frame duration.
    pub fn frame(mut self, frame: FrameDuration) -> Self {
        self.config.frame = frame;
        self
    }

    /// Voice processing for microphone input.
    pub fn voice(mut self, voice: VoiceConfig) -> Self {
        self.config.voice = voice;
        self
    }

    /// Opus bitrate in bits per second.
    pub fn bitrate(mut self, bps: u32) -> Self {
        self.config.bitrate_bps = bps;
        self
    }

    /// Whether received audio is decoded and mixed.
    pub fn decode_audio(mut self, on: bool) -> Self {
        self.config.decode_audio = on;
        self
    }

    /// Presence heartbeat interval.
    pub fn presence_interval(mut self, every: Duration) -> Self {
        self.config.presence_interval = every;
        self
    }

    /// Directory re-announcement interval.
    pub fn announce_interval(mut self, every: Duration) -> Self {
        self.config.announce_interval = every;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the node on the current tokio runtime.
    pub async fn spawn(self) -> Result<crate::NodeHandle, crate::NodeError> {
        crate::driver::spawn(self.config).await
    }
}
