//! The pool's own small store: every transaction the node accepted, so a crash or restart
//! does not lose a payment the API has already acknowledged.
//!
//! A transaction is written (and synced) before `submit_transaction` returns; removals are
//! written without a sync, since replaying an already-confirmed transaction at start-up only
//! gets it refused again.
//!
//! Every write reaches the disk through a [`GroupCommit`]: an admission queues its row (and
//! the removals of what it evicted) as [`PoolWrite`]s under the node's lock, releases the
//! lock, and waits; the queue is written by one redb transaction, so submitters that arrive
//! while a commit is in flight share the next one instead of taking a sync each. A
//! submitter is answered only after the commit holding its row returned.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};

use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::{Transaction, Txid};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

use crate::data_dir::move_aside;
use crate::error::NodeError;
use crate::group_commit::{CommitFailed, GroupCommit, Ticket};

const POOL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pool");

/// One change to the stored pool, queued for the next group commit.
pub(crate) enum PoolWrite {
    /// Store an admitted transaction with the time it was accepted.
    Insert {
        txid: Txid,
        transaction: Transaction,
        time_ms: u64,
    },
    /// Forget a transaction (evicted, confirmed, expired or conflicted).
    Remove(Txid),
}

/// The persisted pool.
pub(crate) struct PoolStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Writes waiting for the next commit, and the thread that makes it.
    commits: GroupCommit<PoolWrite>,
    /// Makes every commit fail, for tests of what a failed commit leaves behind.
    #[cfg(test)]
    pub(crate) fail_commits: Arc<AtomicBool>,
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
        match Self::open_guarded(path, false) {
            Err(NodeError::PoolStoreDamaged { .. }) if reindex => {
                move_aside(path, now_ms)?;
                Self::open_guarded(path, false)
            }
            opened => opened,
        }
    }

    /// A pool store in memory (redb's in-memory backend); `path` only names it in errors.
    pub(crate) fn in_memory(path: &Path) -> Result<PoolStore, NodeError> {
        Self::open_guarded(path, true)
    }

    fn open_guarded(path: &Path, in_memory: bool) -> Result<PoolStore, NodeError> {
        let opened = panic::catch_unwind(AssertUnwindSafe(|| -> Result<Database, redb::Error> {
            let db = if in_memory {
                Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?
            } else {
                Database::create(path)?
            };
            let write = db.begin_write()?;
            write.open_table(POOL)?;
            write.commit()?;
            Ok(db)
        }));
        let db = Arc::new(damaged_at(path, opened)?);
        #[cfg(test)]
        let fail_commits = Arc::new(AtomicBool::new(false));
        let commits = {
            let (db, store_path) = (Arc::clone(&db), path.to_path_buf());
            #[cfg(test)]
            let fail_commits = Arc::clone(&fail_commits);
            GroupCommit::start("pool-store", move |writes: Vec<PoolWrite>| {
                #[cfg(test)]
                if fail_commits.load(Ordering::SeqCst) && !writes.is_empty() {
                    return Err(CommitFailed("injected failure".into()));
                }
                commit_writes(&db, &store_path, &writes)
            })
            .map_err(|source| NodeError::DataDir {
                path: path.to_path_buf(),
                source,
            })?
        };
        let store = PoolStore {
            db,
            path: path.to_path_buf(),
            commits,
            #[cfg(test)]
            fail_commits,
        };
        // Read it once now: a damaged page met later would fail every admission.
        store.load()?;
        Ok(store)
    }

    /// Every stored transaction with the time it was accepted, oldest first, once what was
    /// queued before the call is written.
    pub(crate) fn load(&self) -> Result<Vec<(Transaction, u64)>, NodeError> {
        self.wait(self.queue(Vec::new()))?;
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

    /// Queues `writes` for the next group commit without waiting: the caller may release
    /// its locks and then [`PoolStore::wait`] for the ticket. Writes reach the disk in the
    /// order they were queued, so a row queued before its removal ends up removed.
    pub(crate) fn queue(&self, writes: Vec<PoolWrite>) -> Ticket {
        self.commits.enqueue(writes)
    }

    /// Blocks until the commit holding `ticket`'s writes returned, committing the queue
    /// itself if no other caller is.
    ///
    /// # Errors
    /// [`NodeError::PoolStore`] if that commit failed: none of its writes is stored.
    pub(crate) fn wait(&self, ticket: Ticket) -> Result<(), NodeError> {
        self.commits
            .wait(ticket)
            .map_err(|CommitFailed(detail)| NodeError::PoolStore { detail })
    }

    /// Queues `writes` for the next commit; nobody waits for them. For what no client was
    /// promised is on disk: a peer's transaction, a reorganisation's returning ones, and
    /// removals (replaying an already-confirmed transaction at start-up only gets it
    /// refused again). A failed commit of them is logged.
    pub(crate) fn queue_unawaited(&self, writes: Vec<PoolWrite>) {
        self.commits.enqueue_unawaited(writes);
    }

    /// Forgets transactions, in queue order: a removal is never overtaken by the insert of
    /// the same row still waiting there.
    pub(crate) fn remove(&self, txids: &[Txid]) {
        self.queue_unawaited(txids.iter().copied().map(PoolWrite::Remove).collect());
    }
}

/// Applies `writes` in order in one write transaction: a group commit. Synced if it stores a
/// transaction (an acknowledgement may wait for it); a commit of removals only is not, since
/// replaying an already-confirmed transaction at start-up only gets it refused again (the
/// next synced commit makes it durable too).
fn commit_writes(db: &Database, path: &Path, writes: &[PoolWrite]) -> Result<(), CommitFailed> {
    let committed = panic::catch_unwind(AssertUnwindSafe(|| commit_unguarded(db, writes)));
    damaged_at(path, committed).map_err(|error| {
        warn!(
            %error,
            writes = writes.len(),
            "the pool store could not write; transactions not stored stay in the pool until \
             a restart"
        );
        CommitFailed(error.to_string())
    })
}

fn commit_unguarded(db: &Database, writes: &[PoolWrite]) -> Result<(), redb::Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut write = db.begin_write()?;
    if !writes
        .iter()
        .any(|pool_write| matches!(pool_write, PoolWrite::Insert { .. }))
    {
        write.set_durability(Durability::None)?;
    }
    {
        let mut table = write.open_table(POOL)?;
        let mut value = Vec::new();
        for pool_write in writes {
            match pool_write {
                PoolWrite::Insert {
                    txid,
                    transaction,
                    time_ms,
                } => {
                    value.clear();
                    value.extend_from_slice(&time_ms.to_le_bytes());
                    transaction.encode_to(&mut value);
                    table.insert(txid.0.as_slice(), value.as_slice())?;
                }
                PoolWrite::Remove(txid) => {
                    table.remove(txid.0.as_slice())?;
                }
            }
        }
    }
    write.commit()?;
    Ok(())
}
