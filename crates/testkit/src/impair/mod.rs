//! Network impairment: what happens to each packet on a bad link, and a UDP relay that applies
//! it to real traffic.
//!
//! The kernel on the project's machines has no `netem`, so ruang brings its own. Two layers:
//!
//! - [`Link`]: a sans-IO model of one direction of a link. [`Link::on_packet`]`(now_us, len)`
//!   decides a packet's [`Fate`]: dropped (random loss, a Gilbert–Elliott burst, or a full
//!   queue) or delivered at a given time (bandwidth cap, one-way delay, jitter, periodic delay
//!   spikes, with or without reordering). It takes time as an argument and draws randomness from
//!   its own seeded RNG, so a run is reproducible from its seed and testable without sockets.
//! - [`Relay`]: a UDP relay between a local port and a target (two threads, one per
//!   direction), each direction impaired by its own [`Link`]. It tracks the client's address,
//!   so a QUIC client that dials the relay talks to the target through it, and the target's
//!   answers go back to the client. It runs for a given duration or until stopped, its queues
//!   are bounded, and it only relays between loopback addresses and addresses the caller lists
//!   explicitly (namespace addresses of a test), see [`check_addr`].
//!
//! The `impair` binary (`cargo run --release -p ruang-testkit --bin impair -- --help`) wraps
//! the relay for use from a shell.
//!
//! # The model, in order
//!
//! 1. Loss: with probability [`LinkConfig::loss`] a packet is dropped; independently, a
//!    [`GilbertElliott`] chain (good/bad states) drops packets in bursts.
//! 2. Bandwidth: with a [`LinkConfig::rate_bps`] cap, packets leave one after the other at that
//!    rate; a packet that would wait more than [`LinkConfig::max_queue_delay_us`] in that queue
//!    is dropped (a bounded router queue, tail drop).
//! 3. Delay: the packet arrives `delay ± jitter` (uniform) after it left the queue, plus
//!    [`Spike::extra_us`] when it was sent during a spike. Without
//!    [`LinkConfig::reorder`], a packet never overtakes the one before it (it waits for it, as
//!    on a single path); with it, each packet's delay is independent.

mod relay;

pub use relay::{Relay, RelayConfig, RelayError, RelayStats, check_addr, fix_vxlan_checksums};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Most added-delay samples a [`Link`] keeps for its statistics (about 2.8 hours of one 20 ms
/// stream); later samples are not recorded, counters still are.
pub const MAX_DELAY_SAMPLES: usize = 500_000;

/// Two-state bursty loss (Gilbert–Elliott). In the good state a packet is lost with
/// probability `loss_good`, in the bad state with `loss_bad`; after each packet the chain moves
/// good → bad with probability `p` and bad → good with probability `r`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// P(good → bad) per packet.
    pub p: f64,
    /// P(bad → good) per packet.
    pub r: f64,
    /// Loss probability in the bad state (1 − h in the literature).
    pub loss_bad: f64,
    /// Loss probability in the good state (k).
    pub loss_good: f64,
}

impl GilbertElliott {
    /// A chain that loses `mean_loss` of the packets in bursts of `mean_burst` packets on
    /// average (every packet lost in the bad state, none in the good one).
    pub fn bursts(mean_loss: f64, mean_burst: f64) -> GilbertElliott {
        let r = 1.0 / mean_burst.max(1.0);
        let loss = mean_loss.clamp(0.0, 0.99);
        GilbertElliott {
            p: loss * r / (1.0 - loss),
            r,
            loss_bad: 1.0,
            loss_good: 0.0,
        }
    }

    /// The long-run fraction of packets lost.
    pub fn mean_loss(&self) -> f64 {
        let bad = if self.p + self.r > 0.0 {
            self.p / (self.p + self.r)
        } else {
            0.0
        };
        bad * self.loss_bad + (1.0 - bad) * self.loss_good
    }
}

