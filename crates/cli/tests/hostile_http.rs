//! The HTTP half of the invalid-input catalogue, beyond `errors.rs`: hostile JSON (deep
//! nesting, duplicate keys, huge numbers and strings), amounts and fee rates at and past
//! their limits, raw transactions that break each consensus rule, bad peer addresses, and
//! notes at the exact limit. Every refusal is a 4xx `{"error": "..."}` naming what is wrong
//! (the rule, for transactions), nothing is paid, pooled or mined by it, and the node keeps
//! serving. docs/SECURITY.md counts these with `errors.rs`.

mod support;

use powchain_consensus::encode::Encode;
use powchain_consensus::testkit::{sign_all, test_address, test_key};
use powchain_consensus::{Amount, Signature, Transaction, TxIn, TxInputs, TxOut, hex};
use serde_json::json;
use support::{COIN, TestCoin, TestNode, error_message, fund_test_key, transaction_hex};

/// One request and the answer it must get.
struct Case {
    name: &'static str,
    path: &'static str,
    body: String,
    status: u16,
    /// A part of the error message.
    message: String,
}

fn case(name: &'static str, path: &'static str, body: String, status: u16, message: &str) -> Case {
    Case {
        name,
        path,
        body,
        status,
        message: message.to_owned(),
    }
}

fn check(node: &TestNode, cases: &[Case]) {
    for case in cases {
        let response = node.post_raw(case.path, case.body.as_bytes());
        assert_eq!(
            response.status,
            case.status,
            "{}: answered {}",
            case.name,
            response.text()
        );
        let body = response.json();
        let message = error_message(&body);
        assert!(
            message.contains(&case.message),
            "{}: expected {:?} in {message:?}",
            case.name,
            case.message
        );
        node.assert_serving();
    }
}

/// A transaction spending `coin` (signed by its key) to `outputs`, with `inputs` copies of
/// the coin as inputs.
fn spend(coin: &TestCoin, inputs: usize, outputs: Vec<TxOut>) -> Transaction {
    let mut transaction = Transaction {
        version: Transaction::CURRENT_VERSION,
        inputs: TxInputs::Spends(
            (0..inputs)
                .map(|_| TxIn {
                    prevout: coin.outpoint,
                    signature: Signature([0; 64]),
                })
                .collect(),
        ),
        outputs,
    };
    let spent = vec![coin.output; inputs];
    sign_all(&mut transaction, &spent, &[test_key(coin.seed)]);
    transaction
}

fn pay(units: u64) -> TxOut {
    TxOut {
        value: Amount::from_units(units).expect("in range"),
        address: test_address(8),
    }
}

fn raw(transaction: &Transaction) -> String {
    json!({ "hex": transaction_hex(transaction) }).to_string()
}

