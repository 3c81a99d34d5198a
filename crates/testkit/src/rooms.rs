//! Many ruang nodes' room logic ([`ruang_session::Core`]) in one process, over the seeded
//! [`Network`] in virtual time: what the real node's driver does with libp2p, done here with
//! a model of it.
//!
//! The model: a connection is a pair of peers; dialling connects after one network delay
//! (both ends then learn each other's topics, as gossipsub's subscription exchange does).
//! Gossip follows gossipsub as ruang-net configures it: a publisher sends to every connected
//! peer on the topic (flood publishing), and each peer passes on what its core accepted, once
//! (message ids are content hashes), to its mesh for the topic: [`MESH_N`] connected peers on
//! the topic, topped up from the others when it falls below [`MESH_N_LOW`], at most
//! [`MESH_N_HIGH`], the same both ways. Each hop may be
//! lost at the links' loss rate. Gossipsub's lazy push is modelled too: a peer that passed a
//! message on announces it (IHAVE) to [`GOSSIP_LAZY`] other peers on the topic, or a quarter
//! of them if more, at each of its next [`HISTORY_GOSSIP`] heartbeats; one that lacks it asks
//! (IWANT) and gets it. Sync requests and answers, connections and
//! subscriptions travel reliably (streams) with the links' delay. Each core is woken at its
//! own deadline. A crashed peer simply stops: its peers learn it after a delay.
//!
//! Gossip is decoded once per message ([`Core::decode`] checks its signature) and the result
//! is handed to every core that receives it, so a room of thousands costs one signature check
//! per message, not one per member.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruang_proto::ephemeral::EphemeralBody;
use ruang_proto::{Identity, PublicKey};
use ruang_session::{
    Answer, Command, CommandId, Config, Core, Error, Gossip, Input, NodeEvent, Output, SyncFailure,
    Time, Verdict,
};
use sha2::{Digest, Sha256};

use crate::sim::{Links, Network};

/// Unix time of the simulation's virtual time 0 (2026-01-01).
pub const UNIX_START_MS: u64 = 1_767_225_600_000;
/// Peers a node forwards gossip to on a topic (gossipsub's `mesh_n` in ruang-net).
pub const MESH_N: usize = 6;
/// Below this many the mesh is topped up (`mesh_n_low`).
pub const MESH_N_LOW: usize = 4;
/// Above this many the mesh is pruned (`mesh_n_high`); a peer with this many refuses grafts.
pub const MESH_N_HIGH: usize = 12;
/// Peers outside the mesh told of a message at the next heartbeat, at least (`gossip_lazy`).
pub const GOSSIP_LAZY: usize = 6;
/// Share of the peers outside the mesh told, when more than [`GOSSIP_LAZY`] (gossipsub's
/// `gossip_factor`).
pub const GOSSIP_FACTOR: f64 = 0.25;
/// Gossipsub's heartbeat (ruang-net's): lazy push waits up to this long.
pub const HEARTBEAT_MS: u64 = 500;
/// Heartbeats at which a message is announced (`history_gossip`).
pub const HISTORY_GOSSIP: u64 = 3;
/// How long a peer remembers the ids of gossip it has seen (duplicates within it are dropped).
const SEEN_MS: u64 = 120_000;
/// Connections a peer keeps before it closes idle ones (ruang-net's `KEEP_ROOM_PEERS`: the
/// model's connections are all room peers).
pub const KEEP_CONNECTIONS: usize = 64;
/// A connection younger than this is never closed as idle (ruang-net's `TRIM_AFTER`).
pub const TRIM_AFTER_MS: u64 = 30_000;

/// What travels between simulated peers.
#[derive(Clone)]
enum Msg {
    /// A peer's own deadline (stale when it moved since).
    Wake { at: u64 },
    /// A dial arriving at its target.
    Dial { join: bool },
    /// The dialled peer accepted: the dialler learns it is connected.
    Accepted { join: bool },
    /// The dialled peer is gone or refuses: the dial fails.
    Refused { join: bool },
    /// The connection closed (the sender crashed, left or blocked the receiver).
    Closed,
    /// The sender subscribed to a topic.
    Subscribed { topic: Arc<str> },
    /// One hop of a gossip message.
    Gossip {
        topic: Arc<str>,
        data: Arc<Vec<u8>>,
        id: [u8; 32],
    },
    /// A heartbeat at which the receiver announces a message it passed on (IHAVE) to peers
    /// outside its mesh; those that lack it ask (IWANT) and get it. One event per heartbeat,
    /// not one per peer told, so a large room stays cheap to simulate.
    LazyRound {
        topic: Arc<str>,
        data: Arc<Vec<u8>>,
        id: [u8; 32],
        /// The peer it came from (not told).
        source: usize,
        /// Heartbeats left after this one.
        left: u64,
    },
    /// A sync request (id of the asker's output).
    SyncRequest { id: u64, request: Vec<u8> },
    /// Its answer.
    SyncAnswer {
        id: u64,
        result: Result<Vec<u8>, SyncFailure>,
    },
    /// The sender asks for the receiver's audio.
    AudioRequest { request: Arc<Vec<u8>> },
    /// The sender no longer asks for the receiver's audio.
    AudioRequestEnded,
    /// The sender turned down the receiver's request for its audio.
    AudioRefused,
}

