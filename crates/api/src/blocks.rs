//! Blocks: the tutorial's `GET /blocks` (paged), `GET /blocks/{hash|height}`, and mining
//! (`POST /mine`, `GET|POST /mine-transactions`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::header::LINK;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use powchain_consensus::{Block, BlockHash, BlockHeight, Params};
use powchain_node::Node;
use serde::{Deserialize, Serialize};

use crate::body::{JsonBody, NoFields};
use crate::dto::{HeaderFieldsJson, TransactionJson};
use crate::error::ApiError;
use crate::input::{CheckedQuery, NoQuery, QueryParameters, page_size, parse_hash};
use crate::main_chain::{confirmations, main_chain_hash, stored_block, tip_height};
use crate::page::{JsonArrayPage, PageBytes};
use crate::router::blocking;

/// Blocks a page holds unless `limit` says otherwise.
pub const DEFAULT_PAGE: u64 = 100;
/// The most blocks one page holds.
pub const MAX_PAGE: u64 = 1000;

/// A block, as `GET /blocks`, `GET /blocks/{id}` and mining answer it: the tutorial's
/// `lastHash`, `timestamp`, `nonce`, `difficulty` and `data` (the transactions) among them.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct BlockJson {
    /// The header's fields, first.
    #[serde(flatten)]
    pub header: HeaderFieldsJson,
    /// Encoded size in bytes.
    pub size: usize,
    /// Number of transactions.
    pub transaction_count: usize,
    /// Blocks on top of it plus one, if on the main chain.
    pub confirmations: Option<u64>,
    /// The transactions (the tutorial's `data`).
    pub data: Vec<TransactionJson>,
}

impl BlockJson {
    /// Describes `block` at `height`; `confirmations` is `None` off the main chain.
    pub fn new(
        params: &Params,
        block: &Block,
        height: BlockHeight,
        confirmations: Option<u64>,
    ) -> BlockJson {
        BlockJson {
            header: HeaderFieldsJson::new(params, block.compute_hash(), &block.header, height),
            size: block.compute_size(),
            transaction_count: block.transactions.len(),
            confirmations,
            data: block
                .transactions
                .iter()
                .map(|transaction| TransactionJson::new(params.network, transaction))
                .collect(),
        }
    }
}

/// `GET /blocks` query.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct BlocksQuery {
    /// First height of the page (default: so the page ends at the tip).
    pub start: Option<u64>,
    /// Blocks in the page (default 100, at most 1000).
    pub limit: Option<u64>,
}

impl QueryParameters for BlocksQuery {
    const NAMES: &'static [&'static str] = &["start", "limit"];
}

/// The header naming the height where the blocks after a `GET /blocks` page start: the
/// `start` of the request that continues it. Absent when the page ends at the tip.
pub const NEXT_START_HEADER: &str = "x-next-start";

/// The header that says, in words, which heights a `GET /blocks` page holds and how to
/// reach genesis from it (a tutorial client checks that the first block is genesis, which
/// holds only while the chain fits one page).
pub const PAGE_NOTE_HEADER: &str = "x-page-note";

/// How a `GET /blocks` page sits in the chain: what its `Link` and `x-page-note` headers
/// say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlocksPagePlace {
    /// The height asked for first.
    start: u64,
    /// The height after the page's last block (`start` when it is empty).
    end: u64,
    /// Blocks asked for.
    limit: u64,
    /// The tip's height.
    tip: u64,
}

impl BlocksPagePlace {
    /// `Link` (RFC 8288): `first` (from genesis), `prev` (the blocks just below; absent
    /// at genesis), `next` (the blocks just above; absent at the tip), `last` (the newest
    /// page, as without a query).
    fn link(&self) -> String {
        let Self {
            start,
            end,
            limit,
            tip,
        } = *self;
        let mut links = vec![format!("</blocks?start=0&limit={limit}>; rel=\"first\"")];
        if start > 0 && start <= tip {
            let prev_start = start.saturating_sub(limit);
            links.push(format!(
                "</blocks?start={prev_start}&limit={}>; rel=\"prev\"",
                start - prev_start
            ));
        }
        if end > start && end <= tip {
            links.push(format!("</blocks?start={end}&limit={limit}>; rel=\"next\""));
        }
        links.push(format!("</blocks?limit={limit}>; rel=\"last\""));
        links.join(", ")
    }

