//! Two real `ruang` processes: a host speaking a chirp train from a WAV file and a listener
//! recording a WAV, directly on loopback, through the impairment relay on loopback (QUIC), or
//! across network namespaces joined by a VXLAN tunnel that runs through the relay (QUIC and
//! TCP under the same impairment). The `latency` and `loss` scenarios are tables over these
//! runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ruang_bench::analysis::{self, ChirpDelay, Percentiles, Quality, Timing, TrainConfig, Window};
use ruang_bench::speech::{self, Scorer};
use ruang_bench::table::{Table, f, opt};
use ruang_proto::Ticket;
use ruang_testkit::impair::{GilbertElliott, LinkConfig, Relay, RelayConfig, Spike};
use serde_json::Value;

use crate::Ctx;
use crate::netns;
use crate::nodes::{self, quic_socket, ticket_via};
use crate::procs::{Proc, Spawn, last_speaker_stats};

/// Which transport the two nodes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// QUIC only.
    Quic,
    /// TCP (Noise + Yamux) only.
    Tcp,
    /// WebSocket over TCP (`/tcp/<port>/ws`, Noise + Yamux inside), as through a firewall that
    /// passes only web traffic.
    WebSocket,
}

/// The path between them.
#[derive(Clone, Debug)]
pub enum Path {
    /// Straight over loopback.
    Direct,
    /// Through the UDP impairment relay (QUIC only), same impairment both ways.
    Relay(LinkConfig),
    /// Across network namespaces through a VXLAN tunnel that runs through the relay (in its
    /// own namespace): the impairment of `relay_scenarios()[i]`, for TCP as well as QUIC.
    Tunnel(usize),
}

/// One run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Row label.
    pub label: String,
    /// Frame duration, ms (10 or 20).
    pub frame_ms: u8,
    /// The speaker's Opus bitrate, kbit/s (the node's default: 32).
    pub kbps: u32,
    /// Transport.
    pub proto: Proto,
    /// Path.
    pub path: Path,
    /// Seconds of chirps (after the lead-in).
    pub seconds: f64,
    /// Seed (relay and voice bed).
    pub seed: u64,
}

/// What one run measured.
pub struct Outcome {
    /// The run.
    pub spec: Spec,
    /// Every chirp in the measured range.
    pub chirps: Vec<ChirpDelay>,
    /// Delays of the heard chirps, ms.
    pub delays: Percentiles,
    /// The listener's last counters for the host.
    pub stats: Value,
    /// Frames the host sent (all links; one listener).
    pub frames_sent: u64,
    /// Similarity and freezes.
    pub quality: Quality,
    /// What the relay did.
    pub relay: Option<String>,
    /// Frames the host dropped on its link (slow path: queue full or stale).
    pub host_dropped: u64,
    /// Mean of the listener's jitter-buffer target over the run, ms.
    pub mean_target_ms: f64,
}

impl Outcome {
    fn stat(&self, key: &str) -> u64 {
        self.stats[key].as_u64().unwrap_or(0)
    }

    /// Frames the listener's playout moved past with or without their packet.
    fn slots(&self) -> u64 {
        self.stat("played") + self.stat("lost")
    }

    fn concealed_pct(&self) -> f64 {
        100.0 * self.stat("concealed") as f64 / self.slots().max(1) as f64
    }

    fn freezes_per_min(&self) -> f64 {
        self.quality.freezes.len() as f64 / (self.quality.seconds / 60.0).max(1e-9)
    }

    fn missed(&self) -> usize {
        self.chirps.iter().filter(|c| c.delay_ms.is_none()).count()
    }
}

