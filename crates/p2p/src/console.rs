//! What the peer layer says at `info`, the lines a person follows: a peer connected or
//! left (handshake.rs), a new block from a peer, and while blocks stream in (a sync, or a
//! fast miner next door) one line a second at most, with a final line when they stop.
//!
//! ```text
//!   sync.rs on_block ──BlockArrival──▶ BlockLog
//!       ├─ one block, caught up, no block line for 1 s ──▶ "block #H from P (N txs, +D ms)"
//!       └─ otherwise into the batch ──(a second old; or quiet for QUIET_MS, at a tick)──▶
//!                                                "synced N blocks from P to #H"
//!   console_loop: a tick every TICK, flushes the batch once blocks stop coming
//!   connection lines (connected, left, refused, strangers, bans) ──▶ LogBudget
//! ```
//!
//! The lines are built here as strings (and unit-tested); the callers log them. Nothing a
//! peer sends is printed but numbers, hashes and our own names for it, except the start
//! of a stranger's text frame, cut short and reduced to printable ASCII ([`preview`]).

use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::{info, warn};

use crate::service::P2p;

/// At most one block line (a single block or a batch) this often, but for final lines.
const LINE_INTERVAL_MS: u64 = 1_000;
/// A batch is logged once no block has joined the chain for this long (its final line).
const QUIET_MS: u64 = 500;
/// How often the batch is checked.
const TICK: Duration = Duration::from_millis(250);
/// Peers a batch names the counts of at most (the rest are counted together).
const MAX_BATCH_PEERS: usize = 16;
/// Connection lines logged at once at most: connecting and leaving is something any
/// stranger can do at will.
pub(crate) const CONNECTION_LINES_BURST: u32 = 32;
/// One more connection line may be logged every this many milliseconds.
pub(crate) const CONNECTION_LINE_INTERVAL_MS: u64 = 1_000;
/// Characters of a stranger's text frame a log line shows at most.
const PREVIEW_CHARS: usize = 64;

/// A block a peer sent that joined the main chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockArrival<'a> {
    /// The peer, as logs show it.
    pub(crate) peer: &'a str,
    /// The block's height.
    pub(crate) height: u64,
    /// Its transactions, the coinbase included.
    pub(crate) transactions: usize,
    /// Its header's time (the miner's clock), ms since the epoch.
    pub(crate) block_time_ms: u64,
    /// Blocks that joined the main chain with it (itself, orphans waiting for it, a
    /// reorganisation's branch).
    pub(crate) connected: u64,
    /// The main chain's height after it.
    pub(crate) tip_height: u64,
    /// True if no more blocks are known to be missing (the best header is the tip).
    pub(crate) caught_up: bool,
}

/// Blocks counted but not logged yet.
#[derive(Debug)]
struct Batch {
    blocks: u64,
    tip_height: u64,
    /// Blocks per peer, in the order peers first sent one.
    peers: Vec<(String, u64)>,
    /// Blocks from peers beyond [`MAX_BATCH_PEERS`].
    other_peers_blocks: u64,
    started_ms: u64,
    last_ms: u64,
}

impl Batch {
    fn add(&mut self, peer: &str, blocks: u64, tip_height: u64, now_ms: u64) {
        self.blocks += blocks;
        self.tip_height = self.tip_height.max(tip_height);
        self.last_ms = now_ms;
        if let Some((_, count)) = self.peers.iter_mut().find(|(name, _)| name == peer) {
            *count += blocks;
        } else if self.peers.len() < MAX_BATCH_PEERS {
            self.peers.push((peer.to_owned(), blocks));
        } else {
            self.other_peers_blocks += blocks;
        }
    }

    /// `synced 120 blocks from ws://127.0.0.1:5001 to #120`, naming the peer that sent
    /// most and counting the others.
    fn line(&self) -> String {
        let named = self
            .peers
            .iter()
            .enumerate()
            .max_by_key(|(index, (_, count))| (*count, std::cmp::Reverse(*index)))
            .map(|(_, (name, _))| name.as_str())
            .unwrap_or("peers");
        let others = self.peers.len().saturating_sub(1);
        let others = match (others, self.other_peers_blocks > 0) {
            (count, true) => format!(" and more than {count} other peers"),
            (0, false) => String::new(),
            (1, false) => " and 1 other peer".to_owned(),
            (count, false) => format!(" and {count} other peers"),
        };
        format!(
            "synced {} from {named}{others} to #{}",
            plural(self.blocks, "block", "blocks"),
            self.tip_height
        )
    }
}

