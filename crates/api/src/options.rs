//! `ApiOptions`: who may use the protected endpoints, and every limit that keeps a stranger
//! from exhausting the node through its HTTP port. Each limit has a `DEFAULT_*` constant;
//! `docs/API.md` ("Limits") lists them for users.
//!
//! ```text
//!   accept ──(max_connections, an eighth per address group)──▶ connection ──(header_read_timeout, also between
//!   requests)──▶ request ──(request_timeout; not GET /events)──▶ handler
//!                                   GET /events ──(max_event_subscribers, an eighth per group)──▶ stream
//!                                   GET /txs/ws ──(4 places, 1 per group, transaction_stream_idle, _write_timeout)──▶ WebSocket
//!                                   GET /blocks, /transactions ──(max_page_bytes)──▶ page
//!                                   large reads (pages, a block, an address …) ──(max_large_reads)──▶ handler
//!   answer ──(write_stall_timeout: the client must keep reading)──▶ client
//! ```

use std::time::Duration;

use crate::auth::RequiredToken;

/// How long a client may take to send a request's line and headers, and how long a
/// keep-alive connection may wait idle for its next request, before it is closed.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request (reading its body included) may take before it is answered 503;
/// `GET /events` and mining are exempt (see `timeout.rs`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most HTTP connections open at once; past it the server stops accepting until one
/// closes (new ones wait in the kernel's listen queue, holding no file of the node's).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The most `GET /events` streams open at once; past it a new one is answered 503.
pub const DEFAULT_MAX_EVENT_SUBSCRIBERS: usize = 64;
/// The most bytes of JSON one page of `GET /blocks` or `GET /transactions` holds (a page
/// always holds at least one item, so a single item may pass it).
pub const DEFAULT_MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a write to an HTTP client may wait for it to read before its connection is
/// closed (a client that asked for a large answer and stopped reading would otherwise hold
/// its connection and the answer for as long as it stays connected).
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most answers of the large-read endpoints (pages of blocks and of the pool, a block,
/// a transaction, an address, the wallet's history and balance, headers, charts) built at
/// once; the others wait their turn within the request timeout (`large_reads.rs`).
pub const DEFAULT_MAX_LARGE_READS: usize = 8;
/// The most bytes of large-read answers (those of [`DEFAULT_MAX_LARGE_READS`]) held in the
/// node's memory, built but not yet written to their clients' sockets: ten pages of
/// 1,000 blocks, or two of the largest pages. A built answer waits for room before it is
/// handed to its connection, and may close the connection of an answer that has held its
/// room a while (`large_reads.rs`). Without it, clients that ask and never read held an
/// answer each until the write-stall timeout: up to 512 pages of 800 KB.
pub const DEFAULT_MAX_UNSENT_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// How long a stopping server waits for the requests in flight before it drops them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a `GET /txs/ws` stream may go without a message that pools a transaction,
/// with no answer pending, before it is closed (so a client that sends nothing, or only
/// what is refused, does not keep one of its few places).
pub const DEFAULT_TRANSACTION_STREAM_IDLE: Duration = Duration::from_secs(60);
/// How long a `GET /txs/ws` client may take to take one answer (or the close frame)
/// before its stream is dropped without one (so a client that sends and never reads does
/// not keep one of its few places).
pub const DEFAULT_TRANSACTION_STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How the API decides who may use the protected endpoints, and its resource limits.
///
/// Every field is plain, so the launcher can derive one from its own budget (for example
/// `max_connections` from the process's file limit).
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// If set, every protected endpoint needs this token; if not (the loopback default),
    /// they are open to clients that are not browsers and to the node's own dashboard.
    pub required_token: Option<RequiredToken>,
    /// True if the listener is bound to a loopback address (the default): then no request a
    /// browser sends for a web page of another site is served, reads included, token or
    /// not (`auth.rs`). Off loopback, reads are open to whoever reaches the port.
    pub loopback: bool,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`]. At least 1.
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_EVENT_SUBSCRIBERS`].
    pub max_event_subscribers: usize,
    /// See [`DEFAULT_MAX_PAGE_BYTES`].
    pub max_page_bytes: usize,
    /// See [`DEFAULT_MAX_LARGE_READS`]. At least 1.
    pub max_large_reads: usize,
    /// See [`DEFAULT_MAX_UNSENT_ANSWER_BYTES`]. An answer larger than this waits for all
    /// of it.
    pub max_unsent_answer_bytes: usize,
    /// See [`DEFAULT_WRITE_STALL_TIMEOUT`].
    pub write_stall_timeout: Duration,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// See [`DEFAULT_TRANSACTION_STREAM_IDLE`].
    pub transaction_stream_idle: Duration,
    /// See [`DEFAULT_TRANSACTION_STREAM_WRITE_TIMEOUT`].
    pub transaction_stream_write_timeout: Duration,
}

impl Default for ApiOptions {
    /// No token required (the loopback default) and the `DEFAULT_*` limits.
    fn default() -> ApiOptions {
        ApiOptions {
            required_token: None,
            loopback: true,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_event_subscribers: DEFAULT_MAX_EVENT_SUBSCRIBERS,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
            max_large_reads: DEFAULT_MAX_LARGE_READS,
            max_unsent_answer_bytes: DEFAULT_MAX_UNSENT_ANSWER_BYTES,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            transaction_stream_idle: DEFAULT_TRANSACTION_STREAM_IDLE,
            transaction_stream_write_timeout: DEFAULT_TRANSACTION_STREAM_WRITE_TIMEOUT,
        }
    }
}
