//! Access control and secrets over the real binary: the API token when the node is reachable
//! off loopback (or told to require it), cross-site browser requests on loopback, the client
//! commands reading the cookie file, encrypted wallets across restarts, and no secret in the
//! logs even at trace level.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use powchain_consensus::Network;
use powchain_wallet::{Passphrase, Wallet};
use serde_json::{Value, json};
use support::{COIN, TestNode, error_message, test_key_address};

/// Extra request headers, names and values.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// Every protected endpoint, with a body it would accept.
fn protected_requests() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("POST", "/mine", json!({"data": "guarded"})),
        ("GET", "/mine-transactions", Value::Null),
        ("POST", "/mine-transactions", Value::Null),
        (
            "POST",
            "/transact",
            json!({"recipient": test_key_address(3), "amount": COIN}),
        ),
        ("POST", "/wallet/addresses", Value::Null),
        ("POST", "/peers", json!({"url": "ws://127.0.0.1:9"})),
    ]
}

fn send_json(
    node: &TestNode,
    method: &str,
    path: &str,
    body: &Value,
    extra_headers: &[(&str, &str)],
) -> support::Response {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra_headers);
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    node.request(method, path, &headers, &bytes)
}

/// A node that requires the token: refuses every protected request without it or with a
/// wrong one (401, naming the cookie file, still serving), accepts them with it, and keeps
/// reads open.
fn check_token_is_required(node: &TestNode) {
    let token = node.cookie_token();
    let wrong_token = "0".repeat(64);
    let wrong = format!("Bearer {wrong_token}");
    let basic = format!("Basic {token}");
    let height_before = node.height();
    for (method, path, body) in protected_requests() {
        for (case, headers) in [
            ("no token", vec![]),
            ("wrong token", vec![("Authorization", wrong.as_str())]),
            (
                "not a bearer token",
                vec![("Authorization", basic.as_str())],
            ),
        ] {
            let response = send_json(node, method, path, &body, &headers);
            assert_eq!(
                response.status,
                401,
                "{method} {path} with {case}: {}",
                response.text()
            );
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"powchain\"")
            );
            let answer = response.json();
            let message = error_message(&answer);
            assert!(
                message.contains(".cookie"),
                "{method} {path} with {case}: the message names the cookie file: {message}"
            );
            assert!(
                !message.contains(&node.data_dir().display().to_string()),
                "{method} {path} with {case}: the 401 tells the client the data directory: {message}"
            );
            assert!(!message.contains(&token), "the refusal leaks the token");
            node.assert_serving();
        }
    }
    assert_eq!(node.height(), height_before, "nothing was mined");
    assert_eq!(node.get_ok("/transactions"), json!([]), "nothing was sent");

    // Reads stay open, and so does submitting signed transactions.
    for path in [
        "/status",
        "/blocks",
        "/blocks/0",
        "/balance",
        "/public-key",
        "/transactions",
        "/peers",
    ] {
        node.get_ok(path);
    }
    assert_eq!(node.request("GET", "/metrics", &[], b"").status, 200);
    assert_eq!(node.request("GET", "/", &[], b"").status, 200);
    let (status, answer) = node.post("/tx", &json!({"hex": "00"}));
    assert_eq!(status, 400, "POST /tx reaches its handler: {answer}");

    // With the token, each one works.
    let bearer = format!("Bearer {token}");
    for (method, path, body) in protected_requests() {
        let response = send_json(node, method, path, &body, &[("Authorization", &bearer)]);
        assert_eq!(
            response.status,
            200,
            "{method} {path} with the token: {}",
            response.text()
        );
    }
    assert_eq!(
        node.height(),
        height_before + 3,
        "/mine and both /mine-transactions mined"
    );
    let (status, answer) = node.post_with_token("/mine-transactions", &Value::Null, &token);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["transactionCount"], 2,
        "the coinbase and the payment made with the token: {answer}"
    );
}

#[test]
fn node_bound_off_loopback_needs_the_token_for_spending_mining_and_peers() {
    let node = TestNode::start_with("exposed", &["--http-bind", "0.0.0.0"]);
    let cookie_path = node.data_dir().join(".cookie");
    let mode = fs::metadata(&cookie_path)
        .expect("the cookie file exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the cookie file is owner-only");
    let token = node.cookie_token();
    assert_eq!(token.len(), 64);
    assert!(
        token.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{token}"
    );
    check_token_is_required(&node);
}

