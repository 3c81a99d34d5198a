//! What a node tells its users ([`NodeEvent`]), and the views of room state it sends.

use serde::Serialize;

use ruang_proto::PublicKey;
use ruang_proto::room::{Role, RoomId, State};

/// Keys and room ids as users see them, in hex (the wire carries raw bytes).
mod hex {
    use serde::Serializer;

    /// A value shown in hex.
    pub trait Hex {
        /// Its hex form.
        fn hex(&self) -> String;
    }
    impl Hex for ruang_proto::PublicKey {
        fn hex(&self) -> String {
            self.to_hex()
        }
    }
    impl Hex for ruang_proto::room::RoomId {
        fn hex(&self) -> String {
            self.to_hex()
        }
    }

    /// `#[serde(serialize_with)]`: as a hex string.
    pub fn serialize<S: Serializer>(value: &impl Hex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.hex())
    }
}

/// Someone in the room, as the UI shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Person {
    /// Their key, which is also their peer id's key (hex in JSON).
    #[serde(serialize_with = "hex::serialize")]
    pub key: PublicKey,
    /// Self-chosen display name ("" if not yet known).
    pub name: String,
    /// Short fingerprint telling two people of the same name apart.
    pub fingerprint: String,
    /// Their role.
    pub role: Role,
    /// Muted by a moderator.
    pub muted: bool,
    /// Present (recent presence heartbeat).
    pub present: bool,
}

/// The room as the UI shows it: roles, hands, mutes, bans, info.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoomView {
    /// The room id (hex in JSON).
    #[serde(serialize_with = "hex::serialize")]
    pub room_id: RoomId,
    /// Title.
    pub title: String,
    /// Topic.
    pub topic: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Language.
    pub language: String,
    /// Private (ticket-only) room.
    pub private: bool,
    /// Host, moderators and speakers, in that order.
    pub stage: Vec<Person>,
    /// Present listeners: all of them, or in a room larger than the audience sample
    /// (`limits::AUDIENCE_SAMPLE`), the sample this node keeps.
    pub audience: Vec<Person>,
    /// How many listeners are present: counted, or estimated from the sample.
    pub listeners: u64,
    /// Raised hands, oldest first.
    pub hands: Vec<Person>,
    /// Invited, not yet accepted.
    pub invited: Vec<Person>,
    /// Muted by a moderator.
    pub muted: Vec<Person>,
    /// Banned (their names as last seen; "" for someone banned before this node saw them).
    pub banned: Vec<Person>,
    /// Who says they are recording.
    pub recording: Vec<Person>,
    /// Who the room goes to if this node, its host, leaves now: the first successor named at
    /// the room's creation who is here, else the first moderator here, else the first speaker
    /// here (never a listener, never someone banned). `None` when nobody can take it, or when
    /// this node is not the host.
    pub heir: Option<Person>,
    /// Whether the host ended the room.
    pub ended: bool,
    /// This node's own role.
    pub my_role: Role,
    /// Number of events in the room's log.
    pub log_len: usize,
}

impl RoomView {
    /// Builds the view from the verified state and the present members; `estimated_listeners`
    /// when those are a sample of the audience.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        room_id: RoomId,
        state: &State,
        me: &PublicKey,
        log_len: usize,
        name_of: impl Fn(&PublicKey) -> Option<String>,
        present: impl Fn(&PublicKey) -> bool,
        present_keys: impl Iterator<Item = PublicKey>,
        estimated_listeners: Option<u64>,
    ) -> RoomView {
        let person = |key: &PublicKey| Person {
            key: *key,
            name: name_of(key).unwrap_or_default(),
            fingerprint: key.fingerprint().to_string(),
            role: state.role(key),
            muted: state.muted.contains(key),
            present: present(key) || key == me,
        };
        let stage: Vec<Person> = state.stage().iter().map(person).collect();
        let audience: Vec<Person> = present_keys
            .filter(|k| state.role(k) == Role::Listener)
            .map(|k| person(&k))
            .collect();
        let people = |set: &std::collections::BTreeSet<PublicKey>| set.iter().map(person).collect();
        let heir = (state.role(me) == Role::Host && !state.ended)
            .then(|| heir(state, me, &present))
            .flatten()
            .map(|k| person(&k));
        RoomView {
            room_id,
            title: state.info.title.clone(),
            topic: state.info.topic.clone(),
            tags: state.info.tags.clone(),
            language: state.info.language.clone(),
            private: state.visibility == ruang_proto::room::Visibility::Private,
            stage,
            listeners: estimated_listeners.unwrap_or(audience.len() as u64),
            audience,
            hands: state.hands.iter().map(person).collect(),
            invited: people(&state.invited),
            muted: people(&state.muted),
            banned: people(&state.banned),
            recording: state.recording.iter().map(person).collect(),
            heir,
            ended: state.ended,
            my_role: state.role(me),
            log_len,
        }
    }
}

