//! A banned user tries to raise a hand: refused, and a forged attempt is stored (anyone has the
//! standing to act on their own place) but has no effect; after an unban they may again.

mod common;

use common::{forge, identity, room};
use ruang_proto::room::{EventBody, Insert, Refusal};

#[test]
fn banned_user_cannot_raise_a_hand_until_unbanned() {
    let host = identity(0);
    let troll = identity(1);
    let (mut r, _) = room(&host, vec![]);
    r.author(&troll, EventBody::RaiseHand, 2_000).unwrap();
    r.author(
        &host,
        EventBody::Ban {
            who: troll.public(),
        },
        3_000,
    )
    .unwrap();
    assert!(r.state().hands.is_empty(), "a ban clears the raised hand");

    let err = r.author(&troll, EventBody::RaiseHand, 4_000).unwrap_err();
    assert_eq!(err.to_string(), Refusal::AuthorBanned.to_string());
    let forged = forge(&r, &troll, r.heads(), EventBody::RaiseHand);
    assert_eq!(r.insert(forged.clone()), Insert::New { released: 0 });
    assert_eq!(r.refusal(&forged.hash()), Some(&Refusal::AuthorBanned));
    assert!(r.state().hands.is_empty());
    // Nor can a banned user do anything else, e.g. claim to be recording.
    assert!(
        r.author(&troll, EventBody::Recording { on: true }, 4_100)
            .is_err()
    );

    r.author(
        &host,
        EventBody::Unban {
            who: troll.public(),
        },
        5_000,
    )
    .unwrap();
    r.author(&troll, EventBody::RaiseHand, 6_000).unwrap();
    assert_eq!(r.state().hands.to_vec(), vec![troll.public()]);
}
