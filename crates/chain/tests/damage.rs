//! Damaged stores: every failure of the storage engine while opening, a panic inside it
//! included, comes back as an error naming the file; `check_store` finds a tampered coin.

mod common;

use std::panic;
use std::path::Path;

use common::{NOW_MS, open_with_coin_cache, store_path};
use powchain_chain::check::check_store;
use powchain_chain::{ChainError, ChainOptions, ChainState};
use powchain_consensus::Network;
use powchain_consensus::testkit::TestChain;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const PAGE_BYTES: usize = 4096;
const UTXO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("utxo");

/// A store of a chain with payments, every block's coins written to the tables.
fn stored_chain(dir: &Path) {
    let mut test_chain = TestChain::regtest_with_mature_coins(3);
    test_chain.mine_empty(20);
    let mut chain = open_with_coin_cache(dir, 0);
    for block in &test_chain.blocks[1..] {
        chain.accept_block(block.clone(), NOW_MS).expect("valid");
    }
}

fn open_store(path: &Path) -> Result<ChainState, ChainError> {
    ChainState::open(path, Network::Regtest, ChainOptions::default())
}

#[test]
fn a_zeroed_page_is_an_error_naming_the_file_never_a_panic() {
    let healthy = tempfile::tempdir().expect("temp dir");
    stored_chain(healthy.path());
    let original = std::fs::read(store_path(healthy.path())).expect("read the store");
    let pages = original.len() / PAGE_BYTES;
    assert!(pages > 4, "a store of {} bytes", original.len());
    let mut refused = 0;
    let mut panics_caught = 0;
    for page in 0..pages {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = store_path(dir.path());
        let mut damaged = original.clone();
        damaged[page * PAGE_BYTES..(page + 1) * PAGE_BYTES].fill(0);
        std::fs::write(&path, &damaged).expect("write the damaged store");
        // A panic escaping `open` fails the test here.
        let opened = panic::catch_unwind(|| open_store(&path).map(|_| ()))
            .unwrap_or_else(|_| panic!("opening with page {page} zeroed panicked"));
        if let Err(error) = opened {
            let message = error.to_string();
            assert!(
                matches!(error, ChainError::Damaged { .. })
                    && message.contains(&path.display().to_string())
                    && message.contains("--reindex"),
                "page {page}: {message}"
            );
            refused += 1;
            if message.contains("the storage engine panicked") {
                panics_caught += 1;
            }
        }
    }
    // The header page at least holds what redb cannot do without, and on most pages of
    // the tree redb panics (redb 4.6: "entered unreachable code", "invalid page type").
    assert!(refused > 0, "no zeroed page of {pages} was noticed");
    assert!(panics_caught > 0, "no zeroed page made redb panic");
}

#[test]
fn a_store_in_use_by_another_process_is_named_as_such() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = store_path(dir.path());
    let _first = open_store(&path).expect("opens");
    let error = open_store(&path).err().expect("locked");
    assert!(matches!(error, ChainError::InUse { .. }), "{error}");
    assert!(error.to_string().contains("another node"), "{error}");
}

#[test]
fn check_passes_on_a_healthy_store_and_names_a_tampered_coin() {
    let dir = tempfile::tempdir().expect("temp dir");
    stored_chain(dir.path());
    let path = store_path(dir.path());
    let report = check_store(&path, Network::Regtest, 2).expect("a healthy store passes");
    assert_eq!(report.blocks, report.height.0 + 1);
    assert!(report.utxo_count > 3 && report.transactions >= report.blocks);
    {
        let db = redb::Database::open(&path).expect("open");
        let (key, mut value) = {
            let read = db.begin_read().expect("read");
            let table = read.open_table(UTXO).expect("utxo table");
            let (key, value) = table
                .iter()
                .expect("iterate")
                .next()
                .expect("a coin")
                .expect("row");
            (key.value().to_vec(), value.value().to_vec())
        };
        // The first byte of the amount.
        value[0] ^= 1;
        let write = db.begin_write().expect("write");
        write
            .open_table(UTXO)
            .expect("utxo table")
            .insert(key.as_slice(), value.as_slice())
            .expect("tamper");
        write.commit().expect("commit");
    }
    let error = check_store(&path, Network::Regtest, 2).expect_err("a tampered coin");
    let message = error.to_string();
    assert!(
        message.contains("UTXO set differs") && message.contains("stored as"),
        "{message}"
    );
}
