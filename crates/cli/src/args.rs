//! Command-line arguments (clap derive). `--help` on every command shows examples.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use ruang_net::Multiaddr;

const ABOUT: &str =
    "Peer-to-peer audio rooms: host, join and browse rooms with no server in the middle.";

const LONG_ABOUT: &str = "\
ruang (\"room\" in Indonesian) runs audio rooms like Clubhouse or Twitter Spaces with no company \
in the middle. Every user runs a node; rooms are announced over a peer-to-peer directory; \
speakers stream Opus audio straight to the people who hear them; hosts and moderators invite, \
mute, kick and ban with signed events that every node checks and enforces.";

const EXAMPLES: &str = "\
Examples:
  ruang demo                                  # see a whole room run on this machine, no sound card needed
  ruang host --title \"Morning news\"           # open a room, print its ticket, enter it
  ruang join ruang1abc...                     # join a room by its ticket
  ruang rooms                                 # browse rooms announced near you (LAN) or via --bootstrap
  ruang join ruang1abc... --input voice --output heard.wav --json   # a headless listener/bot
  ruang node --relay --listen /ip4/0.0.0.0/udp/4001/quic-v1          # a bootstrap + relay node

Exit status:
  0    done: you left, the room ended, or the command finished
  1    an error (the message says what); for `ruang demo`, a check that did not hold
  2    bad usage (an unknown option, a bad value), or ruang could not start (log file, runtime)
  3    you were kicked or banned from the room
  130  interrupted by Ctrl-C outside a room (the shell's code for SIGINT)";

/// The `ruang` command line.
#[derive(Debug, Parser)]
#[command(name = "ruang", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// Identity key file [default: $XDG_CONFIG_HOME/ruang/identity.key, node.key for `ruang
    /// node`]; created on first use. One process at a time may use it.
    #[arg(long, global = true, value_name = "PATH")]
    pub identity: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/ruang/config.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on (repeatable) [default: QUIC and TCP on all interfaces, any port].
    #[arg(long, global = true, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// A peer to bootstrap from, with /p2p/<peer id> (repeatable), e.g. printed by `ruang node`.
    #[arg(long, global = true, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Also be reachable through this relay node (repeatable), for peers behind NAT.
    #[arg(long = "via-relay", global = true, value_name = "MULTIADDR")]
    pub via_relay: Vec<Multiaddr>,
    /// Do not discover peers on the local network with mDNS.
    #[arg(long, global = true)]
    pub no_mdns: bool,
    /// Hide your IP address from the room: connect only through relays (--via-relay, or a
    /// --bootstrap node that is a relay), listen on nothing, no mDNS or hole punching. Only
    /// your relays and bootstrap nodes see your address.
    #[arg(long, global = true)]
    pub hide_ip: bool,
    /// Do not look for relays by yourself (by default a node reserves on up to two relays
    /// it is connected to, so that it can be reached from behind NAT with no flags).
    #[arg(long, global = true)]
    pub no_auto_relay: bool,
    /// Certificate chain (PEM, leaf first) to serve WebSocket inside TLS with: for a
    /// `--listen /ip4/0.0.0.0/tcp/443/tls/ws` that looks like any HTTPS site. Needs --tls-key.
    #[arg(long, global = true, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also trust the certificate authorities in this PEM file when connecting to a /tls/ws
    /// address (repeatable); the web's usual authorities are always trusted.
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_trust: Vec<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (errors only).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
    /// Write logs to this file instead of stderr (the terminal UI always logs to a file).
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show your identity (created on first use): peer id, fingerprint, name, key file.
    #[command(after_help = "Examples:\n  ruang id\n  ruang id --json")]
    Id {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Browse the rooms announced in the directory.
    #[command(
        after_help = "Examples:\n  ruang rooms                      # rooms on your LAN (mDNS)\n  ruang rooms --bootstrap /ip4/203.0.113.7/udp/4001/quic-v1/p2p/12D3KooW...\n  ruang rooms --json --wait 10"
    )]
    Rooms {
        /// Print JSON lines, one room each.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for announcements to arrive.
        #[arg(long, default_value_t = 4, value_name = "SECS")]
        wait: u64,
    },
    /// Open a room, print its ticket and enter it.
    ///
    /// The ticket is what others join with. In the terminal UI press t to show it; with --json
    /// it is in the `ready` event; otherwise it is printed.
    #[command(
        after_help = "Examples:\n  ruang host --title \"Morning news\" --topic \"What happened today\" --tag news --language en\n  ruang host --title \"Bot room\" --input voice --output null --json\n  ruang host --title \"Friends\" --private --successor <KEY>"
    )]
    Host {
        /// The room's title.
        #[arg(long)]
        title: String,
        /// What the room is about.
        #[arg(long, default_value = "")]
        topic: String,
        /// A tag for browsing (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Spoken language (BCP 47, e.g. en, id, pt-BR).
        #[arg(long, default_value = "")]
        language: String,
        /// Who takes over if you leave, in order (their key as `ruang id` shows it; repeatable).
        #[arg(long = "successor", value_name = "KEY")]
        successors: Vec<String>,
        /// Do not list the room in the directory: only people with the ticket can join.
        #[arg(long)]
        private: bool,
        /// In-room options.
        #[command(flatten)]
        room: RoomOptions,
    },
    /// Join a room by its ticket (or by room id from the directory).
    #[command(
        after_help = "Examples:\n  ruang join ruang1abc...\n  ruang join ruang1abc... --name Budi --input mic --output speaker\n  ruang join 3f2a...e1 --bootstrap /ip4/.../p2p/12D3KooW...   # by room id, via the directory\n  ruang join ruang1abc... --json --input silence --output heard.wav"
    )]
    Join {
        /// The room's ticket (ruang1...), its room id (64 hex digits), or `-` to read the
        /// ticket from standard input (line breaks and spaces in it are ignored).
        #[arg(value_name = "TICKET|ROOM_ID")]
        target: String,
        /// In-room options.
        #[command(flatten)]
        room: RoomOptions,
    },
    /// Run a headless node: a bootstrap peer, directory relay and (with --relay) circuit relay.
    #[command(
        after_help = "Examples:\n  ruang node --listen /ip4/0.0.0.0/udp/4001/quic-v1 --listen /ip4/0.0.0.0/tcp/4001\n  ruang node --relay --json --metrics 127.0.0.1:9464\n\nIts identity is its own ($XDG_CONFIG_HOME/ruang/node.key), not yours; packaging/ruang-node.service runs it under systemd."
    )]
    Node {
        /// Also serve as a libp2p circuit relay for peers that cannot reach each other directly.
        #[arg(long)]
        relay: bool,
        /// Print JSON lines: `ready`, then `stats` every --stats-every seconds, `stopped`.
        #[arg(long)]
        json: bool,
        /// Seconds between two `stats` lines with --json (0: none).
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        stats_every: u64,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464): connections,
        /// relay reservations and circuits, gossip messages, rooms in the directory.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// List audio devices.
    Devices,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ruang completions bash > ~/.local/share/bash-completion/completions/ruang\n  ruang completions zsh > \"${fpath[1]}/_ruang\"\n  ruang completions fish > ~/.config/fish/completions/ruang.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a folder.
    #[command(
        after_help = "Examples:\n  ruang man | man -l -\n  ruang man --out /usr/local/share/man/man1"
    )]
    Man {
        /// Write ruang.1 and ruang-<command>.1 into this folder instead of printing ruang.1.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Join a room as a listener and record it to an Ogg Opus file.
    #[command(
        after_help = "Examples:\n  ruang record ruang1abc... -o meeting.opus\n  ruang record ruang1abc... -o ten-minutes.opus --duration 600"
    )]
    Record {
        /// The room's ticket.
        #[arg(value_name = "TICKET")]
        ticket: String,
        /// The .opus file to write.
        #[arg(short, long, value_name = "FILE.opus")]
        output: PathBuf,
        /// Stop after this many seconds (default: until Ctrl-C or the room ends).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a whole room on this machine: hosting, hands, invites, mutes, a ban; then report.
    #[command(
        after_help = "Examples:\n  ruang demo\n  ruang demo --nodes 6 --seconds 40 --out demo-out"
    )]
    Demo {
        /// Number of nodes (at least 4).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Length of the demo in seconds (at least 15).
        #[arg(long, default_value_t = 24)]
        seconds: u64,
        /// Folder for what each listener heard (<name>.wav).
        #[arg(long, default_value = "demo-out", value_name = "DIR")]
        out: PathBuf,
    },
}

