//! A speaker's frames played in periods of another length: each node picks its own frame
//! length, so a listener at 10 ms plays a speaker at 20 ms (half a frame per period) and one
//! at 20 ms plays a speaker at 10 ms (two frames per period). On a clean path every frame is
//! played as decoded, with nothing concealed, stretched or lost.
//!
//! Timing: frame `i` is sent at `T + i × frame` and arrives 3 ms later; the playout pulls at
//! `T + k × period + 6 ms`.

use ruang_audio::FrameDuration;
use ruang_audio::codec::{Decoder, Encoder, EncoderConfig};
use ruang_audio::jitter::{Config, SpeakerStream};
use ruang_audio::source::{Source, VoiceSource};
use ruang_audio::wire::{Flags, Frame};

const T: u64 = 1_000_000;
/// Frames of speech sent.
const FRAMES: u32 = 150;

/// `FRAMES` frames of a synthetic voice at `frame`, encoded, with what each decodes to.
fn speech(frame: FrameDuration) -> (Vec<Frame>, Vec<f32>) {
    let mut source = VoiceSource::new(3, frame);
    let mut encoder = Encoder::new(EncoderConfig {
        frame,
        ..EncoderConfig::default()
    })
    .unwrap();
    let mut decoder = Decoder::new(frame).unwrap();
    let mut pcm = vec![0.0; frame.samples()];
    let mut frames = Vec::new();
    let mut decoded = Vec::new();
    for seq in 0..FRAMES {
        source.next_frame(&mut pcm).unwrap();
        let payload = encoder.encode(&pcm).unwrap();
        decoded.extend_from_slice(decoder.decode(&payload).unwrap());
        frames.push(Frame {
            speaker: 1,
            seq,
            timestamp: seq * frame.ticks(),
            level: 20,
            flags: if seq + 1 == FRAMES {
                Flags::VOICE | Flags::END
            } else {
                Flags::VOICE
            },
            payload,
        });
    }
    (frames, decoded)
}

/// Plays a speaker at `frame` in periods of `period` over a clean path; returns what was
/// played and the stream.
fn play(frame: FrameDuration, period: FrameDuration) -> (Vec<f32>, Vec<f32>, SpeakerStream) {
    let (frames, decoded) = speech(frame);
    let mut stream = SpeakerStream::new(Config::for_period(frame, period)).unwrap();
    let mut out = vec![0.0; period.samples()];
    let mut played = Vec::new();
    let mut next = 0;
    // The speech and half a second more.
    let periods = (u64::from(FRAMES) * frame.as_micros() + 500_000) / period.as_micros();
    for k in 0..periods {
        let now = T + k * period.as_micros() + 6_000;
        while let Some(f) = frames.get(next) {
            let arrival = T + next as u64 * frame.as_micros() + 3_000;
            if arrival > now {
                break;
            }
            stream.push(f.clone(), arrival);
            next += 1;
        }
        stream.pull_into(now, &mut out);
        played.extend_from_slice(&out);
    }
    (played, decoded, stream)
}

/// Plays a speaker at `frame` in periods of `period` and asserts every frame is played as
/// decoded, sample for sample, after some silence, with nothing concealed, stretched or
/// failing to decode; returns how many milliseconds of silence came first.
fn assert_plays_clean(frame: FrameDuration, period: FrameDuration) -> usize {
    let (played, decoded, stream) = play(frame, period);
    let lead = (0..=played.len() - decoded.len())
        .find(|&d| played[d..d + decoded.len()] == *decoded)
        .expect("the speech is played as decoded, without a gap or a repeat");
    assert!(played[..lead].iter().all(|&s| s == 0.0), "silence first");
    let stats = stream.stats();
    assert_eq!(stats.jitter.played, u64::from(FRAMES));
    assert_eq!(
        stats.jitter.concealed + stats.jitter.stretched,
        0,
        "{stats:?}"
    );
    assert_eq!(stats.decode_errors, 0);
    lead / 48
}

#[test]
fn a_listener_at_10_ms_plays_half_a_20_ms_frame_per_period() {
    let lead_ms = assert_plays_clean(FrameDuration::Ms20, FrameDuration::Ms10);
    // The first frame arrives 3 ms in and is played at the next pull after it: no more delay
    // than a listener at 20 ms would add.
    assert!(lead_ms <= 20, "{lead_ms} ms before the speech");
}

#[test]
fn a_listener_at_20_ms_plays_two_10_ms_frames_per_period() {
    // A period plays two frames, so the first waits for the second.
    let lead_ms = assert_plays_clean(FrameDuration::Ms10, FrameDuration::Ms20);
    assert!(lead_ms <= 40, "{lead_ms} ms before the speech");
}

#[test]
fn the_same_length_plays_as_pull_does() {
    for frame in [FrameDuration::Ms10, FrameDuration::Ms20] {
        assert_plays_clean(frame, frame);
    }
}
