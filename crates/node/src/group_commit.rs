//! Group commit: submissions that arrive while a durable write is in flight are written
//! together by the next one, so concurrent submitters share one sync instead of queueing
//! for one each.
//!
//! ```text
//!   submitter ── enqueue(writes) ──▶ queue ──▶ ticket
//!       └── wait(ticket, commit): the first waiter that finds no commit in flight becomes
//!           the committer: it takes the whole queue, runs `commit` once on it (no lock
//!           held), and records one outcome for every ticket in it; the others sleep until
//!           their ticket has an outcome
//! ```
//!
//! A ticket is answered exactly once, and only after the commit that held its writes
//! returned: success means they are stored, a failure is given to every ticket of that
//! commit. Writes queued behind a failed commit go into the next one.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard};

/// One submitter's place in the queue.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Ticket(u64);

/// Why a ticket's writes were not made durable, in words shared by every ticket of the
/// commit that failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct CommitFailed(pub(crate) String);

struct Queued<W> {
    ticket: Ticket,
    writes: Vec<W>,
}

struct State<W> {
    queue: Vec<Queued<W>>,
    committing: bool,
    outcomes: HashMap<Ticket, Result<(), CommitFailed>>,
    next_ticket: u64,
}

/// A queue of writes and the one committer draining it. See the module documentation.
pub(crate) struct GroupCommit<W> {
    state: Mutex<State<W>>,
    answered: Condvar,
}

