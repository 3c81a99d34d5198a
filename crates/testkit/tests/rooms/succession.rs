//! The host crashes: its first successor takes over once the host's presence has lapsed, and
//! everyone follows the new host.

use ruang_session::NodeEvent;
use ruang_testkit::Seed;

use crate::*;

#[test]
fn the_first_present_successor_takes_over_when_the_host_is_gone() {
    let seed = Seed::from_env("succession");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let first = sim.add_peer("first");
    let second = sim.add_peer("second");
    let listeners: Vec<usize> = (0..5).map(|i| sim.add_peer(&format!("l{i}"))).collect();
    let successors = vec![sim.peers[first].core.key(), sim.peers[second].core.key()];
    let ticket = host(&mut sim, host_p, successors, false);
    let mut members = vec![first, second];
    members.extend(&listeners);
    join_all(&mut sim, &members, &ticket);
    sim.run_for(10_000);
    let host_key = sim.peers[host_p].core.key();
    for &p in &members {
        assert_eq!(sim.peers[p].core.state().unwrap().host, host_key);
    }

    let crashed_at = sim.now();
    sim.crash(host_p);
    sim.run_for(20_000);
    let new_host = sim.peers[first].core.key();
    let took_over = said(
        &sim,
        first,
        |e| matches!(e, NodeEvent::Notice { message } if message.contains("you are now the host")),
    )
    .expect("the first successor never took over");
    let after = took_over - crashed_at;
    // Not before the host's presence lapsed (its TTL is three 2 s intervals), and within an
    // interval of that (plus a tick and a delay).
    assert!(
        (4_000..=8_500).contains(&after),
        "took over {after} ms after the crash"
    );
    assert!(said(&sim, second, |e| matches!(e, NodeEvent::Notice { message } if message.contains("you are now the host"))).is_none());
    for &p in &members {
        assert_eq!(
            sim.peers[p].core.state().unwrap().host,
            new_host,
            "peer {p} follows another host"
        );
    }
}
