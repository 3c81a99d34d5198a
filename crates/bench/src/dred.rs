//! `dred`: libopus's neural tools for lost packets against the in-band FEC ruang uses, by
//! PESQ-WB on spoken sentences (built only with `--features dred`, which compiles libopus
//! with its DRED and deep-PLC models).
//!
//! Four ways to repair a lost 20 ms packet, each under the loss patterns of the `codec`
//! scenario, with the loss hint a listener's reports would set ([`loss::hint_for_loss`]):
//!
//! - **FEC, classic PLC** — what ruang does: the next packet's in-band (LBRR) copy when it
//!   arrived, libopus's classic concealment otherwise.
//! - **FEC, deep PLC** — the same, with the decoder at complexity 10, which turns on the
//!   neural concealment (PLC model + FARGAN vocoder).
//! - **DRED, deep PLC** — in-band FEC off, Deep REDundancy on (100 ms of history in every
//!   packet): a lost packet is rebuilt from the next packet's DRED data when it arrived
//!   (the same one-packet look-ahead a jitter buffer of one frame gives FEC), neural
//!   concealment otherwise.
//! - **DRED + FEC, deep PLC** — both carried; DRED first.
//!
//! The encoder and decoder are opusic-c's (the same libopus 1.6 the `opus` crate builds), at
//! ruang's settings: Voip, VBR, complexity 10, DTX off.

use anyhow::{Result, anyhow};
use opusic_c::{
    Application, Bitrate, Channels, Decoder, Encoder, InbandFec, SampleRate, dred::Dred,
};
use ruang_audio::loss;
use ruang_bench::speech::{self, Scorer};
use ruang_bench::table::{Table, f, opt};

use crate::Ctx;
use crate::codec::{Loss, PATTERNS, mean_of, thread_cpu_ns};

/// Samples in a 20 ms frame at 48 kHz.
const FRAME: usize = 960;

/// How a lost packet is repaired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repair {
    FecClassic,
    FecDeep,
    Dred,
    DredFec,
}

impl Repair {
    fn label(self) -> &'static str {
        match self {
            Repair::FecClassic => "FEC, classic PLC (ruang today)",
            Repair::FecDeep => "FEC, deep PLC",
            Repair::Dred => "DRED 100 ms, deep PLC",
            Repair::DredFec => "DRED 100 ms + FEC, deep PLC",
        }
    }

    fn fec(self) -> bool {
        matches!(self, Repair::FecClassic | Repair::FecDeep | Repair::DredFec)
    }

    fn dred(self) -> bool {
        matches!(self, Repair::Dred | Repair::DredFec)
    }

    fn deep_plc(self) -> bool {
        self != Repair::FecClassic
    }
}

