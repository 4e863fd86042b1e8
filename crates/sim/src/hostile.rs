//! Hostile peers: hosts that are not nodes. From a quarter of the mining window each one
//! dials honest nodes drawn from the seed, shakes hands as a node would, and then does
//! one of the things the resource-limit tests (`crates/p2p/tests/flood.rs`,
//! `relay.rs`) do to a single node, now to a network:
//!
//! ```text
//!   flood     legal pings, 25,000 a second   ──▶ over the rate limit: banned
//!   phantom   500 ids of transactions that do  ──▶ asked for at most 5,000 at a time
//!             not exist, 10 times a second;      (transaction_requests.rs), each ask
//!             answers pings, never delivers      dropped after 30 s
//! ```
//!
//! Each connection records how it ended and what the honest node asked of it; the
//! honest network's figures sit beside it in the same report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use powchain_consensus::{Network, Txid, Work};
use powchain_p2p::{Hello, InventoryItem, Message};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::config::SimConfig;
use crate::host::{lock, now};
use crate::hosts::Hosts;
use crate::random::SimRng;

/// The most hostile hosts a run takes.
pub(crate) const MAX_HOSTILE_HOSTS: usize = 1_000;
/// Honest nodes each hostile host dials.
const HOSTILE_TARGETS: usize = 8;
/// The one-way latency between a hostile host and its targets.
const HOSTILE_LATENCY: Duration = Duration::from_millis(50);
/// How often a hostile connection sends its next round.
const ROUND: Duration = Duration::from_millis(100);
/// Pings a flooding connection sends a round (25,000 a second, 50 times the limit).
const FLOOD_PER_ROUND: u64 = 2_500;
/// Transaction ids a phantom announcement carries.
const PHANTOMS_PER_ROUND: usize = 500;

/// What a hostile host does to the nodes it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    /// Legal messages far over the rate limit.
    Flood,
    /// Announcements of transactions that do not exist, at a legal rate; never delivers.
    Phantom,
}

/// What the hostile connections of one behaviour met.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BehaviourReport {
    /// Connections that completed the WebSocket handshake.
    pub connections: usize,
    /// Closed by the honest node with a ban.
    pub banned: usize,
    /// Ended otherwise (closed for another reason, or lost).
    pub ended_otherwise: usize,
    /// Still open when the run ended.
    pub open_at_end: usize,
    /// Messages they sent.
    pub messages_sent: u64,
    /// Transaction ids the honest nodes asked them for (`getdata`).
    pub transactions_requested: u64,
}

/// What the hostile peers did and met.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostileReport {
    /// Hostile hosts.
    pub hosts: usize,
    /// Honest nodes each one dialled.
    pub targets_per_host: usize,
    /// When they started, in simulated ms from the start.
    pub started_at_ms: u64,
    /// Flooding connections.
    pub flood: BehaviourReport,
    /// Phantom-announcing connections.
    pub phantom: BehaviourReport,
}

/// One hostile host's plan.
pub(crate) struct HostilePlan {
    pub(crate) behaviour: Behaviour,
    /// The honest nodes it dials: host name and port.
    pub(crate) targets: Vec<(String, u16)>,
    pub(crate) start: Duration,
    pub(crate) seed: u64,
    pub(crate) report: Arc<Mutex<HostileReport>>,
}

impl HostilePlan {
    fn record(&self, change: impl FnOnce(&mut BehaviourReport)) {
        let mut report = lock(&self.report);
        change(match self.behaviour {
            Behaviour::Flood => &mut report.flood,
            Behaviour::Phantom => &mut report.phantom,
        });
    }
}

/// How a connection ended.
enum End {
    Banned,
    Otherwise,
}

