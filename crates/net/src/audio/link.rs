//! Outbound audio: [`AudioLink`], long-lived streams ("lanes", [`AUDIO_LANES`]) to one peer,
//! fed by a queue that never blocks the caller and never holds stale audio.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use futures::{
    AsyncReadExt, AsyncWriteExt, StreamExt,
    io::{ReadHalf, WriteHalf},
    stream::FuturesUnordered,
};
use libp2p::{PeerId, Stream};
use tokio::sync::{Notify, watch};

use super::{AUDIO_ACK, AUDIO_LOSS_REPORT, AUDIO_PROTOCOL, bump, load, put_chunk};
use crate::{
    client::Client,
    error::NetError,
    limits::{
        AUDIO_ACK_TIMEOUT, AUDIO_BACKOFF_MAX, AUDIO_BACKOFF_MIN, AUDIO_LANES, AUDIO_LINK_QUEUE,
        AUDIO_OPEN_TIMEOUT, AUDIO_RESUME_BACKLOG, AUDIO_STALE_AFTER, AUDIO_WRITE_TIMEOUT,
        MAX_AUDIO_FRAME_LEN, MAX_AUDIO_HEADER_LEN,
    },
};

/// Counters of one [`AudioLink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioLinkStats {
    /// Frames written to the stream.
    pub sent: u64,
    /// Frames dropped: queue full (oldest dropped), stale after an outage, or oversized.
    pub dropped: u64,
    /// Times the streams were opened again after the first time.
    pub reconnects: u64,
    /// Failed attempts to open the streams.
    pub open_failures: u64,
    /// Streams opened again because the receiver dropped them unread (it takes one new
    /// stream at a time).
    pub lane_retries: u64,
    /// Frames waiting in the queue now (at most [`AUDIO_LINK_QUEUE`]).
    pub queued: usize,
    /// Whether the link is sending now (at least one lane open).
    pub connected: bool,
    /// Lanes open now (up to [`AUDIO_LANES`]; the first opens before any frame is sent, the
    /// others while frames already flow).
    pub lanes: usize,
    /// The receiver's latest loss report (‰ of this audio its playout missed) and when it
    /// came; `None` until one comes (receivers of earlier versions send none).
    pub loss_report: Option<(u16, Instant)>,
}

/// A lane's write half: frames go out on it; the read half is left to [`read_reports`].
type Lane = WriteHalf<Stream>;

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<(Instant, Bytes)>>,
    wake: Notify,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Frames dropped from a full queue while a lane was open: the path could not carry them.
    overflowed: AtomicU64,
    reconnects: AtomicU64,
    open_failures: AtomicU64,
    lane_retries: AtomicU64,
    connected: AtomicBool,
    /// Whether the streams were ever open (a link that lost them is on a narrow or dead
    /// path; one never opened has not reached its peer yet).
    opened_once: AtomicBool,
    lanes: AtomicU64,
    loss_report: Mutex<Option<(u16, Instant)>>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Bytes)>> {
        // Pushes and pops cannot leave the deque inconsistent, so poison is harmless.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Long-lived `/ruang/audio/1` streams to one peer (one link per speaker per hop).
///
/// [`push`](AudioLink::push) never blocks and never awaits. A task owned by the link opens
/// [`AUDIO_LANES`] streams (dialling if needed, moving to QUIC when the peer has it), writes the
/// header on each, then every frame, round-robin over the lanes (see [`AUDIO_LANES`] for why);
/// when any lane fails it reopens them all with backoff ([`AUDIO_BACKOFF_MIN`] doubling to
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
    /// Where the link is registered, so the event loop keeps its connection.
    registry: Arc<crate::audio::inbound::InboundShared>,
}

impl Drop for AudioLink {
    fn drop(&mut self) {
        self.registry.link_closed(self.peer);
    }
}

impl AudioLink {
    pub(crate) fn spawn(client: Client, peer: PeerId, header: Vec<u8>) -> AudioLink {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = watch::channel(());
        let task = run(client.clone(), peer, header, shared.clone(), stop_rx);
        client.runtime().spawn(task);
        client.inbound.link_opened(peer);
        AudioLink {
            peer,
            shared,
            _stop: stop_tx,
            registry: client.inbound.clone(),
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
                if self.shared.opened_once.load(Ordering::Relaxed) {
                    bump(&self.shared.overflowed, 1);
                }
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
            lane_retries: load(&s.lane_retries),
            queued: s.queue().len(),
            connected: s.connected.load(Ordering::Relaxed),
            lanes: load(&s.lanes) as usize,
            loss_report: self.loss_report(),
        }
    }

