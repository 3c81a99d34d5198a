//! The directory across 20 nodes with no mDNS: every node bootstraps through one node only; a
//! room hosted on one of them appears in every node's `rooms()` within 5 s, and after the host
//! ends it (EndRoom) it leaves every node's directory.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use ruang_net::Transport;
use ruang_proto::room::EventBody;

const NODES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_reaches_every_directory_and_leaves_it_when_ended() -> Result<()> {
    init_tracing();
    let boot = node("boot").await?;
    let boot_addr = addr_of(&boot, "/quic-v1/").await?;
    let mut all = vec![boot];
    for i in 1..NODES {
        let a = boot_addr.clone();
        all.push(
            node_with(&format!("n{i}"), Transport::QuicOnly, move |b| {
                b.bootstrap(a)
            })
            .await?,
        );
    }
    // Every node is connected to something before the room is announced.
    for (i, n) in all.iter().enumerate() {
        eventually(SOON, &format!("node {i} has a peer"), || async {
            n.status().await.is_ok_and(|s| s.peers > 0)
        })
        .await?;
    }

    // The host is the last node spawned: a leaf that knows only the bootstrap node.
    let host = &all[NODES - 1];
    let started = Instant::now();
    let joined = host.host(room("directory test")).await?;
    let id = joined.room.to_hex();
    let seen_after = poll_all(&all, Duration::from_secs(5), started, |rooms| {
        rooms.iter().any(|l| l.room_id == id)
    })
    .await;
    assert!(
        seen_after.iter().all(Option::is_some),
        "not listed everywhere within 5 s: {seen_after:?}"
    );
    let slowest = seen_after
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    eprintln!("listed on all {NODES} nodes; slowest after {slowest:?}");
    let listing = all[0]
        .rooms()
        .await?
        .into_iter()
        .find(|l| l.room_id == id)
        .expect("listed");
    assert_eq!(listing.title, "directory test");
    assert_eq!(listing.host_name, format!("n{}", NODES - 1));

    // End the room: the ended announcement removes it everywhere.
    let ended = Instant::now();
    host.act(EventBody::EndRoom).await?;
    let gone_after = poll_all(&all, Duration::from_secs(10), ended, |rooms| {
        rooms.iter().all(|l| l.room_id != id)
    })
    .await;
    assert!(
        gone_after.iter().all(Option::is_some),
        "still listed somewhere 10 s after EndRoom: {gone_after:?}"
    );
    let slowest = gone_after
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    eprintln!("gone from all {NODES} nodes; slowest after {slowest:?}");
    // And it stays gone (a replayed or late announcement cannot relist it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &all {
        assert!(n.rooms().await?.iter().all(|l| l.room_id != id));
    }
    shutdown_all(&all.iter().collect::<Vec<_>>()).await;
    Ok(())
}

/// Polls every node's `rooms()` every 50 ms until `done` holds for all of them or `within`
/// passes; returns, per node, how long after `since` it first held.
async fn poll_all(
    nodes: &[ruang_node::NodeHandle],
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
