//! Transactions: the pool (`GET /transactions`), payments from the node wallet
//! (`POST /transact`), raw submission (`POST /tx`) and lookup (`GET /tx/{txid}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use powchain_consensus::encode::Decode;
use powchain_consensus::{Amount, FeeRate, Transaction, Txid, hex};
use powchain_mempool::PoolEntry;
use powchain_node::Node;
use serde::{Deserialize, Serialize};

use crate::body::JsonBody;
use crate::dto::TransactionJson;
use crate::error::ApiError;
use crate::input::{
    CheckedQuery, NoQuery, QueryParameters, page_size, parse_hash, parse_recipient,
};
use crate::main_chain::{confirmations, tip_height};
use crate::page::{JsonArrayPage, PageBytes};
use crate::router::blocking;

/// A pooled transaction.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PoolTransactionJson {
    /// The transaction.
    #[serde(flatten)]
    pub transaction: TransactionJson,
    /// Its fee, units.
    pub fee: u64,
    /// Fee per byte.
    pub fee_rate: f64,
    /// When the pool took it, ms since the epoch.
    pub received_at: u64,
}

impl PoolTransactionJson {
    fn new(node: &Node, pooled: &PoolEntry) -> PoolTransactionJson {
        PoolTransactionJson {
            transaction: TransactionJson::new(node.params().network, &pooled.transaction),
            fee: pooled.fee.to_units(),
            fee_rate: pooled.fee_rate.to_units_per_kilobyte() as f64 / 1000.0,
            received_at: pooled.time_ms,
        }
    }
}

/// The header naming the `offset` of the request that continues a `GET /transactions` page
/// that `limit` or the byte budget cut. Absent when the page holds the rest of the pool.
pub const NEXT_OFFSET_HEADER: &str = "x-next-offset";

/// The most pooled transactions one `GET /transactions` page holds when `limit` is given
/// (without it, as many as fit the page's bytes: the tutorial's whole pool).
pub const MAX_POOL_PAGE: u64 = 1000;

/// `GET /transactions` query: the paging parameters of every ranked list.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PoolQuery {
    /// Pooled transactions to skip, best fee rate first (default 0).
    pub offset: Option<usize>,
    /// Pooled transactions in the page (default: as many as fit the page's bytes; at most
    /// 1000).
    pub limit: Option<u64>,
}

impl QueryParameters for PoolQuery {
    const NAMES: &'static [&'static str] = &["offset", "limit"];
}

/// `GET /transactions`: the pool, best fee rate first, from `offset`, at most `limit` and
/// as many as fit the page's bytes (at least one). A page with transactions after it
/// carries `x-next-offset`; one the byte budget cut also `x-page-truncated: true`.
pub async fn list_pool(
    State(node): State<Arc<Node>>,
    Extension(page_bytes): Extension<PageBytes>,
    CheckedQuery(query): CheckedQuery<PoolQuery>,
) -> Result<Response, ApiError> {
    let offset = query.offset.unwrap_or(0);
    let limit = match query.limit {
        // At most MAX_POOL_PAGE, so it fits a usize.
        Some(limit) => page_size("limit", Some(limit), MAX_POOL_PAGE, MAX_POOL_PAGE)? as usize,
        None => usize::MAX,
    };
    let (page, next_offset, truncated) = blocking(&node, move |node| {
        // A transaction's JSON is more than its encoded size (the `hex` field alone is
        // twice that), so a window of `page_bytes` encoded bytes fills the page.
        let (window, more) = node.pool_transactions_page(offset, page_bytes.0);
        let mut page = JsonArrayPage::new(page_bytes);
        for pooled in window.iter().take(limit) {
            if !page.push(&PoolTransactionJson::new(node, pooled))? {
                break;
            }
        }
        // Cut by bytes: here, or by the node when it had more than the window it gave.
        let truncated = page.is_truncated() || (more && page.len() < limit);
        let next_offset =
            (more || window.len() > page.len()).then(|| offset.saturating_add(page.len()));
        Ok((page, next_offset, truncated))
    })
    .await?;
    let mut headers = HeaderMap::new();
    if let Some(next_offset) = next_offset {
        headers.insert(NEXT_OFFSET_HEADER, HeaderValue::from(next_offset));
    }
    Ok(page.into_response(headers, truncated))
}

/// `POST /transact` body: `recipient` and exactly one of `amount` (units) and `coins`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransactRequest {
    /// Who to pay: an address of this network, or a public key in hex (64, 66 or 130
    /// digits), which pays that key's address.
    pub recipient: String,
    /// How much, in units (the tutorial's field; 1 coin = 100,000,000 units).
    pub amount: Option<u64>,
    /// How much, in coins, as a decimal string (`"1.5"`): a JSON number is refused, so it
    /// cannot be mistaken for units.
    pub coins: Option<String>,
    /// Units per byte to pay in fees (default: the node's wallet fee rate).
    pub fee_rate: Option<u64>,
}

