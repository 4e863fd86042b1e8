//! The client subcommands: a small HTTP/1.1 client over a TCP stream (the node serves
//! plain HTTP on loopback; no client library is needed for that).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use powchain_consensus::Amount;
use serde_json::Value;

use crate::args::{ClientArgs, WalletAction};

/// Sends one request and returns the JSON answer, or the node's `{"error"}` as an error.
fn request(
    client: &ClientArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let base = client
        .node
        .strip_prefix("http://")
        .with_context(|| format!("--node {:?} must start with http://", client.node))?
        .trim_end_matches('/');
    let host = base.split('/').next().unwrap_or(base);
    let mut stream = TcpStream::connect(host)
        .with_context(|| format!("cannot reach the node at {}", client.node))?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
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
    print(&request(client, "GET", "/status", None)?)
}

/// `powchain mine`.
pub fn mine(client: &ClientArgs, data: Option<String>) -> anyhow::Result<()> {
    let body = serde_json::json!({ "data": data });
    let block = request(client, "POST", "/mine", Some(&body))?;
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
            let answer = request(client, "GET", "/public-key", None)?;
            println!(
                "{}",
                answer.get("address").and_then(Value::as_str).unwrap_or("?")
            );
        }
        WalletAction::Address { new: true } => {
            let answer = request(client, "POST", "/wallet/addresses", None)?;
            println!(
                "{}",
                answer.get("address").and_then(Value::as_str).unwrap_or("?")
            );
        }
        WalletAction::Balance => {
            let answer = request(client, "GET", "/balance", None)?;
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
            let answer = request(client, "POST", "/transact", Some(&body))?;
            println!(
                "sent {amount} coins in transaction {} (fee {} units)",
                answer.get("txid").and_then(Value::as_str).unwrap_or("?"),
                answer.get("fee").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    Ok(())
}
