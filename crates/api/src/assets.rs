//! The dashboard's files: `GET /` and `GET /assets/{file}`, compiled into the binary.
//!
//! ```text
//!   crates/api/assets/*  ──include_str!──▶  binary  ──GET /, /assets/{file}──▶  browser
//! ```
//!
//! The assets are plain HTML, CSS and ES modules written for this project: no build step,
//! no framework, nothing fetched from elsewhere. They are not content-hashed, so they are
//! served with `Cache-Control: no-cache` and an `ETag`: a browser revalidates each load and
//! a new binary's dashboard shows at once.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::input::NoQuery;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: &'static str,
}

/// FNV-1a, 64 bits: a compile-time fingerprint of an asset for its `ETag`.
const fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    hash
}

/// Writes `hash` as a quoted 16-digit hex `ETag` at compile time.
const fn etag_text(hash: u64) -> [u8; 18] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut index = 0;
    while index < 16 {
        out[1 + index] = DIGITS[((hash >> (60 - 4 * index)) & 0xf) as usize];
        index += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("../assets/", $name));
        const ETAG: [u8; 18] = etag_text(fingerprint(BODY.as_bytes()));
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(text) => text,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

const INDEX_HTML: Asset = asset!("index.html", "text/html; charset=utf-8");
/// The page's script is ES modules: `app.js` starts the page and imports the others by
/// relative path (`/assets/views.js`, ...), so each is served here under its own name.
const ASSETS: [Asset; 10] = [
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("format.js", "text/javascript; charset=utf-8"),
    asset!("state.js", "text/javascript; charset=utf-8"),
    asset!("views.js", "text/javascript; charset=utf-8"),
    asset!("wallet.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// What the page may load and run: only this node's own files and API.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn serve_asset(asset: &Asset, request_headers: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let unchanged = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (headers, asset.body).into_response()
}

/// `GET /`: the dashboard's page (everything else it loads from `/assets/` and the API).
pub async fn index(_query: NoQuery, request_headers: HeaderMap) -> Response {
    let mut response = serve_asset(&INDEX_HTML, &request_headers);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /assets/{file}`: the dashboard's script, style sheet and icon.
pub async fn asset(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    _query: NoQuery,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(name) = path?;
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no dashboard asset named {name:?}")))?;
    Ok(serve_asset(asset, &request_headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{CheckedQuery, NoParameters};

    #[test]
    fn every_asset_has_a_distinct_quoted_etag() {
        let mut tags: Vec<&str> = ASSETS.iter().map(|asset| asset.etag).collect();
        tags.push(INDEX_HTML.etag);
        for tag in &tags {
            assert_eq!(tag.len(), 18);
            assert!(tag.starts_with('"') && tag.ends_with('"'));
        }
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }

    async fn get_asset(name: &str, if_none_match: Option<&'static str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(tag));
        }
        match asset(
            Ok(Path(name.to_owned())),
            CheckedQuery(NoParameters {}),
            headers,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    #[test]
    fn every_module_a_script_imports_is_served() {
        let scripts = ASSETS.iter().filter(|asset| asset.name.ends_with(".js"));
        for script in scripts {
            for line in script.body.lines() {
                let Some((_, rest)) = line.split_once(" from \"./") else {
                    continue;
                };
                let imported = rest.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|asset| asset.name == imported),
                    "{} imports {imported}, which is not served",
                    script.name
                );
            }
        }
    }

    #[tokio::test]
    async fn assets_have_their_content_type_and_revalidate_by_etag() {
        for (name, content_type) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let response = get_asset(name, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
            let tag = ASSETS
                .iter()
                .find(|asset| asset.name == name)
                .expect("listed")
                .etag;
            assert_eq!(response.headers()[header::ETAG], tag);
            let again = get_asset(name, Some(tag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}");
        }
        assert_eq!(
            get_asset("app.js", Some("\"stale\"")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            get_asset("../Cargo.toml", None).await.status(),
            StatusCode::NOT_FOUND
        );
        let page = index(CheckedQuery(NoParameters {}), HeaderMap::new()).await;
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }

    #[test]
    fn the_page_loads_only_embedded_files() {
        for asset in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
            assert!(INDEX_HTML.body.contains(asset), "index.html links {asset}");
        }
        assert!(!INDEX_HTML.body.contains("http://") && !INDEX_HTML.body.contains("https://"));
    }
}