    /// The receiver's latest loss report and when it came ([`AudioLinkStats::loss_report`]),
    /// without the rest of the counters: cheap enough for the capture thread.
    pub fn loss_report(&self) -> Option<(u16, Instant)> {
        *self
            .shared
            .loss_report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Frames waiting in the queue now, and frames so far dropped from a full queue once the
    /// link had been open (the path could not carry them, or lost the streams under them, as
    /// a path narrower than the audio does; frames dropped before the link first opened do not
    /// count). Cheap enough for the capture thread, which pushes to the same queue every frame.
    /// (A link to a peer that is gone counts too until it is closed: a few seconds.)
    pub fn backlog(&self) -> (usize, u64) {
        (self.shared.queue().len(), load(&self.shared.overflowed))
    }

    /// Whether the link is sending now (at least one lane open).
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
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
        // Ends the lanes' report readers when this session's lanes are dropped.
        let (session, in_session) = watch::channel(());
        let attempt = tokio::time::timeout(
            AUDIO_OPEN_TIMEOUT,
            open(&client, &mut control, peer, &hello, &shared, &in_session),
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
            Ok(mut lanes) => {
                if opened_before {
                    bump(&shared.reconnects, 1);
                }
                opened_before = true;
                backoff = AUDIO_BACKOFF_MIN;
                shared.connected.store(true, Ordering::Relaxed);
                shared.opened_once.store(true, Ordering::Relaxed);
                drop_older_than(&shared, AUDIO_RESUME_BACKLOG);
                tracing::debug!(%peer, "audio stream open");
                // The other lanes open while frames already flow on the first.
                let mut more: FuturesUnordered<_> = (1..AUDIO_LANES)
                    .map(|_| {
                        Box::pin(open_lane(
                            control.clone(),
                            peer,
                            hello.clone(),
                            shared.clone(),
                            in_session.clone(),
                        ))
                    })
                    .collect();
                let end = pump(&shared, &mut lanes, &mut more, &mut stop).await;
                shared.connected.store(false, Ordering::Relaxed);
                shared.lanes.store(0, Ordering::Relaxed);
                if let End::Stopped = end {
                    // Graceful end: the receiver sees EOF, not a reset.
                    let close = futures::future::join_all(lanes.iter_mut().map(|s| s.close()));
                    let _ = tokio::time::timeout(AUDIO_WRITE_TIMEOUT, close).await;
                }
                end
            }
            Err(NetError::Shutdown) => return,
            Err(e) => {
                bump(&shared.open_failures, 1);
                End::Failed(e.to_string())
            }
        };
        drop(session);
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
        drop_older_than(&shared, AUDIO_STALE_AFTER);
    }
}

/// Attempts to open one lane before the link gives up (and backs off): a receiver drops a
/// stream that arrives while its accept slot is taken, so a few quick retries are normal.
const LANE_OPEN_ATTEMPTS: u32 = 7;

/// Connects (preferring QUIC), then opens the first lane (stream, header, the receiver's ack).
async fn open(
    client: &Client,
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    hello: &[u8],
    shared: &Arc<Shared>,
    session: &watch::Receiver<()>,
) -> Result<Vec<Lane>, NetError> {
    client.connect(peer).await?;
    let first = open_lane(
        control.clone(),
        peer,
        hello.to_vec(),
        shared.clone(),
        session.clone(),
    )
    .await?;
    Ok(vec![first])
}

