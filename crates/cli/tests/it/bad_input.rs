//! What a person or a script gets wrong: malformed JSON, unknown commands, a forbidden action,
//! a corrupt ticket, a missing WAV file. Each gives a clear error; a running room survives.
//! And what they rely on: documented exit statuses, completions and manual pages.

use std::time::Duration;

use crate::common::*;
use anyhow::{Context, Result};

const T: Duration = Duration::from_secs(15);

/// Runs `ruang <args>` to its end with its identity and config folder in `dir`.
fn run_once(dir: &std::path::Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(ruang()
        .args(args)
        .arg("--identity")
        .arg(dir.join("id.key"))
        .env("XDG_CONFIG_HOME", dir)
        .output()?)
}

#[test]
fn bad_json_lines_and_forbidden_actions_are_reported_and_survived() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut host = Proc::start(
        dir.path(),
        "host",
        &[
            "host",
            "--title",
            "bad input",
            "--json",
            "--input",
            "silence",
            "--output",
            "null",
        ],
    )?;
    let ticket = host.wait_event(T, "ready")?["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    // A host alone in its room: what it sends reaches nobody, and `done` says so.
    host.send(r#"{"cmd":"chat","text":"anyone?","id":1}"#)?;
    let done = host.wait_event(T, "done")?;
    assert_eq!(done["delivered"], false, "{done}");
    let mut guest = Proc::start(
        dir.path(),
        "guest",
        &[
            "join", &ticket, "--json", "--input", "silence", "--output", "null",
        ],
    )?;
    guest.wait_event(T, "ready")?;

    guest.send("{this is not json")?;
    let e = guest.wait_event(T, "error")?;
    assert!(
        e["message"].as_str().unwrap().starts_with("malformed JSON"),
        "{e}"
    );

    guest.send(r#"{"cmd":"dance"}"#)?;
    let e = guest.wait_event(T, "error")?;
    assert_eq!(e["message"], "unknown command \"dance\"");

    guest.send(r#"{"cmd":"mute"}"#)?;
    let e = guest.wait_event(T, "error")?;
    assert!(e["message"].as_str().unwrap().contains("peer"), "{e}");

    // A command's id comes back with its answer: the error, or `done`.
    guest.send(r#"{"cmd":"mute","id":"m1"}"#)?;
    let e = guest.wait_event(T, "error")?;
    assert_eq!(e["id"], "m1", "{e}");
    guest.send(r#"{"cmd":"raise_hand","id":42}"#)?;
    let done = guest.wait_event(T, "done")?;
    assert_eq!(
        (&done["cmd"], &done["id"]),
        (&"raise_hand".into(), &42.into()),
        "{done}"
    );

    // A listener may not end the room or ban the host.
    guest.send(r#"{"cmd":"end"}"#)?;
    let e = guest.wait_event(T, "error")?;
    assert_eq!(e["message"], "not allowed: only the host can do that");
    guest.send(r#"{"cmd":"ban","peer":"not-a-key"}"#)?;
    let e = guest.wait_event(T, "error")?;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not a person's key"),
        "{e}"
    );

    // Still alive and in the room: a chat line reaches the host.
    guest.send(r#"{"cmd":"chat","text":"still here","id":"c"}"#)?;
    host.wait(T, "the chat line", |v| {
        (v["event"] == "chat" && v["text"] == "still here").then_some(())
    })?;
    // `delivered` is false when the line found nobody connected at that moment and was held
    // and sent again (while the first connection is being replaced by a QUIC one, rarely):
    // the host has it either way.
    let done = guest.wait_event(T, "done")?;
    assert_eq!(done["id"], "c", "{done}");
    assert!(done["delivered"].is_boolean(), "{done}");

    // EOF leaves, and says so last.
    guest.close_stdin();
    let left = guest.wait_event(T, "left")?;
    assert_eq!(left["reason"], "left", "{left}");
    assert!(guest.exit(T)?.success());
    host.close_stdin();
    assert!(host.exit(T)?.success());
    Ok(())
}

#[test]
fn a_corrupt_ticket_is_one_clear_line_and_a_nonzero_exit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ticket = ruang_proto::Ticket {
        room: ruang_proto::room::RoomId(ruang_proto::Hash([1; 32])),
        host: ruang_proto::PublicKey([2; 32]),
        addresses: vec![],
        room_key: None,
    }
    .to_string();
    // One mistyped character.
    let mut typo: Vec<char> = ticket.chars().collect();
    typo[30] = if typo[30] == 'q' { 'r' } else { 'q' };
    let typo: String = typo.into_iter().collect();
    let out = run_once(dir.path(), &["join", &typo, "--json", "--no-mdns"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: the ticket is damaged"), "{stderr}");
    assert!(stderr.contains("hint: copy the whole ticket"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = run_once(dir.path(), &["join", "hello", "--no-mdns"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a ruang ticket"));
    assert_eq!(out.status.code(), Some(1), "an error is exit status 1");
    Ok(())
}

/// The exit statuses are documented where people look (`--help`, README) and hold: bad usage
/// is 2, an error 1.
#[test]
fn exit_statuses_are_documented_and_kept() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let help = run_once(dir.path(), &["--help"])?;
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))?;
    for code in ["0", "1", "2", "3", "130"] {
        let row = format!("\n  {code:<4} ");
        assert!(
            help.contains(&row),
            "--help lacks exit status {code}:\n{help}"
        );
        assert!(
            readme.contains(&format!("| {code} |")),
            "README lacks exit status {code}"
        );
    }
    let out = run_once(dir.path(), &["join", "--no-such-option"])?;
    assert_eq!(out.status.code(), Some(2), "bad usage is exit status 2");
    Ok(())
}

/// A ticket whose host does not answer: the join shows what it tries (a JSON `progress`
/// event), then fails with one line that names what was tried and a hint.
#[test]
fn an_unreachable_host_is_one_line_naming_what_was_tried() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A TCP port nobody listens on (bound, then closed): refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: ruang_net::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse()?;
    let host = ruang_proto::Identity::generate(&mut rand::rng()).public();
    let ticket = ruang_proto::Ticket {
        room: ruang_proto::room::RoomId(ruang_proto::Hash([1; 32])),
        host,
        addresses: vec![addr.to_vec()],
        room_key: None,
    }
    .to_string();
    let out = run_once(
        dir.path(),
        &[
            "join",
            &ticket,
            "--json",
            "--no-mdns",
            "--input",
            "silence",
            "--output",
            "null",
        ],
    )?;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(r#""event":"progress""#)
            && stdout.contains("connecting to the host (1 LAN)"),
        "{stdout}"
    );
    // A script reading stdout learns of the failure there too.
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
    assert_eq!(last["event"], "error", "{stdout}");
    assert_eq!(last["fatal"], true, "{stdout}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("could not reach the room"),
        "{last}"
    );
    assert!(
        stderr.contains("could not reach the room: tried 1 LAN:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Hint: the host has only LAN addresses"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

#[test]
fn a_missing_wav_file_fails_before_joining() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = run_once(
        dir.path(),
        &[
            "host",
            "--title",
            "x",
            "--json",
            "--no-mdns",
            "--output",
            "null",
            "--input",
            "/nonexistent/speech.wav",
        ],
    )?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/speech.wav"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "nothing on stdout: no room was opened"
    );
    Ok(())
}

/// The conventions of a Linux tool: completion scripts for the usual shells and a manual page
/// per command, generated from the same definitions as `--help`.
#[test]
fn completions_and_manual_pages_are_generated() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (shell, marker) in [
        ("bash", "_ruang()"),
        ("zsh", "#compdef ruang"),
        ("fish", "complete -c ruang"),
    ] {
        let out = run_once(dir.path(), &["completions", shell])?;
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("no-echo-cancel"),
            "{shell} completes options"
        );
    }
    let out = run_once(dir.path(), &["man"])?;
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH ruang 1"), "{page}");
    assert!(
        page.contains("Exit status"),
        "the page has the exit statuses"
    );
    let pages = dir.path().join("man1");
    let out = run_once(dir.path(), &["man", "--out", pages.to_str().unwrap()])?;
    assert!(out.status.success());
    for command in [
        "ruang",
        "ruang-host",
        "ruang-join",
        "ruang-rooms",
        "ruang-node",
    ] {
        let page = std::fs::read_to_string(pages.join(format!("{command}.1")))?;
        assert!(page.contains(&format!(".TH {command} 1")), "{command}");
    }
    let out = run_once(dir.path(), &["completions", "tcsh"])?;
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
    Ok(())
}

/// `ruang devices` on a machine without a sound card (this one, CI's) says so and how to take
/// part anyway, instead of listing ALSA's `null` device by its description.
#[test]
fn devices_without_a_sound_card_say_so() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = run_once(dir.path(), &["devices"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!stdout.contains("Discard all samples"), "{stdout}");
    let cards = std::fs::read_to_string("/proc/asound/cards").unwrap_or_default();
    if cards.is_empty() || cards.contains("no soundcards") {
        assert!(stdout.contains("No audio devices found"), "{stdout}");
        assert!(stdout.contains("--input voice"), "{stdout}");
    }
    Ok(())
}

/// Ctrl-C (SIGINT) while a join is still trying: the process stops at once with 130, and in
/// JSON mode says so on stdout as a fatal error.
#[test]
fn an_interrupted_join_stops_with_130_and_a_json_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A ticket for a host that is gone: the join keeps trying.
    let ticket = {
        let mut p = Proc::start(
            dir.path(),
            "host",
            &[
                "host", "--title", "gone", "--json", "--input", "silence", "--output", "null",
            ],
        )?;
        let ready = p.wait_event(T, "ready")?;
        p.kill();
        ready["ticket"].as_str().context("ticket")?.to_string()
    };
    let mut join = Proc::start(
        dir.path(),
        "joiner",
        &[
            "join", &ticket, "--json", "--input", "silence", "--output", "null",
        ],
    )?;
    join.wait_event(T, "progress")?;
    join.signal_int()?;
    let fatal = join.wait(T, "the fatal error", |v| {
        (v["event"] == "error" && v["fatal"] == true).then(|| v.clone())
    })?;
    assert!(
        fatal["message"]
            .as_str()
            .is_some_and(|m| m.contains("interrupted")),
        "{fatal}"
    );
    assert_eq!(join.exit(T)?.code(), Some(130));
    Ok(())
}
