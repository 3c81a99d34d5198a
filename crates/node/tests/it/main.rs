//! Integration tests of ruang-node, one module per scenario, in one binary (one link of
//! libp2p instead of one per file; the scenarios run side by side).

mod audience_connections;
mod audio_one_speaker_five_listeners;
mod chat_held;
mod common;
mod directory_20_nodes;
mod flood;
mod forgery;
mod late_joiner_sync;
mod loss_adaptive_fec;
mod mute_and_ban;
mod private_room;
mod relay;
mod smoke_host_join_audio;
mod succession;
mod transports;
mod two_speakers_mixed;
