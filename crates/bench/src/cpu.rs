//! `cpu`: what one stream costs. A `ruang host` process speaking to 1, 16 and 64 listeners
//! (in one helper process, not decoding): its CPU, RSS, bytes and packets sent per second and
//! the bytes per frame beyond the Opus payload. Then a `ruang join` process hearing 1 and 3
//! speakers (in-process nodes): its CPU, RSS and CPU time per received frame.
//!
//! With root, the speaker and its listeners run in a network namespace of their own, where an
//! `nft` counter on the speaker's port counts exactly what it sends (IP and UDP headers
//! included). Without root the byte columns are left empty.

use std::time::Duration;

use anyhow::{Context, Result};
use ruang_audio::codec::{Encoder, EncoderConfig};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::VoiceSource;
use ruang_bench::analysis::{self, RATE};
use ruang_bench::table::{Table, f};
use ruang_net::Transport;
use ruang_node::{JoinTarget, NodeEvent, NodeHandle, Pacing};
use ruang_proto::room::EventBody;
use ruang_testkit::procstat::{self, Sample};

use crate::netns;
use crate::nodes::{self, wait_for};
use crate::procs::{Proc, Spawn, received_from};
use crate::{Ctx, runtime};

/// Seconds of voice in the speaker's WAV: enough for 64 joins, settling and the measurement.
const VOICE_SECONDS: f64 = 300.0;

fn voice(seconds: f64, seed: u64) -> Vec<f32> {
    let config = analysis::TrainConfig {
        lead_in_s: seconds + 1.0,
        bed_gain: 1.0,
        seed,
        ..analysis::TrainConfig::default()
    };
    // A train whose lead-in is longer than itself: voice only, no chirps.
    analysis::chirp_train(seconds, &config).samples
}

/// Mean Opus payload (bytes) of `samples` with the room's default encoder settings.
fn mean_payload(samples: &[f32]) -> Result<f64> {
    let mut enc = Encoder::new(EncoderConfig::default())?;
    let frame = FrameDuration::Ms20.samples();
    let mut total = 0usize;
    let mut n = 0usize;
    for chunk in samples.chunks_exact(frame) {
        total += enc.encode(chunk)?.len();
        n += 1;
    }
    Ok(total as f64 / n.max(1) as f64)
}

fn latest_frames_sent(p: &Proc) -> u64 {
    p.seen
        .iter()
        .rev()
        .find(|l| l.value["event"] == "stats")
        .and_then(|l| l.value["frames_sent"].as_u64())
        .unwrap_or(0)
}

/// Runs the scenario.
pub fn cpu(ctx: &Ctx) -> Result<Vec<Table>> {
    Ok(vec![speaker(ctx)?, listener(ctx)?])
}