/// A periodic delay spike: packets sent during `[k × every, k × every + length)` (from the
/// link's first packet) get `extra` delay on top of the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spike {
    /// Period, µs.
    pub every_us: u64,
    /// How long each spike lasts, µs.
    pub length_us: u64,
    /// Added delay during a spike, µs.
    pub extra_us: u64,
}

/// The impairment of one direction of a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way delay, µs.
    pub delay_us: u64,
    /// Jitter: the delay is uniform in `delay ± jitter` (never below zero), µs.
    pub jitter_us: u64,
    /// Whether packets may overtake each other when jitter allows it.
    pub reorder: bool,
    /// Probability that a packet is dropped at random.
    pub loss: f64,
    /// Bursty loss, on top of `loss`.
    pub burst: Option<GilbertElliott>,
    /// Bandwidth cap in bits per second (`None`: unlimited).
    pub rate_bps: Option<u64>,
    /// With a cap: the longest a packet may wait for the link before it is dropped, µs.
    pub max_queue_delay_us: u64,
    /// Periodic delay spikes.
    pub spike: Option<Spike>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            delay_us: 0,
            jitter_us: 0,
            reorder: false,
            loss: 0.0,
            burst: None,
            rate_bps: None,
            max_queue_delay_us: 200_000,
            spike: None,
        }
    }
}

impl LinkConfig {
    /// A perfect link.
    pub fn clean() -> LinkConfig {
        LinkConfig::default()
    }

    /// Whether this link changes nothing.
    pub fn is_clean(&self) -> bool {
        self.delay_us == 0
            && self.jitter_us == 0
            && self.loss == 0.0
            && self.burst.is_none()
            && self.rate_bps.is_none()
            && self.spike.is_none()
    }
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss.
    Random,
    /// Gilbert–Elliott burst loss.
    Burst,
    /// The bandwidth queue was full.
    Queue,
}

/// What happens to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Dropped.
    Drop(DropReason),
    /// Delivered at this time (same clock as `now_us`).
    Deliver {
        /// Delivery time, µs.
        at_us: u64,
    },
}

/// Counters of one [`Link`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered.
    pub packets_in: u64,
    /// Packets scheduled for delivery.
    pub delivered: u64,
    /// Dropped by random loss.
    pub dropped_random: u64,
    /// Dropped by burst loss.
    pub dropped_burst: u64,
    /// Dropped because the bandwidth queue was full.
    pub dropped_queue: u64,
    /// Bytes offered.
    pub bytes_in: u64,
    /// Bytes scheduled for delivery.
    pub bytes_delivered: u64,
    /// Packets delivered before a packet offered earlier (reordered).
    pub reordered: u64,
}

impl LinkStats {
    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_random + self.dropped_burst + self.dropped_queue
    }
}

/// Summary of added delays, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DelaySummary {
    /// Samples.
    pub count: usize,
    /// Mean, µs.
    pub mean_us: f64,
    /// 50th percentile, µs.
    pub p50_us: u64,
    /// 95th percentile, µs.
    pub p95_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

impl DelaySummary {
    /// Summarises `samples` (µs).
    pub fn of(samples: &[u64]) -> DelaySummary {
        if samples.is_empty() {
            return DelaySummary::default();
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        DelaySummary {
            count: s.len(),
            mean_us: s.iter().sum::<u64>() as f64 / s.len() as f64,
            p50_us: q(0.5),
            p95_us: q(0.95),
            max_us: s[s.len() - 1],
        }
    }
}

/// One direction of an impaired link (see the [module docs](self)). Sans-IO: time is an
/// argument, randomness comes from the seed.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: ChaCha8Rng,
    bad: bool,
    start_us: Option<u64>,
    link_free_us: u64,
    last_delivery_us: u64,
    stats: LinkStats,
    delays: Vec<u64>,
}

