//! Scenario tests of the pool with real signed transactions from the consensus testkit.
//!
//! Every transaction pays to and is signed by `test_key(1)`, the test chain's miner, so
//! any output can be spent again. A one-input one-output transaction is 147 bytes.

use std::collections::HashMap;

use powchain_consensus::signature::SequentialVerifier;
use powchain_consensus::testkit::{TestChain, test_address, test_key};
use powchain_consensus::{
    Amount, Coin, ConsensusError, FeeRate, OutPoint, Transaction, TxIn, TxInputs, TxOut, Txid,
};

use super::*;

/// The clock all tests start at.
const START_MS: u64 = 1_000_000;

/// Encoded size of a transaction with one input and one output.
const ONE_IN_ONE_OUT_BYTES: usize = 147;

fn options() -> MempoolOptions {
    MempoolOptions::default()
}

fn pool_for(chain: &TestChain, options: MempoolOptions) -> Mempool {
    Mempool::new(chain.params, options)
}

/// Every pooled output as a coin, for signing spends of them.
pub(super) fn pooled_coins(chain: &TestChain, pool: &Mempool) -> HashMap<OutPoint, Coin> {
    pool.entries_by_arrival()
        .into_iter()
        .flat_map(|entry| TestChain::coins_of(&entry.transaction, chain.height().next()))
        .collect()
}

/// A transaction spending `outpoints` (chain or pool outputs) into `output_count` equal
/// outputs to the miner, paying exactly `fee_units`.
pub(super) fn spend(
    chain: &TestChain,
    pool: &Mempool,
    outpoints: &[OutPoint],
    output_count: usize,
    fee_units: u64,
) -> Transaction {
    let extra = pooled_coins(chain, pool);
    let input_total: u64 = outpoints
        .iter()
        .map(|outpoint| {
            chain
                .utxo
                .get(outpoint)
                .or_else(|| extra.get(outpoint))
                .expect("the test spends existing coins")
                .output
                .value
                .to_units()
        })
        .sum();
    let paid = input_total - fee_units;
    let each = paid / output_count as u64;
    let outputs = (0..output_count)
        .map(|index| {
            let value = if index == 0 {
                paid - each * (output_count as u64 - 1)
            } else {
                each
            };
            TxOut {
                value: Amount::from_units(value).expect("in range"),
                address: test_address(1),
            }
        })
        .collect();
    chain.spend(outpoints, outputs, &[test_key(1)], &extra)
}

/// The first output of `transaction`.
pub(super) fn first_output(transaction: &Transaction) -> OutPoint {
    OutPoint {
        txid: transaction.compute_txid(),
        vout: 0,
    }
}

fn accept_at(
    pool: &mut Mempool,
    chain: &TestChain,
    transaction: Transaction,
    now_ms: u64,
) -> Result<Accepted, MempoolError> {
    let result = pool.accept(
        transaction,
        &chain.utxo,
        chain.height().next(),
        now_ms,
        &SequentialVerifier,
    );
    pool.assert_consistent();
    result
}

fn accept(
    pool: &mut Mempool,
    chain: &TestChain,
    transaction: Transaction,
) -> Result<Accepted, MempoolError> {
    accept_at(pool, chain, transaction, START_MS)
}

fn txids(entries: &[&PoolEntry]) -> Vec<Txid> {
    entries.iter().map(|entry| entry.txid).collect()
}

/// The pool's txids in arrival order and its size: what "unchanged" compares.
fn snapshot(pool: &Mempool) -> (Vec<Txid>, usize) {
    (txids(&pool.entries_by_arrival()), pool.total_bytes())
}

#[test]
fn accepts_a_valid_transaction() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let (coin_outpoint, _) = chain.mature_coin(0);
    let transaction = spend(&chain, &pool, &[coin_outpoint], 1, 1_000);
    assert_eq!(pool.coins_to_fetch(&transaction), vec![coin_outpoint]);

    let accepted = accept(&mut pool, &chain, transaction.clone()).expect("valid");
    let txid = transaction.compute_txid();
    assert_eq!(accepted.txid, txid);
    assert_eq!(accepted.fee, Amount::from_units(1_000).expect("in range"));
    assert_eq!(accepted.size, ONE_IN_ONE_OUT_BYTES);
    assert_eq!(
        accepted.fee_rate,
        FeeRate::from_fee_and_size(accepted.fee, 147)
    );
    assert!(accepted.evicted.is_empty());

    assert!(pool.contains(&txid));
    assert_eq!(pool.len(), 1);
    assert!(!pool.is_empty());
    assert_eq!(pool.total_bytes(), ONE_IN_ONE_OUT_BYTES);
    assert_eq!(pool.spender_of(&coin_outpoint), Some(txid));
    let entry = pool.get(&txid).expect("pooled");
    assert_eq!(entry.transaction, transaction);
    assert_eq!(entry.time_ms, START_MS);
    assert_eq!(
        entry.ancestor_package,
        PackageTotals::single(accepted.fee, 147)
    );
    assert_eq!(entry.descendant_package, entry.ancestor_package);
    assert_eq!(
        pool.unspent_pool_outputs(),
        vec![(first_output(&transaction), transaction.outputs[0])]
    );
}

