//! The router: every endpoint (the dashboard's page and assets included), the access guard
//! (`auth`), the body limit, the request timeout (`timeout`), the page and event-stream
//! limits handlers read, JSON 404/405 answers, and `serve` (on `server`'s accept loop).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use powchain_node::Node;
use tokio::net::TcpListener;

use crate::auth;
use crate::error::ApiError;
use crate::events::EventSubscribers;
use crate::large_reads::{self, LargeReads};
use crate::options::ApiOptions;
use crate::page::PageBytes;
use crate::server::{ConnectionLimits, EVICTION_GRACE, serve_router};
use crate::timeout::with_request_timeout;
use crate::{
    assets, blocks, charts, events, faucet, peers, status, transactions, tx_stream, wallet,
};

/// The largest request body accepted: a hex-encoded maximum-size transaction fits.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest `POST /txs` body: 1,000 payments of a few inputs in hex.
pub const MAX_BATCH_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Runs `work` on the blocking pool: node calls take locks and read the disk. In a large
/// read, the work holds the request's place until it ends, even if the request timed out
/// first (`large_reads.rs`).
pub(crate) async fn blocking<T: Send + 'static>(
    node: &Arc<Node>,
    work: impl FnOnce(&Node) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let node = Arc::clone(node);
    large_reads::on_blocking_pool(move || work(&node)).await?
}

/// Every route of the API, with the loopback default: no token required (see
/// [`router_with`]).
pub fn router(node: Arc<Node>) -> Router {
    router_with(node, ApiOptions::default())
}

/// Every route of the API, with `options` deciding who may spend, mine and change peers
/// (`auth` lists the protected endpoints), how long a request may take, how many event
/// streams may be open and how many bytes a page holds. The connection limits are
/// `serve_with`'s.
pub fn router_with(node: Arc<Node>, options: ApiOptions) -> Router {
    let places = LargeReads::new(options.max_large_reads, options.max_unsent_answer_bytes);
    router_sharing(node, options, places, transactions::BatchSlots::default())
}

/// [`router_with`], its large reads taking turns for `places` and its `POST /txs` bodies
/// held in `batches` (a test holds them).
pub(crate) fn router_sharing(
    node: Arc<Node>,
    options: ApiOptions,
    places: LargeReads,
    batches: transactions::BatchSlots,
) -> Router {
    let request_timeout = options.request_timeout;
    let page_bytes = PageBytes(options.max_page_bytes);
    let subscribers = EventSubscribers::new(options.max_event_subscribers);
    // Endpoints whose answer may run to megabytes take turns (`large_reads.rs`).
    let large = axum::middleware::from_fn_with_state(places, large_reads::in_turn);
    let router = Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::asset))
        .route("/events", get(events::events))
        .route("/headers", get(charts::headers).route_layer(large.clone()))
        .route("/charts", get(charts::charts).route_layer(large.clone()))
        .route(
            "/blocks",
            get(blocks::list_blocks).route_layer(large.clone()),
        )
        .route(
            "/blocks/{id}",
            get(blocks::get_block).route_layer(large.clone()),
        )
        .route("/mine", post(blocks::mine))
        .route(
            "/mine-transactions",
            get(blocks::mine_transactions).post(blocks::mine_transactions),
        )
        .route(
            "/transactions",
            get(transactions::list_pool).route_layer(large.clone()),
        )
        .route("/transact", post(transactions::transact))
        .route("/tx", post(transactions::submit_raw))
        .route(
            "/txs",
            post(transactions::submit_raw_batch)
                .layer::<_, Infallible>(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES))
                .layer::<_, Infallible>(Extension(batches)),
        )
        .route(
            "/txs/ws",
            get(tx_stream::stream).layer::<_, Infallible>(Extension(tx_stream::StreamSlots::new(
                options.transaction_stream_idle,
                options.transaction_stream_write_timeout,
            ))),
        )
        .route(
            "/tx/{txid}",
            get(transactions::get_transaction).route_layer(large.clone()),
        )
        .route("/public-key", get(wallet::public_key))
        .route("/balance", get(wallet::balance).route_layer(large.clone()))
        .route("/wallet/addresses", post(wallet::new_address))
        .route(
            "/wallet/history",
            get(wallet::history).route_layer(large.clone()),
        )
        .route("/faucet", post(faucet::faucet))
        .route(
            "/address/{address}",
            get(wallet::address).route_layer(large.clone()),
        )
        .route("/status", get(status::status))
        .route("/peers", get(status::peers).post(status::add_peer))
        // Up to 10,000 bans, about 1 MB of JSON.
        .route(
            "/peers/banned",
            get(status::banned).route_layer(large.clone()),
        )
        .route("/peers/disconnected", get(status::disconnected))
        .route("/peers/{*url}", delete(peers::remove_peer))
        .route("/peers/banned/{peer}", delete(peers::unban))
        .route("/metrics", get(status::metrics))
        // After every `.route`: a route added below this line would not be guarded.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(options),
            auth::guard,
        ))
        .fallback(|| async { ApiError::not_found("no such endpoint; see docs/API.md") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "method not allowed for this endpoint; see docs/API.md".into(),
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(page_bytes))
        .layer(Extension(subscribers))
        .with_state(node);
    // Outermost, so the guard, the fallbacks and body reads are bounded too.
    with_request_timeout(router, request_timeout)
        .layer(axum::middleware::map_response(answer_headers))
}

