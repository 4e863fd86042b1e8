//! A flooded node keeps serving others: while hostile peers send junk as fast as they can
//! (banned, they come back under new listening ports at once), an honest peer still gets
//! its pings answered and the node's new blocks within a bounded delay, and the node's
//! memory stays bounded.
//!
//! ```text
//!   4 attackers ──junk, as fast as the socket takes it──▶ node ──blocks──▶ honest node
//!       (banned ─▶ reconnect as a new port; one sends only well-formed messages, so the
//!        rate limit is what stops it)                       ▲
//!   honest raw peer ──ping every 20 ms, measure the pong────┘
//! ```
//!
//! Figures (round trips, block delays, resident memory, attacker connections and
//! messages) are printed; docs/SECURITY.md records them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestNode, raw_peer, resident_bytes, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_consensus::encode::write_varint;
use powchain_consensus::{BlockHash, Network, Txid};
use powchain_p2p::{InventoryItem, Message, PROTOCOL_VERSION};
use tokio_tungstenite::tungstenite::Message as Frame;

/// How long the attack lasts.
const ATTACK: Duration = Duration::from_secs(8);
/// Concurrent attackers.
const ATTACKERS: u16 = 4;
/// The bounds the honest peer must see.
const MAX_PING_ROUND_TRIP: Duration = Duration::from_secs(2);
const MAX_BLOCK_DELAY: Duration = Duration::from_secs(2);
/// How much the process may grow while under attack.
const MAX_MEMORY_GROWTH_BYTES: u64 = 256 << 20;

/// The junk an attacker sends, by message number: announcement floods of ids nobody has,
/// requests for headers and data, garbage, oversized claims, text frames.
fn junk(counter: u64) -> Frame {
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&counter.to_le_bytes());
    match counter % 64 {
        // Mostly valid but useless messages: they cost the node work and are only stopped
        // by the rate limit.
        0..=39 => Frame::binary(
            Message::Inventory(
                (0..50)
                    .map(|item| {
                        let mut hash = hash;
                        hash[8] = item;
                        InventoryItem::Transaction(Txid(hash))
                    })
                    .collect(),
            )
            .to_bytes(),
        ),
        40..=49 => Frame::binary(
            Message::GetHeaders {
                locator: vec![Network::Regtest.params().genesis_hash()],
                stop: BlockHash::ZERO,
            }
            .to_bytes(),
        ),
        50..=57 => {
            Frame::binary(Message::GetData(vec![InventoryItem::Block(BlockHash(hash))]).to_bytes())
        }
        58 => Frame::binary(Message::Ping(counter).to_bytes()),
        // Then something that gets it banned.
        59 => Frame::binary(vec![PROTOCOL_VERSION, 8, 0xff, 0xff, 0xff]),
        60 => {
            let mut claim = vec![PROTOCOL_VERSION, 4];
            write_varint(&mut claim, 1 << 40);
            Frame::binary(claim)
        }
        61 => Frame::text("junk"),
        62 => Frame::binary(vec![PROTOCOL_VERSION, 250]),
        _ => Frame::binary(hash.to_vec()),
    }
}

struct AttackStats {
    connections: AtomicU64,
    messages: AtomicU64,
}

