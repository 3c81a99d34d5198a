//! Three real `ruang` processes on 127.0.0.1, driven through `--json`: a host speaking a known
//! WAV, a listener recording to WAV, and a third process. The listener hears the host; the host
//! invites the listener, who accepts and speaks, and the host hears it; the third process gets
//! on stage and is banned, and its audio stops at the host; the host leaves and the room goes
//! to the listener, still on stage.

use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};
use ruang_testkit::heard;
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

#[test]
fn host_listener_and_a_banned_third_process() -> Result<()> {
    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("host.wav");
    let reference = write_voice(&source, 11, 30.0)?;
    let heard_path = dir.path().join("listener.wav");

    let mut host = Proc::start(
        dir.path(),
        "host",
        &[
            "host",
            "--title",
            "e2e",
            "--json",
            "--input",
            source.to_str().unwrap(),
            "--output",
            "null",
        ],
    )?;
    let ready = host.wait_event(T, "ready")?;
    let ticket = ready["ticket"].as_str().context("ticket")?.to_string();
    let host_key = ready["key"].as_str().context("key")?.to_string();
    assert!(ticket.starts_with("ruang1"));

    let mut listener = Proc::start(
        dir.path(),
        "listener",
        &[
            "join",
            &ticket,
            "--json",
            "--input",
            "tone",
            "--output",
            heard_path.to_str().unwrap(),
        ],
    )?;
    let lready = listener.wait_event(T, "ready")?;
    let listener_key = lready["key"].as_str().context("key")?.to_string();
    assert_eq!(lready["room_id"], ready["room_id"]);
    listener.wait(T, "playout_started", |v| {
        (v["event"] == "playout_started").then_some(())
    })?;

    step("listener playing");
    // The listener hears the host.
    listener.wait(T, "frames from the host", |v| {
        (v["event"] == "stats" && received_from(v, &host_key).unwrap_or(0) > 150).then_some(())
    })?;

    step("listener hears the host");
    // The host invites the listener; it accepts and speaks its tone; the host hears it.
    host.wait(T, "the listener in the audience", |v| {
        state_lists(v, "audience", &listener_key).then_some(())
    })?;
    host.send(&format!(r#"{{"cmd":"invite","peer":"{listener_key}"}}"#))?;
    listener.wait(T, "the invitation", |v| {
        state_lists(v, "invited", &listener_key).then_some(())
    })?;
    listener.send(r#"{"cmd":"accept_invite"}"#)?;
    host.wait(T, "frames from the new speaker", |v| {
        (v["event"] == "stats" && received_from(v, &listener_key).unwrap_or(0) > 50).then_some(())
    })?;

    step("host hears the new speaker");
    // A third process gets on stage, speaks, and is banned: its audio stops at the host.
    let mut third = Proc::start(
        dir.path(),
        "third",
        &[
            "join", &ticket, "--json", "--input", "tone", "--output", "null",
        ],
    )?;
    let third_key = third.ready_key(T)?;
    third.send(r#"{"cmd":"raise_hand"}"#)?;
    host.wait(T, "the third's hand", |v| {
        state_lists(v, "hands", &third_key).then_some(())
    })?;
    host.send(&format!(r#"{{"cmd":"invite","peer":"{third_key}"}}"#))?;
    third.wait(T, "the invitation", |v| {
        state_lists(v, "invited", &third_key).then_some(())
    })?;
    third.send(r#"{"cmd":"accept_invite"}"#)?;
    host.wait(T, "frames from the third", |v| {
        (v["event"] == "stats" && received_from(v, &third_key).unwrap_or(0) > 50).then_some(())
    })?;
    step("host hears the third");
    host.send(&format!(r#"{{"cmd":"ban","peer":"{third_key}"}}"#))?;
    third.wait(T, "being banned", |v| {
        (v["event"] == "left" && v["reason"] == "banned").then_some(())
    })?;
    let third_status = third.exit(T)?;
    assert_eq!(
        third_status.code(),
        Some(3),
        "a banned process exits with code 3"
    );
    step("third exited");

    // One second for the ban to take effect, then two more in which nothing arrives.
    std::thread::sleep(Duration::from_secs(1));
    let counts: Vec<u64> = (0..3)
        .map(|_| {
            host.wait(T, "stats", |v| {
                (v["event"] == "stats").then(|| received_from(v, &third_key).unwrap_or(0))
            })
        })
        .collect::<Result<_>>()?;
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "the third's audio stopped at the host: {counts:?}"
    );
    host.send(r#"{"cmd":"status"}"#)?;
    let state: Value = host.wait(T, "state", |v| (v["event"] == "state").then(|| v.clone()))?;
    assert!(
        crate::common::state_lists(&state, "banned", &third_key),
        "{state}"
    );

    step("third's audio stopped");
    // Back with the same identity, after the members blocked it: the room refuses it, and it
    // is told why (remembered from the ban).
    let mut again = Proc::start(
        dir.path(),
        "third",
        &[
            "join", &ticket, "--json", "--input", "tone", "--output", "null",
        ],
    )?;
    let fatal = again.wait(Duration::from_secs(60), "the refused join", |v| {
        (v["event"] == "error" && v["fatal"] == true).then(|| v.clone())
    })?;
    assert!(
        fatal["message"]
            .as_str()
            .is_some_and(|m| m.contains("banned from this room")),
        "{fatal}"
    );
    again.exit(T)?;
    step("banned rejoin refused with the reason");
    // The host leaves: the room goes to the one still on stage (the heir), not hostless.
    host.send(r#"{"cmd":"leave"}"#)?;
    let handed: Value = host.wait(T, "handed_over", |v| {
        (v["event"] == "handed_over").then(|| v.clone())
    })?;
    assert_eq!(handed["key"], listener_key.as_str());
    assert!(host.exit(T)?.success());
    listener.wait(T, "the room handed to the listener", |v| {
        (v["event"] == "state" && v["my_role"] == "host").then_some(())
    })?;
    step("host handed the room over");
    // EOF on stdin: the listener leaves cleanly and its WAV is complete.
    listener.close_stdin();
    assert!(listener.exit(T)?.success());

    step("both exited");
    let recording = read_wav(&heard_path)?;
    assert!(
        recording.len() > 48_000 * 5,
        "the listener recorded {} samples",
        recording.len()
    );
    // The host's voice in what the listener heard, seconds 2 to 5 of the source, found
    // anywhere in the first 15 s of the recording and followed through the jitter buffer's
    // steps (see `ruang_testkit::heard`).
    let how = heard::Compare::seconds(2.0, 5.0).max_delay_ms(15_000);
    let compared = heard::compare(&reference, &recording, &how);
    eprintln!("listener's recording vs the host's source: {compared}");
    assert!(
        compared.is_heard(),
        "the listener's WAV does not hold the host's audio"
    );
    Ok(())
}
