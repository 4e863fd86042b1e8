//! One simulated node's software, on a host of its own or beside its region's (hosts.rs):
//! a real [`Node`] (chain and pool in memory) and its real peer layer on the simulated
//! network, mining on its own seeded schedule, and reporting what
//! its node connects to the run's [`Recorder`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use powchain_consensus::pow::HeaderHasher;
use powchain_consensus::signature_cache::SignatureCache;
use powchain_consensus::{Address, Block, BlockHash, Network};
use powchain_node::{Clock, Node, NodeConfig, NodeEvent};
use powchain_p2p::{Environment, NodeCalls, P2p, P2pConfig, PeerUrl, Randomness, ValidationDelay};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::network::{Loss, SimListener, SimTransport, Uplink};
use crate::payments::Users;
use crate::selfish::{SelfishMiner, Tip};

/// The simulation's clock: its epoch plus simulated time.
struct SimClock {
    epoch_ms: u64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        self.epoch_ms + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Simulated time now (zero outside the simulation).
pub(crate) fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// A block a simulated miner found.
#[derive(Clone, Debug)]
pub(crate) struct Mined {
    pub(crate) hash: BlockHash,
    pub(crate) miner: usize,
    pub(crate) height: u64,
    pub(crate) at: Duration,
}

/// What every host reports, in the order it happens.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) mined: Vec<Mined>,
    /// For each block, when each node first connected it: (node, time).
    pub(crate) connected: std::collections::HashMap<BlockHash, Vec<(usize, Duration)>>,
    /// Reorganisations: (node, blocks disconnected, time).
    pub(crate) reorgs: Vec<(usize, u64, Duration)>,
    /// Events a host's recorder missed because it fell behind the node's channel.
    pub(crate) missed_events: u64,
    /// Errors that stopped a host's miner (none is expected).
    pub(crate) errors: Vec<String>,
    /// Restarted hosts, with the height and the pool their node reopened with: (node,
    /// height, pool transactions).
    pub(crate) reopened: Vec<(usize, u64, usize)>,
    /// Blocks scheduled to a host while it was down (not found).
    pub(crate) blocks_not_found: usize,
    /// Payments scheduled through a host while it was down (not made).
    pub(crate) payments_not_made: usize,
    /// Blocks the selfish miner found and dropped unpublished (the public chain won).
    pub(crate) never_published: usize,
    /// The blocks with which the selfish miner tied the public chain (hash, height): a
    /// race each.
    pub(crate) ties: Vec<(BlockHash, u64)>,
}

impl Recorder {
    fn connected(&mut self, hash: BlockHash, node: usize, at: Duration) {
        let arrivals = self.connected.entry(hash).or_default();
        if !arrivals.iter().any(|(seen_by, _)| *seen_by == node) {
            arrivals.push((node, at));
        }
    }
}

