//! A peer closed for stalling a block download comes back (docs/SECURITY.md, item 52).
//! Reconnected, it was a new peer with no blocks in flight, the least loaded of all, and
//! was handed the oldest missing blocks again at once: each time it came back, the sync
//! waited out another block timeout. Now it is asked only for blocks no other peer has.

mod common;

use std::time::Duration;

use common::{Socket, TestNode, closed_by_node, config, raw_peer, send, wait_until};
use futures_util::StreamExt;
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{BlockHash, Network};
use powchain_p2p::{InventoryItem, Message};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(60);
const STALLER_PORT: u16 = 47_401;
const HONEST_PORT: u16 = 47_402;

/// The next message the node sends `socket`, decoded; `None` once it closes.
async fn next_message(socket: &mut Socket) -> Option<Message> {
    loop {
        match tokio::time::timeout(LIMIT, socket.next()).await.ok()? {
            Some(Ok(Frame::Binary(bytes))) => {
                return Some(Message::from_bytes(&bytes).expect("the node speaks the protocol"));
            }
            Some(Ok(Frame::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The blocks a `getdata` asks for.
fn blocks_asked(message: &Message) -> Vec<BlockHash> {
    match message {
        Message::GetData(items) => items
            .iter()
            .filter_map(|item| match item {
                InventoryItem::Block(hash) => Some(*hash),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads until the node asks `socket` for blocks; returns them.
async fn await_block_request(socket: &mut Socket) -> Vec<BlockHash> {
    loop {
        let message = next_message(socket)
            .await
            .expect("the node asks for blocks");
        let asked = blocks_asked(&message);
        if !asked.is_empty() {
            return asked;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staller_that_reconnects_is_not_asked_for_blocks_another_peer_has() {
    let mut chain = TestChain::new(Network::Regtest);
    chain.mine_empty(100);
    let headers: Vec<_> = chain.blocks[1..].iter().map(|block| block.header).collect();
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(vec![], 0);
    node_config.block_timeout = Duration::from_secs(1);
    let mut node = TestNode::start_in(temp.path().to_path_buf(), node_config).await;
    node.keep(temp);

    // It shows the chain, is asked for its blocks, sends none, and is closed.
    let mut staller = raw_peer(&node.url(), STALLER_PORT).await.expect("connects");
    send(&mut staller, Message::Headers(headers.clone())).await;
    assert!(!await_block_request(&mut staller).await.is_empty());
    assert!(
        closed_by_node(&mut staller, LIMIT).await,
        "closed for stalling"
    );

    // An honest peer shows the chain and is asked for as many blocks as a peer may have
    // in flight; it holds back its answer for now.
    let mut honest = raw_peer(&node.url(), HONEST_PORT).await.expect("connects");
    send(&mut honest, Message::Headers(headers.clone())).await;
    let mut asked_honest = await_block_request(&mut honest).await;

    // The staller comes back and shows the chain again: the blocks the honest peer has
    // no room for yet would have gone to it.
    let mut staller = raw_peer(&node.url(), STALLER_PORT)
        .await
        .expect("reconnects");
    send(&mut staller, Message::Headers(headers)).await;
    wait_until("the staller is a peer again", LIMIT, || async {
        node.p2p.peers().len() == 2
    })
    .await;

    // The honest peer serves every block it is asked for, until the node has them all.
    let by_hash: std::collections::HashMap<BlockHash, _> = chain
        .blocks
        .iter()
        .map(|block| (block.compute_hash(), block.clone()))
        .collect();
    let serve = async {
        loop {
            for hash in asked_honest.drain(..) {
                send(
                    &mut honest,
                    Message::Block(Box::new(by_hash[&hash].clone())),
                )
                .await;
            }
            if node.height() == 100 {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), next_message(&mut honest)).await
            {
                Ok(Some(message)) => asked_honest.extend(blocks_asked(&message)),
                Ok(None) => panic!("the honest peer was closed"),
                Err(_) => {}
            }
        }
    };
    tokio::time::timeout(LIMIT, serve)
        .await
        .expect("the honest peer's blocks make the whole chain");

    // Everything the node sent the staller since it came back, up to the answer to a ping.
    send(&mut staller, Message::Ping(52)).await;
    let mut asked_staller = Vec::new();
    loop {
        match next_message(&mut staller).await {
            Some(Message::Pong(52)) => break,
            Some(message) => asked_staller.extend(blocks_asked(&message)),
            None => panic!("the staller was closed again: asked for blocks, it stalled them"),
        }
    }
    assert!(
        asked_staller.is_empty(),
        "the staller was asked again for {} blocks the honest peer had",
        asked_staller.len()
    );
    drop((staller, honest));
    node.stop().await;
}
