//! The writing half of a session: messages wait in a queue bounded by bytes, and a task
//! of their own writes them, so a session keeps reading while its peer is slow to read.
//!
//! ```text
//!   session ──send(message)──▶ room in the queue? ──▶ queue ──▶ writer task ──▶ WebSocket
//!        (waits only while MAX_QUEUED_BYTES are queued)     └─ a write stuck for the
//!                                                             ping timeout, or failed:
//!                                                             the session ends
//! ```
//!
//! When a session wrote its messages itself, it read nothing while a write waited for the
//! peer to read; two peers sending each other more than the network buffers hold (a node
//! catching up after a partition asks for blocks while it serves its pool) each waited
//! on the other until the write deadline ended the connection, 30 s later
//! (docs/SIMULATION.md, "Scenarios"). Now both keep reading; a session waits in `send`
//! only when its peer has not taken [`MAX_QUEUED_BYTES`] already, the same bound Bitcoin
//! Core puts on a peer's send buffer before it stops answering it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::task::TaskTracker;

use crate::session_end::CloseReason;

/// Bytes of messages queued for one peer at most before `send` waits (a larger message is
/// still queued alone once the queue is empty): with 32 inbound and 8 outbound peers, 80 MiB
/// at most.
pub(crate) const MAX_QUEUED_BYTES: usize = 2 * 1024 * 1024;

/// What the writer task is given.
enum Outgoing {
    /// An encoded protocol message, sent as one binary frame.
    Message(Vec<u8>),
    /// A close frame (with a reason, or none), then the end.
    Close(Option<CloseFrame>),
}

/// What the session and its writer share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken when bytes leave the queue or the writer stops (a sender waiting for room).
    changed: Notify,
    /// Woken only when the writer stops (the session's loop waits on it all the time; if
    /// every write woke it, each message sent would cost the session a wake-up and a poll
    /// of all it waits on).
    stopped: Notify,
}

#[derive(Default)]
struct State {
    queued: usize,
    /// The writer stopped on its own.
    stopped: bool,
    /// Why, until the session takes it.
    failed: Option<CloseReason>,
}

impl State {
    /// Why the writer stopped, if it has (the reason is handed out once).
    fn stopped(&mut self) -> Option<CloseReason> {
        self.stopped
            .then(|| self.failed.take().unwrap_or(CloseReason::Lost))
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn written(&self, bytes: usize) {
        let mut state = self.state();
        state.queued = state.queued.saturating_sub(bytes);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Resolves once the writer stopped on its own, with why; woken by nothing else.
    async fn failed(&self) -> CloseReason {
        loop {
            let stopped = self.stopped.notified();
            if let Some(reason) = self.state().stopped() {
                return reason;
            }
            stopped.await;
        }
    }

    fn fail(&self, reason: CloseReason) {
        let mut state = self.state();
        state.stopped = true;
        state.failed = Some(reason);
        drop(state);
        self.changed.notify_waiters();
        self.stopped.notify_waiters();
    }
}

/// A session's queue of messages to its peer, and the task that writes them.
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
    writer: tokio::task::JoinHandle<()>,
}

impl Outbox {
    /// Starts the writer over `sink` on `tasks`; a batch of frames (a single frame, or those
    /// queued together, up to 256 KiB) that takes longer than `write_timeout` to leave ends
    /// it (the peer stopped reading).
    pub(crate) fn start<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        sink: SplitSink<WebSocketStream<S>, Frame>,
        write_timeout: Duration,
        tasks: &TaskTracker,
    ) -> Outbox {
        let (queue, frames) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let writer = tasks.spawn(write_loop(sink, frames, Arc::clone(&shared), write_timeout));
        Outbox {
            queue,
            shared,
            writer,
        }
    }

    /// Queues an encoded message, waiting while the queue is full; an error once the
    /// writer has stopped, with why.
    pub(crate) async fn send(&self, bytes: Vec<u8>) -> Result<(), CloseReason> {
        let length = bytes.len();
        loop {
            let changed = self.shared.changed.notified();
            {
                let mut state = self.shared.state();
                if let Some(reason) = state.stopped() {
                    return Err(reason);
                }
                if state.queued == 0 || state.queued + length <= MAX_QUEUED_BYTES {
                    state.queued += length;
                    break;
                }
            }
            changed.await;
        }
        self.queue
            .send(Outgoing::Message(bytes))
            .map_err(|_| CloseReason::Dropped)
    }

