//! What crossed this node's peer connections: messages and bytes, sent and received, by
//! message type (`GET /status`-style counters for people, and the figures a simulation
//! compares full-block and compact relay by).
//!
//! Bytes are protocol messages as `message.rs` encodes them (version and type byte
//! included), not the WebSocket framing around them (2 to 10 bytes a message) nor the
//! handshake's `hello`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::{MESSAGE_TYPES, type_name};

/// One message type's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageTraffic {
    /// The message's name (`block`, `cmpctblock`, ...).
    pub name: &'static str,
    /// Messages sent.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Messages received (that decoded).
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
}

/// Counters for every message type, shared by all sessions.
pub(crate) struct Traffic {
    /// Per type: sent, sent bytes, received, received bytes.
    counters: [[AtomicU64; 4]; MESSAGE_TYPES],
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            counters: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl Traffic {
    fn add(&self, kind: u8, column: usize, bytes: usize) {
        if let Some(row) = self.counters.get(usize::from(kind)) {
            row[column].fetch_add(1, Ordering::Relaxed);
            row[column + 1].fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// A message of type `kind` and `bytes` bytes went out.
    pub(crate) fn sent(&self, kind: u8, bytes: usize) {
        self.add(kind, 0, bytes);
    }

    /// A message of type `kind` and `bytes` bytes came in and decoded.
    pub(crate) fn received(&self, kind: u8, bytes: usize) {
        self.add(kind, 2, bytes);
    }

    /// Every message type that crossed a connection, in type order.
    pub(crate) fn snapshot(&self) -> Vec<MessageTraffic> {
        self.counters
            .iter()
            .enumerate()
            .filter_map(|(kind, row)| {
                let [sent, sent_bytes, received, received_bytes] = row
                    .each_ref()
                    .map(|counter| counter.load(Ordering::Relaxed));
                let name = type_name(u8::try_from(kind).ok()?)?;
                (sent + received > 0).then_some(MessageTraffic {
                    name,
                    sent,
                    sent_bytes,
                    received,
                    received_bytes,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type_and_lists_only_what_crossed() {
        let traffic = Traffic::default();
        traffic.sent(8, 1000);
        traffic.sent(8, 500);
        traffic.received(13, 90);
        traffic.sent(200, 5);
        assert_eq!(
            traffic.snapshot(),
            vec![
                MessageTraffic {
                    name: "block",
                    sent: 2,
                    sent_bytes: 1500,
                    ..MessageTraffic::default()
                },
                MessageTraffic {
                    name: "cmpctblock",
                    received: 1,
                    received_bytes: 90,
                    ..MessageTraffic::default()
                },
            ]
        );
    }
}
