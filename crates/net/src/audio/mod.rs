//! The audio plane: `/ruang/audio/1` streams over `libp2p-stream`.
//!
//! Long-lived streams per (speaker, hop), never one per frame (DESIGN.md §5): each link
//! stripes its frames round-robin over [`AUDIO_LANES`](crate::limits::AUDIO_LANES) streams, so
//! a retransmitted packet holds back only its own lane (see there). On the wire:
//!
//! ```text
//! header_len: u16 BE | header (≤ MAX_AUDIO_HEADER_LEN)      once, when the stream opens
//!                                   ← ack: one byte AUDIO_ACK, from the receiver
//! frame_len:  u16 BE | frame  (1..=MAX_AUDIO_FRAME_LEN)      repeated
//!                                   ← loss report: AUDIO_LOSS_REPORT | ‰ u16 BE, from time to
//!                                     time, on one lane per sender
//! ```
//!
//! The ack exists because libp2p-stream hands inbound streams over through a one-slot channel
//! and drops a stream that arrives while the slot is taken: a sender opening several lanes at
//! once (or several senders at once) would otherwise write into a stream nobody reads. A lane
//! without an ack is opened again.
//!
//! - Outbound: [`AudioLink`] owns a task with a drop-oldest queue.
//! - Inbound: an acceptor task takes every stream, bounded by
//!   [`MAX_INBOUND_AUDIO_STREAMS`](crate::limits::MAX_INBOUND_AUDIO_STREAMS), and one reader
//!   task per stream `try_send`s each frame to the [`AudioInbox`].

pub(crate) mod inbound;
pub(crate) mod link;
pub(crate) mod request;

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::{Bytes, BytesMut};
use futures::{AsyncRead, AsyncReadExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::mpsc;

pub use link::{AudioLink, AudioLinkStats};
pub use request::{
    AudioRequest, AudioRequestStats, REFUSED_RETRY_MAX, REFUSED_RETRY_MIN, REQUEST_PROTOCOL,
};

use crate::limits::{MAX_AUDIO_FRAME_LEN, MAX_AUDIO_HEADER_LEN};

/// The byte a receiver sends back once it has taken a stream and read its header.
pub(crate) const AUDIO_ACK: u8 = 0x01;

/// The byte that opens a loss report on a stream's reverse direction: the receiver tells the
/// sender how much of its audio the playout missed (‰, 0..=1000), so the speaker can size its
/// forward error correction ([`crate::Client::report_audio_loss`],
/// [`AudioLinkStats::loss_report`]).
pub(crate) const AUDIO_LOSS_REPORT: u8 = 0x02;

/// Protocol name of the audio plane.
pub const AUDIO_PROTOCOL: StreamProtocol = StreamProtocol::new("/ruang/audio/1");

/// One frame received on an audio stream.
#[derive(Clone, Debug)]
pub struct AudioIn {
    /// The peer that sent it (the previous hop, not necessarily the speaker).
    pub peer: PeerId,
    /// The stream it came on: this node's number for it, never reused while the network
    /// layer runs (the receive side decides about a stream once, by its number).
    pub stream: u64,
    /// The header of the stream it came on.
    pub header: Arc<[u8]>,
    /// The frame bytes, as the sender pushed them.
    pub frame: Bytes,
    /// When the reader task took it off the stream.
    pub received_at: Instant,
}

/// Counters of the inbound audio plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioInStats {
    /// Frames read off streams.
    pub received: u64,
    /// Frames dropped because the [`AudioInbox`] was full (the node was slow).
    pub dropped: u64,
    /// Streams closed for a malformed header or frame (bad or oversized length).
    pub malformed: u64,
    /// Streams refused because
    /// [`MAX_INBOUND_AUDIO_STREAMS`](crate::limits::MAX_INBOUND_AUDIO_STREAMS) were open.
    pub refused: u64,
    /// Inbound streams open now.
    pub open_streams: u64,
}

