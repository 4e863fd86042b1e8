//! `Wallet`: the keys of one node, bound to a network, and what they sign.
//!
//! ```text
//!   open_or_create(path) ──▶ key file (read, or created with one fresh key)
//!   open_or_create_with_passphrase(path, passphrase)
//!       ──▶ v2 file: opened with the passphrase | v1 file: sealed in place | none: created sealed
//!   new_address ──▶ fresh key ──▶ key file rewritten atomically (sealed if it was) ──▶ address
//!   build_payment(coins) ──▶ owned coins ──select_coins──▶ transaction ──sign──▶ Payment
//! ```
//!
//! **Invariant:** an address is handed out only after its key is durably in the key file,
//! so a crash can never lose the key of an address someone may have been paid to.
//!
//! Secret keys stay inside this type: no accessor returns them (outside tests), `Debug`
//! shows addresses only, and nothing here logs them. An encrypted wallet keeps the key
//! derived from its passphrase, not the passphrase.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{SighashCache, address_of, sign_schnorr};
use powchain_consensus::{
    Address, Amount, FeeRate, Network, Signature, Transaction, TxIn, TxInputs, TxOut, hex,
};

use crate::coin_selection::{CoinCandidates, CoinSelection, SpendableCoin, select_coins};
use crate::encryption::{KdfParams, KeyFileCipher};
use crate::error::WalletError;
use crate::key_file::{self, StoredKeys};
use crate::passphrase::Passphrase;
use crate::payment::Payment;
use crate::payment::max_payment_fee;

/// The keys of one node, bound to a network, kept in a key file.
///
/// The first key is the default one: its address receives mining rewards and change, and
/// its public key is the tutorial's `GET /public-key`.
pub struct Wallet {
    path: PathBuf,
    network: Network,
    /// Oldest first; never empty.
    keys: Vec<WalletKey>,
    /// Position in `keys` of each address.
    position_by_address: HashMap<Address, usize>,
    /// Seals every rewrite of the key file, if the wallet is encrypted.
    cipher: Option<KeyFileCipher>,
}

struct WalletKey {
    keypair: Keypair,
    address: Address,
}

impl Wallet {
    /// Opens the key file at `path`, or creates it with one fresh key (the default address)
    /// if absent. The directory must exist.
    ///
    /// # Errors
    /// [`WalletError::Corrupt`] if the file is damaged (it is left as it is),
    /// [`WalletError::WrongNetwork`] if it belongs to another network,
    /// [`WalletError::Io`] or [`WalletError::Randomness`] if reading or creating it failed.
    pub fn open_or_create(path: &Path, network: Network) -> Result<Wallet, WalletError> {
        Wallet::open_or_create_sealed_with(path, network, None)
    }

    /// Opens the key file at `path` with `passphrase`, encrypting it first if it is a
    /// plaintext (v1) file, or creates it encrypted with one fresh key if absent. Every later
    /// write (each new address) is encrypted too.
    ///
    /// Deriving the key from the passphrase is deliberately slow (Argon2id, 64 MiB): this
    /// takes a few tenths of a second, once.
    ///
    /// # Errors
    /// [`WalletError::WrongPassphrase`] if the passphrase does not open an encrypted file,
    /// and the errors of [`Wallet::open_or_create`]. A file that is refused is left as it
    /// was; a plaintext file whose encryption fails stays the plaintext file it was.
    pub fn open_or_create_with_passphrase(
        path: &Path,
        network: Network,
        passphrase: &Passphrase,
    ) -> Result<Wallet, WalletError> {
        Wallet::open_or_create_sealed_with(path, network, Some(passphrase))
    }

    fn open_or_create_sealed_with(
        path: &Path,
        network: Network,
        passphrase: Option<&Passphrase>,
    ) -> Result<Wallet, WalletError> {
        if let Some(stored) = key_file::read_key_file(path, network)? {
            return Wallet::from_stored(path, network, stored, passphrase);
        }
        let keypair = generate_keypair()?;
        let cipher = passphrase
            .map(|passphrase| {
                KeyFileCipher::derive_with_fresh_salt(passphrase, KdfParams::FOR_NEW_FILES)
            })
            .transpose()?;
        match key_file::create_key_file(path, network, &[keypair], cipher.as_ref()) {
            Ok(()) => {
                let wallet = Wallet::from_keypairs(path, network, vec![keypair], cipher);
                tracing::info!(
                    path = %path.display(),
                    default_address = %wallet.default_address().to_bech32(network),
                    encrypted = wallet.is_encrypted(),
                    "created a new wallet"
                );
                Ok(wallet)
            }
            // Another process created the file between our read and our write: its key may
            // already be in use, so it wins and ours is dropped unused.
            Err(WalletError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                let stored =
                    key_file::read_key_file(path, network)?.ok_or_else(|| WalletError::Io {
                        path: path.to_owned(),
                        source: io::Error::new(
                            io::ErrorKind::NotFound,
                            "the key file appeared and vanished while it was being created",
                        ),
                    })?;
                Wallet::from_stored(path, network, stored, passphrase)
            }
            Err(error) => Err(error),
        }
    }

