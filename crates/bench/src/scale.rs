//! `scale`: one speaker and 50, 100, 200 listeners in this process (the real node code on
//! loopback QUIC). Most listeners do not decode (`decode_audio(false)`: receive, enforcement
//! and counting only); a few "probe" listeners decode and play into memory, and their
//! recordings give the mouth-to-ear delay by the chirp analysis. Delivery is every listener's
//! accepted-frame count against the frames the speaker sent.

use std::time::Duration;

use anyhow::{Context, Result};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::WavSource;
use ruang_bench::analysis::{self, Percentiles, Timing, TrainConfig, Window};
use ruang_bench::table::{Table, f};
use ruang_net::Transport;
use ruang_node::{JoinTarget, NodeEvent, NodeHandle, Pacing};
use ruang_testkit::procstat;

use crate::nodes::{self, NullSink, SharedSink, wait_for};
use crate::procs::unix_us;
use crate::{Ctx, runtime};

struct Probe {
    sink: SharedSink,
    playout_us: Option<u64>,
}

/// One row of the table.
struct Row {
    n: usize,
    joined: usize,
    served: usize,
    sent: u64,
    delivery: Vec<f64>,
    dropped: u64,
    delays: Percentiles,
    chirps: usize,
    missed: usize,
    cpu: f64,
    idle_cpu: f64,
    rss_mb: f64,
    join_s: f64,
    peers: f64,
    /// Frames the listeners dropped, summed: (rate limit, inbox full, refused by policy).
    lost_at_listeners: (u64, u64, u64),
    /// Listeners (of the others) a chat line from one listener reached within
    /// [`CHAT_WAIT`].
    chat_reach: (usize, usize),
}

/// What the scenario reads of each listener.
#[derive(Clone, Copy, Default)]
struct ListenerStatus {
    accepted: u64,
    peers: usize,
    limited: u64,
    dropped_inbound: u64,
    refused: u64,
}

/// Runs the scenario.
pub fn scale(ctx: &Ctx) -> Result<Vec<Table>> {
    let rt = runtime()?;
    let mut t = Table::new(
        format!(
            "Room scale: one speaker, N listeners, one process (loopback QUIC, presence every {} s)",
            ctx.presence_s
        ),
        &[
            "listeners",
            "joined",
            "served",
            "frames sent",
            "delivery mean %",
            "delivery min %",
            "listeners < 99 %",
            "speaker drops",
            "listener drops: rate limit / inbox full / refused",
            "m2e p50 ms (probes)",
            "m2e p99 ms (probes)",
            "chirps missed",
            "CPU % muted (of 200)",
            "CPU % speaking (of 200)",
            "RSS MB",
            "join all s",
            "peers per listener",
            "a listener's chat reached",
        ],
    );
    for n in ctx.scale_counts.clone() {
        eprintln!("[scale] {n} listeners ...");
        let r = rt.block_on(one(ctx, n))?;
        let d = Percentiles::of(&r.delivery);
        t.row(vec![
            r.n.to_string(),
            r.joined.to_string(),
            r.served.to_string(),
            r.sent.to_string(),
            f(d.mean, 2),
            f(d.min, 2),
            r.delivery.iter().filter(|v| **v < 99.0).count().to_string(),
            r.dropped.to_string(),
            format!(
                "{} / {} / {}",
                r.lost_at_listeners.0, r.lost_at_listeners.1, r.lost_at_listeners.2
            ),
            f(r.delays.p50, 1),
            f(r.delays.p99, 1),
            format!("{}/{}", r.missed, r.chirps),
            f(r.idle_cpu, 0),
            f(r.cpu, 0),
            f(r.rss_mb, 0),
            f(r.join_s, 1),
            f(r.peers, 1),
            format!("{}/{}", r.chat_reach.0, r.chat_reach.1),
        ]);
        eprintln!("{}", t.render());
    }
    t.note(format!(
        "{} s of speaking per row (the speaker speaks muted until every listener is served, \
         then unmutes for the measured window and mutes again, so sent and accepted frames are \
         counted between two quiet moments). The speaker's fan-out is set to N + 16: the \
         default, 64, would leave listeners beyond it without audio (forwarding is a later \
         issue). {} probe listeners decode and play into memory (mouth-to-ear by the chirp \
         analysis, includes the 20 ms frame, Opus lookahead and jitter buffer); the others run \
         with decode_audio(false): receive, enforcement, counting. Delivery = frames each \
         listener accepted / frames the speaker sent. Listener drops: frames that arrived and \
         were dropped, summed over listeners, by the per-sender rate limit, because the \
         node's audio inbox was full, or by policy. CPU: this whole process (every node), \
         in % of one core (2 cores = 200 %), while muted (control plane only) and while \
         speaking. Peers per listener: connected peers at the end. Chat reached: one listener \
         sends a chat line; how many of the other listeners show it within 5 s (the room's \
         control plane, relayed by gossipsub).",
        ctx.seconds, ctx.probes
    ));
    Ok(vec![t])
}