fn speaker(ctx: &Ctx) -> Result<Table> {
    let dir = ctx.run_dir("cpu-speaker")?;
    let samples = voice(VOICE_SECONDS, ctx.seed);
    let wav = dir.join("voice.wav");
    analysis::write_wav(&wav, &samples)?;
    let payload = mean_payload(&samples)?;
    let me = std::env::current_exe()?;
    let use_ns = netns::available();
    let mut t = Table::new(
        "Speaker cost (a `ruang host` process; listeners in one helper process, not decoding)",
        &[
            "listeners",
            "CPU % of one core",
            "RSS MB",
            "frames/s",
            "delivered %",
            "kB/s sent",
            "packets/s sent",
            "wire bytes/frame/listener",
            "overhead bytes/frame",
            "packets/frame/listener",
        ],
    );
    for n in ctx.listener_counts.clone() {
        eprintln!("[cpu] speaker with {n} listeners ...");
        let ns = if use_ns {
            Some(netns::Single::create("cpu")?)
        } else {
            None
        };
        let ns_name = ns.as_ref().map(|s| s.name.as_str());
        let mut sp = Proc::ruang(
            &dir,
            "speaker",
            &[
                "host",
                "--title",
                "cpu",
                "--json",
                "--input",
                &wav.to_string_lossy(),
                "--output",
                "null",
            ],
            &["/ip4/127.0.0.1/udp/0/quic-v1".to_string()],
            ns_name,
        )?;
        let ready = sp.wait_event(Duration::from_secs(30), "ready")?;
        let ticket = ready["ticket"].as_str().context("ticket")?.to_string();
        let addrs = nodes::listen_addrs(&ready);
        if let Some(ns) = &ns {
            ns.count_port(
                nodes::first_port(&addrs).context("speaker port")?,
                ctx.isolate,
            )?;
        }
        let mut helper = Proc::spawn(Spawn {
            name: "listeners",
            program: &me,
            args: vec![
                "helper-listeners".into(),
                "--ticket".into(),
                ticket,
                "--n".into(),
                n.to_string(),
            ],
            dir: &dir,
            netns: ns_name,
        })?;
        helper.wait_event(Duration::from_secs(180), "all_joined")?;
        sp.wait(Duration::from_secs(60), "every listener served", |l| {
            (l.value["event"] == "stats" && l.value["listeners_served"].as_u64() == Some(n as u64))
                .then_some(())
        })?;
        std::thread::sleep(Duration::from_secs(3));
        let measure =
            |sp: &mut Proc, helper: &mut Proc| -> Result<(Sample, u64, u64, (u64, u64))> {
                sp.drain();
                helper.drain();
                let s = procstat::sample(sp.pid()).context("speaker gone")?;
                let frames = latest_frames_sent(sp);
                let acc = helper
                    .seen
                    .iter()
                    .rev()
                    .find(|l| l.value["event"] == "accepted")
                    .and_then(|l| l.value["total"].as_u64())
                    .unwrap_or(0);
                let counted = match &ns {
                    Some(ns) => ns.counted()?,
                    None => (0, 0),
                };
                Ok((s, frames, acc, counted))
            };
        let (s0, f0, a0, (p0, b0)) = measure(&mut sp, &mut helper)?;
        std::thread::sleep(Duration::from_secs_f64(ctx.seconds));
        let (s1, f1, a1, (p1, b1)) = measure(&mut sp, &mut helper)?;
        let secs = s1.at.duration_since(s0.at).as_secs_f64();
        let frames = (f1 - f0) as f64;
        let per_frame_listener = |v: u64| v as f64 / (frames * n as f64).max(1.0);
        t.row(vec![
            n.to_string(),
            f(procstat::cpu_percent(&s0, &s1), 2),
            f(s1.rss_kib as f64 / 1024.0, 1),
            f(frames / secs, 1),
            f(100.0 * (a1 - a0) as f64 / (frames * n as f64).max(1.0), 2),
            if ns.is_some() {
                f((b1 - b0) as f64 / secs / 1e3, 1)
            } else {
                "–".into()
            },
            if ns.is_some() {
                f((p1 - p0) as f64 / secs, 0)
            } else {
                "–".into()
            },
            if ns.is_some() {
                f(per_frame_listener(b1 - b0), 1)
            } else {
                "–".into()
            },
            if ns.is_some() {
                f(per_frame_listener(b1 - b0) - payload, 1)
            } else {
                "–".into()
            },
            if ns.is_some() {
                f(per_frame_listener(p1 - p0), 2)
            } else {
                "–".into()
            },
        ]);
        eprintln!("{}", t.render());
        helper.close_stdin();
        let _ = helper.exit(Duration::from_secs(20));
        let _ = sp.finish(Duration::from_secs(15));
    }
    t.note(format!(
        "Measured over {} s after every listener was served and 3 s of settling. Mean Opus \
         payload of this voice at the node's settings (32 kbit/s VBR, complexity {}, loss hint \
         from the listeners' reports): {payload:.1} bytes/frame; overhead = wire bytes per frame per listener − that (ruang \
         frame header 19 B + length prefix 2 B + QUIC/UDP/IP headers and AEAD tag, ACK-eliciting \
         control traffic and gossip amortised). delivered % = frames the listeners accepted / \
         (frames sent × listeners) over the same window (their counters are read once a second, \
         so ±1 s of frames).",
        ctx.seconds,
        ruang_audio::codec::EncoderConfig::default().complexity
    ));
    if !use_ns {
        t.note(
            "Byte counts need root (a network namespace with an nft counter); not measured here.",
        );
    }
    Ok(t)
}

/// How long the listener runs before its steady-state cost is measured.
const LISTENER_SETTLE: Duration = Duration::from_secs(8);

