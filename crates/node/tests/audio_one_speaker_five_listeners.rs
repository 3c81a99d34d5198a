//! Audio delivery to a small audience: one speaker streams 5 s of a synthetic voice, paced in
//! real time, to five listeners that joined by ticket. Every listener receives at least 99% of
//! the frames the speaker sent, plays all but a few of them (see [`MAX_MISSED_PERCENT`]), and
//! what it played correlates with what was said.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_node::Pacing;

const LISTENERS: usize = 5;
const SEED: u64 = 11;
const SPEECH_MS: u64 = 5_000;
/// Lowest accepted median correlation between the voice and what a listener played, over
/// eight 0.5 s windows each aligned on its own (see `windowed_correlations`). Measured on this
/// 2-core machine (debug build, 6 nodes in one process, 5 runs): single windows 0.85–0.98 and
/// medians 0.91–0.93, since Opus at 32 kbps does not keep the waveform exactly; a window that
/// holds a concealed frame (one every run or two under this load, counted in the stats) dropped
/// to 0.77. Noise, silence or another voice give well under 0.2. So: median at least 0.85, and
/// at least 6 of the 8 windows at least [`MIN_WINDOW_CORRELATION`].
const MIN_MEDIAN_CORRELATION: f64 = 0.85;
/// See [`MIN_MEDIAN_CORRELATION`].
const MIN_WINDOW_CORRELATION: f64 = 0.7;
/// See [`MIN_MEDIAN_CORRELATION`].
const MIN_GOOD_WINDOWS: usize = 6;
/// Most frames a listener may miss at playout, in percent of those sent: frames that came
/// after their slot (`late`) and frames that never came (`lost`, which counts the late ones
/// too). On loopback nothing is lost in the network, but six nodes and six playout threads in
/// one debug process on a loaded 2-core CI machine do get scheduled late now and then: a CI
/// run saw 3 late frames of 251 at one listener (1.2 %) and none at the other four. A
/// playout that falls behind for good, or a stream that stalls, misses many more.
const MAX_MISSED_PERCENT: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_listeners_hear_one_speaker() -> Result<()> {
    init_tracing();
    let speaker = node("speaker").await?;
    let listeners = nodes("listener", LISTENERS).await?;
    let joined = speaker.host(room("one speaker")).await?;
    let mut sinks = Vec::new();
    let mut recorders = Vec::new();
    for l in &listeners {
        join(l, &joined.ticket).await?;
        let sink = SharedSink::default();
        recorders.push(Recorder::start(l));
        l.listen(Box::new(sink.clone())).await?;
        sinks.push(sink);
    }
    let mut everyone: Vec<&ruang_node::NodeHandle> = listeners.iter().collect();
    everyone.push(&speaker);
    wait_present(&everyone, LISTENERS + 1).await?;

    // The speaker listens too (it hears nobody): its playout is what reports `frames_sent`.
    let speaker_rec = Recorder::start(&speaker);
    speaker.listen(Box::new(SharedSink::default())).await?;
    let voice = Limited::millis(VoiceSource::new(SEED, FrameDuration::Ms20), SPEECH_MS);
    speaker.speak(Box::new(voice), Pacing::RealTime).await?;
    eventually(
        Duration::from_millis(SPEECH_MS) + SOON,
        "the speech ends",
        || async { speaker_rec.get().source_ended.is_some() },
    )
    .await?;
    let ended = speaker_rec.get().source_ended.expect("checked");
    let sent = speaker_rec.stats_after(ended).await?.frames_sent;
    // 5 s of 20 ms frames, plus the END frame.
    assert_eq!(sent, SPEECH_MS / 20 + 1, "frames the speaker sent");

    let reference = voice_samples(SEED, 5.0);
    let capture_started = speaker_rec
        .get()
        .capture_started_us
        .context("no CaptureStarted")?;
    for (i, (rec, sink)) in recorders.iter().zip(&sinks).enumerate() {
        // Stats come once a second: wait for one taken after the last frame can have arrived.
        let s = rec.stats_after(ended + Duration::from_millis(500)).await?;
        let st = s
            .speakers
            .iter()
            .find(|x| x.key == speaker.key().to_hex())
            .context("speaker not in stats")?;
        eprintln!("listener {i}: {st:?}");
        assert!(
            st.received * 100 >= sent * 99,
            "listener {i} received {} of {sent} frames",
            st.received
        );
        assert!(
            st.late * 100 <= sent * MAX_MISSED_PERCENT,
            "listener {i}: {} frames arrived after their playout slot",
            st.late
        );
        assert!(
            st.lost * 100 <= sent * MAX_MISSED_PERCENT,
            "listener {i}: {} frames lost",
            st.lost
        );
        let playout_started = rec.get().playout_started_us.context("no PlayoutStarted")?;
        let heard = sink.samples();
        let windows = windowed_correlations(
            &reference,
            &heard,
            capture_started,
            playout_started,
            (0.5, 4.5, 0.5),
            400,
        );
        let cs: Vec<f64> = windows.iter().map(|w| w.0).collect();
        let good = cs.iter().filter(|c| **c >= MIN_WINDOW_CORRELATION).count();
        let delays: Vec<f64> = windows.iter().map(|w| w.1).collect();
        eprintln!("listener {i}: correlations {cs:.3?}, mouth-to-ear {delays:.0?} ms");
        assert!(
            median(&cs) >= MIN_MEDIAN_CORRELATION,
            "listener {i}: median correlation {:.3}",
            median(&cs)
        );
        assert!(
            good >= MIN_GOOD_WINDOWS,
            "listener {i}: only {good} of {} windows correlate",
            cs.len()
        );
    }
    let mut all = everyone;
    all.reverse();
    shutdown_all(&all).await;
    Ok(())
}