#[test]
fn accepts_a_chain_of_three_unconfirmed_transactions() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let grandparent = spend(&chain, &pool, &[chain.mature_coin(0).0], 2, 1_000);
    accept(&mut pool, &chain, grandparent.clone()).expect("spends a chain coin");
    let parent = spend(&chain, &pool, &[first_output(&grandparent)], 1, 2_000);
    assert!(
        pool.coins_to_fetch(&parent).is_empty(),
        "the pool creates it"
    );
    accept(&mut pool, &chain, parent.clone()).expect("spends a pooled output");
    let child = spend(&chain, &pool, &[first_output(&parent)], 1, 3_000);
    accept(&mut pool, &chain, child.clone()).expect("spends a pooled output of a pooled output");

    let child_entry = pool.get(&child.compute_txid()).expect("pooled");
    assert_eq!(child_entry.ancestor_package.count, 3);
    assert_eq!(child_entry.ancestor_package.fee.to_units(), 6_000);
    let grandparent_entry = pool.get(&grandparent.compute_txid()).expect("pooled");
    assert_eq!(grandparent_entry.descendant_package.count, 3);
    assert_eq!(
        grandparent_entry.descendant_package.size,
        pool.total_bytes()
    );
    assert_eq!(
        grandparent_entry.children().copied().collect::<Vec<_>>(),
        vec![parent.compute_txid()]
    );
    // The grandparent's second output and the child's output are the unspent ones.
    let unspent: Vec<OutPoint> = pool
        .unspent_pool_outputs()
        .into_iter()
        .map(|(outpoint, _)| outpoint)
        .collect();
    assert_eq!(
        unspent,
        vec![
            OutPoint {
                txid: grandparent.compute_txid(),
                vout: 1
            },
            first_output(&child)
        ]
    );
    // The wallet's question: the same outputs, filtered by address as they are found.
    let mut paying: Vec<OutPoint> = pool
        .unspent_outputs_paying(|_| true)
        .into_iter()
        .map(|(outpoint, _)| outpoint)
        .collect();
    paying.sort();
    let mut all = unspent;
    all.sort();
    assert_eq!(paying, all);
    assert!(pool.unspent_outputs_paying(|_| false).is_empty());
}

#[test]
fn remove_with_descendants_takes_the_family_below_and_leaves_the_rest_whole() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let mut pool = pool_for(&chain, options());
    let grandparent = spend(&chain, &pool, &[chain.mature_coin(0).0], 2, 1_000);
    accept(&mut pool, &chain, grandparent.clone()).expect("spends a chain coin");
    let parent = spend(&chain, &pool, &[first_output(&grandparent)], 1, 2_000);
    accept(&mut pool, &chain, parent.clone()).expect("spends a pooled output");
    let child = spend(&chain, &pool, &[first_output(&parent)], 1, 3_000);
    accept(&mut pool, &chain, child.clone()).expect("spends a pooled output");
    let other = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 1_000);
    accept(&mut pool, &chain, other.clone()).expect("spends a chain coin");

    let unknown = Txid([7; 32]);
    let removed = pool.remove_with_descendants([parent.compute_txid(), unknown]);
    assert_eq!(removed, vec![parent.compute_txid(), child.compute_txid()]);
    assert_eq!(pool.len(), 2);
    let grandparent_entry = pool.get(&grandparent.compute_txid()).expect("kept");
    assert_eq!(
        grandparent_entry.descendant_package.count, 1,
        "totals follow"
    );
    assert_eq!(
        pool.spender_of(&first_output(&grandparent)),
        None,
        "its output is free again"
    );
    accept(&mut pool, &chain, parent).expect("the removed parent can come back");
}

#[test]
fn double_spend_of_a_pooled_input_is_a_conflict_naming_the_spender() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let coin = chain.mature_coin(0).0;
    let first = spend(&chain, &pool, &[coin], 1, 1_000);
    accept(&mut pool, &chain, first.clone()).expect("valid");
    // Pays more, and still refused: the pool does no replacement.
    let second = spend(&chain, &pool, &[coin], 1, 50_000);
    let before = snapshot(&pool);
    let error = accept(&mut pool, &chain, second).expect_err("double spend");
    assert_eq!(
        error,
        MempoolError::Conflict {
            outpoint: coin,
            spent_by: first.compute_txid()
        }
    );
    assert_eq!(error.rule(), "conflict");
    assert_eq!(snapshot(&pool), before);
}

