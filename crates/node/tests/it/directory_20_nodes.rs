//! The directory across 20 nodes with no mDNS: every node bootstraps through one node only.
//!
//! - A room hosted on one of them appears in every node's `rooms()` within 5 s; after the host
//!   ends it (EndRoom), the ended announcement removes it from every directory.
//! - A second room, whose host's node dies without a word (it runs on a runtime of its own,
//!   which the test drops), expires from every other directory once its last announcement's
//!   lifetime (three announce intervals) is over.

use std::time::{Duration, Instant};

use crate::common::*;
use anyhow::Result;
use ruang_net::Transport;
use ruang_node::NodeHandle;
use ruang_proto::room::EventBody;

const NODES: usize = 20;
/// The test nodes announce every 2 s (see `common::node_with`).
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_reach_every_directory_and_leave_it_when_ended_or_expired() -> Result<()> {
    init_tracing();
    let boot = node("boot").await?;
    let boot_addr = addr_of(&boot, "/quic-v1/").await?;
    // Node 1 lives on a runtime of its own, so the test can kill it without any goodbye.
    let doomed_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let a = boot_addr.clone();
    let doomed = doomed_rt
        .spawn(
            async move { node_with("doomed", Transport::QuicOnly, move |b| b.bootstrap(a)).await },
        )
        .await??;
    let mut all = vec![boot, doomed];
    for i in 2..NODES {
        let a = boot_addr.clone();
        all.push(
            node_with(&format!("n{i}"), Transport::QuicOnly, move |b| {
                b.bootstrap(a)
            })
            .await?,
        );
    }
    // Every node is connected to something before the rooms are announced.
    for (i, n) in all.iter().enumerate() {
        eventually(SOON, &format!("node {i} has a peer"), || async {
            n.status().await.is_ok_and(|s| s.peers > 0)
        })
        .await?;
    }

    // The host is the last node spawned: a leaf that knows only the bootstrap node.
    let host = &all[NODES - 1];
    let started = Instant::now();
    let id = host.host(room("directory test")).await?.room;
    let doomed_id = all[1].host(room("doomed")).await?.room;
    let seen_after = poll_all(&all, Duration::from_secs(5), started, |rooms| {
        [&id, &doomed_id]
            .iter()
            .all(|id| rooms.iter().any(|l| &&l.room_id == id))
    })
    .await;
    assert!(
        seen_after.iter().all(Option::is_some),
        "not listed everywhere within 5 s: {seen_after:?}"
    );
    eprintln!(
        "both rooms listed on all {NODES} nodes; slowest after {:?}",
        slowest(&seen_after)
    );
    let listing = all[0]
        .rooms()
        .await?
        .into_iter()
        .find(|l| l.room_id == id)
        .expect("listed");
    assert_eq!(listing.title, "directory test");
    assert_eq!(listing.host_name, format!("n{}", NODES - 1));

    // Kill the doomed room's host, and end the other room.
    let crashed = Instant::now();
    doomed_rt.shutdown_background();
    let living: Vec<NodeHandle> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, n)| n.clone())
        .collect();
    let ended = Instant::now();
    host.act(EventBody::EndRoom).await?;
    let gone_after = poll_all(&living, Duration::from_secs(5), ended, |rooms| {
        rooms.iter().all(|l| l.room_id != id)
    })
    .await;
    assert!(
        gone_after.iter().all(Option::is_some),
        "still listed somewhere 5 s after EndRoom: {gone_after:?}"
    );
    eprintln!(
        "ended room gone from every node; slowest after {:?}",
        slowest(&gone_after)
    );

    // The dead host's last announcement lives three intervals from when it was issued, which
    // was at most one interval (plus a 200 ms timer tick) before the crash; allow 1.5 s more
    // for this loop to get round 19 nodes on a loaded machine. Measured: 5.4–6.0 s.
    let bound = 3 * ANNOUNCE_INTERVAL + Duration::from_millis(1_500);
    let expired_after = poll_all(&living, bound, crashed, |rooms| {
        rooms.iter().all(|l| l.room_id != doomed_id)
    })
    .await;
    assert!(
        expired_after.iter().all(Option::is_some),
        "the dead host's room is still listed {bound:?} after the crash: {expired_after:?}"
    );
    eprintln!(
        "dead host's room expired everywhere; slowest after {:?}",
        slowest(&expired_after)
    );

    // And the ended room stays gone (a replayed or late announcement cannot relist it).
    for n in &living {
        assert!(n.rooms().await?.iter().all(|l| l.room_id != id));
    }
    drop(all);
    shutdown_all(&living.iter().collect::<Vec<_>>()).await;
    Ok(())
}

fn slowest(when: &[Option<Duration>]) -> Duration {
    when.iter().flatten().max().copied().unwrap_or_default()
}

/// Polls every node's `rooms()` every 50 ms until `done` holds for all of them or `within`
/// passes; returns, per node, how long after `since` it first held.
async fn poll_all(
    nodes: &[NodeHandle],
    within: Duration,
    since: Instant,
    done: impl Fn(&[ruang_node::Listing]) -> bool,
) -> Vec<Option<Duration>> {
    let mut when = vec![None; nodes.len()];
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline && when.iter().any(Option::is_none) {
        for (i, n) in nodes.iter().enumerate() {
            if when[i].is_none() && n.rooms().await.is_ok_and(|r| done(&r)) {
                when[i] = Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    when
}
