//! A connection whose writes may wait only so long for its client to read.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::activity::Activity;

/// A connection whose writes may wait at most `timeout` for the client to read: a client
/// that asks for an answer larger than the sockets' buffers and then stops reading would
/// otherwise hold its connection, its place and the rest of its answer for as long as it
/// stays connected. Any progress restarts the wait, so a slow reader is served; one that
/// reads nothing for the whole timeout gets `TimedOut`, and hyper drops the connection.
/// The wait is a timer polled with the write, so hyper's task wakes when it runs out.
///
/// It also tells the connection's [`Activity`] when the socket has been flushed, which is
/// when an answer hyper has taken has also been written ([`Activity::flushed`]).
pub(super) struct WriteStallGuard<S> {
    inner: S,
    timeout: Duration,
    /// Runs out `timeout` after the first write that could not proceed, until one does.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    activity: Arc<Activity>,
}

impl<S> WriteStallGuard<S> {
    pub(super) fn new(inner: S, timeout: Duration, activity: Arc<Activity>) -> WriteStallGuard<S> {
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
