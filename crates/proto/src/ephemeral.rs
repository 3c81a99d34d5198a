//! Ephemeral signed messages that are not part of the log: presence, chat and reactions;
//! plus the per-author rate limiter and the presence table. All take `now` (unix ms).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::identity::PublicKey;
use crate::room::RoomId;
use crate::signed::{Signable, Verified, check_str};

/// Upper bound on a signed ephemeral message on the wire.
pub const MAX_EPHEMERAL_LEN: usize = 2048;
/// Longest display name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Longest chat line, in bytes.
pub const MAX_CHAT_LEN: usize = 500;
/// Longest reaction, in bytes (an emoji or a short word).
pub const MAX_REACTION_LEN: usize = 16;
/// Most addresses a presence may carry.
pub const MAX_ADDRESSES: usize = 8;
/// Longest address, in bytes (a binary multiaddr).
pub const MAX_ADDRESS_LEN: usize = 128;
/// Older messages are refused as stale or replayed.
pub const MAX_AGE_MS: u64 = 30_000;
/// Messages dated further than this in the future are refused.
pub const MAX_SKEW_MS: u64 = 30_000;
/// Longest presence time-to-live: an hour, three heartbeats of a listener in a room of ten
/// thousand, whose audience spaces its heartbeats out so that the room as a whole sends a
/// few per second (see ruang-session's `limits::MAX_AUDIENCE_PRESENCE_MS`).
pub const MAX_TTL_MS: u32 = 3_600_000;

/// A signed message about a room that is not part of its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ephemeral {
    /// The room.
    pub room: RoomId,
    /// Who signed it.
    pub author: PublicKey,
    /// The author's clock, unix ms.
    pub sent_at: u64,
    /// What it says.
    pub body: EphemeralBody,
}

/// The kinds of ephemeral message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EphemeralBody {
    /// "I am here": repeated before `ttl_ms` runs out.
    Presence {
        /// Self-chosen display name.
        name: String,
        /// How long this presence is valid.
        ttl_ms: u32,
        /// Where the author can be reached (binary multiaddrs, interpreted by the network layer).
        addresses: Vec<Vec<u8>>,
        /// Set on the last presence a node sends when it leaves.
        leaving: bool,
    },
    /// A chat line.
    Chat {
        /// The text.
        text: String,
    },
    /// A reaction (an emoji or a short word).
    Reaction {
        /// The reaction.
        reaction: String,
    },
}

impl Signable for Ephemeral {
    const DOMAIN: &'static [u8] = b"ruang/ephemeral/v1";
    const MAX_WIRE_LEN: usize = MAX_EPHEMERAL_LEN;

    fn author(&self) -> &PublicKey {
        &self.author
    }

    fn check_bounds(&self) -> Result<(), &'static str> {
        match &self.body {
            EphemeralBody::Presence {
                name,
                ttl_ms,
                addresses,
                ..
            } => {
                check_str(name, MAX_NAME_LEN, "name too long")?;
                if *ttl_ms > MAX_TTL_MS {
                    return Err("presence ttl too long");
                }
                if addresses.len() > MAX_ADDRESSES {
                    return Err("too many addresses");
                }
                if addresses.iter().any(|a| a.len() > MAX_ADDRESS_LEN) {
                    return Err("address too long");
                }
                Ok(())
            }
            EphemeralBody::Chat { text } => {
                if text.is_empty() {
                    return Err("empty chat line");
                }
                check_str(text, MAX_CHAT_LEN, "chat line too long")
            }
            EphemeralBody::Reaction { reaction } => {
                if reaction.is_empty() {
                    return Err("empty reaction");
                }
                check_str(reaction, MAX_REACTION_LEN, "reaction too long")
            }
        }
    }
}

/// Why a message's timestamp is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Freshness {
    /// Older than [`MAX_AGE_MS`]: stale or replayed.
    #[error("message is {age_ms} ms old")]
    Stale {
        /// How old.
        age_ms: u64,
    },
    /// Dated in the future beyond [`MAX_SKEW_MS`].
    #[error("message is dated {ahead_ms} ms in the future")]
    Future {
        /// How far ahead.
        ahead_ms: u64,
    },
}

impl Ephemeral {
    /// Whether `sent_at` is within the accepted window around `now`.
    pub fn check_fresh(&self, now: u64) -> Result<(), Freshness> {
        check_fresh(self.sent_at, now)
    }
}

