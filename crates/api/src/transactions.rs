//! Transactions: the pool (`GET /transactions`), payments from the node wallet
//! (`POST /transact`), raw submission (`POST /tx`) and lookup (`GET /tx/{txid}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, FromRequest, Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use powchain_consensus::encode::Decode;
use powchain_consensus::{Amount, FeeRate, Network, OutPoint, Transaction, TxOut, Txid, hex};
use powchain_mempool::{Accepted, PoolEntry};
use powchain_node::{AddressGroup, Admissions, Node, NodeError};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::body::JsonBody;
use crate::dto::TransactionJson;
use crate::error::ApiError;
use crate::group_shares::{GroupBudgets, GroupBytes};
use crate::input::{
    CheckedQuery, NoQuery, QueryParameters, page_size, parse_hash, parse_recipient,
};
use crate::main_chain::{confirmations, tip_height};
use crate::page::{JsonArrayPage, PageBytes};
use crate::router::{MAX_BATCH_BODY_BYTES, blocking};
use crate::server::ClientGroup;

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
        let (window, more) = node.pool_transactions_page(offset, limit, page_bytes.0);
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
    // The payment cannot be called off: a 503 now would invite a second one.
    crate::timeout::commit();
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

/// A transaction from its canonical encoding in hex.
fn decode_raw(text: &str) -> Result<Transaction, ApiError> {
    let bytes = hex::decode(text.trim())
        .map_err(|error| ApiError::bad_request(format!("invalid hex: {error}")))?;
    Transaction::decode_exact(&bytes)
        .map_err(|error| ApiError::bad_request(format!("not a transaction: {error}")))
}

/// `POST /tx`: submits a signed transaction to the pool.
pub async fn submit_raw(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(request): JsonBody<RawTransactionRequest>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let transaction = decode_raw(&request.hex)?;
    // Admitted and stored whether or not anyone waits: a 503 now would be untrue.
    crate::timeout::commit();
    let accepted = blocking(&node, move |node| Ok(node.submit_transaction(transaction)?)).await?;
    Ok(Json(SubmitResponse {
        txid: accepted.txid.to_string(),
        fee: accepted.fee.to_units(),
    }))
}

/// `POST /txs` requests read and admitted at once.
pub const BATCH_SLOTS: usize = 4;

/// How long a `POST /txs` body that holds part of [`BATCH_BODY_BUDGET_BYTES`] waits for
/// more before it is answered 503 `[busy]` and gives its part back (a body holding
/// nothing waits within the request timeout).
pub const BATCH_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes of `POST /txs` bodies held at once, across requests: each byte a request has
/// received holds one of them until its batch is answered. Twice what the slots admit,
/// so bodies are read while others are admitted.
pub const BATCH_BODY_BUDGET_BYTES: usize = 2 * BATCH_SLOTS * MAX_BATCH_BODY_BYTES;

/// Bytes of [`BATCH_BODY_BUDGET_BYTES`] one address group's bodies hold at once: an eighth,
/// one whole body (the operator's own `127.0.0.1` and `::1` are not capped). Eight bodies
/// of one address, each sent but for its last byte, held the whole budget until their
/// request timeout, and could be sent again: everyone else's batches waited 30 s and were
/// answered 503 (docs/SECURITY.md, item 87).
pub const BATCH_BODY_GROUP_SHARE_BYTES: usize = AddressGroup::share_of(BATCH_BODY_BUDGET_BYTES);

// A body's bytes never wait for more than its group's whole share.
const _: () = assert!(BATCH_BODY_GROUP_SHARE_BYTES >= MAX_BATCH_BODY_BYTES);

/// The slots of [`BATCH_SLOTS`] and the bytes of [`BATCH_BODY_BUDGET_BYTES`], of which an
/// address group's bodies hold at most [`BATCH_BODY_GROUP_SHARE_BYTES`], shared by one
/// router's `POST /txs` requests.
#[derive(Clone, Debug)]
pub struct BatchSlots {
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    by_group: GroupBudgets,
}

impl Default for BatchSlots {
    fn default() -> BatchSlots {
        BatchSlots {
            slots: Arc::new(Semaphore::new(BATCH_SLOTS)),
            bytes: Arc::new(Semaphore::new(BATCH_BODY_BUDGET_BYTES)),
            by_group: GroupBudgets::new(BATCH_BODY_GROUP_SHARE_BYTES),
        }
    }
}

