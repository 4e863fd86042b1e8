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
    /// The bits that pad the payload to whole characters are not zero: another spelling
    /// of an address, which only its canonical one may be (bech32's decoder drops them).
    #[error("address padding bits are not zero (not the canonical spelling of an address)")]
    NonZeroPadding,
    /// The payload is not an x-only public key on secp256k1.
    #[error("address payload is not a valid secp256k1 x-only public key")]
    NotAPublicKey,
    /// A public key of none of the three lengths secp256k1 keys are written in.
    #[error(
        "a public key is 32 bytes (x-only, BIP-340), 33 (compressed SEC) or 65 (uncompressed SEC), got {0}"
    )]
    PublicKeyLength(usize),
    /// Bytes of a public key's length that are not a point on secp256k1.
    #[error("the {0} bytes are not a public key on secp256k1")]
    PublicKeyOffCurve(usize),
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
        // 32 bytes take 52 characters of 5 bits: 4 bits of padding, which must be zero
        // (BIP-173), or 16 strings would each be a valid address of one key.
        checked
            .validate_segwit_padding()
            .map_err(|_| AddressError::NonZeroPadding)?;
        secp256k1::XOnlyPublicKey::from_byte_array(key).map_err(|_| AddressError::NotAPublicKey)?;
        Ok(Address(key))
    }

    /// The address that pays `key`: a BIP-340 x-only key (32 bytes), or a SEC key, compressed
    /// (33 bytes) or uncompressed (65, the tutorial's `04...` keys). A SEC key pays its x
    /// coordinate, which the same secret key spends (BIP-340 signing drops the parity).
    ///
    /// # Errors
    /// [`AddressError::PublicKeyLength`] for any other length,
    /// [`AddressError::PublicKeyOffCurve`] for bytes that are not a point on the curve.
    pub fn from_public_key(key: &[u8]) -> Result<Address, AddressError> {
        let off_curve = |_| AddressError::PublicKeyOffCurve(key.len());
        let x_only = match key.len() {
            32 => {
                let bytes: [u8; 32] = key
                    .try_into()
                    .map_err(|_| AddressError::PublicKeyLength(key.len()))?;
                secp256k1::XOnlyPublicKey::from_byte_array(bytes).map_err(off_curve)?
            }
            33 | 65 => {
                secp256k1::PublicKey::from_slice(key)
                    .map_err(off_curve)?
                    .x_only_public_key()
                    .0
            }
            other => return Err(AddressError::PublicKeyLength(other)),
        };
        Ok(Address(x_only.to_byte_array()))
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

    /// bech32's decoder drops the 4 bits that pad 32 bytes to 52 characters: with any of
    /// them set (and the checksum made anew), the text parsed as the same key.
    #[test]
    fn only_the_canonical_spelling_of_an_address_parses() {
        use bech32::{ByteIterExt, Fe32, Fe32IterExt};

        let hrp = Hrp::parse(Network::Devnet.address_prefix()).expect("valid");
        let mut characters: Vec<Fe32> = key().0.iter().copied().bytes_to_fes().collect();
        assert_eq!(characters.len(), 52);
        assert_eq!(
            Address::parse(&key().to_bech32(Network::Devnet), Network::Devnet),
            Ok(key())
        );
        let last = characters.len() - 1;
        for padding in 1..16u8 {
            characters[last] = Fe32::try_from(characters[last].to_u8() | padding).expect("5 bits");
            let text: String = characters
                .iter()
                .copied()
                .with_checksum::<Bech32m>(&hrp)
                .chars()
                .collect();
            assert_eq!(
                Address::parse(&text, Network::Devnet),
                Err(AddressError::NonZeroPadding),
                "{text}"
            );
            characters[last] = Fe32::try_from(characters[last].to_u8() & !0b1111).expect("5 bits");
        }
    }

    #[test]
    fn a_public_key_in_any_of_its_three_forms_pays_its_x_only_address() {
        // Secret key 3: its SEC forms (x is BIP-340 vector 0's key; y is even).
        let compressed = format!("02{KEY}");
        let uncompressed = "04f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9\
             388f7b0f632de8140fe337e62a37f3566500a99934c2231b6cb9fd7584b8e672";
        for text in [KEY, compressed.as_str(), uncompressed] {
            let bytes = hex::decode(text).expect("hex");
            assert_eq!(Address::from_public_key(&bytes), Ok(key()), "{text}");
        }
        // The odd-y point with the same x pays the same address.
        let odd = hex::decode(&format!("03{KEY}")).expect("hex");
        assert_eq!(Address::from_public_key(&odd), Ok(key()));
        for length in [0, 31, 34, 64, 66] {
            assert_eq!(
                Address::from_public_key(&vec![2; length]),
                Err(AddressError::PublicKeyLength(length))
            );
        }
        let mut off_curve = [0u8; 32];
        off_curve[31] = 5;
        assert_eq!(
            Address::from_public_key(&off_curve),
            Err(AddressError::PublicKeyOffCurve(32))
        );
        let mut bad_prefix = hex::decode(&compressed).expect("hex");
        bad_prefix[0] = 5;
        assert_eq!(
            Address::from_public_key(&bad_prefix),
            Err(AddressError::PublicKeyOffCurve(33))
        );
    }
}
