//! powchain's HTTP API: the tutorial's endpoints at their exact paths, REST resources for
//! blocks, transactions, addresses, the wallet, peers and status, Prometheus metrics, and
//! the web dashboard at `/` with its live event stream (`dashboard`).
//!
//! ```text
//!   HTTP request ──▶ router ──▶ handler ──spawn_blocking──▶ Node (powchain-node)
//!                                  │                          └─▶ snapshots of the chain
//!                                  └──▶ DTO (camelCase JSON) | ApiError {"error": "..."}
//! ```
//!
//! Every failure is a 4xx/5xx with `{"error": "<what and why>"}`; no input makes a
//! handler panic. `docs/API.md` lists every endpoint with a curl example.

mod blocks;
mod body;
mod dashboard;
pub mod dto;
pub mod error;
mod router;
mod status;
mod transactions;
mod wallet;

pub use error::ApiError;
pub use router::{MAX_BODY_BYTES, router, serve};