/// Counters of one peer's control traffic: gossip messages and sync messages, sent and
/// received, and the message ids gossiped about (IHAVE; gossipsub batches them per heartbeat,
/// so they are counted apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Gossip messages this peer published (each counted once, not per recipient).
    pub published: u64,
    /// Publishes refused because the same bytes were published or seen lately (as gossipsub
    /// refuses them).
    pub duplicate_publishes: u64,
    /// Gossip messages sent (publishes, forwards, and answers to IWANT).
    pub gossip_sent: u64,
    /// Gossip messages received (duplicates included).
    pub gossip_received: u64,
    /// Message ids announced to peers outside the mesh (IHAVE entries).
    pub ihave_sent: u64,
    /// Message ids announced to it.
    pub ihave_received: u64,
    /// Sync requests and answers sent.
    pub sync_sent: u64,
    /// Sync requests and answers received.
    pub sync_received: u64,
}

impl Traffic {
    /// Every gossip and sync message sent and received (not IHAVE entries).
    pub fn total(&self) -> u64 {
        self.gossip_sent + self.gossip_received + self.sync_sent + self.sync_received
    }
}

/// A gossip message a core is judging: (topic, data, id, the peer it came from).
type Judging = (Arc<str>, Arc<Vec<u8>>, [u8; 32], usize);

/// One simulated node.
pub struct Peer {
    /// Its room logic.
    pub core: Core,
    /// Running (not crashed, not stopped).
    pub online: bool,
    /// Peers it is connected to.
    pub connections: HashSet<usize>,
    /// When each connection came up.
    connected_at: HashMap<usize, u64>,
    /// What its core said to the user, with when (virtual ms), if recording.
    pub events: Vec<(u64, NodeEvent)>,
    /// Its core's answers to commands.
    pub replies: Vec<(CommandId, Result<Answer, Error>)>,
    /// Whom it streams audio to now.
    pub audio_targets: Vec<PublicKey>,
    /// The speakers it asks for their audio, and the request it sends them.
    asking: Vec<usize>,
    audio_request: Arc<Vec<u8>>,
    /// Speakers that turned its request down: asked again when it reconnects to them (a
    /// real node asks again after a backoff).
    refused_by: HashSet<usize>,
    /// How many times its core said the room's state changed (each a `state` event for its
    /// user interfaces).
    pub state_changes: u64,
    /// Its control traffic.
    pub traffic: Traffic,
    blocked: HashSet<usize>,
    /// Message ids seen (their first 8 bytes), with when.
    seen: HashMap<u64, u64, IdHash>,
    /// Size of `seen` at which it is next pruned.
    seen_limit: usize,
    wake_at: Option<u64>,
    /// Its gossip mesh per topic.
    mesh: HashMap<Arc<str>, Vec<usize>>,
    /// Gossip awaiting this core's verdict, by token.
    judging: HashMap<u64, Judging>,
    /// Sync requests this core is answering: token → (asker, the asker's id).
    answering: HashMap<u64, (usize, u64)>,
    /// Dials of a join in flight, by target.
    joining_to: HashSet<usize>,
    next_token: u64,
    next_command: CommandId,
}

/// Settings of a simulated room's nodes.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Presence heartbeat interval on stage, ms.
    pub presence_interval_ms: u64,
    /// Directory re-announcement interval, ms.
    pub announce_interval_ms: u64,
    /// Anti-entropy interval, ms.
    pub sync_interval_ms: u64,
    /// Listeners a speaker streams to.
    pub fanout: usize,
    /// Listeners whose presence each node keeps (`Config::audience_sample`).
    pub audience_sample: usize,
    /// Keep every peer's [`NodeEvent`]s in [`Peer::events`] (off for large rooms).
    pub record_events: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            presence_interval_ms: 2_000,
            announce_interval_ms: ruang_proto::directory::ANNOUNCE_INTERVAL_MS,
            sync_interval_ms: 5_000,
            fanout: 64,
            audience_sample: ruang_session::limits::AUDIENCE_SAMPLE,
            record_events: true,
        }
    }
}

