//! Real `ruang` processes on real network shapes, built from network namespaces (see
//! `common::netns`): a LAN with mDNS only, homes behind NATs with a public relay, a relay that
//! dies. Each test asserts that the room is heard (frames counted, the recording compared with
//! the source) and prints how long the join took to the first audio. Root only: without it each
//! test says it was skipped.

use std::path::Path;
use std::time::Duration;

use crate::common::netns::{Lab, Nat};
use crate::common::*;
use anyhow::{Context, Result, ensure};
use ruang_testkit::heard;
use serde_json::Value;

/// Upper bound on any one wait of these tests.
const T: Duration = Duration::from_secs(30);
/// Seconds of voice the host speaks (it stops at the end of the file).
const VOICE_SECONDS: f32 = 60.0;

/// A host speaking a known voice, as a `--json` process.
struct Host {
    proc: Proc,
    key: String,
    ticket: String,
    room_id: String,
    reference: Vec<f32>,
    /// Unix µs at which source sample 0 was due.
    capture_started: u64,
}

fn start_host(dir: &Path, net: &Net, extra: &[&str]) -> Result<Host> {
    let source = dir.join("host.wav");
    let reference = write_voice(&source.to_path_buf(), 5, VOICE_SECONDS)?;
    let mut args = vec![
        "host",
        "--title",
        "reachability",
        "--json",
        "--input",
        source.to_str().context("path")?,
        "--output",
        "null",
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::start_on(dir, "host", &args, net)?;
    let ready = proc.wait_event(T, "ready")?;
    let capture = proc.wait_event(T, "capture_started")?;
    Ok(Host {
        capture_started: capture["unix_us"].as_u64().context("unix_us")?,
        key: ready["key"].as_str().context("key")?.to_string(),
        ticket: ready["ticket"].as_str().context("ticket")?.to_string(),
        room_id: ready["room_id"].as_str().context("room_id")?.to_string(),
        proc,
        reference,
    })
}

/// A listener that joined `target`, recording to `<name>.wav`.
struct Listener {
    proc: Proc,
    recording: std::path::PathBuf,
    /// When the first frame was counted (see [`Listener::hears`]).
    first_frame: Option<Duration>,
}

fn start_listener(
    dir: &Path,
    name: &str,
    target: &str,
    net: &Net,
    extra: &[&str],
) -> Result<Listener> {
    let recording = dir.join(format!("{name}.wav"));
    let mut args = vec![
        "join",
        target,
        "--json",
        "--input",
        "silence",
        "--output",
        recording.to_str().context("path")?,
    ];
    args.extend_from_slice(extra);
    let proc = Proc::start_on(dir, name, &args, net)?;
    Ok(Listener {
        proc,
        recording,
        first_frame: None,
    })
}

impl Listener {
    /// Checks that the join said `what` in a `progress` event.
    fn progressed(&self, what: &str) -> Result<()> {
        let lines: Vec<&str> = self
            .proc
            .seen
            .iter()
            .filter(|v| v["event"] == "progress")
            .filter_map(|v| v["message"].as_str())
            .collect();
        eprintln!("[{}] join progress: {lines:?}", self.proc.name);
        ensure!(
            lines.iter().any(|l| l.contains(what)),
            "[{}] no progress line saying {what:?}: {lines:?}",
            self.proc.name
        );
        Ok(())
    }

    /// Waits until `frames` frames from the host arrived; returns the time from the process
    /// start to the first frame (the unix time in the `hearing` event).
    fn hears(&mut self, host: &Host, frames: u64) -> Result<Duration> {
        let mut first = None;
        let waited = self.proc.wait(T, "frames from the host", |v: &Value| {
            if v["event"] == "hearing" && v["key"] == host.key.as_str() {
                let unix_us = v["unix_us"].as_u64().unwrap_or(0);
                first = Some(unix_us);
            }
            let n = (v["event"] == "stats")
                .then(|| received_from(v, &host.key))
                .flatten()
                .unwrap_or(0);
            (n >= frames).then_some(())
        });
        if let Err(e) = waited {
            self.show_timeline("no audio");
            // What each side counted last: requests held, links, frames per speaker.
            let last_stats = |seen: &[Value]| {
                seen.iter()
                    .rev()
                    .find(|v| v["event"] == "stats")
                    .map(Value::to_string)
                    .unwrap_or_default()
            };
            eprintln!(
                "[{}] last stats: {}",
                self.proc.name,
                last_stats(&self.proc.seen)
            );
            eprintln!("[host] last stats seen: {}", last_stats(&host.proc.seen));
            return Err(e);
        }
        let first = first.context("no hearing event")?;
        let after = Duration::from_micros(first.saturating_sub(self.proc.started_unix_us));
        if after > Duration::from_secs(1) {
            self.show_timeline("slow join");
        }
        self.first_frame = Some(after);
        Ok(after)
    }

    /// Waits for the host's audio (printing how long after `label` it came), checks that the
    /// join said `progress`, that the recording holds the host's voice, and that the host
    /// leaves cleanly.
    fn hears_holds_and_ends(mut self, mut host: Host, label: &str, progress: &str) -> Result<()> {
        let t = self.hears(&host, 50)?;
        eprintln!("{label} → first audio: {t:?}");
        self.progressed(progress)?;
        self.holds(&host)?;
        host.proc.close_stdin();
        host.proc.exit(T)?;
        Ok(())
    }

    /// Prints what the join went through (events but stats, with when), for whoever looks
    /// into a slow or failed one.
    fn show_timeline(&self, why: &str) {
        let timeline: Vec<String> = self
            .proc
            .seen
            .iter()
            .filter(|v| v["event"] != "stats")
            .map(|v| {
                let what = v["message"].as_str().unwrap_or_default();
                format!(
                    "{:.0}ms {} {what}",
                    arrived(v).as_secs_f64() * 1e3,
                    v["event"]
                )
            })
            .collect();
        eprintln!("[{}] {why}; events: {timeline:#?}", self.proc.name);
    }

    /// Leaves, and checks that the recording holds the host's voice from where it joined.
    fn holds(self, host: &Host) -> Result<()> {
        let first = self.first_frame.context("hears() first")?;
        let first_us = self.proc.started_unix_us + first.as_micros() as u64;
        self.holds_from(host, first_us)
    }

    /// Leaves, and checks that the recording holds the host's voice from unix µs `first_us`
    /// (when audio started or came back) on.
    fn holds_from(mut self, host: &Host, first_us: u64) -> Result<()> {
        let playout = self
            .proc
            .seen
            .iter()
            .find(|v| v["event"] == "playout_started")
            .and_then(|v| v["unix_us"].as_u64())
            .context("no playout_started event")?;
        let heard_before = self.received(host)?;
        // Six more seconds of it (it is past `first_us` now), so that source seconds 2 to 5
        // from `first_us` are all in.
        self.proc
            .wait(T, "six more seconds of the host", |v: &Value| {
                (v["event"] == "stats"
                    && received_from(v, &host.key).unwrap_or(0) >= heard_before + 300)
                    .then_some(())
            })?;
        self.proc.close_stdin();
        ensure!(
            self.proc.exit(T)?.success(),
            "[{}] exit status",
            self.proc.name
        );
        let recording = read_wav(&self.recording)?;
        // Source second 0 was due at `capture`; the listener heard it from about `first_us`.
        let joined_s = first_us.saturating_sub(host.capture_started) as f64 / 1e6;
        let how = heard::Compare::seconds(joined_s + 2.0, joined_s + 5.0)
            .started(host.capture_started, playout)
            .max_delay_ms(3_000);
        let compared = heard::compare(&host.reference, &recording, &how);
        eprintln!(
            "[{}] recording vs the host's source: {compared}",
            self.proc.name
        );
        if !compared.is_heard() {
            let stats: Vec<String> = self
                .proc
                .seen
                .iter()
                .filter(|v| v["event"] == "stats")
                .map(|v| format!("{:.0}ms {}", arrived(v).as_secs_f64() * 1e3, v["speakers"]))
                .collect();
            eprintln!("[{}] stats: {stats:#?}", self.proc.name);
            eprintln!(
                "[{}] source due from unix µs {}, playout from {playout}, heard from {first_us}",
                self.proc.name, host.capture_started
            );
        }
        ensure!(
            compared.is_heard(),
            "[{}] did not hear the host's voice",
            self.proc.name
        );
        Ok(())
    }
}

/// One LAN, mDNS only (no bootstrap, no relay): a fresh process joins by the room id it has
/// from `ruang rooms`, another by the ticket; both hear the host.
#[test]
fn lan_with_mdns_only() -> Result<()> {
    let Some(mut lab) = Lab::new()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let lan = lab.switch("lan")?;
    let mut at = Vec::new();
    for (i, name) in ["h1", "h2", "h3", "h4"].iter().enumerate() {
        let ns = lab.namespace(name)?;
        lab.plug(&lan, &ns, "eth0", &format!("10.9.0.{}/24", i + 1))?;
        at.push(Net::inside(&ns, true));
    }
    let mut host = start_host(dir.path(), &at[0], &[])?;

    // `ruang rooms` in a fresh process lists it.
    let mut rooms = Proc::start_on(dir.path(), "browser", &["rooms", "--json"], &at[3])?;
    let listed = rooms.wait(T, "the room listed", |v| {
        (v["room_id"] == host.room_id.as_str()).then_some(())
    });
    listed.context("`ruang rooms` on the LAN")?;

    let mut by_id = start_listener(dir.path(), "by-id", &host.room_id, &at[1], &[])?;
    let mut by_ticket = start_listener(dir.path(), "by-ticket", &host.ticket, &at[2], &[])?;
    let t_id = by_id.hears(&host, 150)?;
    let t_ticket = by_ticket.hears(&host, 150)?;
    eprintln!("LAN, join by room id → first audio: {t_id:?}");
    eprintln!("LAN, join by ticket → first audio: {t_ticket:?}");
    by_id.holds(&host)?;
    by_ticket.holds(&host)?;
    host.proc.close_stdin();
    host.proc.exit(T)?;
    Ok(())
}

/// The internet of these tests: a switch with public addresses, a relay node on it, and two
/// homes behind NATs of the given kinds.
struct Internet {
    relay: Proc,
    /// The relay's QUIC address with its peer id.
    relay_addr: String,
    /// Where the relay runs.
    relay_net: Net,
    homes: [Net; 2],
    /// A machine with a public address of its own (203.0.113.21), no NAT.
    public: Net,
    /// Held for its drop, which deletes the namespaces (last: after the relay is stopped).
    lab: Lab,
}

impl Internet {
    /// Adds nftables `rules` on the router namespace `router` of the lab (`a-nat`, `b-nat`).
    fn router_rules(&self, router: &str, rules: &str) -> Result<()> {
        crate::common::netns::nft(&self.lab.name(router), rules)
    }
}

fn internet(dir: &Path, nats: [Nat; 2]) -> Result<Option<Internet>> {
    let Some(mut lab) = Lab::new()? else {
        return Ok(None);
    };
    let wan = lab.switch("wan")?;
    let relay_ns = lab.namespace("relay")?;
    lab.plug(&wan, &relay_ns, "eth0", "203.0.113.1/24")?;
    let a = lab.home("a", 1, &wan, "203.0.113.11/24", nats[0])?;
    let b = lab.home("b", 2, &wan, "203.0.113.12/24", nats[1])?;
    let public = lab.namespace("public")?;
    lab.plug(&wan, &public, "eth0", "203.0.113.21/24")?;
    let relay_net = Net {
        namespace: Some(relay_ns),
        mdns: false,
        listen: vec![
            "/ip4/203.0.113.1/udp/4001/quic-v1".into(),
            "/ip4/203.0.113.1/tcp/4001".into(),
        ],
    };
    let mut relay = Proc::start_on(dir, "relay", &["node", "--relay", "--json"], &relay_net)?;
    let ready = relay.wait_event(T, "ready")?;
    let peer = ready["peer_id"].as_str().context("peer_id")?;
    let relay_addr = format!("/ip4/203.0.113.1/udp/4001/quic-v1/p2p/{peer}");
    Ok(Some(Internet {
        relay,
        relay_addr,
        relay_net,
        homes: [Net::inside(&a, false), Net::inside(&b, false)],
        public: Net::inside(&public, false),
        lab,
    }))
}

/// Two homes behind cone NATs whose routers answer unsolicited packets (hole punching fails
/// there, see `Nat::ConeOpenRouter`), a public relay: the host follows the README
/// (`--bootstrap R --via-relay R`), the listener bootstraps from the relay and joins by ticket;
/// the relay carries the room.
#[test]
fn cone_nat_to_cone_nat_via_a_relay() -> Result<()> {
    cone_to_cone(Nat::ConeOpenRouter)
}

/// Two homes behind cone NATs with home-router firewalls: after the join through the relay,
/// hole punching connects the two directly, and the room goes on when the relay dies.
#[test]
fn cone_nat_hole_punch_survives_the_relay() -> Result<()> {
    cone_to_cone(Nat::Cone)
}

/// The host in the first home, following the README (`--bootstrap R --via-relay R`; its ticket
/// must carry the circuit and no loopback address), and a listener in the second home that
/// bootstraps from the relay and joins by the ticket.
fn through_the_relay(dir: &Path, net: &Internet) -> Result<(Host, Listener)> {
    let r = net.relay_addr.as_str();
    let host = start_host(dir, &net.homes[0], &["--bootstrap", r, "--via-relay", r])?;
    eprintln!("host's ticket: {}", host.describe_ticket());
    ensure!(
        host.ticket_has_circuit(),
        "the host's ticket has no relay circuit address"
    );
    ensure!(
        !host.describe_ticket().contains("/127.0.0.1/"),
        "the ticket spends slots on loopback addresses"
    );
    let listener = start_listener(
        dir,
        "listener",
        &host.ticket,
        &net.homes[1],
        &["--bootstrap", r],
    )?;
    Ok((host, listener))
}

/// Host and listener in homes behind `nat`, joined through a relay. With [`Nat::Cone`] it also
/// asserts the hole-punched connection and kills the relay.
fn cone_to_cone(nat: Nat) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut net) = internet(dir.path(), [nat, nat])? else {
        return Ok(());
    };
    let (mut host, mut listener) = through_the_relay(dir.path(), &net)?;
    let t = listener.hears(&host, 50)?;
    if nat != Nat::Cone {
        eprintln!("cone ↔ cone via a relay, join → first audio: {t:?}");
        listener.holds(&host)?;
        host.proc.close_stdin();
        host.proc.exit(T)?;
        return Ok(());
    }
    eprintln!("cone ↔ cone, hole punched, join → first audio: {t:?}");
    let is_direct = |v: &Value| {
        v["event"] == "notice"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("connected directly"))
    };
    // Often while joining: then it is among the events seen already.
    let mut punched = listener
        .proc
        .seen
        .iter()
        .find(|v| is_direct(v))
        .map(arrived);
    if punched.is_none() {
        listener
            .proc
            .wait(T, "a direct connection to the host", |v| {
                if is_direct(v) {
                    punched = Some(arrived(v));
                }
                punched.map(|_| ())
            })?;
    }
    let punched = punched.context("punched")?;
    let first = listener.first_frame.context("first frame")?;
    eprintln!(
        "cone ↔ cone, first audio → direct (0 if before): {:.1}ms",
        punched.saturating_sub(first).as_secs_f64() * 1e3
    );
    // Direct now: the relay can go and the audio goes on.
    net.relay.kill();
    let before = listener.received(&host)?;
    listener
        .proc
        .wait(T, "audio without the relay", |v: &Value| {
            (v["event"] == "stats" && received_from(v, &host.key).unwrap_or(0) >= before + 150)
                .then_some(())
        })?;
    listener.holds(&host)?;
    host.proc.close_stdin();
    host.proc.exit(T)?;
    Ok(())
}

