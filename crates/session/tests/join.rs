//! A join whose connection to the member it fetches from closes under its page request
//! connects again, after a wait that doubles (a member that drops a restarted peer's
//! connections may drop the one opened right after too: three attempts at once went in 3 ms,
//! seen in `reachability::rejoin_at_once_with_the_same_identity`), and gives up after
//! `JOIN_CONNECTIONS` connections. A joiner is then handed the presences the member holds,
//! and takes only those that are signed, live, of its room and not banned.

use ruang_proto::room::EventBody;
use ruang_proto::ticket::Ticket;
use ruang_proto::{Identity, PublicKey};
use ruang_session::limits::{JOIN_CONNECTIONS, JOIN_REDIAL_MS};
use ruang_session::wire::{RoomMessage, SyncRequest, SyncResponse};
use ruang_session::{Command, Core, Gossip, Input, JoinTarget, Output, SyncFailure, Time};

mod common;

use common::{UNIX, config, host, signed_presence};

fn at(mono_ms: u64) -> Time {
    Time {
        mono_ms,
        unix_ms: UNIX + mono_ms,
    }
}

fn outputs(core: &mut Core) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// The id of the page request among `outputs`, if one was made.
fn page_request(outputs: &[Output]) -> Option<u64> {
    outputs.iter().find_map(|o| match o {
        Output::SyncRequest { id, .. } => Some(*id),
        _ => None,
    })
}

/// The connection closed under page request `request`: what the joiner does at once.
fn closed_under(joiner: &mut Core, now: u64, request: u64) -> Vec<Output> {
    joiner.handle(
        at(now),
        Input::SyncAnswer {
            id: request,
            result: Err(SyncFailure::Disconnected),
        },
    );
    outputs(joiner)
}

#[test]
fn a_join_whose_connection_closes_connects_again_later_then_gives_up() {
    let host = host();
    let ticket = Ticket {
        room: host.membership().unwrap().room.id(),
        host: host.key(),
        addresses: vec![b"somewhere".to_vec()],
        room_key: None,
    };
    let mut joiner = Core::new(config(2, "joiner"), at(0));
    joiner.handle(
        at(0),
        Input::Command(5, Command::Join(JoinTarget::Ticket(ticket))),
    );
    let out = outputs(&mut joiner);
    assert!(out.iter().any(|o| matches!(o, Output::JoinDial { .. })));
    joiner.handle(at(10), Input::JoinDialed(Ok(host.key())));
    let mut request = page_request(&outputs(&mut joiner)).expect("a page request");

    let mut now = 10;
    for attempt in 1..JOIN_CONNECTIONS {
        let out = closed_under(&mut joiner, now, request);
        assert!(
            !out.iter().any(|o| matches!(o, Output::JoinRedial { .. })),
            "attempt {attempt}: dialled again at once"
        );
        let wait = JOIN_REDIAL_MS << (attempt - 1);
        // Not before its time...
        joiner.handle(at(now + wait - 1), Input::Timeout);
        assert!(
            !outputs(&mut joiner)
                .iter()
                .any(|o| matches!(o, Output::JoinRedial { .. })),
            "attempt {attempt}: dialled again before {wait} ms"
        );
        // ...then the same member again.
        now += wait;
        joiner.handle(at(now), Input::Timeout);
        let out = outputs(&mut joiner);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::JoinRedial { peer } if *peer == host.key())),
            "attempt {attempt}: no redial after {wait} ms"
        );
        joiner.handle(at(now), Input::JoinDialed(Ok(host.key())));
        request = page_request(&outputs(&mut joiner)).expect("the page asked again");
    }
    // The last connection closes too: the join fails, saying so.
    let out = closed_under(&mut joiner, now, request);
    let failed = out.iter().any(|o| {
        matches!(o, Output::Reply { id: 5, result: Err(e) } if e.to_string().contains("connection closed"))
    });
    assert!(failed, "{out:?}");
}

/// A joiner (key `[2; 32]`) that fetched `host`'s log at `now`: what it asks for next, with
/// the request's id.
fn join_through(host: &mut Core, now: u64) -> (Core, Vec<(u64, SyncRequest)>) {
    let ticket = Ticket {
        room: host.membership().unwrap().room.id(),
        host: host.key(),
        addresses: vec![b"somewhere".to_vec()],
        room_key: None,
    };
    let mut joiner = Core::new(config(2, "joiner"), at(now));
    joiner.handle(
        at(now),
        Input::Command(5, Command::Join(JoinTarget::Ticket(ticket))),
    );
    outputs(&mut joiner);
    joiner.handle(at(now), Input::JoinDialed(Ok(host.key())));
    let mut asked = Vec::new();
    let mut pending = outputs(&mut joiner);
    for _ in 0..64 {
        let Some((id, request)) = pending.drain(..).find_map(|o| match o {
            Output::SyncRequest { id, request, .. } => Some((id, request)),
            _ => None,
        }) else {
            break;
        };
        let decoded = SyncRequest::decode(&request).unwrap();
        if !matches!(decoded, SyncRequest::Room { .. }) {
            asked.push((id, decoded));
            break;
        }
        host.handle(
            at(now),
            Input::SyncRequest {
                token: id,
                from: Some(joiner.key()),
                request,
            },
        );
        let response = outputs(host)
            .into_iter()
            .find_map(|o| match o {
                Output::SyncReply { response, .. } => Some(response),
                _ => None,
            })
            .expect("an answer");
        joiner.handle(
            at(now),
            Input::SyncAnswer {
                id,
                result: Ok(response),
            },
        );
        pending = outputs(&mut joiner);
    }
    assert!(joiner.membership().is_some(), "the joiner is not in");
    (joiner, asked)
}

