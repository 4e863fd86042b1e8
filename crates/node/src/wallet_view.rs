//! The node's wallet as the chain and the pool see it: balances split into confirmed,
//! immature, incoming and outgoing, the coins a payment may use, and sending.
//!
//! ```text
//!   wallet addresses ──▶ snapshot, 1,024 coins a chunk ──▶ mature? spent in the pool?
//!                        (each chunk under the core lock) ──▶ buckets + CoinCandidates
//!   pool outputs paying the wallet ──▶ incoming ──▶ its own payment's? spendable
//!                                                   others'? spendable once confirmed
//!   send ──▶ Wallet::build_payment_from (the candidates) ──▶ pool admission + store ──▶ event
//! ```
//!
//! The wallet lock is always taken before the core lock.

use std::ops::ControlFlow;
use std::sync::MutexGuard;

use powchain_chain::{AddressCoin, Snapshot};
use powchain_consensus::{
    Address, Amount, BlockHeight, FeeRate, OutPoint, Transaction, TxOut, Txid,
};
use powchain_wallet::{CoinCandidates, SpendableCoin, Wallet, WalletError};

use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::node::{Core, Node, lock};

/// Coins read from the store between two looks at the pool (each under the core lock).
const COINS_PER_CHUNK: usize = 1_024;
/// Reads of the wallet's coins a balance or a payment makes at most while blocks keep
/// coming (the last is used as it is: a balance is a report, and admission checks a
/// payment against the chain anyway).
const MAX_READS: usize = 3;

/// The wallet's coins, folded as they are read: the balance, and the coins a payment may
/// choose from.
#[derive(Default)]
struct WalletCoins {
    balance: WalletBalance,
    candidates: CoinCandidates,
}

/// A pool output paying the wallet, and what its transaction's first input spends.
struct PooledCoin {
    outpoint: OutPoint,
    output: TxOut,
    first_spent: OutPoint,
    /// The output `first_spent` names, if a pooled transaction made it.
    first_spent_pooled: Option<TxOut>,
}

/// Adds `value` to `total`, at most the money supply (a balance is a report: it saturates).
fn add(total: &mut Amount, value: Amount) {
    *total = total.checked_add(value).unwrap_or(Amount::MAX_MONEY);
}

/// The node wallet's balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalletBalance {
    /// Confirmed coins, mature or not.
    pub confirmed: Amount,
    /// The part of `confirmed` that is coinbase output not yet mature.
    pub immature: Amount,
    /// Pool outputs paying the wallet, not yet confirmed.
    pub unconfirmed_incoming: Amount,
    /// The part of `unconfirmed_incoming` that others' payments pay: not spendable until
    /// it confirms (its payer may spend the same coins elsewhere, or it may never be
    /// mined), as Bitcoin Core's wallet spends only its own unconfirmed change.
    pub unconfirmed_from_others: Amount,
    /// Confirmed coins that pooled transactions spend.
    pub unconfirmed_outgoing: Amount,
    /// What a payment can use now: mature confirmed coins not spent in the pool, plus the
    /// pool outputs of the wallet's own payments that pay it (its change).
    pub spendable: Amount,
}

impl WalletBalance {
    /// Confirmed plus incoming minus outgoing: the balance once the pool confirms.
    pub fn total(&self) -> Amount {
        self.confirmed
            .checked_add(self.unconfirmed_incoming)
            .and_then(|sum| sum.checked_sub(self.unconfirmed_outgoing))
            .unwrap_or(Amount::ZERO)
    }
}

/// A payment the wallet made.
#[derive(Clone, Debug)]
pub struct SentPayment {
    /// The signed transaction, now in the pool.
    pub transaction: Transaction,
    /// Its id.
    pub txid: Txid,
    /// The fee it pays.
    pub fee: Amount,
}

impl Node {
    /// The wallet's default address (the tutorial's public key).
    pub fn wallet_address(&self) -> Address {
        lock(&self.wallet).default_address()
    }

    /// The wallet's default public key, hex.
    pub fn wallet_public_key_hex(&self) -> String {
        lock(&self.wallet).default_public_key_hex()
    }

