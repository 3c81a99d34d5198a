//! A room's audience does not connect to each other: listeners are Kademlia clients, so the
//! host's routing table (full of members) does not send every listener's lookups to every
//! other listener. What an audience member says still reaches the rest of the audience,
//! relayed by the host.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use ruang_node::NodeEvent;

const LISTENERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_connect_to_the_stage_only_and_still_hear_each_other() -> Result<()> {
    let host = node("host").await?;
    let listeners = nodes("listener", LISTENERS).await?;
    let joined = host.host(room("audience")).await?;
    for l in &listeners {
        join(l, &joined.ticket).await?;
    }
    let all: Vec<&ruang_node::NodeHandle> = std::iter::once(&host).chain(&listeners).collect();
    wait_present(&all, LISTENERS + 1).await?;
    // Kademlia's bootstrap after the first connection starts within a second (throttle
    // 500 ms); give it time to dial whatever it would.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, l) in listeners.iter().enumerate() {
        let peers = l.status().await?.peers;
        assert!(
            peers <= 1,
            "listener {i} is connected to {peers} peers; only the host expected"
        );
    }
    assert_eq!(host.status().await?.peers, LISTENERS);

    // A chat line from one listener reaches every other listener through the host.
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