/// Opens one lane: the stream, the header, the receiver's ack; again after a short pause when
/// the stream ended unanswered (the receiver dropped it unread, or its connection closed: a
/// relayed one replaced by a hole-punched one) or no ack came in [`AUDIO_ACK_TIMEOUT`].
async fn open_lane(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    hello: Vec<u8>,
    shared: Arc<Shared>,
    session: watch::Receiver<()>,
) -> Result<Lane, NetError> {
    let mut why = String::new();
    for attempt in 0..LANE_OPEN_ATTEMPTS {
        if attempt > 0 {
            bump(&shared.lane_retries, 1);
            let pause = std::time::Duration::from_millis(10 << attempt);
            tokio::time::sleep(pause).await;
        }
        let opened = async {
            let mut stream = open_stream(&mut control, peer, &hello).await?;
            let mut ack = [0u8; 1];
            match stream.read_exact(&mut ack).await {
                Ok(()) if ack[0] == AUDIO_ACK => Ok(Ok(stream)),
                Ok(()) => Err(NetError::Stream(format!(
                    "audio stream answered {:#04x}, not an ack",
                    ack[0]
                ))),
                Err(e) => Ok(Err(e.to_string())),
            }
        };
        match tokio::time::timeout(AUDIO_ACK_TIMEOUT, opened).await {
            Ok(Ok(Ok(stream))) => {
                let (reports, lane) = stream.split();
                tokio::spawn(read_reports(reports, shared.clone(), session));
                return Ok(lane);
            }
            Ok(Ok(Err(e))) => why = e,
            Ok(Err(e)) => return Err(e),
            Err(_) => why = format!("no ack within {AUDIO_ACK_TIMEOUT:?}"),
        }
        tracing::debug!(%peer, attempt, %why, "audio lane not taken");
    }
    Err(NetError::Stream(format!(
        "audio stream not taken by the receiver after {LANE_OPEN_ATTEMPTS} attempts: {why}"
    )))
}

/// Reads the receiver's loss reports off a lane until the lane's session ends, the stream
/// does, or the receiver writes something else.
async fn read_reports(
    mut reports: ReadHalf<Stream>,
    shared: Arc<Shared>,
    mut session: watch::Receiver<()>,
) {
    let mut report = [0u8; 3];
    loop {
        tokio::select! {
            _ = session.changed() => return,
            r = reports.read_exact(&mut report) => match r {
                Ok(()) if report[0] == AUDIO_LOSS_REPORT => {
                    let permille = u16::from_be_bytes([report[1], report[2]]).min(1000);
                    *shared.loss_report.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((permille, Instant::now()));
                }
                Ok(()) => {
                    tracing::debug!(byte = report[0], "unknown message on an audio lane");
                    return;
                }
                Err(_) => return,
            },
        }
    }
}

/// Opens one stream and writes the header.
async fn open_stream(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    hello: &[u8],
) -> Result<Stream, NetError> {
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

/// Writes queued frames, round-robin over the open lanes, until the link is dropped or a lane
/// fails; takes each further lane into the rotation as it opens.
async fn pump<F>(
    shared: &Shared,
    lanes: &mut Vec<Lane>,
    more: &mut FuturesUnordered<F>,
    stop: &mut watch::Receiver<()>,
) -> End
where
    F: std::future::Future<Output = Result<Lane, NetError>> + Unpin,
{
    let new_buf = || Vec::with_capacity(AUDIO_LINK_QUEUE * (MAX_AUDIO_FRAME_LEN + 2));
    let mut bufs: Vec<Vec<u8>> = lanes.iter().map(|_| new_buf()).collect();
    shared.lanes.store(lanes.len() as u64, Ordering::Relaxed);
    let mut lane = 0usize;
    loop {
        bufs.iter_mut().for_each(Vec::clear);
        let mut n = 0u64;
        let mut stale = 0u64;
        {
            let mut q = shared.queue();
            while let Some((at, frame)) = q.pop_front() {
                if at.elapsed() > AUDIO_STALE_AFTER {
                    stale += 1;
                    continue;
                }
                put_chunk(&mut bufs[lane], &frame);
                lane = (lane + 1) % bufs.len();
                n += 1;
            }
        }
        bump(&shared.dropped, stale);
        if n == 0 {
            tokio::select! {
                _ = stop.changed() => return End::Stopped,
                _ = shared.wake.notified() => continue,
                Some(opened) = more.next(), if !more.is_empty() => {
                    match opened {
                        Ok(stream) => {
                            lanes.push(stream);
                            bufs.push(new_buf());
                            shared.lanes.store(lanes.len() as u64, Ordering::Relaxed);
                        }
                        // Fewer lanes is still a working link.
                        Err(e) => tracing::debug!(error = %e, "an audio lane did not open"),
                    }
                    continue;
                }
            }
        }
        let write = async {
            for (stream, buf) in lanes.iter_mut().zip(&bufs) {
                if !buf.is_empty() {
                    stream.write_all(buf).await?;
                    stream.flush().await?;
                }
            }
            Ok::<(), std::io::Error>(())
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
fn drop_older_than(shared: &Shared, age: std::time::Duration) {
    let mut q = shared.queue();
    let before = q.len();
    q.retain(|(at, _)| at.elapsed() <= age);
    let n = (before - q.len()) as u64;
    drop(q);
    bump(&shared.dropped, n);
}
