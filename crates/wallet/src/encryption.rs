//! Encryption of the key file: a key derived from the passphrase with Argon2id seals the key
//! list with XChaCha20-Poly1305.
//!
//! ```text
//!   passphrase ──Argon2id (KdfParams, 16-byte random salt)──▶ 32-byte key ──▶ KeyFileCipher
//!   KeyFileCipher::seal(plain key list, header bytes as associated data)
//!       ──fresh 24-byte random nonce──▶ (nonce, ciphertext ‖ 16-byte tag)
//!   KeyFileCipher::open(nonce, header bytes, ciphertext) ──▶ plain key list | wrong key
//! ```
//!
//! Why these two:
//! - **Argon2id** is memory-hard: each guess at the passphrase costs [`KdfParams::RECOMMENDED`]
//!   64 MiB of memory and three passes over it, which is what makes guessing on GPUs and
//!   ASICs expensive (a plain hash such as SHA-256 costs them almost nothing). The `id`
//!   variant resists both side-channel and time-memory trade-off attacks (RFC 9106's first
//!   recommendation).
//! - **XChaCha20-Poly1305** is an AEAD: a wrong key or any changed byte of the ciphertext,
//!   nonce or header is detected, never decrypted into wrong keys. Its 24-byte nonce is large
//!   enough to be drawn at random for every write without any risk of reuse.
//!
//! The derived key is kept (not the passphrase) while the wallet is open, so writing a new
//! address re-encrypts at once, with a fresh nonce, without running Argon2 again. The key
//! lives inside the cipher, which wipes it when dropped.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::WalletError;
use crate::passphrase::Passphrase;

/// Bytes of the random salt stored in each encrypted key file.
pub const SALT_BYTES: usize = 16;
/// Bytes of the XChaCha20-Poly1305 nonce stored in each encrypted key file.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the key Argon2id derives.
const KEY_BYTES: usize = 32;

/// The most memory a key file may ask Argon2id for: 4 GiB. A damaged or hostile file must not
/// make the node allocate without bound before the passphrase is even checked.
pub const MAX_KDF_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// The most passes a key file may ask Argon2id for (a start-up must end).
pub const MAX_KDF_ITERATIONS: u32 = 64;
/// The most lanes a key file may ask Argon2id for.
pub const MAX_KDF_PARALLELISM: u32 = 64;

/// Argon2id's cost parameters, stored in each encrypted key file so a file stays readable
/// when the defaults change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory per derivation, KiB (`m`).
    pub memory_kib: u32,
    /// Passes over that memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl KdfParams {
    /// For every key file the node writes: 64 MiB, 3 passes, 1 lane. Between RFC 9106's two
    /// recommendations (2 GiB/1 pass and 64 MiB/3 passes) we take the second, which a small
    /// machine can afford: it costs a few tenths of a second, once, at start.
    pub const RECOMMENDED: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// For the wallet crate's own unit tests only: the smallest cost Argon2id allows, so the
    /// tests run in milliseconds. Never compiled into the node.
    #[cfg(test)]
    pub(crate) const FAST_FOR_TESTS: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    /// The parameters new key files get.
    #[cfg(not(test))]
    pub(crate) const FOR_NEW_FILES: KdfParams = KdfParams::RECOMMENDED;
    /// The parameters new key files get.
    #[cfg(test)]
    pub(crate) const FOR_NEW_FILES: KdfParams = KdfParams::FAST_FOR_TESTS;

    /// Checks the parameters are ones Argon2id accepts and within this code's limits.
    ///
    /// # Errors
    /// Why not, as a sentence.
    pub(crate) fn validate(self) -> Result<(), String> {
        if !(1..=MAX_KDF_PARALLELISM).contains(&self.parallelism) {
            return Err(format!(
                "its key derivation lanes p={} are not between 1 and {MAX_KDF_PARALLELISM}",
                self.parallelism
            ));
        }
        if !(1..=MAX_KDF_ITERATIONS).contains(&self.iterations) {
            return Err(format!(
                "its key derivation passes t={} are not between 1 and {MAX_KDF_ITERATIONS}",
                self.iterations
            ));
        }
        let least_memory = 8 * self.parallelism;
        if !(least_memory..=MAX_KDF_MEMORY_KIB).contains(&self.memory_kib) {
            return Err(format!(
                "its key derivation memory m={} KiB is not between {least_memory} and \
                 {MAX_KDF_MEMORY_KIB}",
                self.memory_kib
            ));
        }
        Ok(())
    }
}

