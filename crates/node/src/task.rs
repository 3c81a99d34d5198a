//! The node task: one task owns the room state and drives the network. It `select!`s over
//! local commands (first), results of its own background work, network events, audio events
//! and a timer; anything that waits on the network (dialling, syncing) runs in a spawned task
//! that reports back, so the loop always keeps reading network events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng, seq::IndexedRandom};
use ruang_audio::codec::EncoderConfig;
use ruang_audio::send::Sender;
use ruang_net::{Client, Event, Events, Multiaddr, NetError, PeerId, SyncReply, Verdict};
use ruang_proto::directory::{self, Announcement, Directory, SpeakerPreview};
use ruang_proto::ephemeral::{Ephemeral, EphemeralBody, PresenceChange, Rate};
use ruang_proto::room::{EventBody, Genesis, Insert, Role, Room, RoomId, State, Visibility};
use ruang_proto::seal::{Purpose, RoomKey};
use ruang_proto::signed::{self, Verified};
use ruang_proto::{Identity, PublicKey, Ticket};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::addrs::{self, peer_of, relay_part};
use crate::audio::capture::{Capture, Outbound, Pacing};
use crate::audio::playout::{Mixing, Playout, SharedMixing};
use crate::audio::receive::{self, ReceiveCounters};
use crate::audio::{AUDIO_EVENT_CAP, AudioEvent, Policy, SharedPolicy};
use crate::clock::{self, Clock};
use crate::config::Config;
use crate::error::NodeError;
use crate::event::{Listing, NodeEvent, SpeakerStats};
use crate::handle::{
    COMMAND_QUEUE_CAP, Command, HostOptions, JoinTarget, Joined, NodeHandle, Reply, Status,
};
use crate::ids;
use crate::session::{FLOOD_STRIKES, HELD_TTL_MS, Session};
use crate::wire::{
    AudioHeader, MAX_DIRECTORY_ANSWER, MAX_SYNC_HEADS, RoomMessage, SYNC_PAGE_EVENTS, SyncRequest,
    SyncResponse,
};

/// The directory's gossip topic.
pub const DIRECTORY_TOPIC: &str = "ruang/directory/1";
/// Capacity of the node's event broadcast; a subscriber this far behind loses the oldest.
pub const EVENT_BROADCAST_CAP: usize = 1_024;
/// Capacity of the queue of results from the node's background tasks.
const INTERNAL_CAP: usize = 64;
/// How often the node task checks its timers.
const TICK: Duration = Duration::from_millis(200);
/// Presence is sent again after a dropped connection at most this often (ms).
const PRESENCE_RESEND_MS: u64 = 1_000;
/// Room members a node dials until it is connected to this many. With the members that dial
/// it, a listener ends up with about twice as many: enough for gossipsub's mesh (4 to 12, 6
/// wanted), few enough that a room of 200 in one process stays within two cores (bench
/// `scale`: 6 cost 140 % of 200 and 146 ms mouth-to-ear, 4 cost 133 % and 93 ms).
const ROOM_NEIGHBOURS: usize = 4;
/// How often a node counts its room neighbours (and dials at most one).
const NEIGHBOUR_CHECK_MS: u64 = 1_000;
/// How long before a member we dialled as a neighbour is dialled again.
const NEIGHBOUR_RETRY_MS: u64 = 30_000;
/// Most pages a join or a sync asks for from one peer.
const MAX_SYNC_PAGES: usize = 10_000;
/// How long to keep a flooding peer blocked.
const FLOOD_BLOCK: Duration = Duration::from_secs(60);
/// How long a banned peer stays connected so the ban reaches it (its audio is refused at once).
const BAN_GRACE: Duration = Duration::from_secs(2);
/// How long after EndRoom a node stays subscribed (so the event spreads) before leaving.
const END_GRACE_MS: u64 = 2_000;
/// How often the host re-publishes the ended announcement during [`END_GRACE_MS`]. It is the
/// only message that removes a room from directories, and one copy can miss a node whose
/// gossip neighbours just left (measured in `tests/directory_20_nodes.rs`: after a node
/// left, 1–2 of 19 nodes held the ended room ~4.5 s in about half the runs). Nodes that
/// already hold the tombstone ignore the copies, so they are not forwarded again.
const ENDED_REANNOUNCE_MS: u64 = 500;
/// Addresses put in tickets, presence and announcements.
const MAX_SHARED_ADDRS: usize = 6;
/// Peers asked for their directory when they connect (the first few are enough).
const DIRECTORY_SYNC_PEERS: usize = 8;
/// Attempts at one peer's directory: an answer lost to a connection closing (two connections
/// to one peer, the worse one closed) is asked again.
const DIRECTORY_SYNC_ATTEMPTS: u32 = 3;
/// Wait before asking a peer for its directory again, doubled per attempt.
const DIRECTORY_RETRY: Duration = Duration::from_millis(500);
/// How long `join <room id>` waits for the room to reach the directory of a fresh node (mDNS,
/// bootstrap and directory answers take a moment) before saying it is not listed.
const JOIN_LOOKUP_MS: u64 = 15_000;
/// Dials of a join to one peer when they fail quickly (see [`JOIN_DIAL_QUICK_FAILURE`]).
const JOIN_DIAL_ATTEMPTS: u32 = 3;
/// A join's dial that fails within this is tried again after as long: the first relayed dial
/// of a fresh node can be cancelled while its connection to the relay is being set up.
const JOIN_DIAL_QUICK_FAILURE: Duration = Duration::from_millis(500);
/// First wait before dialling a stage member we lost the connection to; doubles up to
/// [`STAGE_REDIAL_MAX_MS`].
const STAGE_REDIAL_MIN_MS: u64 = 500;
/// Longest wait between dials of a stage member we are not connected to.
const STAGE_REDIAL_MAX_MS: u64 = 8_000;
/// How often a waiting lookup asks the connected peers for their directory again.
const JOIN_LOOKUP_RETRY_MS: u64 = 2_000;
/// Presence heartbeats per second that a room's audience sends in total, about: a listener's
/// interval stretches with the room (see `Task::presence_interval_ms`), so a room of
/// thousands does not push thousands of heartbeats per second through every node.
const AUDIENCE_PRESENCE_PER_S: u64 = 8;
/// Longest interval between a listener's heartbeats (its TTL is three of these, within
/// `ruang_proto::ephemeral::MAX_TTL_MS`).
const MAX_AUDIENCE_PRESENCE_MS: u64 = 30_000;

enum Internal {
    /// A join's dial and initial sync finished.
    Joined(Result<(Box<Room>, PeerId), NodeError>, Option<RoomKey>),
    /// Events from a sync answer.
    SyncPage {
        from: PeerId,
        room: RoomId,
        events: Vec<Vec<u8>>,
        /// Where the next page starts, if there is one.
        next: Option<u32>,
        /// Pages of this sync so far.
        pages: usize,
    },
    /// Announcements from a directory answer.
    DirectoryPage(Vec<Vec<u8>>),
    /// A join's progress, to show.
    Progress(String),
    /// Unblock a peer blocked for flooding.
    Unblock(PeerId),
    /// Block a banned peer, once the ban had time to reach it.
    BlockBanned(PeerId),
}

pub(crate) async fn spawn(config: Config) -> Result<NodeHandle, NodeError> {
    let keypair = ids::keypair(&config.identity);
    let mut net_config = ruang_net::Config::new(keypair).with_transport(config.transport);
    if !config.listen.is_empty() {
        net_config.listen = config.listen.clone();
    }
    net_config.bootstrap = config.bootstrap.clone();
    net_config.mdns = config.mdns;
    net_config.relay_server = config.relay_server;
    net_config.hide_ip = config.hide_ip;
    net_config.auto_relays = config.auto_relays;
    net_config.websocket_tls = config.websocket_tls.clone();
    let (client, net_events, inbox) = ruang_net::spawn(net_config).await?;
    client.subscribe(DIRECTORY_TOPIC).await?;

    let (events, _) = broadcast::channel(EVENT_BROADCAST_CAP);
    // Reservations on every relay at once; the network layer keeps them (asks again when one
    // fails or is lost) for as long as the node runs.
    let reservations = config.relays.iter().map(|relay| {
        let client = client.clone();
        async move { (relay.clone(), client.listen_via_relay(relay.clone()).await) }
    });
    let mut relay_addrs = HashMap::new();
    for (relay, result) in futures::future::join_all(reservations).await {
        match result {
            Ok(addr) => {
                if let Some(peer) = peer_of(&relay) {
                    relay_addrs.insert(peer, addr);
                }
            }
            Err(e) => warn!(
                %relay,
                error = %e,
                "no reservation on the relay yet (asking again in the background)"
            ),
        }
    }

    let clock = Clock::new();
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_EVENT_CAP);
    let (internal_tx, internal_rx) = mpsc::channel(INTERNAL_CAP);
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE_CAP);
    let policy: SharedPolicy = Arc::new(RwLock::new(Policy::default()));
    let mixing = Mixing::new(config.frame);
    let counters = Arc::new(ReceiveCounters::default());
    let frame_rate = (1_000 / config.frame.as_millis()) as u32;
    tokio::spawn(receive::run(
        inbox,
        receive::Receiver {
            policy: policy.clone(),
            mixing: mixing.clone(),
            clock,
            frame_rate,
            decode: config.decode_audio,
            events: audio_tx.clone(),
            counters: counters.clone(),
        },
    ));

    let me = config.identity.public();
    let peer_id = client.local_peer_id();
    let handle = NodeHandle {
        commands: command_tx,
        events: events.clone(),
        peer_id,
        key: me,
    };
    let mut task = Task {
        identity: config.identity.clone(),
        me,
        config,
        client,
        net_events,
        commands: command_rx,
        events,
        audio_rx,
        audio_tx,
        internal_rx,
        internal_tx,
        directory: Directory::new(),
        session: None,
        rng: StdRng::from_rng(&mut rand::rng()),
        clock,
        outbound: Arc::new(Outbound::default()),
        policy,
        mixing,
        counters,
        capture: None,
        playout: None,
        connected: HashSet::new(),
        addrs: Vec::new(),
        relay_addrs,
        pending_join: None,
        directory_synced: 0,
        blocked: HashSet::new(),
        joining: false,
        dht_server: true,
        banned_from: HashSet::new(),
        lookup: None,
        relays_lost: HashSet::new(),
        stage_dials: HashMap::new(),
        host_lost: false,
    };
    task.refresh_addrs().await;
    tokio::spawn(task.run());
    Ok(handle)
}

