//! Network namespaces the bench creates (and always deletes): one with only `lo` and an `nft`
//! byte counter (to count what a speaker sends), and a three-namespace VXLAN tunnel through
//! the impairment relay (to impair TCP, which a UDP relay cannot carry, exactly as QUIC).
//! Needs root, `ip` and `nft`; the kernel needs `veth` and `vxlan` (it has no `netem`).

use std::process::Command;

use anyhow::{Context, Result, bail};

fn run(args: &[&str]) -> Result<()> {
    output(args).map(drop)
}

fn output(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether namespaces can be used here (root, with `ip` and `nft`).
pub fn available() -> bool {
    let root = output(&["id", "-u"]).is_ok_and(|s| s.trim() == "0");
    root && output(&["ip", "netns", "list"]).is_ok() && output(&["nft", "--version"]).is_ok()
}

/// One namespace with only `lo` up, and an `nft` counter of the bytes a given UDP port sends.
/// Deleted on drop.
pub struct Single {
    /// Its name.
    pub name: String,
}

impl Single {
    /// Creates it.
    pub fn create(tag: &str) -> Result<Single> {
        let name = format!("rbench-{tag}");
        let _ = run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name])?;
        let ns = Single { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Starts counting what UDP port `port` and TCP port `port` send (packets, bytes). With
    /// `only_via`, UDP between two other ports is dropped: peers in the namespace can reach
    /// `port` but not each other (so a room of listeners does not form the full mesh of
    /// connections that Kademlia builds, see RESULTS.md, and the speaker is measured alone).
    pub fn count_port(&self, port: u16, only_via: bool) -> Result<()> {
        // Not `udp sport != P udp dport != P drop`: nft merges the two adjacent port matches
        // into one 4-byte compare, which then also drops packets *to* P.
        let isolate = if only_via {
            format!(
                "udp sport {port} counter accept; udp dport {port} accept; meta l4proto udp drop; "
            )
        } else {
            format!("udp sport {port} counter; ")
        };
        let script = format!(
            "table inet rbench {{ chain out {{ type filter hook output priority 0; policy accept; {isolate}tcp sport {port} counter; }}; }}"
        );
        run(&["ip", "netns", "exec", &self.name, "nft", &script])
    }

    /// (packets, bytes) sent from the counted port so far (UDP + TCP; IP headers included).
    pub fn counted(&self) -> Result<(u64, u64)> {
        let text = output(&[
            "ip", "netns", "exec", &self.name, "nft", "list", "table", "inet", "rbench",
        ])?;
        let mut packets = 0;
        let mut bytes = 0;
        for l in text.lines() {
            if let Some(i) = l.find("counter packets ") {
                let mut it = l[i + 16..].split_whitespace();
                packets += it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                it.next();
                bytes += it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        Ok((packets, bytes))
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// Two namespaces `a` and `b` whose only path to each other is a VXLAN tunnel through a relay
/// in a third namespace `r`: `a` ─veth─ `r` ─veth─ `b`, with the VXLAN endpoints in `a` and
/// `b` sending their UDP to `r`. Run the impairment relay in `r` (listen
/// [`Tunnel::relay_listen`], target [`Tunnel::relay_target`], bound at
/// [`Tunnel::relay_back`]) and everything between the inner addresses, TCP included, gets its
/// delay, jitter and loss. Deleted on drop.
pub struct Tunnel {
    /// Namespace of side A.
    pub a: String,
    /// Namespace of the relay.
    pub r: String,
    /// Namespace of side B.
    pub b: String,
    /// Side A's address inside the tunnel.
    pub inner_a: String,
    /// Side B's address inside the tunnel.
    pub inner_b: String,
    /// Where A's tunnel endpoint sends (the relay listens here).
    pub relay_listen: std::net::SocketAddr,
    /// B's tunnel endpoint (the relay sends here).
    pub relay_target: std::net::SocketAddr,
    /// Where B's tunnel endpoint sends (the relay's socket towards B is bound here).
    pub relay_back: std::net::SocketAddr,
}

/// UDP port of the VXLAN endpoints.
const VXLAN_PORT: u16 = 4789;

impl Tunnel {
    /// Creates it; `subnet` picks 10.213.subnet.0/24 and 10.213.(subnet+1).0/24 for the two
    /// links and 10.214.subnet.0/24 inside the tunnel.
    pub fn create(tag: &str, subnet: u8) -> Result<Tunnel> {
        let name = |s: &str| format!("rbench-{tag}-{s}");
        for s in ["a", "r", "b"] {
            let _ = run(&["ip", "netns", "del", &name(s)]);
        }
        let (s1, s2) = (subnet, subnet.wrapping_add(1));
        let t = Tunnel {
            a: name("a"),
            r: name("r"),
            b: name("b"),
            inner_a: format!("10.214.{subnet}.1"),
            inner_b: format!("10.214.{subnet}.2"),
            relay_listen: format!("10.213.{s1}.254:{VXLAN_PORT}").parse()?,
            relay_target: format!("10.213.{s2}.1:{VXLAN_PORT}").parse()?,
            relay_back: format!("10.213.{s2}.254:{VXLAN_PORT}").parse()?,
        };
        t.setup(tag, s1, s2).inspect_err(|_| t.delete())?;
        Ok(t)
    }

    fn setup(&self, tag: &str, s1: u8, s2: u8) -> Result<()> {
        for ns in [&self.a, &self.r, &self.b] {
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let port = VXLAN_PORT.to_string();
        let next = (VXLAN_PORT + 1).to_string();
        for (side, ns, s, inner) in [
            ("a", &self.a, s1, &self.inner_a),
            ("b", &self.b, s2, &self.inner_b),
        ] {
            let (outer, relay_end) = (format!("rb{tag}{side}o"), format!("rb{tag}{side}r"));
            run(&[
                "ip", "link", "add", &outer, "netns", ns, "type", "veth", "peer", "name",
                &relay_end, "netns", &self.r,
            ])?;
            let local = format!("10.213.{s}.1");
            let remote = format!("10.213.{s}.254");
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{local}/24"),
                "dev",
                &outer,
            ])?;
            run(&[
                "ip",
                "-n",
                &self.r,
                "addr",
                "add",
                &format!("{remote}/24"),
                "dev",
                &relay_end,
            ])?;
            run(&["ip", "-n", ns, "link", "set", &outer, "up"])?;
            run(&["ip", "-n", &self.r, "link", "set", &relay_end, "up"])?;
            run(&[
                "ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", &local,
                "remote", &remote, "dstport", &port, "srcport", &port, &next,
            ])?;
            run(&["ip", "-n", ns, "link", "set", "vx0", "mtu", "1400"])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{inner}/24"),
                "dev",
                "vx0",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "vx0", "up"])?;
        }
        Ok(())
    }

    fn delete(&self) {
        for ns in [&self.a, &self.r, &self.b] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.delete();
    }
}
