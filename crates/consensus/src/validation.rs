//! The consensus rules, as pure `validate_*` functions.
//!
//! ```text
//!   header ──validate_header(required bits, median time past, now)──▶ ok to ask for the block
//!   block  ──validate_block_structure(height)──▶ txids            (no UTXO set needed)
//!          ──connect_block_transactions(height, UtxoView, verifier)──▶ BlockConnection
//!                                              (coins spent and created, fees: what the
//!                                               chain state writes, and its undo data)
//!   loose transaction ──validate_transaction(UtxoView, height, verifier)──▶ fee  (mempool)
//! ```
//!
//! Each function returns the first rule broken, in a fixed order, so every node names the
//! same [`ConsensusError`] for the same input.

use std::collections::{HashMap, HashSet};

use crate::amount::Amount;
use crate::block::{Block, Header};
use crate::difficulty::compute_asert_bits;
use crate::error::ConsensusError;
use crate::hash::Txid;
use crate::merkle::compute_merkle_root;
use crate::params::{Params, Retarget};
use crate::signature::{SighashCache, SignatureCheck, SignatureVerifier};
use crate::target::CompactTarget;
use crate::transaction::{BlockHeight, MAX_TX_BYTES, OutPoint, Transaction, TxInputs, TxOut};
use crate::utxo::{Coin, UtxoView, created_coins};

/// The few facts about a block that difficulty needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeaderSummary {
    /// Its height.
    pub height: BlockHeight,
    /// Its time.
    pub time_ms: u64,
    /// Its bits.
    pub bits: CompactTarget,
}

/// The bits required of the child of `parent`.
///
/// `anchor` is the block at [`Params::ASERT_ANCHOR_HEIGHT`] on `parent`'s branch; it is
/// needed once the parent is past that height. Returns `None` if it was needed and not
/// given.
pub fn next_required_bits(
    params: &Params,
    parent: HeaderSummary,
    anchor: Option<HeaderSummary>,
) -> Option<CompactTarget> {
    let schedule = match params.retarget {
        Retarget::None => return Some(params.pow_limit),
        Retarget::Asert(schedule) => schedule,
    };
    if parent.height < Params::ASERT_ANCHOR_HEIGHT {
        return Some(params.genesis_bits);
    }
    let anchor = if parent.height == Params::ASERT_ANCHOR_HEIGHT {
        parent
    } else {
        anchor.filter(|anchor| anchor.height == Params::ASERT_ANCHOR_HEIGHT)?
    };
    // The reference time is one ideal interval before the anchor: aserti3-2d measures from
    // the anchor's parent, and block 1's parent is genesis, whose fixed time lies in the past.
    let reference_ms = i128::from(anchor.time_ms) - i128::from(schedule.ideal_block_time);
    let time_delta = (i128::from(parent.time_ms) - reference_ms)
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let height_delta = parent.height.0 - anchor.height.0;
    Some(compute_asert_bits(
        anchor.bits,
        params.pow_limit_target(),
        time_delta,
        height_delta,
        schedule,
    ))
}

