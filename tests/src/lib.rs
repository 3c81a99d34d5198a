//! Workspace-level tests of ruang live in `tests/tests/`: promises that span crates (the README and CI agree; every crate states its role). This library is empty.
