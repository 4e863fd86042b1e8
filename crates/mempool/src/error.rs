//! `MempoolError`: why the pool refused a transaction.
//!
//! Two kinds of refusal share the enum. [`MempoolError::Invalid`] means the transaction
//! breaks a consensus rule against the chain plus the pool (though a missing input may
//! only mean its parent has not arrived yet). Every other variant is this node's policy:
//! the transaction may be valid, the pool just does not keep it (a double spend of a
//! pooled transaction, too low a fee rate, a full pool).

use powchain_consensus::{BlockHeight, ConsensusError, FeeRate, OutPoint, Txid};
use thiserror::Error;

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    /// The pool already holds this transaction.
    #[error("transaction {txid} is already in the pool")]
    AlreadyInPool {
        /// Its txid.
        txid: Txid,
    },
    /// The transaction breaks a consensus rule when checked against the chain's coins and
    /// the pool's outputs.
    #[error("invalid transaction: {0}")]
    Invalid(#[from] ConsensusError),
    /// An input is already spent by a pooled transaction. The pool does no replacement:
    /// the first spend seen stays.
    #[error("input {outpoint} is already spent by pooled transaction {spent_by}")]
    Conflict {
        /// The output both spend.
        outpoint: OutPoint,
        /// The pooled transaction that spends it.
        spent_by: Txid,
    },
    /// A pooled transaction already spends an output of this one, which it could only
    /// have found in the chain: the pool still holds transactions from before a reorg
    /// that were not re-admitted through `Mempool::take_all`.
    #[error("output {outpoint} is already spent by pooled transaction {spent_by}")]
    OutputAlreadySpentInPool {
        /// The output of the refused transaction.
        outpoint: OutPoint,
        /// The pooled transaction that spends it.
        spent_by: Txid,
    },
    /// The fee rate is below the pool's minimum.
    #[error("fee rate {got} is below the minimum {min}")]
    FeeRateTooLow {
        /// The transaction's fee rate.
        got: FeeRate,
        /// The pool's minimum.
        min: FeeRate,
    },
    /// The transaction would have too many unconfirmed ancestors in the pool.
    #[error("transaction would have {count} pooled ancestors counting itself, the limit is {max}")]
    TooManyAncestors {
        /// Its pooled ancestors plus itself.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A pooled ancestor of the transaction would have too many pooled descendants.
    #[error(
        "pooled transaction {ancestor} would have {count} pooled descendants counting itself, the limit is {max}"
    )]
    TooManyDescendants {
        /// The ancestor at its limit.
        ancestor: Txid,
        /// Its pooled descendants plus itself, with the transaction.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The pool is full and the transaction does not pay more than what would have to be
    /// evicted to make room for it, by the pool's minimum fee rate.
    #[error(
        "pool is full: fee rate {fee_rate} does not beat {lowest}, the lowest package that would have to go, by the pool's minimum fee rate (about {needed} is needed)"
    )]
    PoolFull {
        /// The transaction's fee rate.
        fee_rate: FeeRate,
        /// The descendant-package fee rate of the cheapest package that would have to be
        /// evicted.
        lowest: FeeRate,
        /// `lowest` plus the pool's minimum fee rate: about what a newcomer must pay.
        needed: FeeRate,
    },
    /// The transaction alone is larger than the pool's whole byte budget.
    #[error("transaction is {size} bytes, larger than the pool's {max} bytes")]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The pool's byte budget.
        max: usize,
    },
}

impl MempoolError {
    /// True if the transaction spends an output that neither the chain nor the pool holds:
    /// its parent may still arrive, so it is not (yet) invalid.
    pub fn is_missing_input(&self) -> bool {
        matches!(
            self,
            MempoolError::Invalid(ConsensusError::MissingInput { .. })
        )
    }

    /// The output a transaction lacked: the first of its inputs that neither the chain nor
    /// the pool holds, if that is why it was refused.
    pub fn missing_input(&self) -> Option<OutPoint> {
        match self {
            MempoolError::Invalid(ConsensusError::MissingInput { outpoint }) => Some(*outpoint),
            _ => None,
        }
    }

    /// The first height at which a block may spend the coinbase output the transaction
    /// spends too early, if that is why it was refused.
    pub fn mature_at(&self) -> Option<BlockHeight> {
        match self {
            MempoolError::Invalid(error) => match error.root_cause() {
                ConsensusError::ImmatureCoinbaseSpend {
                    created, maturity, ..
                } => Some(BlockHeight(created.0.saturating_add(*maturity))),
                _ => None,
            },
            _ => None,
        }
    }

