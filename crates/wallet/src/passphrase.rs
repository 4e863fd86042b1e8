//! `Passphrase`: the secret that unlocks an encrypted key file, read from a file of its own.
//!
//! The passphrase comes from a file, never from a command-line value or an environment
//! variable holding the passphrase itself: those land in shell history, in `ps` output and
//! in `/proc/<pid>/environ`, which other users or tools may read. A file can be kept at mode
//! 0600 (or on a tmpfs, or be a pipe a secrets manager feeds).
//!
//! The bytes are wiped from memory when the `Passphrase` is dropped, and `Debug` never shows
//! them.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::WalletError;

/// The secret that unlocks an encrypted key file: any bytes, at least one.
#[derive(Clone)]
pub struct Passphrase {
    bytes: Zeroizing<Vec<u8>>,
}

impl Passphrase {
    /// Reads the passphrase from the file at `path`: its whole content, less one final line
    /// end (`\n` or `\r\n`, as `echo` and editors leave one), so `echo secret > file` works.
    ///
    /// Warns (and goes on) if group or others may read the file.
    ///
    /// # Errors
    /// [`WalletError::PassphraseFile`] if the file cannot be read,
    /// [`WalletError::EmptyPassphrase`] if nothing is left once the line end is removed.
    pub fn read_from_file(path: &Path) -> Result<Passphrase, WalletError> {
        let mut bytes =
            Zeroizing::new(
                fs::read(path).map_err(|source| WalletError::PassphraseFile {
                    path: path.to_owned(),
                    source,
                })?,
            );
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(WalletError::EmptyPassphrase {
                path: path.to_owned(),
            });
        }
        if let Ok(metadata) = fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if metadata.is_file() && mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "the wallet passphrase file is accessible to other users; run `chmod 600` on it"
                );
            }
        }
        Ok(Passphrase { bytes })
    }

    /// A passphrase from bytes the caller already holds (tests, or a caller with its own
    /// secret source). `None` if `bytes` is empty: an empty passphrase protects nothing.
    pub fn from_bytes(bytes: &[u8]) -> Option<Passphrase> {
        if bytes.is_empty() {
            return None;
        }
        Some(Passphrase {
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The secret bytes, for the key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Passphrase {
    /// Never the bytes, not even their length: a `Debug` print may end up in a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(content: &[u8]) -> Result<Passphrase, WalletError> {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("passphrase");
        fs::write(&path, content).expect("write the passphrase file");
        Passphrase::read_from_file(&path)
    }

    #[test]
    fn one_final_line_end_is_dropped_and_nothing_else() {
        for (content, expected) in [
            (&b"correct horse"[..], &b"correct horse"[..]),
            (b"correct horse\n", b"correct horse"),
            (b"correct horse\r\n", b"correct horse"),
            (b"correct horse\n\n", b"correct horse\n"),
            (b" spaces kept ", b" spaces kept "),
            (b"\xff\x00binary", b"\xff\x00binary"),
        ] {
            let passphrase = read(content).expect("a passphrase");
            assert_eq!(passphrase.as_bytes(), expected, "{content:?}");
        }
    }

    #[test]
    fn empty_or_missing_files_are_refused_by_name() {
        for content in [&b""[..], b"\n", b"\r\n"] {
            let error = read(content).expect_err("empty");
            assert!(
                matches!(&error, WalletError::EmptyPassphrase { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("passphrase"), "{error}");
        }
        let error = Passphrase::read_from_file(Path::new("/nonexistent/powchain-passphrase"))
            .expect_err("missing");
        assert!(
            matches!(&error, WalletError::PassphraseFile { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("/nonexistent/powchain-passphrase"),
            "{error}"
        );
        assert!(Passphrase::from_bytes(b"").is_none());
    }

    #[test]
    fn debug_never_shows_the_passphrase() {
        let passphrase = Passphrase::from_bytes(b"hunter2-but-longer").expect("not empty");
        let printed = format!("{passphrase:?} {passphrase:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(format!("{passphrase:?}"), "Passphrase(<redacted>)");
    }
}
