//! Compact block relay (BIP-152) between real nodes over loopback, and against a raw peer
//! that plays each part of the exchange: a block whose transactions are pooled crosses
//! as a compact block and is rebuilt; a missing transaction is asked for by index; a
//! wrong one makes the node fetch the whole block; a peer that asked for pushes gets new
//! blocks pushed; a lying answer bans; a session completes at most four compact blocks at
//! once, and the one it gives up is fetched again; the peer that brings a new tip first is
//! asked for pushes in place of the longest-serving one; a block had whole is announced
//! before validation to the pushing peers it is not pushed to.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Socket, TestNode, closed_by_node, raw_peer, send, wait_converged, wait_until};
use futures_util::StreamExt;
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{Amount, Block, Transaction, TxOut};
use powchain_p2p::{CompactBlock, InventoryItem, Message, MessageTraffic, PrefilledTransaction};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

/// Reads messages until `wanted` picks one (or fails after `LIMIT`).
async fn expect<T>(socket: &mut Socket, what: &str, wanted: impl Fn(Message) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => {
                if let Some(found) = Message::from_bytes(&bytes).ok().and_then(&wanted) {
                    return found;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no {what}: {other:?}"),
        }
    }
}

/// Payments spending the miner's mature coins `coins`, each paying a coin of fee.
fn payments(chain: &TestChain, coins: std::ops::Range<u64>) -> Vec<Transaction> {
    coins
        .map(|index| {
            let (outpoint, coin) = chain.mature_coin(index);
            let value = coin
                .output
                .value
                .checked_sub(Amount::from_units(100_000_000).expect("a coin"))
                .expect("the coin covers the fee");
            chain.spend(
                &[outpoint],
                vec![TxOut {
                    value,
                    address: powchain_consensus::testkit::test_address(9),
                }],
                &[chain.miner],
                &HashMap::new(),
            )
        })
        .collect()
}

async fn pool(node: &TestNode, transactions: &[Transaction]) {
    for transaction in transactions.iter().cloned() {
        let core = Arc::clone(&node.node);
        tokio::task::spawn_blocking(move || core.submit_transaction(transaction))
            .await
            .expect("task")
            .expect("a valid payment");
    }
}

fn fees(count: u64) -> Amount {
    Amount::from_units(count * 100_000_000).expect("fees")
}