impl TransactRequest {
    /// The amount to pay, from whichever of `amount` and `coins` was given.
    ///
    /// # Errors
    /// A 400 when both or neither were given, or the amount is 0, malformed or above the
    /// money supply.
    fn amount(&self) -> Result<Amount, ApiError> {
        let amount = match (self.amount, &self.coins) {
            (Some(units), None) => Amount::from_units(units)
                .map_err(|error| ApiError::bad_request(format!("invalid amount: {error}")))?,
            (None, Some(coins)) => coins
                .trim()
                .parse::<Amount>()
                .map_err(|error| ApiError::bad_request(format!("invalid coins: {error}")))?,
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give either `amount` (integer units) or `coins` (a decimal string such as \"1.5\"), not both",
                ));
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "how much to send is missing: give `amount` (integer units, 1 coin = 100000000 units) or `coins` (a decimal string such as \"1.5\")",
                ));
            }
        };
        if amount == Amount::ZERO {
            return Err(ApiError::bad_request("amount must be at least 1 unit"));
        }
        Ok(amount)
    }
}

/// `POST /transact` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TransactResponse {
    /// The transaction, now in the pool.
    #[serde(flatten)]
    pub transaction: TransactionJson,
    /// The address paid (the recipient's, or the address of the public key given).
    pub recipient: String,
    /// How much the recipient gets, coins with all eight decimals (`"0.00000050"`), so
    /// an `amount` meant as coins shows at once.
    pub sent: String,
    /// The same, units.
    pub sent_units: u64,
    /// The fee it pays, units.
    pub fee: u64,
}

/// Coins with all eight decimals: `0.00000050`, `12.50000000`.
fn coins_with_eight_decimals(amount: Amount) -> String {
    let units = amount.to_units();
    format!(
        "{}.{:08}",
        units / powchain_consensus::UNITS_PER_COIN,
        units % powchain_consensus::UNITS_PER_COIN
    )
}

/// `POST /transact`: pays `amount` units or `coins` to `recipient` from the node's wallet.
pub async fn transact(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(request): JsonBody<TransactRequest>,
) -> Result<Json<TransactResponse>, ApiError> {
    let network = node.params().network;
    let recipient = parse_recipient(&request.recipient, network)?;
    let amount = request.amount()?;
    let fee_rate = request.fee_rate.map(FeeRate::from_units_per_byte);
    let payment = blocking(&node, move |node| {
        Ok(node.send(recipient, amount, fee_rate)?)
    })
    .await?;
    Ok(Json(TransactResponse {
        transaction: TransactionJson::new(network, &payment.transaction),
        recipient: recipient.to_bech32(network),
        sent: coins_with_eight_decimals(amount),
        sent_units: amount.to_units(),
        fee: payment.fee.to_units(),
    }))
}

/// `POST /tx` body: a signed transaction in its canonical encoding.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTransactionRequest {
    /// The encoding, hex.
    pub hex: String,
}

/// `POST /tx` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    /// The accepted transaction's id.
    pub txid: String,
    /// Its fee, units.
    pub fee: u64,
}

/// `POST /tx`: submits a signed transaction to the pool.
pub async fn submit_raw(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(request): JsonBody<RawTransactionRequest>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let bytes = hex::decode(request.hex.trim())
        .map_err(|error| ApiError::bad_request(format!("invalid hex: {error}")))?;
    let transaction = Transaction::decode_exact(&bytes)
        .map_err(|error| ApiError::bad_request(format!("not a transaction: {error}")))?;
    let accepted = blocking(&node, move |node| Ok(node.submit_transaction(transaction)?)).await?;
    Ok(Json(SubmitResponse {
        txid: accepted.txid.to_string(),
        fee: accepted.fee.to_units(),
    }))
}

/// `GET /tx/{txid}` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TransactionLookup {
    /// The transaction, with input addresses and amounts where known.
    #[serde(flatten)]
    pub transaction: TransactionJson,
    /// `"pool"` or `"confirmed"`.
    pub status: &'static str,
    /// Fee in units (absent for a coinbase).
    pub fee: Option<u64>,
    /// Blocks on top of its block plus one; 0 in the pool.
    pub confirmations: u64,
    /// Its block, when confirmed.
    pub block_hash: Option<String>,
    /// Its block's height, when confirmed.
    pub block_height: Option<u64>,
}

