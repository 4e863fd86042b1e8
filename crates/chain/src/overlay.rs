//! The write-back cache in front of the coin tables and the per-transaction indexes.
//!
//! Connecting a block changes thousands of rows at random keys: coins by outpoint, the
//! address index by address, the transaction index by txid, the history by address. In a
//! copy-on-write B-tree each of those changes copies a whole leaf page, and once the tables
//! are large next to one block every change lands on a leaf of its own: the cost of a block
//! grows with the tables. So those rows are not written block by block. Each connected block
//! leaves its changes here, as one immutable [`BlockChanges`] layer; when the layers hold
//! more than a budget (bytes or blocks) they are written to the tables in one transaction,
//! sorted by key, and a leaf that many blocks touched is copied once.
//!
//! What is stored with every block, in the block's own write transaction, is enough to
//! rebuild its layer: the block itself, its undo data (the coins it spent) and the tip. The
//! store records the block up to which the tables are written (the *flushed tip*, always on
//! the main chain at or below the tip); opening a store rebuilds the layers of the blocks
//! above it from their data and undo data. A crash at any instant therefore loses nothing a
//! sync made durable: the tables are consistent at the flushed tip and the layers bring them
//! to the tip.
//!
//! Readers see the layers through their snapshot: [`Overlay`] is a vector of shared layers,
//! cloned (pointer copies) together with the redb read transaction under one lock, so a
//! snapshot's tables and layers always describe the same tip.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, OnceLock};

use powchain_consensus::utxo::{created_coins, created_outputs};
use powchain_consensus::{
    Address, Block, BlockHash, BlockHeight, Coin, OutPoint, Transaction, Txid,
};

use crate::store::{AddressTx, HistoryKey, TxLocation};

/// What a block did to one coin.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CoinChange {
    /// The block created it and it is unspent at the block's end.
    Created(Coin),
    /// The block spent it (it existed before the block).
    Spent(Coin),
}

impl CoinChange {
    fn coin(&self) -> &Coin {
        match self {
            CoinChange::Created(coin) | CoinChange::Spent(coin) => coin,
        }
    }
}

/// Approximate heap cost of one entry of each kind, for the cache budget: the key, the
/// value, the hash table's spare capacity, and the references a flush sorts.
const COIN_ENTRY_BYTES: usize = 160;
/// A coin's and a history row's entries in their layer's index by address (counted
/// whether or not it is built, so the budget holds either way).
const ADDRESS_ENTRY_BYTES: usize = 32 + OutPoint::ENCODED_BYTES;
const HISTORY_ORDER_BYTES: usize = 4;
const TRANSACTION_ENTRY_BYTES: usize = 80;
const HISTORY_ENTRY_BYTES: usize = 96;

/// The changes one connected block made to the coin tables and indexes.
#[derive(Debug)]
pub(crate) struct BlockChanges {
    pub(crate) hash: BlockHash,
    pub(crate) height: BlockHeight,
    /// Coins it created (unspent at its end) and coins from before it that it spent.
    pub(crate) coins: HashMap<OutPoint, CoinChange>,
    /// Its transactions' positions.
    pub(crate) transactions: HashMap<Txid, u32>,
    /// (address, txid) for every address each transaction paid or spent from.
    pub(crate) history: Vec<(Address, Txid)>,
    /// `coins` and `history` by address, built on the layer's first lookup by address (a
    /// block's connection does not wait for it): a lookup then reads that address's
    /// entries of each layer, not every coin and row the layer holds.
    by_address: OnceLock<AddressIndex>,
}

/// A layer's coins and history rows, in address order.
#[derive(Debug)]
struct AddressIndex {
    /// (address, outpoint) of every coin the layer changed, sorted.
    coins: Vec<(Address, OutPoint)>,
    /// Positions in `history`, in (address, txid) order.
    history: Vec<u32>,
}

impl BlockChanges {
    /// The changes of `block` at `height`, given the coins from before it that it spent
    /// and those it created (as `connect_block_transactions` returns them).
    pub(crate) fn new(
        hash: BlockHash,
        height: BlockHeight,
        block: &Block,
        txids: &[Txid],
        spent: &[(OutPoint, Coin)],
        created: &[(OutPoint, Coin)],
    ) -> BlockChanges {
        let mut coins = HashMap::with_capacity(spent.len() + created.len());
        for (outpoint, coin) in spent {
            coins.insert(*outpoint, CoinChange::Spent(*coin));
        }
        for (outpoint, coin) in created {
            coins.insert(*outpoint, CoinChange::Created(*coin));
        }
        let transactions = txids
            .iter()
            .enumerate()
            .map(|(position, txid)| (*txid, position as u32))
            .collect();
        BlockChanges {
            hash,
            height,
            coins,
            transactions,
            history: history_entries(block, txids, spent),
            by_address: OnceLock::new(),
        }
    }

