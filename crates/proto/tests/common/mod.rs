//! Shared helpers for the ruang-proto scenario and property tests.
#![allow(dead_code)]

pub mod history;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ruang_proto::Identity;
use ruang_proto::room::{Event, EventBody, Genesis, Info, Room, Visibility};
use ruang_proto::signed::{self, Verified};

/// A deterministic identity for test actor `n`.
pub fn identity(n: u64) -> Identity {
    Identity::generate(&mut ChaCha20Rng::seed_from_u64(1_000 + n))
}

/// A genesis with this title and successors.
pub fn genesis(title: &str, successors: Vec<ruang_proto::PublicKey>) -> Genesis {
    Genesis {
        info: Info {
            title: title.into(),
            topic: "a test room".into(),
            tags: vec!["test".into()],
            language: "en".into(),
        },
        visibility: Visibility::Public,
        successors,
        nonce: [0; 16],
    }
}

/// A room hosted by `host`, with its genesis.
pub fn room(host: &Identity, successors: Vec<ruang_proto::PublicKey>) -> (Room, Verified<Event>) {
    Room::create(
        host,
        genesis("test room", successors),
        1_000,
        &mut ChaCha20Rng::seed_from_u64(9),
    )
    .unwrap()
}

/// Signs an event with explicit parents, bypassing the authoring check (to forge or to build
/// concurrent branches by hand). The author's previous event in `room` is added as a parent
/// when it is not among `parents`, as an honest node does (see [`forge_raw`] to leave it out).
pub fn forge(
    room: &Room,
    author: &Identity,
    mut parents: Vec<ruang_proto::room::EventHash>,
    body: EventBody,
) -> Verified<Event> {
    if let Some(tip) = room.tip_of(&author.public())
        && !parents.contains(&tip)
    {
        parents.push(tip);
    }
    forge_raw(room, author, parents, body)
}

/// Signs an event with exactly these parents (a fork, if it leaves out the author's previous
/// event).
pub fn forge_raw(
    room: &Room,
    author: &Identity,
    parents: Vec<ruang_proto::room::EventHash>,
    body: EventBody,
) -> Verified<Event> {
    let lamport = 1 + parents
        .iter()
        .map(|p| room.get(p).map(|e| e.lamport).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let event = Event {
        room: room.id(),
        author: author.public(),
        parents,
        lamport,
        created_at: 5_000,
        body,
    };
    signed::sign(author, event).unwrap()
}

/// A fresh replica of `room`, from its genesis.
pub fn replica(room: &Room) -> Room {
    Room::from_genesis_wire(room.id(), room.genesis().wire()).unwrap()
}

/// Every event with whether and why it took no effect, sorted by hash. Replicas may hold events
/// in different but equivalent orders (an event that commutes with those after its place is
/// appended), so this, not the order, is what must agree.
pub fn outcomes_of(r: &Room) -> Vec<(ruang_proto::room::EventHash, Option<String>)> {
    let mut out: Vec<_> = r
        .events()
        .map(|(e, o)| (e.hash(), o.map(|o| o.to_string())))
        .collect();
    out.sort();
    out
}

/// Feeds `r`'s events to fresh replicas in `orders` shuffled orders and checks each reaches
/// `expected`, and that what `take_changes` reported on the way adds up to it: following its
/// bans, lifts and hosts from the genesis gives the final banned set and host.
pub fn every_order_reaches(r: &Room, expected: &ruang_proto::room::State, orders: u64) {
    let log: Vec<_> = r.events().skip(1).map(|(e, _)| e.clone()).collect();
    for seed in 0..orders {
        let mut delivery = log.clone();
        history::shuffle(&mut delivery, seed);
        let mut other = replica(r);
        let mut banned = other.state().banned.clone();
        let mut host = other.state().host;
        for e in delivery {
            other.insert(e);
            let changes = other.take_changes();
            for k in &changes.banned {
                assert!(banned.insert(*k), "order {seed}: {k:?} banned twice");
            }
            for k in &changes.unbanned {
                assert!(
                    banned.remove(k),
                    "order {seed}: {k:?} unbanned, never banned"
                );
            }
            if let Some(previous) = changes.previous_host {
                assert_eq!(previous, host, "order {seed}: the previous host");
                host = other.state().host;
            }
            let named = !changes.banned.is_empty()
                || !changes.unbanned.is_empty()
                || !changes.kicked.is_empty()
                || changes.previous_host.is_some()
                || changes.ended;
            assert!(changes.state || !named, "order {seed}: a change of nothing");
        }
        assert_eq!(other.state(), expected, "delivery order {seed}");
        assert_eq!(
            &banned, &expected.banned,
            "order {seed}: the changes add up"
        );
        assert_eq!(
            host, expected.host,
            "order {seed}: the changes name the host"
        );
    }
}
