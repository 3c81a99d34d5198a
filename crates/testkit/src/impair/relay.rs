//! The UDP impairment relay: real sockets, std threads, one [`Link`] per direction.
//!
//! ```text
//!  client ──► listen socket ──[rx "up"]──► Link(up)   ──► queue ──[tx "up"]──► back socket ──► target
//!  client ◄── listen socket ◄─[tx "down"]── queue ◄── Link(down) ◄─[rx "down"]── back socket ◄── target
//! ```
//!
//! Each direction has a receive thread (blocking reads, timestamps a packet the moment it is
//! read and asks its [`Link`] for its fate) and a send thread (sleeps on a condition variable
//! until the earliest delivery is due, then sends). The client is whoever last sent to the
//! listen socket; answers from the target go to it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{DelaySummary, Fate, Link, LinkConfig, LinkStats};

/// Packets waiting for delivery per direction; beyond this, new packets are dropped (counted as
/// `overflow`). At 50 packets/s and 200 ms of delay a stream needs 10.
pub const QUEUE_CAP: usize = 4096;
/// Largest datagram relayed (bigger ones are truncated by the socket and dropped).
pub const MAX_DATAGRAM: usize = 65_535;
/// How often blocked threads look at the stop flag and the deadline.
const POLL: Duration = Duration::from_millis(50);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// An address that is neither loopback nor an explicitly allowed private address.
    #[error(
        "{addr} is not a loopback address nor a private address given with --allow; the relay only relays between loopback and namespace addresses the caller names"
    )]
    NotAllowed {
        /// The refused address.
        addr: IpAddr,
    },
    /// A socket could not be bound or set up.
    #[error("cannot set up the relay socket on {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a relay thread: {0}")]
    Thread(std::io::Error),
}

/// Checks that the relay may use `addr`: loopback always; otherwise only a private (RFC 1918,
/// link-local, unique-local) address listed in `allowed`.
pub fn check_addr(addr: IpAddr, allowed: &[IpAddr]) -> Result<(), RelayError> {
    let private = match addr {
        IpAddr::V4(a) => a.is_private() || a.is_link_local(),
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    };
    if addr.is_loopback() || (private && allowed.contains(&addr)) {
        Ok(())
    } else {
        Err(RelayError::NotAllowed { addr })
    }
}

/// What a relay does.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where clients send to (port 0: any free port).
    pub listen: SocketAddr,
    /// Where packets go.
    pub target: SocketAddr,
    /// Impairment client → target.
    pub up: LinkConfig,
    /// Impairment target → client.
    pub down: LinkConfig,
    /// Seed of both directions' randomness.
    pub seed: u64,
    /// Stop by itself after this long (`None`: until [`Relay::stop`]).
    pub duration: Option<Duration>,
    /// Non-loopback addresses the relay may use (namespace addresses of the caller).
    pub allowed: Vec<IpAddr>,
    /// Where the socket towards the target is bound (`None`: any port on an address of the
    /// target's family). A fixed one lets tunnels whose far end answers a fixed address (VXLAN)
    /// run through the relay.
    pub back_bind: Option<SocketAddr>,
    /// The datagrams are VXLAN frames: recompute the inner IPv4 TCP/UDP checksums before
    /// relaying. A VXLAN tunnel over veth leaves them to "hardware" offload that never runs
    /// when a user-space relay carries the packet, and the far end would drop every segment.
    pub fix_vxlan_checksums: bool,
}

impl RelayConfig {
    /// A relay on `listen` to `target` applying `link` in both directions.
    pub fn symmetric(listen: SocketAddr, target: SocketAddr, link: LinkConfig, seed: u64) -> Self {
        RelayConfig {
            listen,
            target,
            up: link.clone(),
            down: link,
            seed,
            duration: None,
            allowed: Vec::new(),
            back_bind: None,
            fix_vxlan_checksums: false,
        }
    }
}

/// What a relay did.
#[derive(Clone, Debug, Default)]
pub struct RelayStats {
    /// Client → target counters.
    pub up: LinkStats,
    /// Target → client counters.
    pub down: LinkStats,
    /// Added delay client → target (as scheduled).
    pub up_delay: DelaySummary,
    /// Added delay target → client (as scheduled).
    pub down_delay: DelaySummary,
    /// Packets dropped because a direction's queue held [`QUEUE_CAP`] packets.
    pub overflow: u64,
    /// Packets actually sent (after impairment).
    pub sent: u64,
    /// Largest lateness of a send against its schedule, µs (the relay's own timing error).
    pub max_late_us: u64,
    /// Mean lateness of sends, µs.
    pub mean_late_us: f64,
    /// The client address last seen.
    pub client: Option<SocketAddr>,
}

