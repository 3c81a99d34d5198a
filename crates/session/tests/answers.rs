//! What a user's command is answered with: a room action, chat line or reaction is answered
//! once the network layer has taken it, saying whether anyone in the room got it — never a
//! plain "done" for something that reached nobody. A room's announcement that reached nobody
//! goes again soon, not an announce interval later.

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

/// The `Publish` ids of announcements among `core`'s outputs.
fn announcements(core: &mut ruang_session::Core) -> Vec<u64> {
    std::iter::from_fn(|| core.poll_output())
        .filter_map(|o| match o {
            Output::Publish { id, topic, .. } if topic == ruang_session::core::DIRECTORY_TOPIC => {
                Some(id.expect("an announcement's fate is tracked"))
            }
            _ => None,
        })
        .collect()
}

fn at(mono_ms: u64) -> Time {
    Time {
        mono_ms,
        unix_ms: UNIX + mono_ms,
    }
}

/// A host's first announcement races its first connection: `ruang rooms` through the node a
/// new host had just bootstrapped from listed the room only 20 s later (the announce
/// interval), in `json_schema::id_node_and_rooms_print_what_their_schemas_say`. One that
/// reached nobody goes again when a peer subscribes to the directory's topic, else within
/// `ANNOUNCE_RETRY_MS`; one that got through waits for the interval.
#[test]
fn an_announcement_that_reached_nobody_goes_again() {
    use ruang_session::limits::{ANNOUNCE_RETRY_MS, TICK_MS};
    let mut core = ruang_session::Core::new(common::config(1, "host"), at(0));
    let options = ruang_session::HostOptions {
        info: ruang_proto::room::Info {
            title: "listed".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    core.handle(at(0), Input::Command(1, Command::Host(options)));
    let first = announcements(&mut core);
    assert_eq!(first.len(), 1, "announced at once");
    core.handle(
        at(10),
        Input::Published {
            id: first[0],
            delivered: false,
        },
    );
    assert!(announcements(&mut core).is_empty());
    // A peer subscribes to the directory's topic.
    let topic = ruang_session::core::DIRECTORY_TOPIC.to_string();
    core.handle(at(20), Input::Subscribed { topic });
    let again = announcements(&mut core);
    assert_eq!(again.len(), 1, "again when a peer subscribes");
    // That one reached nobody either: again at a tick, ANNOUNCE_RETRY_MS later.
    core.handle(
        at(30),
        Input::Published {
            id: again[0],
            delivered: false,
        },
    );
    let mut retried = None;
    let mut now = 30;
    while now < 20 + ANNOUNCE_RETRY_MS + 2 * TICK_MS {
        now += TICK_MS / 2;
        core.handle(at(now), Input::Timeout);
        if let [id] = announcements(&mut core).as_slice() {
            retried = Some((now, *id));
            break;
        }
    }
    let (when, id) = retried.expect("announced again");
    assert!(when >= 20 + ANNOUNCE_RETRY_MS, "again at {when} ms");
    // This one got through: the next waits for the announce interval (20 s).
    core.handle(
        at(when),
        Input::Published {
            id,
            delivered: true,
        },
    );
    while now < when + 15_000 {
        now += TICK_MS;
        core.handle(at(now), Input::Timeout);
        assert!(
            announcements(&mut core).is_empty(),
            "announced again at {now} ms"
        );
    }
}
