//! Every decoder of bytes from the network: signed events, ephemeral messages and directory
//! announcements (raw, and framed with a valid header so the payload decoder sees the bytes),
//! a directory insert, and a room's `insert_wire`. None may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ruang_proto::directory::{Announcement, Directory};
use ruang_proto::ephemeral::Ephemeral;
use ruang_proto::room::{Event, Genesis, Info, Room, Visibility};
use ruang_proto::signed::{self, Verified};
use ruang_proto::Identity;

fn genesis() -> &'static Verified<Event> {
    static GENESIS: OnceLock<Verified<Event>> = OnceLock::new();
    GENESIS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let host = Identity::generate(&mut rng);
        let genesis = Genesis {
            info: Info {
                title: "fuzz".into(),
                ..Info::default()
            },
            visibility: Visibility::Public,
            successors: vec![],
            nonce: [0; 16],
        };
        let (_, g) = Room::create(&host, genesis, 0, &mut rng).expect("genesis");
        g
    })
}

fuzz_target!(|bytes: &[u8]| {
    let _ = signed::verify::<Event>(bytes);
    let _ = signed::verify::<Ephemeral>(bytes);
    let _ = signed::verify::<Announcement>(bytes);
    let _ = Directory::new().insert(bytes, 1_700_000_000_000);
    let mut framed = vec![signed::VERSION];
    framed.extend_from_slice(&[0u8; 64]);
    framed.extend_from_slice(bytes);
    let _ = signed::verify::<Event>(&framed);
    let _ = signed::verify::<Ephemeral>(&framed);
    let _ = signed::verify::<Announcement>(&framed);
    let mut room = Room::from_genesis(genesis().clone()).expect("a genesis");
    let _ = room.insert_wire(bytes);
    let _ = room.insert_wire(&framed);
});
