//! The invalid-input catalogue at the peer entry point: every hostile message a peer can
//! send, built from the node's real state, sent over a real WebSocket by a raw protocol
//! peer, and checked for what the node must do: refuse it with the rule it broke, store
//! nothing, keep serving everyone else, and ban the sender (unless the refusal is pool
//! policy, which honest peers can disagree about; see docs/PROTOCOL.md). The positive
//! cases at each limit go through the same path and must be accepted.
//!
//! ```text
//!   TestChain (mirror of the node's main chain) ──builds──▶ hostile block / tx / bytes
//!   raw peer (announces its own fake listen port) ──WebSocket──▶ node under test
//!        ├─ expect Banned(rule): closed, `P2p::banned()` names (port, rule), nothing stored
//!        ├─ expect Refused: ping still answered, not banned, nothing stored
//!        └─ expect Accepted: the block is the tip / the transaction is pooled
//!   after every case: a fresh peer gets its ping answered; the honest node stays connected
//! ```
//!
//! The node under test reads a fixed clock, so the time limits are exact: a block stamped
//! `now + 15 s` is accepted and one stamped a millisecond later is not. docs/SECURITY.md
//! lists every case.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Socket, TestNode, closed_by_node, config, hello, resident_bytes, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_chain::BlockStatus;
use powchain_consensus::encode::{Encode, write_varint};
use powchain_consensus::testkit::{TestChain, sign_all, solve, test_address, test_key};
use powchain_consensus::{
    Amount, Block, BlockHash, BlockHeight, Coin, CompactTarget, Header, MerkleRoot, Network,
    OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut, Txid,
};
use powchain_node::{Clock, SystemClock};
use powchain_p2p::{
    InventoryItem, MAX_COMPACT_TRANSACTIONS, MAX_MESSAGE_BYTES, Message, PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as Frame;

/// How long the node may take to react to one message.
const LIMIT: Duration = Duration::from_secs(20);
/// Blocks the node holds before the first case: coins to spend for the cases.
const SETUP_BLOCKS: usize = 100;
/// The first fake listening port the raw peers announce; each connection takes the next.
const FIRST_FAKE_PORT: u16 = 48_000;
/// The largest block.
const MAX_BLOCK_BYTES: usize = 2_000_000;

/// A clock that stands still: the time rules are tested at their exact limits.
struct FixedClock(u64);

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0
    }
}

/// What a case sends.
enum Attack {
    /// A protocol message after a proper handshake.
    Message(Message),
    /// One binary frame of raw bytes after the handshake.
    Bytes(Vec<u8>),
    /// One WebSocket frame of another kind after the handshake.
    Frame(Frame),
    /// Raw bytes on the TCP stream after the handshake (hand-made WebSocket frames).
    Tcp(Vec<u8>),
    /// One binary frame instead of our hello.
    InsteadOfHello(Vec<u8>),
    /// Protocol messages as fast as the socket takes them, until the node hangs up.
    Flood(fn(u64) -> Message),
}

/// What the node must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Close the connection, ban the sender for `rule`, store nothing.
    Banned(&'static str),
    /// Refuse without a ban (pool policy): the connection stays, nothing is stored.
    Refused,
    /// Close the connection without a ban (a peer of another network is not lying).
    ClosedNotBanned,
    /// Accept: the block becomes the tip, or the transaction enters the pool.
    Accepted,
}

/// One row of the catalogue.
struct Case {
    name: &'static str,
    build: fn(&mut Harness) -> Attack,
    expect: Expect,
}

fn case(name: &'static str, expect: Expect, build: fn(&mut Harness) -> Attack) -> Case {
    Case {
        name,
        build,
        expect,
    }
}

/// The node under test, an honest peer, and a mirror of the node's main chain.
struct Harness {
    node: TestNode,
    honest: TestNode,
    chain: TestChain,
    now_ms: u64,
    next_port: u16,
    /// Index of the next unused mature coinbase in `chain` (see `TestChain::mature_coin`).
    next_coin: u64,
    /// Transactions the node pooled through accepted cases.
    pooled: Vec<Transaction>,
    /// A block the node refused (for descendants of an invalid block).
    failed: Option<Block>,
    /// A valid block whose mutated copy the node refused (sent next, to be accepted).
    held_back: Option<Block>,
    /// Hashes of every block a case made the node refuse.
    refused_blocks: Vec<BlockHash>,
}

fn block_message(block: Block) -> Attack {
    Attack::Message(Message::Block(Box::new(block)))
}

fn tx_message(transaction: Transaction) -> Attack {
    Attack::Message(Message::Transaction(Box::new(transaction)))
}

fn out(units: u64, seed: u8) -> TxOut {
    TxOut {
        value: Amount::from_units(units).expect("test amounts are in range"),
        address: test_address(seed),
    }
}

/// A header whose hash does not meet its own target (about every second hash does, on
/// regtest, so the next failing nonce is close).
fn break_proof_of_work(header: &mut Header) {
    let target = header.bits.to_target().expect("valid bits");
    while target.is_met_by(header.compute_hash()) {
        header.nonce = header.nonce.wrapping_add(1);
    }
}

