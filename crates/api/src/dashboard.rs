//! The web dashboard: its embedded assets (`GET /`, `GET /assets/{file}`) and the three
//! endpoints it needs beyond the REST resources: a live event stream (`GET /events`),
//! newest-first header pages (`GET /headers`) and chart data (`GET /charts`).
//!
//! ```text
//!   crates/api/assets/*  ──include_str!──▶  binary  ──GET /, /assets/{file}──▶  browser
//!   Node::subscribe ──NodeEvent──▶ /events (server-sent events, JSON) ──▶ app.js: live view
//!   Snapshot::hash_at + index_record (one page only) ──▶ /headers, /charts
//! ```
//!
//! The assets are plain HTML, CSS and ES modules written for this project: no build step,
//! no framework, nothing fetched from elsewhere. They are not content-hashed, so they are
//! served with `Cache-Control: no-cache` and an `ETag`: a browser revalidates each load and
//! a new binary's dashboard shows at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use powchain_chain::Snapshot;
use powchain_consensus::{BlockHash, BlockHeight};
use powchain_node::{Node, NodeEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::router::blocking;

/// Headers a `GET /headers` page holds unless `limit` says otherwise.
pub const DEFAULT_HEADERS_PAGE: u64 = 20;
/// The most headers one `GET /headers` page holds.
pub const MAX_HEADERS_PAGE: u64 = 100;
/// Blocks `GET /charts` covers unless `last` says otherwise.
pub const DEFAULT_CHART_BLOCKS: u64 = 100;
/// The most blocks `GET /charts` covers.
pub const MAX_CHART_BLOCKS: u64 = 2000;
/// How often an idle event stream sends a comment, so proxies and browsers keep it open.
const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an event stream checks whether the node is stopping (graceful shutdown waits
/// for open responses, and an event stream never ends by itself).
const EVENT_SHUTDOWN_POLL: Duration = Duration::from_millis(500);
/// How long a browser waits before reconnecting a dropped event stream.
const EVENT_RETRY: Duration = Duration::from_secs(2);

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
const ASSETS: [Asset; 3] = [
    asset!("app.js", "text/javascript; charset=utf-8"),
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
pub async fn index(request_headers: HeaderMap) -> Response {
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
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(name) = path?;
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no dashboard asset named {name:?}")))?;
    Ok(serve_asset(asset, &request_headers))
}

/// A [`NodeEvent`] as `GET /events` sends it: the SSE event name is `type`, and the data
/// is this object as JSON.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum EventJson {
    /// Sent first on every connection: where the chain stood when the stream began.
    Ready {
        /// The tip's height.
        height: u64,
        /// The tip's hash.
        hash: String,
    },
    /// A block joined the main chain.
    BlockConnected {
        /// Its hash.
        hash: String,
        /// Its height.
        height: u64,
    },
    /// A block left the main chain in a reorganisation.
    BlockDisconnected {
        /// Its hash.
        hash: String,
        /// Its height.
        height: u64,
    },
    /// The tip settled after a change.
    TipChanged {
        /// The new tip's hash.
        hash: String,
        /// Its height.
        height: u64,
        /// Total chain work, hex.
        work: String,
        /// Blocks disconnected on the way (0 when the chain only grew).
        reorg_depth: u64,
    },
    /// A transaction entered the pool.
    TransactionAccepted {
        /// Its id.
        txid: String,
    },
    /// The stream fell behind and skipped events: reload what is shown.
    Resync {
        /// How many events were skipped.
        missed: u64,
    },
}

impl EventJson {
    fn name(&self) -> &'static str {
        match self {
            EventJson::Ready { .. } => "ready",
            EventJson::BlockConnected { .. } => "blockConnected",
            EventJson::BlockDisconnected { .. } => "blockDisconnected",
            EventJson::TipChanged { .. } => "tipChanged",
            EventJson::TransactionAccepted { .. } => "transactionAccepted",
            EventJson::Resync { .. } => "resync",
        }
    }

    fn to_sse(&self) -> Event {
        let data = serde_json::to_string(self).expect("event JSON has only strings and numbers");
        Event::default().event(self.name()).data(data)
    }
}

impl From<NodeEvent> for EventJson {
    fn from(event: NodeEvent) -> EventJson {
        match event {
            NodeEvent::BlockConnected { hash, height } => EventJson::BlockConnected {
                hash: hash.to_string(),
                height: height.0,
            },
            NodeEvent::BlockDisconnected { hash, height } => EventJson::BlockDisconnected {
                hash: hash.to_string(),
                height: height.0,
            },
            NodeEvent::TipChanged {
                hash,
                height,
                work,
                reorg_depth,
            } => EventJson::TipChanged {
                hash: hash.to_string(),
                height: height.0,
                work: work.to_string(),
                reorg_depth,
            },
            NodeEvent::TransactionAccepted { txid } => EventJson::TransactionAccepted {
                txid: txid.to_string(),
            },
        }
    }
}

/// `GET /events`: node events as server-sent events, for as long as the client listens.
///
/// Every connection starts with a `ready` event (the tip when the stream began), then one
/// event per [`NodeEvent`]: `blockConnected`, `blockDisconnected`, `tipChanged` (with
/// `reorgDepth`), `transactionAccepted`. The node never waits for a slow client: one that
/// falls too far behind gets a `resync` event, meaning "some events were skipped, reload".
/// An idle stream carries a keep-alive comment every 15 s; it ends when the node stops.
pub async fn events(
    State(node): State<Arc<Node>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the tip, so nothing between the two is missed.
    let receiver = node.subscribe();
    let tip = blocking(&node, |node| Ok(node.tip())).await?;
    let ready = EventJson::Ready {
        height: tip.height.0,
        hash: tip.hash.to_string(),
    }
    .to_sse()
    .retry(EVENT_RETRY);
    let live = live_events(receiver, move || node.is_shutting_down()).map(|event| event.to_sse());
    let stream = stream::once(async move { ready })
        .chain(live)
        .map(Ok::<Event, Infallible>);
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(EVENT_KEEP_ALIVE)
            .text("keep-alive"),
    ))
}

