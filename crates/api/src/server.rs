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

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use powchain_node::AddressGroup;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::group_shares::{GroupShare, GroupShares};
use crate::large_reads::{Room, UnsentAnswer};

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

/// The open connections, oldest first, each with when it was last active and whether it
/// is in a request (from its head until its answer has been sent).
///
/// When every place is taken, a new connection takes the place of one not in a request
/// that has been idle for the eviction grace: first the oldest that has not sent a whole
/// request head (dribbling its headers, or sending nothing), then the longest idle of the
/// kept-alive ones between requests. So neither stalled clients nor clients that keep
/// connections open with a small request now and then can keep an honest client waiting:
/// the honest one sends its request at once, and idle ones go first. The grace keeps a burst of newcomers from
/// evicting an honest connection before its task has read the request waiting in its
/// socket, or between a client's requests. When the only idle connections have been idle
/// for less than the grace, accepting waits until the oldest has not. Connections in a
/// request (one being answered, an event stream) are never evicted; when all places hold
/// such connections, accepting pauses until one closes or goes idle (each is bounded by
/// the request timeout, event streams by their own cap), and new connections wait in the
/// kernel's listen queue, costing the node no file. One connection at a time is told to
/// close for a newcomer (besides one of a group's that its newcomer gave up on).
struct ConnectionTable {
    open: Mutex<BTreeMap<u64, OpenConnection>>,
    next_id: AtomicU64,
    /// Notified when a connection closes or goes idle: a place may be had.
    changed: Arc<Notify>,
    /// What connections' idle times count from.
    epoch: Instant,
}

impl Default for ConnectionTable {
    fn default() -> ConnectionTable {
        ConnectionTable {
            open: Mutex::default(),
            next_id: AtomicU64::default(),
            changed: Arc::default(),
            epoch: Instant::now(),
        }
    }
}

struct OpenConnection {
    evict: CancellationToken,
    activity: Arc<Activity>,
    /// Where its client is.
    group: AddressGroup,
    /// Told to close for a newcomer of its group ([`ConnectionTable::group_place`]), which
    /// waited for it at most [`GROUP_EVICTION_WAIT`]: the table's own eviction does not
    /// wait for it.
    evicted_for_group: AtomicBool,
}

/// Whether a connection is in a request, and since when it has not been.
struct Activity {
    /// The request in progress has its answer (its handler has returned).
    answered: AtomicBool,
    /// Requests begun on this connection; the n-th request's answer is answer n.
    requests: AtomicU64,
    /// Answers written to the socket (all bodies taken up to then, and flushed): the
    /// connection is in a request while fewer than `requests`.
    written: AtomicU64,
    /// Answers whose whole body hyper has taken (or dropped), in order; the connection is
    /// idle once every answer's has been taken and written (at the next socket flush).
    bodies_taken: AtomicU64,
    /// Room in the budget of unsent answer bytes its answers hold (`large_reads.rs`), by
    /// answer: given back once the answer has been written, or when the connection closes.
    unsent: Mutex<Vec<(u64, Room)>>,
    /// Closes the connection: another answer waited for room while this one's answer
    /// held its room too long (`large_reads.rs`).
    crowded_out: CancellationToken,
    /// When it last became idle (opened, or an answer sent), in nanoseconds from `epoch`.
    idle_since_nanos: AtomicU64,
    epoch: Instant,
    /// The table's: told when this connection goes idle.
    changed: Arc<Notify>,
}

impl Activity {
    fn new(epoch: Instant, changed: Arc<Notify>) -> Activity {
        let activity = Activity {
            answered: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            written: AtomicU64::new(0),
            bodies_taken: AtomicU64::new(0),
            unsent: Mutex::default(),
            crowded_out: CancellationToken::new(),
            idle_since_nanos: AtomicU64::new(0),
            epoch,
            changed,
        };
        activity.mark_idle();
        activity
    }

    fn mark_idle(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.idle_since_nanos.store(nanos, Ordering::Relaxed);
        self.answered.store(false, Ordering::Release);
    }