    /// Every address of the wallet.
    pub fn wallet_addresses(&self) -> Vec<Address> {
        lock(&self.wallet).addresses()
    }

    /// A fresh receive address, stored before it is returned.
    ///
    /// # Errors
    /// [`NodeError::Wallet`] if the key file cannot be written.
    pub fn new_wallet_address(&self) -> Result<Address, NodeError> {
        Ok(lock(&self.wallet).new_address()?)
    }

    /// Reads every confirmed coin of the wallet's addresses from `snapshot`, in chunks of
    /// [`COINS_PER_CHUNK`], and hands each chunk to `sort`. However many coins strangers
    /// paid the wallet's (public) addresses, every one is counted and no more than a chunk
    /// is in memory.
    fn read_wallet_coins(
        wallet: &Wallet,
        snapshot: &Snapshot,
        mut sort: impl FnMut(&[AddressCoin]),
    ) -> Result<(), NodeError> {
        let mut chunk = Vec::with_capacity(COINS_PER_CHUNK);
        for address in wallet.addresses() {
            snapshot.visit_address_coins(&address, |coin| {
                chunk.push(coin);
                if chunk.len() == COINS_PER_CHUNK {
                    sort(&chunk);
                    chunk.clear();
                }
                ControlFlow::Continue(())
            })?;
        }
        if !chunk.is_empty() {
            sort(&chunk);
        }
        Ok(())
    }

    /// Sorts confirmed `coins` of the wallet by what the pool does with them, with
    /// `next_height` the height a block would have next (what maturity is judged
    /// against). Needs the core locked (the pool), not the store: the coins were read
    /// before.
    fn sort_confirmed_coins(
        &self,
        core: &Core,
        coins: &[AddressCoin],
        next_height: BlockHeight,
        tally: &mut WalletCoins,
    ) {
        for entry in coins {
            let value = entry.coin.output.value;
            add(&mut tally.balance.confirmed, value);
            if !entry.coin.is_mature_at(next_height, self.params()) {
                add(&mut tally.balance.immature, value);
            } else if core.mempool.spender_of(&entry.outpoint).is_some()
                || core.parked.spends(&entry.outpoint)
            {
                add(&mut tally.balance.unconfirmed_outgoing, value);
            } else {
                add(&mut tally.balance.spendable, value);
                tally.candidates.offer(SpendableCoin {
                    outpoint: entry.outpoint,
                    output: entry.coin.output,
                    confirmed: true,
                });
            }
        }
    }

    /// The pool's unspent outputs paying the wallet, each with what the first input of its
    /// transaction spends (and that output, if the pool made it). Needs the core lock;
    /// nothing is read from the store.
    fn pool_coins(wallet: &Wallet, core: &Core) -> Vec<PooledCoin> {
        core.mempool
            .unspent_outputs_paying(|address| wallet.owns(address))
            .into_iter()
            // A parked payment spends it: not the wallet's to spend again.
            .filter(|(outpoint, _)| !core.parked.spends(outpoint))
            .filter_map(|(outpoint, output)| {
                let entry = core.mempool.get(&outpoint.txid)?;
                let first_spent = entry.transaction.spends().first()?.prevout;
                Some(PooledCoin {
                    outpoint,
                    output,
                    first_spent,
                    first_spent_pooled: core.mempool.output(&first_spent),
                })
            })
            .collect()
    }

    /// Adds the pool's outputs paying the wallet: all to incoming; those of the wallet's own
    /// payments (whose first input spends a coin of the wallet's: a payment it signed) to
    /// spendable too, the others to `unconfirmed_from_others`. Reads the store, not the pool.
    fn add_pool_coins(
        wallet: &Wallet,
        snapshot: &Snapshot,
        coins: Vec<PooledCoin>,
        tally: &mut WalletCoins,
    ) -> Result<(), NodeError> {
        for coin in coins {
            let value = coin.output.value;
            add(&mut tally.balance.unconfirmed_incoming, value);
            let spent = match coin.first_spent_pooled {
                Some(output) => Some(output),
                None => snapshot.coin(&coin.first_spent)?.map(|spent| spent.output),
            };
            if spent.is_some_and(|spent| wallet.owns(&spent.address)) {
                add(&mut tally.balance.spendable, value);
                tally.candidates.offer(SpendableCoin {
                    outpoint: coin.outpoint,
                    output: coin.output,
                    confirmed: false,
                });
            } else {
                add(&mut tally.balance.unconfirmed_from_others, value);
            }
        }
        Ok(())
    }

