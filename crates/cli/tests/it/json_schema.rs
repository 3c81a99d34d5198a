//! The JSON protocols are what docs/json/*.schema.json say: every line real `ruang` processes
//! print in a scripted room (host, guest on stage, moderation, chat, stats, hand-off, end),
//! every kind of node event, `ruang node --json`, `ruang id --json` and `ruang rooms --json`
//! match their schema, which allows no field it does not document.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{Proc, Schema, ruang};
use anyhow::{Context, Result};
use ruang_node::event::LeaveReason;
use ruang_node::{NodeEvent, Person, RoomView, SpeakerStats};
use ruang_proto::room::Role;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Every line in `lines` that does not match `schema`, as messages.
fn mismatches(schema: &Schema, lines: &[Value]) -> Vec<String> {
    lines.iter().flat_map(|l| schema.errors(l)).collect()
}

/// The kinds (`event` values) among `lines`.
fn kinds(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l["event"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_scripted_room_prints_only_what_the_schema_documents() -> Result<()> {
    let events = Schema::load("room-events")?;
    let commands = Schema::load("room-commands")?;
    let dir = tempfile::tempdir()?;
    let mut host = Proc::start(
        dir.path(),
        "host",
        &[
            "host", "--title", "schema", "--json", "--input", "voice", "--output", "null",
        ],
    )?;
    let ready = host.wait_event(T, "ready")?;
    let ticket = ready["ticket"].as_str().context("ticket")?.to_string();
    let mut sent = Vec::new();
    let mut send = |p: &mut Proc, line: &str| -> Result<()> {
        sent.push(serde_json::from_str::<Value>(line)?);
        p.send(line)
    };
    // Alone: sent to nobody.
    send(&mut host, r#"{"cmd":"chat","text":"anyone?","id":1}"#)?;
    host.wait_event(T, "done")?;

    let mut guest = Proc::start(
        dir.path(),
        "guest",
        &[
            "join", &ticket, "--json", "--input", "voice", "--output", "null",
        ],
    )?;
    let guest_key = guest.ready_key(T)?;
    send(&mut guest, r#"{"cmd":"raise_hand","id":"h"}"#)?;
    guest.wait_event(T, "done")?;
    host.wait(T, "the hand", |v| {
        crate::common::state_lists(v, "hands", &guest_key).then_some(())
    })?;
    send(
        &mut host,
        &format!(r#"{{"cmd":"invite","peer":"{guest_key}","id":2}}"#),
    )?;
    guest.wait(T, "the invitation", |v| {
        crate::common::state_lists(v, "invited", &guest_key).then_some(())
    })?;
    send(&mut guest, r#"{"cmd":"accept_invite"}"#)?;
    host.wait(T, "the guest's audio", |v| {
        (v["event"] == "hearing" && v["key"] == guest_key.as_str()).then_some(())
    })?;
    send(&mut host, r#"{"cmd":"react","reaction":"👏"}"#)?;
    send(
        &mut host,
        &format!(r#"{{"cmd":"mute","peer":"{guest_key}"}}"#),
    )?;
    guest.wait(T, "the mute", |v| {
        crate::common::state_lists(v, "muted", &guest_key).then_some(())
    })?;
    send(
        &mut host,
        &format!(r#"{{"cmd":"unmute","peer":"{guest_key}"}}"#),
    )?;
    send(&mut guest, r#"{"cmd":"self_mute","on":true,"id":[1,2]}"#)?;
    send(&mut guest, r#"{"cmd":"end","id":{"why":"refused"}}"#)?;
    guest.wait_event(T, "error")?;
    send(&mut guest, r#"{"cmd":"status"}"#)?;
    guest.wait_event(T, "status")?;
    host.wait_event(T, "stats")?;
    guest.wait_event(T, "stats")?;
    // The host leaves: the room goes to the guest, who ends it.
    send(&mut host, r#"{"cmd":"leave"}"#)?;
    host.wait_event(T, "handed_over")?;
    guest.wait(T, "being the host", |v| {
        (v["event"] == "state" && v["my_role"] == "host").then_some(())
    })?;
    send(&mut guest, r#"{"cmd":"end"}"#)?;
    guest.wait_event(T, "ended")?;
    let rest = (host.rest(T)?, guest.rest(T)?);
    assert!(host.exit(T)?.success() && guest.exit(T)?.success());
    let _ = rest;

    let printed: Vec<Value> = host.seen.iter().chain(&guest.seen).cloned().collect();
    let wrong: Vec<String> = mismatches(&events, &printed)
        .into_iter()
        .chain(mismatches(&commands, &sent))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The run showed most of the protocol (a check that it checked something).
    let seen = kinds(&printed);
    for kind in [
        "ready",
        "progress",
        "state",
        "done",
        "error",
        "chat",
        "reaction",
        "hearing",
        "speaking",
        "capture_started",
        "stats",
        "status",
        "notice",
        "handed_over",
        "ended",
        "left",
    ] {
        assert!(
            seen.contains(kind),
            "no `{kind}` event in the run: {seen:?}"
        );
    }
    Ok(())
}

fn person(role: Role) -> Person {
    Person {
        key: ruang_proto::PublicKey([0xab; 32]),
        name: "ana".into(),
        fingerprint: "ab12-cd34".into(),
        role,
        muted: false,
        present: true,
    }
}

/// One event of every kind the node emits. The match makes a new kind a compile error here
/// until it has an example (and so a place in the schema).
fn every_node_event() -> Vec<NodeEvent> {
    let view = RoomView {
        room_id: ruang_proto::room::RoomId(ruang_proto::signed::Hash([0xcd; 32])),
        title: "t".into(),
        topic: String::new(),
        tags: vec!["news".into()],
        language: "en".into(),
        private: false,
        stage: vec![person(Role::Host)],
        audience: vec![person(Role::Listener)],
        listeners: 1,
        hands: vec![person(Role::Listener)],
        invited: vec![person(Role::Listener)],
        muted: vec![person(Role::Speaker)],
        banned: vec![person(Role::Banned)],
        recording: vec![person(Role::Listener)],
        heir: Some(person(Role::Moderator)),
        ended: false,
        my_role: Role::Host,
        log_len: 3,
    };
    let key = ruang_proto::PublicKey([0xab; 32]);
    let events = vec![
        NodeEvent::State(Box::new(view.clone())),
        NodeEvent::State(Box::new(RoomView { heir: None, ..view })),
        NodeEvent::Speaking {
            key,
            name: "ana".into(),
            active: true,
        },
        NodeEvent::Ticket {
            ticket: "ruang1xyz".into(),
        },
        NodeEvent::Hearing {
            key,
            name: "ana".into(),
            unix_us: 1,
        },
        NodeEvent::Chat {
            from: key,
            name: "ana".into(),
            text: "hi".into(),
        },
        NodeEvent::Reaction {
            from: key,
            name: "ana".into(),
            reaction: "👏".into(),
        },
        NodeEvent::CaptureStarted { unix_us: 1 },
        NodeEvent::PlayoutStarted { unix_us: 1 },
        NodeEvent::SourceEnded,
        NodeEvent::Stats {
            speakers: vec![SpeakerStats {
                key,
                name: "ana".into(),
                received: 1,
                played: 1,
                late: 0,
                lost: 0,
                fec: 0,
                concealed: 0,
                jitter_ms: 20,
                depth_ms: 20,
            }],
            peers: 2,
            frames_sent: 3,
            frames_dropped: 0,
            listeners_served: 1,
            loss_hint_pct: 5,
            bitrate_bps: 32_000,
            sending_copies: true,
        },
        NodeEvent::Error {
            message: "e".into(),
        },
        NodeEvent::Progress {
            message: "p".into(),
        },
        NodeEvent::Notice {
            message: "n".into(),
        },
        NodeEvent::Ended,
        NodeEvent::Left {
            reason: LeaveReason::Kicked,
        },
        NodeEvent::Lagged { missed: 4 },
    ];
    for e in &events {
        match e {
            NodeEvent::Joined { .. } => unreachable!("never printed in JSON mode"),
            NodeEvent::State(_)
            | NodeEvent::Speaking { .. }
            | NodeEvent::Ticket { .. }
            | NodeEvent::Hearing { .. }
            | NodeEvent::Chat { .. }
            | NodeEvent::Reaction { .. }
            | NodeEvent::CaptureStarted { .. }
            | NodeEvent::PlayoutStarted { .. }
            | NodeEvent::SourceEnded
            | NodeEvent::Stats { .. }
            | NodeEvent::Error { .. }
            | NodeEvent::Progress { .. }
            | NodeEvent::Notice { .. }
            | NodeEvent::Ended
            | NodeEvent::Left { .. }
            | NodeEvent::Lagged { .. } => {}
        }
    }
    events
}

#[test]
fn every_kind_of_node_event_is_in_the_schema() -> Result<()> {
    let schema = Schema::load("room-events")?;
    let lines: Vec<Value> = every_node_event()
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let wrong = mismatches(&schema, &lines);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // And the schema is strict: an undocumented field, a wrong type or an unknown kind fails.
    for bad in [
        r#"{"event":"chat","from":"x","name":"a","text":"t","extra":1}"#,
        r#"{"event":"lagged","missed":"four"}"#,
        r#"{"event":"dance"}"#,
    ] {
        let bad: Value = serde_json::from_str(bad)?;
        assert!(!schema.errors(&bad).is_empty(), "{bad} passed");
    }
    Ok(())
}

#[test]
fn id_node_and_rooms_print_what_their_schemas_say() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let id = ruang()
        .args(["id", "--json", "--identity"])
        .arg(dir.path().join("id.key"))
        .env("XDG_CONFIG_HOME", dir.path())
        .output()?;
    assert!(id.status.success());
    let line: Value = serde_json::from_slice(&id.stdout)?;
    let wrong = Schema::load("id")?.errors(&line);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A node, and a room found through it.
    let mut node = Proc::start(
        dir.path(),
        "node",
        &[
            "node",
            "--json",
            "--stats-every",
            "1",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ],
    )?;
    let ready = node.wait_event(T, "ready")?;
    let addr = format!(
        "{}/p2p/{}",
        ready["listen"][0].as_str().context("listen")?,
        ready["peer_id"].as_str().context("peer id")?
    );
    node.wait_event(T, "stats")?;
    let mut host = Proc::start(
        dir.path(),
        "host",
        &[
            "host",
            "--title",
            "listed",
            "--json",
            "--input",
            "silence",
            "--output",
            "null",
            "--bootstrap",
            &addr,
        ],
    )?;
    let room_id = host.wait_event(T, "ready")?["room_id"]
        .as_str()
        .context("room id")?
        .to_string();
    let mut rooms = Proc::start(
        dir.path(),
        "browser",
        &["rooms", "--json", "--wait", "5", "--bootstrap", &addr],
    )?;
    rooms.wait(T, "the room listed", |v| {
        (v["room_id"] == room_id.as_str()).then_some(())
    })?;
    rooms.kill();
    host.close_stdin();
    host.exit(T)?;
    node.signal_int()?;
    node.rest(T)?;
    let wrong: Vec<String> = mismatches(&Schema::load("node-events")?, &node.seen)
        .into_iter()
        .chain(mismatches(&Schema::load("rooms")?, &rooms.seen))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(kinds(&node.seen).contains("stopped"), "{:?}", node.seen);
    Ok(())
}
