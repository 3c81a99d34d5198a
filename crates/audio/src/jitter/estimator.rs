//! The delay estimator: how long must a frame wait after its nominal arrival so that (nearly)
//! every frame is there in time?
//!
//! Each arrival gives a *relative transit* `d = arrival_us - media_us(timestamp)`: the unknown
//! clock offset between sender and receiver plus the network delay. The smallest `d` over a
//! sliding window (8 blocks of 1 s) is the fastest path; `j = d - d_min` is how late a frame
//! was compared to that. A histogram of `j` in 1 ms buckets with exponential forgetting (NetEQ
//! style) gives a high quantile `q`; the *allowance* `A` is how long after its nominal arrival
//! (`media_us + d_min`) a frame is played at the earliest.
//!
//! - Grow fast: a quantile above `A` raises `A` at once; so does any frame that arrives after
//!   its due time (`A` jumps to cover it).
//! - Shrink slowly: when the quantile falls, `A` follows at no more than `shrink_us_per_s`.
//! - Bounds: `A` stays within `[min_delay - frame, max_delay - frame]`, so the target delay
//!   (the longest a frame waits, `A + frame`) stays within `[min_delay, max_delay]`.

use super::Config;

/// Width of a histogram bucket in µs.
const BUCKET_US: i64 = 1_000;
/// Length of one block of the sliding minimum, in µs of arrival time.
const BLOCK_US: u64 = 1_000_000;
/// Number of blocks in the sliding minimum (the fastest path is remembered for 7–8 s).
const MIN_BLOCKS: usize = 8;
/// Extra allowance added to a late frame's lateness when growing for it, in µs.
const LATE_MARGIN_US: i64 = 2_000;
/// How long a loss keeps the allowance at one frame or more (FEC needs the next packet).
const LOSS_HOLD_US: u64 = 10_000_000;

#[derive(Clone, Debug)]
pub(crate) struct Estimator {
    hist: Vec<f32>,
    /// The `d_min` the histogram's buckets are relative to.
    hist_ref: i64,
    samples: u32,
    forget_window: u32,
    quantile: f32,
    blocks: [i64; MIN_BLOCKS],
    block_index: usize,
    block_start: Option<u64>,
    d_min: Option<i64>,
    allowance: i64,
    allowance_min: i64,
    allowance_max: i64,
    shrink_us_per_s: i64,
    last_decay_us: Option<u64>,
    /// A lower bound on the allowance, in force until the given time.
    floor: Option<(i64, u64)>,
}

impl Estimator {
    pub(crate) fn new(config: &Config) -> Estimator {
        let frame_us = config.frame.as_micros() as i64;
        let allowance_min = (config.min_delay_ms as i64 * 1_000 - frame_us).max(0);
        let allowance_max = (config.max_delay_ms as i64 * 1_000 - frame_us).max(allowance_min);
        let buckets = (allowance_max / BUCKET_US + 2) as usize;
        Estimator {
            hist: vec![0.0; buckets],
            hist_ref: 0,
            samples: 0,
            forget_window: config.forget_window_frames.max(1),
            quantile: config.quantile.clamp(0.5, 1.0),
            blocks: [i64::MAX; MIN_BLOCKS],
            block_index: 0,
            block_start: None,
            d_min: None,
            allowance: allowance_min,
            allowance_min,
            allowance_max,
            shrink_us_per_s: config.shrink_ms_per_s as i64 * 1_000,
            last_decay_us: None,
            floor: None,
        }
    }

    /// Smallest relative transit in the window (None before the first arrival).
    pub(crate) fn d_min(&self) -> Option<i64> {
        self.d_min
    }

    /// Current allowance in µs.
    pub(crate) fn allowance(&self) -> i64 {
        self.allowance
    }

    /// Records one arrival with relative transit `d` at `arrival_us`. Returns `j`, how late it
    /// was compared to the fastest path, in µs.
    pub(crate) fn observe(&mut self, d: i64, arrival_us: u64) -> i64 {
        self.update_min(d, arrival_us);
        // `update_min` always leaves a minimum set.
        let d_min = self.d_min.unwrap_or(d);
        let j = d - d_min;
        let bucket = ((d - self.hist_ref).max(0) / BUCKET_US) as usize;
        let bucket = bucket.min(self.hist.len() - 1);
        // Equal weights until the window fills, then exponential forgetting.
        self.samples = self.samples.saturating_add(1);
        let n = self.samples.min(self.forget_window) as f32;
        let keep = 1.0 - 1.0 / n;
        for w in self.hist.iter_mut() {
            *w *= keep;
        }
        self.hist[bucket] += 1.0 - keep;
        let q = self.quantile_us();
        if q > self.allowance {
            self.allowance = q.min(self.allowance_max);
        }
        j
    }

    /// A frame arrived `j` µs after the fastest path and after its playout slot had passed (or
    /// while the playout waited for it): grow at once to cover it next time.
    pub(crate) fn grow_for_late(&mut self, j: i64) {
        let want = (j + LATE_MARGIN_US).clamp(self.allowance_min, self.allowance_max);
        self.allowance = self.allowance.max(want);
    }

    /// Keeps the allowance at `frame_us` (plus a margin) or more for a while: after a loss,
    /// so that the packet after the next lost one is already buffered and its FEC usable.
    pub(crate) fn hold_floor(&mut self, frame_us: i64, now_us: u64) {
        let floor = (frame_us + LATE_MARGIN_US).clamp(self.allowance_min, self.allowance_max);
        self.floor = Some((floor, now_us + LOSS_HOLD_US));
        self.allowance = self.allowance.max(floor);
    }

