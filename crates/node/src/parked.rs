//! Stored payments the chain cannot judge yet: each spends an output of a transaction the
//! node knows neither in its chain nor in its pool, or a coinbase not mature at its tip.
//! That happens after `--reindex` (the chain starts again from genesis), after a chain
//! restored from an older backup, or a start in between, until the chain is synced again.
//! Such a payment was acknowledged, so it keeps its store row; it waits here, out of the
//! pool, for the transaction it misses (or the height its coin matures at), and goes back
//! to the pool when a block or a returning payment brings it.
//!
//! ```text
//!   restore_pool ── missing input, parent unknown, ──▶ Parked ◀── still missing another,
//!                   or immature coinbase                  │       or immature
//!                   (parent confirmed: its coin was       │
//!                    spent, the payment is dropped)       │ a connected block is its parent
//!                                                         │ or reaches its height, or a
//!                                                         ▼ parked payment admitted is its parent
//!                                                 admit_into_pool (Returning) ──▶ pool
//! ```
//!
//! While a payment waits, the wallet does not spend the coins it spends (they are its
//! outgoing payments, as if pooled), and it expires like a pooled one.

use std::collections::{BTreeMap, HashMap, HashSet};

use powchain_consensus::{BlockHeight, OutPoint, Transaction, Txid};

/// What a parked payment waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WaitsFor {
    /// The transaction whose output it spends.
    Transaction(Txid),
    /// The height of the first block that may spend the coinbase it spends.
    Height(BlockHeight),
}

/// Stored payments waiting for a transaction they spend. See the module documentation.
#[derive(Default)]
pub(crate) struct Parked {
    payments: HashMap<Txid, ParkedPayment>,
    /// The payments waiting for each missing transaction.
    waiting_on: HashMap<Txid, Vec<Txid>>,
    /// The payments waiting for each height.
    waiting_for_height: BTreeMap<BlockHeight, Vec<Txid>>,
    /// Every output the parked payments spend, with how many spend it (stored rows may
    /// conflict: the pool refuses one of them when they return).
    spends: HashMap<OutPoint, u32>,
    /// Stored payments refused for good (at start, or forgotten since): a payment waiting
    /// for one can never pass. Cleared when a round of retries (or the start, or expiry)
    /// ends with nothing parked ([`Parked::settle`]).
    refused: HashSet<Txid>,
}

struct ParkedPayment {
    transaction: Transaction,
    /// When it was first accepted (what its expiry counts from).
    time_ms: u64,
    waits_for: WaitsFor,
}

impl Parked {
    /// Parks `transaction` (accepted at `time_ms`) until `waits_for` comes.
    pub(crate) fn park(&mut self, transaction: Transaction, time_ms: u64, waits_for: WaitsFor) {
        let txid = transaction.compute_txid();
        if self.payments.contains_key(&txid) {
            return;
        }
        for input in transaction.spends() {
            *self.spends.entry(input.prevout).or_default() += 1;
        }
        match waits_for {
            WaitsFor::Transaction(parent) => self.waiting_on.entry(parent).or_default(),
            WaitsFor::Height(height) => self.waiting_for_height.entry(height).or_default(),
        }
        .push(txid);
        self.payments.insert(
            txid,
            ParkedPayment {
                transaction,
                time_ms,
                waits_for,
            },
        );
    }

    /// Takes out the payments waiting for `txid`, each with its acceptance time.
    pub(crate) fn take_waiting_on(&mut self, txid: &Txid) -> Vec<(Transaction, u64)> {
        let Some(waiting) = self.waiting_on.remove(txid) else {
            return Vec::new();
        };
        waiting
            .into_iter()
            .filter_map(|waiting| self.take(&waiting))
            .collect()
    }

    /// Takes out the payments waiting for a height up to `height`, each with its
    /// acceptance time.
    pub(crate) fn take_waiting_for_height(
        &mut self,
        height: BlockHeight,
    ) -> Vec<(Transaction, u64)> {
        let later = self
            .waiting_for_height
            .split_off(&BlockHeight(height.0.saturating_add(1)));
        let due = std::mem::replace(&mut self.waiting_for_height, later);
        due.into_values()
            .flatten()
            .filter_map(|waiting| self.take(&waiting))
            .collect()
    }

