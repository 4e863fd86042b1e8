//! `launch`: opens the node's data and starts the HTTP API, the peer layer and the chores
//! under the caller's cancellation token and one task tracker; `RunningNode` stops them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use powchain_api::cookie::{self, CookieError};
use powchain_api::{ApiOptions, ApiToken, RequiredToken};
use powchain_node::{Node, NodeConfig, NodeError, SystemClock};
use powchain_p2p::{P2p, P2pConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::files::{FileBudget, RESERVED_FILES, raise_file_limit};
use crate::peers_file::{self, PeersFile};
use crate::settings::Settings;

/// How long stopping waits for the node's tasks.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The data directory could not be opened (damaged, another network's, locked, or a
    /// chain or wallet of an earlier run missing).
    #[error("cannot open the node's data in {}", dir.display())]
    Open {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: NodeError,
    },
    /// The blocking task opening the data panicked or was cancelled.
    #[error("the node's start-up task failed")]
    StartupTask(#[source] tokio::task::JoinError),
    /// No randomness for the API token.
    #[error("cannot make an API token")]
    Token(#[source] getrandom::Error),
    /// The cookie file could not be written.
    #[error("cannot write the API token's cookie file")]
    Cookie(#[source] CookieError),
    /// The HTTP port could not be bound.
    #[error("cannot listen for HTTP on {address}")]
    BindHttp {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The peer port could not be bound.
    #[error("cannot listen for peers on {address}")]
    BindP2p {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A node that is running.
pub struct RunningNode {
    /// The node core.
    pub node: Arc<Node>,
    /// Where the HTTP API listens.
    pub http_address: SocketAddr,
    /// Where peers connect.
    pub p2p_address: SocketAddr,
    /// The peer-to-peer layer.
    pub p2p: Arc<P2p>,
    /// The API token and its cookie file, removed at a clean stop.
    api_cookie: (ApiToken, PathBuf),
    /// The address book's file, saved at the stop.
    peers_file: Arc<PeersFile>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Opens the node's data and starts its API, its peers and its chores. Every task runs
/// until `shutdown` is cancelled; [`RunningNode::shutdown`] cancels it and waits.
///
/// # Errors
/// [`LaunchError`] if the data directory cannot be opened or a port cannot be bound.
pub async fn launch(
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<RunningNode, LaunchError> {
    // Both ports first: a port in use must leave nothing behind (no data directory, no
    // wallet, no cookie file).
    let listener =
        TcpListener::bind(settings.http)
            .await
            .map_err(|source| LaunchError::BindHttp {
                address: settings.http,
                source,
            })?;
    let p2p_listener =
        TcpListener::bind(settings.p2p)
            .await
            .map_err(|source| LaunchError::BindP2p {
                address: settings.p2p,
                source,
            })?;

    let data_dir = settings.data_dir.clone();
    let mut config = NodeConfig::new(settings.network, data_dir.clone());
    if let Some(threads) = settings.miner_threads {
        config.miner_threads = threads.get();
    }
    config.wallet_passphrase_file = settings.wallet_passphrase_file.clone();
    config.reindex = settings.reindex;
    config.new_wallet = settings.new_wallet;
    let node = tokio::task::spawn_blocking(move || Node::open(config, Arc::new(SystemClock)))
        .await
        .map_err(LaunchError::StartupTask)?
        .map_err(|source| LaunchError::Open {
            dir: data_dir.clone(),
            source,
        })?;
    let tip = node.tip();
    info!(
        network = %settings.network,
        data_dir = %data_dir.display(),
        height = tip.height.0,
        tip = %tip.hash,
        "node data opened"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    if let Some(explanation) = crate::schedule::explain_for(&node, settings.mine, now_ms) {
        info!("{explanation}");
    }

    // Written before the API listens, so a client that sees it listening finds the token.
    let api_token = ApiToken::generate().map_err(LaunchError::Token)?;
    let cookie_path =
        cookie::write_cookie_file(&data_dir, &api_token).map_err(LaunchError::Cookie)?;

    let http_address = listener
        .local_addr()
        .map_err(|source| LaunchError::BindHttp {
            address: settings.http,
            source,
        })?;
    let token_required = settings.require_token || !http_address.ip().is_loopback();
    if !http_address.ip().is_loopback() {
        warn!(
            %http_address,
            cookie = %cookie_path.display(),
            "the HTTP API is reachable from other machines: spending, mining and peer changes \
             need the API token from the cookie file, but reads (balances, addresses, history) \
             are open to anyone who reaches the port, and plain HTTP carries the token in clear \
             text"
        );
    }
    info!(
        cookie = %cookie_path.display(),
        token_required,
        "wrote the API token to the cookie file"
    );
    let peers_file = Arc::new(PeersFile::new(data_dir.clone(), settings.network));
    let saved_addresses = {
        let file = Arc::clone(&peers_file);
        tokio::task::spawn_blocking(move || file.load(now_ms))
            .await
            .map_err(LaunchError::StartupTask)?
    };
    let mut p2p_config = P2pConfig {
        listen: Some(settings.p2p),
        peers: settings.peers.clone(),
        max_upload_bytes: settings.max_upload_bytes,
        saved_addresses,
        ..P2pConfig::default()
    };
    let defaults = ApiOptions::default();
    let budget = FileBudget::plan(
        raise_file_limit().unwrap_or(RESERVED_FILES + 1_024),
        &p2p_config,
        defaults.max_connections,
    );
    p2p_config.max_inbound = budget.max_inbound;
    p2p_config.max_pending = budget.max_pending;
    info!(
        open_files = budget.limit,
        peer_files = budget.p2p_files,
        http_connections = budget.http_connections,
        "file budget: {} files, up to {} for peers, {} HTTP connections",
        budget.limit,
        budget.p2p_files,
        budget.http_connections
    );
    let api_options = ApiOptions {
        required_token: token_required.then(|| RequiredToken {
            token: api_token.clone(),
            cookie_path: cookie_path.clone(),
        }),
        loopback: http_address.ip().is_loopback(),
        max_connections: budget.http_connections,
        ..defaults
    };

    let tasks = TaskTracker::new();
    let p2p = P2p::start_on(
        Arc::clone(&node),
        p2p_config,
        Some(p2p_listener),
        shutdown.clone(),
        tasks.clone(),
    )
    .map_err(|source| LaunchError::BindP2p {
        address: settings.p2p,
        source,
    })?;
    let p2p_address = SocketAddr::new(settings.p2p.ip(), p2p.listen_port());
    info!(
        port = http_address.port(),
        "listening on port {}",
        http_address.port()
    );

    let server_node = Arc::clone(&node);
    let server_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(error) = powchain_api::serve_with(
            listener,
            server_node,
            api_options,
            server_shutdown.cancelled_owned(),
        )
        .await
        {
            warn!(%error, "the HTTP server stopped");
        }
    });
    tasks.spawn(chores(Arc::clone(&node), shutdown.clone()));
    tasks.spawn(save_peers(
        Arc::clone(&p2p),
        Arc::clone(&peers_file),
        shutdown.clone(),
    ));

    if settings.mine {
        node.start_mining();
    }
    Ok(RunningNode {
        node,
        http_address,
        p2p_address,
        p2p,
        api_cookie: (api_token, cookie_path),
        peers_file,
        shutdown,
        tasks,
    })
}

/// The node's periodic work: the hashrate sample, pool expiry, and syncing blocks from
/// peers to disk within a second (`Node::submit_peer_block` defers the sync).
async fn chores(node: Arc<Node>, shutdown: CancellationToken) {
    let mut hashrate = tokio::time::interval(Duration::from_secs(1));
    let mut expiry = tokio::time::interval(Duration::from_secs(60));
    let mut chain_sync = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = hashrate.tick() => node.sample_hashrate(),
            _ = expiry.tick() => {
                let node = Arc::clone(&node);
                let _ = tokio::task::spawn_blocking(move || node.expire_pool()).await;
            }
            _ = chain_sync.tick() => {
                let node = Arc::clone(&node);
                if let Ok(Err(error)) = tokio::task::spawn_blocking(move || node.sync_chain()).await {
                    warn!(%error, "could not sync the chain store");
                }
            }
        }
    }
}

/// Saves the address book to `peers.json` every [`peers_file::SAVE_INTERVAL`] (and
/// [`RunningNode::shutdown`] at the stop), so a crash loses at most that interval's.
async fn save_peers(p2p: Arc<P2p>, file: Arc<PeersFile>, shutdown: CancellationToken) {
    let start = tokio::time::Instant::now() + peers_file::SAVE_INTERVAL;
    let mut every = tokio::time::interval_at(start, peers_file::SAVE_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {
                let saved = p2p.saved_addresses();
                let file = Arc::clone(&file);
                let written = tokio::task::spawn_blocking(move || file.save(&saved)).await;
                if let Ok(Err(error)) = written {
                    warn!(%error, "could not save the peer addresses");
                }
            }
        }
    }
}

impl RunningNode {
    /// The token that stops this node (cancelled by [`RunningNode::shutdown`]).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Stops mining, the API, the peers and the chores, waits for them, syncs the chain,
    /// saves the address book (`peers.json`) and removes the cookie file.
    pub async fn shutdown(self) {
        self.node.begin_shutdown();
        // Before the sessions close: the anchors are the peers connected now.
        let saved = self.p2p.saved_addresses();
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(STOP_DEADLINE, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within {STOP_DEADLINE:?}");
        }
        let node = Arc::clone(&self.node);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || node.sync_chain()).await {
            warn!(%error, "could not sync the chain store");
        }
        let file = Arc::clone(&self.peers_file);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || file.save(&saved)).await {
            warn!(%error, "could not save the peer addresses");
        }
        let (api_token, cookie_path) = &self.api_cookie;
        cookie::remove_cookie_file(cookie_path, api_token);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(address).expect("the API accepts");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("a request is written");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("an answer is read");
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_launched_node_serves_and_stops_when_its_token_is_cancelled() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let settings = Settings::regtest_on_loopback(folder.path().to_path_buf());
        let running = launch(settings, CancellationToken::new())
            .await
            .expect("the node starts");
        let cookie = folder.path().join(".cookie");
        assert!(
            cookie.exists(),
            "the API token is written before the API listens"
        );
        let address = running.http_address;
        let status = tokio::task::spawn_blocking(move || get(address, "/status"))
            .await
            .expect("the request task");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(status.contains("\"network\":\"regtest\""), "{status}");
        assert_ne!(running.p2p_address.port(), 0, "the peer port is bound");
        running.shutdown().await;
        assert!(!cookie.exists(), "a clean stop removes the cookie file");
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "the HTTP port is closed"
        );
        // The data stays, and opens again.
        let again = launch(
            Settings::regtest_on_loopback(folder.path().to_path_buf()),
            CancellationToken::new(),
        )
        .await
        .expect("the node starts again on its data");
        again.shutdown().await;
    }

    /// Waits until `condition` holds, at most 20 s.
    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn peer_url(node: &RunningNode) -> powchain_p2p::PeerUrl {
        powchain_p2p::PeerUrl {
            host: "127.0.0.1".into(),
            port: node.p2p_address.port(),
        }
    }

    fn dialled(node: &RunningNode, peer: &powchain_p2p::PeerUrl) -> bool {
        node.p2p
            .peers()
            .iter()
            .any(|info| info.outbound && info.url == peer.to_string())
    }

    async fn start(dir: &std::path::Path, peers: Vec<powchain_p2p::PeerUrl>) -> RunningNode {
        let mut settings = Settings::regtest_on_loopback(dir.to_path_buf());
        settings.peers = peers;
        launch(settings, CancellationToken::new())
            .await
            .expect("the node starts")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_node_finds_the_peers_it_learned_though_its_configured_peer_is_gone() {
        // A seed node, and a node that connects to it; a third node, configured with the
        // seed alone, learns of the second from the seed and dials it.
        let folders: Vec<tempfile::TempDir> = (0..3)
            .map(|_| tempfile::tempdir().expect("a temporary folder"))
            .collect();
        let seed = start(folders[0].path(), vec![]).await;
        let learned = start(folders[1].path(), vec![peer_url(&seed)]).await;
        wait_until("the second node reaches the seed", || {
            seed.p2p.peers().len() == 1
        })
        .await;
        let node = start(folders[2].path(), vec![peer_url(&seed)]).await;
        let learned_url = peer_url(&learned);
        wait_until("the node dials the address the seed told it", || {
            dialled(&node, &learned_url)
        })
        .await;
        node.shutdown().await;
        let file = std::fs::read_to_string(folders[2].path().join(peers_file::PEERS_FILE_NAME))
            .expect("a clean stop saves the address book");
        assert!(file.contains(&learned_url.to_string()), "{file}");

        // The seed goes away for good; the node comes back configured with it alone.
        let seed_url = peer_url(&seed);
        seed.shutdown().await;
        let node = start(folders[2].path(), vec![seed_url]).await;
        wait_until("the restarted node dials the peer it learned", || {
            dialled(&node, &learned_url)
        })
        .await;
        node.shutdown().await;
        learned.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_port_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let folder = tempfile::tempdir().expect("a temporary folder");
        let mut settings = Settings::regtest_on_loopback(folder.path().to_path_buf());
        settings.http = taken.local_addr().expect("an address");
        let Err(error) = launch(settings, CancellationToken::new()).await else {
            panic!("the port is taken");
        };
        assert!(matches!(error, LaunchError::BindHttp { .. }), "{error}");
    }
}
