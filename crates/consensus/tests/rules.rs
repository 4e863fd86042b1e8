//! Every consensus rule, broken on purpose.
//!
//! Each test starts from a block or transaction that `TestChain` builds valid on regtest,
//! breaks exactly one rule, and asserts the exact `ConsensusError`: its variant, the values
//! it carries, and its `rule()` name. Positive tests sit on each limit, so an off-by-one in
//! either direction fails a test. The tutorial's flaws (SPEC.md, "What the tutorial gets
//! wrong") are tests named `tutorial_flaw_*`.
//!
//! Tests talk to the rules only through one check helper per area, so when the validation
//! API changes, the helpers change and the tests do not:
//!
//! ```text
//!   headers       assert_block_rejected(.., Reseal::NonceOnly | Reseal::Nothing, ..)
//!                 validate_at_time(chain, time, clock)
//!   blocks        valid_block ──mutate──▶ re-seal ──▶ assert_block_rejected
//!   transactions  assert_transaction_accepted / assert_transaction_rejected: the same
//!                 transaction loose (as the mempool checks it) and inside the next block
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use powchain_consensus::params::Retarget;
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{SequentialVerifier, SighashCache, address_of, sign_schnorr};
use powchain_consensus::testkit::{TestChain, solve, test_address, test_key};
use powchain_consensus::transaction::MAX_TX_BYTES;
use powchain_consensus::validation::{
    BlockConnection, HeaderContext, HeaderSummary, InputCheck, next_required_bits, validate_header,
    validate_transaction,
};
use powchain_consensus::{
    Amount, Block, BlockHash, BlockHeight, Coin, CompactTarget, ConsensusError, Header, MerkleRoot,
    Network, OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut, Txid,
};

// ---------------------------------------------------------------------------------------
// Values and transactions
// ---------------------------------------------------------------------------------------

/// The fee the baseline spend pays: small but not zero, so a fee computed wrongly shows.
const FEE_UNITS: u64 = 1_000;

/// What the baseline spend pays to its payee.
const PAYMENT_COINS: u64 = 10;

fn units(count: u64) -> Amount {
    Amount::from_units(count).expect("test amounts stay below MAX_MONEY")
}

fn coins(count: u64) -> Amount {
    Amount::from_coins(count).expect("test amounts stay below MAX_MONEY")
}

/// An output paying `value` to the test key of `seed` (seed 1 is the miner).
fn pay_to(seed: u8, value: Amount) -> TxOut {
    TxOut {
        value,
        address: test_address(seed),
    }
}

/// A regtest chain whose miner owns a few mature coinbases: where most tests start.
fn new_chain() -> TestChain {
    TestChain::regtest_with_mature_coins(4)
}

/// The keys that sign test spends: the miner's (it owns every coinbase) and the payees'.
fn signing_keys(chain: &TestChain) -> Vec<Keypair> {
    vec![chain.miner, test_key(2), test_key(3)]
}

/// A signed transaction spending `outpoints` from the chain's UTXO set.
fn pay(chain: &TestChain, outpoints: &[OutPoint], outputs: Vec<TxOut>) -> Transaction {
    chain.spend(outpoints, outputs, &signing_keys(chain), &HashMap::new())
}

/// A signed transaction spending `outpoints` from the UTXO set or from `extra` (outputs
/// the same block creates, or coins that do not exist at all).
fn pay_from(
    chain: &TestChain,
    outpoints: &[OutPoint],
    outputs: Vec<TxOut>,
    extra: &HashMap<OutPoint, Coin>,
) -> Transaction {
    chain.spend(outpoints, outputs, &signing_keys(chain), extra)
}

/// Outputs that pay [`PAYMENT_COINS`] to key 2 and the rest of `input`, less `fee_units`,
/// back to the miner.
fn payment_with_change(chain: &TestChain, input: Amount, fee_units: u64) -> Vec<TxOut> {
    let payment = coins(PAYMENT_COINS);
    let change = input
        .checked_sub(payment)
        .and_then(|rest| rest.checked_sub(units(fee_units)))
        .expect("the input covers the payment and the fee");
    vec![
        pay_to(2, payment),
        TxOut {
            value: change,
            address: address_of(&chain.miner),
        },
    ]
}

/// The baseline valid spend: mature coin `index` pays [`PAYMENT_COINS`] to key 2, the
/// change goes back to the miner, and [`FEE_UNITS`] are left as the fee.
fn valid_spend_of(chain: &TestChain, index: u64) -> Transaction {
    let (outpoint, coin) = chain.mature_coin(index);
    pay(
        chain,
        &[outpoint],
        payment_with_change(chain, coin.output.value, FEE_UNITS),
    )
}

fn valid_spend(chain: &TestChain) -> Transaction {
    valid_spend_of(chain, 0)
}

/// A coin that no block created, owned by the miner, for views that are corrupt or made up.
fn made_up_coin(chain: &TestChain, value: Amount, tag: u8) -> (OutPoint, Coin) {
    let outpoint = OutPoint {
        txid: Txid([tag; 32]),
        vout: 0,
    };
    let coin = Coin {
        output: TxOut {
            value,
            address: address_of(&chain.miner),
        },
        height: BlockHeight(1),
        is_coinbase: false,
    };
    (outpoint, coin)
}

/// Signs input `input_index` of `transaction` with `key`, whoever owns the coin: a forgery
/// when `key` is not the owner's.
fn sign_input_with(
    transaction: &mut Transaction,
    spent_outputs: &[TxOut],
    input_index: usize,
    key: &Keypair,
) {
    let sighash = SighashCache::new(transaction, spent_outputs)
        .expect("one spent output per input")
        .compute_sighash(input_index)
        .expect("the input exists");
    let signature = sign_schnorr(key, &sighash.0, &[7; 32]);
    input_mut(transaction, input_index).signature = signature;
}

fn input_mut(transaction: &mut Transaction, input_index: usize) -> &mut TxIn {
    let TxInputs::Spends(inputs) = &mut transaction.inputs else {
        panic!("only spends have signed inputs");
    };
    &mut inputs[input_index]
}

fn coinbase_data_mut(block: &mut Block) -> &mut Vec<u8> {
    let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs else {
        panic!("a test block starts with its coinbase");
    };
    &mut coinbase.data
}

fn in_transaction(block: &Block, index: usize, error: ConsensusError) -> ConsensusError {
    ConsensusError::InTransaction {
        index,
        txid: block.transactions[index].compute_txid(),
        error: Box::new(error),
    }
}

// ---------------------------------------------------------------------------------------
// The check helpers, one per area
// ---------------------------------------------------------------------------------------

