//! A session's side of transaction relay: admitting the transactions its peer sent, and
//! asking the peer for those it announced, within the request tracker's bounds
//! (`transaction_requests.rs`); announcements past a peer's bound wait in its session and
//! are asked for as its load falls.

use powchain_consensus::Txid;
use powchain_node::NodeError;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use crate::message::{InventoryItem, MAX_INVENTORY, Message};
use crate::session::Session;
use crate::session_end::{Misbehaviour, SessionEnd, Stop};

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    /// Admits transactions the peer sent, in one call to the node; each result is judged
    /// as its own message would be.
    pub(crate) async fn on_transactions(
        &mut self,
        transactions: Vec<powchain_consensus::Transaction>,
    ) -> Result<(), Stop> {
        let held: Vec<(Txid, powchain_consensus::Transaction)> = transactions
            .iter()
            .map(|transaction| (transaction.compute_txid(), transaction.clone()))
            .collect();
        // Seen at once, so that nobody else is asked for them while the node judges them.
        let first_sights: Vec<bool> = held
            .iter()
            .map(|(txid, _)| {
                self.known.insert(&InventoryItem::Transaction(*txid));
                self.p2p.first_sight_of_transaction(*txid)
            })
            .collect();
        let count = u32::try_from(transactions.len()).unwrap_or(u32::MAX);
        self.p2p.simulated_validation(0, 0, count).await;
        let results = self
            .p2p
            .blocking(move |node| node.submit_peer_transactions(transactions))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        // The node judges a batch up to its first invalid transaction (the peer is banned
        // for it). Those it judged have arrived; those after were never judged, so they
        // are not seen, and their requests stay with this peer until its session ends and
        // pass to their next announcer: marked seen and done, a stranger that sent a
        // forgery first could bury the real payments it sent after it. (Only what this
        // batch made seen: one seen before, refused or held, say, stays so.)
        for (index, (txid, _)) in held.iter().enumerate() {
            if index < results.len() {
                self.p2p.transaction_arrived(txid);
            } else if first_sights[index] {
                self.p2p.forget_seen_transaction(txid);
            }
        }
        let mut orphans = Vec::new();
        let mut misbehaviour = None;
        for ((txid, held), result) in held.into_iter().zip(results) {
            match result {
                Ok(_) => {
                    self.p2p
                        .registry
                        .note_useful_transaction(self.id, self.p2p.node.now_ms());
                }
                // Consensus violations are the sender's fault; policy refusals (fees, a
                // conflict, a full pool), a parent not yet seen and a coinbase that is not
                // mature yet here are not.
                Err(NodeError::Mempool(error)) if error.is_invalid() => {
                    misbehaviour = Some(Misbehaviour::new(
                        error.rule(),
                        format!("invalid transaction {txid}: {error}"),
                    ));
                    break;
                }
                // A parent still to come, or a block that makes the coinbase it spends
                // mature: held, and tried again then.
                Err(NodeError::Mempool(error)) if let Some(lacking) = error.awaited_input() => {
                    orphans.push((txid, held, lacking));
                }
                Err(NodeError::Mempool(error)) => {
                    debug!(peer = %self.label, %txid, reason = %error, "transaction not pooled");
                }
                Err(error) => {
                    warn!(peer = %self.label, %txid, %error, "could not pool a transaction");
                }
            }
        }
        // Those before a forgery are held as if it had not come.
        self.hold_orphans(orphans).await?;
        if let Some(misbehaviour) = misbehaviour {
            return Err(misbehaviour.into());
        }
        // The peer's load fell by what it delivered.
        self.ask_for_deferred_transactions().await?;
        Ok(())
    }

    /// Holds transactions whose input is missing until their parent arrives (in a block,
    /// or after a reorganisation returns it to a pool), or that spend a coinbase not
    /// mature here until the next block, unless a block of ours already
    /// confirmed them: a transaction arriving just after the block that holds it (asked
    /// for before, or sent by a peer a block behind) lacks the very coins it spent there,
    /// and would wait in the hold for good, pushing out real orphans.
    async fn hold_orphans(
        &mut self,
        orphans: Vec<(
            Txid,
            powchain_consensus::Transaction,
            powchain_consensus::OutPoint,
        )>,
    ) -> Result<(), Stop> {
        if orphans.is_empty() {
            return Ok(());
        }
        let txids: Vec<Txid> = orphans.iter().map(|(txid, _, _)| *txid).collect();
        let confirmed = self
            .p2p
            .blocking(move |node| node.transactions_confirmed(&txids))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        for ((txid, transaction, lacking), confirmed) in orphans.into_iter().zip(confirmed) {
            if confirmed {
                debug!(peer = %self.label, %txid, "a transaction a block already confirmed; not held");
            } else {
                debug!(peer = %self.label, %txid, "holding a transaction until its parent arrives");
                self.p2p.hold_orphan_transaction(txid, transaction, lacking);
            }
        }
        Ok(())
    }

    /// Asks the peer for `txids` in one `getdata` (none if empty).
    pub(crate) async fn ask_for_transactions(&mut self, txids: Vec<Txid>) -> Result<(), Stop> {
        if txids.is_empty() {
            return Ok(());
        }
        let items = txids.into_iter().map(InventoryItem::Transaction).collect();
        self.send(&Message::GetData(items)).await?;
        Ok(())
    }

    /// Keeps announcements that were over the peer's bound, within the deferral bounds.
    pub(crate) fn defer_transactions(&mut self, txids: Vec<Txid>) {
        if txids.is_empty() {
            return;
        }
        let dropped = self.deferred_transactions.defer(txids);
        if dropped > 0 {
            debug!(peer = %self.label, dropped, "too many transaction announcements waiting; dropped some");
        }
    }

    /// Asks the peer for the oldest announcements kept over its bound, as many as its
    /// load now allows (those pooled or seen meanwhile are not asked for).
    pub(crate) async fn ask_for_deferred_transactions(&mut self) -> Result<(), Stop> {
        if self.deferred_transactions.is_empty() {
            return Ok(());
        }
        let room = self.p2p.transaction_room(self.id).min(MAX_INVENTORY);
        if room == 0 {
            return Ok(());
        }
        let candidates = self.deferred_transactions.take(room);
        let pooled = {
            let candidates = candidates.clone();
            self.p2p
                .blocking(move |node| node.pool_contains(&candidates))
                .await
                .ok_or(SessionEnd::Shutdown)?
        };
        let unseen: Vec<Txid> = candidates
            .into_iter()
            .zip(pooled)
            .filter(|(txid, in_pool)| !in_pool && !self.p2p.has_seen_transaction(txid))
            .map(|(txid, _)| txid)
            .collect();
        let announced = self.p2p.transactions_announced(self.id, &unseen);
        self.deferred_transactions.put_back(announced.over_bound);
        self.ask_for_transactions(announced.ask).await?;
        Ok(())
    }
}
