//! A bounded memory of signature checks that passed, so a block does not check again the
//! signatures its transactions already passed in the pool.
//!
//! ```text
//!   pool admission ──CachingVerifier (Remember)──▶ inner verifier ──pass──▶ cache.insert
//!   block connect  ──CachingVerifier (Consume)───▶ cache hit? skip it (and forget it)
//!                                               └─ miss: inner verifier (parallel)
//! ```
//!
//! **Invariant:** the cache never makes an invalid signature pass. An entry is the SHA-256
//! of the whole check (message, key and signature: 128 bytes), and only checks the inner
//! verifier passed are inserted; a check that differs in any byte misses. (This is what
//! Bitcoin Core's signature cache does.) The cache holds no randomness and no clock: it is
//! a deterministic function of what was inserted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::bounded_set::BoundedSet;

use crate::signature::{SignatureCheck, SignatureVerifier};

/// Entries a node's cache holds by default: about 10 MB when full (a 32-byte key and an
/// 8-byte insertion number, in the set and in its order queue, with the tables' spare
/// room), several full pools' worth of single-input transactions.
pub const DEFAULT_SIGNATURE_CACHE_ENTRIES: usize = 100_000;

type CacheKey = [u8; 32];

fn cache_key(check: &SignatureCheck) -> CacheKey {
    let mut hasher = Sha256::new();
    hasher.update(check.sighash.0);
    hasher.update(check.address.0);
    hasher.update(check.signature.0);
    hasher.finalize().into()
}

/// A bounded set of signature checks known to pass, shared by the pool's and the chain's
/// verifiers (see the module documentation).
pub struct SignatureCache {
    entries: Mutex<BoundedSet<CacheKey>>,
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SignatureCache")
            .field("capacity", &self.entries().capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl SignatureCache {
    /// An empty cache that holds at most `capacity` checks (the oldest go first).
    pub fn new(capacity: usize) -> SignatureCache {
        SignatureCache {
            entries: Mutex::new(BoundedSet::new(capacity)),
        }
    }

    fn entries(&self) -> MutexGuard<'_, BoundedSet<CacheKey>> {
        // The sets are valid after any panic (each operation leaves them consistent).
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks remembered.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, keys: impl IntoIterator<Item = CacheKey>) {
        let mut entries = self.entries();
        for key in keys {
            entries.insert(key);
        }
    }

    fn remove(&self, keys: &[CacheKey]) {
        let mut entries = self.entries();
        for key in keys {
            entries.remove(key);
        }
    }
}

/// What a [`CachingVerifier`] does with the cache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CacheMode {
    /// Skip remembered checks; remember the checks the inner verifier passes (the pool:
    /// its transactions' signatures will be met again in a block).
    Remember,
    /// Skip remembered checks and forget them (a connected block's signatures are not met
    /// again); do not remember new ones.
    Consume,
}

/// A verifier that skips checks the [`SignatureCache`] remembers and runs the rest
/// through `inner`, reporting the first failure in slice order as every verifier must.
#[derive(Debug)]
pub struct CachingVerifier<V> {
    cache: Arc<SignatureCache>,
    inner: V,
    mode: CacheMode,
    /// Checks handed to `inner` so far.
    verified: AtomicU64,
}

impl<V: SignatureVerifier> CachingVerifier<V> {
    /// Wraps `inner` with `cache`.
    pub fn new(cache: Arc<SignatureCache>, inner: V, mode: CacheMode) -> CachingVerifier<V> {
        CachingVerifier {
            cache,
            inner,
            mode,
            verified: AtomicU64::new(0),
        }
    }

    /// The shared cache.
    pub fn cache(&self) -> &Arc<SignatureCache> {
        &self.cache
    }

    /// Checks the cache did not hold, handed to the inner verifier so far.
    pub fn checks_verified(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }
}

