//! Shared set-up for the API's tests: regtest nodes in temporary folders, a server on
//! `127.0.0.1:0` that a test stops, and a raw HTTP/1.1 client on a plain TCP stream (so a
//! test controls every byte, including the ones it never sends).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use powchain_consensus::{Amount, Network};
use powchain_node::{Node, NodeConfig, SystemClock};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::options::ApiOptions;
use crate::server::{ConnectionLimits, serve_router};

/// How long a test waits for something that should happen at once, before it fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// A regtest node in a temporary folder with `blocks` mined on genesis.
pub(crate) fn regtest_node(blocks: u64) -> (TempDir, Arc<Node>) {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let mut config = NodeConfig::new(Network::Regtest, folder.path().to_path_buf());
    config.miner_threads = 1;
    config.signature_threads = 1;
    let node = Node::open(config, Arc::new(SystemClock)).expect("the node opens");
    for _ in 0..blocks {
        node.mine_one(Vec::new(), false)
            .expect("regtest mines at once");
    }
    (folder, node)
}

/// Pays the node's own wallet `count` times (one coin each), so the pool holds `count`
/// transactions. The wallet needs a spendable coin: mine one block first on regtest.
pub(crate) fn fill_pool(node: &Node, count: usize) {
    for _ in 0..count {
        node.send(node.wallet_address(), Amount::ONE_COIN, None)
            .expect("the wallet pays");
    }
}

/// A node whose chain holds a payer's first coin and whose pool is empty, with `count`
/// payments of that payer the node has not seen, each spending the change of the one
/// before (the folders hold both nodes' stores).
pub(crate) fn node_and_unseen_payments(
    count: usize,
) -> (
    Vec<TempDir>,
    Arc<Node>,
    Vec<powchain_consensus::Transaction>,
) {
    let (payer_folder, payer) = regtest_node(0);
    let (folder, node) = regtest_node(0);
    let block = payer.mine_one(Vec::new(), false).expect("mines");
    node.submit_block(block).expect("the same chain");
    let payments = (0..count)
        .map(|_| {
            payer
                .send(payer.wallet_address(), Amount::ONE_COIN, None)
                .expect("pays")
                .transaction
        })
        .collect();
    (vec![payer_folder, folder], node, payments)
}

/// A regtest node whose blocks 2 to `blocks + 1` each hold `transactions` payments besides
/// the coinbase (block 1 pays the wallet its first coin): blocks large next to a small page.
pub(crate) fn node_with_full_blocks(blocks: u64, transactions: usize) -> (TempDir, Arc<Node>) {
    let (folder, node) = regtest_node(1);
    for _ in 0..blocks {
        fill_pool(&node, transactions);
        let block = node
            .mine_one(Vec::new(), true)
            .expect("regtest mines at once");
        assert_eq!(
            block.transactions.len(),
            transactions + 1,
            "the block took the pool"
        );
    }
    (folder, node)
}

/// A server running on a loopback port until [`TestServer::stop`].
pub(crate) struct TestServer {
    pub(crate) address: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// The API of `node` with `options`, as the node serves it.
    pub(crate) async fn api(node: Arc<Node>, options: ApiOptions) -> TestServer {
        TestServer::start(|listener, shutdown| crate::serve_with(listener, node, options, shutdown))
            .await
    }

    /// `router` behind the server's accept loop with `limits`.
    pub(crate) async fn router(router: Router, limits: ConnectionLimits) -> TestServer {
        TestServer::start(|listener, shutdown| serve_router(listener, router, limits, shutdown))
            .await
    }

    async fn start<F>(
        serve: impl FnOnce(TcpListener, WaitForCancellationFutureOwned) -> F,
    ) -> TestServer
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("an address");
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, stop.clone().cancelled_owned()));
        TestServer {
            address,
            stop,
            task,
        }
    }

    /// Completes the server's shutdown future; the server task keeps running until it
    /// has drained ([`TestServer::join`]).
    pub(crate) fn begin_stop(&mut self) {
        self.stop.cancel();
    }

    /// Waits (at most [`DEADLINE`]) for the server to return.
    pub(crate) async fn join(self) -> std::io::Result<()> {
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the server stops within the deadline")
            .expect("the server task does not panic")
    }
}

