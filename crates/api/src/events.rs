//! The dashboard's live view: `GET /events`, the node's events as server-sent events.
//!
//! ```text
//!   Node::subscribe ──NodeEvent──▶ EventJson (named, camelCase) ──▶ /events ──▶ app.js
//!        a subscriber that falls behind gets `resync` and carries on; the stream ends
//!        when the node stops
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use powchain_node::AddressGroup;
use powchain_node::{Node, NodeEvent};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use crate::error::ApiError;
use crate::group_shares::{GroupShare, GroupShares};
use crate::input::NoQuery;
use crate::router::blocking;
use crate::server::ClientGroup;

/// How often an idle event stream sends a comment, so proxies and browsers keep it open.
const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an event stream checks whether the node is stopping (graceful shutdown waits
/// for open responses, and an event stream never ends by itself).
const EVENT_SHUTDOWN_POLL: Duration = Duration::from_millis(500);
/// How long a browser waits before reconnecting a dropped event stream.
const EVENT_RETRY: Duration = Duration::from_secs(2);

/// A [`NodeEvent`] as `GET /events` sends it: the SSE event name is `type`, and the data
/// is this object as JSON.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum EventJson {
    /// Sent first on every connection: where the chain stood when the stream began.
    Ready {
        /// The tip's height.
        height: u64,
        /// The tip's hash.
        hash: String,
    },
    /// A block joined the main chain.
    BlockConnected {
        /// Its hash.
        hash: String,
        /// Its height.
        height: u64,
    },
    /// A block left the main chain in a reorganisation.
    BlockDisconnected {
        /// Its hash.
        hash: String,
        /// Its height.
        height: u64,
    },
    /// The tip settled after a change.
    TipChanged {
        /// The new tip's hash.
        hash: String,
        /// Its height.
        height: u64,
        /// Total chain work, hex.
        work: String,
        /// Blocks disconnected on the way (0 when the chain only grew).
        reorg_depth: u64,
    },
    /// A transaction entered the pool.
    TransactionAccepted {
        /// Its id.
        txid: String,
    },
    /// The stream fell behind and skipped events: reload what is shown.
    Resync {
        /// How many events were skipped.
        missed: u64,
    },
}

impl EventJson {
    fn name(&self) -> &'static str {
        match self {
            EventJson::Ready { .. } => "ready",
            EventJson::BlockConnected { .. } => "blockConnected",
            EventJson::BlockDisconnected { .. } => "blockDisconnected",
            EventJson::TipChanged { .. } => "tipChanged",
            EventJson::TransactionAccepted { .. } => "transactionAccepted",
            EventJson::Resync { .. } => "resync",
        }
    }

    fn to_sse(&self) -> Event {
        let data = serde_json::to_string(self).expect("event JSON has only strings and numbers");
        Event::default().event(self.name()).data(data)
    }
}

impl From<NodeEvent> for EventJson {
    fn from(event: NodeEvent) -> EventJson {
        match event {
            NodeEvent::BlockConnected { hash, height } => EventJson::BlockConnected {
                hash: hash.to_string(),
                height: height.0,
            },
            NodeEvent::BlockDisconnected { hash, height } => EventJson::BlockDisconnected {
                hash: hash.to_string(),
                height: height.0,
            },
            NodeEvent::TipChanged {
                hash,
                height,
                work,
                reorg_depth,
            } => EventJson::TipChanged {
                hash: hash.to_string(),
                height: height.0,
                work: work.to_string(),
                reorg_depth,
            },
            NodeEvent::TransactionAccepted { txid } => EventJson::TransactionAccepted {
                txid: txid.to_string(),
            },
        }
    }
}

/// The open `GET /events` streams, at most `ApiOptions::max_event_subscribers`, and at most
/// an eighth of them from one address group (the operator's own `127.0.0.1` and `::1` are
/// not capped), so one stranger cannot hold every stream and keep the dashboards out
/// (docs/SECURITY.md, item 84). Each stream holds its [`SubscriberPlace`] until its client
/// leaves (the stream, and the place with it, is dropped when the connection closes).
#[derive(Clone, Debug)]
pub(crate) struct EventSubscribers {
    permits: Arc<Semaphore>,
    max: usize,
    by_group: GroupShares,
}

/// A stream's place: one of all the streams', and one of its client's group's.
pub(crate) type SubscriberPlace = (GroupShare, OwnedSemaphorePermit);

impl EventSubscribers {
    /// Room for `max` streams at once.
    pub(crate) fn new(max: usize) -> EventSubscribers {
        EventSubscribers {
            permits: Arc::new(Semaphore::new(max)),
            max,
            by_group: GroupShares::default(),
        }
    }