    fn by_address(&self) -> &AddressIndex {
        self.by_address.get_or_init(|| {
            let mut coins: Vec<(Address, OutPoint)> = self
                .coins
                .iter()
                .map(|(outpoint, change)| (change.coin().output.address, *outpoint))
                .collect();
            coins.sort_unstable();
            let mut history: Vec<u32> = (0..self.history.len() as u32).collect();
            history.sort_unstable_by_key(|position| self.history[*position as usize]);
            AddressIndex { coins, history }
        })
    }

    /// This layer's coins that pay `address`, as (address, outpoint), in outpoint order.
    fn coins_of(&self, address: &Address) -> &[(Address, OutPoint)] {
        let coins = &self.by_address().coins;
        let start = coins.partition_point(|(entry, _)| entry < address);
        let end = start + coins[start..].partition_point(|(entry, _)| entry == address);
        &coins[start..end]
    }

    /// The transactions of this layer that paid or spent from `address`, in txid order.
    fn history_of(&self, address: &Address) -> impl Iterator<Item = &Txid> {
        let order = &self.by_address().history;
        let row = |position: &u32| &self.history[*position as usize];
        let start = order.partition_point(|position| row(position).0 < *address);
        order[start..]
            .iter()
            .map(row)
            .take_while(move |(entry, _)| entry == address)
            .map(|(_, txid)| txid)
    }

    /// The changes of an already connected block, rebuilt from its data and its undo data
    /// (the coins from before it that it spent): what opening a store does for the blocks
    /// above the flushed tip.
    pub(crate) fn replayed(
        hash: BlockHash,
        height: BlockHeight,
        block: &Block,
        txids: &[Txid],
        spent: &[(OutPoint, Coin)],
    ) -> BlockChanges {
        let spent_inside: BTreeSet<OutPoint> = block
            .transactions
            .iter()
            .flat_map(|transaction| transaction.spends().iter().map(|input| input.prevout))
            .collect();
        let mut created = Vec::new();
        for (transaction, txid) in block.transactions.iter().zip(txids) {
            created.extend(
                created_coins(transaction, *txid, height)
                    .filter(|(outpoint, _)| !spent_inside.contains(outpoint)),
            );
        }
        BlockChanges::new(hash, height, block, txids, spent, &created)
    }

    fn approx_bytes(&self) -> usize {
        self.coins.len() * (COIN_ENTRY_BYTES + ADDRESS_ENTRY_BYTES)
            + self.transactions.len() * TRANSACTION_ENTRY_BYTES
            + self.history.len() * (HISTORY_ENTRY_BYTES + HISTORY_ORDER_BYTES)
    }
}

/// The history rows of a block: each transaction under every address it paid or spent from.
fn history_entries(
    block: &Block,
    txids: &[Txid],
    spent: &[(OutPoint, Coin)],
) -> Vec<(Address, Txid)> {
    let spent_addresses = spent_addresses(block, txids, spent);
    let mut history = Vec::new();
    for (transaction, txid) in block.transactions.iter().zip(txids) {
        for address in touched_addresses(transaction, &spent_addresses) {
            history.push((address, *txid));
        }
    }
    history
}

/// The address of every coin `block` may spend: those from before it that it spent
/// (`spent`, its undo data) and every output it makes.
pub(crate) fn spent_addresses(
    block: &Block,
    txids: &[Txid],
    spent: &[(OutPoint, Coin)],
) -> HashMap<OutPoint, Address> {
    let mut addresses: HashMap<OutPoint, Address> = spent
        .iter()
        .map(|(outpoint, coin)| (*outpoint, coin.output.address))
        .collect();
    for (transaction, txid) in block.transactions.iter().zip(txids) {
        addresses.extend(
            created_outputs(transaction, *txid)
                .map(|(outpoint, output)| (outpoint, output.address)),
        );
    }
    addresses
}

