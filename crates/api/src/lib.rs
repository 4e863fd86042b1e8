//! powchain's HTTP API: the tutorial's endpoints at their exact paths, REST resources for
//! blocks, transactions, addresses, the wallet, peers and status, Prometheus metrics, and
//! the web dashboard at `/` with its live event stream (`dashboard`).
//!
//! ```text
//!   HTTP request ──▶ router ──▶ auth guard ──▶ handler ──spawn_blocking──▶ Node (powchain-node)
//!                                 │401/403          │                    └─▶ chain snapshots
//!                                 ▼                 └──▶ DTO (camelCase JSON) | ApiError
//!                          {"error": "..."}
//! ```
//!
//! Spending, mining, new wallet addresses and new peers need the API token (`auth`, kept in
//! the data directory's cookie file: `cookie`) when the node is reachable off loopback.
//!
//! Every failure is a 4xx/5xx with `{"error": "<what and why>"}`; no input makes a
//! handler panic. `docs/API.md` lists every endpoint with a curl example.

pub mod auth;
mod blocks;
mod body;
pub mod cookie;
mod dashboard;
pub mod dto;
pub mod error;
mod router;
mod status;
mod transactions;
mod wallet;

pub use auth::{ApiOptions, ApiToken, RequiredToken};
pub use error::ApiError;
pub use router::{MAX_BODY_BYTES, router, router_with, serve, serve_with};
