//! The smallest real room: a host speaks a synthetic voice, a listener joins by ticket, syncs
//! the log and hears the host.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_node::{JoinTarget, NodeEvent, Pacing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_joins_by_ticket_and_hears_the_host() -> Result<()> {
    let host = node("host").await?;
    let listener = node("listener").await?;
    let joined = host.host(room("smoke")).await?;
    let voice = Limited::millis(VoiceSource::new(7, FrameDuration::Ms20), 4_000);
    let sink = SharedSink::default();
    let mut events = listener.subscribe();
    let j = tokio::time::timeout(
        Duration::from_secs(10),
        listener.join(JoinTarget::Ticket(joined.ticket.clone())),
    )
    .await??;
    assert_eq!(j.room, joined.room);
    listener.listen(Box::new(sink.clone())).await?;
    // Wait until the host sees the listener, then speak.
    eventually(Duration::from_secs(5), "host sees the listener", || async {
        host.status()
            .await
            .map(|s| s.room.map(|r| r.audience.len()).unwrap_or(0) >= 1)
            .unwrap_or(false)
    })
    .await?;
    host.speak(Box::new(voice), Pacing::RealTime).await?;
    let stats = wait_for(&mut events, Duration::from_secs(10), |e| match e {
        NodeEvent::Stats { speakers, .. } if speakers.iter().any(|s| s.played > 150) => {
            Some(speakers.clone())
        }
        _ => None,
    })
    .await?;
    eprintln!("stats: {stats:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heard = sink.samples();
    let reference = voice_samples(7, 4.0);
    let (c, lag) = best_correlation(&reference, &heard, 48_000, 48_000, 48_000 * 4);
    eprintln!("correlation {c:.3} at lag {lag}");
    assert!(
        c > 0.8,
        "the listener hears the host's voice (correlation {c:.3})"
    );
    host.shutdown().await?;
    listener.shutdown().await?;
    Ok(())
}
