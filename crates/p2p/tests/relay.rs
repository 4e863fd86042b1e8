//! Transaction relay across reorganisations and out-of-order arrival: the bugs the
//! partition test (faults.rs) found, each pinned by a deterministic test over a raw peer.
//!
//! - A transaction whose parent had not arrived was refused and its id remembered as seen,
//!   so it was never fetched again: a pool missed it for good.
//! - A transaction asked for and answered with `notfound` (a block had just taken it from
//!   the peer's pool) was remembered as seen: when a reorganisation put it back in the
//!   peer's pool, it was not fetched again.
//! - The node that answered `notfound` kept the transaction marked as known to the peer,
//!   so it never announced it again once it was back in its pool.
//! - A transaction asked of a peer that then left, lacked it, or never answered was not
//!   asked of the other peers that had announced it (the three-node bench waited forever
//!   for such a payment).
//! - Announcements past a peer's bound in the request tracker were dropped, and the peer
//!   never announces a transaction twice: a burst of 20,000 payments submitted to one node
//!   never left its pool.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Socket, TestNode, config, raw_peer, raw_peer_on, send, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{Amount, BlockHeight, Network, Transaction, TxOut, Txid};
use powchain_p2p::message::MAX_INVENTORY;
use powchain_p2p::{InventoryItem, MAX_ANNOUNCED_PER_PEER, Message, P2pConfig};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

/// Reads messages, handing each to `seen`, until `seen` says it was the one awaited (fails
/// after `LIMIT`).
async fn read_until(socket: &mut Socket, what: &str, mut seen: impl FnMut(&Message) -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => {
                if Message::from_bytes(&bytes).is_ok_and(|message| seen(&message)) {
                    return;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no {what}: {other:?}"),
        }
    }
}

/// Reads messages until one matches `wanted` (or fails after `LIMIT`).
async fn expect_message(socket: &mut Socket, what: &str, wanted: impl Fn(&Message) -> bool) {
    read_until(socket, what, wanted).await;
}

/// True if `message` announces block `hash`: by headers, `inv` or a compact block.
fn announces_block(message: &Message, hash: powchain_consensus::BlockHash) -> bool {
    match message {
        Message::Headers(headers) => headers.iter().any(|header| header.compute_hash() == hash),
        Message::Inventory(items) => items.contains(&InventoryItem::Block(hash)),
        Message::CompactBlock(compact) => compact.header.compute_hash() == hash,
        _ => false,
    }
}

fn transaction_item(txid: Txid) -> InventoryItem {
    InventoryItem::Transaction(txid)
}

fn names(message: &Message, kind: fn(&Message) -> Option<&Vec<InventoryItem>>, txid: Txid) -> bool {
    kind(message).is_some_and(|items| items.contains(&transaction_item(txid)))
}

fn get_data(message: &Message) -> Option<&Vec<InventoryItem>> {
    match message {
        Message::GetData(items) => Some(items),
        _ => None,
    }
}

fn inventory(message: &Message) -> Option<&Vec<InventoryItem>> {
    match message {
        Message::Inventory(items) => Some(items),
        _ => None,
    }
}

/// `inv` messages `node` has sent.
fn inventories_sent(node: &TestNode) -> u64 {
    node.p2p
        .traffic()
        .iter()
        .filter(|traffic| traffic.name == "inv")
        .map(|traffic| traffic.sent)
        .sum()
}

/// A node holding the blocks of `chain` (mature coins for the test kit's miner key).
async fn node_with(chain: &TestChain) -> TestNode {
    TestNode::with_chain(chain, vec![]).await
}

/// Submits a payment to the node as its API would.
async fn submit(node: &TestNode, payment: &Transaction) {
    let submitter = Arc::clone(&node.node);
    let pooled = payment.clone();
    tokio::task::spawn_blocking(move || submitter.submit_transaction(pooled))
        .await
        .expect("task")
        .expect("a valid payment");
}

/// A node holding the blocks of `chain`, its peer layer configured by `adjust`.
async fn node_configured(chain: &TestChain, adjust: impl FnOnce(&mut P2pConfig)) -> TestNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut p2p_config = config(vec![], 0);
    adjust(&mut p2p_config);
    let mut node = TestNode::start_in(temp.path().to_path_buf(), p2p_config).await;
    node.keep(temp);
    node.submit_chain(chain).await;
    node
}

