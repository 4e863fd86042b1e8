//! Hashes: SHA-256d, BIP-340-style tagged hashes, and a type per thing that is hashed.
//!
//! A hash is shown in hex in the order its bytes come out of SHA-256, and compared with a
//! target as a big-endian number, so a hash that meets a hard target visibly starts with
//! zeros (as the tutorial's hashes did).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::hex::{self, HexError};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-256 of SHA-256 of `data`.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    sha256(&sha256(data))
}

/// SHA-256 of SHA-256 of `parts` one after another: [`sha256d`] of their concatenation,
/// without copying them into one buffer.
pub fn sha256d_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    sha256(&hasher.finalize())
}

/// BIP-340 tagged hash: `SHA256(SHA256(tag) || SHA256(tag) || data)`.
///
/// Each use in powchain has its own tag, so a hash made for one purpose can never be
/// mistaken for one made for another.
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let tag_hash = sha256(tag.as_bytes());
    let mut hasher = Sha256::new();
    hasher.update(tag_hash);
    hasher.update(tag_hash);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

macro_rules! hash_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The all-zero value.
            pub const ZERO: $name = $name([0; 32]);

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The raw bytes, by value.
            pub const fn to_byte_array(self) -> [u8; 32] {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&hex::encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}({})", stringify!($name), hex::encode(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            fn from_str(text: &str) -> Result<$name, HexError> {
                hex::decode_array::<32>(text).map($name)
            }
        }
    };
}

hash_type!(
    /// The SHA-256d hash of a block header: the block's identity.
    BlockHash
);
hash_type!(
    /// The SHA-256d hash of a transaction's encoding: the transaction's identity.
    Txid
);
hash_type!(
    /// The root of the Merkle tree over a block's transaction ids.
    MerkleRoot
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex::encode(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(&sha256d(b"")),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }

    #[test]
    fn hashing_parts_is_hashing_their_concatenation() {
        assert_eq!(sha256d_parts(&[]), sha256d(b""));
        assert_eq!(sha256d_parts(&[b"ab", b"", b"c"]), sha256d(b"abc"));
        assert_ne!(sha256d_parts(&[b"ab", b"c"]), sha256(b"abc"));
    }

    #[test]
    fn hash_text_round_trip() {
        let hash = BlockHash([0xab; 32]);
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<BlockHash>(), Ok(hash));
        assert!("00".parse::<BlockHash>().is_err());
    }
}