fn opus<T>(what: &'static str) -> impl Fn(T) -> anyhow::Error
where
    T: std::fmt::Debug,
{
    move |e| anyhow!("opus {what}: {e:?}")
}

/// What one pass gave.
struct Pass {
    heard: Vec<f32>,
    kbps: f64,
    /// Decoder CPU per frame, µs.
    dec_us: f64,
    /// Lost packets rebuilt from DRED data.
    from_dred: usize,
    /// Lost packets rebuilt from the next packet's FEC copy.
    from_fec: usize,
}

fn transcode(
    input: &[f32],
    bitrate_bps: u32,
    repair: Repair,
    hint: u8,
    lost: &[bool],
) -> Result<Pass> {
    let mut enc = Encoder::new(Channels::Mono, SampleRate::Hz48000, Application::Voip)
        .map_err(opus("encoder"))?;
    enc.set_bitrate(Bitrate::Value(bitrate_bps))
        .map_err(opus("bitrate"))?;
    enc.set_complexity(10).map_err(opus("complexity"))?;
    enc.set_vbr(true).map_err(opus("vbr"))?;
    enc.set_inband_fec(if repair.fec() {
        InbandFec::Mode1
    } else {
        InbandFec::Off
    })
    .map_err(opus("fec"))?;
    enc.set_packet_loss(hint).map_err(opus("loss"))?;
    if repair.dred() {
        enc.set_dred_duration(10).map_err(opus("dred duration"))?;
    }
    let lookahead = enc.get_look_ahead().map_err(opus("lookahead"))? as usize;
    let mut padded = input.to_vec();
    padded.resize((input.len() + lookahead).div_ceil(FRAME) * FRAME, 0.0);
    let packets: Vec<Vec<u8>> = padded
        .chunks(FRAME)
        .map(|pcm| {
            let mut out = Vec::with_capacity(1500);
            enc.encode_float_to_vec(pcm, &mut out)
                .map(|_| out)
                .map_err(opus("encode"))
        })
        .collect::<Result<_>>()?;
    let frames = packets.len();
    let bytes: usize = packets.iter().map(Vec::len).sum();

    let mut dec = Decoder::new(Channels::Mono, SampleRate::Hz48000).map_err(opus("decoder"))?;
    if repair.deep_plc() {
        dec.set_complexity(10).map_err(opus("decoder complexity"))?;
    }
    let mut dred = Dred::new(dec).map_err(opus("dred decoder"))?;
    let mut heard = Vec::with_capacity(padded.len());
    let mut out = vec![0.0f32; FRAME];
    let (mut from_dred, mut from_fec) = (0, 0);
    let t = thread_cpu_ns();
    for i in 0..frames {
        let gone = lost.get(i).copied().unwrap_or(false);
        let next = (i + 1 < frames && !lost.get(i + 1).copied().unwrap_or(false))
            .then(|| packets[i + 1].as_slice());
        if !gone {
            dred.decoder_mut()
                .decode_float_to_slice(&packets[i], &mut out, false)
                .map_err(opus("decode"))?;
        } else {
            let mut done = false;
            if repair.dred()
                && let Some(next) = next
                && matches!(dred.decode_float_to_slice(next, &mut out), Ok(n) if n == FRAME)
            {
                from_dred += 1;
                done = true;
            }
            if !done
                && repair.fec()
                && let Some(next) = next
            {
                dred.decoder_mut()
                    .decode_float_to_slice(next, &mut out, true)
                    .map_err(opus("decode fec"))?;
                from_fec += 1;
                done = true;
            }
            if !done {
                dred.decoder_mut()
                    .decode_float_to_slice(&[], &mut out, false)
                    .map_err(opus("conceal"))?;
            }
        }
        heard.extend_from_slice(&out);
    }
    let dec_ns = thread_cpu_ns().saturating_sub(t);
    heard.drain(..lookahead.min(heard.len()));
    heard.resize(input.len(), 0.0);
    Ok(Pass {
        heard,
        kbps: bytes as f64 * 8.0 / 1000.0 / (frames as f64 * 0.020),
        dec_us: dec_ns as f64 / 1000.0 / frames as f64,
        from_dred,
        from_fec,
    })
}

/// The scenario: one table, repair × loss pattern at 16 and 32 kbps.
pub fn dred(ctx: &Ctx) -> Result<Vec<Table>> {
    let dir = ctx.run_dir("dred")?;
    let reference = speech::reference(&dir)?;
    let mut scorer = Scorer::new(&dir.join("pesq"), &reference)?;
    let losses = [
        Loss::None,
        Loss::Random(0.05),
        Loss::Random(0.10),
        Loss::Random(0.20),
        Loss::Bursty(0.02, 3.0),
        Loss::Bursty(0.05, 5.0),
    ];
    let frames = reference.len() / FRAME + 2;
    let mut rows = Vec::new();
    for bitrate_bps in [16_000u32, 32_000] {
        for repair in [
            Repair::FecClassic,
            Repair::FecDeep,
            Repair::Dred,
            Repair::DredFec,
        ] {
            let label = format!("{} kbps, {}", bitrate_bps / 1000, repair.label());
            if !ctx.wants(&label) {
                continue;
            }
            eprintln!("[dred] {label}");
            let mut cells = Vec::new();
            let (mut kbps_lossy, mut dec_us, mut rebuilt) = (0.0, 0.0, (0, 0));
            for loss in losses {
                let (seeds, permille) = match loss {
                    Loss::None => (1, 0),
                    Loss::Random(p) | Loss::Bursty(p, _) => (PATTERNS, (p * 1000.0) as u16),
                };
                let hint = loss::hint_for_loss(permille);
                let mut idx = Vec::new();
                for s in 0..seeds {
                    let pattern = loss.pattern(frames, ctx.seed ^ (s * 7919 + 1));
                    let pass = transcode(&reference, bitrate_bps, repair, hint, &pattern)?;
                    if matches!(loss, Loss::Random(p) if p == 0.05) {
                        kbps_lossy = pass.kbps;
                        dec_us = pass.dec_us;
                        rebuilt = (pass.from_dred, pass.from_fec);
                    }
                    idx.push(scorer.add(&pass.heard)?);
                }
                cells.push(idx);
            }
            rows.push((bitrate_bps, repair, kbps_lossy, dec_us, rebuilt, cells));
        }
    }
    let scores = scorer.scores()?;
    let labels: Vec<String> = losses.iter().map(|l| l.label()).collect();
    let mut header = vec![
        "bitrate",
        "repair",
        "kbps sent at 5 %",
        "decode µs/frame at 5 %",
        "rebuilt DRED/FEC at 5 %",
    ];
    header.extend(labels.iter().map(String::as_str));
    let mut t = Table::new(
        "Lost packets: in-band FEC against DRED and deep PLC, PESQ-WB (20 ms frames, loss hint \
         from the loss as a listener would report it)",
        &header,
    );
    for (bitrate, repair, kbps, dec_us, (by_dred, by_fec), cells) in rows {
        let mut r = vec![
            format!("{} kbps", bitrate / 1000),
            repair.label().to_string(),
            f(kbps, 1),
            f(dec_us, 0),
            format!("{by_dred}/{by_fec}"),
        ];
        r.extend(cells.iter().map(|idx| opt(mean_of(&scores, idx), 2)));
        t.row(r);
    }
    t.note(format!(
        "Mean of {PATTERNS} loss patterns per lossy cell; a lost packet is repaired from the next \
         packet when that one arrived (one frame of look-ahead, as the jitter buffer gives), \
         concealed otherwise. libopus {}.",
        opusic_c::version()
    ));
    Ok(vec![t])
}