/// Options for being in a room.
#[derive(Debug, Args, Clone)]
pub struct RoomOptions {
    /// Your display name in the room.
    #[arg(long)]
    pub name: Option<String>,
    /// What you speak: mic, voice (a synthetic voice), tone, silence, or a WAV file [default: mic].
    #[arg(long, value_name = "mic|voice|tone|silence|FILE.wav")]
    pub input: Option<String>,
    /// What you hear: speaker, null, a .wav file or a .opus file [default: speaker].
    #[arg(long, value_name = "speaker|null|FILE.wav|FILE.opus")]
    pub output: Option<String>,
    /// Audio frame length in milliseconds (10 for lower latency, 20 for less overhead).
    #[arg(long, value_name = "10|20", value_parser = clap::builder::PossibleValuesParser::new(["10", "20"]))]
    pub frame_ms: Option<String>,
    /// Opus bitrate in kbit/s (6 to 128).
    #[arg(long, value_name = "KBPS", value_parser = clap::value_parser!(u32).range(6..=128))]
    pub bitrate: Option<u32>,
    /// Microphone: turn echo cancellation off (on by default: without headphones the room
    /// would hear itself back; only a microphone is processed, never a file or a test source).
    #[arg(long)]
    pub no_echo_cancel: bool,
    /// Microphone: turn noise suppression off (on by default).
    #[arg(long)]
    pub no_noise_suppression: bool,
    /// Microphone: turn automatic gain control off (on by default).
    #[arg(long)]
    pub no_gain_control: bool,
    /// Headless: commands as JSON lines on stdin, events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}
