//! Runnable examples of the ruang crates live in `examples/examples/`; this library is empty.
