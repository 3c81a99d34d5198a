//! Room actions by name: the one mapping from what a user asks for (a JSON command, a key in
//! the terminal UI) to the signed event the node authors.

use ruang_proto::PublicKey;
use ruang_proto::room::EventBody;

/// A room action a user can ask for, before it names whom it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomAction {
    /// Ask to speak.
    RaiseHand,
    /// Withdraw the hand.
    LowerHand,
    /// Accept an invitation to speak.
    AcceptInvite,
    /// Leave the stage.
    StepDown,
    /// End the room for everyone (host only).
    EndRoom,
    /// Invite someone to speak.
    Invite,
    /// Move a speaker to the audience.
    MoveToAudience,
    /// Mute a speaker for everyone.
    Mute,
    /// Lift a mute.
    Unmute,
    /// Remove someone from the room.
    Kick,
    /// Ban someone.
    Ban,
    /// Lift a ban.
    Unban,
    /// Make someone a moderator (host only).
    Promote,
    /// Make a moderator a plain speaker (host only).
    Demote,
    /// Hand the room to someone (host only).
    HandOff,
}

impl RoomAction {
    /// Whether only the host may take it.
    pub fn host_only(self) -> bool {
        matches!(
            self,
            RoomAction::EndRoom | RoomAction::Promote | RoomAction::Demote | RoomAction::HandOff
        )
    }

    /// The event that does it, about `who` for the actions about someone; `None` when `who`
    /// is missing for one of those.
    pub fn event(self, who: Option<PublicKey>) -> Option<EventBody> {
        Some(match self {
            RoomAction::RaiseHand => EventBody::RaiseHand,
            RoomAction::LowerHand => EventBody::LowerHand,
            RoomAction::AcceptInvite => EventBody::AcceptInvite,
            RoomAction::StepDown => EventBody::StepDown,
            RoomAction::EndRoom => EventBody::EndRoom,
            RoomAction::Invite => EventBody::InviteSpeaker { who: who? },
            RoomAction::MoveToAudience => EventBody::MoveToAudience { who: who? },
            RoomAction::Mute => EventBody::Mute { who: who? },
            RoomAction::Unmute => EventBody::Unmute { who: who? },
            RoomAction::Kick => EventBody::Kick { who: who? },
            RoomAction::Ban => EventBody::Ban { who: who? },
            RoomAction::Unban => EventBody::Unban { who: who? },
            RoomAction::Promote => EventBody::Promote { who: who? },
            RoomAction::Demote => EventBody::Demote { who: who? },
            RoomAction::HandOff => EventBody::HandOff { to: who? },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_about_someone_need_them_and_the_others_do_not() {
        let who = PublicKey([7; 32]);
        for action in [
            RoomAction::RaiseHand,
            RoomAction::LowerHand,
            RoomAction::AcceptInvite,
            RoomAction::StepDown,
            RoomAction::EndRoom,
        ] {
            assert!(action.event(None).is_some());
        }
        for action in [
            RoomAction::Invite,
            RoomAction::MoveToAudience,
            RoomAction::Mute,
            RoomAction::Unmute,
            RoomAction::Kick,
            RoomAction::Ban,
            RoomAction::Unban,
            RoomAction::Promote,
            RoomAction::Demote,
            RoomAction::HandOff,
        ] {
            assert_eq!(action.event(None), None);
            let body = action.event(Some(who)).unwrap();
            assert!(body.target() == Some(who), "{action:?} → {body:?}");
        }
        assert_eq!(
            RoomAction::Ban.event(Some(who)),
            Some(EventBody::Ban { who })
        );
    }
}
