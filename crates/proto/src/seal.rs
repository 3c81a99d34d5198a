//! Sealing a private room's payloads with its room key (DESIGN.md §5, private rooms).
//!
//! A private room's key travels only in its tickets. Control payloads (gossip messages, sync
//! answers) are sealed with XChaCha20-Poly1305 under a random nonce from the caller's RNG;
//! audio payloads with ChaCha20-Poly1305 under a nonce made of the speaker's per-stream salt
//! and the frame's sequence number (unique per key without sending a nonce per frame). The
//! associated data binds each payload to its room and purpose, so a sealed blob cannot be
//! replayed into another room or another kind of message.
//!
//! ```text
//! sealed control = version (1) || nonce (24) || ciphertext+tag
//! sealed audio   = ciphertext+tag                       (nonce = salt (8) || seq (4), BE)
//! ```

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, XChaCha20Poly1305, XNonce};
use rand_core::Rng;
use sha2::{Digest, Sha256};

use crate::signed::Hash;

/// Version byte of sealed control payloads.
pub const SEAL_VERSION: u8 = 1;
/// Bytes a sealed control payload adds: version, nonce and tag.
pub const CONTROL_OVERHEAD: usize = 1 + 24 + 16;
/// Bytes a sealed audio payload adds: the tag.
pub const AUDIO_OVERHEAD: usize = 16;

/// The 32-byte secret of a private room.
#[derive(Clone, PartialEq, Eq)]
pub struct RoomKey([u8; 32]);

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomKey(..)")
    }
}

impl Drop for RoomKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// Why a sealed payload could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Too short to be sealed.
    #[error("sealed payload truncated")]
    Truncated,
    /// An unknown version byte.
    #[error("unsupported sealed payload version {0}")]
    Version(u8),
    /// Wrong key, wrong room or purpose, or tampered bytes.
    #[error("cannot open sealed payload (wrong room key, or tampered)")]
    Open,
}

/// What a sealed payload is for (part of the associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A message on the room's gossip topic.
    Gossip,
    /// An event in a sync answer.
    Sync,
    /// An audio frame's payload.
    Audio,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Gossip => b"gossip",
            Purpose::Sync => b"sync",
            Purpose::Audio => b"audio",
        }
    }
}

fn aad(room: &[u8; 32], purpose: Purpose, extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 32 + 8 + extra.len());
    out.extend_from_slice(b"ruang/seal/v1:");
    out.extend_from_slice(room);
    out.extend_from_slice(purpose.label());
    out.extend_from_slice(extra);
    out
}

impl RoomKey {
    /// A fresh random key.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> RoomKey {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        RoomKey(key)
    }

    /// The key with these bytes (from a ticket).
    pub fn from_bytes(bytes: [u8; 32]) -> RoomKey {
        RoomKey(bytes)
    }

    /// The raw bytes (to put in a ticket).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A public name for the room's gossip topic that does not reveal the room id to peers
    /// outside it.
    pub fn topic_id(&self) -> Hash {
        let digest = Sha256::new()
            .chain_update(b"ruang/private-topic/v1")
            .chain_update(self.0)
            .finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest);
        Hash(out)
    }

    /// Seals a control payload of `room` for `purpose`, with a random nonce.
    pub fn seal<R: Rng + ?Sized>(
        &self,
        room: &[u8; 32],
        purpose: Purpose,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        let aad = aad(room, purpose, &[]);
        // Encryption into a Vec only fails for inputs beyond the cipher's 256 GiB limit.
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("payload within the AEAD's size limit");
        let mut out = Vec::with_capacity(CONTROL_OVERHEAD + plaintext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a control payload sealed by [`RoomKey::seal`].
    pub fn open(
        &self,
        room: &[u8; 32],
        purpose: Purpose,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if sealed.len() < CONTROL_OVERHEAD {
            return Err(SealError::Truncated);
        }
        if sealed[0] != SEAL_VERSION {
            return Err(SealError::Version(sealed[0]));
        }
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        let aad = aad(room, purpose, &[]);
        cipher
            .decrypt(
                XNonce::from_slice(&sealed[1..25]),
                Payload {
                    msg: &sealed[25..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)
    }

    /// Seals an audio payload. `salt` is random per stream (sent once in the stream header),
    /// `seq` the frame's sequence number; `header` (the frame's clear fields) is bound too.
    pub fn seal_audio(
        &self,
        room: &[u8; 32],
        salt: u64,
        seq: u32,
        header: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let aad = aad(room, Purpose::Audio, header);
        cipher
            .encrypt(
                &audio_nonce(salt, seq),
                Payload {
                    msg: payload,
                    aad: &aad,
                },
            )
            .expect("payload within the AEAD's size limit")
    }

    /// Opens an audio payload sealed by [`RoomKey::seal_audio`].
    pub fn open_audio(
        &self,
        room: &[u8; 32],
        salt: u64,
        seq: u32,
        header: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if sealed.len() < AUDIO_OVERHEAD {
            return Err(SealError::Truncated);
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let aad = aad(room, Purpose::Audio, header);
        cipher
            .decrypt(
                &audio_nonce(salt, seq),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)
    }
}

fn audio_nonce(salt: u64, seq: u32) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&salt.to_be_bytes());
    nonce[8..].copy_from_slice(&seq.to_be_bytes());
    *Nonce::from_slice(&nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn control_round_trip_and_binding() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = RoomKey::generate(&mut rng);
        let room = [7u8; 32];
        let sealed = key.seal(&room, Purpose::Gossip, b"hello room", &mut rng);
        assert_eq!(sealed.len(), CONTROL_OVERHEAD + 10);
        assert_eq!(
            key.open(&room, Purpose::Gossip, &sealed).unwrap(),
            b"hello room"
        );
        // Another room, another purpose, another key, a flipped byte: all refused.
        assert_eq!(
            key.open(&[8u8; 32], Purpose::Gossip, &sealed),
            Err(SealError::Open)
        );
        assert_eq!(
            key.open(&room, Purpose::Sync, &sealed),
            Err(SealError::Open)
        );
        assert_eq!(
            RoomKey::generate(&mut rng).open(&room, Purpose::Gossip, &sealed),
            Err(SealError::Open)
        );
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(key.open(&room, Purpose::Gossip, &bad), Err(SealError::Open));
        assert_eq!(
            key.open(&room, Purpose::Gossip, &sealed[..10]),
            Err(SealError::Truncated)
        );
    }

    #[test]
    fn audio_round_trip_binds_salt_seq_and_header() {
        let key = RoomKey::from_bytes([3; 32]);
        let room = [1u8; 32];
        let sealed = key.seal_audio(&room, 42, 9, b"hdr", b"opus bytes");
        assert_eq!(sealed.len(), AUDIO_OVERHEAD + 10);
        assert_eq!(
            key.open_audio(&room, 42, 9, b"hdr", &sealed).unwrap(),
            b"opus bytes"
        );
        assert!(key.open_audio(&room, 42, 10, b"hdr", &sealed).is_err());
        assert!(key.open_audio(&room, 43, 9, b"hdr", &sealed).is_err());
        assert!(key.open_audio(&room, 42, 9, b"hdx", &sealed).is_err());
    }
}
