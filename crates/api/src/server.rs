//! The HTTP server: our own accept loop on hyper, so every connection is bounded.
//!
//! ```text
//!   shutdown? ──▶ stop accepting, finish in-flight requests (at most shutdown_grace), drop the rest
//!   a place (max_connections; none free: evict the oldest connection not in a request
//!   that has been idle for EVICTION_GRACE; none of those: wait) ──▶ accept ──▶ its
//!   address group holds an eighth of the places already? the same among the group's own,
//!   the newcomer waiting off the loop (none evictable, or not closed within
//!   GROUP_EVICTION_WAIT: close the newcomer) ──▶ task:
//!   hyper http1 connection
//!        header_read_timeout: request line and headers, and the idle wait between
//!        keep-alive requests; then the router (request timeout, limits) answers
//! ```
//!
//! Why not `axum::serve`: it sets no header-read timeout (a client dribbling headers held
//! its connection forever) and no connection cap (enough of them exhausted the process's
//! files, and with them both ports).
//!
//! hyper's HTTP/1 `header_read_timeout` also runs while a keep-alive connection waits for
//! its next request (hyper 1.x restarts it when the connection goes idle: `Conn::idle` in
//! `proto/h1/conn.rs`), so idle connections need no timer of their own; a test below holds
//! hyper to it. A connection upgraded to a WebSocket (`GET /txs/ws`) leaves the table when
//! hyper hands it over: the stream's own places and timeouts bound it (`tx_stream.rs`).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use powchain_node::AddressGroup;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::large_reads::UnsentAnswer;

mod activity;
mod table;
mod write_stall;

pub use table::HTTP_ACCEPT_FILES;

use activity::MarksIdle;
use table::{ConnectionTable, GroupPlace, GroupWaiters, MAX_GROUP_WAITERS, TableEntry};
use write_stall::WriteStallGuard;

/// How long the accept loop waits after an accept error that is not about one connection
/// (out of files, say) before it tries again, so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long a new connection is safe from eviction while it has not sent a whole request
/// head: time for its task to be scheduled and read what the client sent at once. Without
/// it, a burst of connections (1,100 dribbling clients opened together) evicted an honest
/// client's connection 9 ms after it was accepted, before its task had read the request
/// already waiting in its socket. TCP's own first retransmission waits a second too.
pub(crate) const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// The connection limits `serve_router` enforces (the rest of `ApiOptions` is the router's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// The most connections open at once (at least one is allowed).
    pub(crate) max_connections: usize,
    /// How long a client may take to send a request's head, or stay idle between requests.
    pub(crate) header_read_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub(crate) shutdown_grace: Duration,
    /// How long a new connection without a request is safe from eviction
    /// ([`EVICTION_GRACE`]; tests shorten it).
    pub(crate) eviction_grace: Duration,
    /// How long a write to the client may wait for it to read before the connection is
    /// closed ([`WriteStallGuard`]).
    pub(crate) write_stall_timeout: Duration,
}

impl ConnectionLimits {
    /// The most connections one address group may hold: an eighth (64 of the default
    /// 512), so one stranger (one address, or a block of them) cannot hold every place with
    /// requests it keeps in flight, which no eviction frees. The operator's own
    /// `127.0.0.1` and `::1` (a local proxy, the dashboard) are not capped.
    fn max_per_group(&self) -> usize {
        AddressGroup::share_of(self.max_connections)
    }
}

/// The address group of the client that sent a request: an extension of every request the
/// server hands the router, for limits that count per group (`events.rs`, `tx_stream.rs`,
/// `transactions.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientGroup(pub(crate) AddressGroup);

/// How long an evicted kept-alive connection may take to finish the answer it is sending.
const EVICTED_DRAIN: Duration = Duration::from_secs(5);

