//! `codec`: Opus settings chosen by measurement. Spoken sentences ([`speech::reference`]) go
//! through ruang-audio's encoder and decoder in this process, with the losses of the impaired
//! paths applied to the packets (repaired the way the listener's playout does: the next
//! packet's in-band FEC copy when it arrived, concealment otherwise), and the result is scored
//! with PESQ-WB. The network adds nothing on a clean path (the `latency` scenario's recordings
//! show it), so these tables are what a listener hears, minus jitter-buffer effects.
//!
//! Tables: settings × bitrate on a clean path (with the encoder's and decoder's CPU per
//! frame), protection (in-band FEC and its loss hint) × loss pattern, frame duration, audio
//! bandwidth, and voice processing (echo cancellation, noise suppression, gain control).

use anyhow::Result;
use rand::{RngExt, SeedableRng};
use ruang_audio::FrameDuration;
use ruang_audio::codec::{Application, Bandwidth, Decoder, Encoder, EncoderConfig};
use ruang_audio::voice::{VoiceConfig, VoiceProcessor};
use ruang_bench::speech::{self, Scorer};
use ruang_bench::table::{Table, f, opt};
use ruang_testkit::impair::GilbertElliott;

use crate::Ctx;

/// Bitrates the issue asks about, bps.
const BITRATES: [u32; 4] = [16_000, 24_000, 32_000, 48_000];

/// Loss patterns drawn per lossy cell; its score is their mean.
pub(crate) const PATTERNS: u64 = 4;

/// CPU time of the calling thread, ns (Linux `schedstat`): other load does not count.
pub(crate) fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Which packets a path loses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Loss {
    None,
    Random(f64),
    Bursty(f64, f64),
}

impl Loss {
    pub(crate) fn label(self) -> String {
        match self {
            Loss::None => "clean".into(),
            Loss::Random(p) => format!("{:.0}% random", p * 100.0),
            Loss::Bursty(p, b) => format!("{:.0}% bursty (mean {b:.0})", p * 100.0),
        }
    }

    /// One pattern of `frames` frames (true = lost), from `seed`.
    pub(crate) fn pattern(self, frames: usize, seed: u64) -> Vec<bool> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        match self {
            Loss::None => vec![false; frames],
            Loss::Random(p) => (0..frames).map(|_| rng.random::<f64>() < p).collect(),
            Loss::Bursty(p, burst) => {
                let ge = GilbertElliott::bursts(p, burst);
                let mut bad = false;
                (0..frames)
                    .map(|_| {
                        let lost = bad;
                        let flip = rng.random::<f64>();
                        bad = if bad { flip >= ge.r } else { flip < ge.p };
                        lost
                    })
                    .collect()
            }
        }
    }
}

/// What one pass through the codec gave.
struct Pass {
    /// The decoded signal, aligned with the input.
    heard: Vec<f32>,
    /// Encoder CPU per frame, µs.
    enc_us: f64,
    /// Decoder CPU per frame, µs.
    dec_us: f64,
    /// Mean bitrate of the packets, kbps.
    kbps: f64,
    /// The encoder's algorithmic delay beyond the frame, in samples at 48 kHz.
    lookahead: usize,
}

/// Encodes `input`, drops the packets `lost` marks, and decodes the rest as the listener does.
fn transcode(input: &[f32], config: EncoderConfig, lost: &[bool]) -> Result<Pass> {
    let mut enc = Encoder::new(config)?;
    let mut dec = Decoder::new(config.frame)?;
    let n = enc.frame_samples();
    let lookahead = enc.lookahead();
    let mut padded = input.to_vec();
    padded.resize((input.len() + lookahead).div_ceil(n) * n, 0.0);
    let frames = padded.len() / n;
    let t = thread_cpu_ns();
    let packets: Vec<Vec<u8>> = padded
        .chunks(n)
        .map(|pcm| enc.encode(pcm))
        .collect::<Result<_, _>>()?;
    let enc_ns = thread_cpu_ns().saturating_sub(t);
    let bytes: usize = packets.iter().map(Vec::len).sum();
    let t = thread_cpu_ns();
    let mut heard = Vec::with_capacity(padded.len());
    for i in 0..frames {
        let gone = lost.get(i).copied().unwrap_or(false);
        let pcm = if !gone {
            dec.decode(&packets[i])?
        } else if config.fec && i + 1 < frames && !lost.get(i + 1).copied().unwrap_or(false) {
            dec.decode_fec(&packets[i + 1])?
        } else {
            dec.conceal()?
        };
        heard.extend_from_slice(pcm);
    }
    let dec_ns = thread_cpu_ns().saturating_sub(t);
    heard.drain(..lookahead.min(heard.len()));
    heard.resize(input.len(), 0.0);
    let seconds = frames as f64 * config.frame.as_millis() as f64 / 1000.0;
    Ok(Pass {
        heard,
        enc_us: enc_ns as f64 / 1000.0 / frames as f64,
        dec_us: dec_ns as f64 / 1000.0 / frames as f64,
        kbps: bytes as f64 * 8.0 / 1000.0 / seconds,
        lookahead,
    })
}

