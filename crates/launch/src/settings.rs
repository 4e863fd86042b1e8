//! `Settings`: everything a node needs to start, already checked. The binary builds them
//! from flags and the tutorial's environment variables in one step; nothing downstream
//! parses or validates them again.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use powchain_consensus::Network;
use powchain_p2p::PeerUrl;

/// A node's validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which network.
    pub network: Network,
    /// Where the chain, pool, wallet and cookie file live.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens (port 0: any free port).
    pub http: SocketAddr,
    /// Where peers connect (port 0: any free port).
    pub p2p: SocketAddr,
    /// Peers to keep connecting to (the tutorial's `PEERS`).
    pub peers: Vec<PeerUrl>,
    /// Mine continuously from the start.
    pub mine: bool,
    /// Threads for mining (default: every core).
    pub miner_threads: Option<NonZeroUsize>,
    /// Require the API token for spending, mining and peer changes on loopback too (it is
    /// always required off loopback).
    pub require_token: bool,
    /// A file holding the wallet's passphrase, if the key file is to be encrypted.
    pub wallet_passphrase_file: Option<PathBuf>,
    /// Move `chain.redb` (and a damaged pool store) aside and sync the chain again from
    /// peers, keeping the wallet (`NodeConfig::reindex`).
    pub reindex: bool,
    /// Create a new wallet although `wallet.keys` is missing next to a chain above genesis
    /// (`NodeConfig::new_wallet`).
    pub new_wallet: bool,
    /// Bytes sent to peers a day past which blocks more than a week older than the tip are
    /// not served (`P2pConfig::max_upload_bytes`); none: no target.
    pub max_upload_bytes: Option<u64>,
}

impl Settings {
    /// Settings for a regtest node on loopback, on ports the system chooses, in `data_dir`:
    /// what tests and benchmarks start.
    pub fn regtest_on_loopback(data_dir: PathBuf) -> Settings {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Settings {
            network: Network::Regtest,
            data_dir,
            http: loopback,
            p2p: loopback,
            peers: Vec::new(),
            mine: false,
            miner_threads: NonZeroUsize::new(1),
            require_token: false,
            wallet_passphrase_file: None,
            reindex: false,
            new_wallet: false,
            max_upload_bytes: None,
        }
    }
}
