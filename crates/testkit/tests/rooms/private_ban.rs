//! A private room's bans hold: when the host bans a member, the room moves to a new key that
//! only the members who stay receive. The banned member, back with a fresh identity and the
//! old ticket, reads nothing of the room from then on; the others go on talking, and the new
//! ticket lets newcomers in.

use ruang_proto::room::EventBody;
use ruang_session::{Answer, Command, JoinTarget, NodeEvent};
use ruang_testkit::Seed;

use crate::*;

#[test]
fn a_banned_member_rejoining_a_private_room_with_a_fresh_identity_reads_nothing() {
    let seed = Seed::from_env("private_ban");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let ana = sim.add_peer("ana");
    let troll = sim.add_peer("troll");
    let cy = sim.add_peer("cy");
    let old_ticket = host(&mut sim, host_p, Vec::new(), true);
    join_all(&mut sim, &[ana, troll, cy], &old_ticket);
    sim.run_for(3_000);

    let who = sim.peers[troll].core.key();
    let id = sim.command(host_p, Command::Act(EventBody::Ban { who }));
    assert!(matches!(sim.reply(host_p, id), Some(Ok(_))));
    sim.run_for(8_000);
    let epoch = |sim: &ruang_testkit::rooms::Sim, p: usize| {
        sim.peers[p]
            .core
            .membership()
            .map(|m| (m.epoch, m.topic.clone()))
    };
    let host_now = epoch(&sim, host_p).expect("the host is in its room");
    assert_eq!(host_now.0, 1, "the host rekeyed once");
    for p in [ana, cy] {
        assert_eq!(
            epoch(&sim, p),
            Some(host_now.clone()),
            "peer {p} moved with the host"
        );
    }

    // Back with a fresh identity and the ticket it had.
    let again = sim.add_peer("troll-again");
    let join = sim.command(again, Command::Join(JoinTarget::Ticket(old_ticket.clone())));
    sim.run_for(15_000);
    let id = sim.command(host_p, Command::Chat("after the ban".into()));
    assert!(matches!(sim.reply(host_p, id), Some(Ok(_))));
    sim.run_for(3_000);
    let heard = |sim: &ruang_testkit::rooms::Sim, p: usize| {
        said(
            sim,
            p,
            |e| matches!(e, NodeEvent::Chat { text, .. } if text == "after the ban"),
        )
        .is_some()
    };
    assert!(
        heard(&sim, ana) && heard(&sim, cy),
        "the members lost the room"
    );
    assert!(
        !heard(&sim, again),
        "the banned member read the room with the old key"
    );
    let in_room = sim.peers[again]
        .core
        .membership()
        .is_some_and(|m| m.room.len() >= sim.peers[host_p].core.membership().unwrap().room.len());
    assert!(!in_room, "the banned member fetched the room's whole log");
    eprintln!("the fresh identity's join: {:?}", sim.reply(again, join));

    // The host's new ticket lets a newcomer in, who hears the room.
    let new_ticket = sim.peers[host_p].core.ticket().unwrap();
    assert_ne!(new_ticket.room_key, old_ticket.room_key);
    let dee = sim.add_peer("dee");
    join_all(&mut sim, &[dee], &new_ticket);
    sim.run_for(2_000);
    let id = sim.command(ana, Command::Chat("welcome".into()));
    assert!(matches!(sim.reply(ana, id), Some(Ok(Answer::Sent(_)))));
    sim.run_for(3_000);
    assert!(
        said(
            &sim,
            dee,
            |e| matches!(e, NodeEvent::Chat { text, .. } if text == "welcome")
        )
        .is_some(),
        "a newcomer with the new ticket did not hear the room"
    );
}
