//! Resource attacks against a running node (issue 13), each the way a hostile stranger
//! would run it, for 30 s (`POWCHAIN_ATTACK_SECONDS` changes it), against the real binary.
//! While each runs, the test checks what an honest user sees:
//!
//! - every 5 s a fresh honest peer connects from 127.0.0.1 and receives the announcement
//!   of a newly mined block within 2 s;
//! - `GET /status`, asked every 50 ms over a new connection, answers with p99 under 200 ms;
//! - the node's resident memory stays within 150 MB of its idle figure, and its open files
//!   within the file budget its launch computed (`powchain_launch::files`);
//!
//! and, after the attacker leaves, that the node's memory returns to within 20% of idle
//! (or 12 MB, given 20 s; see `AFTER_ALLOWANCE`).
//! "Idle" is measured after a 3 s warm-up run of the same attack and a pause: the node's
//! steady state with the attack's code paths run once, so what the allocator keeps from
//! any first use is not counted as the attack's, and what grows with the attack is. Strangers come from other loopback
//! addresses (`127.N.0.1`: Linux routes all of 127.0.0.0/8 here), so address groups work
//! as they would between machines. One attack runs at a time (they share two cores).

mod support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use powchain_consensus::testkit::solve;
use powchain_consensus::{BlockHash, Header, Network};
use powchain_launch::files::{FileBudget, HTTP_ACCEPT_FILES, RESERVED_FILES, raise_file_limit};
use powchain_p2p::{InventoryItem, Message, P2pConfig};
use support::{TestNode, regtest_hello, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

/// One attack at a time: they share the machine's two cores with the node.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HONEST_BLOCK_WITHIN: Duration = Duration::from_secs(2);
const STATUS_P99_UNDER: Duration = Duration::from_millis(200);
const RSS_GROWTH_LIMIT: u64 = 150 * 1024 * 1024;
const WARM_UP: Duration = Duration::from_secs(3);
/// What the allocator may keep of memory the node freed, read as soon as the attack ends
/// and then for up to 20 s: jemalloc's background thread returns pages free for 10 s
/// (`.cargo/config.toml`). Read at once, it kept 7.5 to 12.5 MB beyond idle after the
/// `getdata` attack before that thread was on, and glibc's arenas 4.5 to 8.5 MB after 512
/// HTTP connections, not growing with the attack's length: not state the node keeps,
/// which is what the check is for (issue 13 measured 470 MB kept after an attack).
const AFTER_ALLOWANCE: u64 = 12 * 1024 * 1024;

type Socket = WebSocketStream<TcpStream>;

fn attack_time() -> Duration {
    let seconds = std::env::var("POWCHAIN_ATTACK_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(seconds)
}

/// The node process's resident bytes and open files.
fn process_figures(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kilobytes| kilobytes * 1024);
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (rss, files)
}

/// The most files the node may hold: what its launch budgets (the soft limit is raised to
/// the hard one, as this process does too).
fn file_budget() -> u64 {
    let limit = raise_file_limit().unwrap_or(1_024);
    let budget = FileBudget::plan(limit, &P2pConfig::default(), 512);
    RESERVED_FILES + HTTP_ACCEPT_FILES + budget.p2p_files + budget.http_connections as u64
}

fn hello(listen_port: u16, nonce: u64) -> Message {
    regtest_hello(listen_port, nonce, "attack-test")
}

fn frame(message: &Message) -> Frame {
    Frame::binary(message.to_bytes())
}

/// A TCP connection to `port` on 127.0.0.1 from the loopback address `source`.
async fn tcp_from(source: Ipv4Addr, port: u16) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).ok()?;
    let connect = socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .ok()?
        .ok()
}

/// A handshaked raw peer from `source` to the node's peer port, announcing `listen_port`.
async fn peer_from(source: Ipv4Addr, p2p_port: u16, listen_port: u16) -> Option<Socket> {
    let stream = tcp_from(source, p2p_port).await?;
    let url = format!("ws://127.0.0.1:{p2p_port}");
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .ok()?
    .ok()?;
    let nonce = 0xa77a_c000_0000 ^ (u64::from(u32::from(source)) << 16) ^ u64::from(listen_port);
    socket.send(frame(&hello(listen_port, nonce))).await.ok()?;
    Some(socket)
}

