//! Block templates: a coinbase paying the miner's address with its note, then the pool's
//! best-paying transactions that fit the block, on the current tip with the difficulty
//! and earliest time the rules require.

use powchain_consensus::{Address, Block};

use crate::error::NodeError;
use crate::node::{Node, lock};

impl Node {
    /// Builds a block template on the current tip: coinbase to `payout` with `note`, and
    /// the best-paying pooled transactions if `include_pool`.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if the tip's ancestry cannot be read.
    pub fn block_template(
        &self,
        payout: Address,
        note: Vec<u8>,
        include_pool: bool,
    ) -> Result<Block, NodeError> {
        let now = self.clock.now_ms();
        let core = lock(&self.core);
        let tip = core.chain.tip();
        let context = core.chain.header_context(&tip.hash, now)?;
        let budget = self
            .params
            .max_block_bytes
            .saturating_sub(powchain_miner::coinbase_size_estimate(self.params));
        let transactions = if include_pool {
            core.mempool
                .select_for_block(budget)
                .into_iter()
                .map(|entry| (entry.transaction.clone(), entry.fee))
                .collect()
        } else {
            Vec::new()
        };
        Ok(powchain_miner::build_template(
            self.params,
            powchain_miner::TemplateRequest {
                parent: tip.hash,
                height: tip.height.next(),
                bits: context.required_bits,
                min_time_ms: context.median_time_past_ms + 1,
                now_ms: now,
                payout,
                note,
                transactions,
            },
        ))
    }
}
