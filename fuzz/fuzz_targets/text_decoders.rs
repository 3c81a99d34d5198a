//! Text that people paste or type: tickets, room ids, fingerprints. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ruang_proto::Ticket;
use ruang_proto::room::RoomId;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(ticket) = Ticket::parse(&text) {
        // What parses prints and parses back to the same ticket.
        let again = Ticket::parse(&ticket.to_string()).expect("a printed ticket parses");
        assert_eq!(again, ticket);
    }
    let _ = RoomId::from_hex(&text);
});
