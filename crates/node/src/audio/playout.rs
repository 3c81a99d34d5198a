//! The playout thread: every frame period, on absolute deadlines, pull one frame from each
//! speaker's jitter buffer, mix, and write to the sink.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
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

/// Frames waiting for the playout thread: a second of 10 ms frames from five speakers. The
/// thread takes them all every frame period; if it stalls that long, new frames are dropped
/// (the ones waiting are already late).
pub const FRAME_QUEUE: usize = 512;

/// A frame on its way to the playout thread.
struct Incoming {
    speaker: PublicKey,
    frame: Frame,
    arrival_us: u64,
}

/// Whose frames and buffers the playout keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Keeping {
    /// Whoever the receive task sends (no setting yet).
    Everyone,
    /// These speakers only.
    Only(HashSet<PublicKey>),
    /// Nobody (not in a room).
    Nobody,
}

impl Keeping {
    fn keeps(&self, speaker: &PublicKey) -> bool {
        match self {
            Keeping::Everyone => true,
            Keeping::Only(speakers) => speakers.contains(speaker),
            Keeping::Nobody => false,
        }
    }
}

/// Which speakers the playout keeps, set by the node task on every audio-policy change
/// (before the receive task's policy, so a newly allowed speaker's frames never meet an older
/// setting) and taken by the playout thread (the latest wins; the thread never waits for it).
#[derive(Debug, Default)]
pub struct Keep(Mutex<Option<Keeping>>);

/// The node task holds [`Keep`]'s slot right now.
#[derive(Debug, PartialEq, Eq)]
struct Busy;

impl Keep {
    /// From now on keep only `speakers`' frames and buffers (`None`: nobody's, the room was
    /// left).
    pub fn set(&self, speakers: Option<HashSet<PublicKey>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(speakers.map_or(Keeping::Nobody, Keeping::Only));
    }

    /// The latest setting not yet taken; [`Busy`] while the node task holds the slot.
    fn take(&self) -> Result<Option<Keeping>, Busy> {
        match self.0.try_lock() {
            Ok(mut slot) => Ok(slot.take()),
            Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner().take()),
            Err(std::sync::TryLockError::WouldBlock) => Err(Busy),
        }
    }
}

/// The receive task's end of the frame queue ([`frame_queue`]).
#[derive(Clone, Debug)]
pub struct FrameSender {
    tx: SyncSender<Incoming>,
}

impl FrameSender {
    /// Queues a frame of `speaker` that arrived at `arrival_us` (node clock); `false` when the
    /// queue is full or the playout it fed has stopped.
    pub fn send(&self, speaker: PublicKey, frame: Frame, arrival_us: u64) -> bool {
        self.tx
            .try_send(Incoming {
                speaker,
                frame,
                arrival_us,
            })
            .is_ok()
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("speaker", &self.speaker)
            .field("arrival_us", &self.arrival_us)
            .finish_non_exhaustive()
    }
}

/// The playout side of the frame queue: the jitter buffers of every remote speaker, owned by
/// the playout thread. The receive task reaches them only through the queue, so the real-time
/// thread shares no lock with it.
pub struct Mixing {
    frame: FrameDuration,
    speakers: HashMap<PublicKey, Slot>,
    frames: Receiver<Incoming>,
    keep: Arc<Keep>,
    keeping: Keeping,
}

/// A queue of frames from the receive task to the playout thread, for streams of `frame`
/// duration, with `keep` saying whose buffers to keep.
pub fn frame_queue(frame: FrameDuration, keep: Arc<Keep>) -> (FrameSender, Mixing) {
    let (tx, frames) = sync_channel(FRAME_QUEUE);
    (
        FrameSender { tx },
        Mixing {
            frame,
            speakers: HashMap::new(),
            frames,
            keep,
            keeping: Keeping::Everyone,
        },
    )
}