struct Task {
    identity: Identity,
    me: PublicKey,
    config: Config,
    client: Client,
    net_events: Events,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    audio_rx: mpsc::Receiver<AudioEvent>,
    audio_tx: mpsc::Sender<AudioEvent>,
    internal_rx: mpsc::Receiver<Internal>,
    internal_tx: mpsc::Sender<Internal>,
    directory: Directory,
    session: Option<Session>,
    rng: StdRng,
    clock: Clock,
    outbound: Arc<Outbound>,
    policy: SharedPolicy,
    mixing: SharedMixing,
    counters: Arc<ReceiveCounters>,
    capture: Option<Capture>,
    playout: Option<Playout>,
    connected: HashSet<PeerId>,
    /// Our addresses with `/p2p/<self>`, best first.
    addrs: Vec<Multiaddr>,
    /// Our address through each relay that holds a reservation for us.
    relay_addrs: HashMap<PeerId, Multiaddr>,
    pending_join: Option<Reply<Joined>>,
    directory_synced: usize,
    /// Peers blocked for flooding (unblocked after [`FLOOD_BLOCK`]).
    blocked: HashSet<PeerId>,
    joining: bool,
    /// We answer Kademlia queries (see [`Task::set_dht_server`]).
    dht_server: bool,
    /// Rooms this identity was banned from (their nodes refuse us; say so at once).
    banned_from: HashSet<RoomId>,
    /// A `join <room id>` waiting for the room to reach our directory.
    lookup: Option<Lookup>,
    /// Relays whose reservation was lost and not regained yet.
    relays_lost: HashSet<PeerId>,
    /// Stage members we are not connected to: when to dial next, and the wait after that.
    stage_dials: HashMap<PeerId, (u64, u64)>,
    /// The connection to the room's host was lost and not regained yet (for the notices).
    host_lost: bool,
}

/// A join by room id whose room is not in the directory yet.
struct Lookup {
    room: RoomId,
    /// Unix ms after which the join fails with [`NodeError::NotListed`].
    deadline: u64,
    /// When connected peers were last asked for their directory.
    asked: u64,
}

enum Flow {
    Continue,
    /// Shut down; answer the caller (if any) once the network layer has closed its
    /// connections, so that a process exiting right after does not leave them to time out.
    Stop(Option<Reply<()>>),
}

