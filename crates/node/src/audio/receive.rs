//! The receive task: frames off the network → enforcement → the playout thread's frame queue
//! (`playout::frame_queue`; the thread owns the jitter buffers).
//!
//! A frame is dropped unless its stream's header names the current room and a speaker the
//! verified state allows to transmit ([`SharedPolicy`]), and the peer that sent it is that
//! speaker (direct streams only, until forwarding hops exist). A peer sending far above the
//! frame rate is rate-limited, and reported so the node can close its streams.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ruang_audio::codec;
use ruang_audio::format::FrameDuration;
use ruang_audio::wire::Frame;
use ruang_net::{AudioIn, AudioInbox};
use ruang_proto::PublicKey;
use ruang_proto::ephemeral::{Rate, RateLimiter};
use ruang_proto::room::RoomId;
use tokio::sync::mpsc;

use super::playout::FrameSender;
use super::{AudioEvent, SharedPolicy};
use crate::clock::Clock;
use crate::ids;
use crate::wire::AudioHeader;

/// Frames a peer may send in a burst before its rate is checked (a second of 10 ms frames,
/// each sent twice).
const FRAME_BURST: u32 = 200;
/// Frames a second a peer may send on average: the most an honest speaker sends (10 ms frames,
/// whatever this node's own frame length, each sent twice on a lossy path: 200) and half
/// again, so a speaker's own rate never trips it.
const FRAMES_PER_SECOND: f64 = 300.0;
/// Consecutive over-rate frames after which the peer is reported as flooding.
const FLOOD_STRIKES: u32 = 200;
/// Peers tracked by the frame rate limiter.
const MAX_TRACKED_PEERS: usize = 1_024;
/// Streams whose admission is remembered; past this the decisions are forgotten and made
/// again at each stream's next frame (a stream's number is never reused).
const MAX_TRACKED_STREAMS: usize = 1_024;

/// Counters of the receive path.
#[derive(Debug, Default)]
pub struct ReceiveCounters {
    /// Frames accepted into a jitter buffer.
    pub accepted: AtomicU64,
    /// Frames dropped because their speaker may not transmit (muted, banned, not on stage).
    pub refused: AtomicU64,
    /// Frames dropped as malformed (bad header or frame).
    pub malformed: AtomicU64,
    /// Frames dropped by the rate limit.
    pub limited: AtomicU64,
    /// Accepted frames the playout's queue had no room for.
    pub queue_full: AtomicU64,
}

/// What the receive task works with.
pub struct Receiver {
    /// Who may be heard.
    pub policy: Arc<SharedPolicy>,
    /// Where accepted frames go: the running playout's queue, if any.
    pub frames: tokio::sync::watch::Receiver<Option<FrameSender>>,
    /// The node's clock (arrival times).
    pub clock: Clock,
    /// With `decode` off, accepted frames are counted but not buffered.
    pub decode: bool,
    /// Where to report floods.
    pub events: mpsc::Sender<AudioEvent>,
    /// Counters, read by the node task.
    pub counters: Arc<ReceiveCounters>,
}

