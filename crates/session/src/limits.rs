//! Every bound and interval of the session core, in one place. Times are milliseconds.

/// Chat lines and reactions an author may send in a burst.
pub const CHAT_BURST: u32 = 10;
/// Chat lines and reactions per second an author may send on average.
pub const CHAT_PER_SECOND: f64 = 2.0;
/// Presence messages per second an author may send on average (heartbeats are every 2 s).
pub const PRESENCE_PER_SECOND: f64 = 2.0;
/// Members new to our presence table one peer may pass on in a burst (the stage does not
/// count): a listener joining a busy room hears of a few hundred at once.
pub const NEW_MEMBERS_BURST: u32 = 256;
/// Members new to our presence table one peer may pass on per second on average. A room's
/// audience sends about [`AUDIENCE_PRESENCE_PER_S`] heartbeats a second in all, spread over
/// the peers that pass them on; a script signing presences for thousands of keys through one
/// connection gets this many a second into the table, and at most an equal share of it
/// (`ruang_proto::ephemeral::Admission`).
pub const NEW_MEMBERS_PER_SECOND: f64 = 16.0;
/// Consecutive over-rate messages from a directly connected author before it is disconnected.
pub const FLOOD_STRIKES: u32 = 50;
/// Authors tracked by each rate limiter.
pub const MAX_RATE_KEYS: usize = 10_000;
/// New log events an author may have forwarded in a burst.
pub const LOG_BURST: u32 = 20;
/// New log events per second an author may have forwarded on average.
pub const LOG_PER_SECOND: f64 = 2.0;

/// Rooms new to our directory one peer may pass on in a burst.
pub const NEW_LISTINGS_BURST: u32 = 16;
/// Rooms new to our directory one peer may pass on per second on average.
pub const NEW_LISTINGS_PER_SECOND: f64 = 0.5;
/// Sync requests (room pages, directories) answered to one peer at once: a join fetches its
/// log's pages one after the other, 64 pages are 16,384 events.
pub const SYNC_REQUEST_BURST: u32 = 64;
/// Presence answers (a newcomer's table, `wire::SyncRequest::Presence`) a member gives at
/// once, whoever asks.
pub const PRESENCE_ANSWER_BURST: u32 = 8;
/// Presence answers a member gives per second after [`PRESENCE_ANSWER_BURST`]; beyond, a
/// newcomer is told `Busy` and fills its table from heartbeats. An answer is ~130 KB for a
/// sample of 512 (at most [`MAX_PRESENCE_ANSWER_BYTES`]): the member a room's newcomers join
/// through (often the host) sends at most ~1 Mbit/s of them, ~2 Mbit/s for the largest
/// presences.
pub const PRESENCE_ANSWERS_PER_SECOND: f64 = 1.0;
/// Presence answers one peer gets per minute (a newcomer asks once).
pub const PRESENCE_ANSWERS_PER_PEER_PER_MINUTE: f64 = 1.0;
/// Most bytes of signed presences in one answer: a sample of 512 with the stage fits twice
/// over at the usual ~250 bytes each; presences naming eight addresses of 128 bytes each
/// (~1.2 KB) are cut there, last ranks first.
pub const MAX_PRESENCE_ANSWER_BYTES: usize = 256 * 1024;
/// How soon a room's announcement that reached nobody goes again (at once when a peer
/// subscribes to the directory's topic): a host's first one races its first connection, and
/// the next was an announce interval (20 s) later, so a directory listed a new room late.
pub const ANNOUNCE_RETRY_MS: u64 = 2_000;
/// Sync requests answered to one peer per second after [`SYNC_REQUEST_BURST`]; beyond, it is
/// told `Busy`. Each answer costs a page of events to seal and send.
pub const SYNC_REQUESTS_PER_SECOND: f64 = 8.0;

