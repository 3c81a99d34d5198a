//! Reacting to the swarm and its behaviours.

use super::*;

/// Counts a swarm event and its behaviour's event into libp2p's metrics.
fn record(metrics: &libp2p::metrics::Metrics, event: &SwarmEvent<BehaviourEvent>) {
    use libp2p::metrics::Recorder;
    metrics.record(event);
    if let SwarmEvent::Behaviour(event) = event {
        match event {
            BehaviourEvent::Gossipsub(e) => metrics.record(e),
            BehaviourEvent::Identify(e) => metrics.record(e),
            BehaviourEvent::Kad(e) => metrics.record(e),
            BehaviourEvent::Ping(e) => metrics.record(e),
            BehaviourEvent::RelayServer(e) => metrics.record(e),
            BehaviourEvent::Dcutr(e) => metrics.record(e),
            _ => {}
        }
    }
}

impl EventLoop {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(metrics) = &self.metrics {
            record(metrics, &event);
        }
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => self.on_new_listen_addr(listener_id, address),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let reason = match reason {
                    Ok(()) => "listener closed".to_string(),
                    Err(e) => e.to_string(),
                };
                self.on_listener_failed(listener_id, reason);
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::debug!(?listener_id, %error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_established(peer_id, connection_id, endpoint, num_established.get()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                let mut oldest = false;
                let mut relay = None;
                if let Some(list) = self.connections.get_mut(&peer_id) {
                    // A relayed connection that dies (its relay went away) beside a direct one
                    // is expected, not a restarted peer.
                    // Nor is one of two hole-punched connections (same remote address) dying:
                    // a restarted peer comes from a new port.
                    let closed = list
                        .iter()
                        .find(|c| c.id == connection_id && connection_rank(&c.remote) > 0)
                        .map(|c| (c.since, c.remote.clone()));
                    relay = list
                        .iter()
                        .find(|c| c.id == connection_id)
                        .and_then(|c| c.via);
                    list.retain(|c| c.id != connection_id);
                    oldest = closed.is_some_and(|(since, remote)| {
                        list.iter().all(|c| c.since > since && c.remote != remote)
                    });
                    if list.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
                // A connection died (timed out, reset) while another to the same peer is up:
                // most often the peer restarted and dialled again. gossipsub greets a peer
                // only on its first connection and sends on any of them, so the new process
                // never learnt our subscriptions and some messages went into the dead one.
                // Start over: disconnect, and whoever needs the peer dials again as new.
                if num_established > 0 && oldest && cause.as_ref().is_some_and(died) {
                    tracing::debug!(peer = %peer_id, "a connection died beside another: reconnecting afresh");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                } else if num_established > 0 {
                    self.emit(Event::ConnectionDropped { peer: peer_id });
                }
                if num_established == 0 {
                    self.rtt.remove(&peer_id);
                    self.emit(Event::PeerDisconnected { peer: peer_id });
                }
                // Its relay may carry no circuit any more.
                self.dedup_all(relay);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                if let Some(d) = self.dials.remove(&connection_id) {
                    for w in d.waiters {
                        let _ = w.send(if d.upgrade {
                            Ok(())
                        } else {
                            Err(dial_error(&d.target, &error))
                        });
                    }
                    self.dedup_all(d.via);
                }
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    for w in self.peer_waiters.remove(&peer).unwrap_or_default() {
                        let _ = w.send(Err(dial_error(&peer.to_string(), &error)));
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                self.emit(Event::ExternalAddrConfirmed { addr: address });
            }
            _ => {}
        }
    }

    pub(super) fn on_new_listen_addr(&mut self, listener_id: ListenerId, address: Multiaddr) {
        let is_circuit = connection_rank(&address) == 0;
        if self.unbound.remove(&listener_id).is_some() && self.unbound.is_empty() {
            for w in self.listen_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        if let Some(relay) = self.relay_of_listener(listener_id) {
            self.relay_reserved(relay, listener_id, address.clone());
        }
        if self.policy.listen_is_external && !is_circuit {
            self.swarm.add_external_address(address.clone());
        }
        self.emit(Event::Listening { addr: address });
    }

    pub(super) fn on_listener_failed(&mut self, listener_id: ListenerId, reason: String) {
        if let Some(addr) = self.unbound.remove(&listener_id) {
            let err = NetError::ListenFailed { addr, reason };
            for w in self.listen_waiters.drain(..) {
                let _ = w.send(Err(err.clone()));
            }
            self.listen_error = Some(err);
            return;
        }
        if let Some(relay) = self.relay_of_listener(listener_id) {
            self.relay_failed(relay, reason);
            return;
        }
        tracing::debug!(?listener_id, %reason, "listener closed");
    }

    pub(super) fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: ConnectedPoint,
        num_established: u32,
    ) {
        let remote = endpoint.get_remote_address().clone();
        let via = match &endpoint {
            ConnectedPoint::Dialer { address, .. } => relay_of(address),
            ConnectedPoint::Listener { local_addr, .. } => relay_of(local_addr),
        };
        tracing::debug!(%peer, %remote, "connection established");
        if endpoint.is_dialer() {
            self.learn(peer, vec![remote.clone()]);
        }
        self.connections.entry(peer).or_default().push(Conn {
            id,
            since: tokio::time::Instant::now(),
            remote: remote.clone(),
            dialer: endpoint.is_dialer(),
            via,
            confirmed: false,
        });
        if let Some(d) = self.dials.remove(&id) {
            for w in d.waiters {
                let _ = w.send(Ok(()));
            }
            self.dedup_all(d.via);
        }
        // Whoever waits for the peer (an audio link, say) goes ahead on this connection; a
        // better one, if any, is tried in the background (`dedup` then closes this one).
        let waiters = self.peer_waiters.remove(&peer).unwrap_or_default();
        let waited = !waiters.is_empty();
        for w in waiters {
            let _ = w.send(Ok(()));
        }
        if waited {
            self.maybe_upgrade(peer, None);
        }
        self.dedup(peer);
        // A kept relay we wait to ask again is back: ask now.
        if self.relays.contains_key(&peer) {
            self.reserve(peer);
        }
        if num_established == 1 {
            self.emit(Event::PeerConnected { peer, addr: remote });
        }
    }

    /// Keeps only the best class of connection to `peer` (QUIC > other direct > relayed), so
    /// that libp2p-stream, which picks a connection at random, opens audio streams on QUIC.
    /// A better connection counts only once the peer has confirmed it (see `Conn::confirmed`).
    ///
    /// Connections to a peer that carries circuits (see [`Self::carries_circuits`]) are all
    /// kept: the circuit runs over one of them, and closing it would cut the circuit.
    pub(super) fn dedup(&mut self, peer: PeerId) {
        if self.carries_circuits(peer) {
            return;
        }
        let Some(list) = self.connections.get(&peer) else {
            return;
        };
        let Some(best) = list
            .iter()
            .filter(|c| c.confirmed)
            .map(|c| connection_rank(&c.remote))
            .max()
        else {
            return;
        };
        let worse: Vec<ConnectionId> = list
            .iter()
            .filter(|c| connection_rank(&c.remote) < best)
            .map(|c| c.id)
            .collect();
        for id in worse {
            tracing::debug!(%peer, "closing a connection now that a better one exists");
            self.swarm.close_connection(id);
        }
    }

    /// [`Self::dedup`] for each of `peers`.
    pub(super) fn dedup_all(&mut self, peers: impl IntoIterator<Item = PeerId>) {
        for peer in peers {
            self.dedup(peer);
        }
    }

    /// Whether a circuit runs (or is being dialled) over our connections to `peer`: we relay
    /// for it as a relay server, or it is the relay of one of our relayed connections.
    pub(super) fn carries_circuits(&self, peer: PeerId) -> bool {
        self.circuits.get(&peer).is_some_and(|n| *n > 0)
            || self
                .connections
                .values()
                .flatten()
                .any(|c| c.via == Some(peer))
            || self.dials.values().any(|d| d.via.contains(&peer))
    }

    /// As a relay server: a circuit between `src` and `dst` opened (`+1`) or closed (`-1`).
    fn count_circuit(&mut self, src: PeerId, dst: PeerId, opened: bool) {
        for peer in [src, dst] {
            let n = self.circuits.entry(peer).or_default();
            if opened {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.circuits.remove(&peer);
                }
            }
        }
        if !opened {
            self.dedup_all([src, dst]);
        }
    }