/// Many nodes over one simulated network. See the module docs.
pub struct Sim {
    net: Network<Msg>,
    /// The nodes, by index.
    pub peers: Vec<Peer>,
    by_key: HashMap<PublicKey, usize>,
    settings: NodeSettings,
    /// Decoded gossip by message id (each message is decoded once).
    decoded: HashMap<[u8; 32], (Gossip, u64)>,
    /// Size of `decoded` at which it is next pruned.
    decoded_limit: usize,
    seed: u64,
    /// Messages published in the whole simulation, by kind.
    pub published: std::collections::BTreeMap<&'static str, u64>,
    /// Who is subscribed to each topic.
    subscribed: Subscriptions,
}

impl Sim {
    /// An empty simulation over links `links`, seeded.
    pub fn new(links: Links, settings: NodeSettings, seed: u64) -> Sim {
        Sim {
            net: Network::new(0, links, seed),
            peers: Vec::new(),
            by_key: HashMap::new(),
            settings,
            decoded: HashMap::new(),
            decoded_limit: 4_096,
            published: Default::default(),
            seed,
            subscribed: Subscriptions::default(),
        }
    }

    /// Virtual now, ms.
    pub fn now(&self) -> u64 {
        self.net.now()
    }

    fn time(&self) -> Time {
        Time {
            mono_ms: self.net.now(),
            unix_ms: UNIX_START_MS + self.net.now(),
        }
    }