/// See [`RoomView::heir`].
fn heir(state: &State, me: &PublicKey, present: impl Fn(&PublicKey) -> bool) -> Option<PublicKey> {
    let can_take = |k: &&PublicKey| *k != me && present(k) && state.role(k) != Role::Banned;
    let stage = state.stage();
    state
        .successors
        .iter()
        .find(can_take)
        .or_else(|| {
            stage
                .iter()
                .filter(|k| state.role(k) == Role::Moderator)
                .find(can_take)
        })
        .or_else(|| {
            stage
                .iter()
                .filter(|k| state.role(k) == Role::Speaker)
                .find(can_take)
        })
        .copied()
}

/// Receive counters of one remote speaker, as the node measures them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpeakerStats {
    /// The speaker's key (hex in JSON).
    #[serde(serialize_with = "hex::serialize")]
    pub key: PublicKey,
    /// Their display name.
    pub name: String,
    /// Frames received.
    pub received: u64,
    /// Frames played from their own packet.
    pub played: u64,
    /// Frames that arrived after their playout slot.
    pub late: u64,
    /// Sequence numbers that never arrived in time.
    pub lost: u64,
    /// Lost frames rebuilt from FEC.
    pub fec: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// The jitter buffer's current target delay, ms.
    pub jitter_ms: u32,
    /// Audio buffered now, ms.
    pub depth_ms: u32,
}

/// A directory listing, as the UI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The room id (hex in JSON): `ruang join <room id>` works with it.
    #[serde(serialize_with = "hex::serialize")]
    pub room_id: RoomId,
    /// Title.
    pub title: String,
    /// Topic.
    pub topic: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Language.
    pub language: String,
    /// Host's name.
    pub host_name: String,
    /// Host's fingerprint.
    pub host_fingerprint: String,
    /// Speakers' names.
    pub speakers: Vec<String>,
    /// Listeners now.
    pub listeners: u32,
    /// Unix ms when it started.
    pub started_at: u64,
    /// Unix ms when it is scheduled, if it has not started.
    pub scheduled_for: Option<u64>,
}

/// Why a node left its room. Serialised in snake case (`"left"`, `"kicked"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The user asked to leave.
    Left,
    /// A moderator kicked this node.
    Kicked,
    /// A moderator banned this node.
    Banned,
    /// The room ended (the node stayed a moment so the end could spread).
    Ended,
    /// The node shut down.
    Shutdown,
}

impl LeaveReason {
    /// Whether a moderator removed the node (kicked or banned).
    pub fn removed(self) -> bool {
        matches!(self, LeaveReason::Kicked | LeaveReason::Banned)
    }
}

impl std::fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaveReason::Left => "left",
            LeaveReason::Kicked => "kicked",
            LeaveReason::Banned => "banned",
            LeaveReason::Ended => "the room has ended",
            LeaveReason::Shutdown => "the node shut down",
        })
    }
}