/// The impaired paths through the relay (issue 6 §2): 30 ± 10 ms with 5 % random loss,
/// 30 ± 10 ms with 2 % bursty loss (mean burst 3 packets), 30 ± 10 ms with a 100 ms delay
/// spike lasting 1 s every 10 s, and 30 ± 10 ms alone (the baseline that shows what the
/// losses cost). Both directions.
pub fn relay_scenarios() -> Vec<(&'static str, LinkConfig)> {
    let base = LinkConfig {
        delay_us: 30_000,
        jitter_us: 10_000,
        ..LinkConfig::default()
    };
    vec![
        (
            "relay 30±10 ms, 5% loss",
            LinkConfig {
                loss: 0.05,
                ..base.clone()
            },
        ),
        (
            "relay 30±10 ms, 2% bursty loss",
            LinkConfig {
                burst: Some(GilbertElliott::bursts(0.02, 3.0)),
                ..base.clone()
            },
        ),
        (
            "relay 30±10 ms, 100 ms spike/10 s",
            LinkConfig {
                spike: Some(Spike {
                    every_us: 10_000_000,
                    length_us: 1_000_000,
                    extra_us: 100_000,
                }),
                ..base.clone()
            },
        ),
        ("relay 30±10 ms, no loss", base),
    ]
}

/// What one host/listener pair played.
struct Played {
    /// The listener's recording.
    heard: Vec<f32>,
    /// When capture and playout started.
    timing: Timing,
    /// The listener's last counters for the host.
    stats: Value,
    /// The listener's jitter-buffer targets for the host, one per second.
    targets: Vec<f64>,
    /// Frames the host sent and dropped.
    frames_sent: u64,
    host_dropped: u64,
    /// What the relay did.
    relay: Option<String>,
}

