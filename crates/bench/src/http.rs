//! A minimal HTTP/1.1 client over one kept-alive `TcpStream`: enough for a node's JSON
//! API on loopback, without a client library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use powchain_consensus::encode::Encode;
use powchain_consensus::{Transaction, hex};
use serde_json::Value;

use crate::error::{BenchError, failed};

/// One connection to a node's HTTP API.
pub(crate) struct HttpClient {
    address: SocketAddr,
    reader: BufReader<TcpStream>,
    /// Sent as `Authorization: Bearer` when the node wrote one (its `.cookie` file).
    token: Option<String>,
}

impl HttpClient {
    /// Connects to `address`, authorising requests with `token` if given.
    pub(crate) fn connect(
        address: SocketAddr,
        token: Option<String>,
    ) -> Result<HttpClient, BenchError> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(HttpClient {
            address,
            reader: BufReader::new(stream),
            token,
        })
    }

    /// Sends a request and returns the status and the JSON body.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), BenchError> {
        let payload = body.unwrap_or("");
        let authorization = self
            .token
            .as_ref()
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             {authorization}Content-Length: {}\r\n\r\n{payload}",
            self.address,
            payload.len()
        );
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| failed(format!("malformed HTTP status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    length = value.trim().parse::<usize>().ok();
                } else if name == "transfer-encoding"
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut bytes = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| failed(format!("malformed chunk size {line:?}")))?;
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..size]);
            }
        } else {
            let length = length.ok_or_else(|| failed("an HTTP answer without a length"))?;
            bytes.resize(length, 0);
            self.reader.read_exact(&mut bytes)?;
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|error| {
                failed(format!(
                    "{method} {path} answered {status} with non-JSON ({error}): {}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?
        };
        Ok((status, json))
    }

    /// A request that must succeed (2xx); returns the JSON body.
    pub(crate) fn expect_ok(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Value, BenchError> {
        let (status, json) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            return Err(failed(format!("{method} {path} answered {status}: {json}")));
        }
        Ok(json)
    }
}

/// The `POST /tx` bodies of `transactions`: `{"hex": "<canonical encoding>"}` each.
pub(crate) fn raw_transaction_bodies(transactions: &[Transaction]) -> Vec<String> {
    transactions
        .iter()
        .map(|transaction| {
            format!(
                "{{\"hex\":\"{}\"}}",
                hex::encode(&transaction.encode_to_vec())
            )
        })
        .collect()
}

/// The `POST /txs` body of `transactions`: `{"hex": ["<canonical encoding>", ...]}`.
pub(crate) fn raw_transactions_body(transactions: &[Transaction]) -> String {
    let hexes: Vec<String> = transactions
        .iter()
        .map(|transaction| format!("\"{}\"", hex::encode(&transaction.encode_to_vec())))
        .collect();
    format!("{{\"hex\":[{}]}}", hexes.join(","))
}
