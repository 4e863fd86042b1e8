//! The node's wallet as the chain and the pool see it: balances split into confirmed,
//! immature, incoming and outgoing, the coins a payment may use, and sending.
//!
//! ```text
//!   wallet addresses ──▶ snapshot.address_coins ──▶ mature? spent in the pool? ──▶ buckets
//!   pool outputs paying the wallet ──────────────────────────────────────────────▶ incoming
//!   send ──▶ Wallet::build_payment (those coins) ──▶ pool admission + store ──▶ event
//! ```
//!
//! The wallet lock is always taken before the core lock.

use powchain_consensus::{Address, Amount, FeeRate, Transaction, Txid};
use powchain_wallet::{SpendableCoin, Wallet};

use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::node::{Core, Node, lock};

/// Most unspent outputs per address a wallet query reads.
const MAX_WALLET_COINS_PER_ADDRESS: usize = 100_000;

/// The node wallet's balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalletBalance {
    /// Confirmed coins, mature or not.
    pub confirmed: Amount,
    /// The part of `confirmed` that is coinbase output not yet mature.
    pub immature: Amount,
    /// Pool outputs paying the wallet, not yet confirmed.
    pub unconfirmed_incoming: Amount,
    /// Confirmed coins that pooled transactions spend.
    pub unconfirmed_outgoing: Amount,
    /// What a payment can use now: mature confirmed coins not spent in the pool, plus pool
    /// outputs paying the wallet.
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

    /// Coins the wallet may spend and its balance, read with the core locked.
    fn wallet_coins(
        &self,
        wallet: &Wallet,
        core: &Core,
    ) -> Result<(Vec<SpendableCoin>, WalletBalance), NodeError> {
        let snapshot = self.reader.snapshot()?;
        let next_height = core.chain.tip().height.next();
        let mut balance = WalletBalance::default();
        let mut spendable = Vec::new();
        let add = |total: &mut Amount, value: Amount| {
            *total = total.checked_add(value).unwrap_or(Amount::MAX_MONEY);
        };
        for address in wallet.addresses() {
            for entry in snapshot.address_coins(&address, MAX_WALLET_COINS_PER_ADDRESS)? {
                let value = entry.coin.output.value;
                add(&mut balance.confirmed, value);
                if !entry.coin.is_mature_at(next_height, self.params()) {
                    add(&mut balance.immature, value);
                } else if core.mempool.spender_of(&entry.outpoint).is_some() {
                    add(&mut balance.unconfirmed_outgoing, value);
                } else {
                    add(&mut balance.spendable, value);
                    spendable.push(SpendableCoin {
                        outpoint: entry.outpoint,
                        output: entry.coin.output,
                        confirmed: true,
                    });
                }
            }
        }
        for (outpoint, output) in core.mempool.unspent_pool_outputs() {
            if wallet.owns(&output.address) {
                add(&mut balance.unconfirmed_incoming, output.value);
                add(&mut balance.spendable, output.value);
                spendable.push(SpendableCoin {
                    outpoint,
                    output,
                    confirmed: false,
                });
            }
        }
        Ok((spendable, balance))
    }

    /// The wallet's balance.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if the store cannot be read.
    pub fn wallet_balance(&self) -> Result<WalletBalance, NodeError> {
        let wallet = lock(&self.wallet);
        let core = lock(&self.core);
        Ok(self.wallet_coins(&wallet, &core)?.1)
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
        let mut core = lock(&self.core);
        let (available, _) = self.wallet_coins(&wallet, &core)?;
        let payment = wallet.build_payment(
            &available,
            recipient,
            amount,
            fee_rate.unwrap_or(self.config.wallet_fee_rate),
        )?;
        let accepted = self.accept_and_store(&mut core, payment.transaction.clone(), now)?;
        drop(core);
        drop(wallet);
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
