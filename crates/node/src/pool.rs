//! The node's transaction pool: admission against the chain tip, durable storage before
//! an acknowledgement, restore at start, expiry, and the views the API and peers read.
//!
//! ```text
//!   submit_transaction ──▶ Mempool::accept (coins from a chain snapshot, signatures
//!        │                 remembered for the block that confirms it)
//!        └──▶ row queued (under the lock) ──▶ group commit of the pool store (synced,
//!             shared with concurrent submitters; no lock held) ──▶ NodeEvent::TransactionAccepted
//!   open ──▶ restore_pool: stored transactions re-admitted, parents before children,
//!            expired ones dropped
//! ```

use std::collections::HashSet;

use powchain_consensus::signature::{SignatureCheck, SignatureVerifier};
use powchain_consensus::{
    Address, Block, BlockHash, BlockHeight, OutPoint, Transaction, TxOut, Txid,
};
use powchain_mempool::{Accepted, MempoolError, PoolEntry};
use tracing::{info, warn};

use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::group_commit::Ticket;
use crate::node::{Core, Node, lock};
use crate::parked::WaitsFor;
use crate::pool_store::PoolWrite;

/// How many of the main chain's latest blocks a compact block of a competing branch is
/// rebuilt from (`Node::main_chain_transactions_above`): races are a block or two deep.
const COMPETING_BLOCKS_SEARCHED: u64 = 3;

/// The pool store's changes for an admission: its row, and the removal of what it evicted.
fn store_rows(accepted: &Accepted, transaction: Transaction, now: u64) -> Vec<PoolWrite> {
    let mut writes = Vec::with_capacity(1 + accepted.evicted.len());
    writes.push(PoolWrite::Insert {
        txid: accepted.txid,
        transaction,
        time_ms: now,
    });
    writes.extend(accepted.evicted.iter().copied().map(PoolWrite::Remove));
    writes
}

/// Whether a transaction comes to the pool for the first time or returns to it.
#[derive(Clone, Copy)]
pub(crate) enum Admission {
    New,
    /// From a reorganisation's losing branch or the pool's store: may pass the descendant
    /// limit.
    Returning,
    /// Held by the pool when a reorganisation took it apart: as `Returning`, but its
    /// signatures are not checked again ([`CheckedOnEntry`]).
    Kept,
}

/// The verifier of a transaction the pool held before a reorganisation. Its signatures
/// passed the pool's verifier when it entered the pool (every other admission checks
/// them: new, returning and restored alike), and what they sign is beyond the chain's
/// reach: the sighash commits to the transaction and to the outputs it spends, which
/// their outpoints fix (a txid commits to its outputs). So a reorganisation checks such a
/// transaction's coins, their maturity, its fee and the pool's limits again, not its
/// signatures. Checking them again cost a full verify each, under the node's lock, once
/// the pool held more checks than the signature cache (4.5 s for 120,000 payments:
/// `pool.reorg` in docs/BENCHMARKS.md).
struct CheckedOnEntry;

impl SignatureVerifier for CheckedOnEntry {
    fn verify_all(&self, _checks: &[SignatureCheck]) -> Result<(), usize> {
        Ok(())
    }
}

/// Admissions of one [`Node::submit_transactions`] call made under one taking of the lock.
const SUBMIT_BATCH_PER_LOCK: usize = 64;

/// Why `txid` is not kept: `parent`, which it spends, could not be stored.
fn unstored_parent(txid: Txid, parent: Txid) -> NodeError {
    NodeError::PoolStore {
        detail: format!("{txid} spends {parent}, which could not be stored"),
    }
}

/// Where a walk of the pool in pages ([`Node::pool_txids_page`]) goes on from: the arrival
/// number of the last id it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolCursor(u64);

/// Transactions [`Node::admit_transactions`] admitted (or refused), their rows queued and
/// not yet known to be stored: [`Node::await_admissions`] turns them into answers.
#[must_use = "nothing is acknowledged until Node::await_admissions has waited for the rows"]
pub struct Admissions(Vec<Result<(Accepted, Queued), NodeError>>);

/// An admitted transaction's row, queued for the pool store: what [`Node::await_stored`]
/// waits for before the transaction is acknowledged.
pub(crate) struct Queued {
    ticket: Ticket,
    /// The pool store's failed commits when the row was queued.
    failed_commits: u64,
}

