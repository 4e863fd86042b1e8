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
//! A place is held while the handler runs, its answer's serialization included, and by
//! the work it handed to the blocking pool until that work ends: a request the timeout cut
//! is answered 503 at once, but its work runs to its end (`timeout.rs`) and keeps the place
//! until then, so no more than the places' worth of large reads ever run. An answer being
//! written to a slow client holds none (the server's write-stall timeout bounds that,
//! `server.rs`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The places for large reads of one router.
#[derive(Clone, Debug)]
pub(crate) struct LargeReads(Arc<Semaphore>);

impl LargeReads {
    /// `places` answers built at once (at least one).
    pub(crate) fn new(places: usize) -> LargeReads {
        LargeReads(Arc::new(Semaphore::new(places.max(1))))
    }

    /// Takes every place, until the result is dropped.
    #[cfg(test)]
    pub(crate) fn hold_all(&self) -> tokio::sync::OwnedSemaphorePermit {
        let places = u32::try_from(self.0.available_permits()).expect("few places");
        Arc::clone(&self.0)
            .try_acquire_many_owned(places)
            .expect("free places")
    }
}

/// A large read's place, shared by the request and the work it hands to the blocking pool;
/// free when the last of them lets go.
type Place = Arc<OwnedSemaphorePermit>;

tokio::task_local! {
    /// The place of the large read the current task is answering, if any.
    static PLACE: Place;
}

/// Runs the request once a place is free, holding it until the answer is built and the
/// request's blocking work has ended.
pub(crate) async fn in_turn(
    State(places): State<LargeReads>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(place) = Arc::clone(&places.0).acquire_owned().await else {
        // The semaphore is never closed; answered as a busy node would be, not a panic.
        return ApiError::unavailable("the node is not answering large reads [busy]")
            .into_response();
    };
    PLACE.scope(Arc::new(place), next.run(request)).await
}

/// Runs `work` on the blocking pool; inside a large read, `work` holds the read's place
/// until it returns.
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let place = PLACE.try_with(Arc::clone).ok();
    tokio::task::spawn_blocking(move || {
        let answer = work();
        drop(place);
        answer
    })
    .await
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_a_timeout_cut_keeps_its_place_until_it_ends() {
        // `/stuck` hands the blocking pool work that ends when the test says so.
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let finished = Arc::new(std::sync::Mutex::new(finished));
        let large = axum::middleware::from_fn_with_state(LargeReads::new(1), in_turn);
        let router = Router::new()
            .route(
                "/stuck",
                get(move || {
                    let finished = Arc::clone(&finished);
                    async move {
                        on_blocking_pool(move || {
                            let finished = finished.lock().expect("not poisoned");
                            let _ = finished.recv();
                        })
                        .await
                        .expect("the work does not panic");
                        "done"
                    }
                })
                .route_layer(large.clone()),
            )
            .route("/fast", get(|| async { "fast" }).route_layer(large));
        let router = crate::timeout::with_request_timeout(router, Duration::from_millis(500));
        let mut server = TestServer::router(router, limits()).await;
        let address = server.address;

        assert_eq!(
            http_get(address, "/stuck").await.status,
            503,
            "cut by the timeout"
        );
        // Its work still runs and holds the one place.
        let fast = tokio::spawn(async move { http_get(address, "/fast").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !fast.is_finished(),
            "the place was given while the work still ran"
        );
        finish.send(()).expect("the work waits");
        let answer = tokio::time::timeout(DEADLINE, fast)
            .await
            .expect("answered once the work ended")
            .expect("the client task");
        assert_eq!(answer.status, 200);
        server.begin_stop();
        server.join().await.expect("the server stops");
    }
}
