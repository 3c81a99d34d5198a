//! IP privacy ([`Config::hide_ip`](crate::Config::hide_ip)): a behaviour that refuses every
//! direct connection except to the relays and bootstrap nodes the user chose.
//!
//! A node that hides its IP address listens on nothing, so the only way to reach it is a relay
//! circuit; and it dials others only through relays, so no peer but its relays (and bootstrap
//! nodes) ever sees a packet from its address. The node's own dials are filtered before they
//! start (`EventLoop::dialable`); this guard is the backstop for dials that behaviours start
//! by themselves (Kademlia queries, a relay client's dial, anything added later) and for
//! incoming connections, and it is what makes the rule hold whatever the callers do.
//!
//! Allowed for direct connections: bootstrap peers, relays we reserve on, and the relay of any
//! circuit address we dial (learnt when that dial passes here, before the relay is dialled).

use std::{
    collections::{HashSet, VecDeque},
    convert::Infallible,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};

use crate::transport::relay_of;

/// How many peers may be allowed for direct connections at most; the oldest is forgotten.
const MAX_ALLOWED: usize = 256;

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("IP privacy: no direct connection to {0} (only through a relay)")]
pub(crate) struct Refused(String);

/// The behaviour. Inactive (allows everything) unless built with `enabled`.
pub(crate) struct Guard {
    enabled: bool,
    allowed: HashSet<PeerId>,
    order: VecDeque<PeerId>,
}

impl Guard {
    pub(crate) fn new(enabled: bool, bootstrap: &[Multiaddr]) -> Self {
        let mut g = Guard {
            enabled,
            allowed: HashSet::new(),
            order: VecDeque::new(),
        };
        for peer in bootstrap.iter().filter_map(crate::transport::peer_of) {
            g.allow(peer);
        }
        g
    }

    /// Lets `peer` be connected to directly (a relay, a bootstrap node).
    pub(crate) fn allow(&mut self, peer: PeerId) {
        if !self.allowed.insert(peer) {
            return;
        }
        self.order.push_back(peer);
        if self.order.len() > MAX_ALLOWED
            && let Some(old) = self.order.pop_front()
        {
            self.allowed.remove(&old);
        }
    }

    /// Whether a dial to `peer` may use `addr`: always when the guard is off, for circuits,
    /// and for direct addresses of allowed peers.
    pub(crate) fn permits(&self, peer: Option<PeerId>, addr: &Multiaddr) -> bool {
        !self.enabled || is_circuit(addr) || peer.is_some_and(|p| self.allowed.contains(&p))
    }

    fn check_outbound(
        &mut self,
        peer: Option<PeerId>,
        addrs: &[Multiaddr],
    ) -> Result<(), ConnectionDenied> {
        if !self.enabled {
            return Ok(());
        }
        if peer.is_some_and(|p| self.allowed.contains(&p)) {
            return Ok(());
        }
        // Only circuits (and at least one: a dial with no address of its own would take
        // whatever other behaviours add, direct ones included).
        if addrs.is_empty() || !addrs.iter().all(is_circuit) {
            let target = peer.map_or_else(
                || {
                    addrs
                        .first()
                        .map_or_else(|| "?".to_string(), |a| a.to_string())
                },
                |p| p.to_string(),
            );
            return Err(ConnectionDenied::new(Refused(target)));
        }
        for relay in addrs.iter().filter_map(relay_of) {
            self.allow(relay);
        }
        Ok(())
    }
}

/// Whether `addr` goes through a relay.
pub(crate) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

impl NetworkBehaviour for Guard {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // A relayed connection comes in on our circuit listener (its remote address is just
        // `/p2p/<peer>`).
        if self.enabled && !is_circuit(local) && !is_circuit(remote) {
            return Err(ConnectionDenied::new(Refused(remote.to_string())));
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if self.enabled
            && !is_circuit(local)
            && !is_circuit(remote)
            && !self.allowed.contains(&peer)
        {
            return Err(ConnectionDenied::new(Refused(peer.to_string())));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        addrs: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.check_outbound(peer, addrs)?;
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.permits(Some(peer), addr) {
            return Err(ConnectionDenied::new(Refused(peer.to_string())));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn only_circuits_and_chosen_relays() {
        let relay = peer();
        let host = peer();
        let boot = peer();
        let boot_addr: Multiaddr = format!("/ip4/203.0.113.9/udp/1/quic-v1/p2p/{boot}")
            .parse()
            .unwrap();
        let mut g = Guard::new(true, std::slice::from_ref(&boot_addr));
        let direct: Multiaddr = "/ip4/198.51.100.7/udp/4001/quic-v1".parse().unwrap();
        let circuit: Multiaddr =
            format!("/ip4/203.0.113.1/udp/1/quic-v1/p2p/{relay}/p2p-circuit/p2p/{host}")
                .parse()
                .unwrap();
        // A direct dial to the host is refused, alone or beside a circuit, and so is a dial
        // that leaves the addresses to other behaviours.
        assert!(
            g.check_outbound(Some(host), std::slice::from_ref(&direct))
                .is_err()
        );
        assert!(
            g.check_outbound(Some(host), &[circuit.clone(), direct.clone()])
                .is_err()
        );
        assert!(g.check_outbound(Some(host), &[]).is_err());
        // The relay is not allowed until a circuit through it is dialled.
        assert!(
            g.check_outbound(Some(relay), std::slice::from_ref(&direct))
                .is_err()
        );
        assert!(
            g.check_outbound(Some(host), std::slice::from_ref(&circuit))
                .is_ok()
        );
        assert!(
            g.check_outbound(Some(relay), std::slice::from_ref(&direct))
                .is_ok()
        );
        // Bootstrap peers are allowed from the start.
        assert!(g.check_outbound(Some(boot), &[boot_addr]).is_ok());
        assert!(g.permits(Some(host), &circuit));
        assert!(!g.permits(Some(host), &direct));
        // Incoming: only through a relay (on our circuit listener, from `/p2p/<peer>`).
        let id = ConnectionId::new_unchecked(1);
        let listener: Multiaddr = format!("/ip4/203.0.113.1/udp/1/quic-v1/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let from: Multiaddr = format!("/p2p/{host}").parse().unwrap();
        assert!(
            g.handle_pending_inbound_connection(id, &direct, &direct)
                .is_err()
        );
        assert!(
            g.handle_pending_inbound_connection(id, &listener, &from)
                .is_ok()
        );
        // Off: everything goes.
        let mut off = Guard::new(false, &[]);
        assert!(off.check_outbound(Some(host), &[direct]).is_ok());
    }
}
