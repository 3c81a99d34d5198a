//! What a user's command is answered with: a room action, chat line or reaction is answered
//! once the network layer has taken it, saying whether anyone in the room got it — never a
//! plain "done" for something that reached nobody.

use ruang_proto::room::EventBody;
use ruang_session::{Answer, Command, Delivery, Input, Output, Time};

mod common;

use common::{UNIX, host};

const AT: Time = Time {
    mono_ms: 1_000,
    unix_ms: UNIX + 1_000,
};

/// Sends `command` as command 7; returns the id of the publication it made, and whether a
/// reply came before that publication's result.
fn send(core: &mut ruang_session::Core, command: Command) -> (u64, bool) {
    core.handle(AT, Input::Command(7, command));
    let mut publication = None;
    let mut replied = false;
    while let Some(output) = core.poll_output() {
        match output {
            Output::Publish { id: Some(id), .. } => publication = Some(id),
            Output::Reply { id: 7, .. } => replied = true,
            _ => {}
        }
    }
    (
        publication.expect("the command published something"),
        replied,
    )
}

/// Reports publication `id` as `delivered`; returns the answer to command 7.
fn published(core: &mut ruang_session::Core, id: u64, delivered: bool) -> Delivery {
    core.handle(AT, Input::Published { id, delivered });
    let mut answer = None;
    while let Some(output) = core.poll_output() {
        if let Output::Reply { id: 7, result } = output {
            answer = Some(result);
        }
    }
    match answer.expect("an answer once the publication's result is in") {
        Ok(Answer::Sent(delivery)) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[test]
fn a_room_action_is_answered_with_whether_anyone_got_it() {
    for (delivered, expected) in [(false, Delivery::NobodyReached), (true, Delivery::Reached)] {
        let mut core = host();
        let (id, replied) = send(&mut core, Command::Act(EventBody::Recording { on: true }));
        assert!(!replied, "answered before the network layer took it");
        assert_eq!(published(&mut core, id, delivered), expected);
    }
}

#[test]
fn a_chat_line_is_answered_with_whether_anyone_got_it() {
    for (delivered, expected) in [(false, Delivery::NobodyReached), (true, Delivery::Reached)] {
        let mut core = host();
        let (id, replied) = send(&mut core, Command::Chat("hello".into()));
        assert!(!replied);
        assert_eq!(published(&mut core, id, delivered), expected);
    }
}

#[test]
fn a_refused_action_is_answered_at_once() {
    let mut core = host();
    // The host cannot raise a hand.
    core.handle(AT, Input::Command(7, Command::Act(EventBody::RaiseHand)));
    let mut answer = None;
    while let Some(output) = core.poll_output() {
        assert!(
            !matches!(output, Output::Publish { id: Some(_), .. }),
            "a refused action is not sent"
        );
        if let Output::Reply { id: 7, result } = output {
            answer = Some(result);
        }
    }
    assert!(matches!(answer, Some(Err(_))), "{answer:?}");
}
