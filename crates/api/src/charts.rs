//! The dashboard's chain views beyond the REST resources: newest-first header pages
//! (`GET /headers`) and chart data of block times and difficulty (`GET /charts`).
//!
//! ```text
//!   one Snapshot ──main_chain: hash, index record (and data, for /headers) of each
//!                  height in the page only──▶ HeadersPage (/headers) | ChartsJson (/charts)
//! ```
//!
//! Each reads only its page's blocks from one chain snapshot, so it costs the same at
//! height 100 as at height 100,000.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use powchain_consensus::BlockHeight;
use powchain_node::Node;
use serde::{Deserialize, Serialize};

use crate::dto::HeaderFieldsJson;
use crate::error::ApiError;
use crate::input::{CheckedQuery, QueryParameters, page_size};
use crate::main_chain::{confirmations, indexed_record, main_chain_hash, tip_height};
use crate::router::blocking;

/// Headers a `GET /headers` page holds unless `limit` says otherwise.
pub const DEFAULT_HEADERS_PAGE: u64 = 20;
/// The most headers one `GET /headers` page holds.
pub const MAX_HEADERS_PAGE: u64 = 100;
/// Blocks `GET /charts` covers unless `last` says otherwise.
pub const DEFAULT_CHART_BLOCKS: u64 = 100;
/// The most blocks `GET /charts` covers.
pub const MAX_CHART_BLOCKS: u64 = 2000;

/// `GET /headers` query.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct HeadersQuery {
    /// The page ends just below this height (default: the page starts at the tip).
    pub before: Option<u64>,
    /// Headers in the page (default 20, at most 100).
    pub limit: Option<u64>,
}

impl QueryParameters for HeadersQuery {
    const NAMES: &'static [&'static str] = &["before", "limit"];
}

/// A main-chain block without its transactions.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct HeaderJson {
    /// The header's fields, first.
    #[serde(flatten)]
    pub header: HeaderFieldsJson,
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

/// `GET /headers?before=<height>&limit=<n>`: main-chain blocks newest first, without their
/// transactions. It reads only the page's blocks from one chain snapshot, so a page costs
/// the same at height 100 as at height 100,000.
pub async fn headers(
    State(node): State<Arc<Node>>,
    CheckedQuery(query): CheckedQuery<HeadersQuery>,
) -> Result<Json<HeadersPage>, ApiError> {
    let limit = page_size("limit", query.limit, DEFAULT_HEADERS_PAGE, MAX_HEADERS_PAGE)?;
    let page = blocking(&node, move |node| {
        let params = node.params();
        let snapshot = node.reader().snapshot()?;
        let tip_height = tip_height(&snapshot)?;
        let end = query.before.unwrap_or(u64::MAX).min(tip_height.0 + 1);
        let start = end.saturating_sub(limit);
        let mut headers = Vec::with_capacity((end - start) as usize);
        for height in (start..end).rev().map(BlockHeight) {
            let hash = main_chain_hash(&snapshot, height)?;
            let record = indexed_record(&snapshot, &hash)?;
            // Its size and count without decoding its transactions: a page of large
            // blocks costs its headers.
            let summary = snapshot
                .block_summary(&hash)?
                .ok_or_else(|| ApiError::internal(format!("block {hash} has no data")))?;
            headers.push(HeaderJson {
                header: HeaderFieldsJson::new(params, hash, &record.header, height),
                chain_work: record.chain_work.to_string(),
                transaction_count: summary.transaction_count,
                size: summary.size,
                confirmations: confirmations(tip_height, height),
            });
        }
        Ok(HeadersPage {
            tip_height: tip_height.0,
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

impl QueryParameters for ChartsQuery {
    const NAMES: &'static [&'static str] = &["last"];
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
    CheckedQuery(query): CheckedQuery<ChartsQuery>,
) -> Result<Json<ChartsJson>, ApiError> {
    let last = page_size("last", query.last, DEFAULT_CHART_BLOCKS, MAX_CHART_BLOCKS)?;
    let json = blocking(&node, move |node| {
        let params = node.params();
        let snapshot = node.reader().snapshot()?;
        let tip_height = tip_height(&snapshot)?.0;
        let start = (tip_height + 1).saturating_sub(last);
        let mut previous_time: Option<u64> = None;
        if start > 0 {
            let parent = main_chain_hash(&snapshot, BlockHeight(start - 1))?;
            previous_time = snapshot
                .index_record(&parent)?
                .map(|record| record.header.time_ms);
        }
        let mut blocks = Vec::with_capacity((tip_height + 1 - start) as usize);
        for height in start..=tip_height {
            let hash = main_chain_hash(&snapshot, BlockHeight(height))?;
            let header = indexed_record(&snapshot, &hash)?.header;
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
    use axum::http::StatusCode;
    use powchain_consensus::Network;
    use powchain_node::{NodeConfig, SystemClock};
    use tempfile::TempDir;

    use crate::dto::tests::{HEADER_FIELDS, keys_in_order};

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
        headers(State(Arc::clone(node)), CheckedQuery(query))
            .await
            .map(|Json(page)| page)
    }

    fn heights(page: &HeadersPage) -> Vec<u64> {
        page.headers
            .iter()
            .map(|header| header.header.height)
            .collect()
    }

    #[tokio::test]
    async fn header_pages_walk_the_main_chain_newest_first() {
        let (_folder, node) = regtest_node(30);
        let first = headers_page(&node, None, None).await.expect("a page");
        assert_eq!(first.tip_height, 30);
        assert_eq!(heights(&first), (11..=30).rev().collect::<Vec<_>>());
        assert_eq!(first.next_before, Some(11));
        assert_eq!(first.headers[0].header.hash, node.tip().hash.to_string());
        assert_eq!(first.headers[0].confirmations, 1);
        assert_eq!(first.headers[0].transaction_count, 1);
        for pair in first.headers.windows(2) {
            assert_eq!(
                pair[0].header.last_hash, pair[1].header.hash,
                "each links to the next"
            );
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
    async fn header_page_entries_keep_their_documented_field_order() {
        let (_folder, node) = regtest_node(1);
        let page = headers_page(&node, None, Some(1)).await.expect("a page");
        let json = serde_json::to_string(&page.headers[0]).expect("serializes");
        let own = ["chainWork", "transactionCount", "size", "confirmations"];
        assert_eq!(keys_in_order(&json), [&HEADER_FIELDS[..], &own].concat());
    }

    #[tokio::test]
    async fn chart_data_covers_the_newest_blocks_with_their_intervals() {
        let (_folder, node) = regtest_node(10);
        let chart = |last| {
            let node = Arc::clone(&node);
            async move {
                charts(State(node), CheckedQuery(ChartsQuery { last }))
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
            Some(newest.blocks[0].timestamp as i64 - parent.headers[0].header.timestamp as i64)
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
}
