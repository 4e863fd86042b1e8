//! `TestNode`: the real `powchain` binary on regtest, on loopback port 0, in a temporary
//! data directory, with a small HTTP/1.1 client over `std::net::TcpStream`.
//!
//! ```text
//!   TestNode::start ──spawn──▶ powchain --network regtest --http-port 0 --p2p-port 0 ...
//!        │                        stdout ──▶ forwarding thread ──▶ "HTTP API listening on ..."
//!        │                        stderr ──▶ forwarding thread ──▶ test output (on failure)
//!        ├─ get / post / request ──TcpStream (Connection: close)──▶ (status, JSON)
//!        ├─ stop (SIGTERM, wait) | kill (SIGKILL) ──▶ restart on the same data directory
//!        └─ Drop: SIGKILL and reap the child, then delete the data directory
//! ```
//!
//! Nothing here sleeps for a fixed time: every wait is on a condition with a deadline.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use powchain_bench::harness::{regtest_command, wait_for_ports};
use powchain_consensus::encode::Encode;
use powchain_consensus::testkit::{sign_all, test_address, test_key};
use powchain_consensus::{
    Address, Amount, Network, OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut, Txid, Work,
    hex,
};
use powchain_p2p::{Hello, Message};
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a node may take to open its data and listen.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// How long one HTTP request may take (mining on regtest is instant).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Base units per coin.
pub const COIN: u64 = 100_000_000;
/// The regtest block subsidy, units.
pub const SUBSIDY: u64 = 50 * COIN;
/// The wallet's default fee rate, units per byte.
pub const DEFAULT_FEE_RATE: u64 = 2;

/// A regtest `hello` from a raw test peer at genesis, announcing `listen_port`.
pub fn regtest_hello(listen_port: u16, node_nonce: u64, user_agent: &str) -> Message {
    let params = Network::Regtest.params();
    Message::Hello(Hello {
        network_magic: Network::Regtest.magic(),
        genesis: params.genesis_hash(),
        best_hash: params.genesis_hash(),
        best_height: 0,
        best_work: Work::ZERO,
        listen_port,
        node_nonce,
        user_agent: user_agent.into(),
    })
}

/// The text of a JSON string.
///
/// # Panics
/// If `value` is not a string.
pub fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// The number of a JSON integer.
///
/// # Panics
/// If `value` is not an unsigned integer.
pub fn units(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("expected an integer, got {value}"))
}

/// Polls `condition` until it holds or `deadline` has passed.
///
/// # Panics
/// If the deadline passes first, naming `what` was awaited.
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "gave up after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// If the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {} with a non-JSON body ({error}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// A running `powchain` node (or a stopped one, between `stop`/`kill` and `restart`).
pub struct TestNode {
    /// `http://127.0.0.1:PORT` of the running node.
    pub url: String,
    /// The HTTP API's socket address.
    pub address: SocketAddr,
    /// A short name for log lines.
    pub name: String,
    /// The port the node accepts peers on (`ws://127.0.0.1:PORT`).
    pub p2p_port: u16,
    data_dir: TempDir,
    extra_args: Vec<String>,
    /// Environment variables set for the child, after the harness's own (so they win).
    extra_env: Vec<(String, String)>,
    /// Every line the child wrote to stdout or stderr, across restarts.
    output: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
}

impl TestNode {
    /// Starts a regtest node in a fresh temporary directory.
    pub fn start(name: &str) -> TestNode {
        TestNode::start_with(name, &[])
    }

    /// Starts a regtest node with `extra_args` appended to the command line.
    pub fn start_with(name: &str, extra_args: &[&str]) -> TestNode {
        TestNode::start_with_env(name, extra_args, &[])
    }

