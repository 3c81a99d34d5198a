//! # ruang: the command
//!
//! The binary people run: `ruang host`, `ruang join`, `ruang rooms`, `ruang node`,
//! `ruang record`, `ruang devices`, `ruang id` and `ruang demo`. In a room it shows a terminal
//! UI ([`tui`]) or, with `--json`, speaks JSON lines on stdin/stdout ([`json`]) for bots,
//! scripts and tests. Errors are one clear line with a hint, and a non-zero exit code.

mod act;
mod args;
mod audio_io;
mod commands;
mod config;
mod demo;
mod json;
mod metrics;
mod outcome;
mod room;
mod settings;
mod signal;
mod text;
mod tui;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The terminal UI owns the screen: logs go to a file then.
    let tui_mode = matches!(&cli.command, Command::Host { room, .. } | Command::Join { room, .. } if !room.json)
        && std::io::stdout().is_terminal();
    if let Err(e) = init_logging(&cli, tui_mode) {
        eprintln!("error: cannot open the log file: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(commands::run(cli, tui_mode));
    // Background tasks (network, audio links) end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) if e.is::<signal::Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli, tui_mode: bool) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.quiet, cli.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info,ruang=info",
        (_, 2) => "debug",
        _ => "trace",
    };
    // Kademlia warns on every bootstrap attempt of a node that has no peers yet: routine for
    // a first node, noise for the user.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},libp2p_kad=error")));
    let file = match (&cli.log_file, tui_mode) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(config::default_log_file()),
        (None, false) => None,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// Prints an error as one line, plus a hint where one helps.
fn report(e: &anyhow::Error) {
    let mut line = e.to_string();
    // Add the innermost cause when the outer message does not already say it.
    if let Some(root) = e.chain().last()
        && !line.contains(&root.to_string())
    {
        line = format!("{line}: {root}");
    }
    eprintln!("error: {line}");
    if let Some(hint) = hint(e) {
        eprintln!("hint: {hint}");
    }
}

fn hint(e: &anyhow::Error) -> Option<&'static str> {
    for cause in e.chain() {
        if let Some(net) = cause.downcast_ref::<ruang_net::NetError>() {
            return Some(match net {
                ruang_net::NetError::ListenFailed { .. } => {
                    "another program uses that address or port: pick another with --listen, or omit --listen for any free port"
                }
                ruang_net::NetError::Dial { .. } | ruang_net::NetError::Timeout { .. } => {
                    "the host may be offline or behind a firewall/NAT: ask for a fresh ticket, or use --via-relay / --bootstrap (see README, Troubleshooting)"
                }
                _ => continue,
            });
        }
        if let Some(ruang_node::NodeError::Room(room)) =
            cause.downcast_ref::<ruang_node::NodeError>()
        {
            use ruang_node::session::Error as E;
            return Some(match room {
                E::Unreachable(_) => {
                    "the host may be offline or behind a firewall/NAT: ask for a fresh ticket, or use --via-relay / --bootstrap (see README, Troubleshooting)"
                }
                E::NotListed(_) => "ask the host for the room's ticket and join with it",
                E::Banned => "a moderator banned this identity from the room",
                E::Ended => "the host ended the room; `ruang rooms` lists open ones",
                _ => continue,
            });
        }
        if cause
            .downcast_ref::<ruang_proto::ticket::TicketError>()
            .is_some()
        {
            return Some(
                "copy the whole ticket (it starts with ruang1) from the host, without spaces or line breaks",
            );
        }
        if cause.downcast_ref::<ruang_device::DeviceError>().is_some() {
            return Some(
                "`ruang devices` lists what this machine has; --input FILE.wav / --output FILE.wav work without a sound card",
            );
        }
        if cause
            .downcast_ref::<ruang_proto::keyfile::KeyFileError>()
            .is_some()
        {
            return Some(
                "the identity file is yours alone: fix it, or pass another with --identity PATH",
            );
        }
    }
    None
}