/// Decides which block lines are logged.
#[derive(Debug, Default)]
pub(crate) struct BlockLog {
    /// When the last block line was logged.
    last_line_ms: Option<u64>,
    batch: Option<Batch>,
}

impl BlockLog {
    /// A block from a peer joined the main chain at `now_ms`: the line to log now, if any.
    pub(crate) fn on_arrival(&mut self, arrival: BlockArrival<'_>, now_ms: u64) -> Option<String> {
        if arrival.connected == 0 {
            return None;
        }
        let quiet = self
            .last_line_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= LINE_INTERVAL_MS);
        if arrival.connected == 1 && arrival.caught_up && self.batch.is_none() && quiet {
            self.last_line_ms = Some(now_ms);
            return Some(single_block_line(arrival, now_ms));
        }
        let batch = self.batch.get_or_insert_with(|| Batch {
            blocks: 0,
            tip_height: 0,
            peers: Vec::new(),
            other_peers_blocks: 0,
            started_ms: now_ms,
            last_ms: now_ms,
        });
        batch.add(arrival.peer, arrival.connected, arrival.tip_height, now_ms);
        let old = now_ms.saturating_sub(batch.started_ms) >= LINE_INTERVAL_MS;
        (old && quiet).then(|| self.flush(now_ms)).flatten()
    }

    /// The line to log at a tick, if any: the batch, once it is a second old or no block
    /// has come for [`QUIET_MS`] (the final line of a sync).
    pub(crate) fn on_tick(&mut self, now_ms: u64) -> Option<String> {
        let batch = self.batch.as_ref()?;
        let stopped = now_ms.saturating_sub(batch.last_ms) >= QUIET_MS;
        let old = now_ms.saturating_sub(batch.started_ms) >= LINE_INTERVAL_MS;
        let quiet = self
            .last_line_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= LINE_INTERVAL_MS);
        if stopped || (old && quiet) {
            self.flush(now_ms)
        } else {
            None
        }
    }

    fn flush(&mut self, now_ms: u64) -> Option<String> {
        let batch = self.batch.take()?;
        self.last_line_ms = Some(now_ms);
        Some(batch.line())
    }
}

/// `block #5 from ws://127.0.0.1:5001 (3 txs, +12 ms)`: the delay is since the block's
/// own timestamp, so it includes the miner's clock skew (negative if it runs ahead).
fn single_block_line(arrival: BlockArrival<'_>, now_ms: u64) -> String {
    let delay_ms = i128::from(now_ms) - i128::from(arrival.block_time_ms);
    format!(
        "block #{} from {} ({}, {delay_ms:+} ms)",
        arrival.height,
        arrival.peer,
        plural(
            u64::try_from(arrival.transactions).unwrap_or(u64::MAX),
            "tx",
            "txs"
        )
    )
}

/// `1 block`, `2 blocks`.
pub(crate) fn plural(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("{count} {one}")
    } else {
        format!("{count} {many}")
    }
}