impl Host {
    fn describe_ticket(&self) -> String {
        ruang_proto::Ticket::parse(&self.ticket)
            .map(|t| {
                t.addresses
                    .iter()
                    .filter_map(|a| ruang_net::Multiaddr::try_from(a.clone()).ok())
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|e| e.to_string())
    }

    fn ticket_has_circuit(&self) -> bool {
        ticket_has_circuit(&self.ticket)
    }

    /// The first ticket with a relay circuit (see [`Host::ticket_where`]).
    fn ticket_through_a_relay(&mut self) -> Result<String> {
        self.ticket_where("a ticket with a relay circuit", ticket_has_circuit)
    }

    /// The first ticket that `good` accepts: the one printed at start, or a later `ticket`
    /// event (addresses change as reservations and AutoNAT come in). It becomes the host's.
    fn ticket_where(&mut self, what: &str, good: impl Fn(&str) -> bool) -> Result<String> {
        if good(&self.ticket) {
            return Ok(self.ticket.clone());
        }
        let is_it = |v: &Value| {
            let t = v["ticket"].as_str().unwrap_or_default();
            (v["event"] == "ticket" && good(t)).then(|| t.to_string())
        };
        let seen = self.proc.seen.iter().find_map(is_it);
        let ticket = match seen {
            Some(t) => t,
            None => self.proc.wait(T, what, is_it)?,
        };
        self.ticket = ticket.clone();
        eprintln!("host's ticket: {}", self.describe_ticket());
        Ok(ticket)
    }
}

/// A host behind NAT with no flags but the bootstrap node it has from its config (a public
/// relay): it finds the relay by itself (identify says it offers circuit relay), reserves on
/// it, and hands out a ticket with the circuit. A listener with a public address and no flags
/// at all joins by that ticket and hears the room.
#[test]
fn host_behind_nat_with_no_flags() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(net) = internet(dir.path(), [Nat::Cone, Nat::Cone])? else {
        return Ok(());
    };
    let mut host = start_host(dir.path(), &net.homes[0], &["--bootstrap", &net.relay_addr])?;
    let ticket = host.ticket_through_a_relay()?;
    let mut listener = start_listener(dir.path(), "listener", &ticket, &net.public, &[])?;
    let t = listener.hears(&host, 50)?;
    eprintln!("host behind NAT, no flags, join → first audio: {t:?}");
    listener.holds(&host)?;
    host.proc.close_stdin();
    host.proc.exit(T)?;
    Ok(())
}