/// An answer read off the wire.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The head's header lines, names lowercase.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The `error` string of an error answer.
    pub(crate) fn error_message(&self) -> String {
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned()
    }
}

/// A connection to `address` from `source` (a loopback address such as `127.9.0.2`: a
/// stranger of another address group than the tests' `127.0.0.1`).
pub(crate) async fn connect_from(source: std::net::Ipv4Addr, address: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("binds the source address");
    socket.connect(address).await.expect("connects")
}

/// The connection, kept alive, if `GET path` on a new connection from `source` is
/// answered 200 (the status line is read, the rest left).
pub(crate) async fn served_from(
    source: std::net::Ipv4Addr,
    address: SocketAddr,
    path: &str,
) -> Option<TcpStream> {
    let mut stream = connect_from(source, address).await;
    send_get(&mut stream, path, true).await;
    let mut status_line = [0u8; 12];
    let read = stream.read_exact(&mut status_line).await;
    (read.is_ok() && &status_line == b"HTTP/1.1 200").then_some(stream)
}

/// True if `GET path` on a new connection from `source` is answered 200: for waits until
/// a place is had.
pub(crate) async fn answered_200_from(
    source: std::net::Ipv4Addr,
    address: SocketAddr,
    path: &str,
) -> bool {
    served_from(source, address, path).await.is_some()
}

/// `GET path` on a new connection (`Connection: close`), read to the end.
pub(crate) async fn get(address: SocketAddr, path: &str) -> Answer {
    let mut stream = TcpStream::connect(address).await.expect("connects");
    send_get(&mut stream, path, false).await;
    read_to_end(&mut stream).await
}

/// `POST path` with `body` (declared `content_length` bytes long, which may be more than
/// `body` holds: the rest is never sent) on a new connection, read to the end.
pub(crate) async fn post(
    address: SocketAddr,
    path: &str,
    body: &[u8],
    content_length: usize,
) -> Answer {
    post_from(
        std::net::Ipv4Addr::LOCALHOST,
        address,
        path,
        body,
        content_length,
    )
    .await
}

/// [`post`] from `source`.
pub(crate) async fn post_from(
    source: std::net::Ipv4Addr,
    address: SocketAddr,
    path: &str,
    body: &[u8],
    content_length: usize,
) -> Answer {
    let mut stream = connect_from(source, address).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the head is written");
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body).await;
    read_to_end(&mut stream).await
}

/// The answer on `stream`, read until the server closes it.
async fn read_to_end(stream: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut bytes))
        .await
        .expect("answered within the deadline")
        .expect("reads");
    parse_answer(&bytes)
}

/// Writes `GET path`, keeping the connection open after the answer if `keep_alive`.
pub(crate) async fn send_get(stream: &mut TcpStream, path: &str, keep_alive: bool) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is written");
}

/// Reads one answer with a `content-length` off a kept-alive connection.
pub(crate) async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(end) = head_end(&bytes) {
                let head = parse_answer(&bytes[..end]);
                let length: usize = head
                    .header("content-length")
                    .expect("a content-length")
                    .parse()
                    .expect("a number");
                if bytes.len() >= end + length {
                    return;
                }
            }
            let read = stream.read(&mut buffer).await.expect("reads");
            assert!(read > 0, "the connection closed before the answer ended");
            bytes.extend_from_slice(&buffer[..read]);
        }
    })
    .await
    .expect("answered within the deadline");
    parse_answer(&bytes)
}

/// Waits until the server closes `stream` (end of file or a reset), reading and dropping
/// what it sends; fails after [`DEADLINE`]. Returns how long that took.
pub(crate) async fn wait_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection within the deadline");
    started.elapsed()
}

/// Polls `condition` until it holds; fails after [`DEADLINE`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Status, headers and body of one answer (a chunked body is returned as it came).
fn parse_answer(bytes: &[u8]) -> Answer {
    let end = head_end(bytes).expect("a complete head");
    let head = std::str::from_utf8(&bytes[..end]).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let headers = lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: bytes[end..].to_vec(),
    }
}
