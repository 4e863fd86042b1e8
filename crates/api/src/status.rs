//! `GET /status`, `GET /peers` (and `/peers/banned`, `/peers/disconnected`), `POST /peers`
//! and `GET /metrics`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use powchain_node::Node;
use serde::{Deserialize, Serialize};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::input::NoQuery;
use crate::router::blocking;

/// The pool part of the status.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pooled transactions.
    pub transactions: usize,
    /// Their total size.
    pub bytes: usize,
}

/// Sync progress.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Height of the best valid header known.
    pub best_header_height: u64,
    /// True while blocks are missing up to it.
    pub syncing: bool,
    /// Tip height / best header height, 0..1.
    pub progress: f64,
}

/// `GET /status` answer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StatusJson {
    /// `devnet` or `regtest`.
    pub network: String,
    /// The tip's height.
    pub height: u64,
    /// The tip's hash.
    pub tip: String,
    /// The tip's time, ms.
    pub tip_time: u64,
    /// Total chain work, hex.
    pub work: String,
    /// The tip's compact target.
    pub bits: String,
    /// The tip's difficulty relative to the easiest target.
    pub difficulty: f64,
    /// Connected peers.
    pub peers: usize,
    /// The pool.
    pub mempool: PoolStatus,
    /// True while mining continuously.
    pub mining: bool,
    /// Threads the miner uses.
    pub miner_threads: usize,
    /// Hashes per second, smoothed.
    pub hashrate: f64,
    /// Sync progress.
    pub sync: SyncStatus,
    /// Orphan blocks held.
    pub orphans: usize,
    /// The node's clock, ms.
    pub time: u64,
    /// The upload target, if one is set (`--max-upload-mib`).
    pub upload: Option<UploadJson>,
}

/// The upload target's state in `GET /status`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct UploadJson {
    /// Bytes a 24-hour cycle.
    pub target_bytes: u64,
    /// Bytes sent to peers in this cycle.
    pub sent_bytes: u64,
    /// Milliseconds until the cycle ends.
    pub cycle_left_ms: u64,
    /// True once the target is reached: blocks more than a week older than the tip are
    /// not served.
    pub reached: bool,
}

/// `GET /status`.
pub async fn status(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
) -> Result<Json<StatusJson>, ApiError> {
    let json = blocking(&node, |node| Ok(build_status(node))).await?;
    Ok(Json(json))
}

/// The status, read from the node.
pub fn build_status(node: &Node) -> StatusJson {
    let summary = node.chain_summary();
    let (tip, best_header_height, orphans) =
        (summary.tip, summary.best_header_height.0, summary.orphans);
    let (transactions, bytes) = node.pool_size();
    let peers = node.peer_manager().map_or(0, |peers| peers.peers().len());
    let best = best_header_height.max(tip.height.0);
    StatusJson {
        network: node.params().network.to_string(),
        height: tip.height.0,
        tip: tip.hash.to_string(),
        tip_time: tip.header.time_ms,
        work: tip.work.to_string(),
        bits: tip.header.bits.to_string(),
        difficulty: node.params().difficulty(tip.header.bits),
        peers,
        mempool: PoolStatus {
            transactions,
            bytes,
        },
        mining: node.is_mining(),
        miner_threads: node.miner_threads(),
        hashrate: node.hashrate(),
        sync: SyncStatus {
            best_header_height: best,
            syncing: best > tip.height.0,
            progress: if best == 0 {
                1.0
            } else {
                tip.height.0 as f64 / best as f64
            },
        },
        orphans,
        time: node.now_ms(),
        upload: node
            .peer_manager()
            .and_then(|peers| peers.upload())
            .map(|upload| UploadJson {
                target_bytes: upload.target_bytes,
                sent_bytes: upload.sent_bytes,
                cycle_left_ms: upload.cycle_left_ms,
                reached: upload.reached,
            }),
    }
}

/// A peer.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PeerJson {
    /// Its address.
    pub url: String,
    /// `"outbound"` or `"inbound"`.
    pub direction: &'static str,
    /// Its best height.
    pub best_height: u64,
    /// Connected since, ms.
    pub connected_since: u64,
    /// Its lowest ping round trip, ms (`null` until it answered a ping).
    pub ping_ms: Option<u64>,
}