#[test]
fn a_transaction_already_in_the_pool_is_refused() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let transaction = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    accept(&mut pool, &chain, transaction.clone()).expect("valid");
    let error = accept(&mut pool, &chain, transaction.clone()).expect_err("twice");
    assert_eq!(
        error,
        MempoolError::AlreadyInPool {
            txid: transaction.compute_txid()
        }
    );
    assert_eq!(error.rule(), "already-in-pool");
}

#[test]
fn an_invalid_signature_is_invalid_with_rule_bad_signature() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let mut transaction = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    if let TxInputs::Spends(inputs) = &mut transaction.inputs {
        inputs[0].signature.0[10] ^= 1;
    }
    let error = accept(&mut pool, &chain, transaction).expect_err("bad signature");
    assert_eq!(
        error,
        MempoolError::Invalid(ConsensusError::BadSignature { input_index: 0 })
    );
    assert_eq!(error.rule(), "bad-signature");
    assert!(pool.is_empty());
}

#[test]
fn policy_is_checked_before_signatures() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let mut transaction = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 0);
    if let TxInputs::Spends(inputs) = &mut transaction.inputs {
        inputs[0].signature.0[10] ^= 1;
    }
    let error = accept(&mut pool, &chain, transaction).expect_err("free and badly signed");
    assert_eq!(error.rule(), "fee-rate-too-low", "no signature was checked");
}

#[test]
fn a_missing_input_is_invalid_with_rule_missing_input() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let (coin, _) = chain.mature_coin(0);
    let transaction = spend(&chain, &pool, &[coin], 1, 1_000);
    let empty_chain_view: HashMap<OutPoint, Coin> = HashMap::new();
    let error = pool
        .accept(
            transaction,
            &empty_chain_view,
            chain.height().next(),
            START_MS,
            &SequentialVerifier,
        )
        .expect_err("the caller found no coin");
    assert_eq!(
        error,
        MempoolError::Invalid(ConsensusError::MissingInput { outpoint: coin })
    );
    assert_eq!(error.rule(), "missing-input");
    assert!(pool.is_empty());
}

#[test]
fn a_coinbase_is_refused_as_unexpected_coinbase() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let coinbase = chain.blocks[1].transactions[0].clone();
    let error = accept(&mut pool, &chain, coinbase).expect_err("coinbase");
    assert_eq!(
        error,
        MempoolError::Invalid(ConsensusError::UnexpectedCoinbase)
    );
    assert_eq!(error.rule(), "unexpected-coinbase");
}

#[test]
fn a_fee_rate_below_the_minimum_is_refused() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let mut pool = pool_for(&chain, options());
    // 146 units for 147 bytes: just under one unit per byte.
    let cheap = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 146);
    let error = accept(&mut pool, &chain, cheap).expect_err("too cheap");
    assert_eq!(
        error,
        MempoolError::FeeRateTooLow {
            got: FeeRate::from_units_per_kilobyte(993),
            min: FeeRate::from_units_per_byte(1)
        }
    );
    assert_eq!(error.rule(), "fee-rate-too-low");
    let exact = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 147);
    accept(&mut pool, &chain, exact).expect("exactly the minimum");
}

#[test]
fn too_many_ancestors_are_refused() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_ancestors: 3,
            ..options()
        },
    );
    let mut previous = chain.mature_coin(0).0;
    for _ in 0..3 {
        let transaction = spend(&chain, &pool, &[previous], 1, 1_000);
        previous = first_output(&transaction);
        accept(&mut pool, &chain, transaction).expect("within the limit");
    }
    let fourth = spend(&chain, &pool, &[previous], 1, 1_000);
    let error = accept(&mut pool, &chain, fourth).expect_err("a fourth generation");
    assert_eq!(error, MempoolError::TooManyAncestors { count: 4, max: 3 });
    assert_eq!(error.rule(), "too-many-ancestors");
}

#[test]
fn too_many_descendants_are_refused() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_descendants: 3,
            ..options()
        },
    );
    // A root with four outputs: each child spending one is a descendant of the root.
    let root = spend(&chain, &pool, &[chain.mature_coin(0).0], 4, 1_000);
    let root_txid = root.compute_txid();
    accept(&mut pool, &chain, root).expect("valid");
    let child = |pool: &Mempool, vout: u32| {
        let outpoint = OutPoint {
            txid: root_txid,
            vout,
        };
        spend(&chain, pool, &[outpoint], 1, 1_000)
    };
    for vout in 0..2 {
        let transaction = child(&pool, vout);
        accept(&mut pool, &chain, transaction).expect("within the limit");
    }
    let before = snapshot(&pool);
    let third = child(&pool, 2);
    let error = accept(&mut pool, &chain, third).expect_err("a third child");
    assert_eq!(
        error,
        MempoolError::TooManyDescendants {
            ancestor: root_txid,
            count: 4,
            max: 3
        }
    );
    assert_eq!(error.rule(), "too-many-descendants");
    assert_eq!(snapshot(&pool), before, "a refusal changes nothing");
    // Returning after a reorganisation, it may pass the limit.
    let third = child(&pool, 2);
    pool.readmit(
        third,
        &chain.utxo,
        chain.height().next(),
        START_MS,
        &SequentialVerifier,
    )
    .expect("re-admitted past the descendant limit");
    pool.assert_consistent();
    let root_entry = pool.get(&root_txid).expect("pooled");
    assert_eq!(root_entry.descendant_package.count, 4);
}

