//! A block that breaks a rule when it is connected is marked failed and its body is not
//! kept: it is never served to peers or the API, and it comes back refused at once.
//! (Before, the body stayed in the store and a peer asking for it was sent it.)

mod common;

use common::{NOW_MS, assert_consistent, open};
use powchain_chain::{BlockStatus, ChainError};
use powchain_consensus::testkit::{TestChain, solve};
use powchain_consensus::{Amount, Header, Network};

#[test]
fn a_block_that_fails_to_connect_is_not_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = open(dir.path());
    let mut test = TestChain::new(Network::Regtest);
    test.mine_empty(3);
    for block in &test.blocks[1..] {
        chain.accept_block(block.clone(), NOW_MS).expect("valid");
    }
    // A valid header and a body that breaks a rule only the UTXO set can tell.
    let mut bad = test.template(vec![], Amount::ZERO);
    let value = bad.transactions[0].outputs[0].value.to_units();
    bad.transactions[0].outputs[0].value = Amount::from_units(value + 1).expect("in range");
    TestChain::seal(&mut bad);
    let hash = bad.compute_hash();
    let error = chain
        .accept_block(bad.clone(), NOW_MS)
        .expect_err("it overpays");
    assert_eq!(error.rule(), Some("coinbase-overpays"));
    assert_eq!(
        chain.record(&hash).map(|record| record.status),
        Some(BlockStatus::Failed)
    );
    assert!(
        chain
            .reader()
            .snapshot()
            .expect("snapshot")
            .block(&hash)
            .expect("read")
            .is_none()
    );
    assert!(!chain.has_block(&hash));
    assert_eq!(chain.tip().hash, test.tip().compute_hash());
    assert_consistent(&chain);

    // After a restart: still no body, and the block is refused without being validated.
    drop(chain);
    let mut chain = open(dir.path());
    assert!(
        chain
            .reader()
            .snapshot()
            .expect("snapshot")
            .block(&hash)
            .expect("read")
            .is_none()
    );
    assert!(matches!(
        chain.accept_block(bad, NOW_MS),
        Err(ChainError::KnownInvalid { .. })
    ));
    // The valid block at that height is still welcome.
    let good = test.build(vec![], Amount::ZERO);
    chain.accept_block(good.clone(), NOW_MS).expect("valid");
    assert_eq!(chain.tip().hash, good.compute_hash());
    assert_consistent(&chain);
}

/// Issue 13's freeze: a long branch of headers became the best header, then its first
/// block arrived invalid. Marking it failed rescanned the whole index and walked each
/// header back (O(N²) under the node's lock). Now the failure marks the branch through
/// each header's children and the best header comes from a ranked set: the chain is back
/// on its own tip at once, the branch's headers are refused as known invalid, and a
/// reopened store sees the branch failed though only its first block is stored as such.
#[test]
fn a_long_header_branch_whose_first_block_fails_is_dropped_in_one_step() {
    const BRANCH_HEADERS: usize = 3_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = open(dir.path());
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(5);
    for block in &main.blocks[1..] {
        chain.accept_block(block.clone(), NOW_MS).expect("valid");
    }
    // The branch extends the tip: an invalid first block (its coinbase overpays) with a
    // valid header, then a long run of headers on top of it.
    let mut bad = main.template(vec![], Amount::ZERO);
    let value = bad.transactions[0].outputs[0].value.to_units();
    bad.transactions[0].outputs[0].value = Amount::from_units(value + 1).expect("in range");
    TestChain::seal(&mut bad);
    let bad_hash = bad.compute_hash();
    let mut headers = vec![bad.header];
    while headers.len() <= BRANCH_HEADERS {
        let parent = headers[headers.len() - 1];
        let mut header = Header {
            prev_hash: parent.compute_hash(),
            time_ms: parent.time_ms + 1_000,
            nonce: 0,
            ..parent
        };
        solve(&mut header);
        headers.push(header);
    }
    for batch in headers.chunks(2_000) {
        chain.accept_headers(batch, NOW_MS).expect("valid headers");
    }
    let branch_tip = headers[BRANCH_HEADERS].compute_hash();
    assert_eq!(
        chain.best_header().0,
        branch_tip,
        "the branch has the most work"
    );

    let error = chain.accept_block(bad, NOW_MS).expect_err("it overpays");
    assert_eq!(error.rule(), Some("coinbase-overpays"));
    assert_eq!(chain.tip().hash, main.tip().compute_hash());
    assert_eq!(chain.best_header().0, main.tip().compute_hash());
    assert_eq!(
        chain.record(&branch_tip).map(|record| record.status),
        Some(BlockStatus::FailedAncestor)
    );
    let mut next = Header {
        prev_hash: branch_tip,
        time_ms: headers[BRANCH_HEADERS].time_ms + 1_000,
        nonce: 0,
        ..headers[BRANCH_HEADERS]
    };
    solve(&mut next);
    assert!(matches!(
        chain.accept_headers(&[next], NOW_MS),
        Err(ChainError::KnownInvalid { .. })
    ));
    assert_consistent(&chain);

    drop(chain);
    let chain = open(dir.path());
    assert_eq!(
        chain.record(&bad_hash).map(|record| record.status),
        Some(BlockStatus::Failed)
    );
    assert_eq!(
        chain.record(&branch_tip).map(|record| record.status),
        Some(BlockStatus::FailedAncestor),
        "marked again at open"
    );
    assert_eq!(chain.best_header().0, main.tip().compute_hash());
    assert!(chain.blocks_to_download(100).is_empty());
}
