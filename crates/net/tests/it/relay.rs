//! Circuit relay: R serves as a relay on loopback; L has no listen address of its own and
//! takes a reservation on R; S, with no direct address of L, dials L's circuit address and an
//! AudioLink S→L delivers frames through R.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use ruang_net::{Event, NetError, Transport};

/// A relay node on loopback, and its QUIC address.
async fn relay() -> anyhow::Result<(Node, ruang_net::Multiaddr)> {
    let mut relay_config = config(Transport::QuicAndTcp);
    relay_config.relay_server = true;
    let r = node(relay_config).await?;
    let addr = addr_of(&r.client, Some("quic-v1")).await?;
    Ok((r, addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_through_a_relay() -> anyhow::Result<()> {
    init_tracing();
    let (r, relay_addr) = relay().await?;

    // L and S listen on nothing: the only way to L is through R, and DCUtR has no address of
    // either to punch to, so the circuit stays the path.
    // Neither looks for relays by itself (S would reserve on R once connected to it).
    let mut l_config = config(Transport::QuicAndTcp);
    l_config.listen.clear();
    l_config.auto_relays = 0;
    let mut l = node(l_config).await?;
    let mut s_config = config(Transport::QuicAndTcp);
    s_config.listen.clear();
    s_config.auto_relays = 0;
    let s = node(s_config).await?;

    let circuit = l.client.listen_via_relay(relay_addr.clone()).await?;
    let text = circuit.to_string();
    assert!(text.contains("/p2p-circuit/p2p/"), "{text}");
    assert!(text.ends_with(&l.id().to_string()), "{text}");
    let reservation = wait_for(&mut l.events, SOON, |e| match e {
        Event::RelayReservation { relay, addr } => Some((relay, addr)),
        _ => None,
    })
    .await?;
    assert_eq!(reservation.0, r.id());

    s.client.dial(circuit.clone()).await?;
    let paths = s.client.connection_addrs(l.id()).await?;
    assert!(
        paths.iter().all(|p| p.to_string().contains("p2p-circuit")),
        "S should reach L only through R: {paths:?}"
    );

    let link = s.client.open_audio(l.id(), b"via-relay".to_vec());
    let opened = wait_for(&mut l.events, SOON, |e| match e {
        Event::AudioStreamOpened { peer, header } => Some((peer, header)),
        _ => None,
    })
    .await?;
    assert_eq!(opened.0, s.id());
    assert_eq!(&opened.1[..], b"via-relay");
    eventually(SOON, "every lane open", || async {
        link.stats().lanes == ruang_net::limits::AUDIO_LANES
    })
    .await?;

    for i in 0..100u8 {
        link.push(Bytes::from(vec![i; 80]));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Each lane in order, every frame once.
    let lanes = ruang_net::limits::AUDIO_LANES as u8;
    let mut next_on_lane: Vec<u8> = (0..lanes).collect();
    for _ in 0..100u8 {
        let f = tokio::time::timeout(SOON, l.audio.recv())
            .await?
            .expect("inbox open");
        assert_eq!(f.peer, s.id());
        let lane = (f.frame[0] % lanes) as usize;
        assert_eq!(f.frame[0], next_on_lane[lane], "lane {lane}");
        next_on_lane[lane] += lanes;
    }
    let stats = link.stats();
    assert_eq!(stats.sent, 100, "{stats:?}");
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    // Still relayed: nothing upgraded the path behind our back.
    let paths = s.client.connection_addrs(l.id()).await?;
    assert!(
        paths.iter().all(|p| p.to_string().contains("p2p-circuit")),
        "{paths:?}"
    );

    drop(link);

    // A node that is not a relay refuses reservations: a clear error, not a hang.
    let not_a_relay = addr_of(&s.client, None).await;
    assert!(not_a_relay.is_err(), "S listens on nothing");
    let plain = node(config(Transport::QuicOnly)).await?;
    let refused = l
        .client
        .listen_via_relay(addr_of(&plain.client, None).await?)
        .await;
    assert!(
        matches!(refused, Err(NetError::Relay { .. })),
        "{refused:?}"
    );
    plain.client.shutdown().await;

    for n in [&s, &l, &r] {
        n.client.shutdown().await;
    }
    Ok(())
}

/// A node with no address of its own that bootstraps from a relay reserves on it by itself
/// (identify says the relay offers circuit relay), and is reached through the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_relay_is_used_by_itself() -> anyhow::Result<()> {
    init_tracing();
    let (r, relay_addr) = relay().await?;

    let mut n_config = config(Transport::QuicAndTcp);
    n_config.listen.clear();
    n_config.bootstrap = vec![relay_addr];
    let mut n = node(n_config).await?;
    let (relay, circuit) = wait_for(&mut n.events, SOON, |e| match e {
        Event::RelayReservation { relay, addr } => Some((relay, addr)),
        _ => None,
    })
    .await?;
    assert_eq!(relay, r.id());
    assert!(circuit.to_string().contains("/p2p-circuit/"), "{circuit}");

    let s = node(config(Transport::QuicAndTcp)).await?;
    s.client.dial(circuit).await?;
    let paths = s.client.connection_addrs(n.id()).await?;
    assert!(
        paths.iter().all(|p| p.to_string().contains("p2p-circuit")),
        "{paths:?}"
    );
    for x in [&s, &n, &r] {
        x.client.shutdown().await;
    }
    Ok(())
}

/// A node that hides its IP address listens on nothing, refuses to dial anyone directly but
/// its relay, and reaches and is reached through circuits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_hiding_its_ip_connects_only_through_relays() -> anyhow::Result<()> {
    init_tracing();
    let (r, relay_addr) = relay().await?;

    // S: an ordinary node, reachable directly and through R.
    let s = node(config(Transport::QuicAndTcp)).await?;
    let s_direct = addr_of(&s.client, Some("quic-v1")).await?;
    let s_circuit = s.client.listen_via_relay(relay_addr.clone()).await?;

    let mut h_config = config(Transport::QuicAndTcp);
    h_config.hide_ip = true;
    h_config.bootstrap = vec![relay_addr];
    let mut h = node(h_config).await?;
    let (_, h_circuit) = wait_for(&mut h.events, SOON, |e| match e {
        Event::RelayReservation { relay, addr } => Some((relay, addr)),
        _ => None,
    })
    .await?;
    let h_addrs = h.client.p2p_addrs().await?;
    assert!(
        h_addrs
            .iter()
            .all(|a| a.to_string().contains("p2p-circuit")),
        "a hidden node has only circuit addresses: {h_addrs:?}"
    );

    let refused = h.client.dial(s_direct.clone()).await;
    assert!(
        matches!(&refused, Err(NetError::Dial { reason, .. }) if reason.contains("hides its IP")),
        "{refused:?}"
    );
    let refused = h.client.dial_peer(s.id(), vec![s_direct]).await;
    assert!(refused.is_err(), "{refused:?}");

    h.client.dial(s_circuit).await?;
    let paths = h.client.connection_addrs(s.id()).await?;
    assert!(
        paths.iter().all(|p| p.to_string().contains("p2p-circuit")),
        "{paths:?}"
    );
    // And the other way round: S reaches H through its circuit (already connected: the same
    // relayed connection serves; it came in on S's circuit listener, from `/p2p/<H>`).
    s.client.dial(h_circuit).await?;
    let paths = s.client.connection_addrs(h.id()).await?;
    assert!(
        paths
            .iter()
            .all(|p| p.to_string().contains("p2p-circuit") || p.to_string().starts_with("/p2p/")),
        "{paths:?}"
    );
    for x in [&s, &h, &r] {
        x.client.shutdown().await;
    }
    Ok(())
}