/// A host behind NAT whose router forwards one UDP port to it (a "port forward"), with a
/// public relay as bootstrap node: AutoNAT (the relay dials the address back) confirms the
/// forwarded address a few seconds after the start, and a `ticket` event hands out a ticket
/// with it. A public listener with no flags joins by that ticket and connects directly.
#[test]
fn host_with_a_forwarded_port() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(net) = internet(dir.path(), [Nat::Cone, Nat::Cone])? else {
        return Ok(());
    };
    net.router_rules(
        "a-nat",
        // The port forward: DNAT in, and a rule in the router's own forward chain (its
        // policy drops what it does not accept, whatever other chains say).
        "table ip forward {\n  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    iifname \"wan\" udp dport 4002 dnat to 192.168.1.2:4002\n  }\n}\nadd rule ip filter forward iifname \"wan\" ct status dnat accept\n",
    )?;
    let mut host_net = net.homes[0].clone();
    host_net.listen = vec!["/ip4/0.0.0.0/udp/4002/quic-v1".into()];
    let mut host = start_host(dir.path(), &host_net, &["--bootstrap", &net.relay_addr])?;
    let forwarded = "/ip4/203.0.113.11/udp/4002/quic-v1";
    let has_forwarded = |t: &str| {
        ruang_proto::Ticket::parse(t).is_ok_and(|t| {
            t.addresses.iter().any(|a| {
                ruang_net::Multiaddr::try_from(a.clone())
                    .is_ok_and(|m| m.to_string().starts_with(forwarded))
            })
        })
    };
    let ticket = host.ticket_where("a ticket with the forwarded address", has_forwarded)?;
    let confirmed = host
        .proc
        .seen
        .iter()
        .find(|v| v["event"] == "ticket" && v["ticket"] == ticket.as_str())
        .map(arrived);
    eprintln!("forwarded port: ticket with it after {confirmed:?}");
    let listener = start_listener(dir.path(), "listener", &ticket, &net.public, &[])?;
    listener.hears_holds_and_ends(
        host,
        "host with a forwarded port, join",
        "connected to the host directly over QUIC",
    )
}

