//! The tutorial's walk-through over real HTTP: keys, mining with a note, paying another
//! node's address, the pool, mining the pool, exact balances (the fee returns to the miner),
//! and the REST resources an explorer reads (blocks, transactions, addresses, status,
//! metrics, wallet addresses, raw transactions).

mod support;

use serde_json::{Value, json};
use support::{
    COIN, DEFAULT_FEE_RATE, SUBSIDY, TestNode, error_message, fund_test_key, spend_test_coin,
    test_key_address, text, transaction_hex, units,
};

/// Checks the shape every block answer has and returns its coinbase.
fn check_block(block: &Value, height: u64) -> &Value {
    assert_eq!(units(&block["height"]), height, "{block}");
    assert_eq!(text(&block["hash"]).len(), 64);
    assert_eq!(text(&block["lastHash"]).len(), 64);
    let transactions = block["data"].as_array().expect("data is the transactions");
    assert_eq!(units(&block["transactionCount"]), transactions.len() as u64);
    let coinbase = &transactions[0];
    assert_eq!(units(&coinbase["coinbase"]["height"]), height);
    assert_eq!(coinbase["inputs"], json!([]));
    coinbase
}

#[test]
fn tutorial_walk_through_pays_another_node_and_returns_the_fee_to_the_miner() {
    let node_a = TestNode::start("a");
    let node_b = TestNode::start("b");

    // GET /public-key on both: the key and its address, different per node.
    let key_a = node_a.get_ok("/public-key");
    let key_b = node_b.get_ok("/public-key");
    assert_eq!(text(&key_a["publicKey"]).len(), 64, "{key_a}");
    assert!(text(&key_a["address"]).starts_with("powrt1"), "{key_a}");
    assert_ne!(key_a["publicKey"], key_b["publicKey"]);
    let address_a = text(&key_a["address"]).to_owned();
    let address_b = text(&key_b["address"]).to_owned();

    // POST /mine {"data"}: the block, with the note in its coinbase paying A the subsidy.
    let genesis = node_a.get_ok("/blocks/0");
    let first = node_a.mine("hello from the tutorial");
    let coinbase = check_block(&first, 1);
    assert_eq!(first["lastHash"], genesis["hash"]);
    assert_eq!(first["confirmations"], 1);
    assert_eq!(coinbase["coinbase"]["data"], "hello from the tutorial");
    assert_eq!(
        coinbase["outputs"],
        json!([{ "n": 0, "address": address_a, "amount": SUBSIDY }])
    );

    // GET /blocks: the chain from genesis, each block linked to the previous one.
    let chain = node_a.get_ok("/blocks");
    let chain = chain.as_array().expect("an array of blocks");
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0]["hash"], genesis["hash"]);
    assert_eq!(chain[1]["hash"], first["hash"]);
    for pair in chain.windows(2) {
        assert_eq!(pair[1]["lastHash"], pair[0]["hash"]);
    }

    // POST /transact to B's address: maturity is one block on regtest, so the coinbase
    // from height 1 pays for a transaction in the pool while the tip is at 1.
    let amount = 12 * COIN + 345_678;
    let sent = node_a.transact(&address_b, amount);
    let txid = text(&sent["txid"]).to_owned();
    let fee = units(&sent["fee"]);
    assert_eq!(fee, units(&sent["size"]) * DEFAULT_FEE_RATE, "{sent}");
    assert_eq!(sent["outputs"][0]["address"], address_b.as_str());
    assert_eq!(units(&sent["outputs"][0]["amount"]), amount);
    let change = SUBSIDY - amount - fee;
    assert_eq!(sent["outputs"][1]["address"], address_a.as_str());
    assert_eq!(units(&sent["outputs"][1]["amount"]), change);

    // GET /transactions: the pool shows it with its fee.
    let pool = node_a.get_ok("/transactions");
    let pool = pool.as_array().expect("an array");
    assert_eq!(pool.len(), 1);
    assert_eq!(pool[0]["txid"], txid.as_str());
    assert_eq!(units(&pool[0]["fee"]), fee);
    assert_eq!(pool[0]["feeRate"], json!(DEFAULT_FEE_RATE as f64));
    let pooled = node_a.get_ok(&format!("/tx/{txid}"));
    assert_eq!(pooled["status"], "pool");
    assert_eq!(pooled["confirmations"], 0);

    // POST /mine-transactions confirms it; the coinbase pays the subsidy plus the fee.
    let second = node_a.post_ok("/mine-transactions", &Value::Null);
    let coinbase = check_block(&second, 2);
    assert_eq!(second["lastHash"], first["hash"]);
    assert_eq!(units(&coinbase["outputs"][0]["amount"]), SUBSIDY + fee);
    assert_eq!(coinbase["outputs"][0]["address"], address_a.as_str());
    assert_eq!(second["data"][1]["txid"], txid.as_str());
    assert_eq!(node_a.get_ok("/transactions"), json!([]));

    // GET /mine-transactions works too (the tutorial's verb): an empty pool, a bare block.
    let third = node_a.get_ok("/mine-transactions");
    let coinbase = check_block(&third, 3);
    assert_eq!(third["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(units(&coinbase["outputs"][0]["amount"]), SUBSIDY);

    // A's balance to the unit: three subsidies minus what B got (the fee came back).
    let balance = node_a.get_ok("/balance");
    let expected_total = 3 * SUBSIDY - amount;
    assert_eq!(balance["address"], address_a.as_str());
    assert_eq!(units(&balance["confirmed"]), expected_total, "{balance}");
    assert_eq!(units(&balance["total"]), expected_total);
    assert_eq!(units(&balance["spendable"]), expected_total);
    assert_eq!(balance["immature"], 0);
    assert_eq!(balance["unconfirmedIncoming"], 0);
    assert_eq!(balance["unconfirmedOutgoing"], 0);

    // GET /address/{B} on A: the amount, the unspent output, the history.
    let account_b = node_a.get_ok(&format!("/address/{address_b}"));
    assert_eq!(units(&account_b["balance"]), amount, "{account_b}");
    assert_eq!(account_b["utxoCount"], 1);
    assert_eq!(account_b["utxos"][0]["txid"], txid.as_str());
    assert_eq!(account_b["utxos"][0]["mature"], true);
    assert_eq!(
        account_b["history"],
        json!([{ "txid": txid.as_str(), "height": 2 }])
    );
    assert_eq!(account_b["pending"], json!([]));

    // GET /tx/{txid}: confirmed, with confirmations, fee and the spent output's address.
    let confirmed = node_a.get_ok(&format!("/tx/{txid}"));
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["confirmations"], 2);
    assert_eq!(units(&confirmed["fee"]), fee);
    assert_eq!(confirmed["blockHeight"], 2);
    assert_eq!(confirmed["blockHash"], second["hash"]);
    assert_eq!(confirmed["inputs"][0]["address"], address_a.as_str());
    assert_eq!(units(&confirmed["inputs"][0]["amount"]), SUBSIDY);
    assert_eq!(confirmed["hex"], sent["hex"]);

    // B's node has no peers here: it only provided the address.
    assert_eq!(node_b.height(), 0);
}

