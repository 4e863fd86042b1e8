//! The anti-DoS work threshold (issue 13): a header chain is worth storing only while it
//! could still overtake the active chain. Measured before: 2,000 sibling low-work headers a
//! message, 30 messages a second, stored 900k headers (+345 MB of memory, +229 MB on disk)
//! and all were reloaded at restart.

mod common;

use common::{NOW_MS, open};
use powchain_chain::{ANTI_DOS_BLOCKS, BlockOutcome, ChainError, presync_work};
use powchain_consensus::testkit::{TestChain, solve, test_key};
use powchain_consensus::{Amount, Block, Header, Network, Work};

/// `count` headers building on `parent`, each solved at the parent's bits.
fn branch(parent: &Header, count: usize, salt: u64) -> Vec<Header> {
    let mut headers: Vec<Header> = Vec::with_capacity(count);
    let mut previous = *parent;
    for index in 0..count {
        let mut header = Header {
            prev_hash: previous.compute_hash(),
            time_ms: previous.time_ms + 1_000 + salt + index as u64 % 7,
            nonce: 0,
            ..previous
        };
        solve(&mut header);
        headers.push(header);
        previous = header;
    }
    headers
}

/// A store holding a chain `ANTI_DOS_BLOCKS + 60` blocks long (so the threshold is well
/// above genesis), with the test chain that built it.
fn chain_past_the_threshold() -> (tempfile::TempDir, powchain_chain::ChainState, TestChain) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = open(dir.path());
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(ANTI_DOS_BLOCKS as usize + 60);
    for block in &main.blocks[1..] {
        chain.accept_block(block.clone(), NOW_MS).expect("valid");
    }
    (dir, chain, main)
}

#[test]
fn a_branch_far_below_the_tip_has_too_little_work_and_one_near_it_has_enough() {
    let (_dir, mut chain, main) = chain_past_the_threshold();
    let length = main.blocks.len() - 1;
    let threshold = chain.anti_dos_work_threshold();
    assert!(threshold > Work::ZERO);
    assert!(threshold < chain.tip().work);

    // Ten headers forking at block 10: they end ~200 blocks of work below the tip.
    let low = branch(&main.blocks[10].header, 10, 3);
    let work = chain
        .headers_chain_work(&low)
        .expect("well formed")
        .expect("new headers");
    assert!(work < threshold, "a short branch far below the tip");
    // A branch forking near the tip ends above the threshold.
    let near = branch(&main.blocks[length - 5].header, 3, 5);
    let work = chain
        .headers_chain_work(&near)
        .expect("well formed")
        .expect("new headers");
    assert!(work >= threshold);
    // Headers already known are nothing new.
    let known: Vec<Header> = main.blocks[1..4].iter().map(|block| block.header).collect();
    assert_eq!(chain.headers_chain_work(&known).expect("known"), None);
    chain.accept_headers(&near, NOW_MS).expect("stored");
}

/// A batch of new low-work headers that ends in a header the node has (here genesis) is
/// not "nothing new": it was stored whole, unchecked for work, because only its last
/// header was looked at.
#[test]
fn new_low_work_headers_ending_in_a_known_one_are_counted_not_waved_through() {
    let (_dir, chain, main) = chain_past_the_threshold();
    let mut batch = branch(&main.blocks[0].header, 50, 11);
    batch.push(main.blocks[0].header);
    let error = chain
        .headers_chain_work(&batch)
        .expect_err("the known header does not build on the one before it");
    assert!(matches!(error, ChainError::NotContinuous { .. }), "{error}");
    // Without the trailing header the branch is counted, and it is far below the tip.
    let work = chain
        .headers_chain_work(&batch[..50])
        .expect("well formed")
        .expect("new headers");
    assert!(work < chain.anti_dos_work_threshold());
    // A batch that starts with known headers and goes on with new ones is counted too.
    let mut mixed: Vec<Header> = main.blocks[1..3].iter().map(|block| block.header).collect();
    mixed.extend(branch(&main.blocks[2].header, 2, 13));
    assert!(
        chain
            .headers_chain_work(&mixed)
            .expect("well formed")
            .is_some(),
        "a batch with new headers is not nothing new"
    );
}