/// A listener on a network that passes web traffic only (its router drops UDP and every TCP
/// port but 443): the host listens for WebSocket on port 443 beside QUIC and TCP, and the
/// listener's ticket join — all addresses raced — comes through on WebSocket.
#[test]
fn udp_blocked_websocket_carries_the_room() -> Result<()> {
    web_only(false)
}

/// As [`udp_blocked_websocket_carries_the_room`], WebSocket inside TLS (`/tls/ws`): the host
/// serves a certificate for its address signed by an authority the listener is told to trust
/// (`--tls-trust`).
#[test]
fn udp_blocked_tls_websocket_carries_the_room() -> Result<()> {
    web_only(true)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn web_only(tls: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(net) = internet(dir.path(), [Nat::Cone, Nat::Cone])? else {
        return Ok(());
    };
    net.router_rules(
        "b-nat",
        "table ip webonly {\n  chain forward {\n    type filter hook forward priority filter - 1; policy accept;\n    iifname \"lan\" meta l4proto udp drop\n    iifname \"lan\" tcp dport != 443 drop\n  }\n}\n",
    )?;
    let ws = if tls { "/tls/ws" } else { "/ws" };
    let mut host_net = net.public.clone();
    host_net.listen = vec![
        "/ip4/0.0.0.0/udp/0/quic-v1".into(),
        "/ip4/0.0.0.0/tcp/0".into(),
        format!("/ip4/0.0.0.0/tcp/443{ws}"),
    ];
    let (mut host_flags, mut listener_flags): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    if tls {
        let files = certificate_for(dir.path(), "203.0.113.21")?;
        let path = |p: &std::path::PathBuf| p.to_str().map(str::to_string).context("path");
        host_flags = vec![
            "--tls-cert".to_string(),
            path(&files.cert)?,
            "--tls-key".into(),
            path(&files.key)?,
        ];
        listener_flags = vec!["--tls-trust".to_string(), path(&files.authority)?];
    }
    let mut host = start_host(dir.path(), &host_net, &strs(&host_flags))?;
    eprintln!("host's ticket: {}", host.describe_ticket());
    ensure!(
        host.describe_ticket().contains(&format!("/tcp/443{ws}")),
        "the ticket has no {ws} address"
    );
    let mut listener = start_listener(
        dir.path(),
        "listener",
        &host.ticket,
        &net.homes[1],
        &strs(&listener_flags),
    )?;
    let t = listener.hears(&host, 50)?;
    eprintln!("UDP blocked, {ws} on 443, join → first audio: {t:?}");
    let over = if tls {
        "WebSocket inside TLS"
    } else {
        "WebSocket"
    };
    listener.progressed(&format!("connected to the host directly over {over}"))?;
    listener.holds(&host)?;
    host.proc.close_stdin();
    host.proc.exit(T)?;
    Ok(())
}

/// PEM files of a certificate for `ip` and the authority that signed it.
struct CertificateFiles {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    authority: std::path::PathBuf,
}

fn certificate_for(dir: &Path, ip: &str) -> Result<CertificateFiles> {
    let made = ruang_testkit::tls::certificate(&[ip])?;
    let files = CertificateFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        authority: dir.join("authority.pem"),
    };
    std::fs::write(&files.cert, made.cert)?;
    std::fs::write(&files.key, made.key)?;
    std::fs::write(&files.authority, made.authority)?;
    Ok(files)
}