    /// Resolves when the writer has stopped on its own, with why (never while it runs).
    /// It owns what it waits on, so a session keeps one future across its whole loop
    /// instead of making one each time round.
    pub(crate) fn failure(&self) -> impl Future<Output = CloseReason> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move { shared.failed().await }
    }

    /// Sends what is queued, then `frame` (a close frame) and closes, within `within`;
    /// after that the writer is stopped whatever it was doing.
    pub(crate) async fn close(self, frame: Option<CloseFrame>, within: Duration) {
        let Outbox { queue, writer, .. } = self;
        let _ = queue.send(Outgoing::Close(frame));
        drop(queue);
        let abort = writer.abort_handle();
        if tokio::time::timeout(within, writer).await.is_err() {
            abort.abort();
        }
    }
}

/// Bytes of queued messages written together at most: the messages already queued when
/// the writer wakes go out in one flush (a relaying node sends thousands of small messages a
/// second; one write each cost a system call and a TCP segment apiece), up to this much.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Writes queued messages in order until the queue closes, a close is asked for, or a
/// write fails or a batch outlasts `write_timeout`. The messages queued when the writer
/// wakes (up to [`WRITE_BATCH_BYTES`]) are written with one flush.
async fn write_loop<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut sink: SplitSink<WebSocketStream<S>, Frame>,
    mut frames: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
    write_timeout: Duration,
) {
    while let Some(first) = frames.recv().await {
        let mut batch_bytes = 0;
        let mut close = None;
        let written = tokio::time::timeout(write_timeout, async {
            let mut next = Some(first);
            while let Some(outgoing) = next.take() {
                match outgoing {
                    Outgoing::Message(bytes) => {
                        batch_bytes += bytes.len();
                        sink.feed(Frame::binary(bytes)).await?;
                    }
                    Outgoing::Close(frame) => {
                        close = Some(frame);
                        break;
                    }
                }
                if batch_bytes < WRITE_BATCH_BYTES {
                    next = frames.try_recv().ok();
                }
            }
            sink.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => shared.written(batch_bytes),
            Ok(Err(error)) => {
                shared.fail(CloseReason::Transport(error));
                return;
            }
            Err(_) => {
                shared.fail(CloseReason::WriteTimeout);
                return;
            }
        }
        if let Some(frame) = close {
            if let Some(frame) = frame {
                let _ = sink.send(Frame::Close(Some(frame))).await;
            }
            let _ = sink.close().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use futures_util::StreamExt;
    use tokio::io::ReadBuf;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    /// A TCP stream that counts its flushes.
    struct Counting {
        stream: TcpStream,
        flushes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.stream).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.stream).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.stream).poll_shutdown(cx)
        }
    }

    /// Counts the times it is woken.
    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_session_s_wait_for_its_writer_to_stop_is_woken_by_the_stop_alone() {
        let shared = Shared::default();
        let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut context = Context::from_waker(&waker);
        let mut failed = Box::pin(shared.failed());
        assert!(failed.as_mut().poll(&mut context).is_pending());
        // Messages leaving (each wakes a sender waiting for room) do not wake the session.
        for _ in 0..100 {
            shared.written(10);
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "woken by writes");
        shared.fail(CloseReason::WriteTimeout);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        match failed.as_mut().poll(&mut context) {
            Poll::Ready(CloseReason::WriteTimeout) => {}
            other => panic!("not the writer's failure: {other:?}"),
        }
    }

    #[tokio::test]
    async fn messages_queued_together_leave_in_one_flush_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("an address");
        let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
        let flushes = Arc::new(AtomicUsize::new(0));
        let writer = WebSocketStream::from_raw_socket(
            Counting {
                stream: client.expect("connects"),
                flushes: Arc::clone(&flushes),
            },
            Role::Client,
            None,
        )
        .await;
        let mut reader =
            WebSocketStream::from_raw_socket(server.expect("accepts").0, Role::Server, None).await;
        let (sink, _) = writer.split();
        // A thousand small messages (a relaying node's transactions) queued before the
        // writer runs, then a close.
        let (queue, frames) = mpsc::unbounded_channel();
        let count = 1_000u32;
        for number in 0..count {
            queue
                .send(Outgoing::Message(number.to_le_bytes().to_vec()))
                .expect("queued");
        }
        queue.send(Outgoing::Close(None)).expect("queued");
        let shared = Arc::new(Shared::default());
        shared.state().queued = 4 * count as usize;
        write_loop(sink, frames, Arc::clone(&shared), Duration::from_secs(20)).await;
        let mut received = Vec::new();
        while let Some(Ok(Frame::Binary(bytes))) = reader.next().await {
            received.push(u32::from_le_bytes(
                bytes.as_ref().try_into().expect("four bytes"),
            ));
        }
        assert_eq!(received, (0..count).collect::<Vec<_>>(), "all, in order");
        assert_eq!(shared.state().queued, 0, "every byte counted as written");
        let flushes = flushes.load(Ordering::SeqCst);
        assert!(
            flushes <= 4,
            "{flushes} flushes for {count} queued messages: one a message"
        );
    }
}