impl Harness {
    fn fake_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port += 1;
        port
    }

    /// The next block on the node's tip: coinbase paying subsidy plus `fees`, then
    /// `transactions`; a time the node accepts; Merkle root set; not yet solved.
    fn template(&self, transactions: Vec<Transaction>, fees: u64) -> Block {
        let mut block = self.chain.template(
            transactions,
            Amount::from_units(fees).expect("fees in range"),
        );
        let context = self.chain.next_header_context(self.now_ms);
        if block.header.time_ms > self.now_ms + self.chain.params.max_future_block_time_ms {
            block.header.time_ms = context.median_time_past_ms + 1;
        }
        block
    }

    /// A valid next block holding `transactions` that pay `fees`.
    fn valid_block(&self, transactions: Vec<Transaction>, fees: u64) -> Block {
        let mut block = self.template(transactions, fees);
        TestChain::seal(&mut block);
        block
    }

    /// A mature coin of the mirror's miner that no earlier case spent.
    fn coin(&mut self) -> (OutPoint, Coin) {
        let coin = self.chain.mature_coin(self.next_coin);
        self.next_coin += 1;
        coin
    }

    /// A signed transaction spending `coins` (the miner's) to `outputs`.
    fn spend(&self, coins: &[(OutPoint, Coin)], outputs: Vec<TxOut>) -> Transaction {
        let mut transaction = Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Spends(
                coins
                    .iter()
                    .map(|(outpoint, _)| TxIn {
                        prevout: *outpoint,
                        signature: Signature([0; 64]),
                    })
                    .collect(),
            ),
            outputs,
        };
        let spent: Vec<TxOut> = coins.iter().map(|(_, coin)| coin.output).collect();
        sign_all(&mut transaction, &spent, &[self.chain.miner]);
        transaction
    }

    /// A signed payment of a fresh coin: `amount` units to test key 7, the rest of the
    /// 50 coins minus `fee` back to the miner. Returns it with its fee.
    fn payment(&mut self, amount: u64, fee: u64) -> (Transaction, u64) {
        let coin = self.coin();
        let change = coin.1.output.value.to_units() - amount - fee;
        let transaction = self.spend(&[coin], vec![out(amount, 7), out(change, 1)]);
        (transaction, fee)
    }

    /// A valid block of exactly `size` bytes: fan-out transactions of fresh coins fill it,
    /// the coinbase note takes up the last bytes.
    fn block_of_size(&mut self, size: usize) -> Block {
        const OUTPUT_UNITS: u64 = 1_000;
        const FEE_PER_TRANSACTION: u64 = 1_000_000;
        let fan_out = |harness: &mut Harness, outputs: usize| {
            let coin = harness.coin();
            let change = coin.1.output.value.to_units()
                - OUTPUT_UNITS * (outputs as u64 - 1)
                - FEE_PER_TRANSACTION;
            let mut paid: Vec<TxOut> = (0..outputs - 1).map(|_| out(OUTPUT_UNITS, 9)).collect();
            paid.push(out(change, 1));
            harness.spend(&[coin], paid)
        };
        // A spend of one input with `outputs` outputs.
        let transaction_size = |outputs: usize| {
            let mut count = Vec::new();
            write_varint(&mut count, outputs as u64);
            4 + 1 + 1 + TxIn::ENCODED_BYTES + count.len() + outputs * TxOut::ENCODED_BYTES
        };
        let full_outputs = (1..3_000)
            .take_while(|outputs| transaction_size(*outputs) <= 100_000)
            .last()
            .expect("some outputs fit");
        // The size of the block with these transactions and an empty note.
        let size_without_note = |harness: &Harness, transactions: &[Transaction]| {
            let mut block = harness.template(transactions.to_vec(), 0);
            if let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs {
                coinbase.data.clear();
            }
            block.encode_to_vec().len()
        };
        let mut transactions = Vec::new();
        loop {
            let current = size_without_note(self, &transactions);
            // A byte of room for the transaction count to grow.
            let room = size - current - 1;
            if room > transaction_size(full_outputs) + transaction_size(2) {
                transactions.push(fan_out(self, full_outputs));
                continue;
            }
            if room > transaction_size(full_outputs) + 100 {
                // Too much for one more transaction, too little for two full ones.
                transactions.push(fan_out(self, full_outputs / 2));
                continue;
            }
            // The last one leaves less than an output's bytes (or a full note) over.
            let outputs = (2..=full_outputs)
                .take_while(|outputs| transaction_size(*outputs) <= room)
                .last()
                .expect("room for a small transaction");
            transactions.push(fan_out(self, outputs));
            break;
        }
        let fees = FEE_PER_TRANSACTION * transactions.len() as u64;
        let mut block = self.template(transactions, fees);
        if let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs {
            coinbase.data.clear();
        }
        let gap = size - block.encode_to_vec().len();
        assert!(gap <= 100, "the note fills the last {gap} bytes");
        if let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs {
            coinbase.data = vec![b'x'; gap];
        }
        TestChain::seal(&mut block);
        assert_eq!(block.encode_to_vec().len(), size);
        block
    }
}

