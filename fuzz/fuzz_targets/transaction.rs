//! Transactions: `Transaction::decode_exact` never panics, a decoded transaction re-encodes
//! to its input, and the stateless rules and the sighash take it without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::signature::SighashCache;
use powchain_consensus::validation::validate_transaction_stateless;
use powchain_consensus::{Network, Transaction};

fuzz_target!(|data: &[u8]| {
    if let Ok(transaction) = Transaction::decode_exact(data) {
        assert_eq!(transaction.encode_to_vec(), data);
        assert_eq!(transaction.compute_size(), data.len());
        let _ = validate_transaction_stateless(Network::Regtest.params(), &transaction);
        // Pretend every input spends a copy of the transaction's first output.
        let spent: Vec<_> = match transaction.outputs.first() {
            Some(output) => vec![*output; transaction.spends().len()],
            None => Vec::new(),
        };
        if let Ok(cache) = SighashCache::new(&transaction, &spent) {
            for index in 0..spent.len() {
                let _ = cache.compute_sighash(index);
            }
        }
    }
});
