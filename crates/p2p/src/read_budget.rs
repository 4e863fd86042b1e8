//! A byte budget on what a connection may send before its `hello`.
//!
//! The WebSocket layer caps a frame at [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES)
//! (2 MB, a block), and its configuration cannot change once the stream exists. So a
//! stranger could make the node buffer 2 MB per connection before saying who it is. This
//! reader wraps the socket under the WebSocket: until the handshake lifts the budget, it
//! reads at most [`PRE_HELLO_BYTES`](crate::pending::PRE_HELLO_BYTES) in all, then fails
//! the read, which ends the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The budget's value once lifted.
const UNLIMITED: usize = usize::MAX;

/// The read error of a stream over its budget: the peer sent more than it may before its
/// hello (the handshake tells such a stranger why it is closed).
#[derive(Debug, thiserror::Error)]
#[error("the peer sent more than it may before its hello")]
pub(crate) struct OverBudget;

impl OverBudget {
    /// True if `error` is a read that failed on the budget.
    pub(crate) fn caused(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<OverBudget>())
    }
}

/// Lifts the budget of the stream it came from.
#[derive(Clone)]
pub(crate) struct BudgetHandle(Arc<AtomicUsize>);

impl BudgetHandle {
    /// From now on the stream reads without a byte budget.
    pub(crate) fn lift(&self) {
        self.0.store(UNLIMITED, Ordering::Relaxed);
    }
}

/// A stream that reads at most a budget of bytes until the budget is lifted.
pub(crate) struct BudgetedStream<S> {
    inner: S,
    remaining: Arc<AtomicUsize>,
}

impl<S> BudgetedStream<S> {
    /// Wraps `inner`, allowing `budget` bytes to be read.
    pub(crate) fn new(inner: S, budget: usize) -> (BudgetedStream<S>, BudgetHandle) {
        let remaining = Arc::new(AtomicUsize::new(budget));
        let handle = BudgetHandle(Arc::clone(&remaining));
        (BudgetedStream { inner, remaining }, handle)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BudgetedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let remaining = this.remaining.load(Ordering::Relaxed);
        if remaining == UNLIMITED {
            return Pin::new(&mut this.inner).poll_read(context, buffer);
        }
        if remaining == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OverBudget)));
        }
        // Read into a window of at most `remaining` bytes of the caller's buffer.
        let window_len = remaining.min(buffer.remaining());
        let mut window = ReadBuf::new(buffer.initialize_unfilled_to(window_len));
        let read = Pin::new(&mut this.inner).poll_read(context, &mut window);
        let filled = window.filled().len();
        if let Poll::Ready(Ok(())) = read {
            buffer.advance(filled);
            // Lifted meanwhile (by another task): stay lifted.
            let _ = this
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                    (now != UNLIMITED).then(|| now.saturating_sub(filled))
                });
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BudgetedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(context, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_stop_at_the_budget_until_it_is_lifted() {
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let (mut reader, handle) = BudgetedStream::new(reader, 10);
        writer.write_all(&[7u8; 40]).await.expect("write");
        let mut got = vec![0u8; 40];
        let first = reader.read(&mut got).await.expect("within the budget");
        assert_eq!(first, 10, "never more than the budget");
        let refused = reader.read(&mut got).await.expect_err("over the budget");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        assert!(OverBudget::caused(&refused), "told apart from other errors");
        assert!(!OverBudget::caused(&io::Error::other("another")));
        handle.lift();
        let rest = reader.read(&mut got).await.expect("lifted");
        assert_eq!(rest, 30);
    }

    #[tokio::test]
    async fn small_reads_spend_the_budget_a_little_at_a_time() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let (mut reader, _handle) = BudgetedStream::new(reader, 6);
        let mut got = [0u8; 8];
        for _ in 0..3 {
            writer.write_all(&[1, 2]).await.expect("write");
            assert_eq!(reader.read(&mut got).await.expect("within"), 2);
        }
        writer.write_all(&[3]).await.expect("write");
        assert!(
            reader.read(&mut got).await.is_err(),
            "six bytes were the budget"
        );
    }
}