/// Runs one host/listener pair: the host speaks `samples` (48 kHz), the listener records.
fn play(spec: &Spec, dir: &std::path::Path, samples: &[f32], keep: bool) -> Result<Played> {
    let source = dir.join("source.wav");
    analysis::write_wav(&source, samples)?;
    let heard_path = dir.join("heard.wav");
    let frame = spec.frame_ms.to_string();
    let kbps = spec.kbps.to_string();
    let tunnel = match spec.path {
        Path::Tunnel(_) => Some(netns::Tunnel::create("tun", 41)?),
        _ => None,
    };
    let mut tunnel_relay = match (&spec.path, &tunnel) {
        (Path::Tunnel(i), Some(t)) => {
            let mut p = Proc::spawn(Spawn {
                name: "relay",
                program: &std::env::current_exe()?,
                args: vec![
                    "--seed".into(),
                    spec.seed.to_string(),
                    "helper-relay".into(),
                    "--scenario".into(),
                    i.to_string(),
                    "--listen".into(),
                    t.relay_listen.to_string(),
                    "--target".into(),
                    t.relay_target.to_string(),
                    "--back-bind".into(),
                    t.relay_back.to_string(),
                ],
                dir,
                netns: Some(&t.r),
            })?;
            p.wait_event(Duration::from_secs(10), "ready")?;
            Some(p)
        }
        _ => None,
    };
    let (ip_a, ip_b) = match &tunnel {
        Some(t) => (t.inner_a.clone(), t.inner_b.clone()),
        None => ("127.0.0.1".to_string(), "127.0.0.1".to_string()),
    };
    let listen = |ip: &str| match spec.proto {
        Proto::Quic => vec![format!("/ip4/{ip}/udp/0/quic-v1")],
        Proto::Tcp => vec![format!("/ip4/{ip}/tcp/0")],
        Proto::WebSocket => vec![format!("/ip4/{ip}/tcp/0/ws")],
    };
    let mut host = Proc::ruang(
        dir,
        "host",
        &[
            "host",
            "--title",
            "bench",
            "--json",
            "--input",
            &source.to_string_lossy(),
            "--output",
            "null",
            "--frame-ms",
            &frame,
            "--bitrate",
            &kbps,
        ],
        &listen(&ip_a),
        tunnel.as_ref().map(|t| t.a.as_str()),
    )?;
    let ready = host.wait_event(Duration::from_secs(30), "ready")?;
    let host_key = ready["key"].as_str().context("ready.key")?.to_string();
    let mut ticket: Ticket = ready["ticket"]
        .as_str()
        .context("ready.ticket")?
        .parse()
        .context("parsing the host's ticket")?;
    let host_addrs = nodes::listen_addrs(&ready);
    let relay = match &spec.path {
        Path::Relay(link) => {
            if spec.proto != Proto::Quic {
                bail!("the UDP relay carries QUIC only");
            }
            let target = quic_socket(&host_addrs).context("the host has no QUIC address")?;
            let r = Relay::start(RelayConfig::symmetric(
                "127.0.0.1:0".parse()?,
                target,
                link.clone(),
                spec.seed,
            ))?;
            ticket = ticket_via(&ticket, r.local_addr())?;
            Some(r)
        }
        _ => None,
    };
    let ticket = ticket.to_string();
    let mut listener = Proc::ruang(
        dir,
        "listener",
        &[
            "join",
            &ticket,
            "--json",
            "--input",
            "silence",
            "--output",
            &heard_path.to_string_lossy(),
            "--frame-ms",
            &frame,
        ],
        &listen(&ip_b),
        tunnel.as_ref().map(|t| t.b.as_str()),
    )?;
    listener.wait_event(Duration::from_secs(30), "ready")?;
    let playout_us = listener.wait_event(Duration::from_secs(10), "playout_started")?["unix_us"]
        .as_u64()
        .context("playout_started.unix_us")?;
    let total = samples.len() as f64 / analysis::RATE as f64;
    host.wait_event(Duration::from_secs_f64(total + 60.0), "source_ended")?;
    let capture_us = host
        .seen
        .iter()
        .find(|l| l.value["event"] == "capture_started")
        .and_then(|l| l.value["unix_us"].as_u64())
        .context("the host never said capture_started")?;
    // Let the tail play out, then leave cleanly so the WAV is complete.
    std::thread::sleep(Duration::from_millis(1500));
    listener.drain();
    host.drain();
    let mut relay_text = relay.map(|r| r.stop().to_string());
    listener.finish(Duration::from_secs(15))?;
    host.finish(Duration::from_secs(15))?;
    if let Some(p) = tunnel_relay.as_mut() {
        p.close_stdin();
        relay_text = p
            .wait_event(Duration::from_secs(10), "relay")
            .ok()
            .and_then(|v| v["text"].as_str().map(String::from));
    }
    drop(tunnel_relay);
    drop(tunnel);

    let stats = last_speaker_stats(&listener.seen, &host_key)
        .context("the listener never reported stats for the host")?;
    let targets: Vec<f64> = listener
        .seen
        .iter()
        .filter(|l| l.value["event"] == "stats")
        .filter_map(|l| {
            l.value["speakers"]
                .as_array()?
                .iter()
                .find(|s| s["key"] == host_key.as_str())?["jitter_ms"]
                .as_f64()
        })
        .collect();
    let last_host_stats = host
        .seen
        .iter()
        .rev()
        .find(|l| l.value["event"] == "stats")
        .map(|l| l.value.clone())
        .unwrap_or_default();
    let frames_sent = last_host_stats["frames_sent"].as_u64().unwrap_or(0);
    let host_dropped = last_host_stats["frames_dropped"].as_u64().unwrap_or(0);
    let heard = analysis::read_wav(&heard_path)
        .with_context(|| format!("reading {}", heard_path.display()))?;
    let timing = Timing {
        capture_unix_us: capture_us,
        playout_unix_us: playout_us,
    };
    if !keep {
        let _ = std::fs::remove_file(&source);
    }
    Ok(Played {
        heard,
        timing,
        stats,
        targets,
        frames_sent,
        host_dropped,
        relay: relay_text,
    })
}