impl<V: SignatureVerifier> SignatureVerifier for CachingVerifier<V> {
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
        let keys: Vec<CacheKey> = checks.iter().map(cache_key).collect();
        let (hits, misses): (Vec<usize>, Vec<usize>) = {
            let entries = self.cache.entries();
            (0..checks.len()).partition(|index| entries.contains(&keys[*index]))
        };
        if !misses.is_empty() {
            self.verified
                .fetch_add(misses.len() as u64, Ordering::Relaxed);
            let unchecked: Vec<SignatureCheck> =
                misses.iter().map(|index| checks[*index]).collect();
            // Remembered checks passed, so the first failure among the rest, mapped back,
            // is the first failure of all.
            self.inner
                .verify_all(&unchecked)
                .map_err(|failed| misses[failed])?;
        }
        match self.mode {
            CacheMode::Remember => self.cache.insert(misses.iter().map(|index| keys[*index])),
            CacheMode::Consume => {
                let used: Vec<CacheKey> = hits.iter().map(|index| keys[*index]).collect();
                self.cache.remove(&used);
            }
        }
        Ok(())
    }
}

/// A verifier in front of which a simulation puts the checks any of its nodes passed
/// ([`SharedChecks::new`] with a cache): hundreds of nodes in one process meet the same
/// payments' signatures, and one check serves them all, as the pool's own cache serves
/// the blocks that repeat its transactions. A real node has no such cache (`None`): it
/// checks every signature itself. A check's outcome depends on nothing but its message,
/// key and signature, the cache's key, so sharing it changes no node's answer.
#[derive(Debug)]
pub enum SharedChecks<V> {
    /// Every check runs through the verifier.
    Own(V),
    /// Checks another node of the process passed are skipped; the others run, and pass
    /// for every node once they passed for one.
    Shared(CachingVerifier<V>),
}

impl<V: SignatureVerifier> SharedChecks<V> {
    /// `inner` alone, or behind `shared` if there is one.
    pub fn new(inner: V, shared: Option<Arc<SignatureCache>>) -> SharedChecks<V> {
        match shared {
            None => SharedChecks::Own(inner),
            Some(cache) => {
                SharedChecks::Shared(CachingVerifier::new(cache, inner, CacheMode::Remember))
            }
        }
    }
}

impl<V: SignatureVerifier> SignatureVerifier for SharedChecks<V> {
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
        match self {
            SharedChecks::Own(inner) => inner.verify_all(checks),
            SharedChecks::Shared(caching) => caching.verify_all(checks),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secp256k1::Keypair;

    use super::*;
    use crate::signature::{
        ParallelVerifier, SequentialVerifier, Sighash, address_of, sign_schnorr,
    };

    /// Counts the checks it is asked to run.
    struct Counting<V> {
        inner: V,
        checked: AtomicUsize,
    }

    impl<V: SignatureVerifier> SignatureVerifier for Counting<V> {
        fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
            self.checked.fetch_add(checks.len(), Ordering::Relaxed);
            self.inner.verify_all(checks)
        }
    }

    fn checks(count: u8) -> Vec<SignatureCheck> {
        let key = Keypair::from_secret_bytes([5; 32]).expect("valid key");
        (0..count)
            .map(|index| {
                let sighash = Sighash([index; 32]);
                SignatureCheck {
                    transaction_index: usize::from(index),
                    input_index: 0,
                    sighash,
                    address: address_of(&key),
                    signature: sign_schnorr(&key, &sighash.0, &[0; 32]),
                }
            })
            .collect()
    }

    #[test]
    fn a_block_skips_what_the_pool_verified_and_forgets_it() {
        let cache = Arc::new(SignatureCache::new(100));
        let pool =
            CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Remember);
        let all = checks(40);
        assert_eq!(pool.verify_all(&all[..30]), Ok(()));
        assert_eq!(cache.len(), 30);

