//! Shared set-up for the node's unit tests: a clock the test moves by hand, nodes in
//! temporary directories that can be closed and reopened, blocks mined on them, and
//! signed spends of outputs that pay `testkit` keys.
//!
//! ```text
//!   ManualClock (set, advance) ──▶ TestNode::open ──▶ Node::open(network, temp dir, clock)
//!   TestNode::mine / mine_paying ──▶ block_template + nonce search ──▶ Node::submit_block
//!   TestNode::reopen ──▶ the node dropped, then opened again on the same dir and clock
//! ```
//!
//! Tests drive the node through its public methods. The one look behind them is
//! [`TestNode::stored_pool_txids`], a read of the pool store; nothing reaches into `Core`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use powchain_chain::BlockOutcome;
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::testkit::{sign_all, solve};
use powchain_consensus::{
    Address, Amount, Block, Network, OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut, Txid,
};
use tempfile::TempDir;

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::node::Node;

/// A clock that moves only when the test says so.
#[derive(Debug)]
pub(crate) struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub(crate) fn starting_at(now_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicU64::new(now_ms),
        })
    }

    /// Sets the time, backwards too (a system clock can be corrected backwards).
    pub(crate) fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub(crate) fn advance(&self, by_ms: u64) {
        self.now_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// A node on its own temporary data directory and a manual clock.
pub(crate) struct TestNode {
    // Declared before `dir`, so the node closes its stores before the directory goes.
    pub(crate) node: Arc<Node>,
    pub(crate) clock: Arc<ManualClock>,
    dir: TempDir,
}

impl TestNode {
    /// A fresh node whose clock starts one block interval after genesis.
    pub(crate) fn open(network: Network) -> TestNode {
        let params = network.params();
        let clock =
            ManualClock::starting_at(params.genesis().header.time_ms + params.target_block_time_ms);
        TestNode::open_with_clock(network, clock)
    }

    /// A fresh node reading `clock` (shared with other test nodes, so their blocks agree
    /// on the time).
    pub(crate) fn open_with_clock(network: Network, clock: Arc<ManualClock>) -> TestNode {
        TestNode::open_configured(network, clock, |_| {})
    }

    /// A fresh node reading `clock`, with the test settings changed by `configure`.
    pub(crate) fn open_configured(
        network: Network,
        clock: Arc<ManualClock>,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = config(network, dir.path());
        configure(&mut config);
        let node =
            Node::open(config, Arc::clone(&clock) as Arc<dyn Clock>).expect("the node opens");
        TestNode { node, clock, dir }
    }

    /// Closes the node and opens it again on the same data directory and clock, as a
    /// restart would.
    pub(crate) fn reopen(self) -> TestNode {
        self.reopen_after(|_| {})
    }

    /// Closes the node, lets `while_closed` change its data directory (as a crash or an
    /// operator might), and opens it again.
    pub(crate) fn reopen_after(self, while_closed: impl FnOnce(&NodeConfig)) -> TestNode {
        let TestNode { node, clock, dir } = self;
        let config = node.config().clone();
        assert_eq!(
            Arc::strong_count(&node),
            1,
            "nothing else holds the node, so its stores close"
        );
        drop(node);
        while_closed(&config);
        let node =
            Node::open(config, Arc::clone(&clock) as Arc<dyn Clock>).expect("the node reopens");
        TestNode { node, clock, dir }
    }

    /// Closes the node and opens it again with its settings changed by `configure` (a
    /// restart with other flags).
    pub(crate) fn reopen_configured(self, configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let (mut config, clock, dir) = self.close();
        configure(&mut config);
        let node =
            Node::open(config, Arc::clone(&clock) as Arc<dyn Clock>).expect("the node reopens");
        TestNode { node, clock, dir }
    }

    /// Closes the node and hands back what reopens its data directory: its settings,
    /// clock and the directory itself (deleted when dropped).
    pub(crate) fn close(self) -> (NodeConfig, Arc<ManualClock>, TempDir) {
        let TestNode { node, clock, dir } = self;
        let config = node.config().clone();
        assert_eq!(Arc::strong_count(&node), 1, "nothing else holds the node");
        drop(node);
        (config, clock, dir)
    }

    /// What the pool store holds. The one look behind the node's boundary: a store row
    /// otherwise shows only at the next start, and a row for a transaction that can never
    /// be valid again does not show at all.
    pub(crate) fn stored_pool_txids(&self) -> Vec<Txid> {
        self.node
            .pool_store
            .load()
            .expect("the pool store reads")
            .iter()
            .map(|(transaction, _)| transaction.compute_txid())
            .collect()
    }

    /// Mines one block paying the node's wallet, one block interval later on the clock.
    pub(crate) fn mine(&self, include_pool: bool) -> Block {
        self.clock.advance(self.node.params().target_block_time_ms);
        self.node
            .mine_one(b"test".to_vec(), include_pool)
            .expect("a block is mined")
    }

    /// Mines blocks paying the wallet until its first coinbase may be spent in the next
    /// block (`Params::coinbase_maturity` blocks).
    pub(crate) fn mine_until_spendable(&self) -> Vec<Block> {
        (0..self.node.params().coinbase_maturity.max(1))
            .map(|_| self.mine(false))
            .collect()
    }

    /// Mines one empty block whose coinbase pays `payout` (a key the test holds).
    pub(crate) fn mine_paying(&self, payout: Address) -> Block {
        self.clock.advance(self.node.params().target_block_time_ms);
        let mut block = self
            .node
            .block_template(payout, b"test".to_vec(), false)
            .expect("a template");
        solve(&mut block.header);
        let outcome = self
            .node
            .submit_block(block.clone())
            .expect("the block is valid");
        assert_eq!(outcome, BlockOutcome::MainChain);
        block
    }

    /// Hands `blocks` (mined elsewhere) to this node, as the API would.
    pub(crate) fn submit_blocks(&self, blocks: &[Block]) {
        for block in blocks {
            self.node
                .submit_block(block.clone())
                .expect("the block is valid");
        }
    }

    /// The wallet pays one coin to `testkit`'s third address (the node must hold a
    /// spendable coin: [`TestNode::mine_until_spendable`]).
    pub(crate) fn pay_one_coin(&self) -> crate::SentPayment {
        self.node
            .send(
                powchain_consensus::testkit::test_address(3),
                Amount::ONE_COIN,
                None,
            )
            .expect("the wallet pays")
    }

    pub(crate) fn pool_holds(&self, txid: &Txid) -> bool {
        self.node.pool_contains(std::slice::from_ref(txid))[0]
    }
}

fn config(network: Network, data_dir: &Path) -> NodeConfig {
    let mut config = NodeConfig::new(network, data_dir.to_path_buf());
    config.miner_threads = 1;
    config.signature_threads = 1;
    config
}

/// A fee comfortably above the pool's minimum rate for a one-input, one-output spend.
fn test_fee() -> Amount {
    Amount::from_units(10_000).expect("in range")
}

/// Spends output `vout` of `parent` (paying `key`'s address) to `recipient`, less
/// [`test_fee`].
pub(crate) fn spend_output(
    parent: &Transaction,
    vout: u32,
    key: &Keypair,
    recipient: Address,
) -> Transaction {
    let spent = parent.outputs[vout as usize];
    let value = spent
        .value
        .checked_sub(test_fee())
        .expect("the spent output pays more than the fee");
    spend_to(
        parent,
        vout,
        key,
        vec![TxOut {
            value,
            address: recipient,
        }],
    )
}

/// Spends output `vout` of `parent` (paying `key`'s address) to `outputs`, signed.
pub(crate) fn spend_to(
    parent: &Transaction,
    vout: u32,
    key: &Keypair,
    outputs: Vec<TxOut>,
) -> Transaction {
    let spent = parent.outputs[vout as usize];
    let mut transaction = Transaction {
        version: Transaction::CURRENT_VERSION,
        inputs: TxInputs::Spends(vec![TxIn {
            prevout: OutPoint {
                txid: parent.compute_txid(),
                vout,
            },
            signature: Signature([0; 64]),
        }]),
        outputs,
    };
    sign_all(&mut transaction, &[spent], std::slice::from_ref(key));
    transaction
}

/// Where in `transaction` the output paying `address` is.
pub(crate) fn output_paying(transaction: &Transaction, address: &Address) -> u32 {
    let vout = transaction
        .outputs
        .iter()
        .position(|output| output.address == *address)
        .expect("an output pays that address");
    u32::try_from(vout).expect("few outputs")
}