/// Every address a transaction pays or spends from.
pub(crate) fn touched_addresses(
    transaction: &Transaction,
    spent_addresses: &HashMap<OutPoint, Address>,
) -> BTreeSet<Address> {
    transaction
        .outputs
        .iter()
        .map(|output| output.address)
        .chain(
            transaction
                .spends()
                .iter()
                .filter_map(|input| spent_addresses.get(&input.prevout).copied()),
        )
        .collect()
}

/// The unflushed blocks' changes, oldest first: exactly the main-chain blocks above the
/// flushed tip. Cloning copies pointers.
#[derive(Clone, Default, Debug)]
pub(crate) struct Overlay {
    layers: Vec<Arc<BlockChanges>>,
    bytes: usize,
}

impl Overlay {
    pub(crate) fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Unflushed blocks.
    pub(crate) fn len(&self) -> usize {
        self.layers.len()
    }

    /// Approximate memory the layers take.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The newest unflushed block.
    pub(crate) fn last_hash(&self) -> Option<BlockHash> {
        self.layers.last().map(|layer| layer.hash)
    }

    pub(crate) fn layers(&self) -> &[Arc<BlockChanges>] {
        &self.layers
    }

    pub(crate) fn push(&mut self, layer: BlockChanges) {
        self.bytes += layer.approx_bytes();
        self.layers.push(Arc::new(layer));
    }

    pub(crate) fn pop(&mut self) -> Option<Arc<BlockChanges>> {
        let layer = self.layers.pop()?;
        self.bytes -= layer.approx_bytes();
        Some(layer)
    }

    pub(crate) fn clear(&mut self) {
        self.layers.clear();
        self.bytes = 0;
    }

    /// What the unflushed blocks say about a coin: `Some(Some(coin))` created and unspent,
    /// `Some(None)` spent, `None` untouched (ask the table).
    pub(crate) fn coin(&self, outpoint: &OutPoint) -> Option<Option<Coin>> {
        self.layers.iter().rev().find_map(|layer| {
            layer.coins.get(outpoint).map(|change| match change {
                CoinChange::Created(coin) => Some(*coin),
                CoinChange::Spent(_) => None,
            })
        })
    }

    /// Where an unflushed block holds `txid`.
    pub(crate) fn tx_location(&self, txid: &Txid) -> Option<TxLocation> {
        self.layers.iter().rev().find_map(|layer| {
            layer.transactions.get(txid).map(|position| TxLocation {
                block_hash: layer.hash,
                position: *position,
            })
        })
    }

    /// Where the unflushed blocks hold each of their transactions, in txid order (the
    /// transaction index's key order): the rows a flush would write to `tx_index`.
    pub(crate) fn tx_locations(&self) -> Vec<(Txid, TxLocation)> {
        let mut locations: Vec<(Txid, TxLocation)> = self
            .layers
            .iter()
            .flat_map(|layer| {
                layer.transactions.iter().map(|(txid, position)| {
                    let location = TxLocation {
                        block_hash: layer.hash,
                        position: *position,
                    };
                    (*txid, location)
                })
            })
            .collect();
        locations.sort_unstable_by_key(|(txid, _)| *txid);
        locations
    }