impl<W> GroupCommit<W> {
    pub(crate) fn new() -> GroupCommit<W> {
        GroupCommit {
            state: Mutex::new(State {
                queue: Vec::new(),
                committing: false,
                outcomes: HashMap::new(),
                next_ticket: 0,
            }),
            answered: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<W>> {
        // Nothing runs user code under this lock, so a poisoned state is still whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `writes` for the next commit; never blocks on the disk. Writes are committed
    /// in the order they were queued.
    pub(crate) fn enqueue(&self, writes: Vec<W>) -> Ticket {
        let mut state = self.state();
        let ticket = Ticket(state.next_ticket);
        state.next_ticket += 1;
        state.queue.push(Queued { ticket, writes });
        ticket
    }

    /// Blocks until `ticket`'s writes were committed (or failed), committing the queue with
    /// `commit` whenever no other waiter is. `commit` gets every queued write in order and
    /// runs without this queue's lock; a panic in it fails the commit.
    ///
    /// # Errors
    /// [`CommitFailed`] from the commit that held `ticket`'s writes.
    pub(crate) fn wait(
        &self,
        ticket: Ticket,
        mut commit: impl FnMut(Vec<W>) -> Result<(), CommitFailed>,
    ) -> Result<(), CommitFailed> {
        let mut state = self.state();
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if state.committing {
                // Another waiter is committing: our writes are in its batch or the next.
                state = self
                    .answered
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            if state.queue.is_empty() {
                // Neither answered nor queued: not a ticket of this queue.
                return Err(CommitFailed(format!(
                    "{ticket:?} is unknown to the pool store"
                )));
            }
            state.committing = true;
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            let tickets: Vec<Ticket> = batch.iter().map(|entry| entry.ticket).collect();
            let writes: Vec<W> = batch.into_iter().flat_map(|entry| entry.writes).collect();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| commit(writes)))
                .unwrap_or_else(|_| Err(CommitFailed("the pool store's commit panicked".into())));
            state = self.state();
            state.committing = false;
            for ticket in tickets {
                state.outcomes.insert(ticket, outcome.clone());
            }
            self.answered.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Barrier};

    use super::*;

    #[test]
    fn concurrent_submitters_share_commits_and_each_is_answered_once_after_its_commit() {
        let group = Arc::new(GroupCommit::<u32>::new());
        let committed = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let submitters = 32u32;
        let start = Arc::new(Barrier::new(submitters as usize));
        let handles: Vec<_> = (0..submitters)
            .map(|id| {
                let (group, committed, start) = (
                    Arc::clone(&group),
                    Arc::clone(&committed),
                    Arc::clone(&start),
                );
                std::thread::spawn(move || {
                    start.wait();
                    let ticket = group.enqueue(vec![id * 2, id * 2 + 1]);
                    let outcome = group.wait(ticket, |writes| {
                        committed.lock().expect("not poisoned").push(writes);
                        Ok(())
                    });
                    // Answered only once the commit holding our writes returned.
                    let durable =
                        committed.lock().expect("not poisoned").iter().any(|batch| {
                            batch.contains(&(id * 2)) && batch.contains(&(id * 2 + 1))
                        });
                    (outcome, durable)
                })
            })
            .collect();
        for handle in handles {
            let (outcome, durable) = handle.join().expect("a submitter finished");
            assert_eq!(outcome, Ok(()));
            assert!(durable, "acknowledged before its commit");
        }
        let batches = committed.lock().expect("not poisoned");
        let all: Vec<u32> = batches.iter().flatten().copied().collect();
        assert_eq!(
            all.len(),
            2 * submitters as usize,
            "each write committed once"
        );
        assert_eq!(all.iter().copied().collect::<HashSet<_>>().len(), all.len());
        for batch in batches.iter() {
            for pair in batch.chunks(2) {
                assert_eq!(pair[0] + 1, pair[1], "a submitter's writes stay together");
            }
        }
        let state = group.state();
        assert!(
            state.outcomes.is_empty(),
            "every outcome was collected once"
        );
        assert!(state.queue.is_empty() && !state.committing);
    }

    #[test]
    fn writes_queued_during_a_commit_go_together_into_the_next() {
        let group = Arc::new(GroupCommit::<u32>::new());
        let first = group.enqueue(vec![1]);
        let (in_commit, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let committer = {
            let (group, in_commit, release) = (
                Arc::clone(&group),
                Arc::clone(&in_commit),
                Arc::clone(&release),
            );
            std::thread::spawn(move || {
                group.wait(first, |writes| {
                    assert_eq!(writes, vec![1]);
                    in_commit.wait();
                    release.wait();
                    Ok(())
                })
            })
        };
        in_commit.wait();
        let second = group.enqueue(vec![2]);
        let third = group.enqueue(vec![3]);
        release.wait();
        assert_eq!(committer.join().expect("committed"), Ok(()));
        let batches = Mutex::new(Vec::new());
        let commit = |writes: Vec<u32>| {
            batches.lock().expect("not poisoned").push(writes);
            Ok(())
        };
        assert_eq!(group.wait(second, commit), Ok(()));
        assert_eq!(group.wait(third, commit), Ok(()), "already answered");
        assert_eq!(*batches.lock().expect("not poisoned"), vec![vec![2, 3]]);
    }

    #[test]
    fn a_failed_commit_fails_every_ticket_in_it_and_the_next_commit_runs() {
        let group = GroupCommit::<u32>::new();
        let tickets: Vec<Ticket> = (0..3).map(|id| group.enqueue(vec![id])).collect();
        let failure = CommitFailed("disk full".into());
        let mut behind = None;
        let outcome = group.wait(tickets[0], |writes| {
            assert_eq!(writes, vec![0, 1, 2]);
            behind = Some(group.enqueue(vec![9]));
            Err(failure.clone())
        });
        assert_eq!(outcome, Err(failure.clone()));
        let never = |_: Vec<u32>| -> Result<(), CommitFailed> { panic!("nothing left to commit") };
        for ticket in &tickets[1..] {
            assert_eq!(group.wait(*ticket, never), Err(failure.clone()));
        }
        let behind = behind.expect("queued during the commit");
        let mut committed = Vec::new();
        let outcome = group.wait(behind, |writes| {
            committed = writes;
            Ok(())
        });
        assert_eq!(
            outcome,
            Ok(()),
            "queued behind the failure, written by the next"
        );
        assert_eq!(committed, vec![9]);
    }

    #[test]
    fn a_panicking_commit_fails_its_tickets_and_the_next_commit_runs() {
        let group = GroupCommit::<u32>::new();
        let ticket = group.enqueue(vec![1]);
        let outcome = group.wait(ticket, |_| panic!("engine bug"));
        assert!(outcome.is_err());
        let ticket = group.enqueue(vec![2]);
        assert_eq!(group.wait(ticket, |_| Ok(())), Ok(()));
    }
}
