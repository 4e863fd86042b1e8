//! `GET /txs/ws`: submission as a WebSocket stream, for clients that send many payments.
//!
//! ```text
//!   client ──text: a POST /txs body──▶ start_batch: admitted as read, in order
//!                                        │ up to IN_FLIGHT batches wait for their rows
//!   client ◀──text: its POST /txs answer── finish: once the batch's rows are stored
//!   (one answer a message, in the order sent; the client need not wait for one before
//!   sending the next)
//! ```
//!
//! `POST /txs` costs a request round trip a batch: a client that waits for each answer
//! leaves the node idle meanwhile. On a stream the next batch is already on the connection
//! when an answer leaves, so a client keeps the node busy from one connection.
//!
//! Bounded like every other endpoint: at most [`MAX_TRANSACTION_STREAMS`] streams at once,
//! one of them to an address group (503 past that, before the upgrade), a message of at most
//! [`MAX_BATCH_BODY_BYTES`](crate::router::MAX_BATCH_BODY_BYTES) (a larger one closes the
//! stream with 1009), at most [`IN_FLIGHT`] messages admitted ahead of their answers (a
//! client that does not read its answers stops being read), an answer taken within
//! `ApiOptions::transaction_stream_write_timeout` (30 s) or the stream dropped, a stream
//! that pools nothing for `ApiOptions::transaction_stream_idle` (60 s) closed (messages
//! that pool nothing, refused or empty, do not keep a place: four clients sending an
//! empty batch a minute held every place for good), and every stream closed when the
//! node stops.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Request, State};
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use powchain_node::{AddressGroup, Node};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::error::ApiError;
use crate::group_shares::{GroupShare, GroupShares};
use crate::input::NoQuery;
use crate::router::MAX_BATCH_BODY_BYTES;
use crate::server::ClientGroup;
use crate::transactions::{BatchResult, RawTransactionsRequest, SubmitBatchResponse, start_batch};

/// Transaction streams open at once, at most: each may hold a message of up to 2 MiB
/// while it is admitted, as a `POST /txs` slot does.
pub const MAX_TRANSACTION_STREAMS: usize = 4;
/// Messages of one stream admitted and waiting for their rows to be stored, at most:
/// past this, the stream is not read until the oldest is answered.
pub const IN_FLIGHT: usize = 4;
/// How often a stream checks whether the node is stopping and whether it has been silent
/// too long.
const SHUTDOWN_POLL: Duration = Duration::from_millis(500);

/// The places of [`MAX_TRANSACTION_STREAMS`], shared by one router's streams, and how long
/// a stream may stay silent (`ApiOptions::transaction_stream_idle`) and take to take an
/// answer (`ApiOptions::transaction_stream_write_timeout`).
///
/// One address group holds at most an eighth of the places, at least one (the operator's
/// own `127.0.0.1` and `::1` are not capped): one stranger opening every stream, and
/// opening them again as soon as the idle close freed them, answered everyone else 503
/// nearly always (docs/SECURITY.md, item 86).
#[derive(Clone, Debug)]
pub struct StreamSlots {
    places: Arc<Semaphore>,
    by_group: GroupShares,
    idle: Duration,
    write_timeout: Duration,
}

/// A stream's place: one of all the streams', and one of its client's group's.
type StreamPlace = (GroupShare, OwnedSemaphorePermit);

impl StreamSlots {
    /// Room for [`MAX_TRANSACTION_STREAMS`] streams, each closed after `idle` of silence
    /// and dropped when an answer is not taken within `write_timeout`.
    pub(crate) fn new(idle: Duration, write_timeout: Duration) -> StreamSlots {
        StreamSlots {
            places: Arc::new(Semaphore::new(MAX_TRANSACTION_STREAMS)),
            by_group: GroupShares::default(),
            idle,
            write_timeout,
        }
    }

