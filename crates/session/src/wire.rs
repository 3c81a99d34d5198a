//! The node's own messages between peers: what rides on the room's gossip topic, on the sync
//! request-response protocol and at the head of an audio stream. `ruang-net` carries them as
//! opaque bytes; everything here is bounded when decoded.

use serde::{Deserialize, Serialize};

use ruang_proto::PublicKey;
use ruang_proto::room::{EventHash, RoomId};

/// Most events in one sync answer (a page; the asker comes back for more).
pub const SYNC_PAGE_EVENTS: usize = 256;
/// Most heads a sync request names (a room with more concurrent heads still syncs: the answer
/// pages on through the log by position, and repeats only what the named heads do not cover).
pub const MAX_SYNC_HEADS: usize = 1024;
/// Most announcements in one directory answer.
pub const MAX_DIRECTORY_ANSWER: usize = 512;
/// Most presences in one presence answer: a sampled table holds at most twice
/// `limits::AUDIENCE_SAMPLE` of the audience, and the stage beside them.
pub const MAX_PRESENCE_ANSWER: usize = 2 * crate::limits::AUDIENCE_SAMPLE + 64;
/// Upper bound on a decoded sync request.
pub const MAX_SYNC_REQUEST_LEN: usize = 64 * 1024;
/// Upper bound on a decoded sync response.
pub const MAX_SYNC_RESPONSE_LEN: usize = 4 * 1024 * 1024;
/// Upper bound on an audio stream header.
pub const MAX_AUDIO_HEADER_LEN: usize = 256;
/// Longest [`AudioRequest`] accepted.
pub const MAX_AUDIO_REQUEST_LEN: usize = 64;
/// Version of the node-level messages.
pub const WIRE_VERSION: u8 = 1;

/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than the bound for its kind.
    #[error("message too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not a valid encoding.
    #[error("malformed message")]
    Malformed,
    /// A version this node does not speak.
    #[error("unsupported message version {0}")]
    Version(u8),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Plain data into a Vec: serialisation cannot fail.
    out.extend(postcard::to_allocvec(value).expect("postcard encoding into a Vec"));
    out
}

/// Decodes `bytes`, which must be the one encoding of a value: nothing after it, no
/// over-long integers. A message then has one byte form, so a peer cannot make copies that
/// pass for new ones (gossip ids are content hashes): 8 junk bytes appended to a replayed
/// presence were accepted and forwarded as a new message.
fn decode<T: Serialize + for<'de> Deserialize<'de>>(
    bytes: &[u8],
    max: usize,
) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (&version, rest) = bytes.split_first().ok_or(WireError::Malformed)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let (value, left) = postcard::take_from_bytes(rest).map_err(|_| WireError::Malformed)?;
    if !left.is_empty() || encode(&value) != bytes {
        return Err(WireError::Malformed);
    }
    Ok(value)
}

/// A message on a room's gossip topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomMessage {
    /// A signed log event (`ruang_proto::room::Event`).
    Event(Vec<u8>),
    /// A signed ephemeral message (`ruang_proto::ephemeral::Ephemeral`).
    Ephemeral(Vec<u8>),
    /// A private room's new key, wrapped for each member who stays (`ruang_proto::rekey`).
    Rekey(Vec<u8>),
}

impl RoomMessage {
    /// Encodes for gossip.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes gossip bytes, bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        // Each kind carries one signed envelope; its own bound is checked again by proto (a
        // rekey is the largest: up to 500 wrapped keys).
        decode(bytes, ruang_proto::rekey::MAX_REKEY_LEN + 64)
    }
}

/// A request on `/ruang/sync/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// "Send me the events of `room` that these heads lack, from position `from` of your log
    /// on" (empty heads: from the genesis).
    Room {
        /// The room.
        room: RoomId,
        /// The asker's heads (at most [`MAX_SYNC_HEADS`]).
        heads: Vec<EventHash>,
        /// Where in the answerer's log to go on from: 0, then the last answer's `next`.
        from: u32,
    },
    /// "Send me your directory listing."
    Directory,
    /// "Send me the presences you hold in `room`": a newcomer's table, filled at its join
    /// instead of over a heartbeat interval (minutes in a large room, and a heartbeat that
    /// does not reach it is missed for another interval).
    Presence {
        /// The room.
        room: RoomId,
    },
}

