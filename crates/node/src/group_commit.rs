//! Group commit: whoever commits the pool store's queue takes all of it, so writes that
//! queued while a commit ran share the next one, and concurrent submitters share one sync
//! instead of queueing for one each.
//!
//! ```text
//!   submitter ── enqueue(writes) ──▶ queue ──▶ ticket ── wait(ticket): commits the queue
//!   peer, chain ── enqueue_unawaited ──▶ │       itself if no commit runs, else sleeps until
//!                                        │       the commit holding its writes returned
//!                                  writer thread: commits what nobody waits for, when no
//!                                  commit runs
//! ```
//!
//! One commit runs at a time (`committing`): it takes the whole queue, runs `commit` once on
//! it without the queue's lock, and records one outcome for every awaited ticket in it. A
//! lone submitter commits on its own thread (no hand-off); writes nobody waits for (a
//! peer's transaction, a removal) are committed by the writer thread.
//!
//! A ticket is answered exactly once, and only after the commit that held its writes
//! returned: success means they are stored, a failure is given to every ticket of that
//! commit. Writes go to disk in queue order whoever commits them; the failure of writes
//! nobody waits for is only the commit function's to report. Each commit is told whether
//! anyone waits for it ([`CommitKind`]), so writes nobody waits for need not be synced;
//! a queue started with an idle call ([`GroupCommit::start_with_idle_call`]) calls it once
//! more with no writes ([`CommitKind::Idle`]) when that long has passed after its last
//! unawaited commit with nothing queued, so such writes get synced even if nothing follows.
//! Dropping the queue lets the writer commit what is queued, call the commit function a
//! last time ([`CommitKind::Final`]), and joins it.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer lets writes nobody waits for gather before it commits them. A
/// relaying node receives peers' transactions a batch at a time, and every commit copies
/// each B-tree page it touches and writes it out: one commit per `LINGER` instead of one
/// per batch. No acknowledgement waits on it (a waiter commits the queue itself), and
/// stopping commits at once.
const LINGER: Duration = Duration::from_millis(50);

/// What a commit is for, so the commit function can choose what it promises.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CommitKind {
    /// Some writes in it have a waiting submitter: they must be durable when it returns.
    Awaited,
    /// Nobody waits for any write in it.
    Unawaited,
    /// No writes: the queue has stayed empty for the idle interval after a commit nobody
    /// waited for (see [`GroupCommit::start_with_idle_call`]).
    Idle,
    /// The queue is stopping and this is its last call (its writes may be none): make
    /// everything committed so far durable.
    Final,
}

/// One submitter's place in the queue.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Ticket(u64);

impl Ticket {
    /// A place in no queue: what a store that writes nothing hands out (its `wait` returns
    /// at once). Never to be waited for on a [`GroupCommit`].
    pub(crate) const NOWHERE: Ticket = Ticket(u64::MAX);
}

/// Why a ticket's writes were not stored, in words shared by every ticket of the commit
/// that failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct CommitFailed(pub(crate) String);

struct State<W> {
    /// Writes in queue order, each with the ticket that waits for it (if any).
    queue: Vec<(Option<Ticket>, Vec<W>)>,
    outcomes: HashMap<Ticket, Result<(), CommitFailed>>,
    next_ticket: u64,
    /// A commit is running (the writer's or a waiter's).
    committing: bool,
    stopping: bool,
    /// False once the writer has returned: nothing queued later will be committed.
    writer_running: bool,
    /// How long after an unawaited commit an empty queue gets an idle call.
    idle_call: Option<Duration>,
}

/// The commit function, shared by the writer and the waiters that commit themselves.
type CommitFn<W> = Box<dyn FnMut(Vec<W>, CommitKind) -> Result<(), CommitFailed> + Send>;

struct Shared<W> {
    state: Mutex<State<W>>,
    /// Taken by whoever commits (under `committing`, so never contended).
    commit: Mutex<CommitFn<W>>,
    /// The writer sleeps on this while the queue is empty.
    queued: Condvar,
    /// Waiters sleep on this until their ticket has an outcome.
    answered: Condvar,
}

