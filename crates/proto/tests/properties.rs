//! Property tests of the room protocol:
//! (a) convergence under any delivery order, duplicates and delays;
//! (b) unauthorised, tampered and replayed events;
//! (c) decoders never panic on arbitrary bytes;
//! (d) tickets round-trip.

mod common;

use common::history::{self, OUTSIDER};
use common::{forge, identity, outcomes_of};
use proptest::prelude::*;
use ruang_proto::directory::{Announcement, Directory};
use ruang_proto::ephemeral::Ephemeral;
use ruang_proto::room::{Event, EventBody, Insert, Reject, RoomId};
use ruang_proto::signed::{self, Hash};
use ruang_proto::{PublicKey, Ticket};

/// `PROPTEST_CASES` from the environment, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn order_of(r: &ruang_proto::room::Room) -> Vec<Hash> {
    r.events().map(|(e, _)| e.hash()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), .. ProptestConfig::default() })]

    /// (a) The same set of valid events, delivered in any order with duplicates, yields the
    /// same state and the same outcome of every event on every replica, and the same as
    /// re-running the order from scratch; every event is admitted.
    #[test]
    fn replicas_converge_under_any_delivery_order(
        seed in any::<u64>(),
        writers in 1usize..5,
        steps in 5usize..250,
        perm_seeds in proptest::collection::vec(any::<u64>(), 3),
        dup_every in 2usize..7,
    ) {
        let h = history::generate(seed, writers, steps);
        let reference = history::replay(&h.origin, h.events.clone());
        prop_assert_eq!(reference.len(), h.events.len() + 1, "every authored event is admitted");
        prop_assert_eq!(reference.pending_len(), 0);
        for p in perm_seeds {
            let mut delivery: Vec<_> = h.events.clone();
            // Duplicates (replays) of some events, then a random order: delays and reordering.
            let dups: Vec<_> = h.events.iter().step_by(dup_every).cloned().collect();
            delivery.extend(dups);
            history::shuffle(&mut delivery, p);
            let r = history::replay(&h.origin, delivery);
            prop_assert_eq!(r.pending_len(), 0);
            prop_assert_eq!(r.state(), reference.state());
            prop_assert_eq!(outcomes_of(&r), outcomes_of(&reference));
            prop_assert_eq!(r.heads(), reference.heads());
            let mut fresh = r;
            let incremental = fresh.state().clone();
            prop_assert_eq!(fresh.recompute(), &incremental);
            prop_assert_eq!(outcomes_of(&fresh), outcomes_of(&reference));
        }
    }

    /// (b) A key without authority at the event's causal point is rejected: the outsider (never
    /// on stage, never a moderator) signs moderator actions on top of any replica's heads.
    #[test]
    fn unauthorised_events_are_rejected(seed in any::<u64>(), steps in 5usize..80, pick in any::<u64>(), kind in 0u8..8) {
        let h = history::generate(seed, 2, steps);
        let mut r = history::replay(&h.origin, h.events.clone());
        let outsider = &h.actors[OUTSIDER as usize];
        let target = h.actors[(pick % OUTSIDER) as usize].public();
        let body = match kind {
            0 => EventBody::Mute { who: target },
            1 => EventBody::Ban { who: target },
            2 => EventBody::Kick { who: target },
            3 => EventBody::Promote { who: target },
            4 => EventBody::InviteSpeaker { who: target },
            5 => EventBody::EndRoom,
            6 => EventBody::HandOff { to: outsider.public() },
            _ => EventBody::ClaimHost,
        };
        // Parents: the current heads, or an older point of the log.
        let all: Vec<Hash> = order_of(&r);
        let parents = if pick % 2 == 0 { r.heads() } else { vec![all[(pick as usize) % all.len()]] };
        let before = r.state().clone();
        let forged = forge(&r, outsider, parents, body);
        let verdict = r.insert(forged);
        prop_assert!(matches!(verdict, Insert::Rejected(Reject::Unauthorized(_))), "{:?}", verdict);
        prop_assert_eq!(r.state(), &before);
    }

    /// (b) Any tampered byte in a signed event is rejected; a replay is idempotent.
    #[test]
    fn tampered_bytes_are_rejected_and_replays_are_idempotent(seed in any::<u64>(), index in any::<usize>(), flip in 1u8..=255) {
        let h = history::generate(seed, 2, 40);
        let mut r = history::replay(&h.origin, h.events.clone());
        let before = r.state().clone();
        let len = r.len();
        if let Some(e) = h.events.first() {
            let mut wire = e.wire().to_vec();
            let i = index % wire.len();
            wire[i] ^= flip;
            prop_assert!(matches!(r.insert_wire(&wire), Insert::Rejected(_)));
            prop_assert_eq!(r.insert_wire(e.wire()), Insert::Known);
        }
        prop_assert_eq!(r.state(), &before);
        prop_assert_eq!(r.len(), len);
    }

    /// (c) Decoders never panic on arbitrary bytes.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000), now in any::<u64>()) {
        let _ = signed::verify::<Event>(&bytes);
        let _ = signed::verify::<Ephemeral>(&bytes);
        let _ = signed::verify::<Announcement>(&bytes);
        let _ = Ticket::parse(&String::from_utf8_lossy(&bytes));
        let _ = Directory::new().insert(&bytes, now);
        let host = identity(0);
        let (mut r, _) = common::room(&host, vec![]);
        let _ = r.insert_wire(&bytes);
        // With a valid header and version, the payload decoder sees the bytes too.
        let mut framed = vec![signed::VERSION];
        framed.extend_from_slice(&[0u8; 64]);
        framed.extend_from_slice(&bytes);
        let _ = signed::verify::<Event>(&framed);
        let _ = signed::verify::<Ephemeral>(&framed);
        let _ = signed::verify::<Announcement>(&framed);
    }

    /// (d) Tickets round-trip.
    #[test]
    fn tickets_round_trip(
        room in any::<[u8; 32]>(),
        host in any::<[u8; 32]>(),
        addresses in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=128), 0..=6),
        key in proptest::option::of(any::<[u8; 32]>()),
    ) {
        let t = Ticket { room: RoomId(Hash(room)), host: PublicKey(host), addresses, room_key: key };
        let text = t.to_string();
        prop_assert_eq!(Ticket::parse(&text).unwrap(), t.clone());
        prop_assert_eq!(Ticket::parse(&text.to_uppercase()).unwrap(), t);
    }
}