    /// The unflushed blocks' history rows as (address, height, txid), in that order (the
    /// history table's key order): the rows a flush would write to `address_txs`.
    pub(crate) fn history_rows(&self) -> Vec<HistoryKey> {
        let mut rows: Vec<HistoryKey> = self
            .layers
            .iter()
            .flat_map(|layer| {
                layer
                    .history
                    .iter()
                    .map(|(address, txid)| (*address, layer.height, *txid))
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    /// The net change of every coin the unflushed blocks touched, in outpoint order (the
    /// UTXO table's key order): a coin created and spent among them does not appear;
    /// `Spent` coins are in the table, `Created` ones are not.
    pub(crate) fn net_coin_changes(&self) -> Vec<(&OutPoint, &CoinChange)> {
        // References, not copies: a flush of a full cache sorts hundreds of thousands.
        let mut all: Vec<(&OutPoint, usize, &CoinChange)> = self
            .layers
            .iter()
            .enumerate()
            .flat_map(|(age, layer)| {
                layer
                    .coins
                    .iter()
                    .map(move |(outpoint, change)| (outpoint, age, change))
            })
            .collect();
        all.sort_unstable_by_key(|(outpoint, age, _)| (*outpoint, *age));
        let mut net: Vec<(&OutPoint, &CoinChange)> = Vec::with_capacity(all.len());
        for (outpoint, _, change) in all {
            match net.last() {
                // Created by one unflushed block, spent by a later one: never in the table.
                Some((last, CoinChange::Created(_))) if *last == outpoint => {
                    net.pop();
                }
                _ => net.push((outpoint, change)),
            }
        }
        net
    }

    /// The net change of the coins of `address`, in outpoint order: `Some` created (not in
    /// the table), `None` spent (in the table, to be hidden). Lazy: each layer's coins of
    /// the address are merged as they are read, so a reader that wants the first few coins
    /// of an address with thousands of cached changes reads about that few.
    pub(crate) fn address_coin_changes<'a>(&'a self, address: &Address) -> AddressCoinChanges<'a> {
        let slices: Vec<&'a [(Address, OutPoint)]> = self
            .layers
            .iter()
            .map(|layer| layer.coins_of(address))
            .collect();
        let heads = slices
            .iter()
            .enumerate()
            .filter_map(|(age, slice)| {
                slice
                    .first()
                    .map(|(_, outpoint)| Reverse((*outpoint, Reverse(age))))
            })
            .collect();
        AddressCoinChanges {
            layers: &self.layers,
            unread: slices,
            heads,
        }
    }

    /// The unflushed history of `address`, newest first (by height, then txid descending,
    /// as the table orders it): all of it is newer than anything in the table.
    pub(crate) fn address_history(&self, address: &Address) -> Vec<AddressTx> {
        let mut history = Vec::new();
        for layer in self.layers.iter().rev() {
            // Sorted ascending in the layer: newest first is the other way round.
            let txids: Vec<&Txid> = layer.history_of(address).collect();
            history.extend(txids.into_iter().rev().map(|txid| AddressTx {
                height: layer.height,
                txid: *txid,
            }));
        }
        history
    }
}

/// [`Overlay::address_coin_changes`]: the layers' sorted coins of one address, merged.
pub(crate) struct AddressCoinChanges<'a> {
    layers: &'a [Arc<BlockChanges>],
    /// Each layer's coins of the address not read yet, in outpoint order; the first of
    /// each is in `heads`.
    unread: Vec<&'a [(Address, OutPoint)]>,
    /// The first unread outpoint of each layer that has one, smallest first and, for one
    /// outpoint, newest layer first.
    heads: BinaryHeap<Reverse<(OutPoint, Reverse<usize>)>>,
}

impl AddressCoinChanges<'_> {
    /// Takes the head of layer `age` and puts that layer's next outpoint in its place.
    fn advance(&mut self, age: usize) {
        let unread = &mut self.unread[age];
        *unread = unread.get(1..).unwrap_or_default();
        if let Some((_, outpoint)) = unread.first() {
            self.heads.push(Reverse((*outpoint, Reverse(age))));
        }
    }
}

