//! A host demotes a moderator while, concurrently, that moderator bans someone. Whatever order
//! the two events arrive in, every replica orders the host's event first, so the ban (authored
//! by someone who is no longer a moderator at that point) has no effect.

mod common;

use common::{forge, identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Role};

#[test]
fn demote_wins_over_concurrent_ban_in_any_delivery_order() {
    let host = identity(0);
    let moderator = identity(1);
    let victim = identity(2);
    let (mut origin, _) = room(&host, vec![]);
    let promote = origin
        .author(
            &host,
            EventBody::Promote {
                who: moderator.public(),
            },
            2_000,
        )
        .unwrap();
    let hand = origin.author(&victim, EventBody::RaiseHand, 2_500).unwrap();

    // Both branches start from the same heads: neither author has seen the other's event.
    let heads = origin.heads();
    let demote = forge(
        &origin,
        &host,
        heads.clone(),
        EventBody::Demote {
            who: moderator.public(),
        },
    );
    let ban = forge(
        &origin,
        &moderator,
        heads,
        EventBody::Ban {
            who: victim.public(),
        },
    );

    let mut states = Vec::new();
    for order in [[&demote, &ban], [&ban, &demote]] {
        let mut r = replica(&origin);
        for e in [&promote, &hand] {
            assert_eq!(r.insert(e.clone()), Insert::New { released: 0 });
        }
        for e in order {
            // Each was allowed at its own causal point, so each is admitted.
            assert_eq!(r.insert(e.clone()), Insert::New { released: 0 });
        }
        let s = r.state().clone();
        assert_eq!(s.role(&moderator.public()), Role::Speaker, "demoted");
        assert_eq!(
            s.role(&victim.public()),
            Role::Listener,
            "the ban came after the demotion"
        );
        assert!(!s.banned.contains(&victim.public()));
        assert_eq!(s.hands.to_vec(), vec![victim.public()]);
        // The ban stays in the log (later events may name it as a parent) but is marked overridden.
        let overridden: Vec<_> = r
            .events()
            .filter(|(_, o)| o.is_some())
            .map(|(e, _)| e.body.name())
            .collect();
        assert_eq!(overridden, vec!["ban"]);
        states.push((s, r.heads()));
    }
    assert_eq!(states[0], states[1]);
}

#[test]
fn a_ban_before_the_demotion_in_causal_order_stands() {
    // If the host saw the ban before demoting, the ban is in the demotion's past and stands.
    let host = identity(0);
    let moderator = identity(1);
    let victim = identity(2);
    let (mut r, _) = room(&host, vec![]);
    r.author(
        &host,
        EventBody::Promote {
            who: moderator.public(),
        },
        2_000,
    )
    .unwrap();
    r.author(
        &moderator,
        EventBody::Ban {
            who: victim.public(),
        },
        3_000,
    )
    .unwrap();
    r.author(
        &host,
        EventBody::Demote {
            who: moderator.public(),
        },
        4_000,
    )
    .unwrap();
    assert!(r.state().banned.contains(&victim.public()));
    assert_eq!(r.state().role(&moderator.public()), Role::Speaker);
}
