//! End-to-end tests of the `ruang` binary (real processes; some in network namespaces), one
//! module per area, in one binary (one link instead of one per file).

mod bad_input;
mod common;
mod demo;
mod e2e_three_processes;
mod hostile_peers;
mod hostile_sources;
mod json_schema;
mod operators;
mod reachability;
mod tui_pty;
