//! `ChainReader`: consistent read-only views of the stored chain, for the API and mempool.
//!
//! A [`Snapshot`] is one redb read transaction and the coin cache's layers taken with it
//! under one lock: everything read through it comes from the same committed state, and it
//! never blocks the writer (nor the writer it, beyond the copy of a few pointers).

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, PoisonError, RwLock};

use powchain_consensus::encode::{Decode, Reader};
use powchain_consensus::{
    Address, Amount, Block, BlockHash, BlockHeight, Coin, HEADER_BYTES, OutPoint, Params, TxOut,
    Txid,
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::error::{ChainError, corrupt};
use crate::overlay::{CoinChange, Overlay};
use crate::store::{
    ADDRESS_TXS, ADDRESS_UTXO, AddressCoin, AddressTx, BLOCK_INDEX, BLOCKS, HEIGHTS, HistoryKey,
    IndexRecord, META_TIP, TX_INDEX, TxLocation, UNDO, UTXO, address_range, coin_from_bytes,
    decode_undo, outpoint_from_key, outpoint_key, read_meta_hash, tx_location_from_bytes,
};

/// A stored block's size and transaction count, read without decoding its transactions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlockSummary {
    /// Encoded size in bytes.
    pub size: usize,
    /// How many transactions it holds.
    pub transaction_count: usize,
}

/// A main-chain block with what its transactions spent: its undo data (the coins from
/// before it), and its own transactions for the outputs it created and spent itself. So
/// each input of each of its transactions is described by one read of the block, never
/// by reading the block of each parent.
#[derive(Debug)]
pub struct BlockSpends {
    block: Block,
    spent: HashMap<OutPoint, TxOut>,
    /// Its transactions by id, made at the first input not found in `spent`.
    positions: Option<HashMap<Txid, usize>>,
}

impl BlockSpends {
    /// The block.
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The output `outpoint` names if the block spent it (from before it) or created it;
    /// `None` otherwise.
    pub fn output(&mut self, outpoint: &OutPoint) -> Option<TxOut> {
        if let Some(output) = self.spent.get(outpoint) {
            return Some(*output);
        }
        let transactions = &self.block.transactions;
        let positions = self.positions.get_or_insert_with(|| {
            transactions
                .iter()
                .enumerate()
                .map(|(position, transaction)| (transaction.compute_txid(), position))
                .collect()
        });
        positions
            .get(&outpoint.txid)
            .and_then(|position| transactions.get(*position))
            .and_then(|parent| parent.outputs.get(outpoint.vout as usize).copied())
    }
}

/// Opens read snapshots of a chain's store. Cheap to clone.
#[derive(Clone)]
pub struct ChainReader {
    pub(crate) db: Arc<Database>,
    pub(crate) params: &'static Params,
    pub(crate) overlay: Arc<RwLock<Overlay>>,
}

impl ChainReader {
    /// The network's parameters.
    pub fn params(&self) -> &'static Params {
        self.params
    }

    /// A consistent view of the chain as last committed.
    ///
    /// # Errors
    /// [`ChainError::Storage`].
    pub fn snapshot(&self) -> Result<Snapshot, ChainError> {
        // The writer replaces the layers under this lock together with its commit.
        let layers = self.overlay.read().unwrap_or_else(PoisonError::into_inner);
        Ok(Snapshot {
            transaction: self.db.begin_read()?,
            overlay: layers.clone(),
            params: self.params,
        })
    }
}

/// The tip of the main chain as stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StoredTip {
    /// Its hash.
    pub hash: BlockHash,
    /// Its index record.
    pub record: IndexRecord,
}

/// One consistent read of the chain.
pub struct Snapshot {
    transaction: ReadTransaction,
    /// The changes of the main-chain blocks above the flushed tip, not in the tables.
    overlay: Overlay,
    params: &'static Params,
}

