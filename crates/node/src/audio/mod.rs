//! The node's audio plane: capture → encode → links, and inbound frames → enforcement →
//! jitter buffers → mix → sink. Real-time work runs on its own threads and tasks with bounded
//! queues, so a slow network or a busy control task never stalls capture or playout.
//!
//! - [`capture`]: a thread that reads the source (pacing file and synthetic sources in real
//!   time), encodes and pushes frames to every outbound link (drop-oldest queues in
//!   `ruang-net`).
//! - [`receive`]: a task that takes frames off the network and drops those from anyone the
//!   verified room state does not allow to speak ([`SharedPolicy`]).
//! - [`playout`]: a thread on an absolute-deadline clock that owns every speaker's jitter
//!   buffer, takes the frames the receive task queued for it, pulls each buffer once per
//!   frame, mixes, and writes to the sink. It shares no lock with the tasks: frames come
//!   through a bounded queue, the speakers to keep through a slot it only ever try-locks.

pub mod capture;
pub mod playout;
pub mod receive;

use std::sync::Arc;

use arc_swap::ArcSwap;
use ruang_proto::PublicKey;
use ruang_session::AudioPolicy;

/// The audio policy in force: the session core's latest [`AudioPolicy`] (who may be heard,
/// whether this node may transmit, a private room's key), swapped in whole by the node task
/// and read lock-free by the receive task and the capture thread (every frame) and the playout
/// thread (every period). One snapshot: none of them ever sees parts of two policies, and none
/// waits on another.
#[derive(Debug)]
pub struct SharedPolicy(ArcSwap<AudioPolicy>);

impl Default for SharedPolicy {
    fn default() -> Self {
        SharedPolicy::new(AudioPolicy::default())
    }
}

impl SharedPolicy {
    /// A policy cell holding `policy`.
    pub fn new(policy: AudioPolicy) -> Self {
        SharedPolicy(ArcSwap::from_pointee(policy))
    }

    /// Puts `policy` in force (the node task, on every change the core reports).
    pub fn set(&self, policy: Arc<AudioPolicy>) {
        self.0.store(policy);
    }

    /// The policy in force now (no lock; cheap enough for every frame).
    pub fn load(&self) -> impl std::ops::Deref<Target = Arc<AudioPolicy>> + use<> {
        self.0.load()
    }
}

/// Events the audio threads report to the node task (bounded; dropped when full).
#[derive(Debug, Clone)]
pub enum AudioEvent {
    /// Frame 0 of the source was due at this unix µs.
    CaptureStarted(u64),
    /// Output sample 0 was played at this unix µs.
    PlayoutStarted(u64),
    /// The source has no more frames.
    SourceEnded,
    /// A speaker started or stopped talking (`None`: this node's own microphone).
    Speaking(Option<PublicKey>, bool),
    /// The first frame of a speaker in this room arrived at this unix µs (once per speaker
    /// and room, for "now hearing" and for timing joins).
    FirstFrame(PublicKey, u64),
    /// Per-speaker counters.
    Stats(Vec<(PublicKey, ruang_audio::jitter::SpeakerStats)>),
    /// A peer sends frames far above the frame rate.
    Flooding(ruang_net::PeerId),
    /// Something failed (device, file).
    Error(String),
}

/// Frames of played audio waiting for the capture thread (half a second at 20 ms frames);
/// when it is not taking them (not capturing), newer frames are dropped.
pub const FAR_END_FRAMES: usize = 25;

/// The played mix, handed from the playout thread to the capture thread as the echo
/// canceller's reference. Bounded, and neither thread ever waits on the other: the playout
/// gives up a frame when the slot is busy or the queue is full.
#[derive(Debug, Default)]
pub struct FarEnd {
    tx: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Vec<f32>>>>,
}

impl FarEnd {
    /// Offers one played frame (playout thread).
    pub fn push(&self, frame: &[f32]) {
        if let Ok(slot) = self.tx.try_lock()
            && let Some(tx) = slot.as_ref()
        {
            let _ = tx.try_send(frame.to_vec());
        }
    }

    /// A new receiver of played frames (a new capture session); the previous one gets no
    /// more.
    pub fn attach(&self) -> std::sync::mpsc::Receiver<Vec<f32>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(FAR_END_FRAMES);
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }
}

/// Capacity of the audio → node event queue; the audio side never waits on it.
pub const AUDIO_EVENT_CAP: usize = 256;

/// The clear fields of a frame that a sealed payload is bound to.
pub fn frame_aad(frame: &ruang_audio::wire::Frame) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&frame.speaker.to_be_bytes());
    out[8..12].copy_from_slice(&frame.seq.to_be_bytes());
    out[12..].copy_from_slice(&frame.timestamp.to_be_bytes());
    out
}