/// `count` payments, each spending one of `chain`'s mature coins to an address of its own
/// (seeds from `first_seed`).
fn payments(chain: &TestChain, count: u64, first_seed: u8) -> Vec<Transaction> {
    (0..count)
        .map(|index| {
            chain.spend(
                &[chain.mature_coin(index).0],
                vec![out(
                    49 * 100_000_000,
                    first_seed + u8::try_from(index).expect("few"),
                )],
                &[chain.miner],
                &HashMap::new(),
            )
        })
        .collect()
}

/// Builds the next block of `chain` with `payments` (and a fee of one coin), adds it to
/// `chain`, has `node` connect it, and returns its hash.
async fn connect_next_block(
    node: &TestNode,
    chain: &mut TestChain,
    payments: Vec<Transaction>,
) -> powchain_consensus::BlockHash {
    let fees = Amount::from_units(100_000_000).expect("fee");
    connect_next_block_paying(node, chain, payments, fees).await
}

/// [`connect_next_block`] whose coinbase claims `fees`.
async fn connect_next_block_paying(
    node: &TestNode,
    chain: &mut TestChain,
    payments: Vec<Transaction>,
    fees: Amount,
) -> powchain_consensus::BlockHash {
    let block = chain.build(payments, fees);
    let hash = block.compute_hash();
    chain.push(block.clone()).expect("valid");
    let submitter = Arc::clone(&node.node);
    tokio::task::spawn_blocking(move || submitter.submit_block(block))
        .await
        .expect("task")
        .expect("valid block");
    hash
}

/// A spend of `chain`'s mature coin `index`, signed for one output value and sent with
/// another: its signature no longer holds (`bad-signature`).
fn forged_spend(chain: &TestChain, index: u64) -> Transaction {
    let mut forged = chain.spend(
        &[chain.mature_coin(index).0],
        vec![out(40 * 100_000_000, 1)],
        &[chain.miner],
        &HashMap::new(),
    );
    forged.outputs[0].value = Amount::from_units(45 * 100_000_000).expect("in range");
    forged
}

fn out(units: u64, seed: u8) -> TxOut {
    TxOut {
        value: Amount::from_units(units).expect("in range"),
        address: powchain_consensus::testkit::test_address(seed),
    }
}

