//! The UTXO view: how contextual rules see the set of unspent outputs.
//!
//! Consensus never reads storage. The caller (the chain state, the mempool, a test)
//! loads the coins a block or transaction spends and hands them over behind
//! [`UtxoView`]; a `HashMap` is a view.

use std::collections::HashMap;

use crate::hash::Txid;
use crate::params::Params;
use crate::transaction::{BlockHeight, OutPoint, Transaction, TxOut};

/// An unspent output and where it came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Coin {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: BlockHeight,
    /// True if it was created by a coinbase (and so must mature before it is spent).
    pub is_coinbase: bool,
}

impl Coin {
    /// True if a transaction in a block at `spend_height` may spend this coin: any output
    /// of an ordinary transaction, a coinbase output only once it has matured
    /// (`params.coinbase_maturity` blocks after the block that created it).
    pub fn is_mature_at(&self, spend_height: BlockHeight, params: &Params) -> bool {
        !self.is_coinbase
            || spend_height.0 >= self.height.0.saturating_add(params.coinbase_maturity)
    }
}

/// The outputs `transaction` (whose id is `txid`) creates, each with the outpoint that
/// names it: output `n` is `txid:n`.
pub fn created_outputs(
    transaction: &Transaction,
    txid: Txid,
) -> impl Iterator<Item = (OutPoint, &TxOut)> + '_ {
    transaction
        .outputs
        .iter()
        .enumerate()
        .map(move |(vout, output)| {
            let vout =
                u32::try_from(vout).expect("a decoded transaction has fewer than 2^32 outputs");
            (OutPoint { txid, vout }, output)
        })
}

/// The coins `transaction` (whose id is `txid`) creates in a block at `height`: one per
/// output, coinbase coins marked so they mature before they are spent.
pub fn created_coins(
    transaction: &Transaction,
    txid: Txid,
    height: BlockHeight,
) -> impl Iterator<Item = (OutPoint, Coin)> + '_ {
    let is_coinbase = transaction.is_coinbase();
    created_outputs(transaction, txid).map(move |(outpoint, output)| {
        (
            outpoint,
            Coin {
                output: *output,
                height,
                is_coinbase,
            },
        )
    })
}

/// Read access to unspent outputs.
pub trait UtxoView {
    /// The unspent output at `outpoint`, or `None` if it does not exist or is spent.
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin>;
}

impl UtxoView for HashMap<OutPoint, Coin> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.get(outpoint).copied()
    }
}

impl<T: UtxoView + ?Sized> UtxoView for &T {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        (**self).coin(outpoint)
    }
}
