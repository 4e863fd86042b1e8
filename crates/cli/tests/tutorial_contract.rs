//! The tutorial's HTTP contract, row by row (issue 15): docs/TUTORIAL.md's "Coming from the
//! tutorial" table is read here, and each row's request is sent as the tutorial writes it
//! to real nodes. What the table says is compatible must work as the tutorial's client
//! expects; what it says differs must answer as it says. The rows of the table and the
//! checks of this file are the same list, in the same order, or the test fails.

mod support;

use std::path::Path;
use std::time::Duration;

use powchain_consensus::{Address, Network, hex};
use serde_json::{Value, json};
use support::{COIN, Response, TestNode, error_message, text, units, wait_until};

/// The document and the section holding the table.
const DOCUMENT: &str = "docs/TUTORIAL.md";
const SECTION: &str = "## Coming from the tutorial";

/// How long a peer may take to see a block or a transaction.
const RELAY_DEADLINE: Duration = Duration::from_secs(30);

/// The uncompressed SEC key (the tutorial's `04...` form) of secret key 3, whose x-only key
/// is BIP-340 test vector 0's.
const TUTORIAL_STYLE_KEY: &str = "04f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9388f7b0f632de8140fe337e62a37f3566500a99934c2231b6cb9fd7584b8e672";
const TUTORIAL_STYLE_KEY_X: &str =
    "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";

/// One row of the table.
#[derive(Debug)]
struct Row {
    /// The first column, without its backticks.
    id: String,
    /// "the tutorial" column.
    tutorial: String,
    /// "powchain" column.
    powchain: String,
}

impl Row {
    /// The code spans of `cell`, in order.
    fn code_spans(cell: &str) -> Vec<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    /// The request of "the tutorial" column (its first code span) as method, path and
    /// body, with `<public key>` replaced by `public_key`.
    fn request(&self, public_key: &str) -> (String, String, Option<String>) {
        let span = Row::code_spans(&self.tutorial)
            .first()
            .copied()
            .unwrap_or_else(|| panic!("row {}: no request in {:?}", self.id, self.tutorial));
        let (method, rest) = span
            .split_once(' ')
            .unwrap_or_else(|| panic!("row {}: {span:?} is not `METHOD /path [body]`", self.id));
        let (path, body) = match rest.split_once(' ') {
            Some((path, body)) => (path, Some(body.replace("<public key>", public_key))),
            None => (rest, None),
        };
        assert!(
            matches!(method, "GET" | "POST") && path.starts_with('/'),
            "row {}: {span:?} is not a request",
            self.id
        );
        (method.to_owned(), path.to_owned(), body)
    }

    /// The tutorial's field names: the `{a, b, c}` code span of "the tutorial" column.
    fn tutorial_fields(&self) -> Vec<String> {
        braced_names(&self.tutorial)
            .unwrap_or_else(|| panic!("row {}: no {{fields}} in {:?}", self.id, self.tutorial))
    }

    /// Asserts the "powchain" column says each of `facts` (so the check and the text agree).
    fn says(&self, facts: &[&str]) {
        for fact in facts {
            assert!(
                self.powchain.contains(fact),
                "row {}: docs/TUTORIAL.md no longer says {fact:?}; update the check with it",
                self.id
            );
        }
    }
}

/// The names in the first `{a, b, c}` code span of `cell`.
fn braced_names(cell: &str) -> Option<Vec<String>> {
    let span = Row::code_spans(cell)
        .into_iter()
        .find(|span| span.starts_with('{') && span.ends_with('}'))?;
    Some(
        span.trim_matches(['{', '}'])
            .split(',')
            .map(|name| name.trim().to_owned())
            .collect(),
    )
}

/// The rows of the table, in order.
fn rows() -> Vec<Row> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli sits two folders below the root");
    let text = std::fs::read_to_string(root.join(DOCUMENT)).expect("docs/TUTORIAL.md is readable");
    let section = text
        .split_once(SECTION)
        .unwrap_or_else(|| panic!("{DOCUMENT} has no {SECTION:?}"))
        .1;
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        // The head and the separator.
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 5, "a row of five cells: {line}");
            Row {
                id: cells[0].trim_matches('`').to_owned(),
                tutorial: cells[1].to_owned(),
                powchain: cells[2].to_owned(),
            }
        })
        .collect()
}

/// The nodes the rows run on: `a` (the tutorial's node) and `b`, its peer.
struct Nodes {
    a: TestNode,
    b: TestNode,
    /// B's key as `GET /public-key` answers it, and its address.
    b_key: String,
    b_address: String,
}

