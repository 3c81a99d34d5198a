//! Driving real `ruang` processes through `--json`: spawn, send commands, wait for events.
#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The `ruang` binary under test: `$RUANG_BIN` if set (scripts/reachability.sh runs a copy,
/// so that building while it runs changes nothing), else the one cargo built for the test.
pub fn ruang_bin() -> PathBuf {
    std::env::var_os("RUANG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ruang").into())
}

/// A command running [`ruang_bin`].
pub fn ruang() -> Command {
    Command::new(ruang_bin())
}

/// Where a [`Proc`] runs and how it finds peers.
#[derive(Clone, Debug)]
pub struct Net {
    /// Network namespace to run in (`ip netns exec`), or the test's own.
    pub namespace: Option<String>,
    /// Local discovery with mDNS.
    pub mdns: bool,
    /// `--listen` addresses (none: the node's defaults).
    pub listen: Vec<String>,
}

impl Net {
    /// The test's own namespace, QUIC on 127.0.0.1, no mDNS.
    pub fn loopback() -> Net {
        Net {
            namespace: None,
            mdns: false,
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()],
        }
    }

    /// Inside `namespace`, on the node's default addresses, with or without mDNS.
    pub fn inside(namespace: &str, mdns: bool) -> Net {
        Net {
            namespace: Some(namespace.to_string()),
            mdns,
            listen: Vec::new(),
        }
    }
}

/// Field added to every event a [`Proc`] reads: ms from the process start to the line.
pub const ARRIVED_MS: &str = "_arrived_ms";

/// When `event` was read, as time since its process started.
pub fn arrived(event: &Value) -> Duration {
    Duration::from_secs_f64(event[ARRIVED_MS].as_f64().unwrap_or(0.0) / 1e3)
}

/// A `ruang` process in `--json` mode.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Every event seen so far.
    pub seen: Vec<Value>,
    /// Unix µs when the process was started (events' [`arrived`] times count from it).
    pub started_unix_us: u64,
}

