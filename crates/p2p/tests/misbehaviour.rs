//! Peers that break rules are disconnected and banned, and what they sent is not stored.

mod common;

use std::time::Duration;

use common::{TestNode, closed_by_node, hello, raw_peer, wait_until};
use futures_util::SinkExt;
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{Amount, Network};
use powchain_p2p::Message;
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);
const FAKE_LISTEN_PORT: u16 = 47_001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_an_invalid_block_is_banned_and_the_block_is_not_stored() {
    let node = TestNode::start(vec![]).await;
    let mut socket = raw_peer(&node.url(), FAKE_LISTEN_PORT)
        .await
        .expect("connects");
    // A block whose coinbase pays 500 coins: valid proof of work, invalid rules.
    let chain = TestChain::new(Network::Regtest);
    let mut block = chain.template(vec![], Amount::ZERO);
    block.transactions[0].outputs[0].value = Amount::from_coins(500).expect("in range");
    TestChain::seal(&mut block);
    let hash = block.compute_hash();
    socket
        .send(Frame::binary(Message::Block(Box::new(block)).to_bytes()))
        .await
        .expect("send block");
    assert!(
        closed_by_node(&mut socket, LIMIT).await,
        "the node hangs up"
    );
    assert_eq!(node.height(), 0);
    let stored = node
        .node
        .reader()
        .snapshot()
        .expect("snapshot")
        .block(&hash)
        .expect("read");
    assert!(stored.is_none() || !node.node.is_on_main_chain(&hash));
    let bans = node.p2p.banned();
    assert!(
        bans.iter()
            .any(|(who, rule)| who.contains(&FAKE_LISTEN_PORT.to_string())
                && rule == "coinbase-overpays"),
        "banned with the rule: {bans:?}"
    );
    // Coming back under the same identity is refused.
    let mut again = raw_peer(&node.url(), FAKE_LISTEN_PORT)
        .await
        .expect("connects");
    assert!(closed_by_node(&mut again, LIMIT).await);
    wait_until("no peer stays connected", LIMIT, || async {
        node.p2p.peers().is_empty()
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_network_peers_are_dropped_and_the_node_keeps_serving() {
    let node = TestNode::start(vec![]).await;
    // Garbage bytes instead of a hello.
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("connects");
    socket
        .send(Frame::binary(vec![0xde, 0xad, 0xbe, 0xef]))
        .await
        .expect("send");
    assert!(closed_by_node(&mut socket, LIMIT).await);
    // A hello from another network.
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("connects");
    let hello = hello(Network::Devnet, 47_002);
    socket
        .send(Frame::binary(hello.to_bytes()))
        .await
        .expect("send");
    assert!(closed_by_node(&mut socket, LIMIT).await);
    // An honest peer still gets served.
    let honest = TestNode::start(vec![node.url()]).await;
    wait_until("the honest peer connects", LIMIT, || async {
        node.p2p.peers().len() == 1
    })
    .await;
    node.mine().await;
    wait_until("and syncs", LIMIT, || async { honest.tip() == node.tip() }).await;
    for running in [node, honest] {
        running.stop().await;
    }
}