/// `GET /tx/{txid}`: a pooled or confirmed transaction.
pub async fn get_transaction(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    _query: NoQuery,
) -> Result<Json<TransactionLookup>, ApiError> {
    let Path(text) = path?;
    let txid: Txid = parse_hash("transaction id", &text)?;
    let lookup = blocking(&node, move |node| {
        let network = node.params().network;
        // The pool, then the chain, then the pool again. A block that confirms the
        // transaction is committed before the pool lets go of it, and a reorganisation
        // returns it to the pool after the chain let go of it (each under the core lock),
        // so a transaction that stays in the pool or the main chain throughout is found.
        let pooled_first = node.pool_transaction(&txid);
        let snapshot = node.reader().snapshot()?;
        let location = snapshot.tx_location(&txid)?;
        let pooled = match (pooled_first, location) {
            (Some(pooled), _) => Some(pooled),
            (None, None) => node.pool_transaction(&txid),
            (None, Some(_)) => None,
        };
        let resolve = |transaction: &Transaction,
                       json: &mut TransactionJson|
         -> Result<Option<Amount>, ApiError> {
            // Find each spent output through the transaction index (confirmed parents) or
            // the pool (unconfirmed parents).
            let mut input_total = Some(Amount::ZERO);
            for (input, described) in transaction.spends().iter().zip(json.inputs.iter_mut()) {
                let parent = match snapshot.tx_location(&input.prevout.txid)? {
                    Some(location) => snapshot.block(&location.block_hash)?.and_then(|block| {
                        block.transactions.get(location.position as usize).cloned()
                    }),
                    None => node
                        .pool_transaction(&input.prevout.txid)
                        .map(|pooled| pooled.transaction),
                };
                let output = parent
                    .and_then(|parent| parent.outputs.get(input.prevout.vout as usize).copied());
                match output {
                    Some(output) => {
                        described.address = Some(output.address.to_bech32(network));
                        described.amount = Some(output.value.to_units());
                        input_total = input_total.and_then(|total| total.checked_add(output.value));
                    }
                    None => input_total = None,
                }
            }
            Ok(input_total)
        };
        if let Some(pooled) = pooled {
            let mut json = TransactionJson::new(network, &pooled.transaction);
            resolve(&pooled.transaction, &mut json)?;
            return Ok(TransactionLookup {
                transaction: json,
                status: "pool",
                fee: Some(pooled.fee.to_units()),
                confirmations: 0,
                block_hash: None,
                block_height: None,
            });
        }
        let location = location.ok_or_else(|| {
            ApiError::not_found(format!(
                "transaction {txid} is neither in the pool nor in the main chain"
            ))
        })?;
        let block = snapshot.block(&location.block_hash)?.ok_or_else(|| {
            ApiError::internal(format!("indexed block {} has no data", location.block_hash))
        })?;
        let transaction = block
            .transactions
            .get(location.position as usize)
            .cloned()
            .ok_or_else(|| ApiError::internal("the transaction index points past the block"))?;
        let record = snapshot
            .index_record(&location.block_hash)?
            .ok_or_else(|| ApiError::internal("indexed block missing from the block index"))?;
        let tip_height = tip_height(&snapshot)?;
        let mut json = TransactionJson::new(network, &transaction);
        let fee = if transaction.is_coinbase() {
            None
        } else {
            resolve(&transaction, &mut json)?
                .zip(transaction.output_total())
                .and_then(|(inputs, outputs)| inputs.checked_sub(outputs))
                .map(Amount::to_units)
        };
        Ok(TransactionLookup {
            transaction: json,
            status: "confirmed",
            fee,
            confirmations: confirmations(tip_height, record.height),
            block_hash: Some(location.block_hash.to_string()),
            block_height: Some(record.height.0),
        })
    })
    .await?;
    Ok(Json(lookup))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::testing::{TestServer, fill_pool, get, regtest_node};

    #[tokio::test]
    async fn the_pool_is_paged_by_bytes_from_an_offset_to_its_end() {
        let (_folder, node) = regtest_node(1);
        fill_pool(&node, 12);
        let pool: Vec<String> = node
            .pool_transactions()
            .iter()
            .map(|entry| entry.txid.to_string())
            .collect();
        let whole = serde_json::to_vec(
            &node
                .pool_transactions()
                .iter()
                .map(|pooled| PoolTransactionJson::new(&node, pooled))
                .collect::<Vec<_>>(),
        )
        .expect("serializes");
        let budget = whole.len() / 4;
        let options = crate::ApiOptions {
            max_page_bytes: budget,
            ..crate::ApiOptions::default()
        };
        let server = TestServer::api(Arc::clone(&node), options).await;

        let mut seen = Vec::new();
        let mut path = "/transactions".to_owned();
        let mut pages = 0;
        loop {
            let page = get(server.address, &path).await;
            assert_eq!(page.status, 200, "{path}");
            assert!(page.body.len() <= budget, "{} > {budget}", page.body.len());
            let items = page.json();
            let items = items.as_array().expect("an array").clone();
            assert!(!items.is_empty());
            seen.extend(
                items
                    .iter()
                    .map(|item| item["txid"].as_str().expect("a txid").to_owned()),
            );
            pages += 1;
            match page.header(NEXT_OFFSET_HEADER) {
                Some(next) => {
                    assert_eq!(page.header(crate::PAGE_TRUNCATED_HEADER), Some("true"));
                    assert_eq!(next, seen.len().to_string());
                    path = format!("/transactions?offset={next}");
                }
                None => break,
            }
        }
        assert!(pages >= 4, "{pages} pages");
        assert_eq!(seen, pool, "the whole pool, best fee rate first, once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 12);

        let past = get(server.address, "/transactions?offset=99").await;
        assert_eq!(past.body, b"[]");
        assert_eq!(past.header(NEXT_OFFSET_HEADER), None);
        let unknown = get(server.address, "/transactions?page=2").await;
        assert_eq!(unknown.status, 400);
        assert!(
            String::from_utf8_lossy(&unknown.body)
                .contains("`page`: GET /transactions takes `offset`, `limit`")
        );
    }

    #[tokio::test]
    async fn the_pool_is_paged_by_limit_too() {
        let (_folder, node) = regtest_node(1);
        fill_pool(&node, 5);
        let pool: Vec<String> = node
            .pool_transactions()
            .iter()
            .map(|entry| entry.txid.to_string())
            .collect();
        let server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        let mut seen = Vec::new();
        let mut path = "/transactions?limit=2".to_owned();
        loop {
            let page = get(server.address, &path).await;
            assert_eq!(page.status, 200, "{path}");
            assert_eq!(
                page.header(crate::PAGE_TRUNCATED_HEADER),
                None,
                "a count, not bytes"
            );
            let items = page.json();
            let items = items.as_array().expect("an array").clone();
            assert!(items.len() <= 2);
            seen.extend(
                items
                    .iter()
                    .map(|item| item["txid"].as_str().expect("a txid").to_owned()),
            );
            match page.header(NEXT_OFFSET_HEADER) {
                Some(next) => path = format!("/transactions?offset={next}&limit=2"),
                None => break,
            }
        }
        assert_eq!(seen, pool);
        for bad in ["limit=0", "limit=1001", "limit=x"] {
            let page = get(server.address, &format!("/transactions?{bad}")).await;
            assert_eq!(page.status, 400, "{bad}");
        }
    }

    #[test]
    fn sent_coins_show_all_eight_decimals() {
        let amount = |units| Amount::from_units(units).expect("in range");
        assert_eq!(coins_with_eight_decimals(amount(50)), "0.00000050");
        assert_eq!(
            coins_with_eight_decimals(amount(1_250_000_000)),
            "12.50000000"
        );
        assert_eq!(
            coins_with_eight_decimals(Amount::MAX_MONEY),
            "21000000.00000000"
        );
    }

    #[test]
    fn exactly_one_of_amount_and_coins_says_how_much() {
        let request = |body: serde_json::Value| {
            serde_json::from_value::<TransactRequest>(body).map_err(|error| error.to_string())
        };
        let amount = |body| request(body).expect("parses").amount();
        let recipient = "r";
        assert_eq!(
            amount(serde_json::json!({"recipient": recipient, "amount": 50})).map(Amount::to_units),
            Ok(50)
        );
        assert_eq!(
            amount(serde_json::json!({"recipient": recipient, "coins": "1.5"}))
                .map(Amount::to_units),
            Ok(150_000_000)
        );
        assert_eq!(
            amount(serde_json::json!({"recipient": recipient, "coins": " 50 "}))
                .map(Amount::to_units),
            Ok(5_000_000_000)
        );
        for (body, expected) in [
            (
                serde_json::json!({"recipient": recipient}),
                "how much to send is missing",
            ),
            (
                serde_json::json!({"recipient": recipient, "amount": 5, "coins": "5"}),
                "not both",
            ),
            (
                serde_json::json!({"recipient": recipient, "coins": "1.123456789"}),
                "invalid coins: invalid coin amount \"1.123456789\"",
            ),
            (
                serde_json::json!({"recipient": recipient, "coins": "-1"}),
                "invalid coins",
            ),
            (
                serde_json::json!({"recipient": recipient, "coins": "21000000.00000001"}),
                "above the maximum",
            ),
            (
                serde_json::json!({"recipient": recipient, "coins": "0"}),
                "at least 1 unit",
            ),
            (
                serde_json::json!({"recipient": recipient, "amount": 0}),
                "at least 1 unit",
            ),
        ] {
            let error = amount(body.clone()).expect_err("refused");
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(
                error.message.contains(expected),
                "{body}: {}",
                error.message
            );
        }
        let number = request(serde_json::json!({"recipient": recipient, "coins": 1.5}))
            .expect_err("a number of coins is refused");
        assert!(number.contains("expected a string"), "{number}");
    }
}