impl Node {
    /// Re-admits the stored pool; transactions that are no longer valid or have expired
    /// are forgotten, and those whose parent the chain does not know yet are parked.
    pub(crate) fn restore_pool(&self) -> Result<(), NodeError> {
        let stored = self.pool_store.load()?;
        if stored.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut core = lock(&self.core);
        let mut pending: Vec<(Transaction, u64, Option<MempoolError>)> = stored
            .into_iter()
            .map(|(transaction, time_ms)| (transaction, time_ms, None))
            .collect();
        // Parents may be stored after their children; retry while progress is made.
        let mut refused: HashSet<Txid> = HashSet::new();
        loop {
            let before = pending.len();
            let mut retry = Vec::new();
            for (transaction, time_ms, _) in pending {
                match self.admit_into_pool(
                    &mut core,
                    transaction.clone(),
                    time_ms.min(now),
                    Admission::Returning,
                ) {
                    Ok(_) => {}
                    Err(NodeError::Mempool(error)) if error.is_missing_input() => {
                        retry.push((transaction, time_ms, Some(error)))
                    }
                    // A coinbase it spends matures later on this chain (one shorter than
                    // when it was accepted): it waits.
                    Err(NodeError::Mempool(error)) if error.mature_at().is_some() => {
                        self.park_if_it_may_pass(&mut core, transaction, time_ms, &error);
                    }
                    // Refused by a rule (spent, expired, too low a fee): forgotten below.
                    Err(error) if error.is_rejection() => {
                        refused.insert(transaction.compute_txid());
                    }
                    // Our own store failed: nothing is forgotten, and the node does not
                    // start on a pool it could not read back.
                    Err(error) => return Err(error),
                }
            }
            pending = retry;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        // What still misses a parent waits for it, stored (after `--reindex`, or on a
        // chain restored from an older backup, until the chain is synced again), unless
        // that parent was refused here: then it, and what spends it, can never pass.
        loop {
            let before = refused.len();
            pending.retain(|(transaction, _, error)| {
                let gone = error
                    .as_ref()
                    .and_then(MempoolError::missing_input)
                    .is_some_and(|missing| refused.contains(&missing.txid));
                if gone {
                    refused.insert(transaction.compute_txid());
                }
                !gone
            });
            if refused.len() == before {
                break;
            }
        }
        for (transaction, time_ms, error) in pending {
            if let Some(error) = error {
                self.park_if_it_may_pass(&mut core, transaction, time_ms, &error);
            }
        }
        core.parked.refuse(refused);
        // What waited past the expiry while the node was down leaves now, not at the next
        // expiry round: until then it would be relayed and mined.
        core.mempool.expire(now);
        let expiry_ms = core.mempool.options().expiry_ms;
        core.parked.take_expired(now, expiry_ms);
        core.parked.settle();
        let kept: HashSet<Txid> = core
            .mempool
            .entries_by_fee_rate()
            .iter()
            .map(|entry| entry.txid)
            .collect();
        let dropped: Vec<Txid> = self
            .pool_store
            .load()?
            .iter()
            .map(|(transaction, _)| transaction.compute_txid())
            .filter(|txid| !kept.contains(txid) && !core.parked.contains(txid))
            .collect();
        self.pool_store.remove(&dropped);
        info!(
            restored = kept.len(),
            dropped = dropped.len(),
            waiting_for_their_parents = core.parked.len(),
            "restored the transaction pool"
        );
        Ok(())
    }

    /// Parks a stored payment refused by `error` until what it waits for comes, if that
    /// may happen as the chain grows: a parent the chain does not know (unless a block
    /// already confirmed that parent: then the output was spent, and the payment can
    /// never be valid), or a coinbase not mature yet. Returns whether it was parked.
    fn park_if_it_may_pass(
        &self,
        core: &mut Core,
        transaction: Transaction,
        time_ms: u64,
        error: &MempoolError,
    ) -> bool {
        let waits_for = if let Some(missing) = error.missing_input() {
            if core.parked.was_refused(&missing.txid)
                || self.transactions_confirmed(&[missing.txid]) == [true]
            {
                return false;
            }
            WaitsFor::Transaction(missing.txid)
        } else if let Some(height) = error.mature_at() {
            WaitsFor::Height(height)
        } else {
            return false;
        };
        core.parked.park(transaction, time_ms, waits_for);
        true
    }

    /// Returns to the pool the parked payments that `block`, connected at `height`,
    /// brings a parent of or lets mature, and then those waiting for them. One that waits
    /// for something else now parks again; one refused for good is forgotten, its store
    /// row removed by `writes`. Returns the txids pooled.
    pub(crate) fn retry_parked(
        &self,
        core: &mut Core,
        block: &Block,
        height: BlockHeight,
        now: u64,
        writes: &mut Vec<PoolWrite>,
    ) -> Vec<Txid> {
        let mut due = core.parked.take_waiting_for_height(height.next());
        for transaction in &block.transactions {
            due.extend(core.parked.take_waiting_on(&transaction.compute_txid()));
        }
        self.retry_due(core, due, height, now, writes)
    }

    /// Returns to the pool the parked payments whose parent the pool now holds (relayed,
    /// submitted, or back from a disconnected block): what no block woke.
    fn retry_parked_on_pooled_parents(
        &self,
        core: &mut Core,
        now: u64,
        writes: &mut Vec<PoolWrite>,
    ) -> Vec<Txid> {
        let parents: Vec<Txid> = core
            .parked
            .waited_for()
            .filter(|parent| core.mempool.contains(parent))
            .collect();
        let mut due = Vec::new();
        for parent in &parents {
            due.extend(core.parked.take_waiting_on(parent));
        }
        let height = core.chain.tip().height;
        self.retry_due(core, due, height, now, writes)
    }

    /// Admits `due` (parked payments taken out, with their acceptance times), then those
    /// waiting for each one admitted; the tip is at `height`. See
    /// [`Node::retry_parked`].
    fn retry_due(
        &self,
        core: &mut Core,
        mut due: Vec<(Transaction, u64)>,
        height: BlockHeight,
        now: u64,
        writes: &mut Vec<PoolWrite>,
    ) -> Vec<Txid> {
        let mut returned = Vec::new();
        while let Some((transaction, time_ms)) = due.pop() {
            let txid = transaction.compute_txid();
            let result = self.admit_into_pool(
                core,
                transaction.clone(),
                time_ms.min(now),
                Admission::Returning,
            );
            match result {
                Ok(accepted) => {
                    writes.extend(accepted.evicted.into_iter().map(PoolWrite::Remove));
                    returned.push(txid);
                    due.extend(core.parked.take_waiting_on(&txid));
                }
                // Pooled already (submitted again): its row is the pool's.
                Err(NodeError::Mempool(MempoolError::AlreadyInPool { .. })) => {}
                Err(NodeError::Mempool(error)) => {
                    if !self.park_if_it_may_pass(core, transaction, time_ms, &error) {
                        // Refused for good, and with it what waits for it.
                        writes.push(PoolWrite::Remove(txid));
                        writes.extend(core.parked.forget(&txid).into_iter().map(PoolWrite::Remove));
                    }
                }
                // The store could not be read: it waits for the next block.
                Err(error) => {
                    warn!(%txid, %error, "a parked payment could not be retried");
                    core.parked
                        .park(transaction, time_ms, WaitsFor::Height(height.next().next()));
                }
            }
        }
        core.parked.settle();
        returned
    }

    /// Validates `transaction` against the chain tip and the pool and adds it to the pool,
    /// as `admission` says: new (`Mempool::accept`), returning (`Mempool::readmit`), or
    /// kept through a reorganisation (`readmit`, its signatures not checked again).
    pub(crate) fn admit_into_pool(
        &self,
        core: &mut Core,
        transaction: Transaction,
        now: u64,
        admission: Admission,
    ) -> Result<Accepted, NodeError> {
        let missing = core.mempool.coins_to_fetch(&transaction);
        let snapshot = self.reader.snapshot()?;
        let coins = snapshot.coins(missing.iter())?;
        let next_height = core.chain.tip().height.next();
        let verifier = &self.pool_verifier;
        let accepted = match admission {
            Admission::New => {
                core.mempool
                    .accept(transaction, &coins, next_height, now, verifier)?
            }
            Admission::Returning => {
                core.mempool
                    .readmit(transaction, &coins, next_height, now, verifier)?
            }
            Admission::Kept => {
                core.mempool
                    .readmit(transaction, &coins, next_height, now, &CheckedOnEntry)?
            }
        };
        // Pooled by another way (submitted again, or back from a disconnected block): a
        // parked copy waits no more.
        if !core.parked.is_empty() {
            core.parked.remove(&accepted.txid);
        }
        Ok(accepted)
    }

    /// Accepts a transaction into the pool and stores it durably before returning.
    ///
    /// Admission runs under the node's lock; the store's synced write does not: the row is
    /// queued under the lock and the caller waits for the group commit that holds it, so
    /// concurrent submitters (HTTP clients, peers' relays) share their syncs.
    ///
    /// # Errors
    /// [`NodeError::Mempool`] if the pool refuses it, [`NodeError::PoolStore`] if it
    /// could not be stored (it is then taken back out of the pool).
    pub fn submit_transaction(&self, transaction: Transaction) -> Result<Accepted, NodeError> {
        let now = self.clock.now_ms();
        let (accepted, queued) = {
            let mut core = lock(&self.core);
            self.accept_and_queue(&mut core, transaction, now)?
        };
        self.await_stored(&accepted, queued)?;
        self.publish(NodeEvent::TransactionAccepted {
            txid: accepted.txid,
        });
        Ok(accepted)
    }

    /// Accepts a transaction a peer relayed. Like [`Node::submit_transaction`], except that
    /// it does not wait for the disk: nobody was promised this transaction is stored (the
    /// peer keeps it), so its row goes with the next commit and the peer's session reads on
    /// instead of waiting for a sync per transaction.
    ///
    /// # Errors
    /// [`NodeError::Mempool`] if the pool refuses it, [`NodeError::Chain`] if the chain
    /// state cannot be read.
    pub fn submit_peer_transaction(&self, transaction: Transaction) -> Result<Accepted, NodeError> {
        self.submit_peer_transactions(vec![transaction])
            .pop()
            .unwrap_or(Err(NodeError::ShuttingDown))
    }

    /// Accepts transactions a peer relayed, in order (a parent before its child), under one
    /// taking of the lock per 64: one result each, in the same order, up to and including
    /// the first that breaks a consensus rule. Nothing after that one is taken from the
    /// peer (it is banned for it), so the results end there. See
    /// [`Node::submit_peer_transaction`].
    pub fn submit_peer_transactions(
        &self,
        transactions: Vec<Transaction>,
    ) -> Vec<Result<Accepted, NodeError>> {
        let mut results = Vec::with_capacity(transactions.len());
        let mut transactions = transactions.into_iter().peekable();
        let mut invalid = false;
        while !invalid && transactions.peek().is_some() {
            let now = self.clock.now_ms();
            let mut rows = Vec::new();
            let mut core = lock(&self.core);
            for transaction in transactions.by_ref().take(SUBMIT_BATCH_PER_LOCK) {
                let stored = transaction.clone();
                let result = self.admit_into_pool(&mut core, transaction, now, Admission::New);
                match &result {
                    Ok(accepted) => rows.extend(store_rows(accepted, stored, now)),
                    Err(NodeError::Mempool(error)) => invalid = error.is_invalid(),
                    Err(_) => {}
                }
                results.push(result);
                if invalid {
                    break;
                }
            }
            // Queued under the lock, as every pool-store write: a block that confirms one
            // of them next queues its removal after its row.
            self.pool_store.queue_unawaited(rows);
            drop(core);
        }
        for accepted in results.iter().flatten() {
            self.publish(NodeEvent::TransactionAccepted {
                txid: accepted.txid,
            });
        }
        results
    }

    /// Accepts many transactions, in order (a parent before its child), and stores them
    /// durably before returning: one result per transaction, in the same order.
    ///
    /// The lock is taken for 64 admissions at a time, so blocks and other submitters get in
    /// between, and the rows share group commits. If a commit fails, what it held leaves
    /// the pool with its descendants, and a later transaction of the batch that left with
    /// them is reported as not stored either.
    pub fn submit_transactions(
        &self,
        transactions: Vec<Transaction>,
    ) -> Vec<Result<Accepted, NodeError>> {
        self.await_admissions(self.admit_transactions(transactions))
    }

    /// The first half of [`Node::submit_transactions`]: admits `transactions` in order and
    /// queues their rows, without waiting for them to be stored. A caller that admits
    /// several batches in order can wait for one batch's commit while it admits the next.
    /// Nothing is acknowledged yet: pass the result to [`Node::await_admissions`].
    pub fn admit_transactions(&self, transactions: Vec<Transaction>) -> Admissions {
        let mut admitted: Vec<Result<(Accepted, Queued), NodeError>> =
            Vec::with_capacity(transactions.len());
        let mut transactions = transactions.into_iter().peekable();
        while transactions.peek().is_some() {
            let now = self.clock.now_ms();
            let mut core = lock(&self.core);
            for transaction in transactions.by_ref().take(SUBMIT_BATCH_PER_LOCK) {
                admitted.push(self.accept_and_queue(&mut core, transaction, now));
            }
        }
        Admissions(admitted)
    }

    /// The second half of [`Node::submit_transactions`]: waits until the rows of
    /// `admissions` are stored, and gives one result per transaction, in order.
    pub fn await_admissions(&self, admissions: Admissions) -> Vec<Result<Accepted, NodeError>> {
        admissions
            .0
            .into_iter()
            .map(|admission| {
                let (accepted, queued) = admission?;
                self.await_stored(&accepted, queued)?;
                self.publish(NodeEvent::TransactionAccepted {
                    txid: accepted.txid,
                });
                Ok(accepted)
            })
            .collect()
    }

    /// Admits `transaction` and queues its store row (and the removal of what it evicted);
    /// the caller releases its locks and then calls [`Node::await_stored`].
    pub(crate) fn accept_and_queue(
        &self,
        core: &mut Core,
        transaction: Transaction,
        now: u64,
    ) -> Result<(Accepted, Queued), NodeError> {
        // Read first: a failed commit counted after this may have held a transaction
        // this one spends, and is checked for when the row is stored; one counted before
        // has its transactions in the store's unstored set, checked here.
        let failed_commits = self.pool_store.failed_commits();
        if let Some(parent) = self.unstored_pooled_parent(core, &transaction) {
            return Err(unstored_parent(transaction.compute_txid(), parent));
        }
        let stored = transaction.clone();
        let accepted = self.admit_into_pool(core, transaction, now, Admission::New)?;
        // The transaction may spend coins of peers' blocks not yet synced; acknowledging
        // it must not outlive them (a restart would drop it as spending missing coins).
        if core.chain.has_unsynced_changes()
            && let Err(error) = core.chain.sync()
        {
            core.mempool.remove_with_descendants([accepted.txid]);
            // What it evicted has left the pool for good: its rows go too.
            self.pool_store.remove(&accepted.evicted);
            return Err(error.into());
        }
        let queued = Queued {
            failed_commits,
            ticket: self.pool_store.queue(store_rows(&accepted, stored, now)),
        };
        Ok((accepted, queued))
    }

    /// Waits (holding no lock) until the row `accept_and_queue` queued for `accepted` is
    /// stored, then checks that a restart would bring the transaction back: every pooled
    /// transaction it spends must be stored too. If its commit failed, the transaction
    /// leaves the pool again with whatever spent it meanwhile; if a transaction it spends
    /// could not be stored (its commit failed while this one's queued, or it was a peer's
    /// whose commit failed earlier), this one leaves the pool with its descendants.
    /// Nothing is acknowledged that a restart would not bring back.
    pub(crate) fn await_stored(
        &self,
        accepted: &Accepted,
        queued: Queued,
    ) -> Result<(), NodeError> {
        let txid = accepted.txid;
        if let Err(error) = self.pool_store.wait(queued.ticket) {
            let removed = self.take_out_unstored(txid, false, &accepted.evicted);
            warn!(
                %txid,
                removed = removed.len(),
                %error,
                "took a transaction back out of the pool: it could not be stored"
            );
            return Err(error);
        }
        let core = lock(&self.core);
        if core.mempool.contains(&txid) {
            let Some(parent) = self.unstored_ancestor(&core, &txid) else {
                return Ok(());
            };
            drop(core);
            let removed = self.take_out_unstored(txid, true, &[]);
            warn!(
                %txid,
                %parent,
                removed = removed.len(),
                "took a transaction back out of the pool: a transaction it spends could not \
                 be stored"
            );
            return Err(unstored_parent(txid, parent));
        }
        drop(core);
        // It left the pool. With no failed commit since its row was queued (a failure
        // before that refused it at admission), that was a block confirming it or better
        // payments pushing it out, as could happen a moment after any acknowledgement.
        // After a failed commit it may have left with a transaction it spends that could
        // not be stored: then only a block that confirms it makes it kept.
        if self.pool_store.failed_commits() == queued.failed_commits
            || self.transactions_confirmed(&[txid]) == [true]
        {
            return Ok(());
        }
        Err(NodeError::PoolStore {
            detail: format!(
                "{txid} left the pool while the pool store was failing, with a transaction \
                 it spends that could not be stored"
            ),
        })
    }

    /// A pooled transaction `transaction` spends, or one of their pooled ancestors, whose
    /// row a failed commit held, if any.
    fn unstored_pooled_parent(&self, core: &Core, transaction: &Transaction) -> Option<Txid> {
        if !self.pool_store.has_unstored() {
            return None;
        }
        let mut pooled = HashSet::new();
        for input in transaction.spends() {
            let parent = input.prevout.txid;
            if core.mempool.contains(&parent) && pooled.insert(parent) {
                pooled.extend(core.mempool.ancestors(&parent));
            }
        }
        self.pool_store.first_unstored(&pooled)
    }

    /// A pooled ancestor of `txid` whose row a failed commit held, if any.
    fn unstored_ancestor(&self, core: &Core, txid: &Txid) -> Option<Txid> {
        if !self.pool_store.has_unstored() {
            return None;
        }
        self.pool_store
            .first_unstored(&core.mempool.ancestors(txid))
    }

    /// Takes `txid` and its descendants out of the pool, and their rows out of the store
    /// (a descendant's commit may have succeeded; `txid`'s own, if `own_row_stored`), and
    /// the rows of what its admission `evicted` if its commit (which held their removal)
    /// failed: they left the pool for good, and a restart must not bring them back. One
    /// pooled again since keeps its row.
    fn take_out_unstored(&self, txid: Txid, own_row_stored: bool, evicted: &[Txid]) -> Vec<Txid> {
        let mut core = lock(&self.core);
        let removed = core.mempool.remove_with_descendants([txid]);
        let mut rows: Vec<Txid> = removed
            .iter()
            .copied()
            .filter(|removed| own_row_stored || *removed != txid)
            .collect();
        rows.extend(
            evicted
                .iter()
                .copied()
                .filter(|evicted| !core.mempool.contains(evicted)),
        );
        self.pool_store.remove(&rows);
        // Out of the pool, it no longer stands against a transaction spending it: if it
        // comes back, its row is queued again.
        self.pool_store.forget_unstored(&removed);
        removed
    }

    /// Signature checks remembered as passed by the pool and not yet met again in a block.
    pub fn signature_cache_entries(&self) -> usize {
        self.pool_verifier.cache().len()
    }

    /// Drops pooled (and parked) transactions older than the pool's expiry, and returns
    /// to the pool the parked payments whose parent it now holds (a minute's round of
    /// the node's chores: a parent that arrives by relay wakes no block). Returns how
    /// many were dropped.
    pub fn expire_pool(&self) -> usize {
        let now = self.clock.now_ms();
        let mut core = lock(&self.core);
        let mut expired = core.mempool.expire(now);
        let expiry_ms = core.mempool.options().expiry_ms;
        expired.extend(core.parked.take_expired(now, expiry_ms));
        core.parked.settle();
        // Under the lock: the same transaction submitted again next queues its row after
        // this removal.
        self.pool_store.remove(&expired);
        let mut writes = Vec::new();
        let returned = if core.parked.is_empty() {
            Vec::new()
        } else {
            self.retry_parked_on_pooled_parents(&mut core, now, &mut writes)
        };
        self.pool_store.queue_unawaited(writes);
        drop(core);
        for txid in returned {
            self.publish(NodeEvent::TransactionAccepted { txid });
        }
        expired.len()
    }

    /// The pooled transactions, best fee rate first.
    pub fn pool_transactions(&self) -> Vec<PoolEntry> {
        let core = lock(&self.core);
        core.mempool
            .entries_by_fee_rate()
            .into_iter()
            .cloned()
            .collect()
    }

    /// The ids of the pooled transactions in arrival order (parents before children): what
    /// the relay announces to every peer after it fell behind the node's events.
    /// One pass under the lock at 32 bytes a transaction, where [`Node::pool_transactions`]
    /// clones every entry: a stranger who connects again and again must not cost the node
    /// a copy of its pool each time.
    pub fn pool_txids(&self) -> Vec<Txid> {
        lock(&self.core)
            .mempool
            .entries_by_arrival()
            .into_iter()
            .map(|entry| entry.txid)
            .collect()
    }

    /// At most `max` pooled ids in arrival order (parents before children), from the first
    /// that arrived after the page `after` ended (`None`: from the first), and where the
    /// next page starts (`None` once the walk has reached the end of the pool). One short
    /// hold of the lock a page, which costs the page: what a peer is offered of the pool
    /// at its handshake, so a stranger connecting again and again costs the node pages it
    /// must read, not a pass over the whole pool each time.
    pub fn pool_txids_page(
        &self,
        after: Option<PoolCursor>,
        max: usize,
    ) -> (Vec<Txid>, Option<PoolCursor>) {
        let page = lock(&self.core)
            .mempool
            .txids_by_arrival(after.map(|cursor| cursor.0), max);
        let next = match page.last() {
            Some((number, _)) if page.len() == max => Some(PoolCursor(*number)),
            _ => None,
        };
        (page.into_iter().map(|(_, txid)| txid).collect(), next)
    }

    /// A window of the pool, best fee rate first: the entries after the first `offset`, at
    /// most `max_count` of them and up to and including the one whose encoded size brings
    /// the window to `max_bytes`, and whether more follow. Only the window is cloned, so a
    /// reader paging a full pool holds about `max_bytes` of it, not the whole pool, and a
    /// page of one entry clones one.
    pub fn pool_transactions_page(
        &self,
        offset: usize,
        max_count: usize,
        max_bytes: usize,
    ) -> (Vec<PoolEntry>, bool) {
        let core = lock(&self.core);
        // The pool keeps this order: the page costs its offset and its window, not a sort.
        let mut remaining = core.mempool.iter_by_fee_rate().skip(offset);
        let mut page = Vec::new();
        let mut bytes = 0usize;
        while page.len() < max_count {
            let Some(entry) = remaining.next() else {
                break;
            };
            bytes = bytes.saturating_add(entry.size);
            page.push(entry.clone());
            if bytes >= max_bytes {
                break;
            }
        }
        let more = remaining.next().is_some();
        (page, more)
    }

    /// One pooled transaction.
    pub fn pool_transaction(&self, txid: &Txid) -> Option<PoolEntry> {
        lock(&self.core).mempool.get(txid).cloned()
    }

    /// The pooled transactions with the first of these ids, in their order (`None` for one
    /// not pooled), under one lock: up to a thousand in one call. It stops after the
    /// transactions that pass `max_bytes` (at least one id is answered), so a `getdata`
    /// naming large transactions is copied a window at a time, as it is sent.
    pub fn pool_transactions_by_id(
        &self,
        txids: &[Txid],
        max_bytes: usize,
    ) -> Vec<Option<Transaction>> {
        let core = lock(&self.core);
        let mut bytes = 0;
        let mut found = Vec::new();
        for txid in txids {
            if bytes >= max_bytes && !found.is_empty() {
                break;
            }
            let entry = core.mempool.get(txid);
            bytes += entry.map_or(0, |entry| entry.size);
            found.push(entry.map(|entry| entry.transaction.clone()));
        }
        found
    }

    /// The pooled transactions that pay `address` or spend one of `coins`, the oldest
    /// `max` of them, by id: one pass under the lock, nothing cloned but the ids.
    pub fn pool_txids_touching(
        &self,
        address: &Address,
        coins: &HashSet<OutPoint>,
        max: usize,
    ) -> Vec<Txid> {
        lock(&self.core)
            .mempool
            .entries_by_arrival()
            .into_iter()
            .filter(|entry| {
                entry
                    .transaction
                    .outputs
                    .iter()
                    .any(|output| output.address == *address)
                    || entry
                        .transaction
                        .spends()
                        .iter()
                        .any(|input| coins.contains(&input.prevout))
            })
            .map(|entry| entry.txid)
            .take(max)
            .collect()
    }

    /// The outputs these outpoints name among pooled transactions, in their order (`None`
    /// for one whose transaction is not pooled or has no such output), under one lock and
    /// without cloning a transaction: a pooled child's inputs, described.
    pub fn pool_outputs(&self, outpoints: &[OutPoint]) -> Vec<Option<TxOut>> {
        let core = lock(&self.core);
        outpoints
            .iter()
            .map(|outpoint| core.mempool.output(outpoint))
            .collect()
    }

    /// Whether each of these outputs can be spent now: unspent in the chain's UTXO set, or
    /// an output of a pooled transaction (true for every one if the store cannot be read,
    /// so a caller waiting on them tries again rather than waits forever).
    pub fn outputs_available(&self, outpoints: &[OutPoint]) -> Vec<bool> {
        let confirmed = self
            .reader
            .snapshot()
            .and_then(|snapshot| snapshot.coins(outpoints.iter()));
        let Ok(confirmed) = confirmed else {
            return vec![true; outpoints.len()];
        };
        let core = lock(&self.core);
        outpoints
            .iter()
            .map(|outpoint| {
                confirmed.contains_key(outpoint) || core.mempool.output(outpoint).is_some()
            })
            .collect()
    }

    /// The pooled transactions `pick` wants, with the slot it gives each: `pick` sees every
    /// pooled txid under one lock, and only what it picks is cloned. A compact block's
    /// receiver finds its transactions by short id this way.
    pub fn pool_transactions_by(
        &self,
        mut pick: impl FnMut(&Txid) -> Option<usize>,
    ) -> Vec<(usize, Transaction)> {
        let core = lock(&self.core);
        core.mempool
            .iter()
            .filter_map(|entry| pick(&entry.txid).map(|slot| (slot, entry.transaction.clone())))
            .collect()
    }

    /// The transactions `pick` wants among those of the main chain's blocks above
    /// `parent` (at most the last three; coinbases aside), with the slot it gives each. A
    /// compact block that competes with our tip holds payments our own block confirmed
    /// and took out of the pool: it is rebuilt from these, without asking its sender for
    /// most of it. Empty if `parent` is the tip or unknown.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if the store cannot be read.
    pub fn main_chain_transactions_above(
        &self,
        parent: &BlockHash,
        mut pick: impl FnMut(&Txid) -> Option<usize>,
    ) -> Result<Vec<(usize, Transaction)>, NodeError> {
        let snapshot = self.reader.snapshot()?;
        let tip = snapshot.tip()?.record.height.0;
        let Some(parent) = snapshot.index_record(parent)? else {
            return Ok(Vec::new());
        };
        let lowest = (parent.height.0 + 1).max(tip.saturating_sub(COMPETING_BLOCKS_SEARCHED - 1));
        let mut found = Vec::new();
        for height in lowest..=tip {
            let Some(hash) = snapshot.hash_at(BlockHeight(height))? else {
                continue;
            };
            let Some(block) = snapshot.block(&hash)? else {
                continue;
            };
            for transaction in block.transactions.into_iter().skip(1) {
                if let Some(slot) = pick(&transaction.compute_txid()) {
                    found.push((slot, transaction));
                }
            }
        }
        Ok(found)
    }

    /// For each txid, true if a main-chain block holds it (one snapshot for the whole
    /// list; false for all if the store cannot be read).
    pub fn transactions_confirmed(&self, txids: &[Txid]) -> Vec<bool> {
        let Ok(snapshot) = self.reader.snapshot() else {
            return vec![false; txids.len()];
        };
        txids
            .iter()
            .map(|txid| matches!(snapshot.tx_location(txid), Ok(Some(_))))
            .collect()
    }

    /// For each txid, true if the pool holds it (one lock for the whole list).
    pub fn pool_contains(&self, txids: &[Txid]) -> Vec<bool> {
        let core = lock(&self.core);
        txids
            .iter()
            .map(|txid| core.mempool.contains(txid))
            .collect()
    }

    /// Number of pooled transactions and their total size.
    pub fn pool_size(&self) -> (usize, usize) {
        let core = lock(&self.core);
        (core.mempool.len(), core.mempool.total_bytes())
    }

    /// The outpoints the pool spends, for explorers.
    pub fn pool_spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        lock(&self.core).mempool.spender_of(outpoint)
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::testkit::{test_address, test_key};
    use powchain_consensus::{Amount, BlockHash, Network, OutPoint, Txid};
    use powchain_mempool::{MempoolError, PoolEntry};

    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::{Arc, Mutex};

    use crate::error::NodeError;
    use crate::node::Node;
    use crate::testing::{TestNode, output_paying, spend_output};

    /// A funded regtest node with a wallet payment in its pool, and a transaction (not
    /// submitted) spending that payment's output.
    fn pooled_parent_and_its_child() -> (
        TestNode,
        crate::SentPayment,
        powchain_consensus::Transaction,
    ) {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let parent = test.pay_one_coin();
        let child = spend_output(
            &parent.transaction,
            output_paying(&parent.transaction, &test_address(3)),
            &test_key(3),
            test_address(4),
        );
        (test, parent, child)
    }

    #[test]
    fn transactions_by_id_stop_after_the_window_of_bytes_that_passes_the_limit() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let paid: Vec<Txid> = (0..3).map(|_| test.pay_one_coin().txid).collect();
        let absent = Txid([7; 32]);
        let asked = [paid[0], absent, paid[1], paid[2]];
        let ids = |found: Vec<Option<powchain_consensus::Transaction>>| -> Vec<Option<Txid>> {
            found
                .iter()
                .map(|transaction| transaction.as_ref().map(|t| t.compute_txid()))
                .collect()
        };
        let everything = ids(test.node.pool_transactions_by_id(&asked, usize::MAX));
        assert_eq!(
            everything,
            vec![Some(paid[0]), None, Some(paid[1]), Some(paid[2])],
            "in their order, the absent one as None"
        );
        // One byte: the first transaction alone (an answer always makes progress).
        assert_eq!(
            ids(test.node.pool_transactions_by_id(&asked, 1)),
            vec![Some(paid[0])]
        );
        // One transaction's size and one more byte: the window passes it with the second.
        let size = test.node.pool_transaction(&paid[0]).expect("pooled").size;
        assert_eq!(
            ids(test.node.pool_transactions_by_id(&asked, size + 1)),
            vec![Some(paid[0]), None, Some(paid[1])]
        );
    }

