//! Property test: random sequences of accepts, double spends, mined blocks (with
//! conflicting spends), expiry and post-reorg re-admission keep every invariant of the
//! pool (`Mempool::assert_consistent`: byte total, spender index, parent and child links,
//! package totals against a recomputation) and keep the pool valid against the chain.
//!
//! The pool is small (about ten transactions) and the ancestor limit low, so eviction,
//! refusals for ancestors and fee rate, and packages of several generations all occur.

use std::collections::HashSet;

use powchain_consensus::signature::SequentialVerifier;
use powchain_consensus::testkit::TestChain;
use powchain_consensus::{Amount, FeeRate, OutPoint, Txid};
use proptest::prelude::*;
use proptest::sample::Index;

use super::tests::spend;
use super::*;

const MAX_POOL_BYTES: usize = 1_600;
const EXPIRY_MS: u64 = 8_000;

#[derive(Clone, Debug)]
enum Operation {
    /// Spend some available coins (chain coins no pooled transaction spends, unspent
    /// pooled outputs) into `outputs` outputs at `fee_per_byte` (0 is refused).
    Accept {
        inputs: Vec<Index>,
        outputs: usize,
        fee_per_byte: u64,
        advance_ms: u64,
    },
    /// Spend an outpoint a pooled transaction already spends.
    DoubleSpend { input: Index },
    /// Mine a block of `select_for_block(limit)`, maybe with a conflicting spend of a chain
    /// coin that a pooled transaction left out of the block spends.
    MineBlock {
        limit: usize,
        conflict: Option<Index>,
    },
    /// Let time pass and expire.
    Expire { advance_ms: u64 },
    /// Take everything out and admit it again, as the node does after a reorg.
    Readmit,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        8 => (
            prop::collection::vec(any::<Index>(), 1..4),
            1usize..4,
            0u64..30,
            0u64..2_000
        )
            .prop_map(|(inputs, outputs, fee_per_byte, advance_ms)| Operation::Accept {
                inputs,
                outputs,
                fee_per_byte,
                advance_ms
            }),
        1 => any::<Index>().prop_map(|input| Operation::DoubleSpend { input }),
        2 => (0usize..1_200, prop::option::of(any::<Index>()))
            .prop_map(|(limit, conflict)| Operation::MineBlock { limit, conflict }),
        1 => (0u64..6_000).prop_map(|advance_ms| Operation::Expire { advance_ms }),
        1 => Just(Operation::Readmit),
    ]
}

/// Encoded size of a spend with `inputs` inputs and `outputs` outputs (counts below 128).
fn spend_size(inputs: usize, outputs: usize) -> usize {
    4 + 1 + 1 + 100 * inputs + 1 + 40 * outputs
}

struct World {
    chain: TestChain,
    pool: Mempool,
    now_ms: u64,
}

impl World {
    fn accept(&mut self, transaction: Transaction) -> Result<Accepted, MempoolError> {
        self.pool.accept(
            transaction,
            &self.chain.utxo,
            self.chain.height().next(),
            self.now_ms,
            &SequentialVerifier,
        )
    }

    fn snapshot(&self) -> (Vec<Txid>, usize) {
        let txids = self
            .pool
            .entries_by_arrival()
            .iter()
            .map(|entry| entry.txid)
            .collect();
        (txids, self.pool.total_bytes())
    }

    /// Chain coins no pooled transaction spends, then unspent pooled outputs.
    fn available_coins(&self) -> Vec<OutPoint> {
        let mut chain_coins: Vec<OutPoint> = self
            .chain
            .utxo
            .keys()
            .filter(|outpoint| self.pool.spender_of(outpoint).is_none())
            .copied()
            .collect();
        chain_coins.sort();
        chain_coins.extend(
            self.pool
                .unspent_pool_outputs()
                .into_iter()
                .map(|(outpoint, _)| outpoint),
        );
        chain_coins
    }

