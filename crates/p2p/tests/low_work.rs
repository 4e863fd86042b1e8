//! Headers with too little work (issue 13): a stranger's cheap branch far below the tip is
//! neither stored nor punished, a batch that does not build on itself is, and an honest
//! branch that forks deeper than one batch of headers reaches is pre-synced (counted, not
//! stored), then downloaded again and stored once its work passes the threshold.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Socket, TestNode, raw_peer, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_chain::ANTI_DOS_BLOCKS;
use powchain_consensus::testkit::{TestChain, solve};
use powchain_consensus::{BlockHash, Header, Network, Work};
use powchain_p2p::{CompactBlock, Hello, MAX_MESSAGE_BYTES, Message};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(60);
const MAX_HEADERS: usize = 2_000;

/// `count` headers building on `parent` at its bits, their times offset by `salt` ms.
fn branch(parent: &Header, count: usize, salt: u64) -> Vec<Header> {
    let mut headers: Vec<Header> = Vec::with_capacity(count);
    let mut previous = *parent;
    for _ in 0..count {
        let mut header = Header {
            prev_hash: previous.compute_hash(),
            time_ms: previous.time_ms + 1_000 + salt,
            nonce: 0,
            ..previous
        };
        solve(&mut header);
        headers.push(header);
        previous = header;
    }
    headers
}

fn frame(message: &Message) -> Frame {
    Frame::binary(message.to_bytes())
}

/// A raw peer of `node`, announcing `port`, whose chain ends at `tip` after `height`
/// headers (its work claimed as the most there is).
async fn peer_claiming(node: &TestNode, tip: BlockHash, height: usize, port: u16) -> Socket {
    let params = Network::Regtest.params();
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("connects");
    let hello = Message::Hello(Hello {
        network_magic: Network::Regtest.magic(),
        genesis: params.genesis_hash(),
        best_hash: tip,
        best_height: height as u64,
        best_work: Work::from_be_bytes([0xff; 32]),
        listen_port: port,
        node_nonce: 0x5eed_0000 ^ u64::from(port),
        user_agent: "presync-test".into(),
    });
    socket.send(frame(&hello)).await.expect("hello");
    socket
}