#[test]
fn blocks_are_found_by_height_and_hash_and_paged_with_the_chain_height_header() {
    let node = TestNode::start("blocks");
    let mined: Vec<Value> = (1..=4)
        .map(|index| node.mine(&format!("block {index}")))
        .collect();

    let by_height = node.get_ok("/blocks/2");
    let by_hash = node.get_ok(&format!("/blocks/{}", text(&mined[1]["hash"])));
    assert_eq!(by_height, by_hash);
    assert_eq!(by_height["hash"], mined[1]["hash"]);
    assert_eq!(by_height["confirmations"], 3);
    assert_eq!(by_height["data"][0]["coinbase"]["data"], "block 2");

    let heights = |path: &str| -> (Vec<u64>, Option<String>) {
        let response = node.request("GET", path, &[], b"");
        assert_eq!(response.status, 200, "{}", response.text());
        let heights = response
            .json()
            .as_array()
            .expect("an array")
            .iter()
            .map(|block| units(&block["height"]))
            .collect();
        (
            heights,
            response.header("x-chain-height").map(str::to_owned),
        )
    };
    let tip = Some("4".to_owned());
    assert_eq!(heights("/blocks"), (vec![0, 1, 2, 3, 4], tip.clone()));
    assert_eq!(
        heights("/blocks?start=1&limit=2"),
        (vec![1, 2], tip.clone())
    );
    // Without `start`, the page ends at the tip.
    assert_eq!(heights("/blocks?limit=2"), (vec![3, 4], tip.clone()));
    assert_eq!(heights("/blocks?start=3"), (vec![3, 4], tip.clone()));
    assert_eq!(heights("/blocks?start=9"), (vec![], tip.clone()));
    assert_eq!(heights("/blocks?limit=1000"), (vec![0, 1, 2, 3, 4], tip));
}