/// How far the chain ending at `tip` runs behind its ASERT schedule at `now_ms`, in
/// milliseconds (negative: ahead): the time since the schedule's reference less one ideal
/// interval per block. ASERT eases the target by half for every half-life behind, so a
/// chain far behind (a devnet left idle) mines about `lag / ideal interval` fast blocks
/// before it is back on schedule.
///
/// `None` without retargeting (regtest) or below the anchor, whose summary `anchor` is
/// (see [`next_required_bits`]).
pub fn schedule_lag_ms(
    params: &Params,
    tip: HeaderSummary,
    anchor: HeaderSummary,
    now_ms: u64,
) -> Option<i64> {
    let Retarget::Asert(schedule) = params.retarget else {
        return None;
    };
    if anchor.height != Params::ASERT_ANCHOR_HEIGHT || tip.height < anchor.height {
        return None;
    }
    let reference_ms = i128::from(anchor.time_ms) - i128::from(schedule.ideal_block_time);
    let scheduled_ms = reference_ms
        + i128::from(schedule.ideal_block_time) * i128::from(tip.height.0 - anchor.height.0 + 1);
    let lag = i128::from(now_ms) - scheduled_ms;
    Some(lag.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// What a header is checked against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeaderContext {
    /// [`next_required_bits`] for the header's parent.
    pub required_bits: CompactTarget,
    /// Median time of the 11 blocks ending at the parent.
    pub median_time_past_ms: u64,
    /// The validating node's clock.
    pub now_ms: u64,
}

/// Checks a header: its bits, its proof of work and its time.
///
/// # Errors
/// [`ConsensusError::BadBits`], [`ConsensusError::BadProofOfWork`],
/// [`ConsensusError::TimeTooOld`] or [`ConsensusError::TimeTooNew`].
pub fn validate_header(
    params: &Params,
    header: &Header,
    context: &HeaderContext,
) -> Result<(), ConsensusError> {
    if header.bits != context.required_bits {
        return Err(ConsensusError::BadBits {
            got: header.bits,
            expected: context.required_bits,
        });
    }
    let target = header
        .bits
        .to_target()
        .map_err(|_| ConsensusError::BadBits {
            got: header.bits,
            expected: context.required_bits,
        })?;
    let hash = header.compute_hash();
    if !target.is_met_by(hash) {
        return Err(ConsensusError::BadProofOfWork {
            hash,
            bits: header.bits,
        });
    }
    if header.time_ms <= context.median_time_past_ms {
        return Err(ConsensusError::TimeTooOld {
            time_ms: header.time_ms,
            median_time_past_ms: context.median_time_past_ms,
        });
    }
    let max_ms = context
        .now_ms
        .saturating_add(params.max_future_block_time_ms);
    if header.time_ms > max_ms {
        return Err(ConsensusError::TimeTooNew {
            time_ms: header.time_ms,
            max_ms,
        });
    }
    Ok(())
}

/// Rules a transaction must meet on its own, wherever it is.
///
/// # Errors
/// The first rule broken.
pub fn validate_transaction_stateless(
    params: &Params,
    transaction: &Transaction,
) -> Result<(), ConsensusError> {
    let size = transaction.compute_size();
    if size > MAX_TX_BYTES {
        return Err(ConsensusError::TransactionTooLarge {
            size,
            max: MAX_TX_BYTES,
        });
    }
    match &transaction.inputs {
        TxInputs::Coinbase(coinbase) => {
            if coinbase.data.len() > params.max_coinbase_data_bytes {
                return Err(ConsensusError::CoinbaseDataTooLong {
                    length: coinbase.data.len(),
                    max: params.max_coinbase_data_bytes,
                });
            }
        }
        TxInputs::Spends(inputs) => {
            if inputs.is_empty() {
                return Err(ConsensusError::NoInputs);
            }
            if transaction.outputs.is_empty() {
                return Err(ConsensusError::NoOutputs);
            }
            let mut seen = HashSet::with_capacity(inputs.len());
            for input in inputs {
                if !seen.insert(input.prevout) {
                    return Err(ConsensusError::DuplicateInput {
                        outpoint: input.prevout,
                    });
                }
            }
        }
    }
    if let Some(vout) = transaction
        .outputs
        .iter()
        .position(|output| output.value == Amount::ZERO)
    {
        return Err(ConsensusError::ZeroValueOutput { vout });
    }
    transaction
        .output_total()
        .ok_or(ConsensusError::OutputTotalTooLarge)?;
    Ok(())
}

/// Checks a block's rules that need no UTXO set, and returns its txids.
///
/// # Errors
/// The first rule broken; transaction rules come wrapped in
/// [`ConsensusError::InTransaction`].
pub fn validate_block_structure(
    params: &Params,
    block: &Block,
    height: BlockHeight,
) -> Result<Vec<Txid>, ConsensusError> {
    let txids = block.compute_txids();
    validate_block_structure_with_txids(params, block, height, &txids)?;
    Ok(txids)
}

/// [`validate_block_structure`] for a caller that has computed the block's txids already
/// (`txids` must be `block.compute_txids()`): hashing every transaction once is enough.
///
/// # Errors
/// As [`validate_block_structure`].
pub fn validate_block_structure_with_txids(
    params: &Params,
    block: &Block,
    height: BlockHeight,
    txids: &[Txid],
) -> Result<(), ConsensusError> {
    debug_assert_eq!(txids.len(), block.transactions.len());
    let Some(first) = block.transactions.first() else {
        return Err(ConsensusError::NoTransactions);
    };
    let size = block.compute_size();
    if size > params.max_block_bytes {
        return Err(ConsensusError::BlockTooLarge {
            size,
            max: params.max_block_bytes,
        });
    }
    let Some(coinbase) = first.coinbase() else {
        return Err(ConsensusError::FirstNotCoinbase);
    };
    if let Some(index) = block
        .transactions
        .iter()
        .skip(1)
        .position(Transaction::is_coinbase)
    {
        return Err(ConsensusError::ExtraCoinbase { index: index + 1 });
    }
    if coinbase.height != height {
        return Err(ConsensusError::CoinbaseHeightMismatch {
            got: coinbase.height,
            expected: height,
        });
    }
    for (index, (transaction, txid)) in block.transactions.iter().zip(txids).enumerate() {
        validate_transaction_stateless(params, transaction).map_err(|error| {
            ConsensusError::InTransaction {
                index,
                txid: *txid,
                error: Box::new(error),
            }
        })?;
    }
    let mut seen = HashSet::with_capacity(txids.len());
    for txid in txids {
        if !seen.insert(*txid) {
            return Err(ConsensusError::DuplicateTransaction { txid: *txid });
        }
    }
    let computed = compute_merkle_root(txids);
    if computed != block.header.merkle_root {
        return Err(ConsensusError::BadMerkleRoot {
            header: block.header.merkle_root,
            computed,
        });
    }
    Ok(())
}

/// The coins a transaction spends, its fee and the signatures it needs checked.
#[derive(Clone, Debug)]
pub struct InputCheck {
    /// Inputs minus outputs.
    pub fee: Amount,
    /// The spent coins, in input order.
    pub spent: Vec<Coin>,
    /// One check per input.
    pub signature_checks: Vec<SignatureCheck>,
}

/// Checks a non-coinbase transaction's inputs against `view` for a block at `spend_height`:
/// they exist, are mature, and hold at least what the outputs pay. Signatures are
/// returned to check, not checked.
///
/// # Errors
/// [`ConsensusError::MissingInput`], [`ConsensusError::ImmatureCoinbaseSpend`],
/// [`ConsensusError::InputTotalTooLarge`], [`ConsensusError::OutputTotalTooLarge`] or
/// [`ConsensusError::InputsBelowOutputs`].
pub fn check_transaction_inputs(
    params: &Params,
    transaction: &Transaction,
    transaction_index: usize,
    view: &impl UtxoView,
    spend_height: BlockHeight,
) -> Result<InputCheck, ConsensusError> {
    let inputs = transaction.spends();
    let mut spent = Vec::with_capacity(inputs.len());
    for input in inputs {
        let coin = view
            .coin(&input.prevout)
            .ok_or(ConsensusError::MissingInput {
                outpoint: input.prevout,
            })?;
        if !coin.is_mature_at(spend_height, params) {
            return Err(ConsensusError::ImmatureCoinbaseSpend {
                outpoint: input.prevout,
                created: coin.height,
                spend_height,
                maturity: params.coinbase_maturity,
            });
        }
        spent.push(coin);
    }
    let input_total = Amount::checked_sum(spent.iter().map(|coin| coin.output.value))
        .ok_or(ConsensusError::InputTotalTooLarge)?;
    let output_total = transaction
        .output_total()
        .ok_or(ConsensusError::OutputTotalTooLarge)?;
    let fee = input_total
        .checked_sub(output_total)
        .ok_or(ConsensusError::InputsBelowOutputs {
            inputs: input_total,
            outputs: output_total,
        })?;
    let spent_outputs: Vec<TxOut> = spent.iter().map(|coin| coin.output).collect();
    let cache = SighashCache::new(transaction, &spent_outputs)
        .expect("one spent output was collected per input");
    let signature_checks = inputs
        .iter()
        .zip(&spent_outputs)
        .enumerate()
        .map(|(input_index, (input, spent_output))| SignatureCheck {
            transaction_index,
            input_index,
            sighash: cache
                .compute_sighash(input_index)
                .expect("input_index enumerates the inputs"),
            address: spent_output.address,
            signature: input.signature,
        })
        .collect();
    Ok(InputCheck {
        fee,
        spent,
        signature_checks,
    })
}

/// Fully validates a loose transaction (one bound for the pool) as if it were included in
/// a block at `spend_height`; returns its input check (fee and coins spent).
///
/// # Errors
/// The first rule broken, signatures last.
pub fn validate_transaction(
    params: &Params,
    transaction: &Transaction,
    view: &impl UtxoView,
    spend_height: BlockHeight,
    verifier: &(impl SignatureVerifier + ?Sized),
) -> Result<InputCheck, ConsensusError> {
    if transaction.is_coinbase() {
        return Err(ConsensusError::UnexpectedCoinbase);
    }
    validate_transaction_stateless(params, transaction)?;
    let check = check_transaction_inputs(params, transaction, 0, view, spend_height)?;
    verifier
        .verify_all(&check.signature_checks)
        .map_err(|failed| ConsensusError::BadSignature {
            input_index: check.signature_checks[failed].input_index,
        })?;
    Ok(check)
}

/// What connecting a block does to the UTXO set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockConnection {
    /// Coins from before the block that it spends, in order: the undo data.
    pub spent: Vec<(OutPoint, Coin)>,
    /// Coins the block creates that are still unspent at its end, in order.
    pub created: Vec<(OutPoint, Coin)>,
    /// Sum of the fees of its transactions.
    pub fees: Amount,
}

