//! `WalletError`: why the wallet refused a request, or failed.
//!
//! *Refused* errors are the caller's to fix (a zero amount, too little money, a key file of
//! another network); *failed* errors are ours (the disk, the OS random source). A damaged
//! key file is its own case: coins may depend on the keys in it, so the wallet stops and
//! says so rather than guess or start afresh.
//!
//! No variant carries secret key material or a passphrase: errors are logged and shown to
//! users.

use std::io;
use std::path::PathBuf;

use powchain_consensus::signature::SighashError;
use powchain_consensus::{Address, Amount, Network};
use thiserror::Error;

/// Why a wallet operation was refused or failed.
#[derive(Debug, Error)]
pub enum WalletError {
    /// Reading or writing the key file (or its directory) failed.
    #[error("wallet key file {path}: {source}")]
    Io {
        /// The file or directory that could not be read or written.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The key file exists but is not a key file this code wrote. It is left untouched.
    #[error(
        "wallet key file {path} is damaged ({reason}); it was left untouched: restore it from a \
         backup, or move it away to start a new wallet (coins paid to its keys would be lost)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, without any key material.
        reason: String,
    },
    /// The key file belongs to another network.
    #[error(
        "wallet key file {path} holds {found} keys, this node runs {expected}; use another --data-dir"
    )]
    WrongNetwork {
        /// The file.
        path: PathBuf,
        /// The network the file names.
        found: Network,
        /// The network this node runs.
        expected: Network,
    },
    /// The key file is encrypted and no passphrase was given. It is left untouched.
    #[error(
        "wallet key file {path} is encrypted: give the node its passphrase with \
         --wallet-passphrase-file <file> (or WALLET_PASSPHRASE_FILE)"
    )]
    PassphraseRequired {
        /// The file.
        path: PathBuf,
    },
    /// The passphrase does not open the encrypted key file. It is left untouched.
    #[error(
        "the passphrase does not open wallet key file {path}: the passphrase is wrong (or the \
         encrypted keys were altered); the file was left untouched"
    )]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// The passphrase file could not be read.
    #[error("cannot read the wallet passphrase file {path}: {source}")]
    PassphraseFile {
        /// The passphrase file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The passphrase file holds nothing (once one final line end is dropped).
    #[error("the wallet passphrase file {path} is empty; an empty passphrase protects nothing")]
    EmptyPassphrase {
        /// The passphrase file.
        path: PathBuf,
    },
    /// Deriving the key or encrypting failed (Argon2id out of memory, parameters out of range).
    #[error("the wallet's encryption failed: {reason}")]
    Cipher {
        /// What failed, without any secret.
        reason: String,
    },
    /// The operating system's random source failed, so no key or signature could be made.
    #[error("the operating system's random source failed: {source}")]
    Randomness {
        /// What getrandom reported.
        source: getrandom::Error,
    },
    /// A payment of nothing was asked for (consensus forbids zero-value outputs).
    #[error("the amount to send must be above zero")]
    ZeroAmount,
    /// The wallet's coins do not cover the amount plus the fee.
    #[error(
        "insufficient funds: the payment needs {needed} coins (amount plus fee), the wallet's \
         spendable coins hold {available}"
    )]
    InsufficientFunds {
        /// The amount plus the fee of a transaction spending every coin the wallet was given.
        needed: Amount,
        /// The sum of those coins.
        available: Amount,
    },
    /// A sum (amount plus fee, or of the coins given) leaves the money range.
    #[error("amount overflow: the sum leaves the money range of 21 million coins")]
    AmountOverflow,
    /// The money is there, but only in more coins than one transaction can spend.
    #[error(
        "the payment needs more than {max_inputs} coins, the most one transaction can spend; \
         send a smaller amount to yourself first to merge coins"
    )]
    TooManyInputs {
        /// The most inputs a payment transaction can have within the size limit.
        max_inputs: usize,
    },
    /// The payment would pay more in fees than the wallet ever pays for one
    /// ([`crate::max_payment_fee`]): most likely a fee rate mistaken for a fee.
    #[error(
        "the payment would pay a fee of {fee} coins, above the most the wallet pays ({max} \
         coins); a fee rate is in units per byte"
    )]
    FeeTooHigh {
        /// The fee it would pay.
        fee: Amount,
        /// The most the wallet pays.
        max: Amount,
    },
    /// A spent output pays an address the wallet holds no key for.
    #[error("the wallet holds no key for address {address:?}")]
    NotOurs {
        /// The address.
        address: Address,
    },
    /// The spent outputs given do not line up with the transaction's inputs.
    #[error(transparent)]
    Sighash(#[from] SighashError),
}
