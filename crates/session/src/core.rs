//! [`Core`]: a node's room logic as a state machine. Its driver feeds it [`Input`]s with the
//! [`Time`] they happened at, takes its [`Output`]s with [`Core::poll_output`] and carries them
//! out, and calls back at [`Core::poll_timeout`] with [`Input::Timeout`].
//!
//! Every answer the network gives to an output (a publish that found no peer, a sync page, a
//! dial of a join) comes back as an input; nothing here waits. Peers are named by their ruang
//! key (a node's libp2p identity is the same ed25519 key); addresses are multiaddr bytes the
//! core passes through without reading them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rand::{RngExt, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use ruang_proto::directory::{self, AnnounceError, Announcement, Directory, SpeakerPreview};
use ruang_proto::ephemeral::{
    Admission, Ephemeral, EphemeralBody, PresenceChange, Rate, RateLimiter,
};
use ruang_proto::rekey::Rekey;
use ruang_proto::room::{
    Changes, EventBody, Genesis, Info, Insert, Refusal, Role, Room, RoomId, State, Visibility,
};
use ruang_proto::seal::{Purpose, RoomKey};
use ruang_proto::signed::{self, Verified};
use ruang_proto::{Identity, PublicKey, Ticket};
use tracing::{debug, info, warn};

use crate::event::{LeaveReason, Listing, NodeEvent, RoomView};
use crate::limits::*;
use crate::room::Membership;
use crate::wire::{
    AudioRequest, MAX_DIRECTORY_ANSWER, MAX_PRESENCE_ANSWER, MAX_SYNC_HEADS, RoomMessage,
    SYNC_PAGE_EVENTS, SyncRefusal, SyncRequest, SyncResponse,
};

/// The directory's gossip topic.
pub const DIRECTORY_TOPIC: &str = "ruang/directory/1";

/// When an input happened, on the driver's two clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time {
    /// Monotonic milliseconds (any origin): every interval and deadline of the core.
    pub mono_ms: u64,
    /// Unix milliseconds: signed timestamps (events, presence, announcements) and checks of
    /// other nodes' timestamps.
    pub unix_ms: u64,
}

/// What the core needs to start.
#[derive(Clone)]
pub struct Config {
    /// The user's identity: signs events, presence and announcements.
    pub identity: Identity,
    /// Display name (at most [`ruang_proto::ephemeral::MAX_NAME_LEN`] bytes are sent).
    pub name: String,
    /// The node reaches others only through relays: said in a join's failure hint.
    pub hide_ip: bool,
    /// Listeners a speaker streams to directly, at most.
    pub fanout: usize,
    /// Presence heartbeat interval on stage, ms (the audience's stretches with the room).
    pub presence_interval_ms: u64,
    /// Listeners whose presence this node keeps and passes on, at most: a sample of the
    /// audience, the same in every member (see [`ruang_proto::ephemeral::PresenceTable::sampled`];
    /// [`crate::limits::AUDIENCE_SAMPLE`] by default).
    pub audience_sample: usize,
    /// Directory re-announcement interval, ms.
    pub announce_interval_ms: u64,
    /// Anti-entropy interval (ask a member for events we may lack), ms.
    pub sync_interval_ms: u64,
    /// Seed of the core's randomness (room nonces, sealing nonces, peer choices).
    pub seed: [u8; 32],
}

/// What to open a room with.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// Title, topic, tags, language.
    pub info: Info,
    /// Who may take over if the host is gone, in order.
    pub successors: Vec<PublicKey>,
    /// Not announced in the directory; reachable by ticket only.
    pub private: bool,
}

/// Which room to join.
#[derive(Clone, Debug)]
pub enum JoinTarget {
    /// By ticket (works without the directory).
    Ticket(Ticket),
    /// By id, looked up in the directory.
    Room(RoomId),
}

/// The room a node is in.
#[derive(Clone, Debug)]
pub struct Joined {
    /// Its id.
    pub room: RoomId,
    /// A ticket others can join with (this node's addresses).
    pub ticket: Ticket,
}

/// Identifies a command, so its [`Output::Reply`] can be matched to it.
pub type CommandId = u64;

/// What the user asks of the node's room logic.
#[derive(Clone, Debug)]
pub enum Command {
    /// Open a room hosted by this node.
    Host(HostOptions),
    /// Join a room.
    Join(JoinTarget),
    /// Leave the room (saying so first).
    Leave,
    /// Author a room event (raise a hand, invite, mute, ban, end the room...).
    Act(EventBody),
    /// Send a chat line.
    Chat(String),
    /// Send a reaction.
    React(String),
    /// Leave any room and stop: [`Output::Stopped`] follows the leaving outputs.
    Shutdown,
}

/// What a command achieved.
#[derive(Clone, Debug)]
pub enum Answer {
    /// In the room now.
    Joined(Joined),
    /// Done.
    Done,
    /// A room action, chat line or reaction was sent; whether anyone got it.
    Sent(Delivery),
}

/// Whether a room action, chat line or reaction reached anyone when it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Passed on to at least one member of the room.
    Reached,
    /// Nobody in the room was connected. A room action is in this node's log and reaches the
    /// others by sync once someone connects; a chat line or reaction is held and sent again
    /// with the next one (or dropped when it grows stale).
    NobodyReached,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The operation needs a room, and the node is in none.
    #[error("not in a room: host or join one first")]
    NotInRoom,
    /// The node is in a room already (or joining one).
    #[error("already in a room: leave it first")]
    AlreadyInRoom,
    /// The room's state does not allow it.
    #[error("not allowed: {0}")]
    Refused(Refusal),
    /// Nobody at the ticket's addresses answered (or the connection was lost).
    #[error("could not reach the room: {0}")]
    Unreachable(String),
    /// The room is not in the directory (its id, hex).
    #[error(
        "room {0} is not in the directory (it may have ended, or not reached this node yet); use its ticket"
    )]
    NotListed(String),
    /// This identity is banned from the room.
    #[error("you are banned from this room")]
    Banned,
    /// The room has ended.
    #[error("the room has ended")]
    Ended,
    /// A peer answered with something that is not a valid room log.
    #[error("the room's log from {peer} is invalid: {reason}")]
    BadLog {
        /// Who sent it (fingerprint).
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// An input or an argument was invalid.
    #[error("{0}")]
    Invalid(String),
    /// The join was given up: the user left before it finished.
    #[error("the join was cancelled")]
    Cancelled,
}

/// A gossip message, decoded and its signature checked by [`Core::decode`] (which a simulator
/// calls once per message for all the cores that receive it).
#[derive(Clone, Debug)]
pub enum Gossip {
    /// On the directory topic.
    Announcement(Box<Result<Verified<Announcement>, AnnounceError>>),
    /// A room event (the log verifies it when it inserts it, after a cheap duplicate check).
    Event(Vec<u8>),
    /// A chat line, reaction or presence of the room, its signature checked.
    Ephemeral(Verified<Ephemeral>),
    /// A private room's new key, its signature checked.
    Rekey(Verified<Rekey>),
    /// Not for us (another topic, no room): ignore.
    NotOurs,
    /// Forged, corrupt or malformed: reject.
    Malformed,
}

/// How gossip is judged (the network layer forwards accepted messages only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and penalise the peer that sent it.
    Reject,
    /// Valid but not to be passed on (duplicate, stale, over a rate, from a banned author).
    Ignore,
}

/// Why a sync request got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncFailure {
    /// The connection closed under it (a replaced connection, or the peer dropped us).
    Disconnected,
    /// Anything else, in words.
    Other(String),
}

/// What happens to the core.
#[derive(Debug)]
pub enum Input {
    /// A user command.
    Command(CommandId, Command),
    /// A gossip message, decoded with [`Core::decode`]. Answered by one [`Output::Verdict`].
    Gossip {
        /// Echoed in the verdict.
        token: u64,
        /// The peer that passed it on (not the author), if it has a ruang key.
        source: Option<PublicKey>,
        /// The message.
        message: Gossip,
    },
    /// A peer asks for a room's events or for our directory. Answered by one
    /// [`Output::SyncReply`].
    SyncRequest {
        /// Echoed in the reply.
        token: u64,
        /// Who asks, if it has a ruang key.
        from: Option<PublicKey>,
        /// The request bytes.
        request: Vec<u8>,
    },
    /// The answer to an [`Output::SyncRequest`].
    SyncAnswer {
        /// The request's id.
        id: u64,
        /// The answer bytes, or why there are none.
        result: Result<Vec<u8>, SyncFailure>,
    },
    /// What became of an [`Output::Publish`] with an id: whether some peer was subscribed.
    Published {
        /// The publish's id.
        id: u64,
        /// False when no peer was on the topic (or the publish failed).
        delivered: bool,
    },
    /// How an [`Output::JoinDial`] or [`Output::JoinRedial`] went: connected to this member,
    /// or what was tried and why it failed, in one line.
    JoinDialed(Result<PublicKey, String>),
    /// A first connection to a peer.
    Connected(PublicKey),
    /// The last connection to a peer closed.
    Disconnected(PublicKey),
    /// One of several connections to a peer closed (replaced by a better one).
    ConnectionDropped(PublicKey),
    /// A relayed connection to a peer was upgraded to a direct one.
    HolePunched(PublicKey),
    /// A peer subscribed to `topic`.
    Subscribed {
        /// The topic.
        topic: String,
    },
    /// A peer opened an audio stream to us with this header.
    AudioStreamOpened {
        /// The peer.
        from: PublicKey,
        /// The stream's header bytes.
        header: Vec<u8>,
    },
    /// A peer's audio streams to us closed.
    AudioStreamClosed(PublicKey),
    /// A peer asked for our audio over its own connection (a `wire::AudioRequest`, held open
    /// until [`Input::AudioRequestEnded`]). Turned down with [`Output::RefuseAudio`], or
    /// served through [`Output::AudioTargets`].
    AudioRequested {
        /// The peer (authenticated by its connection).
        from: PublicKey,
        /// The request bytes.
        request: Vec<u8>,
    },
    /// A peer's request for our audio ended (it closed it, or its connection closed), and
    /// no newer one from it is held.
    AudioRequestEnded(PublicKey),
    /// The addresses others can reach us at (multiaddr bytes, best first) changed.
    Addresses(Vec<Vec<u8>>),
    /// Whether this node has an audio source now.
    Sending(bool),
    /// A peer sends audio frames far above the frame rate.
    Flooding(PublicKey),
    /// [`Core::poll_timeout`] was reached.
    Timeout,
}

/// Who may be heard and whether this node may transmit, derived from the verified room state;
/// handed to the audio threads whole on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudioPolicy {
    /// The room whose audio is accepted (none outside a room).
    pub room: Option<RoomId>,
    /// A private room's key: frame payloads are sealed and opened with it.
    pub key: Option<RoomKey>,
    /// Keys that may be heard (on stage, not muted, not banned, room open; not ourselves).
    pub allowed: HashSet<PublicKey>,
    /// Whether this node may transmit.
    pub transmit: bool,
}

impl AudioPolicy {
    /// Whether `speaker`'s frames in `room` may be played.
    pub fn hears(&self, room: &RoomId, speaker: &PublicKey) -> bool {
        self.room.as_ref() == Some(room) && self.allowed.contains(speaker)
    }

    /// Whether `speaker`'s frames in the room this policy is for may be played.
    pub fn hears_in_room(&self, speaker: &PublicKey) -> bool {
        self.room.is_some() && self.allowed.contains(speaker)
    }
}

/// What the core asks its driver to do, in order.
#[derive(Debug)]
pub enum Output {
    /// Publish `data` on `topic`; with an id, report [`Input::Published`].
    Publish {
        /// For [`Input::Published`].
        id: Option<u64>,
        /// The topic.
        topic: String,
        /// The payload.
        data: Vec<u8>,
    },
    /// The verdict on [`Input::Gossip`] `token`.
    Verdict {
        /// From the input.
        token: u64,
        /// Accept, reject or ignore.
        verdict: Verdict,
    },
    /// Subscribe to a topic.
    Subscribe {
        /// The topic.
        topic: String,
        /// Keep the connection to every peer on it open (a room's members need theirs whether
        /// or not gossip uses them today).
        keep_peers: bool,
    },
    /// Unsubscribe from a topic.
    Unsubscribe(String),
    /// Ask `to` (connected) with a sync request; report [`Input::SyncAnswer`].
    SyncRequest {
        /// For [`Input::SyncAnswer`].
        id: u64,
        /// The peer.
        to: PublicKey,
        /// The request bytes.
        request: Vec<u8>,
    },
    /// The reply to [`Input::SyncRequest`] `token`.
    SyncReply {
        /// From the input.
        token: u64,
        /// The response bytes.
        response: Vec<u8>,
    },
    /// Connect a join: dial the room's `host` (or whoever the addresses lead to), all addresses
    /// at once, saying how it goes; report [`Input::JoinDialed`].
    JoinDial {
        /// The room's host.
        host: PublicKey,
        /// The ticket's (or directory's) addresses.
        addresses: Vec<Vec<u8>>,
    },
    /// The join's connection to `peer` closed under it: dial it again the same way; report
    /// [`Input::JoinDialed`].
    JoinRedial {
        /// The member the join fetches from.
        peer: PublicKey,
    },
    /// Dial `peer` at these addresses, one after the other until one works (a room
    /// neighbour). Nothing is reported.
    Dial {
        /// The peer.
        peer: PublicKey,
        /// Its addresses.
        addresses: Vec<Vec<u8>>,
    },
    /// Connect to `peer` at whatever addresses the network layer knows. Nothing is reported.
    Connect(PublicKey),
    /// Tell the network layer where `peer` can be reached.
    AddAddresses {
        /// The peer.
        peer: PublicKey,
        /// Its addresses.
        addresses: Vec<Vec<u8>>,
    },
    /// Refuse and close every connection of a peer.
    Block(PublicKey),
    /// Allow a blocked peer again.
    Unblock(PublicKey),
    /// Close the audio streams a peer opened to us.
    CloseAudioFrom(PublicKey),
    /// Answer DHT queries (Kademlia server) or not.
    SetDhtServer(bool),
    /// The audio policy changed: hand it to the audio threads.
    AudioPolicy(Arc<AudioPolicy>),
    /// The peers this node's audio should stream to now (none: close every link): members
    /// that asked for it, at most [`Config::fanout`].
    AudioTargets(Vec<PublicKey>),
    /// Turn down `peer`'s request for our audio (past the fan-out, banned, another room):
    /// it asks again later.
    RefuseAudio(PublicKey),
    /// Ask each of `speakers` for its audio with `request` (a `wire::AudioRequest`), and keep
    /// asking while it is listed (again after a refusal or a lost connection, with backoff);
    /// stop asking those no longer listed.
    AudioRequests {
        /// The request bytes.
        request: Vec<u8>,
        /// The stage members to ask (not us).
        speakers: Vec<PublicKey>,
    },
    /// An event for the user.
    Event(NodeEvent),
    /// The room's state or membership changed: show [`Core::view`].
    StateChanged,
    /// The answer to a command.
    Reply {
        /// The command's id.
        id: CommandId,
        /// What it achieved.
        result: Result<Answer, Error>,
    },
    /// After [`Command::Shutdown`]: everything before this was the leaving; stop.
    Stopped,
}

