//! `Node`: the chain state, pool, wallet and miner behind one handle.
//!
//! ```text
//!   submit_block ──▶ ChainState::accept_block ──▶ chain events ──▶ pool: drop confirmed and
//!        │   (API, miner: synced before it returns;                 conflicting, re-admit a
//!        │    submit_peer_block: synced within a second)            reorg's losers
//!        └──────────────────────────────────────▶ NodeEvent (broadcast) ──▶ P2P, dashboard
//!                                                 miner: stop searching on the old tip
//!   submit_transaction ──▶ Mempool::accept (coins from a chain snapshot) ──▶ pool store (synced)
//!   send ──▶ Wallet::build_payment (coins: chain + pool) ──▶ submit_transaction
//! ```
//!
//! Invariant: the chain state and the pool sit behind one lock (`Core`), so the pool is
//! always validated against the chain tip it believes in; reads of the stored chain go
//! through snapshots and take no lock. The wallet lock is always taken before the core lock.
//! Every method here blocks; async callers use `spawn_blocking`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use powchain_chain::{
    BlockOutcome, ChainOptions, ChainReader, ChainState, DEFAULT_COIN_CACHE_BYTES,
    DEFAULT_STORE_CACHE_BYTES,
};
use powchain_consensus::signature::{ParallelVerifier, SequentialVerifier};
use powchain_consensus::signature_cache::{
    CacheMode, CachingVerifier, SharedChecks, SignatureCache,
};
use powchain_consensus::{Block, Params};
use powchain_mempool::Mempool;
use powchain_wallet::{Passphrase, Wallet};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::data_dir::{self, DirectoryLock};
use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::log_budget::LogBudget;
use crate::mining::MiningState;
use crate::parked::Parked;
use crate::peers::PeerManager;
use crate::pool_store::PoolStore;

/// Capacity of the event channels; a subscriber further behind than this skips events.
/// A burst of transactions (a reorganisation returning thousands to the pool, a batch
/// submission) can overrun the channel of all events; the chain events have a channel of
/// their own that only blocks fill.
const EVENT_CHANNEL_CAPACITY: usize = 4096;
/// Reorganisation lines logged at once at most (a peer can win cheap reorganisations on
/// regtest at will), then one a second.
const REORG_LINES_BURST: u32 = 10;
/// One more reorganisation line may be logged every this many milliseconds.
const REORG_LINE_INTERVAL_MS: u64 = 1_000;

/// The chain state and the pool, changed together under one lock. Private to the node:
/// callers ask [`Node`] for what they need, so every lock is taken here.
pub(crate) struct Core {
    pub(crate) chain: ChainState,
    pub(crate) mempool: Mempool,
    /// Stored payments waiting, out of the pool, for a transaction they spend.
    pub(crate) parked: Parked,
}

/// What accepting one block did.
pub(crate) struct Submitted {
    /// Where the chain put the block.
    pub(crate) outcome: BlockOutcome,
    /// Blocks that joined the main chain in the call: the block, orphans that were
    /// waiting for it, a reorganisation's new branch.
    pub(crate) connected: u64,
}

/// The node core.
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) params: &'static Params,
    pub(crate) core: Mutex<Core>,
    pub(crate) reader: ChainReader,
    pub(crate) wallet: Mutex<Wallet>,
    pub(crate) pool_store: PoolStore,
    /// Checks pool admissions' signatures and remembers those that pass, so the chain's
    /// verifier (which shares the cache) skips them when a block holds the transaction.
    pub(crate) pool_verifier: CachingVerifier<SharedChecks<SequentialVerifier>>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    /// The chain's events alone (blocks connected and disconnected, tip changes).
    pub(crate) chain_events: broadcast::Sender<NodeEvent>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mining: MiningState,
    pub(crate) peers: OnceLock<Arc<dyn PeerManager>>,
    pub(crate) shutting_down: AtomicBool,
    /// Keeps reorganisation lines from flooding the console.
    pub(crate) reorg_lines: LogBudget,
    /// The data directory is this process's while the node is open (`None` in memory).
    _directory_lock: Option<DirectoryLock>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug, but the data behind it stays consistent
    // (every change to disk is a committed transaction), so keep serving. A panic of the
    // storage engine in the middle of a chain change is caught inside the chain state,
    // which then refuses every later change (`ChainState::guarded`).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The page cache and the coin cache of a node whose stores are in memory
/// (`NodeConfig::in_memory`): a simulation runs hundreds of them.
const IN_MEMORY_CACHE_BYTES: usize = 1024 * 1024;

