//! The capture thread: source → [`Sender`] (Opus) → every outbound link.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use ruang_audio::congestion::{self, LinkLoad, Protection};
use ruang_audio::loss;
use ruang_audio::send::Sender;
use ruang_audio::source::Source;
use ruang_audio::voice::VoiceProcessor;
use ruang_audio::wire::{Flags, Frame};
use ruang_net::{AudioLink, PeerId};
use ruang_session::AudioPolicy;
use std::sync::mpsc::Receiver;
use tokio::sync::mpsc;

use super::{AudioEvent, SharedPolicy, frame_aad};
use crate::clock::Clock;

/// How the capture thread keeps time with its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// The source produces frames instantly (file, synthetic voice): the thread paces it in
    /// real time, frame `i` being complete at `t0 + (i + 1) × frame`.
    RealTime,
    /// The source blocks until each frame is captured (a microphone).
    Device,
}

/// Frames a paced source is read in at once while nothing is sent (five 20 ms frames: ten
/// wake-ups a second instead of fifty). Up to four frames are read ahead of their time then;
/// once sending is allowed the next frame waits for its own deadline again.
const IDLE_BATCH_FRAMES: u64 = 5;

/// How often the capture thread looks at the listeners' loss reports, in frames (200 ms at
/// 20 ms frames): a report changes the hint within a frame of this.
const LOSS_CHECK_EVERY: u64 = 10;

/// Loss reports older than this are ignored (listeners report every second).
const REPORT_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// What the capture thread sends to, shared with the node task that decides it.
#[derive(Default)]
pub struct Outbound {
    /// One link per peer this node streams to.
    pub links: Mutex<Vec<AudioLink>>,
    /// Whether this node may transmit now (on stage, not muted by a moderator, room open),
    /// and a private room's key to seal frames with.
    pub policy: Arc<SharedPolicy>,
    /// Whether the user muted themselves.
    pub self_muted: AtomicBool,
    /// Frames handed to links (one count per frame, not per link).
    pub frames: AtomicU64,
    /// This capture session's salt (sent in stream headers; seals private rooms' frames).
    pub salt: AtomicU64,
    /// The protection the listeners' loss reports call for, as a packet-loss hint, % (set by
    /// the capture thread; read for stats). While copies are sent the encoder's own hint is 0
    /// (no FEC); otherwise it is this.
    pub loss_hint: AtomicU64,
    /// The encoder's bitrate in force, bits per second (the configured one, lowered by the
    /// capture thread while the links are congested; read for stats). 0 before capture starts.
    pub bitrate_bps: AtomicU64,
    /// Whether every frame is sent twice now (see `ruang_audio::congestion::Protection`).
    pub copies: AtomicBool,
}

impl Outbound {
    /// Nothing to send to yet, under `policy`.
    pub fn new(policy: Arc<SharedPolicy>) -> Self {
        Outbound {
            policy,
            ..Outbound::default()
        }
    }

    /// Whether a frame is sent under `policy`.
    fn transmitting(&self, policy: &AudioPolicy) -> bool {
        policy.transmit && !self.self_muted.load(Ordering::Relaxed)
    }

    /// The worst loss the listeners reported lately (‰, see [`loss::worst_loss`]); `None`
    /// when none of them reported within [`REPORT_FRESH`].
    fn reported_loss(&self) -> Option<u16> {
        let mut reports: Vec<u16> = {
            let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            links
                .iter()
                .filter_map(AudioLink::loss_report)
                .filter(|(_, at)| at.elapsed() <= REPORT_FRESH)
                .map(|(permille, _)| permille)
                .collect()
        };
        loss::worst_loss(&mut reports)
    }

    /// Whether the links could not carry the audio since the last call (see
    /// [`congestion::room_congested`]); `dropped` keeps each link's overflow count between
    /// calls. Links not sending now are left out unless they drop frames.
    fn congested(&self, dropped: &mut Vec<(PeerId, u64)>) -> bool {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut loads = Vec::with_capacity(links.len());
        let mut seen = Vec::with_capacity(links.len());
        for link in links.iter() {
            let (queued, overflowed) = link.backlog();
            let before = dropped
                .iter()
                .find(|(peer, _)| *peer == link.peer())
                .map_or(overflowed, |(_, n)| *n);
            seen.push((link.peer(), overflowed));
            let dropped = overflowed.saturating_sub(before);
            // A link that lost its streams and drops frames counts too: on a path narrower
            // than the audio, the lanes time out and reopen again and again, and the frames
            // queued meanwhile are lost (at 56 kbit/s the bitrate came down only after 24 s
            // when these were left out).
            if link.connected() || dropped > 0 {
                loads.push(LinkLoad { queued, dropped });
            }
        }
        *dropped = seen;
        congestion::room_congested(&loads)
    }

