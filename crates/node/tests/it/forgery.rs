//! Forged moderation is rejected by every node and forwarded by none. A raw client (no ruang
//! node, just `ruang_net`) connected to every member of a room publishes, on the room's topic:
//!
//! - a Mute of the speaker, well formed and on the current heads, but signed by itself, a
//!   non-moderator (unauthorised at its causal point);
//! - the host's Mute of the speaker with a corrupted signature (the host's key, its real
//!   signature with one bit flipped);
//! - an EndRoom signed by itself (unauthorised too).
//!
//! Every node's state is unchanged. A second raw client, a "spy" connected to every member
//! but not to the forger, receives whatever the members forward: it gets the forger's valid
//! chat line (so forwarding works and it would see the forgeries) and none of the forgeries.
//! The rejections cost the forger its standing: its next, valid, chat line reaches nobody,
//! while the host's still reaches everyone.

use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};
use ruang_net::Transport;
use ruang_node::NodeHandle;
use ruang_node::session::room::topic;
use ruang_node::wire::RoomMessage;
use ruang_proto::ephemeral::{Ephemeral, EphemeralBody};
use ruang_proto::identity::SIGNATURE_LEN;
use ruang_proto::room::{Event, EventBody, Insert, Refusal, Reject};
use ruang_proto::signed;
use ruang_proto::{Identity, PublicKey};

fn now_ms() -> u64 {
    ruang_node::unix_ms()
}

