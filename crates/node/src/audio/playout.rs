//! The playout thread: every frame period, on absolute deadlines, pull one frame from each
//! speaker's jitter buffer, mix, and write to the sink. The deadlines move earlier, in
//! silence, when the frames arrive well before them ([`Slip`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use ruang_audio::format::FrameDuration;
use ruang_audio::jitter::{self, SpeakerStream};
use ruang_audio::mixer::Mixer;
use ruang_audio::pace::Slip;
use ruang_audio::sink::Sink;
use ruang_audio::wire::Frame;
use ruang_proto::PublicKey;
use ruang_proto::room::RoomId;
use ruang_session::AudioPolicy;
use tokio::sync::mpsc;

use super::{AudioEvent, SharedPolicy};
use crate::clock::Clock;

/// Most remote speakers buffered at once (a stage is small; this bounds memory if a bug or an
/// attack lets many through).
pub const MAX_SPEAKERS: usize = 64;
/// How long a speaker's frames must have stopped before frames of another length start a new
/// buffer for it, µs.
const RESTART_QUIET_US: u64 = 1_000_000;
/// How often, in frames, the playout reports statistics (once a second at 20 ms).
const STATS_EVERY_MS: u64 = 1_000;

struct Slot {
    stream: SpeakerStream,
    /// The length of the speaker's frames (its own choice; the playout's period may differ).
    frame: FrameDuration,
    /// When its latest frame arrived (node clock, µs).
    last_arrival_us: u64,
    talking: bool,
}

/// Frames waiting for the playout thread: a second of 10 ms frames from five speakers. The
/// thread takes them all every frame period; if it stalls that long, new frames are dropped
/// (the ones waiting are already late).
pub const FRAME_QUEUE: usize = 512;

/// A frame on its way to the playout thread.
struct Incoming {
    /// The room its stream's header names.
    room: RoomId,
    speaker: PublicKey,
    /// The length of the speaker's frames, from its stream's header.
    duration: FrameDuration,
    frame: Frame,
    arrival_us: u64,
}

/// The receive task's end of the frame queue ([`frame_queue`]).
#[derive(Clone, Debug)]
pub struct FrameSender {
    tx: SyncSender<Incoming>,
}

