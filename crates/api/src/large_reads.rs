//! Large reads, a few at a time: the endpoints whose answer may run to megabytes (pages of
//! blocks and of the pool, a block, a transaction, an address, the wallet's history and
//! balance, headers and charts) build at most `ApiOptions::max_large_reads` answers at
//! once; the others wait their turn, within the request timeout.
//!
//! ```text
//!   GET /blocks, /transactions, /address/… ──a place free?──yes──▶ handler: read, build
//!                                                  │no                 the answer, place freed
//!                                                  ▼
//!                             wait (the request timeout answers 503 after 30 s)
//! ```
//!
//! Without it every request built its answer at once on a thread of the blocking pool:
//! 500 clients asking together for a page of 1,000 blocks (800 KB of JSON) grew the node
//! by 120 MB and 130 threads, and pages of 4 MiB would have grown it by gigabytes. Bitcoin
//! Core bounds its RPC the same way (`-rpcworkqueue` 16, `-rpcthreads` 4). `GET /status`,
//! the small endpoints and submissions are not held back.
//!
//! A place is held while the handler runs, its answer's serialization included. An answer
//! being written to a slow client no longer holds one (the server's write-stall timeout
//! bounds that, `server.rs`); nor does the blocking work of a request the timeout cut,
//! which runs to its end (`timeout.rs`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The places for large reads of one router.
#[derive(Clone, Debug)]
pub(crate) struct LargeReads(Arc<Semaphore>);

impl LargeReads {
    /// `places` answers built at once (at least one).
    pub(crate) fn new(places: usize) -> LargeReads {
        LargeReads(Arc::new(Semaphore::new(places.max(1))))
    }
}

/// Runs the request once a place is free, holding it until the answer is built.
pub(crate) async fn in_turn(
    State(places): State<LargeReads>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_place) = places.0.acquire().await else {
        // The semaphore is never closed; answered as a busy node would be, not a panic.
        return ApiError::unavailable("the node is not answering large reads [busy]")
            .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::sync::Notify;

    use super::*;
    use crate::server::{ConnectionLimits, EVICTION_GRACE};
    use crate::testing::{DEADLINE, TestServer, get as http_get};

    /// A router whose `/slow` holds its place until `release` is notified, and whose
    /// `/fast` answers at once; both are large reads sharing `places`.
    fn router(places: usize, release: Arc<Notify>, started: Arc<Notify>) -> Router {
        let large = axum::middleware::from_fn_with_state(LargeReads::new(places), in_turn);
        Router::new()
            .route(
                "/slow",
                get(move || async move {
                    started.notify_one();
                    release.notified().await;
                    "slow"
                })
                .route_layer(large.clone()),
            )
            .route("/fast", get(|| async { "fast" }).route_layer(large))
            .route("/status", get(|| async { "status" }))
    }

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 16,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_read_waits_for_a_place_and_other_endpoints_do_not() {
        let (release, started) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let mut server = TestServer::router(
            router(1, Arc::clone(&release), Arc::clone(&started)),
            limits(),
        )
        .await;
        let address = server.address;
        let slow = tokio::spawn(async move { http_get(address, "/slow").await });
        tokio::time::timeout(DEADLINE, started.notified())
            .await
            .expect("the slow read starts");

        // Its one place is taken: another large read waits, a small endpoint does not.
        let fast = tokio::spawn(async move { http_get(address, "/fast").await });
        assert_eq!(http_get(address, "/status").await.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !fast.is_finished(),
            "a large read took a place that was not free"
        );

        release.notify_one();
        for task in [slow, fast] {
            let answer = tokio::time::timeout(DEADLINE, task)
                .await
                .expect("answered once the place is free")
                .expect("the client task");
            assert_eq!(answer.status, 200);
        }
        server.begin_stop();
        server.join().await.expect("the server stops");
    }
}
