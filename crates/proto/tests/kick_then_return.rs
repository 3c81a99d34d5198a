//! A kicked listener is out for the cool-down and may come back after it.

mod common;

use common::{identity, room};
use ruang_proto::room::{EventBody, KICK_COOLDOWN_MS, Role};

#[test]
fn kick_lasts_for_the_cool_down_only() {
    let host = identity(0);
    let guest = identity(1);
    let (mut r, _) = room(&host, vec![]);
    r.author(&guest, EventBody::RaiseHand, 2_000).unwrap();
    let kicked_at = 10_000;
    r.author(
        &host,
        EventBody::Kick {
            who: guest.public(),
        },
        kicked_at,
    )
    .unwrap();
    let state = r.state();
    assert!(state.hands.is_empty(), "a kick clears the hand");
    assert!(state.is_kicked(&guest.public(), kicked_at));
    assert!(state.is_kicked(&guest.public(), kicked_at + KICK_COOLDOWN_MS - 1));
    assert!(!state.is_kicked(&guest.public(), kicked_at + KICK_COOLDOWN_MS));
    assert!(!state.is_kicked(&host.public(), kicked_at));
    // Unlike a ban, a kick leaves no lasting role: back after the cool-down, they act again.
    assert_eq!(state.role(&guest.public()), Role::Listener);
    r.author(&guest, EventBody::RaiseHand, kicked_at + KICK_COOLDOWN_MS)
        .unwrap();
    assert_eq!(r.state().hands.to_vec(), vec![guest.public()]);
}
