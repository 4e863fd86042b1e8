//! The checks a data directory passes before the node opens it: a chain that was lost is
//! not silently replaced by a new one, nor a wallet the chain may pay by a new wallet,
//! unless the user asked (`--reindex`, `--new-wallet`).
//!
//! ```text
//!   Node::open ──▶ reindex? wallet.keys missing next to ──▶ move chain.redb aside
//!                  a chain.redb ever written, and no       (chain.redb.damaged-<secs>)
//!                  --new-wallet? refuse
//!              ──▶ else: chain.redb missing or empty next to wallet.keys or
//!                  mempool.redb? refuse
//!              ──▶ ChainState::open ──▶ wallet.keys missing above genesis and no
//!                                       --new-wallet? refuse ──▶ wallet, pool store
//! ```
//!
//! A brand new, empty data directory passes every check: that is how a node starts the
//! first time.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use powchain_consensus::BlockHeight;
use thiserror::Error;
use tracing::warn;

use crate::config::NodeConfig;
use crate::error::NodeError;

/// True if `path` is missing or holds no bytes (a store that was never written).
fn is_missing_or_empty(path: &Path) -> bool {
    std::fs::metadata(path).map_or(true, |metadata| metadata.len() == 0)
}

/// Refuses to start a new chain in a directory that held one: `chain.redb` missing or
/// empty while the wallet or the pool store of an earlier run is there.
///
/// # Errors
/// [`NodeError::ChainMissing`] naming the chain file and what was found beside it.
pub(crate) fn refuse_lost_chain(config: &NodeConfig) -> Result<(), NodeError> {
    let chain = config.chain_path();
    if !is_missing_or_empty(&chain) {
        return Ok(());
    }
    let earlier_state = [config.wallet_path(), config.pool_path()]
        .into_iter()
        .find(|path| path.exists());
    match earlier_state {
        None => Ok(()),
        Some(found) => Err(NodeError::ChainMissing {
            empty: chain.exists(),
            path: chain,
            found,
        }),
    }
}

/// Refuses to make a new wallet next to a chain above genesis, which may pay the wallet
/// that is gone, unless `config.new_wallet` asks for one.
///
/// # Errors
/// [`NodeError::WalletMissing`] naming the key file and the chain's height.
pub(crate) fn refuse_lost_wallet(
    config: &NodeConfig,
    chain_height: BlockHeight,
) -> Result<(), NodeError> {
    let wallet = config.wallet_path();
    if config.new_wallet || chain_height == BlockHeight::GENESIS || wallet.exists() {
        return Ok(());
    }
    Err(NodeError::WalletMissing {
        path: wallet,
        height: Some(chain_height),
    })
}

/// Refuses `--reindex` where the wallet is gone but a chain is there, unless
/// `config.new_wallet` asks for a new wallet. It runs before the chain is moved aside,
/// as nothing may be touched once the start is refused, and because the chain opened
/// after the move is at genesis and would pass [`refuse_lost_wallet`]. The old chain is
/// not opened to learn its height: it may be too damaged to open, which is why it is
/// being reindexed. So any chain file ever written counts as one that may pay the wallet.
///
/// # Errors
/// [`NodeError::WalletMissing`] naming the key file, with no height.
pub(crate) fn refuse_lost_wallet_before_reindex(config: &NodeConfig) -> Result<(), NodeError> {
    let wallet = config.wallet_path();
    if config.new_wallet || is_missing_or_empty(&config.chain_path()) || wallet.exists() {
        return Ok(());
    }
    Err(NodeError::WalletMissing {
        path: wallet,
        height: None,
    })
}

/// The data directory's lock, held for as long as the node is open (and by `powchain
/// check` while it reads the chain): one process a directory. The stores' own locks
/// (redb's) would refuse a second node only once it opens them, after `--reindex` has
/// already renamed the running node's chain and pool aside (a rename succeeds under an
/// open file), and the wallet's key file has no lock of its own: two processes would
/// each rewrite it from their own list of keys.
#[derive(Debug)]
pub struct DirectoryLock {
    /// Open for as long as the lock is held: the operating system releases it when the
    /// file is closed, a crash included, so a stale lock file never keeps a node out.
    _file: std::fs::File,
}

/// The lock file in a data directory.
pub(crate) const LOCK_FILE: &str = ".lock";