/// A listener that hides its IP address (`--hide-ip`) joins a host in another home through the
/// relay. Both homes are behind cone NATs that hole punching gets through, so without the flag
/// the two would connect directly. The host's namespace counts every packet from the
/// listener's public address: none may arrive, while the relay's do.
#[test]
fn hidden_ip_listener_reaches_the_host_only_through_the_relay() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(net) = internet(dir.path(), [Nat::Cone, Nat::Cone])? else {
        return Ok(());
    };
    let host_ns = net.homes[0].namespace.clone().context("namespace")?;
    crate::common::netns::nft(
        &host_ns,
        "table ip watch {\n  chain input {\n    type filter hook input priority filter - 1; policy accept;\n    ip saddr 203.0.113.12 counter\n    ip saddr 203.0.113.1 counter\n  }\n}\n",
    )?;
    let r = net.relay_addr.as_str();
    let mut host = start_host(
        dir.path(),
        &net.homes[0],
        &["--bootstrap", r, "--via-relay", r],
    )?;
    let ticket = host.ticket_through_a_relay()?;
    let mut listener = start_listener(
        dir.path(),
        "listener",
        &ticket,
        &net.homes[1],
        &["--hide-ip", "--bootstrap", r],
    )?;
    let t = listener.hears(&host, 50)?;
    eprintln!("hidden-IP listener, join → first audio: {t:?}");
    listener.progressed("connected to the host through relay")?;
    listener.holds(&host)?;
    let counters = net
        .lab
        .exec(&host_ns, &["nft", "list", "table", "ip", "watch"])?;
    let packets: Vec<u64> = counters
        .lines()
        .filter(|l| l.contains("counter packets"))
        .filter_map(|l| {
            let after = l.split("counter packets ").nth(1)?;
            after.split_whitespace().next()?.parse().ok()
        })
        .collect();
    eprintln!("packets at the host from the listener's address, from the relay: {packets:?}");
    ensure!(packets.len() == 2, "counters not found in {counters}");
    ensure!(packets[1] > 0, "the relay's packets were not counted");
    ensure!(
        packets[0] == 0,
        "{} packets from the listener's address reached the host",
        packets[0]
    );
    host.proc.close_stdin();
    host.proc.exit(T)?;
    Ok(())
}

