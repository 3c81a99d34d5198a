//! One function per command.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ruang_node::{HostOptions, JoinTarget, NodeEvent};
use ruang_proto::Ticket;
use ruang_proto::room::{EventBody, Info, RoomId};
use serde_json::json;

use crate::args::{Cli, Command};
use crate::audio_io::Output;
use crate::room;
use crate::settings::{self, Settings};
use crate::text::printable;

/// Runs the command `cli` names.
pub async fn run(cli: Cli, tui_mode: bool) -> Result<ExitCode> {
    if let Command::Demo {
        nodes,
        seconds,
        out,
    } = &cli.command
    {
        return crate::demo::run(*nodes, *seconds, out).await;
    }
    if let Command::Devices = &cli.command {
        return devices();
    }
    if let Command::Completions { shell } = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut command, "ruang", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Man { out } = &cli.command {
        return man(out.as_deref());
    }
    let mut settings = Settings::load(&cli)?;
    if !matches!(cli.command, Command::Id { .. }) {
        settings.lock_identity()?;
    }
    match cli.command {
        Command::Id { json } => id(&settings, json),
        Command::Rooms { json, wait } => rooms(&settings, json, wait).await,
        Command::Node {
            relay,
            json,
            stats_every,
            metrics,
        } => {
            let every = (stats_every > 0).then(|| Duration::from_secs(stats_every));
            node(&settings, relay, json, every, metrics).await
        }
        Command::Host {
            title,
            topic,
            tags,
            language,
            successors,
            private,
            room,
        } => {
            let successors = successors
                .iter()
                .map(|s| settings::parse_person(s))
                .collect::<Result<Vec<_>>>()
                .context("--successor")?;
            let info = Info {
                title,
                topic,
                tags,
                language,
            };
            if let Err(reason) = info.check_bounds() {
                bail!("invalid room info: {reason}");
            }
            let options = HostOptions {
                info,
                successors,
                private,
            };
            room::run(&settings, &room, room::Enter::Host(options), tui_mode).await
        }
        Command::Join { target, room } => {
            let target = if target == "-" {
                read_ticket(std::io::stdin().lock())?
            } else {
                target
            };
            let target = parse_target(&target)?;
            room::run(&settings, &room, room::Enter::Join(target), tui_mode).await
        }
        Command::Record {
            ticket,
            output,
            duration,
            name,
        } => record(&settings, &ticket, output, duration, name).await,
        Command::Demo { .. }
        | Command::Devices
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("handled above"),
    }
}

/// A ticket pasted into standard input (`ruang join -`): everything up to the end of input,
/// or up to the first empty line after some text, with whitespace and line breaks removed (a
/// terminal wraps long tickets).
fn read_ticket(input: impl std::io::BufRead) -> Result<String> {
    let mut ticket = String::new();
    for line in input.lines() {
        let line = line.context("reading the ticket from standard input")?;
        if line.trim().is_empty() && !ticket.is_empty() {
            break;
        }
        ticket.extend(line.chars().filter(|c| !c.is_whitespace()));
        if ticket.len() > 64 * 1024 {
            bail!("standard input is not a ticket (over 64 KiB)");
        }
    }
    if ticket.is_empty() {
        bail!("no ticket on standard input: paste it, then press Enter twice (or Ctrl-D)");
    }
    Ok(ticket)
}

