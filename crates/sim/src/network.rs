//! The peer layer's transport in a simulation: turmoil's simulated TCP, each node's
//! writes paced by its uplink and counted.
//!
//! turmoil delays each message by its link's latency; what it does not model is that a
//! node's bytes leave through one uplink of limited bandwidth. [`Uplink`] does: a write
//! reserves the uplink for its size over the bandwidth, after whatever was reserved before
//! it (from any of the node's connections), and goes out when its reservation ends. So a
//! block sent to eight peers takes eight times as long to leave as one copy.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use powchain_p2p::transport::TransportFuture;
use powchain_p2p::{BoxedStream, Listener, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// One node's uplink: its bandwidth, when it is next free, and what it has sent.
pub(crate) struct Uplink {
    bits_per_second: u64,
    next_free: Mutex<Option<Instant>>,
    sent: AtomicU64,
}

impl Uplink {
    pub(crate) fn new(bits_per_second: u64) -> Arc<Uplink> {
        Arc::new(Uplink {
            bits_per_second: bits_per_second.max(1),
            next_free: Mutex::new(None),
            sent: AtomicU64::new(0),
        })
    }

    /// Bytes written so far.
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Reserves the uplink for `bytes`; returns when they will have left.
    fn reserve(&self, bytes: usize) -> Instant {
        let now = Instant::now();
        let transmit = Duration::from_nanos(
            (bytes as u64 * 8).saturating_mul(1_000_000_000) / self.bits_per_second,
        );
        let mut next_free = self
            .next_free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start = next_free.map_or(now, |free| free.max(now));
        let done = start + transmit;
        *next_free = Some(done);
        done
    }
}

/// A simulated TCP stream whose writes go through the node's [`Uplink`].
struct PacedStream {
    inner: turmoil::net::TcpStream,
    uplink: Arc<Uplink>,
    /// A write waiting for its reservation: the wait and how many bytes it reserved.
    waiting: Option<(Pin<Box<Sleep>>, usize)>,
}

impl PacedStream {
    fn boxed(inner: turmoil::net::TcpStream, uplink: &Arc<Uplink>) -> BoxedStream {
        Box::new(PacedStream {
            inner,
            uplink: Arc::clone(uplink),
            waiting: None,
        })
    }
}

impl AsyncRead for PacedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(context, buffer)
    }
}

impl AsyncWrite for PacedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buffer.is_empty() {
            return Pin::new(&mut this.inner).poll_write(context, buffer);
        }
        let reserved = match &mut this.waiting {
            Some((sleep, reserved)) => {
                ready!(sleep.as_mut().poll(context));
                *reserved
            }
            None => {
                let done = this.uplink.reserve(buffer.len());
                let mut sleep = Box::pin(tokio::time::sleep_until(done));
                if sleep.as_mut().poll(context).is_pending() {
                    this.waiting = Some((sleep, buffer.len()));
                    return Poll::Pending;
                }
                buffer.len()
            }
        };
        // The caller may offer other bytes than it first did; at most the reserved count
        // leaves now.
        let length = reserved.min(buffer.len());
        let written = ready!(Pin::new(&mut this.inner).poll_write(context, &buffer[..length]));
        this.waiting = None;
        if let Ok(count) = &written {
            this.uplink.sent.fetch_add(*count as u64, Ordering::Relaxed);
        }
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }
}

/// Dials over turmoil's network.
pub(crate) struct SimTransport {
    pub(crate) uplink: Arc<Uplink>,
}

impl Transport for SimTransport {
    fn connect<'a>(&'a self, authority: &'a str) -> TransportFuture<'a, (BoxedStream, SocketAddr)> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(authority).await?;
            let remote = stream.peer_addr()?;
            Ok((PacedStream::boxed(stream, &self.uplink), remote))
        })
    }
}

/// Accepts on turmoil's network.
pub(crate) struct SimListener {
    pub(crate) listener: turmoil::net::TcpListener,
    pub(crate) uplink: Arc<Uplink>,
}

impl Listener for SimListener {
    fn accept(&mut self) -> TransportFuture<'_, (BoxedStream, SocketAddr)> {
        Box::pin(async move {
            let (stream, remote) = self.listener.accept().await?;
            Ok((PacedStream::boxed(stream, &self.uplink), remote))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