/// Headers every answer carries: its content type is never sniffed (an error may echo a
/// client's text), and nothing is cached, since answers describe a wallet and a moving
/// chain (the dashboard's assets set their own revalidation, which is kept).
async fn answer_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Serves the API on `listener` until `shutdown` completes, with the loopback default: no
/// token required (see [`serve_with`]).
///
/// # Errors
/// The server's I/O error.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, node, ApiOptions::default(), shutdown).await
}

/// Serves the API on `listener` with `options` until `shutdown` completes: at most
/// `max_connections` at once, each closed when its client is silent for
/// `header_read_timeout` (while sending a request's head or between requests). Then it stops
/// accepting and lets the requests in flight finish, for at most `shutdown_grace`.
///
/// # Errors
/// The server's I/O error.
pub async fn serve_with(
    listener: TcpListener,
    node: Arc<Node>,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ConnectionLimits {
        max_connections: options.max_connections,
        header_read_timeout: options.header_read_timeout,
        shutdown_grace: options.shutdown_grace,
        eviction_grace: EVICTION_GRACE,
        write_stall_timeout: options.write_stall_timeout,
    };
    serve_router(listener, router_with(node, options), limits, shutdown).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::{ConnectionLimits, EVICTION_GRACE};
    use crate::testing::{TestServer, get, regtest_node};

    #[tokio::test]
    async fn answers_that_may_run_to_megabytes_take_turns() {
        let (_directory, node) = regtest_node(1);
        let options = ApiOptions {
            request_timeout: Duration::from_millis(300),
            ..ApiOptions::default()
        };
        let places = LargeReads::new(1, crate::options::DEFAULT_MAX_UNSENT_ANSWER_BYTES);
        let held = places.hold_all();
        let limits = ConnectionLimits {
            max_connections: 16,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: Duration::from_secs(10),
        };
        let router = router_sharing(
            node,
            options,
            places,
            crate::transactions::BatchSlots::default(),
        );
        let server = TestServer::router(router, limits).await;
        // Every place is taken: a large read waits until its request times out.
        for path in ["/blocks", "/peers/banned", "/balance", "/headers"] {
            let answer = get(server.address, path).await;
            assert_eq!(answer.status, 503, "{path} waited for a place");
            let body = String::from_utf8_lossy(&answer.body);
            assert!(body.contains("request-timeout"), "{path}: {body}");
        }
        for path in ["/status", "/peers/disconnected", "/peers"] {
            assert_eq!(get(server.address, path).await.status, 200, "{path}");
        }
        drop(held);
        assert_eq!(get(server.address, "/peers/banned").await.status, 200);
    }

    #[tokio::test]
    async fn every_answer_forbids_sniffing_and_caching_but_assets_revalidate() {
        let (_directory, node) = regtest_node(1);
        let server = TestServer::api(node, ApiOptions::default()).await;
        for (path, status, cache) in [
            ("/balance", 200, "no-store"),
            ("/tx/not-a-txid", 400, "no-store"),
            ("/no-such-endpoint", 404, "no-store"),
            ("/assets/app.js", 200, "no-cache"),
        ] {
            let answer = get(server.address, path).await;
            assert_eq!(answer.status, status, "{path}");
            assert_eq!(
                answer.header("x-content-type-options"),
                Some("nosniff"),
                "{path}"
            );
            assert_eq!(answer.header("cache-control"), Some(cache), "{path}");
        }
    }
}
