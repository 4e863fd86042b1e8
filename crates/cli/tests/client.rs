//! The command line for people (issue 15): `powchain status` as a summary (and `--json` for
//! scripts), `powchain wallet history`, peer administration (`peers`, `peers remove`,
//! `peers banned`, `peers unban`) and the faucet, each through the real binary against a
//! real node.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use powchain_bench::harness::{node_command, wait_for_ports};
use powchain_consensus::Amount;
use serde_json::{Value, json};
use support::{
    COIN, SUBSIDY, TestNode, error_message, regtest_hello, test_key_address, wait_until,
};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `powchain ARGS --node <node>` with no node variables inherited.
fn run(node: &TestNode, arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args(arguments)
        .args(["--node", &node.url])
        .env_remove("DATA_DIR")
        .env_remove("POWCHAIN_TOKEN")
        .env_remove("POWCHAIN_NODE")
        .env_remove("NETWORK")
        .stdin(Stdio::null())
        .output()
        .expect("run the powchain client")
}

/// `run`, which must succeed: its stdout.
fn run_ok(node: &TestNode, arguments: &[&str]) -> String {
    let output = run(node, arguments);
    assert!(
        output.status.success(),
        "powchain {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `run`, which must fail: its stderr.
fn run_failing(node: &TestNode, arguments: &[&str]) -> String {
    let output = run(node, arguments);
    assert!(
        !output.status.success(),
        "powchain {arguments:?} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).expect("UTF-8 output")
}

/// The value after `label` on its line of a `label  value` summary.
fn field<'a>(summary: &'a str, label: &str) -> &'a str {
    summary
        .lines()
        .find_map(|line| {
            line.strip_prefix(label)
                .filter(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{summary}"))
        .trim()
}

#[test]
fn status_is_a_summary_for_people_and_json_for_scripts() {
    let node = TestNode::start("status-human");
    node.mine("one");
    node.mine("two");
    let summary = run_ok(&node, &["status"]);
    assert_eq!(field(&summary, "network"), "regtest", "{summary}");
    assert_eq!(field(&summary, "height"), "2");
    let tip = node.get_ok("/status")["tip"]
        .as_str()
        .expect("a tip")
        .to_owned();
    assert!(
        field(&summary, "tip").starts_with(&tip[..16]),
        "the tip's hash prefix: {summary}"
    );
    assert_eq!(field(&summary, "peers"), "0 in, 0 out");
    assert_eq!(field(&summary, "pool"), "0 transactions, 0 bytes");
    assert_eq!(field(&summary, "mining"), "no");
    assert_eq!(field(&summary, "balance"), "100 coins (100 spendable)");
    assert_eq!(field(&summary, "sync"), "synced");
    assert!(!summary.contains('{'), "no JSON for people: {summary}");

    let raw: Value = serde_json::from_str(&run_ok(&node, &["status", "--json"]))
        .expect("--json prints the node's answer");
    assert_eq!(raw["height"], 2);
    assert_eq!(raw["tip"], tip.as_str());
    assert_eq!(raw["network"], "regtest");

    let balance = run_ok(&node, &["wallet", "balance"]);
    assert!(balance.contains("spendable    100 coins"), "{balance}");
    let raw: Value = serde_json::from_str(&run_ok(&node, &["wallet", "balance", "--json"]))
        .expect("--json prints the node's answer");
    assert_eq!(raw["spendable"], 2 * SUBSIDY, "units in JSON");
}

#[test]
fn wallet_history_lists_mining_and_a_payment_newest_first() {
    let node = TestNode::start("history");
    assert_eq!(
        run_ok(&node, &["wallet", "history"]).trim(),
        "no wallet transactions yet"
    );
    node.mine("one");
    node.mine("two");
    let sent = node.transact(&test_key_address(4), 250_000_000);
    let txid = sent["txid"].as_str().expect("a txid").to_owned();
    let fee = sent["fee"].as_u64().expect("a fee");

    let pending = node.get_ok("/wallet/history");
    let entries = pending.as_array().expect("a list");
    assert_eq!(entries.len(), 3, "{pending}");
    assert_eq!(entries[0]["txid"], txid.as_str(), "the pool first");
    assert_eq!(entries[0]["status"], "pool");
    assert_eq!(entries[0]["confirmations"], 0);
    assert_eq!(entries[0]["amount"], -(250_000_000 + fee as i64));
    assert_eq!(entries[1]["height"], 2, "then the newest block");
    assert_eq!(entries[1]["amount"], SUBSIDY as i64);
    assert_eq!(entries[1]["coinbase"], true);
    assert_eq!(entries[2]["height"], 1);
    assert_eq!(entries[2]["confirmations"], 2);
    let table = run_ok(&node, &["wallet", "history"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows: {table}");
    assert!(lines[1].starts_with(&txid[..16]), "{table}");
    assert!(lines[1].contains("pool"), "{table}");
    let spent = Amount::from_units(250_000_000 + fee).expect("an amount");
    assert!(
        lines[1].contains(&format!("-{spent} ")),
        "signed coins, the fee included: {table}"
    );
    assert!(
        lines[2].contains("height 2") && lines[2].contains("+50 (mined)"),
        "{table}"
    );

    node.post_ok("/mine-transactions", &Value::Null);
    let confirmed = node.get_ok("/wallet/history");
    let entries = confirmed.as_array().expect("a list");
    assert_eq!(entries.len(), 4, "{confirmed}");
    assert!(entries.iter().all(|entry| entry["status"] == "confirmed"));
    let payment = entries
        .iter()
        .find(|entry| entry["txid"] == txid.as_str())
        .expect("the payment, confirmed");
    assert_eq!(payment["height"], 3);
    assert_eq!(payment["confirmations"], 1);
    assert_eq!(payment["sent"], SUBSIDY, "one coinbase spent");

    // Paged: one entry, and where the rest starts.
    let first = node.request("GET", "/wallet/history?limit=1", &[], b"");
    assert_eq!(first.status, 200);
    assert_eq!(first.json().as_array().map(Vec::len), Some(1));
    assert_eq!(first.header("x-next-offset"), Some("1"));
    let last = node.request("GET", "/wallet/history?offset=3&limit=5", &[], b"");
    assert_eq!(last.json()[0]["height"], 1);
    assert_eq!(last.header("x-next-offset"), None, "nothing older");
    let rows = run_ok(&node, &["wallet", "history", "--limit", "2"]);
    assert_eq!(rows.lines().count(), 3, "a header and two rows: {rows}");
    let raw: Value = serde_json::from_str(&run_ok(
        &node,
        &["wallet", "history", "--json", "--limit", "2"],
    ))
    .expect("--json prints the node's answer");
    assert_eq!(raw.as_array().map(Vec::len), Some(2));

    for (query, said) in [
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=1001", "limit must be between 1 and 1000"),
        ("offset=100000", "at most 100000"),
        ("since=1", "unknown query parameter `since`"),
    ] {
        let (status, body) = node.get(&format!("/wallet/history?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(error_message(&body).contains(said), "{query}: {body}");
    }
}

/// A node that will not connect to `node` again is seen by asking `node` to remove it once
/// more: 404 once no dialler runs for it and it is forgotten.
fn wait_until_forgotten(node: &TestNode, url: &str) {
    wait_until(LIMIT, "the dialler to stop", || {
        !run(node, &["peers", "remove", url]).status.success()
    });
}

#[test]
fn a_removed_peer_is_disconnected_and_not_dialled_again_until_added() {
    let first = TestNode::start("remove-first");
    let first_url = format!("ws://127.0.0.1:{}", first.p2p_port);
    let second_arg = format!("--peers={first_url}");
    let second = TestNode::start_with("remove-second", &[&second_arg]);
    let second_url = format!("ws://127.0.0.1:{}", second.p2p_port);
    let connected = |node: &TestNode, url: &str| {
        node.get_ok("/peers")
            .as_array()
            .is_some_and(|peers| peers.iter().any(|peer| peer["url"] == url))
    };
    wait_until(LIMIT, "the nodes to connect", || {
        connected(&second, &first_url) && connected(&first, &second_url)
    });
    let listed = run_ok(&second, &["peers"]);
    assert!(listed.starts_with("URL"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&first_url) && line.contains("outbound")),
        "{listed}"
    );
    let raw: Value = serde_json::from_str(&run_ok(&second, &["peers", "--json"])).expect("JSON");
    assert_eq!(raw[0]["url"], first_url.as_str());

    // The dialling side removes the peer it was told to keep dialling (--peers).
    let removed = run_ok(&second, &["peers", "remove", &first_url]);
    assert!(
        removed.contains(&format!("removed {first_url}")),
        "{removed}"
    );
    assert!(!connected(&second, &first_url), "disconnected at once");
    wait_until_forgotten(&second, &first_url);
    wait_until(LIMIT, "the other side to see the close", || {
        !connected(&first, &second_url)
    });
    assert!(!connected(&second, &first_url), "not dialled again");
    let unknown = run_failing(&second, &["peers", "remove", &first_url]);
    assert!(
        unknown.contains("404") && unknown.contains("no peer at"),
        "{unknown}"
    );

    // Named again, it is dialled again.
    let added = run_ok(&second, &["peers", "add", &first_url]);
    assert!(added.contains("connecting to"), "{added}");
    wait_until(LIMIT, "the nodes to connect again", || {
        connected(&second, &first_url) && connected(&first, &second_url)
    });

    // The other side removes an inbound peer, which keeps dialling: each attempt is
    // closed, and it is never listed again.
    let removed_at = first.get_ok("/status")["time"].as_u64().expect("a time");
    let answer = first.request(
        "DELETE",
        &format!(
            "/peers/{}",
            second_url.replace(':', "%3A").replace('/', "%2F")
        ),
        &[],
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["disconnected"], 1);
    wait_until(LIMIT, "the removed peer to try twice more", || {
        let ends = second.get_ok("/peers/disconnected");
        ends.as_array().map_or(0, |ends| {
            ends.iter()
                .filter(|end| end["url"] == first_url.as_str())
                .filter(|end| end["at"].as_u64().is_some_and(|at| at >= removed_at))
                .count()
        }) >= 2
    });
    assert!(!connected(&first, &second_url), "let in no more");
    let (status, body) = first.get("/peers");
    assert_eq!(status, 200, "{body}");

    for bad in ["nonsense", "http%3A%2F%2Fx%3A1"] {
        let answer = first.request("DELETE", &format!("/peers/{bad}"), &[], b"");
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
        error_message(&answer.json());
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A peer from 127.0.0.1 that says hello, announcing `listen_port`, then sends `then` (if
/// any): the open connection if the node kept it (no close within 3 s), `None` if the
/// node closed it.
async fn hostile_peer(p2p_port: u16, listen_port: u16, then: Option<Vec<u8>>) -> Option<Socket> {
    let url = format!("ws://127.0.0.1:{p2p_port}");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", p2p_port))
        .await
        .expect("the node accepts peers");
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("the node accepts WebSockets");
    let hello = regtest_hello(
        listen_port,
        0x0bad_cafe ^ u64::from(listen_port),
        "cli-test",
    );
    socket
        .send(Frame::binary(hello.to_bytes()))
        .await
        .expect("send hello");
    if let Some(bytes) = then {
        socket.send(Frame::binary(bytes)).await.expect("send");
    }
    let kept_after = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(kept_after, socket.next()).await {
            Err(_) => return Some(socket),
            Ok(Some(Ok(Frame::Close(_)) | Err(_)) | None) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[test]
fn a_peer_banned_for_misbehaving_is_listed_and_let_in_again_once_unbanned() {
    let node = TestNode::start("unban");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A frame that is no message: banned for it, by its announced port (on loopback).
    let kept = runtime.block_on(hostile_peer(node.p2p_port, 5999, Some(vec![0xff; 16])));
    assert!(kept.is_none(), "a peer that sends garbage is disconnected");
    let banned_peer = "localhost port 5999";
    wait_until(LIMIT, "the ban", || {
        node.get_ok("/peers/banned")
            .as_array()
            .is_some_and(|bans| bans.iter().any(|ban| ban["peer"] == banned_peer))
    });
    let listed = run_ok(&node, &["peers", "banned"]);
    assert!(listed.starts_with("PEER"), "{listed}");
    assert!(listed.contains(banned_peer), "{listed}");
    let refused = runtime.block_on(hostile_peer(node.p2p_port, 5999, None));
    assert!(refused.is_none(), "a banned peer is not let in");

    let lifted = run_ok(&node, &["peers", "unban", banned_peer]);
    assert!(
        lifted.contains("lifted the ban on localhost port 5999"),
        "{lifted}"
    );
    assert_eq!(node.get_ok("/peers/banned"), json!([]));
    let again = run_failing(&node, &["peers", "unban", "localhost:5999"]);
    assert!(again.contains("404") && again.contains("no ban"), "{again}");
    let bad = run_failing(&node, &["peers", "unban", "somewhere"]);
    assert!(bad.contains("400"), "{bad}");

    // Let in again: the handshake is kept and the peer listed while it lasts.
    let session = runtime.block_on(hostile_peer(node.p2p_port, 5999, None));
    assert!(session.is_some(), "an unbanned peer is let in");
    let peers = run_ok(&node, &["peers"]);
    assert!(
        peers
            .lines()
            .any(|line| line.starts_with("ws://127.0.0.1:5999")),
        "{peers}"
    );
    runtime.block_on(async move { drop(session) });
}

#[test]
fn the_regtest_faucet_mines_if_it_must_and_pays_the_address() {
    let node = TestNode::start_with("faucet", &["--require-token"]);
    let data_dir = node.data_dir().to_str().expect("a UTF-8 path").to_owned();
    let recipient = test_key_address(9);
    assert_eq!(node.height(), 0, "an empty wallet");

    let refused = run_failing(&node, &["faucet", &recipient, "2.5"]);
    assert!(
        refused.contains("401"),
        "spending needs the token: {refused}"
    );
    let paid = run_ok(
        &node,
        &["faucet", &recipient, "2.5", "--data-dir", &data_dir],
    );
    assert!(
        paid.starts_with(&format!("sent 2.5 coins to {recipient} in transaction ")),
        "{paid}"
    );
    assert!(node.height() >= 1, "it mined to fill the faucet");
    let txid = paid.trim().rsplit(' ').next().expect("a txid").to_owned();
    let pending = node.get_ok(&format!("/address/{recipient}"));
    assert_eq!(pending["pending"], json!([txid]), "{pending}");
    let token = node.cookie_token();
    let (status, block) = node.post_with_token("/mine-transactions", &Value::Null, &token);
    assert_eq!(status, 200, "{block}");
    let funded = node.get_ok(&format!("/address/{recipient}"));
    assert_eq!(funded["balance"], 5 * COIN / 2, "{funded}");

    let over = run_failing(
        &node,
        &["faucet", &recipient, "10.00000001", "--data-dir", &data_dir],
    );
    assert!(
        over.contains("400") && over.contains("at most 10 coins"),
        "{over}"
    );
    for (body, said) in [
        (json!({"address": recipient, "coins": "0"}), "more than 0"),
        (
            json!({"address": recipient, "coins": "11"}),
            "at most 10 coins",
        ),
        (json!({"address": recipient, "coins": 1.5}), "invalid type"),
        (
            json!({"address": recipient, "coins": "lots"}),
            "invalid coins",
        ),
        (json!({"address": "nope", "coins": "1"}), "invalid address"),
        (
            json!({"address": recipient, "coins": "1", "extra": true}),
            "unknown field",
        ),
    ] {
        let (status, answer) = node.post_with_token("/faucet", &body, &token);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error_message(&answer).contains(said), "{body}: {answer}");
    }
    assert_eq!(
        node.get_ok(&format!("/address/{recipient}"))["balance"],
        250_000_000,
        "no refused request paid anything"
    );
}

/// A devnet node (not the harness's regtest): the child and its HTTP address.
fn start_devnet(data_dir: &Path) -> (Child, SocketAddr) {
    let mut child = node_command(
        Path::new(env!("CARGO_BIN_EXE_powchain")),
        data_dir,
        "devnet",
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start a devnet node");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let ports = wait_for_ports(&received, LIMIT).expect("the devnet node listens");
    (child, ports.http)
}

#[test]
fn an_empty_devnet_faucet_says_to_mine_and_mines_nothing() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (mut child, address) = start_devnet(directory.path());
    let url = format!("http://{address}");
    let recipient_output = Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args(["wallet", "address", "--node", &url])
        .output()
        .expect("run the client");
    let recipient = String::from_utf8_lossy(&recipient_output.stdout)
        .trim()
        .to_owned();
    assert!(
        recipient.starts_with("pow1"),
        "a devnet address: {recipient}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args(["faucet", &recipient, "1", "--node", &url])
        .env_remove("POWCHAIN_TOKEN")
        .env_remove("DATA_DIR")
        .output()
        .expect("run the client");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let status_line = Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args(["status", "--json", "--node", &url])
        .output()
        .expect("run the client");
    let _ = child.kill();
    let _ = child.wait();
    assert!(!output.status.success());
    assert!(
        stderr.contains("503")
            && stderr.contains("the faucet is empty")
            && stderr.contains("--mine"),
        "{stderr}"
    );
    let status: Value = serde_json::from_slice(&status_line.stdout).expect("JSON status");
    assert_eq!(status["height"], 0, "devnet mines nothing for the faucet");
}

#[test]
fn peer_changes_and_the_faucet_need_the_token_when_the_node_requires_one() {
    let node = TestNode::start_with("guarded", &["--require-token"]);
    let token = node.cookie_token();
    let bearer = format!("Bearer {token}");
    let faucet = json!({"address": test_key_address(2), "coins": "1"}).to_string();
    for (method, path, body, with_token) in [
        ("DELETE", "/peers/ws%3A%2F%2F127.0.0.1%3A9", "", 404),
        ("DELETE", "/peers/ws://127.0.0.1:9", "", 404),
        ("DELETE", "/peers/banned/localhost%20port%209", "", 404),
        ("POST", "/faucet", faucet.as_str(), 200),
    ] {
        let refused = node.request(method, path, &[], body.as_bytes());
        assert_eq!(refused.status, 401, "{method} {path}: {}", refused.text());
        let answered = node.request(method, path, &[("Authorization", &bearer)], body.as_bytes());
        assert_eq!(
            answered.status,
            with_token,
            "{method} {path} reaches its handler: {}",
            answered.text()
        );
        error_message(&refused.json());
    }
    // Reads stay open.
    node.get_ok("/wallet/history");
    node.get_ok("/peers/banned");
}