    /// The wallet of a key file just read: opened with the passphrase if sealed, sealed in
    /// place if plaintext and a passphrase is given.
    fn from_stored(
        path: &Path,
        network: Network,
        stored: StoredKeys,
        passphrase: Option<&Passphrase>,
    ) -> Result<Wallet, WalletError> {
        let wallet = match (stored, passphrase) {
            (StoredKeys::Plaintext(keypairs), None) => {
                Wallet::from_keypairs(path, network, keypairs, None)
            }
            (StoredKeys::Plaintext(keypairs), Some(passphrase)) => {
                let cipher =
                    KeyFileCipher::derive_with_fresh_salt(passphrase, KdfParams::FOR_NEW_FILES)?;
                // One rename: a crash leaves the plaintext file or the encrypted one.
                key_file::replace_key_file(path, network, &keypairs, Some(&cipher))?;
                tracing::info!(
                    path = %path.display(),
                    "encrypted the wallet key file with the passphrase"
                );
                Wallet::from_keypairs(path, network, keypairs, Some(cipher))
            }
            (StoredKeys::Encrypted(_), None) => {
                return Err(WalletError::PassphraseRequired {
                    path: path.to_owned(),
                });
            }
            (StoredKeys::Encrypted(sealed), Some(passphrase)) => {
                let (keypairs, cipher) = sealed.open(path, passphrase)?;
                Wallet::from_keypairs(path, network, keypairs, Some(cipher))
            }
        };
        tracing::info!(
            path = %path.display(),
            addresses = wallet.keys.len(),
            default_address = %wallet.default_address().to_bech32(network),
            encrypted = wallet.is_encrypted(),
            "opened wallet"
        );
        Ok(wallet)
    }

    /// A wallet holding exactly `keypairs` (the first is the default), written to a new key
    /// file at `path`: for tests that give a wallet coins a `TestChain` mined to a known key.
    ///
    /// # Errors
    /// [`WalletError::Io`], also if a file already exists at `path`.
    ///
    /// # Panics
    /// If `keypairs` is empty.
    #[cfg(any(test, feature = "testkit"))]
    pub fn create_with_keypairs(
        path: &Path,
        network: Network,
        keypairs: Vec<Keypair>,
    ) -> Result<Wallet, WalletError> {
        assert!(!keypairs.is_empty(), "a wallet needs a default key");
        key_file::create_key_file(path, network, &keypairs, None)?;
        Ok(Wallet::from_keypairs(path, network, keypairs, None))
    }