/// The UTXO view as it stands part-way through a block.
struct BlockOverlay<'a, V> {
    base: &'a V,
    created: HashMap<OutPoint, Coin>,
    spent: HashSet<OutPoint>,
}

impl<V: UtxoView> UtxoView for BlockOverlay<'_, V> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        if self.spent.contains(outpoint) {
            return None;
        }
        self.created
            .get(outpoint)
            .copied()
            .or_else(|| self.base.coin(outpoint))
    }
}

/// Checks a structurally valid block's transactions against the UTXO set, in order (a
/// transaction may spend an output of an earlier one in the same block), and returns what
/// connecting it changes.
///
/// `txids` are the block's txids as [`validate_block_structure`] returned them.
///
/// # Errors
/// [`ConsensusError::DoubleSpendInBlock`], [`ConsensusError::CoinbaseOverpays`], or a
/// transaction's rule wrapped in [`ConsensusError::InTransaction`].
pub fn connect_block_transactions(
    params: &Params,
    block: &Block,
    txids: &[Txid],
    height: BlockHeight,
    view: &impl UtxoView,
    verifier: &(impl SignatureVerifier + ?Sized),
) -> Result<BlockConnection, ConsensusError> {
    let mut overlay = BlockOverlay {
        base: view,
        created: HashMap::new(),
        spent: HashSet::new(),
    };
    let mut created_order = Vec::new();
    let mut spent_from_base = Vec::new();
    let mut signature_checks = Vec::new();
    let mut fees = Amount::ZERO;
    let in_transaction = |index: usize, error: ConsensusError| ConsensusError::InTransaction {
        index,
        txid: txids[index],
        error: Box::new(error),
    };
    for (index, transaction) in block.transactions.iter().enumerate() {
        if !transaction.is_coinbase() {
            for input in transaction.spends() {
                if overlay.spent.contains(&input.prevout) {
                    return Err(ConsensusError::DoubleSpendInBlock {
                        outpoint: input.prevout,
                    });
                }
            }
            let check = check_transaction_inputs(params, transaction, index, &overlay, height)
                .map_err(|error| in_transaction(index, error))?;
            fees = fees
                .checked_add(check.fee)
                .ok_or_else(|| in_transaction(index, ConsensusError::InputTotalTooLarge))?;
            for (input, coin) in transaction.spends().iter().zip(check.spent) {
                if overlay.created.remove(&input.prevout).is_none() {
                    spent_from_base.push((input.prevout, coin));
                }
                overlay.spent.insert(input.prevout);
            }
            signature_checks.extend(check.signature_checks);
        }
        for (outpoint, coin) in created_coins(transaction, txids[index], height) {
            overlay.created.insert(outpoint, coin);
            created_order.push(outpoint);
        }
    }
    let allowed = params
        .subsidy(height)
        .checked_add(fees)
        .unwrap_or(Amount::MAX_MONEY);
    let paid = block
        .transactions
        .first()
        .and_then(Transaction::output_total)
        .unwrap_or(Amount::MAX_MONEY);
    if paid > allowed {
        return Err(ConsensusError::CoinbaseOverpays { paid, allowed });
    }
    verifier.verify_all(&signature_checks).map_err(|failed| {
        let check = signature_checks[failed];
        in_transaction(
            check.transaction_index,
            ConsensusError::BadSignature {
                input_index: check.input_index,
            },
        )
    })?;
    let created = created_order
        .into_iter()
        .filter_map(|outpoint| overlay.created.get(&outpoint).map(|coin| (outpoint, *coin)))
        .collect();
    Ok(BlockConnection {
        spent: spent_from_base,
        created,
        fees,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Network;

    fn summary(params: &Params, height: u64, time_ms: u64) -> HeaderSummary {
        HeaderSummary {
            height: BlockHeight(height),
            time_ms,
            bits: params.genesis_bits,
        }
    }

    #[test]
    fn the_schedule_lag_is_the_time_not_covered_by_ideal_intervals() {
        let params = Network::Devnet.params();
        let anchor = summary(params, 1, 1_000_000);
        // Block 1 sits exactly on schedule when it is found.
        assert_eq!(schedule_lag_ms(params, anchor, anchor, 1_000_000), Some(0));
        // 100 blocks in 300 s: on schedule; an hour idle after them: an hour behind.
        let tip = summary(params, 101, 1_300_000);
        assert_eq!(schedule_lag_ms(params, tip, anchor, 1_300_000), Some(0));
        assert_eq!(
            schedule_lag_ms(params, tip, anchor, 1_300_000 + 3_600_000),
            Some(3_600_000)
        );
        // 100 blocks in 30 s: 270 s ahead.
        let fast = summary(params, 101, 1_030_000);
        assert_eq!(
            schedule_lag_ms(params, fast, anchor, 1_030_000),
            Some(-270_000)
        );
    }

    #[test]
    fn no_schedule_without_retargeting_or_an_anchor() {
        let regtest = Network::Regtest.params();
        let anchor = summary(regtest, 1, 0);
        assert_eq!(schedule_lag_ms(regtest, anchor, anchor, 5), None);
        let devnet = Network::Devnet.params();
        let genesis = summary(devnet, 0, 0);
        assert_eq!(schedule_lag_ms(devnet, genesis, genesis, 5), None);
    }
}
