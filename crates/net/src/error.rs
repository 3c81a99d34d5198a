//! [`NetError`]: what can go wrong in the network layer, in words a user can act on.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

/// An error from the network layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// The network layer has shut down (or its task ended).
    #[error("the network layer has shut down")]
    Shutdown,
    /// Connecting to an address failed.
    #[error("could not connect to {addr}: {reason}")]
    Dial {
        /// The address (or peer) dialled.
        addr: String,
        /// Why, as libp2p reported it.
        reason: String,
    },
    /// Listening on an address failed.
    #[error("could not listen on {addr}: {reason}")]
    ListenFailed {
        /// The address.
        addr: Multiaddr,
        /// Why (for example "address in use").
        reason: String,
    },
    /// A multiaddr was not what the operation needs.
    #[error("bad address {addr}: {reason}")]
    BadAddress {
        /// The address.
        addr: Multiaddr,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A publish found no connected peer subscribed to the topic. Often harmless (the first
    /// node of a room, or peers not connected yet): callers may ignore it.
    #[error("no peer is subscribed to topic {topic} yet")]
    InsufficientPeers {
        /// The topic.
        topic: String,
    },
    /// The exact same payload was already published on this topic recently (message ids are
    /// content hashes).
    #[error("the same message was already published on {topic}")]
    Duplicate {
        /// The topic.
        topic: String,
    },
    /// A topic outside the allowed namespace.
    #[error(
        "topic {topic:?} is not allowed (topics start with \"ruang/\" and are at most 256 bytes)"
    )]
    TopicNotAllowed {
        /// The topic.
        topic: String,
    },
    /// A payload over its bound.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A verdict for a gossip message that is not awaiting one: it was judged already, or the
    /// verdict came later than [`crate::limits::GOSSIP_VALIDATION_WINDOW`] (the message was
    /// then dropped unforwarded).
    #[error("message {id} is no longer awaiting validation")]
    ValidationExpired {
        /// The message id (hex).
        id: String,
    },
    /// The peer is not connected and could not be reached.
    #[error("peer {peer} is not connected: {reason}")]
    NotConnected {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The peer does not speak the protocol.
    #[error("peer {peer} does not support {protocol}")]
    Unsupported {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: &'static str,
    },
    /// The peer is blocked locally.
    #[error("peer {peer} is blocked")]
    Blocked {
        /// The peer.
        peer: PeerId,
    },
    /// A stream failed (I/O error, reset, connection lost).
    #[error("stream error: {0}")]
    Stream(String),
    /// A transport or protocol failure that fits no other variant.
    #[error("transport error: {0}")]
    Transport(String),
    /// A TLS certificate, key or trusted authority could not be used (see
    /// [`crate::WebSocketTls`]).
    #[error("TLS: {0}")]
    Tls(String),
    /// The relay refused or failed to give us a reservation.
    #[error("relay {relay} refused a reservation: {reason}")]
    Relay {
        /// The relay address.
        relay: Multiaddr,
        /// Why.
        reason: String,
    },
}
