//! `directory`: how fast a room announcement reaches every node (issue 4; target p99 ≤ 1 s).
//! 30 nodes, each in its own process (the bench's `helper-dir-node`), all bootstrapped from
//! node 0, mDNS off. After `settle` seconds, nodes 1, 2, ... host a room one after another;
//! every node reports when the room first shows in its directory (polling every 10 ms). The
//! propagation time of a node is that moment minus the moment `host()` returned at the host.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ruang_bench::analysis::Percentiles;
use ruang_bench::table::{Table, f};

use crate::Ctx;
use crate::procs::{Proc, Spawn};

/// Runs the scenario (a cold and a settled round of announcements).
pub fn directory(ctx: &Ctx) -> Result<Vec<Table>> {
    let mut t = Table::new(
        format!(
            "Directory propagation across {} nodes (one process each, bootstrap via node 0)",
            ctx.dir_nodes
        ),
        &[
            "nodes in",
            "settle s",
            "rooms",
            "samples",
            "not seen in 10 s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "peers per node (min/mean/max)",
        ],
    );
    for settle in ctx.dir_settle.clone() {
        let mut r = run(ctx, settle)?;
        r.insert(0, "processes".into());
        t.row(r);
        eprintln!("{}", t.render());
    }
    if ctx.dir_in_process {
        let rt = crate::runtime()?;
        for settle in ctx.dir_settle.clone() {
            let mut r = rt.block_on(in_process(ctx, settle))?;
            r.insert(0, "one process".into());
            t.row(r);
            eprintln!("{}", t.render());
        }
    }
    t.note(
        "Time from the host's `host()` returning (the announcement is published inside it) to \
         the first poll of `rooms()` that lists the room, at every other node. settle: seconds \
         between the last node starting and the first announcement (Kademlia bootstrap and \
         gossipsub meshes form meanwhile). \"one process\": the same with every node in the \
         bench process (one tokio runtime, 2 workers), as the net layer's own test runs them.",
    );
    Ok(vec![t])
}

fn row(settle: f64, rooms: usize, samples: &[f64], not_seen: usize, peers: &[f64]) -> Vec<String> {
    let q = Percentiles::of(samples);
    let p90 = {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * 0.9).ceil() as usize).clamp(1, v.len().max(1)) - 1)
            .copied()
            .unwrap_or(0.0)
    };
    let pp = Percentiles::of(peers);
    vec![
        f(settle, 0),
        rooms.to_string(),
        q.n.to_string(),
        not_seen.to_string(),
        f(q.p50, 0),
        f(p90, 0),
        f(q.p99, 0),
        f(q.max, 0),
        format!("{:.0}/{:.1}/{:.0}", pp.min, pp.mean, pp.max),
    ]
}