    /// Adds a node named `name` (its identity derived from the seed and its index); returns its
    /// index.
    pub fn add_peer(&mut self, name: &str) -> usize {
        let index = self.peers.len();
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&self.seed.to_le_bytes());
        secret[8..16].copy_from_slice(&(index as u64).to_le_bytes());
        secret[16] = 1;
        let identity = Identity::from_secret_bytes(&secret);
        let key = identity.public();
        let mut seed = secret;
        seed[16] = 2;
        let config = Config {
            identity,
            name: name.to_string(),
            hide_ip: false,
            fanout: self.settings.fanout,
            presence_interval_ms: self.settings.presence_interval_ms,
            audience_sample: self.settings.audience_sample,
            announce_interval_ms: self.settings.announce_interval_ms,
            sync_interval_ms: self.settings.sync_interval_ms,
            seed,
        };
        let core = Core::new(config, self.time());
        self.net.add_peer();
        self.by_key.insert(key, index);
        self.peers.push(Peer {
            core,
            online: true,
            connections: HashSet::new(),
            connected_at: HashMap::new(),
            events: Vec::new(),
            replies: Vec::new(),
            audio_targets: Vec::new(),
            asking: Vec::new(),
            audio_request: Arc::new(Vec::new()),
            refused_by: HashSet::new(),
            state_changes: 0,
            traffic: Traffic::default(),
            blocked: HashSet::new(),
            seen: HashMap::default(),
            seen_limit: 1_024,
            mesh: HashMap::new(),
            wake_at: None,
            judging: HashMap::new(),
            answering: HashMap::new(),
            joining_to: HashSet::new(),
            next_token: 0,
            next_command: 0,
        });
        // Every peer has one address: its index (the model needs no more).
        self.input(
            index,
            Input::Addresses(vec![(index as u32).to_be_bytes().to_vec()]),
        );
        index
    }

    /// The index of the peer with `key`.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    /// Gives peer `index` a command; returns its id (see [`Peer::replies`]).
    pub fn command(&mut self, index: usize, command: Command) -> CommandId {
        let peer = &mut self.peers[index];
        peer.next_command += 1;
        let id = peer.next_command;
        self.input(index, Input::Command(id, command));
        id
    }

    /// The answer to command `id` of peer `index`, if it came.
    pub fn reply(&self, index: usize, id: CommandId) -> Option<&Result<Answer, Error>> {
        self.peers[index]
            .replies
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r)
    }

    /// Dials from `from` to `to` (as a bootstrap or mDNS would).
    pub fn connect(&mut self, from: usize, to: usize) {
        self.dial(from, to, false);
    }

    /// Peer `index` crashes: it stops at once, its peers learn it after a delay.
    pub fn crash(&mut self, index: usize) {
        let peer = &mut self.peers[index];
        if !peer.online {
            return;
        }
        peer.online = false;
        peer.connected_at.clear();
        peer.seen = HashMap::default();
        peer.mesh.clear();
        let mut connections: Vec<usize> = peer.connections.drain().collect();
        connections.sort_unstable();
        for other in connections {
            self.net.send_reliable(index, other, Msg::Closed);
        }
    }

    /// Splits the network: `group(peer)` names each peer's side; messages between sides are
    /// dropped, and sync requests across fail at once (as a dead connection's would, later).
    pub fn partition(&mut self, group: impl Fn(usize) -> u32) {
        self.net.partition(group);
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Runs until virtual time `until` (ms).
    pub fn run_until(&mut self, until: u64) {
        while let Some(d) = self.net.next(until) {
            self.deliver(d.from, d.to, d.msg);
        }
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now() + ms;
        self.run_until(until);
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.peers[to].online {
            if let Msg::Dial { join } = msg {
                self.net.send_reliable(to, from, Msg::Refused { join });
            }
            return;
        }
        match msg {
            Msg::Wake { at } => {
                if self.peers[to].wake_at == Some(at) {
                    self.peers[to].wake_at = None;
                    self.input(to, Input::Timeout);
                    self.trim(to);
                }
            }
            Msg::Dial { join } => {
                if !self.peers[from].online {
                    return;
                }
                let refused = self.peers[to].blocked.contains(&from)
                    || self.peers[from].blocked.contains(&to);
                if refused {
                    self.net.send_reliable(to, from, Msg::Refused { join });
                    return;
                }
                self.net.send_reliable(to, from, Msg::Accepted { join });
                self.now_connected(to, from);
            }
            Msg::Accepted { join } => {
                if !self.peers[from].online {
                    return self.dial_failed(to, from, join);
                }
                self.now_connected(to, from);
                if join && self.peers[to].joining_to.remove(&from) {
                    let key = self.key(from);
                    self.input(to, Input::JoinDialed(Ok(key)));
                }
            }
            Msg::Refused { join } => self.dial_failed(to, from, join),
            Msg::Closed => {
                self.peers[to].connected_at.remove(&from);
                if self.peers[to].connections.remove(&from) {
                    // A request for audio ends with its connection.
                    self.input(to, Input::AudioRequestEnded(self.key(from)));
                    self.input(to, Input::Disconnected(self.key(from)));
                }
            }
            Msg::Subscribed { topic } => {
                if self.peers[to].connections.contains(&from) {
                    self.input(
                        to,
                        Input::Subscribed {
                            topic: topic.to_string(),
                        },
                    );
                }
            }
            Msg::Gossip { topic, data, id } => {
                self.peers[to].traffic.gossip_received += 1;
                if !self.subscribed.contains(&topic, to) {
                    return;
                }
                let now = self.now();
                if self.peers[to].seen.insert(seen_key(&id), now).is_some() {
                    return;
                }
                self.forget_seen(to);
                let message = self.decoded(&topic, &data, id, to);
                let peer = &mut self.peers[to];
                peer.next_token += 1;
                let token = peer.next_token;
                peer.judging.insert(token, (topic, data, id, from));
                let source = Some(self.key(from));
                self.input(
                    to,
                    Input::Gossip {
                        token,
                        source,
                        message,
                    },
                );
            }
            Msg::LazyRound {
                topic,
                data,
                id,
                source,
                left,
            } => self.lazy_round(to, topic, data, id, source, left),
            Msg::SyncRequest { id, request } => {
                self.peers[to].traffic.sync_received += 1;
                let peer = &mut self.peers[to];
                peer.next_token += 1;
                let token = peer.next_token;
                peer.answering.insert(token, (from, id));
                let asker = Some(self.key(from));
                self.input(
                    to,
                    Input::SyncRequest {
                        token,
                        from: asker,
                        request,
                    },
                );
            }
            Msg::AudioRequest { request } => {
                if self.peers[to].connections.contains(&from) {
                    let from = self.key(from);
                    let request = request.to_vec();
                    self.input(to, Input::AudioRequested { from, request });
                }
            }
            Msg::AudioRequestEnded => {
                let key = self.key(from);
                self.input(to, Input::AudioRequestEnded(key));
            }
            Msg::AudioRefused => {
                self.peers[to].refused_by.insert(from);
            }
            Msg::SyncAnswer { id, result } => {
                self.peers[to].traffic.sync_received += 1;
                self.input(to, Input::SyncAnswer { id, result });
            }
        }
    }

    /// `to` learns it is connected to `from`, and `from`'s topics (gossipsub's subscription
    /// exchange on a new connection).
    fn now_connected(&mut self, to: usize, from: usize) {
        if self.peers[to].connections.insert(from) {
            let now = self.now();
            self.peers[to].connected_at.insert(from, now);
            self.input(to, Input::Connected(self.key(from)));
            for topic in self.subscribed.topics_of(from) {
                self.input(to, Input::Subscribed { topic });
            }
            self.peers[to].refused_by.remove(&from);
            if self.peers[to].asking.contains(&from) {
                let request = self.peers[to].audio_request.clone();
                self.net
                    .send_reliable(to, from, Msg::AudioRequest { request });
            }
        }
    }

    /// Closes peer `index`'s idle connections beyond [`KEEP_CONNECTIONS`], the longest-held
    /// first, as ruang-net does: those in a gossip mesh either way, carrying audio either way,
    /// or younger than [`TRIM_AFTER_MS`] are kept.
    fn trim(&mut self, index: usize) {
        let peer = &self.peers[index];
        if peer.connections.len() <= KEEP_CONNECTIONS {
            return;
        }
        let now = self.now();
        let in_mesh = |a: usize, b: usize| self.peers[a].mesh.values().any(|m| m.contains(&b));
        let audio = |a: usize, b: usize| {
            let key = self.peers[b].core.key();
            self.peers[a].audio_targets.contains(&key)
                || (self.peers[a].asking.contains(&b) && !self.peers[a].refused_by.contains(&b))
        };
        let mut idle: Vec<(u64, usize)> = peer
            .connections
            .iter()
            .map(|p| (peer.connected_at.get(p).copied().unwrap_or(0), *p))
            .filter(|(at, p)| {
                now >= at + TRIM_AFTER_MS
                    && !in_mesh(index, *p)
                    && !in_mesh(*p, index)
                    && !audio(index, *p)
                    && !audio(*p, index)
            })
            .collect();
        idle.sort_unstable();
        let excess = peer.connections.len() - KEEP_CONNECTIONS;
        for (_, p) in idle.into_iter().take(excess) {
            self.close(index, p);
        }
    }

    /// Peer `index` closes its connection to `other`.
    fn close(&mut self, index: usize, other: usize) {
        if self.peers[index].connections.remove(&other) {
            self.peers[index].connected_at.remove(&other);
            self.net.send_reliable(index, other, Msg::Closed);
            let key = self.key(other);
            self.input(index, Input::AudioRequestEnded(key));
            self.input(index, Input::Disconnected(key));
        }
    }

    fn dial_failed(&mut self, index: usize, target: usize, join: bool) {
        if join && self.peers[index].joining_to.remove(&target) {
            self.input(index, Input::JoinDialed(Err("nobody answered".into())));
        }
    }

    /// The decoded form of a gossip message, decoding it (with `by`'s core, which received
    /// it) the first time it is seen.
    fn decoded(&mut self, topic: &str, data: &[u8], id: [u8; 32], by: usize) -> Gossip {
        let now = self.now();
        if let Some((g, _)) = self.decoded.get(&id) {
            return g.clone();
        }
        let time = self.time();
        let g = self.peers[by].core.decode(topic, data, time.unix_ms);
        // Only what does not depend on the decoder's own room is shared.
        if !matches!(g, Gossip::NotOurs) {
            if self.decoded.len() >= self.decoded_limit {
                self.decoded.retain(|_, (_, at)| now < *at + SEEN_MS);
                self.decoded_limit = (2 * self.decoded.len()).max(4_096);
            }
            self.decoded.insert(id, (g.clone(), now));
        }
        g
    }

    fn key(&self, index: usize) -> PublicKey {
        self.peers[index].core.key()
    }

    fn dial(&mut self, from: usize, to: usize, join: bool) {
        if from == to || !self.peers[from].online {
            return;
        }
        if join {
            self.peers[from].joining_to.insert(to);
        }
        if self.peers[from].connections.contains(&to) {
            if join && self.peers[from].joining_to.remove(&to) {
                let key = self.key(to);
                self.input(from, Input::JoinDialed(Ok(key)));
            }
            return;
        }
        self.net.send_reliable(from, to, Msg::Dial { join });
    }

    /// Hands `input` to peer `index`'s core and carries out what it asks.
    pub fn input(&mut self, index: usize, input: Input) {
        if !self.peers[index].online {
            return;
        }
        let time = self.time();
        self.peers[index].core.handle(time, input);
        while let Some(output) = self.peers[index].core.poll_output() {
            self.carry_out(index, output);
            if !self.peers[index].online {
                break;
            }
        }
        self.reschedule(index);
    }

    fn reschedule(&mut self, index: usize) {
        let peer = &mut self.peers[index];
        if !peer.online {
            return;
        }
        let at = peer.core.poll_timeout().max(self.net.now());
        if peer.wake_at.is_none_or(|w| at < w) {
            peer.wake_at = Some(at);
            let delay = at - self.net.now();
            self.net.timer(index, delay, Msg::Wake { at });
        }
    }

    fn subscribers(&self, index: usize, topic: &str, except: Option<usize>) -> Vec<usize> {
        let on_topic = self.subscribed.of(topic);
        let mut out: Vec<usize> = self.peers[index]
            .connections
            .iter()
            .copied()
            .filter(|p| Some(*p) != except && on_topic(*p))
            .collect();
        out.sort_unstable();
        out
    }

    /// Peer `index`'s mesh for `topic`: its members still connected and on the topic, topped
    /// up at random to [`MESH_N`] when fewer than [`MESH_N_LOW`] are left, from peers whose own
    /// mesh has room (a graft joins both meshes, as gossipsub's GRAFT does), and pruned to
    /// [`MESH_N`] beyond [`MESH_N_HIGH`].
    fn mesh(&mut self, index: usize, topic: &Arc<str>) -> Vec<usize> {
        let on_topic = self.subscribers(index, topic, None);
        let mut mesh = self.peers[index].mesh.remove(topic).unwrap_or_default();
        mesh.retain(|p| on_topic.binary_search(p).is_ok());
        if mesh.len() < MESH_N_LOW {
            let mut others: Vec<usize> = on_topic
                .into_iter()
                .filter(|p| {
                    !mesh.contains(p)
                        && self.peers[*p]
                            .mesh
                            .get(topic)
                            .is_none_or(|m| m.len() < MESH_N_HIGH)
                })
                .collect();
            while mesh.len() < MESH_N && !others.is_empty() {
                let i = crate::sim::pick(self.net.rng(), others.len());
                let peer = others.swap_remove(i);
                mesh.push(peer);
                let theirs = self.peers[peer].mesh.entry(topic.clone()).or_default();
                if !theirs.contains(&index) {
                    theirs.push(index);
                }
            }
        }
        while mesh.len() > MESH_N_HIGH {
            let i = crate::sim::pick(self.net.rng(), mesh.len());
            let peer = mesh.swap_remove(i);
            if let Some(theirs) = self.peers[peer].mesh.get_mut(topic) {
                theirs.retain(|p| *p != index);
            }
        }
        self.peers[index].mesh.insert(topic.clone(), mesh.clone());
        mesh
    }

    /// Announces a message to peers on the topic outside the mesh at the next
    /// [`HISTORY_GOSSIP`] heartbeats (the first within [`HEARTBEAT_MS`]).
    fn lazy_push(
        &mut self,
        index: usize,
        from: usize,
        topic: Arc<str>,
        data: Arc<Vec<u8>>,
        id: [u8; 32],
    ) {
        let first = crate::sim::pick(self.net.rng(), HEARTBEAT_MS as usize) as u64;
        self.net.timer(
            index,
            first,
            Msg::LazyRound {
                topic,
                data,
                id,
                source: from,
                left: HISTORY_GOSSIP - 1,
            },
        );
    }

    /// One heartbeat's IHAVE of one message by peer `index`: [`GOSSIP_LAZY`] peers outside its
    /// mesh, or a quarter of them if more, are told; each that lacks the message asks for it
    /// and gets it (over a lossy hop).
    fn lazy_round(
        &mut self,
        index: usize,
        topic: Arc<str>,
        data: Arc<Vec<u8>>,
        id: [u8; 32],
        source: usize,
        left: u64,
    ) {
        let mesh = self.peers[index]
            .mesh
            .get(&topic)
            .cloned()
            .unwrap_or_default();
        let mut others: Vec<usize> = self
            .subscribers(index, &topic, Some(source))
            .into_iter()
            .filter(|p| !mesh.contains(p))
            .collect();
        let n = GOSSIP_LAZY.max((others.len() as f64 * GOSSIP_FACTOR) as usize);
        for _ in 0..n.min(others.len()) {
            let i = crate::sim::pick(self.net.rng(), others.len());
            let peer = others.swap_remove(i);
            self.peers[index].traffic.ihave_sent += 1;
            self.peers[peer].traffic.ihave_received += 1;
            if self.peers[peer].seen.contains_key(&seen_key(&id)) || !self.peers[peer].online {
                continue;
            }
            self.peers[index].traffic.gossip_sent += 1;
            self.net.send(
                index,
                peer,
                Msg::Gossip {
                    topic: topic.clone(),
                    data: data.clone(),
                    id,
                },
            );
        }
        if left > 0 {
            self.net.timer(
                index,
                HEARTBEAT_MS,
                Msg::LazyRound {
                    topic,
                    data,
                    id,
                    source,
                    left: left - 1,
                },
            );
        }
    }

    fn send_gossip(
        &mut self,
        from: usize,
        to: Vec<usize>,
        topic: Arc<str>,
        data: Arc<Vec<u8>>,
        id: [u8; 32],
    ) {
        for peer in to {
            self.peers[from].traffic.gossip_sent += 1;
            self.net.send(
                from,
                peer,
                Msg::Gossip {
                    topic: topic.clone(),
                    data: data.clone(),
                    id,
                },
            );
        }
    }

    fn carry_out(&mut self, index: usize, output: Output) {
        let now = self.now();
        match output {
            Output::Publish { id, topic, data } => {
                let topic: Arc<str> = topic.into();
                let msg_id: [u8; 32] = Sha256::digest(&data).into();
                // Gossipsub refuses to publish what it has seen (`PublishError::Duplicate`,
                // which the driver reports as delivered): the same bytes again go nowhere.
                if self.peers[index]
                    .seen
                    .get(&seen_key(&msg_id))
                    .is_some_and(|at| now < at + SEEN_MS)
                {
                    self.peers[index].traffic.duplicate_publishes += 1;
                    if let Some(id) = id {
                        self.input(
                            index,
                            Input::Published {
                                id,
                                delivered: true,
                            },
                        );
                    }
                    return;
                }
                self.peers[index].seen.insert(seen_key(&msg_id), now);
                self.peers[index].traffic.published += 1;
                let kind = match self.decoded(&topic, &data, msg_id, index) {
                    Gossip::Announcement(_) => "announcement",
                    Gossip::Event(_) => "event",
                    Gossip::Ephemeral(e) => match e.body {
                        EphemeralBody::Presence { leaving: true, .. } => "leaving",
                        EphemeralBody::Presence { .. } => "presence",
                        _ => "chat or reaction",
                    },
                    Gossip::Rekey(_) => "rekey",
                    Gossip::NotOurs | Gossip::Malformed => "other",
                };
                *self.published.entry(kind).or_default() += 1;
                let to = self.subscribers(index, &topic, None);
                let delivered = !to.is_empty();
                self.send_gossip(index, to, topic, Arc::new(data), msg_id);
                if let Some(id) = id {
                    self.input(index, Input::Published { id, delivered });
                }
                self.forget_seen(index);
            }
            Output::Verdict { token, verdict } => {
                let Some((topic, data, id, from)) = self.peers[index].judging.remove(&token) else {
                    return;
                };
                if verdict == Verdict::Accept {
                    let mesh = self.mesh(index, &topic);
                    let to: Vec<usize> = mesh.iter().copied().filter(|p| *p != from).collect();
                    self.send_gossip(index, to, topic.clone(), data.clone(), id);
                    self.lazy_push(index, from, topic, data, id);
                }
            }
            Output::Subscribe { topic, .. } => {
                let topic: Arc<str> = topic.into();
                if self.subscribed.insert(&topic, index) {
                    let mut peers: Vec<usize> =
                        self.peers[index].connections.iter().copied().collect();
                    peers.sort_unstable();
                    for p in peers {
                        self.net.send_reliable(
                            index,
                            p,
                            Msg::Subscribed {
                                topic: topic.clone(),
                            },
                        );
                    }
                }
            }
            Output::Unsubscribe(topic) => {
                // Peers see it at once (the model reads subscriptions from the peers).
                let topic: Arc<str> = topic.into();
                self.subscribed.remove(&topic, index);
            }
            Output::SyncRequest { id, to, request } => {
                let target = self.index_of(&to);
                let reachable = |t: &usize| {
                    self.peers[index].connections.contains(t) && self.net.connected(index, *t)
                };
                match target.filter(reachable) {
                    Some(t) => {
                        self.peers[index].traffic.sync_sent += 1;
                        self.net
                            .send_reliable(index, t, Msg::SyncRequest { id, request });
                    }
                    None => self.input(
                        index,
                        Input::SyncAnswer {
                            id,
                            result: Err(SyncFailure::Disconnected),
                        },
                    ),
                }
            }
            Output::SyncReply { token, response } => {
                if let Some((asker, id)) = self.peers[index].answering.remove(&token) {
                    self.peers[index].traffic.sync_sent += 1;
                    self.net.send_reliable(
                        index,
                        asker,
                        Msg::SyncAnswer {
                            id,
                            result: Ok(response),
                        },
                    );
                }
            }
            Output::JoinDial { host, .. } => match self.index_of(&host) {
                Some(h) => self.dial(index, h, true),
                None => self.input(index, Input::JoinDialed(Err("unknown host".into()))),
            },
            Output::JoinRedial { peer } => {
                if let Some(p) = self.index_of(&peer) {
                    self.dial(index, p, true);
                }
            }
            Output::Dial { peer, .. } | Output::Connect(peer) => {
                if let Some(p) = self.index_of(&peer) {
                    self.dial(index, p, false);
                }
            }
            Output::AddAddresses { .. } | Output::SetDhtServer(_) | Output::AudioPolicy(_) => {}
            Output::CloseAudioFrom(_) => {}
            Output::Block(peer) => {
                if let Some(p) = self.index_of(&peer) {
                    self.peers[index].blocked.insert(p);
                    self.close(index, p);
                }
            }
            Output::Unblock(peer) => {
                if let Some(p) = self.index_of(&peer) {
                    self.peers[index].blocked.remove(&p);
                }
            }
            Output::AudioTargets(targets) => self.peers[index].audio_targets = targets,
            Output::RefuseAudio(peer) => {
                if let Some(p) = self.index_of(&peer) {
                    self.net.send_reliable(index, p, Msg::AudioRefused);
                }
            }
            Output::AudioRequests { request, speakers } => {
                // The driver asks each speaker over a connection, dialling it if need be.
                let request = Arc::new(request);
                let speakers: Vec<usize> =
                    speakers.iter().filter_map(|k| self.index_of(k)).collect();
                let old = std::mem::take(&mut self.peers[index].asking);
                for &p in old.iter().filter(|p| !speakers.contains(p)) {
                    if self.peers[index].connections.contains(&p) {
                        self.net.send_reliable(index, p, Msg::AudioRequestEnded);
                    }
                }
                self.peers[index]
                    .refused_by
                    .retain(|p| speakers.contains(p));
                self.peers[index].asking = speakers.clone();
                self.peers[index].audio_request = request.clone();
                for &p in speakers.iter().filter(|p| !old.contains(p)) {
                    if self.peers[index].connections.contains(&p) {
                        let request = request.clone();
                        self.net
                            .send_reliable(index, p, Msg::AudioRequest { request });
                    } else {
                        self.dial(index, p, false);
                    }
                }
            }
            Output::Event(event) => {
                if self.settings.record_events {
                    self.peers[index].events.push((now, event));
                }
            }
            Output::StateChanged => self.peers[index].state_changes += 1,
            Output::Reply { id, result } => self.peers[index].replies.push((id, result)),
            Output::Stopped => {
                let peer = &mut self.peers[index];
                peer.online = false;
                peer.connected_at.clear();
                let mut connections: Vec<usize> = peer.connections.drain().collect();
                connections.sort_unstable();
                for other in connections {
                    self.net.send_reliable(index, other, Msg::Closed);
                }
            }
        }
    }

    /// Forgets the ids seen longer than [`SEEN_MS`] ago, once the set has doubled since it
    /// last did (so the cost stays proportional to what is added).
    fn forget_seen(&mut self, index: usize) {
        let now = self.now();
        let peer = &mut self.peers[index];
        if peer.seen.len() >= peer.seen_limit {
            peer.seen.retain(|_, at| now < *at + SEEN_MS);
            peer.seen_limit = (2 * peer.seen.len()).max(1_024);
            // Ten thousand peers: what a burst grew is given back.
            if peer.seen.capacity() > 4 * peer.seen_limit {
                peer.seen.shrink_to(peer.seen_limit);
            }
        }
    }
}

