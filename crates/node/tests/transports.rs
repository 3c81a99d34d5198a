//! Both transports on their own: a room works over QUIC only and over TCP only. In each, a
//! listener joins by ticket (every address in the ticket is of that transport), syncs the
//! room, and hears 3 s of the host's voice in full.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_net::Transport;
use ruang_net::multiaddr::Protocol;
use ruang_node::Pacing;

const SPEECH_MS: u64 = 3_000;
/// As in `audio_one_speaker_five_listeners`; measured here: medians 0.92 on both transports.
const MIN_MEDIAN_CORRELATION: f64 = 0.85;

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
    let sink = SharedSink::default();
    let rec = Recorder::start(&listener);
    listener.listen(Box::new(sink.clone())).await?;
    wait_present(&[&host, &listener], 2).await?;

    let host_rec = Recorder::start(&host);
    host.listen(Box::new(SharedSink::default())).await?;
    host.speak(
        Box::new(Limited::millis(
            VoiceSource::new(seed, FrameDuration::Ms20),
            SPEECH_MS,
        )),
        Pacing::RealTime,
    )
    .await?;
    eventually(
        Duration::from_millis(SPEECH_MS) + SOON,
        "the speech ends",
        || async { host_rec.get().source_ended.is_some() },
    )
    .await?;
    let ended = host_rec.get().source_ended.expect("checked");
    let sent = host_rec.stats_after(ended).await?.frames_sent;
    let stats = rec.stats_after(ended + Duration::from_millis(500)).await?;
    let st = stats
        .speakers
        .iter()
        .find(|s| s.key == host.key().to_hex())
        .context("host not in the stats")?;
    eprintln!("{transport:?}: {st:?} of {sent} sent");
    assert!(
        st.received * 100 >= sent * 99,
        "{transport:?}: received {} of {sent}",
        st.received
    );

    let reference = voice_samples(seed, 3.0);
    let capture = host_rec
        .get()
        .capture_started_us
        .context("no CaptureStarted")?;
    let playout = rec.get().playout_started_us.context("no PlayoutStarted")?;
    let windows = windowed_correlations(
        &reference,
        &sink.samples(),
        capture,
        playout,
        (0.5, 2.5, 0.5),
        400,
    );
    let cs: Vec<f64> = windows.iter().map(|w| w.0).collect();
    eprintln!("{transport:?}: correlations {cs:.3?}");
    assert!(
        median(&cs) >= MIN_MEDIAN_CORRELATION,
        "{transport:?}: median correlation {:.3}",
        median(&cs)
    );
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
