//! `Payment`: a signed transaction the wallet built, with what it costs, and the default
//! fee rate.

use powchain_consensus::{Amount, FeeRate, OutPoint, Transaction};

/// The fee rate the node pays when the user names none: 2 units per byte.
///
/// A typical payment (one input, recipient and change: 187 bytes) then pays 374 units,
/// 0.00000374 coins, nothing next to a 50-coin block subsidy, so a newcomer on a devnet
/// never has to think about fees. It is not zero, because a fee is what the mempool orders
/// and evicts by: a payment at this rate goes ahead of free transactions when blocks are
/// full, and flooding the network costs the flooder something. The mempool's minimum relay
/// rate must stay at or below it, or the node would refuse its own payments.
pub const DEFAULT_FEE_RATE: FeeRate = FeeRate::from_units_per_byte(2);

/// The most fee the wallet pays for one payment: 0.1 coin (Bitcoin Core's `-maxtxfee`
/// default is 0.1 BTC). A payment of the largest size (999 inputs, 99,988 bytes) at 99
/// units a byte stays under it, change too small to keep included; `"feeRate": 10000000`,
/// a fee mistaken for a rate, would have paid 18.7 coins for one small payment.
pub fn max_payment_fee() -> Amount {
    Amount::from_units(10_000_000).expect("0.1 coin is in the money range")
}

/// A payment built and signed by the wallet, ready for the mempool.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Payment {
    /// The signed transaction: the recipient's output first, then the change output, if any.
    pub transaction: Transaction,
    /// Inputs minus outputs: what the miner gets.
    pub fee: Amount,
    /// What comes back to the wallet's default address, if anything.
    pub change: Option<Amount>,
    /// The coins spent, in input order (for the caller to mark them as no longer
    /// spendable until the payment confirms or is dropped).
    pub spent: Vec<OutPoint>,
}