    /// A place for one more stream, to a client of `group`, held until it drops.
    ///
    /// # Errors
    /// A 503 when all `max` places are taken, or the group holds its share of them (an
    /// eighth).
    fn join(&self, group: AddressGroup) -> Result<SubscriberPlace, ApiError> {
        let taken = self
            .by_group
            .try_take(group, AddressGroup::share_of(self.max), || {
                Arc::clone(&self.permits).try_acquire_owned().ok()
            })
            .map_err(|held| {
                ApiError::unavailable(format!(
                    "the node already streams events to {held} clients of your network \
                     ({group}), the most it serves one network at once; try again later \
                     [too-many-subscribers]"
                ))
            })?;
        taken.ok_or_else(|| {
            ApiError::unavailable(format!(
                "the node already streams events to {max} clients, the most it serves at \
                 once; try again later [too-many-subscribers]",
                max = self.max
            ))
        })
    }
}

/// `GET /events`: node events as server-sent events, for as long as the client listens.
///
/// Every connection starts with a `ready` event (the tip when the stream began), then one
/// event per [`NodeEvent`]: `blockConnected`, `blockDisconnected`, `tipChanged` (with
/// `reorgDepth`), `transactionAccepted`. The node never waits for a slow client: one that
/// falls too far behind gets a `resync` event, meaning "some events were skipped, reload".
/// An idle stream carries a keep-alive comment every 15 s; it ends when the node stops.
///
/// At most `max_event_subscribers` streams are open at once, an eighth of them to one
/// address group; past that the answer is 503.
pub async fn events(
    State(node): State<Arc<Node>>,
    Extension(subscribers): Extension<EventSubscribers>,
    client: Option<Extension<ClientGroup>>,
    _query: NoQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // A request that did not come through the server's accept loop is the process's own.
    let group = client.map_or(AddressGroup::Local, |Extension(ClientGroup(group))| group);
    let permit = subscribers.join(group)?;
    // Subscribe before reading the tip, so nothing between the two is missed.
    let receiver = node.subscribe();
    let tip = blocking(&node, |node| Ok(node.tip())).await?;
    let ready = EventJson::Ready {
        height: tip.height.0,
        hash: tip.hash.to_string(),
    }
    .to_sse()
    .retry(EVENT_RETRY);
    let live = live_events(receiver, move || node.is_shutting_down()).map(|event| event.to_sse());
    let stream = stream::once(async move { ready })
        .chain(live)
        .map(move |event| {
            // The stream owns the permit: it is released when the stream is dropped.
            let _held = &permit;
            Ok::<Event, Infallible>(event)
        });
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(EVENT_KEEP_ALIVE)
            .text("keep-alive"),
    ))
}

