//! A room's log: a DAG of verified events, its deterministic linearisation, and the state it
//! produces.
//!
//! # Order
//!
//! The events are linearised with Kahn's algorithm: of the events whose parents have all been
//! placed, the next is the one with the smallest `(rank of its author in the state so far,
//! lamport, hash)`, where rank is 0 for the host, 1 for moderators and 2 for everyone else. Each
//! event is then checked against the state that the events before it produce; a refused event
//! stays in the log (others may name it as a parent) but changes nothing. The order depends only
//! on the *set* of events, so every replica that holds the same events computes the same state.
//!
//! # Admission
//!
//! An event enters the log only if its author had the authority for it in the state of its own
//! causal past (its ancestors, linearised the same way). That decision depends only on the event
//! and its ancestors, so every replica admits the same events, and nobody can fill a log with
//! actions they were never allowed to take. Events whose parents are missing wait in a bounded
//! pending set and are admitted when the parents arrive.
//!
//! # Cost
//!
//! The common case, an event whose parents are exactly the current heads, is appended and
//! applied in O(log n). An event concurrent with others re-runs the order from the nearest state
//! snapshot before its parents (snapshots every [`SNAPSHOT_INTERVAL`] events).

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};

use rand_core::Rng;

use super::event::{Event, EventBody, EventHash, Genesis, MAX_PARENTS, RoomId};
use super::state::{Refusal, State};
use crate::identity::{Identity, PublicKey};
use crate::signed::{self, HashMapOf, HashSetOf, SignError, Verified, VerifyError};

/// Events applied between two state snapshots.
pub const SNAPSHOT_INTERVAL: usize = 32;
/// Most events kept while waiting for their parents; the oldest is dropped beyond it.
pub const MAX_PENDING: usize = 1024;

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
    /// The author lacked the authority at the event's causal point.
    #[error("not allowed: {0}")]
    Unauthorized(Refusal),
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

struct Node {
    event: Verified<Event>,
    /// Index in `Room::order`.
    pos: usize,
    children: Vec<EventHash>,
}

/// One room's log and state. See the module docs for the order and admission rules.
pub struct Room {
    id: RoomId,
    nodes: HashMapOf<Node>,
    /// The linearisation; `order[0]` is the genesis.
    order: Vec<EventHash>,
    /// For each position: `None` if the event took effect, else why it was overridden.
    outcomes: Vec<Option<Refusal>>,
    /// `snapshots[i]` is the state after `order[..=i * SNAPSHOT_INTERVAL]`.
    snapshots: Vec<State>,
    state: State,
    heads: BTreeSet<EventHash>,
    pending: Pending,
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
        let state = State::from_genesis(genesis.author, body, genesis.created_at);
        let hash = genesis.hash();
        let mut nodes = HashMapOf::default();
        nodes.insert(
            hash,
            Node {
                event: genesis,
                pos: 0,
                children: Vec::new(),
            },
        );
        Ok(Room {
            id: RoomId(hash),
            nodes,
            order: vec![hash],
            outcomes: vec![None],
            snapshots: vec![state.clone()],
            state,
            heads: BTreeSet::from([hash]),
            pending: Pending::default(),
        })
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

