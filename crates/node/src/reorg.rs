//! Pool reconciliation: what the pool does when the chain moves. Confirmed and
//! conflicting transactions leave; on a reorganisation the losing branch's transactions
//! come back, oldest block first, followed by what the pool held (with its arrival times,
//! so a reorganisation does not restart its expiry), and whatever the new
//! chain made invalid is dropped.
//!
//! ```text
//!   ChainEvent::BlockConnected ──▶ remove the block's transactions and their conflicts
//!   ChainEvent::BlockDisconnected ──▶ collect the block ──▶ re-admit (branch, then pool)
//!   every ChainEvent ──▶ NodeEvent (published by the caller, after the lock is released)
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use powchain_chain::ChainEvent;
use powchain_consensus::{Block, BlockHash, BlockHeight, Transaction, Txid};
use tracing::{debug, info};

use crate::event::NodeEvent;
use crate::node::{Core, Node};
use crate::pool::Admission;
use crate::pool_store::PoolWrite;

impl Node {
    /// Brings the pool in line with chain changes; returns the events to publish.
    pub(crate) fn apply_chain_events(
        &self,
        core: &mut Core,
        events: Vec<ChainEvent>,
        now: u64,
    ) -> Vec<NodeEvent> {
        let mut node_events = Vec::with_capacity(events.len());
        let mut disconnected_blocks: Vec<Arc<Block>> = Vec::new();
        let mut connected_blocks: Vec<(Arc<Block>, BlockHeight)> = Vec::new();
        // The pool store's changes in the order they happened (a removal from an earlier
        // block before the row of the same transaction returning from a later
        // disconnection), written in one commit at the end (synced only if there are rows).
        let mut writes: Vec<PoolWrite> = Vec::new();
        let mut reorganised: Option<(u64, BlockHeight, BlockHash)> = None;
        for event in events {
            match event {
                ChainEvent::BlockConnected {
                    hash,
                    height,
                    block,
                } => {
                    writes.extend(
                        core.mempool
                            .remove_for_block(&block)
                            .into_iter()
                            .map(PoolWrite::Remove),
                    );
                    node_events.push(NodeEvent::BlockConnected { hash, height });
                    connected_blocks.push((block, height));
                }
                ChainEvent::BlockDisconnected {
                    hash,
                    height,
                    block,
                } => {
                    disconnected_blocks.push(block);
                    node_events.push(NodeEvent::BlockDisconnected { hash, height });
                }
                ChainEvent::TipChanged {
                    hash,
                    height,
                    work,
                    reorg_depth,
                } => {
                    if reorg_depth > 0 {
                        reorganised = Some((reorg_depth, height, hash));
                    }
                    node_events.push(NodeEvent::TipChanged {
                        hash,
                        height,
                        work,
                        reorg_depth,
                    });
                }
            }
        }
        if !disconnected_blocks.is_empty() {
            // The losing branch's transactions go back to the pool, oldest block first,
            // followed by what the pool held; anything the new chain made invalid drops.
            // They may pass the descendant limit (`Mempool::readmit`): a block's payments
            // come back beside their pooled children, which the limit never counted
            // together, and none of them is lost for it.
            // What the pool held keeps its arrival time, so a reorganisation does not
            // restart its expiry; the branch's transactions arrive now.
            let arrival_times: HashMap<Txid, u64> = core
                .mempool
                .entries_by_arrival()
                .into_iter()
                .map(|entry| (entry.txid, entry.time_ms))
                .collect();
            let previous_pool = core.mempool.take_all();
            // At most a full pool's bytes of the branch's transactions are tried, from
            // the block nearest the fork up (parents before children): the pool could
            // hold no more, and a deep reorganisation of full blocks must not clone and
            // validate millions of transactions under the lock (Bitcoin Core caps its
            // disconnected pool likewise, at 20 MB).
            let mut budget = core.mempool.options().max_bytes;
            let mut candidates: Vec<Transaction> = Vec::new();
            let mut left_out = 0usize;
            for block in disconnected_blocks.iter().rev() {
                for transaction in block.transactions.iter().skip(1) {
                    let size = transaction.compute_size();
                    if left_out > 0 || size > budget {
                        left_out += 1;
                        continue;
                    }
                    budget -= size;
                    candidates.push(transaction.clone());
                }
            }
            if left_out > 0 {
                info!(
                    left_out,
                    "a deep reorganisation: the losing branch's newest transactions past a \
                     full pool's bytes were not returned to the pool"
                );
            }
            let candidates = candidates
                .into_iter()
                .map(|transaction| (transaction, Admission::Returning))
                .chain(
                    previous_pool
                        .into_iter()
                        .map(|transaction| (transaction, Admission::Kept)),
                );
            let mut readmitted = 0u64;
            for (transaction, admission) in candidates {
                let txid = transaction.compute_txid();
                let time_ms = arrival_times
                    .get(&txid)
                    .map_or(now, |arrived| (*arrived).min(now));
                // Only the branch's transactions get a store row (what the pool held has
                // one): the rest are not copied.
                let row = matches!(admission, Admission::Returning).then(|| transaction.clone());
                match self.admit_into_pool(core, transaction, time_ms, admission) {
                    Ok(accepted) => {
                        if let Some(transaction) = row {
                            readmitted += 1;
                            writes.push(PoolWrite::Insert {
                                txid,
                                transaction,
                                time_ms: now,
                            });
                            node_events.push(NodeEvent::TransactionAccepted { txid });
                        }
                        // After the row of what evicted them: an evicted transaction's
                        // row may have been written by this same pass.
                        writes.extend(accepted.evicted.into_iter().map(PoolWrite::Remove));
                    }
                    // A branch transaction refused has no row (its block's connection
                    // removed it), and may be pooled already (the same payment in two
                    // disconnected blocks): removing "its" row would delete that one.
                    Err(_) if matches!(admission, Admission::Returning) => {}
                    Err(_) => writes.push(PoolWrite::Remove(txid)),
                }
            }
            debug!(
                readmitted,
                "returned a reorganisation's transactions to the pool"
            );
            if let Some((depth, height, hash)) = reorganised
                && let Some(held_back) = self.reorg_lines.admit(now)
            {
                info!(
                    "{}{held_back}",
                    reorg_line(depth, height, &hash, readmitted)
                );
            }
        }
        // Parked payments the connected blocks bring a parent of, or let mature, against
        // the pool as reconciled.
        for (block, height) in connected_blocks {
            if core.parked.is_empty() {
                break;
            }
            let returned = self.retry_parked(core, &block, height, now, &mut writes);
            node_events.extend(
                returned
                    .into_iter()
                    .map(|txid| NodeEvent::TransactionAccepted { txid }),
            );
        }
        self.pool_store.queue_unawaited(writes);
        node_events
    }
}

