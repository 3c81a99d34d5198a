//! A successor is banned; they sign `ClaimHost` with parents from before the ban. The claim is
//! void (the ban revokes it), and a claim after the ban is refused: a banned successor never
//! owns the room.

mod common;

use common::{forge, identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Refusal, Role, Void};

#[test]
fn backdated_claim_by_a_banned_successor_is_void() {
    // Before the fix, half of these keys won the room (the claim sorted before the ban).
    for n in 10..30 {
        backdated_claim(n);
    }
}

fn backdated_claim(n: u64) {
    let host = identity(0);
    let successor = identity(n);
    let listener = identity(2);
    let (mut r, genesis) = room(&host, vec![successor.public()]);
    r.author(&listener, EventBody::RaiseHand, 2_000).unwrap();
    r.author(
        &host,
        EventBody::Ban {
            who: successor.public(),
        },
        3_000,
    )
    .unwrap();
    let before = r.state().clone();

    let claim = forge(&r, &successor, vec![genesis.hash()], EventBody::ClaimHost);
    assert_eq!(r.insert(claim.clone()), Insert::New { released: 0 });
    assert_eq!(r.void_reason(&claim.hash()), Some(Void::Revoked));
    assert_eq!(r.state(), &before);
    assert_eq!(r.state().host, host.public());

    // Claiming on top of the ban is refused in the order: the author is banned.
    let late = forge(&r, &successor, r.heads(), EventBody::ClaimHost);
    assert_eq!(r.insert(late.clone()), Insert::New { released: 0 });
    assert_eq!(r.refusal(&late.hash()), Some(&Refusal::AuthorBanned));
    assert_eq!(r.state().role(&successor.public()), Role::Banned);
    assert_eq!(r.next_host(|_| true), None);

    let mut other = replica(&r);
    for (e, _) in r.events().skip(1).collect::<Vec<_>>().into_iter().rev() {
        other.insert(e.clone());
    }
    assert_eq!(other.state(), r.state());
}

#[test]
fn a_removed_successor_cannot_claim() {
    let host = identity(0);
    let successor = identity(1);
    let (mut r, genesis) = room(&host, vec![successor.public()]);
    r.author(
        &host,
        EventBody::RemoveSuccessor {
            who: successor.public(),
        },
        2_000,
    )
    .unwrap();
    assert!(r.state().successors.is_empty());
    // Concurrent with the removal: void. After it: refused.
    let concurrent = forge(&r, &successor, vec![genesis.hash()], EventBody::ClaimHost);
    r.insert(concurrent.clone());
    assert!(r.void_reason(&concurrent.hash()).is_some());
    let err = r
        .author(&successor, EventBody::ClaimHost, 3_000)
        .unwrap_err();
    assert_eq!(err.to_string(), Refusal::NotSuccessor.to_string());
    assert_eq!(r.state().host, host.public());
    // Only the host may remove successors.
    let err = r
        .author(
            &successor,
            EventBody::RemoveSuccessor {
                who: successor.public(),
            },
            3_100,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), Refusal::NotHost.to_string());
}
