//! Headers-first sync, the session's side: what a new session asks for, asking for and
//! answering headers, and taking blocks.
//!
//! ```text
//!   session start ──▶ get_addr; get_headers if the peer has more work; our pool's txids
//!   get_headers(locator) ──▶ Node::headers_for_peer ──▶ headers (at most MAX_HEADERS)
//!   headers ──▶ Node::accept_peer_headers ──▶ full batch? ask for the next ──▶ pump downloads
//!      └─ too little work (powchain_chain::low_work): full batch? pre-sync: count the next
//!         batches (presync_peer_headers, nothing stored) ──▶ enough? ask again from the
//!         fork and store (redownload) : drop
//!   block ──▶ Node::submit_peer_block ──▶ orphan? ask for headers ──▶ pump downloads
//!        └─ joined the main chain ──▶ console.rs (`block #H from ...`, `synced N blocks ...`)
//! ```
//!
//! Which blocks to ask of whom is download.rs; what the chain is missing is the chain's.

use powchain_chain::{BlockOutcome, ChainError};
use powchain_consensus::{Block, BlockHash, Header};
use powchain_node::{NodeError, PeerBlock, PeerHeaders};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use crate::console::BlockArrival;
use crate::message::{
    Hello, InventoryItem, MAX_HEADERS, MAX_INVENTORY, MAX_LOCATOR_HASHES, Message,
};
use crate::session::{Presync, Redownload, Session};
use crate::session_end::{SessionEnd, Stop, node_error_misbehaviour};

/// Headers at most in a block announcement (BIP-130's 8): a new tip and the blocks
/// before it that the peer is not known to have. A `headers` message this short whose
/// first header does not connect is answered with `getheaders`, not a ban: the
/// announcer may simply be ahead of what it thinks we have.
pub(crate) const MAX_ANNOUNCED_HEADERS: usize = 8;
/// Unconnected announcements are answered with `getheaders` at most this often.
const UNCONNECTED_REQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// An unanswered `getheaders` older than this no longer holds back the next one for an
/// announced block (Bitcoin Core's `HEADERS_RESPONSE_TIME`).
const HEADERS_RESPONSE_TIME: std::time::Duration = std::time::Duration::from_secs(120);

/// Our `getheaders` to one peer, as announcements of unknown blocks see it: while one is
/// unanswered, another announcement does not send a second (35 bytes of `inv` would
/// otherwise buy a locator under the node's lock and a 1 KB reply, as often as the
/// message rate allows); it is remembered, and asked for when the answer comes, in case
/// the answer was written before the announced block reached the peer.
#[derive(Debug, Default)]
pub(crate) struct HeadersRequest {
    /// When the last `getheaders` went, until a `headers` message answers it.
    sent_at: Option<tokio::time::Instant>,
    /// A block was announced while the request was unanswered.
    announced_meanwhile: bool,
}

impl HeadersRequest {
    /// A `getheaders` went to the peer.
    fn sent(&mut self, now: tokio::time::Instant) {
        self.sent_at = Some(now);
    }

    /// Whether a request is unanswered (and not yet given up on).
    fn unanswered(&self, now: tokio::time::Instant) -> bool {
        self.sent_at
            .is_some_and(|at| now.duration_since(at) < HEADERS_RESPONSE_TIME)
    }

    /// The peer announced a block we do not know: true if we should ask for headers now;
    /// false if a request is unanswered (remembered for when its answer comes).
    fn block_announced(&mut self, now: tokio::time::Instant) -> bool {
        let unanswered = self.unanswered(now);
        self.announced_meanwhile |= unanswered;
        !unanswered
    }

