//! A large room under churn: a host, three speakers and an audience that comes and goes
//! (10 % of it per minute, half of the leavers crashing), over links of 10–150 ms with 1 %
//! loss. At the end every member holds the same verified state, every presence table is the
//! truth once the longest presence TTL has passed, and each member's control traffic per
//! second is reported and bounded.
//!
//! `RUANG_SIM_MEMBERS` (default 200) and `RUANG_SIM_MINUTES` (default 10) size it.

use std::collections::HashSet;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruang_session::Command;
use ruang_session::limits::MAX_AUDIENCE_PRESENCE_MS;
use ruang_testkit::Seed;
use ruang_testkit::sim::Links;

use crate::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_large_room_under_churn_converges() {
    let seed = Seed::from_env("scale");
    let members = env("RUANG_SIM_MEMBERS", 200) as usize;
    let minutes = env("RUANG_SIM_MINUTES", 10);
    let links = Links {
        min_latency_ms: 10,
        max_latency_ms: 150,
        loss: 0.01,
    };
    let settings = ruang_testkit::rooms::NodeSettings {
        record_events: false,
        ..Default::default()
    };
    let mut sim = ruang_testkit::rooms::Sim::new(links, settings, seed.value());
    let mut rng = ChaCha8Rng::seed_from_u64(seed.value() ^ 0x5ca1e);
    let host_p = sim.add_peer("host");
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    let speakers: Vec<usize> = (0..3).map(|i| sim.add_peer(&format!("s{i}"))).collect();
    join_all(&mut sim, &speakers, &ticket);
    stage(&mut sim, host_p, &speakers);

    // The audience arrives over the first 30 s.
    let audience = members.saturating_sub(4);
    let mut present: Vec<usize> = Vec::new();
    let step = (30_000 / audience.max(1) as u64).max(1);
    for i in 0..audience {
        let p = sim.add_peer(&format!("l{i}"));
        sim.command(
            p,
            Command::Join(ruang_session::JoinTarget::Ticket(ticket.clone())),
        );
        present.push(p);
        sim.run_for(step);
    }

    // Churn: 10 % of the audience per minute leaves and as many arrive.
    let churn_every = (600_000 / audience.max(1) as u64).max(1);
    let end = sim.now() + minutes * 60_000;
    let mut left = 0;
    while sim.now() < end {
        sim.run_for(churn_every);
        let i = rng.random_range(0..present.len());
        let leaver = present.swap_remove(i);
        if rng.random_bool(0.5) {
            sim.crash(leaver);
        } else {
            sim.command(leaver, Command::Leave);
        }
        left += 1;
        let p = sim.add_peer(&format!("l{}", audience + left));
        sim.command(
            p,
            Command::Join(ruang_session::JoinTarget::Ticket(ticket.clone())),
        );
        present.push(p);
    }
    let churn_end = sim.now();
    // Then quiet for longer than any presence lives.
    sim.run_for(3 * MAX_AUDIENCE_PRESENCE_MS + 10_000);

    let mut everyone: Vec<usize> = vec![host_p];
    everyone.extend(&speakers);
    everyone.extend(
        present
            .iter()
            .copied()
            .filter(|p| sim.peers[*p].core.membership().is_some()),
    );
    let joined = everyone.len();
    assert!(
        joined >= members * 95 / 100,
        "only {joined} of {members} are in the room"
    );
    let host_state = sim.peers[host_p].core.state().unwrap().clone();
    let keys: HashSet<_> = everyone.iter().map(|p| sim.peers[*p].core.key()).collect();
    let mut wrong_presence = 0;
    for &p in &everyone {
        let m = sim.peers[p].core.membership().unwrap();
        assert_eq!(m.room.state(), &host_state, "peer {p}'s state");
        let table: HashSet<_> = m.presence.iter().map(|(k, _)| *k).collect();
        let mut truth = keys.clone();
        truth.remove(&sim.peers[p].core.key());
        if table != truth {
            wrong_presence += 1;
            if std::env::var("RUANG_SIM_DEBUG").is_ok() {
                let missing: Vec<usize> = truth
                    .difference(&table)
                    .filter_map(|k| sim.index_of(k))
                    .collect();
                let connected = sim.peers[p].connections.len();
                let to_host = sim.peers[p].connections.contains(&host_p);
                let in_room: HashSet<usize> = everyone.iter().copied().collect();
                let present_neighbours: Vec<usize> = sim.peers[p]
                    .connections
                    .iter()
                    .copied()
                    .filter(|q| in_room.contains(q))
                    .collect();
                eprintln!(
                    "peer {p} ({connected} connections, host {to_host}, in room {present_neighbours:?}) misses {missing:?}"
                );
                for q in missing.iter().take(2) {
                    let qn: Vec<usize> = sim.peers[*q]
                        .connections
                        .iter()
                        .copied()
                        .filter(|x| in_room.contains(x))
                        .collect();
                    let qm = sim.peers[*q].core.membership().unwrap();
                    eprintln!(
                        "   {q}: connections in room {qn:?}, knows {} members, host {}",
                        qm.presence.len(),
                        sim.peers[*q].connections.contains(&host_p)
                    );
                }
            }
            eprintln!(
                "peer {p}: {} present members missing, {} gone ones kept",
                truth.difference(&table).count(),
                table.difference(&truth).count()
            );
        }
    }
    assert_eq!(wrong_presence, 0, "presence tables off the truth");

    let seconds = sim.now() as f64 / 1e3;
    let per_s = |f: &dyn Fn(&ruang_testkit::rooms::Traffic) -> u64| {
        let all: Vec<f64> = sim
            .peers
            .iter()
            .map(|p| f(&p.traffic) as f64 / seconds)
            .collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let max = all.iter().cloned().fold(0.0, f64::max);
        (mean, max)
    };
    let (mean, busiest) = per_s(&|t| t.total());
    let (ihave, ihave_max) = per_s(&|t| t.ihave_sent + t.ihave_received);
    eprintln!(
        "[scale] {members} members, {minutes} min of churn ({left} left, as many came), \
         {joined} in the room at the end, over {seconds:.0} s (churn ended at {} s); \
         gossip and sync messages per member per second: {mean:.1} mean, {busiest:.1} \
         busiest; IHAVE entries: {ihave:.1} mean, {ihave_max:.1} busiest",
        churn_end / 1_000
    );
    // What a member receives is about the room's message rate (bounded by the stretching of
    // the audience's heartbeats) times the copies gossipsub delivers (its mesh, 4 to 12).
    assert!(mean < 150.0, "{mean:.1} messages per member per second");
}