/// Asserts that `result` is exactly `expected`, and that `expected` is the rule `rule`.
fn assert_rejected<T: Debug>(
    result: Result<T, ConsensusError>,
    expected: ConsensusError,
    rule: &str,
) {
    assert_eq!(
        expected.rule(),
        rule,
        "the test expects {expected:?}, which is another rule"
    );
    match result {
        Ok(value) => panic!("expected rule {rule} ({expected}), but it was accepted: {value:?}"),
        Err(error) => {
            assert_eq!(error, expected, "wrong error (want rule {rule})");
            assert_eq!(error.rule(), rule);
        }
    }
}

/// The next block of `chain`, holding `transactions` and valid: its coinbase pays exactly
/// subsidy plus fees.
fn valid_block(chain: &TestChain, transactions: Vec<Transaction>) -> Block {
    // A coinbase may pay less than allowed, so a block paying the subsidy alone validates
    // and reports the fees the real block's coinbase may add.
    let probe = chain.build(transactions.clone(), Amount::ZERO);
    let fees = chain
        .validate(&probe)
        .expect("the baseline transactions are valid")
        .fees;
    let block = chain.build(transactions, fees);
    chain
        .validate(&block)
        .expect("the baseline block, paying subsidy plus fees, is valid");
    block
}

/// How a test's edited block is re-sealed before it is validated.
#[derive(Clone, Copy, Debug)]
enum Reseal {
    /// Recompute the Merkle root and solve: only the edited rule is broken.
    MerkleRootAndNonce,
    /// Solve only: the header keeps the Merkle root it had (for the Merkle rule itself, or
    /// an edit to the header).
    NonceOnly,
    /// Leave the block as edited (for the proof-of-work rule itself).
    Nothing,
}

/// The block check: builds a valid next block of `transactions`, breaks it with `mutate`,
/// re-seals it as told, and asserts the exact error `expected(final block)` and its rule.
fn assert_block_rejected(
    chain: &TestChain,
    transactions: Vec<Transaction>,
    reseal: Reseal,
    mutate: impl FnOnce(&mut Block),
    expected: impl FnOnce(&Block) -> ConsensusError,
    rule: &str,
) {
    let mut block = valid_block(chain, transactions);
    mutate(&mut block);
    match reseal {
        Reseal::MerkleRootAndNonce => TestChain::seal(&mut block),
        Reseal::NonceOnly => solve(&mut block.header),
        Reseal::Nothing => {}
    }
    assert_rejected(chain.validate(&block), expected(&block), rule);
}

/// The header time check: the next valid block with its time set to `time_ms` and
/// re-solved, validated with the node's clock at `now_ms`.
fn validate_at_time(
    chain: &TestChain,
    time_ms: u64,
    now_ms: u64,
) -> Result<BlockConnection, ConsensusError> {
    let mut block = valid_block(chain, vec![]);
    block.header.time_ms = time_ms;
    solve(&mut block.header);
    chain.validate_with_clock(&block, now_ms)
}

/// Validates `transaction` loose, as the mempool does, for the chain's next block.
fn validate_loose(
    chain: &TestChain,
    transaction: &Transaction,
) -> Result<InputCheck, ConsensusError> {
    validate_transaction(
        chain.params,
        transaction,
        &chain.utxo,
        chain.height().next(),
        &SequentialVerifier,
    )
}

/// The transaction check, accepting side: `transaction` is valid loose and in the next
/// block, and both agree on its fee, which is returned.
fn assert_transaction_accepted(chain: &TestChain, transaction: &Transaction) -> Amount {
    let loose = validate_loose(chain, transaction).expect("valid as a loose transaction");
    let block = valid_block(chain, vec![transaction.clone()]);
    let connection = chain.validate(&block).expect("valid inside a block");
    assert_eq!(
        connection.fees, loose.fee,
        "block and mempool disagree on the fee"
    );
    loose.fee
}

/// The transaction check, rejecting side: `transaction` breaks `expected` loose, and the
/// same rule, wrapped in `InTransaction` at index 1, as the only transaction after the
/// coinbase of the next block.
fn assert_transaction_rejected(
    chain: &TestChain,
    transaction: &Transaction,
    expected: ConsensusError,
    rule: &str,
) {
    assert_rejected(validate_loose(chain, transaction), expected.clone(), rule);
    // The coinbase pays the subsidy alone, which no transaction can make an overpayment.
    let block = chain.build(vec![transaction.clone()], Amount::ZERO);
    let wrapped = in_transaction(&block, 1, expected);
    assert_rejected(chain.validate(&block), wrapped, rule);
}

// ---------------------------------------------------------------------------------------
// Headers: bits, proof of work, time
// ---------------------------------------------------------------------------------------

#[test]
fn baseline_block_and_spend_are_valid() {
    let chain = new_chain();
    let fee = assert_transaction_accepted(&chain, &valid_spend(&chain));
    assert_eq!(fee, units(FEE_UNITS));
}

#[test]
fn bad_bits_on_regtest() {
    let chain = new_chain();
    // A valid target, harder than regtest's fixed one, and met by the re-solved nonce:
    // the only thing wrong is that it is not the bits the chain demands.
    let other_bits = CompactTarget(0x2000_ffff);
    assert_block_rejected(
        &chain,
        vec![],
        Reseal::NonceOnly,
        |block| block.header.bits = other_bits,
        |_| ConsensusError::BadBits {
            got: other_bits,
            expected: chain.params.pow_limit,
        },
        "bad-bits",
    );
}

#[test]
fn bits_that_expand_to_no_target_are_bad_bits_even_when_required() {
    // No chain demands such bits (next_required_bits only yields valid targets), so this
    // guard is reached only by calling validate_header directly.
    let chain = new_chain();
    for invalid_bits in [
        CompactTarget(0x0480_0001), // negative
        CompactTarget(0x0000_0000), // zero
        CompactTarget(0xff00_ffff), // overflows 256 bits
    ] {
        let mut header = chain.template(vec![], Amount::ZERO).header;
        header.bits = invalid_bits;
        let context = HeaderContext {
            required_bits: invalid_bits,
            ..chain.next_header_context(header.time_ms)
        };
        assert_rejected(
            validate_header(chain.params, &header, &context),
            ConsensusError::BadBits {
                got: invalid_bits,
                expected: invalid_bits,
            },
            "bad-bits",
        );
    }
}

/// Sets the first nonce whose hash does NOT meet the header's target.
fn unsolve(header: &mut Header) {
    let target = header
        .bits
        .to_target()
        .expect("test headers have valid bits");
    header.nonce = (0..u64::MAX)
        .find(|nonce| {
            let candidate = Header {
                nonce: *nonce,
                ..*header
            };
            !target.is_met_by(candidate.compute_hash())
        })
        .expect("regtest's target is missed by about half of all hashes");
}

