//! `ConsensusError`: the exact rule a header, block or transaction broke.
//!
//! Every variant carries the values that failed (got / expected), and [`ConsensusError::rule`]
//! gives a short stable name for logs, peer bans and HTTP errors.

use thiserror::Error;

use crate::amount::Amount;
use crate::hash::{BlockHash, MerkleRoot, Txid};
use crate::target::CompactTarget;
use crate::transaction::{BlockHeight, OutPoint};

/// A consensus rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConsensusError {
    // ---- headers ----
    /// `bits` differ from what the difficulty rule demands.
    #[error("bits {got} differ from the required {expected}")]
    BadBits {
        /// The header's bits.
        got: CompactTarget,
        /// What the difficulty rule demands.
        expected: CompactTarget,
    },
    /// The hash does not meet the target.
    #[error("block hash {hash} does not meet target bits {bits}")]
    BadProofOfWork {
        /// The header's hash.
        hash: BlockHash,
        /// Its bits.
        bits: CompactTarget,
    },
    /// The time is at or below the median of the previous 11 blocks.
    #[error("block time {time_ms} ms is not after the median time past {median_time_past_ms} ms")]
    TimeTooOld {
        /// The header's time.
        time_ms: u64,
        /// The median of the previous 11 block times.
        median_time_past_ms: u64,
    },
    /// The time is too far past the validating node's clock.
    #[error(
        "block time {time_ms} ms is more than the allowed drift ahead of now (latest allowed {max_ms} ms)"
    )]
    TimeTooNew {
        /// The header's time.
        time_ms: u64,
        /// The latest time accepted now.
        max_ms: u64,
    },

    // ---- blocks ----
    /// A block with no transactions.
    #[error("block has no transactions")]
    NoTransactions,
    /// The first transaction is not a coinbase.
    #[error("first transaction is not a coinbase")]
    FirstNotCoinbase,
    /// A coinbase after the first position.
    #[error("transaction {index} is a second coinbase")]
    ExtraCoinbase {
        /// Its position.
        index: usize,
    },
    /// The coinbase claims another height.
    #[error("coinbase commits to height {got}, block is at height {expected}")]
    CoinbaseHeightMismatch {
        /// The height in the coinbase.
        got: BlockHeight,
        /// The block's height.
        expected: BlockHeight,
    },
    /// The coinbase note is too long.
    #[error("coinbase data is {length} bytes, the limit is {max}")]
    CoinbaseDataTooLong {
        /// Its length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The coinbase pays more than subsidy plus fees.
    #[error("coinbase pays {paid} units, subsidy plus fees allow {allowed}")]
    CoinbaseOverpays {
        /// What it pays.
        paid: Amount,
        /// Subsidy plus fees.
        allowed: Amount,
    },
    /// The header's Merkle root does not match the transactions.
    #[error("merkle root {header} does not match the transactions' root {computed}")]
    BadMerkleRoot {
        /// The header's root.
        header: MerkleRoot,
        /// The root of the transactions.
        computed: MerkleRoot,
    },
    /// The encoded block is too large.
    #[error("block is {size} bytes, the limit is {max}")]
    BlockTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The same transaction appears twice.
    #[error("transaction {txid} appears twice in the block")]
    DuplicateTransaction {
        /// The repeated txid.
        txid: Txid,
    },
    /// Two transactions in the block spend the same output.
    #[error("output {outpoint} is spent twice in the block")]
    DoubleSpendInBlock {
        /// The output.
        outpoint: OutPoint,
    },
    /// A transaction of the block broke a rule.
    #[error("transaction {index} ({txid}): {error}")]
    InTransaction {
        /// Position in the block.
        index: usize,
        /// Its txid.
        txid: Txid,
        /// The rule it broke.
        error: Box<ConsensusError>,
    },

    // ---- transactions, without context ----
    /// A non-coinbase transaction with no inputs.
    #[error("transaction has no inputs")]
    NoInputs,
    /// A non-coinbase transaction with no outputs.
    #[error("transaction has no outputs")]
    NoOutputs,
    /// The encoded transaction is too large.
    #[error("transaction is {size} bytes, the limit is {max}")]
    TransactionTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An output pays nothing.
    #[error("output {vout} has zero value")]
    ZeroValueOutput {
        /// Its index.
        vout: usize,
    },
    /// The outputs sum past the money supply.
    #[error("output values sum past the maximum money supply")]
    OutputTotalTooLarge,
    /// An output is spent twice by one transaction.
    #[error("input {outpoint} is spent twice in one transaction")]
    DuplicateInput {
        /// The output.
        outpoint: OutPoint,
    },
    /// A coinbase outside a block's first position (for example, sent to the pool).
    #[error("a coinbase transaction is only valid as the first transaction of a block")]
    UnexpectedCoinbase,

    // ---- transactions, against the UTXO set ----
    /// The spent output does not exist or is already spent.
    #[error("input {outpoint} spends an output that does not exist or is already spent")]
    MissingInput {
        /// The output.
        outpoint: OutPoint,
    },
    /// A coinbase output spent before it matured.
    #[error(
        "input {outpoint} spends a coinbase from height {created} at height {spend_height}; it matures after {maturity} blocks"
    )]
    ImmatureCoinbaseSpend {
        /// The output.
        outpoint: OutPoint,
        /// Height of the coinbase.
        created: BlockHeight,
        /// Height of the spending block.
        spend_height: BlockHeight,
        /// Blocks a coinbase must wait.
        maturity: u64,
    },
    /// The outputs pay more than the inputs hold.
    #[error("outputs pay {outputs} coins but inputs hold only {inputs} coins")]
    InputsBelowOutputs {
        /// Sum of inputs.
        inputs: Amount,
        /// Sum of outputs.
        outputs: Amount,
    },
    /// The inputs sum past the money supply (only possible from a corrupt UTXO view).
    #[error("input values sum past the maximum money supply")]
    InputTotalTooLarge,
    /// A signature does not verify.
    #[error("input {input_index} has an invalid signature")]
    BadSignature {
        /// The input's position.
        input_index: usize,
    },
}

