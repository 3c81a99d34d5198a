//! Signed envelopes: the one wire format every signed ruang message shares.
//!
//! ```text
//! envelope = version (1 byte, = 1) || signature (64 bytes) || payload
//! payload  = postcard(T)                      // canonical: re-encoding must give the same bytes
//! signed   = ed25519(T::DOMAIN || payload)    // domain separation per message type
//! ```
//!
//! The author's key is a field of the payload ([`Signable::author`]). Only [`verify`] makes a
//! [`Verified<T>`], so code that takes `Verified<T>` can never see an unverified message.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::identity::{Identity, PublicKey, SIGNATURE_LEN};

/// The envelope version this code writes and accepts.
pub const VERSION: u8 = 1;
/// Bytes before the payload: the version and the signature.
pub const HEADER_LEN: usize = 1 + SIGNATURE_LEN;

/// A message type that travels signed.
pub trait Signable: Serialize + DeserializeOwned {
    /// Domain-separation tag, e.g. `b"ruang/event/v1"`; distinct for every type.
    const DOMAIN: &'static [u8];
    /// Upper bound on the whole envelope in bytes; larger input is refused before decoding.
    const MAX_WIRE_LEN: usize;
    /// Who signed it.
    fn author(&self) -> &PublicKey;
    /// Checks field bounds (string lengths, list sizes) after decoding.
    fn check_bounds(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A 32-byte content hash of a signed payload.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash of `payload` under `domain`.
    pub fn of(domain: &[u8], payload: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"ruang/hash/v1:")
            .chain_update(domain)
            .chain_update(b":")
            .chain_update(payload)
            .finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&digest);
        Self(out)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.trim().as_bytes())
            .ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why bytes did not verify as a signed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// More bytes than the type allows.
    #[error("message too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The bound for this type.
        max: usize,
    },
    /// Fewer bytes than a header.
    #[error("message truncated: {len} bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// A version this code does not speak.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// The payload is not a valid encoding of the type, or not its canonical encoding.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
    /// A field is out of its bounds.
    #[error("field out of bounds: {0}")]
    Bounds(&'static str),
    /// The signature does not match the author's key.
    #[error("bad signature")]
    BadSignature,
}

/// A message whose signature and encoding were checked. Only [`verify`] and [`sign`] make one.
#[derive(Clone)]
pub struct Verified<T> {
    value: T,
    wire: Vec<u8>,
    hash: Hash,
}

impl<T> Verified<T> {
    /// The envelope bytes, ready to send on.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The content hash of the payload.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The verified value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Takes the value, dropping the proof.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("hash", &self.hash)
            .field("value", &self.value)
            .finish()
    }
}

fn signing_input(domain: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(domain.len() + 1 + payload.len());
    input.extend_from_slice(domain);
    input.push(0);
    input.extend_from_slice(payload);
    input
}

/// Why a message could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The signing identity is not the message's author.
    #[error("the signing identity is not the message's author")]
    WrongAuthor,
    /// A field is out of its bounds.
    #[error("field out of bounds: {0}")]
    Bounds(&'static str),
    /// The encoded message would exceed the type's size bound.
    #[error("message too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Bytes it would take.
        len: usize,
        /// The bound for this type.
        max: usize,
    },
}

/// Signs `value` as `identity`, which must be its author.
pub fn sign<T: Signable>(identity: &Identity, value: T) -> Result<Verified<T>, SignError> {
    if identity.public() != *value.author() {
        return Err(SignError::WrongAuthor);
    }
    value.check_bounds().map_err(SignError::Bounds)?;
    // Serialising plain data into a Vec cannot fail: no maps with non-string keys, no I/O.
    let payload = postcard::to_allocvec(&value).expect("postcard encoding into a Vec");
    let len = HEADER_LEN + payload.len();
    if len > T::MAX_WIRE_LEN {
        return Err(SignError::TooLarge {
            len,
            max: T::MAX_WIRE_LEN,
        });
    }
    let signature = identity.sign(&signing_input(T::DOMAIN, &payload));
    let mut wire = Vec::with_capacity(len);
    wire.push(VERSION);
    wire.extend_from_slice(&signature);
    wire.extend_from_slice(&payload);
    let hash = Hash::of(T::DOMAIN, &payload);
    Ok(Verified { value, wire, hash })
}

/// Checks size, version, encoding, bounds and signature, in that order (cheapest first).
pub fn verify<T: Signable>(wire: &[u8]) -> Result<Verified<T>, VerifyError> {
    if wire.len() > T::MAX_WIRE_LEN {
        return Err(VerifyError::TooLarge {
            len: wire.len(),
            max: T::MAX_WIRE_LEN,
        });
    }
    if wire.len() < HEADER_LEN {
        return Err(VerifyError::Truncated { len: wire.len() });
    }
    if wire[0] != VERSION {
        return Err(VerifyError::Version(wire[0]));
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(&wire[1..HEADER_LEN]);
    let payload = &wire[HEADER_LEN..];
    let value: T = match postcard::from_bytes(payload) {
        Ok(v) => v,
        Err(_) => return Err(VerifyError::Malformed("not a valid encoding")),
    };
    // Canonical form: one message, one byte string, one hash.
    match postcard::to_allocvec(&value) {
        Ok(again) if again == payload => {}
        _ => return Err(VerifyError::Malformed("not the canonical encoding")),
    }
    value.check_bounds().map_err(VerifyError::Bounds)?;
    if !value
        .author()
        .verify(&signing_input(T::DOMAIN, payload), &signature)
    {
        return Err(VerifyError::BadSignature);
    }
    let hash = Hash::of(T::DOMAIN, payload);
    Ok(Verified {
        value,
        wire: wire.to_vec(),
        hash,
    })
}

/// Small helper: checks a string's length in bytes.
pub(crate) fn check_str(s: &str, max: usize, what: &'static str) -> Result<(), &'static str> {
    if s.len() > max { Err(what) } else { Ok(()) }
}

/// A `BuildHasher` for maps keyed by [`Hash`]: the keys are already uniform (SHA-256), so the
/// hasher takes 8 of their bytes mixed with a per-process random key instead of running SipHash
/// over all 32 — that was a fifth of the time of inserting events.
#[derive(Clone)]
pub(crate) struct HashKeyed {
    key: u64,
}

impl Default for HashKeyed {
    fn default() -> Self {
        use std::hash::BuildHasher;
        // A random key per process (std draws it from the OS), so crafted hashes cannot be
        // aimed at one bucket.
        Self {
            key: std::collections::hash_map::RandomState::new().hash_one(0u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for HashKeyed {
    type Hasher = HashKeyedHasher;
    fn build_hasher(&self) -> HashKeyedHasher {
        HashKeyedHasher {
            key: self.key,
            state: 0,
        }
    }
}

/// The hasher of [`HashKeyed`].
pub(crate) struct HashKeyedHasher {
    key: u64,
    state: u64,
}

impl std::hash::Hasher for HashKeyedHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        // `Hash` feeds its 32-byte array (after a length prefix for slices): fold 8 bytes at a
        // time with a multiply-xor mix.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let v = u64::from_le_bytes(word) ^ self.key;
            self.state = (self.state.rotate_left(23) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// A map keyed by content hashes.
pub(crate) type HashMapOf<V> = std::collections::HashMap<Hash, V, HashKeyed>;
/// A set of content hashes.
pub(crate) type HashSetOf = std::collections::HashSet<Hash, HashKeyed>;