/// A listener leaves and comes back at once with the same identity (an accidental `q`), then
/// crashes and comes back at once: each time it hears the host again, and the host lists it as
/// present. Loopback is enough for this one (no root needed).
#[test]
fn rejoin_at_once_with_the_same_identity() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let net = Net::loopback();
    let mut host = start_host(dir.path(), &net, &[])?;
    let mut listener = start_listener(dir.path(), "listener", &host.ticket, &net, &[])?;
    listener.hears(&host, 50)?;
    let key = listener
        .proc
        .seen
        .iter()
        .find(|v| v["event"] == "ready")
        .and_then(|v| v["key"].as_str().map(String::from))
        .context("the listener's key")?;
    host.proc.wait(T, "the listener present", |v| {
        state_lists(v, "audience", &key).then_some(())
    })?;
    listener.proc.close_stdin();
    ensure!(
        listener.proc.exit(T)?.success(),
        "the listener left cleanly"
    );
    host.proc.wait(T, "the listener gone", |v| {
        (v["event"] == "state" && !state_lists(v, "audience", &key)).then_some(())
    })?;
    // Same name, same folder: the same identity key.
    let mut again = start_listener(dir.path(), "listener", &host.ticket, &net, &[])?;
    let t = again.hears(&host, 50)?;
    host.proc
        .wait(Duration::from_secs(10), "the listener present again", |v| {
            state_lists(v, "audience", &key).then_some(())
        })?;
    eprintln!("same identity, clean rejoin → first audio: {t:?}");
    again.holds(&host)?;
    // Now a crash: killed, no goodbye; its connections die silently. Back at once.
    let mut crashed = start_listener(dir.path(), "listener", &host.ticket, &net, &[])?;
    crashed.hears(&host, 10)?;
    crashed.proc.kill();
    let mut back = start_listener(dir.path(), "listener", &host.ticket, &net, &[])?;
    let t = back.hears(&host, 50)?;
    eprintln!("same identity, rejoin after a crash → first audio: {t:?}");
    back.holds(&host)?;
    host.proc.close_stdin();
    host.proc.exit(T)?;
    Ok(())
}