/// Something that happened, for UIs, bots and tests. Sent on a bounded broadcast channel: a
/// subscriber that falls far behind loses the oldest events (and is told how many).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// The node joined or opened a room.
    Joined {
        /// Room id (hex in JSON).
        #[serde(serialize_with = "hex::serialize")]
        room_id: RoomId,
        /// A ticket others can join with.
        ticket: String,
    },
    /// The room's state or membership changed.
    State(Box<RoomView>),
    /// Someone started or stopped talking (from the levels of the audio actually played, or
    /// for oneself from the microphone).
    Speaking {
        /// Their key (hex in JSON: `ready`'s `key`, not its `peer_id`).
        #[serde(serialize_with = "hex::serialize")]
        key: PublicKey,
        /// Their name.
        name: String,
        /// Talking now?
        active: bool,
    },
    /// Our addresses changed (a relay reservation, a confirmed external address), or a private
    /// room moved to a new key (someone was removed): the room's ticket others should use now.
    Ticket {
        /// The new ticket (`ruang1…`).
        ticket: String,
    },
    /// The first audio of a speaker reached this node (once per speaker and room).
    Hearing {
        /// Their key (hex in JSON).
        #[serde(serialize_with = "hex::serialize")]
        key: PublicKey,
        /// Their name.
        name: String,
        /// Unix µs at which the first frame arrived.
        unix_us: u64,
    },
    /// A chat line.
    Chat {
        /// Author key (hex in JSON).
        #[serde(serialize_with = "hex::serialize")]
        from: PublicKey,
        /// Author name.
        name: String,
        /// The text.
        text: String,
    },
    /// A reaction.
    Reaction {
        /// Author key (hex in JSON).
        #[serde(serialize_with = "hex::serialize")]
        from: PublicKey,
        /// Author name.
        name: String,
        /// The reaction.
        reaction: String,
    },
    /// Frame 0 of the audio source was due at this unix time (µs).
    CaptureStarted {
        /// Unix microseconds.
        unix_us: u64,
    },
    /// Sample 0 of the output was played at this unix time (µs).
    PlayoutStarted {
        /// Unix microseconds.
        unix_us: u64,
    },
    /// The audio source ended (end of a WAV file).
    SourceEnded,
    /// Receive statistics, about once a second.
    Stats {
        /// One entry per remote speaker heard.
        speakers: Vec<SpeakerStats>,
        /// Peers connected.
        peers: usize,
        /// Frames this node sent (all links).
        frames_sent: u64,
        /// Frames this node dropped on slow links.
        frames_dropped: u64,
        /// Listeners this node streams to directly.
        listeners_served: usize,
        /// The protection this node's listeners' loss reports call for, as a packet-loss
        /// hint, % (0: a clean path). Above 0 the node sends every frame twice
        /// (`sending_copies`) or, when the path is too narrow for that, turns Opus's FEC on
        /// with this hint.
        loss_hint_pct: u8,
        /// The bitrate this node's encoder uses now, bits per second (the configured one,
        /// lower while its links cannot carry it; 0 when not capturing).
        bitrate_bps: u32,
        /// Whether this node sends every frame twice now (its listeners report loss).
        sending_copies: bool,
    },
    /// Something went wrong that the user should know; the node keeps running.
    Error {
        /// What, in one line.
        message: String,
    },
    /// How a join is going (connecting, through which path, fetching the room): shown while
    /// `join` runs, emitted only then.
    Progress {
        /// One line.
        message: String,
    },
    /// A notice worth showing (a successor took over, someone was banned, ...).
    Notice {
        /// What happened, in one line.
        message: String,
    },
    /// The room ended.
    Ended,
    /// This node left the room (asked to, kicked or banned).
    Left {
        /// Why.
        reason: LeaveReason,
    },
    /// The subscriber fell behind and missed this many events.
    Lagged {
        /// Events missed.
        missed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruang_proto::room::{Genesis, Info, Visibility};

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    /// Host 1; successors 7 then 6; moderators 2, 3; speakers 4, 5.
    fn state() -> State {
        let genesis = Genesis {
            info: Info::default(),
            visibility: Visibility::Public,
            successors: vec![key(7), key(6)],
            nonce: [0; 16],
        };
        let mut s = State::from_genesis(key(1), &genesis, 0);
        s.moderators.extend([key(2), key(3)]);
        s.speakers.extend([key(4), key(5)]);
        s
    }

    fn heir_with(state: &State, here: &[u8]) -> Option<PublicKey> {
        heir(state, &key(1), |k: &PublicKey| {
            here.iter().any(|n| key(*n) == *k)
        })
    }

    #[test]
    fn the_heir_is_a_successor_then_a_moderator_then_a_speaker_who_is_here() {
        let mut s = state();
        assert_eq!(heir_with(&s, &[2, 4, 6, 7]), Some(key(7)));
        assert_eq!(heir_with(&s, &[2, 4, 6]), Some(key(6)));
        assert_eq!(heir_with(&s, &[3, 4]), Some(key(3)));
        assert_eq!(heir_with(&s, &[5, 9]), Some(key(5)));
        // Listeners (9) and the host itself never; banned members never.
        assert_eq!(heir_with(&s, &[1, 9]), None);
        s.banned.insert(key(7));
        assert_eq!(heir_with(&s, &[7, 4]), Some(key(4)));
    }

    #[test]
    fn only_the_host_of_an_open_room_sees_an_heir() {
        let s = state();
        let view = |me: u8, s: &State| {
            RoomView::new(
                RoomId::GENESIS,
                s,
                &key(me),
                1,
                |_| None,
                |_| true,
                std::iter::empty(),
                None,
            )
        };
        assert_eq!(view(1, &s).heir.map(|p| p.key), Some(key(7)));
        assert_eq!(view(2, &s).heir, None);
        let mut ended = state();
        ended.ended = true;
        assert_eq!(view(1, &ended).heir, None);
    }
}
