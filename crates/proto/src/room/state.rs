//! The state a room's log produces, and the authorisation rules every event is checked against.
//!
//! Roles form a ladder: host > moderators > speakers > listeners. The stage is the host, the
//! moderators and the speakers (three disjoint sets). Banned keys hold no role at all.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};

use super::event::{Event, EventBody, Genesis, Info, Visibility};
use crate::identity::PublicKey;

/// Someone's place in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the room; may do everything.
    Host,
    /// On stage; manages speakers, mutes, kicks, bans and info, never against the host or
    /// another moderator.
    Moderator,
    /// On stage; may speak.
    Speaker,
    /// In the audience.
    Listener,
    /// Banned: may do nothing.
    Banned,
}

/// Why an event (or an action someone tries) is not allowed in the current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The room has ended.
    #[error("the room has ended")]
    Ended,
    /// A room has exactly one genesis.
    #[error("a room has only one genesis")]
    SecondGenesis,
    /// The author is banned.
    #[error("you are banned from this room")]
    AuthorBanned,
    /// Host-only action.
    #[error("only the host can do that")]
    NotHost,
    /// Host- or moderator-only action.
    #[error("only the host or a moderator can do that")]
    NotModerator,
    /// Nobody may act on the host this way.
    #[error("nobody can do that to the host")]
    TargetIsHost,
    /// Moderators may not act on moderators.
    #[error("a moderator cannot do that to a moderator; ask the host")]
    TargetIsModerator,
    /// The action cannot be aimed at oneself.
    #[error("you cannot do that to yourself")]
    TargetIsSelf,
    /// The target is banned.
    #[error("they are banned from this room")]
    TargetBanned,
    /// The target (or author) is already on stage.
    #[error("already on stage")]
    AlreadyOnStage,
    /// The target (or author) is not on stage.
    #[error("not on stage")]
    NotOnStage,
    /// Already invited.
    #[error("already invited")]
    AlreadyInvited,
    /// No invitation to accept.
    #[error("you have not been invited to speak")]
    NotInvited,
    /// Hand already raised.
    #[error("your hand is already raised")]
    HandAlreadyRaised,
    /// No raised hand to lower.
    #[error("your hand is not raised")]
    HandNotRaised,
    /// Already muted.
    #[error("already muted")]
    AlreadyMuted,
    /// Not muted.
    #[error("not muted")]
    NotMuted,
    /// Already a moderator.
    #[error("already a moderator")]
    AlreadyModerator,
    /// Not a moderator.
    #[error("not a moderator")]
    TargetNotModerator,
    /// Already banned.
    #[error("already banned")]
    AlreadyBanned,
    /// Not banned.
    #[error("not banned")]
    NotBanned,
    /// The host must hand the room off rather than step down.
    #[error("the host cannot step down; hand the room to someone first")]
    HostCannotStepDown,
    /// Only a successor named in the genesis may claim the host role.
    #[error("only a successor named when the room was opened can take over as host")]
    NotSuccessor,
    /// The author is already the host.
    #[error("you are already the host")]
    AlreadyHost,
    /// Recording flag already in that position.
    #[error("recording is already {}", if *.0 { "on" } else { "off" })]
    RecordingUnchanged(bool),
    /// Visibility and info bounds.
    #[error("invalid room info: {0}")]
    BadInfo(&'static str),
    /// The target is not on the list of successors.
    #[error("they are not a successor")]
    NotASuccessor,
    /// The event is void under the log's revocation rules (see [`Void`]).
    #[error("{0}")]
    Void(Void),
}

/// Why an event that was admitted into the log has no effect whatever its place in the order.
/// These rules depend only on the log's DAG, so every replica voids the same events; see
/// `docs/room-log.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Void {
    /// Concurrent with an event that took the author's authority away (demote, move to the
    /// audience, kick, ban, or for a claim: removal from the successors): revocation wins.
    #[error("void: the author's authority was taken away concurrently")]
    Revoked,
    /// The author signed two branches of the log (two events neither of which names the other
    /// as its author's previous event); their events from then on count for nothing.
    #[error("void: the author signed conflicting branches of the log")]
    Forked,
    /// Acts on someone who concurrently became a moderator or the host.
    #[error("void: the target became a moderator or the host concurrently")]
    TargetRaised,
    /// A host claim concurrent with the host's own activity or with an earlier successor's
    /// claim.
    #[error("void: the host was active, or an earlier successor claimed, concurrently")]
    ClaimContested,
}

