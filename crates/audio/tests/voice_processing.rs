//! Voice processing on synthetic paths: an echo path (the far end played, delayed, attenuated
//! and smeared, picked up again by the microphone) must come out at least 20 dB quieter once the
//! canceller has converged, while a near-end talker over it stays; steady noise must come out
//! quieter while speech keeps its level. Without processing nothing changes, so each figure is
//! against doing nothing. And a far end that falls silent must not make processing dearer.

mod support;

use ruang_audio::FrameDuration;
use ruang_audio::voice::{BLOCK, VoiceConfig, VoiceProcessor};
use support::{best_lag, correlation, voice};

const RATE: usize = 48_000;

/// Longest delay the processing may add that the comparisons look for (20 ms).
const MAX_LAG: usize = RATE / 50;

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// The loudspeaker-to-microphone path: 40 ms of delay, −6 dB, and two reflections.
fn echo_of(far: &[f32]) -> Vec<f32> {
    let taps = [(40usize, 0.5f32), (46, 0.2), (55, 0.08)];
    let mut out = vec![0.0; far.len()];
    for (ms, gain) in taps {
        let d = ms * RATE / 1000;
        for i in d..far.len() {
            out[i] += far[i - d] * gain;
        }
    }
    out
}

/// Loudness envelope: RMS per 10 ms.
fn envelope(x: &[f32]) -> Vec<f32> {
    x.chunks(RATE / 100)
        .map(|c| (energy(c) / c.len() as f64).sqrt() as f32)
        .collect()
}

/// Deterministic white noise at `amplitude` (uniform).
fn noise(len: usize, amplitude: f32, mut seed: u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0) * amplitude
        })
        .collect()
}

/// Runs `mic` through a processor frame by frame (20 ms), rendering `far` alongside as a
/// playout thread would.
fn process(config: VoiceConfig, far: &[f32], mic: &[f32]) -> Vec<f32> {
    let mut p = VoiceProcessor::new(config);
    p.set_delay_ms(0);
    let frame = 2 * BLOCK;
    let mut out = Vec::with_capacity(mic.len());
    for (i, chunk) in mic.chunks_exact(frame).enumerate() {
        p.render(&far[i * frame..(i + 1) * frame]);
        let mut f = chunk.to_vec();
        p.capture(&mut f);
        out.extend_from_slice(&f);
    }
    out
}

#[test]
fn echo_comes_out_at_least_20_db_quieter_after_convergence() {
    let seconds = 12.0;
    let far = voice(5, seconds, FrameDuration::Ms20);
    let echo = echo_of(&far);
    let floor = noise(echo.len(), 0.0005, 9);
    let mic: Vec<f32> = echo.iter().zip(&floor).map(|(e, n)| e + n).collect();
    let converged = 4 * RATE;
    for (label, config) in [
        (
            "echo cancellation alone",
            VoiceConfig {
                echo_cancellation: true,
                noise_suppression: false,
                gain_control: false,
            },
        ),
        ("the microphone defaults", VoiceConfig::microphone()),
    ] {
        let out = process(config, &far, &mic);
        let erle = db(energy(&mic[converged..]) / energy(&out[converged..]).max(1e-12));
        eprintln!("{label}: ERLE {erle:.1} dB after 4 s");
        assert!(erle >= 20.0, "{label}: ERLE {erle:.1} dB");
    }
    // Doing nothing removes nothing: the figure above is the processor's.
    let out = process(VoiceConfig::off(), &far, &mic);
    assert_eq!(out, mic[..out.len()]);
}