/// The events after `ready`: one per [`NodeEvent`] received, `resync` where the receiver
/// lagged, ending when the channel closes or, checked twice a second, `is_stopping` says so.
fn live_events(
    receiver: broadcast::Receiver<NodeEvent>,
    is_stopping: impl Fn() -> bool + Send + 'static,
) -> impl Stream<Item = EventJson> + Send + 'static {
    stream::unfold(
        (receiver, is_stopping),
        |(mut receiver, is_stopping)| async move {
            loop {
                tokio::select! {
                    received = receiver.recv() => {
                        let event = match received {
                            Ok(event) => EventJson::from(event),
                            Err(RecvError::Lagged(missed)) => EventJson::Resync { missed },
                            Err(RecvError::Closed) => return None,
                        };
                        return Some((event, (receiver, is_stopping)));
                    }
                    () = tokio::time::sleep(EVENT_SHUTDOWN_POLL) => {
                        if is_stopping() {
                            return None;
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::{BlockHash, BlockHeight, Txid, Work};

    fn connected(height: u64) -> NodeEvent {
        NodeEvent::BlockConnected {
            hash: BlockHash([height as u8; 32]),
            height: BlockHeight(height),
        }
    }

    #[tokio::test]
    async fn a_lagging_event_stream_says_resync_and_carries_on() {
        let (sender, receiver) = broadcast::channel(2);
        for height in 1..=5 {
            sender.send(connected(height)).expect("a receiver exists");
        }
        drop(sender);
        let events: Vec<EventJson> = live_events(receiver, || false).collect().await;
        assert_eq!(
            events,
            vec![
                EventJson::Resync { missed: 3 },
                EventJson::from(connected(4)),
                EventJson::from(connected(5)),
            ],
            "the stream ends when the channel closes"
        );
    }

    #[tokio::test]
    async fn an_event_stream_ends_when_the_node_stops() {
        let (_sender, receiver) = broadcast::channel::<NodeEvent>(2);
        let events = tokio::time::timeout(
            Duration::from_secs(10),
            live_events(receiver, || true).collect::<Vec<_>>(),
        )
        .await
        .expect("the stream ends within a shutdown poll");
        assert!(events.is_empty());
    }

    #[test]
    fn node_events_become_named_camel_case_json() {
        let mut work_bytes = [0; 32];
        work_bytes[31] = 0xff;
        let event = EventJson::from(NodeEvent::TipChanged {
            hash: BlockHash([0; 32]),
            height: BlockHeight(7),
            work: Work::from_be_bytes(work_bytes),
            reorg_depth: 2,
        });
        assert_eq!(event.name(), "tipChanged");
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["type"], "tipChanged");
        assert_eq!(json["height"], 7);
        assert_eq!(json["reorgDepth"], 2);
        assert_eq!(json["work"], "ff");
        let accepted = EventJson::from(NodeEvent::TransactionAccepted {
            txid: Txid([1; 32]),
        });
        assert_eq!(accepted.name(), "transactionAccepted");
        let json = serde_json::to_value(&accepted).expect("serializes");
        assert_eq!(json["txid"], Txid([1; 32]).to_string());
        let resync = serde_json::to_value(EventJson::Resync { missed: 3 }).expect("serializes");
        assert_eq!(resync, serde_json::json!({"type": "resync", "missed": 3}));
    }

    /// Opens `GET /events` and reads until the `ready` event: a subscriber.
    async fn subscribe(address: std::net::SocketAddr) -> tokio::net::TcpStream {
        subscribe_from([127, 0, 0, 1].into(), address).await
    }

    /// A subscriber connecting from `source`.
    async fn subscribe_from(
        source: std::net::Ipv4Addr,
        address: std::net::SocketAddr,
    ) -> tokio::net::TcpStream {
        use tokio::io::AsyncReadExt;
        let mut stream = crate::testing::connect_from(source, address).await;
        crate::testing::send_get(&mut stream, "/events", true).await;
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        tokio::time::timeout(crate::testing::DEADLINE, async {
            while !String::from_utf8_lossy(&seen).contains("event: ready") {
                let read = stream.read(&mut buffer).await.expect("reads");
                assert!(
                    read > 0,
                    "the stream closed: {}",
                    String::from_utf8_lossy(&seen)
                );
                seen.extend_from_slice(&buffer[..read]);
            }
        })
        .await
        .expect("the ready event arrives");
        assert!(seen.starts_with(b"HTTP/1.1 200"));
        stream
    }

    #[tokio::test]
    async fn one_address_group_holds_at_most_an_eighth_of_the_event_streams() {
        use crate::testing::{TestServer, read_answer, regtest_node, send_get};
        let (_folder, node) = regtest_node(0);
        let options = crate::ApiOptions {
            max_event_subscribers: 16,
            ..crate::ApiOptions::default()
        };
        let server = TestServer::api(node, options).await;
        let stranger = [127, 9, 0, 2].into();
        let first = subscribe_from(stranger, server.address).await;
        let _second = subscribe_from(stranger, server.address).await;
        let mut refused = crate::testing::connect_from(stranger, server.address).await;
        send_get(&mut refused, "/events", false).await;
        let answer = read_answer(&mut refused).await;
        assert_eq!(answer.status, 503);
        let message = answer.error_message();
        assert!(
            message.contains("2 clients of your network (127.9.0.0/16)"),
            "{message}"
        );
        assert!(message.ends_with("[too-many-subscribers]"), "{message}");
        // Another group, and the operator's own address past the share, are served.
        let _other = subscribe_from([127, 10, 0, 2].into(), server.address).await;
        let _own: Vec<_> = futures_util::future::join_all(
            (0..3).map(|_| subscribe_from([127, 0, 0, 1].into(), server.address)),
        )
        .await;
        // The group's place frees when one of its streams leaves.
        drop(first);
        let address = server.address;
        crate::testing::wait_until("the group has a stream's place again", || {
            crate::testing::answered_200_from(stranger, address, "/events")
        })
        .await;
    }

    #[tokio::test]
    async fn event_subscribers_past_the_cap_get_503_and_a_place_frees_when_one_leaves() {
        use crate::testing::{TestServer, get, regtest_node, wait_until};
        let (_folder, node) = regtest_node(0);
        let options = crate::ApiOptions {
            max_event_subscribers: 2,
            ..crate::ApiOptions::default()
        };
        let server = TestServer::api(node, options).await;
        let first = subscribe(server.address).await;
        let _second = subscribe(server.address).await;

        let refused = get(server.address, "/events").await;
        assert_eq!(refused.status, 503);
        let message = refused.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned();
        assert!(message.contains("2 clients"), "{message}");
        assert!(message.ends_with("[too-many-subscribers]"), "{message}");
        assert_eq!(
            get(server.address, "/status").await.status,
            200,
            "other routes serve"
        );

        drop(first);
        wait_until("a subscriber's place is free again", || {
            crate::testing::answered_200_from([127, 0, 0, 1].into(), server.address, "/events")
        })
        .await;
    }
}
