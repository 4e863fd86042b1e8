//! `powchain devnet`: N connected nodes in one process, on consecutive ports, each with its
//! own data, stopped together on Ctrl-C. A network a newcomer can watch.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::args::DevnetArgs;
use powchain_launch::{RunningNode, launch, shutdown_signal};

/// Starts the nodes, prints where they are, reports heights until Ctrl-C, stops them.
///
/// # Errors
/// If a node cannot start (a port in use, a damaged data directory).
pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    // Listening before the nodes start: Ctrl-C during start-up stops them cleanly.
    let stop = shutdown_signal();
    let token = CancellationToken::new();
    let mut running: Vec<RunningNode> = Vec::new();
    for index in 0..args.nodes {
        let settings = args
            .node_args(index)
            .settings()
            .map_err(anyhow::Error::msg)?;
        match launch(settings, token.child_token()).await {
            Ok(node) => running.push(node),
            Err(error) => {
                for node in running {
                    node.shutdown().await;
                }
                return Err(error).with_context(|| format!("node {} could not start", index + 1));
            }
        }
    }
    println!();
    println!(
        "powchain {} network of {} nodes{}:",
        args.network,
        args.nodes,
        if args.mine { ", mining" } else { "" }
    );
    for (index, node) in running.iter().enumerate() {
        let node_args = args.node_args(index as u16);
        println!(
            "  node {}  http://{}  ws://127.0.0.1:{}  data {}",
            index + 1,
            node.http_address,
            node.p2p_address.port(),
            node_args.data_dir().display()
        );
    }
    println!(
        "Open http://{}/ for the dashboard. Ctrl-C stops every node.",
        running[0].http_address
    );
    println!();

    let mut report = tokio::time::interval(Duration::from_secs(5));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = report.tick() => {
                let mut tips: Vec<(u64, String, usize)> = Vec::new();
                for node in &running {
                    let core = std::sync::Arc::clone(&node.node);
                    let Ok(tip) = tokio::task::spawn_blocking(move || core.tip()).await else {
                        continue;
                    };
                    tips.push((tip.height.0, tip.hash.to_string(), node.p2p.peers().len()));
                }
                let agree = tips.windows(2).all(|pair| pair[0].1 == pair[1].1);
                let heights: Vec<String> = tips
                    .iter()
                    .enumerate()
                    .map(|(index, (height, _, peers))| format!("node {}: height {height}, {peers} peers", index + 1))
                    .collect();
                println!("{} | tips {}", heights.join(" | "), if agree { "agree" } else { "differ (a fork is resolving)" });
            }
        }
    }
    println!("stopping {} nodes", running.len());
    for node in running {
        node.shutdown().await;
    }
    Ok(())
}
