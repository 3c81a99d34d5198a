//! Commands from the `Client`.

use super::*;

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ExternalAddrs(reply) => {
                let _ = reply.send(self.swarm.external_addresses().cloned().collect());
            }
            Command::WaitListening(reply) => {
                if let Some(e) = &self.listen_error {
                    let _ = reply.send(Err(e.clone()));
                } else if self.unbound.is_empty() {
                    let _ = reply.send(Ok(()));
                } else {
                    self.listen_waiters.push(reply);
                }
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::DialPeer { peer, addrs, reply } => self.dial_peer(peer, addrs, reply),
            Command::EnsureConnected { peer, reply } => self.ensure_connected(peer, reply),
            Command::AddAddress { peer, addr } => {
                // Not into Kademlia: these come from a room's presence, and every new routing
                // entry can start a Kademlia bootstrap that dials the closest peers, which in a
                // room are all the members (a full mesh of connections, bench scale).
                // Kademlia learns peers it can use from identify.
                self.learn_with(peer, vec![addr], false);
            }
            Command::Subscribe {
                topic,
                keep_peers,
                reply,
            } => {
                let result = self.subscribe(&topic);
                let hash = gossipsub::IdentTopic::new(topic).hash();
                if result.is_ok() && keep_peers {
                    self.kept_topics.insert(hash);
                } else {
                    self.kept_topics.remove(&hash);
                }
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic, reply } => {
                let t = gossipsub::IdentTopic::new(topic);
                self.kept_topics.remove(&t.hash());
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&t);
                let _ = reply.send(Ok(()));
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::ReportValidation {
                id,
                source,
                verdict,
                reply,
            } => {
                // gossipsub would forward an accepted message again on a second Accept.
                let found = self.awaiting_verdict.remove(&id).is_some()
                    && self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(&id, &source, verdict.into());
                let _ = reply.send(if found {
                    Ok(())
                } else {
                    Err(NetError::ValidationExpired { id: id.to_string() })
                });
            }
            Command::TopicPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::MeshPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(&hash)
                    .cloned()
                    .collect();
                let _ = reply.send(peers);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::SyncRequest {
                peer,
                request,
                reply,
            } => {
                if request.len() > MAX_SYNC_REQUEST {
                    let _ = reply.send(Err(NetError::TooLarge {
                        what: "sync request",
                        len: request.len(),
                        max: MAX_SYNC_REQUEST,
                    }));
                    return;
                }
                let addrs = self.addrs.get(&peer);
                let id = self.swarm.behaviour_mut().sync.send_request_with_addresses(
                    &peer,
                    request.clone(),
                    addrs,
                );
                self.sync_requests.insert(
                    id,
                    super::SyncInFlight {
                        reply,
                        peer,
                        again: Some(request),
                    },
                );
            }
            Command::Respond {
                handle,
                response,
                reply,
            } => {
                let result = if response.len() > MAX_SYNC_RESPONSE {
                    Err(NetError::TooLarge {
                        what: "sync response",
                        len: response.len(),
                        max: MAX_SYNC_RESPONSE,
                    })
                } else {
                    let SyncReply { peer, channel } = handle;
                    self.swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response)
                        .map_err(|_| NetError::NotConnected {
                            peer,
                            reason: "the request's connection closed before the response".into(),
                        })
                };
                let _ = reply.send(result);
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::DhtServer(server) => {
                // Hiding our IP: never a DHT server (it would invite direct connections).
                let mode = if server && !self.policy.hide_ip {
                    kad::Mode::Server
                } else {
                    kad::Mode::Client
                };
                tracing::debug!(?mode, "Kademlia mode");
                self.swarm.behaviour_mut().kad.set_mode(Some(mode));
            }
            Command::Block { peer } => {
                self.swarm.behaviour_mut().block_list.block_peer(peer);
                // Also cut what is open right now (the block list closes connections on its
                // next poll; this makes it immediate).
                let _ = self.swarm.disconnect_peer_id(peer);
                self.inbound.close_from(peer);
                for w in self.peer_waiters.remove(&peer).unwrap_or_default() {
                    let _ = w.send(Err(NetError::Blocked { peer }));
                }
            }
            Command::Unblock { peer } => {
                self.swarm.behaviour_mut().block_list.unblock_peer(peer);
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().cloned().collect());
            }
            Command::ConnectionAddrs { peer, reply } => {
                let addrs = self
                    .connections
                    .get(&peer)
                    .map(|l| l.iter().map(|c| c.remote.clone()).collect())
                    .unwrap_or_default();
                let _ = reply.send(addrs);
            }
            Command::Rtt { peer, reply } => {
                let _ = reply.send(self.rtt.get(&peer).copied());
            }
            Command::AutonatServed(reply) => {
                let _ = reply.send(self.autonat_served);
            }
            Command::ListenViaRelay { relay, reply } => self.listen_via_relay(relay, reply),
            // Handled in `run`.
            Command::Shutdown(reply) => {
                let _ = reply.send(());
            }
        }
    }

    pub(super) fn subscribe(&mut self, topic: &str) -> Result<(), NetError> {
        if !topic_allowed(topic) {
            return Err(NetError::TopicNotAllowed {
                topic: topic.into(),
            });
        }
        let t = gossipsub::IdentTopic::new(topic);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&t).map_err(|e| match e {
            gossipsub::SubscriptionError::NotAllowed => NetError::TopicNotAllowed {
                topic: topic.into(),
            },
            other => NetError::Transport(format!("subscribe {topic}: {other}")),
        })?;
        // Rejected messages only cost a peer score on topics with parameters.
        if gs.get_topic_params(&t).is_none() {
            gs.set_topic_params(t, topic_score_params())
                .map_err(|e| NetError::Transport(e.to_string()))?;
        }
        Ok(())
    }

    pub(super) fn publish(&mut self, topic: String, data: Vec<u8>) -> Result<(), NetError> {
        if !topic_allowed(&topic) {
            return Err(NetError::TopicNotAllowed { topic });
        }
        if data.len() > MAX_GOSSIP_SIZE {
            return Err(NetError::TooLarge {
                what: "gossip message",
                len: data.len(),
                max: MAX_GOSSIP_SIZE,
            });
        }
        let len = data.len();
        let t = gossipsub::IdentTopic::new(topic.clone());
        match self.swarm.behaviour_mut().gossipsub.publish(t, data) {
            Ok(_) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                Err(NetError::InsufficientPeers { topic })
            }
            Err(gossipsub::PublishError::Duplicate) => Err(NetError::Duplicate { topic }),
            Err(gossipsub::PublishError::MessageTooLarge) => Err(NetError::TooLarge {
                what: "gossip message with its envelope",
                len,
                max: MAX_GOSSIP_SIZE,
            }),
            Err(other) => Err(NetError::Transport(format!("publish on {topic}: {other}"))),
        }
    }
}