/// A payment spending `chain`'s first mature coin, and a payment spending its output.
fn parent_and_child(chain: &TestChain) -> (Transaction, Transaction) {
    let parent = chain.spend(
        &[chain.mature_coin(0).0],
        vec![out(40 * 100_000_000, 1)],
        &[chain.miner],
        &HashMap::new(),
    );
    let parent_coins = TestChain::coins_of(&parent, chain.height().next());
    let child_input = *parent_coins.keys().next().expect("one output");
    let child = chain.spend(
        &[child_input],
        vec![out(39 * 100_000_000, 2)],
        &[chain.miner],
        &parent_coins,
    );
    (parent, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_parent_comes_later_is_held_and_pooled_when_the_parent_arrives() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let (parent, child) = parent_and_child(&chain);

    let mut peer = raw_peer(&node.url(), 46_001).await.expect("connects");
    // The child first: its parent is nowhere yet. Not a reason to ban; held.
    send(&mut peer, Message::Transaction(Box::new(child.clone()))).await;
    send(&mut peer, Message::Ping(1)).await;
    expect_message(&mut peer, "pong", |message| *message == Message::Pong(1)).await;
    assert!(node.node.pool_transaction(&child.compute_txid()).is_none());
    assert!(
        node.p2p.banned().is_empty(),
        "a missing parent is not misbehaviour"
    );
    // The parent arrives: both are pooled.
    send(&mut peer, Message::Transaction(Box::new(parent.clone()))).await;
    wait_until(
        "the held child joins its parent in the pool",
        LIMIT,
        || async {
            node.node.pool_transaction(&parent.compute_txid()).is_some()
                && node.node.pool_transaction(&child.compute_txid()).is_some()
        },
    )
    .await;
    node.stop().await;
}

/// A payment that arrives after the block that confirmed it (asked for before the block
/// came, or sent by a peer a block behind) lacks the coins it spent there, like an orphan.
/// It was held as one, for good: its lacking coin never comes back, and held payments
/// push out real orphans when the hold is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_a_block_already_confirmed_is_not_held_as_an_orphan() {
    let mut chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let (parent, _) = parent_and_child(&chain);
    connect_next_block(&node, &mut chain, vec![parent.clone()]).await;

    let mut peer = raw_peer(&node.url(), 46_011).await.expect("connects");
    send(&mut peer, Message::Transaction(Box::new(parent.clone()))).await;
    send(&mut peer, Message::Ping(3)).await;
    expect_message(&mut peer, "pong", |message| *message == Message::Pong(3)).await;
    assert_eq!(
        node.p2p.held_orphan_transactions(),
        0,
        "confirmed: not held"
    );

    // A real orphan still is: its parent (spending another coin) may yet come.
    let unsent_parent = chain.spend(
        &[chain.mature_coin(1).0],
        vec![out(40 * 100_000_000, 1)],
        &[chain.miner],
        &HashMap::new(),
    );
    let parent_coins = TestChain::coins_of(&unsent_parent, chain.height().next());
    let orphan = chain.spend(
        &[*parent_coins.keys().next().expect("one output")],
        vec![out(39 * 100_000_000, 4)],
        &[chain.miner],
        &parent_coins,
    );
    send(&mut peer, Message::Transaction(Box::new(orphan))).await;
    send(&mut peer, Message::Ping(4)).await;
    expect_message(&mut peer, "pong", |message| *message == Message::Pong(4)).await;
    assert_eq!(node.p2p.held_orphan_transactions(), 1);
    assert!(node.p2p.banned().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_parent_comes_in_a_block_is_pooled_when_the_block_connects() {
    let mut chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let (parent, child) = parent_and_child(&chain);
    let mut peer = raw_peer(&node.url(), 46_011).await.expect("connects");
    send(&mut peer, Message::Transaction(Box::new(child.clone()))).await;
    send(&mut peer, Message::Ping(1)).await;
    expect_message(&mut peer, "pong", |message| *message == Message::Pong(1)).await;
    assert!(
        node.node.pool_transaction(&child.compute_txid()).is_none(),
        "held"
    );
    // A block unrelated to it moves the tip: still held (what it lacks has not appeared).
    connect_next_block_paying(&node, &mut chain, Vec::new(), Amount::ZERO).await;
    assert!(
        node.node.pool_transaction(&child.compute_txid()).is_none(),
        "still held"
    );
    // The parent never enters this node's pool: a block brings it.
    connect_next_block(&node, &mut chain, vec![parent.clone()]).await;
    wait_until(
        "the held child is pooled once the block with its parent connects",
        LIMIT,
        || async { node.node.pool_transaction(&child.compute_txid()).is_some() },
    )
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_answered_with_notfound_is_asked_for_again_when_announced_again() {
    let chain = TestChain::regtest_with_mature_coins(1);
    let node = node_with(&chain).await;
    let payment: Transaction = chain.spend(
        &[chain.mature_coin(0).0],
        vec![out(49 * 100_000_000, 3)],
        &[chain.miner],
        &HashMap::new(),
    );
    let txid = payment.compute_txid();
    let mut peer = raw_peer(&node.url(), 46_002).await.expect("connects");
    send(&mut peer, Message::Inventory(vec![transaction_item(txid)])).await;
    expect_message(&mut peer, "getdata", |message| {
        names(message, get_data, txid)
    })
    .await;
    // We no longer have it (a block took it, say).
    send(&mut peer, Message::NotFound(vec![transaction_item(txid)])).await;
    // It is back (a reorganisation returned it to our pool): announced again, asked again.
    send(&mut peer, Message::Inventory(vec![transaction_item(txid)])).await;
    expect_message(&mut peer, "a second getdata", |message| {
        names(message, get_data, txid)
    })
    .await;
    send(&mut peer, Message::Transaction(Box::new(payment))).await;
    wait_until("the payment is pooled", LIMIT, || async {
        node.node.pool_transaction(&txid).is_some()
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_back_from_a_reorganisation_is_announced_again_to_a_peer_that_missed_it() {
    let mut chain = TestChain::regtest_with_mature_coins(1);
    let node = node_with(&chain).await;
    let payment = chain.spend(
        &[chain.mature_coin(0).0],
        vec![out(49 * 100_000_000, 3)],
        &[chain.miner],
        &HashMap::new(),
    );
    let txid = payment.compute_txid();
    submit(&node, &payment).await;
    // The peer hears of it on connecting (the pool's contents) but has not asked yet.
    let mut peer = raw_peer(&node.url(), 46_003).await.expect("connects");
    expect_message(&mut peer, "the pool's inventory", |message| {
        names(message, inventory, txid)
    })
    .await;
    // A block takes it; the peer's request comes too late.
    let fork = chain.clone();
    connect_next_block(&node, &mut chain, vec![payment.clone()]).await;
    assert!(node.node.pool_transaction(&txid).is_none());
    send(&mut peer, Message::GetData(vec![transaction_item(txid)])).await;
    expect_message(&mut peer, "notfound", |message| {
        matches!(message, Message::NotFound(items) if items.contains(&transaction_item(txid)))
    })
    .await;
    // A heavier branch without it: the payment returns to the pool and is announced again.
    let mut branch = fork;
    branch.mine_empty(2);
    let submitter = Arc::clone(&node.node);
    let blocks = branch.blocks[branch.blocks.len() - 2..].to_vec();
    tokio::task::spawn_blocking(move || {
        for block in blocks {
            submitter.submit_block(block).expect("valid block");
        }
    })
    .await
    .expect("task");
    assert!(
        node.node.pool_transaction(&txid).is_some(),
        "back in the pool"
    );
    expect_message(&mut peer, "the payment announced again", |message| {
        names(message, inventory, txid)
    })
    .await;
    node.stop().await;
}

/// Found by `powchain bench` (three nodes, 2,000 payments): announcements went through a
/// per-peer command queue of 512 that dropped what did not fit while the session was busy
/// writing to a slower peer, so most of a burst never reached the other pools. Now each
/// peer has an announcement set the session drains into large `inv` messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_transactions_reaches_a_peer_s_pool_whole() {
    const FAN_OUTS: usize = 2;
    const PER_FAN_OUT: usize = 750;
    let chain = TestChain::regtest_with_mature_coins(FAN_OUTS);
    let a = node_with(&chain).await;
    // Split mature coinbases into many coins of the miner's, confirmed in a block of A's.
    let miner_address = powchain_consensus::testkit::test_address(1);
    let mut coins = HashMap::new();
    for index in 0..FAN_OUTS {
        let (outpoint, coin) = chain.mature_coin(index as u64);
        let each = (coin.output.value.to_units() - 1_000_000) / PER_FAN_OUT as u64;
        let outputs = (0..PER_FAN_OUT)
            .map(|_| TxOut {
                value: Amount::from_units(each).expect("in range"),
                address: miner_address,
            })
            .collect();
        let fan_out = chain.spend(&[outpoint], outputs, &[chain.miner], &HashMap::new());
        coins.extend(TestChain::coins_of(&fan_out, BlockHeight(0)));
        let node = Arc::clone(&a.node);
        tokio::task::spawn_blocking(move || node.submit_transaction(fan_out))
            .await
            .expect("task")
            .expect("the fan-out is pooled");
    }
    a.mine().await;
    assert_eq!(a.node.pool_size().0, 0, "the fan-outs are confirmed");

    let b = TestNode::start(vec![a.url()]).await;
    wait_until("b has a's chain", LIMIT, || async {
        b.height() == a.height()
    })
    .await;
    let payments: Vec<Transaction> = coins
        .iter()
        .map(|(outpoint, coin)| {
            let output = out(coin.output.value.to_units() - 10_000, 2);
            chain.spend(&[*outpoint], vec![output], &[chain.miner], &coins)
        })
        .collect();
    let count = payments.len();
    let invs_before = inventories_sent(&a);
    let started = std::time::Instant::now();
    let node = Arc::clone(&a.node);
    tokio::task::spawn_blocking(move || {
        for payment in payments {
            node.submit_transaction(payment)
                .expect("a payment is pooled");
        }
    })
    .await
    .expect("task");
    assert_eq!(a.node.pool_size().0, count);
    wait_until(
        "every payment of the burst in b's pool",
        Duration::from_secs(60),
        || async { b.node.pool_size().0 == count },
    )
    .await;
    // Announced in a few `inv`s, at most one each 20 ms: one per admission would make a
    // busy relay look like a flood to its peer (it did, at 20,000 payments in the bench).
    let invs = inventories_sent(&a) - invs_before;
    let bound = started.elapsed().as_millis() as u64 / 20 + 2;
    assert!(
        invs <= bound,
        "{invs} inv messages for {count} payments in {:?} (at most {bound})",
        started.elapsed()
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_sent_back_to_back_are_admitted_in_order_and_an_invalid_one_bans_the_sender() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let parent = chain.spend(
        &[chain.mature_coin(0).0],
        vec![out(40 * 100_000_000, 1)],
        &[chain.miner],
        &HashMap::new(),
    );
    let parent_coins = TestChain::coins_of(&parent, BlockHeight(99));
    let child = chain.spend(
        &[*parent_coins.keys().next().expect("one output")],
        vec![out(39 * 100_000_000, 2)],
        &[chain.miner],
        &parent_coins,
    );
    let forged = forged_spend(&chain, 1);

    let mut peer = raw_peer(&node.url(), 46_004).await.expect("connects");
    // One burst: the session reads them as one batch (a parent before its child, then the
    // forgery), and each is judged as if it had come alone.
    for transaction in [&parent, &child, &forged] {
        peer.feed(Frame::binary(
            Message::Transaction(Box::new(transaction.clone())).to_bytes(),
        ))
        .await
        .expect("queued");
    }
    peer.flush().await.expect("sent");
    wait_until("the forger is banned", LIMIT, || async {
        !node.p2p.banned().is_empty()
    })
    .await;
    let banned = node.p2p.banned();
    assert!(banned[0].1.contains("bad-signature"), "{banned:?}");
    assert!(
        node.node.pool_transaction(&parent.compute_txid()).is_some()
            && node.node.pool_transaction(&child.compute_txid()).is_some(),
        "what came before the forgery is pooled, the child after its parent"
    );
    assert!(node.node.pool_transaction(&forged.compute_txid()).is_none());
    node.stop().await;
}

/// A payment spending a coinbase that matures at its sender's tip but not yet here (the
/// sender is a block ahead) is not the sender's fault; it stayed seen, so it was never
/// fetched again. Now it waits in the hold and enters the pool with the block that makes
/// its coin mature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_a_block_early_is_pooled_with_the_block_that_makes_its_coin_mature() {
    // Devnet: a coinbase matures 10 blocks after its own.
    let mut chain = TestChain::new(Network::Devnet);
    let maturity = chain.params.coinbase_maturity;
    chain.mine_empty(usize::try_from(maturity).expect("small") - 1);
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node = TestNode::start_on(
        Network::Devnet,
        temp.path().to_path_buf(),
        common::config(vec![], 0),
        Arc::new(powchain_node::SystemClock),
        powchain_p2p::Environment::default(),
    )
    .await;
    node.keep(temp);
    node.submit_chain(&chain).await;
    // The first block's coinbase, spendable in the block after the next one here.
    let early = chain.spend(
        &[chain.coinbase_outpoint(1)],
        vec![out(40 * 100_000_000, 1)],
        &[chain.miner],
        &HashMap::new(),
    );
    let txid = early.compute_txid();

    let mut peer = raw_peer_on(Network::Devnet, &node.url(), 46_090)
        .await
        .expect("connects");
    send(&mut peer, Message::Transaction(Box::new(early))).await;
    wait_until("the payment is held", LIMIT, || async {
        node.p2p.held_orphan_transactions() == 1
    })
    .await;
    assert!(node.node.pool_transaction(&txid).is_none(), "not yet");
    assert!(node.p2p.banned().is_empty(), "not the sender's fault");

    let next = chain.build(vec![], Amount::ZERO);
    chain.push(next.clone()).expect("valid");
    let core = Arc::clone(&node.node);
    tokio::task::spawn_blocking(move || core.submit_block(next))
        .await
        .expect("task")
        .expect("a valid block");
    wait_until("the payment is pooled", LIMIT, || async {
        node.node.pool_transaction(&txid).is_some()
    })
    .await;
    assert_eq!(node.p2p.held_orphan_transactions(), 0);
    node.stop().await;
}

/// A forgery sent first in a burst ends the batch there, and its sender is banned; the
/// payments after it were never judged. They were marked seen and their requests done, so
/// honest announcements of them were not fetched: a stranger could bury real payments
/// behind a forgery. Now they are fetched from the next announcer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_sent_after_a_forgery_in_one_burst_are_fetched_from_honest_peers() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let payment = chain.spend(
        &[chain.mature_coin(0).0],
        vec![out(40 * 100_000_000, 1)],
        &[chain.miner],
        &HashMap::new(),
    );
    let txid = payment.compute_txid();
    let forged = forged_spend(&chain, 1);

    let mut stranger = raw_peer(&node.url(), 46_095).await.expect("connects");
    for transaction in [&forged, &payment] {
        stranger
            .feed(Frame::binary(
                Message::Transaction(Box::new(transaction.clone())).to_bytes(),
            ))
            .await
            .expect("queued");
    }
    stranger.flush().await.expect("sent");
    wait_until("the forger is banned", LIMIT, || async {
        !node.p2p.banned().is_empty()
    })
    .await;
    let mut honest = raw_peer(&node.url(), 46_096).await.expect("connects");
    send(
        &mut honest,
        Message::Inventory(vec![transaction_item(txid)]),
    )
    .await;
    expect_message(&mut honest, "getdata for the payment", |message| {
        names(message, get_data, txid)
    })
    .await;
    send(&mut honest, Message::Transaction(Box::new(payment))).await;
    wait_until("the payment is pooled", LIMIT, || async {
        node.node.pool_transaction(&txid).is_some()
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_asked_of_the_next_announcer_when_the_first_leaves_lacks_it_or_is_silent()
{
    let chain = TestChain::regtest_with_mature_coins(3);
    let node = node_configured(&chain, |config| {
        config.transaction_timeout = Duration::from_millis(300);
    })
    .await;
    let payments = payments(&chain, 3, 10);
    // The peer that announces each payment second, and delivers it once asked.
    let mut second = raw_peer(&node.url(), 46_020).await.expect("connects");
    for (case, payment) in payments.into_iter().enumerate() {
        let txid = payment.compute_txid();
        let port = 46_021 + u16::try_from(case).expect("small");
        let mut first = raw_peer(&node.url(), port).await.expect("connects");
        send(&mut first, Message::Inventory(vec![transaction_item(txid)])).await;
        expect_message(&mut first, "getdata from the first announcer", |message| {
            names(message, get_data, txid)
        })
        .await;
        send(
            &mut second,
            Message::Inventory(vec![transaction_item(txid)]),
        )
        .await;
        match case {
            0 => {
                // It leaves without answering.
                first.close(None).await.expect("close");
            }
            1 => send(&mut first, Message::NotFound(vec![transaction_item(txid)])).await,
            // It stays connected and silent past the node's deadline.
            _ => {}
        }
        expect_message(&mut second, "getdata from the next announcer", |message| {
            names(message, get_data, txid)
        })
        .await;
        send(&mut second, Message::Transaction(Box::new(payment))).await;
        wait_until("the payment is pooled", LIMIT, || async {
            node.node.pool_transaction(&txid).is_some()
        })
        .await;
    }
    assert!(node.p2p.banned().is_empty(), "nobody broke a rule");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_past_a_peer_s_bound_are_asked_for_once_its_load_falls() {
    let node = TestNode::start(vec![]).await;
    let mut peer = raw_peer(&node.url(), 46_030).await.expect("connects");
    // Ids nobody has: the node asks for each once, and forgets it on notfound.
    let announced: Vec<InventoryItem> = (0..MAX_ANNOUNCED_PER_PEER + 10)
        .map(|n| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            bytes[31] = 0xab;
            transaction_item(Txid(bytes))
        })
        .collect();
    for chunk in announced.chunks(MAX_INVENTORY) {
        send(&mut peer, Message::Inventory(chunk.to_vec())).await;
    }
    let (within, past) = announced.split_at(MAX_ANNOUNCED_PER_PEER);
    // The first MAX_ANNOUNCED_PER_PEER are asked for at once; each getdata is answered
    // notfound, which lowers the peer's load, so the rest must be asked for after them.
    let mut asked = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while asked.len() < announced.len() {
        match tokio::time::timeout_at(deadline, peer.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => {
                if let Ok(Message::GetData(items)) = Message::from_bytes(&bytes) {
                    asked.extend(items.iter().copied());
                    send(&mut peer, Message::NotFound(items)).await;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!(
                "{} of {} announcements asked for, then: {other:?}",
                asked.len(),
                announced.len()
            ),
        }
    }
    assert_eq!(
        &asked[..within.len()],
        within,
        "the bound's worth first, in order"
    );
    assert_eq!(
        &asked[within.len()..],
        past,
        "then the rest, in order, none twice"
    );
    assert!(node.p2p.banned().is_empty(), "nobody broke a rule");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_getdata_is_answered_in_its_order_once_an_item_and_what_is_missing_with_one_notfound() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let mut payments = Vec::new();
    for (index, seed) in [(0, 4), (1, 5)] {
        let payment = chain.spend(
            &[chain.mature_coin(index).0],
            vec![out(49 * 100_000_000, seed)],
            &[chain.miner],
            &HashMap::new(),
        );
        submit(&node, &payment).await;
        payments.push(payment.compute_txid());
    }
    let tip = chain.blocks.last().expect("a chain").compute_hash();
    let absent = Txid([7; 32]);
    let mut peer = raw_peer(&node.url(), 46_005).await.expect("connects");
    send(
        &mut peer,
        Message::GetData(vec![
            transaction_item(payments[0]),
            transaction_item(absent),
            InventoryItem::Block(tip),
            transaction_item(payments[1]),
            // Named again: answered once.
            transaction_item(payments[0]),
            InventoryItem::Block(tip),
            transaction_item(absent),
        ]),
    )
    .await;
    send(&mut peer, Message::Ping(9)).await;
    // The answers, in order, among whatever else the node sends (its announcements).
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, peer.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::from_bytes(&bytes) {
                Ok(Message::Transaction(transaction)) => {
                    answers.push(format!("tx {}", transaction.compute_txid()));
                }
                Ok(Message::Block(block)) => {
                    answers.push(format!("block {}", block.compute_hash()));
                }
                Ok(Message::NotFound(items)) => answers.push(format!("notfound {items:?}")),
                // The ping went after the getdata: every answer came before its pong.
                Ok(Message::Pong(9)) => break,
                _ => {}
            },
            Ok(Some(Ok(_))) => {}
            other => panic!("answers so far {answers:?}, then {other:?}"),
        }
    }
    assert_eq!(
        answers,
        vec![
            format!("tx {}", payments[0]),
            format!("block {tip}"),
            format!("tx {}", payments[1]),
            format!("notfound {:?}", vec![transaction_item(absent)]),
        ]
    );
    node.stop().await;
}

/// A block is never held back behind transaction announcements: when the tip moves while
/// transactions wait out the announcement interval, the peer hears of the block first, and
/// the waiting transactions go out with it instead of at the interval's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tip_is_announced_before_the_transactions_waiting_for_their_interval() {
    let mut chain = TestChain::regtest_with_mature_coins(2);
    // Far longer than the test: a transaction announcement that waited it out would fail.
    let node = node_configured(&chain, |config| {
        config.transaction_announcement_interval = Duration::from_secs(3600);
    })
    .await;
    let payments = payments(&chain, 2, 20);
    let (first, second) = (payments[0].compute_txid(), payments[1].compute_txid());
    let mut peer = raw_peer(&node.url(), 46_030).await.expect("connects");
    // The session's start has offered the pool (empty) once the ping is answered: a
    // payment that came before would go out in that offer, outside the interval, and the
    // second would not wait (as on a loaded machine, before this wait).
    send(&mut peer, Message::Ping(1)).await;
    expect_message(&mut peer, "the pong", |message| {
        matches!(message, Message::Pong(1))
    })
    .await;
    // The first announcement leaves at once and starts the interval; the second waits.
    submit(&node, &payments[0]).await;
    expect_message(&mut peer, "the first payment's inv", |message| {
        names(message, inventory, first)
    })
    .await;
    submit(&node, &payments[1]).await;
    let hash = connect_next_block(&node, &mut chain, vec![payments[0].clone()]).await;
    let mut block_announced = false;
    read_until(
        &mut peer,
        "the waiting payment's inv with the block",
        |message| {
            block_announced |= announces_block(message, hash);
            names(message, inventory, second)
        },
    )
    .await;
    assert!(
        block_announced,
        "the waiting payment was announced before the block"
    );
    node.stop().await;
}

/// A node announces its tips only: a block that ties its tip stays with it. `relay_block`
/// sends such a block anyway, as a miner racing a tie does (the simulation's selfish
/// miner).
#[tokio::test]
async fn a_block_that_ties_the_tip_goes_out_only_when_relayed_on_purpose() {
    let chain = TestChain::regtest_with_mature_coins(2);
    let node = node_with(&chain).await;
    let payments = payments(&chain, 2, 30);
    let tip = chain.build(vec![], Amount::ZERO);
    let tie = chain.build(
        vec![payments[0].clone()],
        Amount::from_units(100_000_000).expect("fee"),
    );
    let (tip_hash, tie_hash) = (tip.compute_hash(), tie.compute_hash());
    let mut peer = raw_peer(&node.url(), 46_040).await.expect("connects");
    for block in [tip, tie] {
        let submitter = Arc::clone(&node.node);
        tokio::task::spawn_blocking(move || submitter.submit_block(block))
            .await
            .expect("task")
            .expect("a valid block");
    }
    assert_eq!(
        node.tip(),
        tip_hash,
        "the first of two equal blocks stays the tip"
    );
    expect_message(&mut peer, "the tip's announcement", |message| {
        announces_block(message, tip_hash)
    })
    .await;
    // A payment accepted after both blocks is announced after anything about them.
    submit(&node, &payments[1]).await;
    let later = payments[1].compute_txid();
    read_until(&mut peer, "the later payment's inv", |message| {
        assert!(
            !announces_block(message, tie_hash),
            "the tie was announced unasked"
        );
        names(message, inventory, later)
    })
    .await;
    node.p2p.relay_block(tie_hash).await;
    expect_message(&mut peer, "the tie's announcement", |message| {
        announces_block(message, tie_hash)
    })
    .await;
    assert_eq!(node.tip(), tip_hash, "relaying it does not make it the tip");
    node.stop().await;
}

/// A new peer is offered the pool oldest first, at most `max_pool_offered` of it: a
/// stranger who connects again and again costs the node that many ids each time, read a
/// page at a time, not the whole pool.
#[tokio::test]
async fn a_new_peer_is_offered_the_oldest_of_the_pool_up_to_the_bound() {
    let chain = TestChain::regtest_with_mature_coins(5);
    let node = node_configured(&chain, |config| {
        config.max_pool_offered = 3;
    })
    .await;
    let payments = payments(&chain, 5, 40);
    for payment in &payments {
        submit(&node, payment).await;
    }
    let mut peer = raw_peer(&node.url(), 46_040).await.expect("connects");
    // The offer is the session's first `inv` of transactions (sent at its start; the relay
    // may announce a payment it was slow to take after it, outside the offer).
    let mut offered: Vec<Txid> = Vec::new();
    read_until(&mut peer, "the offer", |message| {
        if let Some(items) = inventory(message) {
            offered = items
                .iter()
                .filter_map(|item| match item {
                    InventoryItem::Transaction(txid) => Some(*txid),
                    _ => None,
                })
                .collect();
        }
        !offered.is_empty()
    })
    .await;
    let oldest: Vec<Txid> = payments[..3]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    assert_eq!(offered, oldest);
    node.stop().await;
}