#[derive(Debug, Default)]
pub(crate) struct InboundCounters {
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// The bounded receiver of inbound audio frames, separate from [`crate::Events`] so audio never
/// waits behind control traffic. When it is full, new frames are dropped and counted.
#[derive(Debug)]
pub struct AudioInbox {
    pub(crate) rx: mpsc::Receiver<AudioIn>,
    pub(crate) shared: Arc<inbound::InboundShared>,
}

impl AudioInbox {
    /// The next frame; `None` once the network layer has shut down.
    pub async fn recv(&mut self) -> Option<AudioIn> {
        self.rx.recv().await
    }

    /// The next frame if one is ready.
    pub fn try_recv(&mut self) -> Option<AudioIn> {
        self.rx.try_recv().ok()
    }

    /// Counters of the inbound audio plane.
    pub fn stats(&self) -> AudioInStats {
        self.shared.stats()
    }
}

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream ended or broke.
    Io(io::Error),
    /// A length outside its bound: the peer is not speaking the protocol.
    Malformed(usize),
}

/// Reads one `u16`-prefixed chunk whose length must lie in `min..=max`.
pub(crate) async fn read_chunk<R: AsyncRead + Unpin>(
    io: &mut R,
    min: usize,
    max: usize,
) -> Result<Bytes, ReadError> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await.map_err(ReadError::Io)?;
    let len = u16::from_be_bytes(len) as usize;
    if len < min || len > max {
        return Err(ReadError::Malformed(len));
    }
    let mut buf = BytesMut::zeroed(len);
    io.read_exact(&mut buf).await.map_err(ReadError::Io)?;
    Ok(buf.freeze())
}

/// Reads a stream header.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Bytes, ReadError> {
    read_chunk(io, 0, MAX_AUDIO_HEADER_LEN).await
}

/// Reads one frame.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> Result<Bytes, ReadError> {
    read_chunk(io, 1, MAX_AUDIO_FRAME_LEN).await
}

/// Appends `u16` BE length + `data` to `out`. The caller has checked the bound.
pub(crate) fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    debug_assert!(data.len() <= u16::MAX as usize);
    // Cannot truncate: callers bound data by MAX_AUDIO_FRAME_LEN / MAX_AUDIO_HEADER_LEN.
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trip_and_bounds() {
        futures::executor::block_on(async {
            let mut wire = Vec::new();
            put_chunk(&mut wire, b"hdr");
            put_chunk(&mut wire, b"frame-1");
            put_chunk(&mut wire, &[7u8; MAX_AUDIO_FRAME_LEN]);
            let mut r = futures::io::Cursor::new(wire);
            assert_eq!(&read_header(&mut r).await.unwrap()[..], b"hdr");
            assert_eq!(&read_frame(&mut r).await.unwrap()[..], b"frame-1");
            assert_eq!(read_frame(&mut r).await.unwrap().len(), MAX_AUDIO_FRAME_LEN);
            assert!(matches!(read_frame(&mut r).await, Err(ReadError::Io(_))));

            // Oversized frame length: malformed, detected before reading the body.
            let mut wire = Vec::new();
            wire.extend_from_slice(&((MAX_AUDIO_FRAME_LEN + 1) as u16).to_be_bytes());
            let mut r = futures::io::Cursor::new(wire);
            assert!(matches!(
                read_frame(&mut r).await,
                Err(ReadError::Malformed(_))
            ));

            // Zero-length frame: malformed. Zero-length header: fine.
            let mut r = futures::io::Cursor::new(vec![0, 0, 0, 0]);
            assert_eq!(read_header(&mut r).await.unwrap().len(), 0);
            assert!(matches!(
                read_frame(&mut r).await,
                Err(ReadError::Malformed(0))
            ));

            // Oversized header.
            let mut wire = Vec::new();
            wire.extend_from_slice(&((MAX_AUDIO_HEADER_LEN + 1) as u16).to_be_bytes());
            let mut r = futures::io::Cursor::new(wire);
            assert!(matches!(
                read_header(&mut r).await,
                Err(ReadError::Malformed(_))
            ));
        });
    }
}
