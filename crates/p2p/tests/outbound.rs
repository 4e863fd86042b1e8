//! Outbound slots are filled from the address book for as long as the node runs: when a
//! learned peer leaves, another address takes its slot. Before, learned addresses were
//! dialled only when first heard of, so a node whose first learned peers left never
//! replaced them. Configured peers are dialled apart and take no slot: before, each kept
//! one while it was down, so a node whose configured peers were gone dialled no one.

mod common;

use std::time::Duration;

use common::{TestNode, config, raw_peer, wait_until};
use futures_util::SinkExt;
use powchain_p2p::Message;
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

/// A node with `slots` outbound slots and no configured peer.
async fn node_with_outbound_slots(slots: usize) -> TestNode {
    node_with(slots, vec![], 0).await
}

/// A node with `slots` outbound slots, the configured `peers`, listening on `port` (0: any).
async fn node_with(slots: usize, peers: Vec<String>, port: u16) -> TestNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(peers, port);
    node_config.max_outbound = slots;
    let mut node = TestNode::start_in(temp.path().to_path_buf(), node_config).await;
    node.keep(temp);
    node
}

/// Where `node`'s outbound peers listen.
fn outbound_peers(node: &TestNode) -> Vec<String> {
    node.p2p
        .peers()
        .into_iter()
        .filter(|peer| peer.outbound)
        .map(|peer| peer.url)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_slots_are_filled_from_the_book_again_when_learned_peers_leave() {
    // Three nodes it hears of only from gossip (which dial no one themselves: a peer
    // connected inbound is not dialled), and two outbound slots.
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(node_with_outbound_slots(0).await);
    }
    let node = node_with_outbound_slots(2).await;
    let mut gossip = raw_peer(&node.url(), 47_201).await.expect("connects");
    let addresses: Vec<String> = others.iter().map(TestNode::url).collect();
    gossip
        .send(Frame::binary(Message::Addresses(addresses).to_bytes()))
        .await
        .expect("sends");
    wait_until(
        "two learned addresses fill the outbound slots",
        LIMIT,
        || async { outbound_peers(&node).len() == 2 },
    )
    .await;
    assert_eq!(
        node.p2p.learned_dials(),
        0,
        "connected dials are not connecting"
    );

    // One of them leaves: the third, never dialled so far, takes its slot.
    let first = outbound_peers(&node);
    let leaving = others
        .iter()
        .position(|other| first.contains(&other.url()))
        .expect("an outbound peer is one of them");
    let gone = others.remove(leaving);
    let gone_url = gone.url();
    gone.stop().await;
    wait_until("the third fills the freed slot", LIMIT, || async {
        let now = outbound_peers(&node);
        now.len() == 2 && !now.contains(&gone_url)
    })
    .await;
    drop(gossip);
    node.stop().await;
    for other in others {
        other.stop().await;
    }
}

/// Tells `node` of `addresses` as a gossiping peer listening on `port` would (one port a
/// gossiping peer: a node refuses a second session of one node); the returned socket
/// keeps that peer connected.
async fn gossip_from(node: &TestNode, port: u16, addresses: Vec<String>) -> common::Socket {
    let mut socket = raw_peer(&node.url(), port).await.expect("connects");
    socket
        .send(Frame::binary(Message::Addresses(addresses).to_bytes()))
        .await
        .expect("sends");
    socket
}

