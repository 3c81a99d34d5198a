//! # ruang-proto: the room protocol, without I/O
//!
//! Everything a ruang node needs to decide *what is true about a room*, with no clock, no
//! sockets and no async runtime: the caller passes `now` (unix milliseconds) and bytes in, and
//! gets state, verdicts and bytes to send out. Randomness comes from an injected RNG. That is
//! what lets a thousand simulated peers run in milliseconds and every failure replay from a
//! seed (see `ruang-testkit`).
//!
//! # Layout
//!
//! - [`identity`]: ed25519 identities ([`Identity`], [`PublicKey`]) and fingerprints;
//!   [`keyfile`] stores one on disk (the only file I/O here).
//! - [`signed`]: the signed envelope every message shares; [`Verified<T>`] is only made by
//!   [`signed::verify`], so unverified bytes never reach the room state.
//! - [`room`]: the signed, hash-linked log of moderation events and the state it produces,
//!   with a deterministic order for concurrent events and sync by DAG heads.
//! - [`ephemeral`]: presence, chat and reactions (signed, not logged), rate limiting.
//! - [`directory`]: signed room announcements and the directory they build.
//! - [`ticket`]: the copy-pasteable string that gets someone into a room.
//! - [`seal`]: sealing a private room's payloads with its room key.
//!
//! # Example
//!
//! ```
//! use ruang_proto::{Identity, room::{EventBody, Genesis, Info, Room, Visibility}};
//! # use rand_core::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let host = Identity::generate(&mut rng);
//! let alice = Identity::generate(&mut rng);
//! let info = Info { title: "Morning news".into(), ..Info::default() };
//! let genesis = Genesis { info, visibility: Visibility::Public, successors: vec![], nonce: [0; 16] };
//! let (mut room, _genesis) = Room::create(&host, genesis, 1_000, &mut rng).unwrap();
//!
//! // Alice raises her hand; the host invites her; she accepts and is on stage.
//! room.author(&alice, EventBody::RaiseHand, 2_000).unwrap();
//! room.author(&host, EventBody::InviteSpeaker { who: alice.public() }, 3_000).unwrap();
//! room.author(&alice, EventBody::AcceptInvite, 4_000).unwrap();
//! assert!(room.state().may_transmit(&alice.public()));
//!
//! // Alice cannot ban the host: the log refuses and says why.
//! let err = room.author(&alice, EventBody::Ban { who: host.public() }, 5_000).unwrap_err();
//! assert_eq!(err.to_string(), "only the host or a moderator can do that");
//! ```

pub mod directory;
pub mod ephemeral;
pub mod identity;
pub mod keyfile;
pub mod rekey;
pub mod room;
pub mod seal;
pub mod signed;
pub mod ticket;

pub use identity::{Fingerprint, Identity, PublicKey};
pub use signed::{Hash, Verified};
pub use ticket::Ticket;
