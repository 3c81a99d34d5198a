//! The mixer: loud speakers together never clip or wrap; silence stays silence; a single quiet
//! speaker passes untouched.

use ruang_audio::FrameDuration;
use ruang_audio::mixer::{KNEE, Mixer};
use ruang_audio::source::{Source, ToneSource};

const FRAME: FrameDuration = FrameDuration::Ms20;

fn tone(freq: f32, amp: f32, frames: usize) -> Vec<Vec<f32>> {
    let mut src = ToneSource::new(freq, amp, FRAME);
    (0..frames)
        .map(|_| {
            let mut f = vec![0.0; FRAME.samples()];
            src.next_frame(&mut f).unwrap();
            f
        })
        .collect()
}

#[test]
fn two_loud_tones_do_not_clip_or_wrap() {
    let a = tone(440.0, 0.9, 100);
    let b = tone(660.0, 0.9, 100);
    let mut mixer = Mixer::new(FRAME);
    let mut out = vec![0.0; FRAME.samples()];
    let mut all = Vec::new();
    let mut sums = Vec::new();
    for (fa, fb) in a.iter().zip(&b) {
        mixer.mix([fa.as_slice(), fb.as_slice()], &mut out);
        all.extend_from_slice(&out);
        sums.extend(fa.iter().zip(fb).map(|(x, y)| x + y));
    }
    // The raw sum peaks near 1.8: it would clip.
    assert!(sums.iter().fold(0.0f32, |m, x| m.max(x.abs())) > 1.7);
    // Never at or beyond full scale...
    assert!(all.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
    let peak = all.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(peak < 1.0 && peak > 0.5, "peak {peak}");
    // ...and no wrap-around: wherever the sum is clearly positive or negative, so is the mix.
    for (i, (&y, &s)) in all.iter().zip(&sums).enumerate() {
        if s.abs() > 0.05 {
            assert_eq!(y.signum(), s.signum(), "sample {i}: sum {s} became {y}");
        }
    }
    // No clicks: the output moves no faster than the input can (tones of at most 660 Hz).
    let max_step = all
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    let max_in_step = sums
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_step <= max_in_step + 1e-3,
        "step {max_step} vs input {max_in_step}"
    );
}

#[test]
fn silence_in_silence_out() {
    let mut mixer = Mixer::new(FRAME);
    let mut out = vec![1.0; FRAME.samples()];
    let silent = vec![0.0; FRAME.samples()];
    for _ in 0..10 {
        mixer.mix(
            [silent.as_slice(), silent.as_slice(), silent.as_slice()],
            &mut out,
        );
        assert!(out.iter().all(|&x| x == 0.0));
    }
    out.fill(1.0);
    mixer.mix(std::iter::empty(), &mut out);
    assert!(out.iter().all(|&x| x == 0.0));
}

#[test]
fn a_quiet_speaker_passes_untouched() {
    let a = tone(300.0, KNEE * 0.9, 20);
    let mut mixer = Mixer::new(FRAME);
    let mut out = vec![0.0; FRAME.samples()];
    for f in &a {
        mixer.mix([f.as_slice()], &mut out);
        assert_eq!(&out, f);
    }
    // Gains apply before the limiter.
    mixer.mix_with_gains([(a[0].as_slice(), 0.5)], &mut out);
    for (o, x) in out.iter().zip(&a[0]) {
        assert!((o - 0.5 * x).abs() < 1e-7);
    }
}
