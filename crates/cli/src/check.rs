//! `powchain check`: checks a stopped node's data directory (every main-chain block, and
//! the UTXO set and the indexes against ones rebuilt from genesis) and prints a short
//! summary. The work is `powchain_chain::check`; this file locks the directory, opens,
//! prints and chooses the
//! exit code.

use std::time::Instant;

use anyhow::{Context, bail};
use powchain_chain::ChainError;
use powchain_chain::check::check_store;
use powchain_node::{DirectoryLock, NodeConfig, NodeError};

use crate::args::CheckArgs;

/// Runs the check; an error (a difference, or a store that cannot be opened) makes the
/// binary exit non-zero.
///
/// # Errors
/// The first difference found, or why the data could not be read.
pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir();
    let path = NodeConfig::new(args.network, data_dir.clone()).chain_path();
    // Opening an absent or empty file would create a new chain, which would pass.
    let refuse_without_chain = || {
        if std::fs::metadata(&path).map_or(true, |metadata| metadata.len() == 0) {
            bail!(
                "{} is missing or empty: there is no chain to check in {}",
                path.display(),
                data_dir.display()
            );
        }
        Ok(())
    };
    // Looked at before the lock too, so a directory with no chain is left without a lock
    // file.
    refuse_without_chain()?;
    // The node's own lock, held to the end of the check: the store's lock would refuse a
    // running node, but not one started meanwhile with --reindex, which would move the
    // chain aside under the check (a rename succeeds under an open file).
    let _lock = match DirectoryLock::acquire(&data_dir) {
        Ok(lock) => lock,
        Err(NodeError::DataDirInUse { directory, lock }) => bail!(
            "{} is in use by another process: another node (or `powchain check`) uses this \
             data directory (it holds {}); stop it first: the check reads a stopped node's \
             data",
            directory.display(),
            lock.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot lock {}", data_dir.display()));
        }
    };
    // A node started with --reindex may have moved the chain aside before the lock was
    // taken, and stopped since.
    refuse_without_chain()?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let started = Instant::now();
    println!("checking {} ({})", path.display(), args.network);
    let report = match check_store(&path, args.network, threads) {
        Ok(report) => report,
        Err(ChainError::Corrupt(difference)) => bail!(
            "{} failed the check: {difference}; restore it from a backup, or start the node \
             once with --reindex, which moves it aside and syncs the chain again from peers \
             (the wallet is kept)",
            path.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot check {}", data_dir.display()));
        }
    };
    println!(
        "blocks: {} checked (height {}, tip {}), {} transactions",
        report.blocks, report.height, report.tip, report.transactions
    );
    println!(
        "coins: {} unspent outputs worth {}, equal to a rebuild from genesis",
        report.utxo_count, report.value
    );
    println!(
        "indexes: {} transactions located, {} address-history rows, equal to a rebuild",
        report.located_transactions, report.history_rows
    );
    println!("result: ok ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}