impl<W> Shared<W> {
    /// Runs the commit function; a panic in it is a failed commit.
    fn run_commit(&self, writes: Vec<W>, kind: CommitKind) -> Result<(), CommitFailed> {
        let mut commit = self
            .commit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        panic::catch_unwind(AssertUnwindSafe(|| (*commit)(writes, kind)))
            .unwrap_or_else(|_| Err(CommitFailed("the pool store's commit panicked".into())))
    }

    fn state(&self) -> MutexGuard<'_, State<W>> {
        // Nothing runs foreign code under this lock, so a poisoned state is still whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits the whole queue; `state` has `committing` unset and a non-empty queue. Sets
    /// `committing` while the commit runs without the lock, records the outcome of every
    /// awaited ticket in the batch, and returns the lock and the commit's kind.
    fn commit_queue<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<W>>,
    ) -> (MutexGuard<'a, State<W>>, CommitKind) {
        state.committing = true;
        let batch = std::mem::take(&mut state.queue);
        drop(state);
        let mut tickets = Vec::new();
        let mut writes = Vec::new();
        for (ticket, part) in batch {
            tickets.extend(ticket);
            writes.extend(part);
        }
        let kind = if tickets.is_empty() {
            CommitKind::Unawaited
        } else {
            CommitKind::Awaited
        };
        let outcome = self.run_commit(writes, kind);
        let mut state = self.state();
        state.committing = false;
        for ticket in tickets {
            state.outcomes.insert(ticket, outcome.clone());
        }
        self.answered.notify_all();
        if !state.queue.is_empty() {
            // What queued meanwhile may have nobody waiting to commit it.
            self.queued.notify_one();
        }
        (state, kind)
    }

    /// Calls the commit function with no writes ([`CommitKind::Idle`]); `state` has
    /// `committing` unset. Its failure is the commit function's to report.
    fn idle_call<'a>(&'a self, mut state: MutexGuard<'a, State<W>>) -> MutexGuard<'a, State<W>> {
        state.committing = true;
        drop(state);
        let _ = self.run_commit(Vec::new(), CommitKind::Idle);
        let mut state = self.state();
        state.committing = false;
        self.answered.notify_all();
        if !state.queue.is_empty() {
            self.queued.notify_one();
        }
        state
    }
}

/// A queue of writes and the thread that commits it. See the module documentation.
pub(crate) struct GroupCommit<W> {
    shared: Arc<Shared<W>>,
    writer: Option<JoinHandle<()>>,
}

impl<W: Send + 'static> GroupCommit<W> {
    /// Starts the writer thread, named `name`, committing with `commit`: it gets every
    /// queued write in order, with what the commit is for; a panic in it fails the
    /// commit. Its last call, when the queue is dropped, is [`CommitKind::Final`].
    ///
    /// # Errors
    /// The operating system's, if the thread cannot be started.
    #[cfg(test)]
    pub(crate) fn start(
        name: &str,
        commit: impl FnMut(Vec<W>, CommitKind) -> Result<(), CommitFailed> + Send + 'static,
    ) -> std::io::Result<GroupCommit<W>> {
        Self::start_with_idle_call(name, None, commit)
    }

    /// As [`GroupCommit::start`], and when `idle_call` has passed after an unawaited commit
    /// with nothing queued since, the writer calls `commit` once with no writes and
    /// [`CommitKind::Idle`] (so writes committed without a sync can be synced even if no
    /// other write follows them).
    ///
    /// # Errors
    /// The operating system's, if the thread cannot be started.
    pub(crate) fn start_with_idle_call(
        name: &str,
        idle_call: Option<Duration>,
        commit: impl FnMut(Vec<W>, CommitKind) -> Result<(), CommitFailed> + Send + 'static,
    ) -> std::io::Result<GroupCommit<W>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Vec::new(),
                outcomes: HashMap::new(),
                next_ticket: 0,
                committing: false,
                stopping: false,
                writer_running: true,
                idle_call,
            }),
            commit: Mutex::new(Box::new(commit)),
            queued: Condvar::new(),
            answered: Condvar::new(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || write_loop(&shared))?
        };
        Ok(GroupCommit {
            shared,
            writer: Some(writer),
        })
    }
}

