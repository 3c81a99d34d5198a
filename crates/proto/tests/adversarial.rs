//! Property test of revocation: keys that once had authority — ex-moderators (demoted, banned,
//! moved to the audience), an old host after a hand-off, a banned successor — sign events with
//! any parents they like (backdated to any point, chained to their own previous event or, for the
//! old host, forking it), any body, right or wrong lamport, any `created_at`. Invariants: once
//! the revocation is in the log, no such event changes the state — except the attacker's own
//! place (a key that forks its chain loses its own hand and recording notice, see
//! `docs/room-log.md`); and every replica that gets the same events in any order reaches the
//! same state and outcomes.
//!
//! `ADVERSARIAL_CASES` sets the number of generated rooms (default 200, 50 attempts each);
//! `ADVERSARIAL_SEED` replays one case, and `ADVERSARIAL_DEBUG` prints each attempt.

mod common;

use common::{forge, forge_raw, history, identity, outcomes_of, replica, room};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use ruang_proto::Identity;
use ruang_proto::room::{Event, EventBody, EventHash, Info, Insert, Reject, Room};
use ruang_proto::signed::{self, Verified};

const ATTEMPTS_PER_CASE: usize = 50;

const HOST: usize = 0;
const S1: usize = 1;
const S2: usize = 2;
const M1: usize = 3;
const M2: usize = 4;
const M3: usize = 5;
const LISTENERS: [usize; 3] = [6, 7, 8];
const HEIR: usize = 9;

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[(rng.next_u32() as usize) % items.len()]
}

fn random_body(rng: &mut ChaCha8Rng, actors: &[Identity]) -> EventBody {
    let who = actors[(rng.next_u32() as usize) % actors.len()].public();
    match rng.next_u32() % 16 {
        0 => EventBody::InviteSpeaker { who },
        1 => EventBody::MoveToAudience { who },
        2 => EventBody::Mute { who },
        3 => EventBody::Unmute { who },
        4 => EventBody::Promote { who },
        5 => EventBody::Demote { who },
        6 => EventBody::Kick { who },
        7 | 8 => EventBody::Ban { who },
        9 => EventBody::Unban { who },
        10 => EventBody::UpdateInfo(Info {
            title: format!("hijacked {}", rng.next_u32() % 100),
            ..Info::default()
        }),
        11 => EventBody::HandOff { to: who },
        12 => EventBody::ClaimHost,
        13 => EventBody::EndRoom,
        14 => EventBody::RemoveSuccessor {
            who: actors[S1].public(),
        },
        _ => EventBody::AcceptInvite,
    }
}

/// Honest activity: whoever has the role does something their role allows (refusals skipped).
fn honest_steps(r: &mut Room, rng: &mut ChaCha8Rng, actors: &[Identity], who: &[usize], n: usize) {
    for step in 0..n {
        let actor = pick(rng, who);
        let body = match rng.next_u32() % 6 {
            0 => EventBody::RaiseHand,
            1 => EventBody::AcceptInvite,
            2 => EventBody::InviteSpeaker {
                who: actors[pick(rng, &LISTENERS)].public(),
            },
            3 => EventBody::Mute {
                who: actors[pick(rng, &LISTENERS)].public(),
            },
            4 => EventBody::Unmute {
                who: actors[pick(rng, &LISTENERS)].public(),
            },
            _ => EventBody::Recording {
                on: rng.next_u32().is_multiple_of(2),
            },
        };
        let _ = r.author(&actors[actor], body, 2_000 + step as u64);
    }
}

/// The state without the attackers' own places (hand, recording notice).
fn without_own_place(state: &ruang_proto::room::State, who: &[ruang_proto::PublicKey]) -> String {
    let mut s = state.clone();
    for k in who {
        s.recording.remove(k);
    }
    let hands: Vec<_> = s
        .hands
        .iter()
        .filter(|k| !who.contains(k))
        .copied()
        .collect();
    format!("{s:?} {hands:?}").replace(&format!("{:?}", s.hands), "")
}

