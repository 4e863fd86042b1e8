//! Coin selection: which coins pay for a payment, what fee it pays, and whether it has change.
//!
//! ```text
//!   owned coins ──dedupe, order──▶ confirmed first, largest first, then by outpoint
//!               ──take a prefix──▶ the shortest one that covers amount + fee(1 output)
//!               ──change?──────▶ leftover after fee(2 outputs) above the dust limit:
//!                                 a change output; otherwise the leftover joins the fee
//! ```
//!
//! Rules:
//! - **Order.** Confirmed coins before unconfirmed ones (a payment built on an unconfirmed
//!   coin fails if that coin's transaction never confirms); within each group the largest
//!   first (fewest inputs, so the smallest fee), ties broken by outpoint so the same coins
//!   always give the same transaction.
//! - **Fee.** `fee_rate.fee_for(size)` of the exact encoded size of the signed transaction.
//!   Signatures are always 64 bytes, so the size is known before signing; it is recomputed
//!   for every input added and for the change output.
//! - **Change.** Paid only if it is worth more than it would cost to spend later
//!   ([`dust_limit`]: the fee of one input at the same rate). Smaller change, zero
//!   included, is left to the miner: an output that costs more to spend than it holds only
//!   bloats every node's UTXO set, and consensus forbids zero-value outputs. The fee is then
//!   above `fee_for(size)` by that leftover.
//! - **Not enough.** If no prefix covers the payment, the error names the amount plus the
//!   fee of a transaction spending *every* coin (`needed`) and the sum of every coin
//!   (`available`): so `available >= needed` always means the payment can be built.
//!
//! Pure: no keys, no I/O. The wallet filters the coins it owns and signs the result.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use powchain_consensus::transaction::MAX_TX_BYTES;
use powchain_consensus::{Amount, FeeRate, OutPoint, TxIn, TxOut};

use crate::error::WalletError;

/// A coin the wallet may spend, as the caller (the node, from its UTXO set and mempool)
/// knows it.
///
/// The caller passes only coins that may be spent now: mature, and not already spent by a
/// transaction in the mempool.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SpendableCoin {
    /// Where the coin is.
    pub outpoint: OutPoint,
    /// Its value and address.
    pub output: TxOut,
    /// True if the transaction that created it is in the main chain, false if it is only in
    /// the mempool.
    pub confirmed: bool,
}

/// The coins chosen for a payment, and what the transaction will pay.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CoinSelection {
    /// The coins to spend, in input order.
    pub inputs: Vec<SpendableCoin>,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// The change output's value, if there is one.
    pub change: Option<Amount>,
    /// The encoded size of the signed transaction, in bytes.
    pub size: usize,
}

/// Bytes of a transaction's fixed parts: version (4) and input-kind tag (1).
const FIXED_BYTES: usize = 4 + 1;

/// The encoded size of a spending transaction with `input_count` inputs and `output_count`
/// outputs, signatures included.
pub fn spend_transaction_size(input_count: usize, output_count: usize) -> usize {
    FIXED_BYTES
        + varint_size(input_count as u64)
        + input_count * TxIn::ENCODED_BYTES
        + varint_size(output_count as u64)
        + output_count * TxOut::ENCODED_BYTES
}

/// The most inputs a payment (two outputs: recipient and change) can have within
/// [`MAX_TX_BYTES`].
pub fn max_payment_inputs() -> usize {
    // The size grows with the count, so count down from a bound that ignores the varint.
    let mut count = MAX_TX_BYTES / TxIn::ENCODED_BYTES;
    while count > 0 && spend_transaction_size(count, 2) > MAX_TX_BYTES {
        count -= 1;
    }
    count
}

/// The smallest change worth an output at `fee_rate`: change at or below it is left to
/// the fee, since spending it later would cost at least as much as it holds.
pub fn dust_limit(fee_rate: FeeRate) -> Amount {
    fee_rate
        .fee_for(TxIn::ENCODED_BYTES)
        .unwrap_or(Amount::MAX_MONEY)
}

