//! Measuring what a listener heard against what a speaker said: chirp trains, chirp detection
//! by cross-correlation, per-chirp mouth-to-ear delay, per-window similarity and freezes.
//!
//! Everything here is pure arithmetic on 48 kHz mono samples, checked by the tests at the end
//! (a train shifted by a known delay is recovered to well within 1 ms, also through Opus with
//! losses; a known gap is found as one freeze).

use ruang_audio::format::FrameDuration;
use ruang_audio::source::{Source, VoiceSource};
use ruang_testkit::heard::{dot, ncc};

/// Samples per second.
pub const RATE: usize = 48_000;

/// A chirp train: a voice-like bed with a short chirp every `period_s`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Seconds before the first chirp (bed only), so a listener can join first.
    pub lead_in_s: f64,
    /// Seconds between chirps.
    pub period_s: f64,
    /// Length of one chirp, ms.
    pub chirp_ms: f64,
    /// Start frequency, Hz.
    pub f0_hz: f64,
    /// End frequency, Hz.
    pub f1_hz: f64,
    /// Peak amplitude of a chirp.
    pub amplitude: f32,
    /// Gain applied to the synthetic-voice bed (0: silence between chirps).
    pub bed_gain: f32,
    /// Seed of the voice bed.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lead_in_s: 4.0,
            period_s: 0.5,
            chirp_ms: 30.0,
            f0_hz: 400.0,
            f1_hz: 4_000.0,
            amplitude: 0.5,
            bed_gain: 0.5,
            seed: 7,
        }
    }
}

/// A generated train: the samples and where each chirp starts.
#[derive(Clone, Debug)]
pub struct Train {
    /// 48 kHz mono samples.
    pub samples: Vec<f32>,
    /// Sample offset of each chirp's first sample.
    pub chirps: Vec<usize>,
    /// The chirp alone (the detection template).
    pub template: Vec<f32>,
}

/// One Hann-windowed linear chirp of `len` samples from `f0` to `f1` Hz.
pub fn chirp(len: usize, f0: f64, f1: f64, amplitude: f32) -> Vec<f32> {
    let dur = len as f64 / RATE as f64;
    (0..len)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let phase = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * dur));
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (len - 1) as f64).cos();
            (amplitude as f64 * w * phase.sin()) as f32
        })
        .collect()
}

/// Generates `seconds` of chirp train (lead-in included).
pub fn chirp_train(seconds: f64, config: &TrainConfig) -> Train {
    let total = (seconds * RATE as f64) as usize;
    let frame = FrameDuration::Ms20;
    let mut samples = Vec::with_capacity(total + frame.samples());
    let mut voice = VoiceSource::new(config.seed, frame);
    let mut buf = vec![0.0f32; frame.samples()];
    while samples.len() < total {
        // The synthetic voice never ends and never fails on a correctly sized buffer.
        let _ = voice.next_frame(&mut buf);
        samples.extend(buf.iter().map(|s| s * config.bed_gain));
    }
    samples.truncate(total);
    let template = chirp(
        (config.chirp_ms * RATE as f64 / 1e3) as usize,
        config.f0_hz,
        config.f1_hz,
        config.amplitude,
    );
    let mut chirps = Vec::new();
    let mut t = config.lead_in_s;
    loop {
        let at = (t * RATE as f64).round() as usize;
        if at + template.len() + RATE / 4 > total {
            break;
        }
        // The chirp replaces the bed under it, so it is clean to detect.
        samples[at..at + template.len()].copy_from_slice(&template);
        chirps.push(at);
        t += config.period_s;
    }
    Train {
        samples,
        chirps,
        template,
    }
}

/// Writes 48 kHz mono 16-bit PCM.
pub fn write_wav(path: &std::path::Path, samples: &[f32]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32_767.0).round() as i16)?;
    }
    w.finalize()
}

