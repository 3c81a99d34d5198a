//! `playout`: the listener's receive path (jitter buffer, concealment, decoder) over a
//! modelled QUIC path, scored with PESQ-WB. Sans-IO and in virtual time, so every loss pattern
//! is reproducible from its seed and a run takes seconds, where the `latency` and `loss`
//! scenarios (real processes, real QUIC) vary from run to run by more than the differences a
//! change to the jitter buffer makes.
//!
//! The model, per 20 ms frame: the speaker's encoder (the node's settings) makes a frame; the
//! audio link pushes it, round-robin, onto one of [`AUDIO_LANES`] ordered streams, and while
//! the speaker sends copies (the node does on lossy paths) the previous frame's copy goes
//! onto the next lane, in the same datagram. Datagrams cross one direction of a
//! [`Link`] (the impairment relay's model, same scenarios as `latency`); acknowledgements
//! cross the other. Loss recovery follows QUIC (RFC 9002): a datagram is declared lost once a
//! later one is acknowledged and it is 3 datagrams older or 9/8 of the smoothed round trip
//! old, and its stream data goes out again in a new datagram. The receiver acknowledges at
//! once when a datagram shows a gap, else after [`ACK_DELAY_US`]. A lane delivers its frames
//! in order, so a lost datagram holds its lanes back until the retransmission arrives. The
//! listener pushes each frame into a [`SpeakerStream`] when its lane delivers it and pulls
//! one frame every 20 ms; what it plays is scored like the `latency` scenario's speech runs
//! (a lead-in, then three repetitions of the reference, each scored).
//!
//! Beside the lanes the node uses, the model can hand each frame over on its own stream as
//! soon as it arrives (`a stream per frame`, not built): what a transport without
//! head-of-line blocking would give, with QUIC still resending what is lost.
//!
//! Left out: congestion control, probe timeouts, and the listener's loss reports (copies or
//! FEC are on from the start, as after the first report).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use anyhow::Result;
use ruang_audio::FrameDuration;
use ruang_audio::codec::EncoderConfig;
use ruang_audio::jitter::{Config as JitterConfig, SpeakerStream};
use ruang_audio::send::Sender;
use ruang_audio::wire::{Flags, Frame};
use ruang_bench::speech::Scorer;
use ruang_bench::table::{Table, f};
use ruang_net::limits::AUDIO_LANES;
use ruang_testkit::impair::{Fate, Link, LinkConfig};

use crate::Ctx;
use crate::pair;

/// Loss patterns (seeds) per scenario.
const SEEDS: u64 = 8;
/// Repetitions of the reference scored per pattern (after one as lead-in).
const REPEATS: usize = 3;
/// The receiver's delayed acknowledgement when nothing is missing (quinn's max_ack_delay).
const ACK_DELAY_US: u64 = 25_000;
/// Datagrams younger than this many newer acknowledged ones are not declared lost yet.
const PACKET_THRESHOLD: u64 = 3;
/// Bytes of QUIC and libp2p framing per datagram and per stream chunk (approximate).
const DATAGRAM_OVERHEAD: usize = 40;
const CHUNK_OVERHEAD: usize = 20;

/// How the speaker protects its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protection {
    /// Every frame twice (the second copy with the next frame), FEC off.
    Copies,
    /// Opus in-band FEC with a 5 % hint, one copy.
    Fec,
}

impl Protection {
    fn label(self) -> &'static str {
        match self {
            Protection::Copies => "copies",
            Protection::Fec => "FEC (hint 5 %)",
        }
    }
}

/// How the listener's side hands frames over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    /// [`AUDIO_LANES`] ordered streams, round-robin (the node today): a lost datagram holds
    /// back the later frames of its lanes until it is resent.
    Lanes,
    /// A stream per frame (and per copy): each is handed over when it arrives, so nothing
    /// waits for another frame's retransmission. Not built: what a transport without
    /// head-of-line blocking (QUIC still resending what is lost) would give with this jitter
    /// buffer.
    StreamPerFrame,
}

impl Delivery {
    fn label(self) -> &'static str {
        match self {
            Delivery::Lanes => "8 ordered lanes",
            Delivery::StreamPerFrame => "a stream per frame",
        }
    }
}

