//! Speech quality: a spoken reference and its PESQ score after the codec or the network.
//!
//! - [`reference`]: Harvard sentences spoken by espeak-ng (two voices, one male, one female),
//!   at 48 kHz, levelled to −26 dBov (the level P.862 expects) with half a second of silence
//!   between sentences. Synthetic, but speech: formants, voicing and pauses that the codec and
//!   its concealment must get right, unlike a chirp or the synthetic voice bed.
//! - [`Scorer`]: PESQ P.862.2 wideband (MOS-LQO, 1.0–4.64) of degraded against reference
//!   signals, through `scripts/pesq_score.py` (the `pesq` Python package, a wrapper of the ITU-T
//!   reference code). Both signals go down to 16 kHz here, with the pipeline's own resampler.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ruang_audio::resample::Resampler;

/// Sample rate of the pipeline.
const RATE: u32 = 48_000;
/// Sample rate PESQ-WB scores at.
const PESQ_RATE: u32 = 16_000;

/// Sentences of the IEEE "Harvard" lists (public domain), two per voice.
const SENTENCES: [&str; 4] = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
];

/// espeak-ng voices: a male and a female variant of US English.
const VOICES: [&str; 2] = ["en-us", "en-us+f3"];

/// Target speech level, dB relative to full scale (P.862's −26 dBov).
const LEVEL_DBOV: f64 = -26.0;

/// The spoken reference at 48 kHz: every sentence in every voice, each followed by 0.5 s of
/// silence, levelled to −26 dBov (about 10 s in all). Needs `espeak-ng` on the PATH.
pub fn reference(work: &Path) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; RATE as usize / 2];
    for (v, voice) in VOICES.iter().enumerate() {
        for (s, sentence) in SENTENCES.iter().enumerate().skip(v * 2).take(2) {
            let path = work.join(format!("espeak-{v}-{s}.wav"));
            let status = Command::new("espeak-ng")
                .args(["-v", voice, "-s", "150", "-w"])
                .arg(&path)
                .arg(sentence)
                .status()
                .context("running espeak-ng (apt-get install espeak-ng)")?;
            if !status.success() {
                bail!("espeak-ng failed for {voice}: {status}");
            }
            let (rate, samples) = read_any_wav(&path)?;
            out.extend(resample(&samples, rate, RATE)?);
            out.extend(std::iter::repeat_n(0.0, RATE as usize / 2));
        }
    }
    level(&mut out, LEVEL_DBOV);
    Ok(out)
}

/// Scales `samples` so that their active speech (the 100 ms blocks within 30 dB of the
/// loudest) sits at `dbov`.
fn level(samples: &mut [f32], dbov: f64) {
    let block = RATE as usize / 10;
    let powers: Vec<f64> = samples
        .chunks(block)
        .map(|c| c.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / c.len() as f64)
        .collect();
    let loudest = powers.iter().cloned().fold(0.0, f64::max);
    let active: Vec<f64> = powers.into_iter().filter(|&p| p > loudest * 1e-3).collect();
    if active.is_empty() {
        return;
    }
    let mean = active.iter().sum::<f64>() / active.len() as f64;
    let gain = (10f64.powf(dbov / 10.0) / mean).sqrt() as f32;
    for s in samples {
        *s = (*s * gain).clamp(-1.0, 1.0);
    }
}

/// Converts mono audio between rates with the pipeline's resampler (delay compensated, so
/// the output lines up with the input).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let mut r = Resampler::new(from, to)?;
    r.compensate_delay();
    r.push(samples)?;
    r.flush()?;
    let mut out = vec![0.0; r.available()];
    let n = r.pop(&mut out);
    out.truncate(n);
    Ok(out)
}

/// Reads a mono 16-bit WAV at any rate.
fn read_any_wav(path: &Path) -> Result<(u32, Vec<f32>)> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = reader.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 {
        bail!("{}: expected mono 16-bit PCM", path.display());
    }
    let samples = reader
        .samples::<i16>()
        .map(|s| s.map(|v| v as f32 / 32_768.0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((spec.sample_rate, samples))
}

fn write_16k(path: &Path, samples_48k: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: PESQ_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in resample(samples_48k, RATE, PESQ_RATE)? {
        w.write_sample((s.clamp(-1.0, 1.0) * 32_767.0).round() as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Scores degraded signals against one reference with PESQ-WB, a batch at a time.
pub struct Scorer {
    work: PathBuf,
    reference: PathBuf,
    pending: Vec<PathBuf>,
}

impl Scorer {
    /// A scorer against `reference` (48 kHz), writing its 16 kHz files under `work`.
    pub fn new(work: &Path, reference: &[f32]) -> Result<Scorer> {
        std::fs::create_dir_all(work)?;
        let path = work.join("reference-16k.wav");
        write_16k(&path, reference)?;
        Ok(Scorer {
            work: work.to_path_buf(),
            reference: path,
            pending: Vec::new(),
        })
    }

    /// The folder the scorer writes its files in.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// Queues a degraded signal (48 kHz, aligned with the reference); returns its index in the
    /// next [`scores`](Scorer::scores).
    pub fn add(&mut self, degraded: &[f32]) -> Result<usize> {
        let i = self.pending.len();
        let path = self.work.join(format!("degraded-{i}-16k.wav"));
        write_16k(&path, degraded)?;
        self.pending.push(path);
        Ok(i)
    }

    /// Scores everything queued (one Python process for the batch), in the order added. A
    /// pair PESQ could not score is `None` (for instance a signal with no speech left).
    pub fn scores(&mut self) -> Result<Vec<Option<f64>>> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pesq_score.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running python3 scripts/pesq_score.py")?;
        {
            let mut stdin = child.stdin.take().context("pesq stdin")?;
            for p in &pending {
                writeln!(stdin, "{}\t{}", self.reference.display(), p.display())?;
            }
        }
        let stdout = child.stdout.take().context("pesq stdout")?;
        let mut scores = Vec::with_capacity(pending.len());
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            match line.parse::<f64>() {
                Ok(v) => scores.push(Some(v)),
                Err(_) => {
                    eprintln!("[pesq] {line}");
                    scores.push(None);
                }
            }
        }
        let status = child.wait()?;
        if !status.success() || scores.len() != pending.len() {
            bail!(
                "scripts/pesq_score.py failed ({status}, {} of {} scores); it needs \
                 `pip3 install numpy pesq`",
                scores.len(),
                pending.len()
            );
        }
        for p in pending {
            let _ = std::fs::remove_file(p);
        }
        Ok(scores)
    }
}
