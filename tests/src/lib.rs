//! Workspace-level integration tests of ruang live in `tests/`; this library is empty.
