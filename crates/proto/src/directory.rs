//! The room directory: signed announcements and the table of rooms they build (DESIGN.md §4).
//!
//! An announcement carries the room's signed genesis, so anyone can check that the room id is
//! the genesis hash and that the announcer is the host who opened it or one of the successors
//! that host named. Nobody else can list, relist or end someone's room.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ephemeral::{MAX_ADDRESS_LEN, MAX_ADDRESSES, MAX_NAME_LEN};
use crate::identity::PublicKey;
use crate::room::{Event, EventBody, Info, RoomId, Visibility};
use crate::signed::{self, Signable, Verified, VerifyError, check_str};

/// Upper bound on a signed announcement on the wire.
pub const MAX_ANNOUNCEMENT_LEN: usize = 8192;
/// Most speakers previewed in an announcement.
pub const MAX_PREVIEW_SPEAKERS: usize = 8;
/// An announcement dated further than this in the future is refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;
/// Longest time an announcement may stay valid without being refreshed.
pub const MAX_ANNOUNCEMENT_TTL_MS: u64 = 5 * 60_000;
/// How often hosts re-announce (DESIGN.md §4).
pub const ANNOUNCE_INTERVAL_MS: u64 = 20_000;
/// How long an announcement stays valid by default: three refresh intervals.
pub const DEFAULT_ANNOUNCEMENT_TTL_MS: u64 = 3 * ANNOUNCE_INTERVAL_MS;
/// Most rooms a directory holds. A full directory refuses rooms new to it: established
/// listings are never pushed out by newcomers (they leave when their host stops refreshing
/// them).
pub const MAX_ROOMS: usize = 10_000;
/// Most rooms listed at once by one announcing key: one key cannot fill the directory.
pub const MAX_ROOMS_PER_AUTHOR: usize = 4;

/// A speaker shown in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerPreview {
    /// Their key.
    pub key: PublicKey,
    /// Their display name.
    pub name: String,
}

/// A room's listing in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The room.
    pub room: RoomId,
    /// Who signed this announcement: the host who opened the room or a named successor.
    pub author: PublicKey,
    /// The room's signed genesis, proving who opened it.
    pub genesis: Vec<u8>,
    /// Title, topic, tags, language (current, not necessarily the genesis's).
    pub info: Info,
    /// The current host.
    pub host: PublicKey,
    /// The host's display name.
    pub host_name: String,
    /// Some of the speakers.
    pub speakers: Vec<SpeakerPreview>,
    /// How many are listening.
    pub listener_count: u32,
    /// Where to reach the room (binary multiaddrs with the announcer's peer id).
    pub addresses: Vec<Vec<u8>>,
    /// When the room started (unix ms).
    pub started_at: u64,
    /// When a scheduled room will start (unix ms), if it has not yet.
    pub scheduled_for: Option<u64>,
    /// When this announcement was signed (unix ms).
    pub issued_at: u64,
    /// When it stops being valid (unix ms).
    pub expires_at: u64,
    /// Set on the last announcement of a room that has ended.
    pub ended: bool,
}

impl Signable for Announcement {
    const DOMAIN: &'static [u8] = b"ruang/announcement/v1";
    const MAX_WIRE_LEN: usize = MAX_ANNOUNCEMENT_LEN;

    fn author(&self) -> &PublicKey {
        &self.author
    }

    fn check_bounds(&self) -> Result<(), &'static str> {
        self.info.check_bounds()?;
        check_str(&self.host_name, MAX_NAME_LEN, "host name too long")?;
        if self.speakers.len() > MAX_PREVIEW_SPEAKERS {
            return Err("too many speakers in preview");
        }
        for s in &self.speakers {
            check_str(&s.name, MAX_NAME_LEN, "speaker name too long")?;
        }
        if self.addresses.len() > MAX_ADDRESSES
            || self.addresses.iter().any(|a| a.len() > MAX_ADDRESS_LEN)
        {
            return Err("too many or too long addresses");
        }
        if self.expires_at < self.issued_at {
            return Err("expires before it was issued");
        }
        Ok(())
    }
}

