//! The [`EventLoop`]: the one task that owns the swarm. It `select!`s over commands from
//! [`Client`](crate::Client)s (handled first), the swarm, and a housekeeping tick.
//!
//! - [`commands`]: what each command does;
//! - [`dialing`]: dialling, QUIC preference and what we know of peers' addresses;
//! - [`swarm_events`]: reacting to the swarm and its behaviours.

mod commands;
mod dialing;
mod swarm_events;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    core::{ConnectedPoint, transport::ListenerId},
    gossipsub, identify, kad, mdns,
    multiaddr::Protocol,
    ping, relay, request_response,
    swarm::{
        ConnectionId, DialError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::mpsc;

use crate::{
    addr_book::AddrBook,
    audio::inbound::InboundShared,
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, topic_allowed, topic_score_params},
    client::{Command, Reply, with_peer},
    config::Transport,
    error::NetError,
    event::{Event, SyncReply},
    limits::{
        EVENT_OVERFLOW_CAP, GOSSIP_VALIDATION_WINDOW, MAX_GOSSIP_SIZE, MAX_SYNC_REQUEST,
        MAX_SYNC_RESPONSE,
    },
    transport::{connection_rank, peer_of, relay_of},
};

/// How often stale waiters (whose caller timed out) are swept.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Peers a node stays connected to in any case (see `EventLoop::trim_idle_connections`).
const KEEP_PEERS: usize = 12;
/// Peers on our room's topic kept beyond [`KEEP_PEERS`] (see
/// `EventLoop::trim_idle_connections`): enough for a room's neighbours, its gossipsub mesh
/// candidates and the joiners of the last half minute, but not the whole audience of a room
/// of thousands, whose every member dialled the host once to join.
const KEEP_ROOM_PEERS: usize = 64;
/// A connection younger than this is never trimmed (gossipsub grafts, queries finish).
const TRIM_AFTER: Duration = Duration::from_secs(30);
/// How long shutdown waits for connections to close cleanly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long shutdown keeps the transports running once every connection is closed.
const CLOSE_LINGER: Duration = Duration::from_millis(150);

type Waiter = Reply<Result<(), NetError>>;

/// A sync request waiting for its answer. A copy of the request is kept so that it can be
/// sent once more when its connection closes while another to the peer stays open (a
/// connection replaced by a better one takes its requests with it).
pub(crate) struct SyncInFlight {
    pub(crate) reply: Reply<Result<Vec<u8>, NetError>>,
    pub(crate) peer: PeerId,
    /// The request, while it may still be sent again.
    pub(crate) again: Option<Vec<u8>>,
}

/// A dial we started and someone waits for.
struct PendingDial {
    /// For error messages.
    target: String,
    waiters: Vec<Waiter>,
    /// An opportunistic QUIC upgrade: its failure is not an error for the waiters (they are
    /// connected already).
    upgrade: bool,
    /// The relays its circuit addresses go through: their connections must stay while it is
    /// pending (see `EventLoop::carries_circuits`).
    via: Vec<PeerId>,
}

/// One open connection.
struct Conn {
    id: ConnectionId,
    remote: Multiaddr,
    /// When it was established.
    since: tokio::time::Instant,
    /// We dialled it (so we know the peer's address is reachable from here).
    dialer: bool,
    /// The relay a relayed connection goes through.
    via: Option<PeerId>,
    /// The peer has shown it holds this connection too (identify went across it either way).
    /// Only then may an older, worse connection be closed: if the peer's end of the new one
    /// were not up yet, it would see no connection to us for a moment, and gossipsub there
    /// would forget our subscriptions while ours keeps its view of the peer.
    confirmed: bool,
}

