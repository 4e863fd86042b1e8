//! The request timeout: a request that is not answered within
//! `ApiOptions::request_timeout` (its body read included, so a body dribbled a byte at a
//! time is cut too) is answered 503 `[request-timeout]`, and its handler is dropped.
//!
//! ```text
//!   request ──exempt (GET /events, mining)?──yes──▶ handler, however long
//!                  │no
//!                  ▼
//!   handler ──answered in time?──yes──▶ its answer
//!                  │no
//!                  ▼
//!   503 {"error": "... [request-timeout]"}
//! ```
//!
//! Exempt: the event stream, which lasts as long as its client listens (the subscriber cap
//! bounds it instead), and mining (`POST /mine`, `/mine-transactions`), which lasts as long
//! as the proof of work and cannot be called off: a timeout would answer 503 while the block
//! is still found, and a retry would mine another. Mining is protected (`auth.rs`), so only
//! the node's owner can start it.
//!
//! Work a handler handed to the blocking pool runs to its end after a timeout (a large
//! read's keeps its place meanwhile, `large_reads.rs`); what the timeout frees at once is
//! the connection's wait and the answer's memory.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// True if requests to `path` may take as long as they need (see the module).
pub(crate) fn is_exempt(path: &str) -> bool {
    matches!(path, "/events" | "/mine" | "/mine-transactions")
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
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
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
    fn only_the_event_stream_and_mining_may_take_their_time() {
        for path in ["/events", "/mine", "/mine-transactions"] {
            assert!(is_exempt(path), "{path}");
        }
        for path in [
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

    #[tokio::test]
    async fn a_slow_request_is_answered_503_request_timeout_and_a_fast_one_is_not() {
        let router = with_request_timeout(
            Router::new()
                .route("/slow", get(std::future::pending::<&'static str>))
                .route("/fast", get(|| async { "fast" })),
            Duration::from_millis(300),
        );
        let limits = ConnectionLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: crate::options::DEFAULT_WRITE_STALL_TIMEOUT,
        };
        let server = TestServer::router(router, limits).await;
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
}
