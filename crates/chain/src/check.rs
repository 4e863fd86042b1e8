//! Checking a stored chain against a rebuild from scratch: what `powchain check` runs, and
//! what the tests' consistency checks run.
//!
//! ```text
//!   Snapshot ──▶ main chain from genesis, height by height:
//!                 block stored? its hash the height index's? links to its parent? its
//!                 header the block index's? its Merkle root the header's?
//!                 ──▶ connect_block_transactions (powchain-consensus) into a fresh UTXO set
//!                 ──▶ its transactions' locations and history rows, kept aside
//!            ──▶ compare with the stored UTXO set (count, then each coin), the per-address
//!                index, the transaction index and the per-address history
//!                ──▶ ConsistencyReport, or the first difference
//! ```
//!
//! Pure over a [`Snapshot`]: it reads, never writes. Signatures go through the verifier
//! given: [`check_store`] checks every one again; the tests' `check_consistency` trusts
//! those the chain already checked when it connected the blocks (storage is what it
//! checks, not the rules).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use powchain_consensus::signature::{ParallelVerifier, SignatureCheck, SignatureVerifier};
use powchain_consensus::utxo::created_outputs;
use powchain_consensus::validation::connect_block_transactions;
use powchain_consensus::{
    Address, Amount, Block, BlockHash, BlockHeight, Coin, Network, OutPoint, Txid,
};

use crate::error::{ChainError, panic_message};
use crate::reader::{ConsistencyReport, Snapshot};
use crate::state::{ChainOptions, ChainState};
use crate::store::{HistoryKey, TxLocation};

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
/// verifying every signature again on `threads` threads, and compares it, and the indexes
/// rebuilt with it, with the stored ones.
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
/// that with the stored UTXO set and the per-address index, and the main chain's
/// transactions with the transaction index and the per-address history.
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
    // The rebuilt transaction index and history, held whole and sorted once at the end:
    // 68 bytes a transaction and 72 a history row (about two a payment), so some 210 MB
    // for a million payments, up to twice that while the vectors grow. The stored rows
    // they are compared with are streamed, never held.
    let mut tx_index: Vec<(Txid, TxLocation)> = Vec::new();
    let mut history: Vec<(HistoryKey, ())> = Vec::new();
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
        for (position, txid) in txids.iter().enumerate() {
            let position = u32::try_from(position).map_err(|_| {
                ChainError::Corrupt(format!("block {hash} holds over 2^32 transactions"))
            })?;
            let location = TxLocation {
                block_hash: hash,
                position,
            };
            tx_index.push((*txid, location));
        }
        history.extend(
            history_rows(&block, &txids, height, &rebuilt)
                .into_iter()
                .map(|row| (row, ())),
        );
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
    let network = params.network;
    let stored = snapshot.utxo_set()?;
    let stored_coins = stored.iter().map(|(outpoint, coin)| Ok((*outpoint, *coin)));
    let rebuilt_coins = rebuilt.iter().map(|(outpoint, coin)| (*outpoint, *coin));
    if let Some(difference) = first_difference(&COINS, stored_coins, rebuilt_coins, network)? {
        return Err(ChainError::Corrupt(difference));
    }
    // The stored copy is done with: its memory goes before the indexes are read.
    drop(stored);
    snapshot.check_address_index(&rebuilt)?;
    // Txids are unique on the main chain (a coinbase commits to its height, and any other
    // transaction spends a coin once), so the sorted rows have one per key, as the table.
    let (located_transactions, history_rows) = (tx_index.len(), history.len());
    tx_index.sort_unstable_by_key(|(txid, _)| *txid);
    let stored_locations = snapshot.tx_index_rows()?;
    if let Some(difference) = first_difference(&LOCATIONS, stored_locations, tx_index, network)? {
        return Err(ChainError::Corrupt(difference));
    }
    history.sort_unstable_by_key(|(row, ())| *row);
    let stored_history = snapshot.history_rows()?;
    if let Some(difference) = first_difference(&HISTORY, stored_history, history, network)? {
        return Err(ChainError::Corrupt(difference));
    }
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
        located_transactions,
        history_rows,
    })
}