    /// A place for one more stream, to a client of `group`, held until it drops.
    ///
    /// # Errors
    /// A 503 `[too-many-streams]` when all [`MAX_TRANSACTION_STREAMS`] places are taken,
    /// or the group holds its share of them.
    fn join(&self, group: AddressGroup) -> Result<StreamPlace, ApiError> {
        let taken = self
            .by_group
            .try_take(
                group,
                AddressGroup::share_of(MAX_TRANSACTION_STREAMS),
                || Arc::clone(&self.places).try_acquire_owned().ok(),
            )
            .map_err(|held| {
                ApiError::unavailable(format!(
                    "clients of your network ({group}) already hold {held} of the node's \
                     {MAX_TRANSACTION_STREAMS} transaction streams, the most one network may \
                     hold at once; try again later, or use POST /txs [too-many-streams]"
                ))
            })?;
        taken.ok_or_else(|| {
            ApiError::unavailable(format!(
                "the node already takes transactions on {MAX_TRANSACTION_STREAMS} streams, \
                 the most it serves at once; try again later, or use POST /txs \
                 [too-many-streams]"
            ))
        })
    }
}

/// `GET /txs/ws`: upgrades to a WebSocket on which each text message is a `POST /txs` body
/// and is answered, in order, with what `POST /txs` answers.
///
/// # Errors
/// 400 for a request that is not a WebSocket handshake (`[not-a-websocket]`); 503 when all
/// [`MAX_TRANSACTION_STREAMS`] places are taken, or the client's address group holds its
/// share of them (`[too-many-streams]`).
pub async fn stream(
    State(node): State<Arc<Node>>,
    Extension(slots): Extension<StreamSlots>,
    client: Option<Extension<ClientGroup>>,
    _query: NoQuery,
    mut request: Request,
) -> Result<Response, ApiError> {
    let accept = handshake_accept(request.headers())?;
    // A request that did not come through the server's accept loop is the process's own.
    let group = client.map_or(AddressGroup::Local, |Extension(ClientGroup(group))| group);
    let place = slots.join(group)?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_BATCH_BODY_BYTES))
                    .max_frame_size(Some(MAX_BATCH_BODY_BYTES));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve(socket, node, &slots, place).await;
            }
            Err(error) => tracing::debug!(%error, "a transaction stream's upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// The `Sec-WebSocket-Accept` value for a well-formed WebSocket handshake (RFC 6455 4.2.1).
fn handshake_accept(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version_13 = headers
        .get("sec-websocket-version")
        .is_some_and(|value| value.as_bytes() == b"13");
    let key = headers.get(SEC_WEBSOCKET_KEY);
    match key {
        Some(key)
            if has_token(CONNECTION, "upgrade")
                && has_token(UPGRADE, "websocket")
                && version_13 =>
        {
            HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                .map_err(|_| ApiError::internal("the accept key is not a header value"))
        }
        _ => Err(ApiError::bad_request(
            "GET /txs/ws is a WebSocket: send `Connection: Upgrade`, `Upgrade: websocket`, \
             `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` (a WebSocket client does) \
             [not-a-websocket]",
        )),
    }
}

/// Reads messages and answers each in order, until the client closes, breaks a limit,
/// goes silent, or the node stops. A message is admitted as soon as it is read (in order:
/// a parent in one message, its child in the next); while its rows are written, up to
/// [`IN_FLIGHT`] more are read and admitted. `_place` is the stream's place.
async fn serve<S>(
    socket: WebSocketStream<S>,
    node: Arc<Node>,
    slots: &StreamSlots,
    _place: StreamPlace,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let StreamSlots {
        idle,
        write_timeout,
        ..
    } = *slots;
    let (mut sink, mut stream) = socket.split();
    let mut answers: FuturesOrdered<Answer> = FuturesOrdered::new();
    let mut shutdown_poll = tokio::time::interval(SHUTDOWN_POLL);
    // Since the stream opened, or its last message that pooled a transaction was answered.
    let mut idle_since = tokio::time::Instant::now();
    let mut previous = {
        let (done, previous) = oneshot::channel();
        let _ = done.send(());
        previous
    };
    loop {
        tokio::select! {
            biased;
            Some((answer, pooled)) = answers.next(), if !answers.is_empty() => {
                match tokio::time::timeout(write_timeout, sink.send(Message::text(answer))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "could not answer on a transaction stream");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("a transaction stream's client did not take its answer");
                        return;
                    }
                }
                if pooled > 0 {
                    idle_since = tokio::time::Instant::now();
                }
            }
            read = stream.next(), if answers.len() < IN_FLIGHT => {
                let answer: Answer = match read {
                    None | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => {
                        start_answer(&node, text.as_str(), &mut previous).await
                    }
                    Some(Ok(Message::Binary(_))) => ready(refused(ApiError::bad_request(
                        "a message is text: a POST /txs body, {\"hex\": [\"<hex>\", ...]}",
                    ))),
                    // Pings are answered by the protocol layer; nothing else carries a batch.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                        let reason = format!("a message of {size} bytes; at most {max_size}");
                        close(sink, CloseCode::Size, &reason, write_timeout).await;
                        return;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "a transaction stream ended with an error");
                        return;
                    }
                };
                answers.push_back(answer);
            }
            _ = shutdown_poll.tick() => {
                if node.is_shutting_down() {
                    close(sink, CloseCode::Away, "the node is stopping", write_timeout).await;
                    return;
                }
                if answers.is_empty() && idle_since.elapsed() >= idle {
                    let reason =
                        format!("idle: no transaction pooled for {} ms", idle.as_millis());
                    close(sink, CloseCode::Normal, &reason, write_timeout).await;
                    return;
                }
            }
        }
    }
}

