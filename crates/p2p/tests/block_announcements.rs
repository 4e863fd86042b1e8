//! Announcements of blocks we do not know: each would cost a `getheaders` (a locator
//! built under the node's lock, about 1 KB on the wire) for 35 bytes of `inv`. While one
//! request to a peer is unanswered, its further announcements send no other; one is asked
//! for when the answer comes, in case the answer was written before the announced block.

mod common;

use std::time::Duration;

use common::{Socket, TestNode, raw_peer, send};
use futures_util::StreamExt;
use powchain_consensus::BlockHash;
use powchain_p2p::{InventoryItem, Message};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

/// Sends a ping and reads until its pong, counting the `getheaders` read on the way (the
/// session answers messages in order, so those are every one the earlier messages caused).
async fn getheaders_before_pong(socket: &mut Socket, nonce: u64) -> usize {
    send(socket, Message::Ping(nonce)).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut requests = 0;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::from_bytes(&bytes) {
                Ok(Message::Pong(pong)) if pong == nonce => return requests,
                Ok(Message::GetHeaders { .. }) => requests += 1,
                _ => {}
            },
            Ok(Some(Ok(_))) => {}
            other => panic!("no pong {nonce}: {other:?}"),
        }
    }
}

fn unknown_block(index: u32) -> InventoryItem {
    let mut bytes = [0xab; 32];
    bytes[..4].copy_from_slice(&index.to_le_bytes());
    InventoryItem::Block(BlockHash(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_of_unknown_blocks_send_one_getheaders_until_it_is_answered() {
    let node = TestNode::start(vec![]).await;
    let mut peer = raw_peer(&node.url(), 47_401).await.expect("connects");
    assert_eq!(
        getheaders_before_pong(&mut peer, 1).await,
        0,
        "a peer with no more work is not asked"
    );

    for index in 0..300 {
        send(&mut peer, Message::Inventory(vec![unknown_block(index)])).await;
    }
    assert_eq!(
        getheaders_before_pong(&mut peer, 2).await,
        1,
        "300 announcements while the first request is unanswered: one getheaders"
    );

    // The answer (nothing new): the announcements made meanwhile are asked for once more.
    send(&mut peer, Message::Headers(Vec::new())).await;
    assert_eq!(getheaders_before_pong(&mut peer, 3).await, 1);
    // Answered again, with nothing announced since: no request.
    send(&mut peer, Message::Headers(Vec::new())).await;
    assert_eq!(getheaders_before_pong(&mut peer, 4).await, 0);
    // The next announcement asks at once.
    send(&mut peer, Message::Inventory(vec![unknown_block(1_000)])).await;
    assert_eq!(getheaders_before_pong(&mut peer, 5).await, 1);

    assert!(
        node.p2p.banned().is_empty(),
        "announcing is not misbehaviour"
    );
    node.stop().await;
}

/// A block whose parent nobody has, with the proof of work regtest's limit asks (a few
/// hashes): what a stranger can send as fast as its message budget allows.
fn orphan_block(index: u32) -> powchain_consensus::Block {
    use powchain_consensus::{Block, BlockHeight, Header, Network, Transaction};
    let params = Network::Regtest.params();
    let mut block = Block {
        header: Header {
            version: Header::CURRENT_VERSION,
            prev_hash: match unknown_block(index) {
                InventoryItem::Block(hash) => hash,
                _ => unreachable!("a block item"),
            },
            merkle_root: powchain_consensus::MerkleRoot::ZERO,
            time_ms: params.genesis().header.time_ms + 1,
            bits: params.pow_limit,
            nonce: 0,
        },
        transactions: vec![Transaction::new_coinbase(
            BlockHeight(2),
            index.to_le_bytes().to_vec(),
            Vec::new(),
        )],
    };
    block.header.merkle_root = block.compute_merkle_root();
    powchain_consensus::testkit::solve(&mut block.header);
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_blocks_send_one_getheaders_until_it_is_answered() {
    let node = TestNode::start(vec![]).await;
    let mut peer = raw_peer(&node.url(), 47_402).await.expect("connects");
    assert_eq!(getheaders_before_pong(&mut peer, 1).await, 0);
    for index in 0..50 {
        send(&mut peer, Message::Block(Box::new(orphan_block(index)))).await;
    }
    assert_eq!(
        getheaders_before_pong(&mut peer, 2).await,
        1,
        "50 orphans while the first request is unanswered: one getheaders"
    );
    send(&mut peer, Message::Headers(Vec::new())).await;
    assert_eq!(
        getheaders_before_pong(&mut peer, 3).await,
        1,
        "asked once more for what came meanwhile"
    );
    node.stop().await;
}