    /// Takes out the payments accepted more than `expiry_ms` before `now_ms`, and those
    /// waiting for them. Returns their txids.
    pub(crate) fn take_expired(&mut self, now_ms: u64, expiry_ms: u64) -> Vec<Txid> {
        let expired: Vec<Txid> = self
            .payments
            .iter()
            .filter(|(_, payment)| now_ms.saturating_sub(payment.time_ms) > expiry_ms)
            .map(|(txid, _)| *txid)
            .collect();
        let mut forgotten = Vec::new();
        for txid in expired {
            forgotten.extend(self.forget(&txid));
        }
        forgotten
    }

    /// Takes out `txid` if parked (it was pooled by another way), leaving what waits for it.
    pub(crate) fn remove(&mut self, txid: &Txid) {
        let Some(payment) = self.payments.get(txid) else {
            return;
        };
        let (waits_for, txid) = (payment.waits_for, *txid);
        match waits_for {
            WaitsFor::Transaction(parent) => {
                if let Some(waiting) = self.waiting_on.get_mut(&parent) {
                    waiting.retain(|waiting| *waiting != txid);
                    if waiting.is_empty() {
                        self.waiting_on.remove(&parent);
                    }
                }
            }
            WaitsFor::Height(height) => {
                if let Some(waiting) = self.waiting_for_height.get_mut(&height) {
                    waiting.retain(|waiting| *waiting != txid);
                    if waiting.is_empty() {
                        self.waiting_for_height.remove(&height);
                    }
                }
            }
        }
        self.take(&txid);
    }

    /// Takes out `txid` (if still parked) and every payment waiting for it, and for them,
    /// and so on: without it they can never be valid. Returns the txids taken out.
    pub(crate) fn forget(&mut self, txid: &Txid) -> Vec<Txid> {
        let mut forgotten = Vec::new();
        let mut pending = vec![*txid];
        while let Some(txid) = pending.pop() {
            if self.payments.contains_key(&txid) {
                self.remove(&txid);
                forgotten.push(txid);
            }
            pending.extend(self.waiting_on.remove(&txid).unwrap_or_default());
        }
        self.refuse([*txid]);
        self.refuse(forgotten.iter().copied());
        forgotten
    }