    /// Every secret key as 64 hex digits, the default first: for tests that check no
    /// secret ever reaches a log. Not compiled into the node.
    #[cfg(any(test, feature = "testkit"))]
    pub fn secret_keys_hex_for_tests(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| hex::encode(&key.keypair.to_secret_bytes()))
            .collect()
    }

    fn from_keypairs(
        path: &Path,
        network: Network,
        keypairs: Vec<Keypair>,
        cipher: Option<KeyFileCipher>,
    ) -> Wallet {
        let keys: Vec<WalletKey> = keypairs
            .into_iter()
            .map(|keypair| WalletKey {
                address: address_of(&keypair),
                keypair,
            })
            .collect();
        let position_by_address = keys
            .iter()
            .enumerate()
            .map(|(position, key)| (key.address, position))
            .collect();
        Wallet {
            path: path.to_owned(),
            network,
            keys,
            position_by_address,
            cipher,
        }
    }

    /// The network the wallet's keys belong to.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the key file is encrypted with a passphrase (format v2).
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The address of the first key: where mining rewards and change go.
    pub fn default_address(&self) -> Address {
        self.keys
            .first()
            .expect("a wallet always holds its default key")
            .address
    }

    /// The default address's x-only public key as 64 hex digits (the tutorial's
    /// `GET /public-key`).
    pub fn default_public_key_hex(&self) -> String {
        hex::encode(self.default_address().as_bytes())
    }

    /// Makes a fresh key and returns its address, after the key file holding it is durably
    /// written.
    ///
    /// # Errors
    /// [`WalletError::Io`] or [`WalletError::Randomness`]; the wallet and its file are then
    /// unchanged.
    pub fn new_address(&mut self) -> Result<Address, WalletError> {
        let keypair = generate_keypair()?;
        let address = address_of(&keypair);
        let mut keypairs: Vec<Keypair> = self.keys.iter().map(|key| key.keypair).collect();
        keypairs.push(keypair);
        let written =
            key_file::replace_key_file(&self.path, self.network, &keypairs, self.cipher.as_ref());
        // The copies were only needed for the file; the wallet keeps its own.
        for copy in &mut keypairs {
            copy.non_secure_erase();
        }
        written?;
        self.position_by_address.insert(address, self.keys.len());
        self.keys.push(WalletKey { keypair, address });
        tracing::info!(
            address = %address.to_bech32(self.network),
            "new wallet address"
        );
        Ok(address)
    }

    /// Every address of the wallet, the default first, then oldest first.
    pub fn addresses(&self) -> Vec<Address> {
        self.keys.iter().map(|key| key.address).collect()
    }

    /// True if the wallet holds the key of `address`.
    pub fn owns(&self, address: &Address) -> bool {
        self.position_by_address.contains_key(address)
    }

    /// Builds and signs a payment of `amount` to `recipient` from `available` coins, paying
    /// `fee_rate`, with change (if any) to the default address.
    ///
    /// Coins of addresses the wallet does not own are skipped; the rest are chosen as
    /// [`crate::coin_selection`] describes. Every coin given must be spendable now (mature,
    /// not spent by a pending transaction).
    ///
    /// # Errors
    /// [`WalletError::ZeroAmount`], [`WalletError::InsufficientFunds`],
    /// [`WalletError::TooManyInputs`], [`WalletError::AmountOverflow`], or
    /// [`WalletError::Randomness`] if no signature could be made.
    pub fn build_payment(
        &self,
        available: &[SpendableCoin],
        recipient: Address,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Payment, WalletError> {
        let owned: Vec<SpendableCoin> = available
            .iter()
            .filter(|coin| self.owns(&coin.output.address))
            .copied()
            .collect();
        let selection = select_coins(&owned, amount, fee_rate)?;
        self.pay_with(&selection, recipient, amount)
    }

    /// Builds and signs a payment as [`Wallet::build_payment`] does, choosing from coins
    /// gathered one at a time ([`CoinCandidates`]: the node's way, however many coins the
    /// wallet's addresses hold). The caller offers only coins of the wallet's addresses.
    ///
    /// # Errors
    /// As [`Wallet::build_payment`]; [`WalletError::NotOurs`] for a coin of an
    /// address the wallet holds no key for.
    pub fn build_payment_from(
        &self,
        candidates: &CoinCandidates,
        recipient: Address,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Payment, WalletError> {
        let selection = candidates.select(amount, fee_rate)?;
        self.pay_with(&selection, recipient, amount)
    }

    /// Signs the payment `selection` chose coins for.
    fn pay_with(
        &self,
        selection: &CoinSelection,
        recipient: Address,
        amount: Amount,
    ) -> Result<Payment, WalletError> {
        if selection.fee > max_payment_fee() {
            return Err(WalletError::FeeTooHigh {
                fee: selection.fee,
                max: max_payment_fee(),
            });
        }
        let mut outputs = vec![TxOut {
            value: amount,
            address: recipient,
        }];
        if let Some(change) = selection.change {
            outputs.push(TxOut {
                value: change,
                address: self.default_address(),
            });
        }
        let mut transaction = Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Spends(
                selection
                    .inputs
                    .iter()
                    .map(|coin| TxIn {
                        prevout: coin.outpoint,
                        // Overwritten by signing; the sighash does not cover signatures.
                        signature: Signature([0; 64]),
                    })
                    .collect(),
            ),
            outputs,
        };
        let spent_outputs: Vec<TxOut> = selection.inputs.iter().map(|coin| coin.output).collect();
        self.sign_transaction(&mut transaction, &spent_outputs)?;
        debug_assert_eq!(transaction.compute_size(), selection.size);
        tracing::debug!(
            txid = %transaction.compute_txid(),
            amount = %amount,
            fee = %selection.fee,
            inputs = selection.inputs.len(),
            "built a payment"
        );
        Ok(Payment {
            transaction,
            fee: selection.fee,
            change: selection.change,
            spent: selection.inputs.iter().map(|coin| coin.outpoint).collect(),
        })
    }

    /// Signs every input of `transaction` with BIP-340, where `spent_outputs` are the
    /// outputs its inputs spend, in input order.
    ///
    /// Each signature uses fresh auxiliary randomness from the OS, as BIP-340 recommends
    /// against side-channel attacks (the nonce stays safe even if that randomness is poor).
    ///
    /// # Errors
    /// [`WalletError::NotOurs`] if a spent output pays an address the wallet has no key for,
    /// [`WalletError::Sighash`] if the counts differ, [`WalletError::Randomness`]. On any
    /// error `transaction` is unchanged.
    pub fn sign_transaction(
        &self,
        transaction: &mut Transaction,
        spent_outputs: &[TxOut],
    ) -> Result<(), WalletError> {
        let cache = SighashCache::new(transaction, spent_outputs)?;
        let mut signatures = Vec::with_capacity(spent_outputs.len());
        for (input_index, spent_output) in spent_outputs.iter().enumerate() {
            let keypair = self
                .keypair_for(&spent_output.address)
                .ok_or(WalletError::NotOurs {
                    address: spent_output.address,
                })?;
            let sighash = cache
                .compute_sighash(input_index)
                .expect("the cache was built for one input per spent output");
            let mut aux_randomness = [0u8; 32];
            getrandom::fill(&mut aux_randomness)
                .map_err(|source| WalletError::Randomness { source })?;
            signatures.push(sign_schnorr(keypair, &sighash.0, &aux_randomness));
        }
        if let TxInputs::Spends(inputs) = &mut transaction.inputs {
            for (input, signature) in inputs.iter_mut().zip(signatures) {
                input.signature = signature;
            }
        }
        Ok(())
    }

    fn keypair_for(&self, address: &Address) -> Option<&Keypair> {
        self.position_by_address
            .get(address)
            .map(|position| &self.keys[*position].keypair)
    }
}

impl fmt::Debug for Wallet {
    /// Addresses only: a `Debug` print must never leak a secret key into a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses: Vec<String> = self
            .keys
            .iter()
            .map(|key| key.address.to_bech32(self.network))
            .collect();
        formatter
            .debug_struct("Wallet")
            .field("path", &self.path)
            .field("network", &self.network)
            .field("encrypted", &self.is_encrypted())
            .field("addresses", &addresses)
            .finish_non_exhaustive()
    }
}

