//! The client subcommands: a small HTTP/1.1 client over a TCP stream (the node serves
//! plain HTTP on loopback; no client library is needed for that).
//!
//! ```text
//!   read (status, balance, address) ──────────────────────────────▶ GET, no token
//!   protected (mine, send, address --new) ──api_token──▶ POST with Authorization: Bearer
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

use crate::args::{ClientArgs, WalletAction, default_data_dir};

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

/// `powchain status`.
pub fn status(client: &ClientArgs) -> anyhow::Result<()> {
    print(&request(client, "GET", "/status", None, Access::Read)?)
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
        WalletAction::Balance => {
            let answer = request(client, "GET", "/balance", None, Access::Read)?;
            let coins = |field: &str| {
                answer
                    .get(field)
                    .and_then(Value::as_u64)
                    .and_then(|units| Amount::from_units(units).ok())
                    .map_or_else(|| "?".to_owned(), |amount| amount.to_string())
            };
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
                "pending      +{} / -{} coins",
                coins("unconfirmedIncoming"),
                coins("unconfirmedOutgoing")
            );
            println!("spendable    {} coins", coins("spendable"));
            println!("total        {} coins", coins("total"));
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
