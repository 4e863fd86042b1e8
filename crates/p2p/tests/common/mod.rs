//! In-process test nodes: each a real `Node` with its own data directory and a real P2P
//! layer listening on 127.0.0.1 (port 0), connected over loopback WebSockets.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use powchain_consensus::{Block, BlockHash, Network, Work};
use powchain_node::{Clock, Node, NodeConfig, SystemClock};
use powchain_p2p::{Environment, Hello, Message, P2p, P2pConfig, PeerUrl};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A raw protocol peer's WebSocket to a node.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hello from a peer on `network` at its genesis, announcing `listen_port`; the node
/// nonce derives from the port, so fake peers on different ports are different nodes.
pub fn hello(network: Network, listen_port: u16) -> Message {
    let params = network.params();
    Message::Hello(Hello {
        network_magic: network.magic(),
        genesis: params.genesis_hash(),
        best_hash: params.genesis_hash(),
        best_height: 0,
        best_work: Work::ZERO,
        listen_port,
        node_nonce: 0x7e57_0000 ^ u64::from(listen_port),
        user_agent: "test".into(),
    })
}

/// Connects to `url` as a raw regtest peer announcing `listen_port` and sends its hello
/// (the node's own hello is left unread); `None` if the node cannot be reached.
pub async fn raw_peer(url: &str, listen_port: u16) -> Option<Socket> {
    raw_peer_on(Network::Regtest, url, listen_port).await
}

/// [`raw_peer`] on `network`.
pub async fn raw_peer_on(network: Network, url: &str, listen_port: u16) -> Option<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    socket
        .send(Frame::binary(hello(network, listen_port).to_bytes()))
        .await
        .ok()?;
    Some(socket)
}

/// Sends one protocol message over a raw peer's socket.
pub async fn send(socket: &mut Socket, message: Message) {
    socket
        .send(Frame::binary(message.to_bytes()))
        .await
        .expect("send");
}