/// The history rows of `block` at `height`: each transaction under every address it pays
/// or spends from, as (address, height, txid). `utxo` is the rebuilt UTXO set before the
/// block, holding every coin the block spends that it did not create. Worked out here
/// from the block and the rebuild, not with the functions that write the rows
/// (`overlay.rs`), so a regression in those is a difference rather than a copy of it.
fn history_rows(
    block: &Block,
    txids: &[Txid],
    height: BlockHeight,
    utxo: &HashMap<OutPoint, Coin>,
) -> Vec<HistoryKey> {
    let mut made_in_block: HashMap<OutPoint, Address> = HashMap::new();
    let mut rows = Vec::new();
    for (transaction, txid) in block.transactions.iter().zip(txids) {
        let mut addresses = BTreeSet::new();
        for input in transaction.spends() {
            // The block connected, so every input is one or the other.
            let spent = made_in_block
                .get(&input.prevout)
                .copied()
                .or_else(|| utxo.get(&input.prevout).map(|coin| coin.output.address));
            addresses.extend(spent);
        }
        for (outpoint, output) in created_outputs(transaction, *txid) {
            addresses.insert(output.address);
            made_in_block.insert(outpoint, output.address);
        }
        rows.extend(
            addresses
                .into_iter()
                .map(|address| (address, height, *txid)),
        );
    }
    rows
}

/// How a difference between a stored table and its rebuild is told: the table, what a
/// row stored but not rebuilt is, and a row's key and value in words.
struct Compared<K, V> {
    table: &'static str,
    not_rebuilt: &'static str,
    key: fn(&K, Network) -> String,
    value: fn(&V, Network) -> String,
}

const COINS: Compared<OutPoint, Coin> = Compared {
    table: "UTXO set",
    not_rebuilt: "spent or never created",
    key: |outpoint, _| outpoint.to_string(),
    value: |coin, network| {
        format!(
            "{} to {} at height {}",
            coin.output.value,
            coin.output.address.to_bech32(network),
            coin.height
        )
    },
};

const LOCATIONS: Compared<Txid, TxLocation> = Compared {
    table: "transaction index",
    not_rebuilt: "in no main-chain block",
    key: |txid, _| format!("transaction {txid}"),
    value: |location, _| {
        format!(
            "in block {} at position {}",
            location.block_hash, location.position
        )
    },
};

const HISTORY: Compared<HistoryKey, ()> = Compared {
    table: "address history",
    not_rebuilt: "not a main-chain transaction paying or spending from that address at that height",
    key: |(address, height, txid), network| {
        format!(
            "transaction {txid} of {} at height {height}",
            address.to_bech32(network)
        )
    },
    value: |(), _| String::new(),
};

