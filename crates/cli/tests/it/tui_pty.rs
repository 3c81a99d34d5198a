//! The terminal UI end to end: a real `ruang host` in a pseudo-terminal, driven by key presses
//! written to the terminal and read back through a terminal emulator (vt100), with a second
//! `ruang` process in `--json` mode in the same room that checks the keys' effects.
//!
//! It covers what the TestBackend tests cannot: raw mode and key decoding on a real terminal,
//! the run loop acting on the node, the ticket shown on screen being usable, and the terminal
//! being restored when the user leaves.

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use anyhow::{Context, Result, bail};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

const T: Duration = Duration::from_secs(20);
const ROWS: u16 = 40;
const COLS: u16 = 110;

/// A `ruang` process on the slave side of a pseudo-terminal, seen through a vt100 emulator.
struct PtyProc {
    child: Child,
    master: File,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl PtyProc {
    fn start(dir: &std::path::Path, name: &str, args: &[&str]) -> Result<PtyProc> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave_path = ptsname(&master, Vec::new())?;
        let slave_path = slave_path.to_str().context("pty name")?.to_string();
        tcsetwinsize(
            &master,
            Winsize {
                ws_row: ROWS,
                ws_col: COLS,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )?;
        let slave = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&slave_path)
        };
        let home = dir.join(name);
        std::fs::create_dir_all(&home)?;
        // `setsid -c`: a session of its own with the pty as controlling terminal, as in a real
        // terminal, and independent of whatever terminal runs the tests.
        let child = Command::new("setsid")
            .arg("-c")
            .arg(env!("CARGO_BIN_EXE_ruang"))
            .args(args)
            .args(["--name", name, "--no-mdns", "--listen"])
            .arg("/ip4/127.0.0.1/udp/0/quic-v1")
            .arg("--identity")
            .arg(home.join("identity.key"))
            .arg("--log-file")
            .arg(home.join("ruang.log"))
            .env("XDG_CONFIG_HOME", &home)
            .env("TERM", "xterm-256color")
            .env("RUST_LOG", "info")
            .stdin(Stdio::from(slave()?))
            .stdout(Stdio::from(slave()?))
            .stderr(Stdio::from(slave()?))
            .spawn()
            .context("starting ruang under setsid (util-linux)")?;
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, mut answer) = (master.try_clone()?, master.try_clone()?);
        let (screen_in, raw_in) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends when the last slave descriptor closes (EIO) or the test ends.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                // A cursor position query must be answered, as a terminal would.
                if chunk.windows(4).any(|w| w == b"\x1b[6n") {
                    let _ = answer.write_all(b"\x1b[1;1R");
                }
                screen_in.lock().unwrap().process(chunk);
                raw_in.lock().unwrap().extend_from_slice(chunk);
            }
        });
        Ok(PtyProc {
            child,
            master,
            screen,
            raw,
        })
    }

    /// The screen's rows now, trailing blanks trimmed.
    fn rows(&self) -> Vec<String> {
        let parser = self.screen.lock().unwrap();
        parser
            .screen()
            .rows(0, COLS)
            .map(|r| r.trim_end().to_string())
            .collect()
    }

    /// Waits until some row contains `needle`; returns the screen then.
    fn wait_for(&self, needle: &str) -> Result<Vec<String>> {
        let deadline = Instant::now() + T;
        loop {
            let rows = self.rows();
            if rows.iter().any(|r| r.contains(needle)) {
                return Ok(rows);
            }
            if Instant::now() > deadline {
                bail!(
                    "the screen did not show {needle:?} within {T:?}:\n{}",
                    rows.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The highlighted (selected) text, if any: the reverse-video cells of a list row.
    fn selected_row(&self) -> Option<String> {
        let parser = self.screen.lock().unwrap();
        let screen = parser.screen();
        (0..ROWS).find_map(|row| {
            // The list's first cell inside its border.
            let cell = screen.cell(row, 1)?;
            cell.inverse().then(|| {
                (1..COLS)
                    .map_while(|col| screen.cell(row, col).filter(|c| c.inverse()))
                    .map(|c| c.contents())
                    .collect::<String>()
            })
        })
    }

    /// Presses j (down) until the highlighted row names `who`, at most ten times.
    fn select(&mut self, who: &str) -> Result<()> {
        for _ in 0..10 {
            self.keys("j")?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Some(row) = self.selected_row() {
                    if row.contains(who) {
                        return Ok(());
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("could not select {who:?}:\n{}", self.rows().join("\n"))
    }

    /// Types keys into the terminal.
    fn keys(&mut self, keys: &str) -> Result<()> {
        // One key per write, a little apart, like a person (and so that an escape key is
        // not read as the start of a sequence with the next key).
        for b in keys.bytes() {
            self.master.write_all(&[b])?;
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(())
    }

    fn exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        wait_exit(&mut self.child, timeout, "the terminal UI")
    }
}

impl Drop for PtyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ticket from the ticket panel: the rows from the one that starts it to the panel's
/// bottom border, joined.
fn ticket_on_screen(rows: &[String]) -> Result<String> {
    let top = rows
        .iter()
        .position(|r| r.contains("Others join with"))
        .context("no ticket panel")?;
    let start = rows[top..]
        .iter()
        .position(|r| r.starts_with("ruang1"))
        .map_or(rows.len(), |i| top + i);
    let ticket: String = rows[start..]
        .iter()
        .take_while(|r| !r.is_empty() && !r.starts_with('─'))
        .map(|r| r.trim())
        .collect();
    if !ticket.starts_with("ruang1") {
        bail!("no ticket in the panel:\n{}", rows.join("\n"));
    }
    Ok(ticket)
}

#[test]
fn host_runs_a_room_from_the_keyboard() -> Result<()> {
    if Command::new("setsid").arg("--version").output().is_err() {
        eprintln!("skipped: `setsid` (util-linux) is not installed");
        return Ok(());
    }
    if !std::path::Path::new("/dev/ptmx").exists() {
        eprintln!("skipped: this system has no pseudo-terminals (/dev/ptmx)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut tui = PtyProc::start(
        dir.path(),
        "tui-host",
        &[
            "host", "--title", "pty room", "--input", "silence", "--output", "null",
        ],
    )?;
    tui.wait_for("ruang · pty room")?;
    tui.wait_for("press t for the ticket")?;

    // t shows the ticket; a guest joins with what the screen shows.
    tui.keys("t")?;
    let rows = tui.wait_for("Others join with")?;
    let ticket = ticket_on_screen(&rows)?;
    // y puts it on the terminal's clipboard (OSC 52).
    tui.keys("y")?;
    tui.wait_for("ticket sent to the terminal's clipboard")?;
    let raw = String::from_utf8_lossy(&tui.raw.lock().unwrap()).to_string();
    let osc = raw
        .find("\x1b]52;c;")
        .context("no OSC 52 sequence written")?;
    let payload: String = raw[osc + 7..]
        .chars()
        .take_while(|c| *c != '\x07' && *c != '\x1b')
        .collect();
    use base64::Engine as _;
    let copied = base64::engine::general_purpose::STANDARD.decode(payload)?;
    assert_eq!(String::from_utf8(copied)?, ticket);
    tui.keys("\x1b")?;
    let mut guest = Proc::start(
        dir.path(),
        "guest",
        &[
            "join", &ticket, "--json", "--input", "tone", "--output", "null",
        ],
    )?;
    let guest_key = guest.ready_key(T)?;
    tui.wait_for("Audience (1)")?;

    // Chat both ways.
    guest.send(r#"{"cmd":"chat","text":"hello from json"}"#)?;
    tui.wait_for("guest: hello from json")?;
    tui.keys("chello from a terminal\r")?;
    guest.wait(T, "the host's chat line", |v| {
        (v["event"] == "chat" && v["text"] == "hello from a terminal").then_some(())
    })?;

    // The guest raises a hand; the host selects it (j) and invites it (i).
    guest.send(r#"{"cmd":"raise_hand"}"#)?;
    tui.wait_for("Raised hands (1)")?;
    tui.select("guest")?;
    tui.keys("i")?;
    guest.wait(T, "the invitation", |v| {
        state_lists(v, "invited", &guest_key).then_some(())
    })?;
    guest.send(r#"{"cmd":"accept_invite"}"#)?;
    tui.wait_for("Stage (2)")?;

    // u mutes the selected speaker; the guest sees it in the room state.
    tui.keys("u")?;
    guest.wait(T, "being muted", |v| {
        state_lists(v, "muted", &guest_key).then_some(())
    })?;
    tui.wait_for("speaker muted")?;

    // B bans the selected person: the guest is removed and exits with code 3.
    tui.keys("B")?;
    guest.wait(T, "being banned", |v| {
        (v["event"] == "left" && v["reason"] == "banned").then_some(())
    })?;
    assert_eq!(guest.exit(T)?.code(), Some(3));
    tui.wait_for("Stage (1)")?;

    // b lists the banned, u unbans the guest.
    tui.keys("b")?;
    tui.wait_for("Banned from this room")?;
    tui.keys("u")?;
    // Nobody else is connected now: the unban is saved in the log, not "done".
    tui.wait_for("saved, not yet sent: unban")?;
    // The list closes by itself once nobody is banned.
    tui.wait_for("q  leave")?;

    // q asks the host what becomes of the room (nobody else is here to take it); l leaves it
    // without a host; the process ends cleanly and gives the terminal back.
    tui.keys("q")?;
    tui.wait_for("Nobody here can take the room")?;
    tui.keys("l")?;
    let status = tui.exit(T)?;
    assert!(status.success(), "the terminal UI exited with {status}");
    let raw = tui.raw.lock().unwrap().clone();
    let entered = raw.windows(8).rposition(|w| w == b"\x1b[?1049h");
    let left = raw.windows(8).rposition(|w| w == b"\x1b[?1049l");
    assert!(
        matches!((entered, left), (Some(e), Some(l)) if l > e),
        "the alternate screen was not left at the end"
    );
    Ok(())
}

/// Joining shows a screen of its own with the join's progress (not a blank terminal), and
/// `q` there cancels: exit status 130, the terminal given back, the progress on stderr.
#[test]
fn a_join_shows_its_progress_and_can_be_cancelled() -> Result<()> {
    if Command::new("setsid").arg("--version").output().is_err()
        || !std::path::Path::new("/dev/ptmx").exists()
    {
        eprintln!("skipped: no `setsid` or no pseudo-terminals");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut host = Proc::start(
        dir.path(),
        "host",
        &[
            "host", "--title", "frozen", "--json", "--input", "silence", "--output", "null",
        ],
    )?;
    let ticket = host.wait_event(T, "ready")?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    // A host that is there but does not answer: the join keeps trying.
    host.signal("-STOP")?;
    let mut tui = PtyProc::start(
        dir.path(),
        "tui-guest",
        &["join", &ticket, "--input", "silence", "--output", "null"],
    )?;
    let rows = tui.wait_for("Joining room");
    let rows = rows.and_then(|_| tui.wait_for("connecting to the host"));
    host.signal("-CONT")?;
    let rows = rows?;
    assert!(
        rows.iter().any(|r| r.contains("q or Ctrl-C cancels")),
        "{}",
        rows.join("\n")
    );
    tui.keys("q")?;
    let status = tui.exit(T)?;
    assert_eq!(status.code(), Some(130), "{status}");
    let raw = String::from_utf8_lossy(&tui.raw.lock().unwrap()).to_string();
    let left = raw
        .rfind("\x1b[?1049l")
        .context("the alternate screen was not left")?;
    assert!(
        raw[left..].contains("connecting to the host"),
        "the progress was not printed after the UI closed: {:?}",
        &raw[left..]
    );
    Ok(())
}