/// The events after `ready`: one per [`NodeEvent`] received, `resync` where the receiver
/// lagged, ending when the channel closes or, checked twice a second, `is_stopping` says so.
fn live_events(
    receiver: broadcast::Receiver<NodeEvent>,
    is_stopping: impl Fn() -> bool + Send + 'static,
) -> impl Stream<Item = EventJson> + Send + 'static {
    stream::unfold(
        (receiver, is_stopping),
        |(mut receiver, is_stopping)| async move {
            loop {
                tokio::select! {
                    received = receiver.recv() => {
                        let event = match received {
                            Ok(event) => EventJson::from(event),
                            Err(RecvError::Lagged(missed)) => EventJson::Resync { missed },
                            Err(RecvError::Closed) => return None,
                        };
                        return Some((event, (receiver, is_stopping)));
                    }
                    () = tokio::time::sleep(EVENT_SHUTDOWN_POLL) => {
                        if is_stopping() {
                            return None;
                        }
                    }
                }
            }
        },
    )
}

/// `GET /headers` query.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct HeadersQuery {
    /// The page ends just below this height (default: the page starts at the tip).
    pub before: Option<u64>,
    /// Headers in the page (default 20, at most 100).
    pub limit: Option<u64>,
}

/// A main-chain block without its transactions.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct HeaderJson {
    /// Its hash.
    pub hash: String,
    /// Its height.
    pub height: u64,
    /// The parent's hash.
    pub last_hash: String,
    /// Block time, ms since the epoch.
    pub timestamp: u64,
    /// The nonce that met the target.
    pub nonce: u64,
    /// How many times harder than the network's easiest target.
    pub difficulty: f64,
    /// The compact target, hex.
    pub bits: String,
    /// Merkle root of the transactions.
    pub merkle_root: String,
    /// Header version.
    pub version: u32,
    /// Work of the chain up to and including it, hex.
    pub chain_work: String,
    /// Number of transactions.
    pub transaction_count: usize,
    /// Encoded size in bytes.
    pub size: usize,
    /// Blocks on top of it plus one.
    pub confirmations: u64,
}