    /// The peer used connection `id` (identify went across it): it has the connection up.
    fn confirm(&mut self, peer: PeerId, id: ConnectionId) {
        let Some(conn) = self
            .connections
            .get_mut(&peer)
            .and_then(|l| l.iter_mut().find(|c| c.id == id))
        else {
            return;
        };
        if !conn.confirmed {
            conn.confirmed = true;
            self.dedup(peer);
        }
    }

    pub(super) fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.awaiting_verdict
                    .insert(message_id.clone(), tokio::time::Instant::now());
                self.emit(Event::Gossip {
                    source: propagation_source,
                    id: message_id,
                    topic: message.topic.into_string(),
                    data: message.data,
                })
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => self
                .emit(Event::Subscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                }),
            BehaviourEvent::Gossipsub(other) => {
                tracing::trace!(event = ?other, "gossipsub");
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            }) => {
                self.confirm(peer_id, connection_id);
                let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
                let offers_relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                let new = self.learn_with(peer_id, info.listen_addrs, speaks_kad);
                if !new.is_empty() {
                    self.emit(Event::Discovered {
                        peer: peer_id,
                        addrs: new,
                    });
                }
                // Prefer QUIC: if we dialled this peer over TCP (or a relay) and it turns out
                // to have a QUIC address, move over. Only the dialling side does this, so the
                // two ends do not both dial.
                let we_dialled = self
                    .connections
                    .get(&peer_id)
                    .is_some_and(|l| l.iter().any(|c| c.dialer));
                if we_dialled {
                    self.maybe_upgrade(peer_id, None);
                }
                if offers_relay {
                    self.relay_offered(peer_id);
                }
            }
            BehaviourEvent::Identify(identify::Event::Sent {
                peer_id,
                connection_id,
            }) => self.confirm(peer_id, connection_id),
            BehaviourEvent::Identify(_) => {}
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in list {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    let new = self.learn(peer, addrs);
                    if !self.swarm.is_connected(&peer) {
                        let opts = DialOpts::peer_id(peer)
                            .addresses(self.addrs.get(&peer))
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                    if !new.is_empty() {
                        self.emit(Event::Discovered { peer, addrs: new });
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                addresses,
                is_new_peer,
                ..
            }) => {
                let mut new = Vec::new();
                for a in addresses.iter() {
                    if self.addrs.add(peer, a.clone()) {
                        new.push(a.clone());
                    }
                }
                if is_new_peer && !new.is_empty() {
                    self.emit(Event::Discovered { peer, addrs: new });
                }
            }
            BehaviourEvent::Kad(event) => tracing::trace!(?event, "kademlia"),
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => {
                if let Ok(rtt) = result {
                    self.rtt.insert(peer, rtt);
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                tracing::debug!(relay = %relay_peer_id, renewal, "relay reservation accepted");
            }
            BehaviourEvent::RelayClient(event) => tracing::debug!(?event, "relay client"),
            BehaviourEvent::RelayServer(event) => {
                tracing::debug!(?event, "relay server");
                match event {
                    relay::Event::CircuitReqAccepted {
                        src_peer_id,
                        dst_peer_id,
                    } => self.count_circuit(src_peer_id, dst_peer_id, true),
                    relay::Event::CircuitClosed {
                        src_peer_id,
                        dst_peer_id,
                        ..
                    } => self.count_circuit(src_peer_id, dst_peer_id, false),
                    _ => {}
                }
            }
            BehaviourEvent::Dcutr(event) => {
                tracing::debug!(?event, "dcutr");
                if event.result.is_ok() {
                    self.emit(Event::HolePunched {
                        peer: event.remote_peer_id,
                    });
                }
            }
            BehaviourEvent::AutonatClient(event) => {
                tracing::debug!(addr = %event.tested_addr, result = ?event.result, "autonat probe");
            }
            BehaviourEvent::AutonatServer(event) => {
                self.autonat_served.probes += 1;
                self.autonat_served.dial_data_bytes += event.data_amount as u64;
                tracing::debug!(
                    client = %event.client,
                    addr = %event.tested_addr,
                    dial_data = event.data_amount,
                    "autonat probe answered"
                );
            }
            BehaviourEvent::BlockList(never) => match never {},
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::Stream(()) => {}
        }
    }

    pub(super) fn on_sync_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event as E, Message as M, OutboundFailure as F};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => self.emit(Event::SyncRequest {
                peer,
                request,
                reply: SyncReply { peer, channel },
            }),
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(pending) = self.sync_requests.remove(&request_id) {
                    let _ = pending.reply.send(Ok(response));
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(mut pending) = self.sync_requests.remove(&request_id) else {
                    return;
                };
                // Its connection closed, and another to the peer is open: once more on that.
                if matches!(error, F::ConnectionClosed)
                    && self.swarm.is_connected(&pending.peer)
                    && let Some(request) = pending.again.take()
                {
                    tracing::debug!(%peer, "sync request sent again: its connection closed");
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&pending.peer, request);
                    self.sync_requests.insert(id, pending);
                    return;
                }
                let err = match error {
                    F::DialFailure => NetError::NotConnected {
                        peer,
                        reason: "could not dial it".into(),
                    },
                    F::Timeout => NetError::Timeout {
                        what: "sync request",
                        after: crate::limits::SYNC_REQUEST_TIMEOUT,
                    },
                    F::ConnectionClosed => NetError::NotConnected {
                        peer,
                        reason: "connection closed before the response".into(),
                    },
                    F::UnsupportedProtocols => NetError::Unsupported {
                        peer,
                        protocol: "/ruang/sync/1",
                    },
                    F::Io(e) => NetError::Stream(e.to_string()),
                };
                let _ = pending.reply.send(Err(err));
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            E::ResponseSent { .. } => {}
        }
    }
}

/// Whether a connection ended because the peer went silent (QUIC idle timeout, keep-alive
/// timeout), not because either side closed it.
fn died(cause: &libp2p::swarm::ConnectionError) -> bool {
    match cause {
        libp2p::swarm::ConnectionError::KeepAliveTimeout => true,
        libp2p::swarm::ConnectionError::IO(e) => {
            // QUIC's idle timeout reaches us as an I/O error wrapping quinn's `TimedOut`.
            e.kind() == std::io::ErrorKind::TimedOut || format!("{e:?}").contains("TimedOut")
        }
    }
}
