//! Room events: the signed entries of a room's hash-linked log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::PublicKey;
use crate::signed::{Hash, Signable, check_str};

/// The content hash of an event: what parents point to.
pub type EventHash = Hash;

/// Most parents one event may name (a merge of this many concurrent branches at once).
pub const MAX_PARENTS: usize = 16;
/// Upper bound on a signed event on the wire.
pub const MAX_EVENT_LEN: usize = 4096;
/// Longest title, in bytes.
pub const MAX_TITLE_LEN: usize = 120;
/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 500;
/// Most tags on a room.
pub const MAX_TAGS: usize = 8;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 32;
/// Longest language code, in bytes (BCP 47, e.g. `id`, `pt-BR`).
pub const MAX_LANGUAGE_LEN: usize = 16;
/// Most successors a genesis may name.
pub const MAX_SUCCESSORS: usize = 8;

/// A room's identity: the hash of its genesis event, so it is bound to the host key that signed it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoomId(pub Hash);

impl RoomId {
    /// The placeholder a genesis event carries in its own `room` field.
    pub const GENESIS: RoomId = RoomId(Hash([0; 32]));

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        Hash::from_hex(s).map(Self)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({:?})", self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Whether a room is listed in the directory and whether its payloads are encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Visibility {
    /// Announced in the directory; anyone may join.
    #[default]
    Public,
    /// Not announced; reachable by ticket only, payloads sealed with the ticket's room key.
    Private,
}

/// What a room is about; set at genesis, changed by `UpdateInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Info {
    /// Short title shown in listings.
    pub title: String,
    /// A sentence or two about the room.
    pub topic: String,
    /// Free-form tags for browsing.
    pub tags: Vec<String>,
    /// Spoken language, a BCP 47 code such as `en` or `id`; empty when unknown.
    pub language: String,
}

impl Info {
    /// Checks lengths against the `MAX_*` bounds.
    pub fn check_bounds(&self) -> Result<(), &'static str> {
        if self.title.trim().is_empty() {
            return Err("title is empty");
        }
        check_str(&self.title, MAX_TITLE_LEN, "title too long")?;
        check_str(&self.topic, MAX_TOPIC_LEN, "topic too long")?;
        check_str(&self.language, MAX_LANGUAGE_LEN, "language code too long")?;
        if self.tags.len() > MAX_TAGS {
            return Err("too many tags");
        }
        for tag in &self.tags {
            check_str(tag, MAX_TAG_LEN, "tag too long")?;
        }
        Ok(())
    }
}

/// The first event of a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Title, topic, tags, language.
    pub info: Info,
    /// Public or private.
    pub visibility: Visibility,
    /// Who may take over, in order, when the host is gone (see [`EventBody::ClaimHost`]).
    pub successors: Vec<PublicKey>,
    /// Random bytes so one host can open many rooms with the same title.
    pub nonce: [u8; 16],
}

