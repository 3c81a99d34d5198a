//! Did a listener hear what was said? Compares a recording with its source, window by window.
//!
//! A listener's playout is the source delayed by the path and the jitter buffer, and that delay
//! is not constant: the jitter buffer grows and shrinks it in whole frames (it conceals a frame
//! to grow, drops one to shrink), and a loaded machine makes it do so more often. A single
//! correlation over seconds of audio is spoilt by one such step. [`compare`] therefore finds
//! the delay once over a long stretch, then follows it through short windows, each aligned on
//! its own within a small drift of the one before; the median over the windows says whether
//! the voice came through, and a step costs at most the one window it falls in.
//!
//! Pure computation on 48 kHz mono samples: no clock, no I/O.

/// Samples per second of everything compared here.
pub const RATE: usize = 48_000;

/// Sum of products, kept in f64; chunked f32 sums so the inner loop vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut total = 0.0f64;
    for (ca, cb) in a.chunks(256).zip(b.chunks(256)) {
        let mut s = 0.0f32;
        for (x, y) in ca.iter().zip(cb) {
            s += x * y;
        }
        total += f64::from(s);
    }
    total
}

/// Normalised correlation of two equally long slices (0 when either is silent).
pub fn ncc(a: &[f32], b: &[f32]) -> f64 {
    let (ab, aa, bb) = (dot(a, b), dot(a, a), dot(b, b));
    if aa <= 1e-12 || bb <= 1e-12 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Root mean square of a slice (0 when empty).
pub fn rms(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        0.0
    } else {
        (dot(samples, samples) / samples.len() as f64).sqrt()
    }
}

/// How [`compare`] lines a recording up with its source. Positions and lengths are in samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    /// Index in the recording where source sample 0 would be heard if the path had no delay
    /// (negative when the recording started after the source). From the source's capture
    /// start and the sink's playout start when both are known, else 0.
    pub origin: i64,
    /// The first alignment searches delays `0..=max_delay` after `origin`.
    pub max_delay: usize,
    /// The part of the source compared: `from..to` (clamped to the source).
    pub from: usize,
    /// See [`Compare::from`].
    pub to: usize,
    /// Length of each compared window.
    pub window: usize,
    /// How far the delay may move from one window to the next.
    pub drift: usize,
    /// Windows of the source quieter than this RMS (pauses of the voice) are skipped.
    pub silence: f64,
}

impl Compare {
    /// Compares source seconds `from_s..to_s` in 100 ms windows, following steps of the delay
    /// of up to 50 ms between windows; the first alignment searches delays up to 400 ms after
    /// an origin of 0.
    pub fn seconds(from_s: f64, to_s: f64) -> Self {
        Self {
            origin: 0,
            max_delay: RATE * 2 / 5,
            from: (from_s * RATE as f64) as usize,
            to: (to_s * RATE as f64) as usize,
            window: RATE / 10,
            drift: RATE / 20,
            silence: 0.005,
        }
    }

    /// Sets the origin from the wall-clock times (µs, same clock) at which the source's
    /// sample 0 was due and the recording's sample 0 was played.
    pub fn started(mut self, source_started_us: u64, recording_started_us: u64) -> Self {
        let ahead_us = source_started_us as i64 - recording_started_us as i64;
        self.origin = ahead_us * RATE as i64 / 1_000_000;
        self
    }

    /// Sets how far after the origin the first alignment searches, in ms.
    pub fn max_delay_ms(mut self, ms: u64) -> Self {
        self.max_delay = ms as usize * RATE / 1_000;
        self
    }
}

/// One compared window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Where it starts in the source.
    pub at: usize,
    /// Best normalised correlation with the recording.
    pub correlation: f64,
    /// The delay (after the origin) it was found at, in samples.
    pub delay: i64,
}

/// What [`compare`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// The windows with sound in the source, in order.
    pub windows: Vec<Window>,
}

impl Comparison {
    /// The windows' correlations.
    pub fn correlations(&self) -> Vec<f64> {
        self.windows.iter().map(|w| w.correlation).collect()
    }

    /// The median correlation (0 when nothing was compared).
    pub fn median(&self) -> f64 {
        let mut c = self.correlations();
        c.sort_by(f64::total_cmp);
        c.get(c.len() / 2).copied().unwrap_or(0.0)
    }

    /// The share of windows (0..=1) that correlate at least `min` (0 when nothing was
    /// compared).
    pub fn share_at_least(&self, min: f64) -> f64 {
        if self.windows.is_empty() {
            return 0.0;
        }
        let n = self.windows.iter().filter(|w| w.correlation >= min).count();
        n as f64 / self.windows.len() as f64
    }