#[test]
fn bad_proof_of_work() {
    let chain = new_chain();
    assert_block_rejected(
        &chain,
        vec![valid_spend(&chain)],
        Reseal::Nothing,
        |block| unsolve(&mut block.header),
        |block| ConsensusError::BadProofOfWork {
            hash: block.compute_hash(),
            bits: block.header.bits,
        },
        "bad-proof-of-work",
    );
}

/// A chain long enough that the median of the last 11 times is well behind the tip.
fn long_chain() -> TestChain {
    TestChain::regtest_with_mature_coins(14)
}

#[test]
fn time_one_after_median_time_past_is_accepted() {
    let chain = long_chain();
    let median = chain.next_header_context(0).median_time_past_ms;
    assert!(
        median < chain.tip().header.time_ms,
        "the median lags the tip"
    );
    validate_at_time(&chain, median + 1, median + 1)
        .expect("one ms after the median is late enough");
}

#[test]
fn time_equal_to_median_time_past_is_too_old() {
    let chain = long_chain();
    let median = chain.next_header_context(0).median_time_past_ms;
    assert_rejected(
        validate_at_time(&chain, median, median),
        ConsensusError::TimeTooOld {
            time_ms: median,
            median_time_past_ms: median,
        },
        "time-too-old",
    );
}

#[test]
fn time_exactly_the_allowed_drift_ahead_of_the_clock_is_accepted() {
    let chain = new_chain();
    let time_ms = chain.template(vec![], Amount::ZERO).header.time_ms;
    let now_ms = time_ms - chain.params.max_future_block_time_ms;
    validate_at_time(&chain, time_ms, now_ms).expect("now + max drift is allowed");
}

#[test]
fn time_one_past_the_allowed_drift_is_too_new() {
    let chain = new_chain();
    let time_ms = chain.template(vec![], Amount::ZERO).header.time_ms;
    let now_ms = time_ms - chain.params.max_future_block_time_ms - 1;
    assert_rejected(
        validate_at_time(&chain, time_ms, now_ms),
        ConsensusError::TimeTooNew {
            time_ms,
            max_ms: time_ms - 1,
        },
        "time-too-new",
    );
}

// ---------------------------------------------------------------------------------------
// Devnet difficulty (ASERT): real proof of work, so only a handful of blocks
// ---------------------------------------------------------------------------------------

#[test]
fn devnet_block_one_must_carry_the_genesis_bits() {
    let chain = TestChain::new(Network::Devnet);
    let mut block = chain.template(vec![], Amount::ZERO);
    // The proof-of-work limit: easier than the genesis bits (about 65,000 hashes to solve)
    // and a valid target, but not what the ASERT anchor must carry.
    block.header.bits = chain.params.pow_limit;
    solve(&mut block.header);
    assert_rejected(
        chain.validate(&block),
        ConsensusError::BadBits {
            got: chain.params.pow_limit,
            expected: chain.params.genesis_bits,
        },
        "bad-bits",
    );
}

fn summary_of(chain: &TestChain, height: usize) -> HeaderSummary {
    HeaderSummary {
        height: BlockHeight(height as u64),
        time_ms: chain.blocks[height].header.time_ms,
        bits: chain.blocks[height].header.bits,
    }
}

#[test]
fn devnet_bits_must_follow_asert() {
    let Retarget::Asert(schedule) = Network::Devnet.params().retarget else {
        panic!("devnet retargets with ASERT");
    };
    let mut chain = TestChain::new(Network::Devnet);
    // Block 1, the anchor, at the genesis bits: about a million hashes.
    let anchor = chain.build(vec![], Amount::ZERO);
    chain.push(anchor).expect("block 1 on schedule is valid");
    // Block 2 arrives one half-life behind schedule (its own bits are still the anchor's).
    let mut late = chain.template(vec![], Amount::ZERO);
    assert_eq!(late.header.bits, chain.params.genesis_bits);
    late.header.time_ms += schedule.half_life as u64;
    solve(&mut late.header);
    chain.push(late).expect("a late block is valid");

    // One half-life behind schedule doubles the target exactly: mantissa 0x0fffff becomes
    // 0x1ffffe at the same exponent.
    let required = next_required_bits(
        chain.params,
        summary_of(&chain, 2),
        Some(summary_of(&chain, 1)),
    )
    .expect("the anchor is given");
    assert_eq!(required, CompactTarget(0x1e1f_fffe));

    // Block 3 with the limit's bits (a valid target, and met) is still not what ASERT demands.
    let mut wrong = chain.template(vec![], Amount::ZERO);
    wrong.header.bits = chain.params.pow_limit;
    solve(&mut wrong.header);
    assert_rejected(
        chain.validate(&wrong),
        ConsensusError::BadBits {
            got: chain.params.pow_limit,
            expected: required,
        },
        "bad-bits",
    );
    // With the required bits (the template's), block 3 is valid.
    let right = chain.build(vec![], Amount::ZERO);
    assert_eq!(right.header.bits, required);
    chain
        .validate(&right)
        .expect("block 3 with the ASERT bits is valid");
}

// ---------------------------------------------------------------------------------------
// Blocks: structure
// ---------------------------------------------------------------------------------------

#[test]
fn no_transactions() {
    let chain = new_chain();
    assert_block_rejected(
        &chain,
        vec![],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions.clear(),
        |_| ConsensusError::NoTransactions,
        "no-transactions",
    );
}

#[test]
fn first_not_coinbase() {
    let chain = new_chain();
    assert_block_rejected(
        &chain,
        vec![valid_spend(&chain)],
        Reseal::MerkleRootAndNonce,
        |block| {
            block.transactions.remove(0);
        },
        |_| ConsensusError::FirstNotCoinbase,
        "first-not-coinbase",
    );
}

/// A second coinbase for the block at `height`, differing from the first by its note.
fn second_coinbase(height: BlockHeight) -> Transaction {
    Transaction::new_coinbase(height, b"second".to_vec(), vec![pay_to(3, units(1))])
}

#[test]
fn extra_coinbase_right_after_the_first() {
    let chain = new_chain();
    let height = chain.height().next();
    assert_block_rejected(
        &chain,
        vec![],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions.push(second_coinbase(height)),
        |_| ConsensusError::ExtraCoinbase { index: 1 },
        "extra-coinbase",
    );
}

