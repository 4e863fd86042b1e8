//! The chain state through its public API: connecting, reorganising, orphans, invalid
//! blocks, restarts.

mod common;

use common::{NOW_MS, assert_consistent, open, store_path};
use powchain_chain::{BlockOutcome, ChainError, ChainEvent, ChainOptions, ChainState};
use powchain_consensus::testkit::{TestChain, test_address, test_key};
use powchain_consensus::{Amount, Block, ConsensusError, Network, TxOut};

fn feed(chain: &mut ChainState, blocks: &[Block]) {
    for block in blocks {
        chain
            .accept_block(block.clone(), NOW_MS)
            .expect("valid block");
    }
}

/// A chain that spends a mature coinbase to address 7 in its last block.
fn chain_with_payment() -> (TestChain, Amount) {
    let mut test_chain = TestChain::regtest_with_mature_coins(2);
    let (outpoint, coin) = test_chain.mature_coin(0);
    let paid = Amount::from_coins(10).expect("in range");
    let change = coin
        .output
        .value
        .checked_sub(paid)
        .and_then(|rest| rest.checked_sub(Amount::from_units(1_000).expect("ok")))
        .expect("enough");
    let spend = test_chain.spend(
        &[outpoint],
        vec![
            TxOut {
                value: paid,
                address: test_address(7),
            },
            TxOut {
                value: change,
                address: test_address(1),
            },
        ],
        &[test_key(1)],
        &Default::default(),
    );
    let block = test_chain.build(vec![spend], Amount::from_units(1_000).expect("ok"));
    test_chain.push(block).expect("valid");
    (test_chain, paid)
}

#[test]
fn a_block_s_summary_and_spent_coins_are_read_without_its_transactions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (test_chain, _) = chain_with_payment();
    let mut chain = open(dir.path());
    feed(&mut chain, &test_chain.blocks[1..]);
    let snapshot = chain.reader().snapshot().expect("snapshot");
    let tip = test_chain.tip();
    let hash = tip.compute_hash();
    let summary = snapshot
        .block_summary(&hash)
        .expect("read")
        .expect("stored");
    assert_eq!(summary.size, tip.compute_size());
    assert_eq!(summary.transaction_count, 2);
    let payment = &tip.transactions[1];
    let spent = snapshot
        .spent_coins(&hash)
        .expect("read")
        .expect("undo data");
    assert_eq!(spent.len(), 1);
    assert_eq!(spent[0].0, payment.spends()[0].prevout);
    let parent = &test_chain.blocks[1].transactions[0];
    assert_eq!(spent[0].1.output, parent.outputs[0]);
    // A block of only a coinbase spent nothing; an unknown block has neither.
    let empty = test_chain.blocks[1].compute_hash();
    assert_eq!(
        snapshot.spent_coins(&empty).expect("read"),
        Some(Vec::new())
    );
    let unknown = powchain_consensus::BlockHash([7; 32]);
    assert_eq!(snapshot.block_summary(&unknown).expect("read"), None);
    assert_eq!(snapshot.spent_coins(&unknown).expect("read"), None);
}

#[test]
fn a_new_store_starts_at_genesis_and_keeps_blocks_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (test_chain, paid) = chain_with_payment();
    {
        let mut chain = open(dir.path());
        assert_eq!(chain.tip().hash, Network::Regtest.params().genesis_hash());
        feed(&mut chain, &test_chain.blocks[1..]);
        assert_eq!(chain.tip().hash, test_chain.tip().compute_hash());
        assert_consistent(&chain);
    }
    let chain = open(dir.path());
    assert_eq!(chain.tip().hash, test_chain.tip().compute_hash());
    assert_eq!(chain.tip().height, test_chain.height());
    let snapshot = chain.reader().snapshot().expect("snapshot");
    let coins = snapshot.address_coins(&test_address(7), 100).expect("read");
    assert_eq!(coins.len(), 1);
    assert_eq!(coins[0].coin.output.value, paid);
    let history = snapshot
        .address_history(&test_address(7), 0, 10)
        .expect("read");
    assert_eq!(history.len(), 1);
    let location = snapshot
        .tx_location(&history[0].txid)
        .expect("read")
        .expect("indexed");
    assert_eq!(location.block_hash, test_chain.tip().compute_hash());
    assert_eq!(location.position, 1);
    assert_consistent(&chain);
}

