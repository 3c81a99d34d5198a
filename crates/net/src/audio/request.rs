//! Audio by request: a listener asks a speaker for its audio over its own connection, on a
//! `/ruang/listen/1` stream it keeps open for as long as it wants the audio, and the speaker
//! streams (`/ruang/audio/1`, an [`AudioLink`](super::AudioLink)) only to peers that asked.
//! So a claim about a peer (a presence naming addresses) makes nobody send audio anywhere: a
//! request comes from the authenticated peer itself. On the wire:
//!
//! ```text
//! request_len: u16 BE | request (≤ MAX_AUDIO_REQUEST_LEN)   once, from the listener
//!                               ← AUDIO_ACK: taken, held until either side closes
//!                               ← REQUEST_REFUSED: turned down (now or later); then closed
//! ```
//!
//! - Outbound: [`AudioRequest`] owns a task that connects, asks, waits, and asks again with
//!   backoff when the stream ends ([`REFUSED_RETRY_MIN`] doubling to [`REFUSED_RETRY_MAX`]
//!   after a refusal; 10 ms doubling when it was dropped unread, as libp2p-stream does when
//!   several arrive at once).
//! - Inbound: an acceptor task takes every stream; one request per peer is held (a new one
//!   replaces the old), at most [`MAX_AUDIO_REQUESTS`] in all; the node hears of each through
//!   [`Event::AudioRequested`] and [`Event::AudioRequestEnded`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::Duration,
};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{mpsc, oneshot, watch};

use super::{AUDIO_ACK, bump, inbound::InboundShared, load, put_chunk, read_chunk};
use crate::{
    client::Client,
    event::Event,
    limits::{
        AUDIO_ACK_TIMEOUT, AUDIO_BACKOFF_MAX, AUDIO_BACKOFF_MIN, AUDIO_HEADER_TIMEOUT,
        AUDIO_OPEN_TIMEOUT, CALL_TIMEOUT, MAX_AUDIO_REQUEST_LEN, MAX_AUDIO_REQUESTS,
    },
};

/// Protocol name of audio requests.
pub const REQUEST_PROTOCOL: StreamProtocol = StreamProtocol::new("/ruang/listen/1");

/// The byte a speaker sends when it turns a request down (it may after first taking it).
const REQUEST_REFUSED: u8 = 0x03;

/// First wait before asking again after a refusal: a speaker at its fan-out frees a place
/// only when a listener leaves.
pub const REFUSED_RETRY_MIN: Duration = Duration::from_secs(15);
/// Longest wait before asking again after refusals in a row.
pub const REFUSED_RETRY_MAX: Duration = Duration::from_secs(120);

/// Requests dropped unread in a row that are asked again after a short pause (10 ms,
/// doubling) before the usual backoff.
const DROPPED_RETRIES: u32 = 5;

/// Counters of one [`AudioRequest`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioRequestStats {
    /// Whether the speaker holds the request now.
    pub held: bool,
    /// Times the request was sent (each on a new stream).
    pub asked: u64,
    /// Times the speaker turned it down.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Shared {
    held: AtomicBool,
    asked: AtomicU64,
    refused: AtomicU64,
}

/// A request for `peer`'s audio, asked again whenever it ends, until dropped (which closes
/// the stream: the speaker stops sending).
#[derive(Debug)]
pub struct AudioRequest {
    peer: PeerId,
    shared: Arc<Shared>,
    // Dropping this sender tells the task to stop.
    _stop: watch::Sender<()>,
    /// Where the request is registered, so the event loop keeps its connection.
    registry: Arc<InboundShared>,
}

impl Drop for AudioRequest {
    fn drop(&mut self) {
        self.registry.link_closed(self.peer);
    }
}

impl AudioRequest {
    pub(crate) fn spawn(client: Client, peer: PeerId, request: Vec<u8>) -> AudioRequest {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = watch::channel(());
        client
            .runtime()
            .spawn(run(client.clone(), peer, request, shared.clone(), stop_rx));
        client.inbound.link_opened(peer);
        AudioRequest {
            peer,
            shared,
            _stop: stop_tx,
            registry: client.inbound.clone(),
        }
    }