impl Iterator for AddressCoinChanges<'_> {
    type Item = (OutPoint, Option<Coin>);

    fn next(&mut self) -> Option<(OutPoint, Option<Coin>)> {
        loop {
            let Reverse((outpoint, Reverse(newest))) = self.heads.pop()?;
            self.advance(newest);
            // Older layers that changed the same coin: a coin is created once and spent
            // once, so the newest change is its state, and a coin some older layer created
            // never reached the table.
            let mut created_above_the_table = false;
            while let Some(Reverse((next, Reverse(age)))) = self.heads.peek().copied()
                && next == outpoint
            {
                self.heads.pop();
                self.advance(age);
                created_above_the_table |= matches!(
                    self.layers[age].coins.get(&outpoint),
                    Some(CoinChange::Created(_))
                );
            }
            match self.layers[newest].coins.get(&outpoint) {
                Some(CoinChange::Created(coin)) => return Some((outpoint, Some(*coin))),
                // Created and spent above the table: nothing to show, nothing to hide.
                Some(CoinChange::Spent(_)) if created_above_the_table => {}
                Some(CoinChange::Spent(_)) | None => return Some((outpoint, None)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::{Amount, TxOut};

    fn coin(address: u8, height: u64) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::from_units(1).expect("in range"),
                address: Address([address; 32]),
            },
            height: BlockHeight(height),
            is_coinbase: false,
        }
    }

    fn outpoint(byte: u8) -> OutPoint {
        OutPoint {
            txid: Txid([byte; 32]),
            vout: 0,
        }
    }

    fn layer(height: u64, coins: &[(OutPoint, CoinChange)]) -> BlockChanges {
        BlockChanges {
            hash: BlockHash([height as u8; 32]),
            height: BlockHeight(height),
            coins: coins.iter().copied().collect(),
            transactions: HashMap::new(),
            history: Vec::new(),
            by_address: OnceLock::new(),
        }
    }

    #[test]
    fn an_address_reads_only_its_own_coins_and_history_of_each_layer() {
        let mut overlay = Overlay::default();
        let mut first = layer(
            1,
            &[
                (outpoint(1), CoinChange::Created(coin(7, 1))),
                (outpoint(2), CoinChange::Created(coin(8, 1))),
                (outpoint(3), CoinChange::Spent(coin(9, 0))),
                (outpoint(4), CoinChange::Created(coin(7, 1))),
            ],
        );
        let history = |pairs: &[(u8, u8)]| -> Vec<(Address, Txid)> {
            pairs
                .iter()
                .map(|(address, txid)| (Address([*address; 32]), Txid([*txid; 32])))
                .collect()
        };
        first.history = history(&[(7, 1), (8, 2), (7, 3), (9, 3)]);
        overlay.push(first);
        let mut second = layer(
            2,
            &[
                (outpoint(4), CoinChange::Spent(coin(7, 1))),
                (outpoint(5), CoinChange::Created(coin(8, 2))),
            ],
        );
        second.history = history(&[(7, 4), (8, 4), (8, 5)]);
        overlay.push(second);

        let sevens: Vec<(OutPoint, Option<Coin>)> =
            overlay.address_coin_changes(&Address([7; 32])).collect();
        assert_eq!(sevens, vec![(outpoint(1), Some(coin(7, 1)))]);
        let eights: Vec<OutPoint> = overlay
            .address_coin_changes(&Address([8; 32]))
            .map(|(outpoint, _)| outpoint)
            .collect();
        assert_eq!(eights, vec![outpoint(2), outpoint(5)]);
        let nines: Vec<(OutPoint, Option<Coin>)> =
            overlay.address_coin_changes(&Address([9; 32])).collect();
        assert_eq!(
            nines,
            vec![(outpoint(3), None)],
            "spent: hidden in the table"
        );
        assert!(
            overlay
                .address_coin_changes(&Address([6; 32]))
                .next()
                .is_none()
        );

        // Newest block first, and within a block by txid descending, as the table orders.
        let history_of = |address: u8| -> Vec<(u64, u8)> {
            overlay
                .address_history(&Address([address; 32]))
                .iter()
                .map(|entry| (entry.height.0, entry.txid.0[0]))
                .collect()
        };
        assert_eq!(history_of(8), vec![(2, 5), (2, 4), (1, 2)]);
        assert_eq!(history_of(7), vec![(2, 4), (1, 3), (1, 1)]);
    }

    #[test]
    fn newer_layers_win_and_created_then_spent_cancels() {
        let mut overlay = Overlay::default();
        overlay.push(layer(
            1,
            &[
                (outpoint(1), CoinChange::Created(coin(7, 1))),
                (outpoint(2), CoinChange::Spent(coin(7, 0))),
            ],
        ));
        overlay.push(layer(2, &[(outpoint(1), CoinChange::Spent(coin(7, 1)))]));
        assert_eq!(overlay.coin(&outpoint(1)), Some(None));
        assert_eq!(overlay.coin(&outpoint(2)), Some(None));
        assert_eq!(overlay.coin(&outpoint(3)), None);
        let net = overlay.net_coin_changes();
        assert_eq!(
            net,
            vec![(&outpoint(2), &CoinChange::Spent(coin(7, 0)))],
            "the coin made and spent above the table is gone"
        );
        let by_address = overlay.address_coin_changes(&Address([7; 32]));
        assert_eq!(by_address.collect::<Vec<_>>(), vec![(outpoint(2), None)]);
        let popped = overlay.pop().expect("a layer");
        assert_eq!(popped.height, BlockHeight(2));
        assert_eq!(overlay.coin(&outpoint(1)), Some(Some(coin(7, 1))));
        assert_eq!(
            overlay.bytes(),
            2 * (COIN_ENTRY_BYTES + ADDRESS_ENTRY_BYTES)
        );
    }
}