/// What an event does. The rules for who may author each are in [`super::State::check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    /// Opens the room; its author is the host.
    Genesis(Genesis),
    /// The author asks to speak.
    RaiseHand,
    /// The author withdraws a raised hand.
    LowerHand,
    /// A moderator invites someone onto the stage.
    InviteSpeaker {
        /// Who is invited.
        who: PublicKey,
    },
    /// The author accepts an invitation and becomes a speaker.
    AcceptInvite,
    /// The author leaves the stage for the audience.
    StepDown,
    /// A moderator moves a speaker to the audience.
    MoveToAudience {
        /// Who is moved.
        who: PublicKey,
    },
    /// A moderator mutes a speaker; every node drops their audio.
    Mute {
        /// Who is muted.
        who: PublicKey,
    },
    /// A moderator lifts a mute.
    Unmute {
        /// Who is unmuted.
        who: PublicKey,
    },
    /// The host makes someone a moderator.
    Promote {
        /// Who is promoted.
        who: PublicKey,
    },
    /// The host makes a moderator a plain speaker.
    Demote {
        /// Who is demoted.
        who: PublicKey,
    },
    /// A moderator removes someone from the room; they may come back after a cool-down.
    Kick {
        /// Who is removed.
        who: PublicKey,
    },
    /// A moderator bans someone: no role, no audio, connections refused.
    Ban {
        /// Who is banned.
        who: PublicKey,
    },
    /// A moderator lifts a ban.
    Unban {
        /// Who is let back.
        who: PublicKey,
    },
    /// A moderator changes the title, topic, tags or language.
    UpdateInfo(Info),
    /// The author says they are (or stopped) recording the room.
    Recording {
        /// Recording now?
        on: bool,
    },
    /// The host hands the room to someone else and becomes a moderator.
    HandOff {
        /// The new host.
        to: PublicKey,
    },
    /// A successor named in the genesis takes the host role (the host is gone); the old host,
    /// should they come back, is a moderator. Extends DESIGN.md §3's list: succession needs an
    /// event, because "the host is silent" is something each peer sees differently.
    ClaimHost,
    /// The host ends the room. Final: no event after it has any effect.
    EndRoom,
    /// The host takes someone off the list of successors; a claim they make concurrently with
    /// or after it is void.
    RemoveSuccessor {
        /// Who may no longer claim the host role.
        who: PublicKey,
    },
}

/// The standing an author needs to sign an event of some kind at all. Standing is granted by
/// events and never taken back; whether the author still has the *authority* is decided by the
/// state in the log's order (see `docs/room-log.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Anyone: actions on one's own place (hand, recording, accepting, stepping down).
    Anyone,
    /// A successor named in the genesis.
    Successor,
    /// The genesis host, or someone promoted, handed the room or who claimed it.
    Moderator,
    /// The genesis host, or someone handed the room or who claimed it.
    Host,
}

impl EventBody {
    /// The standing its author needs (see [`Standing`]).
    pub fn standing(&self) -> Standing {
        match self {
            EventBody::Genesis(_)
            | EventBody::RaiseHand
            | EventBody::LowerHand
            | EventBody::AcceptInvite
            | EventBody::StepDown
            | EventBody::Recording { .. } => Standing::Anyone,
            EventBody::ClaimHost => Standing::Successor,
            EventBody::InviteSpeaker { .. }
            | EventBody::MoveToAudience { .. }
            | EventBody::Mute { .. }
            | EventBody::Unmute { .. }
            | EventBody::Kick { .. }
            | EventBody::Ban { .. }
            | EventBody::Unban { .. }
            | EventBody::UpdateInfo(_) => Standing::Moderator,
            EventBody::Promote { .. }
            | EventBody::Demote { .. }
            | EventBody::HandOff { .. }
            | EventBody::EndRoom
            | EventBody::RemoveSuccessor { .. } => Standing::Host,
        }
    }

    /// Whether it only touches its author's own entries and nobody's rank (a hand, a recording
    /// notice, accepting an invitation): two of these by different authors commute.
    pub fn is_self_action(&self) -> bool {
        matches!(
            self,
            EventBody::RaiseHand
                | EventBody::LowerHand
                | EventBody::AcceptInvite
                | EventBody::Recording { .. }
        )
    }