impl DirectoryLock {
    /// Takes the lock of `directory` (creating its lock file), or fails at once if another
    /// process holds it.
    ///
    /// # Errors
    /// [`NodeError::DataDirInUse`] if it is held, [`NodeError::DataDir`] if the lock file
    /// cannot be opened or locked.
    pub fn acquire(directory: &Path) -> Result<DirectoryLock, NodeError> {
        let path = directory.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| NodeError::DataDir {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DirectoryLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::DataDirInUse {
                directory: directory.to_path_buf(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(NodeError::DataDir { path, source }),
        }
    }
}

/// Renames `path` to `<path>.damaged-<unix seconds>` if it exists, so a new store starts
/// in its place and the old one stays for a look or a restore.
///
/// # Errors
/// [`NodeError::MoveAside`] if the rename fails.
pub fn move_aside(path: &Path, now_ms: u64) -> Result<Option<PathBuf>, NodeError> {
    if !path.exists() {
        return Ok(None);
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{}", now_ms / 1000));
    let mut aside = PathBuf::from(name);
    let mut attempt = 1u32;
    while aside.exists() {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".damaged-{}-{attempt}", now_ms / 1000));
        aside = PathBuf::from(name);
        attempt += 1;
    }
    std::fs::rename(path, &aside).map_err(|source| NodeError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    // The rename is durable only once the directory is synced: a crash before that could
    // bring the old name back next to the new store.
    sync_directory_of(path).map_err(|source| NodeError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    warn!(
        from = %path.display(),
        to = %aside.display(),
        "moved the store aside; a new one starts in its place"
    );
    Ok(Some(aside))
}

/// Syncs the directory holding `path`, which makes a rename (or a creation) in it durable:
/// syncing the file alone does not.
fn sync_directory_of(path: &Path) -> io::Result<()> {
    File::open(directory_of(path))?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Why [`replace_private_file`] failed.
#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct FileWriteError {
    /// The file (the temporary one, the one replaced, or their directory).
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: io::Error,
}

/// The mode of a file [`replace_private_file`] writes: read and write for its owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Replaces the file at `path` with `bytes`, atomically and owner-only: `<path>.tmp` is
/// created with [`PRIVATE_FILE_MODE`] (by the system call that creates it, so it is never
/// readable by others, not even for a moment), written, synced and renamed over `path`,
/// and the directory synced. A reader sees the old contents or the new, never a part,
/// and a crash leaves one or the other.
///
/// One writer a path at a time: two would share the temporary file.
///
/// # Errors
/// [`FileWriteError`] naming the file the operating system refused. The temporary file
/// is removed after a failure, as is one left over by a crash.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), FileWriteError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| FileWriteError { path, source }
    };
    let Some(name) = path.file_name() else {
        return Err(failed(path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path must end in a file name",
        )));
    };
    let mut temporary_name = name.to_owned();
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    // A leftover of a crash between create and rename.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(failed(&temporary)(source)),
    }
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(failed(&temporary))
        .and_then(|()| fs::rename(&temporary, path).map_err(failed(path)));
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    sync_directory_of(path).map_err(failed(directory_of(path)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use powchain_chain::ChainError;
    use powchain_consensus::{Address, Network};

    use crate::clock::Clock;
    use crate::node::Node;
    use crate::testing::{ManualClock, TestNode};

    use super::*;

    #[test]
    fn a_private_file_is_replaced_whole_owner_only_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;

        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("state.json");
        let temporary = directory.path().join("state.json.tmp");
        // A crash's leftover, readable by all, is not reused.
        std::fs::write(&temporary, b"left over").expect("write");
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::write(&path, b"old, readable by all").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

        replace_private_file(&path, b"new").expect("replaced");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, PRIVATE_FILE_MODE);
        assert!(!temporary.exists());
    }

    #[test]
    fn a_private_file_that_cannot_be_put_in_place_leaves_what_was_there() {
        let directory = tempfile::tempdir().expect("temp dir");
        // A folder where the file should be: the rename is refused.
        let path = directory.path().join("state.json");
        std::fs::create_dir(&path).expect("mkdir");
        std::fs::write(path.join("inside"), b"kept").expect("write");

        let error = replace_private_file(&path, b"new").expect_err("refused");
        assert_eq!(error.path, path);
        assert_eq!(std::fs::read(path.join("inside")).expect("kept"), b"kept");
        assert!(!directory.path().join("state.json.tmp").exists());
        assert_eq!(
            replace_private_file(Path::new("/"), b"x")
                .expect_err("no file name")
                .source
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    /// A closed node whose chain is three blocks above genesis, paying its wallet.
    fn closed_with_chain() -> (NodeConfig, Arc<ManualClock>, tempfile::TempDir, Address) {
        let node = TestNode::open(Network::Regtest);
        for _ in 0..3 {
            node.mine(false);
        }
        let address = node.node.wallet_address();
        let (config, clock, dir) = node.close();
        (config, clock, dir, address)
    }

    fn open(config: &NodeConfig, clock: &Arc<ManualClock>) -> Result<Arc<Node>, NodeError> {
        Node::open(config.clone(), Arc::clone(clock) as Arc<dyn Clock>)
    }

    fn moved_aside(dir: &Path, name: &str) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .expect("list the data directory")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| {
                path.file_name()
                    .and_then(|file| file.to_str())
                    .is_some_and(|file| file.starts_with(&format!("{name}.damaged-")))
            })
            .collect()
    }

    #[test]
    fn a_missing_chain_next_to_a_wallet_is_refused_and_reindex_starts_keeping_the_wallet() {
        let (mut config, clock, dir, address) = closed_with_chain();
        std::fs::remove_file(config.chain_path()).expect("delete the chain");
        let error = open(&config, &clock).err().expect("refused");
        let message = error.to_string();
        assert!(matches!(
            error,
            NodeError::ChainMissing { empty: false, .. }
        ));
        assert!(
            message.contains(&config.chain_path().display().to_string())
                && message.contains("missing")
                && message.contains("--reindex"),
            "{message}"
        );
        assert!(!config.chain_path().exists(), "nothing was created");
        config.reindex = true;
        let node = open(&config, &clock).expect("--reindex starts");
        assert_eq!(node.tip().height, BlockHeight::GENESIS);
        assert_eq!(node.wallet_address(), address);
        drop(node);
        drop(dir);
    }

    #[test]
    fn an_empty_chain_file_next_to_a_wallet_is_refused() {
        let (config, clock, _dir, _) = closed_with_chain();
        std::fs::write(config.chain_path(), b"").expect("empty the chain");
        let error = open(&config, &clock).err().expect("refused");
        assert!(
            matches!(error, NodeError::ChainMissing { empty: true, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("is empty"), "{error}");
        assert_eq!(
            std::fs::metadata(config.chain_path())
                .expect("still there")
                .len(),
            0,
            "left as it was"
        );
    }

    #[test]
    fn a_missing_wallet_next_to_a_chain_is_refused_unless_a_new_one_is_asked_for() {
        let (mut config, clock, _dir, address) = closed_with_chain();
        std::fs::remove_file(config.wallet_path()).expect("delete the wallet");
        let error = open(&config, &clock).err().expect("refused");
        let message = error.to_string();
        assert!(
            matches!(error, NodeError::WalletMissing { .. }),
            "{message}"
        );
        assert!(
            message.contains(&config.wallet_path().display().to_string())
                && message.contains("--new-wallet")
                && message.contains("3 blocks high"),
            "{message}"
        );
        assert!(!config.wallet_path().exists(), "no wallet was made");
        config.new_wallet = true;
        let node = open(&config, &clock).expect("--new-wallet starts");
        assert_ne!(node.wallet_address(), address);
        assert!(config.wallet_path().exists());
    }

    #[test]
    fn reindex_with_a_missing_wallet_next_to_a_chain_is_refused_before_anything_moves() {
        let (mut config, clock, dir, address) = closed_with_chain();
        std::fs::remove_file(config.wallet_path()).expect("delete the wallet");
        config.reindex = true;
        let healthy = std::fs::read(config.chain_path()).expect("read the chain");
        // A healthy chain, then one too damaged to open: there is no height to go by, so
        // the file being there is what counts.
        for chain in [healthy, vec![0x5a; 8192]] {
            std::fs::write(config.chain_path(), &chain).expect("write the chain");
            let error = open(&config, &clock).err().expect("refused");
            let message = error.to_string();
            assert!(
                matches!(error, NodeError::WalletMissing { height: None, .. }),
                "{message}"
            );
            assert!(
                message.contains(&config.wallet_path().display().to_string())
                    && message.contains("--reindex")
                    && message.contains("--new-wallet"),
                "{message}"
            );
            // Refused before anything was touched.
            assert!(moved_aside(dir.path(), "chain.redb").is_empty());
            assert!(moved_aside(dir.path(), "mempool.redb").is_empty());
            assert_eq!(
                std::fs::read(config.chain_path()).expect("still there"),
                chain
            );
            assert!(!config.wallet_path().exists(), "no wallet was made");
        }
        config.new_wallet = true;
        let node = open(&config, &clock).expect("--reindex --new-wallet starts");
        assert_eq!(node.tip().height, BlockHeight::GENESIS);
        assert_ne!(node.wallet_address(), address);
        assert!(config.wallet_path().exists());
        assert_eq!(moved_aside(dir.path(), "chain.redb").len(), 1);
    }

    #[test]
    fn a_missing_wallet_next_to_a_chain_at_genesis_is_made_as_on_a_first_start() {
        let (config, clock, _dir) = TestNode::open(Network::Regtest).close();
        std::fs::remove_file(config.wallet_path()).expect("delete the wallet");
        open(&config, &clock).expect("a chain at genesis pays nobody");
        assert!(config.wallet_path().exists());
    }

    #[test]
    fn a_damaged_chain_is_named_and_reindex_moves_it_aside() {
        let (mut config, clock, dir, address) = closed_with_chain();
        std::fs::write(config.chain_path(), [0x5a; 8192]).expect("damage the chain");
        let error = open(&config, &clock).err().expect("refused");
        assert!(
            matches!(error, NodeError::Chain(ChainError::Damaged { .. })),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains(&config.chain_path().display().to_string()),
            "{error}"
        );
        config.reindex = true;
        let node = open(&config, &clock).expect("--reindex starts");
        assert_eq!(node.tip().height, BlockHeight::GENESIS);
        assert_eq!(node.wallet_address(), address);
        let aside = moved_aside(dir.path(), "chain.redb");
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read(&aside[0]).expect("kept"),
            vec![0x5a; 8192],
            "the damaged file is kept as it was"
        );
    }

    #[test]
    fn a_damaged_pool_store_is_named_and_reindex_moves_it_aside() {
        let (mut config, clock, dir, _) = closed_with_chain();
        std::fs::write(config.pool_path(), [0x5a; 8192]).expect("damage the pool store");
        let error = open(&config, &clock).err().expect("refused");
        assert!(
            matches!(error, NodeError::PoolStoreDamaged { .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains(&config.pool_path().display().to_string()),
            "{error}"
        );
        config.reindex = true;
        open(&config, &clock).expect("--reindex starts");
        assert_eq!(moved_aside(dir.path(), "mempool.redb").len(), 1);
    }

    #[test]
    fn a_second_node_on_a_directory_in_use_touches_nothing_even_with_reindex() {
        let (mut config, clock, dir, address) = closed_with_chain();
        let first = open(&config, &clock).expect("opens");
        config.reindex = true;
        let error = open(&config, &clock).err().expect("refused");
        assert!(matches!(error, NodeError::DataDirInUse { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("in use") && message.contains(LOCK_FILE),
            "{message}"
        );
        // `--reindex` would have moved the running node's stores aside before any store's
        // own lock refused it.
        assert!(moved_aside(dir.path(), "chain.redb").is_empty());
        assert!(moved_aside(dir.path(), "mempool.redb").is_empty());
        first
            .mine_one(Vec::new(), false)
            .expect("the first node goes on");
        assert_eq!(first.tip().height.0, 4);
        drop(first);
        // The lock goes with the node that held it.
        config.reindex = false;
        let again = open(&config, &clock).expect("opens once the first is closed");
        assert_eq!(again.tip().height.0, 4);
        assert_eq!(again.wallet_address(), address);
    }

    #[test]
    fn a_pool_store_another_process_holds_is_in_use_not_damaged() {
        let (mut config, clock, dir, _) = closed_with_chain();
        let holder = redb::Database::create(config.pool_path()).expect("opens the pool store");
        config.reindex = true;
        let error = open(&config, &clock).err().expect("refused");
        assert!(matches!(error, NodeError::DataDirInUse { .. }), "{error}");
        assert!(moved_aside(dir.path(), "mempool.redb").is_empty());
        drop(holder);
    }

    #[test]
    fn an_in_memory_node_keeps_its_chain_and_pool_off_the_disk() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let params = Network::Regtest.params();
        let clock =
            ManualClock::starting_at(params.genesis().header.time_ms + params.target_block_time_ms);
        let mut config = NodeConfig::new(Network::Regtest, dir.path().to_path_buf());
        config.miner_threads = 1;
        config.signature_threads = 1;
        config.in_memory = true;
        let node = open(&config, &clock).expect("opens");
        for _ in 0..3 {
            node.mine_one(Vec::new(), false).expect("mined");
        }
        assert_eq!(node.tip().height.0, 3);
        assert!(!config.chain_path().exists(), "no chain file");
        assert!(!config.pool_path().exists(), "no pool file");
        drop(node);
        // Opened again, it starts from genesis: nothing was kept.
        let node = open(&config, &clock).expect("opens again");
        assert_eq!(node.tip().height.0, 0);
    }
}