/// Everything a host needs, shared with the run.
pub(crate) struct HostPlan {
    pub(crate) index: usize,
    pub(crate) seed: u64,
    /// Where its wallet's key file goes (the chain and pool stay in memory).
    pub(crate) data_dir: PathBuf,
    pub(crate) epoch_ms: u64,
    /// The port it listens on (hosts.rs).
    pub(crate) port: u16,
    /// Where it dials its peers: `host:port`.
    pub(crate) peers: Vec<String>,
    pub(crate) max_outbound: usize,
    /// When it finds blocks, in simulated time from the start.
    pub(crate) schedule: Vec<Duration>,
    /// When a user pays through it.
    pub(crate) payments: Vec<Duration>,
    pub(crate) users: Arc<Mutex<Users>>,
    pub(crate) validation_delay: Option<ValidationDelay>,
    /// Signature checks shared by every node of the run (`SimConfig::share_signature_checks`).
    pub(crate) signature_checks: Option<Arc<SignatureCache>>,
    /// Relay new blocks as compact blocks (else whole, by inv and getdata).
    pub(crate) compact_blocks: bool,
    /// Peers it asks to push new blocks.
    pub(crate) high_bandwidth_peers: usize,
    /// How long a new block announced by a peer that does not push waits for a push.
    pub(crate) push_wait: Duration,
    /// How long it gathers transactions before announcing them.
    pub(crate) transaction_interval: Duration,
    /// How long a payment waits in its pool before its blocks take it.
    pub(crate) template_min_pool_age: Duration,
    /// Hold each block found this long before publishing it (the withholding scenario).
    pub(crate) withhold: Option<Duration>,
    /// Mine selfishly with this strategy's state (selfish.rs).
    pub(crate) selfish: Option<Arc<Mutex<SelfishMiner>>>,
    /// The selfish miner sends the blocks it publishes that only tie the public chain.
    pub(crate) selfish_relays_ties: bool,
    /// Keep the chain and pool on disk, in `data_dir` (a host that crashes and restarts).
    pub(crate) on_disk: bool,
    /// How far it got, across restarts.
    pub(crate) progress: Mutex<Progress>,
    pub(crate) uplink: Arc<Uplink>,
    /// Packet loss on its connections (`None`: none).
    pub(crate) loss: Option<Arc<Loss>>,
    pub(crate) recorder: Arc<Mutex<Recorder>>,
    /// The run reads each node's final state from here.
    pub(crate) nodes: Arc<Mutex<Vec<Option<Arc<Node>>>>>,
    /// And each peer layer's traffic from here.
    pub(crate) peer_layers: Arc<Mutex<Vec<Option<Arc<P2p>>>>>,
}

/// How far a host got through its schedules, and how often it started.
#[derive(Default)]
pub(crate) struct Progress {
    starts: u32,
    /// The next block of its schedule to find.
    next_block: usize,
    /// The next payment to make.
    next_payment: usize,
}

