//! One room as this node lives it: the verified log, who is present, the rate limiters, and
//! the bookkeeping of timers. Owned by the node task; no I/O here.

use std::collections::{HashMap, HashSet, VecDeque};

use ruang_net::{Multiaddr, PeerId};
use ruang_proto::PublicKey;
use ruang_proto::ephemeral::{EphemeralBody, PresenceTable, RateLimiter};
use ruang_proto::room::{Role, Room};
use ruang_proto::seal::{Purpose, RoomKey};

use crate::event::RoomView;
use crate::ids;

/// Chat lines and reactions an author may send in a burst.
pub const CHAT_BURST: u32 = 10;
/// Chat lines and reactions per second an author may send on average.
pub const CHAT_PER_SECOND: f64 = 2.0;
/// Presence messages per second an author may send on average (heartbeats are every 2 s).
pub const PRESENCE_PER_SECOND: f64 = 2.0;
/// Consecutive over-rate messages from a directly connected author before it is disconnected.
pub const FLOOD_STRIKES: u32 = 50;
/// Authors tracked by each rate limiter.
pub const MAX_RATE_KEYS: usize = 10_000;
/// New log events an author may have forwarded in a burst.
pub const LOG_BURST: u32 = 20;
/// New log events per second an author may have forwarded on average.
pub const LOG_PER_SECOND: f64 = 2.0;

/// Chat lines and reactions held while no peer is on the room's topic.
pub const MAX_HELD: usize = 16;
/// How long a held chat line or reaction waits for a peer before it is given up (ms).
pub const HELD_TTL_MS: u64 = 10_000;

/// Chat lines and reactions that found no peer subscribed to the room's topic (a joiner's
/// first words can race the subscriptions of the members it just connected to), oldest first,
/// with when they were said. The node sends them when a peer subscribes and gives them up
/// after [`HELD_TTL_MS`], telling the user. Bounded by [`MAX_HELD`]: a full queue drops its
/// oldest.
#[derive(Debug, Default)]
pub struct Held {
    queue: VecDeque<(u64, EphemeralBody)>,
}

impl Held {
    /// Holds `body`, said at `now`; returns how many were dropped to make room (0 or 1).
    pub fn push(&mut self, now: u64, body: EphemeralBody) -> usize {
        let dropped = if self.queue.len() >= MAX_HELD {
            self.queue.pop_front();
            1
        } else {
            0
        };
        self.queue.push_back((now, body));
        dropped
    }

    /// Everything held with when it was said, oldest first; the queue is left empty.
    pub fn take(&mut self) -> Vec<(u64, EphemeralBody)> {
        self.queue.drain(..).collect()
    }

    /// Puts messages taken with [`Held::take`] back in front, in order; when that overfills
    /// the queue, the oldest are dropped.
    pub fn put_back(&mut self, taken: Vec<(u64, EphemeralBody)>) {
        for entry in taken.into_iter().rev() {
            if self.queue.len() >= MAX_HELD {
                break;
            }
            self.queue.push_front(entry);
        }
    }

