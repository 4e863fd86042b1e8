//! What a person meets at the node's console (issue 15): logs written to a file or a pipe
//! carry no colour codes (bug 7); a bad value in a tutorial variable names the variable
//! (bug 9); a start that fails on a port in use leaves nothing behind (bug 2); a second
//! node in the same folder is told once what to do (bug 3); the largest amount is
//! insufficient funds, not an overflow (bug 4).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use powchain_bench::harness::regtest_command;
use serde_json::json;
use support::TestNode;

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
