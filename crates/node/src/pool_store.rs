//! The pool's own small store: every transaction the node accepted, so a crash or restart
//! does not lose a payment the API has already acknowledged.
//!
//! A transaction is written (and synced) before `submit_transaction` returns. What nobody
//! waits for (a peer's transactions, removals) is written without a sync, and synced at
//! least once a second and when the store closes: a crash loses at most the last second of
//! it, which peers still hold, and replaying an already-confirmed transaction at start-up
//! only gets it refused again. Each commit writes only the last queued write of each
//! transaction, so a relayed transaction confirmed before its commit never reaches the
//! disk.
//!
//! Every write reaches the disk through a [`GroupCommit`]: an admission queues its row (and
//! the removals of what it evicted) as [`PoolWrite`]s under the node's lock, releases the
//! lock, and waits; the queue is written by one redb transaction, so submitters that arrive
//! while a commit is in flight share the next one instead of taking a sync each. A
//! submitter is answered only after the commit holding its row returned.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::{Transaction, Txid};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::warn;

use crate::data_dir::move_aside;
use crate::error::NodeError;
use crate::group_commit::{CommitFailed, CommitKind, GroupCommit, Ticket};

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
    path: PathBuf,
    /// The table and its writer; `None` for a node in memory, whose pool outlives nothing
    /// and is not stored.
    stored: Option<Stored>,
    /// What failed commits left unstored, for acknowledgements to check.
    unstored: Arc<Unstored>,
    /// Makes every commit fail, for tests of what a failed commit leaves behind.
    #[cfg(test)]
    pub(crate) fail_commits: Arc<AtomicBool>,
    /// Runs once at the start of the next commit, for tests of what happens meanwhile.
    #[cfg(test)]
    pub(crate) before_next_commit: Arc<Mutex<Option<BeforeCommit>>>,
}

/// What a test runs at the start of a commit.
#[cfg(test)]
pub(crate) type BeforeCommit = Box<dyn FnOnce() + Send>;

/// What failed commits left behind. A transaction is acknowledged once its own row is
/// stored, but a restart brings it back only if every pooled transaction it spends comes
/// back too: these say whether one of them could not be stored.
#[derive(Default)]
pub(crate) struct Unstored {
    /// Transactions whose row a failed commit held, until they leave the pool (their
    /// removal is queued) or a later commit stores them.
    txids: Mutex<HashSet<Txid>>,
    /// How many commits have failed.
    failed_commits: AtomicU64,
}