/// Chooses coins from `candidates` to pay `amount` at `fee_rate` (see the module docs for
/// the rules). Every candidate is taken as spendable; duplicates of an outpoint count once.
///
/// # Errors
/// [`WalletError::ZeroAmount`], [`WalletError::InsufficientFunds`],
/// [`WalletError::TooManyInputs`], or [`WalletError::AmountOverflow`] if the coins, or the
/// amount plus the fee, sum past the money range.
pub fn select_coins(
    candidates: &[SpendableCoin],
    amount: Amount,
    fee_rate: FeeRate,
) -> Result<CoinSelection, WalletError> {
    let mut seen = HashSet::with_capacity(candidates.len());
    let mut gathered = CoinCandidates::default();
    for coin in candidates {
        if seen.insert(coin.outpoint) {
            gathered.offer(*coin);
        }
    }
    gathered.select(amount, fee_rate)
}

/// The coins a payment may choose from, gathered one at a time as the node reads them:
/// only the first [`max_payment_inputs`] in selection order are kept (no payment spends
/// more), with the count and sum of all. So a wallet whose address a stranger paid a
/// million dust outputs still pays from its largest coins, and reports all it holds,
/// with no more than a payment's worth of coins in memory. [`CoinCandidates::select`]
/// chooses exactly as [`select_coins`] does over every coin offered.
#[derive(Clone, Debug)]
pub struct CoinCandidates {
    /// How many coins are kept: [`max_payment_inputs`].
    keep: usize,
    /// The best coins so far; the top of the heap is the last of them to be chosen.
    best: BinaryHeap<Reverse<Ranked>>,
    /// How many coins were offered.
    count: usize,
    /// Their sum; `None` past the money range.
    total: Option<Amount>,
}

/// A coin in selection order: a greater one is chosen first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Ranked(SpendableCoin);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (left, right) = (&self.0, &other.0);
        left.confirmed
            .cmp(&right.confirmed)
            .then(left.output.value.cmp(&right.output.value))
            .then(right.outpoint.cmp(&left.outpoint))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Default for CoinCandidates {
    fn default() -> Self {
        CoinCandidates {
            keep: max_payment_inputs(),
            best: BinaryHeap::new(),
            count: 0,
            total: None,
        }
    }
}

impl CoinCandidates {
    /// Offers one spendable coin. The caller offers each coin once.
    pub fn offer(&mut self, coin: SpendableCoin) {
        self.count += 1;
        self.total = match (self.count, self.total) {
            (1, _) => Some(coin.output.value),
            (_, total) => total.and_then(|total| total.checked_add(coin.output.value)),
        };
        let ranked = Ranked(coin);
        if self.best.len() < self.keep {
            self.best.push(Reverse(ranked));
        } else if self
            .best
            .peek()
            .is_some_and(|Reverse(worst)| ranked > *worst)
        {
            self.best.pop();
            self.best.push(Reverse(ranked));
        }
    }

    /// How many coins were offered.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The kept coins, the first to be chosen first.
    fn in_order(&self) -> Vec<SpendableCoin> {
        let mut ordered: Vec<SpendableCoin> = self
            .best
            .iter()
            .map(|Reverse(Ranked(coin))| *coin)
            .collect();
        ordered.sort_by_key(|coin| Reverse(Ranked(*coin)));
        ordered
    }

