//! A moderator tries to ban the host (and another moderator): refused when authored, and a
//! forged event doing the same is stored (a moderator has the standing to sign bans) but has no
//! effect on any replica.

mod common;

use common::{forge, identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Refusal, Reject, Role};

#[test]
fn moderator_cannot_ban_the_host_or_another_moderator() {
    let host = identity(0);
    let m1 = identity(1);
    let m2 = identity(2);
    let (mut r, _) = room(&host, vec![]);
    r.author(&host, EventBody::Promote { who: m1.public() }, 2_000)
        .unwrap();
    r.author(&host, EventBody::Promote { who: m2.public() }, 2_100)
        .unwrap();

    let err = r
        .author(&m1, EventBody::Ban { who: host.public() }, 3_000)
        .unwrap_err();
    assert_eq!(err.to_string(), Refusal::TargetIsHost.to_string());
    let err = r
        .author(&m1, EventBody::Ban { who: m2.public() }, 3_000)
        .unwrap_err();
    assert_eq!(err.to_string(), Refusal::TargetIsModerator.to_string());
    let err = r
        .author(&m1, EventBody::Mute { who: host.public() }, 3_000)
        .unwrap_err();
    assert_eq!(err.to_string(), Refusal::TargetIsHost.to_string());

    // A forged event (signed correctly by m1, but not allowed) changes nothing.
    let before = r.state().clone();
    let forged = forge(&r, &m1, r.heads(), EventBody::Ban { who: host.public() });
    assert_eq!(r.insert(forged.clone()), Insert::New { released: 0 });
    assert_eq!(r.refusal(&forged.hash()), Some(&Refusal::TargetIsHost));
    assert_eq!(r.state(), &before);
    let mut other = replica(&r);
    for (e, _) in r.events().skip(1) {
        other.insert(e.clone());
    }
    assert_eq!(other.refusal(&forged.hash()), Some(&Refusal::TargetIsHost));
    assert_eq!(other.state().role(&host.public()), Role::Host);

    // Someone who was never a moderator cannot even sign one: rejected by every replica.
    let outsider = identity(7);
    let forged = forge(
        &r,
        &outsider,
        r.heads(),
        EventBody::Ban { who: m1.public() },
    );
    assert_eq!(
        other.insert(forged),
        Insert::Rejected(Reject::Unauthorized(Refusal::NotModerator))
    );
}

#[test]
fn the_host_can_ban_a_moderator() {
    let host = identity(0);
    let m1 = identity(1);
    let (mut r, _) = room(&host, vec![]);
    r.author(&host, EventBody::Promote { who: m1.public() }, 2_000)
        .unwrap();
    r.author(&host, EventBody::Ban { who: m1.public() }, 3_000)
        .unwrap();
    assert_eq!(r.state().role(&m1.public()), Role::Banned);
    assert!(!r.state().moderators.contains(&m1.public()));
}
