//! Adaptive jitter buffer, one per speaker.
//!
//! Frames arrive with network jitter, out of order, duplicated, late or not at all; the
//! loudspeaker wants exactly one frame every frame period. A [`Buffer`] sits in between:
//!
//! - [`Buffer::push`]`(frame, arrival_us)` whenever a frame comes in;
//! - [`Buffer::pull`]`(now_us)` exactly once per frame of the stream, on the playout clock,
//!   which says what to play now: a [`Playout::Packet`], a [`Playout::Fec`] recovery from the
//!   next packet, a [`Playout::Conceal`] or [`Playout::Silence`].
//!
//! [`SpeakerStream`] wraps a buffer and an Opus decoder and hands out PCM directly, also into
//! playout periods of another length than the stream's frames
//! ([`SpeakerStream::pull_into`]).
//!
//! # How it decides
//!
//! Playout follows the sender's media clock (the frame timestamps) shifted by the fastest path
//! seen recently plus an *allowance* `A` (see the estimator): frame `k` is played at the first
//! pull at least `A` after its nominal arrival, so it waits between `A` and `A + frame` after
//! the fastest-path arrival. The *target delay* reported in [`Stats`] is that upper bound,
//! `A + frame`, kept within `[min_delay_ms, max_delay_ms]` (one frame to 200 ms by default).
//!
//! `A` comes from a high quantile (95 % by default) of recent arrival delays over a forgetting
//! window of about ten seconds. It grows at once (a quantile above it, or any frame that
//! arrives after its slot) and shrinks slowly (one frame per second by default). One
//! exception: in a stream with FEC, a frame that arrives after its slot *and after a later
//! frame* (a packet lost and resent, on a QUIC stream striped over lanes) is counted late and
//! otherwise ignored: its slot was already rebuilt from the later frame's FEC, and covering
//! retransmissions would add a round trip to everyone's delay.
//!
//! The playout point itself moves in whole frames, because frames are never time-stretched:
//! to grow, a pull *holds* (plays filler and keeps the frame for the next pull, +1 frame); to
//! shrink, a pull *skips* a frame (−1 frame): one without voice as soon as the playout is
//! behind its target, a voiced one only when it is more than 100 ms behind (a cut in a word
//! costs more than the delay; speech pauses every few seconds). So the delay moves in 20 ms
//! steps (10 ms with 10 ms frames), while the threshold `A` is kept in 1 ms units: a
//! 1 ms jitter costs a frame of delay only when the pull clock's phase makes it necessary,
//! which keeps a clean loopback at the minimum (the first pull after arrival, ~half a frame on
//! average) instead of a whole frame more.
//!
//! Missing frames: when the frame due now is missing but a later one is buffered, it is
//! declared lost and repaired by FEC (if the next frame is there and carries FEC) or
//! concealed. When *nothing* is buffered, the buffer conceals a few frames while waiting (a
//! late frame on a reliable stream then still plays, and the allowance grows to cover it next
//! time), then falls silent until the speaker sends again. A frame flagged
//! [`crate::wire::Flags::END`] or [`crate::wire::Flags::DTX`] ends a talk spurt: silence
//! follows at once, without concealment.
//!
//! The buffer holds at most [`Config::capacity_frames`] frames, in a window of that many
//! sequence numbers from the next one to play; a frame beyond it pushes the oldest out.
//!
//! The sender must advance `timestamp` with its capture clock also while it sends nothing
//! (muted, DTX), as RTP does; `seq` goes up by one per frame sent.

mod buffer;
mod estimator;
mod speaker;

pub use buffer::Buffer;
pub use speaker::{Kind, Pulled, SpeakerStats, SpeakerStream, Timing};

use crate::format::FrameDuration;
use crate::wire::Frame;

/// Settings of a jitter [`Buffer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Frame duration of the stream (one pull per frame).
    pub frame: FrameDuration,
    /// Smallest target delay in ms (at least one frame). Default: one frame — a clean path
    /// plays each frame at the first pull after it arrives; the estimator grows the target
    /// at once when the path is not clean.
    pub min_delay_ms: u32,
    /// Largest target delay in ms. Default 200.
    pub max_delay_ms: u32,
    /// Most frames held at once (a window of this many sequence numbers). Default: the
    /// maximum delay in frames plus 4 (14 at 20 ms).
    pub capacity_frames: usize,
    /// Quantile of the arrival-delay distribution the target covers. Default 0.95.
    pub quantile: f32,
    /// Length of the forgetting window in frames (the histogram forgets with factor
    /// `1 - 1/window`). Default: ten seconds of frames.
    pub forget_window_frames: u32,
    /// How fast the target may shrink, in ms per second. Default: one frame per second.
    pub shrink_ms_per_s: u32,
    /// Frames of concealment while waiting for a frame when nothing is buffered, before
    /// falling silent. Default: 60 ms worth.
    pub max_underrun_frames: u32,
}

