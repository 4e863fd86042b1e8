//! Crash loop over the real binary: a regtest node mines continuously (`--mine`), takes
//! payments (`POST /transact`), mines on request (`POST /mine`) and syncs blocks from a
//! second node, while this test SIGKILLs it at random moments, at least 50 times.
//!
//! ```text
//!   driver thread ──POST /mine, /transact──▶ crashing node ◀──blocks (P2P)── feeder node
//!        │  records every block hash and txid the node answered       ▲
//!        └──POST /mine (also while the crashing node is down) ────────┘
//!   main thread: start ─ random delay ─ SIGKILL ─ open chain.redb with powchain-chain:
//!        check_consistency (UTXO set = rebuild), tip work never goes back,
//!        every acknowledged block stored (on the main chain, or outweighed by it)
//!   ─ restart ─ every acknowledged txid pooled or confirmed (or its parent legitimately
//!        reorganised away) ─ repeat
//! ```
//!
//! `POWCHAIN_CRASH_SEED` replays a run (the seed is printed).

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use powchain_chain::{ChainOptions, ChainState};
use powchain_consensus::{BlockHash, Network, Txid, Work};
use serde_json::{Value, json};
use support::TestNode;

/// SIGKILLs while the node mines, takes payments and relays.
const KILLS_WHILE_MINING: usize = 35;
/// SIGKILLs while a second node syncs the chain from a peer.
const KILLS_WHILE_SYNCING: usize = 15;
/// The whole loop must finish within this (it takes about a minute here).
const TIME_LIMIT: Duration = Duration::from_secs(240);
/// How long one request of the driver may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One HTTP request that may fail (the node may die under it): the status and JSON body
/// of a complete answer, or `None`.
fn try_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &Value,
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    let rest = &raw[split + 4..];
    // A body cut short means the node died while answering: not an answer.
    let json = serde_json::from_slice(rest.get(..length)?).ok()?;
    Some((status, json))
}

/// What the crashing node answered, so it must keep it.
#[derive(Default, Clone)]
struct Acknowledged {
    /// Blocks `POST /mine` returned.
    blocks: Vec<BlockHash>,
    /// Payments `POST /transact` returned, with the txids they spend.
    payments: Vec<(Txid, Vec<Txid>)>,
}

fn parse_hash<T: std::str::FromStr>(value: &Value) -> T
where
    T::Err: std::fmt::Debug,
{
    value
        .as_str()
        .expect("a hash")
        .parse()
        .expect("a valid hash")
}

