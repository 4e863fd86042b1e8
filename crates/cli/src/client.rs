//! The client subcommands: a small HTTP/1.1 client over a TCP stream (the node serves
//! plain HTTP on loopback; no client library is needed for that).
//!
//! ```text
//!   read (status, balance, history, address, peers, banned) ───────▶ GET, no token
//!   protected (mine, send, address --new, faucet, peers add|remove|unban)
//!       ──api_token──▶ POST or DELETE with Authorization: Bearer
//!       --token / POWCHAIN_TOKEN, else <data dir>/.cookie, the data dir being --data-dir /
//!       DATA_DIR, else ./data/<network>-<port> (the network asked from the node's /status)
//! ```
//!
//! No token found is no error: a node on loopback needs none. The token is never printed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use powchain_api::{ApiToken, cookie};
use powchain_consensus::{Amount, Network};
use serde_json::Value;

use crate::args::{ClientArgs, PeersAction, WalletAction, default_data_dir};
use crate::render;

/// Whether a request needs the node's API token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    /// Reads: open to anyone who reaches the node.
    Read,
    /// Spending, mining, new addresses: the token, when the node requires one.
    Protected,
}

/// The token to send, or why there is none (said if the node asks for one).
struct TokenLookup {
    token: Option<ApiToken>,
    missing_because: String,
}

/// The token for protected requests: `--token` / `POWCHAIN_TOKEN`, else the cookie file in
/// the node's data directory.
///
/// # Errors
/// If the node's network cannot be learnt (for the default data directory) or `--node` is
/// malformed. A missing or unreadable cookie file is not an error.
fn api_token(client: &ClientArgs) -> anyhow::Result<TokenLookup> {
    if let Some(token) = &client.token {
        return Ok(TokenLookup {
            token: Some(token.clone()),
            missing_because: String::new(),
        });
    }
    let data_dir = match &client.data_dir {
        Some(data_dir) => data_dir.clone(),
        None => {
            let status = request(client, "GET", "/status", None, Access::Read)?;
            let network: Network = status
                .get("network")
                .and_then(Value::as_str)
                .and_then(|name| name.parse().ok())
                .context("the node's /status names no network this powchain knows")?;
            default_data_dir(network, node_port(client)?)
        }
    };
    let cookie_path = cookie::cookie_path(&data_dir);
    Ok(match cookie::read_cookie_file(&cookie_path) {
        Ok(Some(token)) => TokenLookup {
            token: Some(token),
            missing_because: String::new(),
        },
        Ok(None) => TokenLookup {
            token: None,
            missing_because: format!(
                "no API token was sent: {} does not exist",
                cookie_path.display()
            ),
        },
        Err(error) => TokenLookup {
            token: None,
            missing_because: format!("no API token was sent: {error}"),
        },
    })
}

/// The port of `--node` (80 if it names none).
fn node_port(client: &ClientArgs) -> anyhow::Result<u16> {
    let authority = node_authority(client)?;
    let port = match authority.rsplit_once(':') {
        // `[::1]` alone: the colon is inside the brackets.
        Some((_, port)) if !port.ends_with(']') => port,
        _ => return Ok(80),
    };
    port.parse()
        .with_context(|| format!("--node {:?} has a bad port", client.node))
}

/// `host:port` of `--node`.
fn node_authority(client: &ClientArgs) -> anyhow::Result<&str> {
    let base = client
        .node
        .strip_prefix("http://")
        .with_context(|| format!("--node {:?} must start with http://", client.node))?
        .trim_end_matches('/');
    Ok(base.split('/').next().unwrap_or(base))
}

