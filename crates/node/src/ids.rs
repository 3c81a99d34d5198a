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

/// The peer id of a ruang key.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let public = libp2p_identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(libp2p_identity::PublicKey::from(public).to_peer_id())
}

/// The ruang key behind a peer id, if it is an ed25519 peer id (every ruang node's is).
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    // ed25519 peer ids are "identity" multihashes (code 0) of the protobuf-encoded key.
    if multihash.code() != 0 {
        return None;
    }
    let public = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = public.try_into_ed25519().ok()?;
    Some(PublicKey(ed.to_bytes()))
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
}
