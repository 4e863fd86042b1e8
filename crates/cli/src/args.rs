//! Command-line flags (with the tutorial's environment variables) and their validation
//! into settings, in one step.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use powchain_api::ApiToken;
use powchain_consensus::Network;
use powchain_launch::Settings;
use powchain_p2p::PeerUrl;

/// powchain: a proof-of-work cryptocurrency node.
///
/// Without a subcommand, runs a node (the same as `powchain node`).
#[derive(Parser, Debug)]
#[command(
    name = "powchain",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Node flags, when no subcommand is given.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node (the default).
    Node(NodeArgs),
    /// Start a local network of connected nodes in one process (Ctrl-C stops them all).
    Devnet(DevnetArgs),
    /// Show a running node's status: a summary for a person, or `--json` for scripts.
    Status {
        /// Print the node's raw `GET /status` answer instead of the summary.
        #[arg(long)]
        json: bool,
        /// Which node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Use a running node's wallet.
    Wallet {
        /// What to do with the wallet.
        #[command(subcommand)]
        action: WalletAction,
        /// Which node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a running node's peers, or add, remove, list banned and unban peers.
    Peers {
        /// What to do (default: list the connected peers).
        #[command(subcommand)]
        action: Option<PeersAction>,
        /// Print the node's raw JSON answer instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Which node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send test coins from the node's wallet (devnet and regtest only, at most 10 coins).
    Faucet {
        /// The address to pay.
        address: String,
        /// How many coins (for example 1.5).
        coins: String,
        /// Which node.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Measure every hot path against this machine's own limits (release build).
    Bench(BenchArgs),
    /// Run a deterministic simulated network of real nodes (docs/SIMULATION.md): the same
    /// seed prints the same report.
    Simulate(SimulateArgs),
    /// Check a stopped node's data: every main-chain block, and the UTXO set against one
    /// rebuilt from genesis (exits non-zero with the first difference).
    Check(CheckArgs),
    /// Ask a running node to mine one block.
    Mine {
        /// A note for the block's coinbase (the tutorial's `data`).
        #[arg(long)]
        data: Option<String>,
        /// Which node.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Wallet subcommands.
#[derive(Subcommand, Debug)]
pub enum WalletAction {
    /// Print the wallet's default address.
    Address {
        /// Make and print a fresh address instead.
        #[arg(long)]
        new: bool,
    },
    /// Print the wallet's balance in coins.
    Balance {
        /// Print the node's raw `GET /balance` answer (units) instead.
        #[arg(long)]
        json: bool,
    },
    /// List the wallet's transactions, newest first.
    History {
        /// How many to show (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Print the node's raw `GET /wallet/history` answer (units) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pay an address.
    Send {
        /// The recipient's address.
        recipient: String,
        /// The amount in coins (for example 1.5).
        amount: String,
        /// Fee rate in units per byte (default: the node's).
        #[arg(long)]
        fee_rate: Option<u64>,
    },
}

/// Peer subcommands.
#[derive(Subcommand, Debug)]
pub enum PeersAction {
    /// Connect to a node and keep reconnecting (`ws://host:port`).
    Add {
        /// The peer's address.
        url: String,
    },
    /// Disconnect a peer and stop dialling it (until `peers add` names it again).
    Remove {
        /// The peer's address, as `powchain peers` lists it.
        url: String,
    },
    /// List the bans in force.
    Banned,
    /// Lift a ban.
    Unban {
        /// The banned peer, as `powchain peers banned` lists it (an IP address, or
        /// `localhost:PORT` for a local node).
        address: String,
    },
}

/// Flags of `powchain devnet`.
#[derive(Args, Debug, Clone)]
pub struct DevnetArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Every node mines continuously.
    #[arg(long)]
    pub mine: bool,
    /// `devnet` (real proof of work) or `regtest` (instant blocks).
    #[arg(long, env = "NETWORK", default_value = "devnet")]
    pub network: Network,
    /// HTTP port of the first node; the others follow consecutively.
    #[arg(long, default_value_t = 3001)]
    pub http_port: u16,
    /// P2P port of the first node; the others follow consecutively.
    #[arg(long, default_value_t = 5001)]
    pub p2p_port: u16,
    /// Folder holding one data directory per node (default: `./data`).
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// Mining threads per node (default: the cores shared among the nodes, at least 1).
    #[arg(long)]
    pub miner_threads: Option<usize>,
    /// Start from new data: delete each node's chain, pool, wallet, cookie and address
    /// book first (a `powchain.toml` and any other file stay). Refused while a node's port
    /// is in use.
    #[arg(long)]
    pub fresh: bool,
}

impl DevnetArgs {
    /// Checks the ports before anything starts: each node needs its own HTTP and P2P port
    /// (consecutive from the first, none past 65535, the two ranges apart), and its data
    /// directory is named after its HTTP port, so port 0 (any free port) cannot name it.
    ///
    /// # Errors
    /// What is wrong, naming the flag.
    pub fn check_ports(&self) -> Result<(), String> {
        let range = |flag: &str, first: u16| -> Result<(u32, u32), String> {
            let last = u32::from(first) + u32::from(self.nodes) - 1;
            if first == 0 {
                return Err(format!(
                    "{flag} 0 is not available to a devnet: each node's port is the first plus \
                     its index, and its data directory is named after its HTTP port"
                ));
            }
            if last > u32::from(u16::MAX) {
                return Err(format!(
                    "{flag} {first} leaves no room for {} nodes: the last would take port {last}",
                    self.nodes
                ));
            }
            Ok((u32::from(first), last))
        };
        let http = range("--http-port", self.http_port)?;
        let p2p = range("--p2p-port", self.p2p_port)?;
        if http.0 <= p2p.1 && p2p.0 <= http.1 {
            return Err(format!(
                "--http-port {}-{} and --p2p-port {}-{} overlap: {} nodes take {} ports each",
                http.0, http.1, p2p.0, p2p.1, self.nodes, self.nodes
            ));
        }
        Ok(())
    }

    /// The flags of node `index` (0-based): consecutive ports, its own data directory, and
    /// the first and previous nodes as peers (peer exchange connects the rest).
    pub fn node_args(&self, index: u16) -> NodeArgs {
        let http_port = self.http_port.saturating_add(index);
        let mut peers = Vec::new();
        if index > 0 {
            peers.push(format!("ws://127.0.0.1:{}", self.p2p_port));
        }
        if index > 1 {
            peers.push(format!(
                "ws://127.0.0.1:{}",
                self.p2p_port.saturating_add(index - 1)
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        NodeArgs {
            http_port,
            p2p_port: self.p2p_port.saturating_add(index),
            peers,
            data_dir: Some(self.data_root.join(format!("{}-{http_port}", self.network))),
            network: self.network,
            mine: self.mine,
            miner_threads: Some(
                self.miner_threads
                    .unwrap_or((cores / usize::from(self.nodes)).max(1)),
            ),
            http_bind: IpAddr::from([127, 0, 0, 1]),
            p2p_bind: IpAddr::from([127, 0, 0, 1]),
            require_token: false,
            wallet_passphrase_file: None,
            reindex: false,
            new_wallet: false,
            config: None,
            max_upload_mib: 0,
        }
    }
}

/// Flags of `powchain bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A reduced suite that runs every code path in seconds (figures are noisy).
    #[arg(long)]
    pub quick: bool,
    /// Only these groups: mining, signatures, connect, pool, sync, network (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Threads for the "all threads" figures [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Payments sent through the three-node network [default: 2,000; 30 with --quick]:
    /// 20,000 shows its throughput rather than its latency (the report's suite is then
    /// "custom").
    #[arg(long)]
    pub network_payments: Option<usize>,
}

/// Flags of `powchain simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 30)]
    pub nodes: usize,
    /// Every random draw (topology, latencies, who finds which block) follows from it.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated time during which blocks are found: 90s, 10m, 2h.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: std::time::Duration,
    /// How links delay messages: wan (between cloud regions) or lan (1 ms).
    #[arg(long, default_value = "wan")]
    pub latency: powchain_sim::LatencyModel,
    /// Peers each node dials.
    #[arg(long, default_value_t = 8)]
    pub outbound: usize,
    /// The mean time between blocks, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub block_interval_ms: u64,
    /// How blocks cross links: compact (BIP-152 compact blocks, pushed before
    /// validation by three peers) or full (whole blocks by inv and getdata, as before).
    #[arg(long, default_value = "compact")]
    pub relay: powchain_sim::Relay,
    /// Peers each node asks to push new blocks at once (compact relay's high-bandwidth
    /// mode, 0 to 3): more is faster and sends more duplicate compact blocks.
    #[arg(
        long,
        default_value_t = powchain_p2p::config::HIGH_BANDWIDTH_PEERS as u8,
        value_parser = clap::value_parser!(u8).range(0..=3)
    )]
    pub high_bandwidth_peers: u8,
    /// How long a node waits, in milliseconds, before it asks a peer that announced a new
    /// block for it while a peer that pushes blocks to it has not shown it yet (0: at once,
    /// as Bitcoin Core does; the default is the node's). The push is usually on its way;
    /// asking too brings the block twice.
    #[arg(
        long,
        default_value_t = powchain_p2p::config::PUSH_WAIT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    pub push_wait_ms: u64,
    /// With --selfish: the selfish miner's node keeps the blocks it publishes that only tie
    /// the public chain, as an ordinary node keeps any block of equal work (it never wins a
    /// tie: Eyal and Sirer's γ = 0). Without it, the miner sends them itself.
    #[arg(long, requires = "selfish")]
    pub selfish_keeps_ties: bool,
    /// How long each node gathers new transactions before announcing them to a peer in one
    /// inv, in milliseconds (the default is the node's; blocks never wait).
    #[arg(
        long,
        default_value_t = powchain_p2p::config::TRANSACTION_ANNOUNCEMENT_INTERVAL.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub transaction_interval_ms: u64,
    /// How long a payment must have been in a miner's pool before the miner's blocks take
    /// it, in milliseconds (0: every pooled payment, as a node's miner does). Payments
    /// every node has had time to hear of let peers rebuild a compact block without
    /// asking for missing ones.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub template_min_pool_age_ms: u64,
    /// How nodes are placed on the simulator's hosts: node (a host each, the default) or
    /// region (a host a region, each node on a port of its own). The simulator visits
    /// every pair of hosts at every step, so a host a region runs large networks many
    /// times faster; nodes of one region then reach each other a step apart, --partition
    /// splits the network along regions, and --crash is refused.
    #[arg(long, default_value = "node")]
    pub hosts: powchain_sim::HostLayout,
    /// What validation costs a node, in microseconds: BLOCK,PAYMENT,TRANSACTION (a block
    /// besides its payments, each payment in it, a transaction relayed alone); 0,0,0 for
    /// none. Without it, the costs measured on a 2-core machine: 600,45,100.
    #[arg(long, value_parser = parse_validation_us, conflicts_with = "validation_from")]
    pub validation_us: Option<(u64, u64, u64)>,
    /// Read the validation costs from a `powchain bench --json` report of the machine at
    /// hand.
    #[arg(long)]
    pub validation_from: Option<PathBuf>,
    /// Payments a second over the whole network (signed transactions through random
    /// nodes).
    #[arg(long, default_value_t = 20.0)]
    pub payments_per_second: f64,
    /// Split the network into two halves for this long (90s, 10m), from a quarter of the
    /// mining window, then heal it and measure how soon every node is on the most-work
    /// chain.
    #[arg(long, value_parser = parse_duration)]
    pub partition: Option<std::time::Duration>,
    /// The largest miner holds each block it finds this long (1s, 3s) before publishing
    /// it; the report gives its share of the main chain against its hash power.
    #[arg(long, value_parser = parse_duration, conflicts_with = "partition")]
    pub withhold: Option<std::time::Duration>,
    /// A tenth of the nodes crash for this long (30s, 2m), from a quarter of the mining
    /// window, then restart from their disks; the report gives how soon every node is on
    /// the most-work chain again.
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["partition", "withhold"])]
    pub crash: Option<std::time::Duration>,
    /// This many hostile hosts (not nodes) each dial 8 nodes from a quarter of the mining
    /// window: every other one floods them with legal messages over the rate limit, the
    /// rest announce transactions that do not exist; the report says how each was met.
    #[arg(long, conflicts_with_all = ["partition", "withhold", "crash"])]
    pub hostile: Option<usize>,
    /// The largest miner mines selfishly (Eyal and Sirer): it keeps its blocks private
    /// and publishes them to overtake the public chain; the report gives its share of
    /// the main chain against its hash power.
    #[arg(long, conflicts_with_all = ["partition", "withhold", "crash", "hostile"])]
    pub selfish: bool,
    /// The largest miner's share of the hash power (0.4), the others scaled to the rest
    /// [default: as drawn, 0.28].
    #[arg(long)]
    pub largest_share: Option<f64>,
    /// Peers the largest miner dials (more than --outbound: a miner better connected than
    /// the rest, whose blocks reach more nodes first) [default: --outbound].
    #[arg(long)]
    pub largest_outbound: Option<usize>,
    /// Percent of TCP segments lost on every link (0.5, 2): a write that loses one leaves
    /// a retransmission timeout late (the round trip plus 200 ms), and its connection's
    /// later writes wait behind it.
    #[arg(long, default_value_t = 0.0, value_parser = parse_loss_percent)]
    pub loss_percent: f64,
    /// Each node's uplink bandwidth is drawn between these, in Mbit/s (`1-5` for slow
    /// links).
    #[arg(long, default_value = "20-100", value_parser = parse_mbit_range)]
    pub uplink_mbit: (u64, u64),
    /// Simulated time per step, in milliseconds: the resolution of every delay (larger
    /// steps run faster).
    #[arg(long, default_value_t = 1)]
    pub tick_ms: u64,
    /// Write the report as JSON to this file as well.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the propagation plot (SVG) to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// A loss rate in percent, from 0 to below 100.
fn parse_loss_percent(text: &str) -> Result<f64, String> {
    let percent: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of percent (0.5, 2)"))?;
    if (0.0..100.0).contains(&percent) {
        Ok(percent)
    } else {
        Err(format!(
            "{percent}% is not a loss rate: from 0 to below 100"
        ))
    }
}

/// A bandwidth range in Mbit/s as `MIN-MAX` (`20-100`), 1 <= MIN <= MAX.
fn parse_mbit_range(text: &str) -> Result<(u64, u64), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a range: MIN-MAX, as 20-100"))?;
    let parse = |number: &str| {
        number
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{number:?} is not a whole number of Mbit/s"))
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low == 0 || low > high {
        return Err(format!("{text:?}: need 1 <= MIN <= MAX"));
    }
    Ok((low, high))
}

/// `BLOCK,PAYMENT,TRANSACTION` microseconds, each at most a second.
fn parse_validation_us(text: &str) -> Result<(u64, u64, u64), String> {
    let micros: Vec<u64> = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<u64>()
                .ok()
                .filter(|micros| *micros <= 1_000_000)
                .ok_or_else(|| {
                    format!("{part:?} is not a whole number of microseconds up to 1000000")
                })
        })
        .collect::<Result<_, _>>()?;
    match micros[..] {
        [block, payment, transaction] => Ok((block, payment, transaction)),
        _ => Err(format!(
            "{text:?}: need three numbers, BLOCK,PAYMENT,TRANSACTION (as 600,45,100)"
        )),
    }
}

/// A duration as `90s`, `10m` or `2h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 10m or 2h"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value.saturating_mul(60),
        "h" => value.saturating_mul(3_600),
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    if seconds == 0 {
        return Err("the duration must be above zero".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// How to reach a running node. Global, so they may follow a subcommand as well
/// (`powchain wallet balance --node URL`).
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The node's HTTP address.
    #[arg(
        long,
        global = true,
        env = "POWCHAIN_NODE",
        default_value = "http://127.0.0.1:3001"
    )]
    pub node: String,
    /// The node's data directory, whose `.cookie` file holds the API token that spending,
    /// mining and new addresses need (default: `./data/<network>-<port>`, as the node's).
    #[arg(long, global = true, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The API token, instead of the one in the data directory's `.cookie` file (prefer the
    /// environment variable: a flag's value shows in `ps` and shell history).
    #[arg(long, global = true, env = "POWCHAIN_TOKEN", hide_env_values = true)]
    pub token: Option<ApiToken>,
}

