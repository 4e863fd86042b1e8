//! `Mempool`: the pool itself. Admission, the indexes that keep every query cheap, and
//! every way a transaction leaves (block, conflict, expiry, eviction, reorg).
//!
//! ```text
//!   accept(tx, chain coins) ─▶ already pooled? ─▶ double spend of a pooled input? (Conflict)
//!     ─▶ validate_transaction over PoolOverlay (signatures deferred)
//!     ─▶ policy: size, fee rate, ancestor count, room (cheap PoolFull check)
//!     ─▶ signatures ─▶ evict cheaper packages if full (undone on PoolFull) ─▶ link entry
//!
//!   leaves by: remove_for_block (confirmed: alone; conflicting: with descendants)
//!              expire (with descendants) │ eviction (with descendants) │ take_all (everything)
//! ```
//!
//! Indexes, all updated together by `link_entry` and `remove_entries`, the only functions
//! that add or remove single entries (`take_all` clears them all at once):
//! - `entries`: txid → entry, with parent/child links and package totals;
//! - `spenders`: outpoint → the pooled transaction spending it (conflicts, the overlay);
//! - `arrival_order`: arrival number → txid (a topological order; `take_all`, listings);
//! - `entry_times`: (time, arrival) (expiry, oldest first);
//! - `eviction_order`: descendant-package score, lowest first (eviction);
//! - `listing_order`: ancestor-package score, lowest first (listings best first, read
//!   backwards: a page of the pool costs its place in it, not a sort of the whole pool).
//!
//! Submodules: `eviction` (making room in a full pool), and for tests `invariants` (every
//! index and total recomputed from scratch), `tests` (scenarios) and `proptests` (random
//! operation sequences).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use powchain_consensus::signature::{SignatureCheck, SignatureVerifier};
use powchain_consensus::validation::{validate_transaction, validate_transaction_stateless};
use powchain_consensus::{
    Address, Amount, Block, BlockHeight, ConsensusError, FeeRate, OutPoint, Params, Transaction,
    TxOut, Txid, UtxoView,
};
use tracing::debug;

use crate::entry::{PackageScore, PackageTotals, PoolEntry};
use crate::error::MempoolError;
use crate::lineage::{Direction, ancestors_of, collect_related, descendants_of};
use crate::options::MempoolOptions;
use crate::overlay::PoolOverlay;
use crate::selection::select_packages;

mod eviction;
#[cfg(test)]
mod invariants;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// What [`Mempool::accept`] admitted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Accepted {
    /// The transaction's txid.
    pub txid: Txid,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// Encoded size in bytes.
    pub size: usize,
    /// `fee` per byte, rounded down.
    pub fee_rate: FeeRate,
    /// Transactions evicted to make room for it, in arrival order.
    pub evicted: Vec<Txid>,
}

/// The node's pool of unconfirmed transactions. See the crate documentation for the rules.
pub struct Mempool {
    params: &'static Params,
    options: MempoolOptions,
    entries: HashMap<Txid, PoolEntry>,
    spenders: HashMap<OutPoint, Txid>,
    arrival_order: BTreeMap<u64, Txid>,
    entry_times: BTreeSet<(u64, u64, Txid)>,
    eviction_order: BTreeSet<PackageScore>,
    listing_order: BTreeSet<PackageScore>,
    total_bytes: usize,
    next_sequence: u64,
}

impl fmt::Debug for Mempool {
    /// A summary: printing every transaction of a full pool would help nobody.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Mempool")
            .field("network", &self.params.network)
            .field("transactions", &self.entries.len())
            .field("total_bytes", &self.total_bytes)
            .field("options", &self.options)
            .finish()
    }
}

/// A verifier that passes everything, so [`validate_transaction`] can run every other rule
/// first and hand back the signature checks; [`Mempool::accept`] runs them with the
/// caller's verifier once the cheap policy checks have passed. Never leaves this module.
struct DeferredSignatureChecks;

impl SignatureVerifier for DeferredSignatureChecks {
    fn verify_all(&self, _checks: &[SignatureCheck]) -> Result<(), usize> {
        Ok(())
    }
}

