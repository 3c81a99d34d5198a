//! Child processes: real `ruang` nodes in `--json` mode and the bench's own helper processes,
//! optionally inside a network namespace. Every child is killed when its handle drops.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Unix time in µs.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The `ruang` release binary: `RUANG_BIN`, or next to this executable.
pub fn ruang_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("RUANG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("locating the bench binary")?;
    let bin = me.with_file_name("ruang");
    if !bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p ruang` (or set RUANG_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A line of JSON from a child, with the time it was read.
pub struct Line {
    /// When the bench read it.
    pub at_unix_us: u64,
    /// The value.
    pub value: Value,
}

/// A child process that speaks JSON lines on stdout.
pub struct Proc {
    /// Name used in messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    /// Every line seen so far.
    pub seen: Vec<Line>,
}

/// How to start a child.
pub struct Spawn<'a> {
    /// Name for messages and its folder.
    pub name: &'a str,
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working folder (identity, config and log go here).
    pub dir: &'a Path,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<&'a str>,
}

impl Proc {
    /// Starts a child. Its stderr goes to `<dir>/<name>.log`.
    pub fn spawn(s: Spawn<'_>) -> Result<Proc> {
        let home = s.dir.join(s.name);
        std::fs::create_dir_all(&home)?;
        let log = std::fs::File::create(s.dir.join(format!("{}.log", s.name)))?;
        let mut cmd = match s.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(s.program);
                c
            }
            None => Command::new(s.program),
        };
        cmd.args(&s.args)
            .env("XDG_CONFIG_HOME", &home)
            .env("XDG_STATE_HOME", &home)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_CHILD_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", s.program.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        // Every line also goes to `<dir>/<name>.events.jsonl`, to look at after the run.
        let mut keep = std::fs::File::create(s.dir.join(format!("{}.events.jsonl", s.name)))
            .map(std::io::BufWriter::new)?;
        let (tx, rx) = sync_channel(16_384);
        let who = s.name.to_string();
        std::thread::Builder::new()
            .name(format!("read-{who}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(keep, "{line}");
                    let at_unix_us = unix_us();
                    match serde_json::from_str::<Value>(&line) {
                        Ok(value) => {
                            if tx.send(Line { at_unix_us, value }).is_err() {
                                break;
                            }
                        }
                        Err(_) => eprintln!("[{who}] {line}"),
                    }
                }
            })?;
        let stdin = child.stdin.take();
        Ok(Proc {
            name: s.name.to_string(),
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// A `ruang` node: `ruang <args> --no-mdns --identity <dir>/<name>/identity.key`, plus
    /// `--listen` addresses.
    pub fn ruang(
        dir: &Path,
        name: &str,
        args: &[&str],
        listen: &[String],
        netns: Option<&str>,
    ) -> Result<Proc> {
        let bin = ruang_bin()?;
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--name".into(), name.into(), "--no-mdns".into()]);
        for l in listen {
            all.extend(["--listen".into(), l.clone()]);
        }
        all.push("--identity".into());
        all.push(
            dir.join(name)
                .join("identity.key")
                .to_string_lossy()
                .into_owned(),
        );
        Proc::spawn(Spawn {
            name,
            program: &bin,
            args: all,
            dir,
            netns,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one line on stdin.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes stdin (a `ruang --json` node leaves its room and exits).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a line for which `pred` returns `Some`.
    pub fn wait<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Line) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let got = pred(&line);
                    self.seen.push(line);
                    if let Some(t) = got {
                        return Ok(t);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "[{}] timed out after {timeout:?} waiting for {what}",
                        self.name
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!(
                        "[{}] exited while waiting for {what} (see its .log)",
                        self.name
                    )
                }
            }
        }
    }

    /// Waits for an event named `name`; returns it.
    pub fn wait_event(&mut self, timeout: Duration, name: &str) -> Result<Value> {
        self.wait(timeout, name, |l| {
            (l.value["event"] == name).then(|| l.value.clone())
        })
    }

    /// Takes every line that arrived so far without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for exit up to `timeout`, then kills.
    pub fn exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.drain();
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("[{}] did not exit within {timeout:?}; killed", self.name);
            }
            self.drain();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin and waits for a clean exit (killing after `timeout`).
    pub fn finish(&mut self, timeout: Duration) -> Result<()> {
        self.close_stdin();
        let status = self.exit(timeout)?;
        if !status.success() {
            bail!("[{}] exited with {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `stats` entry for speaker `key` (hex) in `lines`, if any.
pub fn last_speaker_stats(lines: &[Line], key: &str) -> Option<Value> {
    lines.iter().rev().find_map(|l| {
        if l.value["event"] != "stats" {
            return None;
        }
        l.value["speakers"]
            .as_array()?
            .iter()
            .find(|s| s["key"] == key)
            .cloned()
    })
}

/// Frames received from `key` in a `stats` event.
pub fn received_from(stats: &Value, key: &str) -> u64 {
    stats["speakers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["key"] == key))
        .and_then(|s| s["received"].as_u64())
        .unwrap_or(0)
}