    /// Seals (private rooms, with `policy`'s key), encodes and queues `frame` on every link;
    /// returns the bytes sent, for a copy.
    fn send(&self, mut frame: Frame, policy: &AudioPolicy) -> Bytes {
        if let (Some(room), Some(key)) = (&policy.room, &policy.key) {
            let salt = self.salt.load(Ordering::Relaxed);
            frame.payload = key.seal_audio(
                &room.0.0,
                salt,
                frame.seq,
                &frame_aad(&frame),
                &frame.payload,
            );
        }
        let bytes = Bytes::from(frame.encode());
        self.push(&bytes);
        self.frames.fetch_add(1, Ordering::Relaxed);
        bytes
    }

    /// Queues a frame's bytes again: the copy of a frame already sent, byte for byte (the same
    /// seal, nonce and all), so the receiver keeps whichever comes first.
    fn send_copy(&self, bytes: &Bytes) {
        self.push(bytes);
    }

    fn push(&self, bytes: &Bytes) {
        // Held only to clone the frame into each link's queue; the node task replaces the
        // list rarely.
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        for link in links.iter() {
            link.push(bytes.clone());
        }
    }
}

/// A running capture thread; dropping it stops the thread.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing from `source` with `sender` (which fixes the frame duration and the
    /// encoder settings); `voice` processes each frame first, with the played audio that
    /// comes through its receiver as the echo reference.
    pub fn spawn(
        mut source: Box<dyn Source + Send>,
        pacing: Pacing,
        mut voice: Option<(VoiceProcessor, Receiver<Vec<f32>>)>,
        mut sender: Sender,
        outbound: Arc<Outbound>,
        clock: Clock,
        events: mpsc::Sender<AudioEvent>,
    ) -> std::io::Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let frame = source.frame_duration();
        let thread = std::thread::Builder::new()
            .name("ruang-capture".into())
            .spawn(move || {
                let mut pcm = vec![0.0f32; frame.samples()];
                let frame_us = frame.as_micros();
                let t0 = clock.now_us();
                let mut was_sending = false;
                let mut was_talking = false;
                let mut protection = Protection::new(sender.encoder_mut().config().bitrate_bps);
                outbound.bitrate_bps.store(
                    sender.encoder_mut().config().bitrate_bps.into(),
                    Ordering::Relaxed,
                );
                let mut overflowed = Vec::new();
                let mut pending = PendingCopy::default();
                let mut copies = false;
                for i in 0u64.. {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    // A paced source that is not being sent (a listener's) is read in
                    // batches: one wake-up per batch instead of one per frame. The schedule
                    // is absolute, so the first frame sent is on time again.
                    let idle = !was_sending && !outbound.transmitting(&outbound.policy.load());
                    if pacing == Pacing::RealTime && !(idle && i % IDLE_BATCH_FRAMES != 0) {
                        clock.sleep_until(t0 + (i + 1) * frame_us);
                    }
                    let more = match source.next_frame(&mut pcm) {
                        Ok(more) => more,
                        Err(e) => {
                            let _ = events.try_send(AudioEvent::Error(format!("audio input: {e}")));
                            false
                        }
                    };
                    if let Some((processor, far_end)) = voice.as_mut() {
                        // Everything played since the last frame first, then this frame.
                        while let Ok(played) = far_end.try_recv() {
                            processor.render(&played);
                        }
                        processor.capture(&mut pcm);
                    }
                    if i == 0 {
                        // Frame 0's first sample was spoken one frame before it was complete.
                        let started = match pacing {
                            Pacing::RealTime => t0,
                            Pacing::Device => clock.now_us().saturating_sub(frame_us),
                        };
                        let _ = events.try_send(AudioEvent::CaptureStarted(clock.unix_us(started)));
                    }
                    // One policy for the whole frame: whether it is sent and how it is sealed.
                    let policy = outbound.policy.load();
                    if !more {
                        pending.send_due(&outbound);
                        if was_sending && let Ok(last) = sender.encode_last(&pcm) {
                            outbound.send(last, &policy);
                        }
                        let _ = events.try_send(AudioEvent::SourceEnded);
                        break;
                    }
                    let sending = outbound.transmitting(&policy);
                    if sending && i % LOSS_CHECK_EVERY == 0 {
                        // What the listeners' paths call for (`ruang_audio::congestion`).
                        let decision = protection.update(
                            clock.now_us() / 1_000,
                            outbound.reported_loss(),
                            outbound.congested(&mut overflowed),
                        );
                        outbound
                            .loss_hint
                            .store(protection.loss_hint().into(), Ordering::Relaxed);
                        outbound.copies.store(decision.copies, Ordering::Relaxed);
                        copies = decision.copies;
                        let encoder = sender.encoder_mut();
                        if decision.bitrate_bps != encoder.config().bitrate_bps {
                            match encoder.set_bitrate(decision.bitrate_bps) {
                                Ok(()) => outbound
                                    .bitrate_bps
                                    .store(decision.bitrate_bps.into(), Ordering::Relaxed),
                                Err(e) => {
                                    let _ =
                                        events.try_send(AudioEvent::Error(format!("encoder: {e}")));
                                }
                            }
                        }
                        if decision.fec_hint_pct != encoder.config().packet_loss_pct
                            && let Err(e) = encoder.set_packet_loss(decision.fec_hint_pct)
                        {
                            let _ = events.try_send(AudioEvent::Error(format!("encoder: {e}")));
                        }
                    }
                    if sending {
                        match sender.encode(&pcm) {
                            Ok(Some(mut frame)) => {
                                // Marked, so a listener expects the copy (and counts it lost
                                // if it does not come); a marked frame's copy goes out even
                                // if the copies stop now.
                                frame.flags = frame.flags.set(Flags::COPIED, copies);
                                let bytes = outbound.send(frame, &policy);
                                if let Some(copy) = pending.sent(bytes, copies) {
                                    outbound.send_copy(&copy);
                                }
                            }
                            // A pause (DTX): nothing for the copy to go with.
                            Ok(None) => {
                                pending.send_due(&outbound);
                            }
                            Err(e) => {
                                let _ = events.try_send(AudioEvent::Error(format!("encoder: {e}")));
                            }
                        }
                    } else if was_sending {
                        // Stopped (muted, stepped down): the last copy due, then one END
                        // frame so listeners go quiet without concealing.
                        pending.send_due(&outbound);
                        if let Ok(last) = sender.encode_last(&pcm) {
                            outbound.send(last, &policy);
                        }
                    } else {
                        sender.skip(1);
                    }
                    let talking = sending && sender.activity().active;
                    if talking != was_talking {
                        let _ = events.try_send(AudioEvent::Speaking(None, talking));
                        was_talking = talking;
                    }
                    was_sending = sending;
                }
            })?;
        Ok(Capture {
            stop,
            thread: Some(thread),
        })
    }
}