impl Proc {
    /// Starts `ruang <args>` with its own identity and config folder under `dir`, on loopback
    /// QUIC, mDNS off.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Result<Proc> {
        Proc::start_on(dir, name, args, &Net::loopback())
    }

    /// Starts `ruang <args>` with its own identity and config folder under `dir`, on the
    /// network `net` describes. `--name` is added for the commands that take one.
    pub fn start_on(dir: &Path, name: &str, args: &[&str], net: &Net) -> Result<Proc> {
        Proc::spawn(dir, name, args, net, true)
    }

    /// Like [`Proc::start`], without `--identity`: the command picks its default identity
    /// file in its config folder (`dir/name/ruang/`).
    pub fn start_with_default_identity(dir: &Path, name: &str, args: &[&str]) -> Result<Proc> {
        Proc::spawn(dir, name, args, &Net::loopback(), false)
    }

    fn spawn(dir: &Path, name: &str, args: &[&str], net: &Net, identity: bool) -> Result<Proc> {
        let home = dir.join(name);
        std::fs::create_dir_all(&home)?;
        let mut command = match &net.namespace {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(ruang_bin());
                c
            }
            None => ruang(),
        };
        command.args(args);
        if matches!(args.first(), Some(&"host") | Some(&"join")) {
            command.args(["--name", name]);
        }
        if !net.mdns {
            command.arg("--no-mdns");
        }
        for l in &net.listen {
            command.args(["--listen", l]);
        }
        if identity {
            command.arg("--identity").arg(home.join("identity.key"));
        }
        let mut child = command
            .env("XDG_CONFIG_HOME", &home)
            .env("XDG_STATE_HOME", &home)
            // `RUANG_TEST_LOG` (a `RUST_LOG` filter) shows more of the processes' logs when a
            // test needs looking into.
            .env(
                "RUST_LOG",
                std::env::var("RUANG_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ruang")?;
        // Each log line is named by its process, so interleaved logs of a test can be told apart.
        let stderr = child.stderr.take().context("stderr")?;
        let who = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{who}] {line}");
            }
        });
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = sync_channel(4096);
        let who = name.to_string();
        let started = Instant::now();
        let started_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(mut v) => {
                        // When it was printed, for timing joins (see `Proc::at`).
                        if let Some(o) = v.as_object_mut() {
                            o.insert(
                                ARRIVED_MS.into(),
                                (started.elapsed().as_secs_f64() * 1e3).into(),
                            );
                        }
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => {
                        eprintln!("[{who}] non-JSON line on stdout: {line}");
                        // Passed on as a JSON string, so a test of the output sees it.
                        if tx.send(Value::String(line)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Proc {
            name: name.to_string(),
            child,
            stdin,
            events: rx,
            seen: Vec::new(),
            started_unix_us,
        })
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes stdin (the process should leave the room and exit).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for an event for which `pred` returns `Some`.
    pub fn wait<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if let Some(t) = pred(&v) {
                        return Ok(t);
                    }
                }
                Err(RecvTimeoutError::Timeout) => bail!(
                    "[{}] timed out after {timeout:?} waiting for {what}",
                    self.name
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("[{}] exited while waiting for {what}", self.name)
                }
            }
        }
    }

    /// Every line the process prints from now until its stdout closes (it exited), up to
    /// `timeout`; they are added to [`Proc::seen`] too.
    pub fn rest(&mut self, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    rest.push(v);
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(rest),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("[{}] stdout still open after {timeout:?}", self.name)
                }
            }
        }
    }

    /// Waits for the `ready` event and returns this node's key (hex).
    pub fn ready_key(&mut self, timeout: Duration) -> Result<String> {
        let ready = self.wait_event(timeout, "ready")?;
        Ok(ready["key"].as_str().context("key")?.to_string())
    }

    /// Waits for an event named `name`.
    pub fn wait_event(&mut self, timeout: Duration, name: &str) -> Result<Value> {
        self.wait(timeout, name, |v| (v["event"] == name).then(|| v.clone()))
    }

    /// Kills the process at once (a crash, a pulled cable).
    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn signal_int(&mut self) -> Result<()> {
        self.signal("-INT")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to the process.
    pub fn signal(&mut self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`; kills it after.
    pub fn exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        wait_exit(&mut self.child, timeout, &self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, up to `timeout`; kills it after.
pub fn wait_exit(
    child: &mut Child,
    timeout: Duration,
    who: &str,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("[{who}] did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `v` is a `state` event whose list `field` has the person with `key`.
pub fn state_lists(v: &Value, field: &str, key: &str) -> bool {
    v["event"] == "state"
        && v[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["key"] == key))
}

/// Frames received from `key` in a `stats` event, if listed.
pub fn received_from(stats: &Value, key: &str) -> Option<u64> {
    stats["speakers"]
        .as_array()?
        .iter()
        .find(|s| s["key"] == key)
        .and_then(|s| s["received"].as_u64())
}

/// Reads a 48 kHz mono WAV (16-bit or float) into floats.
pub fn read_wav(path: &Path) -> Result<Vec<f32>> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let spec = reader.spec();
    if spec.sample_rate != 48_000 || spec.channels != 1 {
        bail!("{}: expected 48 kHz mono, got {spec:?}", path.display());
    }
    Ok(match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => reader
            .samples::<i16>()
            .map(|s| s.map(|v| v as f32 / 32768.0))
            .collect::<Result<_, _>>()?,
    })
}

/// Writes `seconds` of a seeded synthetic voice to a WAV file and returns its samples.
pub fn write_voice(path: &PathBuf, seed: u64, seconds: f32) -> Result<Vec<f32>> {
    use ruang_audio::format::FrameDuration;
    use ruang_audio::source::{Source, VoiceSource};
    let frame = FrameDuration::Ms20;
    let mut src = VoiceSource::new(seed, frame);
    let mut samples = Vec::new();
    let mut buf = vec![0.0; frame.samples()];
    while (samples.len() as f32) < seconds * 48_000.0 {
        src.next_frame(&mut buf)?;
        samples.extend_from_slice(&buf);
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in &samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(samples)
}

/// One of the JSON schemas of docs/json/ (`room-events`, `room-commands`, `node-events`,
/// `rooms`, `id`), to check what the processes print.
pub struct Schema {
    name: String,
    whole: jsonschema::Validator,
    /// For a `oneOf` of objects told apart by `event` (or `cmd`): each one's validator, so a
    /// line that fails gets the errors of the kind it says it is.
    kinds: Vec<(String, jsonschema::Validator)>,
}

impl Schema {
    /// Loads docs/json/`name`.schema.json.
    pub fn load(name: &str) -> Result<Schema> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/json")
            .join(format!("{name}.schema.json"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("{path:?}"))?;
        let root: Value = serde_json::from_str(&text).with_context(|| format!("{path:?}"))?;
        let whole = jsonschema::validator_for(&root).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let mut kinds = Vec::new();
        for branch in root["oneOf"].as_array().into_iter().flatten() {
            // A branch is an object schema or a `$ref` to one in `$defs`.
            let object = match branch["$ref"].as_str() {
                Some(r) => &root["$defs"][r.trim_start_matches("#/$defs/")],
                None => branch,
            };
            let tag = ["event", "cmd"]
                .iter()
                .find_map(|t| object["properties"][t]["const"].as_str());
            let Some(tag) = tag else { continue };
            let mut alone = branch.clone();
            if root.get("$defs").is_some() {
                alone["$defs"] = root["$defs"].clone();
            }
            let validator =
                jsonschema::validator_for(&alone).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            kinds.push((tag.to_string(), validator));
        }
        Ok(Schema {
            name: name.to_string(),
            whole,
            kinds,
        })
    }

    /// What is wrong with `line` (a line a process printed, the harness's `_arrived_ms` taken
    /// off); empty when it matches.
    pub fn errors(&self, line: &Value) -> Vec<String> {
        let mut line = line.clone();
        if let Some(o) = line.as_object_mut() {
            o.remove(ARRIVED_MS);
        }
        if self.whole.is_valid(&line) {
            return Vec::new();
        }
        let tag = line["event"].as_str().or(line["cmd"].as_str());
        let why: Vec<String> = match self.kinds.iter().find(|(k, _)| Some(k.as_str()) == tag) {
            Some((_, v)) => v
                .iter_errors(&line)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect(),
            None => vec!["no such kind in the schema".to_string()],
        };
        vec![format!(
            "{} does not match {}: {}",
            line,
            self.name,
            why.join("; ")
        )]
    }

    /// The kinds (`event` or `cmd` values) the schema lists.
    pub fn kinds(&self) -> Vec<&str> {
        self.kinds.iter().map(|(k, _)| k.as_str()).collect()
    }
}
