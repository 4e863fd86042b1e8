//! Peers that break rules are disconnected and banned, and what they sent is not stored.

mod common;

use std::time::Duration;

use common::{TestNode, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{Amount, Network, Work};
use powchain_p2p::{Hello, Message};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);
const FAKE_LISTEN_PORT: u16 = 47_001;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a raw protocol peer that announces `FAKE_LISTEN_PORT` and completes the handshake.
async fn raw_peer(node: &TestNode) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("connects");
    let params = Network::Regtest.params();
    let hello = Message::Hello(Hello {
        network_magic: Network::Regtest.magic(),
        genesis: params.genesis_hash(),
        best_hash: params.genesis_hash(),
        best_height: 0,
        best_work: Work::ZERO,
        listen_port: FAKE_LISTEN_PORT,
        node_nonce: 0xbad,
        user_agent: "test".into(),
    });
    socket
        .send(Frame::binary(hello.to_bytes()))
        .await
        .expect("send hello");
    socket
}

/// Reads until the node closes the connection (or the deadline passes).
async fn closed_by_node(socket: &mut Socket) -> bool {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Frame::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_an_invalid_block_is_banned_and_the_block_is_not_stored() {
    let node = TestNode::start(vec![]).await;
    let mut socket = raw_peer(&node).await;
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
    assert!(closed_by_node(&mut socket).await, "the node hangs up");
    assert_eq!(node.height(), 0);
    let stored = node
        .node
        .reader()
        .snapshot()
        .expect("snapshot")
        .block(&hash)
        .expect("read");
    assert!(
        stored.is_none()
            || !node
                .node
                .with_core(|core| core.chain.is_on_main_chain(&hash))
    );
    let bans = node.p2p.banned();
    assert!(
        bans.iter()
            .any(|(who, rule)| who.contains(&FAKE_LISTEN_PORT.to_string())
                && rule == "coinbase-overpays"),
        "banned with the rule: {bans:?}"
    );
    // Coming back under the same identity is refused.
    let mut again = raw_peer(&node).await;
    assert!(closed_by_node(&mut again).await);
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
    assert!(closed_by_node(&mut socket).await);
    // A hello from another network.
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("connects");
    let params = Network::Devnet.params();
    let hello = Message::Hello(Hello {
        network_magic: Network::Devnet.magic(),
        genesis: params.genesis_hash(),
        best_hash: params.genesis_hash(),
        best_height: 0,
        best_work: Work::ZERO,
        listen_port: 47_002,
        node_nonce: 7,
        user_agent: "devnet".into(),
    });
    socket
        .send(Frame::binary(hello.to_bytes()))
        .await
        .expect("send");
    assert!(closed_by_node(&mut socket).await);
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