fn lists(core: &Core, who: &PublicKey) -> bool {
    core.membership().unwrap().presence.contains(who)
}

/// The member a newcomer joined through hands it the presences it holds: the newcomer lists
/// them at once, and the member itself.
#[test]
fn a_newcomer_is_handed_the_presences_of_the_member_it_joined_through() {
    let mut host = host();
    let room = host.membership().unwrap().room.id();
    let listener = Identity::from_secret_bytes(&[3; 32]);
    let data =
        RoomMessage::Ephemeral(signed_presence(&listener, room, UNIX + 10, 60_000, false)).encode();
    let topic = host.membership().unwrap().topic.clone();
    let message: Gossip = host.decode(&topic, &data, UNIX + 10);
    host.handle(
        at(10),
        Input::Gossip {
            token: 1,
            source: Some(listener.public()),
            message,
        },
    );
    outputs(&mut host);
    assert!(lists(&host, &listener.public()));

    // Half a minute later (the listener's heartbeat is 30 s old: too old for gossip, still
    // live) a newcomer joins through the host.
    let (mut joiner, asked) = join_through(&mut host, 30_000);
    let [(id, request)] = asked.as_slice() else {
        panic!("asked {asked:?}");
    };
    assert_eq!(*request, SyncRequest::Presence { room });
    assert!(!lists(&joiner, &listener.public()));
    host.handle(
        at(30_000),
        Input::SyncRequest {
            token: 9,
            from: Some(joiner.key()),
            request: request.encode(),
        },
    );
    let response = outputs(&mut host)
        .into_iter()
        .find_map(|o| match o {
            Output::SyncReply { response, .. } => Some(response),
            _ => None,
        })
        .unwrap();
    joiner.handle(
        at(30_000),
        Input::SyncAnswer {
            id: *id,
            result: Ok(response),
        },
    );
    outputs(&mut joiner);
    assert!(lists(&joiner, &listener.public()), "the listener");
    assert!(lists(&joiner, &host.key()), "the host");
    // It lapses when it would have: 60 s after it was signed, not 60 s after the handing.
    joiner.handle(at(59_000), Input::Timeout);
    outputs(&mut joiner);
    assert!(lists(&joiner, &listener.public()), "dropped before its TTL");
    joiner.handle(at(60_011), Input::Timeout);
    outputs(&mut joiner);
    assert!(!lists(&joiner, &listener.public()), "kept past its TTL");
}

/// A hostile member hands a newcomer presences: only the signed, live ones of its room whose
/// author is not banned count.
#[test]
fn a_newcomer_takes_only_signed_live_presences_of_its_room() {
    let mut host = host();
    let room = host.membership().unwrap().room.id();
    let banned = Identity::from_secret_bytes(&[4; 32]);
    host.handle(
        at(5),
        Input::Command(
            2,
            Command::Act(EventBody::Ban {
                who: banned.public(),
            }),
        ),
    );
    outputs(&mut host);
    assert!(
        host.membership()
            .unwrap()
            .room
            .state()
            .banned
            .contains(&banned.public())
    );
    let now = 100_000;
    let unix = UNIX + now;
    let (mut joiner, asked) = join_through(&mut host, now);
    let [(id, _)] = asked.as_slice() else {
        panic!("asked {asked:?}");
    };
    let who = |n: u8| Identity::from_secret_bytes(&[n + 10; 32]);
    let other_room = ruang_proto::room::RoomId(ruang_proto::Hash([7; 32]));
    let mut forged = signed_presence(&who(5), room, unix, 60_000, false);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let presences = vec![
        signed_presence(&who(0), room, unix - 1_000, 60_000, false), // live: taken
        signed_presence(&who(1), room, unix - 61_000, 60_000, false), // lapsed
        signed_presence(&who(2), room, unix + 120_000, 60_000, false), // from the future
        signed_presence(&who(3), room, unix, 60_000, true),          // a departure
        signed_presence(&who(4), other_room, unix, 60_000, false),   // another room
        forged,                                                      // not signed by its key
        signed_presence(&banned, room, unix, 60_000, false),         // banned
        b"junk".to_vec(),
    ];
    let answer = SyncResponse::Presence { presences }.encode();
    joiner.handle(
        at(now),
        Input::SyncAnswer {
            id: *id,
            result: Ok(answer),
        },
    );
    outputs(&mut joiner);
    let listed: Vec<u8> = (0..6)
        .filter(|n| lists(&joiner, &who(*n).public()))
        .collect();
    assert_eq!(listed, vec![0]);
    assert!(!lists(&joiner, &banned.public()));
}