/// Runs one host/listener pair with the chirp train and measures it.
pub fn run(ctx: &Ctx, spec: Spec) -> Result<Outcome> {
    eprintln!("[pair] {} ({} s) ...", spec.label, spec.seconds);
    let dir = ctx.run_dir(&spec.label)?;
    let config = TrainConfig {
        seed: spec.seed,
        ..TrainConfig::default()
    };
    let train = analysis::chirp_train(config.lead_in_s + spec.seconds, &config);
    let played = play(&spec, &dir, &train.samples, ctx.keep)?;
    let (heard, timing) = (&played.heard, played.timing);
    // Measure from the first chirp after the listener first heard anything.
    let first_heard = heard
        .iter()
        .position(|s| s.abs() > 0.01)
        .unwrap_or(heard.len());
    let all = analysis::chirp_delays(&train, heard, timing, Window::default());
    let chirps: Vec<ChirpDelay> = all
        .into_iter()
        .filter(|c| timing.zero_delay_pos(c.offset) > first_heard as i64)
        .collect();
    if chirps.is_empty() {
        bail!(
            "{}: no chirp in the measured range (the listener heard nothing?) — see {}",
            spec.label,
            dir.display()
        );
    }
    let delays: Vec<f64> = chirps.iter().filter_map(|c| c.delay_ms).collect();
    let from = chirps[0].offset.saturating_sub(analysis::RATE / 4);
    let to = chirps[chirps.len() - 1].offset + analysis::RATE / 4;
    // Compare with what a perfect network would have played: the source through the same
    // Opus settings (advanced by the codec's lookahead, which the chirp delays include).
    let reference = opus_reference(&train.samples, spec.frame_ms)?;
    let quality = analysis::quality(&reference, heard, timing, &chirps, from, to, 6.0);
    if let Ok(path) = std::env::var("BENCH_DUMP_FRAMES") {
        dump_frames(&path, &reference, heard, timing, &chirps, from, to)?;
    }
    let outcome = Outcome {
        delays: Percentiles::of(&delays),
        chirps,
        stats: played.stats,
        frames_sent: played.frames_sent,
        quality,
        relay: played.relay,
        host_dropped: played.host_dropped,
        mean_target_ms: Percentiles::of(&played.targets).mean,
        spec,
    };
    Ok(outcome)
}

/// PESQ-WB of speech through one pair, over the repetitions of the reference heard.
pub struct SpeechScore {
    /// Mean score.
    pub mean: f64,
    /// Worst repetition.
    pub min: f64,
    /// Repetitions scored.
    pub n: usize,
}

/// Repetitions of the spoken reference scored per speech run (after the lead-in).
const SPEECH_REPEATS: usize = 3;

/// Runs the pair again with speech ([`speech::reference`], repeated) and scores what the
/// listener heard with PESQ-WB. Each repetition is cut from the recording where a perfect
/// network would have played it plus the delay that best lines up the two signals' 10 ms
/// energy envelopes (0–1 s); PESQ aligns finer itself.
pub fn speech_run(ctx: &Ctx, spec: &Spec, reference: &[f32]) -> Result<SpeechScore> {
    let label = format!("{} speech", spec.label);
    eprintln!("[pair] {label} ...");
    let dir = ctx.run_dir(&label)?;
    let lead_in = (TrainConfig::default().lead_in_s * analysis::RATE as f64) as usize;
    let len = reference.len();
    let reps = lead_in.div_ceil(len) + SPEECH_REPEATS;
    let samples: Vec<f32> = reference.iter().copied().cycle().take(reps * len).collect();
    let played = play(spec, &dir, &samples, ctx.keep)?;
    let mut scorer = Scorer::new(&dir.join("pesq"), reference)?;
    let first_heard = played
        .heard
        .iter()
        .position(|s| s.abs() > 0.01)
        .unwrap_or(played.heard.len()) as i64;
    let mut queued = 0;
    for k in lead_in.div_ceil(len)..reps {
        let zero = played.timing.zero_delay_pos(k * len);
        if zero < first_heard {
            continue;
        }
        let Some(at) = align(reference, &played.heard, zero) else {
            continue;
        };
        let mut cut: Vec<f32> = played.heard.iter().skip(at).take(len).copied().collect();
        cut.resize(len, 0.0);
        scorer.add(&cut)?;
        queued += 1;
    }
    if queued == 0 {
        bail!(
            "{label}: no repetition of the speech was heard — see {}",
            dir.display()
        );
    }
    let scores: Vec<f64> = scorer.scores()?.into_iter().flatten().collect();
    if scores.is_empty() {
        bail!("{label}: PESQ scored nothing");
    }
    if !ctx.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(SpeechScore {
        mean: scores.iter().sum::<f64>() / scores.len() as f64,
        min: scores.iter().copied().fold(f64::INFINITY, f64::min),
        n: scores.len(),
    })
}