        let block = CachingVerifier::new(
            Arc::clone(&cache),
            Counting {
                inner: ParallelVerifier { threads: 2 },
                checked: AtomicUsize::new(0),
            },
            CacheMode::Consume,
        );
        assert_eq!(block.verify_all(&all), Ok(()));
        assert_eq!(
            block.inner.checked.load(Ordering::Relaxed),
            10,
            "only the misses"
        );
        assert_eq!(block.checks_verified(), 10, "counted as they ran");
        assert_eq!(pool.checks_verified(), 30);
        assert!(cache.is_empty(), "a connected block's checks are forgotten");
    }

    #[test]
    fn nodes_sharing_checks_check_each_signature_once_and_still_refuse_a_forgery() {
        let shared = Arc::new(SignatureCache::new(100));
        let node = || {
            SharedChecks::new(
                Counting {
                    inner: SequentialVerifier,
                    checked: AtomicUsize::new(0),
                },
                Some(Arc::clone(&shared)),
            )
        };
        let checked = |verifier: &SharedChecks<Counting<SequentialVerifier>>| match verifier {
            SharedChecks::Shared(caching) => caching.inner.checked.load(Ordering::Relaxed),
            SharedChecks::Own(inner) => inner.checked.load(Ordering::Relaxed),
        };
        let all = checks(20);
        let (first, second) = (node(), node());
        assert_eq!(first.verify_all(&all[..15]), Ok(()));
        assert_eq!(second.verify_all(&all), Ok(()));
        assert_eq!(checked(&first), 15);
        assert_eq!(checked(&second), 5, "only what no node had checked");
        let mut forged = all.clone();
        forged[4].signature.0[10] ^= 1;
        assert_eq!(second.verify_all(&forged), Err(4));
        // Without a shared cache, every check runs.
        let alone = SharedChecks::new(
            Counting {
                inner: SequentialVerifier,
                checked: AtomicUsize::new(0),
            },
            None,
        );
        assert_eq!(alone.verify_all(&all), Ok(()));
        assert_eq!(checked(&alone), 20);
    }

    #[test]
    fn the_cache_never_makes_an_invalid_signature_pass() {
        let cache = Arc::new(SignatureCache::new(100));
        let pool =
            CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Remember);
        let all = checks(20);
        assert_eq!(pool.verify_all(&all), Ok(()));
        let block =
            CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Consume);
        // The same message and key with another (invalid) signature, and a valid signature
        // moved to another message or key: all miss, and fail, in slice order.
        let mut forged = all.clone();
        forged[3].signature.0[10] ^= 1;
        forged[7].sighash = Sighash([99; 32]);
        forged[12].address = all[0].address;
        forged[12].address.0[0] ^= 1;
        assert_eq!(block.verify_all(&forged), Err(3));
        forged[3] = all[3];
        assert_eq!(block.verify_all(&forged), Err(7));
        forged[7] = all[7];
        assert_eq!(block.verify_all(&forged), Err(12));
        // A failed pool check is not remembered.
        let pool_again =
            CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Remember);
        let mut bad = checks(1);
        bad[0].signature.0[0] ^= 1;
        assert_eq!(pool_again.verify_all(&bad), Err(0));
        assert_eq!(block.verify_all(&bad), Err(0));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let cache = Arc::new(SignatureCache::new(10));
        let pool =
            CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Remember);
        let all = checks(25);
        for check in &all {
            assert_eq!(pool.verify_all(std::slice::from_ref(check)), Ok(()));
        }
        assert_eq!(cache.len(), 10);
        let counting = CachingVerifier::new(
            Arc::clone(&cache),
            Counting {
                inner: SequentialVerifier,
                checked: AtomicUsize::new(0),
            },
            CacheMode::Consume,
        );
        assert_eq!(counting.verify_all(&all), Ok(()));
        assert_eq!(counting.inner.checked.load(Ordering::Relaxed), 15);
        let empty = SignatureCache::new(0);
        empty.insert([cache_key(&all[0])]);
        assert!(empty.is_empty());
    }
}