#[test]
fn presync_counts_work_and_refuses_broken_links_and_missing_work() {
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(2);
    let params = Network::Regtest.params();
    let genesis = main.blocks[0].header;
    let headers = branch(&genesis, 20, 0);
    let start = Work::ZERO;
    let total = presync_work(
        genesis.compute_hash(),
        start,
        &headers,
        params.pow_limit_target(),
    )
    .expect("a chain");
    let one = presync_work(
        genesis.compute_hash(),
        start,
        &headers[..1],
        params.pow_limit_target(),
    )
    .expect("one header");
    assert!(total > one);

    let mut gap = headers.clone();
    gap.remove(5);
    assert!(matches!(
        presync_work(
            genesis.compute_hash(),
            start,
            &gap,
            params.pow_limit_target()
        ),
        Err(ChainError::NotContinuous { .. })
    ));
    let error = presync_work(
        genesis.compute_hash(),
        start,
        &gap,
        params.pow_limit_target(),
    )
    .expect_err("a gap");
    assert_eq!(error.rule(), Some("headers-not-continuous"));

    // A header whose hash misses its target (find a nonce that fails it).
    let mut unsolved = headers.clone();
    let last = unsolved.len() - 1;
    let target = unsolved[last].bits.to_target().expect("valid bits");
    while target.is_met_by(unsolved[last].compute_hash()) {
        unsolved[last].nonce += 1;
    }
    let error = presync_work(
        genesis.compute_hash(),
        start,
        &unsolved,
        params.pow_limit_target(),
    )
    .expect_err("no proof of work");
    assert_eq!(error.rule(), Some("bad-proof-of-work"));
}

/// A block on a branch of `main` that leaves it after `height`, paying another miner.
fn fork_block(main: &TestChain, height: usize) -> Block {
    let fork = TestChain {
        params: main.params,
        blocks: main.blocks[..=height].to_vec(),
        utxo: std::collections::HashMap::new(),
        miner: test_key(9),
    };
    fork.build(vec![], Amount::ZERO)
}

/// A peer's block whose header the node did not have came unasked (the node asks only for
/// blocks whose headers it stored, and those passed the work check). Far below the tip it
/// was stored anyway, header and body: the storage attack the header check stops, by
/// another message.
#[test]
fn an_unasked_block_far_below_the_tip_is_not_stored_and_one_near_it_is() {
    let (_dir, mut chain, main) = chain_past_the_threshold();
    let length = main.blocks.len() - 1;

    let low = fork_block(&main, 10);
    let hash = low.compute_hash();
    assert_eq!(
        chain
            .accept_block(low.clone(), NOW_MS)
            .expect("not an error"),
        BlockOutcome::LowWork
    );
    assert!(chain.record(&hash).is_none(), "its header is not indexed");
    assert!(!chain.has_block(&hash), "nor its body stored");

    let near = fork_block(&main, length - 5);
    let near_hash = near.compute_hash();
    assert_eq!(
        chain.accept_block(near, NOW_MS).expect("valid"),
        BlockOutcome::SideBranch
    );
    assert!(chain.has_block(&near_hash));

    // The same low block once its header is stored but leads nowhere: still unasked.
    chain.accept_headers(&[low.header], NOW_MS).expect("stored");
    assert_eq!(
        chain
            .accept_block(low.clone(), NOW_MS)
            .expect("not an error"),
        BlockOutcome::LowWork
    );
    assert!(!chain.has_block(&hash));

    // Once a branch above it has more work than the tip (as after a pre-sync that found
    // the branch's work), it leads to the best header: asked for, so it is stored.
    let above = branch(&low.header, length - 10 + 5, 11);
    chain.accept_headers(&above, NOW_MS).expect("stored");
    let best = above.last().expect("headers").compute_hash();
    assert_eq!(chain.best_header().0, best, "the branch leads");
    assert_eq!(
        chain.accept_block(low, NOW_MS).expect("valid"),
        BlockOutcome::SideBranch
    );
    assert!(chain.has_block(&hash));
}

/// A block whose header the node stored while its branch was near the tip, sent after the
/// tip has left that branch far behind. Its header passed the work check back then, so
/// the body used to be stored without one: a peer could buy disk with headers stored
/// while they were cheap, each body unchecked against coins and never connected.
#[test]
fn a_block_whose_stored_header_the_tip_left_far_behind_is_not_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = open(dir.path());
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(ANTI_DOS_BLOCKS as usize + 60);
    let side = fork_block(&main, 50);
    let hash = side.compute_hash();
    for block in &main.blocks[1..=52] {
        chain.accept_block(block.clone(), NOW_MS).expect("valid");
    }
    chain
        .accept_headers(&[side.header], NOW_MS)
        .expect("near the tip: stored");
    for block in &main.blocks[53..] {
        chain.accept_block(block.clone(), NOW_MS).expect("valid");
    }
    let record = chain.record(&hash).expect("the header stays");
    assert!(record.chain_work < chain.anti_dos_work_threshold());

    assert_eq!(
        chain
            .accept_block(side.clone(), NOW_MS)
            .expect("not an error"),
        BlockOutcome::LowWork
    );
    assert!(!chain.has_block(&hash), "the body is not stored");

    // Near the tip, the same kind of block is still kept: a race may yet go its way.
    let length = main.blocks.len() - 1;
    let near = fork_block(&main, length - 1);
    chain
        .accept_headers(&[near.header], NOW_MS)
        .expect("stored");
    assert_eq!(
        chain.accept_block(near.clone(), NOW_MS).expect("valid"),
        BlockOutcome::SideBranch
    );
    assert!(chain.has_block(&near.compute_hash()));
}