/// `GET /peers`.
pub async fn peers(State(node): State<Arc<Node>>, _query: NoQuery) -> Json<Vec<PeerJson>> {
    let peers = node
        .peer_manager()
        .map(|manager| manager.peers())
        .unwrap_or_default();
    Json(
        peers
            .into_iter()
            .map(|peer| PeerJson {
                url: peer.url,
                direction: if peer.outbound { "outbound" } else { "inbound" },
                best_height: peer.best_height,
                connected_since: peer.connected_since_ms,
                ping_ms: peer.ping_ms,
            })
            .collect(),
    )
}

/// A ban in force.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct BanJson {
    /// Who: an address, or `localhost port N` for a local peer.
    pub peer: String,
    /// The rule it broke.
    pub rule: String,
    /// When the ban ends, ms.
    pub until: u64,
}

/// `GET /peers/banned`: bans in force, with the rule broken.
pub async fn banned(State(node): State<Arc<Node>>, _query: NoQuery) -> Json<Vec<BanJson>> {
    let bans = node
        .peer_manager()
        .map(|manager| manager.banned())
        .unwrap_or_default();
    Json(
        bans.into_iter()
            .map(|ban| BanJson {
                peer: ban.peer,
                rule: ban.rule,
                until: ban.until_ms,
            })
            .collect(),
    )
}

/// A session that ended.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectJson {
    /// Its address.
    pub url: String,
    /// `"outbound"` or `"inbound"`.
    pub direction: &'static str,
    /// Why it ended.
    pub reason: String,
    /// When, ms.
    pub at: u64,
}

/// `GET /peers/disconnected`: the last sessions that ended (and inbound peers refused a
/// slot), newest first, with why.
pub async fn disconnected(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
) -> Json<Vec<DisconnectJson>> {
    let ends = node
        .peer_manager()
        .map(|manager| manager.disconnected())
        .unwrap_or_default();
    Json(
        ends.into_iter()
            .map(|end| DisconnectJson {
                url: end.url,
                direction: if end.outbound { "outbound" } else { "inbound" },
                reason: end.reason,
                at: end.at_ms,
            })
            .collect(),
    )
}

/// `POST /peers` body.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct AddPeerRequest {
    /// `ws://host:port`.
    pub url: String,
}

/// `POST /peers`: connect to another node (and keep reconnecting).
pub async fn add_peer(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
    JsonBody(request): JsonBody<AddPeerRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let manager = node
        .peer_manager()
        .ok_or_else(|| ApiError::unavailable("the peer-to-peer layer is not running"))?;
    manager
        .add_peer(request.url.trim())
        .map_err(crate::peers::peer_error)?;
    Ok(Json(
        serde_json::json!({ "url": request.url.trim(), "status": "connecting" }),
    ))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    State(node): State<Arc<Node>>,
    _query: NoQuery,
) -> Result<impl IntoResponse, ApiError> {
    let text = blocking(&node, |node| {
        let status = build_status(node);
        let mut text = String::new();
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(text, "# HELP powchain_{name} {help}\n# TYPE powchain_{name} gauge\npowchain_{name} {value}");
        };
        gauge("chain_height", "Height of the main chain's tip.", status.height as f64);
        gauge("difficulty", "Difficulty of the tip relative to the easiest target.", status.difficulty);
        gauge("peers", "Connected peers.", status.peers as f64);
        gauge("mempool_transactions", "Transactions in the pool.", status.mempool.transactions as f64);
        gauge("mempool_bytes", "Total size of the pool's transactions.", status.mempool.bytes as f64);
        gauge("mining", "1 while mining continuously.", f64::from(u8::from(status.mining)));
        gauge("hashrate", "Hashes per second, smoothed.", status.hashrate);
        gauge("orphan_blocks", "Blocks waiting for their parent.", status.orphans as f64);
        gauge("best_header_height", "Height of the best valid header.", status.sync.best_header_height as f64);
        let _ = writeln!(
            text,
            "# HELP powchain_hashes_total Hashes tried since start.\n# TYPE powchain_hashes_total counter\npowchain_hashes_total {}",
            node.hashes_tried()
        );
        Ok(text)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
