//! What the tests of one core share: a core hosting a room, at a fixed time.

use ruang_proto::Identity;
use ruang_proto::ephemeral::{Ephemeral, EphemeralBody};
use ruang_proto::room::RoomId;
use ruang_session::{Command, Config, Core, HostOptions, Input, Time};

/// The tests' unix time at monotonic 0.
pub const UNIX: u64 = 1_767_225_600_000;

/// The tests' configuration of a core with key `[secret; 32]`.
pub fn config(secret: u8, name: &str) -> Config {
    Config {
        identity: Identity::from_secret_bytes(&[secret; 32]),
        name: name.into(),
        hide_ip: false,
        fanout: 64,
        presence_interval_ms: 2_000,
        audience_sample: ruang_session::limits::AUDIENCE_SAMPLE,
        announce_interval_ms: 20_000,
        sync_interval_ms: 5_000,
        seed: [secret.wrapping_add(6); 32],
    }
}

/// A core (key `[1; 32]`) hosting a public room titled "replays", its outputs drained.
pub fn host() -> Core {
    let config = config(1, "host");
    let time = Time {
        mono_ms: 0,
        unix_ms: UNIX,
    };
    let mut core = Core::new(config, time);
    let info = ruang_proto::room::Info {
        title: "replays".into(),
        ..Default::default()
    };
    let options = HostOptions {
        info,
        ..HostOptions::default()
    };
    core.handle(time, Input::Command(1, Command::Host(options)));
    while core.poll_output().is_some() {}
    assert!(core.membership().is_some(), "hosting failed");
    core
}

/// `who`'s presence in `room`, signed at `sent_at` with a TTL of `ttl_ms`: the envelope bytes.
#[allow(dead_code)] // not every test binary uses it
pub fn signed_presence(
    who: &Identity,
    room: RoomId,
    sent_at: u64,
    ttl_ms: u32,
    leaving: bool,
) -> Vec<u8> {
    let msg = Ephemeral {
        room,
        author: who.public(),
        sent_at,
        body: EphemeralBody::Presence {
            name: "listener".into(),
            ttl_ms,
            addresses: Vec::new(),
            leaving,
        },
    };
    ruang_proto::signed::sign(who, msg).unwrap().wire().to_vec()
}
