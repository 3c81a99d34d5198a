//! Every bound of the network layer in one place. Queues are bounded; sizes are checked on both
//! sides; every wait has a timeout.

use std::time::Duration;

// ---- channels between the node and the event loop ----

/// Commands waiting for the event loop. A full queue makes `Client` calls wait (backpressure),
/// within their timeout.
pub const COMMAND_QUEUE_CAP: usize = 256;
/// Control-plane events waiting for the node. When full, the event loop parks up to
/// [`EVENT_OVERFLOW_CAP`] more and then stops reading the swarm until the node catches up
/// (backpressure: nothing is dropped).
pub const EVENT_QUEUE_CAP: usize = 1024;
/// Events parked inside the event loop while [`EVENT_QUEUE_CAP`] is full.
pub const EVENT_OVERFLOW_CAP: usize = 256;
/// Audio frames waiting for the node: 2048 frames of 20 ms, i.e. a second of 40 streams. When
/// full, new frames are dropped and counted ([`crate::AudioInStats::dropped`]); audio never
/// waits behind the node.
pub const AUDIO_INBOX_CAP: usize = 2048;

// ---- timeouts ----

/// Upper bound of a `Client` call that only talks to the event loop.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A QUIC connection whose peer sent nothing for this long is dead (a crashed or restarted
/// process, a lost path) and is closed.
pub const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// An idle QUIC connection sends a keep-alive this often (well within [`QUIC_IDLE_TIMEOUT`]).
pub const QUIC_KEEP_ALIVE: Duration = Duration::from_millis(1_000);
/// How long a dial (including `Client::dial`) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `/ruang/sync/1` request waits for its response.
pub const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Client::listen_via_relay` waits for the relay to accept a reservation.
pub const RELAY_RESERVATION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`crate::spawn`] waits for every listen address to be bound.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often Kademlia re-bootstraps (refreshes its routing table).
pub const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(60);

// ---- gossipsub ----

/// Largest gossip payload (and RPC) sent or accepted.
pub const MAX_GOSSIP_SIZE: usize = 64 * 1024;
/// Gossipsub heartbeat. Fast, so meshes form and repair quickly in small rooms.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(500);
/// Heartbeats a received message is kept in the cache. A message must be validated (see
/// `Client::report_validation`) within this many heartbeats, i.e. within
/// [`GOSSIP_VALIDATION_WINDOW`], or it is dropped unforwarded.
pub const GOSSIP_HISTORY_LENGTH: usize = 12;
/// The time the node has to report a verdict on a gossip message.
pub const GOSSIP_VALIDATION_WINDOW: Duration =
    Duration::from_millis(GOSSIP_HEARTBEAT.as_millis() as u64 * GOSSIP_HISTORY_LENGTH as u64);
/// Topics a peer may be subscribed to, as we track it (more is treated as abuse).
pub const MAX_TOPICS_PER_PEER: usize = 1024;
/// Topics must start with this prefix; others are refused locally and ignored from peers.
pub const TOPIC_PREFIX: &str = "ruang/";
/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 256;

// ---- sync request-response ----

/// Largest `/ruang/sync/1` request.
pub const MAX_SYNC_REQUEST: usize = 64 * 1024;
/// Largest `/ruang/sync/1` response.
pub const MAX_SYNC_RESPONSE: usize = 4 * 1024 * 1024;
/// Concurrent sync streams per connection.
pub const MAX_SYNC_STREAMS: usize = 64;

// ---- audio ----

/// Frames queued per [`crate::AudioLink`]: 8 × 20 ms = 160 ms. When full the oldest is dropped.
pub const AUDIO_LINK_QUEUE: usize = 8;
/// A queued frame older than this is dropped rather than sent (after a reconnect, say).
pub const AUDIO_STALE_AFTER: Duration = Duration::from_millis(300);
/// When a link's stream opens (first time or again), queued frames older than this are dropped:
/// the receiver starts on live audio. Sent in one burst, the backlog made the receiver's jitter
/// buffer hold 80 ms more for seconds after a hole-punched join.
pub const AUDIO_RESUME_BACKLOG: Duration = Duration::from_millis(40);
/// Largest audio frame on the wire (an Opus packet plus ruang's frame header fits easily).
pub const MAX_AUDIO_FRAME_LEN: usize = 1500;
/// Largest audio stream header.
pub const MAX_AUDIO_HEADER_LEN: usize = 512;
/// Streams ("lanes") per [`crate::AudioLink`]; frames go round-robin over them. A QUIC stream
/// delivers in order, so on one stream a single lost packet holds back every later frame until
/// its retransmission arrives (about one round trip plus loss detection: ~100 ms at 30 ms
/// one-way). Striped, it holds back only its own lane, whose next frame is `AUDIO_LANES`
/// frames later; the frames in between arrive on time, the jitter buffer gives the lost one up
/// and rebuilds it from the next frame's FEC. Eight lanes at 20 ms frames leave 160 ms between
/// frames of a lane: more than a retransmission takes at 30 ms one-way, so even a burst of
/// lost packets holds back no frame behind it (with four lanes, bursts of three did, and the
/// jitter buffer grew to ~150 ms; bench/RESULTS.md). (Over TCP the connection itself is
/// ordered: lanes change nothing there.)
pub const AUDIO_LANES: usize = 8;
/// Inbound audio streams open at once; new ones beyond this are closed at once (each speaker
/// uses [`AUDIO_LANES`] per listener).
pub const MAX_INBOUND_AUDIO_STREAMS: usize = 1024;
/// Inbound audio streams open at once from one peer: a speaker's lanes twice over (a link
/// reopening its lanes while the old ones close). One peer held 1,016 idle streams over three
/// connections, the whole node's bound, and a newly invited speaker was not heard.
pub const MAX_INBOUND_AUDIO_STREAMS_PER_PEER: usize = 2 * AUDIO_LANES;
/// Of [`MAX_INBOUND_AUDIO_STREAMS`], those only the peers the node hears
/// ([`crate::Client::set_audio_priority`]: the stage) may take: 64 peers holding 16 idle
/// streams each fill the rest, and a speaker must still get through (16 speakers' lanes
/// twice over).
pub const AUDIO_STREAMS_RESERVED: usize = 256;
/// Requests for our audio held at once (one per peer; see `audio::request`): beyond, new
/// ones are turned down unread.
pub const MAX_AUDIO_REQUESTS: usize = 4096;
/// Longest audio request accepted.
pub const MAX_AUDIO_REQUEST_LEN: usize = 256;
/// How long a peer may take to send its audio stream header (or audio request).
pub const AUDIO_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening an outbound audio stream (including the dial) may take.
pub const AUDIO_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an opened audio stream waits for the receiver's ack before it is given up and
/// opened again (a few round trips on any path people talk over).
pub const AUDIO_ACK_TIMEOUT: Duration = Duration::from_millis(1_500);
/// A write that blocks this long means the path is dead: the link reopens its stream.
pub const AUDIO_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// First wait before an [`crate::AudioLink`] reopens a failed stream; doubles up to
/// [`AUDIO_BACKOFF_MAX`].
pub const AUDIO_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reopen attempts.
pub const AUDIO_BACKOFF_MAX: Duration = Duration::from_secs(5);

// ---- connections ----

/// Connections to one peer (QUIC + TCP + relayed during an upgrade, plus a spare).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Connections being set up at once, each way.
pub const MAX_PENDING_CONNECTIONS: u32 = 128;
/// Incoming connections being set up at once from one IP address (loopback not counted; see
/// `ip_budget`): a household's devices joining together, not a node's whole budget.
pub const MAX_PENDING_PER_IP: u32 = 8;
/// Incoming connections one IP address may start in a burst (loopback and relayed ones not
/// counted): everyone behind one NAT joining at once.
pub const HANDSHAKE_BURST_PER_IP: u32 = 64;
/// Incoming connections per second one IP address may start after its burst. A key blocked as
/// a flooder that dials again the moment it is refused costs a handshake each time (96 such
/// keys kept a listener at 68 % of a core on loopback, which is not counted).
pub const HANDSHAKES_PER_SECOND_PER_IP: f64 = 8.0;
/// Addresses whose handshake rate is tracked at once; beyond, a new address is let in
/// untracked (its pending and established budgets still hold).
pub const MAX_RATED_IPS: usize = 4096;
/// Incoming connections established at once from one IP address (loopback and relayed ones
/// not counted): people behind one NAT, not a script with hundreds of keys.
pub const MAX_INBOUND_PER_IP: u32 = 64;
/// How long a TCP or WebSocket connection may take to become a libp2p connection (protocol
/// negotiation, Noise, Yamux). A socket that sends nothing is closed after this (QUIC's
/// handshake ends by its idle timeout, [`QUIC_IDLE_TIMEOUT`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Established connections in total.
pub const MAX_CONNECTIONS: u32 = 1024;
/// Addresses remembered per peer for dialling by peer id.
pub const MAX_ADDRS_PER_PEER: usize = 16;
/// Peers whose addresses are remembered (least recently learnt forgotten first).
pub const MAX_ADDRESS_BOOK_PEERS: usize = 4096;

// ---- relay service (when `Config::relay_server`) ----

/// Reservations a relay holds.
pub const RELAY_MAX_RESERVATIONS: usize = 512;
/// Circuits a relay carries at once.
pub const RELAY_MAX_CIRCUITS: usize = 256;
/// Circuits at once per peer.
pub const RELAY_MAX_CIRCUITS_PER_PEER: usize = 32;
/// Longest life of one circuit: a long room.
pub const RELAY_MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(6 * 3600);
/// Bytes one circuit may carry: ~8 h at 300 kbit/s.
pub const RELAY_MAX_CIRCUIT_BYTES: u64 = 1 << 30;
