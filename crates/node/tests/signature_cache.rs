//! The pool's signature checks are not repeated when a block holds its transactions.

use std::sync::Arc;

use powchain_consensus::{Amount, Network};
use powchain_node::{Node, NodeConfig, SystemClock};

#[test]
fn a_block_does_not_check_again_the_signatures_its_pool_transactions_passed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::open(
        NodeConfig::new(Network::Regtest, dir.path().to_path_buf()),
        Arc::new(SystemClock),
    )
    .expect("the node opens");
    // Regtest coinbases mature after one block.
    node.mine_one(Vec::new(), false).expect("mined");
    node.mine_one(Vec::new(), false).expect("mined");
    assert_eq!(node.signature_cache_entries(), 0);
    let recipient = node.new_wallet_address().expect("address");
    let payment = node
        .send(recipient, Amount::ONE_COIN, None)
        .expect("the wallet pays");
    let inputs = payment.transaction.spends().len();
    assert!(inputs >= 1);
    assert_eq!(
        node.signature_cache_entries(),
        inputs,
        "admission remembered them"
    );
    let block = node.mine_one(Vec::new(), true).expect("mined");
    assert!(block.transactions.contains(&payment.transaction));
    assert_eq!(
        node.signature_cache_entries(),
        0,
        "the block used the remembered checks (and forgot them)"
    );
}