#[test]
fn a_transaction_larger_than_the_pool_is_refused() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes: 100,
            ..options()
        },
    );
    let transaction = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    let error = accept(&mut pool, &chain, transaction).expect_err("too large");
    assert_eq!(
        error,
        MempoolError::TooLarge {
            size: 147,
            max: 100
        }
    );
    assert_eq!(error.rule(), "too-large-for-pool");
}

#[test]
fn a_high_fee_child_lifts_its_low_fee_parent() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let mut pool = pool_for(&chain, options());
    // Rates per byte: parent 1.4, independent 10, child 68; parent and child together 34.7.
    let parent = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 200);
    accept(&mut pool, &chain, parent.clone()).expect("valid");
    let independent = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 1_470);
    accept(&mut pool, &chain, independent.clone()).expect("valid");
    let child = spend(&chain, &pool, &[first_output(&parent)], 1, 10_000);
    accept(&mut pool, &chain, child.clone()).expect("valid");
    let (parent, independent, child) = (
        parent.compute_txid(),
        independent.compute_txid(),
        child.compute_txid(),
    );

    assert_eq!(
        txids(&pool.entries_by_fee_rate()),
        vec![child, independent, parent]
    );
    assert_eq!(
        txids(&pool.select_for_block(usize::MAX)),
        vec![parent, child, independent],
        "the parent rides with its child, ahead of the independent transaction"
    );
    assert_eq!(
        txids(&pool.select_for_block(2 * ONE_IN_ONE_OUT_BYTES)),
        vec![parent, child]
    );
    assert_eq!(
        txids(&pool.select_for_block(2 * ONE_IN_ONE_OUT_BYTES - 1)),
        vec![independent],
        "the package does not fit, the next best does"
    );
    assert!(pool.select_for_block(ONE_IN_ONE_OUT_BYTES - 1).is_empty());
}

#[test]
fn selection_takes_a_parent_once_for_two_children() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let parent = spend(&chain, &pool, &[chain.mature_coin(0).0], 2, 200);
    accept(&mut pool, &chain, parent.clone()).expect("valid");
    let parent_txid = parent.compute_txid();
    let first_child = spend(&chain, &pool, &[first_output(&parent)], 1, 20_000);
    accept(&mut pool, &chain, first_child.clone()).expect("valid");
    let second_output = OutPoint {
        txid: parent_txid,
        vout: 1,
    };
    let second_child = spend(&chain, &pool, &[second_output], 1, 5_000);
    accept(&mut pool, &chain, second_child.clone()).expect("valid");
    let selected = txids(&pool.select_for_block(usize::MAX));
    assert_eq!(
        selected,
        vec![
            parent_txid,
            first_child.compute_txid(),
            second_child.compute_txid()
        ]
    );
    assert_eq!(
        pool.get(&parent_txid)
            .expect("pooled")
            .descendant_package
            .count,
        3
    );
}

#[test]
fn selection_entered_by_leaves_out_the_young_and_their_descendants() {
    let chain = TestChain::regtest_with_mature_coins(3);
    let mut pool = pool_for(&chain, options());
    let old = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    accept_at(&mut pool, &chain, old.clone(), START_MS).expect("valid");
    let young = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 50_000);
    accept_at(&mut pool, &chain, young.clone(), START_MS + 2_000).expect("valid");
    // Two children stamped as old as the old parent: one of it, and one of the young
    // parent (a clock that went back). Each waits for its youngest ancestor.
    let child_of_old = spend(&chain, &pool, &[first_output(&old)], 1, 1_000);
    accept_at(&mut pool, &chain, child_of_old.clone(), START_MS).expect("valid");
    let child_of_young = spend(&chain, &pool, &[first_output(&young)], 1, 90_000);
    accept_at(&mut pool, &chain, child_of_young.clone(), START_MS).expect("valid");

    let selected = txids(&pool.select_for_block_entered_by(usize::MAX, START_MS + 1_000));
    assert_eq!(
        selected,
        vec![old.compute_txid(), child_of_old.compute_txid()]
    );
    assert_eq!(
        txids(&pool.select_for_block_entered_by(usize::MAX, START_MS + 2_000)).len(),
        4,
        "at its entry time a transaction is old enough"
    );
    assert!(
        pool.select_for_block_entered_by(usize::MAX, START_MS - 1)
            .is_empty()
    );
    assert_eq!(pool.select_for_block(usize::MAX).len(), 4);
}

