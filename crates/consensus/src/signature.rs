//! Signature hashes and BIP-340 Schnorr signatures over secp256k1.
//!
//! The signature hash of input `i` is
//!
//! ```text
//!   tagged_hash("powchain/sighash",
//!       version || sha256(all prevouts) || sha256(all spent outputs: value, address)
//!       || sha256(all outputs) || i)
//! ```
//!
//! It commits to the whole transaction except the signatures, to the input's position,
//! and to the amount and address of every output spent (as BIP-341 does), so a signer
//! knows exactly what it signs and the fee it pays even without the previous
//! transactions. The three inner hashes are computed once per transaction, so signing
//! or checking n inputs costs O(n), not O(n^2).

use std::sync::atomic::{AtomicUsize, Ordering};

use secp256k1::{Keypair, XOnlyPublicKey, schnorr};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::address::Address;
use crate::encode::Encode;
use crate::hash::tagged_hash;
use crate::transaction::{Signature, Transaction, TxOut};

const SIGHASH_TAG: &str = "powchain/sighash";

/// The 32-byte message an input's signature signs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Sighash(pub [u8; 32]);

/// Why signature hashes could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SighashError {
    /// The spent outputs do not line up with the inputs.
    #[error("{spent} spent outputs given for {inputs} inputs")]
    SpentOutputsMismatch {
        /// Number of inputs.
        inputs: usize,
        /// Number of spent outputs supplied.
        spent: usize,
    },
}

/// Precomputed parts of a transaction's signature hashes.
#[derive(Clone, Debug)]
pub struct SighashCache {
    version: u32,
    prevouts_hash: [u8; 32],
    spent_outputs_hash: [u8; 32],
    outputs_hash: [u8; 32],
    input_count: usize,
}

impl SighashCache {
    /// Hashes the shared parts of `transaction`, whose inputs spend `spent_outputs` in order.
    ///
    /// # Errors
    /// [`SighashError::SpentOutputsMismatch`] if the counts differ.
    pub fn new(
        transaction: &Transaction,
        spent_outputs: &[TxOut],
    ) -> Result<SighashCache, SighashError> {
        let inputs = transaction.spends();
        if inputs.len() != spent_outputs.len() {
            return Err(SighashError::SpentOutputsMismatch {
                inputs: inputs.len(),
                spent: spent_outputs.len(),
            });
        }
        let mut prevouts = Sha256::new();
        let mut buffer = Vec::with_capacity(64);
        for input in inputs {
            buffer.clear();
            input.prevout.encode_to(&mut buffer);
            prevouts.update(&buffer);
        }
        let mut spent = Sha256::new();
        for output in spent_outputs {
            buffer.clear();
            output.encode_to(&mut buffer);
            spent.update(&buffer);
        }
        let mut outputs = Sha256::new();
        outputs.update((transaction.outputs.len() as u64).to_le_bytes());
        for output in &transaction.outputs {
            buffer.clear();
            output.encode_to(&mut buffer);
            outputs.update(&buffer);
        }
        Ok(SighashCache {
            version: transaction.version,
            prevouts_hash: prevouts.finalize().into(),
            spent_outputs_hash: spent.finalize().into(),
            outputs_hash: outputs.finalize().into(),
            input_count: inputs.len(),
        })
    }

    /// The signature hash of input `input_index`; `None` if there is no such input.
    pub fn compute_sighash(&self, input_index: usize) -> Option<Sighash> {
        (input_index < self.input_count).then(|| {
            Sighash(tagged_hash(
                SIGHASH_TAG,
                &[
                    &self.version.to_le_bytes(),
                    &self.prevouts_hash,
                    &self.spent_outputs_hash,
                    &self.outputs_hash,
                    &(input_index as u64).to_le_bytes(),
                ],
            ))
        })
    }
}

/// True if `signature` is a valid BIP-340 signature of `message` by the x-only key
/// `public_key`. A key that is not on the curve verifies nothing.
pub fn verify_schnorr(public_key: &[u8; 32], message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = XOnlyPublicKey::from_byte_array(*public_key) else {
        return false;
    };
    let signature = schnorr::Signature::from_byte_array(signature.0);
    schnorr::verify(&signature, message, &key).is_ok()
}

/// Signs `message` with BIP-340, using `aux_rand` as the auxiliary randomness (the caller
/// supplies it: consensus code has no randomness of its own).
pub fn sign_schnorr(keypair: &Keypair, message: &[u8], aux_rand: &[u8; 32]) -> Signature {
    Signature(schnorr::sign_with_aux_rand(message, keypair, aux_rand).to_byte_array())
}

