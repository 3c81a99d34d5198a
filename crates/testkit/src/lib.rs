//! # ruang-testkit: deterministic test infrastructure
//!
//! - [`sim`]: a seeded discrete-event simulated network (latency, jitter, loss, partitions) in
//!   virtual time, for running many sans-IO `ruang-proto` peers in one test.
//! - [`rooms`]: many nodes' room logic (`ruang-session` cores) over that network: rooms of
//!   thousands, host succession, presence, sync, in virtual time.
//! - [`seed`]: the test seed, taken from `SEED` when set, printed so a failure can be replayed.
//! - [`impair`]: network impairment (delay, jitter, random and bursty loss, bandwidth cap) as a
//!   sans-IO [`impair::Link`] model and a real UDP [`impair::Relay`] (binary: `impair`), for
//!   benchmarks and tests of real nodes on loopback (the kernel here has no `netem`).
//! - [`heard`]: did a listener hear what was said? A recording compared with its source in
//!   short windows that follow the jitter buffer's steps of delay.
//!
//! - [`hostile`]: a hostile peer on `ruang-net` (replay, mutate, flood, ground keys, held
//!   audio streams) for attack tests against real nodes.
//! - [`tls`]: test certificates signed by a throwaway authority.
//! - [`procstat`]: CPU time and memory of a process from `/proc` (Linux), for benchmarks and
//!   tests that report what a process cost.
//!
//! Everything but the relay and the hostile peer is deterministic for a given seed: no wall
//! clock, no threads. The relay runs real sockets and threads, but its decisions come from
//! the same seeded model.

pub mod heard;
pub mod hostile;
pub mod impair;
pub mod procstat;
pub mod rooms;
pub mod seed;
pub mod sim;
pub mod tls;

pub use seed::Seed;
pub use sim::Network;