    /// Chooses coins to pay `amount` at `fee_rate`, as [`select_coins`] does.
    ///
    /// # Errors
    /// As [`select_coins`].
    pub fn select(&self, amount: Amount, fee_rate: FeeRate) -> Result<CoinSelection, WalletError> {
        if amount == Amount::ZERO {
            return Err(WalletError::ZeroAmount);
        }
        let ordered = self.in_order();
        let available = match self.count {
            0 => Amount::ZERO,
            _ => self.total.ok_or(WalletError::AmountOverflow)?,
        };
        // More than the wallet holds: say so, even when the amount plus its fee would not
        // fit in the money range (the largest amount anyone can ask for is not an
        // "overflow").
        if amount > available {
            let size = spend_transaction_size(self.count.max(1), 1);
            let needed = amount_plus_fee(amount, fee_rate, size).unwrap_or(amount);
            return Err(WalletError::InsufficientFunds { needed, available });
        }

        let max_inputs = max_payment_inputs();
        let mut selected_total = Amount::ZERO;
        for (index, coin) in ordered.iter().take(max_inputs).enumerate() {
            let input_count = index + 1;
            selected_total = selected_total
                .checked_add(coin.output.value)
                .ok_or(WalletError::AmountOverflow)?;
            let needed = amount_plus_fee(amount, fee_rate, spend_transaction_size(input_count, 1))?;
            if selected_total >= needed {
                return finish_selection(&ordered[..input_count], selected_total, amount, fee_rate);
            }
        }

        // A transaction with no input cannot exist, so with no coins the smallest real one
        // (one input) says what would be needed.
        let needed = amount_plus_fee(
            amount,
            fee_rate,
            spend_transaction_size(self.count.max(1), 1),
        )?;
        if available < needed {
            Err(WalletError::InsufficientFunds { needed, available })
        } else {
            Err(WalletError::TooManyInputs { max_inputs })
        }
    }
}

/// Decides the change and fee for coins that cover `amount` plus the fee without change.
fn finish_selection(
    inputs: &[SpendableCoin],
    total: Amount,
    amount: Amount,
    fee_rate: FeeRate,
) -> Result<CoinSelection, WalletError> {
    let size_with_change = spend_transaction_size(inputs.len(), 2);
    let change = total
        .checked_sub(amount_plus_fee(amount, fee_rate, size_with_change)?)
        .filter(|change| *change > dust_limit(fee_rate));
    let (change, size) = match change {
        Some(change) => (Some(change), size_with_change),
        None => (None, spend_transaction_size(inputs.len(), 1)),
    };
    let paid_out = match change {
        Some(change) => amount
            .checked_add(change)
            .ok_or(WalletError::AmountOverflow)?,
        None => amount,
    };
    let fee = total
        .checked_sub(paid_out)
        .expect("the caller checked that the inputs cover the amount and the fee");
    Ok(CoinSelection {
        inputs: inputs.to_vec(),
        fee,
        change,
        size,
    })
}

fn amount_plus_fee(amount: Amount, fee_rate: FeeRate, size: usize) -> Result<Amount, WalletError> {
    fee_rate
        .fee_for(size)
        .and_then(|fee| amount.checked_add(fee))
        .ok_or(WalletError::AmountOverflow)
}

