//! Large reads, a few at a time: the endpoints whose answer may run to megabytes (pages of
//! blocks and of the pool, a block, a transaction, an address, the wallet's history and
//! balance, headers and charts) build at most `ApiOptions::max_large_reads` answers at
//! once; the others wait their turn, within the request timeout.
//!
//! ```text
//!   GET /blocks, /transactions, /address/… ──a place free?──yes──▶ handler: read, build
//!                                                  │no                 the answer
//!                                                  ▼                      │
//!                             wait (the request timeout       room among the unsent
//!                             answers 503 after 30 s)         answers? (wait) ──▶ place
//!                                                             freed; the room comes back
//!                                                             once the answer is written
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
//! until then, so no more than the places' worth of large reads ever run.
//!
//! A built answer then waits, still holding its place, for room in the budget of unsent
//! answer bytes (`ApiOptions::max_unsent_answer_bytes`), and goes to its connection with
//! that room ([`UnsentAnswer`]); the server gives the room back once the whole answer has
//! been written to the socket, or when the connection closes (`server.rs`). hyper frees an
//! answer's bytes only when the last of them is written, so the room is held whole until
//! then. What answers cost the node's memory is thus bounded by the budget and the
//! places' answers being built, whether their clients read or not. Without it, clients
//! that asked for 800 KB pages and never read held one each until the write-stall timeout
//! (30 s) closed them: with 512 connections, 400 MB less what the sockets' buffers take.
//!
//! So that clients that read slowly, or not at all, cannot keep the room (and with it
//! every large read) for themselves, an answer that has waited [`WAIT_BEFORE_CLOSING`]
//! for room closes the connection of the oldest answer that has held its room for
//! [`HOLD_BEFORE_CLOSING`]; one connection a [`WAIT_BEFORE_CLOSING`] however many
//! answers wait, then another if they still must. The price: under that pressure, a
//! client slower than about 1.3 Mbit/s for a page of 1,000 blocks (6.7 Mbit/s for a
//! 4 MiB page) is cut off and must ask again. Bitcoin Core's RPC buffers each reply
//! whole, without a bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// How long a built answer waits for room before it closes the connection of an answer
/// that has held its room for [`HOLD_BEFORE_CLOSING`] (and again after each such wait).
pub(crate) const WAIT_BEFORE_CLOSING: Duration = Duration::from_secs(1);
/// How long an answer keeps its room, however slowly its client reads, before another
/// waiting for room may close its connection: a page of 1,000 blocks (800 KB) at about
/// 1.3 Mbit/s.
pub(crate) const HOLD_BEFORE_CLOSING: Duration = Duration::from_secs(5);

/// The places for large reads of one router, and the room for their unsent answers.
#[derive(Clone, Debug)]
pub(crate) struct LargeReads {
    places: Arc<Semaphore>,
    /// Unsent answer bytes, counted in KiB (a permit each).
    unsent: Arc<Semaphore>,
    /// The room's size in KiB: the most one answer waits for.
    unsent_kib: u32,
    holders: Arc<Mutex<Holders>>,
    /// [`HOLD_BEFORE_CLOSING`] (tests shorten it).
    hold_before_closing: Duration,
}

/// The answers that hold room, oldest first (ids grow as they are given room).
#[derive(Debug, Default)]
struct Holders {
    next_id: u64,
    held: BTreeMap<u64, Holder>,
    /// When a connection was last closed for room: one a [`WAIT_BEFORE_CLOSING`], however
    /// many answers wait (one closed answer may make room for all of them).
    last_close: Option<Instant>,
}

#[derive(Debug)]
struct Holder {
    since: Instant,
    /// Closes its connection; set when the server takes the answer.
    close: Option<CancellationToken>,
}

impl LargeReads {
    /// `places` answers built at once (at least one), and `unsent_bytes` of built answers
    /// not yet written (at least 1 KiB).
    pub(crate) fn new(places: usize, unsent_bytes: usize) -> LargeReads {
        let unsent_kib = u32::try_from(unsent_bytes / 1024)
            .unwrap_or(u32::MAX)
            .clamp(1, MAX_UNSENT_KIB);
        LargeReads {
            places: Arc::new(Semaphore::new(places.max(1))),
            unsent: Arc::new(Semaphore::new(unsent_kib as usize)),
            unsent_kib,
            holders: Arc::default(),
            hold_before_closing: HOLD_BEFORE_CLOSING,
        }
    }

    /// Takes every place, until the result is dropped.
    #[cfg(test)]
    pub(crate) fn hold_all(&self) -> tokio::sync::OwnedSemaphorePermit {
        let places = u32::try_from(self.places.available_permits()).expect("few places");
        Arc::clone(&self.places)
            .try_acquire_many_owned(places)
            .expect("free places")
    }

