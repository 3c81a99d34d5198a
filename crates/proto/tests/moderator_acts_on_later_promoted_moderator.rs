//! A moderator signs a ban of someone with parents from before that person was promoted: a
//! moderator may not act on a moderator, and the promotion is concurrent with the ban, so the
//! ban is void.

mod common;

use common::{every_order_reaches, forge, identity, room};
use ruang_proto::room::{EventBody, Insert, Role, Void};

#[test]
fn a_ban_concurrent_with_the_targets_promotion_is_void() {
    let host = identity(0);
    let m1 = identity(1);
    let m2 = identity(2);
    let noise = identity(3);
    let (mut r, _) = room(&host, vec![]);
    let p1 = r
        .author(&host, EventBody::Promote { who: m1.public() }, 2_000)
        .unwrap();
    r.author(&noise, EventBody::RaiseHand, 2_100).unwrap();
    r.author(&m2, EventBody::RaiseHand, 2_150).unwrap();
    r.author(&host, EventBody::Promote { who: m2.public() }, 2_200)
        .unwrap();
    let before = r.state().clone();

    let ban = forge(
        &r,
        &m1,
        vec![p1.hash()],
        EventBody::Ban { who: m2.public() },
    );
    assert_eq!(r.insert(ban.clone()), Insert::New { released: 0 });
    assert_eq!(r.void_reason(&ban.hash()), Some(Void::TargetRaised));
    assert_eq!(r.state(), &before);
    assert_eq!(r.state().role(&m2.public()), Role::Moderator);

    every_order_reaches(&r, &before, 20);
}