/// The hostile host's software: waits for its start, then attacks every target at once.
pub(crate) async fn run(plan: Arc<HostilePlan>) -> turmoil::Result {
    tokio::time::sleep(plan.start.saturating_sub(now())).await;
    for (number, target) in plan.targets.iter().enumerate() {
        let plan = Arc::clone(&plan);
        let target = target.clone();
        tokio::spawn(async move {
            let end = attack(&plan, &target, number as u64).await;
            plan.record(|report| match end {
                Some(End::Banned) => {
                    report.banned += 1;
                    report.open_at_end = report.open_at_end.saturating_sub(1);
                }
                Some(End::Otherwise) => {
                    report.ended_otherwise += 1;
                    report.open_at_end = report.open_at_end.saturating_sub(1);
                }
                None => {}
            });
        });
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// One connection's attack; `None` if it never got past the handshake.
async fn attack(plan: &HostilePlan, (host, port): &(String, u16), number: u64) -> Option<End> {
    let stream = turmoil::net::TcpStream::connect((host.as_str(), *port))
        .await
        .ok()?;
    let url = format!("ws://{host}:{port}");
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream).await.ok()?;
    let mut rng = SimRng::new(plan.seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let params = Network::Regtest.params();
    let hello = Message::Hello(Hello {
        network_magic: Network::Regtest.magic(),
        genesis: params.genesis_hash(),
        best_hash: params.genesis_hash(),
        best_height: 0,
        best_work: Work::ZERO,
        listen_port: 0,
        node_nonce: rng.next_u64(),
        user_agent: "hostile".into(),
    });
    socket.send(Frame::binary(hello.to_bytes())).await.ok()?;
    plan.record(|report| {
        report.connections += 1;
        report.open_at_end += 1;
    });
    // Reads on its own, as a real attacker would: a peer that stops reading stalls the
    // node's writes, and its own with them.
    let (mut sink, mut stream) = socket.split();
    let (pongs, mut to_send) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let reader = async {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Frame::Binary(bytes)) => match Message::from_bytes(&bytes) {
                    Ok(Message::Ping(nonce)) => {
                        let _ = pongs.send(nonce);
                    }
                    Ok(Message::GetData(items)) => {
                        let asked = items
                            .iter()
                            .filter(|item| matches!(item, InventoryItem::Transaction(_)))
                            .count() as u64;
                        plan.record(|report| report.transactions_requested += asked);
                    }
                    _ => {}
                },
                Ok(Frame::Close(frame)) => return close_reason(frame.as_ref()),
                Ok(_) => {}
                Err(_) => return End::Otherwise,
            }
        }
        End::Otherwise
    };
    let writer = async {
        let mut round = tokio::time::interval(ROUND);
        loop {
            // Biased, as every loop of a simulated host: tokio's random choice between
            // ready branches would draw from outside the seed.
            let messages: Vec<Message> = tokio::select! {
                biased;
                _ = round.tick() => match plan.behaviour {
                    Behaviour::Flood => (0..FLOOD_PER_ROUND).map(Message::Ping).collect(),
                    Behaviour::Phantom => vec![Message::Inventory(
                        (0..PHANTOMS_PER_ROUND)
                            .map(|_| {
                                let mut bytes = [0u8; 32];
                                for chunk in bytes.chunks_mut(8) {
                                    chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
                                }
                                InventoryItem::Transaction(Txid(bytes))
                            })
                            .collect(),
                    )],
                },
                Some(nonce) = to_send.recv() => vec![Message::Pong(nonce)],
            };
            for message in messages {
                if sink.send(Frame::binary(message.to_bytes())).await.is_err() {
                    return;
                }
                plan.record(|report| report.messages_sent += 1);
            }
        }
    };
    // The reader says how it ended; a writer that fails leaves the reader to find out.
    tokio::pin!(reader);
    tokio::select! {
        biased;
        end = &mut reader => Some(end),
        () = writer => Some(
            tokio::time::timeout(Duration::from_secs(1), reader)
                .await
                .unwrap_or(End::Otherwise),
        ),
    }
}

/// A close frame that names a ban means one.
fn close_reason(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> End {
    if frame.is_some_and(|frame| frame.reason.contains("banned")) {
        End::Banned
    } else {
        End::Otherwise
    }
}

/// Starts `hosts` hostile hosts, each dialling [`HOSTILE_TARGETS`] honest
/// nodes drawn from `rng` from `start`, every other one flooding; returns the report
/// they fill.
pub(crate) fn start_hosts(
    sim: &mut turmoil::Sim<'_>,
    rng: &mut SimRng,
    config: &SimConfig,
    hosts: usize,
    start: Duration,
    honest: &Hosts,
) -> Arc<Mutex<HostileReport>> {
    let targets_per_host = HOSTILE_TARGETS.min(config.nodes);
    let report = Arc::new(Mutex::new(HostileReport {
        hosts,
        targets_per_host,
        started_at_ms: start.as_millis() as u64,
        ..HostileReport::default()
    }));
    for index in 0..hosts {
        let mut order: Vec<usize> = (0..config.nodes).collect();
        rng.shuffle(&mut order);
        let targets: Vec<usize> = order[..targets_per_host].to_vec();
        let name = format!("hostile-{index}");
        let plan = Arc::new(HostilePlan {
            behaviour: if index % 2 == 0 {
                Behaviour::Flood
            } else {
                Behaviour::Phantom
            },
            targets: targets
                .iter()
                .map(|target| (honest.host(*target).to_owned(), honest.port(*target)))
                .collect(),
            start,
            seed: config.seed ^ (index as u64 + 1).wrapping_mul(0xbb67_ae85_84ca_a73b),
            report: Arc::clone(&report),
        });
        sim.host(name.as_str(), move || run(Arc::clone(&plan)));
        for target in targets {
            sim.set_link_latency(name.as_str(), honest.host(target), HOSTILE_LATENCY);
        }
    }
    report
}