impl Nodes {
    /// Sends `row`'s request to `node` as the tutorial's client does (JSON with its content
    /// type), `<public key>` being B's key.
    fn send(&self, node: &TestNode, row: &Row) -> Response {
        let (method, path, body) = row.request(&self.b_key);
        match body {
            Some(body) => node.request(
                &method,
                &path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            ),
            None => node.request(&method, &path, &[], b""),
        }
    }
}

/// A 200 with a JSON body and no redirect: what the tutorial's client can read.
fn answered(response: &Response, row: &Row) -> Value {
    assert_eq!(
        response.status,
        200,
        "row {}: answered {}",
        row.id,
        response.text()
    );
    assert_eq!(
        response.header("location"),
        None,
        "row {}: no redirect",
        row.id
    );
    response.json()
}

/// The target of `rel` in a `Link` header.
fn link_target<'a>(link: &'a str, rel: &str) -> Option<&'a str> {
    link.split(", ")
        .find(|part| part.ends_with(&format!("rel=\"{rel}\"")))
        .and_then(|part| part.split_once('<'))
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(target, _)| target)
}

fn blocks(nodes: &Nodes, row: &Row) {
    row.says(&[
        "**newest 100**",
        "`Link` with `rel=\"first\"` (from genesis)",
        "`x-page-note`",
    ]);
    let genesis = nodes.a.get_ok("/blocks/0");
    // While the chain is short, the tutorial's check holds: an array, genesis first, linked.
    let chain = answered(&nodes.send(&nodes.a, row), row);
    let chain = chain
        .as_array()
        .expect("a JSON array, as the tutorial's client reads");
    assert_eq!(chain[0]["hash"], genesis["hash"]);
    for pair in chain.windows(2) {
        assert_eq!(pair[1]["lastHash"], pair[0]["hash"]);
    }
    // Past 100 blocks: the newest 100, and the headers say how to reach genesis.
    while nodes.a.height() < 100 {
        nodes.a.post_ok("/mine", &json!({}));
    }
    let tip = nodes.a.height();
    let response = nodes.send(&nodes.a, row);
    let page = answered(&response, row);
    let page = page.as_array().expect("still an array");
    assert_eq!(page.len(), 100);
    assert_eq!(
        units(&page[0]["height"]),
        tip - 99,
        "the first is not genesis"
    );
    assert_eq!(
        response.header("x-chain-height"),
        Some(tip.to_string().as_str())
    );
    let note = response.header("x-page-note").expect("x-page-note");
    assert!(note.contains("the first is not genesis"), "{note}");
    let link = response.header("link").expect("a Link header");
    assert_eq!(
        link_target(link, "first"),
        Some("/blocks?start=0&limit=100")
    );
    assert_eq!(link_target(link, "next"), None, "the newest page");
    // Walking from `first` along `next` reads every block once, genesis first.
    let mut path = link_target(link, "first").map(str::to_owned);
    let mut heights = Vec::new();
    while let Some(current) = path {
        let response = nodes.a.request("GET", &current, &[], b"");
        let page = answered(&response, row);
        heights.extend(
            page.as_array()
                .expect("an array")
                .iter()
                .map(|block| units(&block["height"])),
        );
        if heights.len() <= 100 {
            assert_eq!(
                page[0]["hash"], genesis["hash"],
                "{current} starts at genesis"
            );
        }
        path = response
            .header("link")
            .and_then(|link| link_target(link, "next"))
            .map(str::to_owned);
    }
    assert_eq!(heights, (0..=tip).collect::<Vec<_>>());
}

fn mine(nodes: &Nodes, row: &Row) {
    row.says(&[
        "no redirect",
        "`data[0].coinbase.data`",
        "Any other field is refused",
    ]);
    let (_, _, body) = row.request(&nodes.b_key);
    let data = serde_json::from_str::<Value>(&body.expect("a body"))
        .expect("the tutorial's body is JSON")["data"]
        .clone();
    let block = answered(&nodes.send(&nodes.a, row), row);
    assert_eq!(block["data"][0]["coinbase"]["data"], data, "{block}");
    assert_eq!(units(&block["height"]), nodes.a.height(), "it is the tip");
    let (status, refused) = nodes
        .a
        .post("/mine", &json!({ "data": "x", "difficulty": 1 }));
    assert_eq!(status, 400, "{refused}");
    assert!(
        error_message(&refused).contains("unknown field `difficulty`, expected `data`"),
        "{refused}"
    );
}

fn transactions(nodes: &Nodes, row: &Row) {
    row.says(&[
        "`fee`, `feeRate` and `receivedAt`",
        "`?offset=` and `?limit=`",
    ]);
    let sent = nodes.a.transact(&nodes.b_address, COIN);
    let pool = answered(&nodes.send(&nodes.a, row), row);
    let pool = pool.as_array().expect("an array");
    let pooled = pool
        .iter()
        .find(|pooled| pooled["txid"] == sent["txid"])
        .expect("the payment is pooled");
    for field in ["fee", "feeRate", "receivedAt"] {
        assert!(pooled.get(field).is_some(), "{field} in {pooled}");
    }
    let one = nodes.a.get_ok("/transactions?limit=1");
    assert_eq!(one.as_array().map(Vec::len), Some(1));
}