    /// A `headers` message came: the request is answered. True if a block was announced
    /// while it was unanswered.
    fn answered(&mut self) -> bool {
        self.sent_at = None;
        std::mem::take(&mut self.announced_meanwhile)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    /// What a new session asks for and offers.
    pub(crate) async fn start(&mut self, theirs: &Hello) -> Result<(), SessionEnd> {
        self.send(&Message::GetAddresses).await?;
        self.announce_compact_relay().await?;
        let their_tip = theirs.best_hash;
        let (our_best_work, their_tip_height) = self
            .p2p
            .blocking(move |node| {
                (
                    node.chain_summary().best_header_work,
                    node.block_height(&their_tip),
                )
            })
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if let Some(height) = their_tip_height {
            self.p2p.registry.note_block(self.id, their_tip, height.0);
            // Blocks we know by header and this peer has: ask now, not at the next tick
            // (a node restarted in the middle of a sync resumes at once).
            self.p2p.pump_downloads().await;
        }
        if theirs.best_work > our_best_work {
            self.request_headers(None).await?;
        }
        self.offer_pool().await
    }

    /// Offers the peer the pool's transactions, oldest first, at most
    /// `max_pool_offered`: a page of one `inv` at a time, read under the node's lock only
    /// for that page, and sent before the next is read, so a session holds one page
    /// whatever the pool's size, and a peer that does not read holds up only its own
    /// session.
    async fn offer_pool(&mut self) -> Result<(), SessionEnd> {
        let mut left = self.p2p.config.max_pool_offered;
        let mut after = None;
        while left > 0 {
            let page = MAX_INVENTORY.min(left);
            let Some((txids, next)) = self
                .p2p
                .blocking(move |node| node.pool_txids_page(after, page))
                .await
            else {
                return Ok(());
            };
            if txids.is_empty() {
                return Ok(());
            }
            left -= txids.len();
            let items: Vec<InventoryItem> =
                txids.into_iter().map(InventoryItem::Transaction).collect();
            for item in &items {
                self.known.insert(item);
            }
            self.send(&Message::Inventory(items)).await?;
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Asks the peer for headers after our best header chain (or after `from`).
    pub(crate) async fn request_headers(
        &mut self,
        from: Option<BlockHash>,
    ) -> Result<(), SessionEnd> {
        let mut locator = self
            .p2p
            .blocking(|node| node.header_locator())
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if let Some(from) = from {
            locator.insert(0, from);
        }
        locator.truncate(MAX_LOCATOR_HASHES);
        self.headers_request.sent(tokio::time::Instant::now());
        self.send(&Message::GetHeaders {
            locator,
            stop: BlockHash::ZERO,
        })
        .await
    }

    /// Asks for headers because the peer announced a block we do not know, unless a
    /// request to it is unanswered ([`HeadersRequest`]).
    pub(crate) async fn request_announced_headers(&mut self) -> Result<(), SessionEnd> {
        if self
            .headers_request
            .block_announced(tokio::time::Instant::now())
        {
            self.request_headers(None).await?;
        }
        Ok(())
    }

    /// Answers `get_headers` with our main chain after the fork with the peer's locator.
    pub(crate) async fn on_get_headers(
        &mut self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
    ) -> Result<(), Stop> {
        let stop = (stop != BlockHash::ZERO).then_some(stop);
        // The locator starts at the peer's best block: a fresh view of its height.
        let their_best = locator.first().copied();
        let (headers, their_height) = self
            .p2p
            .blocking(move |node| node.headers_for_peer(&locator, stop, MAX_HEADERS))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if let (Some(hash), Some(height)) = (their_best, their_height) {
            self.p2p.registry.note_block(self.id, hash, height.0);
        }
        Ok(self.send(&Message::Headers(headers)).await?)
    }

    /// A `headers` message: answers our request; stored ([`Self::store_headers`]); and if
    /// a block was announced while the request was unanswered and no request went out
    /// since, asks again (the answer may have been written before that block).
    pub(crate) async fn on_headers(&mut self, headers: Vec<Header>) -> Result<(), Stop> {
        let announced_meanwhile = self.headers_request.answered();
        self.store_headers(headers).await?;
        let now = tokio::time::Instant::now();
        if announced_meanwhile && !self.headers_request.unanswered(now) {
            self.request_headers(None).await?;
        }
        Ok(())
    }

    /// Stores a peer's headers; asks for more after a full batch. Headers of a chain
    /// with too little work are not stored (`powchain_chain::low_work`): a full batch of
    /// them is pre-synced (counted, not kept), and downloaded again to be stored if the
    /// branch's work passes the threshold.
    async fn store_headers(&mut self, headers: Vec<Header>) -> Result<(), Stop> {
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Ok(());
        };
        let (parent, last) = (first.prev_hash, last.compute_hash());
        if self
            .presync
            .as_ref()
            .is_some_and(|presync| presync.last == parent)
        {
            return self.continue_presync(headers, last).await;
        }
        // Each header's hash, computed once for what follows.
        let hashes: Vec<BlockHash> = headers.iter().map(Header::compute_hash).collect();
        let short = headers.len() <= MAX_ANNOUNCED_HEADERS;
        // A peer that sends headers has their blocks' headers at least: never announce
        // them back to it (an announcement by headers would otherwise echo on every
        // link). Only short batches: a sync's 2,000 would churn the bounded set.
        if short {
            for hash in &hashes {
                self.known.insert(&InventoryItem::Block(*hash));
            }
        }
        let full = headers.len() == MAX_HEADERS;
        let count = headers.len() as u64;
        // The pre-synced branch is taken without the work check only as it comes again,
        // batch after batch from its first header: any other batch meanwhile (another
        // branch, unasked) is checked as always, so the allowance buys nothing else.
        let require_work = match &mut self.redownload {
            Some(redownload) if redownload.remaining >= count => {
                // The first batch may start anywhere at or below the fork (the peer answers
                // from our locator, which moves with our tip): it must hold the branch's
                // first header, the first of its headers the node did not have.
                let continues = match redownload.next_parent {
                    Some(expected) => parent == expected,
                    None => hashes.contains(&redownload.first),
                };
                if continues {
                    redownload.remaining -= count;
                    redownload.next_parent = Some(last);
                }
                !continues
            }
            _ => {
                self.redownload = None;
                true
            }
        };
        let reaches_target = self
            .redownload
            .as_ref()
            .is_some_and(|redownload| hashes.contains(&redownload.target));
        let result = self
            .p2p
            .blocking(move |node| node.accept_peer_headers(&headers, require_work))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        match result {
            Ok(PeerHeaders::Stored { height, added }) => {
                let higher = height
                    .is_some_and(|height| self.p2p.registry.note_block(self.id, last, height.0));
                if reaches_target {
                    debug!(peer = %self.label, "stored a pre-synced branch");
                    self.redownload = None;
                }
                if full {
                    self.request_headers(Some(last)).await?;
                }
                // Headers the node had, from a peer not known to have them, change no
                // download plan: a peer repeating one known header hundreds of times a
                // second must not make a plan each time under the node's lock.
                if added > 0 || higher {
                    self.p2p.pump_downloads().await;
                }
                // A compact block we could not place waited for one of these.
                let placed = self
                    .unplaced_compact
                    .take_if(|compact| hashes.contains(&compact.header.prev_hash));
                if let Some(compact) = placed {
                    self.on_compact_block(compact).await?;
                }
                Ok(())
            }
            Ok(PeerHeaders::LowWork {
                end_work,
                threshold,
                first_new,
            }) => {
                if full {
                    debug!(peer = %self.label, %end_work, %threshold, "pre-syncing a branch with too little work so far");
                    self.presync = Some(Presync {
                        first: first_new,
                        last,
                        work: end_work,
                        headers: count,
                    });
                    self.request_headers(Some(last)).await?;
                } else {
                    debug!(peer = %self.label, %end_work, %threshold, "ignored headers of a chain with too little work");
                }
                Ok(())
            }
            // A clock ahead of ours is not a lie (Bitcoin Core only ignores such headers):
            // the headers before it are kept and the rest may come again later.
            Err(error) if error.is_premature() => {
                debug!(peer = %self.label, %error, "ignored headers from the future");
                Ok(())
            }
            // An announcement of a block found invalid here: a peer tells the peers that
            // push to it of a block it has whole before validating it (compact.rs,
            // `announce_to_pushers`), so it may cross our verdict. Not misbehaviour; an
            // announcement of a child of that block still is.
            // (A short batch only: the blocks it names are announced, not a sync's.)
            Err(NodeError::Chain(ChainError::KnownInvalid { hash: failed }))
                if short && hashes.contains(&failed) =>
            {
                debug!(peer = %self.label, block = %failed, "an announcement of a block already found invalid; not punished (announced before validation)");
                Ok(())
            }
            Err(NodeError::Chain(ChainError::UnknownParent { .. }))
                if count as usize <= MAX_ANNOUNCED_HEADERS =>
            {
                // An announcement of blocks whose parent we lack (we missed a block, or
                // the peer thought we had it): ask for the headers in between.
                Ok(self.request_unconnected_headers().await?)
            }
            Err(error) => match node_error_misbehaviour(&error, "headers-do-not-connect") {
                Some(misbehaviour) => Err(misbehaviour.into()),
                None => {
                    warn!(peer = %self.label, %error, "could not store headers");
                    Ok(())
                }
            },
        }
    }

    /// Asks for headers because an announcement (headers or a compact block) did not
    /// connect, at most once per [`UNCONNECTED_REQUEST_INTERVAL`]: a peer sending
    /// announcements of unknown parents cannot make us send a locator for each.
    ///
    /// Nor while a request to the peer is unanswered ([`HeadersRequest`]; asked again when
    /// its answer comes, if no request follows it): batches are told apart only by the
    /// header each continues from, so a second request crossing a pre-sync's made the
    /// branch's first batch come again in the middle of the pre-sync, which restarted it,
    /// and the pre-sync's next batch then did not connect: an honest peer that pushed a
    /// block while we pre-synced its branch was banned.
    pub(crate) async fn request_unconnected_headers(&mut self) -> Result<(), SessionEnd> {
        let now = tokio::time::Instant::now();
        let recent = self
            .last_unconnected_request
            .is_some_and(|at| now.duration_since(at) < UNCONNECTED_REQUEST_INTERVAL);
        if recent || !self.headers_request.block_announced(now) {
            return Ok(());
        }
        self.last_unconnected_request = Some(now);
        self.request_headers(None).await
    }

    /// Announces the new blocks among `items` by their headers (BIP-130) when the peer is
    /// known to have a recent ancestor: the headers from there to the block, at most
    /// [`MAX_ANNOUNCED_HEADERS`]; the peer can then ask for the block at once, without a
    /// `getheaders` round trip. Those blocks leave `items`; the others stay, to go by
    /// `inv`. Only with compact relay on (off, the relay is the one before both).
    pub(crate) async fn announce_blocks_by_headers(
        &mut self,
        items: &mut Vec<InventoryItem>,
    ) -> Result<(), SessionEnd> {
        if !self.p2p.config.compact_blocks {
            return Ok(());
        }
        let blocks: Vec<BlockHash> = items.iter().filter_map(InventoryItem::block_hash).collect();
        for hash in blocks {
            let chain = self
                .p2p
                .blocking(move |node| node.headers_ending_at(&hash, MAX_ANNOUNCED_HEADERS))
                .await
                .ok_or(SessionEnd::Shutdown)?;
            let Some(from) = chain
                .iter()
                .rposition(|header| self.known.contains(&InventoryItem::Block(header.prev_hash)))
            else {
                continue;
            };
            let headers = chain[from..].to_vec();
            for header in &headers {
                self.known
                    .insert(&InventoryItem::Block(header.compute_hash()));
            }
            items.retain(|item| *item != InventoryItem::Block(hash));
            self.send(&Message::Headers(headers)).await?;
        }
        Ok(())
    }

    /// Counts a batch that continues a pre-synced branch; once the branch has the work,
    /// asks for it again from the fork, to be stored.
    async fn continue_presync(
        &mut self,
        headers: Vec<Header>,
        last: BlockHash,
    ) -> Result<(), Stop> {
        let Some(presync) = self.presync.take() else {
            return Ok(());
        };
        let full = headers.len() == MAX_HEADERS;
        let count = presync.headers + headers.len() as u64;
        let result = self
            .p2p
            .blocking(move |node| node.presync_peer_headers(presync.last, presync.work, &headers))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        let (work, threshold) = match result {
            Ok(counted) => counted,
            Err(error) => {
                return match node_error_misbehaviour(&error, "headers-do-not-connect") {
                    Some(misbehaviour) => Err(misbehaviour.into()),
                    None => {
                        warn!(peer = %self.label, %error, "could not count headers");
                        Ok(())
                    }
                };
            }
        };
        if work >= threshold {
            debug!(peer = %self.label, headers = count, "a pre-synced branch has the work; downloading it again to store it");
            self.redownload = Some(Redownload {
                first: presync.first,
                next_parent: None,
                target: last,
                remaining: count + MAX_HEADERS as u64,
            });
            self.request_headers(None).await?;
        } else if full {
            self.presync = Some(Presync {
                first: presync.first,
                last,
                work,
                headers: count,
            });
            self.request_headers(Some(last)).await?;
        } else {
            debug!(peer = %self.label, headers = count, "a pre-synced branch ended with too little work");
        }
        Ok(())
    }

    /// Hands a peer's block to the node.
    pub(crate) async fn on_block(&mut self, block: Block) -> Result<(), Stop> {
        self.on_blocks(vec![block], false).await
    }

    /// Hands blocks the peer sent to the node in one call (one hand-off to a blocking
    /// thread), then judges each result as if its block had come alone, and asks for more
    /// once. A lone new block is first pushed to the peers that asked for pushes
    /// (compact.rs). A block rebuilt from a compact block (`via_compact`) that fails
    /// validation does not ban its sender: it may have pushed it before validating it,
    /// as BIP-152 allows; its header's proof of work was checked.
    pub(crate) async fn on_blocks(
        &mut self,
        blocks: Vec<Block>,
        via_compact: bool,
    ) -> Result<(), Stop> {
        if let [block] = blocks.as_slice() {
            self.push_before_validation(block).await?;
        }
        let arrivals: Vec<(BlockHash, usize, u64)> = blocks
            .iter()
            .map(|block| {
                (
                    block.compute_hash(),
                    block.transactions.len(),
                    block.header.time_ms,
                )
            })
            .collect();
        for (hash, _, _) in &arrivals {
            self.known.insert(&InventoryItem::Block(*hash));
        }
        let payments: usize = arrivals
            .iter()
            .map(|(_, transactions, _)| transactions.saturating_sub(1))
            .sum();
        self.p2p
            .simulated_validation(
                u32::try_from(arrivals.len()).unwrap_or(u32::MAX),
                u32::try_from(payments).unwrap_or(u32::MAX),
                0,
            )
            .await;
        let results = self
            .p2p
            .blocking(move |node| node.submit_peer_blocks(blocks))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        // Blocks after a rejected one were not submitted: they are no longer in flight
        // either (the session ends).
        // A plan is made again only if something it reads changed: a request's place
        // freed, a block stored, a peer's tip raised. A peer sending a block the node has
        // (unasked, so within the message rate) must not buy a plan under the lock.
        let mut news = false;
        for (hash, _, _) in &arrivals {
            news |= self.p2p.block_done(hash);
        }
        let mut ask_for_headers = false;
        for ((hash, transactions, block_time_ms), result) in arrivals.into_iter().zip(results) {
            match result {
                Ok(PeerBlock {
                    outcome,
                    height,
                    connected,
                    tip_height,
                    best_header_height,
                }) => {
                    self.p2p.log_block_arrival(BlockArrival {
                        peer: &self.label,
                        height: height.map_or(tip_height.0, |height| height.0),
                        transactions,
                        block_time_ms,
                        connected,
                        tip_height: tip_height.0,
                        caught_up: best_header_height <= tip_height,
                    });
                    if matches!(outcome, BlockOutcome::MainChain | BlockOutcome::SideBranch) {
                        news = true;
                        self.p2p
                            .registry
                            .note_useful_block(self.id, self.p2p.node.now_ms());
                    }
                    if outcome == BlockOutcome::MainChain && connected > 0 {
                        self.promote_high_bandwidth().await?;
                    }
                    if let Some(height) = height {
                        news |= self.p2p.registry.note_block(self.id, hash, height.0);
                    }
                    if let BlockOutcome::Orphan { missing_parent } = outcome {
                        debug!(peer = %self.label, block = %hash, parent = %missing_parent, "orphan block; asking for headers");
                        ask_for_headers = true;
                    }
                }
                Err(error) if error.is_premature() => {
                    debug!(peer = %self.label, block = %hash, %error, "ignored a block from the future");
                }
                Err(error) if error.is_rejection() && via_compact => {
                    debug!(peer = %self.label, block = %hash, %error, "a compact block failed validation; not punished (pushed before validation)");
                }
                Err(error) => match node_error_misbehaviour(&error, "invalid-block") {
                    Some(misbehaviour) => return Err(misbehaviour.into()),
                    None => warn!(peer = %self.label, %error, "could not store a block"),
                },
            }
        }
        if ask_for_headers {
            // As for an announcement: an orphan costs its sender a few hashes on regtest
            // (or at devnet's proof-of-work limit), so one request is unanswered at a time.
            self.request_announced_headers().await?;
        }
        if news {
            self.p2p.pump_downloads().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_while_a_request_is_unanswered_ask_once_when_it_is_answered() {
        let start = tokio::time::Instant::now();
        let mut request = HeadersRequest::default();
        assert!(request.block_announced(start), "nothing asked yet: ask");
        request.sent(start);
        for _ in 0..100 {
            assert!(!request.block_announced(start), "one is unanswered: wait");
        }
        assert!(request.answered(), "announced meanwhile: ask again once");
        assert!(!request.answered(), "no announcement since");
        assert!(request.block_announced(start), "answered: ask at once");
    }

    #[test]
    fn a_request_unanswered_for_the_response_time_no_longer_holds_the_next_back() {
        let start = tokio::time::Instant::now();
        let mut request = HeadersRequest::default();
        request.sent(start);
        assert!(!request.block_announced(start + HEADERS_RESPONSE_TIME / 2));
        assert!(request.block_announced(start + HEADERS_RESPONSE_TIME));
    }
}