impl Drop for Wallet {
    /// Best effort: overwrites the secret keys so they do not linger in freed memory. Copies
    /// the compiler made elsewhere may survive; this narrows the window, it is no guarantee.
    fn drop(&mut self) {
        for key in &mut self.keys {
            key.keypair.non_secure_erase();
        }
    }
}

/// A fresh key pair from the OS random source.
fn generate_keypair() -> Result<Keypair, WalletError> {
    loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|source| WalletError::Randomness { source })?;
        // Fails only for zero or a value at or above the group order: about one draw in
        // 2^128, so drawing again is the whole remedy.
        if let Ok(keypair) = Keypair::from_secret_bytes(secret) {
            return Ok(keypair);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use powchain_consensus::signature::SequentialVerifier;
    use powchain_consensus::testkit::{TestChain, test_address, test_key};
    use powchain_consensus::validation::validate_transaction;
    use powchain_consensus::{BlockHeight, Coin, OutPoint, Txid};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::coin_selection::spend_transaction_size;
    use crate::key_file::KEY_FILE_MODE;
    use crate::payment::DEFAULT_FEE_RATE;

    fn key_file_path(directory: &tempfile::TempDir) -> PathBuf {
        directory.path().join("wallet.keys")
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path)
            .expect("the key file exists")
            .permissions()
            .mode()
            & 0o777
    }

    fn coins(units: u64) -> Amount {
        Amount::from_units(units).expect("test amounts are in range")
    }

    /// The chain's unspent outputs as confirmed coins.
    fn spendable_coins(chain: &TestChain) -> Vec<SpendableCoin> {
        let mut spendable: Vec<SpendableCoin> = chain
            .utxo
            .iter()
            .map(|(outpoint, coin)| SpendableCoin {
                outpoint: *outpoint,
                output: coin.output,
                confirmed: true,
            })
            .collect();
        spendable.sort_by_key(|coin| coin.outpoint);
        spendable
    }

    /// A regtest chain whose miner (test key 1) has `count` mature coinbases, and a wallet
    /// holding that key.
    fn funded_wallet(directory: &tempfile::TempDir, count: usize) -> (TestChain, Wallet) {
        let chain = TestChain::regtest_with_mature_coins(count);
        let wallet = Wallet::create_with_keypairs(
            &key_file_path(directory),
            Network::Regtest,
            vec![chain.miner],
        )
        .expect("a new key file");
        (chain, wallet)
    }

    fn input_total(chain: &TestChain, transaction: &Transaction) -> Amount {
        Amount::checked_sum(
            transaction
                .spends()
                .iter()
                .map(|input| chain.utxo[&input.prevout].output.value),
        )
        .expect("in range")
    }

    #[test]
    fn create_then_reopen_keeps_keys_and_default_address() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let created = Wallet::open_or_create(&path, Network::Devnet).expect("created");
        assert_eq!(created.addresses(), vec![created.default_address()]);
        assert_eq!(created.default_public_key_hex().len(), 64);
        assert_eq!(
            created.default_public_key_hex(),
            hex::encode(created.default_address().as_bytes())
        );
        let first_bytes = fs::read(&path).expect("written");
        let reopened = Wallet::open_or_create(&path, Network::Devnet).expect("reopened");
        assert_eq!(reopened.addresses(), created.addresses());
        assert_eq!(reopened.default_address(), created.default_address());
        assert_eq!(
            fs::read(&path).expect("still there"),
            first_bytes,
            "opening never rewrites"
        );

        let other_directory = tempfile::tempdir().expect("temp dir");
        let other = Wallet::open_or_create(&key_file_path(&other_directory), Network::Devnet)
            .expect("created");
        assert_ne!(
            other.default_address(),
            created.default_address(),
            "fresh keys are random"
        );
    }

    #[test]
    fn new_address_is_persisted_before_it_is_returned() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let mut wallet = Wallet::open_or_create(&path, Network::Regtest).expect("created");
        let default_address = wallet.default_address();
        let second = wallet.new_address().expect("second");
        let third = wallet.new_address().expect("third");
        assert_eq!(wallet.addresses(), vec![default_address, second, third]);
        assert!(wallet.owns(&second) && wallet.owns(&third) && wallet.owns(&default_address));
        assert!(!wallet.owns(&test_address(9)));
        assert_eq!(
            wallet.default_address(),
            default_address,
            "the default stays the first key"
        );

        // A second handle reads the file as it is now, as a restarted node would.
        let reopened = Wallet::open_or_create(&path, Network::Regtest).expect("reopened");
        assert_eq!(reopened.addresses(), vec![default_address, second, third]);
        assert!(
            !directory.path().join("wallet.keys.tmp").exists(),
            "no temporary copy of the secrets is left behind"
        );
    }

    #[test]
    fn key_file_is_readable_by_its_owner_only() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let mut wallet = Wallet::open_or_create(&path, Network::Regtest).expect("created");
        assert_eq!(mode_of(&path), KEY_FILE_MODE);
        assert_eq!(KEY_FILE_MODE, 0o600);
        // A rewrite makes a new file: it must be created owner-only too.
        wallet.new_address().expect("new address");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn key_file_of_another_network_is_refused() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        Wallet::open_or_create(&path, Network::Devnet).expect("created");
        let before = fs::read(&path).expect("written");
        let error = Wallet::open_or_create(&path, Network::Regtest).expect_err("wrong network");
        assert!(
            matches!(
                &error,
                WalletError::WrongNetwork { path: error_path, found: Network::Devnet, expected: Network::Regtest }
                    if *error_path == path
            ),
            "{error:?}"
        );
        assert_eq!(fs::read(&path).expect("still there"), before);
    }

    #[test]
    fn damaged_key_file_is_refused_and_left_untouched() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let wallet = Wallet::open_or_create(&path, Network::Regtest).expect("created");
        drop(wallet);
        let good = fs::read_to_string(&path).expect("written");
        // One hex digit of the secret key changed: still a valid key, but not ours.
        let secret_line_start = good.find('\n').expect("a header line") + 1;
        let mut flipped = good.clone().into_bytes();
        flipped[secret_line_start] = if flipped[secret_line_start] == b'a' {
            b'b'
        } else {
            b'a'
        };
        let damaged_versions: Vec<Vec<u8>> = vec![
            flipped,
            Vec::new(),
            b"not a key file\n".to_vec(),
            good.as_bytes()[..good.len() / 2].to_vec(),
        ];
        for damaged in damaged_versions {
            fs::write(&path, &damaged).expect("overwrite for the test");
            let error = Wallet::open_or_create(&path, Network::Regtest).expect_err("damaged");
            assert!(matches!(&error, WalletError::Corrupt { .. }), "{error:?}");
            assert_eq!(
                fs::read(&path).expect("still there"),
                damaged,
                "left as it was"
            );
            let message = error.to_string();
            assert!(
                message.contains("damaged") && message.contains("wallet.keys"),
                "{message}"
            );
        }
    }

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::from_bytes(text.as_bytes()).expect("not empty")
    }

    fn first_line(path: &Path) -> String {
        fs::read_to_string(path)
            .expect("the key file exists")
            .lines()
            .next()
            .expect("a header line")
            .to_owned()
    }

    #[test]
    fn encrypted_wallet_round_trip_with_new_addresses() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let secret = passphrase("correct horse battery staple");
        let mut wallet = Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret)
            .expect("created");
        assert!(wallet.is_encrypted());
        assert_eq!(first_line(&path), "powchain-wallet v2 regtest encrypted");
        assert_eq!(mode_of(&path), 0o600);
        let second = wallet.new_address().expect("second address");
        assert_eq!(first_line(&path), "powchain-wallet v2 regtest encrypted");
        assert_eq!(mode_of(&path), 0o600, "a rewrite is owner-only too");
        let file = fs::read_to_string(&path).expect("written");
        for secret_hex in wallet.secret_keys_hex_for_tests() {
            assert!(!file.contains(&secret_hex[..16]), "a key in the clear");
        }

        let reopened = Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret)
            .expect("reopened");
        assert_eq!(reopened.addresses(), wallet.addresses());
        assert_eq!(reopened.addresses()[1], second);
        assert_eq!(
            reopened.secret_keys_hex_for_tests(),
            wallet.secret_keys_hex_for_tests()
        );
        assert!(!directory.path().join("wallet.keys.tmp").exists());
    }

    #[test]
    fn wrong_or_missing_passphrase_is_refused_and_the_file_left_untouched() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &passphrase("right"))
            .expect("created");
        let before = fs::read(&path).expect("written");

        let error =
            Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &passphrase("wrong"))
                .expect_err("wrong passphrase");
        assert!(
            matches!(&error, WalletError::WrongPassphrase { path: error_path } if *error_path == path),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("passphrase is wrong") && message.contains("wallet.keys"),
            "{message}"
        );
        assert!(!message.contains("wrong\""), "{message}");
        assert_eq!(fs::read(&path).expect("still there"), before);

        let error = Wallet::open_or_create(&path, Network::Regtest).expect_err("no passphrase");
        assert!(
            matches!(&error, WalletError::PassphraseRequired { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("--wallet-passphrase-file"),
            "{error}"
        );
        assert_eq!(fs::read(&path).expect("still there"), before);

        let error =
            Wallet::open_or_create_with_passphrase(&path, Network::Devnet, &passphrase("right"))
                .expect_err("another network");
        assert!(
            matches!(&error, WalletError::WrongNetwork { .. }),
            "{error:?}"
        );
        assert_eq!(fs::read(&path).expect("still there"), before);
    }

    #[test]
    fn tampered_ciphertext_is_refused_and_the_file_left_untouched() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let secret = passphrase("right");
        Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret).expect("created");
        let good = fs::read_to_string(&path).expect("written");
        let position = good.find("ciphertext ").expect("a ciphertext line") + 20;
        let mut tampered = good.clone().into_bytes();
        tampered[position] = if tampered[position] == b'a' {
            b'b'
        } else {
            b'a'
        };
        // Damaged as a disk would: the checksum no longer matches.
        fs::write(&path, &tampered).expect("tamper");
        let error = Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret)
            .expect_err("tampered");
        assert!(matches!(&error, WalletError::Corrupt { .. }), "{error:?}");
        assert_eq!(fs::read(&path).expect("still there"), tampered);

        // Altered on purpose, checksum recomputed: the AEAD tag still refuses it.
        let body_end = good.rfind("checksum ").expect("a checksum line");
        let mut forged = tampered[..body_end].to_vec();
        let checksum = hex::encode(&powchain_consensus::hash::sha256(&forged));
        forged.extend_from_slice(format!("checksum {checksum}\n").as_bytes());
        fs::write(&path, &forged).expect("forge");
        let error = Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret)
            .expect_err("forged");
        assert!(
            matches!(&error, WalletError::WrongPassphrase { .. }),
            "{error:?}"
        );
        assert_eq!(fs::read(&path).expect("still there"), forged);
    }

    #[test]
    fn plaintext_wallet_is_encrypted_in_place_with_the_same_keys() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let mut plaintext = Wallet::open_or_create(&path, Network::Regtest).expect("created");
        plaintext.new_address().expect("second address");
        let addresses = plaintext.addresses();
        let secrets = plaintext.secret_keys_hex_for_tests();
        drop(plaintext);
        assert_eq!(first_line(&path), "powchain-wallet v1 regtest");
        // Plaintext files still read as they are.
        let still_plain = Wallet::open_or_create(&path, Network::Regtest).expect("v1 reads");
        assert!(!still_plain.is_encrypted());
        assert_eq!(still_plain.addresses(), addresses);
        drop(still_plain);

        let secret = passphrase("upgrade me");
        let encrypted = Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret)
            .expect("encrypted in place");
        assert!(encrypted.is_encrypted());
        assert_eq!(encrypted.addresses(), addresses);
        assert_eq!(first_line(&path), "powchain-wallet v2 regtest encrypted");
        assert_eq!(mode_of(&path), 0o600);
        let file = fs::read_to_string(&path).expect("written");
        for secret_hex in &secrets {
            assert!(!file.contains(&secret_hex[..16]), "a key left in the clear");
        }
        assert!(!directory.path().join("wallet.keys.tmp").exists());
        drop(encrypted);

        let reopened = Wallet::open_or_create_with_passphrase(&path, Network::Regtest, &secret)
            .expect("reopened");
        assert_eq!(reopened.secret_keys_hex_for_tests(), secrets);
    }

    #[test]
    fn encrypting_in_place_is_atomic_a_failed_write_leaves_the_plaintext_file() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let plaintext = Wallet::open_or_create(&path, Network::Regtest).expect("created");
        let addresses = plaintext.addresses();
        drop(plaintext);
        let before = fs::read(&path).expect("written");
        // The temporary file cannot be made: a directory sits at its name.
        let blocker = directory.path().join("wallet.keys.tmp");
        fs::create_dir(&blocker).expect("block the temporary name");
        let error = Wallet::open_or_create_with_passphrase(
            &path,
            Network::Regtest,
            &passphrase("upgrade me"),
        )
        .expect_err("the write fails");
        assert!(matches!(&error, WalletError::Io { .. }), "{error:?}");
        assert_eq!(
            fs::read(&path).expect("still there"),
            before,
            "v1 as it was"
        );

        fs::remove_dir(&blocker).expect("unblock");
        let reopened = Wallet::open_or_create(&path, Network::Regtest).expect("still v1");
        assert_eq!(reopened.addresses(), addresses);
    }

    #[test]
    fn debug_of_an_encrypted_wallet_shows_no_secret() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = key_file_path(&directory);
        let wallet = Wallet::open_or_create_with_passphrase(
            &path,
            Network::Regtest,
            &passphrase("hunter2-passphrase"),
        )
        .expect("created");
        let printed = format!("{wallet:?} {wallet:#?}");
        assert!(printed.contains("encrypted: true"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        for secret_hex in wallet.secret_keys_hex_for_tests() {
            assert!(!printed.contains(&secret_hex[..16]), "{printed}");
        }
    }

    #[test]
    fn debug_output_shows_addresses_not_secrets() {
        let directory = tempfile::tempdir().expect("temp dir");
        let key = test_key(7);
        let wallet =
            Wallet::create_with_keypairs(&key_file_path(&directory), Network::Devnet, vec![key])
                .expect("created");
        let printed = format!("{wallet:?} {wallet:#?}");
        let secret_hex = hex::encode(&key.to_secret_bytes());
        assert!(!printed.contains(&secret_hex), "{printed}");
        assert!(!printed.contains(&secret_hex[..16]), "{printed}");
        assert!(printed.contains(&wallet.default_address().to_bech32(Network::Devnet)));
        // The key file does hold it: the test would be vacuous otherwise.
        let file = fs::read_to_string(key_file_path(&directory)).expect("written");
        assert!(file.contains(&secret_hex));
    }

    /// `"feeRate": 10000000` (a fee mistaken for a rate) once made a 187-byte payment
    /// that paid 18.7 coins to the miner.
    #[test]
    fn a_fee_above_the_wallet_s_maximum_is_refused_and_one_at_it_is_paid() {
        let directory = tempfile::tempdir().expect("temp dir");
        let (chain, wallet) = funded_wallet(&directory, 5);
        let available = spendable_coins(&chain);
        let amount = Amount::ONE_COIN;
        let error = wallet
            .build_payment(
                &available,
                test_address(2),
                amount,
                FeeRate::from_units_per_byte(10_000_000),
            )
            .expect_err("18.7 coins of fee");
        assert!(
            matches!(error, WalletError::FeeTooHigh { max, .. } if max == max_payment_fee()),
            "{error:?}"
        );
        // A one-input payment with change is 187 bytes: the highest whole rate under the
        // maximum is paid.
        let rate = max_payment_fee().to_units() / 187;
        let payment = wallet
            .build_payment(
                &available,
                test_address(2),
                amount,
                FeeRate::from_units_per_byte(rate),
            )
            .expect("under the maximum");
        assert!(payment.fee <= max_payment_fee());
    }

    #[test]
    fn payment_validates_against_the_chain_and_pays_the_exact_fee() {
        let directory = tempfile::tempdir().expect("temp dir");
        let (mut chain, wallet) = funded_wallet(&directory, 3);
        let mut available = spendable_coins(&chain);
        // A coin of someone else's, as a careless caller might pass: it must be skipped.
        let foreign = SpendableCoin {
            outpoint: OutPoint {
                txid: Txid([9; 32]),
                vout: 0,
            },
            output: TxOut {
                value: Amount::MAX_MONEY,
                address: test_address(9),
            },
            confirmed: true,
        };
        available.push(foreign);
        let recipient = test_address(2);
        let amount = Amount::from_coins(60).expect("in range");

        let payment = wallet
            .build_payment(&available, recipient, amount, DEFAULT_FEE_RATE)
            .expect("three 50-coin coinbases cover 60 coins");
        let transaction = &payment.transaction;

        assert!(!payment.spent.contains(&foreign.outpoint));
        assert_eq!(
            payment.spent.len(),
            2,
            "largest first: two coinbases suffice"
        );
        assert_eq!(
            payment.spent,
            transaction
                .spends()
                .iter()
                .map(|input| input.prevout)
                .collect::<Vec<_>>()
        );
        let size = transaction.compute_size();
        assert_eq!(size, spend_transaction_size(2, 2));
        assert_eq!(Some(payment.fee), DEFAULT_FEE_RATE.fee_for(size));
        let outputs = transaction.output_total().expect("in range");
        assert_eq!(
            input_total(&chain, transaction).checked_sub(outputs),
            Some(payment.fee)
        );
        assert_eq!(
            transaction.outputs[0],
            TxOut {
                value: amount,
                address: recipient
            }
        );
        let change = payment.change.expect("40 coins minus the fee come back");
        assert_eq!(
            transaction.outputs[1],
            TxOut {
                value: change,
                address: wallet.default_address()
            }
        );
        assert_eq!(
            change,
            coins(40 * powchain_consensus::UNITS_PER_COIN - payment.fee.to_units())
        );

        let check = validate_transaction(
            chain.params,
            transaction,
            &chain.utxo,
            chain.height().next(),
            &SequentialVerifier,
        )
        .expect("the payment is valid");
        assert_eq!(check.fee, payment.fee);

        // And a block carrying it connects.
        let block = chain.build(vec![payment.transaction.clone()], payment.fee);
        chain
            .push(block)
            .expect("the block with the payment is valid");
    }

    #[test]
    fn coins_on_other_addresses_are_spent_and_change_goes_to_the_default() {
        let directory = tempfile::tempdir().expect("temp dir");
        let (mut chain, mut wallet) = funded_wallet(&directory, 2);
        let second = wallet.new_address().expect("second address");
        // Move 30 coins to the second address, then spend from there.
        let to_second = wallet
            .build_payment(
                &spendable_coins(&chain),
                second,
                Amount::from_coins(30).expect("ok"),
                DEFAULT_FEE_RATE,
            )
            .expect("funded");
        let block = chain.build(vec![to_second.transaction.clone()], to_second.fee);
        chain.push(block).expect("valid");
        let on_second: Vec<SpendableCoin> = spendable_coins(&chain)
            .into_iter()
            .filter(|coin| coin.output.address == second)
            .collect();
        assert_eq!(on_second.len(), 1);
        let payment = wallet
            .build_payment(
                &on_second,
                test_address(3),
                Amount::from_coins(10).expect("ok"),
                DEFAULT_FEE_RATE,
            )
            .expect("30 coins cover 10");
        assert_eq!(
            payment.transaction.outputs[1].address,
            wallet.default_address()
        );
        validate_transaction(
            chain.params,
            &payment.transaction,
            &chain.utxo,
            chain.height().next(),
            &SequentialVerifier,
        )
        .expect("valid");
    }

    #[test]
    fn refusals_name_exact_numbers() {
        let directory = tempfile::tempdir().expect("temp dir");
        let (chain, wallet) = funded_wallet(&directory, 2);
        let available = spendable_coins(&chain);
        let total =
            Amount::checked_sum(available.iter().map(|coin| coin.output.value)).expect("in range");
        assert_eq!(
            total.to_units(),
            available.len() as u64 * 50 * powchain_consensus::UNITS_PER_COIN
        );

        // Everything: not quite, the fee of spending every coin is missing.
        let fee_all = DEFAULT_FEE_RATE
            .fee_for(spend_transaction_size(available.len(), 1))
            .expect("small");
        let error = wallet
            .build_payment(&available, test_address(2), total, DEFAULT_FEE_RATE)
            .expect_err("the fee is not covered");
        assert!(
            matches!(
                error,
                WalletError::InsufficientFunds { needed, available }
                    if needed == total.checked_add(fee_all).expect("ok") && available == total
            ),
            "{error:?}"
        );
        // Everything minus that fee: exactly enough, and no change.
        let all_but_fee = total.checked_sub(fee_all).expect("ok");
        let payment = wallet
            .build_payment(&available, test_address(2), all_but_fee, DEFAULT_FEE_RATE)
            .expect("exactly enough");
        assert_eq!((payment.fee, payment.change), (fee_all, None));
        assert_eq!(payment.spent.len(), available.len());

        assert!(matches!(
            wallet.build_payment(&available, test_address(2), Amount::ZERO, DEFAULT_FEE_RATE),
            Err(WalletError::ZeroAmount)
        ));

        // Another wallet owns none of these coins.
        let other_directory = tempfile::tempdir().expect("temp dir");
        let stranger = Wallet::open_or_create(&key_file_path(&other_directory), Network::Regtest)
            .expect("created");
        let error = stranger
            .build_payment(&available, test_address(2), coins(1), DEFAULT_FEE_RATE)
            .expect_err("owns nothing");
        assert!(
            matches!(error, WalletError::InsufficientFunds { available, .. } if available == Amount::ZERO),
            "{error:?}"
        );
        let mut transaction = payment.transaction.clone();
        let spent: Vec<TxOut> = transaction
            .spends()
            .iter()
            .map(|input| chain.utxo[&input.prevout].output)
            .collect();
        let error = stranger
            .sign_transaction(&mut transaction, &spent)
            .expect_err("not its keys");
        assert!(
            matches!(error, WalletError::NotOurs { address } if address == chain.utxo[&payment.spent[0]].output.address),
            "{error:?}"
        );
        assert_eq!(
            transaction, payment.transaction,
            "left unsigned by the stranger"
        );
    }

    #[test]
    fn random_coin_sets_give_valid_payments_or_exact_refusals() {
        let directory = tempfile::tempdir().expect("temp dir");
        let wallet = Wallet::create_with_keypairs(
            &key_file_path(&directory),
            Network::Regtest,
            vec![test_key(1), test_key(2)],
        )
        .expect("created");
        let params = Network::Regtest.params();
        let owners = [test_address(1), test_address(2), test_address(3)];
        let strategy = (
            proptest::collection::vec((1u64..300_000, 0usize..3, any::<bool>()), 0..10),
            1u64..1_000_000,
            0u64..4_000,
        );
        let mut runner = TestRunner::new(Config::with_cases(256));
        runner
            .run(&strategy, |(coin_specs, amount, units_per_kilobyte)| {
                let fee_rate = FeeRate::from_units_per_kilobyte(units_per_kilobyte);
                let amount = coins(amount);
                let mut utxo = HashMap::new();
                let mut available = Vec::new();
                for (index, (value, owner, confirmed)) in coin_specs.iter().enumerate() {
                    let output = TxOut {
                        value: coins(*value),
                        address: owners[*owner],
                    };
                    let outpoint = OutPoint {
                        txid: Txid([index as u8 + 1; 32]),
                        vout: index as u32,
                    };
                    utxo.insert(
                        outpoint,
                        Coin {
                            output,
                            height: BlockHeight(1),
                            is_coinbase: false,
                        },
                    );
                    available.push(SpendableCoin {
                        outpoint,
                        output,
                        confirmed: *confirmed,
                    });
                }
                // Address 3 is not the wallet's.
                let owned: Vec<&SpendableCoin> = available
                    .iter()
                    .filter(|coin| coin.output.address != owners[2])
                    .collect();
                let owned_total: u64 = owned.iter().map(|coin| coin.output.value.to_units()).sum();
                let fee_spending_all = fee_rate
                    .fee_for(spend_transaction_size(owned.len().max(1), 1))
                    .expect("small");
                let needed_with_all = amount.to_units() + fee_spending_all.to_units();

                match wallet.build_payment(&available, test_address(9), amount, fee_rate) {
                    Ok(payment) => {
                        let check = validate_transaction(
                            params,
                            &payment.transaction,
                            &utxo,
                            BlockHeight(2),
                            &SequentialVerifier,
                        );
                        prop_assert!(check.is_ok(), "{check:?}");
                        let check = check.expect("checked above");
                        prop_assert_eq!(check.fee, payment.fee);
                        let size = payment.transaction.compute_size();
                        let exact_fee = fee_rate.fee_for(size).expect("small");
                        if payment.change.is_some() {
                            prop_assert_eq!(payment.fee, exact_fee);
                        } else {
                            prop_assert!(payment.fee >= exact_fee);
                        }
                        prop_assert!(
                            check
                                .spent
                                .iter()
                                .all(|coin| wallet.owns(&coin.output.address))
                        );
                    }
                    Err(WalletError::InsufficientFunds { needed, available }) => {
                        prop_assert_eq!(available.to_units(), owned_total);
                        prop_assert_eq!(needed.to_units(), needed_with_all);
                        prop_assert!(owned_total < needed_with_all);
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
                if owned_total >= needed_with_all {
                    prop_assert!(
                        wallet
                            .build_payment(&available, test_address(9), amount, fee_rate)
                            .is_ok(),
                        "spending every owned coin covers the payment"
                    );
                }
                Ok(())
            })
            .expect("the property holds");
    }
}
