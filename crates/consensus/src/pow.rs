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

/// Nonces hashed side by side in [`HeaderHasher::search`]. A nonce's two compressions
/// depend on each other, but those of neighbouring nonces do not: issuing four nonces'
/// compressions back to back lets the CPU overlap them (measured: about 1.4x the
/// throughput of one nonce at a time with SHA extensions; see docs/BENCHMARKS.md).
const SEARCH_LANES: usize = 4;

/// Hashes one header template with many nonces, reusing the midstate of its first
/// 64 bytes.
#[derive(Clone, Debug)]
pub struct HeaderHasher {
    midstate: [u32; 8],
    /// The header's last 24 bytes with SHA-256 padding, once per lane: the one block a
    /// nonce changes.
    tails: [[u8; 64]; SEARCH_LANES],
    /// The outer hash's single block per lane: the inner digest and padding.
    outers: [[u8; 64]; SEARCH_LANES],
}

/// A target as eight big-endian 32-bit words, the shape SHA-256's state comes out in, so
/// a hash is compared word by word without being turned into bytes first.
#[derive(Clone, Copy, Debug)]
struct TargetWords([u32; 8]);

impl TargetWords {
    fn new(target: Target) -> TargetWords {
        let bytes = target.to_u256().to_be_bytes();
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        TargetWords(words)
    }

    /// True if the hash whose SHA-256 state is `state` is at most the target. The first
    /// word decides for all but about one hash in 2^32 at any real target.
    #[inline(always)]
    fn is_met_by_state(&self, state: &[u32; 8]) -> bool {
        if state[0] != self.0[0] {
            return state[0] < self.0[0];
        }
        state <= &self.0
    }
}