impl Unstored {
    fn txids(&self) -> MutexGuard<'_, HashSet<Txid>> {
        // Nothing runs foreign code under this lock, so a poisoned set is still whole.
        self.txids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a commit of `writes` that failed.
    /// The transactions go in before the count moves, under the set's lock: whoever
    /// reads the new count finds them there.
    fn failed(&self, writes: &[PoolWrite]) {
        let mut txids = self.txids();
        txids.extend(writes.iter().filter_map(|write| match write {
            PoolWrite::Insert { txid, .. } => Some(*txid),
            PoolWrite::Remove(_) => None,
        }));
        self.failed_commits.fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets what `writes` settle: a row now stored, or a transaction that leaves the pool.
    fn settled(&self, writes: &[PoolWrite]) {
        let mut txids = self.txids();
        if txids.is_empty() {
            return;
        }
        for write in writes {
            match write {
                PoolWrite::Insert { txid, .. } | PoolWrite::Remove(txid) => txids.remove(txid),
            };
        }
    }
}

/// A pool store's table and the writer of its group commits.
struct Stored {
    db: Arc<Database>,
    /// Writes waiting for the next commit, and the thread that makes it.
    commits: GroupCommit<PoolWrite>,
}

/// What opening or reading the store at `path` gave, with its failures and panics named
/// as damage to that file.
fn damaged_at<T>(
    path: &Path,
    result: std::thread::Result<Result<T, redb::Error>>,
) -> Result<T, NodeError> {
    let detail = match result {
        Ok(Ok(value)) => return Ok(value),
        // Not damage: moving the file aside (`--reindex`) would take it from its user.
        Ok(Err(redb::Error::DatabaseAlreadyOpen)) => {
            return Err(NodeError::DataDirInUse {
                directory: path.parent().unwrap_or(path).to_path_buf(),
                lock: path.to_path_buf(),
            });
        }
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

    /// No store: the pool of a node in memory (a simulation's) is written nowhere, as
    /// nothing of that node outlives it. Writes are dropped, waits return at once and the
    /// stored pool is empty. `path` only names it.
    pub(crate) fn none(path: &Path) -> PoolStore {
        PoolStore {
            path: path.to_path_buf(),
            stored: None,
            unstored: Arc::default(),
            #[cfg(test)]
            fail_commits: Arc::new(AtomicBool::new(false)),
            #[cfg(test)]
            before_next_commit: Arc::default(),
        }
    }

    fn open_guarded(path: &Path) -> Result<PoolStore, NodeError> {
        let opened = panic::catch_unwind(AssertUnwindSafe(|| -> Result<Database, redb::Error> {
            let db = Database::create(path)?;
            let write = db.begin_write()?;
            write.open_table(POOL)?;
            write.commit()?;
            Ok(db)
        }));
        let db = Arc::new(damaged_at(path, opened)?);
        #[cfg(test)]
        let fail_commits = Arc::new(AtomicBool::new(false));
        #[cfg(test)]
        let before_next_commit = Arc::<Mutex<Option<BeforeCommit>>>::default();
        let unstored = Arc::<Unstored>::default();
        let commits = {
            let (db, store_path) = (Arc::clone(&db), path.to_path_buf());
            #[cfg(test)]
            let fail_commits = Arc::clone(&fail_commits);
            #[cfg(test)]
            let before_next_commit = Arc::clone(&before_next_commit);
            let unstored = Arc::clone(&unstored);
            let mut syncs = SyncSchedule::new();
            GroupCommit::start_with_idle_call(
                "pool-store",
                Some(IDLE_SYNC_AFTER),
                move |writes: Vec<PoolWrite>, kind| {
                    let writes = last_write_of_each(writes);
                    #[cfg(test)]
                    if let Some(run) = before_next_commit
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                    {
                        run();
                    }
                    #[cfg(test)]
                    if fail_commits.load(Ordering::SeqCst) && !writes.is_empty() {
                        unstored.failed(&writes);
                        return Err(CommitFailed("injected failure".into()));
                    }
                    let durable = syncs.durable(kind, writes.is_empty());
                    if kind == CommitKind::Idle && !durable {
                        return Ok(());
                    }
                    commit_writes(&db, &store_path, &writes, durable)
                        .inspect_err(|_| unstored.failed(&writes))?;
                    unstored.settled(&writes);
                    syncs.committed(durable, writes.is_empty());
                    Ok(())
                },
            )
            .map_err(|source| NodeError::DataDir {
                path: path.to_path_buf(),
                source,
            })?
        };
        let store = PoolStore {
            path: path.to_path_buf(),
            stored: Some(Stored { db, commits }),
            unstored,
            #[cfg(test)]
            fail_commits,
            #[cfg(test)]
            before_next_commit,
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
        let Some(stored) = &self.stored else {
            return Ok(Vec::new());
        };
        let read = stored.db.begin_read()?;
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
        match &self.stored {
            Some(stored) => {
                self.forget_removed(&writes);
                stored.commits.enqueue(writes)
            }
            None => Ticket::NOWHERE,
        }
    }

    /// How many commits have failed so far: an acknowledgement compares it with the count
    /// when its row was queued.
    pub(crate) fn failed_commits(&self) -> u64 {
        self.unstored.failed_commits.load(Ordering::SeqCst)
    }

    /// Whether a failed commit left a row unstored whose transaction may still be pooled.
    pub(crate) fn has_unstored(&self) -> bool {
        !self.unstored.txids().is_empty()
    }

    /// One of `txids` whose row a failed commit held and that has not left the pool since,
    /// if any: a transaction spending it would not come back after a restart.
    pub(crate) fn first_unstored<'a>(
        &self,
        txids: impl IntoIterator<Item = &'a Txid>,
    ) -> Option<Txid> {
        let unstored = self.unstored.txids();
        txids
            .into_iter()
            .find(|txid| unstored.contains(txid))
            .copied()
    }

    /// Forgets the unstored rows of `txids`, which have left the pool.
    pub(crate) fn forget_unstored(&self, txids: &[Txid]) {
        let mut unstored = self.unstored.txids();
        for txid in txids {
            unstored.remove(txid);
        }
    }

    /// Forgets the unstored rows of transactions `writes` remove from the pool; called
    /// with the removals queued under the node's lock, as they leave the pool.
    fn forget_removed(&self, writes: &[PoolWrite]) {
        let mut unstored = self.unstored.txids();
        if unstored.is_empty() {
            return;
        }
        for write in writes {
            if let PoolWrite::Remove(txid) = write {
                unstored.remove(txid);
            }
        }
    }

    /// Blocks until the commit holding `ticket`'s writes returned, committing the queue
    /// itself if no other caller is.
    ///
    /// # Errors
    /// [`NodeError::PoolStore`] if that commit failed: none of its writes is stored.
    pub(crate) fn wait(&self, ticket: Ticket) -> Result<(), NodeError> {
        let Some(stored) = &self.stored else {
            return Ok(());
        };
        stored
            .commits
            .wait(ticket)
            .map_err(|CommitFailed(detail)| NodeError::PoolStore { detail })
    }

    /// Queues `writes` for the next commit; nobody waits for them. For what no client was
    /// promised is on disk: a peer's transaction, a reorganisation's returning ones, and
    /// removals (replaying an already-confirmed transaction at start-up only gets it
    /// refused again). A failed commit of them is logged.
    pub(crate) fn queue_unawaited(&self, writes: Vec<PoolWrite>) {
        if let Some(stored) = &self.stored {
            self.forget_removed(&writes);
            stored.commits.enqueue_unawaited(writes);
        }
    }

    /// Forgets transactions, in queue order: a removal is never overtaken by the insert of
    /// the same row still waiting there.
    pub(crate) fn remove(&self, txids: &[Txid]) {
        self.queue_unawaited(txids.iter().copied().map(PoolWrite::Remove).collect());
    }
}

/// The last write of each transaction in `writes`, in the order of those last writes: what
/// applying all of them in order leaves in the table. A relayed transaction confirmed
/// before its row was committed is then never written (its removal of a missing row costs
/// a lookup).
fn last_write_of_each(writes: Vec<PoolWrite>) -> Vec<PoolWrite> {
    let mut seen = HashSet::with_capacity(writes.len());
    let mut last: Vec<PoolWrite> = writes
        .into_iter()
        .rev()
        .filter(|write| {
            seen.insert(match write {
                PoolWrite::Insert { txid, .. } | PoolWrite::Remove(txid) => *txid,
            })
        })
        .collect();
    last.reverse();
    last
}

/// How often writes nobody waits for (a peer's transactions, removals) are synced while
/// they keep coming: a crash loses at most about this much of them, which their peers still
/// hold and announce again.
const UNAWAITED_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long after the last unsynced commit the writer syncs it if no other commit came:
/// the end of a burst is not left unsynced until the next write or the close.
const IDLE_SYNC_AFTER: Duration = Duration::from_millis(250);

/// Which commits sync. One an acknowledgement waits for does, and with it every commit
/// before it; one nobody waits for does only if the last sync is older than
/// [`UNAWAITED_SYNC_INTERVAL`], so a relaying node, which takes no submissions, syncs
/// about once a second instead of once a commit; the idle call [`IDLE_SYNC_AFTER`] after
/// the last of them and the last call, when the store closes, sync what is left.
struct SyncSchedule {
    last_sync: Instant,
    /// Commits since the last sync.
    unsynced: bool,
}

impl SyncSchedule {
    fn new() -> SyncSchedule {
        SyncSchedule {
            last_sync: Instant::now(),
            unsynced: false,
        }
    }

    /// Whether a commit of this kind syncs (`empty`: it writes nothing of its own).
    fn durable(&self, kind: CommitKind, empty: bool) -> bool {
        match kind {
            // Its submitters' writes (none for a read that waits for the queue).
            CommitKind::Awaited => !empty,
            CommitKind::Final => self.unsynced || !empty,
            CommitKind::Idle => self.unsynced,
            CommitKind::Unawaited => self.last_sync.elapsed() >= UNAWAITED_SYNC_INTERVAL,
        }
    }

    fn committed(&mut self, durable: bool, empty: bool) {
        if durable {
            self.last_sync = Instant::now();
            self.unsynced = false;
        } else if !empty {
            self.unsynced = true;
        }
    }
}

/// Applies `writes` in order in one write transaction: a group commit, synced if `durable`
/// (an unsynced commit becomes durable with the next synced one; a crash before that loses
/// it, and the store opens at the last synced commit).
fn commit_writes(
    db: &Database,
    path: &Path,
    writes: &[PoolWrite],
    durable: bool,
) -> Result<(), CommitFailed> {
    let committed = panic::catch_unwind(AssertUnwindSafe(|| commit_unguarded(db, writes, durable)));
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

fn commit_unguarded(db: &Database, writes: &[PoolWrite], durable: bool) -> Result<(), redb::Error> {
    if writes.is_empty() && !durable {
        return Ok(());
    }
    let mut write = db.begin_write()?;
    if !durable {
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

#[cfg(test)]
mod tests {
    use powchain_consensus::Network;

    use super::*;

    fn insert(n: u8) -> PoolWrite {
        PoolWrite::Insert {
            txid: Txid([n; 32]),
            transaction: Network::Regtest.params().genesis().transactions[0].clone(),
            time_ms: u64::from(n),
        }
    }

    /// What a list of writes leaves, as (txid byte, inserted) in write order.
    fn shape(writes: &[PoolWrite]) -> Vec<(u8, bool)> {
        writes
            .iter()
            .map(|write| match write {
                PoolWrite::Insert { txid, .. } => (txid.0[0], true),
                PoolWrite::Remove(txid) => (txid.0[0], false),
            })
            .collect()
    }

    #[test]
    fn only_the_last_write_of_each_transaction_is_committed() {
        let writes = vec![
            insert(1),
            insert(2),
            PoolWrite::Remove(Txid([1; 32])),
            insert(3),
            PoolWrite::Remove(Txid([2; 32])),
            insert(2),
            PoolWrite::Remove(Txid([4; 32])),
        ];
        assert_eq!(
            shape(&last_write_of_each(writes)),
            vec![(1, false), (3, true), (2, true), (4, false)]
        );
    }

    #[test]
    fn a_confirmed_relayed_transaction_never_reaches_the_table_and_the_rest_comes_back() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("mempool.redb");
        {
            let store = PoolStore::open(&path, false, 0).expect("it opens");
            // A peer's transaction, then its removal when a block confirmed it, and a
            // second peer's transaction still pooled: nobody waits for any of it.
            store.queue_unawaited(vec![insert(1), insert(2)]);
            store.remove(&[Txid([1; 32])]);
            let stored: Vec<Txid> = store
                .load()
                .expect("it reads")
                .iter()
                .map(|(transaction, _)| transaction.compute_txid())
                .collect();
            assert_eq!(
                stored.len(),
                1,
                "one row: the confirmed one was never written"
            );
        }
        // Closed cleanly: nothing queued is lost.
        let store = PoolStore::open(&path, false, 0).expect("it reopens");
        let times: Vec<u64> = store
            .load()
            .expect("it reads")
            .iter()
            .map(|(_, time)| *time)
            .collect();
        assert_eq!(times, vec![2], "the pooled one survived the restart");
    }

    #[test]
    fn writes_nobody_waits_for_sync_once_a_second_and_at_the_close() {
        let mut syncs = SyncSchedule::new();
        assert!(
            syncs.durable(CommitKind::Awaited, false),
            "an acknowledgement waits"
        );
        assert!(
            !syncs.durable(CommitKind::Awaited, true),
            "a read waits for nothing"
        );
        assert!(
            !syncs.durable(CommitKind::Unawaited, false),
            "synced just now"
        );
        assert!(
            !syncs.durable(CommitKind::Final, true),
            "nothing left to sync"
        );
        syncs.committed(false, false);
        assert!(
            syncs.durable(CommitKind::Final, true),
            "the close syncs what is left"
        );
        syncs.last_sync = Instant::now() - UNAWAITED_SYNC_INTERVAL;
        assert!(
            syncs.durable(CommitKind::Unawaited, false),
            "a second went by"
        );
        syncs.committed(true, false);
        assert!(!syncs.durable(CommitKind::Final, true));
        assert!(!syncs.durable(CommitKind::Unawaited, false));
        assert!(
            !syncs.durable(CommitKind::Idle, true),
            "nothing unsynced: the idle call writes nothing"
        );
        syncs.committed(false, false);
        assert!(
            syncs.durable(CommitKind::Idle, true),
            "the idle call syncs the end of a burst"
        );
    }

    #[test]
    fn a_store_keeps_what_it_is_given_and_the_store_of_a_node_in_memory_nothing() {
        let chain = powchain_consensus::testkit::TestChain::regtest_with_mature_coins(1);
        let transaction = chain.blocks[1].transactions[0].clone();
        let txid = transaction.compute_txid();
        let insert = || {
            vec![PoolWrite::Insert {
                txid,
                transaction: transaction.clone(),
                time_ms: 7,
            }]
        };
        let dir = tempfile::tempdir().expect("a temp dir");
        let stored = PoolStore::open(&dir.path().join("mempool.redb"), false, 0).expect("opens");
        stored.wait(stored.queue(insert())).expect("committed");
        assert_eq!(
            stored.load().expect("loads"),
            vec![(transaction.clone(), 7)]
        );

        let path = dir.path().join("in-memory.redb");
        let none = PoolStore::none(&path);
        none.wait(none.queue(insert()))
            .expect("nothing to wait for");
        none.queue_unawaited(insert());
        none.remove(&[txid]);
        assert!(none.load().expect("loads").is_empty());
        assert!(!path.exists(), "no file");
    }
}