/// The most a request head (request line and headers) may take; a longer one is answered
/// 431. Every request of the API fits in a few hundred bytes; hyper's default, about
/// 400 KiB, let 512 connections hold 200 MB with heads never finished. Bitcoin Core's RPC
/// server (libevent) allows 8 KiB.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish for at most `limits.shutdown_grace`, and drops what is left.
///
/// # Errors
/// None today: accept errors are logged and retried, connection errors are the client's.
/// The `Result` keeps room for a failure that should stop the server.
pub(crate) async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_REQUEST_HEAD_BYTES)
        .keep_alive(true);
    let table = Arc::new(ConnectionTable::default());
    let stopping = CancellationToken::new();
    let forced = CancellationToken::new();
    let connections = TaskTracker::new();
    let group_waiters = GroupWaiters::new();
    // As many as there are waiters, each of which sends once while it holds its turn: a
    // send never waits.
    let (returning, mut returned_newcomers) = tokio::sync::mpsc::channel(MAX_GROUP_WAITERS);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Wait for a place (free, or held by a connection without a request past its grace).
        if !table.wait_for_place(&limits, false, &mut shutdown).await {
            break;
        }
        // `returned`: a newcomer back from waiting for its group's connection to close.
        let (stream, group, returned) = tokio::select! {
            Some((stream, group, _waiter)) = returned_newcomers.recv() => (stream, group, true),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, AddressGroup::of(peer.ip()), false),
                Err(error) => {
                    if pause_after_accept_error(&error, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A newcomer may make room in a full group only if it can wait for it (one of
        // MAX_GROUP_WAITERS), and only once: one that comes back and finds its group full
        // again (another of the group took the place meanwhile) is closed.
        let waiter = if returned || !group.is_capped() {
            None
        } else {
            group_waiters.try_wait(group)
        };
        match table.group_place(
            group,
            limits.max_per_group(),
            limits.eviction_grace,
            Instant::now(),
            waiter.is_some(),
        ) {
            GroupPlace::Free => {}
            GroupPlace::Full => {
                tracing::debug!(%group, "closing an HTTP connection: its address group holds its share of the places, none idle");
                drop(stream);
                continue;
            }
            // The newcomer waits for the connection told to close off this loop, which
            // serves every group (a connection whose client began a request as it was
            // chosen finishes its answer first), and comes back once it has closed.
            GroupPlace::Closing(victim) => {
                let (table, back) = (Arc::clone(&table), returning.clone());
                connections.spawn(async move {
                    // The permit goes back with the newcomer: held until the loop takes it.
                    if table.wait_for_victim(victim).await {
                        let _ = back.send((stream, group, waiter)).await;
                    }
                });
                continue;
            }
        }
        // Wait (holding this one connection's file) until a place is free: at once if one
        // is, after the evicted connection has closed if one was evictable, or until any
        // connection closes if every one is in a request meanwhile.
        if !table.wait_for_place(&limits, true, &mut shutdown).await {
            break;
        }
        connections.spawn(serve_connection(
            stream,
            limits.write_stall_timeout,
            table.insert(group),
            http.clone(),
            router.clone(),
            stopping.clone(),
            forced.clone(),
        ));
    }
    drop(listener);
    drop(returned_newcomers);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            grace = ?limits.shutdown_grace,
            "HTTP connections still busy after the shutdown grace; dropping them"
        );
        forced.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// One connection, holding its place in the table until it closes: served until the client
/// leaves, a timeout closes it, a newcomer evicts it while it is idle, or an answer waiting
/// for room among the unsent answers crowds its own out; on `stopping`, it finishes the
/// request in flight and closes; on `forced`, it is dropped.
async fn serve_connection(
    stream: TcpStream,
    write_stall_timeout: Duration,
    entry: TableEntry,
    http: http1::Builder,
    router: Router,
    stopping: CancellationToken,
    forced: CancellationToken,
) {
    // Small answers go out at once instead of waiting for more bytes to fill a segment.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let inner = TowerToHyperService::new(router);
    let activity = Arc::clone(&entry.activity);
    let group = ClientGroup(entry.group);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(group);
        let answer = activity.request_began();
        let answered = hyper::service::Service::call(&inner, request);
        let activity = Arc::clone(&activity);
        async move {
            answered.await.map(|mut response| {
                activity.answered.store(true, Ordering::Release);
                if let Some(unsent) = response.extensions_mut().remove::<UnsentAnswer>()
                    && let Some(room) = unsent.take()
                {
                    activity.hold(answer, room);
                }
                response.map(|inner| MarksIdle {
                    inner,
                    activity: Some(activity),
                })
            })
        }
    });
    let stream = WriteStallGuard::new(stream, write_stall_timeout, entry.activity.clone());
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    let mut evicted_at: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // The client's doing (a timeout, a reset, a malformed request): not ours.
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            // A connection that never sent a request head is dropped; one that has is
            // shut down gracefully, so an answer hyper is still writing (or a request that
            // began as it was chosen) is finished first: its handler runs to its end, and
            // its answer then has EVICTED_DRAIN to go out.
            () = entry.evict.cancelled(), if !draining => {
                if !entry.activity.requested() {
                    return;
                }
                draining = true;
                evicted_at = Some(Instant::now());
                connection.as_mut().graceful_shutdown();
            }
            // An evicted connection's last answer gets a few seconds (an event stream
            // that began as it was chosen would never end): the newcomer waits no longer.
            // A handler still working (a payment, a block's proof of work) is not cut: its
            // answer gets the few seconds once it exists.
            () = async {
                match evicted_at {
                    Some(at) => tokio::time::sleep_until(at + EVICTED_DRAIN).await,
                    None => std::future::pending().await,
                }
            } => {
                if entry.activity.busy()
                    && !entry.activity.answered.load(Ordering::Acquire)
                {
                    evicted_at = Some(Instant::now());
                } else {
                    return;
                }
            }
            () = forced.cancelled() => return,
            // Its answer held its room among the unsent answers too long while another
            // waited for room (`large_reads.rs`): dropped, as a stalled write would be.
            () = entry.activity.crowded_out.cancelled() => {
                tracing::debug!("closing an HTTP connection whose answer held unsent room too long");
                return;
            }
        }
    }
}

