//! The composition root of a powchain node: [`Settings`] (validated once, from flags and
//! the environment, by the binary) go in, a [`RunningNode`] comes out, and cancelling the
//! token given to [`launch`] stops everything it started.
//!
//! ```text
//!   Settings ──launch(settings, shutdown)──▶ Node::open (chain, pool, wallet)
//!                                          ├─▶ cookie file (API token)
//!                                          ├─▶ HTTP API (powchain-api)       ┐ one token,
//!                                          ├─▶ peers (powchain-p2p), their    │ one task
//!                                          │   address book from peers.json   │ tracker
//!                                          └─▶ chores: hashrate, pool expiry, │
//!                                              chain sync, continuous mining, │
//!                                              peers.json every 15 minutes    ┘
//!   RunningNode::shutdown: stop mining ─▶ note the peer addresses ─▶ cancel ─▶ wait for
//!                          every task ─▶ sync ─▶ save peers.json ─▶ remove cookie
//! ```
//!
//! Tests, the benchmark and the fuzz harness call [`launch`] as the binary does. This crate
//! prints nothing: the binary prints the listening lines from [`RunningNode`]'s addresses.

pub mod files;
pub mod peers_file;
mod running;
mod schedule;
mod settings;
mod signal;

pub use running::{LaunchError, RunningNode, launch};
pub use settings::Settings;
pub use signal::shutdown_signal;
