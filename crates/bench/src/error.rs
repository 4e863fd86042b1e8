//! `BenchError`: why a measurement could not be made.

use thiserror::Error;

/// Why the suite stopped.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The chain store failed or refused a block the suite built (a bug in the suite).
    #[error("chain: {0}")]
    Chain(#[from] powchain_chain::ChainError),
    /// The node core failed or refused a transaction the suite built.
    #[error("node: {0}")]
    Node(#[from] powchain_node::NodeError),
    /// A file, socket or child process failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A node process or HTTP answer was not what the suite expected.
    #[error("{0}")]
    Failed(String),
}

impl From<redb::Error> for BenchError {
    fn from(error: redb::Error) -> BenchError {
        BenchError::Failed(format!("redb: {error}"))
    }
}

macro_rules! redb_error {
    ($($source:ty),*) => {
        $(impl From<$source> for BenchError {
            fn from(error: $source) -> BenchError {
                BenchError::from(redb::Error::from(error))
            }
        })*
    };
}

redb_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Shorthand for a failed expectation.
pub(crate) fn failed(message: impl Into<String>) -> BenchError {
    BenchError::Failed(message.into())
}
