//! powchain's macro benchmark suite (`powchain bench`): every hot path measured against
//! the machine's own limit, measured in the same run, so the ratios hold on any machine.
//!
//! ```text
//!   Suite::run ──▶ machine (cpu, cores, memory, SHA extensions, load)
//!              ──▶ mining      nonce loop            vs raw SHA-256 compressions, same threads
//!              ──▶ signatures  block connect         vs raw BIP-340 verifies, same threads
//!              ──▶ connect     full blocks; height ~1,000 vs ~100,000; failing a block
//!                              under 100,000 headers vs indexing them
//!              ──▶ pool        admission in memory, in process, over HTTP
//!              ──▶ sync        a fresh node (child process) syncs from another over loopback
//!              ──▶ memory      peak RSS of a node holding the long chain, and while syncing
//!              ──▶ network     3 nodes: submission to confirmation
//!              ──▶ Report { figures: [Figure { name, value, unit, bound, ratio, goal }], machine }
//! ```
//!
//! The suite knows nothing of output: it returns a [`Report`] (serializable to JSON) and
//! reports progress through a callback; the binary renders it. Figures that need a node
//! process (sync, memory, network, HTTP) run the `powchain` binary given in
//! [`SuiteConfig::node_executable`] and are skipped without it.
//!
//! Invariant: every chain the suite builds is a regtest chain in a temporary directory;
//! nothing outside it is written.

mod chain_builder;
mod connect;
mod error;
mod failing;
pub mod harness;
mod http;
mod machine;
mod measure;
mod mining;
mod network;
mod pool;
mod process;
mod report;
mod signatures;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

pub use error::BenchError;
use error::failed;
pub use machine::Machine;
pub use report::{Figure, Goal, Report, ValidationCosts, format_number};

/// The parts of the suite, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    /// Figure 1: nonce search against raw SHA-256 compressions.
    Mining,
    /// Figure 2: signature checks while connecting blocks against raw verifies.
    Signatures,
    /// Figure 3: connecting full blocks; the cost of a block at two heights.
    Connect,
    /// Figure 4: pool admission in memory, in process and over HTTP.
    Pool,
    /// Figures 5 and 6: a fresh node syncing from a peer, and node memory.
    Sync,
    /// Figure 7: submission to confirmation on three nodes.
    Network,
}

impl Group {
    /// Every group, in running order.
    pub const ALL: [Group; 6] = [
        Group::Mining,
        Group::Signatures,
        Group::Connect,
        Group::Pool,
        Group::Sync,
        Group::Network,
    ];

    /// The group's name on the command line and in figure names.
    pub fn name(self) -> &'static str {
        match self {
            Group::Mining => "mining",
            Group::Signatures => "signatures",
            Group::Connect => "connect",
            Group::Pool => "pool",
            Group::Sync => "sync",
            Group::Network => "network",
        }
    }

    /// The group called `name`.
    pub fn from_name(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|group| group.name() == name)
    }
}

/// How big each measurement is.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Sizes {
    /// Seconds of each timed throughput measurement.
    pub seconds: f64,
    /// Rounds of each throughput measurement (the best is kept, for value and bound alike).
    pub rounds: usize,
    /// Transactions in the block whose signatures are checked (figure 2).
    pub signature_block_transactions: usize,
    /// Transaction counts of the full blocks connected (figure 3).
    pub full_block_transactions: [usize; 2],
    /// Heights at which the cost of a block is compared (figure 3).
    pub heights: [u64; 2],
    /// Blocks connected at each of those heights: enough for the coin cache to flush a few
    /// times, as the mean cost counts its flushes.
    pub blocks_per_height: usize,
    /// Transactions in each of those blocks.
    pub height_block_transactions: usize,
    /// Transactions admitted to the pool per measurement (figure 4).
    pub pool_transactions: usize,
    /// Transactions submitted to a node (each synced to disk) per measurement (figure 4).
    pub pool_submissions: usize,
    /// Payments pooled in a node when a block of its tip is replaced (figure 4): more than
    /// the signature cache holds (100,000), as a full pool of 32 MiB does.
    pub pool_reorg_transactions: usize,
    /// Concurrent HTTP clients submitting (figure 4).
    pub http_clients: usize,
    /// Transactions per `POST /txs` (figure 4).
    pub http_batch: usize,
    /// Blocks and transactions per block of the synced chain (figure 5).
    pub sync_blocks: usize,
    /// Transactions per synced block.
    pub sync_transactions_per_block: usize,
    /// Transactions sent through the three-node network (figure 7).
    pub network_transactions: usize,
    /// Headers on top of a block that then fails to connect (figure 3).
    pub failed_branch_headers: usize,
}

impl Sizes {
    /// The full suite: a few minutes on two cores.
    pub const FULL: Sizes = Sizes {
        seconds: 1.0,
        rounds: 3,
        signature_block_transactions: 2_000,
        full_block_transactions: [1_000, 5_000],
        heights: [1_000, 100_000],
        blocks_per_height: 120,
        height_block_transactions: 1_000,
        pool_transactions: 2_000,
        pool_submissions: 2_000,
        pool_reorg_transactions: 120_000,
        http_clients: 8,
        http_batch: 250,
        sync_blocks: 10_000,
        sync_transactions_per_block: 10,
        network_transactions: 2_000,
        failed_branch_headers: 100_000,
    };

