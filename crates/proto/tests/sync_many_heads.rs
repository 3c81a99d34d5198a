//! A log with 1,000 concurrent heads (1,000 listeners raising hands on the same parent), then
//! moderation on top. A joiner that can name only some of its heads per request, and pages by
//! position as nodes do, reaches exactly the host's state. Before, a joiner asked again with its
//! new heads and stopped on a page that told it nothing new: with more heads than a request
//! names, such a page came early and the joiner never learned the later bans.

mod common;

use common::{forge, identity, replica, room};
use ruang_proto::room::{EventBody, Room};

/// Heads a request names, and events per answer (the node's `MAX_SYNC_HEADS` is larger; a
/// smaller bound here makes the test stronger).
const HEADS_PER_REQUEST: usize = 64;
const PAGE: usize = 256;

fn build() -> Room {
    let host = identity(0);
    let (mut r, genesis) = room(&host, vec![]);
    let listeners: Vec<_> = (0..1_000).map(|n| identity(10_000 + n)).collect();
    for l in &listeners {
        let e = forge(&r, l, vec![genesis.hash()], EventBody::RaiseHand);
        r.insert(e);
    }
    assert_eq!(r.heads().len(), 1_000);
    // Moderation on top of (some of) the heads: invitations, a ban, a promotion.
    r.author(
        &host,
        EventBody::InviteSpeaker {
            who: listeners[3].public(),
        },
        5_000,
    )
    .unwrap();
    r.author(
        &host,
        EventBody::Ban {
            who: listeners[7].public(),
        },
        5_001,
    )
    .unwrap();
    r.author(
        &host,
        EventBody::Promote {
            who: listeners[9].public(),
        },
        5_002,
    )
    .unwrap();
    r.author(&listeners[3], EventBody::AcceptInvite, 5_003)
        .unwrap();
    r
}

#[test]
fn a_joiner_reaches_the_hosts_state_through_1000_heads() {
    let host = build();
    let mut joiner = replica(&host);
    let mut from = 0;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 1_000, "paging does not end");
        let heads: Vec<_> = joiner.heads().into_iter().take(HEADS_PER_REQUEST).collect();
        let (events, next) = host.missing_from(&heads, from, PAGE);
        for e in events {
            joiner.insert_wire(e.wire());
        }
        match next {
            Some(n) => {
                assert!(n > from);
                from = n;
            }
            None => break,
        }
    }
    assert_eq!(joiner.pending_len(), 0);
    assert_eq!(joiner.len(), host.len());
    assert_eq!(joiner.state(), host.state());
    assert_eq!(joiner.heads(), host.heads());
    println!("synced {} events in {pages} pages", host.len());

    // The old loop (ask with the new heads, stop on a page that adds nothing) stalls here.
    let mut old = replica(&host);
    for _ in 0..1_000 {
        let heads: Vec<_> = old.heads().into_iter().take(HEADS_PER_REQUEST).collect();
        let mut added = 0;
        for e in host.missing_for(&heads, PAGE) {
            if matches!(
                old.insert_wire(e.wire()),
                ruang_proto::room::Insert::New { .. }
            ) {
                added += 1;
            }
        }
        if added == 0 {
            break;
        }
    }
    assert_ne!(
        old.state(),
        host.state(),
        "the old loop would have converged"
    );
}
