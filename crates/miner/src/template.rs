//! Block templates: the coinbase (subsidy + fees, optional note) and the chosen transactions.

use powchain_consensus::merkle::compute_merkle_root;
use powchain_consensus::{
    Address, Amount, Block, BlockHash, BlockHeight, CompactTarget, Header, Params, Transaction,
    TxOut,
};

/// What a template is built from.
#[derive(Clone, Debug)]
pub struct TemplateRequest {
    /// The block to build on.
    pub parent: BlockHash,
    /// The new block's height.
    pub height: BlockHeight,
    /// The bits the difficulty rule requires.
    pub bits: CompactTarget,
    /// The earliest valid time: the median time past plus one.
    pub min_time_ms: u64,
    /// The clock now.
    pub now_ms: u64,
    /// Who the coinbase pays.
    pub payout: Address,
    /// The coinbase note (the tutorial's block `data`), at most the network's limit.
    pub note: Vec<u8>,
    /// Transactions in the order they go into the block (parents before children), with
    /// their fees.
    pub transactions: Vec<(Transaction, Amount)>,
}

/// Bytes to keep free for the header, the transaction count and the coinbase when choosing
/// pooled transactions for a block.
pub fn coinbase_size_estimate(params: &Params) -> usize {
    // header + count varint + coinbase (version, tag, height varint, note, one output).
    88 + 9 + 4 + 1 + 10 + 2 + params.max_coinbase_data_bytes + 1 + 40
}

/// Builds an unsolved block (nonce 0) from `request`.
///
/// The note is cut to the network's limit; the coinbase pays the subsidy plus every fee
/// to `payout` (no output at all if that is zero: zero-value outputs are invalid).
pub fn build_template(params: &Params, request: TemplateRequest) -> Block {
    let fees = Amount::checked_sum(request.transactions.iter().map(|(_, fee)| *fee))
        .unwrap_or(Amount::ZERO);
    let reward = params
        .subsidy(request.height)
        .checked_add(fees)
        .unwrap_or_else(|| params.subsidy(request.height));
    let outputs = if reward == Amount::ZERO {
        vec![]
    } else {
        vec![TxOut {
            value: reward,
            address: request.payout,
        }]
    };
    let mut note = request.note;
    note.truncate(params.max_coinbase_data_bytes);
    let coinbase = Transaction::new_coinbase(request.height, note, outputs);
    let mut transactions = Vec::with_capacity(request.transactions.len() + 1);
    transactions.push(coinbase);
    transactions.extend(
        request
            .transactions
            .into_iter()
            .map(|(transaction, _)| transaction),
    );
    let txids: Vec<_> = transactions.iter().map(Transaction::compute_txid).collect();
    Block {
        header: Header {
            version: Header::CURRENT_VERSION,
            prev_hash: request.parent,
            merkle_root: compute_merkle_root(&txids),
            time_ms: request.now_ms.max(request.min_time_ms),
            bits: request.bits,
            nonce: 0,
        },
        transactions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::{TestChain, test_address, test_key};
    use powchain_consensus::validation::validate_block_structure;
    use powchain_consensus::{Network, TxOut};

    #[test]
    fn template_pays_subsidy_plus_fees_and_validates() {
        let mut chain = TestChain::regtest_with_mature_coins(1);
        let (outpoint, coin) = chain.mature_coin(0);
        let fee = Amount::from_units(777).expect("in range");
        let spend = chain.spend(
            &[outpoint],
            vec![TxOut {
                value: coin.output.value.checked_sub(fee).expect("enough"),
                address: test_address(3),
            }],
            &[test_key(1)],
            &Default::default(),
        );
        let params = chain.params;
        let context = chain.next_header_context(0);
        let mut block = build_template(
            params,
            TemplateRequest {
                parent: chain.tip().compute_hash(),
                height: chain.height().next(),
                bits: context.required_bits,
                min_time_ms: context.median_time_past_ms + 1,
                now_ms: chain.tip().header.time_ms + 3000,
                payout: test_address(4),
                note: vec![b'x'; 500],
                transactions: vec![(spend, fee)],
            },
        );
        assert_eq!(
            block.transactions[0]
                .coinbase()
                .map(|input| input.data.len()),
            Some(100)
        );
        let expected = params
            .subsidy(chain.height().next())
            .checked_add(fee)
            .expect("in range");
        assert_eq!(block.transactions[0].outputs[0].value, expected);
        validate_block_structure(params, &block, chain.height().next()).expect("valid structure");
        powchain_consensus::testkit::solve(&mut block.header);
        chain.push(block).expect("the template connects");
    }

    #[test]
    fn time_never_goes_below_the_median() {
        let params = Network::Regtest.params();
        let block = build_template(
            params,
            TemplateRequest {
                parent: params.genesis_hash(),
                height: BlockHeight(1),
                bits: params.pow_limit,
                min_time_ms: 5_000,
                now_ms: 1_000,
                payout: test_address(1),
                note: vec![],
                transactions: vec![],
            },
        );
        assert_eq!(block.header.time_ms, 5_000);
    }
}
