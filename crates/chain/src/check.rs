//! Checking a stored chain against a rebuild from scratch: what `powchain check` runs, and
//! what the tests' consistency checks run.
//!
//! ```text
//!   Snapshot ──▶ main chain from genesis, height by height:
//!                 block stored? its hash the height index's? links to its parent? its
//!                 header the block index's? its Merkle root the header's?
//!                 ──▶ connect_block_transactions (powchain-consensus) into a fresh UTXO set
//!            ──▶ compare with the stored UTXO set (count, then each coin), then the
//!                per-address index ──▶ ConsistencyReport, or the first difference
//! ```
//!
//! Pure over a [`Snapshot`]: it reads, never writes. Signatures go through the verifier
//! given: [`check_store`] checks every one again; the tests' `check_consistency` trusts
//! those the chain already checked when it connected the blocks (storage is what it
//! checks, not the rules).

use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use powchain_consensus::signature::{ParallelVerifier, SignatureCheck, SignatureVerifier};
use powchain_consensus::validation::connect_block_transactions;
use powchain_consensus::{Amount, BlockHash, BlockHeight, Coin, Network, OutPoint};

use crate::error::{ChainError, panic_message};
use crate::reader::{ConsistencyReport, Snapshot};
use crate::state::{ChainOptions, ChainState};

/// Accepts every signature: for re-checking storage of blocks whose signatures the chain
/// already verified when it connected them.
struct SignaturesCheckedAtConnect;

impl SignatureVerifier for SignaturesCheckedAtConnect {
    fn verify_all(&self, _checks: &[SignatureCheck]) -> Result<(), usize> {
        Ok(())
    }
}

/// Opens the store at `path` (the node must not be running: the store's lock refuses a
/// second user), checks every main-chain block and rebuilds the UTXO set from genesis,
/// verifying every signature again on `threads` threads, and compares it with the stored
/// one.
///
/// # Errors
/// What [`ChainState::open`] returns for a store that cannot be opened,
/// [`ChainError::Damaged`] for one the storage engine fails on while it is read, or
/// [`ChainError::Corrupt`] naming the first difference found.
pub fn check_store(
    path: &Path,
    network: Network,
    threads: usize,
) -> Result<ConsistencyReport, ChainError> {
    let verifier = ParallelVerifier {
        threads: threads.max(1),
    };
    let chain = ChainState::open(
        path,
        network,
        ChainOptions {
            signature_threads: threads.max(1),
            verifier: Some(Arc::new(verifier)),
            ..ChainOptions::default()
        },
    )?;
    // The walk reads pages opening never touched (blocks, coins): a panic of the storage
    // engine on one of them is damage too.
    panic::catch_unwind(AssertUnwindSafe(|| {
        let snapshot = chain.reader().snapshot()?;
        check_chain(&snapshot, &verifier)
    }))
    .unwrap_or_else(|payload| {
        Err(ChainError::Damaged {
            path: path.to_path_buf(),
            detail: format!("the storage engine panicked: {}", panic_message(&*payload)),
        })
    })
    .map_err(|error| match error {
        ChainError::Storage(_) | ChainError::CorruptRow { .. } => error.at_open(path),
        other => other,
    })
}

/// The consistency check of the tests: as [`check_chain`], trusting the signatures the
/// chain checked when it connected the blocks.
pub(crate) fn check_storage(snapshot: &Snapshot) -> Result<ConsistencyReport, ChainError> {
    check_chain(snapshot, &SignaturesCheckedAtConnect)
}