impl ConsensusError {
    /// A short stable name of the rule, for logs, bans and API errors.
    pub fn rule(&self) -> &'static str {
        match self {
            ConsensusError::BadBits { .. } => "bad-bits",
            ConsensusError::BadProofOfWork { .. } => "bad-proof-of-work",
            ConsensusError::TimeTooOld { .. } => "time-too-old",
            ConsensusError::TimeTooNew { .. } => "time-too-new",
            ConsensusError::NoTransactions => "no-transactions",
            ConsensusError::FirstNotCoinbase => "first-not-coinbase",
            ConsensusError::ExtraCoinbase { .. } => "extra-coinbase",
            ConsensusError::CoinbaseHeightMismatch { .. } => "coinbase-height-mismatch",
            ConsensusError::CoinbaseDataTooLong { .. } => "coinbase-data-too-long",
            ConsensusError::CoinbaseOverpays { .. } => "coinbase-overpays",
            ConsensusError::BadMerkleRoot { .. } => "bad-merkle-root",
            ConsensusError::BlockTooLarge { .. } => "block-too-large",
            ConsensusError::DuplicateTransaction { .. } => "duplicate-transaction",
            ConsensusError::DoubleSpendInBlock { .. } => "double-spend-in-block",
            ConsensusError::InTransaction { error, .. } => error.rule(),
            ConsensusError::NoInputs => "no-inputs",
            ConsensusError::NoOutputs => "no-outputs",
            ConsensusError::TransactionTooLarge { .. } => "transaction-too-large",
            ConsensusError::ZeroValueOutput { .. } => "zero-value-output",
            ConsensusError::OutputTotalTooLarge => "output-total-too-large",
            ConsensusError::DuplicateInput { .. } => "duplicate-input",
            ConsensusError::UnexpectedCoinbase => "unexpected-coinbase",
            ConsensusError::MissingInput { .. } => "missing-input",
            ConsensusError::ImmatureCoinbaseSpend { .. } => "immature-coinbase-spend",
            ConsensusError::InputsBelowOutputs { .. } => "inputs-below-outputs",
            ConsensusError::InputTotalTooLarge => "input-total-too-large",
            ConsensusError::BadSignature { .. } => "bad-signature",
        }
    }

    /// The innermost error: the transaction's rule for [`ConsensusError::InTransaction`].
    pub fn root_cause(&self) -> &ConsensusError {
        match self {
            ConsensusError::InTransaction { error, .. } => error.root_cause(),
            other => other,
        }
    }
}
