//! A chat line said when nobody is on the room's topic is held, sent when someone subscribes,
//! and given up (with an error) after its time.

use ruang_session::{Command, NodeEvent};
use ruang_testkit::Seed;

use crate::*;

#[test]
fn a_line_said_alone_reaches_whoever_comes_within_its_time() {
    let seed = Seed::from_env("held_chat");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    let guest = sim.add_peer("guest");
    let ticket = host(&mut sim, host_p, Vec::new(), false);
    let id = sim.command(host_p, Command::Chat("anyone here?".into()));
    assert!(matches!(sim.reply(host_p, id), Some(Ok(_))));
    sim.run_for(4_000);
    join_all(&mut sim, &[guest], &ticket);
    sim.run_for(2_000);
    let heard = said(
        &sim,
        guest,
        |e| matches!(e, NodeEvent::Chat { text, .. } if text == "anyone here?"),
    );
    assert!(heard.is_some(), "the held line never arrived");
    sim.run_for(10_000);
    assert!(
        said(&sim, host_p, |e| matches!(e, NodeEvent::Error { .. })).is_none(),
        "a delivered line was reported lost"
    );
}

#[test]
fn a_line_nobody_comes_for_is_given_up_and_said_so() {
    let seed = Seed::from_env("held_chat_lost");
    let mut sim = sim(calm(), seed.value());
    let host_p = sim.add_peer("host");
    host(&mut sim, host_p, Vec::new(), false);
    sim.command(host_p, Command::Chat("hello?".into()));
    sim.run_for(9_000);
    assert!(said(&sim, host_p, |e| matches!(e, NodeEvent::Error { .. })).is_none());
    sim.run_for(2_000);
    let lost = said(
        &sim,
        host_p,
        |e| matches!(e, NodeEvent::Error { message } if message.contains("not delivered")),
    );
    assert!(lost.is_some(), "nobody was told the line was lost");
}