#[test]
fn extra_coinbase_later_in_the_block_names_its_position() {
    let chain = new_chain();
    let height = chain.height().next();
    assert_block_rejected(
        &chain,
        vec![valid_spend(&chain)],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions.push(second_coinbase(height)),
        |_| ConsensusError::ExtraCoinbase { index: 2 },
        "extra-coinbase",
    );
}

#[test]
fn coinbase_height_mismatch() {
    let chain = new_chain();
    let height = chain.height().next();
    // Replaying the parent's height is how a miner would try to reuse an old coinbase.
    assert_block_rejected(
        &chain,
        vec![],
        Reseal::MerkleRootAndNonce,
        |block| {
            let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs else {
                panic!("a test block starts with its coinbase");
            };
            coinbase.height = chain.height();
        },
        |_| ConsensusError::CoinbaseHeightMismatch {
            got: chain.height(),
            expected: height,
        },
        "coinbase-height-mismatch",
    );
}

#[test]
fn coinbase_data_exactly_at_the_limit_is_accepted() {
    let chain = new_chain();
    let mut block = valid_block(&chain, vec![]);
    *coinbase_data_mut(&mut block) = vec![b'x'; chain.params.max_coinbase_data_bytes];
    TestChain::seal(&mut block);
    chain
        .validate(&block)
        .expect("a note of exactly the limit is valid");
}

#[test]
fn coinbase_data_too_long() {
    let chain = new_chain();
    let max = chain.params.max_coinbase_data_bytes;
    assert_block_rejected(
        &chain,
        vec![],
        Reseal::MerkleRootAndNonce,
        |block| *coinbase_data_mut(block) = vec![b'x'; max + 1],
        |block| {
            in_transaction(
                block,
                0,
                ConsensusError::CoinbaseDataTooLong {
                    length: max + 1,
                    max,
                },
            )
        },
        "coinbase-data-too-long",
    );
}

#[test]
fn coinbase_paying_exactly_subsidy_plus_fees_is_accepted() {
    let chain = new_chain();
    let block = valid_block(
        &chain,
        vec![valid_spend_of(&chain, 0), valid_spend_of(&chain, 1)],
    );
    let allowed = chain
        .params
        .subsidy(chain.height().next())
        .checked_add(units(2 * FEE_UNITS))
        .expect("in range");
    assert_eq!(block.transactions[0].output_total(), Some(allowed));
    let connection = chain
        .validate(&block)
        .expect("paying exactly what is allowed is valid");
    assert_eq!(connection.fees, units(2 * FEE_UNITS));
}

#[test]
fn coinbase_overpays_by_one_unit() {
    let chain = new_chain();
    let allowed = chain
        .params
        .subsidy(chain.height().next())
        .checked_add(units(FEE_UNITS))
        .expect("in range");
    let paid = allowed.checked_add(units(1)).expect("in range");
    assert_block_rejected(
        &chain,
        vec![valid_spend(&chain)],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions[0].outputs[0].value = paid,
        |_| ConsensusError::CoinbaseOverpays { paid, allowed },
        "coinbase-overpays",
    );
}

#[test]
fn bad_merkle_root() {
    let chain = new_chain();
    // Two independent spends are valid in either order, but the root commits to the order.
    // The header is untouched, so its proof of work still holds.
    assert_block_rejected(
        &chain,
        vec![valid_spend_of(&chain, 0), valid_spend_of(&chain, 1)],
        Reseal::Nothing,
        |block| block.transactions.swap(1, 2),
        |block| ConsensusError::BadMerkleRoot {
            header: block.header.merkle_root,
            computed: block.compute_merkle_root(),
        },
        "bad-merkle-root",
    );
}

#[test]
fn duplicate_transaction() {
    let chain = new_chain();
    let spend = valid_spend(&chain);
    let txid = spend.compute_txid();
    assert_block_rejected(
        &chain,
        vec![spend.clone()],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions.push(spend),
        |_| ConsensusError::DuplicateTransaction { txid },
        "duplicate-transaction",
    );
}

#[test]
fn double_spend_in_block() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    // Two different transactions (different payees) spending the same coin.
    let to_key_two = pay(&chain, &[outpoint], vec![pay_to(2, coin.output.value)]);
    let to_key_three = pay(&chain, &[outpoint], vec![pay_to(3, coin.output.value)]);
    assert_block_rejected(
        &chain,
        vec![to_key_two],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions.push(to_key_three),
        |_| ConsensusError::DoubleSpendInBlock { outpoint },
        "double-spend-in-block",
    );
}

/// A transaction that spends `input` (holding `value`) and pays it back to the miner in
/// output 0, less `output_count - 1` one-unit outputs to key 3 and no fee; `output_count`
/// outputs in all.
fn filler_spend(
    chain: &TestChain,
    input: OutPoint,
    value: Amount,
    output_count: usize,
    extra: &HashMap<OutPoint, Coin>,
) -> Transaction {
    let small_outputs = output_count - 1;
    let mut outputs = vec![TxOut {
        value: value
            .checked_sub(units(small_outputs as u64))
            .expect("the input covers the one-unit outputs"),
        address: address_of(&chain.miner),
    }];
    outputs.extend(std::iter::repeat_n(pay_to(3, units(1)), small_outputs));
    pay_from(chain, &[input], outputs, extra)
}

/// A valid next block whose encoding is exactly `size` bytes: a chain of filler spends
/// (each spends the previous one's output 0), the last sized to within 40 bytes, and the
/// coinbase note padded to the exact byte.
fn block_of_exact_size(chain: &TestChain, size: usize) -> Block {
    // A one-input spend is version, tag, input count, the input, then an output count
    // that takes two bytes for 128 to 16,383 outputs, then the outputs.
    const SPEND_OVERHEAD_BYTES: usize = 4 + 1 + 1 + TxIn::ENCODED_BYTES + 2;
    // Each filler stays well below MAX_TX_BYTES, and so does the remainder.
    const FILLER_BYTES: usize = 90_000;
    let mut empty = chain.template(vec![], Amount::ZERO);
    coinbase_data_mut(&mut empty).clear();
    let mut remaining = size - empty.compute_size();

    let height = chain.height().next();
    let (mut input, coin) = chain.mature_coin(0);
    let mut value = coin.output.value;
    let mut extra = HashMap::new();
    let mut transactions = Vec::new();
    while remaining >= SPEND_OVERHEAD_BYTES + 128 * TxOut::ENCODED_BYTES {
        let budget = if remaining <= FILLER_BYTES {
            remaining
        } else if remaining < FILLER_BYTES + 10_000 {
            // Split the tail in two rather than leave a remainder too small for a spend.
            remaining / 2
        } else {
            FILLER_BYTES
        };
        let output_count = (budget - SPEND_OVERHEAD_BYTES) / TxOut::ENCODED_BYTES;
        let filler = filler_spend(chain, input, value, output_count, &extra);
        remaining -= filler.compute_size();
        input = OutPoint {
            txid: filler.compute_txid(),
            vout: 0,
        };
        value = filler.outputs[0].value;
        extra.extend(TestChain::coins_of(&filler, height));
        transactions.push(filler);
    }
    let mut block = chain.template(transactions, Amount::ZERO);
    *coinbase_data_mut(&mut block) = vec![b'x'; remaining];
    TestChain::seal(&mut block);
    assert_eq!(block.compute_size(), size, "the filler arithmetic is off");
    block
}