    /// `kib` of room taken at once, as an answer would take it.
    #[cfg(test)]
    pub(crate) fn try_room(&self, kib: u32) -> Option<Room> {
        let permit = Arc::clone(&self.unsent).try_acquire_many_owned(kib).ok()?;
        Some(self.room(permit))
    }

    /// Free room, in KiB.
    #[cfg(test)]
    pub(crate) fn free_kib(&self) -> usize {
        self.unsent.available_permits()
    }

    /// The room `response` needs in KiB: its body's length (or the least it will be, when
    /// that is not known), rounded up, and at most the whole room.
    fn room_for(&self, response: &Response) -> u32 {
        let hint = axum::body::HttpBody::size_hint(response.body());
        let bytes = hint.upper().unwrap_or(hint.lower());
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.unsent_kib)
    }

    fn holders(&self) -> MutexGuard<'_, Holders> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `permit` as an answer's room, held from now.
    fn room(&self, permit: OwnedSemaphorePermit) -> Room {
        let mut holders = self.holders();
        let id = holders.next_id;
        holders.next_id += 1;
        holders.held.insert(
            id,
            Holder {
                since: Instant::now(),
                close: None,
            },
        );
        Room {
            _permit: permit,
            holders: Arc::clone(&self.holders),
            id,
        }
    }

    /// Closes the connection of the oldest answer that has held its room for the hold
    /// time, if any (one not closed already), unless one was closed less than
    /// [`WAIT_BEFORE_CLOSING`] ago.
    fn close_oldest_holder(&self) {
        let now = Instant::now();
        let mut holders = self.holders();
        if holders
            .last_close
            .is_some_and(|last| now < last + WAIT_BEFORE_CLOSING)
        {
            return;
        }
        let oldest = holders.held.values().find(|holder| {
            holder.since + self.hold_before_closing <= now
                && holder
                    .close
                    .as_ref()
                    .is_some_and(|close| !close.is_cancelled())
        });
        if let Some(close) = oldest.and_then(|holder| holder.close.clone()) {
            tracing::debug!(
                "closing the HTTP connection whose answer held unsent room longest, for one \
                 that waits"
            );
            close.cancel();
            holders.last_close = Some(now);
        }
    }
}

/// The most permits a tokio semaphore holds on a 32-bit target (`usize::MAX >> 3`): about
/// 512 GiB of answers.
const MAX_UNSENT_KIB: u32 = (1 << 29) - 1;

/// An answer's room in the budget of unsent answer bytes, given back when dropped.
#[derive(Debug)]
pub(crate) struct Room {
    _permit: OwnedSemaphorePermit,
    holders: Arc<Mutex<Holders>>,
    id: u64,
}

impl Room {
    /// The connection `close` closes holds this room: another answer waiting for room may
    /// close it once the room has been held for the hold time.
    pub(crate) fn held_by(&self, close: CancellationToken) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(holder) = holders.held.get_mut(&self.id) {
            holder.close = Some(close);
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        holders.held.remove(&self.id);
    }
}

/// An answer's [`Room`], carried from a large read to its connection in the answer's
/// extensions; the server takes it out and holds it until the answer is written
/// (`server.rs`). Cloneable, as extensions must be; the room is held once.
#[derive(Clone, Debug)]
pub(crate) struct UnsentAnswer(Arc<Mutex<Option<Room>>>);

