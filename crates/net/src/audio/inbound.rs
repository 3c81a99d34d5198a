//! Inbound audio: accept every `/ruang/audio/1` stream at once (libp2p-stream drops streams
//! its one-slot accept channel cannot take), bound how many are open, read each in its own
//! task and hand frames to the [`AudioInbox`](super::AudioInbox) without ever waiting on it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{AsyncWriteExt, StreamExt, io::BufReader};
use libp2p::{PeerId, Stream};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{
    AUDIO_ACK, AudioIn, AudioInStats, InboundCounters, ReadError, bump, load, read_frame,
    read_header,
};
use crate::{
    event::Event,
    limits::{
        AUDIO_HEADER_TIMEOUT, CALL_TIMEOUT, MAX_INBOUND_AUDIO_STREAMS,
        MAX_INBOUND_AUDIO_STREAMS_PER_PEER,
    },
};

/// Read buffer per inbound stream: a few frames, so most frames cost one poll.
const READ_BUFFER: usize = 4096;

/// State shared by the acceptor, the readers, the [`AudioInbox`](super::AudioInbox) and the
/// `Client` (which closes streams by peer).
#[derive(Debug)]
pub(crate) struct InboundShared {
    streams: Mutex<Streams>,
    pub(crate) counters: InboundCounters,
    /// Peers whose connection (one of them) just closed, for lanes waiting for an ack (see
    /// `link::open_lane`); bounded, and a lagging reader assumes the worst.
    pub(crate) closes: broadcast::Sender<PeerId>,
}

/// Connection closes kept for lanes that have not read them yet.
const CLOSES_CAP: usize = 256;

impl Default for InboundShared {
    fn default() -> Self {
        InboundShared {
            streams: Mutex::default(),
            counters: InboundCounters::default(),
            closes: broadcast::channel(CLOSES_CAP).0,
        }
    }
}

#[derive(Debug, Default)]
struct Streams {
    next_id: u64,
    open: HashMap<u64, (PeerId, oneshot::Sender<()>)>,
    /// Live outbound [`AudioLink`](crate::AudioLink)s per peer (the event loop keeps their
    /// connections when it trims idle ones).
    links_to: HashMap<PeerId, u32>,
}

impl InboundShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream unless the node's bound or `peer`'s is reached. Returns its id and
    /// cancel receiver.
    fn register(&self, peer: PeerId) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut s = self.lock();
        if s.open.len() >= MAX_INBOUND_AUDIO_STREAMS {
            return None;
        }
        let from_peer = s.open.values().filter(|(p, _)| *p == peer).count();
        if from_peer >= MAX_INBOUND_AUDIO_STREAMS_PER_PEER {
            return None;
        }
        let id = s.next_id;
        s.next_id += 1;
        let (tx, rx) = oneshot::channel();
        s.open.insert(id, (peer, tx));
        Some((id, rx))
    }

    fn unregister(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Closes every inbound audio stream from `peer`; returns how many.
    pub(crate) fn close_from(&self, peer: PeerId) -> usize {
        let mut s = self.lock();
        let ids: Vec<u64> = s
            .open
            .iter()
            .filter(|(_, (p, _))| *p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some((_, cancel)) = s.open.remove(id) {
                let _ = cancel.send(());
            }
        }
        ids.len()
    }

    /// An outbound audio link to `peer` started.
    pub(crate) fn link_opened(&self, peer: PeerId) {
        *self.lock().links_to.entry(peer).or_default() += 1;
    }

    /// An outbound audio link to `peer` ended.
    pub(crate) fn link_closed(&self, peer: PeerId) {
        let mut s = self.lock();
        if let Some(n) = s.links_to.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.links_to.remove(&peer);
            }
        }
    }

    /// Peers audio flows with, either way: an inbound stream from them or a link to them.
    pub(crate) fn audio_peers(&self) -> std::collections::HashSet<PeerId> {
        let s = self.lock();
        s.open
            .values()
            .map(|(p, _)| *p)
            .chain(s.links_to.keys().copied())
            .collect()
    }

    /// Peers with an open inbound audio stream (one entry per stream).
    pub(crate) fn open_peers(&self) -> Vec<PeerId> {
        self.lock().open.values().map(|(p, _)| *p).collect()
    }

    pub(crate) fn stats(&self) -> AudioInStats {
        let c = &self.counters;
        AudioInStats {
            received: load(&c.received),
            dropped: load(&c.dropped),
            malformed: load(&c.malformed),
            refused: load(&c.refused),
            open_streams: self.lock().open.len() as u64,
        }
    }
}