/// Most transactions one `POST /txs` takes.
pub const MAX_BATCH_TRANSACTIONS: usize = 1_000;

/// `POST /txs` body: signed transactions in their canonical encoding, in the order they
/// are to be admitted (a parent before its child).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTransactionsRequest {
    /// The encodings, hex: at most [`MAX_BATCH_TRANSACTIONS`], refused while they are
    /// read (a 2 MiB body of empty strings would otherwise make some 700,000 of them).
    #[serde(deserialize_with = "at_most_a_batch")]
    pub hex: Vec<String>,
}

/// Reads a list of strings, refusing it at its 1,001st.
fn at_most_a_batch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Batch;
    impl<'de> Visitor<'de> for Batch {
        type Value = Vec<String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                formatter,
                "a list of at most {MAX_BATCH_TRANSACTIONS} hex strings"
            )
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Vec<String>, A::Error> {
            let mut hex = Vec::new();
            while let Some(item) = items.next_element::<String>()? {
                if hex.len() == MAX_BATCH_TRANSACTIONS {
                    return Err(serde::de::Error::custom(format!(
                        "`hex` holds {} transactions or more; a batch holds 1 to \
                         {MAX_BATCH_TRANSACTIONS}",
                        MAX_BATCH_TRANSACTIONS + 1
                    )));
                }
                hex.push(item);
            }
            Ok(hex)
        }
    }
    deserializer.deserialize_seq(Batch)
}

/// What became of one transaction of a `POST /txs`: `{txid, fee}` as `POST /tx` answers,
/// or `{error, status}` with the error and status `POST /tx` would have given it.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub enum BatchResult {
    /// Pooled and stored.
    Accepted(SubmitResponse),
    /// Refused or not stored.
    Refused {
        /// What and why.
        error: String,
        /// The status `POST /tx` answers with for it.
        status: u16,
    },
}

/// `POST /txs` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SubmitBatchResponse {
    /// Transactions pooled and stored.
    pub accepted: usize,
    /// Transactions refused or not stored.
    pub refused: usize,
    /// One result per transaction of the request, in its order.
    pub results: Vec<BatchResult>,
}

impl BatchResult {
    pub(crate) fn refused(error: ApiError) -> BatchResult {
        BatchResult::Refused {
            error: error.message,
            status: error.status.as_u16(),
        }
    }
}

/// `POST /txs`: submits many signed transactions at once, for clients that send many: one
/// request, one lock per 64 admissions and the stored rows in shared commits, instead of a
/// round trip and a sync each. Each transaction succeeds or fails on its own.
///
/// Bodies are read with no slot held, each received byte taking one of the bytes of
/// [`BATCH_BODY_BUDGET_BYTES`] (a client that dribbles its body holds what it sent, not a
/// slot: four of them stopped every batch until they timed out), and one of its address
/// group's [`BATCH_BODY_GROUP_SHARE_BYTES`]; then at most [`BATCH_SLOTS`] batches are
/// decoded and admitted at once. So bodies of up to 2 MiB cannot add up to more than a few
/// of them in memory however many connections send one, nor one group's to more than one.
pub async fn submit_raw_batch(
    State(node): State<Arc<Node>>,
    Extension(slots): Extension<BatchSlots>,
    client: Option<Extension<ClientGroup>>,
    _query: NoQuery,
    request: Request,
) -> Result<Json<SubmitBatchResponse>, ApiError> {
    // A request that did not come through the server's accept loop is the process's own.
    let group = client.map_or(AddressGroup::Local, |Extension(ClientGroup(group))| group);
    let (body, _bytes) =
        read_batch_body(request, &slots.bytes, slots.by_group.enter(group)).await?;
    let _slot = slots
        .slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the node is shutting down"))?;
    let JsonBody(request) =
        JsonBody::<RawTransactionsRequest>::from_request(Request::new(body.into()), &()).await?;
    Ok(Json(admit_batch(&node, request).await?))
}

/// What a `POST /txs` body holds while its batch is read and answered: its bytes of the
/// budget all bodies share, and of its address group's share.
type HeldBytes = (Option<OwnedSemaphorePermit>, GroupBytes);

