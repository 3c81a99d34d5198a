//! `listener-cpu`: what one received frame costs a listener, stage by stage, with the same
//! code the node runs: the receive task's checks (rate limit, policy lookup, frame decode),
//! the push into the speaker's jitter buffer (through the playout's frame queue), and the
//! playout's pull (jitter buffer + Opus decode + voice activity) and mix. One minute of a synthetic voice,
//! encoded once with the room's settings, is pushed and pulled on a simulated clock (arrivals
//! with 0–8 ms of jitter, pulls every 20 ms). Network receive (QUIC, libp2p streams, tokio)
//! is not in here: the `cpu` scenario measures the whole listener process per frame.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{RngExt, SeedableRng};
use ruang_audio::codec::EncoderConfig;
use ruang_audio::format::FrameDuration;
use ruang_audio::jitter::{self, SpeakerStream};
use ruang_audio::mixer::Mixer;
use ruang_audio::send::Sender;
use ruang_audio::source::{Source, VoiceSource};
use ruang_audio::wire::Frame;
use ruang_bench::table::{Table, f};
use ruang_node::audio::SharedPolicy;
use ruang_node::audio::playout::frame_queue;
use ruang_node::session::AudioPolicy;
use ruang_proto::ephemeral::RateLimiter;
use ruang_proto::room::RoomId;
use ruang_proto::{Hash, Identity, PublicKey};

use crate::Ctx;

#[derive(Default)]
struct Clocks {
    limit: Duration,
    policy: Duration,
    decode: Duration,
    push: Duration,
    pull: Duration,
    mix: Duration,
}

fn encode_voice(seconds: u32, seed: u64, frame: FrameDuration) -> Result<Vec<Vec<u8>>> {
    let mut src = VoiceSource::new(seed, frame);
    let mut sender = Sender::new(
        1,
        EncoderConfig {
            frame,
            ..EncoderConfig::default()
        },
        1_000,
        0,
    )?;
    let mut pcm = vec![0.0; frame.samples()];
    let frames = seconds as usize * 1_000 / frame.as_millis() as usize;
    let mut out = Vec::with_capacity(frames);
    for _ in 0..frames {
        src.next_frame(&mut pcm)?;
        if let Some(fr) = sender.encode(&pcm)? {
            out.push(fr.encode());
        }
    }
    Ok(out)
}