#[test]
fn a_near_end_talker_stays_over_the_echo() {
    let seconds = 12.0;
    let far = voice(5, seconds, FrameDuration::Ms20);
    let near = voice(77, seconds, FrameDuration::Ms20);
    let echo = echo_of(&far);
    // The near end talks from 6 s on, over the far end's echo.
    let start = 6 * RATE;
    let mic: Vec<f32> = echo
        .iter()
        .enumerate()
        .map(|(i, e)| e + if i >= start { near[i] } else { 0.0 })
        .collect();
    // Gain control is left out here: it changes the level over time by design (its own test
    // below).
    let config = VoiceConfig {
        gain_control: false,
        ..VoiceConfig::microphone()
    };
    let out = process(config, &far, &mic);
    // The processing delays its output by a few ms (band-splitting filters).
    let end = out.len() - MAX_LAG;
    // Compared by 10 ms loudness envelopes (the filters change the waveform's phase, not
    // what is heard), at the processing's delay (searched in 1 ms steps).
    let (lag, kept) = (0..=MAX_LAG)
        .step_by(RATE / 1000)
        .map(|lag| {
            let c = correlation(
                &envelope(&near[start..end]),
                &envelope(&out[start + lag..end + lag]),
            );
            (lag, c)
        })
        .fold((0, f64::MIN), |b, c| if c.1 > b.1 { c } else { b });
    let before = correlation(&envelope(&near[start..end]), &envelope(&mic[start..end]));
    eprintln!(
        "near-end envelope correlation: {before:.3} in the microphone, {kept:.3} after \
         (output {:.1} ms later)",
        lag as f64 * 1000.0 / RATE as f64
    );
    assert!(kept >= 0.8, "near end envelope correlation {kept:.3}");
    let level = db(energy(&out[start + lag..end + lag]) / energy(&near[start..end]));
    assert!(level >= -4.0, "near end level {level:+.1} dB");
    // Before the near end talks, the echo is gone as in the test above.
    let erle = db(energy(&mic[4 * RATE..start]) / energy(&out[4 * RATE..start]).max(1e-12));
    assert!(erle >= 20.0, "ERLE {erle:.1} dB before the double talk");
}

#[test]
fn steady_noise_comes_out_quieter_and_speech_keeps_its_level() {
    let seconds = 10.0;
    let speech = voice(21, seconds, FrameDuration::Ms20);
    // Speech only from 4 s on; white noise throughout, ~10 dB under the speech.
    let start = 4 * RATE;
    let speech: Vec<f32> = speech
        .iter()
        .enumerate()
        .map(|(i, &s)| if i >= start { s } else { 0.0 })
        .collect();
    let speech_rms = (energy(&speech[start..]) / (speech.len() - start) as f64).sqrt();
    let hiss = noise(speech.len(), (speech_rms * 0.55) as f32, 3);
    let mic: Vec<f32> = speech.iter().zip(&hiss).map(|(s, n)| s + n).collect();
    let config = VoiceConfig {
        echo_cancellation: false,
        noise_suppression: true,
        gain_control: false,
    };
    let silent = vec![0.0; mic.len()];
    let out = process(config, &silent, &mic);
    // Noise alone, after a second of adaptation.
    let (a, b) = (RATE, start);
    let noise_cut = db(energy(&mic[a..b]) / energy(&out[a..b]).max(1e-12));
    // Speech over noise: the output's speech-to-noise ratio (speech stretch against the
    // noise-only stretch) against the input's.
    let ratio = |x: &[f32]| {
        let speech_power = energy(&x[start..]) / (x.len() - start) as f64;
        let noise_power = energy(&x[a..b]) / (b - a) as f64;
        db(speech_power / noise_power)
    };
    let snr_gain = ratio(&out) - ratio(&mic);
    let end = speech.len() - MAX_LAG;
    let (lag, _) = best_lag(&speech[start..end], &out[start..], MAX_LAG);
    let level = db(energy(&out[start + lag..end + lag]) / energy(&speech[start..end]));
    eprintln!(
        "noise alone {noise_cut:.1} dB quieter; speech-to-noise ratio {snr_gain:+.1} dB; \
         speech level {level:+.1} dB"
    );
    assert!(noise_cut >= 10.0, "noise cut by {noise_cut:.1} dB");
    assert!(
        snr_gain >= 8.0,
        "speech-to-noise ratio up by {snr_gain:.1} dB"
    );
    assert!(level >= -4.0, "speech level {level:+.1} dB");
}

