//! Multi-node tests on loopback: real nodes, real WebSockets, conditions with deadlines.

mod common;

use std::time::Duration;

use common::{Proxy, TestNode, config, wait_converged, wait_until};
use powchain_consensus::Amount;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_after_mining_on_each() {
    let a = TestNode::start(vec![]).await;
    let b = TestNode::start(vec![a.url()]).await;
    let c = TestNode::start(vec![b.url()]).await;
    wait_until("everyone is connected", LIMIT, || async {
        !a.p2p.peers().is_empty() && b.p2p.peers().len() >= 2 && !c.p2p.peers().is_empty()
    })
    .await;
    a.mine().await;
    wait_converged(&[&a, &b, &c], LIMIT).await;
    b.mine().await;
    wait_converged(&[&a, &b, &c], LIMIT).await;
    c.mine().await;
    c.mine().await;
    wait_converged(&[&a, &b, &c], LIMIT).await;
    assert_eq!(a.height(), 4);
    // Peer exchange: c learned of a through b and connected to it.
    wait_until("c learns a through b", LIMIT, || async {
        c.p2p.peers().iter().any(|peer| peer.url == a.url())
    })
    .await;
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_relay_once_and_confirm_everywhere() {
    let a = TestNode::start(vec![]).await;
    let b = TestNode::start(vec![a.url()]).await;
    let c = TestNode::start(vec![b.url()]).await;
    wait_until("connected", LIMIT, || async { b.p2p.peers().len() >= 2 }).await;
    a.mine_blocks(2).await;
    wait_converged(&[&a, &b, &c], LIMIT).await;
    let recipient = c.node.wallet_address();
    let node = a.node.clone();
    let payment = tokio::task::spawn_blocking(move || {
        node.send(recipient, Amount::from_coins(3).expect("ok"), None)
    })
    .await
    .expect("task")
    .expect("sent");
    wait_until("the transaction reaches every pool", LIMIT, || async {
        [&a, &b, &c]
            .iter()
            .all(|node| node.node.pool_transaction(&payment.txid).is_some())
    })
    .await;
    b.mine().await;
    wait_converged(&[&a, &b, &c], LIMIT).await;
    for node in [&a, &b, &c] {
        assert!(
            node.node.pool_transactions().is_empty(),
            "confirmed transactions leave every pool"
        );
    }
    let balance = c.node.wallet_balance().expect("balance");
    assert_eq!(balance.confirmed, Amount::from_coins(3).expect("ok"));
    for node in [a, b, c] {
        node.stop().await;
    }
}

/// Nodes that only dial the peers they are given, so a proxy can partition them.
async fn start_isolated(peers: Vec<String>) -> TestNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut p2p_config = config(peers, 0);
    p2p_config.max_outbound = 0;
    let dir = temp.path().to_path_buf();
    let mut node = TestNode::start_in(dir, p2p_config).await;
    node.keep(temp);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_halves_converge_on_the_heavier_branch_and_return_the_losers_transactions() {
    // a - b ==proxy== c - d
    let a = start_isolated(vec![]).await;
    let b = start_isolated(vec![a.url()]).await;
    let proxy = Proxy::start(b.p2p.listen_port()).await;
    let c = start_isolated(vec![proxy.url()]).await;
    let d = start_isolated(vec![c.url()]).await;
    wait_until("all connected", LIMIT, || async {
        b.p2p.peers().len() == 2 && c.p2p.peers().len() == 2
    })
    .await;
    // Shared history: a's coins are in everyone's chain.
    a.mine_blocks(3).await;
    wait_converged(&[&a, &b, &c, &d], LIMIT).await;

    proxy.cut();
    wait_until("the halves are apart", LIMIT, || async {
        b.p2p.peers().len() == 1 && c.p2p.peers().len() == 1
    })
    .await;

    // The lighter half confirms a payment from a to b.
    let recipient = b.node.wallet_address();
    let node = a.node.clone();
    let payment = tokio::task::spawn_blocking(move || {
        node.send(recipient, Amount::from_coins(7).expect("ok"), None)
    })
    .await
    .expect("task")
    .expect("sent");
    wait_until("b pools the payment", LIMIT, || async {
        b.node.pool_transaction(&payment.txid).is_some()
    })
    .await;
    a.mine().await;
    wait_converged(&[&a, &b], LIMIT).await;
    assert!(
        a.node.pool_transaction(&payment.txid).is_none(),
        "confirmed on the lighter branch"
    );

    // The heavier half mines more.
    c.mine_blocks(3).await;
    wait_converged(&[&c, &d], LIMIT).await;
    let heavy_tip = c.tip();

    proxy.heal();
    wait_until("all four nodes share the heavier tip", LIMIT, || async {
        [&a, &b, &c, &d].iter().all(|node| node.tip() == heavy_tip)
    })
    .await;
    assert_eq!(a.height(), 6);
    // The losing branch's payment spends a coin the heavier chain also has: it goes back to
    // the pools, and relay carries it to the other half.
    wait_until("the payment is back in every pool", LIMIT, || async {
        [&a, &b, &c, &d]
            .iter()
            .all(|node| node.node.pool_transaction(&payment.txid).is_some())
    })
    .await;
    drop(proxy);
    for node in [a, b, c, d] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_blocks_resolve_to_the_most_work() {
    let a = TestNode::start(vec![]).await;
    let b = TestNode::start(vec![]).await;
    // Each mines its own block at height 1, unaware of the other.
    a.mine().await;
    b.mine().await;
    b.mine().await;
    a.node
        .peer_manager()
        .expect("p2p")
        .add_peer(&b.url())
        .expect("url");
    wait_converged(&[&a, &b], LIMIT).await;
    assert_eq!(a.height(), 2, "the two-block branch has more work");
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_late_syncs_two_thousand_blocks() {
    let a = TestNode::start(vec![]).await;
    // Build 2,100 blocks quickly with the testkit and hand them to a.
    let mut chain =
        powchain_consensus::testkit::TestChain::new(powchain_consensus::Network::Regtest);
    chain.mine_empty(2_100);
    let node = a.node.clone();
    let blocks = chain.blocks[1..].to_vec();
    tokio::task::spawn_blocking(move || {
        for block in blocks {
            node.submit_block(block).expect("valid block");
        }
    })
    .await
    .expect("task");
    assert_eq!(a.height(), 2_100);
    let b = TestNode::start(vec![a.url()]).await;
    wait_until("b syncs 2,100 blocks", Duration::from_secs(120), || async {
        b.tip() == a.tip()
    })
    .await;
    for node in [a, b] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_peer_restarts_reconnects() {
    let a = TestNode::start(vec![]).await;
    let port = a.p2p.listen_port();
    let url = a.url();
    let b = TestNode::start(vec![url.clone()]).await;
    wait_until("connected", LIMIT, || async { b.p2p.peers().len() == 1 }).await;
    let (dir, temp) = a.stop().await;
    wait_until("b notices", LIMIT, || async { b.p2p.peers().is_empty() }).await;
    // Restart a on the same data and port.
    let a = TestNode::start_in(dir, config(vec![], port)).await;
    wait_until("b reconnects", LIMIT, || async { b.p2p.peers().len() == 1 }).await;
    a.mine().await;
    wait_converged(&[&a, &b], LIMIT).await;
    drop(temp);
    for node in [a, b] {
        node.stop().await;
    }
}