/// Runs `speakers` speakers' frames through the stages; returns per-stage time per frame.
// Frame `i` of every speaker is handled in period `i`: an index reads clearer than zipped
// iterators here.
#[allow(clippy::needless_range_loop)]
fn run(speakers: usize, frame: FrameDuration, rounds: usize) -> Result<(Clocks, u64)> {
    let keys: Vec<PublicKey> = (0..speakers)
        .map(|_| Identity::generate(&mut rand::rng()).public())
        .collect();
    let wires: Vec<Vec<Vec<u8>>> = (0..speakers)
        .map(|i| encode_voice(60, 40 + i as u64, frame))
        .collect::<Result<_>>()?;
    let room = RoomId(Hash([9; 32]));
    let policy = Arc::new(SharedPolicy::new(AudioPolicy {
        room: Some(room),
        allowed: keys.iter().copied().collect::<HashSet<_>>(),
        ..AudioPolicy::default()
    }));
    let mut limiter: RateLimiter<PublicKey> = RateLimiter::new(100, 100.0, 1_024);
    let mut clocks = Clocks::default();
    let mut frames = 0u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let frame_us = frame.as_micros();
    for _ in 0..rounds {
        let (queue, mut mixing) = frame_queue(frame, policy.clone());
        let mut streams: Vec<SpeakerStream> = (0..speakers)
            .map(|_| SpeakerStream::new(jitter::Config::new(frame)))
            .collect::<Result<_, _>>()?;
        let mut mixer = Mixer::new(frame);
        let mut out = vec![0.0f32; frame.samples()];
        let mut pcm: Vec<Vec<f32>> = vec![vec![0.0; frame.samples()]; speakers];
        let n = wires.iter().map(|w| w.len()).min().unwrap_or(0);
        for i in 0..n {
            let now = i as u64 * frame_us;
            for s in 0..speakers {
                let bytes = &wires[s][i];
                let arrival = now + rng.random_range(0..8_000u64);
                let t = Instant::now();
                let _ = limiter.check(&keys[s], arrival / 1_000);
                clocks.limit += t.elapsed();
                let t = Instant::now();
                let ok = policy.load().hears(&room, &keys[s]);
                clocks.policy += t.elapsed();
                let t = Instant::now();
                let fr = Frame::decode(bytes)?;
                clocks.decode += t.elapsed();
                let t = Instant::now();
                if ok {
                    // Into the playout's queue, as the receive task does.
                    queue.send(room, keys[s], frame, fr.clone(), arrival);
                }
                clocks.push += t.elapsed();
                // The playout side pulls from its own streams (Mixing's pull is private to
                // the playout thread): the same SpeakerStream code.
                streams[s].push(fr, arrival);
                frames += 1;
            }
            // The playout thread takes the queued frames into its jitter buffers.
            let t = Instant::now();
            mixing.take_incoming();
            clocks.push += t.elapsed();
            let pull_at = now + 10_000;
            let t = Instant::now();
            for (s, stream) in streams.iter_mut().enumerate() {
                stream.pull_into(pull_at, &mut pcm[s]);
            }
            clocks.pull += t.elapsed();
            let t = Instant::now();
            mixer.mix(pcm.iter().map(|v| v.as_slice()), &mut out);
            clocks.mix += t.elapsed();
        }
    }
    Ok((clocks, frames))
}

/// Runs the scenario.
pub fn listener_cpu(ctx: &Ctx) -> Result<Vec<Table>> {
    let mut t = Table::new(
        "Per-frame CPU at a listener, by stage (this process, one thread)",
        &[
            "speakers",
            "frame ms",
            "rate limit ns",
            "policy ns",
            "frame decode ns",
            "queue + jitter push ns",
            "pull (jb + Opus decode + VAD) µs",
            "mix µs/period",
            "total µs per frame",
            "% of one core at 50 frames/s per speaker",
        ],
    );
    let rounds = ctx.rounds.max(1);
    for (speakers, frame) in [
        (1usize, FrameDuration::Ms20),
        (3, FrameDuration::Ms20),
        (1, FrameDuration::Ms10),
    ] {
        let (c, frames) = run(speakers, frame, rounds)?;
        let per = |d: Duration| d.as_secs_f64() * 1e9 / frames as f64;
        let periods = frames as f64 / speakers as f64;
        let total_ns = per(c.limit)
            + per(c.policy)
            + per(c.decode)
            + per(c.push)
            + per(c.pull)
            + c.mix.as_secs_f64() * 1e9 / periods / speakers as f64;
        let frames_per_s = 1_000.0 / frame.as_millis() as f64 * speakers as f64;
        t.row(vec![
            speakers.to_string(),
            frame.as_millis().to_string(),
            f(per(c.limit), 0),
            f(per(c.policy), 0),
            f(per(c.decode), 0),
            f(per(c.push), 0),
            f(per(c.pull) / 1e3, 2),
            f(c.mix.as_secs_f64() * 1e6 / periods, 2),
            f(total_ns / 1e3, 2),
            f(total_ns * frames_per_s / 1e9 * 100.0, 3),
        ]);
    }
    t.note(format!(
        "{rounds} × 60 s of synthetic voice per speaker, 32 kbit/s Opus with FEC. \"pull\" is per \
         frame per speaker; \"mix\" per playout period. Wall-clock per stage with Instant (adds \
         ~20–40 ns to each of the small stages). The whole listener process (QUIC, libp2p, \
         tokio, the playout thread's timing) is in the `cpu` table."
    ));
    Ok(vec![t])
}
