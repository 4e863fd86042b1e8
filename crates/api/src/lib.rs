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
//! Spending, mining, new wallet addresses and peer changes need the API token (`auth`, kept in
//! the data directory's cookie file: `cookie`) when the node is reachable off loopback.
//!
//! Every failure is a 4xx/5xx with `{"error": "<what and why>"}`; no input makes a
//! handler panic. `docs/API.md` lists every endpoint with a curl example.
//!
//! **Where JSON shapes live:** each route file owns the JSON shapes (answers, queries and
//! bodies) that only it serves; `dto.rs` holds only the shapes that more than one route
//! file serves (a block's header fields, transactions with their inputs and outputs).
//!
//! Which file serves which route, and the type of its answer:
//!
//! | route | file | answer |
//! |---|---|---|
//! | `GET /blocks` | `blocks.rs` | `Vec<BlockJson>` |
//! | `GET /blocks/{id}` | `blocks.rs` | `BlockJson` |
//! | `POST /mine` | `blocks.rs` | `BlockJson` |
//! | `GET`, `POST /mine-transactions` | `blocks.rs` | `BlockJson` |
//! | `GET /transactions` | `transactions.rs` | `Vec<PoolTransactionJson>` |
//! | `POST /transact` | `transactions.rs` | `TransactResponse` |
//! | `POST /tx` | `transactions.rs` | `SubmitResponse` |
//! | `POST /txs` | `transactions.rs` | `SubmitBatchResponse` |
//! | `GET /txs/ws` | `tx_stream.rs` | a WebSocket: `SubmitBatchResponse` a message |
//! | `GET /tx/{txid}` | `transactions.rs` | `TransactionLookup` |
//! | `GET /public-key` | `wallet.rs` | `PublicKeyJson` |
//! | `GET /balance` | `wallet.rs` | `BalanceJson` |
//! | `POST /wallet/addresses` | `wallet.rs` | `NewAddressJson` |
//! | `GET /wallet/history` | `wallet.rs` | `Vec<WalletTransactionJson>` |
//! | `GET /address/{address}` | `wallet.rs` | `AddressJson` |
//! | `POST /faucet` | `faucet.rs` | `FaucetResponse` |
//! | `GET /status` | `status.rs` | `StatusJson` |
//! | `GET /peers` | `status.rs` | `Vec<PeerJson>` |
//! | `POST /peers` | `status.rs` | `{"url", "status"}` |
//! | `GET /peers/banned` | `status.rs` | `Vec<BanJson>` |
//! | `GET /peers/disconnected` | `status.rs` | `Vec<DisconnectJson>` |
//! | `DELETE /peers/{url}` | `peers.rs` | `RemovedPeerJson` |
//! | `DELETE /peers/banned/{peer}` | `peers.rs` | `UnbannedJson` |
//! | `GET /metrics` | `status.rs` | Prometheus text |
//! | `GET /` | `assets.rs` | the dashboard's page |
//! | `GET /assets/{file}` | `assets.rs` | its script, style sheet and icon |
//! | `GET /events` | `events.rs` | server-sent `EventJson` |
//! | `GET /headers` | `charts.rs` | `HeadersPage` |
//! | `GET /charts` | `charts.rs` | `ChartsJson` |
//!
//! `router.rs` wires them with the guard (`auth.rs`), the body limit, the request timeout
//! (`timeout.rs`) and the JSON 404/405 answers, and holds `blocking`, the one way handlers
//! reach the node. `server.rs` is the accept loop (connection cap, header-read timeout,
//! write-stall timeout, graceful shutdown); `large_reads.rs` lets the endpoints whose
//! answers may run to megabytes build only a few at once; `options.rs` holds every limit with its default; `page.rs` writes
//! list answers that stop at a byte budget. Handlers share
//! `body.rs` (JSON request bodies), `input.rs` (the query string, checked against what the
//! route takes, and page sizes, hashes, addresses and recipients), `main_chain.rs` (the tip, blocks by height, confirmations, from one
//! snapshot) and `dto.rs`; `error.rs` is `ApiError`.

mod assets;
pub mod auth;
mod blocks;
mod body;
mod charts;
pub mod cookie;
pub mod dto;
pub mod error;
mod events;
mod faucet;
mod group_shares;
mod input;
mod large_reads;
mod main_chain;
pub mod options;
mod page;
mod peers;
mod router;
mod server;
mod status;
#[cfg(test)]
mod testing;
mod timeout;
mod transactions;
mod tx_stream;
mod wallet;

pub use auth::{ApiToken, RequiredToken};
pub use error::ApiError;
pub use options::ApiOptions;
pub use page::PAGE_TRUNCATED_HEADER;
pub use router::{MAX_BODY_BYTES, router, router_with, serve, serve_with};
pub use server::HTTP_ACCEPT_FILES;