/// Hex digits of a block hash a console line shows.
const HASH_PREFIX_CHARS: usize = 16;

/// The tutorial's "Replacing the current chain": `reorg: 2 blocks replaced, new tip #7
/// 3f9a0c1e5b2d4a68 (1 transaction back in the pool)`.
fn reorg_line(depth: u64, height: BlockHeight, hash: &BlockHash, readmitted: u64) -> String {
    let blocks = if depth == 1 { "block" } else { "blocks" };
    let hash = hash.to_string();
    let prefix = hash.get(..HASH_PREFIX_CHARS).unwrap_or(&hash);
    let returned = match readmitted {
        0 => String::new(),
        1 => " (1 transaction back in the pool)".to_owned(),
        count => format!(" ({count} transactions back in the pool)"),
    };
    format!(
        "reorg: {depth} {blocks} replaced, new tip #{} {prefix}{returned}",
        height.0
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use powchain_consensus::testkit::{test_address, test_key};
    use powchain_consensus::{Network, OutPoint, Transaction, Txid};

    use crate::event::NodeEvent;
    use crate::testing::{TestNode, output_paying, spend_output};

    /// A node after a reorganisation, and the transactions it was about.
    struct Reorganised {
        /// The node under test, now on branch B.
        test: TestNode,
        /// A wallet payment confirmed in A1 (B does not hold it).
        payment: Txid,
        /// Spends the payment; confirmed in A2.
        child_in_block: Txid,
        /// Spends `child_in_block`; in the pool when B won.
        grandchild_in_pool: Txid,
        /// When `grandchild_in_pool` entered the pool.
        grandchild_arrival_ms: u64,
        /// When B took over.
        reorganised_at_ms: u64,
        /// Confirmed in A1; B1 confirms another spend of the same coin.
        double_spent_in_block: Txid,
        /// In the pool when B won; B1 confirms another spend of the same coin.
        double_spent_in_pool: Txid,
        /// The spends B1 confirms instead.
        winning_spends: Vec<Txid>,
        /// The coins both branches spend.
        contested_coins: Vec<OutPoint>,
        /// Transactions announced while B took over.
        announced: HashSet<Txid>,
    }

    /// Node A mines branch A (two blocks) on a common prefix while node B, sharing the
    /// clock, mines branch B (three blocks, more work) on the same prefix; B's blocks are
    /// then handed to A.
    ///
    /// ```text
    ///   prefix ── A1 [payment, double_spent_in_block] ── A2 [child_in_block]
    ///          │      pool: grandchild_in_pool, double_spent_in_pool
    ///          └─ B1 [the other spends of both contested coins] ── B2 ── B3
    /// ```
    fn reorganise() -> Reorganised {
        let a = TestNode::open(Network::Regtest);
        let b = TestNode::open_with_clock(Network::Regtest, Arc::clone(&a.clock));
        // Two coinbases paying a key the test holds, to spend on both branches; then
        // coins for A's wallet.
        let mut prefix = vec![
            a.mine_paying(test_address(2)),
            a.mine_paying(test_address(2)),
        ];
        let contested = [
            prefix[0].transactions[0].clone(),
            prefix[1].transactions[0].clone(),
        ];
        prefix.extend(a.mine_until_spendable());
        b.submit_blocks(&prefix);
        let spend_contested = |coinbase: &Transaction, recipient: u8| {
            spend_output(coinbase, 0, &test_key(2), test_address(recipient))
        };

        // Branch A.
        let payment = a.pay_one_coin();
        let double_spent_in_block = spend_contested(&contested[0], 4);
        a.node
            .submit_transaction(double_spent_in_block.clone())
            .expect("accepted");
        let a1 = a.mine(true);
        assert!(a1.transactions.contains(&payment.transaction));
        assert!(a1.transactions.contains(&double_spent_in_block));
        let child_in_block = spend_output(
            &payment.transaction,
            output_paying(&payment.transaction, &test_address(3)),
            &test_key(3),
            test_address(5),
        );
        a.node
            .submit_transaction(child_in_block.clone())
            .expect("accepted");
        let a2 = a.mine(true);
        assert!(a2.transactions.contains(&child_in_block));
        let grandchild_in_pool = spend_output(&child_in_block, 0, &test_key(5), test_address(6));
        let grandchild_arrival_ms = a.node.now_ms();
        a.node
            .submit_transaction(grandchild_in_pool.clone())
            .expect("accepted");
        let double_spent_in_pool = spend_contested(&contested[1], 4);
        a.node
            .submit_transaction(double_spent_in_pool.clone())
            .expect("accepted");

        // Branch B.
        let winning_spends = [
            spend_contested(&contested[0], 7),
            spend_contested(&contested[1], 7),
        ];
        for spend in &winning_spends {
            b.node.submit_transaction(spend.clone()).expect("accepted");
        }
        let branch_b = [b.mine(true), b.mine(false), b.mine(false)];
        assert_eq!(branch_b[0].transactions.len(), 3);

        let mut events = a.node.subscribe();
        let reorganised_at_ms = a.node.now_ms();
        a.submit_blocks(&branch_b);
        assert_eq!(
            a.node.tip().hash,
            branch_b[2].compute_hash(),
            "B has more work"
        );
        let mut announced = HashSet::new();
        while let Ok(event) = events.try_recv() {
            if let NodeEvent::TransactionAccepted { txid } = event {
                announced.insert(txid);
            }
        }
        drop(b);
        Reorganised {
            test: a,
            payment: payment.txid,
            child_in_block: child_in_block.compute_txid(),
            grandchild_in_pool: grandchild_in_pool.compute_txid(),
            grandchild_arrival_ms,
            reorganised_at_ms,
            double_spent_in_block: double_spent_in_block.compute_txid(),
            double_spent_in_pool: double_spent_in_pool.compute_txid(),
            winning_spends: winning_spends
                .iter()
                .map(Transaction::compute_txid)
                .collect(),
            contested_coins: contested
                .iter()
                .map(|coinbase| OutPoint {
                    txid: coinbase.compute_txid(),
                    vout: 0,
                })
                .collect(),
            announced,
        }
    }

    #[test]
    fn a_reorg_line_says_its_depth_and_the_new_tip() {
        let hash = powchain_consensus::BlockHash([0xab; 32]);
        assert_eq!(
            super::reorg_line(1, powchain_consensus::BlockHeight(7), &hash, 0),
            "reorg: 1 block replaced, new tip #7 abababababababab"
        );
        assert_eq!(
            super::reorg_line(3, powchain_consensus::BlockHeight(12), &hash, 2),
            "reorg: 3 blocks replaced, new tip #12 abababababababab (2 transactions back in the pool)"
        );
    }

    #[test]
    fn a_reorganisation_checks_again_the_signatures_of_the_losing_branch_only() {
        // Without a signature cache, every check the pool asks for runs.
        let params = Network::Regtest.params();
        let clock = crate::testing::ManualClock::starting_at(
            params.genesis().header.time_ms + params.target_block_time_ms,
        );
        let a = TestNode::open_configured(Network::Regtest, clock, |config| {
            config.signature_cache_entries = 0;
        });
        let b = TestNode::open_with_clock(Network::Regtest, Arc::clone(&a.clock));
        let mut prefix = vec![a.mine_paying(test_address(2))];
        prefix.extend(a.mine_until_spendable());
        b.submit_blocks(&prefix);
        // Branch A confirms a payment; a chain of two more spending it waits in the pool.
        let confirmed = spend_output(&prefix[0].transactions[0], 0, &test_key(2), test_address(3));
        let pooled = spend_output(&confirmed, 0, &test_key(3), test_address(4));
        let pooled_child = spend_output(&pooled, 0, &test_key(4), test_address(5));
        a.node
            .submit_transaction(confirmed.clone())
            .expect("accepted");
        let a1 = a.mine(true);
        assert!(a1.transactions.contains(&confirmed));
        for transaction in [&pooled, &pooled_child] {
            a.node
                .submit_transaction(transaction.clone())
                .expect("accepted");
        }

        let before = a.node.pool_verifier.checks_verified();
        let branch_b = [b.mine(false), b.mine(false)];
        a.submit_blocks(&branch_b);
        assert_eq!(
            a.node.tip().hash,
            branch_b[1].compute_hash(),
            "B has more work"
        );

        for transaction in [&confirmed, &pooled, &pooled_child] {
            assert!(
                a.pool_holds(&transaction.compute_txid()),
                "every payment is pooled again"
            );
        }
        assert_eq!(
            a.node.pool_verifier.checks_verified() - before,
            1,
            "the losing branch's payment is checked again; the two the pool held were \
             checked when they entered it"
        );
    }

    #[test]
    fn the_losing_branch_returns_to_the_pool_and_to_its_store() {
        let reorganised = reorganise();
        let test = reorganised.test;
        assert!(test.pool_holds(&reorganised.payment));
        assert!(reorganised.announced.contains(&reorganised.payment));
        let test = test.reopen();
        assert!(
            test.pool_holds(&reorganised.payment),
            "stored, so a restart keeps it"
        );
        assert!(test.pool_holds(&reorganised.child_in_block));
        assert!(test.pool_holds(&reorganised.grandchild_in_pool));
        assert_eq!(test.node.pool_size().0, 3);
    }

    #[test]
    fn transactions_the_winning_branch_double_spent_are_dropped_and_forgotten() {
        let reorganised = reorganise();
        let test = &reorganised.test;
        for dropped in [
            &reorganised.double_spent_in_block,
            &reorganised.double_spent_in_pool,
        ] {
            assert!(!test.pool_holds(dropped), "B spent its coin");
            assert!(!reorganised.announced.contains(dropped), "not announced");
            assert!(
                !test.stored_pool_txids().contains(dropped),
                "not kept in the store"
            );
        }
        for confirmed in &reorganised.winning_spends {
            assert!(!test.pool_holds(confirmed), "confirmed in B");
        }
        for coin in &reorganised.contested_coins {
            assert_eq!(test.node.pool_spender_of(coin), None);
        }
    }

    #[test]
    fn returning_transactions_come_back_oldest_block_first_then_the_pool() {
        let reorganised = reorganise();
        let test = &reorganised.test;
        assert!(test.pool_holds(&reorganised.payment));
        assert!(
            test.pool_holds(&reorganised.child_in_block),
            "its parent, from the older block A1, came back before it"
        );
        assert!(
            test.pool_holds(&reorganised.grandchild_in_pool),
            "its parent, from the disconnected A2, came back before the pool"
        );
        let mut stored = test.stored_pool_txids();
        stored.sort();
        let mut expected = vec![
            reorganised.payment,
            reorganised.child_in_block,
            reorganised.grandchild_in_pool,
        ];
        expected.sort();
        assert_eq!(stored, expected);
    }

    #[test]
    fn a_reorganisation_does_not_restart_the_expiry_of_what_the_pool_held() {
        let reorganised = reorganise();
        let test = &reorganised.test;
        let arrival_ms = |txid: &Txid| {
            test.node
                .pool_transaction(txid)
                .expect("in the pool")
                .time_ms
        };
        assert!(reorganised.reorganised_at_ms > reorganised.grandchild_arrival_ms);
        assert_eq!(
            arrival_ms(&reorganised.grandchild_in_pool),
            reorganised.grandchild_arrival_ms,
            "the pool held it: it keeps its arrival time"
        );
        assert_eq!(
            arrival_ms(&reorganised.payment),
            reorganised.reorganised_at_ms,
            "it came back from a block: it arrived at the reorganisation"
        );
        let expiry_ms = test.node.config().mempool.expiry_ms;
        test.clock
            .set(reorganised.grandchild_arrival_ms + expiry_ms + 1);
        assert_eq!(test.node.expire_pool(), 1);
        assert!(!test.pool_holds(&reorganised.grandchild_in_pool));
        assert!(test.pool_holds(&reorganised.child_in_block));
    }

    /// One call of the chain can connect a block and disconnect it again: orphans that
    /// waited for the same parent, the first connected, the second's branch then winning.
    /// A pooled payment of the first leaves the pool and comes back. Its row was written
    /// and then removed (rows first, removals after), so a restart lost a payment the
    /// node held and had acknowledged.
    ///
    /// ```text
    ///   tip ── P ── X1 [payment]      (X1, Y1, Y2 arrive before P)
    ///            └─ Y1 ── Y2
    /// ```
    #[test]
    fn a_payment_connected_and_disconnected_in_one_call_keeps_its_stored_row() {
        let a = TestNode::open(Network::Regtest);
        let receiver = TestNode::open_with_clock(Network::Regtest, Arc::clone(&a.clock));
        let rival = TestNode::open_with_clock(Network::Regtest, Arc::clone(&a.clock));
        let prefix = a.mine_until_spendable();
        receiver.submit_blocks(&prefix);
        rival.submit_blocks(&prefix);

        let payment = a.pay_one_coin();
        receiver
            .node
            .submit_transaction(payment.transaction.clone())
            .expect("the receiver pools the payment");
        assert!(receiver.stored_pool_txids().contains(&payment.txid));
        let p = a.mine(false);
        let x1 = a.mine(true);
        assert!(x1.transactions.contains(&payment.transaction));
        rival.submit_blocks(std::slice::from_ref(&p));
        let y1 = rival.mine(false);
        let y2 = rival.mine(false);

        receiver.submit_blocks(&[x1, y1, y2.clone()]);
        receiver.submit_blocks(&[p]);
        assert_eq!(
            receiver.node.tip().hash,
            y2.compute_hash(),
            "Y has more work"
        );
        assert!(receiver.pool_holds(&payment.txid), "back in the pool");
        assert!(
            receiver.stored_pool_txids().contains(&payment.txid),
            "and in its store"
        );
        let receiver = receiver.reopen();
        assert!(receiver.pool_holds(&payment.txid), "so a restart keeps it");
    }

    /// A reorganisation tries at most a full pool's bytes of the losing branch's
    /// transactions, from the block nearest the fork, so a deep one of full blocks is not
    /// cloned and validated whole under the lock. Here the branch's later block pays
    /// more: its payments were once admitted in turn, evicting the earlier ones.
    #[test]
    fn a_reorganisation_returns_at_most_a_full_pool_of_the_losing_branch() {
        use powchain_consensus::{Amount, FeeRate};

        let a = TestNode::open(Network::Regtest);
        let payment_bytes = 187;
        let receiver =
            TestNode::open_configured(Network::Regtest, Arc::clone(&a.clock), |config| {
                config.mempool.max_bytes = 2 * payment_bytes + 100;
            });
        let rival = TestNode::open_with_clock(Network::Regtest, Arc::clone(&a.clock));
        let mut prefix = a.mine_until_spendable();
        prefix.extend((0..4).map(|_| a.mine(false)));
        receiver.submit_blocks(&prefix);
        rival.submit_blocks(&prefix);

        let pay = |units_per_byte: u64| {
            let payment = a
                .node
                .send(
                    test_address(3),
                    Amount::ONE_COIN,
                    Some(FeeRate::from_units_per_byte(units_per_byte)),
                )
                .expect("the wallet pays");
            assert_eq!(payment.transaction.compute_size(), payment_bytes);
            payment.txid
        };
        let older = [pay(10), pay(11)];
        let a1 = a.mine(true);
        let newer = [pay(30), pay(40)];
        let a2 = a.mine(true);
        assert_eq!((a1.transactions.len(), a2.transactions.len()), (3, 3));
        receiver.submit_blocks(&[a1, a2]);
        let branch_b = [rival.mine(false), rival.mine(false), rival.mine(false)];
        let mut events = receiver.node.subscribe();
        receiver.submit_blocks(&branch_b);
        assert_eq!(receiver.node.tip().hash, branch_b[2].compute_hash());

        let mut announced = HashSet::new();
        while let Ok(event) = events.try_recv() {
            if let NodeEvent::TransactionAccepted { txid } = event {
                announced.insert(txid);
            }
        }
        for txid in &older {
            assert!(receiver.pool_holds(txid), "within a pool's bytes");
        }
        for txid in &newer {
            assert!(!receiver.pool_holds(txid));
            assert!(!announced.contains(txid), "never tried");
        }
    }
}
