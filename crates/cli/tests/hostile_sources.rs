//! One hostile source must not take a room down: real `ruang` processes in network namespaces
//! (root; skipped otherwise), attacked from an address of their own.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::netns::Lab;
use common::{Net, Proc};
use ruang_testkit::procstat;

const T: Duration = Duration::from_secs(30);

/// A process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One machine opens 500 TCP connections to the host's port every 2 s and never sends a byte
/// on them: everyone else still joins, at once, and the host answers commands. (It used to
/// take the whole node's budget of connections being set up: 128, for as long as the sockets
/// stayed open, and every join failed.) Prints the join time, the host's answer time to a
/// command, and the host's CPU and memory during the attack.
#[test]
fn silent_connections_from_one_address_do_not_keep_others_out() -> Result<()> {
    let Some(mut lab) = Lab::new()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let net = lab.switch("net")?;
    let mut at = Vec::new();
    for (name, ip) in [
        ("host", "10.7.0.1"),
        ("attacker", "10.7.0.66"),
        ("guest", "10.7.0.2"),
    ] {
        let ns = lab.namespace(name)?;
        lab.plug(&net, &ns, "eth0", &format!("{ip}/24"))?;
        at.push(ns);
    }
    let host_net = Net {
        listen: vec![
            "/ip4/10.7.0.1/tcp/4001".into(),
            "/ip4/10.7.0.1/udp/4001/quic-v1".into(),
        ],
        ..Net::inside(&at[0], false)
    };
    let mut host = Proc::start_on(
        dir.path(),
        "host",
        &[
            "host", "--title", "besieged", "--json", "--input", "silence", "--output", "null",
        ],
        &host_net,
    )?;
    let ticket = host.wait_event(T, "ready")?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();

    // 500 connections at once, again every 2 s for 60 s (bash's /dev/tcp: connect, send
    // nothing, keep the socket).
    let script = "ulimit -n 65536; end=$((SECONDS+60)); while [ $SECONDS -lt $end ]; do \
                  for i in $(seq 1 500); do exec {fd}<>/dev/tcp/10.7.0.1/4001 || true; done; \
                  sleep 2; done 2>/dev/null";
    let _attacker = Killed(
        Command::new("ip")
            .args(["netns", "exec", &at[1], "bash", "-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    // Until the attack is under way (a first round of connections made and held).
    let deadline = Instant::now() + T;
    let held = || -> Result<usize> {
        let held = lab.exec(&at[1], &["ss", "-Htn", "state", "established"])?;
        Ok(held.lines().count())
    };
    while held()? == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the attack never got going");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("the host holds {} of the attacker's connections", held()?);

    let mut guest = Proc::start_on(
        dir.path(),
        "guest",
        &[
            "join", &ticket, "--json", "--input", "silence", "--output", "null",
        ],
        &Net::inside(&at[2], false),
    )?;
    let before = procstat::sample(host.pid()).context("host gone")?;
    let started = Instant::now();
    guest.wait_event(Duration::from_secs(15), "ready")?;
    let joined = started.elapsed();
    let asked = Instant::now();
    host.send(r#"{"cmd":"status"}"#)?;
    host.wait_event(T, "status")?;
    let answered = asked.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = procstat::sample(host.pid()).context("host gone")?;
    eprintln!(
        "under attack: joined in {joined:?}; host answered a command in {answered:?}; \
         host CPU {:.1} % of a core, RSS {} KiB",
        procstat::cpu_percent(&before, &after),
        after.rss_kib
    );
    // Far above what it takes (tens of ms): a bound a loaded machine still keeps.
    assert!(joined < Duration::from_secs(5), "joined in {joined:?}");
    guest.close_stdin();
    guest.exit(T)?;
    host.close_stdin();
    host.exit(T)?;
    Ok(())
}