/// Flags of a node.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Port of the HTTP API.
    #[arg(long, env = "HTTP_PORT", default_value_t = 3001)]
    pub http_port: u16,
    /// Port for peer-to-peer WebSocket connections.
    #[arg(long, env = "P2P_PORT", default_value_t = 5001)]
    pub p2p_port: u16,
    /// Peers to connect to: comma-separated `ws://host:port` addresses.
    #[arg(long, env = "PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Where the chain, pool and wallet live (default: `./data/<network>-<http port>`).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `devnet` (real proof of work) or `regtest` (instant blocks).
    #[arg(long, env = "NETWORK", default_value = "devnet")]
    pub network: Network,
    /// Mine continuously.
    #[arg(long, env = "MINE", value_parser = BoolishValueParser::new())]
    pub mine: bool,
    /// Threads for mining [default: all cores].
    #[arg(long, env = "MINER_THREADS")]
    pub miner_threads: Option<usize>,
    /// Interface for the HTTP API. Off loopback, spending, mining and peer changes need the
    /// API token from `<data-dir>/.cookie`; reads stay open: see docs/API.md.
    #[arg(long, env = "HTTP_BIND", default_value = "127.0.0.1")]
    pub http_bind: IpAddr,
    /// Interface for peer-to-peer connections.
    #[arg(long, env = "P2P_BIND", default_value = "0.0.0.0")]
    pub p2p_bind: IpAddr,
    /// Require the API token (from `<data-dir>/.cookie`) for spending, mining and peer
    /// changes on loopback too (always required off loopback).
    #[arg(long, env = "REQUIRE_TOKEN", value_parser = BoolishValueParser::new())]
    pub require_token: bool,
    /// A file holding the wallet's passphrase: the key file is encrypted with it (a plaintext
    /// one is encrypted in place at start). Never the passphrase itself on the command line.
    #[arg(long, env = "WALLET_PASSPHRASE_FILE")]
    pub wallet_passphrase_file: Option<PathBuf>,
    /// Start the chain again: move `chain.redb` aside (to `chain.redb.damaged-<unix
    /// seconds>`), as well as a damaged `mempool.redb`, and sync again from peers, keeping
    /// the wallet (a missing `wallet.keys` is still refused, unless `--new-wallet`). For a
    /// damaged or lost chain file; use it for one start only.
    #[arg(long, env = "REINDEX", value_parser = BoolishValueParser::new())]
    pub reindex: bool,
    /// Create a new wallet although `wallet.keys` is missing next to a chain above genesis,
    /// or next to the chain `--reindex` moves aside (the chain may pay the wallet that is
    /// gone: restore it instead if you can).
    #[arg(long, env = "NEW_WALLET", value_parser = BoolishValueParser::new())]
    pub new_wallet: bool,
    /// A configuration file of node flags by long name (`mine = true`), used where neither
    /// the command line nor the environment sets a flag (by default
    /// `<data-dir>/powchain.toml`, if it exists).
    #[arg(long, env = "POWCHAIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Upload target, MiB a day (Bitcoin Core's `-maxuploadtarget`): once the node has sent
    /// this much to peers in a 24-hour cycle, a peer asking for a block more than a week
    /// older than the tip is disconnected until the cycle ends; recent blocks and
    /// transactions still go.
    /// 0: no target.
    #[arg(long, env = "MAX_UPLOAD_MIB", default_value_t = 0)]
    pub max_upload_mib: u64,
}