    /// In a request: from its head until its answer has left for the socket (hyper has
    /// taken its whole body, or dropped it, and written everything it buffered). Reads
    /// `written` first, so a request beginning meanwhile reads as busy, never as idle.
    fn busy(&self) -> bool {
        let written = self.written.load(Ordering::Acquire);
        written < self.requests.load(Ordering::Acquire)
    }

    /// It has sent a request head.
    fn requested(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// A request's head has arrived: the connection is in a request. Returns its answer's
    /// number. (hyper calls the service, takes bodies and flushes all on the connection's
    /// one task, so these steps never interleave.)
    fn request_began(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// hyper has taken the next answer's whole body (or dropped it); it may still hold
    /// some of it unwritten.
    fn body_taken(&self) {
        self.bodies_taken.fetch_add(1, Ordering::AcqRel);
    }

    /// hyper flushed the socket, which it does only once everything it buffered has been
    /// written to it: the room of every answer whose body it had taken is given back, and
    /// if that is every answer begun, the connection is idle again (a newcomer waiting for
    /// a place may take this one, after the grace). Only now: an answer handed to hyper
    /// but not yet written (to a client that does not read, say) still holds its memory,
    /// and its client is not idle (docs/SECURITY.md, items 70 and 78). A pipelined request
    /// may begin before the last answer's flush; that flush gives back the last answer's
    /// room, but is not the new request's end.
    fn flushed(&self) {
        let taken = self.bodies_taken.load(Ordering::Acquire);
        self.unsent().retain(|(answer, _)| *answer > taken);
        if taken == self.requests.load(Ordering::Acquire)
            && self.written.load(Ordering::Acquire) < taken
        {
            self.written.store(taken, Ordering::Release);
            self.mark_idle();
            self.changed.notify_waiters();
        }
    }

    fn unsent(&self) -> MutexGuard<'_, Vec<(u64, Room)>> {
        self.unsent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer number `answer` holds `room` until it has been written.
    fn hold(&self, answer: u64, room: Room) {
        room.held_by(self.crowded_out.clone());
        self.unsent().push((answer, room));
    }

    fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.idle_since_nanos.load(Ordering::Relaxed))
    }
}

/// An answer's body that tells its connection when hyper has taken all of it (or dropped
/// it); the connection goes idle at the socket flush after that ([`Activity::flushed`]).
struct MarksIdle {
    inner: axum::body::Body,
    activity: Option<Arc<Activity>>,
}

impl MarksIdle {
    fn done(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.body_taken();
        }
    }
}

impl Drop for MarksIdle {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for MarksIdle {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(context);
        if let std::task::Poll::Ready(None) = polled {
            self.done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long a group's newcomer waits for the group's connection told to close to make room
/// for it. An idle connection closes at once; one whose client sent a request just as it
/// was chosen finishes its answer first, which could take the request timeout: the
/// newcomer is closed instead.
const GROUP_EVICTION_WAIT: Duration = Duration::from_millis(250);

/// Newcomers waiting at once, each holding its socket's file, for their group's connection
/// to close, at most one a group; more make no room and are closed at once.
const MAX_GROUP_WAITERS: usize = 8;

/// Files the accept loop may hold beyond its connections' places (9): the newcomer being
/// placed, and the 8 at most waiting for their group's connection to close. The launch's
/// file budget sets them aside.
pub const HTTP_ACCEPT_FILES: usize = MAX_GROUP_WAITERS + 1;

/// The newcomers waiting for their group's connection to close: at most
/// [`MAX_GROUP_WAITERS`], one a group, so groups that keep winning the race against their
/// own newcomers hold one waiter each, not all of them.
struct GroupWaiters {
    permits: Arc<tokio::sync::Semaphore>,
    by_group: GroupShares,
}

/// A newcomer's turn to wait; given back when dropped (when the accept loop has taken the
/// newcomer back, or it was closed).
type GroupWaiter = (GroupShare, tokio::sync::OwnedSemaphorePermit);

impl GroupWaiters {
    fn new() -> GroupWaiters {
        GroupWaiters {
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_GROUP_WAITERS)),
            by_group: GroupShares::default(),
        }
    }

