//! Integration tests of ruang-net, one module per behaviour, in one binary (one link of
//! libp2p instead of one per file).

mod audio;
mod audio_malformed;
mod audio_request;
mod autonat;
mod backpressure;
mod block;
mod bootstrap;
mod common;
mod gossip;
mod listen;
mod relay;
mod sync;
mod transports;