/// A frame on a lane.
#[derive(Clone, Debug)]
struct Chunk {
    /// Which push this is (0, 1, 2, ...), unique per chunk sent for the first time.
    id: u64,
    lane: usize,
    /// Position on its lane (0, 1, 2, ...).
    index: u64,
    frame: usize,
}

#[derive(Clone, Debug)]
struct Datagram {
    sent_us: u64,
    chunks: Vec<Chunk>,
    acked: bool,
    lost: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A datagram reaches the listener.
    Arrive(usize),
    /// The listener acknowledges everything received up to this datagram.
    AckSend(usize),
    /// That acknowledgement reaches the speaker.
    Ack(usize),
    /// A datagram's time threshold for loss passes.
    LossTimer(usize),
    /// The speaker sends frame n.
    Send(usize),
}

/// What one pattern gave.
struct Run {
    heard: Vec<f32>,
    concealed: u64,
    skipped: u64,
    stretched: u64,
    late: u64,
    lost: u64,
    targets_ms: Vec<u32>,
    pulls: u64,
}

/// When the listener's lanes hand each frame over: `(time µs, frame index)` in time order
/// (a frame may come twice: its copy), for frames of `frame_lens` bytes sent every 20 ms
/// from time 0 over a path with `link` (both directions), seeded.
fn deliveries(
    frame_lens: &[usize],
    protection: Protection,
    delivery: Delivery,
    link: &LinkConfig,
    seed: u64,
) -> Vec<(u64, usize)> {
    let frame_us = FrameDuration::Ms20.as_micros();
    let mut forward = Link::new(link.clone(), seed);
    let mut back = Link::new(link.clone(), seed ^ 0x5eed);
    let mut events: BinaryHeap<Reverse<(u64, Event)>> = BinaryHeap::new();
    for n in 0..frame_lens.len() {
        events.push(Reverse((n as u64 * frame_us, Event::Send(n))));
    }
    let mut datagrams: Vec<Datagram> = Vec::new();
    // Every datagram before this one is acknowledged or declared lost.
    let mut resolved = 0usize;
    let mut pushes = 0u64;
    let mut lane_next_index = [0u64; AUDIO_LANES];
    // Listener: per lane, what arrived beyond the delivered prefix.
    let mut lane_delivered = [0u64; AUDIO_LANES];
    let mut lane_waiting: Vec<BTreeMap<u64, usize>> = vec![BTreeMap::new(); AUDIO_LANES];
    // With a stream per frame: which chunks were handed over.
    let mut chunk_delivered = Vec::<bool>::new();
    let mut largest_received: Option<usize> = None;
    let mut received = Vec::<bool>::new();
    let mut srtt_us = (2 * link.delay_us + ACK_DELAY_US / 2) as f64;
    let mut delivered = Vec::with_capacity(2 * frame_lens.len());
    let mut lost_now = Vec::new();

    let send = |chunks: Vec<Chunk>,
                now: u64,
                datagrams: &mut Vec<Datagram>,
                received: &mut Vec<bool>,
                forward: &mut Link,
                events: &mut BinaryHeap<Reverse<(u64, Event)>>| {
        let len = DATAGRAM_OVERHEAD
            + chunks
                .iter()
                .map(|c| CHUNK_OVERHEAD + frame_lens[c.frame])
                .sum::<usize>();
        let id = datagrams.len();
        datagrams.push(Datagram {
            sent_us: now,
            chunks,
            acked: false,
            lost: false,
        });
        received.push(false);
        if let Fate::Deliver { at_us } = forward.on_packet(now, len) {
            events.push(Reverse((at_us, Event::Arrive(id))));
        }
    };

    while let Some(Reverse((now, event))) = events.pop() {
        match event {
            Event::Send(n) => {
                let mut chunks = Vec::with_capacity(2);
                let mut push = |frame: usize| {
                    let lane = (pushes % AUDIO_LANES as u64) as usize;
                    pushes += 1;
                    let index = lane_next_index[lane];
                    lane_next_index[lane] += 1;
                    chunks.push(Chunk {
                        id: pushes - 1,
                        lane,
                        index,
                        frame,
                    });
                };
                push(n);
                if protection == Protection::Copies && n > 0 {
                    push(n - 1);
                }
                send(
                    chunks,
                    now,
                    &mut datagrams,
                    &mut received,
                    &mut forward,
                    &mut events,
                );
            }
            Event::Arrive(id) => {
                let gap = largest_received.is_some_and(|l| id > l + 1);
                received[id] = true;
                largest_received = largest_received.max(Some(id));
                for c in datagrams[id].chunks.clone() {
                    if delivery == Delivery::StreamPerFrame {
                        let i = c.id as usize;
                        if chunk_delivered.len() <= i {
                            chunk_delivered.resize(i + 1, false);
                        }
                        if !chunk_delivered[i] {
                            chunk_delivered[i] = true;
                            delivered.push((now, c.frame));
                        }
                        continue;
                    }
                    if c.index >= lane_delivered[c.lane] {
                        lane_waiting[c.lane].insert(c.index, c.frame);
                    }
                    while let Some(frame) = lane_waiting[c.lane].remove(&lane_delivered[c.lane]) {
                        lane_delivered[c.lane] += 1;
                        delivered.push((now, frame));
                    }
                }
                let at = if gap { now } else { now + ACK_DELAY_US };
                events.push(Reverse((at, Event::AckSend(id))));
            }
            Event::AckSend(id) => {
                if let Fate::Deliver { at_us } = back.on_packet(now, 50) {
                    events.push(Reverse((at_us, Event::Ack(id))));
                }
            }
            Event::Ack(largest) => {
                let sample = now.saturating_sub(datagrams[largest].sent_us) as f64;
                srtt_us = 0.875 * srtt_us + 0.125 * sample;
                while resolved < datagrams.len()
                    && (datagrams[resolved].acked || datagrams[resolved].lost)
                {
                    resolved += 1;
                }
                for id in resolved..=largest {
                    let d = &mut datagrams[id];
                    if d.acked || d.lost {
                        continue;
                    }
                    if received[id] {
                        d.acked = true;
                        continue;
                    }
                    let threshold = d.sent_us + (srtt_us * 9.0 / 8.0) as u64;
                    if largest as u64 >= id as u64 + PACKET_THRESHOLD || now >= threshold {
                        lost_now.push(id);
                    } else {
                        events.push(Reverse((threshold, Event::LossTimer(id))));
                    }
                }
            }
            Event::LossTimer(id) => {
                let d = &datagrams[id];
                if !d.acked && !d.lost && !received[id] {
                    lost_now.push(id);
                }
            }
        }
        // Declared lost: its stream data goes out again in a new datagram.
        for id in lost_now.drain(..) {
            datagrams[id].lost = true;
            let chunks = datagrams[id].chunks.clone();
            send(
                chunks,
                now,
                &mut datagrams,
                &mut received,
                &mut forward,
                &mut events,
            );
        }
    }
    delivered
}

