//! The smallest real room: a host speaks a synthetic voice, a listener joins by ticket, syncs
//! the log and hears the host. Each node picks its own frame length (`--frame-ms`), so the
//! host's frames may be twice or half the listener's.

use std::time::Duration;

use crate::common::*;
use anyhow::Result;
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_net::Transport;
use ruang_node::{JoinTarget, NodeEvent, Pacing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_joins_by_ticket_and_hears_the_host() -> Result<()> {
    hears_the_host(FrameDuration::Ms20, FrameDuration::Ms20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_at_20_ms_hears_a_host_at_10_ms() -> Result<()> {
    hears_the_host(FrameDuration::Ms10, FrameDuration::Ms20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_at_10_ms_hears_a_host_at_20_ms() -> Result<()> {
    hears_the_host(FrameDuration::Ms20, FrameDuration::Ms10).await
}

/// A host speaking in frames of `speaking`, heard by a listener playing frames of `playing`.
async fn hears_the_host(speaking: FrameDuration, playing: FrameDuration) -> Result<()> {
    let host = node_with("host", Transport::QuicOnly, |b| b.frame(speaking)).await?;
    let listener = node_with("listener", Transport::QuicOnly, |b| b.frame(playing)).await?;
    let joined = host.host(room("smoke")).await?;
    let voice = Limited::millis(VoiceSource::new(7, speaking), 4_000);
    let sink = SharedSink::default();
    let mut events = listener.subscribe();
    let j = tokio::time::timeout(
        Duration::from_secs(10),
        listener.join(JoinTarget::Ticket(joined.ticket.clone())),
    )
    .await??;
    assert_eq!(j.room, joined.room);
    let mut listener_events = listener.subscribe();
    let playout = tokio::spawn(async move {
        wait_for(&mut listener_events, Duration::from_secs(10), |e| match e {
            NodeEvent::PlayoutStarted { unix_us } => Some(*unix_us),
            _ => None,
        })
        .await
    });
    listener.listen(Box::new(sink.clone())).await?;
    // Wait until the host sees the listener, then speak.
    eventually(Duration::from_secs(5), "host sees the listener", || async {
        host.status()
            .await
            .map(|s| s.room.map(|r| r.audience.len()).unwrap_or(0) >= 1)
            .unwrap_or(false)
    })
    .await?;
    let mut host_events = host.subscribe();
    let capture = tokio::spawn(async move {
        wait_for(&mut host_events, Duration::from_secs(10), |e| match e {
            NodeEvent::CaptureStarted { unix_us } => Some(*unix_us),
            _ => None,
        })
        .await
    });
    host.speak(Box::new(voice), Pacing::RealTime).await?;
    // Two seconds of the host's frames played.
    let frames = 2_000 / speaking.as_millis();
    let stats = wait_for(&mut events, Duration::from_secs(10), |e| match e {
        NodeEvent::Stats { speakers, .. } if speakers.iter().any(|s| s.played > frames) => {
            Some(speakers.clone())
        }
        _ => None,
    })
    .await?;
    eprintln!("stats: {stats:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Aligned with the start times the two nodes reported, so only the path's delay is
    // searched.
    let (capture, playout) = (capture.await??, playout.await??);
    let heard = heard_voice(7, &sink.samples(), Some((capture, playout)), 0.4, 3.0);
    assert_heard("the listener", &heard);
    host.shutdown().await?;
    listener.shutdown().await?;
    Ok(())
}
