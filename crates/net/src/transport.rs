//! Building the swarm: one builder chain per [`Transport`], all ending in the same
//! `Swarm<Behaviour>` (the transport is boxed inside).

use std::time::Duration;

use libp2p::{
    Multiaddr, Swarm, SwarmBuilder,
    core::{Transport as _, transport::MemoryTransport, upgrade::Version},
    multiaddr::Protocol,
    noise, tcp, yamux,
};

use crate::{
    behaviour::Behaviour,
    config::{Config, Transport},
    error::NetError,
    limits::{QUIC_IDLE_TIMEOUT, QUIC_KEEP_ALIVE},
};

/// Upper bound on a memory-transport connection upgrade (Noise + Yamux).
const MEMORY_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Builds the swarm for `config`. Must run inside a tokio runtime.
///
/// Every transport with TCP also speaks WebSocket over TCP (`/tcp/<port>/ws`; Noise
/// authenticates the peer inside it as on plain TCP): a network that lets through nothing but
/// web traffic still carries a room when a node listens on port 443 with it. Smart dialling
/// races all of a peer's addresses, QUIC first.
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
    let tcp_config = || tcp::Config::default().nodelay(true);
    let builder = SwarmBuilder::with_existing_identity(config.keypair.clone()).with_tokio();
    let behaviour = |key: &libp2p::identity::Keypair, relay_client| {
        Behaviour::new(key, relay_client, config)
            .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
    };

    let swarm = match config.transport {
        Transport::QuicAndTcp => builder
            .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_quic_config(quic_config)
            .with_dns()
            .map_err(|e| err(&e))?
            .with_websocket(noise::Config::new, yamux::Config::default)
            .await
            .map_err(|e| err(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        Transport::QuicOnly => builder
            .with_quic_config(quic_config)
            .with_dns()
            .map_err(|e| err(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        Transport::TcpOnly => builder
            .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_dns()
            .map_err(|e| err(&e))?
            .with_websocket(noise::Config::new, yamux::Config::default)
            .await
            .map_err(|e| err(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        Transport::Memory => builder
            .with_other_transport(|key| {
                let noise = noise::Config::new(key)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .timeout(MEMORY_UPGRADE_TIMEOUT),
                )
            })
            .map_err(|e| err(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
