//! Each transport on its own — TCP only, QUIC only, memory, WebSocket inside TLS — carries a
//! connection, gossip and audio.

use std::time::Duration;

use crate::common::*;
use anyhow::Context;
use bytes::Bytes;
use ruang_net::{Config, Event, Multiaddr, Transport, Verdict};

const TOPIC: &str = "ruang/test/transports";

async fn scenario(transport: Transport, expect_in_addr: &str) -> anyhow::Result<()> {
    scenario_between(config(transport), config(transport), expect_in_addr).await
}

/// A dials B: they connect, gossip both ways and A's audio reaches B.
async fn scenario_between(a: Config, b: Config, expect_in_addr: &str) -> anyhow::Result<()> {
    init_tracing();
    let a = node(a).await?;
    let mut b = node(b).await?;
    let addrs = b.client.listen_addrs().await?;
    assert!(
        !addrs.is_empty() && addrs.iter().all(|a| a.to_string().contains(expect_in_addr)),
        "B listens on {addrs:?}, all should have {expect_in_addr}"
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
    // A loaded machine may still drop a frame the link held too long (stale by design): every
    // frame it sent must arrive, once, and each frame is either sent or counted dropped.
    eventually(SOON, "the link's queue drained", || async {
        link.stats().queued == 0
    })
    .await?;
    let stats = link.stats();
    assert_eq!(stats.sent + stats.dropped, 50, "{stats:?}");
    assert!(stats.sent >= 45, "{stats:?}");
    let mut seen = Vec::with_capacity(50);
    for _ in 0..stats.sent {
        let f = tokio::time::timeout(SOON, b.audio.recv())
            .await?
            .expect("inbox open");
        assert_eq!(&f.header[..], b"hdr");
        seen.push(f.frame[0]);
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u64, stats.sent, "a frame arrived twice");
    assert!(seen.iter().all(|f| *f < 50));

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

/// A certificate for `localhost` and 127.0.0.1 and its authority: (chain, key, authority).
fn localhost_certificate() -> anyhow::Result<(String, String, String)> {
    let c = ruang_testkit::tls::certificate(&["localhost", "127.0.0.1"])?;
    Ok((c.cert, c.key, c.authority))
}

/// A TCP-only node listening on WebSocket inside TLS only, with the certificate of
/// [`localhost_certificate`].
fn tls_server(cert: &str, key: &str) -> anyhow::Result<Config> {
    let mut c = config(Transport::TcpOnly);
    c.listen = vec!["/ip4/127.0.0.1/tcp/0/tls/ws".parse()?];
    c.websocket_tls.serve_pem(cert.as_bytes(), key.as_bytes())?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_inside_tls() -> anyhow::Result<()> {
    let (cert, key, ca) = localhost_certificate()?;
    let mut dialler = config(Transport::QuicAndTcp);
    dialler.websocket_tls.trust_pem(ca.as_bytes())?;
    scenario_between(dialler, tls_server(&cert, &key)?, "/tls/ws").await
}

/// By DNS name (the TLS server name is the name, not the address it resolves to); refused by
/// a dialler that does not trust the certificate's authority; listening on `/tls/ws` without
/// a certificate is an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tls_checks_the_certificate() -> anyhow::Result<()> {
    init_tracing();
    let (cert, key, ca) = localhost_certificate()?;
    let server = node(tls_server(&cert, &key)?).await?;
    let bound = addr_of(&server.client, Some("/tls/ws")).await?;
    let port = bound
        .iter()
        .find_map(|p| match p {
            ruang_net::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .context("no TCP port")?;
    let by_name: Multiaddr =
        format!("/dns4/localhost/tcp/{port}/tls/ws/p2p/{}", server.id()).parse()?;

    let stranger = node(config(Transport::TcpOnly)).await?;
    let refused = stranger.client.dial(by_name.clone()).await;
    let Err(refused) = refused else {
        anyhow::bail!("a dialler that does not trust the authority connected");
    };
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "refused for another reason: {refused}"
    );

    let mut trusting = config(Transport::TcpOnly);
    trusting.websocket_tls.trust_pem(ca.as_bytes())?;
    let mut trusting = node(trusting).await?;
    trusting.client.dial(by_name).await?;
    let addr = wait_for(&mut trusting.events, SOON, |e| match e {
        Event::PeerConnected { peer, addr } if peer == server.id() => Some(addr),
        _ => None,
    })
    .await?;
    assert!(
        addr.to_string().contains("/tls/ws"),
        "connected over {addr}"
    );

    let mut no_cert = config(Transport::TcpOnly);
    no_cert.listen = vec!["/ip4/127.0.0.1/tcp/0/tls/ws".parse()?];
    let err = node(no_cert)
        .await
        .err()
        .context("listened without a certificate")?;
    assert!(err.to_string().contains("certificate"), "{err:#}");
    for n in [&server.client, &stranger.client, &trusting.client] {
        n.shutdown().await;
    }
    Ok(())
}
