//! Tickets: a compact, copy-pasteable string that gets someone into a room without the directory.
//!
//! ```text
//! ticket = "ruang1" base32(body || checksum)        // lower-case, no padding; case and
//!                                                    // white space are ignored when reading
//! body   = version(1) flags(1) room(32) host(32) n(1) { len(1) address(len) }*n [room_key(32)]
//! checksum = sha256("ruang/ticket/v1" || body)[..4]
//! ```
//! Addresses are binary multiaddrs; this crate carries them as bytes and `ruang-net` reads them.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use sha2::{Digest, Sha256};

use crate::identity::PublicKey;
use crate::room::RoomId;
use crate::signed::Hash;

/// Every ticket starts with this.
pub const PREFIX: &str = "ruang1";
/// The ticket format version this code writes.
pub const TICKET_VERSION: u8 = 1;
/// Most addresses a ticket carries.
pub const MAX_TICKET_ADDRESSES: usize = 6;
/// Longest address in a ticket, in bytes.
pub const MAX_TICKET_ADDRESS_LEN: usize = 128;
const CHECKSUM_LEN: usize = 4;
const FLAG_ROOM_KEY: u8 = 1;

/// Lower-case RFC 4648 base32 without padding; upper case is accepted when decoding.
pub(crate) static BASE32_LOWER: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.check_trailing_bits = false;
    // The specification above is valid (32 distinct symbols, no padding): building cannot fail.
    spec.encoding().expect("valid base32 specification")
});

/// What a ticket says: which room, whose, where to find it, and (private rooms) its key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The room.
    pub room: RoomId,
    /// The host's key (their peer id).
    pub host: PublicKey,
    /// Where to reach the host or a member (binary multiaddrs).
    pub addresses: Vec<Vec<u8>>,
    /// The room key of a private room.
    pub room_key: Option<[u8; 32]>,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("room", &self.room)
            .field("host", &self.host)
            .field("addresses", &self.addresses.len())
            .field("private", &self.room_key.is_some())
            .finish()
    }
}

/// Why a string is not a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// It does not start with [`PREFIX`].
    #[error("not a ruang ticket: tickets start with `{PREFIX}`")]
    MissingPrefix,
    /// A character outside the ticket alphabet.
    #[error(
        "character {character:?} at position {position} cannot appear in a ticket; was it mistyped?"
    )]
    BadCharacter {
        /// Position in the ticket (after the prefix, white space removed).
        position: usize,
        /// The character.
        character: char,
    },
    /// The checksum does not match.
    #[error(
        "the ticket is damaged (checksum mismatch): it was mistyped or cut short; copy it again"
    )]
    Checksum,
    /// Too short to be a ticket.
    #[error("the ticket is too short: it was cut off; copy all of it")]
    Truncated,
    /// A version this code does not read.
    #[error("ticket version {0} is not supported by this ruang; upgrade ruang")]
    UnsupportedVersion(u8),
    /// Structurally wrong despite a good checksum.
    #[error("malformed ticket: {0}")]
    Malformed(&'static str),
}

