//! A block that breaks a rule when it is connected is marked failed and its body is not
//! kept: it is never served to peers or the API, and it comes back refused at once.
//! (Before, the body stayed in the store and a peer asking for it was sent it.)

mod common;

use common::{NOW_MS, assert_consistent, open};
use powchain_chain::{BlockStatus, ChainError};
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{Amount, Network};

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
