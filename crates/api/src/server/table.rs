//! The open connections and their places: which one a newcomer evicts when every place
//! is taken, or when its address group holds its share, and the newcomers waiting for a
//! group's connection to close.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use powchain_node::AddressGroup;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ConnectionLimits;
use super::activity::Activity;
use crate::group_shares::{GroupShare, GroupShares};

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
pub(super) struct ConnectionTable {
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

/// How long a group's newcomer waits for the group's connection told to close to make room
/// for it. An idle connection closes at once; one whose client sent a request just as it
/// was chosen finishes its answer first, which could take the request timeout: the
/// newcomer is closed instead.
const GROUP_EVICTION_WAIT: Duration = Duration::from_millis(250);

/// Newcomers waiting at once, each holding its socket's file, for their group's connection
/// to close, at most one a group; more make no room and are closed at once.
pub(super) const MAX_GROUP_WAITERS: usize = 8;

/// Files the accept loop may hold beyond its connections' places (9): the newcomer being
/// placed, and the 8 at most waiting for their group's connection to close. The launch's
/// file budget sets them aside.
pub const HTTP_ACCEPT_FILES: usize = MAX_GROUP_WAITERS + 1;

/// The newcomers waiting for their group's connection to close: at most
/// [`MAX_GROUP_WAITERS`], one a group, so groups that keep winning the race against their
/// own newcomers hold one waiter each, not all of them.
pub(super) struct GroupWaiters {
    permits: Arc<tokio::sync::Semaphore>,
    by_group: GroupShares,
}

/// A newcomer's turn to wait; given back when dropped (when the accept loop has taken the
/// newcomer back, or it was closed).
pub(super) type GroupWaiter = (GroupShare, tokio::sync::OwnedSemaphorePermit);

impl GroupWaiters {
    pub(super) fn new() -> GroupWaiters {
        GroupWaiters {
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_GROUP_WAITERS)),
            by_group: GroupShares::default(),
        }
    }

    /// A turn to wait for a newcomer of `group`, if the group has none and one is free.
    pub(super) fn try_wait(&self, group: AddressGroup) -> Option<GroupWaiter> {
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
pub(super) enum GroupPlace {
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
    pub(super) async fn wait_for_place(
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
    pub(super) fn group_place(
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
    pub(super) async fn wait_for_victim(&self, victim: u64) -> bool {
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

    pub(super) fn insert(self: &Arc<Self>, group: AddressGroup) -> TableEntry {
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
pub(super) struct TableEntry {
    table: Arc<ConnectionTable>,
    id: u64,
    pub(super) evict: CancellationToken,
    pub(super) activity: Arc<Activity>,
    pub(super) group: AddressGroup,
}

impl Drop for TableEntry {
    fn drop(&mut self) {
        self.table.open().remove(&self.id);
        self.table.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
