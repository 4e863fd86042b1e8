//! The upload target (`--max-upload-mib`, Bitcoin Core's `-maxuploadtarget`): past the
//! day's bytes, a peer asking for a block more than a week older than the tip is
//! disconnected, while recent blocks are still served. Without it a stranger could make the node send its
//! whole chain again and again, as fast as it reads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestNode, config, raw_peer, send};
use futures_util::StreamExt;
use powchain_node::{Clock, SystemClock};
use powchain_p2p::{HISTORICAL_BLOCK_AGE_MS, InventoryItem, Message};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

/// A clock the test sets.
struct SetClock(AtomicU64);

impl Clock for SetClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the node sends next that is not a hello, ping, inventory or the like: a block or a
/// block's transactions, or the close frame's reason (`Err`).
async fn next_block_or_close(socket: &mut common::Socket) -> Result<Message, String> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("neither a block nor a close within {LIMIT:?}"),
            Ok(None | Some(Err(_))) => return Err(String::new()),
            Ok(Some(Ok(Frame::Close(frame)))) => {
                return Err(frame
                    .map(|frame| frame.reason.to_string())
                    .unwrap_or_default());
            }
            Ok(Some(Ok(Frame::Binary(bytes)))) => {
                if let Ok(message @ (Message::Block(_) | Message::BlockTransactions { .. })) =
                    Message::from_bytes(&bytes)
                {
                    return Ok(message);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Connects to `node` as a raw peer announcing `port`, sends `request`, and returns what
/// [`next_block_or_close`] reads.
async fn ask(node: &TestNode, port: u16, request: Message) -> Result<Message, String> {
    let mut peer = raw_peer(&node.url(), port).await.expect("connects");
    send(&mut peer, request).await;
    next_block_or_close(&mut peer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_upload_target_old_blocks_are_refused_and_recent_ones_served() {
    let now_ms = SystemClock.now_ms();
    let clock = Arc::new(SetClock(AtomicU64::new(
        now_ms - HISTORICAL_BLOCK_AGE_MS - 3_600_000,
    )));
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(vec![], 0);
    // One byte: the first message sent reaches it.
    node_config.max_upload_bytes = Some(1);
    let mut node = TestNode::start_with_clock(
        temp.path().to_path_buf(),
        node_config,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .await;
    node.keep(temp);
    // Two blocks of more than a week ago, then one of now.
    let mut old = Vec::new();
    for _ in 0..2 {
        clock.0.fetch_add(1_000, Ordering::SeqCst);
        old.push(node.mine().await.compute_hash());
    }
    clock.0.store(now_ms, Ordering::SeqCst);
    let recent = node.mine().await.compute_hash();

    let served = |block: &Result<Message, String>| matches!(block, Ok(Message::Block(block)) if block.compute_hash() == recent);
    let refused = |answer: &Result<Message, String>| matches!(answer, Err(reason) if reason.contains("upload target"));
    let block = ask(
        &node,
        47_301,
        Message::GetData(vec![InventoryItem::Block(recent)]),
    )
    .await;
    assert!(
        served(&block),
        "a recent block is served past the target: {block:?}"
    );
    let upload = node
        .node
        .peer_manager()
        .expect("p2p")
        .upload()
        .expect("a target");
    assert!(upload.reached && upload.sent_bytes > 1, "{upload:?}");

    let answer = ask(
        &node,
        47_302,
        Message::GetData(vec![InventoryItem::Block(old[0])]),
    )
    .await;
    assert!(
        refused(&answer),
        "an old block past the target ends the session: {answer:?}"
    );
    // Nor do its transactions go as the answer to a `getblocktxn` (nor the whole block,
    // which answers it deeper than 10 blocks).
    let request = Message::GetBlockTransactions {
        block: old[1],
        indexes: Vec::new(),
    };
    let answer = ask(&node, 47_303, request).await;
    assert!(
        refused(&answer),
        "an old block past the target ends the session: {answer:?}"
    );
    assert!(
        node.p2p.banned().is_empty(),
        "asking for an old block is no misbehaviour"
    );

    // Age is measured from the tip's time, not the node's clock: a network left unmined
    // for more than a week still serves its last block.
    clock.0.store(
        now_ms + HISTORICAL_BLOCK_AGE_MS + 3_600_000,
        Ordering::SeqCst,
    );
    let block = ask(
        &node,
        47_304,
        Message::GetData(vec![InventoryItem::Block(recent)]),
    )
    .await;
    assert!(served(&block), "the tip is served however old: {block:?}");
    node.stop().await;
}
