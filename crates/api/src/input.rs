//! What handlers take from a request's path and query string, checked in one step into the
//! value they use: the query string (`CheckedQuery`), page sizes, hashes and ids, addresses
//! and payment recipients. Each failure is a 400 that names the parameter and says what was
//! wrong. Request bodies are `body.rs`.
//!
//! **One rule for query strings** (docs/API.md, "Unknown fields and parameters"): every
//! handler takes a `CheckedQuery`, of its own parameters or of `NoParameters`, so a query
//! parameter a route does not know is a 400 naming it and listing the ones the route takes,
//! never silently ignored.

use std::fmt::Display;
use std::str::FromStr;

use axum::extract::{FromRequestParts, MatchedPath, Query};
use axum::http::request::Parts;
use powchain_consensus::{Address, AddressError, Network, hex};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The query parameters of a route: a struct of optional fields with
/// `#[serde(deny_unknown_fields)]`, and their names as a client writes them.
pub(crate) trait QueryParameters: DeserializeOwned {
    /// Every parameter the route takes.
    const NAMES: &'static [&'static str];
}

/// The parameters of a route that takes none.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParameters {}

impl QueryParameters for NoParameters {
    const NAMES: &'static [&'static str] = &[];
}

/// A route's query string, read as `T`: a parameter that is not one of `T::NAMES` is a 400
/// naming it and listing those the route takes; a bad value is a 400 naming its parameter.
#[derive(Debug)]
pub(crate) struct CheckedQuery<T>(pub(crate) T);

/// The query string of a route that takes no parameters: any parameter is refused.
pub(crate) type NoQuery = CheckedQuery<NoParameters>;

impl<T: QueryParameters, S: Send + Sync> FromRequestParts<S> for CheckedQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let route = match parts.extensions.get::<MatchedPath>() {
            Some(matched) => matched.as_str().to_owned(),
            None => parts.uri.path().to_owned(),
        };
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)?;
        let names = pairs.iter().map(|(name, _)| name.as_str());
        check_parameter_names(&format!("{} {route}", parts.method), names, T::NAMES)?;
        let Query(value) = Query::<T>::try_from_uri(&parts.uri)?;
        Ok(CheckedQuery(value))
    }
}

