//! The configuration file through the real binary (issue 15): `<data dir>/powchain.toml` is
//! read at start, the environment and the command line beat it, and a mistake in it names
//! the file and the key.

mod support;

use serde_json::json;
use support::TestNode;

/// Writes `text` as the data directory's configuration file.
fn write_config(node: &TestNode, text: &str) {
    std::fs::write(node.data_dir().join("powchain.toml"), text).expect("write powchain.toml");
}

#[test]
fn the_data_directory_file_is_read_and_the_environment_beats_it() {
    let mut node = TestNode::start("config");
    node.post_ok("/mine", &json!({}));
    node.stop();

    write_config(
        &node,
        "# ask for the token on loopback too\nrequire-token = true\n",
    );
    node.restart();
    let (status, body) = node.post("/mine", &json!({}));
    assert_eq!(status, 401, "the file's require-token applies: {body}");
    assert!(
        node.output().contains("powchain.toml: using require-token"),
        "the start-up log names the file and what it used:\n{}",
        node.output()
    );

    node.stop();
    // `off`, as a person would write it: switches read true/false, 1/0, yes/no, on/off.
    node.set_extra_env(&[("REQUIRE_TOKEN", "off")]);
    node.restart();
    node.post_ok("/mine", &json!({}));
    assert!(
        node.output()
            .contains("the command line or environment overrides require-token"),
        "the log says the environment won:\n{}",
        node.output()
    );
}

#[test]
fn a_mistake_in_the_file_names_the_file_and_the_key() {
    let mut node = TestNode::start("config-mistake");
    node.stop();

    write_config(&node, "mine = true\nminer_threads = 2\n");
    let (status, printed) = node.restart_expecting_failure();
    assert_eq!(status.code(), Some(2), "{printed}");
    assert!(printed.contains("unknown key `miner_threads`"), "{printed}");
    assert!(
        printed.contains("miner-threads"),
        "the message lists the keys: {printed}"
    );
    assert!(printed.contains("powchain.toml"), "{printed}");

    write_config(&node, "miner-threads = 0\n");
    let (status, printed) = node.restart_expecting_failure();
    assert!(!status.success(), "{printed}");
    assert!(
        printed.contains("must be at least 1")
            && printed.contains("set by `miner-threads` in the configuration file"),
        "{printed}"
    );

    write_config(&node, "miner-threads = \"many\"\n");
    let (status, printed) = node.restart_expecting_failure();
    assert_eq!(status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("the value came from `miner-threads` in the configuration file"),
        "{printed}"
    );

    write_config(&node, "network = \"devnet\"\n");
    let (status, printed) = node.restart_expecting_failure();
    assert_eq!(status.code(), Some(2), "{printed}");
    assert!(printed.contains("chooses that directory"), "{printed}");
}
