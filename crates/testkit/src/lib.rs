//! # ruang-testkit: deterministic test infrastructure
//!
//! - [`sim`]: a seeded discrete-event simulated network (latency, jitter, loss, partitions) in
//!   virtual time, for running many sans-IO `ruang-proto` peers in one test.
//! - [`seed`]: the test seed, taken from `SEED` when set, printed so a failure can be replayed.
//!
//! Everything here is deterministic for a given seed: no wall clock, no threads.

pub mod seed;
pub mod sim;

pub use seed::Seed;
pub use sim::Network;
