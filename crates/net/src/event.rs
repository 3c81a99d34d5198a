//! What the network layer tells the node: [`Event`] on the control plane, through [`Events`].

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId, gossipsub::MessageId, request_response::ResponseChannel};
use tokio::sync::mpsc;

/// Reachability probes (AutoNAT v2) this node answered for its peers, from
/// `Client::autonat_served`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutonatServed {
    /// Probe requests handled, whatever their outcome (dialled back, refused, failed, or
    /// given up before the dial).
    pub probes: u64,
    /// Bytes of dial data the clients had to send first: asked only for an address on
    /// another IP than the client's connection comes from (vendor/README.md).
    pub dial_data_bytes: u64,
}

/// The node's verdict on a gossip message, reported with `Client::report_validation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver and forward it to the mesh.
    Accept,
    /// Provably invalid (bad signature, malformed, forged authority): drop it and penalise
    /// every peer that delivered it (their gossipsub score falls; repeat offenders are
    /// graylisted). Use only for what every honest peer would also reject.
    Reject,
    /// Not forwarded, no penalty: for what depends on local view (unknown room, out-of-date
    /// state, clock skew, local rate limit).
    Ignore,
}

impl From<Verdict> for libp2p::gossipsub::MessageAcceptance {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accept => Self::Accept,
            Verdict::Reject => Self::Reject,
            Verdict::Ignore => Self::Ignore,
        }
    }
}

/// The handle to answer one [`Event::SyncRequest`] with `Client::respond`. Dropping it
/// unanswered makes the requester's call fail.
#[derive(Debug)]
pub struct SyncReply {
    pub(crate) peer: PeerId,
    pub(crate) channel: ResponseChannel<Vec<u8>>,
}

impl SyncReply {
    /// The peer that asked.
    pub fn peer(&self) -> PeerId {
        self.peer
    }
}

/// A control-plane event. Audio frames come separately, through [`crate::AudioInbox`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// We listen on a new address (also relay circuit addresses).
    Listening {
        /// The address, without `/p2p/<self>`.
        addr: Multiaddr,
    },
    /// First connection to a peer is up.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its address on that connection.
        addr: Multiaddr,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A gossip message awaiting the node's verdict. Report it with
    /// `Client::report_validation(id, source, verdict)` within
    /// [`crate::limits::GOSSIP_VALIDATION_WINDOW`]; it is forwarded only on `Accept`.
    Gossip {
        /// The peer that delivered it to us (pass it back to `report_validation`).
        source: PeerId,
        /// Content-hash message id.
        id: MessageId,
        /// The topic.
        topic: String,
        /// The payload.
        data: Vec<u8>,
    },
    /// A peer asks for sync data on `/ruang/sync/1`; answer with `Client::respond`.
    SyncRequest {
        /// Who asks.
        peer: PeerId,
        /// The request bytes (at most [`crate::limits::MAX_SYNC_REQUEST`]).
        request: Vec<u8>,
        /// The answer handle.
        reply: SyncReply,
    },
    /// A peer subscribed to a topic we know of (it told us so when connecting, or later).
    /// A publish that found no peer on the topic can be retried now.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A peer opened an audio stream to us and sent its header. Frames follow in the
    /// [`crate::AudioInbox`]. Close unwanted ones with `Client::close_audio_from`.
    AudioStreamOpened {
        /// The sender.
        peer: PeerId,
        /// The stream header, as the sender gave it to `Client::open_audio`.
        header: Arc<[u8]>,
    },
    /// An inbound audio stream ended (closed by either side, or broken).
    AudioStreamClosed {
        /// The sender.
        peer: PeerId,
        /// Its header.
        header: Arc<[u8]>,
    },
    /// A peer asked for our audio (`Client::ask_for_audio` on its side) and the request is
    /// held until [`Event::AudioRequestEnded`]; turn it down with
    /// `Client::refuse_audio_request`.
    AudioRequested {
        /// The asker (authenticated by its connection).
        peer: PeerId,
        /// The request bytes (at most [`crate::limits::MAX_AUDIO_REQUEST_LEN`]).
        request: Vec<u8>,
    },
    /// A peer's request for our audio ended (closed, broken, or replaced by nothing); not
    /// sent for requests we turned down.
    AudioRequestEnded {
        /// The asker.
        peer: PeerId,
    },
    /// Addresses learnt for a peer (mDNS, Kademlia, identify).
    Discovered {
        /// The peer.
        peer: PeerId,
        /// Its addresses.
        addrs: Vec<Multiaddr>,
    },
    /// A relay accepted our reservation; others can reach us at `addr`.
    RelayReservation {
        /// The relay.
        relay: PeerId,
        /// Our address through it, ending in `/p2p-circuit/p2p/<self>`.
        addr: Multiaddr,
    },
    /// One of several connections to `peer` closed (a worse one replaced by a better one, say);
    /// the peer stays connected. Messages that were in flight on it may be lost: whatever the
    /// peer must not miss is worth sending again.
    ConnectionDropped {
        /// The peer, still connected.
        peer: PeerId,
    },
    /// A relayed connection to `peer` was upgraded to a direct one by hole punching (DCUtR);
    /// the relayed one is closed.
    HolePunched {
        /// The peer now reached directly.
        peer: PeerId,
    },
    /// A reservation we held on a relay ended (the relay went away or refused to renew). The
    /// network layer asks it again until it accepts ([`Event::RelayReservation`] then).
    RelayLost {
        /// The relay.
        relay: PeerId,
        /// What happened.
        reason: String,
    },
    /// An address of ours was confirmed reachable from outside (AutoNAT, or configured).
    ExternalAddrConfirmed {
        /// The address.
        addr: Multiaddr,
    },
}

/// The bounded stream of [`Event`]s. Read it continuously: when it is full the event loop
/// stops reading the network (backpressure), which delays everything but audio.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the network layer has shut down.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}
