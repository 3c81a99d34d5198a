//! A room's log: a DAG of signed events, the rules that decide which of them count, their
//! deterministic order, and the state they produce. `docs/room-log.md` states the rules with a
//! proof sketch and their limits; this is the summary.
//!
//! # Admission
//!
//! An event enters the log when its signature, room and lamport are right, it names at most one
//! parent signed by its own author (that author's previous event: each key writes one chain),
//! and its author has the *standing* for its kind ([`Standing`]) in the event's causal past:
//! anyone may act on their own place; moderator actions need the genesis host, or a promotion,
//! hand-off or claim of the author among the event's ancestors; host actions need the genesis
//! host, or a hand-off or claim; a claim needs a successor named in the genesis. Standing is
//! never taken back, so admission depends only on the event and its ancestors, every replica
//! admits the same events, and nobody can fill a log with actions they never had any standing
//! for. Events whose parents are missing wait in a bounded pending set.
//!
//! # Void events
//!
//! Whether an admitted event counts at all is decided from the DAG alone ([`Void`]):
//! - *revocation wins*: an event that needs standing is void when it is concurrent with a
//!   non-void demotion, move to the audience, kick or ban of its author (for a claim, also with
//!   its author's removal from the successors);
//! - an event acting on someone is void when it is concurrent with a non-void promotion,
//!   hand-off or claim, by another author, that raised them;
//! - a claim is void when it is concurrent with an event of another author with host standing
//!   (the host was alive), or with a claim by an earlier successor;
//! - a key that signed two branches (two events naming the same previous event of theirs, or two
//!   naming none) loses all its events, except giving power up (step down, hand-off) and events
//!   that another author acted on after seeing them.
//!
//! "Non-void" inside these rules is evaluated the same way, [`VOID_DEPTH`] levels deep; below
//! that a revocation counts. A void event stays in the log (others may name it as a parent).
//!
//! # Order
//!
//! Kahn's algorithm over all events: of the events whose parents are placed, the next is the one
//! with the smallest key: first void events (they change nothing; placed as soon as they can be,
//! they delay nothing), then the others by (lamport, rank of the author in the state so far —
//! 0 host, 1 moderators, 2 everyone else —, hash). Each non-void event is checked against the
//! state the events before it produce ([`State::check`]); a refused event changes nothing. The
//! resulting state and outcomes depend only on the set of events. (Rank no longer has to come
//! first: a demoted moderator's concurrent action is void whatever its place.)
//!
//! # Cost
//!
//! Admission is O(parents + key events in the past), where key events are those that need
//! standing (moderation, rare and authored by few keys); void rules look only at key events
//! through per-key indexes. Placement appends in O(log n) whenever the new event lands last or
//! commutes with every event after its place in the order (actions on one's own place by
//! different authors commute; void events commute with everything), found with per-block
//! summaries of 64 positions, O(n/64 + 64); otherwise the order is re-run from the state
//! snapshot before the new event's parents (snapshots every [`SNAPSHOT_INTERVAL`] events, cheap
//! to take — the sets anyone can grow are persistent — and thinned out exponentially with age,
//! so a long log keeps O(log n) of them). Kahn's ready set is a binary heap,
//! re-keyed only when a placed event changes someone's rank. So junk on one's own place — from
//! many keys, with old parents — costs O(log n) per event, and so does anything void.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;

use rand_core::Rng;

use super::event::{Event, EventBody, EventHash, Genesis, MAX_PARENTS, RoomId, Standing};
use super::state::{Refusal, State, Void};
use crate::identity::{Identity, PublicKey};
use crate::signed::{self, HashMapOf, HashSetOf, SignError, Verified, VerifyError};

/// Events applied between two state snapshots.
pub const SNAPSHOT_INTERVAL: usize = 32;
/// The most recent snapshots all kept; older ones are thinned out exponentially (see
/// [`Snapshots`]).
const RECENT_SNAPSHOTS: usize = 16;
/// Most events kept while waiting for their parents; the oldest is dropped beyond it.
pub const MAX_PENDING: usize = 1024;
/// How many levels deep "a non-void revocation" is evaluated (see the module docs).
pub const VOID_DEPTH: u8 = 3;
/// Positions per block summary.
const BLOCK: usize = 64;

/// What happened to an event offered to [`Room::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Admitted into the log. `released` counts pending events admitted along with it because
    /// it was the parent they were waiting for.
    New {
        /// Pending descendants admitted too.
        released: usize,
    },
    /// Already in the log (or already waiting for its parents).
    Known,
    /// Kept aside until these parents arrive (ask a peer for them).
    Pending {
        /// The parents not yet known.
        missing: Vec<EventHash>,
    },
    /// Not admitted, and never will be.
    Rejected(Reject),
}

/// What the room's state gained or lost since [`Room::take_changes`] was last called: the
/// effects a node acts on (closing a banned member's connections, leaving when kicked, telling
/// the user of a new host). Found by comparing the few sets they concern with their copy at the
/// first change, never the whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Whether the state changed at all.
    pub state: bool,
    /// Banned since.
    pub banned: Vec<PublicKey>,
    /// No longer banned.
    pub unbanned: Vec<PublicKey>,
    /// Kicked since (a first kick, or a later one of someone kicked before).
    pub kicked: Vec<PublicKey>,
    /// The host before, if another member is the host now.
    pub previous_host: Option<PublicKey>,
    /// The room ended.
    pub ended: bool,
}

/// The parts of the state [`Changes`] compares, as they were at the first change since the
/// last [`Room::take_changes`].
struct Watched {
    revision: u64,
    host: PublicKey,
    ended: bool,
    banned: BTreeSet<PublicKey>,
    kicked: BTreeMap<PublicKey, u64>,
}

impl Watched {
    fn of(state: &State, revision: u64) -> Watched {
        Watched {
            revision,
            host: state.host,
            ended: state.ended,
            banned: state.banned.clone(),
            kicked: state.kicked.clone(),
        }
    }

    fn changes(self, state: &State, revision: u64) -> Changes {
        if revision == self.revision {
            return Changes::default();
        }
        Changes {
            state: true,
            banned: state.banned.difference(&self.banned).copied().collect(),
            unbanned: self.banned.difference(&state.banned).copied().collect(),
            kicked: state
                .kicked
                .iter()
                .filter(|(k, at)| self.kicked.get(k) != Some(at))
                .map(|(k, _)| *k)
                .collect(),
            previous_host: (self.host != state.host).then_some(self.host),
            ended: state.ended && !self.ended,
        }
    }
}

