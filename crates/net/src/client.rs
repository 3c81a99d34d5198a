//! [`Client`]: the cheap, cloneable handle the node uses to drive the network.

use std::{sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId, gossipsub::MessageId, multiaddr::Protocol};
use tokio::sync::{mpsc, oneshot};

use crate::{
    audio::{AudioInStats, AudioLink, AudioRequest, inbound::InboundShared},
    error::NetError,
    event::{SyncReply, Verdict},
    limits::{
        AUDIO_OPEN_TIMEOUT, CALL_TIMEOUT, DIAL_TIMEOUT, RELAY_RESERVATION_TIMEOUT,
        SYNC_REQUEST_TIMEOUT,
    },
};

/// A reply channel.
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// A request to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs(Reply<Vec<Multiaddr>>),
    ExternalAddrs(Reply<Vec<Multiaddr>>),
    WaitListening(Reply<Result<(), NetError>>),
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<(), NetError>>,
    },
    DialPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: Reply<Result<(), NetError>>,
    },
    EnsureConnected {
        peer: PeerId,
        reply: Reply<Result<(), NetError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    Subscribe {
        topic: String,
        /// Keep connections to the topic's peers when trimming.
        keep_peers: bool,
        reply: Reply<Result<(), NetError>>,
    },
    Unsubscribe {
        topic: String,
        reply: Reply<Result<(), NetError>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: Reply<Result<(), NetError>>,
    },
    ReportValidation {
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
        reply: Reply<Result<(), NetError>>,
    },
    TopicPeers {
        topic: String,
        reply: Reply<Vec<PeerId>>,
    },
    MeshPeers {
        topic: String,
        reply: Reply<Vec<PeerId>>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
    SyncRequest {
        peer: PeerId,
        request: Vec<u8>,
        reply: Reply<Result<Vec<u8>, NetError>>,
    },
    Respond {
        handle: SyncReply,
        response: Vec<u8>,
        reply: Reply<Result<(), NetError>>,
    },
    Disconnect {
        peer: PeerId,
    },
    DhtServer(bool),
    Block {
        peer: PeerId,
    },
    Unblock {
        peer: PeerId,
    },
    ConnectedPeers(Reply<Vec<PeerId>>),
    ConnectionAddrs {
        peer: PeerId,
        reply: Reply<Vec<Multiaddr>>,
    },
    Rtt {
        peer: PeerId,
        reply: Reply<Option<Duration>>,
    },
    AutonatServed(Reply<crate::event::AutonatServed>),
    ListenViaRelay {
        relay: Multiaddr,
        reply: Reply<Result<Multiaddr, NetError>>,
    },
    Shutdown(Reply<()>),
}

/// The handle to the network layer. Cheap to clone; every call goes to the event loop over a
/// bounded queue, waits for its answer with a timeout, and returns a [`NetError`] rather than
/// hang. Calls are `Send` and may be made from any task.
#[derive(Clone)]
pub struct Client {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) inbound: Arc<InboundShared>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    async fn call<T>(
        &self,
        what: &'static str,
        timeout: Duration,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(make(tx))
                .await
                .map_err(|_| NetError::Shutdown)?;
            rx.await.map_err(|_| NetError::Shutdown)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout {
                what,
                after: timeout,
            })?
    }

    /// Sends a command whose only answer is "accepted".
    async fn tell(&self, what: &'static str, command: Command) -> Result<(), NetError> {
        tokio::time::timeout(CALL_TIMEOUT, self.commands.send(command))
            .await
            .map_err(|_| NetError::Timeout {
                what,
                after: CALL_TIMEOUT,
            })?
            .map_err(|_| NetError::Shutdown)
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses we listen on, as bound (ephemeral ports resolved, `0.0.0.0` expanded to
    /// each interface), including relay circuit addresses. Without `/p2p/<self>`.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call("listen_addrs", CALL_TIMEOUT, Command::ListenAddrs)
            .await
    }

    /// Our addresses confirmed reachable from outside (AutoNAT, or configured).
    pub async fn external_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call("external_addrs", CALL_TIMEOUT, Command::ExternalAddrs)
            .await
    }

    /// Addresses to give to others (in a ticket, say): confirmed external addresses first, then
    /// listen addresses, each ending in `/p2p/<self>`.
    pub async fn p2p_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let mut addrs = self
            .call("external_addrs", CALL_TIMEOUT, Command::ExternalAddrs)
            .await?;
        for a in self.listen_addrs().await? {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        Ok(addrs
            .into_iter()
            .map(|a| with_peer(a, self.local_peer_id))
            .collect())
    }

    /// Connects to `addr` (ending in `/p2p/<peer>` to check who answers; relay circuit
    /// addresses work too). Resolves once connected, at once if already connected to that
    /// peer, or fails with [`NetError::Dial`] / [`NetError::Timeout`] within
    /// [`DIAL_TIMEOUT`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call("dial", DIAL_TIMEOUT, |reply| Command::Dial { addr, reply })
            .await?
    }

    /// Connects to `peer` through all of `addrs` at once (direct and relayed alike; with or
    /// without `/p2p/<peer>`): the first connection that works is kept, the other attempts end.
    /// Resolves once connected, at once if connected already, or fails with
    /// [`NetError::Dial`] (naming every address and why) / [`NetError::Timeout`] within
    /// [`DIAL_TIMEOUT`].
    pub async fn dial_peer(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetError> {
        self.call("dial", DIAL_TIMEOUT, |reply| Command::DialPeer {
            peer,
            addrs,
            reply,
        })
        .await?
    }

    /// Connects to `peer` by its known addresses if not connected (answering once connected,
    /// any way), and in the background tries to add a QUIC connection if only TCP or relayed
    /// ones exist and a QUIC address is known.
    pub async fn connect(&self, peer: PeerId) -> Result<(), NetError> {
        self.call("connecting", DIAL_TIMEOUT, |reply| {
            Command::EnsureConnected { peer, reply }
        })
        .await?
    }

    /// Remembers an address of `peer` (for dialling by peer id and audio links; not given to
    /// Kademlia, which learns addresses from identify).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NetError> {
        self.tell("add_address", Command::AddAddress { peer, addr })
            .await
    }

    /// Whether this node answers Kademlia queries (server) or only asks them (client).
    ///
    /// A client is not put in other nodes' routing tables, so nobody's lookups dial it. A room's
    /// audience switches to client mode: otherwise every member's lookup, answered by the host
    /// from a table full of members, dials the whole room (bench `scale`).
    pub async fn set_dht_server(&self, server: bool) -> Result<(), NetError> {
        self.tell("set_dht_server", Command::DhtServer(server))
            .await
    }

    /// Joins a gossipsub topic (must start with `ruang/`). Messages on it arrive as
    /// [`crate::Event::Gossip`].
    pub async fn subscribe(&self, topic: &str) -> Result<(), NetError> {
        self.subscribe_with(topic, false).await
    }

    /// Like [`subscribe`](Client::subscribe), and connections to peers on the topic are kept
    /// open, up to 64 peers: the node closes connections nothing uses (beyond a dozen peers),
    /// and a room's members want their neighbours whether or not gossipsub has them in its
    /// mesh today. Beyond 64 (a host that every joiner dialled), the longest-idle room peers
    /// are closed too; mesh peers and audio peers never are.
    pub async fn subscribe_keeping_peers(&self, topic: &str) -> Result<(), NetError> {
        self.subscribe_with(topic, true).await
    }

    async fn subscribe_with(&self, topic: &str, keep_peers: bool) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.call("subscribe", CALL_TIMEOUT, |reply| Command::Subscribe {
            topic,
            keep_peers,
            reply,
        })
        .await?
    }

    /// Leaves a gossipsub topic.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.call("unsubscribe", CALL_TIMEOUT, |reply| Command::Unsubscribe {
            topic,
            reply,
        })
        .await?
    }

    /// Publishes on a topic (signed with our key). [`NetError::InsufficientPeers`] means no
    /// connected peer is subscribed yet: often fine to ignore. [`NetError::Duplicate`] means the
    /// identical payload went out recently.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.call("publish", CALL_TIMEOUT, |reply| Command::Publish {
            topic,
            data,
            reply,
        })
        .await?
    }

    /// Reports the node's verdict on a [`crate::Event::Gossip`] (`source` is that event's
    /// `source`). Only accepted messages are forwarded; rejected ones lower the score of the
    /// peers that sent them. [`NetError::ValidationExpired`] if it came too late.
    pub async fn report_validation(
        &self,
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> Result<(), NetError> {
        self.call("report_validation", CALL_TIMEOUT, |reply| {
            Command::ReportValidation {
                id,
                source,
                verdict,
                reply,
            }
        })
        .await?
    }

    /// Connected peers subscribed to `topic`, as far as we know.
    pub async fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        let topic = topic.to_string();
        self.call("topic_peers", CALL_TIMEOUT, |reply| Command::TopicPeers {
            topic,
            reply,
        })
        .await
    }

    /// The peers in our gossipsub mesh for `topic` (the ones we push messages to), for
    /// diagnostics.
    pub async fn mesh_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        let topic = topic.to_string();
        self.call("mesh_peers", CALL_TIMEOUT, |reply| Command::MeshPeers {
            topic,
            reply,
        })
        .await
    }

    /// `peer`'s gossipsub score (negative after rejected messages; graylisted at -80).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.call("peer_score", CALL_TIMEOUT, |reply| Command::PeerScore {
            peer,
            reply,
        })
        .await
    }

    /// Sends a `/ruang/sync/1` request and waits for the response (dialling `peer` by its
    /// known addresses if needed). Fails within [`SYNC_REQUEST_TIMEOUT`] plus a margin.
    pub async fn sync_request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let timeout = SYNC_REQUEST_TIMEOUT + Duration::from_secs(2);
        self.call("sync request", timeout, |reply| Command::SyncRequest {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Answers a [`crate::Event::SyncRequest`].
    pub async fn respond(&self, handle: SyncReply, response: Vec<u8>) -> Result<(), NetError> {
        self.call("respond", CALL_TIMEOUT, |reply| Command::Respond {
            handle,
            response,
            reply,
        })
        .await?
    }

    /// Closes every connection to `peer` (it may reconnect; see [`Client::block`]).
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell("disconnect", Command::Disconnect { peer }).await
    }

    /// Closes `peer`'s connections and refuses new ones, both ways, until
    /// [`Client::unblock`].
    pub async fn block(&self, peer: PeerId) -> Result<(), NetError> {
        self.inbound.close_from(peer);
        self.tell("block", Command::Block { peer }).await
    }

    /// Lifts a [`Client::block`].
    pub async fn unblock(&self, peer: PeerId) -> Result<(), NetError> {
        self.tell("unblock", Command::Unblock { peer }).await
    }

    /// Peers with at least one connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.call("connected_peers", CALL_TIMEOUT, Command::ConnectedPeers)
            .await
    }

    /// The remote addresses of our open connections to `peer` (shows whether it is reached
    /// over QUIC, TCP or a relay).
    pub async fn connection_addrs(&self, peer: PeerId) -> Result<Vec<Multiaddr>, NetError> {
        self.call("connection_addrs", CALL_TIMEOUT, |reply| {
            Command::ConnectionAddrs { peer, reply }
        })
        .await
    }

    /// The last ping round trip to `peer`, if connected and measured.
    pub async fn rtt(&self, peer: PeerId) -> Result<Option<Duration>, NetError> {
        self.call("rtt", CALL_TIMEOUT, |reply| Command::Rtt { peer, reply })
            .await
    }

    /// The reachability probes this node answered for its peers, and the dial data they
    /// sent for them.
    pub async fn autonat_served(&self) -> Result<crate::event::AutonatServed, NetError> {
        self.call("autonat counters", CALL_TIMEOUT, Command::AutonatServed)
            .await
    }

    /// Reserves a circuit on the relay at `relay` (must end in `/p2p/<relay id>`) and returns
    /// our address through it (`<relay>/p2p-circuit/p2p/<self>`), which others can dial.
    pub async fn listen_via_relay(&self, relay: Multiaddr) -> Result<Multiaddr, NetError> {
        self.call(
            "relay reservation",
            RELAY_RESERVATION_TIMEOUT + Duration::from_secs(1),
            |reply| Command::ListenViaRelay { relay, reply },
        )
        .await?
    }

    /// Starts an [`AudioLink`] to `peer`: a task that opens one `/ruang/audio/1` stream, writes
    /// `header` (at most [`crate::limits::MAX_AUDIO_HEADER_LEN`] bytes) and then every pushed
    /// frame. Returns at once; must be called within a tokio runtime or from a thread whose
    /// runtime is the one given to [`crate::spawn`] (the link's task runs there).
    pub fn open_audio(&self, peer: PeerId, header: Vec<u8>) -> AudioLink {
        AudioLink::spawn(self.clone(), peer, header)
    }

    /// Asks `peer` for its audio with `request` (at most
    /// [`crate::limits::MAX_AUDIO_REQUEST_LEN`] bytes) over our own connection, and asks again
    /// whenever the request ends, until the returned handle is dropped. Returns at once; same
    /// runtime rule as [`Client::open_audio`].
    pub fn ask_for_audio(&self, peer: PeerId, request: Vec<u8>) -> AudioRequest {
        AudioRequest::spawn(self.clone(), peer, request)
    }

    /// Turns down `peer`'s request for our audio (it asks again after
    /// [`crate::REFUSED_RETRY_MIN`] or more); whether one was held.
    pub fn refuse_audio_request(&self, peer: PeerId) -> bool {
        self.inbound.refuse_request(peer)
    }

    /// Peers whose request for our audio is held.
    pub fn audio_requesters(&self) -> Vec<PeerId> {
        self.inbound.requesters()
    }

    /// Whether a request for our audio from `peer` is held now (an
    /// [`Event::AudioRequestEnded`](crate::Event::AudioRequestEnded) may come after a newer
    /// request's [`Event::AudioRequested`](crate::Event::AudioRequested): events of two
    /// streams are not ordered).
    pub fn holds_audio_request(&self, peer: PeerId) -> bool {
        self.inbound.holds_request(peer)
    }

    /// Closes every inbound audio stream from `peer` now (the sender sees a reset); returns how
    /// many. It may open a new one: close again, or [`Client::block`] it.
    pub fn close_audio_from(&self, peer: PeerId) -> usize {
        self.inbound.close_from(peer)
    }

    /// Sets the peers whose audio this node wants (a room's stage): they may open streams in
    /// the [`AUDIO_STREAMS_RESERVED`](crate::limits::AUDIO_STREAMS_RESERVED) slots others
    /// cannot take, so that peers holding idle streams cannot keep a speaker out. Replaces the
    /// previous set.
    pub fn set_audio_priority(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.inbound.set_priority(peers.into_iter().collect());
    }

    /// Opens a stream of any protocol to a connected `peer`, for tools and test harnesses that
    /// speak the protocol themselves (the node uses [`Client::open_audio`] and the sync calls).
    pub async fn open_raw_stream(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream, NetError> {
        let mut control = self.control.clone();
        tokio::time::timeout(AUDIO_OPEN_TIMEOUT, control.open_stream(peer, protocol))
            .await
            .map_err(|_| NetError::Timeout {
                what: "open a stream",
                after: AUDIO_OPEN_TIMEOUT,
            })?
            .map_err(|e| NetError::Stream(e.to_string()))
    }

    /// Tells `peer`, on one of its audio streams to us, that our playout missed `permille` ‰
    /// of its frames lately (written back within a quarter of a second; a report not yet
    /// written is replaced). Without an open stream from `peer` it goes nowhere.
    pub fn report_audio_loss(&self, peer: PeerId, permille: u16) {
        self.inbound.set_loss_report(peer, permille);
    }

    /// Peers with an open inbound audio stream (one entry per stream).
    pub fn audio_senders(&self) -> Vec<PeerId> {
        self.inbound.open_peers()
    }

    /// Counters of the inbound audio plane (same as [`crate::AudioInbox::stats`]).
    pub fn audio_in_stats(&self) -> AudioInStats {
        self.inbound.stats()
    }

    /// Stops the event loop, closes every connection and waits (bounded) until it is done.
    /// Other clones then fail with [`NetError::Shutdown`].
    pub async fn shutdown(&self) {
        let _ = self.call("shutdown", CALL_TIMEOUT, Command::Shutdown).await;
    }

    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

/// `addr` ending in `/p2p/<peer>` (unchanged if it already ends so).
pub fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr,
        _ => addr.with(Protocol::P2p(peer)),
    }
}
