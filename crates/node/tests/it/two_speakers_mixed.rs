//! Two speakers at once: the host speaks a 440 Hz tone and an invited speaker a 1000 Hz tone,
//! at the same time. Both listeners receive both streams in full and play a mix that holds
//! both tones; each speaker hears the other and not itself.

use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, ToneSource};
use ruang_node::{NodeHandle, Pacing};

const SPEECH_MS: u64 = 4_000;
const AMPLITUDE: f32 = 0.25;
const LOW_HZ: f32 = 440.0;
const HIGH_HZ: f32 = 1_000.0;
/// A tone counts as heard when its amplitude in the mix is at least this. Measured: each tone
/// comes out of Opus and the mixer at 0.247–0.248 (sent at 0.25; both together stay below the
/// limiter's knee), so 0.15 is a wide margin.
const HEARD: f64 = 0.15;
/// A tone counts as absent below this. Measured: frequencies nobody sent (700 and 1500 Hz, and
/// a speaker's own tone in its own output) come out below 0.0002.
const ABSENT: f64 = 0.02;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_are_mixed_at_every_listener() -> Result<()> {
    init_tracing();
    let host = node("low").await?;
    let speaker = node("high").await?;
    let listeners = nodes("listener", 2).await?;
    let joined = host.host(room("duet")).await?;
    join(&speaker, &joined.ticket).await?;
    for l in &listeners {
        join(l, &joined.ticket).await?;
    }
    let everyone: Vec<&NodeHandle> = [&host, &speaker].into_iter().chain(&listeners).collect();
    wait_present(&everyone, 4).await?;
    bring_on_stage(&host, &speaker).await?;
    wait_state(&everyone, "two on stage", |r| r.stage.len() == 2).await?;

    // Everyone listens (speakers hear each other); everyone's events are recorded.
    let mut sinks = Vec::new();
    let mut recs = Vec::new();
    for n in &everyone {
        let sink = SharedSink::default();
        recs.push(Recorder::start(n));
        n.listen(Box::new(sink.clone())).await?;
        sinks.push(sink);
    }
    let tone = |hz| {
        Box::new(Limited::millis(
            ToneSource::new(hz, AMPLITUDE, FrameDuration::Ms20),
            SPEECH_MS,
        ))
    };
    host.speak(tone(LOW_HZ), Pacing::RealTime).await?;
    speaker.speak(tone(HIGH_HZ), Pacing::RealTime).await?;
    eventually(
        Duration::from_millis(SPEECH_MS) + SOON,
        "both sources end",
        || async { recs[0].get().source_ended.is_some() && recs[1].get().source_ended.is_some() },
    )
    .await?;
    let ended = recs[0]
        .get()
        .source_ended
        .max(recs[1].get().source_ended)
        .expect("checked");
    let sent_low = recs[0].stats_after(ended).await?.frames_sent;
    let sent_high = recs[1].stats_after(ended).await?.frames_sent;
    assert_eq!(
        (sent_low, sent_high),
        (SPEECH_MS / 20 + 1, SPEECH_MS / 20 + 1)
    );

    // The stretch where both spoke, on the shared unix clock.
    let cap_low = recs[0]
        .get()
        .capture_started_us
        .context("no CaptureStarted")?;
    let cap_high = recs[1]
        .get()
        .capture_started_us
        .context("no CaptureStarted")?;
    let both_from = cap_low.max(cap_high);
    let both_to = cap_low.min(cap_high) + SPEECH_MS * 1_000;
    assert!(
        both_to > both_from + 2_000_000,
        "the two spoke together for at least 2 s"
    );

    for (i, (rec, sink)) in recs.iter().zip(&sinks).enumerate() {
        let stats = rec.stats_after(ended + Duration::from_millis(500)).await?;
        let got = |key: &ruang_proto::PublicKey| {
            stats
                .speakers
                .iter()
                .find(|s| s.key == *key)
                .map(|s| s.received)
        };
        let (low, high) = (got(&host.key()), got(&speaker.key()));
        eprintln!("node {i}: received low {low:?} of {sent_low}, high {high:?} of {sent_high}");
        // One second in the middle of the overlap, as this node played it (plus a 100 ms
        // allowance for the path's delay).
        let playout = rec.get().playout_started_us.context("no PlayoutStarted")?;
        let mid = (both_from + both_to) / 2 + 100_000;
        let start = ((mid - 500_000 - playout) * 48 / 1_000) as usize;
        let heard = sink.samples();
        let window = &heard[start..start + 48_000];
        let amp = |hz| tone_amplitude(window, hz);
        let (a_low, a_high, a_700, a_1500) = (amp(LOW_HZ), amp(HIGH_HZ), amp(700.0), amp(1_500.0));
        eprintln!(
            "node {i}: 440 Hz {a_low:.3}, 1000 Hz {a_high:.3}, 700 Hz {a_700:.4}, 1500 Hz {a_1500:.4}"
        );
        assert!(
            a_700 < ABSENT && a_1500 < ABSENT,
            "node {i}: energy where nobody spoke"
        );
        match i {
            // The host hears the speaker only, the speaker the host only.
            0 => {
                assert_eq!(low, None, "the host's own stream is not played back to it");
                assert!(high.unwrap_or(0) * 100 >= sent_high * 99);
                assert!(
                    a_high >= HEARD && a_low < ABSENT,
                    "host hears the speaker and not itself"
                );
            }
            1 => {
                assert_eq!(
                    high, None,
                    "the speaker's own stream is not played back to it"
                );
                assert!(low.unwrap_or(0) * 100 >= sent_low * 99);
                assert!(
                    a_low >= HEARD && a_high < ABSENT,
                    "speaker hears the host and not itself"
                );
            }
            _ => {
                assert!(
                    low.unwrap_or(0) * 100 >= sent_low * 99,
                    "listener {i} received both streams"
                );
                assert!(
                    high.unwrap_or(0) * 100 >= sent_high * 99,
                    "listener {i} received both streams"
                );
                assert!(
                    a_low >= HEARD && a_high >= HEARD,
                    "listener {i} plays both tones at once"
                );
            }
        }
    }
    let mut all = everyone;
    all.reverse();
    shutdown_all(&all).await;
    Ok(())
}
