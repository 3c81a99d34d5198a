//! A chat flood does not take the room down. While the host speaks to two listeners, a raw
//! client connected to all three publishes valid, signed, distinct chat lines at 1000 per
//! second for 2 s. Every member shows only a handful of them (the per-author rate limit), the
//! flooder is disconnected and refused by every member, and each listener still receives at
//! least 99% of the host's audio frames.

use std::time::{Duration, Instant};

use crate::common::*;
use anyhow::{Context, Result};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_node::session::limits::{CHAT_BURST, CHAT_PER_SECOND};
use ruang_node::session::room::topic;
use ruang_node::wire::RoomMessage;
use ruang_node::{NodeHandle, Pacing};
use ruang_proto::Identity;
use ruang_proto::ephemeral::{Ephemeral, EphemeralBody};
use ruang_proto::signed;

const SPEECH_MS: u64 = 4_000;
const FLOOD_PER_SECOND: u64 = 1_000;
const FLOOD_MS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_is_limited_and_the_flooder_cut_off() -> Result<()> {
    init_tracing();
    let host = node("host").await?;
    let listeners = nodes("listener", 2).await?;
    let joined = host.host(room("flooded")).await?;
    for l in &listeners {
        join(l, &joined.ticket).await?;
    }
    let members: Vec<&NodeHandle> = [&host].into_iter().chain(&listeners).collect();
    wait_present(&members, 3).await?;
    let recs: Vec<Recorder> = members.iter().map(|m| Recorder::start(m)).collect();
    for m in &members {
        m.listen(Box::new(SharedSink::default())).await?;
    }

    let room_topic = topic(&joined.room, None);
    let flooder = raw_peer(Identity::generate(&mut rand::rng())).await?;
    flooder.client.subscribe(&room_topic).await?;
    for m in &members {
        flooder.client.dial(addr_of(m, "/quic-v1/").await?).await?;
    }
    let ids: Vec<_> = members.iter().map(|m| m.peer_id()).collect();
    eventually(SOON, "every member is on the flooder's topic", || async {
        flooder
            .client
            .topic_peers(&room_topic)
            .await
            .is_ok_and(|t| ids.iter().all(|m| t.contains(m)))
    })
    .await?;

    host.speak(
        Box::new(Limited::millis(
            VoiceSource::new(5, FrameDuration::Ms20),
            SPEECH_MS,
        )),
        Pacing::RealTime,
    )
    .await?;
    // Let the audio settle, then flood: 10 lines every 10 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut cut_off_after = None;
    let mut every = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < Duration::from_millis(FLOOD_MS) {
        every.tick().await;
        for _ in 0..FLOOD_PER_SECOND / 100 {
            let msg = Ephemeral {
                room: joined.room,
                author: flooder.identity.public(),
                sent_at: ruang_node::unix_ms(),
                body: EphemeralBody::Chat {
                    text: format!("spam {sent}"),
                },
            };
            let data =
                RoomMessage::Ephemeral(signed::sign(&flooder.identity, msg)?.wire().to_vec())
                    .encode();
            // Fails once nobody takes it any more; the flooder keeps trying anyway.
            let _ = flooder.client.publish(&room_topic, data).await;
            sent += 1;
        }
        if cut_off_after.is_none()
            && flooder
                .client
                .connected_peers()
                .await?
                .iter()
                .all(|p| !ids.contains(p))
        {
            cut_off_after = Some(started.elapsed());
        }
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "flooder sent {sent} lines ({rate:.0}/s); cut off by every member after {cut_off_after:?}"
    );
    assert!(
        rate >= 0.9 * FLOOD_PER_SECOND as f64,
        "the flood ran at {rate:.0}/s"
    );
    assert!(
        cut_off_after.is_some(),
        "the flooder is still connected to a member after {FLOOD_MS} ms"
    );

    // Rate-limited: a member shows at most the burst plus the sustained rate over the flood.
    let allowed =
        u64::from(CHAT_BURST) + (CHAT_PER_SECOND * (FLOOD_MS as f64 / 1_000.0)).ceil() as u64;
    for (i, r) in recs.iter().enumerate() {
        let got = r.get();
        eprintln!(
            "member {i}: showed {} of {sent} lines; notices {:?}",
            got.chats, got.notices
        );
        assert!(
            got.chats >= 1,
            "member {i}: the first lines of a new author get through"
        );
        assert!(
            got.chats <= allowed,
            "member {i} showed {} lines, more than {allowed}",
            got.chats
        );
        assert!(
            got.notices.iter().any(|n| n.contains("flooding")),
            "member {i} said nothing of the flood"
        );
    }
    // Refused, not just disconnected: a new connection gets no answer from anyone.
    for (i, m) in members.iter().enumerate() {
        let _ = flooder.client.dial(addr_of(m, "/quic-v1/").await?).await;
        let sync = flooder
            .client
            .sync_request(
                m.peer_id(),
                ruang_node::wire::SyncRequest::Directory.encode(),
            )
            .await;
        assert!(sync.is_err(), "member {i} still answers the flooder");
    }

    // The room went on: both listeners got the host's audio in full.
    eventually(
        Duration::from_millis(SPEECH_MS) + SOON,
        "the speech ends",
        || async { recs[0].get().source_ended.is_some() },
    )
    .await?;
    let ended = recs[0].get().source_ended.expect("checked");
    let frames = recs[0].stats_after(ended).await?.frames_sent;
    for (i, r) in recs.iter().enumerate().skip(1) {
        let s = r.stats_after(ended + Duration::from_millis(500)).await?;
        let st = s
            .speakers
            .iter()
            .find(|s| s.key == host.key())
            .context("host not in the stats")?;
        eprintln!("listener {i}: {st:?} of {frames}");
        assert!(
            st.received * 100 >= frames * 99,
            "listener {i} received {} of {frames}",
            st.received
        );
    }
    flooder.client.shutdown().await;
    shutdown_all(&[&listeners[1], &listeners[0], &host]).await;
    Ok(())
}