/// Reads a `POST /txs` body of at most [`MAX_BATCH_BODY_BYTES`], taking for each byte as
/// it arrives one of `group`'s bytes and then a permit of `budget`; both are held until
/// dropped.
///
/// # Errors
/// 413 for a body (declared or sent) over the limit, 400 if it cannot be read, 503
/// `[busy]` when a body holding part of the budget waited too long for more, 503 when the
/// node is stopping.
async fn read_batch_body(
    request: Request,
    budget: &Arc<Semaphore>,
    mut group: GroupBytes,
) -> Result<(Vec<u8>, HeldBytes), ApiError> {
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "could not read the request body: length limit exceeded (a batch is at most \
             {MAX_BATCH_BODY_BYTES} bytes)"
        ),
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BATCH_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut chunks = request.into_body().into_data_stream();
    let mut body = Vec::new();
    // Each byte takes its place as it arrives, never before: a declared length reserved
    // up front would let eight heads without bodies hold the whole budget.
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(format!("could not read the request body: {error}"))
        })?;
        if body.len() + chunk.len() > MAX_BATCH_BODY_BYTES {
            return Err(too_large());
        }
        let permits = u32::try_from(chunk.len()).map_err(|_| too_large())?;
        // A body holding part of the budget must not wait for the rest for long: bodies
        // that each hold part of it and wait for more would wait for each other until
        // their timeouts. One that waits too long gives its part back. The same deadline
        // bounds its wait for more of its group's share, which it holds part of from its
        // first chunk on (while that chunk waits for the budget it holds part of its
        // group's share only, which keeps no other group waiting).
        let deadline = held
            .is_some()
            .then(|| tokio::time::Instant::now() + BATCH_BUDGET_WAIT);
        // The group's share first: a body waiting for its group's other bodies to give
        // bytes back holds nothing of the budget other groups wait for.
        wait_for_budget(group.take(permits), deadline).await?;
        let more =
            wait_for_budget(Arc::clone(budget).acquire_many_owned(permits), deadline).await?;
        match &mut held {
            Some(held) => held.merge(more),
            None => held = Some(more),
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, (held, group)))
}

/// Waits for bytes of a body budget: as long as it takes (within the request timeout)
/// without a `deadline`, else until it.
///
/// # Errors
/// 503 `[busy]` past the deadline, 503 when the node is stopping.
async fn wait_for_budget<T>(
    acquire: impl Future<Output = Result<T, AcquireError>>,
    deadline: Option<tokio::time::Instant>,
) -> Result<T, ApiError> {
    match deadline {
        None => acquire.await,
        Some(deadline) => tokio::time::timeout_at(deadline, acquire)
            .await
            .map_err(|_| {
                ApiError::unavailable(
                    "the node is reading too many batches at once; try again [busy]",
                )
            })?,
    }
    .map_err(|_| ApiError::unavailable("the node is shutting down"))
}

/// Admits the transactions of a `POST /txs` batch in order, each succeeding or failing on
/// its own, and waits until they are stored: one call to the node, which runs to its end
/// (the events that relay them included) even if the client leaves meanwhile.
///
/// # Errors
/// 400 for a batch of none or more than [`MAX_BATCH_TRANSACTIONS`]; 503 when the node's
/// blocking pool is gone (shutting down).
async fn admit_batch(
    node: &Arc<Node>,
    request: RawTransactionsRequest,
) -> Result<SubmitBatchResponse, ApiError> {
    let (decode_failures, decoded) = decode_batch(&request)?;
    // Admitted and stored whether or not anyone waits: a 503 now would be untrue.
    crate::timeout::commit();
    let outcomes = blocking(node, move |node| Ok(node.submit_transactions(decoded))).await?;
    Ok(batch_answer(decode_failures, outcomes))
}

/// A batch admitted in order, its rows queued (`GET /txs/ws`): [`AdmittedBatch::finish`]
/// waits for them and answers, so a stream admits its next batch while this one's rows
/// are written.
pub(crate) struct AdmittedBatch {
    /// Each transaction's refusal before admission (not a transaction), or `None` for the
    /// next of `admissions`.
    decode_failures: Vec<Option<BatchResult>>,
    admissions: Admissions,
}

/// Decodes and admits a batch, in order, without waiting for its rows to be stored.
///
/// # Errors
/// As [`admit_batch`].
pub(crate) async fn start_batch(
    node: &Arc<Node>,
    request: RawTransactionsRequest,
) -> Result<AdmittedBatch, ApiError> {
    let (decode_failures, decoded) = decode_batch(&request)?;
    let admissions = blocking(node, move |node| Ok(node.admit_transactions(decoded))).await?;
    Ok(AdmittedBatch {
        decode_failures,
        admissions,
    })
}

