//! Log spam: 300 fresh keys raise a hand and one key raises and lowers its hand 600 times, all
//! handed straight to the host (which takes every valid event into its log). The host's user
//! interfaces get a few state events a second, not one per event; a member who joins
//! afterwards still fetches the whole log and reaches the host's state.

use ruang_proto::Identity;
use ruang_proto::room::{EventBody, Room};
use ruang_session::Input;
use ruang_session::wire::RoomMessage;
use ruang_testkit::Seed;
use ruang_testkit::rooms::UNIX_START_MS;

use crate::*;

#[test]
fn a_late_joiner_reaches_the_full_state_under_900_hostile_events() {
    let seed = Seed::from_env("log_spam");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    sim.run_for(1_000);

    // The attacker's copy of the log, to author valid events on.
    let (mut replica, topic) = {
        let m = sim.peers[host_p].core.membership().unwrap();
        let mut replica = Room::from_genesis(m.room.genesis().clone()).unwrap();
        for (event, _) in m.room.events() {
            replica.insert(event.clone());
        }
        (replica, m.topic.clone())
    };
    let toggler = Identity::from_secret_bytes(&[0xee; 32]);
    let mut hostile = Vec::new();
    for n in 0..300u32 {
        let mut secret = [0xaa; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        hostile.push((Identity::from_secret_bytes(&secret), EventBody::RaiseHand));
    }
    for i in 0..600 {
        let body = if i % 2 == 0 {
            EventBody::RaiseHand
        } else {
            EventBody::LowerHand
        };
        hostile.push((toggler.clone(), body));
    }
    let (spam_start, changes_before) = (sim.now(), sim.peers[host_p].state_changes);
    for (token, (who, body)) in hostile.into_iter().enumerate() {
        let unix = UNIX_START_MS + sim.now();
        let event = replica.author(&who, body, unix).expect("a valid event");
        let data = RoomMessage::Event(event.wire().to_vec()).encode();
        let message = sim.peers[host_p].core.decode(&topic, &data, unix);
        sim.input(
            host_p,
            Input::Gossip {
                token: 1_000_000 + token as u64,
                source: None,
                message,
            },
        );
        sim.run_for(5);
    }
    // The host's user interfaces heard of it a few times a second, not 900 times.
    let seconds = (sim.now() - spam_start) as f64 / 1e3;
    let changes = sim.peers[host_p].state_changes - changes_before;
    eprintln!("900 hostile events in {seconds} s: {changes} state events at the host");
    assert!(
        (changes as f64) <= 11.0 * seconds,
        "{changes} state events in {seconds} s"
    );
    sim.run_for(2_000);
    let host_len = sim.peers[host_p].core.membership().unwrap().room.len();
    assert!(host_len > 900, "the host took {host_len} events");

    let late = sim.add_peer("late");
    join_all(&mut sim, &[late], &ticket);
    sim.run_for(5_000);
    let host_state = sim.peers[host_p].core.state().unwrap().clone();
    let m = sim.peers[late].core.membership().expect("in the room");
    assert_eq!(m.room.len(), host_len, "the late joiner's log");
    assert_eq!(m.room.state(), &host_state, "the late joiner's state");
    assert_eq!(host_state.hands.len(), 300);
}
