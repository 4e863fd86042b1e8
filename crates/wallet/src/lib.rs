//! powchain's wallet: the node's keys, kept in a key file in its data directory, and the
//! payments they sign.
//!
//! ```text
//!   <data-dir>/wallet.keys ◀──atomic write── Wallet ──▶ default address (mining, change,
//!   (plaintext v1, or v2:  ──read at start──▶  │          GET /public-key)
//!    sealed with a Passphrase: Argon2id + XChaCha20-Poly1305)
//!                                              │
//!   spendable coins (from the node's UTXO set) ─┴─▶ build_payment
//!       ──select_coins (confirmed first, largest first, exact fee)──▶ sign (BIP-340)
//!       ──▶ Payment { transaction, fee, change, spent } ──▶ mempool
//! ```
//!
//! Map of the modules:
//! - [`wallet`]: [`Wallet`], its keys, addresses and signing.
//! - [`key_file`]: the text formats of the key file (plaintext v1, encrypted v2) and its
//!   atomic, owner-only writes.
//! - [`encryption`]: [`KdfParams`] and the cipher that seals an encrypted key file.
//! - [`passphrase`]: [`Passphrase`], read from a file and wiped from memory after use.
//! - [`coin_selection`]: [`SpendableCoin`], which coins pay, the fee and the change.
//! - [`payment`]: [`Payment`] and [`DEFAULT_FEE_RATE`].
//! - [`error`]: the one error type, [`WalletError`].
//!
//! Invariants:
//! - The wallet never reads the chain: the caller hands it the coins it may spend, so it
//!   needs no store and no async, and tests give it any coins they like.
//! - Secret keys never leave [`Wallet`]: no accessor returns them, `Debug` shows addresses
//!   only, errors and logs carry no key material. The same holds for the passphrase and
//!   the key derived from it.
//! - A damaged key file is refused, never replaced: coins may depend on its keys.

pub mod coin_selection;
pub mod encryption;
pub mod error;
pub mod key_file;
pub mod passphrase;
pub mod payment;
pub mod wallet;

pub use coin_selection::{CoinCandidates, CoinSelection, SpendableCoin, select_coins};
pub use encryption::KdfParams;
pub use error::WalletError;
pub use passphrase::Passphrase;
pub use payment::{DEFAULT_FEE_RATE, Payment, max_payment_fee};
pub use wallet::Wallet;