/// Reads a 48 kHz mono WAV (16-bit integer or float) into floats.
pub fn read_wav(path: &std::path::Path) -> Result<Vec<f32>, hound::Error> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.sample_rate != RATE as u32 || spec.channels != 1 {
        return Err(hound::Error::Unsupported);
    }
    match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect(),
        hound::SampleFormat::Int => reader
            .samples::<i16>()
            .map(|s| s.map(|v| v as f32 / 32_768.0))
            .collect(),
    }
}

/// Where a chirp was found in the heard signal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Position of the chirp's first sample in the heard signal, fractional samples.
    pub pos: f64,
    /// Normalised correlation with the template at that position (1 = identical shape).
    pub score: f64,
}

/// Smallest correlation score accepted as "this chirp was heard".
pub const MIN_SCORE: f64 = 0.5;

/// Finds `template` in `heard` between positions `lo..hi` (clamped to the signal): a coarse
/// search on 4×-decimated signals, a fine search around the best coarse position, and a
/// parabolic fit of the peak for sub-sample precision. `None` when the best correlation is
/// below [`MIN_SCORE`].
pub fn find(heard: &[f32], template: &[f32], lo: i64, hi: i64) -> Option<Detection> {
    const D: usize = 4;
    let n = template.len();
    if heard.len() < n {
        return None;
    }
    let lo = lo.max(0) as usize;
    let hi = (hi.max(0) as usize).min(heard.len() - n);
    if lo > hi {
        return None;
    }
    let decimate = |s: &[f32]| -> Vec<f32> {
        s.chunks(D)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect()
    };
    let td = decimate(template);
    let region = &heard[lo..(hi + n).min(heard.len())];
    let hd = decimate(region);
    let mut coarse = (f64::MIN, 0usize);
    let mut p = 0;
    while p + td.len() <= hd.len() {
        let c = ncc(&td, &hd[p..p + td.len()]);
        if c > coarse.0 {
            coarse = (c, p * D + lo);
        }
        p += 1;
    }
    let from = coarse.1.saturating_sub(2 * D).max(lo);
    let to = (coarse.1 + 2 * D).min(hi);
    let mut scores = Vec::with_capacity(to + 1 - from);
    for pos in from..=to {
        scores.push((pos, ncc(template, &heard[pos..pos + n])));
    }
    let (best_i, &(best_pos, best)) = scores
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.1.total_cmp(&b.1.1))?;
    if best < MIN_SCORE {
        return None;
    }
    let mut pos = best_pos as f64;
    if best_i > 0 && best_i + 1 < scores.len() {
        let (y0, y1, y2) = (scores[best_i - 1].1, best, scores[best_i + 1].1);
        let denom = y0 - 2.0 * y1 + y2;
        if denom.abs() > 1e-12 {
            pos += (0.5 * (y0 - y2) / denom).clamp(-0.5, 0.5);
        }
    }
    Some(Detection { pos, score: best })
}

/// The times that tie a recording to its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Unix µs when sample 0 of the source was due at the input (`capture_started`).
    pub capture_unix_us: u64,
    /// Unix µs when sample 0 of the recording was played (`playout_started`).
    pub playout_unix_us: u64,
}

impl Timing {
    /// Where source sample `offset` would sit in the recording with zero delay (may be
    /// negative: spoken before the recording began).
    pub fn zero_delay_pos(&self, offset: usize) -> i64 {
        let shift_us = self.capture_unix_us as i64 - self.playout_unix_us as i64;
        offset as i64 + shift_us * RATE as i64 / 1_000_000
    }

    /// Delay in ms of a source sample `offset` heard at recording position `pos`.
    pub fn delay_ms(&self, offset: usize, pos: f64) -> f64 {
        let heard_us = self.playout_unix_us as f64 + pos * 1e6 / RATE as f64;
        let said_us = self.capture_unix_us as f64 + offset as f64 * 1e6 / RATE as f64;
        (heard_us - said_us) / 1e3
    }
}

/// One chirp's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChirpDelay {
    /// Index of the chirp in the train.
    pub index: usize,
    /// Its offset in the source.
    pub offset: usize,
    /// Mouth-to-ear delay in ms, if heard.
    pub delay_ms: Option<f64>,
    /// Detection score (0 if not found).
    pub score: f64,
}

