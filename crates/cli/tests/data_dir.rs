//! Damaged or lost data on disk, as the user meets it through the `powchain` binary: a
//! damaged chain file is an error naming it and what to do, never a panic; a lost chain or
//! a lost wallet is never silently replaced (`--reindex`, `--new-wallet` ask for it);
//! `powchain check` passes on a healthy directory, names a lost index row and a tampered
//! coin, and keeps out of a directory another process has locked.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use powchain_bench::harness::NODE_ENVIRONMENT;
use powchain_chain::{ChainError, ChainOptions, ChainState};
use powchain_consensus::encode::Encode;
use powchain_consensus::testkit::test_address;
use powchain_consensus::{Amount, Network, TxOut};
use powchain_node::DirectoryLock;
use redb::TableDefinition;
use support::TestNode;

const PAGE_BYTES: usize = 4096;
const UTXO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("utxo");
const TX_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_index");

fn chain_file(node: &TestNode) -> PathBuf {
    node.data_dir().join("chain.redb")
}

/// A stopped node whose chain is `blocks` blocks above genesis, paying its wallet, and
/// the wallet's address.
fn stopped_node_with_blocks(name: &str, blocks: usize) -> (TestNode, String) {
    let mut node = TestNode::start(name);
    for index in 0..blocks {
        node.mine(&format!("block {index}"));
    }
    let address = node.address_of_wallet();
    node.stop();
    (node, address)
}