/// Walks the main chain of `snapshot` from genesis, checks each block against the indexes,
/// connects it with the consensus rules into a UTXO set rebuilt from nothing, and compares
/// that with the stored UTXO set and the per-address index.
///
/// # Errors
/// [`ChainError::Corrupt`] describing the first difference, or a storage error.
pub fn check_chain(
    snapshot: &Snapshot,
    verifier: &(impl SignatureVerifier + ?Sized),
) -> Result<ConsistencyReport, ChainError> {
    let params = snapshot.params();
    let tip = snapshot.tip()?;
    let mut rebuilt: HashMap<OutPoint, Coin> = HashMap::new();
    let mut expected_prev = BlockHash::ZERO;
    let mut transactions = 0u64;
    for height in 0..=tip.record.height.0 {
        let height = BlockHeight(height);
        let hash = snapshot.hash_at(height)?.ok_or_else(|| {
            ChainError::Corrupt(format!("no main-chain block at height {height}"))
        })?;
        let block = snapshot.block(&hash)?.ok_or_else(|| {
            ChainError::Corrupt(format!(
                "main-chain block {hash} at height {height} has no data"
            ))
        })?;
        if block.compute_hash() != hash {
            return Err(ChainError::Corrupt(format!(
                "the block stored as {hash} at height {height} hashes to {}",
                block.compute_hash()
            )));
        }
        if block.header.prev_hash != expected_prev {
            return Err(ChainError::Corrupt(format!(
                "main chain does not link at height {height}: block {hash} follows {}, not {expected_prev}",
                block.header.prev_hash
            )));
        }
        let record = snapshot.index_record(&hash)?.ok_or_else(|| {
            ChainError::Corrupt(format!("main-chain block {hash} is not in the block index"))
        })?;
        if record.header != block.header || record.height != height {
            return Err(ChainError::Corrupt(format!(
                "the block index's record of {hash} (height {}) disagrees with the block at height {height}",
                record.height
            )));
        }
        let txids = block.compute_txids();
        if powchain_consensus::merkle::compute_merkle_root(&txids) != block.header.merkle_root {
            return Err(ChainError::Corrupt(format!(
                "block {hash} at height {height}: its transactions do not match its Merkle root"
            )));
        }
        expected_prev = hash;
        transactions += block.transactions.len() as u64;
        if height == BlockHeight::GENESIS {
            if hash != params.genesis_hash() {
                return Err(ChainError::Corrupt(format!(
                    "the chain starts at {hash}, not at genesis {}",
                    params.genesis_hash()
                )));
            }
            continue; // genesis outputs are not spendable
        }
        let connection =
            connect_block_transactions(params, &block, &txids, height, &rebuilt, verifier)
                .map_err(|error| {
                    ChainError::Corrupt(format!(
                        "block {hash} at height {height} does not connect to the rebuilt UTXO set: {error} [{}]",
                        error.rule()
                    ))
                })?;
        // Its undo data (checksum and contents) is what a disconnect would put back.
        if snapshot.spent_coins(&hash)?.as_ref() != Some(&connection.spent) {
            return Err(ChainError::Corrupt(format!(
                "block {hash} at height {height}: its undo data is not the coins it spent"
            )));
        }
        for (outpoint, _) in &connection.spent {
            rebuilt.remove(outpoint);
        }
        rebuilt.extend(connection.created);
    }
    if expected_prev != tip.hash {
        return Err(ChainError::Corrupt(
            "height index does not end at the tip".into(),
        ));
    }
    if snapshot.hash_at(tip.record.height.next())?.is_some() {
        return Err(ChainError::Corrupt("height index runs past the tip".into()));
    }
    let rebuilt: BTreeMap<OutPoint, Coin> = rebuilt.into_iter().collect();
    let stored = snapshot.utxo_set()?;
    if let Some(difference) = first_difference(&stored, &rebuilt, params.network) {
        return Err(ChainError::Corrupt(difference));
    }
    snapshot.check_address_index(&rebuilt)?;
    let value = rebuilt
        .values()
        .try_fold(Amount::ZERO, |sum, coin| sum.checked_add(coin.output.value))
        .ok_or_else(|| ChainError::Corrupt("the UTXO set's value overflows".into()))?;
    Ok(ConsistencyReport {
        height: tip.record.height,
        tip: tip.hash,
        blocks: tip.record.height.0 + 1,
        transactions,
        utxo_count: rebuilt.len(),
        value,
    })
}

/// The first way `stored` differs from `rebuilt`, in outpoint order, or `None`.
fn first_difference(
    stored: &BTreeMap<OutPoint, Coin>,
    rebuilt: &BTreeMap<OutPoint, Coin>,
    network: Network,
) -> Option<String> {
    if stored == rebuilt {
        return None;
    }
    let counts = format!("{} stored, {} rebuilt", stored.len(), rebuilt.len());
    let keys = stored.keys().chain(rebuilt.keys());
    let first = keys
        .filter(|outpoint| stored.get(outpoint) != rebuilt.get(outpoint))
        .min()?;
    Some(match (stored.get(first), rebuilt.get(first)) {
        (Some(_), None) => format!(
            "UTXO set differs from a rebuild ({counts}): {first} is stored but spent or never created"
        ),
        (None, Some(_)) => {
            format!("UTXO set differs from a rebuild ({counts}): {first} is missing")
        }
        (Some(stored_coin), Some(rebuilt_coin)) => format!(
            "UTXO set differs from a rebuild ({counts}): {first} is stored as {} to {} at height {}, rebuilt as {} to {} at height {}",
            stored_coin.output.value,
            stored_coin.output.address.to_bech32(network),
            stored_coin.height,
            rebuilt_coin.output.value,
            rebuilt_coin.output.address.to_bech32(network),
            rebuilt_coin.height
        ),
        (None, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::test_address;
    use powchain_consensus::{TxOut, Txid};

    fn coin(value: u64) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::from_units(value).expect("in range"),
                address: test_address(1),
            },
            height: BlockHeight(1),
            is_coinbase: false,
        }
    }

    fn outpoint(byte: u8) -> OutPoint {
        OutPoint {
            txid: Txid([byte; 32]),
            vout: 0,
        }
    }

    #[test]
    fn the_first_difference_names_the_outpoint_and_what_differs() {
        let rebuilt = BTreeMap::from([(outpoint(1), coin(5)), (outpoint(2), coin(7))]);
        assert_eq!(first_difference(&rebuilt, &rebuilt, Network::Regtest), None);
        let mut changed = rebuilt.clone();
        changed.insert(outpoint(2), coin(8));
        let message = first_difference(&changed, &rebuilt, Network::Regtest).expect("differs");
        assert!(message.contains(&outpoint(2).to_string()), "{message}");
        assert!(message.contains("stored as"), "{message}");
        let mut missing = rebuilt.clone();
        missing.remove(&outpoint(1));
        let message = first_difference(&missing, &rebuilt, Network::Regtest).expect("differs");
        assert!(
            message.contains("1 stored, 2 rebuilt") && message.contains("missing"),
            "{message}"
        );
        let mut extra = rebuilt.clone();
        extra.insert(outpoint(0), coin(1));
        let message = first_difference(&extra, &rebuilt, Network::Regtest).expect("differs");
        assert!(message.contains(&outpoint(0).to_string()), "{message}");
    }
}