#[test]
fn a_full_pool_evicts_the_lowest_package_and_refuses_a_cheaper_newcomer() {
    let chain = TestChain::regtest_with_mature_coins(5);
    let max_bytes = 3 * ONE_IN_ONE_OUT_BYTES;
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes,
            ..options()
        },
    );
    let per_byte = |rate: u64| rate * ONE_IN_ONE_OUT_BYTES as u64;
    let mut pooled = Vec::new();
    for (index, rate) in [2, 5, 10].into_iter().enumerate() {
        let transaction = spend(
            &chain,
            &pool,
            &[chain.mature_coin(index as u64).0],
            1,
            per_byte(rate),
        );
        pooled.push(transaction.compute_txid());
        accept(&mut pool, &chain, transaction).expect("room");
    }
    assert_eq!(pool.total_bytes(), max_bytes);

    let newcomer = spend(&chain, &pool, &[chain.mature_coin(3).0], 1, per_byte(7));
    let accepted = accept(&mut pool, &chain, newcomer.clone()).expect("pays more than 2");
    assert_eq!(accepted.evicted, vec![pooled[0]]);
    assert!(!pool.contains(&pooled[0]));
    assert!(pool.contains(&newcomer.compute_txid()));
    assert!(pool.total_bytes() <= max_bytes);

    let before = snapshot(&pool);
    let cheap = spend(&chain, &pool, &[chain.mature_coin(4).0], 1, per_byte(3));
    let error = accept(&mut pool, &chain, cheap).expect_err("pays less than the lowest, 5");
    assert_eq!(
        error,
        MempoolError::PoolFull {
            fee_rate: FeeRate::from_units_per_byte(3),
            lowest: FeeRate::from_units_per_byte(5),
            needed: FeeRate::from_units_per_byte(6)
        }
    );
    assert_eq!(error.rule(), "pool-full");
    assert_eq!(snapshot(&pool), before);
    let equal = spend(&chain, &pool, &[chain.mature_coin(4).0], 1, per_byte(5));
    let error = accept(&mut pool, &chain, equal).expect_err("an equal rate does not win");
    assert_eq!(error.rule(), "pool-full");
}

/// Room costs the pool's minimum fee rate on every byte again: one unit of fee more than
/// the lowest package bought its place, so a stranger could evict its own payment with a
/// new one and that one with the first again, for ever, each round a new transaction
/// every node validates and relays for next to nothing.
#[test]
fn evicting_a_package_costs_the_minimum_fee_rate_on_its_bytes() {
    let chain = TestChain::regtest_with_mature_coins(4);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes: ONE_IN_ONE_OUT_BYTES,
            ..options()
        },
    );
    let minimum = options().min_fee_rate;
    let fee = |units: u64| units * ONE_IN_ONE_OUT_BYTES as u64;
    let first = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, fee(2));
    accept(&mut pool, &chain, first.clone()).expect("room");
    // One unit more in all: not enough.
    let unit_more = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, fee(2) + 1);
    let error = accept(&mut pool, &chain, unit_more).expect_err("a unit does not buy room");
    assert!(
        matches!(error, MempoolError::PoolFull { needed, .. } if needed == FeeRate::from_units_per_byte(3)),
        "{error:?}"
    );
    assert!(pool.contains(&first.compute_txid()));
    // The minimum rate more on every byte: room.
    let raised = fee(2)
        + minimum
            .fee_for(ONE_IN_ONE_OUT_BYTES)
            .expect("small")
            .to_units();
    let second = spend(&chain, &pool, &[chain.mature_coin(2).0], 1, raised);
    let accepted = accept(&mut pool, &chain, second).expect("pays the increment");
    assert_eq!(accepted.evicted, vec![first.compute_txid()]);
    // The first payment's coin, spent again one unit above the second: refused again.
    let again = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, raised + 1);
    assert_eq!(
        accept(&mut pool, &chain, again.clone())
            .expect_err("each round costs the increment again")
            .rule(),
        "pool-full"
    );
    // Returning from a disconnected block, it was admitted once already: taken back as
    // before the increment, for a unit more.
    let returned = pool
        .readmit(
            again,
            &chain.utxo,
            chain.height().next(),
            START_MS,
            &SequentialVerifier,
        )
        .expect("a returning payment pays no increment");
    assert_eq!(returned.evicted.len(), 1);
}