    /// Whether it can change someone's rank (who is host or moderator).
    pub fn changes_ranks(&self) -> bool {
        matches!(
            self,
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

    /// Whether it takes standing away from its target: a demotion, a move to the audience, a
    /// kick, a ban, or removal from the successors (which counts only against claims).
    pub fn revokes(&self) -> Option<PublicKey> {
        match self {
            EventBody::Demote { who }
            | EventBody::MoveToAudience { who }
            | EventBody::Kick { who }
            | EventBody::Ban { who }
            | EventBody::RemoveSuccessor { who } => Some(*who),
            _ => None,
        }
    }

    /// Who it raises to moderator or host (promotion, hand-off); a claim raises its author.
    pub fn raises(&self, author: &PublicKey) -> Option<PublicKey> {
        match self {
            EventBody::Promote { who } | EventBody::HandOff { to: who } => Some(*who),
            EventBody::ClaimHost => Some(*author),
            _ => None,
        }
    }

    /// A short lower-case name, as used in logs and the JSON interface.
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Genesis(_) => "genesis",
            EventBody::RaiseHand => "raise_hand",
            EventBody::LowerHand => "lower_hand",
            EventBody::InviteSpeaker { .. } => "invite",
            EventBody::AcceptInvite => "accept_invite",
            EventBody::StepDown => "step_down",
            EventBody::MoveToAudience { .. } => "move_to_audience",
            EventBody::Mute { .. } => "mute",
            EventBody::Unmute { .. } => "unmute",
            EventBody::Promote { .. } => "promote",
            EventBody::Demote { .. } => "demote",
            EventBody::Kick { .. } => "kick",
            EventBody::Ban { .. } => "ban",
            EventBody::Unban { .. } => "unban",
            EventBody::UpdateInfo(_) => "update_info",
            EventBody::Recording { .. } => "recording",
            EventBody::HandOff { .. } => "hand_off",
            EventBody::ClaimHost => "claim_host",
            EventBody::EndRoom => "end",
            EventBody::RemoveSuccessor { .. } => "remove_successor",
        }
    }

    /// The person the event acts on, if it acts on someone other than its author.
    pub fn target(&self) -> Option<PublicKey> {
        match self {
            EventBody::InviteSpeaker { who }
            | EventBody::MoveToAudience { who }
            | EventBody::Mute { who }
            | EventBody::Unmute { who }
            | EventBody::Promote { who }
            | EventBody::Demote { who }
            | EventBody::Kick { who }
            | EventBody::Ban { who }
            | EventBody::Unban { who }
            | EventBody::RemoveSuccessor { who } => Some(*who),
            EventBody::HandOff { to } => Some(*to),
            _ => None,
        }
    }
}

/// One entry of a room's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The room ([`RoomId::GENESIS`] in the genesis itself).
    pub room: RoomId,
    /// Who signed it.
    pub author: PublicKey,
    /// The heads of the log its author had seen; empty only in the genesis.
    pub parents: Vec<EventHash>,
    /// One more than the largest lamport among the parents; 0 in the genesis.
    pub lamport: u64,
    /// The author's wall clock, unix milliseconds; informational (cool-downs, display).
    pub created_at: u64,
    /// What it does.
    pub body: EventBody,
}

impl Signable for Event {
    const DOMAIN: &'static [u8] = b"ruang/event/v1";
    const MAX_WIRE_LEN: usize = MAX_EVENT_LEN;

    fn author(&self) -> &PublicKey {
        &self.author
    }

    fn check_bounds(&self) -> Result<(), &'static str> {
        if self.parents.len() > MAX_PARENTS {
            return Err("too many parents");
        }
        // At most MAX_PARENTS: a quadratic check beats sorting a copy.
        for (i, p) in self.parents.iter().enumerate() {
            if self.parents[..i].contains(p) {
                return Err("duplicate parent");
            }
        }
        match &self.body {
            EventBody::Genesis(g) => {
                if self.room != RoomId::GENESIS || !self.parents.is_empty() || self.lamport != 0 {
                    return Err("a genesis has no room, no parents and lamport 0");
                }
                if g.successors.len() > MAX_SUCCESSORS {
                    return Err("too many successors");
                }
                g.info.check_bounds()
            }
            body => {
                if self.parents.is_empty() {
                    return Err("only a genesis has no parents");
                }
                if self.room == RoomId::GENESIS {
                    return Err("event names no room");
                }
                if let EventBody::UpdateInfo(info) = body {
                    info.check_bounds()?;
                }
                Ok(())
            }
        }
    }
}