/// The same with every node in this process.
async fn in_process(ctx: &Ctx, settle: f64) -> Result<Vec<String>> {
    use ruang_net::Transport;
    use ruang_node::NodeHandle;
    let n = ctx.dir_nodes;
    let first = crate::nodes::node("d0", Transport::QuicOnly, |b| b).await?;
    let boot = first
        .status()
        .await?
        .addrs
        .into_iter()
        .find(|a| a.to_string().contains("127.0.0.1"))
        .context("node 0 has no loopback address")?;
    let mut nodes: Vec<NodeHandle> = vec![first];
    for i in 1..n {
        let b = boot.clone();
        nodes.push(
            crate::nodes::node(&format!("d{i}"), Transport::QuicOnly, |x| x.bootstrap(b)).await?,
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let rooms = ctx.dir_rooms.min(n - 1);
    let mut samples = Vec::new();
    let mut not_seen = 0;
    for r in 0..rooms {
        let host = 1 + r;
        let joined = nodes[host]
            .host(crate::nodes::room(&format!("dir-{r}")))
            .await?;
        let at = crate::procs::unix_us();
        let room = joined.room;
        // Every other node polls its directory every 10 ms, concurrently.
        let mut tasks = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if i == host {
                continue;
            }
            let (node, room) = (node.clone(), room);
            tasks.push(tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while tokio::time::Instant::now() < deadline {
                    if let Ok(list) = node.rooms().await
                        && list.iter().any(|l| l.room_id == room)
                    {
                        return Some(crate::procs::unix_us());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                None
            }));
        }
        for t in tasks {
            match t.await.ok().flatten() {
                Some(v) => samples.push((v as f64 - at as f64) / 1e3),
                None => not_seen += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut peers = Vec::new();
    for node in &nodes {
        if let Ok(s) = node.status().await {
            peers.push(s.peers as f64);
        }
    }
    for node in &nodes {
        let _ = tokio::time::timeout(Duration::from_secs(3), node.shutdown()).await;
    }
    if samples.is_empty() {
        bail!("no node saw any announcement");
    }
    Ok(row(settle, rooms, &samples, not_seen, &peers))
}

fn run(ctx: &Ctx, settle: f64) -> Result<Vec<String>> {
    let dir = ctx.run_dir(&format!("directory-{settle}"))?;
    let me = std::env::current_exe()?;
    let n = ctx.dir_nodes;
    let mut procs: Vec<Proc> = Vec::new();
    let spawn = |i: usize, boot: Option<&str>| -> Result<Proc> {
        let mut args = vec!["helper-dir-node".to_string()];
        if let Some(b) = boot {
            args.extend(["--bootstrap".into(), b.into()]);
        }
        Proc::spawn(Spawn {
            name: &format!("dir-{i}"),
            program: &me,
            args,
            dir: &dir,
            netns: None,
        })
    };
    let mut first = spawn(0, None)?;
    let ready = first.wait_event(Duration::from_secs(30), "ready")?;
    let boot = ready["addrs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .find(|s| s.contains("127.0.0.1") && s.contains("quic"))
        })
        .context("node 0 has no loopback QUIC address")?
        .to_string();
    procs.push(first);
    for i in 1..n {
        let mut p = spawn(i, Some(&boot))?;
        p.wait_event(Duration::from_secs(30), "ready")?;
        procs.push(p);
    }
    std::thread::sleep(Duration::from_secs_f64(settle));
    let mut samples = Vec::new();
    let mut not_seen = 0usize;
    let rooms = ctx.dir_rooms.min(n - 1);
    let mut peers = Vec::new();
    for r in 0..rooms {
        let host = 1 + r;
        procs[host].send(&format!("host dir-{r}"))?;
        let hosted = procs[host].wait_event(Duration::from_secs(20), "hosted")?;
        let room = hosted["room"].as_str().context("room")?.to_string();
        let at = hosted["after_us"].as_u64().context("after_us")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen: HashMap<usize, u64> = HashMap::new();
        for (i, p) in procs.iter_mut().enumerate() {
            if i == host {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let got = p
                .seen
                .iter()
                .find(|l| l.value["event"] == "seen" && l.value["room"] == room.as_str())
                .and_then(|l| l.value["unix_us"].as_u64());
            let got = match got {
                Some(v) => Some(v),
                None => p
                    .wait(left, "the room", |l| {
                        (l.value["event"] == "seen" && l.value["room"] == room.as_str())
                            .then(|| l.value["unix_us"].as_u64())
                            .flatten()
                    })
                    .ok(),
            };
            match got {
                Some(v) => {
                    seen.insert(i, v);
                }
                None => not_seen += 1,
            }
        }
        for v in seen.values() {
            samples.push((*v as f64 - at as f64) / 1e3);
        }
        // Let the next announcement start from a quiet network.
        std::thread::sleep(Duration::from_millis(500));
    }
    for p in procs.iter_mut() {
        p.send("peers")?;
        if let Ok(v) = p.wait_event(Duration::from_secs(5), "peers") {
            peers.push(v["peers"].as_f64().unwrap_or(0.0));
        }
    }
    for p in procs.iter_mut() {
        p.close_stdin();
    }
    for p in procs.iter_mut() {
        let _ = p.exit(Duration::from_secs(10));
    }
    if samples.is_empty() {
        bail!("no node saw any announcement");
    }
    Ok(row(settle, rooms, &samples, not_seen, &peers))
}
