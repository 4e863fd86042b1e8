//! powchain's HTTP API: the tutorial's endpoints at their exact paths, REST resources for
//! blocks, transactions, addresses, the wallet, peers and status, Prometheus metrics, and
//! the web dashboard at `/` (`assets`) with its live event stream (`events`) and chain
//! views (`charts`).
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
//!
//! Where each route lives (each route file owns the JSON shapes it alone serves; `dto.rs`
//! holds the shapes several routes share: blocks, transactions, inputs and outputs):
//!
//! | routes | file |
//! |---|---|
//! | `GET /blocks`, `GET /blocks/{id}`, `POST /mine`, `GET/POST /mine-transactions` | `blocks.rs` |
//! | `GET /transactions`, `POST /transact`, `POST /tx`, `GET /tx/{txid}` | `transactions.rs` |
//! | `GET /public-key`, `GET /balance`, `POST /wallet/addresses`, `GET /address/{address}` | `wallet.rs` |
//! | `GET /status`, `GET|POST /peers`, `GET /metrics` | `status.rs` |
//! | `GET /`, `GET /assets/{file}` (the dashboard's files) | `assets.rs` |
//! | `GET /events` (server-sent node events) | `events.rs` |
//! | `GET /headers`, `GET /charts` (the dashboard's chain views) | `charts.rs` |
//!
//! `router.rs` wires them with the guard (`auth.rs`), the body limit (`body.rs`) and the
//! JSON 404/405 answers; `error.rs` is `ApiError`.

mod assets;
pub mod auth;
mod blocks;
mod body;
mod charts;
pub mod cookie;
pub mod dto;
pub mod error;
mod events;
mod router;
mod status;
mod transactions;
mod wallet;

pub use auth::{ApiOptions, ApiToken, RequiredToken};
pub use error::ApiError;
pub use router::{MAX_BODY_BYTES, router, router_with, serve, serve_with};