/// What an [`Output::Publish`] with an id was, for its [`Input::Published`].
enum Publication {
    /// Our presence.
    Presence { leaving: bool },
    /// A chat line or reaction said at `at`, to hold again if nobody was reached; with the
    /// command to answer, if a user sent it just now.
    Said {
        at: u64,
        body: EphemeralBody,
        reply: Option<CommandId>,
    },
    /// A room event a user authored: the command to answer once it is out.
    Act { reply: CommandId },
    /// Our room's announcement.
    Announcement,
}

/// What an [`Output::SyncRequest`] was.
enum Request {
    /// A page of a join's log fetch.
    JoinPage,
    /// A page of anti-entropy sync with `peer`, from position `from`, page `pages`.
    RoomPage {
        peer: PublicKey,
        from: u32,
        pages: usize,
    },
    /// Attempt `attempt` at `peer`'s directory.
    Directory { peer: PublicKey, attempt: u32 },
    /// The presences `peer` holds in `room`, asked for at our join.
    Presences { peer: PublicKey, room: RoomId },
}

/// A timer of the core.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Timer {
    /// Ask `peer` for its directory again.
    DirectoryRetry { peer: PublicKey, attempt: u32 },
    /// Unblock a peer blocked for flooding.
    Unblock(PublicKey),
    /// Block a banned peer, once the ban had time to reach it.
    BlockBanned(PublicKey),
    /// Publish our leaving presence again (the same bytes), after we left `topic`.
    Farewell { topic: String, data: Vec<u8> },
    /// Close `peer`'s audio streams unless it is on stage by now.
    AdmitAudio(PublicKey),
    /// Publish a private room's rekey message again (the same bytes) on its old topic.
    RekeyAgain { topic: String, data: Vec<u8> },
    /// Move to the private room's pending key (see [`Core::rekey`]).
    SwitchKey,
    /// Connect again to the member a join fetches from (its connection closed).
    JoinRedial(PublicKey),
}

/// A join fetching its room's log, page by page, from the member it connected to.
struct Joining {
    command: CommandId,
    room: RoomId,
    key: Option<RoomKey>,
    /// The member we fetch from, once connected.
    peer: Option<PublicKey>,
    /// The log so far (from the genesis on).
    replica: Option<Room>,
    /// Where the next page starts.
    from: u32,
    pages: usize,
    /// Dials again after the connection closed under a page request.
    redials: u32,
}

/// A join by room id whose room is not in the directory yet.
struct Lookup {
    command: CommandId,
    room: RoomId,
    /// After this the join fails with [`Error::NotListed`].
    deadline: u64,
    /// When connected peers were last asked for their directory.
    asked: u64,
}

/// A node's room logic. See the module docs.
pub struct Core {
    config: Config,
    me: PublicKey,
    rng: ChaCha8Rng,
    time: Time,
    directory: Directory,
    /// New listings per peer that passed them on (see `Core::announcement`).
    listing_limiter: RateLimiter<PublicKey>,
    /// Sync requests answered per peer.
    sync_limiter: RateLimiter<PublicKey>,
    /// Presence answers to newcomers, whoever asks ([`PRESENCE_ANSWER_BURST`], then
    /// [`PRESENCE_ANSWERS_PER_SECOND`]).
    presence_answers: RateLimiter<()>,
    /// Presence answers per asker ([`PRESENCE_ANSWERS_PER_PEER_PER_MINUTE`]): one peer cannot
    /// keep the shared bucket empty.
    presence_askers: RateLimiter<PublicKey>,
    /// Requests for our audio per peer ([`AUDIO_REQUEST_BURST`], then
    /// [`AUDIO_REQUESTS_PER_SECOND`]).
    request_limiter: RateLimiter<PublicKey>,
    room: Option<Membership>,
    connected: HashSet<PublicKey>,
    /// Our addresses (multiaddr bytes, best first).
    addrs: Vec<Vec<u8>>,
    joining: Option<Joining>,
    lookup: Option<Lookup>,
    /// Peers asked for their directory when they connected.
    directory_synced: usize,
    /// Peers blocked for flooding (unblocked after [`FLOOD_BLOCK_MS`]).
    blocked: HashSet<PublicKey>,
    /// We answer Kademlia queries (see [`Core::set_dht_server`]).
    dht_server: bool,
    /// Rooms this identity was banned from (their nodes refuse us; say so at once).
    banned_from: HashSet<RoomId>,
    /// Stage members we are not connected to: when to dial next, and the wait after that.
    stage_dials: HashMap<PublicKey, (u64, u64)>,
    /// The connection to the room's host was lost and not regained yet (for the notices).
    host_lost: bool,
    /// This node has an audio source.
    sending: bool,
    /// The audio policy last handed out.
    policy: Arc<AudioPolicy>,
    /// The audio targets last handed out.
    targets: Vec<PublicKey>,
    /// Peers asking for our audio, and for which room (at most [`MAX_AUDIO_REQUESTS`]).
    audio_requests: HashMap<PublicKey, RoomId>,
    /// The speakers we last asked for their audio.
    asking: Vec<PublicKey>,
    outputs: VecDeque<Output>,
    timers: BTreeMap<(u64, u64), Timer>,
    next_tick: u64,
    next_id: u64,
    requests: HashMap<u64, Request>,
    publications: HashMap<u64, Publication>,
}