/// Mean of the scores at `idx` (cells PESQ could not score are left out).
pub(crate) fn mean_of(scores: &[Option<f64>], idx: &[usize]) -> Option<f64> {
    let v: Vec<f64> = idx.iter().filter_map(|&i| scores[i]).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn vbr_label(c: &EncoderConfig) -> &'static str {
    match (c.vbr, c.constrained_vbr) {
        (false, _) => "CBR",
        (true, true) => "CVBR",
        (true, false) => "VBR",
    }
}

/// Runs a microphone signal through a [`VoiceProcessor`] in 20 ms frames with `far` played
/// alongside; returns the output and the CPU per frame, µs.
fn process_voice(config: VoiceConfig, far: &[f32], mic: &[f32]) -> (Vec<f32>, f64) {
    let mut p = VoiceProcessor::new(config);
    p.set_delay_ms(0);
    let n = 960;
    let mut out = Vec::with_capacity(mic.len());
    let t = thread_cpu_ns();
    for (i, chunk) in mic.chunks_exact(n).enumerate() {
        if let Some(played) = far.get(i * n..(i + 1) * n) {
            p.render(played);
        }
        let mut frame = chunk.to_vec();
        p.capture(&mut frame);
        out.extend_from_slice(&frame);
    }
    let frames = (mic.len() / n).max(1) as f64;
    let us = thread_cpu_ns().saturating_sub(t) as f64 / 1000.0 / frames;
    out.resize(mic.len(), 0.0);
    (out, us)
}