/// Flags of `powchain check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The data directory to check (default: `./data/<network>-<http port>`, as the node's).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The network the data directory belongs to.
    #[arg(long, env = "NETWORK", default_value = "devnet")]
    pub network: Network,
    /// The node's HTTP port, only to find the default data directory.
    #[arg(long, env = "HTTP_PORT", default_value_t = 3001)]
    pub http_port: u16,
    /// Threads for the signature checks [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

impl CheckArgs {
    /// The data directory: the flag, or [`default_data_dir`].
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| default_data_dir(self.network, self.http_port))
    }
}

/// A node's data directory when none is given: `./data/<network>-<http port>`, so nodes
/// started from the same folder with different ports keep separate data (and a client run
/// from that folder finds a node's cookie file by its port).
pub fn default_data_dir(network: Network, http_port: u16) -> PathBuf {
    PathBuf::from("data").join(format!("{network}-{http_port}"))
}

impl NodeArgs {
    /// The data directory: the flag, or [`default_data_dir`].
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| default_data_dir(self.network, self.http_port))
    }

    /// The node's settings, checked in one step: what clap cannot check (combinations,
    /// peer addresses) is checked here, and nothing downstream parses them again.
    ///
    /// # Errors
    /// A message naming the bad flag and its environment variable.
    pub fn settings(&self) -> Result<Settings, String> {
        let miner_threads = match self.miner_threads {
            None => None,
            Some(threads) => Some(
                NonZeroUsize::new(threads)
                    .filter(|threads| threads.get() <= powchain_node::MAX_MINER_THREADS)
                    .ok_or_else(|| {
                        format!(
                            "--miner-threads (MINER_THREADS) must be at least 1 and at most {}, got {threads}",
                            powchain_node::MAX_MINER_THREADS
                        )
                    })?,
            ),
        };
        if self.http_port != 0 && self.http_port == self.p2p_port {
            return Err(format!(
                "--http-port (HTTP_PORT) and --p2p-port (P2P_PORT) are both {}",
                self.http_port
            ));
        }
        let peers = self
            .peers
            .iter()
            .map(|peer| peer.trim())
            .filter(|peer| !peer.is_empty())
            .map(|peer| PeerUrl::parse(peer).map_err(|error| format!("--peers (PEERS): {error}")))
            .collect::<Result<Vec<PeerUrl>, String>>()?;
        Ok(Settings {
            network: self.network,
            data_dir: self.data_dir(),
            http: SocketAddr::new(self.http_bind, self.http_port),
            p2p: SocketAddr::new(self.p2p_bind, self.p2p_port),
            peers,
            mine: self.mine,
            miner_threads,
            require_token: self.require_token,
            wallet_passphrase_file: self.wallet_passphrase_file.clone(),
            reindex: self.reindex,
            new_wallet: self.new_wallet,
            max_upload_bytes: match self.max_upload_mib {
                0 => None,
                mib => Some(mib.checked_mul(1 << 20).ok_or_else(|| {
                    format!("--max-upload-mib (MAX_UPLOAD_MIB) is too large: {mib}")
                })?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn simulate_reads_loss_and_uplink_ranges_and_refuses_impossible_ones() {
        let parse = |flags: &[&str]| {
            let mut line = vec!["powchain", "simulate"];
            line.extend_from_slice(flags);
            Cli::try_parse_from(line).map(|cli| match cli.command {
                Some(Command::Simulate(args)) => (args.loss_percent, args.uplink_mbit),
                _ => panic!("simulate subcommand"),
            })
        };
        assert_eq!(parse(&[]).expect("defaults"), (0.0, (20, 100)));
        assert_eq!(
            parse(&["--loss-percent", "0.5", "--uplink-mbit", "1-5"]).expect("parses"),
            (0.5, (1, 5))
        );
        for bad in [
            ["--loss-percent", "100"],
            ["--loss-percent", "-1"],
            ["--loss-percent", "lots"],
            ["--uplink-mbit", "0-5"],
            ["--uplink-mbit", "10-5"],
            ["--uplink-mbit", "10"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} is refused");
        }
        assert!(
            parse(&["--crash", "30s", "--partition", "60s"]).is_err(),
            "one scenario at a time"
        );
        assert!(parse(&["--hostile", "4", "--crash", "30s"]).is_err());
        assert!(parse(&["--selfish", "--withhold", "1s"]).is_err());
    }

    #[test]
    fn miner_threads_are_refused_past_what_a_search_runs() {
        let settings = |threads: &str| {
            Cli::try_parse_from(["powchain", "--miner-threads", threads])
                .expect("parses")
                .node
                .settings()
        };
        let most = powchain_node::MAX_MINER_THREADS.to_string();
        assert!(settings("1").is_ok() && settings(&most).is_ok());
        for refused in ["0", "1025", "100000"] {
            let error = settings(refused).expect_err("refused");
            assert!(error.contains("at most 1024"), "{error}");
        }
    }

    #[test]
    fn nodes_started_from_one_folder_with_other_ports_keep_separate_data() {
        let first = Cli::try_parse_from(["powchain", "--http-port", "3001"]).expect("parses");
        let second = Cli::try_parse_from(["powchain", "--http-port", "3002"]).expect("parses");
        assert_ne!(first.node.data_dir(), second.node.data_dir());
    }

    #[test]
    fn devnet_nodes_get_consecutive_ports_separate_data_and_peers() {
        let cli = Cli::try_parse_from(["powchain", "devnet", "--nodes", "4"]).expect("parses");
        let Some(Command::Devnet(devnet)) = cli.command else {
            panic!("devnet subcommand");
        };
        let nodes: Vec<NodeArgs> = (0..4).map(|index| devnet.node_args(index)).collect();
        assert_eq!(nodes[3].http_port, 3004);
        assert_eq!(nodes[3].p2p_port, 5004);
        assert!(nodes[0].peers.is_empty());
        assert_eq!(
            nodes[3].peers,
            vec!["ws://127.0.0.1:5001", "ws://127.0.0.1:5003"]
        );
        let dirs: std::collections::HashSet<_> = nodes.iter().map(NodeArgs::data_dir).collect();
        assert_eq!(dirs.len(), 4);
        assert!(nodes.iter().all(|node| node.settings().is_ok()));
        assert!(Cli::try_parse_from(["powchain", "devnet", "--nodes", "0"]).is_err());
    }

    #[test]
    fn devnet_ports_are_checked_before_anything_starts() {
        let check = |flags: &[&str]| {
            let mut line = vec!["powchain", "devnet"];
            line.extend_from_slice(flags);
            match Cli::try_parse_from(line).expect("parses").command {
                Some(Command::Devnet(devnet)) => devnet.check_ports(),
                _ => panic!("devnet subcommand"),
            }
        };
        assert!(check(&[]).is_ok());
        assert!(
            check(&[
                "--nodes",
                "16",
                "--http-port",
                "65520",
                "--p2p-port",
                "5001"
            ])
            .is_ok()
        );
        for (flags, says) in [
            (
                &["--nodes", "2", "--http-port", "65535"][..],
                "no room for 2 nodes",
            ),
            (&["--http-port", "0"][..], "--http-port 0"),
            (&["--p2p-port", "0"][..], "--p2p-port 0"),
            (&["--nodes", "3", "--http-port", "5000"][..], "overlap"),
        ] {
            let error = check(flags).expect_err("refused");
            assert!(error.contains(says), "{flags:?}: {error}");
        }
    }

    #[test]
    fn bench_flags_parse() {
        let cli = Cli::try_parse_from([
            "powchain",
            "bench",
            "--quick",
            "--json",
            "--only",
            "mining,pool",
        ])
        .expect("parses");
        let Some(Command::Bench(bench)) = cli.command else {
            panic!("bench subcommand");
        };
        assert!(bench.quick && bench.json);
        assert_eq!(bench.only, vec!["mining", "pool"]);
    }

    #[test]
    fn security_flags_parse_and_the_client_token_never_shows_in_debug() {
        let cli = Cli::try_parse_from([
            "powchain",
            "--require-token",
            "--wallet-passphrase-file",
            "/run/secrets/passphrase",
        ])
        .expect("parses");
        assert!(cli.node.require_token);
        assert_eq!(
            cli.node.wallet_passphrase_file,
            Some(PathBuf::from("/run/secrets/passphrase"))
        );
        let defaults = Cli::try_parse_from(["powchain"]).expect("parses");
        assert!(!defaults.node.require_token && defaults.node.wallet_passphrase_file.is_none());

        let cli = Cli::try_parse_from([
            "powchain",
            "mine",
            "--token",
            "s3cret-token-value",
            "--data-dir",
            "/tmp/node",
        ])
        .expect("parses");
        let Some(Command::Mine { client, .. }) = &cli.command else {
            panic!("mine subcommand");
        };
        assert_eq!(
            client.token.as_ref().map(ApiToken::as_str),
            Some("s3cret-token-value")
        );
        assert_eq!(client.data_dir, Some(PathBuf::from("/tmp/node")));
        let printed = format!("{cli:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(Cli::try_parse_from(["powchain", "mine", "--token", "two words"]).is_err());
    }

    #[test]
    fn data_recovery_flags_reach_the_settings_and_check_finds_the_nodes_directory() {
        let defaults = Cli::try_parse_from(["powchain"]).expect("parses");
        let settings = defaults.node.settings().expect("valid");
        assert!(!settings.reindex && !settings.new_wallet);
        let cli =
            Cli::try_parse_from(["powchain", "node", "--reindex", "--new-wallet"]).expect("parses");
        let Some(Command::Node(node)) = cli.command else {
            panic!("node subcommand");
        };
        let settings = node.settings().expect("valid");
        assert!(settings.reindex && settings.new_wallet);
        let cli =
            Cli::try_parse_from(["powchain", "check", "--network", "regtest"]).expect("parses");
        let Some(Command::Check(check)) = cli.command else {
            panic!("check subcommand");
        };
        assert_eq!(check.data_dir(), default_data_dir(Network::Regtest, 3001));
    }

    #[test]
    fn the_client_default_data_dir_is_the_nodes() {
        let node = Cli::try_parse_from(["powchain", "--network", "regtest", "--http-port", "3007"])
            .expect("parses");
        assert_eq!(
            node.node.data_dir(),
            default_data_dir(Network::Regtest, 3007)
        );
        assert_eq!(
            default_data_dir(Network::Devnet, 3001),
            PathBuf::from("data/devnet-3001")
        );
    }

    #[test]
    fn peers_split_on_commas_and_bad_ones_are_refused() {
        let cli = Cli::try_parse_from([
            "powchain",
            "--peers",
            "ws://localhost:5001,ws://localhost:5002",
        ])
        .expect("parses");
        assert_eq!(cli.node.peers.len(), 2);
        let settings = cli.node.settings().expect("valid");
        assert_eq!(settings.peers.len(), 2);
        assert_eq!(settings.peers[1].port, 5002);
        let cli = Cli::try_parse_from(["powchain", "--peers", "http://x:1"]).expect("parses");
        let error = cli.node.settings().expect_err("not a peer address");
        assert!(
            error.contains("--peers (PEERS)") && error.contains("ws://"),
            "{error}"
        );
        let cli = Cli::try_parse_from(["powchain", "--miner-threads", "0"]).expect("parses");
        assert!(cli.node.settings().is_err());
        assert!(Cli::try_parse_from(["powchain", "--network", "mainnet"]).is_err());
    }

    #[test]
    fn client_flags_may_follow_a_wallet_subcommand() {
        for action in [
            vec!["balance"],
            vec!["address"],
            vec!["send", "pc1x", "1.5"],
        ] {
            let mut words = vec!["powchain", "wallet"];
            words.extend(action);
            words.extend(["--node", "http://127.0.0.1:4000"]);
            let cli = Cli::try_parse_from(&words).expect("parses");
            match cli.command {
                Some(Command::Wallet { client, .. }) => {
                    assert_eq!(client.node, "http://127.0.0.1:4000", "{words:?}");
                }
                other => panic!("not a wallet command: {other:?}"),
            }
        }
        let before = Cli::try_parse_from(["powchain", "wallet", "--node", "http://h:1", "balance"])
            .expect("parses");
        assert!(matches!(
            before.command,
            Some(Command::Wallet { client, .. }) if client.node == "http://h:1"
        ));
    }
}