#[test]
fn block_of_exactly_max_block_bytes_is_accepted() {
    let chain = new_chain();
    let block = block_of_exact_size(&chain, chain.params.max_block_bytes);
    chain
        .validate(&block)
        .expect("a block of exactly the limit is valid");
}

#[test]
fn block_too_large_by_one_byte() {
    let chain = new_chain();
    let max = chain.params.max_block_bytes;
    let mut block = block_of_exact_size(&chain, max);
    coinbase_data_mut(&mut block).push(b'x');
    TestChain::seal(&mut block);
    assert_rejected(
        chain.validate(&block),
        ConsensusError::BlockTooLarge { size: max + 1, max },
        "block-too-large",
    );
}

/// A coinbase of exactly `MAX_TX_BYTES`: many one-unit outputs, and the note padding the
/// last bytes (a spend cannot hit the limit exactly: its parts come in steps of 20 bytes).
fn coinbase_of_max_tx_bytes(chain: &TestChain) -> Block {
    const OUTPUTS: usize = 2_498;
    let mut block = chain.template(vec![], Amount::ZERO);
    let coinbase = &mut block.transactions[0];
    let reward = coinbase.outputs[0].value;
    coinbase.outputs[0].value = reward
        .checked_sub(units(OUTPUTS as u64 - 1))
        .expect("the subsidy covers the one-unit outputs");
    coinbase
        .outputs
        .extend(std::iter::repeat_n(pay_to(3, units(1)), OUTPUTS - 1));
    coinbase_data_mut(&mut block).clear();
    let padding = MAX_TX_BYTES - block.transactions[0].compute_size();
    assert!(padding <= chain.params.max_coinbase_data_bytes);
    *coinbase_data_mut(&mut block) = vec![b'x'; padding];
    TestChain::seal(&mut block);
    assert_eq!(block.transactions[0].compute_size(), MAX_TX_BYTES);
    block
}

#[test]
fn transaction_of_exactly_max_tx_bytes_is_accepted() {
    let chain = new_chain();
    let block = coinbase_of_max_tx_bytes(&chain);
    chain
        .validate(&block)
        .expect("a transaction of exactly the limit is valid");
}

#[test]
fn transaction_too_large_by_one_byte_in_a_block() {
    let chain = new_chain();
    let mut block = coinbase_of_max_tx_bytes(&chain);
    coinbase_data_mut(&mut block).push(b'x');
    TestChain::seal(&mut block);
    let expected = in_transaction(
        &block,
        0,
        ConsensusError::TransactionTooLarge {
            size: MAX_TX_BYTES + 1,
            max: MAX_TX_BYTES,
        },
    );
    assert_rejected(chain.validate(&block), expected, "transaction-too-large");
}

// ---------------------------------------------------------------------------------------
// Blocks: connecting to the UTXO set
// ---------------------------------------------------------------------------------------

#[test]
fn a_later_transaction_may_spend_an_earlier_one_in_the_same_block() {
    let chain = new_chain();
    let first = valid_spend(&chain);
    let height = chain.height().next();
    let change = OutPoint {
        txid: first.compute_txid(),
        vout: 1,
    };
    let second = pay_from(
        &chain,
        &[change],
        vec![pay_to(2, coins(1))],
        &TestChain::coins_of(&first, height),
    );
    let block = valid_block(&chain, vec![first, second]);
    chain
        .validate(&block)
        .expect("spending an earlier output of the block is valid");
}

#[test]
fn an_earlier_transaction_may_not_spend_a_later_one_in_the_same_block() {
    let chain = new_chain();
    let first = valid_spend(&chain);
    let height = chain.height().next();
    let change = OutPoint {
        txid: first.compute_txid(),
        vout: 1,
    };
    let second = pay_from(
        &chain,
        &[change],
        vec![pay_to(2, coins(1))],
        &TestChain::coins_of(&first, height),
    );
    assert_block_rejected(
        &chain,
        vec![first, second],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions.swap(1, 2),
        |block| in_transaction(block, 1, ConsensusError::MissingInput { outpoint: change }),
        "missing-input",
    );
}

#[test]
fn block_connection_lists_fees_spent_and_created_coins() {
    let chain = new_chain();
    let height = chain.height().next();
    let (coin_zero_outpoint, coin_zero) = chain.mature_coin(0);
    let (coin_one_outpoint, coin_one) = chain.mature_coin(1);
    // First spends coin 0 (fee 1,000 units); second spends first's change (created and
    // spent inside the block) and coin 1, paying 2,500 units of fee.
    let first = valid_spend(&chain);
    let first_change = OutPoint {
        txid: first.compute_txid(),
        vout: 1,
    };
    let second_inputs = first.outputs[1]
        .value
        .checked_add(coin_one.output.value)
        .expect("in range");
    let second = pay_from(
        &chain,
        &[first_change, coin_one_outpoint],
        vec![pay_to(
            3,
            second_inputs.checked_sub(units(2_500)).expect("in range"),
        )],
        &TestChain::coins_of(&first, height),
    );
    let block = valid_block(&chain, vec![first.clone(), second.clone()]);
    let connection = chain.validate(&block).expect("valid block");

    assert_eq!(connection.fees, units(FEE_UNITS + 2_500));
    // Only coins from before the block count as spent: they are the undo data.
    assert_eq!(
        connection.spent,
        vec![
            (coin_zero_outpoint, coin_zero),
            (coin_one_outpoint, coin_one)
        ]
    );
    // Created coins, in block order, without the change spent inside the block.
    let created_coin = |transaction: &Transaction, vout: u32| {
        (
            OutPoint {
                txid: transaction.compute_txid(),
                vout,
            },
            Coin {
                output: transaction.outputs[vout as usize],
                height,
                is_coinbase: transaction.is_coinbase(),
            },
        )
    };
    assert_eq!(
        connection.created,
        vec![
            created_coin(&block.transactions[0], 0),
            created_coin(&first, 0),
            created_coin(&second, 0),
        ]
    );
    assert!(connection.created[0].1.is_coinbase);
}