/// The first way the `stored` rows differ from the `rebuilt` ones, both in key order, or
/// `None`; described as `compared` says. Both are read to their end (the message counts
/// them), one row at a time: the stored rows may be a table streamed from the store.
///
/// # Errors
/// The first error among the stored rows.
fn first_difference<K: Ord, V: PartialEq>(
    compared: &Compared<K, V>,
    stored: impl IntoIterator<Item = Result<(K, V), ChainError>>,
    rebuilt: impl IntoIterator<Item = (K, V)>,
    network: Network,
) -> Result<Option<String>, ChainError> {
    let mut stored = stored.into_iter();
    let mut rebuilt = rebuilt.into_iter();
    let mut next_stored = stored.next().transpose()?;
    let mut next_rebuilt = rebuilt.next();
    let (mut stored_count, mut rebuilt_count) = (0usize, 0usize);
    let mut first: Option<(K, Option<V>, Option<V>)> = None;
    loop {
        let order = match (&next_stored, &next_rebuilt) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((stored_key, _)), Some((rebuilt_key, _))) => stored_key.cmp(rebuilt_key),
        };
        let stored_row = if order.is_le() {
            next_stored.take()
        } else {
            None
        };
        let rebuilt_row = if order.is_ge() {
            next_rebuilt.take()
        } else {
            None
        };
        if stored_row.is_some() {
            stored_count += 1;
            next_stored = stored.next().transpose()?;
        }
        if rebuilt_row.is_some() {
            rebuilt_count += 1;
            next_rebuilt = rebuilt.next();
        }
        if first.is_some() {
            continue;
        }
        first = match (stored_row, rebuilt_row) {
            (Some((_, stored_value)), Some((_, rebuilt_value)))
                if stored_value == rebuilt_value =>
            {
                None
            }
            (Some((key, stored_value)), rebuilt_row) => {
                Some((key, Some(stored_value), rebuilt_row.map(|(_, value)| value)))
            }
            (None, Some((key, rebuilt_value))) => Some((key, None, Some(rebuilt_value))),
            (None, None) => None,
        };
    }
    let Some((key, stored_value, rebuilt_value)) = first else {
        return Ok(None);
    };
    let table = compared.table;
    let key = (compared.key)(&key, network);
    let counts = format!("{stored_count} stored, {rebuilt_count} rebuilt");
    let what = match (stored_value, rebuilt_value) {
        (Some(_), None) => format!("{key} is stored but {}", compared.not_rebuilt),
        (None, Some(_)) => format!("{key} is missing"),
        (Some(stored_value), Some(rebuilt_value)) => format!(
            "{key} is stored as {}, rebuilt as {}",
            (compared.value)(&stored_value, network),
            (compared.value)(&rebuilt_value, network)
        ),
        (None, None) => return Ok(None),
    };
    Ok(Some(format!(
        "{table} differs from a rebuild ({counts}): {what}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use powchain_consensus::TxOut;
    use powchain_consensus::testkit::{TestChain, test_address, test_key};

    use crate::store::{ADDRESS_TXS, TX_INDEX, address_tx_key, tx_location_bytes};

    const NOW_MS: u64 = 1_795_564_800_000 + 1_000_000_000_000;

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

    /// The first difference between two sets of coins, as the check tells it.
    fn coin_difference(
        stored: &BTreeMap<OutPoint, Coin>,
        rebuilt: &BTreeMap<OutPoint, Coin>,
    ) -> Option<String> {
        first_difference(
            &COINS,
            stored.iter().map(|(outpoint, coin)| Ok((*outpoint, *coin))),
            rebuilt.iter().map(|(outpoint, coin)| (*outpoint, *coin)),
            Network::Regtest,
        )
        .expect("no stored row fails")
    }

    #[test]
    fn the_first_difference_names_the_outpoint_and_what_differs() {
        let rebuilt = BTreeMap::from([(outpoint(1), coin(5)), (outpoint(2), coin(7))]);
        assert_eq!(coin_difference(&rebuilt, &rebuilt), None);
        let mut changed = rebuilt.clone();
        changed.insert(outpoint(2), coin(8));
        let message = coin_difference(&changed, &rebuilt).expect("differs");
        assert!(message.contains(&outpoint(2).to_string()), "{message}");
        assert!(message.contains("stored as"), "{message}");
        let mut missing = rebuilt.clone();
        missing.remove(&outpoint(1));
        let message = coin_difference(&missing, &rebuilt).expect("differs");
        assert!(
            message.contains("1 stored, 2 rebuilt") && message.contains("missing"),
            "{message}"
        );
        let mut extra = rebuilt.clone();
        extra.insert(outpoint(0), coin(1));
        let message = coin_difference(&extra, &rebuilt).expect("differs");
        assert!(message.contains(&outpoint(0).to_string()), "{message}");
    }

    /// A store whose main chain holds a payment from the miner's address
    /// (`test_address(1)`) to `test_address(2)`, written to the tables, and two empty blocks
    /// above it left in the coin cache, as a node killed after its last sync leaves them:
    /// the check reads their rows from the cache rebuilt at open. Returns the test chain
    /// and the payment's txid.
    fn store_with_a_payment_and_unflushed_blocks(path: &Path) -> (TestChain, Txid) {
        let mut main = TestChain::regtest_with_mature_coins(1);
        let (outpoint, coin) = main.mature_coin(0);
        let fee = Amount::from_units(1_000).expect("in range");
        let payment = main.spend(
            &[outpoint],
            vec![TxOut {
                value: coin.output.value.checked_sub(fee).expect("pays more"),
                address: test_address(2),
            }],
            &[test_key(1)],
            &HashMap::new(),
        );
        let txid = payment.compute_txid();
        let block = main.build(vec![payment], fee);
        main.push(block).expect("valid");
        let flushed = main.blocks.len();
        main.mine_empty(2);
        let mut chain = ChainState::open(path, Network::Regtest, ChainOptions::default())
            .expect("the store opens");
        for block in &main.blocks[1..flushed] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        chain.flush().expect("flushed");
        for block in &main.blocks[flushed..] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        assert_eq!(chain.unflushed_blocks(), 2);
        chain.close_leaving_cache_unflushed().expect("closes");
        (main, txid)
    }

    /// A copy of the store at `healthy`, in `dir`, with `damage` written into it as damage
    /// on disk or a bug of ours would leave it. Each check runs on a copy: closing the
    /// chain it opened flushes the coin cache, and the next would find nothing unflushed.
    fn damaged_copy(
        healthy: &Path,
        dir: &Path,
        damage: impl FnOnce(&redb::WriteTransaction),
    ) -> PathBuf {
        let path = dir.join("chain.redb");
        std::fs::copy(healthy, &path).expect("copy the store");
        let db = redb::Database::open(&path).expect("open the copy");
        let write = db.begin_write().expect("a write");
        damage(&write);
        write.commit().expect("committed");
        path
    }

    /// What `powchain check` says of `path`: the difference it found.
    fn difference(path: &Path) -> String {
        match check_store(path, Network::Regtest, 1) {
            Err(ChainError::Corrupt(difference)) => difference,
            other => panic!("expected a difference, got {other:?}"),
        }
    }

    #[test]
    fn check_names_a_moved_missing_stale_or_shadowed_transaction_index_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let healthy = dir.path().join("chain.redb");
        let (main, txid) = store_with_a_payment_and_unflushed_blocks(&healthy);
        let copy = tempfile::tempdir().expect("temp dir");
        let undamaged = damaged_copy(&healthy, copy.path(), |_| {});
        let report = check_store(&undamaged, Network::Regtest, 1).expect("a healthy store passes");
        assert_eq!(report.tip, main.tip().compute_hash());
        // Genesis is not indexed; every other block's transactions are.
        let rows: usize = main.blocks[1..]
            .iter()
            .map(|block| block.transactions.len())
            .sum();
        let block_hash = main.blocks[main.blocks.len() - 3].compute_hash();
        let moved = TxLocation {
            block_hash,
            position: 0,
        };
        let stale = Txid([0x77; 32]);
        let unflushed = main.tip().transactions[0].compute_txid();
        let somewhere = tx_location_bytes(&moved);
        type Damage = Box<dyn FnOnce(&redb::WriteTransaction)>;
        let insert = |txid: Txid| -> Damage {
            Box::new(move |write| {
                let mut table = write.open_table(TX_INDEX).expect("tx_index");
                table
                    .insert(txid.0.as_slice(), somewhere.as_slice())
                    .expect("written");
            })
        };
        let remove = |txid: Txid| -> Damage {
            Box::new(move |write| {
                let mut table = write.open_table(TX_INDEX).expect("tx_index");
                table.remove(txid.0.as_slice()).expect("removed");
            })
        };
        let table = "transaction index differs from a rebuild";
        let cases: [(&str, Damage, String); 4] = [
            (
                "moved",
                insert(txid),
                format!(
                    "{table} ({rows} stored, {rows} rebuilt): transaction {txid} is stored as in \
                     block {block_hash} at position 0, rebuilt as in block {block_hash} at position 1"
                ),
            ),
            (
                "deleted",
                remove(txid),
                format!(
                    "{table} ({} stored, {rows} rebuilt): transaction {txid} is missing",
                    rows - 1
                ),
            ),
            (
                "left behind by a disconnect",
                insert(stale),
                format!(
                    "{table} ({} stored, {rows} rebuilt): transaction {stale} is stored but in no \
                     main-chain block",
                    rows + 1
                ),
            ),
            (
                "under an unflushed block's row",
                insert(unflushed),
                format!(
                    "the coin cache and the transaction index table both locate transaction {unflushed}"
                ),
            ),
        ];
        for (case, damage, expected) in cases {
            let copy = tempfile::tempdir().expect("temp dir");
            let path = damaged_copy(&healthy, copy.path(), damage);
            assert_eq!(difference(&path), expected, "{case}");
        }
    }

    #[test]
    fn check_names_a_missing_stale_or_shadowed_address_history_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let healthy = dir.path().join("chain.redb");
        let (main, txid) = store_with_a_payment_and_unflushed_blocks(&healthy);
        let copy = tempfile::tempdir().expect("temp dir");
        let undamaged = damaged_copy(&healthy, copy.path(), |_| {});
        check_store(&undamaged, Network::Regtest, 1).expect("a healthy store passes");
        // A row for each block's coinbase (one address), and the payment's two: the address
        // it pays and the one it spends from.
        let rows = main.blocks.len() - 1 + 2;
        let height = BlockHeight(main.blocks.len() as u64 - 3);
        let (payer, payee) = (test_address(1), test_address(2));
        let tip = main.tip().transactions[0].compute_txid();
        let tip_height = main.height();
        type Damage = Box<dyn FnOnce(&redb::WriteTransaction)>;
        let insert = |address: Address, height: BlockHeight, txid: Txid| -> Damage {
            Box::new(move |write| {
                let mut table = write.open_table(ADDRESS_TXS).expect("address_txs");
                let key = address_tx_key(&address, height, &txid);
                table
                    .insert(key.as_slice(), [].as_slice())
                    .expect("written");
            })
        };
        let remove = |address: Address, height: BlockHeight, txid: Txid| -> Damage {
            Box::new(move |write| {
                let mut table = write.open_table(ADDRESS_TXS).expect("address_txs");
                let key = address_tx_key(&address, height, &txid);
                assert!(table.remove(key.as_slice()).expect("removed").is_some());
            })
        };
        let bech32 = |address: Address| address.to_bech32(Network::Regtest);
        let table = "address history differs from a rebuild";
        let cases: [(&str, Damage, String); 3] = [
            (
                "the spender's row deleted",
                remove(payer, height, txid),
                format!(
                    "{table} ({} stored, {rows} rebuilt): transaction {txid} of {} at height \
                     {height} is missing",
                    rows - 1,
                    bech32(payer)
                ),
            ),
            (
                "a row at another height",
                insert(payee, BlockHeight(height.0 - 1), txid),
                format!(
                    "{table} ({} stored, {rows} rebuilt): transaction {txid} of {} at height {} \
                     is stored but not a main-chain transaction paying or spending from that \
                     address at that height",
                    rows + 1,
                    bech32(payee),
                    height.0 - 1
                ),
            ),
            (
                "under an unflushed block's row",
                insert(payer, tip_height, tip),
                format!(
                    "the coin cache and the history table both hold transaction {tip} of {} at \
                     height {tip_height}",
                    bech32(payer)
                ),
            ),
        ];
        for (case, damage, expected) in cases {
            let copy = tempfile::tempdir().expect("temp dir");
            let path = damaged_copy(&healthy, copy.path(), damage);
            assert_eq!(difference(&path), expected, "{case}");
        }
    }
}
