//! A late joiner starts from the genesis (from a ticket's room id) and pulls the whole log, page
//! by page, from a member's answers to its heads; it ends with the same state and heads.

mod common;

use common::{identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Room};

#[test]
fn late_joiner_syncs_the_whole_log_in_pages() {
    let host = identity(0);
    let users: Vec<_> = (1..=20).map(identity).collect();
    let (mut r, _) = room(&host, vec![]);
    for (i, u) in users.iter().enumerate() {
        let t = 2_000 + i as u64;
        r.author(u, EventBody::RaiseHand, t).unwrap();
        r.author(&host, EventBody::InviteSpeaker { who: u.public() }, t)
            .unwrap();
        r.author(u, EventBody::AcceptInvite, t).unwrap();
        if i % 3 == 0 {
            r.author(&host, EventBody::Mute { who: u.public() }, t)
                .unwrap();
        }
    }
    assert!(r.len() > 60);

    // The joiner knows only the room id; the member's first page starts with the genesis.
    let first = r.missing_for(&[], 1);
    assert_eq!(first[0].hash(), r.genesis().hash());
    let mut joiner = Room::from_genesis_wire(r.id(), first[0].wire()).unwrap();
    let mut rounds = 0;
    loop {
        let page: Vec<_> = r
            .missing_for(&joiner.heads(), 16)
            .into_iter()
            .cloned()
            .collect();
        if page.is_empty() {
            break;
        }
        for e in page {
            assert!(matches!(joiner.insert_wire(e.wire()), Insert::New { .. }));
        }
        rounds += 1;
        assert!(rounds < 100, "sync must terminate");
    }
    assert_eq!(joiner.state(), r.state());
    assert_eq!(joiner.heads(), r.heads());
    assert_eq!(joiner.len(), r.len());
    assert!(rounds >= r.len() / 16, "paged");

    // Nothing is missing in the other direction either.
    assert!(joiner.missing_for(&r.heads(), 100).is_empty());
    // A replica of another room refuses this genesis.
    let other_host = identity(99);
    let (other, _) = room(&other_host, vec![]);
    assert!(Room::from_genesis_wire(other.id(), r.genesis().wire()).is_err());
    let _ = replica(&r);
}

#[test]
fn events_arriving_before_their_parents_wait_then_apply() {
    let host = identity(0);
    let u = identity(1);
    let (mut r, _) = room(&host, vec![]);
    let e1 = r.author(&u, EventBody::RaiseHand, 2_000).unwrap();
    let e2 = r
        .author(&host, EventBody::InviteSpeaker { who: u.public() }, 3_000)
        .unwrap();
    let e3 = r.author(&u, EventBody::AcceptInvite, 4_000).unwrap();
    let mut j = replica(&r);
    // e3 names the invitation and its author's previous event, e1.
    assert!(
        matches!(j.insert(e3.clone()), Insert::Pending { missing } if missing.contains(&e2.hash()))
    );
    assert_eq!(j.insert(e3.clone()), Insert::Known);
    assert_eq!(
        j.insert(e2.clone()),
        Insert::Pending {
            missing: vec![e1.hash()]
        }
    );
    assert_eq!(j.pending_len(), 2);
    assert_eq!(j.insert(e1), Insert::New { released: 2 });
    assert_eq!(j.pending_len(), 0);
    assert_eq!(j.state(), r.state());
}