/// Addresses where nothing listens.
fn closed_ports(count: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("binds"))
        .collect();
    listeners
        .iter()
        .map(|listener| {
            format!(
                "ws://127.0.0.1:{}",
                listener.local_addr().expect("bound").port()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_peers_that_are_down_leave_the_learned_slots_free() {
    // Three configured peers that are gone, and two outbound slots: the two nodes it
    // learns of are dialled all the same.
    let others = [
        node_with_outbound_slots(0).await,
        node_with_outbound_slots(0).await,
    ];
    let node = node_with(2, closed_ports(3), 0).await;
    let addresses: Vec<String> = others.iter().map(TestNode::url).collect();
    let gossip = gossip_from(&node, 47_202, addresses.clone()).await;
    wait_until("both learned addresses are dialled", LIMIT, || async {
        let outbound = outbound_peers(&node);
        addresses.iter().all(|address| outbound.contains(address))
    })
    .await;
    drop(gossip);
    node.stop().await;
    for other in others {
        other.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_peer_the_operator_adds_frees_its_slot_and_is_dialled_again() {
    let mut others = vec![
        node_with_outbound_slots(0).await,
        node_with_outbound_slots(0).await,
    ];
    let node = node_with(1, vec![], 0).await;
    let gossip = gossip_from(&node, 47_202, others.iter().map(TestNode::url).collect()).await;
    wait_until("one learned address fills the slot", LIMIT, || async {
        outbound_peers(&node).len() == 1
    })
    .await;
    let chosen = outbound_peers(&node).remove(0);

    // The operator names it (`POST /peers`): it becomes a configured peer, and its slot
    // goes to the other.
    node.node
        .peer_manager()
        .expect("p2p")
        .add_peer(&chosen)
        .expect("a valid address");
    wait_until("the other takes the freed slot", LIMIT, || async {
        outbound_peers(&node).len() == 2
    })
    .await;

    // It leaves and comes back on the same port: dialled again, as a configured peer is,
    // though the one learned slot is taken.
    let position = others
        .iter()
        .position(|other| other.url() == chosen)
        .expect("one of them");
    let gone = others.remove(position);
    let port = gone.p2p.listen_port();
    gone.stop().await;
    wait_until("it is gone", LIMIT, || async {
        !outbound_peers(&node).contains(&chosen)
    })
    .await;
    others.push(node_with(0, vec![], port).await);
    wait_until("the configured peer is dialled again", LIMIT, || async {
        outbound_peers(&node).contains(&chosen)
    })
    .await;
    assert_eq!(outbound_peers(&node).len(), 2);
    drop(gossip);
    node.stop().await;
    for other in others {
        other.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_removal_does_not_undo_the_first() {
    let others = [
        node_with_outbound_slots(0).await,
        node_with_outbound_slots(0).await,
    ];
    let (removed, control) = (others[0].url(), others[1].url());
    let node = node_with(2, vec![], 0).await;
    let manager = node.node.peer_manager().expect("p2p");
    let first = gossip_from(&node, 47_203, vec![removed.clone()]).await;
    wait_until("the learned peer is dialled", LIMIT, || async {
        outbound_peers(&node).contains(&removed)
    })
    .await;
    manager.remove_peer(&removed).expect("connected: removed");
    // Asked again until its dial has ended and there is nothing left to remove.
    wait_until("a removal finds nothing left to remove", LIMIT, || async {
        manager.remove_peer(&removed).is_err()
    })
    .await;
    assert!(!outbound_peers(&node).contains(&removed));

    // Told of both again: the control address is dialled, the removed one stays out
    // (before, the second removal lifted the first's mark, and it was dialled again).
    // Both would be drawn in the same fill, so once the control is connected and no dial
    // is connecting, the removed one would show if it had been dialled.
    drop(first);
    let second = gossip_from(&node, 47_204, vec![removed.clone(), control.clone()]).await;
    wait_until("the control is dialled", LIMIT, || async {
        outbound_peers(&node).contains(&control) && node.p2p.learned_dials() == 0
    })
    .await;
    assert!(
        !outbound_peers(&node).contains(&removed),
        "a removed peer stays removed"
    );
    drop(second);
    node.stop().await;
    for other in others {
        other.stop().await;
    }
}

/// `count` listeners that accept connections and never answer (so a dial of one holds its
/// slot), and how many connections they have accepted in all.
async fn tarpits(
    count: usize,
) -> (
    Vec<String>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio_util::sync::CancellationToken,
) {
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut urls = Vec::new();
    for _ in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        urls.push(format!(
            "ws://127.0.0.1:{}",
            listener.local_addr().expect("bound").port()
        ));
        let (accepted, stop) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    connection = listener.accept() => {
                        if let Ok((socket, _)) = connection {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            held.push(socket);
                        }
                    }
                }
            }
        });
    }
    (urls, accepted, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_run_s_anchors_are_dialled_before_the_rest_of_its_book() {
    // The last run's book: 30 addresses that hold whoever dials them, and one anchor, the
    // peer it was connected to. With one outbound slot, the anchor takes it: drawn at
    // random from the book instead, the slot would go to a tarpit 30 times in 31.
    let anchor = node_with_outbound_slots(0).await;
    let (decoys, accepted, stop) = tarpits(30).await;
    let parse = |text: &String| powchain_p2p::PeerUrl::parse(text).expect("an address");
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(vec![], 0);
    node_config.max_outbound = 1;
    node_config.saved_addresses = powchain_p2p::SavedAddresses {
        known: decoys
            .iter()
            .chain([&anchor.url()])
            .map(|text| powchain_p2p::SavedAddress {
                url: parse(text),
                source: 1,
            })
            .collect(),
        anchors: vec![parse(&anchor.url())],
    };
    let mut node = TestNode::start_in(temp.path().to_path_buf(), node_config).await;
    node.keep(temp);
    assert_eq!(node.p2p.known_addresses(), 31, "the book is restored");
    wait_until("the anchor is connected", LIMIT, || async {
        outbound_peers(&node) == vec![anchor.url()]
    })
    .await;
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no other address of the book was dialled"
    );
    // What the node would save now: the anchor again, and the whole book (with what the
    // anchor has told it since).
    let saved = node.p2p.saved_addresses();
    assert_eq!(saved.anchors, vec![parse(&anchor.url())]);
    for address in decoys.iter().chain([&anchor.url()]) {
        let url = parse(address);
        assert!(
            saved.known.iter().any(|known| known.url == url),
            "{address} is saved"
        );
    }
    node.stop().await;
    anchor.stop().await;
    stop.cancel();
}
