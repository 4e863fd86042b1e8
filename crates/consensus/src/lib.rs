//! powchain's consensus rules: what makes a block or a transaction valid.
//!
//! This crate is pure. It does no I/O, has no clock, no randomness and no async: time,
//! chain data and the UTXO set come in as arguments, so every rule can be read, tested and
//! fuzzed alone. Everything else in powchain depends on it, never the reverse.
//!
//! ```text
//!   bytes ──Decode──▶ Block / Transaction ──validate_*──▶ Ok | ConsensusError (the rule)
//!                         │                                       │
//!                   compute_hash / compute_txid            connect_block_transactions
//!                   (SHA-256d, Merkle root)                ──▶ BlockConnection (UTXO delta)
//! ```
//!
//! Map of the modules:
//! - values: [`hash`] (BlockHash, Txid), [`amount`] (Amount), [`target`] (CompactTarget,
//!   Target, Work), [`uint`] (U256), [`address`] (Address, bech32m)
//! - data: [`transaction`], [`block`], [`encode`] (the canonical binary encoding)
//! - rules: [`pow`], [`merkle`], [`difficulty`] (ASERT, median time past), [`signature`]
//!   (sighash, BIP-340), [`validation`] (the `validate_*` functions), [`error`]
//! - [`signature_cache`]: checks that passed, remembered so a block does not repeat the
//!   pool's work (a bounded set; it can only skip checks that passed before)
//! - [`params`]: every constant of devnet and regtest, and their genesis blocks.
//! - [`bounded_set`]: not a rule; the bounded, oldest-first-forgotten set that the
//!   signature cache keeps what it has seen in.

pub mod address;
pub mod amount;
pub mod block;
pub mod bounded_set;
pub mod difficulty;
pub mod encode;
pub mod error;
pub mod fee_rate;
pub mod hash;
pub mod hex;
pub mod merkle;
pub mod params;
pub mod pow;
pub mod signature;
pub mod signature_cache;
pub mod target;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod transaction;
pub mod uint;
pub mod utxo;
pub mod validation;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError, UNITS_PER_COIN};
pub use block::{Block, HEADER_BYTES, Header};
pub use encode::{Decode, DecodeError, Encode};
pub use error::ConsensusError;
pub use fee_rate::FeeRate;
pub use hash::{BlockHash, MerkleRoot, Txid};
pub use params::{Network, Params};
pub use target::{CompactTarget, Target, Work};
pub use transaction::{
    BlockHeight, CoinbaseInput, OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut,
};
pub use utxo::{Coin, UtxoView};

/// Re-exported so that users sign with the same library version consensus verifies with.
pub use secp256k1;
