//! The key file: the wallet's secret keys on disk, in a small text format, written
//! atomically, in the clear (format v1) or sealed with a passphrase (format v2).
//!
//! Format version 1, plaintext (UTF-8, `\n` line ends, the last line ended too):
//!
//! ```text
//!   powchain-wallet v1 <network>          header: magic, format version, `devnet` | `regtest`
//!   <64 hex digits>                       secret key of the default address
//!   <64 hex digits>                       further keys, oldest first (one per new_address)
//!   checksum <64 hex digits>              SHA-256 of every byte above this line
//! ```
//!
//! Format version 2, encrypted (same conventions; [`crate::encryption`] says why these
//! algorithms):
//!
//! ```text
//!   powchain-wallet v2 <network> encrypted     header
//!   kdf argon2id v19 m=65536 t=3 p=1           Argon2id version 0x13: memory (KiB), passes, lanes
//!   salt <32 hex digits>                       16 random bytes, drawn when the file is first sealed
//!   nonce <48 hex digits>                      24 random bytes, drawn anew at every write
//!   ciphertext <hex digits>                    XChaCha20-Poly1305 of a whole v1 file, tag last
//!   checksum <64 hex digits>                   SHA-256 of every byte above this line
//! ```
//!
//! The first four lines (line ends included) are the AEAD's associated data, so the header
//! cannot be changed either (another network named, weaker parameters written) without the
//! file failing to open. The sealed content is a complete v1 file, with its own network and
//! checksum, checked again once opened.
//!
//! The checksum is there because a flipped hex digit is still a valid secret key: without
//! it a damaged v1 file would load, silently answer for other addresses, and the coins of the
//! old ones would be lost. In a v2 file the AEAD already catches every change; the checksum
//! tells accidental damage ([`WalletError::Corrupt`]) from a wrong passphrase
//! ([`WalletError::WrongPassphrase`]), which would otherwise look the same. A file that fails
//! any check is refused and never rewritten; a file of another network is refused as
//! [`WalletError::WrongNetwork`].
//!
//! Writing (creation, every new key, and sealing a v1 file with a passphrase) goes through
//! one path:
//!
//! ```text
//!   <name>.tmp (created with mode 0600, written, fsynced)
//!       ──rename──▶ <name>        (replace: new_address, v1 → v2)
//!       ──link────▶ <name>        (create: fails if <name> appeared meanwhile, never clobbers)
//!   fsync the directory, so the rename or link itself survives a crash
//! ```
//!
//! so a crash at any point leaves either the old file or the new one, never a mix, and the
//! secrets are never readable by other users, not even for a moment.
//!
//! Reasons given for a damaged file never quote its content: that content is secret keys.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use powchain_consensus::hash::sha256;
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::address_of;
use powchain_consensus::{Network, hex};
use zeroize::Zeroizing;

use crate::encryption::{KdfParams, KeyFileCipher, NONCE_BYTES, SALT_BYTES};
use crate::error::WalletError;
use crate::passphrase::Passphrase;

/// The first word of every key file.
pub const KEY_FILE_MAGIC: &str = "powchain-wallet";

/// The version of the plaintext format.
pub const PLAINTEXT_KEY_FILE_VERSION: &str = "v1";

/// The version of the encrypted format.
pub const ENCRYPTED_KEY_FILE_VERSION: &str = "v2";

/// The last word of an encrypted key file's header.
pub const ENCRYPTED_MARKER: &str = "encrypted";

/// The permissions of a key file: read and write for its owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

const CHECKSUM_PREFIX: &str = "checksum ";
const KDF_PREFIX: &str = "kdf argon2id v19 ";
const SALT_PREFIX: &str = "salt ";
const NONCE_PREFIX: &str = "nonce ";
const CIPHERTEXT_PREFIX: &str = "ciphertext ";
/// Bytes of a hex-encoded secret key line, its line end included.
const KEY_LINE_BYTES: usize = 65;
/// Bytes of the Poly1305 tag at the end of the ciphertext.
const TAG_BYTES: usize = 16;