impl Snapshot {
    /// The network's parameters.
    pub fn params(&self) -> &'static Params {
        self.params
    }

    /// The main chain's tip.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn tip(&self) -> Result<StoredTip, ChainError> {
        let hash = read_meta_hash(&self.transaction, META_TIP, "tip")?;
        let record = self
            .index_record(&hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("tip {hash} is not in the block index")))?;
        Ok(StoredTip { hash, record })
    }

    /// The index record of a block, if known.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn index_record(&self, hash: &BlockHash) -> Result<Option<IndexRecord>, ChainError> {
        let table = self.transaction.open_table(BLOCK_INDEX)?;
        table
            .get(hash.0.as_slice())?
            .map(|row| IndexRecord::decode_exact(row.value()).map_err(corrupt("index record")))
            .transpose()
    }

    /// The main-chain block hash at `height`.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn hash_at(&self, height: BlockHeight) -> Result<Option<BlockHash>, ChainError> {
        let table = self.transaction.open_table(HEIGHTS)?;
        table
            .get(height.0)?
            .map(|row| {
                row.value().try_into().map(BlockHash).map_err(|_| {
                    ChainError::Corrupt(format!("height {height} hash is not 32 bytes"))
                })
            })
            .transpose()
    }

    /// A stored block (main chain or not).
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, ChainError> {
        let table = self.transaction.open_table(BLOCKS)?;
        table
            .get(hash.0.as_slice())?
            .map(|row| Block::decode_exact(row.value()).map_err(corrupt("block")))
            .transpose()
    }

    /// A stored block's size and transaction count: its stored length and the count that
    /// follows its header, so a page of blocks costs its headers, not their transactions.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn block_summary(&self, hash: &BlockHash) -> Result<Option<BlockSummary>, ChainError> {
        let table = self.transaction.open_table(BLOCKS)?;
        let Some(row) = table.get(hash.0.as_slice())? else {
            return Ok(None);
        };
        let bytes = row.value();
        let mut reader = Reader::new(bytes);
        let count = reader
            .read_array::<HEADER_BYTES>()
            .and_then(|_| reader.read_varint())
            .map_err(corrupt("block"))?;
        Ok(Some(BlockSummary {
            size: bytes.len(),
            transaction_count: usize::try_from(count).map_err(|_| {
                ChainError::Corrupt(format!("block {hash} counts {count} transactions"))
            })?,
        }))
    }

    /// The coins a main-chain block spent that existed before it (its undo data), with
    /// their outpoints; coins it created and spent itself are not among them. `None` for a
    /// block off the main chain, whose undo data is not kept.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn spent_coins(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<Vec<(OutPoint, Coin)>>, ChainError> {
        let table = self.transaction.open_table(UNDO)?;
        table
            .get(hash.0.as_slice())?
            .map(|row| decode_undo(hash, row.value()))
            .transpose()
    }

    /// A main-chain block with what it spent ([`BlockSpends`]); `None` if it is not
    /// stored. Off the main chain its undo data is not kept, and only outputs it created
    /// are found.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn block_spends(&self, hash: &BlockHash) -> Result<Option<BlockSpends>, ChainError> {
        let Some(block) = self.block(hash)? else {
            return Ok(None);
        };
        let spent = self
            .spent_coins(hash)?
            .unwrap_or_default()
            .into_iter()
            .map(|(outpoint, coin)| (outpoint, coin.output))
            .collect();
        Ok(Some(BlockSpends {
            block,
            spent,
            positions: None,
        }))
    }

    /// True if `hash` is on the main chain.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn is_on_main_chain(&self, hash: &BlockHash) -> Result<Option<IndexRecord>, ChainError> {
        let Some(record) = self.index_record(hash)? else {
            return Ok(None);
        };
        Ok((self.hash_at(record.height)? == Some(*hash)).then_some(record))
    }

    /// An unspent output.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, ChainError> {
        if let Some(cached) = self.overlay.coin(outpoint) {
            return Ok(cached);
        }
        let table = self.transaction.open_table(UTXO)?;
        table
            .get(outpoint_key(outpoint).as_slice())?
            .map(|row| coin_from_bytes(row.value()).map_err(corrupt("coin")))
            .transpose()
    }

    /// The unspent outputs among `outpoints`, as a UTXO view.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn coins<'a>(
        &self,
        outpoints: impl IntoIterator<Item = &'a OutPoint>,
    ) -> Result<HashMap<OutPoint, Coin>, ChainError> {
        let table = self.transaction.open_table(UTXO)?;
        let mut coins = HashMap::new();
        for outpoint in outpoints {
            if let Some(cached) = self.overlay.coin(outpoint) {
                if let Some(coin) = cached {
                    coins.insert(*outpoint, coin);
                }
            } else if let Some(row) = table.get(outpoint_key(outpoint).as_slice())? {
                coins.insert(
                    *outpoint,
                    coin_from_bytes(row.value()).map_err(corrupt("coin"))?,
                );
            }
        }
        Ok(coins)
    }

    /// Where a main-chain transaction is.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, ChainError> {
        if let Some(location) = self.overlay.tx_location(txid) {
            return Ok(Some(location));
        }
        let table = self.transaction.open_table(TX_INDEX)?;
        table
            .get(txid.0.as_slice())?
            .map(|row| tx_location_from_bytes(row.value()).map_err(corrupt("transaction location")))
            .transpose()
    }

    /// The unspent outputs paying `address`, at most `limit` of them.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn address_coins(
        &self,
        address: &Address,
        limit: usize,
    ) -> Result<Vec<AddressCoin>, ChainError> {
        let mut coins = Vec::new();
        if limit > 0 {
            self.visit_address_coins(address, |coin| {
                coins.push(coin);
                if coins.len() < limit {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })?;
        }
        Ok(coins)
    }

    /// Hands `visit` the unspent outputs paying `address` one at a time, in outpoint order,
    /// until it says to stop: however many an address holds, nothing but the one at hand is
    /// in memory.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn visit_address_coins(
        &self,
        address: &Address,
        mut visit: impl FnMut(AddressCoin) -> ControlFlow<()>,
    ) -> Result<(), ChainError> {
        // Two sorted streams merged, the coin cache's changes deciding for a coin both
        // name: only as many rows and changes are read as the visitor takes.
        let mut changes = self.overlay.address_coin_changes(address).peekable();
        let table = self.transaction.open_table(ADDRESS_UTXO)?;
        let (start, end) = address_range(address);
        let mut rows = table.range(start.as_slice()..end.as_slice())?;
        let mut row = next_address_coin(&mut rows)?;
        loop {
            let cached_first = match (&row, changes.peek()) {
                (None, None) => return Ok(()),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((stored, _)), Some((cached, _))) => cached <= stored,
            };
            let flow = if cached_first {
                let Some((outpoint, change)) = changes.next() else {
                    return Ok(());
                };
                if row.as_ref().is_some_and(|(stored, _)| *stored == outpoint) {
                    row = next_address_coin(&mut rows)?;
                }
                match change {
                    Some(coin) => visit(AddressCoin { outpoint, coin }),
                    None => ControlFlow::Continue(()),
                }
            } else if let Some((outpoint, coin)) = row.take() {
                row = next_address_coin(&mut rows)?;
                visit(AddressCoin { outpoint, coin })
            } else {
                ControlFlow::Continue(())
            };
            if flow.is_break() {
                return Ok(());
            }
        }
    }

    /// Main-chain transactions that paid or spent from `address`, newest first, skipping
    /// `skip` and returning at most `limit`.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn address_history(
        &self,
        address: &Address,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<AddressTx>, ChainError> {
        // Unflushed blocks are above every flushed one: their rows come first.
        let cached = self.overlay.address_history(address);
        let skip_stored = skip.saturating_sub(cached.len());
        let mut history: Vec<AddressTx> = cached.into_iter().skip(skip).take(limit).collect();
        let table = self.transaction.open_table(ADDRESS_TXS)?;
        let (start, end) = address_range(address);
        for row in table
            .range(start.as_slice()..end.as_slice())?
            .rev()
            .skip(skip_stored)
            .take(limit - history.len())
        {
            let (key, _) = row?;
            let (_, rest) = split_address_key(key.value())?;
            let mut reader = Reader::new(rest);
            let height = BlockHeight(u64::from_be_bytes(
                reader.read_array().map_err(corrupt("history key"))?,
            ));
            let txid = Txid(reader.read_array().map_err(corrupt("history key"))?);
            history.push(AddressTx { height, txid });
        }
        Ok(history)
    }

    /// The whole UTXO set, in key order (for consistency checks and tests).
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails.
    pub fn utxo_set(&self) -> Result<BTreeMap<OutPoint, Coin>, ChainError> {
        let table = self.transaction.open_table(UTXO)?;
        let mut set = BTreeMap::new();
        for row in table.iter()? {
            let (key, value) = row?;
            set.insert(
                outpoint_from_key(key.value()).map_err(corrupt("utxo key"))?,
                coin_from_bytes(value.value()).map_err(corrupt("coin"))?,
            );
        }
        for (outpoint, change) in self.overlay.net_coin_changes() {
            let consistent = match change {
                CoinChange::Created(coin) => set.insert(*outpoint, *coin).is_none(),
                CoinChange::Spent(coin) => set.remove(outpoint) == Some(*coin),
            };
            if !consistent {
                return Err(ChainError::Corrupt(format!(
                    "the coin cache's change to {outpoint} does not fit the stored UTXO set"
                )));
            }
        }
        Ok(set)
    }

    /// The whole transaction index as [`Snapshot::tx_location`] reads it (the table and
    /// the coin cache's rows), in txid order, for the consistency check. Streamed: only
    /// the coin cache's rows are held, so a table of millions of rows costs no memory.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails, at once or as a row; a row both
    /// in the table and in the coin cache is an error too (txids are unique on the main
    /// chain, and a table row under a cached one would show again when that block is
    /// disconnected).
    pub(crate) fn tx_index_rows(
        &self,
    ) -> Result<impl Iterator<Item = Result<(Txid, TxLocation), ChainError>>, ChainError> {
        let table = self.transaction.open_table(TX_INDEX)?;
        let rows = table.range::<&[u8]>(..)?.map(|row| {
            let (key, value) = row?;
            let txid = Txid(key.value().try_into().map_err(|_| {
                ChainError::Corrupt("a transaction index key is not a txid".into())
            })?);
            let location =
                tx_location_from_bytes(value.value()).map_err(corrupt("transaction location"))?;
            Ok((txid, location))
        });
        Ok(merge_cached_rows(
            rows,
            self.overlay.tx_locations(),
            |txid| {
                format!(
                    "the coin cache and the transaction index table both locate transaction {txid}"
                )
            },
        ))
    }

    /// Every main-chain history row as [`Snapshot::address_history`] reads them (the table
    /// and the coin cache's rows), as (address, height, txid) in that order, for the
    /// consistency check. Streamed as [`Snapshot::tx_index_rows`] is.
    ///
    /// # Errors
    /// [`ChainError`] if the store is damaged or fails, at once or as a row, or a row is
    /// both in the table and in the coin cache.
    pub(crate) fn history_rows(
        &self,
    ) -> Result<impl Iterator<Item = Result<(HistoryKey, ()), ChainError>>, ChainError> {
        let table = self.transaction.open_table(ADDRESS_TXS)?;
        let rows = table.range::<&[u8]>(..)?.map(|row| {
            let (key, _) = row?;
            let mut reader = Reader::new(key.value());
            let address = Address(reader.read_array().map_err(corrupt("history key"))?);
            let height = BlockHeight(u64::from_be_bytes(
                reader.read_array().map_err(corrupt("history key"))?,
            ));
            let txid = Txid(reader.read_array().map_err(corrupt("history key"))?);
            reader.finish().map_err(corrupt("history key"))?;
            Ok(((address, height, txid), ()))
        });
        let cached = self
            .overlay
            .history_rows()
            .into_iter()
            .map(|row| (row, ()))
            .collect();
        let network = self.params.network;
        Ok(merge_cached_rows(
            rows,
            cached,
            move |(address, height, txid)| {
                format!(
                    "the coin cache and the history table both hold transaction {txid} of {} at height {height}",
                    address.to_bech32(network)
                )
            },
        ))
    }

    /// Main-chain blocks whose changes are in the coin cache, not yet in the tables.
    pub fn unflushed_blocks(&self) -> usize {
        self.overlay.len()
    }

    /// Recomputes the UTXO set by connecting the main chain from genesis (trusting the
    /// signatures the chain checked when it connected each block) and compares it with the
    /// stored one, along with the height index, the per-address index, the transaction
    /// index and the per-address history: what `crate::check::check_chain` does.
    ///
    /// # Errors
    /// [`ChainError::Corrupt`] describing the first difference.
    pub fn check_consistency(&self) -> Result<ConsistencyReport, ChainError> {
        crate::check::check_storage(self)
    }

    /// Checks the per-address index (tables and coin cache) holds exactly the coins of
    /// `rebuilt`, a UTXO set rebuilt from the main chain.
    pub(crate) fn check_address_index(
        &self,
        rebuilt: &BTreeMap<OutPoint, Coin>,
    ) -> Result<(), ChainError> {
        let changes: HashMap<OutPoint, CoinChange> = self
            .overlay
            .net_coin_changes()
            .into_iter()
            .map(|(outpoint, change)| (*outpoint, *change))
            .collect();
        let address_table = self.transaction.open_table(ADDRESS_UTXO)?;
        let mut address_rows = 0usize;
        for row in address_table.iter()? {
            let (key, value) = row?;
            let (key_address, key_outpoint) = split_address_key(key.value())?;
            let outpoint = outpoint_from_key(key_outpoint).map_err(corrupt("address coin key"))?;
            let coin = coin_from_bytes(value.value()).map_err(corrupt("address coin"))?;
            let stale = match changes.get(&outpoint) {
                Some(CoinChange::Spent(spent)) if *spent == coin => continue,
                Some(_) => true,
                None => rebuilt.get(&outpoint) != Some(&coin),
            };
            if stale || key_address != coin.output.address.0 {
                return Err(ChainError::Corrupt(format!(
                    "address index holds a stale entry {outpoint}"
                )));
            }
            address_rows += 1;
        }
        for (outpoint, change) in &changes {
            if let CoinChange::Created(coin) = change {
                if rebuilt.get(outpoint) != Some(coin) {
                    return Err(ChainError::Corrupt(format!(
                        "the coin cache holds a stale coin {outpoint}"
                    )));
                }
                address_rows += 1;
            }
        }
        if address_rows != rebuilt.len() {
            return Err(ChainError::Corrupt(format!(
                "address index has {address_rows} entries, the UTXO set {}",
                rebuilt.len()
            )));
        }
        Ok(())
    }
}