/// The key that seals one key file, with the parameters and salt it was derived with (a
/// rewrite keeps both, so the same passphrase keeps opening the file).
pub struct KeyFileCipher {
    kdf: KdfParams,
    salt: [u8; SALT_BYTES],
    /// Holds the derived key and wipes it on drop (chacha20poly1305's `zeroize` feature).
    aead: XChaCha20Poly1305,
}

/// The AEAD refused: the key is wrong or the sealed bytes (or what they are bound to) changed.
/// The two cannot be told apart, by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CannotOpen;

impl KeyFileCipher {
    /// Derives a key from `passphrase` with a fresh random salt: for a file about to be
    /// encrypted for the first time.
    ///
    /// # Errors
    /// [`WalletError::Randomness`], or [`WalletError::Cipher`] if Argon2id fails (out of
    /// memory).
    pub(crate) fn derive_with_fresh_salt(
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<KeyFileCipher, WalletError> {
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|source| WalletError::Randomness { source })?;
        KeyFileCipher::derive(passphrase, kdf, salt)
    }

    /// Derives the key of a file sealed with `kdf` and `salt`.
    ///
    /// # Errors
    /// [`WalletError::Cipher`] if the parameters are out of range or Argon2id fails.
    pub(crate) fn derive(
        passphrase: &Passphrase,
        kdf: KdfParams,
        salt: [u8; SALT_BYTES],
    ) -> Result<KeyFileCipher, WalletError> {
        kdf.validate()
            .map_err(|reason| WalletError::Cipher { reason })?;
        let params = argon2::Params::new(
            kdf.memory_kib,
            kdf.iterations,
            kdf.parallelism,
            Some(KEY_BYTES),
        )
        .map_err(|error| WalletError::Cipher {
            reason: format!("Argon2id refused its parameters: {error}"),
        })?;
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        argon2
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
            .map_err(|error| WalletError::Cipher {
                reason: format!("Argon2id failed: {error}"),
            })?;
        let aead = XChaCha20Poly1305::new_from_slice(key.as_ref())
            .expect("Argon2id was asked for exactly XChaCha20-Poly1305's key length");
        Ok(KeyFileCipher { kdf, salt, aead })
    }

    /// The parameters the key was derived with.
    pub(crate) fn kdf(&self) -> KdfParams {
        self.kdf
    }

    /// The salt the key was derived with.
    pub(crate) fn salt(&self) -> [u8; SALT_BYTES] {
        self.salt
    }

    /// A fresh random nonce: never reused, since every write draws its own (a collision
    /// among 2^192 values is not a practical concern).
    ///
    /// # Errors
    /// [`WalletError::Randomness`].
    pub(crate) fn fresh_nonce() -> Result<[u8; NONCE_BYTES], WalletError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|source| WalletError::Randomness { source })?;
        Ok(nonce)
    }

    /// Encrypts `plaintext` under `nonce`, binding `associated_data` (the file's header) to
    /// it: the ciphertext followed by the 16-byte tag.
    ///
    /// # Errors
    /// [`WalletError::Cipher`] only for a plaintext beyond XChaCha20's 256 GiB limit.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_BYTES],
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, WalletError> {
        self.aead
            .encrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .map_err(|_| WalletError::Cipher {
                reason: "XChaCha20-Poly1305 refused to encrypt the key list".to_owned(),
            })
    }

    /// Decrypts what [`KeyFileCipher::seal`] made, if the key, nonce and associated data are
    /// the ones it was sealed with and not a byte changed.
    ///
    /// # Errors
    /// [`CannotOpen`] otherwise.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_BYTES],
        associated_data: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CannotOpen> {
        self.aead
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: sealed,
                    aad: associated_data,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CannotOpen)
    }
}