impl AdmittedBatch {
    /// Waits until the batch's rows are stored; one result per transaction, in order. The
    /// caller must see it to its end (the stream spawns it): the admitted transactions are
    /// announced to peers only then.
    ///
    /// # Errors
    /// 503 when the node's blocking pool is gone (shutting down).
    pub(crate) async fn finish(self, node: &Arc<Node>) -> Result<SubmitBatchResponse, ApiError> {
        let AdmittedBatch {
            decode_failures,
            admissions,
        } = self;
        let outcomes = blocking(node, move |node| Ok(node.await_admissions(admissions))).await?;
        Ok(batch_answer(decode_failures, outcomes))
    }
}

/// The batch's transactions decoded, in order, and for each entry its refusal if it is
/// not a transaction (`None` for the next decoded one).
///
/// # Errors
/// 400 for a batch of none or more than [`MAX_BATCH_TRANSACTIONS`].
fn decode_batch(
    request: &RawTransactionsRequest,
) -> Result<(Vec<Option<BatchResult>>, Vec<Transaction>), ApiError> {
    if request.hex.is_empty() || request.hex.len() > MAX_BATCH_TRANSACTIONS {
        return Err(ApiError::bad_request(format!(
            "`hex` holds {} transactions; a batch holds 1 to {MAX_BATCH_TRANSACTIONS}",
            request.hex.len()
        )));
    }
    let mut decode_failures = Vec::with_capacity(request.hex.len());
    let mut decoded = Vec::with_capacity(request.hex.len());
    for text in &request.hex {
        match decode_raw(text) {
            Ok(transaction) => {
                decoded.push(transaction);
                decode_failures.push(None);
            }
            Err(error) => decode_failures.push(Some(BatchResult::refused(error))),
        }
    }
    Ok((decode_failures, decoded))
}

