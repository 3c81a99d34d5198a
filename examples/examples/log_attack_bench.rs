//! What log spam costs a replica (issue 11): insert time per event, total CPU and resident
//! memory, for
//! - junk from one key with `parents = [genesis]` (a fork: every event void),
//! - the same key's junk chained to its own previous event (hand up, hand down: not void),
//! - 30,000 keys each raising a hand with `parents = [genesis]` (30,000 concurrent heads),
//! - 30,000 keys each raising a hand on the current heads (an honest crowd),
//!
//! each on top of an honest log of 1,000 events, and then how long an honest moderation event
//! takes to apply on top of the attack. Every scenario checks that the incrementally kept state
//! equals a re-run of the order from scratch.
//!
//! ```text
//! cargo run --release -p ruang-examples --example log_attack_bench [KEYS]
//! ```

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ruang_examples::{CpuTimer, resident_bytes};
use ruang_proto::Identity;
use ruang_proto::room::{Event, EventBody, EventHash, Genesis, Info, Insert, Room, Visibility};
use ruang_proto::signed::{self, Verified};

const HONEST: usize = 1_000;

fn sign(
    room: &Room,
    who: &Identity,
    parents: Vec<EventHash>,
    body: EventBody,
    at: u64,
) -> Verified<Event> {
    let lamport = 1 + parents
        .iter()
        .filter_map(|p| room.get(p).map(|e| e.lamport))
        .max()
        .unwrap_or(0);
    let event = Event {
        room: room.id(),
        author: who.public(),
        parents,
        lamport,
        created_at: at,
        body,
    };
    signed::sign(who, event).expect("in bounds")
}

/// A room with an honest history of `HONEST` events: invitations, hands, mutes.
fn honest_room(rng: &mut ChaCha8Rng) -> (Room, Identity, Vec<Identity>) {
    let host = Identity::generate(rng);
    let genesis = Genesis {
        info: Info {
            title: "under attack".into(),
            ..Info::default()
        },
        visibility: Visibility::Public,
        successors: vec![],
        nonce: [0; 16],
    };
    let (mut room, _) = Room::create(&host, genesis, 0, rng).expect("genesis");
    let people: Vec<Identity> = (0..50).map(|_| Identity::generate(rng)).collect();
    let mut i = 0u64;
    while room.len() < HONEST && i < 100_000 {
        let p = &people[(i as usize) % people.len()];
        let body = match (i as usize / people.len()) % 4 {
            0 => EventBody::RaiseHand,
            1 => EventBody::LowerHand,
            2 => EventBody::Recording { on: true },
            _ => EventBody::Recording { on: false },
        };
        let _ = room.author(p, body, 1_000 + i);
        if i.is_multiple_of(7) {
            let _ = room.author(
                &host,
                EventBody::InviteSpeaker { who: p.public() },
                1_000 + i,
            );
        }
        i += 1;
    }
    (room, host, people)
}

struct Figures {
    per_event_us: f64,
    total_ms: f64,
    rss_mb: f64,
}

/// Inserts `events` into `room`, timing each; returns the figures.
fn attack(room: &mut Room, events: Vec<Verified<Event>>) -> Figures {
    let rss_before = resident_bytes().unwrap_or(0);
    let n = events.len();
    let timer = CpuTimer::start();
    for e in events {
        match room.insert(e) {
            Insert::New { .. } | Insert::Known => {}
            other => panic!("attack event not admitted: {other:?}"),
        }
    }
    let total = timer.elapsed();
    let rss_after = resident_bytes().unwrap_or(0);
    Figures {
        per_event_us: total.as_secs_f64() * 1e6 / n as f64,
        total_ms: total.as_secs_f64() * 1e3,
        rss_mb: rss_after.saturating_sub(rss_before) as f64 / 1e6,
    }
}

/// Times `n` honest moderation events by the host on top of everything (signing included; wall
/// clock, as one event is below the CPU clock's resolution); milliseconds each: max and median.
fn honest_after(room: &mut Room, host: &Identity, people: &[Identity], n: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let who = people[(i / 2) % people.len()].public();
        let body = if i % 2 == 0 {
            EventBody::Ban { who }
        } else {
            EventBody::Unban { who }
        };
        let started = std::time::Instant::now();
        room.author(host, body, 90_000 + i as u64)
            .expect("the host may ban and unban");
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[n - 1], times[n / 2])
}