    /// The speaker asked.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Its counters.
    pub fn stats(&self) -> AudioRequestStats {
        let s = &self.shared;
        AudioRequestStats {
            held: s.held.load(std::sync::atomic::Ordering::Relaxed),
            asked: load(&s.asked),
            refused: load(&s.refused),
        }
    }
}

/// How one ask ended.
enum Asked {
    /// The speaker turned it down.
    Refused,
    /// The stream was closed before any answer: dropped unread by libp2p-stream, whose
    /// acceptor takes one stream at a time (listeners that see a new speaker all ask it at
    /// once).
    Dropped,
    /// The stream ended or could not be opened; whether it had been taken.
    Ended { taken: bool },
}

async fn run(
    client: Client,
    peer: PeerId,
    request: Vec<u8>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<()>,
) {
    let mut control = client.control.clone();
    let mut backoff = AUDIO_BACKOFF_MIN;
    let mut refused_wait = REFUSED_RETRY_MIN;
    let mut dropped = 0u32;
    loop {
        let asked = tokio::select! {
            _ = stop.changed() => return,
            asked = ask(&client, &mut control, peer, &request, &shared) => asked,
        };
        shared
            .held
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let wait = match asked {
            Asked::Refused => {
                bump(&shared.refused, 1);
                backoff = AUDIO_BACKOFF_MIN;
                let wait = refused_wait;
                refused_wait = (refused_wait * 2).min(REFUSED_RETRY_MAX);
                tracing::debug!(%peer, ?wait, "audio request turned down");
                wait
            }
            // Asked again almost at once, as an audio lane is: the speaker is there and
            // talking, and the backoff's 100 ms cost the listener the speaker's first five
            // frames (`two_speakers_mixed`, one run in ten of the node suite).
            Asked::Dropped if dropped < DROPPED_RETRIES => {
                let wait = Duration::from_millis(10 << dropped);
                dropped += 1;
                tracing::debug!(%peer, ?wait, "audio request dropped unread, asking again");
                wait
            }
            Asked::Dropped | Asked::Ended { .. } => {
                let taken = matches!(asked, Asked::Ended { taken: true });
                if taken {
                    backoff = AUDIO_BACKOFF_MIN;
                    refused_wait = REFUSED_RETRY_MIN;
                    dropped = 0;
                }
                let wait = backoff;
                backoff = (backoff * 2).min(AUDIO_BACKOFF_MAX);
                tracing::debug!(%peer, taken, ?wait, "audio request ended, asking again");
                wait
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Connects (preferring QUIC), sends the request, and waits until the stream ends.
async fn ask(
    client: &Client,
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    request: &[u8],
    shared: &Shared,
) -> Asked {
    let not_taken = Asked::Ended { taken: false };
    if let Err(e) = client.connect(peer).await {
        tracing::debug!(%peer, error = %e, "cannot reach a speaker to ask for its audio");
        return not_taken;
    }
    let stream = match tokio::time::timeout(
        AUDIO_OPEN_TIMEOUT,
        control.open_stream(peer, REQUEST_PROTOCOL),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "cannot open an audio request");
            return not_taken;
        }
        Err(_) => {
            tracing::debug!(%peer, "audio request stream not opened in time");
            return not_taken;
        }
    };
    let mut stream = stream;
    let mut hello = Vec::with_capacity(request.len() + 2);
    put_chunk(
        &mut hello,
        &request[..request.len().min(MAX_AUDIO_REQUEST_LEN)],
    );
    let send = async {
        stream.write_all(&hello).await?;
        stream.flush().await
    };
    if !matches!(
        tokio::time::timeout(AUDIO_ACK_TIMEOUT, send).await,
        Ok(Ok(()))
    ) {
        return not_taken;
    }
    bump(&shared.asked, 1);
    let mut byte = [0u8; 1];
    match tokio::time::timeout(AUDIO_ACK_TIMEOUT, stream.read(&mut byte)).await {
        Ok(Ok(1)) if byte[0] == AUDIO_ACK => {}
        Ok(Ok(1)) if byte[0] == REQUEST_REFUSED => return Asked::Refused,
        Ok(Ok(0)) => {
            tracing::debug!(%peer, "audio request closed unanswered");
            return Asked::Dropped;
        }
        // Reset, or no answer in time.
        answer => {
            tracing::debug!(%peer, ?answer, "audio request not answered");
            return not_taken;
        }
    }
    shared
        .held
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Held: nothing more comes but a refusal; the stream's end is the request's end. The
    // stream ends with the connection that carries it, whichever side closes it (yamux's
    // graceful close is patched for that, vendor/README.md); a connection closing beside it
    // changes nothing.
    match stream.read(&mut byte).await {
        Ok(1) if byte[0] == REQUEST_REFUSED => Asked::Refused,
        _ => Asked::Ended { taken: true },
    }
}

/// Takes every inbound request stream until `incoming` ends (the swarm is gone).
pub(crate) async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    shared: Arc<InboundShared>,
    events: mpsc::Sender<Event>,
) {
    while let Some((peer, stream)) = incoming.next().await {
        let Some((id, cancel)) = shared.hold_request(peer, MAX_AUDIO_REQUESTS) else {
            tracing::debug!(%peer, "too many audio requests held, refusing one");
            tokio::spawn(refuse(stream));
            continue;
        };
        tokio::spawn(serve(
            peer,
            stream,
            id,
            cancel,
            shared.clone(),
            events.clone(),
        ));
    }
    tracing::debug!("audio request acceptor stopped");
}

/// Turns a request down without reading it.
async fn refuse(mut stream: Stream) {
    let write = async {
        stream.write_all(&[REQUEST_REFUSED]).await?;
        stream.close().await
    };
    let _ = tokio::time::timeout(AUDIO_HEADER_TIMEOUT, write).await;
}

/// Reads one request, takes it, and holds it until the asker closes the stream (the request
/// ended), the node turns it down (`cancel` sends), or a newer request from the same peer
/// replaces it (`cancel` is dropped).
async fn serve(
    peer: PeerId,
    stream: Stream,
    id: u64,
    mut cancel: oneshot::Receiver<()>,
    shared: Arc<InboundShared>,
    events: mpsc::Sender<Event>,
) {
    let (mut reader, mut writer) = stream.split();
    let read = read_chunk(&mut reader, 1, MAX_AUDIO_REQUEST_LEN);
    let request = match tokio::time::timeout(AUDIO_HEADER_TIMEOUT, read).await {
        Ok(Ok(request)) => request,
        _ => {
            tracing::debug!(%peer, "audio request malformed, or none in time");
            shared.release_request(peer, id);
            return;
        }
    };
    let ack = async {
        writer.write_all(&[AUDIO_ACK]).await?;
        writer.flush().await
    };
    if !matches!(
        tokio::time::timeout(AUDIO_HEADER_TIMEOUT, ack).await,
        Ok(Ok(()))
    ) {
        shared.release_request(peer, id);
        return;
    }
    tracing::debug!(%peer, id, "audio request held");
    let asked = Event::AudioRequested {
        peer,
        request: request.to_vec(),
    };
    // Control events are backpressured; this only delays this one request.
    let _ = tokio::time::timeout(CALL_TIMEOUT, events.send(asked)).await;
    let mut byte = [0u8; 1];
    tokio::select! {
        refused = &mut cancel => {
            if refused.is_ok() {
                let write = async {
                    writer.write_all(&[REQUEST_REFUSED]).await?;
                    writer.close().await
                };
                let _ = tokio::time::timeout(AUDIO_HEADER_TIMEOUT, write).await;
            }
        }
        // Nothing more is expected from the asker: any byte, its close, or a broken
        // connection ends the request.
        _ = reader.read(&mut byte) => {}
    }
    let current = shared.release_request(peer, id);
    tracing::debug!(%peer, id, current, "audio request ended");
    if current {
        let ended = Event::AudioRequestEnded { peer };
        let _ = tokio::time::timeout(CALL_TIMEOUT, events.send(ended)).await;
    }
}