    fn value_of(&self, outpoint: &OutPoint) -> u64 {
        let value = match self.chain.utxo.get(outpoint) {
            Some(coin) => coin.output.value,
            None => {
                let entry = self.pool.get(&outpoint.txid).expect("a pooled output");
                entry.transaction.outputs[outpoint.vout as usize].value
            }
        };
        value.to_units()
    }

    fn run(&mut self, operation: Operation) {
        match operation {
            Operation::Accept {
                inputs,
                outputs,
                fee_per_byte,
                advance_ms,
            } => self.run_accept(&inputs, outputs, fee_per_byte, advance_ms),
            Operation::DoubleSpend { input } => self.run_double_spend(input),
            Operation::MineBlock { limit, conflict } => self.run_mine_block(limit, conflict),
            Operation::Expire { advance_ms } => {
                self.now_ms += advance_ms;
                let removed = self.pool.expire(self.now_ms);
                for txid in &removed {
                    assert!(!self.pool.contains(txid));
                }
                for entry in self.pool.entries_by_arrival() {
                    assert!(
                        self.now_ms - entry.time_ms <= EXPIRY_MS,
                        "no old entry stays"
                    );
                }
            }
            Operation::Readmit => {
                let transactions = self.pool.take_all();
                assert!(self.pool.is_empty());
                for transaction in transactions {
                    let accepted = self
                        .accept(transaction)
                        .expect("everything pooled is valid on the chain, parents first");
                    assert!(accepted.evicted.is_empty(), "the same set fits again");
                }
            }
        }
        self.pool.assert_consistent();
        self.check_selection(usize::MAX);
        // Every input the pool does not create is an unspent chain coin.
        for entry in self.pool.entries_by_arrival() {
            for outpoint in self.pool.coins_to_fetch(&entry.transaction) {
                assert!(
                    self.chain.utxo.contains_key(&outpoint),
                    "pool valid on the chain"
                );
            }
        }
    }

    fn run_accept(&mut self, inputs: &[Index], outputs: usize, fee_per_byte: u64, advance_ms: u64) {
        let available = self.available_coins();
        if available.is_empty() {
            return;
        }
        let mut chosen: Vec<OutPoint> = Vec::new();
        for index in inputs {
            let outpoint = *index.get(&available);
            if !chosen.contains(&outpoint) {
                chosen.push(outpoint);
            }
        }
        let fee = fee_per_byte * spend_size(chosen.len(), outputs) as u64;
        let input_total: u64 = chosen.iter().map(|outpoint| self.value_of(outpoint)).sum();
        if input_total < fee + 1_000 * outputs as u64 {
            return;
        }
        let transaction = spend(&self.chain, &self.pool, &chosen, outputs, fee);
        assert_eq!(
            transaction.compute_size(),
            spend_size(chosen.len(), outputs)
        );
        let txid = transaction.compute_txid();
        self.now_ms += advance_ms;
        let before = self.snapshot();
        match self.accept(transaction) {
            Ok(accepted) => {
                assert!(self.pool.contains(&txid));
                assert_eq!(accepted.fee.to_units(), fee);
                for evicted in &accepted.evicted {
                    assert!(!self.pool.contains(evicted));
                }
                assert!(self.pool.total_bytes() <= MAX_POOL_BYTES);
            }
            Err(error) => {
                assert!(
                    matches!(
                        error.rule(),
                        "fee-rate-too-low"
                            | "too-many-ancestors"
                            | "too-many-descendants"
                            | "pool-full"
                    ),
                    "only policy refuses a well-formed spend: {error}"
                );
                if fee_per_byte > 0 && error.rule() == "fee-rate-too-low" {
                    panic!("a positive whole rate per byte meets the minimum: {error}");
                }
                assert_eq!(self.snapshot(), before, "a refusal changes nothing");
            }
        }
    }