impl fmt::Debug for KeyFileCipher {
    /// The parameters, never the key.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyFileCipher")
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::from_bytes(text.as_bytes()).expect("not empty")
    }

    #[test]
    fn same_passphrase_and_salt_give_the_same_key_and_others_do_not() {
        let salt = [7u8; SALT_BYTES];
        let nonce = [9u8; NONCE_BYTES];
        let sealing = KeyFileCipher::derive(&passphrase("right"), KdfParams::FAST_FOR_TESTS, salt)
            .expect("derived");
        let sealed = sealing
            .seal(&nonce, b"header", b"secret keys")
            .expect("sealed");
        assert_eq!(
            sealed.len(),
            b"secret keys".len() + 16,
            "ciphertext plus tag"
        );
        assert!(!sealed.windows(6).any(|window| window == b"secret"));

        let again = KeyFileCipher::derive(&passphrase("right"), KdfParams::FAST_FOR_TESTS, salt)
            .expect("derived");
        assert_eq!(
            again
                .open(&nonce, b"header", &sealed)
                .expect("opens")
                .as_slice(),
            b"secret keys"
        );
        let wrong = KeyFileCipher::derive(&passphrase("wrong"), KdfParams::FAST_FOR_TESTS, salt)
            .expect("derived");
        assert_eq!(wrong.open(&nonce, b"header", &sealed), Err(CannotOpen));
        let other_salt =
            KeyFileCipher::derive(&passphrase("right"), KdfParams::FAST_FOR_TESTS, [8; 16])
                .expect("derived");
        assert_eq!(other_salt.open(&nonce, b"header", &sealed), Err(CannotOpen));
        assert_eq!(again.open(&nonce, b"HEADER", &sealed), Err(CannotOpen));
        assert_eq!(
            again.open(&[0; NONCE_BYTES], b"header", &sealed),
            Err(CannotOpen)
        );
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert_eq!(again.open(&nonce, b"header", &flipped), Err(CannotOpen));
    }

    #[test]
    fn out_of_range_parameters_are_refused_before_any_allocation() {
        let too_much_memory = KdfParams {
            memory_kib: MAX_KDF_MEMORY_KIB + 1,
            ..KdfParams::RECOMMENDED
        };
        let too_little_memory = KdfParams {
            memory_kib: 15,
            parallelism: 2,
            iterations: 1,
        };
        let no_passes = KdfParams {
            iterations: 0,
            ..KdfParams::RECOMMENDED
        };
        for params in [too_much_memory, too_little_memory, no_passes] {
            assert!(params.validate().is_err(), "{params:?}");
            let error = KeyFileCipher::derive(&passphrase("x"), params, [0; SALT_BYTES])
                .expect_err("refused");
            assert!(matches!(error, WalletError::Cipher { .. }), "{error:?}");
        }
        assert_eq!(KdfParams::RECOMMENDED.validate(), Ok(()));
        assert_eq!(KdfParams::FAST_FOR_TESTS.validate(), Ok(()));
        assert_eq!(
            KdfParams::RECOMMENDED,
            KdfParams {
                memory_kib: 65_536,
                iterations: 3,
                parallelism: 1
            }
        );
    }

    #[test]
    fn debug_shows_parameters_not_the_key() {
        let cipher = KeyFileCipher::derive(
            &passphrase("hunter2"),
            KdfParams::FAST_FOR_TESTS,
            [1; SALT_BYTES],
        )
        .expect("derived");
        let printed = format!("{cipher:?}");
        assert!(printed.contains("memory_kib"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