impl SyncRequest {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes, bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let req: SyncRequest = decode(bytes, MAX_SYNC_REQUEST_LEN)?;
        if let SyncRequest::Room { heads, .. } = &req
            && heads.len() > MAX_SYNC_HEADS
        {
            return Err(WireError::Malformed);
        }
        Ok(req)
    }
}

/// Why a node refuses a sync request: a closed set, so that a peer cannot make a joiner show
/// words of its choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SyncRefusal {
    /// The request did not decode.
    #[error("the request was malformed")]
    BadRequest,
    /// The node is not in the room asked for.
    #[error("this node is not in that room")]
    NotInRoom,
    /// The asker is banned from the room.
    #[error("you are banned from this room")]
    Banned,
    /// The asker sent more requests than this node answers one peer (see
    /// `limits::SYNC_REQUEST_BURST`).
    #[error("this node is busy with your requests: ask again in a moment")]
    Busy,
}

/// An answer on `/ruang/sync/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Signed events, parents first.
    Room {
        /// Signed event envelopes.
        events: Vec<Vec<u8>>,
        /// Where to ask from for the next page (always beyond the request's `from`); `None`
        /// when this page reached the end of the log.
        next: Option<u32>,
    },
    /// Signed announcements.
    Directory {
        /// Signed announcement envelopes.
        announcements: Vec<Vec<u8>>,
    },
    /// The peer will not answer, and says why.
    Refused(SyncRefusal),
    /// The presences the answerer holds, each as its author signed it (sealed in a private
    /// room), its own first and the stage next.
    Presence {
        /// Signed presence envelopes.
        presences: Vec<Vec<u8>>,
    },
}

impl SyncResponse {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes, bounded: a page holds at most [`SYNC_PAGE_EVENTS`] events and a directory
    /// answer [`MAX_DIRECTORY_ANSWER`] announcements, as honest peers send. (4 MB of the
    /// smallest valid events is ~24,000 signatures to check on the node's task, for one
    /// answer.)
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let answer: SyncResponse = decode(bytes, MAX_SYNC_RESPONSE_LEN)?;
        match &answer {
            SyncResponse::Room { events, .. } if events.len() > SYNC_PAGE_EVENTS => {
                Err(WireError::Malformed)
            }
            SyncResponse::Directory { announcements }
                if announcements.len() > MAX_DIRECTORY_ANSWER =>
            {
                Err(WireError::Malformed)
            }
            SyncResponse::Presence { presences } if presences.len() > MAX_PRESENCE_ANSWER => {
                Err(WireError::Malformed)
            }
            _ => Ok(answer),
        }
    }
}

/// The first message on an audio stream: whose audio, for which room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioHeader {
    /// The room.
    pub room: RoomId,
    /// The speaker whose frames follow (today always the sending peer; a forwarding hop will
    /// carry others' frames on their own streams).
    pub speaker: PublicKey,
    /// Frame duration in ms (10 or 20).
    pub frame_ms: u8,
    /// Random per capture session: in a private room, with each frame's sequence number, the
    /// nonce that seals its payload.
    pub salt: u64,
}

impl AudioHeader {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes, bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes, MAX_AUDIO_HEADER_LEN)
    }
}

/// A listener's request for a speaker's audio, sent once on a `/ruang/listen/1` stream it
/// opens over its own connection and keeps open for as long as it wants the audio: a speaker
/// streams only to members that asked, so a presence claiming an address makes nobody send
/// there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioRequest {
    /// The room whose audio the listener wants.
    pub room: RoomId,
}

impl AudioRequest {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes, bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes, MAX_AUDIO_REQUEST_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ruang_proto::Hash;

