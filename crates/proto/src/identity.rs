//! Identities: an ed25519 key pair per user, its public half, and a short fingerprint.
//!
//! The 32-byte secret is the same secret libp2p uses for an ed25519 `Keypair`
//! (`Keypair::ed25519_from_bytes`), so a user's signing identity and `PeerId` are one key.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of an ed25519 secret key in bytes.
pub const SECRET_LEN: usize = 32;
/// Length of an ed25519 public key in bytes.
pub const PUBLIC_LEN: usize = 32;
/// Length of an ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// A user's signing identity: an ed25519 secret key.
///
/// Never logged: `Debug` shows only the public key.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh identity drawn from a cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            key: SigningKey::generate(rng),
        }
    }

    /// The identity with this 32-byte secret (the format of the key file and of libp2p).
    pub fn from_secret_bytes(secret: &[u8; SECRET_LEN]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret, wiped from memory when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; SECRET_LEN]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The X25519 secret of this identity (the first half of SHA-512 of the ed25519 secret, as
    /// libsodium's `crypto_sign_ed25519_sk_to_curve25519`; clamped where it is used), for
    /// keys wrapped to it ([`crate::rekey`]).
    pub(crate) fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_scalar_bytes())
    }

    /// Signs `message` (callers add their own domain separation).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// An ed25519 public key: who authored a message, who a moderation action is aimed at.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; PUBLIC_LEN]);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_LEN] {
        &self.0
    }

    /// A short fingerprint that tells two users with the same display name apart.
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::new()
            .chain_update(b"ruang/fingerprint/v1")
            .chain_update(self.0)
            .finalize();
        let mut bytes = [0u8; 5];
        bytes.copy_from_slice(&digest[..5]);
        Fingerprint(bytes)
    }

    /// Verifies a signature with the strict ed25519 rules (no malleable or small-order keys).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }

    /// Lower-case hex of the key, the form used in logs and the JSON interface.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// Parses the lower- or upper-case hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.trim().as_bytes())
            .ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// 40 bits of a key's hash, shown as `abcd-efgh`: enough to tell people apart in a room.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 5]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = crate::ticket::BASE32_LOWER.encode(&self.0);
        write!(f, "{}-{}", &text[..4], &text[4..])
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn secret_round_trip_keeps_the_public_key() {
        let id = Identity::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let again = Identity::from_secret_bytes(&id.secret_bytes());
        assert_eq!(id.public(), again.public());
    }

    #[test]
    fn signature_verifies_only_for_the_signed_message() {
        let id = Identity::generate(&mut ChaCha20Rng::seed_from_u64(2));
        let sig = id.sign(b"hello");
        assert!(id.public().verify(b"hello", &sig));
        assert!(!id.public().verify(b"hellp", &sig));
        let other = Identity::generate(&mut ChaCha20Rng::seed_from_u64(3));
        assert!(!other.public().verify(b"hello", &sig));
    }

    #[test]
    fn fingerprint_is_short_and_differs_between_keys() {
        let a = Identity::generate(&mut ChaCha20Rng::seed_from_u64(4)).public();
        let b = Identity::generate(&mut ChaCha20Rng::seed_from_u64(5)).public();
        let fa = a.fingerprint().to_string();
        assert_eq!(fa.len(), 9);
        assert_eq!(&fa[4..5], "-");
        assert_ne!(fa, b.fingerprint().to_string());
    }

    #[test]
    fn hex_round_trip() {
        let a = Identity::generate(&mut ChaCha20Rng::seed_from_u64(6)).public();
        assert_eq!(PublicKey::from_hex(&a.to_hex()), Some(a));
        assert_eq!(PublicKey::from_hex(&a.to_hex().to_uppercase()), Some(a));
        assert_eq!(PublicKey::from_hex("abc"), None);
    }
}