impl Ticket {
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(TICKET_VERSION);
        out.push(if self.room_key.is_some() {
            FLAG_ROOM_KEY
        } else {
            0
        });
        out.extend_from_slice(&self.room.0.0);
        out.extend_from_slice(self.host.as_bytes());
        let addresses: Vec<&Vec<u8>> = self
            .addresses
            .iter()
            .filter(|a| a.len() <= MAX_TICKET_ADDRESS_LEN)
            .take(MAX_TICKET_ADDRESSES)
            .collect();
        out.push(addresses.len() as u8);
        for a in addresses {
            out.push(a.len() as u8);
            out.extend_from_slice(a);
        }
        if let Some(key) = &self.room_key {
            out.extend_from_slice(key);
        }
        out
    }

    fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
        let digest = Sha256::new()
            .chain_update(b"ruang/ticket/v1")
            .chain_update(body)
            .finalize();
        let mut out = [0; CHECKSUM_LEN];
        out.copy_from_slice(&digest[..CHECKSUM_LEN]);
        out
    }

    /// Parses a ticket, ignoring case and white space.
    pub fn parse(text: &str) -> Result<Ticket, TicketError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let lower = compact.to_ascii_lowercase();
        let rest = lower
            .strip_prefix(PREFIX)
            .ok_or(TicketError::MissingPrefix)?;
        let bytes = BASE32_LOWER
            .decode(rest.as_bytes())
            .map_err(|e| match e.kind {
                data_encoding::DecodeKind::Symbol => TicketError::BadCharacter {
                    position: e.position + PREFIX.len(),
                    character: rest[e.position..].chars().next().unwrap_or('?'),
                },
                _ => TicketError::Truncated,
            })?;
        if bytes.len() < 2 + 64 + 1 + CHECKSUM_LEN {
            return Err(TicketError::Truncated);
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Self::checksum(body) != checksum {
            return Err(TicketError::Checksum);
        }
        if body[0] != TICKET_VERSION {
            return Err(TicketError::UnsupportedVersion(body[0]));
        }
        let flags = body[1];
        let mut reader = Reader { bytes: &body[2..] };
        let room = RoomId(Hash(reader.array()?));
        let host = PublicKey(reader.array()?);
        let count = reader.byte()? as usize;
        if count > MAX_TICKET_ADDRESSES {
            return Err(TicketError::Malformed("too many addresses"));
        }
        let mut addresses = Vec::with_capacity(count);
        for _ in 0..count {
            let len = reader.byte()? as usize;
            addresses.push(reader.take(len)?.to_vec());
        }
        let room_key = if flags & FLAG_ROOM_KEY != 0 {
            Some(reader.array()?)
        } else {
            None
        };
        if !reader.bytes.is_empty() {
            return Err(TicketError::Malformed("trailing bytes"));
        }
        Ok(Ticket {
            room,
            host,
            addresses,
            room_key,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TicketError> {
        if self.bytes.len() < n {
            return Err(TicketError::Malformed("field runs past the end"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, TicketError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TicketError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.body();
        let checksum = Self::checksum(&bytes);
        bytes.extend_from_slice(&checksum);
        write!(f, "{PREFIX}{}", BASE32_LOWER.encode(&bytes))
    }
}

impl FromStr for Ticket {
    type Err = TicketError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ticket::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ticket {
        Ticket {
            room: RoomId(Hash([7; 32])),
            host: PublicKey([9; 32]),
            addresses: vec![vec![4, 127, 0, 0, 1, 6, 0x1f, 0x90], vec![1, 2, 3]],
            room_key: Some([5; 32]),
        }
    }

    #[test]
    fn round_trip_and_case_and_whitespace() {
        let t = sample();
        let text = t.to_string();
        assert!(text.starts_with(PREFIX));
        assert_eq!(Ticket::parse(&text).unwrap(), t);
        let messy = format!("  {}\n{} ", &text[..40].to_uppercase(), &text[40..]);
        assert_eq!(Ticket::parse(&messy).unwrap(), t);
    }

    #[test]
    fn mistakes_are_named() {
        let text = sample().to_string();
        assert_eq!(Ticket::parse("hello"), Err(TicketError::MissingPrefix));
        assert_eq!(Ticket::parse(&text[..30]), Err(TicketError::Truncated));
        let mut chars: Vec<char> = text.chars().collect();
        chars[20] = if chars[20] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.iter().collect();
        assert_eq!(Ticket::parse(&typo), Err(TicketError::Checksum));
        let mut bad = text.clone();
        bad.replace_range(15..16, "1");
        assert!(matches!(
            Ticket::parse(&bad),
            Err(TicketError::BadCharacter {
                position: 15,
                character: '1'
            })
        ));
        let cut = &text[..text.len() - 1];
        assert!(matches!(
            Ticket::parse(cut),
            Err(TicketError::Checksum | TicketError::Truncated)
        ));
    }
}
