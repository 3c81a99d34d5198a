//! # ruang-node: a running ruang node
//!
//! Composes the room protocol (`ruang-proto`), the libp2p layer (`ruang-net`) and the audio
//! pipeline (`ruang-audio`) into a node that hosts and joins rooms, enforces moderation and
//! streams audio. It is the only crate that knows what a room is and what the network is.
//!
//! # Run loop
//!
//! [`Node::builder`]`(identity)...spawn()` starts the network and one task, the driver, that
//! owns the room logic: a sans-IO [`session::Core`] (crate `ruang-session`) it feeds with
//! commands, network and audio events and the core's own deadline, carrying out what the core
//! asks through the network layer and the audio threads. The returned [`NodeHandle`] sends it
//! commands over a bounded queue (each with a reply) and [`NodeHandle::subscribe`] gives its
//! [`NodeEvent`]s.
//!
//! Audio runs beside it (module `audio`): a capture thread encodes and pushes frames into per-peer
//! drop-oldest links; a receive task drops frames from anyone the verified state does not
//! allow to speak and fills per-speaker jitter buffers; a playout thread on an absolute
//! deadline clock mixes them into the sink. Nothing on the audio path waits on the network or
//! on the node task.
//!
//! # Topology (today)
//!
//! Speakers stream directly to every present member, up to [`Config::fanout`] (default 64).
//! Streams carry an [`wire::AudioHeader`] naming the speaker, so a forwarding hop can later
//! carry others' frames on their own streams without changing the receive path.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), ruang_node::NodeError> {
//! use ruang_node::{HostOptions, Node, Pacing};
//! use ruang_proto::{Identity, room::Info};
//! let identity = Identity::generate(&mut rand::rng());
//! let node = Node::builder(identity).name("ana").spawn().await?;
//! let joined = node
//!     .host(HostOptions { info: Info { title: "Morning news".into(), ..Info::default() }, ..HostOptions::default() })
//!     .await?;
//! println!("join with: ruang join {}", joined.ticket);
//! let voice = ruang_audio::source::VoiceSource::new(1, ruang_audio::format::FrameDuration::Ms20);
//! node.speak(Box::new(voice), Pacing::RealTime).await?;
//! # Ok(()) }
//! ```

mod addrs;
/// The audio threads (public with the `bench` feature, for ruang-bench's measurements).
#[cfg(feature = "bench")]
pub mod audio;
#[cfg(not(feature = "bench"))]
mod audio;
mod clock;
mod config;
mod driver;
mod error;
mod handle;
pub mod ids;

pub use ruang_session as session;
pub use ruang_session::{DIRECTORY_TOPIC, Delivery, event, wire};

pub use clock::unix_ms;
pub use config::{Builder, Config, DEFAULT_BITRATE_BPS, DEFAULT_FANOUT};
pub use error::NodeError;
pub use event::{LeaveReason, Listing, NodeEvent, Person, RoomView, SpeakerStats};
pub use handle::{
    CALL_TIMEOUT, HostOptions, JOIN_TIMEOUT, JoinTarget, Joined, NodeHandle, Pacing, Status,
};

/// Entry point: `Node::builder(identity)`.
pub struct Node;

impl Node {
    /// A builder for a node with `identity`.
    pub fn builder(identity: ruang_proto::Identity) -> Builder {
        Builder::new(identity)
    }
}
