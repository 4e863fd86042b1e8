//! The peer layer's transport in a simulation: turmoil's simulated TCP, each node's
//! writes paced by its uplink and counted.
//!
//! turmoil delays each message by its link's latency; what it does not model is that a
//! node's bytes leave through one uplink of limited bandwidth. [`Uplink`] does: a write
//! reserves the uplink for its size over the bandwidth, after whatever was reserved before
//! it (from any of the node's connections), and goes out when its reservation ends. So a
//! block sent to eight peers takes eight times as long to leave as one copy.
//!
//! Nor does turmoil lose packets the way TCP lives it: its message loss cuts a stream
//! short. [`Loss`] does: each 1,460-byte segment of a write is lost with a set
//! probability, and a write that loses one leaves a retransmission timeout late (the
//! link's round trip plus Linux's 200 ms minimum), the connection's later writes waiting
//! behind it, as TCP's in-order delivery makes them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use powchain_p2p::transport::TransportFuture;
use powchain_p2p::{BoxedStream, Listener, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::random::SimRng;

/// Bytes in one TCP segment (a 1,500-byte Ethernet frame less the IP and TCP headers).
const SEGMENT_BYTES: usize = 1_460;
/// Linux's smallest retransmission timeout, added to the link's round trip.
const MIN_RETRANSMISSION_TIMEOUT: Duration = Duration::from_millis(200);

/// One host's packet loss: the rate, the one-way latency to every host (for the round
/// trip a retransmission waits), and a seed for each connection's draws.
pub(crate) struct Loss {
    /// Probability that a segment is lost, in parts per million.
    pub(crate) segment_loss_ppm: u32,
    /// One-way latency from this node to the nodes of each host, by host name.
    pub(crate) one_way: HashMap<String, Duration>,
    /// Every connection's draws follow from it and the connection's number.
    pub(crate) seed: u64,
    /// Connections made so far (by this host's software, across restarts).
    pub(crate) connections: AtomicU32,
}

impl Loss {
    /// The draws and retransmission timeout of a new connection to `remote`.
    fn connection(&self, remote: SocketAddr) -> StreamLoss {
        let number = self.connections.fetch_add(1, Ordering::Relaxed);
        let round_trip = turmoil::reverse_lookup(remote.ip())
            .and_then(|name| self.one_way.get(&name).copied())
            .map_or(Duration::ZERO, |one_way| one_way * 2);
        StreamLoss {
            segment_loss_ppm: self.segment_loss_ppm,
            retransmission: round_trip + MIN_RETRANSMISSION_TIMEOUT,
            rng: SimRng::new(self.seed ^ u64::from(number).wrapping_mul(0x2545_f491_4f6c_dd1d)),
        }
    }
}

/// One connection's losses.
struct StreamLoss {
    segment_loss_ppm: u32,
    retransmission: Duration,
    rng: SimRng,
}

impl StreamLoss {
    /// How late a write of `bytes` leaves: one retransmission timeout if any of its
    /// segments is lost.
    fn delay(&mut self, bytes: usize) -> Duration {
        let segments = bytes.div_ceil(SEGMENT_BYTES);
        let lost =
            (0..segments).any(|_| self.rng.below(1_000_000) < self.segment_loss_ppm as usize);
        if lost {
            self.retransmission
        } else {
            Duration::ZERO
        }
    }
}

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

    /// Forgets its reservations: its host restarted. They were made on the clock of the
    /// host's runtime before the crash, and a restarted host runs on a new runtime whose
    /// instants have another origin (a reservation carried over held every write of the
    /// restarted node for half a minute).
    pub(crate) fn restart(&self) {
        *self
            .next_free
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
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

/// A simulated TCP stream whose writes go through the node's [`Uplink`], and lose
/// segments if the run says so.
struct PacedStream {
    inner: turmoil::net::TcpStream,
    uplink: Arc<Uplink>,
    loss: Option<StreamLoss>,
    /// A write waiting for its reservation: the wait and how many bytes it reserved.
    waiting: Option<(Pin<Box<Sleep>>, usize)>,
}

impl PacedStream {
    fn boxed(
        inner: turmoil::net::TcpStream,
        remote: SocketAddr,
        uplink: &Arc<Uplink>,
        loss: Option<&Loss>,
    ) -> BoxedStream {
        Box::new(PacedStream {
            inner,
            uplink: Arc::clone(uplink),
            loss: loss.map(|loss| loss.connection(remote)),
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
                let late = this
                    .loss
                    .as_mut()
                    .map_or(Duration::ZERO, |loss| loss.delay(buffer.len()));
                let done = this.uplink.reserve(buffer.len()) + late;
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
    pub(crate) loss: Option<Arc<Loss>>,
}

impl Transport for SimTransport {
    fn connect<'a>(&'a self, authority: &'a str) -> TransportFuture<'a, (BoxedStream, SocketAddr)> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(authority).await?;
            let remote = stream.peer_addr()?;
            let paced = PacedStream::boxed(stream, remote, &self.uplink, self.loss.as_deref());
            Ok((paced, remote))
        })
    }
}

/// Accepts on turmoil's network.
pub(crate) struct SimListener {
    pub(crate) listener: turmoil::net::TcpListener,
    pub(crate) uplink: Arc<Uplink>,
    pub(crate) loss: Option<Arc<Loss>>,
}

impl Listener for SimListener {
    fn accept(&mut self) -> TransportFuture<'_, (BoxedStream, SocketAddr)> {
        Box::pin(async move {
            let (stream, remote) = self.listener.accept().await?;
            let paced = PacedStream::boxed(stream, remote, &self.uplink, self.loss.as_deref());
            Ok((paced, remote))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
