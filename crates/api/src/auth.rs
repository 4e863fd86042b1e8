//! Access control: who may spend the node's wallet, make it mine, or change its peers, and
//! which web pages may use the node at all.
//!
//! ```text
//!   request ──router (a route matched)──▶ guard
//!     protected endpoint, and a token required (off loopback, or --require-token)?
//!       yes ──▶ `Authorization: Bearer <token>` equal (constant time)? ──▶ handler | 401
//!     bound off loopback? ──yes (reads are open to whoever reaches the port)──▶ handler
//!     a browser following a link to a read (`Sec-Fetch-Mode: navigate`, a document)?
//!       yes: `Host` names this machine? ─────────────────────▶ handler | 403
//!       no:  that, and not sent for a page of another site? ──▶ handler | 403
//! ```
//!
//! The protected endpoints ([`is_protected`]) are those that spend (`POST /transact`,
//! `POST /faucet`), mine (`POST /mine`, `GET|POST /mine-transactions`), write the key file
//! (`POST /wallet/addresses`) or change peers (`POST /peers`, `DELETE /peers/{url}`,
//! `DELETE /peers/banned/{peer}`). Everything else reads, and stays
//! open. `POST /tx` stays open too: it takes a transaction someone else already signed,
//! which cannot spend the node's coins, and any peer may send the same transaction over the
//! peer-to-peer port without any token.
//!
//! The token is 32 random bytes as 64 hex digits, written at each start to the cookie file
//! in the data directory ([`crate::cookie`]): whoever may read the node's files may use its
//! API, and nobody else.
//!
//! On loopback, token or not (the default needs none, so the tutorial's curl lines keep
//! working), a browser on the same machine could still reach `127.0.0.1` for any web page
//! it shows. So the guard refuses every request a browser sends on behalf of a page of
//! another site, reads included: a page whose name was re-pointed at 127.0.0.1 (DNS
//! rebinding) would otherwise read the wallet's balance and history as if it were the
//! dashboard, and any page could submit to `POST /tx` or `/txs` or hold the places of the
//! `/txs/ws` and `/events` streams. Only a link to the node is followed (the user sees its
//! answer, the linking page does not; a frame is no link). Clients that are not browsers
//! send none of the headers checked, and the node's own dashboard is same-origin. Off
//! loopback the token guards what spends, mines and dials, and reads are open to whoever
//! reaches the port.
//!
//! Nothing here logs the token or the `Authorization` header.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::options::ApiOptions;
use powchain_consensus::hex;

/// Random bytes in a token.
pub const API_TOKEN_BYTES: usize = 32;

/// The most characters a token given on the command line may have.
const MAX_TOKEN_CHARS: usize = 256;

/// The secret that opens the protected endpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// A fresh token: 32 bytes from the operating system's random source, as 64 hex digits.
    ///
    /// # Errors
    /// If the random source fails.
    pub fn generate() -> Result<ApiToken, getrandom::Error> {
        let mut bytes = [0u8; API_TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(ApiToken(hex::encode(&bytes)))
    }

    /// The token as sent in `Authorization: Bearer <token>` and stored in the cookie file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `presented` is this token. Takes the same time wherever the first difference
    /// is, so response times do not reveal how much of a guess was right.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.0.as_bytes();
        let presented = presented.as_bytes();
        // The length is no secret (always 64 for a generated token).
        if expected.len() != presented.len() {
            return false;
        }
        let difference = expected
            .iter()
            .zip(presented)
            .fold(0u8, |accumulated, (left, right)| {
                accumulated | std::hint::black_box(left ^ right)
            });
        std::hint::black_box(difference) == 0
    }
}

impl FromStr for ApiToken {
    type Err = String;

    /// A token as a user gives it (`--token`, `POWCHAIN_TOKEN`, a cookie file): surrounding
    /// whitespace dropped, then 1 to 256 visible ASCII characters.
    fn from_str(text: &str) -> Result<ApiToken, String> {
        let token = text.trim();
        if token.is_empty() {
            return Err("the API token is empty".to_owned());
        }
        if token.len() > MAX_TOKEN_CHARS || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(format!(
                "an API token is at most {MAX_TOKEN_CHARS} visible ASCII characters (the node's \
                 are 64 hex digits)"
            ));
        }
        Ok(ApiToken(token.to_owned()))
    }
}

impl fmt::Debug for ApiToken {
    /// Never the token: a `Debug` print may end up in a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiToken(<redacted>)")
    }
}

