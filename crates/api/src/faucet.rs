//! `POST /faucet`: test coins from the node's wallet, on networks with a faucet (devnet and
//! regtest, at most `MAX_FAUCET_COINS` per request). It spends the node's wallet, so it is
//! protected like `POST /transact` (`auth.rs`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use powchain_consensus::Amount;
use powchain_node::Node;
use powchain_node::faucet::FaucetError;
use serde::{Deserialize, Serialize};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::input::{NoQuery, parse_address};
use crate::router::blocking;

/// `POST /faucet` body.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FaucetRequest {
    /// Who to pay: an address of this network.
    pub address: String,
    /// How many coins, as a decimal string (`"1.5"`): no float rounding.
    pub coins: String,
}

/// `POST /faucet` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FaucetResponse {
    /// The payment, now in the pool.
    pub txid: String,
    /// The address paid.
    pub address: String,
    /// The coins sent, as a decimal string.
    pub coins: String,
    /// The same in units.
    pub amount: u64,
    /// The fee the node's wallet paid, units.
    pub fee: u64,
}

fn faucet_error(error: FaucetError) -> ApiError {
    match error {
        FaucetError::NoFaucet(_) | FaucetError::OutOfRange { .. } => {
            ApiError::bad_request(error.to_string())
        }
        FaucetError::Empty { .. } => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: error.to_string(),
        },
        FaucetError::Node(error) => ApiError::from(error),
    }
}

/// `POST /faucet`: pays `coins` to `address` from the node's wallet.
pub async fn faucet(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(request): JsonBody<FaucetRequest>,
) -> Result<Json<FaucetResponse>, ApiError> {
    let network = node.params().network;
    let recipient = parse_address("address", &request.address, network)?;
    let amount: Amount = request.coins.trim().parse().map_err(|error| {
        ApiError::bad_request(format!(
            "invalid coins {:?}: {error} (a decimal string, like \"1.5\")",
            request.coins
        ))
    })?;
    // The payment cannot be called off: a 503 now would invite a second one.
    crate::timeout::commit();
    let payment = blocking(&node, move |node| {
        node.faucet_pay(recipient, amount).map_err(faucet_error)
    })
    .await?;
    Ok(Json(FaucetResponse {
        txid: payment.txid.to_string(),
        address: recipient.to_bech32(network),
        coins: amount.to_string(),
        amount: amount.to_units(),
        fee: payment.fee.to_units(),
    }))
}
