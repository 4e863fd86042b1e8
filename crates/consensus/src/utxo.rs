//! The UTXO view: how contextual rules see the set of unspent outputs.
//!
//! Consensus never reads storage. The caller (the chain state, the mempool, a test)
//! loads the coins a block or transaction spends and hands them over behind
//! [`UtxoView`]; a `HashMap` is a view.

use std::collections::HashMap;

use crate::transaction::{BlockHeight, OutPoint, TxOut};

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
