//! The jitter buffer under seeded loss, jitter and reordering, in virtual time; and a property
//! test that whatever arrives, frames come out in order and the buffer stays within its bound.
//!
//! Set `SEED=<n>` to replay a simulation with another seed; the seed is printed.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruang_audio::FrameDuration;
use ruang_audio::jitter::{Buffer, Config, Playout, Stats};
use ruang_audio::wire::{Flags, Frame};

const T0: u64 = 10_000_000;
const FRAME_US: u64 = 20_000;

struct Outcome {
    stats: Stats,
    dropped: u64,
    played: Vec<u32>,
    fec: u64,
    max_len: usize,
    capacity: usize,
}

/// `n` frames sent every 20 ms; each is dropped with probability `loss`, else arrives after
/// `base_ms` ± `jitter_ms` (uniform; more than a frame of jitter reorders). The playout pulls
/// every 20 ms at a 7 ms phase. The last frame is never lost and ends the stream.
fn simulate(seed: u64, n: u32, loss: f64, base_ms: u64, jitter_ms: u64) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut arrivals = Vec::new();
    let mut dropped = 0;
    for i in 0..n {
        let last = i == n - 1;
        if !last && rng.random_bool(loss) {
            dropped += 1;
            continue;
        }
        let jitter = if last || jitter_ms == 0 {
            0
        } else {
            rng.random_range(0..=2 * jitter_ms * 1_000) as i64 - (jitter_ms * 1_000) as i64
        };
        let t = (T0 + i as u64 * FRAME_US + base_ms * 1_000) as i64 + jitter;
        let flags = if last {
            Flags::VOICE | Flags::FEC | Flags::END
        } else {
            Flags::VOICE | Flags::FEC
        };
        let f = Frame {
            speaker: 9,
            seq: i,
            timestamp: i * 960,
            level: 30,
            flags,
            payload: i.to_le_bytes().to_vec(),
        };
        arrivals.push((t as u64, f));
    }
    arrivals.sort_by_key(|(t, _)| *t);
    let mut buf = Buffer::new(Config::new(FrameDuration::Ms20));
    let mut next_arrival = 0;
    let mut played = Vec::new();
    let mut fec = 0;
    let mut max_len = 0;
    let pulls = n as u64 + (base_ms + jitter_ms) / 20 + 20;
    for j in 0..pulls {
        let now = T0 + j * FRAME_US + 7_000;
        while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now {
            let (t, f) = arrivals[next_arrival].clone();
            buf.push(f, t);
            max_len = max_len.max(buf.len());
            next_arrival += 1;
        }
        match buf.pull(now) {
            Playout::Packet(f) => played.push(f.seq),
            Playout::Fec(_) => fec += 1,
            Playout::Conceal | Playout::Silence => {}
        }
    }
    assert_eq!(
        next_arrival,
        arrivals.len(),
        "every frame arrived before the end"
    );
    Outcome {
        stats: buf.stats(),
        dropped,
        played,
        fec,
        max_len,
        capacity: buf.capacity(),
    }
}

fn seed() -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_601)
}

/// Checks that hold in every simulation: order, bounds, exact accounting.
fn check_invariants(o: &Outcome, n: u32) {
    let s = &o.stats;
    assert!(
        o.played.windows(2).all(|w| w[0] < w[1]),
        "frames out of order"
    );
    assert!(o.max_len <= o.capacity);
    assert_eq!(s.played as usize, o.played.len());
    assert_eq!(s.fec_recovered, o.fec);
    // Every sequence number was passed exactly once, one way or another.
    assert_eq!(
        s.played + s.skipped + s.overflow + s.lost,
        n as u64,
        "{s:?}"
    );
    // Lost = never arrived + arrived after its slot.
    assert_eq!(s.lost, o.dropped + s.late, "{s:?}");
    assert!(s.fec_recovered <= s.lost);
    assert_eq!(s.received, n as u64 - o.dropped);
    assert!((20..=200).contains(&s.target_delay_ms), "{s:?}");
}

#[test]
fn clean_loopback_stays_at_the_minimum_delay() {
    let n = 1_500;
    let o = simulate(seed(), n, 0.0, 1, 0);
    check_invariants(&o, n);
    let s = o.stats;
    assert_eq!(
        (s.played, s.lost, s.concealed, s.stretched, s.skipped),
        (n as u64, 0, 0, 0, 0)
    );
    assert_eq!(s.target_delay_ms, 21);
    // Frames arrive 1 ms after sending and play at the next pull, 6 ms later.
    assert_eq!(s.delay_ms, 6);
}