/// Where in `heard` the signal that starts at `zero` (no delay) is best lined up with
/// `reference`: the lag of 0–1 s (10 ms steps) that maximises the correlation of the two
/// 10 ms energy envelopes.
pub(crate) fn align(reference: &[f32], heard: &[f32], zero: i64) -> Option<usize> {
    const STEP: usize = analysis::RATE / 100;
    let envelope = |x: &[f32]| -> Vec<f64> {
        x.chunks(STEP)
            .map(|c| (c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()).sqrt())
            .collect()
    };
    let zero = usize::try_from(zero).ok()?;
    let r = envelope(reference);
    let h = envelope(heard.get(zero..)?);
    let mut best = None;
    for lag in 0..100usize {
        let Some(window) = h.get(lag..lag + r.len()) else {
            break;
        };
        let score: f64 = r.iter().zip(window).map(|(a, b)| a * b).sum();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((lag, score));
        }
    }
    best.map(|(lag, _)| zero + lag * STEP)
}

/// The spoken reference for the speech runs of a table, made once; why not when this machine
/// cannot run them (espeak-ng, python3 with pesq).
pub fn speech_reference(ctx: &Ctx) -> Result<Vec<f32>, String> {
    let ok = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok("espeak-ng", &["--version"]) {
        return Err("espeak-ng not found".into());
    }
    if !ok("python3", &["-c", "import numpy, pesq"]) {
        return Err("python3 with numpy and pesq not found (pip3 install numpy pesq)".into());
    }
    let dir = ctx
        .run_dir("speech reference")
        .map_err(|e| format!("{e:#}"))?;
    speech::reference(&dir).map_err(|e| format!("{e:#}"))
}

/// The two PESQ cells of a row (a second run of the pair with speech), or why not.
fn speech_cells(
    ctx: &Ctx,
    spec: &Spec,
    reference: &Result<Vec<f32>, String>,
    t: &mut Table,
) -> [String; 2] {
    let Ok(reference) = reference else {
        return ["–".into(), "–".into()];
    };
    match speech_run(ctx, spec, reference) {
        Ok(s) => {
            if s.n < SPEECH_REPEATS {
                t.note(format!(
                    "`{}` PESQ-WB over {} of {SPEECH_REPEATS} repetitions (the others were not \
                     heard or not scored).",
                    spec.label, s.n
                ));
            }
            [f(s.mean, 2), f(s.min, 2)]
        }
        Err(e) => {
            t.note(format!("`{}` speech run failed: {e:#}", spec.label));
            ["–".into(), "–".into()]
        }
    }
}

fn speech_note(reference: &Result<Vec<f32>, String>) -> String {
    match reference {
        Ok(_) => format!(
            "PESQ-WB: a second run of the same pair in which the host speaks {SPEECH_REPEATS} \
             repetitions of the spoken reference of `codec` after the lead-in; each \
             repetition the listener heard is scored against the reference (P.862.2 wideband, \
             scripts/pesq_score.py): mean and worst."
        ),
        Err(why) => format!("PESQ-WB columns empty: {why}."),
    }
}

