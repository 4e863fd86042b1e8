//! Peer administration: `DELETE /peers/{url}` (disconnect a peer and stop dialling it) and
//! `DELETE /peers/banned/{peer}` (lift a ban). Both are protected (`auth.rs`); the lists
//! and `POST /peers` are in `status.rs`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use powchain_node::{Node, PeerError, PeerManager};
use serde::Serialize;

use crate::error::ApiError;
use crate::input::NoQuery;

/// `DELETE /peers/{url}` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RemovedPeerJson {
    /// The address removed.
    pub url: String,
    /// Connections to it that were closed.
    pub disconnected: usize,
    /// Always `"removed"`.
    pub status: &'static str,
}

/// `DELETE /peers/banned/{peer}` answer.
#[derive(Serialize, Debug)]
pub struct UnbannedJson {
    /// The peer, as `GET /peers/banned` showed it.
    pub peer: String,
    /// Always `"unbanned"`.
    pub status: &'static str,
}

fn manager(node: &Node) -> Result<&Arc<dyn PeerManager>, ApiError> {
    node.peer_manager()
        .ok_or_else(|| ApiError::unavailable("the peer-to-peer layer is not running"))
}

pub(crate) fn peer_error(error: PeerError) -> ApiError {
    match error {
        PeerError::InvalidAddress(_) => ApiError::bad_request(error.to_string()),
        PeerError::UnknownPeer(_) | PeerError::NotBanned(_) => {
            ApiError::not_found(error.to_string())
        }
        PeerError::Stopped => ApiError::unavailable(error.to_string()),
    }
}

/// `DELETE /peers/{url}`: closes every connection to the peer at `url` (`ws://host:port`,
/// percent-encoded or not) and stops dialling it, until `POST /peers` names it again.
pub async fn remove_peer(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    _query: NoQuery,
) -> Result<Json<RemovedPeerJson>, ApiError> {
    let Path(url) = path?;
    let removal = manager(&node)?
        .remove_peer(url.trim())
        .map_err(peer_error)?;
    Ok(Json(RemovedPeerJson {
        url: removal.url,
        disconnected: removal.disconnected,
        status: "removed",
    }))
}

/// `DELETE /peers/banned/{peer}`: lifts the ban on `peer` (an IP address, or `localhost
/// port N`), as `GET /peers/banned` lists it.
pub async fn unban(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    _query: NoQuery,
) -> Result<Json<UnbannedJson>, ApiError> {
    let Path(peer) = path?;
    manager(&node)?.unban(peer.trim()).map_err(peer_error)?;
    Ok(Json(UnbannedJson {
        peer: peer.trim().to_owned(),
        status: "unbanned",
    }))
}