    /// A turn to wait for a newcomer of `group`, if the group has none and one is free.
    fn try_wait(&self, group: AddressGroup) -> Option<GroupWaiter> {
        self.by_group
            .try_take(group, 1, || {
                Arc::clone(&self.permits).try_acquire_owned().ok()
            })
            .ok()
            .flatten()
    }
}

/// The connection among `candidates` whose place a newcomer takes: of those not in a
/// request that have been idle for `grace`, the oldest that never sent a request head
/// (dribbling its headers, or sending nothing), else the one idle longest. `Err` with the
/// instant the first of them will have been idle for its grace if none has yet (`None` if
/// every candidate is in a request).
fn eviction_candidate<'a>(
    candidates: impl Iterator<Item = (&'a u64, &'a OpenConnection)>,
    grace: Duration,
    now: Instant,
) -> Result<(u64, &'a OpenConnection), Option<Instant>> {
    let mut soonest: Option<Instant> = None;
    // The victim so far, and its place in the order: never sent a request head first,
    // then idle longest.
    let mut victim: Option<(u64, &OpenConnection)> = None;
    let mut victim_order = (true, now);
    for (id, connection) in candidates.filter(|(_, connection)| connection.evictable()) {
        let idle_since = connection.activity.idle_since();
        let graced = idle_since + grace;
        if graced > now {
            soonest = Some(soonest.map_or(graced, |soonest| soonest.min(graced)));
            continue;
        }
        let order = (connection.activity.requested(), idle_since);
        if victim.is_none() || order < victim_order {
            victim = Some((*id, connection));
            victim_order = order;
        }
    }
    victim.ok_or(soonest)
}

/// Whether a connection can have a place of its address group's.
enum GroupPlace {
    /// The group holds fewer than its share.
    Free,
    /// This connection of the group (its id) was told to close to make room: wait for it.
    Closing(u64),
    /// Every connection of the group is in a request, idle for less than the grace, or
    /// told to close already.
    Full,
}

/// Whether a connection can have a place.
enum Place {
    /// A place is free.
    Free,
    /// Not yet: wait until a connection closes, or until this instant, when the oldest
    /// connection without a request has had its grace.
    Wait(Option<Instant>),
}

impl OpenConnection {
    /// Not in a request (its last answer, if any, has been written to the socket), and not
    /// already told to close.
    fn evictable(&self) -> bool {
        !self.activity.busy() && !self.evict.is_cancelled()
    }
}

impl ConnectionTable {
    fn open(&self) -> MutexGuard<'_, BTreeMap<u64, OpenConnection>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether one more connection can have a place at `now`: `Free` if one is free, or
    /// (with `evict`) once the oldest connection not in a request that has been idle for
    /// its `grace` is told to close; its place is free when its task has closed it (and `changed` is
    /// notified), so the open files never exceed the cap. Without `evict`, `Free` also when
    /// such a connection exists (the accept loop asks before it accepts).
    fn place(&self, max: usize, grace: Duration, now: Instant, evict: bool) -> Place {
        let open = self.open();
        if open.len() < max {
            return Place::Free;
        }
        // One told to close is still closing (finishing an answer): its place is the
        // newcomer's once it has, and no second connection goes for the same newcomer.
        // One the group's eviction chose stays out of this: its newcomer gave up on it.
        if open.values().any(|connection| {
            connection.evict.is_cancelled() && !connection.evicted_for_group.load(Ordering::Acquire)
        }) {
            return Place::Wait(None);
        }
        match eviction_candidate(open.iter(), grace, now) {
            Err(soonest) => Place::Wait(soonest),
            Ok(_) if !evict => Place::Free,
            Ok((_, victim)) => {
                victim.evict.cancel();
                tracing::debug!("closing the oldest idle HTTP connection to make room");
                Place::Wait(None)
            }
        }
    }