/// Plays `frames` over a path with `link` (both directions), seeded: pushes each frame into
/// the listener's [`SpeakerStream`] when its lane hands it over, pulls every 20 ms.
fn run(
    frames: &[Frame],
    protection: Protection,
    delivery: Delivery,
    link: &LinkConfig,
    seed: u64,
) -> Result<Run> {
    let frame_us = FrameDuration::Ms20.as_micros();
    let lens: Vec<usize> = frames.iter().map(Frame::encoded_len).collect();
    let delivered = deliveries(&lens, protection, delivery, link, seed);
    let mut speaker = SpeakerStream::new(JitterConfig::new(FrameDuration::Ms20))?;
    let pulls = frames.len() + 50;
    // The playout clock's phase against the speaker's: any, the same for every protection.
    let phase = seed.wrapping_mul(7_919) % frame_us;
    let mut heard = Vec::with_capacity(pulls * FrameDuration::Ms20.samples());
    let mut targets_ms = Vec::with_capacity(pulls);
    let mut next = 0;
    for k in 0..pulls as u64 {
        let now = phase + k * frame_us;
        while let Some(&(at, frame)) = delivered.get(next).filter(|(at, _)| *at <= now) {
            speaker.push(frames[frame].clone(), at);
            next += 1;
        }
        heard.extend_from_slice(speaker.pull(now).pcm);
        targets_ms.push(speaker.stats().jitter.target_delay_ms);
    }
    let stats = speaker.stats().jitter;
    Ok(Run {
        heard,
        concealed: stats.concealed,
        skipped: stats.skipped,
        stretched: stats.stretched,
        late: stats.late,
        lost: stats.lost,
        targets_ms,
        pulls: pulls as u64,
    })
}

