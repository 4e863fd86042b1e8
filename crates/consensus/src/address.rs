//! `Address`: who an output pays, written as bech32m with a prefix per network.
//!
//! An address is a BIP-340 x-only public key, so an output is spent by a Schnorr
//! signature from that key: the tutorial's "the public key is the address", with a
//! checksum that catches typos and a prefix (`pow1...` on devnet, `powrt1...` on
//! regtest) that keeps coins from being sent across networks.

use std::fmt;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use thiserror::Error;

use crate::hex;
use crate::params::Network;

/// The 32-byte x-only public key an output pays to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 32]);

/// Why text is not an address of the expected network.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// Not bech32m text (bad characters, mixed case, wrong checksum, ...).
    #[error("not a bech32m address: {0}")]
    Bech32(String),
    /// An address of another network.
    #[error("address is for prefix {got:?}, this node is on {network} (prefix {expected:?})")]
    WrongNetwork {
        /// The prefix the text carries.
        got: String,
        /// This network's prefix.
        expected: &'static str,
        /// This network.
        network: Network,
    },
    /// The payload is not 32 bytes.
    #[error("address payload is {0} bytes, expected 32")]
    WrongLength(usize),
    /// The payload is not an x-only public key on secp256k1.
    #[error("address payload is not a valid secp256k1 x-only public key")]
    NotAPublicKey,
}

impl Address {
    /// Reads a bech32m address and checks that it belongs to `network` and holds a valid
    /// public key (so coins cannot be sent where no key could ever spend them).
    ///
    /// # Errors
    /// [`AddressError`] naming what is wrong.
    pub fn parse(text: &str, network: Network) -> Result<Address, AddressError> {
        let checked = CheckedHrpstring::new::<Bech32m>(text)
            .map_err(|error| AddressError::Bech32(error.to_string()))?;
        let expected = network.address_prefix();
        let got = checked.hrp().to_lowercase();
        if got != expected {
            return Err(AddressError::WrongNetwork {
                got,
                expected,
                network,
            });
        }
        let payload: Vec<u8> = checked.byte_iter().collect();
        let key: [u8; 32] = payload
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::WrongLength(payload.len()))?;
        secp256k1::XOnlyPublicKey::from_byte_array(key).map_err(|_| AddressError::NotAPublicKey)?;
        Ok(Address(key))
    }

    /// The bech32m text of this address on `network`.
    pub fn to_bech32(&self, network: Network) -> String {
        let hrp = Hrp::parse(network.address_prefix()).expect("network prefixes are valid hrps");
        bech32::encode::<Bech32m>(hrp, &self.0)
            .expect("a 32-byte payload is far below the bech32m length limit")
    }

    /// The x-only public key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Address({})", hex::encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The x-only key of secret key 3 (BIP-340 test vector 0).
    const KEY: &str = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";

    fn key() -> Address {
        Address(hex::decode_array(KEY).expect("hex"))
    }

    #[test]
    fn round_trip_per_network() {
        for network in [Network::Devnet, Network::Regtest] {
            let text = key().to_bech32(network);
            assert!(text.starts_with(&format!("{}1", network.address_prefix())));
            assert_eq!(Address::parse(&text, network), Ok(key()));
            assert_eq!(Address::parse(&text.to_uppercase(), network), Ok(key()));
        }
    }

    #[test]
    fn wrong_network_checksum_and_payload_are_rejected() {
        let devnet = key().to_bech32(Network::Devnet);
        assert!(matches!(
            Address::parse(&devnet, Network::Regtest),
            Err(AddressError::WrongNetwork { .. })
        ));
        let mut typo = devnet.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(matches!(
            Address::parse(&typo, Network::Devnet),
            Err(AddressError::Bech32(_))
        ));
        let hrp = Hrp::parse("pow").expect("valid");
        let short = bech32::encode::<Bech32m>(hrp, &[1, 2, 3]).expect("encodes");
        assert_eq!(
            Address::parse(&short, Network::Devnet),
            Err(AddressError::WrongLength(3))
        );
        // x = 5 is not the x coordinate of any point on secp256k1.
        let mut off_curve = [0u8; 32];
        off_curve[31] = 5;
        let text = bech32::encode::<Bech32m>(hrp, &off_curve).expect("encodes");
        assert_eq!(
            Address::parse(&text, Network::Devnet),
            Err(AddressError::NotAPublicKey)
        );
        // Plain bech32 (BIP-173) checksums are not bech32m.
        let legacy = bech32::encode::<bech32::Bech32>(hrp, &key().0).expect("encodes");
        assert!(matches!(
            Address::parse(&legacy, Network::Devnet),
            Err(AddressError::Bech32(_))
        ));
        assert!(Address::parse("", Network::Devnet).is_err());
    }
}
