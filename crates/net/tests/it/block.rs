//! Blocking: after A blocks B, B's connection is closed, B's redials get no usable connection
//! (A never admits it), A cannot reach B either; unblocking restores it.

use std::time::Duration;

use crate::common::*;
use ruang_net::{Event, NetError, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_unblock() -> anyhow::Result<()> {
    init_tracing();
    let mut a = node(config(Transport::QuicAndTcp)).await?;
    let mut b = node(config(Transport::QuicAndTcp)).await?;
    let a_addr = addr_of(&a.client, Some("quic-v1")).await?;
    b.client.dial(a_addr.clone()).await?;
    wait_for(&mut a.events, SOON, |e| {
        matches!(e, Event::PeerConnected { .. }).then_some(())
    })
    .await?;

    a.client.block(b.id()).await?;
    let gone = wait_for(&mut b.events, SOON, |e| match e {
        Event::PeerDisconnected { peer } => Some(peer),
        _ => None,
    })
    .await?;
    assert_eq!(gone, a.id());
    // A's side of the close is reported by A's own swarm, which may come after B saw it:
    // wait for A's event, not for B's (asking A at once failed under load in CI).
    wait_for(&mut a.events, SOON, |e| match e {
        Event::PeerDisconnected { peer } if peer == b.id() => Some(()),
        _ => None,
    })
    .await?;
    assert!(!a.client.connected_peers().await?.contains(&b.id()));

    // B tries again, over both transports. The handshake may complete on B's side, but A
    // refuses the connection at once: B never gets a usable one.
    let tcp_addr = addr_of(&a.client, Some("/tcp/")).await?;
    for addr in [a_addr.clone(), tcp_addr] {
        let _ = b.client.dial(addr).await;
        let sync = b.client.sync_request(a.id(), b"hi".to_vec()).await;
        assert!(sync.is_err(), "a blocked peer got an answer: {sync:?}");
    }
    // A never admitted B.
    let admitted = wait_for(&mut a.events, Duration::from_secs(1), |e| match e {
        Event::PeerConnected { peer, .. } if peer == b.id() => Some(()),
        _ => None,
    })
    .await;
    assert!(admitted.is_err(), "A admitted a blocked peer");
    assert!(!a.client.connected_peers().await?.contains(&b.id()));

    // A's own attempts to reach B are refused locally.
    let link = a.client.open_audio(b.id(), vec![]);
    let outbound = a
        .client
        .dial(addr_of(&b.client, Some("quic-v1")).await?)
        .await;
    assert!(
        matches!(outbound, Err(NetError::Dial { .. })),
        "{outbound:?}"
    );
    eventually(SOON, "audio link refused", || async {
        link.stats().open_failures >= 1
    })
    .await?;
    assert!(!link.stats().connected);
    drop(link);

    // Unblock: B gets in again.
    a.client.unblock(b.id()).await?;
    b.client.dial(a_addr).await?;
    wait_for(&mut a.events, SOON, |e| match e {
        Event::PeerConnected { peer, .. } if peer == b.id() => Some(()),
        _ => None,
    })
    .await?;
    a.client.shutdown().await;
    b.client.shutdown().await;
    Ok(())
}
