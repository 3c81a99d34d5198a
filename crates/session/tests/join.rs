//! A join whose connection to the member it fetches from closes under its page request
//! connects again, after a wait that doubles (a member that drops a restarted peer's
//! connections may drop the one opened right after too: three attempts at once went in 3 ms,
//! seen in `reachability::rejoin_at_once_with_the_same_identity`), and gives up after
//! `JOIN_CONNECTIONS` connections.

use ruang_proto::ticket::Ticket;
use ruang_session::limits::{JOIN_CONNECTIONS, JOIN_REDIAL_MS};
use ruang_session::{Command, Core, Input, JoinTarget, Output, SyncFailure, Time};

mod common;

use common::{UNIX, config, host};

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