/// Sends one request and returns the JSON answer, or the node's `{"error"}` as an error.
fn request(
    client: &ClientArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
    access: Access,
) -> anyhow::Result<Value> {
    let lookup = match access {
        Access::Read => None,
        Access::Protected => Some(api_token(client)?),
    };
    let authorization = lookup
        .as_ref()
        .and_then(|lookup| lookup.token.as_ref())
        .map(|token| format!("Authorization: Bearer {}\r\n", token.as_str()))
        .unwrap_or_default();
    let host = node_authority(client)?;
    let mut stream = TcpStream::connect(host)
        .with_context(|| format!("cannot reach the node at {}", client.node))?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("malformed HTTP status line")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let json: Value = serde_json::from_str(&body)
        .with_context(|| format!("the node answered {status} with non-JSON: {body}"))?;
    if status >= 400 {
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        if let Some(lookup) = lookup.filter(|lookup| status == 401 && lookup.token.is_none()) {
            bail!(
                "the node refused ({status}): {message}\n{}; pass the node's --data-dir, or \
                 --token (POWCHAIN_TOKEN)",
                lookup.missing_because
            );
        }
        bail!("the node refused ({status}): {message}");
    }
    Ok(json)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `text` as one path segment: every byte but the unreserved ones (RFC 3986) written as
/// `%XX`, so a `ws://host:port` address or `localhost port 5002` stays one segment.
fn path_segment(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn text_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("?")
}

fn units_field(value: &Value, field: &str) -> Option<u64> {
    value.get(field).and_then(Value::as_u64)
}

/// `powchain status`: a summary for a person (tip, peers, pool, mining, the wallet's
/// balance, sync), or the raw `GET /status` answer with `--json`.
pub fn status(client: &ClientArgs, json: bool) -> anyhow::Result<()> {
    let status = request(client, "GET", "/status", None, Access::Read)?;
    if json {
        return print(&status);
    }
    let peers = request(client, "GET", "/peers", None, Access::Read)?;
    let balance = request(client, "GET", "/balance", None, Access::Read)?;
    print!("{}", status_summary(&status, &peers, &balance));
    Ok(())
}

/// The lines of `powchain status`, from the node's `/status`, `/peers` and `/balance`.
fn status_summary(status: &Value, peers: &Value, balance: &Value) -> String {
    let number = |value: &Value, field: &str| value.get(field).and_then(Value::as_u64);
    let now_ms = number(status, "time").unwrap_or(0);
    let tip = format!(
        "{} ({})",
        render::short(text_field(status, "tip")),
        number(status, "tipTime").map_or_else(|| "?".to_owned(), |time| render::age(time, now_ms))
    );
    let directions: Vec<&str> = peers
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .map(|peer| text_field(peer, "direction"))
                .collect()
        })
        .unwrap_or_default();
    let inbound = directions.iter().filter(|side| **side == "inbound").count();
    let outbound = directions
        .iter()
        .filter(|side| **side == "outbound")
        .count();
    let pool = status.get("mempool").cloned().unwrap_or(Value::Null);
    let mining = if status.get("mining").and_then(Value::as_bool) == Some(true) {
        format!(
            "yes, {} threads, {:.0} hashes/s",
            number(status, "minerThreads").unwrap_or(0),
            status
                .get("hashrate")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        )
    } else {
        "no".to_owned()
    };
    let sync = status.get("sync").cloned().unwrap_or(Value::Null);
    let best = number(&sync, "bestHeaderHeight").unwrap_or(0);
    let sync = if sync.get("syncing").and_then(Value::as_bool) == Some(true) {
        format!(
            "syncing: {:.0}% of {best} blocks",
            sync.get("progress").and_then(Value::as_f64).unwrap_or(0.0) * 100.0
        )
    } else {
        "synced".to_owned()
    };
    render::fields(&[
        ("network", text_field(status, "network").to_owned()),
        (
            "height",
            number(status, "height").map_or_else(|| "?".to_owned(), |height| height.to_string()),
        ),
        ("tip", tip),
        ("peers", format!("{inbound} in, {outbound} out")),
        (
            "pool",
            format!(
                "{} transactions, {} bytes",
                number(&pool, "transactions").unwrap_or(0),
                number(&pool, "bytes").unwrap_or(0)
            ),
        ),
        ("mining", mining),
        (
            "balance",
            format!(
                "{} coins ({} spendable)",
                render::coins(units_field(balance, "total")),
                render::coins(units_field(balance, "spendable"))
            ),
        ),
        ("sync", sync),
    ])
}

/// `powchain peers ...`.
pub fn peers(client: &ClientArgs, action: Option<PeersAction>, json: bool) -> anyhow::Result<()> {
    match action {
        None => {
            let peers = request(client, "GET", "/peers", None, Access::Read)?;
            if json {
                return print(&peers);
            }
            let list = peers.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no peers connected");
                return Ok(());
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64);
            let mut table =
                render::Table::new(&["URL", "DIRECTION", "HEIGHT", "PING", "CONNECTED"]);
            for peer in &list {
                table.push(vec![
                    text_field(peer, "url").to_owned(),
                    text_field(peer, "direction").to_owned(),
                    units_field(peer, "bestHeight").map_or_else(|| "?".into(), |h| h.to_string()),
                    units_field(peer, "pingMs").map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
                    units_field(peer, "connectedSince")
                        .map_or_else(|| "?".into(), |since| render::age(since, now_ms)),
                ]);
            }
            print!("{}", table.render());
        }
        Some(PeersAction::Add { url }) => {
            let body = serde_json::json!({ "url": url });
            let answer = request(client, "POST", "/peers", Some(&body), Access::Protected)?;
            if json {
                return print(&answer);
            }
            println!("connecting to {}", text_field(&answer, "url"));
        }
        Some(PeersAction::Remove { url }) => {
            let path = format!("/peers/{}", path_segment(url.trim()));
            let answer = request(client, "DELETE", &path, None, Access::Protected)?;
            if json {
                return print(&answer);
            }
            println!(
                "removed {} ({} connections closed); it is not dialled again until `powchain \
                 peers add` names it",
                text_field(&answer, "url"),
                units_field(&answer, "disconnected").unwrap_or(0)
            );
        }
        Some(PeersAction::Banned) => {
            let bans = request(client, "GET", "/peers/banned", None, Access::Read)?;
            if json {
                return print(&bans);
            }
            let list = bans.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no bans in force");
                return Ok(());
            }
            let mut table = render::Table::new(&["PEER", "RULE", "UNTIL (UTC)"]);
            for ban in &list {
                table.push(vec![
                    text_field(ban, "peer").to_owned(),
                    text_field(ban, "rule").to_owned(),
                    units_field(ban, "until").map_or_else(|| "?".into(), render::date),
                ]);
            }
            print!("{}", table.render());
        }
        Some(PeersAction::Unban { address }) => {
            let path = format!("/peers/banned/{}", path_segment(address.trim()));
            let answer = request(client, "DELETE", &path, None, Access::Protected)?;
            if json {
                return print(&answer);
            }
            println!("lifted the ban on {}", text_field(&answer, "peer"));
        }
    }
    Ok(())
}