/// Search window for a chirp, relative to its zero-delay position: from `min_ms` to `max_ms`
/// of delay. Must be shorter than the chirp period, or a neighbour could be taken for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Smallest delay searched, ms.
    pub min_ms: f64,
    /// Largest delay searched, ms.
    pub max_ms: f64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            min_ms: -10.0,
            max_ms: 470.0,
        }
    }
}

/// Measures every chirp of `train` whose zero-delay position lies inside the recording.
pub fn chirp_delays(
    train: &Train,
    heard: &[f32],
    timing: Timing,
    window: Window,
) -> Vec<ChirpDelay> {
    let ms = |v: f64| (v * RATE as f64 / 1e3) as i64;
    train
        .chirps
        .iter()
        .enumerate()
        .filter_map(|(index, &offset)| {
            let zero = timing.zero_delay_pos(offset);
            if zero + ms(window.min_ms) < 0
                || zero + ms(window.max_ms) + train.template.len() as i64 > heard.len() as i64
            {
                return None;
            }
            let found = find(
                heard,
                &train.template,
                zero + ms(window.min_ms),
                zero + ms(window.max_ms),
            );
            Some(ChirpDelay {
                index,
                offset,
                delay_ms: found.map(|d| timing.delay_ms(offset, d.pos)),
                score: found.map(|d| d.score).unwrap_or(0.0),
            })
        })
        .collect()
}