#[test]
fn a_heavier_branch_replaces_the_tip_and_restores_spent_coins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (main, _) = chain_with_payment();
    let mut chain = open(dir.path());
    feed(&mut chain, &main.blocks[1..]);
    chain.take_events();

    // A branch from three blocks below the tip, one block longer, by another miner.
    let fork_height = main.blocks.len() - 3;
    let mut branch = TestChain::new(Network::Regtest);
    for block in &main.blocks[1..fork_height] {
        branch.push(block.clone()).expect("valid");
    }
    branch.miner = test_key(9);
    branch.mine_empty(4);
    for block in &branch.blocks[fork_height..branch.blocks.len() - 1] {
        let outcome = chain.accept_block(block.clone(), NOW_MS).expect("valid");
        assert_eq!(
            outcome,
            BlockOutcome::SideBranch,
            "equal or less work does not move the tip"
        );
    }
    let outcome = chain
        .accept_block(branch.tip().clone(), NOW_MS)
        .expect("valid");
    assert_eq!(outcome, BlockOutcome::MainChain);
    assert_eq!(chain.tip().hash, branch.tip().compute_hash());
    let events = chain.take_events();
    let disconnected = events
        .iter()
        .filter(|event| matches!(event, ChainEvent::BlockDisconnected { .. }))
        .count();
    let connected = events
        .iter()
        .filter(|event| matches!(event, ChainEvent::BlockConnected { .. }))
        .count();
    assert_eq!((disconnected, connected), (3, 4));
    assert!(matches!(
        events.last(),
        Some(ChainEvent::TipChanged { reorg_depth: 3, .. })
    ));
    // The payment to address 7 was on the losing branch.
    let snapshot = chain.reader().snapshot().expect("snapshot");
    assert!(
        snapshot
            .address_coins(&test_address(7), 10)
            .expect("read")
            .is_empty()
    );
    assert!(
        snapshot
            .address_history(&test_address(7), 0, 10)
            .expect("read")
            .is_empty()
    );
    assert_consistent(&chain);
    drop(snapshot);
    drop(chain);
    let chain = open(dir.path());
    assert_eq!(chain.tip().hash, branch.tip().compute_hash());
    assert_consistent(&chain);
}

#[test]
fn blocks_in_reverse_order_wait_as_orphans_then_connect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::new(Network::Regtest);
    test_chain.mine_empty(6);
    let mut chain = open(dir.path());
    for block in test_chain.blocks[2..].iter().rev() {
        let outcome = chain.accept_block(block.clone(), NOW_MS).expect("valid");
        assert!(matches!(outcome, BlockOutcome::Orphan { .. }));
    }
    assert_eq!(chain.orphan_count(), 5);
    let outcome = chain
        .accept_block(test_chain.blocks[1].clone(), NOW_MS)
        .expect("valid");
    assert_eq!(outcome, BlockOutcome::MainChain);
    assert_eq!(chain.tip().hash, test_chain.tip().compute_hash());
    assert_eq!(chain.orphan_count(), 0);
    assert_eq!(
        chain
            .accept_block(test_chain.blocks[3].clone(), NOW_MS)
            .expect("known"),
        BlockOutcome::Duplicate
    );
    assert_consistent(&chain);
}

#[test]
fn sibling_orphans_of_equal_work_leave_the_first_one_sent_as_the_tip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::new(Network::Regtest);
    test_chain.mine_empty(1);
    let parent = test_chain.tip().clone();
    // Sixteen children of the same parent, each by another miner: equal work, other
    // hashes.
    let siblings: Vec<Block> = (1..=16)
        .map(|miner| {
            let mut builder = test_chain.clone();
            builder.miner = test_key(miner);
            builder.build(vec![], Amount::ZERO)
        })
        .collect();
    let mut chain = open(dir.path());
    for sibling in &siblings {
        assert_eq!(
            chain.accept_block(sibling.clone(), NOW_MS).expect("valid"),
            BlockOutcome::Orphan {
                missing_parent: parent.compute_hash()
            }
        );
    }
    assert_eq!(chain.orphan_count(), siblings.len());
    feed(&mut chain, std::slice::from_ref(&parent));
    assert_eq!(chain.orphan_count(), 0);
    assert_eq!(
        chain.tip().hash,
        siblings[0].compute_hash(),
        "among equal work, the block seen first wins"
    );
    assert_consistent(&chain);
}

