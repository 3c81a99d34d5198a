//! # ruang-session: a node's room logic, sans-IO
//!
//! Everything a ruang node decides about rooms — hosting, joining and fetching a room's log,
//! verifying gossip, presence, held chat, announcing in the directory, anti-entropy sync,
//! room neighbours, host succession, bans and floods, who may be heard and whom to stream
//! to — as one state machine, [`Core`], with no clock, no sockets, no threads and seeded
//! randomness (the shape of quinn-proto and iroh-gossip's `State`). `ruang-node` drives it
//! with libp2p and tokio; `ruang-testkit`'s simulator drives many in virtual time.
//!
//! ```
//! use ruang_session::{Command, Config, Core, HostOptions, Input, Output, Time};
//! let identity = ruang_proto::Identity::from_secret_bytes(&[1; 32]);
//! let config = Config {
//!     identity,
//!     name: "ana".into(),
//!     hide_ip: false,
//!     fanout: 64,
//!     presence_interval_ms: 2_000,
//!     audience_sample: ruang_session::limits::AUDIENCE_SAMPLE,
//!     announce_interval_ms: 20_000,
//!     sync_interval_ms: 5_000,
//!     seed: [7; 32],
//! };
//! let time = Time { mono_ms: 0, unix_ms: 1_700_000_000_000 };
//! let mut core = Core::new(config, time);
//! let info = ruang_proto::room::Info { title: "Morning news".into(), ..Default::default() };
//! let host = HostOptions { info, ..HostOptions::default() };
//! core.handle(time, Input::Command(1, Command::Host(host)));
//! let mut replied = false;
//! while let Some(output) = core.poll_output() {
//!     // A driver publishes, subscribes, answers... here we only look for the reply.
//!     if let Output::Reply { id: 1, result } = output {
//!         assert!(result.is_ok(), "{result:?}");
//!         replied = true;
//!     }
//! }
//! assert!(replied);
//! ```

pub mod core;
pub mod event;
pub mod limits;
pub mod room;
pub mod wire;

pub use crate::core::{
    Answer, AudioPolicy, Command, CommandId, Config, Core, DIRECTORY_TOPIC, Delivery, Error,
    Gossip, HostOptions, Input, JoinTarget, Joined, Output, SyncFailure, Time, Verdict,
};
pub use event::{LeaveReason, Listing, NodeEvent, Person, RoomView, SpeakerStats};
