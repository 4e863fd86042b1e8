//! Mining for the node: one block on demand, or continuously on a background OS thread,
//! restarted whenever the tip moves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use powchain_chain::BlockOutcome;
use powchain_consensus::Block;
use powchain_miner::{HashCounter, SearchOutcome, search};
use tracing::{debug, info, warn};

use crate::error::NodeError;
use crate::node::Node;

/// The miner's shared state.
pub(crate) struct MiningState {
    threads: usize,
    counter: HashCounter,
    /// Stop flags of the searches under way; raised when the tip changes.
    active: Mutex<Vec<Arc<AtomicBool>>>,
    continuous: AtomicBool,
    /// The continuous miner's thread, once started (a test waits for it to end).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Hashes per second, as `f64` bits, smoothed.
    hashrate_bits: AtomicU64,
    last_sample: Mutex<Option<(u64, u64)>>,
    /// Tests: runs once just before the next search registers its stop flag.
    #[cfg(test)]
    pub(crate) before_registering: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl MiningState {
    pub(crate) fn new(threads: usize) -> MiningState {
        MiningState {
            threads: threads.clamp(1, powchain_miner::MAX_THREADS),
            counter: HashCounter::default(),
            active: Mutex::new(Vec::new()),
            continuous: AtomicBool::new(false),
            thread: Mutex::new(None),
            hashrate_bits: AtomicU64::new(0f64.to_bits()),
            last_sample: Mutex::new(None),
            #[cfg(test)]
            before_registering: Mutex::new(None),
        }
    }

    #[cfg(test)]
    fn run_before_registering(&self) {
        let run = self
            .before_registering
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(run) = run {
            run();
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Vec<Arc<AtomicBool>>> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops every search under way (they rebuild on the new tip).
    pub(crate) fn interrupt_all(&self) {
        for stop in self.active().iter() {
            stop.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn stop_continuous(&self) {
        self.continuous.store(false, Ordering::SeqCst);
    }
}

impl Node {
    /// Mines one block on the current tip, paying the wallet's default address, with `note`
    /// in the coinbase and, if `include_pool`, the best-paying pooled transactions. If the
    /// tip moves during the search, starts again on the new tip. Blocks until a block of
    /// ours joins the main chain.
    ///
    /// # Errors
    /// [`NodeError::ShuttingDown`] if the node stops first; chain errors.
    pub fn mine_one(&self, note: Vec<u8>, include_pool: bool) -> Result<Block, NodeError> {
        self.mine_while(note, include_pool, &|| true)?
            .ok_or(NodeError::ShuttingDown)
    }

    /// [`Node::mine_one`], giving up (`None`) when a search is interrupted and
    /// `keep_going` says no more: continuous mining stops within milliseconds of
    /// [`Node::stop_mining`] instead of going on until it finds a block.
    fn mine_while(
        &self,
        note: Vec<u8>,
        include_pool: bool,
        keep_going: &dyn Fn() -> bool,
    ) -> Result<Option<Block>, NodeError> {
        loop {
            if self.is_shutting_down() {
                return Err(NodeError::ShuttingDown);
            }
            // The stop flag is registered before the template is built: a block that
            // connects in between interrupts this search at once, instead of leaving it
            // to hash on the old tip for a block interval.
            let stop = Arc::new(AtomicBool::new(false));
            #[cfg(test)]
            self.mining.run_before_registering();
            self.mining.active().push(Arc::clone(&stop));
            // A stop that came between the check above and the push did not see this
            // flag: look again now that it is registered.
            if self.is_shutting_down() || !keep_going() {
                self.mining
                    .active()
                    .retain(|active| !Arc::ptr_eq(active, &stop));
                if self.is_shutting_down() {
                    return Err(NodeError::ShuttingDown);
                }
                return Ok(None);
            }
            let outcome = self
                .block_template(self.wallet_address(), note.clone(), include_pool)
                .map(|template| {
                    search(
                        &template,
                        self.mining.threads,
                        &stop,
                        &self.mining.counter,
                        &|| self.now_ms(),
                    )
                });
            self.mining
                .active()
                .retain(|active| !Arc::ptr_eq(active, &stop));
            match outcome? {
                SearchOutcome::Stopped if keep_going() => continue,
                SearchOutcome::Stopped => return Ok(None),
                SearchOutcome::Found(block) => match self.submit_block(block.clone()) {
                    Ok(BlockOutcome::MainChain) => {
                        let transactions = block.transactions.len();
                        info!(
                            "mined block #{} ({transactions} {})",
                            block.coinbase_height().map_or(0, |height| height.0),
                            if transactions == 1 { "tx" } else { "txs" }
                        );
                        debug!(hash = %block.compute_hash(), "mined block");
                        return Ok(Some(block));
                    }
                    // Another block won the race; try again on the new tip.
                    Ok(_) => continue,
                    Err(error) => {
                        warn!(%error, "a mined block was refused");
                        return Err(error);
                    }
                },
            }
        }
    }

    /// Starts mining continuously on a background OS thread (no-op if already mining).
    pub fn start_mining(self: &Arc<Self>) {
        if self.mining.continuous.swap(true, Ordering::SeqCst) {
            return;
        }
        let node = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("miner".into())
            .spawn(move || {
                info!(threads = node.mining.threads, "mining continuously");
                while node.mining.continuous.load(Ordering::SeqCst) && !node.is_shutting_down() {
                    let mining = || node.mining.continuous.load(Ordering::SeqCst);
                    if let Err(error) = node.mine_while(Vec::new(), true, &mining) {
                        if !matches!(error, NodeError::ShuttingDown) {
                            warn!(%error, "mining stopped after an error");
                        }
                        node.mining.continuous.store(false, Ordering::SeqCst);
                    }
                }
                info!("stopped mining");
            });
        match spawned {
            Ok(thread) => {
                *self
                    .mining
                    .thread
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(thread);
            }
            Err(error) => {
                warn!(%error, "could not start the miner thread");
                self.mining.continuous.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Stops continuous mining (the search under way ends within milliseconds).
    pub fn stop_mining(&self) {
        self.mining.stop_continuous();
        self.mining.interrupt_all();
    }

    /// True while mining continuously.
    pub fn is_mining(&self) -> bool {
        self.mining.continuous.load(Ordering::SeqCst)
    }

    /// Threads the nonce search uses.
    pub fn miner_threads(&self) -> usize {
        self.mining.threads
    }

    /// Hashes tried since start.
    pub fn hashes_tried(&self) -> u64 {
        self.mining.counter.total()
    }

    /// Updates the smoothed hashrate from the hash counter; call about once a second.
    pub fn sample_hashrate(&self) {
        let now = self.now_ms();
        let total = self.mining.counter.total();
        let mut last = self
            .mining
            .last_sample
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((last_time, last_total)) = *last {
            let elapsed_ms = now.saturating_sub(last_time);
            if elapsed_ms > 0 {
                let instant =
                    (total.saturating_sub(last_total)) as f64 * 1000.0 / elapsed_ms as f64;
                let previous = f64::from_bits(self.mining.hashrate_bits.load(Ordering::Relaxed));
                // Smooth over roughly five samples.
                let smoothed = previous + (instant - previous) * 0.2;
                self.mining
                    .hashrate_bits
                    .store(smoothed.to_bits(), Ordering::Relaxed);
            }
        }
        *last = Some((now, total));
    }

    /// The smoothed hashrate, hashes per second.
    pub fn hashrate(&self) -> f64 {
        f64::from_bits(self.mining.hashrate_bits.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use powchain_consensus::Network;

    use crate::testing::TestNode;

    /// A shutdown that came after `mine_one` checked for one and before its search
    /// registered its stop flag missed the search: on regtest it then mined a block
    /// after the shutdown began.
    #[test]
    fn a_shutdown_just_before_a_search_registers_stops_it() {
        let test = TestNode::open(Network::Regtest);
        let node = std::sync::Arc::clone(&test.node);
        *test
            .node
            .mining
            .before_registering
            .lock()
            .expect("not poisoned") = Some(Box::new(move || node.begin_shutdown()));
        let height = test.node.tip().height;
        let outcome = test.node.mine_one(Vec::new(), false);
        assert!(
            matches!(outcome, Err(crate::NodeError::ShuttingDown)),
            "{outcome:?}"
        );
        assert_eq!(
            test.node.tip().height,
            height,
            "no block after the shutdown"
        );
    }

    /// `stop_mining` interrupted the search under way, and `mine_one` took that for a
    /// new tip: it built a template again and went on until it found a block, though the
    /// docs promised the search ends within milliseconds. Devnet's first block takes about
    /// a million hashes, so the stop comes while a search is under way.
    #[test]
    fn stopping_continuous_mining_ends_the_search_under_way_without_a_block() {
        let test = TestNode::open(Network::Devnet);
        test.node.start_mining();
        let deadline = Instant::now() + Duration::from_secs(60);
        while test.node.hashes_tried() == 0 {
            assert!(Instant::now() < deadline, "the search starts");
            std::thread::yield_now();
        }
        let height_at_stop = test.node.tip().height.0;
        test.node.stop_mining();
        let thread = test
            .node
            .mining
            .thread
            .lock()
            .expect("not poisoned")
            .take()
            .expect("the miner thread");
        thread.join().expect("the miner thread ends");
        assert!(!test.node.mining.continuous.load(Ordering::SeqCst));
        assert_eq!(
            test.node.tip().height.0,
            height_at_stop,
            "the search ended without a block: none was mined after the stop"
        );
    }
}
