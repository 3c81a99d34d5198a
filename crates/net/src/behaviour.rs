//! The composed [`Behaviour`]: what the swarm speaks, and how each protocol is configured.

use std::time::Duration;

use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use sha2::{Digest, Sha256};

use crate::{
    config::Config,
    limits::{
        GOSSIP_HEARTBEAT, GOSSIP_HISTORY_LENGTH, KAD_BOOTSTRAP_INTERVAL, MAX_CONNECTIONS,
        MAX_CONNECTIONS_PER_PEER, MAX_GOSSIP_SIZE, MAX_PENDING_CONNECTIONS, MAX_SYNC_STREAMS,
        MAX_TOPIC_LEN, MAX_TOPICS_PER_PEER, RELAY_MAX_CIRCUIT_BYTES, RELAY_MAX_CIRCUIT_DURATION,
        RELAY_MAX_CIRCUITS, RELAY_MAX_CIRCUITS_PER_PEER, RELAY_MAX_RESERVATIONS,
        SYNC_REQUEST_TIMEOUT, TOPIC_PREFIX,
    },
    sync::{SYNC_PROTOCOL, SyncCodec},
};

/// Kademlia protocol name: ruang keeps its own DHT, apart from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ruang/kad/1.0.0");
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/ruang/id/1.0.0";

/// Bytes allowed on top of [`MAX_GOSSIP_SIZE`] for gossipsub's own framing of one message.
const GOSSIP_ENVELOPE_ALLOWANCE: usize = 2048;

/// The gossipsub subscription filter: topics under [`TOPIC_PREFIX`], bounded in length.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RuangTopics;

impl gossipsub::TopicSubscriptionFilter for RuangTopics {
    fn can_subscribe(&mut self, topic: &gossipsub::TopicHash) -> bool {
        topic_allowed(topic.as_str())
    }
}

/// Whether `topic` may be used (see [`TOPIC_PREFIX`], [`MAX_TOPIC_LEN`]).
pub(crate) fn topic_allowed(topic: &str) -> bool {
    topic.starts_with(TOPIC_PREFIX) && topic.len() <= MAX_TOPIC_LEN
}

pub(crate) type TopicFilter = gossipsub::MaxCountSubscriptionFilter<RuangTopics>;
pub(crate) type Gossipsub = gossipsub::Behaviour<gossipsub::IdentityTransform, TopicFilter>;

/// Everything the swarm speaks. Block list and limits come first so they refuse connections
/// before any other behaviour sees them.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) privacy: crate::privacy::Guard,
    pub(crate) block_list: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) ip_budget: crate::ip_budget::Budget,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: Toggle<dcutr::Behaviour>,
    pub(crate) autonat_client: Toggle<autonat::v2::client::Behaviour>,
    pub(crate) autonat_server: Toggle<autonat::v2::server::Behaviour>,
    pub(crate) gossipsub: Gossipsub,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    pub(crate) stream: libp2p_stream::Behaviour,
}

impl Behaviour {
    /// Builds every behaviour from the config. `relay_client` comes from the swarm builder;
    /// `rate` is shared with the QUIC listener.
    pub(crate) fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &Config,
        rate: crate::ip_budget::HandshakeRate,
    ) -> Result<Self, String> {
        let peer_id = key.public().to_peer_id();

        let identify = identify::Behaviour::new(
            // libp2p's own agent string ("rust-libp2p/<version>"): what a peer learns of us
            // does not single out ruang among libp2p programs.
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                // Tell connected peers at once when we gain an address (a relay circuit, say).
                .with_push_listen_addr_updates(true),
        );

        // Hiding our IP address: nothing that finds peers on the LAN, punches holes, asks
        // others to dial us back or dials others back.
        let open = !config.hide_ip;
        let mdns = if config.mdns && open {
            match mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id) {
                Ok(m) => Some(m),
                Err(e) => {
                    // No multicast-capable interface is not fatal: bootstrap and Kademlia
                    // still work.
                    tracing::warn!(error = %e, "mDNS unavailable, continuing without it");
                    None
                }
            }
        } else {
            None
        };

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // A ruang node answers DHT queries from the start (no waiting for AutoNAT to say we
        // are reachable); the node turns a room's audience into clients
        // (`Client::set_dht_server`).
        kad.set_mode(Some(if open {
            kad::Mode::Server
        } else {
            kad::Mode::Client
        }));

        let relay_server = (config.relay_server && open).then(|| {
            let mut relay_config = relay::Config {
                max_reservations: RELAY_MAX_RESERVATIONS,
                max_circuits: RELAY_MAX_CIRCUITS,
                max_circuits_per_peer: RELAY_MAX_CIRCUITS_PER_PEER,
                max_circuit_duration: RELAY_MAX_CIRCUIT_DURATION,
                max_circuit_bytes: RELAY_MAX_CIRCUIT_BYTES,
                ..relay::Config::default()
            };
            relay_config.max_reservations_per_peer = 4;
            relay::Behaviour::new(peer_id, relay_config)
        });

        let gossipsub = gossipsub_behaviour()?;

        let sync = request_response::Behaviour::with_codec(
            SyncCodec,
            [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(SYNC_REQUEST_TIMEOUT)
                .with_max_concurrent_streams(MAX_SYNC_STREAMS),
        );

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                .with_max_pending_incoming(Some(MAX_PENDING_CONNECTIONS))
                .with_max_pending_outgoing(Some(MAX_PENDING_CONNECTIONS))
                .with_max_established(Some(MAX_CONNECTIONS)),
        );

        Ok(Behaviour {
            privacy: crate::privacy::Guard::new(config.hide_ip, &config.bootstrap),
            block_list: allow_block_list::Behaviour::default(),
            ip_budget: crate::ip_budget::Budget::new(rate),
            limits,
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            mdns: Toggle::from(mdns),
            kad,
            relay_client,
            relay_server: Toggle::from(relay_server),
            dcutr: Toggle::from(open.then(|| dcutr::Behaviour::new(peer_id))),
            autonat_client: Toggle::from(open.then(autonat::v2::client::Behaviour::default)),
            autonat_server: Toggle::from(open.then(autonat::v2::server::Behaviour::default)),
            gossipsub,
            sync,
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}

/// Content-addressed message id: SHA-256 of topic and payload. A re-sent identical payload is
/// a duplicate, whoever sends it; a forged id is impossible.
fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut hasher = Sha256::new();
    hasher.update(message.topic.as_str().as_bytes());
    hasher.update([0u8]);
    hasher.update(&message.data);
    gossipsub::MessageId::new(&hasher.finalize()[..20])
}

