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

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use powchain_chain::{BlockOutcome, ChainEvent, ChainOptions, ChainReader, ChainState, ChainTip};
use powchain_consensus::signature::{ParallelVerifier, SequentialVerifier};
use powchain_consensus::signature_cache::{CacheMode, CachingVerifier, SignatureCache};
use powchain_consensus::{
    Address, Amount, Block, BlockHash, FeeRate, Header, OutPoint, Params, Transaction, Txid,
};
use powchain_mempool::{Accepted, Mempool};
use powchain_wallet::{Passphrase, SpendableCoin, Wallet};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::mining::MiningState;
use crate::peers::PeerManager;
use crate::pool_store::PoolStore;

/// Capacity of the event channel; a subscriber further behind than this skips events.
const EVENT_CHANNEL_CAPACITY: usize = 4096;
/// Most unspent outputs per address a wallet query reads.
const MAX_WALLET_COINS_PER_ADDRESS: usize = 100_000;

/// The chain state and the pool, changed together under one lock.
pub struct Core {
    /// The chain state.
    pub chain: ChainState,
    /// The transaction pool.
    pub mempool: Mempool,
}

/// A pooled transaction as the API shows it.
#[derive(Clone, Debug)]
pub struct PooledTransaction {
    /// The transaction.
    pub transaction: Transaction,
    /// Its id.
    pub txid: Txid,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// Encoded size.
    pub size: usize,
    /// Fee per byte.
    pub fee_rate: FeeRate,
    /// When it entered the pool.
    pub time_ms: u64,
}

/// The node wallet's balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalletBalance {
    /// Confirmed coins, mature or not.
    pub confirmed: Amount,
    /// The part of `confirmed` that is coinbase output not yet mature.
    pub immature: Amount,
    /// Pool outputs paying the wallet, not yet confirmed.
    pub unconfirmed_incoming: Amount,
    /// Confirmed coins that pooled transactions spend.
    pub unconfirmed_outgoing: Amount,
    /// What a payment can use now: mature confirmed coins not spent in the pool, plus pool
    /// outputs paying the wallet.
    pub spendable: Amount,
}

impl WalletBalance {
    /// Confirmed plus incoming minus outgoing: the balance once the pool confirms.
    pub fn total(&self) -> Amount {
        self.confirmed
            .checked_add(self.unconfirmed_incoming)
            .and_then(|sum| sum.checked_sub(self.unconfirmed_outgoing))
            .unwrap_or(Amount::ZERO)
    }
}

/// A payment the wallet made.
#[derive(Clone, Debug)]
pub struct SentPayment {
    /// The signed transaction, now in the pool.
    pub transaction: Transaction,
    /// Its id.
    pub txid: Txid,
    /// The fee it pays.
    pub fee: Amount,
}