/// `ruang man`: the manual page of `ruang` on stdout, or one page per command into `out`.
fn man(out: Option<&std::path::Path>) -> Result<ExitCode> {
    let command = <Cli as clap::CommandFactory>::command();
    match out {
        None => {
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut pages = vec![(String::from("ruang"), command.clone())];
            for sub in command.get_subcommands() {
                pages.push((
                    format!("ruang-{}", sub.get_name()),
                    sub.clone().name(format!("ruang-{}", sub.get_name())),
                ));
            }
            for (name, page) in pages {
                let path = dir.join(format!("{name}.1"));
                let mut file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                clap_mangen::Man::new(page).render(&mut file)?;
                // A closed pipe (`| head`) is not an error worth a panic.
                let _ = writeln!(std::io::stdout(), "{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A ticket, or a room id to look up in the directory.
pub fn parse_target(text: &str) -> Result<JoinTarget> {
    let text = text.trim();
    if text.len() == 64
        && let Some(id) = RoomId::from_hex(text)
    {
        return Ok(JoinTarget::Room(id));
    }
    Ok(JoinTarget::Ticket(Ticket::parse(text)?))
}

fn id(settings: &Settings, json: bool) -> Result<ExitCode> {
    let key = settings.identity.public();
    let peer = ruang_node::ids::peer_id(&key).context("identity is not an ed25519 key")?;
    let name = settings.name(None);
    if json {
        let v = json!({
            "peer_id": peer.to_string(),
            "key": key.to_hex(),
            "fingerprint": key.fingerprint().to_string(),
            "name": name,
            "key_file": settings.identity_path.display().to_string(),
            "created": settings.created,
        });
        println!("{v}");
    } else {
        if settings.created {
            println!("Created a new identity.");
        }
        println!("name:        {name}");
        println!("fingerprint: {}", key.fingerprint());
        println!("key:         {}", key.to_hex());
        println!("peer id:     {peer}");
        println!("key file:    {}", settings.identity_path.display());
        println!("\nSet your name with `name = \"...\"` in the config file, or --name in a room.");
    }
    Ok(ExitCode::SUCCESS)
}

fn devices() -> Result<ExitCode> {
    let devices = ruang_device::list_devices()?;
    if devices.is_empty() {
        println!("No audio devices found: this machine may have no sound card.");
        println!(
            "You can still take part: --input FILE.wav or --input voice, --output FILE.wav or --output null."
        );
        return Ok(ExitCode::SUCCESS);
    }
    for d in devices {
        let mut kinds = Vec::new();
        if d.is_input {
            kinds.push(if d.default_input {
                "input (default)"
            } else {
                "input"
            });
        }
        if d.is_output {
            kinds.push(if d.default_output {
                "output (default)"
            } else {
                "output"
            });
        }
        println!("{:<40} {}", d.name, kinds.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn rooms(settings: &Settings, json: bool, wait: u64) -> Result<ExitCode> {
    let node = settings.node_builder(settings.name(None)).spawn().await?;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let rooms = node.rooms().await?;
    let peers = node.status().await?.peers;
    node.shutdown().await?;
    if json {
        for r in &rooms {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rooms.is_empty() {
        if peers == 0 {
            println!(
                "No rooms found, and no peers reached: pass --bootstrap MULTIADDR (a `ruang node` address), or use a LAN where mDNS works."
            );
        } else {
            println!(
                "No rooms announced right now ({peers} peers reached). Try --wait 10, or host one: ruang host --title \"...\""
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = ruang_node::unix_ms();
    for r in &rooms {
        print!("{}", describe_listing(r, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// One room of `ruang rooms`, as printed. Everything in it but the room id and the counts
/// comes from the room's announcer, so it goes through [`printable`] (a title's escape
/// sequences must not reach the terminal).
fn describe_listing(r: &ruang_node::Listing, now: u64) -> String {
    let clean_list = |items: &[String], sep: &str| {
        items
            .iter()
            .map(|s| printable(s))
            .collect::<Vec<_>>()
            .join(sep)
    };
    let mut out = format!("{}\n", printable(&r.title));
    if !r.topic.is_empty() {
        out.push_str(&format!("  {}\n", printable(&r.topic)));
    }
    let mut facts = vec![format!(
        "host {} [{}]",
        printable(&r.host_name),
        printable(&r.host_fingerprint)
    )];
    if !r.speakers.is_empty() {
        facts.push(format!("speakers: {}", clean_list(&r.speakers, ", ")));
    }
    facts.push(format!("{} listening", r.listeners));
    if !r.language.is_empty() {
        facts.push(format!("language {}", printable(&r.language)));
    }
    if !r.tags.is_empty() {
        facts.push(format!("#{}", clean_list(&r.tags, " #")));
    }
    let minutes = now.saturating_sub(r.started_at) / 60_000;
    facts.push(format!("started {minutes} min ago"));
    out.push_str(&format!("  {}\n", facts.join(" · ")));
    out.push_str(&format!("  ruang join {}\n\n", r.room_id.to_hex()));
    out
}

async fn node(
    settings: &Settings,
    relay: bool,
    json: bool,
    every: Option<Duration>,
    metrics: Option<std::net::SocketAddr>,
) -> Result<ExitCode> {
    if relay && settings.hide_ip {
        bail!("a relay serves others at its own address: --relay and --hide-ip exclude each other");
    }
    let mut builder = settings
        .node_builder(settings.name(None))
        .relay_server(relay);
    let mut exporter = None;
    if let Some(addr) = metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
        let bound = listener.local_addr()?;
        let (registry, gauges) = crate::metrics::registry();
        builder = builder.metrics(registry.clone());
        let server = tokio::spawn(crate::metrics::serve(listener, registry));
        exporter = Some((server, gauges, format!("http://{bound}/metrics")));
    }
    let node = builder.spawn().await?;
    // Give the listeners a moment to report their addresses.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = node.status().await?;
    if json {
        let listen: Vec<String> = status.addrs.iter().map(|a| a.to_string()).collect();
        println!(
            "{}",
            json!({"event": "ready", "json_version": crate::json::VERSION,
                "peer_id": status.peer_id.to_string(), "listen": listen,
                "relay": relay, "metrics": exporter.as_ref().map(|e| e.2.clone())})
        );
    } else {
        println!(
            "ruang node {} is running{}.",
            status.peer_id,
            if relay { " as a relay" } else { "" }
        );
        println!("Others can bootstrap from (or relay via) one of:");
        for a in &status.addrs {
            println!("  --bootstrap {a}");
        }
        if let Some((_, _, url)) = &exporter {
            println!("Prometheus metrics: {url}");
        }
        println!("Ctrl-C stops it.");
    }
    let mut tick = every.filter(|_| json).map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    // The gauges are refreshed every few seconds (a scrape reads what is there).
    let mut refresh = tokio::time::interval(METRICS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stop = crate::signal::wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = refresh.tick(), if exporter.is_some() => {
                if let Some((_, gauges, _)) = &exporter
                    && let Err(e) = refresh_gauges(&node, gauges).await
                {
                    tracing::warn!("metrics: {e}");
                }
            }
            _ = async { tick.as_mut().expect("guarded").tick().await }, if tick.is_some() => {
                match node_stats(&node).await {
                    Ok(stats) => println!("{stats}"),
                    Err(e) => tracing::warn!("node stats: {e}"),
                }
            }
        }
    }
    if let Some((server, _, _)) = exporter {
        server.abort();
    }
    node.shutdown().await?;
    if json {
        println!("{}", json!({"event": "stopped"}));
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `ruang node --metrics` refreshes ruang's gauges.
const METRICS_REFRESH: Duration = Duration::from_secs(5);

async fn refresh_gauges(
    node: &ruang_node::NodeHandle,
    gauges: &crate::metrics::Gauges,
) -> Result<()> {
    let status = node.status().await?;
    let rooms = node.rooms().await?;
    gauges.connected_peers.set(status.peers as i64);
    gauges.rooms.set(rooms.len() as i64);
    gauges.audio_links.set(status.listeners_served as i64);
    Ok(())
}

/// One `stats` line of `ruang node --json`.
async fn node_stats(node: &ruang_node::NodeHandle) -> Result<serde_json::Value> {
    let status = node.status().await?;
    let rooms = node.rooms().await?;
    Ok(json!({
        "event": "stats",
        "connected_peers": status.peers,
        "rooms_in_directory": rooms.len(),
        "audio_links": status.listeners_served,
        "listen": status.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    }))
}

async fn record(
    settings: &Settings,
    ticket: &str,
    output: std::path::PathBuf,
    duration: Option<u64>,
    name: Option<String>,
) -> Result<ExitCode> {
    let ticket = Ticket::parse(ticket)?;
    let name = name.unwrap_or_else(|| format!("{} (recorder)", settings.name(None)));
    let node = settings.node_builder(name).spawn().await?;
    let out = Output::Opus(output.clone());
    if !matches!(Output::parse(&output.to_string_lossy())?, Output::Opus(_)) {
        bail!(
            "the recording must be a .opus file, got {}",
            output.display()
        );
    }
    let mut events = node.subscribe();
    let joined = node.join(JoinTarget::Ticket(ticket)).await?;
    let title = node
        .status()
        .await?
        .room
        .map(|r| r.title)
        .unwrap_or_default();
    node.listen(out.open(ruang_audio::format::FrameDuration::Ms20, None, &title)?)
        .await?;
    // Everyone sees that this room is being recorded.
    node.act(EventBody::Recording { on: true }).await?;
    eprintln!(
        "Recording \"{title}\" ({}) to {} — Ctrl-C stops.",
        joined.room,
        output.display()
    );
    let limit = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending::<()>().await,
        }
    };
    let ended = async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Ended | NodeEvent::Left { .. })
                | Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = limit => {}
        _ = ended => eprintln!("The room ended."),
        _ = crate::signal::wait_for_signal() => {}
    }
    let _ = node.act(EventBody::Recording { on: false }).await;
    node.stop_listening().await?;
    let _ = node.leave().await;
    node.shutdown().await?;
    eprintln!("Saved {}.", output.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_on_stdin_may_be_wrapped_and_ends_at_a_blank_line() {
        let pasted = "ruang1abc\n  def\r\nghi\n\nnot part of it\n";
        assert_eq!(read_ticket(pasted.as_bytes()).unwrap(), "ruang1abcdefghi");
        assert_eq!(read_ticket("\n\nruang1x\n".as_bytes()).unwrap(), "ruang1x");
        assert!(read_ticket("".as_bytes()).is_err());
        assert!(read_ticket(" \n\n".as_bytes()).is_err());
    }

    /// A room announced with escape sequences in every text field prints none of them.
    #[test]
    fn a_hostile_listing_prints_no_control_characters() {
        let evil = "\x1b[2J\x1b]0;owned\x07\u{202E}x\ny";
        let listing = ruang_node::Listing {
            room_id: ruang_proto::room::RoomId(ruang_proto::signed::Hash([0xab; 32])),
            title: evil.into(),
            topic: evil.into(),
            tags: vec![evil.into()],
            language: evil.into(),
            host_name: evil.into(),
            host_fingerprint: evil.into(),
            speakers: vec![evil.into(), evil.into()],
            listeners: 3,
            started_at: 0,
            scheduled_for: None,
        };
        let text = describe_listing(&listing, 120_000);
        let bad: Vec<char> = text
            .chars()
            .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202E}')
            .collect();
        assert!(bad.is_empty(), "{bad:?} in {text:?}");
        // Each room is still its lines: title, topic, facts, join hint, blank.
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.contains("3 listening · language"), "{text}");
    }
}
