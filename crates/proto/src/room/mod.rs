//! Rooms: the signed, hash-linked log of moderation events and the state it produces.
//!
//! - [`event`]: what an event is ([`Event`], [`EventBody`], [`RoomId`]).
//! - [`state`]: roles and the authorisation rules ([`State`], [`Refusal`]).
//! - [`log`]: the DAG, its deterministic order, admission and sync ([`Room`]).

pub mod event;
pub mod log;
pub mod state;

pub use event::{Event, EventBody, EventHash, Genesis, Info, RoomId, Standing, Visibility};
pub use log::{AuthorError, Changes, GenesisError, Insert, Reject, Room};
pub use state::{Hands, KICK_COOLDOWN_MS, Refusal, Role, State, Void};