impl Link {
    /// A link with `config`, seeded.
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            bad: false,
            start_us: None,
            link_free_us: 0,
            last_delivery_us: 0,
            stats: LinkStats::default(),
            delays: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Decides the fate of a packet of `len` bytes offered at `now_us`. Calls must come with
    /// non-decreasing `now_us`.
    pub fn on_packet(&mut self, now_us: u64, len: usize) -> Fate {
        let start = *self.start_us.get_or_insert(now_us);
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
        let c = &self.config;
        // Draw every random number for every packet, so the loss pattern does not depend on
        // the delay settings (and vice versa) for a given seed.
        let random_loss = self.rng.random::<f64>() < c.loss;
        let burst_loss = match c.burst {
            Some(ge) => {
                let lost =
                    self.rng.random::<f64>() < if self.bad { ge.loss_bad } else { ge.loss_good };
                let flip = self.rng.random::<f64>();
                self.bad = if self.bad { flip >= ge.r } else { flip < ge.p };
                lost
            }
            None => false,
        };
        let jitter_draw = self.rng.random::<f64>();
        if random_loss {
            self.stats.dropped_random += 1;
            return Fate::Drop(DropReason::Random);
        }
        if burst_loss {
            self.stats.dropped_burst += 1;
            return Fate::Drop(DropReason::Burst);
        }
        let departs = match c.rate_bps {
            Some(rate) if rate > 0 => {
                let begin = self.link_free_us.max(now_us);
                if begin - now_us > c.max_queue_delay_us {
                    self.stats.dropped_queue += 1;
                    return Fate::Drop(DropReason::Queue);
                }
                let tx_us = (len as u64 * 8 * 1_000_000).div_ceil(rate);
                self.link_free_us = begin + tx_us;
                begin + tx_us
            }
            _ => now_us,
        };
        let j = c.jitter_us as f64;
        let mut delay = (c.delay_us as f64 + (jitter_draw * 2.0 - 1.0) * j).max(0.0) as u64;
        if let Some(spike) = c.spike
            && spike.every_us > 0
            && (now_us - start) % spike.every_us < spike.length_us
        {
            delay += spike.extra_us;
        }
        let mut at = departs + delay;
        if c.reorder {
            if at < self.last_delivery_us {
                self.stats.reordered += 1;
            }
            self.last_delivery_us = self.last_delivery_us.max(at);
        } else {
            at = at.max(self.last_delivery_us);
            self.last_delivery_us = at;
        }
        self.stats.delivered += 1;
        self.stats.bytes_delivered += len as u64;
        if self.delays.len() < MAX_DELAY_SAMPLES {
            self.delays.push(at - now_us);
        }
        Fate::Deliver { at_us: at }
    }

    /// Counters so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// The added delays (delivery time − offer time) of delivered packets, µs.
    pub fn delays(&self) -> &[u64] {
        &self.delays
    }

    /// Summary of the added delays.
    pub fn delay_summary(&self) -> DelaySummary {
        DelaySummary::of(&self.delays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_link_delivers_at_once() {
        let mut l = Link::new(LinkConfig::clean(), 1);
        assert_eq!(l.on_packet(5, 100), Fate::Deliver { at_us: 5 });
        assert!(l.config().is_clean());
    }

    #[test]
    fn gilbert_bursts_have_the_asked_mean() {
        let ge = GilbertElliott::bursts(0.02, 3.0);
        assert!((ge.mean_loss() - 0.02).abs() < 1e-9);
    }

    #[test]
    fn spike_adds_delay_inside_its_window_only() {
        let config = LinkConfig {
            spike: Some(Spike {
                every_us: 1_000_000,
                length_us: 100_000,
                extra_us: 50_000,
            }),
            reorder: true,
            ..LinkConfig::default()
        };
        let mut l = Link::new(config, 1);
        assert_eq!(l.on_packet(0, 10), Fate::Deliver { at_us: 50_000 });
        assert_eq!(l.on_packet(200_000, 10), Fate::Deliver { at_us: 200_000 });
        assert_eq!(
            l.on_packet(1_050_000, 10),
            Fate::Deliver { at_us: 1_100_000 }
        );
    }
}
