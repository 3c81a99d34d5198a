//! The playout thread: every frame period, on absolute deadlines, pull one frame from each
//! speaker's jitter buffer, mix, and write to the sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ruang_audio::format::FrameDuration;
use ruang_audio::jitter::{self, SpeakerStream};
use ruang_audio::mixer::Mixer;
use ruang_audio::sink::Sink;
use ruang_audio::wire::Frame;
use ruang_proto::PublicKey;
use tokio::sync::mpsc;

use super::AudioEvent;
use crate::clock::Clock;

/// Most remote speakers buffered at once (a stage is small; this bounds memory if a bug or an
/// attack lets many through).
pub const MAX_SPEAKERS: usize = 64;
/// How often, in frames, the playout reports statistics (once a second at 20 ms).
const STATS_EVERY_MS: u64 = 1_000;

struct Slot {
    stream: SpeakerStream,
    talking: bool,
}

/// The jitter buffers of every remote speaker, shared by the receive task (push) and the
/// playout thread (pull). Each lock is held for one push or one frame's pulls.
pub struct Mixing {
    frame: FrameDuration,
    speakers: HashMap<PublicKey, Slot>,
}

/// Shared handle on [`Mixing`].
pub type SharedMixing = Arc<Mutex<Mixing>>;

impl Mixing {
    /// Empty, for streams of `frame` duration.
    pub fn new(frame: FrameDuration) -> SharedMixing {
        Arc::new(Mutex::new(Mixing {
            frame,
            speakers: HashMap::new(),
        }))
    }

    /// Buffers a frame of `speaker` that arrived at `arrival_us` (node clock).
    pub fn push(&mut self, speaker: PublicKey, frame: Frame, arrival_us: u64) {
        if !self.speakers.contains_key(&speaker) {
            if self.speakers.len() >= MAX_SPEAKERS {
                return;
            }
            let Ok(stream) = SpeakerStream::new(jitter::Config::new(self.frame)) else {
                return;
            };
            self.speakers.insert(
                speaker,
                Slot {
                    stream,
                    talking: false,
                },
            );
        }
        if let Some(slot) = self.speakers.get_mut(&speaker) {
            slot.stream.push(frame, arrival_us);
        }
    }

    /// Keeps only the speakers for which `keep` holds.
    pub fn retain(&mut self, keep: impl Fn(&PublicKey) -> bool) {
        self.speakers.retain(|k, _| keep(k));
    }

    /// Forgets everyone (left the room).
    pub fn clear(&mut self) {
        self.speakers.clear();
    }
}

/// A running playout thread; dropping it stops the thread and finishes the sink.
pub struct Playout {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Playout {
    /// Starts playing the mix of `mixing` into `sink`, one frame per period from now; every
    /// frame played is offered to `far_end` (the echo canceller's reference).
    pub fn spawn(
        mut sink: Box<dyn Sink + Send>,
        mixing: SharedMixing,
        far_end: Arc<super::FarEnd>,
        clock: Clock,
        events: mpsc::Sender<AudioEvent>,
    ) -> std::io::Result<Playout> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let frame = mixing.lock().unwrap_or_else(|p| p.into_inner()).frame;
        let thread = std::thread::Builder::new()
            .name("ruang-playout".into())
            .spawn(move || {
                let frame_us = frame.as_micros();
                let stats_every = (STATS_EVERY_MS * 1_000 / frame_us).max(1);
                let mut mixer = Mixer::new(frame);
                let mut out = vec![0.0f32; frame.samples()];
                let mut pcm: Vec<Vec<f32>> = Vec::new();
                let mut changes: Vec<(PublicKey, bool)> = Vec::new();
                let t0 = clock.now_us();
                for i in 0u64.. {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let due = t0 + i * frame_us;
                    clock.sleep_until(due);
                    let now = clock.now_us().max(due);
                    {
                        let mut m = mixing.lock().unwrap_or_else(|p| p.into_inner());
                        let n = m.speakers.len();
                        if pcm.len() < n {
                            pcm.resize_with(n, || vec![0.0; frame.samples()]);
                        }
                        for (index, (key, slot)) in m.speakers.iter_mut().enumerate() {
                            let pulled = slot.stream.pull(now);
                            pcm[index].copy_from_slice(pulled.pcm);
                            if pulled.activity.active != slot.talking {
                                slot.talking = pulled.activity.active;
                                changes.push((*key, slot.talking));
                            }
                        }
                        mixer.mix(pcm[..n].iter().map(|v| v.as_slice()), &mut out);
                        if i % stats_every == stats_every - 1 {
                            let stats = m
                                .speakers
                                .iter()
                                .map(|(k, s)| (*k, s.stream.stats()))
                                .collect();
                            let _ = events.try_send(AudioEvent::Stats(stats));
                        }
                    }
                    far_end.push(&out);
                    if let Err(e) = sink.push_frame(&out) {
                        let _ = events.try_send(AudioEvent::Error(format!("audio output: {e}")));
                        break;
                    }
                    if i == 0 {
                        let _ = events.try_send(AudioEvent::PlayoutStarted(clock.unix_us(due)));
                    }
                    for (key, active) in changes.drain(..) {
                        let _ = events.try_send(AudioEvent::Speaking(Some(key), active));
                    }
                }
                if let Err(e) = sink.finish() {
                    let _ = events.try_send(AudioEvent::Error(format!("audio output: {e}")));
                }
            })?;
        Ok(Playout {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits until the sink is finished (a WAV or Ogg file is complete
    /// when this returns).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Playout {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The loop checks the flag every frame period; joining makes sure files are
            // finished before the node reports it has left.
            let _ = t.join();
        }
    }
}