/// What a key file holds, once read and checked.
pub(crate) enum StoredKeys {
    /// A v1 file: the keys, default first.
    Plaintext(Vec<Keypair>),
    /// A v2 file: the keys still sealed.
    Encrypted(SealedKeys),
}

impl std::fmt::Debug for StoredKeys {
    /// How many keys, or the sealing parameters: never key material.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredKeys::Plaintext(keypairs) => formatter
                .debug_struct("Plaintext")
                .field("keys", &keypairs.len())
                .finish(),
            StoredKeys::Encrypted(sealed) => formatter
                .debug_struct("Encrypted")
                .field("network", &sealed.network)
                .field("kdf", &sealed.kdf)
                .field("ciphertext_bytes", &sealed.ciphertext.len())
                .finish_non_exhaustive(),
        }
    }
}

/// The parts of an encrypted key file, checked but not yet opened.
pub(crate) struct SealedKeys {
    network: Network,
    kdf: KdfParams,
    salt: [u8; SALT_BYTES],
    nonce: [u8; NONCE_BYTES],
    /// The header lines the AEAD binds to the ciphertext.
    associated_data: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SealedKeys {
    /// Derives the key from `passphrase` (Argon2id: this takes a moment) and opens the keys.
    /// Returns them with the cipher, so later writes need not derive again.
    ///
    /// # Errors
    /// [`WalletError::WrongPassphrase`] if the passphrase does not open them,
    /// [`WalletError::Corrupt`] if what they open to is not a key file of the same network,
    /// [`WalletError::Cipher`] if Argon2id fails.
    pub(crate) fn open(
        &self,
        path: &Path,
        passphrase: &Passphrase,
    ) -> Result<(Vec<Keypair>, KeyFileCipher), WalletError> {
        let cipher = KeyFileCipher::derive(passphrase, self.kdf, self.salt)?;
        let plaintext = cipher
            .open(&self.nonce, &self.associated_data, &self.ciphertext)
            .map_err(|_| WalletError::WrongPassphrase {
                path: path.to_owned(),
            })?;
        let corrupt = |reason: String| WalletError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        match decode_key_file(&plaintext)
            .map_err(|reason| corrupt(format!("its encrypted key list is damaged: {reason}")))?
        {
            (network, StoredKeys::Plaintext(keypairs)) if network == self.network => {
                Ok((keypairs, cipher))
            }
            (network, StoredKeys::Plaintext(_)) => Err(corrupt(format!(
                "its header names {} but its encrypted key list {network}",
                self.network
            ))),
            (_, StoredKeys::Encrypted(_)) => Err(corrupt(
                "its encrypted key list is itself an encrypted key file".to_owned(),
            )),
        }
    }
}

/// The text of a plaintext (v1) key file holding `keypairs` (the default key first).
pub(crate) fn encode_plaintext_key_file(
    network: Network,
    keypairs: &[Keypair],
) -> Zeroizing<String> {
    let header = format!("{KEY_FILE_MAGIC} {PLAINTEXT_KEY_FILE_VERSION} {network}\n");
    // Sized up front so the string never reallocates, which would leave copies of the
    // secrets in freed memory that nothing wipes.
    let capacity = header.len() + keypairs.len() * KEY_LINE_BYTES + CHECKSUM_PREFIX.len() + 65;
    let mut text = Zeroizing::new(String::with_capacity(capacity));
    text.push_str(&header);
    for keypair in keypairs {
        let secret = Zeroizing::new(keypair.to_secret_bytes());
        let secret_hex = Zeroizing::new(hex::encode(secret.as_ref()));
        text.push_str(&secret_hex);
        text.push('\n');
    }
    push_checksum_line(&mut text);
    text
}

/// The text of a key file holding `keypairs`: sealed with `cipher` (v2, with a fresh nonce)
/// if there is one, else plaintext (v1).
///
/// # Errors
/// [`WalletError::Randomness`] or [`WalletError::Cipher`] (sealing only).
pub(crate) fn encode_key_file(
    network: Network,
    keypairs: &[Keypair],
    cipher: Option<&KeyFileCipher>,
) -> Result<Zeroizing<String>, WalletError> {
    let plaintext = encode_plaintext_key_file(network, keypairs);
    let Some(cipher) = cipher else {
        return Ok(plaintext);
    };
    let nonce = KeyFileCipher::fresh_nonce()?;
    let kdf = cipher.kdf();
    let mut text = Zeroizing::new(format!(
        "{KEY_FILE_MAGIC} {ENCRYPTED_KEY_FILE_VERSION} {network} {ENCRYPTED_MARKER}\n\
         {KDF_PREFIX}m={} t={} p={}\n\
         {SALT_PREFIX}{}\n\
         {NONCE_PREFIX}{}\n",
        kdf.memory_kib,
        kdf.iterations,
        kdf.parallelism,
        hex::encode(&cipher.salt()),
        hex::encode(&nonce),
    ));
    let sealed = cipher.seal(&nonce, text.as_bytes(), plaintext.as_bytes())?;
    text.push_str(CIPHERTEXT_PREFIX);
    text.push_str(&hex::encode(&sealed));
    text.push('\n');
    push_checksum_line(&mut text);
    Ok(text)
}

fn push_checksum_line(text: &mut String) {
    let checksum = sha256(text.as_bytes());
    text.push_str(CHECKSUM_PREFIX);
    text.push_str(&hex::encode(&checksum));
    text.push('\n');
}

/// Reads the network and keys (plain or sealed) from the bytes of a key file.
///
/// # Errors
/// Why the bytes are not a key file, as a sentence that quotes no key material.
pub(crate) fn decode_key_file(bytes: &[u8]) -> Result<(Network, StoredKeys), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err("it does not end with a newline (truncated?)".to_owned());
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let header: Vec<&str> = lines[0].split(' ').collect();
    let expected_header = format!(
        "the first line is not `{KEY_FILE_MAGIC} {PLAINTEXT_KEY_FILE_VERSION} <network>` or \
         `{KEY_FILE_MAGIC} {ENCRYPTED_KEY_FILE_VERSION} <network> {ENCRYPTED_MARKER}`"
    );
    if header.len() < 2 || header[0] != KEY_FILE_MAGIC {
        return Err(expected_header);
    }
    let encrypted = match header[1] {
        PLAINTEXT_KEY_FILE_VERSION => false,
        ENCRYPTED_KEY_FILE_VERSION => true,
        _ => {
            return Err(format!(
                "its format version is neither {PLAINTEXT_KEY_FILE_VERSION} nor \
                 {ENCRYPTED_KEY_FILE_VERSION}, the ones this powchain reads (written by a newer \
                 powchain?)"
            ));
        }
    };
    let header_is_complete = if encrypted {
        header.len() == 4 && header[3] == ENCRYPTED_MARKER
    } else {
        header.len() == 3
    };
    if !header_is_complete {
        return Err(expected_header);
    }
    let Some((checksum_line, content_lines)) = lines[1..].split_last() else {
        return Err("it ends after the first line (truncated?)".to_owned());
    };
    let stored_checksum = checksum_line
        .strip_prefix(CHECKSUM_PREFIX)
        .and_then(|digits| hex::decode_array::<32>(digits).ok())
        .ok_or_else(|| "the last line is not `checksum <64 hex digits>` (truncated?)".to_owned())?;
    // Everything before the checksum line: the text minus that line and its newline.
    let checked_length = text.len() - checksum_line.len() - 1;
    if sha256(&bytes[..checked_length]) != stored_checksum {
        return Err("its checksum does not match its content".to_owned());
    }
    let network: Network = header[2]
        .parse()
        .map_err(|_| "the network named on its first line is unknown".to_owned())?;
    let stored = if encrypted {
        // The header line and the three lines after it, line ends included.
        let associated_length = lines
            .iter()
            .take(4)
            .map(|line| line.len() + 1)
            .sum::<usize>()
            .min(checked_length);
        StoredKeys::Encrypted(decode_sealed_lines(
            network,
            content_lines,
            &bytes[..associated_length],
        )?)
    } else {
        StoredKeys::Plaintext(decode_key_lines(content_lines)?)
    };
    Ok((network, stored))
}