/// The reference, repeated, encoded as the node would with `protection`.
fn encode(samples: &[f32], protection: Protection) -> Result<Vec<Frame>> {
    let config = EncoderConfig {
        packet_loss_pct: match protection {
            Protection::Copies => 0,
            Protection::Fec => 5,
        },
        ..EncoderConfig::default()
    };
    let mut sender = Sender::new(1, config, 1_000, 48_000)?;
    let mut frames = Vec::new();
    for pcm in samples.chunks_exact(FrameDuration::Ms20.samples()) {
        if let Some(mut frame) = sender.encode(pcm)? {
            // The node marks a frame whose copy follows.
            let copied = protection == Protection::Copies;
            frame.flags = frame.flags.set(Flags::COPIED, copied);
            frames.push(frame);
        }
    }
    Ok(frames)
}

fn percentile(values: &mut [u32], q: f64) -> u32 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// The `playout` scenario.
pub fn playout(ctx: &Ctx) -> Result<Vec<Table>> {
    let reference = pair::speech_reference(ctx).map_err(|e| anyhow::anyhow!(e))?;
    let len = reference.len();
    let frame = FrameDuration::Ms20.samples();
    let total = (REPEATS + 1) * len;
    let mut samples: Vec<f32> = reference.iter().copied().cycle().take(total).collect();
    samples.resize(total.div_ceil(frame) * frame, 0.0);
    let mut table = Table::new(
        format!(
            "Playout over a modelled QUIC path (20 ms frames, 32 kbps, {SEEDS} loss patterns \
             × {REPEATS} repetitions)"
        ),
        &[
            "scenario",
            "protection",
            "delivery",
            "PESQ-WB mean",
            "PESQ-WB p10",
            "PESQ-WB min",
            "concealed %",
            "lost %",
            "late",
            "skipped",
            "held",
            "jb target p50 ms",
            "jb target p95 ms",
        ],
    );
    for (label, link) in pair::relay_scenarios() {
        if !ctx.wants(label) {
            continue;
        }
        let rows = [
            (Protection::Copies, Delivery::Lanes),
            (Protection::Fec, Delivery::Lanes),
            (Protection::Copies, Delivery::StreamPerFrame),
        ];
        for (protection, delivery) in rows {
            eprintln!(
                "[playout] {label}, {}, {} ...",
                protection.label(),
                delivery.label()
            );
            let frames = encode(&samples, protection)?;
            let dir = ctx.run_dir(&format!(
                "playout {label} {} {}",
                protection.label(),
                delivery.label()
            ))?;
            let mut scorer = Scorer::new(&dir.join("pesq"), &reference)?;
            let (mut concealed, mut skipped, mut stretched, mut late, mut lost, mut pulls) =
                (0, 0, 0, 0, 0, 0);
            let mut targets = Vec::new();
            for seed in 0..SEEDS {
                let r = run(
                    &frames,
                    protection,
                    delivery,
                    &link,
                    ctx.seed.wrapping_add(seed),
                )?;
                concealed += r.concealed;
                skipped += r.skipped;
                stretched += r.stretched;
                late += r.late;
                lost += r.lost;
                pulls += r.pulls;
                targets.extend_from_slice(&r.targets_ms);
                for k in 1..=REPEATS {
                    let Some(at) = pair::align(&reference, &r.heard, (k * len) as i64) else {
                        continue;
                    };
                    let mut cut: Vec<f32> = r.heard.iter().skip(at).take(len).copied().collect();
                    cut.resize(len, 0.0);
                    scorer.add(&cut)?;
                }
            }
            let mut scores: Vec<f64> = scorer.scores()?.into_iter().flatten().collect();
            scores.sort_by(f64::total_cmp);
            let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
            let p10 = scores
                .get((scores.len().saturating_sub(1)) / 10)
                .copied()
                .unwrap_or(0.0);
            let pct = |x: u64| 100.0 * x as f64 / pulls.max(1) as f64;
            table.row(vec![
                label.to_string(),
                protection.label().to_string(),
                delivery.label().to_string(),
                f(mean, 2),
                f(p10, 2),
                f(scores.first().copied().unwrap_or(0.0), 2),
                f(pct(concealed), 2),
                f(pct(lost), 2),
                late.to_string(),
                skipped.to_string(),
                stretched.to_string(),
                percentile(&mut targets, 0.5).to_string(),
                percentile(&mut targets, 0.95).to_string(),
            ]);
            if !ctx.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    table.note(
        "Each cell is over every loss pattern and repetition; `late` counts frames that came \
         after their slot (the speaker's copy of a played frame included), `held` the pulls \
         that held the playout to grow the delay, `skipped` the frames dropped to shrink it. \
         `a stream per frame` is not built: it shows what a transport without head-of-line \
         blocking would give with this jitter buffer.",
    );
    Ok(vec![table])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMES: usize = 200;

    fn path(loss: f64) -> LinkConfig {
        LinkConfig {
            delay_us: 30_000,
            loss,
            ..LinkConfig::default()
        }
    }

    /// When each frame is first handed over.
    fn first(delivered: &[(u64, usize)]) -> Vec<Option<u64>> {
        let mut at = vec![None; FRAMES];
        for &(t, f) in delivered {
            at[f] = Some(at[f].unwrap_or(t));
        }
        at
    }

    #[test]
    fn a_clean_path_hands_every_frame_over_after_its_delay() {
        let at = first(&deliveries(
            &[100; FRAMES],
            Protection::Fec,
            Delivery::Lanes,
            &path(0.0),
            1,
        ));
        for (n, t) in at.iter().enumerate() {
            assert_eq!(*t, Some(n as u64 * 20_000 + 30_000), "frame {n}");
        }
    }

    #[test]
    fn a_lost_datagram_is_resent_and_holds_back_only_its_lane() {
        // 10 % loss, seeded: every frame still comes (QUIC resends), the ones whose datagram
        // was lost at least a round trip late, and a frame on another lane is not held back.
        let delivered = deliveries(
            &[100; FRAMES],
            Protection::Fec,
            Delivery::Lanes,
            &path(0.10),
            3,
        );
        let at = first(&delivered);
        let late: Vec<usize> = (0..FRAMES)
            .filter(|&n| at[n].is_some_and(|t| t > n as u64 * 20_000 + 30_000))
            .collect();
        assert!(at.iter().all(Option::is_some), "every frame is handed over");
        assert!(!late.is_empty() && late.len() < FRAMES / 2, "{late:?}");
        let resent = late
            .iter()
            .filter(|&&n| at[n].is_some_and(|t| t >= n as u64 * 20_000 + 30_000 + 60_000))
            .count();
        assert!(resent > 0, "some frames waited a round trip: {late:?}");
        // The frame after a late one (another lane) came on time at least once.
        assert!(
            late.iter()
                .any(|&n| n + 1 < FRAMES && at[n + 1] == Some((n as u64 + 1) * 20_000 + 30_000)),
            "{late:?}"
        );
    }

    #[test]
    fn a_stream_per_frame_hands_a_frame_over_no_later_than_ordered_lanes() {
        // Same seed, so the same datagrams are lost and resent in both: only the waiting for
        // an earlier frame on the same lane differs.
        let loss = path(0.30);
        let lanes = first(&deliveries(
            &[100; FRAMES],
            Protection::Fec,
            Delivery::Lanes,
            &loss,
            5,
        ));
        let own = first(&deliveries(
            &[100; FRAMES],
            Protection::Fec,
            Delivery::StreamPerFrame,
            &loss,
            5,
        ));
        assert!(
            own.iter().all(Option::is_some),
            "every frame is handed over"
        );
        for n in 0..FRAMES {
            assert!(
                own[n] <= lanes[n],
                "frame {n}: {:?} > {:?}",
                own[n],
                lanes[n]
            );
        }
        let sooner = (0..FRAMES).filter(|&n| own[n] < lanes[n]).count();
        assert!(sooner > 0, "at 30 % loss some frame waited for its lane");
    }

    #[test]
    fn copies_come_with_the_next_frame() {
        let delivered = deliveries(
            &[100; FRAMES],
            Protection::Copies,
            Delivery::Lanes,
            &path(0.0),
            1,
        );
        // Every frame but the last twice: once on its own, once with the next frame.
        assert_eq!(delivered.len(), 2 * FRAMES - 1);
        for n in 0..FRAMES - 1 {
            let times: Vec<u64> = delivered
                .iter()
                .filter(|&&(_, f)| f == n)
                .map(|&(t, _)| t)
                .collect();
            let own = n as u64 * 20_000 + 30_000;
            assert_eq!(times, vec![own, own + 20_000], "frame {n}");
        }
    }
}