#[test]
fn fees_summing_past_max_money_in_a_block_are_input_total_too_large() {
    // Only a corrupt UTXO view holds such coins; the rule must still not overflow.
    let mut chain = new_chain();
    let (first_outpoint, first_coin) = made_up_coin(&chain, Amount::MAX_MONEY, 0xa1);
    let (second_outpoint, second_coin) = made_up_coin(&chain, Amount::MAX_MONEY, 0xa2);
    chain.utxo.insert(first_outpoint, first_coin);
    chain.utxo.insert(second_outpoint, second_coin);
    let first = pay(&chain, &[first_outpoint], vec![pay_to(2, units(1))]);
    let second = pay(&chain, &[second_outpoint], vec![pay_to(2, units(1))]);
    let block = chain.build(vec![first, second], Amount::ZERO);
    let expected = in_transaction(&block, 2, ConsensusError::InputTotalTooLarge);
    assert_rejected(chain.validate(&block), expected, "input-total-too-large");
}

// ---------------------------------------------------------------------------------------
// Coinbase maturity
// ---------------------------------------------------------------------------------------

#[test]
fn coinbase_spent_exactly_at_maturity_is_accepted() {
    let chain = new_chain();
    // Regtest maturity is one block: the tip's coinbase may be spent in the next block.
    assert_eq!(chain.params.coinbase_maturity, 1);
    let outpoint = chain.coinbase_outpoint(chain.height().0);
    let coin = chain.utxo[&outpoint];
    let spend = pay(&chain, &[outpoint], vec![pay_to(2, coin.output.value)]);
    assert_transaction_accepted(&chain, &spend);
}

#[test]
fn coinbase_spent_one_block_early_is_immature() {
    let chain = new_chain();
    let height = chain.height().next();
    // One block early on regtest is the same block: spend the block's own coinbase.
    let coinbase = chain.template(vec![], Amount::ZERO).transactions[0].clone();
    let outpoint = OutPoint {
        txid: coinbase.compute_txid(),
        vout: 0,
    };
    let spend = pay_from(
        &chain,
        &[outpoint],
        vec![pay_to(2, coinbase.outputs[0].value)],
        &TestChain::coins_of(&coinbase, height),
    );
    let block = chain.build(vec![spend], Amount::ZERO);
    assert_eq!(
        block.transactions[0], coinbase,
        "the template's coinbase is deterministic"
    );
    let expected = in_transaction(
        &block,
        1,
        ConsensusError::ImmatureCoinbaseSpend {
            outpoint,
            created: height,
            spend_height: height,
            maturity: 1,
        },
    );
    assert_rejected(chain.validate(&block), expected, "immature-coinbase-spend");
}

#[test]
fn devnet_coinbase_maturity_boundary_for_a_loose_transaction() {
    // Devnet's maturity is ten blocks; its proof of work is too slow to mine that many
    // here, so the coin is put in the view directly.
    let mut chain = TestChain::new(Network::Devnet);
    let maturity = chain.params.coinbase_maturity;
    assert_eq!(maturity, 10);
    let created = BlockHeight(5);
    let (outpoint, mut coin) = made_up_coin(&chain, coins(50), 0xc0);
    coin.height = created;
    coin.is_coinbase = true;
    chain.utxo.insert(outpoint, coin);
    let spend = pay(&chain, &[outpoint], vec![pay_to(2, coins(49))]);
    let validate_at = |spend_height: u64| {
        validate_transaction(
            chain.params,
            &spend,
            &chain.utxo,
            BlockHeight(spend_height),
            &SequentialVerifier,
        )
    };
    let check = validate_at(created.0 + maturity).expect("mature exactly at height + maturity");
    assert_eq!(check.fee, coins(1));
    assert_rejected(
        validate_at(created.0 + maturity - 1),
        ConsensusError::ImmatureCoinbaseSpend {
            outpoint,
            created,
            spend_height: BlockHeight(created.0 + maturity - 1),
            maturity,
        },
        "immature-coinbase-spend",
    );
}

// ---------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------

#[test]
fn no_inputs() {
    let chain = new_chain();
    let spend = pay(&chain, &[], vec![pay_to(2, coins(1))]);
    assert_transaction_rejected(&chain, &spend, ConsensusError::NoInputs, "no-inputs");
}

#[test]
fn no_outputs() {
    let chain = new_chain();
    let (outpoint, _) = chain.mature_coin(0);
    let spend = pay(&chain, &[outpoint], vec![]);
    assert_transaction_rejected(&chain, &spend, ConsensusError::NoOutputs, "no-outputs");
}

#[test]
fn transaction_too_large() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    // 2,500 outputs of 40 bytes are 100,000 bytes before the rest of the transaction.
    let spend = filler_spend(&chain, outpoint, coin.output.value, 2_500, &HashMap::new());
    let size = spend.compute_size();
    assert!(size > MAX_TX_BYTES);
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::TransactionTooLarge {
            size,
            max: MAX_TX_BYTES,
        },
        "transaction-too-large",
    );
}

#[test]
fn zero_value_output() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    let mut outputs = payment_with_change(&chain, coin.output.value, FEE_UNITS);
    outputs.push(pay_to(3, Amount::ZERO));
    let spend = pay(&chain, &[outpoint], outputs);
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::ZeroValueOutput { vout: 2 },
        "zero-value-output",
    );
}

#[test]
fn output_total_too_large() {
    let chain = new_chain();
    let (outpoint, _) = chain.mature_coin(0);
    // Each output is a valid amount; only their sum leaves the money range.
    let spend = pay(
        &chain,
        &[outpoint],
        vec![pay_to(2, Amount::MAX_MONEY), pay_to(3, units(1))],
    );
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::OutputTotalTooLarge,
        "output-total-too-large",
    );
}

#[test]
fn duplicate_input() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    let spend = pay(
        &chain,
        &[outpoint, outpoint],
        payment_with_change(&chain, coin.output.value, FEE_UNITS),
    );
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::DuplicateInput { outpoint },
        "duplicate-input",
    );
}

#[test]
fn unexpected_coinbase_outside_a_block() {
    let chain = new_chain();
    let coinbase = chain.template(vec![], Amount::ZERO).transactions[0].clone();
    assert_rejected(
        validate_loose(&chain, &coinbase),
        ConsensusError::UnexpectedCoinbase,
        "unexpected-coinbase",
    );
}