fn check(room: &mut Room, label: &str) {
    let incremental = room.state().clone();
    let timer = CpuTimer::start();
    let recomputed = room.recompute().clone();
    assert_eq!(
        incremental, recomputed,
        "{label}: incremental state differs"
    );
    println!(
        "  (state re-run from scratch agrees: {} events in {:.1} ms)",
        room.len(),
        timer.elapsed().as_secs_f64() * 1e3
    );
}

fn report(label: &str, f: &Figures, room: &Room, honest: (f64, f64)) {
    println!(
        "{label}: {:.1} µs/event, total {:.0} ms CPU, +{:.1} MB resident; log {} events, {} void; \
         honest ban/unban after it: max {:.3} ms, median {:.3} ms",
        f.per_event_us,
        f.total_ms,
        f.rss_mb,
        room.len(),
        room.void_len(),
        honest.0,
        honest.1
    );
}

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    println!("honest base log: {HONEST} events; attack keys: {keys}");

    // 1. One key, 3,000 events with parents = [genesis].
    let (mut room, host, people) = honest_room(&mut rng);
    let genesis = room.genesis().hash();
    let troll = Identity::generate(&mut rng);
    let junk: Vec<_> = (0..3_000)
        .map(|i| {
            let body = if i % 2 == 0 {
                EventBody::RaiseHand
            } else {
                EventBody::LowerHand
            };
            sign(&room, &troll, vec![genesis], body, i)
        })
        .collect();
    let f = attack(&mut room, junk);
    let h = honest_after(&mut room, &host, &people, 100);
    report(
        "3,000 junk events, one key, parents [genesis]",
        &f,
        &room,
        h,
    );
    check(&mut room, "junk");

    // 2. One key, 3,000 events, each on its previous one and the genesis.
    let (mut room, host, people) = honest_room(&mut rng);
    let genesis = room.genesis().hash();
    let troll = Identity::generate(&mut rng);
    let mut prev: Option<EventHash> = None;
    let mut chained = Vec::new();
    for i in 0..3_000u64 {
        let body = if i % 2 == 0 {
            EventBody::RaiseHand
        } else {
            EventBody::LowerHand
        };
        let mut parents = vec![genesis];
        parents.extend(prev);
        // `sign` reads lamports from the room; the chain is not in it yet.
        let lamport = 1 + i;
        let event = Event {
            room: room.id(),
            author: troll.public(),
            parents,
            lamport,
            created_at: i,
            body,
        };
        let e = signed::sign(&troll, event).expect("in bounds");
        prev = Some(e.hash());
        chained.push(e);
    }
    let f = attack(&mut room, chained);
    let h = honest_after(&mut room, &host, &people, 100);
    report(
        "3,000 chained events, one key, each on its previous and [genesis]",
        &f,
        &room,
        h,
    );
    check(&mut room, "chained");

    // 3. Many keys, each raising a hand on the genesis.
    let (mut room, host, people) = honest_room(&mut rng);
    let genesis = room.genesis().hash();
    let crowd: Vec<Identity> = (0..keys).map(|_| Identity::generate(&mut rng)).collect();
    let hands: Vec<_> = crowd
        .iter()
        .map(|k| sign(&room, k, vec![genesis], EventBody::RaiseHand, 7))
        .collect();
    let f = attack(&mut room, hands);
    let h = honest_after(&mut room, &host, &people, 100);
    report(
        &format!("{keys} keys raising a hand, parents [genesis]"),
        &f,
        &room,
        h,
    );
    assert!(room.state().hands.len() >= keys);
    check(&mut room, "crowd on genesis");

    // 4. Many keys, each raising a hand on the current heads (as honest nodes do).
    let (mut room, host, people) = honest_room(&mut rng);
    let rss_before = resident_bytes().unwrap_or(0);
    let timer = CpuTimer::start();
    for k in &crowd {
        room.author(k, EventBody::RaiseHand, 8).expect("allowed");
    }
    let total = timer.elapsed();
    let f = Figures {
        per_event_us: total.as_secs_f64() * 1e6 / keys as f64,
        total_ms: total.as_secs_f64() * 1e3,
        rss_mb: resident_bytes().unwrap_or(0).saturating_sub(rss_before) as f64 / 1e6,
    };
    let h = honest_after(&mut room, &host, &people, 100);
    report(
        &format!("{keys} keys raising a hand on the heads (signing included)"),
        &f,
        &room,
        h,
    );
    check(&mut room, "crowd on heads");
}