/// How long a kicked key stays out of the room, in milliseconds from the kick's `created_at`.
pub const KICK_COOLDOWN_MS: u64 = 5 * 60 * 1000;

/// Raised hands, oldest first: ordered by the raising event's lamport, then key, so every
/// replica lists them alike whatever order concurrent raises arrived in. Persistent maps: a
/// snapshot of the state shares them instead of copying (any listener can add one).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Hands {
    since: imbl::OrdMap<PublicKey, u64>,
    order: imbl::OrdSet<(u64, PublicKey)>,
}

impl Hands {
    /// Whether `who` has a hand up.
    pub fn contains(&self, who: &PublicKey) -> bool {
        self.since.contains_key(who)
    }

    /// The raised hands, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> + '_ {
        self.order.iter().map(|(_, k)| k)
    }

    /// How many hands are up.
    pub fn len(&self) -> usize {
        self.since.len()
    }

    /// Whether no hand is up.
    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    /// The raised hands, oldest first, as a vector.
    pub fn to_vec(&self) -> Vec<PublicKey> {
        self.iter().copied().collect()
    }

    fn raise(&mut self, who: PublicKey, lamport: u64) {
        if self.since.insert(who, lamport).is_none() {
            self.order.insert((lamport, who));
        }
    }

    fn lower(&mut self, who: &PublicKey) {
        if let Some(lamport) = self.since.remove(who) {
            self.order.remove(&(lamport, *who));
        }
    }
}

impl Serialize for Hands {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// What a room's log says now: roles, hands, mutes, bans, info, whether it has ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct State {
    /// Title, topic, tags, language.
    pub info: Info,
    /// Public or private (fixed at genesis).
    pub visibility: Visibility,
    /// The host.
    pub host: PublicKey,
    /// The moderators (never the host).
    pub moderators: BTreeSet<PublicKey>,
    /// Speakers other than the host and moderators.
    pub speakers: BTreeSet<PublicKey>,
    /// Raised hands, oldest first.
    pub hands: Hands,
    /// Invited to speak, not yet accepted.
    pub invited: BTreeSet<PublicKey>,
    /// Muted by a moderator; nobody plays or forwards their audio.
    pub muted: BTreeSet<PublicKey>,
    /// Banned.
    pub banned: BTreeSet<PublicKey>,
    /// Kicked, with the kick's `created_at` (unix ms): out of the room for
    /// [`KICK_COOLDOWN_MS`] from then (see [`State::is_kicked`]).
    pub kicked: BTreeMap<PublicKey, u64>,
    /// Who said they are recording (a persistent set: any listener can add to it).
    pub recording: imbl::OrdSet<PublicKey>,
    /// Who may claim the host role, in order (from the genesis, less those the host removed).
    pub successors: Vec<PublicKey>,
    /// When the room started (the genesis's `created_at`).
    pub started_at: u64,
    /// Whether the host ended the room.
    pub ended: bool,
}

impl State {
    /// The state right after a genesis authored by `host`.
    pub fn from_genesis(host: PublicKey, genesis: &Genesis, created_at: u64) -> Self {
        Self {
            info: genesis.info.clone(),
            visibility: genesis.visibility,
            host,
            moderators: BTreeSet::new(),
            speakers: BTreeSet::new(),
            hands: Hands::default(),
            invited: BTreeSet::new(),
            muted: BTreeSet::new(),
            banned: BTreeSet::new(),
            kicked: BTreeMap::new(),
            recording: imbl::OrdSet::new(),
            successors: genesis.successors.clone(),
            started_at: created_at,
            ended: false,
        }
    }

    /// `who`'s role.
    pub fn role(&self, who: &PublicKey) -> Role {
        if self.banned.contains(who) {
            Role::Banned
        } else if *who == self.host {
            Role::Host
        } else if self.moderators.contains(who) {
            Role::Moderator
        } else if self.speakers.contains(who) {
            Role::Speaker
        } else {
            Role::Listener
        }
    }

    /// Whether `who` was kicked less than [`KICK_COOLDOWN_MS`] before `now_ms` (unix ms).
    pub fn is_kicked(&self, who: &PublicKey, now_ms: u64) -> bool {
        self.kicked
            .get(who)
            .is_some_and(|at| now_ms < at.saturating_add(KICK_COOLDOWN_MS))
    }

    /// Whether `who` is on stage (host, moderator or speaker).
    pub fn on_stage(&self, who: &PublicKey) -> bool {
        matches!(self.role(who), Role::Host | Role::Moderator | Role::Speaker)
    }