/// A message id as a peer's seen set keeps it: its first 8 bytes (ids are content hashes).
/// Hashing for maps keyed by [`seen_key`]: the key is already the start of a SHA-256 digest,
/// so it is its own hash (the default SipHash of every IHAVE's lookup in every peer's `seen`
/// was a tenth of a large room's simulation).
type IdHash = std::hash::BuildHasherDefault<PrefixHasher>;

/// The hasher of [`IdHash`]: a `u64` key as it is.
#[derive(Default)]
struct PrefixHasher(u64);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn seen_key(id: &[u8; 32]) -> u64 {
    let mut key = [0; 8];
    key.copy_from_slice(&id[..8]);
    u64::from_le_bytes(key)
}

/// Who is subscribed to each topic: a bit per peer, so that finding a peer's subscribed
/// connections reads one small bitmap rather than every connected peer's own list (that was
/// the largest cost of a 10,000-member room's simulation).
#[derive(Debug, Default)]
struct Subscriptions(HashMap<Arc<str>, Vec<u64>>);

impl Subscriptions {
    /// Marks peer `index` as subscribed to `topic`; whether it was not yet.
    fn insert(&mut self, topic: &Arc<str>, index: usize) -> bool {
        let bits = self.0.entry(topic.clone()).or_default();
        if bits.len() <= index / 64 {
            bits.resize(index / 64 + 1, 0);
        }
        let new = bits[index / 64] & (1 << (index % 64)) == 0;
        bits[index / 64] |= 1 << (index % 64);
        new
    }

    /// Whether peer `index` is subscribed to `topic`.
    fn contains(&self, topic: &str, index: usize) -> bool {
        self.of(topic)(index)
    }

    /// The topics peer `index` is subscribed to, in order.
    fn topics_of(&self, index: usize) -> Vec<String> {
        let mut topics: Vec<String> = self
            .0
            .keys()
            .filter(|t| self.contains(t, index))
            .map(|t| t.to_string())
            .collect();
        topics.sort_unstable();
        topics
    }

    /// Marks peer `index` as no longer subscribed to `topic`.
    fn remove(&mut self, topic: &str, index: usize) {
        if let Some(word) = self.0.get_mut(topic).and_then(|b| b.get_mut(index / 64)) {
            *word &= !(1 << (index % 64));
        }
    }

    /// Whether a peer is subscribed to `topic`, as a predicate on its index.
    fn of(&self, topic: &str) -> impl Fn(usize) -> bool + '_ {
        let bits = self.0.get(topic).map(Vec::as_slice).unwrap_or_default();
        move |index| {
            bits.get(index / 64)
                .is_some_and(|w| w & (1 << (index % 64)) != 0)
        }
    }
}