    fn run_double_spend(&mut self, input: Index) {
        let mut spent: Vec<OutPoint> = self
            .pool
            .entries_by_arrival()
            .iter()
            .flat_map(|entry| entry.transaction.spends().iter().map(|input| input.prevout))
            .collect();
        if spent.is_empty() {
            return;
        }
        spent.sort();
        let outpoint = *input.get(&spent);
        let spender = self.pool.spender_of(&outpoint).expect("spent in the pool");
        let transaction = spend(&self.chain, &self.pool, &[outpoint], 1, 77_777);
        let before = self.snapshot();
        assert_eq!(
            self.accept(transaction),
            Err(MempoolError::Conflict {
                outpoint,
                spent_by: spender
            })
        );
        assert_eq!(self.snapshot(), before);
    }

    fn run_mine_block(&mut self, limit: usize, conflict: Option<Index>) {
        let selected = self.check_selection(limit);
        let selected_set: HashSet<Txid> = selected.iter().map(Transaction::compute_txid).collect();
        let mut fees = selected
            .iter()
            .map(|transaction| {
                self.pool
                    .get(&transaction.compute_txid())
                    .expect("selected from the pool")
                    .fee
            })
            .try_fold(Amount::ZERO, Amount::checked_add)
            .expect("test fees are small");
        let mut transactions = selected;
        let mut conflicting_spender = None;
        if let Some(index) = conflict {
            let mut candidates: Vec<OutPoint> = self
                .pool
                .entries_by_arrival()
                .iter()
                .filter(|entry| !selected_set.contains(&entry.txid))
                .flat_map(|entry| entry.transaction.spends().iter().map(|input| input.prevout))
                .filter(|outpoint| self.chain.utxo.contains_key(outpoint))
                .collect();
            candidates.sort();
            if !candidates.is_empty() {
                let outpoint = *index.get(&candidates);
                conflicting_spender = self.pool.spender_of(&outpoint);
                let double_spend = spend(&self.chain, &self.pool, &[outpoint], 1, 5_000);
                fees = fees
                    .checked_add(Amount::from_units(5_000).expect("in range"))
                    .expect("small");
                transactions.push(double_spend);
            }
        }
        let block = self.chain.build(transactions, fees);
        self.chain
            .push(block.clone())
            .expect("a selection (plus a spend of a chain coin) is a valid block");
        let removed = self.pool.remove_for_block(&block);
        for txid in selected_set.iter().chain(conflicting_spender.iter()) {
            assert!(removed.contains(txid));
            assert!(!self.pool.contains(txid));
        }
    }

    /// Selects for a block of `limit` bytes and checks the selection's promises; returns
    /// the selected transactions.
    fn check_selection(&self, limit: usize) -> Vec<Transaction> {
        let selected = self.pool.select_for_block(limit);
        let total: usize = selected.iter().map(|entry| entry.size).sum();
        assert!(total <= limit);
        let mut seen = HashSet::new();
        for entry in &selected {
            for parent in entry.parents() {
                assert!(seen.contains(parent), "parents come first");
            }
            assert!(seen.insert(entry.txid), "each once");
        }
        if limit == usize::MAX {
            assert_eq!(selected.len(), self.pool.len(), "everything fits");
        }
        selected
            .into_iter()
            .map(|entry| entry.transaction.clone())
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_keep_the_pool_consistent(
        operations in prop::collection::vec(operation(), 1..60)
    ) {
        let chain = TestChain::regtest_with_mature_coins(6);
        let pool = Mempool::new(chain.params, MempoolOptions {
            max_bytes: MAX_POOL_BYTES,
            expiry_ms: EXPIRY_MS,
            min_fee_rate: FeeRate::from_units_per_byte(1),
            max_ancestors: 4,
            max_descendants: 5,
        });
        let mut world = World { chain, pool, now_ms: 1_000_000 };
        for operation in operations {
            world.run(operation);
        }
    }
}