#[test]
fn missing_input_that_never_existed() {
    let chain = new_chain();
    let (real_outpoint, coin) = chain.mature_coin(0);
    // Output 1 of a coinbase with one output: signed as if it existed.
    let outpoint = OutPoint {
        vout: 1,
        ..real_outpoint
    };
    let extra = HashMap::from([(outpoint, coin)]);
    let spend = pay_from(
        &chain,
        &[outpoint],
        payment_with_change(&chain, coin.output.value, FEE_UNITS),
        &extra,
    );
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::MissingInput { outpoint },
        "missing-input",
    );
}

#[test]
fn missing_input_already_spent() {
    let mut chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    let block = valid_block(&chain, vec![valid_spend_of(&chain, 0)]);
    chain.push(block).expect("the first spend is valid");
    // The same coin again, to another payee: the UTXO set no longer has it.
    let extra = HashMap::from([(outpoint, coin)]);
    let again = pay_from(&chain, &[outpoint], vec![pay_to(3, coins(49))], &extra);
    assert_transaction_rejected(
        &chain,
        &again,
        ConsensusError::MissingInput { outpoint },
        "missing-input",
    );
}

#[test]
fn inputs_below_outputs_by_one_unit() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    let too_much = coin.output.value.checked_add(units(1)).expect("in range");
    let spend = pay(&chain, &[outpoint], vec![pay_to(2, too_much)]);
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::InputsBelowOutputs {
            inputs: coin.output.value,
            outputs: too_much,
        },
        "inputs-below-outputs",
    );
}

#[test]
fn inputs_exactly_equal_to_outputs_pay_no_fee() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    let spend = pay(&chain, &[outpoint], vec![pay_to(2, coin.output.value)]);
    assert_eq!(assert_transaction_accepted(&chain, &spend), Amount::ZERO);
}

#[test]
fn input_total_too_large() {
    // Two coins of MAX_MONEY can only come from a corrupt UTXO view.
    let mut chain = new_chain();
    let (first_outpoint, first_coin) = made_up_coin(&chain, Amount::MAX_MONEY, 0xb1);
    let (second_outpoint, second_coin) = made_up_coin(&chain, Amount::MAX_MONEY, 0xb2);
    chain.utxo.insert(first_outpoint, first_coin);
    chain.utxo.insert(second_outpoint, second_coin);
    let spend = pay(
        &chain,
        &[first_outpoint, second_outpoint],
        vec![pay_to(2, coins(1))],
    );
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::InputTotalTooLarge,
        "input-total-too-large",
    );
}

#[test]
fn bad_signature_with_one_bit_flipped() {
    let chain = new_chain();
    let mut spend = valid_spend(&chain);
    input_mut(&mut spend, 0).signature.0[10] ^= 1;
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::BadSignature { input_index: 0 },
        "bad-signature",
    );
}

#[test]
fn bad_signature_names_the_failing_input() {
    let chain = new_chain();
    let (first, first_coin) = chain.mature_coin(0);
    let (second, second_coin) = chain.mature_coin(1);
    let total = first_coin
        .output
        .value
        .checked_add(second_coin.output.value)
        .expect("in range");
    let mut spend = pay(&chain, &[first, second], vec![pay_to(2, total)]);
    // The first input's signature, copied onto the second, signs the wrong message.
    let first_signature = input_mut(&mut spend, 0).signature;
    input_mut(&mut spend, 1).signature = first_signature;
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::BadSignature { input_index: 1 },
        "bad-signature",
    );
}

// ---------------------------------------------------------------------------------------
// The tutorial's flaws (SPEC.md, "What the tutorial gets wrong")
// ---------------------------------------------------------------------------------------

#[test]
fn tutorial_flaw_changing_a_transaction_in_a_mined_block_breaks_the_merkle_root() {
    let chain = new_chain();
    let block = valid_block(&chain, vec![valid_spend(&chain)]);
    let mut tampered = block.clone();
    // Redirect the payment to a thief, leaving the mined header as it was.
    tampered.transactions[1].outputs[0].address = test_address(9);
    assert_eq!(tampered.compute_hash(), block.compute_hash());
    assert_rejected(
        chain.validate(&tampered),
        ConsensusError::BadMerkleRoot {
            header: block.header.merkle_root,
            computed: tampered.compute_merkle_root(),
        },
        "bad-merkle-root",
    );
}

#[test]
fn tutorial_flaw_a_chain_that_links_but_lacks_proof_of_work_is_rejected() {
    let mut chain = new_chain();
    let height_before = chain.height();
    let mut block = valid_block(&chain, vec![]);
    assert_eq!(
        block.header.prev_hash,
        chain.tip().compute_hash(),
        "it links"
    );
    unsolve(&mut block.header);
    let expected = ConsensusError::BadProofOfWork {
        hash: block.compute_hash(),
        bits: block.header.bits,
    };
    assert_rejected(chain.push(block), expected, "bad-proof-of-work");
    assert_eq!(
        chain.height(),
        height_before,
        "a rejected block is not appended"
    );
}

#[test]
fn tutorial_flaw_a_coinbase_paying_itself_500_coins_is_rejected() {
    let chain = new_chain();
    let allowed = chain.params.subsidy(chain.height().next());
    assert_block_rejected(
        &chain,
        vec![],
        Reseal::MerkleRootAndNonce,
        |block| block.transactions[0].outputs[0].value = coins(500),
        |_| ConsensusError::CoinbaseOverpays {
            paid: coins(500),
            allowed,
        },
        "coinbase-overpays",
    );
}

#[test]
fn tutorial_flaw_an_unsigned_spend_is_rejected() {
    let chain = new_chain();
    let mut spend = valid_spend(&chain);
    input_mut(&mut spend, 0).signature = Signature([0; 64]);
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::BadSignature { input_index: 0 },
        "bad-signature",
    );
}

#[test]
fn tutorial_flaw_a_spend_signed_by_someone_else_is_rejected() {
    let chain = new_chain();
    let (outpoint, coin) = chain.mature_coin(0);
    let mut spend = valid_spend(&chain);
    // Key 9 signs the right message for the miner's coin: well formed, but not the owner.
    sign_input_with(&mut spend, &[coin.output], 0, &test_key(9));
    assert_eq!(spend.spends()[0].prevout, outpoint);
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::BadSignature { input_index: 0 },
        "bad-signature",
    );
}

#[test]
fn tutorial_flaw_outputs_changed_after_signing_are_rejected() {
    let chain = new_chain();
    let mut spend = valid_spend(&chain);
    // The owner signed a payment to key 2; an attacker redirects it, keeping the signature.
    spend.outputs[0].address = test_address(9);
    assert_transaction_rejected(
        &chain,
        &spend,
        ConsensusError::BadSignature { input_index: 0 },
        "bad-signature",
    );
}

