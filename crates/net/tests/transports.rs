//! Each transport on its own — TCP only, QUIC only, memory — carries a connection, gossip and
//! audio.

mod common;

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use common::*;
use ruang_net::{Event, Transport, Verdict};

const TOPIC: &str = "ruang/test/transports";

async fn scenario(transport: Transport, expect_in_addr: &str) -> anyhow::Result<()> {
    init_tracing();
    let a = node(config(transport)).await?;
    let mut b = node(config(transport)).await?;
    let addrs = b.client.listen_addrs().await?;
    assert!(
        !addrs.is_empty() && addrs.iter().all(|a| a.to_string().contains(expect_in_addr)),
        "{transport:?} listens on {addrs:?}"
    );
    connect(&a.client, &b.client).await?;
    let connected = wait_for(&mut b.events, SOON, |e| match e {
        Event::PeerConnected { peer, addr } => Some((peer, addr)),
        _ => None,
    })
    .await?;
    assert_eq!(connected.0, a.id());
    assert!(a.client.connected_peers().await?.contains(&b.id()));

    // Gossip.
    a.client.subscribe(TOPIC).await?;
    b.client.subscribe(TOPIC).await?;
    wait_topic_peers(&a.client, TOPIC, 1).await?;
    a.client.publish(TOPIC, b"over the wire".to_vec()).await?;
    let (source, id) = wait_for(&mut b.events, SOON, |e| match e {
        Event::Gossip {
            source, id, data, ..
        } if data == b"over the wire" => Some((source, id)),
        _ => None,
    })
    .await?;
    b.client
        .report_validation(id, source, Verdict::Accept)
        .await?;

    // Audio.
    let link = a.client.open_audio(b.id(), b"hdr".to_vec());
    eventually(SOON, "audio link up", || async { link.stats().connected }).await?;
    // At the real frame rate: faster, a loaded machine lets the link's 8-frame queue overflow
    // (it drops the oldest by design).
    for i in 0..50u8 {
        link.push(Bytes::from(vec![i; 60]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A link stripes frames over several streams ("lanes"), so they may arrive out of order
    // (the jitter buffer reorders); each must arrive exactly once.
    let mut seen = Vec::with_capacity(50);
    for _ in 0..50u8 {
        let f = tokio::time::timeout(SOON, b.audio.recv())
            .await?
            .expect("inbox open");
        assert_eq!(&f.header[..], b"hdr");
        seen.push(f.frame[0]);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..50u8).collect::<Vec<_>>());
    assert_eq!(link.stats().sent, 50);

    a.client.shutdown().await;
    // Shutting down closes connections: B sees A leave.
    let gone = wait_for(&mut b.events, SOON, |e| match e {
        Event::PeerDisconnected { peer } => Some(peer),
        _ => None,
    })
    .await
    .context("B did not see A leave")?;
    assert_eq!(gone, a.id());
    b.client.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only() -> anyhow::Result<()> {
    scenario(Transport::TcpOnly, "/tcp/").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_only() -> anyhow::Result<()> {
    scenario(Transport::QuicOnly, "/quic-v1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() -> anyhow::Result<()> {
    scenario(Transport::Memory, "/memory/").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_tcp() -> anyhow::Result<()> {
    scenario(Transport::QuicAndTcp, "/ip4/127.0.0.1/").await
}