/// Where a peer whose chain is `chain` (the headers after `genesis`) starts its answer to
/// a `getheaders` with `locator`: after the first locator hash on its chain.
fn answer_start(locator: &[BlockHash], chain: &[Header], genesis: BlockHash) -> Option<usize> {
    locator.iter().find_map(|hash| {
        if *hash == genesis {
            return Some(0);
        }
        chain
            .iter()
            .position(|header| header.compute_hash() == *hash)
            .map(|index| index + 1)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_branch_far_below_the_tip_is_not_stored_and_not_punished() {
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(ANTI_DOS_BLOCKS as usize + 100);
    let node = TestNode::with_chain(&main, vec![]).await;
    let tip = node.tip();
    let mut socket = raw_peer(&node.url(), 47_301).await.expect("connects");

    // Branches forking at block 1, 30 batches of 50 headers: each ends ~50 blocks of
    // work below the threshold (the tip's work less 144 blocks').
    let mut last_hashes = Vec::new();
    for salt in 0..30u64 {
        let headers = branch(&main.blocks[1].header, 50, salt);
        last_hashes.push(headers[49].compute_hash());
        socket
            .send(frame(&Message::Headers(headers)))
            .await
            .expect("sent");
    }
    // The node answers a ping after reading them all: they were handled.
    socket.send(frame(&Message::Ping(77))).await.expect("sent");
    let answered = tokio::time::timeout(LIMIT, async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Frame::Binary(bytes) = frame
                && let Ok(Message::Pong(77)) = Message::from_bytes(&bytes)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(answered);
    for hash in &last_hashes {
        assert_eq!(
            node.node.block_height(hash),
            None,
            "nothing of it is stored"
        );
    }
    assert_eq!(node.tip(), tip);
    assert_eq!(node.node.chain_summary().best_header, tip);
    assert!(node.p2p.banned().is_empty(), "{:?}", node.p2p.banned());
    assert_eq!(node.p2p.peers().len(), 1, "the peer is still connected");

    // Headers that do not build on each other are a lie: banned.
    let mut broken = branch(&main.blocks[1].header, 10, 5_000);
    broken.remove(4);
    socket
        .send(frame(&Message::Headers(broken)))
        .await
        .expect("sent");
    wait_until("the liar is banned", LIMIT, || {
        let banned = node.p2p.banned();
        async move {
            banned
                .iter()
                .any(|(_, rule)| rule == "headers-not-continuous")
        }
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_branch_forking_deeper_than_a_batch_is_presynced_then_stored() {
    // The node's chain is longer than one batch plus the threshold's margin, so the first
    // batch of a branch forking at genesis ends below the threshold.
    let depth = MAX_HEADERS + ANTI_DOS_BLOCKS as usize + 100;
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(depth);
    let node = TestNode::with_chain(&main, vec![]).await;
    let branch_headers = branch(&main.blocks[0].header, depth + 400, 250);
    let branch_tip = branch_headers[branch_headers.len() - 1].compute_hash();
    let genesis = main.blocks[0].compute_hash();

    // A raw peer that announces the branch and answers getheaders from it.
    let mut socket = peer_claiming(&node, branch_tip, branch_headers.len(), 47_302).await;
    let served = Arc::clone(&node.node);
    let headers = branch_headers.clone();
    // Sent just before the branch comes again: headers of another branch, far below the
    // tip. The branch's allowance (its headers need no work check as they come again)
    // once took any headers, so these were stored unchecked.
    let junk = branch(&main.blocks[1].header, 10, 777);
    let junk_hashes: Vec<BlockHash> = junk.iter().map(Header::compute_hash).collect();
    let server = tokio::spawn(async move {
        let mut presynced = false;
        let mut junk = Some(junk);
        while let Some(Ok(frame_in)) = socket.next().await {
            let Frame::Binary(bytes) = frame_in else {
                continue;
            };
            let reply = match Message::from_bytes(&bytes) {
                Ok(Message::Ping(nonce)) => Message::Pong(nonce),
                Ok(Message::GetHeaders { locator, .. }) => {
                    let start = answer_start(&locator, &headers, genesis);
                    let Some(start) = start else { continue };
                    if start > 0 && served.block_height(&locator[0]).is_none() {
                        // Asked for what follows a header the node did not store.
                        presynced = true;
                    }
                    if start == 0
                        && presynced
                        && let Some(junk) = junk.take()
                    {
                        // Asked for the branch again, to store it.
                        let junk = Message::Headers(junk);
                        if socket.send(frame(&junk)).await.is_err() {
                            break;
                        }
                    }
                    let end = (start + MAX_HEADERS).min(headers.len());
                    Message::Headers(headers[start..end].to_vec())
                }
                _ => continue,
            };
            assert!(reply.to_bytes().len() <= MAX_MESSAGE_BYTES);
            if socket.send(frame(&reply)).await.is_err() {
                break;
            }
        }
        presynced
    });
    wait_until("the branch's headers are stored", LIMIT, || {
        let best = node.node.chain_summary().best_header;
        async move { best == branch_tip }
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    let stored: Vec<BlockHash> = branch_headers
        .iter()
        .map(Header::compute_hash)
        .filter(|hash| node.node.block_height(hash).is_some())
        .collect();
    assert_eq!(stored.len(), branch_headers.len(), "every header stored");
    for hash in &junk_hashes {
        assert_eq!(
            node.node.block_height(hash),
            None,
            "another branch's headers got no allowance"
        );
    }
    node.stop().await;
    assert!(
        server.await.expect("the peer task"),
        "the first batch was pre-synced, not stored"
    );
}

/// A block the peer pushes while the node pre-syncs its branch does not connect (its
/// parent is the branch's tip, not stored yet), so the node asks for headers; but not
/// while the pre-sync's own request is unanswered. Such a request from the node's locator
/// crossed the pre-sync: its answer, the branch's first batch again, restarted the
/// pre-sync, and the pre-sync's next batch then did not connect, so the honest peer was
/// banned for `headers-do-not-connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_pushed_during_a_presync_does_not_cross_it() {
    // Two batches of the branch end below the threshold: the pre-sync asks twice.
    let depth = 2 * MAX_HEADERS + ANTI_DOS_BLOCKS as usize + 100;
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(depth);
    let node = TestNode::with_chain(&main, vec![]).await;
    let branch_headers = branch(&main.blocks[0].header, depth + 400, 250);
    let branch_tip = branch_headers[branch_headers.len() - 1].compute_hash();
    let genesis = main.blocks[0].compute_hash();
    // The peer's newest block, on the branch's tip, pushed as a compact block right after
    // the branch's first batch.
    let pushed = branch(&branch_headers[branch_headers.len() - 1], 1, 250)[0];

    let mut socket = peer_claiming(&node, branch_tip, branch_headers.len(), 47_303).await;
    let headers = branch_headers.clone();
    let server = tokio::spawn(async move {
        let mut pushed_once = false;
        while let Some(Ok(frame_in)) = socket.next().await {
            let Frame::Binary(bytes) = frame_in else {
                continue;
            };
            let reply = match Message::from_bytes(&bytes) {
                Ok(Message::Ping(nonce)) => Message::Pong(nonce),
                Ok(Message::GetHeaders { locator, .. }) => {
                    let Some(start) = answer_start(&locator, &headers, genesis) else {
                        continue;
                    };
                    let end = (start + MAX_HEADERS).min(headers.len());
                    let batch = Message::Headers(headers[start..end].to_vec());
                    if socket.send(frame(&batch)).await.is_err() {
                        break;
                    }
                    if pushed_once {
                        continue;
                    }
                    pushed_once = true;
                    Message::CompactBlock(Box::new(CompactBlock {
                        header: pushed,
                        nonce: 0,
                        short_ids: vec![0],
                        prefilled: vec![],
                    }))
                }
                _ => continue,
            };
            if socket.send(frame(&reply)).await.is_err() {
                break;
            }
        }
    });
    // The pushed block's header follows the branch's once they are stored.
    let served = Arc::clone(&node.node);
    wait_until(
        "the branch's headers are stored, or the peer banned",
        LIMIT,
        || {
            let done = served.block_height(&branch_tip).is_some() || !node.p2p.banned().is_empty();
            async move { done }
        },
    )
    .await;
    assert!(
        node.p2p.banned().is_empty(),
        "the pushing peer was not banned: {:?}",
        node.p2p.banned()
    );
    node.stop().await;
    server.abort();
}

/// The branch is downloaded again from the node's locator, which moves with its tip: with
/// a fork above genesis the first batch of the second download may start higher than the
/// first one did. The allowance once demanded the first batch's first header (a block of
/// the node's own chain below the fork), so a block mined meanwhile made the node count
/// the whole branch again, and a node whose tip kept moving never took the branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presynced_branch_is_stored_though_the_tip_moved_meanwhile() {
    // The locator steps back 1, ..., 1, 2, 4, ..., 2048 blocks from the tip: at 4,500
    // blocks its entry below the fork is block 397 (4,500 - 4,103), which a mined block
    // moves to 398. A batch from there ends below the threshold, so it is pre-synced.
    let depth = 4_500;
    let fork = 450;
    let mut main = TestChain::new(Network::Regtest);
    main.mine_empty(depth);
    let node = TestNode::with_chain(&main, vec![]).await;
    // The peer's chain: the node's up to the fork, then a longer branch.
    let branch_headers = branch(&main.blocks[fork].header, depth - fork + 400, 250);
    let mut peer_chain: Vec<Header> = main.blocks[1..=fork]
        .iter()
        .map(|block| block.header)
        .collect();
    peer_chain.extend(branch_headers.iter().copied());
    let branch_tip = branch_headers[branch_headers.len() - 1].compute_hash();
    let genesis = main.blocks[0].compute_hash();

    let mut socket = peer_claiming(&node, branch_tip, peer_chain.len(), 47_303).await;
    let (presyncing, mut presync_started) = tokio::sync::mpsc::channel::<()>(1);
    let (mined, mut tip_moved) = tokio::sync::mpsc::channel::<()>(1);
    let served = Arc::clone(&node.node);
    let server = tokio::spawn(async move {
        // How often the peer served a batch starting at or below the fork: the first
        // download, and each time the branch was asked for again.
        let mut from_the_fork = 0;
        let mut presynced = false;
        while let Some(Ok(frame_in)) = socket.next().await {
            let Frame::Binary(bytes) = frame_in else {
                continue;
            };
            let reply = match Message::from_bytes(&bytes) {
                Ok(Message::Ping(nonce)) => Message::Pong(nonce),
                Ok(Message::GetHeaders { locator, .. }) => {
                    let start = answer_start(&locator, &peer_chain, genesis);
                    let Some(start) = start else { continue };
                    if start <= fork {
                        from_the_fork += 1;
                    }
                    if !presynced && start > fork && served.block_height(&locator[0]).is_none() {
                        // Counting the branch: the node's tip moves before it goes on.
                        presynced = true;
                        let _ = presyncing.send(()).await;
                        let _ = tip_moved.recv().await;
                    }
                    let end = (start + MAX_HEADERS).min(peer_chain.len());
                    Message::Headers(peer_chain[start..end].to_vec())
                }
                _ => continue,
            };
            if socket.send(frame(&reply)).await.is_err() {
                break;
            }
        }
        from_the_fork
    });
    tokio::time::timeout(LIMIT, presync_started.recv())
        .await
        .expect("the branch is pre-synced")
        .expect("the peer task runs");
    node.mine().await;
    mined.send(()).await.expect("the peer task waits");

    wait_until("the branch's headers are stored", LIMIT, || {
        let best = node.node.chain_summary().best_header;
        async move { best == branch_tip }
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
    assert_eq!(
        server.await.expect("the peer task"),
        2,
        "counted once, downloaded once more to be stored"
    );
}