/// The secret key lines of a v1 file.
fn decode_key_lines(key_lines: &[&str]) -> Result<Vec<Keypair>, String> {
    if key_lines.is_empty() {
        return Err("it holds no keys".to_owned());
    }
    let mut keypairs = Vec::with_capacity(key_lines.len());
    let mut line_by_address = HashMap::with_capacity(key_lines.len());
    for (index, line) in key_lines.iter().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line_number = index + 2;
        let secret = Zeroizing::new(
            hex::decode_array::<32>(line)
                .map_err(|_| format!("line {line_number} is not 64 hex digits"))?,
        );
        let keypair = Keypair::from_secret_bytes(*secret)
            .map_err(|_| format!("line {line_number} is not a valid secp256k1 secret key"))?;
        if let Some(first) = line_by_address.insert(address_of(&keypair), line_number) {
            return Err(format!(
                "line {line_number} holds the key of line {first} again"
            ));
        }
        keypairs.push(keypair);
    }
    Ok(keypairs)
}

/// The `kdf`, `salt`, `nonce` and `ciphertext` lines of a v2 file.
fn decode_sealed_lines(
    network: Network,
    lines: &[&str],
    associated_data: &[u8],
) -> Result<SealedKeys, String> {
    let [kdf_line, salt_line, nonce_line, ciphertext_line] = lines else {
        return Err(format!(
            "it has {} lines between its header and its checksum, an encrypted key file has 4 \
             (kdf, salt, nonce, ciphertext)",
            lines.len()
        ));
    };
    let kdf = decode_kdf_line(kdf_line)
        .ok_or_else(|| format!("line 2 is not `{KDF_PREFIX}m=<KiB> t=<passes> p=<lanes>`"))?;
    kdf.validate()?;
    let salt = salt_line
        .strip_prefix(SALT_PREFIX)
        .and_then(|digits| hex::decode_array::<SALT_BYTES>(digits).ok())
        .ok_or_else(|| format!("line 3 is not `salt <{} hex digits>`", 2 * SALT_BYTES))?;
    let nonce = nonce_line
        .strip_prefix(NONCE_PREFIX)
        .and_then(|digits| hex::decode_array::<NONCE_BYTES>(digits).ok())
        .ok_or_else(|| format!("line 4 is not `nonce <{} hex digits>`", 2 * NONCE_BYTES))?;
    let ciphertext = ciphertext_line
        .strip_prefix(CIPHERTEXT_PREFIX)
        .and_then(|digits| hex::decode(digits).ok())
        .ok_or_else(|| "line 5 is not `ciphertext <hex digits>`".to_owned())?;
    if ciphertext.len() <= TAG_BYTES {
        return Err(format!(
            "its ciphertext is {} bytes, too short to hold any key and the {TAG_BYTES}-byte tag",
            ciphertext.len()
        ));
    }
    Ok(SealedKeys {
        network,
        kdf,
        salt,
        nonce,
        associated_data: associated_data.to_vec(),
        ciphertext,
    })
}

