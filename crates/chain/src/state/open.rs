//! Opening a store: create it with genesis or check it is this network's, upgrade an old
//! schema, read the block index, and rebuild the coin cache of the unflushed blocks.
//!
//! ```text
//!   open ──▶ initialise (genesis, or network + genesis + schema checks, schema upgrade)
//!        ──▶ load_index (records + tip ──▶ BlockIndex) ──▶ load (chain data, candidates)
//!        ──▶ replay_unflushed (layers of the blocks above the flushed tip)
//!        ──▶ activate_best_chain (finish a reorganisation a crash interrupted)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::signature::ParallelVerifier;
use powchain_consensus::{Block, BlockHash, BlockHeight, Network, Params};
use redb::{Database, ReadableDatabase, ReadableTable};
use tracing::{info, warn};

use super::{ChainOptions, ChainState};
use crate::error::{ChainError, corrupt, panic_message};
use crate::index::{BlockIndex, BrokenMainChain, IndexBuilder};
use crate::memory_backend::SparseMemoryBackend;
use crate::orphan::OrphanPool;
use crate::overlay::{BlockChanges, Overlay};
use crate::store::{
    ADDRESS_TXS, ADDRESS_UTXO, BLOCK_INDEX, BLOCKS, BlockStatus, HEIGHTS, IndexRecord, META,
    META_FLUSHED, META_GENESIS, META_NETWORK, META_SCHEMA, META_TIP, SCHEMA_VERSION,
    SCHEMA_WITHOUT_FLUSHED_TIP, SCHEMA_WITHOUT_UNDO_CHECKSUMS, TX_INDEX, UNDO, UTXO, decode_undo,
    undo_with_checksum,
};
use crate::store::{hash_from_row, read_meta_hash};

impl ChainState {
    /// Opens the chain stored at `path` (a file), creating it with the genesis block of
    /// `network` if it does not exist.
    ///
    /// Every failure of the storage engine while opening and loading, a panic inside it
    /// included (redb panics on some damaged pages), comes back as an error naming the
    /// file.
    ///
    /// # Errors
    /// [`ChainError::ForeignDataDir`] for another network's store, [`ChainError::InUse`]
    /// if another process has it open, [`ChainError::Damaged`] for one that cannot be read
    /// or does not hold what this code wrote.
    pub fn open(
        path: &Path,
        network: Network,
        options: ChainOptions,
    ) -> Result<ChainState, ChainError> {
        // Nothing of a state that panicked is used afterwards: it is dropped unseen.
        match panic::catch_unwind(AssertUnwindSafe(|| {
            Self::open_unguarded(path, network, options)
        })) {
            Ok(opened) => opened.map_err(|error| error.at_open(path)),
            Err(payload) => Err(ChainError::Damaged {
                path: path.to_path_buf(),
                detail: format!("the storage engine panicked: {}", panic_message(&*payload)),
            }),
        }
    }

    fn open_unguarded(
        path: &Path,
        network: Network,
        options: ChainOptions,
    ) -> Result<ChainState, ChainError> {
        let params = network.params();
        let mut builder = Database::builder();
        builder.set_cache_size(options.cache_bytes);
        let db = if options.in_memory {
            builder.create_with_backend(SparseMemoryBackend::new())?
        } else {
            builder.create(path)?
        };
        Self::initialise(&db, params, path)?;
        let index = Self::load_index(&db, params)?;
        let verifier = options.verifier.clone().unwrap_or_else(|| {
            Arc::new(ParallelVerifier {
                threads: options.signature_threads.max(1),
            })
        });
        let mut state = ChainState {
            params,
            db: Arc::new(db),
            index,
            waiting_for_parent: HashMap::new(),
            candidates: BTreeSet::new(),
            orphans: OrphanPool::default(),
            verifier,
            durability: options.durability,
            overlay: Overlay::default(),
            shared_overlay: Arc::new(RwLock::new(Overlay::default())),
            coin_cache_bytes: options.coin_cache_bytes,
            coin_cache_blocks: options.coin_cache_blocks,
            unsynced_commits: 0,
            first_deferred_ms: None,
            syncs: 0,
            events: Vec::new(),
            path: path.to_path_buf(),
            broken: None,

            #[cfg(test)]
            panic_at_next_write: false,
            #[cfg(test)]
            fail_next_flush: false,
        };
        state.load()?;
        // A crash in the middle of a reorganisation leaves a lighter tip than the best
        // stored branch; finish the switch now.
        let activated = state
            .flush_if_over_budget()
            .and_then(|()| state.activate_best_chain(None));
        state.sync_store(true)?;
        activated?;
        state.events.clear();
        Ok(state)
    }

