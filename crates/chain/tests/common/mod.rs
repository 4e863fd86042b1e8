//! Shared helpers for the chain state's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use powchain_chain::{ChainOptions, ChainState};
use powchain_consensus::Network;

/// A clock far enough ahead that no test block is "too new".
pub const NOW_MS: u64 = 1_795_564_800_000 + 1_000_000_000_000;

pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("chain.redb")
}

pub fn open(dir: &Path) -> ChainState {
    open_with_coin_cache(dir, powchain_chain::DEFAULT_COIN_CACHE_BLOCKS)
}

/// Opens the store with a coin cache that holds at most `blocks` unflushed blocks (0:
/// every block's rows are written with it).
pub fn open_with_coin_cache(dir: &Path, blocks: usize) -> ChainState {
    ChainState::open(
        &store_path(dir),
        Network::Regtest,
        ChainOptions {
            signature_threads: 2,
            coin_cache_blocks: blocks,
            ..ChainOptions::default()
        },
    )
    .expect("the store opens")
}

/// Asserts the stored UTXO set and indexes equal a rebuild from the main chain.
pub fn assert_consistent(chain: &ChainState) {
    let report = chain
        .reader()
        .snapshot()
        .expect("snapshot")
        .check_consistency()
        .expect("the store is consistent");
    assert_eq!(report.tip, chain.tip().hash);
}