async fn one(ctx: &Ctx, n: usize) -> Result<Row> {
    let presence = Duration::from_secs_f64(ctx.presence_s);
    let speaker = nodes::node("speaker", Transport::QuicOnly, |b| {
        b.fanout(n + 16).presence_interval(presence)
    })
    .await?;
    speaker.listen(Box::new(NullSink)).await?;
    let joined = speaker.host(nodes::room("scale")).await?;
    let ticket = joined.ticket;
    let every = (n / ctx.probes.max(1)).max(1);
    let mut listeners: Vec<NodeHandle> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let join_start = std::time::Instant::now();
    let mut failed_joins = 0usize;
    let ids: Vec<usize> = (0..n).collect();
    for batch in ids.chunks(10) {
        let mut tasks = Vec::new();
        for &i in batch {
            let probe = i % every == 0 && i / every < ctx.probes;
            let t = ticket.clone();
            tasks.push(tokio::spawn(async move {
                let node = nodes::node(&format!("l{i}"), Transport::QuicOnly, |b| {
                    b.decode_audio(probe).presence_interval(presence)
                })
                .await?;
                let sink = SharedSink::default();
                // Subscribed first: PlayoutStarted comes right after listen().
                let events = node.subscribe();
                if probe {
                    node.listen(Box::new(sink.clone())).await?;
                }
                tokio::time::timeout(Duration::from_secs(60), node.join(JoinTarget::Ticket(t)))
                    .await
                    .context("join timed out")??;
                anyhow::Ok((node, probe.then_some((sink, events))))
            }));
        }
        for t in tasks {
            // A join that fails (the process is saturated) is counted, not fatal.
            let (node, probe) = match t.await? {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("[scale] a listener could not join: {e:#}");
                    failed_joins += 1;
                    continue;
                }
            };
            if let Some((sink, events)) = probe {
                probes.push(Probe {
                    sink,
                    playout_us: None,
                });
                // Playout started when listen() was called; it was sent before join.
                let p = probes.len() - 1;
                let mut ev = events;
                loop {
                    match ev.try_recv() {
                        Ok(NodeEvent::PlayoutStarted { unix_us }) => {
                            probes[p].playout_us = Some(unix_us);
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
            listeners.push(node);
        }
    }
    let join_s = join_start.elapsed().as_secs_f64();
    // Let the room settle: Kademlia's first queries connect the members to each other, and a
    // node closes the connections nothing uses 30 s after they opened (ruang-net trims them,
    // see `trim_idle_connections`). Measure the room as it stays, not as it forms.
    tokio::time::sleep(Duration::from_secs(SETTLE_S)).await;
    // Every listener present at the speaker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        let present = speaker
            .status()
            .await?
            .room
            .map(|r| r.audience.len())
            .unwrap_or(0);
        if present >= n - failed_joins {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Speak muted first, so every link opens its stream before the measured part; then
    // unmute for `seconds` and mute again. Frames sent and accepted are counted between two
    // quiet moments, so both counts are exact.
    let config = TrainConfig {
        lead_in_s: 1.0,
        seed: ctx.seed,
        ..TrainConfig::default()
    };
    let lead_s = 8.0;
    let train = analysis::chirp_train(lead_s + ctx.seconds + 3.0, &config);
    let dir = ctx.run_dir(&format!("scale-{n}"))?;
    let wav = dir.join("train.wav");
    analysis::write_wav(&wav, &train.samples)?;
    let mut sev = speaker.subscribe();
    speaker.self_mute(true).await?;
    speaker
        .speak(
            Box::new(WavSource::open(&wav, FrameDuration::Ms20)?),
            Pacing::RealTime,
        )
        .await?;
    let speak_at = tokio::time::Instant::now();
    let idle0 = procstat::sample(std::process::id()).context("/proc")?;
    let capture_us = wait_for(
        &mut sev,
        Duration::from_secs(5),
        "capture started",
        |e| match e {
            NodeEvent::CaptureStarted { unix_us } => Some(*unix_us),
            _ => None,
        },
    )
    .await?;
    let mut served = 0;
    while speak_at.elapsed() < Duration::from_secs_f64(lead_s - 3.0) {
        served = speaker.status().await?.listeners_served;
        if served >= n - failed_joins {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more seconds for the streams to open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent_before = next_stats(&mut sev).await?.0;
    let idle1 = procstat::sample(std::process::id()).context("/proc")?;
    let before = status_all(&listeners).await;
    let p0 = procstat::sample(std::process::id()).context("/proc")?;
    let unmute_us = unix_us();
    speaker.self_mute(false).await?;
    tokio::time::sleep(Duration::from_secs_f64(ctx.seconds)).await;
    speaker.self_mute(true).await?;
    let mute_us = unix_us();
    let p1 = procstat::sample(std::process::id()).context("/proc")?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (sent_after, dropped) = next_stats(&mut sev).await?;
    let after_status = status_all(&listeners).await;
    let peers = Percentiles::of(
        &after_status
            .iter()
            .map(|s| s.peers as f64)
            .collect::<Vec<_>>(),
    )
    .mean;
    let mut lost_at_listeners = (0, 0, 0);
    for (b, a) in before.iter().zip(&after_status) {
        lost_at_listeners.0 += a.limited.saturating_sub(b.limited);
        lost_at_listeners.1 += a.dropped_inbound.saturating_sub(b.dropped_inbound);
        lost_at_listeners.2 += a.refused.saturating_sub(b.refused);
    }
    let sent = sent_after.saturating_sub(sent_before);
    let delivery: Vec<f64> = before
        .iter()
        .zip(&after_status)
        .map(|(b, a)| 100.0 * a.accepted.saturating_sub(b.accepted) as f64 / sent.max(1) as f64)
        .collect();
    let mut delays = Vec::new();
    let mut chirps = 0;
    let mut missed = 0;
    for p in &probes {
        let Some(playout_us) = p.playout_us else {
            continue;
        };
        let heard = p.sink.samples();
        let timing = Timing {
            capture_unix_us: capture_us,
            playout_unix_us: playout_us,
        };
        for c in analysis::chirp_delays(&train, &heard, timing, Window::default()) {
            let said = capture_us + (c.offset as u64) * 1_000_000 / analysis::RATE as u64;
            if said < unmute_us + 300_000 || said + 300_000 > mute_us {
                continue;
            }
            chirps += 1;
            match c.delay_ms {
                Some(d) => delays.push(d),
                None => missed += 1,
            }
        }
    }
    let chat_reach = chat_reach(&listeners).await?;
    let row = Row {
        n,
        joined: listeners.len(),
        served,
        sent,
        delivery,
        dropped,
        delays: Percentiles::of(&delays),
        chirps,
        missed,
        cpu: procstat::cpu_percent(&p0, &p1),
        idle_cpu: procstat::cpu_percent(&idle0, &idle1),
        rss_mb: p1.rss_kib as f64 / 1024.0,
        join_s,
        peers,
        lost_at_listeners,
        chat_reach,
    };
    let mut stops = Vec::new();
    for l in listeners.into_iter().chain([speaker]) {
        stops.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), l.shutdown()).await;
        }));
    }
    for s in stops {
        let _ = s.await;
    }
    if !ctx.keep {
        let _ = std::fs::remove_file(&wav);
    }
    Ok(row)
}

/// How long a chat line may take to reach the audience.
const CHAT_WAIT: Duration = Duration::from_secs(5);

/// One listener (the middle one) chats; returns how many of the others showed the line
/// within [`CHAT_WAIT`], and of how many.
async fn chat_reach(listeners: &[NodeHandle]) -> Result<(usize, usize)> {
    if listeners.len() < 2 {
        return Ok((0, 0));
    }
    let from = listeners.len() / 2;
    let text = "scale: a line from the audience";
    let waits: Vec<_> = listeners
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != from)
        .map(|(_, l)| {
            let mut events = l.subscribe();
            tokio::spawn(async move {
                wait_for(&mut events, CHAT_WAIT, "chat", |e| match e {
                    NodeEvent::Chat { text: t, .. } if t == text => Some(()),
                    _ => None,
                })
                .await
                .is_ok()
            })
        })
        .collect();
    listeners[from].chat(text).await?;
    let mut reached = 0;
    let others = waits.len();
    for w in waits {
        if w.await.unwrap_or(false) {
            reached += 1;
        }
    }
    Ok((reached, others))
}

