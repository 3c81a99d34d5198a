//! A moderator is demoted, then banned, by the host. Later they sign a ban of someone with
//! parents from before their demotion (a backdated ban). Revocation wins: the ban is void on
//! every replica, whatever order the events arrive in.

mod common;

use common::{every_order_reaches, forge, identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Refusal, Role, Void};

#[test]
fn backdated_ban_by_an_ex_moderator_is_void() {
    let host = identity(0);
    let m = identity(1);
    let victim = identity(2);
    let other = identity(3);
    let (mut r, _) = room(&host, vec![]);
    let promote = r
        .author(&host, EventBody::Promote { who: m.public() }, 2_000)
        .unwrap();
    // A non-host event between the promotion and the demotion: in the old order it let the
    // backdated ban sort before the demotion.
    r.author(&other, EventBody::RaiseHand, 2_100).unwrap();
    r.author(&victim, EventBody::RaiseHand, 2_200).unwrap();
    r.author(&host, EventBody::Demote { who: m.public() }, 3_000)
        .unwrap();
    r.author(&host, EventBody::Ban { who: m.public() }, 3_100)
        .unwrap();
    let before = r.state().clone();

    let backdated = forge(
        &r,
        &m,
        vec![promote.hash()],
        EventBody::Ban {
            who: victim.public(),
        },
    );
    // Admitted (a moderator had the standing when they signed it), but void.
    assert_eq!(r.insert(backdated.clone()), Insert::New { released: 0 });
    assert_eq!(r.void_reason(&backdated.hash()), Some(Void::Revoked));
    assert_eq!(
        r.refusal(&backdated.hash()),
        Some(&Refusal::Void(Void::Revoked))
    );
    assert_eq!(r.state(), &before);
    assert_eq!(r.state().role(&victim.public()), Role::Listener);

    // Every delivery order agrees, including the backdated ban arriving first.
    every_order_reaches(&r, &before, 20);
    let log: Vec<_> = r.events().skip(1).map(|(e, _)| e.clone()).collect();
    // A replica that has the ban before the demotion applies it, then undoes it.
    let mut first = replica(&r);
    for e in &log {
        first.insert(e.clone());
        if e.hash() == promote.hash() {
            first.insert(backdated.clone());
            assert_eq!(
                first.state().role(&victim.public()),
                Role::Banned,
                "not yet revoked here"
            );
        }
    }
    assert_eq!(first.state(), &before, "the revocation undoes the ban");
}