#[test]
fn eviction_takes_a_package_with_its_descendants() {
    let chain = TestChain::regtest_with_mature_coins(4);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes: 4 * ONE_IN_ONE_OUT_BYTES,
            ..options()
        },
    );
    let per_byte = |rate: u64| rate * ONE_IN_ONE_OUT_BYTES as u64;
    // The parent's package (parent 2, child 3: 2.5 a byte) is the lowest; the child's
    // own package (3) is not.
    let parent = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, per_byte(2));
    accept(&mut pool, &chain, parent.clone()).expect("room");
    let child = spend(&chain, &pool, &[first_output(&parent)], 1, per_byte(3));
    accept(&mut pool, &chain, child.clone()).expect("room");
    for index in 1..3 {
        let other = spend(
            &chain,
            &pool,
            &[chain.mature_coin(index).0],
            1,
            per_byte(10),
        );
        accept(&mut pool, &chain, other).expect("room");
    }
    let newcomer = spend(&chain, &pool, &[chain.mature_coin(3).0], 1, per_byte(4));
    let accepted = accept(&mut pool, &chain, newcomer).expect("beats 2.5");
    assert_eq!(
        accepted.evicted,
        vec![parent.compute_txid(), child.compute_txid()]
    );
    assert_eq!(pool.len(), 3);
}

#[test]
fn eviction_protects_a_low_fee_parent_whose_child_pays_for_it() {
    let chain = TestChain::regtest_with_mature_coins(3);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes: 3 * ONE_IN_ONE_OUT_BYTES,
            ..options()
        },
    );
    let per_byte = |rate: u64| rate * ONE_IN_ONE_OUT_BYTES as u64;
    let parent = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, per_byte(1));
    accept(&mut pool, &chain, parent.clone()).expect("room");
    let child = spend(&chain, &pool, &[first_output(&parent)], 1, per_byte(19));
    accept(&mut pool, &chain, child).expect("room");
    let middling = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, per_byte(6));
    accept(&mut pool, &chain, middling.clone()).expect("room");
    let newcomer = spend(&chain, &pool, &[chain.mature_coin(2).0], 1, per_byte(7));
    let accepted = accept(&mut pool, &chain, newcomer).expect("beats 6");
    assert_eq!(
        accepted.evicted,
        vec![middling.compute_txid()],
        "the parent's package pays 10 a byte"
    );
    assert!(pool.contains(&parent.compute_txid()));
}

/// A child bids for room at its package's rate with its pooled ancestors when that is
/// lower: they cannot be evicted for it. Bidding its own rate, a well-paying child of a
/// parent paying almost nothing pushed out a transaction paying more than the two
/// together, so a stranger could empty the pool of better payments at little cost.
#[test]
fn a_child_bids_for_room_at_its_package_rate_with_its_ancestors() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes: 2 * ONE_IN_ONE_OUT_BYTES + 100,
            ..options()
        },
    );
    let per_byte = |rate: u64| rate * ONE_IN_ONE_OUT_BYTES as u64;
    let valuable = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, per_byte(12));
    accept(&mut pool, &chain, valuable.clone()).expect("room");
    let parent = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, per_byte(1));
    accept(&mut pool, &chain, parent.clone()).expect("room");

    // 20 a byte alone, 10.5 with its parent: less than the 12 it would push out.
    let before = snapshot(&pool);
    let child = spend(&chain, &pool, &[first_output(&parent)], 1, per_byte(20));
    let error = accept(&mut pool, &chain, child).expect_err("the pair pays less");
    assert_eq!(
        error,
        MempoolError::PoolFull {
            fee_rate: FeeRate::from_units_per_kilobyte(10_500),
            lowest: FeeRate::from_units_per_byte(12),
            needed: FeeRate::from_units_per_byte(13)
        }
    );
    assert_eq!(snapshot(&pool), before);

    // 30 a byte: 15.5 with its parent, more than 12. The child pays for its parent.
    let paying_child = spend(&chain, &pool, &[first_output(&parent)], 1, per_byte(30));
    let accepted = accept(&mut pool, &chain, paying_child).expect("the pair pays more");
    assert_eq!(accepted.evicted, vec![valuable.compute_txid()]);
}

#[test]
fn a_refused_newcomer_leaves_a_partly_evicted_pool_as_it_was() {
    let chain = TestChain::regtest_with_mature_coins(6);
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            max_bytes: 4 * ONE_IN_ONE_OUT_BYTES,
            ..options()
        },
    );
    let per_byte = |rate: u64| rate * ONE_IN_ONE_OUT_BYTES as u64;
    for (index, rate) in [2, 6, 10, 10].into_iter().enumerate() {
        let transaction = spend(
            &chain,
            &pool,
            &[chain.mature_coin(index as u64).0],
            1,
            per_byte(rate),
        );
        accept_at(&mut pool, &chain, transaction, START_MS + index as u64).expect("room");
    }
    let before = snapshot(&pool);
    let times: Vec<u64> = pool
        .entries_by_arrival()
        .iter()
        .map(|entry| entry.time_ms)
        .collect();
    // Two inputs: 247 bytes at 5 a byte. Evicting the 2-a-byte transaction frees only 147
    // bytes; the next lowest pays 6, more than the newcomer.
    let newcomer = spend(
        &chain,
        &pool,
        &[chain.mature_coin(4).0, chain.mature_coin(5).0],
        1,
        5 * 247,
    );
    assert_eq!(newcomer.compute_size(), 247);
    let error = accept(&mut pool, &chain, newcomer).expect_err("needs two evictions");
    assert_eq!(
        error,
        MempoolError::PoolFull {
            fee_rate: FeeRate::from_units_per_byte(5),
            lowest: FeeRate::from_units_per_byte(6),
            needed: FeeRate::from_units_per_byte(7)
        }
    );
    assert_eq!(snapshot(&pool), before);
    let times_after: Vec<u64> = pool
        .entries_by_arrival()
        .iter()
        .map(|entry| entry.time_ms)
        .collect();
    assert_eq!(
        times_after, times,
        "restored entries keep their arrival time"
    );
}

