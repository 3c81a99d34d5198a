//! The host goes away; the first present successor named in the genesis claims the host role.
//! Nobody else can, and the old host, if it comes back, is a moderator.

mod common;

use common::{identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Refusal, Role};

#[test]
fn first_present_successor_takes_over() {
    let host = identity(0);
    let s1 = identity(1);
    let s2 = identity(2);
    let listener = identity(3);
    let (mut r, _) = room(&host, vec![s1.public(), s2.public()]);

    // Who should take over depends on who is present: s1 is gone, s2 is here.
    assert_eq!(r.next_host(|k| *k == s2.public()), Some(s2.public()));
    assert_eq!(
        r.next_host(|k| *k == s1.public() || *k == s2.public()),
        Some(s1.public())
    );
    assert_eq!(r.next_host(|_| false), None);

    // A non-successor cannot claim.
    let err = r
        .author(&listener, EventBody::ClaimHost, 2_000)
        .unwrap_err();
    assert_eq!(err.to_string(), Refusal::NotSuccessor.to_string());

    let claim = r.author(&s2, EventBody::ClaimHost, 3_000).unwrap();
    assert_eq!(r.state().host, s2.public());
    assert_eq!(r.state().role(&host.public()), Role::Moderator);
    // The new host hosts: it can end the room; the old host no longer can.
    assert!(r.author(&host, EventBody::EndRoom, 4_000).is_err());

    // Another replica that receives the claim agrees.
    let mut other = replica(&r);
    assert_eq!(other.insert(claim), Insert::New { released: 0 });
    assert_eq!(other.state().host, s2.public());

    r.author(&s2, EventBody::EndRoom, 5_000).unwrap();
    assert!(r.state().ended);
    // EndRoom is final: nothing after it is allowed, not even by the host.
    assert_eq!(
        r.author(&s2, EventBody::RaiseHand, 6_000)
            .unwrap_err()
            .to_string(),
        Refusal::Ended.to_string()
    );
}

#[test]
fn hand_off_moves_the_host_role() {
    let host = identity(0);
    let heir = identity(1);
    let (mut r, _) = room(&host, vec![]);
    r.author(&host, EventBody::HandOff { to: heir.public() }, 2_000)
        .unwrap();
    assert_eq!(r.state().host, heir.public());
    assert_eq!(r.state().role(&host.public()), Role::Moderator);
    r.author(&heir, EventBody::Demote { who: host.public() }, 3_000)
        .unwrap();
    assert_eq!(r.state().role(&host.public()), Role::Speaker);
}