/// The token protected endpoints require, and where a client finds it.
#[derive(Clone, Debug)]
pub struct RequiredToken {
    /// The token.
    pub token: ApiToken,
    /// The cookie file holding it, named in refusals so a user knows where to look.
    pub cookie_path: PathBuf,
}

/// True if `method` on the route `path` (as the router wrote it) spends, mines, writes the
/// key file or dials out. Every method of those routes counts, except reading `/peers`:
/// `HEAD /mine-transactions` runs the `GET` handler, which mines.
pub fn is_protected(method: &Method, path: &str) -> bool {
    match path {
        "/mine"
        | "/mine-transactions"
        | "/transact"
        | "/wallet/addresses"
        | "/faucet"
        | "/peers/{*url}"
        | "/peers/banned/{peer}" => true,
        "/peers" => !matches!(*method, Method::GET | Method::HEAD),
        _ => false,
    }
}

/// The middleware: lets reads through, and checks protected requests as the module says.
pub(crate) async fn guard(
    State(options): State<Arc<ApiOptions>>,
    request: Request,
    next: Next,
) -> Response {
    // Always present for a matched route (axum's `matched-path` feature); if it were not, the
    // request is treated as protected: closed is the safe way to fail.
    let protected = request
        .extensions()
        .get::<MatchedPath>()
        .is_none_or(|matched| is_protected(request.method(), matched.as_str()));
    let refusal = match &options.required_token {
        Some(required) if protected => check_bearer_token(request.headers(), required).err(),
        // Off loopback every read is open by design: whoever reaches the port may read.
        _ if !options.loopback => None,
        // A link to the dashboard (or to any read) from another site is followed; the
        // host is still checked, so a rebound name gets nothing.
        _ if !protected && is_navigation(&request) => check_host(request.headers()).err(),
        _ => check_not_cross_site(request.headers()).err(),
    };
    match refusal {
        Some(refusal) => {
            tracing::debug!(
                method = %request.method(),
                path = %request.uri().path(),
                status = refusal.status.as_u16(),
                "refused a protected request"
            );
            refusal_response(refusal)
        }
        None => next.run(request).await,
    }
}

/// The answer to a refused request: the JSON error, and for a 401 the `WWW-Authenticate`
/// header that says which scheme to use.
fn refusal_response(refusal: ApiError) -> Response {
    let unauthorized = refusal.status == StatusCode::UNAUTHORIZED;
    let mut response = refusal.into_response();
    if unauthorized {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"powchain\""),
        );
    }
    response
}

/// `Ok` if the request carries `Authorization: Bearer <the token>`, else the 401 refusal.
fn check_bearer_token(headers: &HeaderMap, required: &RequiredToken) -> Result<(), ApiError> {
    // Named, never located: any client can read a 401, and the data directory's path is
    // the operator's business (the node logs it at start).
    let cookie = "`.cookie` in the node's data directory";
    let message = match bearer_token(headers) {
        Some(Ok(presented)) if required.token.matches(presented) => return Ok(()),
        Some(Ok(_)) => format!(
            "the API token sent is not this node's: send the one in the cookie file {cookie} \
             (the node writes a new one at every start)"
        ),
        Some(Err(())) => format!(
            "the Authorization header must be `Bearer <token>`, with the token from the \
             cookie file {cookie}"
        ),
        None => format!(
            "this endpoint spends, mines or changes peers, so it needs the node's API token: \
             send `Authorization: Bearer <token>` with the token from the cookie file {cookie} \
             (the node writes a new one at every start; `powchain` client commands read it \
             with --data-dir)"
        ),
    };
    Err(ApiError {
        status: StatusCode::UNAUTHORIZED,
        message,
    })
}

/// The token of an `Authorization: Bearer <token>` header: `None` without the header,
/// `Some(Err)` if it is not a bearer token.
fn bearer_token(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(AUTHORIZATION)?;
    let parsed = value.to_str().ok().and_then(|text| {
        let (scheme, token) = text.trim().split_once(' ')?;
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
            .filter(|token| !token.is_empty())
    });
    Some(parsed.ok_or(()))
}