/// The driver: mines and pays on the crashing node and mines on the feeder, forever,
/// recording what the crashing node acknowledged.
fn drive(
    crashing: Arc<Mutex<Option<SocketAddr>>>,
    feeder: SocketAddr,
    recipient: String,
    acknowledged: Arc<Mutex<Acknowledged>>,
    stop: Arc<AtomicBool>,
    mut seed: u64,
) {
    while !stop.load(Ordering::SeqCst) {
        let choice = splitmix(&mut seed) % 10;
        let address = *crashing.lock().expect("lock");
        match (choice, address) {
            // The feeder mines: the crashing node syncs it (or does on its next start).
            (0..=1, _) | (_, None) => {
                let _ = try_request(feeder, "POST", "/mine", &json!({ "data": "feeder" }));
                if address.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            (2..=4, Some(address)) => {
                if let Some((200, block)) =
                    try_request(address, "POST", "/mine", &json!({ "data": "acknowledged" }))
                {
                    let mut acknowledged = acknowledged.lock().expect("lock");
                    acknowledged.blocks.push(parse_hash(&block["hash"]));
                }
            }
            (_, Some(address)) => {
                let amount = 1_000 + splitmix(&mut seed) % 100_000;
                let body = json!({ "recipient": recipient, "amount": amount });
                match try_request(address, "POST", "/transact", &body) {
                    Some((200, payment)) => {
                        let parents = payment["inputs"]
                            .as_array()
                            .expect("inputs")
                            .iter()
                            .map(|input| parse_hash(&input["txid"]))
                            .collect();
                        let mut acknowledged = acknowledged.lock().expect("lock");
                        acknowledged
                            .payments
                            .push((parse_hash(&payment["txid"]), parents));
                    }
                    // No coins yet (or all in the pool): not an acknowledgement.
                    Some((400, _)) | None => {}
                    Some((status, body)) => panic!("POST /transact answered {status}: {body}"),
                }
            }
        }
    }
}

/// What the store of a killed node holds.
struct Stored {
    work: Work,
    height: u64,
    /// Acknowledged payments confirmed on its main chain.
    confirmed: HashSet<Txid>,
}

/// Opens the killed node's chain store directly and checks it.
fn check_store(
    node: &TestNode,
    acknowledged: &Acknowledged,
    previous_work: Work,
    kill: usize,
) -> Stored {
    let chain = ChainState::open(
        &node.data_dir().join("chain.redb"),
        Network::Regtest,
        ChainOptions::default(),
    )
    .unwrap_or_else(|error| panic!("kill {kill}: the store does not reopen: {error}"));
    let report = chain
        .reader()
        .snapshot()
        .expect("snapshot")
        .check_consistency()
        .unwrap_or_else(|error| panic!("kill {kill}: inconsistent after SIGKILL: {error}"));
    let tip = chain.tip();
    assert_eq!(report.tip, tip.hash);
    assert!(
        tip.work >= previous_work,
        "kill {kill}: the committed chain lost work"
    );
    let snapshot = chain.reader().snapshot().expect("snapshot");
    for hash in &acknowledged.blocks {
        let record = chain
            .record(hash)
            .unwrap_or_else(|| panic!("kill {kill}: acknowledged block {hash} is lost"));
        assert!(
            snapshot.block(hash).expect("read").is_some(),
            "kill {kill}: acknowledged block {hash} lost its data"
        );
        assert!(
            !record.status.is_failed(),
            "kill {kill}: acknowledged block {hash} is marked invalid"
        );
        // Off the main chain only if a branch with at least as much work replaced it.
        assert!(
            chain.is_on_main_chain(hash) || record.chain_work <= tip.work,
            "kill {kill}: acknowledged block {hash} is neither on the main chain nor outweighed"
        );
    }
    let confirmed = acknowledged
        .payments
        .iter()
        .map(|(txid, _)| *txid)
        .filter(|txid| snapshot.tx_location(txid).expect("read").is_some())
        .collect();
    Stored {
        work: tip.work,
        height: tip.height.0,
        confirmed,
    }
}

/// Where a transaction is, by `GET /tx/{txid}`: "pool", "confirmed", or `None`.
fn locate(node: &TestNode, txid: &Txid) -> Option<String> {
    let (status, body) = node.get(&format!("/tx/{txid}"));
    match status {
        200 => Some(body["status"].as_str().expect("a status").to_owned()),
        404 => None,
        other => panic!("GET /tx/{txid} answered {other}: {body}"),
    }
}

/// Every acknowledged payment is pooled or confirmed, unless a transaction it spends is
/// gone for a legitimate reason: a coinbase or unacknowledged payment of a branch that was
/// reorganised away, or an acknowledged payment that is itself legitimately gone.
fn check_payments(
    node: &TestNode,
    acknowledged: &Acknowledged,
    confirmed: &HashSet<Txid>,
    kill: usize,
) -> (usize, usize) {
    let mut gone: HashSet<Txid> = HashSet::new();
    let acknowledged_ids: HashMap<Txid, &Vec<Txid>> = acknowledged
        .payments
        .iter()
        .map(|(txid, parents)| (*txid, parents))
        .collect();
    let mut kept = 0;
    // Oldest first: a payment's parents were acknowledged before it.
    for (txid, parents) in &acknowledged.payments {
        if confirmed.contains(txid) || locate(node, txid).is_some() {
            kept += 1;
            continue;
        }
        let orphaned = parents.iter().any(|parent| {
            if acknowledged_ids.contains_key(parent) {
                gone.contains(parent)
            } else {
                locate(node, parent).is_none()
            }
        });
        assert!(
            orphaned,
            "kill {kill}: acknowledged payment {txid} is lost (the outputs it spends exist)"
        );
        gone.insert(*txid);
    }
    (kept, gone.len())
}

#[test]
fn sigkill_at_random_moments_loses_nothing_the_node_acknowledged() {
    let started = Instant::now();
    let seed: u64 = std::env::var("POWCHAIN_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        });
    eprintln!("crash loop seed: POWCHAIN_CRASH_SEED={seed}");
    let mut random = seed;

    // ---- Phase 1: killed while it mines, takes payments and relays to the feeder. ----
    let feeder = TestNode::start("feeder");
    let feeder_peer = format!("ws://127.0.0.1:{}", feeder.p2p_port);
    let mut node = TestNode::start_with(
        "crashing",
        &["--mine", "--miner-threads", "1", "--peers", &feeder_peer],
    );
    // Payments go to a fresh address of the node's own wallet: its coins stay its own.
    let recipient = node.post_ok("/wallet/addresses", &Value::Null)["address"]
        .as_str()
        .expect("an address")
        .to_owned();

    let crashing = Arc::new(Mutex::new(Some(node.address)));
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (crashing, acknowledged, stop) = (
            Arc::clone(&crashing),
            Arc::clone(&acknowledged),
            Arc::clone(&stop),
        );
        let feeder = feeder.address;
        let recipient = recipient.clone();
        let driver_seed = splitmix(&mut random);
        std::thread::spawn(move || {
            drive(crashing, feeder, recipient, acknowledged, stop, driver_seed);
        })
    };

    let mut work = Work::ZERO;
    for kill in 1..=KILLS_WHILE_MINING {
        assert!(
            started.elapsed() < TIME_LIMIT,
            "only {} kills within {TIME_LIMIT:?}",
            kill - 1
        );
        // Alive for a random while: mining, paying, relaying, reorganising.
        let alive = Duration::from_millis(30 + splitmix(&mut random) % 600);
        std::thread::sleep(alive);
        *crashing.lock().expect("lock") = None;
        node.kill();
        let snapshot = acknowledged.lock().expect("lock").clone();
        let stored = check_store(&node, &snapshot, work, kill);
        work = stored.work;
        node.restart();
        let (kept, gone) = check_payments(&node, &snapshot, &stored.confirmed, kill);
        eprintln!(
            "kill {kill} (mining): after {alive:?}, height {}; {} blocks and {kept} payments \
             acknowledged and kept, {gone} payments gone with a reorganised parent",
            stored.height,
            snapshot.blocks.len()
        );
        *crashing.lock().expect("lock") = Some(node.address);
    }
    stop.store(true, Ordering::SeqCst);
    driver.join().expect("the driver thread");

    // A clean look: the node serves, and everything it acknowledged is still there.
    node.assert_serving();
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let (kept, gone) = check_payments(&node, &acknowledged, &HashSet::new(), KILLS_WHILE_MINING);
    for hash in &acknowledged.blocks {
        let (status, block) = node.get(&format!("/blocks/{hash}"));
        assert_eq!(status, 200, "acknowledged block {hash}: {block}");
    }
    assert!(
        acknowledged.blocks.len() >= 10 && kept >= 10,
        "the loop acknowledged too little to prove anything"
    );
    node.stop();

    // ---- Phase 2: a new node killed while it syncs the feeder's chain. ----
    let target_height = feeder.height();
    let mut syncing = TestNode::start_with("syncing", &["--peers", &feeder_peer]);
    let mut synced_work = Work::ZERO;
    let mut heights_at_kills = Vec::new();
    for kill in 1..=KILLS_WHILE_SYNCING {
        // Blocks from peers reach the disk within a second (`Node::submit_peer_block`): a
        // node killed sooner keeps none of what it downloaded since, so some kills here
        // lose a download and some keep it.
        let alive = Duration::from_millis(150 + splitmix(&mut random) % 1_200);
        std::thread::sleep(alive);
        syncing.kill();
        let stored = check_store(&syncing, &Acknowledged::default(), synced_work, kill);
        synced_work = stored.work;
        heights_at_kills.push(stored.height);
        syncing.restart();
    }
    // The feeder may still take the last blocks the mining node sent it: follow its tip.
    support::wait_until(
        Duration::from_secs(60),
        "the syncing node to reach the feeder's tip",
        || syncing.get_ok("/status")["tip"] == feeder.get_ok("/status")["tip"],
    );
    assert!(syncing.height() >= target_height);
    eprintln!(
        "killed while syncing {target_height} blocks from the feeder, at heights \
         {heights_at_kills:?}"
    );
    eprintln!(
        "crash loop: {} SIGKILLs survived in {:?}; {} blocks and {} payments acknowledged \
         ({kept} kept, {gone} gone with a reorganised parent)",
        KILLS_WHILE_MINING + KILLS_WHILE_SYNCING,
        started.elapsed(),
        acknowledged.blocks.len(),
        acknowledged.payments.len(),
    );
}

/// The bug the crash loop found: `GET /tx/{txid}` read the chain, then the pool, so a block
/// confirming the transaction in between made it answer 404 "neither in the pool nor in
/// the main chain" for a transaction that was in one of them all along.
#[test]
fn get_tx_never_loses_a_transaction_while_a_block_confirms_it() {
    let node = TestNode::start_with("lookup", &["--mine", "--miner-threads", "1"]);
    let recipient = node.post_ok("/wallet/addresses", &Value::Null)["address"]
        .as_str()
        .expect("an address")
        .to_owned();
    support::wait_until(Duration::from_secs(30), "spendable coins", || {
        node.get_ok("/balance")["spendable"].as_u64() > Some(0)
    });
    let mut lookups = 0;
    for _ in 0..100 {
        let payment = node.transact(&recipient, 10_000);
        let txid = payment["txid"].as_str().expect("a txid").to_owned();
        // The continuous miner confirms it within milliseconds: look it up meanwhile.
        for _ in 0..10 {
            let (status, body) = node.get(&format!("/tx/{txid}"));
            assert_eq!(status, 200, "GET /tx/{txid} lost the payment: {body}");
            lookups += 1;
        }
    }
    eprintln!("{lookups} lookups, none lost the transaction");
}