    #[test]
    fn answers_longer_than_a_page_are_refused() {
        let page = |n| SyncResponse::Room {
            events: vec![vec![9; 100]; n],
            next: None,
        };
        assert!(SyncResponse::decode(&page(SYNC_PAGE_EVENTS).encode()).is_ok());
        assert_eq!(
            SyncResponse::decode(&page(SYNC_PAGE_EVENTS + 1).encode()),
            Err(WireError::Malformed)
        );
        let directory = |n| SyncResponse::Directory {
            announcements: vec![vec![9; 100]; n],
        };
        assert!(SyncResponse::decode(&directory(MAX_DIRECTORY_ANSWER).encode()).is_ok());
        assert_eq!(
            SyncResponse::decode(&directory(MAX_DIRECTORY_ANSWER + 1).encode()),
            Err(WireError::Malformed)
        );
        let presences = |n| SyncResponse::Presence {
            presences: vec![vec![9; 100]; n],
        };
        assert!(SyncResponse::decode(&presences(MAX_PRESENCE_ANSWER).encode()).is_ok());
        assert_eq!(
            SyncResponse::decode(&presences(MAX_PRESENCE_ANSWER + 1).encode()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn round_trips() {
        let room = RoomId(Hash([3; 32]));
        let r = SyncRequest::Room {
            room,
            heads: vec![Hash([1; 32])],
            from: 7,
        };
        assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
        let a = AudioHeader {
            room,
            speaker: PublicKey([2; 32]),
            frame_ms: 20,
            salt: 9,
        };
        assert_eq!(AudioHeader::decode(&a.encode()).unwrap(), a);
        let q = AudioRequest { room };
        assert_eq!(AudioRequest::decode(&q.encode()).unwrap(), q);
        let mut long = q.encode();
        long.push(0);
        assert_eq!(AudioRequest::decode(&long), Err(WireError::Malformed));
        let m = RoomMessage::Event(vec![1, 2, 3]);
        assert_eq!(RoomMessage::decode(&m.encode()).unwrap(), m);
        let s = SyncResponse::Room {
            events: vec![vec![9; 10]],
            next: Some(300),
        };
        assert_eq!(SyncResponse::decode(&s.encode()).unwrap(), s);
        for why in [
            SyncRefusal::BadRequest,
            SyncRefusal::NotInRoom,
            SyncRefusal::Banned,
            SyncRefusal::Busy,
        ] {
            let r = SyncResponse::Refused(why);
            assert_eq!(SyncResponse::decode(&r.encode()).unwrap(), r);
        }
        // A refusal is one of four: anything beyond them does not decode.
        let mut bad = SyncResponse::Refused(SyncRefusal::Busy).encode();
        *bad.last_mut().unwrap() = 4;
        assert_eq!(SyncResponse::decode(&bad), Err(WireError::Malformed));
        assert_eq!(SyncRequest::decode(&[2, 0]), Err(WireError::Version(2)));
    }

    #[test]
    fn one_byte_form_per_message() {
        let m = RoomMessage::Ephemeral(vec![7; 40]);
        let mut wire = m.encode();
        assert_eq!(RoomMessage::decode(&wire).unwrap(), m);
        // Junk after the message.
        wire.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(RoomMessage::decode(&wire), Err(WireError::Malformed));
        // An over-long length prefix (40 as two varint bytes) for the same bytes.
        let mut long = vec![WIRE_VERSION, 1, 0x80 | 40, 0];
        long.extend([7; 40]);
        assert!(RoomMessage::decode(&long).is_err());
        let h = AudioHeader {
            room: RoomId(Hash([3; 32])),
            speaker: PublicKey([2; 32]),
            frame_ms: 20,
            salt: 9,
        };
        let mut wire = h.encode();
        wire.push(0);
        assert_eq!(AudioHeader::decode(&wire), Err(WireError::Malformed));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = RoomMessage::decode(&bytes);
            let _ = SyncRequest::decode(&bytes);
            let _ = SyncResponse::decode(&bytes);
            let _ = AudioRequest::decode(&bytes);
            let _ = AudioHeader::decode(&bytes);
        }
    }
}
