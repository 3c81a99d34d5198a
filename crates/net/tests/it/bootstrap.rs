//! Twelve nodes, mDNS off, that only know one bootstrap node: all of them get a gossip message
//! on a shared topic within 5 s, and Kademlia introduces them to each other.

use std::time::Duration;

use crate::common::*;
use ruang_net::Transport;

const NODES: usize = 12;
const TOPIC: &str = "ruang/directory/1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_nodes_through_one_bootstrap() -> anyhow::Result<()> {
    let delays = run(NODES, 1).await?;
    println!("slowest delivery across {NODES} nodes: {:?}", delays.last());
    Ok(())
}

/// Stress (run on purpose, `--ignored`): 30 nodes, 20 announcements from different nodes;
/// every one must arrive within 5 s; prints p50/p99 of announce → seen. Thirty nodes in one
/// debug process on two cores are CPU-bound (set `RUANG_NET_DIAG=1` to print mesh sizes and
/// runtime lag), so these figures are an upper bound for separate processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn thirty_nodes_propagation() -> anyhow::Result<()> {
    let delays = run(30, 20).await?;
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    println!(
        "30 nodes, {} deliveries: p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        pct(0.5),
        pct(0.99),
        delays.last()
    );
    Ok(())
}

/// `n` nodes bootstrapping through node 0; `rounds` publishes from different nodes. Returns
/// every delivery delay, sorted.
async fn run(n: usize, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    init_tracing();
    let boot = node(config(Transport::QuicOnly)).await?;
    let boot_addr = addr_of(&boot.client, None).await?;

    let mut clients = vec![boot.client.clone()];
    let mut inboxes = vec![auto_validate(boot.client.clone(), boot.events, accept_all)];
    for _ in 1..n {
        let mut c = config(Transport::QuicOnly);
        c.bootstrap = vec![boot_addr.clone()];
        let n = node(c).await?;
        clients.push(n.client.clone());
        inboxes.push(auto_validate(n.client, n.events, accept_all));
    }
    for c in &clients {
        c.subscribe(TOPIC).await?;
    }
    for c in &clients[1..] {
        wait_topic_peers(c, TOPIC, 1).await?;
    }
    wait_topic_peers(&clients[0], TOPIC, n - 1).await?;
    // A couple of heartbeats for the meshes to form.
    tokio::time::sleep(Duration::from_secs(1)).await;

    if std::env::var("RUANG_NET_DIAG").is_ok() {
        let mut counts = Vec::new();
        for c in &clients {
            counts.push(c.topic_peers(TOPIC).await?.len());
        }
        println!("topic peers per node: {counts:?}");
        let mut mesh = Vec::new();
        for c in &clients {
            mesh.push(c.mesh_peers(TOPIC).await?.len());
        }
        println!("mesh peers per node: {mesh:?}");
    }
    let lag = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    if std::env::var("RUANG_NET_DIAG").is_ok() {
        let lag = lag.clone();
        tokio::spawn(async move {
            for _ in 0..3000 {
                let t = tokio::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let over = t.elapsed().as_millis() as u64 - 10;
                lag.fetch_max(over, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let mut delays = Vec::new();
    for round in 0..rounds {
        let publisher = (n / 2 + round * 7) % n;
        let payload = format!("room announcement {round}").into_bytes();
        let sent_at = tokio::time::Instant::now();
        clients[publisher].publish(TOPIC, payload.clone()).await?;
        if std::env::var("RUANG_NET_DIAG").is_ok() {
            println!("publish took {:?}", sent_at.elapsed());
        }
        let mut this_round = Vec::new();
        for (i, inbox) in inboxes.iter_mut().enumerate() {
            if i == publisher {
                continue;
            }
            let deadline = sent_at + Duration::from_secs(5);
            let got = tokio::time::timeout_at(deadline, inbox.recv())
                .await
                .map_err(|_| anyhow::anyhow!("node {i} did not get round {round} within 5 s"))?
                .expect("validator running");
            assert_eq!(got.data, payload);
            delays.push(got.at - sent_at);
            this_round.push((got.at - sent_at).as_millis());
        }
        if std::env::var("RUANG_NET_DIAG").is_ok() {
            println!(
                "round {round} from {publisher}: max runtime lag {} ms: {this_round:?}",
                lag.swap(0, std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    delays.sort();

    // Kademlia: nodes learnt of each other, not just of the bootstrap node.
    let c = clients[n - 1].clone();
    eventually(
        SOON,
        "the last node knows more than the bootstrap",
        || async {
            c.connected_peers()
                .await
                .map(|p| p.len() > 1)
                .unwrap_or(false)
        },
    )
    .await?;

    for c in &clients {
        c.shutdown().await;
    }
    Ok(delays)
}
