//! Blocks: `Block::decode_exact` never panics, and a decoded block re-encodes to its input
//! (so its hash, txids and Merkle root are those of the bytes a peer sent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::validation::validate_block_structure;
use powchain_consensus::{Block, Network};

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode_exact(data) {
        assert_eq!(block.encode_to_vec(), data);
        assert_eq!(block.compute_size(), data.len());
        // The structural rules take any decoded block without panicking.
        let params = Network::Regtest.params();
        let height = block.coinbase_height().unwrap_or_default();
        let _ = validate_block_structure(params, &block, height);
    }
});
