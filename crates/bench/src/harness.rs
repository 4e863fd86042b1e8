//! Starting the `powchain` binary as a test or benchmark node: one command line, one way to
//! read the ports it listens on. The benchmark (`process.rs`), the binary's integration
//! tests (`crates/cli/tests/support`) and the browser test (`crates/cli/tests/dashboard.rs`)
//! all start nodes through here.
//!
//! ```text
//!   regtest_command(binary, data dir) ──▶ powchain node --network regtest --http-port 0
//!        --p2p-port 0 --p2p-bind 127.0.0.1 (the node's variables a developer exported are
//!        removed)
//!   child stdout lines ──▶ wait_for_ports ──▶ "P2P listening on ws://…" + "HTTP API listening on http://…"
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The environment variables a node reads (the tutorial's and powchain's own): a harness
/// removes them so that what a developer exported does not reach its nodes.
pub const NODE_ENVIRONMENT: [&str; 15] = [
    "HTTP_PORT",
    "P2P_PORT",
    "PEERS",
    "DATA_DIR",
    "NETWORK",
    "MINE",
    "MINER_THREADS",
    "HTTP_BIND",
    "P2P_BIND",
    "REQUIRE_TOKEN",
    "WALLET_PASSPHRASE_FILE",
    "REINDEX",
    "NEW_WALLET",
    "POWCHAIN_TOKEN",
    "POWCHAIN_CONFIG",
];

/// The command that starts `executable` as a regtest node in `data_dir`, on loopback ports
/// the system chooses. Callers add flags, environment and pipes.
pub fn regtest_command(executable: &Path, data_dir: &Path) -> Command {
    node_command(executable, data_dir, "regtest")
}

/// The command that starts `executable` as a node of `network` (`devnet`, `regtest`) in
/// `data_dir`, on loopback ports the system chooses, without the node variables a developer
/// exported. Callers add flags, environment and pipes.
pub fn node_command(executable: &Path, data_dir: &Path, network: &str) -> Command {
    let mut command = Command::new(executable);
    command
        .args([
            "node",
            "--network",
            network,
            "--http-port",
            "0",
            "--p2p-port",
            "0",
            "--p2p-bind",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("NO_COLOR", "1");
    for variable in NODE_ENVIRONMENT {
        command.env_remove(variable);
    }
    command
}

/// Where a started node listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListeningPorts {
    /// The HTTP API (an unspecified bind address is reported as loopback).
    pub http: SocketAddr,
    /// The port peers dial (`ws://127.0.0.1:PORT` on loopback).
    pub p2p_port: u16,
}

/// `HTTP API listening on http://ADDR (port N)` -> the address; an unspecified address
/// (`0.0.0.0`, `::`) is reached on loopback.
pub fn http_listening_address(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("HTTP API listening on http://")?;
    let mut address: SocketAddr = rest.split_whitespace().next()?.parse().ok()?;
    if address.ip().is_unspecified() {
        address.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    Some(address)
}

/// `P2P listening on ws://ADDR (port N)` -> the port.
pub fn p2p_listening_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("P2P listening on ws://")?;
    let address: SocketAddr = rest.split_whitespace().next()?.parse().ok()?;
    Some(address.port())
}

/// Reads a starting node's stdout `lines` until it has announced both ports (the binary
/// prints the P2P line, then the HTTP line once both accept connections), for at most
/// `deadline`.
///
/// # Errors
/// What went wrong: the deadline passed, or the node's stdout closed (it exited).
pub fn wait_for_ports(
    lines: &Receiver<String>,
    deadline: Duration,
) -> Result<ListeningPorts, String> {
    let give_up = Instant::now() + deadline;
    let mut p2p_port = None;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(port) = p2p_listening_port(&line) {
                    p2p_port = Some(port);
                } else if let Some(http) = http_listening_address(&line) {
                    return p2p_port
                        .map(|p2p_port| ListeningPorts { http, p2p_port })
                        .ok_or_else(|| "the node announced HTTP before its peer port".to_owned());
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "the node did not announce its ports within {deadline:?}"
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the node's output ended before it listened (it exited)".to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_the_listening_lines() {
        assert_eq!(
            p2p_listening_port("P2P listening on ws://127.0.0.1:40000 (port 40000)"),
            Some(40000)
        );
        assert_eq!(
            http_listening_address("HTTP API listening on http://0.0.0.0:3001 (port 3001)"),
            Some(SocketAddr::from(([127, 0, 0, 1], 3001)))
        );
        assert_eq!(http_listening_address("data directory: x"), None);
        let (sender, receiver) = std::sync::mpsc::channel();
        for line in [
            "data directory: /tmp/x",
            "P2P listening on ws://127.0.0.1:5001 (port 5001)",
            "HTTP API listening on http://127.0.0.1:3001 (port 3001)",
        ] {
            sender.send(line.to_owned()).expect("the receiver listens");
        }
        assert_eq!(
            wait_for_ports(&receiver, Duration::from_secs(1)),
            Ok(ListeningPorts {
                http: SocketAddr::from(([127, 0, 0, 1], 3001)),
                p2p_port: 5001
            })
        );
        drop(sender);
        assert!(wait_for_ports(&receiver, Duration::from_secs(1)).is_err());
    }
}
