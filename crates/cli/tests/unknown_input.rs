//! One rule for input a route does not know (issue 15, bug 5; docs/API.md, "Unknown fields
//! and parameters"): every endpoint docs/API.md lists refuses a query parameter it does not
//! take, and every endpoint that reads a JSON body refuses a field it does not take, with a
//! 400 naming it and listing what it takes; every paged list takes `limit`. The endpoints
//! are read from docs/API.md's table, so a route documented later is checked too.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::{Response, TestNode, error_message};

/// `(methods, path)` of each row of docs/API.md's "## Endpoints" table; the dashboard row
/// lists several paths.
fn documented_endpoints() -> Vec<(Vec<String>, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli sits two folders below the root");
    let text = std::fs::read_to_string(root.join("docs/API.md")).expect("docs/API.md");
    let table = text
        .split_once("\n## Endpoints\n")
        .expect("docs/API.md has an Endpoints section")
        .1;
    let mut endpoints = Vec::new();
    let rows = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2);
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let methods: Vec<String> = cells[0].split(", ").map(str::to_owned).collect();
        for path in cells[1].split('`').skip(1).step_by(2) {
            endpoints.push((methods.clone(), path.to_owned()));
        }
    }
    endpoints
}

/// `path` with its `{placeholder}` filled from `fills`.
fn concrete(path: &str, fills: &[(&str, String)]) -> String {
    let mut concrete = path.to_owned();
    for (placeholder, value) in fills {
        concrete = concrete.replace(placeholder, value);
    }
    assert!(
        !concrete.contains('{'),
        "{path}: add a value for its placeholder to this test"
    );
    concrete
}

fn refused(response: &Response, what: &str, needle: &str) -> String {
    assert_eq!(response.status, 400, "{what}: answered {}", response.text());
    let body = response.json();
    let message = error_message(&body).to_owned();
    assert!(
        message.contains(needle),
        "{what}: {needle:?} not in {message:?}"
    );
    message
}

#[test]
fn every_endpoint_refuses_unknown_query_parameters_and_body_fields_by_name() {
    let node = TestNode::start("unknown-input");
    let block = node.mine("funds");
    let fills = [
        ("{hash or height}", "1".to_owned()),
        (
            "{txid}",
            block["data"][0]["txid"]
                .as_str()
                .expect("a txid")
                .to_owned(),
        ),
        ("{address}", node.address_of_wallet()),
        ("{file}", "app.js".to_owned()),
        // The query is refused before the peer is looked up: nothing is removed or unbanned.
        ("{url}", "ws%3A%2F%2F127.0.0.1%3A9".to_owned()),
        ("{peer}", "10.0.0.1".to_owned()),
    ];
    let endpoints = documented_endpoints();
    assert!(endpoints.len() >= 20, "{endpoints:?}");
    let before = (
        node.height(),
        node.get_ok("/transactions"),
        node.get_ok("/balance"),
    );
    let mut checked = 0;
    for (methods, template) in &endpoints {
        let path = concrete(template, &fills);
        for method in methods {
            let what = format!("{method} {template}?bogus=1");
            let response = node.request(method, &format!("{path}?bogus=1"), &[], b"");
            let message = refused(&response, &what, "unknown query parameter `bogus`: ");
            assert!(message.contains(" takes "), "{what}: {message}");
            if method == "POST" {
                let what = format!("POST {template} {{\"bogus\": 1}}");
                let response = node.request(
                    "POST",
                    &path,
                    &[("Content-Type", "application/json")],
                    br#"{"bogus": 1}"#,
                );
                let message = refused(&response, &what, "unknown field `bogus`, ");
                assert!(
                    message.contains("expected") || message.contains("there are no fields"),
                    "{what}: the accepted fields are listed: {message}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 22, "{checked} endpoints");
    assert_eq!(
        (
            node.height(),
            node.get_ok("/transactions"),
            node.get_ok("/balance")
        ),
        before,
        "a refused request changed the node"
    );

    // The accepted parameters are listed with the refusal.
    let response = node.request("GET", "/blocks?page=2", &[], b"");
    refused(
        &response,
        "GET /blocks?page=2",
        "unknown query parameter `page`: GET /blocks takes `start`, `limit`",
    );
    let response = node.request("GET", "/status?verbose=1", &[], b"");
    refused(
        &response,
        "GET /status?verbose=1",
        "GET /status takes no query parameters",
    );

    // Every paged list takes `limit`, with the same bounds check.
    let address = node.address_of_wallet();
    for list in [
        "/blocks".to_owned(),
        "/transactions".to_owned(),
        "/headers".to_owned(),
        format!("/address/{address}"),
    ] {
        let (status, body) = node.get(&format!("{list}?limit=1"));
        assert_eq!(status, 200, "{list}?limit=1: {body}");
        let response = node.request("GET", &format!("{list}?limit=0"), &[], b"");
        refused(
            &response,
            &format!("{list}?limit=0"),
            "limit must be between 1 and",
        );
    }

    // The bodies each endpoint takes still work: the tutorial's note, and none at all.
    let block = node.post_ok("/mine", &json!({ "data": "still works" }));
    assert_eq!(block["data"][0]["coinbase"]["data"], "still works");
    for body in [Value::Null, json!({})] {
        node.post_ok("/mine-transactions", &body);
        node.post_ok("/wallet/addresses", &body);
    }
    let response = node.request("POST", "/mine-transactions", &[], b"");
    assert_eq!(response.status, 200, "an empty body: {}", response.text());
    node.assert_serving();
}
