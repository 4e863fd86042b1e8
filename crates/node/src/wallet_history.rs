//! The node wallet's transactions, newest first: those in the pool, then those of the main
//! chain, each with what it paid the wallet and what it spent of the wallet's coins.
//!
//! ```text
//!   pool entries ──pay or spend a wallet address?──▶ pooled, newest received first ─┐
//!   wallet addresses ──snapshot.address_history (each)──▶ merged, one row per txid ──┤
//!                                                                                    ▼
//!            skip, take ──▶ each transaction: outputs to the wallet (received),
//!                           spent outputs of the wallet (sent: found through its block's
//!                           undo data and the block itself when confirmed, else the pool,
//!                           the UTXO set or the transaction index)
//! ```
//!
//! The chain part reads one snapshot; the pool is read once, beside it. A transaction that
//! moves between them while the page is built may be missing from it or shown twice: the
//! next read is right again.

use std::collections::{HashMap, HashSet};

use powchain_chain::{BlockSpends, Snapshot};
use powchain_consensus::{
    Address, Amount, BlockHash, BlockHeight, OutPoint, Transaction, TxOut, Txid,
};

use crate::error::NodeError;
use crate::node::{Node, lock};

/// The deepest a history page may reach (skipped plus shown entries): each of the wallet's
/// addresses is read that deep, so a stranger cannot make one request read a long history
/// whole.
pub const MAX_WALLET_HISTORY_DEPTH: usize = 100_000;

/// Most coins of each wallet address read to recognise pooled transactions that spend
/// them. A pooled payment of the wallet's own also pays it change (found by its outputs),
/// so past this (an address strangers paid that often) only a spend without change of a
/// coin beyond it goes unlisted until it confirms; the balance counts every coin.
const MAX_HISTORY_COINS_PER_ADDRESS: usize = 100_000;

/// Where a wallet transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletTxPlace {
    /// In the pool, since `received_ms` (ms since the epoch).
    Pool {
        /// When the pool took it.
        received_ms: u64,
    },
    /// In the main-chain block at `height`, whose time is `block_time_ms`.
    Confirmed {
        /// Its block's height.
        height: BlockHeight,
        /// Its block's time, ms since the epoch.
        block_time_ms: u64,
    },
}

/// A transaction that paid the wallet or spent its coins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletTransaction {
    /// Its id.
    pub txid: Txid,
    /// Pool or block.
    pub place: WalletTxPlace,
    /// What its outputs pay the wallet's addresses.
    pub received: Amount,
    /// What the wallet's coins it spends held.
    pub sent: Amount,
    /// True for a coinbase (a mining reward).
    pub coinbase: bool,
}

impl WalletTransaction {
    /// `received - sent` in units: what the wallet gained (positive) or gave away (negative,
    /// the fee included).
    pub fn net_units(&self) -> i64 {
        // Amounts are at most 21 million coins, 2.1e15 units: they fit an i64.
        let received = i64::try_from(self.received.to_units()).unwrap_or(i64::MAX);
        let sent = i64::try_from(self.sent.to_units()).unwrap_or(i64::MAX);
        received.saturating_sub(sent)
    }
}

/// One page of the wallet's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletHistoryPage {
    /// The transactions, newest first.
    pub transactions: Vec<WalletTransaction>,
    /// True if older ones follow.
    pub more: bool,
    /// The main chain's tip height when it was read (for confirmations).
    pub tip_height: BlockHeight,
}

/// Why a history page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WalletHistoryError {
    /// The page reaches deeper than [`MAX_WALLET_HISTORY_DEPTH`].
    #[error(
        "offset plus limit may reach at most {MAX_WALLET_HISTORY_DEPTH} entries deep, got {depth}"
    )]
    TooDeep {
        /// Offset plus limit.
        depth: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A wallet transaction before its amounts are known.
enum Row {
    Pooled {
        txid: Txid,
        received_ms: u64,
        transaction: Transaction,
    },
    Confirmed {
        txid: Txid,
        height: BlockHeight,
    },
}

/// Finds the outputs transactions spend, remembering the parents it read.
struct Outputs<'a> {
    snapshot: &'a Snapshot,
    /// The pooled outputs the listed pooled transactions spend.
    pool: &'a HashMap<OutPoint, TxOut>,
    parents: HashMap<Txid, Option<Transaction>>,
}