    /// Whether the recording holds the source: a median of at least [`HEARD_MEDIAN`] and a
    /// share of at least [`HEARD_SHARE`] of windows at [`HEARD_WINDOW`] or more.
    pub fn is_heard(&self) -> bool {
        self.median() >= HEARD_MEDIAN && self.share_at_least(HEARD_WINDOW) >= HEARD_SHARE
    }

    /// The delays found in windows that correlate at least `min`, in ms, with runs of the
    /// same delay shown once. (A window across a step of the delay matches best somewhere
    /// in between, and less well.)
    pub fn delay_steps_ms(&self, min: f64) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::new();
        for w in self.windows.iter().filter(|w| w.correlation >= min) {
            let ms = w.delay as f64 * 1_000.0 / RATE as f64;
            if out.last().is_none_or(|last| (last - ms).abs() > 1.0) {
                out.push(ms);
            }
        }
        out
    }
}

/// Lowest median correlation over the windows for "the listener heard the voice" (see
/// [`Comparison::is_heard`]). Measured in the node tests (debug build, 2-core machine, Opus at
/// 32 kbps, 100 ms windows): the voice that was said gives medians 0.945–0.973 with every
/// window at 0.6 or more but one (the codec does not keep the waveform of every window, least
/// near the voice's pauses); another seed's voice in the same recording gives medians
/// 0.06–0.14 with at most 8 % of windows at 0.6 or more.
pub const HEARD_MEDIAN: f64 = 0.8;
/// Correlation of a window that counts as well heard; see [`HEARD_SHARE`].
pub const HEARD_WINDOW: f64 = 0.6;
/// Lowest share of windows at [`HEARD_WINDOW`] or more for "the listener heard the voice":
/// a loaded machine makes the jitter buffer step more often, and each step spoils a window.
pub const HEARD_SHARE: f64 = 0.75;

impl std::fmt::Display for Comparison {
    /// One line: the median, how many windows and how many well heard, the delay steps, and
    /// every window's correlation.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cs = self.correlations();
        write!(
            f,
            "median correlation {:.3} over {} windows, {:.0} % at {HEARD_WINDOW} or more; \
             delay {:.0?} ms; windows {cs:.2?}",
            self.median(),
            cs.len(),
            self.share_at_least(HEARD_WINDOW) * 100.0,
            self.delay_steps_ms(0.9),
        )
    }
}

/// A window that correlates at least this well moves the tracked delay; a worse one (a
/// concealed frame, a burst of loss) is counted but not followed.
const FOLLOW: f64 = 0.5;
/// The coarse step of a delay search, in samples; the best coarse delay is then refined
/// sample by sample. Voice energy lies mostly below 1 kHz (48+ samples a period), so a peak
/// is never narrower than this.
const COARSE: usize = 4;

/// Compares `source` with `recording` as `how` says (see the module documentation).
pub fn compare(source: &[f32], recording: &[f32], how: &Compare) -> Comparison {
    let to = how.to.min(source.len());
    let window = how.window.max(1);
    let mut out = Comparison::default();
    let Some(first) = first_alignment(source, recording, how, to) else {
        return out;
    };
    let mut delay = first;
    let mut at = how.from;
    while at + window <= to {
        let part = &source[at..at + window];
        if rms(part) >= how.silence {
            let drift = how.drift as i64;
            let zero = how.origin + at as i64;
            let (lo, hi) = (delay - drift, delay + drift);
            if let Some((correlation, found)) = best_delay(part, recording, zero, lo, hi, COARSE) {
                out.windows.push(Window {
                    at,
                    correlation,
                    delay: found,
                });
                if correlation >= FOLLOW {
                    delay = found;
                }
            }
        }
        at += window;
    }
    out
}

/// The delay of the first second (or less) of `from..to` that has sound: the best within
/// [`NEAR`] if it correlates at least [`FOLLOW`], else the best over all of `0..=max_delay`.
/// Near first, because a voice resembles itself seconds later: a jitter-buffer step inside the
/// block lowers the true peak (seen: 0.7 at 50 ms), and a far one could win (0.94 at 2.1 s).
fn first_alignment(source: &[f32], recording: &[f32], how: &Compare, to: usize) -> Option<i64> {
    let mut at = how.from;
    let len = RATE.min(to.saturating_sub(how.from));
    if len < DECIMATE {
        return None;
    }
    while at + len <= to && rms(&source[at..at + len]) < how.silence {
        at += len / 2;
    }
    let part = source.get(at..at + len)?;
    let zero = how.origin + at as i64;
    let near = align_within(part, recording, zero, how.max_delay.min(NEAR));
    match near {
        Some((correlation, delay)) if correlation >= FOLLOW => Some(delay),
        _ => align_within(part, recording, zero, how.max_delay).map(|(_, d)| d),
    }
}

