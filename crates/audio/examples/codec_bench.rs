//! CPU cost of Opus encode + decode per stream, as a real-time factor.
//!
//! ```text
//! cargo run --release -p ruang-audio --example codec_bench
//! ```
//!
//! Encodes and decodes 60 s of the synthetic voice per setting (every complexity, FEC on and
//! off, 24 kbps, 10 ms frames) and reports the CPU time per frame (the thread's own CPU time,
//! so other load on the machine does not count) and how many times faster than real time one
//! stream runs on one core (target: one 20 ms frame encoded and decoded in ≤ 0.2 ms, i.e.
//! ≥ 100×).

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

use ruang_audio::FrameDuration;
use ruang_audio::codec::{Bandwidth, Decoder, Encoder, EncoderConfig};
use ruang_audio::source::{Source, VoiceSource};

const SECONDS: usize = 60;

fn main() {
    println!("Opus encode + decode, one mono stream, {SECONDS} s of synthetic voice per row");
    println!(
        "{:>6} {:>4} {:>8} {:>10} {:>11} {:>11} {:>11} {:>9} {:>8}",
        "frame",
        "fec",
        "kbps",
        "complexity",
        "enc µs/fr",
        "dec µs/fr",
        "total µs/fr",
        "× real",
        "corr"
    );
    let ms20 = FrameDuration::Ms20;
    let mut rows = vec![];
    for complexity in 0..=10 {
        rows.push((ms20, 32_000, complexity, true, Bandwidth::Fullband));
    }
    rows.push((ms20, 32_000, 5, false, Bandwidth::Fullband));
    rows.push((ms20, 24_000, 5, true, Bandwidth::Fullband));
    rows.push((FrameDuration::Ms10, 32_000, 5, true, Bandwidth::Fullband));
    for complexity in [1, 5, 9] {
        rows.push((ms20, 32_000, complexity, true, Bandwidth::Wideband));
    }
    for (frame, bitrate, complexity, fec, max_bandwidth) in rows {
        let frames = SECONDS * 1000 / frame.as_millis() as usize;
        let mut voice = VoiceSource::new(1, frame);
        let pcm: Vec<Vec<f32>> = (0..frames)
            .map(|_| {
                let mut f = vec![0.0; frame.samples()];
                voice.next_frame(&mut f).unwrap();
                f
            })
            .collect();
        let config = EncoderConfig {
            frame,
            bitrate_bps: bitrate,
            complexity,
            fec,
            max_bandwidth,
            ..EncoderConfig::default()
        };
        let mut enc = Encoder::new(config).unwrap();
        let mut dec = Decoder::new(frame).unwrap();
        let mut packet = vec![0u8; ruang_audio::codec::MAX_PACKET_LEN];
        let mut packets = Vec::with_capacity(frames);

        let t = CpuTimer::start();
        for f in &pcm {
            let n = enc.encode_into(f, &mut packet).unwrap();
            packets.push(packet[..n].to_vec());
        }
        let enc_s = t.seconds();
        let mut out = Vec::with_capacity(frames * frame.samples());
        let t = CpuTimer::start();
        for p in &packets {
            out.extend_from_slice(dec.decode(p).unwrap());
        }
        let dec_s = t.seconds();
        let input: Vec<f32> = pcm.concat();
        // Quality: waveform correlation at the best lag around the codec delay.
        let quality = (290..330)
            .map(|lag| correlation(&input, &out[lag..]))
            .fold(f64::MIN, f64::max);

        let per = |s: f64| s / frames as f64 * 1e6;
        let bytes: usize = packets.iter().map(Vec::len).sum();
        let mode = dominant_mode(&packets);
        let kbps = bytes as f64 * 8.0 / SECONDS as f64 / 1000.0;
        println!(
            "{:>6} {:>4} {:>8.1} {:>10} {:>11.1} {:>11.1} {:>11.1} {:>8.0}× {:>8.4}  {}",
            frame.to_string(),
            if fec { "on" } else { "off" },
            kbps,
            complexity,
            per(enc_s),
            per(dec_s),
            per(enc_s + dec_s),
            SECONDS as f64 / (enc_s + dec_s),
            quality,
            mode
        );
    }
}

/// Pearson correlation over the common length.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

/// The most common Opus mode and bandwidth among `packets` (from the TOC byte, RFC 6716 §3.1).
fn dominant_mode(packets: &[Vec<u8>]) -> &'static str {
    let mut counts = [0usize; 32];
    for p in packets {
        counts[(p[0] >> 3) as usize] += 1;
    }
    let config = (0..32).max_by_key(|&c| counts[c]).unwrap_or(0);
    match config {
        0..=3 => "SILK NB",
        4..=7 => "SILK MB",
        8..=11 => "SILK WB",
        12..=13 => "Hybrid SWB",
        14..=15 => "Hybrid FB",
        16..=19 => "CELT NB",
        20..=23 => "CELT WB",
        24..=27 => "CELT SWB",
        _ => "CELT FB",
    }
}
