//! Loss-adaptive FEC end to end: a listener behind a path that loses 10 % of its packets
//! reports the loss it hears, and the host's encoder turns its loss hint (and with it in-band
//! FEC) on. (Lowering it on clean reports is `ruang_audio::loss`'s unit tests.)

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_net::{Multiaddr, multiaddr::Protocol};
use ruang_node::{JoinTarget, NodeEvent, Pacing};
use ruang_proto::Ticket;
use ruang_testkit::impair::{LinkConfig, Relay, RelayConfig};

/// The host's QUIC socket and peer id, from its ticket.
fn quic_target(ticket: &Ticket) -> Option<(SocketAddr, Multiaddr)> {
    ticket.addresses.iter().find_map(|bytes| {
        let m = Multiaddr::try_from(bytes.clone()).ok()?;
        let (mut ip, mut port, mut peer) = (None, None, None);
        for p in m.iter() {
            match p {
                Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(v)),
                Protocol::Udp(v) => port = Some(v),
                Protocol::P2p(v) => peer = Some(v),
                _ => {}
            }
        }
        Some((
            SocketAddr::new(ip?, port?),
            Multiaddr::empty().with(Protocol::P2p(peer?)),
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_listener_turns_the_hosts_fec_on() -> Result<()> {
    let host = node("host").await?;
    let listener = node("listener").await?;
    let joined = host.host(room("lossy")).await?;
    let (target, p2p) = quic_target(&joined.ticket).context("the ticket has no QUIC address")?;
    let relay = Relay::start(RelayConfig::symmetric(
        "127.0.0.1:0".parse()?,
        target,
        LinkConfig {
            loss: 0.10,
            ..LinkConfig::default()
        },
        11,
    ))?;
    // The listener knows the host only through the lossy relay.
    let via = relay.local_addr();
    let mut addr: Multiaddr = format!("/ip4/{}/udp/{}/quic-v1", via.ip(), via.port()).parse()?;
    for p in p2p.iter() {
        addr.push(p);
    }
    let mut ticket = joined.ticket.clone();
    ticket.addresses = vec![addr.to_vec()];

    tokio::time::timeout(
        Duration::from_secs(20),
        listener.join(JoinTarget::Ticket(ticket)),
    )
    .await??;
    listener.listen(Box::new(SharedSink::default())).await?;
    eventually(
        Duration::from_secs(10),
        "host sees the listener",
        || async {
            host.status()
                .await
                .map(|s| s.room.map(|r| r.audience.len()).unwrap_or(0) >= 1)
                .unwrap_or(false)
        },
    )
    .await?;
    // Stats come with the playout: the host listens too.
    host.listen(Box::new(SharedSink::default())).await?;
    let mut host_events = host.subscribe();
    let voice = Limited::millis(VoiceSource::new(3, FrameDuration::Ms20), 60_000);
    host.speak(Box::new(voice), Pacing::RealTime).await?;
    // The host starts with the hint at 0 (FEC off); the listener's first report (a second of
    // 10 % loss) raises it.
    let hint = wait_for(&mut host_events, Duration::from_secs(30), |e| match e {
        NodeEvent::Stats { loss_hint_pct, .. } if *loss_hint_pct > 0 => Some(*loss_hint_pct),
        _ => None,
    })
    .await?;
    assert!((5..=25).contains(&hint), "hint {hint} %");
    eprintln!("relay: {}", relay.stop());
    host.shutdown().await?;
    listener.shutdown().await?;
    Ok(())
}