impl Config {
    /// The defaults for `frame`.
    pub fn new(frame: FrameDuration) -> Config {
        let frame_ms = frame.as_millis() as u32;
        let max_delay_ms = 200;
        Config {
            frame,
            min_delay_ms: frame_ms,
            max_delay_ms,
            capacity_frames: (max_delay_ms / frame_ms) as usize + 4,
            quantile: 0.95,
            forget_window_frames: 10_000 / frame_ms,
            shrink_ms_per_s: frame_ms,
            max_underrun_frames: 60 / frame_ms,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new(FrameDuration::default())
    }
}

/// What to play for one frame period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playout {
    /// Decode and play this frame.
    Packet(Frame),
    /// The frame due now is lost; the next one is here and carries FEC: rebuild the lost
    /// frame from this payload ([`crate::codec::Decoder::decode_fec`]). The next frame itself
    /// is played by the next pull.
    Fec(Vec<u8>),
    /// The frame due now is missing: play concealment ([`crate::codec::Decoder::conceal`]).
    Conceal,
    /// Nothing to play: no frame yet, the speaker paused (DTX, END) or stopped sending.
    Silence,
}

/// Counters and gauges of a jitter [`Buffer`].
///
/// Every sequence number the playout moves past is exactly one of: played, `skipped`,
/// `overflow` or `lost`; every lost one is either `fec_recovered` or concealed (or, when the
/// playout jumps a gap after silence, neither).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to [`Buffer::push`].
    pub received: u64,
    /// Frames played from their own packet.
    pub played: u64,
    /// Frames dropped because their playout slot had passed.
    pub late: u64,
    /// Frames dropped because the same sequence number was buffered or played already.
    pub duplicate: u64,
    /// Sequence numbers passed without their frame.
    pub lost: u64,
    /// Lost frames rebuilt from the next frame's FEC.
    pub fec_recovered: u64,
    /// Frames played from one copy while the speaker sends two whose other copy did not come
    /// within a frame and 10 ms of the playout (lost, or resent a round trip later): the loss
    /// a listener reports counts them (see `loss::measured_loss`). Counted when the other
    /// copy comes, or after 500 ms, or at once when 16 such frames wait already. Late copies
    /// arriving within 2 ms of the last one count once: one resend released them (so does
    /// a burst of losses resent together).
    pub copy_missing: u64,
    /// Frames that came more than 2 ms after a later frame, in time for their playout or
    /// not: their packet, or one before it on their lane, was lost and resent (or the path
    /// reordered them). Arrivals within 2 ms of the last one counted count once, as for
    /// [`Stats::copy_missing`]. Without copies the loss a listener reports counts them: a
    /// buffer that waits long enough for resends loses nothing, yet the path does.
    pub held_back: u64,
    /// Whether the speaker sends each frame twice now: the last frame played carried
    /// [`crate::wire::Flags::COPIED`] (after a mute's END frame, which is never marked, it
    /// is false, and a report then counts lost frames, not copies).
    pub copies_sent: bool,
    /// Pulls that returned [`Playout::Conceal`] (lost frames and waits for a late one).
    pub concealed: u64,
    /// Pulls that held the playout one frame to grow the delay.
    pub stretched: u64,
    /// Frames dropped to shrink the delay.
    pub skipped: u64,
    /// Frames pushed out because the buffer was full.
    pub overflow: u64,
    /// Times the stream was restarted (sequence numbers jumped too far to be the same stream).
    pub resets: u64,
    /// The current target delay in ms: the longest a frame waits after its fastest-path
    /// arrival (see the module docs).
    pub target_delay_ms: u32,
    /// Audio currently buffered, in ms.
    pub depth_ms: u32,
    /// How long the last played frame waited in the buffer (pull time minus its arrival), ms.
    pub delay_ms: u32,
}
