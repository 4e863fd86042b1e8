//! The simulated users: one key drawn from the seed, which every block's coinbase pays,
//! and whose coins they split in two, paying at a set rate through a node chosen at
//! random. Real transactions: signed (BIP-340), validated by the node they reach, relayed
//! and mined like any other.
//!
//! A payment spends the first confirmed, spendable coin of the users' address the node
//! sees that no earlier payment took, and pays two outputs of half its value (less the
//! fee) back to the address: the coins multiply, so there are enough to go round a few
//! blocks after mining starts. A payment with no coin to spend is counted, not made.

use std::collections::HashSet;

use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{SighashCache, address_of, sign_schnorr};
use powchain_consensus::{Address, Amount, Encode, OutPoint, Transaction, TxIn, TxInputs, TxOut};
use powchain_node::Node;
use serde::Serialize;

use crate::random::SimRng;

/// Coins of the users' address read at first when looking for one to spend.
const FIRST_COIN_PAGE: usize = 64;

/// The smallest output a payment makes (smaller coins are paid whole, in one output).
const SMALLEST_SPLIT_UNITS: u64 = 100_000;

/// What the users did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PaymentsReport {
    /// Payments the schedule asked for.
    pub scheduled: u64,
    /// Accepted by the node they were given to.
    pub accepted: u64,
    /// Refused by that node (a coin spent on another branch, say).
    pub refused: u64,
    /// Not made: the node knew no unspent coin of the users yet.
    pub no_coin: u64,
    /// Accepted payments that were in the final main chain.
    pub confirmed: u64,
    /// Accepted payments the run lost: at the end in no node's pool and no node's chain
    /// (a run may end on tied tips), though the coin each spends is unspent on some
    /// node's chain, so nothing refused it. (A payment whose coin a rival branch's
    /// payment spent, or whose coin left with a reorganised block, is not lost: the chain
    /// refuses it.)
    pub lost: u64,
}

/// The users' key and the coins their payments took.
pub(crate) struct Users {
    key: Keypair,
    address: Address,
    taken: HashSet<OutPoint>,
    /// Each accepted payment and the coin it spends.
    made: Vec<(powchain_consensus::Txid, OutPoint)>,
    pub(crate) report: PaymentsReport,
}

impl Users {
    /// The users of a run with `seed`.
    pub(crate) fn new(seed: u64) -> Users {
        let mut rng = SimRng::new(seed ^ 0x05e7_5ca1_ab1e);
        let key = loop {
            let mut secret = [0u8; 32];
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            if let Ok(key) = Keypair::from_secret_bytes(secret) {
                break key;
            }
        };
        Users {
            address: address_of(&key),
            key,
            taken: HashSet::new(),
            made: Vec::new(),
            report: PaymentsReport::default(),
        }
    }

    /// The address coinbases pay.
    pub(crate) fn address(&self) -> Address {
        self.address
    }

    /// Transactions accepted so far, each with the coin it spends.
    pub(crate) fn made(&self) -> &[(powchain_consensus::Txid, OutPoint)] {
        &self.made
    }

    /// Makes one payment through `node`.
    pub(crate) fn pay(&mut self, node: &Node) {
        self.report.scheduled += 1;
        let Some((outpoint, spent)) = self.coin(node) else {
            self.report.no_coin += 1;
            return;
        };
        let Some(transaction) = self.payment(node, outpoint, spent) else {
            self.report.no_coin += 1;
            return;
        };
        let txid = transaction.compute_txid();
        match node.submit_transaction(transaction) {
            Ok(_) => {
                self.taken.insert(outpoint);
                self.made.push((txid, outpoint));
                self.report.accepted += 1;
            }
            Err(_) => {
                // Spent or gone on this node's chain: never offered again.
                self.taken.insert(outpoint);
                self.report.refused += 1;
            }
        }
    }

    /// The first coin of the users `node` holds confirmed and spendable in its next
    /// block that no payment took.
    ///
    /// The address's coins are read in key order a page at a time, each page twice the
    /// last, until one qualifies or none are left. The coins passed over are those taken
    /// by payments still waiting for a block and coinbases not yet mature, so a lookup
    /// costs about a pool's worth of coins, not every payment the run ever made (coins
    /// spent on the node's chain are no longer the address's).
    fn coin(&self, node: &Node) -> Option<(OutPoint, TxOut)> {
        let next_height = node.tip().height.next();
        let snapshot = node.reader().snapshot().ok()?;
        let mut page = FIRST_COIN_PAGE;
        loop {
            let coins = snapshot.address_coins(&self.address, page).ok()?;
            let found = coins.iter().find(|coin| {
                !self.taken.contains(&coin.outpoint)
                    && coin.coin.is_mature_at(next_height, node.params())
            });
            if let Some(coin) = found {
                return Some((coin.outpoint, coin.coin.output));
            }
            if coins.len() < page {
                return None;
            }
            page = page.saturating_mul(2);
        }
    }

    /// A signed payment spending `outpoint` into two halves (one output for a small
    /// coin), less the fee the node's wallet would pay.
    fn payment(&self, node: &Node, outpoint: OutPoint, spent: TxOut) -> Option<Transaction> {
        let fee_rate = node.config().wallet_fee_rate;
        let build = |outputs: usize, fee: Amount| -> Option<Transaction> {
            let available = spent.value.to_units().checked_sub(fee.to_units())?;
            let share = available / outputs as u64;
            let mut values = vec![share; outputs];
            values[0] += available - share * outputs as u64;
            Some(Transaction {
                version: 1,
                inputs: TxInputs::Spends(vec![TxIn {
                    prevout: outpoint,
                    signature: powchain_consensus::Signature([0; 64]),
                }]),
                outputs: values
                    .into_iter()
                    .map(|units| {
                        Amount::from_units(units).ok().map(|value| TxOut {
                            value,
                            address: self.address,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?,
            })
        };
        let outputs = if spent.value.to_units() >= 2 * SMALLEST_SPLIT_UNITS {
            2
        } else {
            1
        };
        let size = build(outputs, Amount::ZERO)?.encode_to_vec().len();
        let mut transaction = build(outputs, fee_rate.fee_for(size)?)?;
        let sighash = SighashCache::new(&transaction, &[spent])
            .ok()?
            .compute_sighash(0)?;
        let signature = sign_schnorr(&self.key, &sighash.0, &[0; 32]);
        if let TxInputs::Spends(inputs) = &mut transaction.inputs {
            inputs[0].signature = signature;
        }
        Some(transaction)
    }
}
