//! Succession in order: a later successor's claim concurrent with an earlier successor's claim is
//! void; a claim concurrent with the host's own activity is void (the host was alive); a claim
//! made after the host's last event stands.

mod common;

use common::{forge, history, identity, replica, room};
use ruang_proto::room::{EventBody, Role, Void};

#[test]
fn the_earlier_successor_wins_concurrent_claims() {
    let host = identity(0);
    let s1 = identity(1);
    let s2 = identity(2);
    let (mut r, _) = room(&host, vec![s1.public(), s2.public()]);
    r.author(&s1, EventBody::RaiseHand, 2_000).unwrap();
    let heads = r.heads();
    let c2 = forge(&r, &s2, heads.clone(), EventBody::ClaimHost);
    let c1 = forge(&r, &s1, heads, EventBody::ClaimHost);
    let log: Vec<_> = r.events().skip(1).map(|(e, _)| e.clone()).collect();
    for seed in 0..10 {
        let mut delivery = log.clone();
        delivery.push(c1.clone());
        delivery.push(c2.clone());
        history::shuffle(&mut delivery, seed);
        let mut other = replica(&r);
        for e in delivery {
            other.insert(e);
        }
        assert_eq!(other.state().host, s1.public(), "delivery order {seed}");
        assert_eq!(other.void_reason(&c2.hash()), Some(Void::ClaimContested));
        assert_eq!(other.void_reason(&c1.hash()), None);
        assert_eq!(other.state().role(&host.public()), Role::Moderator);
    }
}

#[test]
fn a_claim_while_the_host_is_active_is_undone() {
    let host = identity(0);
    let s1 = identity(1);
    let listener = identity(2);
    let (mut r, _) = room(&host, vec![s1.public()]);
    r.author(&listener, EventBody::RaiseHand, 2_000).unwrap();
    // The successor lost sight of the host and claims; the host, partitioned, keeps moderating.
    let claim = forge(&r, &s1, r.heads(), EventBody::ClaimHost);
    let mut s1_view = replica(&r);
    for (e, _) in r.events().skip(1) {
        s1_view.insert(e.clone());
    }
    s1_view.insert(claim.clone());
    assert_eq!(s1_view.state().host, s1.public(), "provisionally the host");
    let invite = r
        .author(
            &host,
            EventBody::InviteSpeaker {
                who: listener.public(),
            },
            3_000,
        )
        .unwrap();
    // The partition heals: both sides see both.
    s1_view.insert(invite.clone());
    r.insert(claim.clone());
    for view in [&r, &s1_view] {
        assert_eq!(view.state().host, host.public());
        assert_eq!(view.void_reason(&claim.hash()), Some(Void::ClaimContested));
        assert!(view.state().invited.contains(&listener.public()));
    }
    // Later, with the host gone, the successor claims again on top of everything: it stands.
    let again = s1_view.author(&s1, EventBody::ClaimHost, 9_000).unwrap();
    r.insert(again);
    assert_eq!(r.state().host, s1.public());
    assert_eq!(r.state(), s1_view.state());
}
