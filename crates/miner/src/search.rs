//! The nonce search: scoped OS threads, each on its own nonce range, stoppable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use powchain_consensus::pow::HeaderHasher;
use powchain_consensus::{Block, Header};

/// Nonces a thread tries between looks at the stop flag and the clock. About a
/// millisecond of work on one core.
pub const NONCES_PER_CHUNK: u64 = 4096;

/// Each thread's nonces start at `thread_index << THREAD_NONCE_SHIFT`. 2^40 nonces is hours
/// of work per thread, and keeps nonces below 2^53 so JSON readers (JavaScript numbers)
/// show them exactly.
const THREAD_NONCE_SHIFT: u32 = 40;

/// The most threads a search runs: their nonce ranges stay below 2^53 (what a JSON reader
/// holds exactly), and far more threads than cores only share them. More are clamped.
pub const MAX_THREADS: usize = 1 << 10;

/// Counts hashes tried, for the hashrate report. Shared by every search of a node.
#[derive(Clone, Debug, Default)]
pub struct HashCounter(Arc<AtomicU64>);

impl HashCounter {
    /// Hashes tried so far.
    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, hashes: u64) {
        self.0.fetch_add(hashes, Ordering::Relaxed);
    }
}

/// How a search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchOutcome {
    /// A nonce (and time) that meets the target.
    Found(Block),
    /// The stop flag was raised first.
    Stopped,
}

/// Searches nonces for `block` on `threads` OS threads until one meets its bits or `stop`
/// is raised. Each thread starts at its own 2^40-wide nonce range and refreshes the header
/// time from `now_ms` (never below the template's time) between chunks.
pub fn search(
    block: &Block,
    threads: usize,
    stop: &AtomicBool,
    counter: &HashCounter,
    now_ms: &(dyn Fn() -> u64 + Sync),
) -> SearchOutcome {
    let Ok(target) = block.header.bits.to_target() else {
        return SearchOutcome::Stopped;
    };
    let threads = threads.clamp(1, MAX_THREADS);
    let found = AtomicBool::new(false);
    let winner: std::sync::Mutex<Option<Header>> = std::sync::Mutex::new(None);
    let min_time_ms = block.header.time_ms;
    std::thread::scope(|scope| {
        for thread_index in 0..threads {
            let found = &found;
            let winner = &winner;
            scope.spawn(move || {
                let mut header = block.header;
                let mut hasher = HeaderHasher::new(&header);
                let mut nonce = (thread_index as u64) << THREAD_NONCE_SHIFT;
                while !found.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    let time_ms = now_ms().max(min_time_ms);
                    if time_ms != header.time_ms {
                        header.time_ms = time_ms;
                        hasher.set_time_ms(time_ms);
                    }
                    let end = nonce.wrapping_add(NONCES_PER_CHUNK);
                    let result = hasher.search(target, nonce, end);
                    counter.add(match result {
                        Some((found_nonce, _)) => found_nonce - nonce + 1,
                        None => NONCES_PER_CHUNK,
                    });
                    if let Some((found_nonce, _)) = result {
                        header.nonce = found_nonce;
                        if !found.swap(true, Ordering::AcqRel) {
                            *winner
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(header);
                        }
                        return;
                    }
                    nonce = end;
                }
            });
        }
    });
    let header = winner
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match header {
        Some(header) => SearchOutcome::Found(Block {
            header,
            transactions: block.transactions.clone(),
        }),
        None => SearchOutcome::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::TestChain;
    use powchain_consensus::{Amount, CompactTarget, Network};
    use std::time::{Duration, Instant};

    #[test]
    fn finds_a_valid_block_on_several_threads() {
        let mut chain = TestChain::new(Network::Regtest);
        let template = chain.template(vec![], Amount::ZERO);
        let counter = HashCounter::default();
        let time = template.header.time_ms;
        let outcome = search(&template, 3, &AtomicBool::new(false), &counter, &|| time);
        let SearchOutcome::Found(block) = outcome else {
            panic!("regtest blocks are found at once");
        };
        assert!(counter.total() >= 1);
        chain.push(block).expect("the found block is valid");
    }

    #[test]
    fn a_raised_stop_flag_ends_the_search_promptly() {
        let chain = TestChain::new(Network::Regtest);
        let mut template = chain.template(vec![], Amount::ZERO);
        // A target no one will meet.
        template.header.bits = CompactTarget(0x03000001);
        let stop = AtomicBool::new(false);
        let counter = HashCounter::default();
        let started = Instant::now();
        let outcome = std::thread::scope(|scope| {
            let handle = scope.spawn(|| search(&template, 2, &stop, &counter, &|| 0));
            // Wait until the search is demonstrably running, then stop it.
            while counter.total() < 10 * NONCES_PER_CHUNK
                && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
            handle.join().expect("search thread")
        });
        assert_eq!(outcome, SearchOutcome::Stopped);
        assert!(counter.total() >= 10 * NONCES_PER_CHUNK);
    }

    #[test]
    fn the_time_follows_the_clock_but_never_goes_below_the_template() {
        let chain = TestChain::new(Network::Regtest);
        let template = chain.template(vec![], Amount::ZERO);
        let later = template.header.time_ms + 12_345;
        let outcome = search(
            &template,
            1,
            &AtomicBool::new(false),
            &HashCounter::default(),
            &|| later,
        );
        let SearchOutcome::Found(block) = outcome else {
            panic!("found at once");
        };
        assert_eq!(block.header.time_ms, later);
        let outcome = search(
            &template,
            1,
            &AtomicBool::new(false),
            &HashCounter::default(),
            &|| 0,
        );
        let SearchOutcome::Found(block) = outcome else {
            panic!("found at once");
        };
        assert_eq!(block.header.time_ms, template.header.time_ms);
    }
}