/// `kdf argon2id v19 m=<KiB> t=<passes> p=<lanes>`, exactly.
fn decode_kdf_line(line: &str) -> Option<KdfParams> {
    let mut fields = line.strip_prefix(KDF_PREFIX)?.split(' ');
    let mut number = |name: &str| -> Option<u32> {
        let digits = fields.next()?.strip_prefix(name)?;
        // Digits only: `parse` would also take a sign.
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let kdf = KdfParams {
        memory_kib: number("m=")?,
        iterations: number("t=")?,
        parallelism: number("p=")?,
    };
    fields.next().is_none().then_some(kdf)
}

/// Reads the key file at `path` for `network`; `None` if there is no file. An encrypted
/// file is returned still sealed.
///
/// # Errors
/// [`WalletError::Io`], [`WalletError::Corrupt`] or [`WalletError::WrongNetwork`].
pub(crate) fn read_key_file(
    path: &Path,
    network: Network,
) -> Result<Option<StoredKeys>, WalletError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path, source)),
    };
    let (found, stored) = decode_key_file(&bytes).map_err(|reason| WalletError::Corrupt {
        path: path.to_owned(),
        reason,
    })?;
    if found != network {
        return Err(WalletError::WrongNetwork {
            path: path.to_owned(),
            found,
            expected: network,
        });
    }
    warn_if_readable_by_others(path);
    Ok(Some(stored))
}

