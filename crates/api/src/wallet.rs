//! The node wallet (`GET /public-key`, `GET /balance`, `POST /wallet/addresses`,
//! `GET /wallet/history`) and any address (`GET /address/{address}`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use powchain_consensus::{Amount, OutPoint, Txid};
use powchain_node::{Node, WalletHistoryError, WalletTxPlace};
use serde::{Deserialize, Serialize};

use crate::body::{JsonBody, NoFields};
use crate::error::ApiError;
use crate::input::{CheckedQuery, NoQuery, QueryParameters, page_size, parse_address};
use crate::main_chain::{confirmations, tip_height};
use crate::router::blocking;

/// History entries and unspent outputs `GET /address/{address}` returns unless `limit`
/// says otherwise.
pub const DEFAULT_ADDRESS_PAGE: u64 = 50;
/// The most history entries and unspent outputs one `GET /address/{address}` returns.
pub const MAX_ADDRESS_PAGE: u64 = 1000;
/// Most unspent outputs `GET /address/{address}` reads for its balance (the node's wallet
/// reads as many an address).
pub const MAX_ADDRESS_COINS: usize = 100_000;
/// How deep `offset` plus `limit` may reach into an address's history.
pub const MAX_ADDRESS_HISTORY_DEPTH: usize = 100_000;

/// `GET /public-key` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyJson {
    /// The default key, x-only, hex (the tutorial's public key).
    pub public_key: String,
    /// The same key as an address.
    pub address: String,
}

/// `GET /public-key`: the node wallet's default key and address.
pub async fn public_key(State(node): State<Arc<Node>>, _query: NoQuery) -> Json<PublicKeyJson> {
    Json(PublicKeyJson {
        public_key: node.wallet_public_key_hex(),
        address: node.wallet_address().to_bech32(node.params().network),
    })
}

/// `GET /balance` answer (units).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct BalanceJson {
    /// The default address.
    pub address: String,
    /// Every address of the wallet.
    pub addresses: Vec<String>,
    /// Confirmed coins, mature or not.
    pub confirmed: u64,
    /// Confirmed coinbase outputs not yet mature.
    pub immature: u64,
    /// Pool outputs paying the wallet.
    pub unconfirmed_incoming: u64,
    /// The part of `unconfirmed_incoming` others' payments pay (spendable once confirmed).
    pub unconfirmed_from_others: u64,
    /// Confirmed coins spent by pooled transactions.
    pub unconfirmed_outgoing: u64,
    /// What a payment can use now.
    pub spendable: u64,
    /// Confirmed + incoming - outgoing.
    pub total: u64,
}

/// `GET /balance`: the node wallet's balance.
pub async fn balance(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
) -> Result<Json<BalanceJson>, ApiError> {
    let json = blocking(&node, |node| {
        let network = node.params().network;
        let balance = node.wallet_balance()?;
        Ok(BalanceJson {
            address: node.wallet_address().to_bech32(network),
            addresses: node
                .wallet_addresses()
                .iter()
                .map(|address| address.to_bech32(network))
                .collect(),
            confirmed: balance.confirmed.to_units(),
            immature: balance.immature.to_units(),
            unconfirmed_incoming: balance.unconfirmed_incoming.to_units(),
            unconfirmed_from_others: balance.unconfirmed_from_others.to_units(),
            unconfirmed_outgoing: balance.unconfirmed_outgoing.to_units(),
            spendable: balance.spendable.to_units(),
            total: balance.total().to_units(),
        })
    })
    .await?;
    Ok(Json(json))
}

/// `POST /wallet/addresses` answer.
#[derive(Serialize, Debug)]
pub struct NewAddressJson {
    /// The fresh address.
    pub address: String,
}

/// `POST /wallet/addresses`: a fresh receive address (its key is stored first). It takes no
/// body fields.
pub async fn new_address(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(_): JsonBody<Option<NoFields>>,
) -> Result<Json<NewAddressJson>, ApiError> {
    let address = blocking(&node, |node| Ok(node.new_wallet_address()?)).await?;
    Ok(Json(NewAddressJson {
        address: address.to_bech32(node.params().network),
    }))
}

/// `GET /address/{address}` query.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct AddressQuery {
    /// History entries to skip (newest first).
    pub offset: Option<usize>,
    /// History entries and unspent outputs to return (default 50, at most 1000).
    pub limit: Option<u64>,
}

impl QueryParameters for AddressQuery {
    const NAMES: &'static [&'static str] = &["offset", "limit"];
}

