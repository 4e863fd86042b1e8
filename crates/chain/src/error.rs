//! `ChainError`: why the chain state refused something, or failed.
//!
//! *Invalid* errors are the sender's fault (ban the peer, answer 4xx); *failed* errors are
//! ours (storage, a damaged data directory): retry or stop.

use std::path::PathBuf;

use powchain_consensus::{BlockHash, ConsensusError, DecodeError};
use thiserror::Error;

/// Why the chain state refused or failed an operation.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The block or header broke a consensus rule.
    #[error("invalid block {hash}: {error} [{}]", error.rule())]
    Invalid {
        /// The block that broke it.
        hash: BlockHash,
        /// The rule.
        error: ConsensusError,
    },
    /// The block is known to be invalid (it, or an ancestor, failed before).
    #[error("block {hash} is known to be invalid (it or an ancestor broke a rule before)")]
    KnownInvalid {
        /// The block.
        hash: BlockHash,
    },
    /// A header whose parent is unknown.
    #[error("header {hash} does not connect: parent {parent} is unknown")]
    UnknownParent {
        /// The header's hash.
        hash: BlockHash,
        /// The missing parent.
        parent: BlockHash,
    },
    /// A header in a batch that does not build on the header before it.
    #[error(
        "header {hash} does not build on the header before it ({expected}) [headers-not-continuous]"
    )]
    NotContinuous {
        /// The header's hash.
        hash: BlockHash,
        /// The hash it should have built on.
        expected: BlockHash,
    },
    /// The data directory belongs to another network.
    #[error("data directory {path} holds a {found} chain, not {expected}; use another --data-dir")]
    ForeignDataDir {
        /// The directory.
        path: PathBuf,
        /// What this node runs.
        expected: String,
        /// What the directory holds.
        found: String,
    },
    /// The stored data is not what this code wrote.
    #[error("chain data is damaged: {0}")]
    Corrupt(String),
    /// Stored bytes failed to decode.
    #[error("chain data is damaged: {what} does not decode: {source}")]
    CorruptRow {
        /// What was read.
        what: &'static str,
        /// The decoding error.
        source: DecodeError,
    },
    /// The storage engine failed.
    #[error("storage failed: {0}")]
    Storage(#[from] redb::Error),
    /// The store file could not be opened and read: the storage engine failed or panicked
    /// on it, or what it holds is not what this code wrote.
    #[error(
        "{} is damaged ({detail}); restore it from a backup, or start the node once with \
         --reindex, which moves it aside and syncs the chain again from peers (the wallet \
         is kept)",
        path.display()
    )]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What failed, in the storage engine's words where it spoke.
        detail: String,
    },
    /// Another process holds the store open.
    #[error(
        "{} is in use by another process: another node (or `powchain check`) uses this data \
         directory; stop it first, or give this node its own: another HTTP_PORT \
         (`--http-port`; the default directory is data/<network>-<http port>) or \
         `--data-dir`",
        path.display()
    )]
    InUse {
        /// The store file.
        path: PathBuf,
    },
}

impl ChainError {
    /// True if the error is the fault of whoever sent the data.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            ChainError::Invalid { .. }
                | ChainError::KnownInvalid { .. }
                | ChainError::NotContinuous { .. }
        )
    }

    /// True if the header's only fault is a time further ahead than this node's clock
    /// allows: the sender's clock may simply run ahead of ours, and the same header becomes
    /// valid a few seconds later. Nothing of it is stored, and its sender is not punished.
    pub fn is_premature(&self) -> bool {
        matches!(
            self,
            ChainError::Invalid {
                error: ConsensusError::TimeTooNew { .. },
                ..
            }
        )
    }

    /// The consensus rule name, if a rule was broken.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            ChainError::Invalid { error, .. } => Some(error.rule()),
            ChainError::KnownInvalid { .. } => Some("known-invalid"),
            ChainError::NotContinuous { .. } => Some("headers-not-continuous"),
            _ => None,
        }
    }
}

impl ChainError {
    /// What an error met while opening the store at `path` means to its user: a lock held
    /// by another process, or a damaged file (named, with what to do); other errors (a
    /// foreign network's store) stay as they are.
    pub(crate) fn at_open(self, path: &std::path::Path) -> ChainError {
        let path = path.to_path_buf();
        match self {
            ChainError::Storage(redb::Error::DatabaseAlreadyOpen) => ChainError::InUse { path },
            ChainError::Storage(error) => ChainError::Damaged {
                path,
                detail: error.to_string(),
            },
            ChainError::Corrupt(detail) => ChainError::Damaged { path, detail },
            error @ ChainError::CorruptRow { .. } => ChainError::Damaged {
                path,
                detail: error.to_string(),
            },
            other => other,
        }
    }
}

/// The message of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

macro_rules! storage_error {
    ($($source:ty),*) => {
        $(impl From<$source> for ChainError {
            fn from(error: $source) -> ChainError {
                ChainError::Storage(error.into())
            }
        })*
    };
}

storage_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Shorthand for decoding a stored row.
pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(DecodeError) -> ChainError {
    move |source| ChainError::CorruptRow { what, source }
}