fn listener(ctx: &Ctx) -> Result<Table> {
    let dir = ctx.run_dir("cpu-listener")?;
    let rt = runtime()?;
    let mut t = Table::new(
        "Listener cost (a `ruang join --output null` process, decoding and mixing; speakers in-process)",
        &[
            "speakers",
            "CPU % of one core",
            "RSS MB",
            "peak RSS MB",
            "frames/s received",
            "CPU µs per received frame",
        ],
    );
    for k in [1usize, 3] {
        eprintln!("[cpu] listener hearing {k} speakers ...");
        let (host, speakers) = rt.block_on(speakers_room(k))?;
        let ticket = rt
            .block_on(host.status())?
            .ticket
            .context("ticket")?
            .to_string();
        let keys: Vec<String> = std::iter::once(host.key().to_hex())
            .chain(speakers.iter().map(|s| s.key().to_hex()))
            .collect();
        let mut l = Proc::ruang(
            &dir,
            "listener",
            &[
                "join", &ticket, "--json", "--input", "silence", "--output", "null",
            ],
            &["/ip4/127.0.0.1/udp/0/quic-v1".to_string()],
            None,
        )?;
        l.wait(
            Duration::from_secs(60),
            "frames from every speaker",
            |line| {
                (line.value["event"] == "stats"
                    && keys.iter().all(|k| received_from(&line.value, k) > 50))
                .then_some(())
            },
        )?;
        // The steady state: joining (Kademlia bootstrap, gossip meshes, room neighbours) is
        // over by then.
        std::thread::sleep(LISTENER_SETTLE);
        let received = |l: &Proc| -> u64 {
            l.seen
                .iter()
                .rev()
                .find(|x| x.value["event"] == "stats")
                .map(|x| keys.iter().map(|k| received_from(&x.value, k)).sum())
                .unwrap_or(0)
        };
        l.drain();
        let s0 = procstat::sample(l.pid()).context("listener gone")?;
        let r0 = received(&l);
        std::thread::sleep(Duration::from_secs_f64(ctx.seconds));
        l.drain();
        let s1 = procstat::sample(l.pid()).context("listener gone")?;
        let r1 = received(&l);
        let secs = s1.at.duration_since(s0.at).as_secs_f64();
        let cpu_s = (s1.ticks - s0.ticks) as f64 / procstat::CLK_TCK;
        t.row(vec![
            k.to_string(),
            f(procstat::cpu_percent(&s0, &s1), 2),
            f(s1.rss_kib as f64 / 1024.0, 1),
            f(s1.hwm_kib as f64 / 1024.0, 1),
            f((r1 - r0) as f64 / secs, 1),
            f(cpu_s * 1e6 / (r1 - r0).max(1) as f64, 1),
        ]);
        eprintln!("{}", t.render());
        let _ = l.finish(Duration::from_secs(15));
        rt.block_on(async {
            for s in speakers.iter().chain([&host]) {
                let _ = tokio::time::timeout(Duration::from_secs(3), s.shutdown()).await;
            }
        });
    }
    t.note(format!(
        "Measured over {} s, from {} s after frames from every speaker arrived. CPU is utime + stime of \
         the listener process from /proc (10 ms ticks); received frames from its `stats` events. \
         The listener plays into `null`: receive, enforcement, jitter buffer, Opus decode, mix.",
        ctx.seconds,
        LISTENER_SETTLE.as_secs()
    ));
    let _ = RATE;
    Ok(t)
}

/// A room whose host speaks, with `k - 1` more speakers on stage, all speaking a synthetic
/// voice, in this process.
async fn speakers_room(k: usize) -> Result<(NodeHandle, Vec<NodeHandle>)> {
    let host = nodes::node("host", Transport::QuicOnly, |b| b).await?;
    host.host(nodes::room("cpu")).await?;
    let ticket = host.status().await?.ticket.context("ticket")?;
    let mut speakers = Vec::new();
    for i in 1..k {
        let s = nodes::node(&format!("s{i}"), Transport::QuicOnly, |b| b).await?;
        let mut events = s.subscribe();
        s.join(JoinTarget::Ticket(ticket.clone())).await?;
        let key = s.key();
        // The host must see the new member before it can invite them.
        let mut hev = host.subscribe();
        let hex = key;
        if !host
            .status()
            .await?
            .room
            .is_some_and(|r| r.audience.iter().any(|p| p.key == hex))
        {
            wait_for(&mut hev, Duration::from_secs(20), "the new member", |e| {
                matches!(e, NodeEvent::State(v) if v.audience.iter().any(|p| p.key == hex))
                    .then_some(())
            })
            .await?;
        }
        host.act(EventBody::InviteSpeaker { who: key }).await?;
        wait_for(
            &mut events,
            Duration::from_secs(20),
            "the invitation",
            |e| {
                matches!(e, NodeEvent::State(v) if v.invited.iter().any(|p| p.key == hex))
                    .then_some(())
            },
        )
        .await?;
        s.act(EventBody::AcceptInvite).await?;
        speakers.push(s);
    }
    for (i, s) in std::iter::once(&host).chain(speakers.iter()).enumerate() {
        s.speak(
            Box::new(VoiceSource::new(100 + i as u64, FrameDuration::Ms20)),
            Pacing::RealTime,
        )
        .await?;
    }
    Ok((host, speakers))
}