impl Core {
    /// A core for `config`, started at `time`. Not in a room; a Kademlia server. Its first
    /// output subscribes to the directory.
    pub fn new(config: Config, time: Time) -> Core {
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::Subscribe {
            topic: DIRECTORY_TOPIC.into(),
            keep_peers: false,
        });
        Core {
            me: config.identity.public(),
            rng: ChaCha8Rng::from_seed(config.seed),
            config,
            time,
            directory: Directory::new(),
            listing_limiter: RateLimiter::new(
                NEW_LISTINGS_BURST,
                NEW_LISTINGS_PER_SECOND,
                MAX_RATE_KEYS,
            ),
            sync_limiter: RateLimiter::new(
                SYNC_REQUEST_BURST,
                SYNC_REQUESTS_PER_SECOND,
                MAX_RATE_KEYS,
            ),
            presence_answers: RateLimiter::new(
                PRESENCE_ANSWER_BURST,
                PRESENCE_ANSWERS_PER_SECOND,
                1,
            ),
            presence_askers: RateLimiter::new(
                1,
                PRESENCE_ANSWERS_PER_PEER_PER_MINUTE / 60.0,
                MAX_RATE_KEYS,
            ),
            request_limiter: RateLimiter::new(
                AUDIO_REQUEST_BURST,
                AUDIO_REQUESTS_PER_SECOND,
                MAX_RATE_KEYS,
            ),
            room: None,
            connected: HashSet::new(),
            addrs: Vec::new(),
            joining: None,
            lookup: None,
            directory_synced: 0,
            blocked: HashSet::new(),
            dht_server: true,
            banned_from: HashSet::new(),
            stage_dials: HashMap::new(),
            host_lost: false,
            sending: false,
            policy: Arc::new(AudioPolicy::default()),
            targets: Vec::new(),
            audio_requests: HashMap::new(),
            asking: Vec::new(),
            outputs,
            timers: BTreeMap::new(),
            next_tick: time.mono_ms + TICK_MS,
            next_id: 1,
            requests: HashMap::new(),
            publications: HashMap::new(),
        }
    }

    /// This node's key.
    pub fn key(&self) -> PublicKey {
        self.me
    }

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call back with [`Input::Timeout`] (monotonic ms) at the latest.
    pub fn poll_timeout(&self) -> u64 {
        match self.timers.keys().next() {
            Some(&(at, _)) => at.min(self.next_tick),
            None => self.next_tick,
        }
    }

    /// Decodes and checks a gossip message received on `topic` at `unix_ms`.
    pub fn decode(&self, topic: &str, data: &[u8], unix_ms: u64) -> Gossip {
        if topic == DIRECTORY_TOPIC {
            return Gossip::Announcement(Box::new(directory::verify_announcement(data, unix_ms)));
        }
        let Some(m) = self.room.as_ref().filter(|m| m.topic == topic) else {
            return Gossip::NotOurs;
        };
        // A private room's messages open only with its key: anything else on its topic is
        // forged or corrupt.
        let Some(data) = m.open(Purpose::Gossip, data) else {
            return Gossip::Malformed;
        };
        match RoomMessage::decode(&data) {
            Ok(RoomMessage::Event(wire)) => Gossip::Event(wire),
            Ok(RoomMessage::Ephemeral(wire)) => match signed::verify::<Ephemeral>(&wire) {
                Ok(msg) => Gossip::Ephemeral(msg),
                Err(_) => Gossip::Malformed,
            },
            Ok(RoomMessage::Rekey(wire)) => match signed::verify::<Rekey>(&wire) {
                Ok(msg) => Gossip::Rekey(msg),
                Err(_) => Gossip::Malformed,
            },
            Err(_) => Gossip::Malformed,
        }
    }

    /// Handles one input that happened at `time`.
    pub fn handle(&mut self, time: Time, input: Input) {
        self.time = time;
        match input {
            Input::Command(id, command) => self.command(id, command),
            Input::Gossip {
                token,
                source,
                message,
            } => {
                let verdict = self.gossip(source, message);
                self.push(Output::Verdict { token, verdict });
            }
            Input::SyncRequest {
                token,
                from,
                request,
            } => {
                let request = SyncRequest::decode(&request);
                let response = self.serve_sync(from, &request);
                self.push(Output::SyncReply {
                    token,
                    response: response.encode(),
                });
                if let (Some(peer), Ok(request)) = (from, &request) {
                    self.pull_back(peer, request);
                }
            }
            Input::SyncAnswer { id, result } => self.sync_answer(id, result),
            Input::Published { id, delivered } => self.published(id, delivered),
            Input::JoinDialed(result) => self.join_dialed(result),
            Input::Connected(peer) => self.connected(peer),
            Input::Disconnected(peer) => {
                self.connected.remove(&peer);
                if self.is_room_host(&peer) && self.wants_stage_link(&peer) && !self.host_lost {
                    self.host_lost = true;
                    self.notice("lost the connection to the host: reconnecting".into());
                }
            }
            Input::ConnectionDropped(peer) => self.connection_dropped(peer),
            Input::HolePunched(peer) => self.hole_punched(peer),
            Input::Subscribed { topic } => self.subscribed(&topic),
            Input::AudioStreamOpened { from, header } => self.audio_stream_opened(from, &header),
            Input::AudioStreamClosed(from) => {
                if let Some(m) = self.room.as_mut() {
                    m.streams_from.remove(&from);
                }
            }
            Input::AudioRequested { from, request } => self.audio_requested(from, &request),
            Input::AudioRequestEnded(from) => {
                if self.audio_requests.remove(&from).is_some() {
                    self.refresh_links();
                }
            }
            Input::Addresses(addrs) => {
                if addrs != self.addrs {
                    self.addrs = addrs;
                    if self.room.is_some() {
                        let ticket = self.ticket().map(|t| t.to_string()).unwrap_or_default();
                        self.emit(NodeEvent::Ticket { ticket });
                    }
                }
            }
            Input::Sending(on) => {
                self.sending = on;
                self.refresh_links();
            }
            Input::Flooding(peer) => self.punish_flooder(peer, "audio frames"),
            Input::Timeout => self.timeout(),
        }
    }

    // ----- queries ----------------------------------------------------------------------

    /// The UI's view of the room, if in one.
    pub fn view(&self) -> Option<RoomView> {
        self.room
            .as_ref()
            .map(|m| m.view(&self.me, &self.config.name))
    }

    /// The room's ticket with our current addresses, if in a room.
    pub fn ticket(&self) -> Option<Ticket> {
        let m = self.room.as_ref()?;
        Some(Ticket {
            room: m.room.id(),
            host: m.room.state().host,
            addresses: self
                .addrs
                .iter()
                .take(ruang_proto::ticket::MAX_TICKET_ADDRESSES)
                .cloned()
                .collect(),
            room_key: m.key.as_ref().map(|k| k.to_bytes()),
        })
    }

    /// The rooms in the directory at `unix_ms`, the busiest first.
    pub fn listings(&mut self, unix_ms: u64) -> Vec<Listing> {
        self.directory.expire(unix_ms);
        self.directory.list().into_iter().map(listing).collect()
    }

    /// The room's verified state, if in a room.
    pub fn state(&self) -> Option<&State> {
        self.room.as_ref().map(|m| m.room.state())
    }

    /// The room's membership, if in a room (for simulators and tests).
    pub fn membership(&self) -> Option<&Membership> {
        self.room.as_ref()
    }

    /// Whether a join is under way.
    pub fn is_joining(&self) -> bool {
        self.joining.is_some() || self.lookup.is_some()
    }

    /// `key`'s display name: ours, the room's name for them, or their fingerprint.
    pub fn name_of(&self, key: &PublicKey) -> String {
        match &self.room {
            _ if *key == self.me => self.config.name.clone(),
            Some(m) => m.name_of(key),
            None => key.fingerprint().to_string(),
        }
    }

    // ----- plumbing ---------------------------------------------------------------------

    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    fn emit(&mut self, event: NodeEvent) {
        self.push(Output::Event(event));
    }

    fn notice(&mut self, message: String) {
        self.emit(NodeEvent::Notice { message });
    }

    fn reply(&mut self, id: CommandId, result: Result<Answer, Error>) {
        self.push(Output::Reply { id, result });
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn schedule(&mut self, at: u64, timer: Timer) {
        let seq = self.next_id();
        self.timers.insert((at, seq), timer);
    }

    fn publish(&mut self, topic: String, data: Vec<u8>, what: Option<Publication>) {
        let id = what.map(|p| {
            let id = self.next_id();
            self.publications.insert(id, p);
            id
        });
        self.push(Output::Publish { id, topic, data });
    }

    fn sync_request(&mut self, to: PublicKey, request: SyncRequest, what: Request) {
        let id = self.next_id();
        self.requests.insert(id, what);
        self.push(Output::SyncRequest {
            id,
            to,
            request: request.encode(),
        });
    }

    /// Kademlia server on stage and outside rooms, client in a room's audience.
    ///
    /// In a room every member learns every other (presence), and a DHT server is in the
    /// routing table of each peer it talks to: one lookup answered by the host then dials the
    /// whole room, and libp2p keeps those connections (rust-libp2p#5190). The audience are
    /// many, come and go, and are often behind NAT: they ask, they do not answer.
    fn set_dht_server(&mut self, server: bool) {
        if self.dht_server != server {
            self.dht_server = server;
            self.push(Output::SetDhtServer(server));
        }
    }

    // ----- commands ---------------------------------------------------------------------

    fn command(&mut self, id: CommandId, command: Command) {
        match command {
            Command::Host(options) => {
                let result = self.host(options).map(Answer::Joined);
                self.reply(id, result);
            }
            Command::Join(target) => self.join(id, target),
            Command::Leave => {
                let result = if self.room.is_some() {
                    self.leave_room(LeaveReason::Left);
                    Ok(Answer::Done)
                } else if self.cancel_join() {
                    Ok(Answer::Done)
                } else {
                    Err(Error::NotInRoom)
                };
                self.reply(id, result);
            }
            // These are answered once the network layer says whether anyone got them.
            Command::Act(body) => {
                if let Err(e) = self.act(body, Some(id)) {
                    self.reply(id, Err(e));
                }
            }
            Command::Chat(text) => {
                if let Err(e) = self.say(EphemeralBody::Chat { text }, id) {
                    self.reply(id, Err(e));
                }
            }
            Command::React(reaction) => {
                if let Err(e) = self.say(EphemeralBody::Reaction { reaction }, id) {
                    self.reply(id, Err(e));
                }
            }
            Command::Shutdown => {
                self.leave_room(LeaveReason::Shutdown);
                self.reply(id, Ok(Answer::Done));
                self.push(Output::Stopped);
            }
        }
    }

    fn host(&mut self, options: HostOptions) -> Result<Joined, Error> {
        if self.room.is_some() || self.is_joining() {
            return Err(Error::AlreadyInRoom);
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
        let (room, _) = Room::create(
            &self.config.identity,
            genesis,
            self.time.unix_ms,
            &mut self.rng,
        )
        .map_err(|e| Error::Invalid(e.to_string()))?;
        info!(room = %room.id(), "hosting a room");
        let key = options.private.then(|| RoomKey::generate(&mut self.rng));
        Ok(self.enter(room, key))
    }

    fn join(&mut self, id: CommandId, target: JoinTarget) {
        if self.room.is_some() || self.is_joining() {
            self.reply(id, Err(Error::AlreadyInRoom));
            return;
        }
        match target {
            JoinTarget::Ticket(t) => {
                if self.banned_from.contains(&t.room) {
                    self.reply(id, Err(Error::Banned));
                    return;
                }
                let key = t.room_key.map(RoomKey::from_bytes);
                self.fetch(id, t.room, t.host, t.addresses, key);
            }
            JoinTarget::Room(room) => {
                if self.banned_from.contains(&room) {
                    self.reply(id, Err(Error::Banned));
                    return;
                }
                let now = self.time.mono_ms;
                self.lookup = Some(Lookup {
                    command: id,
                    room,
                    deadline: now + JOIN_LOOKUP_MS,
                    asked: now,
                });
                if !self.resolve_lookup() {
                    // Not here yet: a fresh node is still finding peers. Ask those we have.
                    self.ask_directories();
                }
            }
        }
    }

    /// Starts the join of a waiting [`Lookup`] if its room is in the directory now; whether
    /// it did (or there was no lookup).
    fn resolve_lookup(&mut self) -> bool {
        let Some(lookup) = &self.lookup else {
            return true;
        };
        self.directory.expire(self.time.unix_ms);
        let Some(ann) = self.directory.get(&lookup.room) else {
            return false;
        };
        let (command, room, host, addrs) = (
            lookup.command,
            lookup.room,
            ann.author,
            ann.addresses.clone(),
        );
        self.lookup = None;
        self.fetch(command, room, host, addrs, None);
        true
    }

    /// Fails a waiting [`Lookup`] whose time is up; asks for directories again meanwhile.
    fn check_lookup(&mut self) {
        let now = self.time.mono_ms;
        let Some(lookup) = &mut self.lookup else {
            return;
        };
        if now >= lookup.deadline {
            let (command, room) = (lookup.command, lookup.room);
            self.lookup = None;
            self.reply(command, Err(Error::NotListed(room.to_hex())));
        } else if now >= lookup.asked + JOIN_LOOKUP_RETRY_MS {
            lookup.asked = now;
            self.ask_directories();
        }
    }

    /// Asks every connected peer (up to [`DIRECTORY_SYNC_PEERS`]) for its directory.
    fn ask_directories(&mut self) {
        let peers: Vec<PublicKey> = self
            .connected
            .iter()
            .take(DIRECTORY_SYNC_PEERS)
            .copied()
            .collect();
        for peer in peers {
            self.ask_directory(peer, 1);
        }
    }

    fn ask_directory(&mut self, peer: PublicKey, attempt: u32) {
        self.sync_request(
            peer,
            SyncRequest::Directory,
            Request::Directory { peer, attempt },
        );
    }

    /// Connects to the room and fetches its log ([`Output::JoinDial`], then sync pages).
    fn fetch(
        &mut self,
        command: CommandId,
        room: RoomId,
        host: PublicKey,
        addresses: Vec<Vec<u8>>,
        key: Option<RoomKey>,
    ) {
        if addresses.is_empty() {
            self.reply(
                command,
                Err(Error::Unreachable("the ticket has no addresses".into())),
            );
            return;
        }
        // Joiners start in the audience: a DHT client before the first dial, so the room's
        // members are not all dialled by our lookups (see `set_dht_server`).
        self.set_dht_server(false);
        self.joining = Some(Joining {
            command,
            room,
            key,
            peer: None,
            replica: None,
            from: 0,
            pages: 0,
            redials: 0,
        });
        self.push(Output::JoinDial { host, addresses });
    }

    fn join_dialed(&mut self, result: Result<PublicKey, String>) {
        let Some(joining) = self.joining.as_mut() else {
            return;
        };
        match result {
            Ok(peer) => {
                joining.peer = Some(peer);
                self.request_join_page();
            }
            Err(why) => self.fail_join(Error::Unreachable(why)),
        }
    }

    fn request_join_page(&mut self) {
        let Some(j) = self.joining.as_ref() else {
            return;
        };
        let Some(peer) = j.peer else {
            return;
        };
        let heads = j
            .replica
            .as_ref()
            .map(|r| r.heads().into_iter().take(MAX_SYNC_HEADS).collect())
            .unwrap_or_default();
        let request = SyncRequest::Room {
            room: j.room,
            heads,
            from: j.from,
        };
        self.sync_request(peer, request, Request::JoinPage);
    }

    fn fail_join(&mut self, error: Error) {
        if let Some(j) = self.joining.take() {
            self.set_dht_server(true);
            self.reply(j.command, Err(error));
        }
    }

    fn join_page(&mut self, result: Result<Vec<u8>, SyncFailure>) {
        let Some(j) = self.joining.as_mut() else {
            return;
        };
        let peer = j
            .peer
            .map(|p| p.fingerprint().to_string())
            .unwrap_or_default();
        let bad = |reason: String| Error::BadLog {
            peer: peer.clone(),
            reason,
        };
        let bytes = match result {
            Ok(bytes) => bytes,
            // The connection closed under the request (a duplicate one; or the peer dropped
            // us to start afresh, as it does when an older connection of ours is still up
            // from a process with our identity that crashed): connect again and ask again.
            // Not at once: a member that drops a restarted peer's connections may drop the
            // one opened right after too (three attempts went in 3 ms).
            Err(SyncFailure::Disconnected) if j.redials + 1 < JOIN_CONNECTIONS => {
                j.redials += 1;
                let wait = JOIN_REDIAL_MS << (j.redials - 1);
                if let Some(peer) = j.peer {
                    let at = self.time.mono_ms + wait;
                    self.schedule(at, Timer::JoinRedial(peer));
                }
                return;
            }
            Err(SyncFailure::Disconnected) => {
                return self.fail_join(Error::Unreachable("the connection closed".into()));
            }
            Err(SyncFailure::Other(why)) => return self.fail_join(Error::Unreachable(why)),
        };
        let (events, next) = match SyncResponse::decode(&bytes) {
            Ok(SyncResponse::Room { events, next }) => (events, next),
            Ok(SyncResponse::Refused(SyncRefusal::Banned)) => {
                return self.fail_join(Error::Banned);
            }
            Ok(SyncResponse::Refused(why)) => {
                return self.fail_join(Error::Unreachable(why.to_string()));
            }
            Ok(SyncResponse::Directory { .. } | SyncResponse::Presence { .. }) => {
                return self.fail_join(bad("answered with something else than events".into()));
            }
            Err(e) => return self.fail_join(bad(e.to_string())),
        };
        let room_id = j.room;
        let replica = &mut j.replica;
        let applied = apply_page(j.key.as_ref(), room_id, &events, |wire| match replica {
            None => {
                *replica = Some(Room::from_genesis_wire(room_id, wire).map_err(|e| e.to_string())?);
                Ok(1)
            }
            Some(r) => Ok(match r.insert_wire(wire) {
                Insert::New { released } => 1 + released,
                _ => 0,
            }),
        });
        match applied {
            Ok(page) if page.sealed_wrong == 0 => {}
            Ok(_) => {
                return self.fail_join(bad(
                    "cannot open the room's events with the ticket's key (a private room gets \
                     a new key when someone is removed: ask for a new ticket)"
                        .into(),
                ));
            }
            Err(e) => return self.fail_join(bad(e)),
        }
        // Go on by position whether or not the page was new (see `room_page`).
        j.pages += 1;
        match next {
            Some(n) if n > j.from && j.pages < MAX_SYNC_PAGES => {
                j.from = n;
                self.request_join_page();
            }
            _ => self.finish_join(),
        }
    }

    fn finish_join(&mut self) {
        let Some(j) = self.joining.take() else {
            return;
        };
        let peer = j
            .peer
            .map(|p| p.fingerprint().to_string())
            .unwrap_or_default();
        let result = match j.replica {
            None => Err(Error::BadLog {
                peer,
                reason: "no genesis".into(),
            }),
            Some(room) if room.state().banned.contains(&self.me) => Err(Error::Banned),
            Some(room) if room.state().ended => Err(Error::Ended),
            Some(room) => Ok(self.enter(room, j.key)),
        };
        if result.is_err() {
            self.set_dht_server(true);
        }
        // The member we fetched the log from hands us the presences it holds: our table is
        // full at once, not after a heartbeat interval of each member (minutes in a large
        // room, where a heartbeat that misses us is missed for another interval).
        if let (Ok(joined), Some(peer)) = (&result, j.peer) {
            let room = joined.room;
            self.sync_request(
                peer,
                SyncRequest::Presence { room },
                Request::Presences { peer, room },
            );
        }
        self.reply(j.command, result.map(Answer::Joined));
    }

    /// Makes `room` the node's room: subscribe, announce presence, set up audio.
    fn enter(&mut self, room: Room, key: Option<RoomKey>) -> Joined {
        let now = self.time.mono_ms;
        let m = Membership::new(
            room,
            key,
            now,
            self.rng.random(),
            self.config.audience_sample,
        );
        self.push(Output::Subscribe {
            topic: m.topic.clone(),
            keep_peers: true,
        });
        let id = m.room.id();
        self.room = Some(m);
        if let Some(m) = self.room.as_mut() {
            // Entering applies the whole state; what it changed on the way here is in it.
            m.room.take_changes();
        }
        self.apply_state_effects(None);
        if let Some(m) = self.room.as_mut() {
            m.last_presence = now;
        }
        self.send_presence(false);
        self.maybe_announce(true);
        let ticket = self.ticket().expect("in the room");
        self.emit(NodeEvent::Joined {
            room_id: id,
            ticket: ticket.to_string(),
        });
        Joined { room: id, ticket }
    }

    fn leave_room(&mut self, reason: LeaveReason) {
        let Some(m) = self.room.as_ref() else {
            return;
        };
        if !m.room.state().ended && self.send_presence(true).is_some() {
            self.farewell_again();
        }
        let Some(m) = self.room.take() else {
            return;
        };
        self.push(Output::Unsubscribe(m.topic.clone()));
        for peer in m.streams_from {
            self.push(Output::CloseAudioFrom(peer));
        }
        self.host_lost = false;
        self.stage_dials.clear();
        self.set_dht_server(true);
        self.set_policy(AudioPolicy::default());
        self.refresh_links();
        self.emit(NodeEvent::Left { reason });
    }

    /// Schedules our leaving presence to go out again at each of [`FAREWELL_AGAIN_MS`], each
    /// copy signed for the moment it goes out. A member that subscribed to the room a moment
    /// after the first copy flooded it missed it, and could still be handed an older heartbeat
    /// of ours through gossipsub's IHAVE: it listed us for three heartbeat intervals (12
    /// minutes at 2,000 members; seen in the `scale` scenario). The same bytes again would go
    /// nowhere (gossipsub does not publish what it has seen); members that have our departure
    /// ignore the later copies and do not pass them on.
    fn farewell_again(&mut self) {
        let Some(topic) = self.room.as_ref().map(|m| m.topic.clone()) else {
            return;
        };
        let (mono, unix) = (self.time.mono_ms, self.time.unix_ms);
        let body = self.presence_body(true);
        for after in FAREWELL_AGAIN_MS {
            match self.ephemeral_payload(body.clone(), unix + after) {
                Ok((_, data)) => {
                    let topic = topic.clone();
                    self.schedule(mono + after, Timer::Farewell { topic, data });
                }
                Err(e) => debug!(error = %e, "a leaving presence not repeated"),
            }
        }
    }

    /// Authors `body` and publishes it; with `reply`, answers that command once it is out.
    fn act(&mut self, body: EventBody, reply: Option<CommandId>) -> Result<(), Error> {
        let unix = self.time.unix_ms;
        let Some(m) = self.room.as_mut() else {
            return Err(Error::NotInRoom);
        };
        let event = m
            .room
            .author(&self.config.identity, body, unix)
            .map_err(|e| match e {
                ruang_proto::room::AuthorError::Refused(r) => Error::Refused(r),
                other => Error::Invalid(other.to_string()),
            })?;
        let payload = m.seal(
            Purpose::Gossip,
            RoomMessage::Event(event.wire().to_vec()).encode(),
            &mut self.rng,
        );
        let topic = m.topic.clone();
        self.publish(
            topic,
            payload,
            reply.map(|reply| Publication::Act { reply }),
        );
        self.apply_changes();
        Ok(())
    }

    /// Sends a chat line or reaction for command `reply`; one that finds nobody on the room's
    /// topic is held.
    fn say(&mut self, body: EphemeralBody, reply: CommandId) -> Result<(), Error> {
        let Some(m) = self.room.as_ref() else {
            return Err(Error::NotInRoom);
        };
        if m.room.state().banned.contains(&self.me) {
            return Err(Error::Banned);
        }
        if !m.held.is_empty() {
            // What is held goes first.
            self.send_held();
        }
        let at = self.time.mono_ms;
        let what = Publication::Said {
            at,
            body: body.clone(),
            reply: Some(reply),
        };
        let (signed, _) = self.publish_ephemeral(body, Some(what))?;
        // Show our own chat and reactions too.
        self.ephemeral_effects(&signed);
        Ok(())
    }

    /// Signs `body` as said now and publishes it on the room's topic; returns the message and
    /// the bytes published.
    fn publish_ephemeral(
        &mut self,
        body: EphemeralBody,
        what: Option<Publication>,
    ) -> Result<(Verified<Ephemeral>, Vec<u8>), Error> {
        let (signed, payload) = self.ephemeral_payload(body, self.time.unix_ms)?;
        let topic = self.room.as_ref().ok_or(Error::NotInRoom)?.topic.clone();
        self.publish(topic, payload.clone(), what);
        Ok((signed, payload))
    }

    /// `body` signed by us as sent at `sent_at` (unix ms), as it goes on our room's topic.
    fn ephemeral_payload(
        &mut self,
        body: EphemeralBody,
        sent_at: u64,
    ) -> Result<(Verified<Ephemeral>, Vec<u8>), Error> {
        let Some(m) = self.room.as_ref() else {
            return Err(Error::NotInRoom);
        };
        let msg = Ephemeral {
            room: m.room.id(),
            author: self.me,
            sent_at,
            body,
        };
        let signed =
            signed::sign(&self.config.identity, msg).map_err(|e| Error::Invalid(e.to_string()))?;
        let payload = m.seal(
            Purpose::Gossip,
            RoomMessage::Ephemeral(signed.wire().to_vec()).encode(),
            &mut self.rng,
        );
        Ok((signed, payload))
    }

    /// Sends the held chat lines and reactions, as said now; what finds nobody is held again.
    fn send_held(&mut self) {
        let Some(held) = self.room.as_mut().map(|m| m.held.take()) else {
            return;
        };
        for (at, body) in held {
            let what = Publication::Said {
                at,
                body: body.clone(),
                reply: None,
            };
            if let Err(e) = self.publish_ephemeral(body, Some(what)) {
                debug!(error = %e, "a held message could not be sent");
            }
        }
    }

    fn published(&mut self, id: u64, delivered: bool) {
        let Some(what) = self.publications.remove(&id) else {
            return;
        };
        let delivery = if delivered {
            Delivery::Reached
        } else {
            Delivery::NobodyReached
        };
        match &what {
            Publication::Act { reply }
            | Publication::Said {
                reply: Some(reply), ..
            } => {
                self.reply(*reply, Ok(Answer::Sent(delivery)));
            }
            Publication::Presence { .. }
            | Publication::Said { reply: None, .. }
            | Publication::Announcement => {}
        }
        let Some(m) = self.room.as_mut() else {
            return;
        };
        match what {
            Publication::Presence { leaving } => {
                debug!(delivered, leaving, "presence sent");
                m.presence_undelivered = !delivered && !leaving;
                if m.presence_undelivered {
                    // No peer is subscribed to the room's topic yet: a joiner's first
                    // heartbeat races the host's subscription. Again when a peer subscribes
                    // (`Input::Subscribed`), else at the next tick, not an interval later: the
                    // host learns of us (and starts streaming to us) only then.
                    m.presence_due = true;
                }
            }
            Publication::Said { at, body, .. } if !delivered => {
                debug!("no peer on the room's topic yet: chat or reaction held");
                if m.held.hold_again(at, body) > 0 {
                    self.emit(NodeEvent::Error {
                        message: "nobody in the room is reachable: an older chat message \
                                  was not delivered"
                            .into(),
                    });
                }
            }
            Publication::Announcement => {
                // Nobody on the directory's topic yet: a host's first announcement races its
                // first connection. Again when a peer subscribes, or within
                // `ANNOUNCE_RETRY_MS`, not an announce interval (20 s) later.
                m.announcement_undelivered = !delivered;
            }
            Publication::Said { .. } | Publication::Act { .. } => {}
        }
    }

    // ----- gossip -----------------------------------------------------------------------

    /// A verified announcement passed on by `source`. Rooms new to our directory count
    /// against the peer that passed them on ([`NEW_LISTINGS_BURST`], then
    /// [`NEW_LISTINGS_PER_SECOND`]): a script with a few hundred keys cannot fill every
    /// directory through one connection. Refreshes of listed rooms do not count (an honest
    /// peer passes on every room's refresh).
    fn announcement(&mut self, source: Option<PublicKey>, ann: Verified<Announcement>) -> Verdict {
        let (mono, unix) = (self.time.mono_ms, self.time.unix_ms);
        if self.directory.get(&ann.room).is_none()
            && let Some(peer) = source
            && let Rate::Limited { strikes } = self.listing_limiter.check(&peer, mono)
        {
            if strikes >= FLOOD_STRIKES {
                self.punish_flooder(peer, "room announcements");
            }
            return Verdict::Ignore;
        }
        match self.directory.insert_verified(ann, unix) {
            Ok(_) => {
                self.resolve_lookup();
                Verdict::Accept
            }
            Err(_) => Verdict::Ignore,
        }
    }

    fn gossip(&mut self, source: Option<PublicKey>, message: Gossip) -> Verdict {
        match message {
            Gossip::Announcement(checked) => match *checked {
                Ok(ann) => self.announcement(source, ann),
                Err(
                    AnnounceError::Invalid(_) | AnnounceError::BadGenesis | AnnounceError::NotHost,
                ) => Verdict::Reject,
                Err(_) => Verdict::Ignore,
            },
            Gossip::NotOurs => Verdict::Ignore,
            Gossip::Malformed => Verdict::Reject,
            Gossip::Event(wire) => self.room_event(source, &wire),
            Gossip::Ephemeral(msg) => self.ephemeral_gossip(source, msg),
            Gossip::Rekey(msg) => self.rekey_gossip(msg),
        }
    }

    // ----- private rooms: rekeying ------------------------------------------------------

    /// As the host of a private room from which someone was just banned or kicked: a new key,
    /// wrapped for every member here but them (at most `MAX_WRAPS`, the stage first), sent on
    /// the old topic (sealed with the old key, three times), and this node moves to the new
    /// topic. The one removed keeps the old key, which opens nothing sent from now on.
    fn rekey(&mut self) {
        let unix = self.time.unix_ms;
        let Some(m) = self.room.as_ref() else {
            return;
        };
        if m.key.is_none() {
            return;
        }
        let state = m.room.state();
        let mut recipients: Vec<PublicKey> = m
            .presence
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != self.me && state.role(k) != Role::Banned && !state.is_kicked(k, unix))
            .collect();
        recipients.sort_by_key(|k| (!state.on_stage(k), k.0));
        recipients.truncate(ruang_proto::rekey::MAX_WRAPS);
        let (room, epoch) = (m.room.id(), m.epoch + 1);
        let key = RoomKey::generate(&mut self.rng);
        let wraps = recipients
            .iter()
            .filter_map(|to| ruang_proto::rekey::wrap(&key, &room, epoch, to, &mut self.rng))
            .collect();
        let rekey = Rekey {
            room,
            author: self.me,
            epoch,
            issued_at: unix,
            wraps,
        };
        let signed = match signed::sign(&self.config.identity, rekey) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "could not sign a new room key");
                return;
            }
        };
        // Each copy sealed anew: gossipsub does not publish the same bytes twice, and members
        // that have the new key ignore the copies (they do not pass them on).
        let message = RoomMessage::Rekey(signed.wire().to_vec()).encode();
        let copies: Vec<Vec<u8>> = (0..=FAREWELL_AGAIN_MS.len())
            .map(|_| m.seal(Purpose::Gossip, message.clone(), &mut self.rng))
            .collect();
        let old_topic = m.topic.clone();
        info!(
            epoch,
            members = recipients.len(),
            "private room: new key after a removal"
        );
        let now = self.time.mono_ms;
        let mut copies = copies.into_iter();
        if let Some(first) = copies.next() {
            self.publish(old_topic.clone(), first, None);
        }
        for (after, data) in FAREWELL_AGAIN_MS.into_iter().zip(copies) {
            let topic = old_topic.clone();
            self.schedule(now + after, Timer::RekeyAgain { topic, data });
        }
        self.key_pending(key, epoch);
    }

    /// Moves to `key` of `epoch` after [`REKEY_SWITCH_MS`]: meanwhile this node stays on the
    /// old topic, so the rekey message it passes on (or repeats) still reaches the members
    /// that did not have it yet.
    fn key_pending(&mut self, key: RoomKey, epoch: u32) {
        let Some(m) = self.room.as_mut() else {
            return;
        };
        if m.pending_key.as_ref().is_some_and(|(e, _)| *e >= epoch) {
            return;
        }
        m.pending_key = Some((epoch, key));
        let at = self.time.mono_ms + REKEY_SWITCH_MS;
        self.schedule(at, Timer::SwitchKey);
    }

    /// Moves this node to the room's pending key: its topic, sealing, audio, ticket.
    fn switch_key(&mut self) {
        let Some(m) = self.room.as_mut() else {
            return;
        };
        let Some((epoch, key)) = m.pending_key.take() else {
            return;
        };
        if epoch <= m.epoch {
            return;
        }
        let old_topic = m.topic.clone();
        m.topic = crate::room::topic(&m.room.id(), Some(&key));
        m.key = Some(key.clone());
        m.epoch = epoch;
        let topic = m.topic.clone();
        self.push(Output::Unsubscribe(old_topic));
        self.push(Output::Subscribe {
            topic,
            keep_peers: true,
        });
        let mut policy = (*self.policy).clone();
        policy.key = Some(key);
        self.set_policy(policy);
        if let Some(ticket) = self.ticket() {
            self.emit(NodeEvent::Ticket {
                ticket: ticket.to_string(),
            });
        }
        // Presence on the new topic at once: the stage streams to those it knows are here.
        if let Some(m) = self.room.as_mut() {
            m.presence_due = true;
        }
        self.notice(
            "the room has a new key (someone was removed): tickets from before no longer let \
             anyone in; press t for the new one"
                .into(),
        );
    }

    /// A new key of our private room, from its host.
    fn rekey_gossip(&mut self, msg: Verified<Rekey>) -> Verdict {
        let Some(m) = self.room.as_ref() else {
            return Verdict::Ignore;
        };
        if msg.room != m.room.id() || m.key.is_none() {
            return Verdict::Reject;
        }
        if msg.author != m.room.state().host {
            // Only the host rekeys (a moderator's ban is rekeyed by the host that sees it).
            return Verdict::Reject;
        }
        if msg.epoch <= m.epoch || m.pending_key.as_ref().is_some_and(|(e, _)| *e >= msg.epoch) {
            return Verdict::Ignore;
        }
        match msg.key_for(&self.config.identity) {
            Some(key) => self.key_pending(key, msg.epoch),
            None => {
                self.notice(
                    "the room changed its key and none was sent to you: ask for a new ticket"
                        .into(),
                );
            }
        }
        Verdict::Accept
    }

    fn room_event(&mut self, source: Option<PublicKey>, wire: &[u8]) -> Verdict {
        let mono = self.time.mono_ms;
        let Some(m) = self.room.as_mut() else {
            return Verdict::Ignore;
        };
        // Whoever was banned before this event: a banned author's events are not passed on.
        let banned_before = |changes: &Changes, state: &State, author: &PublicKey| {
            (state.banned.contains(author) && !changes.banned.contains(author))
                || changes.unbanned.contains(author)
        };
        match m.room.insert_wire(wire) {
            Insert::New { .. } => {
                // Kept (others may build on it), but a banned author's events are not passed
                // on: whatever they sign has no effect, and relaying it would let them spam
                // the room. Nor are an author's events beyond the log rate.
                let changes = m.room.take_changes();
                let author = Room::hash_of_wire(wire)
                    .and_then(|h| m.room.get(&h))
                    .map(|e| e.author);
                let banned_author =
                    author.is_some_and(|a| banned_before(&changes, m.room.state(), &a));
                let over_rate =
                    author.is_some_and(|a| !matches!(m.log_limiter.check(&a, mono), Rate::Allowed));
                self.apply_state_effects(Some(changes));
                if banned_author || over_rate {
                    Verdict::Ignore
                } else {
                    Verdict::Accept
                }
            }
            Insert::Known => Verdict::Ignore,
            Insert::Pending { .. } => {
                let Some(peer) = source else {
                    return Verdict::Ignore;
                };
                if let Rate::Limited { strikes } = m.orphan_limiter.check(&peer, mono) {
                    if let Some(hash) = Room::hash_of_wire(wire) {
                        m.room.forget_pending(&hash);
                    }
                    if strikes >= FLOOD_STRIKES {
                        self.punish_flooder(peer, "events with missing parents");
                    }
                    return Verdict::Ignore;
                }
                // One sync with a peer at a time: what it has comes in that one.
                let syncing = self
                    .requests
                    .values()
                    .any(|r| matches!(r, Request::RoomPage { peer: p, .. } if *p == peer));
                if !syncing {
                    self.request_sync(peer);
                }
                Verdict::Ignore
            }
            Insert::Rejected(reason) => {
                // Forged, tampered, malformed, or its author never had the standing for it:
                // every honest node rejects it too.
                debug!(?source, %reason, "rejected a room event");
                Verdict::Reject
            }
        }
    }

    fn ephemeral_gossip(&mut self, source: Option<PublicKey>, msg: Verified<Ephemeral>) -> Verdict {
        let (mono, unix) = (self.time.mono_ms, self.time.unix_ms);
        let Some(m) = self.room.as_mut() else {
            return Verdict::Ignore;
        };
        if msg.room != m.room.id() {
            return Verdict::Reject;
        }
        if msg.check_fresh(unix).is_err() || msg.author == self.me {
            return Verdict::Ignore;
        }
        if m.room.state().banned.contains(&msg.author) {
            return Verdict::Ignore;
        }
        // A copy of a presence we have (or an older one), or of a chat line or reaction we
        // took, changes nothing: it must not use up its author's rate either, or replays
        // would have the real messages refused (and, for chat, shown twice).
        let replayed = match &msg.body {
            EphemeralBody::Presence { .. } => m
                .presence
                .get(&msg.author)
                .is_some_and(|known| known.last_sent_at >= msg.sent_at),
            EphemeralBody::Chat { .. } | EphemeralBody::Reaction { .. } => {
                !m.said.insert(msg.author, msg.sent_at, &msg.body, unix)
            }
        };
        if replayed {
            return Verdict::Ignore;
        }
        // In a room larger than our sample, a listener outside it is neither kept nor passed
        // on (see `PresenceTable::sampled`): its presence reaches the peers it is connected to,
        // not the whole room.
        let on_stage = m.room.state().on_stage(&msg.author);
        if let EphemeralBody::Presence { .. } = msg.body
            && !on_stage
            && !m.presence.contains(&msg.author)
            && !m.presence.would_keep(&msg.author)
        {
            if let EphemeralBody::Presence { leaving: true, .. } = msg.body {
                // Remembered all the same, in case we were about to take it in.
                m.presence.insert(&msg, mono, Admission::Via(source));
            }
            return Verdict::Ignore;
        }
        // Someone new to the table, off the stage, counts against the peer that passed it on
        // (the stage is bounded by the room's state, and always admitted).
        let admission = if on_stage {
            Admission::Stage
        } else {
            Admission::Via(source)
        };
        if let EphemeralBody::Presence { leaving: false, .. } = msg.body
            && !on_stage
            && !m.presence.contains(&msg.author)
            && let Some(peer) = source
            && let Rate::Limited { strikes } = m.newcomer_limiter.check(&peer, mono)
        {
            if strikes >= FLOOD_STRIKES {
                self.punish_flooder(peer, "new members");
            }
            return Verdict::Ignore;
        }
        let limiter = match msg.body {
            EphemeralBody::Presence { .. } => &mut m.presence_limiter,
            _ => &mut m.chat_limiter,
        };
        if let Rate::Limited { strikes } = limiter.check(&msg.author, mono) {
            if strikes >= FLOOD_STRIKES && source == Some(msg.author) {
                self.punish_flooder(msg.author, "chat");
            }
            return Verdict::Ignore;
        }
        if let EphemeralBody::Presence { .. } = &msg.body {
            let change = self.take_presence(&msg, 0, admission);
            if change == PresenceChange::Unsampled {
                return Verdict::Ignore;
            }
            if matches!(change, PresenceChange::Joined | PresenceChange::Left) {
                debug!(author = %msg.author.fingerprint(), ?change, "presence");
                self.membership_changed();
            }
            if matches!(change, PresenceChange::Joined) {
                self.maybe_welcome(msg.author);
            }
            // A later copy of a departure we have changes nothing here, but is passed on: it
            // is for the members that entered the room after the first (see
            // `Core::farewell_again`).
        } else {
            self.ephemeral_effects(&msg);
        }
        Verdict::Accept
    }

    /// Takes a verified presence into the table, come by `admission`, received now and
    /// `age_ms` old then (0 for gossip): its author's name and addresses, and the presence as
    /// signed (for the next newcomer). The caller checked that it is fresh and may be kept.
    fn take_presence(
        &mut self,
        msg: &Verified<Ephemeral>,
        age_ms: u64,
        admission: Admission,
    ) -> PresenceChange {
        let now = self.time.mono_ms;
        let Some(m) = self.room.as_mut() else {
            return PresenceChange::Ignored;
        };
        let EphemeralBody::Presence {
            name,
            addresses,
            leaving,
            ..
        } = &msg.body
        else {
            return PresenceChange::Ignored;
        };
        let change = m.presence.insert_aged(msg, now, age_ms, admission);
        if change == PresenceChange::Unsampled {
            return change;
        }
        if !leaving && matches!(change, PresenceChange::Joined | PresenceChange::Refreshed) {
            m.keep_signed_presence(msg.author, msg.wire());
        }
        if !name.is_empty() {
            m.names.insert(msg.author, name.clone());
        }
        if m.known_addrs.get(&msg.author) != Some(addresses) {
            m.known_addrs.insert(msg.author, addresses.clone());
            if !addresses.is_empty() {
                self.push(Output::AddAddresses {
                    peer: msg.author,
                    addresses: addresses.clone(),
                });
            }
        }
        change
    }

    /// The presences `peer` handed us at our join ([`SyncRequest::Presence`]): each taken as
    /// if it had come by gossip when it was signed, while it is still live, and not passed on.
    /// A departure since is not among them; a peer handing us presences of members that left
    /// lists them for no longer than their TTL, within the sample, as it could by gossip.
    fn presences_answered(
        &mut self,
        peer: PublicKey,
        room: RoomId,
        result: Result<Vec<u8>, SyncFailure>,
    ) {
        if self.room.as_ref().is_none_or(|m| m.room.id() != room) {
            return;
        }
        let presences = match result.map(|bytes| SyncResponse::decode(&bytes)) {
            Ok(Ok(SyncResponse::Presence { presences })) => presences,
            other => {
                // Busy (it answers one newcomer a second) or gone: heartbeats fill our table.
                debug!(peer = %peer.fingerprint(), answer = ?other.map(|a| a.map(|_| ())), "no presences at our join");
                return;
            }
        };
        let mut arrived = 0;
        for sealed in &presences {
            let Some(wire) = self
                .room
                .as_ref()
                .and_then(|m| m.open(Purpose::Sync, sealed))
            else {
                continue;
            };
            let Ok(msg) = signed::verify::<Ephemeral>(&wire) else {
                continue;
            };
            if self.handed_presence(peer, &msg) == PresenceChange::Joined {
                arrived += 1;
            }
        }
        debug!(peer = %peer.fingerprint(), handed = presences.len(), arrived, "presences at our join");
        if arrived > 0 {
            self.membership_changed();
        }
    }

    /// One presence of [`Core::presences_answered`].
    fn handed_presence(&mut self, peer: PublicKey, msg: &Verified<Ephemeral>) -> PresenceChange {
        let unix = self.time.unix_ms;
        let Some(m) = self.room.as_ref() else {
            return PresenceChange::Ignored;
        };
        let EphemeralBody::Presence {
            ttl_ms,
            leaving: false,
            ..
        } = msg.body
        else {
            return PresenceChange::Ignored;
        };
        let state = m.room.state();
        if msg.room != m.room.id()
            || msg.author == self.me
            || state.banned.contains(&msg.author)
            || msg.sent_at > unix.saturating_add(ruang_proto::ephemeral::MAX_SKEW_MS)
        {
            return PresenceChange::Ignored;
        }
        let age = unix.saturating_sub(msg.sent_at);
        if age >= u64::from(ttl_ms) {
            return PresenceChange::Ignored;
        }
        let admission = if state.on_stage(&msg.author) {
            Admission::Stage
        } else if m.presence.contains(&msg.author) || m.presence.would_keep(&msg.author) {
            Admission::Via(Some(peer))
        } else {
            return PresenceChange::Unsampled;
        };
        self.take_presence(msg, age, admission)
    }

    fn ephemeral_effects(&mut self, msg: &Verified<Ephemeral>) {
        if self.room.is_none() {
            return;
        }
        let name = self.name_of(&msg.author);
        let from = msg.author;
        match &msg.body {
            EphemeralBody::Chat { text } => self.emit(NodeEvent::Chat {
                from,
                name,
                text: text.clone(),
            }),
            EphemeralBody::Reaction { reaction } => self.emit(NodeEvent::Reaction {
                from,
                name,
                reaction: reaction.clone(),
            }),
            EphemeralBody::Presence { .. } => {}
        }
    }

    fn punish_flooder(&mut self, peer: PublicKey, what: &str) {
        if !self.blocked.insert(peer) {
            return;
        }
        warn!(peer = %peer.fingerprint(), what, "peer floods; disconnecting it for a while");
        self.notice(format!(
            "peer {} was flooding {what}; disconnected for {} s",
            peer.fingerprint(),
            FLOOD_BLOCK_MS / 1_000
        ));
        self.push(Output::CloseAudioFrom(peer));
        self.push(Output::Block(peer));
        self.schedule(self.time.mono_ms + FLOOD_BLOCK_MS, Timer::Unblock(peer));
    }

    // ----- sync -------------------------------------------------------------------------

    fn serve_sync(
        &mut self,
        from: Option<PublicKey>,
        request: &Result<SyncRequest, crate::wire::WireError>,
    ) -> SyncResponse {
        if let Some(peer) = from
            && let Rate::Limited { .. } = self.sync_limiter.check(&peer, self.time.mono_ms)
        {
            return SyncResponse::Refused(SyncRefusal::Busy);
        }
        match request {
            Err(e) => {
                debug!(error = %e, "a malformed sync request");
                SyncResponse::Refused(SyncRefusal::BadRequest)
            }
            Ok(SyncRequest::Directory) => {
                self.directory.expire(self.time.unix_ms);
                let announcements = self
                    .directory
                    .list()
                    .into_iter()
                    .take(MAX_DIRECTORY_ANSWER)
                    .map(|a| a.wire().to_vec())
                    .collect();
                SyncResponse::Directory { announcements }
            }
            Ok(SyncRequest::Room {
                room,
                heads,
                from: position,
            }) => match self.room.as_ref() {
                Some(m) if m.room.id() == *room => {
                    if from.is_some_and(|k| m.room.state().banned.contains(&k)) {
                        SyncResponse::Refused(SyncRefusal::Banned)
                    } else {
                        let (page, next) =
                            m.room
                                .missing_from(heads, *position as usize, SYNC_PAGE_EVENTS);
                        let wires: Vec<Vec<u8>> =
                            page.into_iter().map(|e| e.wire().to_vec()).collect();
                        let events = wires
                            .into_iter()
                            .map(|w| m.seal(Purpose::Sync, w, &mut self.rng))
                            .collect();
                        let next = next.and_then(|n| u32::try_from(n).ok());
                        SyncResponse::Room { events, next }
                    }
                }
                _ => SyncResponse::Refused(SyncRefusal::NotInRoom),
            },
            Ok(SyncRequest::Presence { room }) => self.serve_presences(from, *room),
        }
    }

    /// The presences we hold in `room`, for `from`, a newcomer: ours (signed now), the
    /// stage's, then the audience's, each as its author signed it.
    fn serve_presences(&mut self, from: Option<PublicKey>, room: RoomId) -> SyncResponse {
        // A peer we cannot name (its key is not ed25519) gets none: the answers are bounded
        // per asker.
        let Some(asker) = from else {
            return SyncResponse::Refused(SyncRefusal::BadRequest);
        };
        match self.room.as_ref() {
            Some(m) if m.room.id() == room => {
                if m.room.state().banned.contains(&asker) {
                    return SyncResponse::Refused(SyncRefusal::Banned);
                }
            }
            _ => return SyncResponse::Refused(SyncRefusal::NotInRoom),
        }
        let mono = self.time.mono_ms;
        if matches!(
            self.presence_askers.check(&asker, mono),
            Rate::Limited { .. }
        ) || matches!(self.presence_answers.check(&(), mono), Rate::Limited { .. })
        {
            return SyncResponse::Refused(SyncRefusal::Busy);
        }
        let ours = self
            .ephemeral_payload(self.presence_body(false), self.time.unix_ms)
            .ok()
            .map(|(signed, _)| signed);
        let Some(m) = self.room.as_ref() else {
            return SyncResponse::Refused(SyncRefusal::NotInRoom);
        };
        let state = m.room.state();
        let mut held: Vec<(&PublicKey, &Vec<u8>)> = m
            .signed_presence
            .iter()
            .filter(|(k, _)| m.presence.contains(k) && **k != asker)
            .collect();
        // The stage, then the sample by rank (what the newcomer's table keeps first), should
        // the answer be cut.
        held.sort_by_cached_key(|(k, _)| (!state.on_stage(k), m.presence.sample_rank(k), k.0));
        let mut bytes = 0;
        let presences = ours
            .iter()
            .map(|v| v.wire())
            .chain(held.into_iter().map(|(_, w)| w.as_slice()))
            .take(MAX_PRESENCE_ANSWER)
            .take_while(|w| {
                bytes += w.len();
                bytes <= MAX_PRESENCE_ANSWER_BYTES
            })
            .map(|w| m.seal(Purpose::Sync, w.to_vec(), &mut self.rng))
            .collect();
        SyncResponse::Presence { presences }
    }

    /// A member asked us for our room's events naming heads we do not have: it holds events
    /// we lack, so we ask it back (unless we are asking it already). Each anti-entropy round
    /// is then push and pull, and an event held by few spreads twice as fast: a healed
    /// partition's 40 members sometimes needed longer than 30 s with pull alone (the
    /// `partition` scenario, about 1 run in 20).
    fn pull_back(&mut self, peer: PublicKey, request: &SyncRequest) {
        let SyncRequest::Room { room, heads, .. } = request else {
            return;
        };
        let Some(m) = self.room.as_ref().filter(|m| m.room.id() == *room) else {
            return;
        };
        let lacking = heads.iter().any(|h| !m.room.contains(h));
        let asking = self
            .requests
            .values()
            .any(|r| matches!(r, Request::RoomPage { peer: p, .. } if *p == peer));
        if lacking && !asking && !m.room.state().banned.contains(&peer) {
            self.request_sync(peer);
        }
    }

    /// Gives up a join or room lookup under way (its command is answered
    /// [`Error::Cancelled`]); false if there was none. Without this, leaving while joining
    /// was refused ("not in a room") and the join went on: the node entered the room it had
    /// just left (seen in the `scale` scenario at 2,000 members).
    fn cancel_join(&mut self) -> bool {
        if self.joining.is_some() {
            self.lookup = None;
            self.fail_join(Error::Cancelled);
            return true;
        }
        match self.lookup.take() {
            Some(l) => {
                self.reply(l.command, Err(Error::Cancelled));
                true
            }
            None => false,
        }
    }

    /// Asks `peer` for the room's events we lack.
    fn request_sync(&mut self, peer: PublicKey) {
        self.request_sync_from(peer, 0, 0);
    }

    /// Asks `peer` for the room's events we lack from position `from` of its log on; page
    /// `pages` of this sync.
    fn request_sync_from(&mut self, peer: PublicKey, from: u32, pages: usize) {
        let mono = self.time.mono_ms;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        m.last_sync = mono;
        let request = SyncRequest::Room {
            room: m.room.id(),
            heads: m.room.heads().into_iter().take(MAX_SYNC_HEADS).collect(),
            from,
        };
        self.sync_request(peer, request, Request::RoomPage { peer, from, pages });
    }

    fn sync_answer(&mut self, id: u64, result: Result<Vec<u8>, SyncFailure>) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        match request {
            Request::JoinPage => self.join_page(result),
            Request::RoomPage { peer, from, pages } => self.room_page(peer, from, pages, result),
            Request::Presences { peer, room } => self.presences_answered(peer, room, result),
            Request::Directory { peer, attempt } => match result {
                Ok(bytes) => {
                    if let Ok(SyncResponse::Directory { announcements }) =
                        SyncResponse::decode(&bytes)
                    {
                        let unix = self.time.unix_ms;
                        for wire in announcements.iter().take(MAX_DIRECTORY_ANSWER) {
                            let _ = self.directory.insert_answered(wire, unix, peer);
                        }
                        self.resolve_lookup();
                    }
                }
                Err(e) => {
                    debug!(peer = %peer.fingerprint(), attempt, error = ?e, "directory request failed");
                    if attempt < DIRECTORY_SYNC_ATTEMPTS {
                        let wait = DIRECTORY_RETRY_MS << (attempt - 1);
                        let at = self.time.mono_ms + wait;
                        self.schedule(
                            at,
                            Timer::DirectoryRetry {
                                peer,
                                attempt: attempt + 1,
                            },
                        );
                    }
                }
            },
        }
    }

    fn room_page(
        &mut self,
        peer: PublicKey,
        from: u32,
        pages: usize,
        result: Result<Vec<u8>, SyncFailure>,
    ) {
        let (events, next) = match result.map(|b| SyncResponse::decode(&b)) {
            Ok(Ok(SyncResponse::Room { events, next })) => (events, next),
            Ok(_) => {
                debug!(peer = %peer.fingerprint(), "unexpected sync answer");
                return;
            }
            Err(e) => {
                debug!(peer = %peer.fingerprint(), error = ?e, "sync request failed");
                return;
            }
        };
        let Some(m) = self.room.as_mut() else {
            return;
        };
        let (room_id, key) = (m.room.id(), m.key.clone());
        let log = &mut m.room;
        let applied = apply_page(key.as_ref(), room_id, &events, |wire| {
            Ok(match log.insert_wire(wire) {
                Insert::New { released } => 1 + released,
                _ => 0,
            })
        });
        if let Ok(page) = applied
            && page.added > 0
        {
            debug!(added = page.added, peer = %peer.fingerprint(), "sync added events");
            self.apply_changes();
        }
        // Go on by position whether or not this page was new to us: with more heads than a
        // request names, a page can repeat what we have and the rest still be missing.
        if let Some(next) = next.filter(|n| *n > from)
            && pages + 1 < MAX_SYNC_PAGES
        {
            self.request_sync_from(peer, next, pages + 1);
        }
    }

    // ----- connections and streams ------------------------------------------------------

    fn connected(&mut self, peer: PublicKey) {
        self.connected.insert(peer);
        self.stage_dials.remove(&peer);
        if self.host_lost && self.is_room_host(&peer) {
            self.host_lost = false;
            self.notice("connected to the host again".into());
        }
        if self.directory_synced < DIRECTORY_SYNC_PEERS || self.lookup.is_some() {
            self.directory_synced += 1;
            self.ask_directory(peer, 1);
        }
    }

    fn connection_dropped(&mut self, peer: PublicKey) {
        // A connection replaced by a better one (a relayed one by a punched one, most often
        // while joining) takes with it what was in flight, our presence too, and the stage
        // streams to us only once it has that. Send it again at the next tick (when the old
        // connection is gone), at most once a second, and only when the peer is on stage:
        // presence goes to the whole room, and every new neighbour connection can swap TCP
        // for QUIC.
        let now = self.time.mono_ms;
        if let Some(m) = self.room.as_mut()
            && m.presence_resent
                .is_none_or(|at| now >= at + PRESENCE_RESEND_MS)
            && m.room.state().on_stage(&peer)
        {
            debug!(peer = %peer.fingerprint(), "a connection dropped: presence again");
            m.presence_resent = Some(now);
            m.presence_due = true;
        }
    }

    fn hole_punched(&mut self, peer: PublicKey) {
        // Said of room members, and of anyone while joining (the join's own relayed
        // connection is often the one upgraded).
        let name = match self.room.as_ref() {
            Some(m) if m.room.state().on_stage(&peer) || m.presence.contains(&peer) => {
                m.name_of(&peer)
            }
            None if self.is_joining() => peer.fingerprint().to_string(),
            _ => return,
        };
        self.notice(format!(
            "connected directly to {name} (hole punched: no longer through the relay)"
        ));
    }

    fn subscribed(&mut self, topic: &str) {
        let now = self.time.mono_ms;
        if topic == DIRECTORY_TOPIC {
            if self
                .room
                .as_ref()
                .is_some_and(|m| m.announcement_undelivered)
            {
                self.maybe_announce(true);
            }
            return;
        }
        let Some(m) = self.room.as_mut().filter(|m| m.topic == topic) else {
            return;
        };
        let held = !m.held.is_empty();
        if m.presence_undelivered {
            m.last_presence = now;
            self.send_presence(false);
        }
        if held {
            self.send_held();
        }
    }

    fn audio_stream_opened(&mut self, from: PublicKey, header: &[u8]) {
        let Some(m) = self.room.as_mut() else {
            self.push(Output::CloseAudioFrom(from));
            return;
        };
        let state = m.room.state();
        let banned = state.banned.contains(&from);
        // Streams are direct: the peer that opened it must be the speaker it names.
        let ours = crate::wire::AudioHeader::decode(header)
            .is_ok_and(|h| h.room == m.room.id() && h.speaker == from);
        if banned || !ours {
            self.push(Output::CloseAudioFrom(from));
            return;
        }
        m.streams_from.insert(from);
        if m.heard_from.len() < MAX_HEARD_FROM {
            m.heard_from.insert(from);
        }
        // Someone not on stage may be a new speaker whose acceptance has not reached us yet:
        // a grace period, then its streams go (they would only hold places: nothing from them
        // is played).
        if !state.on_stage(&from) && m.admission_pending.insert(from) {
            let at = self.time.mono_ms + AUDIO_ADMISSION_GRACE_MS;
            self.schedule(at, Timer::AdmitAudio(from));
        }
    }

    /// Whether `peer` is the host of our room (and not us).
    fn is_room_host(&self, peer: &PublicKey) -> bool {
        self.room.as_ref().is_some_and(|m| {
            let host = m.room.state().host;
            host != self.me && host == *peer
        })
    }

    // ----- state changes ----------------------------------------------------------------

    fn set_policy(&mut self, policy: AudioPolicy) {
        if *self.policy != policy {
            self.policy = Arc::new(policy);
            self.push(Output::AudioPolicy(self.policy.clone()));
        }
    }

    /// Applies what the room's log changed since it was last asked ([`Room::take_changes`]).
    fn apply_changes(&mut self) {
        if let Some(m) = self.room.as_mut() {
            let changes = m.room.take_changes();
            self.apply_state_effects(Some(changes));
        }
    }

    /// Everything that follows from the room state, after `changes` (or when it was just
    /// entered, `None`): audio policy, links, bans, leaving, events.
    fn apply_state_effects(&mut self, changes: Option<Changes>) {
        let me = self.me;
        let Some(m) = self.room.as_ref() else {
            return;
        };
        if changes.as_ref().is_some_and(|c| !c.state) {
            return;
        }
        let state = m.room.state().clone();
        let room_id = m.room.id();
        let key = m.key.clone();
        self.set_dht_server(state.stage().contains(&me));
        let policy = AudioPolicy {
            room: Some(room_id),
            key,
            allowed: state
                .stage()
                .into_iter()
                .filter(|k| state.may_transmit(k) && *k != me)
                .collect(),
            transmit: state.may_transmit(&me) && !state.ended,
        };
        self.set_policy(policy);

        // Bans: close and refuse connections; lifts: allow again. On entering, everyone
        // banned is newly banned here; nobody is newly kicked.
        let (newly_banned, unbanned, newly_kicked): (
            Vec<PublicKey>,
            Vec<PublicKey>,
            Vec<PublicKey>,
        ) = match &changes {
            Some(c) => (c.banned.clone(), c.unbanned.clone(), c.kicked.clone()),
            None => (
                state.banned.iter().copied().collect(),
                Vec::new(),
                Vec::new(),
            ),
        };
        let newly_banned: Vec<PublicKey> = newly_banned.into_iter().filter(|k| *k != me).collect();
        if let Some(m) = self.room.as_mut() {
            for key in newly_banned.iter().chain(&newly_kicked) {
                m.presence.remove(key);
            }
        }
        let mono = self.time.mono_ms;
        for key in &newly_banned {
            // Its audio stops now; its connections close once the ban has reached it, so its
            // own node learns it is banned and leaves.
            self.push(Output::CloseAudioFrom(*key));
            self.schedule(mono + BAN_GRACE_MS, Timer::BlockBanned(*key));
        }
        for key in &unbanned {
            self.push(Output::Unblock(*key));
        }
        for key in newly_kicked.iter().filter(|k| **k != me) {
            self.push(Output::CloseAudioFrom(*key));
        }
        // A private room's host gives the room a new key when someone is removed: the one
        // removed has the old key (it was in the ticket).
        let removed_others = newly_banned.iter().chain(&newly_kicked).any(|k| *k != me);
        if removed_others && state.host == me && !state.ended {
            self.rekey();
        }
        // Whoever streams to us and left the stage (an honest node closes its streams itself)
        // has the same grace as a newcomer.
        let off_stage: Vec<PublicKey> = match self.room.as_mut() {
            Some(m) => {
                let off: Vec<PublicKey> = m
                    .streams_from
                    .iter()
                    .filter(|k| !state.on_stage(k))
                    .copied()
                    .collect();
                off.into_iter()
                    .filter(|k| m.admission_pending.insert(*k))
                    .collect()
            }
            None => Vec::new(),
        };
        for key in off_stage {
            self.schedule(mono + AUDIO_ADMISSION_GRACE_MS, Timer::AdmitAudio(key));
        }

        let host_changed = changes.as_ref().is_some_and(|c| c.previous_host.is_some());
        if host_changed {
            let name = self.name_of(&state.host);
            self.notice(format!("{name} is now the host"));
        }
        if changes.as_ref().is_some_and(|c| c.ended) {
            if let Some(m) = self.room.as_mut() {
                m.ended_at = Some(mono);
            }
            self.emit(NodeEvent::Ended);
        }
        // At once, unless one went out less than STATE_EVENT_MIN_MS ago: then with the next
        // tick (a flood of events becomes a few state events a second, not one per event).
        if let Some(m) = self.room.as_mut() {
            if m.last_state_event
                .is_none_or(|last| mono >= last.saturating_add(STATE_EVENT_MIN_MS))
            {
                m.dirty = false;
                m.last_state_event = Some(mono);
                self.push(Output::StateChanged);
            } else {
                m.dirty = true;
            }
        }
        self.refresh_links();
        if state.banned.contains(&me) {
            self.banned_from.insert(room_id);
            self.leave_room(LeaveReason::Banned);
            return;
        }
        if newly_kicked.contains(&me) {
            self.leave_room(LeaveReason::Kicked);
            return;
        }
        if host_changed && state.host == me {
            self.maybe_announce(true);
        }
        if state.ended && changes.is_some() {
            self.maybe_announce(true);
        }
    }

    fn membership_changed(&mut self) {
        if let Some(m) = self.room.as_mut() {
            m.dirty = true;
        }
        self.refresh_links();
    }

    /// Hands out the peers this node should stream to, when they changed: of the members
    /// that asked (a presence alone gets nobody our audio), the first [`Config::fanout`] in
    /// [`Membership::audio_audience`] order. The rest, and requests we cannot serve, are
    /// turned down. Then the speakers we ask for theirs.
    fn refresh_links(&mut self) {
        let unix = self.time.unix_ms;
        let fanout = self.config.fanout;
        let mut refused: Vec<PublicKey> = Vec::new();
        let targets = match self.room.as_ref() {
            Some(m) if !self.audio_requests.is_empty() => {
                let room = m.room.id();
                let requests = &self.audio_requests;
                let audience = m.audio_audience(&self.me, unix, |k| requests.get(k) == Some(&room));
                refused.extend(
                    requests
                        .iter()
                        .filter(|(k, r)| **r != room || !m.may_hear(k, unix))
                        .map(|(k, _)| *k),
                );
                refused.extend(audience.iter().skip(fanout).copied());
                if self.sending && self.policy.transmit {
                    audience.into_iter().take(fanout).collect()
                } else {
                    Vec::new()
                }
            }
            Some(_) => Vec::new(),
            // Joining (after a restart, say): its members' requests wait for the room.
            None if self.is_joining() => Vec::new(),
            None => {
                refused.extend(self.audio_requests.keys().copied());
                Vec::new()
            }
        };
        refused.sort_unstable();
        for peer in refused {
            self.audio_requests.remove(&peer);
            self.push(Output::RefuseAudio(peer));
        }
        if targets != self.targets {
            self.targets = targets.clone();
            self.push(Output::AudioTargets(targets));
        }
        self.refresh_requests();
    }

    /// A peer asks for our audio: held (and served once it is a present member, in its
    /// turn) if it asks for our room, or for any while we are joining one; else turned down.
    fn audio_requested(&mut self, from: PublicKey, request: &[u8]) {
        let room = self.room.as_ref().map(|m| m.room.id());
        let joining = room.is_none() && self.is_joining();
        let ours = AudioRequest::decode(request)
            .ok()
            .filter(|r| Some(r.room) == room || joining)
            .map(|r| r.room);
        let full = self.audio_requests.len() >= MAX_AUDIO_REQUESTS
            && !self.audio_requests.contains_key(&from);
        // Each request costs a pass over the audience: a peer asking again and again is
        // turned down (it waits at least 15 s then).
        let limited = matches!(
            self.request_limiter.check(&from, self.time.mono_ms),
            Rate::Limited { .. }
        );
        match ours {
            Some(room) if !full && !limited && !self.blocked.contains(&from) => {
                if self.audio_requests.insert(from, room) != Some(room) {
                    self.refresh_links();
                }
            }
            _ => {
                self.audio_requests.remove(&from);
                self.push(Output::RefuseAudio(from));
            }
        }
    }

    /// Asks every stage member but us for its audio, when the stage changed.
    fn refresh_requests(&mut self) {
        let (request, mut speakers) = match self.room.as_ref() {
            Some(m) => (
                AudioRequest { room: m.room.id() }.encode(),
                m.room.state().stage(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        speakers.retain(|k| *k != self.me);
        speakers.sort_unstable();
        speakers.dedup();
        if speakers != self.asking {
            self.asking = speakers.clone();
            self.push(Output::AudioRequests { request, speakers });
        }
    }

    // ----- timers -----------------------------------------------------------------------

    fn timeout(&mut self) {
        let now = self.time.mono_ms;
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.fire(timer);
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK_MS;
            self.tick();
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::DirectoryRetry { peer, attempt } => self.ask_directory(peer, attempt),
            Timer::Farewell { topic, data } => {
                // Not if we are back in that room meanwhile.
                if self.room.as_ref().is_none_or(|m| m.topic != topic) {
                    self.publish(topic, data, None);
                }
            }
            Timer::BlockBanned(peer) => {
                let still_banned = self
                    .room
                    .as_ref()
                    .is_none_or(|m| m.room.state().banned.contains(&peer));
                if still_banned {
                    self.push(Output::Block(peer));
                }
            }
            Timer::RekeyAgain { topic, data } => {
                if self.room.is_some() {
                    self.publish(topic, data, None);
                }
            }
            Timer::SwitchKey => self.switch_key(),
            Timer::JoinRedial(peer) => {
                if self.joining.as_ref().is_some_and(|j| j.peer == Some(peer)) {
                    self.push(Output::JoinRedial { peer });
                }
            }
            Timer::AdmitAudio(peer) => {
                let Some(m) = self.room.as_mut() else {
                    return;
                };
                m.admission_pending.remove(&peer);
                if m.streams_from.contains(&peer) && !m.room.state().on_stage(&peer) {
                    debug!(peer = %peer.fingerprint(), "audio streams from someone not on stage: closed");
                    m.streams_from.remove(&peer);
                    let out = audio_strike(&mut m.audio_strikes, peer, self.time.mono_ms);
                    self.push(Output::CloseAudioFrom(peer));
                    if out {
                        self.punish_flooder(peer, "audio streams");
                    }
                }
            }
            Timer::Unblock(peer) => {
                if self.blocked.remove(&peer) {
                    let banned = self
                        .room
                        .as_ref()
                        .is_some_and(|m| m.room.state().banned.contains(&peer));
                    if !banned {
                        self.push(Output::Unblock(peer));
                    }
                }
            }
        }
    }

    /// How often this node sends presence, in ms. On stage, or named as a successor, the
    /// configured interval: the stage and host succession need fresh presence. In the
    /// audience it stretches with the number of members, so that the audience as a whole sends
    /// about [`AUDIENCE_PRESENCE_PER_S`] heartbeats per second (2 s up to 16 members, 25 s at
    /// 200, at most [`MAX_AUDIENCE_PRESENCE_MS`]); the members counted are those present, or
    /// the listeners in the host's latest announcement if more. Each heartbeat carries its own
    /// TTL (three intervals), so receivers need not know the sender's interval.
    pub fn presence_interval_ms(&self) -> u64 {
        let base = self.config.presence_interval_ms;
        let Some(m) = self.room.as_ref() else {
            return base;
        };
        let state = m.room.state();
        if state.on_stage(&self.me) || state.successors.contains(&self.me) {
            return base;
        }
        let members = room_size(&self.directory, m);
        (members * 1_000 / AUDIENCE_PRESENCE_PER_S).clamp(base, MAX_AUDIENCE_PRESENCE_MS.max(base))
    }

    /// How many members this node counts in its room (0 outside one): those present, the
    /// audience estimated from its sample in a room larger than it, or the host's latest
    /// announcement if that says more (a newcomer knows few members yet).
    pub fn room_size(&self) -> u64 {
        self.room
            .as_ref()
            .map_or(0, |m| room_size(&self.directory, m))
    }

    fn tick(&mut self) {
        let (mono, unix) = (self.time.mono_ms, self.time.unix_ms);
        self.directory.expire(unix);
        self.check_lookup();
        let interval = self.presence_interval_ms();
        let Some(m) = self.room.as_mut() else {
            return;
        };
        if let Some(ended) = m.ended_at {
            if mono >= ended + END_GRACE_MS {
                self.leave_room(LeaveReason::Ended);
            } else if mono >= m.last_announce + ENDED_REANNOUNCE_MS {
                // Only the host announces (checked inside).
                self.maybe_announce(true);
            }
            return;
        }
        // The sample's threshold follows the room's size: the host's announcement, one
        // number for every member, or in a private room (not announced) our own count.
        let expected = match announced_listeners(&self.directory, m) {
            0 => m.presence.audience_estimate(),
            announced => announced,
        };
        m.presence.expect_audience(expected);
        let gone = m.presence.expire(mono);
        if !gone.is_empty() {
            m.forget_departed();
            self.membership_changed();
        }
        let Some(m) = self.room.as_mut() else {
            return;
        };
        let given_up = m.held.expire(mono);
        if given_up > 0 {
            self.emit(NodeEvent::Error {
                message: format!(
                    "nobody in the room was reachable for {} s: {given_up} chat message(s) \
                     not delivered",
                    HELD_TTL_MS / 1_000
                ),
            });
        }
        if let Some(m) = self.room.as_mut()
            && (m.presence_due
                || mono
                    >= m.last_presence
                        .saturating_add(interval.min(m.presence_sent_every)))
        {
            m.presence_due = false;
            m.last_presence = mono;
            self.send_presence(false);
        }
        let retry_announcement = self.room.as_ref().is_some_and(|m| {
            m.announcement_undelivered && mono >= m.last_announce + ANNOUNCE_RETRY_MS
        });
        self.maybe_announce(retry_announcement);
        self.check_succession();
        self.maybe_sync();
        self.keep_stage_connected();
        self.keep_room_neighbours();
        self.check_fanout_notice();
        if let Some(m) = self.room.as_mut()
            && m.dirty
        {
            m.dirty = false;
            m.last_state_event = Some(self.time.mono_ms);
            self.push(Output::StateChanged);
        }
    }

    /// Whether we keep a connection to stage member `peer` (see
    /// [`Self::keep_stage_connected`]): when we are on stage too, when the room is small
    /// enough that every speaker streams to every member, or when `peer` streamed to us.
    fn wants_stage_link(&self, peer: &PublicKey) -> bool {
        let Some(m) = self.room.as_ref() else {
            return false;
        };
        let state = m.room.state();
        state.on_stage(peer)
            && (state.on_stage(&self.me)
                || m.presence.estimate() < self.config.fanout as u64
                || m.heard_from.contains(peer))
    }

    /// Dials the stage members we are not connected to and want a link to (see
    /// [`Self::wants_stage_link`]), each with its own backoff ([`STAGE_REDIAL_MIN_MS`]
    /// doubling to [`STAGE_REDIAL_MAX_MS`]). A speaker's audio comes over a connection that
    /// the speaker usually opened; when it dies (a relay restarted, a path changed) a listener
    /// behind NAT cannot be dialled back, so the listener dials. In a room larger than the
    /// fan-out, a listener no speaker streams to keeps no link to the stage: its gossip goes
    /// through its neighbours, and a stage of a few cannot hold a connection to thousands.
    fn keep_stage_connected(&mut self) {
        let now = self.time.mono_ms;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        let state = m.room.state();
        m.heard_from.retain(|k| state.on_stage(k));
        let stage: Vec<PublicKey> = state
            .stage()
            .into_iter()
            .filter(|k| *k != self.me && !self.connected.contains(k) && self.wants_stage_link(k))
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
            self.push(Output::Connect(peer));
        }
    }

    /// Dials a present member when we are connected to fewer than [`ROOM_NEIGHBOURS`] of
    /// them off the stage, one per [`NEIGHBOUR_CHECK_MS`], each member at most once per
    /// [`NEIGHBOUR_RETRY_MS`].
    ///
    /// The audience are Kademlia clients (see `set_dht_server`), so nothing else connects them
    /// to each other: without this a listener's only room peers are the stage, and what it
    /// says (chat, hands, presence) reaches the rest of the audience only through the stage's
    /// gossipsub mesh of at most a dozen (bench `scale`: a listener's chat line reached 121 of
    /// 199 listeners). With a few neighbours each, gossipsub builds its mesh through the
    /// audience, and ruang-net keeps room peers connected.
    fn keep_room_neighbours(&mut self) {
        let now = self.time.mono_ms;
        let me = self.me;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        if now < m.last_neighbour_check + NEIGHBOUR_CHECK_MS {
            return;
        }
        m.last_neighbour_check = now;
        m.neighbour_dials
            .retain(|_, at| now < *at + NEIGHBOUR_RETRY_MS);
        m.dialled_hosts
            .retain(|_, at| now < *at + NEIGHBOUR_RETRY_MS);
        // The stage does not count: every member is connected to it anyway (see
        // `keep_stage_connected`), and a room whose stage has four members would otherwise
        // leave its audience hanging on the stage alone.
        let state = m.room.state();
        let connected = self
            .connected
            .iter()
            .filter(|p| {
                m.known_addrs.contains_key(*p) && m.presence.contains(p) && !state.on_stage(p)
            })
            .count();
        if connected >= ROOM_NEIGHBOURS {
            return;
        }
        let candidates: Vec<(&PublicKey, &Vec<Vec<u8>>)> = m
            .known_addrs
            .iter()
            .filter(|(p, addrs)| {
                **p != me
                    && !addrs.is_empty()
                    && !self.connected.contains(*p)
                    && !self.blocked.contains(*p)
                    && !m.neighbour_dials.contains_key(*p)
                    && m.presence.contains(p)
                    && !m.host_dialled_lately(addrs)
            })
            .collect();
        // Sorted, so that a seeded core picks the same member whatever the map's order.
        let mut candidates = candidates;
        candidates.sort_unstable_by_key(|(k, _)| **k);
        let Some((peer, addrs)) = candidates.choose(&mut self.rng) else {
            return;
        };
        let (peer, addrs) = (**peer, (*addrs).clone());
        let Some(addresses) = m.claim_dial(&addrs, now) else {
            return;
        };
        m.neighbour_dials.insert(peer, now);
        debug!(peer = %peer.fingerprint(), connected, "dialling a room neighbour");
        self.push(Output::Dial { peer, addresses });
    }

    /// Dials a member new to us with probability [`ROOM_NEIGHBOURS`] / members, so that each
    /// newcomer is dialled by about that many members. A newcomer knows only the stage and
    /// whoever has sent presence since it joined (in a room of thousands, listeners send it
    /// minutes apart), and the member it joined through closes an idle connection once it has
    /// many: without these dials a newcomer could be left with no room peer at all, its
    /// presence reaching nobody (seen in the `scale` scenario at 1,000 members).
    fn maybe_welcome(&mut self, peer: PublicKey) {
        let now = self.time.mono_ms;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        if self.connected.contains(&peer)
            || self.blocked.contains(&peer)
            || m.room.state().on_stage(&peer)
            || m.neighbour_dials.contains_key(&peer)
        {
            return;
        }
        let Some(addresses) = m.known_addrs.get(&peer).filter(|a| !a.is_empty()) else {
            return;
        };
        // A newcomer ourselves, everyone is new to us: our own neighbour dials do (see
        // `keep_room_neighbours`).
        if now < m.joined_at + self.config.presence_interval_ms.max(NEIGHBOUR_RETRY_MS) {
            return;
        }
        let members = room_size(&self.directory, m);
        let share = ROOM_NEIGHBOURS as f64 / members.max(1) as f64;
        if !self.rng.random_bool(share.min(1.0)) {
            return;
        }
        let addresses = addresses.clone();
        let Some(addresses) = m.claim_dial(&addresses, now) else {
            return;
        };
        m.neighbour_dials.insert(peer, now);
        debug!(peer = %peer.fingerprint(), "dialling a newcomer");
        self.push(Output::Dial { peer, addresses });
    }

    /// Every [`Config::sync_interval_ms`], asks a random connected member for the events we
    /// may lack.
    fn maybe_sync(&mut self) {
        let now = self.time.mono_ms;
        let every = self.config.sync_interval_ms;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        if now < m.last_sync + every {
            return;
        }
        let candidates: Vec<PublicKey> = self
            .connected
            .iter()
            .filter(|p| m.presence.contains(p))
            .copied()
            .collect();
        if candidates.is_empty() {
            m.last_sync = now;
            return;
        }
        // Sorted, so that a seeded core picks the same peer whatever the set's order.
        let mut candidates = candidates;
        candidates.sort();
        let peer = candidates[self.rng.random_range(0..candidates.len())];
        self.request_sync(peer);
    }

    fn check_succession(&mut self) {
        let now = self.time.mono_ms;
        let me = self.me;
        let interval = self.config.presence_interval_ms;
        let timeout = 3 * interval;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        let state = m.room.state();
        if state.host == me || m.presence.contains(&state.host) {
            m.host_missing_since = None;
            return;
        }
        // Give a newly joined node time to hear the host's presence.
        if now < m.joined_at + timeout {
            return;
        }
        let since = *m.host_missing_since.get_or_insert(now);
        if now < since + interval {
            return;
        }
        let presence = &m.presence;
        if m.room.next_host(|k| *k == me || presence.contains(k)) == Some(me) {
            info!("the host is gone; taking over as its first present successor");
            if self.act(EventBody::ClaimHost, None).is_ok() {
                self.notice("the host is gone: you are now the host".into());
            }
        }
    }

    fn check_fanout_notice(&mut self) {
        let now = self.time.mono_ms;
        let fanout = self.config.fanout;
        let me = self.me;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        if m.fanout_notice_given
            || now < m.joined_at + 10_000
            || m.presence.estimate() < fanout as u64
        {
            return;
        }
        let state = m.room.state();
        let unheard: Vec<String> = state
            .stage()
            .into_iter()
            .filter(|k| *k != me && state.may_transmit(k) && m.presence.contains(k))
            .filter(|k| !m.streams_from.contains(k))
            .map(|k| m.name_of(&k))
            .collect();
        if !unheard.is_empty() {
            m.fanout_notice_given = true;
            let message = format!(
                "no audio from {}: speakers stream to at most {fanout} listeners directly and this room has more; \
                 large-room forwarding is not available yet",
                unheard.join(", ")
            );
            self.emit(NodeEvent::Error { message });
        }
    }

    /// Publishes our presence; returns the bytes published, if it went out.
    fn send_presence(&mut self, leaving: bool) -> Option<Vec<u8>> {
        let interval = self.presence_interval_ms();
        // Others keep our entry three intervals: the next heartbeat must come within this
        // one even if the room grows meanwhile (a newcomer's interval grows fast: it learns
        // the audience as they send presence).
        if let Some(m) = self.room.as_mut() {
            m.presence_sent_every = interval;
        }
        let body = self.presence_body(leaving);
        match self.publish_ephemeral(body, Some(Publication::Presence { leaving })) {
            Ok((_, payload)) => Some(payload),
            Err(e) => {
                debug!(error = %e, "presence not sent");
                None
            }
        }
    }

    /// Our presence: name, addresses, and a TTL of three heartbeat intervals.
    fn presence_body(&self, leaving: bool) -> EphemeralBody {
        let interval = self.presence_interval_ms();
        let ttl_ms = (3 * interval).min(u64::from(ruang_proto::ephemeral::MAX_TTL_MS)) as u32;
        let addresses = self.addrs.iter().take(MAX_SHARED_ADDRS).cloned().collect();
        let mut name = self.config.name.clone();
        truncate_utf8(&mut name, ruang_proto::ephemeral::MAX_NAME_LEN);
        EphemeralBody::Presence {
            name,
            ttl_ms,
            addresses,
            leaving,
        }
    }

    fn maybe_announce(&mut self, now_please: bool) {
        let me = self.me;
        let (mono, unix) = (self.time.mono_ms, self.time.unix_ms);
        let every = self.config.announce_interval_ms;
        let Some(m) = self.room.as_mut() else {
            return;
        };
        let state = m.room.state();
        if m.private() || state.host != me {
            return;
        }
        let genesis = m.room.genesis();
        let may_announce = genesis.author == me || state.successors.contains(&me);
        if !may_announce || (!now_please && mono < m.last_announce + every) {
            return;
        }
        m.last_announce = mono;
        // Set again if this one reaches nobody either (`Core::published`).
        m.announcement_undelivered = false;
        // Counted, or estimated from the sample in a room larger than it. The estimate is
        // announced again only once it moved by an eighth: every member sets its sample's
        // threshold from this number, and one that went back and forth across a step moved
        // every threshold with it (a newcomer then missed the heartbeats of listeners near
        // the edge).
        let listeners = if m.presence.is_sampling() {
            let estimate = m.presence.audience_estimate();
            let last = m.announced_listeners;
            if estimate.abs_diff(last) <= last / 8 {
                last
            } else {
                estimate
            }
        } else {
            m.presence
                .iter()
                .filter(|(k, _)| state.role(k) == Role::Listener)
                .count() as u64
        };
        let my_name = || {
            let mut name = self.config.name.clone();
            truncate_utf8(&mut name, ruang_proto::ephemeral::MAX_NAME_LEN);
            name
        };
        let speakers = state
            .stage()
            .into_iter()
            .take(directory::MAX_PREVIEW_SPEAKERS)
            .map(|k| {
                let mut name = if k == me { my_name() } else { m.name_of(&k) };
                truncate_utf8(&mut name, ruang_proto::ephemeral::MAX_NAME_LEN);
                SpeakerPreview { name, key: k }
            })
            .collect();
        m.announced_listeners = listeners;
        let ann = Announcement {
            room: m.room.id(),
            author: me,
            genesis: genesis.wire().to_vec(),
            info: state.info.clone(),
            host: state.host,
            host_name: my_name(),
            speakers,
            listener_count: listeners.min(u64::from(u32::MAX)) as u32,
            addresses: self.addrs.iter().take(MAX_SHARED_ADDRS).cloned().collect(),
            started_at: state.started_at,
            scheduled_for: None,
            issued_at: unix,
            // Three announce intervals, as `DEFAULT_ANNOUNCEMENT_TTL_MS` is for the default
            // interval. A fixed TTL kept a dead host's room listed long after its node stopped
            // re-announcing when the interval is shorter (60 s for 2 s), and would let the
            // listing lapse between announcements when it is longer than a third of it.
            expires_at: unix
                + if state.ended {
                    30_000
                } else {
                    (3 * every).min(directory::MAX_ANNOUNCEMENT_TTL_MS)
                },
            ended: state.ended,
        };
        match signed::sign(&self.config.identity, ann) {
            Ok(signed) => {
                let _ = self.directory.insert_verified(signed.clone(), unix);
                self.publish(
                    DIRECTORY_TOPIC.into(),
                    signed.wire().to_vec(),
                    Some(Publication::Announcement),
                );
            }
            Err(e) => warn!(error = %e, "could not sign the room's announcement"),
        }
    }
}

