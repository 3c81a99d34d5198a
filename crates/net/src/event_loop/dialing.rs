//! Dialling, the QUIC preference, relays we keep, and what we know of peers' addresses.

use super::*;

/// Why a direct dial is refused while hiding our IP address.
const HIDDEN_IP: &str = "this node hides its IP address: it connects only through relays";

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
        if !self.swarm.behaviour().privacy.permits(peer, &addr) {
            let _ = reply.send(Err(NetError::Dial {
                addr: addr.to_string(),
                reason: HIDDEN_IP.into(),
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
        let via = relay_of(&addr).into_iter().collect();
        self.start_dial(opts, addr.to_string(), Some(reply), false, via);
    }

    /// Dials `peer` on every address in `addrs` at once (see `Client::dial_peer`).
    pub(super) fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, reply: Waiter) {
        if peer == self.local_peer_id {
            let _ = reply.send(Err(NetError::NotConnected {
                peer,
                reason: "cannot connect to ourselves".into(),
            }));
            return;
        }
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            self.maybe_upgrade(peer, None);
            return;
        }
        let addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .filter(|a| peer_of(a).is_none_or(|p| p == peer))
            .map(|a| crate::addr_book::strip_peer(a, peer))
            .collect();
        self.learn(peer, addrs.clone());
        let addrs = self.dialable(peer, addrs);
        if addrs.is_empty() && self.policy.hide_ip {
            let _ = reply.send(Err(NetError::NotConnected {
                peer,
                reason: format!("no relayed address, and {HIDDEN_IP}"),
            }));
            return;
        }
        let via = addrs.iter().filter_map(relay_of).collect();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::Always)
            .build();
        self.start_dial(opts, peer.to_string(), Some(reply), false, via);
    }

    pub(super) fn start_dial(
        &mut self,
        opts: DialOpts,
        target: String,
        reply: Option<Waiter>,
        upgrade: bool,
        via: Vec<PeerId>,
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
                        via,
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
            let _ = reply.send(Ok(()));
            self.maybe_upgrade(peer, None);
            return;
        }
        let addrs = self.dialable(peer, self.addrs.get(&peer));
        let mut opts = DialOpts::peer_id(peer).addresses(addrs);
        // Behaviours (Kademlia) may add direct addresses: not when hiding our IP.
        if !self.policy.hide_ip {
            opts = opts.extend_addresses_through_behaviour();
        }
        let opts = opts
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
        let quic = self.dialable(peer, self.addrs.quic(&peer));
        // A relay carrying our circuits stays on the connection they run over: a second one
        // would make either end close the first (`dedup`), and the circuits with it.
        if best >= 2
            || !self.policy.transport.has_quic()
            || quic.is_empty()
            || self.carries_circuits(peer)
        {
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
        self.start_dial(opts, target, reply, true, Vec::new());
    }

    /// Keeps a reservation on `relay` from now on; `reply` gets our address through it once
    /// the first reservation is accepted.
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
        if relay_peer == self.local_peer_id {
            let _ = reply.send(Err(NetError::BadAddress {
                addr: relay,
                reason: "that is our own peer id",
            }));
            return;
        }
        self.learn(relay_peer, vec![relay.clone()]);
        self.swarm.behaviour_mut().privacy.allow(relay_peer);
        if let Some(kept) = self.relays.get_mut(&relay_peer) {
            // Asked for by name now: kept for good.
            kept.found = false;
            match &kept.state {
                RelayState::Reserved(_, addr) => {
                    let _ = reply.send(Ok(addr.clone()));
                }
                _ => kept.waiters.push(reply),
            }
            return;
        }
        self.keep_relay(relay_peer, relay, vec![reply], false);
    }

    fn keep_relay(
        &mut self,
        relay_peer: PeerId,
        relay: Multiaddr,
        waiters: Vec<Reply<Result<Multiaddr, NetError>>>,
        found: bool,
    ) {
        self.relays.insert(
            relay_peer,
            KeptRelay {
                addr: relay,
                state: RelayState::Waiting(tokio::time::Instant::now()),
                backoff: RELAY_RETRY_MIN,
                waiters,
                found,
                failures: 0,
            },
        );
        self.reserve(relay_peer);
    }

    /// `peer` offers circuit relay (identify says so): remember it as a candidate when we
    /// reached it directly, and reserve on candidates while we keep fewer relays than
    /// `Policy::auto_relays`.
    pub(super) fn relay_offered(&mut self, peer: PeerId) {
        if self.policy.auto_relays == 0 || peer == self.local_peer_id {
            return;
        }
        // The address we dialled it at: known to work from here.
        let addr = self.connections.get(&peer).and_then(|l| {
            l.iter()
                .find(|c| c.dialer && connection_rank(&c.remote) > 0)
                .map(|c| with_peer(c.remote.clone(), peer))
        });
        if let Some(addr) = addr
            && !self.relays_given_up.contains(&peer)
            && (self.relay_candidates.len() < MAX_RELAY_CANDIDATES
                || self.relay_candidates.contains_key(&peer))
        {
            self.relay_candidates.insert(peer, addr);
        }
        self.pick_relays();
    }

    /// Reserves on candidates until we keep `Policy::auto_relays` relays.
    fn pick_relays(&mut self) {
        while self.relays.len() < self.policy.auto_relays {
            let Some((&peer, _)) = self
                .relay_candidates
                .iter()
                .find(|(p, _)| !self.relays.contains_key(p))
            else {
                return;
            };
            let Some(addr) = self.relay_candidates.remove(&peer) else {
                return;
            };
            tracing::debug!(relay = %peer, %addr, "reserving on a relay found by ourselves");
            self.swarm.behaviour_mut().privacy.allow(peer);
            self.keep_relay(peer, addr, Vec::new(), true);
        }
    }

    /// Addresses in `addrs` we may dial `peer` at (all, unless we hide our IP).
    pub(super) fn dialable(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
        let guard = &self.swarm.behaviour().privacy;
        addrs
            .into_iter()
            .filter(|a| guard.permits(Some(peer), a))
            .collect()
    }

    /// Asks `relay` (a kept relay) for a reservation now, unless one is held or asked for.
    pub(super) fn reserve(&mut self, relay: PeerId) {
        let Some(kept) = self.relays.get_mut(&relay) else {
            return;
        };
        if !matches!(kept.state, RelayState::Waiting(_)) {
            return;
        }
        let circuit = kept.addr.clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit) {
            Ok(id) => kept.state = RelayState::Reserving(id),
            Err(e) => {
                let reason = e.to_string();
                self.relay_failed(relay, reason);
            }
        }
    }

    /// A kept relay's reservation failed or ended: tell the node if it was held, and wait
    /// before asking again.
    pub(super) fn relay_failed(&mut self, relay: PeerId, reason: String) {
        let Some(kept) = self.relays.get_mut(&relay) else {
            return;
        };
        let was_reserved = matches!(kept.state, RelayState::Reserved(..));
        if was_reserved {
            kept.backoff = RELAY_RETRY_MIN;
            kept.failures = 0;
        }
        kept.failures += 1;
        if kept.found && kept.failures >= AUTO_RELAY_ATTEMPTS {
            tracing::debug!(%relay, %reason, "giving up a relay found by ourselves");
            if let RelayState::Reserving(id) | RelayState::Reserved(id, _) = kept.state {
                self.swarm.remove_listener(id);
            }
            self.relays.remove(&relay);
            if self.relays_given_up.len() >= MAX_RELAY_CANDIDATES * 16 {
                self.relays_given_up.clear();
            }
            self.relays_given_up.insert(relay);
            if was_reserved {
                self.emit(Event::RelayLost { relay, reason });
            }
            self.pick_relays();
            return;
        }
        tracing::debug!(%relay, %reason, backoff = ?kept.backoff, "relay reservation failed or lost");
        kept.state = RelayState::Waiting(tokio::time::Instant::now() + kept.backoff);
        kept.backoff = (kept.backoff * 2).min(RELAY_RETRY_MAX);
        // Refused while connected to it (not a relay, full, denied): tell whoever waits now,
        // and keep asking in the background. A failure before the connection was up (a dial
        // racing a bootstrap dial) is not an answer: they wait for the next attempt.
        if self.swarm.is_connected(&relay) {
            for w in kept.waiters.drain(..) {
                let _ = w.send(Err(NetError::Relay {
                    relay: kept.addr.clone(),
                    reason: reason.clone(),
                }));
            }
        }
        if was_reserved {
            self.emit(Event::RelayLost { relay, reason });
        }
    }

    /// A kept relay accepted a reservation on listener `id`.
    pub(super) fn relay_reserved(&mut self, relay: PeerId, id: ListenerId, address: Multiaddr) {
        let addr = with_peer(address, self.local_peer_id);
        let Some(kept) = self.relays.get_mut(&relay) else {
            return;
        };
        kept.state = RelayState::Reserved(id, addr.clone());
        kept.backoff = RELAY_RETRY_MIN;
        kept.failures = 0;
        for w in kept.waiters.drain(..) {
            let _ = w.send(Ok(addr.clone()));
        }
        self.emit(Event::RelayReservation { relay, addr });
    }

    /// Asks again the kept relays whose wait is over; answers waiters who gave up.
    pub(super) fn retry_relays(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<PeerId> = self
            .relays
            .iter_mut()
            .filter_map(|(peer, kept)| {
                kept.waiters.retain(|w| !w.is_closed());
                matches!(kept.state, RelayState::Waiting(at) if at <= now).then_some(*peer)
            })
            .collect();
        for relay in due {
            self.reserve(relay);
        }
    }

    /// The kept relay whose circuit listener is `id`, if any.
    pub(super) fn relay_of_listener(&self, id: ListenerId) -> Option<PeerId> {
        self.relays
            .iter()
            .find_map(|(peer, kept)| match kept.state {
                RelayState::Reserving(l) | RelayState::Reserved(l, _) if l == id => Some(*peer),
                _ => None,
            })
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
