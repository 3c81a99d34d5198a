//! One room as this node lives it ([`Membership`]): the verified log, who is present, the rate
//! limiters, and the bookkeeping of its timers. Owned by [`crate::Core`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use rand::Rng;
use ruang_proto::PublicKey;
use ruang_proto::ephemeral::{EphemeralBody, PresenceTable, RateLimiter};
use ruang_proto::room::{Role, Room};
use ruang_proto::seal::{Purpose, RoomKey};

use crate::event::RoomView;
use crate::limits::*;

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

    /// Holds again a message said at `at` whose sending found nobody, in time order; returns
    /// how many were dropped to stay within [`MAX_HELD`] (the oldest go).
    pub fn hold_again(&mut self, at: u64, body: EphemeralBody) -> usize {
        let position = self.queue.partition_point(|(t, _)| *t <= at);
        self.queue.insert(position, (at, body));
        let mut dropped = 0;
        while self.queue.len() > MAX_HELD {
            self.queue.pop_front();
            dropped += 1;
        }
        dropped
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

/// Chat lines and reactions already taken, by author, signed time and content, for as long as a
/// copy of one could still be accepted ([`ruang_proto::ephemeral::MAX_AGE_MS`] after it was
/// said): a copy delivered again (by a peer replaying it after gossipsub forgot it) is not
/// shown again and does not count against its author's rate. Bounded by [`MAX_SAID`]: when
/// full, the one said longest ago is forgotten.
#[derive(Debug, Default)]
pub struct Said {
    by_time: BTreeSet<(u64, PublicKey, u64)>,
}

impl Said {
    /// Records `body` by `author` signed at `sent_at`, at unix time `now`; false when it was
    /// already there. (Two lines said in the same millisecond are two messages: held lines go
    /// out together.)
    pub fn insert(
        &mut self,
        author: PublicKey,
        sent_at: u64,
        body: &EphemeralBody,
        now: u64,
    ) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match body {
            EphemeralBody::Chat { text } => (0u8, text).hash(&mut h),
            EphemeralBody::Reaction { reaction } => (1u8, reaction).hash(&mut h),
            EphemeralBody::Presence { .. } => 2u8.hash(&mut h),
        }
        let digest = h.finish();
        let expired = now.saturating_sub(ruang_proto::ephemeral::MAX_AGE_MS);
        while let Some(first) = self.by_time.first()
            && first.0 < expired
        {
            self.by_time.pop_first();
        }
        if !self.by_time.insert((sent_at, author, digest)) {
            return false;
        }
        if self.by_time.len() > MAX_SAID {
            self.by_time.pop_first();
        }
        true
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
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

/// A room this node is in. Times are the core's monotonic milliseconds unless said otherwise.
pub struct Membership {
    /// The verified log and its state.
    pub room: Room,
    /// Its gossip topic.
    pub topic: String,
    /// Who is present.
    pub presence: PresenceTable,
    /// Display names seen in presence: of those present, and of those the room's state
    /// names (the stage, hands, invitations, mutes, bans), who are kept after they leave.
    pub names: HashMap<PublicKey, String>,
    /// Chat lines and reactions taken lately (replays are ignored).
    pub said: Said,
    /// Chat and reaction rate limit per author.
    pub chat_limiter: RateLimiter<PublicKey>,
    /// Presence rate limit per author.
    pub presence_limiter: RateLimiter<PublicKey>,
    /// Members new to the presence table per peer that passed them on.
    pub newcomer_limiter: RateLimiter<PublicKey>,
    /// New log events forwarded per author (the log keeps them all; this bounds spreading).
    pub log_limiter: RateLimiter<PublicKey>,
    /// Log events with missing parents per peer that passed them on.
    pub orphan_limiter: RateLimiter<PublicKey>,
    /// A private room's key: its payloads are sealed, and it is not in the directory.
    pub key: Option<RoomKey>,
    /// Which key of the room `key` is: 0 for the ticket's, one more at each rekey
    /// (`ruang_proto::rekey`; a member joining with a newer ticket starts at 0 too, and takes
    /// any later rekey).
    pub epoch: u32,
    /// A newer key this node moves to shortly (its epoch and the key).
    pub pending_key: Option<(u32, RoomKey)>,
    /// When this node's last presence went out .
    pub last_presence: u64,
    /// The heartbeat interval that presence was sent for (its TTL is three of these): the
    /// next goes out within it even when the interval has grown since.
    pub presence_sent_every: u64,
    /// Presence goes out at the next tick whatever the interval (it was lost or found nobody).
    pub presence_due: bool,
    /// The last presence found no peer on the room's topic: send again when one subscribes.
    pub presence_undelivered: bool,
    /// When presence was last sent early because a connection dropped .
    pub presence_resent: Option<u64>,
    /// Chat lines and reactions that found no peer on the room's topic.
    pub held: Held,
    /// When it last announced the room .
    pub last_announce: u64,
    /// Its last announcement reached nobody (no peer on the directory's topic yet).
    pub announcement_undelivered: bool,
    /// The listener count it last announced (see `Core::maybe_announce`).
    pub announced_listeners: u64,
    /// When it last asked a member for missing events .
    pub last_sync: u64,
    /// When it joined .
    pub joined_at: u64,
    /// Since when the host has not been present .
    pub host_missing_since: Option<u64>,
    /// When the room ended, if it did : the node leaves shortly after.
    pub ended_at: Option<u64>,
    /// Addresses (multiaddr bytes) already told to the network layer, per member.
    pub known_addrs: HashMap<PublicKey, Vec<Vec<u8>>>,
    /// The last presence of each member of `presence`, as its author signed it: handed to a
    /// newcomer that asks (`SyncRequest::Presence`). No larger than the table for long (see
    /// [`Membership::keep_signed_presence`]).
    pub signed_presence: HashMap<PublicKey, Vec<u8>>,
    /// Members we dialled to have enough room neighbours, with when.
    pub neighbour_dials: HashMap<PublicKey, u64>,
    /// Hosts (an address's IP or DNS name, see [`dial_host`]) we dialled a member at lately
    /// (a welcome or a neighbour dial), with when: see [`Membership::claim_dial`].
    pub dialled_hosts: HashMap<Vec<u8>, u64>,
    /// When the room neighbours were last counted.
    pub last_neighbour_check: u64,
    /// Peers streaming audio to us now.
    pub streams_from: HashSet<PublicKey>,
    /// Peers not on stage whose streams are closed at the end of a grace period unless they
    /// are on stage by then (see `limits::AUDIO_ADMISSION_GRACE_MS`); as many as streams
    /// the network layer admits.
    pub admission_pending: HashSet<PublicKey>,
    /// Per peer, how many times its streams were closed for not being on stage, since when
    /// (see `limits::AUDIO_STRIKES`); at most `limits::MAX_AUDIO_STRIKES` peers.
    pub audio_strikes: HashMap<PublicKey, (u32, u64)>,
    /// Peers that streamed audio to us since we joined: we keep (or get back) a connection
    /// to those on stage, since a listener behind NAT cannot be dialled back.
    pub heard_from: HashSet<PublicKey>,
    /// Whether the "speakers are at their fan-out limit" notice was given.
    pub fanout_notice_given: bool,
    /// Whether the membership or the state changed since the last state event.
    pub dirty: bool,
    /// When the last state event went out.
    pub last_state_event: Option<u64>,
    /// This node's secret for ordering listeners of equal standing (see
    /// [`Membership::audio_audience`]): nobody can choose a key that sorts first.
    pub fanout_salt: u64,
}

impl Membership {
    /// The addresses of a member's presence to dial now (at most `MAX_SHARED_ADDRS`), their
    /// hosts recorded; `None` when one of those hosts was dialled within `NEIGHBOUR_RETRY_MS`
    /// or `MAX_DIALLED_HOSTS` are remembered. Whoever signs a presence chooses its addresses:
    /// keys that all name a third party's address cost it one dial per member a while.
    pub fn claim_dial(&mut self, addresses: &[Vec<u8>], now: u64) -> Option<Vec<Vec<u8>>> {
        if self.host_dialled_lately(addresses) {
            return None;
        }
        let addresses: Vec<Vec<u8>> = addresses.iter().take(MAX_SHARED_ADDRS).cloned().collect();
        let hosts: Vec<Vec<u8>> = addresses.iter().filter_map(|a| dial_host(a)).collect();
        if self.dialled_hosts.len() + hosts.len() > MAX_DIALLED_HOSTS {
            return None;
        }
        for host in hosts {
            self.dialled_hosts.insert(host, now);
        }
        Some(addresses)
    }

    /// Whether one of the hosts of these addresses (the first `MAX_SHARED_ADDRS`) was dialled
    /// lately (see [`Membership::claim_dial`]).
    pub fn host_dialled_lately(&self, addresses: &[Vec<u8>]) -> bool {
        addresses
            .iter()
            .take(MAX_SHARED_ADDRS)
            .filter_map(|a| dial_host(a))
            .any(|h| self.dialled_hosts.contains_key(&h))
    }

    /// Forgets the addresses of members no longer present, and the names of those the
    /// room's state does not name either (both maps stay as large as the room: a script with
    /// thousands of keys that come and go leaves nothing behind).
    pub fn forget_departed(&mut self) {
        let presence = &self.presence;
        self.known_addrs.retain(|k, _| presence.contains(k));
        self.signed_presence.retain(|k, _| presence.contains(k));
        let state = self.room.state();
        self.names.retain(|k, _| {
            presence.contains(k)
                || state.role(k) != Role::Listener
                || state.hands.contains(k)
                || state.invited.contains(k)
                || state.muted.contains(k)
                || state.recording.contains(k)
        });
    }

    /// Keeps `author`'s newest presence, as signed (`wire`), once the table took it. The
    /// table drops members without saying so (a fuller sample, a lapse): when this map holds
    /// twice as many as the table, those gone are forgotten.
    pub fn keep_signed_presence(&mut self, author: PublicKey, wire: &[u8]) {
        self.signed_presence.insert(author, wire.to_vec());
        if self.signed_presence.len() > 2 * self.presence.len() + 64 {
            let presence = &self.presence;
            self.signed_presence.retain(|k, _| presence.contains(k));
        }
    }

    /// A membership of `room`, joined at `now`; `key` for a private room; `fanout_salt` a
    /// random number (see [`Membership::fanout_salt`]); `audience_sample` the most listeners
    /// whose presence it keeps (see [`PresenceTable::sampled`]).
    pub fn new(
        room: Room,
        key: Option<RoomKey>,
        now: u64,
        fanout_salt: u64,
        audience_sample: usize,
    ) -> Membership {
        Membership {
            topic: topic(&room.id(), key.as_ref()),
            presence: PresenceTable::sampled(audience_sample, room.id().0.0),
            room,
            names: HashMap::new(),
            said: Said::default(),
            chat_limiter: RateLimiter::new(CHAT_BURST, CHAT_PER_SECOND, MAX_RATE_KEYS),
            presence_limiter: RateLimiter::new(5, PRESENCE_PER_SECOND, MAX_RATE_KEYS),
            newcomer_limiter: RateLimiter::new(
                NEW_MEMBERS_BURST,
                NEW_MEMBERS_PER_SECOND,
                MAX_RATE_KEYS,
            ),
            log_limiter: RateLimiter::new(LOG_BURST, LOG_PER_SECOND, MAX_RATE_KEYS),
            orphan_limiter: RateLimiter::new(ORPHANS_BURST, ORPHANS_PER_SECOND, MAX_RATE_KEYS),
            key,
            epoch: 0,
            pending_key: None,
            last_presence: 0,
            presence_sent_every: u64::MAX,
            presence_due: false,
            presence_undelivered: false,
            presence_resent: None,
            held: Held::default(),
            last_announce: 0,
            announced_listeners: 0,
            last_sync: now,
            joined_at: now,
            host_missing_since: None,
            ended_at: None,
            known_addrs: HashMap::new(),
            signed_presence: HashMap::new(),
            announcement_undelivered: false,
            neighbour_dials: HashMap::new(),
            dialled_hosts: HashMap::new(),
            last_neighbour_check: 0,
            streams_from: HashSet::new(),
            admission_pending: HashSet::new(),
            audio_strikes: HashMap::new(),
            heard_from: HashSet::new(),
            fanout_notice_given: false,
            dirty: true,
            last_state_event: None,
            fanout_salt,
        }
    }

    /// Whether the room is private (sealed, unlisted).
    pub fn private(&self) -> bool {
        self.key.is_some()
    }

    /// Seals a payload for `purpose` if the room is private (nonces from `rng`).
    pub fn seal(&self, purpose: Purpose, payload: Vec<u8>, rng: &mut impl Rng) -> Vec<u8> {
        match &self.key {
            Some(k) => k.seal(&self.room.id().0.0, purpose, &payload, rng),
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

    /// The members that asked for this node's audio (`asked`) and may have it, in the order
    /// they are served: the stage first, then the audience by how long it has been here, then
    /// in an order only this node knows. Only present members are served (a private room's
    /// presence proves its key); banned keys get nothing, nor do keys kicked less than the
    /// cool-down before `unix_ms`.
    pub fn audio_audience(
        &self,
        me: &PublicKey,
        unix_ms: u64,
        asked: impl Fn(&PublicKey) -> bool,
    ) -> Vec<PublicKey> {
        let state = self.room.state();
        let salted = |k: &PublicKey| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.fanout_salt.hash(&mut h);
            k.0.hash(&mut h);
            h.finish()
        };
        // A newcomer never takes the place of someone already heard, and keys ground to
        // sort first (presences cost nothing) gain nothing.
        let mut members: Vec<(u8, u64, u64, PublicKey)> = self
            .presence
            .iter()
            .filter(|(k, _)| *k != me && asked(k) && self.may_hear(k, unix_ms))
            .map(|(k, m)| {
                let stage = if state.on_stage(k) { 0 } else { 1 };
                (stage, m.since, salted(k), *k)
            })
            .collect();
        members.sort_unstable();
        members.into_iter().map(|(.., k)| k).collect()
    }

    /// Whether `who` may be sent this room's audio at `unix_ms`: not banned, not kicked
    /// within the cool-down.
    pub fn may_hear(&self, who: &PublicKey, unix_ms: u64) -> bool {
        let state = self.room.state();
        state.role(who) != Role::Banned && !state.is_kicked(who, unix_ms)
    }

    /// The UI's view of the room.
    pub fn view(&self, me: &PublicKey, my_name: &str) -> RoomView {
        RoomView::new(
            self.room.id(),
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
            self.presence
                .is_sampling()
                .then(|| self.presence.audience_estimate()),
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

/// The host part of a binary multiaddr that starts with one (`/ip4`, `/ip6`, `/dns*`), as
/// bytes; `None` for anything else and for loopback (this machine's own processes, as in
/// tests, are not a third party to protect).
pub fn dial_host(addr: &[u8]) -> Option<Vec<u8>> {
    // Protocol codes: ip4 4, ip6 41, dns 53, dns4 54, dns6 55 (one varint byte each).
    let (&code, rest) = addr.split_first()?;
    match code {
        4 => {
            let ip = rest.get(..4)?;
            (ip[0] != 127).then(|| ip.to_vec())
        }
        41 => {
            let ip = rest.get(..16)?;
            let loopback = ip[..15].iter().all(|b| *b == 0) && ip[15] == 1;
            (!loopback).then(|| ip.to_vec())
        }
        53..=55 => {
            let (&len, name) = rest.split_first()?;
            // Names up to 127 bytes (a one-byte varint length).
            (len < 0x80)
                .then(|| name.get(..usize::from(len)))
                .flatten()
                .map(<[u8]>::to_vec)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_hosts_are_ips_and_names_but_not_loopback() {
        assert_eq!(
            dial_host(&[4, 198, 51, 100, 7, 0x91, 0x02]),
            Some(vec![198, 51, 100, 7])
        );
        assert_eq!(dial_host(&[4, 127, 0, 0, 1]), None);
        let mut v6 = vec![41];
        v6.extend([0x20, 0x01, 0x0d, 0xb8]);
        v6.extend([0; 12]);
        assert_eq!(dial_host(&v6).map(|h| h.len()), Some(16));
        let mut loop6 = vec![41];
        loop6.extend([0; 15]);
        loop6.push(1);
        assert_eq!(dial_host(&loop6), None);
        assert_eq!(dial_host(&[54, 3, b'a', b'.', b'b']), Some(b"a.b".to_vec()));
        assert_eq!(dial_host(&[54, 9, b'a']), None);
        assert_eq!(dial_host(&[]), None);
        assert_eq!(dial_host(&[4, 1]), None);
    }

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
    fn a_full_queue_drops_its_oldest_and_holding_again_keeps_the_order_and_the_bound() {
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
        for (at, body) in all {
            held.hold_again(at, body);
        }
        let again = held.take();
        assert_eq!(again.len(), MAX_HELD);
        assert_eq!((again[0].0, texts(&again)[0].as_str()), (2, "2"));
        assert_eq!(texts(&again)[MAX_HELD - 2..], ["new", "meanwhile"]);
    }
}