fn state_to_hash(state: &[u32; 8]) -> BlockHash {
    let mut hash = [0u8; 32];
    for (chunk, word) in hash.chunks_exact_mut(4).zip(state.iter()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    BlockHash(hash)
}

#[inline(always)]
fn write_digest(block: &mut [u8; 64], inner: &[u32; 8]) {
    for (chunk, word) in block[..32].chunks_exact_mut(4).zip(inner.iter()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

impl HeaderHasher {
    /// Prepares the midstate and the padded last block for `header`.
    pub fn new(header: &Header) -> HeaderHasher {
        let bytes = header.to_bytes();
        let mut midstate = SHA256_IV;
        let mut first = [0u8; 64];
        first.copy_from_slice(&bytes[..64]);
        compress256(&mut midstate, std::slice::from_ref(&first));

        let mut tail = [0u8; 64];
        tail[..HEADER_BYTES - 64].copy_from_slice(&bytes[64..]);
        tail[HEADER_BYTES - 64] = 0x80;
        tail[56..].copy_from_slice(&((HEADER_BYTES as u64) * 8).to_be_bytes());

        let mut outer = [0u8; 64];
        outer[32] = 0x80;
        outer[56..].copy_from_slice(&256u64.to_be_bytes());
        HeaderHasher {
            midstate,
            tails: [tail; SEARCH_LANES],
            outers: [outer; SEARCH_LANES],
        }
    }

    /// Changes the header time (it sits in the last block, so the midstate stays valid).
    pub fn set_time_ms(&mut self, time_ms: u64) {
        for tail in &mut self.tails {
            tail[TIME_OFFSET_IN_TAIL..TIME_OFFSET_IN_TAIL + 8]
                .copy_from_slice(&time_ms.to_le_bytes());
        }
    }

    /// The SHA-256d state of the header with `nonce`, in lane 0: two compressions, no
    /// copies of whole blocks (the nonce and the inner digest are written in place).
    #[inline(always)]
    fn state_with_nonce(&mut self, nonce: u64) -> [u32; 8] {
        let tail = &mut self.tails[0];
        tail[NONCE_OFFSET_IN_TAIL..NONCE_OFFSET_IN_TAIL + 8].copy_from_slice(&nonce.to_le_bytes());
        let mut inner = self.midstate;
        compress256(&mut inner, std::slice::from_ref(tail));
        let outer = &mut self.outers[0];
        write_digest(outer, &inner);
        let mut state = SHA256_IV;
        compress256(&mut state, std::slice::from_ref(outer));
        state
    }

    /// The SHA-256d states of nonces `first..first + SEARCH_LANES`, one per lane.
    ///
    /// Each phase writes every lane's bytes before any lane is compressed. Writing a
    /// block's bytes and loading them at once for the compression stalls the CPU (a wide
    /// load cannot take its data from narrower stores still in flight); when lanes alternate
    /// write and compress, each lane's write also waits for the previous lane's compression
    /// to retire, and the lanes run one after another. Grouped, the lanes overlap.
    #[inline(always)]
    fn states_with_nonces(&mut self, first: u64) -> [[u32; 8]; SEARCH_LANES] {
        for (lane, tail) in self.tails.iter_mut().enumerate() {
            let nonce = first.wrapping_add(lane as u64);
            tail[NONCE_OFFSET_IN_TAIL..NONCE_OFFSET_IN_TAIL + 8]
                .copy_from_slice(&nonce.to_le_bytes());
        }
        let mut inner = [self.midstate; SEARCH_LANES];
        for (state, tail) in inner.iter_mut().zip(&self.tails) {
            compress256(state, std::slice::from_ref(tail));
        }
        for (outer, digest) in self.outers.iter_mut().zip(&inner) {
            write_digest(outer, digest);
        }
        let mut outer_states = [SHA256_IV; SEARCH_LANES];
        for (state, outer) in outer_states.iter_mut().zip(&self.outers) {
            compress256(state, std::slice::from_ref(outer));
        }
        outer_states
    }

    /// The block hash the header would have with `nonce`.
    #[inline]
    pub fn hash_with_nonce(&mut self, nonce: u64) -> BlockHash {
        state_to_hash(&self.state_with_nonce(nonce))
    }

    /// Tries nonces `start..end` and returns the first whose hash meets `target`.
    ///
    /// The loop hashes `SEARCH_LANES` (4) nonces side by side, compares the raw SHA-256
    /// states with the target word by word, and builds hash bytes only for the winner:
    /// per nonce it costs the two compressions and little else.
    pub fn search(&mut self, target: Target, start: u64, end: u64) -> Option<(u64, BlockHash)> {
        let target = TargetWords::new(target);
        let lanes = SEARCH_LANES as u64;
        let mut nonce = start;
        while end.saturating_sub(nonce) >= lanes {
            let states = self.states_with_nonces(nonce);
            if let Some(lane) = states
                .iter()
                .position(|state| target.is_met_by_state(state))
            {
                return Some((nonce + lane as u64, state_to_hash(&states[lane])));
            }
            nonce += lanes;
        }
        while nonce < end {
            let state = self.state_with_nonce(nonce);
            if target.is_met_by_state(&state) {
                return Some((nonce, state_to_hash(&state)));
            }
            nonce += 1;
        }
        None
    }
}

/// Distinct blocks the raw loop cycles through.
const RAW_BLOCKS: usize = 64;

/// Raw SHA-256 compressions of `count` independent blocks (each from the initial state,
/// as a nonce's compressions are), `lanes` blocks issued side by side (1, 2, 4 or 8; other
/// values use 8): the hardware bound a miner is measured against. The blocks are written
/// once, before the loop, so the loop is compressions and nothing else; the benchmark
/// takes the best lane count, so the bound is the most this machine's SHA-256 gives.
/// Returns a value derived from the work so the optimiser cannot drop it.
pub fn run_raw_compressions(count: u64, lanes: usize) -> u32 {
    let mut blocks = [[0u8; 64]; RAW_BLOCKS];
    for (index, block) in blocks.iter_mut().enumerate() {
        block[0] = index as u8;
        block[63] = 0x80 ^ index as u8;
    }
    match lanes {
        1 => raw_compressions::<1>(&blocks, count),
        2 => raw_compressions::<2>(&blocks, count),
        4 => raw_compressions::<4>(&blocks, count),
        _ => raw_compressions::<8>(&blocks, count),
    }
}

fn raw_compressions<const LANES: usize>(blocks: &[[u8; 64]; RAW_BLOCKS], count: u64) -> u32 {
    let mut fold = 0u32;
    let mut position = 0usize;
    let mut done = 0u64;
    while done < count {
        let mut states = [SHA256_IV; LANES];
        for (lane, state) in states.iter_mut().enumerate() {
            compress256(
                state,
                std::slice::from_ref(&blocks[(position + lane) % RAW_BLOCKS]),
            );
        }
        for state in &states {
            fold = fold.wrapping_add(state[0]);
        }
        position = (position + LANES) % RAW_BLOCKS;
        done += LANES as u64;
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{BlockHash, MerkleRoot};
    use crate::target::CompactTarget;
    use crate::uint::U256;
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

    proptest! {
        #[test]
        fn search_agrees_with_is_met_by(
            merkle in any::<[u8; 32]>(), target_bytes in any::<[u8; 32]>(), start in any::<u32>(),
            length in 0u64..40,
        ) {
            let header = Header {
                version: 1, prev_hash: BlockHash::ZERO, merkle_root: MerkleRoot(merkle),
                time_ms: 7, bits: CompactTarget(0x207fffff), nonce: 0,
            };
            let Some(target) = Target::from_u256(U256::from_be_bytes(target_bytes)) else {
                return Ok(());
            };
            let mut hasher = HeaderHasher::new(&header);
            let start = u64::from(start);
            let expected = (start..start + length)
                .map(|nonce| (nonce, hasher.hash_with_nonce(nonce)))
                .find(|(_, hash)| target.is_met_by(*hash));
            prop_assert_eq!(hasher.search(target, start, start + length), expected);
        }
    }

    #[test]
    fn a_target_equal_to_the_hash_is_met_and_one_below_is_not() {
        let header = Header {
            version: 1,
            prev_hash: BlockHash::ZERO,
            merkle_root: MerkleRoot::ZERO,
            time_ms: 0,
            bits: CompactTarget(0x207fffff),
            nonce: 0,
        };
        let mut hasher = HeaderHasher::new(&header);
        let hash = hasher.hash_with_nonce(5);
        let exact = Target::from_u256(U256::from_be_bytes(hash.0)).expect("non-zero");
        assert_eq!(hasher.search(exact, 5, 6), Some((5, hash)));
        // The same nonce met in a four-lane step, in every lane position.
        for start in 2..=5 {
            let found = hasher.search(exact, start, start + 4);
            assert!(found.is_some_and(|(nonce, _)| nonce <= 5), "start {start}");
        }
        let below = U256::from_be_bytes(hash.0)
            .checked_sub(U256::ONE)
            .expect("the hash is not zero");
        let below = Target::from_u256(below).expect("non-zero");
        assert_eq!(hasher.search(below, 5, 6), None);
    }

    #[test]
    fn raw_compressions_do_the_same_work_in_every_lane_count() {
        let one = run_raw_compressions(64, 1);
        for lanes in [2, 4, 8] {
            assert_eq!(run_raw_compressions(64, lanes), one, "{lanes} lanes");
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
