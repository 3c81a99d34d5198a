//! The bench's own helper processes (hidden subcommands): many listener nodes in one process,
//! and one directory node. They speak JSON lines on stdout and stop at EOF on stdin (or after
//! their time limit).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use ruang_net::{Multiaddr, Transport};
use ruang_node::{JoinTarget, NodeHandle};
use ruang_proto::Ticket;
use serde_json::json;

use crate::nodes::{self, NullSink};
use crate::procs::unix_us;

/// Longest a helper lives, whatever happens to its parent.
const HELPER_MAX_LIFE: Duration = Duration::from_secs(1_800);

fn say(v: serde_json::Value) {
    println!("{v}");
}

/// Sets the returned flag when stdin reaches EOF (the parent closed it or died).
fn stdin_closed() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
        f.store(true, Ordering::Relaxed);
    });
    flag
}

/// Lines on stdin, as a channel (for helpers that take commands).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<Option<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if tx.blocking_send(Some(line.trim().to_string())).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = tx.blocking_send(None);
                    return;
                }
            }
        }
    });
    rx
}

/// `helper-listeners`: `n` listener nodes join `ticket`; prints `joined`, then `accepted`
/// (frames accepted by all of them) every second until stdin closes.
pub async fn listeners(ticket: &str, n: usize, decode: bool) -> Result<()> {
    let ticket: Ticket = ticket.parse().context("parsing the ticket")?;
    let eof = stdin_closed();
    let mut handles: Vec<NodeHandle> = Vec::new();
    // Join in small batches: each join dials the host and syncs the room log.
    for batch in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut tasks = Vec::new();
        for &i in batch {
            let t = ticket.clone();
            tasks.push(tokio::spawn(async move {
                let node = nodes::node(&format!("l{i}"), Transport::QuicOnly, |b| {
                    b.decode_audio(decode)
                })
                .await?;
                if decode {
                    node.listen(Box::new(NullSink)).await?;
                }
                tokio::time::timeout(Duration::from_secs(30), node.join(JoinTarget::Ticket(t)))
                    .await
                    .context("join timed out")??;
                anyhow::Ok(node)
            }));
        }
        for t in tasks {
            handles.push(t.await??);
        }
        say(json!({"event": "joined", "count": handles.len()}));
    }
    say(json!({"event": "all_joined", "count": handles.len()}));
    let started = std::time::Instant::now();
    while !eof.load(Ordering::Relaxed) && started.elapsed() < HELPER_MAX_LIFE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut per: Vec<u64> = Vec::with_capacity(handles.len());
        for h in &handles {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), h.status()).await {
                per.push(s.frames_accepted);
            }
        }
        say(json!({
            "event": "accepted",
            "total": per.iter().sum::<u64>(),
            "min": per.iter().min().copied().unwrap_or(0),
            "max": per.iter().max().copied().unwrap_or(0),
            "nodes": per.len(),
        }));
    }
    for h in &handles {
        let _ = tokio::time::timeout(Duration::from_secs(2), h.shutdown()).await;
    }
    Ok(())
}

/// `helper-dir-node`: one node, bootstrapped from `bootstrap`; prints `ready` with its
/// addresses, then `seen` (with the unix µs) for every room that appears in its directory
/// (polled every `poll_ms`). `host <title>` on stdin hosts a room (printing `hosted` with the
/// unix µs before and after); `peers` prints the connected peer count. Stops at EOF.
pub async fn dir_node(bootstrap: Option<&str>, poll_ms: u64) -> Result<()> {
    let boot: Option<Multiaddr> = bootstrap
        .map(|a| a.parse())
        .transpose()
        .context("parsing --bootstrap")?;
    let node = nodes::node("d", Transport::QuicOnly, |b| match boot {
        Some(a) => b.bootstrap(a),
        None => b,
    })
    .await?;
    let status = node.status().await?;
    say(json!({
        "event": "ready",
        "peer_id": status.peer_id.to_string(),
        "addrs": status.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    }));
    let mut lines = stdin_lines();
    let mut seen: HashSet<ruang_proto::room::RoomId> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(poll_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = std::time::Instant::now();
    while started.elapsed() < HELPER_MAX_LIFE {
        tokio::select! {
            line = lines.recv() => match line.flatten() {
                None => break,
                Some(cmd) if cmd.starts_with("host ") => {
                    let before = unix_us();
                    let joined = node.host(nodes::room(cmd[5..].trim())).await?;
                    let after = unix_us();
                    seen.insert(joined.room);
                    say(json!({"event": "hosted", "room": joined.room.to_hex(), "before_us": before, "after_us": after}));
                }
                Some(cmd) if cmd == "peers" => {
                    let s = node.status().await?;
                    say(json!({"event": "peers", "peers": s.peers}));
                }
                Some(_) => {}
            },
            _ = tick.tick() => {
                if let Ok(Ok(rooms)) = tokio::time::timeout(Duration::from_secs(2), node.rooms()).await {
                    let now = unix_us();
                    for r in rooms {
                        if seen.insert(r.room_id) {
                            say(json!({"event": "seen", "room": r.room_id.to_hex(), "unix_us": now}));
                        }
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), node.shutdown()).await;
    Ok(())
}

/// `helper-relay`: the impairment relay of `pair::relay_scenarios()[scenario]`, bound at the
/// given (namespace) addresses; prints `ready`, and `relay` with what it did when stdin
/// closes.
pub fn relay(
    scenario: usize,
    seed: u64,
    listen: std::net::SocketAddr,
    target: std::net::SocketAddr,
    back_bind: std::net::SocketAddr,
) -> Result<()> {
    use ruang_testkit::impair::{Relay, RelayConfig};
    let (label, link) = crate::pair::relay_scenarios()
        .into_iter()
        .nth(scenario)
        .context("no such relay scenario")?;
    let mut config = RelayConfig::symmetric(listen, target, link, seed);
    config.allowed = vec![listen.ip(), target.ip(), back_bind.ip()];
    config.back_bind = Some(back_bind);
    config.fix_vxlan_checksums = true;
    config.duration = Some(HELPER_MAX_LIFE);
    let relay = Relay::start(config)?;
    say(json!({"event": "ready", "scenario": label, "listen": relay.local_addr().to_string()}));
    let eof = stdin_closed();
    while !eof.load(Ordering::Relaxed) && !relay.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = relay.stop();
    say(json!({
        "event": "relay",
        "text": stats.to_string(),
        "up_in": stats.up.packets_in,
        "up_dropped": stats.up.dropped(),
        "down_in": stats.down.packets_in,
        "down_dropped": stats.down.dropped(),
    }));
    Ok(())
}
