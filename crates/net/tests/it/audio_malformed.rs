//! A peer that does not speak `/ruang/audio/1` properly: an oversized header or frame length
//! closes its stream and is counted; well-formed frames before it still arrive. The bad peer
//! is a bare libp2p swarm (memory transport) writing raw bytes.

use std::time::Duration;

use crate::common::*;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{SwarmBuilder, futures::StreamExt, noise, yamux};
use ruang_net::{AUDIO_PROTOCOL, Event, Transport, limits};

/// A swarm that speaks only libp2p-stream, dials `target` and is driven in a background task.
async fn raw_peer(
    target: libp2p::Multiaddr,
) -> anyhow::Result<(libp2p::PeerId, libp2p_stream::Control)> {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            use libp2p::core::{Transport as _, transport::MemoryTransport, upgrade::Version};
            let noise = noise::Config::new(key)
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default()),
            )
        })?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    let id = *swarm.local_peer_id();
    let control = swarm.behaviour().new_control();
    swarm.dial(target)?;
    tokio::spawn(async move {
        // Bounded: the test ends long before.
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    });
    Ok((id, control))
}

async fn open(
    control: &mut libp2p_stream::Control,
    target: libp2p::PeerId,
) -> anyhow::Result<libp2p::Stream> {
    Ok(tokio::time::timeout(SOON, control.open_stream(target, AUDIO_PROTOCOL)).await??)
}

/// Waits until the stream is closed by the other side (EOF or reset on read).
async fn closed_by_peer(stream: &mut libp2p::Stream) -> anyhow::Result<()> {
    let mut buf = [0u8; 16];
    loop {
        match tokio::time::timeout(SOON, stream.read(&mut buf)).await? {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_are_closed_and_counted() -> anyhow::Result<()> {
    init_tracing();
    let mut b = node(config(Transport::Memory)).await?;
    let (bad, mut control) = raw_peer(addr_of(&b.client, None).await?).await?;
    wait_for(&mut b.events, SOON, |e| match e {
        Event::PeerConnected { peer, .. } if peer == bad => Some(()),
        _ => None,
    })
    .await?;

    // 1. A good header and frame, then a frame length over the bound.
    let mut s1 = open(&mut control, b.id()).await?;
    let mut wire = vec![0, 2, b'o', b'k', 0, 3, b'a', b'b', b'c'];
    wire.extend_from_slice(&((limits::MAX_AUDIO_FRAME_LEN + 1) as u16).to_be_bytes());
    wire.extend_from_slice(&[0u8; 64]);
    s1.write_all(&wire).await?;
    s1.flush().await?;
    let (peer, header) = wait_for(&mut b.events, SOON, |e| match e {
        Event::AudioStreamOpened { peer, header } => Some((peer, header)),
        _ => None,
    })
    .await?;
    assert_eq!((peer, &header[..]), (bad, &b"ok"[..]));
    let f = tokio::time::timeout(SOON, b.audio.recv())
        .await?
        .expect("inbox open");
    assert_eq!(&f.frame[..], b"abc");
    wait_for(&mut b.events, SOON, |e| match e {
        Event::AudioStreamClosed { peer, .. } if peer == bad => Some(()),
        _ => None,
    })
    .await?;
    closed_by_peer(&mut s1).await?;
    assert_eq!(b.audio.stats().malformed, 1);

    // 2. A header longer than allowed: closed before any event.
    let mut s2 = open(&mut control, b.id()).await?;
    s2.write_all(&((limits::MAX_AUDIO_HEADER_LEN + 1) as u16).to_be_bytes())
        .await?;
    s2.flush().await?;
    closed_by_peer(&mut s2).await?;
    eventually(SOON, "second malformed stream counted", || async {
        b.audio.stats().malformed == 2
    })
    .await?;

    // 3. A zero-length frame.
    let mut s3 = open(&mut control, b.id()).await?;
    s3.write_all(&[0, 0, 0, 0]).await?;
    s3.flush().await?;
    closed_by_peer(&mut s3).await?;
    eventually(SOON, "third malformed stream counted", || async {
        b.audio.stats().malformed == 3
    })
    .await?;

    let stats = b.audio.stats();
    assert_eq!(stats.received, 1);
    assert_eq!(stats.open_streams, 0);
    b.client.shutdown().await;
    Ok(())
}
