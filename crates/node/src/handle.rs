//! [`NodeHandle`]: the cloneable API of a running node. Each call sends a command to the node
//! task over a bounded queue and waits for its reply.

use std::time::Duration;

use ruang_audio::sink::Sink;
use ruang_audio::source::Source;
use ruang_net::{Multiaddr, PeerId};
use ruang_proto::room::EventBody;
use ruang_proto::{PublicKey, Ticket};
use ruang_session::Delivery;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use crate::audio::capture::Pacing;
use crate::error::NodeError;
use crate::event::{Listing, NodeEvent, RoomView};
pub use ruang_session::{HostOptions, JoinTarget, Joined};

/// Capacity of the command queue: callers wait (backpressure) when it is full.
pub const COMMAND_QUEUE_CAP: usize = 64;
/// Longest a call waits for the node's answer (queueing included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a join waits: looking the room up in the directory (15 s at most), connecting
/// (every address at once, dials retried) and fetching its log.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A snapshot of the node.
#[derive(Clone, Debug)]
pub struct Status {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses others can reach it at (with `/p2p/<id>`).
    pub addrs: Vec<Multiaddr>,
    /// Connected peers.
    pub peers: usize,
    /// The room, if in one.
    pub room: Option<RoomView>,
    /// The room's ticket, if in one.
    pub ticket: Option<Ticket>,
    /// Whether the node is self-muted.
    pub self_muted: bool,
    /// Whether it streams audio now.
    pub transmitting: bool,
    /// Listeners it streams to directly.
    pub listeners_served: usize,
    /// Audio frames received and let through to the jitter buffers.
    pub frames_accepted: u64,
    /// Audio frames received and dropped because their speaker may not transmit.
    pub frames_refused: u64,
    /// Audio frames dropped by the per-sender rate limit (a burst beyond it).
    pub frames_limited: u64,
    /// Audio frames read from the network and dropped before the node saw them (its inbox was
    /// full: the receive task fell behind).
    pub frames_dropped_inbound: u64,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

pub(crate) enum Command {
    Host(HostOptions, Reply<Joined>),
    Join(JoinTarget, Reply<Joined>),
    Leave(Reply<()>),
    Act(EventBody, Reply<Delivery>),
    Chat(String, Reply<Delivery>),
    React(String, Reply<Delivery>),
    Speak(Box<dyn Source + Send>, Pacing, Reply<()>),
    StopSpeaking(Reply<()>),
    Listen(Box<dyn Sink + Send>, Reply<()>),
    StopListening(Reply<()>),
    SelfMute(bool, Reply<()>),
    Rooms(Reply<Vec<Listing>>),
    Status(Reply<Status>),
    Shutdown(Reply<()>),
}

impl Command {
    /// What the command is, for a timeout's message.
    fn name(&self) -> &'static str {
        match self {
            Command::Host(..) => "hosting a room",
            Command::Join(..) => "joining a room",
            Command::Leave(..) => "leaving the room",
            Command::Act(..) => "a room action",
            Command::Chat(..) => "sending a chat line",
            Command::React(..) => "sending a reaction",
            Command::Speak(..) => "starting to speak",
            Command::StopSpeaking(..) => "stopping to speak",
            Command::Listen(..) => "starting playout",
            Command::StopListening(..) => "stopping playout",
            Command::SelfMute(..) => "muting oneself",
            Command::Rooms(..) => "listing rooms",
            Command::Status(..) => "the node's status",
            Command::Shutdown(..) => "shutting down",
        }
    }
}

/// The API of a running node. Cheap to clone; every clone talks to the same node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) peer_id: PeerId,
    pub(crate) key: PublicKey,
}

impl NodeHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NodeError> {
        self.call_within(CALL_TIMEOUT, make).await
    }

    async fn call_within<T>(
        &self,
        within: Duration,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        let command = make(tx);
        let what = command.name();
        let answer = async {
            self.commands
                .send(command)
                .await
                .map_err(|_| NodeError::Shutdown)?;
            rx.await.map_err(|_| NodeError::Shutdown)?
        };
        tokio::time::timeout(within, answer)
            .await
            .map_err(|_| NodeError::TimedOut {
                what,
                after: within,
            })?
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// This node's public key.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Events from now on (state changes, who is talking, chat, stats, errors).
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Opens a room hosted by this node.
    pub async fn host(&self, options: HostOptions) -> Result<Joined, NodeError> {
        self.call(|r| Command::Host(options, r)).await
    }

    /// Joins a room by ticket or by id.
    pub async fn join(&self, target: JoinTarget) -> Result<Joined, NodeError> {
        self.call_within(JOIN_TIMEOUT, |r| Command::Join(target, r))
            .await
    }

    /// Leaves the room (says so to the others first).
    pub async fn leave(&self) -> Result<(), NodeError> {
        self.call(Command::Leave).await
    }

    /// Authors a room event as this node: raise a hand, invite, mute, ban, end the room...
    /// Refused with the reason when the current state does not allow it. Answers once it is
    /// out, saying whether anyone in the room got it.
    pub async fn act(&self, body: EventBody) -> Result<Delivery, NodeError> {
        self.call(|r| Command::Act(body, r)).await
    }

    /// Sends a chat line; says whether anyone got it (if not, it is held and sent again).
    pub async fn chat(&self, text: impl Into<String>) -> Result<Delivery, NodeError> {
        let text = text.into();
        self.call(|r| Command::Chat(text, r)).await
    }

    /// Sends a reaction; says whether anyone got it (if not, it is held and sent again).
    pub async fn react(&self, reaction: impl Into<String>) -> Result<Delivery, NodeError> {
        let reaction = reaction.into();
        self.call(|r| Command::React(reaction, r)).await
    }

    /// Speaks from `source` (replacing any previous one). Audio is sent only while the room's
    /// state allows this node to transmit and it is not self-muted.
    pub async fn speak(
        &self,
        source: Box<dyn Source + Send>,
        pacing: Pacing,
    ) -> Result<(), NodeError> {
        self.call(|r| Command::Speak(source, pacing, r)).await
    }

    /// Stops speaking.
    pub async fn stop_speaking(&self) -> Result<(), NodeError> {
        self.call(Command::StopSpeaking).await
    }

    /// Plays the room into `sink` (replacing any previous one).
    pub async fn listen(&self, sink: Box<dyn Sink + Send>) -> Result<(), NodeError> {
        self.call(|r| Command::Listen(sink, r)).await
    }

    /// Stops playing and finishes the sink (a file is complete when this returns).
    pub async fn stop_listening(&self) -> Result<(), NodeError> {
        self.call(Command::StopListening).await
    }

    /// Mutes or unmutes oneself (local; moderators' mutes are room events).
    pub async fn self_mute(&self, on: bool) -> Result<(), NodeError> {
        self.call(|r| Command::SelfMute(on, r)).await
    }

    /// The rooms in the directory.
    pub async fn rooms(&self) -> Result<Vec<Listing>, NodeError> {
        self.call(Command::Rooms).await
    }

    /// A snapshot of the node.
    pub async fn status(&self) -> Result<Status, NodeError> {
        self.call(Command::Status).await
    }

    /// Leaves any room and stops the node.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.call(Command::Shutdown).await
    }
}
