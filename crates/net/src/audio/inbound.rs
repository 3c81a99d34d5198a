//! Inbound audio: accept every `/ruang/audio/1` stream at once (libp2p-stream drops streams
//! its one-slot accept channel cannot take), bound how many are open, read each in its own
//! task and hand frames to the [`AudioInbox`](super::AudioInbox) without ever waiting on it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt, io::BufReader};
use libp2p::{PeerId, Stream};
use tokio::sync::{mpsc, oneshot};

use super::{
    AUDIO_ACK, AUDIO_LOSS_REPORT, AudioIn, AudioInStats, InboundCounters, ReadError, bump, load,
    read_frame, read_header,
};
use crate::{
    event::Event,
    limits::{
        AUDIO_HEADER_TIMEOUT, AUDIO_STREAMS_RESERVED, CALL_TIMEOUT, MAX_INBOUND_AUDIO_STREAMS,
        MAX_INBOUND_AUDIO_STREAMS_PER_PEER,
    },
};

/// Read buffer per inbound stream: a few frames, so most frames cost one poll.
const READ_BUFFER: usize = 4096;

/// How often a stream looks for a loss report to send back.
const REPORT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long writing one loss report may take before the stream stops reporting (a sender
/// that never reads its streams' reverse direction).
const REPORT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// State shared by the acceptor, the readers, the [`AudioInbox`](super::AudioInbox) and the
/// `Client` (which closes streams by peer).
#[derive(Debug, Default)]
pub(crate) struct InboundShared {
    streams: Mutex<Streams>,
    pub(crate) counters: InboundCounters,
}

/// One open inbound stream.
#[derive(Debug)]
struct Open {
    peer: PeerId,
    cancel: oneshot::Sender<()>,
    /// A loss report waiting to be written back on this stream, ‰.
    loss_report: Option<u16>,
}

#[derive(Debug, Default)]
struct Streams {
    next_id: u64,
    open: HashMap<u64, Open>,
    /// Live outbound [`AudioLink`](crate::AudioLink)s per peer (the event loop keeps their
    /// connections when it trims idle ones).
    links_to: HashMap<PeerId, u32>,
    /// Peers that may use the [`AUDIO_STREAMS_RESERVED`] slots (the stage).
    priority: HashSet<PeerId>,
    /// Requests for our audio held (see `request`): one per peer, its id and the sender
    /// that turns it down (dropping it closes the request quietly).
    requests: HashMap<PeerId, (u64, oneshot::Sender<()>)>,
}

impl InboundShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream unless the node's bound or `peer`'s is reached (for a peer without
    /// priority, the node's bound less [`AUDIO_STREAMS_RESERVED`]). Returns its id and cancel
    /// receiver.
    fn register(&self, peer: PeerId) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut s = self.lock();
        let bound = if s.priority.contains(&peer) {
            MAX_INBOUND_AUDIO_STREAMS
        } else {
            MAX_INBOUND_AUDIO_STREAMS - AUDIO_STREAMS_RESERVED
        };
        if s.open.len() >= bound {
            return None;
        }
        let from_peer = s.open.values().filter(|o| o.peer == peer).count();
        if from_peer >= MAX_INBOUND_AUDIO_STREAMS_PER_PEER {
            return None;
        }
        let id = s.next_id;
        s.next_id += 1;
        let (cancel, rx) = oneshot::channel();
        s.open.insert(
            id,
            Open {
                peer,
                cancel,
                loss_report: None,
            },
        );
        Some((id, rx))
    }

    /// Queues a loss report (‰) for `peer` on its longest-open stream (one report per peer,
    /// not one per lane); replaces a report not yet written.
    pub(crate) fn set_loss_report(&self, peer: PeerId, permille: u16) {
        let mut s = self.lock();
        let oldest = s
            .open
            .iter()
            .filter(|(_, o)| o.peer == peer)
            .map(|(id, _)| *id)
            .min();
        if let Some(o) = oldest.and_then(|id| s.open.get_mut(&id)) {
            o.loss_report = Some(permille.min(1000));
        }
    }

    /// Takes the loss report queued on stream `id`.
    fn take_loss_report(&self, id: u64) -> Option<u16> {
        self.lock().open.get_mut(&id)?.loss_report.take()
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
            .filter(|(_, o)| o.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(o) = s.open.remove(id) {
                let _ = o.cancel.send(());
            }
        }
        ids.len()
    }

    /// Sets the peers that may use the reserved stream slots.
    pub(crate) fn set_priority(&self, peers: HashSet<PeerId>) {
        self.lock().priority = peers;
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

    /// Peers audio flows with, either way, or is asked for: an inbound stream from them, a
    /// link or a request to them, a request from them.
    pub(crate) fn audio_peers(&self) -> std::collections::HashSet<PeerId> {
        let s = self.lock();
        s.open
            .values()
            .map(|o| o.peer)
            .chain(s.links_to.keys().copied())
            .chain(s.requests.keys().copied())
            .collect()
    }

    /// Holds a request for our audio from `peer`, replacing the one it had, unless `max`
    /// peers have one. Returns its id and the receiver that turns it down.
    pub(crate) fn hold_request(
        &self,
        peer: PeerId,
        max: usize,
    ) -> Option<(u64, oneshot::Receiver<()>)> {
        let mut s = self.lock();
        if s.requests.len() >= max && !s.requests.contains_key(&peer) {
            return None;
        }
        let id = s.next_id;
        s.next_id += 1;
        let (cancel, rx) = oneshot::channel();
        // The old request's sender is dropped: it ends without telling the node.
        s.requests.insert(peer, (id, cancel));
        Some((id, rx))
    }

    /// Forgets request `id` of `peer`; whether it was still the one held (not replaced or
    /// turned down).
    pub(crate) fn release_request(&self, peer: PeerId, id: u64) -> bool {
        let mut s = self.lock();
        if s.requests.get(&peer).is_some_and(|(held, _)| *held == id) {
            s.requests.remove(&peer);
            return true;
        }
        false
    }

    /// Turns down the request held from `peer`; whether there was one.
    pub(crate) fn refuse_request(&self, peer: PeerId) -> bool {
        match self.lock().requests.remove(&peer) {
            Some((_, cancel)) => {
                let _ = cancel.send(());
                true
            }
            None => false,
        }
    }

    /// Whether a request from `peer` is held.
    pub(crate) fn holds_request(&self, peer: PeerId) -> bool {
        self.lock().requests.contains_key(&peer)
    }

    /// Peers whose request for our audio is held.
    pub(crate) fn requesters(&self) -> Vec<PeerId> {
        self.lock().requests.keys().copied().collect()
    }

    /// Peers with an open inbound audio stream (one entry per stream).
    pub(crate) fn open_peers(&self) -> Vec<PeerId> {
        self.lock().open.values().map(|o| o.peer).collect()
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
    // Frames come in on the read half; the ack and loss reports go back on the write half.
    let (read_half, mut write_half) = stream.split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
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
        write_half.write_all(&[AUDIO_ACK]).await?;
        write_half.flush().await
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

    // Reading is never interrupted (a read cut off mid-frame would lose the framing): the
    // reports run beside it and end the stream only with it.
    let reports = async {
        let mut poll = tokio::time::interval(REPORT_POLL);
        loop {
            poll.tick().await;
            let Some(permille) = shared.take_loss_report(id) else {
                continue;
            };
            let [hi, lo] = permille.to_be_bytes();
            let write = async {
                write_half.write_all(&[AUDIO_LOSS_REPORT, hi, lo]).await?;
                write_half.flush().await
            };
            if !matches!(
                tokio::time::timeout(REPORT_WRITE_TIMEOUT, write).await,
                Ok(Ok(()))
            ) {
                tracing::debug!(%peer, "audio loss report not taken, no more on this stream");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = &mut cancel => {}
        () = read_frames(peer, id, &mut reader, &header, &shared, &inbox) => {}
        () = reports => {}
    }
    shared.unregister(id);
    // Dropping without a graceful close resets the stream (yamux RST, QUIC STOP_SENDING), so
    // a sender we stopped listening to gets a write error at once.
    drop(reader);
    drop(write_half);
    let closed = Event::AudioStreamClosed { peer, header };
    let _ = tokio::time::timeout(CALL_TIMEOUT, events.send(closed)).await;
}

/// Reads frames into the inbox until the stream ends or breaks.
async fn read_frames<R: futures::AsyncRead + Unpin>(
    peer: PeerId,
    stream: u64,
    reader: &mut R,
    header: &Arc<[u8]>,
    shared: &InboundShared,
    inbox: &mpsc::Sender<AudioIn>,
) {
    loop {
        let frame = read_frame(reader).await;
        match frame {
            Ok(frame) => {
                bump(&shared.counters.received, 1);
                let item = AudioIn {
                    peer,
                    stream,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 peers holding 16 streams each would fill every slot; the stage still gets in. (With
    /// one bound for everyone, the stage's first stream was refused.)
    #[test]
    fn the_stage_has_slots_that_others_cannot_take() {
        let shared = InboundShared::default();
        let speaker = PeerId::random();
        shared.set_priority([speaker].into());
        let others = MAX_INBOUND_AUDIO_STREAMS - AUDIO_STREAMS_RESERVED;
        let mut taken = 0;
        for _ in 0..MAX_INBOUND_AUDIO_STREAMS / MAX_INBOUND_AUDIO_STREAMS_PER_PEER {
            let attacker = PeerId::random();
            for _ in 0..MAX_INBOUND_AUDIO_STREAMS_PER_PEER {
                taken += usize::from(shared.register(attacker).is_some());
            }
        }
        assert_eq!(taken, others, "the others take all but the reserve");
        assert!(shared.register(PeerId::random()).is_none());
        for lane in 0..MAX_INBOUND_AUDIO_STREAMS_PER_PEER {
            assert!(
                shared.register(speaker).is_some(),
                "stage lane {lane} refused"
            );
        }
        // Its own bound still holds.
        assert!(shared.register(speaker).is_none());
        // Off the stage, it is one of the others again.
        shared.set_priority(HashSet::new());
        let lane = shared
            .lock()
            .open
            .iter()
            .find(|(_, o)| o.peer == speaker)
            .map(|(id, _)| *id);
        shared.unregister(lane.expect("the speaker holds streams"));
        assert!(shared.register(speaker).is_none());
    }
}
