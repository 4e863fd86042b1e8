//! The faucet: test coins from the node's own wallet, on the networks that have one.
//!
//! ```text
//!   request (address, amount) ──network has a faucet?──no──▶ NoFaucet
//!        │ yes                 ──above the cap?──yes──▶ AboveCap
//!        ▼
//!   Node::send ──insufficient funds──▶ regtest: mine one block to the wallet, try again
//!        │                                       (at most maturity + MAX_EXTRA_BLOCKS)
//!        │                              devnet:  Empty ("start the node with --mine")
//!        ▼
//!   SentPayment (in the pool)
//! ```
//!
//! Whether a network has a faucet is an exhaustive `match`: a new network must decide.
//! The faucet spends the node's wallet, so the API guards it like every other spending
//! endpoint (see `docs/API.md`).

use powchain_consensus::{Address, Amount, Network};
use powchain_wallet::WalletError;

use crate::error::NodeError;
use crate::node::Node;
use crate::wallet_view::SentPayment;

/// The most coins one faucet request may ask for.
pub const MAX_FAUCET_COINS: u64 = 10;

/// Blocks a regtest faucet mines beyond the coinbase maturity before it gives up (only a
/// chain whose subsidy has halved away leaves it empty that long).
const MAX_EXTRA_BLOCKS: u64 = 10;

/// How a network's faucet pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaucetRules {
    /// The most one request may ask for.
    pub max_per_request: Amount,
    /// True if an empty faucet mines blocks to the node's wallet until it can pay (blocks
    /// are instant there).
    pub mines_when_empty: bool,
}

impl FaucetRules {
    /// The faucet of `network`, if it has one: devnet and regtest, whose coins are worth
    /// nothing.
    pub fn of(network: Network) -> Option<FaucetRules> {
        let max_per_request = Amount::from_coins(MAX_FAUCET_COINS)?;
        match network {
            Network::Devnet => Some(FaucetRules {
                max_per_request,
                mines_when_empty: false,
            }),
            Network::Regtest => Some(FaucetRules {
                max_per_request,
                mines_when_empty: true,
            }),
        }
    }
}

/// Why the faucet did not pay.
#[derive(Debug, thiserror::Error)]
pub enum FaucetError {
    /// The network has no faucet.
    #[error("there is no faucet on {0}: coins there are mined or bought, not given away")]
    NoFaucet(Network),
    /// Nothing, or more than the cap, was asked for.
    #[error("the faucet gives more than 0 and at most {max} coins per request, not {asked}")]
    OutOfRange {
        /// The amount asked for.
        asked: Amount,
        /// The cap.
        max: Amount,
    },
    /// The wallet cannot pay and the faucet does not mine.
    #[error(
        "the faucet is empty: the node's wallet can spend {available} coins, the payment needs \
         {needed} (fee included); {hint}"
    )]
    Empty {
        /// What the wallet can spend.
        available: Amount,
        /// The amount plus the fee.
        needed: Amount,
        /// What to do about it.
        hint: &'static str,
    },
    /// The payment failed for another reason.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl Node {
    /// Pays `amount` to `recipient` from the wallet, if this network has a faucet and the
    /// amount is within its cap; on regtest mines blocks to the wallet first when it cannot
    /// pay. The payment is in the pool when this returns.
    ///
    /// # Errors
    /// [`FaucetError`] says why nothing was paid.
    pub fn faucet_pay(
        &self,
        recipient: Address,
        amount: Amount,
    ) -> Result<SentPayment, FaucetError> {
        let network = self.params().network;
        let rules = FaucetRules::of(network).ok_or(FaucetError::NoFaucet(network))?;
        if amount == Amount::ZERO || amount > rules.max_per_request {
            return Err(FaucetError::OutOfRange {
                asked: amount,
                max: rules.max_per_request,
            });
        }
        let max_blocks = self
            .params()
            .coinbase_maturity
            .saturating_add(MAX_EXTRA_BLOCKS);
        let mut mined = 0u64;
        loop {
            match self.send(recipient, amount, None) {
                Ok(payment) => return Ok(payment),
                Err(
                    NodeError::Wallet(WalletError::InsufficientFunds { needed, available })
                    | NodeError::AwaitingConfirmation {
                        source: WalletError::InsufficientFunds { needed, available },
                        ..
                    },
                ) => {
                    if !rules.mines_when_empty || mined >= max_blocks {
                        let hint = if rules.mines_when_empty {
                            "mining more blocks did not fill it"
                        } else if self.is_mining() {
                            "the node is mining: wait for its blocks to mature"
                        } else {
                            "start the node with --mine"
                        };
                        return Err(FaucetError::Empty {
                            available,
                            needed,
                            hint,
                        });
                    }
                    self.mine_one(b"faucet".to_vec(), false)?;
                    mined += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::testkit::test_address;
    use powchain_consensus::{Amount, Network};

    use super::{FaucetError, FaucetRules, MAX_FAUCET_COINS};
    use crate::testing::TestNode;

    #[test]
    fn every_network_has_a_capped_faucet_and_only_regtest_mines_for_it() {
        for network in Network::ALL {
            let rules = FaucetRules::of(network).expect("devnet and regtest have a faucet");
            assert_eq!(
                rules.max_per_request,
                Amount::from_coins(MAX_FAUCET_COINS).expect("in range")
            );
            assert_eq!(rules.mines_when_empty, network == Network::Regtest);
        }
    }

    #[test]
    fn an_empty_regtest_faucet_mines_until_it_can_pay() {
        let test = TestNode::open(Network::Regtest);
        assert_eq!(test.node.tip().height.0, 0);
        let amount = Amount::from_coins(MAX_FAUCET_COINS).expect("in range");
        let payment = test
            .node
            .faucet_pay(test_address(7), amount)
            .expect("the faucet pays");
        assert!(test.node.tip().height.0 >= 1, "it mined");
        assert!(
            payment
                .transaction
                .outputs
                .iter()
                .any(|output| output.address == test_address(7) && output.value == amount)
        );
    }

    #[test]
    fn an_empty_devnet_faucet_says_to_mine_and_the_cap_holds() {
        let test = TestNode::open(Network::Devnet);
        let refused = test
            .node
            .faucet_pay(test_address(7), Amount::ONE_COIN)
            .expect_err("nothing to give");
        assert!(matches!(refused, FaucetError::Empty { .. }), "{refused:?}");
        assert!(refused.to_string().contains("--mine"), "{refused}");
        assert_eq!(test.node.tip().height.0, 0, "devnet mines nothing for it");
        let over = Amount::from_coins(MAX_FAUCET_COINS + 1).expect("in range");
        for asked in [over, Amount::ZERO] {
            let refused = test
                .node
                .faucet_pay(test_address(7), asked)
                .expect_err("out of range");
            assert!(
                matches!(refused, FaucetError::OutOfRange { .. }),
                "{refused:?}"
            );
        }
    }
}
