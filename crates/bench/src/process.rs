//! Node processes: the `powchain` binary started on regtest on loopback ports chosen by
//! the system, in a data directory the suite prepared, so its memory is its own.
//!
//! ```text
//!   NodeProcess::start ──spawn──▶ powchain node --network regtest --http-port 0 --p2p-port 0
//!        │                          stdout ──▶ reader thread ──▶ "P2P listening on ..."
//!        │                                                     "HTTP API listening on ..."
//!        ├─ client() ──▶ HttpClient         ├─ peak_rss_bytes() ◀── /proc/<pid>/status VmHWM
//!        └─ Drop: SIGKILL and reap (the data directory is the caller's to delete)
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{BenchError, failed};
use crate::harness::{regtest_command, wait_for_ports};
use crate::http::HttpClient;

/// The node's stderr, in its data directory.
const LOG_FILE: &str = "node.log";

/// How long a node may take to open its data and listen.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// A running node process.
pub(crate) struct NodeProcess {
    child: Child,
    data_dir: PathBuf,
    pub(crate) http: SocketAddr,
    pub(crate) p2p_port: u16,
}

impl NodeProcess {
    /// Starts `executable` as a regtest node in `data_dir`, dialling `peers`, with the
    /// node's defaults otherwise (every core for signatures, one mining thread).
    pub(crate) fn start(
        executable: &Path,
        data_dir: &Path,
        peers: &[String],
    ) -> Result<NodeProcess, BenchError> {
        let mut command = regtest_command(executable, data_dir);
        // The suite builds chain stores that pay its own keys: a node started on one makes
        // a wallet of its own, which it would refuse next to a chain unless asked.
        command
            .args(["--miner-threads", "1", "--new-wallet"])
            .env(
                "POWCHAIN_LOG",
                std::env::var("POWCHAIN_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Warnings only (bans, dropped peers): a failed figure quotes their tail.
            .stderr(std::fs::File::create(data_dir.join(LOG_FILE))?);
        if !peers.is_empty() {
            command.arg("--peers").arg(peers.join(","));
        }
        let mut child = command.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("the node's stdout was not piped"))?;
        let (sender, receiver) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Keep draining after the listener lines, so the node never blocks on a
                // full pipe.
                let _ = sender.send(line);
            }
        });
        let ports = match wait_for_ports(&receiver, START_DEADLINE) {
            Ok(ports) => ports,
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "the node in {} did not start listening: {reason}",
                    data_dir.display()
                )));
            }
        };
        Ok(NodeProcess {
            child,
            data_dir: data_dir.to_path_buf(),
            http: ports.http,
            p2p_port: ports.p2p_port,
        })
    }

    /// The last `lines` lines the node logged (warnings and errors), for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.data_dir.join(LOG_FILE)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The address peers dial.
    pub(crate) fn p2p_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.p2p_port)
    }

    /// The address of the node's transaction stream (`GET /txs/ws`).
    pub(crate) fn transaction_stream_url(&self) -> String {
        format!("ws://{}/txs/ws", self.http)
    }

    /// A new HTTP connection to the node, carrying its API token if it wrote one (the
    /// `.cookie` file in its data directory), as a local client of the node would.
    pub(crate) fn client(&self) -> Result<HttpClient, BenchError> {
        let token = std::fs::read_to_string(self.data_dir.join(".cookie"))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|token| !token.is_empty());
        HttpClient::connect(self.http, token)
    }

    /// `GET /status`.
    pub(crate) fn status(&self) -> Result<Value, BenchError> {
        self.client()?.expect_ok("GET", "/status", None)
    }

    /// The node's peak resident memory so far (Linux `VmHWM`), in bytes.
    pub(crate) fn peak_rss_bytes(&self) -> Result<u64, BenchError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| failed("no VmHWM in /proc/<pid>/status"))
    }

    /// Polls `GET /status` until `condition` holds, at most `deadline`.
    pub(crate) fn wait_for_status(
        &self,
        deadline: Duration,
        what: &str,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> Result<Value, BenchError> {
        let give_up = Instant::now() + deadline;
        let mut client = self.client()?;
        loop {
            let status = client.expect_ok("GET", "/status", None)?;
            if condition(&status) {
                return Ok(status);
            }
            if Instant::now() > give_up {
                return Err(failed(format!(
                    "gave up after {deadline:?} waiting for {what}: {status}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProcess {
    /// Polls `GET /status` until the tip reaches `height`; fails if the tip does not move
    /// for `stall` (a sync that stopped: a dropped or banned peer).
    pub(crate) fn wait_for_height(&self, height: u64, stall: Duration) -> Result<f64, BenchError> {
        let started = Instant::now();
        let mut client = self.client()?;
        let mut last = (0u64, Instant::now());
        loop {
            let status = client.expect_ok("GET", "/status", None)?;
            let now_height = status_height(&status);
            if now_height >= height {
                return Ok(started.elapsed().as_secs_f64());
            }
            if now_height != last.0 {
                last = (now_height, Instant::now());
            } else if last.1.elapsed() > stall {
                return Err(failed(format!(
                    "the sync stalled at height {now_height} of {height} for {stall:?}: \
                     {status}\nits log ends:\n{}",
                    self.log_tail(20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `height` field of a status answer.
pub(crate) fn status_height(status: &Value) -> u64 {
    status["height"].as_u64().unwrap_or(0)
}