    /// Gives up what has waited [`HELD_TTL_MS`] or longer by `now`; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.queue.len();
        self.queue
            .retain(|(at, _)| now < at.saturating_add(HELD_TTL_MS));
        before - self.queue.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The gossip topic of a room: named by its id, or for a private room by a hash of its key
/// (so peers outside the room do not learn which room it is).
pub fn topic(room: &ruang_proto::room::RoomId, key: Option<&RoomKey>) -> String {
    match key {
        Some(k) => format!("ruang/private/{}", k.topic_id().to_hex()),
        None => format!("ruang/room/{}", room.to_hex()),
    }
}

/// A room this node is in.
pub struct Session {
    /// The verified log and its state.
    pub room: Room,
    /// Its gossip topic.
    pub topic: String,
    /// Who is present.
    pub presence: PresenceTable,
    /// Display names seen in presence (kept after people leave, for the log's names).
    pub names: HashMap<PublicKey, String>,
    /// Chat and reaction rate limit per author.
    pub chat_limiter: RateLimiter<PublicKey>,
    /// Presence rate limit per author.
    pub presence_limiter: RateLimiter<PublicKey>,
    /// New log events forwarded per author (the log keeps them all; this bounds spreading).
    pub log_limiter: RateLimiter<PublicKey>,
    /// A private room's key: its payloads are sealed, and it is not in the directory.
    pub key: Option<RoomKey>,
    /// When this node's last presence went out (unix ms).
    pub last_presence: u64,
    /// The last presence found no peer on the room's topic: send again when one subscribes.
    pub presence_undelivered: bool,
    /// When presence was last sent early because a connection dropped (unix ms).
    pub presence_resent: u64,
    /// Chat lines and reactions that found no peer on the room's topic.
    pub held: Held,
    /// When it last announced the room (unix ms).
    pub last_announce: u64,
    /// When it last asked a member for missing events (unix ms).
    pub last_sync: u64,
    /// When it joined (unix ms).
    pub joined_at: u64,
    /// Since when the host has not been present (unix ms).
    pub host_missing_since: Option<u64>,
    /// When the room ended, if it did (unix ms): the node leaves shortly after.
    pub ended_at: Option<u64>,
    /// Addresses already told to the network layer, per peer.
    pub known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Members we dialled to have enough room neighbours, with when (unix ms).
    pub neighbour_dials: HashMap<PeerId, u64>,
    /// When the room neighbours were last counted (unix ms).
    pub last_neighbour_check: u64,
    /// Peers streaming audio to us now.
    pub streams_from: HashSet<PeerId>,
    /// Whether the "speakers are at their fan-out limit" notice was given.
    pub fanout_notice_given: bool,
    /// Whether the membership changed since the last state event.
    pub dirty: bool,
}

impl Session {
    /// Whether `peer` is a member present in the room now.
    pub fn is_present_peer(&self, peer: &PeerId) -> bool {
        present(&self.presence, peer)
    }

    /// Forgets the addresses of members no longer present (the map stays as large as the
    /// room).
    pub fn forget_departed(&mut self) {
        let presence = &self.presence;
        self.known_addrs.retain(|p, _| present(presence, p));
    }

    /// A session for `room`, joined at `now`; `key` for a private room.
    pub fn new(room: Room, key: Option<RoomKey>, now: u64) -> Session {
        Session {
            topic: topic(&room.id(), key.as_ref()),
            room,
            presence: PresenceTable::default(),
            names: HashMap::new(),
            chat_limiter: RateLimiter::new(CHAT_BURST, CHAT_PER_SECOND, MAX_RATE_KEYS),
            presence_limiter: RateLimiter::new(5, PRESENCE_PER_SECOND, MAX_RATE_KEYS),
            log_limiter: RateLimiter::new(LOG_BURST, LOG_PER_SECOND, MAX_RATE_KEYS),
            key,
            last_presence: 0,
            presence_undelivered: false,
            presence_resent: 0,
            held: Held::default(),
            last_announce: 0,
            last_sync: now,
            joined_at: now,
            host_missing_since: None,
            ended_at: None,
            known_addrs: HashMap::new(),
            neighbour_dials: HashMap::new(),
            last_neighbour_check: 0,
            streams_from: HashSet::new(),
            fanout_notice_given: false,
            dirty: true,
        }
    }

    /// Whether the room is private (sealed, unlisted).
    pub fn private(&self) -> bool {
        self.key.is_some()
    }

    /// Seals a payload for `purpose` if the room is private.
    pub fn seal(&self, purpose: Purpose, payload: Vec<u8>) -> Vec<u8> {
        match &self.key {
            Some(k) => k.seal(&self.room.id().0.0, purpose, &payload, &mut rand::rng()),
            None => payload,
        }
    }

