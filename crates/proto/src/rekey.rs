//! Private rooms whose bans hold: a new room key, wrapped for each member who stays.
//!
//! A private room's payloads are sealed with a key that travels in its ticket. A banned or
//! kicked member has that key: with a fresh identity it could rejoin and read everything. So
//! the host draws a new key and sends it, in one signed [`Rekey`] message, wrapped for every
//! member still here; the old key then opens nothing new, and the new ticket carries the new
//! key.
//!
//! **Wrapping** ([`wrap`], [`unwrap`]): X25519 from the members' own ed25519 keys (the
//! birational map, as libsodium's `crypto_sign_ed25519_pk_to_curve25519`), with an ephemeral
//! key per recipient, as in age or HPKE's base mode: the wrapping key is SHA-256 of a label,
//! the room, the epoch, both public keys and the shared secret, and seals the new key with
//! ChaCha20-Poly1305 (a zero nonce: each wrapping key seals exactly one message). Why this and
//! not a group-key scheme (MLS/TreeKEM, O(log n) per change): it needs nothing published or
//! kept by the members (their identity is their key), no ordering of group operations, and a
//! private room rekeys only on a ban or a kick and is small: 113 bytes per member, 500
//! members per message.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::MontgomeryPoint;
use ed25519_dalek::VerifyingKey;
use rand_core::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{Identity, PublicKey};
use crate::room::RoomId;
use crate::seal::RoomKey;
use crate::signed::Signable;

/// Members one [`Rekey`] message can carry a key for.
pub const MAX_WRAPS: usize = 500;
/// Upper bound of a [`Rekey`] envelope on the wire: 113 bytes per wrap, and the rest. Sealed
/// with the old key it still fits a gossip message (64 KiB).
pub const MAX_REKEY_LEN: usize = 256 + MAX_WRAPS * 116;

/// The new key, sealed for one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrapped {
    /// The member it is for.
    pub to: PublicKey,
    /// The sender's ephemeral X25519 public key for this member.
    pub ephemeral: [u8; 32],
    /// The new key (32 bytes) and its tag (16).
    pub sealed: Vec<u8>,
}

/// A private room's new key, wrapped for each member who stays. Signed by the room's host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekey {
    /// The room.
    pub room: RoomId,
    /// Who sends it (the host).
    pub author: PublicKey,
    /// Counts the room's keys: the key of the ticket is epoch 0, each rekey adds one.
    pub epoch: u32,
    /// Unix ms when it was made.
    pub issued_at: u64,
    /// The key, wrapped for each member who stays.
    pub wraps: Vec<Wrapped>,
}

impl Signable for Rekey {
    const DOMAIN: &'static [u8] = b"ruang/rekey/v1";
    const MAX_WIRE_LEN: usize = MAX_REKEY_LEN;

    fn author(&self) -> &PublicKey {
        &self.author
    }

    fn check_bounds(&self) -> Result<(), &'static str> {
        if self.wraps.len() > MAX_WRAPS {
            return Err("too many wrapped keys");
        }
        if self.wraps.iter().any(|w| w.sealed.len() != 48) {
            return Err("a wrapped key of the wrong size");
        }
        Ok(())
    }
}

impl Rekey {
    /// The key wrapped for `me`, if there is one and it opens.
    pub fn key_for(&self, me: &Identity) -> Option<RoomKey> {
        let mine = me.public();
        let w = self.wraps.iter().find(|w| w.to == mine)?;
        unwrap(w, me, &self.room, self.epoch)
    }
}

/// A member's X25519 public key, from its ed25519 key (`None` for bytes that are not a point).
fn montgomery(key: &PublicKey) -> Option<MontgomeryPoint> {
    Some(VerifyingKey::from_bytes(&key.0).ok()?.to_montgomery())
}

fn wrapping_key(
    room: &RoomId,
    epoch: u32,
    ephemeral: &[u8; 32],
    to: &PublicKey,
    shared: &MontgomeryPoint,
) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"ruang/rekey-wrap/v1")
        .chain_update(room.0.0)
        .chain_update(epoch.to_be_bytes())
        .chain_update(ephemeral)
        .chain_update(to.0)
        .chain_update(shared.to_bytes())
        .finalize()
        .into()
}