#[test]
fn an_invalid_block_is_marked_with_its_descendants_and_never_revalidated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::regtest_with_mature_coins(1);
    let mut chain = open(dir.path());
    feed(&mut chain, &test_chain.blocks[1..]);
    let tip_before = chain.tip().hash;

    // The coinbase pays one unit more than allowed; the header is valid.
    let mut greedy = test_chain.template(vec![], Amount::ZERO);
    greedy.transactions[0].outputs[0].value = greedy.transactions[0].outputs[0]
        .value
        .checked_add(Amount::from_units(1).expect("ok"))
        .expect("in range");
    TestChain::seal(&mut greedy);
    let error = chain
        .accept_block(greedy.clone(), NOW_MS)
        .expect_err("overpays");
    assert!(matches!(
        error,
        ChainError::Invalid {
            error: ConsensusError::CoinbaseOverpays { .. },
            ..
        }
    ));
    assert_eq!(error.rule(), Some("coinbase-overpays"));
    assert_eq!(chain.tip().hash, tip_before, "nothing connected");
    assert!(matches!(
        chain.accept_block(greedy.clone(), NOW_MS),
        Err(ChainError::KnownInvalid { .. })
    ));
    // A child of the invalid block is refused without validation.
    let mut child_builder = test_chain.clone();
    child_builder.blocks.push(greedy.clone());
    let child = child_builder.build(vec![], Amount::ZERO);
    assert!(chain.accept_block(child, NOW_MS).is_err());
    assert_consistent(&chain);
    // The valid alternative still connects.
    test_chain.mine_empty(1);
    feed(
        &mut chain,
        &test_chain.blocks[test_chain.blocks.len() - 1..],
    );
    assert_eq!(chain.tip().hash, test_chain.tip().compute_hash());
    drop(chain);
    let chain = open(dir.path());
    assert_eq!(chain.tip().hash, test_chain.tip().compute_hash());
}

#[test]
fn a_body_that_does_not_match_its_header_does_not_poison_the_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::new(Network::Regtest);
    test_chain.mine_empty(1);
    let valid = test_chain.build(vec![], Amount::ZERO);
    let mut mutated = valid.clone();
    mutated.transactions[0].outputs[0].value = Amount::from_units(1).expect("ok");
    let mut chain = open(dir.path());
    feed(&mut chain, &test_chain.blocks[1..]);
    let error = chain.accept_block(mutated, NOW_MS).expect_err("mutated");
    assert_eq!(error.rule(), Some("bad-merkle-root"));
    assert_eq!(
        chain.accept_block(valid.clone(), NOW_MS).expect("valid"),
        BlockOutcome::MainChain
    );
    assert_eq!(chain.tip().hash, valid.compute_hash());
}

#[test]
fn an_orphan_whose_body_does_not_match_its_header_does_not_shut_out_the_real_block() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::new(Network::Regtest);
    test_chain.mine_empty(2);
    let (parent, real) = (&test_chain.blocks[1], &test_chain.blocks[2]);
    // The real header, with its proof of work, over a coinbase paying another amount.
    let mut tampered = real.clone();
    tampered.transactions[0].outputs[0].value = Amount::from_units(1).expect("ok");
    let hash = real.compute_hash();
    assert_eq!(tampered.compute_hash(), hash);
    let mut chain = open(dir.path());

    let error = chain
        .accept_block(tampered, NOW_MS)
        .expect_err("tampered while its parent is unknown");
    assert_eq!(error.rule(), Some("bad-merkle-root"));
    assert_eq!(chain.orphan_count(), 0, "the tampered copy is not held");
    assert!(!chain.has_block(&hash));
    assert_eq!(
        chain.accept_block(real.clone(), NOW_MS).expect("valid"),
        BlockOutcome::Orphan {
            missing_parent: parent.compute_hash()
        }
    );
    assert_eq!(
        chain.accept_block(parent.clone(), NOW_MS).expect("valid"),
        BlockOutcome::MainChain
    );
    assert_eq!(chain.tip().hash, hash);
    assert_eq!(chain.orphan_count(), 0);
    assert_consistent(&chain);
}