/// One attacker: connect under a new listening port, send junk until the node hangs up,
/// again. With `only_valid`, it sends only well-formed, useless messages (announcements,
/// requests), so only the rate limit ends its connections.
async fn attack(
    url: String,
    first_port: u16,
    only_valid: bool,
    stats: Arc<AttackStats>,
    stop: Arc<AtomicBool>,
) {
    let mut port = first_port;
    let mut counter = 0u64;
    while !stop.load(Ordering::SeqCst) {
        port = port.wrapping_add(ATTACKERS);
        let Some(socket) = raw_peer(&url, port).await else {
            tokio::task::yield_now().await;
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (mut sink, mut stream) = socket.split();
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        loop {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let frame = if only_valid {
                junk(counter % 40)
            } else {
                junk(counter)
            };
            counter += 1;
            if sink.send(frame).await.is_err() {
                break;
            }
            stats.messages.fetch_add(1, Ordering::Relaxed);
        }
        drain.abort();
    }
}

fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * fraction) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_node_keeps_serving_pings_and_blocks_with_bounded_memory() {
    let node = TestNode::start(vec![]).await;
    node.mine_blocks(2).await;
    let honest = TestNode::start(vec![node.url()]).await;
    wait_until("the honest node syncs", Duration::from_secs(20), || async {
        honest.tip() == node.tip()
    })
    .await;
    let memory_before = resident_bytes();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(AttackStats {
        connections: AtomicU64::new(0),
        messages: AtomicU64::new(0),
    });
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|index| {
            tokio::spawn(attack(
                node.url(),
                50_000 + index,
                index == 0,
                Arc::clone(&stats),
                Arc::clone(&stop),
            ))
        })
        .collect();

    // The honest raw peer: a ping every 20 ms, each pong timed.
    let pinger = {
        let url = node.url();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut socket = raw_peer(&url, 49_999)
                .await
                .expect("the honest peer connects");
            let mut round_trips = Vec::new();
            let mut nonce = 0u64;
            while !stop.load(Ordering::SeqCst) {
                nonce += 1;
                let sent = Instant::now();
                socket
                    .send(Frame::binary(Message::Ping(nonce).to_bytes()))
                    .await
                    .expect("the honest peer stays connected");
                loop {
                    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                        .await
                        .expect("a pong within 10 s")
                        .expect("the connection stays open")
                        .expect("a frame");
                    if let Frame::Binary(bytes) = frame
                        && Message::from_bytes(&bytes) == Ok(Message::Pong(nonce))
                    {
                        break;
                    }
                }
                round_trips.push(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            round_trips
        })
    };

    // Meanwhile the node mines; each block must reach the honest node promptly.
    let mut block_delays = Vec::new();
    let mut peak_memory = memory_before;
    let attack_started = Instant::now();
    while attack_started.elapsed() < ATTACK {
        let block = node.mine().await;
        let mined = Instant::now();
        let hash = block.compute_hash();
        loop {
            peak_memory = peak_memory.max(resident_bytes());
            if honest.tip() == hash {
                break;
            }
            assert!(
                mined.elapsed() < Duration::from_secs(20),
                "block {hash} never reached the honest node"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        block_delays.push(mined.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        attacker.await.expect("attacker task");
    }
    let mut round_trips = pinger.await.expect("pinger task");
    peak_memory = peak_memory.max(resident_bytes());

    let connections = stats.connections.load(Ordering::Relaxed);
    let messages = stats.messages.load(Ordering::Relaxed);
    let bans = node.p2p.banned();
    let flood_bans = bans.iter().filter(|(_, rule)| rule == "flood").count();
    let ping_count = round_trips.len();
    let (ping_median, ping_max) = (
        percentile(&mut round_trips, 0.5),
        percentile(&mut round_trips, 1.0),
    );
    let block_count = block_delays.len();
    let (block_median, block_max) = (
        percentile(&mut block_delays, 0.5),
        percentile(&mut block_delays, 1.0),
    );
    eprintln!(
        "flood: {ATTACKERS} attackers, {connections} connections, {messages} messages in \
         {ATTACK:?}; {} bans ({flood_bans} for flooding); honest pings: {ping_count}, median \
         {ping_median:?}, max {ping_max:?}; blocks: {block_count}, median delay \
         {block_median:?}, max {block_max:?}; resident memory {} MiB before, {} MiB peak",
        bans.len(),
        memory_before >> 20,
        peak_memory >> 20
    );
    assert!(
        connections >= 20,
        "the attackers hardly got in: {connections}"
    );
    assert!(bans.len() >= 20, "attackers were not banned: {bans:?}");
    assert!(flood_bans >= 1, "no attacker was banned for flooding");
    assert!(
        bans.iter()
            .all(|(who, _)| who != &format!("localhost port {}", honest.p2p.listen_port())),
        "the honest node was banned"
    );
    assert!(ping_count >= 50, "only {ping_count} pings answered");
    assert!(
        ping_max < MAX_PING_ROUND_TRIP,
        "a ping took {ping_max:?} under attack"
    );
    assert!(block_count >= 5, "only {block_count} blocks mined");
    assert!(
        block_max < MAX_BLOCK_DELAY,
        "a block took {block_max:?} to reach the honest node under attack"
    );
    assert!(
        peak_memory.saturating_sub(memory_before) < MAX_MEMORY_GROWTH_BYTES,
        "memory grew from {} MiB to {} MiB under attack",
        memory_before >> 20,
        peak_memory >> 20
    );
    assert!(
        node.p2p.peers().iter().any(|peer| peer.url == honest.url()),
        "the honest node was disconnected"
    );
    for running in [node, honest] {
        running.stop().await;
    }
}