    /// Whether nodes should play and forward `who`'s audio: on stage, not muted, room open.
    pub fn may_transmit(&self, who: &PublicKey) -> bool {
        !self.ended && self.on_stage(who) && !self.muted.contains(who)
    }

    /// Everyone on stage: host first, then moderators, then speakers.
    pub fn stage(&self) -> Vec<PublicKey> {
        let mut out = vec![self.host];
        out.extend(self.moderators.iter().copied());
        out.extend(self.speakers.iter().copied());
        out
    }

    /// Rank used to order concurrent events: 0 host, 1 moderators, 2 everyone else.
    pub fn rank(&self, who: &PublicKey) -> u8 {
        match self.role(who) {
            Role::Host => 0,
            Role::Moderator => 1,
            _ => 2,
        }
    }

    /// Whether `event`'s author may do what it does in this state.
    pub fn check(&self, event: &Event) -> Result<(), Refusal> {
        check(self, &event.author, &event.body)
    }

    /// Checks `event` and, if allowed, applies it.
    pub fn apply(&mut self, event: &Event) -> Result<(), Refusal> {
        self.check(event)?;
        self.apply_unchecked(event);
        Ok(())
    }

    fn remove_everywhere(&mut self, who: &PublicKey) {
        self.moderators.remove(who);
        self.speakers.remove(who);
        self.hands.lower(who);
        self.invited.remove(who);
        self.muted.remove(who);
    }

    fn apply_unchecked(&mut self, event: &Event) {
        let author = event.author;
        match &event.body {
            EventBody::Genesis(_) => {}
            EventBody::RaiseHand => self.hands.raise(author, event.lamport),
            EventBody::LowerHand => self.hands.lower(&author),
            EventBody::InviteSpeaker { who } => {
                self.invited.insert(*who);
            }
            EventBody::AcceptInvite => {
                self.remove_everywhere(&author);
                self.speakers.insert(author);
            }
            EventBody::StepDown => self.remove_everywhere(&author),
            EventBody::MoveToAudience { who } => self.remove_everywhere(who),
            EventBody::Mute { who } => {
                self.muted.insert(*who);
            }
            EventBody::Unmute { who } => {
                self.muted.remove(who);
            }
            EventBody::Promote { who } => {
                let was_muted = self.muted.contains(who);
                self.remove_everywhere(who);
                if was_muted {
                    self.muted.insert(*who);
                }
                self.moderators.insert(*who);
            }
            EventBody::Demote { who } => {
                self.moderators.remove(who);
                self.speakers.insert(*who);
            }
            EventBody::Kick { who } => {
                self.remove_everywhere(who);
                self.recording.remove(who);
                self.kicked.insert(*who, event.created_at);
            }
            EventBody::Ban { who } => {
                self.remove_everywhere(who);
                self.recording.remove(who);
                self.banned.insert(*who);
            }
            EventBody::Unban { who } => {
                self.banned.remove(who);
            }
            EventBody::UpdateInfo(info) => self.info = info.clone(),
            EventBody::Recording { on } => {
                if *on {
                    self.recording.insert(author);
                } else {
                    self.recording.remove(&author);
                }
            }
            EventBody::HandOff { .. } | EventBody::ClaimHost => {
                let new_host = match &event.body {
                    EventBody::HandOff { to } => *to,
                    _ => author,
                };
                let old = self.host;
                self.remove_everywhere(&new_host);
                self.host = new_host;
                self.moderators.insert(old);
            }
            EventBody::EndRoom => self.ended = true,
            EventBody::RemoveSuccessor { who } => self.successors.retain(|s| s != who),
        }
    }
}

