//! Join by ticket syncs the whole log: a host and three members build a log of several hundred
//! events (more than one sync page) with hands, invitations, a promotion, a mute and a ban; a
//! node that joins afterwards by ticket ends up with exactly the host's view of the room.

use std::time::{Duration, Instant};

use crate::common::*;
use anyhow::Result;
use ruang_node::RoomView;
use ruang_node::wire::SYNC_PAGE_EVENTS;
use ruang_proto::room::EventBody;

/// The parts of a room view that come from the verified log (names and presence flags are
/// from presence heartbeats, which a late joiner learns separately).
fn log_view(v: &RoomView) -> impl PartialEq + std::fmt::Debug {
    let keys = |people: &[ruang_node::Person]| {
        people
            .iter()
            .map(|p| (p.key, p.role, p.muted))
            .collect::<Vec<_>>()
    };
    (
        (v.room_id, v.title.clone(), v.topic.clone(), v.ended),
        keys(&v.stage),
        keys(&v.hands),
        (
            keys(&v.invited),
            keys(&v.muted),
            keys(&v.banned),
            keys(&v.recording),
        ),
        v.log_len,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_syncs_the_full_log() -> Result<()> {
    init_tracing();
    let host = node("host").await?;
    let (a, b, c) = (node("a").await?, node("b").await?, node("c").await?);
    let joined = host.host(room("a long log")).await?;
    for m in [&a, &b, &c] {
        join(m, &joined.ticket).await?;
    }
    wait_present(&[&host, &a, &b, &c], 4).await?;

    // More events than one sync page: `a` raises and lowers its hand many times.
    let rounds = SYNC_PAGE_EVENTS / 2 + 20;
    for _ in 0..rounds {
        a.act(EventBody::RaiseHand).await?;
        a.act(EventBody::LowerHand).await?;
    }
    // A stage with every kind of role and mark on it.
    a.act(EventBody::RaiseHand).await?;
    bring_on_stage(&host, &a).await?;
    bring_on_stage(&host, &b).await?;
    host.act(EventBody::Promote { who: b.key() }).await?;
    host.act(EventBody::Mute { who: a.key() }).await?;
    c.act(EventBody::RaiseHand).await?;
    host.act(EventBody::Recording { on: true }).await?;
    host.act(EventBody::UpdateInfo(ruang_proto::room::Info {
        title: "renamed".into(),
        ..Default::default()
    }))
    .await?;
    // The ban comes from the moderator, not the host.
    let banned = ruang_proto::Identity::generate(&mut rand::rng()).public();
    eventually(SOON, "b knows it is a moderator", || async {
        b.status()
            .await
            .ok()
            .and_then(|s| s.room)
            .is_some_and(|r| r.my_role == ruang_proto::room::Role::Moderator)
    })
    .await?;
    b.act(EventBody::Ban { who: banned }).await?;

    // Everyone in the room converges first (gossip), so "the host's view" is well defined.
    let host_len = eventually_value(&host, |r| r.banned.len() == 1)
        .await?
        .log_len;
    assert!(
        host_len > SYNC_PAGE_EVENTS,
        "the log ({host_len} events) spans more than one sync page"
    );
    wait_state(&[&a, &b, &c], "has the whole log", |r| {
        r.log_len == host_len
    })
    .await?;

    let late = node("late").await?;
    let t0 = Instant::now();
    join(&late, &joined.ticket).await?;
    eprintln!("late joiner synced {host_len} events in {:?}", t0.elapsed());
    let late_view = late.status().await?.room.expect("in the room");
    let host_view = host.status().await?.room.expect("in the room");
    assert_eq!(log_view(&late_view), log_view(&host_view));
    assert_eq!(late_view.log_len, host_len);
    assert_eq!(late_view.title, "renamed");
    assert_eq!(late_view.muted[0].key, a.key());
    assert_eq!(late_view.muted.len(), 1);
    assert_eq!(late_view.banned[0].key, banned);
    assert_eq!(late_view.banned.len(), 1);
    assert_eq!(
        late_view.hands.iter().map(|p| p.key).collect::<Vec<_>>(),
        vec![c.key()]
    );
    assert_eq!(late_view.my_role, ruang_proto::room::Role::Listener);

    // And it stays in step: an event after the join reaches it by gossip.
    host.act(EventBody::Unmute { who: a.key() }).await?;
    wait_state(&[&late], "sees the unmute", |r| {
        r.muted.is_empty() && r.log_len == host_len + 1
    })
    .await?;
    shutdown_all(&[&host, &a, &b, &c, &late]).await;
    Ok(())
}

/// Waits until `node`'s room view satisfies `pred` and returns that view.
async fn eventually_value(
    node: &ruang_node::NodeHandle,
    pred: impl Fn(&RoomView) -> bool,
) -> Result<RoomView> {
    let deadline = tokio::time::Instant::now() + SOON;
    while tokio::time::Instant::now() < deadline {
        if let Some(r) = node.status().await?.room.filter(&pred) {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for the room state")
}