/// `powchain faucet ADDRESS COINS`.
pub fn faucet(client: &ClientArgs, address: &str, coins: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "address": address, "coins": coins });
    let answer = request(client, "POST", "/faucet", Some(&body), Access::Protected)?;
    println!(
        "sent {} coins to {} in transaction {}",
        text_field(&answer, "coins"),
        text_field(&answer, "address"),
        text_field(&answer, "txid")
    );
    Ok(())
}

/// The lines of `powchain wallet history`, from `GET /wallet/history`.
fn history_table(history: &Value) -> String {
    let list = history.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no wallet transactions yet\n".to_owned();
    }
    let mut table = render::Table::new(&["TXID", "WHERE", "AMOUNT (COINS)", "TIME (UTC)"]);
    for entry in &list {
        let place = if text_field(entry, "status") == "pool" {
            "pool".to_owned()
        } else {
            format!(
                "height {} ({} conf.)",
                units_field(entry, "height").unwrap_or(0),
                units_field(entry, "confirmations").unwrap_or(0)
            )
        };
        let amount = entry
            .get("amount")
            .and_then(Value::as_i64)
            .map_or_else(|| "?".to_owned(), render::signed_coins);
        let amount = if entry.get("coinbase").and_then(Value::as_bool) == Some(true) {
            format!("{amount} (mined)")
        } else {
            amount
        };
        table.push(vec![
            render::short(text_field(entry, "txid")),
            place,
            amount,
            units_field(entry, "time").map_or_else(|| "?".into(), render::date),
        ]);
    }
    table.render()
}

/// `powchain mine`.
pub fn mine(client: &ClientArgs, data: Option<String>) -> anyhow::Result<()> {
    let body = serde_json::json!({ "data": data });
    let block = request(client, "POST", "/mine", Some(&body), Access::Protected)?;
    println!(
        "mined block {} at height {}",
        block.get("hash").and_then(Value::as_str).unwrap_or("?"),
        block.get("height").and_then(Value::as_u64).unwrap_or(0)
    );
    Ok(())
}

/// `powchain wallet ...`.
pub fn wallet(client: &ClientArgs, action: WalletAction) -> anyhow::Result<()> {
    match action {
        WalletAction::Address { new: false } => {
            let answer = request(client, "GET", "/public-key", None, Access::Read)?;
            println!(
                "{}",
                answer.get("address").and_then(Value::as_str).unwrap_or("?")
            );
        }
        WalletAction::Address { new: true } => {
            let answer = request(client, "POST", "/wallet/addresses", None, Access::Protected)?;
            println!(
                "{}",
                answer.get("address").and_then(Value::as_str).unwrap_or("?")
            );
        }
        WalletAction::Balance { json } => {
            let answer = request(client, "GET", "/balance", None, Access::Read)?;
            if json {
                return print(&answer);
            }
            let coins = |field: &str| render::coins(units_field(&answer, field));
            println!(
                "address      {}",
                answer.get("address").and_then(Value::as_str).unwrap_or("?")
            );
            println!(
                "confirmed    {} coins ({} immature)",
                coins("confirmed"),
                coins("immature")
            );
            println!(
                "pending      +{} / -{} coins ({} of it from others)",
                coins("unconfirmedIncoming"),
                coins("unconfirmedOutgoing"),
                coins("unconfirmedFromOthers")
            );
            println!("spendable    {} coins", coins("spendable"));
            println!("total        {} coins", coins("total"));
        }
        WalletAction::History { limit, json } => {
            let path = format!("/wallet/history?limit={limit}");
            let answer = request(client, "GET", &path, None, Access::Read)?;
            if json {
                return print(&answer);
            }
            print!("{}", history_table(&answer));
        }
        WalletAction::Send {
            recipient,
            amount,
            fee_rate,
        } => {
            let amount: Amount = amount
                .parse()
                .context("amount must be in coins, like 1.5")?;
            let mut body =
                serde_json::json!({ "recipient": recipient, "amount": amount.to_units() });
            if let Some(rate) = fee_rate {
                body["feeRate"] = rate.into();
            }
            let answer = request(client, "POST", "/transact", Some(&body), Access::Protected)?;
            println!(
                "sent {amount} coins in transaction {} (fee {} units)",
                answer.get("txid").and_then(Value::as_str).unwrap_or("?"),
                answer.get("fee").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    Ok(())
}
