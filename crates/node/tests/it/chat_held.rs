//! Chat said while nobody else in the room is reachable is not lost: the node holds it and
//! sends it when a peer subscribes to the room (as when a joiner's first words race the
//! subscriptions of the members it just connected to), within `session::HELD_TTL_MS`.

use std::time::Duration;

use crate::common::*;
use anyhow::Result;
use ruang_node::NodeEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_said_to_an_empty_room_reaches_the_first_who_joins_in_order() -> Result<()> {
    init_tracing();
    let host = node("host").await?;
    let guest = node("guest").await?;
    let joined = host.host(room("quiet")).await?;
    host.chat("anyone there?").await?;
    host.chat("hello?").await?;

    let mut guest_events = guest.subscribe();
    join(&guest, &joined.ticket).await?;
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let line = wait_for(&mut guest_events, SOON, |e| match e {
            NodeEvent::Chat { text, from, .. } => Some((*from, text.clone())),
            _ => None,
        })
        .await?;
        lines.push(line);
    }
    let host_key = host.key();
    assert_eq!(
        lines,
        [
            (host_key, "anyone there?".to_string()),
            (host_key, "hello?".to_string())
        ],
        "both lines, in order"
    );
    shutdown_all(&[&guest, &host]).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_line_nobody_could_receive_is_reported_after_ten_seconds() -> Result<()> {
    init_tracing();
    let host = node("host").await?;
    host.host(room("empty")).await?;
    let mut events = host.subscribe();
    let said = tokio::time::Instant::now();
    host.chat("hello?").await?;
    let message = wait_for(&mut events, Duration::from_secs(13), |e| match e {
        NodeEvent::Error { message } => Some(message.clone()),
        _ => None,
    })
    .await?;
    let after = said.elapsed();
    assert!(
        message.contains("1 chat message(s) not delivered"),
        "{message}"
    );
    // Not before its time (the node's clock counts whole milliseconds, so "10 s" can end a
    // fraction of one early by the test's clock; CI saw 9.99987 s).
    assert!(
        after >= Duration::from_millis(9_990),
        "given up after {after:?}"
    );
    host.shutdown().await?;
    Ok(())
}