/// `Ok` unless a browser sent the request for a page of another site, else the 403 refusal.
///
/// Three checks, each for what a browser cannot avoid sending:
/// - `Host` must name this machine (`localhost`, `127.x.x.x`, `[::1]`): a page whose own
///   name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name;
/// - `Origin`, when sent (browsers send it with every POST), must be this same host;
/// - `Sec-Fetch-Site`, when sent (current browsers send it with every request, images and
///   plain links included, which carry no `Origin`), must be `same-origin` or `none` (typed
///   into the address bar).
fn check_not_cross_site(headers: &HeaderMap) -> Result<(), ApiError> {
    check_host(headers)?;
    let host = headers.get(HOST).and_then(|value| value.to_str().ok());
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        let same_origin = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
        });
        if !same_origin {
            return Err(cross_site_refusal(format!(
                "a web page of {origin:?} sent it through the browser"
            )));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("(not text)");
        if !matches!(site, "same-origin" | "none") {
            return Err(cross_site_refusal(format!(
                "the browser marked it as sent from a {site} page"
            )));
        }
    }
    Ok(())
}

/// `Ok` unless the `Host` header names something other than this machine: a page whose own
/// name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name.
fn check_host(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(HOST).map(|value| value.to_str()) {
        Some(Ok(host)) if !names_this_machine(host) => Err(cross_site_refusal(format!(
            "the request names host {host:?}, which is not a loopback address"
        ))),
        Some(Err(_)) => Err(cross_site_refusal(
            "the request's host is not text".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// True if a browser sent the request to open a page in a tab (a followed link, a typed
/// address): `Sec-Fetch-Mode: navigate` on a `GET` or `HEAD`, for a document (not a frame,
/// which another site's page would hold open). Such a request's answer is shown to the
/// user, never to the page that linked to it.
fn is_navigation(request: &Request) -> bool {
    let headers = request.headers();
    matches!(*request.method(), Method::GET | Method::HEAD)
        && headers
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode.as_bytes() == b"navigate")
        && headers
            .get("sec-fetch-dest")
            .is_none_or(|destination| destination.as_bytes() == b"document")
}

fn cross_site_refusal(why: String) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "refused: {why}. On loopback this node answers clients on this machine that are \
             not browsers, its own dashboard, and links to it, never a web page of another \
             site (with --require-token, the protected endpoints take the API token \
             instead)"
        ),
    }
}