    /// A smoke run of every code path (CI): seconds, not minutes; the figures are noisy.
    pub const QUICK: Sizes = Sizes {
        seconds: 0.1,
        rounds: 1,
        signature_block_transactions: 100,
        full_block_transactions: [50, 100],
        heights: [50, 300],
        blocks_per_height: 2,
        height_block_transactions: 20,
        pool_transactions: 40,
        pool_submissions: 20,
        pool_reorg_transactions: 40,
        http_clients: 2,
        http_batch: 8,
        sync_blocks: 60,
        sync_transactions_per_block: 3,
        network_transactions: 30,
        failed_branch_headers: 2_000,
    };
}

/// What to run.
pub struct SuiteConfig {
    /// How big.
    pub sizes: Sizes,
    /// Which groups (all when empty).
    pub groups: Vec<Group>,
    /// The `powchain` binary, for the figures that need node processes; `None` skips them.
    pub node_executable: Option<PathBuf>,
    /// Threads for "all threads" figures (default: every core).
    pub threads: usize,
}

impl SuiteConfig {
    /// The suite with `sizes`, every group, all cores, no node processes.
    pub fn new(sizes: Sizes) -> SuiteConfig {
        SuiteConfig {
            sizes,
            groups: Vec::new(),
            node_executable: None,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    fn runs(&self, group: Group) -> bool {
        self.groups.is_empty() || self.groups.contains(&group)
    }
}

/// Runs the suite; `progress` hears a line before each step.
///
/// # Errors
/// The first measurement that could not be made (a store that failed, a node process that
/// did not start).
pub fn run(config: &SuiteConfig, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let started = Instant::now();
    let machine_before = Machine::detect();
    let mut figures = Vec::new();
    let context = Context {
        sizes: config.sizes,
        threads: config.threads.max(1),
        node_executable: config.node_executable.clone(),
        long_chain: Mutex::new(None),
        sync_payments_per_block: Mutex::new(None),
    };
    for group in Group::ALL {
        if !config.runs(group) {
            continue;
        }
        progress(&format!("{}: measuring", group.name()));
        let group_figures = match group {
            Group::Mining => mining::run(&context, progress)?,
            Group::Signatures => signatures::run(&context, progress)?,
            Group::Connect => connect::run(&context, progress)?,
            Group::Pool => pool::run(&context, progress)?,
            Group::Sync => network::run_sync(&context, progress)?,
            Group::Network => network::run_end_to_end(&context, progress)?,
        };
        for figure in &group_figures {
            progress(&format!("  {}", figure.summary()));
        }
        figures.extend(group_figures);
    }
    let sync_payments_per_block = *context
        .sync_payments_per_block
        .lock()
        .map_err(|_| failed("a benchmark thread panicked"))?;
    let validation =
        sync_payments_per_block.and_then(|payments| ValidationCosts::derive(&figures, payments));
    let mut machine = machine_before;
    machine.load_average_end = Machine::detect().load_average_start;
    Ok(Report {
        suite: if config.sizes == Sizes::QUICK {
            "quick"
        } else if config.sizes == Sizes::FULL {
            "full"
        } else {
            "custom"
        }
        .to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        figures,
        validation,
        machine,
    })
}

/// What every group reads.
pub(crate) struct Context {
    pub(crate) sizes: Sizes,
    pub(crate) threads: usize,
    pub(crate) node_executable: Option<PathBuf>,
    /// The long chain the connect group built, for the memory figure (built there if the
    /// connect group did not run).
    pub(crate) long_chain: Mutex<Option<LongChain>>,
    /// Payments a block of the sync figure's chain held on average (set by the sync group).
    pub(crate) sync_payments_per_block: Mutex<Option<f64>>,
}

/// A chain store of `height` blocks in `dir` (as `chain.redb`).
pub(crate) struct LongChain {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) height: u64,
}

/// `1_thread` or `all_threads`: figure names do not carry the machine's core count.
pub(crate) fn thread_label(threads: usize) -> &'static str {
    if threads == 1 {
        "1_thread"
    } else {
        "all_threads"
    }
}

impl Context {
    /// The thread counts to measure: one, and all (if more than one).
    pub(crate) fn thread_counts(&self) -> Vec<usize> {
        if self.threads > 1 {
            vec![1, self.threads]
        } else {
            vec![1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_suite_runs_every_in_process_figure() {
        let config = SuiteConfig::new(Sizes::QUICK);
        let mut lines = Vec::new();
        let report = run(&config, &mut |line| lines.push(line.to_owned())).expect("the suite runs");
        let names: Vec<&str> = report
            .figures
            .iter()
            .map(|figure| figure.name.as_str())
            .collect();
        for expected in [
            "mining.hashes_per_second.1_thread",
            "signatures.block_connect.1_thread",
            "signatures.block_connect.pool_verified",
            "connect.full_block",
            "connect.height_cost",
            "connect.coin_cache.batched_vs_every_block",
            "pool.accept.in_memory",
            "pool.submit.in_process",
        ] {
            assert!(
                names.iter().any(|name| name.starts_with(expected)),
                "{expected} missing from {names:?}"
            );
        }
        for figure in &report.figures {
            assert!(figure.value.is_finite() && figure.value > 0.0, "{figure:?}");
            assert!(figure.bound.is_finite() && figure.bound > 0.0, "{figure:?}");
            assert!(figure.ratio.is_finite() && figure.ratio > 0.0, "{figure:?}");
        }
        let json = serde_json::to_value(&report).expect("serializes");
        assert!(json["figures"][0]["ratio"].is_number());
        assert!(json["machine"]["logicalCpus"].is_number());
        assert!(!lines.is_empty());
    }
}
