//! Helpers for the node tests: real nodes on 127.0.0.1, every wait under a timeout.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ruang_audio::format::FrameDuration;
use ruang_audio::sink::{Sink, SinkError};
use ruang_net::Transport;
use ruang_node::{HostOptions, JoinTarget, Node, NodeEvent, NodeHandle, RoomView, SpeakerStats};
use ruang_proto::room::{EventBody, Info};
use ruang_proto::{Identity, PublicKey, Ticket};
use ruang_testkit::heard;
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
    // The thread-local RNG is not `Send`: done with it before the first await.
    let identity = Identity::generate(&mut rand::rng());
    node_with_identity(identity, name, transport, extra).await
}

/// A node with a given identity (so the test can also sign as it), a transport choice and
/// extra builder settings.
pub async fn node_with_identity(
    identity: Identity,
    name: &str,
    transport: Transport,
    extra: impl FnOnce(ruang_node::Builder) -> ruang_node::Builder,
) -> Result<NodeHandle> {
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

// ----- more helpers for the issue-4 scenarios ------------------------------------------------

/// Upper bound for "should happen about now" waits.
pub const SOON: Duration = Duration::from_secs(10);

/// Logs to the test output at `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Spawns `n` nodes named `{prefix}{i}` on loopback QUIC.
pub async fn nodes(prefix: &str, n: usize) -> Result<Vec<NodeHandle>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(node(&format!("{prefix}{i}")).await?);
    }
    Ok(out)
}

/// Shuts every node down (bounded).
pub async fn shutdown_all(nodes: &[&NodeHandle]) {
    for n in nodes {
        let _ = tokio::time::timeout(SOON, n.shutdown()).await;
    }
}

/// Joins `node` to the room of `ticket`, bounded.
pub async fn join(node: &NodeHandle, ticket: &Ticket) -> Result<ruang_node::Joined> {
    let joined = tokio::time::timeout(SOON, node.join(JoinTarget::Ticket(ticket.clone())))
        .await
        .context("join timed out")??;
    Ok(joined)
}

/// How many people `view` shows as present (on stage and present, plus the audience).
pub fn present_count(view: &RoomView) -> usize {
    view.stage.iter().filter(|p| p.present).count() + view.audience.len()
}

/// Waits until every node in `nodes` sees `n` people present in its room.
pub async fn wait_present(nodes: &[&NodeHandle], n: usize) -> Result<()> {
    for (i, node) in nodes.iter().enumerate() {
        eventually(SOON, &format!("node {i} sees {n} present"), || async {
            node.status()
                .await
                .ok()
                .and_then(|s| s.room)
                .is_some_and(|r| present_count(&r) >= n)
        })
        .await?;
    }
    Ok(())
}

/// The host invites `who` on stage and `who` accepts (once the invitation reached it).
pub async fn bring_on_stage(host: &NodeHandle, who: &NodeHandle) -> Result<()> {
    host.act(EventBody::InviteSpeaker { who: who.key() })
        .await?;
    eventually(SOON, "the invitation is accepted", || async {
        who.act(EventBody::AcceptInvite).await.is_ok()
    })
    .await?;
    // The acceptance reaches the host by gossip: wait for it, so the host can act on the new
    // speaker at once (a mute of someone not yet on stage in its state is refused).
    let key = who.key();
    wait_state(&[host], "the host sees the new speaker", |r| {
        r.stage.iter().any(|p| p.key == key)
    })
    .await
}

/// Waits until every node in `nodes` has a room state for which `pred` holds.
pub async fn wait_state(
    nodes: &[&NodeHandle],
    what: &str,
    pred: impl Fn(&RoomView) -> bool,
) -> Result<()> {
    for (i, node) in nodes.iter().enumerate() {
        eventually(SOON, &format!("node {i}: {what}"), || async {
            node.status()
                .await
                .ok()
                .and_then(|s| s.room)
                .is_some_and(|r| pred(&r))
        })
        .await?;
    }
    Ok(())
}

/// The last receive statistics of a node, with when they came.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    /// Per remote speaker.
    pub speakers: Vec<SpeakerStats>,
    /// Frames this node sent.
    pub frames_sent: u64,
    /// When the event was seen.
    pub at: tokio::time::Instant,
}

/// What a [`Recorder`] saw of a node's events.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// The last `Stats` event.
    pub stats: Option<StatsSnapshot>,
    /// Chat lines seen.
    pub chats: u64,
    /// Unix µs of frame 0 of our source.
    pub capture_started_us: Option<u64>,
    /// Unix µs of sample 0 of our sink.
    pub playout_started_us: Option<u64>,
    /// When the source ended.
    pub source_ended: Option<tokio::time::Instant>,
    /// Why the node left its room, if it did.
    pub left: Option<ruang_node::event::LeaveReason>,
    /// Notices and errors, the last 64.
    pub notices: Vec<String>,
}

/// Records a node's events in the background (stats, chat counts, audio start times...).
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<Recorded>>);