/// What [`apply_page`] did.
struct Page {
    /// Events new to the log (with the pending ones they released).
    added: usize,
    /// Events that did not open with the room's key.
    sealed_wrong: usize,
}

/// Offers a sync page's events to `insert`, opened first when the room is private (sealed for
/// [`Purpose::Sync`]); `insert` returns how many events each added. The one way a page is
/// applied, for a join's fetch and for anti-entropy alike.
fn apply_page(
    key: Option<&RoomKey>,
    room: RoomId,
    events: &[Vec<u8>],
    mut insert: impl FnMut(&[u8]) -> Result<usize, String>,
) -> Result<Page, String> {
    let mut page = Page {
        added: 0,
        sealed_wrong: 0,
    };
    for sealed in events {
        let opened;
        let wire: &[u8] = match key {
            Some(k) => match k.open(&room.0.0, Purpose::Sync, sealed) {
                Ok(o) => {
                    opened = o;
                    &opened
                }
                Err(_) => {
                    page.sealed_wrong += 1;
                    continue;
                }
            },
            None => sealed,
        };
        page.added += insert(wire)?;
    }
    Ok(page)
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
        room_id: ann.room,
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

/// How many members room `m` has, as far as we can tell: those present, or the listeners in
/// the room's latest announcement by its host (or its creator) if more (a newcomer knows few
/// members yet).
/// Counts a strike against `peer`, whose audio streams were just closed for not being on
/// stage; whether it has [`AUDIO_STRIKES`] within [`AUDIO_STRIKE_WINDOW_MS`] (then it is
/// forgotten: the block that follows is its penalty).
fn audio_strike(strikes: &mut HashMap<PublicKey, (u32, u64)>, peer: PublicKey, now: u64) -> bool {
    let fresh = |(_, since): &(u32, u64)| now.saturating_sub(*since) < AUDIO_STRIKE_WINDOW_MS;
    if !strikes.contains_key(&peer) && strikes.len() >= MAX_AUDIO_STRIKES {
        strikes.retain(|_, s| fresh(s));
        if strikes.len() >= MAX_AUDIO_STRIKES {
            return false;
        }
    }
    let entry = strikes.entry(peer).or_insert((0, now));
    if !fresh(entry) {
        *entry = (0, now);
    }
    entry.0 += 1;
    if entry.0 >= AUDIO_STRIKES {
        strikes.remove(&peer);
        return true;
    }
    false
}

fn room_size(directory: &Directory, m: &Membership) -> u64 {
    m.presence.estimate().max(announced_listeners(directory, m))
}

/// The listeners in the room's latest announcement by its host (or creator), 0 if none.
fn announced_listeners(directory: &Directory, m: &Membership) -> u64 {
    let state = m.room.state();
    let genesis_author = m.room.genesis().author;
    directory
        .get(&m.room.id())
        .filter(|a| a.author == state.host || a.author == genesis_author)
        .map_or(0, |a| u64::from(a.listener_count))
}