/// Cone NAT ↔ symmetric NAT: hole punching cannot work, the room is carried by the relay.
/// Then the relay is killed and started again (same identity, same port): the host reserves
/// again, the listener reconnects, and audio comes back with no one doing anything.
#[test]
fn relayed_room_survives_a_relay_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(mut net) = internet(dir.path(), [Nat::ConeOpenRouter, Nat::Symmetric])? else {
        return Ok(());
    };
    let (mut host, mut listener) = through_the_relay(dir.path(), &net)?;
    let t = listener.hears(&host, 100)?;
    eprintln!("cone ↔ symmetric via a relay, join → first audio: {t:?}");

    net.relay.kill();
    let killed = std::time::Instant::now();
    host.proc.wait(T, "a notice that the relay is lost", |v| {
        (v["event"] == "notice"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("lost relay")))
        .then_some(())
    })?;
    eprintln!("relay killed → loss noticed: {:?}", killed.elapsed());
    let before = listener.received(&host)?;
    let mut relay = restart_relay(dir.path(), &net)?;
    let restarted = std::time::Instant::now();
    // A notice that the relay is back, and the new ticket with the circuit again (in either
    // order).
    let (mut notice, mut ticket) = (false, false);
    host.proc
        .wait(T, "the relay back: notice and ticket", |v| {
            notice |= v["event"] == "notice"
                && v["message"].as_str().is_some_and(|m| m.contains("again"));
            ticket |=
                v["event"] == "ticket" && v["ticket"].as_str().is_some_and(ticket_has_circuit);
            (notice && ticket).then_some(())
        })?;
    let mut back = None;
    listener.proc.wait(T, "audio back", |v: &Value| {
        let n = (v["event"] == "stats")
            .then(|| received_from(v, &host.key))
            .flatten()
            .unwrap_or(0);
        if n > before && back.is_none() {
            back = Some(restarted.elapsed());
        }
        (n >= before + 250).then_some(())
    })?;
    let back = back.context("audio back")?;
    eprintln!("relay restarted → audio back (to the second): {back:?}");
    let back_us = unix_us_now() - restarted.elapsed().as_micros() as u64 + back.as_micros() as u64;
    listener.holds_from(&host, back_us)?;
    host.proc.close_stdin();
    host.proc.exit(T)?;
    relay.kill();
    Ok(())
}