fn transact(nodes: &Nodes, row: &Row) {
    row.says(&[
        "`\"sent\": \"0.00000050\"`",
        "`\"sentUnits\": 50`",
        "`\"recipient\"` the address paid",
    ]);
    // As written: `amount: 50` to B's public key sends 50 units to B's address, and says so.
    let sent = answered(&nodes.send(&nodes.a, row), row);
    assert_eq!(sent["sent"], "0.00000050", "{sent}");
    assert_eq!(units(&sent["sentUnits"]), 50);
    assert_eq!(sent["recipient"], nodes.b_address.as_str());
    assert_eq!(
        sent["outputs"][0],
        json!({"n": 0, "address": nodes.b_address, "amount": 50})
    );
    // A tutorial wallet's key (uncompressed SEC, 130 hex digits), paid in coins.
    let x_only = Address(hex::decode_array(TUTORIAL_STYLE_KEY_X).expect("hex"));
    let address = x_only.to_bech32(Network::Regtest);
    let sent = nodes.a.post_ok(
        "/transact",
        &json!({ "recipient": TUTORIAL_STYLE_KEY, "coins": "1.5" }),
    );
    assert_eq!(sent["sent"], "1.50000000");
    assert_eq!(units(&sent["sentUnits"]), 150_000_000);
    assert_eq!(sent["recipient"], address.as_str());
    assert_eq!(sent["outputs"][0]["address"], address.as_str());
    // A key of a wrong length is told so, not "invalid checksum".
    let (status, refused) = nodes.a.post(
        "/transact",
        &json!({ "recipient": &TUTORIAL_STYLE_KEY[..128], "coins": "1" }),
    );
    assert_eq!(status, 400);
    assert!(error_message(&refused).contains("got 128"), "{refused}");
}

fn mine_transactions(nodes: &Nodes, row: &Row) {
    row.says(&["no redirect", "`POST` works too"]);
    let pool = nodes.a.get_ok("/transactions");
    let pooled: Vec<&Value> = pool
        .as_array()
        .expect("an array")
        .iter()
        .map(|pooled| &pooled["txid"])
        .collect();
    assert!(
        !pooled.is_empty(),
        "the rows before left payments in the pool"
    );
    let block = answered(&nodes.send(&nodes.a, row), row);
    let mined: Vec<&Value> = block["data"]
        .as_array()
        .expect("transactions")
        .iter()
        .skip(1)
        .map(|transaction| &transaction["txid"])
        .collect();
    assert_eq!(mined.len(), pooled.len());
    assert!(pooled.iter().all(|txid| mined.contains(txid)), "{block}");
    assert_eq!(nodes.a.get_ok("/transactions"), json!([]));
}

fn public_key(nodes: &Nodes, row: &Row) {
    row.says(&["`{\"publicKey\", \"address\"}`", "64 hex digits (x-only)"]);
    let answer = answered(&nodes.send(&nodes.b, row), row);
    assert_eq!(answer["publicKey"], nodes.b_key.as_str());
    let key = hex::decode_array(text(&answer["publicKey"])).expect("64 hex digits");
    assert_eq!(
        Address(key).to_bech32(Network::Regtest),
        text(&answer["address"]),
        "the address is the same key"
    );
}

fn block(nodes: &Nodes, row: &Row) {
    let block = nodes.a.get_ok("/blocks/1");
    for field in row.tutorial_fields() {
        assert!(
            block.get(&field).is_some(),
            "the tutorial's {field} in {block}"
        );
    }
    // Every field the powchain column names is there too.
    for field in Row::code_spans(&row.powchain).into_iter().filter(|span| {
        span.chars()
            .all(|character| character.is_ascii_alphabetic())
    }) {
        assert!(block.get(field).is_some(), "{field} in {block}");
    }
    assert!(block["data"][0]["coinbase"].is_object(), "coinbase first");
    assert!(block["difficulty"].is_number());
}