impl Mempool {
    /// An empty pool for the network of `params`.
    pub fn new(params: &'static Params, options: MempoolOptions) -> Mempool {
        Mempool {
            params,
            options,
            entries: HashMap::new(),
            spenders: HashMap::new(),
            arrival_order: BTreeMap::new(),
            entry_times: BTreeSet::new(),
            eviction_order: BTreeSet::new(),
            listing_order: BTreeSet::new(),
            total_bytes: 0,
            next_sequence: 0,
        }
    }

    /// The limits the pool was built with.
    pub fn options(&self) -> &MempoolOptions {
        &self.options
    }

    /// Outpoints spent by `transaction` that no pooled transaction creates: what the caller
    /// must look up in the chain's UTXO set before calling [`Mempool::accept`].
    ///
    /// None when `accept` refuses the transaction before it reads a coin: it spends an
    /// output a pooled transaction spends (it is pooled already, or conflicts), or it breaks
    /// a rule that needs no coin (too large, duplicate inputs, no inputs or outputs). A
    /// stranger's 2 MB message of 20,000 inputs then costs no lookups in the UTXO set.
    pub fn coins_to_fetch(&self, transaction: &Transaction) -> Vec<OutPoint> {
        let spends = transaction.spends();
        if spends
            .iter()
            .any(|input| self.spenders.contains_key(&input.prevout))
            || validate_transaction_stateless(self.params, transaction).is_err()
        {
            return Vec::new();
        }
        spends
            .iter()
            .map(|input| input.prevout)
            .filter(|prevout| !self.entries.contains_key(&prevout.txid))
            .collect()
    }

    /// Validates `transaction` against `chain_coins` plus the pool's outputs, as if it
    /// were included in a block at `next_height`, applies the pool's policy, and admits
    /// it, evicting cheaper packages if the pool is full.
    ///
    /// `chain_coins` must hold the confirmed coins of [`Mempool::coins_to_fetch`] (a
    /// prefetched `HashMap` will do); `now_ms` is recorded as the arrival time for expiry.
    /// Policy is checked before signatures, so a transaction refused for its fee rate or
    /// for a full pool costs no signature verification; a transaction that breaks both
    /// gets the policy error.
    ///
    /// # Errors
    /// In order: [`MempoolError::AlreadyInPool`], [`MempoolError::Conflict`] (an input
    /// spent by a pooled transaction), [`MempoolError::OutputAlreadySpentInPool`],
    /// [`MempoolError::Invalid`] (a consensus rule other than signatures),
    /// [`MempoolError::TooLarge`], [`MempoolError::FeeRateTooLow`],
    /// [`MempoolError::TooManyAncestors`], [`MempoolError::TooManyDescendants`],
    /// [`MempoolError::PoolFull`],
    /// [`MempoolError::Invalid`] with [`ConsensusError::BadSignature`]. On any error the
    /// pool is unchanged.
    pub fn accept(
        &mut self,
        transaction: Transaction,
        chain_coins: &impl UtxoView,
        next_height: BlockHeight,
        now_ms: u64,
        verifier: &(impl SignatureVerifier + ?Sized),
    ) -> Result<Accepted, MempoolError> {
        self.admit(
            transaction,
            chain_coins,
            next_height,
            now_ms,
            verifier,
            true,
        )
    }

    /// [`Mempool::accept`] for a transaction returning to the pool: a reorganisation's, or
    /// one restored from the pool's store. It may take an ancestor past
    /// [`MempoolOptions::max_descendants`] (a block's payments come back beside their
    /// pooled children, which the limit never counted together), as Bitcoin Core re-admits
    /// a reorganisation's transactions past its limits; every other rule holds.
    ///
    /// # Errors
    /// As [`Mempool::accept`], but never [`MempoolError::TooManyDescendants`].
    pub fn readmit(
        &mut self,
        transaction: Transaction,
        chain_coins: &impl UtxoView,
        next_height: BlockHeight,
        now_ms: u64,
        verifier: &(impl SignatureVerifier + ?Sized),
    ) -> Result<Accepted, MempoolError> {
        self.admit(
            transaction,
            chain_coins,
            next_height,
            now_ms,
            verifier,
            false,
        )
    }

