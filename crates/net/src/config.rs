//! What a node's network layer is built from: [`Config`] and [`Transport`].

use std::time::Duration;

use libp2p::{Multiaddr, identity::Keypair, multiaddr::Protocol};

use crate::tls::WebSocketTls;

/// How long an idle connection (no stream open, not in a gossipsub mesh) stays up by default.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How many relays a node reserves on by itself (see [`Config::auto_relays`]): two, so that
/// losing one leaves the other.
pub const DEFAULT_AUTO_RELAYS: usize = 2;

/// Which transports the swarm is built with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// QUIC (preferred, used for audio when both ends have it) and TCP + Noise + Yamux as a
    /// fallback, plain or inside WebSocket (`/tcp/<port>/ws`, for networks that pass only web
    /// traffic), with DNS resolution on top. The default.
    #[default]
    QuicAndTcp,
    /// QUIC only (UDP), with DNS.
    QuicOnly,
    /// TCP + Noise + Yamux only (plain or inside WebSocket), with DNS. Audio over TCP suffers
    /// head-of-line blocking under loss (DESIGN.md §5): use it where UDP is blocked.
    TcpOnly,
    /// libp2p's in-process memory transport + Noise + Yamux, for tests. Listen on
    /// `/memory/0` (or any `/memory/<n>`); it reaches only nodes in the same process.
    Memory,
}

impl Transport {
    /// Whether QUIC is part of this transport.
    pub fn has_quic(self) -> bool {
        matches!(self, Transport::QuicAndTcp | Transport::QuicOnly)
    }

    /// Whether TCP is part of this transport.
    pub fn has_tcp(self) -> bool {
        matches!(self, Transport::QuicAndTcp | Transport::TcpOnly)
    }

    /// The listen addresses used when none are configured: all interfaces, ephemeral ports.
    pub fn default_listen(self) -> Vec<Multiaddr> {
        let mut out = Vec::new();
        if self.has_quic() {
            out.push(
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Udp(0))
                    .with(Protocol::QuicV1),
            );
        }
        if self.has_tcp() {
            out.push(
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Tcp(0)),
            );
        }
        if self == Transport::Memory {
            out.push(Multiaddr::empty().with(Protocol::Memory(0)));
        }
        out
    }
}

/// Everything [`crate::spawn`] needs. Build it with [`Config::new`] and change fields as needed.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's key; its public half is the node's `PeerId`. ruang derives it from the user's
    /// identity with `Keypair::ed25519_from_bytes`.
    pub keypair: Keypair,
    /// Addresses to listen on. Default: [`Transport::default_listen`]. Use port 0 for an
    /// ephemeral port; [`crate::Client::listen_addrs`] reports what was bound.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and added to Kademlia. Each must end with `/p2p/<peer id>`;
    /// one without is still dialled but not added to Kademlia.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses this node announces as reachable from outside (a public bootstrap or relay
    /// node). They are confirmed as external addresses at start. Default: none; AutoNAT v2
    /// confirms them otherwise.
    pub external_addrs: Vec<Multiaddr>,
    /// Local peer discovery with mDNS. Default `true`. Tests should turn it off so nodes of
    /// unrelated tests on the same machine do not find each other.
    pub mdns: bool,
    /// Serve as a circuit relay (v2) for others, with limits that carry a room's audio (see
    /// [`crate::limits`]). Default `false`. A relay needs a confirmed external address; when
    /// `external_addrs` is empty, its own listen addresses are used.
    pub relay_server: bool,
    /// Hide this node's IP address from everyone but its relays and bootstrap nodes: listen on
    /// nothing (`listen` is ignored), connect to others only through relay circuits, refuse
    /// direct connections, and run no mDNS, hole punching, AutoNAT or relay service. Peers reach
    /// the node only through a relay it reserves on ([`crate::Client::listen_via_relay`], or
    /// one found by itself, see `auto_relays`). Default `false`.
    pub hide_ip: bool,
    /// Relays found by themselves: up to this many connected peers that offer circuit relay v2
    /// (bootstrap nodes run as relays, say; learnt through identify) are asked for a
    /// reservation, so that a node behind NAT can be reached with no flags. Relays given to
    /// `listen_via_relay` count toward it; one that keeps refusing is given up for another.
    /// Default [`DEFAULT_AUTO_RELAYS`]; 0 turns it off. Relay servers never use it.
    pub auto_relays: usize,
    /// Transports to build. Default [`Transport::QuicAndTcp`].
    pub transport: Transport,
    /// TLS for WebSocket: a certificate to listen on `/tls/ws` with, and authorities to trust
    /// besides the built-in ones when dialling one. Default: no certificate, built-in trust.
    pub websocket_tls: WebSocketTls,
    /// How long a connection with nothing to do stays open.
    pub idle_connection_timeout: Duration,
    /// A Prometheus registry to record libp2p's metrics into (connections, relay
    /// reservations and circuits, gossip messages, identify, Kademlia, ping, hole punching),
    /// under the `libp2p_` prefix. Default: none (nothing recorded).
    pub metrics: Option<std::sync::Arc<std::sync::Mutex<crate::Registry>>>,
}

impl Config {
    /// The defaults for `keypair`: QUIC and TCP on all interfaces, mDNS on, no relay service,
    /// no bootstrap peers.
    pub fn new(keypair: Keypair) -> Self {
        let transport = Transport::default();
        Config {
            keypair,
            listen: transport.default_listen(),
            bootstrap: Vec::new(),
            external_addrs: Vec::new(),
            mdns: true,
            relay_server: false,
            hide_ip: false,
            auto_relays: DEFAULT_AUTO_RELAYS,
            transport,
            websocket_tls: WebSocketTls::default(),
            idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
            metrics: None,
        }
    }

    /// Same as [`Config::new`] with another transport and its default listen addresses.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self.listen = transport.default_listen();
        self
    }
}
