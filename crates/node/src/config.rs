//! `NodeConfig`: the node core's validated settings (the binary turns flags into these).

use std::path::PathBuf;
use std::sync::Arc;

use powchain_consensus::signature_cache::{DEFAULT_SIGNATURE_CACHE_ENTRIES, SignatureCache};
use powchain_consensus::{FeeRate, Network};
use powchain_mempool::MempoolOptions;

/// Settings of a node core.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Which network.
    pub network: Network,
    /// Where the chain, pool and wallet live.
    pub data_dir: PathBuf,
    /// Threads for the nonce search.
    pub miner_threads: usize,
    /// Threads for signature checks while connecting blocks.
    pub signature_threads: usize,
    /// Signature checks the pool remembers as passed, so blocks holding its transactions
    /// are not checked again (0 turns the cache off).
    pub signature_cache_entries: usize,
    /// Pool limits.
    pub mempool: MempoolOptions,
    /// Fee rate the wallet pays unless told otherwise.
    pub wallet_fee_rate: FeeRate,
    /// A file holding the wallet's passphrase: the key file is then encrypted (a plaintext
    /// one is encrypted in place at open). The path only: the passphrase is read at open,
    /// used to derive the key, and wiped.
    pub wallet_passphrase_file: Option<PathBuf>,
    /// Start the chain again from genesis: `chain.redb` is moved aside (to
    /// `chain.redb.damaged-<unix seconds>`), as is a damaged pool store, and the chain is
    /// synced again from peers; the wallet is kept. Also what lets a node start when the
    /// chain file is missing or empty next to a wallet. It does not make a new wallet:
    /// with `wallet.keys` missing next to a chain file that was ever written (the one to
    /// be moved aside, whatever its height, as it may be too damaged to read), the start
    /// is refused unless `new_wallet` asks, before anything is moved.
    pub reindex: bool,
    /// Create a new wallet although `wallet.keys` is missing next to a chain above genesis
    /// (which may pay the wallet that is gone), or next to the chain `reindex` moves aside.
    pub new_wallet: bool,
    /// Keep the chain in memory (redb's in-memory backend) and store the pool nowhere:
    /// nothing of them survives the node. For simulations (`crates/sim`), which run hundreds of nodes in
    /// one process; the wallet's key file is still written to `data_dir`.
    pub in_memory: bool,
    /// Signature checks passed by any node of this process, shared by all of them: for
    /// simulations (`crates/sim`), where hundreds of nodes check the same payments. Looked
    /// up after the node's own cache. `None` (the default, and every real node): the node
    /// checks every signature itself.
    pub shared_signature_checks: Option<Arc<SignatureCache>>,
    /// How long a transaction must have been in the pool before a block template takes it
    /// (0, the default: every pooled transaction). A miner working on a template some
    /// seconds old mines the payments it heard of before then; Bitcoin Core rebuilds a
    /// template on the same tip at most every 5 seconds. Payments that every node has
    /// had time to hear of let peers rebuild a compact block from their pools, without a
    /// round trip for the missing ones. Simulations set it (`crates/sim`).
    pub template_min_pool_age_ms: u64,
}

impl NodeConfig {
    /// Defaults for `network` in `data_dir`: every core for mining and signature checks.
    pub fn new(network: Network, data_dir: PathBuf) -> NodeConfig {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        NodeConfig {
            network,
            data_dir,
            miner_threads: cores,
            signature_threads: cores,
            signature_cache_entries: DEFAULT_SIGNATURE_CACHE_ENTRIES,
            mempool: MempoolOptions::default(),
            wallet_fee_rate: powchain_wallet::DEFAULT_FEE_RATE,
            wallet_passphrase_file: None,
            reindex: false,
            new_wallet: false,
            in_memory: false,
            shared_signature_checks: None,
            template_min_pool_age_ms: 0,
        }
    }

    /// The chain store file.
    pub fn chain_path(&self) -> PathBuf {
        self.data_dir.join("chain.redb")
    }

    /// The pool's store file.
    pub fn pool_path(&self) -> PathBuf {
        self.data_dir.join("mempool.redb")
    }

    /// The wallet's key file.
    pub fn wallet_path(&self) -> PathBuf {
        self.data_dir.join("wallet.keys")
    }
}