    /// The coinbase output the transaction spends before it matures at this node's tip,
    /// if that is why it was refused ([`MempoolError::mature_at`] says when it matures).
    pub fn immature_input(&self) -> Option<OutPoint> {
        match self {
            MempoolError::Invalid(error) => match error.root_cause() {
                ConsensusError::ImmatureCoinbaseSpend { outpoint, .. } => Some(*outpoint),
                _ => None,
            },
            _ => None,
        }
    }

    /// The output a refused transaction waits for, if something arriving later may let it
    /// in: its missing input (a parent to come), or the coinbase it spends if that matures
    /// with the next block here (its sender is that block ahead). A spend further from
    /// maturity waits for nothing: nobody honest relays it, and one held would be tried at
    /// every block until then (the coin it waits for already exists).
    pub fn awaited_input(&self) -> Option<OutPoint> {
        if let Some(missing) = self.missing_input() {
            return Some(missing);
        }
        match self {
            MempoolError::Invalid(error) => match error.root_cause() {
                ConsensusError::ImmatureCoinbaseSpend {
                    outpoint,
                    created,
                    spend_height,
                    maturity,
                } if created.0.saturating_add(*maturity) == spend_height.0.saturating_add(1) => {
                    Some(*outpoint)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// True if the transaction breaks a consensus rule whatever else arrives later (the
    /// sender's fault); false for policy refusals, for a missing parent, and for a spend of
    /// a coinbase not mature at this node's tip ([`MempoolError::mature_at`]): a later
    /// block lets that one in, and its sender may be that block ahead (devnet's coinbases
    /// mature after 10 blocks, and a payment is relayed the moment the block that makes
    /// its coin mature connects there). Bitcoin Core does not punish a premature spend
    /// either.
    pub fn is_invalid(&self) -> bool {
        matches!(self, MempoolError::Invalid(_))
            && !self.is_missing_input()
            && self.mature_at().is_none()
    }

    /// A short stable name of the reason, for logs, peer scoring and API errors; for
    /// [`MempoolError::Invalid`], the consensus rule's own name.
    pub fn rule(&self) -> &'static str {
        match self {
            MempoolError::AlreadyInPool { .. } => "already-in-pool",
            MempoolError::Invalid(error) => error.rule(),
            MempoolError::Conflict { .. } => "conflict",
            MempoolError::OutputAlreadySpentInPool { .. } => "output-already-spent-in-pool",
            MempoolError::FeeRateTooLow { .. } => "fee-rate-too-low",
            MempoolError::TooManyAncestors { .. } => "too-many-ancestors",
            MempoolError::TooManyDescendants { .. } => "too-many-descendants",
            MempoolError::PoolFull { .. } => "pool-full",
            MempoolError::TooLarge { .. } => "too-large-for-pool",
        }
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::{BlockHeight, ConsensusError, OutPoint, Txid};

    use super::MempoolError;

    #[test]
    fn a_spend_of_a_coinbase_not_mature_here_is_not_invalid_for_good() {
        let outpoint = OutPoint {
            txid: Txid([1; 32]),
            vout: 0,
        };
        let premature = MempoolError::Invalid(ConsensusError::ImmatureCoinbaseSpend {
            outpoint,
            created: BlockHeight(5),
            spend_height: BlockHeight(14),
            maturity: 10,
        });
        assert_eq!(premature.mature_at(), Some(BlockHeight(15)));
        assert_eq!(
            premature.awaited_input(),
            Some(outpoint),
            "a block early: held"
        );
        let far = MempoolError::Invalid(ConsensusError::ImmatureCoinbaseSpend {
            outpoint,
            created: BlockHeight(5),
            spend_height: BlockHeight(12),
            maturity: 10,
        });
        assert!(!far.is_invalid());
        assert_eq!(far.awaited_input(), None, "three blocks early: not held");
        assert!(!premature.is_invalid(), "a later block lets it in: no ban");
        let missing = MempoolError::Invalid(ConsensusError::MissingInput { outpoint });
        assert!(!missing.is_invalid(), "its parent may come");
        assert_eq!(missing.awaited_input(), Some(outpoint));
        let forged = MempoolError::Invalid(ConsensusError::BadSignature { input_index: 0 });
        assert!(forged.is_invalid());
        assert_eq!(forged.awaited_input(), None);
    }
}
