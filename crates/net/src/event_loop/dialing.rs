//! Dialling, the QUIC preference, and what we know of peers' addresses.

use super::*;

impl EventLoop {
    pub(super) fn dial(&mut self, addr: Multiaddr, reply: Waiter) {
        let peer = peer_of(&addr);
        if peer == Some(self.local_peer_id) {
            let _ = reply.send(Err(NetError::BadAddress {
                addr,
                reason: "that is our own peer id",
            }));
            return;
        }
        let opts = match peer {
            Some(peer) => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                // Remember it, and tell Kademlia if it is a direct address.
                self.learn(peer, vec![addr.clone()]);
                DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::Always)
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        self.start_dial(opts, addr.to_string(), Some(reply), false);
    }

    pub(super) fn start_dial(
        &mut self,
        opts: DialOpts,
        target: String,
        reply: Option<Waiter>,
        upgrade: bool,
    ) {
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(
                    id,
                    PendingDial {
                        target,
                        waiters: reply.into_iter().collect(),
                        upgrade,
                    },
                );
            }
            Err(e) if upgrade => {
                tracing::debug!(error = %e, "QUIC upgrade dial not started");
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(dial_error(&target, &e)));
                }
            }
        }
    }

    /// For audio links: connected (any way) and, where possible, on QUIC.
    pub(super) fn ensure_connected(&mut self, peer: PeerId, reply: Waiter) {
        if peer == self.local_peer_id {
            let _ = reply.send(Err(NetError::NotConnected {
                peer,
                reason: "cannot connect to ourselves".into(),
            }));
            return;
        }
        if self
            .swarm
            .behaviour()
            .block_list
            .blocked_peers()
            .contains(&peer)
        {
            let _ = reply.send(Err(NetError::Blocked { peer }));
            return;
        }
        if self.swarm.is_connected(&peer) {
            self.maybe_upgrade(peer, Some(reply));
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(self.addrs.get(&peer))
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                self.peer_waiters.entry(peer).or_default().push(reply);
            }
            Err(DialError::NoAddresses) => {
                let _ = reply.send(Err(NetError::NotConnected {
                    peer,
                    reason: "no known address (dial an address, add_address, or discovery)".into(),
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(dial_error(&peer.to_string(), &e)));
            }
        }
    }

    /// Connected, but not over QUIC while a QUIC address is known: dial it. The waiter (if
    /// any) is answered when that dial ends either way; `on_established` then closes the worse
    /// connection.
    pub(super) fn maybe_upgrade(&mut self, peer: PeerId, reply: Option<Waiter>) {
        let best = self
            .connections
            .get(&peer)
            .and_then(|c| c.iter().map(|c| connection_rank(&c.remote)).max())
            .unwrap_or(0);
        let quic = self.addrs.quic(&peer);
        if best >= 2 || !self.transport.has_quic() || quic.is_empty() {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return;
        }
        let target = peer.to_string();
        // Join an upgrade already in flight.
        if let Some(d) = self
            .dials
            .values_mut()
            .find(|d| d.upgrade && d.target == target)
        {
            d.waiters.extend(reply);
            return;
        }
        tracing::debug!(%peer, "dialling QUIC to move off a TCP or relayed connection");
        let opts = DialOpts::peer_id(peer)
            .addresses(quic)
            .condition(PeerCondition::Always)
            .build();
        self.start_dial(opts, target, reply, true);
    }

    pub(super) fn listen_via_relay(
        &mut self,
        relay: Multiaddr,
        reply: Reply<Result<Multiaddr, NetError>>,
    ) {
        let Some(relay_peer) = peer_of(&relay) else {
            let _ = reply.send(Err(NetError::BadAddress {
                addr: relay,
                reason: "a relay address must end with /p2p/<relay peer id>",
            }));
            return;
        };
        self.learn(relay_peer, vec![relay.clone()]);
        let circuit = relay.clone().with(libp2p::multiaddr::Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit) {
            Ok(id) => {
                self.relays.insert(
                    id,
                    PendingRelay {
                        relay,
                        relay_peer,
                        reply,
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Relay {
                    relay,
                    reason: e.to_string(),
                }));
            }
        }
    }

    /// Records addresses of `peer` in our book and Kademlia; returns the new ones.
    pub(super) fn learn(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
        self.learn_with(peer, addrs, true)
    }

    pub(super) fn learn_with(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        kad: bool,
    ) -> Vec<Multiaddr> {
        let mut new = Vec::new();
        for addr in addrs {
            let addr = crate::addr_book::strip_peer(addr, peer);
            if self.addrs.add(peer, addr.clone()) {
                if kad {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                }
                new.push(addr);
            }
        }
        new
    }
}
