//! The two names of a user: the ruang [`PublicKey`] that signs, and the libp2p [`PeerId`] that
//! connects. Both are the same ed25519 key, so each converts to the other.

use ruang_net::PeerId;
use ruang_proto::{Identity, PublicKey};

/// The libp2p key pair of an identity (same ed25519 secret).
pub fn keypair(identity: &Identity) -> ruang_net::Keypair {
    let mut secret = *identity.secret_bytes();
    // 32 bytes are always a valid ed25519 secret; the call zeroes `secret` as it reads it.
    ruang_net::Keypair::ed25519_from_bytes(&mut secret).expect("32-byte ed25519 secret")
}

/// How an ed25519 peer id begins: the "identity" multihash (code 0, 36 bytes) of the
/// protobuf-encoded key (field 1 key type = 1 for ed25519, field 2 the 32 key bytes).
const ED25519_PEER_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// The peer id of a ruang key.
///
/// Built from the bytes, without decoding the key as a curve point (libp2p's way costs a
/// point decompression, and the node asks for peer ids per member, per frame target and per
/// presence). A key that is not a valid point gets a peer id nobody can hold.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let mut bytes = [0u8; 38];
    bytes[..6].copy_from_slice(&ED25519_PEER_PREFIX);
    bytes[6..].copy_from_slice(key.as_bytes());
    PeerId::from_bytes(&bytes).ok()
}

/// The ruang key behind a peer id, if it is an ed25519 peer id (every ruang node's is).
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    // The digest is the protobuf-encoded key: the prefix after the multihash's code and length.
    let key = multihash.digest().strip_prefix(&ED25519_PEER_PREFIX[2..])?;
    Some(PublicKey(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_peer_id_are_one_identity() {
        let id = Identity::from_secret_bytes(&[7; 32]);
        let peer = keypair(&id).public().to_peer_id();
        assert_eq!(peer_id(&id.public()), Some(peer));
        assert_eq!(public_key(&peer), Some(id.public()));
    }

    #[test]
    fn byte_built_peer_ids_match_libp2p() {
        for i in 0..200u8 {
            let id = Identity::from_secret_bytes(&[i; 32]);
            let libp2p = libp2p_identity::PublicKey::from(
                libp2p_identity::ed25519::PublicKey::try_from_bytes(id.public().as_bytes())
                    .unwrap(),
            )
            .to_peer_id();
            assert_eq!(peer_id(&id.public()), Some(libp2p));
            assert_eq!(public_key(&libp2p), Some(id.public()));
        }
        // Other key types are not ruang keys.
        let secp = libp2p_identity::PeerId::random();
        assert_eq!(public_key(&secp), None);
    }
}