impl Recorder {
    /// Starts recording `node`'s events from now on.
    pub fn start(node: &NodeHandle) -> Recorder {
        let shared = Arc::new(Mutex::new(Recorded::default()));
        let mut events = node.subscribe();
        let rec = shared.clone();
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let mut r = rec.lock().unwrap();
                match ev {
                    NodeEvent::Stats {
                        speakers,
                        frames_sent,
                        ..
                    } => {
                        r.stats = Some(StatsSnapshot {
                            speakers,
                            frames_sent,
                            at: tokio::time::Instant::now(),
                        })
                    }
                    NodeEvent::Chat { .. } => r.chats += 1,
                    NodeEvent::CaptureStarted { unix_us } => r.capture_started_us = Some(unix_us),
                    NodeEvent::PlayoutStarted { unix_us } => r.playout_started_us = Some(unix_us),
                    NodeEvent::SourceEnded => r.source_ended = Some(tokio::time::Instant::now()),
                    NodeEvent::Left { reason } => r.left = Some(reason),
                    NodeEvent::Notice { message } | NodeEvent::Error { message } => {
                        if r.notices.len() >= 64 {
                            r.notices.remove(0);
                        }
                        r.notices.push(message);
                    }
                    _ => {}
                }
            }
        });
        Recorder(shared)
    }

    /// A copy of what was recorded so far.
    pub fn get(&self) -> Recorded {
        self.0.lock().unwrap().clone()
    }

    /// The last stats of `speaker` (by key), if it was heard.
    pub fn speaker(&self, speaker: &PublicKey) -> Option<SpeakerStats> {
        let hex = *speaker;
        self.0
            .lock()
            .unwrap()
            .stats
            .as_ref()?
            .speakers
            .iter()
            .find(|s| s.key == hex)
            .cloned()
    }

    /// Frames received from `speaker` so far (0 if never heard).
    pub fn received(&self, speaker: &PublicKey) -> u64 {
        self.speaker(speaker).map(|s| s.received).unwrap_or(0)
    }

    /// Waits for a `Stats` event that came after `after`, and returns it.
    pub async fn stats_after(&self, after: tokio::time::Instant) -> Result<StatsSnapshot> {
        let mut out = None;
        eventually(SOON, "a fresh Stats event", || {
            let s = self.get().stats.filter(|s| s.at > after);
            let found = s.is_some();
            out = s;
            async move { found }
        })
        .await?;
        Ok(out.expect("set when eventually returned Ok"))
    }
}

/// The amplitude of the `freq` Hz component of `samples` (48 kHz), by the Goertzel algorithm:
/// a full-scale sine of amplitude A at `freq` over a whole number of cycles gives about A.
pub fn tone_amplitude(samples: &[f32], freq: f32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = std::f64::consts::TAU * f64::from(freq) / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s = f64::from(*x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len() as f64
}

/// A bare `ruang_net` peer for attacks (the project's hostile-peer harness).
pub use ruang_testkit::hostile::Peer as RawPeer;

/// Starts a [`RawPeer`] on loopback QUIC.
pub async fn raw_peer(identity: Identity) -> Result<RawPeer> {
    Ok(tokio::time::timeout(SOON, RawPeer::spawn(identity))
        .await
        .context("raw peer spawn timed out")??)
}

/// An address of `node` (with `/p2p/`) whose text contains `pattern`.
pub async fn addr_of(node: &NodeHandle, pattern: &str) -> Result<ruang_net::Multiaddr> {
    let addrs = node.status().await?.addrs;
    addrs
        .iter()
        .find(|a| a.to_string().contains(pattern))
        .cloned()
        .with_context(|| format!("no address with {pattern:?} among {addrs:?}"))
}

/// The host speaks `speech_ms` of the seeded voice; the listener (in the room already) must
/// receive at least 99% of the frames sent and hear them (see [`assert_heard`]).
pub async fn hears_in_full(
    host: &NodeHandle,
    listener: &NodeHandle,
    seed: u64,
    speech_ms: u64,
    label: &str,
) -> Result<()> {
    use ruang_audio::source::{Limited, VoiceSource};
    use ruang_node::Pacing;
    let sink = SharedSink::default();
    let rec = Recorder::start(listener);
    listener.listen(Box::new(sink.clone())).await?;
    wait_present(&[host, listener], 2).await?;

    let host_rec = Recorder::start(host);
    host.listen(Box::new(SharedSink::default())).await?;
    host.speak(
        Box::new(Limited::millis(
            VoiceSource::new(seed, FrameDuration::Ms20),
            speech_ms,
        )),
        Pacing::RealTime,
    )
    .await?;
    eventually(
        Duration::from_millis(speech_ms) + SOON,
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
        .find(|s| s.key == host.key())
        .context("host not in the stats")?;
    eprintln!("{label}: {st:?} of {sent} sent");
    assert!(
        st.received * 100 >= sent * 99,
        "{label}: received {} of {sent}",
        st.received
    );

    let capture = host_rec
        .get()
        .capture_started_us
        .context("no CaptureStarted")?;
    let playout = rec.get().playout_started_us.context("no PlayoutStarted")?;
    let heard = heard_voice(seed, &sink.samples(), Some((capture, playout)), 0.5, 2.5);
    assert_heard(label, &heard);
    Ok(())
}

/// What a listener played (`heard`, its sink's samples) compared with the seeded voice the
/// speaker said, from `from_s` to `to_s` seconds into the speech. Aligned with the speaker's
/// `CaptureStarted` and the listener's `PlayoutStarted` times (`started`, unix µs) when
/// given; else the voice is searched for in the first 3 s of what was played.
pub fn heard_voice(
    seed: u64,
    heard: &[f32],
    started: Option<(u64, u64)>,
    from_s: f64,
    to_s: f64,
) -> heard::Comparison {
    let reference = voice_samples(seed, to_s as f32 + 0.1);
    let how = heard::Compare::seconds(from_s, to_s);
    let how = match started {
        Some((capture, playout)) => how.started(capture, playout),
        None => how.max_delay_ms(3_000),
    };
    heard::compare(&reference, heard, &how)
}

/// Asserts that `heard` shows the voice came through ([`heard::Comparison::is_heard`]),
/// printing the comparison first.
pub fn assert_heard(label: &str, heard: &heard::Comparison) {
    eprintln!("{label}: {heard}");
    assert!(heard.is_heard(), "{label}: the voice did not come through");
}
