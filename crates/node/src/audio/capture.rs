//! The capture thread: source → [`Sender`] (Opus) → every outbound link.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use ruang_audio::wire::Frame;
use ruang_proto::seal::RoomKey;

use crate::wire::frame_aad;
use ruang_audio::send::Sender;
use ruang_audio::source::Source;
use ruang_net::AudioLink;
use tokio::sync::mpsc;

use super::AudioEvent;
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

/// What the capture thread sends to, shared with the node task that decides it.
#[derive(Default)]
pub struct Outbound {
    /// One link per peer this node streams to.
    pub links: Mutex<Vec<AudioLink>>,
    /// Whether this node may transmit now (on stage, not muted by a moderator, room open).
    pub allowed: AtomicBool,
    /// Whether the user muted themselves.
    pub self_muted: AtomicBool,
    /// Frames handed to links (one count per frame, not per link).
    pub frames: AtomicU64,
    /// This capture session's salt (sent in stream headers; seals private rooms' frames).
    pub salt: AtomicU64,
    /// A private room's key and id: frame payloads are sealed with them.
    pub seal: Mutex<Option<(RoomKey, [u8; 32])>>,
}

impl Outbound {
    fn transmitting(&self) -> bool {
        self.allowed.load(Ordering::Relaxed) && !self.self_muted.load(Ordering::Relaxed)
    }

    fn send(&self, mut frame: Frame) {
        if let Some((key, room)) = self.seal.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let salt = self.salt.load(Ordering::Relaxed);
            frame.payload =
                key.seal_audio(room, salt, frame.seq, &frame_aad(&frame), &frame.payload);
        }
        let bytes = Bytes::from(frame.encode());
        // Held only to clone the frame into each link's queue; the node task replaces the
        // list rarely.
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        for link in links.iter() {
            link.push(bytes.clone());
        }
        self.frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running capture thread; dropping it stops the thread.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing from `source` with `sender` (which fixes the frame duration and the
    /// encoder settings).
    pub fn spawn(
        mut source: Box<dyn Source + Send>,
        pacing: Pacing,
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
                for i in 0u64.. {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    if pacing == Pacing::RealTime {
                        clock.sleep_until(t0 + (i + 1) * frame_us);
                    }
                    let more = match source.next_frame(&mut pcm) {
                        Ok(more) => more,
                        Err(e) => {
                            let _ = events.try_send(AudioEvent::Error(format!("audio input: {e}")));
                            false
                        }
                    };
                    if i == 0 {
                        // Frame 0's first sample was spoken one frame before it was complete.
                        let started = match pacing {
                            Pacing::RealTime => t0,
                            Pacing::Device => clock.now_us().saturating_sub(frame_us),
                        };
                        let _ = events.try_send(AudioEvent::CaptureStarted(clock.unix_us(started)));
                    }
                    if !more {
                        if was_sending && let Ok(last) = sender.encode_last(&pcm) {
                            outbound.send(last);
                        }
                        let _ = events.try_send(AudioEvent::SourceEnded);
                        break;
                    }
                    let sending = outbound.transmitting();
                    if sending {
                        match sender.encode(&pcm) {
                            Ok(Some(frame)) => outbound.send(frame),
                            Ok(None) => {}
                            Err(e) => {
                                let _ = events.try_send(AudioEvent::Error(format!("encoder: {e}")));
                            }
                        }
                    } else if was_sending {
                        // Stopped (muted, stepped down): one END frame so listeners go quiet
                        // without concealing.
                        if let Ok(last) = sender.encode_last(&pcm) {
                            outbound.send(last);
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

impl Capture {
    /// Whether the thread has finished (source ended or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
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