#[test]
fn a_reorg_onto_a_branch_with_an_invalid_block_falls_back_to_the_best_valid_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut base = TestChain::regtest_with_mature_coins(1);
    let mut chain = open(dir.path());
    feed(&mut chain, &base.blocks[1..]);
    let mut main = base.clone();
    main.mine_empty(2);
    feed(&mut chain, &main.blocks[base.blocks.len()..]);
    let main_tip = chain.tip().hash;

    // A three-block branch whose first block overpays its coinbase.
    base.miner = test_key(5);
    let mut bad = base.template(vec![], Amount::ZERO);
    bad.transactions[0].outputs[0].value = Amount::from_coins(51).expect("ok");
    TestChain::seal(&mut bad);
    let mut branch = base.clone();
    branch.blocks.push(bad.clone());
    let second = branch.build(vec![], Amount::ZERO);
    branch.blocks.push(second.clone());
    let third = branch.build(vec![], Amount::ZERO);
    assert!(
        chain.accept_block(bad, NOW_MS).is_ok(),
        "a side branch is stored unvalidated"
    );
    assert!(chain.accept_block(second, NOW_MS).is_ok());
    let error = chain
        .accept_block(third, NOW_MS)
        .expect_err("its ancestor is invalid");
    assert_eq!(error.rule(), Some("coinbase-overpays"));
    assert_eq!(chain.tip().hash, main_tip);
    assert_consistent(&chain);
}

#[test]
fn headers_first_then_blocks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::new(Network::Regtest);
    test_chain.mine_empty(5);
    let headers: Vec<_> = test_chain.blocks[1..]
        .iter()
        .map(|block| block.header)
        .collect();
    let mut chain = open(dir.path());
    assert_eq!(chain.accept_headers(&headers, NOW_MS).expect("valid"), 5);
    assert_eq!(chain.accept_headers(&headers, NOW_MS).expect("known"), 0);
    let wanted = chain.blocks_to_download(3);
    assert_eq!(
        wanted,
        test_chain.blocks[1..4]
            .iter()
            .map(Block::compute_hash)
            .collect::<Vec<_>>()
    );
    assert_eq!(chain.best_header().0, test_chain.tip().compute_hash());
    feed(&mut chain, &test_chain.blocks[1..]);
    assert!(chain.blocks_to_download(10).is_empty());

    // A header that skips its parent does not connect.
    let mut later = test_chain.clone();
    later.mine_empty(2);
    let error = chain
        .accept_headers(&[later.tip().header], NOW_MS)
        .expect_err("does not connect");
    assert!(matches!(error, ChainError::UnknownParent { .. }));
    // A header without proof of work is refused with its rule.
    let mut lazy = later.blocks[6].header;
    let target = lazy.bits.to_target().expect("valid");
    while target.is_met_by(lazy.compute_hash()) {
        lazy.nonce += 1;
    }
    let error = chain.accept_headers(&[lazy], NOW_MS).expect_err("no work");
    assert_eq!(error.rule(), Some("bad-proof-of-work"));
}

#[test]
fn locators_find_the_fork_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut test_chain = TestChain::new(Network::Regtest);
    test_chain.mine_empty(40);
    let mut chain = open(dir.path());
    feed(&mut chain, &test_chain.blocks[1..]);
    let locator = chain.block_locator();
    assert_eq!(locator[0], chain.tip().hash);
    assert_eq!(
        *locator.last().expect("non-empty"),
        Network::Regtest.params().genesis_hash()
    );
    assert!(locator.len() < 20);
    let peer_locator = vec![test_chain.blocks[30].compute_hash()];
    let headers = chain.headers_after(&peer_locator, None, 5);
    assert_eq!(headers.len(), 5);
    assert_eq!(headers[0], test_chain.blocks[31].header);
    assert_eq!(chain.headers_after(&[], None, 1000).len(), 40);
}