    /// `x-page-note`: the heights held, and the way to genesis when it is not among them.
    fn note(&self) -> String {
        let Self {
            start,
            end,
            limit,
            tip,
        } = *self;
        if end <= start {
            return format!("no blocks: start {start} is past the tip at height {tip}");
        }
        let last = end - 1;
        let held = format!("heights {start} to {last} of 0 to {tip}");
        match (start == 0, last == tip) {
            (true, true) => format!("{held}: the whole chain, genesis first"),
            (true, false) => {
                format!("{held}, genesis first; the rest follows: Link rel=\"next\", x-next-start")
            }
            (false, true) => format!(
                "{held}: the newest blocks, so the first is not genesis; walk back with Link rel=\"prev\" or read from genesis with /blocks?start=0&limit={limit}"
            ),
            (false, false) => format!(
                "{held}: the first is not genesis; Link rel=\"prev\" and rel=\"next\" walk the chain"
            ),
        }
    }
}

/// `GET /blocks`: main-chain blocks oldest first, `limit` of them from `start`. Without a
/// query: the last 100 (the whole chain while it is short, as in the tutorial).
///
/// The page also stops before its JSON passes `page_bytes` (it always holds one block):
/// then it carries `x-page-truncated: true`, and `x-next-start` says where to go on. Every
/// page says where it sits: `x-chain-height`, `Link` (first, prev, next, last) and
/// `x-page-note`.
pub async fn list_blocks(
    State(node): State<Arc<Node>>,
    Extension(page_bytes): Extension<PageBytes>,
    CheckedQuery(query): CheckedQuery<BlocksQuery>,
) -> Result<Response, ApiError> {
    let limit = page_size("limit", query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let (page, place) = blocking(&node, move |node| {
        let snapshot = node.reader().snapshot()?;
        let tip_height = tip_height(&snapshot)?;
        let start = query
            .start
            .unwrap_or_else(|| (tip_height.0 + 1).saturating_sub(limit));
        let end = start.saturating_add(limit).min(tip_height.0 + 1);
        // Each block is read, described and written before the next: only the page's
        // bytes and one block's values are held at once.
        let mut page = JsonArrayPage::new(page_bytes);
        let mut next_start = end;
        for height in (start..end).map(BlockHeight) {
            let block = stored_block(&snapshot, &main_chain_hash(&snapshot, height)?)?;
            let json = BlockJson::new(
                node.params(),
                &block,
                height,
                Some(confirmations(tip_height, height)),
            );
            if !page.push(&json)? {
                next_start = height.0;
                break;
            }
        }
        let place = BlocksPagePlace {
            start,
            end: next_start.max(start),
            limit,
            tip: tip_height.0,
        };
        Ok((page, place))
    })
    .await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-chain-height", HeaderValue::from(place.tip));
    if place.end > place.start && place.end <= place.tip {
        headers.insert(NEXT_START_HEADER, HeaderValue::from(place.end));
    }
    for (name, value) in [
        (LINK.as_str(), place.link()),
        (PAGE_NOTE_HEADER, place.note()),
    ] {
        let value = HeaderValue::from_str(&value)
            .map_err(|error| ApiError::internal(format!("could not write {name}: {error}")))?;
        headers.insert(name, value);
    }
    let truncated = page.is_truncated();
    Ok(page.into_response(headers, truncated))
}

/// `GET /blocks/{id}`: a block by hash (any branch) or by main-chain height.
pub async fn get_block(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    _query: NoQuery,
) -> Result<Json<BlockJson>, ApiError> {
    let Path(id) = path?;
    let block = blocking(&node, move |node| {
        let snapshot = node.reader().snapshot()?;
        let tip_height = tip_height(&snapshot)?;
        let hash = if id.len() == 64 {
            parse_hash::<BlockHash>("block hash", &id)?
        } else if !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit()) {
            let height: u64 = id
                .parse()
                .map_err(|_| ApiError::bad_request(format!("height {id} is out of range")))?;
            snapshot.hash_at(BlockHeight(height))?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "no block at height {height}: the tip is at {tip_height}"
                ))
            })?
        } else {
            return Err(ApiError::bad_request(format!(
                "{id:?} is neither a block hash (64 hex digits) nor a height"
            )));
        };
        let record = snapshot
            .index_record(&hash)?
            .ok_or_else(|| ApiError::not_found(format!("unknown block {hash}")))?;
        let block = snapshot.block(&hash)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "block {hash} is known by its header only; its data has not arrived"
            ))
        })?;
        let on_main_chain = snapshot.hash_at(record.height)? == Some(hash);
        Ok(BlockJson::new(
            node.params(),
            &block,
            record.height,
            on_main_chain.then(|| confirmations(tip_height, record.height)),
        ))
    })
    .await?;
    Ok(Json(block))
}