/// Delays up to this are tried first by [`first_alignment`]: 500 ms.
const NEAR: usize = RATE / 2;

/// The best delay of `part` (heard from recording index `zero` with no delay) over
/// `0..=max_delay`, with its correlation: first on both signals averaged over [`DECIMATE`]
/// samples (a search over seconds of delay stays cheap), then sample by sample around the
/// best of those.
fn align_within(
    part: &[f32],
    recording: &[f32],
    zero: i64,
    max_delay: usize,
) -> Option<(f64, i64)> {
    // Recording index of delay 0, rounded down to a whole decimated sample; the rest is
    // made up by the fine search.
    let base = zero.div_euclid(DECIMATE as i64);
    let (part_d, rec_d) = (decimate(part), decimate(recording));
    let (lo, hi) = (0, max_delay as i64 / DECIMATE as i64 + 1);
    let (_, coarse) = best_delay(&part_d, &rec_d, base, lo, hi, 1)?;
    let coarse = (base + coarse) * DECIMATE as i64 - zero;
    let slack = 2 * DECIMATE as i64;
    best_delay(
        part,
        recording,
        zero,
        (coarse - slack).max(0),
        (coarse + slack).min(max_delay as i64),
        1,
    )
}

/// Samples averaged into one by the first alignment's coarse search: 6 kHz is plenty for a
/// voice's fundamental and first harmonics.
const DECIMATE: usize = 8;

/// `samples` averaged over runs of [`DECIMATE`].
fn decimate(samples: &[f32]) -> Vec<f32> {
    samples
        .chunks_exact(DECIMATE)
        .map(|c| c.iter().sum::<f32>() / DECIMATE as f32)
        .collect()
}