#[test]
fn expiry_removes_old_transactions_with_their_descendants() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let expiry_ms = 60_000;
    let mut pool = pool_for(
        &chain,
        MempoolOptions {
            expiry_ms,
            ..options()
        },
    );
    let old = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    accept_at(&mut pool, &chain, old.clone(), START_MS).expect("valid");
    let younger = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 1_000);
    accept_at(&mut pool, &chain, younger.clone(), START_MS + 5).expect("valid");
    let young_child = spend(&chain, &pool, &[first_output(&old)], 1, 1_000);
    accept_at(&mut pool, &chain, young_child.clone(), START_MS + 10).expect("valid");

    assert!(
        pool.expire(START_MS + expiry_ms).is_empty(),
        "exactly the expiry age stays"
    );
    let removed = pool.expire(START_MS + expiry_ms + 1);
    pool.assert_consistent();
    assert_eq!(
        removed,
        vec![old.compute_txid(), young_child.compute_txid()]
    );
    assert_eq!(
        txids(&pool.entries_by_arrival()),
        vec![younger.compute_txid()]
    );
    assert_eq!(
        pool.spender_of(&chain.mature_coin(0).0),
        None,
        "the coin is free again"
    );
}

#[test]
fn remove_for_block_removes_included_and_conflicting_transactions() {
    let mut chain = TestChain::regtest_with_mature_coins(3);
    let mut pool = pool_for(&chain, options());
    let confirmed = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    accept(&mut pool, &chain, confirmed.clone()).expect("valid");
    let child_of_confirmed = spend(&chain, &pool, &[first_output(&confirmed)], 1, 1_000);
    accept(&mut pool, &chain, child_of_confirmed.clone()).expect("valid");
    let conflicted = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 1_000);
    accept(&mut pool, &chain, conflicted.clone()).expect("valid");
    let child_of_conflicted = spend(&chain, &pool, &[first_output(&conflicted)], 1, 1_000);
    accept(&mut pool, &chain, child_of_conflicted.clone()).expect("valid");
    let unrelated = spend(&chain, &pool, &[chain.mature_coin(2).0], 1, 1_000);
    accept(&mut pool, &chain, unrelated.clone()).expect("valid");

    // The block confirms one pooled transaction and a different spend of another's coin.
    let empty_pool = pool_for(&chain, options());
    let double_spend = spend(&chain, &empty_pool, &[chain.mature_coin(1).0], 1, 2_000);
    let fees = Amount::from_units(3_000).expect("in range");
    let block = chain.build(vec![confirmed.clone(), double_spend], fees);
    chain.push(block.clone()).expect("a valid block");

    let removed = pool.remove_for_block(&block);
    pool.assert_consistent();
    assert_eq!(
        removed,
        vec![
            confirmed.compute_txid(),
            conflicted.compute_txid(),
            child_of_conflicted.compute_txid(),
        ],
        "in arrival order"
    );
    assert_eq!(
        txids(&pool.entries_by_arrival()),
        vec![child_of_confirmed.compute_txid(), unrelated.compute_txid()]
    );
    let orphan = pool
        .get(&child_of_confirmed.compute_txid())
        .expect("stays: its input is now confirmed");
    assert_eq!(orphan.ancestor_package.count, 1);
    assert_eq!(orphan.parents().count(), 0);
    // Its input is a chain coin now, still marked spent by it in the pool.
    assert!(chain.utxo.contains_key(&first_output(&confirmed)));
    assert_eq!(
        pool.spender_of(&first_output(&confirmed)),
        Some(child_of_confirmed.compute_txid())
    );
}