/// Takes every inbound audio stream until `incoming` ends (the swarm is gone).
pub(crate) async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    shared: Arc<InboundShared>,
    inbox: mpsc::Sender<AudioIn>,
    events: mpsc::Sender<Event>,
) {
    while let Some((peer, stream)) = incoming.next().await {
        let Some((id, cancel)) = shared.register(peer) else {
            bump(&shared.counters.refused, 1);
            tracing::debug!(%peer, "too many inbound audio streams, refusing one");
            drop(stream);
            continue;
        };
        tokio::spawn(read_stream(
            peer,
            stream,
            id,
            cancel,
            shared.clone(),
            inbox.clone(),
            events.clone(),
        ));
    }
    tracing::debug!("audio acceptor stopped");
}

async fn read_stream(
    peer: PeerId,
    stream: Stream,
    id: u64,
    mut cancel: oneshot::Receiver<()>,
    shared: Arc<InboundShared>,
    inbox: mpsc::Sender<AudioIn>,
    events: mpsc::Sender<Event>,
) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let header = tokio::select! {
        _ = &mut cancel => None,
        r = tokio::time::timeout(AUDIO_HEADER_TIMEOUT, read_header(&mut reader)) => match r {
            Ok(Ok(h)) => Some(Arc::<[u8]>::from(&h[..])),
            Ok(Err(ReadError::Malformed(len))) => {
                bump(&shared.counters.malformed, 1);
                tracing::debug!(%peer, len, "audio stream header too long, closing");
                None
            }
            Ok(Err(ReadError::Io(e))) => {
                tracing::debug!(%peer, error = %e, "audio stream ended before its header");
                None
            }
            Err(_) => {
                bump(&shared.counters.malformed, 1);
                tracing::debug!(%peer, "audio stream sent no header in time, closing");
                None
            }
        },
    };
    let Some(header) = header else {
        shared.unregister(id);
        return;
    };
    // Tell the sender this stream is taken (see the module doc of `audio`).
    let ack = async {
        let stream = reader.get_mut();
        stream.write_all(&[AUDIO_ACK]).await?;
        stream.flush().await
    };
    match tokio::time::timeout(AUDIO_HEADER_TIMEOUT, ack).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "audio stream gone before its ack");
            shared.unregister(id);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "audio stream ack blocked, closing");
            shared.unregister(id);
            return;
        }
    }

    let opened = Event::AudioStreamOpened {
        peer,
        header: header.clone(),
    };
    // Control events are backpressured; this only delays this one stream's frames.
    let _ = tokio::time::timeout(CALL_TIMEOUT, events.send(opened)).await;

    loop {
        let frame = tokio::select! {
            _ = &mut cancel => break,
            f = read_frame(&mut reader) => f,
        };
        match frame {
            Ok(frame) => {
                bump(&shared.counters.received, 1);
                let item = AudioIn {
                    peer,
                    header: header.clone(),
                    frame,
                    received_at: Instant::now(),
                };
                match inbox.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        bump(&shared.counters.dropped, 1);
                    }
                    // Nobody listens any more: keep draining the stream so the sender is not
                    // stalled, and count the frames as dropped.
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        bump(&shared.counters.dropped, 1);
                    }
                }
            }
            Err(ReadError::Malformed(len)) => {
                bump(&shared.counters.malformed, 1);
                tracing::debug!(%peer, len, "malformed audio frame length, closing stream");
                break;
            }
            Err(ReadError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "audio stream ended");
                break;
            }
        }
    }
    shared.unregister(id);
    // Dropping without a graceful close resets the stream (yamux RST, QUIC STOP_SENDING), so
    // a sender we stopped listening to gets a write error at once.
    drop(reader);
    let closed = Event::AudioStreamClosed { peer, header };
    let _ = tokio::time::timeout(CALL_TIMEOUT, events.send(closed)).await;
}