impl<W> GroupCommit<W> {
    /// Queues `writes` for the next commit and returns the ticket to [`GroupCommit::wait`]
    /// on (every ticket must be waited on: its outcome is kept until then). Never blocks
    /// on the disk.
    pub(crate) fn enqueue(&self, writes: Vec<W>) -> Ticket {
        let mut state = self.shared.state();
        let ticket = Ticket(state.next_ticket);
        state.next_ticket += 1;
        state.queue.push((Some(ticket), writes));
        // Not the writer's: the waiter commits it (or the commit running now, then the
        // writer, if that commit leaves it queued). Waking the writer here would race the
        // waiter for the queue and add a thread hand-off to a lone write.
        ticket
    }

    /// Queues `writes` for the next commit; nobody waits for them.
    pub(crate) fn enqueue_unawaited(&self, writes: Vec<W>) {
        if writes.is_empty() {
            return;
        }
        let mut state = self.shared.state();
        let was_empty = state.queue.is_empty();
        state.queue.push((None, writes));
        drop(state);
        // Behind other writes, the writer is already lingering on them (or a commit will
        // call it when it returns).
        if was_empty {
            self.shared.queued.notify_one();
        }
    }

    /// Blocks until the commit holding `ticket`'s writes returned.
    ///
    /// # Errors
    /// [`CommitFailed`] from that commit, or if the writer stopped without committing it.
    pub(crate) fn wait(&self, ticket: Ticket) -> Result<(), CommitFailed> {
        let mut state = self.shared.state();
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if !state.committing && !state.queue.is_empty() {
                // Nobody is committing: commit the queue (ours is in it) here rather than
                // wake the writer, which would add a thread hand-off to every lone write.
                state = self.shared.commit_queue(state).0;
                continue;
            }
            if !state.writer_running && !state.committing {
                return Err(CommitFailed("the pool store's writer has stopped".into()));
            }
            state = self
                .shared
                .answered
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

impl<W> Drop for GroupCommit<W> {
    fn drop(&mut self) {
        self.shared.state().stopping = true;
        self.shared.queued.notify_all();
        if let Some(writer) = self.writer.take() {
            // The writer catches the commit's panics; a join error would be its own bug,
            // and there is nothing left to do about it at drop.
            let _ = writer.join();
        }
    }
}

/// The writer thread: commits whatever is queued while no waiter does, [`LINGER`] after it
/// first found it, makes the idle call when one is due, until stopped with an empty queue.
fn write_loop<W>(shared: &Shared<W>) {
    let mut state = shared.state();
    let mut gathering_since: Option<Instant> = None;
    // When the idle call is due: set by an unawaited commit, cleared by the call.
    let mut idle_due: Option<Instant> = None;
    loop {
        if state.queue.is_empty() || state.committing {
            if state.queue.is_empty() {
                // A waiter took it.
                gathering_since = None;
                if state.stopping && !state.committing {
                    break;
                }
            }
            match idle_due {
                Some(due) if !state.committing && state.queue.is_empty() => {
                    let left = due.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        idle_due = None;
                        state = shared.idle_call(state);
                    } else {
                        state = match shared.queued.wait_timeout(state, left) {
                            Ok((state, _)) => state,
                            Err(poisoned) => poisoned.into_inner().0,
                        };
                    }
                }
                _ => {
                    state = shared
                        .queued
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
            continue;
        }
        if !state.stopping {
            let since = *gathering_since.get_or_insert_with(Instant::now);
            let left = LINGER.saturating_sub(since.elapsed());
            if !left.is_zero() {
                state = match shared.queued.wait_timeout(state, left) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
                continue;
            }
        }
        gathering_since = None;
        let kind;
        (state, kind) = shared.commit_queue(state);
        if kind == CommitKind::Unawaited {
            idle_due = state.idle_call.map(|after| Instant::now() + after);
        }
    }
    state.writer_running = false;
    drop(state);
    shared.answered.notify_all();
    // Nothing is queued and nobody commits any more. Its failure was the commit
    // function's to report.
    let _ = shared.run_commit(Vec::new(), CommitKind::Final);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Barrier;

    use super::*;

    /// Each commit's writes, in commit order.
    type Commits = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A queue whose commits append their writes to the returned list.
    fn recording() -> (GroupCommit<u32>, Commits) {
        let committed = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let log = Arc::clone(&committed);
        let group = GroupCommit::start("test-writer", move |writes, kind| {
            // The last call on drop commits nothing of its own.
            if kind != CommitKind::Final || !writes.is_empty() {
                log.lock().expect("not poisoned").push(writes);
            }
            Ok(())
        })
        .expect("the writer starts");
        (group, committed)
    }

    #[test]
    fn concurrent_submitters_are_each_answered_once_after_their_commit() {
        let (group, committed) = recording();
        let submitters = 32u32;
        let start = Barrier::new(submitters as usize);
        std::thread::scope(|scope| {
            for id in 0..submitters {
                let (group, committed, start) = (&group, &committed, &start);
                scope.spawn(move || {
                    start.wait();
                    let ticket = group.enqueue(vec![id * 2, id * 2 + 1]);
                    assert_eq!(group.wait(ticket), Ok(()));
                    // Answered only once the commit holding our writes returned.
                    let durable =
                        committed.lock().expect("not poisoned").iter().any(|batch| {
                            batch.contains(&(id * 2)) && batch.contains(&(id * 2 + 1))
                        });
                    assert!(durable, "acknowledged before its commit");
                });
            }
        });
        let batches = committed.lock().expect("not poisoned").clone();
        let all: Vec<u32> = batches.iter().flatten().copied().collect();
        assert_eq!(
            all.len(),
            2 * submitters as usize,
            "each write committed once"
        );
        assert_eq!(all.iter().copied().collect::<HashSet<_>>().len(), all.len());
        for batch in &batches {
            for pair in batch.chunks(2) {
                assert_eq!(pair[0] + 1, pair[1], "a submitter's writes stay together");
            }
        }
        assert!(
            group.shared.state().outcomes.is_empty(),
            "every outcome was collected once"
        );
    }

    #[test]
    fn writes_queued_during_a_commit_go_together_into_the_next_in_order() {
        let (in_commit, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let committed = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let group = {
            let (in_commit, release, log) = (
                Arc::clone(&in_commit),
                Arc::clone(&release),
                Arc::clone(&committed),
            );
            GroupCommit::start("test-writer", move |writes: Vec<u32>, _| {
                let first = writes == vec![1];
                log.lock().expect("not poisoned").push(writes);
                if first {
                    in_commit.wait();
                    release.wait();
                }
                Ok(())
            })
            .expect("the writer starts")
        };
        let first = group.enqueue(vec![1]);
        std::thread::scope(|scope| {
            // Its submitter commits it (nothing wakes the writer for an awaited write: had
            // the writer already gone to sleep, waiting here for the commit would hang).
            let submitter = scope.spawn(|| group.wait(first));
            in_commit.wait();
            let second = group.enqueue(vec![2]);
            group.enqueue_unawaited(vec![3]);
            let fourth = group.enqueue(vec![4]);
            release.wait();
            assert_eq!(submitter.join().expect("the submitter"), Ok(()));
            assert_eq!(group.wait(fourth), Ok(()));
            assert_eq!(group.wait(second), Ok(()), "answered by the same commit");
        });
        assert_eq!(
            *committed.lock().expect("not poisoned"),
            vec![vec![1], vec![2, 3, 4]]
        );
    }

    #[test]
    fn a_failed_commit_fails_every_ticket_in_it_and_the_next_commit_runs() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let group = {
            let fail = Arc::clone(&fail);
            GroupCommit::start("test-writer", move |_: Vec<u32>, _| {
                if fail.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(CommitFailed("disk full".into()))
                } else {
                    Ok(())
                }
            })
            .expect("the writer starts")
        };
        let ticket = group.enqueue(vec![1]);
        assert_eq!(group.wait(ticket), Err(CommitFailed("disk full".into())));
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let ticket = group.enqueue(vec![2]);
        assert_eq!(group.wait(ticket), Ok(()));
    }

    #[test]
    fn a_panicking_commit_fails_its_tickets_and_the_next_commit_runs() {
        let group = GroupCommit::start("test-writer", |writes: Vec<u32>, _| {
            assert_ne!(writes, vec![1], "engine bug");
            Ok(())
        })
        .expect("the writer starts");
        let ticket = group.enqueue(vec![1]);
        assert!(group.wait(ticket).is_err());
        let ticket = group.enqueue(vec![2]);
        assert_eq!(group.wait(ticket), Ok(()));
    }

    #[test]
    fn each_commit_is_told_whether_anyone_waits_for_it_and_the_last_says_so() {
        let kinds = Arc::new(Mutex::new(Vec::<(CommitKind, Vec<u32>)>::new()));
        let log = Arc::clone(&kinds);
        let group = GroupCommit::start("test-writer", move |writes, kind| {
            log.lock().expect("not poisoned").push((kind, writes));
            Ok(())
        })
        .expect("the writer starts");
        let ticket = group.enqueue(vec![1]);
        assert_eq!(group.wait(ticket), Ok(()));
        group.enqueue_unawaited(vec![2]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while kinds.lock().expect("not poisoned").len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the writer did not commit within 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let ticket = group.enqueue(vec![3]);
        assert_eq!(group.wait(ticket), Ok(()));
        drop(group);
        assert_eq!(
            *kinds.lock().expect("not poisoned"),
            vec![
                (CommitKind::Awaited, vec![1]),
                (CommitKind::Unawaited, vec![2]),
                (CommitKind::Awaited, vec![3]),
                (CommitKind::Final, vec![]),
            ]
        );
    }

    #[test]
    fn an_unawaited_commit_gets_one_idle_call_once_the_queue_stays_empty() {
        let idle_after = Duration::from_millis(30);
        let calls = Arc::new(Mutex::new(Vec::<(Instant, CommitKind, Vec<u32>)>::new()));
        let log = Arc::clone(&calls);
        let group = GroupCommit::start_with_idle_call(
            "test-writer",
            Some(idle_after),
            move |writes, kind| {
                log.lock()
                    .expect("not poisoned")
                    .push((Instant::now(), kind, writes));
                Ok(())
            },
        )
        .expect("the writer starts");
        let ticket = group.enqueue(vec![1]);
        assert_eq!(group.wait(ticket), Ok(()));
        group.enqueue_unawaited(vec![2]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !calls
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|(_, kind, _)| *kind == CommitKind::Idle)
        {
            assert!(Instant::now() < deadline, "no idle call within 20 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let ticket = group.enqueue(vec![3]);
        assert_eq!(group.wait(ticket), Ok(()));
        drop(group);
        let calls = calls.lock().expect("not poisoned").clone();
        let kinds: Vec<(CommitKind, Vec<u32>)> = calls
            .iter()
            .map(|(_, kind, writes)| (*kind, writes.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (CommitKind::Awaited, vec![1]),
                (CommitKind::Unawaited, vec![2]),
                (CommitKind::Idle, vec![]),
                (CommitKind::Awaited, vec![3]),
                (CommitKind::Final, vec![]),
            ],
            "one idle call, after the unawaited commit only"
        );
        assert!(
            calls[2].0.duration_since(calls[1].0) >= idle_after,
            "the idle call waited out its interval"
        );
    }

    #[test]
    fn dropping_the_queue_commits_what_nobody_waited_for() {
        let (group, committed) = recording();
        for write in 0..100 {
            group.enqueue_unawaited(vec![write]);
        }
        drop(group);
        let all: Vec<u32> = committed
            .lock()
            .expect("not poisoned")
            .iter()
            .flatten()
            .copied()
            .collect();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "all of it, in order");
    }

    #[test]
    fn unawaited_writes_linger_and_go_together_into_one_commit() {
        // Each commit's start and writes.
        let commits = Arc::new(Mutex::new(Vec::<(Instant, Vec<u32>)>::new()));
        let log = Arc::clone(&commits);
        let group = GroupCommit::start("test-writer", move |writes, _| {
            log.lock()
                .expect("not poisoned")
                .push((Instant::now(), writes));
            Ok(())
        })
        .expect("the writer starts");
        let first_queued = Instant::now();
        group.enqueue_unawaited(vec![1]);
        // When each later write was queued (the call had returned).
        let mut queued_at = Vec::new();
        for write in 2..=5 {
            group.enqueue_unawaited(vec![write]);
            queued_at.push((write, Instant::now()));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let (started, batch) = loop {
            if let Some(first) = commits.lock().expect("not poisoned").first().cloned() {
                break first;
            }
            assert!(Instant::now() < deadline, "no commit within 20 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            started.duration_since(first_queued) >= LINGER,
            "the first commit waited out the linger"
        );
        assert_eq!(batch[0], 1);
        for (write, at) in queued_at {
            if at < started {
                assert!(
                    batch.contains(&write),
                    "write {write}, queued before the commit started, went with it"
                );
            }
        }
        drop(group);
    }
}
