//! Peer messages: `Message::from_bytes` never panics on any bytes, and whatever decodes
//! re-encodes to exactly the bytes it came from (one encoding per message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use powchain_p2p::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::from_bytes(data) {
        assert_eq!(
            message.to_bytes(),
            data,
            "{} does not round-trip",
            message.name()
        );
    }
});
