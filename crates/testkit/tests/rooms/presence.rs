//! Presence: a member that crashes leaves every presence table within its TTL (not before);
//! one that leaves cleanly leaves them within a gossip delay.

use ruang_session::Command;
use ruang_testkit::Seed;

use crate::*;

fn present_anywhere(sim: &ruang_testkit::rooms::Sim, members: &[usize], who: usize) -> Vec<usize> {
    let key = sim.peers[who].core.key();
    members
        .iter()
        .copied()
        .filter(|&p| p != who && sim.peers[p].online)
        .filter(|&p| {
            sim.peers[p]
                .core
                .membership()
                .is_some_and(|m| m.presence.contains(&key))
        })
        .collect()
}

#[test]
fn a_crashed_member_lapses_after_its_ttl_and_a_leaving_one_at_once() {
    let seed = Seed::from_env("presence");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let members: Vec<usize> = (0..6).map(|i| sim.add_peer(&format!("m{i}"))).collect();
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    join_all(&mut sim, &members, &ticket);
    sim.run_for(10_000);
    let mut all = members.clone();
    all.push(host_p);
    for &p in &members {
        assert_eq!(
            present_anywhere(&sim, &all, p).len(),
            all.len() - 1,
            "peer {p} not seen by all"
        );
    }

    // A listener in a room of 7 beats every 2 s, with a TTL of three beats.
    let crashed = members[0];
    sim.crash(crashed);
    sim.run_for(100);
    assert!(
        !present_anywhere(&sim, &all, crashed).is_empty(),
        "dropped before its TTL"
    );
    sim.run_for(6_300);
    assert_eq!(present_anywhere(&sim, &all, crashed), Vec::<usize>::new());

    let leaving = members[1];
    let id = sim.command(leaving, Command::Leave);
    assert!(matches!(sim.reply(leaving, id), Some(Ok(_))));
    sim.run_for(500);
    assert_eq!(present_anywhere(&sim, &all, leaving), Vec::<usize>::new());
    // The others are still there.
    for &p in &members[2..] {
        assert_eq!(present_anywhere(&sim, &all, p).len(), all.len() - 3);
    }
}

/// A connection to a stage member that drops (replaced by a better one) takes our presence in
/// flight with it: it is sent again at the next tick, also in the first second of the node's
/// life (the monotonic clock starts at 0 there; a check against "a second since the last
/// resend" once skipped it, and a punched join waited 2 s for the next heartbeat).
#[test]
fn presence_goes_again_when_a_connection_to_the_stage_drops_even_at_once() {
    let seed = Seed::from_env("presence_resend");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let listener = sim.add_peer("listener");
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    join_all(&mut sim, &[listener], &ticket);
    assert!(sim.now() < 500, "joined at {} ms", sim.now());
    let before = sim.peers[listener].traffic.gossip_sent;
    let host_key = sim.peers[host_p].core.key();
    sim.input(listener, ruang_session::Input::ConnectionDropped(host_key));
    sim.run_for(300);
    assert!(
        sim.peers[listener].traffic.gossip_sent > before,
        "no presence after the dropped connection"
    );
}

/// Leaving while the join is still under way gives the join up: the node does not enter the
/// room it has just left, and nobody lists it.
#[test]
fn leaving_while_joining_cancels_the_join() {
    let seed = Seed::from_env("presence");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    let quitter = sim.add_peer("quitter");
    let join = sim.command(
        quitter,
        Command::Join(ruang_session::JoinTarget::Ticket(ticket)),
    );
    // Before the dial has even reached the host.
    let leave = sim.command(quitter, Command::Leave);
    assert!(
        matches!(
            sim.reply(quitter, leave),
            Some(Ok(ruang_session::Answer::Done))
        ),
        "{:?}",
        sim.reply(quitter, leave)
    );
    assert!(matches!(
        sim.reply(quitter, join),
        Some(Err(ruang_session::Error::Cancelled))
    ));
    sim.run_for(10_000);
    assert!(sim.peers[quitter].core.membership().is_none());
    assert!(present_anywhere(&sim, &[host_p], quitter).is_empty());
}

/// A newcomer lists the room's members as soon as it is in: the member it joined through
/// hands over the presences it holds (`SyncRequest::Presence`), in a public room and in a
/// private one (sealed). Before, a newcomer listed each member only at that member's next
/// heartbeat: in this room of 81 a listener beats every ~10 s (the audience sends 8 a second
/// in all), so a second after joining it listed about a tenth of the room; in a room larger
/// than the audience sample, a heartbeat that missed it was missed for another interval (20
/// minutes at 10,000 members).
#[test]
fn a_newcomer_lists_the_members_at_once() {
    let seed = Seed::from_env("presence_handed");
    for private in [false, true] {
        let mut sim = sim(calm(), seed.value());
        let host_p = sim.add_peer("host");
        let members: Vec<usize> = (0..80).map(|i| sim.add_peer(&format!("m{i}"))).collect();
        let ticket = host(&mut sim, host_p, Vec::new(), private);
        join_all(&mut sim, &members, &ticket);
        // Every member has sent a heartbeat since, twice.
        sim.run_for(25_000);
        let mut all = members.clone();
        all.push(host_p);
        assert_eq!(
            present_anywhere(&sim, &[host_p], members[0]),
            vec![host_p],
            "the host does not list m0"
        );
        let newcomer = sim.add_peer("newcomer");
        join_all(&mut sim, &[newcomer], &ticket);
        sim.run_for(1_000);
        let listed: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&p| !present_anywhere(&sim, &[newcomer], p).is_empty())
            .collect();
        assert_eq!(
            listed.len(),
            all.len(),
            "private: {private}; a second after its join, the newcomer lists {} of {} members",
            listed.len(),
            all.len()
        );
    }
}
