//! `ruang-bench`: the benchmark harness (see `bench/README.md`).
//!
//! ```text
//! cargo build --release -p ruang -p ruang-bench
//! cargo run --release -p ruang-bench -- smoke        # a few seconds, for CI
//! cargo run --release -p ruang-bench -- latency      # mouth-to-ear, 5 scenarios
//! cargo run --release -p ruang-bench -- loss         # delivery and quality, QUIC and TCP
//! cargo run --release -p ruang-bench -- cpu          # speaker and listener CPU, RSS, bytes
//! cargo run --release -p ruang-bench -- scale        # 50/100/200 listeners in one process
//! cargo run --release -p ruang-bench -- join         # ticket -> first audio played
//! cargo run --release -p ruang-bench -- directory    # announcement propagation, 30 nodes
//! cargo run --release -p ruang-bench -- listener-cpu # per-frame cost at a listener
//! cargo run --release -p ruang-bench -- codec        # Opus settings by PESQ-WB on speech
//! cargo run --release -p ruang-bench -- playout      # jitter buffer on a modelled QUIC path
//! cargo run --release -p ruang-bench --features dred -- dred   # FEC vs DRED / deep PLC
//! ```
//!
//! Each scenario prints Markdown tables on stdout (progress on stderr) and, with
//! `--report FILE`, appends them to FILE. Run files (WAVs, child logs) go under `--out`.

mod codec;
mod cpu;
mod directory;
#[cfg(feature = "dred")]
mod dred;
mod helpers;
mod join;
mod listener_cpu;
mod netns;
mod nodes;
mod pair;
mod playout;
mod procs;
mod scale;
mod smoke;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ruang_bench::table::Table;

/// ruang benchmarks: latency, loss, CPU, scale, join and directory.
#[derive(Debug, Parser)]
#[command(name = "ruang-bench")]
struct Args {
    /// Folder for run files (WAVs, child logs).
    #[arg(long, global = true, default_value = "target/bench-runs")]
    out: PathBuf,
    /// Seconds of audio per run (latency, loss, scale) or of measurement (cpu).
    #[arg(long, global = true)]
    seconds: Option<f64>,
    /// Seed of the generated audio and of the relay.
    #[arg(long, global = true, default_value_t = 7)]
    seed: u64,
    /// Keep the generated WAV files.
    #[arg(long, global = true)]
    keep: bool,
    /// Run only the rows whose label contains this text (latency, loss, playout).
    #[arg(long, global = true)]
    only: Option<String>,
    /// Also append the tables to this Markdown file.
    #[arg(long, global = true)]
    report: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// A few seconds in process (speaker, direct and relayed listener): keeps the harness working.
    Smoke,
    /// Mouth-to-ear latency: loopback 20 and 10 ms frames, and three impaired relay paths.
    Latency,
    /// Frames received/late/lost/FEC/concealed, freezes and similarity, QUIC and TCP.
    Loss,
    /// Speaker CPU/RSS/bytes with 1/16/64 listeners; listener CPU/RSS with 1 and 3 speakers.
    Cpu {
        /// Listener counts for the speaker rows.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        listeners: Vec<usize>,
        /// Let the listeners connect to each other as well (by default the namespace drops
        /// UDP between them, so the speaker is measured alone and the helper process is not
        /// busy with a full mesh of 64 connections).
        #[arg(long)]
        mesh: bool,
    },
    /// One speaker and N listeners in this process: delivery and latency.
    Scale {
        /// Listener counts.
        #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
        listeners: Vec<usize>,
        /// Listeners that decode and record (for mouth-to-ear).
        #[arg(long, default_value_t = 5)]
        probes: usize,
        /// Presence heartbeat interval of every node, s (the node's default is 2).
        #[arg(long, default_value_t = 2.0)]
        presence_s: f64,
    },
    /// Ticket -> first audio frame played, separate processes on loopback.
    Join {
        /// Joins to time.
        #[arg(long, default_value_t = 10)]
        repeats: usize,
    },
    /// Directory propagation across N nodes (one process each).
    Directory {
        /// Nodes.
        #[arg(long, default_value_t = 30)]
        nodes: usize,
        /// Rooms announced one after another (by nodes 1, 2, ...).
        #[arg(long, default_value_t = 5)]
        rooms: usize,
        /// Seconds to let the network settle before announcing (one run per value).
        #[arg(long, value_delimiter = ',', default_value = "2,15")]
        settle: Vec<f64>,
        /// Also run every node in this process (as the net layer's test does).
        #[arg(long)]
        in_process: bool,
    },
    /// Per-frame CPU at a listener, by stage.
    ListenerCpu {
        /// Passes over the minute of audio.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Opus settings scored with PESQ-WB on spoken sentences (needs espeak-ng, python3, pesq).
    Codec,
    /// The jitter buffer and decoder over a modelled QUIC path (lanes, copies, FEC,
    /// retransmissions), by PESQ-WB, in virtual time: reproducible from the seed.
    Playout,
    /// In-band FEC against libopus's DRED and deep PLC under loss, by PESQ-WB (build with
    /// `--features dred`).
    Dred,
    /// (internal) N listener nodes in one process.
    #[command(hide = true)]
    HelperListeners {
        /// Room ticket.
        #[arg(long)]
        ticket: String,
        /// Listeners.
        #[arg(long)]
        n: usize,
        /// Decode and mix (into nothing).
        #[arg(long)]
        decode: bool,
    },
    /// (internal) the impairment relay of a loss scenario, inside a namespace.
    #[command(hide = true)]
    HelperRelay {
        /// Index into the relay scenarios.
        #[arg(long)]
        scenario: usize,
        /// Listen address.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Target address.
        #[arg(long)]
        target: std::net::SocketAddr,
        /// Bind address towards the target.
        #[arg(long)]
        back_bind: std::net::SocketAddr,
    },
    /// (internal) one directory node.
    #[command(hide = true)]
    HelperDirNode {
        /// Bootstrap peer.
        #[arg(long)]
        bootstrap: Option<String>,
        /// Directory poll period, ms.
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
    },
}

/// What every scenario gets.
pub struct Ctx {
    out: PathBuf,
    seconds: f64,
    seed: u64,
    keep: bool,
    only: Option<String>,
    listener_counts: Vec<usize>,
    scale_counts: Vec<usize>,
    probes: usize,
    presence_s: f64,
    repeats: usize,
    dir_nodes: usize,
    dir_rooms: usize,
    dir_settle: Vec<f64>,
    dir_in_process: bool,
    rounds: usize,
    isolate: bool,
}

impl Ctx {
    /// Whether a row with this label is to run (`--only`).
    pub fn wants(&self, label: &str) -> bool {
        self.only.as_deref().is_none_or(|o| label.contains(o))
    }