/// How the event loop behaves, from the [`Config`](crate::Config).
pub(crate) struct Policy {
    pub(crate) transport: Transport,
    /// Confirm our own listen addresses as external (a relay with none configured).
    pub(crate) listen_is_external: bool,
    /// Close connections nothing uses (see `trim_idle_connections`); off on relay servers.
    pub(crate) trim: bool,
    /// Relays to reserve on by ourselves (see `Config::auto_relays`).
    pub(crate) auto_relays: usize,
    /// Connect to others only through relays (see `Config::hide_ip`).
    pub(crate) hide_ip: bool,
}

/// A relay we keep a reservation on for as long as the node runs: when the reservation fails
/// or the relay goes away, we ask again (after [`RELAY_RETRY_MIN`], doubling up to
/// [`RELAY_RETRY_MAX`]), and at once when the relay connects again. A relay found by
/// ourselves ([`KeptRelay::found`]) is given up after [`AUTO_RELAY_ATTEMPTS`] failures in a
/// row, for another.
struct KeptRelay {
    /// The relay's address, with `/p2p/<relay>`.
    addr: Multiaddr,
    state: RelayState,
    /// Wait before the next attempt after a failure.
    backoff: Duration,
    /// Callers of `listen_via_relay` waiting for the first reservation.
    waiters: Vec<Reply<Result<Multiaddr, NetError>>>,
    /// Found by ourselves (not asked for through `listen_via_relay`).
    found: bool,
    /// Failed attempts since the last reservation.
    failures: u32,
}

/// Where a [`KeptRelay`] is.
enum RelayState {
    /// A circuit listener is asking the relay for a reservation.
    Reserving(ListenerId),
    /// Reserved: others reach us at the address.
    Reserved(ListenerId, Multiaddr),
    /// Waiting to ask again.
    Waiting(tokio::time::Instant),
}