impl Outputs<'_> {
    /// The output `outpoint` names: a pooled parent's, or a confirmed one's (unspent, or
    /// spent and found through the transaction index). `None` if it is nowhere (a
    /// transaction whose parent left the chain in a reorganisation).
    fn output(&mut self, outpoint: &OutPoint) -> Result<Option<TxOut>, NodeError> {
        if let Some(output) = self.pool.get(outpoint) {
            return Ok(Some(*output));
        }
        if let Some(coin) = self.snapshot.coin(outpoint)? {
            return Ok(Some(coin.output));
        }
        if !self.parents.contains_key(&outpoint.txid) {
            let parent = confirmed_transaction(self.snapshot, &outpoint.txid)?.map(|(tx, _)| tx);
            self.parents.insert(outpoint.txid, parent);
        }
        Ok(self
            .parents
            .get(&outpoint.txid)
            .and_then(Option::as_ref)
            .and_then(|parent| parent.outputs.get(outpoint.vout as usize).copied()))
    }
}

/// The main-chain block of the confirmed rows being read: rows come newest first by height,
/// so the rows of one block are read one after another and it is read once, with what it
/// spent ([`BlockSpends`]), from which its transactions' inputs are described without
/// reading their parents' blocks.
struct RowBlock {
    hash: BlockHash,
    spends: BlockSpends,
}

impl RowBlock {
    /// The block at `hash` with what it spent, read unless it is the one held.
    fn load<'a>(
        held: &'a mut Option<RowBlock>,
        snapshot: &Snapshot,
        hash: BlockHash,
    ) -> Result<Option<&'a mut BlockSpends>, NodeError> {
        if held.as_ref().is_none_or(|row_block| row_block.hash != hash) {
            let Some(spends) = snapshot.block_spends(&hash)? else {
                return Ok(None);
            };
            *held = Some(RowBlock { hash, spends });
        }
        Ok(held.as_mut().map(|row_block| &mut row_block.spends))
    }
}

/// A main-chain transaction and its block's time.
fn confirmed_transaction(
    snapshot: &Snapshot,
    txid: &Txid,
) -> Result<Option<(Transaction, u64)>, NodeError> {
    let Some(location) = snapshot.tx_location(txid)? else {
        return Ok(None);
    };
    let Some(block) = snapshot.block(&location.block_hash)? else {
        return Ok(None);
    };
    let time_ms = block.header.time_ms;
    Ok(block
        .transactions
        .into_iter()
        .nth(location.position as usize)
        .map(|transaction| (transaction, time_ms)))
}

fn add(total: Amount, value: Amount) -> Amount {
    total.checked_add(value).unwrap_or(Amount::MAX_MONEY)
}

