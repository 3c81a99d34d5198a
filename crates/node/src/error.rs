//! What can go wrong, in words a user can act on.

/// An error from a node operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The network layer failed.
    #[error(transparent)]
    Net(#[from] ruang_net::NetError),
    /// The room logic refused or failed: not in a room, refused by the room's state, banned,
    /// ended, unreachable, an invalid log (see [`ruang_session::Error`]).
    #[error(transparent)]
    Room(#[from] ruang_session::Error),
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