/// Seconds between the last join and the measurement.
const SETTLE_S: u64 = 40;

/// The next `Stats` of the speaker: (frames sent, frames dropped on slow links).
async fn next_stats(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
) -> Result<(u64, u64)> {
    // Skip what is already queued: the next one is at most a second away.
    while events.try_recv().is_ok() {}
    wait_for(
        events,
        Duration::from_secs(30),
        "speaker stats",
        |e| match e {
            NodeEvent::Stats {
                frames_sent,
                frames_dropped,
                ..
            } => Some((*frames_sent, *frames_dropped)),
            _ => None,
        },
    )
    .await
}

/// (frames accepted, connected peers) of each node now; queried concurrently, each under a
/// timeout (zeros for a node that does not answer).
async fn status_all(nodes: &[NodeHandle]) -> Vec<ListenerStatus> {
    let tasks: Vec<_> = nodes
        .iter()
        .cloned()
        .map(|h| {
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), h.status()).await {
                    Ok(Ok(s)) => ListenerStatus {
                        accepted: s.frames_accepted,
                        peers: s.peers,
                        limited: s.frames_limited,
                        dropped_inbound: s.frames_dropped_inbound,
                        refused: s.frames_refused,
                    },
                    _ => ListenerStatus::default(),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_default());
    }
    out
}
