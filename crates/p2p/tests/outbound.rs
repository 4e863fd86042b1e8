//! Outbound slots are filled from the address book for as long as the node runs: when a
//! learned peer leaves, another address takes its slot. Before, learned addresses were
//! dialled only when first heard of, so a node whose first learned peers left never
//! replaced them.

mod common;

use std::time::Duration;

use common::{TestNode, config, raw_peer, wait_until};
use futures_util::SinkExt;
use powchain_p2p::Message;
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

/// A node with `slots` outbound slots and no configured peer.
async fn node_with_outbound_slots(slots: usize) -> TestNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(vec![], 0);
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
