//! Helpers for the node tests: real nodes on 127.0.0.1, every wait under a timeout.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ruang_audio::format::FrameDuration;
use ruang_audio::sink::{Sink, SinkError};
use ruang_net::Transport;
use ruang_node::{HostOptions, Node, NodeEvent, NodeHandle};
use ruang_proto::Identity;
use ruang_proto::room::Info;
use tokio::sync::broadcast;

/// A node listening on loopback QUIC with mDNS off.
pub async fn node(name: &str) -> Result<NodeHandle> {
    node_with(name, Transport::QuicOnly, |b| b).await
}

/// A node with a transport choice and extra builder settings.
pub async fn node_with(
    name: &str,
    transport: Transport,
    extra: impl FnOnce(ruang_node::Builder) -> ruang_node::Builder,
) -> Result<NodeHandle> {
    let identity = Identity::generate(&mut rand::rng());
    let listen = match transport {
        Transport::TcpOnly => "/ip4/127.0.0.1/tcp/0",
        _ => "/ip4/127.0.0.1/udp/0/quic-v1",
    };
    let builder = Node::builder(identity)
        .name(name)
        .mdns(false)
        .transport(transport)
        .listen(listen.parse()?)
        .presence_interval(Duration::from_millis(500))
        .announce_interval(Duration::from_secs(2));
    let handle = tokio::time::timeout(Duration::from_secs(10), extra(builder).spawn())
        .await
        .context("spawn timed out")??;
    Ok(handle)
}

/// Options for a public room titled `title`.
pub fn room(title: &str) -> HostOptions {
    HostOptions {
        info: Info {
            title: title.into(),
            ..Info::default()
        },
        ..HostOptions::default()
    }
}

/// Waits for an event matching `pred`, up to `timeout`.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    timeout: Duration,
    mut pred: impl FnMut(&NodeEvent) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Err(_) => bail!("timed out after {timeout:?} waiting for an event"),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => bail!("event stream ended: {e}"),
            Ok(Ok(ev)) => {
                if let Some(t) = pred(&ev) {
                    return Ok(t);
                }
            }
        }
    }
}

/// Polls `check` every 50 ms until it returns true, up to `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?}: {what}")
}

/// A sink that keeps what it is given in memory, shared with the test.
#[derive(Clone, Default)]
pub struct SharedSink(pub Arc<Mutex<Vec<f32>>>);

impl Sink for SharedSink {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        let mut v = self.0.lock().unwrap();
        // Bounded: ten minutes of audio at most.
        if v.len() < 48_000 * 600 {
            v.extend_from_slice(pcm);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl SharedSink {
    /// Samples so far.
    pub fn samples(&self) -> Vec<f32> {
        self.0.lock().unwrap().clone()
    }
}

/// The first `seconds` of a seeded synthetic voice.
pub fn voice_samples(seed: u64, seconds: f32) -> Vec<f32> {
    use ruang_audio::source::{Source, VoiceSource};
    let frame = FrameDuration::Ms20;
    let mut src = VoiceSource::new(seed, frame);
    let mut out = Vec::new();
    let mut buf = vec![0.0; frame.samples()];
    while (out.len() as f32) < seconds * 48_000.0 {
        src.next_frame(&mut buf).unwrap();
        out.extend_from_slice(&buf);
    }
    out
}

/// The best normalised cross-correlation of `heard` against `reference` over lags in
/// `0..max_lag` samples (heard lags behind), computed on `window` samples of the reference
/// starting at `start`.
pub fn best_correlation(
    reference: &[f32],
    heard: &[f32],
    start: usize,
    window: usize,
    max_lag: usize,
) -> (f64, usize) {
    let r = &reference[start..start + window];
    let mut best = (f64::MIN, 0);
    let step = 8;
    let mut lag = 0;
    while lag < max_lag && start + lag + window <= heard.len() {
        let h = &heard[start + lag..start + lag + window];
        let c = correlation(r, h);
        if c > best.0 {
            best = (c, lag);
        }
        lag += step;
    }
    // Refine around the best coarse lag.
    let (lo, hi) = (best.1.saturating_sub(step), best.1 + step);
    for lag in lo..=hi {
        if start + lag + window > heard.len() {
            break;
        }
        let c = correlation(r, &heard[start + lag..start + lag + window]);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Normalised correlation of two equal-length signals.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}