#[test]
fn status_metrics_and_wallet_addresses_describe_the_node() {
    let node = TestNode::start("status");
    let block = node.mine("status");

    let status = node.get_ok("/status");
    assert_eq!(status["network"], "regtest");
    assert_eq!(status["height"], 1);
    assert_eq!(status["tip"], block["hash"]);
    assert_eq!(status["tipTime"], block["timestamp"]);
    assert_eq!(status["bits"], block["bits"]);
    assert_eq!(status["peers"], 0);
    assert_eq!(status["mempool"], json!({ "transactions": 0, "bytes": 0 }));
    assert_eq!(status["mining"], false);
    assert_eq!(status["sync"]["syncing"], false);
    assert_eq!(status["sync"]["bestHeaderHeight"], 1);
    assert_eq!(status["orphans"], 0);
    assert!(status["minerThreads"].as_u64() >= Some(1), "{status}");

    let metrics = node.request("GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/plain")),
        "{:?}",
        metrics.headers
    );
    let metrics = metrics.text();
    assert!(
        metrics
            .lines()
            .any(|line| line == "powchain_chain_height 1"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE powchain_hashes_total counter"));

    // The peer-to-peer layer is not part of this node: no peers listed.
    assert_eq!(node.get_ok("/peers"), json!([]));

    // POST /wallet/addresses: a fresh address, listed by GET /balance after the default.
    let default_address = node.address_of_wallet();
    let fresh = node.post_ok("/wallet/addresses", &Value::Null);
    let fresh = text(&fresh["address"]).to_owned();
    assert_ne!(fresh, default_address);
    let balance = node.get_ok("/balance");
    assert_eq!(balance["address"], default_address.as_str());
    assert_eq!(balance["addresses"], json!([default_address, fresh]));

    // Coins sent to the fresh address stay in the wallet: only the fee leaves it, and it
    // comes back when the node mines the block.
    let sent = node.transact(&fresh, 5 * COIN);
    let fee = units(&sent["fee"]);
    let balance = node.get_ok("/balance");
    assert_eq!(units(&balance["total"]), SUBSIDY - fee, "{balance}");
    assert_eq!(units(&balance["unconfirmedIncoming"]), SUBSIDY - fee);
    node.post_ok("/mine-transactions", &Value::Null);
    let balance = node.get_ok("/balance");
    assert_eq!(units(&balance["total"]), 2 * SUBSIDY, "{balance}");
    let account = node.get_ok(&format!("/address/{fresh}"));
    assert_eq!(units(&account["balance"]), 5 * COIN);
}

#[test]
fn a_signed_raw_transaction_is_accepted_by_post_tx_and_mined() {
    let node = TestNode::start("raw");
    node.mine("funds");
    let coin = fund_test_key(&node, 7, 3 * COIN);

    // POST /tx with the hex of a transaction signed outside the node.
    let fee = 1_000;
    let transaction = spend_test_coin(&coin, powchain_consensus::testkit::test_address(8), fee);
    let hex = transaction_hex(&transaction);
    let accepted = node.post_ok("/tx", &json!({ "hex": hex }));
    let txid = transaction.compute_txid().to_string();
    assert_eq!(accepted, json!({ "txid": txid, "fee": fee }));
    let pooled = node.get_ok(&format!("/tx/{txid}"));
    assert_eq!(pooled["status"], "pool");
    assert_eq!(pooled["hex"], hex.as_str());
    assert_eq!(pooled["inputs"][0]["address"], test_key_address(7).as_str());

    // The same transaction again: the pool already holds it.
    let (status, body) = node.post("/tx", &json!({ "hex": hex }));
    assert_eq!(status, 409, "{body}");
    assert!(error_message(&body).contains("already-in-pool"), "{body}");

    // Mined: the fee goes to the miner.
    let block = node.post_ok("/mine-transactions", &Value::Null);
    assert_eq!(block["data"][1]["txid"], txid.as_str());
    assert_eq!(
        units(&block["data"][0]["outputs"][0]["amount"]),
        SUBSIDY + fee
    );
    let account = node.get_ok(&format!("/address/{}", test_key_address(8)));
    assert_eq!(units(&account["balance"]), 3 * COIN - fee);
}

#[test]
fn a_coin_whose_txid_starts_with_ff_counts_in_balances() {
    // The address index once scanned up to `address ‖ 0xff`, which left out every coin
    // whose txid starts with 0xff: one coin in 256 vanished from /balance and /address.
    use powchain_consensus::{Address, Amount, BlockHeight, Network, Transaction, TxOut};

    let node = TestNode::start("ff-coin");
    let own = node.address_of_wallet();
    let payout = Address::parse(&own, Network::Regtest).expect("the node's address parses");
    // The coinbase's txid depends only on the height, the note and the payout: pick a note
    // that makes it start with 0xff.
    let coinbase_txid = |note: &str| {
        Transaction::new_coinbase(
            BlockHeight(1),
            note.as_bytes().to_vec(),
            vec![TxOut {
                value: Amount::from_units(SUBSIDY).expect("in range"),
                address: payout,
            }],
        )
        .compute_txid()
    };
    let note = (0u32..)
        .map(|attempt| format!("note {attempt}"))
        .find(|note| coinbase_txid(note).0[0] == 0xff)
        .expect("one note in about 256 works");
    let block = node.mine(&note);
    let txid = coinbase_txid(&note).to_string();
    assert_eq!(block["data"][0]["txid"], txid.as_str());
    assert!(txid.starts_with("ff"));

    let balance = node.get_ok("/balance");
    assert_eq!(units(&balance["confirmed"]), SUBSIDY, "{balance}");
    assert_eq!(units(&balance["spendable"]), SUBSIDY);
    let account = node.get_ok(&format!("/address/{own}"));
    assert_eq!(units(&account["balance"]), SUBSIDY, "{account}");
    assert_eq!(account["utxos"][0]["txid"], txid.as_str());
    // And the wallet can spend it.
    let sent = node.transact(&test_key_address(1), COIN);
    assert_eq!(sent["inputs"][0]["txid"], txid.as_str());
}