/// Refuses the first of `given` that is not in `accepted`, for `route` (`GET /blocks`).
///
/// # Errors
/// A 400: `unknown query parameter `page`: GET /blocks takes `start`, `limit``.
pub(crate) fn check_parameter_names<'a>(
    route: &str,
    mut given: impl Iterator<Item = &'a str>,
    accepted: &[&str],
) -> Result<(), ApiError> {
    let Some(unknown) = given.find(|name| !accepted.contains(name)) else {
        return Ok(());
    };
    let takes = if accepted.is_empty() {
        "no query parameters".to_owned()
    } else {
        accepted
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(ApiError::bad_request(format!(
        "unknown query parameter `{unknown}`: {route} takes {takes} (docs/API.md)"
    )))
}

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

/// The recipient of a payment: an address of `network`, or a public key written as hex
/// (64 digits x-only, 66 compressed or 130 uncompressed SEC: the tutorial pays public keys),
/// which pays that key's address. Surrounding white space is ignored.
///
/// Text made only of hex digits is read as a key: an address is never all hex (its prefix
/// `pow` is not), so a key of the wrong length is told so, never "invalid checksum".
///
/// # Errors
/// A 400 quoting `text` and saying what it is not.
pub(crate) fn parse_recipient(text: &str, network: Network) -> Result<Address, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Address::parse(trimmed, network).map_err(|error| {
            let hint = match error {
                AddressError::Bech32(_) => format!(
                    " (a recipient is an address such as {}1... or a public key of 64, 66 or 130 hex digits)",
                    network.address_prefix()
                ),
                _ => String::new(),
            };
            ApiError::bad_request(format!("invalid recipient {text:?}: {error}{hint}"))
        });
    }
    let not_a_key = |reason: String| {
        ApiError::bad_request(format!(
            "invalid recipient {text:?}: read as a public key (only hex digits), but {reason}"
        ))
    };
    if !matches!(trimmed.len(), 64 | 66 | 130) {
        return Err(not_a_key(format!(
            "a public key is 64 hex digits (x-only, BIP-340), 66 (compressed SEC) or 130 (uncompressed SEC), got {}",
            trimmed.len()
        )));
    }
    let bytes = hex::decode(trimmed).map_err(|error| not_a_key(error.to_string()))?;
    Address::from_public_key(&bytes).map_err(|error| not_a_key(error.to_string()))
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

    #[test]
    fn unknown_query_parameters_are_named_with_the_ones_the_route_takes() {
        assert_eq!(
            check_parameter_names(
                "GET /blocks",
                ["limit", "start"].into_iter(),
                &["start", "limit"]
            ),
            Ok(())
        );
        let error = check_parameter_names(
            "GET /blocks",
            ["limit", "page"].into_iter(),
            &["start", "limit"],
        )
        .expect_err("refused");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error.message,
            "unknown query parameter `page`: GET /blocks takes `start`, `limit` (docs/API.md)"
        );
        let error = check_parameter_names("GET /status", ["x"].into_iter(), NoParameters::NAMES)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "unknown query parameter `x`: GET /status takes no query parameters (docs/API.md)"
        );
    }

    /// Every name a route lists is a field its query reads (a listed name the struct lacked
    /// would pass the name check, then fail as serde's unknown field).
    #[test]
    fn every_listed_parameter_is_read_by_its_route() {
        fn check<T: QueryParameters + std::fmt::Debug>() {
            for name in T::NAMES {
                let uri: axum::http::Uri = format!("/?{name}=1").parse().expect("a URI");
                if let Err(error) = Query::<T>::try_from_uri(&uri) {
                    panic!("{name}: {}", error.body_text());
                }
            }
        }
        check::<crate::blocks::BlocksQuery>();
        check::<crate::transactions::PoolQuery>();
        check::<crate::wallet::AddressQuery>();
        check::<crate::charts::HeadersQuery>();
        check::<crate::charts::ChartsQuery>();
        check::<NoParameters>();
    }

    #[test]
    fn a_recipient_is_an_address_or_a_public_key_in_hex() {
        let network = Network::Regtest;
        // Secret key 3's x-only key (BIP-340 vector 0) and its SEC forms.
        let x_only = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";
        let address = Address(hex::decode_array(x_only).expect("hex"));
        let uncompressed =
            format!("04{x_only}388f7b0f632de8140fe337e62a37f3566500a99934c2231b6cb9fd7584b8e672");
        for text in [
            x_only.to_owned(),
            x_only.to_uppercase(),
            format!("02{x_only}"),
            format!(" 03{x_only}\n"),
            uncompressed,
            address.to_bech32(network),
        ] {
            assert_eq!(parse_recipient(&text, network), Ok(address), "{text}");
        }
        for (text, expected) in [
            (
                "abcd",
                "read as a public key (only hex digits), but a public key is 64 hex digits (x-only, BIP-340), 66 (compressed SEC) or 130 (uncompressed SEC), got 4",
            ),
            (&x_only[1..], "got 63"),
            (
                &"0".repeat(64),
                "the 32 bytes are not a public key on secp256k1",
            ),
            (
                &format!("05{x_only}"),
                "the 33 bytes are not a public key on secp256k1",
            ),
            (
                "hello",
                "not a bech32m address: parse failed (a recipient is an address such as powrt1... or a public key of 64, 66 or 130 hex digits)",
            ),
            (&format!("{x_only}g"), "not a bech32m address"),
        ] {
            let error = parse_recipient(text, network).expect_err(text);
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(
                error.message.contains(expected),
                "{text}: {}",
                error.message
            );
            assert!(!error.message.contains("checksum"), "{}", error.message);
        }
        let devnet = address.to_bech32(Network::Devnet);
        let error = parse_recipient(&devnet, network).expect_err("another network");
        assert!(
            error.message.contains("this node is on regtest"),
            "{}",
            error.message
        );
    }
}