/// The host's software: opens the node, starts its peer layer, records its events and
/// mines on its schedule, then keeps serving peers until the simulation ends.
pub(crate) async fn run(plan: Arc<HostPlan>) -> turmoil::Result {
    let starts = {
        let mut progress = lock(&plan.progress);
        progress.starts += 1;
        progress.starts
    };
    let restarted = starts > 1;
    if restarted {
        plan.uplink.restart();
    }
    let mut config = NodeConfig::new(Network::Regtest, plan.data_dir.clone());
    config.in_memory = !plan.on_disk;
    config.miner_threads = 1;
    config.signature_threads = 1;
    config.shared_signature_checks = plan.signature_checks.clone();
    config.template_min_pool_age_ms = plan.template_min_pool_age.as_millis() as u64;
    let node = Node::open(
        config,
        Arc::new(SimClock {
            epoch_ms: plan.epoch_ms,
        }),
    )?;
    if restarted {
        lock(&plan.recorder)
            .reopened
            .push((plan.index, node.tip().height.0, node.pool_size().0));
    }
    lock(&plan.nodes)[plan.index] = Some(Arc::clone(&node));
    let listener =
        turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), plan.port)).await?;
    let peers = plan
        .peers
        .iter()
        .map(|address| PeerUrl::parse(&format!("ws://{address}")))
        .collect::<Result<Vec<_>, _>>()?;
    let p2p_config = P2pConfig {
        peers,
        max_outbound: plan.max_outbound,
        // Every simulated address is in one private range: one "group".
        max_inbound: 125,
        max_inbound_per_group: 125,
        max_pending_per_group: 64,
        compact_blocks: plan.compact_blocks,
        high_bandwidth_peers: plan.high_bandwidth_peers,
        push_wait: plan.push_wait,
        transaction_announcement_interval: plan.transaction_interval,
        ..P2pConfig::default()
    };
    let environment = Environment {
        transport: Box::new(SimTransport {
            uplink: Arc::clone(&plan.uplink),
            loss: plan.loss.clone(),
        }),
        // A restarted node draws new nonces, as a new process would: its peers may still
        // hold its old sessions, and would refuse the same nonce as a duplicate.
        randomness: Randomness::seeded(
            plan.seed
                ^ (plan.index as u64).wrapping_mul(0x5851_f42d)
                ^ u64::from(starts - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ),
        node_calls: NodeCalls::Inline,
        validation_delay: plan.validation_delay,
    };
    let token = CancellationToken::new();
    let tasks = TaskTracker::new();
    let listener = SimListener {
        listener,
        uplink: Arc::clone(&plan.uplink),
        loss: plan.loss.clone(),
    };
    let p2p = P2p::start_in(
        Arc::clone(&node),
        p2p_config,
        Some(Box::new(listener)),
        environment,
        token.clone(),
        tasks.clone(),
    )?;
    let relay = Arc::clone(&p2p);
    lock(&plan.peer_layers)[plan.index] = Some(p2p);
    // The chain's events alone: a reorganisation returning thousands of transactions to
    // the pool cannot make the recorder miss a block.
    let mut events = node.subscribe_chain();
    let recorder = Arc::clone(&plan.recorder);
    let index = plan.index;
    let selfish = plan.selfish.clone();
    let watcher = (Arc::clone(&node), Arc::clone(&plan), selfish.clone());
    tasks.spawn(async move {
        let (node, plan, selfish) = watcher;
        loop {
            match events.recv().await {
                Ok(NodeEvent::BlockConnected { hash, .. }) => {
                    lock(&recorder).connected(hash, index, now());
                }
                Ok(NodeEvent::TipChanged {
                    hash,
                    height,
                    reorg_depth,
                    ..
                }) => {
                    if reorg_depth > 0 {
                        lock(&recorder).reorgs.push((index, reorg_depth, now()));
                    }
                    if let Some(selfish) = &selfish {
                        // The public chain moved: the strategy may publish.
                        let public = Tip {
                            hash,
                            height: height.0,
                            time_ms: 0,
                        };
                        let (release, dropped, racing) = {
                            let mut miner = lock(selfish);
                            let before = miner.unpublished();
                            let release = miner.public_tip(public);
                            let dropped = before - release.len() - miner.unpublished();
                            (release, dropped, miner.racing())
                        };
                        lock(&recorder).never_published += dropped;
                        if racing && let Some(last) = release.last() {
                            lock(&recorder).ties.push((last.compute_hash(), height.0));
                        }
                        for block in release {
                            let hash = block.compute_hash();
                            publish(&node, &plan, block);
                            // A block that only ties the public tip is not the node's
                            // tip, so the node would keep it: the miner sends it itself.
                            if plan.selfish_relays_ties && node.tip().hash != hash {
                                relay.relay_block(hash).await;
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => lock(&recorder).missed_events += missed,
                Err(RecvError::Closed) => return,
            }
        }
    });
    let paying = Arc::clone(&node);
    let payer = Arc::clone(&plan);
    tasks.spawn(async move {
        let first = lock(&payer.progress).next_payment;
        for (number, at) in payer.payments.iter().enumerate().skip(first) {
            if *at < now() {
                // Due while the host was down.
                lock(&payer.recorder).payments_not_made += 1;
            } else {
                tokio::time::sleep(at.saturating_sub(now())).await;
                lock(&payer.users).pay(&paying);
            }
            lock(&payer.progress).next_payment = number + 1;
        }
    });
    let payout = lock(&plan.users).address();
    let first = lock(&plan.progress).next_block;
    for (found, at) in plan.schedule.iter().enumerate().skip(first) {
        if *at < now() {
            // Its hash power was off.
            lock(&plan.recorder).blocks_not_found += 1;
            lock(&plan.progress).next_block = found + 1;
            continue;
        }
        tokio::time::sleep(at.saturating_sub(now())).await;
        let block = match &selfish {
            Some(selfish) => find_selfish(&node, &plan, selfish, payout, found),
            None => find(&node, &plan, payout, found),
        };
        let block = match block {
            Ok(Some(block)) => block,
            Ok(None) => {
                // Kept private (or published by the strategy already).
                lock(&plan.progress).next_block = found + 1;
                continue;
            }
            Err(error) => {
                lock(&plan.recorder)
                    .errors
                    .push(format!("node {} could not mine: {error}", plan.index));
                lock(&plan.progress).next_block = found + 1;
                continue;
            }
        };
        match plan.withhold {
            None => publish(&node, &plan, block),
            Some(delay) => {
                // Held back while the miner goes on mining on the public tip.
                let (node, plan) = (Arc::clone(&node), Arc::clone(&plan));
                tasks.spawn(async move {
                    tokio::time::sleep(delay).await;
                    publish(&node, &plan, block);
                });
            }
        }
        lock(&plan.progress).next_block = found + 1;
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// The software of a host that runs several nodes (a region's, hosts.rs): each node's
/// software side by side; the first to fail fails the host.
pub(crate) async fn run_all(plans: Vec<Arc<HostPlan>>) -> turmoil::Result {
    futures_util::future::try_join_all(plans.into_iter().map(run)).await?;
    Ok(())
}

/// Finds a block on the node's tip, with the pool's best transactions, paying the users
/// (regtest's target is met by every other hash: no real hashing).
fn find(
    node: &Node,
    plan: &HostPlan,
    payout: Address,
    found: usize,
) -> Result<Option<Block>, Box<dyn std::error::Error>> {
    let note = format!("sim {} {found}", plan.index).into_bytes();
    let block = node.block_template(payout, note, true)?;
    Ok(Some(solve(block)?))
}

/// The selfish miner finds a block on its branch (or the node's tip) and hands it to its
/// strategy; publishes what the strategy releases. `None`: nothing for the caller to
/// publish.
fn find_selfish(
    node: &Node,
    plan: &HostPlan,
    selfish: &Mutex<SelfishMiner>,
    payout: Address,
    found: usize,
) -> Result<Option<Block>, Box<dyn std::error::Error>> {
    let note = format!("sim {} {found} selfish", plan.index).into_bytes();
    let tip = node.tip();
    let public = Tip {
        hash: tip.hash,
        height: tip.height.0,
        time_ms: 0,
    };
    let parent = lock(selfish).parent(public);
    let (block, height) = if parent.hash == public.hash {
        (node.block_template(payout, note, false)?, tip.height.0 + 1)
    } else {
        // On its private branch, which the node does not know: no pool, the fixed
        // regtest target, a time after its parent's.
        let params = Network::Regtest.params();
        let block = powchain_miner::build_template(
            params,
            powchain_miner::TemplateRequest {
                parent: parent.hash,
                height: powchain_consensus::BlockHeight(parent.height + 1),
                bits: params.genesis().header.bits,
                min_time_ms: parent.time_ms + 1,
                now_ms: node.now_ms(),
                payout,
                note,
                transactions: Vec::new(),
            },
        );
        (block, parent.height + 1)
    };
    let block = solve(block)?;
    let release = lock(selfish).found(block, height);
    for block in release {
        publish(node, plan, block);
    }
    Ok(None)
}

/// Sets a nonce that meets the block's target.
fn solve(mut block: Block) -> Result<Block, Box<dyn std::error::Error>> {
    let target = block.header.bits.to_target()?;
    let (nonce, _) = HeaderHasher::new(&block.header)
        .search(target, 0, u64::MAX)
        .ok_or("no nonce meets the target")?;
    block.header.nonce = nonce;
    Ok(block)
}

/// Hands a found block to the miner's node (which relays it), recording it as found
/// now: propagation is timed from publication.
fn publish(node: &Node, plan: &HostPlan, block: Block) {
    let height = block.coinbase_height().map_or(0, |height| height.0);
    lock(&plan.recorder).mined.push(Mined {
        hash: block.compute_hash(),
        miner: plan.index,
        height,
        at: now(),
    });
    if let Err(error) = node.submit_block(block) {
        lock(&plan.recorder).errors.push(format!(
            "node {} could not publish a block: {error}",
            plan.index
        ));
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