    /// The wallet's confirmed coins, read from a snapshot a chunk at a time, each chunk
    /// sorted against the pool under the core lock, and the core lock taken at the end at
    /// the snapshot's tip: the pool then holds what the snapshot's chain has not
    /// confirmed. If a block came during the read, the read starts again, at most
    /// [`MAX_READS`] times in all (the last is used as it is). `after_read` runs after
    /// each read, before the lock is taken (a test connects a block there).
    ///
    /// So however many coins strangers paid the wallet, blocks and admissions are not held
    /// back for the read; and a block that confirms a pooled payment during the read
    /// (before the last read) does not hide it: its spent coin sorted as outgoing before
    /// the block, its outputs neither pooled nor in the snapshot after it. The pool may
    /// still change at one tip between a chunk's sorting and the end (a payment that
    /// expires or is evicted meanwhile), which can miscount that payment for one read.
    fn confirmed_coins_at_one_tip(
        &self,
        wallet: &Wallet,
        after_read: &mut dyn FnMut(),
    ) -> Result<(MutexGuard<'_, Core>, Snapshot, WalletCoins), NodeError> {
        let mut reads = 0;
        loop {
            reads += 1;
            let snapshot = self.reader.snapshot()?;
            let tip = snapshot.tip()?;
            let next_height = tip.record.height.next();
            let mut tally = WalletCoins::default();
            Self::read_wallet_coins(wallet, &snapshot, |chunk| {
                let core = lock(&self.core);
                self.sort_confirmed_coins(&core, chunk, next_height, &mut tally);
            })?;
            after_read();
            let core = lock(&self.core);
            if core.chain.tip().hash == tip.hash || reads >= MAX_READS {
                return Ok((core, snapshot, tally));
            }
        }
    }

    /// The wallet's balance: its confirmed coins and the pool's part at one tip
    /// (`confirmed_coins_at_one_tip`), the core lock held only to sort each chunk
    /// of coins against the pool and to read the pool's outputs, so a stranger asking
    /// again and again about an address paid a million times does not hold blocks and
    /// admissions back.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if the store cannot be read.
    pub fn wallet_balance(&self) -> Result<WalletBalance, NodeError> {
        self.wallet_balance_reading(&mut || {})
    }

    /// [`Node::wallet_balance`], running `after_read` after each read of the coins.
    fn wallet_balance_reading(
        &self,
        after_read: &mut dyn FnMut(),
    ) -> Result<WalletBalance, NodeError> {
        let wallet = lock(&self.wallet);
        let (core, snapshot, mut tally) = self.confirmed_coins_at_one_tip(&wallet, after_read)?;
        let pooled = Self::pool_coins(&wallet, &core);
        drop(core);
        Self::add_pool_coins(&wallet, &snapshot, pooled, &mut tally)?;
        Ok(tally.balance)
    }

