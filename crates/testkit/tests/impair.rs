//! The impairment model and the UDP relay: seeded loss rates over 10,000 packets, delay applied
//! (in the model and measured through real sockets), reordering when jitter exceeds the packet
//! spacing, and the bandwidth cap.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ruang_testkit::Seed;
use ruang_testkit::impair::{
    Fate, GilbertElliott, Link, LinkConfig, Relay, RelayConfig, RelayError, check_addr,
};

/// Offers `n` packets of `len` bytes every `spacing_us` and returns the fates.
fn run(link: &mut Link, n: u64, spacing_us: u64, len: usize) -> Vec<(u64, Fate)> {
    (0..n)
        .map(|i| {
            let now = i * spacing_us;
            (now, link.on_packet(now, len))
        })
        .collect()
}

#[test]
fn random_loss_rate_within_tolerance_over_10k_packets() {
    let seed = Seed::from_env("random_loss");
    for loss in [0.01, 0.05, 0.2] {
        let mut link = Link::new(
            LinkConfig {
                loss,
                ..LinkConfig::default()
            },
            seed.value(),
        );
        let fates = run(&mut link, 10_000, 20_000, 100);
        let lost = fates
            .iter()
            .filter(|(_, f)| matches!(f, Fate::Drop(_)))
            .count() as f64;
        // Binomial: sd = sqrt(n p (1-p)); allow 4 sd.
        let sd = (10_000.0 * loss * (1.0 - loss)).sqrt();
        assert!(
            (lost - 10_000.0 * loss).abs() < 4.0 * sd,
            "loss {loss}: lost {lost} of 10000"
        );
        assert_eq!(link.stats().dropped_random as f64, lost);
    }
}