    /// Starts a regtest node with `extra_args` appended to the command line and `extra_env`
    /// set (`POWCHAIN_LOG` among them replaces the harness's).
    pub fn start_with_env(name: &str, extra_args: &[&str], extra_env: &[(&str, &str)]) -> TestNode {
        let data_dir = tempfile::Builder::new()
            .prefix(&format!("powchain-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let extra_env: Vec<(String, String)> = extra_env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let output = Arc::new(Mutex::new(Vec::new()));
        let child = spawn_child(name, data_dir.path(), &extra_args, &extra_env, &output);
        let (child, address, p2p_port) = wait_until_listening(name, child);
        TestNode {
            url: format!("http://{address}"),
            address,
            name: name.to_owned(),
            p2p_port,
            data_dir,
            extra_args,
            extra_env,
            output,
            child: Some(child),
        }
    }

    /// Replaces the extra command-line arguments for the next `restart`.
    pub fn set_extra_args(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
    }

    /// Replaces the extra environment variables for the next `restart`.
    pub fn set_extra_env(&mut self, extra_env: &[(&str, &str)]) {
        self.extra_env = extra_env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
    }

    /// Every line the node wrote to stdout and stderr so far (all runs), one per line.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .join("\n")
    }

    /// The API token the running node wrote to `<data dir>/.cookie`.
    ///
    /// # Panics
    /// If there is no cookie file.
    pub fn cookie_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join(".cookie"))
            .expect("the node wrote its cookie file")
            .trim()
            .to_owned()
    }

    /// `POST path` with a JSON body and `Authorization: Bearer <token>`: status and JSON body.
    pub fn post_with_token(&self, path: &str, body: &Value, token: &str) -> (u16, Value) {
        let authorization = format!("Bearer {token}");
        let response = self.request(
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &authorization),
            ],
            body.to_string().as_bytes(),
        );
        (response.status, response.json())
    }

    /// Starts the stopped node again, on the same data directory, expecting it to fail
    /// before it listens: its exit status and everything it printed in that run.
    ///
    /// # Panics
    /// If the node starts listening, or does not exit within [`START_DEADLINE`].
    pub fn restart_expecting_failure(&mut self) -> (ExitStatus, String) {
        assert!(self.child.is_none(), "stop or kill the node first");
        let output = Arc::new(Mutex::new(Vec::new()));
        // Nobody waits for the announcement: the stdout lines are only captured.
        let (mut child, _stdout_lines) = spawn_child(
            &self.name,
            self.data_dir.path(),
            &self.extra_args,
            &self.extra_env,
            &output,
        );
        let mut exit = None;
        let give_up = Instant::now() + START_DEADLINE;
        while exit.is_none() && Instant::now() < give_up {
            exit = child.try_wait().expect("poll the node");
            std::thread::sleep(Duration::from_millis(20));
        }
        let Some(exit) = exit else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not exit within {START_DEADLINE:?}", self.name);
        };
        // The forwarding threads end at the pipes' end, just after the exit.
        wait_until(Duration::from_secs(5), "the node's output to end", || {
            Arc::strong_count(&output) == 1
        });
        let printed = output
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .join("\n");
        assert!(
            !printed.contains("HTTP API listening"),
            "{} started although it should have failed",
            self.name
        );
        (exit, printed)
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The child's process id.
    ///
    /// # Panics
    /// If the node is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node is running").id()
    }

    /// SIGKILL: the process ends at once, without any clean-up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the node");
        }
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit.
    ///
    /// # Panics
    /// If the node does not stop in time or exits with a failure.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the node is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let mut exit = None;
        // On a timeout the panic leaves the child in `self`, and Drop kills it.
        wait_until(STOP_DEADLINE, "the node to stop after SIGTERM", || {
            exit = child.try_wait().expect("poll the node");
            exit.is_some()
        });
        self.child = None;
        let status = exit.expect("the node exited");
        assert!(status.success(), "{} stopped with {status}", self.name);
        status
    }

    /// Starts the node again on the same data directory (after `stop` or `kill`); the
    /// HTTP port changes.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the node first");
        let child = spawn_child(
            &self.name,
            self.data_dir.path(),
            &self.extra_args,
            &self.extra_env,
            &self.output,
        );
        let (child, address, p2p_port) = wait_until_listening(&self.name, child);
        self.child = Some(child);
        self.address = address;
        self.p2p_port = p2p_port;
        self.url = format!("http://{address}");
    }

    /// Sends one request with `body` and extra `headers`; `Content-Length` is set unless
    /// a `Transfer-Encoding` header is given, and `Host` unless one is given.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        // A test may name another host (as a browser tricked by DNS rebinding would).
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("Host: {}\r\n", self.address));
        }
        let chunked = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
        if !chunked {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        send(self.address, &request)
    }

    /// `GET path`: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = self.request("GET", path, &[], b"");
        (response.status, response.json())
    }

    /// `GET path` that must answer 200: the JSON body.
    pub fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path} answered {body}");
        body
    }

    /// `POST path` with a JSON body: status and JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        (response.status, response.json())
    }

    /// `POST path` that must answer 200: the JSON body.
    pub fn post_ok(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self.post(path, body);
        assert_eq!(status, 200, "POST {path} {body} answered {answer}");
        answer
    }

    /// `POST path` with raw bytes as the body (no content type).
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, &[], body)
    }

    /// The wallet's default address.
    pub fn address_of_wallet(&self) -> String {
        self.get_ok("/public-key")["address"]
            .as_str()
            .expect("an address")
            .to_owned()
    }

    /// `POST /mine` with a note: the block.
    pub fn mine(&self, data: &str) -> Value {
        self.post_ok("/mine", &json!({ "data": data }))
    }

    /// `POST /transact`: the transaction as the node answered it.
    pub fn transact(&self, recipient: &str, amount: u64) -> Value {
        self.post_ok(
            "/transact",
            &json!({ "recipient": recipient, "amount": amount }),
        )
    }

    /// The tip's height, from `/status`.
    pub fn height(&self) -> u64 {
        self.get_ok("/status")["height"].as_u64().expect("a height")
    }

    /// Asserts the node still answers after whatever came before.
    pub fn assert_serving(&self) {
        let (status, body) = self.get("/status");
        assert_eq!(status, 200, "{} stopped serving: {body}", self.name);
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary; its output lines go to the test's output and to `output`, and its
/// stdout lines to the returned receiver.
fn spawn_child(
    name: &str,
    data_dir: &Path,
    extra_args: &[String],
    extra_env: &[(String, String)],
    output: &Arc<Mutex<Vec<String>>>,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = regtest_command(Path::new(env!("CARGO_BIN_EXE_powchain")), data_dir)
        .args(extra_args)
        .env("POWCHAIN_LOG", "info,redb=warn")
        .envs(extra_env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the powchain binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_sender, lines) = mpsc::channel::<String>();
    forward_lines(
        format!("{name} out"),
        stdout,
        Some(lines_sender),
        Arc::clone(output),
    );
    forward_lines(format!("{name} err"), stderr, None, Arc::clone(output));
    (child, lines)
}

/// Reads the child's stdout until it announces the HTTP address (after the peer-to-peer
/// port).
fn wait_until_listening(
    name: &str,
    (mut child, lines): (Child, mpsc::Receiver<String>),
) -> (Child, SocketAddr, u16) {
    match wait_for_ports(&lines, START_DEADLINE) {
        Ok(ports) => (child, ports.http, ports.p2p_port),
        Err(reason) => {
            let _ = child.kill();
            let exit = child.wait();
            panic!(
                "{name} did not start listening: {reason} (exit: {exit:?}); see its log lines above"
            );
        }
    }
}

/// Copies every line of `pipe` to the test's output (shown when a test fails), to
/// `captured`, and to `lines` while someone listens, so the child never blocks on a full
/// pipe. The thread drops its `captured` handle when the pipe ends.
fn forward_lines(
    label: String,
    pipe: impl Read + Send + 'static,
    lines: Option<mpsc::Sender<String>>,
    captured: Arc<Mutex<Vec<String>>>,
) {
    std::thread::Builder::new()
        .name(label.clone())
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{label}] {line}");
                captured
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(line.clone());
                if let Some(sender) = &lines {
                    // The starter stops listening once the node is up.
                    let _ = sender.send(line);
                }
            }
        })
        .expect("spawn a log forwarding thread");
}

