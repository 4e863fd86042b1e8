//! HTTP request bodies through the real router: the first input byte picks an endpoint
//! that takes a JSON body (`POST /transact`, `POST /tx`, `POST /peers`, `POST /mine` with a
//! note too long to mine), the rest is the body. Every answer must be a JSON object, every
//! refusal a 4xx `{"error": "..."}`; never a panic, never a 5xx.
//!
//! The node is a real regtest node in a temporary directory, with an empty wallet (so
//! `/transact` can parse and check a body but never pays) and no peer-to-peer layer.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use powchain_consensus::Network;
use powchain_node::{Node, NodeConfig, SystemClock};
use tower::ServiceExt;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = NodeConfig::new(Network::Regtest, dir.path().to_path_buf());
        config.miner_threads = 1;
        config.signature_threads = 1;
        let node: Arc<Node> = Node::open(config, Arc::new(SystemClock)).expect("the node opens");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Harness {
            runtime,
            router: powchain_api::router(node),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let path = match selector % 4 {
        0 => "/transact",
        1 => "/tx",
        2 => "/peers",
        _ => "/mine",
    };
    // A /mine body that would mine is not interesting here (and grows the chain): only
    // bodies the endpoint refuses are sent to it.
    if path == "/mine" && mine_would_succeed(body) {
        return;
    }
    let harness = harness();
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        // What curl sends to a node on loopback (no browser headers: not a cross-site form).
        .header("host", "127.0.0.1:3001")
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let (status, bytes) = harness.runtime.block_on(async {
        let response = harness
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body is readable");
        (status, bytes)
    });
    assert!(
        !status.is_server_error() || status.as_u16() == 503,
        "POST {path} answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("every answer is JSON");
    if !status.is_success() {
        let object = json.as_object().expect("an error answer is an object");
        assert_eq!(object.len(), 1, "{json}");
        assert!(object["error"].is_string(), "{json}");
    }
});

/// True if `POST /mine` might accept the body and mine (conservative): JSON whose `data`
/// is absent or a note of at most 100 bytes.
fn mine_would_succeed(body: &[u8]) -> bool {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    match serde_json::from_slice::<serde_json::Value>(text) {
        // serde reads a struct from a sequence too: skip every array to be safe.
        Ok(serde_json::Value::Null | serde_json::Value::Array(_)) => true,
        Ok(serde_json::Value::Object(map)) => match map.get("data") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::String(note)) => note.len() <= 100,
            Some(other) => other.to_string().len() <= 100,
        },
        _ => false,
    }
}
