//! `PoolOverlay`: the coins a transaction bound for the pool may spend.
//!
//! ```text
//!   coin(outpoint) = None                      if a pooled transaction spends it
//!                  | output of a pooled tx     as a non-coinbase coin at next_height
//!                  | chain_coins.coin(outpoint) otherwise
//! ```
//!
//! Pooled outputs count as created at the height of the next block, the earliest block
//! that could confirm them, and never as coinbase (the pool holds no coinbase).

use std::collections::HashMap;

use powchain_consensus::{BlockHeight, Coin, OutPoint, Txid, UtxoView};

use crate::entry::PoolEntry;

/// The chain's coins with the pool's outputs laid over them and the pool's spends hidden.
pub(crate) struct PoolOverlay<'a, V> {
    /// Confirmed coins, as the caller looked them up.
    pub(crate) chain_coins: &'a V,
    /// The pooled transactions.
    pub(crate) entries: &'a HashMap<Txid, PoolEntry>,
    /// Which pooled transaction spends each outpoint.
    pub(crate) spenders: &'a HashMap<OutPoint, Txid>,
    /// The height pooled outputs count as created at.
    pub(crate) next_height: BlockHeight,
}

impl<V: UtxoView> UtxoView for PoolOverlay<'_, V> {
    fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        if self.spenders.contains_key(outpoint) {
            return None;
        }
        match self.entries.get(&outpoint.txid) {
            Some(entry) => {
                let vout = usize::try_from(outpoint.vout).ok()?;
                entry.transaction.outputs.get(vout).map(|output| Coin {
                    output: *output,
                    height: self.next_height,
                    is_coinbase: false,
                })
            }
            None => self.chain_coins.coin(outpoint),
        }
    }
}