fn chat(identity: &Identity, room: ruang_proto::room::RoomId, text: &str) -> Result<Vec<u8>> {
    let msg = Ephemeral {
        room,
        author: identity.public(),
        sent_at: now_ms(),
        body: EphemeralBody::Chat { text: text.into() },
    };
    Ok(RoomMessage::Ephemeral(signed::sign(identity, msg)?.wire().to_vec()).encode())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_moderation_is_rejected_and_not_forwarded() -> Result<()> {
    init_tracing();
    let host_id = Identity::generate(&mut rand::rng());
    let host = node_with_identity(host_id.clone(), "host", Transport::QuicOnly, |b| b).await?;
    let speaker = node("speaker").await?;
    let listener = node("listener").await?;
    let joined = host.host(room("guarded")).await?;
    join(&speaker, &joined.ticket).await?;
    join(&listener, &joined.ticket).await?;
    let members: Vec<&NodeHandle> = vec![&host, &speaker, &listener];
    wait_present(&members, 3).await?;
    bring_on_stage(&host, &speaker).await?;
    wait_state(&members, "speaker on stage", |r| r.stage.len() == 2).await?;
    let recs: Vec<Recorder> = members.iter().map(|n| Recorder::start(n)).collect();

    // The forger and the spy: both connect to every member, never to each other.
    let room_topic = topic(&joined.room, None);
    let forger = raw_peer(Identity::generate(&mut rand::rng())).await?;
    let spy = raw_peer(Identity::generate(&mut rand::rng())).await?;
    // Peers find each other through Kademlia; the spy must hear members only.
    spy.client.block(forger.peer_id()).await?;
    for p in [&forger, &spy] {
        p.client.subscribe(&room_topic).await?;
        for m in &members {
            p.client.dial(addr_of(m, "/quic-v1/").await?).await?;
        }
        let member_ids: Vec<_> = members.iter().map(|m| m.peer_id()).collect();
        eventually(SOON, "every member is on the raw peer's topic", || async {
            p.client
                .topic_peers(&room_topic)
                .await
                .is_ok_and(|t| member_ids.iter().all(|m| t.contains(m)))
        })
        .await?;
    }

    // Control: the forger's valid chat line reaches every member, and the members forward it
    // to the spy.
    let control = chat(&forger.identity, joined.room, "hello, I am new here")?;
    forger.client.publish(&room_topic, control.clone()).await?;
    for (i, r) in recs.iter().enumerate() {
        eventually(SOON, &format!("member {i} shows the chat line"), || async {
            r.get().chats >= 1
        })
        .await?;
    }
    eventually(
        SOON,
        "a member forwards the chat line to the spy",
        || async { spy.seen_on(&room_topic).contains(&control) },
    )
    .await?;

    let before: Vec<_> = {
        let mut v = Vec::new();
        for m in &members {
            v.push(m.status().await?.room.context("in the room")?);
        }
        v
    };
    let log_len = before[0].log_len;
    assert!(
        before
            .iter()
            .all(|r| r.log_len == log_len && r.muted.is_empty())
    );

    // The forgeries, on the room's current heads (as the forger's own replica sees them).
    let replica = forger.fetch_log(host.peer_id(), joined.room).await?;
    assert_eq!(replica.len(), log_len);
    let parents = replica.heads();
    let lamport = 1 + parents
        .iter()
        .map(|p| replica.get(p).map_or(0, |e| e.lamport))
        .max()
        .unwrap_or(0);
    let event = |author: PublicKey, body| Event {
        room: joined.room,
        author,
        parents: parents.clone(),
        lamport,
        created_at: now_ms(),
        body,
    };
    let self_mute = signed::sign(
        &forger.identity,
        event(
            forger.identity.public(),
            EventBody::Mute { who: speaker.key() },
        ),
    )?;
    let self_end = signed::sign(
        &forger.identity,
        event(forger.identity.public(), EventBody::EndRoom),
    )?;
    let mut corrupted = signed::sign(
        &host_id,
        event(host.key(), EventBody::Mute { who: speaker.key() }),
    )?
    .wire()
    .to_vec();
    corrupted[1 + SIGNATURE_LEN / 2] ^= 0x01;
    // Sanity: the forgeries are refused for the reason this test is about, not for a wrong
    // lamport or missing parents; and the corrupted one would have been valid unaltered.
    let mut check = forger.fetch_log(host.peer_id(), joined.room).await?;
    assert_eq!(
        check.insert(self_mute.clone()),
        Insert::Rejected(Reject::Unauthorized(Refusal::NotModerator))
    );
    assert!(matches!(
        check.insert(self_end.clone()),
        Insert::Rejected(Reject::Unauthorized(_))
    ));
    assert!(matches!(
        check.insert_wire(&corrupted),
        Insert::Rejected(Reject::Invalid(_))
    ));
    let forged: Vec<Vec<u8>> = [
        self_mute.wire().to_vec(),
        corrupted,
        self_end.wire().to_vec(),
    ]
    .into_iter()
    .map(|w| RoomMessage::Event(w).encode())
    .collect();
    for f in &forged {
        forger.client.publish(&room_topic, f.clone()).await?;
    }

    // A legitimate event after the forgeries is a marker: once every member has it, every
    // member has also handled the forgeries, which came first over the same connections.
    host.act(EventBody::Recording { on: true }).await?;
    wait_state(&members, "has the marker event", |r| r.recording.len() == 1).await?;
    for (i, m) in members.iter().enumerate() {
        let r = m.status().await?.room.context("in the room")?;
        assert_eq!(r.log_len, log_len + 1, "member {i} admitted a forged event");
        assert!(r.muted.is_empty(), "member {i} applied a forged mute");
        assert!(!r.ended, "member {i} applied a forged EndRoom");
    }
    // Nothing was forwarded: the spy (give gossip two more heartbeats) never saw a forgery.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = spy.seen_on(&room_topic);
    for (i, f) in forged.iter().enumerate() {
        assert!(!seen.contains(f), "forgery {i} was forwarded to the spy");
    }
    let spy_peers = spy.client.connected_peers().await?;
    assert!(
        !spy_peers.contains(&forger.peer_id()),
        "the spy must hear members only"
    );

    // The forger lost its standing: its valid chat line now reaches nobody...
    let chats_before: Vec<u64> = recs.iter().map(|r| r.get().chats).collect();
    let after = chat(&forger.identity, joined.room, "still here?")?;
    let _ = forger.client.publish(&room_topic, after.clone()).await;
    // ...while the host's does (and arrives last: a marker again).
    host.chat("the room goes on").await?;
    for (i, r) in recs.iter().enumerate().skip(1) {
        eventually(
            SOON,
            &format!("member {i} shows the host's chat"),
            || async { r.get().chats > chats_before[i] },
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, r) in recs.iter().enumerate() {
        // The host counts its own line; the others count the host's line only.
        assert_eq!(
            r.get().chats,
            chats_before[i] + 1,
            "member {i} showed the graylisted forger's chat"
        );
    }
    assert!(
        !spy.seen_on(&room_topic).contains(&after),
        "a member forwarded the graylisted forger's chat"
    );

    forger.client.shutdown().await;
    spy.client.shutdown().await;
    shutdown_all(&[&listener, &speaker, &host]).await;
    Ok(())
}