impl Node {
    /// The wallet's transactions, newest first (pooled ones, then confirmed ones by
    /// height), skipping `skip` and returning at most `limit`.
    ///
    /// # Errors
    /// [`WalletHistoryError::TooDeep`] past [`MAX_WALLET_HISTORY_DEPTH`]; the store's errors.
    pub fn wallet_history(
        &self,
        skip: usize,
        limit: usize,
    ) -> Result<WalletHistoryPage, WalletHistoryError> {
        let depth = skip.saturating_add(limit);
        if depth > MAX_WALLET_HISTORY_DEPTH {
            return Err(WalletHistoryError::TooDeep { depth });
        }
        let addresses: HashSet<Address> = self.wallet_addresses().into_iter().collect();
        let snapshot = self.reader.snapshot().map_err(NodeError::from)?;
        let tip_height = snapshot.tip().map_err(NodeError::from)?.record.height;
        // The wallet's confirmed coins (at most MAX_HISTORY_COINS_PER_ADDRESS an address).
        let mut wallet_coins: HashSet<OutPoint> = HashSet::new();
        for address in &addresses {
            for entry in snapshot
                .address_coins(address, MAX_HISTORY_COINS_PER_ADDRESS)
                .map_err(NodeError::from)?
            {
                wallet_coins.insert(entry.outpoint);
            }
        }
        // The pooled transactions that pay the wallet or spend its coins (confirmed or
        // pooled), found in one pass under the lock with no store read, and only those
        // cloned, with the pooled outputs their inputs spend.
        let mut pooled: Vec<(u64, Txid, Transaction)> = Vec::new();
        let mut pool: HashMap<OutPoint, TxOut> = HashMap::new();
        {
            let core = lock(&self.core);
            let pooled_output = |outpoint: &OutPoint| core.mempool.output(outpoint);
            for entry in core.mempool.iter() {
                let touches = entry
                    .transaction
                    .outputs
                    .iter()
                    .any(|output| addresses.contains(&output.address))
                    || entry.transaction.spends().iter().any(|input| {
                        wallet_coins.contains(&input.prevout)
                            || pooled_output(&input.prevout)
                                .is_some_and(|output| addresses.contains(&output.address))
                    });
                if touches {
                    for input in entry.transaction.spends() {
                        if let Some(output) = pooled_output(&input.prevout) {
                            pool.insert(input.prevout, output);
                        }
                    }
                    pooled.push((entry.time_ms, entry.txid, entry.transaction.clone()));
                }
            }
        }
        let mut outputs = Outputs {
            snapshot: &snapshot,
            pool: &pool,
            parents: HashMap::new(),
        };
        pooled.sort_by_key(|(received_ms, txid, _)| std::cmp::Reverse((*received_ms, *txid)));
        let mut rows: Vec<Row> = pooled
            .into_iter()
            .map(|(received_ms, txid, transaction)| Row::Pooled {
                txid,
                received_ms,
                transaction,
            })
            .collect();
        // Newest first by height, then by txid (each address's history is in that order);
        // a transaction touching two wallet addresses is one row.
        let wanted = depth.saturating_add(1);
        let mut confirmed: Vec<(BlockHeight, Txid)> = Vec::new();
        for address in &addresses {
            for entry in snapshot
                .address_history(address, 0, wanted)
                .map_err(NodeError::from)?
            {
                confirmed.push((entry.height, entry.txid));
            }
        }
        confirmed.sort_by_key(|row| std::cmp::Reverse(*row));
        confirmed.dedup();
        rows.extend(
            confirmed
                .into_iter()
                .map(|(height, txid)| Row::Confirmed { txid, height }),
        );
        let more = rows.len() > depth;
        let mut transactions = Vec::new();
        let mut row_block: Option<RowBlock> = None;
        for row in rows.into_iter().skip(skip).take(limit) {
            let (txid, transaction, place, mut in_block) = match row {
                Row::Pooled {
                    txid,
                    received_ms,
                    transaction,
                } => (txid, transaction, WalletTxPlace::Pool { received_ms }, None),
                Row::Confirmed { txid, height } => {
                    // Indexed by its address but not by its txid: a damaged store.
                    let damaged = || {
                        NodeError::Chain(powchain_chain::ChainError::Corrupt(format!(
                            "wallet transaction {txid} is in the address index but not the \
                             transaction index"
                        )))
                    };
                    let location = snapshot
                        .tx_location(&txid)
                        .map_err(NodeError::from)?
                        .ok_or_else(damaged)?;
                    let held = RowBlock::load(&mut row_block, &snapshot, location.block_hash)?
                        .ok_or_else(damaged)?;
                    let transaction = held
                        .block()
                        .transactions
                        .get(location.position as usize)
                        .cloned()
                        .ok_or_else(damaged)?;
                    let block_time_ms = held.block().header.time_ms;
                    (
                        txid,
                        transaction,
                        WalletTxPlace::Confirmed {
                            height,
                            block_time_ms,
                        },
                        Some(held),
                    )
                }
            };
            let received = transaction
                .outputs
                .iter()
                .filter(|output| addresses.contains(&output.address))
                .fold(Amount::ZERO, |total, output| add(total, output.value));
            let mut sent = Amount::ZERO;
            for input in transaction.spends() {
                let found = match in_block
                    .as_mut()
                    .and_then(|held| held.output(&input.prevout))
                {
                    Some(output) => Some(output),
                    None => outputs.output(&input.prevout)?,
                };
                if let Some(output) = found
                    && addresses.contains(&output.address)
                {
                    sent = add(sent, output.value);
                }
            }
            transactions.push(WalletTransaction {
                txid,
                place,
                received,
                sent,
                coinbase: transaction.is_coinbase(),
            });
        }
        Ok(WalletHistoryPage {
            transactions,
            more,
            tip_height,
        })
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::{Amount, Network};

    use super::{MAX_WALLET_HISTORY_DEPTH, WalletHistoryError, WalletTxPlace};
    use crate::testing::TestNode;

    #[test]
    fn a_payment_between_two_wallet_addresses_is_one_entry_costing_its_fee() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let own = test.node.new_wallet_address().expect("a new address");
        let payment = test
            .node
            .send(own, Amount::ONE_COIN, None)
            .expect("the wallet pays itself");
        let check = |expect_pool: bool| {
            let page = test.node.wallet_history(0, 10).expect("the history reads");
            let entries: Vec<_> = page
                .transactions
                .iter()
                .filter(|entry| entry.txid == payment.txid)
                .collect();
            assert_eq!(entries.len(), 1, "one entry for two addresses: {page:?}");
            let fee = i64::try_from(payment.fee.to_units()).expect("small");
            assert_eq!(entries[0].net_units(), -fee, "only the fee left the wallet");
            assert_eq!(
                matches!(entries[0].place, WalletTxPlace::Pool { .. }),
                expect_pool
            );
        };
        check(true);
        test.mine(true);
        check(false);
        let page = test.node.wallet_history(0, 10).expect("the history reads");
        let heights: Vec<u64> = page
            .transactions
            .iter()
            .map(|entry| match entry.place {
                WalletTxPlace::Confirmed { height, .. } => height.0,
                WalletTxPlace::Pool { .. } => u64::MAX,
            })
            .collect();
        assert!(
            heights.windows(2).all(|pair| pair[0] >= pair[1]),
            "newest first: {heights:?}"
        );
        let first = test.node.wallet_history(0, 1).expect("one entry");
        assert!(first.more);
        let rest = test.node.wallet_history(1, 10).expect("the rest");
        assert!(!rest.more);
        assert_eq!(rest.transactions.len() + 1, page.transactions.len());
        assert!(matches!(
            test.node.wallet_history(MAX_WALLET_HISTORY_DEPTH, 1),
            Err(WalletHistoryError::TooDeep { .. })
        ));
    }

