//! Short transaction ids for compact blocks (BIP-152): 6 bytes of SipHash-2-4 of a txid,
//! keyed by the block's header and a nonce the sender picks.
//!
//! ```text
//!   key = first 16 bytes of SHA-256(header bytes ‖ nonce as u64 LE)  → k0, k1 (u64 LE)
//!   short id = SipHash-2-4(k0, k1, txid) & 0xffff_ffff_ffff          → 6 bytes LE on the wire
//! ```
//!
//! Keyed per block, so an attacker cannot make two transactions collide in every block,
//! and one collision costs one round trip (the receiver asks for the transaction or the
//! whole block), never a wrong block: the Merkle root is checked after reconstruction.

use powchain_consensus::hash::sha256;
use powchain_consensus::{Header, Txid};

/// Bits kept of the 64-bit SipHash.
pub(crate) const SHORT_ID_MASK: u64 = 0xffff_ffff_ffff;
/// Bytes of a short id on the wire.
pub(crate) const SHORT_ID_BYTES: usize = 6;

/// The SipHash key of one compact block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShortIdKey {
    k0: u64,
    k1: u64,
}

impl ShortIdKey {
    /// The key for the block with `header`, under the sender's `nonce`.
    pub(crate) fn new(header: &Header, nonce: u64) -> ShortIdKey {
        let mut preimage = header.to_bytes().to_vec();
        preimage.extend_from_slice(&nonce.to_le_bytes());
        let digest = sha256(&preimage);
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        ShortIdKey {
            k0: word(0),
            k1: word(8),
        }
    }

    /// The short id of `txid`: 48 bits.
    pub(crate) fn short_id(&self, txid: &Txid) -> u64 {
        siphash24(self.k0, self.k1, &txid.0) & SHORT_ID_MASK
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of `message` under the key `(k0, k1)`.
pub(crate) fn siphash24(k0: u64, k1: u64, message: &[u8]) -> u64 {
    let mut state = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = message.chunks_exact(8);
    for word in words.by_ref() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        compress(&mut state, u64::from_le_bytes(bytes));
    }
    // The last word: the remaining bytes, and the message length's low byte on top.
    let mut last = [0u8; 8];
    let rest = words.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = message.len() as u8;
    compress(&mut state, u64::from_le_bytes(last));
    state[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut state);
    }
    state[0] ^ state[1] ^ state[2] ^ state[3]
}

fn compress(state: &mut [u64; 4], word: u64) {
    state[3] ^= word;
    round(state);
    round(state);
    state[0] ^= word;
}

fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The key of the SipHash paper's test vectors: bytes 00, 01, ..., 0f.
    const PAPER_K0: u64 = 0x0706_0504_0302_0100;
    const PAPER_K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    #[test]
    fn the_paper_vectors_hold() {
        // Appendix A of the paper: the message 00 01 ... 0e gives a129ca6149be45e5.
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(
            siphash24(PAPER_K0, PAPER_K1, &message),
            0xa129_ca61_49be_45e5
        );
        // The reference implementation's first vector: the empty message.
        assert_eq!(siphash24(PAPER_K0, PAPER_K1, &[]), 0x726f_db47_dd0e_0e31);
    }

    proptest! {
        /// The standard library's (deprecated, but still SipHash-2-4) hasher agrees on any
        /// key and message, including 32-byte txids.
        #[test]
        fn agrees_with_the_standard_librarys_siphash(
            k0 in any::<u64>(),
            k1 in any::<u64>(),
            message in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            #[allow(deprecated)]
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            std::hash::Hasher::write(&mut reference, &message);
            prop_assert_eq!(siphash24(k0, k1, &message), std::hash::Hasher::finish(&reference));
        }
    }

    #[test]
    fn short_ids_are_48_bits_and_depend_on_the_nonce() {
        let header = powchain_consensus::Network::Regtest
            .params()
            .genesis()
            .header;
        let txid = Txid([7; 32]);
        let one = ShortIdKey::new(&header, 1);
        let two = ShortIdKey::new(&header, 2);
        assert_eq!(one.short_id(&txid) & !SHORT_ID_MASK, 0);
        assert_ne!(one.short_id(&txid), two.short_id(&txid));
        assert_eq!(one, ShortIdKey::new(&header, 1));
    }
}