/// Writes a new key file at `path`, sealed with `cipher` if given; never replaces an
/// existing one.
///
/// # Errors
/// [`WalletError::Io`]; its source has kind [`io::ErrorKind::AlreadyExists`] if a file
/// appeared at `path` meanwhile (the caller then reads that one). [`WalletError::Randomness`]
/// or [`WalletError::Cipher`] when sealing.
pub(crate) fn create_key_file(
    path: &Path,
    network: Network,
    keypairs: &[Keypair],
    cipher: Option<&KeyFileCipher>,
) -> Result<(), WalletError> {
    let text = encode_key_file(network, keypairs, cipher)?;
    write_atomically(path, &text, Placement::CreateNew)
}

/// Replaces the key file at `path` with one holding `keypairs`, sealed with `cipher` if
/// given.
///
/// # Errors
/// [`WalletError::Io`], [`WalletError::Randomness`] or [`WalletError::Cipher`]; the old
/// file is then unchanged.
pub(crate) fn replace_key_file(
    path: &Path,
    network: Network,
    keypairs: &[Keypair],
    cipher: Option<&KeyFileCipher>,
) -> Result<(), WalletError> {
    let text = encode_key_file(network, keypairs, cipher)?;
    write_atomically(path, &text, Placement::Replace)
}

/// How the finished temporary file takes the key file's name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    /// Hard link, which fails if the name is taken: creating must never clobber a key file
    /// another process wrote meanwhile, its keys may already have been handed out.
    CreateNew,
    /// Rename, which atomically replaces the old file.
    Replace,
}

fn write_atomically(path: &Path, text: &str, placement: Placement) -> Result<(), WalletError> {
    let temporary_path = temporary_path_for(path)?;
    // A leftover from a crash: it never became the key file (that takes the rename or link
    // below), so the key file is still authoritative and the leftover can go.
    match fs::remove_file(&temporary_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(&temporary_path, source)),
    }
    let written = write_temporary_file(&temporary_path, text).and_then(|()| match placement {
        Placement::Replace => {
            fs::rename(&temporary_path, path).map_err(|source| io_error(path, source))
        }
        Placement::CreateNew => {
            fs::hard_link(&temporary_path, path).map_err(|source| io_error(path, source))
        }
    });
    // After a rename the temporary name is gone; after a link, or a failure, it is a second
    // copy of secrets that nothing needs.
    match fs::remove_file(&temporary_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            tracing::warn!(
                path = %temporary_path.display(),
                %source,
                "could not remove the wallet's temporary key file"
            );
        }
    }
    written?;
    sync_directory_of(path)
}

fn write_temporary_file(temporary_path: &Path, text: &str) -> Result<(), WalletError> {
    // The mode is set by the system call that creates the file, so there is no moment in
    // which the file exists with looser permissions (the umask can only remove bits).
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(temporary_path)
        .map_err(|source| io_error(temporary_path, source))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(temporary_path, source))
}

/// `<dir>/<name>.tmp` beside `<dir>/<name>`: the same directory, so the same file system,
/// which is what makes the rename atomic.
fn temporary_path_for(path: &Path) -> Result<PathBuf, WalletError> {
    let Some(name) = path.file_name() else {
        return Err(io_error(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the key file path must end in a file name",
            ),
        ));
    };
    let mut temporary_name = name.to_owned();
    temporary_name.push(".tmp");
    Ok(path.with_file_name(temporary_name))
}