/// The answer to a batch: the decode refusals in their places, the node's outcomes in
/// the others, in order.
fn batch_answer(
    decode_failures: Vec<Option<BatchResult>>,
    outcomes: Vec<Result<Accepted, NodeError>>,
) -> SubmitBatchResponse {
    let mut outcomes = outcomes.into_iter();
    let results: Vec<BatchResult> = decode_failures
        .into_iter()
        .map(|decode_failure| {
            decode_failure.unwrap_or_else(|| match outcomes.next() {
                Some(Ok(accepted)) => BatchResult::Accepted(SubmitResponse {
                    txid: accepted.txid.to_string(),
                    fee: accepted.fee.to_units(),
                }),
                Some(Err(error)) => BatchResult::refused(error.into()),
                None => BatchResult::refused(ApiError::internal(
                    "the node answered fewer transactions than it was given",
                )),
            })
        })
        .collect();
    let accepted = results
        .iter()
        .filter(|result| matches!(result, BatchResult::Accepted(_)))
        .count();
    SubmitBatchResponse {
        accepted,
        refused: results.len() - accepted,
        results,
    }
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
        if let Some(pooled) = pooled {
            let mut json = TransactionJson::new(network, &pooled.transaction);
            // A pooled transaction spends unspent coins: confirmed ones, or outputs of
            // pooled parents. One lookup each, never a parent's block.
            let spends = pooled.transaction.spends();
            let mut spent: Vec<Option<TxOut>> = Vec::with_capacity(spends.len());
            for input in spends {
                spent.push(snapshot.coin(&input.prevout)?.map(|coin| coin.output));
            }
            let unconfirmed: Vec<OutPoint> = spends
                .iter()
                .zip(&spent)
                .filter(|(_, found)| found.is_none())
                .map(|(input, _)| input.prevout)
                .collect();
            let mut from_pool = node.pool_outputs(&unconfirmed).into_iter();
            for found in &mut spent {
                if found.is_none() {
                    *found = from_pool.next().flatten();
                }
            }
            describe_inputs(network, &spent, &mut json);
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
        // The block with what it spent: its transactions' inputs need no other read.
        let mut block = snapshot
            .block_spends(&location.block_hash)?
            .ok_or_else(|| {
                ApiError::internal(format!("indexed block {} has no data", location.block_hash))
            })?;
        let transaction = block
            .block()
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
            let spent: Vec<Option<TxOut>> = transaction
                .spends()
                .iter()
                .map(|input| block.output(&input.prevout))
                .collect();
            describe_inputs(network, &spent, &mut json)
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

/// Fills in each input's address and amount from the output it spent (`None`: not found)
/// and returns their total, `None` unless every input was found.
fn describe_inputs(
    network: Network,
    spent: &[Option<TxOut>],
    json: &mut TransactionJson,
) -> Option<Amount> {
    let mut total = Some(Amount::ZERO);
    for (output, described) in spent.iter().zip(json.inputs.iter_mut()) {
        match output {
            Some(output) => {
                described.address = Some(output.address.to_bech32(network));
                described.amount = Some(output.value.to_units());
                total = total.and_then(|total| total.checked_add(output.value));
            }
            None => total = None,
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use powchain_consensus::encode::Encode;

    use super::*;
    use crate::testing::{TestServer, fill_pool, get, post, regtest_node};

    /// `POST /txs` with `hexes` as its list.
    async fn post_batch(server: &TestServer, hexes: &[String]) -> crate::testing::Answer {
        let body = serde_json::to_vec(&serde_json::json!({ "hex": hexes })).expect("encodes");
        post(server.address, "/txs", &body, body.len()).await
    }

    /// `GET /tx/{txid}`'s inputs: address and amount of each, and the fee.
    async fn described_inputs(
        server: &TestServer,
        txid: &Txid,
    ) -> (String, Vec<(String, u64)>, u64) {
        let answer = get(server.address, &format!("/tx/{txid}")).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let json = answer.json();
        let inputs = json["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|input| {
                (
                    input["address"].as_str().expect("an address").to_owned(),
                    input["amount"].as_u64().expect("an amount"),
                )
            })
            .collect();
        let status = json["status"].as_str().expect("a status").to_owned();
        (status, inputs, json["fee"].as_u64().expect("a fee"))
    }

    #[tokio::test]
    async fn inputs_are_described_from_the_pool_the_undo_data_and_their_own_block() {
        // The wallet's one mature coin pays `first`; `second` spends `first`'s change while
        // both are pooled; then one block confirms both, so `second`'s parent is in its own
        // block (not in the undo data) and `first`'s is in an earlier block (in it).
        let (_folder, node) = regtest_node(1);
        let coinbase = node
            .reader()
            .snapshot()
            .expect("a snapshot")
            .block(&node.tip().hash)
            .expect("reads")
            .expect("stored")
            .transactions[0]
            .outputs[0];
        let first = node
            .send(node.wallet_address(), Amount::ONE_COIN, None)
            .expect("pays");
        let second = node
            .send(node.wallet_address(), Amount::ONE_COIN, None)
            .expect("pays from the change");
        let parent = second.transaction.spends()[0].prevout;
        assert_eq!(
            parent.txid, first.txid,
            "the second spends the first's change"
        );
        let change = first.transaction.outputs[parent.vout as usize];
        let network = node.params().network;
        let server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;

        let pooled = described_inputs(&server, &second.txid).await;
        let expected_second = vec![(change.address.to_bech32(network), change.value.to_units())];
        assert_eq!(
            pooled,
            (
                "pool".to_owned(),
                expected_second.clone(),
                second.fee.to_units()
            )
        );
        let pooled_first = described_inputs(&server, &first.txid).await;
        let expected_first = vec![(
            coinbase.address.to_bech32(network),
            coinbase.value.to_units(),
        )];
        assert_eq!(pooled_first.1, expected_first, "a confirmed coin, unspent");

        let block = node.mine_one(Vec::new(), true).expect("mines");
        assert_eq!(block.transactions.len(), 3, "both payments in one block");
        let confirmed_first = described_inputs(&server, &first.txid).await;
        assert_eq!(
            confirmed_first,
            ("confirmed".to_owned(), expected_first, first.fee.to_units()),
            "from the undo data"
        );
        let confirmed_second = described_inputs(&server, &second.txid).await;
        assert_eq!(
            confirmed_second,
            (
                "confirmed".to_owned(),
                expected_second,
                second.fee.to_units()
            ),
            "from the transaction before it in its block"
        );
        let mut server = server;
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_submission_past_the_request_timeout_is_answered_with_what_it_did() {
        use powchain_consensus::testkit::{TestChain, test_address, test_key};
        // 1 ms: the body is read in time (it arrives with the head) but admitting and
        // storing 300 payments takes longer. A 503 would tell the client nothing was done.
        const PAYMENTS: u64 = 301;
        let chain = TestChain::regtest_with_mature_coins(PAYMENTS as usize);
        let (_folder, node) = regtest_node(0);
        for block in &chain.blocks[1..] {
            node.submit_block(block.clone()).expect("a valid chain");
        }
        let payments: Vec<Transaction> = (0..PAYMENTS)
            .map(|index| {
                let (outpoint, coin) = chain.mature_coin(index);
                let value = coin
                    .output
                    .value
                    .checked_sub(powchain_consensus::Amount::from_units(10_000).expect("fee"))
                    .expect("a coinbase pays more");
                chain.spend(
                    &[outpoint],
                    vec![powchain_consensus::TxOut {
                        value,
                        address: test_address(2),
                    }],
                    &[test_key(1)],
                    &std::collections::HashMap::new(),
                )
            })
            .collect();
        let options = crate::ApiOptions {
            request_timeout: std::time::Duration::from_millis(1),
            ..crate::ApiOptions::default()
        };
        let server = TestServer::api(Arc::clone(&node), options).await;
        let hexes: Vec<String> = payments
            .iter()
            .map(|payment| hex::encode(&payment.encode_to_vec()))
            .collect();
        let pooled = |transactions: &[Transaction]| {
            let txids: Vec<Txid> = transactions.iter().map(Transaction::compute_txid).collect();
            node.pool_contains(&txids)
                .into_iter()
                .filter(|held| *held)
                .count()
        };
        let (batch, single) = hexes.split_at(hexes.len() - 1);

        let answer = post_batch(&server, batch).await;
        match answer.status {
            200 => assert_eq!(answer.json()["accepted"], batch.len()),
            // Only if the body itself was not read within the millisecond.
            503 => assert_eq!(pooled(&payments[..batch.len()]), 0, "503, yet pooled"),
            other => panic!("{other}: {}", String::from_utf8_lossy(&answer.body)),
        }
        let body = serde_json::to_vec(&serde_json::json!({ "hex": single[0] })).expect("encodes");
        let answer = post(server.address, "/tx", &body, body.len()).await;
        let last = &payments[batch.len()..];
        match answer.status {
            200 => assert_eq!(pooled(last), 1),
            503 => assert_eq!(pooled(last), 0, "503, yet pooled"),
            other => panic!("{other}: {}", String::from_utf8_lossy(&answer.body)),
        }
    }

    #[tokio::test]
    async fn a_batch_admits_parents_before_children_and_answers_each_transaction() {
        // Three payments, each spending the change of the one before; the receiving node
        // has the payer's chain and an empty pool.
        let (_folders, node, payments) = crate::testing::node_and_unseen_payments(3);
        let hexes: Vec<String> = payments
            .iter()
            .map(|payment| hex::encode(&payment.encode_to_vec()))
            .collect();
        let server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;

        let batch = vec![
            hexes[0].clone(),
            hexes[1].clone(),
            "zz".to_owned(),
            hexes[2].clone(),
            hexes[0].clone(),
        ];
        let answer = post_batch(&server, &batch).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let json = answer.json();
        assert_eq!(json["accepted"], 3);
        assert_eq!(json["refused"], 2);
        let results = json["results"].as_array().expect("results");
        assert_eq!(results.len(), 5, "one per transaction, in order");
        for (result, payment) in [(0, 0), (1, 1), (3, 2)] {
            assert_eq!(
                results[result]["txid"],
                payments[payment].compute_txid().to_string()
            );
            assert!(results[result]["fee"].as_u64().expect("a fee") > 0);
        }
        assert_eq!(results[2]["status"], 400);
        assert!(
            results[2]["error"]
                .as_str()
                .expect("an error")
                .starts_with("invalid hex")
        );
        assert_eq!(results[4]["status"], 409, "the same transaction again");
        assert!(
            results[4]["error"]
                .as_str()
                .expect("an error")
                .contains("[already-in-pool]")
        );
        assert_eq!(node.pool_size().0, 3, "the child came after its parents");

        let mut server = server;
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_batch_is_refused_whole_when_empty_too_long_or_too_large() {
        let (_folder, node) = regtest_node(0);
        let server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;

        let empty = post_batch(&server, &[]).await;
        assert_eq!(empty.status, 400);
        assert!(String::from_utf8_lossy(&empty.body).contains("a batch holds 1 to 1000"));

        let too_many = vec!["00".to_owned(); MAX_BATCH_TRANSACTIONS + 1];
        let answer = post_batch(&server, &too_many).await;
        assert_eq!(answer.status, 400);
        assert!(String::from_utf8_lossy(&answer.body).contains("holds 1001 transactions"));

        // Larger than any other endpoint takes, within the batch's own limit: read, and
        // each entry refused on its own.
        let large = vec!["ab".repeat(300); MAX_BATCH_TRANSACTIONS];
        let answer = post_batch(&server, &large).await;
        assert_eq!(answer.status, 200);
        let json = answer.json();
        assert_eq!(json["refused"], MAX_BATCH_TRANSACTIONS);
        assert!(
            json["results"][0]["error"]
                .as_str()
                .expect("an error")
                .starts_with("not a transaction")
        );

        let declared = crate::router::MAX_BATCH_BODY_BYTES + 1;
        let answer = post(server.address, "/txs", &vec![b' '; declared], declared).await;
        assert_eq!(
            answer.status,
            413,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            String::from_utf8_lossy(&answer.body).contains("length limit exceeded"),
            "{}",
            String::from_utf8_lossy(&answer.body)
        );

        let body = br#"{"hex": ["00"], "x": 1}"#;
        let unknown = post(server.address, "/txs", body, body.len()).await;
        assert_eq!(unknown.status, 400);
        assert!(String::from_utf8_lossy(&unknown.body).contains("unknown field `x`"));

        let mut server = server;
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    /// A `POST /txs` request whose body arrives as the returned sender sends it, declaring
    /// no length (chunked): it takes the budget a chunk at a time.
    fn streamed_batch() -> (Request, tokio::sync::mpsc::UnboundedSender<Vec<u8>>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((
                Ok::<_, std::io::Error>(hyper::body::Bytes::from(chunk)),
                receiver,
            ))
        });
        let request = Request::builder()
            .method("POST")
            .uri("/txs")
            .body(axum::body::Body::from_stream(chunks))
            .expect("a request");
        (request, sender)
    }

    #[tokio::test]
    async fn bodies_that_each_hold_part_of_the_budget_do_not_wait_for_each_other() {
        let budget = Arc::new(Semaphore::new(10));
        let (first, to_first) = streamed_batch();
        let (second, to_second) = streamed_batch();
        to_first.send(vec![b' '; 6]).expect("sent");
        to_second.send(vec![b' '; 4]).expect("sent");
        // The operator's own, whose group is not capped: only the budget all share counts.
        let groups = GroupBudgets::new(BATCH_BODY_GROUP_SHARE_BYTES);
        let (first_group, second_group) = (
            groups.enter(AddressGroup::Local),
            groups.enter(AddressGroup::Local),
        );
        let reads = {
            let (first_budget, second_budget) = (Arc::clone(&budget), Arc::clone(&budget));
            (
                tokio::spawn(
                    async move { read_batch_body(first, &first_budget, first_group).await },
                ),
                tokio::spawn(
                    async move { read_batch_body(second, &second_budget, second_group).await },
                ),
            )
        };
        // Both have read their first part: the budget is theirs.
        let deadline = std::time::Instant::now() + crate::testing::DEADLINE;
        while budget.available_permits() > 0 {
            assert!(std::time::Instant::now() < deadline, "both bodies are read");
            tokio::task::yield_now().await;
        }
        // Each wants the rest, which the other holds.
        to_first.send(vec![b' '; 4]).expect("sent");
        to_second.send(vec![b' '; 6]).expect("sent");
        drop((to_first, to_second));
        let outcomes = tokio::time::timeout(crate::testing::DEADLINE, async {
            let (first, second) = reads;
            [first.await.expect("a task"), second.await.expect("a task")]
        })
        .await
        .expect("neither body waits for the other for good");
        let read: Vec<usize> = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok().map(|(body, _)| body.len()))
            .collect();
        assert_eq!(read, vec![10], "one body is read whole");
        let busy = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().err())
            .map(|error| error.message.clone())
            .collect::<Vec<_>>();
        assert!(busy.len() == 1 && busy[0].contains("[busy]"), "{busy:?}");
    }

    #[tokio::test]
    async fn batch_bodies_sent_slowly_hold_no_slot_of_the_others() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (_folder, node) = regtest_node(0);
        let mut server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        // More slow clients than slots, each shown its body is being read (hyper answers
        // `100 Continue` when the handler first reads it), then silent.
        let mut slow = Vec::new();
        for _ in 0..BATCH_SLOTS + 2 {
            let mut stream = tokio::net::TcpStream::connect(server.address)
                .await
                .expect("connects");
            let head = format!(
                "POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\
                 Content-Length: {MAX_BATCH_BODY_BYTES}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.expect("writes");
            let mut continued = Vec::new();
            let mut buffer = [0u8; 256];
            tokio::time::timeout(crate::testing::DEADLINE, async {
                while !String::from_utf8_lossy(&continued).contains("100 Continue") {
                    let read = stream.read(&mut buffer).await.expect("reads");
                    assert!(read > 0, "closed before its body was asked for");
                    continued.extend_from_slice(&buffer[..read]);
                }
            })
            .await
            .expect("each slow body is being read");
            stream.write_all(br#"{"hex": ["#).await.expect("writes");
            slow.push(stream);
        }
        // A batch sent whole meanwhile is answered (within the test's deadline, well
        // inside the 30 s the slow ones may take).
        let answer = post_batch(&server, &["00".to_owned()]).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.json()["refused"], 1);
        drop(slow);
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn one_group_s_stalled_bodies_hold_its_share_and_other_groups_are_answered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (_folder, node) = regtest_node(0);
        let batches = BatchSlots::default();
        let places = crate::large_reads::LargeReads::new(
            crate::options::DEFAULT_MAX_LARGE_READS,
            crate::options::DEFAULT_MAX_UNSENT_ANSWER_BYTES,
        );
        let router = crate::router::router_sharing(
            Arc::clone(&node),
            crate::ApiOptions::default(),
            places,
            batches.clone(),
        );
        let limits = crate::server::ConnectionLimits {
            max_connections: crate::options::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: crate::options::DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_grace: Duration::from_secs(1),
            eviction_grace: crate::server::EVICTION_GRACE,
            write_stall_timeout: crate::options::DEFAULT_WRITE_STALL_TIMEOUT,
        };
        let mut server = TestServer::router(router, limits).await;
        // Eight strangers of one group each send a whole body but its last byte, and then
        // nothing: the whole budget, but for a byte each.
        let stalled = BATCH_BODY_BUDGET_BYTES / MAX_BATCH_BODY_BYTES;
        let strangers: Vec<_> = (2..2 + stalled as u8)
            .map(|host| {
                let address = server.address;
                tokio::spawn(async move {
                    let source = [127, 9, 0, host].into();
                    let mut stream = crate::testing::connect_from(source, address).await;
                    let head = format!(
                        "POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                         Content-Length: {MAX_BATCH_BODY_BYTES}\r\n\r\n"
                    );
                    // The node may answer a body it gave up on ([busy]) and close it
                    // while it is sent.
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream
                        .write_all(&vec![b' '; MAX_BATCH_BODY_BYTES - 1])
                        .await;
                    // Then silent, its connection open, until the node answers it.
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer).await;
                })
            })
            .collect();
        // They hold all they may once their group's share is taken but for a byte a body
        // (were groups not capped, once the whole budget is, but for those bytes).
        let group = AddressGroup::V4([127, 9]);
        crate::testing::wait_until("the strangers' bodies hold all they may", || {
            let left = batches.bytes.available_permits().min(
                batches
                    .by_group
                    .left(group)
                    .unwrap_or(BATCH_BODY_GROUP_SHARE_BYTES),
            );
            std::future::ready(left <= stalled)
        })
        .await;
        // Another group's batch is answered meanwhile, well within the 30 s the strangers'
        // requests may take.
        let body = br#"{"hex": ["00"]}"#;
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            crate::testing::post_from(
                [127, 10, 0, 2].into(),
                server.address,
                "/txs",
                body,
                body.len(),
            ),
        )
        .await
        .expect("another group's batch does not wait for the strangers' bodies");
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.json()["refused"], 1);
        for stranger in strangers {
            stranger.abort();
        }
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

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