/// `latency`: mouth-to-ear delay per scenario.
pub fn latency(ctx: &Ctx) -> Result<Vec<Table>> {
    let seconds = ctx.seconds;
    let mut specs = vec![
        Spec {
            label: "loopback QUIC, 20 ms frames".into(),
            frame_ms: 20,
            kbps: 32,
            proto: Proto::Quic,
            path: Path::Direct,
            seconds,
            seed: ctx.seed,
        },
        Spec {
            label: "loopback QUIC, 16 kbps, 20 ms frames".into(),
            frame_ms: 20,
            kbps: 16,
            proto: Proto::Quic,
            path: Path::Direct,
            seconds,
            seed: ctx.seed,
        },
        Spec {
            label: "loopback QUIC, 10 ms frames".into(),
            frame_ms: 10,
            kbps: 32,
            proto: Proto::Quic,
            path: Path::Direct,
            seconds,
            seed: ctx.seed,
        },
    ];
    for (label, link) in relay_scenarios() {
        specs.push(Spec {
            label: label.into(),
            frame_ms: 20,
            kbps: 32,
            proto: Proto::Quic,
            path: Path::Relay(link),
            seconds,
            seed: ctx.seed,
        });
    }
    let mut t = Table::new(
        "Mouth-to-ear latency (chirp train, two ruang processes)",
        &[
            "scenario",
            "chirps",
            "missed",
            "p50 ms",
            "p95 ms",
            "max ms",
            "min ms",
            "jb target (mean) ms",
            "bad frames %",
            "received",
            "late",
            "lost",
            "fec",
            "concealed",
            "PESQ-WB mean",
            "PESQ-WB min",
        ],
    );
    let speech_ok = speech_reference(ctx);
    for spec in specs.into_iter().filter(|s| ctx.wants(&s.label)) {
        let score = speech_cells(ctx, &spec, &speech_ok, &mut t);
        let o = run(ctx, spec)?;
        let mut row = vec![
            o.spec.label.clone(),
            o.chirps.len().to_string(),
            o.missed().to_string(),
            f(o.delays.p50, 1),
            f(o.delays.p95, 1),
            f(o.delays.max, 1),
            f(o.delays.min, 1),
            f(o.mean_target_ms, 0),
            f(
                100.0 * o.quality.frames_bad as f64 / o.quality.frames_compared.max(1) as f64,
                2,
            ),
            o.stat("received").to_string(),
            o.stat("late").to_string(),
            o.stat("lost").to_string(),
            o.stat("fec").to_string(),
            o.stat("concealed").to_string(),
        ];
        row.extend(score);
        t.row(row);
        if let Some(r) = &o.relay {
            t.note(format!("`{}` relay:\n```\n{r}\n```", o.spec.label));
        }
        eprintln!("{}", t.render());
    }
    t.note(speech_note(&speech_ok));
    t.note(
        "Delay = (playout_started + position of the chirp found by cross-correlation) − \
         (capture_started + its offset in the source). Counters: the listener's last `stats` \
         for the host. jb target: the jitter buffer's target delay (mean of the per-second values).",
    );
    Ok(vec![t])
}

/// `loss`: delivery and quality under impairment, QUIC and TCP.
pub fn loss(ctx: &Ctx) -> Result<Vec<Table>> {
    let seconds = ctx.seconds;
    let mut specs = Vec::new();
    for (label, link) in relay_scenarios() {
        specs.push(Spec {
            label: format!("QUIC, {label}"),
            frame_ms: 20,
            kbps: 32,
            proto: Proto::Quic,
            path: Path::Relay(link),
            seconds,
            seed: ctx.seed,
        });
    }
    let ns = netns::available();
    if ns {
        // The same impairments through a tunnel, for TCP and WebSocket next to QUIC (5 %
        // random, 2 % bursty).
        for i in [0usize, 1] {
            let label = relay_scenarios()[i].0.replace("relay ", "");
            let protos = [
                ("QUIC", Proto::Quic),
                ("TCP", Proto::Tcp),
                ("WebSocket", Proto::WebSocket),
            ];
            for (name, proto) in protos {
                specs.push(Spec {
                    label: format!("{name}, tunnel {label}"),
                    frame_ms: 20,
                    kbps: 32,
                    proto,
                    path: Path::Tunnel(i),
                    seconds,
                    seed: ctx.seed,
                });
            }
        }
    }
    let mut t = Table::new(
        "Delivery and quality under impairment (two ruang processes, 20 ms frames)",
        &[
            "scenario",
            "sent",
            "sender drops",
            "received",
            "late",
            "lost",
            "fec",
            "concealed",
            "concealed %",
            "freezes",
            "freezes/min",
            "bad frames %",
            "similarity mean",
            "similarity p5",
            "delay p50 ms",
            "delay p95 ms",
            "delay max ms",
            "chirps missed",
            "PESQ-WB mean",
            "PESQ-WB min",
        ],
    );
    let speech_ok = speech_reference(ctx);
    for spec in specs.into_iter().filter(|s| ctx.wants(&s.label)) {
        let score = speech_cells(ctx, &spec, &speech_ok, &mut t);
        let o = run(ctx, spec)?;
        let sim = Percentiles::of(&o.quality.window_similarity);
        let p5 = {
            let mut v = o.quality.window_similarity.clone();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 20).copied()
        };
        t.row(
            vec![
                o.spec.label.clone(),
                o.frames_sent.to_string(),
                o.host_dropped.to_string(),
                o.stat("received").to_string(),
                o.stat("late").to_string(),
                o.stat("lost").to_string(),
                o.stat("fec").to_string(),
                o.stat("concealed").to_string(),
                f(o.concealed_pct(), 2),
                o.quality.freezes.len().to_string(),
                f(o.freezes_per_min(), 2),
                f(
                    100.0 * o.quality.frames_bad as f64 / o.quality.frames_compared.max(1) as f64,
                    2,
                ),
                f(sim.mean, 3),
                opt(p5, 3),
                f(o.delays.p50, 1),
                f(o.delays.p95, 1),
                f(o.delays.max, 1),
                format!("{}/{}", o.missed(), o.chirps.len()),
            ]
            .into_iter()
            .chain(score)
            .collect(),
        );
        if let Some(r) = &o.relay {
            t.note(format!("`{}` relay:\n```\n{r}\n```", o.spec.label));
        }
        if !o.quality.freezes.is_empty() {
            t.note(format!(
                "`{}` freezes (ms): {:?}",
                o.spec.label, o.quality.freezes
            ));
        }
        eprintln!("{}", t.render());
    }
    t.note(speech_note(&speech_ok));
    if !ns {
        t.note("Tunnel rows (TCP next to QUIC) skipped: network namespaces need root and `ip`.");
    }
    t.note(
        "sent / sender drops: the host's frames handed to its link / dropped there (queue full \
         or stale). received … concealed: the listener's jitter-buffer counters for the host. \
         concealed % = concealed / (played + lost). The reference for quality is the source \
         through the same Opus settings with no loss (what a perfect network plays). bad \
         frames: 20 ms frames (with sound) whose best correlation with the reference, ±6 ms \
         around the delays of the chirps before and after, is < 0.5; a freeze is a run of bad frames longer than \
         200 ms. Similarity: the same correlation over 1 s windows (mean, 5th percentile).",
    );
    Ok(vec![t])
}