    /// Opens a payload sealed for `purpose` if the room is private.
    pub fn open(&self, purpose: Purpose, payload: &[u8]) -> Option<Vec<u8>> {
        match &self.key {
            Some(k) => k.open(&self.room.id().0.0, purpose, payload).ok(),
            None => Some(payload.to_vec()),
        }
    }

    /// Whether `who` is present (or is `me`).
    pub fn present(&self, who: &PublicKey, me: &PublicKey) -> bool {
        who == me || self.presence.contains(who)
    }

    /// The peers this node should stream its audio to, stage first, at most `fanout`; and how
    /// many present members there are besides this node. Banned keys get nothing, nor do keys
    /// kicked less than the cool-down before `now_ms` (unix ms).
    pub fn audio_targets(
        &self,
        me: &PublicKey,
        fanout: usize,
        now_ms: u64,
    ) -> (Vec<PeerId>, usize) {
        let state = self.room.state();
        let mut members: Vec<(u8, PublicKey)> = self
            .presence
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k != me && state.role(k) != Role::Banned && !state.is_kicked(k, now_ms))
            .map(|k| (if state.on_stage(&k) { 0 } else { 1 }, k))
            .collect();
        members.sort();
        let total = members.len();
        let targets = members
            .into_iter()
            .take(fanout)
            .filter_map(|(_, k)| ids::peer_id(&k))
            .collect();
        (targets, total)
    }

    /// The UI's view of the room.
    pub fn view(&self, me: &PublicKey, my_name: &str) -> RoomView {
        RoomView::new(
            self.room.id().to_hex(),
            self.room.state(),
            me,
            self.room.len(),
            |k| {
                if k == me {
                    Some(my_name.to_string())
                } else {
                    self.names.get(k).cloned()
                }
            },
            |k| self.presence.contains(k),
            self.presence
                .iter()
                .map(|(k, _)| *k)
                .chain(std::iter::once(*me)),
        )
    }

    /// A display name for `who`.
    pub fn name_of(&self, who: &PublicKey) -> String {
        self.names
            .get(who)
            .cloned()
            .unwrap_or_else(|| who.fingerprint().to_string())
    }
}

fn present(presence: &PresenceTable, peer: &PeerId) -> bool {
    ids::public_key(peer).is_some_and(|k| presence.contains(&k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str) -> EphemeralBody {
        EphemeralBody::Chat { text: text.into() }
    }

    fn texts(taken: &[(u64, EphemeralBody)]) -> Vec<String> {
        taken
            .iter()
            .map(|(_, b)| match b {
                EphemeralBody::Chat { text } => text.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn held_messages_come_out_in_order_and_expire_after_their_ttl() {
        let mut held = Held::default();
        assert_eq!(held.push(1_000, chat("a")), 0);
        assert_eq!(held.push(2_000, chat("b")), 0);
        assert_eq!(held.expire(1_000 + HELD_TTL_MS - 1), 0);
        assert_eq!(held.expire(1_000 + HELD_TTL_MS), 1);
        assert_eq!(held.take(), vec![(2_000, chat("b"))]);
        assert!(held.is_empty());
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_put_back_keeps_the_order_and_the_bound() {
        let mut held = Held::default();
        for i in 0..MAX_HELD {
            assert_eq!(held.push(i as u64, chat(&i.to_string())), 0);
        }
        assert_eq!(held.push(99, chat("new")), 1);
        let all = held.take();
        assert_eq!(all.len(), MAX_HELD);
        assert_eq!((all[0].0, texts(&all)[0].as_str()), (1, "1"));
        assert_eq!(texts(&all)[MAX_HELD - 1], "new");
        // None could be sent; one more was said meanwhile: the oldest goes.
        held.push(500, chat("meanwhile"));
        held.put_back(all);
        let again = held.take();
        assert_eq!(again.len(), MAX_HELD);
        assert_eq!((again[0].0, texts(&again)[0].as_str()), (2, "2"));
        assert_eq!(texts(&again)[MAX_HELD - 2..], ["new", "meanwhile"]);
    }
}
