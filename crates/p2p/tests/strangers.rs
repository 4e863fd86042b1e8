//! Strangers (issue 15): a client whose first message is not a binary powchain hello, as
//! a node of the node.js tutorial sends `{"type":"CHAIN","chain":[...]}`, gets a WebSocket
//! close frame that says why, in both directions, under the handshake's usual rules (a
//! binary message other than hello still bans; a text frame does not).

mod common;

use std::time::Duration;

use common::{Socket, TestNode, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_p2p::Message;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const LIMIT: Duration = Duration::from_secs(20);
const TUTORIAL_CHAIN: &str = r#"{"type":"CHAIN","chain":[]}"#;

/// Reads until the node closes: its close frame, or `None` if the connection ended (or
/// `limit` passed) without one.
async fn close_frame<S>(socket: &mut S, limit: Duration) -> Option<CloseFrame>
where
    S: StreamExt<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Frame::Close(frame)))) => return frame,
            Ok(Some(Ok(_))) => {}
            Err(_) | Ok(None | Some(Err(_))) => return None,
        }
    }
}

async fn connect(node: &TestNode) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("the node accepts WebSockets");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tutorial_node_gets_a_close_frame_that_says_why() {
    let node = TestNode::start(vec![]).await;
    let mut socket = connect(&node).await;
    socket
        .send(Frame::text(TUTORIAL_CHAIN))
        .await
        .expect("send the tutorial's chain");
    let close = close_frame(&mut socket, LIMIT)
        .await
        .expect("a close frame, not a silent drop");
    assert_eq!(close.code, CloseCode::Protocol, "{close:?}");
    assert_eq!(
        close.reason.as_str(),
        "not a powchain peer: expected a binary hello"
    );
    assert!(node.p2p.banned().is_empty(), "a text frame is not banned");
    // The node keeps serving real peers.
    let peer = TestNode::start(vec![node.url()]).await;
    wait_until("the real peer connects", LIMIT, || async {
        node.p2p.peers().len() == 1
    })
    .await;
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_message_before_hello_is_banned_and_told_so() {
    let node = TestNode::start(vec![]).await;
    let mut socket = connect(&node).await;
    socket
        .send(Frame::binary(Message::Ping(7).to_bytes()))
        .await
        .expect("send a ping message");
    let close = close_frame(&mut socket, LIMIT)
        .await
        .expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert!(
        close
            .reason
            .as_str()
            .starts_with("not a powchain peer: expected a binary hello")
            && close.reason.as_str().contains("expected-hello"),
        "{close:?}"
    );
    let bans = node.p2p.banned();
    assert!(
        bans.iter().any(|(_, rule)| rule == "expected-hello"),
        "the rule still bans: {bans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_pre_hello_budget_is_closed_with_a_reason() {
    let node = TestNode::start(vec![]).await;
    let mut socket = connect(&node).await;
    let long_chain = format!(
        r#"{{"type":"CHAIN","chain":[{}]}}"#,
        vec![r#"{"data":[]}"#; 4_000].join(",")
    );
    // The node stops reading at the budget: the rest of the frame may never be taken.
    let _ = tokio::time::timeout(LIMIT, socket.send(Frame::text(long_chain))).await;
    let close = close_frame(&mut socket, LIMIT)
        .await
        .expect("a close frame");
    assert_eq!(close.code, CloseCode::Size, "{close:?}");
    assert!(
        close.reason.as_str().contains("bytes came first"),
        "{close:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialled_tutorial_node_gets_a_close_frame_too() {
    // A tutorial node: sends its chain as text when a socket opens, then listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (closes, mut closed) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let closes = closes.clone();
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                if socket.send(Frame::text(TUTORIAL_CHAIN)).await.is_err() {
                    return;
                }
                let _ = closes.send(close_frame(&mut socket, LIMIT).await).await;
            });
        }
    });
    let node = TestNode::start(vec![format!("ws://127.0.0.1:{port}")]).await;
    let close = tokio::time::timeout(LIMIT, closed.recv())
        .await
        .expect("the node dials the tutorial node")
        .expect("the fake node reports")
        .expect("a close frame, not a silent drop");
    assert_eq!(close.code, CloseCode::Protocol, "{close:?}");
    assert_eq!(
        close.reason.as_str(),
        "not a powchain peer: expected a binary hello"
    );
    assert!(node.p2p.peers().is_empty());
    assert!(node.p2p.banned().is_empty(), "a text frame is not banned");
}