/// Why an announcement was not taken into the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// Size, encoding, bounds or signature.
    #[error("invalid announcement: {0}")]
    Invalid(#[from] VerifyError),
    /// The genesis it carries is invalid or opens another room.
    #[error("announcement carries a genesis that does not open its room")]
    BadGenesis,
    /// Signed by someone who is neither the room's host nor a named successor, or naming a
    /// host other than its signer.
    #[error("announced by someone who is not the room's host or a named successor")]
    NotHost,
    /// The directory is full: rooms new to it wait for others to leave.
    #[error("the directory is full")]
    Full,
    /// Its announcer already has [`MAX_ROOMS_PER_AUTHOR`] rooms listed.
    #[error("its announcer already has {MAX_ROOMS_PER_AUTHOR} rooms listed")]
    TooManyRooms,
    /// A private room's genesis: private rooms are never listed.
    #[error("private rooms are not announced")]
    Private,
    /// Already expired.
    #[error("announcement expired")]
    Expired,
    /// Dated in the future beyond the skew bound.
    #[error("announcement dated {ahead_ms} ms in the future")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
    /// Valid for longer than [`MAX_ANNOUNCEMENT_TTL_MS`].
    #[error("announcement valid for too long")]
    TooLongLived,
    /// Not newer than the one held for this room (a duplicate or a replay).
    #[error("announcement older than the one held")]
    Superseded,
}

/// Verifies an announcement's signature, genesis proof and time bounds at `now` (unix ms).
pub fn verify_announcement(wire: &[u8], now: u64) -> Result<Verified<Announcement>, AnnounceError> {
    let ann = signed::verify::<Announcement>(wire)?;
    let genesis = signed::verify::<Event>(&ann.genesis).map_err(|_| AnnounceError::BadGenesis)?;
    let EventBody::Genesis(body) = &genesis.body else {
        return Err(AnnounceError::BadGenesis);
    };
    if RoomId(genesis.hash()) != ann.room {
        return Err(AnnounceError::BadGenesis);
    }
    if body.visibility == Visibility::Private {
        return Err(AnnounceError::Private);
    }
    if ann.author != genesis.author && !body.successors.contains(&ann.author) {
        return Err(AnnounceError::NotHost);
    }
    // Only the host announces its room: the host shown is the key that signed.
    if ann.host != ann.author {
        return Err(AnnounceError::NotHost);
    }
    if ann.issued_at > now.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(AnnounceError::FromTheFuture {
            ahead_ms: ann.issued_at - now,
        });
    }
    if ann.expires_at <= now {
        return Err(AnnounceError::Expired);
    }
    if ann.expires_at - ann.issued_at.min(ann.expires_at) > MAX_ANNOUNCEMENT_TTL_MS
        || ann.expires_at > now.saturating_add(MAX_ANNOUNCEMENT_TTL_MS + MAX_CLOCK_SKEW_MS)
    {
        return Err(AnnounceError::TooLongLived);
    }
    Ok(ann)
}

/// What an accepted announcement did to the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A room not listed before.
    Added,
    /// A newer announcement for a listed room.
    Refreshed,
    /// The room ended and was removed.
    Ended,
}

struct Entry {
    ann: Verified<Announcement>,
    /// When this directory first listed the room (unix ms): the listing's order.
    first_seen: u64,
    /// Rooms first listed in the same millisecond (a directory answer, taken in the order the
    /// answering peer listed them) keep the order they came in.
    seq: u64,
    /// Peers whose directory answers listed the room (at most [`MAX_VOUCHERS`]).
    vouchers: Vec<PublicKey>,
}

/// Answering peers counted per room: rooms that more peers listed come first (see
/// [`Directory::list`]).
pub const MAX_VOUCHERS: usize = 3;

/// The rooms currently announced. Bounded by [`MAX_ROOMS`], and by [`MAX_ROOMS_PER_AUTHOR`]
/// per announcing key.
#[derive(Default)]
pub struct Directory {
    rooms: HashMap<RoomId, Entry>,
    /// Rooms listed per announcing key.
    per_author: HashMap<PublicKey, usize>,
    /// Ended rooms, until their last announcement expires, so a replay cannot relist them.
    tombstones: HashMap<RoomId, u64>,
    /// The `seq` of the next room listed.
    next_seq: u64,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies and inserts an announcement received at `now`.
    pub fn insert(&mut self, wire: &[u8], now: u64) -> Result<Listing, AnnounceError> {
        let ann = verify_announcement(wire, now)?;
        self.insert_verified(ann, now)
    }

