//! Block templates: a coinbase paying the miner's address with its note, then the pool's
//! best-paying transactions that fit the block, on the current tip with the difficulty
//! and earliest time the rules require.

use powchain_consensus::{Address, Block};

use crate::error::NodeError;
use crate::node::{Node, lock};

impl Node {
    /// Builds a block template on the current tip: coinbase to `payout` with `note`, and
    /// the best-paying pooled transactions if `include_pool` (those pooled for at least
    /// `NodeConfig::template_min_pool_age_ms`).
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
        let min_age_ms = self.config.template_min_pool_age_ms;
        let transactions = if include_pool {
            let selected = if min_age_ms == 0 {
                core.mempool.select_for_block(budget)
            } else {
                core.mempool
                    .select_for_block_entered_by(budget, now.saturating_sub(min_age_ms))
            };
            selected
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

#[cfg(test)]
mod tests {
    use powchain_consensus::Network;
    use powchain_consensus::testkit::test_address;

    use crate::testing::{ManualClock, TestNode};

    #[test]
    fn a_template_leaves_out_payments_younger_than_the_minimum_pool_age() {
        let params = Network::Regtest.params();
        let clock = ManualClock::starting_at(params.genesis().header.time_ms);
        let test = TestNode::open_configured(Network::Regtest, clock, |config| {
            config.template_min_pool_age_ms = 5_000;
        });
        test.mine_until_spendable();
        let payment = test.pay_one_coin();
        let template = |include_pool| {
            test.node
                .block_template(test_address(4), b"test".to_vec(), include_pool)
                .expect("a template")
        };

        test.clock.advance(4_999);
        assert_eq!(template(true).transactions.len(), 1, "the coinbase alone");
        test.clock.advance(1);
        let block = template(true);
        assert_eq!(block.transactions.len(), 2);
        assert_eq!(block.transactions[1], payment.transaction);
        assert_eq!(template(false).transactions.len(), 1);
    }
}