    /// The transactions parked payments wait for.
    pub(crate) fn waited_for(&self) -> impl Iterator<Item = Txid> + '_ {
        self.waiting_on.keys().copied()
    }

    /// Remembers `txids` as refused for good, until [`Parked::settle`] finds nothing
    /// parked.
    pub(crate) fn refuse(&mut self, txids: impl IntoIterator<Item = Txid>) {
        self.refused.extend(txids);
    }

    /// Forgets the refused payments once nothing is parked: called when a round of
    /// retries (or the start, or expiry) is over, not as payments are taken out for a
    /// retry that may still ask.
    pub(crate) fn settle(&mut self) {
        if self.payments.is_empty() {
            self.refused.clear();
        }
    }

    /// True if `txid` was a stored payment refused for good.
    pub(crate) fn was_refused(&self, txid: &Txid) -> bool {
        self.refused.contains(txid)
    }

    /// True if a parked payment spends `outpoint`.
    pub(crate) fn spends(&self, outpoint: &OutPoint) -> bool {
        self.spends.contains_key(outpoint)
    }

    /// True if `txid` is parked.
    pub(crate) fn contains(&self, txid: &Txid) -> bool {
        self.payments.contains_key(txid)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.payments.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.payments.len()
    }

    /// Removes `txid` and what it spends (its place in the waiting lists is the caller's).
    fn take(&mut self, txid: &Txid) -> Option<(Transaction, u64)> {
        let payment = self.payments.remove(txid)?;
        for input in payment.transaction.spends() {
            if let Some(count) = self.spends.get_mut(&input.prevout) {
                *count -= 1;
                if *count == 0 {
                    self.spends.remove(&input.prevout);
                }
            }
        }
        Some((payment.transaction, payment.time_ms))
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::testkit::{test_address, test_key};
    use powchain_consensus::{Amount, Signature, TxIn, TxInputs, TxOut};

    use super::*;
    use crate::testing::spend_to;

    fn payment(parent: &Transaction, value: u64) -> Transaction {
        spend_to(
            parent,
            0,
            &test_key(1),
            vec![TxOut {
                value: Amount::from_units(value).expect("in range"),
                address: test_address(2),
            }],
        )
    }

    /// A transaction paying `value` units to test key 1 (never valid itself: only its
    /// txid and output matter here).
    fn parent(value: u8) -> Transaction {
        Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Spends(vec![TxIn {
                prevout: OutPoint {
                    txid: Txid([value; 32]),
                    vout: 0,
                },
                signature: Signature([0; 64]),
            }]),
            outputs: vec![TxOut {
                value: Amount::from_units(u64::from(value)).expect("in range"),
                address: test_address(1),
            }],
        }
    }

    #[test]
    fn a_parked_payment_leaves_when_what_it_waits_for_comes_or_when_it_expires() {
        let (first_parent, second_parent, third_parent) = (parent(10), parent(20), parent(30));
        let first = payment(&first_parent, 9);
        let second = payment(&second_parent, 19);
        let third = payment(&third_parent, 29);
        let mut parked = Parked::default();
        let waits = WaitsFor::Transaction(first_parent.compute_txid());
        parked.park(first.clone(), 1_000, waits);
        parked.park(first.clone(), 1_000, waits);
        parked.park(
            second.clone(),
            5_000,
            WaitsFor::Transaction(second_parent.compute_txid()),
        );
        parked.park(third.clone(), 2_000, WaitsFor::Height(BlockHeight(7)));
        assert_eq!(parked.len(), 3, "parked once");
        let first_spend = first.spends()[0].prevout;
        assert!(parked.spends(&first_spend) && parked.contains(&first.compute_txid()));

        assert!(parked.take_waiting_on(&Txid([9; 32])).is_empty());
        assert_eq!(
            parked.take_waiting_on(&first_parent.compute_txid()),
            vec![(first, 1_000)]
        );
        assert!(!parked.spends(&first_spend), "its coin is the pool's again");

        assert!(parked.take_waiting_for_height(BlockHeight(6)).is_empty());
        assert_eq!(
            parked.take_waiting_for_height(BlockHeight(8)),
            vec![(third, 2_000)],
            "due at its height and after"
        );

        assert!(parked.take_expired(6_000, 1_000).is_empty(), "not yet");
        assert_eq!(
            parked.take_expired(6_001, 1_000),
            vec![second.compute_txid()]
        );
        assert!(parked.is_empty());
        assert!(parked.waiting_on.is_empty() && parked.spends.is_empty());
        assert!(parked.waiting_for_height.is_empty());
    }

    #[test]
    fn forgetting_a_payment_forgets_what_waits_for_it_and_shared_spends_are_counted() {
        let grandparent = parent(10);
        let child = payment(&grandparent, 9);
        let rival = payment(&grandparent, 7);
        let grandchild = spend_to(
            &child,
            0,
            &test_key(2),
            vec![TxOut {
                value: Amount::from_units(8).expect("in range"),
                address: test_address(3),
            }],
        );
        let mut parked = Parked::default();
        let waits = WaitsFor::Transaction(grandparent.compute_txid());
        parked.park(child.clone(), 0, waits);
        parked.park(rival.clone(), 0, waits);
        parked.park(
            grandchild.clone(),
            0,
            WaitsFor::Transaction(child.compute_txid()),
        );
        let shared = child.spends()[0].prevout;
        parked.remove(&rival.compute_txid());
        assert!(parked.spends(&shared), "the child still spends it");
        assert_eq!(parked.len(), 2);

        let mut forgotten = parked.forget(&grandparent.compute_txid());
        forgotten.sort_unstable();
        let mut expected = vec![child.compute_txid(), grandchild.compute_txid()];
        expected.sort_unstable();
        assert_eq!(forgotten, expected, "the child, and what waits for it");
        assert!(parked.is_empty() && parked.spends.is_empty() && parked.waiting_on.is_empty());
    }

    #[test]
    fn refused_payments_are_remembered_while_anything_is_parked() {
        let (first_parent, second_parent) = (parent(10), parent(20));
        let (first, second) = (payment(&first_parent, 9), payment(&second_parent, 19));
        let mut parked = Parked::default();
        let refused = Txid([5; 32]);
        parked.refuse([refused]);
        parked.settle();
        assert!(
            !parked.was_refused(&refused),
            "nothing parked: nothing to remember"
        );
        parked.park(first, 0, WaitsFor::Transaction(first_parent.compute_txid()));
        parked.park(
            second,
            0,
            WaitsFor::Transaction(second_parent.compute_txid()),
        );
        parked.refuse([refused]);
        assert!(parked.was_refused(&refused));
        parked.forget(&first_parent.compute_txid());
        assert!(parked.was_refused(&first_parent.compute_txid()));
        parked.take_waiting_on(&second_parent.compute_txid());
        assert!(
            parked.is_empty() && parked.was_refused(&refused),
            "kept for the retry"
        );
        parked.settle();
        assert!(
            !parked.was_refused(&refused),
            "forgotten once the round is over"
        );
    }
}