    pub(super) fn initialise(
        db: &Database,
        params: &'static Params,
        path: &Path,
    ) -> Result<(), ChainError> {
        let write = db.begin_write()?;
        {
            let mut meta = write.open_table(META)?;
            let stored_network = meta.get(META_NETWORK)?.map(|row| row.value().to_vec());
            match stored_network {
                Some(name) => {
                    let found = String::from_utf8_lossy(&name).into_owned();
                    let genesis = meta.get(META_GENESIS)?.map(|row| row.value().to_vec());
                    if found != params.network.name()
                        || genesis.as_deref() != Some(params.genesis_hash().0.as_slice())
                    {
                        // Each network beside its own genesis: the stored one as stored.
                        let stored_genesis = genesis
                            .as_deref()
                            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                            .map_or_else(
                                || "unknown".to_owned(),
                                |bytes| BlockHash(bytes).to_string(),
                            );
                        return Err(ChainError::ForeignDataDir {
                            path: path.to_path_buf(),
                            expected: format!(
                                "{} (genesis {})",
                                params.network,
                                params.genesis_hash()
                            ),
                            found: format!("{found} (genesis {stored_genesis})"),
                        });
                    }
                    let recorded = meta.get(META_SCHEMA)?.map(|row| row.value().to_vec());
                    let schema = recorded
                        .as_deref()
                        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                        .map(u64::from_le_bytes);
                    let mut upgraded = schema;
                    if upgraded == Some(SCHEMA_WITHOUT_FLUSHED_TIP) {
                        // No build of schema 1 recorded a flushed tip: one there means the
                        // schema number is damaged (3 is a bit away from 1), and taking the
                        // tip as flushed would drop the unflushed blocks' coins.
                        if meta.get(META_FLUSHED)?.is_some() {
                            return Err(ChainError::Corrupt(
                                "the store says schema 1 but records a flushed tip".into(),
                            ));
                        }
                        // Written block by block: the tables are complete at the tip.
                        let tip = meta
                            .get(META_TIP)?
                            .ok_or_else(|| ChainError::Corrupt("no tip recorded".into()))?
                            .value()
                            .to_vec();
                        meta.insert(META_FLUSHED, tip.as_slice())?;
                        upgraded = Some(SCHEMA_WITHOUT_UNDO_CHECKSUMS);
                    }
                    if upgraded == Some(SCHEMA_WITHOUT_UNDO_CHECKSUMS) {
                        add_undo_checksums(&write)?;
                        upgraded = Some(SCHEMA_VERSION);
                    }
                    if upgraded != Some(SCHEMA_VERSION) {
                        return Err(ChainError::Corrupt(format!(
                            "unknown store schema {recorded:?}, this build writes {SCHEMA_VERSION}"
                        )));
                    }
                    if let Some(from) = schema.filter(|from| *from != SCHEMA_VERSION) {
                        meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
                        info!(from, to = SCHEMA_VERSION, "upgraded the store's schema");
                    }
                }
                None => {
                    let genesis = params.genesis();
                    let hash = params.genesis_hash();
                    let record = IndexRecord::genesis(params).ok_or_else(|| {
                        ChainError::Corrupt(format!(
                            "genesis bits {} are invalid",
                            genesis.header.bits
                        ))
                    })?;
                    meta.insert(META_NETWORK, params.network.name().as_bytes())?;
                    meta.insert(META_GENESIS, hash.0.as_slice())?;
                    meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert(META_TIP, hash.0.as_slice())?;
                    meta.insert(META_FLUSHED, hash.0.as_slice())?;
                    write
                        .open_table(BLOCKS)?
                        .insert(hash.0.as_slice(), genesis.encode_to_vec().as_slice())?;
                    write
                        .open_table(BLOCK_INDEX)?
                        .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
                    write.open_table(HEIGHTS)?.insert(0, hash.0.as_slice())?;
                    info!(network = %params.network, genesis = %hash, "created a new chain");
                }
            }
            // Create every table so readers never meet a missing one.
            write.open_table(UTXO)?;
            write.open_table(UNDO)?;
            write.open_table(TX_INDEX)?;
            write.open_table(ADDRESS_UTXO)?;
            write.open_table(ADDRESS_TXS)?;
        }
        write.commit()?;
        Ok(())
    }

    /// Reads the block index and the tip, and rebuilds the main chain and skip pointers.
    pub(super) fn load_index(
        db: &Database,
        params: &'static Params,
    ) -> Result<BlockIndex, ChainError> {
        let read = db.begin_read()?;
        let table = read.open_table(BLOCK_INDEX)?;
        let mut builder = IndexBuilder::reading_a_store(params.genesis_hash());
        for row in table.iter()? {
            let (key, value) = row?;
            let hash = hash_from_row(key.value(), "block index key")?;
            let record =
                IndexRecord::decode_exact(value.value()).map_err(corrupt("index record"))?;
            builder.add(hash, record);
        }
        let tip = read_meta_hash(&read, META_TIP, "tip")?;
        let index = builder.finish(tip).map_err(|broken| match broken {
            BrokenMainChain::MissingBlock(hash) => {
                ChainError::Corrupt(format!("main-chain block {hash} missing from the index"))
            }
            BrokenMainChain::WrongGenesis => {
                ChainError::Corrupt("the main chain does not start at genesis".into())
            }
        })?;
        if index.damaged_records() > 0 {
            warn!(
                damaged = index.damaged_records(),
                "block index records read back damaged were left out or repaired"
            );
        }
        let tip_height = index.tip_height().0;
        let stored_at_tip = read
            .open_table(HEIGHTS)?
            .get(tip_height)?
            .map(|row| row.value().to_vec());
        if stored_at_tip.as_deref() != Some(tip.0.as_slice()) {
            return Err(ChainError::Corrupt(format!(
                "height index disagrees with the tip at height {tip_height}"
            )));
        }
        Ok(index)
    }