/// The address (x-only public key) of a key pair.
pub fn address_of(keypair: &Keypair) -> Address {
    Address(keypair.x_only_public_key().0.to_byte_array())
}

/// One signature a transaction needs checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SignatureCheck {
    /// Position of the transaction in its block (0 for a loose transaction).
    pub transaction_index: usize,
    /// Position of the input in its transaction.
    pub input_index: usize,
    /// The message signed.
    pub sighash: Sighash,
    /// The key that must have signed (the spent output's address).
    pub address: Address,
    /// The signature given.
    pub signature: Signature,
}

impl SignatureCheck {
    /// Runs the check.
    pub fn is_valid(&self) -> bool {
        verify_schnorr(&self.address.0, &self.sighash.0, &self.signature)
    }
}

/// Checks signatures in bulk. Implementations may check in parallel or skip signatures
/// they have already checked (the mempool's cache), but must report the first failing
/// check in slice order, so every node names the same failure.
pub trait SignatureVerifier {
    /// `Ok(())` if all checks pass, else the index into `checks` of the first failure.
    ///
    /// # Errors
    /// The index of the first invalid check.
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize>;
}

/// Checks every signature, one after another, on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialVerifier;

impl SignatureVerifier for SequentialVerifier {
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
        match checks.iter().position(|check| !check.is_valid()) {
            None => Ok(()),
            Some(index) => Err(index),
        }
    }
}

/// Checks signatures on several OS threads (scoped: they end before this returns).
///
/// The calling thread works too, and every thread takes the next batch of
/// [`ParallelVerifier::BATCH`] checks from a shared counter, so a thread slowed by other
/// work on the machine does not hold the rest up. Once a failure is known, batches past it
/// are skipped: only the first failure in slice order matters.
#[derive(Clone, Copy, Debug)]
pub struct ParallelVerifier {
    /// Threads to use, the caller's included; 1 means sequential.
    pub threads: usize,
}

impl ParallelVerifier {
    /// Checks a thread takes at a time at most (about half a millisecond of work); fewer
    /// when there are few, so that each thread gets about two batches.
    pub const BATCH: usize = 8;
    /// Fewer checks than this per thread are not worth starting a thread for (a check is
    /// about 35 µs, starting a scoped thread about 20-30 µs).
    pub const MIN_CHECKS_PER_THREAD: usize = 4;
}