impl Task {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reply = loop {
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => if let Flow::Stop(reply) = self.command(cmd).await {
                        break reply;
                    },
                    // Every handle dropped: nobody can use the node any more.
                    None => break None,
                },
                Some(internal) = self.internal_rx.recv() => self.internal(internal).await,
                ev = self.net_events.recv() => match ev {
                    Some(ev) => self.net_event(ev).await,
                    None => {
                        self.emit(NodeEvent::Error { message: "the network layer stopped".into() });
                        break None;
                    }
                },
                Some(ev) = self.audio_rx.recv() => self.audio_event(ev).await,
                _ = tick.tick() => self.tick().await,
            }
        };
        self.leave_room("node shut down").await;
        self.capture = None;
        if let Some(p) = self.playout.take() {
            p.finish();
        }
        self.client.shutdown().await;
        if let Some(reply) = reply {
            let _ = reply.send(Ok(()));
        }
    }

    fn emit(&self, event: NodeEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    fn now(&self) -> u64 {
        clock::unix_ms()
    }

    // ----- commands ---------------------------------------------------------------------

    async fn command(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Host(options, reply) => {
                let result = self.host(options).await;
                let _ = reply.send(result);
            }
            Command::Join(target, reply) => self.join(target, reply),
            Command::Leave(reply) => {
                let result = if self.session.is_some() {
                    self.leave_room("left").await;
                    Ok(())
                } else {
                    Err(NodeError::NotInRoom)
                };
                let _ = reply.send(result);
            }
            Command::Act(body, reply) => {
                let result = self.act(body).await;
                let _ = reply.send(result);
            }
            Command::Chat(text, reply) => {
                let result = self.ephemeral(EphemeralBody::Chat { text }).await;
                let _ = reply.send(result);
            }
            Command::React(reaction, reply) => {
                let result = self.ephemeral(EphemeralBody::Reaction { reaction }).await;
                let _ = reply.send(result);
            }
            Command::Speak(source, pacing, reply) => {
                let _ = reply.send(self.speak(source, pacing));
            }
            Command::StopSpeaking(reply) => {
                self.capture = None;
                self.refresh_links();
                let _ = reply.send(Ok(()));
            }
            Command::Listen(sink, reply) => {
                if let Some(old) = self.playout.take() {
                    old.finish();
                }
                let result =
                    Playout::spawn(sink, self.mixing.clone(), self.clock, self.audio_tx.clone())
                        .map(|p| self.playout = Some(p))
                        .map_err(|e| NodeError::Audio(e.to_string()));
                let _ = reply.send(result);
            }
            Command::StopListening(reply) => {
                if let Some(p) = self.playout.take() {
                    p.finish();
                }
                let _ = reply.send(Ok(()));
            }
            Command::SelfMute(on, reply) => {
                self.outbound.self_muted.store(on, Ordering::Relaxed);
                let _ = reply.send(Ok(()));
            }
            Command::Rooms(reply) => {
                let now = self.now();
                self.directory.expire(now);
                let listings = self.directory.list().into_iter().map(listing).collect();
                let _ = reply.send(Ok(listings));
            }
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Shutdown(reply) => {
                self.leave_room("node shut down").await;
                self.capture = None;
                if let Some(p) = self.playout.take() {
                    p.finish();
                }
                return Flow::Stop(Some(reply));
            }
        }
        Flow::Continue
    }

    fn status(&self) -> Status {
        Status {
            peer_id: self.client.local_peer_id(),
            addrs: self.addrs.clone(),
            peers: self.connected.len(),
            room: self
                .session
                .as_ref()
                .map(|s| s.view(&self.me, &self.config.name)),
            ticket: self.session.as_ref().map(|s| self.ticket(s)),
            self_muted: self.outbound.self_muted.load(Ordering::Relaxed),
            transmitting: self.capture.is_some() && self.outbound.allowed.load(Ordering::Relaxed),
            listeners_served: self.outbound.links.lock().map(|l| l.len()).unwrap_or(0),
            frames_accepted: self.counters.accepted.load(Ordering::Relaxed),
            frames_refused: self.counters.refused.load(Ordering::Relaxed),
            frames_limited: self.counters.limited.load(Ordering::Relaxed),
            frames_dropped_inbound: self.client.audio_in_stats().dropped,
        }
    }

    async fn host(&mut self, options: HostOptions) -> Result<Joined, NodeError> {
        if self.session.is_some() || self.joining {
            return Err(NodeError::AlreadyInRoom);
        }
        let genesis = Genesis {
            info: options.info,
            visibility: if options.private {
                Visibility::Private
            } else {
                Visibility::Public
            },
            successors: options.successors,
            nonce: [0; 16],
        };
        let (room, _) = Room::create(&self.identity, genesis, self.now(), &mut self.rng)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        info!(room = %room.id(), "hosting a room");
        let key = options.private.then(|| RoomKey::generate(&mut self.rng));
        let joined = self.enter(room, key).await;
        Ok(joined)
    }

    fn join(&mut self, target: JoinTarget, reply: Reply<Joined>) {
        if self.session.is_some() || self.joining {
            let _ = reply.send(Err(NodeError::AlreadyInRoom));
            return;
        }
        let (room, host, addrs, key) = match target {
            JoinTarget::Ticket(t) => {
                let addrs = t
                    .addresses
                    .iter()
                    .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
                    .collect();
                (t.room, t.host, addrs, t.room_key.map(RoomKey::from_bytes))
            }
            JoinTarget::Room(id) => {
                if self.banned_from.contains(&id) {
                    let _ = reply.send(Err(NodeError::Banned));
                    return;
                }
                self.joining = true;
                self.pending_join = Some(reply);
                let now = self.now();
                self.lookup = Some(Lookup {
                    room: id,
                    deadline: now + JOIN_LOOKUP_MS,
                    asked: now,
                });
                if !self.resolve_lookup() {
                    // Not here yet: a fresh node is still finding peers. Ask those we have.
                    self.ask_directories();
                }
                return;
            }
        };
        if self.banned_from.contains(&room) {
            let _ = reply.send(Err(NodeError::Banned));
            return;
        }
        self.joining = true;
        self.pending_join = Some(reply);
        self.fetch(room, host, addrs, key);
    }

    /// Starts the join of a waiting [`Lookup`] if its room is in the directory now; whether
    /// it did (or there was no lookup).
    fn resolve_lookup(&mut self) -> bool {
        let Some(lookup) = &self.lookup else {
            return true;
        };
        self.directory.expire(self.now());
        let Some(ann) = self.directory.get(&lookup.room) else {
            return false;
        };
        let addrs = ann
            .addresses
            .iter()
            .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
            .collect();
        let (room, host) = (lookup.room, ann.author);
        self.lookup = None;
        self.fetch(room, host, addrs, None);
        true
    }

    /// Fails a waiting [`Lookup`] whose time is up; asks for directories again meanwhile.
    fn check_lookup(&mut self, now: u64) {
        let Some(lookup) = &mut self.lookup else {
            return;
        };
        if now >= lookup.deadline {
            let room = lookup.room;
            self.lookup = None;
            self.joining = false;
            if let Some(reply) = self.pending_join.take() {
                let _ = reply.send(Err(NodeError::NotListed(room.to_hex())));
            }
        } else if now >= lookup.asked + JOIN_LOOKUP_RETRY_MS {
            lookup.asked = now;
            self.ask_directories();
        }
    }

    /// Asks every connected peer (up to [`DIRECTORY_SYNC_PEERS`]) for its directory.
    fn ask_directories(&mut self) {
        let peers: Vec<PeerId> = self
            .connected
            .iter()
            .take(DIRECTORY_SYNC_PEERS)
            .copied()
            .collect();
        for peer in peers {
            self.ask_directory(peer);
        }
    }

    /// Asks `peer` for its directory in the background, again on failure (up to
    /// [`DIRECTORY_SYNC_ATTEMPTS`] times).
    fn ask_directory(&self, peer: PeerId) {
        let client = self.client.clone();
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let mut wait = DIRECTORY_RETRY;
            for attempt in 1..=DIRECTORY_SYNC_ATTEMPTS {
                match client
                    .sync_request(peer, SyncRequest::Directory.encode())
                    .await
                {
                    Ok(bytes) => {
                        if let Ok(SyncResponse::Directory { announcements }) =
                            SyncResponse::decode(&bytes)
                        {
                            let _ = internal.send(Internal::DirectoryPage(announcements)).await;
                        }
                        return;
                    }
                    Err(e) => {
                        debug!(%peer, attempt, error = %e, "directory request failed");
                        if attempt < DIRECTORY_SYNC_ATTEMPTS {
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                    }
                }
            }
        });
    }

    /// Dials the room's host (or whoever the addresses lead to) and syncs the room in the
    /// background; [`Internal::Joined`] reports how it went.
    fn fetch(
        &mut self,
        room: RoomId,
        host: PublicKey,
        addrs: Vec<Multiaddr>,
        key: Option<RoomKey>,
    ) {
        // Joiners start in the audience: a DHT client before the first dial, so the room's
        // members are not all dialled by our lookups (see `set_dht_server`).
        self.dht_server = false;
        let client = self.client.clone();
        let internal = self.internal_tx.clone();
        let hide_ip = self.config.hide_ip;
        tokio::spawn(async move {
            let _ = client.set_dht_server(false).await;
            let progress = Progress {
                internal: internal.clone(),
                hide_ip,
            };
            let result = fetch_room(&client, room, host, addrs, key.as_ref(), &progress)
                .await
                .map(|(r, p)| (Box::new(r), p));
            let _ = internal.send(Internal::Joined(result, key)).await;
        });
    }

    /// Makes `room` the node's room: subscribe, announce presence, set up audio.
    async fn enter(&mut self, room: Room, key: Option<RoomKey>) -> Joined {
        let now = self.now();
        let session = Session::new(room, key, now);
        if let Err(e) = self.client.subscribe_keeping_peers(&session.topic).await {
            self.emit(NodeEvent::Error {
                message: format!("cannot subscribe to the room: {e}"),
            });
        }
        let id = session.room.id();
        *self.outbound.seal.lock().unwrap_or_else(|p| p.into_inner()) =
            session.key.clone().map(|k| (k, id.0.0));
        self.session = Some(session);
        self.apply_state_effects(None).await;
        if let Some(s) = self.session.as_mut() {
            s.last_presence = now;
        }
        self.send_presence(false).await;
        self.maybe_announce(true).await;
        let ticket = self.ticket(self.session.as_ref().expect("just set"));
        self.emit(NodeEvent::Joined {
            room_id: id.to_hex(),
            ticket: ticket.to_string(),
        });
        Joined { room: id, ticket }
    }

    async fn leave_room(&mut self, reason: &str) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let ended = session.room.state().ended;
        if !ended {
            self.send_presence(true).await;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let topic = session.topic.clone();
        let _ = self.client.unsubscribe(&topic).await;
        for peer in session.streams_from.iter().copied().collect::<Vec<_>>() {
            self.client.close_audio_from(peer);
        }
        self.session = None;
        self.host_lost = false;
        self.stage_dials.clear();
        self.set_dht_server(true).await;
        self.outbound.allowed.store(false, Ordering::Relaxed);
        self.outbound
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        {
            let mut p = self.policy.write().unwrap_or_else(|e| e.into_inner());
            p.room = None;
            p.allowed.clear();
            p.key = None;
        }
        *self.outbound.seal.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.mixing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.emit(NodeEvent::Left {
            reason: reason.to_string(),
        });
    }

    /// Kademlia server on stage and outside rooms, client in a room's audience.
    ///
    /// In a room every member learns every other (presence), and a DHT server is in the
    /// routing table of each peer it talks to: one lookup answered by the host then dials the
    /// whole room, and libp2p keeps those connections (rust-libp2p#5190). The audience are
    /// many, come and go, and are often behind NAT: they ask, they do not answer.
    async fn set_dht_server(&mut self, server: bool) {
        if self.dht_server != server {
            self.dht_server = server;
            if let Err(e) = self.client.set_dht_server(server).await {
                debug!(error = %e, "cannot switch the Kademlia mode");
            }
        }
    }

    async fn act(&mut self, body: EventBody) -> Result<(), NodeError> {
        let now = self.now();
        let Some(session) = self.session.as_mut() else {
            return Err(NodeError::NotInRoom);
        };
        let before = session.room.state().clone();
        let event = session
            .room
            .author(&self.identity, body, now)
            .map_err(|e| match e {
                ruang_proto::room::AuthorError::Refused(r) => NodeError::Refused(r),
                other => NodeError::Invalid(other.to_string()),
            })?;
        let topic = session.topic.clone();
        let payload = session.seal(
            Purpose::Gossip,
            RoomMessage::Event(event.wire().to_vec()).encode(),
        );
        self.publish(&topic, payload).await;
        self.apply_state_effects(Some(before)).await;
        Ok(())
    }

    async fn ephemeral(&mut self, body: EphemeralBody) -> Result<(), NodeError> {
        let Some(session) = self.session.as_ref() else {
            return Err(NodeError::NotInRoom);
        };
        if session.room.state().banned.contains(&self.me) {
            return Err(NodeError::Banned);
        }
        if !session.held.is_empty() {
            // What is held goes first, if someone can be reached now.
            self.send_held().await;
        }
        let (signed, delivered) = self.publish_ephemeral(body.clone()).await?;
        if !delivered {
            let now = self.now();
            if let Some(s) = self.session.as_mut() {
                debug!("no peer on the room's topic yet: chat or reaction held");
                if s.held.push(now, body) > 0 {
                    self.emit(NodeEvent::Error {
                        message: "nobody in the room is reachable: an older chat message \
                                  was not delivered"
                            .into(),
                    });
                }
            }
        }
        // Show our own chat and reactions too.
        self.ephemeral_effects(&signed);
        Ok(())
    }

    /// Signs `body` as said now and publishes it on the room's topic; false when no peer is
    /// subscribed to the topic yet.
    async fn publish_ephemeral(
        &mut self,
        body: EphemeralBody,
    ) -> Result<(Verified<Ephemeral>, bool), NodeError> {
        let Some(session) = self.session.as_ref() else {
            return Err(NodeError::NotInRoom);
        };
        let msg = Ephemeral {
            room: session.room.id(),
            author: self.me,
            sent_at: self.now(),
            body,
        };
        let signed =
            signed::sign(&self.identity, msg).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let topic = session.topic.clone();
        let payload = session.seal(
            Purpose::Gossip,
            RoomMessage::Ephemeral(signed.wire().to_vec()).encode(),
        );
        let delivered = self.publish(&topic, payload).await;
        Ok((signed, delivered))
    }

    /// Sends the held chat lines and reactions (a peer subscribed to the room's topic), as
    /// said now; what still finds nobody stays held.
    async fn send_held(&mut self) {
        let Some(held) = self.session.as_mut().map(|s| s.held.take()) else {
            return;
        };
        let mut left = held.into_iter();
        for (at, body) in left.by_ref() {
            match self.publish_ephemeral(body.clone()).await {
                Ok((_, true)) => {}
                Ok((_, false)) => {
                    let rest: Vec<_> = std::iter::once((at, body)).chain(left).collect();
                    if let Some(s) = self.session.as_mut() {
                        s.held.put_back(rest);
                    }
                    return;
                }
                Err(e) => debug!(error = %e, "a held message could not be sent"),
            }
        }
    }

    fn speak(
        &mut self,
        source: Box<dyn ruang_audio::source::Source + Send>,
        pacing: Pacing,
    ) -> Result<(), NodeError> {
        if source.frame_duration() != self.config.frame {
            return Err(NodeError::Invalid(format!(
                "the source makes {} ms frames but the node uses {} ms",
                source.frame_duration().as_millis(),
                self.config.frame.as_millis()
            )));
        }
        self.capture = None;
        let encoder = EncoderConfig {
            frame: self.config.frame,
            bitrate_bps: self.config.bitrate_bps,
            ..EncoderConfig::default()
        };
        let mut speaker = [0u8; 8];
        speaker.copy_from_slice(&self.me.as_bytes()[..8]);
        let sender = Sender::new(
            u64::from_be_bytes(speaker),
            encoder,
            self.rng.random(),
            self.rng.random(),
        )
        .map_err(|e| NodeError::Audio(e.to_string()))?;
        // A new capture session: a new salt (the old links are replaced below).
        self.outbound
            .salt
            .store(self.rng.random(), Ordering::Relaxed);
        self.outbound
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let capture = Capture::spawn(
            source,
            pacing,
            sender,
            self.outbound.clone(),
            self.clock,
            self.audio_tx.clone(),
        )
        .map_err(|e| NodeError::Audio(e.to_string()))?;
        self.capture = Some(capture);
        self.refresh_links();
        Ok(())
    }

    // ----- background results -----------------------------------------------------------

    async fn internal(&mut self, internal: Internal) {
        match internal {
            Internal::Joined(result, key) => {
                self.joining = false;
                let reply = self.pending_join.take();
                let result = match result {
                    Ok((room, _from)) => {
                        let state = room.state();
                        if state.banned.contains(&self.me) {
                            Err(NodeError::Banned)
                        } else if state.ended {
                            Err(NodeError::Ended)
                        } else {
                            Ok(self.enter(*room, key).await)
                        }
                    }
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    self.set_dht_server(true).await;
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Internal::SyncPage {
                from,
                room,
                events,
                next,
                pages,
            } => {
                let Some(session) = self.session.as_mut() else {
                    return;
                };
                if session.room.id() != room {
                    return;
                }
                let before = session.room.state().clone();
                let mut added = 0;
                for sealed in &events {
                    let Some(wire) = session.open(Purpose::Sync, sealed) else {
                        continue;
                    };
                    if let Insert::New { released } = session.room.insert_wire(&wire) {
                        added += 1 + released;
                    }
                }
                if added > 0 {
                    debug!(added, %from, "sync added events");
                    self.apply_state_effects(Some(before)).await;
                }
                // Go on by position whether or not this page was new to us: with more heads than
                // a request names, a page can repeat what we have and the rest still be missing.
                if let Some(next) = next
                    && pages < MAX_SYNC_PAGES
                {
                    self.request_sync_from(from, next, pages);
                }
            }
            Internal::Progress(message) => {
                if self.joining {
                    self.emit(NodeEvent::Progress { message });
                }
            }
            Internal::DirectoryPage(wires) => {
                let now = self.now();
                for wire in wires.iter().take(MAX_DIRECTORY_ANSWER) {
                    let _ = self.directory.insert(wire, now);
                }
                self.resolve_lookup();
            }
            Internal::BlockBanned(peer) => {
                let still_banned = self
                    .session
                    .as_ref()
                    .and_then(|s| {
                        ids::public_key(&peer).map(|k| s.room.state().banned.contains(&k))
                    })
                    .unwrap_or(true);
                if still_banned {
                    let _ = self.client.block(peer).await;
                }
            }
            Internal::Unblock(peer) => {
                if self.blocked.remove(&peer) {
                    let banned = self
                        .session
                        .as_ref()
                        .and_then(|s| {
                            ids::public_key(&peer).map(|k| s.room.state().banned.contains(&k))
                        })
                        .unwrap_or(false);
                    if !banned {
                        let _ = self.client.unblock(peer).await;
                    }
                }
            }
        }
    }

    /// Asks `peer` for the room's events we lack (in the background).
    fn request_sync(&mut self, peer: PeerId) {
        self.request_sync_from(peer, 0, 0);
    }

    /// Asks `peer` for the room's events we lack from position `from` of its log on; page
    /// `pages` of this sync.
    fn request_sync_from(&mut self, peer: PeerId, from: u32, pages: usize) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.last_sync = clock::unix_ms();
        let room = session.room.id();
        let heads: Vec<_> = session
            .room
            .heads()
            .into_iter()
            .take(MAX_SYNC_HEADS)
            .collect();
        let client = self.client.clone();
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let request = SyncRequest::Room { room, heads, from }.encode();
            match client
                .sync_request(peer, request)
                .await
                .map(|b| SyncResponse::decode(&b))
            {
                Ok(Ok(SyncResponse::Room { events, next })) => {
                    let _ = internal
                        .send(Internal::SyncPage {
                            from: peer,
                            room,
                            events,
                            // A cursor that does not move on would loop.
                            next: next.filter(|n| *n > from),
                            pages: pages + 1,
                        })
                        .await;
                }
                Ok(Ok(_)) | Ok(Err(_)) => debug!(%peer, "unexpected sync answer"),
                Err(e) => debug!(%peer, error = %e, "sync request failed"),
            }
        });
    }

    // ----- network events ---------------------------------------------------------------

    async fn net_event(&mut self, event: Event) {
        match event {
            Event::Gossip {
                source,
                id,
                topic,
                data,
                ..
            } => {
                let verdict = self.gossip(source, &topic, &data).await;
                if let Err(e) = self.client.report_validation(id, source, verdict).await {
                    debug!(error = %e, "could not report a validation result");
                }
            }
            Event::SyncRequest {
                peer,
                request,
                reply,
            } => self.serve_sync(peer, &request, reply).await,
            Event::PeerConnected { peer, .. } => {
                self.connected.insert(peer);
                self.stage_dials.remove(&peer);
                if self.host_lost && self.is_room_host(peer) {
                    self.host_lost = false;
                    self.emit(NodeEvent::Notice {
                        message: "connected to the host again".into(),
                    });
                }
                if self.directory_synced < DIRECTORY_SYNC_PEERS || self.lookup.is_some() {
                    self.directory_synced += 1;
                    self.ask_directory(peer);
                }
            }
            Event::PeerDisconnected { peer } => {
                self.connected.remove(&peer);
                if self.is_room_host(peer) && !self.host_lost {
                    self.host_lost = true;
                    self.emit(NodeEvent::Notice {
                        message: "lost the connection to the host: reconnecting".into(),
                    });
                }
            }
            Event::Subscribed { topic, .. } => {
                let now = self.now();
                let Some(s) = self.session.as_mut().filter(|s| s.topic == topic) else {
                    return;
                };
                let held = !s.held.is_empty();
                if s.presence_undelivered {
                    s.last_presence = now;
                    self.send_presence(false).await;
                }
                if held {
                    self.send_held().await;
                }
            }
            Event::AudioStreamOpened { peer, header } => {
                let Some(session) = self.session.as_mut() else {
                    self.client.close_audio_from(peer);
                    return;
                };
                let banned = ids::public_key(&peer)
                    .is_some_and(|k| session.room.state().banned.contains(&k));
                let ours = AudioHeader::decode(&header).is_ok_and(|h| h.room == session.room.id());
                if banned || !ours {
                    self.client.close_audio_from(peer);
                } else {
                    session.streams_from.insert(peer);
                }
            }
            Event::AudioStreamClosed { peer, .. } => {
                if let Some(s) = self.session.as_mut() {
                    s.streams_from.remove(&peer);
                }
            }
            Event::RelayReservation { relay, addr } => {
                if self.relay_addrs.insert(relay, addr).is_none() && self.relays_lost.remove(&relay)
                {
                    self.emit(NodeEvent::Notice {
                        message: format!("reachable through relay {relay} again"),
                    });
                }
                self.refresh_addrs().await;
            }
            Event::ConnectionDropped { peer } => {
                // A connection replaced by a better one (a relayed one by a punched one, most
                // often while joining) takes with it what was in flight, our presence too, and
                // the stage streams to us only once it has that. Send it again at the next tick
                // (when the old connection is gone), at most once a second, and only when the
                // peer is on stage: presence goes to the whole room, and every new neighbour
                // connection can swap TCP for QUIC.
                let now = self.now();
                let interval = self.presence_interval_ms();
                let on_stage = |s: &Session| {
                    ids::public_key(&peer).is_some_and(|k| s.room.state().on_stage(&k))
                };
                if let Some(s) = self.session.as_mut()
                    && now >= s.presence_resent + PRESENCE_RESEND_MS
                    && on_stage(s)
                {
                    debug!(%peer, "a connection dropped: presence again");
                    s.presence_resent = now;
                    s.last_presence = s.last_presence.min(now.saturating_sub(interval));
                }
            }
            Event::HolePunched { peer } => {
                // Said of room members, and of anyone while joining (the join's own relayed
                // connection is often the one upgraded).
                let Some(key) = ids::public_key(&peer) else {
                    return;
                };
                let name = match self.session.as_ref() {
                    Some(s) if s.room.state().on_stage(&key) || s.presence.contains(&key) => {
                        s.name_of(&key)
                    }
                    None if self.joining => key.fingerprint().to_string(),
                    _ => return,
                };
                self.emit(NodeEvent::Notice {
                    message: format!(
                        "connected directly to {name} (hole punched: no longer through the relay)"
                    ),
                });
            }
            Event::RelayLost { relay, reason } => {
                self.relay_addrs.remove(&relay);
                self.relays_lost.insert(relay);
                self.emit(NodeEvent::Notice {
                    message: format!(
                        "lost relay {relay} ({reason}); people who reach you through it \
                         cannot until it is back: reconnecting"
                    ),
                });
                self.refresh_addrs().await;
            }
            Event::Listening { .. } | Event::ExternalAddrConfirmed { .. } => {
                self.refresh_addrs().await;
            }
            Event::Discovered { .. } => {}
            _ => {}
        }
    }

    /// Recomputes the addresses we give others (see [`addrs::shareable`]) and, in a room,
    /// tells the front-ends the new ticket when it changed.
    async fn refresh_addrs(&mut self) {
        let (Ok(mut listen), Ok(confirmed)) = (
            self.client.p2p_addrs().await,
            self.client.external_addrs().await,
        ) else {
            return;
        };
        for a in self.relay_addrs.values() {
            if !listen.contains(a) {
                listen.push(a.clone());
            }
        }
        let me = self.client.local_peer_id();
        let confirmed: Vec<Multiaddr> = confirmed
            .into_iter()
            .map(|a| ruang_net::with_peer(a, me))
            .collect();
        let addrs = addrs::shareable(&listen, &confirmed);
        if addrs == self.addrs {
            return;
        }
        self.addrs = addrs;
        if let Some(session) = self.session.as_ref() {
            let ticket = self.ticket(session).to_string();
            self.emit(NodeEvent::Ticket { ticket });
        }
    }

    async fn gossip(&mut self, source: PeerId, topic: &str, data: &[u8]) -> Verdict {
        if topic == DIRECTORY_TOPIC {
            return match self.directory.insert(data, self.now()) {
                Ok(_) => {
                    self.resolve_lookup();
                    Verdict::Accept
                }
                Err(
                    directory::AnnounceError::Invalid(_)
                    | directory::AnnounceError::BadGenesis
                    | directory::AnnounceError::NotHost,
                ) => Verdict::Reject,
                Err(_) => Verdict::Ignore,
            };
        }
        let Some(session) = self.session.as_mut() else {
            return Verdict::Ignore;
        };
        if session.topic != topic {
            return Verdict::Ignore;
        }
        // A private room's messages open only with its key: anything else on its topic is
        // forged or corrupt.
        let Some(data) = session.open(Purpose::Gossip, data) else {
            return Verdict::Reject;
        };
        let Ok(message) = RoomMessage::decode(&data) else {
            return Verdict::Reject;
        };
        match message {
            RoomMessage::Event(wire) => {
                let before = session.room.state().clone();
                match session.room.insert_wire(&wire) {
                    Insert::New { .. } => {
                        // Kept (others may build on it), but a banned author's events are not
                        // passed on: whatever they sign has no effect, and relaying it would
                        // let them spam the room.
                        // Nor are an author's events beyond the log rate.
                        let author = Room::hash_of_wire(&wire)
                            .and_then(|h| session.room.get(&h))
                            .map(|e| e.author);
                        let banned_author = author.is_some_and(|a| before.banned.contains(&a));
                        let over_rate = author.is_some_and(|a| {
                            !matches!(
                                session.log_limiter.check(&a, clock::unix_ms()),
                                Rate::Allowed
                            )
                        });
                        self.apply_state_effects(Some(before)).await;
                        if banned_author || over_rate {
                            Verdict::Ignore
                        } else {
                            Verdict::Accept
                        }
                    }
                    Insert::Known => Verdict::Ignore,
                    Insert::Pending { .. } => {
                        self.request_sync(source);
                        Verdict::Ignore
                    }
                    Insert::Rejected(reason) => {
                        // Forged, tampered, malformed, or its author never had the standing
                        // for it: every honest node rejects it too.
                        debug!(%source, %reason, "rejected a room event");
                        Verdict::Reject
                    }
                }
            }
            RoomMessage::Ephemeral(wire) => self.ephemeral_gossip(source, &wire).await,
        }
    }

    async fn ephemeral_gossip(&mut self, source: PeerId, wire: &[u8]) -> Verdict {
        let now = self.now();
        let Ok(msg) = signed::verify::<Ephemeral>(wire) else {
            return Verdict::Reject;
        };
        let Some(session) = self.session.as_mut() else {
            return Verdict::Ignore;
        };
        if msg.room != session.room.id() {
            return Verdict::Reject;
        }
        if msg.check_fresh(now).is_err() || msg.author == self.me {
            return Verdict::Ignore;
        }
        if session.room.state().banned.contains(&msg.author) {
            return Verdict::Ignore;
        }
        let limiter = match msg.body {
            EphemeralBody::Presence { .. } => &mut session.presence_limiter,
            _ => &mut session.chat_limiter,
        };
        if let Rate::Limited { strikes } = limiter.check(&msg.author, now) {
            if strikes >= FLOOD_STRIKES && ids::peer_id(&msg.author) == Some(source) {
                self.punish_flooder(source, "chat").await;
            }
            return Verdict::Ignore;
        }
        if let EphemeralBody::Presence {
            name, addresses, ..
        } = &msg.body
        {
            let change = session.presence.insert(&msg, now);
            if !name.is_empty() {
                session.names.insert(msg.author, name.clone());
            }
            if let Some(peer) = ids::peer_id(&msg.author) {
                let addrs: Vec<Multiaddr> = addresses
                    .iter()
                    .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
                    .collect();
                if session.known_addrs.get(&peer) != Some(&addrs) {
                    session.known_addrs.insert(peer, addrs.clone());
                    for a in addrs {
                        let _ = self.client.add_address(peer, a).await;
                    }
                }
            }
            if matches!(change, PresenceChange::Joined | PresenceChange::Left) {
                debug!(author = %msg.author.fingerprint(), ?change, "presence");
                self.membership_changed();
            }
        } else {
            self.ephemeral_effects(&msg);
        }
        Verdict::Accept
    }

    fn ephemeral_effects(&self, msg: &Verified<Ephemeral>) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let name = if msg.author == self.me {
            self.config.name.clone()
        } else {
            session.name_of(&msg.author)
        };
        match &msg.body {
            EphemeralBody::Chat { text } => {
                self.emit(NodeEvent::Chat {
                    from: msg.author.to_hex(),
                    name,
                    text: text.clone(),
                });
            }
            EphemeralBody::Reaction { reaction } => {
                self.emit(NodeEvent::Reaction {
                    from: msg.author.to_hex(),
                    name,
                    reaction: reaction.clone(),
                });
            }
            EphemeralBody::Presence { .. } => {}
        }
    }

    async fn punish_flooder(&mut self, peer: PeerId, what: &str) {
        if !self.blocked.insert(peer) {
            return;
        }
        warn!(%peer, what, "peer floods; disconnecting it for a while");
        self.emit(NodeEvent::Notice {
            message: format!(
                "peer {peer} was flooding {what}; disconnected for {} s",
                FLOOD_BLOCK.as_secs()
            ),
        });
        self.client.close_audio_from(peer);
        let _ = self.client.block(peer).await;
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FLOOD_BLOCK).await;
            let _ = internal.send(Internal::Unblock(peer)).await;
        });
    }

    async fn serve_sync(&mut self, peer: PeerId, request: &[u8], reply: SyncReply) {
        let response = match SyncRequest::decode(request) {
            Err(e) => SyncResponse::Refused(format!("bad request: {e}")),
            Ok(SyncRequest::Directory) => {
                self.directory.expire(self.now());
                let announcements = self
                    .directory
                    .list()
                    .into_iter()
                    .take(MAX_DIRECTORY_ANSWER)
                    .map(|a| a.wire().to_vec())
                    .collect();
                SyncResponse::Directory { announcements }
            }
            Ok(SyncRequest::Room { room, heads, from }) => match self.session.as_ref() {
                Some(s) if s.room.id() == room => {
                    if ids::public_key(&peer).is_some_and(|k| s.room.state().banned.contains(&k)) {
                        SyncResponse::Refused("you are banned from this room".into())
                    } else {
                        let (page, next) =
                            s.room.missing_from(&heads, from as usize, SYNC_PAGE_EVENTS);
                        let events: Vec<Vec<u8>> = page
                            .into_iter()
                            .map(|e| s.seal(Purpose::Sync, e.wire().to_vec()))
                            .collect();
                        let next = next.and_then(|n| u32::try_from(n).ok());
                        SyncResponse::Room { events, next }
                    }
                }
                _ => SyncResponse::Refused("this node is not in that room".into()),
            },
        };
        if let Err(e) = self.client.respond(reply, response.encode()).await {
            debug!(%peer, error = %e, "could not answer a sync request");
        }
    }

    // ----- state changes ----------------------------------------------------------------

    /// Everything that follows from the room state, after it changed from `before` (or was
    /// just entered, `None`): audio policy, links, bans, leaving, events.
    async fn apply_state_effects(&mut self, before: Option<State>) {
        let me = self.me;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let state = session.room.state().clone();
        let room_id = session.room.id();
        if before.as_ref() == Some(&state) {
            return;
        }
        self.set_dht_server(state.stage().contains(&me)).await;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        // Who may be heard.
        {
            let mut p = self.policy.write().unwrap_or_else(|e| e.into_inner());
            p.room = Some(room_id);
            p.key = session.key.clone();
            p.allowed = state
                .stage()
                .into_iter()
                .filter(|k| state.may_transmit(k) && *k != me)
                .collect();
        }
        {
            let mut m = self.mixing.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|k| state.may_transmit(k));
        }
        self.outbound
            .allowed
            .store(state.may_transmit(&me), Ordering::Relaxed);

        // Bans: close and refuse connections; lifts: allow again.
        let old_banned = before
            .as_ref()
            .map(|b| b.banned.clone())
            .unwrap_or_default();
        let newly_banned: Vec<PublicKey> = state
            .banned
            .difference(&old_banned)
            .copied()
            .filter(|k| *k != me)
            .collect();
        let unbanned: Vec<PublicKey> = old_banned.difference(&state.banned).copied().collect();
        let old_kicked = before
            .as_ref()
            .map(|b| b.kicked.clone())
            .unwrap_or_default();
        let newly_kicked: Vec<PublicKey> = state
            .kicked
            .iter()
            .filter(|(k, at)| old_kicked.get(k) != Some(at) && before.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in newly_banned.iter().chain(&newly_kicked) {
            session.presence.remove(key);
        }
        for key in &newly_banned {
            if let Some(peer) = ids::peer_id(key) {
                // Its audio stops now; its connections close once the ban has reached it, so
                // its own node learns it is banned and leaves.
                self.client.close_audio_from(peer);
                let internal = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(BAN_GRACE).await;
                    let _ = internal.send(Internal::BlockBanned(peer)).await;
                });
            }
        }
        for key in &unbanned {
            if let Some(peer) = ids::peer_id(key) {
                let _ = self.client.unblock(peer).await;
            }
        }
        for key in newly_kicked.iter().filter(|k| **k != me) {
            if let Some(peer) = ids::peer_id(key) {
                self.client.close_audio_from(peer);
            }
        }

        // Host changes: announce as the new host.
        if let Some(b) = &before
            && b.host != state.host
        {
            let name = session.name_of(&state.host);
            let _ = self.events.send(NodeEvent::Notice {
                message: format!("{name} is now the host"),
            });
        }
        if before.as_ref().is_some_and(|b| !b.ended) && state.ended {
            session.ended_at = Some(clock::unix_ms());
            self.outbound.allowed.store(false, Ordering::Relaxed);
            let _ = self.events.send(NodeEvent::Ended);
        }
        let view = session.view(&me, &self.config.name);
        session.dirty = false;
        self.emit(NodeEvent::State(Box::new(view)));
        self.refresh_links();
        if state.banned.contains(&me) {
            self.banned_from.insert(room_id);
            self.leave_room("banned").await;
            return;
        }
        if newly_kicked.contains(&me) {
            self.leave_room("kicked").await;
            return;
        }
        if before.as_ref().is_some_and(|b| b.host != state.host) && state.host == me {
            self.maybe_announce(true).await;
        }
        if state.ended && before.is_some() {
            self.maybe_announce(true).await;
        }
    }

    fn membership_changed(&mut self) {
        if let Some(s) = self.session.as_mut() {
            s.dirty = true;
        }
        self.refresh_links();
    }

    /// Opens and closes audio links to match who should hear this node.
    fn refresh_links(&mut self) {
        let sending = self.capture.is_some() && self.outbound.allowed.load(Ordering::Relaxed);
        let (targets, header) = match self.session.as_ref() {
            Some(s) if sending => {
                let (targets, _) = s.audio_targets(&self.me, self.config.fanout, clock::unix_ms());
                let header = AudioHeader {
                    room: s.room.id(),
                    speaker: self.me,
                    frame_ms: self.config.frame.as_millis() as u8,
                    salt: self.outbound.salt.load(Ordering::Relaxed),
                };
                (targets, Some(header.encode()))
            }
            _ => (Vec::new(), None),
        };
        let mut links = self
            .outbound
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        links.retain(|l| targets.contains(&l.peer()));
        if let Some(header) = header {
            for peer in targets {
                if !links.iter().any(|l| l.peer() == peer) {
                    debug!(%peer, "audio link to a listener");
                    links.push(self.client.open_audio(peer, header.clone()));
                }
            }
        }
    }

    // ----- timers -----------------------------------------------------------------------

    /// How often this node sends presence, in ms. On stage, or named as a successor, the
    /// configured interval: the stage and host succession need fresh presence. In the
    /// audience it stretches with the number of members, so that the audience as a whole sends
    /// about [`AUDIENCE_PRESENCE_PER_S`] heartbeats per second (2 s up to 16 members, 25 s at
    /// 200, at most [`MAX_AUDIENCE_PRESENCE_MS`]). Each heartbeat carries its own TTL (three
    /// intervals), so receivers need not know the sender's interval.
    fn presence_interval_ms(&self) -> u64 {
        let base = self.config.presence_interval.as_millis() as u64;
        let Some(session) = self.session.as_ref() else {
            return base;
        };
        let state = session.room.state();
        if state.on_stage(&self.me) || state.successors.contains(&self.me) {
            return base;
        }
        let members = session.presence.len() as u64;
        (members * 1_000 / AUDIENCE_PRESENCE_PER_S).clamp(base, MAX_AUDIENCE_PRESENCE_MS.max(base))
    }

    async fn tick(&mut self) {
        let now = self.now();
        self.directory.expire(now);
        self.check_lookup(now);
        let interval = self.presence_interval_ms();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let Some(ended) = session.ended_at {
            if now >= ended + END_GRACE_MS {
                self.leave_room("the room has ended").await;
            } else if now >= session.last_announce + ENDED_REANNOUNCE_MS {
                // Only the host announces (checked inside).
                self.maybe_announce(true).await;
            }
            return;
        }
        let gone = session.presence.expire(now);
        if !gone.is_empty() {
            session.forget_departed();
            self.membership_changed();
        }
        let session = self.session.as_mut().expect("checked above");
        let given_up = session.held.expire(now);
        if given_up > 0 {
            self.emit(NodeEvent::Error {
                message: format!(
                    "nobody in the room was reachable for {} s: {given_up} chat message(s) \
                     not delivered",
                    HELD_TTL_MS / 1_000
                ),
            });
        }
        let session = self.session.as_mut().expect("checked above");
        if now >= session.last_presence + interval {
            session.last_presence = now;
            self.send_presence(false).await;
        }
        self.maybe_announce(false).await;
        self.check_succession(now).await;
        self.maybe_sync(now);
        self.keep_stage_connected(now);
        self.keep_room_neighbours(now);
        self.check_fanout_notice(now);
        let dirty = self.session.as_ref().is_some_and(|s| s.dirty);
        if dirty && let Some(s) = self.session.as_mut() {
            s.dirty = false;
            let view = s.view(&self.me, &self.config.name);
            self.emit(NodeEvent::State(Box::new(view)));
        }
    }

    /// `key`'s display name: ours, the room's name for them, or their fingerprint.
    fn name_of(&self, key: &PublicKey) -> String {
        match &self.session {
            _ if *key == self.me => self.config.name.clone(),
            Some(s) => s.name_of(key),
            None => key.fingerprint().to_string(),
        }
    }

    /// Whether `peer` is the host of our room (and not us).
    fn is_room_host(&self, peer: PeerId) -> bool {
        self.session.as_ref().is_some_and(|s| {
            let host = s.room.state().host;
            host != self.me && ids::peer_id(&host) == Some(peer)
        })
    }

    /// Dials the stage members we are not connected to, each with its own backoff
    /// ([`STAGE_REDIAL_MIN_MS`] doubling to [`STAGE_REDIAL_MAX_MS`]). A speaker's audio comes
    /// over a connection that the speaker usually opened; when it dies (a relay restarted, a
    /// path changed) a listener behind NAT cannot be dialled back, so the listener dials.
    fn keep_stage_connected(&mut self, now: u64) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let stage: Vec<PeerId> = session
            .room
            .state()
            .stage()
            .into_iter()
            .filter(|k| *k != self.me)
            .filter_map(|k| ids::peer_id(&k))
            .filter(|p| !self.connected.contains(p))
            .collect();
        self.stage_dials.retain(|p, _| stage.contains(p));
        for peer in stage {
            let (next, wait) = self
                .stage_dials
                .entry(peer)
                .or_insert((now + STAGE_REDIAL_MIN_MS, STAGE_REDIAL_MIN_MS));
            if now < *next {
                continue;
            }
            *wait = (*wait * 2).min(STAGE_REDIAL_MAX_MS);
            *next = now + *wait;
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.connect(peer).await {
                    debug!(%peer, error = %e, "could not reach a stage member");
                }
            });
        }
    }

    /// Dials a present member when we are connected to fewer than [`ROOM_NEIGHBOURS`] of
    /// them, one per [`NEIGHBOUR_CHECK_MS`], each member at most once per
    /// [`NEIGHBOUR_RETRY_MS`].
    ///
    /// The audience are Kademlia clients (see `set_dht_server`), so nothing else connects them
    /// to each other: without this a listener's only room peers are the stage, and what it
    /// says (chat, hands, presence) reaches the rest of the audience only through the stage's
    /// gossipsub mesh of at most a dozen (bench `scale`: a listener's chat line reached 121 of
    /// 199 listeners). With a few neighbours each, gossipsub builds its mesh through the
    /// audience, and ruang-net keeps room peers connected.
    fn keep_room_neighbours(&mut self, now: u64) {
        let me = self.client.local_peer_id();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if now < session.last_neighbour_check + NEIGHBOUR_CHECK_MS {
            return;
        }
        session.last_neighbour_check = now;
        session
            .neighbour_dials
            .retain(|_, at| now < *at + NEIGHBOUR_RETRY_MS);
        let connected = session
            .known_addrs
            .keys()
            .filter(|p| self.connected.contains(*p) && session.is_present_peer(p))
            .count();
        if connected >= ROOM_NEIGHBOURS {
            return;
        }
        let candidates: Vec<(&PeerId, &Vec<Multiaddr>)> = session
            .known_addrs
            .iter()
            .filter(|(p, addrs)| {
                **p != me
                    && !addrs.is_empty()
                    && !self.connected.contains(*p)
                    && !self.blocked.contains(*p)
                    && !session.neighbour_dials.contains_key(*p)
                    && session.is_present_peer(p)
            })
            .collect();
        let Some((peer, addrs)) = candidates.choose(&mut self.rng) else {
            return;
        };
        let (peer, addrs) = (**peer, (*addrs).clone());
        session.neighbour_dials.insert(peer, now);
        debug!(%peer, connected, "dialling a room neighbour");
        let client = self.client.clone();
        tokio::spawn(async move {
            for addr in addrs {
                if client.dial(ruang_net::with_peer(addr, peer)).await.is_ok() {
                    break;
                }
            }
        });
    }

    fn maybe_sync(&mut self, now: u64) {
        let every = self.config.sync_interval.as_millis() as u64;
        let Some(session) = self.session.as_ref() else {
            return;
        };
        if now < session.last_sync + every {
            return;
        }
        let candidates: Vec<PeerId> = session
            .presence
            .iter()
            .filter_map(|(k, _)| ids::peer_id(k))
            .filter(|p| self.connected.contains(p))
            .collect();
        if candidates.is_empty() {
            if let Some(s) = self.session.as_mut() {
                s.last_sync = now;
            }
            return;
        }
        let peer = candidates[self.rng.random_range(0..candidates.len())];
        self.request_sync(peer);
    }

    async fn check_succession(&mut self, now: u64) {
        let me = self.me;
        let timeout = 3 * self.config.presence_interval.as_millis() as u64;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let state = session.room.state();
        if state.host == me || session.presence.contains(&state.host) {
            session.host_missing_since = None;
            return;
        }
        // Give a newly joined node time to hear the host's presence.
        if now < session.joined_at + timeout {
            return;
        }
        let since = *session.host_missing_since.get_or_insert(now);
        if now < since + self.config.presence_interval.as_millis() as u64 {
            return;
        }
        let presence = &session.presence;
        if session.room.next_host(|k| *k == me || presence.contains(k)) == Some(me) {
            info!("the host is gone; taking over as its first present successor");
            if self.act(EventBody::ClaimHost).await.is_ok() {
                self.emit(NodeEvent::Notice {
                    message: "the host is gone: you are now the host".into(),
                });
            }
        }
    }

    fn check_fanout_notice(&mut self, now: u64) {
        let fanout = self.config.fanout;
        let me = self.me;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if session.fanout_notice_given
            || now < session.joined_at + 10_000
            || session.presence.len() < fanout
        {
            return;
        }
        let state = session.room.state();
        let unheard: Vec<String> = state
            .stage()
            .into_iter()
            .filter(|k| *k != me && state.may_transmit(k) && session.presence.contains(k))
            .filter(|k| ids::peer_id(k).is_none_or(|p| !session.streams_from.contains(&p)))
            .map(|k| session.name_of(&k))
            .collect();
        if !unheard.is_empty() {
            session.fanout_notice_given = true;
            let message = format!(
                "no audio from {}: speakers stream to at most {fanout} listeners directly and this room has more; \
                 large-room forwarding is not available yet",
                unheard.join(", ")
            );
            self.emit(NodeEvent::Error { message });
        }
    }

    async fn send_presence(&mut self, leaving: bool) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let addresses = self
            .addrs
            .iter()
            .take(MAX_SHARED_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        let mut name = self.config.name.clone();
        truncate_utf8(&mut name, ruang_proto::ephemeral::MAX_NAME_LEN);
        let ttl_ms = (3 * self.presence_interval_ms())
            .min(u64::from(ruang_proto::ephemeral::MAX_TTL_MS)) as u32;
        let msg = Ephemeral {
            room: session.room.id(),
            author: self.me,
            sent_at: self.now(),
            body: EphemeralBody::Presence {
                name,
                ttl_ms,
                addresses,
                leaving,
            },
        };
        let Ok(signed) = signed::sign(&self.identity, msg) else {
            return;
        };
        let topic = session.topic.clone();
        let payload = session.seal(
            Purpose::Gossip,
            RoomMessage::Ephemeral(signed.wire().to_vec()).encode(),
        );
        let delivered = self.publish(&topic, payload).await;
        debug!(delivered, leaving, "presence sent");
        let interval = self.presence_interval_ms();
        if let Some(s) = self.session.as_mut() {
            s.presence_undelivered = !delivered && !leaving;
            if s.presence_undelivered {
                // No peer is subscribed to the room's topic yet: a joiner's first heartbeat
                // races the host's subscription. Retry when a peer subscribes (see
                // `Event::Subscribed`), else at the next tick, not an interval later: the host
                // learns of us (and starts streaming to us) only then.
                s.last_presence = s.last_presence.saturating_sub(interval);
            }
        }
    }

    async fn maybe_announce(&mut self, now_please: bool) {
        let me = self.me;
        let now = self.now();
        let every = self.config.announce_interval.as_millis() as u64;
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let state = session.room.state();
        if session.private() || state.host != me {
            return;
        }
        let genesis = session.room.genesis();
        let may_announce = genesis.author == me || state.successors.contains(&me);
        if !may_announce || (!now_please && now < session.last_announce + every) {
            return;
        }
        session.last_announce = now;
        let listeners = session
            .presence
            .iter()
            .filter(|(k, _)| state.role(k) == Role::Listener)
            .count();
        let speakers = state
            .stage()
            .into_iter()
            .take(directory::MAX_PREVIEW_SPEAKERS)
            .map(|k| SpeakerPreview {
                name: if k == me {
                    self.config.name.clone()
                } else {
                    session.name_of(&k)
                },
                key: k,
            })
            .map(|mut p| {
                truncate_utf8(&mut p.name, ruang_proto::ephemeral::MAX_NAME_LEN);
                p
            })
            .collect();
        let mut host_name = self.config.name.clone();
        truncate_utf8(&mut host_name, ruang_proto::ephemeral::MAX_NAME_LEN);
        let ann = Announcement {
            room: session.room.id(),
            author: me,
            genesis: genesis.wire().to_vec(),
            info: state.info.clone(),
            host: state.host,
            host_name,
            speakers,
            listener_count: listeners as u32,
            addresses: self
                .addrs
                .iter()
                .take(MAX_SHARED_ADDRS)
                .map(|a| a.to_vec())
                .collect(),
            started_at: state.started_at,
            scheduled_for: None,
            issued_at: now,
            // Three announce intervals, as `DEFAULT_ANNOUNCEMENT_TTL_MS` is for the default
            // interval. A fixed TTL kept a dead host's room listed long after its node stopped
            // re-announcing when the interval is shorter (60 s for 2 s), and would let the
            // listing lapse between announcements when it is longer than a third of it.
            expires_at: now
                + if state.ended {
                    30_000
                } else {
                    (3 * every).min(directory::MAX_ANNOUNCEMENT_TTL_MS)
                },
            ended: state.ended,
        };
        match signed::sign(&self.identity, ann) {
            Ok(signed) => {
                let _ = self.directory.insert_verified(signed.clone());
                self.publish(DIRECTORY_TOPIC, signed.wire().to_vec()).await;
            }
            Err(e) => warn!(error = %e, "could not sign the room's announcement"),
        }
    }

    /// Publishes; false when no peer is subscribed to the topic yet (or the publish failed).
    async fn publish(&self, topic: &str, data: Vec<u8>) -> bool {
        match self.client.publish(topic, data).await {
            Ok(()) | Err(NetError::Duplicate { .. }) => true,
            Err(NetError::InsufficientPeers { .. }) => false,
            Err(e) => {
                debug!(topic, error = %e, "publish failed");
                false
            }
        }
    }

    fn ticket(&self, session: &Session) -> Ticket {
        Ticket {
            room: session.room.id(),
            host: session.room.state().host,
            addresses: self
                .addrs
                .iter()
                .take(ruang_proto::ticket::MAX_TICKET_ADDRESSES)
                .map(|a| a.to_vec())
                .collect(),
            room_key: session.key.as_ref().map(|k| k.to_bytes()),
        }
    }

    // ----- audio events -----------------------------------------------------------------

    async fn audio_event(&mut self, event: AudioEvent) {
        match event {
            AudioEvent::CaptureStarted(unix_us) => self.emit(NodeEvent::CaptureStarted { unix_us }),
            AudioEvent::PlayoutStarted(unix_us) => self.emit(NodeEvent::PlayoutStarted { unix_us }),
            AudioEvent::SourceEnded => self.emit(NodeEvent::SourceEnded),
            AudioEvent::Error(message) => self.emit(NodeEvent::Error { message }),
            AudioEvent::Speaking(who, active) => {
                let key = who.unwrap_or(self.me);
                let name = self.name_of(&key);
                self.emit(NodeEvent::Speaking {
                    peer_id: key.to_hex(),
                    name,
                    active,
                });
            }
            AudioEvent::FirstFrame(key, unix_us) => {
                let name = self.name_of(&key);
                self.emit(NodeEvent::Hearing {
                    peer_id: key.to_hex(),
                    name,
                    unix_us,
                });
            }
            AudioEvent::Stats(list) => {
                let speakers = list
                    .into_iter()
                    .map(|(key, s)| SpeakerStats {
                        key: key.to_hex(),
                        name: self
                            .session
                            .as_ref()
                            .map(|ss| ss.name_of(&key))
                            .unwrap_or_default(),
                        received: s.jitter.received,
                        played: s.jitter.played,
                        late: s.jitter.late,
                        lost: s.jitter.lost,
                        fec: s.jitter.fec_recovered,
                        concealed: s.jitter.concealed,
                        jitter_ms: s.jitter.target_delay_ms,
                        depth_ms: s.jitter.depth_ms,
                    })
                    .collect();
                let (served, dropped) = {
                    let links = self
                        .outbound
                        .links
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    (links.len(), links.iter().map(|l| l.stats().dropped).sum())
                };
                self.emit(NodeEvent::Stats {
                    speakers,
                    peers: self.connected.len(),
                    frames_sent: self.outbound.frames.load(Ordering::Relaxed),
                    frames_dropped: dropped,
                    listeners_served: served,
                });
            }
            AudioEvent::Flooding(peer) => self.punish_flooder(peer, "audio frames").await,
        }
    }
}

