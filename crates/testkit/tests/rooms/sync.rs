//! Anti-entropy: with 10 % of gossip hops lost, the host's moderation still reaches every
//! member's log, and all logs end the same.

use ruang_proto::room::EventBody;
use ruang_session::Command;
use ruang_testkit::Seed;
use ruang_testkit::sim::Links;

use crate::*;

#[test]
fn lost_events_are_repaired_and_every_log_ends_the_same() {
    let seed = Seed::from_env("sync");
    let links = Links {
        min_latency_ms: 10,
        max_latency_ms: 80,
        loss: 0.1,
    };
    let mut sim = sim(links, seed.value());
    let host_p = sim.add_peer("host");
    let members: Vec<usize> = (0..20).map(|i| sim.add_peer(&format!("m{i}"))).collect();
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    join_all(&mut sim, &members, &ticket);
    sim.run_for(5_000);
    // Every member raises a hand at about the same time, and the host invites some of them:
    // concurrent authors, faster than gossip settles.
    for (i, &p) in members.iter().enumerate() {
        let id = sim.command(p, Command::Act(EventBody::RaiseHand));
        assert!(
            matches!(sim.reply(p, id), Some(Ok(_))),
            "{:?}",
            sim.reply(p, id)
        );
        if i % 4 == 0 {
            let who = sim.peers[p].core.key();
            let id = sim.command(host_p, Command::Act(EventBody::InviteSpeaker { who }));
            assert!(
                matches!(sim.reply(host_p, id), Some(Ok(_))),
                "{:?}",
                sim.reply(host_p, id)
            );
        }
        sim.run_for(20);
    }
    sim.run_for(30_000);
    let host_len = sim.peers[host_p].core.membership().unwrap().room.len();
    let host_state = sim.peers[host_p].core.state().unwrap().clone();
    for &p in &members {
        let m = sim.peers[p].core.membership().expect("in the room");
        assert_eq!(m.room.len(), host_len, "peer {p}'s log");
        assert_eq!(m.room.state(), &host_state, "peer {p}'s state");
    }
}