/// Log events whose parents we lack (they wait in the log's pending set of 1,024, oldest
/// dropped) one peer may pass on in a burst: a join or a partition's end brings a few dozen.
pub const ORPHANS_BURST: u32 = 64;
/// Such events per second one peer may pass on after [`ORPHANS_BURST`]; beyond, they are
/// dropped (sync brings what is real). Each one used to ask its sender for a sync: a script
/// sending events with made-up parents had the node send it a sync request per event, and
/// pushed honest out-of-order events out of the pending set.
pub const ORPHANS_PER_SECOND: f64 = 4.0;
/// Chat lines and reactions held while no peer is on the room's topic.
pub const MAX_HELD: usize = 16;
/// Chat lines and reactions remembered to ignore replays (see `room::Said`): a minute of a
/// busy room's chat (at the per-author rate, ~80 authors at once).
pub const MAX_SAID: usize = 8_192;
/// How long a held chat line or reaction waits for a peer before it is given up (ms).
pub const HELD_TTL_MS: u64 = 10_000;

/// How often the core checks its periodic work (presence, announcements, sync, succession).
pub const TICK_MS: u64 = 200;
/// Least time between two state events caused by log events; what comes sooner goes out with
/// the next tick. 900 spammed events made 903 `state` events of 40 KB each (36 MB of JSON in
/// 10 s) from a host.
pub const STATE_EVENT_MIN_MS: u64 = 100;
/// How long after a private room's rekey (sent, or received) a member moves to the new key and
/// topic: the rekey is repeated at +1 s and +2 s on the old topic, and members pass it on there
/// until they move.
pub const REKEY_SWITCH_MS: u64 = 3_000;
/// Presence is sent again after a dropped connection at most this often.
pub const PRESENCE_RESEND_MS: u64 = 1_000;
/// Room members off the stage a node dials until it is connected to this many (it connects to
/// the stage anyway). With the members that dial it, a listener ends up with about twice as
/// many: enough for gossipsub's mesh (4 to 12, 6
/// wanted), few enough that a room of 200 in one process stays within two cores (bench
/// `scale`: 6 cost 140 % of 200 and 146 ms mouth-to-ear, 4 cost 133 % and 93 ms).
pub const ROOM_NEIGHBOURS: usize = 4;
/// Listeners whose presence a member keeps and passes on, at most (the default of
/// `Config::audience_sample`): in a larger room each keeps the same sample of the audience and
/// estimates its size from it (within ~5 %), so that a listener's heartbeats and comings and
/// goings reach its neighbours, not all of the room's thousands.
pub const AUDIENCE_SAMPLE: usize = 512;
/// How often a node counts its room neighbours (and dials at most one).
pub const NEIGHBOUR_CHECK_MS: u64 = 1_000;
/// Hosts remembered as dialled lately (see `Membership::claim_dial`); when full, no member
/// is welcomed or dialled as a neighbour until older ones lapse.
pub const MAX_DIALLED_HOSTS: usize = 1_024;
/// How long before a member we dialled as a neighbour is dialled again.
pub const NEIGHBOUR_RETRY_MS: u64 = 30_000;
/// Most pages a join or a sync asks for from one peer.
pub const MAX_SYNC_PAGES: usize = 10_000;
/// How long to keep a flooding peer blocked.
pub const FLOOD_BLOCK_MS: u64 = 60_000;
/// How long a banned peer stays connected so the ban reaches it (its audio is refused at once).
pub const BAN_GRACE_MS: u64 = 2_000;
/// When a leaving presence goes out again after the first, ms (see `Core::farewell_again`):
/// within gossipsub's IHAVE window of older heartbeats (three 500 ms heartbeats).
pub const FAREWELL_AGAIN_MS: [u64; 2] = [1_000, 2_000];
/// How long after EndRoom a node stays subscribed (so the event spreads) before leaving.
pub const END_GRACE_MS: u64 = 2_000;
/// How often the host re-publishes the ended announcement during [`END_GRACE_MS`]. It is the
/// only message that removes a room from directories, and one copy can miss a node whose
/// gossip neighbours just left (measured in `tests/directory_20_nodes.rs`: after a node
/// left, 1–2 of 19 nodes held the ended room ~4.5 s in about half the runs). Nodes that
/// already hold the tombstone ignore the copies, so they are not forwarded again.
pub const ENDED_REANNOUNCE_MS: u64 = 500;
/// Addresses put in presence and announcements.
pub const MAX_SHARED_ADDRS: usize = 6;
/// Peers asked for their directory when they connect (the first few are enough).
pub const DIRECTORY_SYNC_PEERS: usize = 8;
/// Attempts at one peer's directory: an answer lost to a connection closing (two connections
/// to one peer, the worse one closed) is asked again.
pub const DIRECTORY_SYNC_ATTEMPTS: u32 = 3;
/// Wait before asking a peer for its directory again, doubled per attempt.
pub const DIRECTORY_RETRY_MS: u64 = 500;
/// How long `join <room id>` waits for the room to reach the directory of a fresh node (mDNS,
/// bootstrap and directory answers take a moment) before saying it is not listed.
pub const JOIN_LOOKUP_MS: u64 = 15_000;
/// How often a waiting lookup asks the connected peers for their directory again.
pub const JOIN_LOOKUP_RETRY_MS: u64 = 2_000;
/// Connections a join makes to the member it fetches from: the first, and again when it
/// closes under a page request.
pub const JOIN_CONNECTIONS: u32 = 3;
/// Wait before a join connects again to the member it fetches from; doubled for each further
/// attempt.
pub const JOIN_REDIAL_MS: u64 = 250;
/// First wait before dialling a stage member we lost the connection to; doubles up to
/// [`STAGE_REDIAL_MAX_MS`].
pub const STAGE_REDIAL_MIN_MS: u64 = 500;
/// Stage members remembered as having streamed to us (see `Membership::heard_from`).
pub const MAX_HEARD_FROM: usize = 64;
/// How long audio streams from someone not on stage are kept: a new speaker's streams can
/// arrive before its acceptance of the invitation does (gossip), and are admitted when it
/// comes; after this they are closed.
pub const AUDIO_ADMISSION_GRACE_MS: u64 = 5_000;
/// Times a peer's audio streams may be closed for not being on stage (see
/// [`AUDIO_ADMISSION_GRACE_MS`]) within [`AUDIO_STRIKE_WINDOW_MS`] before it is blocked as a
/// flooder: an honest new speaker is on stage long before its third grace period ends; 96
/// peers opening streams again as soon as they were closed (and every 100 ms while refused)
/// kept a listener at 93 % of a core and cost it 10–12 % of the host's audio.
pub const AUDIO_STRIKES: u32 = 3;
/// See [`AUDIO_STRIKES`].
pub const AUDIO_STRIKE_WINDOW_MS: u64 = 60_000;
/// Peers whose audio strikes are counted at once (more are not counted until older ones
/// lapse).
pub const MAX_AUDIO_STRIKES: usize = 4_096;
/// Longest wait between dials of a stage member we are not connected to.
pub const STAGE_REDIAL_MAX_MS: u64 = 8_000;
/// Presence heartbeats per second that a room's audience sends in total, about: a listener's
/// interval stretches with the room (see `Core::presence_interval_ms`), so a room of
/// thousands does not push thousands of heartbeats per second through every node (every
/// heartbeat reaches every member).
pub const AUDIENCE_PRESENCE_PER_S: u64 = 8;
/// Longest interval between a listener's heartbeats, reached at 9,600 members (its TTL is
/// three of these, within `ruang_proto::ephemeral::MAX_TTL_MS`). Until then the audience's
/// heartbeats stay at [`AUDIENCE_PRESENCE_PER_S`] whatever the room's size; the price is
/// that a listener that crashes (one that leaves says so at once) is still counted for up
/// to three intervals: 75 s at 200 members, 37.5 min at 10,000.
pub const MAX_AUDIENCE_PRESENCE_MS: u64 = 1_200_000;
/// Requests for our audio held at once (each is an idle stream on its asker's connection;
/// the network layer bounds them too): beyond, new ones are turned down.
pub const MAX_AUDIO_REQUESTS: usize = 4_096;
/// Requests for our audio one peer may make at once (each replaces its last).
pub const AUDIO_REQUEST_BURST: u32 = 8;
/// Then per second (a listener asks again after a lost connection, with backoff).
pub const AUDIO_REQUESTS_PER_SECOND: f64 = 0.5;