/// The listener's home loses its route to the relay just as it joins (as when a relay
/// restarts, or a connection to it times out, in the middle of a join): the join says it is
/// trying again, and once the route is back the listener hears the host, with no one doing
/// anything. (It used to give up after its first round of dials.)
#[test]
fn a_join_waits_out_a_relay_out_of_reach() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(net) = internet(dir.path(), [Nat::ConeOpenRouter, Nat::Symmetric])? else {
        return Ok(());
    };
    let r = net.relay_addr.as_str();
    let host = start_host(
        dir.path(),
        &net.homes[0],
        &["--bootstrap", r, "--via-relay", r],
    )?;
    ensure!(
        host.ticket_has_circuit(),
        "the host's ticket has no relay circuit address"
    );
    let outage = "table ip outage {\n  chain forward {\n    type filter hook forward priority filter - 1; policy accept;\n    ip daddr 203.0.113.1 drop\n  }\n}\n";
    net.router_rules("b-nat", outage)?;
    let mut listener = start_listener(
        dir.path(),
        "listener",
        &host.ticket,
        &net.homes[1],
        &["--bootstrap", r],
    )?;
    let retried = listener.proc.wait(T, "the join trying again", |v| {
        (v["event"] == "progress"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("trying again")))
        .then(|| arrived(v))
    });
    if let Err(e) = retried {
        listener.show_timeline("no second round");
        return Err(e);
    }
    net.router_rules("b-nat", "delete table ip outage\n")?;
    listener.hears_holds_and_ends(
        host,
        "relay out of reach at the join, then back",
        "trying again",
    )
}

fn unix_us_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Starts the relay again in its namespace, with its identity and port.
fn restart_relay(dir: &Path, net: &Internet) -> Result<Proc> {
    let mut relay = Proc::start_on(dir, "relay", &["node", "--relay", "--json"], &net.relay_net)?;
    relay.wait_event(T, "ready")?;
    Ok(relay)
}

impl Listener {
    /// Frames received from the host so far (from the next `stats` event).
    fn received(&mut self, host: &Host) -> Result<u64> {
        self.proc.wait(T, "stats", |v: &Value| {
            (v["event"] == "stats").then(|| received_from(v, &host.key).unwrap_or(0))
        })
    }
}

/// Whether `ticket` holds a relayed address.
fn ticket_has_circuit(ticket: &str) -> bool {
    ruang_proto::Ticket::parse(ticket).is_ok_and(|t| {
        t.addresses.iter().any(|a| {
            ruang_net::Multiaddr::try_from(a.clone()).is_ok_and(|m| {
                m.iter()
                    .any(|p| p == ruang_net::multiaddr::Protocol::P2pCircuit)
            })
        })
    })
}