impl Node {
    /// Opens (or creates) the node's data directory: chain, pool and wallet (encrypted with
    /// the passphrase in `config.wallet_passphrase_file`, if set). A directory that held a
    /// chain or a wallet is never silently started afresh (see `data_dir.rs`).
    ///
    /// # Errors
    /// [`NodeError`] if a store cannot be opened, is damaged or belongs to another network,
    /// the chain or the wallet of an earlier run is missing ([`NodeError::ChainMissing`],
    /// [`NodeError::WalletMissing`]), or the wallet's passphrase cannot be read or does not
    /// open its key file.
    pub fn open(config: NodeConfig, clock: Arc<dyn Clock>) -> Result<Arc<Node>, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        // First of all: nothing in the directory is touched while another process uses it.
        let directory_lock = if config.in_memory {
            None
        } else {
            Some(DirectoryLock::acquire(&config.data_dir)?)
        };
        if config.in_memory {
            // Nothing on disk to move aside or to find missing.
        } else if config.reindex {
            data_dir::refuse_lost_wallet_before_reindex(&config)?;
            data_dir::move_aside(&config.chain_path(), clock.now_ms())?;
        } else {
            data_dir::refuse_lost_chain(&config)?;
        }
        let params = config.network.params();
        let signature_cache = Arc::new(SignatureCache::new(config.signature_cache_entries));
        let block_verifier = CachingVerifier::new(
            Arc::clone(&signature_cache),
            SharedChecks::new(
                ParallelVerifier {
                    threads: config.signature_threads.max(1),
                },
                config.shared_signature_checks.clone(),
            ),
            CacheMode::Consume,
        );
        // In memory, the store's pages are in memory already: a page cache would hold them
        // twice, and a large coin cache would only delay the writes.
        let (cache_bytes, coin_cache_bytes) = if config.in_memory {
            (IN_MEMORY_CACHE_BYTES, IN_MEMORY_CACHE_BYTES)
        } else {
            (DEFAULT_STORE_CACHE_BYTES, DEFAULT_COIN_CACHE_BYTES)
        };
        let chain = ChainState::open(
            &config.chain_path(),
            config.network,
            ChainOptions {
                signature_threads: config.signature_threads.max(1),
                verifier: Some(Arc::new(block_verifier)),
                in_memory: config.in_memory,
                cache_bytes,
                coin_cache_bytes,
                ..ChainOptions::default()
            },
        )?;
        data_dir::refuse_lost_wallet(&config, chain.tip().height)?;
        let reader = chain.reader();
        let mempool = Mempool::new(params, config.mempool);
        let wallet = match &config.wallet_passphrase_file {
            Some(passphrase_file) => {
                // Dropped (and wiped) at the end of this block: the wallet keeps only the
                // derived key.
                let passphrase = Passphrase::read_from_file(passphrase_file)?;
                Wallet::open_or_create_with_passphrase(
                    &config.wallet_path(),
                    config.network,
                    &passphrase,
                )?
            }
            None => Wallet::open_or_create(&config.wallet_path(), config.network)?,
        };
        let pool_store = if config.in_memory {
            PoolStore::none(&config.pool_path())
        } else {
            PoolStore::open(&config.pool_path(), config.reindex, clock.now_ms())?
        };
        let shared_checks = config.shared_signature_checks.clone();
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let (chain_events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let node = Arc::new(Node {
            mining: MiningState::new(config.miner_threads),
            config,
            params,
            core: Mutex::new(Core {
                chain,
                mempool,
                parked: Parked::default(),
            }),
            reader,
            wallet: Mutex::new(wallet),
            pool_store,
            pool_verifier: CachingVerifier::new(
                signature_cache,
                SharedChecks::new(SequentialVerifier, shared_checks),
                CacheMode::Remember,
            ),
            events,
            chain_events,
            clock,
            peers: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            reorg_lines: LogBudget::new(REORG_LINES_BURST, REORG_LINE_INTERVAL_MS),
            _directory_lock: directory_lock,
        });
        node.restore_pool()?;
        Ok(node)
    }

    /// The node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The network's parameters.
    pub fn params(&self) -> &'static Params {
        self.params
    }

    /// The node's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Consistent read-only views of the stored chain (no lock taken).
    pub fn reader(&self) -> &ChainReader {
        &self.reader
    }

    /// A new receiver of all node events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// A new receiver of the chain's events alone: no burst of transactions can make it
    /// skip a block (a subscriber can still fall behind by 4,096 chain events).
    pub fn subscribe_chain(&self) -> broadcast::Receiver<NodeEvent> {
        self.chain_events.subscribe()
    }

    pub(crate) fn publish(&self, event: NodeEvent) {
        // No subscribers is fine.
        if event.is_chain_event() {
            let _ = self.chain_events.send(event.clone());
        }
        let _ = self.events.send(event);
    }

    /// Connects the peer-to-peer layer (once).
    pub fn set_peer_manager(&self, peers: Arc<dyn PeerManager>) {
        let _ = self.peers.set(peers);
    }

    /// The peer-to-peer layer, if it runs.
    pub fn peer_manager(&self) -> Option<&Arc<dyn PeerManager>> {
        self.peers.get()
    }

    /// Marks the node as stopping: mining ends and new mining requests are refused.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.mining.stop_continuous();
        self.mining.interrupt_all();
    }

    /// True once [`Node::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Accepts a block from the miner or the API: stored durably before this returns.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if it is invalid or storage failed.
    pub fn submit_block(&self, block: Block) -> Result<BlockOutcome, NodeError> {
        self.submit_block_with(block, true)
            .map(|submitted| submitted.outcome)
    }

    /// Syncs chain changes still waiting for the disk (blocks from peers), if any.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if storage failed.
    pub fn sync_chain(&self) -> Result<(), NodeError> {
        let mut core = lock(&self.core);
        if core.chain.has_unsynced_changes() {
            core.chain.sync()?;
        }
        Ok(())
    }

    pub(crate) fn submit_block_with(
        &self,
        block: Block,
        synced: bool,
    ) -> Result<Submitted, NodeError> {
        let now = self.clock.now_ms();
        let (result, node_events) = {
            let mut core = lock(&self.core);
            let result = if synced {
                core.chain.accept_block(block, now)
            } else {
                core.chain.accept_block_deferring_sync(block, now)
            };
            let events = core.chain.take_events();
            let node_events = self.apply_chain_events(&mut core, events, now);
            (result, node_events)
        };
        let connected = node_events
            .iter()
            .filter(|event| matches!(event, NodeEvent::BlockConnected { .. }))
            .count() as u64;
        let tip_changed = node_events
            .iter()
            .any(|event| matches!(event, NodeEvent::TipChanged { .. }));
        if tip_changed {
            self.mining.interrupt_all();
        }
        for event in node_events {
            self.publish(event);
        }
        Ok(Submitted {
            outcome: result?,
            connected,
        })
    }
}