fn transaction(nodes: &Nodes, row: &Row) {
    let fields = row.tutorial_fields();
    assert_eq!(fields, ["id", "input", "outputs"]);
    let ours = braced_names(&row.powchain).expect("powchain's fields");
    // A confirmed payment (the `mine-transactions` row confirmed the pool).
    let block = nodes.a.get_ok(&format!("/blocks/{}", nodes.a.height()));
    let payment = &block["data"][1];
    for field in &ours {
        assert!(payment.get(field).is_some(), "{field} in {payment}");
    }
    for field in ["id", "input"] {
        assert!(payment.get(field).is_none(), "no {field} in {payment}");
    }
    row.says(&[
        "(`txid`, `vout`) with its `signature`",
        "`{n, address, amount}`",
    ]);
    let input = &payment["inputs"][0];
    for field in ["txid", "vout", "signature"] {
        assert!(input.get(field).is_some(), "{field} in {input}");
    }
    let output = payment["outputs"][0].as_object().expect("an output");
    let mut keys: Vec<&str> = output.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["address", "amount", "n"]);
}

fn balance(_nodes: &Nodes, row: &Row) {
    row.says(&["A new wallet holds 0"]);
    let fresh = TestNode::start("tutorial-fresh-wallet");
    let balance = fresh.get_ok("/balance");
    for field in ["confirmed", "spendable", "total"] {
        assert_eq!(units(&balance[field]), 0, "{field} in {balance}");
    }
}

fn chain_message(nodes: &Nodes, row: &Row) {
    row.says(&["headers-first sync"]);
    let tip = nodes.a.get_ok("/status")["tip"].clone();
    wait_until(RELAY_DEADLINE, "B has A's chain", || {
        nodes.b.get_ok("/status")["tip"] == tip
    });
}

fn transaction_message(nodes: &Nodes, row: &Row) {
    row.says(&["`inv` announces it"]);
    let sent = nodes.a.transact(&nodes.b_address, COIN);
    let path = format!("/tx/{}", text(&sent["txid"]));
    wait_until(RELAY_DEADLINE, "B pools A's payment", || {
        nodes.b.get(&path).0 == 200
    });
}

fn clear_message(nodes: &Nodes, row: &Row) {
    row.says(&["No such message"]);
    let pool = nodes.a.get_ok("/transactions");
    assert_eq!(
        pool.as_array().map(Vec::len),
        Some(1),
        "the payment relayed"
    );
    let txid = pool[0]["txid"].clone();
    // B mines it; A's pool loses it when A connects B's block, with no message to clear it.
    let block = nodes.b.post_ok("/mine-transactions", &Value::Null);
    assert_eq!(block["data"][1]["txid"], txid);
    wait_until(RELAY_DEADLINE, "A's pool drops what B mined", || {
        nodes.a.get_ok("/transactions") == json!([])
    });
    assert_eq!(nodes.a.get_ok("/status")["tip"], block["hash"]);
}

/// The check of each row, in the table's order.
type Check = fn(&Nodes, &Row);
const CHECKS: [(&str, Check); 12] = [
    ("blocks", blocks),
    ("mine", mine),
    ("transactions", transactions),
    ("transact", transact),
    ("mine-transactions", mine_transactions),
    ("public-key", public_key),
    ("block", block),
    ("transaction", transaction),
    ("balance", balance),
    ("chain-message", chain_message),
    ("transaction-message", transaction_message),
    ("clear-message", clear_message),
];

#[test]
fn the_tutorials_requests_answer_as_docs_tutorial_md_says() {
    let rows = rows();
    let documented: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let checked: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        documented, checked,
        "docs/TUTORIAL.md's rows and this file's checks must be the same list"
    );
    let a = TestNode::start("tutorial-a");
    let peer = format!("ws://127.0.0.1:{}", a.p2p_port);
    let b = TestNode::start_with("tutorial-b", &["--peers", &peer]);
    let key = b.get_ok("/public-key");
    let nodes = Nodes {
        b_key: text(&key["publicKey"]).to_owned(),
        b_address: text(&key["address"]).to_owned(),
        a,
        b,
    };
    for (row, (_, check)) in rows.iter().zip(CHECKS) {
        check(&nodes, row);
        nodes.a.assert_serving();
    }
}

#[test]
fn the_table_reader_sees_requests_fields_and_links() {
    let row = Row {
        id: "transact".into(),
        tutorial: "`POST /transact {\"recipient\": \"<public key>\", \"amount\": 50}`: pays".into(),
        powchain: "`{txid, inputs}`".into(),
    };
    assert_eq!(
        row.request("abc"),
        (
            "POST".to_owned(),
            "/transact".to_owned(),
            Some("{\"recipient\": \"abc\", \"amount\": 50}".to_owned())
        )
    );
    assert_eq!(
        braced_names(&row.powchain),
        Some(vec!["txid".into(), "inputs".into()])
    );
    let link = "</blocks?start=0&limit=2>; rel=\"first\", </blocks?limit=2>; rel=\"last\"";
    assert_eq!(link_target(link, "first"), Some("/blocks?start=0&limit=2"));
    assert_eq!(link_target(link, "prev"), None);
    assert!(rows().len() >= 12, "the table is found");
}