/// First wait before asking a relay again after a failed or lost reservation.
const RELAY_RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between attempts: a relay back from a restart is used again within this.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(4);
/// Failures in a row after which a relay found by ourselves is given up (about 20 s of
/// attempts with the backoff above).
const AUTO_RELAY_ATTEMPTS: u32 = 8;
/// Relay candidates remembered (peers offering circuit relay that we dialled).
const MAX_RELAY_CANDIDATES: usize = 16;

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Events parked while `events` is full (bounded by EVENT_OVERFLOW_CAP).
    overflow: VecDeque<Event>,
    policy: Policy,
    local_peer_id: PeerId,
    addrs: AddrBook,
    /// Open connections per peer.
    connections: HashMap<PeerId, Vec<Conn>>,
    dials: HashMap<ConnectionId, PendingDial>,
    /// Callers waiting for any connection to a peer.
    peer_waiters: HashMap<PeerId, Vec<Waiter>>,
    sync_requests: HashMap<request_response::OutboundRequestId, SyncInFlight>,
    /// Relays we keep a reservation on, by relay peer id.
    relays: HashMap<PeerId, KeptRelay>,
    /// As a relay server: how many circuits each peer is an end of (bounded by the relay's
    /// circuit limit).
    circuits: HashMap<PeerId, usize>,
    /// Peers offering circuit relay that we could reserve on by ourselves, with the address
    /// we dialled them at (bounded by [`MAX_RELAY_CANDIDATES`]).
    relay_candidates: HashMap<PeerId, Multiaddr>,
    /// Relays found by ourselves and given up (they kept refusing): not asked again.
    relays_given_up: HashSet<PeerId>,
    /// Initial listeners not yet bound, and callers waiting for them.
    unbound: HashMap<ListenerId, Multiaddr>,
    listen_waiters: Vec<Reply<Result<(), NetError>>>,
    listen_error: Option<NetError>,
    rtt: HashMap<PeerId, Duration>,
    /// Reachability probes answered for peers.
    autonat_served: crate::event::AutonatServed,
    /// Gossip handed to the node and not yet judged, with when (a verdict is taken once).
    awaiting_verdict: HashMap<gossipsub::MessageId, tokio::time::Instant>,
    inbound: Arc<InboundShared>,
    /// The tasks taking inbound audio streams and audio requests.
    acceptors: Vec<tokio::task::JoinHandle<()>>,
    /// Topics whose peers are never trimmed ([`crate::Client::subscribe_keeping_peers`]).
    kept_topics: HashSet<gossipsub::TopicHash>,
    /// libp2p's metrics, when the node exports them ([`crate::Config::metrics`]).
    metrics: Option<libp2p::metrics::Metrics>,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        policy: Policy,
        unbound: HashMap<ListenerId, Multiaddr>,
        inbound: Arc<InboundShared>,
        acceptors: Vec<tokio::task::JoinHandle<()>>,
    ) -> Self {
        let local_peer_id = *swarm.local_peer_id();
        EventLoop {
            swarm,
            commands,
            events,
            overflow: VecDeque::new(),
            addrs: AddrBook::new(policy.transport),
            policy,
            local_peer_id,
            connections: HashMap::new(),
            dials: HashMap::new(),
            peer_waiters: HashMap::new(),
            sync_requests: HashMap::new(),
            relays: HashMap::new(),
            circuits: HashMap::new(),
            relay_candidates: HashMap::new(),
            relays_given_up: HashSet::new(),
            unbound,
            listen_waiters: Vec::new(),
            listen_error: None,
            rtt: HashMap::new(),
            autonat_served: crate::event::AutonatServed::default(),
            awaiting_verdict: HashMap::new(),
            inbound,
            acceptors,
            kept_topics: HashSet::new(),
            metrics: None,
        }
    }

    /// Records libp2p's metrics into `metrics` (see [`crate::Config::metrics`]).
    pub(crate) fn with_metrics(mut self, metrics: Option<libp2p::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until shutdown or until every `Client` is dropped.
    pub(crate) async fn run(mut self) {
        // A second handle, so waiting for room in the queue does not borrow `self`.
        let events = self.events.clone();
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    None => break None,
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(command) => self.on_command(command),
                },
                permit = events.reserve(), if !self.overflow.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.overflow.pop_front() {
                            permit.send(event);
                        }
                    }
                    // The node dropped its Events: nobody to tell.
                    Err(_) => self.overflow.clear(),
                },
                // Stop reading the network while the node is this far behind.
                event = self.swarm.select_next_some(), if self.overflow.len() < EVENT_OVERFLOW_CAP => {
                    self.on_swarm_event(event);
                }
                _ = tick.tick() => self.housekeeping(),
            }
        };
        tracing::debug!("network event loop stopping");
        for acceptor in &self.acceptors {
            acceptor.abort();
        }
        self.close_all().await;
        let EventLoop { swarm, .. } = self;
        drop(swarm);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Closes every connection and drives the swarm until they are gone (bounded by
    /// [`SHUTDOWN_GRACE`]), so peers learn at once that we left instead of waiting for an
    /// idle timeout (QUIC does not close on drop).
    async fn close_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().cloned().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let swarm = &mut self.swarm;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while swarm.connected_peers().next().is_some() {
                swarm.select_next_some().await;
            }
        })
        .await;
        // A closed QUIC connection's CONNECTION_CLOSE is sent by its endpoint a moment later:
        // without this the process could exit first, and its peers would hold the dead
        // connection until it timed out (a quick rejoin then found itself ignored).
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    }

    fn emit(&mut self, event: Event) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.overflow.push_back(event),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn housekeeping(&mut self) {
        // Dials themselves stay until the swarm reports how they ended (it always does).
        for d in self.dials.values_mut() {
            d.waiters.retain(|w| !w.is_closed());
        }
        self.peer_waiters.retain(|_, w| {
            w.retain(|w| !w.is_closed());
            !w.is_empty()
        });
        self.sync_requests.retain(|_, r| !r.reply.is_closed());
        self.retry_relays();
        self.listen_waiters.retain(|w| !w.is_closed());
        // gossipsub has dropped these from its cache by now (GOSSIP_VALIDATION_WINDOW).
        self.awaiting_verdict
            .retain(|_, at| at.elapsed() <= GOSSIP_VALIDATION_WINDOW + HOUSEKEEPING);
        if self.policy.trim {
            self.trim_idle_connections();
        }
    }

    /// Closes connections that nothing of ours uses, beyond [`KEEP_PEERS`] peers.
    ///
    /// libp2p closes a connection after the idle timeout only when no stream is open, and
    /// gossipsub keeps a stream open on every connection to a gossipsub peer
    /// (rust-libp2p#5190). So every connection a Kademlia query makes stays forever: in a room
    /// every member ended up connected to every other (bench `scale`: 100 peers per listener
    /// in a room of 100, 2 GB of RSS; a room's audience are Kademlia clients now, see
    /// `Client::set_dht_server`). A peer is kept when it is in one of our gossipsub meshes,
    /// audio flows with it either way, it is our relay or reached through one, or its
    /// connection is younger than [`TRIM_AFTER`]. Peers on a topic subscribed with
    /// `subscribe_keeping_peers` (our room) are kept up to [`KEEP_ROOM_PEERS`]: a host would
    /// otherwise keep a connection to every member that ever joined.
    fn trim_idle_connections(&mut self) {
        if self.connections.len() <= KEEP_PEERS {
            return;
        }
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let mesh: HashSet<PeerId> = gossipsub.all_mesh_peers().copied().collect();
        let room: HashSet<PeerId> = gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.iter().any(|t| self.kept_topics.contains(t)))
            .map(|(peer, _)| *peer)
            .collect();
        let audio = self.inbound.audio_peers();
        let relays: HashSet<PeerId> = self
            .swarm
            .listeners()
            .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
            .filter_map(|a| {
                a.iter().find_map(|p| match p {
                    Protocol::P2p(peer) => Some(peer),
                    _ => None,
                })
            })
            .collect();
        let idle = |peer: &PeerId, conns: &Vec<Conn>| {
            !mesh.contains(peer)
                && !audio.contains(peer)
                && !relays.contains(peer)
                && conns
                    .iter()
                    .all(|c| c.since.elapsed() >= TRIM_AFTER && connection_rank(&c.remote) > 0)
        };
        // Others first, down to KEEP_PEERS; then room peers, down to KEEP_ROOM_PEERS.
        let mut others: Vec<PeerId> = Vec::new();
        let mut room_idle: Vec<(tokio::time::Instant, PeerId)> = Vec::new();
        for (peer, conns) in &self.connections {
            if !idle(peer, conns) {
                continue;
            }
            if room.contains(peer) {
                let newest = conns.iter().map(|c| c.since).max();
                room_idle.extend(newest.map(|at| (at, *peer)));
            } else {
                others.push(*peer);
            }
        }
        let mut left = self.connections.len();
        let mut close = Vec::new();
        for peer in others {
            if left <= KEEP_PEERS {
                break;
            }
            close.push(peer);
            left -= 1;
        }
        // The longest-connected go first: the newest are likeliest a joiner still syncing.
        room_idle.sort();
        for (_, peer) in room_idle {
            if left <= KEEP_ROOM_PEERS {
                break;
            }
            close.push(peer);
            left -= 1;
        }
        for peer in close {
            tracing::debug!(%peer, "closing a connection nothing uses");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}

/// `e` and its sources, one after the other (libp2p's transport errors often say nothing at the
/// top level: the reason is a few sources down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        "failed".into()
    } else {
        parts.join(": ")
    }
}

pub(super) fn dial_error(target: &str, e: &DialError) -> NetError {
    let reason = match e {
        DialError::Denied { cause } => format!("refused locally ({cause})"),
        DialError::Transport(errors) => errors
            .iter()
            .map(|(a, e)| format!("{a}: {}", error_chain(e)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    NetError::Dial {
        addr: target.to_string(),
        reason,
    }
}