/// An unspent output of an address.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct UtxoJson {
    /// Its transaction.
    pub txid: String,
    /// Its index.
    pub vout: u32,
    /// Units.
    pub amount: u64,
    /// Height of its block.
    pub height: u64,
    /// True for a coinbase output.
    pub coinbase: bool,
    /// False for a coinbase output that cannot be spent yet.
    pub mature: bool,
}

/// A transaction in an address's history.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct HistoryJson {
    /// The transaction.
    pub txid: String,
    /// Its block's height.
    pub height: u64,
}

/// `GET /address/{address}` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AddressJson {
    /// The address.
    pub address: String,
    /// Sum of its confirmed unspent outputs, units.
    pub balance: u64,
    /// False if it holds more than [`MAX_ADDRESS_COINS`] unspent outputs: `balance` and
    /// `utxoCount` then count the first of them by outpoint.
    pub complete: bool,
    /// Number of all its unspent outputs (`utxos` lists at most `limit`).
    pub utxo_count: usize,
    /// Its unspent outputs (at most `limit`).
    pub utxos: Vec<UtxoJson>,
    /// Main-chain transactions paying or spending it, newest first.
    pub history: Vec<HistoryJson>,
    /// Pooled transactions paying or spending it, the oldest `limit` of them.
    pub pending: Vec<String>,
}

/// `GET /address/{address}`: balance, unspent outputs and history of any address.
pub async fn address(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    CheckedQuery(query): CheckedQuery<AddressQuery>,
) -> Result<Json<AddressJson>, ApiError> {
    let Path(text) = path?;
    let network = node.params().network;
    let address = parse_address("address", &text, network)?;
    // At most MAX_ADDRESS_PAGE, so it fits a usize.
    let limit = page_size("limit", query.limit, DEFAULT_ADDRESS_PAGE, MAX_ADDRESS_PAGE)? as usize;
    let offset = query.offset.unwrap_or(0);
    // Skipping history rows reads them: a stranger's offset may not make one request
    // read a long history whole.
    let depth = offset.saturating_add(limit);
    if depth > MAX_ADDRESS_HISTORY_DEPTH {
        return Err(ApiError::bad_request(format!(
            "offset plus limit may reach at most {MAX_ADDRESS_HISTORY_DEPTH} history entries deep, got {depth}"
        )));
    }
    let json = blocking(&node, move |node| {
        let snapshot = node.reader().snapshot()?;
        let next_height = tip_height(&snapshot)?.next();
        let params = node.params();
        // The balance counts every unspent output, not just the page shown, up to
        // MAX_ADDRESS_COINS (as the node's wallet reads at most as many an address).
        let mut all_coins = snapshot.address_coins(&address, MAX_ADDRESS_COINS + 1)?;
        let complete = all_coins.len() <= MAX_ADDRESS_COINS;
        all_coins.truncate(MAX_ADDRESS_COINS);
        let balance = Amount::checked_sum(all_coins.iter().map(|entry| entry.coin.output.value))
            .unwrap_or(Amount::MAX_MONEY);
        let utxos: Vec<UtxoJson> = all_coins
            .iter()
            .take(limit)
            .map(|entry| UtxoJson {
                txid: entry.outpoint.txid.to_string(),
                vout: entry.outpoint.vout,
                amount: entry.coin.output.value.to_units(),
                height: entry.coin.height.0,
                coinbase: entry.coin.is_coinbase,
                mature: entry.coin.is_mature_at(next_height, params),
            })
            .collect();
        let history = snapshot
            .address_history(&address, offset, limit)?
            .into_iter()
            .map(|entry| HistoryJson {
                txid: entry.txid.to_string(),
                height: entry.height.0,
            })
            .collect();
        let coins: HashSet<OutPoint> = all_coins.iter().map(|entry| entry.outpoint).collect();
        let pending = node
            .pool_txids_touching(&address, &coins, limit)
            .iter()
            .map(Txid::to_string)
            .collect();
        Ok(AddressJson {
            address: address.to_bech32(network),
            balance: balance.to_units(),
            complete,
            utxo_count: all_coins.len(),
            utxos,
            history,
            pending,
        })
    })
    .await?;
    Ok(Json(json))
}

/// `GET /wallet/history` query.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct WalletHistoryQuery {
    /// Entries to skip, newest first (default 0).
    pub offset: Option<usize>,
    /// Entries to return (default 50, at most 1000).
    pub limit: Option<u64>,
}

impl QueryParameters for WalletHistoryQuery {
    const NAMES: &'static [&'static str] = &["offset", "limit"];
}

