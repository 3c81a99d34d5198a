//! Audio by request: a listener's request reaches the speaker as an event and is held until
//! the listener drops it; a speaker can turn it down, and the listener asks again after the
//! refusal backoff, not at once; a newer request from the same peer replaces the old quietly.

use crate::common::*;
use ruang_net::{Event, Transport};

/// A speaker and a listener connected to it.
async fn connected_pair() -> anyhow::Result<(Node, Node)> {
    init_tracing();
    let speaker = node(config(Transport::QuicAndTcp)).await?;
    let listener = node(config(Transport::QuicAndTcp)).await?;
    listener
        .client
        .dial(addr_of(&speaker.client, None).await?)
        .await?;
    Ok((speaker, listener))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_held_until_the_listener_drops_it() -> anyhow::Result<()> {
    let (mut speaker, listener) = connected_pair().await?;
    let request = listener
        .client
        .ask_for_audio(speaker.id(), b"room-7".to_vec());
    let asked = wait_for(&mut speaker.events, SOON, |e| match e {
        Event::AudioRequested { peer, request } => Some((peer, request)),
        _ => None,
    })
    .await?;
    assert_eq!(asked, (listener.id(), b"room-7".to_vec()));
    eventually(SOON, "the listener sees its request held", || async {
        request.stats().held
    })
    .await?;
    assert_eq!(speaker.client.audio_requesters(), vec![listener.id()]);

    drop(request);
    let ended = wait_for(&mut speaker.events, SOON, |e| match e {
        Event::AudioRequestEnded { peer } => Some(peer),
        _ => None,
    })
    .await?;
    assert_eq!(ended, listener.id());
    assert!(speaker.client.audio_requesters().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_asked_again_only_after_the_backoff() -> anyhow::Result<()> {
    let (mut speaker, listener) = connected_pair().await?;
    let request = listener
        .client
        .ask_for_audio(speaker.id(), b"room-7".to_vec());
    wait_for(&mut speaker.events, SOON, |e| match e {
        Event::AudioRequested { peer, .. } => Some(peer),
        _ => None,
    })
    .await?;
    assert!(speaker.client.refuse_audio_request(listener.id()));
    eventually(SOON, "the listener hears the refusal", || async {
        request.stats().refused == 1
    })
    .await?;
    let stats = request.stats();
    assert!(!stats.held);
    assert_eq!(stats.asked, 1);
    // A request turned down by the node is not reported as ended (the node knows).
    // Nothing comes back before the refusal backoff (15 s); the test does not wait that long:
    // it checks the next second holds no new request.
    let again = wait_for(
        &mut speaker.events,
        std::time::Duration::from_secs(1),
        |e| match e {
            Event::AudioRequested { peer, .. } | Event::AudioRequestEnded { peer } => Some(peer),
            _ => None,
        },
    )
    .await;
    assert!(again.is_err(), "asked again at once: {again:?}");
    assert_eq!(request.stats().asked, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_request_replaces_the_old_one_quietly() -> anyhow::Result<()> {
    let (mut speaker, listener) = connected_pair().await?;
    let first = listener.client.ask_for_audio(speaker.id(), b"one".to_vec());
    wait_for(&mut speaker.events, SOON, |e| match e {
        Event::AudioRequested { request, .. } => Some(request),
        _ => None,
    })
    .await?;
    let second = listener.client.ask_for_audio(speaker.id(), b"two".to_vec());
    let request = wait_for(&mut speaker.events, SOON, |e| match e {
        Event::AudioRequested { request, .. } => Some(request),
        Event::AudioRequestEnded { .. } => Some(b"ended".to_vec()),
        _ => None,
    })
    .await?;
    assert_eq!(
        request,
        b"two".to_vec(),
        "the old request's end was reported"
    );
    assert_eq!(speaker.client.audio_requesters(), vec![listener.id()]);
    // The first handle's task finds its stream closed and asks again: the newest ask wins,
    // still one request held for the peer.
    drop(first);
    drop(second);
    let ended = wait_for(&mut speaker.events, SOON, |e| match e {
        Event::AudioRequestEnded { peer } => Some(peer),
        _ => None,
    })
    .await?;
    assert_eq!(ended, listener.id());
    Ok(())
}
