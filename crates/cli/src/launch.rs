//! Starting and stopping a node: the node core, the HTTP API, and the background chores,
//! all under one cancellation token and task tracker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use anyhow::Context;
use powchain_api::{ApiOptions, ApiToken, RequiredToken, cookie};
use powchain_node::{Node, NodeConfig, SystemClock};
use powchain_p2p::{P2p, P2pConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::args::NodeArgs;

/// A node that is running.
pub struct RunningNode {
    /// The node core.
    pub node: Arc<Node>,
    /// Where the HTTP API listens.
    pub http_address: SocketAddr,
    /// The peer-to-peer layer.
    pub p2p: Arc<P2p>,
    /// The API token and its cookie file, removed at a clean stop.
    api_cookie: (ApiToken, PathBuf),
    token: CancellationToken,
    tasks: TaskTracker,
}

/// Opens the node's data and starts its API and chores.
///
/// # Errors
/// If the data directory cannot be opened or a port cannot be bound.
pub async fn launch(
    args: &NodeArgs,
    token: CancellationToken,
    show_progress: bool,
) -> anyhow::Result<RunningNode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let data_dir = args.data_dir();
    let mut config = NodeConfig::new(args.network, data_dir.clone());
    if let Some(threads) = args.miner_threads {
        config.miner_threads = threads;
    }
    config.wallet_passphrase_file = args.wallet_passphrase_file.clone();
    let node = tokio::task::spawn_blocking(move || Node::open(config, Arc::new(SystemClock)))
        .await
        .context("the node's start-up task failed")?
        .with_context(|| format!("cannot open the node's data in {}", data_dir.display()))?;
    let tip = node.tip();
    info!(
        network = %args.network,
        data_dir = %data_dir.display(),
        height = tip.height.0,
        tip = %tip.hash,
        "node data opened"
    );
    println!("data directory: {}", data_dir.display());

    // Written before the API listens, so a client that sees it listening finds the token.
    let api_token = ApiToken::generate().context("cannot make an API token")?;
    let cookie_path = cookie::write_cookie_file(&data_dir, &api_token)?;

    let listener = TcpListener::bind((args.http_bind, args.http_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {}:{}",
                args.http_bind, args.http_port
            )
        })?;
    let http_address = listener.local_addr()?;
    let token_required = args.require_token || !http_address.ip().is_loopback();
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
    let api_options = ApiOptions {
        required_token: token_required.then(|| RequiredToken {
            token: api_token.clone(),
            cookie_path: cookie_path.clone(),
        }),
    };
    let tasks = TaskTracker::new();
    let p2p = P2p::start(
        Arc::clone(&node),
        P2pConfig {
            listen: Some(SocketAddr::new(args.p2p_bind, args.p2p_port)),
            peers: args.peers.clone(),
            ..P2pConfig::default()
        },
        token.clone(),
        tasks.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "cannot listen for peers on {}:{}",
            args.p2p_bind, args.p2p_port
        )
    })?;

    println!(
        "P2P listening on ws://{}:{} (port {})",
        args.p2p_bind,
        p2p.listen_port(),
        p2p.listen_port()
    );
    // Printed once everything listens: scripts and tests wait for this line.
    println!(
        "HTTP API listening on http://{http_address} (port {})",
        http_address.port()
    );
    info!(
        port = http_address.port(),
        "listening on port {}",
        http_address.port()
    );

    let server_node = Arc::clone(&node);
    let server_token = token.clone();
    tasks.spawn(async move {
        if let Err(error) = powchain_api::serve_with(
            listener,
            server_node,
            api_options,
            server_token.cancelled_owned(),
        )
        .await
        {
            warn!(%error, "the HTTP server stopped");
        }
    });

    let chores_node = Arc::clone(&node);
    let chores_token = token.clone();
    tasks.spawn(async move {
        let mut hashrate = tokio::time::interval(Duration::from_secs(1));
        let mut expiry = tokio::time::interval(Duration::from_secs(60));
        // Blocks from peers are synced to disk within a second (Node::submit_peer_block);
        // this syncs the last of them when no more arrive.
        let mut chain_sync = tokio::time::interval(Duration::from_secs(1));
        let mut progress = tokio::time::interval(Duration::from_millis(500));
        let mut bar = crate::progress::SyncProgressBar::default();
        loop {
            tokio::select! {
                () = chores_token.cancelled() => break,
                _ = hashrate.tick() => chores_node.sample_hashrate(),
                _ = progress.tick(), if show_progress => {
                    let node = Arc::clone(&chores_node);
                    let heights = tokio::task::spawn_blocking(move || {
                        let summary = node.chain_summary();
                        (summary.tip.height.0, summary.best_header_height.0)
                    })
                    .await;
                    if let Ok((height, best)) = heights {
                        bar.update(height, best);
                    }
                }
                _ = expiry.tick() => {
                    let node = Arc::clone(&chores_node);
                    let _ = tokio::task::spawn_blocking(move || node.expire_pool()).await;
                }
                _ = chain_sync.tick() => {
                    let node = Arc::clone(&chores_node);
                    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || node.sync_chain()).await {
                        warn!(%error, "could not sync the chain store");
                    }
                }
            }
        }
    });

    if args.mine {
        node.start_mining();
    }
    Ok(RunningNode {
        node,
        http_address,
        p2p,
        api_cookie: (api_token, cookie_path),
        token,
        tasks,
    })
}

impl RunningNode {
    /// Stops mining, the API and the chores, and waits for them.
    pub async fn shutdown(self) {
        self.node.begin_shutdown();
        self.token.cancel();
        let node = Arc::clone(&self.node);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || node.sync_chain()).await {
            warn!(%error, "could not sync the chain store");
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within 10 s");
        }
        let (api_token, cookie_path) = &self.api_cookie;
        cookie::remove_cookie_file(cookie_path, api_token);
    }
}

/// Listens for Ctrl-C or SIGTERM from this call on and resolves when one arrives. The
/// handlers are installed before it returns, so call it before starting anything: a
/// signal that arrives while the node starts (a supervisor or a test stopping it as soon
/// as it prints its ports) then stops it cleanly instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `powchain node`: runs until Ctrl-C or SIGTERM.
///
/// # Errors
/// Start-up failures.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let token = CancellationToken::new();
    let running = launch(&args, token, true).await?;
    stop.await;
    info!(http = %running.http_address, "stopping");
    running.shutdown().await;
    info!("stopped cleanly");
    Ok(())
}