/// The authorisation rules (DESIGN.md §3).
fn check(state: &State, author: &PublicKey, body: &EventBody) -> Result<(), Refusal> {
    use EventBody as B;
    if state.ended {
        return Err(Refusal::Ended);
    }
    if state.banned.contains(author) {
        return Err(Refusal::AuthorBanned);
    }
    let role = state.role(author);
    let is_host = role == Role::Host;
    let is_mod = matches!(role, Role::Host | Role::Moderator);
    // Moderator-level actions on someone: the host may act on anyone but itself; a moderator
    // never on the host or another moderator.
    let may_act_on = |who: &PublicKey| -> Result<(), Refusal> {
        if !is_mod {
            return Err(Refusal::NotModerator);
        }
        if who == author {
            return Err(Refusal::TargetIsSelf);
        }
        match state.role(who) {
            Role::Host => Err(Refusal::TargetIsHost),
            Role::Moderator if !is_host => Err(Refusal::TargetIsModerator),
            _ => Ok(()),
        }
    };
    match body {
        B::Genesis(_) => Err(Refusal::SecondGenesis),
        B::RaiseHand => {
            if state.on_stage(author) {
                Err(Refusal::AlreadyOnStage)
            } else if state.hands.contains(author) {
                Err(Refusal::HandAlreadyRaised)
            } else {
                Ok(())
            }
        }
        B::LowerHand => {
            if state.hands.contains(author) {
                Ok(())
            } else {
                Err(Refusal::HandNotRaised)
            }
        }
        B::InviteSpeaker { who } => {
            may_act_on(who)?;
            if state.banned.contains(who) {
                Err(Refusal::TargetBanned)
            } else if state.on_stage(who) {
                Err(Refusal::AlreadyOnStage)
            } else if state.invited.contains(who) {
                Err(Refusal::AlreadyInvited)
            } else {
                Ok(())
            }
        }
        B::AcceptInvite => {
            if state.invited.contains(author) {
                Ok(())
            } else {
                Err(Refusal::NotInvited)
            }
        }
        B::StepDown => match role {
            Role::Host => Err(Refusal::HostCannotStepDown),
            Role::Moderator | Role::Speaker => Ok(()),
            _ => Err(Refusal::NotOnStage),
        },
        B::MoveToAudience { who } => {
            may_act_on(who)?;
            if state.on_stage(who) {
                Ok(())
            } else {
                Err(Refusal::NotOnStage)
            }
        }
        B::Mute { who } => {
            may_act_on(who)?;
            if !state.on_stage(who) {
                Err(Refusal::NotOnStage)
            } else if state.muted.contains(who) {
                Err(Refusal::AlreadyMuted)
            } else {
                Ok(())
            }
        }
        B::Unmute { who } => {
            may_act_on(who)?;
            if state.muted.contains(who) {
                Ok(())
            } else {
                Err(Refusal::NotMuted)
            }
        }
        B::Promote { who } => {
            if !is_host {
                return Err(Refusal::NotHost);
            }
            may_act_on(who)?;
            if state.banned.contains(who) {
                Err(Refusal::TargetBanned)
            } else if state.moderators.contains(who) {
                Err(Refusal::AlreadyModerator)
            } else {
                Ok(())
            }
        }
        B::Demote { who } => {
            if !is_host {
                return Err(Refusal::NotHost);
            }
            may_act_on(who)?;
            if state.moderators.contains(who) {
                Ok(())
            } else {
                Err(Refusal::TargetNotModerator)
            }
        }
        B::Kick { who } => may_act_on(who),
        B::Ban { who } => {
            may_act_on(who)?;
            if state.banned.contains(who) {
                Err(Refusal::AlreadyBanned)
            } else {
                Ok(())
            }
        }
        B::Unban { who } => {
            if !is_mod {
                return Err(Refusal::NotModerator);
            }
            if state.banned.contains(who) {
                Ok(())
            } else {
                Err(Refusal::NotBanned)
            }
        }
        B::UpdateInfo(info) => {
            if !is_mod {
                return Err(Refusal::NotModerator);
            }
            info.check_bounds().map_err(Refusal::BadInfo)
        }
        B::Recording { on } => {
            if state.recording.contains(author) == *on {
                Err(Refusal::RecordingUnchanged(*on))
            } else {
                Ok(())
            }
        }
        B::HandOff { to } => {
            if !is_host {
                Err(Refusal::NotHost)
            } else if to == author {
                Err(Refusal::TargetIsSelf)
            } else if state.banned.contains(to) {
                Err(Refusal::TargetBanned)
            } else {
                Ok(())
            }
        }
        B::ClaimHost => {
            if is_host {
                Err(Refusal::AlreadyHost)
            } else if !state.successors.contains(author) {
                Err(Refusal::NotSuccessor)
            } else {
                Ok(())
            }
        }
        B::EndRoom => {
            if is_host {
                Ok(())
            } else {
                Err(Refusal::NotHost)
            }
        }
        B::RemoveSuccessor { who } => {
            if !is_host {
                Err(Refusal::NotHost)
            } else if state.successors.contains(who) {
                Ok(())
            } else {
                Err(Refusal::NotASuccessor)
            }
        }
    }
}
