//! The README's curl flow, run as written (issue 15: "the README's flows still work as
//! written"): the shell block under "The tutorial's flow with curl" runs in bash against two
//! connected regtest nodes, with only `localhost:3001` / `localhost:3002` replaced by their
//! ports, and node 2 ends up holding the 12.5 coins the flow pays it.
//!
//! Needs `bash`, `curl` and `sed` (`.ci/run` installs curl where it is missing).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{COIN, TestNode, wait_until};

/// The first ```sh block after `heading` in the README.
fn shell_block_after(heading: &str) -> String {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("the README has {heading:?}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("a ```sh block follows {heading:?}"))
        .0;
    block.to_owned()
}

#[test]
fn the_readme_curl_flow_runs_as_written() {
    let first = TestNode::start("readme-1");
    let peer = format!("ws://127.0.0.1:{}", first.p2p_port);
    let second = TestNode::start_with("readme-2", &["--peers", &peer]);
    wait_until(Duration::from_secs(30), "the nodes to connect", || {
        first
            .get_ok("/peers")
            .as_array()
            .is_some_and(|peers| !peers.is_empty())
    });

    let script = shell_block_after("## The tutorial's flow with curl")
        .replace("localhost:3001", &first.address.to_string())
        .replace("localhost:3002", &second.address.to_string());
    assert!(script.contains("curl"), "{script}");
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .expect("bash runs (with curl and sed installed)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the README's flow failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("\"error\""),
        "no step of the flow was refused:\n{stdout}"
    );

    // The payment was mined by node 1 and reached node 2 with the block.
    wait_until(
        Duration::from_secs(30),
        "node 2 to hold the payment",
        || second.get_ok("/balance")["confirmed"].as_u64() == Some(12 * COIN + COIN / 2),
    );
}