/// Reads until the node closes the connection; false if it stays open for `limit`.
pub async fn closed_by_node(socket: &mut Socket, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Frame::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The resident set size of this process (the test's nodes run in it), bytes.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kilobytes| kilobytes * 1024)
}

/// A running in-process node.
pub struct TestNode {
    pub node: Arc<Node>,
    pub p2p: Arc<P2p>,
    pub dir: PathBuf,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    _temp: Option<tempfile::TempDir>,
}

pub fn config(peers: Vec<String>, port: u16) -> P2pConfig {
    P2pConfig {
        listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        peers: peers
            .iter()
            .map(|peer| PeerUrl::parse(peer).expect("a test peer address"))
            .collect(),
        ..P2pConfig::default()
    }
}

impl TestNode {
    /// A regtest node in a fresh directory, dialling `peers`.
    pub async fn start(peers: Vec<String>) -> TestNode {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut node = TestNode::start_in(dir, config(peers, 0)).await;
        node._temp = Some(temp);
        node
    }

    /// A regtest node on `dir` with `config`.
    pub async fn start_in(dir: PathBuf, config: P2pConfig) -> TestNode {
        TestNode::start_with_clock(dir, config, Arc::new(SystemClock)).await
    }

    /// A regtest node on `dir` with `config`, reading time from `clock`.
    pub async fn start_with_clock(
        dir: PathBuf,
        config: P2pConfig,
        clock: Arc<dyn Clock>,
    ) -> TestNode {
        TestNode::start_with(dir, config, clock, Environment::default()).await
    }

    /// A regtest node on `dir` with `config`, reading time from `clock`, its peer layer on
    /// `environment` (TCP; a simulated validation time, say).
    pub async fn start_with(
        dir: PathBuf,
        config: P2pConfig,
        clock: Arc<dyn Clock>,
        environment: Environment,
    ) -> TestNode {
        TestNode::start_on(Network::Regtest, dir, config, clock, environment).await
    }

    /// [`TestNode::start_with`] on `network`.
    pub async fn start_on(
        network: Network,
        dir: PathBuf,
        config: P2pConfig,
        clock: Arc<dyn Clock>,
        environment: Environment,
    ) -> TestNode {
        // POWCHAIN_LOG=debug shows what the nodes do.
        if let Ok(filter) = std::env::var("POWCHAIN_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let mut node_config = NodeConfig::new(network, dir.clone());
        node_config.miner_threads = 1;
        node_config.signature_threads = 1;
        let opened = {
            let node_config = node_config.clone();
            tokio::task::spawn_blocking(move || Node::open(node_config, clock))
                .await
                .expect("open task")
                .expect("the node opens")
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let listener = match config.listen {
            Some(address) => Some(Box::new(
                tokio::net::TcpListener::bind(address)
                    .await
                    .expect("a test port"),
            ) as Box<dyn powchain_p2p::Listener>),
            None => None,
        };
        let p2p = P2p::start_in(
            Arc::clone(&opened),
            config,
            listener,
            environment,
            shutdown.clone(),
            tasks.clone(),
        )
        .expect("p2p starts");
        TestNode {
            node: opened,
            p2p,
            dir,
            shutdown,
            tasks,
            _temp: None,
        }
    }

    /// A regtest node dialling `peers` whose main chain holds the blocks of `chain` (the
    /// test kit's miner owns their coins).
    pub async fn with_chain(
        chain: &powchain_consensus::testkit::TestChain,
        peers: Vec<String>,
    ) -> TestNode {
        let node = TestNode::start(peers).await;
        node.submit_chain(chain).await;
        node
    }

    /// Submits the blocks of `chain` above genesis.
    pub async fn submit_chain(&self, chain: &powchain_consensus::testkit::TestChain) {
        let core = Arc::clone(&self.node);
        let blocks = chain.blocks[1..].to_vec();
        tokio::task::spawn_blocking(move || {
            for block in blocks {
                core.submit_block(block).expect("valid block");
            }
        })
        .await
        .expect("task");
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.p2p.listen_port())
    }

    /// Keeps `temp` alive as long as the node.
    pub fn keep(&mut self, temp: tempfile::TempDir) {
        self._temp = Some(temp);
    }

    pub fn height(&self) -> u64 {
        self.node.tip().height.0
    }

    pub fn tip(&self) -> BlockHash {
        self.node.tip().hash
    }

    /// Mines one block with the pool's transactions.
    pub async fn mine(&self) -> Block {
        let node = Arc::clone(&self.node);
        tokio::task::spawn_blocking(move || node.mine_one(Vec::new(), true))
            .await
            .expect("mining task")
            .expect("mines")
    }

    pub async fn mine_blocks(&self, count: usize) {
        for _ in 0..count {
            self.mine().await;
        }
    }

    pub async fn stop(self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.node.begin_shutdown();
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .expect("the peer tasks stop within 10 s");
        (self.dir, self._temp)
    }
}

/// Waits until `condition` holds, polling, or fails the test after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node has the same tip.
pub async fn wait_converged(nodes: &[&TestNode], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let first = nodes[0].tip();
        if nodes.iter().all(|node| node.tip() == first) {
            return;
        }
        if Instant::now() >= deadline {
            let state: Vec<(u64, usize)> = nodes
                .iter()
                .map(|node| (node.height(), node.p2p.peers().len()))
                .collect();
            panic!(
                "timed out after {limit:?} waiting for convergence; (height, peers) per node: {state:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy between two nodes that a test can cut and heal (a network partition) and
/// slow down (every chunk of bytes is held for the current latency before it is passed on,
/// in order, in each direction).
pub struct Proxy {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    latency_ms: Arc<std::sync::atomic::AtomicU64>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    listener_task: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to`, each chunk delivered `latency_ms` (read when the chunk arrives)
/// after it was read. Returns when either side closes.
async fn pump_with_latency(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_ms: Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (chunks, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    let delay = latency_ms.load(std::sync::atomic::Ordering::SeqCst);
                    let at = tokio::time::Instant::now() + Duration::from_millis(delay);
                    if chunks.send((at, buffer[..read].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    // The writer drains what the reader queued before the reader's end closes the channel.
    tokio::join!(reader, writer);
}

impl Proxy {
    /// Forwards connections on a fresh loopback port to `target_port`.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let latency_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener_task = {
            let cut = Arc::clone(&cut);
            let latency_ms = Arc::clone(&latency_ms);
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // dropped: the connection closes at once
                    }
                    let Ok(outbound) =
                        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, target_port)).await
                    else {
                        continue;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    let latency = Arc::clone(&latency_ms);
                    let task = tokio::spawn(async move {
                        // Either direction ending ends the connection.
                        tokio::select! {
                            () = pump_with_latency(in_read, out_write, Arc::clone(&latency)) => {}
                            () = pump_with_latency(out_read, in_write, latency) => {}
                        }
                    });
                    connections.lock().expect("lock").push(task.abort_handle());
                }
            })
        };
        Proxy {
            port,
            cut,
            latency_ms,
            connections,
            listener_task,
        }
    }

    /// Holds every chunk for `latency` before passing it on (each direction), from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(
            latency.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.listener_task.abort();
    }
}