/// The source as a loss-free network would play it: through the room's Opus settings and
/// back, advanced by the codec's lookahead.
fn opus_reference(samples: &[f32], frame_ms: u8) -> Result<Vec<f32>> {
    use ruang_audio::codec::{Decoder, Encoder, EncoderConfig};
    use ruang_audio::format::FrameDuration;
    let frame = if frame_ms == 10 {
        FrameDuration::Ms10
    } else {
        FrameDuration::Ms20
    };
    let mut enc = Encoder::new(EncoderConfig {
        frame,
        ..EncoderConfig::default()
    })?;
    let mut dec = Decoder::new(frame)?;
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks_exact(frame.samples()) {
        let packet = enc.encode(chunk)?;
        out.extend_from_slice(dec.decode(&packet)?);
    }
    let lookahead = enc.lookahead().min(out.len());
    out.drain(..lookahead);
    out.resize(samples.len(), 0.0);
    Ok(out)
}

/// Debugging aid: per-frame best correlation as CSV (`BENCH_DUMP_FRAMES=file`).
fn dump_frames(
    path: &str,
    reference: &[f32],
    heard: &[f32],
    timing: Timing,
    chirps: &[ChirpDelay],
    from: usize,
    to: usize,
) -> Result<()> {
    use std::io::Write;
    analysis::write_wav(std::path::Path::new(&format!("{path}.ref.wav")), reference)?;
    analysis::write_wav(std::path::Path::new(&format!("{path}.heard.wav")), heard)?;
    let mut out = std::fs::File::create(path)?;
    writeln!(
        out,
        "# capture {} playout {}",
        timing.capture_unix_us, timing.playout_unix_us
    )?;
    for c in chirps {
        writeln!(out, "# chirp {} {} {:?}", c.index, c.offset, c.delay_ms)?;
    }
    let frame = analysis::RATE / 50;
    let mut start = from;
    while start + frame <= to {
        let q = analysis::quality(reference, heard, timing, chirps, start, start + frame, 6.0);
        writeln!(
            out,
            "{},{},{}",
            start / frame,
            q.frames_compared,
            q.window_similarity.first().copied().unwrap_or(-1.0)
        )?;
        start += frame;
    }
    Ok(())
}

/// Where a run keeps its files.
pub fn run_dir_name(label: &str) -> PathBuf {
    PathBuf::from(
        label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>(),
    )
}