/// A transaction of the node's wallet.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WalletTransactionJson {
    /// The transaction.
    pub txid: String,
    /// `"pool"` or `"confirmed"`.
    pub status: &'static str,
    /// Its block's height (`null` in the pool).
    pub height: Option<u64>,
    /// Blocks on top of its block, plus one (0 in the pool).
    pub confirmations: u64,
    /// Its block's time, or when the pool took it, ms.
    pub time: u64,
    /// What it paid the wallet minus what it spent of the wallet's coins, units: negative for
    /// a payment (its fee included).
    pub amount: i64,
    /// What its outputs pay the wallet, units.
    pub received: u64,
    /// What the wallet's coins it spends held, units.
    pub sent: u64,
    /// True for a mining reward.
    pub coinbase: bool,
}

/// `GET /wallet/history`: the wallet's transactions, newest first (pooled ones, then
/// confirmed ones by height), `limit` of them after `offset`. When older ones follow, the
/// answer carries `x-next-offset`.
pub async fn history(
    State(node): State<Arc<Node>>,
    CheckedQuery(query): CheckedQuery<WalletHistoryQuery>,
) -> Result<Response, ApiError> {
    // At most MAX_ADDRESS_PAGE, so it fits a usize.
    let limit = page_size("limit", query.limit, DEFAULT_ADDRESS_PAGE, MAX_ADDRESS_PAGE)? as usize;
    let offset = query.offset.unwrap_or(0);
    let (entries, next_offset) = blocking(&node, move |node| {
        let page = node
            .wallet_history(offset, limit)
            .map_err(|error| match error {
                WalletHistoryError::TooDeep { .. } => ApiError::bad_request(error.to_string()),
                WalletHistoryError::Node(error) => ApiError::from(error),
            })?;
        let shown = page.transactions.len();
        let entries: Vec<WalletTransactionJson> = page
            .transactions
            .into_iter()
            .map(|transaction| {
                let (status, height, confirmed, time) = match transaction.place {
                    WalletTxPlace::Pool { received_ms } => ("pool", None, 0, received_ms),
                    WalletTxPlace::Confirmed {
                        height,
                        block_time_ms,
                    } => (
                        "confirmed",
                        Some(height.0),
                        confirmations(page.tip_height, height),
                        block_time_ms,
                    ),
                };
                WalletTransactionJson {
                    txid: transaction.txid.to_string(),
                    status,
                    height,
                    confirmations: confirmed,
                    time,
                    amount: transaction.net_units(),
                    received: transaction.received.to_units(),
                    sent: transaction.sent.to_units(),
                    coinbase: transaction.coinbase,
                }
            })
            .collect();
        let next_offset = page.more.then(|| offset.saturating_add(shown));
        Ok((entries, next_offset))
    })
    .await?;
    let mut headers = HeaderMap::new();
    if let Some(next_offset) = next_offset {
        headers.insert(
            crate::transactions::NEXT_OFFSET_HEADER,
            HeaderValue::from(next_offset),
        );
    }
    Ok((headers, Json(entries)).into_response())
}

#[cfg(test)]
mod tests {
    use powchain_consensus::testkit::test_address;

    use super::*;
    use crate::testing::{TestServer, get, regtest_node};

    #[tokio::test]
    async fn an_address_lists_the_pooled_payments_that_pay_it_or_spend_its_coins() {
        let (_folder, node) = regtest_node(2);
        let payer = node.wallet_address();
        let network = node.params().network;
        let recipient = test_address(7);
        let first = node.send(recipient, Amount::ONE_COIN, None).expect("pays");
        let second = node.send(recipient, Amount::ONE_COIN, None).expect("pays");
        let server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;

        let path = |address: &powchain_consensus::Address, query: &str| {
            format!("/address/{}{query}", address.to_bech32(network))
        };
        let answer = get(server.address, &path(&recipient, "")).await;
        assert_eq!(answer.status, 200);
        let json = answer.json();
        let paid = vec![first.txid.to_string(), second.txid.to_string()];
        assert_eq!(
            json["pending"],
            serde_json::json!(paid),
            "both pay it, oldest first"
        );
        assert_eq!(json["complete"], true);
        assert_eq!(json["utxoCount"], 0, "nothing confirmed yet");
        // The payer's confirmed coin is spent by the first payment.
        let answer = get(server.address, &path(&payer, "")).await;
        let pending = answer.json()["pending"].clone();
        assert!(
            pending
                .as_array()
                .expect("a list")
                .contains(&serde_json::json!(first.txid.to_string())),
            "{pending}"
        );
        // `limit` bounds the list.
        let answer = get(server.address, &path(&recipient, "?limit=1")).await;
        assert_eq!(answer.json()["pending"].as_array().map(Vec::len), Some(1));

        let mut server = server;
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }
}
