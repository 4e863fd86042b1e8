//! What handlers take from a request's path and query string, checked in one step into the
//! value they use: page sizes, hashes and ids, addresses. Each failure is a 400 that names
//! the parameter and says what was wrong. Request bodies are `body.rs`.

use std::fmt::Display;
use std::str::FromStr;

use powchain_consensus::{Address, Network};

use crate::error::ApiError;

/// How many items a page holds: `given`, or `default` when the query leaves it out.
///
/// # Errors
/// A 400 naming `parameter` unless the size is 1 to `max`.
pub(crate) fn page_size(
    parameter: &str,
    given: Option<u64>,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let size = given.unwrap_or(default);
    if size == 0 || size > max {
        return Err(ApiError::bad_request(format!(
            "{parameter} must be between 1 and {max}, got {size}"
        )));
    }
    Ok(size)
}

/// `text` as a hash or id (`BlockHash`, `Txid`: 64 hex digits).
///
/// # Errors
/// A 400 naming `what` and quoting `text`.
pub(crate) fn parse_hash<T>(what: &str, text: &str) -> Result<T, ApiError>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|error| ApiError::bad_request(format!("invalid {what} {text:?}: {error}")))
}

/// `text`, without surrounding white space, as an address of `network`.
///
/// # Errors
/// A 400 naming `what` and quoting `text` as sent.
pub(crate) fn parse_address(what: &str, text: &str, network: Network) -> Result<Address, ApiError> {
    Address::parse(text.trim(), network)
        .map_err(|error| ApiError::bad_request(format!("invalid {what} {text:?}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use powchain_consensus::BlockHash;

    #[test]
    fn page_sizes_default_and_stay_between_one_and_the_most() {
        assert_eq!(page_size("limit", None, 20, 100), Ok(20));
        assert_eq!(page_size("limit", Some(100), 20, 100), Ok(100));
        for size in [0, 101] {
            let error = page_size("last", Some(size), 20, 100).expect_err("refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                error.message,
                format!("last must be between 1 and 100, got {size}")
            );
        }
    }

    #[test]
    fn bad_hashes_and_addresses_are_400s_quoting_what_was_sent() {
        let hash = "ab".repeat(32);
        assert_eq!(
            parse_hash::<BlockHash>("block hash", &hash).map(|hash| hash.to_string()),
            Ok(hash)
        );
        let error = parse_hash::<BlockHash>("block hash", "zz").expect_err("not hex");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("invalid block hash \"zz\": "));
        let error = parse_address("recipient", " nope ", Network::Regtest).expect_err("refused");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("invalid recipient \" nope \": "));
    }
}
