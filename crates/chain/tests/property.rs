//! Property: random trees of blocks fed in random order (forks, late parents, duplicates,
//! invalid blocks mixed in) always end on the most-work valid tip, with a UTXO set equal
//! to one rebuilt from scratch along that chain, before and after a restart, whatever the
//! coin cache's size (flushed every block, every few blocks, or never until closed).

mod common;

use common::{NOW_MS, assert_consistent, open, open_with_coin_cache};
use powchain_consensus::testkit::{TestChain, test_address, test_key};
use powchain_consensus::{Amount, Block, BlockHash, BlockHeight, TxOut};
use proptest::prelude::*;

/// How one block of the tree is made.
#[derive(Clone, Debug)]
struct Step {
    parent: usize,
    spend: bool,
    invalid: Option<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        any::<usize>(),
        any::<bool>(),
        prop::option::weighted(0.15, 0u8..3),
    )
        .prop_map(|(parent, spend, invalid)| Step {
            parent,
            spend,
            invalid,
        })
}

struct Tree {
    /// Every block made, in creation order, with whether it is valid.
    blocks: Vec<(Block, bool)>,
    /// Valid blocks' heights and hashes.
    valid: Vec<(BlockHeight, BlockHash)>,
}

fn build_tree(steps: &[Step]) -> Tree {
    let base = TestChain::regtest_with_mature_coins(3);
    let mut blocks: Vec<(Block, bool)> = base.blocks[1..]
        .iter()
        .map(|block| (block.clone(), true))
        .collect();
    let mut valid: Vec<(BlockHeight, BlockHash)> = base.blocks[1..]
        .iter()
        .enumerate()
        .map(|(index, block)| (BlockHeight(index as u64 + 1), block.compute_hash()))
        .collect();
    let mut states = vec![base];
    for (index, step) in steps.iter().enumerate() {
        let mut builder = states[step.parent % states.len()].clone();
        builder.miner = test_key((index % 3 + 1) as u8);
        let keys = [test_key(1), test_key(2), test_key(3)];
        let mut transactions = Vec::new();
        let mut fees = Amount::ZERO;
        let fee = Amount::from_units(500).expect("in range");
        if step.spend || step.invalid.is_some() {
            // Spend the oldest mature coin, whichever key owns it.
            let spend_height = builder.height().next();
            let maturity = builder.params.coinbase_maturity;
            let spendable = builder
                .utxo
                .iter()
                .filter(|(_, coin)| !coin.is_coinbase || coin.height.0 + maturity <= spend_height.0)
                .min_by_key(|(outpoint, coin)| (coin.height, **outpoint))
                .map(|(outpoint, coin)| (*outpoint, *coin));
            if let Some((outpoint, coin)) = spendable {
                let value = coin
                    .output
                    .value
                    .checked_sub(fee)
                    .expect("coins exceed the fee");
                let transaction = builder.spend(
                    &[outpoint],
                    vec![TxOut {
                        value,
                        address: test_address((index % 3 + 1) as u8),
                    }],
                    &keys,
                    &Default::default(),
                );
                transactions.push(transaction);
                fees = fee;
            }
        }
        let mut block = builder.template(transactions, fees);
        block.transactions[0] = {
            let mut coinbase = block.transactions[0].clone();
            if let powchain_consensus::TxInputs::Coinbase(input) = &mut coinbase.inputs {
                input.data = format!("block {index}").into_bytes();
            }
            coinbase
        };
        let is_valid = match step.invalid {
            None => true,
            Some(0) => {
                // The coinbase pays one unit too much.
                let output = &mut block.transactions[0].outputs[0];
                output.value = output
                    .value
                    .checked_add(Amount::from_units(1).expect("ok"))
                    .expect("in range");
                false
            }
            Some(1) if block.transactions.len() > 1 => {
                // A signature that does not verify.
                if let powchain_consensus::TxInputs::Spends(inputs) =
                    &mut block.transactions[1].inputs
                {
                    inputs[0].signature.0[10] ^= 0x55;
                }
                false
            }
            Some(_) if block.transactions.len() > 1 => {
                // The same spend twice.
                let repeated = block.transactions[1].clone();
                let mut second = repeated.clone();
                second.outputs[0].value = second.outputs[0]
                    .value
                    .checked_sub(Amount::from_units(1).expect("ok"))
                    .expect("ok");
                block.transactions.push(second);
                false
            }
            Some(_) => {
                let output = &mut block.transactions[0].outputs[0];
                output.value = output
                    .value
                    .checked_add(Amount::from_units(1).expect("ok"))
                    .expect("in range");
                false
            }
        };
        TestChain::seal(&mut block);
        if is_valid {
            builder
                .push(block.clone())
                .expect("the builder makes valid blocks");
            valid.push((builder.height(), block.compute_hash()));
            states.push(builder);
        } else {
            assert!(
                builder.validate(&block).is_err(),
                "step {index} meant to be invalid"
            );
        }
        blocks.push((block, is_valid));
    }
    Tree { blocks, valid }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_order_ends_on_the_most_work_valid_tip(
        steps in prop::collection::vec(step(), 5..30),
        order_seed in any::<u64>(),
        duplicates in prop::collection::vec(any::<usize>(), 0..6),
        cache_blocks in prop::sample::select(vec![0usize, 1, 2, 3, 5, 1_000]),
    ) {
        let tree = build_tree(&steps);
        let mut delivery: Vec<usize> = (0..tree.blocks.len()).collect();
        // A deterministic shuffle from the seed (Fisher-Yates with splitmix64).
        let mut state = order_seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for index in (1..delivery.len()).rev() {
            let other = (next() % (index as u64 + 1)) as usize;
            delivery.swap(index, other);
        }
        for duplicate in duplicates {
            let position = duplicate % delivery.len();
            delivery.insert(position, delivery[(duplicate / 7) % delivery.len()]);
        }

        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open_with_coin_cache(dir.path(), cache_blocks);
        for index in delivery {
            let (block, is_valid) = &tree.blocks[index];
            let result = chain.accept_block(block.clone(), NOW_MS);
            if *is_valid {
                prop_assert!(result.is_ok(), "a valid block was refused: {:?}", result);
            }
        }
        let best_height = tree.valid.iter().map(|(height, _)| *height).max().expect("base blocks");
        let tip = chain.tip();
        prop_assert_eq!(tip.height, best_height);
        prop_assert!(tree.valid.contains(&(tip.height, tip.hash)));
        for (block, is_valid) in &tree.blocks {
            if !is_valid {
                prop_assert!(!chain.is_on_main_chain(&block.compute_hash()));
            }
        }
        assert_consistent(&chain);
        let tip_hash = tip.hash;
        let utxo = chain.reader().snapshot().expect("snapshot").utxo_set().expect("read");
        // Closed as a kill after the last sync would: the unflushed blocks are re-applied.
        chain.close_leaving_cache_unflushed().expect("close");
        let chain = open(dir.path());
        prop_assert_eq!(chain.tip().hash, tip_hash);
        assert_consistent(&chain);
        // Closed cleanly: everything flushed, nothing to re-apply.
        drop(chain);
        let chain = open_with_coin_cache(dir.path(), 0);
        prop_assert_eq!(chain.unflushed_blocks(), 0);
        prop_assert_eq!(chain.tip().hash, tip_hash);
        assert_consistent(&chain);
        let reopened = chain.reader().snapshot().expect("snapshot").utxo_set().expect("read");
        prop_assert_eq!(reopened, utxo);
    }
}