#[test]
fn same_seed_same_losses() {
    let config = LinkConfig {
        loss: 0.1,
        jitter_us: 5_000,
        ..LinkConfig::default()
    };
    let a = run(&mut Link::new(config.clone(), 42), 1_000, 20_000, 100);
    let b = run(&mut Link::new(config.clone(), 42), 1_000, 20_000, 100);
    let c = run(&mut Link::new(config, 43), 1_000, 20_000, 100);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn bursty_loss_has_its_mean_and_comes_in_bursts() {
    let seed = Seed::from_env("bursty_loss");
    let ge = GilbertElliott::bursts(0.05, 4.0);
    let mut link = Link::new(
        LinkConfig {
            burst: Some(ge),
            ..LinkConfig::default()
        },
        seed.value(),
    );
    let fates = run(&mut link, 10_000, 20_000, 100);
    let lost: Vec<bool> = fates
        .iter()
        .map(|(_, f)| matches!(f, Fate::Drop(_)))
        .collect();
    let n_lost = lost.iter().filter(|l| **l).count() as f64;
    let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
    let mean_burst = n_lost / bursts.max(1.0);
    // Bursts make the count noisier than a binomial: ±40 % of 500.
    assert!((n_lost - 500.0).abs() < 200.0, "lost {n_lost} of 10000");
    assert!(
        (2.5..6.0).contains(&mean_burst),
        "mean burst {mean_burst:.2} packets, expected about 4"
    );
    assert_eq!(link.stats().dropped_burst as f64, n_lost);
}

#[test]
fn delay_and_jitter_are_applied_in_the_model() {
    let seed = Seed::from_env("delay_model");
    let mut link = Link::new(
        LinkConfig {
            delay_us: 30_000,
            jitter_us: 10_000,
            ..LinkConfig::default()
        },
        seed.value(),
    );
    let fates = run(&mut link, 10_000, 20_000, 100);
    for (now, fate) in &fates {
        let Fate::Deliver { at_us } = fate else {
            panic!("no loss configured")
        };
        assert!(
            (20_000..=40_000).contains(&(at_us - now)),
            "{}",
            at_us - now
        );
    }
    let d = link.delay_summary();
    assert!((d.mean_us - 30_000.0).abs() < 500.0, "{d:?}");
    assert!(d.p95_us > 38_000 && d.p95_us <= 40_000, "{d:?}");
    // 20 ms spacing and at most 20 ms of spread: never out of order.
    assert_eq!(link.stats().reordered, 0);
}

#[test]
fn reorders_only_when_allowed_and_jitter_exceeds_spacing() {
    let config = |reorder| LinkConfig {
        delay_us: 30_000,
        jitter_us: 10_000,
        reorder,
        ..LinkConfig::default()
    };
    // 5 ms spacing, 20 ms of spread: with reordering on, many packets overtake.
    let mut link = Link::new(config(true), 3);
    let fates = run(&mut link, 10_000, 5_000, 100);
    let mut order: Vec<(u64, usize)> = fates
        .iter()
        .enumerate()
        .map(|(i, (_, f))| match f {
            Fate::Deliver { at_us } => (*at_us, i),
            Fate::Drop(_) => unreachable!(),
        })
        .collect();
    order.sort();
    let out_of_order = order.windows(2).filter(|w| w[1].1 < w[0].1).count();
    assert!(out_of_order > 1_000, "{out_of_order} inversions");
    assert!(link.stats().reordered > 1_000);

    // The same jitter without reordering: order kept, packets wait for the one before.
    let mut link = Link::new(config(false), 3);
    let fates = run(&mut link, 10_000, 5_000, 100);
    let times: Vec<u64> = fates
        .iter()
        .map(|(_, f)| match f {
            Fate::Deliver { at_us } => *at_us,
            Fate::Drop(_) => unreachable!(),
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(link.stats().reordered, 0);
}

#[test]
fn bandwidth_cap_holds() {
    // 1000-byte packets offered at 800 kbit/s into a 400 kbit/s link with a 100 ms queue.
    let mut link = Link::new(
        LinkConfig {
            rate_bps: Some(400_000),
            max_queue_delay_us: 100_000,
            ..LinkConfig::default()
        },
        1,
    );
    let fates = run(&mut link, 10_000, 10_000, 1_000);
    let delivered: Vec<u64> = fates
        .iter()
        .filter_map(|(_, f)| match f {
            Fate::Deliver { at_us } => Some(*at_us),
            Fate::Drop(_) => None,
        })
        .collect();
    // Throughput: bytes delivered over the delivery span, within 1 % of the cap.
    let span_s = (delivered[delivered.len() - 1] - delivered[0]) as f64 / 1e6;
    let rate = (delivered.len() - 1) as f64 * 8_000.0 / span_s;
    assert!((rate - 400_000.0).abs() < 4_000.0, "rate {rate:.0} bit/s");
    // About half was dropped at the queue; no packet waited past the queue bound plus its own
    // transmission time.
    let s = link.stats();
    assert!((4_800..5_200).contains(&s.dropped_queue), "{s:?}");
    assert!(link.delay_summary().max_us <= 100_000 + 20_000);
    // Under the cap nothing is dropped.
    let mut link = Link::new(
        LinkConfig {
            rate_bps: Some(400_000),
            ..LinkConfig::default()
        },
        1,
    );
    run(&mut link, 1_000, 40_000, 1_000);
    assert_eq!(link.stats().dropped(), 0);
}

#[test]
fn refuses_addresses_that_are_not_loopback_or_allowed() {
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let ns: std::net::IpAddr = "10.213.0.2".parse().unwrap();
    let public: std::net::IpAddr = "8.8.8.8".parse().unwrap();
    assert!(check_addr(lo, &[]).is_ok());
    assert!(check_addr("::1".parse().unwrap(), &[]).is_ok());
    assert!(check_addr(ns, &[]).is_err());
    assert!(check_addr(ns, &[ns]).is_ok());
    // Even when listed, a public address is refused.
    assert!(check_addr(public, &[public]).is_err());
    let err = Relay::start(RelayConfig::symmetric(
        "127.0.0.1:0".parse().unwrap(),
        SocketAddr::new(public, 53),
        LinkConfig::clean(),
        1,
    ))
    .err()
    .unwrap();
    assert!(matches!(err, RelayError::NotAllowed { .. }), "{err}");
}

/// A UDP echo server on loopback for `duration`.
fn echo_server(duration: Duration) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let end = Instant::now() + duration;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    (addr, handle)
}

#[test]
fn relay_applies_delay_both_ways_measured_through_sockets() {
    let (target, echo) = echo_server(Duration::from_secs(2));
    let mut config = RelayConfig::symmetric(
        "127.0.0.1:0".parse().unwrap(),
        target,
        LinkConfig {
            delay_us: 15_000,
            ..LinkConfig::default()
        },
        9,
    );
    config.duration = Some(Duration::from_secs(5));
    let relay = Relay::start(config).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..20u8 {
        let t = Instant::now();
        client.send_to(&[i; 32], relay.local_addr()).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("echo through the relay");
        assert_eq!(&buf[..n], &[i; 32]);
        rtts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rtts.sort_by(f64::total_cmp);
    let median = rtts[rtts.len() / 2];
    // 15 ms each way. The lower bound is exact (the relay never forwards early); the upper
    // bound leaves room for a loaded machine's scheduling but still fails if one direction
    // were delayed twice (45 ms) or the delay applied per hop more than once.
    assert!((30.0..44.0).contains(&median), "rtt median {median:.2} ms");
    let stats = relay.stop();
    assert_eq!(stats.up.packets_in, 20);
    assert_eq!(stats.down.delivered, 20);
    assert_eq!(stats.sent, 40);
    assert_eq!(stats.client, Some(client.local_addr().unwrap()));
    // The relay's own lateness against its schedule: scheduling noise, not a delay model.
    assert!(stats.max_late_us < 20_000, "{stats}");
    echo.join().unwrap();
}

#[test]
fn relay_drops_the_configured_share_through_sockets() {
    let (target, echo) = echo_server(Duration::from_secs(2));
    let mut config = RelayConfig::symmetric(
        "127.0.0.1:0".parse().unwrap(),
        target,
        LinkConfig::clean(),
        5,
    );
    config.up.loss = 0.3;
    let relay = Relay::start(config).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read while sending (small datagrams fill a socket buffer fast), and pace the sends.
    let reader = client.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut buf = [0u8; 16];
        while reader.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    for i in 0..500u32 {
        client
            .send_to(&i.to_be_bytes(), relay.local_addr())
            .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let got = counter.join().unwrap();
    let stats = relay.stop();
    assert_eq!(stats.up.packets_in, 500);
    assert_eq!(got, stats.up.delivered, "{stats}");
    // Seeded: 30 % ± 4 sd of a binomial over 500.
    assert!((105..=195).contains(&stats.up.dropped_random), "{stats}");
    echo.join().unwrap();
}

#[test]
fn fixes_the_inner_udp_checksum_of_a_vxlan_frame() {
    use ruang_testkit::impair::fix_vxlan_checksums;
    let payload = b"hi!";
    let mut frame = vec![0x08, 0, 0, 0, 0, 0, 42, 0]; // VXLAN header, VNI 42
    frame.extend_from_slice(&[0xaa; 12]); // MACs
    frame.extend_from_slice(&[0x08, 0x00]); // IPv4
    let total = 20 + 8 + payload.len();
    frame.extend_from_slice(&[0x45, 0, 0, total as u8, 0, 0, 0, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    frame.extend_from_slice(&1234u16.to_be_bytes());
    frame.extend_from_slice(&5678u16.to_be_bytes());
    frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0x12, 0x34]); // an unfilled (offloaded) checksum
    frame.extend_from_slice(payload);
    fix_vxlan_checksums(&mut frame);
    let at = 8 + 14 + 20 + 6;
    // Computed independently (RFC 768 over the pseudo-header).
    assert_eq!(&frame[at..at + 2], &[0x47, 0x6c]);
    // Not VXLAN-over-IPv4: untouched.
    let mut other = vec![1u8; 30];
    fix_vxlan_checksums(&mut other);
    assert_eq!(other, vec![1u8; 30]);
}