#[test]
fn a_store_of_another_network_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(open(dir.path()));
    let result = ChainState::open(
        &store_path(dir.path()),
        Network::Devnet,
        ChainOptions::default(),
    );
    let error = result.err().expect("foreign store");
    assert!(
        matches!(error, ChainError::ForeignDataDir { .. }),
        "{error}"
    );
    // Each network is named beside its own genesis (issue 15, bug 6).
    let message = error.to_string();
    let regtest = Network::Regtest.params().genesis_hash().to_string();
    let devnet = Network::Devnet.params().genesis_hash().to_string();
    assert!(
        message.contains(&format!("regtest (genesis {regtest})")),
        "{message}"
    );
    assert!(
        message.contains(&format!("devnet (genesis {devnet})")),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        store_path(dir.path()),
        b"this is not a redb file, just some bytes",
    )
    .expect("write");
    let result = ChainState::open(
        &store_path(dir.path()),
        Network::Regtest,
        ChainOptions::default(),
    );
    let error = result.err().expect("not a store");
    assert!(matches!(error, ChainError::Damaged { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&store_path(dir.path()).display().to_string())
            && message.contains("--reindex"),
        "{message}"
    );
}

/// A chain of `blocks` blocks after the mature coins, each with two or three payments
/// among addresses 1, 2 and 7 that spend the oldest coins (some made one block before,
/// some inside the same block), so coins are made and spent across and within blocks.
fn busy_chain(blocks: usize) -> TestChain {
    let mut test_chain = TestChain::regtest_with_mature_coins(4);
    let keys = [test_key(1), test_key(2), test_key(7)];
    let fee = Amount::from_units(1_000).expect("in range");
    for round in 0..blocks {
        let height = test_chain.height().next();
        let maturity = test_chain.params.coinbase_maturity;
        let mut spendable: Vec<_> = test_chain
            .utxo
            .iter()
            .filter(|(_, coin)| !coin.is_coinbase || coin.height.0 + maturity <= height.0)
            .map(|(outpoint, coin)| (*outpoint, *coin))
            .collect();
        spendable.sort_by_key(|(outpoint, coin)| (coin.height, *outpoint));
        let mut transactions = Vec::new();
        let mut extra = std::collections::HashMap::new();
        for (index, (outpoint, coin)) in spendable.into_iter().take(2).enumerate() {
            let to = [1, 2, 7][(round + index) % 3];
            let half = Amount::from_units(coin.output.value.to_units() / 2).expect("in range");
            let rest = coin
                .output
                .value
                .checked_sub(half)
                .and_then(|rest| rest.checked_sub(fee))
                .expect("enough");
            let payment = test_chain.spend(
                &[outpoint],
                vec![
                    TxOut {
                        value: half,
                        address: test_address(to),
                    },
                    TxOut {
                        value: rest,
                        address: test_address(7),
                    },
                ],
                &keys,
                &extra,
            );
            extra.extend(TestChain::coins_of(&payment, height));
            transactions.push(payment);
        }
        // Spend the first payment's change inside the block.
        let change = powchain_consensus::OutPoint {
            txid: transactions[0].compute_txid(),
            vout: 1,
        };
        let value = extra[&change]
            .output
            .value
            .checked_sub(fee)
            .expect("enough");
        transactions.push(test_chain.spend(
            &[change],
            vec![TxOut {
                value,
                address: test_address(1),
            }],
            &keys,
            &extra,
        ));
        let fees = Amount::from_units(3 * fee.to_units()).expect("in range");
        let block = test_chain.build(transactions, fees);
        test_chain.push(block).expect("valid");
    }
    test_chain
}

/// Everything a snapshot answers about the chain's coins, transactions and addresses.
#[derive(Debug, PartialEq)]
struct ReaderView {
    utxo: std::collections::BTreeMap<powchain_consensus::OutPoint, powchain_consensus::Coin>,
    coins: Vec<Option<powchain_consensus::Coin>>,
    locations: Vec<Option<powchain_chain::TxLocation>>,
    address_coins: Vec<Vec<powchain_chain::AddressCoin>>,
    histories: Vec<Vec<powchain_chain::AddressTx>>,
}

