//! CPU cost of the receive side for a room of 10 speakers: jitter buffer + Opus decode +
//! level/VAD + mixer, as a percentage of one core at real time.
//!
//! ```text
//! cargo run --release -p ruang-audio --example mix_bench
//! ```
//!
//! The packets (10 different voices, 32 kbps, FEC; once full band, once limited to wideband,
//! which keeps Opus in its cheaper SILK layer) are encoded before timing starts. Frames
//! arrive with 0–20 ms of seeded jitter and 2 % loss, so reordering, FEC and concealment are
//! exercised. The timed loop does per 20 ms tick what a node does: push the frames that
//! arrived, pull one frame per speaker, mix. A second run leaves Opus out (buffer + mixer on
//! PCM decoded in advance) to show what the pipeline itself costs.

use std::time::Instant;

/// CPU time of the calling thread in seconds (Linux `schedstat`), or wall time elsewhere, so
/// the figures do not depend on what else the machine runs.
struct CpuTimer(Option<u64>, Instant);

impl CpuTimer {
    fn start() -> CpuTimer {
        CpuTimer(thread_cpu_ns(), Instant::now())
    }
    fn seconds(&self) -> f64 {
        match (self.0, thread_cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => self.1.elapsed().as_secs_f64(),
        }
    }
}

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruang_audio::FrameDuration;
use ruang_audio::codec::{Bandwidth, Decoder, Encoder, EncoderConfig};
use ruang_audio::jitter::{self, Buffer, Playout, SpeakerStream};
use ruang_audio::level::Vad;
use ruang_audio::mixer::Mixer;
use ruang_audio::source::{Source, VoiceSource};
use ruang_audio::wire::{Flags, Frame};

const SPEAKERS: usize = 10;
const SECONDS: u64 = 60;
const FRAME: FrameDuration = FrameDuration::Ms20;

fn main() {
    println!("{SPEAKERS} speakers, {SECONDS} s of audio, 20 ms frames, 0-20 ms jitter, 2 % loss");
    for bandwidth in [Bandwidth::Fullband, Bandwidth::Wideband] {
        run(bandwidth);
    }
}

fn run(max_bandwidth: Bandwidth) {
    let frames = (SECONDS * 1000 / FRAME.as_millis()) as usize;
    let frame_us = FRAME.as_micros();
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    // Prepare: every speaker's packets and their arrival times (sorted per tick).
    let mut arrivals: Vec<Vec<(u64, usize, Frame)>> = vec![Vec::new(); frames + 10];
    let mut decoded: Vec<Vec<Vec<f32>>> = Vec::new();
    for s in 0..SPEAKERS {
        let mut voice = VoiceSource::new(100 + s as u64, FRAME);
        let mut enc = Encoder::new(EncoderConfig {
            max_bandwidth,
            ..EncoderConfig::default()
        })
        .unwrap();
        let mut dec = Decoder::new(FRAME).unwrap();
        let mut pcm = vec![0.0; FRAME.samples()];
        let mut own = Vec::with_capacity(frames);
        for i in 0..frames {
            voice.next_frame(&mut pcm).unwrap();
            let payload = enc.encode(&pcm).unwrap();
            own.push(dec.decode(&payload).unwrap().to_vec());
            if rng.random_bool(0.02) {
                continue;
            }
            let jitter = rng.random_range(0..20_000u64);
            let t = 1_000_000 + i as u64 * frame_us + 2_000 + jitter;
            let f = Frame {
                speaker: s as u64,
                seq: i as u32,
                timestamp: (i * FRAME.samples()) as u32,
                level: 30,
                flags: Flags::VOICE | Flags::FEC,
                payload,
            };
            let tick = ((t - 1_000_000) / frame_us) as usize;
            arrivals[tick + 1].push((t, s, f));
        }
        decoded.push(own);
    }

    // Full receive path: SpeakerStream (buffer + decoder + VAD) per speaker, then the mixer.
    let mut streams: Vec<SpeakerStream> = (0..SPEAKERS)
        .map(|_| SpeakerStream::new(jitter::Config::new(FRAME)).unwrap())
        .collect();
    let mut mixer = Mixer::new(FRAME);
    let mut out = vec![0.0; FRAME.samples()];
    let mut pulled: Vec<Vec<f32>> = vec![vec![0.0; FRAME.samples()]; SPEAKERS];
    let mut talking = 0usize;
    let input = arrivals.clone();
    let t = CpuTimer::start();
    for (tick, batch) in input.into_iter().enumerate().take(frames) {
        let now = 1_000_000 + tick as u64 * frame_us;
        for (at, s, f) in batch {
            streams[s].push(f, at);
        }
        for (s, stream) in streams.iter_mut().enumerate() {
            let p = stream.pull(now);
            talking += p.activity.active as usize;
            pulled[s].copy_from_slice(p.pcm);
        }
        mixer.mix(pulled.iter().map(Vec::as_slice), &mut out);
        std::hint::black_box(&out);
    }
    let full = t.seconds();

    // The pipeline without Opus: jitter buffers, VAD and mixer on PCM decoded in advance.
    let mut buffers: Vec<Buffer> = (0..SPEAKERS)
        .map(|_| Buffer::new(jitter::Config::new(FRAME)))
        .collect();
    let mut vads: Vec<Vad> = (0..SPEAKERS).map(|_| Vad::default()).collect();
    let silence = vec![0.0; FRAME.samples()];
    let t = CpuTimer::start();
    for (tick, batch) in arrivals.into_iter().enumerate().take(frames) {
        let now = 1_000_000 + tick as u64 * frame_us;
        for (at, s, f) in batch {
            buffers[s].push(f, at);
        }
        for s in 0..SPEAKERS {
            let pcm: &[f32] = match buffers[s].pull(now) {
                Playout::Packet(f) => &decoded[s][f.seq as usize],
                _ => &silence,
            };
            talking += vads[s].update(pcm).active as usize;
            pulled[s].copy_from_slice(pcm);
        }
        mixer.mix(pulled.iter().map(Vec::as_slice), &mut out);
        std::hint::black_box(&out);
    }
    let pipeline = t.seconds();
    std::hint::black_box(talking);

    let stats = streams[0].stats();
    println!(
        "senders limited to {max_bandwidth:?}; speaker 0: {:?}",
        stats.jitter
    );
    let pct = |s: f64| s / SECONDS as f64 * 100.0;
    println!(
        "buffer + decode + VAD + mix: {:.3} s CPU = {:.2} % of one core ({:.1} µs per 20 ms tick)",
        full,
        pct(full),
        full / frames as f64 * 1e6
    );
    println!(
        "buffer + VAD + mix (no Opus): {:.3} s CPU = {:.3} % of one core ({:.1} µs per 20 ms tick)",
        pipeline,
        pct(pipeline),
        pipeline / frames as f64 * 1e6
    );
}
