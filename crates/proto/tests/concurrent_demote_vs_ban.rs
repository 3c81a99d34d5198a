//! A host demotes a moderator while, concurrently, that moderator bans someone. Whatever order
//! the two events arrive in, every replica orders the host's event first, so the ban (authored
//! by someone who is no longer a moderator at that point) has no effect.

mod common;

use common::{forge, identity, replica, room};
use ruang_proto::Identity;
use ruang_proto::room::{Changes, Event, EventBody, Insert, Role, Room};
use ruang_proto::signed::Verified;

/// A room of `host` in which `moderator` was promoted: the room and the promotion.
fn promoted(host: &Identity, moderator: &Identity) -> (Room, Verified<Event>) {
    let (mut origin, _) = room(host, vec![]);
    let promote = origin
        .author(
            host,
            EventBody::Promote {
                who: moderator.public(),
            },
            2_000,
        )
        .unwrap();
    (origin, promote)
}

/// The host's demotion of `moderator` and the moderator's ban of `victim`, both on the same
/// heads: neither author has seen the other's event.
fn demote_and_ban(
    origin: &Room,
    host: &Identity,
    moderator: &Identity,
    victim: &Identity,
) -> (Verified<Event>, Verified<Event>) {
    let heads = origin.heads();
    let demote = forge(
        origin,
        host,
        heads.clone(),
        EventBody::Demote {
            who: moderator.public(),
        },
    );
    let ban = forge(
        origin,
        moderator,
        heads,
        EventBody::Ban {
            who: victim.public(),
        },
    );
    (demote, ban)
}

#[test]
fn demote_wins_over_concurrent_ban_in_any_delivery_order() {
    let host = identity(0);
    let moderator = identity(1);
    let victim = identity(2);
    let (mut origin, promote) = promoted(&host, &moderator);
    let hand = origin.author(&victim, EventBody::RaiseHand, 2_500).unwrap();

    let (demote, ban) = demote_and_ban(&origin, &host, &moderator, &victim);

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

/// What each insert changed, as `take_changes` reports it: the ban when it lands first, its
/// undoing when the demotion that precedes it in the order arrives later, nothing for a ban
/// that never took effect, and a new host only when the host changes.
#[test]
fn changes_report_the_ban_and_its_undoing() {
    let host = identity(0);
    let moderator = identity(1);
    let victim = identity(2);
    let (origin, promote) = promoted(&host, &moderator);
    let (demote, ban) = demote_and_ban(&origin, &host, &moderator, &victim);

    // The ban first: it takes effect, then the demotion undoes it.
    let mut r = replica(&origin);
    r.insert(promote.clone());
    assert!(r.take_changes().state, "the promotion changed the state");
    assert_eq!(r.take_changes(), Changes::default(), "nothing since");
    assert_eq!(r.insert(ban.clone()), Insert::New { released: 0 });
    let changes = r.take_changes();
    assert_eq!(changes.banned, vec![victim.public()]);
    assert!(changes.unbanned.is_empty() && changes.previous_host.is_none());
    assert_eq!(r.insert(demote.clone()), Insert::New { released: 0 });
    let changes = r.take_changes();
    assert!(changes.state);
    assert_eq!(changes.unbanned, vec![victim.public()]);
    assert!(changes.banned.is_empty());

    // The demotion first: the ban changes nothing.
    let mut r = replica(&origin);
    r.insert(promote.clone());
    r.insert(demote.clone());
    r.take_changes();
    assert_eq!(r.insert(ban.clone()), Insert::New { released: 0 });
    assert_eq!(r.take_changes(), Changes::default());

    // A page of both at once: the ban and its undoing net out to no ban at all.
    let mut r = replica(&origin);
    for e in [&promote, &ban, &demote] {
        r.insert(e.clone());
    }
    let changes = r.take_changes();
    assert!(changes.state && changes.banned.is_empty() && changes.unbanned.is_empty());

    // A hand-off: the previous host is named.
    let mut r = replica(&origin);
    r.insert(promote);
    r.take_changes();
    r.author(
        &host,
        EventBody::HandOff {
            to: moderator.public(),
        },
        4_000,
    )
    .unwrap();
    let changes = r.take_changes();
    assert_eq!(changes.previous_host, Some(host.public()));
    assert_eq!(r.state().host, moderator.public());
}