    /// Pays `amount` to `recipient` from the wallet, at `fee_rate` (the configured rate if
    /// `None`); the transaction is in the pool and stored when this returns.
    ///
    /// # Errors
    /// [`NodeError::Wallet`] (zero amount, insufficient funds) or the pool's refusal.
    pub fn send(
        &self,
        recipient: Address,
        amount: Amount,
        fee_rate: Option<FeeRate>,
    ) -> Result<SentPayment, NodeError> {
        let now = self.clock.now_ms();
        let wallet = lock(&self.wallet);
        // The core lock is held whole only once the coins are read, and the payment
        // spends coins of the chain it is admitted to (admission checks it anyway).
        let (mut core, snapshot, mut tally) =
            self.confirmed_coins_at_one_tip(&wallet, &mut || {})?;
        Self::add_pool_coins(
            &wallet,
            &snapshot,
            Self::pool_coins(&wallet, &core),
            &mut tally,
        )?;
        let pending = tally.balance.unconfirmed_from_others;
        let payment = wallet
            .build_payment_from(
                &tally.candidates,
                recipient,
                amount,
                fee_rate.unwrap_or(self.config.wallet_fee_rate),
            )
            .map_err(|error| match error {
                // Say why a wallet that was just paid cannot pay yet.
                WalletError::InsufficientFunds { .. } if pending > Amount::ZERO => {
                    NodeError::AwaitingConfirmation {
                        source: error,
                        pending,
                    }
                }
                other => NodeError::Wallet(other),
            })?;
        let (accepted, queued) =
            self.accept_and_queue(&mut core, payment.transaction.clone(), now)?;
        drop(core);
        // The pool spends the payment's coins now: the next payment cannot pick them.
        drop(wallet);
        self.await_stored(&accepted, queued)?;
        self.publish(NodeEvent::TransactionAccepted {
            txid: accepted.txid,
        });
        Ok(SentPayment {
            transaction: payment.transaction,
            txid: accepted.txid,
            fee: accepted.fee,
        })
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::testkit::test_address;
    use powchain_consensus::{Amount, Block, BlockHeight, Network};

    use super::WalletBalance;
    use crate::testing::TestNode;

    /// A stranger pays the wallet's address more dust outputs than one chunk of the
    /// balance's read holds. Every one is counted, and a payment is still made from the
    /// largest coins (before, the node read at most 100,000 coins an address, the first by
    /// outpoint: enough dust with low txids hid the wallet's own coins from both).
    #[test]
    fn dust_paid_to_the_wallet_is_counted_and_payments_come_from_its_largest_coins() {
        use powchain_consensus::TxOut;
        use powchain_consensus::testkit::test_key;

        let test = TestNode::open(Network::Regtest);
        let stranger = test_key(9);
        let funding = test.mine_paying(test_address(9));
        test.mine_until_spendable();
        let before = test.node.wallet_balance().expect("the balance reads");
        let coinbase = funding.transactions[0].outputs[0];
        let dust_count = 2 * super::COINS_PER_CHUNK + 100;
        let dust = Amount::from_units(1).expect("in range");
        let wallet_address = test.node.wallet_address();
        let mut outputs = vec![
            TxOut {
                value: dust,
                address: wallet_address,
            };
            dust_count
        ];
        outputs.push(TxOut {
            value: minus(coinbase.value, Amount::ONE_COIN),
            address: test_address(9),
        });
        let flood = crate::testing::spend_to(&funding.transactions[0], 0, &stranger, outputs);
        test.node
            .submit_transaction(flood)
            .expect("a legal, if unkind, payment");
        let block = test.mine(true);
        assert_eq!(block.transactions.len(), 2, "the flood is confirmed");

        let after = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&after);
        let dust_total = Amount::from_units(dust_count as u64).expect("small");
        let new_coinbase = block.transactions[0].outputs[0].value;
        assert_eq!(
            after.confirmed,
            sum([before.confirmed, new_coinbase, dust_total]),
            "every dust output counted"
        );

        // Two coins' worth: the two largest coins pay it, not a thousand dust outputs.
        let payment = test
            .node
            .send(
                test_address(3),
                sum([coinbase.value, Amount::ONE_COIN]),
                None,
            )
            .expect("the wallet pays from its coinbases");
        assert_eq!(payment.transaction.spends().len(), 2);
    }

