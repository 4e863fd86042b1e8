//! What the layer runs on: the byte streams under the WebSockets, where randomness comes
//! from, and how node calls leave the async tasks. Production uses TCP, the operating
//! system's randomness and tokio's blocking pool ([`Environment::default`]); a simulation
//! (`crates/sim`) gives its own network, a seeded generator and inline calls, so the same
//! peer code runs deterministically on a simulated network.
//!
//! ```text
//!   Transport::connect(authority) ──▶ BoxedStream ──▶ BudgetedStream ──▶ WebSocket (client)
//!   Listener::accept()            ──▶ BoxedStream ──▶ BudgetedStream ──▶ WebSocket (server)
//! ```
//!
//! Time is tokio's everywhere in the layer (`tokio::time::Instant`, `sleep`), which a
//! simulation drives; the node's own wall clock is its `Clock`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A connection's byte stream.
pub trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> PeerStream for T {}

/// A connection's byte stream, whatever carries it.
pub type BoxedStream = Box<dyn PeerStream>;

/// A future a transport returns.
pub type TransportFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Opens outbound connections.
pub trait Transport: Send + Sync + 'static {
    /// Connects to `authority` (`host:port`); returns the stream and the remote address.
    fn connect<'a>(&'a self, authority: &'a str) -> TransportFuture<'a, (BoxedStream, SocketAddr)>;
}

/// Accepts inbound connections.
pub trait Listener: Send + 'static {
    /// The next connection and its remote address.
    fn accept(&mut self) -> TransportFuture<'_, (BoxedStream, SocketAddr)>;

    /// The address it listens on.
    ///
    /// # Errors
    /// If the address cannot be read.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// TCP through tokio, with Nagle's algorithm off (messages are small and latency counts).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

impl Transport for Tcp {
    fn connect<'a>(&'a self, authority: &'a str) -> TransportFuture<'a, (BoxedStream, SocketAddr)> {
        Box::pin(async move {
            let stream = TcpStream::connect(authority).await?;
            let remote = stream.peer_addr()?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxedStream, remote))
        })
    }
}

impl Listener for TcpListener {
    fn accept(&mut self) -> TransportFuture<'_, (BoxedStream, SocketAddr)> {
        Box::pin(async move {
            let (stream, remote) = TcpListener::accept(self).await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxedStream, remote))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

/// Where the layer's random numbers come from: node nonces (self-connection detection)
/// and dial jitter. Neither needs to be secret, only to differ between nodes.
pub enum Randomness {
    /// The operating system (the clock if that fails).
    System,
    /// A generator seeded by the caller (splitmix64): the same seed, the same numbers.
    Seeded(Mutex<u64>),
}

impl Randomness {
    /// A seeded generator.
    pub fn seeded(seed: u64) -> Randomness {
        Randomness::Seeded(Mutex::new(seed))
    }

    /// The next random number.
    pub fn next_u64(&self) -> u64 {
        match self {
            Randomness::System => system_random(),
            Randomness::Seeded(state) => {
                splitmix64(&mut state.lock().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }
}

/// The next number of the splitmix64 generator whose state is `state` (small, fast, and
/// the same numbers for the same seed everywhere; not for secrets).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

fn system_random() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Only self-connection detection and jitter depend on it; the clock will do.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        bytes = now.to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// How a session calls the node, whose methods block (locks, the store).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeCalls {
    /// On tokio's blocking pool, so a slow call never stalls other peers' tasks.
    #[default]
    BlockingPool,
    /// On the calling task: a simulation runs each host on one thread and must see every
    /// call finish within its step.
    Inline,
}

/// How long a simulated node takes to validate what peers send it. A node in a
/// simulation checks a block in no simulated time (its calls run inline between steps);
/// this is the time it would take on a real machine, waited before the node is given the
/// block or transactions. Production has none: validation takes the time it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidationDelay {
    /// Per block, whatever it holds.
    pub per_block: Duration,
    /// Per payment (non-coinbase transaction) in a block.
    pub per_payment: Duration,
    /// Per transaction relayed on its own (admission to the pool).
    pub per_transaction: Duration,
}

/// What the layer runs on.
pub struct Environment {
    /// Opens outbound connections.
    pub transport: Box<dyn Transport>,
    /// Node nonces and jitter.
    pub randomness: Randomness,
    /// How node calls run.
    pub node_calls: NodeCalls,
    /// Simulated validation time (`None` outside a simulation).
    pub validation_delay: Option<ValidationDelay>,
}

impl Default for Environment {
    /// TCP, the operating system's randomness and the blocking pool.
    fn default() -> Environment {
        Environment {
            transport: Box::new(Tcp),
            randomness: Randomness::System,
            node_calls: NodeCalls::BlockingPool,
            validation_delay: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_numbers_and_another_seed_others() {
        let draw = |seed| {
            let randomness = Randomness::seeded(seed);
            (0..4).map(|_| randomness.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let numbers = draw(7);
        assert!(numbers.windows(2).all(|pair| pair[0] != pair[1]));
    }

    #[tokio::test]
    async fn tcp_connects_to_a_tcp_listener() {
        let mut listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = Listener::local_addr(&listener).expect("address");
        let authority = address.to_string();
        let (dialled, accepted) =
            tokio::join!(Tcp.connect(&authority), Listener::accept(&mut listener));
        let (_, remote) = dialled.expect("connected");
        assert_eq!(remote, address);
        let (_, from) = accepted.expect("accepted");
        assert!(from.ip().is_loopback());
    }
}