#[test]
fn hostile_http_requests_are_refused_with_what_is_wrong_and_change_nothing() {
    let node = TestNode::start("hostile-http");
    node.mine("funds");
    let coin = fund_test_key(&node, 5, 2 * COIN);
    let other = support::test_key_address(3);
    let before = (
        node.get_ok("/balance"),
        node.get_ok("/transactions"),
        node.height(),
    );
    let transact = |amount: &str, extra: &str| {
        format!(r#"{{"recipient": "{other}", "amount": {amount}{extra}}}"#)
    };
    let mut zero = pay(1);
    zero.value = Amount::ZERO;
    let max = TxOut {
        value: Amount::MAX_MONEY,
        address: test_address(8),
    };
    let two_coins = coin.output.value.to_units();
    let oversized = spend(&coin, 1, (0..2_600).map(|_| pay(1)).collect());
    // The first output's value is at byte 107: version 4, tag 1, input count 1, input 100,
    // output count 1.
    let mut bytes = spend(&coin, 1, vec![pay(COIN)]).encode_to_vec();
    bytes[107..115].copy_from_slice(&(Amount::MAX_MONEY.to_units() + 1).to_le_bytes());
    let above_max_money = json!({ "hex": hex::encode(&bytes) }).to_string();

    #[rustfmt::skip]
    let cases = vec![
        // Hostile JSON.
        case("JSON nested 100,000 deep", "/transact", "[".repeat(100_000), 400, "invalid JSON body"),
        case("a note nested 100,000 deep (any JSON is a note)", "/mine", format!(r#"{{"data": {}"#, "[".repeat(100_000)), 400, "recursion limit exceeded"),
        case("objects nested 30,000 deep", "/tx", r#"{"hex":"#.repeat(30_000), 400, "invalid JSON body"),
        case("a key twice", "/transact", transact("5", r#", "amount": 6"#), 400, "duplicate field `amount`"),
        case("an amount of 400 digits", "/transact", transact(&"9".repeat(400), ""), 400, "invalid JSON body"),
        case("an amount of 1e400", "/transact", transact("1e400", ""), 400, "invalid JSON body"),
        case("a recipient of 200,000 characters", "/transact", format!(r#"{{"recipient": "{}", "amount": 5}}"#, "q".repeat(200_000)), 400, "invalid recipient"),
        case("bytes that are not UTF-8", "/transact", String::from_utf8_lossy(&[b'{', 0xff, 0xfe, b'}']).into_owned(), 400, "invalid JSON body"),
        case("a JSON string, not an object", "/transact", r#""pay me""#.to_owned(), 400, "invalid JSON body"),
        // Amounts and fee rates at and past their limits.
        case("amount exactly the money supply: more than the wallet holds (issue 15, bug 4)", "/transact", transact(&Amount::MAX_MONEY.to_units().to_string(), ""), 400, "insufficient funds"),
        case("amount one unit past the money supply", "/transact", transact(&(Amount::MAX_MONEY.to_units() + 1).to_string(), ""), 400, "above the maximum"),
        case("amount -1", "/transact", transact("-1", ""), 400, "expected u64"),
        case("fee rate 2^64 - 1 units a byte", "/transact", transact("5", r#", "feeRate": 18446744073709551615"#), 400, "amount overflow"),
        case("fee rate 2^64", "/transact", transact("5", r#", "feeRate": 18446744073709551616"#), 400, "invalid JSON body"),
        case("fee rate 1.5", "/transact", transact("5", r#", "feeRate": 1.5"#), 400, "invalid JSON body"),
        // Public keys as recipients, and coins as a decimal string (issue 15).
        case("recipient: 130 hex digits that are not a point on the curve", "/transact", format!(r#"{{"recipient": "04{}", "amount": 5}}"#, "ab".repeat(64)), 400, "the 65 bytes are not a public key on secp256k1"),
        case("recipient: 65 hex digits, a key's length is 64, 66 or 130", "/transact", format!(r#"{{"recipient": "{}", "amount": 5}}"#, "a".repeat(65)), 400, "got 65"),
        case("coins as a JSON number (it could be units)", "/transact", format!(r#"{{"recipient": "{other}", "coins": 1.5}}"#), 400, "expected a string"),
        case("both amount and coins", "/transact", format!(r#"{{"recipient": "{other}", "amount": 5, "coins": "5"}}"#), 400, "not both"),
        case("coins with nine decimals", "/transact", format!(r#"{{"recipient": "{other}", "coins": "0.000000001"}}"#), 400, "at most 8 decimals"),
        case("coins one unit past the money supply", "/transact", format!(r#"{{"recipient": "{other}", "coins": "21000000.00000001"}}"#), 400, "above the maximum"),
        case("an unknown query parameter on a protected endpoint mines nothing", "/mine?difficulty=1", "{}".to_owned(), 400, "unknown query parameter `difficulty`: POST /mine takes no query parameters"),
        // Raw transactions breaking each rule (the rule is named).
        case("tx: an output of zero", "/tx", raw(&spend(&coin, 1, vec![pay(COIN), zero])), 400, "[zero-value-output]"),
        case("tx: outputs summing past the money supply", "/tx", raw(&spend(&coin, 1, vec![max, pay(1)])), 400, "[output-total-too-large]"),
        case("tx: one output spent twice", "/tx", raw(&spend(&coin, 2, vec![pay(COIN)])), 400, "[duplicate-input]"),
        case("tx: pays more than it spends", "/tx", raw(&spend(&coin, 1, vec![pay(two_coins + 1)])), 400, "outputs pay 2.00000001 coins but inputs hold only 2 coins [inputs-below-outputs]"),
        case("tx: no outputs", "/tx", raw(&spend(&coin, 1, vec![])), 400, "[no-outputs]"),
        case("tx: no inputs", "/tx", raw(&spend(&coin, 0, vec![pay(1)])), 400, "[no-inputs]"),
        case("tx: no fee (policy)", "/tx", raw(&spend(&coin, 1, vec![pay(two_coins)])), 400, "[fee-rate-too-low]"),
        case("tx: over 100,000 bytes", "/tx", raw(&oversized), 400, "not a transaction"),
        case("tx: an output above the money supply", "/tx", above_max_money, 400, "not a transaction"),
        // Peer addresses.
        case("peer: not ws://", "/peers", r#"{"url": "http://127.0.0.1:5001"}"#.to_owned(), 400, "must start with ws://"),
        case("peer: no port", "/peers", r#"{"url": "ws://127.0.0.1"}"#.to_owned(), 400, "needs a port"),
        case("peer: port 99999", "/peers", r#"{"url": "ws://127.0.0.1:99999"}"#.to_owned(), 400, "invalid port"),
        case("peer: not a string", "/peers", r#"{"url": 5001}"#.to_owned(), 400, "invalid JSON body"),
        // Notes: bytes, not characters, are counted.
        case("note of 34 three-byte characters (102 bytes)", "/mine", json!({ "data": "€".repeat(34) }).to_string(), 400, "data is 102 bytes"),
    ];
    check(&node, &cases);
    assert_eq!(
        (
            node.get_ok("/balance"),
            node.get_ok("/transactions"),
            node.height()
        ),
        before,
        "a refused request changed the node"
    );

    // At the limits, accepted: a note of exactly 100 bytes, in characters of 3 bytes and 1.
    let note = format!("{}x", "€".repeat(33));
    assert_eq!(note.len(), 100);
    let block = node.post_ok("/mine", &json!({ "data": note }));
    assert_eq!(block["data"][0]["coinbase"]["data"], note.as_str());
    // A raw transaction paying exactly the minimum fee rate (1 unit a byte).
    let size = spend(&coin, 1, vec![pay(two_coins - 1)]).compute_size();
    let exact = spend(&coin, 1, vec![pay(two_coins - size as u64)]);
    let (status, body) = node.post("/tx", &json!({ "hex": transaction_hex(&exact) }));
    assert_eq!(status, 200, "{body}");
    // A payment of everything the wallet can spend but the fee: refused, not a crash.
    let spendable = node.get_ok("/balance")["spendable"]
        .as_u64()
        .expect("units");
    let (status, body) = node.post(
        "/transact",
        &json!({ "recipient": other, "amount": spendable }),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        error_message(&body).contains("insufficient funds"),
        "{body}"
    );
    node.assert_serving();
}