    /// The log in its linear order, each event with `None` if it took effect or the reason it
    /// was overridden by a concurrent event that came first.
    pub fn events(&self) -> impl Iterator<Item = (&Verified<Event>, Option<&Refusal>)> + '_ {
        self.order
            .iter()
            .zip(&self.outcomes)
            .map(|(h, o)| (&self.nodes[h].event, o.as_ref()))
    }

    /// Authors `body` as `identity` on top of the current heads, checks it against the current
    /// state, signs it and adds it to the log. Returns the signed event to publish.
    pub fn author(
        &mut self,
        identity: &Identity,
        body: EventBody,
        created_at: u64,
    ) -> Result<Verified<Event>, AuthorError> {
        let parents: Vec<EventHash> = self.heads.iter().take(MAX_PARENTS).copied().collect();
        let lamport = 1 + parents
            .iter()
            .map(|p| self.nodes[p].event.lamport)
            .max()
            .unwrap_or(0);
        let event = Event {
            room: self.id,
            author: identity.public(),
            parents,
            lamport,
            created_at,
            body,
        };
        self.causal_state(&event.parents).check(&event)?;
        let signed = signed::sign(identity, event)?;
        match self.insert(signed.clone()) {
            Insert::New { .. } => Ok(signed),
            Insert::Rejected(Reject::Unauthorized(refusal)) => Err(AuthorError::Refused(refusal)),
            // The parents are our own heads and the check above passed, so this does not happen;
            // report it rather than panic.
            other => Err(AuthorError::NotAdmitted(format!("{other:?}"))),
        }
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

    /// Inserts a verified event: admits it, parks it until its parents arrive, or rejects it.
    pub fn insert(&mut self, event: Verified<Event>) -> Insert {
        let hash = event.hash();
        if self.nodes.contains_key(&hash) || self.pending.events.contains_key(&hash) {
            return Insert::Known;
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

    /// Checks lamport and authority of an event whose parents are all present, then adds it.
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
        self.causal_state(&event.parents)
            .check(&event)
            .map_err(Reject::Unauthorized)?;

        let hash = event.hash();
        let parents_are_heads = event.parents.len() == self.heads.len()
            && event.parents.iter().all(|p| self.heads.contains(p));
        let resume_from = 1 + event
            .parents
            .iter()
            .map(|p| self.nodes[p].pos)
            .max()
            .unwrap_or(0);
        for p in &event.parents {
            self.heads.remove(p);
            if let Some(node) = self.nodes.get_mut(p) {
                node.children.push(hash);
            }
        }
        self.heads.insert(hash);
        self.nodes.insert(
            hash,
            Node {
                event,
                pos: usize::MAX,
                children: Vec::new(),
            },
        );
        if parents_are_heads || self.goes_last(resume_from, &self.nodes[&hash].event, &hash) {
            // Everything already placed is an ancestor, or the new event sorts after every
            // event it is concurrent with: it comes last.
            self.place(hash);
        } else {
            self.relinearise(resume_from, Some(hash));
        }
        Ok(())
    }

    /// Appends `hash` to the order and applies it to the current state.
    fn place(&mut self, hash: EventHash) {
        let node = self
            .nodes
            .get_mut(&hash)
            .expect("placed events are in the DAG");
        node.pos = self.order.len();
        let outcome = self.state.apply(&node.event).err();
        self.order.push(hash);
        self.outcomes.push(outcome);
        if (self.order.len() - 1).is_multiple_of(SNAPSHOT_INTERVAL) {
            self.snapshots.push(self.state.clone());
        }
    }

    /// Recomputes the order and the state of the whole log from the genesis. The result is the
    /// same as the incrementally maintained one; this exists to measure and check that.
    pub fn recompute(&mut self) -> &State {
        self.relinearise(1, None);
        &self.state
    }

    /// Re-runs the order from the snapshot at or before position `from`, with `new` added.
    fn relinearise(&mut self, from: usize, new: Option<EventHash>) {
        let snapshot = (from - 1) / SNAPSHOT_INTERVAL;
        let base = 1 + snapshot * SNAPSHOT_INTERVAL;
        let mut suffix: Vec<EventHash> = self.order.split_off(base.min(self.order.len()));
        suffix.extend(new);
        self.outcomes.truncate(base);
        self.snapshots.truncate(snapshot + 1);
        self.state = self.snapshots[snapshot].clone();
        let in_suffix: HashSetOf = suffix.iter().copied().collect();
        let (order, outcomes, snapshots) =
            (&mut self.order, &mut self.outcomes, &mut self.snapshots);
        linearise(
            &self.nodes,
            &mut self.state,
            &suffix,
            |h| !in_suffix.contains(h),
            |hash, outcome, state| {
                order.push(hash);
                outcomes.push(outcome);
                if (order.len() - 1) % SNAPSHOT_INTERVAL == 0 {
                    snapshots.push(state.clone());
                }
            },
        );
        for (pos, hash) in self.order.iter().enumerate().skip(base) {
            if let Some(node) = self.nodes.get_mut(hash) {
                node.pos = pos;
            }
        }
    }

    /// Whether an event whose parents are all at positions before `from` is placed last by
    /// the order rule. Cheap when no event from `from` on can change anyone's rank: then ranks
    /// are those of the current state all along, and the new event goes last if its key is
    /// larger than that of every event from `from` on (Kahn would have picked it earlier at
    /// the first place where it is smaller).
    fn goes_last(&self, from: usize, event: &Event, hash: &EventHash) -> bool {
        let key = |e: &Event, h: &EventHash| (self.state.rank(&e.author), e.lamport, *h);
        let new_key = key(event, hash);
        self.order[from..].iter().all(|h| {
            let e = &self.nodes[h].event;
            !changes_ranks(&e.body) && key(e, h) < new_key
        })
    }

    /// The state in which an event with these parents is judged: that of its ancestors.
    ///
    /// The ancestors are linearised with the same rule as the whole log. Their order agrees
    /// with the log's order on the longest prefix of the log made only of ancestors (Kahn's
    /// choice among a subset of the ready events is the same while the full choice lies in the
    /// subset), so only the ancestors after the first non-ancestor need ordering, starting from
    /// the snapshot state there. That first non-ancestor is found by walking down from the heads
    /// and the parents together in decreasing position, until no non-ancestor remains on the
    /// frontier: the cost follows how far back the concurrency goes, not the log's length.
    fn causal_state(&self, parents: &[EventHash]) -> Cow<'_, State> {
        let parents_are_heads =
            parents.len() == self.heads.len() && parents.iter().all(|p| self.heads.contains(p));
        if parents_are_heads {
            return Cow::Borrowed(&self.state);
        }
        // Mark: true = ancestor of the new event, false = reachable only from other heads.
        let mut mark: HashMapOf<bool> = HashMapOf::default();
        let mut frontier: std::collections::BinaryHeap<(usize, EventHash)> = Default::default();
        let mut others = 0usize;
        for p in parents {
            if let Some(node) = self.nodes.get(p) {
                mark.insert(*p, true);
                frontier.push((node.pos, *p));
            }
        }
        for h in &self.heads {
            if !mark.contains_key(h) {
                mark.insert(*h, false);
                frontier.push((self.nodes[h].pos, *h));
                others += 1;
            }
        }
        let mut first_other = usize::MAX;
        let mut ancestors_seen: Vec<(usize, EventHash)> = Vec::new();
        while others > 0 {
            let Some((pos, hash)) = frontier.pop() else {
                break;
            };
            let is_ancestor = mark[&hash];
            if is_ancestor {
                ancestors_seen.push((pos, hash));
            } else {
                others -= 1;
                first_other = first_other.min(pos);
            }
            for parent in &self.nodes[&hash].event.parents {
                match mark.get(parent).copied() {
                    None => {
                        mark.insert(*parent, is_ancestor);
                        frontier.push((self.nodes[parent].pos, *parent));
                        if !is_ancestor {
                            others += 1;
                        }
                    }
                    Some(false) if is_ancestor => {
                        // Reachable from the new event after all: an ancestor.
                        mark.insert(*parent, true);
                        others -= 1;
                    }
                    _ => {}
                }
            }
        }
        if first_other == usize::MAX {
            // Every event in the log is an ancestor.
            return Cow::Borrowed(&self.state);
        }
        let mut state = self.state_after(first_other);
        let set: Vec<EventHash> = ancestors_seen
            .iter()
            .filter(|(pos, _)| *pos > first_other)
            .map(|(_, h)| *h)
            .collect();
        let nodes = &self.nodes;
        linearise(
            nodes,
            &mut state,
            &set,
            |h| nodes[h].pos < first_other,
            |_, _, _| {},
        );
        // Test and debug builds check the shortcut against the definition on small logs.
        #[cfg(debug_assertions)]
        if self.order.len() <= 2_000 {
            debug_assert_eq!(state, self.causal_state_by_definition(parents));
        }
        Cow::Owned(state)
    }

    /// The causal state computed straight from its definition: all ancestors, linearised from
    /// the genesis. O(log length); used to check [`Room::causal_state`] in debug builds.
    #[cfg(debug_assertions)]
    fn causal_state_by_definition(&self, parents: &[EventHash]) -> State {
        let ancestors = self.ancestors(parents);
        let mut state = self.snapshots[0].clone();
        let set: Vec<EventHash> = self
            .order
            .iter()
            .skip(1)
            .filter(|h| ancestors.contains(h))
            .copied()
            .collect();
        let genesis = self.order[0];
        linearise(
            &self.nodes,
            &mut state,
            &set,
            |h| *h == genesis,
            |_, _, _| {},
        );
        state
    }

    /// The state after applying `order[..k]` (`k >= 1`).
    fn state_after(&self, k: usize) -> State {
        let snapshot = (k - 1) / SNAPSHOT_INTERVAL;
        let mut state = self.snapshots[snapshot].clone();
        for hash in &self.order[1 + snapshot * SNAPSHOT_INTERVAL..k] {
            let _ = state.apply(&self.nodes[hash].event);
        }
        state
    }

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
    ///
    /// Heads we do not know are ignored (the peer has events we lack; it will send them).
    /// With no known head the answer starts at the genesis. Call again with the new heads for
    /// the next page.
    pub fn missing_for(&self, remote_heads: &[EventHash], limit: usize) -> Vec<&Verified<Event>> {
        let known = self.ancestors(remote_heads);
        self.order
            .iter()
            .filter(|h| !known.contains(h))
            .take(limit)
            .map(|h| &self.nodes[h].event)
            .collect()
    }

    /// The first successor named in the genesis who is not the host, not banned and for whom
    /// `is_present` holds: who should claim the host role when the host is gone.
    pub fn next_host(&self, mut is_present: impl FnMut(&PublicKey) -> bool) -> Option<PublicKey> {
        let state = &self.state;
        state
            .successors
            .iter()
            .find(|s| **s != state.host && !state.banned.contains(s) && is_present(s))
            .copied()
    }
}

