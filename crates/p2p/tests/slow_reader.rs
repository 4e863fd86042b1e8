//! A peer that stops reading: the session writing to it must not wait for good. It ends
//! within the write deadline (the ping timeout), while an honest peer is still served.

mod common;

use std::time::Duration;

use common::{TestNode, config, raw_peer, wait_until};
use futures_util::SinkExt;
use powchain_consensus::{BlockHash, Network};
use powchain_p2p::Message;
use tokio_tungstenite::tungstenite::Message as Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_within_the_write_deadline() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(vec![], 0);
    node_config.ping_timeout = Duration::from_secs(2);
    // No second ping within the test: only the write deadline can end the session.
    node_config.ping_interval = Duration::from_secs(600);
    let mut node = TestNode::start_in(temp.path().to_path_buf(), node_config).await;
    node.keep(temp);
    node.mine_blocks(300).await;
    let honest = TestNode::start(vec![node.url()]).await;
    wait_until("the honest node syncs", Duration::from_secs(30), || async {
        honest.tip() == node.tip()
    })
    .await;

    // Asks for all 300 headers (about 30 KB an answer) 100 times a second, within the
    // message budget, and never reads: the answers fill both sockets' buffers, and the
    // node's next write waits.
    let mut socket = raw_peer(&node.url(), 48_001).await.expect("connects");
    let request = Frame::binary(
        Message::GetHeaders {
            locator: vec![Network::Regtest.params().genesis_hash()],
            stop: BlockHash::ZERO,
        }
        .to_bytes(),
    );
    let flooding = tokio::spawn(async move {
        for _ in 0..1_000 {
            if socket.send(request.clone()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        socket
    });

    wait_until(
        "the node drops the peer that stopped reading",
        Duration::from_secs(30),
        || async {
            node.p2p
                .disconnected()
                .iter()
                .any(|ended| ended.reason.contains("write timeout"))
        },
    )
    .await;
    // Served all along: the honest peer gets a new block.
    node.mine().await;
    wait_until(
        "the honest node gets the new block",
        Duration::from_secs(20),
        || async { honest.tip() == node.tip() },
    )
    .await;
    flooding.abort();
    honest.stop().await;
    node.stop().await;
}

/// A session this node closes (evicted for a newcomer, replaced, or removed by the
/// operator) while it waits to send a large answer to a peer that reads slowly or not at
/// all used to go on until the peer had taken the whole answer or the write deadline
/// passed: out of the registry, it kept its socket and its queue, uncounted. It now ends
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_by_the_node_ends_even_while_it_waits_to_send() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut node_config = config(vec![], 0);
    // Neither the write deadline nor a ping ends the session within the test.
    node_config.ping_timeout = Duration::from_secs(600);
    node_config.ping_interval = Duration::from_secs(600);
    let mut node = TestNode::start_in(temp.path().to_path_buf(), node_config).await;
    node.keep(temp);
    node.mine_blocks(300).await;

    let mut socket = raw_peer(&node.url(), 48_002).await.expect("connects");
    let request = Frame::binary(
        Message::GetHeaders {
            locator: vec![Network::Regtest.params().genesis_hash()],
            stop: BlockHash::ZERO,
        }
        .to_bytes(),
    );
    // About 26 KB an answer, never read: 600 of them fill the sockets' buffers and the
    // session's 2 MiB queue many times over, so the session waits to send.
    for _ in 0..600 {
        if socket.send(request.clone()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = powchain_p2p::PeerUrl::parse("ws://127.0.0.1:48002").expect("a url");
    node.p2p.remove_peer(&url).expect("the operator removes it");
    wait_until(
        "the removed session ends though its answers are unread",
        Duration::from_secs(10),
        || async {
            node.p2p
                .disconnected()
                .iter()
                .any(|ended| ended.url.contains("48002"))
        },
    )
    .await;
    drop(socket);
    node.stop().await;
}
