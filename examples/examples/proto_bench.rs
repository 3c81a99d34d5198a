//! Micro-benchmark of the room log: signature verification, verify + apply throughput, and the
//! time to compute the state of a 10,000-event log from scratch.
//!
//! ```text
//! cargo run --release -p ruang-examples --example proto_bench
//! ```

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruang_examples::CpuTimer;
use ruang_proto::Identity;
use ruang_proto::room::{Event, EventBody, Genesis, Info, Insert, Role, Room, Visibility};
use ruang_proto::signed::{self, Verified};

const EVENTS: usize = 10_000;

const USERS: usize = 200;

/// Builds a log of `EVENTS` events authored on `replicas` replicas. After each event a random
/// pair of replicas syncs (one way) with probability `sync_chance`: 0.5 gives the shallow
/// concurrency of a live room (gossip spreads an event in about a hundred milliseconds), 0.125
/// the deep divergence of replicas that were cut off from each other for a while.
fn build_log(
    rng: &mut ChaCha8Rng,
    replicas: usize,
    sync_chance: f64,
) -> (Room, Vec<Verified<Event>>) {
    let host = Identity::generate(rng);
    let users: Vec<Identity> = (0..USERS).map(|_| Identity::generate(rng)).collect();
    let genesis = Genesis {
        info: Info {
            title: "bench".into(),
            ..Info::default()
        },
        visibility: Visibility::Public,
        successors: vec![],
        nonce: [0; 16],
    };
    let (origin, _) = Room::create(&host, genesis, 0, rng).expect("genesis");
    let mut writers: Vec<Room> = (0..replicas)
        .map(|_| Room::from_genesis(origin.genesis().clone()).expect("genesis"))
        .collect();
    let mut events = Vec::with_capacity(EVENTS);
    let mut t = 1;
    while events.len() < EVENTS {
        t += 1;
        let w = (rng.next_u32() as usize) % replicas;
        let u = &users[(rng.next_u32() as usize) % USERS];
        let state = writers[w].state();
        let (author, body) = match state.role(&u.public()) {
            Role::Listener if state.invited.contains(&u.public()) => (u, EventBody::AcceptInvite),
            Role::Listener if state.hands.contains(&u.public()) => {
                (&host, EventBody::InviteSpeaker { who: u.public() })
            }
            Role::Listener => (u, EventBody::RaiseHand),
            Role::Speaker if state.muted.contains(&u.public()) => {
                (&host, EventBody::Unmute { who: u.public() })
            }
            Role::Speaker => match rng.next_u32() % 3 {
                0 => (&host, EventBody::Mute { who: u.public() }),
                1 => (u, EventBody::StepDown),
                _ => (
                    u,
                    EventBody::Recording {
                        on: !state.recording.contains(&u.public()),
                    },
                ),
            },
            _ => continue,
        };
        if let Ok(e) = writers[w].author(author, body, t) {
            events.push(e);
        }
        if (rng.next_u32() as f64) < sync_chance * u32::MAX as f64 {
            let (a, b) = (
                (rng.next_u32() as usize) % replicas,
                (rng.next_u32() as usize) % replicas,
            );
            if a != b {
                let missing: Vec<_> = writers[a]
                    .missing_for(&writers[b].heads(), usize::MAX)
                    .into_iter()
                    .cloned()
                    .collect();
                for e in missing {
                    writers[b].insert(e);
                }
            }
        }
    }
    (origin, events)
}

fn main() {
    let only = std::env::var("BENCH_ONLY").ok();
    println!("(times are this thread's CPU time: one core's worth of work)\n");
    let scenarios = [
        ("one writer: a linear log", 1, 1.0),
        ("four writers, shallow concurrency", 4, 0.5),
        (
            "four writers, deep concurrency (after partitions)",
            4,
            0.125,
        ),
    ];
    for (name, replicas, sync_chance) in scenarios {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        println!("== {name}");
        run(replicas, sync_chance);
    }
}

fn run(replicas: usize, sync_chance: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let started = Instant::now();
    let (origin, events) = build_log(&mut rng, replicas, sync_chance);
    let merges = events.iter().filter(|e| e.parents.len() > 1).count();
    println!(
        "built a log of {} events ({merges} merges of concurrent branches) in {:.2?}",
        events.len(),
        started.elapsed()
    );
    let wires: Vec<Vec<u8>> = events.iter().map(|e| e.wire().to_vec()).collect();

    // 1. Signature + decoding only.
    let started = CpuTimer::start();
    for w in &wires {
        signed::verify::<Event>(w).expect("valid");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "verify only:                  {:>6.0} events/s  ({:.1} µs each)",
        wires.len() as f64 / secs,
        secs * 1e6 / wires.len() as f64
    );

    // 2. Verify + insert + apply, in log order, as a syncing joiner receives them.
    let reference = {
        let mut r = Room::from_genesis(origin.genesis().clone()).expect("genesis");
        for e in &events {
            r.insert(e.clone());
        }
        r
    };
    let by_hash: std::collections::HashMap<_, &Vec<u8>> = events
        .iter()
        .zip(&wires)
        .map(|(e, w)| (e.hash(), w))
        .collect();
    let ordered: Vec<&Vec<u8>> = reference
        .events()
        .skip(1)
        .map(|(e, _)| by_hash[&e.hash()])
        .collect();
    let started = CpuTimer::start();
    let mut r = Room::from_genesis(origin.genesis().clone()).expect("genesis");
    for w in &ordered {
        assert!(matches!(r.insert_wire(w), Insert::New { .. }));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "verify + apply, log order:    {:>6.0} events/s  ({:.1} µs each)",
        wires.len() as f64 / secs,
        secs * 1e6 / wires.len() as f64
    );
    assert_eq!(r.state(), reference.state());

    // 3. Verify + apply in authoring order (concurrent branches interleaved, as gossip delivers).
    let started = CpuTimer::start();
    let mut r = Room::from_genesis(origin.genesis().clone()).expect("genesis");
    for w in &wires {
        r.insert_wire(w);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "verify + apply, gossip order: {:>6.0} events/s  ({:.1} µs each)",
        wires.len() as f64 / secs,
        secs * 1e6 / wires.len() as f64
    );
    assert_eq!(r.state(), reference.state());

    // 4. The state of the whole 10,000-event log, computed from scratch (order + apply).
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = CpuTimer::start();
        let state = r.recompute().clone();
        times.push(started.elapsed());
        assert_eq!(&state, reference.state());
    }
    times.sort();
    println!(
        "state of a {}-event log from scratch: median {:.2?} (min {:.2?}, max {:.2?})",
        r.len(),
        times[2],
        times[0],
        times[4]
    );
}
