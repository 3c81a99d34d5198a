//! The audio frame on the wire, shared with the network layer.
//!
//! One [`Frame`] carries one Opus packet of one speaker with what a receiver needs to play it
//! in order and on time. The encoding is a fixed 19-byte header and the payload:
//!
//! ```text
//! offset size field
//!      0    1 version        (= VERSION; anything else is refused)
//!      1    1 flags          (Flags: VOICE, FEC, DTX, END, COPIED; unknown bits kept)
//!      2    1 level          (0..=127: -dBov of the frame, RFC 6464 style; 127 = silence)
//!      3    8 speaker        (u64 LE: a short id of the speaker key, chosen by the caller)
//!     11    4 seq            (u32 LE: +1 per frame sent, wraps)
//!     15    4 timestamp      (u32 LE: 48 kHz ticks of the first sample, wraps)
//!     19    … payload        (the Opus packet; may be empty = "nothing to play")
//! ```
//!
//! A whole frame is at most [`MAX_FRAME_LEN`] bytes, so it fits a datagram on any path with a
//! 1500-byte MTU budget. On a byte stream each frame is preceded by its length; that framing
//! belongs to the stream (`ruang_net::audio`), not to the frame. Arbitrary input never panics:
//! every malformed case is a [`WireError`].

/// Format version written in byte 0.
pub const VERSION: u8 = 1;

/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 19;

/// Largest encoded frame (header + payload) in bytes: one Ethernet MTU, so a frame never
/// needs fragmenting once datagrams are available.
pub const MAX_FRAME_LEN: usize = 1500;

/// Largest payload a frame can carry.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;

/// Largest valid `level` value (silence).
pub const MAX_LEVEL: u8 = 127;

/// What went wrong reading a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the fixed header.
    #[error("audio frame truncated: {len} bytes, the header alone is {HEADER_LEN}")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// A frame (or a length prefix) over the bound.
    #[error("audio frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Length given.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A version this build does not speak.
    #[error("unsupported audio frame version {0} (this build speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// A level outside `0..=127`.
    #[error("audio level {0} is outside 0..=127")]
    InvalidLevel(u8),
}

/// Bit flags of a [`Frame`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The sender's voice-activity detector says someone is talking in this frame.
    pub const VOICE: Flags = Flags(0b0000_0001);
    /// The packet carries in-band FEC for the previous frame (the encoder had FEC on).
    pub const FEC: Flags = Flags(0b0000_0010);
    /// A DTX packet: silence / comfort noise, nothing worth concealing if lost.
    pub const DTX: Flags = Flags(0b0000_0100);
    /// The last frame before the speaker stops sending (mute, step down, end of file): a
    /// receiver should not conceal after it.
    pub const END: Flags = Flags(0b0000_1000);
    /// The speaker sends this frame twice (a lossy path): its copy, byte for byte, goes out
    /// after it, with the next frame (so on another lane while several are open), or alone
    /// before the speaker stops or pauses. A receiver that plays it from one copy expects the
    /// other and counts it lost if it does not come (`jitter::Stats::copy_missing`).
    pub const COPIED: Flags = Flags(0b0001_0000);

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set too.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` with the bits of `other` set if `on`, cleared otherwise.
    #[must_use]
    pub const fn set(self, other: Flags, on: bool) -> Flags {
        if on {
            Flags(self.0 | other.0)
        } else {
            Flags(self.0 & !other.0)
        }
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// One audio frame of one speaker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Short id of the speaker (e.g. the first 8 bytes of a hash of their key), chosen by the
    /// caller; the receiver keeps one jitter buffer per value.
    pub speaker: u64,
    /// Sequence number, +1 per frame sent (wraps at `u32::MAX`).
    pub seq: u32,
    /// Media time of the first sample in 48 kHz ticks (wraps; about 24.8 hours per cycle).
    pub timestamp: u32,
    /// Audio level 0..=127 as -dBov (RFC 6464): 0 is full scale, 127 is silence. See
    /// [`crate::level::to_wire`].
    pub level: u8,
    /// Bit flags.
    pub flags: Flags,
    /// The Opus packet (may be empty: nothing to play).
    pub payload: Vec<u8>,
}

impl Frame {
    /// Encoded size of this frame in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Encodes the frame into a new buffer.
    ///
    /// # Panics
    ///
    /// Never for frames built from a codec packet (at most [`crate::codec::MAX_PACKET_LEN`]
    /// bytes); use [`encode_into`](Self::encode_into) to get an error for oversize payloads.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        // The only failures are an oversize payload or a bad level, both programming errors of
        // the sender (its payloads come from our encoder); `encode_into` reports them.
        self.encode_into(&mut out)
            .expect("frame payload exceeds MAX_PAYLOAD_LEN");
        out
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(WireError::TooLong {
                len: self.encoded_len(),
                max: MAX_FRAME_LEN,
            });
        }
        if self.level > MAX_LEVEL {
            return Err(WireError::InvalidLevel(self.level));
        }
        out.reserve(self.encoded_len());
        out.push(VERSION);
        out.push(self.flags.0);
        out.push(self.level);
        out.extend_from_slice(&self.speaker.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&self.payload);
        Ok(())
    }

    /// Decodes one frame from exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(WireError::TooLong {
                len: bytes.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let Some((header, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated { len: bytes.len() });
        };
        if header[0] != VERSION {
            return Err(WireError::UnsupportedVersion(header[0]));
        }
        let level = header[2];
        if level > MAX_LEVEL {
            return Err(WireError::InvalidLevel(level));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&header[i..i + 4]);
            u32::from_le_bytes(b)
        };
        Ok(Frame {
            speaker: u64_at(3),
            seq: u32_at(11),
            timestamp: u32_at(15),
            level,
            flags: Flags(header[1]),
            payload: payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            speaker: 0x0102_0304_0506_0708,
            seq: 0xdead_beef,
            timestamp: 960 * 7,
            level: 42,
            flags: Flags::VOICE | Flags::FEC,
            payload: vec![1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = sample().encode();
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes[1], 0b11);
        assert_eq!(bytes[2], 42);
        assert_eq!(&bytes[3..11], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&bytes[11..15], &0xdead_beefu32.to_le_bytes());
        assert_eq!(&bytes[15..19], &(960u32 * 7).to_le_bytes());
        assert_eq!(&bytes[19..], &[1, 2, 3, 4, 5]);
        assert_eq!(Frame::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        let good = sample().encode();
        assert_eq!(
            Frame::decode(&good[..5]),
            Err(WireError::Truncated { len: 5 })
        );
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(Frame::decode(&v2), Err(WireError::UnsupportedVersion(2)));
        let mut loud = good.clone();
        loud[2] = 200;
        assert_eq!(Frame::decode(&loud), Err(WireError::InvalidLevel(200)));
        let big = vec![VERSION; MAX_FRAME_LEN + 1];
        assert!(matches!(
            Frame::decode(&big),
            Err(WireError::TooLong { .. })
        ));
        let oversize = Frame {
            payload: vec![0; MAX_PAYLOAD_LEN + 1],
            ..sample()
        };
        assert!(oversize.encode_into(&mut Vec::new()).is_err());
        let full = Frame {
            payload: vec![0; MAX_PAYLOAD_LEN],
            ..sample()
        };
        assert_eq!(full.encode().len(), MAX_FRAME_LEN);
    }

    #[test]
    fn flags_compose() {
        let f = Flags::empty()
            .with(Flags::VOICE)
            .set(Flags::DTX, true)
            .set(Flags::VOICE, false);
        assert!(f.contains(Flags::DTX) && !f.contains(Flags::VOICE));
    }
}