/// Dials the room's addresses and pulls its whole log from the first member that answers.
/// Tells the node how a join goes (see [`NodeEvent::Progress`]).
struct Progress {
    internal: mpsc::Sender<Internal>,
    hide_ip: bool,
}

impl Progress {
    async fn say(&self, message: String) {
        let _ = self.internal.send(Internal::Progress(message)).await;
    }
}

/// What a join tries: the ticket's addresses by kind, for progress and failure lines.
struct Tried {
    direct: usize,
    private: usize,
    relays: Vec<String>,
}

impl Tried {
    fn of(addrs: &[Multiaddr]) -> Tried {
        let mut t = Tried {
            direct: 0,
            private: 0,
            relays: Vec::new(),
        };
        for a in addrs {
            match relay_part(a).as_ref().and_then(peer_of) {
                Some(relay) => {
                    let relay = short_peer(&relay);
                    if !t.relays.contains(&relay) {
                        t.relays.push(relay);
                    }
                }
                None if addrs::is_private(a) => t.private += 1,
                None => t.direct += 1,
            }
        }
        t
    }

    /// What to try next, in one sentence.
    fn hint(&self, hide_ip: bool) -> &'static str {
        if self.relays.is_empty() && hide_ip {
            "with --hide-ip only hosts reachable through a relay can be joined: ask for a \
             ticket with a p2p-circuit address"
        } else if self.relays.is_empty() && self.direct == 0 {
            "the host has only LAN addresses: on another network it needs a relay (a \
             --bootstrap node that runs --relay, or --via-relay) and a new ticket"
        } else if self.relays.is_empty() {
            "the host may be behind a NAT or firewall: it can use a relay (a --bootstrap node \
             that runs --relay, or --via-relay) and share the new ticket"
        } else {
            "the relay may be down or full, or the host gone: try again in a moment, or ask \
             for a fresh ticket"
        }
    }
}

