//! Directory squatting: one script with hundreds of keys announces 10,000 fake public rooms,
//! each claiming a million listeners. A real room listed before stays listed, and first; no key
//! lists more than its share; an announcement naming a host other than its signer is refused.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use ruang_proto::directory::{
    AnnounceError, Announcement, Directory, Listing, MAX_ROOMS_PER_AUTHOR,
};
use ruang_proto::room::{Genesis, Info, Room, Visibility};
use ruang_proto::{Identity, signed};

const NOW: u64 = 1_767_225_600_000;

/// A new public room opened by `host`, and its announcement signed by `host` naming `shown`
/// as the host, claiming `listeners`.
fn announcement(
    host: &Identity,
    shown: &Identity,
    listeners: u32,
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let genesis = Genesis {
        info: Info {
            title: "a room".into(),
            ..Info::default()
        },
        visibility: Visibility::Public,
        successors: Vec::new(),
        nonce: [0; 16],
    };
    let (room, signed_genesis) = Room::create(host, genesis, NOW, rng).unwrap();
    let ann = Announcement {
        room: room.id(),
        author: host.public(),
        genesis: signed_genesis.wire().to_vec(),
        info: room.state().info.clone(),
        host: shown.public(),
        host_name: "host".into(),
        speakers: Vec::new(),
        listener_count: listeners,
        addresses: Vec::new(),
        started_at: NOW,
        scheduled_for: None,
        issued_at: NOW,
        expires_at: NOW + 60_000,
        ended: false,
    };
    signed::sign(host, ann).unwrap().wire().to_vec()
}

#[test]
fn a_real_room_stays_listed_and_first_under_ten_thousand_fakes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut directory = Directory::new();
    let real_host = Identity::from_secret_bytes(&[1; 32]);
    let real = announcement(&real_host, &real_host, 12, &mut rng);
    assert_eq!(directory.insert(&real, NOW), Ok(Listing::Added));

    // 300 keys, 10,000 rooms, a million listeners each, arriving after the real one.
    let keys: Vec<Identity> = (0..300u32)
        .map(|i| {
            let mut secret = [9u8; 32];
            secret[..4].copy_from_slice(&i.to_le_bytes());
            Identity::from_secret_bytes(&secret)
        })
        .collect();
    let mut listed = 0;
    let mut refused = 0;
    for n in 0..10_000usize {
        let key = &keys[n % keys.len()];
        let fake = announcement(key, key, 1_000_000, &mut rng);
        match directory.insert(&fake, NOW + 1 + n as u64) {
            Ok(Listing::Added) => listed += 1,
            Err(AnnounceError::TooManyRooms) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(listed, keys.len() * MAX_ROOMS_PER_AUTHOR);
    assert_eq!(refused, 10_000 - listed);
    let list = directory.list();
    assert_eq!(list.len(), 1 + listed);
    assert_eq!(list[0].author, real_host.public(), "the real room is first");

    // A fake room that names the real host as its host is refused outright.
    let impostor = Identity::from_secret_bytes(&[5; 32]);
    let forged = announcement(&impostor, &real_host, 1, &mut rng);
    assert_eq!(
        directory.insert(&forged, NOW + 20_000),
        Err(AnnounceError::NotHost)
    );
}

#[test]
fn a_directory_answer_keeps_its_order() {
    // A fresh node takes a peer's whole directory in one millisecond: the peer's order (its
    // own longest-listed first) is kept, not replaced by room id (which put a script's fakes
    // before the real room at a node that browsed after the attack).
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let real_host = Identity::from_secret_bytes(&[1; 32]);
    let mut answer = vec![announcement(&real_host, &real_host, 3, &mut rng)];
    for n in 0..16u8 {
        let key = Identity::from_secret_bytes(&[n + 2; 32]);
        answer.push(announcement(&key, &key, 1_000_000, &mut rng));
    }
    let mut directory = Directory::new();
    for wire in &answer {
        assert_eq!(directory.insert(wire, NOW), Ok(Listing::Added));
    }
    let listed: Vec<_> = directory.list().iter().map(|a| a.wire().to_vec()).collect();
    assert_eq!(listed, answer);
}

#[test]
fn a_hostile_directory_answer_does_not_go_before_the_honest_ones() {
    // A fresh node asks a few peers for their directories; the fastest to answer is a
    // script's, with 512 fakes (4 per key). Two honest peers list the real room.
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let real_host = Identity::from_secret_bytes(&[1; 32]);
    let real = announcement(&real_host, &real_host, 3, &mut rng);
    let hostile_answer: Vec<Vec<u8>> = (0..512u32)
        .map(|n| {
            let mut secret = [9; 32];
            secret[..4].copy_from_slice(&(n / 4).to_le_bytes());
            let key = Identity::from_secret_bytes(&secret);
            announcement(&key, &key, 1_000_000, &mut rng)
        })
        .collect();
    let (script, honest_a, honest_b) = (
        Identity::from_secret_bytes(&[2; 32]).public(),
        Identity::from_secret_bytes(&[3; 32]).public(),
        Identity::from_secret_bytes(&[4; 32]).public(),
    );
    let mut directory = Directory::new();
    for wire in &hostile_answer {
        assert_eq!(
            directory.insert_answered(wire, NOW, script),
            Ok(Listing::Added)
        );
    }
    assert_eq!(
        directory.insert_answered(&real, NOW + 5, honest_a),
        Ok(Listing::Added)
    );
    // The second honest answer holds the same announcement: not new, but one more voucher.
    assert_eq!(
        directory.insert_answered(&real, NOW + 6, honest_b),
        Err(AnnounceError::Superseded)
    );
    assert_eq!(directory.list()[0].wire(), real.as_slice());
    assert_eq!(directory.len(), 513);
}