#[test]
fn seeded_loss_jitter_and_reordering() {
    let seed = seed();
    println!("SEED={seed}");
    let n = 3_000; // one minute
    for (loss, jitter_ms) in [
        (0.0, 0),
        (0.05, 0),
        (0.10, 0),
        (0.0, 30),
        (0.05, 30),
        (0.10, 30),
    ] {
        let o = simulate(seed, n, loss, 40, jitter_ms);
        check_invariants(&o, n);
        let s = o.stats;
        println!(
            "loss {:>3.0}% jitter ±{jitter_ms:>2} ms: dropped {:>3} lost {:>3} late {:>3} fec {:>3} \
             concealed {:>3} stretched {:>2} skipped {:>2} target {:>3} ms delay {:>3} ms",
            loss * 100.0,
            o.dropped,
            s.lost,
            s.late,
            s.fec_recovered,
            s.concealed,
            s.stretched,
            s.skipped,
            s.target_delay_ms,
            s.delay_ms
        );
        let expected_drops = loss * n as f64;
        assert!((o.dropped as f64 - expected_drops).abs() < 4.0 * expected_drops.sqrt() + 1.0);
        if jitter_ms == 0 {
            // A steady path: nothing is late, and with loss seen the buffer holds one frame
            // more, so most single losses are repaired by FEC.
            assert_eq!(s.late, 0, "{s:?}");
            if loss > 0.0 {
                assert!(s.fec_recovered * 10 >= s.lost * 7, "{s:?}");
                assert!(s.target_delay_ms <= 45, "{s:?}");
            } else {
                assert_eq!(s.target_delay_ms, 21);
            }
        } else {
            // ±30 ms: the target covers the 95th percentile (about 57 ms of spread) plus a
            // frame, so few frames come late; reordering never disorders the output.
            assert!(s.late * 100 <= n as u64 * 3, "too many late frames: {s:?}");
            assert!((60..=120).contains(&s.target_delay_ms), "{s:?}");
        }
    }
}

#[derive(Clone, Debug)]
struct Arrival {
    drop: bool,
    delay_ms: u64,
    duplicate: bool,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        prop::bool::weighted(0.1),
        0u64..120,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(drop, delay_ms, duplicate)| Arrival {
            drop,
            delay_ms,
            duplicate,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the network does (loss, any delay up to 120 ms hence any reordering,
    /// duplicates) and whatever the capacity, pulled frames come out in sequence order, each
    /// at most once, and the buffer never holds more than its bound.
    #[test]
    fn frames_come_out_in_order_within_the_bound(
        script in prop::collection::vec(arrival(), 1..80),
        capacity in 2usize..20,
        phase_us in 0u64..20_000,
        first_seq in any::<u32>(),
    ) {
        let config = Config { capacity_frames: capacity, ..Config::new(FrameDuration::Ms20) };
        let mut buf = Buffer::new(config);
        let mut arrivals = Vec::new();
        for (i, a) in script.iter().enumerate() {
            if a.drop {
                continue;
            }
            let seq = first_seq.wrapping_add(i as u32);
            let f = Frame { seq, timestamp: seq.wrapping_mul(960), flags: Flags::FEC, payload: vec![1], ..Frame::default() };
            let t = T0 + i as u64 * FRAME_US + a.delay_ms * 1_000;
            if a.duplicate {
                arrivals.push((t + 3_000, f.clone()));
            }
            arrivals.push((t, f));
        }
        arrivals.sort_by_key(|(t, _)| *t);
        let mut next = 0;
        let mut played: Vec<u32> = Vec::new();
        for j in 0..script.len() as u64 + 20 {
            let now = T0 + j * FRAME_US + phase_us;
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (t, f) = arrivals[next].clone();
                buf.push(f, t);
                prop_assert!(buf.len() <= capacity);
                next += 1;
            }
            if let Playout::Packet(f) = buf.pull(now) {
                // Offsets from the first sequence number handle wrapping.
                played.push(f.seq.wrapping_sub(first_seq));
            }
            prop_assert!(buf.len() <= capacity);
        }
        prop_assert!(played.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", played);
        let s = buf.stats();
        prop_assert!(s.played + s.skipped + s.overflow + s.lost <= script.len() as u64);
        prop_assert_eq!(s.played as usize, played.len());
    }
}

/// The receiver's playout clock runs 200 ppm fast or slow against the sender's for five
/// minutes: the buffer holds a frame (fast) or skips one in a pause (slow) every ~100 s, and
/// never loses anything.
#[test]
fn clock_drift_is_absorbed_without_loss() {
    let n: u32 = 15_000;
    for pull_period in [19_996u64, 20_004] {
        let mut buf = Buffer::new(Config::new(FrameDuration::Ms20));
        let mut next = 0u32;
        let (mut played, mut max_delay) = (0u64, 0u32);
        let mut j = 0u64;
        while next < n || !buf.is_empty() {
            let now = T0 + j * pull_period + 7_000;
            while next < n && T0 + next as u64 * FRAME_US + 1_000 <= now {
                // A pause (no VOICE) every 2 s, as in speech.
                let flags = if next % 100 < 5 {
                    Flags::FEC
                } else {
                    Flags::VOICE | Flags::FEC
                };
                let f = Frame {
                    seq: next,
                    timestamp: next * 960,
                    flags,
                    payload: vec![0],
                    ..Frame::default()
                };
                buf.push(f, T0 + next as u64 * FRAME_US + 1_000);
                next += 1;
            }
            if let Playout::Packet(_) = buf.pull(now) {
                played += 1;
                max_delay = max_delay.max(buf.stats().delay_ms);
            }
            j += 1;
            if j > n as u64 + 100 {
                break;
            }
        }
        let s = buf.stats();
        println!("pull period {pull_period} µs: {s:?}, max delay {max_delay} ms");
        assert_eq!((s.lost, s.late, s.overflow), (0, 0, 0), "{s:?}");
        assert_eq!(played + s.skipped, n as u64);
        // 300 s × 200 ppm = 60 ms = 3 frames of drift to absorb.
        assert!(s.skipped + s.stretched <= 4, "{s:?}");
        assert!(
            max_delay <= 45,
            "delay stays near the minimum: {max_delay} ms"
        );
    }
}
