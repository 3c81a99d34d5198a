//! Outbound audio: [`AudioLink`], one long-lived stream to one peer, fed by a queue that never
//! blocks the caller and never holds stale audio.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use futures::AsyncWriteExt;
use libp2p::{PeerId, Stream};
use tokio::sync::{Notify, watch};

use super::{AUDIO_PROTOCOL, bump, load, put_chunk};
use crate::{
    client::Client,
    error::NetError,
    limits::{
        AUDIO_BACKOFF_MAX, AUDIO_BACKOFF_MIN, AUDIO_LINK_QUEUE, AUDIO_OPEN_TIMEOUT,
        AUDIO_STALE_AFTER, AUDIO_WRITE_TIMEOUT, MAX_AUDIO_FRAME_LEN, MAX_AUDIO_HEADER_LEN,
    },
};

/// Counters of one [`AudioLink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioLinkStats {
    /// Frames written to the stream.
    pub sent: u64,
    /// Frames dropped: queue full (oldest dropped), stale after an outage, or oversized.
    pub dropped: u64,
    /// Times the stream was opened again after the first time.
    pub reconnects: u64,
    /// Failed attempts to open the stream.
    pub open_failures: u64,
    /// Frames waiting in the queue now (at most [`AUDIO_LINK_QUEUE`]).
    pub queued: usize,
    /// Whether a stream is open now.
    pub connected: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<(Instant, Bytes)>>,
    wake: Notify,
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    open_failures: AtomicU64,
    connected: AtomicBool,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Bytes)>> {
        // Pushes and pops cannot leave the deque inconsistent, so poison is harmless.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A long-lived `/ruang/audio/1` stream to one peer (one per speaker per hop).
///
/// [`push`](AudioLink::push) never blocks and never awaits. A task owned by the link opens the
/// stream (dialling if needed, moving to QUIC when the peer has it), writes the header, then
/// every frame; on failure it reopens with backoff ([`AUDIO_BACKOFF_MIN`] doubling to
/// [`AUDIO_BACKOFF_MAX`]). While the path is slow or down, the queue keeps only the newest
/// [`AUDIO_LINK_QUEUE`] frames and drops frames older than [`AUDIO_STALE_AFTER`].
///
/// Dropping the link (or [`close`](AudioLink::close)) ends the task and the stream.
#[derive(Debug)]
pub struct AudioLink {
    peer: PeerId,
    shared: Arc<Shared>,
    // Dropping this sender tells the task to stop.
    _stop: watch::Sender<()>,
}

impl AudioLink {
    pub(crate) fn spawn(client: Client, peer: PeerId, header: Vec<u8>) -> AudioLink {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = watch::channel(());
        let task = run(client.clone(), peer, header, shared.clone(), stop_rx);
        client.runtime().spawn(task);
        AudioLink {
            peer,
            shared,
            _stop: stop_tx,
        }
    }

    /// The peer this link sends to.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Queues a frame. Never blocks and never awaits (a short uncontended mutex and a notify),
    /// so it may be called from a real-time audio thread outside tokio. If
    /// [`AUDIO_LINK_QUEUE`] frames are waiting, the oldest is dropped (and counted). Empty
    /// frames and frames over [`MAX_AUDIO_FRAME_LEN`] are dropped and counted.
    pub fn push(&self, frame: Bytes) {
        if frame.is_empty() || frame.len() > MAX_AUDIO_FRAME_LEN {
            bump(&self.shared.dropped, 1);
            return;
        }
        {
            let mut q = self.shared.queue();
            if q.len() >= AUDIO_LINK_QUEUE {
                q.pop_front();
                bump(&self.shared.dropped, 1);
            }
            q.push_back((Instant::now(), frame));
        }
        self.shared.wake.notify_one();
    }

    /// The link's counters.
    pub fn stats(&self) -> AudioLinkStats {
        let s = &self.shared;
        AudioLinkStats {
            sent: load(&s.sent),
            dropped: load(&s.dropped),
            reconnects: load(&s.reconnects),
            open_failures: load(&s.open_failures),
            queued: s.queue().len(),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Ends the task and the stream (same as dropping the link).
    pub fn close(self) {}
}

/// How a session with one open stream ended.
enum End {
    /// The link was dropped.
    Stopped,
    /// The stream failed.
    Failed(String),
}

async fn run(
    client: Client,
    peer: PeerId,
    header: Vec<u8>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<()>,
) {
    if header.len() > MAX_AUDIO_HEADER_LEN {
        tracing::warn!(%peer, len = header.len(), "audio header too long, link not started");
        return;
    }
    let mut hello = Vec::with_capacity(header.len() + 2);
    put_chunk(&mut hello, &header);
    let mut control = client.stream_control();
    let mut backoff = AUDIO_BACKOFF_MIN;
    let mut opened_before = false;

    loop {
        let attempt = tokio::time::timeout(
            AUDIO_OPEN_TIMEOUT,
            open(&client, &mut control, peer, &hello),
        );
        let opened = tokio::select! {
            _ = stop.changed() => return,
            r = attempt => r.unwrap_or_else(|_| {
                Err(NetError::Timeout {
                    what: "opening an audio stream",
                    after: AUDIO_OPEN_TIMEOUT,
                })
            }),
        };
        let end = match opened {
            Ok(mut stream) => {
                if opened_before {
                    bump(&shared.reconnects, 1);
                }
                opened_before = true;
                backoff = AUDIO_BACKOFF_MIN;
                shared.connected.store(true, Ordering::Relaxed);
                tracing::debug!(%peer, "audio stream open");
                let end = pump(&shared, &mut stream, &mut stop).await;
                shared.connected.store(false, Ordering::Relaxed);
                if let End::Stopped = end {
                    // Graceful end: the receiver sees EOF, not a reset.
                    let _ = tokio::time::timeout(AUDIO_WRITE_TIMEOUT, stream.close()).await;
                }
                end
            }
            Err(NetError::Shutdown) => return,
            Err(e) => {
                bump(&shared.open_failures, 1);
                End::Failed(e.to_string())
            }
        };
        match end {
            End::Stopped => return,
            End::Failed(reason) => {
                tracing::debug!(%peer, %reason, ?backoff, "audio stream down, retrying");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(AUDIO_BACKOFF_MAX);
        drop_stale(&shared);
    }
}

/// Connects (preferring QUIC), opens the stream and writes the header.
async fn open(
    client: &Client,
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    hello: &[u8],
) -> Result<Stream, NetError> {
    client.ensure_connected(peer).await?;
    let mut stream = control
        .open_stream(peer, AUDIO_PROTOCOL)
        .await
        .map_err(|e| match e {
            libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => NetError::Unsupported {
                peer,
                protocol: "/ruang/audio/1",
            },
            other => NetError::Stream(other.to_string()),
        })?;
    stream
        .write_all(hello)
        .await
        .map_err(|e| NetError::Stream(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| NetError::Stream(e.to_string()))?;
    Ok(stream)
}

/// Writes queued frames until the link is dropped or the stream fails.
async fn pump(shared: &Shared, stream: &mut Stream, stop: &mut watch::Receiver<()>) -> End {
    let mut buf = Vec::with_capacity(AUDIO_LINK_QUEUE * (MAX_AUDIO_FRAME_LEN + 2));
    loop {
        buf.clear();
        let mut n = 0u64;
        let mut stale = 0u64;
        {
            let mut q = shared.queue();
            while let Some((at, frame)) = q.pop_front() {
                if at.elapsed() > AUDIO_STALE_AFTER {
                    stale += 1;
                    continue;
                }
                put_chunk(&mut buf, &frame);
                n += 1;
            }
        }
        bump(&shared.dropped, stale);
        if n == 0 {
            tokio::select! {
                _ = stop.changed() => return End::Stopped,
                _ = shared.wake.notified() => continue,
            }
        }
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        tokio::select! {
            _ = stop.changed() => return End::Stopped,
            r = tokio::time::timeout(AUDIO_WRITE_TIMEOUT, write) => match r {
                Ok(Ok(())) => bump(&shared.sent, n),
                Ok(Err(e)) => {
                    bump(&shared.dropped, n);
                    return End::Failed(e.to_string());
                }
                Err(_) => {
                    bump(&shared.dropped, n);
                    return End::Failed(format!("write blocked for {AUDIO_WRITE_TIMEOUT:?}"));
                }
            },
        }
    }
}

/// Drops queued frames that are too old to be worth sending.
fn drop_stale(shared: &Shared) {
    let mut q = shared.queue();
    let before = q.len();
    q.retain(|(at, _)| at.elapsed() <= AUDIO_STALE_AFTER);
    let n = (before - q.len()) as u64;
    drop(q);
    bump(&shared.dropped, n);
}