impl UnsentAnswer {
    /// The room, if no clone has taken it yet.
    pub(crate) fn take(&self) -> Option<Room> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A large read's place, shared by the request and the work it hands to the blocking pool;
/// free when the last of them lets go.
type Place = Arc<OwnedSemaphorePermit>;

tokio::task_local! {
    /// The place of the large read the current task is answering, if any.
    static PLACE: Place;
}

/// Runs the request once a place is free, holding it until the answer is built and has
/// room among the unsent answers, and the request's blocking work has ended.
pub(crate) async fn in_turn(
    State(places): State<LargeReads>,
    request: Request,
    next: Next,
) -> Response {
    // Neither semaphore is ever closed; answered as a busy node would be, not a panic.
    let busy = || ApiError::unavailable("the node is not answering large reads [busy]");
    let Ok(place) = Arc::clone(&places.places).acquire_owned().await else {
        return busy().into_response();
    };
    let place = Arc::new(place);
    let mut response = PLACE.scope(Arc::clone(&place), next.run(request)).await;
    let needed = places.room_for(&response);
    let mut acquire = std::pin::pin!(Arc::clone(&places.unsent).acquire_many_owned(needed));
    let permit = loop {
        tokio::select! {
            biased;
            acquired = &mut acquire => match acquired {
                Ok(permit) => break permit,
                Err(_) => return busy().into_response(),
            },
            () = tokio::time::sleep(WAIT_BEFORE_CLOSING) => places.close_oldest_holder(),
        }
    };
    drop(place);
    let room = places.room(permit);
    response
        .extensions_mut()
        .insert(UnsentAnswer(Arc::new(Mutex::new(Some(room)))));
    response
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
    use tokio::net::TcpStream;

    use crate::testing::{
        DEADLINE, TestServer, get as http_get, read_answer, send_get, wait_closed, wait_until,
    };

    /// A router whose `/slow` holds its place until `release` is notified, and whose
    /// `/fast` answers at once; both are large reads sharing `places`.
    fn router(places: usize, release: Arc<Notify>, started: Arc<Notify>) -> Router {
        let large =
            axum::middleware::from_fn_with_state(LargeReads::new(places, 1024 * 1024), in_turn);
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
            // Longer than any test's deadline: only the room closes an unread answer.
            write_stall_timeout: Duration::from_secs(60),
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

    /// Far more than the sockets' buffers take: an answer not read stays in the node.
    const LARGE: usize = 64 * 1024 * 1024;

    /// A server whose `/large` is a large read of [`LARGE`] bytes, with room for
    /// `unsent_bytes` of unsent answers held at least `hold` before another may close
    /// them; and the router's large reads, to watch the room.
    async fn large_answers(unsent_bytes: usize, hold: Duration) -> (TestServer, LargeReads) {
        let places = LargeReads {
            hold_before_closing: hold,
            ..LargeReads::new(8, unsent_bytes)
        };
        let large = axum::middleware::from_fn_with_state(places.clone(), in_turn);
        let router = Router::new().route(
            "/large",
            get(|| async { vec![b'x'; LARGE] }).route_layer(large),
        );
        (TestServer::router(router, limits()).await, places)
    }

    /// A client that asks for `/large` and does not read, once its answer holds its room.
    async fn unread_large_answer(server: &TestServer, places: &LargeReads) -> TcpStream {
        let mut unread = TcpStream::connect(server.address).await.expect("connects");
        send_get(&mut unread, "/large", true).await;
        wait_until("the unread answer holds its room", || {
            let free = places.free_kib();
            async move { free < places.unsent_kib as usize }
        })
        .await;
        unread
    }

    /// Waits until all `budget` bytes of room are free again, then stops `server`.
    async fn stop_once_the_room_is_back(
        mut server: TestServer,
        places: &LargeReads,
        budget: usize,
    ) {
        wait_until("every answer's room is back", || {
            let free = places.free_kib();
            async move { free == budget / 1024 }
        })
        .await;
        server.begin_stop();
        server.join().await.expect("the server stops");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_built_answer_waits_for_room_while_another_is_unread() {
        let budget = 80 * 1024 * 1024;
        let (server, places) = large_answers(budget, Duration::from_secs(60)).await;
        let mut unread = unread_large_answer(&server, &places).await;
        // The second's answer is built, but waits for room: nothing is sent to it.
        let address = server.address;
        let second = tokio::spawn(async move { http_get(address, "/large").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "answered past the room of unsent answers"
        );
        // Once the first has read its answer, the second's goes out.
        let first = read_answer(&mut unread).await;
        assert_eq!((first.status, first.body.len()), (200, LARGE));
        let second = tokio::time::timeout(DEADLINE, second)
            .await
            .expect("answered once the first was read")
            .expect("the client task");
        assert_eq!((second.status, second.body.len()), (200, LARGE));
        stop_once_the_room_is_back(server, &places, budget).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unread_answer_gives_its_room_back_when_its_client_leaves() {
        let budget = 80 * 1024 * 1024;
        let (server, places) = large_answers(budget, Duration::from_secs(60)).await;
        let unread = unread_large_answer(&server, &places).await;
        drop(unread);
        stop_once_the_room_is_back(server, &places, budget).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_unread_past_its_hold_is_closed_for_one_that_waits() {
        let budget = 80 * 1024 * 1024;
        let hold = Duration::from_millis(200);
        let (mut server, places) = large_answers(budget, hold).await;
        let mut unread = unread_large_answer(&server, &places).await;
        // Another answer waits for room: after WAIT_BEFORE_CLOSING it closes the unread
        // one's connection (held past its hold), and is answered whole.
        let second = http_get(server.address, "/large").await;
        assert_eq!((second.status, second.body.len()), (200, LARGE));
        wait_closed(&mut unread).await;
        server.begin_stop();
        server.join().await.expect("the server stops");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_a_timeout_cut_keeps_its_place_until_it_ends() {
        // `/stuck` hands the blocking pool work that ends when the test says so.
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let finished = Arc::new(std::sync::Mutex::new(finished));
        let large = axum::middleware::from_fn_with_state(LargeReads::new(1, 1024 * 1024), in_turn);
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