    /// The attack itself: more than 100,000 dust outputs paid to the wallet's address,
    /// all sorting before the wallet's one real coin. The node read the first 100,000
    /// coins an address holds: its balance showed the dust, and a payment failed for want
    /// of funds. (About 2 MB of outputs in three blocks: some seconds in a debug build.)
    #[test]
    fn a_hundred_thousand_dust_outputs_sorting_first_hide_no_coin() {
        use powchain_consensus::testkit::test_key;
        use powchain_consensus::{Transaction, TxOut};

        const OUTPUTS_PER_FLOOD: usize = 2_400;
        const FLOODS: usize = 42;
        let test = TestNode::open(Network::Regtest);
        let stranger = test_key(9);
        let funding: Vec<Block> = (0..=FLOODS)
            .map(|_| test.mine_paying(test_address(9)))
            .collect();
        test.mine_paying(test_address(9));
        let wallet_address = test.node.wallet_address();
        let dust = Amount::from_units(1).expect("in range");
        let spend = |coinbase: &Transaction, outputs: Vec<TxOut>| {
            crate::testing::spend_to(coinbase, 0, &stranger, outputs)
        };
        let change = |coinbase: &Transaction, kept: Amount| TxOut {
            value: minus(coinbase.outputs[0].value, kept),
            address: test_address(9),
        };
        let mut floods = Vec::new();
        for block in &funding[..FLOODS] {
            let mut outputs = vec![
                TxOut {
                    value: dust,
                    address: wallet_address,
                };
                OUTPUTS_PER_FLOOD
            ];
            outputs.push(change(&block.transactions[0], Amount::ONE_COIN));
            floods.push(spend(&block.transactions[0], outputs));
        }
        // The wallet's one real coin, its txid after every flood's (signatures are
        // randomised, so the amount is varied until it sorts last).
        let last_coinbase = &funding[FLOODS].transactions[0];
        let highest_flood = floods
            .iter()
            .map(Transaction::compute_txid)
            .max()
            .expect("floods");
        let real = (0..)
            .map(|units| {
                let value = sum([
                    Amount::from_coins(10).expect("in range"),
                    Amount::from_units(units).expect("in range"),
                ]);
                spend(
                    last_coinbase,
                    vec![
                        TxOut {
                            value,
                            address: wallet_address,
                        },
                        change(last_coinbase, sum([value, Amount::ONE_COIN])),
                    ],
                )
            })
            .find(|real| real.compute_txid() > highest_flood)
            .expect("a txid above the floods' in a few tries");
        let real_value = real.outputs[0].value;
        for transaction in floods.iter().chain([&real]) {
            test.node
                .submit_transaction(transaction.clone())
                .expect("legal, if unkind");
        }
        // Mined into blocks whose coinbases pay the stranger: the wallet holds the dust
        // and its one coin, nothing else.
        while test.node.pool_size().0 > 0 {
            test.clock.advance(test.node.params().target_block_time_ms);
            let mut block = test
                .node
                .block_template(test_address(9), b"flood".to_vec(), true)
                .expect("a template");
            powchain_consensus::testkit::solve(&mut block.header);
            test.node.submit_block(block).expect("valid");
        }

        let dust_total = Amount::from_units((FLOODS * OUTPUTS_PER_FLOOD) as u64).expect("small");
        let balance = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&balance);
        const { assert!(FLOODS * OUTPUTS_PER_FLOOD > 100_000) };
        assert_eq!(
            balance.confirmed,
            sum([dust_total, real_value]),
            "every coin is counted, the real one too"
        );
        let payment = test
            .node
            .send(test_address(3), minus(real_value, Amount::ONE_COIN), None)
            .expect("paid from the real coin");
        assert_eq!(payment.transaction.spends().len(), 1);
    }

    /// Another's payment to the wallet, still in the pool, is incoming but not spendable:
    /// its payer may spend the same coins elsewhere, or it may never be mined, and a
    /// payment built on it would go with it. The wallet once spent it like its own
    /// change (docs/API.md said it spent only its own).
    #[test]
    fn another_s_unconfirmed_payment_is_incoming_but_not_spendable() {
        let test = TestNode::open(Network::Regtest);
        let funding = test.mine_paying(test_address(9));
        test.mine_until_spendable();
        let foreign = crate::testing::spend_output(
            &funding.transactions[0],
            0,
            &powchain_consensus::testkit::test_key(9),
            test.node.wallet_address(),
        );
        let before = test.node.wallet_balance().expect("the balance reads");
        test.node
            .submit_transaction(foreign.clone())
            .expect("a payment to the wallet");
        let value = foreign.outputs[0].value;

        let balance = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&balance);
        assert_eq!(balance.unconfirmed_incoming, value);
        assert_eq!(balance.unconfirmed_from_others, value);
        assert_eq!(balance.spendable, before.spendable, "not spendable yet");
        assert_eq!(balance.total(), sum([before.total(), value]));

        // More than the wallet's own coins: refused, not built on the payment.
        let error = test
            .node
            .send(
                test_address(3),
                sum([before.spendable, Amount::ONE_COIN]),
                None,
            )
            .expect_err("only the wallet's own coins");
        assert!(error.to_string().contains("insufficient funds"), "{error}");
        // The refusal says what waits for a block.
        assert!(
            error
                .to_string()
                .contains(&format!("another {value} coins others paid this wallet")),
            "{error}"
        );
        assert!(error.is_rejection());

        // Its own change, by contrast, is spendable at once.
        let payment = test.pay_one_coin();
        let after = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&after);
        assert_eq!(after.unconfirmed_from_others, value);
        let change = sum(payment
            .transaction
            .outputs
            .iter()
            .filter(|output| output.address == test.node.wallet_address())
            .map(|output| output.value));
        assert_eq!(
            after.unconfirmed_incoming,
            sum([value, change]),
            "{after:?}"
        );

        // Confirmed, it is spendable like any coin.
        test.mine(true);
        let mined = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&mined);
        assert_eq!(mined.unconfirmed_from_others, Amount::ZERO);
    }

    /// Devnet's difficulty falls to its floor when blocks come this late (ASERT halves the
    /// work per minute late), so its blocks take milliseconds to mine.
    const DEVNET_EASY_GAP_MS: u64 = 10 * 60 * 1000;

    fn sum(amounts: impl IntoIterator<Item = Amount>) -> Amount {
        Amount::checked_sum(amounts).expect("test amounts are small")
    }

    fn minus(left: Amount, right: Amount) -> Amount {
        left.checked_sub(right).expect("no more than there is")
    }

    /// The relations between the buckets that hold whatever the wallet holds: every
    /// confirmed coin is immature, spent by the pool or spendable, and what is spendable
    /// beyond that is the pool's outputs paying the wallet.
    fn check_invariants(balance: &WalletBalance) {
        assert_eq!(
            sum([
                balance.spendable,
                balance.immature,
                balance.unconfirmed_outgoing,
                balance.unconfirmed_from_others
            ]),
            sum([balance.confirmed, balance.unconfirmed_incoming]),
            "{balance:?}"
        );
        assert_eq!(
            balance.total(),
            minus(
                sum([balance.confirmed, balance.unconfirmed_incoming]),
                balance.unconfirmed_outgoing
            ),
            "{balance:?}"
        );
    }

    /// Mines blocks paying the wallet and checks after each that a coinbase counts as
    /// immature exactly until the block `Params::coinbase_maturity` after its own, which
    /// is the next block the wallet could spend it in.
    fn check_coinbase_maturity(network: Network, gap_ms: u64) {
        let test = TestNode::open(network);
        let maturity = test.node.params().coinbase_maturity;
        let mut coinbases: Vec<(BlockHeight, Amount)> = Vec::new();
        let mut saw_immature = false;
        let mut saw_mature = false;
        for _ in 0..maturity + 2 {
            test.clock.advance(gap_ms);
            let block: Block = test.mine(false);
            let height = block.coinbase_height().expect("a coinbase");
            coinbases.push((height, block.transactions[0].outputs[0].value));
            let next_height = test.node.tip().height.next();
            let (immature, mature): (Vec<_>, Vec<_>) = coinbases
                .iter()
                .partition(|(height, _)| next_height.0 < height.0 + maturity);
            saw_immature |= !immature.is_empty();
            saw_mature |= !mature.is_empty();
            let immature = sum(immature.iter().map(|(_, value)| *value));
            let confirmed = sum(coinbases.iter().map(|(_, value)| *value));
            let balance = test.node.wallet_balance().expect("the balance reads");
            assert_eq!(
                balance,
                WalletBalance {
                    confirmed,
                    immature,
                    unconfirmed_incoming: Amount::ZERO,
                    unconfirmed_from_others: Amount::ZERO,
                    unconfirmed_outgoing: Amount::ZERO,
                    spendable: minus(confirmed, immature),
                },
                "at height {}, maturity {maturity}",
                next_height.0 - 1
            );
            check_invariants(&balance);
        }
        assert!(saw_mature);
        // Regtest's maturity of one block leaves nothing immature: a coinbase may be spent
        // in the very next block, the one the balance is for.
        assert_eq!(saw_immature, maturity > 1);
    }

    #[test]
    fn a_regtest_coinbase_is_spendable_in_the_next_block() {
        check_coinbase_maturity(Network::Regtest, 0);
    }

    #[test]
    fn a_devnet_coinbase_is_immature_until_its_maturity() {
        check_coinbase_maturity(Network::Devnet, DEVNET_EASY_GAP_MS);
    }

    /// A block confirming the wallet's pooled payment connects while the balance reads
    /// the coins. Before, the coins were read at the old tip and the pool after the block:
    /// the coins the payment spent counted as outgoing, its change in neither the pool
    /// nor the snapshot, so the balance lost the change for a moment.
    #[test]
    fn a_block_during_the_balance_s_read_is_counted_once() {
        use powchain_consensus::testkit::solve;

        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        test.mine(false);
        let payment = test.pay_one_coin();
        let pending = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&pending);
        assert!(pending.unconfirmed_incoming > Amount::ZERO, "the change");

        // A block of another miner's that confirms it, connected during the read.
        test.clock.advance(test.node.params().target_block_time_ms);
        let mut block = test
            .node
            .block_template(test_address(9), b"test".to_vec(), true)
            .expect("a template");
        assert!(block.transactions.contains(&payment.transaction));
        solve(&mut block.header);
        let mut block = Some(block);
        let mut reads = 0;
        let during = test
            .node
            .wallet_balance_reading(&mut || {
                reads += 1;
                if let Some(block) = block.take() {
                    test.node.submit_block(block).expect("the block connects");
                }
            })
            .expect("the balance reads");
        assert_eq!(reads, 2, "read again at the new tip");
        let after = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&after);
        assert_eq!(during, after);
        assert_eq!(after.total(), pending.total(), "the payment counted once");
        assert_eq!(after.unconfirmed_incoming, Amount::ZERO);
    }

    #[test]
    fn a_pending_payment_moves_its_coins_to_outgoing_and_its_change_to_incoming() {
        let test = TestNode::open(Network::Regtest);
        test.mine_until_spendable();
        test.mine(false);
        let before = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&before);
        assert_eq!(before.total(), before.confirmed);

        let amount = Amount::ONE_COIN;
        let payment = test
            .node
            .send(test_address(3), amount, None)
            .expect("the wallet pays");
        let wallet_address = test.node.wallet_address();
        let change = sum(payment
            .transaction
            .outputs
            .iter()
            .filter(|output| output.address == wallet_address)
            .map(|output| output.value));
        assert!(
            change > Amount::ZERO,
            "a coinbase is worth more than one coin"
        );
        let spent = sum([amount, payment.fee, change]);

        let pending = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&pending);
        assert_eq!(pending.confirmed, before.confirmed, "nothing confirmed yet");
        assert_eq!(pending.immature, before.immature);
        assert_eq!(
            pending.unconfirmed_outgoing, spent,
            "the coins the payment spends"
        );
        assert_eq!(pending.unconfirmed_incoming, change, "the change");
        assert_eq!(
            pending.spendable,
            sum([minus(before.spendable, spent), change]),
            "the spent coins leave, the change may be spent already"
        );
        assert_eq!(
            pending.total(),
            minus(before.total(), sum([amount, payment.fee]))
        );

        let block = test.mine(true);
        assert!(block.transactions.contains(&payment.transaction));
        let coinbase = sum(block.transactions[0]
            .outputs
            .iter()
            .map(|output| output.value));
        let confirmed = test.node.wallet_balance().expect("the balance reads");
        check_invariants(&confirmed);
        assert_eq!(confirmed.unconfirmed_incoming, Amount::ZERO);
        assert_eq!(confirmed.unconfirmed_outgoing, Amount::ZERO);
        assert_eq!(
            confirmed.confirmed,
            sum([pending.total(), coinbase]),
            "what was pending, plus the new coinbase (its fees included)"
        );
        assert_eq!(confirmed.total(), confirmed.confirmed);
        assert_eq!(
            confirmed.spendable,
            minus(confirmed.confirmed, confirmed.immature)
        );
    }
}
