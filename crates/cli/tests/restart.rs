//! Durability over real processes: a clean stop (SIGTERM) keeps the chain, the wallet and
//! its balances, and the pool; a SIGKILL right after `POST /transact` answered loses
//! neither the transaction nor the wallet's change.

mod support;

use serde_json::{Value, json};
use support::{COIN, SUBSIDY, TestNode, test_key_address};

fn units(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("expected an integer, got {value}"))
}

/// What a restart must keep.
#[derive(Debug, PartialEq)]
struct Kept {
    height: Value,
    tip: Value,
    public_key: Value,
    balance: Value,
    blocks: Value,
    pool: Vec<Value>,
}

fn read_kept(node: &TestNode) -> Kept {
    let status = node.get_ok("/status");
    let pool = node
        .get_ok("/transactions")
        .as_array()
        .expect("an array")
        .iter()
        .map(|pooled| pooled["txid"].clone())
        .collect();
    Kept {
        height: status["height"].clone(),
        tip: status["tip"].clone(),
        public_key: node.get_ok("/public-key"),
        balance: node.get_ok("/balance"),
        blocks: node.get_ok("/blocks"),
        pool,
    }
}

#[test]
fn a_clean_restart_keeps_chain_wallet_balances_and_pool() {
    let mut node = TestNode::start("restart");
    node.mine("one");
    node.mine("two");
    let paid = node.transact(&test_key_address(1), 7 * COIN);
    node.post_ok("/mine-transactions", &Value::Null);
    let fresh = node.post_ok("/wallet/addresses", &Value::Null);
    // One payment still in the pool when the node stops.
    let pending = node.transact(&test_key_address(2), 3 * COIN);
    let before = read_kept(&node);
    assert_eq!(before.height, 3);
    assert_eq!(before.pool, vec![pending["txid"].clone()]);
    assert_eq!(
        before.balance["addresses"][1], fresh["address"],
        "{:?}",
        before.balance
    );

    node.stop();
    node.restart();

    assert_eq!(read_kept(&node), before);
    let confirmed = node.get_ok(&format!("/tx/{}", paid["txid"].as_str().expect("txid")));
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["blockHeight"], 3);
    // The chain grows on from where it was.
    let block = node.post_ok("/mine-transactions", &Value::Null);
    assert_eq!(block["height"], 4);
    assert_eq!(block["lastHash"], before.tip);
    assert_eq!(block["data"][1]["txid"], pending["txid"]);
    let balance = node.get_ok("/balance");
    assert_eq!(
        units(&balance["total"]),
        4 * SUBSIDY - 10 * COIN,
        "{balance}"
    );
}

#[test]
fn a_sigkill_right_after_transact_keeps_the_transaction_and_the_change() {
    let mut node = TestNode::start("sigkill");
    node.mine("funds");
    let amount = 4 * COIN + 21;
    let sent = node.transact(&test_key_address(4), amount);
    // Nothing between the answer and the kill: the answer itself must be durable.
    node.kill();

    let txid = sent["txid"].as_str().expect("a txid").to_owned();
    let fee = units(&sent["fee"]);
    let change = SUBSIDY - amount - fee;
    assert_eq!(units(&sent["outputs"][1]["amount"]), change, "{sent}");

    node.restart();
    assert_eq!(node.height(), 1);
    let pooled = node.get_ok(&format!("/tx/{txid}"));
    assert_eq!(pooled["status"], "pool", "{pooled}");
    assert_eq!(units(&pooled["fee"]), fee);
    assert_eq!(pooled["hex"], sent["hex"]);
    // The balance the answer implied: the coinbase is spent in the pool, the change counts.
    assert_eq!(
        node.get_ok("/balance"),
        json!({
            "address": node.address_of_wallet(),
            "addresses": [node.address_of_wallet()],
            "confirmed": SUBSIDY,
            "immature": 0,
            "unconfirmedIncoming": change,
            "unconfirmedFromOthers": 0,
            "unconfirmedOutgoing": SUBSIDY,
            "spendable": change,
            "total": change,
        })
    );

    let block = node.post_ok("/mine-transactions", &Value::Null);
    assert_eq!(block["data"][1]["txid"], txid.as_str());
    let confirmed = node.get_ok(&format!("/tx/{txid}"));
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["confirmations"], 1);
    let balance = node.get_ok("/balance");
    assert_eq!(units(&balance["total"]), 2 * SUBSIDY - amount, "{balance}");
    assert_eq!(units(&balance["spendable"]), 2 * SUBSIDY - amount);

    // A second kill right after a change-spending payment: still nothing lost.
    let again = node.transact(&test_key_address(4), COIN);
    node.kill();
    node.restart();
    let pooled = node.get_ok(&format!("/tx/{}", again["txid"].as_str().expect("txid")));
    assert_eq!(pooled["status"], "pool");
    let balance = node.get_ok("/balance");
    assert_eq!(
        units(&balance["total"]),
        2 * SUBSIDY - amount - COIN - units(&again["fee"]),
        "{balance}"
    );
}
