//! One hostile source must not take a room down: real `ruang` processes in network namespaces
//! (root; skipped otherwise), attacked from an address of their own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::netns::Lab;
use crate::common::{Net, Proc};
use anyhow::{Context, Result};
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

/// A host, an attacker and a guest, each a machine of its own on one switch, at
/// `10.<subnet>.0.1`, `.66` and `.2`; the namespaces in that order.
fn three_machines(lab: &mut Lab, subnet: u8) -> Result<[String; 3]> {
    let net = lab.switch("net")?;
    let mut at = Vec::new();
    for (name, last) in [("host", 1), ("attacker", 66), ("guest", 2)] {
        let ns = lab.namespace(name)?;
        lab.plug(&net, &ns, "eth0", &format!("10.{subnet}.0.{last}/24"))?;
        at.push(ns);
    }
    Ok([at[0].clone(), at[1].clone(), at[2].clone()])
}

/// A guest in namespace `ns` joins with `ticket`; with how long it took to be in.
fn guest_joins(dir: &std::path::Path, ticket: &str, ns: &str) -> Result<(Proc, Duration)> {
    let mut guest = Proc::start_on(
        dir,
        "guest",
        &[
            "join", ticket, "--json", "--input", "silence", "--output", "null",
        ],
        &Net::inside(ns, false),
    )?;
    let started = Instant::now();
    guest.wait_event(Duration::from_secs(15), "ready")?;
    Ok((guest, started.elapsed()))
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
    let at = three_machines(&mut lab, 7)?;
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

    let before = procstat::sample(host.pid()).context("host gone")?;
    let (mut guest, joined) = guest_joins(dir.path(), &ticket, &at[2])?;
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

/// Runs `attack` on a thread of its own inside namespace `ns` (its sockets are that
/// namespace's), on a runtime of its own; returns its thread.
fn in_namespace<F>(ns: &str, attack: F) -> Result<std::thread::JoinHandle<Result<()>>>
where
    F: FnOnce() -> Result<()> + Send + 'static,
{
    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    Ok(std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        attack()
    }))
}

/// One machine with 16 keys that connect again the moment they are disconnected (as keys
/// blocked for flooding do): the host lets that address start a burst of handshakes and then
/// 8 a second, so its CPU stays low and a guest still joins at once. Prints the handshakes
/// the attacker got through, and the host's CPU, memory and answer time.
#[test]
fn reconnecting_at_once_from_one_address_costs_a_few_handshakes_a_second() -> Result<()> {
    use ruang_proto::Identity;
    use ruang_testkit::hostile;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let Some(mut lab) = Lab::new()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let at = three_machines(&mut lab, 8)?;
    let host_net = Net {
        listen: vec!["/ip4/10.8.0.1/udp/4001/quic-v1".into()],
        ..Net::inside(&at[0], false)
    };
    let mut host = Proc::start_on(
        dir.path(),
        "host",
        &[
            "host", "--title", "knocked", "--json", "--input", "silence", "--output", "null",
        ],
        &host_net,
    )?;
    let ready = host.wait_event(T, "ready")?;
    let ticket = ready["ticket"].as_str().context("ticket")?.to_string();
    let host_peer: ruang_net::PeerId = ready["peer_id"].as_str().context("peer id")?.parse()?;
    let host_addr: ruang_net::Multiaddr =
        format!("/ip4/10.8.0.1/udp/4001/quic-v1/p2p/{host_peer}").parse()?;

    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, connected, failed) = (stop.clone(), connected.clone(), failed.clone());
        in_namespace(&at[1], move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut knockers = Vec::new();
                for _ in 0..16 {
                    let peer = hostile::Peer::spawn_on(
                        Identity::generate(&mut rand::rng()),
                        "/ip4/10.8.0.66/udp/0/quic-v1".parse()?,
                    )
                    .await?;
                    let (stop, connected, failed) =
                        (stop.clone(), connected.clone(), failed.clone());
                    let addr = host_addr.clone();
                    knockers.push(tokio::spawn(async move {
                        // Bounded: the test stops it, and it gives up after 2 minutes.
                        let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
                        while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < give_up
                        {
                            let dialled = tokio::time::timeout(
                                Duration::from_secs(2),
                                peer.client.dial(addr.clone()),
                            )
                            .await;
                            if matches!(dialled, Ok(Ok(()))) {
                                connected.fetch_add(1, Ordering::Relaxed);
                                // Gone before the next dial (a dial to a connected peer
                                // answers at once), within a second.
                                let _ = peer.client.disconnect(host_peer).await;
                                for _ in 0..20 {
                                    let peers = peer.client.connected_peers().await;
                                    if peers.is_ok_and(|p| !p.contains(&host_peer)) {
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                for k in knockers {
                    let _ = k.await;
                }
                anyhow::Ok(())
            })
        })?
    };
    // Until the attack is under way, then 10 s of it.
    let deadline = Instant::now() + T;
    while connected.load(Ordering::Relaxed) == 0 {
        anyhow::ensure!(
            Instant::now() < deadline && !attacker.is_finished(),
            "the attack never got going ({} dials failed)",
            failed.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = procstat::sample(host.pid()).context("host gone")?;
    let (c0, f0, t0) = (
        connected.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        Instant::now(),
    );
    let (mut guest, joined) = guest_joins(dir.path(), &ticket, &at[2])?;
    while t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let asked = Instant::now();
    host.send(r#"{"cmd":"status"}"#)?;
    host.wait_event(T, "status")?;
    let answered = asked.elapsed();
    let after = procstat::sample(host.pid()).context("host gone")?;
    let seconds = t0.elapsed().as_secs_f64();
    let (through, refused) = (
        connected.load(Ordering::Relaxed) - c0,
        failed.load(Ordering::Relaxed) - f0,
    );
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "16 keys reconnecting from one address for {seconds:.1} s: {through} connections \
         through ({:.1} a second), {refused} refused; guest joined in {joined:?}; host \
         answered a command in {answered:?}; host CPU {:.1} % of a core, RSS {} KiB",
        through as f64 / seconds,
        procstat::cpu_percent(&before, &after),
        after.rss_kib
    );
    let _ = attacker.join();
    // A few a second after the burst (the bound leaves room for timing), and the guest in.
    assert!(
        (through as f64) < ruang_net::limits::HANDSHAKES_PER_SECOND_PER_IP * 2.0 * seconds + 64.0,
        "{through} connections in {seconds:.1} s"
    );
    assert!(joined < Duration::from_secs(5), "joined in {joined:?}");
    guest.close_stdin();
    guest.exit(T)?;
    host.close_stdin();
    host.exit(T)?;
    Ok(())
}