/// Kahn's algorithm over `set`, starting from `state`, where parents for which `in_prefix`
/// holds are already placed. Returns the hashes in order; `state` ends as the result.
fn linearise(
    nodes: &HashMapOf<Node>,
    state: &mut State,
    set: &[EventHash],
    in_prefix: impl Fn(&EventHash) -> bool,
    mut on_place: impl FnMut(EventHash, Option<Refusal>, &State),
) {
    let mut waiting: HashMapOf<usize> =
        HashMapOf::with_capacity_and_hasher(set.len(), Default::default());
    let mut ready: Vec<EventHash> = Vec::new();
    for hash in set {
        let unplaced = nodes[hash]
            .event
            .parents
            .iter()
            .filter(|p| !in_prefix(p))
            .count();
        if unplaced == 0 {
            ready.push(*hash);
        } else {
            waiting.insert(*hash, unplaced);
        }
    }
    while !ready.is_empty() {
        let (index, _) = ready
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let e = &nodes[h].event;
                (i, (state.rank(&e.author), e.lamport, *h))
            })
            .min_by(|a, b| a.1.cmp(&b.1))
            .expect("ready is not empty");
        let hash = ready.swap_remove(index);
        let outcome = state.apply(&nodes[&hash].event).err();
        on_place(hash, outcome, state);
        for child in &nodes[&hash].children {
            if let Some(count) = waiting.get_mut(child) {
                *count -= 1;
                if *count == 0 {
                    waiting.remove(child);
                    ready.push(*child);
                }
            }
        }
    }
}

/// Whether an event of this kind can change someone's rank (who is host or moderator).
fn changes_ranks(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::Promote { .. }
            | EventBody::Demote { .. }
            | EventBody::HandOff { .. }
            | EventBody::ClaimHost
            | EventBody::Ban { .. }
            | EventBody::Kick { .. }
            | EventBody::MoveToAudience { .. }
            | EventBody::StepDown
    )
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
