//! The host hands the room to someone else, then signs `EndRoom` with parents from before the
//! hand-off. That is a second branch of the old host's own chain: the end is void, the hand-off
//! stands.

mod common;

use common::{forge_raw, identity, replica, room};
use ruang_proto::room::{EventBody, Insert, Void};

#[test]
fn backdated_end_room_by_an_old_host_is_void() {
    let host = identity(0);
    let heir = identity(1);
    let listener = identity(2);
    let (mut r, genesis) = room(&host, vec![]);
    r.author(&listener, EventBody::RaiseHand, 2_000).unwrap();
    let invite = r
        .author(
            &host,
            EventBody::InviteSpeaker {
                who: listener.public(),
            },
            2_100,
        )
        .unwrap();
    r.author(&host, EventBody::HandOff { to: heir.public() }, 3_000)
        .unwrap();
    r.author(
        &heir,
        EventBody::UpdateInfo(ruang_proto::room::Info {
            title: "new host".into(),
            ..r.state().info.clone()
        }),
        3_200,
    )
    .unwrap();
    let before = r.state().clone();
    assert_eq!(before.host, heir.public());

    for parents in [vec![invite.hash()], vec![genesis.hash()]] {
        let end = forge_raw(&r, &host, parents, EventBody::EndRoom);
        assert_eq!(r.insert(end.clone()), Insert::New { released: 0 });
        assert_eq!(r.void_reason(&end.hash()), Some(Void::Forked));
        assert!(!r.state().ended);
        assert_eq!(r.state(), &before);
    }

    // A replica that gets the backdated ends first agrees once it has the rest.
    let log: Vec<_> = r.events().skip(1).map(|(e, _)| e.clone()).collect();
    let mut other = replica(&r);
    for e in log.iter().rev() {
        other.insert(e.clone());
    }
    assert_eq!(other.pending_len(), 0);
    assert_eq!(other.state(), &before);
}