/// One generated room; returns the number of attempts made.
fn case(seed: u64) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let actors: Vec<Identity> = (0..10).map(|n| identity(100 + n)).collect();
    let key = |n: usize| actors[n].public();
    let (mut r, _) = room(&actors[HOST], vec![key(S1), key(S2)]);

    // Power granted, then used.
    for m in [M1, M2, M3] {
        r.author(&actors[HOST], EventBody::Promote { who: key(m) }, 1_500)
            .unwrap();
    }
    let everyone: Vec<usize> = vec![HOST, M1, M2, M3, LISTENERS[0], LISTENERS[1], LISTENERS[2]];
    let n = 5 + (rng.next_u32() % 25) as usize;
    honest_steps(&mut r, &mut rng, &actors, &everyone, n);

    // Power taken away.
    let host = &actors[HOST];
    r.author(host, EventBody::Demote { who: key(M1) }, 3_000)
        .unwrap();
    r.author(host, EventBody::Ban { who: key(M2) }, 3_001)
        .unwrap();
    r.author(host, EventBody::MoveToAudience { who: key(M3) }, 3_002)
        .unwrap();
    r.author(host, EventBody::Ban { who: key(S2) }, 3_003)
        .unwrap();
    let handed_off = rng.next_u32().is_multiple_of(2);
    let mut attackers = vec![M1, M2, M3, S2];
    let mut honest_now = vec![HOST, LISTENERS[0], LISTENERS[1], LISTENERS[2]];
    if handed_off {
        r.author(host, EventBody::HandOff { to: key(HEIR) }, 3_004)
            .unwrap();
        let heir = &actors[HEIR];
        r.author(heir, EventBody::Demote { who: key(HOST) }, 3_005)
            .unwrap();
        r.author(heir, EventBody::MoveToAudience { who: key(HOST) }, 3_006)
            .unwrap();
        attackers.push(HOST);
        honest_now = vec![HEIR, LISTENERS[0], LISTENERS[1], LISTENERS[2]];
    }
    let n = (rng.next_u32() % 15) as usize;
    honest_steps(&mut r, &mut rng, &actors, &honest_now, n);
    let base: Vec<Verified<Event>> = r.events().skip(1).map(|(e, _)| e.clone()).collect();
    let all: Vec<EventHash> = r.events().map(|(e, _)| e.hash()).collect();
    let before = r.state().clone();

    // The attempts.
    let attacker_keys: Vec<_> = attackers.iter().map(|a| key(*a)).collect();
    let mut admitted = Vec::new();
    for attempt in 0..ATTEMPTS_PER_CASE {
        let attacker = pick(&mut rng, &attackers);
        let mut parents: Vec<EventHash> = (0..1 + rng.next_u32() % 3)
            .map(|_| pick(&mut rng, &all))
            .collect();
        parents.sort();
        parents.dedup();
        let body = random_body(&mut rng, &actors);
        let event = if attacker == HOST && rng.next_u32().is_multiple_of(2) {
            forge_raw(&r, &actors[attacker], parents, body)
        } else {
            forge(&r, &actors[attacker], parents, body)
        };
        let event = if rng.next_u32().is_multiple_of(10) {
            // Any lamport and clock the attacker likes.
            let mut e: Event = (*event).clone();
            e.lamport = u64::from(rng.next_u32() % 64);
            e.created_at = rng.next_u64();
            signed::sign(&actors[attacker], e).unwrap()
        } else {
            event
        };
        let verdict = r.insert(event.clone());
        if std::env::var("ADVERSARIAL_DEBUG").is_ok() {
            println!(
                "attempt {attempt}: {attacker} {:?} parents {:?} lamport {} -> {verdict:?} void {:?} refusal {:?}",
                event.body,
                event.parents,
                event.lamport,
                r.void_reason(&event.hash()),
                r.refusal(&event.hash())
            );
        }
        match verdict {
            Insert::New { .. } => admitted.push(event),
            Insert::Rejected(
                Reject::Unauthorized(_) | Reject::BadLamport { .. } | Reject::Chain,
            ) => {}
            Insert::Known => {}
            other => panic!("seed {seed} attempt {attempt}: unexpected {other:?}"),
        }
        assert_eq!(
            without_own_place(r.state(), &attacker_keys),
            without_own_place(&before, &attacker_keys),
            "seed {seed} attempt {attempt}: an event by a revoked key changed the state"
        );
    }

    // Any delivery order: the same state and outcomes.
    let mut delivery: Vec<_> = base.iter().chain(&admitted).cloned().collect();
    history::shuffle(&mut delivery, seed ^ 0x5eed);
    let mut other = replica(&r);
    for e in delivery {
        other.insert(e);
    }
    assert_eq!(other.pending_len(), 0, "seed {seed}");
    assert_eq!(other.state(), r.state(), "seed {seed}: replicas diverge");
    assert_eq!(
        outcomes_of(&other),
        outcomes_of(&r),
        "seed {seed}: outcomes diverge"
    );
    ATTEMPTS_PER_CASE
}

#[test]
fn revoked_keys_change_nothing_whatever_they_sign() {
    if let Some(seed) = std::env::var("ADVERSARIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        case(seed);
        return;
    }
    let cases: u64 = std::env::var("ADVERSARIAL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let attempts: usize = (0..cases).map(case).sum();
    println!("adversarial attempts: {attempts} over {cases} rooms, none changed the state");
    assert!(cases < 200 || attempts >= 10_000);
}