/// The node core.
pub struct Node {
    config: NodeConfig,
    params: &'static Params,
    core: Mutex<Core>,
    reader: ChainReader,
    wallet: Mutex<Wallet>,
    pool_store: PoolStore,
    /// Checks pool admissions' signatures and remembers those that pass, so the chain's
    /// verifier (which shares the cache) skips them when a block holds the transaction.
    pool_verifier: CachingVerifier<SequentialVerifier>,
    events: broadcast::Sender<NodeEvent>,
    clock: Arc<dyn Clock>,
    pub(crate) mining: MiningState,
    peers: OnceLock<Arc<dyn PeerManager>>,
    shutting_down: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug, but the data behind it stays consistent
    // (every change to disk is a committed transaction), so keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Node {
    /// Opens (or creates) the node's data directory: chain, pool and wallet (encrypted with
    /// the passphrase in `config.wallet_passphrase_file`, if set).
    ///
    /// # Errors
    /// [`NodeError`] if a store cannot be opened or belongs to another network, or the
    /// wallet's passphrase cannot be read or does not open its key file.
    pub fn open(config: NodeConfig, clock: Arc<dyn Clock>) -> Result<Arc<Node>, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            NodeError::Internal(format!(
                "cannot create data directory {}: {error}",
                config.data_dir.display()
            ))
        })?;
        let params = config.network.params();
        let signature_cache = Arc::new(SignatureCache::new(config.signature_cache_entries));
        let block_verifier = CachingVerifier::new(
            Arc::clone(&signature_cache),
            ParallelVerifier {
                threads: config.signature_threads.max(1),
            },
            CacheMode::Consume,
        );
        let chain = ChainState::open(
            &config.chain_path(),
            config.network,
            ChainOptions {
                signature_threads: config.signature_threads.max(1),
                verifier: Some(Arc::new(block_verifier)),
                ..ChainOptions::default()
            },
        )?;
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
        let pool_store = PoolStore::open(&config.pool_path())?;
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let node = Arc::new(Node {
            mining: MiningState::new(config.miner_threads),
            config,
            params,
            core: Mutex::new(Core { chain, mempool }),
            reader,
            wallet: Mutex::new(wallet),
            pool_store,
            pool_verifier: CachingVerifier::new(
                signature_cache,
                SequentialVerifier,
                CacheMode::Remember,
            ),
            events,
            clock,
            peers: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
        });
        node.restore_pool()?;
        Ok(node)
    }

    /// Re-admits the stored pool; transactions that are no longer valid are forgotten.
    fn restore_pool(&self) -> Result<(), NodeError> {
        let stored = self.pool_store.load()?;
        if stored.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut core = lock(&self.core);
        let mut pending: Vec<(Transaction, u64)> = stored;
        // Parents may be stored after their children; retry while progress is made.
        loop {
            let before = pending.len();
            let mut retry = Vec::new();
            for (transaction, time_ms) in pending {
                match self.accept_into_pool(&mut core, transaction.clone(), time_ms.min(now)) {
                    Ok(_) => {}
                    Err(NodeError::Mempool(error)) if error.rule() == "missing-input" => {
                        retry.push((transaction, time_ms))
                    }
                    Err(_) => {}
                }
            }
            pending = retry;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let kept: HashSet<Txid> = core
            .mempool
            .entries_by_fee_rate()
            .iter()
            .map(|entry| entry.txid)
            .collect();
        let dropped: Vec<Txid> = self
            .pool_store
            .load()?
            .iter()
            .map(|(transaction, _)| transaction.compute_txid())
            .filter(|txid| !kept.contains(txid))
            .collect();
        self.pool_store.remove(&dropped)?;
        info!(
            restored = kept.len(),
            dropped = dropped.len(),
            "restored the transaction pool"
        );
        Ok(())
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

    /// A new receiver of node events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    fn publish(&self, event: NodeEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    /// Runs `read` with the core locked (for in-memory chain queries: tip, index, locators).
    pub fn with_core<R>(&self, read: impl FnOnce(&Core) -> R) -> R {
        read(&lock(&self.core))
    }

    /// The main chain's tip.
    pub fn tip(&self) -> ChainTip {
        lock(&self.core).chain.tip()
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

    /// Checks and stores headers (headers-first sync).
    ///
    /// # Errors
    /// [`NodeError::Chain`] for the first header that does not connect or breaks a rule.
    pub fn accept_headers(&self, headers: &[Header]) -> Result<usize, NodeError> {
        let now = self.clock.now_ms();
        Ok(lock(&self.core).chain.accept_headers(headers, now)?)
    }

    /// Accepts a block from the miner or the API: stored durably before this returns.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if it is invalid or storage failed.
    pub fn submit_block(&self, block: Block) -> Result<BlockOutcome, NodeError> {
        self.submit_block_with(block, true)
    }

    /// Accepts a block from a peer. Nobody waits on it, so the chain store syncs it within
    /// about a second rather than before returning (`ChainState::accept_block_deferring_sync`):
    /// a sync from peers pays one disk sync a second, not one a block. A crash may lose
    /// the last second of such blocks; peers send them again.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if it is invalid or storage failed.
    pub fn submit_peer_block(&self, block: Block) -> Result<BlockOutcome, NodeError> {
        self.submit_block_with(block, false)
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

    fn submit_block_with(&self, block: Block, synced: bool) -> Result<BlockOutcome, NodeError> {
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
        let tip_changed = node_events
            .iter()
            .any(|event| matches!(event, NodeEvent::TipChanged { .. }));
        if tip_changed {
            self.mining.interrupt_all();
        }
        for event in node_events {
            self.publish(event);
        }
        Ok(result?)
    }

    /// Brings the pool in line with chain changes; returns the events to publish.
    fn apply_chain_events(
        &self,
        core: &mut Core,
        events: Vec<ChainEvent>,
        now: u64,
    ) -> Vec<NodeEvent> {
        let mut node_events = Vec::with_capacity(events.len());
        let mut disconnected_blocks: Vec<Arc<Block>> = Vec::new();
        let mut removed: Vec<Txid> = Vec::new();
        for event in events {
            match event {
                ChainEvent::BlockConnected {
                    hash,
                    height,
                    block,
                } => {
                    removed.extend(core.mempool.remove_for_block(&block));
                    node_events.push(NodeEvent::BlockConnected { hash, height });
                }
                ChainEvent::BlockDisconnected {
                    hash,
                    height,
                    block,
                } => {
                    disconnected_blocks.push(block);
                    node_events.push(NodeEvent::BlockDisconnected { hash, height });
                }
                ChainEvent::TipChanged {
                    hash,
                    height,
                    work,
                    reorg_depth,
                } => node_events.push(NodeEvent::TipChanged {
                    hash,
                    height,
                    work,
                    reorg_depth,
                }),
            }
        }
        if !disconnected_blocks.is_empty() {
            // The losing branch's transactions go back to the pool, oldest block first,
            // followed by what the pool held; anything the new chain made invalid drops.
            let previous_pool = core.mempool.take_all();
            let mut candidates: Vec<Transaction> = Vec::new();
            for block in disconnected_blocks.iter().rev() {
                candidates.extend(block.transactions.iter().skip(1).cloned());
            }
            let returning: HashSet<Txid> =
                candidates.iter().map(Transaction::compute_txid).collect();
            candidates.extend(previous_pool);
            let mut readmitted = 0usize;
            for transaction in candidates {
                let txid = transaction.compute_txid();
                match self.accept_into_pool(core, transaction.clone(), now) {
                    Ok(_) => {
                        if returning.contains(&txid) {
                            readmitted += 1;
                            if let Err(error) = self.pool_store.insert(&txid, &transaction, now) {
                                warn!(%txid, %error, "could not store a re-admitted transaction");
                            }
                            node_events.push(NodeEvent::TransactionAccepted { txid });
                        }
                    }
                    Err(_) => removed.push(txid),
                }
            }
            info!(
                readmitted,
                "returned a reorganisation's transactions to the pool"
            );
        }
        if let Err(error) = self.pool_store.remove(&removed) {
            warn!(%error, "could not forget removed pool transactions");
        }
        node_events
    }

    /// Validates `transaction` against the chain tip and the pool and adds it to the pool.
    fn accept_into_pool(
        &self,
        core: &mut Core,
        transaction: Transaction,
        now: u64,
    ) -> Result<Accepted, NodeError> {
        let missing = core.mempool.missing_inputs(&transaction);
        let snapshot = self.reader.snapshot()?;
        let coins = snapshot.coins(missing.iter())?;
        let next_height = core.chain.tip().height.next();
        Ok(core
            .mempool
            .accept(transaction, &coins, next_height, now, &self.pool_verifier)?)
    }

    /// Accepts a transaction into the pool and stores it durably before returning.
    ///
    /// # Errors
    /// [`NodeError::Mempool`] if the pool refuses it, [`NodeError::PoolStore`] if it could
    /// not be stored.
    pub fn submit_transaction(&self, transaction: Transaction) -> Result<Accepted, NodeError> {
        let now = self.clock.now_ms();
        let accepted = {
            let mut core = lock(&self.core);
            self.accept_and_store(&mut core, transaction, now)?
        };
        self.publish(NodeEvent::TransactionAccepted {
            txid: accepted.txid,
        });
        Ok(accepted)
    }

    fn accept_and_store(
        &self,
        core: &mut Core,
        transaction: Transaction,
        now: u64,
    ) -> Result<Accepted, NodeError> {
        let stored = transaction.clone();
        let accepted = self.accept_into_pool(core, transaction, now)?;
        // The transaction may spend coins of peers' blocks not yet synced; acknowledging
        // it must not outlive them (a restart would drop it as spending missing coins).
        if core.chain.has_unsynced_changes() {
            core.chain.sync()?;
        }
        self.pool_store.insert(&accepted.txid, &stored, now)?;
        self.pool_store.remove(&accepted.evicted)?;
        Ok(accepted)
    }

    /// Signature checks remembered as passed by the pool and not yet met again in a block.
    pub fn signature_cache_entries(&self) -> usize {
        self.pool_verifier.cache().len()
    }

    /// Drops pooled transactions older than the pool's expiry.
    pub fn expire_pool(&self) -> usize {
        let now = self.clock.now_ms();
        let expired = lock(&self.core).mempool.expire(now);
        if let Err(error) = self.pool_store.remove(&expired) {
            warn!(%error, "could not forget expired pool transactions");
        }
        expired.len()
    }

    /// The pooled transactions, best fee rate first.
    pub fn pool_transactions(&self) -> Vec<PooledTransaction> {
        let core = lock(&self.core);
        core.mempool
            .entries_by_fee_rate()
            .into_iter()
            .map(|entry| PooledTransaction {
                transaction: entry.transaction.clone(),
                txid: entry.txid,
                fee: entry.fee,
                size: entry.size,
                fee_rate: entry.fee_rate,
                time_ms: entry.time_ms,
            })
            .collect()
    }

    /// One pooled transaction.
    pub fn pool_transaction(&self, txid: &Txid) -> Option<PooledTransaction> {
        let core = lock(&self.core);
        core.mempool.get(txid).map(|entry| PooledTransaction {
            transaction: entry.transaction.clone(),
            txid: entry.txid,
            fee: entry.fee,
            size: entry.size,
            fee_rate: entry.fee_rate,
            time_ms: entry.time_ms,
        })
    }

    /// Number of pooled transactions and their total size.
    pub fn pool_size(&self) -> (usize, usize) {
        let core = lock(&self.core);
        (core.mempool.len(), core.mempool.total_bytes())
    }

    /// The wallet's default address (the tutorial's public key).
    pub fn wallet_address(&self) -> Address {
        lock(&self.wallet).default_address()
    }

    /// The wallet's default public key, hex.
    pub fn wallet_public_key_hex(&self) -> String {
        lock(&self.wallet).default_public_key_hex()
    }

    /// Every address of the wallet.
    pub fn wallet_addresses(&self) -> Vec<Address> {
        lock(&self.wallet).addresses()
    }

    /// A fresh receive address, stored before it is returned.
    ///
    /// # Errors
    /// [`NodeError::Wallet`] if the key file cannot be written.
    pub fn new_wallet_address(&self) -> Result<Address, NodeError> {
        Ok(lock(&self.wallet).new_address()?)
    }

    /// Coins the wallet may spend and its balance, read with the core locked.
    fn wallet_coins(
        &self,
        wallet: &Wallet,
        core: &Core,
    ) -> Result<(Vec<SpendableCoin>, WalletBalance), NodeError> {
        let snapshot = self.reader.snapshot()?;
        let next_height = core.chain.tip().height.next();
        let maturity = self.params.coinbase_maturity;
        let mut balance = WalletBalance::default();
        let mut spendable = Vec::new();
        let add = |total: &mut Amount, value: Amount| {
            *total = total.checked_add(value).unwrap_or(Amount::MAX_MONEY);
        };
        for address in wallet.addresses() {
            for entry in snapshot.address_coins(&address, MAX_WALLET_COINS_PER_ADDRESS)? {
                let value = entry.coin.output.value;
                add(&mut balance.confirmed, value);
                let mature =
                    !entry.coin.is_coinbase || entry.coin.height.0 + maturity <= next_height.0;
                if !mature {
                    add(&mut balance.immature, value);
                } else if core.mempool.spender_of(&entry.outpoint).is_some() {
                    add(&mut balance.unconfirmed_outgoing, value);
                } else {
                    add(&mut balance.spendable, value);
                    spendable.push(SpendableCoin {
                        outpoint: entry.outpoint,
                        output: entry.coin.output,
                        confirmed: true,
                    });
                }
            }
        }
        for (outpoint, output) in core.mempool.unspent_pool_outputs() {
            if wallet.owns(&output.address) {
                add(&mut balance.unconfirmed_incoming, output.value);
                add(&mut balance.spendable, output.value);
                spendable.push(SpendableCoin {
                    outpoint,
                    output,
                    confirmed: false,
                });
            }
        }
        Ok((spendable, balance))
    }

    /// The wallet's balance.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if the store cannot be read.
    pub fn wallet_balance(&self) -> Result<WalletBalance, NodeError> {
        let wallet = lock(&self.wallet);
        let core = lock(&self.core);
        Ok(self.wallet_coins(&wallet, &core)?.1)
    }

    /// Pays `amount` to `recipient` from the wallet, at `fee_rate` (the configured rate if
    /// `None`); the transaction is in the pool and stored when this returns.
    ///
    /// # Errors
    /// [`NodeError::Wallet`] (zero amount, insufficient funds) or the pool's refusal.
    pub fn send(
        &self,
        recipient: Address,
        amount: Amount,
        fee_rate: Option<FeeRate>,
    ) -> Result<SentPayment, NodeError> {
        let now = self.clock.now_ms();
        let wallet = lock(&self.wallet);
        let mut core = lock(&self.core);
        let (available, _) = self.wallet_coins(&wallet, &core)?;
        let payment = wallet.build_payment(
            &available,
            recipient,
            amount,
            fee_rate.unwrap_or(self.config.wallet_fee_rate),
        )?;
        let accepted = self.accept_and_store(&mut core, payment.transaction.clone(), now)?;
        drop(core);
        drop(wallet);
        self.publish(NodeEvent::TransactionAccepted {
            txid: accepted.txid,
        });
        Ok(SentPayment {
            transaction: payment.transaction,
            txid: accepted.txid,
            fee: accepted.fee,
        })
    }

    /// The outpoints the pool spends, for explorers.
    pub fn pool_spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        lock(&self.core).mempool.spender_of(outpoint)
    }

    /// Builds a block template on the current tip: coinbase to `payout` with `note`, and
    /// the best-paying pooled transactions if `include_pool`.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if the tip's ancestry cannot be read.
    pub fn block_template(
        &self,
        payout: Address,
        note: Vec<u8>,
        include_pool: bool,
    ) -> Result<Block, NodeError> {
        let now = self.clock.now_ms();
        let core = lock(&self.core);
        let tip = core.chain.tip();
        let context = core.chain.header_context(&tip.hash, now)?;
        let budget = self
            .params
            .max_block_bytes
            .saturating_sub(powchain_miner::coinbase_size_estimate(self.params));
        let transactions = if include_pool {
            core.mempool
                .select_for_block(budget)
                .into_iter()
                .map(|entry| (entry.transaction.clone(), entry.fee))
                .collect()
        } else {
            Vec::new()
        };
        Ok(powchain_miner::build_template(
            self.params,
            powchain_miner::TemplateRequest {
                parent: tip.hash,
                height: tip.height.next(),
                bits: context.required_bits,
                min_time_ms: context.median_time_past_ms + 1,
                now_ms: now,
                payout,
                note,
                transactions,
            },
        ))
    }

    /// The hash of the main-chain tip's parent chain at each height is in the reader; this
    /// returns the hash of the main-chain block at `height`, if any.
    pub fn hash_at(&self, height: powchain_consensus::BlockHeight) -> Option<BlockHash> {
        lock(&self.core).chain.hash_at(height)
    }
}
