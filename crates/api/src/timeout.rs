//! The request timeout: a request that is not answered within
//! `ApiOptions::request_timeout` (its body read included, so a body dribbled a byte at a
//! time is cut too) is answered 503 `[request-timeout]`, and its handler is dropped,
//! unless the handler has begun what cannot be called off ([`commit`]).
//!
//! ```text
//!   request ──exempt (GET /events)?──yes──▶ handler, however long
//!                  │no
//!                  ▼
//!   handler ──answered in time?──yes──▶ its answer
//!                  │no
//!                  ▼
//!   committed? ──yes──▶ its answer, when the work ends
//!                  │no
//!                  ▼
//!   503 {"error": "... [request-timeout]"}
//! ```
//!
//! Exempt: the event stream, which lasts as long as its client listens (the subscriber cap
//! bounds it instead).
//!
//! Committed: a payment (`POST /transact`, `/faucet`), a submission (`POST /tx`, `/txs`)
//! or a block's proof of work (`POST /mine`, `/mine-transactions`) once its body was read
//! and checked and its work handed to the node. That work runs to its end whatever the
//! client's connection does, so a 503 "try again later" would be false: a retry would pay
//! again, mine another block, or meet its own transactions already pooled. So their wait
//! for a body, like every request's, is cut at the timeout, and their work is waited for
//! however long it takes (mining: the proof of work; a payment or a submission: the node's
//! lock and one sync of the pool store). Payments and mining are protected (`auth.rs`);
//! submissions are open, as a peer's relay is, and hold their connection no longer than
//! the node takes to admit them.
//!
//! Other work a handler handed to the blocking pool runs to its end after a timeout (a
//! large read's keeps its place meanwhile, `large_reads.rs`); what the timeout frees at
//! once is the connection's wait and the answer's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// True if requests to `path` may take as long as they need (see the module).
pub(crate) fn is_exempt(path: &str) -> bool {
    path == "/events"
}

tokio::task_local! {
    /// Set once the request being answered has begun work that cannot be called off.
    static COMMITTED: Arc<AtomicBool>;
}

/// Marks the request being answered as committed (see the module): past the timeout, its
/// answer is waited for instead of a 503. Call it just before handing the node work that
/// runs to its end whether or not anyone waits for it. Outside a bounded request (a router
/// without the timeout) it does nothing.
pub(crate) fn commit() {
    let _ = COMMITTED.try_with(|committed| committed.store(true, Ordering::Release));
}

/// `router` with every request but the exempt ones bounded by `timeout`.
pub(crate) fn with_request_timeout<S>(router: Router<S>, timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(axum::middleware::from_fn_with_state(timeout, bound_request))
}

async fn bound_request(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    if is_exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let committed = Arc::new(AtomicBool::new(false));
    let response = COMMITTED.scope(Arc::clone(&committed), next.run(request));
    tokio::pin!(response);
    match tokio::time::timeout(timeout, response.as_mut()).await {
        Ok(response) => response,
        Err(_elapsed) if committed.load(Ordering::Acquire) => {
            tracing::debug!(%method, %path, ?timeout, "a committed request runs past the timeout");
            response.await
        }
        Err(_elapsed) => {
            tracing::debug!(%method, %path, ?timeout, "a request timed out");
            ApiError::unavailable(format!(
                "the request was not answered within {} ms, the most the node spends on one; \
                 try again later, or ask for less [request-timeout]",
                timeout.as_millis()
            ))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_event_stream_may_take_its_time() {
        assert!(is_exempt("/events"));
        for path in [
            "/mine",
            "/mine-transactions",
            "/blocks",
            "/transactions",
            "/status",
            "/transact",
            "/tx",
            "/events/",
            "/mine/x",
            "/",
        ] {
            assert!(!is_exempt(path), "{path}");
        }
    }
}

#[cfg(test)]
mod served_tests {
    use axum::routing::get;

    use super::*;
    use crate::server::{ConnectionLimits, EVICTION_GRACE};
    use crate::testing::{TestServer, get as http_get};

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: crate::options::DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }

    #[tokio::test]
    async fn a_slow_request_is_answered_503_request_timeout_and_a_fast_one_is_not() {
        let router = with_request_timeout(
            Router::new()
                .route("/slow", get(std::future::pending::<&'static str>))
                .route("/fast", get(|| async { "fast" })),
            Duration::from_millis(300),
        );
        let server = TestServer::router(router, limits()).await;
        let slow = http_get(server.address, "/slow").await;
        assert_eq!(slow.status, 503);
        assert_eq!(slow.header("content-type"), Some("application/json"));
        let message = slow.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned();
        assert!(message.ends_with("[request-timeout]"), "{message}");
        assert!(message.contains("300 ms"), "{message}");
        let fast = http_get(server.address, "/fast").await;
        assert_eq!(fast.status, 200);
        assert_eq!(fast.body, b"fast");
    }

    #[tokio::test]
    async fn a_committed_request_is_answered_when_its_work_ends_not_503() {
        let timeout = Duration::from_millis(200);
        let router = with_request_timeout(
            Router::new().route(
                "/pay",
                get(move || async move {
                    // Work that cannot be called off, three timeouts long.
                    commit();
                    tokio::time::sleep(timeout * 3).await;
                    "paid"
                }),
            ),
            timeout,
        );
        let server = TestServer::router(router, limits()).await;
        let paid = http_get(server.address, "/pay").await;
        assert_eq!(
            paid.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&paid.body)
        );
        assert_eq!(paid.body, b"paid");
    }
}
