//! `smoke`: a few seconds that exercise the whole harness without the `ruang` binary and
//! without asserting speed, for CI: an in-process speaker, one listener on loopback and one
//! through the impairment relay, a short chirp train, the chirp analysis on both recordings.
//! It fails only if the harness is broken (nothing heard, no chirp found).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::WavSource;
use ruang_bench::analysis::{self, Percentiles, Timing, TrainConfig, Window};
use ruang_bench::table::{Table, f};
use ruang_net::Transport;
use ruang_node::{JoinTarget, NodeEvent, Pacing};
use ruang_testkit::impair::{LinkConfig, Relay, RelayConfig};

use crate::nodes::{self, SharedSink, quic_socket, ticket_via, wait_for};
use crate::{Ctx, runtime};

/// Runs the scenario.
pub fn smoke(ctx: &Ctx) -> Result<Vec<Table>> {
    let rt = runtime()?;
    rt.block_on(run(ctx))
}

async fn run(ctx: &Ctx) -> Result<Vec<Table>> {
    let dir = ctx.run_dir("smoke")?;
    let config = TrainConfig {
        lead_in_s: 1.5,
        seed: ctx.seed,
        ..TrainConfig::default()
    };
    let seconds = ctx.seconds.min(10.0);
    let train = analysis::chirp_train(config.lead_in_s + seconds, &config);
    let wav = dir.join("train.wav");
    analysis::write_wav(&wav, &train.samples)?;

    let speaker = nodes::node("speaker", Transport::QuicOnly, |b| b).await?;
    let joined = speaker.host(nodes::room("smoke")).await?;
    let addrs: Vec<String> = speaker
        .status()
        .await?
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect();
    let target = quic_socket(&addrs).context("the speaker has no QUIC address")?;
    let relay = Relay::start(RelayConfig::symmetric(
        "127.0.0.1:0".parse()?,
        target,
        LinkConfig {
            delay_us: 20_000,
            jitter_us: 5_000,
            loss: 0.03,
            ..LinkConfig::default()
        },
        ctx.seed,
    ))?;
    let via = ticket_via(&joined.ticket, relay.local_addr())?;
    let mut listeners = Vec::new();
    for (name, ticket) in [("direct", joined.ticket.clone()), ("relay", via)] {
        let node = nodes::node(name, Transport::QuicOnly, |b| b).await?;
        let sink = SharedSink::default();
        let mut events = node.subscribe();
        node.listen(Box::new(sink.clone())).await?;
        let playout = wait_for(
            &mut events,
            Duration::from_secs(5),
            "playout",
            |e| match e {
                NodeEvent::PlayoutStarted { unix_us } => Some(*unix_us),
                _ => None,
            },
        )
        .await?;
        tokio::time::timeout(
            Duration::from_secs(20),
            node.join(JoinTarget::Ticket(ticket)),
        )
        .await
        .context("join timed out")??;
        listeners.push((name, node, sink, playout));
    }
    // Both listeners present at the speaker before it speaks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while speaker
        .status()
        .await?
        .room
        .map(|r| r.audience.len())
        .unwrap_or(0)
        < 2
    {
        if tokio::time::Instant::now() > deadline {
            bail!("the speaker never saw both listeners");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sev = speaker.subscribe();
    speaker
        .speak(
            Box::new(WavSource::open(&wav, FrameDuration::Ms20)?),
            Pacing::RealTime,
        )
        .await?;
    let mut capture = None;
    wait_for(
        &mut sev,
        Duration::from_secs_f64(seconds + 30.0),
        "the end of the source",
        |e| match e {
            NodeEvent::CaptureStarted { unix_us } => {
                capture = Some(*unix_us);
                None
            }
            NodeEvent::SourceEnded => Some(()),
            _ => None,
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let capture = capture.context("no CaptureStarted")?;
    let mut t = Table::new(
        "Smoke (in-process speaker, a direct and a relayed listener; not a measurement)",
        &["listener", "chirps heard", "delay p50 ms", "delay max ms"],
    );
    for (name, node, sink, playout) in &listeners {
        let timing = Timing {
            capture_unix_us: capture,
            playout_unix_us: *playout,
        };
        let delays: Vec<f64> =
            analysis::chirp_delays(&train, &sink.samples(), timing, Window::default())
                .iter()
                .filter_map(|c| c.delay_ms)
                .collect();
        let p = Percentiles::of(&delays);
        t.row(vec![
            name.to_string(),
            format!("{}/{}", delays.len(), train.chirps.len()),
            f(p.p50, 1),
            f(p.max, 1),
        ]);
        if delays.is_empty() {
            bail!("smoke: the {name} listener heard no chirp — the harness is broken");
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), node.shutdown()).await;
    }
    let stats = relay.stop();
    if stats.up.packets_in == 0 || stats.down.packets_in == 0 {
        bail!("smoke: nothing went through the relay: {stats}");
    }
    t.note(format!("relay:\n```\n{stats}\n```"));
    let _ = tokio::time::timeout(Duration::from_secs(3), speaker.shutdown()).await;
    Ok(vec![t])
}
