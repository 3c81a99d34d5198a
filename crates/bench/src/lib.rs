//! # ruang-bench: the measuring parts of the benchmark harness
//!
//! The `ruang-bench` binary (`cargo run --release -p ruang-bench -- <scenario>`, see
//! `bench/README.md`) runs real `ruang` processes and in-process nodes and prints tables. The
//! parts that decide what the numbers are live here, where they are unit-tested:
//!
//! - [`analysis`]: chirp trains, chirp detection by cross-correlation, per-chirp mouth-to-ear
//!   delay, similarity per window and freezes (checked against a WAV shifted by a known delay,
//!   also through Opus with losses);
//! - [`speech`]: a spoken reference (espeak-ng) and its PESQ-WB score after the codec or the
//!   network;
//! - [`table`]: the plain-text tables the scenarios print.

pub mod analysis;
pub mod speech;
pub mod table;
