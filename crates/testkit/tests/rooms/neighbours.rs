//! Room neighbours: listeners who all joined through the host end up connected to at least
//! `ROOM_NEIGHBOURS` present members of the audience each (the stage does not count: everyone
//! connects to it anyway), so the audience's gossip does not hang on the stage alone.

use ruang_session::limits::ROOM_NEIGHBOURS;
use ruang_testkit::Seed;

use crate::*;

#[test]
fn every_listener_finds_room_neighbours_off_the_stage() {
    let seed = Seed::from_env("neighbours");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let speakers: Vec<usize> = (0..3).map(|i| sim.add_peer(&format!("s{i}"))).collect();
    let listeners: Vec<usize> = (0..30).map(|i| sim.add_peer(&format!("l{i}"))).collect();
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    join_all(&mut sim, &speakers, &ticket);
    stage(&mut sim, host_p, &speakers);
    join_all(&mut sim, &listeners, &ticket);
    sim.run_for(30_000);
    let state = sim.peers[host_p].core.state().unwrap().clone();
    assert_eq!(state.stage().len(), 4);
    for &p in &listeners {
        let m = sim.peers[p].core.membership().unwrap();
        let neighbours = sim.peers[p]
            .connections
            .iter()
            .map(|q| sim.peers[*q].core.key())
            .filter(|k| m.presence.contains(k) && !state.on_stage(k))
            .count();
        assert!(
            neighbours >= ROOM_NEIGHBOURS,
            "listener {p} has {neighbours} room neighbours off the stage"
        );
    }
}
