//! The key file: the wallet's secret keys on disk, in a small text format, written atomically.
//!
//! Format version 1 (UTF-8, `\n` line ends, the last line ended too):
//!
//! ```text
//!   powchain-wallet v1 <network>          header: magic, format version, `devnet` | `regtest`
//!   <64 hex digits>                       secret key of the default address
//!   <64 hex digits>                       further keys, oldest first (one per new_address)
//!   checksum <64 hex digits>              SHA-256 of every byte above this line
//! ```
//!
//! The checksum is there because a flipped hex digit is still a valid secret key: without
//! it a damaged file would load, silently answer for other addresses, and the coins of the
//! old ones would be lost. A file that fails any check is refused as
//! [`WalletError::Corrupt`] and never rewritten; a file of another network is refused as
//! [`WalletError::WrongNetwork`].
//!
//! Writing (creation and every new key) goes through one path:
//!
//! ```text
//!   <name>.tmp (created with mode 0600, written, fsynced)
//!       ──rename──▶ <name>        (replace: new_address)
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

use crate::error::WalletError;

/// The first word of every key file.
pub const KEY_FILE_MAGIC: &str = "powchain-wallet";

/// The format version this code reads and writes.
pub const KEY_FILE_VERSION: &str = "v1";

/// The permissions of a key file: read and write for its owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

const CHECKSUM_PREFIX: &str = "checksum ";

/// The text of a key file holding `keypairs` (the default key first) for `network`.
pub(crate) fn encode_key_file(network: Network, keypairs: &[Keypair]) -> String {
    let mut text = format!("{KEY_FILE_MAGIC} {KEY_FILE_VERSION} {network}\n");
    for keypair in keypairs {
        text.push_str(&hex::encode(&keypair.to_secret_bytes()));
        text.push('\n');
    }
    let checksum = sha256(text.as_bytes());
    text.push_str(CHECKSUM_PREFIX);
    text.push_str(&hex::encode(&checksum));
    text.push('\n');
    text
}

/// Reads the network and keys from the bytes of a key file.
///
/// # Errors
/// Why the bytes are not a key file, as a sentence that quotes no key material.
pub(crate) fn decode_key_file(bytes: &[u8]) -> Result<(Network, Vec<Keypair>), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err("it does not end with a newline (truncated?)".to_owned());
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let header: Vec<&str> = lines[0].split(' ').collect();
    if header.len() != 3 || header[0] != KEY_FILE_MAGIC {
        return Err(format!(
            "the first line is not `{KEY_FILE_MAGIC} {KEY_FILE_VERSION} <network>`"
        ));
    }
    if header[1] != KEY_FILE_VERSION {
        return Err(format!(
            "its format version is not {KEY_FILE_VERSION}, the only one this powchain reads \
             (written by a newer powchain?)"
        ));
    }
    let Some((checksum_line, key_lines)) = lines[1..].split_last() else {
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
    if key_lines.is_empty() {
        return Err("it holds no keys".to_owned());
    }
    let mut keypairs = Vec::with_capacity(key_lines.len());
    let mut line_by_address = HashMap::with_capacity(key_lines.len());
    for (index, line) in key_lines.iter().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line_number = index + 2;
        let secret = hex::decode_array::<32>(line)
            .map_err(|_| format!("line {line_number} is not 64 hex digits"))?;
        let keypair = Keypair::from_secret_bytes(secret)
            .map_err(|_| format!("line {line_number} is not a valid secp256k1 secret key"))?;
        if let Some(first) = line_by_address.insert(address_of(&keypair), line_number) {
            return Err(format!(
                "line {line_number} holds the key of line {first} again"
            ));
        }
        keypairs.push(keypair);
    }
    Ok((network, keypairs))
}

/// Reads the key file at `path` for `network`; `None` if there is no file.
///
/// # Errors
/// [`WalletError::Io`], [`WalletError::Corrupt`] or [`WalletError::WrongNetwork`].
pub(crate) fn read_key_file(
    path: &Path,
    network: Network,
) -> Result<Option<Vec<Keypair>>, WalletError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path, source)),
    };
    let (found, keypairs) = decode_key_file(&bytes).map_err(|reason| WalletError::Corrupt {
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
    Ok(Some(keypairs))
}

/// Writes a new key file at `path`; never replaces an existing one.
///
/// # Errors
/// [`WalletError::Io`]; its source has kind [`io::ErrorKind::AlreadyExists`] if a file
/// appeared at `path` meanwhile (the caller then reads that one).
pub(crate) fn create_key_file(
    path: &Path,
    network: Network,
    keypairs: &[Keypair],
) -> Result<(), WalletError> {
    write_atomically(
        path,
        &encode_key_file(network, keypairs),
        Placement::CreateNew,
    )
}

/// Replaces the key file at `path` with one holding `keypairs`.
///
/// # Errors
/// [`WalletError::Io`]; the old file is then unchanged.
pub(crate) fn replace_key_file(
    path: &Path,
    network: Network,
    keypairs: &[Keypair],
) -> Result<(), WalletError> {
    write_atomically(
        path,
        &encode_key_file(network, keypairs),
        Placement::Replace,
    )
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

    #[test]
    fn text_round_trip() {
        for network in Network::ALL {
            let text = encode_key_file(network, &keys());
            assert!(text.starts_with(&format!("powchain-wallet v1 {network}\n")));
            assert_eq!(text.lines().count(), 5);
            assert_eq!(
                decode_key_file(text.as_bytes()),
                Ok((network, keys())),
                "{text}"
            );
        }
    }

    #[test]
    fn every_kind_of_damage_is_named_without_quoting_keys() {
        let good = encode_key_file(Network::Regtest, &keys());
        let secret_hex = hex::encode(&keys()[1].to_secret_bytes());
        let flip_one_digit = {
            let mut bytes = good.clone().into_bytes();
            let position = good.find(&secret_hex).expect("key 2 is in the file") + 5;
            bytes[position] = if bytes[position] == b'0' { b'1' } else { b'0' };
            bytes
        };
        let without_checksum: String = good
            .lines()
            .take(4)
            .map(|line| format!("{line}\n"))
            .collect();
        let duplicate = {
            let mut text = format!("powchain-wallet v1 regtest\n{secret_hex}\n{secret_hex}\n");
            let checksum = hex::encode(&sha256(text.as_bytes()));
            text.push_str(&format!("checksum {checksum}\n"));
            text
        };
        let no_keys = {
            let mut text = "powchain-wallet v1 regtest\n".to_owned();
            let checksum = hex::encode(&sha256(text.as_bytes()));
            text.push_str(&format!("checksum {checksum}\n"));
            text
        };
        let zero_key = {
            let mut text = format!("powchain-wallet v1 regtest\n{}\n", "0".repeat(64));
            let checksum = hex::encode(&sha256(text.as_bytes()));
            text.push_str(&format!("checksum {checksum}\n"));
            text
        };
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
                good.replacen(" v1 ", " v2 ", 1).into_bytes(),
                "version",
            ),
            ("flipped digit", flip_one_digit, "checksum"),
            ("truncated", without_checksum.into_bytes(), "checksum"),
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