/// The delay in `lo..=hi` at which `part` (heard from `zero` with no delay) correlates best
/// with `recording`, with that correlation; `None` if no delay in the range fits. Searches
/// every `step`-th delay, then every delay around the best of those.
fn best_delay(
    part: &[f32],
    recording: &[f32],
    zero: i64,
    lo: i64,
    hi: i64,
    step: usize,
) -> Option<(f64, i64)> {
    let at = |d: i64| -> Option<f64> {
        let i = zero + d;
        (i >= 0 && i as usize + part.len() <= recording.len())
            .then(|| ncc(part, &recording[i as usize..i as usize + part.len()]))
    };
    let better = |best: Option<(f64, i64)>, d: i64| match (best, at(d)) {
        (Some((b, _)), Some(c)) if c <= b => best,
        (_, Some(c)) => Some((c, d)),
        (best, None) => best,
    };
    let step = step.max(1) as i64;
    let mut best = None;
    let mut d = lo;
    while d <= hi {
        best = better(best, d);
        d += step;
    }
    let (_, coarse) = best?;
    ((coarse - step).max(lo)..=(coarse + step).min(hi)).fold(best, better)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A voice-like test signal: harmonics of a pitch that glides, under a syllable-rate
    /// envelope with pauses. (ruang-audio's synthetic voice is the real thing; this one keeps
    /// the test kit free of the codec.)
    fn voice(seed: u64, seconds: f64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = (seconds * RATE as f64) as usize;
        let base = 100.0 + 80.0 * rng.random::<f64>();
        let (mut phase, mut out) = (0.0f64, Vec::with_capacity(n));
        for i in 0..n {
            let t = i as f64 / RATE as f64;
            let pitch = base * (1.0 + 0.2 * (t * 2.3 + seed as f64).sin());
            phase += std::f64::consts::TAU * pitch / RATE as f64;
            let syllable = (t * 4.0 * std::f64::consts::PI).sin().abs();
            let pause = if (t % 1.7) > 1.4 { 0.0 } else { 1.0 };
            let s: f64 = (1..=8).map(|h| (phase * h as f64).sin() / h as f64).sum();
            out.push((0.2 * s * syllable * pause) as f32);
        }
        out
    }

    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-0.3..0.3)).collect()
    }

    /// `source` delayed by `delay` samples, with the delay stepping by one 20 ms frame at the
    /// given source positions (positive: a concealed frame inserted; negative: a frame
    /// dropped), as a jitter buffer does.
    fn played(source: &[f32], delay: usize, steps: &[(usize, i32)]) -> Vec<f32> {
        let frame = RATE / 50;
        let mut out = vec![0.0; delay];
        let mut at = 0;
        for &(pos, step) in steps {
            out.extend_from_slice(&source[at..pos]);
            if step > 0 {
                out.extend(std::iter::repeat_n(0.0, frame));
                at = pos;
            } else {
                at = pos + frame;
            }
        }
        out.extend_from_slice(&source[at..]);
        out
    }

    #[test]
    fn a_steady_delay_is_found_in_every_window() {
        let src = voice(1, 4.0);
        let heard = played(&src, 3_000, &[]);
        let c = compare(&src, &heard, &Compare::seconds(0.5, 3.5));
        assert!(c.windows.len() >= 20, "{c:?}");
        assert!(c.windows.iter().all(|w| w.delay == 3_000), "{c:?}");
        assert!(c.median() > 0.99, "{c:?}");
    }

    #[test]
    fn steps_of_the_jitter_buffer_cost_at_most_their_own_window() {
        let src = voice(2, 4.0);
        // Grow by a frame twice, then shrink by one: 50 ms of delay, then 70, 90, 70.
        let steps = [(30_000, 1), (70_000, 1), (120_000, -1)];
        let heard = played(&src, 2_400, &steps);
        let how = Compare::seconds(0.5, 3.5);
        let c = compare(&src, &heard, &how);
        assert!(c.median() > 0.99, "{c:?}");
        assert!(c.share_at_least(0.9) > 0.85, "{c:?}");
        // Every window clear of a step is found at exactly its delay.
        let frame = (RATE / 50) as i64;
        for w in &c.windows {
            let span = w.at..w.at + how.window;
            if steps.iter().any(|(pos, _)| span.contains(pos)) {
                continue;
            }
            let grown: i64 = steps
                .iter()
                .filter(|(pos, _)| *pos < w.at)
                .map(|(_, step)| i64::from(*step))
                .sum();
            assert_eq!(w.delay, 2_400 + grown * frame, "{w:?}");
        }
        assert_eq!(c.delay_steps_ms(0.999)[..3], [50.0, 70.0, 90.0]);
    }

    #[test]
    fn a_step_in_the_first_block_does_not_lose_it_to_a_far_lookalike() {
        // The recording of a real join: the jitter buffer dropped frames inside the block the
        // first alignment uses, and a stretch of the voice seconds later resembled it better.
        // Here the far lookalike is exact (the source repeats), the near copy stepped.
        let once = voice(7, 2.1);
        let src: Vec<f32> = once.iter().chain(&once).chain(&once).copied().collect();
        let from = RATE / 2;
        let steps = [(from + RATE * 3 / 4, -1)];
        let heard = played(&src, 2_400, &steps);
        let how = Compare::seconds(0.5, 3.5).max_delay_ms(3_000);
        let c = compare(&src, &heard, &how);
        let first = c.windows.first().expect("windows");
        assert!(first.delay < 2_400 + 1, "{c}");
        assert!(c.is_heard(), "{c}");
    }

    #[test]
    fn the_origin_is_taken_from_the_start_times() {
        let src = voice(3, 3.0);
        // Recording started 200 ms after the source was due; the path adds 60 ms.
        let heard = played(&src, 60 * 48, &[]).split_off(200 * 48);
        let how = Compare::seconds(0.5, 2.5).started(1_000_000, 1_200_000);
        assert_eq!(how.origin, -200 * 48);
        let c = compare(&src, &heard, &how.max_delay_ms(100));
        assert!(c.windows.iter().all(|w| w.delay == 60 * 48), "{c:?}");
    }

    #[test]
    fn another_voice_noise_or_silence_do_not_pass_for_the_source() {
        let src = voice(4, 4.0);
        let how = Compare::seconds(0.5, 3.5);
        let other = played(&voice(5, 4.0), 3_000, &[]);
        let hiss = noise(6, src.len() + RATE);
        let quiet = vec![0.0; src.len() + RATE];
        for (what, heard) in [
            ("another voice", other),
            ("noise", hiss),
            ("silence", quiet),
        ] {
            let c = compare(&src, &heard, &how);
            // Measured: another voice 0.17 median with 17 % of windows at 0.7 or more (this
            // test voice has the same syllable rhythm); noise 0.04; silence 0.
            assert!(c.median() < 0.3, "{what}: {c:?}");
            assert!(c.share_at_least(0.7) < 0.25, "{what}: {c:?}");
        }
    }

    #[test]
    fn nothing_to_compare_gives_nothing() {
        let src = vec![0.0; RATE * 2];
        let c = compare(&src, &src, &Compare::seconds(0.0, 2.0));
        assert!(c.windows.is_empty());
        assert_eq!((c.median(), c.share_at_least(0.5)), (0.0, 0.0));
        // A range past the end of the source, and an empty recording.
        let c = compare(&voice(7, 1.0), &[], &Compare::seconds(0.0, 5.0));
        assert!(c.windows.is_empty());
    }
}