/// One request over a new connection: the status and body, or which step failed and how
/// long the exchange had taken (so a failure under attack says what the node did).
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Vec<u8>), String> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut bytes = Vec::new();
        stream
            .read_to_end(&mut bytes)
            .await
            .map_err(|error| format!("read after {} bytes: {error}", bytes.len()))?;
        let text = String::from_utf8_lossy(&bytes);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no status line in {} bytes", bytes.len()))?;
        let body_start = text.find("\r\n\r\n").map_or(bytes.len(), |at| at + 4);
        Ok((status, bytes[body_start..].to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
        .map_err(|error: String| format!("{error} (after {:?})", started.elapsed()))
}

/// An honest peer connects from 127.0.0.1, a block is mined through the API, and the
/// peer must hear of it: the time from the mining request to the announcement.
async fn honest_peer_hears_a_new_block(
    node: &TestNode,
    listen_port: u16,
) -> Result<Duration, String> {
    let mut socket = peer_from(Ipv4Addr::LOCALHOST, node.p2p_port, listen_port)
        .await
        .ok_or("the honest peer could not connect")?;
    // Registered once the node's session has started: it asks for addresses, then pings
    // at once. A live peer answers (its round trip is what protects it from eviction).
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(frame_in)) = socket.next().await {
            if let Frame::Binary(bytes) = frame_in
                && let Ok(Message::Ping(nonce)) = Message::from_bytes(&bytes)
                && socket.send(frame(&Message::Pong(nonce))).await.is_ok()
            {
                return Ok(());
            }
        }
        Err("the node closed the honest peer's connection during its handshake")
    })
    .await
    .map_err(|_| "no session within 5 s")??;
    // Timed from the request that mines it: mining, connecting and relaying all count.
    let mined_at = Instant::now();
    let mined = http(node.address, "POST", "/mine", "{\"data\":\"attack test\"}")
        .await
        .map_err(|error| format!("POST /mine failed: {error}"))?;
    if mined.0 != 200 {
        return Err(format!("POST /mine answered {}", mined.0));
    }
    let block: serde_json::Value =
        serde_json::from_slice(&mined.1).map_err(|error| format!("mined block: {error}"))?;
    let hash: BlockHash = block["hash"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or("the mined block has no hash")?;
    let within = tokio::time::Instant::from_std(mined_at) + HONEST_BLOCK_WITHIN;
    let heard = tokio::time::timeout_at(within, async {
        while let Some(Ok(frame_in)) = socket.next().await {
            if let Frame::Binary(bytes) = frame_in {
                match Message::from_bytes(&bytes) {
                    Ok(Message::Inventory(items))
                        if items.contains(&InventoryItem::Block(hash)) =>
                    {
                        return true;
                    }
                    Ok(Message::Headers(headers))
                        if headers.iter().any(|header| header.compute_hash() == hash) =>
                    {
                        return true;
                    }
                    Ok(Message::Ping(nonce)) => {
                        let _ = socket.send(frame(&Message::Pong(nonce))).await;
                    }
                    _ => {}
                }
            }
        }
        false
    })
    .await;
    let _ = socket.close(None).await;
    match heard {
        Ok(true) => Ok(mined_at.elapsed()),
        Ok(false) => Err("the node closed the honest peer's connection".into()),
        Err(_) => Err(format!("no announcement within {HONEST_BLOCK_WITHIN:?}")),
    }
}

/// What the honest side measured during one attack.
#[derive(Debug, Default)]
struct Figures {
    status_latencies: Vec<Duration>,
    /// Each failed `GET /status`: when (since the attack began) and why.
    status_failures: Vec<String>,
    honest: Vec<Result<Duration, String>>,
    idle_rss: u64,
    peak_rss: u64,
    peak_files: usize,
    after_rss: u64,
}