/// The copy of the last frame sent, if it was marked for one ([`Flags::COPIED`]). It goes out
/// with the next frame, or before the speaker stops or pauses: a marked frame whose copy
/// never comes counts as a lost copy at every listener (one copy in a second of ~50 frames
/// is a report of ~10 ‰, enough to turn the hint and the copies back on).
#[derive(Default)]
struct PendingCopy(Option<Bytes>);

impl PendingCopy {
    /// `frame` went out, `marked` for a copy or not; returns the copy due with it.
    fn sent(&mut self, frame: Bytes, marked: bool) -> Option<Bytes> {
        let due = self.0.take();
        if marked {
            self.0 = Some(frame);
        }
        due
    }

    /// Nothing goes out after this for now: the copy still due.
    fn flush(&mut self) -> Option<Bytes> {
        self.0.take()
    }

    /// Sends the copy still due, if any (before a stop or a pause).
    fn send_due(&mut self, outbound: &Outbound) {
        if let Some(copy) = self.flush() {
            outbound.send_copy(&copy);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // The thread sees the flag within a frame (paced) or its device timeout, and exits;
        // not joined, so the node task never waits on an audio device.
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use ruang_audio::codec::EncoderConfig;
    use ruang_audio::format::FrameDuration;
    use ruang_audio::source::SourceError;

    use super::*;

    #[test]
    fn every_marked_frame_gets_its_copy_even_when_the_speaker_stops() {
        let frame = |i: u8| Bytes::from(vec![i]);
        let mut pending = PendingCopy::default();
        // Copies on for frames 1 and 2: each copy goes with the next frame.
        assert_eq!(pending.sent(frame(0), false), None);
        assert_eq!(pending.sent(frame(1), true), None);
        assert_eq!(pending.sent(frame(2), true), Some(frame(1)));
        // Copies off from frame 3: frame 2's still goes, and nothing after it.
        assert_eq!(pending.sent(frame(3), false), Some(frame(2)));
        assert_eq!(pending.sent(frame(4), false), None);
        // A marked frame and then a stop (mute, END): its copy is still due.
        assert_eq!(pending.sent(frame(5), true), None);
        assert_eq!(pending.flush(), Some(frame(5)));
        assert_eq!(pending.flush(), None);
    }

    /// Silence that records when each frame was read.
    struct Stamped(Arc<Mutex<Vec<Instant>>>);

    impl Source for Stamped {
        fn frame_duration(&self) -> FrameDuration {
            FrameDuration::Ms20
        }
        fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
            out.fill(0.0);
            self.0.lock().unwrap().push(Instant::now());
            Ok(true)
        }
    }

    /// Groups of reads less than 5 ms apart (one wake-up each).
    fn wakeups(reads: &[Instant]) -> usize {
        1 + reads
            .windows(2)
            .filter(|w| w[1] - w[0] > Duration::from_millis(5))
            .count()
    }

    #[test]
    fn idle_source_is_read_in_batches_and_sending_is_paced_per_frame() {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let policy = Arc::new(SharedPolicy::default());
        let outbound = Arc::new(Outbound::new(policy.clone()));
        let sender = Sender::new(1, EncoderConfig::default(), 0, 0).unwrap();
        let (events, _events_rx) = mpsc::channel(64);
        let start = Instant::now();
        let capture = Capture::spawn(
            Box::new(Stamped(reads.clone())),
            Pacing::RealTime,
            None,
            sender,
            outbound.clone(),
            Clock::new(),
            events,
        )
        .unwrap();

        // Not allowed to send (a listener): 600 ms of frames, about six wake-ups.
        std::thread::sleep(Duration::from_millis(600));
        let idle: Vec<Instant> = reads.lock().unwrap().clone();
        // Real time is kept (at most four frames read ahead of their time)...
        assert!((25..=35).contains(&idle.len()), "{} frames", idle.len());
        // ...with a wake-up per batch of five, not per frame (30); slack for a busy machine.
        assert!(wakeups(&idle) <= 14, "{} wake-ups", wakeups(&idle));

        // On stage: every frame waits for its own deadline again.
        policy.set(Arc::new(AudioPolicy {
            transmit: true,
            ..AudioPolicy::default()
        }));
        let on_stage_from = reads.lock().unwrap().len() + 5;
        std::thread::sleep(Duration::from_millis(600));
        drop(capture);
        let all: Vec<Instant> = reads.lock().unwrap().clone();
        let sending = &all[on_stage_from..];
        assert!(
            sending.len() >= 20,
            "{} frames while sending",
            sending.len()
        );
        assert!(
            wakeups(sending) >= sending.len() * 3 / 4,
            "{} wake-ups for {} frames",
            wakeups(sending),
            sending.len()
        );
        // No frame read before the schedule allows (frame i complete at (i + 1) × 20 ms),
        // allowing the four-frame read-ahead of an idle batch.
        for (i, at) in all.iter().enumerate() {
            let due = Duration::from_millis(20 * (i as u64 + 1));
            assert!(
                at.duration_since(start) + Duration::from_millis(81) >= due,
                "frame {i} read at {:?}, due {due:?}",
                at.duration_since(start)
            );
        }
    }
}