#[test]
fn require_token_on_loopback_behaves_the_same() {
    let node = TestNode::start_with("require-token", &["--require-token"]);
    check_token_is_required(&node);
    // And a token takes nothing from the loopback node's refusal of other sites' pages.
    check_other_sites_get_nothing(&node);
}

#[test]
fn the_token_changes_at_each_start_and_its_cookie_goes_at_a_clean_stop() {
    let mut node = TestNode::start_with("cookie", &["--require-token"]);
    let first = node.cookie_token();
    node.stop();
    assert!(
        !node.data_dir().join(".cookie").exists(),
        "a clean stop removes the cookie file"
    );
    node.restart();
    let second = node.cookie_token();
    assert_ne!(first, second, "a new token at every start");
    let (status, _) = node.post_with_token("/mine", &json!({}), &first);
    assert_eq!(status, 401, "the old token no longer works");
    let (status, answer) = node.post_with_token("/mine", &json!({}), &second);
    assert_eq!(status, 200, "{answer}");

    // After a crash the stale cookie stays, and the next start replaces it.
    node.kill();
    assert_eq!(node.cookie_token(), second);
    node.restart();
    assert_ne!(node.cookie_token(), second);
}

#[test]
fn loopback_needs_no_token_but_refuses_browsers_sent_by_other_sites() {
    let node = TestNode::start("loopback");
    // The tutorial's curl lines: no token, no browser headers.
    node.mine("no token needed");
    let own_origin = format!("http://{}", node.address);
    // The node's own dashboard: same origin.
    let response = send_json(
        &node,
        "POST",
        "/mine",
        &json!({}),
        &[("Origin", &own_origin), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(response.status, 200, "{}", response.text());

    let rebound_host = format!("evil.example:{}", node.address.port());
    let rebound_origin = format!("http://{rebound_host}");
    let height = node.height();
    let cross_site: Vec<(&str, &str, Headers)> = vec![
        // A form or fetch of another site.
        (
            "POST",
            "/transact",
            vec![("Origin", "https://evil.example")],
        ),
        ("POST", "/mine", vec![("Origin", "null")]),
        // An <img src> of another site: no Origin, but fetch metadata.
        (
            "GET",
            "/mine-transactions",
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
        // DNS rebinding: the attacker's name now points at 127.0.0.1.
        (
            "POST",
            "/wallet/addresses",
            vec![("Host", &rebound_host), ("Origin", &rebound_origin)],
        ),
        ("GET", "/mine-transactions", vec![("Host", &rebound_host)]),
    ];
    for (method, path, headers) in cross_site {
        let body = json!({"recipient": test_key_address(3), "amount": COIN});
        let response = send_json(&node, method, path, &body, &headers);
        assert_eq!(
            response.status,
            403,
            "{method} {path} {headers:?}: {}",
            response.text()
        );
        let message = error_message(&response.json()).to_owned();
        assert!(message.contains("--require-token"), "{message}");
        node.assert_serving();
    }
    assert_eq!(node.height(), height, "nothing was mined");
    assert_eq!(node.get_ok("/transactions"), json!([]), "nothing was sent");
    check_other_sites_get_nothing(&node);
}

/// Another site's page may neither read, submit nor hold a stream of a node on loopback,
/// token or not: a rebound name would read the wallet as the dashboard does, and any page
/// could take the streams' places. A link from another site is followed.
fn check_other_sites_get_nothing(node: &TestNode) {
    let rebound_host = format!("evil.example:{}", node.address.port());
    let websocket = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let refused_reads: Vec<(&str, &str, Headers)> = vec![
        ("GET", "/balance", vec![("Host", &rebound_host)]),
        (
            "GET",
            "/wallet/history",
            vec![("Host", &rebound_host), ("Sec-Fetch-Site", "same-origin")],
        ),
        // Even as a link: the page is then served under the rebound name.
        (
            "GET",
            "/",
            vec![("Host", &rebound_host), ("Sec-Fetch-Mode", "navigate")],
        ),
        ("GET", "/status", vec![("Origin", "https://evil.example")]),
        (
            "GET",
            "/events",
            vec![
                ("Sec-Fetch-Site", "cross-site"),
                ("Sec-Fetch-Mode", "no-cors"),
            ],
        ),
        ("POST", "/tx", vec![("Origin", "https://evil.example")]),
        (
            "GET",
            "/txs/ws",
            [("Origin", "https://evil.example")]
                .into_iter()
                .chain(websocket)
                .collect(),
        ),
    ];
    for (method, path, headers) in refused_reads {
        let response = node.request(method, path, &headers, b"{}");
        assert_eq!(
            response.status,
            403,
            "{method} {path} {headers:?}: {}",
            response.text()
        );
    }
    // A link from another site to the dashboard is followed, and same-origin reads and
    // clients that are not browsers are served.
    let followed = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
    ];
    assert_eq!(node.request("GET", "/", &followed, b"").status, 200);
    assert_eq!(node.request("GET", "/status", &followed, b"").status, 200);
    let dashboard = [
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Mode", "cors"),
    ];
    assert_eq!(node.request("GET", "/balance", &dashboard, b"").status, 200);
    assert_eq!(node.request("GET", "/balance", &[], b"").status, 200);
    // Another site's frame is no link: it would hold the answer open on that site's page.
    let framed = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Dest", "iframe"),
    ];
    assert_eq!(node.request("GET", "/events", &framed, b"").status, 403);
    // `curl 0.0.0.0:3001` reaches this machine too.
    let unspecified = format!("0.0.0.0:{}", node.address.port());
    let answer = node.request("GET", "/balance", &[("Host", &unspecified)], b"");
    assert_eq!(answer.status, 200);
}

/// Runs the binary as a client in `directory`, with only `environment` of the client's
/// variables set.
fn run_client(arguments: &[&str], directory: &Path, environment: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args(arguments)
        .current_dir(directory)
        .env_remove("DATA_DIR")
        .env_remove("POWCHAIN_TOKEN")
        .env_remove("POWCHAIN_NODE")
        .env_remove("NETWORK")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the powchain client")
}

fn text_of(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn client_commands_read_the_cookie_of_a_protected_node() {
    let node = TestNode::start_with("client", &["--http-bind", "0.0.0.0"]);
    let elsewhere = tempfile::tempdir().expect("a working directory without data/");
    let data_dir = node.data_dir().to_str().expect("a UTF-8 path").to_owned();
    let url = node.url.clone();

    let mined = run_client(
        &[
            "mine",
            "--node",
            &url,
            "--data-dir",
            &data_dir,
            "--data",
            "cli",
        ],
        elsewhere.path(),
        &[],
    );
    assert!(mined.status.success(), "{}", text_of(&mined));
    assert!(
        String::from_utf8_lossy(&mined.stdout).contains("mined block"),
        "{}",
        text_of(&mined)
    );
    assert_eq!(node.height(), 1);

    // DATA_DIR works as the node's own variable does.
    let address = run_client(
        &["wallet", "--node", &url, "address", "--new"],
        elsewhere.path(),
        &[("DATA_DIR", &data_dir)],
    );
    assert!(address.status.success(), "{}", text_of(&address));

    // A payment, token from --data-dir.
    let recipient = test_key_address(4);
    let sent = run_client(
        &[
            "wallet",
            "--node",
            &url,
            "--data-dir",
            &data_dir,
            "send",
            &recipient,
            "1.5",
        ],
        elsewhere.path(),
        &[],
    );
    assert!(sent.status.success(), "{}", text_of(&sent));
    assert_eq!(
        node.get_ok("/transactions").as_array().map(Vec::len),
        Some(1)
    );

    // Without the cookie: refused, with the node's message and a hint.
    let refused = run_client(&["mine", "--node", &url], elsewhere.path(), &[]);
    assert!(!refused.status.success(), "{}", text_of(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("--data-dir") && stderr.contains(".cookie"),
        "{}",
        text_of(&refused)
    );

    // The token given directly, by flag or variable.
    let token = node.cookie_token();
    let by_flag = run_client(
        &["mine", "--node", &url, "--token", &token],
        elsewhere.path(),
        &[],
    );
    assert!(by_flag.status.success(), "{}", text_of(&by_flag));
    let by_variable = run_client(
        &["mine", "--node", &url],
        elsewhere.path(),
        &[("POWCHAIN_TOKEN", &token)],
    );
    assert!(by_variable.status.success(), "{}", text_of(&by_variable));
    for output in [&mined, &sent, &by_flag, &by_variable] {
        assert!(
            !text_of(output).contains(&token),
            "the client printed the token"
        );
    }

    // Run from the folder the node would have used by default: ./data/regtest-<port>.
    let default_folder = tempfile::tempdir().expect("a working directory");
    let default_data_dir = default_folder
        .path()
        .join("data")
        .join(format!("regtest-{}", node.address.port()));
    fs::create_dir_all(&default_data_dir).expect("create data/regtest-PORT");
    fs::copy(
        node.data_dir().join(".cookie"),
        default_data_dir.join(".cookie"),
    )
    .expect("copy the cookie");
    let by_default = run_client(&["mine", "--node", &url], default_folder.path(), &[]);
    assert!(by_default.status.success(), "{}", text_of(&by_default));

    // Reads need nothing.
    let status = run_client(&["status", "--node", &url], elsewhere.path(), &[]);
    assert!(status.status.success(), "{}", text_of(&status));
    assert_eq!(node.height(), 4);
}

/// A folder with passphrase files.
struct Passphrases {
    directory: tempfile::TempDir,
}

impl Passphrases {
    fn new() -> Passphrases {
        Passphrases {
            directory: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes `content` to a file called `name` (mode 0600) and returns its path.
    fn file(&self, name: &str, content: &str) -> String {
        let path = self.directory.path().join(name);
        fs::write(&path, content).expect("write a passphrase file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
        path.to_str().expect("a UTF-8 path").to_owned()
    }
}

fn first_line_of(path: &Path) -> String {
    fs::read_to_string(path)
        .expect("the key file exists")
        .lines()
        .next()
        .expect("a first line")
        .to_owned()
}

#[test]
fn encrypted_wallet_restarts_with_its_passphrase_and_refuses_a_wrong_one() {
    let passphrases = Passphrases::new();
    let right = passphrases.file("right", "correct horse battery staple\n");
    let wrong = passphrases.file("wrong", "correct horse battery stapler\n");
    let empty = passphrases.file("empty", "\n");
    let mut node = TestNode::start_with("encrypted", &["--wallet-passphrase-file", &right]);
    let key_file = node.data_dir().join("wallet.keys");
    assert_eq!(
        first_line_of(&key_file),
        "powchain-wallet v2 regtest encrypted"
    );
    let address = node.address_of_wallet();
    node.mine("encrypted");
    let second = node.post_ok("/wallet/addresses", &Value::Null)["address"]
        .as_str()
        .expect("an address")
        .to_owned();
    assert_eq!(
        first_line_of(&key_file),
        "powchain-wallet v2 regtest encrypted"
    );
    let balance = node.get_ok("/balance");

    node.stop();
    node.restart();
    assert_eq!(node.address_of_wallet(), address);
    assert_eq!(node.get_ok("/balance"), balance);
    assert!(
        node.get_ok("/balance")["addresses"]
            .as_array()
            .expect("addresses")
            .contains(&json!(second))
    );
    node.stop();
    let before = fs::read(&key_file).expect("the key file");

    for (case, arguments, expected) in [
        (
            "wrong passphrase",
            vec!["--wallet-passphrase-file", wrong.as_str()],
            "the passphrase is wrong",
        ),
        ("no passphrase", vec![], "--wallet-passphrase-file"),
        (
            "empty passphrase",
            vec!["--wallet-passphrase-file", empty.as_str()],
            "is empty",
        ),
        (
            "missing passphrase file",
            vec!["--wallet-passphrase-file", "/nonexistent/passphrase"],
            "cannot read the wallet passphrase file /nonexistent/passphrase",
        ),
    ] {
        node.set_extra_args(&arguments);
        let (exit, printed) = node.restart_expecting_failure();
        assert!(!exit.success(), "{case}: {exit}");
        assert!(printed.contains(expected), "{case}: {printed}");
        assert!(
            !printed.contains("correct horse"),
            "{case}: a passphrase was printed"
        );
        assert_eq!(
            fs::read(&key_file).expect("the key file"),
            before,
            "{case}: the key file is untouched"
        );
    }

    node.set_extra_args(&["--wallet-passphrase-file", &right]);
    node.restart();
    assert_eq!(node.address_of_wallet(), address);
}

#[test]
fn plaintext_wallet_is_encrypted_in_place_at_start() {
    let passphrases = Passphrases::new();
    let passphrase_file = passphrases.file("passphrase", "upgrade me");
    let mut node = TestNode::start("upgrade");
    let key_file = node.data_dir().join("wallet.keys");
    assert_eq!(first_line_of(&key_file), "powchain-wallet v1 regtest");
    let address = node.address_of_wallet();
    node.mine("before encryption");
    let balance = node.get_ok("/balance");
    node.stop();

    node.set_extra_args(&["--wallet-passphrase-file", &passphrase_file]);
    node.restart();
    assert_eq!(
        first_line_of(&key_file),
        "powchain-wallet v2 regtest encrypted"
    );
    let mode = fs::metadata(&key_file)
        .expect("the key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(node.address_of_wallet(), address);
    assert_eq!(node.get_ok("/balance"), balance);
    assert!(!node.data_dir().join("wallet.keys.tmp").exists());
}

#[test]
fn no_secret_reaches_the_logs_even_at_trace_level() {
    let passphrase = "powchain-leak-test-passphrase-5f0c";
    let passphrases = Passphrases::new();
    let passphrase_file = passphrases.file("passphrase", passphrase);
    let mut node = TestNode::start_with_env(
        "no-leak",
        &[
            "--require-token",
            "--wallet-passphrase-file",
            &passphrase_file,
        ],
        &[("POWCHAIN_LOG", "trace")],
    );
    let token = node.cookie_token();
    let (status, answer) = node.post_with_token("/mine", &json!({"data": "leak test"}), &token);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = node.post_with_token("/wallet/addresses", &Value::Null, &token);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = node.post_with_token(
        "/transact",
        &json!({"recipient": test_key_address(5), "amount": 2 * COIN}),
        &token,
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = node.post_with_token("/mine-transactions", &Value::Null, &token);
    assert_eq!(status, 200, "{answer}");
    // Refused and read requests carrying the token, too.
    let (status, _) = node.post_with_token("/mine", &json!({"data": 1}), &"1".repeat(64));
    assert_eq!(status, 401);
    let bearer = format!("Bearer {token}");
    let response = node.request("GET", "/balance", &[("Authorization", &bearer)], b"");
    assert_eq!(response.status, 200);
    // And a client command that reads the cookie.
    let client = run_client(
        &[
            "mine",
            "--node",
            &node.url,
            "--data-dir",
            node.data_dir().to_str().expect("a UTF-8 path"),
        ],
        node.data_dir(),
        &[("POWCHAIN_LOG", "trace")],
    );
    assert!(client.status.success(), "{}", text_of(&client));
    // A second run opens (decrypts) the wallet, with a new token.
    node.stop();
    node.restart();
    let second_token = node.cookie_token();
    let (status, answer) = node.post_with_token("/mine", &json!({}), &second_token);
    assert_eq!(status, 200, "{answer}");
    node.stop();

    let passphrase_value = Passphrase::from_bytes(passphrase.as_bytes()).expect("not empty");
    let wallet = Wallet::open_or_create_with_passphrase(
        &node.data_dir().join("wallet.keys"),
        Network::Regtest,
        &passphrase_value,
    )
    .expect("the test opens the wallet with its passphrase");
    let secret_keys = wallet.secret_keys_hex_for_tests();
    assert_eq!(secret_keys.len(), 2, "the default key and the new address");

    let logged = format!("{}\n{}", node.output(), text_of(&client));
    // The node's most detailed lines were on (else this test would prove nothing): the
    // payment's and the refusal's debug lines, and the wallet's.
    for expected in [
        "built a payment",
        "refused a protected request",
        "created a new wallet",
        "opened wallet",
    ] {
        assert!(logged.contains(expected), "{expected:?} is not in {logged}");
    }
    let mut secrets: Vec<(String, String)> = vec![
        ("the passphrase".to_owned(), passphrase.to_owned()),
        ("the API token".to_owned(), token.clone()),
        ("half the API token".to_owned(), token[..32].to_owned()),
        ("the second API token".to_owned(), second_token.clone()),
    ];
    for (index, secret_hex) in secret_keys.iter().enumerate() {
        secrets.push((format!("secret key {index}"), secret_hex.clone()));
        secrets.push((
            format!("secret key {index}, first 16 hex digits"),
            secret_hex[..16].to_owned(),
        ));
        let bytes = powchain_consensus::hex::decode(secret_hex).expect("hex");
        // As `Debug` would print a byte array.
        let as_debug = format!("{:?}", &bytes[..6]);
        secrets.push((
            format!("secret key {index} as Debug bytes"),
            as_debug.trim_end_matches(']').to_owned(),
        ));
    }
    for (what, secret) in secrets {
        assert!(!logged.contains(&secret), "{what} appears in the output");
    }
}