/// `GET /headers` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HeadersPage {
    /// The tip's height when the page was read.
    pub tip_height: u64,
    /// Main-chain blocks, newest first.
    pub headers: Vec<HeaderJson>,
    /// `before` for the next (older) page; absent on the page that ends at genesis.
    pub next_before: Option<u64>,
}

fn main_chain_hash(snapshot: &Snapshot, height: u64) -> Result<BlockHash, ApiError> {
    snapshot
        .hash_at(BlockHeight(height))?
        .ok_or_else(|| ApiError::internal(format!("no block at main-chain height {height}")))
}

/// `GET /headers?before=<height>&limit=<n>`: main-chain blocks newest first, without their
/// transactions. It reads only the page's blocks from one chain snapshot, so a page costs
/// the same at height 100 as at height 100,000.
pub async fn headers(
    State(node): State<Arc<Node>>,
    query: Result<Query<HeadersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HeadersPage>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_HEADERS_PAGE);
    if limit == 0 || limit > MAX_HEADERS_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_HEADERS_PAGE}, got {limit}"
        )));
    }
    let page = blocking(&node, move |node| {
        let params = node.params();
        let snapshot = node.reader().snapshot()?;
        let tip_height = snapshot.tip()?.record.height.0;
        let end = query.before.unwrap_or(u64::MAX).min(tip_height + 1);
        let start = end.saturating_sub(limit);
        let mut headers = Vec::with_capacity((end - start) as usize);
        for height in (start..end).rev() {
            let hash = main_chain_hash(&snapshot, height)?;
            let record = snapshot
                .index_record(&hash)?
                .ok_or_else(|| ApiError::internal(format!("block {hash} is not indexed")))?;
            let block = snapshot
                .block(&hash)?
                .ok_or_else(|| ApiError::internal(format!("block {hash} has no data")))?;
            let header = &record.header;
            headers.push(HeaderJson {
                hash: hash.to_string(),
                height,
                last_hash: header.prev_hash.to_string(),
                timestamp: header.time_ms,
                nonce: header.nonce,
                difficulty: params.difficulty(header.bits),
                bits: header.bits.to_string(),
                merkle_root: header.merkle_root.to_string(),
                version: header.version,
                chain_work: record.chain_work.to_string(),
                transaction_count: block.transactions.len(),
                size: block.compute_size(),
                confirmations: tip_height - height + 1,
            });
        }
        Ok(HeadersPage {
            tip_height,
            headers,
            next_before: (start > 0).then_some(start),
        })
    })
    .await?;
    Ok(Json(page))
}

/// `GET /charts` query.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ChartsQuery {
    /// How many of the newest blocks to cover (default 100, at most 2000).
    pub last: Option<u64>,
}

/// One block in the chart data.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChartPoint {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: String,
    /// Block time, ms since the epoch.
    pub timestamp: u64,
    /// Its time minus its parent's, ms (may be negative: block times only have to pass
    /// the median of the last 11); absent for genesis.
    pub interval_ms: Option<i64>,
    /// The compact target, hex.
    pub bits: String,
    /// Difficulty relative to the network's easiest target.
    pub difficulty: f64,
}

/// `GET /charts` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ChartsJson {
    /// The network's target block time, ms.
    pub target_block_time_ms: u64,
    /// The tip's height when the data was read.
    pub tip_height: u64,
    /// The newest blocks, oldest first.
    pub blocks: Vec<ChartPoint>,
}