    /// Waits until `place` says `Free` (true), or until `shutdown` completes (false; it must
    /// not be polled again).
    async fn wait_for_place(
        &self,
        limits: &ConnectionLimits,
        evict: bool,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let max = limits.max_connections.max(1);
        loop {
            let closed = self.changed.notified();
            let until = match self.place(max, limits.eviction_grace, Instant::now(), evict) {
                Place::Free => return true,
                Place::Wait(until) => until,
            };
            let graced = async {
                match until {
                    Some(instant) => tokio::time::sleep_until(instant).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = closed => {}
                () = graced => {}
                () = shutdown.as_mut() => return false,
            }
        }
    }

    /// Whether a connection of `group` can have one of the group's `max` places at `now`
    /// (the operator's own group always can). A full group makes room as the table does
    /// when full ([`ConnectionTable::place`]), but only among its own connections: the
    /// oldest of them not in a request that has been idle for `grace` (those that never
    /// sent a request head first) is told to close, and `Closing` names it. So a
    /// stranger's silent or idle connections cannot keep the rest of its group out, and
    /// its connections in a request keep their places. A connection told to close earlier
    /// and still open is no candidate: the newcomer that chose it gave up on it.
    fn group_place(
        &self,
        group: AddressGroup,
        max: usize,
        grace: Duration,
        now: Instant,
        evict: bool,
    ) -> GroupPlace {
        if !group.is_capped() {
            return GroupPlace::Free;
        }
        let open = self.open();
        let members: Vec<(&u64, &OpenConnection)> = open
            .iter()
            .filter(|(_, connection)| connection.group == group)
            .collect();
        if members.len() < max {
            return GroupPlace::Free;
        }
        if !evict {
            return GroupPlace::Full;
        }
        match eviction_candidate(members.into_iter(), grace, now) {
            Ok((id, victim)) => {
                victim.evicted_for_group.store(true, Ordering::Release);
                victim.evict.cancel();
                tracing::debug!(%group, "closing an idle HTTP connection of a group that holds its share of the places");
                GroupPlace::Closing(id)
            }
            Err(_) => GroupPlace::Full,
        }
    }

    /// Waits at most [`GROUP_EVICTION_WAIT`] for connection `victim`, told to close for a
    /// newcomer of its group, to leave the table: true if it has.
    async fn wait_for_victim(&self, victim: u64) -> bool {
        let deadline = Instant::now() + GROUP_EVICTION_WAIT;
        loop {
            let closed = self.changed.notified();
            if !self.open().contains_key(&victim) {
                return true;
            }
            tokio::select! {
                () = closed => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    fn insert(self: &Arc<Self>, group: AddressGroup) -> TableEntry {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = CancellationToken::new();
        let activity = Arc::new(Activity::new(self.epoch, Arc::clone(&self.changed)));
        self.open().insert(
            id,
            OpenConnection {
                evict: evict.clone(),
                activity: Arc::clone(&activity),
                group,
                evicted_for_group: AtomicBool::new(false),
            },
        );
        TableEntry {
            table: Arc::clone(self),
            id,
            evict,
            activity,
            group,
        }
    }
}

/// A connection's entry in the table, removed when dropped.
struct TableEntry {
    table: Arc<ConnectionTable>,
    id: u64,
    evict: CancellationToken,
    activity: Arc<Activity>,
    group: AddressGroup,
}

/// The address group of the client that sent a request: an extension of every request the
/// server hands the router, for limits that count per group (`events.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientGroup(pub(crate) AddressGroup);

impl Drop for TableEntry {
    fn drop(&mut self) {
        self.table.open().remove(&self.id);
        self.table.changed.notify_waiters();
    }
}

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

/// A connection whose writes may wait at most `timeout` for the client to read: a client
/// that asks for an answer larger than the sockets' buffers and then stops reading would
/// otherwise hold its connection, its place and the rest of its answer for as long as it
/// stays connected. Any progress restarts the wait, so a slow reader is served; one that
/// reads nothing for the whole timeout gets `TimedOut`, and hyper drops the connection.
/// The wait is a timer polled with the write, so hyper's task wakes when it runs out.
///
/// It also tells the connection's [`Activity`] when the socket has been flushed, which is
/// when an answer hyper has taken has also been written ([`Activity::flushed`]).
struct WriteStallGuard<S> {
    inner: S,
    timeout: Duration,
    /// Runs out `timeout` after the first write that could not proceed, until one does.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    activity: Arc<Activity>,
}

impl<S> WriteStallGuard<S> {
    fn new(inner: S, timeout: Duration, activity: Arc<Activity>) -> WriteStallGuard<S> {
        WriteStallGuard {
            inner,
            timeout,
            stalled: None,
            activity,
        }
    }

    /// Passes on a write's result; a pending one starts (or keeps) the stall timer, and
    /// fails once the timer has run out.
    fn watch<T>(
        &mut self,
        result: std::task::Poll<io::Result<T>>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<T>> {
        use std::task::Poll;
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                tracing::debug!(
                    ?timeout,
                    "closing an HTTP connection whose client stopped reading"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {} ms", timeout.as_millis()),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteStallGuard<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteStallGuard<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(result, cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.inner).poll_flush(cx);
        if let std::task::Poll::Ready(Ok(())) = result {
            this.activity.flushed();
        }
        this.watch(result, cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(result, cx)
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
    async fn a_group_s_newcomer_waits_a_bounded_time_for_the_connection_told_to_close() {
        let table = Arc::new(ConnectionTable::default());
        let group = AddressGroup::V4([127, 9]);
        let now = tokio::time::Instant::now;
        // The group's one connection (its share of 8 places), idle: told to close, it
        // never does (its client began a request as it was chosen, say).
        let held = table.insert(group);
        let GroupPlace::Closing(victim) = table.group_place(group, 1, Duration::ZERO, now(), true)
        else {
            panic!("the group's idle connection makes room");
        };
        assert!(held.evict.is_cancelled(), "told to close");
        let started = now();
        let closed = tokio::time::timeout(Duration::from_secs(10), table.wait_for_victim(victim))
            .await
            .expect("the wait is bounded");
        assert!(!closed, "the newcomer gives up");
        assert!(started.elapsed() >= GROUP_EVICTION_WAIT);
        // The next newcomer of the group is refused at once, without a wait: the one told
        // to close is no candidate again, and there is no other.
        assert!(matches!(
            table.group_place(group, 1, Duration::ZERO, now(), true),
            GroupPlace::Full
        ));
        // Nor does the table's own eviction wait for it when every place is taken: it
        // chooses a connection of its own.
        let others: Vec<TableEntry> = (0..7)
            .map(|index| table.insert(AddressGroup::V4([10, index])))
            .collect();
        assert!(matches!(
            table.place(8, Duration::ZERO, now(), true),
            Place::Wait(None)
        ));
        assert_eq!(
            others
                .iter()
                .filter(|entry| entry.evict.is_cancelled())
                .count(),
            1,
            "another connection was told to close"
        );
        drop(others);
        // A waiter sees the connection leave as it closes; its group then has a place.
        let waiter = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.wait_for_victim(victim).await }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiter.await.expect("the waiter"), "seen to close");
        assert!(matches!(
            table.group_place(group, 1, Duration::ZERO, now(), true),
            GroupPlace::Free
        ));
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

    #[test]
    fn the_room_of_an_unsent_answer_comes_back_once_it_is_written() {
        let places = crate::large_reads::LargeReads::new(1, 10 * 1024);
        let activity = Activity::new(tokio::time::Instant::now(), Arc::default());
        let first = activity.request_began();
        activity.hold(first, places.try_room(4).expect("free room"));
        assert_eq!(places.free_kib(), 6);
        activity.flushed();
        assert_eq!(places.free_kib(), 6, "its body was not all taken yet");
        assert!(activity.busy());
        activity.body_taken();
        assert_eq!(places.free_kib(), 6, "taken but not yet written");
        // A pipelined request begins before the first answer's flush.
        let second = activity.request_began();
        activity.hold(second, places.try_room(5).expect("free room"));
        activity.flushed();
        assert_eq!(places.free_kib(), 5, "the first answer's room is back");
        assert!(activity.busy(), "but the second request is not over");
        activity.body_taken();
        activity.flushed();
        assert_eq!(places.free_kib(), 10);
        assert!(!activity.busy(), "idle");
        // A connection that closes gives back what it holds.
        let third = activity.request_began();
        activity.hold(third, places.try_room(4).expect("free room"));
        assert_eq!(places.free_kib(), 6);
        drop(activity);
        assert_eq!(places.free_kib(), 10);
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
