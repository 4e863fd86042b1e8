//! The cookie file: the API token in `<data-dir>/.cookie`, where local clients find it.
//!
//! ```text
//!   node start ──ApiToken::generate──▶ .cookie.tmp (mode 0600, fsynced) ──rename──▶ .cookie
//!   client (`powchain mine --data-dir DIR`) ──read_cookie_file──▶ Authorization: Bearer ...
//!   clean stop ──remove_cookie_file (if it still holds this node's token)
//! ```
//!
//! A new token at every start means a token that leaked stops working at the next restart,
//! and nobody has to choose or store a password. Reading the file takes the same rights as
//! reading the wallet: the node's user (the file is owner-only), so the token gives a local
//! client nothing it could not already take. As Bitcoin Core's `.cookie`, on which it is
//! modelled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::auth::ApiToken;

/// The cookie file's name inside the data directory.
pub const COOKIE_FILE_NAME: &str = ".cookie";

/// The cookie file's permissions: read and write for its owner only.
pub const COOKIE_FILE_MODE: u32 = powchain_node::PRIVATE_FILE_MODE;

/// Why the cookie file could not be written or read.
#[derive(Debug, Error)]
pub enum CookieError {
    /// The file system refused.
    #[error("API cookie file {path}: {source}")]
    Io {
        /// The file (or its directory).
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file does not hold a token.
    #[error("API cookie file {path} does not hold a token: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (the content is not quoted: it may be a secret).
        reason: String,
    },
}

/// `<data_dir>/.cookie`.
pub fn cookie_path(data_dir: &Path) -> PathBuf {
    data_dir.join(COOKIE_FILE_NAME)
}

/// Writes `token` to `<data_dir>/.cookie`, replacing any old one atomically: readers see
/// the old token or the new one, never a part. Returns the file's path.
///
/// # Errors
/// [`CookieError::Io`].
pub fn write_cookie_file(data_dir: &Path, token: &ApiToken) -> Result<PathBuf, CookieError> {
    let path = cookie_path(data_dir);
    powchain_node::replace_private_file(&path, token.as_str().as_bytes()).map_err(|error| {
        CookieError::Io {
            path: error.path,
            source: error.source,
        }
    })?;
    Ok(path)
}

/// Reads the token from the cookie file at `path`; `None` if there is no such file.
///
/// # Errors
/// [`CookieError::Io`] if it cannot be read, [`CookieError::Malformed`] if it holds no token.
pub fn read_cookie_file(path: &Path) -> Result<Option<ApiToken>, CookieError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CookieError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    text.parse()
        .map(Some)
        .map_err(|reason| CookieError::Malformed {
            path: path.to_owned(),
            reason,
        })
}

/// Removes the cookie file at `path` if it still holds `token` (a node started since on the
/// same directory keeps its own). Best effort: a stale cookie only holds a dead token.
pub fn remove_cookie_file(path: &Path, token: &ApiToken) {
    match read_cookie_file(path) {
        Ok(Some(stored)) if stored == *token => {
            if let Err(error) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "could not remove the API cookie file");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn written_owner_only_replaced_read_back_and_removed() {
        let directory = tempfile::tempdir().expect("temp dir");
        let first = ApiToken::generate().expect("random");
        let path = write_cookie_file(directory.path(), &first).expect("written");
        assert_eq!(path, directory.path().join(".cookie"));
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_to_string(&path).expect("text"), first.as_str());
        assert_eq!(read_cookie_file(&path).expect("read"), Some(first.clone()));

        let second = ApiToken::generate().expect("random");
        write_cookie_file(directory.path(), &second).expect("replaced");
        assert_eq!(read_cookie_file(&path).expect("read"), Some(second.clone()));
        assert!(!directory.path().join(".cookie.tmp").exists());

        // An old node's token does not remove a newer node's cookie.
        remove_cookie_file(&path, &first);
        assert!(path.exists());
        remove_cookie_file(&path, &second);
        assert!(!path.exists());
        assert_eq!(read_cookie_file(&path).expect("absent is no error"), None);
    }

    #[test]
    fn a_cookie_without_a_token_is_refused_without_quoting_it() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join(".cookie");
        fs::write(&path, "two words\n").expect("write");
        let error = read_cookie_file(&path).expect_err("malformed");
        assert!(matches!(&error, CookieError::Malformed { .. }), "{error:?}");
        assert!(!error.to_string().contains("two words"), "{error}");
    }
}