    #[test]
    fn concurrent_payments_are_each_stored_before_they_are_acknowledged() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let threads = 4;
        let each = 5;
        let sent: Vec<Txid> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let node = &test.node;
                    scope.spawn(move || {
                        (0..each)
                            .map(|_| {
                                node.send(test_address(10 + thread), Amount::ONE_COIN, None)
                                    .expect("the wallet pays")
                                    .txid
                            })
                            .collect::<Vec<Txid>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("a sender finished"))
                .collect()
        });
        assert_eq!(sent.len(), (threads * each) as usize);
        let mut stored = test.stored_pool_txids();
        let mut expected = sent.clone();
        stored.sort();
        expected.sort();
        assert_eq!(stored, expected, "every acknowledged payment has its row");
        let test = test.reopen();
        for txid in &sent {
            assert!(test.pool_holds(txid), "{txid} comes back after a restart");
        }
    }

    #[test]
    fn a_peer_s_transaction_is_stored_with_the_next_commit_and_comes_back_after_a_restart() {
        let (test, parent, child) = pooled_parent_and_its_child();
        let mut events = test.node.subscribe();
        let accepted = test
            .node
            .submit_peer_transaction(child)
            .expect("it spends a pooled output");
        assert!(
            matches!(
                events.try_recv(),
                Ok(crate::NodeEvent::TransactionAccepted { txid }) if txid == accepted.txid
            ),
            "announced for relay at once"
        );
        let mut stored = test.stored_pool_txids();
        stored.sort();
        let mut expected = vec![parent.txid, accepted.txid];
        expected.sort();
        assert_eq!(stored, expected, "its row follows the parent's");
        let test = test.reopen();
        assert!(test.pool_holds(&accepted.txid));
    }

    #[test]
    fn a_peer_s_batch_is_taken_up_to_its_first_invalid_transaction_and_no_further() {
        let (test, _parent, child) = pooled_parent_and_its_child();
        // The child's output spent with a forged signature, then properly: the pool would
        // take the second, were it tried.
        let mut forged = spend_output(&child, 0, &test_key(4), test_address(5));
        if let powchain_consensus::TxInputs::Spends(inputs) = &mut forged.inputs {
            inputs[0].signature.0[0] ^= 1;
        }
        let after = spend_output(&child, 0, &test_key(4), test_address(6));
        let results =
            test.node
                .submit_peer_transactions(vec![child.clone(), forged, after.clone()]);
        assert_eq!(results.len(), 2, "the results end at the forgery");
        assert!(results[0].is_ok());
        assert!(
            matches!(&results[1], Err(NodeError::Mempool(error)) if error.rule() == "bad-signature"),
            "{:?}",
            results[1]
        );
        assert!(test.pool_holds(&child.compute_txid()));
        assert!(
            !test.pool_holds(&after.compute_txid()),
            "nothing after the forgery is taken from that peer"
        );
    }

    #[test]
    fn a_premature_coinbase_spend_does_not_cut_a_peer_s_batch_short() {
        // Devnet's difficulty falls to its floor when blocks come this late, and its
        // coinbases mature after 10 blocks.
        const EASY_GAP_MS: u64 = 10 * 60 * 1000;
        let test = TestNode::open(Network::Devnet);
        let maturity = test.node.params().coinbase_maturity;
        let mine_paying = |key: u8| {
            test.clock.advance(EASY_GAP_MS);
            test.mine_paying(test_address(key))
        };
        let mature = mine_paying(7);
        for _ in 1..maturity {
            mine_paying(9);
        }
        // Spendable in the next block; the coinbase of the tip is not, here. A peer a
        // block ahead relays a spend of it as soon as that block makes it mature there.
        let premature = mine_paying(8);
        let early = spend_output(&premature.transactions[0], 0, &test_key(8), test_address(5));
        let valid = spend_output(&mature.transactions[0], 0, &test_key(7), test_address(6));
        let results = test
            .node
            .submit_peer_transactions(vec![early.clone(), valid.clone()]);
        assert_eq!(
            results.len(),
            2,
            "the batch goes on past the premature spend"
        );
        assert!(
            matches!(&results[0], Err(NodeError::Mempool(error))
                if error.mature_at().is_some() && !error.is_invalid()),
            "{:?}",
            results[0]
        );
        assert!(results[1].is_ok(), "{:?}", results[1]);
        assert!(test.pool_holds(&valid.compute_txid()));
        assert!(!test.pool_holds(&early.compute_txid()));
    }

    #[test]
    fn a_payment_whose_row_cannot_be_stored_is_refused_and_leaves_the_pool() {
        let (test, parent, child) = pooled_parent_and_its_child();
        test.node.pool_store.fail_commits.store(true, SeqCst);
        let error = test
            .node
            .submit_transaction(child.clone())
            .expect_err("its row was not stored");
        assert!(
            matches!(error, NodeError::PoolStore { .. }) && !error.is_rejection(),
            "{error:?}"
        );
        assert!(error.to_string().contains("injected failure"), "{error}");
        assert!(
            !test.pool_holds(&child.compute_txid()),
            "not acknowledged, not pooled"
        );
        assert!(test.pool_holds(&parent.txid), "the rest of the pool stays");
        assert_eq!(test.stored_pool_txids(), vec![parent.txid]);

        test.node.pool_store.fail_commits.store(false, SeqCst);
        let accepted = test
            .node
            .submit_transaction(child)
            .expect("the same payment is accepted once the store works");
        assert!(test.pool_holds(&accepted.txid));
        assert_eq!(test.stored_pool_txids().len(), 2);
    }

    /// A payment that evicts another from a full pool and then cannot be stored leaves
    /// the pool, and so has the one it evicted; that one's removal was in the commit that
    /// failed, so its row stayed, and a restart brought it back.
    #[test]
    fn what_a_refused_payment_evicted_does_not_come_back_at_a_restart() {
        use powchain_consensus::FeeRate;

        let payment_bytes = 187;
        let test = TestNode::open_configured(
            Network::Regtest,
            crate::testing::ManualClock::starting_at(
                Network::Regtest.params().genesis().header.time_ms + 3_000,
            ),
            |config| config.mempool.max_bytes = payment_bytes + 100,
        );
        test.mine_until_spendable();
        test.mine(false);
        let pay = |units_per_byte: u64| {
            test.node.send(
                test_address(3),
                Amount::ONE_COIN,
                Some(FeeRate::from_units_per_byte(units_per_byte)),
            )
        };
        let evicted = pay(10).expect("the wallet pays");
        assert_eq!(evicted.transaction.compute_size(), payment_bytes);
        assert_eq!(test.stored_pool_txids(), vec![evicted.txid]);

        test.node.pool_store.fail_commits.store(true, SeqCst);
        let error = pay(40).expect_err("its row could not be stored");
        assert!(matches!(error, NodeError::PoolStore { .. }), "{error:?}");
        assert!(
            !test.pool_holds(&evicted.txid),
            "pushed out by the better payment"
        );
        test.node.pool_store.fail_commits.store(false, SeqCst);

        let test = test.reopen();
        assert!(
            !test.pool_holds(&evicted.txid),
            "what left the pool does not come back"
        );
        assert!(test.stored_pool_txids().is_empty());
    }

    /// A regtest node, a transaction `parent` (not submitted) spending a mature coinbase
    /// of a test key, and `child` spending `parent`.
    fn unpooled_parent_and_its_child() -> (
        TestNode,
        powchain_consensus::Transaction,
        powchain_consensus::Transaction,
    ) {
        let test = TestNode::open(Network::Regtest);
        let coinbase = test.mine_paying(test_address(3)).transactions[0].clone();
        test.mine_until_spendable();
        let vout = output_paying(&coinbase, &test_address(3));
        let parent = spend_output(&coinbase, vout, &test_key(3), test_address(4));
        let child = spend_output(&parent, 0, &test_key(4), test_address(5));
        (test, parent, child)
    }

    /// Commits what is queued for the pool store, failing or not.
    fn commit_the_queue(test: &TestNode) {
        let store = &test.node.pool_store;
        let _ = store.wait(store.queue(Vec::new()));
    }

    /// Commits what is queued for the pool store with the commit made to fail.
    fn commit_the_queue_failing(test: &TestNode) {
        test.node.pool_store.fail_commits.store(true, SeqCst);
        commit_the_queue(test);
        test.node.pool_store.fail_commits.store(false, SeqCst);
    }

    #[test]
    fn a_payment_spending_a_peer_s_transaction_that_could_not_be_stored_is_refused() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        test.node.pool_store.fail_commits.store(true, SeqCst);
        test.node
            .submit_peer_transaction(parent.clone())
            .expect("a peer's transaction is pooled without waiting for its row");
        commit_the_queue(&test);
        assert_eq!(test.node.pool_store.failed_commits(), 1);
        test.node.pool_store.fail_commits.store(false, SeqCst);

        // The child's own row is stored, but a restart would drop it: the parent's is not.
        let error = test
            .node
            .submit_transaction(child.clone())
            .expect_err("not acknowledged");
        assert!(matches!(error, NodeError::PoolStore { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&parent.compute_txid().to_string()),
            "{error}"
        );
        assert!(!test.pool_holds(&child.compute_txid()));
        assert!(test.pool_holds(&parent.compute_txid()), "the peer keeps it");
        assert_eq!(test.stored_pool_txids(), Vec::<Txid>::new());
    }

    #[test]
    fn a_payment_is_not_acknowledged_when_its_parent_s_commit_failed_first() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        let now = crate::clock::Clock::now_ms(test.clock.as_ref());
        // The parent's submitter queued its row; its commit fails, and before that
        // submitter takes the parent back out, a second submitter's child is admitted and
        // its own commit succeeds.
        let (accepted, queued) = {
            let mut core = crate::node::lock(&test.node.core);
            test.node
                .accept_and_queue(&mut core, parent.clone(), now)
                .expect("admitted")
        };
        commit_the_queue_failing(&test);
        let error = test
            .node
            .submit_transaction(child.clone())
            .expect_err("the child spends a payment that was not stored");
        assert!(matches!(error, NodeError::PoolStore { .. }), "{error:?}");
        assert!(!test.pool_holds(&child.compute_txid()));

        let error = test
            .node
            .await_stored(&accepted, queued)
            .expect_err("the parent's commit failed");
        assert!(error.to_string().contains("injected failure"), "{error}");
        assert!(!test.pool_holds(&parent.compute_txid()));
        assert_eq!(test.stored_pool_txids(), Vec::<Txid>::new());

        // Once the store works, both are accepted and kept.
        test.node.submit_transaction(parent).expect("accepted");
        test.node.submit_transaction(child).expect("accepted");
        assert_eq!(test.stored_pool_txids().len(), 2);
    }

    #[test]
    fn a_transaction_whose_commit_failed_does_not_stand_against_a_child_once_pooled_again() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        test.node.pool_store.fail_commits.store(true, SeqCst);
        test.node
            .submit_transaction(parent.clone())
            .expect_err("the parent's commit fails");
        test.node.pool_store.fail_commits.store(false, SeqCst);
        // A peer's copy of the parent is pooled again and its row queued; the client's
        // child comes before that row's commit, so its admission sees the parent stored.
        test.node
            .submit_peer_transaction(parent.clone())
            .expect("pooled");
        test.node
            .submit_transaction(child.clone())
            .expect("its parent's row is committed with it");
        assert_eq!(test.stored_pool_txids().len(), 2);
    }

    #[test]
    fn a_child_queued_while_its_parent_s_commit_fails_is_not_acknowledged() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        let now = crate::clock::Clock::now_ms(test.clock.as_ref());
        let admit = move |node: &Node, transaction: &powchain_consensus::Transaction| {
            let mut core = crate::node::lock(&node.core);
            node.accept_and_queue(&mut core, transaction.clone(), now)
                .expect("admitted")
        };
        let (parent_accepted, parent_queued) = admit(&test.node, &parent);
        // The child is admitted (its parent pooled, not yet known unstored) and queued
        // while the parent's commit runs; that commit fails, the child's next one will not.
        let child_admitted = Arc::new(Mutex::new(None));
        {
            let (node, child, child_admitted) = (
                Arc::clone(&test.node),
                child.clone(),
                Arc::clone(&child_admitted),
            );
            *test
                .node
                .pool_store
                .before_next_commit
                .lock()
                .expect("not poisoned") = Some(Box::new(move || {
                *child_admitted.lock().expect("not poisoned") = Some(admit(&node, &child));
            }));
        }
        commit_the_queue_failing(&test);
        let (child_accepted, child_queued) = child_admitted
            .lock()
            .expect("not poisoned")
            .take()
            .expect("admitted during the parent's commit");

        // The parent's submitter takes it out (with the child) before the child's
        // submitter is answered.
        test.node
            .await_stored(&parent_accepted, parent_queued)
            .expect_err("the parent's commit failed");
        let error = test
            .node
            .await_stored(&child_accepted, child_queued)
            .expect_err("the child left the pool with its parent");
        assert!(error.to_string().contains("left the pool"), "{error}");
        assert!(!test.pool_holds(&child.compute_txid()));
        assert_eq!(test.stored_pool_txids(), Vec::<Txid>::new());
    }

    #[test]
    fn the_pool_walked_in_pages_of_ids_is_the_pool_in_arrival_order() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let pay = |recipient| {
            test.node
                .send(test_address(recipient), Amount::ONE_COIN, None)
                .expect("the wallet pays");
        };
        for recipient in 1..=4 {
            pay(recipient);
        }
        let (first, after) = test.node.pool_txids_page(None, 2);
        assert_eq!(first.len(), 2);
        let after = after.expect("more follow a full page");
        // One arriving in the middle of the walk comes after the rest.
        pay(5);
        let (second, after) = test.node.pool_txids_page(Some(after), 2);
        let (third, end) = test.node.pool_txids_page(after, 2);
        assert_eq!(third.len(), 1);
        assert_eq!(end, None, "a page shorter than asked ends the walk");
        let walked = [first, second, third].concat();
        assert_eq!(
            walked,
            test.node.pool_txids(),
            "all of it, in arrival order"
        );
        // A full last page says more may follow, and the next one is empty.
        let (all, after) = test.node.pool_txids_page(None, 5);
        assert_eq!(all, walked);
        assert_eq!(test.node.pool_txids_page(after, 5), (Vec::new(), None));
    }

    #[test]
    fn a_pool_page_clones_a_window_by_fee_rate_up_to_its_bytes() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        for recipient in 1..=3 {
            test.node
                .send(test_address(recipient), Amount::ONE_COIN, None)
                .expect("the wallet pays");
        }
        let whole: Vec<Txid> = test
            .node
            .pool_transactions()
            .iter()
            .map(|entry| entry.txid)
            .collect();
        assert_eq!(whole.len(), 3);
        let mut ids = test.node.pool_txids();
        ids.sort_unstable();
        let mut sorted = whole.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "pool_txids names the same transactions");
        let txids = |(page, more): (Vec<PoolEntry>, bool)| {
            (
                page.iter().map(|entry| entry.txid).collect::<Vec<_>>(),
                more,
            )
        };
        assert_eq!(
            txids(test.node.pool_transactions_page(0, usize::MAX, usize::MAX)),
            (whole.clone(), false)
        );
        assert_eq!(
            txids(test.node.pool_transactions_page(0, 2, usize::MAX)),
            (whole[..2].to_vec(), true),
            "at most the count asked for"
        );
        assert_eq!(
            txids(test.node.pool_transactions_page(0, usize::MAX, 1)),
            (whole[..1].to_vec(), true)
        );
        let first_size = test.node.pool_transactions()[0].size;
        assert_eq!(
            txids(
                test.node
                    .pool_transactions_page(0, usize::MAX, first_size + 1)
            ),
            (whole[..2].to_vec(), true),
            "the entry that reaches the bytes is taken"
        );
        assert_eq!(
            txids(test.node.pool_transactions_page(1, usize::MAX, usize::MAX)),
            (whole[1..].to_vec(), false)
        );
        assert_eq!(
            txids(test.node.pool_transactions_page(3, usize::MAX, 1)),
            (Vec::new(), false)
        );
    }

    /// A funded regtest node with a parent (a wallet payment) and its child in the pool,
    /// the child stored with the earlier time: the clock was set back between them, so the
    /// store lists the child first. Returns the node, the parent's and the child's txids
    /// and the times they were stored at.
    fn child_stored_before_parent() -> (TestNode, Txid, Txid, u64, u64) {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let child_time = test.node.now_ms();
        let parent_time = child_time + 10_000;
        test.clock.set(parent_time);
        let parent = test.pay_one_coin();
        test.clock.set(child_time);
        let child = spend_output(
            &parent.transaction,
            output_paying(&parent.transaction, &test_address(3)),
            &test_key(3),
            test_address(4),
        );
        let child_txid = test
            .node
            .submit_transaction(child)
            .expect("the child spends its pooled parent")
            .txid;
        (test, parent.txid, child_txid, parent_time, child_time)
    }

    #[test]
    fn restore_readmits_a_child_stored_before_its_parent() {
        let (test, parent, child, _, _) = child_stored_before_parent();
        let test = test.reopen();
        assert!(test.pool_holds(&parent), "the parent is restored");
        assert!(
            test.pool_holds(&child),
            "the child, met before its parent, is retried once the parent is in"
        );
        assert_eq!(test.stored_pool_txids().len(), 2, "both stay stored");
    }

    #[test]
    fn restored_arrival_time_is_the_earlier_of_stored_and_now() {
        let (test, parent, child, parent_time, child_time) = child_stored_before_parent();
        // Between the two stored times: the parent's lies in the future of this clock.
        let reopen_time = child_time + 5_000;
        test.clock.set(reopen_time);
        let test = test.reopen();
        let arrival = |txid: &Txid| test.node.pool_transaction(txid).expect("restored").time_ms;
        assert_eq!(
            arrival(&child),
            child_time,
            "the stored time, earlier than now"
        );
        assert_eq!(
            arrival(&parent),
            reopen_time,
            "now, earlier than the stored {parent_time}"
        );
    }

    #[test]
    fn restore_drops_and_forgets_a_transaction_that_expired_while_the_node_was_down() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let stored_time = test.node.now_ms();
        let payment = test.pay_one_coin();
        test.clock
            .set(stored_time + test.node.config().mempool.expiry_ms + 1);
        let test = test.reopen();
        assert!(!test.pool_holds(&payment.txid), "expired, so not restored");
        assert!(
            test.stored_pool_txids().is_empty(),
            "and its store row is gone"
        );
    }

    #[test]
    fn a_rival_of_the_tip_finds_the_payments_our_latest_blocks_confirmed() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let payment = test.pay_one_coin();
        let block = test.mine(true);
        assert!(
            !test.pool_holds(&payment.txid),
            "confirmed, so out of the pool"
        );
        let coinbase = block.transactions[0].compute_txid();
        let pick = |txid: &Txid| {
            if *txid == payment.txid {
                Some(7)
            } else if *txid == coinbase {
                Some(0)
            } else {
                None
            }
        };

        let rival = test
            .node
            .main_chain_transactions_above(&block.header.prev_hash, pick)
            .expect("the store reads");
        assert_eq!(rival, vec![(7, payment.transaction.clone())], "no coinbase");
        let on_tip = test
            .node
            .main_chain_transactions_above(&block.header.compute_hash(), pick)
            .expect("the store reads");
        assert!(
            on_tip.is_empty(),
            "a block on the tip competes with nothing"
        );
        let above = |parent: &BlockHash| {
            test.node
                .main_chain_transactions_above(parent, pick)
                .expect("the store reads")
        };
        assert!(above(&BlockHash([9; 32])).is_empty(), "an unknown parent");
        test.mine(false);
        test.mine(false);
        assert_eq!(
            above(&block.header.prev_hash),
            rival,
            "a rival three blocks back finds it too"
        );
        test.mine(false);
        assert!(
            above(&block.header.prev_hash).is_empty(),
            "only the latest three blocks are read"
        );
    }

    #[test]
    fn restore_drops_and_forgets_a_transaction_the_chain_already_confirmed() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let payment = test.pay_one_coin();
        assert_eq!(test.stored_pool_txids(), vec![payment.txid]);
        let mut stored_pool = Vec::new();
        let test = test.reopen_after(|config| {
            stored_pool = std::fs::read(config.pool_path()).expect("the pool store reads");
        });
        let block = test.mine(true);
        assert!(block.transactions.contains(&payment.transaction));
        assert!(
            test.stored_pool_txids().is_empty(),
            "confirmed, so forgotten"
        );
        // A crash may lose that removal: it is written without waiting for the disk.
        let test = test.reopen_after(|config| {
            std::fs::write(config.pool_path(), &stored_pool).expect("the pool store writes");
        });
        assert!(!test.pool_holds(&payment.txid), "its coins are spent");
        assert!(
            test.stored_pool_txids().is_empty(),
            "and its store row is gone"
        );
    }

    #[test]
    fn a_reindex_keeps_stored_payments_for_the_start_after_the_chain_is_back() {
        let test = TestNode::open(Network::Regtest);
        let blocks = test.mine_until_spendable();
        let payment = test.pay_one_coin();
        let test = test.reopen_configured(|config| config.reindex = true);
        assert_eq!(
            test.node.tip().height,
            powchain_consensus::BlockHeight::GENESIS
        );
        assert!(
            !test.pool_holds(&payment.txid),
            "its coin is not on the new chain"
        );
        assert_eq!(
            test.stored_pool_txids(),
            vec![payment.txid],
            "but the acknowledged payment is not forgotten"
        );
        // Stopped before the chain is back, and started without `--reindex` (as after a
        // chain restored from an older backup): the payment still waits.
        let test = test.reopen_configured(|config| config.reindex = false);
        assert_eq!(test.stored_pool_txids(), vec![payment.txid]);
        assert!(!test.pool_holds(&payment.txid));

        // It returns to the pool with the block of the coin it spends, no restart.
        test.submit_blocks(&blocks);
        assert!(test.pool_holds(&payment.txid), "back in the pool");
        assert_eq!(test.stored_pool_txids(), vec![payment.txid]);
        let balance = test.node.wallet_balance().expect("a balance");
        assert_eq!(
            balance.unconfirmed_outgoing, balance.confirmed,
            "the coin it spends is not the wallet's to spend again: {balance:?}"
        );
    }

    #[test]
    fn the_wallet_does_not_spend_again_a_coin_a_waiting_payment_spends() {
        let test = TestNode::open(Network::Regtest);
        let blocks: Vec<powchain_consensus::Block> = (0..3).map(|_| test.mine(false)).collect();
        let sixty_coins = Amount::from_units(60 * Amount::ONE_COIN.to_units()).expect("in range");
        let payment = test
            .node
            .send(test_address(3), sixty_coins, None)
            .expect("the wallet pays from two coinbases");
        let spent: Vec<OutPoint> = payment
            .transaction
            .spends()
            .iter()
            .map(|input| input.prevout)
            .collect();
        assert_eq!(spent.len(), 2);
        let test = test.reopen_configured(|config| config.reindex = true);

        // The chain comes back a block at a time: while the payment waits for its second
        // coin, the first is back on the chain and must not be spendable again.
        let mut waited_with_a_coin_back = false;
        for (index, block) in blocks.iter().enumerate() {
            test.submit_blocks(std::slice::from_ref(block));
            if test.pool_holds(&payment.txid) {
                break;
            }
            let back: Amount = blocks[..=index]
                .iter()
                .map(|block| &block.transactions[0])
                .filter(|coinbase| spent.iter().any(|out| out.txid == coinbase.compute_txid()))
                .map(|coinbase| coinbase.outputs[0].value)
                .fold(Amount::ZERO, |total, value| {
                    total.checked_add(value).expect("small")
                });
            let balance = test.node.wallet_balance().expect("a balance");
            assert_eq!(balance.unconfirmed_outgoing, back, "{balance:?}");
            waited_with_a_coin_back |= back > Amount::ZERO;
        }
        assert!(
            waited_with_a_coin_back,
            "the payment waited with one coin back"
        );
        assert!(test.pool_holds(&payment.txid), "back once both coins are");
    }

    #[test]
    fn a_stored_child_of_a_payment_refused_at_start_is_forgotten_with_it() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        test.node
            .submit_transaction(parent.clone())
            .expect("accepted");
        test.node
            .submit_transaction(child.clone())
            .expect("accepted");
        // Started again with a pool minimum neither pays: the parent is refused, and the
        // child, missing it, can never pass either. It does not wait a day for it.
        let test = test.reopen_configured(|config| {
            config.mempool.min_fee_rate =
                powchain_consensus::FeeRate::from_units_per_byte(1_000_000);
        });
        assert!(!test.pool_holds(&parent.compute_txid()));
        assert!(!test.pool_holds(&child.compute_txid()));
        assert!(crate::node::lock(&test.node.core).parked.is_empty());
        assert_eq!(test.stored_pool_txids(), Vec::<Txid>::new());
    }

    #[test]
    fn a_parked_payment_pooled_by_another_way_keeps_its_row_when_its_parent_confirms() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        let missing = MempoolError::Invalid(powchain_consensus::ConsensusError::MissingInput {
            outpoint: child.spends()[0].prevout,
        });
        {
            let mut core = crate::node::lock(&test.node.core);
            assert!(
                test.node
                    .park_if_it_may_pass(&mut core, child.clone(), 0, &missing)
            );
        }
        // Its parent, then the payment itself, are submitted again by their owner.
        test.node
            .submit_transaction(parent.clone())
            .expect("accepted");
        test.node
            .submit_transaction(child.clone())
            .expect("accepted");
        let mut core = crate::node::lock(&test.node.core);
        assert!(
            !core.parked.contains(&child.compute_txid()),
            "pooled, not parked"
        );
        // A block confirming the parent wakes nothing that would remove the child's row.
        let mut block = test.node.params().genesis().clone();
        block.transactions.push(parent.clone());
        let mut writes = Vec::new();
        let height = core.chain.tip().height;
        test.node
            .retry_parked(&mut core, &block, height, 0, &mut writes);
        assert!(writes.is_empty(), "no row removed");
        assert!(core.mempool.contains(&child.compute_txid()));
    }

    #[test]
    fn a_parked_payment_whose_parent_enters_the_pool_returns_at_the_next_chores() {
        let (test, parent, child) = unpooled_parent_and_its_child();
        let missing = MempoolError::Invalid(powchain_consensus::ConsensusError::MissingInput {
            outpoint: child.spends()[0].prevout,
        });
        {
            let now = crate::clock::Clock::now_ms(test.clock.as_ref());
            let mut core = crate::node::lock(&test.node.core);
            assert!(
                test.node
                    .park_if_it_may_pass(&mut core, child.clone(), now, &missing)
            );
        }
        test.node
            .submit_peer_transaction(parent)
            .expect("a peer relays the parent");
        assert!(!test.pool_holds(&child.compute_txid()), "no block woke it");
        assert_eq!(test.node.expire_pool(), 0);
        assert!(
            test.pool_holds(&child.compute_txid()),
            "the chores' round did"
        );
        assert!(crate::node::lock(&test.node.core).parked.is_empty());
    }

    #[test]
    fn a_stored_payment_waits_only_for_what_may_still_come() {
        let test = TestNode::open(Network::Regtest);
        let coinbase = test.mine_paying(test_address(3));
        let block = test.mine(false);
        let coinbase = &coinbase.transactions[0];
        let confirmed = coinbase.compute_txid();
        let vout = output_paying(coinbase, &test_address(3));
        let payment = spend_output(coinbase, vout, &test_key(3), test_address(4));
        let missing = |txid| {
            MempoolError::Invalid(powchain_consensus::ConsensusError::MissingInput {
                outpoint: OutPoint { txid, vout: 7 },
            })
        };
        let mut core = crate::node::lock(&test.node.core);
        // Its coin's transaction is confirmed, the coin gone: spent, it can never pass.
        assert!(
            !test
                .node
                .park_if_it_may_pass(&mut core, payment.clone(), 0, &missing(confirmed))
        );
        // A parent the chain does not know may still come.
        assert!(test.node.park_if_it_may_pass(
            &mut core,
            payment.clone(),
            0,
            &missing(Txid([3; 32]))
        ));
        assert!(core.parked.contains(&payment.compute_txid()));
        // A refusal no block can lift does not wait.
        let fee = MempoolError::FeeRateTooLow {
            got: powchain_consensus::FeeRate::ZERO,
            min: powchain_consensus::FeeRate::ZERO,
        };
        assert!(
            !test
                .node
                .park_if_it_may_pass(&mut core, payment.clone(), 0, &fee)
        );

        // A coinbase that matures later (on a chain shorter than when it was accepted)
        // is waited for: the payment returns with the block that lets it be spent next.
        core.parked = crate::parked::Parked::default();
        let immature =
            MempoolError::Invalid(powchain_consensus::ConsensusError::ImmatureCoinbaseSpend {
                outpoint: OutPoint {
                    txid: confirmed,
                    vout,
                },
                created: powchain_consensus::BlockHeight(1),
                spend_height: powchain_consensus::BlockHeight(3),
                maturity: 4,
            });
        assert!(
            test.node
                .park_if_it_may_pass(&mut core, payment.clone(), 0, &immature)
        );
        let mut writes = Vec::new();
        let retry = |core: &mut crate::node::Core, height, writes: &mut Vec<_>| {
            test.node.retry_parked(
                core,
                &block,
                powchain_consensus::BlockHeight(height),
                0,
                writes,
            )
        };
        assert!(
            retry(&mut core, 3, &mut writes).is_empty(),
            "due at height 5"
        );
        assert_eq!(
            retry(&mut core, 4, &mut writes),
            vec![payment.compute_txid()]
        );
        assert!(core.mempool.contains(&payment.compute_txid()) && core.parked.is_empty());
        assert!(writes.is_empty(), "its row stays");
    }

    #[test]
    fn expiry_drops_a_transaction_with_its_descendants_and_their_store_rows() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let parent_time = test.node.now_ms();
        let parent = test.pay_one_coin();
        test.clock.advance(1_000);
        let child = spend_output(
            &parent.transaction,
            output_paying(&parent.transaction, &test_address(3)),
            &test_key(3),
            test_address(4),
        );
        test.node.submit_transaction(child).expect("accepted");
        let expiry_ms = test.node.config().mempool.expiry_ms;

        test.clock.set(parent_time + expiry_ms);
        assert_eq!(test.node.expire_pool(), 0, "not older than the expiry yet");
        assert_eq!(test.node.pool_size().0, 2);

        test.clock.set(parent_time + expiry_ms + 1);
        assert_eq!(
            test.node.expire_pool(),
            2,
            "the parent expired; its child cannot be mined without it"
        );
        assert_eq!(test.node.pool_size().0, 0);
        assert!(
            test.stored_pool_txids().is_empty(),
            "their store rows are gone"
        );
        let test = test.reopen();
        assert_eq!(
            test.node.pool_size().0,
            0,
            "nothing comes back at a restart"
        );
    }
}
