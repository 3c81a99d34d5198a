//! Loss-adaptive protection end to end: a listener behind a path that loses 10 % of its
//! packets reports the loss it hears, and the host's encoder turns its loss hint (and with it
//! in-band FEC, and copies of every frame) on; a listener behind a path narrower than the
//! audio makes the host lower its bitrate. (Lowering the hint on clean reports and raising the bitrate again are
//! `ruang_audio::loss`'s and `ruang_audio::congestion`'s unit tests.)

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

/// The listener joins the host's room knowing it only through a relay with `link` (each
/// way); returns the relay (its counters say what it did).
async fn join_through_relay(
    host: &ruang_node::NodeHandle,
    listener: &ruang_node::NodeHandle,
    title: &str,
    link: LinkConfig,
    seed: u64,
) -> Result<Relay> {
    let joined = host.host(room(title)).await?;
    let (target, p2p) = quic_target(&joined.ticket).context("the ticket has no QUIC address")?;
    let relay = Relay::start(RelayConfig::symmetric(
        "127.0.0.1:0".parse()?,
        target,
        link,
        seed,
    ))?;
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
    Ok(relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_listener_turns_the_hosts_fec_on() -> Result<()> {
    let host = node("host").await?;
    let listener = node("listener").await?;
    // The listener knows the host only through the lossy relay.
    let link = LinkConfig {
        loss: 0.10,
        ..LinkConfig::default()
    };
    let relay = join_through_relay(&host, &listener, "lossy", link, 11).await?;
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
        NodeEvent::Stats {
            loss_hint_pct,
            sending_copies: true,
            ..
        } if *loss_hint_pct > 0 => Some(*loss_hint_pct),
        _ => None,
    })
    .await?;
    assert!((5..=25).contains(&hint), "hint {hint} %");
    // (That the listener, playing the copies, still reports the path's loss — so the copies
    // go on — is `ruang-audio`'s `jitter_copies` test.)
    eprintln!("relay: {}", relay.stop());
    host.shutdown().await?;
    listener.shutdown().await?;
    Ok(())
}

/// A host whose only path to its listener is narrower than its audio: the listener misses
/// frames (they arrive after their playout time), reports it, and the host lowers its bitrate
/// until the listener hears it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_path_lowers_the_hosts_bitrate_until_the_listener_hears_it() -> Result<()> {
    let host = node("host").await?;
    let listener = node("listener").await?;
    let link = LinkConfig {
        rate_bps: Some(NARROW_BPS),
        ..LinkConfig::default()
    };
    let relay = join_through_relay(&host, &listener, "narrow", link, 12).await?;
    let mut listener_events = listener.subscribe();
    listener.listen(Box::new(SharedSink::default())).await?;
    host.listen(Box::new(SharedSink::default())).await?;
    let mut host_events = host.subscribe();
    let voice = Limited::millis(VoiceSource::new(5, FrameDuration::Ms20), 90_000);
    host.speak(Box::new(voice), Pacing::RealTime).await?;
    // Reports come once a second and the loss is averaged over ~6 s: 3–25 s on an idle
    // machine, and the CI machine, loaded with the rest of the suite, once took over 45 s.
    // The bound is what the test can keep there; the time itself is a figure for the bench.
    let mut last_stats = String::new();
    let lowered = wait_for(&mut host_events, Duration::from_secs(120), |e| match e {
        NodeEvent::Stats { bitrate_bps, .. } if (1..32_000).contains(bitrate_bps) => {
            Some(*bitrate_bps)
        }
        e => {
            if let NodeEvent::Stats { .. } = e {
                last_stats = format!("{e:?}");
            }
            None
        }
    })
    .await;
    let lowered = match lowered {
        Ok(bps) => bps,
        Err(e) => {
            let relay = relay.stop();
            return Err(e.context(format!("host's last stats: {last_stats}; relay: {relay}")));
        }
    };
    // Then the listener hears it: three seconds in a row with under 5 % of the slots missed.
    // The queue that built up in the narrow path drains first, and the audio lanes that timed
    // out in it open again, while the bitrate steps down until it fits (the whole test took
    // 17–26 s at 36 kbit/s).
    let mut window: std::collections::VecDeque<(u64, u64)> = Default::default();
    let heard = wait_for(&mut listener_events, Duration::from_secs(90), |e| {
        let NodeEvent::Stats { speakers, .. } = e else {
            return None;
        };
        let s = speakers.first()?;
        window.push_back((s.played, s.lost));
        if window.len() > 4 {
            window.pop_front();
        }
        let (&(p0, l0), &(p1, l1)) = (window.front()?, window.back()?);
        let (played, lost) = (p1.checked_sub(p0)?, l1.checked_sub(l0)?);
        (window.len() == 4 && played >= 100 && lost * 20 < played + lost).then_some((played, lost))
    })
    .await?;
    eprintln!(
        "bitrate lowered to {lowered} bps; listener then: {} played, {} missed; relay: {}",
        heard.0,
        heard.1,
        relay.stop()
    );
    host.shutdown().await?;
    listener.shutdown().await?;
    Ok(())
}

/// The relay's rate in each direction: 32 kbps Opus in 20 ms QUIC packets takes about 49 kbps
/// with every header (~125 bytes a packet, measured through this relay uncapped), and 24 kbps
/// about 41, so neither fits; the host goes on down (18, then 13.5 kbps). At 56 kbps the
/// audio fitted once the start-up burst had drained, and whether the listener's early misses
/// lowered the bitrate was a matter of timing: under load the test failed about one run in
/// three. At 36 kbps the listener never heard the host again (2 of 2 runs, 150 s each): its
/// reachability probes uploaded 30–100 KB each through the same path (`ruang-net`'s
/// `autonat` test).
const NARROW_BPS: u64 = 36_000;