    /// Inserts an announcement from `peer`'s directory answer, received at `now` (unix ms):
    /// as [`Directory::insert`], and the room counts `peer` as one more peer that lists it.
    pub fn insert_answered(
        &mut self,
        wire: &[u8],
        now: u64,
        peer: PublicKey,
    ) -> Result<Listing, AnnounceError> {
        let ann = verify_announcement(wire, now)?;
        let room = ann.room;
        let listing = self.insert_verified(ann, now);
        // A room we hold already (the answer's copy is not newer) is vouched for too.
        if let Some(entry) = self.rooms.get_mut(&room)
            && entry.vouchers.len() < MAX_VOUCHERS
            && !entry.vouchers.contains(&peer)
        {
            entry.vouchers.push(peer);
        }
        listing
    }

    /// Inserts an announcement already checked with [`verify_announcement`], received at
    /// `now` (unix ms).
    pub fn insert_verified(
        &mut self,
        ann: Verified<Announcement>,
        now: u64,
    ) -> Result<Listing, AnnounceError> {
        if self.tombstones.contains_key(&ann.room) {
            return Err(AnnounceError::Superseded);
        }
        if let Some(held) = self.rooms.get(&ann.room)
            && held.ann.issued_at >= ann.issued_at
        {
            return Err(AnnounceError::Superseded);
        }
        if ann.ended {
            self.remove(&ann.room);
            self.tombstones.insert(ann.room, ann.expires_at);
            return Ok(Listing::Ended);
        }
        let held = self
            .rooms
            .get(&ann.room)
            .map(|e| (e.ann.author, (e.first_seen, e.seq), e.vouchers.clone()));
        let (held, vouchers) = match held {
            Some((author, listed_at, vouchers)) => (Some((author, listed_at)), vouchers),
            None => (None, Vec::new()),
        };
        let (first_seen, seq) = match held {
            Some((old, listed_at)) => {
                // The same room, announced now by a successor that took over: it moves to
                // its new announcer's count.
                if old != ann.author {
                    if self.per_author.get(&ann.author).copied().unwrap_or(0)
                        >= MAX_ROOMS_PER_AUTHOR
                    {
                        return Err(AnnounceError::TooManyRooms);
                    }
                    self.uncount(&old);
                    *self.per_author.entry(ann.author).or_default() += 1;
                }
                listed_at
            }
            None => {
                if self.rooms.len() >= MAX_ROOMS {
                    return Err(AnnounceError::Full);
                }
                let listed = self.per_author.entry(ann.author).or_default();
                if *listed >= MAX_ROOMS_PER_AUTHOR {
                    return Err(AnnounceError::TooManyRooms);
                }
                *listed += 1;
                self.next_seq += 1;
                (now, self.next_seq)
            }
        };
        let entry = Entry {
            ann,
            first_seen,
            seq,
            vouchers,
        };
        match self.rooms.insert(entry.ann.room, entry) {
            None => Ok(Listing::Added),
            Some(_) => Ok(Listing::Refreshed),
        }
    }

    fn remove(&mut self, room: &RoomId) {
        if let Some(e) = self.rooms.remove(room) {
            self.uncount(&e.ann.author);
        }
    }

    fn uncount(&mut self, author: &PublicKey) {
        if let Some(n) = self.per_author.get_mut(author) {
            *n -= 1;
            if *n == 0 {
                self.per_author.remove(author);
            }
        }
    }

    /// Drops announcements that expired by `now`; returns the rooms that left the listing.
    pub fn expire(&mut self, now: u64) -> Vec<RoomId> {
        let gone: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, e)| e.ann.expires_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for room in &gone {
            self.remove(room);
        }
        self.tombstones.retain(|_, until| *until > now);
        gone
    }

    /// The listed rooms: those more peers' directory answers listed first (up to
    /// [`MAX_VOUCHERS`]: one hostile peer a fresh node asks cannot put its rooms before those
    /// every honest peer lists), then the longest-listed here (rooms that came at once, in the
    /// order they came). Not by listener count or start time: those are the announcer's
    /// claims (one key claiming a million listeners for each of its fake rooms pushed every
    /// real room down), while what this node saw is its own observation.
    pub fn list(&self) -> Vec<&Verified<Announcement>> {
        let mut rooms: Vec<&Entry> = self.rooms.values().collect();
        rooms.sort_by_key(|e| (std::cmp::Reverse(e.vouchers.len()), e.first_seen, e.seq));
        rooms.into_iter().map(|e| &e.ann).collect()
    }

    /// The listing of `room`, if any.
    pub fn get(&self, room: &RoomId) -> Option<&Verified<Announcement>> {
        self.rooms.get(room).map(|e| &e.ann)
    }

    /// Number of listed rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room is listed.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}