    /// Lets the allowance shrink towards the quantile, at most `shrink_us_per_s`.
    pub(crate) fn decay(&mut self, now_us: u64) {
        let Some(last) = self.last_decay_us.replace(now_us) else {
            return;
        };
        let dt = now_us.saturating_sub(last) as i64;
        let mut q = self.quantile_us();
        match self.floor {
            Some((floor, until)) if now_us < until => q = q.max(floor),
            Some(_) => self.floor = None,
            None => {}
        }
        if self.allowance > q {
            let step = self.shrink_us_per_s * dt / 1_000_000;
            self.allowance = (self.allowance - step).max(q);
        }
    }

    /// Forgets the fastest path (a restarted stream has a new clock offset); keeps the shape of
    /// the jitter distribution.
    pub(crate) fn reset_clock(&mut self) {
        self.blocks = [i64::MAX; MIN_BLOCKS];
        self.block_start = None;
        self.d_min = None;
    }

    /// The quantile of the histogram as an allowance in µs, within the bounds.
    fn quantile_us(&self) -> i64 {
        let total: f32 = self.hist.iter().sum();
        if total <= 0.0 {
            return self.allowance_min;
        }
        let target = self.quantile * total;
        let mut acc = 0.0;
        let mut bucket = self.hist.len() - 1;
        for (b, w) in self.hist.iter().enumerate() {
            acc += w;
            if acc >= target * (1.0 - 1e-6) {
                bucket = b;
                break;
            }
        }
        // Upper edge of the bucket, re-expressed relative to the current d_min.
        let offset = self.hist_ref - self.d_min.unwrap_or(self.hist_ref);
        ((bucket as i64 + 1) * BUCKET_US + offset).clamp(self.allowance_min, self.allowance_max)
    }

    fn update_min(&mut self, d: i64, arrival_us: u64) {
        match self.block_start {
            None => {
                self.block_start = Some(arrival_us);
                self.blocks = [i64::MAX; MIN_BLOCKS];
                self.block_index = 0;
            }
            Some(start) if arrival_us >= start + BLOCK_US => {
                let elapsed = (arrival_us - start) / BLOCK_US;
                if elapsed as usize >= MIN_BLOCKS {
                    self.blocks = [i64::MAX; MIN_BLOCKS];
                } else {
                    for _ in 0..elapsed {
                        self.block_index = (self.block_index + 1) % MIN_BLOCKS;
                        self.blocks[self.block_index] = i64::MAX;
                    }
                }
                self.block_start = Some(start + elapsed * BLOCK_US);
            }
            Some(_) => {}
        }
        let slot = &mut self.blocks[self.block_index];
        *slot = (*slot).min(d);
        let new_min = self.blocks.iter().copied().min().unwrap_or(d);
        if self.d_min.is_none() {
            self.hist_ref = new_min;
        }
        self.d_min = Some(new_min);
        self.rebase_histogram(new_min);
    }

    /// Keeps histogram buckets relative to the current fastest path, in whole buckets.
    fn rebase_histogram(&mut self, d_min: i64) {
        let shift = (d_min - self.hist_ref) / BUCKET_US;
        if shift == 0 {
            return;
        }
        self.hist_ref += shift * BUCKET_US;
        let len = self.hist.len() as i64;
        let mut moved = vec![0.0f32; self.hist.len()];
        for (b, &w) in self.hist.iter().enumerate() {
            // A faster path (shift < 0) makes every old frame later: buckets move up.
            let nb = (b as i64 - shift).clamp(0, len - 1) as usize;
            moved[nb] += w;
        }
        self.hist = moved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FrameDuration;

    fn est() -> Estimator {
        Estimator::new(&Config::new(FrameDuration::Ms20))
    }

    #[test]
    fn no_jitter_keeps_the_minimum() {
        let mut e = est();
        for i in 0..500u64 {
            e.observe(5_000, i * 20_000);
            e.decay(i * 20_000);
        }
        // One 1 ms bucket of allowance at most.
        assert!(e.allowance() <= 1_000, "{}", e.allowance());
        assert_eq!(e.d_min(), Some(5_000));
    }

    #[test]
    fn grows_fast_and_shrinks_slowly() {
        let mut e = est();
        let mut t = 0;
        // Uniform jitter 0..40 ms.
        for i in 0..500u64 {
            t = i * 20_000;
            e.observe(((i * 7_919) % 40_000) as i64, t);
            e.decay(t);
        }
        let grown = e.allowance();
        assert!((36_000..=42_000).contains(&grown), "{grown}");
        // The jitter stops: the allowance decays at 20 ms/s at most.
        for i in 1..=50u64 {
            e.observe(0, t + i * 20_000);
            e.decay(t + i * 20_000);
        }
        assert!(
            e.allowance() >= grown - 21_000,
            "{} vs {grown}",
            e.allowance()
        );
        for i in 51..=2500u64 {
            e.observe(0, t + i * 20_000);
            e.decay(t + i * 20_000);
        }
        assert!(e.allowance() <= 1_000, "{}", e.allowance());
    }

    #[test]
    fn late_frames_raise_the_allowance_at_once_within_bounds() {
        let mut e = est();
        e.observe(0, 0);
        e.grow_for_late(50_000);
        assert_eq!(e.allowance(), 52_000);
        e.grow_for_late(10_000_000);
        assert_eq!(e.allowance(), 180_000);
    }

    #[test]
    fn a_faster_path_rebases_the_histogram() {
        let mut e = est();
        for i in 0..100u64 {
            e.observe(10_000, i * 20_000);
        }
        // Suddenly 8 ms faster: the old frames were 8 ms late compared to this path.
        e.observe(2_000, 100 * 20_000);
        assert_eq!(e.d_min(), Some(2_000));
        assert!(e.allowance() >= 8_000, "{}", e.allowance());
    }
}