    fn admit(
        &mut self,
        transaction: Transaction,
        chain_coins: &impl UtxoView,
        next_height: BlockHeight,
        now_ms: u64,
        verifier: &(impl SignatureVerifier + ?Sized),
        limit_descendants: bool,
    ) -> Result<Accepted, MempoolError> {
        let txid = transaction.compute_txid();
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::AlreadyInPool { txid });
        }
        // No replacement: the first spend of an output the pool sees is the one it keeps.
        // Checked before validation so the caller learns who holds the output, where
        // validation against the overlay would only say the input is missing.
        for input in transaction.spends() {
            if let Some(spender) = self.spenders.get(&input.prevout) {
                return Err(MempoolError::Conflict {
                    outpoint: input.prevout,
                    spent_by: *spender,
                });
            }
        }
        for vout in 0..transaction.outputs.len() {
            let outpoint = OutPoint {
                txid,
                vout: u32::try_from(vout).expect("a transaction of at most 100 kB has few outputs"),
            };
            if let Some(spender) = self.spenders.get(&outpoint) {
                return Err(MempoolError::OutputAlreadySpentInPool {
                    outpoint,
                    spent_by: *spender,
                });
            }
        }

        let overlay = PoolOverlay {
            chain_coins,
            entries: &self.entries,
            spenders: &self.spenders,
            next_height,
        };
        let input_check = validate_transaction(
            self.params,
            &transaction,
            &overlay,
            next_height,
            &DeferredSignatureChecks,
        )?;

        let size = transaction.compute_size();
        if size > self.options.max_bytes {
            return Err(MempoolError::TooLarge {
                size,
                max: self.options.max_bytes,
            });
        }
        let fee = input_check.fee;
        let fee_rate = FeeRate::from_fee_and_size(fee, size);
        if fee_rate < self.options.min_fee_rate {
            return Err(MempoolError::FeeRateTooLow {
                got: fee_rate,
                min: self.options.min_fee_rate,
            });
        }

        let parents = self.pooled_parents(&transaction);
        let ancestors = collect_related(&self.entries, parents, Direction::Parents, |_| true);
        let count = ancestors.len() + 1;
        if count > self.options.max_ancestors {
            return Err(MempoolError::TooManyAncestors {
                count,
                max: self.options.max_ancestors,
            });
        }
        for ancestor in ancestors.iter().filter(|_| limit_descendants) {
            let count = self
                .entries
                .get(ancestor)
                .map_or(0, |entry| entry.descendant_package.count)
                + 1;
            if count > self.options.max_descendants {
                return Err(MempoolError::TooManyDescendants {
                    ancestor: *ancestor,
                    count,
                    max: self.options.max_descendants,
                });
            }
        }
        let own_totals = PackageTotals::single(fee, size);
        self.check_package_fees_in_range(&own_totals, &ancestors)?;

        let incoming = PackageScore::new(&own_totals, self.next_sequence, txid);
        let bid = self.bid_for_room(&own_totals, &ancestors);
        // Most refusals of a full pool end here, before any signature is checked.
        // A newcomer pays the increment to take a place; a transaction returning from a
        // disconnected block or kept through a reorganisation was admitted once already,
        // and is taken back as before (Bitcoin Core re-admits those without it).
        let increment = if limit_descendants {
            self.options.min_fee_rate
        } else {
            FeeRate::ZERO
        };
        self.check_room_can_be_made(&incoming, &bid, &ancestors, increment)?;

        let checks = &input_check.signature_checks;
        verifier.verify_all(checks).map_err(|failed| {
            // Named the way validate_transaction names it, so the rule is the same
            // whichever path checked the signature.
            let input_index = checks.get(failed).map_or(failed, |check| check.input_index);
            MempoolError::Invalid(ConsensusError::BadSignature { input_index })
        })?;

        let evicted = self.make_room(&incoming, &bid, &ancestors, increment)?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.link_entry(PoolEntry {
            transaction,
            txid,
            fee,
            size,
            fee_rate,
            time_ms: now_ms,
            ancestor_package: own_totals,
            descendant_package: own_totals,
            parents: HashSet::new(),
            children: HashSet::new(),
            sequence,
        });
        debug!(%txid, size, %fee_rate, evicted = evicted.len(), "transaction accepted to the pool");
        Ok(Accepted {
            txid,
            fee,
            size,
            fee_rate,
            evicted,
        })
    }

    /// True if the pool holds `txid`.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    /// The pooled transaction `txid`, with its package totals.
    pub fn get(&self, txid: &Txid) -> Option<&PoolEntry> {
        self.entries.get(txid)
    }

    /// The pooled ancestors of `txid` (the pooled transactions it spends, theirs, and so
    /// on), itself excluded; empty if the pool does not hold it.
    pub fn ancestors(&self, txid: &Txid) -> HashSet<Txid> {
        ancestors_of(&self.entries, txid)
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the pool holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the encoded sizes of the pooled transactions; at most `options().max_bytes`.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Every entry, best ancestor-package fee rate first (ties: earlier arrival first).
    ///
    /// A listing order for the API and the dashboard, not a block order: a child that pays
    /// for its parent comes before it. [`Mempool::select_for_block`] gives a valid order.
    pub fn entries_by_fee_rate(&self) -> Vec<&PoolEntry> {
        self.iter_by_fee_rate().collect()
    }

    /// [`Mempool::entries_by_fee_rate`] as an iterator over the maintained order: reading
    /// the first `n` costs `n` steps, whatever the pool holds.
    pub fn iter_by_fee_rate(&self) -> impl Iterator<Item = &PoolEntry> {
        self.listing_order
            .iter()
            .rev()
            .filter_map(|score| self.entries.get(&score.txid))
    }

    /// Every entry, in no particular order (the cheapest walk of the pool).
    pub fn iter(&self) -> impl Iterator<Item = &PoolEntry> {
        self.entries.values()
    }

    /// The ids of at most `max` entries in arrival order (parents before children), from
    /// the first that arrived after arrival number `after` (from the first, for `None`),
    /// each with its arrival number: a window of the pool that costs the window, so a
    /// caller can walk a large pool a page at a time. An entry that arrives meanwhile comes
    /// after every earlier one, so a walk from the last number returned misses none of the
    /// entries that stay; a reorganisation re-admits the whole pool with new numbers, so a
    /// walk across one names its entries again.
    pub fn txids_by_arrival(&self, after: Option<u64>, max: usize) -> Vec<(u64, Txid)> {
        let from = match after {
            None => std::ops::Bound::Unbounded,
            Some(number) => std::ops::Bound::Excluded(number),
        };
        self.arrival_order
            .range((from, std::ops::Bound::Unbounded))
            .map(|(number, txid)| (*number, *txid))
            .take(max)
            .collect()
    }

    /// Every entry in arrival order, which puts parents before children.
    pub fn entries_by_arrival(&self) -> Vec<&PoolEntry> {
        self.arrival_order
            .values()
            .filter_map(|txid| self.entries.get(txid))
            .collect()
    }

    /// The output `outpoint` names if a pooled transaction created it (spent or not).
    pub fn output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.entries.get(&outpoint.txid).and_then(|entry| {
            entry
                .transaction
                .outputs
                .get(outpoint.vout as usize)
                .copied()
        })
    }

    /// The pooled transaction that spends `outpoint`, if any.
    pub fn spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spenders.get(outpoint).copied()
    }

    /// Outputs of pooled transactions that no other pooled transaction spends (the
    /// wallet's unconfirmed coins), in arrival order.
    pub fn unspent_pool_outputs(&self) -> Vec<(OutPoint, TxOut)> {
        self.entries_by_arrival()
            .into_iter()
            .flat_map(|entry| {
                entry
                    .transaction
                    .outputs
                    .iter()
                    .enumerate()
                    .map(move |(vout, output)| {
                        let outpoint = OutPoint {
                            txid: entry.txid,
                            vout: u32::try_from(vout)
                                .expect("pooled transactions have few outputs"),
                        };
                        (outpoint, *output)
                    })
            })
            .filter(|(outpoint, _)| !self.spenders.contains_key(outpoint))
            .collect()
    }

    /// The outputs [`Mempool::unspent_pool_outputs`] lists that pay an address `pays`
    /// accepts, in no particular order: one pass over the pool, nothing copied but them
    /// (the wallet asks this under the node's lock, of a pool of any size).
    pub fn unspent_outputs_paying(
        &self,
        mut pays: impl FnMut(&Address) -> bool,
    ) -> Vec<(OutPoint, TxOut)> {
        let mut found = Vec::new();
        for entry in self.entries.values() {
            for (vout, output) in entry.transaction.outputs.iter().enumerate() {
                if !pays(&output.address) {
                    continue;
                }
                let outpoint = OutPoint {
                    txid: entry.txid,
                    vout: u32::try_from(vout).expect("pooled transactions have few outputs"),
                };
                if !self.spenders.contains_key(&outpoint) {
                    found.push((outpoint, *output));
                }
            }
        }
        found
    }

    /// After a block connects: removes its transactions (their pooled descendants stay,
    /// now spending confirmed coins) and every pooled transaction that spends an output
    /// the block spends, with its descendants. Returns the removed txids in arrival order.
    pub fn remove_for_block(&mut self, block: &Block) -> Vec<Txid> {
        let mut confirmed = HashSet::new();
        let mut conflicting = Vec::new();
        for transaction in &block.transactions {
            if transaction.is_coinbase() {
                continue;
            }
            let txid = transaction.compute_txid();
            if self.entries.contains_key(&txid) {
                confirmed.insert(txid);
            }
            for input in transaction.spends() {
                match self.spenders.get(&input.prevout) {
                    Some(spender) if *spender != txid => conflicting.push(*spender),
                    _ => {}
                }
            }
        }
        let confirmed_count = confirmed.len();
        let mut doomed = self.with_descendants(conflicting);
        doomed.extend(confirmed);
        let removed = self.remove_entries(&doomed);
        debug!(
            confirmed = confirmed_count,
            conflicting = removed.len() - confirmed_count,
            "pool cleaned for a connected block"
        );
        removed.into_iter().map(|entry| entry.txid).collect()
    }

    /// Removes every transaction that has waited longer than `options().expiry_ms` at
    /// `now_ms`, with its descendants (they cannot be mined without it). Returns the
    /// removed txids in arrival order.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Txid> {
        let expired: Vec<Txid> = self
            .entry_times
            .iter()
            .take_while(|(time_ms, _, _)| now_ms.saturating_sub(*time_ms) > self.options.expiry_ms)
            .map(|(_, _, txid)| *txid)
            .collect();
        if expired.is_empty() {
            return Vec::new();
        }
        let doomed = self.with_descendants(expired);
        let removed = self.remove_entries(&doomed);
        debug!(
            removed = removed.len(),
            "expired transactions left the pool"
        );
        removed.into_iter().map(|entry| entry.txid).collect()
    }

    /// Removes `txids` with their descendants (they cannot be mined without them), for a
    /// node whose pool store could not keep them. Returns the removed txids in arrival order;
    /// txids the pool does not hold are ignored.
    pub fn remove_with_descendants(&mut self, txids: impl IntoIterator<Item = Txid>) -> Vec<Txid> {
        let doomed = self.with_descendants(txids.into_iter().filter(|txid| self.contains(txid)));
        self.remove_entries(&doomed)
            .into_iter()
            .map(|entry| entry.txid)
            .collect()
    }

    /// Transactions for a block template: best ancestor-fee-rate packages first (a child
    /// pays for its parent), every parent before its children, total encoded size at
    /// most `max_bytes`.
    pub fn select_for_block(&self, max_bytes: usize) -> Vec<&PoolEntry> {
        select_packages(&self.entries, max_bytes, &HashSet::new())
    }

    /// [`Mempool::select_for_block`] among the transactions that entered the pool at or
    /// before `entered_by_ms` (on the clock the pool was given) and whose pooled ancestors
    /// all did too: a template for a miner that leaves the payments it heard of last for
    /// a later block, as one mining on a template some seconds old does.
    pub fn select_for_block_entered_by(
        &self,
        max_bytes: usize,
        entered_by_ms: u64,
    ) -> Vec<&PoolEntry> {
        let young = self
            .entry_times
            .iter()
            .rev()
            .take_while(|(time_ms, _, _)| *time_ms > entered_by_ms)
            .map(|(_, _, txid)| *txid);
        let excluded = self.with_descendants(young);
        select_packages(&self.entries, max_bytes, &excluded)
    }

    /// Empties the pool and returns its transactions, parents before children, for
    /// re-admission after a reorg (disconnected blocks' transactions first, then these).
    ///
    /// The only way to empty the pool at once: no message from a peer can do it.
    pub fn take_all(&mut self) -> Vec<Transaction> {
        let mut entries = std::mem::take(&mut self.entries);
        let transactions = std::mem::take(&mut self.arrival_order)
            .into_values()
            .filter_map(|txid| entries.remove(&txid))
            .map(|entry| entry.transaction)
            .collect();
        self.spenders.clear();
        self.entry_times.clear();
        self.eviction_order.clear();
        self.listing_order.clear();
        self.total_bytes = 0;
        transactions
    }

    /// Distinct pooled txids whose outputs `transaction` spends.
    fn pooled_parents(&self, transaction: &Transaction) -> HashSet<Txid> {
        transaction
            .spends()
            .iter()
            .map(|input| input.prevout.txid)
            .filter(|txid| self.entries.contains_key(txid))
            .collect()
    }

    /// `roots` and all their pooled descendants.
    fn with_descendants(&self, roots: impl IntoIterator<Item = Txid>) -> HashSet<Txid> {
        collect_related(&self.entries, roots, Direction::Children, |_| true)
    }

    /// Refuses a newcomer whose packages' fees would leave the money range.
    ///
    /// Every pooled transaction spends distinct coins, and a fee is paid out of the coins a
    /// transaction spends, so the fees of any set of pooled transactions sum to at most the
    /// value of the chain coins they spend: within the money supply for any real UTXO set.
    /// Only chain views that disagree with each other between calls could break that; such
    /// a newcomer is refused here so that every later package sum is known to fit.
    fn check_package_fees_in_range(
        &self,
        own_totals: &PackageTotals,
        ancestors: &HashSet<Txid>,
    ) -> Result<(), MempoolError> {
        let out_of_range = || MempoolError::Invalid(ConsensusError::InputTotalTooLarge);
        let mut ancestor_package = *own_totals;
        for ancestor in ancestors.iter().filter_map(|txid| self.entries.get(txid)) {
            ancestor_package = ancestor_package
                .checked_add(&PackageTotals::single(ancestor.fee, ancestor.size))
                .ok_or_else(out_of_range)?;
            ancestor
                .descendant_package
                .checked_add(own_totals)
                .ok_or_else(out_of_range)?;
        }
        Ok(())
    }

    /// Adds `entry` to the pool and every index. Its links and package totals are
    /// recomputed here from the pool as it is, so the same function admits a newcomer and
    /// puts back an evicted entry (in arrival order, parents first).
    fn link_entry(&mut self, mut entry: PoolEntry) {
        let txid = entry.txid;
        let own_totals = PackageTotals::single(entry.fee, entry.size);
        entry.parents = self.pooled_parents(&entry.transaction);
        entry.children.clear();
        let ancestors = collect_related(
            &self.entries,
            entry.parents.iter().copied(),
            Direction::Parents,
            |_| true,
        );
        entry.ancestor_package = own_totals;
        for ancestor_txid in &ancestors {
            let ancestor = self
                .entries
                .get(ancestor_txid)
                .expect("the walk only finds pooled entries");
            entry.ancestor_package = entry
                .ancestor_package
                .checked_add(&PackageTotals::single(ancestor.fee, ancestor.size))
                .expect("accept checked the sum; a restored entry had it before");
        }
        entry.descendant_package = own_totals;
        for ancestor_txid in &ancestors {
            self.update_descendant_package(ancestor_txid, |totals| {
                totals
                    .checked_add(&own_totals)
                    .expect("accept checked the sum; a restored entry had it before")
            });
        }
        for parent_txid in &entry.parents {
            if let Some(parent) = self.entries.get_mut(parent_txid) {
                parent.children.insert(txid);
            }
        }
        for input in entry.transaction.spends() {
            self.spenders.insert(input.prevout, txid);
        }
        self.arrival_order.insert(entry.sequence, txid);
        self.entry_times
            .insert((entry.time_ms, entry.sequence, txid));
        self.eviction_order.insert(entry.descendant_score());
        self.listing_order.insert(entry.ancestor_score());
        self.total_bytes += entry.size;
        self.entries.insert(txid, entry);
    }

    /// Removes the entries `doomed` names from the pool and every index, and takes them
    /// out of the package totals of the entries that stay. Returns them in arrival order.
    ///
    /// Callers decide whether descendants go too: a confirmed transaction leaves alone (its
    /// children now spend confirmed coins), an evicted, expired or conflicting one takes
    /// its descendants with it.
    fn remove_entries(&mut self, doomed: &HashSet<Txid>) -> Vec<PoolEntry> {
        // Totals first, while the links still describe the whole family.
        for txid in doomed {
            let Some(entry) = self.entries.get(txid) else {
                continue;
            };
            let own_totals = PackageTotals::single(entry.fee, entry.size);
            let ancestors = ancestors_of(&self.entries, txid);
            let descendants = descendants_of(&self.entries, txid);
            for ancestor_txid in ancestors.difference(doomed) {
                self.update_descendant_package(ancestor_txid, |totals| {
                    totals
                        .checked_sub(&own_totals)
                        .expect("a descendant package includes each descendant")
                });
            }
            for descendant_txid in descendants.difference(doomed) {
                let descendant = self
                    .entries
                    .get_mut(descendant_txid)
                    .expect("the walk only finds pooled entries");
                let was_listed = self.listing_order.remove(&descendant.ancestor_score());
                debug_assert!(was_listed, "every entry has its listing score indexed");
                descendant.ancestor_package = descendant
                    .ancestor_package
                    .checked_sub(&own_totals)
                    .expect("an ancestor package includes each ancestor");
                self.listing_order.insert(descendant.ancestor_score());
            }
        }
        let mut removed = Vec::with_capacity(doomed.len());
        for txid in doomed {
            let Some(entry) = self.entries.remove(txid) else {
                continue;
            };
            for parent_txid in &entry.parents {
                if let Some(parent) = self.entries.get_mut(parent_txid) {
                    parent.children.remove(txid);
                }
            }
            for child_txid in &entry.children {
                if let Some(child) = self.entries.get_mut(child_txid) {
                    child.parents.remove(txid);
                }
            }
            for input in entry.transaction.spends() {
                if self.spenders.get(&input.prevout) == Some(txid) {
                    self.spenders.remove(&input.prevout);
                }
            }
            self.arrival_order.remove(&entry.sequence);
            self.entry_times
                .remove(&(entry.time_ms, entry.sequence, entry.txid));
            let was_indexed = self.eviction_order.remove(&entry.descendant_score());
            debug_assert!(was_indexed, "every entry has its eviction score indexed");
            let was_listed = self.listing_order.remove(&entry.ancestor_score());
            debug_assert!(was_listed, "every entry has its listing score indexed");
            self.total_bytes -= entry.size;
            removed.push(entry);
        }
        removed.sort_by_key(|entry| entry.sequence);
        removed
    }

    /// Changes an entry's descendant totals and moves it in `eviction_order` to match.
    fn update_descendant_package(
        &mut self,
        txid: &Txid,
        change: impl FnOnce(PackageTotals) -> PackageTotals,
    ) {
        let entry = self
            .entries
            .get_mut(txid)
            .expect("only pooled entries have their totals changed");
        let was_indexed = self.eviction_order.remove(&entry.descendant_score());
        debug_assert!(was_indexed, "every entry has its eviction score indexed");
        entry.descendant_package = change(entry.descendant_package);
        self.eviction_order.insert(entry.descendant_score());
    }
}