#[test]
fn take_all_returns_parents_before_children_and_empties_the_pool() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let mut pool = pool_for(&chain, options());
    let root = spend(&chain, &pool, &[chain.mature_coin(0).0], 3, 1_000);
    accept(&mut pool, &chain, root.clone()).expect("valid");
    let other_root = spend(&chain, &pool, &[chain.mature_coin(1).0], 1, 1_000);
    accept(&mut pool, &chain, other_root.clone()).expect("valid");
    let root_txid = root.compute_txid();
    let left = spend(
        &chain,
        &pool,
        &[OutPoint {
            txid: root_txid,
            vout: 1,
        }],
        1,
        9_000,
    );
    accept(&mut pool, &chain, left.clone()).expect("valid");
    let right = spend(
        &chain,
        &pool,
        &[OutPoint {
            txid: root_txid,
            vout: 2,
        }],
        1,
        1_000,
    );
    accept(&mut pool, &chain, right.clone()).expect("valid");
    let join = spend(
        &chain,
        &pool,
        &[
            first_output(&left),
            first_output(&right),
            first_output(&other_root),
        ],
        1,
        1_000,
    );
    accept(&mut pool, &chain, join.clone()).expect("valid");

    let taken = pool.take_all();
    pool.assert_consistent();
    assert!(pool.is_empty());
    assert_eq!(pool.total_bytes(), 0);
    assert_eq!(taken.len(), 5);
    let position = |txid: Txid| {
        taken
            .iter()
            .position(|transaction| transaction.compute_txid() == txid)
            .expect("taken")
    };
    for transaction in &taken {
        for input in transaction.spends() {
            if taken
                .iter()
                .any(|other| other.compute_txid() == input.prevout.txid)
            {
                assert!(position(input.prevout.txid) < position(transaction.compute_txid()));
            }
        }
    }
    for transaction in taken {
        accept(&mut pool, &chain, transaction).expect("re-admitted in the order given");
    }
    assert_eq!(pool.len(), 5);
}

#[test]
fn an_output_already_spent_in_the_pool_is_refused() {
    // Reached only if the pool keeps a transaction that spent `parent` while `parent` was
    // confirmed, and `parent` comes back without take_all (a reorg handled wrongly).
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let parent = spend(&chain, &pool, &[chain.mature_coin(0).0], 1, 1_000);
    let mut coins_with_parent_confirmed = chain.utxo.clone();
    coins_with_parent_confirmed.extend(TestChain::coins_of(&parent, chain.height()));
    let child = chain.spend(
        &[first_output(&parent)],
        vec![TxOut {
            value: Amount::from_units(parent.outputs[0].value.to_units() - 1_000)
                .expect("in range"),
            address: test_address(1),
        }],
        &[test_key(1)],
        &coins_with_parent_confirmed,
    );
    pool.accept(
        child.clone(),
        &coins_with_parent_confirmed,
        chain.height().next(),
        START_MS,
        &SequentialVerifier,
    )
    .expect("its parent is in that chain view");
    let error = accept(&mut pool, &chain, parent.clone()).expect_err("child already pooled");
    assert_eq!(
        error,
        MempoolError::OutputAlreadySpentInPool {
            outpoint: first_output(&parent),
            spent_by: child.compute_txid()
        }
    );
}

#[test]
fn a_transaction_refused_before_any_coin_is_read_needs_no_coins_fetched() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let mut pool = pool_for(&chain, options());
    let (coin, _) = chain.mature_coin(0);
    let pooled = spend(&chain, &pool, &[coin], 1, 1_000);
    let with_inputs = |inputs: Vec<TxIn>| Transaction {
        inputs: TxInputs::Spends(inputs),
        ..pooled.clone()
    };
    let input = pooled.spends()[0];
    // 1,001 inputs of coins nobody has: past the 100 kB rule before any is looked up.
    let too_large = with_inputs(
        (0..1_001)
            .map(|vout| TxIn {
                prevout: OutPoint {
                    txid: Txid([9; 32]),
                    vout,
                },
                ..input
            })
            .collect(),
    );
    let duplicate = with_inputs(vec![input, input]);
    let double_spend = spend(&chain, &pool, &[coin], 1, 2_000);
    accept(&mut pool, &chain, pooled.clone()).expect("valid");

    let no_coins: HashMap<OutPoint, Coin> = HashMap::new();
    for (name, transaction) in [
        ("too large", too_large),
        ("duplicate inputs", duplicate),
        ("already pooled", pooled),
        ("spends what a pooled one spends", double_spend),
    ] {
        assert!(
            pool.coins_to_fetch(&transaction).is_empty(),
            "{name}: no lookups"
        );
        // Refused without them as with them.
        let without = pool.accept(
            transaction.clone(),
            &no_coins,
            chain.height().next(),
            START_MS,
            &SequentialVerifier,
        );
        let with = pool.accept(
            transaction,
            &chain.utxo,
            chain.height().next(),
            START_MS,
            &SequentialVerifier,
        );
        assert!(without.is_err(), "{name}: refused");
        assert_eq!(
            format!("{without:?}"),
            format!("{with:?}"),
            "{name}: the same refusal"
        );
    }
}