/// What a consistency check covered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConsistencyReport {
    /// Height of the tip checked.
    pub height: BlockHeight,
    /// The tip checked.
    pub tip: BlockHash,
    /// Main-chain blocks checked, genesis included.
    pub blocks: u64,
    /// Transactions in them.
    pub transactions: u64,
    /// Unspent outputs, equal in store and rebuild.
    pub utxo_count: usize,
    /// Their total value.
    pub value: Amount,
    /// Rows of the transaction index (every main-chain transaction but genesis's), equal
    /// in store and rebuild.
    pub located_transactions: usize,
    /// Rows of the per-address history, equal in store and rebuild.
    pub history_rows: usize,
}

/// Splits a key of the address tables into its 32-byte address and the rest; a shorter
/// key is damaged data, not a panic.
fn split_address_key(key: &[u8]) -> Result<(&[u8], &[u8]), ChainError> {
    if key.len() < 32 {
        return Err(ChainError::Corrupt(format!(
            "an address index key of {} bytes (at least 32 expected)",
            key.len()
        )));
    }
    Ok(key.split_at(32))
}

/// A table's rows and the coin cache's rows of the same table, both in key order, merged
/// into one stream in key order: the rows as readers see them. A key in both is the
/// error `overlap` describes, as the UTXO set's reading treats a cached coin that does
/// not fit the table.
fn merge_cached_rows<K: Ord, V>(
    mut table: impl Iterator<Item = Result<(K, V), ChainError>>,
    cached: Vec<(K, V)>,
    overlap: impl Fn(&K) -> String,
) -> impl Iterator<Item = Result<(K, V), ChainError>> {
    let mut cached = cached.into_iter().peekable();
    let mut stored: Option<(K, V)> = None;
    let mut failed = false;
    std::iter::from_fn(move || {
        // The first error ends the stream: what follows a damaged row is not read.
        if failed {
            return None;
        }
        if stored.is_none() {
            match table.next() {
                Some(Ok(row)) => stored = Some(row),
                Some(Err(error)) => {
                    failed = true;
                    return Some(Err(error));
                }
                None => {}
            }
        }
        let cached_first = match (&stored, cached.peek()) {
            (None, None) => return None,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some((stored_key, _)), Some((cached_key, _))) => match cached_key.cmp(stored_key) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => {
                    failed = true;
                    return Some(Err(ChainError::Corrupt(overlap(cached_key))));
                }
            },
        };
        if cached_first {
            cached.next().map(Ok)
        } else {
            stored.take().map(Ok)
        }
    })
}

/// The next row of an address's coins in the table, decoded.
fn next_address_coin(
    rows: &mut redb::Range<'_, &'static [u8], &'static [u8]>,
) -> Result<Option<(OutPoint, Coin)>, ChainError> {
    let Some(row) = rows.next() else {
        return Ok(None);
    };
    let (key, value) = row?;
    let (_, key_outpoint) = split_address_key(key.value())?;
    let outpoint = outpoint_from_key(key_outpoint).map_err(corrupt("address coin key"))?;
    let coin = coin_from_bytes(value.value()).map_err(corrupt("address coin"))?;
    Ok(Some((outpoint, coin)))
}