fn gossipsub_behaviour() -> Result<Gossipsub, String> {
    let config = gossipsub::ConfigBuilder::default()
        // No gossipsub-level signatures: every ruang payload is a signed ruang-proto envelope
        // that the node verifies once per message (validate_messages), after the duplicate
        // filter. Gossipsub checks its own signature *before* that filter, so with Strict each
        // of the ~D copies a node receives cost an ed25519 verification: in a 50-node room
        // that was a quarter of the CPU (bench/RESULTS.md, scale).
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(message_id)
        // Room for the envelope (signature, key, topic, seqno) around a maximal payload.
        .max_transmit_size(MAX_GOSSIP_SIZE + GOSSIP_ENVELOPE_ALLOWANCE)
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .history_length(GOSSIP_HISTORY_LENGTH)
        .history_gossip(3)
        // Mesh sizes for rooms of a handful to a few hundred peers.
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        .gossip_lazy(6)
        // Publish to every subscribed peer we know, not just the mesh: fastest first hop.
        .flood_publish(true)
        .duplicate_cache_time(Duration::from_secs(120))
        // A node leaving a room asks its mesh not to graft it back for this long. gossipsub's
        // 10 s made a quick rejoin with the same identity graft "within backoff" and lose
        // score at every member it knew.
        .unsubscribe_backoff(Duration::from_secs(1))
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let filter = gossipsub::MaxCountSubscriptionFilter {
        filter: RuangTopics,
        max_subscribed_topics: MAX_TOPICS_PER_PEER,
        max_subscriptions_per_request: MAX_TOPICS_PER_PEER,
    };
    let mut behaviour = Gossipsub::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Anonymous,
        config,
        filter,
    )
    .map_err(|e| format!("gossipsub: {e}"))?;
    behaviour.with_peer_score(peer_score_params(), peer_score_thresholds())?;
    Ok(behaviour)
}

/// Global score parameters. Topic parameters are added per topic on subscribe
/// ([`topic_score_params`]).
fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        // Positive topic contributions are capped low so that good behaviour cannot buy
        // forgiveness for invalid messages.
        topic_score_cap: 20.0,
        app_specific_weight: 1.0,
        // Off: people in one venue or behind one carrier-grade NAT share an IP, and tests run
        // dozens of nodes on 127.0.0.1. Sybil resistance comes from signed room state instead.
        ip_colocation_factor_weight: 0.0,
        ..gossipsub::PeerScoreParams::default()
    }
}

/// Thresholds: a few rejected messages push a peer below gossip/publish thresholds; three in
/// quick succession graylist it (all its RPCs ignored until the penalty decays).
fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Score parameters for one topic. The invalid-message penalty (P4) is what makes a peer that
/// sends rejected messages lose standing: `-20 × n²` with `n` decaying by 5% a second.
pub(crate) fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // P1: a little credit for staying in the mesh (max +3).
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        // P2: credit for delivering new messages first (max +10).
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        // P3/P3b off: room topics are often quiet, and a quiet mesh peer is not a bad one.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: rejected messages.
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.95,
        ..gossipsub::TopicScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_params_are_valid() {
        let mut params = peer_score_params();
        params.topics.insert(
            gossipsub::IdentTopic::new("ruang/x").hash(),
            topic_score_params(),
        );
        params.validate().unwrap();
        peer_score_thresholds().validate().unwrap();
    }

    #[test]
    fn topic_filter() {
        assert!(topic_allowed("ruang/directory/1"));
        assert!(!topic_allowed("other/topic"));
        assert!(!topic_allowed(&format!("ruang/{}", "x".repeat(300))));
    }
}
