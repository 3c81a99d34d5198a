//! Building the swarm: one builder chain per [`Transport`], all ending in the same
//! `Swarm<Behaviour>` (the transport is boxed inside).

use futures::{AsyncRead, AsyncWrite};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder,
    core::{
        Transport as _,
        muxing::StreamMuxerBox,
        transport::{self, MemoryTransport},
        upgrade::Version,
    },
    dns,
    identity::Keypair,
    multiaddr::Protocol,
    noise, quic, tcp, websocket, yamux,
};

use crate::{
    behaviour::Behaviour,
    config::{Config, Transport},
    error::NetError,
    ip_budget::HandshakeRate,
    limits::{HANDSHAKE_TIMEOUT, QUIC_IDLE_TIMEOUT, QUIC_KEEP_ALIVE},
};

/// QUIC's liveness: a connection whose peer is silent for [`QUIC_IDLE_TIMEOUT`] is closed, and
/// an idle one sends a keep-alive every [`QUIC_KEEP_ALIVE`]. libp2p's default (10 s, 5 s) kept
/// a dead connection to a peer that had restarted for 10 s, during which its new connection
/// was a second one to the same peer id and gossipsub never greeted it (see
/// `EventLoop::on_closed`).
fn quic_config(mut c: libp2p::quic::Config) -> libp2p::quic::Config {
    c.max_idle_timeout = QUIC_IDLE_TIMEOUT.as_millis() as u32;
    c.keep_alive_interval = QUIC_KEEP_ALIVE;
    c
}

/// Every libp2p transport of a node, authenticated (Noise) and multiplexed (Yamux for those
/// that need it), boxed.
type Boxed = transport::Boxed<(PeerId, StreamMuxerBox)>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Noise + Yamux over `inner`'s connections, within [`HANDSHAKE_TIMEOUT`].
fn secured<T>(inner: T, key: &Keypair) -> Result<Boxed, BoxError>
where
    T: libp2p::core::Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    Ok(inner
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// The transports of `config.transport`, built by hand rather than with `SwarmBuilder`'s
/// phases so that WebSocket can take a TLS configuration.
///
/// WebSocket sits outside DNS (it resolves `/dns*` itself, inside, and keeps the name for TLS
/// server-name checks); plain TCP and QUIC are dialled through DNS.
fn transports(key: &Keypair, config: &Config, rate: &HandshakeRate) -> Result<Boxed, BoxError> {
    let tcp = || tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let quic = || {
        let quic_config =
            quic_config(quic::Config::new(key)).with_incoming_filter(rate.quic_filter());
        quic::tokio::Transport::new(quic_config)
            .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
            .boxed()
    };
    let dns = |inner: Boxed| -> Result<Boxed, BoxError> {
        Ok(dns::tokio::Transport::system(inner)?.boxed())
    };
    let websocket = || -> Result<Boxed, BoxError> {
        let mut ws = websocket::Config::new(dns::tokio::Transport::system(tcp())?);
        ws.set_tls_config(config.websocket_tls.libp2p_config()?);
        secured(ws, key)
    };
    let either = |a: Boxed, b: Boxed| a.or_transport(b).map(|e, _| e.into_inner()).boxed();
    Ok(match config.transport {
        Transport::QuicAndTcp => either(websocket()?, dns(either(quic(), secured(tcp(), key)?))?),
        Transport::QuicOnly => dns(quic())?,
        Transport::TcpOnly => either(websocket()?, dns(secured(tcp(), key)?)?),
        Transport::Memory => secured(MemoryTransport::default(), key)?,
    })
}

/// Builds the swarm for `config`. Must run inside a tokio runtime.
///
/// Every transport with TCP also speaks WebSocket over TCP (`/tcp/<port>/ws`, or `/tls/ws`
/// with [`Config::websocket_tls`]; Noise authenticates the peer inside it as on plain TCP): a
/// network that lets through nothing but web traffic still carries a room when a node listens
/// on port 443 with it. Smart dialling races all of a peer's addresses, QUIC first.
pub(crate) async fn build_swarm(config: &Config) -> Result<Swarm<Behaviour>, NetError> {
    let idle = config.idle_connection_timeout;
    let swarm_config = move |c: libp2p::swarm::Config| {
        c.with_idle_connection_timeout(idle)
            // Dialer sends data with its protocol proposal: saves a round trip per stream.
            .with_substream_upgrade_protocol_override(Version::V1Lazy)
            // Rank QUIC before TCP when dialling several addresses (happy eyeballs).
            .with_smart_dial()
    };
    let err = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    // A TLS problem is found (and reported as such) before the builder wraps it in its own.
    config.websocket_tls.libp2p_config()?;
    let rate = HandshakeRate::default();
    let swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_other_transport(|key| transports(key, config, &rate))
        .map_err(|e| err(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| err(&e))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, config, rate.clone()).map_err(BoxError::from)
        })
        .map_err(|e| err(&e))?
        .with_swarm_config(swarm_config)
        .build();
    Ok(swarm)
}

