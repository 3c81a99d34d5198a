//! A partition: the room splits in two for seven seconds while the host and a moderator on
//! opposite sides act and listeners on both sides raise hands, over links that lose 10 % of
//! gossip hops. After it heals, anti-entropy brings every member the same log and state.
//! (This replaces a hand-written model of the same sync that the tests once had.)

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruang_proto::room::EventBody;
use ruang_session::{Answer, Command};
use ruang_testkit::Seed;
use ruang_testkit::sim::Links;

use crate::*;

#[test]
fn a_healed_partition_ends_with_one_log() {
    let seed = Seed::from_env("partition");
    let links = Links {
        min_latency_ms: 5,
        max_latency_ms: 80,
        loss: 0.1,
    };
    let mut sim = sim(links, seed.value());
    let mut rng = ChaCha8Rng::seed_from_u64(seed.value());
    let host_p = sim.add_peer("host");
    let moderator = sim.add_peer("moderator");
    let listeners: Vec<usize> = (0..40).map(|i| sim.add_peer(&format!("l{i}"))).collect();
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    join_all(&mut sim, &[moderator], &ticket);
    join_all(&mut sim, &listeners, &ticket);
    let who = sim.peers[moderator].core.key();
    sim.command(host_p, Command::Act(EventBody::InviteSpeaker { who }));
    sim.run_for(1_000);
    sim.command(moderator, Command::Act(EventBody::AcceptInvite));
    sim.run_for(1_000);
    let id = sim.command(host_p, Command::Act(EventBody::Promote { who }));
    assert!(matches!(
        sim.reply(host_p, id),
        Some(Ok(Answer::Sent(ruang_session::Delivery::Reached)))
    ));
    sim.run_for(5_000);

    // Host on side 0 (even indices), the moderator on side 1.
    assert_eq!((host_p % 2, moderator % 2), (0, 1));
    sim.partition(|p| (p % 2) as u32);
    let mut acted = 0;
    let until = sim.now() + 7_000;
    while sim.now() < until {
        let l = listeners[rng.random_range(0..listeners.len())];
        sim.command(l, Command::Act(EventBody::RaiseHand));
        // Each side's moderator invites a raised hand it can see on its side.
        for m in [host_p, moderator] {
            let state = sim.peers[m].core.state().unwrap();
            let hand = state.hands.iter().copied().find(|k| {
                sim.index_of(k).is_some_and(|p| p % 2 == m % 2) && !state.invited.contains(k)
            });
            if let Some(who) = hand {
                let id = sim.command(m, Command::Act(EventBody::InviteSpeaker { who }));
                if matches!(sim.reply(m, id), Some(Ok(_))) {
                    acted += 1;
                }
            }
        }
        sim.run_for(250);
    }
    assert!(acted >= 4, "only {acted} invitations during the partition");
    sim.heal();
    sim.run_for(30_000);

    let host_m = sim.peers[host_p].core.membership().unwrap();
    let (len, state) = (host_m.room.len(), host_m.room.state().clone());
    for &p in listeners.iter().chain([&moderator]) {
        let m = sim.peers[p].core.membership().expect("in the room");
        assert_eq!(m.room.len(), len, "peer {p}'s log");
        assert_eq!(m.room.state(), &state, "peer {p}'s state");
    }
}
