//! A seeded discrete-event network simulator in virtual time.
//!
//! Peers are numbered `0..n`. [`Network::send`] schedules a message for delivery after a random
//! latency, or drops it (random loss, or a partition between sender and receiver at send time).
//! [`Network::next`] pops the earliest delivery and advances the virtual clock to it. Timers are
//! messages a peer sends to itself. Nothing here reads the wall clock.

use std::collections::{BTreeMap, VecDeque};

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Link behaviour.
#[derive(Clone, Debug)]
pub struct Links {
    /// Smallest one-way latency, ms.
    pub min_latency_ms: u64,
    /// Largest one-way latency, ms (uniform between the two).
    pub max_latency_ms: u64,
    /// Probability that a message between two different peers is lost.
    pub loss: f64,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            min_latency_ms: 5,
            max_latency_ms: 80,
            loss: 0.0,
        }
    }
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handed to [`Network::send`].
    pub sent: u64,
    /// Messages delivered by [`Network::next`].
    pub delivered: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped because a partition separated the peers.
    pub partitioned: u64,
}

/// A delivered message.
#[derive(Debug)]
pub struct Delivery<M> {
    /// Virtual time of delivery, ms.
    pub at: u64,
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// The message.
    pub msg: M,
}

/// The simulated network for messages of type `M`.
pub struct Network<M> {
    rng: ChaCha8Rng,
    now: u64,
    links: Links,
    peers: usize,
    /// Partition group of each peer; messages between groups are dropped. `None`: connected.
    groups: Option<Vec<u32>>,
    /// Messages in flight by delivery time, each time's in the order they were sent. (A
    /// binary heap of millions of entries spent a sixth of a large room's simulation in
    /// `pop`; a time's messages now come out in one move.)
    queue: BTreeMap<u64, Vec<Queued<M>>>,
    /// The messages of the earliest time being delivered (`due_at`), in order.
    due: VecDeque<Queued<M>>,
    due_at: u64,
    in_flight: usize,
    stats: Stats,
}