/// Runs until the inbox closes.
pub async fn run(mut inbox: AudioInbox, receiver: Receiver) {
    let Receiver {
        policy,
        frames,
        clock,
        decode,
        events,
        counters,
    } = receiver;
    let mut streams: HashMap<u64, Admission> = HashMap::new();
    // Speakers whose first frame in a room was reported.
    let mut heard: HashSet<(RoomId, PublicKey)> = HashSet::new();
    let mut limiter = RateLimiter::new(FRAME_BURST, FRAMES_PER_SECOND, MAX_TRACKED_PEERS);
    while let Some(input) = inbox.recv().await {
        let now_ms = clock.now_us() / 1_000;
        let verdict = 'verdict: {
            if let Rate::Limited { strikes } = limiter.check(&input.peer, now_ms) {
                if strikes == FLOOD_STRIKES {
                    let _ = events.try_send(AudioEvent::Flooding(input.peer));
                }
                break 'verdict Verdict::Limited;
            }
            if streams.len() >= MAX_TRACKED_STREAMS {
                streams.clear();
            }
            let admission = *streams
                .entry(input.stream)
                .or_insert_with(|| Admission::of(&input));
            let (header, frame_duration) = match admission {
                Admission::Admitted(header, frame) => (header, frame),
                Admission::Malformed => break 'verdict Verdict::Malformed,
                Admission::Refused => break 'verdict Verdict::Refused,
            };
            let in_force = policy.load();
            if !in_force.hears(&header.room, &header.speaker) {
                break 'verdict Verdict::Refused;
            }
            let Ok(mut frame) = Frame::decode(&input.frame) else {
                break 'verdict Verdict::Malformed;
            };
            if let Some(key) = &in_force.key {
                let aad = crate::audio::frame_aad(&frame);
                match key.open_audio(
                    &header.room.0.0,
                    header.salt,
                    frame.seq,
                    &aad,
                    &frame.payload,
                ) {
                    Ok(payload) => frame.payload = payload,
                    Err(_) => break 'verdict Verdict::Malformed,
                }
            }
            if !fits(&frame.payload, frame_duration) {
                break 'verdict Verdict::Malformed;
            }
            if heard.len() > MAX_TRACKED_PEERS {
                heard.clear();
            }
            if heard.insert((header.room, header.speaker)) {
                let at = clock.unix_us(clock.at(input.received_at));
                let _ = events.try_send(AudioEvent::FirstFrame(header.speaker, at));
            }
            if decode && let Some(queue) = frames.borrow().as_ref() {
                let arrival = clock.at(input.received_at);
                if !queue.send(header.room, header.speaker, frame_duration, frame, arrival) {
                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            Verdict::Accepted
        };
        let counter = match verdict {
            Verdict::Accepted => &counters.accepted,
            Verdict::Refused => &counters.refused,
            Verdict::Malformed => &counters.malformed,
            Verdict::Limited => &counters.limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the receive task decided about a stream at its first frame. A stream's header and
/// sending peer are fixed for its life, so the decision holds for every frame after; only the
/// policy is looked at again per frame.
#[derive(Clone, Copy, Debug)]
enum Admission {
    /// A well-formed header naming the sending peer as its speaker, with its frames' length.
    Admitted(AudioHeader, FrameDuration),
    /// A header that does not decode, or names a frame length that does not exist.
    Malformed,
    /// A header naming someone other than the sending peer (only direct streams exist today:
    /// the sending peer must be the speaker).
    Refused,
}

impl Admission {
    fn of(input: &AudioIn) -> Admission {
        let Ok(header) = AudioHeader::decode(&input.header) else {
            return Admission::Malformed;
        };
        let Some(frame) = FrameDuration::from_millis(header.frame_ms.into()) else {
            return Admission::Malformed;
        };
        if ids::public_key(&input.peer) != Some(header.speaker) {
            return Admission::Refused;
        }
        Admission::Admitted(header, frame)
    }
}

/// Whether `payload` is an Opus packet of one `frame` (or empty: the end of a talk spurt). A
/// packet of another length would only fail to decode at the playout.
fn fits(payload: &[u8], frame: FrameDuration) -> bool {
    payload.is_empty() || codec::packet_samples(payload).ok() == Some(frame.samples())
}

enum Verdict {
    Accepted,
    Refused,
    Malformed,
    Limited,
}

#[cfg(test)]
mod tests {
    use ruang_audio::codec::{Encoder, EncoderConfig};
    use ruang_proto::{Hash, Identity};

    use super::*;

    fn input(peer: &Identity, header: Vec<u8>) -> AudioIn {
        AudioIn {
            peer: ids::peer_id(&peer.public()).unwrap(),
            stream: 1,
            header: header.into(),
            frame: bytes::Bytes::new(),
            received_at: std::time::Instant::now(),
        }
    }

    fn header(speaker: &Identity, frame_ms: u8) -> Vec<u8> {
        AudioHeader {
            room: RoomId(Hash([4; 32])),
            speaker: speaker.public(),
            frame_ms,
            salt: 9,
        }
        .encode()
    }

    #[test]
    fn a_stream_is_admitted_by_its_header_and_sender() {
        let mut rng = rand::rng();
        let (alice, mallory) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
        assert!(matches!(
            Admission::of(&input(&alice, header(&alice, 10))),
            Admission::Admitted(h, FrameDuration::Ms10) if h.speaker == alice.public()
        ));
        // Naming someone else.
        assert!(matches!(
            Admission::of(&input(&mallory, header(&alice, 20))),
            Admission::Refused
        ));
        // A frame length that does not exist; a header that does not decode.
        assert!(matches!(
            Admission::of(&input(&alice, header(&alice, 15))),
            Admission::Malformed
        ));
        assert!(matches!(
            Admission::of(&input(&alice, vec![0xff; 7])),
            Admission::Malformed
        ));
    }

    #[test]
    fn a_packet_must_be_one_frame_of_its_stream() {
        let mut encoder = Encoder::new(EncoderConfig::default()).unwrap();
        let packet = encoder.encode(&[0.1; 960]).unwrap();
        assert!(fits(&packet, FrameDuration::Ms20));
        assert!(!fits(&packet, FrameDuration::Ms10));
        assert!(fits(&[], FrameDuration::Ms10));
        assert!(!fits(&[0xff, 0xff, 0xff], FrameDuration::Ms20));
    }
}