#[test]
fn gain_control_raises_a_quiet_voice_and_keeps_a_loud_one_unclipped() {
    let config = VoiceConfig {
        echo_cancellation: false,
        noise_suppression: false,
        gain_control: true,
    };
    let silent = vec![0.0; 10 * RATE];
    let settled = 5 * RATE;
    let base = voice(31, 10.0, FrameDuration::Ms20);
    let peak = base.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // A talker far from the microphone: peaks at −30 dBFS.
    let quiet: Vec<f32> = base.iter().map(|v| v / peak * 0.0316).collect();
    let out = process(config, &silent, &quiet);
    let raised = db(energy(&out[settled..]) / energy(&quiet[settled..quiet.len()]));
    // A talker too close: peaks at full scale.
    let loud: Vec<f32> = base.iter().map(|v| v / peak).collect();
    let out_loud = process(config, &silent, &loud);
    let loud_peak = out_loud.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let loud_change = db(energy(&out_loud[settled..]) / energy(&loud[settled..]));
    eprintln!(
        "quiet voice raised {raised:+.1} dB; loud voice {loud_change:+.1} dB, peaks at \
         {loud_peak:.3}"
    );
    assert!(raised >= 6.0, "quiet voice raised by {raised:.1} dB");
    assert!(
        loud_change <= 1.0,
        "loud voice raised by {loud_change:.1} dB"
    );
    assert!(loud_peak <= 1.0, "loud voice peaks at {loud_peak}");
}

/// This thread's CPU time so far, ns (`None` where `/proc/thread-self/schedstat` is missing).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of processing `mic` with `far` played, from `from_s` seconds to the end, ns.
fn cpu_of_the_tail(far: &[f32], mic: &[f32], from_s: usize) -> Option<u64> {
    let mut p = VoiceProcessor::new(VoiceConfig::microphone());
    p.set_delay_ms(0);
    let frame = 2 * BLOCK;
    let mut started = None;
    for (i, chunk) in mic.chunks_exact(frame).enumerate() {
        if i * frame == from_s * RATE {
            started = Some(thread_cpu_ns()?);
        }
        p.render(&far[i * frame..(i + 1) * frame]);
        let mut f = chunk.to_vec();
        p.capture(&mut f);
    }
    Some(thread_cpu_ns()?.saturating_sub(started?))
}

/// A player's silence is exact zeros. From there the echo canceller's states decayed into
/// subnormal floats, which x86 computes tens of times slower: once the far end had stopped
/// talking, a microphone's processing took ~1.9 ms of CPU per 20 ms frame (10 % of a core)
/// instead of ~0.3 ms. Compared with a far end that never falls silent (steady noise), so the
/// machine's speed cancels out.
#[test]
fn a_silent_far_end_costs_no_more_than_a_talking_one() {
    let seconds = 12.0;
    let len = (seconds * RATE as f32) as usize;
    let floor = noise(len, 0.0005, 9);
    let talking_then_silent: Vec<f32> = voice(3, 4.0, FrameDuration::Ms20)
        .into_iter()
        .chain(std::iter::repeat(0.0))
        .take(len)
        .collect();
    let never_silent = noise(len, 0.05, 4);
    let mic_of = |far: &[f32]| -> Vec<f32> {
        echo_of(far)
            .iter()
            .zip(&floor)
            .map(|(e, n)| e + n)
            .collect()
    };
    // Measured from 3 s after the far end fell silent.
    let (Some(silent), Some(steady)) = (
        cpu_of_the_tail(&talking_then_silent, &mic_of(&talking_then_silent), 7),
        cpu_of_the_tail(&never_silent, &mic_of(&never_silent), 7),
    ) else {
        eprintln!("no per-thread CPU time here; skipped");
        return;
    };
    let per_frame = |ns: u64| ns as f64 / 1e3 / 250.0;
    eprintln!(
        "CPU per 20 ms frame: far end silent {:.0} µs, far end never silent {:.0} µs",
        per_frame(silent),
        per_frame(steady)
    );
    assert!(
        silent < 2 * steady,
        "a silent far end cost {:.0} µs a frame, a steady one {:.0} µs",
        per_frame(silent),
        per_frame(steady)
    );
}