/// `POST /mine` body: the tutorial's `{"data": ...}`, optional; any other field is refused.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct MineRequest {
    /// The note for the coinbase: a string is stored as its UTF-8 bytes, anything else as
    /// its JSON text.
    pub data: Option<serde_json::Value>,
}

/// `POST /mine`: mines one block now (with the note and the pool's best transactions) and
/// returns it.
pub async fn mine(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(request): JsonBody<Option<MineRequest>>,
) -> Result<Json<BlockJson>, ApiError> {
    let note = match request.and_then(|request| request.data) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(text)) => text.into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let max = node.params().max_coinbase_data_bytes;
    if note.len() > max {
        return Err(ApiError::bad_request(format!(
            "data is {} bytes; a block's note holds at most {max}",
            note.len()
        )));
    }
    mine_and_describe(node, note).await
}

/// `GET|POST /mine-transactions`: mines one block with the pool's best transactions. It
/// takes no body fields (an empty body, `null` or `{}`).
pub async fn mine_transactions(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(_): JsonBody<Option<NoFields>>,
) -> Result<Json<BlockJson>, ApiError> {
    mine_and_describe(node, Vec::new()).await
}

async fn mine_and_describe(node: Arc<Node>, note: Vec<u8>) -> Result<Json<BlockJson>, ApiError> {
    // The proof of work cannot be called off: answered when it ends, however long.
    crate::timeout::commit();
    let block = blocking(&node, move |node| {
        let block = node.mine_one(note, true)?;
        let height = block.coinbase_height().unwrap_or_default();
        Ok(BlockJson::new(node.params(), &block, height, Some(1)))
    })
    .await?;
    Ok(Json(block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::Network;

    use crate::dto::tests::{HEADER_FIELDS, keys_in_order};

    #[test]
    fn block_json_keeps_its_documented_field_order() {
        let params = Network::Regtest.params();
        let block = BlockJson::new(params, params.genesis(), BlockHeight(0), Some(1));
        let json = serde_json::to_string(&block).expect("serializes");
        let own = ["size", "transactionCount", "confirmations", "data"];
        assert_eq!(keys_in_order(&json), [&HEADER_FIELDS[..], &own].concat());
    }

    /// Follows `x-next-start` from `path` to the end, checking each page; returns the
    /// heights of every block seen and how many pages the budget cut.
    async fn walk_pages(
        address: std::net::SocketAddr,
        first: &str,
        budget: usize,
    ) -> (Vec<u64>, usize) {
        let mut path = first.to_owned();
        let mut heights = Vec::new();
        let mut cut_pages = 0;
        loop {
            let page = crate::testing::get(address, &path).await;
            assert_eq!(page.status, 200, "{path}");
            let blocks = page.json();
            let blocks = blocks.as_array().expect("an array");
            assert!(!blocks.is_empty(), "a page always holds a block");
            assert!(
                page.body.len() <= budget || blocks.len() == 1,
                "{} bytes in {} blocks past the budget {budget}",
                page.body.len(),
                blocks.len()
            );
            heights.extend(
                blocks
                    .iter()
                    .map(|block| block["height"].as_u64().expect("a height")),
            );
            if page.header(crate::PAGE_TRUNCATED_HEADER) == Some("true") {
                cut_pages += 1;
            }
            match page.header(NEXT_START_HEADER) {
                Some(next) => path = format!("/blocks?start={next}&limit=1000"),
                None => return (heights, cut_pages),
            }
        }
    }

    #[test]
    fn a_page_says_where_it_sits_and_how_to_reach_genesis() {
        let place = |start, end, limit, tip| BlocksPagePlace {
            start,
            end,
            limit,
            tip,
        };
        let newest = place(151, 251, 100, 250);
        assert_eq!(
            newest.link(),
            "</blocks?start=0&limit=100>; rel=\"first\", </blocks?start=51&limit=100>; rel=\"prev\", </blocks?limit=100>; rel=\"last\""
        );
        assert!(newest.note().starts_with(
            "heights 151 to 250 of 0 to 250: the newest blocks, so the first is not genesis"
        ));
        // Just above genesis: `prev` holds only the blocks below, not the page again.
        let near = place(30, 130, 100, 250);
        assert!(
            near.link()
                .contains("</blocks?start=0&limit=30>; rel=\"prev\""),
            "{}",
            near.link()
        );
        assert!(
            near.link()
                .contains("</blocks?start=130&limit=100>; rel=\"next\"")
        );
        let whole = place(0, 3, 100, 2);
        assert_eq!(
            whole.link(),
            "</blocks?start=0&limit=100>; rel=\"first\", </blocks?limit=100>; rel=\"last\""
        );
        assert_eq!(
            whole.note(),
            "heights 0 to 2 of 0 to 2: the whole chain, genesis first"
        );
        let past = place(9, 9, 100, 2);
        assert_eq!(
            past.note(),
            "no blocks: start 9 is past the tip at height 2"
        );
        assert!(!past.link().contains("prev") && !past.link().contains("next"));
    }

    #[tokio::test]
    async fn a_page_of_large_blocks_is_cut_by_bytes_and_says_where_to_go_on() {
        let (_folder, node) = crate::testing::node_with_full_blocks(4, 10);
        let tip = node.tip().height.0;
        assert_eq!(tip, 5);
        let block_bytes = |height: u64| {
            let snapshot = node.reader().snapshot().expect("a snapshot");
            let block = stored_block(
                &snapshot,
                &main_chain_hash(&snapshot, BlockHeight(height)).expect("a hash"),
            )
            .expect("a block");
            serde_json::to_vec(&BlockJson::new(
                node.params(),
                &block,
                BlockHeight(height),
                Some(confirmations(BlockHeight(tip), BlockHeight(height))),
            ))
            .expect("serializes")
            .len()
        };
        // Room for two of the full blocks, not three.
        let budget = block_bytes(2) + block_bytes(3) + 3;
        assert!(
            block_bytes(2) > 5_000,
            "the blocks are large: {}",
            block_bytes(2)
        );
        let options = crate::ApiOptions {
            max_page_bytes: budget,
            ..crate::ApiOptions::default()
        };
        let server = crate::testing::TestServer::api(Arc::clone(&node), options).await;

        let page = crate::testing::get(server.address, "/blocks?start=2&limit=1000").await;
        assert_eq!(page.header(crate::PAGE_TRUNCATED_HEADER), Some("true"));
        assert_eq!(page.header(NEXT_START_HEADER), Some("4"));
        assert_eq!(page.header("content-type"), Some("application/json"));
        assert_eq!(page.header("x-chain-height"), Some("5"));
        assert!(page.body.len() <= budget);
        assert_eq!(page.json().as_array().map(Vec::len), Some(2));

        let (heights, cut_pages) =
            walk_pages(server.address, "/blocks?start=0&limit=1000", budget).await;
        assert_eq!(
            heights,
            (0..=tip).collect::<Vec<_>>(),
            "every block once, in order"
        );
        assert!(cut_pages >= 2, "{cut_pages}");

        // A count-limited page that fits is not marked cut, but says where the rest starts.
        let small = crate::testing::get(server.address, "/blocks?start=0&limit=2").await;
        assert_eq!(small.header(crate::PAGE_TRUNCATED_HEADER), None);
        assert_eq!(small.header(NEXT_START_HEADER), Some("2"));
        let last = crate::testing::get(server.address, "/blocks?limit=1").await;
        assert_eq!(
            last.header(NEXT_START_HEADER),
            None,
            "the page ends at the tip"
        );
    }

    #[tokio::test]
    async fn a_block_larger_than_the_budget_still_makes_a_page_of_one() {
        let (_folder, node) = crate::testing::node_with_full_blocks(2, 5);
        let options = crate::ApiOptions {
            max_page_bytes: 100,
            ..crate::ApiOptions::default()
        };
        let server = crate::testing::TestServer::api(node, options).await;
        let (heights, cut_pages) =
            walk_pages(server.address, "/blocks?start=0&limit=1000", 100).await;
        assert_eq!(heights, vec![0, 1, 2, 3]);
        assert_eq!(cut_pages, 3, "every page but the last is cut");
    }
}