/// Whether a timestamp is within [`MAX_AGE_MS`] before and [`MAX_SKEW_MS`] after `now`.
pub fn check_fresh(sent_at: u64, now: u64) -> Result<(), Freshness> {
    if sent_at > now.saturating_add(MAX_SKEW_MS) {
        Err(Freshness::Future {
            ahead_ms: sent_at - now,
        })
    } else if now.saturating_sub(sent_at) > MAX_AGE_MS {
        Err(Freshness::Stale {
            age_ms: now - sent_at,
        })
    } else {
        Ok(())
    }
}

/// What [`RateLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Within the rate.
    Allowed,
    /// Over the rate; drop the message. `strikes` counts denials in a row, so a caller can
    /// disconnect a peer that keeps flooding.
    Limited {
        /// Consecutive denials for this key.
        strikes: u32,
    },
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: u64,
    strikes: u32,
}

/// A token bucket per key: `burst` messages at once, refilled at `per_second`.
///
/// Holds at most `max_keys` buckets; beyond that the least recently used is forgotten (a
/// forgotten key starts with a full bucket, which only ever favours the sender).
pub struct RateLimiter<K> {
    burst: f64,
    per_ms: f64,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing bursts of `burst` and `per_second` on average per key.
    pub fn new(burst: u32, per_second: f64, max_keys: usize) -> Self {
        Self {
            burst: burst as f64,
            per_ms: per_second / 1000.0,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key` at `now` (ms) if there is one.
    pub fn check(&mut self, key: &K, now: u64) -> Rate {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.evict_oldest();
        }
        let burst = self.burst;
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
            strikes: 0,
        });
        let elapsed = now.saturating_sub(bucket.last) as f64;
        bucket.tokens = (bucket.tokens + elapsed * self.per_ms).min(burst);
        bucket.last = bucket.last.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.strikes = 0;
            Rate::Allowed
        } else {
            bucket.strikes = bucket.strikes.saturating_add(1);
            Rate::Limited {
                strikes: bucket.strikes,
            }
        }
    }

    /// Forgets `key` (e.g. when its peer disconnects).
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.last)
            .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
        }
    }
}

/// Most members off the stage a presence table tracks (the stage is always admitted: the
/// room's state bounds it).
pub const MAX_MEMBERS: usize = 50_000;

/// How a presence came to this table, which decides what happens when it is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A member of the stage: always admitted, never evicted.
    Stage,
    /// Passed on by this peer (`None`: by no known peer). When the table is full, a newcomer
    /// takes the place of the newest member introduced by the peer that introduced the most,
    /// unless that is its own peer: one source, however many keys it signs for, holds at most
    /// an equal share of the table with every other source.
    Via(Option<PublicKey>),
}

/// A present member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Display name.
    pub name: String,
    /// Addresses from the last presence.
    pub addresses: Vec<Vec<u8>>,
    /// When the presence lapses (unix ms).
    pub expires_at: u64,
    /// `sent_at` of the newest presence seen.
    pub last_sent_at: u64,
    /// When this table first had them, in the `now` of [`PresenceTable::insert`] (kept while
    /// their presence is refreshed).
    pub since: u64,
    /// How they came: the peer that passed on their first presence, or the stage.
    pub admission: Admission,
}

/// What inserting a presence changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// A member arrived.
    Joined,
    /// A member's presence was refreshed (name or addresses may have changed).
    Refreshed,
    /// A member said it is leaving.
    Left,
    /// Older than what is known, from another room, or not a presence: no change.
    Ignored,
    /// A member of the audience outside this table's sample (see [`PresenceTable::sampled`]):
    /// not kept, and not to be passed on.
    Unsampled,
}

/// Members that said they left, remembered this long (ms) so that an older heartbeat of
/// theirs arriving late (gossip does not keep order) cannot bring them back: past it, that
/// heartbeat is stale anyway ([`MAX_AGE_MS`] + [`MAX_SKEW_MS`]).
pub const DEPARTED_MEMORY_MS: u64 = MAX_AGE_MS + MAX_SKEW_MS;
/// Most departures a presence table remembers at once (see [`DEPARTED_MEMORY_MS`]).
pub const MAX_DEPARTED: usize = 4_096;

/// Who is in a room right now, from presence heartbeats. Expiring is proportional to what
/// expires, not to the room: entries are also indexed by when they lapse.
pub struct PresenceTable {
    members: BTreeMap<PublicKey, Member>,
    by_expiry: BTreeSet<(u64, PublicKey)>,
    /// Who left, with the `sent_at` of its leaving message and when it is forgotten.
    departed: BTreeMap<PublicKey, (u64, u64)>,
    departed_by_time: BTreeSet<(u64, PublicKey)>,
    /// Members off the stage by the peer that introduced them, newest last (`since`, key).
    introduced: HashMap<Option<PublicKey>, BTreeSet<(u64, PublicKey)>>,
    /// Members off the stage (the ones [`PresenceTable::capacity`] bounds).
    audience: usize,
    capacity: usize,
    /// In a sampled table, which members off the stage it keeps.
    sample: Option<Sample>,
}

/// A sampled table's rule: it keeps the members off the stage whose rank (a hash of the
/// room's salt and their key) is below a threshold. The threshold is a share of the rank space
/// set by the room's size ([`PresenceTable::expect_audience`]), in steps of a quarter octave,
/// so that every table of the room has the same one and keeps the same members: about `size`
/// of them. A table told nothing keeps everyone up to twice `size`, then pushes out the
/// highest rank.
struct Sample {
    size: usize,
    salt: [u8; 32],
    /// Members off the stage by rank.
    ranked: BTreeSet<(u64, PublicKey)>,
    /// Ranks at or above it are not kept (`u64::MAX`: everyone is); every member of
    /// `ranked` is below it.
    threshold: u64,
}

impl Sample {
    fn rank(&self, who: &PublicKey) -> u64 {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"ruang/presence-sample/v1")
            .chain_update(self.salt)
            .chain_update(who.0)
            .finalize();
        let mut rank = [0; 8];
        rank.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(rank)
    }

    /// Whether a member of rank `rank` would be kept.
    fn keeps(&self, rank: u64) -> bool {
        rank < self.threshold
    }
}

impl Default for PresenceTable {
    fn default() -> Self {
        Self::with_capacity(MAX_MEMBERS)
    }
}

impl PresenceTable {
    /// A table holding at most `capacity` members off the stage.
    pub fn with_capacity(capacity: usize) -> Self {
        PresenceTable {
            members: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            departed: BTreeMap::new(),
            departed_by_time: BTreeSet::new(),
            introduced: HashMap::new(),
            audience: 0,
            capacity,
            sample: None,
        }
    }

    /// A table that keeps a sample of about `size` members off the stage (the stage is always
    /// kept): those of lowest rank, a hash of `salt` (the room) and their key, the same
    /// members in every table of the room. Presence of the others is not kept and not passed
    /// on ([`PresenceChange::Unsampled`]), so that in a room of thousands each listener's
    /// heartbeats, arrival and departure reach only the peers it is connected to, not every
    /// member; [`PresenceTable::audience_estimate`] scales the sample to the room. Until the
    /// room is larger than `size` ([`PresenceTable::expect_audience`]) the table keeps
    /// everyone, and counts them exactly.
    pub fn sampled(size: usize, salt: [u8; 32]) -> Self {
        PresenceTable {
            sample: Some(Sample {
                size: size.max(1),
                salt,
                ranked: BTreeSet::new(),
                threshold: u64::MAX,
            }),
            ..Self::default()
        }
    }

    /// How many members off the stage are present: counted when every one of them is kept,
    /// estimated from the sample's share of the rank space otherwise (within ~5 % at a sample
    /// of 512, if the ranks are uniform: keys ground to rank low make it larger).
    pub fn audience_estimate(&self) -> u64 {
        match &self.sample {
            Some(s) if s.threshold < u64::MAX => {
                let held = s.ranked.len();
                let share = (s.threshold as f64 + 1.0) / 2f64.powi(64);
                ((held as f64 / share).round() as u64).max(held as u64)
            }
            _ => self.audience as u64,
        }
    }

    /// How many members are present, the audience estimated as
    /// [`PresenceTable::audience_estimate`] does.
    pub fn estimate(&self) -> u64 {
        (self.members.len() - self.audience) as u64 + self.audience_estimate()
    }

    /// Tells a sampled table that the room's audience is about `audience` listeners (the
    /// host's announcement, one number for the whole room, or this table's own estimate):
    /// the threshold becomes the share of the rank space that holds about the sample's size
    /// of them, rounded up to a quarter octave so that small changes in the count leave it
    /// where it is. Members above a lowered threshold go; those below a raised one come in
    /// with their next heartbeat.
    pub fn expect_audience(&mut self, audience: u64) {
        let Some(s) = &mut self.sample else {
            return;
        };
        let threshold = if audience <= s.size as u64 {
            u64::MAX
        } else {
            let quarters = (4.0 * (audience as f64 / s.size as f64).log2()).ceil();
            (2f64.powf(64.0 - quarters / 4.0)) as u64
        };
        if threshold == s.threshold {
            return;
        }
        s.threshold = threshold;
        let out: Vec<PublicKey> = s
            .ranked
            .range((threshold, PublicKey([0; 32]))..)
            .map(|(_, k)| *k)
            .collect();
        for k in out {
            self.remove(&k);
        }
    }

    /// Whether the table keeps only a sample of the audience now (more than its sample's size
    /// were present at some point).
    pub fn is_sampling(&self) -> bool {
        self.sample.as_ref().is_some_and(|s| s.threshold < u64::MAX)
    }

    /// `who`'s rank in this table's sample (`None` if it keeps everyone it hears of): the same
    /// in every table of the room.
    pub fn sample_rank(&self, who: &PublicKey) -> Option<u64> {
        self.sample.as_ref().map(|s| s.rank(who))
    }

    /// The rank below which this table keeps members off the stage (`u64::MAX`: all).
    pub fn sample_threshold(&self) -> u64 {
        self.sample.as_ref().map_or(u64::MAX, |s| s.threshold)
    }

    /// Whether this table would keep `who` as a member off the stage: always, unless it is
    /// sampling and `who`'s rank is outside the sample.
    pub fn would_keep(&self, who: &PublicKey) -> bool {
        self.sample.as_ref().is_none_or(|s| s.keeps(s.rank(who)))
    }

    /// Most members off the stage it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records a verified presence received at `now`, come by `admission`. The caller has
    /// checked freshness.
    pub fn insert(
        &mut self,
        msg: &Verified<Ephemeral>,
        now: u64,
        admission: Admission,
    ) -> PresenceChange {
        self.insert_aged(msg, now, 0, admission)
    }

    /// Like [`PresenceTable::insert`], for a presence that was already `age_ms` old at `now`
    /// (handed over by a member rather than gossiped as it was sent): it lapses `age_ms`
    /// sooner. A member new to the table is new as of `now` all the same.
    pub fn insert_aged(
        &mut self,
        msg: &Verified<Ephemeral>,
        now: u64,
        age_ms: u64,
        admission: Admission,
    ) -> PresenceChange {
        let EphemeralBody::Presence {
            name,
            ttl_ms,
            addresses,
            leaving,
        } = &msg.body
        else {
            return PresenceChange::Ignored;
        };
        if let Some(m) = self.members.get(&msg.author)
            && m.last_sent_at >= msg.sent_at
        {
            return PresenceChange::Ignored;
        }
        if let Some((left_at, _)) = self.departed.get(&msg.author) {
            if *left_at >= msg.sent_at {
                return PresenceChange::Ignored;
            }
            // Back after leaving.
            self.forget_departure(&msg.author);
        }
        if *leaving {
            self.remember_departure(msg.author, msg.sent_at, now);
            return if self.remove(&msg.author) {
                PresenceChange::Left
            } else if admission == Admission::Stage || self.would_keep(&msg.author) {
                PresenceChange::Ignored
            } else {
                PresenceChange::Unsampled
            };
        }
        let known = self
            .members
            .get(&msg.author)
            .map(|m| (m.since, m.admission));
        let (since, admission) = match (known, admission) {
            // Joined the stage since: no longer one of its introducer's.
            (Some((since, Admission::Via(by))), Admission::Stage) => {
                self.unintroduce(by, since, &msg.author);
                (since, Admission::Stage)
            }
            (Some(known), _) => known,
            (None, Admission::Stage) => (now, Admission::Stage),
            (None, Admission::Via(by)) => {
                if !self.make_sample_room_for(&msg.author) {
                    return PresenceChange::Unsampled;
                }
                if self.audience >= self.capacity && !self.make_room_for(by) {
                    return PresenceChange::Ignored;
                }
                self.introduced
                    .entry(by)
                    .or_default()
                    .insert((now, msg.author));
                self.audience += 1;
                if let Some(s) = &mut self.sample {
                    let rank = s.rank(&msg.author);
                    s.ranked.insert((rank, msg.author));
                }
                (now, Admission::Via(by))
            }
        };
        let member = Member {
            name: name.clone(),
            addresses: addresses.clone(),
            expires_at: now.saturating_add(u64::from(*ttl_ms).saturating_sub(age_ms)),
            last_sent_at: msg.sent_at,
            since,
            admission,
        };
        self.by_expiry.insert((member.expires_at, msg.author));
        match self.members.insert(msg.author, member) {
            None => PresenceChange::Joined,
            Some(old) => {
                if old.expires_at != self.members[&msg.author].expires_at {
                    self.by_expiry.remove(&(old.expires_at, msg.author));
                }
                PresenceChange::Refreshed
            }
        }
    }

    /// With the audience full, frees a place for a newcomer introduced by `by`: the newest
    /// member of the peer that introduced the most goes, unless that peer is `by` (or `by`
    /// has as many). Returns whether there is room now.
    fn make_room_for(&mut self, by: Option<PublicKey>) -> bool {
        let own = self.introduced.get(&by).map_or(0, BTreeSet::len);
        let Some((largest, newest)) = self
            .introduced
            .iter()
            .filter(|(_, members)| members.len() > own + 1)
            .max_by_key(|(source, members)| (members.len(), **source))
            .and_then(|(source, members)| Some((*source, members.last()?.1)))
        else {
            return false;
        };
        debug_assert_ne!(largest, by);
        self.remove(&newest)
    }

    /// In a sampled table, whether a newcomer off the stage is kept: its rank is below the
    /// threshold; and if the table holds twice the sample's size (the room grew faster than
    /// its count), the member of highest rank goes and its rank becomes the threshold.
    fn make_sample_room_for(&mut self, who: &PublicKey) -> bool {
        let Some(s) = &mut self.sample else {
            return true;
        };
        let rank = s.rank(who);
        if !s.keeps(rank) {
            return false;
        }
        if s.ranked.len() < 2 * s.size {
            return true;
        }
        let Some(&(highest, out)) = s.ranked.last() else {
            return true;
        };
        if highest < rank {
            s.threshold = rank;
            return false;
        }
        s.threshold = highest;
        self.remove(&out);
        true
    }

    fn unintroduce(&mut self, by: Option<PublicKey>, since: u64, who: &PublicKey) {
        if let Some(members) = self.introduced.get_mut(&by) {
            if members.remove(&(since, *who)) {
                self.audience -= 1;
                if let Some(s) = &mut self.sample {
                    let rank = s.rank(who);
                    s.ranked.remove(&(rank, *who));
                }
            }
            if members.is_empty() {
                self.introduced.remove(&by);
            }
        }
    }

    fn remember_departure(&mut self, who: PublicKey, sent_at: u64, now: u64) {
        self.forget_departure(&who);
        if self.departed.len() >= MAX_DEPARTED
            && let Some((_, oldest)) = self.departed_by_time.pop_first()
        {
            self.departed.remove(&oldest);
        }
        let forget_at = now.saturating_add(DEPARTED_MEMORY_MS);
        self.departed.insert(who, (sent_at, forget_at));
        self.departed_by_time.insert((forget_at, who));
    }

    fn forget_departure(&mut self, who: &PublicKey) {
        if let Some((_, at)) = self.departed.remove(who) {
            self.departed_by_time.remove(&(at, *who));
        }
    }

    /// Removes members whose presence lapsed by `now`; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<PublicKey> {
        while let Some(&(at, who)) = self.departed_by_time.first() {
            if at > now {
                break;
            }
            self.departed_by_time.pop_first();
            self.departed.remove(&who);
        }
        let mut gone = Vec::new();
        while let Some(&(at, who)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some(m) = self.members.remove(&who)
                && let Admission::Via(by) = m.admission
            {
                self.unintroduce(by, m.since, &who);
            }
            gone.push(who);
        }
        gone
    }

    /// Removes `who` (kicked, banned, disconnected).
    pub fn remove(&mut self, who: &PublicKey) -> bool {
        match self.members.remove(who) {
            Some(m) => {
                self.by_expiry.remove(&(m.expires_at, *who));
                if let Admission::Via(by) = m.admission {
                    self.unintroduce(by, m.since, who);
                }
                true
            }
            None => false,
        }
    }

    /// Whether `who` said it left (lately: see [`DEPARTED_MEMORY_MS`]) and has not come back.
    pub fn has_left(&self, who: &PublicKey) -> bool {
        self.departed.contains_key(who)
    }

    /// Whether `who` is present.
    pub fn contains(&self, who: &PublicKey) -> bool {
        self.members.contains_key(who)
    }

    /// `who`'s entry.
    pub fn get(&self, who: &PublicKey) -> Option<&Member> {
        self.members.get(who)
    }

    /// All present members.
    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &Member)> {
        self.members.iter()
    }

    /// How many are present.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Admission = Admission::Via(None);

    fn presence(
        who: &crate::Identity,
        sent_at: u64,
        ttl_ms: u32,
        leaving: bool,
    ) -> Verified<Ephemeral> {
        let msg = Ephemeral {
            room: crate::room::RoomId(crate::Hash([1; 32])),
            author: who.public(),
            sent_at,
            body: EphemeralBody::Presence {
                name: "x".into(),
                ttl_ms,
                addresses: Vec::new(),
                leaving,
            },
        };
        crate::signed::sign(who, msg).unwrap()
    }

    #[test]
    fn presence_lapses_at_its_latest_ttl_and_leaves_at_once() {
        let (a, b, c) = (
            crate::Identity::from_secret_bytes(&[1; 32]),
            crate::Identity::from_secret_bytes(&[2; 32]),
            crate::Identity::from_secret_bytes(&[3; 32]),
        );
        let mut t = PresenceTable::default();
        assert_eq!(
            t.insert(&presence(&a, 10, 1_000, false), 0, ANY),
            PresenceChange::Joined
        );
        assert_eq!(
            t.insert(&presence(&b, 10, 3_000, false), 0, ANY),
            PresenceChange::Joined
        );
        assert_eq!(
            t.insert(&presence(&c, 10, 3_000, false), 0, ANY),
            PresenceChange::Joined
        );
        // A beats again: it now lapses at 1,500, not at 1,000.
        assert_eq!(
            t.insert(&presence(&a, 20, 1_000, false), 500, ANY),
            PresenceChange::Refreshed
        );
        // An older beat changes nothing.
        assert_eq!(
            t.insert(&presence(&a, 15, 9_000, false), 600, ANY),
            PresenceChange::Ignored
        );
        assert_eq!(t.expire(1_499), Vec::<PublicKey>::new());
        assert_eq!(t.expire(1_500), vec![a.public()]);
        assert_eq!(
            t.insert(&presence(&c, 30, 3_000, true), 1_600, ANY),
            PresenceChange::Left
        );
        assert!(!t.contains(&c.public()) && t.len() == 1);
        assert!(t.remove(&b.public()));
        assert_eq!(t.expire(u64::MAX), Vec::<PublicKey>::new());
        assert!(t.is_empty() && t.by_expiry.is_empty());
    }

    #[test]
    fn one_source_cannot_keep_newcomers_out_of_a_full_table() {
        let key = |n: u32| {
            let mut secret = [7; 32];
            secret[..4].copy_from_slice(&n.to_le_bytes());
            crate::Identity::from_secret_bytes(&secret)
        };
        let (honest, sybil) = (Some(key(1_000).public()), Some(key(1_001).public()));
        let mut t = PresenceTable::with_capacity(10);
        // Two members through an honest peer, then the script fills the rest with its keys.
        for n in 0..2 {
            let p = presence(&key(n), 10, 60_000, false);
            assert_eq!(
                t.insert(&p, n.into(), Admission::Via(honest)),
                PresenceChange::Joined
            );
        }
        for n in 2..10 {
            let p = presence(&key(n), 10, 60_000, false);
            assert_eq!(
                t.insert(&p, n.into(), Admission::Via(sybil)),
                PresenceChange::Joined
            );
        }
        // Full: the script's next key is refused; an honest newcomer takes the place of the
        // script's newest.
        let p = presence(&key(10), 10, 60_000, false);
        assert_eq!(
            t.insert(&p, 10, Admission::Via(sybil)),
            PresenceChange::Ignored
        );
        let p = presence(&key(11), 10, 60_000, false);
        assert_eq!(
            t.insert(&p, 11, Admission::Via(honest)),
            PresenceChange::Joined
        );
        assert!(!t.contains(&key(9).public()) && t.contains(&key(8).public()));
        // Refreshes of those present still pass, whoever passes them on.
        let p = presence(&key(2), 20, 60_000, false);
        assert_eq!(
            t.insert(&p, 12, Admission::Via(honest)),
            PresenceChange::Refreshed
        );
        // Honest newcomers keep coming until both sources hold equal shares, then wait.
        for n in 12..14 {
            let p = presence(&key(n), 10, 60_000, false);
            assert_eq!(
                t.insert(&p, n.into(), Admission::Via(honest)),
                PresenceChange::Joined
            );
        }
        let p = presence(&key(14), 10, 60_000, false);
        assert_eq!(
            t.insert(&p, 14, Admission::Via(honest)),
            PresenceChange::Ignored
        );
        assert_eq!(t.len(), 10);
        // The stage is admitted beyond the bound, and a listener who joins the stage stops
        // counting against it.
        let p = presence(&key(16), 10, 60_000, false);
        assert_eq!(t.insert(&p, 16, Admission::Stage), PresenceChange::Joined);
        let p = presence(&key(0), 20, 60_000, false);
        assert_eq!(
            t.insert(&p, 17, Admission::Stage),
            PresenceChange::Refreshed
        );
        assert_eq!((t.len(), t.audience), (11, 9));
        let p = presence(&key(15), 11, 60_000, false);
        assert_eq!(
            t.insert(&p, 18, Admission::Via(honest)),
            PresenceChange::Joined
        );
        // Everyone lapses, and nothing is left behind.
        assert_eq!(t.expire(u64::MAX).len(), 12);
        assert!(t.introduced.is_empty() && t.audience == 0);
    }

    #[test]
    fn a_late_heartbeat_does_not_bring_back_who_left() {
        let a = crate::Identity::from_secret_bytes(&[1; 32]);
        let mut t = PresenceTable::default();
        // The leaving message overtakes the heartbeat sent before it.
        assert_eq!(
            t.insert(&presence(&a, 20, 60_000, true), 0, ANY),
            PresenceChange::Ignored
        );
        assert_eq!(
            t.insert(&presence(&a, 10, 60_000, false), 100, ANY),
            PresenceChange::Ignored
        );
        assert!(t.is_empty());
        // Coming back later is a join.
        assert_eq!(
            t.insert(&presence(&a, 30, 60_000, false), 200, ANY),
            PresenceChange::Joined
        );
        assert_eq!(
            t.insert(&presence(&a, 40, 60_000, true), 300, ANY),
            PresenceChange::Left
        );
        // The departure is forgotten once any older heartbeat is stale anyway.
        assert!(t.expire(300 + DEPARTED_MEMORY_MS).is_empty());
        assert!(t.departed.is_empty() && t.departed_by_time.is_empty());
    }

    #[test]
    fn rate_limiter_allows_burst_then_refills() {
        let mut rl = RateLimiter::new(3, 2.0, 10);
        let k = 1u8;
        for _ in 0..3 {
            assert_eq!(rl.check(&k, 0), Rate::Allowed);
        }
        assert_eq!(rl.check(&k, 0), Rate::Limited { strikes: 1 });
        assert_eq!(rl.check(&k, 100), Rate::Limited { strikes: 2 });
        // 2 per second: one token after 500 ms.
        assert_eq!(rl.check(&k, 500), Rate::Allowed);
        assert_eq!(rl.check(&k, 500), Rate::Limited { strikes: 1 });
        // Other keys have their own bucket.
        assert_eq!(rl.check(&2u8, 500), Rate::Allowed);
    }

    #[test]
    fn rate_limiter_is_bounded() {
        let mut rl = RateLimiter::new(1, 1.0, 4);
        for k in 0..100u32 {
            rl.check(&k, u64::from(k));
        }
        assert!(rl.buckets.len() <= 4);
    }

    #[test]
    fn freshness_window() {
        assert!(check_fresh(1_000_000, 1_000_000).is_ok());
        assert!(check_fresh(1_000_000 - MAX_AGE_MS, 1_000_000).is_ok());
        assert!(matches!(
            check_fresh(1_000_000 - MAX_AGE_MS - 1, 1_000_000),
            Err(Freshness::Stale { .. })
        ));
        assert!(matches!(
            check_fresh(1_000_000 + MAX_SKEW_MS + 1, 1_000_000),
            Err(Freshness::Future { .. })
        ));
    }

    fn keys(n: u32) -> Vec<crate::Identity> {
        (0..n)
            .map(|i| {
                let mut secret = [9; 32];
                secret[..4].copy_from_slice(&i.to_le_bytes());
                crate::Identity::from_secret_bytes(&secret)
            })
            .collect()
    }

    /// The lowest `n` ranks of `who` in a sampled table with `salt`.
    fn lowest(salt: [u8; 32], who: &[crate::Identity], n: usize) -> BTreeSet<PublicKey> {
        let probe = PresenceTable::sampled(1, salt);
        let sample = probe.sample.as_ref().unwrap();
        let mut ranked: Vec<(u64, PublicKey)> = who
            .iter()
            .map(|k| (sample.rank(&k.public()), k.public()))
            .collect();
        ranked.sort();
        ranked.into_iter().take(n).map(|(_, k)| k).collect()
    }

    #[test]
    fn a_sampled_table_keeps_everyone_until_it_fills() {
        let members = keys(40);
        let mut t = PresenceTable::sampled(64, [5; 32]);
        for k in &members {
            assert_eq!(
                t.insert(&presence(k, 10, 60_000, false), 0, ANY),
                PresenceChange::Joined
            );
        }
        assert!(!t.is_sampling());
        assert_eq!(t.len(), 40);
        assert_eq!(t.audience_estimate(), 40);
        // The stage is kept and counted apart.
        let stage = crate::Identity::from_secret_bytes(&[200; 32]);
        t.insert(&presence(&stage, 10, 60_000, false), 0, Admission::Stage);
        assert_eq!(t.estimate(), 41);
    }

    #[test]
    fn a_sampled_table_keeps_the_same_members_whatever_the_order_and_estimates_the_rest() {
        let members = keys(2_000);
        let salt = [5; 32];
        let run = |order: &mut dyn Iterator<Item = &crate::Identity>| {
            let mut t = PresenceTable::sampled(64, salt);
            t.expect_audience(2_000);
            assert!(t.is_sampling());
            let mut unsampled = 0;
            for k in order {
                match t.insert(&presence(k, 10, 60_000, false), 0, ANY) {
                    PresenceChange::Joined => {}
                    PresenceChange::Unsampled => unsampled += 1,
                    other => panic!("{other:?}"),
                }
            }
            (t, unsampled)
        };
        let (forward, unsampled) = run(&mut members.iter());
        let (backward, _) = run(&mut members.iter().rev());
        let kept: BTreeSet<PublicKey> = forward.iter().map(|(k, _)| *k).collect();
        let kept_backward: BTreeSet<PublicKey> = backward.iter().map(|(k, _)| *k).collect();
        assert_eq!(kept, kept_backward);
        // The threshold holds 53 to 64 of 2,000 on average (a quarter octave).
        assert_eq!(kept, lowest(salt, &members, kept.len()));
        assert!((40..=80).contains(&kept.len()), "{}", kept.len());
        assert_eq!(unsampled, 2_000 - kept.len());
        let estimate = forward.audience_estimate() as f64;
        assert!(
            (estimate - 2_000.0).abs() < 2_000.0 * 0.35,
            "estimated {estimate} of 2,000"
        );
        // A member outside the sample: its departure is not for this table either.
        let outside = members
            .iter()
            .find(|k| !kept.contains(&k.public()))
            .unwrap();
        let mut t = forward;
        assert!(!t.would_keep(&outside.public()));
        assert_eq!(
            t.insert(&presence(outside, 20, 60_000, true), 0, ANY),
            PresenceChange::Unsampled
        );
        // One of the sample leaves: what it keeps is still the lowest ranks present.
        let inside = members.iter().find(|k| kept.contains(&k.public())).unwrap();
        assert_eq!(
            t.insert(&presence(inside, 20, 60_000, true), 0, ANY),
            PresenceChange::Left
        );
        assert_eq!(t.len(), kept.len() - 1);
    }

    #[test]
    fn a_sampled_table_follows_the_rooms_size() {
        let members = keys(400);
        let salt = [6; 32];
        let mut t = PresenceTable::sampled(32, salt);
        // Told nothing, it keeps everyone up to twice its size.
        for k in &members {
            t.insert(&presence(k, 10, 60_000, false), 0, ANY);
        }
        assert_eq!(t.len(), 64);
        assert_eq!(
            t.iter().map(|(k, _)| *k).collect::<BTreeSet<_>>(),
            lowest(salt, &members, 64)
        );
        // Told the room's size, it keeps about its size, the lowest ranks.
        t.expect_audience(400);
        let sampled = t.len();
        assert!((15..=45).contains(&sampled), "{sampled}");
        assert_eq!(
            t.iter().map(|(k, _)| *k).collect::<BTreeSet<_>>(),
            lowest(salt, &members, sampled)
        );
        // A sample of ~30 tells 400 within ~20 % (one standard deviation).
        let estimate = t.audience_estimate();
        assert!((240..=560).contains(&estimate), "{estimate}");
        // A small change in the count moves nothing.
        t.expect_audience(410);
        assert_eq!(t.len(), sampled);
        // The room empties to a tenth: the threshold rises and newcomers of a rank it turned
        // away are taken in.
        t.expect_audience(30);
        assert!(!t.is_sampling());
        let newcomers = keys(420)[400..].to_vec();
        let taken = newcomers
            .iter()
            .filter(|k| t.insert(&presence(k, 30, 60_000, false), 0, ANY) == PresenceChange::Joined)
            .count();
        assert_eq!(taken, 20);
    }
}