impl Figures {
    fn p99(&self) -> Duration {
        let mut sorted = self.status_latencies.clone();
        sorted.sort();
        sorted
            .get((sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::MAX)
    }
}

/// Runs `attack` (which must stop when its token is cancelled) for the attack time while
/// measuring what an honest peer and client see; then checks every figure, and returns
/// them.
async fn under_attack<F, Fut>(name: &str, node: &TestNode, attack: F) -> Figures
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pid = node.pid();
    // Warm-up: a few seconds of the same attack, then a pause, so "idle" is the node's
    // steady state with every code path the attack touches already run once (the
    // allocator keeps some memory it was given, leaked or not); what grows in the real
    // run beyond that is what the attack costs.
    let warm_up = CancellationToken::new();
    let warming = tokio::spawn(attack(warm_up.child_token()));
    tokio::time::sleep(WARM_UP).await;
    warm_up.cancel();
    warming.await.expect("the warm-up attacker stops");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..20 {
        let _ = http(node.address, "GET", "/status", "").await;
    }
    let (idle_rss, idle_files) = process_figures(pid);
    let budget = file_budget();
    let stop = CancellationToken::new();
    let attacker = tokio::spawn(attack(stop.child_token()));
    let deadline = tokio::time::Instant::now() + attack_time();

    let address = node.address;
    let status = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let attack_began = Instant::now();
        while tokio::time::Instant::now() < deadline {
            tick.tick().await;
            let started = Instant::now();
            let failure = match http(address, "GET", "/status", "").await {
                Ok((200, _)) => {
                    latencies.push(started.elapsed());
                    continue;
                }
                Ok((status, _)) => format!("answered {status}"),
                Err(error) => error,
            };
            failures.push(format!(
                "at {:?}: {failure}",
                started.duration_since(attack_began)
            ));
        }
        (latencies, failures)
    });
    let resources = tokio::spawn(async move {
        let (mut peak_rss, mut peak_files) = (0, 0);
        while tokio::time::Instant::now() < deadline {
            let (rss, files) = process_figures(pid);
            peak_rss = peak_rss.max(rss);
            peak_files = peak_files.max(files);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (peak_rss, peak_files)
    });
    let mut honest = Vec::new();
    let mut port = 45_000;
    // The first check once the attack is under way, then every 5 s.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    while tokio::time::Instant::now() + Duration::from_secs(3) < deadline {
        let next = tokio::time::Instant::now() + Duration::from_secs(5);
        honest.push(honest_peer_hears_a_new_block(node, port).await);
        port += 1;
        tokio::time::sleep_until(next.min(deadline)).await;
    }
    let (status_latencies, status_failures) = status.await.expect("the status task");
    let (peak_rss, peak_files) = resources.await.expect("the resource task");
    stop.cancel();
    attacker.await.expect("the attacker stops");

    // Memory after the attacker left: given a few seconds to come back.
    let settle = Instant::now();
    let mut after_rss = process_figures(pid).0;
    let returned = |rss: u64| rss <= idle_rss + (idle_rss / 5).max(AFTER_ALLOWANCE);
    while !returned(after_rss) && settle.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after_rss = process_figures(pid).0;
    }
    let figures = Figures {
        status_latencies,
        status_failures,
        honest,
        idle_rss,
        peak_rss,
        peak_files,
        after_rss,
    };
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let heard: Vec<String> = figures
        .honest
        .iter()
        .map(|result| match result {
            Ok(time) => format!("{}ms", time.as_millis()),
            Err(error) => format!("FAILED ({error})"),
        })
        .collect();
    eprintln!(
        "attack {name} for {:?}: /status p99 {:?}, max {:?} over {} requests ({} failed); honest peer \
         heard the block after [{}]; RSS idle {:.1} MB, peak {:.1} MB, after {:.1} MB; open \
         files idle {idle_files}, peak {} (budget {budget})",
        attack_time(),
        figures.p99(),
        figures
            .status_latencies
            .iter()
            .max()
            .copied()
            .unwrap_or_default(),
        figures.status_latencies.len(),
        figures.status_failures.len(),
        heard.join(", "),
        mb(figures.idle_rss),
        mb(figures.peak_rss),
        mb(figures.after_rss),
        figures.peak_files,
    );
    node.assert_serving();
    assert!(!figures.honest.is_empty(), "{name}: no honest check ran");
    for result in &figures.honest {
        assert!(
            result.is_ok(),
            "{name}: an honest peer was not served: {result:?}"
        );
    }
    assert!(
        figures.status_failures.is_empty(),
        "{name}: GET /status failed: {:?}",
        figures.status_failures
    );
    assert!(
        figures.p99() < STATUS_P99_UNDER,
        "{name}: GET /status p99 {:?}",
        figures.p99()
    );
    assert!(
        figures.peak_rss <= figures.idle_rss + RSS_GROWTH_LIMIT,
        "{name}: memory grew by {:.1} MB",
        mb(figures.peak_rss.saturating_sub(figures.idle_rss))
    );
    assert!(
        figures.peak_files as u64 <= budget,
        "{name}: {} open files, budget {budget}",
        figures.peak_files
    );
    assert!(
        returned(figures.after_rss),
        "{name}: memory after the attack {:.1} MB, idle {:.1} MB",
        mb(figures.after_rss),
        mb(figures.idle_rss)
    );
    figures
}