/// An answer to come: its text, and how many transactions its message pooled.
type Answer = BoxFuture<'static, (String, usize)>;

/// The answer to a message that pooled nothing, known at once.
fn ready(answer: String) -> Answer {
    Box::pin(std::future::ready((answer, 0)))
}

/// Admits the batch of one text message now, and returns its answer to come once its rows
/// are stored (or at once, why it is no batch).
///
/// `previous` completes when the batch before it has been stored and announced; it is
/// replaced by this batch's.
async fn start_answer(
    node: &Arc<Node>,
    text: &str,
    previous: &mut oneshot::Receiver<()>,
) -> Answer {
    let request: RawTransactionsRequest = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(error) => {
            return ready(refused(ApiError::bad_request(format!(
                "invalid JSON message: {error}"
            ))));
        }
    };
    match start_batch(node, request).await {
        Ok(batch) => {
            // Admitted transactions are announced to peers once stored: that runs to the
            // end even if the client leaves first, and in the order the batches came (the
            // wait for this batch starts after the one before it has finished).
            let node = Arc::clone(node);
            let (done, next) = oneshot::channel();
            let previous = std::mem::replace(previous, next);
            let finishing = tokio::spawn(async move {
                let _ = previous.await;
                let answer = batch.finish(&node).await;
                let _ = done.send(());
                answer
            });
            Box::pin(async move {
                match finishing.await {
                    Ok(Ok(answer)) => (to_json(&answer), answer.accepted),
                    Ok(Err(error)) => (refused(error), 0),
                    Err(error) => (
                        refused(ApiError::internal(format!(
                            "the batch's wait for its rows failed: {error}"
                        ))),
                        0,
                    ),
                }
            })
        }
        Err(error) => ready(refused(error)),
    }
}

fn to_json(answer: &SubmitBatchResponse) -> String {
    serde_json::to_string(answer).unwrap_or_else(|error| {
        refused(ApiError::internal(format!(
            "could not encode the answer: {error}"
        )))
    })
}

/// The answer to a message that is not a batch at all (not JSON of the `POST /txs` shape,
/// none or too many transactions, a binary message): `{error, status}`, as one refused
/// transaction of a `POST /txs` answer is written, with what `POST /txs` would have
/// answered. The stream carries on.
fn refused(error: ApiError) -> String {
    serde_json::to_string(&BatchResult::refused(error))
        .unwrap_or_else(|_| String::from("{\"status\": 500}"))
}