#[test]
fn a_coinbase_in_second_position_is_an_extra_coinbase_not_an_unexpected_one() {
    // The same transaction that the pool refuses as UnexpectedCoinbase is, inside a
    // block, named by the block rule.
    let chain = new_chain();
    let height = chain.height().next();
    let coinbase = second_coinbase(height);
    assert_rejected(
        validate_loose(&chain, &coinbase),
        ConsensusError::UnexpectedCoinbase,
        "unexpected-coinbase",
    );
    let block = chain.build(vec![coinbase], Amount::ZERO);
    assert_rejected(
        chain.validate(&block),
        ConsensusError::ExtraCoinbase { index: 1 },
        "extra-coinbase",
    );
}

// ---------------------------------------------------------------------------------------
// The catalogue of rules
// ---------------------------------------------------------------------------------------

/// The test that breaks each rule. The match has no wildcard arm, so a new
/// `ConsensusError` variant stops this file from compiling until its rule has a test here.
fn test_breaking(error: &ConsensusError) -> &'static str {
    match error {
        ConsensusError::BadBits { .. } => "bad_bits_on_regtest, devnet_bits_must_follow_asert",
        ConsensusError::BadProofOfWork { .. } => "bad_proof_of_work",
        ConsensusError::TimeTooOld { .. } => "time_equal_to_median_time_past_is_too_old",
        ConsensusError::TimeTooNew { .. } => "time_one_past_the_allowed_drift_is_too_new",
        ConsensusError::NoTransactions => "no_transactions",
        ConsensusError::FirstNotCoinbase => "first_not_coinbase",
        ConsensusError::ExtraCoinbase { .. } => "extra_coinbase_right_after_the_first",
        ConsensusError::CoinbaseHeightMismatch { .. } => "coinbase_height_mismatch",
        ConsensusError::CoinbaseDataTooLong { .. } => "coinbase_data_too_long",
        ConsensusError::CoinbaseOverpays { .. } => "coinbase_overpays_by_one_unit",
        ConsensusError::BadMerkleRoot { .. } => "bad_merkle_root",
        ConsensusError::BlockTooLarge { .. } => "block_too_large_by_one_byte",
        ConsensusError::DuplicateTransaction { .. } => "duplicate_transaction",
        ConsensusError::DoubleSpendInBlock { .. } => "double_spend_in_block",
        ConsensusError::InTransaction { .. } => {
            "assert_transaction_rejected (every transaction rule)"
        }
        ConsensusError::NoInputs => "no_inputs",
        ConsensusError::NoOutputs => "no_outputs",
        ConsensusError::TransactionTooLarge { .. } => "transaction_too_large",
        ConsensusError::ZeroValueOutput { .. } => "zero_value_output",
        ConsensusError::OutputTotalTooLarge => "output_total_too_large",
        ConsensusError::DuplicateInput { .. } => "duplicate_input",
        ConsensusError::UnexpectedCoinbase => "unexpected_coinbase_outside_a_block",
        ConsensusError::MissingInput { .. } => "missing_input_that_never_existed",
        ConsensusError::ImmatureCoinbaseSpend { .. } => {
            "coinbase_spent_one_block_early_is_immature"
        }
        ConsensusError::InputsBelowOutputs { .. } => "inputs_below_outputs_by_one_unit",
        ConsensusError::InputTotalTooLarge => "input_total_too_large",
        ConsensusError::BadSignature { .. } => "bad_signature_with_one_bit_flipped",
    }
}

#[test]
fn every_rule_has_a_distinct_name_and_a_test() {
    let outpoint = OutPoint {
        txid: Txid::ZERO,
        vout: 0,
    };
    let bits = CompactTarget(0x207f_ffff);
    let height = BlockHeight(1);
    let rules = [
        ConsensusError::BadBits {
            got: bits,
            expected: bits,
        },
        ConsensusError::BadProofOfWork {
            hash: BlockHash::ZERO,
            bits,
        },
        ConsensusError::TimeTooOld {
            time_ms: 0,
            median_time_past_ms: 0,
        },
        ConsensusError::TimeTooNew {
            time_ms: 0,
            max_ms: 0,
        },
        ConsensusError::NoTransactions,
        ConsensusError::FirstNotCoinbase,
        ConsensusError::ExtraCoinbase { index: 1 },
        ConsensusError::CoinbaseHeightMismatch {
            got: height,
            expected: height,
        },
        ConsensusError::CoinbaseDataTooLong { length: 0, max: 0 },
        ConsensusError::CoinbaseOverpays {
            paid: Amount::ZERO,
            allowed: Amount::ZERO,
        },
        ConsensusError::BadMerkleRoot {
            header: MerkleRoot::ZERO,
            computed: MerkleRoot::ZERO,
        },
        ConsensusError::BlockTooLarge { size: 0, max: 0 },
        ConsensusError::DuplicateTransaction { txid: Txid::ZERO },
        ConsensusError::DoubleSpendInBlock { outpoint },
        ConsensusError::NoInputs,
        ConsensusError::NoOutputs,
        ConsensusError::TransactionTooLarge { size: 0, max: 0 },
        ConsensusError::ZeroValueOutput { vout: 0 },
        ConsensusError::OutputTotalTooLarge,
        ConsensusError::DuplicateInput { outpoint },
        ConsensusError::UnexpectedCoinbase,
        ConsensusError::MissingInput { outpoint },
        ConsensusError::ImmatureCoinbaseSpend {
            outpoint,
            created: height,
            spend_height: height,
            maturity: 1,
        },
        ConsensusError::InputsBelowOutputs {
            inputs: Amount::ZERO,
            outputs: Amount::ZERO,
        },
        ConsensusError::InputTotalTooLarge,
        ConsensusError::BadSignature { input_index: 0 },
    ];
    let mut names = HashSet::new();
    for rule in &rules {
        let name = rule.rule();
        assert!(names.insert(name), "two rules are named {name}");
        assert!(
            name.bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte == b'-'),
            "{name} is not kebab-case"
        );
        assert!(!test_breaking(rule).is_empty());
    }
    // The wrapper is not a rule of its own: it names, and leads to, the rule inside.
    let wrapped = ConsensusError::InTransaction {
        index: 1,
        txid: Txid::ZERO,
        error: Box::new(ConsensusError::NoInputs),
    };
    assert_eq!(wrapped.rule(), "no-inputs");
    assert_eq!(wrapped.root_cause(), &ConsensusError::NoInputs);
    assert!(!test_breaking(&wrapped).is_empty());
}
