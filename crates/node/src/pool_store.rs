//! The pool's own small store: every transaction the node accepted, so a crash or restart
//! does not lose a payment the API has already acknowledged.
//!
//! A transaction is written (and synced) before `submit_transaction` returns; removals are
//! written without a sync, since replaying an already-confirmed transaction at start-up only
//! gets it refused again.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::{Transaction, Txid};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

use crate::data_dir::move_aside;
use crate::error::NodeError;

const POOL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pool");

/// The persisted pool.
pub(crate) struct PoolStore {
    db: Database,
    path: PathBuf,
}

fn store_error(error: impl Into<redb::Error>) -> NodeError {
    NodeError::PoolStore(error.into())
}

/// What opening or reading the store at `path` gave, with its failures and panics named
/// as damage to that file.
fn damaged_at<T>(
    path: &Path,
    result: std::thread::Result<Result<T, redb::Error>>,
) -> Result<T, NodeError> {
    let detail = match result {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(error)) => error.to_string(),
        Err(payload) => format!(
            "the storage engine panicked: {}",
            payload
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        ),
    };
    Err(NodeError::PoolStoreDamaged {
        path: path.to_path_buf(),
        detail,
    })
}

impl PoolStore {
    /// Opens (or creates) the pool store at `path`. A store the storage engine fails or
    /// panics on is an error naming it, or, with `reindex`, moved aside and started anew.
    pub(crate) fn open(path: &Path, reindex: bool, now_ms: u64) -> Result<PoolStore, NodeError> {
        match Self::open_guarded(path) {
            Err(NodeError::PoolStoreDamaged { .. }) if reindex => {
                move_aside(path, now_ms)?;
                Self::open_guarded(path)
            }
            opened => opened,
        }
    }

    fn open_guarded(path: &Path) -> Result<PoolStore, NodeError> {
        let opened = panic::catch_unwind(AssertUnwindSafe(|| -> Result<PoolStore, redb::Error> {
            let db = Database::create(path)?;
            let write = db.begin_write()?;
            write.open_table(POOL)?;
            write.commit()?;
            Ok(PoolStore {
                db,
                path: path.to_path_buf(),
            })
        }));
        let store = damaged_at(path, opened)?;
        // Read it once now: a damaged page met later would fail every admission.
        store.load()?;
        Ok(store)
    }

    /// Every stored transaction with the time it was accepted, oldest first.
    pub(crate) fn load(&self) -> Result<Vec<(Transaction, u64)>, NodeError> {
        let loaded = panic::catch_unwind(AssertUnwindSafe(|| self.load_unguarded()));
        damaged_at(&self.path, loaded)
    }

    fn load_unguarded(&self) -> Result<Vec<(Transaction, u64)>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = read.open_table(POOL)?;
        let mut transactions = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let bytes = value.value();
            if bytes.len() < 8 {
                warn!("skipping a damaged pool entry");
                continue;
            }
            let (time, encoded) = bytes.split_at(8);
            match Transaction::decode_exact(encoded) {
                Ok(transaction) => {
                    let mut time_bytes = [0u8; 8];
                    time_bytes.copy_from_slice(time);
                    transactions.push((transaction, u64::from_le_bytes(time_bytes)));
                }
                Err(error) => warn!(key = ?key.value(), %error, "skipping a damaged pool entry"),
            }
        }
        transactions.sort_by_key(|(_, time)| *time);
        Ok(transactions)
    }

    /// Stores a transaction durably.
    pub(crate) fn insert(
        &self,
        txid: &Txid,
        transaction: &Transaction,
        time_ms: u64,
    ) -> Result<(), NodeError> {
        let mut value = time_ms.to_le_bytes().to_vec();
        transaction.encode_to(&mut value);
        let write = self.db.begin_write().map_err(store_error)?;
        write
            .open_table(POOL)
            .map_err(store_error)?
            .insert(txid.0.as_slice(), value.as_slice())
            .map_err(store_error)?;
        write.commit().map_err(store_error)
    }

    /// Forgets transactions (without waiting for the disk).
    pub(crate) fn remove(&self, txids: &[Txid]) -> Result<(), NodeError> {
        if txids.is_empty() {
            return Ok(());
        }
        let mut write = self.db.begin_write().map_err(store_error)?;
        write
            .set_durability(Durability::None)
            .map_err(store_error)?;
        {
            let mut table = write.open_table(POOL).map_err(store_error)?;
            for txid in txids {
                table.remove(txid.0.as_slice()).map_err(store_error)?;
            }
        }
        write.commit().map_err(store_error)
    }
}