/// Sends a close frame (each step within `write_timeout`) and lets the socket go.
async fn close<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    code: CloseCode,
    reason: &str,
    write_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use powchain_consensus::encode::Encode;
    use powchain_consensus::{Transaction, hex};
    use tokio::net::TcpStream;
    use tokio_tungstenite::MaybeTlsStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;
    use crate::testing::{DEADLINE, TestServer, get, node_and_unseen_payments, regtest_node};
    use crate::transactions::MAX_BATCH_TRANSACTIONS;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// A WebSocket client of `GET /txs/ws`, or the HTTP status it was refused with.
    async fn connect(server: &TestServer) -> Result<Client, u16> {
        connect_from(Ipv4Addr::LOCALHOST, server).await
    }

    /// [`connect`] from `source` (another loopback address is another client's, of the
    /// address group it falls in).
    async fn connect_from(source: Ipv4Addr, server: &TestServer) -> Result<Client, u16> {
        let url = format!("ws://{}/txs/ws", server.address);
        let request = url.into_client_request().expect("a request");
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let socket = crate::testing::connect_from(source, server.address).await;
        match tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Plain(socket),
            Some(config),
        )
        .await
        {
            Ok((client, _)) => Ok(client),
            Err(WsError::Http(response)) => Err(response.status().as_u16()),
            Err(error) => panic!("could not connect: {error}"),
        }
    }

    /// A stream, once a place is free (a closed stream's place is freed when its task has
    /// seen the close); refused with 503 until then.
    async fn connect_when_free(server: &TestServer) -> Client {
        connect_when_free_from(Ipv4Addr::LOCALHOST, server).await
    }

    /// [`connect_when_free`] from `source`.
    async fn connect_when_free_from(source: Ipv4Addr, server: &TestServer) -> Client {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            match connect_from(source, server).await {
                Ok(client) => return client,
                Err(status) => assert_eq!(status, 503),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no place was freed within the deadline"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The close frame the node sends next (other messages are skipped), within the deadline.
    async fn next_close(client: &mut Client) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(DEADLINE, client.next())
                .await
                .expect("closed within the deadline")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// The next message the node sends, as JSON, within the deadline.
    async fn next_answer(client: &mut Client) -> serde_json::Value {
        loop {
            let message = tokio::time::timeout(DEADLINE, client.next())
                .await
                .expect("answered within the deadline")
                .expect("the stream is open")
                .expect("reads");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("the answer is JSON");
            }
        }
    }

    /// Sends messages and never reads their answers until a send is held up: 1,000 entries
    /// that are not transactions, a 200 KB message whose answer is about 100 KB of
    /// refusals. The node writes answers until the connection's buffers are full, and then
    /// reads no more: fails if it reads 1,000 (200 MB). Ok once a send is held up, Err if
    /// the node dropped the connection first.
    async fn send_until_held_up(client: &mut Client) -> Result<(), WsError> {
        let junk = Message::text(
            serde_json::json!({ "hex": vec!["ab".repeat(100); MAX_BATCH_TRANSACTIONS] })
                .to_string(),
        );
        for _ in 0..1_000 {
            // A send that does not finish in a second is held up by the node, which has
            // stopped reading (the loopback buffers hold a few MB either way).
            match tokio::time::timeout(Duration::from_secs(1), client.send(junk.clone())).await {
                Ok(result) => result?,
                Err(_) => return Ok(()),
            }
        }
        panic!("the node read 200 MB from a client that reads no answers");
    }

    fn payments() -> (Vec<tempfile::TempDir>, Arc<Node>, Vec<Transaction>) {
        node_and_unseen_payments(3)
    }

    fn batch(transactions: &[&Transaction]) -> Message {
        let hex: Vec<String> = transactions
            .iter()
            .map(|transaction| hex::encode(&transaction.encode_to_vec()))
            .collect();
        Message::text(serde_json::json!({ "hex": hex }).to_string())
    }

    fn handshake(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_handshake_is_answered_with_rfc_6455_s_accept_key_and_anything_less_is_refused() {
        // RFC 6455, section 1.3: this key's accept value.
        let complete = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            handshake_accept(&handshake(&complete)).expect("accepted"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        for missing in 0..complete.len() {
            let mut partial = complete.to_vec();
            partial.remove(missing);
            let refused = handshake_accept(&handshake(&partial)).expect_err("refused");
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
            assert!(refused.message.contains("[not-a-websocket]"));
        }
        let mut old_version = complete.to_vec();
        old_version[2] = ("sec-websocket-version", "8");
        assert!(handshake_accept(&handshake(&old_version)).is_err());
        let mut no_upgrade_token = complete.to_vec();
        no_upgrade_token[0] = ("connection", "keep-alive, upgrades");
        assert!(handshake_accept(&handshake(&no_upgrade_token)).is_err());
    }

    #[tokio::test]
    async fn messages_sent_back_to_back_are_answered_in_order_each_as_post_txs_would() {
        let (_folders, node, payments) = payments();
        let mut server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        let mut client = connect(&server).await.expect("upgraded");

        // All five go out before any answer is read.
        client
            .send(batch(&[&payments[0], &payments[1]]))
            .await
            .expect("sends");
        client
            .send(Message::text("{\"hex\": \"not a list\"}"))
            .await
            .expect("sends");
        client
            .send(Message::binary(payments[2].encode_to_vec()))
            .await
            .expect("sends");
        client
            .send(Message::text("{\"hex\": []}"))
            .await
            .expect("sends");
        client
            .send(batch(&[&payments[2], &payments[0]]))
            .await
            .expect("sends");

        let first = next_answer(&mut client).await;
        assert_eq!(first["accepted"], 2, "{first}");
        assert_eq!(
            first["results"][1]["txid"],
            payments[1].compute_txid().to_string(),
            "the child after its parent"
        );
        let not_json = next_answer(&mut client).await;
        assert_eq!(not_json["status"], 400);
        assert!(
            not_json["error"]
                .as_str()
                .expect("an error")
                .starts_with("invalid JSON message"),
            "{not_json}"
        );
        let binary = next_answer(&mut client).await;
        assert_eq!(binary["status"], 400);
        assert!(binary["error"].as_str().expect("an error").contains("text"));
        let empty = next_answer(&mut client).await;
        assert_eq!(empty["status"], 400);
        assert!(
            empty["error"]
                .as_str()
                .expect("an error")
                .contains("a batch holds 1 to 1000")
        );
        let last = next_answer(&mut client).await;
        assert_eq!(last["accepted"], 1, "{last}");
        assert_eq!(last["refused"], 1);
        assert_eq!(last["results"][1]["status"], 409, "the same payment again");
        assert_eq!(node.pool_size().0, 3);

        client.close(None).await.expect("closes");
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_batch_admitted_is_announced_even_if_its_answer_is_never_awaited() {
        let (_folders, node, payments) = payments();
        let mut events = node.subscribe();
        let text = match batch(&[&payments[0], &payments[1]]) {
            Message::Text(text) => text,
            other => panic!("a batch is text, not {other:?}"),
        };
        let (done, mut previous) = oneshot::channel();
        let _ = done.send(());
        // What happens when the client leaves: the stream's task ends and drops the
        // answer it was waiting for, unpolled. The batch's wait for its rows, and the
        // events that relay it to peers, still run.
        drop(start_answer(&node, text.as_str(), &mut previous).await);
        let mut announced = Vec::new();
        while announced.len() < 2 {
            match tokio::time::timeout(DEADLINE, events.recv())
                .await
                .expect("announced within the deadline")
            {
                Ok(powchain_node::NodeEvent::TransactionAccepted { txid }) => announced.push(txid),
                Ok(_) => {}
                Err(error) => panic!("the node's events ended: {error}"),
            }
        }
        let expected: Vec<_> = payments[..2]
            .iter()
            .map(Transaction::compute_txid)
            .collect();
        assert_eq!(announced, expected, "in the order of the batch");
        // And the next batch's wait starts after it.
        tokio::time::timeout(DEADLINE, previous)
            .await
            .expect("finished within the deadline")
            .expect("the batch's wait finished");
    }

    #[tokio::test]
    async fn a_message_over_the_limit_closes_the_stream_and_the_node_serves_on() {
        let (_folders, node, payments) = payments();
        let mut server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        let mut client = connect(&server).await.expect("upgraded");
        let huge = format!(
            "{{\"hex\": [\"{}\"]}}",
            "ab".repeat(MAX_BATCH_BODY_BYTES / 2)
        );
        // The node may close before the whole message is written.
        let _ = client.send(Message::text(huge)).await;
        let closed = next_close(&mut client).await;
        let frame = closed.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
        assert!(frame.reason.contains("at most 2097152"), "{frame:?}");
        assert_eq!(get(server.address, "/status").await.status, 200);

        // Its place is free again: as many streams as allowed open, and they admit.
        let mut clients = Vec::new();
        for _ in 0..MAX_TRANSACTION_STREAMS {
            clients.push(connect_when_free(&server).await);
        }
        clients[0]
            .send(batch(&[&payments[0]]))
            .await
            .expect("sends");
        assert_eq!(next_answer(&mut clients[0]).await["accepted"], 1);
        for mut client in clients {
            client.close(None).await.expect("closes");
        }
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn streams_past_the_limit_are_refused_before_the_upgrade() {
        let (_folder, node) = regtest_node(0);
        let mut server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        let mut clients = Vec::new();
        for _ in 0..MAX_TRANSACTION_STREAMS {
            clients.push(connect(&server).await.expect("a place"));
        }
        assert_eq!(connect(&server).await.err(), Some(503));
        let refused = get(server.address, "/txs/ws").await;
        assert_eq!(refused.status, 400, "a plain GET is no handshake");
        assert!(String::from_utf8_lossy(&refused.body).contains("[not-a-websocket]"));

        let mut first = clients.remove(0);
        first.close(None).await.expect("closes");
        clients.push(connect_when_free(&server).await);
        for mut client in clients {
            client.close(None).await.expect("closes");
        }
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn one_address_group_holds_one_transaction_stream_and_other_groups_are_served() {
        use tokio::io::AsyncWriteExt;

        let (_folder, node) = regtest_node(0);
        // Long enough that the refusals below come before the stranger's idle close on a
        // loaded machine; short enough for that close to come within the deadline.
        let options = crate::ApiOptions {
            transaction_stream_idle: Duration::from_secs(6),
            ..crate::ApiOptions::default()
        };
        let mut server = TestServer::api(Arc::clone(&node), options).await;
        let mut stranger = connect_from([127, 9, 0, 2].into(), &server)
            .await
            .expect("a place");
        // Another address of its group is refused before the upgrade, told why.
        let neighbour = [127, 9, 0, 3].into();
        assert_eq!(connect_from(neighbour, &server).await.err(), Some(503));
        let mut refused = crate::testing::connect_from(neighbour, server.address).await;
        refused
            .write_all(
                b"GET /txs/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .expect("the handshake is written");
        let answer = crate::testing::read_answer(&mut refused).await;
        assert_eq!(answer.status, 503);
        let message = answer.error_message();
        assert!(
            message.contains("your network (127.9.0.0/16) already hold 1 of"),
            "{message}"
        );
        assert!(message.ends_with("[too-many-streams]"), "{message}");
        // Another group, and the operator's own address past the share, are served.
        let mut others = vec![
            connect_from([127, 10, 0, 2].into(), &server)
                .await
                .expect("another group has a place"),
        ];
        for _ in 0..2 {
            others.push(connect(&server).await.expect("the operator is not capped"));
        }
        // The stranger's silent stream is closed, and its group has a place again.
        let frame = next_close(&mut stranger).await.expect("a close frame");
        assert!(frame.reason.contains("idle"), "{frame:?}");
        others.push(connect_when_free_from(neighbour, &server).await);
        for mut other in others {
            // The others may have been closed for their silence too.
            let _ = other.close(None).await;
        }
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_client_that_never_reads_its_answers_stops_being_read_and_others_are_served() {
        let (_folders, node, payments) = payments();
        let mut server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        let mut hostile = connect(&server).await.expect("upgraded");
        send_until_held_up(&mut hostile)
            .await
            .expect("held up, not dropped");

        // Meanwhile the node serves everyone else.
        assert_eq!(get(server.address, "/status").await.status, 200);
        let mut honest = connect(&server).await.expect("a place");
        honest.send(batch(&[&payments[0]])).await.expect("sends");
        assert_eq!(next_answer(&mut honest).await["accepted"], 1);

        honest.close(None).await.expect("closes");
        drop(hostile);
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_client_that_does_not_take_an_answer_in_time_is_dropped_and_its_place_freed() {
        let (_folder, node) = regtest_node(0);
        let options = crate::ApiOptions {
            transaction_stream_write_timeout: Duration::from_millis(300),
            ..crate::ApiOptions::default()
        };
        let mut server = TestServer::api(Arc::clone(&node), options).await;
        let mut hostile = connect(&server).await.expect("upgraded");
        // Held up, or already dropped while a send was under way.
        let _ = send_until_held_up(&mut hostile).await;
        // Its answers are stuck: it is not silent (the idle close waits for no answer to be
        // pending), so only the write timeout frees its place for a fourth stream.
        let mut others = Vec::new();
        for _ in 0..MAX_TRANSACTION_STREAMS {
            others.push(connect_when_free(&server).await);
        }
        // What it reads now is the answers the buffers held, and then the end, without a
        // close frame (the node could not have written one).
        let ended = tokio::time::timeout(DEADLINE, async {
            loop {
                match hostile.next().await {
                    Some(Ok(Message::Text(_))) => {}
                    Some(Ok(other)) => panic!("expected answers and then the end, got {other:?}"),
                    None | Some(Err(_)) => return,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the dropped stream did not end");
        for mut other in others {
            other.close(None).await.expect("closes");
        }
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_silent_stream_is_closed_and_its_place_freed() {
        let (_folders, node, payments) = payments();
        let options = crate::ApiOptions {
            transaction_stream_idle: Duration::from_millis(200),
            ..crate::ApiOptions::default()
        };
        let mut server = TestServer::api(Arc::clone(&node), options).await;
        let mut client = connect(&server).await.expect("upgraded");
        client.send(batch(&[&payments[0]])).await.expect("sends");
        assert_eq!(next_answer(&mut client).await["accepted"], 1);
        // Then silence: the node closes the stream.
        let frame = next_close(&mut client).await;
        let frame = frame.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Normal);
        assert!(
            frame
                .reason
                .contains("idle: no transaction pooled for 200 ms"),
            "{frame:?}"
        );
        let mut others = Vec::new();
        for _ in 0..MAX_TRANSACTION_STREAMS {
            others.push(connect_when_free(&server).await);
        }
        for mut other in others {
            other.close(None).await.expect("closes");
        }
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_stream_that_pools_nothing_is_closed_however_much_it_sends() {
        let (_folder, node) = regtest_node(0);
        let options = crate::ApiOptions {
            transaction_stream_idle: Duration::from_millis(300),
            ..crate::ApiOptions::default()
        };
        let mut server = TestServer::api(Arc::clone(&node), options).await;
        let mut client = connect(&server).await.expect("upgraded");
        // An empty batch, refused, again and again: it never pools a transaction.
        let frame = tokio::time::timeout(DEADLINE, async {
            loop {
                if client.send(Message::text(r#"{"hex": []}"#)).await.is_err() {
                    return next_close(&mut client).await;
                }
                match client.next().await {
                    Some(Ok(Message::Text(text))) => {
                        assert!(text.as_str().contains("a batch holds 1 to"), "{text}");
                    }
                    Some(Ok(Message::Close(frame))) => return frame,
                    other => panic!("expected an answer or the close, got {other:?}"),
                }
            }
        })
        .await
        .expect("closed within the deadline");
        let frame = frame.expect("a close frame");
        assert!(
            frame
                .reason
                .contains("idle: no transaction pooled for 300 ms"),
            "{frame:?}"
        );
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn a_stream_is_closed_when_the_node_stops() {
        let (_folder, node) = regtest_node(0);
        let mut server = TestServer::api(Arc::clone(&node), crate::ApiOptions::default()).await;
        let mut client = connect(&server).await.expect("upgraded");
        node.begin_shutdown();
        let frame = next_close(&mut client).await;
        assert_eq!(frame.expect("a close frame").code, CloseCode::Away);
        server.begin_stop();
        server.join().await.expect("the server stops cleanly");
    }
}