/// Messages of `name` sent by every node, and their bytes.
fn sent(nodes: &[&TestNode], name: &str) -> (u64, u64) {
    nodes
        .iter()
        .flat_map(|node| node.p2p.traffic())
        .filter(|traffic: &MessageTraffic| traffic.name == name)
        .fold((0, 0), |(count, bytes), traffic| {
            (count + traffic.sent, bytes + traffic.sent_bytes)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_whose_transactions_every_pool_holds_crosses_two_hops_as_compact_blocks() {
    let chain = TestChain::regtest_with_mature_coins(20);
    let first = TestNode::with_chain(&chain, vec![]).await;
    let second = TestNode::with_chain(&chain, vec![first.url()]).await;
    let third = TestNode::with_chain(&chain, vec![second.url()]).await;
    let nodes = [&first, &second, &third];
    pool(&first, &payments(&chain, 0..20)).await;
    wait_until("every pool holds the 20 payments", LIMIT, || async {
        nodes.iter().all(|node| node.node.pool_size().0 == 20)
    })
    .await;
    let (blocks_before, _) = sent(&nodes, "block");
    let block = first.mine().await;
    assert_eq!(block.transactions.len(), 21);
    wait_converged(&nodes, LIMIT).await;
    assert_eq!(third.tip(), block.compute_hash());
    let (blocks_after, _) = sent(&nodes, "block");
    let (compact, compact_bytes) = sent(&nodes, "cmpctblock");
    let (asked, _) = sent(&nodes, "getblocktxn");
    assert_eq!(blocks_after, blocks_before, "no whole block crossed");
    assert!(compact >= 2, "one compact block a hop: {compact}");
    assert_eq!(asked, 0, "every transaction was pooled");
    let size = Message::Block(Box::new(block)).to_bytes().len() as u64;
    assert!(
        compact_bytes / compact * 5 < size,
        "a compact block ({} bytes) is far smaller than the block ({size} bytes)",
        compact_bytes / compact
    );
    for node in nodes.iter() {
        assert!(node.p2p.banned().is_empty());
    }
    for node in [first, second, third] {
        node.stop().await;
    }
}

/// Connects a raw peer that asked for pushes, reads past the node's greeting.
async fn pushing_peer(node: &TestNode, port: u16) -> Socket {
    let mut peer = raw_peer(&node.url(), port).await.expect("connects");
    send(
        &mut peer,
        Message::SendCompact {
            high_bandwidth: true,
        },
    )
    .await;
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_transaction_is_asked_for_by_index_and_a_peer_that_asked_gets_pushes() {
    let mut chain = TestChain::regtest_with_mature_coins(3);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let spends = payments(&chain, 0..3);
    // The node has the first payment, not the other two.
    pool(&node, &spends[..1]).await;
    let block = chain.build(spends.clone(), fees(3));
    chain.push(block.clone()).expect("valid");
    let mut peer = pushing_peer(&node, 47_101).await;
    // The node says it relays compact blocks and asks this peer (its first) for pushes.
    let asked = expect(&mut peer, "sendcmpct", |message| match message {
        Message::SendCompact { high_bandwidth } => Some(high_bandwidth),
        _ => None,
    })
    .await;
    assert!(asked, "its first peer is asked for pushes");
    let compact = compact_of(&block, &[0]);
    send(&mut peer, Message::CompactBlock(Box::new(compact))).await;
    let indexes = expect(&mut peer, "getblocktxn", |message| match message {
        Message::GetBlockTransactions {
            block: hash,
            indexes,
        } if hash == block.compute_hash() => Some(indexes),
        _ => None,
    })
    .await;
    assert_eq!(indexes, vec![2, 3], "the two payments the pool lacks");
    send(
        &mut peer,
        Message::BlockTransactions {
            block: block.compute_hash(),
            transactions: vec![spends[1].clone(), spends[2].clone()],
        },
    )
    .await;
    wait_until("the rebuilt block is the tip", LIMIT, || async {
        node.tip() == block.compute_hash()
    })
    .await;

    // The node's next block is pushed to this peer as a compact block, not announced.
    let mined = node.mine().await;
    let pushed = expect(&mut peer, "a pushed block", |message| match message {
        Message::CompactBlock(compact) => Some(*compact),
        Message::Inventory(items)
            if items.contains(&InventoryItem::Block(mined.compute_hash())) =>
        {
            panic!("announced by inv before the push")
        }
        _ => None,
    })
    .await;
    assert_eq!(pushed.header, mined.header);
    assert_eq!(pushed.prefilled.len(), 1, "the coinbase goes whole");
    assert_eq!(pushed.prefilled[0].index, 0);
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
}

/// `block` as a compact block, with the transactions at `prefilled` whole.
fn compact_of(block: &Block, prefilled: &[usize]) -> CompactBlock {
    // Built by hand, as a peer would: SipHash-2-4 short ids keyed by the header and nonce.
    let nonce = 5;
    let mut preimage = block.header.to_bytes().to_vec();
    preimage.extend_from_slice(&u64::to_le_bytes(nonce));
    let digest = powchain_consensus::hash::sha256(&preimage);
    let k0 = u64::from_le_bytes(digest[0..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(digest[8..16].try_into().expect("8 bytes"));
    let mut compact = CompactBlock {
        header: block.header,
        nonce,
        short_ids: Vec::new(),
        prefilled: Vec::new(),
    };
    for (index, transaction) in block.transactions.iter().enumerate() {
        if prefilled.contains(&index) {
            compact.prefilled.push(PrefilledTransaction {
                index,
                transaction: transaction.clone(),
            });
        } else {
            #[allow(deprecated)]
            let mut hasher = std::hash::SipHasher::new_with_keys(k0, k1);
            std::hash::Hasher::write(&mut hasher, &transaction.compute_txid().0);
            compact
                .short_ids
                .push(std::hash::Hasher::finish(&hasher) & 0xffff_ffff_ffff);
        }
    }
    compact
}

/// A node, and the next block of its chain: two payments its pool does not hold.
async fn node_and_a_block_of_two_unpooled_payments() -> (TestNode, Block, Vec<Transaction>) {
    let mut chain = TestChain::regtest_with_mature_coins(2);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let spends = payments(&chain, 0..2);
    let block = chain.build(spends.clone(), fees(2));
    chain.push(block.clone()).expect("valid");
    (node, block, spends)
}

/// Pushes `block` (its two payments `spends` missing from the node's pool) as a compact
/// block, answers the node's `getblocktxn` with them in the wrong order, and waits for the
/// node to ask for the block whole (the Merkle root tells; a short-id collision is
/// possible, so no ban).
async fn push_and_answer_wrongly(peer: &mut Socket, block: &Block, spends: &[Transaction]) {
    let hash = block.compute_hash();
    send(
        peer,
        Message::CompactBlock(Box::new(compact_of(block, &[0]))),
    )
    .await;
    let indexes = expect(peer, "getblocktxn", |message| match message {
        Message::GetBlockTransactions { indexes, .. } => Some(indexes),
        _ => None,
    })
    .await;
    assert_eq!(indexes, vec![1, 2]);
    send(
        peer,
        Message::BlockTransactions {
            block: hash,
            transactions: vec![spends[1].clone(), spends[0].clone()],
        },
    )
    .await;
    expect(
        peer,
        "getdata for the whole block",
        |message| match message {
            Message::GetData(items) if items.contains(&InventoryItem::Block(hash)) => Some(()),
            _ => None,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_transaction_makes_the_node_fetch_the_whole_block_and_a_short_answer_bans() {
    let mut chain = TestChain::regtest_with_mature_coins(3);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let spends = payments(&chain, 0..2);
    let block = chain.build(spends.clone(), fees(2));
    chain.push(block.clone()).expect("valid");
    let hash = block.compute_hash();
    let mut peer = pushing_peer(&node, 47_102).await;
    push_and_answer_wrongly(&mut peer, &block, &spends).await;
    send(&mut peer, Message::Block(Box::new(block.clone()))).await;
    wait_until("the whole block is the tip", LIMIT, || async {
        node.tip() == hash
    })
    .await;
    assert!(node.p2p.banned().is_empty(), "a wrong guess is not a lie");

    // Next block: an answer with fewer transactions than asked for is a lie.
    let spends = payments(&chain, 2..3);
    let next = chain.build(spends, fees(1));
    let mut liar = pushing_peer(&node, 47_103).await;
    send(
        &mut liar,
        Message::CompactBlock(Box::new(compact_of(&next, &[0]))),
    )
    .await;
    expect(&mut liar, "getblocktxn", |message| match message {
        Message::GetBlockTransactions { .. } => Some(()),
        _ => None,
    })
    .await;
    send(
        &mut liar,
        Message::BlockTransactions {
            block: next.compute_hash(),
            transactions: vec![],
        },
    )
    .await;
    assert!(closed_by_node(&mut liar, LIMIT).await, "banned and closed");
    assert!(
        node.p2p
            .banned()
            .iter()
            .any(|(_, rule)| rule == "bad-blocktxn"),
        "{:?}",
        node.p2p.banned()
    );
    drop(peer);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_block_sent_again_is_not_looked_up_again_but_fetched_whole() {
    // Each lookup is a pass over the whole pool under the node's lock; a compact block of
    // a block asked of the peer is exempt from the message rate, so a peer that answered
    // wrongly and sent the compact block again, in a loop, held the lock at no cost.
    let (node, block, spends) = node_and_a_block_of_two_unpooled_payments().await;
    let hash = block.compute_hash();
    let mut peer = pushing_peer(&node, 47_106).await;
    // A wrong answer, and the peer sends the compact block again instead, twice.
    push_and_answer_wrongly(&mut peer, &block, &spends).await;
    let compact = Message::CompactBlock(Box::new(compact_of(&block, &[0])));
    for ping in [11, 12] {
        send(&mut peer, compact.clone()).await;
        send(&mut peer, Message::Ping(ping)).await;
        let asked_whole = expect(&mut peer, "getdata or the pong", |message| match message {
            Message::GetBlockTransactions { .. } => panic!("looked up in the pool again"),
            Message::GetData(items) if items.contains(&InventoryItem::Block(hash)) => Some(true),
            Message::Pong(nonce) if nonce == ping => Some(false),
            _ => None,
        })
        .await;
        assert!(asked_whole, "the whole block is asked for again");
    }
    send(&mut peer, Message::Block(Box::new(block.clone()))).await;
    wait_until("the whole block is the tip", LIMIT, || async {
        node.tip() == hash
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_completes_a_block_a_silent_stranger_claimed_first() {
    let (node, block, spends) = node_and_a_block_of_two_unpooled_payments().await;
    let hash = block.compute_hash();
    let mut pusher = pushing_peer(&node, 47_107).await;
    let asked = expect(&mut pusher, "sendcmpct", |message| match message {
        Message::SendCompact { high_bandwidth } => Some(high_bandwidth),
        _ => None,
    })
    .await;
    assert!(asked, "the node asks its first peer for pushes");
    // A stranger sends the new block's compact block first, unasked, and never answers.
    let mut stranger = raw_peer(&node.url(), 47_108).await.expect("connects");
    let compact = Message::CompactBlock(Box::new(compact_of(&block, &[0])));
    send(&mut stranger, compact.clone()).await;
    expect(&mut stranger, "getblocktxn", |message| match message {
        Message::GetBlockTransactions { .. } => Some(()),
        _ => None,
    })
    .await;
    // The pusher's copy is completed from the pusher at once, not after the stranger's
    // request times out (20 s, `P2pConfig::block_timeout`).
    send(&mut pusher, compact).await;
    let asked_pusher = tokio::time::timeout(
        Duration::from_secs(10),
        expect(&mut pusher, "getblocktxn", |message| match message {
            Message::GetBlockTransactions { block, indexes } if block == hash => Some(indexes),
            _ => None,
        }),
    )
    .await
    .expect("asked of the pusher before the stranger's request times out");
    assert_eq!(asked_pusher, vec![1, 2]);
    send(
        &mut pusher,
        Message::BlockTransactions {
            block: hash,
            transactions: spends,
        },
    )
    .await;
    wait_until("the block is the tip", LIMIT, || async {
        node.tip() == hash
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    drop(stranger);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_is_announced_by_its_header_to_a_peer_that_has_its_parent() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let parent = node.tip();
    let mut peer = raw_peer(&node.url(), 47_104).await.expect("connects");
    // The peer shows it has the node's tip; it does not ask for pushes.
    send(
        &mut peer,
        Message::Inventory(vec![InventoryItem::Block(parent)]),
    )
    .await;
    send(&mut peer, Message::Ping(3)).await;
    expect(&mut peer, "pong", |message| {
        (message == Message::Pong(3)).then_some(())
    })
    .await;
    let mined = node.mine().await;
    let announced = expect(&mut peer, "an announcement", |message| match message {
        Message::Headers(headers) => Some(headers),
        Message::Inventory(items)
            if items.contains(&InventoryItem::Block(mined.compute_hash())) =>
        {
            panic!("announced by hash to a peer known to have the parent")
        }
        _ => None,
    })
    .await;
    assert_eq!(announced, vec![mined.header]);
    assert_eq!(announced[0].prev_hash, parent);

    // A short announcement that does not connect is answered with getheaders, no ban.
    let mut stray = mined.header;
    stray.prev_hash = powchain_consensus::BlockHash([0x55; 32]);
    powchain_consensus::testkit::solve(&mut stray);
    send(&mut peer, Message::Headers(vec![stray])).await;
    expect(&mut peer, "getheaders", |message| match message {
        Message::GetHeaders { .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_block_whose_parent_is_missing_is_rebuilt_once_headers_bring_the_parent() {
    let mut chain = TestChain::regtest_with_mature_coins(1);
    let node = TestNode::with_chain(&chain, vec![]).await;
    chain.mine_empty(2);
    let (parent, child) = (
        chain.blocks[chain.blocks.len() - 2].clone(),
        chain.blocks[chain.blocks.len() - 1].clone(),
    );
    let mut peer = pushing_peer(&node, 47_105).await;
    // The child first: the node cannot place it, and asks for headers.
    send(
        &mut peer,
        Message::CompactBlock(Box::new(compact_of(&child, &[0]))),
    )
    .await;
    expect(&mut peer, "getheaders", |message| match message {
        Message::GetHeaders { .. } => Some(()),
        _ => None,
    })
    .await;
    // Headers bring the parent's; the node fetches the parent and, with no further
    // announcement of the child, ends on the child: it kept the compact block.
    send(&mut peer, Message::Headers(vec![parent.header])).await;
    let asked = expect(
        &mut peer,
        "getdata for the parent",
        |message| match message {
            Message::GetData(items) => Some(items),
            _ => None,
        },
    )
    .await;
    // One block behind, from a peer that relays compact blocks: low-bandwidth mode asks
    // for it as a compact block (getdata kind 2), not whole.
    let hash = parent.compute_hash();
    assert_eq!(asked, vec![InventoryItem::CompactBlock(hash)]);
    send(
        &mut peer,
        Message::CompactBlock(Box::new(compact_of(&parent, &[0]))),
    )
    .await;
    wait_until("the node is on the pushed block", LIMIT, || async {
        node.tip() == child.compute_hash()
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_compact_block_in_progress_gives_up_the_oldest_which_is_fetched_again() {
    // Five blocks in a row, each with a payment the node's pool lacks, pushed as compact
    // blocks by one peer that never answers in time: a session completes at most four at
    // once (MAX_PARTIAL_BLOCKS), so the fifth gives up the first.
    let mut chain = TestChain::regtest_with_mature_coins(5);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let mut blocks = Vec::new();
    for coin in 0..5 {
        let block = chain.build(payments(&chain, coin..coin + 1), fees(1));
        chain.push(block.clone()).expect("valid");
        blocks.push(block);
    }
    let mut peer = pushing_peer(&node, 47_106).await;
    for block in &blocks {
        let hash = block.compute_hash();
        send(
            &mut peer,
            Message::CompactBlock(Box::new(compact_of(block, &[0]))),
        )
        .await;
        let indexes = expect(&mut peer, "getblocktxn", |message| match message {
            Message::GetBlockTransactions { block, indexes } if block == hash => Some(indexes),
            _ => None,
        })
        .await;
        assert_eq!(indexes, vec![1], "the payment the pool lacks");
    }
    // The first block's transactions come too late: ignored, and not a lie.
    send(
        &mut peer,
        Message::BlockTransactions {
            block: blocks[0].compute_hash(),
            transactions: vec![blocks[0].transactions[1].clone()],
        },
    )
    .await;
    // The four still in progress complete.
    for block in &blocks[1..] {
        send(
            &mut peer,
            Message::BlockTransactions {
                block: block.compute_hash(),
                transactions: vec![block.transactions[1].clone()],
            },
        )
        .await;
    }
    // The first is asked for again (whole, or as a compact block) and then connects, and
    // the four stored above it with it.
    let first = blocks[0].compute_hash();
    let asked = expect(
        &mut peer,
        "getdata for the first block",
        |message| match message {
            Message::GetData(items)
                if items.contains(&InventoryItem::Block(first))
                    || items.contains(&InventoryItem::CompactBlock(first)) =>
            {
                Some(items)
            }
            _ => None,
        },
    )
    .await;
    assert!(!asked.is_empty());
    send(&mut peer, Message::Block(Box::new(blocks[0].clone()))).await;
    let last = blocks[4].compute_hash();
    wait_until("the node is on the fifth block", LIMIT, || async {
        node.tip() == last
    })
    .await;
    assert!(node.p2p.banned().is_empty(), "{:?}", node.p2p.banned());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_that_brings_a_new_tip_first_is_asked_for_pushes_in_place_of_the_oldest() {
    // One pushing peer at most: the first to connect is asked; the second is not, until
    // it brings a new tip first, when it takes the first's place.
    let mut chain = TestChain::regtest_with_mature_coins(1);
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node = TestNode::start_in(
        temp.path().to_path_buf(),
        powchain_p2p::P2pConfig {
            high_bandwidth_peers: 1,
            ..common::config(vec![], 0)
        },
    )
    .await;
    node.keep(temp);
    node.submit_chain(&chain).await;
    let asked = |message| match message {
        Message::SendCompact { high_bandwidth } => Some(high_bandwidth),
        _ => None,
    };
    let mut first = pushing_peer(&node, 47_107).await;
    assert!(
        expect(&mut first, "sendcmpct", asked).await,
        "the first is asked"
    );
    let mut second = pushing_peer(&node, 47_108).await;
    assert!(
        !expect(&mut second, "sendcmpct", asked).await,
        "the second is not: one pushing peer at most"
    );
    // The second brings a new block first (announced by its header, fetched whole).
    chain.mine_empty(1);
    let block = chain.tip().clone();
    let hash = block.compute_hash();
    send(&mut second, Message::Headers(vec![block.header])).await;
    expect(&mut second, "getdata", |message| match message {
        Message::GetData(items)
            if items.contains(&InventoryItem::Block(hash))
                || items.contains(&InventoryItem::CompactBlock(hash)) =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    send(&mut second, Message::Block(Box::new(block))).await;
    assert!(
        expect(&mut second, "sendcmpct", asked).await,
        "the peer that brought the tip is asked for pushes"
    );
    assert!(
        !expect(&mut first, "sendcmpct", asked).await,
        "the longest-serving one is no longer asked"
    );
    assert_eq!(node.tip(), hash);
    assert!(node.p2p.banned().is_empty(), "{:?}", node.p2p.banned());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_had_whole_is_announced_before_validation_to_the_pushers_we_do_not_push_to() {
    // Three pushing peers. The first pushes a block whose coinbase claims more than its
    // fees: it passes the checks made before validation, and fails validation. The second
    // does not ask the node for pushes, so it hears by the header, before validation,
    // that the node has the block (and would not push it); the third asked for pushes
    // and gets the push, not the header.
    let chain = TestChain::regtest_with_mature_coins(2);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let parent = node.tip();
    let asked = |message| match message {
        Message::SendCompact { high_bandwidth } => Some(high_bandwidth),
        _ => None,
    };
    let mut first = pushing_peer(&node, 47_109).await;
    let mut second = raw_peer(&node.url(), 47_110).await.expect("connects");
    let mut third = pushing_peer(&node, 47_111).await;
    for peer in [&mut first, &mut second, &mut third] {
        assert!(expect(peer, "sendcmpct", asked).await, "one of the three");
        // Each shows it has the node's tip, so a header on it can be placed.
        send(peer, Message::Inventory(vec![InventoryItem::Block(parent)])).await;
        send(peer, Message::Ping(5)).await;
        expect(peer, "pong", |message| {
            (message == Message::Pong(5)).then_some(())
        })
        .await;
    }
    let spends = payments(&chain, 0..2);
    pool(&node, &spends).await;
    let block = chain.build(spends, fees(3));
    let hash = block.compute_hash();
    send(
        &mut first,
        Message::CompactBlock(Box::new(compact_of(&block, &[0]))),
    )
    .await;
    let heard = expect(&mut second, "the header", |message| match message {
        Message::Headers(headers) => Some(headers),
        _ => None,
    })
    .await;
    assert_eq!(heard, vec![block.header]);
    let pushed = expect(&mut third, "the push", |message| match message {
        Message::CompactBlock(compact) => Some(compact.header),
        Message::Headers(headers) if headers.iter().any(|h| h.compute_hash() == hash) => {
            panic!("a peer we push to was sent the header too")
        }
        _ => None,
    })
    .await;
    assert_eq!(pushed, block.header);
    // The first's session validated the block before it reads the ping: validation
    // refused it, and the pusher is not punished for a block it pushed before validating
    // it (BIP-152).
    send(&mut first, Message::Ping(6)).await;
    expect(&mut first, "pong", |message| {
        (message == Message::Pong(6)).then_some(())
    })
    .await;
    assert!(!node.node.has_block(&hash));
    assert_eq!(node.tip(), parent);
    assert!(node.p2p.banned().is_empty(), "{:?}", node.p2p.banned());
    node.stop().await;
}

/// A compact block or a few of its transactions, asked of a block deep below the tip, come
/// as the whole block: the node does not hash or decode an old block whole for a reply of
/// a few bytes (Bitcoin Core's MAX_CMPCTBLOCK_DEPTH and MAX_BLOCKTXN_DEPTH). Near the tip
/// they are served as asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_requests_for_blocks_deep_below_the_tip_are_answered_with_the_whole_block() {
    let mut chain = TestChain::regtest_with_mature_coins(2);
    chain.mine_empty(20);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let mut peer = raw_peer(&node.url(), 9).await.expect("connects");
    let deep = chain.blocks[2].compute_hash();
    let near = chain.tip().compute_hash();
    let is_block = |wanted: powchain_consensus::BlockHash| {
        move |message: Message| match message {
            Message::Block(block) if block.compute_hash() == wanted => Some(()),
            _ => None,
        }
    };

    send(
        &mut peer,
        Message::GetData(vec![InventoryItem::CompactBlock(deep)]),
    )
    .await;
    expect(&mut peer, "the deep block whole", is_block(deep)).await;
    send(
        &mut peer,
        Message::GetBlockTransactions {
            block: deep,
            indexes: vec![0],
        },
    )
    .await;
    expect(&mut peer, "the deep block whole again", is_block(deep)).await;

    send(
        &mut peer,
        Message::GetData(vec![InventoryItem::CompactBlock(near)]),
    )
    .await;
    expect(
        &mut peer,
        "a compact block of the tip",
        |message| match message {
            Message::CompactBlock(compact) if compact.header.compute_hash() == near => Some(()),
            _ => None,
        },
    )
    .await;
    send(
        &mut peer,
        Message::GetBlockTransactions {
            block: near,
            indexes: vec![0],
        },
    )
    .await;
    expect(&mut peer, "the tip's coinbase", |message| match message {
        Message::BlockTransactions {
            block,
            transactions,
        } if block == near => Some(transactions.len()),
        _ => None,
    })
    .await;
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
}

/// A peer may push a block before validating it (BIP-152) and announce it to the peers
/// that push to it before validating it, so its push or announcement can arrive after
/// this node found the block invalid. That peer was banned (`known-invalid`) for what an
/// honest relay does; one invalid block could cut honest nodes apart. A block building
/// on the invalid one still bans: nobody honest pushes a child of a block it has not
/// validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_or_announcement_crossing_our_verdict_on_an_invalid_block_is_not_punished() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let node = TestNode::with_chain(&chain, vec![]).await;
    let mut invalid = chain.build(vec![], Amount::ZERO);
    let reward = invalid.transactions[0].outputs[0].value.to_units();
    invalid.transactions[0].outputs[0].value = Amount::from_units(reward + 1).expect("in range");
    TestChain::seal(&mut invalid);
    let error = node
        .node
        .submit_block(invalid.clone())
        .expect_err("the coinbase pays one unit too much");
    assert_eq!(error.rule(), Some("coinbase-overpays"));

    let mut peer = raw_peer(&node.url(), 47_501).await.expect("connects");
    send(
        &mut peer,
        Message::CompactBlock(Box::new(compact_of(&invalid, &[0]))),
    )
    .await;
    send(&mut peer, Message::Headers(vec![invalid.header])).await;
    send(&mut peer, Message::Ping(41)).await;
    expect(&mut peer, "pong", |message| {
        matches!(message, Message::Pong(41)).then_some(())
    })
    .await;
    assert!(node.p2p.banned().is_empty(), "{:?}", node.p2p.banned());
    assert_eq!(node.p2p.peers().len(), 1, "still connected");

    // A child of the invalid block is another matter.
    let mut child = invalid.header;
    child.prev_hash = invalid.compute_hash();
    child.time_ms += 1_000;
    powchain_consensus::testkit::solve(&mut child);
    send(&mut peer, Message::Headers(vec![child])).await;
    assert!(
        closed_by_node(&mut peer, LIMIT).await,
        "banned for the child"
    );
    assert!(
        node.p2p
            .banned()
            .iter()
            .any(|(_, rule)| rule == "known-invalid"),
        "{:?}",
        node.p2p.banned()
    );
    node.stop().await;
}

/// A node pushes a block to the peers that asked for pushes before it validates it, and
/// those peers ask at once for the payments they lack (or for the compact block, when
/// told of it by headers). It answered from its store, where the block was not yet:
/// `notfound`, and the peer struck this node off that block's sources for the session.
/// Now it answers from the block it passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_pushed_before_validation_is_served_to_peers_completing_it() {
    let mut chain = TestChain::regtest_with_mature_coins(2);
    let temp = tempfile::tempdir().expect("temp dir");
    let environment = powchain_p2p::Environment {
        // Validating a block takes 5 s here: long enough for the round trip to land in it.
        validation_delay: Some(powchain_p2p::ValidationDelay {
            per_block: Duration::from_secs(5),
            per_payment: Duration::ZERO,
            per_transaction: Duration::ZERO,
        }),
        ..powchain_p2p::Environment::default()
    };
    let mut node = TestNode::start_with(
        temp.path().to_path_buf(),
        common::config(vec![], 0),
        Arc::new(powchain_node::SystemClock),
        environment,
    )
    .await;
    node.keep(temp);
    node.submit_chain(&chain).await;
    let spends = payments(&chain, 0..2);
    let block = chain.build(spends.clone(), fees(2));
    chain.push(block.clone()).expect("valid");
    let hash = block.compute_hash();

    let mut pushed_to = raw_peer(&node.url(), 47_601).await.expect("connects");
    send(
        &mut pushed_to,
        Message::SendCompact {
            high_bandwidth: true,
        },
    )
    .await;
    // A session reads its peer's messages in order: once the ping is answered, the
    // request for pushes is taken (being registered did not say so, and on a loaded
    // machine the block came first and went out after its validation instead).
    send(&mut pushed_to, Message::Ping(1)).await;
    expect(&mut pushed_to, "the pong", |message| {
        matches!(message, Message::Pong(1)).then_some(())
    })
    .await;
    let mut sender = raw_peer(&node.url(), 47_602).await.expect("connects");
    send(&mut sender, Message::Block(Box::new(block.clone()))).await;

    let pushed = expect(&mut pushed_to, "cmpctblock", |message| match message {
        Message::CompactBlock(compact) => Some(compact),
        _ => None,
    })
    .await;
    assert_eq!(pushed.header.compute_hash(), hash);
    assert!(
        !node.node.has_block(&hash),
        "pushed before it is validated and stored"
    );
    send(
        &mut pushed_to,
        Message::GetBlockTransactions {
            block: hash,
            indexes: vec![1, 2],
        },
    )
    .await;
    let answer = expect(
        &mut pushed_to,
        "blocktxn or notfound",
        |message| match message {
            Message::BlockTransactions { transactions, .. } => Some(Ok(transactions)),
            Message::NotFound(items) => Some(Err(items)),
            _ => None,
        },
    )
    .await;
    assert_eq!(answer, Ok(spends), "served from the block passed on");
    assert!(
        !node.node.has_block(&hash),
        "answered while the block was still being validated"
    );
    // Asked for whole as a compact block (as a peer the node announced it to by headers,
    // before validating it, does at once), it is served from the block passed on too.
    // A `notfound` made that peer leave this node out of the block's sources.
    send(
        &mut pushed_to,
        Message::GetData(vec![InventoryItem::CompactBlock(hash)]),
    )
    .await;
    let answer = expect(
        &mut pushed_to,
        "cmpctblock or notfound",
        |message| match message {
            Message::CompactBlock(compact) => Some(Ok(compact.header.compute_hash())),
            Message::NotFound(items) => Some(Err(items)),
            _ => None,
        },
    )
    .await;
    assert_eq!(answer, Ok(hash), "served from the block passed on");
    assert!(
        !node.node.has_block(&hash),
        "answered while the block was still being validated"
    );
    drop(sender);
    node.stop().await;
}