impl<M> Network<M> {
    /// A network of `peers` peers with the given links, seeded.
    pub fn new(peers: usize, links: Links, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            links,
            peers,
            groups: None,
            queue: BTreeMap::new(),
            due: VecDeque::new(),
            due_at: 0,
            in_flight: 0,
            stats: Stats::default(),
        }
    }

    /// Virtual now, ms.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of peers.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// What happened so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The simulator's RNG, for peers' random choices (keeps one seed for the whole run).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Splits the peers: `group(peer)` names each peer's side.
    pub fn partition(&mut self, group: impl Fn(usize) -> u32) {
        self.groups = Some((0..self.peers).map(group).collect());
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Whether `a` and `b` can currently reach each other.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.groups.as_ref().is_none_or(|g| g[a] == g[b])
    }

    /// Sends `msg` from `from` to `to`; it may be lost. A message to oneself is a timer: never
    /// lost, delivered after exactly `delay_ms`.
    pub fn send(&mut self, from: usize, to: usize, msg: M) {
        self.send_after(from, to, 0, msg);
    }

    /// As [`Network::send`], `extra_ms` later.
    pub fn send_after(&mut self, from: usize, to: usize, extra_ms: u64, msg: M) {
        self.stats.sent += 1;
        if from != to {
            if !self.connected(from, to) {
                self.stats.partitioned += 1;
                return;
            }
            if self.links.loss > 0.0 && self.rng.random_bool(self.links.loss) {
                self.stats.lost += 1;
                return;
            }
        }
        let latency = self
            .rng
            .random_range(self.links.min_latency_ms..=self.links.max_latency_ms);
        self.schedule(from, to, latency + extra_ms, msg);
    }

    /// Sends `msg` from `from` to `to` over a reliable stream: never lost, delayed like any
    /// message (a partition still drops it).
    pub fn send_reliable(&mut self, from: usize, to: usize, msg: M) {
        self.stats.sent += 1;
        if from != to && !self.connected(from, to) {
            self.stats.partitioned += 1;
            return;
        }
        let latency = self
            .rng
            .random_range(self.links.min_latency_ms..=self.links.max_latency_ms);
        self.schedule(from, to, latency, msg);
    }

    /// Adds a peer; returns its index.
    pub fn add_peer(&mut self) -> usize {
        self.peers += 1;
        if let Some(groups) = self.groups.as_mut() {
            groups.push(0);
        }
        self.peers - 1
    }

    /// Schedules a timer for `peer` after `delay_ms`.
    pub fn timer(&mut self, peer: usize, delay_ms: u64, msg: M) {
        self.stats.sent += 1;
        self.schedule(peer, peer, delay_ms, msg);
    }

    fn schedule(&mut self, from: usize, to: usize, delay_ms: u64, msg: M) {
        // Never before the time being delivered (`now`): a message sent for `now` goes after
        // those of `now` already due, as it was sent after them.
        self.queue
            .entry(self.now + delay_ms)
            .or_default()
            .push(Queued { from, to, msg });
        self.in_flight += 1;
    }

    /// The next delivery, advancing virtual time; `None` when nothing is in flight or the next
    /// delivery is after `until` (then time advances to `until`). Deliveries come in time
    /// order, and those of one time in the order they were sent.
    pub fn next(&mut self, until: u64) -> Option<Delivery<M>> {
        if self.due.is_empty() {
            let entry = self.queue.first_entry()?;
            if *entry.key() > until {
                self.now = self.now.max(until);
                return None;
            }
            let (at, due) = entry.remove_entry();
            self.due_at = at;
            self.due = due.into();
        }
        if self.due_at > until {
            // Asked for an earlier time than before: the due go back, ahead of what was sent
            // for their time since.
            let mut back: Vec<Queued<M>> = std::mem::take(&mut self.due).into();
            back.extend(self.queue.remove(&self.due_at).unwrap_or_default());
            self.queue.insert(self.due_at, back);
            self.now = self.now.max(until);
            return None;
        }
        let q = self.due.pop_front()?;
        self.in_flight -= 1;
        self.now = self.due_at;
        self.stats.delivered += 1;
        Some(Delivery {
            at: self.due_at,
            from: q.from,
            to: q.to,
            msg: q.msg,
        })
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// A message in flight.
struct Queued<M> {
    from: usize,
    to: usize,
    msg: M,
}

/// A uniformly random index below `n` from the network's RNG.
pub fn pick<R: Rng>(rng: &mut R, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_time_order_and_drops_at_the_configured_rate() {
        let mut net = Network::new(
            2,
            Links {
                min_latency_ms: 1,
                max_latency_ms: 50,
                loss: 0.1,
            },
            7,
        );
        for i in 0..10_000u32 {
            net.send(0, 1, i);
        }
        let mut last = 0;
        let mut delivered = 0;
        while let Some(d) = net.next(u64::MAX) {
            assert!(d.at >= last);
            last = d.at;
            delivered += 1;
        }
        let lost = net.stats().lost as f64 / 10_000.0;
        assert!((0.08..0.12).contains(&lost), "loss {lost}");
        assert_eq!(delivered + net.stats().lost, 10_000);
    }

    #[test]
    fn partitions_drop_and_heal() {
        let mut net = Network::new(4, Links::default(), 1);
        net.partition(|p| (p % 2) as u32);
        net.send(0, 1, ());
        net.send(0, 2, ());
        assert_eq!(net.stats().partitioned, 1);
        net.heal();
        net.send(0, 1, ());
        assert_eq!(net.in_flight(), 2);
    }

    /// Messages due at one time come out in the order they were sent, a timer set for "now"
    /// while that time's messages are delivered included; asking for an earlier time keeps
    /// the order too.
    #[test]
    fn one_time_delivers_in_sending_order() {
        let mut net: Network<u32> = Network::new(1, Links::default(), 3);
        net.timer(0, 5, 1);
        net.timer(0, 9, 9);
        net.timer(0, 5, 2);
        let first = net.next(u64::MAX).unwrap();
        assert_eq!((first.at, first.msg), (5, 1));
        net.timer(0, 0, 3);
        assert_eq!(net.in_flight(), 3);
        // An earlier horizon than the time being delivered: nothing yet, order kept.
        assert!(net.next(4).is_none());
        net.timer(0, 0, 4);
        let rest: Vec<(u64, u32)> = std::iter::from_fn(|| net.next(u64::MAX))
            .map(|d| (d.at, d.msg))
            .collect();
        assert_eq!(rest, vec![(5, 2), (5, 3), (5, 4), (9, 9)]);
        assert_eq!(net.in_flight(), 0);
    }

    #[test]
    fn same_seed_same_run() {
        let run = |seed| {
            let mut net = Network::new(
                3,
                Links {
                    loss: 0.3,
                    ..Links::default()
                },
                seed,
            );
            for i in 0..100u32 {
                net.send(0, (i % 2 + 1) as usize, i);
            }
            let mut out = Vec::new();
            while let Some(d) = net.next(u64::MAX) {
                out.push((d.at, d.to, d.msg));
            }
            out
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
