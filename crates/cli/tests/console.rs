//! What a person meets at the node's console (issue 15): logs written to a file or a pipe
//! carry no colour codes (bug 7); a bad value in a tutorial variable names the variable
//! (bug 9); a start that fails on a port in use leaves nothing behind (bug 2); a second
//! node in the same folder is told once what to do (bug 3); the largest amount is
//! insufficient funds, not an overflow (bug 4). And the lines a person follows at `info`
//! (README's "What the console says"): peers connecting and leaving, new blocks, syncs,
//! reorganisations, and a tutorial node told it is not a powchain peer.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use powchain_bench::harness::regtest_command;
use serde_json::{Value, json};
use support::{TestNode, wait_until};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = regtest_command(Path::new(env!("CARGO_BIN_EXE_powchain")), dir.path())
        .env_remove("NO_COLOR")
        .env("POWCHAIN_LOG", "info,redb=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = received.recv_timeout(LIMIT) {
        let done = line.contains("listening on port");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|line| line.contains("listening on port")),
        "the node logged its start: {seen:?}"
    );
    assert!(
        seen.iter().all(|line| !line.contains('\u{1b}')),
        "no escape codes in piped logs: {seen:?}"
    );
}

#[test]
fn a_bad_network_variable_is_named_as_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_powchain"))
        .arg("--data-dir")
        .arg(dir.path())
        .env("NETWORK", "foo")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("NETWORK") && message.contains("foo"),
        "names the variable and its value: {message}"
    );
    assert!(
        std::fs::read_dir(dir.path()).is_ok_and(|mut entries| entries.next().is_none()),
        "nothing created"
    );
}

#[test]
fn a_start_that_fails_on_a_port_in_use_creates_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("bound").port().to_string();
    for (flag, other) in [("--http-port", "--p2p-port"), ("--p2p-port", "--http-port")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("node");
        let output = Command::new(env!("CARGO_BIN_EXE_powchain"))
            .args([
                "node",
                "--network",
                "regtest",
                other,
                "0",
                flag,
                port.as_str(),
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .env("NO_COLOR", "1")
            .env_remove("HTTP_PORT")
            .env_remove("P2P_PORT")
            .env_remove("DATA_DIR")
            .env_remove("PEERS")
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag}: {message}");
        assert!(
            message.contains(port.as_str()),
            "{flag}: names the port: {message}"
        );
        assert!(
            !data_dir.exists(),
            "{flag}: nothing created: {:?}",
            std::fs::read_dir(&data_dir).map(|entries| entries.count())
        );
    }
}

#[test]
fn a_second_node_in_the_same_folder_is_told_once_what_to_do() {
    let node = TestNode::start("console-first");
    let output = regtest_command(Path::new(env!("CARGO_BIN_EXE_powchain")), node.data_dir())
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{message}");
    assert!(message.contains("in use"), "{message}");
    assert!(
        message.contains("HTTP_PORT") && message.contains("--data-dir"),
        "suggests another folder: {message}"
    );
    assert_eq!(
        message.matches("in use").count(),
        1,
        "said once, not repeated down the error chain: {message}"
    );
    node.assert_serving();
}

#[test]
fn the_largest_amount_is_insufficient_funds() {
    let node = TestNode::start("console-amount");
    node.mine("coins");
    let recipient = node.address_of_wallet();
    let (status, body) = node.post(
        "/transact",
        &json!({ "recipient": recipient, "amount": 2_100_000_000_000_000u64 }),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("insufficient funds"), "{message}");
}

/// Waits until `node` has logged a line holding every one of `parts`; that line.
fn wait_for_line(node: &TestNode, parts: &[&str]) -> String {
    let mut found = None;
    wait_until(
        LIMIT,
        &format!("{} to log a line with {parts:?}", node.name),
        || {
            found = node
                .output()
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .map(str::to_owned);
            found.is_some()
        },
    );
    found.expect("found")
}

fn peer_url(node: &TestNode) -> String {
    format!("ws://127.0.0.1:{}", node.p2p_port)
}