/// Voice processing: what echo cancellation and noise suppression do to speech a microphone
/// picks up with the room's echo or with noise, by PESQ-WB, and what they cost.
fn voice_processing(reference: &[f32], scorer: &mut Scorer) -> Result<Table> {
    // The far end: the same sentences, shifted by 3.1 s so the two talkers differ.
    let shift = 3 * 48_000 + 4_800;
    let far: Vec<f32> = reference
        .iter()
        .cycle()
        .skip(shift)
        .take(reference.len())
        .copied()
        .collect();
    // Loudspeaker → microphone: 40 ms, −6 dB, two reflections.
    let mut echo = vec![0.0f32; far.len()];
    for (ms, gain) in [(40usize, 0.5f32), (46, 0.2), (55, 0.08)] {
        let d = ms * 48;
        for i in d..far.len() {
            echo[i] += far[i - d] * gain;
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let speech_rms = (reference.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>()
        / reference.len() as f64)
        .sqrt() as f32;
    let hiss: Vec<f32> = (0..reference.len())
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0) * speech_rms * 0.55
        })
        .collect();
    let silent = vec![0.0f32; reference.len()];
    let with_echo: Vec<f32> = reference.iter().zip(&echo).map(|(s, e)| s + e).collect();
    let with_noise: Vec<f32> = reference.iter().zip(&hiss).map(|(s, n)| s + n).collect();
    let aec = VoiceConfig {
        echo_cancellation: true,
        noise_suppression: false,
        gain_control: false,
    };
    let ns = VoiceConfig {
        echo_cancellation: false,
        noise_suppression: true,
        gain_control: false,
    };
    let rows: Vec<(&str, VoiceConfig, &[f32], &[f32])> = vec![
        (
            "speech + echo of the room",
            VoiceConfig::off(),
            &far,
            &with_echo,
        ),
        ("speech + echo of the room", aec, &far, &with_echo),
        (
            "speech + echo of the room",
            VoiceConfig::microphone(),
            &far,
            &with_echo,
        ),
        (
            "speech + white noise (10 dB SNR)",
            VoiceConfig::off(),
            &silent,
            &with_noise,
        ),
        ("speech + white noise (10 dB SNR)", ns, &silent, &with_noise),
        (
            "speech + white noise (10 dB SNR)",
            VoiceConfig::microphone(),
            &silent,
            &with_noise,
        ),
        (
            "clean speech",
            VoiceConfig::microphone(),
            &silent,
            reference,
        ),
    ];
    let mut erle_notes: Vec<String> = Vec::new();
    let mut queued = Vec::new();
    for (label, config, far, mic) in rows {
        let (out, us) = process_voice(config, far, mic);
        queued.push((label, config, scorer.add(&out)?, us));
    }
    let mut scores = scorer.scores()?;
    // Turn-taking: the far end talks (its echo alone reaches the microphone), then the near
    // end (alone). Scored against [silence, speech]: echo left in the first half costs.
    let len = reference.len();
    let far_first: Vec<f32> = far.iter().copied().chain(silent.iter().copied()).collect();
    let mut turns: Vec<f32> = echo
        .iter()
        .copied()
        .chain(reference.iter().copied())
        .collect();
    turns.truncate(2 * len);
    let expected: Vec<f32> = silent.iter().chain(reference).copied().collect();
    let mut turn_scorer = Scorer::new(&scorer.work().join("turns"), &expected)?;
    let mut turn_rows = Vec::new();
    for config in [VoiceConfig::off(), aec, VoiceConfig::microphone()] {
        let (out, us) = process_voice(config, &far_first, &turns);
        let leak = 10.0
            * (turns[len / 4..len]
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                / out[len / 4..len]
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .max(1e-12))
            .log10();
        turn_rows.push((config, turn_scorer.add(&out)?, us, leak));
    }
    let turn_scores = turn_scorer.scores()?;
    let offset = scores.len();
    scores.extend(turn_scores);
    for (config, i, us, leak) in turn_rows {
        queued.push(("far end, then near end (turns)", config, offset + i, us));
        erle_notes.push(format!("{:.1}", leak));
    }
    let mut t = Table::new(
        "Voice processing: PESQ-WB of a microphone's speech (processing only, no codec)",
        &[
            "microphone hears",
            "processing",
            "PESQ-WB",
            "CPU µs per 20 ms frame",
            "% of a core",
        ],
    );
    for (label, config, i, us) in queued {
        let what = match (
            config.echo_cancellation,
            config.noise_suppression,
            config.gain_control,
        ) {
            (false, false, false) => "none".to_string(),
            (true, true, true) => "all (the microphone default)".to_string(),
            (a, n, g) => [
                (a, "echo cancellation"),
                (n, "noise suppression"),
                (g, "gain control"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(" + "),
        };
        t.row(vec![
            label.to_string(),
            what,
            opt(scores[i], 2),
            f(us, 1),
            f(us / 20_000.0 * 100.0, 2),
        ]);
    }
    t.note(
        "The far end is the same sentences 3.1 s later, played and picked up again over 40 ms \
         at −6 dB with two reflections; the near-end speech is scored against itself (the \
         PESQ reference). White noise 10 dB under the speech's mean power. CPU: this thread's \
         own time, 48 kHz mono, 10 ms blocks.",
    );
    t.note(format!(
        "Turns: the far end talks for {:.1} s (only its echo reaches the microphone), then the \
         near end alone; scored against silence then the speech. Echo removed while the far end \
         talks (from its first quarter on), none / echo cancellation / all: {} dB.",
        len as f64 / 48_000.0,
        erle_notes.join(" / ")
    ));
    Ok(t)
}

/// The `codec` scenario.
pub fn codec(ctx: &Ctx) -> Result<Vec<Table>> {
    let dir = ctx.run_dir("codec")?;
    let reference = speech::reference(&dir)?;
    eprintln!(
        "[codec] reference: {:.1} s of speech",
        reference.len() as f64 / 48_000.0
    );
    let mut scorer = Scorer::new(&dir.join("pesq"), &reference)?;
    let clean = vec![false; reference.len() / 480 + 2];
    let mut tables = Vec::new();

    // 1. Settings × bitrate, clean path, no FEC.
    let mut rows = Vec::new();
    for application in [Application::Voip, Application::Audio] {
        for (vbr, constrained) in [(true, false), (true, true), (false, false)] {
            for complexity in [0u8, 3, 5, 8, 10] {
                let label = format!("{application:?} / {complexity}");
                if !ctx.wants(&label) {
                    continue;
                }
                let mut cells = Vec::new();
                let mut cpu = (0.0, 0.0);
                for bitrate_bps in BITRATES {
                    let config = EncoderConfig {
                        bitrate_bps,
                        vbr,
                        constrained_vbr: constrained,
                        fec: false,
                        packet_loss_pct: 0,
                        complexity,
                        application,
                        ..EncoderConfig::default()
                    };
                    let pass = transcode(&reference, config, &clean)?;
                    if bitrate_bps == 32_000 {
                        cpu = (pass.enc_us, pass.dec_us);
                    }
                    cells.push(scorer.add(&pass.heard)?);
                }
                rows.push((
                    application,
                    vbr_label(&EncoderConfig {
                        vbr,
                        constrained_vbr: constrained,
                        ..EncoderConfig::default()
                    }),
                    complexity,
                    cells,
                    cpu,
                ));
            }
        }
    }
    let scores = scorer.scores()?;
    let mut t = Table::new(
        "Opus settings on a clean path: PESQ-WB by bitrate (20 ms frames, no FEC)",
        &[
            "application",
            "rate control",
            "complexity",
            "16 kbps",
            "24 kbps",
            "32 kbps",
            "48 kbps",
            "encode µs/frame (32k)",
            "decode µs/frame (32k)",
        ],
    );
    for (application, vbr, complexity, cells, (enc, dec)) in rows {
        let mut r = vec![
            format!("{application:?}"),
            vbr.to_string(),
            complexity.to_string(),
        ];
        r.extend(cells.iter().map(|&i| opt(scores[i], 2)));
        r.push(f(enc, 1));
        r.push(f(dec, 1));
        t.row(r);
    }
    t.note(format!(
        "Speech: {:.1} s of Harvard sentences from espeak-ng (two voices), −26 dBov; PESQ \
         P.862.2 wideband through scripts/pesq_score.py. CPU: this thread's own time.",
        reference.len() as f64 / 48_000.0
    ));
    tables.push(t);

    // 2. Protection under loss, with the default settings otherwise.
    let losses = [
        Loss::None,
        Loss::Random(0.02),
        Loss::Random(0.05),
        Loss::Random(0.10),
        Loss::Bursty(0.02, 3.0),
    ];
    let frames = reference.len() / 960 + 2;
    let mut rows = Vec::new();
    for bitrate_bps in [16_000, 32_000] {
        for (fec, hint) in [(false, 0u8), (true, 0), (true, 5), (true, 10), (true, 20)] {
            let label = format!(
                "{} kbps, FEC {}",
                bitrate_bps / 1000,
                if fec { "on" } else { "off" }
            );
            if !ctx.wants(&label) {
                continue;
            }
            let config = EncoderConfig {
                bitrate_bps,
                fec,
                packet_loss_pct: hint,
                ..EncoderConfig::default()
            };
            let mut cells = Vec::new();
            let mut kbps = 0.0;
            for loss in losses {
                let seeds = if matches!(loss, Loss::None) {
                    1
                } else {
                    PATTERNS
                };
                let mut idx = Vec::new();
                for s in 0..seeds {
                    let pattern = loss.pattern(frames, ctx.seed ^ (s * 7919 + 1));
                    let pass = transcode(&reference, config, &pattern)?;
                    kbps = pass.kbps;
                    idx.push(scorer.add(&pass.heard)?);
                }
                cells.push(idx);
            }
            rows.push((bitrate_bps, fec, hint, kbps, cells));
        }
    }
    let scores = scorer.scores()?;
    let mut header = vec!["bitrate", "FEC", "loss hint %", "kbps sent"];
    let labels: Vec<String> = losses.iter().map(|l| l.label()).collect();
    header.extend(labels.iter().map(String::as_str));
    let mut t = Table::new(
        "Protection: PESQ-WB under loss by in-band FEC and its loss hint (20 ms frames)",
        &header,
    );
    for (bitrate, fec, hint, kbps, cells) in rows {
        let mut r = vec![
            format!("{} kbps", bitrate / 1000),
            if fec { "on" } else { "off" }.to_string(),
            hint.to_string(),
            f(kbps, 1),
        ];
        r.extend(cells.iter().map(|idx| opt(mean_of(&scores, idx), 2)));
        t.row(r);
    }
    let d = EncoderConfig::default();
    t.note(format!(
        "Other settings: the defaults ({:?}, {}, complexity {}). A lost packet is rebuilt \
         from the next packet's FEC copy when that one arrived, else concealed. Lossy \
         cells: mean of {PATTERNS} patterns (seed {}).",
        d.application,
        vbr_label(&d),
        d.complexity,
        ctx.seed
    ));
    tables.push(t);

    // 3. Frame duration, and the low-delay mode a latency-bound room might trade for.
    let mut t = Table::new(
        "Frame duration and application: PESQ-WB at 32 kbps (defaults otherwise)",
        &[
            "frame",
            "application, max bandwidth",
            "delay beyond the frame ms",
            "clean",
            "5% random",
            "encode µs/frame",
            "decode µs/frame",
        ],
    );
    let mut rows = Vec::new();
    for frame in [FrameDuration::Ms10, FrameDuration::Ms20] {
        for (application, max_bandwidth) in [
            (Application::Voip, Bandwidth::Fullband),
            (Application::LowDelay, Bandwidth::Fullband),
            (Application::LowDelay, Bandwidth::Wideband),
        ] {
            let config = EncoderConfig {
                frame,
                application,
                max_bandwidth,
                ..EncoderConfig::default()
            };
            let n = reference.len() / frame.samples() + 2;
            let pass = transcode(&reference, config, &vec![false; n])?;
            let clean = scorer.add(&pass.heard)?;
            let mut lossy = Vec::new();
            for s in 0..PATTERNS {
                let pattern = Loss::Random(0.05).pattern(n, ctx.seed ^ (s * 7919 + 1));
                lossy.push(scorer.add(&transcode(&reference, config, &pattern)?.heard)?);
            }
            rows.push((frame, application, max_bandwidth, pass, clean, lossy));
        }
    }
    let scores = scorer.scores()?;
    for (frame, application, max_bandwidth, pass, clean, lossy) in rows {
        t.row(vec![
            format!("{} ms", frame.as_millis()),
            format!("{application:?}, {max_bandwidth:?}"),
            f(pass.lookahead as f64 / 48.0, 1),
            opt(scores[clean], 2),
            opt(mean_of(&scores, &lossy), 2),
            f(pass.enc_us, 1),
            f(pass.dec_us, 1),
        ]);
    }
    t.note(
        "LowDelay is Opus's CELT-only mode: no SILK layer, so no in-band FEC (a lost frame is \
         concealed), and 4 ms less look-ahead.",
    );
    tables.push(t);

    // 4. Audio bandwidth: PESQ-WB hears nothing above 8 kHz, so it cannot choose this one.
    let mut t = Table::new(
        "Audio bandwidth: PESQ-WB at 32 kbps, clean (defaults otherwise)",
        &["max bandwidth", "PESQ-WB", "kbps sent", "encode µs/frame"],
    );
    let mut rows = Vec::new();
    for max_bandwidth in [
        Bandwidth::Wideband,
        Bandwidth::SuperWideband,
        Bandwidth::Fullband,
    ] {
        let config = EncoderConfig {
            max_bandwidth,
            ..EncoderConfig::default()
        };
        let pass = transcode(&reference, config, &clean)?;
        rows.push((
            max_bandwidth,
            scorer.add(&pass.heard)?,
            pass.kbps,
            pass.enc_us,
        ));
    }
    let scores = scorer.scores()?;
    for (bw, i, kbps, enc) in rows {
        t.row(vec![
            format!("{bw:?}"),
            opt(scores[i], 2),
            f(kbps, 1),
            f(enc, 1),
        ]);
    }
    t.note(
        "PESQ P.862.2 scores 50–7,000 Hz: bits spent above 8 kHz (super-wideband, fullband) \
         cost it and it does not hear what they buy. The bandwidth is therefore not chosen by \
         this metric.",
    );
    tables.push(t);
    tables.push(voice_processing(&reference, &mut scorer)?);
    if !ctx.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(tables)
}