/// After a failed accept: nothing for errors about the one connection (it was reset before
/// we took it); for the others, a short pause, logged. True if `shutdown` completed
/// meanwhile (it must not be polled again).
async fn pause_after_accept_error(
    error: &io::Error,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return false;
    }
    tracing::warn!(%error, "could not accept an HTTP connection");
    tokio::select! {
        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => false,
        () = shutdown.as_mut() => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::Notify;

    use super::*;
    use crate::options::ApiOptions;
    use crate::testing::{
        TestServer, answered_200_from, connect_from, get as http_get, read_answer, regtest_node,
        send_get, served_from, wait_closed, wait_until,
    };

    const SHORT: Duration = Duration::from_millis(300);

    fn short_header_timeout() -> ApiOptions {
        ApiOptions {
            header_read_timeout: SHORT,
            ..ApiOptions::default()
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_mid_request_line_is_closed_while_others_are_served() {
        let (_folder, node) = regtest_node(0);
        let server = TestServer::api(node, short_header_timeout()).await;
        let mut silent = TcpStream::connect(server.address).await.expect("connects");
        silent.write_all(b"GET /sta").await.expect("writes");
        let started = Instant::now();

        let status = http_get(server.address, "/status").await;
        assert_eq!(status.status, 200, "served while the silent client is open");

        wait_closed(&mut silent).await;
        assert!(
            started.elapsed() >= SHORT - Duration::from_millis(50),
            "closed by the header-read timeout, not at once: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_request_head_over_its_limit_is_answered_431_and_closed() {
        let (_folder, node) = regtest_node(0);
        let server = TestServer::api(node, ApiOptions::default()).await;
        let mut large = TcpStream::connect(server.address).await.expect("connects");
        let padding = "a".repeat(MAX_REQUEST_HEAD_BYTES);
        large
            .write_all(
                format!("GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n").as_bytes(),
            )
            .await
            .expect("writes");
        assert_eq!(read_answer(&mut large).await.status, 431);
        wait_closed(&mut large).await;

        // A head just under the limit is served.
        let mut fits = TcpStream::connect(server.address).await.expect("connects");
        let padding = "a".repeat(MAX_REQUEST_HEAD_BYTES - 200);
        fits.write_all(
            format!(
                "GET /status HTTP/1.1\r\nHost: {}\r\nX-Pad: {padding}\r\nConnection: close\r\n\r\n",
                server.address
            )
            .as_bytes(),
        )
        .await
        .expect("writes");
        assert_eq!(read_answer(&mut fits).await.status, 200);
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
        let (_folder, node) = regtest_node(0);
        let server = TestServer::api(node, short_header_timeout()).await;
        let mut idle = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut idle, "/status", true).await;
        assert_eq!(read_answer(&mut idle).await.status, 200);
        // Still open for a second request...
        send_get(&mut idle, "/status", true).await;
        assert_eq!(read_answer(&mut idle).await.status, 200);
        // ...but not forever.
        let idle_for = wait_closed(&mut idle).await;
        assert!(
            idle_for >= SHORT - Duration::from_millis(50),
            "{idle_for:?}"
        );
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_and_are_served_once_others_close() {
        let (_folder, node) = regtest_node(0);
        let options = ApiOptions {
            max_connections: 2,
            ..ApiOptions::default()
        };
        let server = TestServer::api(node, options).await;
        // Two kept-alive connections, answered once, so the server holds both places.
        let mut holders = Vec::new();
        for _ in 0..2 {
            let mut holder = TcpStream::connect(server.address).await.expect("connects");
            send_get(&mut holder, "/status", true).await;
            assert_eq!(read_answer(&mut holder).await.status, 200);
            holders.push(holder);
        }
        let mut waiting = TcpStream::connect(server.address)
            .await
            .expect("the kernel queues it");
        send_get(&mut waiting, "/status", false).await;
        // A bounded wait for something that must not happen: the third is not served
        // while both places are taken.
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(
            SHORT,
            tokio::io::AsyncReadExt::read(&mut waiting, &mut byte),
        )
        .await;
        assert!(early.is_err(), "served past the cap: {early:?}");

        drop(holders.pop());
        let answer = tokio::time::timeout(crate::testing::DEADLINE, async {
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut waiting, &mut bytes)
                .await
                .expect("reads");
            bytes
        })
        .await
        .expect("served once a place frees");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_place_of_the_oldest_connection_without_a_request() {
        let (_folder, node) = regtest_node(0);
        let options = ApiOptions {
            max_connections: 3,
            ..ApiOptions::default()
        };
        let server = TestServer::api(node, options).await;
        // A kept-alive client that made a request, and two that dribble their request line.
        let mut kept = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut kept, "/status", true).await;
        assert_eq!(read_answer(&mut kept).await.status, 200);
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(server.address).await.expect("connects");
            stream.write_all(b"GET /st").await.expect("writes");
            stalled.push(stream);
        }
        // Every place is taken; newcomers are served at once, each closing a stalled one.
        let started = Instant::now();
        let mut newcomers = Vec::new();
        for _ in 0..2 {
            let mut newcomer = TcpStream::connect(server.address).await.expect("connects");
            send_get(&mut newcomer, "/status", true).await;
            assert_eq!(read_answer(&mut newcomer).await.status, 200);
            newcomers.push(newcomer);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "served without waiting for the header-read timeout (10 s)"
        );
        for stream in &mut stalled {
            wait_closed(stream).await;
        }
        // The client that made a request keeps its connection.
        send_get(&mut kept, "/status", true).await;
        assert_eq!(read_answer(&mut kept).await.status, 200);
    }

    #[tokio::test]
    async fn a_new_connection_without_a_request_is_not_evicted_before_its_grace() {
        let router = Router::new().route("/status", get(|| async { "ok" }));
        let grace = Duration::from_millis(400);
        let limits = ConnectionLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: SHORT,
            eviction_grace: grace,
            write_stall_timeout: crate::options::DEFAULT_WRITE_STALL_TIMEOUT,
        };
        let server = TestServer::router(router, limits).await;
        // Two connections that send nothing take both places (as a burst's first arrivals
        // do before their tasks have read anything)...
        let before_first = Instant::now();
        let mut first = TcpStream::connect(server.address).await.expect("connects");
        let mut second = TcpStream::connect(server.address).await.expect("connects");
        // ...and a newcomer with a whole request arrives at once. It is served, but only
        // once the first has had its grace: then the first is evicted, the second not.
        let answer = http_get(server.address, "/status").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"ok");
        wait_closed(&mut first).await;
        let first_closed_after = before_first.elapsed();
        assert!(
            first_closed_after >= grace,
            "evicted {first_closed_after:?} after it opened, within its grace of {grace:?}"
        );
        let mut byte = [0u8; 1];
        let second_read =
            tokio::time::timeout(SHORT, tokio::io::AsyncReadExt::read(&mut second, &mut byte))
                .await;
        assert!(
            second_read.is_err(),
            "only the oldest is evicted, the second stays open: {second_read:?}"
        );
    }

    /// Two places, a grace of 100 ms, and a header-read timeout no test here reaches.
    fn two_places_with_a_short_grace() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(1),
            eviction_grace: Duration::from_millis(100),
            write_stall_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn clients_that_keep_every_place_with_a_request_now_and_then_do_not_shut_others_out() {
        let router = Router::new().route("/status", get(|| async { "ok" }));
        let server = TestServer::router(router, two_places_with_a_short_grace()).await;
        // Two kept-alive clients take both places and ask again every 400 ms, well within
        // the header-read timeout: no connection of theirs ever times out.
        let stop = CancellationToken::new();
        let mut refreshers = Vec::new();
        for _ in 0..2 {
            let (address, stop) = (server.address, stop.clone());
            let mut stream = TcpStream::connect(address).await.expect("connects");
            send_get(&mut stream, "/status", true).await;
            assert_eq!(read_answer(&mut stream).await.status, 200);
            refreshers.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    if stream
                        .write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let mut buffer = [0u8; 512];
                    if matches!(
                        tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await,
                        Ok(0) | Err(_)
                    ) {
                        return;
                    }
                }
            }));
        }
        // A newcomer takes the place of the one idle longest.
        let answer =
            tokio::time::timeout(Duration::from_secs(5), http_get(server.address, "/status"))
                .await
                .expect("served while the others keep their connections busy now and then");
        assert_eq!(answer.status, 200);
        stop.cancel();
        for refresher in refreshers {
            let _ = refresher.await;
        }
    }

    #[tokio::test]
    async fn a_newcomer_waiting_while_every_place_is_in_a_request_gets_one_when_they_go_idle() {
        let release = Arc::new(Notify::new());
        let router = {
            let release = Arc::clone(&release);
            Router::new()
                .route(
                    "/slow",
                    get(move || {
                        let release = Arc::clone(&release);
                        async move {
                            release.notified().await;
                            "slow"
                        }
                    }),
                )
                .route("/status", get(|| async { "ok" }))
        };
        let server = TestServer::router(router, two_places_with_a_short_grace()).await;
        // Both places are in a request when the newcomer comes.
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(server.address).await.expect("connects");
            send_get(&mut stream, "/slow", true).await;
            busy.push(stream);
        }
        let address = server.address;
        let newcomer = tokio::spawn(async move { http_get(address, "/status").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!newcomer.is_finished(), "no place was free");
        // They are answered and stay open, idle: the newcomer takes a place after the grace.
        release.notify_waiters();
        for stream in &mut busy {
            assert_eq!(read_answer(stream).await.status, 200);
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), newcomer)
            .await
            .expect("served once a connection went idle")
            .expect("the client task");
        assert_eq!(answer.status, 200);
    }

    #[tokio::test]
    async fn one_address_group_holds_at_most_its_share_of_the_places() {
        // Cancelled stays cancelled: a handler not yet waiting when the test releases them
        // still sees it (a `Notify` would not wake it).
        let release = CancellationToken::new();
        let router = {
            let release = release.clone();
            Router::new()
                .route(
                    "/slow",
                    get(move || {
                        let release = release.clone();
                        async move {
                            release.cancelled().await;
                            "slow"
                        }
                    }),
                )
                .route("/status", get(|| async { "ok" }))
        };
        let limits = ConnectionLimits {
            max_connections: 16,
            // Long enough that a connection's request is read before its grace ends even
            // on a loaded machine: the stranger's first two must keep their places.
            eviction_grace: Duration::from_millis(500),
            ..two_places_with_a_short_grace()
        };
        assert_eq!(limits.max_per_group(), 2);
        let server = TestServer::router(router, limits).await;
        // A stranger (127.9.0.0/16) asks on every place it can get for an answer that
        // does not come: requests in flight, which no eviction frees.
        let mut stranger = Vec::new();
        for host in 2..18u8 {
            let mut stream = connect_from([127, 9, 0, host].into(), server.address).await;
            send_get(&mut stream, "/slow", true).await;
            stranger.push(stream);
        }
        // Another group is served meanwhile, and the operator's own address is not capped:
        // three requests in flight from it have places besides.
        let mut own = Vec::new();
        for _ in 0..3 {
            let mut stream = connect_from([127, 0, 0, 1].into(), server.address).await;
            send_get(&mut stream, "/slow", true).await;
            own.push(stream);
        }
        let mut honest = connect_from([127, 10, 0, 2].into(), server.address).await;
        send_get(&mut honest, "/status", false).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut honest))
            .await
            .expect("served while a stranger asks on every place it can");
        assert_eq!(answer.status, 200);
        // The stranger's first two connections hold a place; the rest were closed.
        for stream in &mut stranger[2..] {
            wait_closed(stream).await;
        }
        release.cancel();
        for stream in stranger[..2].iter_mut().chain(&mut own) {
            assert_eq!(read_answer(stream).await.status, 200);
        }
        // Its two connections are now idle, kept alive: after the grace, a newcomer of the
        // group takes the place of the one idle longest, so idle connections cannot keep
        // the rest of a group out.
        let address = server.address;
        wait_until("a newcomer of the group is served", || {
            answered_200_from([127, 9, 0, 99].into(), address, "/status")
        })
        .await;
        let mut closed = 0;
        for stream in &mut stranger[..2] {
            let mut byte = [0u8; 1];
            if matches!(
                tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::io::AsyncReadExt::read(stream, &mut byte)
                )
                .await,
                Ok(Ok(0) | Err(_))
            ) {
                closed += 1;
            }
        }
        assert!(closed >= 1, "an idle connection of the group made room");
    }

    #[tokio::test]
    async fn a_group_s_newcomers_make_room_again_and_again() {
        // One place a group: each newcomer takes the place of the one before once it is
        // idle, through a wait of its own, more times than there are turns to wait, so a
        // turn not given back (or a group left marked as waiting) would shut the group out.
        let router = Router::new().route("/status", get(|| async { "ok" }));
        let limits = ConnectionLimits {
            max_connections: 8,
            ..two_places_with_a_short_grace()
        };
        assert_eq!(limits.max_per_group(), 1);
        let server = TestServer::router(router, limits).await;
        // Each served connection stays open, idle, for the next newcomer to evict.
        let mut kept = Vec::new();
        for round in 0..(2 * MAX_GROUP_WAITERS) {
            let host = u8::try_from(round + 2).expect("few");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(stream) =
                    served_from([127, 9, 0, host].into(), server.address, "/status").await
                {
                    kept.push(stream);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "newcomer {round} was never served"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(kept.len(), 2 * MAX_GROUP_WAITERS);
    }

    #[tokio::test]
    async fn a_group_s_connections_that_never_send_a_request_make_room_for_its_newcomers() {
        let router = Router::new().route("/status", get(|| async { "ok" }));
        let limits = ConnectionLimits {
            max_connections: 16,
            ..two_places_with_a_short_grace()
        };
        let server = TestServer::router(router, limits).await;
        // Two silent connections hold the group's share; the table has room to spare, so
        // only the group's own eviction can make room.
        let mut silent = Vec::new();
        for host in [2, 3] {
            silent.push(connect_from([127, 9, 0, host].into(), server.address).await);
        }
        let address = server.address;
        wait_until("a newcomer of the group is served", || {
            answered_200_from([127, 9, 0, 4].into(), address, "/status")
        })
        .await;
        wait_closed(&mut silent[0]).await;
    }

    #[tokio::test]
    async fn a_connection_whose_answer_is_not_yet_written_is_not_evicted() {
        // Far more than the sockets' buffers hold: most of it waits in the server's memory
        // until the client reads.
        const LARGE: usize = 32 * 1024 * 1024;
        let router = Router::new()
            .route("/large", get(|| async { vec![b'x'; LARGE] }))
            .route("/status", get(|| async { "ok" }));
        let server = TestServer::router(router, two_places_with_a_short_grace()).await;
        // The first client asks for the large answer and does not read it yet. The pause
        // makes it the longest idle if handing the answer to hyper counted as idle (as it
        // did in the first version of this rule, which then evicted it and let a newcomer
        // wait 5 s for its drain while the answer stayed in memory).
        let mut reader = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut reader, "/large", true).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The second's answer has been written: it is idle.
        let mut idle = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut idle, "/status", true).await;
        assert_eq!(read_answer(&mut idle).await.status, 200);
        // A newcomer takes the idle one's place, not the reader's.
        let answer =
            tokio::time::timeout(Duration::from_secs(4), http_get(server.address, "/status"))
                .await
                .expect("served in the idle connection's place");
        assert_eq!(answer.status, 200);
        wait_closed(&mut idle).await;
        let large = read_answer(&mut reader).await;
        assert_eq!(large.status, 200);
        assert_eq!(large.body.len(), LARGE, "the whole answer");
    }

    /// A router with `/big`, an answer of `bytes` bytes, and `/status`; one connection at a
    /// time, writes stalled for `stall` closed.
    async fn one_place_server(bytes: usize, stall: Duration) -> TestServer {
        let router = Router::new()
            .route("/big", get(move || async move { vec![b'x'; bytes] }))
            .route("/status", get(|| async { "ok" }));
        let limits = ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: SHORT,
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: stall,
        };
        TestServer::router(router, limits).await
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_a_large_answer_loses_its_connection() {
        // Far more than the sockets' buffers take, so the server's write stalls.
        let server = one_place_server(64 << 20, SHORT).await;
        let mut stuck = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut stuck, "/big", false).await;
        // The stuck client holds the only place: the next one is served once the write
        // has stalled for the timeout and its connection is closed (before: never).
        let started = Instant::now();
        let answer = http_get(server.address, "/status").await;
        assert_eq!(answer.status, 200);
        assert!(
            started.elapsed() >= SHORT - Duration::from_millis(50),
            "served before the stall timeout: {:?}",
            started.elapsed()
        );
        drop(stuck);
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_gets_the_whole_answer() {
        let bytes = 16 << 20;
        let stall = Duration::from_secs(1);
        let server = one_place_server(bytes, stall).await;
        let mut reader = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut reader, "/big", false).await;
        // A mebibyte every quarter of the timeout: the whole answer takes several timeouts,
        // but no write waits a whole one. (A socket takes more only once a third or so of
        // its send buffer, a few MiB on loopback, is free: a reader must take that much
        // within the timeout, about 45 KB/s at the default 30 s.)
        let started = Instant::now();
        let mut received = 0;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let mut taken = 0;
            while taken < chunk.len() {
                let read = tokio::io::AsyncReadExt::read(&mut reader, &mut chunk[taken..])
                    .await
                    .expect("reads");
                if read == 0 {
                    break;
                }
                taken += read;
            }
            received += taken;
            if taken < chunk.len() {
                break;
            }
            tokio::time::sleep(stall / 4).await;
        }
        assert!(
            received > bytes,
            "the head and all {bytes} bytes: {received}"
        );
        assert!(started.elapsed() > stall * 2, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_lets_the_request_in_flight_finish() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let router = Router::new().route(
            "/slow",
            get({
                let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
                move || async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }
            }),
        );
        let limits = ConnectionLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: crate::options::DEFAULT_WRITE_STALL_TIMEOUT,
        };
        let mut server = TestServer::router(router, limits).await;
        let address = server.address;
        let in_flight = tokio::spawn(async move { http_get(address, "/slow").await });
        entered.notified().await;

        server.begin_stop();
        // The listener closes: new connections are refused.
        crate::testing::wait_until("the listener is closed", || async {
            TcpStream::connect(address).await.is_err()
        })
        .await;
        release.notify_one();
        let answer = in_flight.await.expect("the client task ends");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"done");
        server.join().await.expect("the server stops cleanly");
    }

    #[tokio::test]
    async fn shutdown_drops_requests_still_running_after_the_grace() {
        let entered = Arc::new(Notify::new());
        let router = Router::new().route(
            "/forever",
            get({
                let entered = Arc::clone(&entered);
                move || async move {
                    entered.notify_one();
                    std::future::pending::<()>().await;
                }
            }),
        );
        let limits = ConnectionLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: SHORT,
            eviction_grace: EVICTION_GRACE,
            write_stall_timeout: crate::options::DEFAULT_WRITE_STALL_TIMEOUT,
        };
        let mut server = TestServer::router(router, limits).await;
        let mut stuck = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut stuck, "/forever", false).await;
        entered.notified().await;
        server.begin_stop();
        server
            .join()
            .await
            .expect("the server stops after its grace");
        wait_closed(&mut stuck).await;
    }
}
