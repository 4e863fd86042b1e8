//! Whether a connection is in a request, and since when it has not been: what the
//! table's eviction reads, and what the answer's body and the socket's flushes tell it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::large_reads::Room;

/// Whether a connection is in a request, and since when it has not been.
pub(super) struct Activity {
    /// The request in progress has its answer (its handler has returned).
    pub(super) answered: AtomicBool,
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
    pub(super) crowded_out: CancellationToken,
    /// When it last became idle (opened, or an answer sent), in nanoseconds from `epoch`.
    idle_since_nanos: AtomicU64,
    epoch: Instant,
    /// The table's: told when this connection goes idle.
    changed: Arc<Notify>,
}

impl Activity {
    pub(super) fn new(epoch: Instant, changed: Arc<Notify>) -> Activity {
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
    pub(super) fn busy(&self) -> bool {
        let written = self.written.load(Ordering::Acquire);
        written < self.requests.load(Ordering::Acquire)
    }

    /// It has sent a request head.
    pub(super) fn requested(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// A request's head has arrived: the connection is in a request. Returns its answer's
    /// number. (hyper calls the service, takes bodies and flushes all on the connection's
    /// one task, so these steps never interleave.)
    pub(super) fn request_began(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// hyper has taken the next answer's whole body (or dropped it); it may still hold
    /// some of it unwritten.
    pub(super) fn body_taken(&self) {
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
    pub(super) fn flushed(&self) {
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
    pub(super) fn hold(&self, answer: u64, room: Room) {
        room.held_by(self.crowded_out.clone());
        self.unsent().push((answer, room));
    }

    pub(super) fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.idle_since_nanos.load(Ordering::Relaxed))
    }
}

/// An answer's body that tells its connection when hyper has taken all of it (or dropped
/// it); the connection goes idle at the socket flush after that ([`Activity::flushed`]).
pub(super) struct MarksIdle {
    pub(super) inner: axum::body::Body,
    pub(super) activity: Option<Arc<Activity>>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
