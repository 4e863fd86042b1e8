//! Address gossip cannot make a node dial or remember without bound. Issue 13 measured one
//! peer sending 100 fresh addresses per `addr`, 200 messages a second, of addresses that
//! accept TCP slowly or not at all: every address was dialled, the node ran out of files
//! in under 10 s and its memory grew to ~600 MB. Now: at most a few learned addresses are
//! dialled at a time, one source fills at most its share of a bounded book, and addresses
//! beyond a peer's budget are ignored without a ban.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{TestNode, raw_peer, wait_until};
use futures_util::SinkExt;
use powchain_p2p::{MAX_ADDRESSES_PER_SOURCE, MAX_LEARNED_DIALS, Message};
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);
/// How long the gossip goes on.
const ATTACK: Duration = Duration::from_secs(5);

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_of_unreachable_addresses_gets_a_few_dials_and_a_bounded_share() {
    let node = TestNode::start(vec![]).await;
    // Addresses that accept TCP and then never answer the WebSocket upgrade (listeners
    // that never accept: the kernel completes the connection), and closed ports.
    let tarpits: Vec<TcpListener> = (0..20)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a tarpit listens"))
        .collect();
    let mut addresses: Vec<String> = tarpits
        .iter()
        .map(|listener| {
            format!(
                "ws://127.0.0.1:{}",
                listener.local_addr().expect("bound").port()
            )
        })
        .collect();
    addresses.extend((1..=1_000u16).map(|port| format!("ws://127.0.0.1:{}", 60_000 + port)));
    let files_before = open_files();

    let mut socket = raw_peer(&node.url(), 47_101).await.expect("connects");
    let started = Instant::now();
    let mut most_dials = 0;
    let mut most_files = 0;
    let mut messages = 0u64;
    while started.elapsed() < ATTACK {
        for chunk in addresses.chunks(100) {
            socket
                .send(Frame::binary(Message::Addresses(chunk.to_vec()).to_bytes()))
                .await
                .expect("the node keeps the connection: ignored gossip is no misbehaviour");
            messages += 1;
        }
        most_dials = most_dials.max(node.p2p.learned_dials());
        most_files = most_files.max(open_files());
        assert!(
            node.p2p.known_addresses() <= MAX_ADDRESSES_PER_SOURCE + 1,
            "one source fills at most its share: {}",
            node.p2p.known_addresses()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{messages} addr messages in {ATTACK:?}: {} addresses kept, at most {most_dials} \
         dials at once, open files {files_before} -> at most {most_files}",
        node.p2p.known_addresses()
    );
    assert!(
        most_dials <= MAX_LEARNED_DIALS,
        "{most_dials} dials at once"
    );
    // The raw peer's socket, the dials in flight (each a socket), and a little slack for
    // the runtime's own files.
    assert!(
        most_files <= files_before + 1 + MAX_LEARNED_DIALS + 8,
        "open files grew from {files_before} to {most_files}"
    );
    assert!(
        node.p2p.banned().is_empty(),
        "gossip beyond the budget is ignored, not banned"
    );

    // An honest peer still gets in and syncs.
    node.mine().await;
    let honest = TestNode::start(vec![node.url()]).await;
    wait_until("the honest peer syncs", LIMIT, || async {
        honest.tip() == node.tip()
    })
    .await;
    honest.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getaddr_is_answered_once_a_connection() {
    use futures_util::StreamExt;

    let node = TestNode::start(vec![]).await;
    let mut peer = raw_peer(&node.url(), 47_403).await.expect("connects");
    for _ in 0..3 {
        common::send(&mut peer, Message::GetAddresses).await;
    }
    common::send(&mut peer, Message::Ping(7)).await;
    // The session answers in order: every `addr` its `getaddr`s caused comes before the pong.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut answers = 0;
    loop {
        match tokio::time::timeout_at(deadline, peer.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::from_bytes(&bytes) {
                Ok(Message::Pong(7)) => break,
                Ok(Message::Addresses(_)) => answers += 1,
                _ => {}
            },
            Ok(Some(Ok(_))) => {}
            other => panic!("no pong: {other:?}"),
        }
    }
    assert_eq!(answers, 1, "three getaddr, one answer");
    assert!(
        node.p2p.banned().is_empty(),
        "asking again is not misbehaviour"
    );
    node.stop().await;
}
