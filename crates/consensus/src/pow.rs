//! Proof of work: hashing headers fast with a midstate.
//!
//! ```text
//!   header bytes 0..64  ──compress once──▶ midstate
//!   header bytes 64..88 + padding (nonce inside) ──compress per nonce──▶ inner digest
//!   inner digest + padding ──compress──▶ block hash
//! ```
//!
//! Two SHA-256 compressions per nonce instead of three. [`HeaderHasher`] gives the same
//! hash as [`crate::Header::compute_hash`]; a test holds them equal.

use sha2::block_api::compress256;

use crate::block::{HEADER_BYTES, Header};
use crate::hash::BlockHash;
use crate::target::Target;

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

const NONCE_OFFSET_IN_TAIL: usize = 80 - 64;
const TIME_OFFSET_IN_TAIL: usize = 68 - 64;

/// Hashes one header template with many nonces, reusing the midstate of its first
/// 64 bytes.
#[derive(Clone, Debug)]
pub struct HeaderHasher {
    midstate: [u32; 8],
    tail: [u8; 64],
    outer: [u8; 64],
}

impl HeaderHasher {
    /// Prepares the midstate and the padded last block for `header`.
    pub fn new(header: &Header) -> HeaderHasher {
        let bytes = header.to_bytes();
        let mut midstate = SHA256_IV;
        let mut first = [0u8; 64];
        first.copy_from_slice(&bytes[..64]);
        compress256(&mut midstate, &[first]);

        let mut tail = [0u8; 64];
        tail[..HEADER_BYTES - 64].copy_from_slice(&bytes[64..]);
        tail[HEADER_BYTES - 64] = 0x80;
        tail[56..].copy_from_slice(&((HEADER_BYTES as u64) * 8).to_be_bytes());

        let mut outer = [0u8; 64];
        outer[32] = 0x80;
        outer[56..].copy_from_slice(&256u64.to_be_bytes());
        HeaderHasher {
            midstate,
            tail,
            outer,
        }
    }

    /// Changes the header time (it sits in the last block, so the midstate stays valid).
    pub fn set_time_ms(&mut self, time_ms: u64) {
        self.tail[TIME_OFFSET_IN_TAIL..TIME_OFFSET_IN_TAIL + 8]
            .copy_from_slice(&time_ms.to_le_bytes());
    }

    /// The block hash the header would have with `nonce`.
    #[inline]
    pub fn hash_with_nonce(&mut self, nonce: u64) -> BlockHash {
        self.tail[NONCE_OFFSET_IN_TAIL..NONCE_OFFSET_IN_TAIL + 8]
            .copy_from_slice(&nonce.to_le_bytes());
        let mut inner = self.midstate;
        compress256(&mut inner, &[self.tail]);
        for (chunk, word) in self.outer[..32].chunks_exact_mut(4).zip(inner.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        let mut state = SHA256_IV;
        compress256(&mut state, &[self.outer]);
        let mut hash = [0u8; 32];
        for (chunk, word) in hash.chunks_exact_mut(4).zip(state.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        BlockHash(hash)
    }

    /// Tries nonces `start..end` and returns the first whose hash meets `target`.
    pub fn search(&mut self, target: Target, start: u64, end: u64) -> Option<(u64, BlockHash)> {
        (start..end).find_map(|nonce| {
            let hash = self.hash_with_nonce(nonce);
            target.is_met_by(hash).then_some((nonce, hash))
        })
    }
}

/// Raw SHA-256 compressions of independent blocks: the hardware bound a miner is measured
/// against. Returns a value derived from the work so the optimiser cannot drop it.
pub fn run_raw_compressions(count: u64) -> u32 {
    let mut state = SHA256_IV;
    let mut block = [0u8; 64];
    for index in 0..count {
        block[..8].copy_from_slice(&index.to_le_bytes());
        let mut working = SHA256_IV;
        compress256(&mut working, &[block]);
        state[0] ^= working[0];
    }
    state[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{BlockHash, MerkleRoot};
    use crate::target::CompactTarget;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn midstate_hash_equals_plain_hash(
            version in any::<u32>(), prev in any::<[u8; 32]>(), merkle in any::<[u8; 32]>(),
            time_ms in any::<u64>(), bits in any::<u32>(), nonce in any::<u64>(), new_time in any::<u64>(),
        ) {
            let mut header = Header {
                version, prev_hash: BlockHash(prev), merkle_root: MerkleRoot(merkle),
                time_ms, bits: CompactTarget(bits), nonce: 0,
            };
            let mut hasher = HeaderHasher::new(&header);
            header.nonce = nonce;
            prop_assert_eq!(hasher.hash_with_nonce(nonce), header.compute_hash());
            hasher.set_time_ms(new_time);
            header.time_ms = new_time;
            prop_assert_eq!(hasher.hash_with_nonce(nonce), header.compute_hash());
        }
    }

    #[test]
    fn search_finds_a_nonce_meeting_an_easy_target() {
        let header = Header {
            version: 1,
            prev_hash: BlockHash::ZERO,
            merkle_root: MerkleRoot::ZERO,
            time_ms: 0,
            bits: CompactTarget(0x207fffff),
            nonce: 0,
        };
        let target = header.bits.to_target().expect("valid bits");
        let (nonce, hash) = HeaderHasher::new(&header)
            .search(target, 0, 1000)
            .expect("half of all hashes meet this target");
        assert!(target.is_met_by(hash));
        assert_eq!(Header { nonce, ..header }.compute_hash(), hash);
    }
}