/// How good a connection is for audio, from its remote address: direct QUIC beats any other
/// direct connection, which beats a relayed one. (A relayed connection that came in through
/// our circuit listener has the remote address `/p2p/<peer>`: no transport of its own.)
pub fn connection_rank(addr: &Multiaddr) -> u8 {
    if matches!(addr.iter().next(), Some(Protocol::P2p(_)) | None) {
        return 0;
    }
    let mut quic = false;
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return 0,
            Protocol::QuicV1 | Protocol::Quic => quic = true,
            _ => {}
        }
    }
    if quic { 2 } else { 1 }
}

/// Whether `addr` can be dialled by the configured transport (relay circuits always can).
pub(crate) fn transport_supports(transport: Transport, addr: &Multiaddr) -> bool {
    let mut has_quic = false;
    let mut has_tcp = false;
    let mut has_memory = false;
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return true,
            Protocol::QuicV1 | Protocol::Quic => has_quic = true,
            Protocol::Tcp(_) => has_tcp = true,
            Protocol::Memory(_) => has_memory = true,
            _ => {}
        }
    }
    match transport {
        Transport::Memory => has_memory,
        t => (has_quic && t.has_quic()) || (has_tcp && !has_quic && t.has_tcp()),
    }
}

/// The peer id at the end of `addr` (`.../p2p/<id>`), if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// The relay a circuit address goes through: the peer named just before `/p2p-circuit`.
pub(crate) fn relay_of(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => last = Some(peer),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_of_a_circuit_address() {
        let r = libp2p::PeerId::random();
        let n = libp2p::PeerId::random();
        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{r}/p2p-circuit/p2p/{n}")
            .parse()
            .unwrap();
        assert_eq!(relay_of(&circuit), Some(r));
        let listener: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{r}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(relay_of(&listener), Some(r));
        let direct: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{n}").parse().unwrap();
        assert_eq!(relay_of(&direct), None);
    }

    #[test]
    fn ranks() {
        let quic: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap();
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let relayed: Multiaddr =
            "/ip4/127.0.0.1/udp/1/quic-v1/p2p/12D3KooWLRPJAA5o6eg1aEFDVbUWgphJjUcmZtQgeTVCT5HZBkaX/p2p-circuit"
                .parse()
                .unwrap();
        assert!(connection_rank(&quic) > connection_rank(&tcp));
        assert!(connection_rank(&tcp) > connection_rank(&relayed));
        let relayed_in: Multiaddr = "/p2p/12D3KooWLRPJAA5o6eg1aEFDVbUWgphJjUcmZtQgeTVCT5HZBkaX"
            .parse()
            .unwrap();
        assert_eq!(connection_rank(&relayed_in), 0);
        assert!(transport_supports(Transport::QuicOnly, &quic));
        assert!(!transport_supports(Transport::QuicOnly, &tcp));
        assert!(transport_supports(Transport::TcpOnly, &tcp));
        assert!(!transport_supports(Transport::Memory, &tcp));
        assert!(transport_supports(Transport::TcpOnly, &relayed));
    }
}
