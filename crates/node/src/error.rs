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
    /// A commit to the pool's store failed: what it held (an acknowledgement's row among
    /// them) was not stored, and the transaction was taken back out of the pool.
    #[error("pool store failed: {detail}")]
    PoolStore {
        /// What failed, in the storage engine's words.
        detail: String,
    },
    /// The pool's store could not be opened and read.
    #[error(
        "{} is damaged ({detail}); it holds only unconfirmed transactions: rename it (to \
         keep it for a look; the node then starts with an empty pool), or start the node \
         with --reindex, which moves it aside but also syncs the chain again",
        path.display()
    )]
    PoolStoreDamaged {
        /// The pool store file.
        path: std::path::PathBuf,
        /// What failed, in the storage engine's words.
        detail: String,
    },
    /// The chain file is missing or empty in a directory that held a chain.
    #[error(
        "{} is {}, but {} from an earlier run is there: the chain was lost. Restore \
         chain.redb from a backup, or start with --reindex to sync the chain again from \
         peers (the wallet is kept)",
        path.display(),
        if *empty { "empty" } else { "missing" },
        found.display()
    )]
    ChainMissing {
        /// The chain file.
        path: std::path::PathBuf,
        /// True if the file exists with no bytes.
        empty: bool,
        /// The file that shows the directory held state.
        found: std::path::PathBuf,
    },
    /// The wallet's key file is missing next to a chain that may pay it.
    #[error(
        "{} is missing, but {} may pay the wallet that is gone. Restore wallet.keys from a \
         backup, or start with --new-wallet to create a new one",
        path.display(),
        chain_here(height)
    )]
    WalletMissing {
        /// The key file.
        path: std::path::PathBuf,
        /// The chain's height; `None` for a chain `--reindex` was about to move aside,
        /// which is judged unread (it may be too damaged to open).
        height: Option<powchain_consensus::BlockHeight>,
    },
    /// A damaged store could not be moved aside.
    #[error("cannot move {} aside: {source}", path.display())]
    MoveAside {
        /// The store file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock: another node (or one started
    /// with `--reindex`, which would move the running node's stores aside), or
    /// `powchain check`, uses it.
    #[error(
        "{} is in use by another process: another node (or `powchain check`) uses this data \
         directory (it holds {}); stop it first, or give this node its own: another \
         HTTP_PORT (`--http-port`; the default directory is data/<network>-<http port>) or \
         `--data-dir`",
        directory.display(),
        lock.display()
    )]
    DataDirInUse {
        /// The data directory.
        directory: std::path::PathBuf,
        /// Its lock file.
        lock: std::path::PathBuf,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The wallet cannot pay with what it may spend now, while others' payments to it wait
    /// in the pool: it spends those once a block confirms them.
    #[error(
        "{source}; another {pending} coins others paid this wallet are still in the pool, \
         spendable once a block confirms them"
    )]
    AwaitingConfirmation {
        /// The wallet's refusal.
        source: WalletError,
        /// What others' pooled payments pay the wallet.
        pending: powchain_consensus::Amount,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// The chain a missing wallet is refused next to, as [`NodeError::WalletMissing`] names it.
fn chain_here(height: &Option<powchain_consensus::BlockHeight>) -> String {
    match height {
        Some(height) => format!("the chain here is {height} blocks high and"),
        None => "the chain here, which --reindex would move aside and sync again,".to_owned(),
    }
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
                    | WalletError::FeeTooHigh { .. }
                    | WalletError::NotOurs { .. }
            ),
            NodeError::AwaitingConfirmation { .. } => true,
            NodeError::PoolStore { .. }
            | NodeError::PoolStoreDamaged { .. }
            | NodeError::ChainMissing { .. }
            | NodeError::WalletMissing { .. }
            | NodeError::MoveAside { .. }
            | NodeError::DataDir { .. }
            | NodeError::DataDirInUse { .. }
            | NodeError::ShuttingDown => false,
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