/// Bytes of a canonical LEB128 varint holding `value` (7 bits a byte, at least one byte).
fn varint_size(value: u64) -> usize {
    let significant_bits = (u64::BITS - value.leading_zeros()) as usize;
    significant_bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::test_address;
    use powchain_consensus::{Signature, Transaction, TxInputs, Txid};
    use proptest::prelude::*;

    fn units(value: u64) -> Amount {
        Amount::from_units(value).expect("test amounts are in range")
    }

    fn coin(id: u8, value: u64, confirmed: bool) -> SpendableCoin {
        SpendableCoin {
            outpoint: OutPoint {
                txid: Txid([id; 32]),
                vout: u32::from(id),
            },
            output: TxOut {
                value: units(value),
                address: test_address(1),
            },
            confirmed,
        }
    }

    fn encoded_size(input_count: usize, output_count: usize) -> usize {
        let input = powchain_consensus::TxIn {
            prevout: coin(0, 1, true).outpoint,
            signature: Signature([0xab; 64]),
        };
        let output = coin(0, 1, true).output;
        Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Spends(vec![input; input_count]),
            outputs: vec![output; output_count],
        }
        .compute_size()
    }

    #[test]
    fn size_formula_matches_the_encoding() {
        for input_count in [0, 1, 2, 127, 128, 129, 999, 1000] {
            for output_count in [1, 2, 127, 128] {
                assert_eq!(
                    spend_transaction_size(input_count, output_count),
                    encoded_size(input_count, output_count),
                    "{input_count} inputs, {output_count} outputs"
                );
            }
        }
        assert_eq!(max_payment_inputs(), 999);
        assert!(spend_transaction_size(999, 2) <= MAX_TX_BYTES);
        assert!(spend_transaction_size(1000, 2) > MAX_TX_BYTES);
    }

    #[test]
    fn confirmed_first_then_largest_first() {
        let rate = FeeRate::from_units_per_byte(1);
        let coins = [
            coin(1, 5_000, true),
            coin(2, 90_000, false),
            coin(3, 20_000, true),
            coin(4, 20_000, true),
        ];
        let selection = select_coins(&coins, units(30_000), rate).expect("enough");
        let ids: Vec<u8> = selection
            .inputs
            .iter()
            .map(|c| c.outpoint.txid.0[0])
            .collect();
        // Both 20,000 coins (ties by outpoint), not the larger unconfirmed one.
        assert_eq!(ids, vec![3, 4]);
        let selection = select_coins(&coins, units(50_000), rate).expect("enough");
        let ids: Vec<u8> = selection
            .inputs
            .iter()
            .map(|c| c.outpoint.txid.0[0])
            .collect();
        assert_eq!(ids, vec![3, 4, 1, 2]);
    }

    #[test]
    fn change_is_kept_only_above_the_dust_limit() {
        let rate = FeeRate::from_units_per_byte(2);
        let fee_one_output = rate.fee_for(spend_transaction_size(1, 1)).expect("small");
        let fee_two_outputs = rate.fee_for(spend_transaction_size(1, 2)).expect("small");
        let dust = dust_limit(rate);
        assert_eq!(dust, units(200));
        let amount = units(10_000);

        // Exactly amount + fee: no change, the exact fee.
        let exact = amount.to_units() + fee_one_output.to_units();
        let selection = select_coins(&[coin(1, exact, true)], amount, rate).expect("covers");
        assert_eq!((selection.fee, selection.change), (fee_one_output, None));

        // Change at the dust limit is folded into the fee.
        let at_dust = amount.to_units() + fee_two_outputs.to_units() + dust.to_units();
        let selection = select_coins(&[coin(1, at_dust, true)], amount, rate).expect("covers");
        assert_eq!(selection.change, None);
        assert_eq!(selection.fee, units(at_dust - amount.to_units()));
        assert_eq!(selection.size, spend_transaction_size(1, 1));

        // One unit more and it is paid back.
        let selection = select_coins(&[coin(1, at_dust + 1, true)], amount, rate).expect("covers");
        assert_eq!(selection.change, Some(units(dust.to_units() + 1)));
        assert_eq!(selection.fee, fee_two_outputs);
        assert_eq!(selection.size, spend_transaction_size(1, 2));
    }

    #[test]
    fn insufficient_funds_names_exact_numbers() {
        let rate = FeeRate::from_units_per_byte(2);
        let coins = [
            coin(1, 1_000, true),
            coin(2, 2_000, false),
            coin(2, 2_000, false),
        ];
        let fee_two_inputs = rate.fee_for(spend_transaction_size(2, 1)).expect("small");
        // 4 + 1 + 1 + 2 * 100 + 1 + 40 = 247 bytes at 2 units a byte.
        assert_eq!(fee_two_inputs, units(494));
        let error = select_coins(&coins, units(3_000), rate).expect_err("fee not covered");
        assert!(
            matches!(
                error,
                WalletError::InsufficientFunds { needed, available }
                    if needed == units(3_000 + 494) && available == units(3_000)
            ),
            "{error:?}"
        );
        let error = select_coins(&[], units(1), rate).expect_err("no coins");
        let fee_one_input = rate.fee_for(spend_transaction_size(1, 1)).expect("small");
        assert!(matches!(
            error,
            WalletError::InsufficientFunds { needed, available }
                if needed == units(1 + fee_one_input.to_units()) && available == Amount::ZERO
        ));
        assert!(matches!(
            select_coins(&coins, Amount::ZERO, rate),
            Err(WalletError::ZeroAmount)
        ));
    }

    #[test]
    fn too_many_small_coins_are_named_as_such() {
        let coins: Vec<SpendableCoin> = (0..1_200u32)
            .map(|index| SpendableCoin {
                outpoint: OutPoint {
                    txid: Txid([7; 32]),
                    vout: index,
                },
                output: TxOut {
                    value: units(1_000),
                    address: test_address(1),
                },
                confirmed: true,
            })
            .collect();
        let error = select_coins(&coins, units(1_100_000), FeeRate::ZERO).expect_err("too many");
        assert!(matches!(
            error,
            WalletError::TooManyInputs { max_inputs: 999 }
        ));
        let selection = select_coins(&coins, units(999_000), FeeRate::ZERO).expect("fits");
        assert_eq!(selection.inputs.len(), 999);
    }

    #[test]
    fn sums_past_the_money_range_are_refused() {
        let coins = [
            coin(1, Amount::MAX_MONEY.to_units(), true),
            coin(2, Amount::MAX_MONEY.to_units(), true),
        ];
        assert!(matches!(
            select_coins(&coins, units(1), FeeRate::ZERO),
            Err(WalletError::AmountOverflow)
        ));
        assert!(matches!(
            select_coins(
                &coins[..1],
                Amount::MAX_MONEY,
                FeeRate::from_units_per_byte(1)
            ),
            Err(WalletError::AmountOverflow)
        ));
    }

    #[test]
    fn the_largest_amount_is_insufficient_funds_not_an_overflow() {
        let coins = [coin(1, 5_000_000_000, true)];
        match select_coins(&coins, Amount::MAX_MONEY, FeeRate::from_units_per_byte(1)) {
            Err(WalletError::InsufficientFunds { available, .. }) => {
                assert_eq!(available, units(5_000_000_000));
            }
            other => panic!("expected insufficient funds: {other:?}"),
        }
    }

    /// A coin at `index` (any of 2^32), its outpoint sorting as the index does.
    fn numbered_coin(index: u32, value: u64, confirmed: bool) -> SpendableCoin {
        let mut txid = [0; 32];
        txid[..4].copy_from_slice(&index.to_be_bytes());
        SpendableCoin {
            outpoint: OutPoint {
                txid: Txid(txid),
                vout: 0,
            },
            output: TxOut {
                value: units(value),
                address: test_address(1),
            },
            confirmed,
        }
    }

    /// A stranger can pay the wallet's public address as many dust outputs as it likes,
    /// with txids that sort before the wallet's own coins. The node once read the first
    /// 100,000 coins an address holds: the wallet's real coins fell past them, its balance
    /// showed the dust and every payment failed for want of funds.
    #[test]
    fn a_flood_of_dust_neither_hides_the_largest_coins_nor_the_total() {
        let mut candidates = CoinCandidates::default();
        let dust = 3 * max_payment_inputs();
        for index in 0..dust {
            candidates.offer(numbered_coin(index as u32, 1, true));
        }
        for index in 0..3 {
            candidates.offer(numbered_coin(u32::MAX - index, 100_000_000, true));
        }
        assert_eq!(candidates.count(), dust + 3);
        assert_eq!(
            candidates.best.len(),
            max_payment_inputs(),
            "one payment's worth kept"
        );

        let rate = FeeRate::from_units_per_byte(1);
        let selection = candidates
            .select(units(150_000_000), rate)
            .expect("two large coins pay it");
        assert_eq!(selection.inputs.len(), 2);
        assert!(
            selection
                .inputs
                .iter()
                .all(|coin| coin.output.value == units(100_000_000))
        );

        let error = candidates
            .select(units(300_000_000), rate)
            .expect_err("more than all");
        let all = units(300_000_000 + dust as u64);
        assert!(
            matches!(error, WalletError::InsufficientFunds { available, .. } if available == all),
            "{error:?}"
        );
    }

    proptest! {
        /// However many coins are offered, and in whatever order, the kept ones are the
        /// first of them all in selection order.
        #[test]
        fn the_kept_coins_are_the_first_in_selection_order(
            values in proptest::collection::vec((1u64..50, any::<bool>()), 0..1_300),
            seed in any::<u64>(),
        ) {
            let coins: Vec<SpendableCoin> = values
                .iter()
                .enumerate()
                .map(|(index, (value, confirmed))| numbered_coin(index as u32, *value, *confirmed))
                .collect();
            let mut offered = coins.clone();
            // A fixed shuffle from the seed: the order coins arrive in must not matter.
            let mut state = seed | 1;
            for index in (1..offered.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                offered.swap(index, (state % (index as u64 + 1)) as usize);
            }
            let mut candidates = CoinCandidates::default();
            for coin in &offered {
                candidates.offer(*coin);
            }
            let mut expected = coins;
            expected.sort_by(|left, right| {
                right
                    .confirmed
                    .cmp(&left.confirmed)
                    .then(right.output.value.cmp(&left.output.value))
                    .then(left.outpoint.cmp(&right.outpoint))
            });
            expected.truncate(max_payment_inputs());
            prop_assert_eq!(candidates.in_order(), expected);
            prop_assert_eq!(candidates.count(), values.len());
        }

        #[test]
        fn selection_is_exact_about_fees_and_funds(
            values in proptest::collection::vec((1u64..200_000, any::<bool>()), 0..12),
            amount in 1u64..600_000,
            units_per_kilobyte in 0u64..5_000,
        ) {
            let rate = FeeRate::from_units_per_kilobyte(units_per_kilobyte);
            let coins: Vec<SpendableCoin> = values
                .iter()
                .enumerate()
                .map(|(index, (value, confirmed))| coin(index as u8, *value, *confirmed))
                .collect();
            let total: u64 = values.iter().map(|(value, _)| value).sum();
            let fee_all = rate
                .fee_for(spend_transaction_size(coins.len().max(1), 1))
                .expect("small");
            let amount = units(amount);
            match select_coins(&coins, amount, rate) {
                Ok(selection) => {
                    let inputs: u64 = selection.inputs.iter().map(|c| c.output.value.to_units()).sum();
                    let change = selection.change.map_or(0, Amount::to_units);
                    prop_assert_eq!(inputs, amount.to_units() + change + selection.fee.to_units());
                    let outputs = 1 + usize::from(selection.change.is_some());
                    prop_assert_eq!(selection.size, spend_transaction_size(selection.inputs.len(), outputs));
                    let exact_fee = rate.fee_for(selection.size).expect("small");
                    match selection.change {
                        Some(change) => {
                            prop_assert_eq!(selection.fee, exact_fee);
                            prop_assert!(change > dust_limit(rate));
                        }
                        None => {
                            // At most the dust limit plus the change output's own fee is left over.
                            prop_assert!(selection.fee >= exact_fee);
                            let with_change = rate.fee_for(spend_transaction_size(selection.inputs.len(), 2)).expect("small");
                            prop_assert!(selection.fee.to_units() <= with_change.to_units() + dust_limit(rate).to_units());
                        }
                    }
                }
                Err(WalletError::InsufficientFunds { needed, available }) => {
                    prop_assert_eq!(available, units(total));
                    prop_assert_eq!(needed, units(amount.to_units() + fee_all.to_units()));
                    prop_assert!(available < needed);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
            // Spending every coin would work, so a payment must be built.
            if total >= amount.to_units() + fee_all.to_units() {
                prop_assert!(select_coins(&coins, amount, rate).is_ok());
            }
        }
    }
}
