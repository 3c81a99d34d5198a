//! What can go wrong, in words a user can act on.

use ruang_proto::room::Refusal;

/// An error from a node operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The network layer failed.
    #[error(transparent)]
    Net(#[from] ruang_net::NetError),
    /// The operation needs a room, and the node is in none.
    #[error("not in a room: host or join one first")]
    NotInRoom,
    /// The node is in a room already.
    #[error("already in a room: leave it first")]
    AlreadyInRoom,
    /// The room's state does not allow it.
    #[error("not allowed: {0}")]
    Refused(Refusal),
    /// Nobody at the ticket's addresses answered.
    #[error("could not reach the room: {0}")]
    Unreachable(String),
    /// The room is not in the directory.
    #[error(
        "room {0} is not in the directory (it may have ended, or not reached this node yet); use its ticket"
    )]
    NotListed(String),
    /// This identity is banned from the room.
    #[error("you are banned from this room")]
    Banned,
    /// The room has ended.
    #[error("the room has ended")]
    Ended,
    /// A peer answered with something that is not a valid room log.
    #[error("the room's log from {peer} is invalid: {reason}")]
    BadLog {
        /// Who sent it.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// An input or an argument was invalid.
    #[error("{0}")]
    Invalid(String),
    /// An audio thread could not start.
    #[error("audio: {0}")]
    Audio(String),
    /// The node has shut down.
    #[error("the node has shut down")]
    Shutdown,
    /// The node did not answer in time (it is stuck, or the machine is overloaded).
    #[error("{what} timed out after {after:?}: the node did not answer")]
    TimedOut {
        /// What was asked.
        what: &'static str,
        /// How long the caller waited.
        after: std::time::Duration,
    },
}

impl From<ruang_session::Error> for NodeError {
    fn from(e: ruang_session::Error) -> Self {
        use ruang_session::Error as E;
        match e {
            E::NotInRoom => NodeError::NotInRoom,
            E::AlreadyInRoom => NodeError::AlreadyInRoom,
            E::Refused(r) => NodeError::Refused(r),
            E::Unreachable(why) => NodeError::Unreachable(why),
            E::NotListed(room) => NodeError::NotListed(room),
            E::Banned => NodeError::Banned,
            E::Ended => NodeError::Ended,
            E::BadLog { peer, reason } => NodeError::BadLog { peer, reason },
            E::Invalid(why) => NodeError::Invalid(why),
        }
    }
}
