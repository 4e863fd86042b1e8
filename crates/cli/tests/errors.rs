//! Every bad request over real HTTP: each answer is a 4xx with a JSON `{"error": "..."}`
//! that says what was wrong, and the node keeps serving (and keeps its coins) afterwards.

mod support;

use powchain_consensus::testkit::test_address;
use powchain_consensus::{Address, Network, OutPoint, TxInputs, Txid};
use serde_json::{Value, json};
use support::{
    COIN, SUBSIDY, TestCoin, TestNode, error_message, fund_test_key, spend_test_coin,
    transaction_hex,
};

/// One bad request and what the node must answer.
struct Case {
    method: &'static str,
    path: String,
    /// Sent as is (no content type), so malformed JSON can be sent too.
    body: String,
    status: u16,
    /// A part of the error message.
    message: &'static str,
}

fn case(method: &'static str, path: &str, body: &str, status: u16, message: &'static str) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body: body.to_owned(),
        status,
        message,
    }
}

/// Sends every case, checks the answer's status, shape and message, and that the node
/// still answers afterwards.
fn check_cases(node: &TestNode, cases: &[Case]) {
    for case in cases {
        let what = format!("{} {} {:.120}", case.method, case.path, case.body);
        let response = node.request(case.method, &case.path, &[], case.body.as_bytes());
        assert_eq!(
            response.status,
            case.status,
            "{what} answered {}",
            response.text()
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        let body = response.json();
        let message = error_message(&body);
        assert!(
            message.contains(case.message),
            "{what}: expected {:?} in {message:?}",
            case.message
        );
        node.assert_serving();
    }
}

fn transact_body(recipient: &str, amount: &str) -> String {
    format!(r#"{{"recipient": "{recipient}", "amount": {amount}}}"#)
}

#[test]
fn every_bad_request_answers_a_json_error_and_the_node_keeps_serving() {
    let node = TestNode::start("errors");
    node.mine("funds");
    let own = node.address_of_wallet();
    let other = support::test_key_address(3);
    let devnet_address = Address::parse(&own, Network::Regtest)
        .expect("the node's address parses")
        .to_bech32(Network::Devnet);
    let mut bad_checksum = other.clone();
    let last = bad_checksum.pop().expect("a character");
    bad_checksum.push(if last == 'q' { 'p' } else { 'q' });
    let unknown_hash = "ab".repeat(32);
    let before = node.get_ok("/balance");

    #[rustfmt::skip]
    let cases = vec![
        // Malformed JSON, wrong types, missing and unknown fields.
        case("POST", "/transact", "{bad", 400, "invalid JSON body"),
        case("POST", "/transact", "", 400, "invalid JSON body"),
        case("POST", "/transact", "[1, 2]", 400, "invalid JSON body"),
        case("POST", "/transact", "\u{1}\u{2}", 400, "invalid JSON body"),
        case("POST", "/transact", &transact_body(&other, "\"5\""), 400, "invalid type: string"),
        case("POST", "/transact", &transact_body(&other, "-5"), 400, "expected u64"),
        case("POST", "/transact", &transact_body(&other, "1.5"), 400, "floating point"),
        case("POST", "/transact", &transact_body(&other, "1e3"), 400, "floating point"),
        case("POST", "/transact", &transact_body(&other, "null"), 400, "how much to send is missing: give `amount`"),
        case("POST", "/transact", &transact_body(&other, "18446744073709551616"), 400, "expected u64"),
        case("POST", "/transact", &transact_body(&other, "18446744073709551615"), 400, "above the maximum"),
        case("POST", "/transact", &transact_body(&other, "2100000000000001"), 400, "above the maximum"),
        case("POST", "/transact", &format!(r#"{{"recipient": "{other}"}}"#), 400, "how much to send is missing: give `amount` (integer units"),
        case("POST", "/transact", r#"{"amount": 5}"#, 400, "missing field `recipient`"),
        case("POST", "/transact", &format!(r#"{{"recipient": "{other}", "amount": 5, "memo": "hi"}}"#), 400, "unknown field `memo`"),
        case("POST", "/transact", r#"{"recipient": 42, "amount": 5}"#, 400, "invalid type: integer"),
        case("POST", "/transact", &format!(r#"{{"recipient": "{other}", "amount": 5, "feeRate": -1}}"#), 400, "expected u64"),
        // Recipients: unknown format, wrong network, bad checksum, empty.
        case("POST", "/transact", &transact_body("hello", "5"), 400, "invalid recipient"),
        case("POST", "/transact", &transact_body("", "5"), 400, "invalid recipient"),
        case("POST", "/transact", &transact_body(&bad_checksum, "5"), 400, "invalid checksum"),
        case("POST", "/transact", &transact_body(&devnet_address, "5"), 400, "this node is on regtest"),
        // Amounts the wallet cannot pay.
        case("POST", "/transact", &transact_body(&other, "0"), 400, "amount must be at least 1 unit"),
        case("POST", "/transact", &transact_body(&other, &SUBSIDY.to_string()), 400, "insufficient funds"),
        case("POST", "/transact", &transact_body(&other, &(1_000_000 * COIN).to_string()), 400, "insufficient funds"),
        case("POST", "/transact", &format!(r#"{{"recipient": "{other}", "amount": 5, "feeRate": 0}}"#), 400, "fee-rate-too-low"),
        case("POST", "/transact", &format!(r#"{{"recipient": "{other}", "amount": 5, "feeRate": 10000000}}"#), 400, "above the most the wallet pays (0.1 coins)"),
        // Blocks.
        case("GET", &format!("/blocks/{unknown_hash}"), "", 404, "unknown block"),
        case("GET", "/blocks/99", "", 404, "no block at height 99: the tip is at 1"),
        case("GET", "/blocks/xyz", "", 400, "neither a block hash"),
        case("GET", "/blocks/-1", "", 400, "neither a block hash"),
        case("GET", &format!("/blocks/{}", "z".repeat(64)), "", 400, "invalid block hash"),
        case("GET", "/blocks/99999999999999999999999", "", 400, "out of range"),
        case("GET", "/blocks?limit=0", "", 400, "limit must be between 1 and 1000, got 0"),
        case("GET", "/blocks?limit=5000", "", 400, "limit must be between 1 and 1000, got 5000"),
        case("GET", "/blocks?limit=ten", "", 400, "invalid digit"),
        case("GET", "/blocks?start=-1", "", 400, "invalid digit"),
        case("GET", "/blocks?page=2", "", 400, "unknown query parameter `page`: GET /blocks takes `start`, `limit`"),
        // Transactions.
        case("GET", "/tx/abc", "", 400, "invalid transaction id"),
        case("GET", &format!("/tx/{}", "g".repeat(64)), "", 400, "invalid transaction id"),
        case("GET", &format!("/tx/{unknown_hash}"), "", 404, "neither in the pool nor in the main chain"),
        // Addresses.
        case("GET", "/address/abc", "", 400, "invalid address"),
        case("GET", &format!("/address/{devnet_address}"), "", 400, "this node is on regtest"),
        case("GET", &format!("/address/{own}?limit=0"), "", 400, "limit must be between 1 and 1000"),
        case("GET", &format!("/address/{own}?limit=5000"), "", 400, "limit must be between 1 and 1000"),
        case("GET", &format!("/address/{own}?offset=x"), "", 400, "invalid digit"),
        case("GET", &format!("/address/{own}?offset=18446744073709551615&limit=1"), "", 400, "at most 100000 history entries deep"),
        case("GET", &format!("/address/{own}?offset=99951"), "", 400, "at most 100000 history entries deep, got 100001"),
        // Raw transactions that do not decode.
        case("POST", "/tx", r#"{"hex": "zz"}"#, 400, "invalid hex"),
        case("POST", "/tx", r#"{"hex": "abc"}"#, 400, "invalid hex"),
        case("POST", "/tx", r#"{"hex": ""}"#, 400, "not a transaction"),
        case("POST", "/tx", r#"{"hex": "0011"}"#, 400, "not a transaction"),
        case("POST", "/tx", &format!(r#"{{"hex": "{}"}}"#, "ff".repeat(200)), 400, "not a transaction"),
        case("POST", "/tx", r#"{}"#, 400, "missing field `hex`"),
        case("POST", "/tx", r#"{"hex": "00", "extra": 1}"#, 400, "unknown field `extra`"),
        // Mining.
        case("POST", "/mine", &format!(r#"{{"data": "{}"}}"#, "x".repeat(101)), 400, "at most 100"),
        case("POST", "/mine", "{bad", 400, "invalid JSON body"),
        // Unknown endpoints and wrong methods.
        case("GET", "/nope", "", 404, "no such endpoint"),
        case("GET", "/blocks/1/extra", "", 404, "no such endpoint"),
        case("DELETE", "/blocks", "", 405, "method not allowed"),
        case("POST", "/blocks", "", 405, "method not allowed"),
        case("GET", "/mine", "", 405, "method not allowed"),
        case("GET", "/transact", "", 405, "method not allowed"),
        case("PUT", "/tx", "", 405, "method not allowed"),
        case("GET", "/wallet/addresses", "", 405, "method not allowed"),
    ];
    check_cases(&node, &cases);

    // Nothing was paid, mined or pooled by any of it.
    assert_eq!(node.get_ok("/balance"), before);
    assert_eq!(node.get_ok("/transactions"), json!([]));
    assert_eq!(node.height(), 1);
}

#[test]
fn a_body_over_256_kib_is_refused_with_413_and_the_node_keeps_serving() {
    let node = TestNode::start("body-limit");
    let huge = format!(
        r#"{{"recipient": "{}", "amount": 5}}"#,
        "a".repeat(256 * 1024 + 1)
    );
    for path in ["/transact", "/tx", "/mine", "/peers"] {
        let response = node.post_raw(path, huge.as_bytes());
        assert_eq!(response.status, 413, "POST {path}: {}", response.text());
        assert!(error_message(&response.json()).contains("length limit exceeded"));
        node.assert_serving();
    }
    // Without a length up front (chunked), the limit holds while reading.
    let mut chunked = Vec::new();
    for chunk in huge.as_bytes().chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = node.request(
        "POST",
        "/transact",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(error_message(&response.json()).contains("length limit exceeded"));
    node.assert_serving();
    // A body just under the limit is read (and refused for what it says).
    let under = format!(r#"{{"hex": "{}"}}"#, "0".repeat(200 * 1024));
    let response = node.post_raw("/tx", under.as_bytes());
    assert_eq!(response.status, 400, "{}", response.text());
}

#[test]
fn raw_transactions_that_break_a_rule_are_refused_with_the_rule_name() {
    let node = TestNode::start("raw-errors");
    node.mine("funds");
    let coin = fund_test_key(&node, 5, 2 * COIN);
    let before = node.get_ok("/balance");

    let submit = |transaction: &powchain_consensus::Transaction| {
        node.post("/tx", &json!({ "hex": transaction_hex(transaction) }))
    };
    let expect_refusal = |(status, body): (u16, Value), want_status: u16, rule: &str| {
        assert_eq!(status, want_status, "{body}");
        let message = error_message(&body);
        assert!(message.contains(&format!("[{rule}]")), "{message}");
        node.assert_serving();
    };

    // A bad signature.
    let mut forged = spend_test_coin(&coin, test_address(6), 1_000);
    if let TxInputs::Spends(inputs) = &mut forged.inputs {
        inputs[0].signature.0[10] ^= 0x01;
    }
    expect_refusal(submit(&forged), 400, "bad-signature");

    // Signed by the wrong key.
    let stolen = spend_test_coin(
        &TestCoin {
            seed: 9,
            output: powchain_consensus::TxOut {
                address: test_address(9),
                ..coin.output
            },
            ..coin
        },
        test_address(6),
        1_000,
    );
    expect_refusal(submit(&stolen), 400, "bad-signature");

    // An input that does not exist.
    let phantom = TestCoin {
        outpoint: OutPoint {
            txid: Txid([7; 32]),
            vout: 0,
        },
        ..coin
    };
    expect_refusal(
        submit(&spend_test_coin(&phantom, test_address(6), 1_000)),
        400,
        "missing-input",
    );

    // A coinbase cannot enter the pool.
    let block = node.get_ok("/blocks/1");
    let coinbase_hex = block["data"][0]["hex"].as_str().expect("hex").to_owned();
    let (status, body) = node.post("/tx", &json!({ "hex": coinbase_hex }));
    assert_eq!(status, 400, "{body}");
    node.assert_serving();

    // A valid spend is accepted; the same one again and a double spend conflict (409).
    let first = spend_test_coin(&coin, test_address(6), 1_000);
    let (status, body) = submit(&first);
    assert_eq!(status, 200, "{body}");
    expect_refusal(submit(&first), 409, "already-in-pool");
    let double_spend = spend_test_coin(&coin, test_address(6), 5_000);
    expect_refusal(submit(&double_spend), 409, "conflict");

    // Trailing bytes after a valid transaction.
    let trailing = format!(r#"{{"hex": "{}00"}}"#, transaction_hex(&first));
    let response = node.post_raw("/tx", trailing.as_bytes());
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(error_message(&response.json()).contains("not a transaction"));

    // The node's wallet was never touched; the pool holds the one valid spend.
    assert_eq!(node.get_ok("/balance"), before);
    let pool = node.get_ok("/transactions");
    assert_eq!(pool.as_array().map(Vec::len), Some(1));
    assert_eq!(pool[0]["txid"], first.compute_txid().to_string().as_str());
}