    /// A fresh folder for one run.
    pub fn run_dir(&self, label: &str) -> Result<PathBuf> {
        let dir = self.out.join(pair::run_dir_name(label));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

/// A tokio runtime for in-process nodes (two workers: this machine's cores).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The in-process scenarios (scale, listener-cpu) log through `RUST_LOG`, to stderr; quiet
    // by default so the tables stay readable.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let default_seconds = match &args.scenario {
        Scenario::Smoke => 4.0,
        Scenario::Cpu { .. } => 20.0,
        Scenario::Scale { .. } => 20.0,
        _ => 60.0,
    };
    let mut ctx = Ctx {
        out: args.out.clone(),
        seconds: args.seconds.unwrap_or(default_seconds),
        seed: args.seed,
        keep: args.keep,
        only: args.only.clone(),
        listener_counts: vec![1, 16, 64],
        scale_counts: vec![50, 100, 200],
        probes: 5,
        presence_s: 2.0,
        repeats: 10,
        dir_nodes: 30,
        dir_rooms: 5,
        dir_settle: vec![2.0, 15.0],
        dir_in_process: false,
        rounds: 3,
        isolate: true,
    };
    let tables: Vec<Table> = match args.scenario {
        Scenario::Smoke => smoke::smoke(&ctx)?,
        Scenario::Latency => pair::latency(&ctx)?,
        Scenario::Codec => codec::codec(&ctx)?,
        Scenario::Playout => playout::playout(&ctx)?,
        #[cfg(feature = "dred")]
        Scenario::Dred => dred::dred(&ctx)?,
        #[cfg(not(feature = "dred"))]
        Scenario::Dred => anyhow::bail!(
            "this ruang-bench was built without DRED: cargo run --release -p ruang-bench \
             --features dred -- dred"
        ),
        Scenario::Loss => pair::loss(&ctx)?,
        Scenario::Cpu { listeners, mesh } => {
            ctx.listener_counts = listeners;
            ctx.isolate = !mesh;
            cpu::cpu(&ctx)?
        }
        Scenario::Scale {
            listeners,
            probes,
            presence_s,
        } => {
            ctx.scale_counts = listeners;
            ctx.probes = probes;
            ctx.presence_s = presence_s.max(0.2);
            scale::scale(&ctx)?
        }
        Scenario::Join { repeats } => {
            ctx.repeats = repeats;
            join::join(&ctx)?
        }
        Scenario::Directory {
            nodes,
            rooms,
            settle,
            in_process,
        } => {
            ctx.dir_in_process = in_process;
            ctx.dir_nodes = nodes.max(2);
            ctx.dir_rooms = rooms.max(1);
            ctx.dir_settle = settle;
            directory::directory(&ctx)?
        }
        Scenario::ListenerCpu { rounds } => {
            ctx.rounds = rounds;
            listener_cpu::listener_cpu(&ctx)?
        }
        Scenario::HelperListeners { ticket, n, decode } => {
            runtime()?.block_on(helpers::listeners(&ticket, n, decode))?;
            return Ok(());
        }
        Scenario::HelperRelay {
            scenario,
            listen,
            target,
            back_bind,
        } => {
            helpers::relay(scenario, args.seed, listen, target, back_bind)?;
            return Ok(());
        }
        Scenario::HelperDirNode { bootstrap, poll_ms } => {
            runtime()?.block_on(helpers::dir_node(bootstrap.as_deref(), poll_ms))?;
            return Ok(());
        }
    };
    let mut text = String::new();
    for t in &tables {
        text.push_str(&t.render());
    }
    print!("{text}");
    if let Some(path) = args.report {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        writeln!(
            file,
            "\n<!-- ruang-bench {} — load average at the end: {} -->",
            std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            load.trim()
        )?;
        file.write_all(text.as_bytes())?;
    }
    Ok(())
}