/// Every case, in the order they run (accepted cases move the node's tip, so later cases
/// build on it).
fn cases() -> Vec<Case> {
    use Expect::{Accepted, Banned, ClosedNotBanned, Refused};
    vec![
        // ---- Blocks: the header -------------------------------------------------------
        case(
            "block: proof of work not met",
            Banned("bad-proof-of-work"),
            |h| {
                let mut block = h.valid_block(vec![], 0);
                break_proof_of_work(&mut block.header);
                block_message(block)
            },
        ),
        case("block: bits other than required", Banned("bad-bits"), |h| {
            let mut block = h.template(vec![], 0);
            block.header.bits = CompactTarget(0x207f_fffe);
            solve(&mut block.header);
            block_message(block)
        }),
        case(
            "block: time at the median of the last 11",
            Banned("time-too-old"),
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.time_ms = h.chain.next_header_context(h.now_ms).median_time_past_ms;
                solve(&mut block.header);
                block_message(block)
            },
        ),
        case(
            "block: time 15 s + 1 ms ahead of the clock (ignored: a clock may run ahead)",
            Refused,
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.time_ms = h.now_ms + 15_001;
                solve(&mut block.header);
                block_message(block)
            },
        ),
        case(
            "block: orphan without proof of work",
            Banned("bad-proof-of-work"),
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.prev_hash = BlockHash([0x5a; 32]);
                break_proof_of_work(&mut block.header);
                block_message(block)
            },
        ),
        // ---- Blocks: the body ---------------------------------------------------------
        case(
            "block: Merkle root of other transactions",
            Banned("bad-merkle-root"),
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.merkle_root = MerkleRoot([0x11; 32]);
                solve(&mut block.header);
                block_message(block)
            },
        ),
        case(
            "block: valid header, body with a transaction appended twice",
            Banned("bad-merkle-root"),
            |h| {
                let (payment, fee) = h.payment(COIN, 500);
                let valid = h.valid_block(vec![payment.clone()], fee);
                let mut mutated = valid.clone();
                mutated.transactions.push(payment);
                h.held_back = Some(valid);
                block_message(mutated)
            },
        ),
        case(
            "block: the valid block after its mutated copy was refused",
            Accepted,
            |h| block_message(h.held_back.take().expect("held back by the case before")),
        ),
        case("block: no transactions", Banned("bad-merkle-root"), |h| {
            let mut block = h.template(vec![], 0);
            block.transactions.clear();
            TestChain::seal(&mut block);
            block_message(block)
        }),
        case(
            "block: duplicated transaction, Merkle root over both",
            Banned("duplicate-transaction"),
            |h| {
                let (payment, fee) = h.payment(COIN, 500);
                block_message(h.valid_block(vec![payment.clone(), payment], 2 * fee))
            },
        ),
        case(
            "block: first transaction not a coinbase",
            Banned("first-not-coinbase"),
            |h| {
                let (payment, _) = h.payment(COIN, 500);
                let mut block = h.template(vec![payment], 0);
                block.transactions.remove(0);
                TestChain::seal(&mut block);
                block_message(block)
            },
        ),
        case("block: two coinbases", Banned("extra-coinbase"), |h| {
            let mut block = h.template(vec![], 0);
            let mut second = block.transactions[0].clone();
            if let TxInputs::Coinbase(coinbase) = &mut second.inputs {
                coinbase.data = b"second".to_vec();
            }
            block.transactions.push(second);
            TestChain::seal(&mut block);
            block_message(block)
        }),
        case(
            "block: coinbase committing to another height",
            Banned("coinbase-height-mismatch"),
            |h| {
                let mut block = h.template(vec![], 0);
                if let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs {
                    coinbase.height = BlockHeight(coinbase.height.0 + 1);
                }
                TestChain::seal(&mut block);
                block_message(block)
            },
        ),
        case(
            "block: coinbase note of 101 bytes",
            Banned("coinbase-data-too-long"),
            |h| {
                let mut block = h.template(vec![], 0);
                if let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs {
                    coinbase.data = vec![b'n'; 101];
                }
                TestChain::seal(&mut block);
                block_message(block)
            },
        ),
        case(
            "block: coinbase paying subsidy + fees + 1 unit",
            Banned("coinbase-overpays"),
            |h| {
                let (payment, fee) = h.payment(COIN, 700);
                let mut block = h.template(vec![payment], fee);
                let value = block.transactions[0].outputs[0].value.to_units();
                block.transactions[0].outputs[0].value =
                    Amount::from_units(value + 1).expect("in range");
                TestChain::seal(&mut block);
                h.failed = Some(block.clone());
                block_message(block)
            },
        ),
        case(
            "block: child of a refused block",
            Banned("known-invalid"),
            |h| {
                let parent = h.failed.clone().expect("refused by the case before");
                let height = parent.coinbase_height().expect("a coinbase").next();
                let mut child = h.template(vec![], 0);
                child.header.prev_hash = parent.compute_hash();
                child.transactions[0] = Transaction::new_coinbase(height, vec![], vec![out(1, 1)]);
                TestChain::seal(&mut child);
                block_message(child)
            },
        ),
        case(
            "block: spends its own coinbase (immature)",
            Banned("immature-coinbase-spend"),
            |h| {
                let mut block = h.template(vec![], 0);
                let coinbase = block.transactions[0].clone();
                let outpoint = OutPoint {
                    txid: coinbase.compute_txid(),
                    vout: 0,
                };
                let coin = Coin {
                    output: coinbase.outputs[0],
                    height: h.chain.height().next(),
                    is_coinbase: true,
                };
                block
                    .transactions
                    .push(h.spend(&[(outpoint, coin)], vec![out(COIN, 7)]));
                TestChain::seal(&mut block);
                block_message(block)
            },
        ),
        case(
            "block: two transactions spend one output",
            Banned("double-spend-in-block"),
            |h| {
                let coin = h.coin();
                let first = h.spend(&[coin], vec![out(COIN, 7)]);
                let second = h.spend(&[coin], vec![out(COIN, 8)]);
                block_message(h.valid_block(vec![first, second], 0))
            },
        ),
        case(
            "block: spends an output that does not exist",
            Banned("missing-input"),
            |h| {
                let phantom = (
                    OutPoint {
                        txid: Txid([0x33; 32]),
                        vout: 0,
                    },
                    Coin {
                        output: out(50 * COIN, 1),
                        height: BlockHeight(1),
                        is_coinbase: false,
                    },
                );
                let spend = h.spend(&[phantom], vec![out(COIN, 7)]);
                block_message(h.valid_block(vec![spend], 0))
            },
        ),
        case(
            "block: a signature that does not verify",
            Banned("bad-signature"),
            |h| {
                let (mut payment, fee) = h.payment(COIN, 500);
                if let TxInputs::Spends(inputs) = &mut payment.inputs {
                    inputs[0].signature.0[3] ^= 1;
                }
                block_message(h.valid_block(vec![payment], fee))
            },
        ),
        case(
            "block: outputs summing past the money supply",
            Banned("output-total-too-large"),
            |h| {
                let coin = h.coin();
                let spend = h.spend(
                    &[coin],
                    vec![
                        TxOut {
                            value: Amount::MAX_MONEY,
                            address: test_address(7),
                        },
                        out(1, 7),
                    ],
                );
                block_message(h.valid_block(vec![spend], 0))
            },
        ),
        case(
            "block: a transaction paying more than it spends",
            Banned("inputs-below-outputs"),
            |h| {
                let coin = h.coin();
                let spend = h.spend(&[coin], vec![out(50 * COIN + 1, 7)]);
                block_message(h.valid_block(vec![spend], 0))
            },
        ),
        case(
            "block: an output of zero",
            Banned("zero-value-output"),
            |h| {
                let coin = h.coin();
                let mut zero = out(1, 7);
                zero.value = Amount::ZERO;
                let spend = h.spend(&[coin], vec![out(COIN, 7), zero]);
                block_message(h.valid_block(vec![spend], 0))
            },
        ),
        case(
            "block: a transaction spending one output twice",
            Banned("duplicate-input"),
            |h| {
                let coin = h.coin();
                let spend = h.spend(&[coin, coin], vec![out(COIN, 7)]);
                block_message(h.valid_block(vec![spend], 0))
            },
        ),
        case(
            "block: a transaction of over 100,000 bytes",
            Banned("malformed-message"),
            |h| {
                let coin = h.coin();
                let outputs = (0..2_600).map(|_| out(1_000, 9)).collect();
                let spend = h.spend(&[coin], outputs);
                block_message(h.valid_block(vec![spend], 0))
            },
        ),
        case("block: 2,000,001 bytes", Banned("block-too-large"), |h| {
            let first_coin = h.next_coin;
            let block = h.block_of_size(MAX_BLOCK_BYTES + 1);
            // The coins stay unspent: the next case spends them in a block at the limit.
            h.next_coin = first_coin;
            block_message(block)
        }),
        // ---- Blocks: exactly at each limit, accepted ----------------------------------
        case(
            "block at the limit: exactly 2,000,000 bytes",
            Accepted,
            |h| {
                let block = h.block_of_size(MAX_BLOCK_BYTES);
                block_message(block)
            },
        ),
        case(
            "block at the limit: coinbase note of exactly 100 bytes",
            Accepted,
            |h| {
                let mut block = h.template(vec![], 0);
                if let TxInputs::Coinbase(coinbase) = &mut block.transactions[0].inputs {
                    coinbase.data = vec![b'n'; 100];
                }
                TestChain::seal(&mut block);
                block_message(block)
            },
        ),
        case(
            "block at the limit: coinbase paying exactly subsidy + fees",
            Accepted,
            |h| {
                let (payment, fee) = h.payment(COIN, 777);
                let block = h.valid_block(vec![payment], fee);
                assert_eq!(
                    block.transactions[0].outputs[0].value.to_units(),
                    h.chain.params.subsidy(h.chain.height().next()).to_units() + fee
                );
                block_message(block)
            },
        ),
        case(
            "block at the limit: spends the coinbase of the block before (maturity 1)",
            Accepted,
            |h| {
                let height = h.chain.height();
                let outpoint = h.chain.coinbase_outpoint(height.0);
                let coin = Coin {
                    output: h.chain.tip().transactions[0].outputs[0],
                    height,
                    is_coinbase: true,
                };
                assert_eq!(h.chain.params.coinbase_maturity, 1);
                let spend = h.spend(
                    &[(outpoint, coin)],
                    vec![out(COIN, 7), out(49 * COIN - 500, 1)],
                );
                block_message(h.valid_block(vec![spend], 500))
            },
        ),
        case(
            "block at the limit: time exactly the median of the last 11 + 1 ms",
            Accepted,
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.time_ms =
                    h.chain.next_header_context(h.now_ms).median_time_past_ms + 1;
                solve(&mut block.header);
                block_message(block)
            },
        ),
        case(
            "block at the limit: time exactly 15 s ahead of the clock",
            Accepted,
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.time_ms = h.now_ms + 15_000;
                solve(&mut block.header);
                block_message(block)
            },
        ),
        // ---- Headers ------------------------------------------------------------------
        case(
            "headers: more than an announcement (9) whose first parent is unknown",
            Banned("headers-do-not-connect"),
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.prev_hash = BlockHash([0x77; 32]);
                solve(&mut block.header);
                Attack::Message(Message::Headers(vec![block.header; 9]))
            },
        ),
        case(
            "headers: an announcement whose parent is unknown (answered with getheaders)",
            Refused,
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.prev_hash = BlockHash([0x78; 32]);
                solve(&mut block.header);
                Attack::Message(Message::Headers(vec![block.header]))
            },
        ),
        case(
            "headers: proof of work not met",
            Banned("bad-proof-of-work"),
            |h| {
                let mut block = h.valid_block(vec![], 0);
                break_proof_of_work(&mut block.header);
                Attack::Message(Message::Headers(vec![block.header]))
            },
        ),
        case(
            "headers: bits other than required",
            Banned("bad-bits"),
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.bits = CompactTarget(0x2000_ffff);
                solve(&mut block.header);
                Attack::Message(Message::Headers(vec![block.header]))
            },
        ),
        case(
            "headers: time too far ahead (ignored: a clock may run ahead)",
            Refused,
            |h| {
                let mut block = h.template(vec![], 0);
                block.header.time_ms = h.now_ms + 60_000;
                solve(&mut block.header);
                Attack::Message(Message::Headers(vec![block.header]))
            },
        ),
        case(
            "headers: child of a refused block",
            Banned("known-invalid"),
            |h| {
                let parent = h.failed.clone().expect("refused by an earlier case");
                let mut header = h.template(vec![], 0).header;
                header.prev_hash = parent.compute_hash();
                solve(&mut header);
                Attack::Message(Message::Headers(vec![header]))
            },
        ),
        // ---- Transactions for the pool ------------------------------------------------
        case(
            "tx: a signature that does not verify",
            Banned("bad-signature"),
            |h| {
                let (mut payment, _) = h.payment(COIN, 500);
                if let TxInputs::Spends(inputs) = &mut payment.inputs {
                    inputs[0].signature.0[40] ^= 0x80;
                }
                tx_message(payment)
            },
        ),
        case("tx: signed by another key", Banned("bad-signature"), |h| {
            let coin = h.coin();
            let mut spend = Transaction {
                version: 1,
                inputs: TxInputs::Spends(vec![TxIn {
                    prevout: coin.0,
                    signature: Signature([0; 64]),
                }]),
                outputs: vec![out(COIN, 7)],
            };
            let pretend = TxOut {
                address: test_address(4),
                ..coin.1.output
            };
            sign_all(&mut spend, &[pretend], &[test_key(4)]);
            tx_message(spend)
        }),
        case("tx: a coinbase", Banned("unexpected-coinbase"), |h| {
            let height = h.chain.height().next();
            tx_message(Transaction::new_coinbase(
                height,
                vec![],
                vec![out(COIN, 7)],
            ))
        }),
        case(
            "tx: spends one output twice",
            Banned("duplicate-input"),
            |h| {
                let coin = h.coin();
                tx_message(h.spend(&[coin, coin], vec![out(COIN, 7)]))
            },
        ),
        case("tx: no inputs", Banned("no-inputs"), |_| {
            tx_message(Transaction {
                version: 1,
                inputs: TxInputs::Spends(vec![]),
                outputs: vec![out(COIN, 7)],
            })
        }),
        case("tx: no outputs", Banned("no-outputs"), |h| {
            let coin = h.coin();
            tx_message(h.spend(&[coin], vec![]))
        }),
        case("tx: an output of zero", Banned("zero-value-output"), |h| {
            let coin = h.coin();
            let mut zero = out(1, 7);
            zero.value = Amount::ZERO;
            tx_message(h.spend(&[coin], vec![zero]))
        }),
        case(
            "tx: outputs summing past the money supply",
            Banned("output-total-too-large"),
            |h| {
                let coin = h.coin();
                let max = TxOut {
                    value: Amount::MAX_MONEY,
                    address: test_address(7),
                };
                tx_message(h.spend(&[coin], vec![max, max]))
            },
        ),
        case(
            "tx: pays more than it spends",
            Banned("inputs-below-outputs"),
            |h| {
                let coin = h.coin();
                tx_message(h.spend(&[coin], vec![out(50 * COIN + 1, 7)]))
            },
        ),
        case("tx: over 100,000 bytes", Banned("malformed-message"), |h| {
            let coin = h.coin();
            let outputs = (0..2_600).map(|_| out(1_000, 9)).collect();
            tx_message(h.spend(&[coin], outputs))
        }),
        case(
            "tx: spends an output that does not exist (policy: parent not seen)",
            Refused,
            |h| {
                let phantom = (
                    OutPoint {
                        txid: Txid([0x44; 32]),
                        vout: 1,
                    },
                    Coin {
                        output: out(50 * COIN, 1),
                        height: BlockHeight(1),
                        is_coinbase: false,
                    },
                );
                tx_message(h.spend(&[phantom], vec![out(COIN, 7)]))
            },
        ),
        case(
            "tx at the limit: spends the tip's coinbase (mature for the next block)",
            Accepted,
            |h| {
                let height = h.chain.height();
                let outpoint = h.chain.coinbase_outpoint(height.0);
                let coin = Coin {
                    output: h.chain.tip().transactions[0].outputs[0],
                    height,
                    is_coinbase: true,
                };
                tx_message(h.spend(
                    &[(outpoint, coin)],
                    vec![out(COIN, 7), out(49 * COIN - 400, 1)],
                ))
            },
        ),
        case("tx: a valid payment", Accepted, |h| {
            let (payment, _) = h.payment(2 * COIN, 500);
            tx_message(payment)
        }),
        case("tx: the same payment again (policy)", Refused, |h| {
            tx_message(h.pooled.last().expect("pooled by the case before").clone())
        }),
        case(
            "tx: spends what a pooled transaction spends (policy: conflict)",
            Refused,
            |h| {
                let pooled = h.pooled.last().expect("pooled by an earlier case").clone();
                let prevout = pooled.spends()[0].prevout;
                let coin = h.chain.utxo[&prevout];
                tx_message(h.spend(&[(prevout, coin)], vec![out(3 * COIN, 8)]))
            },
        ),
        case("tx: pays no fee (policy: fee rate too low)", Refused, |h| {
            let (payment, _) = h.payment(COIN, 0);
            tx_message(payment)
        }),
        case("tx: spends an output a block already spent", Refused, |h| {
            // The first coin the cases used (height 1) was spent by an accepted block.
            let outpoint = h.chain.coinbase_outpoint(1);
            let coin = Coin {
                output: out(50 * COIN, 1),
                height: BlockHeight(1),
                is_coinbase: true,
            };
            assert!(
                !h.chain.utxo.contains_key(&outpoint),
                "spent on the main chain"
            );
            tx_message(h.spend(&[(outpoint, coin)], vec![out(COIN, 7)]))
        }),
        // ---- Messages: framing --------------------------------------------------------
        case(
            "message: garbage bytes instead of hello",
            Banned("wrong-protocol-version"),
            |_| Attack::InsteadOfHello(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]),
        ),
        case(
            "message: ping instead of hello",
            Banned("expected-hello"),
            |_| Attack::InsteadOfHello(Message::Ping(1).to_bytes()),
        ),
        case(
            "message: hello with a user agent that is not UTF-8",
            Banned("malformed-message"),
            |h| {
                let mut bytes = hello(Network::Regtest, h.fake_port()).to_bytes();
                let length = bytes.len();
                bytes[length - 1] = 0xff;
                Attack::InsteadOfHello(bytes)
            },
        ),
        case("message: hello of another network", ClosedNotBanned, |_| {
            Attack::InsteadOfHello(hello(Network::Devnet, 0).to_bytes())
        }),
        case(
            "message: hello with our magic but another genesis",
            ClosedNotBanned,
            |_| {
                let Message::Hello(mut other) = hello(Network::Regtest, 0) else {
                    unreachable!("hello builds a hello")
                };
                other.genesis = BlockHash([9; 32]);
                Attack::InsteadOfHello(Message::Hello(other).to_bytes())
            },
        ),
        case(
            "message: a second hello",
            Banned("unexpected-hello"),
            |_| Attack::Message(hello(Network::Regtest, 1)),
        ),
        case(
            "message: garbage after the handshake",
            Banned("malformed-message"),
            |_| {
                let mut bytes = vec![PROTOCOL_VERSION, 8];
                bytes.extend(
                    (0..500u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8),
                );
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: an empty frame",
            Banned("malformed-message"),
            |_| Attack::Bytes(vec![]),
        ),
        case(
            "message: a block cut short",
            Banned("malformed-message"),
            |h| {
                let mut bytes = Message::Block(Box::new(h.valid_block(vec![], 0))).to_bytes();
                bytes.truncate(bytes.len() - 10);
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: trailing bytes after a ping",
            Banned("malformed-message"),
            |_| {
                let mut bytes = Message::Ping(5).to_bytes();
                bytes.push(0);
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: unknown type",
            Banned("unknown-message-type"),
            |_| Attack::Bytes(vec![PROTOCOL_VERSION, 200, 1, 2, 3]),
        ),
        case(
            "message: another protocol version",
            Banned("wrong-protocol-version"),
            |_| {
                let mut bytes = Message::Ping(5).to_bytes();
                bytes[0] = PROTOCOL_VERSION + 1;
                Attack::Bytes(bytes)
            },
        ),
        case("message: a text frame", Banned("malformed-message"), |_| {
            Attack::Frame(Frame::text("{\"type\": \"CHAIN\", \"chain\": []}"))
        }),
        case(
            "message: a locator of 65 hashes",
            Banned("malformed-message"),
            |_| {
                Attack::Message(Message::GetHeaders {
                    locator: vec![BlockHash([1; 32]); 65],
                    stop: BlockHash::ZERO,
                })
            },
        ),
        case(
            "message: headers claiming 2,001 entries",
            Banned("malformed-message"),
            |h| {
                let header = h.valid_block(vec![], 0).header;
                let mut bytes = vec![PROTOCOL_VERSION, 4];
                write_varint(&mut bytes, 2_001);
                for _ in 0..2_001 {
                    header.encode_to(&mut bytes);
                }
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: inventory of 1,001 items",
            Banned("malformed-message"),
            |_| {
                Attack::Message(Message::Inventory(vec![
                    InventoryItem::Transaction(Txid(
                        [3; 32]
                    ));
                    1_001
                ]))
            },
        ),
        case(
            "message: inventory item of an unknown kind",
            Banned("malformed-message"),
            |_| {
                let mut bytes = vec![PROTOCOL_VERSION, 5, 1, 7];
                bytes.extend([0u8; 32]);
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: 101 peer addresses",
            Banned("malformed-message"),
            |_| Attack::Message(Message::Addresses(vec!["ws://10.0.0.1:5001".into(); 101])),
        ),
        case(
            "message: a count claiming 2^40 headers (before allocation)",
            Banned("malformed-message"),
            |_| {
                let mut bytes = vec![PROTOCOL_VERSION, 4];
                write_varint(&mut bytes, 1 << 40);
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: a compact block claiming 13,614 short ids (before allocation)",
            Banned("malformed-message"),
            |h| {
                let mut bytes = vec![PROTOCOL_VERSION, 13];
                bytes.extend(h.template(vec![], 0).header.to_bytes());
                bytes.extend(7u64.to_le_bytes());
                write_varint(&mut bytes, MAX_COMPACT_TRANSACTIONS as u64 + 1);
                bytes.resize(bytes.len() + 6 * (MAX_COMPACT_TRANSACTIONS + 1), 0);
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: a compact block whose prefilled index is past its transactions",
            Banned("malformed-message"),
            |h| {
                let block = h.template(vec![], 0);
                let mut bytes = vec![PROTOCOL_VERSION, 13];
                bytes.extend(block.header.to_bytes());
                bytes.extend(7u64.to_le_bytes());
                write_varint(&mut bytes, 0);
                write_varint(&mut bytes, 1);
                write_varint(&mut bytes, 1);
                block.transactions[0].encode_to(&mut bytes);
                Attack::Bytes(bytes)
            },
        ),
        case(
            "message: getblocktxn for a transaction past the block",
            Banned("bad-getblocktxn"),
            |h| {
                let tip = h.chain.tip();
                Attack::Message(Message::GetBlockTransactions {
                    block: tip.compute_hash(),
                    indexes: vec![tip.transactions.len()],
                })
            },
        ),
        case(
            "message: a frame header claiming 2^40 bytes (before allocation)",
            Banned("oversized-message"),
            |_| Attack::Tcp(frame_header(true, 2, 1 << 40)),
        ),
        case(
            "message: one frame a byte over the message limit",
            Banned("oversized-message"),
            |_| {
                let mut bytes = frame_header(true, 2, (MAX_MESSAGE_BYTES + 1) as u64);
                bytes.resize(bytes.len() + MAX_MESSAGE_BYTES + 1, 0);
                Attack::Tcp(bytes)
            },
        ),
        case(
            "message: fragments adding up past the message limit",
            Banned("oversized-message"),
            |_| {
                let fragment = 1_500_000;
                let mut bytes = frame_header(false, 2, fragment as u64);
                bytes.resize(bytes.len() + fragment, 0);
                bytes.extend(frame_header(true, 0, fragment as u64));
                bytes.resize(bytes.len() + fragment, 0);
                Attack::Tcp(bytes)
            },
        ),
        case("message: a flood of announcements", Banned("flood"), |_| {
            Attack::Flood(|counter| {
                let mut hash = [0u8; 32];
                hash[..8].copy_from_slice(&counter.to_le_bytes());
                Message::Inventory(vec![InventoryItem::Transaction(Txid(hash))])
            })
        }),
    ]
}

/// Base units per coin.
const COIN: u64 = 100_000_000;

/// A client-to-server WebSocket frame header (masked with a zero key) claiming `length`.
fn frame_header(fin: bool, opcode: u8, length: u64) -> Vec<u8> {
    let mut bytes = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | 127];
    bytes.extend(length.to_be_bytes());
    bytes.extend([0u8; 4]);
    bytes
}

/// Opens a WebSocket to the node and reads its hello.
async fn open(node: &TestNode) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("the node accepts connections");
    match tokio::time::timeout(LIMIT, socket.next()).await {
        Ok(Some(Ok(Frame::Binary(bytes)))) => {
            assert!(
                matches!(Message::from_bytes(&bytes), Ok(Message::Hello(_))),
                "the node speaks first, with hello"
            );
        }
        other => panic!("no hello from the node: {other:?}"),
    }
    socket
}

/// Opens a connection and completes the handshake announcing `port`.
async fn handshake(node: &TestNode, port: u16) -> Socket {
    let mut socket = open(node).await;
    socket
        .send(Frame::binary(hello(Network::Regtest, port).to_bytes()))
        .await
        .expect("send hello");
    socket
}

/// Sends a ping and reads until its pong: true if answered (everything the node was sent
/// before has been handled: a session handles its messages in order).
async fn ping(socket: &mut Socket, nonce: u64) -> bool {
    if socket
        .send(Frame::binary(Message::Ping(nonce).to_bytes()))
        .await
        .is_err()
    {
        return false;
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => {
                if Message::from_bytes(&bytes) == Ok(Message::Pong(nonce)) {
                    return true;
                }
            }
            Ok(Some(Ok(Frame::Close(_)) | Err(_)) | None) | Err(_) => return false,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// What must not change when the node refuses something.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    tip: BlockHash,
    pool: BTreeSet<Txid>,
    orphans: usize,
}

fn observe(node: &TestNode) -> Observed {
    Observed {
        tip: node.tip(),
        pool: node
            .node
            .pool_transactions()
            .iter()
            .map(|pooled| pooled.txid)
            .collect(),
        orphans: node.node.chain_summary().orphans,
    }
}

/// The block or transaction an attack carries, if any.
fn subject(attack: &Attack) -> (Option<Block>, Option<Transaction>) {
    match attack {
        Attack::Message(Message::Block(block)) => (Some((**block).clone()), None),
        Attack::Message(Message::Transaction(transaction)) => (None, Some((**transaction).clone())),
        _ => (None, None),
    }
}

/// Asserts the node stored nothing of a refused block: no data, not on the main chain,
/// not held as an orphan. Its header stays indexed when it was valid: marked failed when the
/// body broke a rule (so the block and its descendants are refused at once next time), or
/// still waiting for a body when the body did not match the header (a mutated copy must not
/// poison the real block).
fn assert_block_not_stored(node: &TestNode, hash: &BlockHash, name: &str) {
    let snapshot = node.node.reader().snapshot().expect("snapshot");
    assert!(
        snapshot.is_on_main_chain(hash).expect("read").is_none(),
        "{name}: the refused block is on the main chain"
    );
    assert!(
        snapshot.block(hash).expect("read").is_none(),
        "{name}: the refused block's data is stored"
    );
    assert!(
        !node.node.has_block(hash),
        "{name}: the refused block is held"
    );
    if let Some(record) = node.node.block_record(hash) {
        assert!(
            matches!(
                record.status,
                BlockStatus::Failed | BlockStatus::FailedAncestor | BlockStatus::HeaderValid
            ),
            "{name}: the refused block is indexed as {:?}",
            record.status
        );
    }
}

async fn run_case(harness: &mut Harness, case: &Case) {
    let name = case.name;
    let attack = (case.build)(harness);
    let (block, transaction) = subject(&attack);
    let before = observe(&harness.node);
    let port = harness.fake_port();
    let rss_before = resident_bytes();
    let started = std::time::Instant::now();
    // The ban key of a peer that never completed the handshake is the port it dialled from.
    let (mut socket, ban_port) = match attack {
        Attack::InsteadOfHello(bytes) => {
            let mut socket = open(&harness.node).await;
            let local = match socket.get_ref() {
                tokio_tungstenite::MaybeTlsStream::Plain(stream) => {
                    stream.local_addr().expect("local address").port()
                }
                _ => unreachable!("plain TCP"),
            };
            socket
                .send(Frame::binary(bytes))
                .await
                .expect("send instead of hello");
            (socket, local)
        }
        Attack::Message(message) => {
            let mut socket = handshake(&harness.node, port).await;
            socket
                .send(Frame::binary(message.to_bytes()))
                .await
                .expect("send the message");
            (socket, port)
        }
        Attack::Bytes(bytes) => {
            let mut socket = handshake(&harness.node, port).await;
            socket.send(Frame::binary(bytes)).await.expect("send bytes");
            (socket, port)
        }
        Attack::Frame(frame) => {
            let mut socket = handshake(&harness.node, port).await;
            socket.send(frame).await.expect("send the frame");
            (socket, port)
        }
        Attack::Tcp(bytes) => {
            let mut socket = handshake(&harness.node, port).await;
            socket.flush().await.expect("hello flushed");
            let tokio_tungstenite::MaybeTlsStream::Plain(stream) = socket.get_mut() else {
                unreachable!("plain TCP")
            };
            // The node may hang up before reading it all.
            let _ = stream.write_all(&bytes).await;
            (socket, port)
        }
        Attack::Flood(make) => {
            let socket = handshake(&harness.node, port).await;
            let (mut sink, mut stream) = socket.split();
            // Drain what the node answers, so it never waits on us.
            let reader = tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    if matches!(frame, Frame::Close(_)) {
                        break;
                    }
                }
                stream
            });
            let mut sent = 0u64;
            let deadline = std::time::Instant::now() + LIMIT;
            while std::time::Instant::now() < deadline {
                if sink
                    .send(Frame::binary(make(sent).to_bytes()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            let stream = tokio::time::timeout(LIMIT, reader)
                .await
                .expect("the node hangs up on the flood")
                .expect("reader task");
            assert!(sent > 2_000, "{name}: only {sent} messages went out");
            eprintln!("{name}: {sent} messages sent before the node hung up");
            let socket = stream.reunite(sink).expect("the halves of one socket");
            (socket, port)
        }
    };
    match case.expect {
        Expect::Banned(rule) => {
            assert!(
                closed_by_node(&mut socket, LIMIT).await,
                "{name}: the node kept the connection open"
            );
            let who = format!("localhost port {ban_port}");
            let bans = harness.node.p2p.banned();
            assert!(
                bans.iter()
                    .any(|(banned, banned_rule)| *banned == who && banned_rule == rule),
                "{name}: expected a ban of {who} for {rule}, bans: {bans:?}"
            );
            assert_eq!(observe(&harness.node), before, "{name}: the node changed");
        }
        Expect::ClosedNotBanned => {
            assert!(
                closed_by_node(&mut socket, LIMIT).await,
                "{name}: the node kept the connection open"
            );
            let who = format!("localhost port {ban_port}");
            assert!(
                harness
                    .node
                    .p2p
                    .banned()
                    .iter()
                    .all(|(banned, _)| *banned != who),
                "{name}: banned"
            );
            assert_eq!(observe(&harness.node), before, "{name}: the node changed");
        }
        Expect::Refused => {
            assert!(
                ping(&mut socket, 7).await,
                "{name}: the connection was dropped"
            );
            let who = format!("localhost port {port}");
            assert!(
                harness
                    .node
                    .p2p
                    .banned()
                    .iter()
                    .all(|(banned, _)| *banned != who),
                "{name}: a policy refusal banned the peer"
            );
            assert_eq!(observe(&harness.node), before, "{name}: the node changed");
        }
        Expect::Accepted => {
            if let Some(block) = &block {
                let hash = block.compute_hash();
                let node = &harness.node;
                wait_until(name, LIMIT, || async { node.tip() == hash }).await;
                harness
                    .chain
                    .push(block.clone())
                    .unwrap_or_else(|error| panic!("{name}: the mirror refuses it: {error}"));
            }
            if let Some(transaction) = &transaction {
                let txid = transaction.compute_txid();
                assert!(ping(&mut socket, 8).await, "{name}: dropped");
                assert!(
                    harness.node.node.pool_transaction(&txid).is_some(),
                    "{name}: not pooled"
                );
                harness.pooled.push(transaction.clone());
            }
            assert!(
                ping(&mut socket, 9).await,
                "{name}: the connection was dropped"
            );
            let who = format!("localhost port {port}");
            assert!(
                harness
                    .node
                    .p2p
                    .banned()
                    .iter()
                    .all(|(banned, _)| *banned != who),
                "{name}: banned for a valid message"
            );
        }
    }
    // Nothing refused was stored, nor is it served to peers that ask for it.
    if case.expect != Expect::Accepted {
        if let Some(block) = &block {
            let hash = block.compute_hash();
            assert_block_not_stored(&harness.node, &hash, name);
            if !harness.node.node.is_on_main_chain(&hash) {
                let port = harness.fake_port();
                assert_not_served(&harness.node, port, hash, name).await;
            }
            harness.refused_blocks.push(hash);
        }
        if let Some(transaction) = &transaction {
            let txid = transaction.compute_txid();
            assert!(
                harness.node.node.pool_transaction(&txid).is_none()
                    || harness
                        .pooled
                        .iter()
                        .any(|pooled| pooled.compute_txid() == txid),
                "{name}: the refused transaction is pooled"
            );
        }
    }
    // Frames claiming huge sizes are refused from their header: nothing near it is allocated.
    if matches!(case.expect, Expect::Banned("oversized-message")) {
        let grown = resident_bytes().saturating_sub(rss_before);
        eprintln!(
            "{name}: hung up after {:?}, resident memory grew by {} KiB",
            started.elapsed(),
            grown >> 10
        );
        assert!(
            grown < 64 << 20,
            "{name}: resident memory grew by {grown} bytes"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: took {:?} to hang up",
            started.elapsed()
        );
    }
    assert_still_serving(harness, name).await;
}

/// A peer that asks for the refused block is told the node does not have it.
async fn assert_not_served(node: &TestNode, port: u16, hash: BlockHash, name: &str) {
    let mut socket = handshake(node, port).await;
    let item = InventoryItem::Block(hash);
    socket
        .send(Frame::binary(Message::GetData(vec![item]).to_bytes()))
        .await
        .expect("send getdata");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::from_bytes(&bytes) {
                Ok(Message::NotFound(items)) if items.contains(&item) => break,
                Ok(Message::Block(block)) if block.compute_hash() == hash => {
                    panic!("{name}: the refused block is served to a peer that asks for it")
                }
                _ => {}
            },
            other => panic!("{name}: no answer to getdata: {other:?}"),
        }
    }
    let _ = socket.close(None).await;
}

/// A fresh peer still gets its pings answered, and the honest node is still connected.
async fn assert_still_serving(harness: &mut Harness, name: &str) {
    let port = harness.fake_port();
    let mut socket = handshake(&harness.node, port).await;
    assert!(
        ping(&mut socket, 42).await,
        "{name}: the node stopped answering other peers"
    );
    let _ = socket.close(None).await;
    let honest_url = harness.honest.url();
    assert!(
        harness
            .node
            .p2p
            .peers()
            .iter()
            .any(|peer| peer.url == honest_url),
        "{name}: the honest peer was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_peer_input_is_refused_with_its_rule_and_the_node_keeps_serving() {
    let now_ms = SystemClock.now_ms();
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node = TestNode::start_with_clock(
        temp.path().to_path_buf(),
        config(vec![], 0),
        Arc::new(FixedClock(now_ms)),
    )
    .await;
    node.keep(temp);
    // The node starts with a chain the test mirrors, so cases build on its real state.
    let mut chain = TestChain::new(Network::Regtest);
    chain.mine_empty(SETUP_BLOCKS);
    let blocks = chain.blocks[1..].to_vec();
    let core = Arc::clone(&node.node);
    tokio::task::spawn_blocking(move || {
        for block in blocks {
            core.submit_block(block).expect("setup blocks are valid");
        }
    })
    .await
    .expect("setup task");
    assert_eq!(node.tip(), chain.tip().compute_hash());
    let honest = TestNode::start(vec![node.url()]).await;
    wait_until("the honest peer syncs", LIMIT, || async {
        honest.tip() == node.tip()
    })
    .await;
    let mut harness = Harness {
        node,
        honest,
        chain,
        now_ms,
        next_port: FIRST_FAKE_PORT,
        next_coin: 0,
        pooled: Vec::new(),
        failed: None,
        held_back: None,
        refused_blocks: Vec::new(),
    };

    let cases = cases();
    let mut tally = std::collections::BTreeMap::new();
    for case in &cases {
        eprintln!("case: {}", case.name);
        run_case(&mut harness, case).await;
        *tally
            .entry(match case.expect {
                Expect::Accepted => "accepted",
                Expect::Refused => "refused without a ban",
                Expect::ClosedNotBanned => "closed without a ban",
                Expect::Banned(_) => "banned",
            })
            .or_insert(0) += 1;
    }
    eprintln!("catalogue: {} cases: {tally:?}", cases.len());
    assert!(
        cases.len() >= 60,
        "the catalogue holds {} cases",
        cases.len()
    );

    // Everything accepted reached the honest peer; nothing refused did.
    let (node, honest) = (&harness.node, &harness.honest);
    wait_until(
        "the honest peer has every accepted block",
        LIMIT,
        || async { honest.tip() == node.tip() },
    )
    .await;
    wait_until(
        "the honest peer pools every accepted transaction",
        LIMIT,
        || async {
            harness.pooled.iter().all(|pooled| {
                honest
                    .node
                    .pool_transaction(&pooled.compute_txid())
                    .is_some()
            })
        },
    )
    .await;
    let mut refused_but_pushed = 0usize;
    for hash in &harness.refused_blocks {
        // A mutated copy shares its hash with the valid block accepted after it.
        if node.node.is_on_main_chain(hash) {
            continue;
        }
        // Compact relay pushes a new block before validating it once its header and its
        // form check out (high-bandwidth mode, BIP-152), so the honest peer may have seen
        // a refused block whose fault is in its transactions: it must have refused it
        // too (without banning the node, checked below), kept none of its data, and not
        // built on it. A block refused for its header or form never reaches it.
        let pushed = honest.node.block_record(hash).is_some();
        assert!(
            !honest.node.is_on_main_chain(hash) && !honest.node.has_block(hash),
            "a refused block {hash} was relayed and kept"
        );
        refused_but_pushed += usize::from(pushed);
    }
    println!(
        "{refused_but_pushed} of {} refused blocks were pushed before validation and refused by the honest peer too",
        harness.refused_blocks.len()
    );
    assert!(
        honest.p2p.banned().is_empty(),
        "the honest peer banned the node: {:?}",
        honest.p2p.banned()
    );
    // The stored chain is sound: the UTXO set equals a rebuild from the main chain.
    let report = node
        .node
        .reader()
        .snapshot()
        .expect("snapshot")
        .check_consistency()
        .expect("consistent");
    assert_eq!(report.tip, node.tip());
    let Harness { node, honest, .. } = harness;
    for running in [node, honest] {
        running.stop().await;
    }
}