/// Long logs (past the snapshots kept in full, so re-runs start from thinned-out snapshots):
/// three writers that sync now and then write 2,000 events; shuffled delivery agrees with
/// in-order delivery and with a re-run from scratch.
#[test]
fn long_logs_converge_from_thinned_snapshots() {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};
    let actors: Vec<_> = (0..12).map(identity).collect();
    let (origin, _) = common::room(&actors[0], vec![]);
    let mut writers: Vec<_> = (0..3).map(|_| common::replica(&origin)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut events = Vec::new();
    for (i, m) in [1usize, 2].into_iter().enumerate() {
        let e = writers[0]
            .author(
                &actors[0],
                EventBody::Promote {
                    who: actors[m].public(),
                },
                1_000 + i as u64,
            )
            .unwrap();
        events.push(e);
    }
    for writer in writers.iter_mut().skip(1) {
        for e in &events {
            writer.insert(e.clone());
        }
    }
    let mut step = 0u64;
    while events.len() < 2_000 && step < 100_000 {
        step += 1;
        let w = (rng.next_u32() % 3) as usize;
        if rng.next_u32() % 8 == 0 {
            let other = (w + 1) % 3;
            let missing: Vec<_> = writers[w]
                .missing_for(&writers[other].heads(), usize::MAX)
                .into_iter()
                .cloned()
                .collect();
            for e in missing {
                writers[other].insert(e);
            }
            continue;
        }
        let actor = (rng.next_u32() % 12) as usize;
        let who = actors[3 + (rng.next_u32() % 9) as usize].public();
        let body = match rng.next_u32() % 8 {
            0 => EventBody::RaiseHand,
            1 => EventBody::LowerHand,
            2 => EventBody::InviteSpeaker { who },
            3 => EventBody::AcceptInvite,
            4 => EventBody::Mute { who },
            5 => EventBody::Unmute { who },
            6 => EventBody::Recording {
                on: rng.next_u32() % 2 == 0,
            },
            _ => EventBody::Ban { who },
        };
        if let Ok(e) = writers[w].author(&actors[actor], body, 2_000 + step) {
            events.push(e);
        }
    }
    assert!(events.len() >= 2_000);
    let reference = history::replay(&origin, events.clone());
    for seed in [1u64, 2] {
        // Shuffled within windows of 256, so the pending set (1,024) never overflows.
        let mut delivery = events.clone();
        for window in delivery.chunks_mut(256) {
            history::shuffle(window, seed);
        }
        let mut r = history::replay(&origin, delivery);
        assert_eq!(r.pending_len(), 0);
        assert_eq!(r.state(), reference.state());
        assert_eq!(outcomes_of(&r), outcomes_of(&reference));
        let incremental = r.state().clone();
        assert_eq!(r.recompute(), &incremental);
    }
}