/// The start of a stranger's text, safe to log: at most [`PREVIEW_CHARS`] characters,
/// anything outside printable ASCII shown as `?`, `…` if cut.
pub(crate) fn preview(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(PREVIEW_CHARS)
        .map(|character| {
            if character == ' ' || character.is_ascii_graphic() {
                character
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

impl P2p {
    /// Logs a connection line at `info`, within the connection-line budget.
    pub(crate) fn say_connection(&self, line: impl std::fmt::Display) {
        if let Some(held_back) = self.connection_lines.admit(self.node.now_ms()) {
            info!("{line}{held_back}");
        }
    }

    /// Logs a connection line at `warn`, within the connection-line budget.
    pub(crate) fn warn_connection(&self, line: impl std::fmt::Display) {
        if let Some(held_back) = self.connection_lines.admit(self.node.now_ms()) {
            warn!("{line}{held_back}");
        }
    }

    pub(crate) fn block_log(&self) -> MutexGuard<'_, BlockLog> {
        self.block_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs the line a peer's block calls for, if any.
    pub(crate) fn log_block_arrival(&self, arrival: BlockArrival<'_>) {
        let line = self.block_log().on_arrival(arrival, self.node.now_ms());
        if let Some(line) = line {
            info!("{line}");
        }
    }

    /// Flushes the batch of block lines once blocks stop coming.
    pub(crate) async fn console_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                biased;
                () = self.token.cancelled() => return,
                _ = tick.tick() => {
                    let line = self.block_log().on_tick(self.node.now_ms());
                    if let Some(line) = line {
                        info!("{line}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(peer: &str, height: u64, connected: u64, caught_up: bool) -> BlockArrival<'_> {
        BlockArrival {
            peer,
            height,
            transactions: 1,
            block_time_ms: 9_990,
            connected,
            tip_height: height,
            caught_up,
        }
    }

    #[test]
    fn a_new_block_when_caught_up_is_one_line() {
        let mut log = BlockLog::default();
        assert_eq!(
            log.on_arrival(arrival("ws://a:1", 5, 1, true), 10_000),
            Some("block #5 from ws://a:1 (1 tx, +10 ms)".to_owned())
        );
        assert_eq!(log.on_tick(10_300), None);
        let mut ahead = arrival("ws://a:1", 6, 1, true);
        ahead.block_time_ms = 12_000;
        ahead.transactions = 3;
        assert_eq!(
            log.on_arrival(ahead, 11_500),
            Some("block #6 from ws://a:1 (3 txs, -500 ms)".to_owned()),
            "a miner's clock ahead of ours shows as a negative delay"
        );
    }

    #[test]
    fn blocks_of_a_sync_are_one_line_a_second_and_a_final_line() {
        let mut log = BlockLog::default();
        let mut lines = Vec::new();
        // 3,000 blocks over 2.5 s from two peers, then nothing.
        for block in 1..=3_000u64 {
            let now = 10_000 + block * 5 / 6;
            let peer = if block % 3 == 0 {
                "ws://b:2"
            } else {
                "ws://a:1"
            };
            lines.extend(log.on_arrival(arrival(peer, block, 1, block == 3_000), now));
            if block % 200 == 0 {
                lines.extend(log.on_tick(now));
            }
        }
        assert!(lines.len() <= 3, "about one a second: {lines:?}");
        for now in (12_500..14_000).step_by(250) {
            lines.extend(log.on_tick(now));
        }
        let last = lines.last().expect("a final line");
        assert!(
            last.starts_with("synced ")
                && last.ends_with(" from ws://a:1 and 1 other peer to #3000"),
            "{last}"
        );
        let total: u64 = lines.iter().map(|line| blocks_in(line)).sum();
        assert_eq!(total, 3_000, "every block counted once: {lines:?}");
        assert_eq!(log.on_tick(20_000), None, "nothing left");
    }

    fn blocks_in(line: &str) -> u64 {
        line.split_whitespace()
            .nth(1)
            .and_then(|count| count.parse().ok())
            .expect("synced N blocks")
    }

    #[test]
    fn blocks_faster_than_a_line_a_second_are_batched() {
        let mut log = BlockLog::default();
        assert!(
            log.on_arrival(arrival("ws://a:1", 1, 1, true), 10_000)
                .is_some()
        );
        assert_eq!(
            log.on_arrival(arrival("ws://a:1", 2, 1, true), 10_100),
            None
        );
        assert_eq!(
            log.on_arrival(arrival("ws://a:1", 3, 1, true), 10_200),
            None
        );
        assert_eq!(log.on_tick(10_500), None, "the last block came 300 ms ago");
        assert_eq!(
            log.on_tick(10_750),
            Some("synced 2 blocks from ws://a:1 to #3".to_owned())
        );
    }

    #[test]
    fn a_block_that_connects_nothing_says_nothing() {
        let mut log = BlockLog::default();
        assert_eq!(
            log.on_arrival(arrival("ws://a:1", 4, 0, false), 10_000),
            None
        );
        assert_eq!(log.on_tick(20_000), None);
    }

    #[test]
    fn a_batch_names_at_most_a_few_peers() {
        let mut log = BlockLog::default();
        let names: Vec<String> = (0..40).map(|port| format!("ws://p:{port}")).collect();
        for (index, name) in names.iter().enumerate() {
            let height = index as u64 + 1;
            let _ = log.on_arrival(arrival(name, height, 1, false), 10_000);
        }
        assert_eq!(
            log.on_tick(11_000),
            Some("synced 40 blocks from ws://p:0 and more than 15 other peers to #40".to_owned())
        );
    }

    #[test]
    fn a_preview_is_short_and_printable() {
        assert_eq!(
            preview(r#"{"type":"CHAIN","chain":[]}"#),
            r#"{"type":"CHAIN","chain":[]}"#
        );
        assert_eq!(preview("a\nb\u{1b}[31mc"), "a?b?[31mc");
        let long = "x".repeat(1_000);
        assert_eq!(preview(&long), format!("{}…", "x".repeat(PREVIEW_CHARS)));
        assert_eq!(preview("é"), "?");
    }
}