    /// Two payments out of the wallet confirmed in one block, the second spending the
    /// first's change: what each sent is found in the block's undo data (the first's
    /// coinbase coin, from an earlier block) and in the block itself (the change), and both
    /// rows read the block once.
    #[test]
    fn what_confirmed_payments_sent_comes_from_their_block_and_its_undo_data() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        let outsider = powchain_consensus::testkit::test_address(9);
        let first = test
            .node
            .send(outsider, Amount::ONE_COIN, None)
            .expect("pays");
        let second = test
            .node
            .send(outsider, Amount::ONE_COIN, None)
            .expect("pays from the change");
        assert_eq!(second.transaction.spends()[0].prevout.txid, first.txid);
        let expected = |payment: &crate::SentPayment| {
            -i64::try_from((Amount::ONE_COIN.to_units()) + payment.fee.to_units()).expect("small")
        };
        let net = |txid| {
            let page = test.node.wallet_history(0, 10).expect("the history reads");
            page.transactions
                .iter()
                .find(|entry| entry.txid == txid)
                .map(|entry| {
                    (
                        entry.net_units(),
                        matches!(entry.place, WalletTxPlace::Pool { .. }),
                    )
                })
                .expect("listed")
        };
        assert_eq!(net(first.txid), (expected(&first), true));
        assert_eq!(net(second.txid), (expected(&second), true));
        let block = test.mine(true);
        assert_eq!(block.transactions.len(), 3, "both in one block");
        assert_eq!(net(first.txid), (expected(&first), false));
        assert_eq!(net(second.txid), (expected(&second), false));
    }
}