impl SignatureVerifier for ParallelVerifier {
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
        let threads = self
            .threads
            .min(checks.len() / Self::MIN_CHECKS_PER_THREAD)
            .max(1);
        if threads == 1 {
            return SequentialVerifier.verify_all(checks);
        }
        let batch = (checks.len() / (2 * threads)).clamp(1, Self::BATCH);
        let next_batch = AtomicUsize::new(0);
        let first_failure = AtomicUsize::new(usize::MAX);
        // Run by every thread; `current` holds the batch under way, so a thread that
        // panicked can have that batch counted as failed.
        let work = |current: &AtomicUsize| {
            loop {
                let start = next_batch.fetch_add(batch, Ordering::Relaxed);
                if start >= checks.len() || start >= first_failure.load(Ordering::Relaxed) {
                    break;
                }
                current.store(start, Ordering::Relaxed);
                let end = (start + batch).min(checks.len());
                if let Some(index) = checks[start..end]
                    .iter()
                    .position(|check| !check.is_valid())
                {
                    first_failure.fetch_min(start + index, Ordering::Relaxed);
                }
                current.store(usize::MAX, Ordering::Relaxed);
            }
        };
        let helper_batches: Vec<AtomicUsize> =
            (1..threads).map(|_| AtomicUsize::new(usize::MAX)).collect();
        std::thread::scope(|scope| {
            let helpers: Vec<_> = helper_batches
                .iter()
                .map(|current| scope.spawn(|| work(current)))
                .collect();
            work(&AtomicUsize::new(usize::MAX));
            for (handle, current) in helpers.into_iter().zip(&helper_batches) {
                // A thread that panicked proved nothing about its batch: count it as failed.
                if handle.join().is_err() {
                    first_failure.fetch_min(current.load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
        });
        match first_failure.into_inner() {
            usize::MAX => Ok(()),
            index => Err(index),
        }
    }
}

impl<V: SignatureVerifier + ?Sized> SignatureVerifier for &V {
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
        (**self).verify_all(checks)
    }
}

impl<V: SignatureVerifier + ?Sized> SignatureVerifier for std::sync::Arc<V> {
    fn verify_all(&self, checks: &[SignatureCheck]) -> Result<(), usize> {
        (**self).verify_all(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::hash::Txid;
    use crate::transaction::{OutPoint, TxIn, TxInputs};

    fn keypair(byte: u8) -> Keypair {
        Keypair::from_secret_bytes([byte; 32]).expect("valid secret key")
    }

    fn spend(inputs: usize) -> (Transaction, Vec<TxOut>) {
        let owner = address_of(&keypair(1));
        let transaction = Transaction {
            version: 1,
            inputs: TxInputs::Spends(
                (0..inputs)
                    .map(|index| TxIn {
                        prevout: OutPoint {
                            txid: Txid([index as u8; 32]),
                            vout: 0,
                        },
                        signature: Signature([0; 64]),
                    })
                    .collect(),
            ),
            outputs: vec![TxOut {
                value: Amount::ONE_COIN,
                address: address_of(&keypair(2)),
            }],
        };
        let spent = vec![
            TxOut {
                value: Amount::ONE_COIN,
                address: owner
            };
            inputs
        ];
        (transaction, spent)
    }

    #[test]
    fn sighash_commits_to_everything_but_signatures() {
        let (transaction, spent) = spend(2);
        let base = SighashCache::new(&transaction, &spent).expect("counts match");
        let hash0 = base.compute_sighash(0).expect("input 0");
        assert_ne!(
            hash0,
            base.compute_sighash(1).expect("input 1"),
            "input index"
        );
        assert_eq!(base.compute_sighash(2), None);

        let mut signed = transaction.clone();
        if let TxInputs::Spends(inputs) = &mut signed.inputs {
            inputs[0].signature = Signature([7; 64]);
        }
        let same = SighashCache::new(&signed, &spent).expect("counts match");
        assert_eq!(
            same.compute_sighash(0),
            Some(hash0),
            "signatures are not committed"
        );

        let mut changed = transaction.clone();
        changed.outputs[0].value = Amount::from_units(2).expect("in range");
        assert_ne!(
            SighashCache::new(&changed, &spent)
                .expect("ok")
                .compute_sighash(0),
            Some(hash0)
        );

        let mut changed = transaction.clone();
        changed.version = 2;
        assert_ne!(
            SighashCache::new(&changed, &spent)
                .expect("ok")
                .compute_sighash(0),
            Some(hash0)
        );

        let mut other_spent = spent.clone();
        other_spent[1].value = Amount::from_units(5).expect("in range");
        assert_ne!(
            SighashCache::new(&transaction, &other_spent)
                .expect("ok")
                .compute_sighash(0),
            Some(hash0),
            "amount of every spent output"
        );
        let mut other_spent = spent.clone();
        other_spent[1].address = address_of(&keypair(3));
        assert_ne!(
            SighashCache::new(&transaction, &other_spent)
                .expect("ok")
                .compute_sighash(0),
            Some(hash0),
            "address of every spent output"
        );
        assert!(SighashCache::new(&transaction, &spent[..1]).is_err());
    }

    #[test]
    fn parallel_verifier_reports_the_first_failure() {
        let key = keypair(9);
        let checks: Vec<SignatureCheck> = (0..100u8)
            .map(|index| {
                let sighash = Sighash([index; 32]);
                SignatureCheck {
                    transaction_index: index as usize,
                    input_index: 0,
                    sighash,
                    address: address_of(&key),
                    signature: sign_schnorr(&key, &sighash.0, &[0; 32]),
                }
            })
            .collect();
        assert_eq!(ParallelVerifier { threads: 4 }.verify_all(&checks), Ok(()));
        let mut broken = checks.clone();
        broken[77].signature.0[0] ^= 1;
        broken[30].signature.0[5] ^= 1;
        assert_eq!(ParallelVerifier { threads: 4 }.verify_all(&broken), Err(30));
        assert_eq!(SequentialVerifier.verify_all(&broken), Err(30));
        // Failures in every position of a batch, and only the last check broken.
        for broken_index in [0, 1, 7, 8, 9, 63, 99] {
            let mut broken = checks.clone();
            broken[broken_index].signature.0[0] ^= 1;
            for threads in [2, 3, 4] {
                assert_eq!(
                    ParallelVerifier { threads }.verify_all(&broken),
                    Err(broken_index),
                    "{threads} threads"
                );
            }
        }
        // A small block's few checks are split too, in batches shrunk to fit them.
        for count in [1, 2, 3, 8, 10, 15, 31] {
            let few = &checks[..count];
            for threads in [2, 4] {
                assert_eq!(ParallelVerifier { threads }.verify_all(few), Ok(()));
                for broken_index in 0..count {
                    let mut broken = few.to_vec();
                    broken[broken_index].signature.0[0] ^= 1;
                    assert_eq!(
                        ParallelVerifier { threads }.verify_all(&broken),
                        Err(broken_index),
                        "{count} checks, {threads} threads"
                    );
                }
            }
        }
    }
}