/// p50 / p95 / p99 / max of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Percentiles of `values` (nearest rank); all zero when empty.
    pub fn of(values: &[f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            n: v.len(),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            max: v[v.len() - 1],
            min: v[0],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// The delays (ms) of the nearest heard chirps before and after source offset `offset` (the
/// same one twice at the ends): the playout delay at `offset` is one of them unless the jitter
/// buffer moved it twice in between.
fn local_delays(delays: &[ChirpDelay], offset: usize) -> Option<(f64, f64)> {
    let before = delays
        .iter()
        .rev()
        .find_map(|d| (d.offset <= offset).then_some(d.delay_ms).flatten());
    let after = delays
        .iter()
        .find_map(|d| (d.offset > offset).then_some(d.delay_ms).flatten());
    match (before, after) {
        (Some(b), Some(a)) => Some((b, a)),
        (Some(x), None) | (None, Some(x)) => Some((x, x)),
        (None, None) => None,
    }
}

/// Quality of what was heard, per frame and per 1 s window, after alignment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    /// Mean over each 1 s window of the frames' best correlations (frames with sound only).
    pub window_similarity: Vec<f64>,
    /// Frames (20 ms) of the reference with sound in them that were compared.
    pub frames_compared: usize,
    /// Of those, frames whose heard audio did not match (correlation < [`BAD_FRAME`]).
    pub frames_bad: usize,
    /// Runs of bad frames longer than [`FREEZE_MS`] (the listener heard a stall), with their
    /// length in ms.
    pub freezes: Vec<f64>,
    /// Seconds of reference covered.
    pub seconds: f64,
}

/// A stall of the playout longer than this is a freeze.
pub const FREEZE_MS: f64 = 200.0;
/// A frame whose best correlation with the reference is below this did not sound right.
pub const BAD_FRAME: f64 = 0.5;

/// Best normalised correlation of `reference[start..start + len]` with `heard` at a lag of
/// `center + [-search, search]`, every sample (noise-like frames correlate over a peak only a
/// sample or two wide). `None` if no lag fits in `heard`.
fn best_match(
    reference: &[f32],
    heard: &[f32],
    start: usize,
    len: usize,
    center: i64,
    search: i64,
) -> Option<f64> {
    let src = &reference[start..start + len];
    (-search..=search)
        .filter_map(|lag| {
            let p = center + lag;
            (p >= 0 && (p as usize) + len <= heard.len())
                .then(|| ncc(src, &heard[p as usize..p as usize + len]))
        })
        .max_by(f64::total_cmp)
}

/// Compares `reference` (what a perfect network would have played, aligned with the source)
/// and the recording from reference offset `from` to `to`, following the delays the chirps
/// measured: the jitter buffer moves the delay in whole frames between chirps, so each 20 ms
/// frame is searched ±`search_ms` around the delays of the chirps before and after it. Frames without sound in the
/// reference (pauses of the voice) are skipped; they neither count nor end a freeze.
pub fn quality(
    reference: &[f32],
    heard: &[f32],
    timing: Timing,
    delays: &[ChirpDelay],
    from: usize,
    to: usize,
    search_ms: f64,
) -> Quality {
    let to = to.min(reference.len());
    let search = (search_ms * RATE as f64 / 1e3) as i64;
    let frame = RATE / 50;
    let mut q = Quality {
        seconds: (to.saturating_sub(from)) as f64 / RATE as f64,
        ..Quality::default()
    };
    let mut run_ms = 0.0;
    let mut window: Vec<f64> = Vec::new();
    let mut window_end = from + RATE;
    let mut start = from;
    while start + frame <= to {
        if start >= window_end {
            if !window.is_empty() {
                q.window_similarity
                    .push(window.iter().sum::<f64>() / window.len() as f64);
            }
            window.clear();
            window_end += RATE;
        }
        let src = &reference[start..start + frame];
        let energy = dot(src, src) / frame as f64;
        let d = local_delays(delays, start + frame / 2);
        if let (true, Some((d0, d1))) = (energy > 1e-5, d) {
            let center =
                |d: f64| timing.zero_delay_pos(start) + (d * RATE as f64 / 1e3).round() as i64;
            let c0 = best_match(reference, heard, start, frame, center(d0), search);
            let c1 = if (d1 - d0).abs() > 1.0 {
                best_match(reference, heard, start, frame, center(d1), search)
            } else {
                None
            };
            let best = match (c0, c1) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(c) = best {
                q.frames_compared += 1;
                window.push(c);
                if c < BAD_FRAME {
                    q.frames_bad += 1;
                    run_ms += 20.0;
                } else {
                    if run_ms > FREEZE_MS {
                        q.freezes.push(run_ms);
                    }
                    run_ms = 0.0;
                }
            }
        }
        start += frame;
    }
    if !window.is_empty() {
        q.window_similarity
            .push(window.iter().sum::<f64>() / window.len() as f64);
    }
    if run_ms > FREEZE_MS {
        q.freezes.push(run_ms);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruang_audio::codec::{Decoder, Encoder, EncoderConfig};

    fn short_train() -> Train {
        chirp_train(
            8.0,
            &TrainConfig {
                lead_in_s: 1.0,
                ..TrainConfig::default()
            },
        )
    }

    /// The recording starts `start_ms` after the source; every sample is heard `delay`
    /// samples late.
    fn shifted(source: &[f32], delay: usize, start_ms: u64) -> (Vec<f32>, Timing) {
        let start = (start_ms as usize) * RATE / 1000;
        let mut heard = vec![0.0f32; source.len() + delay];
        heard[delay..].copy_from_slice(source);
        let heard = heard[start..].to_vec();
        let timing = Timing {
            capture_unix_us: 1_700_000_000_000_000,
            playout_unix_us: 1_700_000_000_000_000 + start_ms * 1000,
        };
        (heard, timing)
    }

    #[test]
    fn recovers_a_known_delay_from_a_wav_file_within_1_ms() {
        let train = short_train();
        // 73.4 ms of delay: 3523 samples.
        let delay = 3_523;
        let (heard, timing) = shifted(&train.samples, delay, 250);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heard.wav");
        write_wav(&path, &heard).unwrap();
        let heard = read_wav(&path).unwrap();
        let delays = chirp_delays(&train, &heard, timing, Window::default());
        assert_eq!(delays.len(), train.chirps.len());
        let truth = delay as f64 * 1e3 / RATE as f64;
        for d in &delays {
            let got = d.delay_ms.expect("every chirp heard");
            assert!(
                (got - truth).abs() < 1.0,
                "chirp {}: {got} vs {truth}",
                d.index
            );
            // In fact, to a small fraction of a sample.
            assert!(
                (got - truth).abs() < 0.05,
                "chirp {}: {got} vs {truth}",
                d.index
            );
        }
        let q = quality(
            &train.samples,
            &heard,
            timing,
            &delays,
            RATE,
            train.samples.len(),
            10.0,
        );
        assert!(q.window_similarity.iter().all(|c| *c > 0.99), "{q:?}");
        assert_eq!(q.frames_bad, 0);
        assert!(q.freezes.is_empty());
    }

    #[test]
    fn recovers_the_delay_through_opus_with_losses() {
        let train = short_train();
        let frame = FrameDuration::Ms20;
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let lookahead = enc.lookahead();
        let mut dec = Decoder::new(frame).unwrap();
        let mut out = Vec::new();
        for (i, chunk) in train.samples.chunks_exact(frame.samples()).enumerate() {
            let packet = enc.encode(chunk).unwrap();
            // Every 17th frame is lost and concealed.
            let pcm = if i % 17 == 5 {
                dec.conceal().unwrap()
            } else {
                dec.decode(&packet).unwrap()
            };
            out.extend_from_slice(pcm);
        }
        let delay = 2_000;
        let (heard, timing) = shifted(&out, delay, 100);
        let delays = chirp_delays(&train, &heard, timing, Window::default());
        let truth = (delay + lookahead) as f64 * 1e3 / RATE as f64;
        let found: Vec<f64> = delays.iter().filter_map(|d| d.delay_ms).collect();
        assert!(found.len() >= delays.len() - 2, "{delays:?}");
        for got in found {
            assert!((got - truth).abs() < 1.0, "{got} vs {truth}");
        }
        // Quality against the loss-free decode (advanced by the lookahead): the lost frames
        // (1 in 17) may sound wrong, nothing else does, and nothing freezes.
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let mut dec = Decoder::new(frame).unwrap();
        let mut reference = Vec::new();
        for chunk in train.samples.chunks_exact(frame.samples()) {
            reference.extend_from_slice(dec.decode(&enc.encode(chunk).unwrap()).unwrap());
        }
        reference.drain(..lookahead);
        let q = quality(
            &reference,
            &heard,
            timing,
            &delays,
            RATE,
            reference.len() - RATE,
            12.0,
        );
        let lost = q.frames_compared / 17 + 2;
        assert!(
            q.frames_bad <= lost,
            "{} bad of {}",
            q.frames_bad,
            q.frames_compared
        );
        assert!(q.freezes.is_empty(), "{q:?}");
        let mean = q.window_similarity.iter().sum::<f64>() / q.window_similarity.len() as f64;
        assert!(mean > 0.9, "similarity {mean}");
    }

    #[test]
    fn a_known_gap_is_one_freeze_and_chirps_in_it_are_missed() {
        let train = short_train();
        let delay = 1_000;
        let (mut heard, timing) = shifted(&train.samples, delay, 0);
        // 400 ms of silence over the 4th chirp (the playout had nothing).
        let gap_from = train.chirps[3] + delay - RATE / 10;
        heard[gap_from..gap_from + RATE * 4 / 10].fill(0.0);
        let delays = chirp_delays(&train, &heard, timing, Window::default());
        assert_eq!(delays[3].delay_ms, None);
        assert!(delays.iter().filter(|d| d.delay_ms.is_some()).count() == delays.len() - 1);
        let q = quality(
            &train.samples,
            &heard,
            timing,
            &delays,
            RATE,
            train.samples.len(),
            10.0,
        );
        assert_eq!(q.freezes.len(), 1, "{q:?}");
        assert!((300.0..=440.0).contains(&q.freezes[0]), "{q:?}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50, p.p95, p.p99, p.max, p.min),
            (50.0, 95.0, 99.0, 100.0, 1.0)
        );
        assert_eq!(Percentiles::of(&[]).n, 0);
    }
}