/// True if the `Host` header value (with or without a port) is a name or address that
/// always means this machine.
fn names_this_machine(host: &str) -> bool {
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        // `[::1]:3001`
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        // `0.0.0.0` and `[::]` as a destination reach this machine (`curl 0.0.0.0:3001`).
        || name
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback() || address.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    fn required() -> RequiredToken {
        RequiredToken {
            token: "ab".repeat(32).parse().expect("a token"),
            cookie_path: PathBuf::from("/data/regtest-3001/.cookie"),
        }
    }

    #[test]
    fn generated_tokens_are_64_hex_digits_and_differ() {
        let first = ApiToken::generate().expect("random");
        let second = ApiToken::generate().expect("random");
        assert_eq!(first.as_str().len(), 64);
        assert!(first.as_str().bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[test]
    fn tokens_compare_whole_and_exact() {
        let token: ApiToken = "ab".repeat(32).parse().expect("a token");
        assert!(token.matches(&"ab".repeat(32)));
        assert!(!token.matches(&"AB".repeat(32)));
        assert!(!token.matches(&format!("{}ac", "ab".repeat(31))));
        assert!(!token.matches(&"ab".repeat(31)));
        assert!(!token.matches(&"ab".repeat(33)));
        assert!(!token.matches(""));
    }

    #[test]
    fn tokens_from_users_are_trimmed_and_checked() {
        let token: ApiToken = " abc123\n".parse().expect("trimmed");
        assert_eq!(token.as_str(), "abc123");
        assert!("".parse::<ApiToken>().is_err());
        assert!("\n".parse::<ApiToken>().is_err());
        assert!("two words".parse::<ApiToken>().is_err());
        assert!("x".repeat(257).parse::<ApiToken>().is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ApiToken::generate().expect("random");
        let options = ApiOptions {
            required_token: Some(RequiredToken {
                token: token.clone(),
                cookie_path: PathBuf::from(".cookie"),
            }),
            ..ApiOptions::default()
        };
        let printed = format!("{token:?} {options:?} {options:#?}");
        assert!(!printed.contains(token.as_str()), "{printed}");
        assert!(!printed.contains(&token.as_str()[..8]), "{printed}");
    }

    #[test]
    fn spending_mining_key_writing_and_dialing_are_protected_reads_are_not() {
        let protected = [
            (Method::POST, "/mine"),
            (Method::GET, "/mine-transactions"),
            (Method::HEAD, "/mine-transactions"),
            (Method::POST, "/mine-transactions"),
            (Method::POST, "/transact"),
            (Method::POST, "/wallet/addresses"),
            (Method::POST, "/peers"),
            (Method::DELETE, "/peers"),
            (Method::POST, "/faucet"),
            (Method::DELETE, "/peers/{*url}"),
            (Method::DELETE, "/peers/banned/{peer}"),
        ];
        for (method, path) in protected {
            assert!(is_protected(&method, path), "{method} {path}");
        }
        let open = [
            (Method::GET, "/peers"),
            (Method::HEAD, "/peers"),
            (Method::POST, "/tx"),
            (Method::GET, "/tx/{txid}"),
            (Method::GET, "/blocks"),
            (Method::GET, "/blocks/{id}"),
            (Method::GET, "/balance"),
            (Method::GET, "/wallet/history"),
            (Method::GET, "/peers/banned"),
            (Method::GET, "/public-key"),
            (Method::GET, "/transactions"),
            (Method::GET, "/status"),
            (Method::GET, "/metrics"),
            (Method::GET, "/events"),
            (Method::GET, "/"),
        ];
        for (method, path) in open {
            assert!(!is_protected(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn bearer_token_check_answers_401_naming_the_cookie_file_but_not_the_data_directory() {
        let required = required();
        let good = format!("Bearer {}", "ab".repeat(32));
        assert!(check_bearer_token(&headers(&[("authorization", &good)]), &required).is_ok());
        let lower = format!("bearer   {} ", "ab".repeat(32));
        assert!(check_bearer_token(&headers(&[("authorization", &lower)]), &required).is_ok());
        let refused = [
            headers(&[]),
            headers(&[("authorization", &format!("Bearer {}", "cd".repeat(32)))]),
            headers(&[("authorization", &format!("Basic {}", "ab".repeat(32)))]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", &"ab".repeat(32))]),
        ];
        for request_headers in refused {
            let refusal = check_bearer_token(&request_headers, &required).expect_err("refused");
            assert_eq!(
                refusal.status,
                StatusCode::UNAUTHORIZED,
                "{request_headers:?}"
            );
            assert!(refusal.message.contains(".cookie"), "{}", refusal.message);
            assert!(
                !refusal.message.contains("/data/regtest-3001"),
                "a 401 does not tell any client where the data lives: {}",
                refusal.message
            );
            let response = refusal_response(refusal);
            assert_eq!(
                response.headers().get(WWW_AUTHENTICATE),
                Some(&HeaderValue::from_static("Bearer realm=\"powchain\""))
            );
        }
    }

    #[test]
    fn cross_site_browser_requests_are_refused_other_clients_are_not() {
        let allowed = [
            headers(&[]),
            headers(&[("host", "127.0.0.1:3001")]),
            headers(&[("host", "localhost:3001")]),
            headers(&[("host", "[::1]:3001")]),
            headers(&[("host", "127.0.0.1")]),
            headers(&[("host", "node.localhost:3001")]),
            // The dashboard: same origin.
            headers(&[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://127.0.0.1:3001"),
                ("sec-fetch-site", "same-origin"),
            ]),
            headers(&[("host", "localhost:3001"), ("sec-fetch-site", "none")]),
        ];
        for request_headers in allowed {
            assert!(
                check_not_cross_site(&request_headers).is_ok(),
                "{request_headers:?}"
            );
        }
        let refused = [
            // DNS rebinding: the page's own name, now pointing at 127.0.0.1.
            headers(&[
                ("host", "evil.example:3001"),
                ("origin", "http://evil.example:3001"),
            ]),
            headers(&[("host", "evil.example:3001")]),
            headers(&[("host", "192.168.1.5:3001")]),
            // Cross-site form or fetch.
            headers(&[
                ("host", "127.0.0.1:3001"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:3001"), ("origin", "null")]),
            headers(&[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://127.0.0.1:3002"),
            ]),
            headers(&[
                ("host", "127.0.0.1:3001"),
                ("origin", "http://localhost:3001"),
            ]),
            // An image or link of another site: no Origin, but fetch metadata.
            headers(&[("host", "127.0.0.1:3001"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:3001"), ("sec-fetch-site", "same-site")]),
        ];
        for request_headers in refused {
            let refusal = check_not_cross_site(&request_headers).expect_err("refused");
            assert_eq!(refusal.status, StatusCode::FORBIDDEN, "{request_headers:?}");
            let response = refusal_response(refusal);
            assert_eq!(response.headers().get(WWW_AUTHENTICATE), None);
        }
    }
}