impl Mixing {
    /// Buffers a frame of `speaker` that arrived at `arrival_us` (node clock).
    fn push(&mut self, speaker: PublicKey, frame: Frame, arrival_us: u64) {
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

    /// Takes what the queue and the node task have for it: the latest speakers to keep, then
    /// every frame waiting from those (the playout thread, at the start of every period;
    /// public for the benchmark of a listener's CPU). While the node task is setting whom to
    /// keep, the frames wait for the next period: one queued after that setting must not meet
    /// the one before it.
    pub fn take_incoming(&mut self) {
        match self.keep.take() {
            Err(Busy) => return,
            Ok(None) => {}
            Ok(Some(keeping)) => {
                self.speakers.retain(|k, _| keeping.keeps(k));
                self.keeping = keeping;
            }
        }
        while let Ok(incoming) = self.frames.try_recv() {
            // Frames accepted before a mute or a ban may still be queued after it.
            if self.keeping.keeps(&incoming.speaker) {
                self.push(incoming.speaker, incoming.frame, incoming.arrival_us);
            }
        }
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
        mut mixing: Mixing,
        far_end: Arc<super::FarEnd>,
        clock: Clock,
        events: mpsc::Sender<AudioEvent>,
    ) -> std::io::Result<Playout> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let frame = mixing.frame;
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
                        let m = &mut mixing;
                        m.take_incoming();
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

#[cfg(test)]
mod tests {
    use super::*;
    use ruang_audio::wire::Flags;

    fn frame(seq: u32) -> Frame {
        Frame {
            speaker: 1,
            seq,
            timestamp: seq * 960,
            level: 127,
            flags: Flags::default(),
            payload: Vec::new(),
        }
    }

    fn buffered(m: &Mixing) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = m.speakers.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn queued_frames_reach_the_buffers_and_keep_drops_the_others() {
        let keep = Arc::new(Keep::default());
        let (queue, mut mixing) = frame_queue(FrameDuration::Ms20, keep.clone());
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        assert!(queue.send(a, frame(0), 0));
        assert!(queue.send(b, frame(0), 0));
        // Nothing reaches the buffers until the playout thread takes it.
        assert!(buffered(&mixing).is_empty());
        mixing.take_incoming();
        assert_eq!(buffered(&mixing), vec![a, b]);
        // `a` is muted: its frame accepted before that, still queued, is not played.
        assert!(queue.send(a, frame(1), 20_000));
        keep.set(Some([b].into_iter().collect()));
        mixing.take_incoming();
        assert_eq!(buffered(&mixing), vec![b]);
        keep.set(None);
        assert!(queue.send(b, frame(1), 20_000));
        mixing.take_incoming();
        assert!(buffered(&mixing).is_empty());
    }

    #[test]
    fn a_full_queue_turns_frames_away_and_a_stopped_playout_takes_none() {
        let (queue, mixing) = frame_queue(FrameDuration::Ms20, Arc::default());
        let a = PublicKey([1; 32]);
        for seq in 0..FRAME_QUEUE as u32 {
            assert!(queue.send(a, frame(seq), 0));
        }
        assert!(!queue.send(a, frame(FRAME_QUEUE as u32), 0));
        drop(mixing);
        let (queue, mixing) = frame_queue(FrameDuration::Ms20, Arc::default());
        drop(mixing);
        assert!(!queue.send(a, frame(0), 0));
    }

    #[test]
    fn while_the_node_task_sets_whom_to_keep_frames_wait() {
        let keep = Arc::new(Keep::default());
        let (queue, mut mixing) = frame_queue(FrameDuration::Ms20, keep.clone());
        let a = PublicKey([1; 32]);
        keep.set(Some([a].into_iter().collect()));
        assert!(queue.send(a, frame(0), 0));
        let held = keep.0.lock().unwrap_or_else(|p| p.into_inner());
        // Never waited for: this period takes nothing.
        assert_eq!(keep.take(), Err(Busy));
        mixing.take_incoming();
        assert!(buffered(&mixing).is_empty());
        drop(held);
        mixing.take_incoming();
        assert_eq!(buffered(&mixing), vec![a]);
        assert_eq!(keep.take(), Ok(None));
    }
}