/// Makes the directory entry (the rename or link) durable: fsyncing the file alone does not.
fn sync_directory_of(path: &Path) -> Result<(), WalletError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| io_error(directory, source))
}

/// Warns (and goes on) if group or others may read the key file: refusing to start would
/// keep a node from its own coins over a mistake the owner can fix with `chmod 600`.
fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "the wallet key file is accessible to other users; run `chmod 600` on it"
            );
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> WalletError {
    WalletError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::test_key;

    fn keys() -> Vec<Keypair> {
        vec![test_key(1), test_key(2), test_key(3)]
    }

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::from_bytes(text.as_bytes()).expect("not empty")
    }

    fn test_cipher(text: &str) -> KeyFileCipher {
        KeyFileCipher::derive_with_fresh_salt(&passphrase(text), KdfParams::FAST_FOR_TESTS)
            .expect("derived")
    }

    fn plaintext_keys(bytes: &[u8]) -> Result<(Network, Vec<Keypair>), String> {
        match decode_key_file(bytes)? {
            (network, StoredKeys::Plaintext(keypairs)) => Ok((network, keypairs)),
            (_, StoredKeys::Encrypted(_)) => Err("encrypted".to_owned()),
        }
    }

    fn sealed_keys(bytes: &[u8]) -> SealedKeys {
        match decode_key_file(bytes).expect("a key file") {
            (_, StoredKeys::Encrypted(sealed)) => sealed,
            (_, StoredKeys::Plaintext(_)) => panic!("a plaintext file"),
        }
    }

    /// `text` (every line but the checksum) with a correct checksum line appended: how
    /// someone who alters a file on purpose would hide the damage.
    fn with_checksum(text: &str) -> String {
        let mut text = text.to_owned();
        push_checksum_line(&mut text);
        text
    }

    fn without_checksum(text: &str) -> String {
        let checksum_start = text.rfind(CHECKSUM_PREFIX).expect("a checksum line");
        text[..checksum_start].to_owned()
    }

    #[test]
    fn text_round_trip() {
        for network in Network::ALL {
            let text = encode_plaintext_key_file(network, &keys());
            assert!(text.starts_with(&format!("powchain-wallet v1 {network}\n")));
            assert_eq!(text.lines().count(), 5);
            assert_eq!(
                plaintext_keys(text.as_bytes()),
                Ok((network, keys())),
                "{}",
                *text
            );
            let same = encode_key_file(network, &keys(), None).expect("plaintext");
            assert_eq!(*same, *text, "no cipher means v1");
        }
    }

    #[test]
    fn v1_text_is_exactly_the_documented_format() {
        let keypair = test_key(1);
        let secret_hex = hex::encode(&keypair.to_secret_bytes());
        let body = format!("powchain-wallet v1 regtest\n{secret_hex}\n");
        let checksum = hex::encode(&sha256(body.as_bytes()));
        let expected = format!("{body}checksum {checksum}\n");
        assert_eq!(
            *encode_plaintext_key_file(Network::Regtest, &[keypair]),
            expected
        );
        // And a file a user (or an older powchain) wrote that way still reads.
        assert_eq!(
            plaintext_keys(expected.as_bytes()),
            Ok((Network::Regtest, vec![keypair]))
        );
    }

    #[test]
    fn encrypted_round_trip_and_format() {
        for network in Network::ALL {
            let cipher = test_cipher("correct horse battery staple");
            let text = encode_key_file(network, &keys(), Some(&cipher)).expect("sealed");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 6, "{}", *text);
            assert_eq!(lines[0], format!("powchain-wallet v2 {network} encrypted"));
            assert_eq!(lines[1], "kdf argon2id v19 m=8 t=1 p=1");
            assert_eq!(lines[2], format!("salt {}", hex::encode(&cipher.salt())));
            assert!(lines[3].starts_with("nonce ") && lines[3].len() == 6 + 48);
            assert!(lines[4].starts_with("ciphertext "));
            assert!(lines[5].starts_with("checksum "));
            for keypair in keys() {
                let secret_hex = hex::encode(&keypair.to_secret_bytes());
                assert!(!text.contains(&secret_hex[..16]), "a key in the clear");
            }

            let sealed = sealed_keys(text.as_bytes());
            let path = Path::new("wallet.keys");
            let (opened, reopened_cipher) = sealed
                .open(path, &passphrase("correct horse battery staple"))
                .expect("opens");
            assert_eq!(opened, keys());
            assert_eq!(reopened_cipher.salt(), cipher.salt());
            assert_eq!(reopened_cipher.kdf(), KdfParams::FAST_FOR_TESTS);

            let error = sealed
                .open(path, &passphrase("correct horse battery stapler"))
                .map(|_| ())
                .expect_err("a wrong passphrase");
            assert!(
                matches!(&error, WalletError::WrongPassphrase { .. }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn every_write_draws_a_fresh_nonce() {
        let cipher = test_cipher("pass");
        let first = encode_key_file(Network::Regtest, &keys(), Some(&cipher)).expect("sealed");
        let second = encode_key_file(Network::Regtest, &keys(), Some(&cipher)).expect("sealed");
        let nonce = |text: &str| {
            text.lines()
                .find(|line| line.starts_with("nonce "))
                .expect("a nonce line")
                .to_owned()
        };
        assert_ne!(nonce(&first), nonce(&second));
        assert_ne!(*first, *second);
    }

    #[test]
    fn altered_encrypted_files_never_open() {
        let right = passphrase("right");
        let cipher = KeyFileCipher::derive_with_fresh_salt(&right, KdfParams::FAST_FOR_TESTS)
            .expect("derived");
        let good = encode_key_file(Network::Regtest, &keys(), Some(&cipher)).expect("sealed");
        let body = without_checksum(&good);
        let ciphertext_position =
            body.find(CIPHERTEXT_PREFIX).expect("a ciphertext line") + CIPHERTEXT_PREFIX.len() + 10;
        let mut flipped_ciphertext = body.clone().into_bytes();
        flipped_ciphertext[ciphertext_position] = if flipped_ciphertext[ciphertext_position] == b'0'
        {
            b'1'
        } else {
            b'0'
        };
        let flipped_ciphertext = String::from_utf8(flipped_ciphertext).expect("hex stays text");

        // Accidental damage: the checksum catches it, before any key derivation.
        let damaged = format!("{flipped_ciphertext}{}", &good[body.len()..]);
        let reason = decode_key_file(damaged.as_bytes()).expect_err("checksum");
        assert!(reason.contains("checksum"), "{reason}");

        // Deliberate changes with the checksum fixed up: the AEAD refuses them all.
        let altered_cases = [
            ("ciphertext", flipped_ciphertext),
            (
                "network in the header",
                body.replacen(" regtest ", " devnet ", 1),
            ),
            ("weaker parameters", body.replacen("t=1", "t=2", 1)),
            ("salt", {
                let mut other_salt = cipher.salt();
                other_salt[0] ^= 1;
                body.replacen(
                    &format!("salt {}", hex::encode(&cipher.salt())),
                    &format!("salt {}", hex::encode(&other_salt)),
                    1,
                )
            }),
        ];
        for (what, altered) in altered_cases {
            let altered = with_checksum(&altered);
            assert_ne!(altered, *good, "{what}: the case changes something");
            let (_, stored) = decode_key_file(altered.as_bytes()).expect("well-formed");
            let StoredKeys::Encrypted(sealed) = stored else {
                panic!("{what}: still encrypted");
            };
            let error = sealed
                .open(Path::new("wallet.keys"), &right)
                .err()
                .unwrap_or_else(|| panic!("{what}: opened"));
            assert!(
                matches!(&error, WalletError::WrongPassphrase { .. }),
                "{what}: {error:?}"
            );
        }
    }

    #[test]
    fn every_kind_of_damage_is_named_without_quoting_keys() {
        let good = encode_plaintext_key_file(Network::Regtest, &keys()).to_string();
        let secret_hex = hex::encode(&keys()[1].to_secret_bytes());
        let flip_one_digit = {
            let mut bytes = good.clone().into_bytes();
            let position = good.find(&secret_hex).expect("key 2 is in the file") + 5;
            bytes[position] = if bytes[position] == b'0' { b'1' } else { b'0' };
            bytes
        };
        let without_checksum_line: String = good
            .lines()
            .take(4)
            .map(|line| format!("{line}\n"))
            .collect();
        let duplicate = with_checksum(&format!(
            "powchain-wallet v1 regtest\n{secret_hex}\n{secret_hex}\n"
        ));
        let no_keys = with_checksum("powchain-wallet v1 regtest\n");
        let zero_key = with_checksum(&format!("powchain-wallet v1 regtest\n{}\n", "0".repeat(64)));
        let sealed = encode_key_file(Network::Regtest, &keys(), Some(&test_cipher("x")))
            .expect("sealed")
            .to_string();
        let sealed_body = without_checksum(&sealed);
        let sealed_lines: Vec<&str> = sealed_body.lines().collect();
        let v2_without_marker = with_checksum(&sealed_body.replacen(" encrypted\n", "\n", 1));
        let v2_missing_nonce = with_checksum(&format!(
            "{}\n{}\n{}\n{}\n",
            sealed_lines[0], sealed_lines[1], sealed_lines[2], sealed_lines[4]
        ));
        let v2_huge_memory = with_checksum(&sealed_body.replacen("m=8 ", "m=99999999 ", 1));
        let v2_signed_number = with_checksum(&sealed_body.replacen("t=1", "t=+1", 1));
        let v2_short_salt = with_checksum(&sealed_body.replacen("salt ", "salt 00", 1));
        let v2_empty_ciphertext = with_checksum(&format!(
            "{}\n{}\n{}\n{}\nciphertext \n",
            sealed_lines[0], sealed_lines[1], sealed_lines[2], sealed_lines[3]
        ));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", Vec::new(), "newline"),
            ("binary", vec![0xff, 0xfe, b'\n'], "UTF-8"),
            (
                "no final newline",
                good.trim_end().as_bytes().to_vec(),
                "newline",
            ),
            (
                "other magic",
                good.replacen("powchain-wallet", "bitcoin-wallet", 1)
                    .into_bytes(),
                "first line",
            ),
            (
                "other version",
                good.replacen(" v1 ", " v3 ", 1).into_bytes(),
                "version",
            ),
            (
                "v2 header on a v1 body",
                good.replacen(" v1 ", " v2 ", 1).into_bytes(),
                "first line",
            ),
            ("flipped digit", flip_one_digit, "checksum"),
            ("truncated", without_checksum_line.into_bytes(), "checksum"),
            ("crlf", good.replace('\n', "\r\n").into_bytes(), "checksum"),
            (
                "duplicate key",
                duplicate.into_bytes(),
                "line 3 holds the key of line 2",
            ),
            ("no keys", no_keys.into_bytes(), "no keys"),
            (
                "zero key",
                zero_key.into_bytes(),
                "line 2 is not a valid secp256k1 secret key",
            ),
            (
                "v2 without its marker",
                v2_without_marker.into_bytes(),
                "first line",
            ),
            (
                "v2 without a nonce",
                v2_missing_nonce.into_bytes(),
                "has 3 lines",
            ),
            (
                "v2 asking for 95 GiB",
                v2_huge_memory.into_bytes(),
                "m=99999999",
            ),
            ("v2 signed number", v2_signed_number.into_bytes(), "line 2"),
            ("v2 short salt", v2_short_salt.into_bytes(), "line 3"),
            (
                "v2 empty ciphertext",
                v2_empty_ciphertext.into_bytes(),
                "too short",
            ),
        ];
        for (name, bytes, expected) in cases {
            let reason = decode_key_file(&bytes).expect_err(name);
            assert!(reason.contains(expected), "{name}: {reason}");
            assert!(
                !reason.contains(&secret_hex[..16]),
                "{name} quotes a key: {reason}"
            );
        }
    }
}
