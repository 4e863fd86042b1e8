//! `powchain node`: the binary's edge around `powchain_launch::launch`. It prints the
//! lines scripts and tests wait for, draws the sync progress bar on a terminal, and stops
//! the node on Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use powchain_launch::{RunningNode, Settings, launch, shutdown_signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::progress::SyncProgressBar;

/// Prints where a node keeps its data and listens. Scripts and tests wait for the last
/// line: once it is printed, both ports accept connections.
pub fn print_listening(settings: &Settings, running: &RunningNode) {
    println!("data directory: {}", settings.data_dir.display());
    println!(
        "P2P listening on ws://{} (port {})",
        running.p2p_address,
        running.p2p_address.port()
    );
    println!(
        "HTTP API listening on http://{} (port {})",
        running.http_address,
        running.http_address.port()
    );
}

/// Redraws the sync progress bar twice a second until `shutdown` is cancelled.
async fn show_progress(running_node: Arc<powchain_node::Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut bar = SyncProgressBar::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let node = Arc::clone(&running_node);
                if let Ok(summary) = tokio::task::spawn_blocking(move || node.chain_summary()).await {
                    bar.update(summary.tip.height.0, summary.best_header_height.0);
                }
            }
        }
    }
}

/// Runs a node until Ctrl-C or SIGTERM.
///
/// # Errors
/// Start-up failures.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let shutdown = CancellationToken::new();
    let running = launch(settings.clone(), shutdown.clone()).await?;
    print_listening(&settings, &running);
    let progress = tokio::spawn(show_progress(Arc::clone(&running.node), shutdown.clone()));
    stop.await;
    info!(http = %running.http_address, "stopping");
    running.shutdown().await;
    let _ = progress.await;
    info!("stopped cleanly");
    Ok(())
}