impl std::fmt::Display for Tried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.direct > 0 {
            parts.push(format!("{} public", self.direct));
        }
        if self.private > 0 {
            parts.push(format!("{} LAN", self.private));
        }
        if !self.relays.is_empty() {
            parts.push(format!("through relay {}", self.relays.join(", ")));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// `12D3…abcd`: enough of a peer id to tell relays apart in one line.
fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_string();
    let tail = &s[s.len().saturating_sub(6)..];
    format!("…{tail}")
}

/// "connected to the host directly over QUIC" / "... through relay …abcd".
fn describe_path(addr: &Multiaddr) -> String {
    use ruang_net::multiaddr::Protocol;
    if let Some(relay) = relay_part(addr).as_ref().and_then(peer_of) {
        return format!("connected to the host through relay {}", short_peer(&relay));
    }
    let over = if addr.iter().any(|p| p == Protocol::QuicV1) {
        "QUIC"
    } else if addr.iter().any(|p| p == Protocol::Tls) {
        "WebSocket inside TLS"
    } else if addr
        .iter()
        .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)))
    {
        "WebSocket"
    } else {
        "TCP"
    };
    format!("connected to the host directly over {over}")
}

async fn fetch_room(
    client: &Client,
    room: RoomId,
    host: PublicKey,
    addrs: Vec<Multiaddr>,
    key: Option<&RoomKey>,
    progress: &Progress,
) -> Result<(Room, PeerId), NodeError> {
    if addrs.is_empty() {
        return Err(NodeError::Unreachable("the ticket has no addresses".into()));
    }
    let tried = Tried::of(&addrs);
    progress
        .say(format!("connecting to the host ({tried})"))
        .await;
    let host_peer = ids::peer_id(&host);
    let mut last_error = String::from("no address answered");
    let mut peer = None;
    // Every address of a peer at once (direct, LAN and relayed race; the first that works
    // is kept), the host's first. A dial that fails at once (a relayed dial while the
    // connection to its relay is still being set up is cancelled) is tried again.
    let mut by_peer: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    for addr in &addrs {
        let Some(target) = peer_of(addr).or(host_peer) else {
            continue;
        };
        match by_peer.iter_mut().find(|(p, _)| *p == target) {
            Some((_, list)) => list.push(addr.clone()),
            None => by_peer.push((target, vec![addr.clone()])),
        }
    }
    by_peer.sort_by_key(|(p, _)| Some(*p) != host_peer);
    // Relayed addresses need their relay connected first: a circuit dialled while the
    // connection to its relay is still being set up (a bootstrap dial to the same node, say)
    // is cancelled. So connect to the relays, all at once, then dial.
    let relays: HashSet<Multiaddr> = addrs.iter().filter_map(relay_part).collect();
    futures::future::join_all(relays.into_iter().map(|r| client.dial(r))).await;
    'peers: for (target, list) in by_peer {
        for attempt in 1..=JOIN_DIAL_ATTEMPTS {
            let started = tokio::time::Instant::now();
            match client.dial_peer(target, list.clone()).await {
                Ok(()) => {
                    peer = Some((target, list));
                    break 'peers;
                }
                Err(e) => {
                    last_error = e.to_string();
                    debug!(%target, attempt, error = %e, "join dial failed");
                    if started.elapsed() > JOIN_DIAL_QUICK_FAILURE {
                        break;
                    }
                    tokio::time::sleep(JOIN_DIAL_QUICK_FAILURE).await;
                }
            }
        }
    }
    let Some((peer, peer_addrs)) = peer else {
        return Err(NodeError::Unreachable(format!(
            "tried {tried}: {last_error}. Hint: {}",
            tried.hint(progress.hide_ip)
        )));
    };
    let path = client
        .connection_addrs(peer)
        .await
        .ok()
        .and_then(|list| list.into_iter().max_by_key(ruang_net::connection_rank));
    let how = match &path {
        Some(a) => describe_path(a),
        None => "connected".to_string(),
    };
    progress
        .say(format!("{how}; fetching the room's log"))
        .await;
    let mut replica: Option<Room> = None;
    let mut from = 0u32;
    for _ in 0..MAX_SYNC_PAGES {
        let heads = replica
            .as_ref()
            .map(|r| r.heads().into_iter().take(MAX_SYNC_HEADS).collect())
            .unwrap_or_default();
        let request = SyncRequest::Room { room, heads, from }.encode();
        let mut attempt = 1;
        let bytes = loop {
            match client.sync_request(peer, request.clone()).await {
                Ok(bytes) => break bytes,
                // The connection closed under the request (a duplicate one; or the peer
                // dropped us to start afresh, as it does when an older connection of ours
                // is still up from a process with our identity that crashed): connect
                // again and ask again.
                Err(NetError::NotConnected { .. } | NetError::Stream(_))
                    if attempt < JOIN_DIAL_ATTEMPTS =>
                {
                    attempt += 1;
                    client.dial_peer(peer, peer_addrs.clone()).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let bad = |reason: String| NodeError::BadLog {
            peer: peer.to_string(),
            reason,
        };
        let (events, next) = match SyncResponse::decode(&bytes).map_err(|e| bad(e.to_string()))? {
            SyncResponse::Room { events, next } => (events, next),
            SyncResponse::Refused(reason) if reason.contains("banned") => {
                return Err(NodeError::Banned);
            }
            SyncResponse::Refused(reason) => return Err(NodeError::Unreachable(reason)),
            SyncResponse::Directory { .. } => return Err(bad("answered with a directory".into())),
        };
        for sealed in &events {
            let opened;
            let wire: &[u8] = match key {
                Some(k) => {
                    opened = k.open(&room.0.0, Purpose::Sync, sealed).map_err(|_| {
                        bad("cannot open the room's events with the ticket's key".into())
                    })?;
                    &opened
                }
                None => sealed,
            };
            match replica.as_mut() {
                None => {
                    let r = Room::from_genesis_wire(room, wire).map_err(|e| bad(e.to_string()))?;
                    replica = Some(r);
                }
                Some(r) => {
                    let _ = r.insert_wire(wire);
                }
            }
        }
        // Go on by position whether or not the page was new (see `Internal::SyncPage`).
        match next {
            Some(n) if n > from => from = n,
            _ => break,
        }
    }
    let room = replica.ok_or_else(|| NodeError::BadLog {
        peer: peer.to_string(),
        reason: "no genesis".into(),
    })?;
    Ok((room, peer))
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn listing(ann: &Verified<Announcement>) -> Listing {
    Listing {
        room_id: ann.room.to_hex(),
        title: ann.info.title.clone(),
        topic: ann.info.topic.clone(),
        tags: ann.info.tags.clone(),
        language: ann.info.language.clone(),
        host_name: ann.host_name.clone(),
        host_fingerprint: ann.host.fingerprint().to_string(),
        speakers: ann.speakers.iter().map(|s| s.name.clone()).collect(),
        listeners: ann.listener_count,
        started_at: ann.started_at,
        scheduled_for: ann.scheduled_for,
    }
}
