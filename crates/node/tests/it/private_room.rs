//! A private room: not in the directory; its ticket carries the room key; members hear each
//! other; someone with the room's id and addresses but not its key cannot read its log.

use std::time::Duration;

use crate::common::*;
use anyhow::Result;
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Limited, VoiceSource};
use ruang_node::{HostOptions, JoinTarget, NodeError, NodeEvent, Pacing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_room_is_sealed_and_unlisted() -> Result<()> {
    let host = node("host").await?;
    let member = node("member").await?;
    let outsider = node("outsider").await?;
    let joined = host
        .host(HostOptions {
            private: true,
            ..room("secret")
        })
        .await?;
    let key = joined
        .ticket
        .room_key
        .expect("a private room's ticket carries its key");
    assert_ne!(key, [0; 32]);

    // The member joins with the full ticket and hears the host (audio payloads sealed).
    let sink = SharedSink::default();
    let mut events = member.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        member.join(JoinTarget::Ticket(joined.ticket.clone())),
    )
    .await??;
    member.listen(Box::new(sink.clone())).await?;
    eventually(Duration::from_secs(5), "host sees the member", || async {
        host.status()
            .await
            .map(|s| s.room.is_some_and(|r| !r.audience.is_empty()))
            .unwrap_or(false)
    })
    .await?;
    host.speak(
        Box::new(Limited::millis(
            VoiceSource::new(3, FrameDuration::Ms20),
            3_000,
        )),
        Pacing::RealTime,
    )
    .await?;
    wait_for(&mut events, Duration::from_secs(10), |e| match e {
        NodeEvent::Stats { speakers, .. } if speakers.iter().any(|s| s.played > 100) => Some(()),
        _ => None,
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heard = heard_voice(3, &sink.samples(), None, 0.5, 2.5);
    assert_heard("the member, through sealed frames", &heard);

    // Chat travels sealed too.
    host.chat("only for members").await?;
    wait_for(&mut events, Duration::from_secs(5), |e| match e {
        NodeEvent::Chat { text, .. } if text == "only for members" => Some(()),
        _ => None,
    })
    .await?;

    // Without the key, the room's log cannot be read: the join fails.
    let mut stripped = joined.ticket.clone();
    stripped.room_key = None;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        outsider.join(JoinTarget::Ticket(stripped)),
    )
    .await?;
    assert!(
        matches!(
            err,
            Err(NodeError::Room(ruang_node::session::Error::BadLog { .. }))
        ),
        "a keyless join cannot read the sealed log: {err:?}"
    );
    // And the room is never announced.
    assert!(outsider.rooms().await?.is_empty());
    assert!(member.rooms().await?.is_empty());
    for n in [host, member, outsider] {
        n.shutdown().await?;
    }
    Ok(())
}

/// A ban in a private room gives it a new key: the member who stays keeps hearing the host
/// (audio sealed with the new key), the banned one's fresh identity cannot read the room with
/// the old ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_in_a_private_room_changes_its_key_and_the_audio_goes_on() -> Result<()> {
    let host = node("host").await?;
    let member = node("member").await?;
    let troll = node("troll").await?;
    let joined = host
        .host(HostOptions {
            private: true,
            ..room("secret")
        })
        .await?;
    let mut member_events = member.subscribe();
    join(&member, &joined.ticket).await?;
    join(&troll, &joined.ticket).await?;
    member.listen(Box::new(SharedSink::default())).await?;
    wait_present(&[&host, &member, &troll], 3).await?;
    let recorder = Recorder::start(&member);
    host.speak(
        Box::new(Limited::millis(
            VoiceSource::new(5, FrameDuration::Ms20),
            30_000,
        )),
        Pacing::RealTime,
    )
    .await?;
    eventually(
        Duration::from_secs(10),
        "the member hears the host",
        || async { recorder.received(&host.key()) > 50 },
    )
    .await?;

    host.act(ruang_proto::room::EventBody::Ban { who: troll.key() })
        .await?;
    // The member is told the new ticket once it moved to the new key.
    let new_ticket = wait_for(&mut member_events, Duration::from_secs(10), |e| match e {
        NodeEvent::Ticket { ticket } => Some(ticket.clone()),
        _ => None,
    })
    .await?;
    assert!(new_ticket.starts_with("ruang1"));
    // The member goes on receiving the host's frames under the new key.
    let before = recorder.received(&host.key());
    eventually(
        Duration::from_secs(10),
        "the member hears the host under the new key",
        || async { recorder.received(&host.key()) >= before + 50 },
    )
    .await?;

    // The troll, back with a fresh identity and the old ticket, cannot read the room.
    let again = node("troll-again").await?;
    let err = tokio::time::timeout(
        Duration::from_secs(15),
        again.join(JoinTarget::Ticket(joined.ticket.clone())),
    )
    .await?;
    assert!(
        matches!(
            err,
            Err(NodeError::Room(ruang_node::session::Error::BadLog { .. }))
        ),
        "the old ticket still opens the room: {err:?}"
    );
    for n in [host, member, troll, again] {
        n.shutdown().await?;
    }
    Ok(())
}
