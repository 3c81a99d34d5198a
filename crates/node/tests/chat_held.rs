//! Chat said while nobody else in the room is reachable is not lost: the node holds it and
//! sends it when a peer subscribes to the room (as when a joiner's first words race the
//! subscriptions of the members it just connected to), within `session::HELD_TTL_MS`.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use ruang_node::NodeEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_line_said_to_an_empty_room_reaches_the_first_who_joins() -> Result<()> {
    init_tracing();
    let host = node("host").await?;
    let guest = node("guest").await?;
    let joined = host.host(room("quiet")).await?;
    host.chat("anyone there?").await?;

    let mut guest_events = guest.subscribe();
    join(&guest, &joined.ticket).await?;
    let from = wait_for(&mut guest_events, SOON, |e| match e {
        NodeEvent::Chat { text, from, .. } if text == "anyone there?" => Some(from.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(from, host.key().to_hex());
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
    assert!(after >= Duration::from_secs(10), "given up after {after:?}");
    host.shutdown().await?;
    Ok(())
}
