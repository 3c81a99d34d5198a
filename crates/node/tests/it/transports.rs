//! Both transports on their own: a room works over QUIC only and over TCP only. In each, a
//! listener joins by ticket (every address in the ticket is of that transport), syncs the
//! room, and hears 3 s of the host's voice in full.

use crate::common::*;
use anyhow::Result;
use ruang_net::Transport;
use ruang_net::multiaddr::Protocol;

const SPEECH_MS: u64 = 3_000;

async fn room_over(transport: Transport, seed: u64) -> Result<()> {
    let host = node_with("host", transport, |b| b).await?;
    let listener = node_with("listener", transport, |b| b).await?;
    let joined = host.host(room("one transport")).await?;
    let addrs: Vec<ruang_net::Multiaddr> = joined
        .ticket
        .addresses
        .iter()
        .map(|a| ruang_net::Multiaddr::try_from(a.clone()))
        .collect::<Result<_, _>>()?;
    let is_quic = |a: &ruang_net::Multiaddr| a.iter().any(|p| p == Protocol::QuicV1);
    let is_tcp = |a: &ruang_net::Multiaddr| a.iter().any(|p| matches!(p, Protocol::Tcp(_)));
    match transport {
        Transport::QuicOnly => assert!(
            !addrs.is_empty() && addrs.iter().all(|a| is_quic(a) && !is_tcp(a)),
            "{addrs:?}"
        ),
        Transport::TcpOnly => assert!(
            !addrs.is_empty() && addrs.iter().all(|a| is_tcp(a) && !is_quic(a)),
            "{addrs:?}"
        ),
        _ => unreachable!("this test is about one transport at a time"),
    }
    join(&listener, &joined.ticket).await?;
    let label = format!("{transport:?}");
    hears_in_full(&host, &listener, seed, SPEECH_MS, &label).await?;
    shutdown_all(&[&listener, &host]).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_works_over_quic_only() -> Result<()> {
    init_tracing();
    room_over(Transport::QuicOnly, 31).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_works_over_tcp_only() -> Result<()> {
    init_tracing();
    room_over(Transport::TcpOnly, 32).await
}
