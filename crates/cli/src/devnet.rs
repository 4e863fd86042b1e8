//! `powchain devnet`: N connected nodes in one process, on consecutive ports, each with its
//! own data, stopped together on Ctrl-C. A network a newcomer can watch.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::args::DevnetArgs;
use powchain_launch::{RunningNode, launch, shutdown_signal};
use powchain_node::{DirectoryLock, NodeError};

/// Starts the nodes, prints where they are, reports heights until Ctrl-C, stops them.
///
/// # Errors
/// If a node cannot start (a port in use, a damaged data directory).
pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    // Listening before the nodes start: Ctrl-C during start-up stops them cleanly.
    let stop = shutdown_signal();
    args.check_ports().map_err(anyhow::Error::msg)?;
    if args.fresh {
        start_fresh(&args)?;
    }
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

/// The files a node writes in its data directory, which `--fresh` deletes: the stores, the
/// wallet, the cookie, the address book, their temporary files and the files moved aside
/// as damaged.
fn is_node_data(name: &str) -> bool {
    const FILES: [&str; 5] = [
        "chain.redb",
        "mempool.redb",
        "wallet.keys",
        ".cookie",
        powchain_launch::peers_file::PEERS_FILE_NAME,
    ];
    FILES.iter().any(|file| {
        name == *file
            || name
                .strip_prefix(file)
                .is_some_and(|rest| rest == ".tmp" || rest.starts_with(".damaged-"))
    })
}

/// Deletes the node data files in `data_dir` (see [`is_node_data`]); anything else stays.
/// The names deleted, sorted.
///
/// # Errors
/// If the directory cannot be listed or a file cannot be deleted.
fn delete_node_data(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot list {}", data_dir.display()));
        }
    };
    let mut deleted = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", data_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_node_data(&name) || !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        let path: PathBuf = entry.path();
        std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
        deleted.push(name);
    }
    deleted.sort();
    Ok(deleted)
}

/// The lock of `data_dir`, held while `--fresh` deletes its files so no node starts
/// meanwhile; `None` if there is no directory yet (nothing to delete) or it cannot be
/// locked (deleting then says what is wrong, if anything is).
///
/// # Errors
/// If a running node holds it: a node of this directory may run on other ports than the
/// devnet's, which the port check cannot see.
fn lock_unless_in_use(data_dir: &Path) -> anyhow::Result<Option<DirectoryLock>> {
    match DirectoryLock::acquire(data_dir) {
        Ok(lock) => Ok(Some(lock)),
        Err(NodeError::DataDirInUse { .. }) => bail!(
            "--fresh: {} is in use by a running node; stop it before deleting its data",
            data_dir.display()
        ),
        Err(_) => Ok(None),
    }
}

/// `--fresh`: refuses while any node's port is taken (a devnet still running on this data
/// would lose its files under it), then deletes each node's data files.
///
/// # Errors
/// A port in use, or a file that cannot be deleted.
fn start_fresh(args: &DevnetArgs) -> anyhow::Result<()> {
    for index in 0..args.nodes {
        let node = args.node_args(index);
        for port in [node.http_port, node.p2p_port] {
            if port != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                bail!(
                    "--fresh: port {port} is in use; stop the devnet (or whatever listens \
                     there) before deleting its data"
                );
            }
        }
    }
    for index in 0..args.nodes {
        let data_dir = args.node_args(index).data_dir();
        let _lock = lock_unless_in_use(&data_dir)?;
        let deleted = delete_node_data(&data_dir)?;
        if !deleted.is_empty() {
            println!(
                "fresh start: deleted {} from {}",
                deleted.join(", "),
                data_dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_refuses_a_data_directory_a_running_node_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let held = DirectoryLock::acquire(dir.path()).expect("a node holds it");
        let error = lock_unless_in_use(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("in use"), "{error}");
        drop(held);
        assert!(lock_unless_in_use(dir.path()).expect("free").is_some());
        let missing = dir.path().join("never-made");
        assert!(
            lock_unless_in_use(&missing)
                .expect("nothing to delete")
                .is_none()
        );
    }

    #[test]
    fn fresh_deletes_the_node_data_and_keeps_everything_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let names = [
            "chain.redb",
            "mempool.redb",
            "wallet.keys",
            ".cookie",
            "wallet.keys.tmp",
            "chain.redb.damaged-1764800000",
            "peers.json",
            "peers.json.tmp",
            "peers.json.damaged-1764800000",
            "powchain.toml",
            "notes.txt",
            "chain.redb.backup",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("wallet.keys.d")).expect("mkdir");
        let deleted = delete_node_data(dir.path()).expect("deletes");
        assert_eq!(
            deleted,
            vec![
                ".cookie",
                "chain.redb",
                "chain.redb.damaged-1764800000",
                "mempool.redb",
                "peers.json",
                "peers.json.damaged-1764800000",
                "peers.json.tmp",
                "wallet.keys",
                "wallet.keys.tmp"
            ]
        );
        for kept in [
            "powchain.toml",
            "notes.txt",
            "chain.redb.backup",
            "wallet.keys.d",
        ] {
            assert!(dir.path().join(kept).exists(), "{kept} stays");
        }
        assert!(
            delete_node_data(&dir.path().join("missing"))
                .expect("nothing")
                .is_empty()
        );
    }
}
