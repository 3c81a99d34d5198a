//! A node that stops reading its Events: the event loop parks a bounded number of events and
//! then stops reading the network, but keeps answering commands; once the node reads again,
//! events flow again. Nothing grows without bound.

use std::time::Duration;

use crate::common::*;
use ruang_net::{Event, Transport, limits};

const TOPIC: &str = "ruang/test/backpressure";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_node_gets_backpressure_not_a_hang() -> anyhow::Result<()> {
    init_tracing();
    let a = node(config(Transport::Memory)).await?;
    let mut b = node(config(Transport::Memory)).await?;
    connect(&a.client, &b.client).await?;
    a.client.subscribe(TOPIC).await?;
    b.client.subscribe(TOPIC).await?;
    wait_topic_peers(&a.client, TOPIC, 1).await?;

    // B does not read its events while A publishes more than the queue and overflow hold.
    let total = limits::EVENT_QUEUE_CAP + limits::EVENT_OVERFLOW_CAP + 500;
    for i in 0..total {
        // Publishing may start failing once B stops reading (queues to B full): fine.
        let _ = a
            .client
            .publish(TOPIC, format!("msg {i}").into_bytes())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // B's event loop still answers at once.
    let started = tokio::time::Instant::now();
    let peers = b.client.connected_peers().await?;
    assert!(peers.contains(&a.id()));
    assert!(started.elapsed() < Duration::from_secs(1));

    // Now B reads: what was parked arrives, then the network is read again.
    let mut gossip = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        while gossip < total {
            match tokio::time::timeout(Duration::from_secs(3), b.events.recv()).await {
                Ok(Some(Event::Gossip { .. })) => gossip += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    })
    .await;
    assert!(drained.is_ok());
    assert!(
        gossip > limits::EVENT_QUEUE_CAP + limits::EVENT_OVERFLOW_CAP,
        "only {gossip} of {total} arrived: the network was not read again"
    );
    println!("{gossip} of {total} gossip messages delivered to a node that paused");
    a.client.shutdown().await;
    b.client.shutdown().await;
    Ok(())
}