impl FrameSender {
    /// Queues a frame of `speaker` in `room` (whose frames are `duration` long) that arrived
    /// at `arrival_us` (node clock); `false` when the queue is full or the playout it fed has
    /// stopped.
    pub fn send(
        &self,
        room: RoomId,
        speaker: PublicKey,
        duration: FrameDuration,
        frame: Frame,
        arrival_us: u64,
    ) -> bool {
        self.tx
            .try_send(Incoming {
                room,
                speaker,
                duration,
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
    /// The playout's period.
    frame: FrameDuration,
    speakers: HashMap<PublicKey, Slot>,
    frames: Receiver<Incoming>,
    policy: Arc<SharedPolicy>,
    /// The policy the buffers were last trimmed to.
    following: Arc<AudioPolicy>,
}

/// A queue of frames from the receive task to a playout thread that plays periods of
/// `frame` (speakers' frames may be longer or shorter); the speakers `policy` allows are
/// kept, the others' buffers dropped.
pub fn frame_queue(frame: FrameDuration, policy: Arc<SharedPolicy>) -> (FrameSender, Mixing) {
    let (tx, frames) = sync_channel(FRAME_QUEUE);
    let following = Arc::clone(&policy.load());
    (
        FrameSender { tx },
        Mixing {
            frame,
            speakers: HashMap::new(),
            frames,
            policy,
            following,
        },
    )
}

impl Mixing {
    /// Buffers a frame of `incoming.speaker`. A speaker that restarted with frames of
    /// another length gets a fresh buffer and decoder.
    fn push(&mut self, incoming: Incoming) {
        let Incoming {
            room: _,
            speaker,
            duration,
            frame,
            arrival_us,
        } = incoming;
        if let Some(slot) = self.speakers.get(&speaker)
            && slot.frame != duration
        {
            // A speaker that restarted with frames of another length; while its frames of
            // the old length still come (two streams at once), the new ones are dropped, so
            // a peer cannot make this thread build a decoder for every frame.
            if arrival_us.saturating_sub(slot.last_arrival_us) < RESTART_QUIET_US {
                return;
            }
            self.speakers.remove(&speaker);
        }
        if !self.speakers.contains_key(&speaker) {
            if self.speakers.len() >= MAX_SPEAKERS {
                return;
            }
            let Ok(stream) = SpeakerStream::new(jitter::Config::new(duration)) else {
                return;
            };
            self.speakers.insert(
                speaker,
                Slot {
                    stream,
                    frame: duration,
                    last_arrival_us: arrival_us,
                    talking: false,
                },
            );
        }
        if let Some(slot) = self.speakers.get_mut(&speaker) {
            slot.last_arrival_us = slot.last_arrival_us.max(arrival_us);
            slot.stream.push(frame, arrival_us);
        }
    }

    /// Takes every frame waiting in the queue into the jitter buffers of the speakers the
    /// policy in force allows, and drops the buffers of those it no longer allows (the
    /// playout thread, at the start of every period; public for the benchmark of a listener's
    /// CPU).
    pub fn take_incoming(&mut self) {
        self.follow_policy();
        while let Ok(incoming) = self.frames.try_recv() {
            if self.keeps(&incoming.room, &incoming.speaker) {
                self.push(incoming);
            }
        }
    }

    /// Whether a queued frame of `speaker` is played. Frames accepted before a mute or a ban
    /// may still be queued after it, and are not. The receive task let the frame through
    /// under the policy in force then: the one followed here or a later one, so the policy
    /// is looked at again before the frame is turned away.
    fn keeps(&mut self, room: &RoomId, speaker: &PublicKey) -> bool {
        if !self.following.hears(room, speaker) {
            self.follow_policy();
        }
        self.following.hears(room, speaker)
    }

    /// Follows the policy in force, if it changed: drops the buffers of speakers it does not
    /// allow.
    fn follow_policy(&mut self) {
        let in_force = self.policy.load();
        if !Arc::ptr_eq(&in_force, &self.following) {
            self.following = Arc::clone(&in_force);
            let following = &self.following;
            self.speakers.retain(|k, _| following.hears_in_room(k));
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
                let mut slip = Slip::new(frame);
                let t0 = clock.now_us();
                for i in 0u64.. {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    // Every slip so far moved this period earlier.
                    let due = (t0 + i * frame_us).saturating_sub(slip.slipped_us());
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
                            let activity = slot.stream.pull_into(now, &mut pcm[index]);
                            slip.observe(now, slot.stream.timing());
                            if activity.active != slot.talking {
                                slot.talking = activity.active;
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
                    // In a silent period after a second of frames played later than they
                    // could be, only its start is played: the next period comes earlier.
                    let played = &out[..slip.keep(now, &out)];
                    far_end.push(played);
                    if let Err(e) = sink.push_frame(played) {
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
    use FrameDuration::Ms20;
    use ruang_audio::wire::Flags;
    use ruang_proto::room::RoomId;

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

    fn policy(room: Option<RoomId>, allowed: &[PublicKey]) -> Arc<AudioPolicy> {
        Arc::new(AudioPolicy {
            room,
            allowed: allowed.iter().copied().collect(),
            ..AudioPolicy::default()
        })
    }

    const IN: RoomId = RoomId(ruang_proto::Hash([7; 32]));
    const ROOM: Option<RoomId> = Some(IN);

    #[test]
    fn queued_frames_reach_the_buffers_and_the_policy_drops_the_others() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let shared = Arc::new(SharedPolicy::new((*policy(ROOM, &[a, b])).clone()));
        let (queue, mut mixing) = frame_queue(FrameDuration::Ms20, shared.clone());
        assert!(queue.send(IN, a, Ms20, frame(0), 0));
        assert!(queue.send(IN, b, Ms20, frame(0), 0));
        // Nothing reaches the buffers until the playout thread takes it.
        assert!(buffered(&mixing).is_empty());
        mixing.take_incoming();
        assert_eq!(buffered(&mixing), vec![a, b]);
        // `a` is muted: its frame accepted before that, still queued, is not played, and its
        // buffer goes.
        assert!(queue.send(IN, a, Ms20, frame(1), 20_000));
        shared.set(policy(ROOM, &[b]));
        mixing.take_incoming();
        assert_eq!(buffered(&mixing), vec![b]);
        // The room is left: nobody's frames are kept, even a speaker still listed.
        shared.set(policy(None, &[b]));
        assert!(queue.send(IN, b, Ms20, frame(1), 20_000));
        mixing.take_incoming();
        assert!(buffered(&mixing).is_empty());
    }

    #[test]
    fn a_frame_let_through_by_a_newer_policy_is_kept() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let shared = Arc::new(SharedPolicy::new((*policy(ROOM, &[a])).clone()));
        let (queue, mut mixing) = frame_queue(FrameDuration::Ms20, shared.clone());
        assert!(queue.send(IN, a, Ms20, frame(0), 0));
        mixing.take_incoming();
        // `b` is invited after the playout's period began: the receive task lets its frame
        // through under the new policy while the playout still follows the old one.
        shared.set(policy(ROOM, &[a, b]));
        assert!(mixing.keeps(&IN, &b));
        assert_eq!(buffered(&mixing), vec![a]);
        // A speaker dropped since: its buffer goes at the next period.
        shared.set(policy(ROOM, &[b]));
        mixing.take_incoming();
        assert!(buffered(&mixing).is_empty());
    }

    #[test]
    fn a_frame_queued_for_another_room_is_not_played() {
        let a = PublicKey([1; 32]);
        let other = RoomId(ruang_proto::Hash([8; 32]));
        let shared = Arc::new(SharedPolicy::new((*policy(ROOM, &[a])).clone()));
        let (queue, mut mixing) = frame_queue(FrameDuration::Ms20, shared);
        // Queued in the room left, `a` on stage in both.
        assert!(queue.send(other, a, Ms20, frame(0), 0));
        mixing.take_incoming();
        assert!(buffered(&mixing).is_empty());
        assert!(queue.send(IN, a, Ms20, frame(1), 20_000));
        mixing.take_incoming();
        assert_eq!(buffered(&mixing), vec![a]);
    }

    #[test]
    fn frames_of_another_length_restart_a_speaker_only_after_a_pause() {
        let a = PublicKey([1; 32]);
        let shared = Arc::new(SharedPolicy::new((*policy(ROOM, &[a])).clone()));
        let (queue, mut mixing) = frame_queue(FrameDuration::Ms20, shared);
        assert!(queue.send(IN, a, Ms20, frame(0), 0));
        mixing.take_incoming();
        // 10 ms frames while 20 ms ones still come (two streams): dropped, the buffer stays.
        assert!(queue.send(IN, a, FrameDuration::Ms10, frame(1), 20_000));
        mixing.take_incoming();
        assert_eq!(mixing.speakers[&a].frame, Ms20);
        assert_eq!(mixing.speakers[&a].stream.stats().jitter.received, 1);
        // After a second without frames: the speaker restarted at 10 ms.
        assert!(queue.send(IN, a, FrameDuration::Ms10, frame(0), 1_000_000));
        mixing.take_incoming();
        assert_eq!(mixing.speakers[&a].frame, FrameDuration::Ms10);
    }

    #[test]
    fn a_full_queue_turns_frames_away_and_a_stopped_playout_takes_none() {
        let (queue, mixing) = frame_queue(FrameDuration::Ms20, Arc::default());
        let a = PublicKey([1; 32]);
        for seq in 0..FRAME_QUEUE as u32 {
            assert!(queue.send(IN, a, Ms20, frame(seq), 0));
        }
        assert!(!queue.send(IN, a, Ms20, frame(FRAME_QUEUE as u32), 0));
        drop(mixing);
        let (queue, mixing) = frame_queue(FrameDuration::Ms20, Arc::default());
        drop(mixing);
        assert!(!queue.send(IN, a, Ms20, frame(0), 0));
    }
}