fn reader_view(snapshot: &powchain_chain::Snapshot, test_chain: &TestChain) -> ReaderView {
    let mut coins = Vec::new();
    let mut locations = Vec::new();
    for block in &test_chain.blocks[1..] {
        for transaction in &block.transactions {
            let txid = transaction.compute_txid();
            locations.push(snapshot.tx_location(&txid).expect("read"));
            for vout in 0..transaction.outputs.len() as u32 {
                let outpoint = powchain_consensus::OutPoint { txid, vout };
                let coin = snapshot.coin(&outpoint).expect("read");
                let batch = snapshot.coins([&outpoint]).expect("read");
                assert_eq!(batch.get(&outpoint).copied(), coin);
                coins.push(coin);
            }
        }
    }
    let mut address_coins = Vec::new();
    let mut histories = Vec::new();
    for address in [1, 2, 7].map(test_address) {
        for limit in [0, 1, 2, 5, 1_000] {
            address_coins.push(snapshot.address_coins(&address, limit).expect("read"));
        }
        for (skip, limit) in [(0, 1), (0, 3), (1, 2), (3, 4), (5, 1_000), (0, 1_000)] {
            histories.push(
                snapshot
                    .address_history(&address, skip, limit)
                    .expect("read"),
            );
        }
    }
    ReaderView {
        utxo: snapshot.utxo_set().expect("read"),
        coins,
        locations,
        address_coins,
        histories,
    }
}

#[test]
fn readers_see_the_same_chain_whatever_the_coin_cache_holds() {
    let test_chain = busy_chain(12);
    let reference_dir = tempfile::tempdir().expect("temp dir");
    let mut reference = common::open_with_coin_cache(reference_dir.path(), 0);
    feed(&mut reference, &test_chain.blocks[1..]);
    assert_eq!(reference.unflushed_blocks(), 0);
    let expected = reader_view(
        &reference.reader().snapshot().expect("snapshot"),
        &test_chain,
    );
    assert!(expected.histories.iter().any(|history| history.len() > 5));
    assert!(expected.address_coins.iter().any(|coins| coins.len() > 5));

    for cache_blocks in [1, 3, 5, 1_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = common::open_with_coin_cache(dir.path(), cache_blocks);
        feed(&mut chain, &test_chain.blocks[1..]);
        assert!(chain.unflushed_blocks() <= cache_blocks);
        let before = chain.reader().snapshot().expect("snapshot");
        assert_eq!(before.unflushed_blocks(), chain.unflushed_blocks());
        assert_eq!(
            reader_view(&before, &test_chain),
            expected,
            "{cache_blocks} blocks cached"
        );
        assert_consistent(&chain);
        chain.flush().expect("flush");
        assert_eq!(chain.unflushed_blocks(), 0);
        // A snapshot taken before the flush still reads its own state.
        assert_eq!(reader_view(&before, &test_chain), expected);
        let after = chain.reader().snapshot().expect("snapshot");
        assert_eq!(after.unflushed_blocks(), 0);
        assert_eq!(reader_view(&after, &test_chain), expected);
    }
}

#[test]
fn a_reorganisation_below_the_flushed_tip_unwinds_cache_and_tables() {
    let test_chain = busy_chain(8);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = common::open_with_coin_cache(dir.path(), 3);
    feed(&mut chain, &test_chain.blocks[1..]);
    assert!(
        chain.unflushed_blocks() > 0,
        "some blocks wait in the cache"
    );
    // A heavier branch forking 7 blocks below the tip: past the cache, into the tables.
    let fork_height = test_chain.blocks.len() - 7;
    let mut branch = TestChain::new(Network::Regtest);
    for block in &test_chain.blocks[1..fork_height] {
        branch.push(block.clone()).expect("valid");
    }
    branch.miner = test_key(9);
    branch.mine_empty(8);
    feed(&mut chain, &branch.blocks[fork_height..]);
    assert_eq!(chain.tip().hash, branch.tip().compute_hash());
    assert_consistent(&chain);
    let snapshot = chain.reader().snapshot().expect("snapshot");
    let reference_dir = tempfile::tempdir().expect("temp dir");
    let mut reference = common::open_with_coin_cache(reference_dir.path(), 0);
    feed(&mut reference, &branch.blocks[1..]);
    assert_eq!(
        reader_view(&snapshot, &test_chain),
        reader_view(
            &reference.reader().snapshot().expect("snapshot"),
            &test_chain
        ),
        "the losing branch's coins, transactions and history are gone"
    );
}
