//! A room's audience is not connected all to all: listeners are Kademlia clients, so the
//! host's routing table (full of members) does not send every listener's lookups to every
//! other listener. Each member keeps a few room neighbours instead, and what an audience
//! member says reaches the whole audience through them.

use std::time::Duration;

use crate::common::*;
use anyhow::Result;
use ruang_node::{NodeEvent, NodeHandle};

const LISTENERS: usize = 16;

async fn peers(nodes: &[NodeHandle]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        out.push(n.status().await?.peers);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_keep_a_few_neighbours_and_hear_each_other() -> Result<()> {
    let host = node("host").await?;
    let listeners = nodes("listener", LISTENERS).await?;
    let joined = host.host(room("audience")).await?;
    for l in &listeners {
        join(l, &joined.ticket).await?;
    }
    let all: Vec<&NodeHandle> = std::iter::once(&host).chain(&listeners).collect();
    wait_present(&all, LISTENERS + 1).await?;
    // Every listener gets neighbours besides the host (one dial a second).
    eventually(
        Duration::from_secs(20),
        "every listener has 2 room peers besides the host",
        || async {
            peers(&listeners)
                .await
                .is_ok_and(|p| p.iter().all(|n| *n >= 3))
        },
    )
    .await?;
    // Kademlia's bootstrap after the first connection starts within a second (throttle
    // 500 ms): give it time to dial whatever it would (as a server, every member).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = peers(&listeners).await?;
    let mean = p.iter().sum::<usize>() as f64 / p.len() as f64;
    assert!(
        mean <= 11.0,
        "listeners have {mean:.1} peers on average ({p:?}); a few neighbours and the host expected"
    );
    assert_eq!(host.status().await?.peers, LISTENERS);

    // A chat line from one listener reaches every other listener.
    let mut subs: Vec<_> = listeners[1..].iter().map(|l| l.subscribe()).collect();
    listeners[0].chat("hello from the audience").await?;
    for (i, events) in subs.iter_mut().enumerate() {
        wait_for(events, Duration::from_secs(10), |e| match e {
            NodeEvent::Chat { text, .. } if text == "hello from the audience" => Some(()),
            _ => None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("listener {}: {e}", i + 1))?;
    }
    shutdown_all(&all).await;
    Ok(())
}