/// Keeps `count` copies of `connect` alive until `stop`, opening a new one whenever one
/// ends. `connect(index)` runs one connection to its end.
async fn keep_open<C, Fut>(count: usize, stop: CancellationToken, connect: C)
where
    C: Fn(usize, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for index in 0..count {
        tasks.spawn(connect(index, stop.clone()));
    }
    let mut next = count;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            ended = tasks.join_next() => {
                if ended.is_none() {
                    break;
                }
                tasks.spawn(connect(next, stop.clone()));
                next += 1;
                // A failed connect (refused at once) must not spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Holds `socket` open, reading and dropping what the node sends, until it closes or `stop`.
async fn hold(mut socket: Socket, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            frame_in = socket.next() => if !matches!(frame_in, Some(Ok(_))) { return },
        }
    }
}

/// A node started for an attack, with `blocks` blocks mined on top of genesis.
fn start_node_with_blocks(name: &str, blocks: usize) -> TestNode {
    let node = start_node(name);
    for index in 0..blocks {
        node.mine(&format!("block {index}"));
    }
    node
}

fn start_node(name: &str) -> TestNode {
    TestNode::start_with_env(name, &[], &[("POWCHAIN_LOG", "warn,redb=warn")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addr_gossip_of_unreachable_addresses() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node("attack-addr");
    let p2p_port = node.p2p_port;
    let counter = Arc::new(AtomicU64::new(0));
    under_attack("addr gossip", &node, move |stop| {
        let counter = Arc::clone(&counter);
        async move {
            // Listeners that never accept: a dial to them connects and then hangs.
            let tarpits: Vec<std::net::TcpListener> = (0..20)
                .filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
                .collect();
            let tarpit_ports: Vec<u16> = tarpits
                .iter()
                .filter_map(|listener| listener.local_addr().ok().map(|address| address.port()))
                .collect();
            while !stop.is_cancelled() {
                let Some(stream) = tcp_from(Ipv4Addr::new(127, 50, 0, 1), p2p_port).await else {
                    continue;
                };
                let url = format!("ws://127.0.0.1:{p2p_port}");
                let Ok((mut socket, _)) = tokio_tungstenite::client_async(url, stream).await else {
                    continue;
                };
                if socket.send(frame(&hello(47_500, 0xadd7))).await.is_err() {
                    continue;
                }
                // 100 fresh addresses a message, 200 messages a second.
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let addresses: Vec<String> = (0..100)
                        .map(|index| {
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            if index % 10 == 0 {
                                let port = tarpit_ports[(n as usize) % tarpit_ports.len().max(1)];
                                format!("ws://127.0.0.1:{port}")
                            } else {
                                format!(
                                    "ws://127.{}.{}.{}:{}",
                                    51 + (n % 50),
                                    (n / 50) % 250,
                                    1 + n % 200,
                                    1_024 + n % 60_000
                                )
                            }
                        })
                        .collect();
                    if socket
                        .send(frame(&Message::Addresses(addresses)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    })
    .await;
}

/// `count` headers building on `parent`, each solved at its bits.
fn branch(parent: &Header, count: usize, salt: u64) -> Vec<Header> {
    let mut headers = Vec::with_capacity(count);
    let mut previous = *parent;
    for _ in 0..count {
        let mut header = Header {
            prev_hash: previous.compute_hash(),
            time_ms: previous.time_ms + 1_000 + salt % 997,
            nonce: 0,
            ..previous
        };
        solve(&mut header);
        headers.push(header);
        previous = header;
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_cheap_header_branches() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // A chain longer than the anti-DoS margin (144 blocks), so a branch from genesis of 50
    // headers ends far below the threshold.
    let node = start_node_with_blocks("attack-headers", 220);
    let best_header_before = node.get_ok("/status")["sync"]["bestHeaderHeight"].as_u64();
    let genesis = Network::Regtest.params().genesis().header;
    let p2p_port = node.p2p_port;
    under_attack("cheap header branches", &node, move |stop| async move {
        let mut salt = 0u64;
        let mut listen_port = 47_600u16;
        while !stop.is_cancelled() {
            let Some(stream) = tcp_from(Ipv4Addr::new(127, 60, 0, 1), p2p_port).await else {
                continue;
            };
            let url = format!("ws://127.0.0.1:{p2p_port}");
            let Ok((mut socket, _)) = tokio_tungstenite::client_async(url, stream).await else {
                continue;
            };
            listen_port = listen_port.wrapping_add(1).max(47_600);
            if socket
                .send(frame(&hello(listen_port, 0x4ead ^ u64::from(listen_port))))
                .await
                .is_err()
            {
                continue;
            }
            // 30 messages a second: continuous low-work branches (ignored, no ban), and
            // every tenth a batch of siblings (a lie: banned, and the attacker comes back
            // under another port).
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                salt += 1;
                let headers = if salt.is_multiple_of(10) {
                    (0..50)
                        .map(|index| branch(&genesis, 1, salt * 100 + index)[0])
                        .collect()
                } else {
                    branch(&genesis, 50, salt)
                };
                if socket
                    .send(frame(&Message::Headers(headers)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    })
    .await;
    let status = node.get_ok("/status");
    assert!(
        status["sync"]["bestHeaderHeight"].as_u64() >= best_header_before,
        "{status}"
    );
    let banned = node.get_ok("/peers/banned");
    assert!(
        banned.as_array().is_some_and(|bans| bans
            .iter()
            .any(|ban| ban["rule"] == "headers-not-continuous")),
        "the sibling batches were punished: {banned}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_peers_fill_every_slot() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node("attack-slots");
    let p2p_port = node.p2p_port;
    under_attack("idle peers", &node, move |stop| async move {
        // 40 from one address (8 get a slot) and 40 from 40 groups (they fill the rest),
        // none answering a ping, each replaced as soon as it is closed.
        keep_open(80, stop, move |index, stop| async move {
            let source = if index % 2 == 0 {
                Ipv4Addr::new(127, 66, 0, 1)
            } else {
                Ipv4Addr::new(127, 100 + (index % 80) as u8 / 2, 0, 1)
            };
            let port = 20_000 + (index % 40_000) as u16;
            if let Some(socket) = peer_from(source, p2p_port, port).await {
                hold(socket, stop).await;
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_say_hello() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node("attack-silent");
    let p2p_port = node.p2p_port;
    under_attack("2,000 silent connections", &node, move |stop| async move {
        keep_open(2_000, stop, move |index, stop| async move {
            // Half raw TCP, half WebSocket upgrades; half from one address, half from 60
            // address groups (enough to keep every pending slot taken).
            let source = if index % 4 < 2 {
                Ipv4Addr::new(127, 77, 0, 1)
            } else {
                Ipv4Addr::new(127, 180 + (index % 60) as u8, 0, 1)
            };
            let Some(mut stream) = tcp_from(source, p2p_port).await else {
                return;
            };
            if index % 2 == 1 {
                let url = format!("ws://127.0.0.1:{p2p_port}");
                if let Ok(Ok((socket, _))) = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio_tungstenite::client_async(url, stream),
                )
                .await
                {
                    hold(socket, stop).await;
                }
                return;
            }
            let mut buffer = [0u8; 256];
            tokio::select! {
                () = stop.cancelled() => {}
                _ = stream.read(&mut buffer) => {}
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_first_frames_before_hello() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node("attack-frames");
    let p2p_port = node.p2p_port;
    under_attack("huge first frames", &node, move |stop| async move {
        // 300 connections from 30 address groups, each upgrading and then sending a frame
        // that announces 1.999 MB, as fast as the node reads it.
        keep_open(300, stop, move |index, stop| async move {
            let source = Ipv4Addr::new(127, 150 + (index % 30) as u8, 0, 1);
            let Some(stream) = tcp_from(source, p2p_port).await else {
                return;
            };
            let url = format!("ws://127.0.0.1:{p2p_port}");
            let Ok(Ok((socket, _))) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::client_async(url, stream),
            )
            .await
            else {
                return;
            };
            let mut tcp = socket.into_inner();
            let length: u64 = 1_999_000;
            let mut header = vec![0x82u8, 0x80 | 127];
            header.extend_from_slice(&length.to_be_bytes());
            header.extend_from_slice(&[0u8; 4]);
            if tcp.write_all(&header).await.is_err() {
                return;
            }
            let chunk = [0u8; 16 * 1024];
            let mut sent = 0usize;
            while sent < 1_999_000 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    written = tcp.write_all(&chunk) => if written.is_err() { return },
                }
                sent += chunk.len();
            }
            let mut buffer = [0u8; 64];
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tcp.read(&mut buffer) => {}
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_headers_dribbled_a_byte_a_second() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node("attack-slowloris");
    let http_port = node.address.port();
    // From 20 address groups: one group holds at most an eighth of the places, and these
    // must fill all of them, so that eviction is what keeps the honest client served.
    under_attack("1,100 dribbling HTTP clients from 20 groups", &node, move |stop| async move {
        keep_open(1_100, stop, move |index, stop| async move {
            let source = Ipv4Addr::new(127, 60 + (index % 20) as u8, 0, 1);
            let Some(mut stream) = tcp_from(source, http_port).await else {
                return;
            };
            let request = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for byte in request {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_asking_for_the_largest_pages() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node = start_node_with_blocks("attack-pages", 60);
    let address = node.address;
    under_attack(
        "6 clients asking /blocks?limit=1000",
        &node,
        move |stop| async move {
            keep_open(6, stop, move |_, stop| async move {
                while !stop.is_cancelled() {
                    let _ = http(address, "GET", "/blocks?limit=1000", "").await;
                }
            })
            .await;
        },
    )
    .await;
}

/// Clients of [`hundreds_of_clients_asking_at_once_for_large_pages`], half of which never
/// read their answer.
const PAGE_CLIENTS: usize = 300;
/// What those clients may grow the node by, against its memory before the attack (the
/// warm-up's growth included): the few pages built at once (`ApiOptions::max_large_reads`)
/// and the connections. When every request built its page at once, the same attack took a
/// debug build from 17.5 MB before it to 139 MB (38 MB with the turns).
const PAGE_RSS_GROWTH_LIMIT: u64 = 40 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_asking_at_once_for_large_pages() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // 1,000 blocks: a page of them is about 800 KB of JSON.
    let node = start_node_with_blocks("attack-large-pages", 1_000);
    let http_port = node.address.port();
    let (before, _) = process_figures(node.pid());
    let figures = under_attack(
        "300 clients asking at once for /blocks?limit=1000, half never reading",
        &node,
        move |stop| async move {
            keep_open(PAGE_CLIENTS, stop, move |index, stop| async move {
                let source = Ipv4Addr::new(127, 90 + (index % 30) as u8, 0, 1);
                let Some(mut stream) = tcp_from(source, http_port).await else {
                    return;
                };
                let request = b"GET /blocks?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                if stream.write_all(request).await.is_err() {
                    return;
                }
                if index % 2 == 0 {
                    // Reads the whole answer, then asks again on a new connection.
                    let mut sink = Vec::new();
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = stream.read_to_end(&mut sink) => {}
                    }
                } else {
                    // Never reads: holds the connection for a while, then asks again.
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            })
            .await;
        },
    )
    .await;
    assert!(
        figures.peak_rss <= before + PAGE_RSS_GROWTH_LIMIT,
        "memory grew from {:.1} MB before the attack to {:.1} MB",
        before as f64 / 1e6,
        figures.peak_rss as f64 / 1e6
    );
}

/// Items in each attacker's `getdata`: the most one may name.
const GETDATA_ITEMS: usize = powchain_p2p::MAX_INVENTORY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_asking_for_a_thousand_blocks_at_a_time() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Half as many blocks as a getdata names: each asked whole and as a compact block,
    // every item distinct (an item named twice is answered once).
    let node = start_node_with_blocks("attack-getdata", GETDATA_ITEMS / 2);
    let hashes: Vec<BlockHash> = node
        .get_ok(&format!("/blocks?start=1&limit={}", GETDATA_ITEMS / 2))
        .as_array()
        .expect("a page of blocks")
        .iter()
        .map(|block| {
            block["hash"]
                .as_str()
                .expect("a hash")
                .parse()
                .expect("a block hash")
        })
        .collect();
    assert_eq!(hashes.len(), GETDATA_ITEMS / 2);
    // Every request legal and as large as a request may be: 1,000 items, each of the
    // chain's blocks asked whole and as a compact block (built for each answer near the
    // tip, whole below it).
    let attack = Arc::new(BlockRequests {
        items: hashes
            .iter()
            .flat_map(|hash| {
                [
                    InventoryItem::Block(*hash),
                    InventoryItem::CompactBlock(*hash),
                ]
            })
            .collect(),
        served: AtomicU64::new(0),
        closed_early: AtomicU64::new(0),
    });
    let p2p_port = node.p2p_port;
    let attackers = Arc::clone(&attack);
    under_attack(
        "8 peers asking for 1,000 blocks at a time",
        &node,
        move |stop| {
            let attack = Arc::clone(&attackers);
            async move {
                // Eight peers from eight address groups, each asking again as soon as the
                // last answer is in, answering pings so that nothing but their asking could
                // cost them their slot.
                keep_open(8, stop, move |index, stop| {
                    let attack = Arc::clone(&attack);
                    async move {
                        let source = Ipv4Addr::new(127, 120 + index as u8 % 8, 0, 1);
                        let port = 30_000 + (index % 30_000) as u16;
                        let Some(mut socket) = peer_from(source, p2p_port, port).await else {
                            return;
                        };
                        attack.ask_until_stopped(&mut socket, &stop).await;
                        if !stop.is_cancelled() {
                            attack.closed_early.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
            }
        },
    )
    .await;
    let served = attack.served.load(Ordering::Relaxed);
    eprintln!(
        "the attackers were sent {served} blocks and compact blocks; {} of their sessions \
         ended before the attack did (warm-up included)",
        attack.closed_early.load(Ordering::Relaxed)
    );
    assert!(
        served >= GETDATA_ITEMS as u64,
        "the attack ran: at least one request was answered in full ({served} items)"
    );
    // Why the attackers' sessions ended (the warm-up's and the last ones: closed by the
    // peer). Asking is legal, however much: none may have been banned for it.
    let ended = node.get_ok("/peers/disconnected");
    let reasons: Vec<&str> = ended
        .as_array()
        .expect("a list")
        .iter()
        .filter(|session| text(&session["url"]).starts_with("ws://127.12"))
        .map(|session| text(&session["reason"]))
        .collect();
    eprintln!("the attackers' sessions ended: {reasons:?}");
    assert!(
        !reasons.is_empty(),
        "the warm-up's sessions at least are listed as ended: {ended}"
    );
    assert!(
        !reasons.iter().any(|reason| reason.contains("banned")),
        "an attacker asking legally was banned: {reasons:?}"
    );
}

/// What the `getdata` attackers share: their request, and what they counted.
struct BlockRequests {
    /// The items of every `getdata`.
    items: Vec<InventoryItem>,
    /// Blocks and compact blocks received, by all attackers.
    served: AtomicU64,
    /// Attackers' sessions that ended before the attack was stopped.
    closed_early: AtomicU64,
}

impl BlockRequests {
    /// Sends the items as one `getdata`, reads until every one is answered (or the node
    /// says it has not got some), and again, until `stop` or the connection ends.
    async fn ask_until_stopped(&self, socket: &mut Socket, stop: &CancellationToken) {
        let (items, served) = (&self.items, &self.served);
        let request = frame(&Message::GetData(items.clone()));
        loop {
            if socket.send(request.clone()).await.is_err() {
                return;
            }
            let mut answered = 0;
            while answered < items.len() {
                let frame_in = tokio::select! {
                    () = stop.cancelled() => return,
                    frame_in = socket.next() => frame_in,
                };
                let Some(Ok(Frame::Binary(bytes))) = frame_in else {
                    if matches!(frame_in, Some(Ok(_))) {
                        continue;
                    }
                    return;
                };
                match Message::from_bytes(&bytes) {
                    Ok(Message::Block(_) | Message::CompactBlock(_)) => {
                        answered += 1;
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Message::NotFound(missing)) => answered += missing.len(),
                    Ok(Message::Ping(nonce)) => {
                        let pong = socket.send(frame(&Message::Pong(nonce))).await;
                        if pong.is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