/// `GET /charts?last=<n>`: block intervals and difficulty of the newest `n` main-chain
/// blocks, oldest first. Reads headers only (the in-store block index), `n + 1` of them.
pub async fn charts(
    State(node): State<Arc<Node>>,
    query: Result<Query<ChartsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChartsJson>, ApiError> {
    let Query(query) = query?;
    let last = query.last.unwrap_or(DEFAULT_CHART_BLOCKS);
    if last == 0 || last > MAX_CHART_BLOCKS {
        return Err(ApiError::bad_request(format!(
            "last must be between 1 and {MAX_CHART_BLOCKS}, got {last}"
        )));
    }
    let json = blocking(&node, move |node| {
        let params = node.params();
        let snapshot = node.reader().snapshot()?;
        let tip_height = snapshot.tip()?.record.height.0;
        let start = (tip_height + 1).saturating_sub(last);
        let mut previous_time: Option<u64> = None;
        if start > 0 {
            let parent = main_chain_hash(&snapshot, start - 1)?;
            previous_time = snapshot
                .index_record(&parent)?
                .map(|record| record.header.time_ms);
        }
        let mut blocks = Vec::with_capacity((tip_height + 1 - start) as usize);
        for height in start..=tip_height {
            let hash = main_chain_hash(&snapshot, height)?;
            let header = snapshot
                .index_record(&hash)?
                .ok_or_else(|| ApiError::internal(format!("block {hash} is not indexed")))?
                .header;
            blocks.push(ChartPoint {
                height,
                hash: hash.to_string(),
                timestamp: header.time_ms,
                interval_ms: previous_time.map(|previous| header.time_ms as i64 - previous as i64),
                bits: header.bits.to_string(),
                difficulty: params.difficulty(header.bits),
            });
            previous_time = Some(header.time_ms);
        }
        Ok(ChartsJson {
            target_block_time_ms: params.target_block_time_ms,
            tip_height,
            blocks,
        })
    })
    .await?;
    Ok(Json(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::{Network, Txid, Work};
    use powchain_node::{NodeConfig, SystemClock};
    use tempfile::TempDir;

    /// A regtest node in a temporary folder with `blocks` mined on genesis.
    fn regtest_node(blocks: u64) -> (TempDir, Arc<Node>) {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let mut config = NodeConfig::new(Network::Regtest, folder.path().to_path_buf());
        config.miner_threads = 1;
        config.signature_threads = 1;
        let node = Node::open(config, Arc::new(SystemClock)).expect("the node opens");
        for _ in 0..blocks {
            node.mine_one(Vec::new(), false)
                .expect("regtest mines at once");
        }
        (folder, node)
    }

    async fn headers_page(
        node: &Arc<Node>,
        before: Option<u64>,
        limit: Option<u64>,
    ) -> Result<HeadersPage, ApiError> {
        let query = HeadersQuery { before, limit };
        headers(State(Arc::clone(node)), Ok(Query(query)))
            .await
            .map(|Json(page)| page)
    }

    fn heights(page: &HeadersPage) -> Vec<u64> {
        page.headers.iter().map(|header| header.height).collect()
    }

    #[tokio::test]
    async fn header_pages_walk_the_main_chain_newest_first() {
        let (_folder, node) = regtest_node(30);
        let first = headers_page(&node, None, None).await.expect("a page");
        assert_eq!(first.tip_height, 30);
        assert_eq!(heights(&first), (11..=30).rev().collect::<Vec<_>>());
        assert_eq!(first.next_before, Some(11));
        assert_eq!(first.headers[0].hash, node.tip().hash.to_string());
        assert_eq!(first.headers[0].confirmations, 1);
        assert_eq!(first.headers[0].transaction_count, 1);
        for pair in first.headers.windows(2) {
            assert_eq!(pair[0].last_hash, pair[1].hash, "each links to the next");
        }

        let second = headers_page(&node, first.next_before, None)
            .await
            .expect("a page");
        assert_eq!(heights(&second), (0..=10).rev().collect::<Vec<_>>());
        assert_eq!(second.next_before, None, "the last page ends at genesis");
        assert_eq!(second.headers[10].confirmations, 31);

        let past_the_tip = headers_page(&node, Some(1_000), Some(3))
            .await
            .expect("a page");
        assert_eq!(heights(&past_the_tip), vec![30, 29, 28]);
        let below_genesis = headers_page(&node, Some(0), Some(5)).await.expect("a page");
        assert!(below_genesis.headers.is_empty());
        assert_eq!(below_genesis.next_before, None);

        for limit in [0, MAX_HEADERS_PAGE + 1] {
            let error = headers_page(&node, None, Some(limit))
                .await
                .expect_err("refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(error.message.contains("limit must be between 1 and 100"));
        }
    }

    #[tokio::test]
    async fn chart_data_covers_the_newest_blocks_with_their_intervals() {
        let (_folder, node) = regtest_node(10);
        let chart = |last| {
            let node = Arc::clone(&node);
            async move {
                charts(State(node), Ok(Query(ChartsQuery { last })))
                    .await
                    .map(|Json(chart)| chart)
            }
        };
        let newest = chart(Some(4)).await.expect("chart data");
        assert_eq!(newest.target_block_time_ms, 3_000);
        assert_eq!(newest.tip_height, 10);
        let points: Vec<u64> = newest.blocks.iter().map(|point| point.height).collect();
        assert_eq!(points, vec![7, 8, 9, 10]);
        let parent = headers_page(&node, Some(7), Some(1))
            .await
            .expect("block 6");
        assert_eq!(
            newest.blocks[0].interval_ms,
            Some(newest.blocks[0].timestamp as i64 - parent.headers[0].timestamp as i64)
        );
        for pair in newest.blocks.windows(2) {
            assert_eq!(
                pair[1].interval_ms,
                Some(pair[1].timestamp as i64 - pair[0].timestamp as i64)
            );
        }

        let whole = chart(None).await.expect("chart data");
        assert_eq!(
            whole.blocks.len(),
            11,
            "fewer blocks than asked: all of them"
        );
        assert_eq!(whole.blocks[0].height, 0);
        assert_eq!(whole.blocks[0].interval_ms, None, "genesis has no parent");
        assert_eq!(whole.blocks[0].bits, "207fffff");

        for last in [0, MAX_CHART_BLOCKS + 1] {
            let error = chart(Some(last)).await.expect_err("refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }

    fn connected(height: u64) -> NodeEvent {
        NodeEvent::BlockConnected {
            hash: BlockHash([height as u8; 32]),
            height: BlockHeight(height),
        }
    }

    #[tokio::test]
    async fn a_lagging_event_stream_says_resync_and_carries_on() {
        let (sender, receiver) = broadcast::channel(2);
        for height in 1..=5 {
            sender.send(connected(height)).expect("a receiver exists");
        }
        drop(sender);
        let events: Vec<EventJson> = live_events(receiver, || false).collect().await;
        assert_eq!(
            events,
            vec![
                EventJson::Resync { missed: 3 },
                EventJson::from(connected(4)),
                EventJson::from(connected(5)),
            ],
            "the stream ends when the channel closes"
        );
    }

    #[tokio::test]
    async fn an_event_stream_ends_when_the_node_stops() {
        let (_sender, receiver) = broadcast::channel::<NodeEvent>(2);
        let events = tokio::time::timeout(
            Duration::from_secs(10),
            live_events(receiver, || true).collect::<Vec<_>>(),
        )
        .await
        .expect("the stream ends within a shutdown poll");
        assert!(events.is_empty());
    }

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
        match asset(Ok(Path(name.to_owned())), headers).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
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
        let page = index(HeaderMap::new()).await;
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

    #[test]
    fn node_events_become_named_camel_case_json() {
        let mut work_bytes = [0; 32];
        work_bytes[31] = 0xff;
        let event = EventJson::from(NodeEvent::TipChanged {
            hash: BlockHash([0; 32]),
            height: BlockHeight(7),
            work: Work::from_be_bytes(work_bytes),
            reorg_depth: 2,
        });
        assert_eq!(event.name(), "tipChanged");
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["type"], "tipChanged");
        assert_eq!(json["height"], 7);
        assert_eq!(json["reorgDepth"], 2);
        assert_eq!(json["work"], "ff");
        let accepted = EventJson::from(NodeEvent::TransactionAccepted {
            txid: Txid([1; 32]),
        });
        assert_eq!(accepted.name(), "transactionAccepted");
        let json = serde_json::to_value(&accepted).expect("serializes");
        assert_eq!(json["txid"], Txid([1; 32]).to_string());
        let resync = serde_json::to_value(EventJson::Resync { missed: 3 }).expect("serializes");
        assert_eq!(resync, serde_json::json!({"type": "resync", "missed": 3}));
    }
}
