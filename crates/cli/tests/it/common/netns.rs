//! Network topologies built from Linux network namespaces, for tests that run real `ruang`
//! processes across LANs, NATs and a relay on one machine.
//!
//! A [`Lab`] creates namespaces whose names start with a prefix unique to the test process, and
//! deletes every one of them when dropped (after a failed assertion too, since a panic unwinds
//! through the drop). Links are veth pairs created straight inside their namespaces, so nothing
//! is ever left in the machine's own namespace. Needs root (`ip netns`, `nft`); [`Lab::new`]
//! returns `None` otherwise and the test reports that it was skipped.
//!
//! The shapes:
//! - a *switch*: a namespace with a bridge `br0` that [`Lab::plug`] attaches hosts to (a LAN,
//!   or "the internet": a flat segment of public addresses in 203.0.113.0/24);
//! - a *home*: [`Lab::home`] puts a host behind a router that NATs its LAN onto a switch.
//!
//! Links are ideal (no delay, no loss) unless `RUANG_TEST_LOSS_PCT` is set (1 to 50): then
//! every switch drops that share of the frames it forwards, at random (`nft` on the bridge;
//! this kernel has no `netem`, so no added delay). A packet between two hosts crosses one
//! switch; through a relay, two crossings.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

/// How a home router maps its LAN onto the outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Linux masquerade: the same outside port for a LAN socket whatever the destination
    /// (endpoint-independent mapping, the "cone" NATs hole punching works through), on a
    /// router that drops unsolicited packets addressed to itself, as home routers do.
    Cone,
    /// The same NAT on a router that takes unsolicited packets to itself (open input). Hole
    /// punching fails through it: a punching packet that arrives first leaves a conntrack entry
    /// that makes the NAT move the home's own answer to another port. Rooms stay relayed.
    ConeOpenRouter,
    /// `masquerade random,fully-random`: a fresh outside port per destination (symmetric NAT;
    /// hole punching cannot work, only a relay does).
    Symmetric,
}

/// The namespaces of one test. Dropping it deletes them all.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    /// Interfaces plugged into each switch so far (for naming the bridge ports).
    ports: usize,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// A new, empty lab, or `None` (with a note on stderr) when namespaces cannot be created
    /// here because the test does not run as root.
    pub fn new() -> Result<Option<Lab>> {
        if !is_root() {
            eprintln!("skipped: network-namespace tests need root (ip netns, nft)");
            return Ok(None);
        }
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let lab = Lab {
            prefix: format!("rg{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            ports: 0,
        };
        Ok(Some(lab))
    }

    /// The full name of this lab's namespace `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Creates namespace `name` with its loopback up; returns its full name.
    pub fn namespace(&mut self, name: &str) -> Result<String> {
        let ns = self.name(name);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a switch: namespace `name` holding bridge `br0` (multicast passes, for mDNS).
    pub fn switch(&mut self, name: &str) -> Result<String> {
        let ns = self.namespace(name)?;
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &ns, "link", "set", "br0", "up"])?;
        if let Some(pct) = loss_pct()? {
            nft(
                &ns,
                &format!(
                    "table bridge impair {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    numgen random mod 100 < {pct} drop\n  }}\n}}\n"
                ),
            )?;
        }
        Ok(ns)
    }

    /// Plugs namespace `host` into switch `switch` as interface `iface` with address `cidr`
    /// (e.g. "10.1.0.2/24").
    pub fn plug(&mut self, switch: &str, host: &str, iface: &str, cidr: &str) -> Result<()> {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        self.veth(host, iface, switch, &port)?;
        ip(&["-n", switch, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", switch, "link", "set", &port, "up"])?;
        address(host, iface, cidr)
    }

    /// A point-to-point link: `a_iface` in `a` with `a_cidr`, `b_iface` in `b` with `b_cidr`.
    pub fn wire(
        &mut self,
        (a, a_iface, a_cidr): (&str, &str, &str),
        (b, b_iface, b_cidr): (&str, &str, &str),
    ) -> Result<()> {
        self.veth(a, a_iface, b, b_iface)?;
        address(a, a_iface, a_cidr)?;
        address(b, b_iface, b_cidr)
    }

    fn veth(&self, a: &str, a_iface: &str, b: &str, b_iface: &str) -> Result<()> {
        ip(&[
            "link", "add", a_iface, "netns", a, "type", "veth", "peer", "name", b_iface, "netns", b,
        ])
    }

    /// A home: host namespace `name` (address 192.168.`n`.2) behind router `name-nat`, whose
    /// outside interface has `outside` (e.g. "203.0.113.11/24") on switch `switch` and which
    /// NATs the home's traffic the `nat` way. It forwards from outside only what answers
    /// traffic from inside (see [`Nat`] for what it does with packets to itself). Returns the
    /// host namespace's name.
    pub fn home(
        &mut self,
        name: &str,
        n: u8,
        switch: &str,
        outside: &str,
        nat: Nat,
    ) -> Result<String> {
        let host = self.namespace(name)?;
        let router = self.namespace(&format!("{name}-nat"))?;
        self.plug(switch, &router, "wan", outside)?;
        let gateway = format!("192.168.{n}.1");
        self.wire(
            (&router, "lan", &format!("{gateway}/24")),
            (&host, "eth0", &format!("192.168.{n}.2/24")),
        )?;
        ip(&["-n", &host, "route", "add", "default", "via", &gateway])?;
        in_ns(&router, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        let masquerade = match nat {
            Nat::Cone | Nat::ConeOpenRouter => "masquerade",
            Nat::Symmetric => "masquerade random,fully-random",
        };
        let input = if nat == Nat::ConeOpenRouter {
            "accept"
        } else {
            "drop"
        };
        let rules = format!(
            "table ip nat {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan\" {masquerade}\n  }}\n}}\n\
             table ip filter {{\n  chain forward {{\n    type filter hook forward priority filter; policy drop;\n    ct state established,related accept\n    iifname \"lan\" accept\n  }}\n\
               chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"wan\" ct state new {input}\n  }}\n}}\n"
        );
        nft(&router, &rules)?;
        Ok(host)
    }

    /// Runs `command` inside namespace `ns` and returns its stdout.
    pub fn exec(&self, ns: &str, command: &[&str]) -> Result<String> {
        in_ns(ns, command)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            // Processes still inside keep a namespace alive until they exit; the name goes now.
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("could not delete namespace {ns}: {e:#}");
            }
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

fn address(ns: &str, iface: &str, cidr: &str) -> Result<()> {
    ip(&["-n", ns, "addr", "add", cidr, "dev", iface])?;
    ip(&["-n", ns, "link", "set", iface, "up"])
}

fn in_ns(ns: &str, command: &[&str]) -> Result<String> {
    run(Command::new("ip").args(["netns", "exec", ns]).args(command))
}

/// Loads an nftables ruleset into namespace `ns`.
/// `RUANG_TEST_LOSS_PCT`, checked: the share of frames every switch drops.
fn loss_pct() -> Result<Option<u32>> {
    let Ok(text) = std::env::var("RUANG_TEST_LOSS_PCT") else {
        return Ok(None);
    };
    match text.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(pct @ 1..=50) => Ok(Some(pct)),
        _ => bail!("RUANG_TEST_LOSS_PCT={text:?}: give a whole number from 0 to 50"),
    }
}

pub fn nft(ns: &str, rules: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), rules)?;
    let path = file.path().to_str().context("temp path")?;
    in_ns(ns, &["nft", "-f", path]).map(|_| ())
}

fn run(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