impl std::fmt::Display for RelayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>,
                    name: &str,
                    s: &LinkStats,
                    d: &DelaySummary| {
            writeln!(
                f,
                "{name:<4} in {:>8} ({} bytes)  out {:>8}  dropped {:>6} (random {}, burst {}, queue {})  reordered {:>5}  added delay mean {:.1} ms p95 {:.1} ms max {:.1} ms",
                s.packets_in,
                s.bytes_in,
                s.delivered,
                s.dropped(),
                s.dropped_random,
                s.dropped_burst,
                s.dropped_queue,
                s.reordered,
                d.mean_us / 1e3,
                d.p95_us as f64 / 1e3,
                d.max_us as f64 / 1e3,
            )
        };
        line(f, "up", &self.up, &self.up_delay)?;
        line(f, "down", &self.down, &self.down_delay)?;
        write!(
            f,
            "sent {}  queue overflow {}  send lateness mean {:.0} µs max {} µs  client {}",
            self.sent,
            self.overflow,
            self.mean_late_us,
            self.max_late_us,
            self.client
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into())
        )
    }
}

struct Queue {
    link: Link,
    heap: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    next_id: u64,
    overflow: u64,
    sent: u64,
    late_sum_us: u64,
    late_max_us: u64,
}

struct Direction {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Direction {
    fn new(link: Link) -> Direction {
        Direction {
            queue: Mutex::new(Queue {
                link,
                heap: BinaryHeap::new(),
                next_id: 0,
                overflow: 0,
                sent: 0,
                late_sum_us: 0,
                late_max_us: 0,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panicking relay thread leaves plain counters behind: keep going.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Shared {
    fix_vxlan: bool,
    start: Instant,
    deadline: Option<Instant>,
    stop: AtomicBool,
    client: Mutex<Option<SocketAddr>>,
    up: Direction,
    down: Direction,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn client(&self) -> Option<SocketAddr> {
        *self.client.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running relay (see the [module docs](self)). Dropping it stops it.
pub struct Relay {
    local: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds the listen socket and starts relaying.
    pub fn start(config: RelayConfig) -> Result<Relay, RelayError> {
        check_addr(config.listen.ip(), &config.allowed)?;
        check_addr(config.target.ip(), &config.allowed)?;
        let sock_err = |addr| move |source| RelayError::Socket { addr, source };
        let front = UdpSocket::bind(config.listen).map_err(sock_err(config.listen))?;
        let local = front.local_addr().map_err(sock_err(config.listen))?;
        if let Some(b) = config.back_bind {
            check_addr(b.ip(), &config.allowed)?;
        }
        let back_bind = match (config.back_bind, config.target.ip()) {
            (Some(b), _) => b,
            (None, IpAddr::V4(a)) if a.is_loopback() => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            (None, IpAddr::V4(_)) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            (None, IpAddr::V6(a)) if a.is_loopback() => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            (None, IpAddr::V6(_)) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let back = UdpSocket::bind(back_bind).map_err(sock_err(back_bind))?;
        back.connect(config.target)
            .map_err(sock_err(config.target))?;
        for s in [&front, &back] {
            s.set_read_timeout(Some(POLL)).map_err(sock_err(local))?;
        }
        let start = Instant::now();
        let shared = Arc::new(Shared {
            fix_vxlan: config.fix_vxlan_checksums,
            start,
            deadline: config.duration.map(|d| start + d),
            stop: AtomicBool::new(false),
            client: Mutex::new(None),
            up: Direction::new(Link::new(config.up, config.seed)),
            down: Direction::new(Link::new(config.down, config.seed ^ 0x9e37_79b9_7f4a_7c15)),
        });
        let clone = |s: &UdpSocket| s.try_clone().map_err(sock_err(local));
        let (front_rx, front_tx, back_rx, back_tx) = (clone(&front)?, front, clone(&back)?, back);
        let mut relay = Relay {
            local,
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(RelayError::Thread)
        };
        let s = shared.clone();
        relay.threads.push(spawn(
            "impair-up-rx",
            Box::new(move || receive(&s, &front_rx, true)),
        )?);
        let s = shared.clone();
        relay.threads.push(spawn(
            "impair-down-rx",
            Box::new(move || receive(&s, &back_rx, false)),
        )?);
        let s = shared.clone();
        relay.threads.push(spawn(
            "impair-up-tx",
            Box::new(move || transmit(&s, true, |b| back_tx.send(b).map(|_| ()))),
        )?);
        let s = shared;
        relay.threads.push(spawn(
            "impair-down-tx",
            Box::new(move || {
                let s2 = s.clone();
                transmit(&s, false, move |b| match s2.client() {
                    Some(to) => front_tx.send_to(b, to).map(|_| ()),
                    None => Ok(()),
                })
            }),
        )?);
        Ok(relay)
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        let s = &self.shared;
        let (up, up_delay, o1, sent1, ls1, lm1) = snapshot(&s.up);
        let (down, down_delay, o2, sent2, ls2, lm2) = snapshot(&s.down);
        let sent = sent1 + sent2;
        RelayStats {
            up,
            down,
            up_delay,
            down_delay,
            overflow: o1 + o2,
            sent,
            max_late_us: lm1.max(lm2),
            mean_late_us: if sent > 0 {
                (ls1 + ls2) as f64 / sent as f64
            } else {
                0.0
            },
            client: s.client(),
        }
    }

    /// Whether the relay stopped by itself (its duration passed).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Runs until the configured duration has passed (forever without one), then returns
    /// what it did.
    pub fn wait(mut self) -> RelayStats {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stats()
    }

    /// Stops at once and returns what it did.
    pub fn stop(mut self) -> RelayStats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.up.wake.notify_all();
        self.shared.down.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

type Snapshot = (LinkStats, DelaySummary, u64, u64, u64, u64);

fn snapshot(d: &Direction) -> Snapshot {
    let q = d.lock();
    (
        q.link.stats().clone(),
        q.link.delay_summary(),
        q.overflow,
        q.sent,
        q.late_sum_us,
        q.late_max_us,
    )
}

/// Reads packets, decides their fate, queues the survivors.
fn receive(shared: &Shared, socket: &UdpSocket, up: bool) {
    let dir = if up { &shared.up } else { &shared.down };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stopping() {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            // ICMP port unreachable from an earlier send (the peer is not up yet): keep going.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let now = shared.now_us();
        if up {
            let mut c = shared.client.lock().unwrap_or_else(|p| p.into_inner());
            if *c != Some(from) {
                *c = Some(from);
            }
        }
        let mut q = dir.lock();
        if let Fate::Deliver { at_us } = q.link.on_packet(now, len) {
            if q.heap.len() >= QUEUE_CAP {
                q.overflow += 1;
                continue;
            }
            let id = q.next_id;
            q.next_id += 1;
            let mut packet = buf[..len].to_vec();
            if shared.fix_vxlan {
                fix_vxlan_checksums(&mut packet);
            }
            q.heap.push(Reverse((at_us, id, packet)));
            drop(q);
            dir.wake.notify_one();
        }
    }
    dir.wake.notify_all();
}

/// Sends queued packets when they are due.
fn transmit(shared: &Shared, up: bool, mut send: impl FnMut(&[u8]) -> std::io::Result<()>) {
    let dir = if up { &shared.up } else { &shared.down };
    let mut q = dir.lock();
    loop {
        if shared.stopping() {
            return;
        }
        let now = shared.now_us();
        match q.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Some(Reverse((at, _, bytes))) = q.heap.pop() else {
                    continue;
                };
                let late = now - at;
                q.sent += 1;
                q.late_sum_us += late;
                q.late_max_us = q.late_max_us.max(late);
                drop(q);
                // A failed send is a lost packet, as on a real link.
                let _ = send(&bytes);
                q = dir.lock();
            }
            Some(Reverse((at, _, _))) => {
                let wait = Duration::from_micros(at - now).min(POLL);
                q = dir
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            None => {
                q = dir
                    .wake
                    .wait_timeout(q, POLL)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

/// Recomputes the TCP or UDP checksum of the IPv4 packet inside a VXLAN frame (8-byte VXLAN
/// header, 14-byte Ethernet header). Anything else is left alone.
pub fn fix_vxlan_checksums(frame: &mut [u8]) {
    const VXLAN: usize = 8;
    const ETH: usize = 14;
    let ip = VXLAN + ETH;
    if frame.len() < ip + 20 || frame[ip - 2..ip] != [0x08, 0x00] || frame[ip] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(frame[ip] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
    let proto = frame[ip + 9];
    // Fragments carry no complete L4 segment.
    let frag = u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]) & 0x3fff;
    if ihl < 20 || frame.len() < ip + total || total < ihl || frag != 0 {
        return;
    }
    let l4 = ip + ihl;
    let len = total - ihl;
    let at = match proto {
        6 if len >= 20 => l4 + 16,
        17 if len >= 8 => l4 + 6,
        _ => return,
    };
    frame[at] = 0;
    frame[at + 1] = 0;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map(|b| u32::from(*b)).unwrap_or(0);
            sum += hi | lo;
        }
    };
    add(&frame[ip + 12..ip + 20]);
    add(&[0, proto]);
    add(&(len as u16).to_be_bytes());
    add(&frame[l4..l4 + len]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    if proto == 17 && csum == 0 {
        csum = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&csum.to_be_bytes());
}
