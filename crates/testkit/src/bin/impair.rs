//! `impair`: a seeded UDP impairment relay between a local port and a target.
//!
//! ```text
//! cargo run --release -p ruang-testkit --bin impair -- \
//!     --listen 127.0.0.1:9000 --target 127.0.0.1:4001 \
//!     --delay-ms 30 --jitter-ms 10 --loss 0.05 --seed 7 --duration 60
//! ```
//!
//! Clients send to `--listen`; packets go to `--target` and answers come back, each direction
//! impaired the same way (or only one with `--direction`). Prints the address it listens on,
//! then what it did when the duration is over. Only loopback addresses, or private addresses
//! named with `--allow` (a test's network namespace), are accepted.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ruang_testkit::impair::{GilbertElliott, LinkConfig, Relay, RelayConfig, Spike};

/// Which directions to impair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Direction {
    /// Both directions.
    Both,
    /// Client → target only.
    Up,
    /// Target → client only.
    Down,
}

/// A seeded UDP impairment relay (delay, jitter, loss, bursty loss, bandwidth cap).
#[derive(Debug, Parser)]
#[command(name = "impair")]
struct Args {
    /// Local address clients send to (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to relay to.
    #[arg(long)]
    target: SocketAddr,
    /// One-way delay, ms.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Jitter: delay uniform in delay ± jitter, ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Let packets overtake each other when jitter allows (default: keep order).
    #[arg(long)]
    reorder: bool,
    /// Random loss probability (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Bursty (Gilbert-Elliott) loss as MEAN_LOSS:MEAN_BURST_PACKETS, e.g. 0.02:3.
    #[arg(long, value_name = "LOSS:LEN")]
    burst: Option<String>,
    /// Bandwidth cap, kbit/s.
    #[arg(long)]
    rate_kbps: Option<u64>,
    /// With a cap: longest wait in the bottleneck queue before a packet is dropped, ms.
    #[arg(long, default_value_t = 200)]
    queue_ms: u64,
    /// Delay spike: extra delay, ms (with --spike-every-s and --spike-len-ms).
    #[arg(long)]
    spike_ms: Option<u64>,
    /// Delay spike period, s.
    #[arg(long, default_value_t = 10.0)]
    spike_every_s: f64,
    /// Delay spike length, ms.
    #[arg(long, default_value_t = 1000)]
    spike_len_ms: u64,
    /// Which directions to impair.
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    direction: Direction,
    /// Seed of the randomness (same seed, same impairment).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Print what happened so far every this many seconds (0: only at the end).
    #[arg(long, default_value_t = 0.0)]
    report_s: f64,
    /// A private (namespace) address the relay may use besides loopback (repeatable).
    #[arg(long)]
    allow: Vec<IpAddr>,
    /// Bind the socket towards the target here (for tunnels that answer a fixed address).
    #[arg(long)]
    back_bind: Option<SocketAddr>,
    /// The datagrams are VXLAN frames: recompute the inner TCP/UDP checksums (veth offload).
    #[arg(long)]
    vxlan: bool,
}

fn parse_burst(text: &str) -> Result<GilbertElliott, String> {
    let (loss, len) = text
        .split_once(':')
        .ok_or_else(|| format!("--burst {text:?}: expected MEAN_LOSS:MEAN_BURST, e.g. 0.02:3"))?;
    let loss: f64 = loss.parse().map_err(|e| format!("--burst loss: {e}"))?;
    let len: f64 = len.parse().map_err(|e| format!("--burst length: {e}"))?;
    if !(0.0..1.0).contains(&loss) || len < 1.0 {
        return Err("--burst: loss must be in [0, 1) and the burst length at least 1".into());
    }
    Ok(GilbertElliott::bursts(loss, len))
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("impair: {e}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.loss) {
        return Err("--loss must be between 0 and 1".into());
    }
    if !(args.duration > 0.0 && args.duration <= 86_400.0) {
        return Err("--duration must be in (0, 86400] seconds".into());
    }
    let ms = |v: f64| (v.max(0.0) * 1_000.0) as u64;
    let link = LinkConfig {
        delay_us: ms(args.delay_ms),
        jitter_us: ms(args.jitter_ms),
        reorder: args.reorder,
        loss: args.loss,
        burst: args.burst.as_deref().map(parse_burst).transpose()?,
        rate_bps: args.rate_kbps.map(|k| k * 1_000),
        max_queue_delay_us: args.queue_ms * 1_000,
        spike: args.spike_ms.map(|extra| Spike {
            every_us: (args.spike_every_s * 1e6) as u64,
            length_us: args.spike_len_ms * 1_000,
            extra_us: extra * 1_000,
        }),
    };
    let (up, down) = match args.direction {
        Direction::Both => (link.clone(), link),
        Direction::Up => (link, LinkConfig::clean()),
        Direction::Down => (LinkConfig::clean(), link),
    };
    let relay = Relay::start(RelayConfig {
        listen: args.listen,
        target: args.target,
        up,
        down,
        seed: args.seed,
        duration: Some(Duration::from_secs_f64(args.duration)),
        allowed: args.allow,
        back_bind: args.back_bind,
        fix_vxlan_checksums: args.vxlan,
    })
    .map_err(|e| e.to_string())?;
    println!(
        "impair: listening on {} -> {} (seed {}, {} s)",
        relay.local_addr(),
        args.target,
        args.seed,
        args.duration
    );
    if args.report_s > 0.0 {
        let every = Duration::from_secs_f64(args.report_s.max(0.1));
        while !relay.is_finished() {
            std::thread::sleep(every);
            println!("{}", relay.stats());
        }
    }
    let stats = relay.wait();
    println!("{stats}");
    Ok(())
}