    /// Which stored blocks have their ancestors' data (candidates for the main chain), and
    /// the coin cache of the unflushed blocks.
    pub(super) fn load(&mut self) -> Result<(), ChainError> {
        let read = self.db.begin_read()?;
        // Which stored blocks have all their ancestors' data: parents before children.
        for (_, hash) in self.index.by_height() {
            let record = self.index.record(&hash);
            if record.status == BlockStatus::DataStored {
                if record.height == BlockHeight::GENESIS
                    || self.index.has_chain_data(&record.header.prev_hash)
                {
                    self.index.set_chain_data(&hash, true);
                } else {
                    self.waiting_for_parent
                        .entry(record.header.prev_hash)
                        .or_default()
                        .push(hash);
                }
            }
        }
        self.rebuild_candidates();
        self.replay_unflushed(&read)?;
        info!(
            height = self.index.tip_height().0,
            tip = %self.index.tip(),
            headers = self.index.len(),
            unflushed = self.overlay.len(),
            "opened the chain"
        );
        Ok(())
    }

    /// Rebuilds the coin cache's layers of the main-chain blocks above the flushed tip
    /// from their data and undo data.
    pub(super) fn replay_unflushed(
        &mut self,
        read: &redb::ReadTransaction,
    ) -> Result<(), ChainError> {
        let flushed = read_meta_hash(read, META_FLUSHED, "flushed tip")?;
        let flushed_height = self
            .index
            .get(&flushed)
            .map(|record| record.height)
            .filter(|height| self.hash_at(*height) == Some(flushed))
            .ok_or_else(|| {
                ChainError::Corrupt(format!(
                    "the flushed tip {flushed} is not on the main chain"
                ))
            })?;
        let blocks = read.open_table(BLOCKS)?;
        let undo = read.open_table(UNDO)?;
        let mut overlay = Overlay::default();
        for height in flushed_height.0 + 1..=self.index.tip_height().0 {
            let hash = self
                .index
                .hash_at(BlockHeight(height))
                .expect("heights up to the tip are on the main chain");
            let block = blocks
                .get(hash.0.as_slice())?
                .ok_or_else(|| ChainError::Corrupt(format!("block {hash} has no stored data")))
                .and_then(|row| Block::decode_exact(row.value()).map_err(corrupt("block")))?;
            let spent = undo
                .get(hash.0.as_slice())?
                .ok_or_else(|| ChainError::Corrupt(format!("no undo data for block {hash}")))
                .and_then(|row| decode_undo(&hash, row.value()))?;
            let txids = block.compute_txids();
            super::connect::check_stored_block(&hash, &block, &txids)?;
            super::connect::check_undo(
                &hash,
                BlockHeight(height),
                &block,
                &txids,
                &spent,
                self.params,
            )?;
            overlay.push(BlockChanges::replayed(
                hash,
                BlockHeight(height),
                &block,
                &txids,
                &spent,
            ));
        }
        self.overlay = overlay;
        *self
            .shared_overlay
            .write()
            .unwrap_or_else(PoisonError::into_inner) = self.overlay.clone();
        Ok(())
    }
}

/// The schema upgrade from version 2: every undo row gets the checksum of its block's hash
/// and its bytes (`store::encode_undo`), in the upgrade's write. What the rows held is
/// taken as it is: damage from before the upgrade is checked as before it (`check_undo`).
fn add_undo_checksums(write: &redb::WriteTransaction) -> Result<(), ChainError> {
    let mut undo = write.open_table(UNDO)?;
    // The keys first (32 bytes a block), then each row in turn: the rows of a long chain
    // never sit in memory together.
    let blocks = undo
        .iter()?
        .map(|row| hash_from_row(row?.0.value(), "an undo row's key"))
        .collect::<Result<Vec<_>, ChainError>>()?;
    for hash in &blocks {
        let row = undo
            .get(hash.0.as_slice())?
            .map(|row| row.value().to_vec())
            .ok_or_else(|| ChainError::Corrupt(format!("no undo data for block {hash}")))?;
        undo.insert(
            hash.0.as_slice(),
            undo_with_checksum(hash, &row)?.as_slice(),
        )?;
    }
    info!(rows = blocks.len(), "added checksums to the undo data");
    Ok(())
}