/// `powchain check` on `data_dir`, with the node's variables a developer exported removed.
fn check(data_dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_powchain"));
    for variable in NODE_ENVIRONMENT {
        command.env_remove(variable);
    }
    command
        .args([
            "check",
            "--network",
            "regtest",
            "--threads",
            "2",
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .expect("run powchain check")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The first page of `original` whose zeroing makes the storage engine panic while the
/// chain opens (caught, so the error says so), else the first that makes opening fail.
fn damaging_page(original: &[u8]) -> usize {
    let scratch = tempfile::tempdir().expect("temp dir");
    let path = scratch.path().join("chain.redb");
    let mut failing = None;
    for page in 0..original.len() / PAGE_BYTES {
        let mut damaged = original.to_vec();
        damaged[page * PAGE_BYTES..(page + 1) * PAGE_BYTES].fill(0);
        std::fs::write(&path, &damaged).expect("write");
        match ChainState::open(&path, Network::Regtest, ChainOptions::default()) {
            Err(ChainError::Damaged { detail, .. }) if detail.contains("panicked") => {
                return page;
            }
            Err(_) => {
                failing.get_or_insert(page);
            }
            Ok(_) => {}
        }
    }
    failing.expect("some zeroed page makes the chain fail to open")
}

#[test]
fn a_zeroed_page_in_the_chain_file_is_an_error_naming_it_and_reindex_recovers() {
    let (mut node, address) = stopped_node_with_blocks("zeroed-page", 12);
    let path = chain_file(&node);
    let mut bytes = std::fs::read(&path).expect("read the chain file");
    let page = damaging_page(&bytes);
    bytes[page * PAGE_BYTES..(page + 1) * PAGE_BYTES].fill(0);
    std::fs::write(&path, &bytes).expect("zero a page");

    let (status, printed) = node.restart_expecting_failure();
    assert!(!status.success(), "{printed}");
    assert!(
        printed.contains("error: cannot open the node's data")
            && printed.contains(&format!("{} is damaged", path.display()))
            && printed.contains("--reindex"),
        "page {page}: {printed}"
    );
    assert!(
        !printed.contains("RUST_BACKTRACE"),
        "the default panic report is replaced by one line: {printed}"
    );

    node.set_extra_args(&["--reindex"]);
    node.restart();
    assert_eq!(
        node.height(),
        0,
        "the chain starts again, to sync from peers"
    );
    assert_eq!(node.address_of_wallet(), address, "the wallet is kept");
    let aside: Vec<_> = std::fs::read_dir(node.data_dir())
        .expect("list")
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("chain.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept aside");
}

#[test]
fn a_lost_chain_next_to_a_wallet_is_refused_and_reindex_starts_again() {
    let (mut node, address) = stopped_node_with_blocks("lost-chain", 3);
    let path = chain_file(&node);

    std::fs::write(&path, b"").expect("empty the chain file");
    let (status, printed) = node.restart_expecting_failure();
    assert!(!status.success());
    assert!(
        printed.contains(&format!("{} is empty", path.display())) && printed.contains("--reindex"),
        "{printed}"
    );

    std::fs::remove_file(&path).expect("delete the chain file");
    let (status, printed) = node.restart_expecting_failure();
    assert!(!status.success());
    assert!(
        printed.contains(&format!("{} is missing", path.display()))
            && printed.contains("wallet.keys"),
        "{printed}"
    );
    assert!(!path.exists(), "no new chain was started");

    node.set_extra_args(&["--reindex"]);
    node.restart();
    assert_eq!(node.height(), 0);
    assert_eq!(node.address_of_wallet(), address, "the wallet is kept");
}

#[test]
fn a_lost_wallet_next_to_a_chain_is_refused_and_new_wallet_makes_one() {
    let (mut node, address) = stopped_node_with_blocks("lost-wallet", 2);
    let wallet = node.data_dir().join("wallet.keys");
    std::fs::remove_file(&wallet).expect("delete the wallet");

    let (status, printed) = node.restart_expecting_failure();
    assert!(!status.success());
    assert!(
        printed.contains(&format!("{} is missing", wallet.display()))
            && printed.contains("--new-wallet"),
        "{printed}"
    );
    assert!(!wallet.exists(), "no new wallet was made");

    node.set_extra_args(&["--new-wallet"]);
    node.restart();
    assert_eq!(node.height(), 2, "the chain is kept");
    assert_ne!(node.address_of_wallet(), address, "a new wallet");
}

#[test]
fn check_passes_on_a_healthy_directory_and_names_a_lost_index_row_and_a_tampered_coin() {
    let mut node = TestNode::start("check");
    for index in 0..4 {
        node.mine(&format!("block {index}"));
    }
    let locked = check(node.data_dir());
    assert!(!locked.status.success());
    assert!(text(&locked).contains("another node"), "{}", text(&locked));
    node.stop();

    let healthy = check(node.data_dir());
    let printed = text(&healthy);
    assert!(healthy.status.success(), "{printed}");
    assert!(
        printed.contains("blocks: 5 checked (height 4")
            && printed.contains("coins: 4 unspent outputs worth 200,")
            && printed.contains("indexes: 4 transactions located, 4 address-history rows")
            && printed.contains("result: ok"),
        "{printed}"
    );

    // A transaction's row taken out of the transaction index, then put back.
    let (txid, location) = {
        let db = redb::Database::open(chain_file(&node)).expect("open the chain file");
        let write = db.begin_write().expect("write");
        let row = {
            let mut table = write.open_table(TX_INDEX).expect("the tx_index table");
            let (key, value) = table.pop_first().expect("reads").expect("a row");
            (key.value().to_vec(), value.value().to_vec())
        };
        write.commit().expect("commit");
        row
    };
    let lost = check(node.data_dir());
    let printed = text(&lost);
    assert!(!lost.status.success(), "{printed}");
    let hex: String = txid.iter().map(|byte| format!("{byte:02x}")).collect();
    assert!(
        printed.contains(&format!(
            "transaction index differs from a rebuild (3 stored, 4 rebuilt): transaction {hex} \
             is missing"
        )),
        "{printed}"
    );
    {
        let db = redb::Database::open(chain_file(&node)).expect("open the chain file");
        let write = db.begin_write().expect("write");
        write
            .open_table(TX_INDEX)
            .expect("the tx_index table")
            .insert(txid.as_slice(), location.as_slice())
            .expect("put back");
        write.commit().expect("commit");
    }

    // A coin no block created, written into the stored UTXO set.
    {
        let db = redb::Database::open(chain_file(&node)).expect("open the chain file");
        let mut key = [0x77u8; 36];
        key[32..].copy_from_slice(&0u32.to_be_bytes());
        let mut coin = TxOut {
            value: Amount::from_coins(1).expect("in range"),
            address: test_address(9),
        }
        .encode_to_vec();
        coin.extend_from_slice(&1u64.to_le_bytes());
        coin.push(0);
        let write = db.begin_write().expect("write");
        write
            .open_table(UTXO)
            .expect("the utxo table")
            .insert(key.as_slice(), coin.as_slice())
            .expect("tamper");
        write.commit().expect("commit");
    }
    let tampered = check(node.data_dir());
    let printed = text(&tampered);
    assert!(!tampered.status.success(), "{printed}");
    assert!(
        printed.contains("UTXO set differs from a rebuild (5 stored, 4 rebuilt)")
            && printed.contains(&format!("{}:0", "77".repeat(32)))
            && printed.contains("--reindex"),
        "{printed}"
    );
}

#[test]
fn check_refuses_a_directory_whose_lock_is_held_and_runs_once_it_is_free() {
    let (node, _) = stopped_node_with_blocks("check-locked", 2);
    // The lock alone, as a node starting with --reindex holds it while it moves the chain
    // aside: the store itself is not open, so its own lock cannot refuse the check.
    let lock = DirectoryLock::acquire(node.data_dir()).expect("take the directory's lock");
    let locked = check(node.data_dir());
    let printed = text(&locked);
    assert!(!locked.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("{} is in use", node.data_dir().display()))
            && printed.contains(".lock")
            && printed.contains("stop it first"),
        "{printed}"
    );
    assert!(
        !printed.contains("checking"),
        "the chain was not opened: {printed}"
    );

    drop(lock);
    let free = check(node.data_dir());
    let printed = text(&free);
    assert!(free.status.success(), "{printed}");
    assert!(printed.contains("result: ok"), "{printed}");
}

#[test]
fn check_refuses_a_directory_without_a_chain() {
    let empty = tempfile::tempdir().expect("temp dir");
    let output = check(empty.path());
    assert!(!output.status.success());
    assert!(
        text(&output).contains("no chain to check"),
        "{}",
        text(&output)
    );
    assert!(
        !empty.path().join("chain.redb").exists(),
        "nothing was created"
    );
}