#[test]
fn two_nodes_log_the_peer_and_each_new_block() {
    let miner = TestNode::start("console-miner");
    let mut follower = TestNode::start_with("console-follower", &["--peers", &peer_url(&miner)]);
    wait_for_line(
        &follower,
        &[&format!(
            "peer connected: {} (outbound, height 0)",
            peer_url(&miner)
        )],
    );
    wait_for_line(
        &miner,
        &[&format!(
            "peer connected: {} (inbound, height 0)",
            peer_url(&follower)
        )],
    );
    miner.mine("hello");
    wait_for_line(&miner, &["mined block #1 (1 tx)"]);
    let line = wait_for_line(
        &follower,
        &[
            &format!("block #1 from {} (1 tx, ", peer_url(&miner)),
            " ms)",
        ],
    );
    assert!(!line.contains("synced"), "{line}");
    let follower_url = peer_url(&follower);
    follower.stop();
    wait_for_line(
        &miner,
        &[&format!(
            "peer left: {follower_url} (closed by peer: the node is shutting down)"
        )],
    );
    for line in miner.output().lines() {
        assert!(
            !line.contains("socket connected") && !line.contains("peer disconnected"),
            "the old lines are gone: {line}"
        );
    }
}

/// The blocks a `synced N blocks from <peer>` or `block #H from <peer>` line counts.
fn blocks_logged_from(output: &str, peer: &str) -> u64 {
    output
        .lines()
        .filter_map(|line| {
            if let Some(rest) = line.split("synced ").nth(1) {
                let (count, rest) = rest.split_once(' ')?;
                rest.contains(&format!("from {peer}"))
                    .then(|| count.parse::<u64>().ok())
                    .flatten()
            } else {
                line.contains(&format!(" from {peer} (")).then_some(1)
            }
        })
        .sum()
}

#[test]
fn a_sync_is_logged_as_blocks_synced_not_a_line_per_block() {
    const BLOCKS: u64 = 30;
    let source = TestNode::start("console-source");
    for index in 0..BLOCKS {
        source.mine(&format!("block {index}"));
    }
    let syncing = TestNode::start_with("console-syncing", &["--peers", &peer_url(&source)]);
    let last = wait_for_line(
        &syncing,
        &[
            "synced ",
            &format!("from {}", peer_url(&source)),
            &format!("to #{BLOCKS}"),
        ],
    );
    assert!(last.contains(" blocks from "), "{last}");
    assert_eq!(syncing.height(), BLOCKS);
    let output = syncing.output();
    assert_eq!(
        blocks_logged_from(&output, &peer_url(&source)),
        BLOCKS,
        "every block counted once: {output}"
    );
    let block_lines = output
        .lines()
        .filter(|line| line.contains(" block #"))
        .count();
    assert!(block_lines <= 1, "not a line per block: {output}");
}

#[test]
fn a_reorg_logs_how_many_blocks_it_replaced() {
    let short = TestNode::start("console-short");
    let long = TestNode::start("console-long");
    short.mine("short 1");
    // Two blocks: the branch wins (more work) as its second block connects.
    for index in 0..2 {
        long.mine(&format!("long {index}"));
    }
    let tip = long.get_ok("/status")["tip"]
        .as_str()
        .expect("a tip")
        .to_owned();
    short.post_ok("/peers", &json!({ "url": peer_url(&long) }));
    let line = wait_for_line(&short, &["reorg: "]);
    assert!(
        line.contains(&format!(
            "reorg: 1 block replaced, new tip #2 {}",
            &tip[..16]
        )),
        "{line}"
    );
    assert_eq!(short.height(), 2);
    assert!(
        !long.output().contains("reorg: "),
        "the longer chain stays: {}",
        long.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tutorial_node_is_told_it_is_not_a_powchain_peer_and_the_node_says_so() {
    let node = TestNode::start("console-stranger");
    let (mut socket, _) = tokio_tungstenite::connect_async(peer_url(&node))
        .await
        .expect("the peer port takes WebSockets");
    socket
        .send(Frame::text(r#"{"type":"CHAIN","chain":[]}"#))
        .await
        .expect("send the tutorial's chain");
    let close = tokio::time::timeout(LIMIT, async {
        loop {
            match socket.next().await {
                Some(Ok(Frame::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await
    .expect("answered in time")
    .expect("a close frame, not a silent drop");
    assert_eq!(close.code, CloseCode::Protocol);
    assert_eq!(
        close.reason.as_str(),
        "not a powchain peer: expected a binary hello"
    );
    let line = tokio::task::block_in_place(|| {
        wait_for_line(
            &node,
            &[
                "not a powchain peer: 127.0.0.1:",
                r#"(inbound) sent a text frame ({"type":"CHAIN","chain":[]}) first"#,
            ],
        )
    });
    assert!(line.contains("WARN"), "{line}");
    let (status, _) = node.get("/status");
    assert_eq!(status, 200);
    let peers: Value = node.get_ok("/peers");
    assert_eq!(peers, json!([]));
}
