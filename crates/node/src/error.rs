//! `NodeError`: every way a node operation can fail, kept apart by whose fault it is.

use powchain_chain::ChainError;
use powchain_mempool::MempoolError;
use powchain_wallet::WalletError;
use thiserror::Error;

/// Why a node operation failed.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The chain state refused the block or failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The pool refused the transaction.
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    /// The wallet could not build the payment or failed to store keys.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The pool's store (`mempool.redb`) failed.
    #[error("pool store failed: {0}")]
    PoolStore(#[source] redb::Error),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl NodeError {
    /// True if the error is the caller's fault (invalid data, not enough coins, ...).
    pub fn is_rejection(&self) -> bool {
        match self {
            NodeError::Chain(error) => {
                error.is_invalid() || matches!(error, ChainError::UnknownParent { .. })
            }
            NodeError::Mempool(_) => true,
            NodeError::Wallet(error) => matches!(
                error,
                WalletError::ZeroAmount
                    | WalletError::InsufficientFunds { .. }
                    | WalletError::AmountOverflow
                    | WalletError::TooManyInputs { .. }
                    | WalletError::NotOurs { .. }
            ),
            NodeError::PoolStore(_) | NodeError::DataDir { .. } | NodeError::ShuttingDown => false,
        }
    }

    /// True for a header or block whose time is ahead of this node's clock
    /// ([`ChainError::is_premature`]): ignored, not punished.
    pub fn is_premature(&self) -> bool {
        matches!(self, NodeError::Chain(error) if error.is_premature())
    }

    /// The consensus or policy rule broken, if any.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            NodeError::Chain(error) => error.rule(),
            NodeError::Mempool(error) => Some(error.rule()),
            _ => None,
        }
    }
}
