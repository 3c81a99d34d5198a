//! Through a relay: a relay node (QUIC and TCP on loopback) serves circuits; the host speaks
//! TCP only and reserves a circuit on the relay; the listener speaks QUIC only, so no direct
//! connection between the two can exist whatever addresses they learn. The listener joins with
//! a ticket whose only address is the host's circuit address (through the relay's QUIC
//! address), syncs the room and hears the host's voice.

use crate::common::*;
use anyhow::Result;
use ruang_net::Transport;
use ruang_net::multiaddr::Protocol;
use ruang_proto::Ticket;

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