/// Why an event was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Signature, encoding or bounds.
    #[error("invalid event: {0}")]
    Invalid(#[from] VerifyError),
    /// The event belongs to another room.
    #[error("event of another room")]
    WrongRoom,
    /// The lamport is not one more than the parents' largest.
    #[error("lamport {got} does not follow its parents (expected {expected})")]
    BadLamport {
        /// In the event.
        got: u64,
        /// One more than its parents' largest.
        expected: u64,
    },
    /// The author has no standing for this kind of event in its causal past.
    #[error("not allowed: {0}")]
    Unauthorized(Refusal),
    /// It names two earlier events of its own author as parents (each key writes one chain).
    #[error("names two earlier events of its own author")]
    Chain,
}

/// Why authoring an event failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorError {
    /// The current state does not allow it.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// It could not be signed (a field out of bounds).
    #[error("{0}")]
    Sign(#[from] SignError),
    /// The log did not take the event (an internal inconsistency).
    #[error("event not admitted: {0}")]
    NotAdmitted(String),
}

/// Why a genesis could not start a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Not a valid signed event.
    #[error("invalid genesis: {0}")]
    Invalid(#[from] VerifyError),
    /// A valid event, but not a genesis.
    #[error("not a genesis event")]
    NotGenesis,
    /// The genesis of another room.
    #[error("genesis of another room (expected {expected}, got {got})")]
    WrongRoom {
        /// The room asked for.
        expected: RoomId,
        /// The room this genesis opens.
        got: RoomId,
    },
    /// It could not be signed (a field out of bounds).
    #[error("{0}")]
    Sign(#[from] SignError),
}

/// An event's place in the order: (void first, lamport, rank, hash); see the module docs.
type Key = (u8, u64, u8, EventHash);
/// Key classes. Void events come first: they change nothing, and placing them as soon as their
/// parents are placed makes them transparent to the order of everything else (their children
/// are ready exactly when they would be without them).
const VOID: u8 = 0;
const NOT_VOID: u8 = 1;
/// What sits at a position, for the block summaries.
const ACTION: u8 = 1;
const OWN_PLACE: u8 = 2;

struct Node {
    event: Verified<Event>,
    /// Index in `Room::order`.
    pos: usize,
    children: Vec<EventHash>,
    /// Its index among key events (events that need standing), if it is one.
    key_index: Option<u32>,
    /// Key events among its ancestors, itself included, sorted; shared with a parent when equal.
    past: Arc<[u32]>,
    /// Whether a later event names it as its author's previous event.
    has_own_child: bool,
    /// For a key event: whether its author had host standing at it.
    host_standing: bool,
    /// Set when it was appended after events it commutes with rather than at its place in the
    /// order: a position its place is at or after.
    displaced_from: Option<usize>,
}

impl Node {
    /// A position at or before its place in the order.
    fn lower_bound(&self) -> usize {
        self.displaced_from.unwrap_or(self.pos)
    }
}

/// One author's events.
#[derive(Default)]
struct Chain {
    /// All its events, in arrival order.
    events: Vec<EventHash>,
    /// Its key events, in arrival order.
    key_events: Vec<EventHash>,
    /// Events naming no earlier event of theirs.
    roots: u32,
    /// Signed two branches.
    forked: bool,
    /// The latest event: what its next event names as its previous one.
    tip: Option<EventHash>,
}

/// Summary of `BLOCK` consecutive positions of the order.
#[derive(Clone, Default)]
struct Block {
    max_key: Option<Key>,
    /// Non-void actions on others.
    actions: u32,
    /// Non-void actions on one's own place.
    own_place: u32,
    /// An action that took effect and changes ranks.
    rank_change: bool,
}

/// One room's log and state. See the module docs for the rules.
pub struct Room {
    id: RoomId,
    genesis_host: PublicKey,
    genesis_successors: Vec<PublicKey>,
    nodes: HashMapOf<Node>,
    /// The linearisation; `order[0]` is the genesis.
    order: Vec<EventHash>,
    /// For each position: `None` if the event took effect, else why not.
    outcomes: Vec<Option<Refusal>>,
    /// For each position: the key it was placed with.
    keys: Vec<Key>,
    blocks: Vec<Block>,
    snapshots: Snapshots,
    state: State,
    heads: BTreeSet<EventHash>,
    pending: Pending,
    /// Key events by index.
    key_events: Vec<EventHash>,
    chains: BTreeMap<PublicKey, Chain>,
    /// Events taking standing away from a key (see [`EventBody::revokes`]).
    revocations: BTreeMap<PublicKey, Vec<EventHash>>,
    /// Events raising a key (see [`EventBody::raises`]).
    raises: BTreeMap<PublicKey, Vec<EventHash>>,
    /// Key events acting on a key.
    acting_on: BTreeMap<PublicKey, Vec<EventHash>>,
    /// Key indexes of the events granting moderator / host standing to a key.
    moderator_grants: BTreeMap<PublicKey, Vec<u32>>,
    host_grants: BTreeMap<PublicKey, Vec<u32>>,
    /// Key events whose author had host standing (see `Room::by_host`).
    host_standing_events: Vec<EventHash>,
    /// Hand-offs and claims.
    transfers: Vec<EventHash>,
    claims: Vec<EventHash>,
    ends: Vec<EventHash>,
    void: HashMapOf<Void>,
    /// Events appended away from their place (see `Node::displaced_from`).
    displaced: Vec<EventHash>,
    /// Void-rule results while one event is admitted (the rules recurse; without this the
    /// same sub-results are computed many times over).
    memo: std::sync::Mutex<Memo>,
    /// Counts the changes of `state` (an event that took effect, a re-run order that ended
    /// elsewhere).
    revision: u64,
    /// See [`Room::take_changes`].
    watched: Option<Watched>,
}

/// Results of the void rules for the log as it is, by (event, depth).
#[derive(Default)]
struct Memo {
    void: std::collections::HashMap<(EventHash, u8), Option<Void>>,
    by_host: std::collections::HashMap<(EventHash, u8), bool>,
}

impl Memo {
    fn clear(&mut self) {
        self.void.clear();
        self.by_host.clear();
    }
}

impl Room {
    /// Opens a new room hosted by `host`: signs its genesis and returns the room with it.
    pub fn create<R: Rng + ?Sized>(
        host: &Identity,
        genesis: Genesis,
        created_at: u64,
        rng: &mut R,
    ) -> Result<(Room, Verified<Event>), GenesisError> {
        let mut genesis = genesis;
        rng.fill_bytes(&mut genesis.nonce);
        let event = Event {
            room: RoomId::GENESIS,
            author: host.public(),
            parents: Vec::new(),
            lamport: 0,
            created_at,
            body: EventBody::Genesis(genesis),
        };
        let signed = signed::sign(host, event)?;
        let room = Room::from_genesis(signed.clone())?;
        Ok((room, signed))
    }

    /// Starts a replica from the room's genesis bytes, checking they open room `expected`.
    pub fn from_genesis_wire(expected: RoomId, wire: &[u8]) -> Result<Room, GenesisError> {
        let genesis = signed::verify::<Event>(wire)?;
        let got = RoomId(genesis.hash());
        if got != expected {
            return Err(GenesisError::WrongRoom { expected, got });
        }
        Room::from_genesis(genesis)
    }

    /// Starts a replica from a verified genesis.
    pub fn from_genesis(genesis: Verified<Event>) -> Result<Room, GenesisError> {
        let EventBody::Genesis(body) = &genesis.body else {
            return Err(GenesisError::NotGenesis);
        };
        let host = genesis.author;
        let successors = body.successors.clone();
        let state = State::from_genesis(host, body, genesis.created_at);
        let hash = genesis.hash();
        let key = (VOID, 0, 0, hash);
        let mut nodes = HashMapOf::default();
        nodes.insert(
            hash,
            Node {
                event: genesis,
                pos: 0,
                children: Vec::new(),
                key_index: Some(0),
                past: Arc::from([0u32]),
                has_own_child: false,
                host_standing: true,
                displaced_from: None,
            },
        );
        let chain = Chain {
            events: vec![hash],
            key_events: vec![hash],
            roots: 1,
            forked: false,
            tip: Some(hash),
        };
        let mut room = Room {
            id: RoomId(hash),
            genesis_host: host,
            genesis_successors: successors,
            nodes,
            order: vec![hash],
            outcomes: vec![None],
            keys: vec![key],
            blocks: Vec::new(),
            snapshots: Snapshots::new(state.clone()),
            state,
            heads: BTreeSet::from([hash]),
            pending: Pending::default(),
            key_events: vec![hash],
            chains: BTreeMap::from([(host, chain)]),
            revocations: BTreeMap::new(),
            raises: BTreeMap::new(),
            acting_on: BTreeMap::new(),
            moderator_grants: BTreeMap::new(),
            host_grants: BTreeMap::new(),
            host_standing_events: Vec::new(),
            transfers: Vec::new(),
            claims: Vec::new(),
            ends: Vec::new(),
            void: HashMapOf::default(),
            displaced: Vec::new(),
            memo: std::sync::Mutex::default(),
            revision: 0,
            watched: None,
        };
        room.rebuild_blocks(0);
        Ok(room)
    }

    /// The room's id (its genesis hash).
    pub fn id(&self) -> RoomId {
        self.id
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The genesis event.
    pub fn genesis(&self) -> &Verified<Event> {
        &self.nodes[&self.order[0]].event
    }

    /// Number of events in the log, genesis included.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Always false: a room holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of events waiting for parents.
    pub fn pending_len(&self) -> usize {
        self.pending.events.len()
    }

    /// The current heads (events nothing points to yet), sorted.
    pub fn heads(&self) -> Vec<EventHash> {
        self.heads.iter().copied().collect()
    }

    /// Whether the log holds `hash`.
    pub fn contains(&self, hash: &EventHash) -> bool {
        self.nodes.contains_key(hash)
    }

    /// The event with `hash`, if in the log.
    pub fn get(&self, hash: &EventHash) -> Option<&Verified<Event>> {
        self.nodes.get(hash).map(|n| &n.event)
    }

    /// Why the event with `hash` has no effect (refused in the state before it, or void), or
    /// `None` if it took effect or is not in the log.
    pub fn refusal(&self, hash: &EventHash) -> Option<&Refusal> {
        let pos = self.nodes.get(hash)?.pos;
        self.outcomes.get(pos)?.as_ref()
    }

    /// Whether the event with `hash` is in the log and took effect.
    pub fn took_effect(&self, hash: &EventHash) -> bool {
        self.nodes.contains_key(hash) && self.refusal(hash).is_none()
    }

    /// The latest event signed by `who`: what their next event names as its previous one.
    pub fn tip_of(&self, who: &PublicKey) -> Option<EventHash> {
        self.chains.get(who).and_then(|c| c.tip)
    }

    /// Why the event with `hash` is void, if it is (see [`Void`]).
    pub fn void_reason(&self, hash: &EventHash) -> Option<Void> {
        self.void.get(hash).copied()
    }

    /// Number of void events in the log.
    pub fn void_len(&self) -> usize {
        self.void.len()
    }

    /// The log in its linear order, each event with `None` if it took effect or the reason it
    /// did not (refused in the state before it, or void).
    pub fn events(&self) -> impl Iterator<Item = (&Verified<Event>, Option<&Refusal>)> + '_ {
        self.order
            .iter()
            .zip(&self.outcomes)
            .map(|(h, o)| (&self.nodes[h].event, o.as_ref()))
    }

    /// Authors `body` as `identity` on top of the current heads (and its own previous event),
    /// checks it against the current state, signs it and adds it to the log. Returns the signed
    /// event to publish.
    pub fn author(
        &mut self,
        identity: &Identity,
        body: EventBody,
        created_at: u64,
    ) -> Result<Verified<Event>, AuthorError> {
        let me = identity.public();
        let mut parents: Vec<EventHash> = self.heads.iter().take(MAX_PARENTS).copied().collect();
        if let Some(tip) = self.tip_of(&me)
            && !parents.contains(&tip)
        {
            if parents.len() == MAX_PARENTS {
                parents.pop();
            }
            parents.push(tip);
        }
        let lamport = 1 + parents
            .iter()
            .map(|p| self.nodes[p].event.lamport)
            .max()
            .unwrap_or(0);
        let event = Event {
            room: self.id,
            author: me,
            parents,
            lamport,
            created_at,
            body,
        };
        self.state.check(&event)?;
        let signed = signed::sign(identity, event)?;
        match self.insert(signed.clone()) {
            Insert::New { .. } => Ok(signed),
            Insert::Rejected(Reject::Unauthorized(refusal)) => Err(AuthorError::Refused(refusal)),
            // The parents are our own heads and the state allows it, so this does not happen;
            // report it rather than panic.
            other => Err(AuthorError::NotAdmitted(format!("{other:?}"))),
        }
    }

    /// The hash `wire` would have as an event (what parents name), without verifying it.
    pub fn hash_of_wire(wire: &[u8]) -> Option<EventHash> {
        (wire.len() > signed::HEADER_LEN && wire.len() <= super::event::MAX_EVENT_LEN).then(|| {
            crate::signed::Hash::of(
                <Event as signed::Signable>::DOMAIN,
                &wire[signed::HEADER_LEN..],
            )
        })
    }

    /// Verifies `wire` as an event and inserts it. An exact duplicate is recognised by its hash
    /// before any signature check, so gossip echoes cost almost nothing.
    pub fn insert_wire(&mut self, wire: &[u8]) -> Insert {
        if wire.len() > signed::HEADER_LEN && wire.len() <= super::event::MAX_EVENT_LEN {
            let hash = crate::signed::Hash::of(
                <Event as signed::Signable>::DOMAIN,
                &wire[signed::HEADER_LEN..],
            );
            let known = self
                .nodes
                .get(&hash)
                .map(|n| &n.event)
                .or_else(|| self.pending.events.get(&hash));
            // Same bytes: a duplicate. Same payload with other signature bytes: verify (and reject).
            if known.is_some_and(|e| e.wire() == wire) {
                return Insert::Known;
            }
        }
        match signed::verify::<Event>(wire) {
            Ok(event) => self.insert(event),
            Err(e) => Insert::Rejected(Reject::Invalid(e)),
        }
    }

    /// What the state gained or lost through the events inserted (and authored) since the last
    /// call; the first call reports everything since the room was opened. A node calls it after
    /// each insert, or once after a page of them.
    pub fn take_changes(&mut self) -> Changes {
        match self.watched.take() {
            Some(watched) => watched.changes(&self.state, self.revision),
            None => Changes::default(),
        }
    }

    /// Drops `hash` from the events waiting for their parents (one a peer sent beyond its
    /// share); whether it was waiting.
    pub fn forget_pending(&mut self, hash: &EventHash) -> bool {
        self.pending.forget(hash)
    }

    /// Inserts a verified event: admits it, parks it until its parents arrive, or rejects it.
    pub fn insert(&mut self, event: Verified<Event>) -> Insert {
        let hash = event.hash();
        if self.nodes.contains_key(&hash) || self.pending.events.contains_key(&hash) {
            return Insert::Known;
        }
        if self.watched.is_none() {
            self.watched = Some(Watched::of(&self.state, self.revision));
        }
        if event.room != self.id {
            return Insert::Rejected(Reject::WrongRoom);
        }
        let missing: Vec<EventHash> = event
            .parents
            .iter()
            .filter(|p| !self.nodes.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            self.pending.park(event, &missing);
            return Insert::Pending { missing };
        }
        if let Err(reject) = self.admit(event) {
            return Insert::Rejected(reject);
        }
        // Admit whatever was waiting for this event, and for those, transitively.
        let mut released = 0;
        let mut arrived = VecDeque::from([hash]);
        while let Some(parent) = arrived.pop_front() {
            for child in self.pending.take_children(&parent) {
                let still_missing: Vec<EventHash> = child
                    .parents
                    .iter()
                    .filter(|p| !self.nodes.contains_key(p))
                    .copied()
                    .collect();
                if !still_missing.is_empty() {
                    self.pending.park(child, &still_missing);
                    continue;
                }
                let child_hash = child.hash();
                if self.admit(child).is_ok() {
                    released += 1;
                    arrived.push_back(child_hash);
                }
            }
        }
        Insert::New { released }
    }

    /// Checks an event whose parents are all present, adds it, works out what it voids or
    /// revives, and places it.
    fn admit(&mut self, event: Verified<Event>) -> Result<(), Reject> {
        let expected = 1 + event
            .parents
            .iter()
            .map(|p| self.nodes[p].event.lamport)
            .max()
            .unwrap_or(0);
        if event.lamport != expected {
            return Err(Reject::BadLamport {
                got: event.lamport,
                expected,
            });
        }
        let author = event.author;
        let mut own_parents = event
            .parents
            .iter()
            .filter(|p| self.nodes[*p].event.author == author);
        let own_parent = own_parents.next().copied();
        if own_parents.next().is_some() {
            return Err(Reject::Chain);
        }
        let mut past = self.union_of_pasts(&event.parents);
        let granted = |grants: &BTreeMap<PublicKey, Vec<u32>>| {
            author == self.genesis_host
                || grants
                    .get(&author)
                    .is_some_and(|g| g.iter().any(|i| past.binary_search(i).is_ok()))
        };
        let standing = event.body.standing();
        let host_standing = granted(&self.host_grants);
        match standing {
            Standing::Anyone => {}
            Standing::Successor if !self.genesis_successors.contains(&author) => {
                return Err(Reject::Unauthorized(Refusal::NotSuccessor));
            }
            Standing::Successor => {}
            Standing::Moderator if !host_standing && !granted(&self.moderator_grants) => {
                return Err(Reject::Unauthorized(Refusal::NotModerator));
            }
            Standing::Moderator => {}
            Standing::Host if !host_standing => {
                return Err(Reject::Unauthorized(Refusal::NotHost));
            }
            Standing::Host => {}
        }

        let hash = event.hash();
        let key_index = (standing != Standing::Anyone).then(|| {
            let index = self.key_events.len() as u32;
            self.key_events.push(hash);
            let mut with_self = past.to_vec();
            with_self.push(index);
            past = Arc::from(with_self);
            index
        });
        let parents_are_heads = event.parents.len() == self.heads.len()
            && event.parents.iter().all(|p| self.heads.contains(p));
        let from = self.ready_from(&event.parents);
        for p in &event.parents {
            self.heads.remove(p);
            if let Some(node) = self.nodes.get_mut(p) {
                node.children.push(hash);
            }
        }
        self.heads.insert(hash);

        // Its author's chain.
        let chain = self.chains.entry(author).or_default();
        let newly_forked = match own_parent {
            None => {
                chain.roots += 1;
                chain.roots > 1 && !chain.forked
            }
            Some(p) => {
                let already_forked = chain.forked;
                let parent = self.nodes.get_mut(&p).expect("parents are present");
                let branches = parent.has_own_child;
                parent.has_own_child = true;
                branches && !already_forked
            }
        };
        let chain = self.chains.entry(author).or_default();
        chain.forked |= newly_forked;
        chain.events.push(hash);
        if key_index.is_some() {
            chain.key_events.push(hash);
        }
        chain.tip = Some(hash);

        // Indexes of the events the void rules look at.
        if let Some(index) = key_index {
            let body = &event.body;
            if let Some(who) = body.revokes() {
                self.revocations.entry(who).or_default().push(hash);
            }
            if let Some(who) = body.raises(&author) {
                self.raises.entry(who).or_default().push(hash);
                self.moderator_grants.entry(who).or_default().push(index);
                if !matches!(body, EventBody::Promote { .. }) {
                    self.host_grants.entry(who).or_default().push(index);
                }
            }
            if let Some(who) = body.target() {
                self.acting_on.entry(who).or_default().push(hash);
            }
            if host_standing {
                self.host_standing_events.push(hash);
            }
            match body {
                EventBody::ClaimHost => {
                    self.claims.push(hash);
                    self.transfers.push(hash);
                }
                EventBody::HandOff { .. } => self.transfers.push(hash),
                EventBody::EndRoom => self.ends.push(hash),
                _ => {}
            }
        }
        self.nodes.insert(
            hash,
            Node {
                event,
                pos: usize::MAX,
                children: Vec::new(),
                key_index,
                past,
                has_own_child: false,
                host_standing: key_index.is_some() && host_standing,
                displaced_from: None,
            },
        );

        // What it voids or revives.
        let mut changed_from = usize::MAX;
        self.memo().clear();
        for candidate in self.void_candidates(hash, newly_forked) {
            let now = self.void_of(&candidate, 0);
            let before = self.void.get(&candidate).copied();
            if now == before {
                continue;
            }
            match now {
                Some(v) => self.void.insert(candidate, v),
                None => self.void.remove(&candidate),
            };
            // Its place may move anywhere after its parents (a void event is placed as soon as
            // its parents are).
            let node = &self.nodes[&candidate];
            if node.pos != usize::MAX {
                changed_from = changed_from.min(self.ready_from(&node.event.parents));
            }
        }

        if changed_from != usize::MAX {
            self.relinearise(changed_from.min(from), Some(hash));
        } else if parents_are_heads || from >= self.order.len() {
            // Everything already placed is an ancestor, or comes before it in any case.
            self.place(hash);
        } else if self.lands_last(&hash, from) {
            // It comes last up to events it commutes with.
            self.place(hash);
            if let Some(node) = self.nodes.get_mut(&hash) {
                node.displaced_from = Some(from);
            }
            self.displaced.push(hash);
        } else {
            self.relinearise(from, Some(hash));
        }
        Ok(())
    }

    /// A position such that every event before it in the order comes before an event with these
    /// parents (an event appended away from its place may belong as early as its lower bound,
    /// and what is after that may follow it).
    fn ready_from(&self, parents: &[EventHash]) -> usize {
        parents
            .iter()
            .map(|p| {
                let n = &self.nodes[p];
                n.displaced_from.unwrap_or(n.pos + 1)
            })
            .max()
            .unwrap_or(1)
    }

    /// The union of the parents' key pasts, shared when they are all the same.
    fn union_of_pasts(&self, parents: &[EventHash]) -> Arc<[u32]> {
        let mut pasts = parents.iter().map(|p| &self.nodes[p].past);
        let first = pasts.next().cloned().unwrap_or_else(|| Arc::from([]));
        let mut merged: Option<Vec<u32>> = None;
        for past in pasts {
            let base: &[u32] = merged.as_deref().unwrap_or(&first);
            if Arc::ptr_eq(past, &first) || past.iter().all(|i| base.binary_search(i).is_ok()) {
                continue;
            }
            let mut out = Vec::with_capacity(base.len() + past.len());
            let (mut a, mut b) = (base.iter().peekable(), past.iter().peekable());
            loop {
                match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x < y => out.push(*a.next().expect("peeked")),
                    (Some(x), Some(y)) if y < x => out.push(*b.next().expect("peeked")),
                    (Some(_), Some(_)) => {
                        out.push(*a.next().expect("peeked"));
                        b.next();
                    }
                    (Some(_), None) => out.push(*a.next().expect("peeked")),
                    (None, Some(_)) => out.push(*b.next().expect("peeked")),
                    (None, None) => break,
                }
            }
            merged = Some(out);
        }
        merged.map(Arc::from).unwrap_or(first)
    }

    /// Whether a key event was signed by the host of its past: the host by the chain of
    /// hand-offs and claims among its ancestors, in (lamport, hash) order — a hand-off by the
    /// host of that moment passes it on, a claim that is not void takes it. `depth` as in
    /// [`Room::void_of`].
    fn by_host(&self, node: &Node, depth: u8) -> bool {
        let key = (node.event.hash(), depth);
        if let Some(known) = self.memo().by_host.get(&key) {
            return *known;
        }
        let result = self.by_host_uncached(node, depth);
        self.memo().by_host.insert(key, result);
        result
    }

    fn by_host_uncached(&self, node: &Node, depth: u8) -> bool {
        let Some(index) = node.key_index else {
            return false;
        };
        let past = &node.past;
        let mut transfers: Vec<&Node> = self
            .transfers
            .iter()
            .map(|h| &self.nodes[h])
            .filter(|n| {
                n.key_index
                    .is_some_and(|i| i != index && past.binary_search(&i).is_ok())
            })
            .collect();
        transfers.sort_by_key(|n| (n.event.lamport, n.event.hash()));
        let mut host = self.genesis_host;
        for n in transfers {
            match n.event.body {
                EventBody::HandOff { to } if n.event.author == host => host = to,
                EventBody::ClaimHost
                    if depth >= VOID_DEPTH
                        || self.void_of(&n.event.hash(), depth + 1).is_none() =>
                {
                    host = n.event.author
                }
                _ => {}
            }
        }
        host == node.event.author
    }

    // ----- void rules ----------------------------------------------------------------------

    /// Whether two key events are concurrent (neither is in the other's past).
    fn concurrent(a: &Node, b: &Node) -> bool {
        match (a.key_index, b.key_index) {
            (Some(x), Some(y)) => {
                a.past.binary_search(&y).is_err() && b.past.binary_search(&x).is_err()
            }
            _ => false,
        }
    }

    /// Whether the event is void because its author forked: every event of theirs is, except
    /// key events that the host of the moment acted on after seeing them (a hand-off the heir
    /// built on, a ban the host saw). `depth` as in [`Room::void_of`].
    fn forked_void(&self, node: &Node, depth: u8) -> bool {
        let e = &node.event;
        if !self.chains.get(&e.author).is_some_and(|c| c.forked) {
            return false;
        }
        let Some(index) = node.key_index else {
            return true;
        };
        !self.host_standing_events.iter().any(|w| {
            let witness = &self.nodes[w];
            witness.event.author != e.author
                && witness.past.binary_search(&index).is_ok()
                && (depth >= VOID_DEPTH || self.by_host(witness, depth + 1))
        })
    }

    /// The memo of the void rules (never held across a recursive call).
    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The void rules for one event (see the module docs), `depth` levels into the recursion.
    /// Results are remembered until the log changes (`Room::memo`).
    fn void_of(&self, hash: &EventHash, depth: u8) -> Option<Void> {
        if let Some(known) = self.memo().void.get(&(*hash, depth)) {
            return *known;
        }
        let result = self.void_of_uncached(hash, depth);
        self.memo().void.insert((*hash, depth), result);
        result
    }

    fn void_of_uncached(&self, hash: &EventHash, depth: u8) -> Option<Void> {
        let node = &self.nodes[hash];
        let e = &node.event;
        if matches!(e.body, EventBody::Genesis(_)) {
            return None;
        }
        if self.forked_void(node, depth) {
            return Some(Void::Forked);
        }
        node.key_index?;
        let live = |r: &EventHash| depth >= VOID_DEPTH || self.void_of(r, depth + 1).is_none();
        let is_claim = matches!(e.body, EventBody::ClaimHost);
        // Revocations and raises count when signed by the host of their past (only the host can
        // take a moderator's power or give power), claims when not void.
        for r in self.revocations.get(&e.author).into_iter().flatten() {
            let other = &self.nodes[r];
            let applies =
                is_claim || !matches!(other.event.body, EventBody::RemoveSuccessor { .. });
            if r != hash
                && applies
                && self.by_host(other, depth + 1)
                && other.event.author != e.author
                && Self::concurrent(node, other)
                && live(r)
            {
                return Some(Void::Revoked);
            }
        }
        if let Some(target) = e.body.target() {
            for r in self.raises.get(&target).into_iter().flatten() {
                let other = &self.nodes[r];
                let is_claim = matches!(other.event.body, EventBody::ClaimHost);
                if other.event.author != e.author
                    && (is_claim || self.by_host(other, depth + 1))
                    && Self::concurrent(node, other)
                    && live(r)
                {
                    return Some(Void::TargetRaised);
                }
            }
        }
        if is_claim {
            let order = |k: &PublicKey| self.genesis_successors.iter().position(|s| s == k);
            let mine = order(&e.author);
            for x in &self.host_standing_events {
                let other = &self.nodes[x];
                if other.event.author != e.author
                    && self.by_host(other, depth + 1)
                    && Self::concurrent(node, other)
                    && !self.forked_void(other, depth + 1)
                {
                    return Some(Void::ClaimContested);
                }
            }
            for c in &self.claims {
                let other = &self.nodes[c];
                if other.event.author != e.author
                    && order(&other.event.author) < mine
                    && Self::concurrent(node, other)
                {
                    return Some(Void::ClaimContested);
                }
            }
        }
        None
    }

    /// The events whose void rules read `hash` directly.
    fn void_dependents(&self, hash: &EventHash, out: &mut Vec<EventHash>) {
        let node = &self.nodes[hash];
        let e = &node.event;
        if node.key_index.is_none() {
            return;
        }
        if let Some(who) = e.body.revokes()
            && let Some(chain) = self.chains.get(&who)
        {
            out.extend(&chain.key_events);
        }
        if let Some(who) = e.body.raises(&e.author) {
            out.extend(self.acting_on.get(&who).into_iter().flatten());
        }
        if node.host_standing || matches!(e.body, EventBody::ClaimHost) {
            out.extend(&self.claims);
        }
        if matches!(e.body, EventBody::ClaimHost | EventBody::HandOff { .. }) {
            // Who the host was, for every later revocation, raise and witness.
            out.extend(self.revocations.values().flatten());
            out.extend(self.raises.values().flatten());
            for chain in self.chains.values().filter(|c| c.forked) {
                out.extend(&chain.key_events);
            }
        }
        if node.host_standing {
            // Key events of forked authors it witnesses.
            for i in node.past.iter() {
                let seen = &self.key_events[*i as usize];
                let author = &self.nodes[seen].event.author;
                if *author != e.author && self.chains.get(author).is_some_and(|c| c.forked) {
                    out.push(*seen);
                }
            }
        }
    }

    /// Every event whose void status may change now that `hash` is in the log.
    fn void_candidates(&self, hash: EventHash, newly_forked: bool) -> Vec<EventHash> {
        let mut seen: HashSetOf = HashSetOf::default();
        let mut out = vec![hash];
        seen.insert(hash);
        let author = self.nodes[&hash].event.author;
        let mut direct = Vec::new();
        if newly_forked && let Some(chain) = self.chains.get(&author) {
            direct.extend(&chain.events);
        }
        self.void_dependents(&hash, &mut direct);
        // A change in one of these changes what depends on it, VOID_DEPTH levels up.
        let mut level = direct;
        for _ in 0..=VOID_DEPTH {
            let mut next = Vec::new();
            for h in level {
                if seen.insert(h) {
                    out.push(h);
                    self.void_dependents(&h, &mut next);
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        out
    }

    // ----- order -----------------------------------------------------------------------------

    fn key_of(&self, state: &State, hash: &EventHash) -> Key {
        key_of(&self.nodes, &self.void, state, hash)
    }

    /// Appends `hash` to the order and applies it to the current state.
    fn place(&mut self, hash: EventHash) {
        let key = self.key_of(&self.state, &hash);
        let node = self
            .nodes
            .get_mut(&hash)
            .expect("placed events are in the DAG");
        node.pos = self.order.len();
        let outcome = match self.void.get(&hash) {
            Some(v) => Some(Refusal::Void(*v)),
            None => self.state.apply(&node.event).err(),
        };
        if outcome.is_none() {
            self.revision += 1;
        }
        self.order.push(hash);
        self.outcomes.push(outcome);
        self.keys.push(key);
        self.summarise(self.order.len() - 1);
        if (self.order.len() - 1).is_multiple_of(SNAPSHOT_INTERVAL) {
            self.snapshots
                .push((self.order.len() - 1) / SNAPSHOT_INTERVAL, &self.state);
        }
    }

    /// Whether a new event whose parents are all before `from` can be appended: the order rule
    /// places it last, or after its place come only events it commutes with (see the module
    /// docs), so appending yields the same state and outcomes.
    fn lands_last(&self, hash: &EventHash, from: usize) -> bool {
        if self.void.contains_key(hash) {
            return true;
        }
        let event = &self.nodes[hash].event;
        let placed_from = |list: Option<&Vec<EventHash>>| {
            list.into_iter().flatten().any(|h| {
                let pos = self.nodes[h].pos;
                pos != usize::MAX && pos >= from && !self.void.contains_key(h)
            })
        };
        if event.body.is_self_action() {
            // Only an action on its author, or the room's end, fails to commute with it.
            return !placed_from(self.acting_on.get(&event.author))
                && !placed_from(Some(&self.ends));
        }
        let key = self.key_of(&self.state, hash);
        // Its place: the first position from `from` on with a larger key, no rank change before
        // it (ranks, hence keys, are those of the current state up to there).
        let mut pos = from;
        let place = loop {
            if pos >= self.order.len() {
                return true;
            }
            let block = &self.blocks[pos / BLOCK];
            if pos.is_multiple_of(BLOCK)
                && !block.rank_change
                && block.max_key.is_none_or(|k| k < key)
            {
                pos += BLOCK;
                continue;
            }
            if self.keys[pos] > key {
                break pos;
            }
            if self.takes_effect_and_changes_ranks(pos) {
                return false;
            }
            pos += 1;
        };
        // After it: no action on others, nothing of its target's, and if it ends the room,
        // nothing at all that takes effect.
        let ends = matches!(event.body, EventBody::EndRoom);
        let target_after = event.body.target().is_some_and(|t| {
            self.chains.get(&t).is_some_and(|c| {
                !c.forked
                    && c.tip.is_some_and(
                        |tip| matches!(self.nodes[&tip].pos, p if p != usize::MAX && p >= place),
                    )
            })
        });
        if target_after {
            return false;
        }
        let mut pos = place;
        while pos < self.order.len() {
            if pos.is_multiple_of(BLOCK) {
                let block = &self.blocks[pos / BLOCK];
                if block.actions > 0 || (ends && block.own_place > 0) {
                    return false;
                }
                pos += BLOCK;
                continue;
            }
            let class = self.class_at(pos);
            if class == ACTION || (ends && class == OWN_PLACE) {
                return false;
            }
            pos += 1;
        }
        true
    }

    /// [`VOID`], [`ACTION`] (on others) or [`OWN_PLACE`] for the event at `pos`.
    fn class_at(&self, pos: usize) -> u8 {
        if self.keys[pos].0 == VOID {
            VOID
        } else if self.nodes[&self.order[pos]].event.body.is_self_action() {
            OWN_PLACE
        } else {
            ACTION
        }
    }

    fn takes_effect_and_changes_ranks(&self, pos: usize) -> bool {
        self.outcomes[pos].is_none()
            && self.class_at(pos) == ACTION
            && self.nodes[&self.order[pos]].event.body.changes_ranks()
    }

    /// Folds position `pos` into its block summary.
    fn summarise(&mut self, pos: usize) {
        let index = pos / BLOCK;
        if self.blocks.len() <= index {
            self.blocks.resize(index + 1, Block::default());
        }
        let key = self.keys[pos];
        let class = self.class_at(pos);
        let rank_change = self.takes_effect_and_changes_ranks(pos);
        let block = &mut self.blocks[index];
        block.max_key = Some(block.max_key.map_or(key, |k| k.max(key)));
        match class {
            ACTION => block.actions += 1,
            OWN_PLACE => block.own_place += 1,
            _ => {}
        }
        block.rank_change |= rank_change;
    }

    /// Recomputes the block summaries from position `from` on.
    fn rebuild_blocks(&mut self, from: usize) {
        let first = from / BLOCK;
        self.blocks.truncate(first);
        for pos in first * BLOCK..self.order.len() {
            self.summarise(pos);
        }
    }

    /// Recomputes the order and the state of the whole log from the genesis. The result is the
    /// same as the incrementally maintained one; this exists to measure and check that.
    pub fn recompute(&mut self) -> &State {
        self.relinearise(1, None);
        &self.state
    }

    /// Re-runs the order from the snapshot at or before position `from`, with `new` added. It
    /// starts early enough that every event it re-places is placed where the order rule puts
    /// it (an event appended away from its place may belong before `from`).
    fn relinearise(&mut self, from: usize, new: Option<EventHash>) {
        let mut from = from.max(1);
        let base = loop {
            let base =
                1 + self.snapshots.at_or_before((from - 1) / SNAPSHOT_INTERVAL) * SNAPSHOT_INTERVAL;
            let earliest = self
                .displaced
                .iter()
                .map(|h| &self.nodes[h])
                .filter(|n| n.pos != usize::MAX && n.pos >= base)
                .map(Node::lower_bound)
                .min();
            match earliest {
                Some(e) if e.max(1) < base => from = e.max(1),
                _ => break base,
            }
        };
        let snapshot = (base - 1) / SNAPSHOT_INTERVAL;
        let mut suffix: Vec<EventHash> = self.order.split_off(base.min(self.order.len()));
        suffix.extend(new);
        self.outcomes.truncate(base);
        self.keys.truncate(base);
        let before = std::mem::replace(&mut self.state, self.snapshots.truncate_after(snapshot));
        let in_suffix: HashSetOf = suffix.iter().copied().collect();
        let (order, outcomes, keys, snapshots) = (
            &mut self.order,
            &mut self.outcomes,
            &mut self.keys,
            &mut self.snapshots,
        );
        linearise(
            &self.nodes,
            &self.void,
            &mut self.state,
            &suffix,
            |h| !in_suffix.contains(h),
            |hash, key, outcome, state| {
                order.push(hash);
                outcomes.push(outcome);
                keys.push(key);
                if (order.len() - 1).is_multiple_of(SNAPSHOT_INTERVAL) {
                    snapshots.push((order.len() - 1) / SNAPSHOT_INTERVAL, state);
                }
            },
        );
        for (pos, hash) in self.order.iter().enumerate().skip(base) {
            if let Some(node) = self.nodes.get_mut(hash) {
                node.pos = pos;
                node.displaced_from = None;
            }
        }
        let nodes = &self.nodes;
        self.displaced.retain(|h| nodes[h].displaced_from.is_some());
        self.rebuild_blocks(base);
        if self.state != before {
            self.revision += 1;
        }
    }

    // ----- sync ------------------------------------------------------------------------------

    /// All ancestors of `from` (inclusive).
    fn ancestors(&self, from: &[EventHash]) -> HashSetOf {
        let mut seen: HashSetOf = HashSetOf::default();
        let mut stack: Vec<EventHash> = from
            .iter()
            .filter(|h| self.nodes.contains_key(h))
            .copied()
            .collect();
        while let Some(h) = stack.pop() {
            if seen.insert(h) {
                stack.extend(self.nodes[&h].event.parents.iter().copied());
            }
        }
        seen
    }

    /// The events a peer whose heads are `remote_heads` lacks, parents first, at most `limit`.
    /// See [`Room::missing_from`] for paging.
    pub fn missing_for(&self, remote_heads: &[EventHash], limit: usize) -> Vec<&Verified<Event>> {
        self.missing_from(remote_heads, 0, limit).0
    }

    /// The events a peer whose heads are `remote_heads` lacks, in log order from position
    /// `from` on, at most `limit`; with the position to ask from for the next page, `None` when
    /// this page reaches the end of the log.
    ///
    /// Heads we do not know are ignored (the peer has events we lack; it will send them). With
    /// no known head the answer starts at the genesis. A peer pages by asking again with the
    /// returned position whether or not the page told it anything new (a page can be all
    /// events it has, when it could name only some of its heads); the order is a topological
    /// one, so every page's parents are in earlier pages or with the peer.
    pub fn missing_from(
        &self,
        remote_heads: &[EventHash],
        from: usize,
        limit: usize,
    ) -> (Vec<&Verified<Event>>, Option<usize>) {
        let known = self.ancestors(remote_heads);
        let mut out = Vec::new();
        for (pos, h) in self.order.iter().enumerate().skip(from) {
            if out.len() == limit {
                return (out, Some(pos));
            }
            if !known.contains(h) {
                out.push(&self.nodes[h].event);
            }
        }
        (out, None)
    }

    /// The first successor who is not the host, not banned and for whom `is_present` holds: who
    /// should claim the host role when the host is gone. Successors are the genesis's, less those
    /// the host removed.
    pub fn next_host(&self, mut is_present: impl FnMut(&PublicKey) -> bool) -> Option<PublicKey> {
        let state = &self.state;
        state
            .successors
            .iter()
            .find(|s| **s != state.host && !state.banned.contains(s) && is_present(s))
            .copied()
    }
}

/// The order key of `hash` in `state` (see the module docs).
fn key_of(nodes: &HashMapOf<Node>, void: &HashMapOf<Void>, state: &State, hash: &EventHash) -> Key {
    let e = &nodes[hash].event;
    if void.contains_key(hash) {
        (VOID, e.lamport, 0, *hash)
    } else {
        (NOT_VOID, e.lamport, state.rank(&e.author), *hash)
    }
}

/// Kahn's algorithm over `set`, starting from `state`, where parents for which `in_prefix`
/// holds are already placed; `on_place` sees each event with its key and outcome in order, and
/// `state` ends as the result.
fn linearise(
    nodes: &HashMapOf<Node>,
    void: &HashMapOf<Void>,
    state: &mut State,
    set: &[EventHash],
    in_prefix: impl Fn(&EventHash) -> bool,
    mut on_place: impl FnMut(EventHash, Key, Option<Refusal>, &State),
) {
    let mut waiting: HashMapOf<usize> =
        HashMapOf::with_capacity_and_hasher(set.len(), Default::default());
    let mut ready: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
    for hash in set {
        let unplaced = nodes[hash]
            .event
            .parents
            .iter()
            .filter(|p| !in_prefix(p))
            .count();
        if unplaced == 0 {
            ready.push(Reverse(key_of(nodes, void, state, hash)));
        } else {
            waiting.insert(*hash, unplaced);
        }
    }
    while let Some(Reverse(key)) = ready.pop() {
        let hash = key.3;
        let node = &nodes[&hash];
        let outcome = match void.get(&hash) {
            Some(v) => Some(Refusal::Void(*v)),
            None => state.apply(&node.event).err(),
        };
        let ranks_changed = outcome.is_none() && node.event.body.changes_ranks();
        on_place(hash, key, outcome, state);
        for child in &node.children {
            if let Some(count) = waiting.get_mut(child) {
                *count -= 1;
                if *count == 0 {
                    waiting.remove(child);
                    ready.push(Reverse(key_of(nodes, void, state, child)));
                }
            }
        }
        if ranks_changed {
            ready = ready
                .into_iter()
                .map(|Reverse(k)| Reverse(key_of(nodes, void, state, &k.3)))
                .collect();
        }
    }
}

/// State snapshots: `i` holds the state after `order[..=i * SNAPSHOT_INTERVAL]`. The last
/// [`RECENT_SNAPSHOTS`] are all kept; an older one is kept only at every `2^k`-th index, where
/// `2^k` grows with its distance from the newest, so a log of n events keeps O(log n) of them
/// (each is cheap to take, but a state that keeps changing diverges from every copy). A re-run
/// of the order starts from the nearest kept snapshot at or before where it has to.
struct Snapshots {
    kept: BTreeMap<usize, State>,
}

impl Snapshots {
    fn new(genesis: State) -> Self {
        Snapshots {
            kept: BTreeMap::from([(0, genesis)]),
        }
    }

    /// Keeps `state` as snapshot `index` (the newest) and thins out older ones.
    fn push(&mut self, index: usize, state: &State) {
        self.kept.insert(index, state.clone());
        self.kept.retain(|&i, _| {
            let age = index - i;
            i == 0
                || age < RECENT_SNAPSHOTS
                || i.is_multiple_of((age / RECENT_SNAPSHOTS + 1).next_power_of_two())
        });
    }

    /// The index of the newest kept snapshot at or before `index`.
    fn at_or_before(&self, index: usize) -> usize {
        self.kept
            .range(..=index)
            .next_back()
            .map(|(i, _)| *i)
            .unwrap_or(0)
    }

    /// Drops the snapshots after `index` (which must be kept) and returns a copy of it.
    fn truncate_after(&mut self, index: usize) -> State {
        self.kept.split_off(&(index + 1));
        self.kept
            .get(&index)
            .or_else(|| self.kept.values().next())
            .cloned()
            .expect("the genesis snapshot is always kept")
    }
}

/// Events whose parents have not all arrived, bounded by [`MAX_PENDING`] (oldest dropped).
#[derive(Default)]
struct Pending {
    events: HashMapOf<Verified<Event>>,
    fifo: VecDeque<EventHash>,
    /// Missing parent → events waiting for it.
    waiting: HashMapOf<Vec<EventHash>>,
}

impl Pending {
    fn park(&mut self, event: Verified<Event>, missing: &[EventHash]) {
        let hash = event.hash();
        for m in missing {
            self.waiting.entry(*m).or_default().push(hash);
        }
        self.events.insert(hash, event);
        self.fifo.push_back(hash);
        while self.events.len() > MAX_PENDING {
            let Some(old) = self.fifo.pop_front() else {
                break;
            };
            if let Some(ev) = self.events.remove(&old) {
                for p in &ev.parents {
                    if let Some(list) = self.waiting.get_mut(p) {
                        list.retain(|h| *h != old);
                        if list.is_empty() {
                            self.waiting.remove(p);
                        }
                    }
                }
            }
        }
        if self.fifo.len() > 2 * MAX_PENDING {
            let events = &self.events;
            self.fifo.retain(|h| events.contains_key(h));
        }
    }

    /// Drops `hash` if it is waiting; whether it was.
    fn forget(&mut self, hash: &EventHash) -> bool {
        let Some(event) = self.events.remove(hash) else {
            return false;
        };
        for p in &event.parents {
            if let Some(list) = self.waiting.get_mut(p) {
                list.retain(|h| h != hash);
                if list.is_empty() {
                    self.waiting.remove(p);
                }
            }
        }
        true
    }

    /// Removes and returns the events that were waiting for `parent`.
    fn take_children(&mut self, parent: &EventHash) -> Vec<Verified<Event>> {
        let Some(children) = self.waiting.remove(parent) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for child in children {
            if let Some(event) = self.events.remove(&child) {
                // Drop its registrations under other missing parents; `insert` re-parks it if
                // some are still missing.
                for p in &event.parents {
                    if let Some(list) = self.waiting.get_mut(p) {
                        list.retain(|h| *h != child);
                        if list.is_empty() {
                            self.waiting.remove(p);
                        }
                    }
                }
                out.push(event);
            }
        }
        out
    }
}
