//! Headers: `Header::decode_exact` never panics, takes exactly 88 bytes, re-encodes to its
//! input, and the midstate hasher agrees with the plain hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::pow::HeaderHasher;
use powchain_consensus::{HEADER_BYTES, Header};

fuzz_target!(|data: &[u8]| {
    match Header::decode_exact(data) {
        Ok(header) => {
            assert_eq!(data.len(), HEADER_BYTES);
            assert_eq!(header.encode_to_vec(), data);
            assert_eq!(header.to_bytes().as_slice(), data);
            let _ = header.bits.to_target();
            assert_eq!(
                HeaderHasher::new(&header).hash_with_nonce(header.nonce),
                header.compute_hash()
            );
        }
        Err(_) => assert_ne!(data.len(), HEADER_BYTES, "any 88 bytes are a header"),
    }
});