/// Writes `request` and reads the whole response (the server closes the connection).
fn send(address: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(address).expect("connect to the node");
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .expect("set a write timeout");
    // Write from another thread: a server that refuses a large body may answer (and stop
    // reading) before the whole body is written.
    let mut writer = stream.try_clone().expect("clone the stream");
    let request = request.to_vec();
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
        let _ = writer.flush();
    });
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    let _ = writing.join();
    if let Err(error) = read {
        // A reset after the answer arrived (the server closed with our body unread)
        // still leaves a complete answer to parse.
        assert!(
            !raw.is_empty(),
            "reading the response failed before any byte arrived: {error}"
        );
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().expect("a status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        dechunk(rest)
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().expect("a numeric content-length");
        assert!(
            rest.len() >= length,
            "the body is {} bytes, content-length says {length}",
            rest.len()
        );
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|window| window == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("a hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A coin held by a key of the test kit (not by any node's wallet), to build raw
/// transactions for `POST /tx`.
#[derive(Debug, Clone, Copy)]
pub struct TestCoin {
    /// Where it is.
    pub outpoint: OutPoint,
    /// What it holds.
    pub output: TxOut,
    /// The test-kit key seed that spends it.
    pub seed: u8,
}

/// The regtest address of test-kit key `seed`.
pub fn test_key_address(seed: u8) -> String {
    test_address(seed).to_bech32(powchain_consensus::Network::Regtest)
}

/// Pays `amount` from `node`'s wallet to test-kit key `seed` and mines it: a confirmed coin
/// that the test can spend with raw transactions. The node needs spendable coins.
pub fn fund_test_key(node: &TestNode, seed: u8, amount: u64) -> TestCoin {
    let sent = node.transact(&test_key_address(seed), amount);
    node.post_ok("/mine-transactions", &Value::Null);
    let txid: Txid = sent["txid"]
        .as_str()
        .expect("a txid")
        .parse()
        .expect("a valid txid");
    TestCoin {
        outpoint: OutPoint { txid, vout: 0 },
        output: TxOut {
            value: Amount::from_units(amount).expect("an amount in range"),
            address: test_address(seed),
        },
        seed,
    }
}

/// A transaction spending `coin` to `pay_to` (one output of `coin` minus `fee`), signed.
pub fn spend_test_coin(coin: &TestCoin, pay_to: Address, fee: u64) -> Transaction {
    let mut transaction = Transaction {
        version: Transaction::CURRENT_VERSION,
        inputs: TxInputs::Spends(vec![TxIn {
            prevout: coin.outpoint,
            signature: Signature([0; 64]),
        }]),
        outputs: vec![TxOut {
            value: Amount::from_units(coin.output.value.to_units() - fee)
                .expect("an amount in range"),
            address: pay_to,
        }],
    };
    sign_all(&mut transaction, &[coin.output], &[test_key(coin.seed)]);
    transaction
}

/// The hex `POST /tx` takes.
pub fn transaction_hex(transaction: &Transaction) -> String {
    hex::encode(&transaction.encode_to_vec())
}

/// The `error` message of an error answer, checking its shape.
///
/// # Panics
/// If `body` is not `{"error": "<text>"}`.
pub fn error_message(body: &Value) -> &str {
    let object = body.as_object().expect("an error answer is a JSON object");
    assert_eq!(object.len(), 1, "an error answer has one field: {body}");
    object["error"].as_str().expect("`error` is a string")
}

/// `powchain simulate` of three nodes for ten simulated seconds with `extra` arguments, its
/// JSON report written to `json`.
pub fn simulate_small(json: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args([
            "simulate",
            "--nodes",
            "3",
            "--duration",
            "10s",
            "--tick-ms",
            "10",
        ])
        .arg("--json")
        .arg(json)
        .args(extra)
        .env_remove("POWCHAIN_LOG")
        .output()
        .expect("run powchain simulate")
}