/// Wraps `key` (epoch `epoch` of `room`) for member `to`; `None` if `to` is not a valid key.
pub fn wrap<R: Rng + ?Sized>(
    key: &RoomKey,
    room: &RoomId,
    epoch: u32,
    to: &PublicKey,
    rng: &mut R,
) -> Option<Wrapped> {
    let recipient = montgomery(to)?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut *secret);
    let ephemeral = MontgomeryPoint::mul_base_clamped(*secret).to_bytes();
    let shared = recipient.mul_clamped(*secret);
    let k = zeroize::Zeroizing::new(wrapping_key(room, epoch, &ephemeral, to, &shared));
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&*k));
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &key.to_bytes(),
                aad: b"",
            },
        )
        .ok()?;
    Some(Wrapped {
        to: *to,
        ephemeral,
        sealed,
    })
}

/// Opens a key wrapped for `me` (epoch `epoch` of `room`).
pub fn unwrap(w: &Wrapped, me: &Identity, room: &RoomId, epoch: u32) -> Option<RoomKey> {
    let mine = me.public();
    if w.to != mine {
        return None;
    }
    let shared = MontgomeryPoint(w.ephemeral).mul_clamped(*me.x25519_secret());
    let k = zeroize::Zeroizing::new(wrapping_key(room, epoch, &w.ephemeral, &mine, &shared));
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&*k));
    let bytes = cipher
        .decrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &w.sealed,
                aad: b"",
            },
        )
        .ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Some(RoomKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::{Hash, sign, verify};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn room() -> RoomId {
        RoomId(Hash([3; 32]))
    }

    #[test]
    fn each_member_opens_its_own_wrap_and_nobody_else_does() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let host = Identity::from_secret_bytes(&[1; 32]);
        let ana = Identity::from_secret_bytes(&[2; 32]);
        let bo = Identity::from_secret_bytes(&[3; 32]);
        let banned = Identity::from_secret_bytes(&[4; 32]);
        let key = RoomKey::generate(&mut rng);
        let wraps: Vec<Wrapped> = [&ana, &bo]
            .iter()
            .map(|m| wrap(&key, &room(), 1, &m.public(), &mut rng).unwrap())
            .collect();
        let rekey = Rekey {
            room: room(),
            author: host.public(),
            epoch: 1,
            issued_at: 5,
            wraps,
        };
        let signed = sign(&host, rekey).unwrap();
        let got: crate::signed::Verified<Rekey> = verify(signed.wire()).unwrap();
        assert_eq!(
            got.key_for(&ana).map(|k| k.to_bytes()),
            Some(key.to_bytes())
        );
        assert_eq!(got.key_for(&bo).map(|k| k.to_bytes()), Some(key.to_bytes()));
        // The banned member has no wrap; it cannot open another's either.
        assert!(got.key_for(&banned).is_none());
        let mut stolen = got.wraps[0].clone();
        stolen.to = banned.public();
        assert!(unwrap(&stolen, &banned, &room(), 1).is_none());
        // A wrap read as another epoch or room does not open.
        assert!(unwrap(&got.wraps[0], &ana, &room(), 2).is_none());
        assert!(unwrap(&got.wraps[0], &ana, &RoomId(Hash([9; 32])), 1).is_none());
    }

    #[test]
    fn a_full_message_fits_and_too_many_wraps_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let host = Identity::from_secret_bytes(&[1; 32]);
        let key = RoomKey::generate(&mut rng);
        let wraps: Vec<Wrapped> = (0..MAX_WRAPS as u32)
            .map(|n| {
                let mut s = [7; 32];
                s[..4].copy_from_slice(&n.to_le_bytes());
                let to = Identity::from_secret_bytes(&s).public();
                wrap(&key, &room(), 1, &to, &mut rng).unwrap()
            })
            .collect();
        let mut rekey = Rekey {
            room: room(),
            author: host.public(),
            epoch: 1,
            issued_at: 5,
            wraps,
        };
        let signed = sign(&host, rekey.clone()).unwrap();
        assert!(
            signed.wire().len() <= MAX_REKEY_LEN,
            "{}",
            signed.wire().len()
        );
        rekey.wraps.push(rekey.wraps[0].clone());
        assert!(sign(&host, rekey).is_err());
    }
}
