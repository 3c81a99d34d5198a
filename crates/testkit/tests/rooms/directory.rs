//! The directory: a public room is listed by a node outside it, re-announced so it stays
//! listed, and gone within three announce intervals of its host's crash.

use ruang_testkit::Seed;

use crate::*;

#[test]
fn a_room_stays_listed_while_announced_and_lapses_after_its_host_is_gone() {
    let seed = Seed::from_env("directory");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let browser = sim.add_peer("browser");
    let other = sim.add_peer("other");
    sim.connect(browser, host_p);
    sim.connect(other, browser);
    sim.run_for(1_000);
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    sim.run_for(1_000);
    let listed = |sim: &mut ruang_testkit::rooms::Sim, p: usize| {
        let unix = ruang_testkit::rooms::UNIX_START_MS + sim.now();
        sim.peers[p]
            .core
            .listings(unix)
            .iter()
            .any(|l| l.room_id == ticket.room)
    };
    assert!(
        listed(&mut sim, browser),
        "not listed at the host's neighbour"
    );
    assert!(
        listed(&mut sim, other),
        "not passed on to a node two hops away"
    );
    // Longer than an announcement lives: re-announced.
    sim.run_for(5 * ruang_proto::directory::ANNOUNCE_INTERVAL_MS);
    assert!(listed(&mut sim, other), "lapsed while the host runs");
    sim.crash(host_p);
    sim.run_for(2 * ruang_proto::directory::ANNOUNCE_INTERVAL_MS);
    assert!(listed(&mut sim, other), "gone too early");
    sim.run_for(ruang_proto::directory::ANNOUNCE_INTERVAL_MS + 1_000);
    assert!(
        !listed(&mut sim, other),
        "still listed after three intervals"
    );
}
