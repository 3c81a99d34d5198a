//! Through a relay: a relay node (QUIC and TCP on loopback) serves circuits; the host speaks
//! TCP only and reserves a circuit on the relay; the listener speaks QUIC only, so no direct
//! connection between the two can exist whatever addresses they learn. The listener joins with
//! a ticket whose only address is the host's circuit address (through the relay's QUIC
//! address), syncs the room and hears the host's voice.

use crate::common::*;
use anyhow::{Context, Result};
use ruang_net::Transport;
use ruang_net::multiaddr::Protocol;
use ruang_proto::Ticket;
use std::time::Duration;

const SEED: u64 = 23;
const SPEECH_MS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_reaches_the_host_through_a_relay() -> Result<()> {
    init_tracing();
    let relay = node_with("relay", Transport::QuicAndTcp, |b| {
        b.relay_server(true)
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"))
    })
    .await?;
    let relay_tcp = addr_of(&relay, "/tcp/").await?;
    let relay_quic = addr_of(&relay, "/quic-v1/").await?;
    let host = node_with("host", Transport::TcpOnly, move |b| b.relay(relay_tcp)).await?;
    let listener = node("listener").await?;

    let joined = host.host(room("relayed")).await?;
    let host_addrs = host.status().await?.addrs;
    assert!(
        host_addrs
            .iter()
            .any(|a| a.iter().any(|p| p == Protocol::P2pCircuit)),
        "the host has a circuit address: {host_addrs:?}"
    );
    // The host's circuit, reached through the relay's QUIC address (the listener has no TCP).
    let circuit = relay_quic
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(host.peer_id()));
    let ticket = Ticket {
        addresses: vec![circuit.to_vec()],
        ..joined.ticket.clone()
    };
    join(&listener, &ticket).await?;
    hears_in_full(&host, &listener, SEED, SPEECH_MS, "through the relay").await?;
    shutdown_all(&[&listener, &host, &relay]).await;
    Ok(())
}

/// A join through a relay that does not answer tries again, and a leave stops it: the join
/// answers that it was cancelled, and no "trying again" line comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_stops_a_join_that_is_trying_a_relay_again() -> Result<()> {
    init_tracing();
    let listener = node("listener").await?;
    let mut events = listener.subscribe();
    // A relay nobody runs: a loopback TCP port bound, then closed, refuses at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let relay = ruang_proto::Identity::generate(&mut rand::rng()).public();
    let host = ruang_proto::Identity::generate(&mut rand::rng()).public();
    let peer = |key| ruang_node::ids::peer_id(key).context("a peer id");
    let circuit: ruang_net::Multiaddr = format!(
        "/ip4/127.0.0.1/tcp/{port}/p2p/{}/p2p-circuit/p2p/{}",
        peer(&relay)?,
        peer(&host)?
    )
    .parse()?;
    let ticket = Ticket {
        room: ruang_proto::room::RoomId(ruang_proto::Hash([7; 32])),
        host,
        addresses: vec![circuit.to_vec()],
        room_key: None,
    };
    let joining = {
        let listener = listener.clone();
        tokio::spawn(async move { listener.join(ruang_node::JoinTarget::Ticket(ticket)).await })
    };
    let trying_again = |e: &ruang_node::NodeEvent| matches!(e, ruang_node::NodeEvent::Progress { message } if message.contains("trying again"));
    wait_for(&mut events, SOON, |e| trying_again(e).then_some(())).await?;
    tokio::time::timeout(SOON, listener.leave()).await??;
    let answer = tokio::time::timeout(SOON, joining).await??;
    assert!(answer.is_err(), "the join was cancelled: {answer:?}");
    // A round of dials to a refusing relay takes ~1.5 s, then a 1 s pause: a join still
    // trying would say so again within 4 s.
    let after = wait_for(&mut events, Duration::from_secs(4), |e| {
        trying_again(e).then(|| format!("{e:?}"))
    })
    .await;
    assert!(
        after.is_err(),
        "the join went on after the leave: {after:?}"
    );
    listener.shutdown().await?;
    Ok(())
}
