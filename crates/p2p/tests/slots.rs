//! Connection slots against strangers (issue 13): connections before `hello` are capped in
//! total and per address group (a newcomer evicts the most crowded group's oldest when all
//! are taken), may send only a few KiB, and end at one deadline; inbound
//! peers are capped per address group; a full node evicts its least useful inbound peer
//! for a newcomer. Strangers from many address groups come from other loopback addresses
//! (`127.N.0.1`): the kernel routes all of 127.0.0.0/8 to this machine.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{TestNode, config, hello, wait_until};
use futures_util::{SinkExt, StreamExt};
use powchain_consensus::Network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;

const LIMIT: Duration = Duration::from_secs(20);

type RawSocket = WebSocketStream<TcpStream>;

/// A TCP connection to `node` from the loopback address `source`.
async fn tcp_from(source: Ipv4Addr, node: &TestNode) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("binds a loopback source address");
    socket
        .connect(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            node.p2p.listen_port(),
        )))
        .await
        .expect("connects")
}

/// A WebSocket from `source` that has sent its hello announcing `listen_port`.
async fn peer_from(source: Ipv4Addr, node: &TestNode, listen_port: u16) -> RawSocket {
    let stream = tcp_from(source, node).await;
    let (mut socket, _) = tokio_tungstenite::client_async(node.url(), stream)
        .await
        .expect("WebSocket upgrade");
    socket
        .send(Frame::binary(
            hello(Network::Regtest, listen_port).to_bytes(),
        ))
        .await
        .expect("sends hello");
    socket
}

/// True if the node closes `socket` within `limit` (frames meanwhile are read and dropped).
async fn closed_within(socket: &mut RawSocket, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Frame::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// True if the raw TCP connection is closed by the node within `limit`.
async fn tcp_closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_may_send_only_kilobytes_before_its_hello() {
    let node = TestNode::start(vec![]).await;
    let stream = tcp_from(Ipv4Addr::new(127, 21, 0, 1), &node).await;
    let (socket, _) = tokio_tungstenite::client_async(node.url(), stream)
        .await
        .expect("WebSocket upgrade");
    let mut tcp = socket.into_inner();
    // A binary frame announcing 1.9 MB (within the 2 MB message limit), then 64 KiB of it.
    let length: u64 = 1_900_000;
    let mut header = vec![0x82u8, 0x80 | 127];
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&[0u8; 4]); // the client's masking key
    let started = Instant::now();
    let mut sent = 0usize;
    let mut closed = tcp.write_all(&header).await.is_err();
    while !closed && sent < 1_900_000 {
        closed = tcp.write_all(&[0u8; 4096]).await.is_err();
        sent += 4096;
        if sent >= 64 * 1024 {
            break;
        }
    }
    assert!(
        closed || tcp_closed_within(&mut tcp, Duration::from_secs(5)).await,
        "the node reads at most a few KiB before the hello"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed for its size, not at the handshake deadline"
    );
    // A newcomer is served.
    let mut honest = peer_from(Ipv4Addr::LOCALHOST, &node, 47_000).await;
    wait_until("the honest peer is registered", LIMIT, || {
        let peers = node.p2p.peers().len();
        async move { peers == 1 }
    })
    .await;
    assert!(!closed_within(&mut honest, Duration::from_millis(200)).await);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_capped_per_group_and_in_total_and_end_at_the_deadline() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut p2p_config = config(vec![], 0);
    p2p_config.max_pending = 12;
    p2p_config.max_pending_per_group = 4;
    p2p_config.handshake_timeout = Duration::from_secs(3);
    let mut node = TestNode::start_in(temp.path().to_path_buf(), p2p_config).await;
    node.keep(temp);

    // One group: four wait in their handshake, the fifth is closed at once.
    let crowd = Ipv4Addr::new(127, 31, 0, 1);
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tcp_from(crowd, &node).await);
    }
    wait_until("four pending", LIMIT, || {
        let pending = node.p2p.pending_connections();
        async move { pending == 4 }
    })
    .await;
    let mut fifth = tcp_from(crowd, &node).await;
    assert!(
        tcp_closed_within(&mut fifth, Duration::from_secs(2)).await,
        "the group's fifth pending connection is closed at once"
    );
    // Other groups fill the total.
    for group in 0..8u8 {
        silent.push(tcp_from(Ipv4Addr::new(127, 40 + group, 0, 1), &node).await);
    }
    wait_until("twelve pending", LIMIT, || {
        let pending = node.p2p.pending_connections();
        async move { pending == 12 }
    })
    .await;
    // All taken: a newcomer from a group of its own takes the slot of the crowd's oldest.
    let mut newcomer = tcp_from(Ipv4Addr::new(127, 60, 0, 1), &node).await;
    assert!(
        tcp_closed_within(&mut silent[0], Duration::from_secs(2)).await,
        "the crowd's oldest made room"
    );
    assert!(!tcp_closed_within(&mut newcomer, Duration::from_millis(200)).await);
    assert_eq!(node.p2p.pending_connections(), 12);
    silent.remove(0);
    silent.push(newcomer);
    // The deadline frees every slot, and a newcomer then gets through.
    for stream in &mut silent {
        assert!(
            tcp_closed_within(stream, Duration::from_secs(10)).await,
            "a silent connection ends at the handshake deadline"
        );
    }
    wait_until("no pending connection", LIMIT, || {
        let pending = node.p2p.pending_connections();
        async move { pending == 0 }
    })
    .await;
    let _honest = peer_from(Ipv4Addr::LOCALHOST, &node, 47_001).await;
    wait_until("the newcomer is a peer", LIMIT, || {
        let peers = node.p2p.peers().len();
        async move { peers == 1 }
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_group_gets_its_share_of_inbound_slots() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut p2p_config = config(vec![], 0);
    p2p_config.max_inbound_per_group = 3;
    let mut node = TestNode::start_in(temp.path().to_path_buf(), p2p_config).await;
    node.keep(temp);
    let stranger = Ipv4Addr::new(127, 66, 0, 1);
    let mut held = Vec::new();
    for port in 0..3u16 {
        held.push(peer_from(stranger, &node, 48_000 + port).await);
    }
    wait_until("three peers from the group", LIMIT, || {
        let peers = node.p2p.peers().len();
        async move { peers == 3 }
    })
    .await;
    let mut fourth = peer_from(stranger, &node, 48_003).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(5)).await);
    let refusal = node
        .p2p
        .disconnected()
        .into_iter()
        .find(|end| end.url.ends_with(":48003"))
        .expect("the refusal is listed with its reason");
    assert!(refusal.reason.contains("address group"), "{refusal:?}");
    // The operator's local nodes are not capped per group.
    for port in 0..5u16 {
        held.push(peer_from(Ipv4Addr::LOCALHOST, &node, 49_000 + port).await);
    }
    wait_until("five local peers more", LIMIT, || {
        let peers = node.p2p.peers().len();
        async move { peers == 8 }
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_evicts_an_idle_stranger_for_a_newcomer() {
    let node = TestNode::start(vec![]).await;
    // Strangers from 32 groups take every inbound slot and never answer a ping.
    let mut strangers = Vec::new();
    for index in 0..32u8 {
        let source = Ipv4Addr::new(127, 100 + index, 0, 1);
        strangers.push(peer_from(source, &node, 50_000 + u16::from(index)).await);
    }
    wait_until("every inbound slot taken", LIMIT, || {
        let peers = node.p2p.peers().len();
        async move { peers == 32 }
    })
    .await;
    let mut newcomer = peer_from(Ipv4Addr::LOCALHOST, &node, 51_000).await;
    wait_until("the newcomer is in, a stranger out", LIMIT, || {
        let peers = node.p2p.peers();
        async move { peers.len() == 32 && peers.iter().any(|peer| peer.url.ends_with(":51000")) }
    })
    .await;
    wait_until("the eviction is listed", LIMIT, || {
        let listed = node
            .p2p
            .disconnected()
            .iter()
            .any(|end| end.reason.contains("evicted"));
        async move { listed }
    })
    .await;
    let evicted = node
        .p2p
        .disconnected()
        .into_iter()
        .find(|end| end.reason.contains("evicted"))
        .expect("the eviction is listed");
    assert!(!evicted.url.ends_with(":51000"), "{evicted:?}");
    // The newcomer answers pings (a live peer): later strangers evict strangers, not it.
    let answer = tokio::spawn(async move {
        while let Some(Ok(frame)) = newcomer.next().await {
            if let Frame::Binary(bytes) = frame
                && let Ok(powchain_p2p::Message::Ping(nonce)) =
                    powchain_p2p::Message::from_bytes(&bytes)
            {
                let pong = powchain_p2p::Message::Pong(nonce).to_bytes();
                if newcomer.send(Frame::binary(pong)).await.is_err() {
                    break;
                }
            }
        }
    });
    wait_until("the newcomer's ping is measured", LIMIT, || {
        let measured = node
            .p2p
            .peers()
            .iter()
            .any(|peer| peer.url.ends_with(":51000") && peer.ping_ms.is_some());
        async move { measured }
    })
    .await;
    for index in 0..8u8 {
        let source = Ipv4Addr::new(127, 200 + index, 0, 1);
        strangers.push(peer_from(source, &node, 52_000 + u16::from(index)).await);
        wait_until("one more eviction", LIMIT, || {
            let evictions = node
                .p2p
                .disconnected()
                .iter()
                .filter(|end| end.reason.contains("evicted"))
                .count();
            async move { evictions == 2 + usize::from(index) }
        })
        .await;
    }
    assert!(
        node.p2p
            .peers()
            .iter()
            .any(|peer| peer.url.ends_with(":51000")),
        "the live newcomer kept its slot: {:?}",
        node.p2p.disconnected()
    );
    answer.abort();
    node.stop().await;
}

/// A peer's ping round trip protects it from eviction, so a pong must answer a ping it
/// could not foresee. The nonce was the node's own (sent in its hello) xor a count: a
/// peer could answer each ping before it was sent and show a round trip of 0 ms from
/// anywhere. Now every ping's nonce is drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_sent_before_its_ping_earns_no_round_trip() {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut settings = config(vec![], 0);
    settings.ping_interval = Duration::from_millis(100);
    let node = TestNode::start_in(temp.path().to_path_buf(), settings).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(node.url())
        .await
        .expect("connects");
    socket
        .send(Frame::binary(hello(Network::Regtest, 6100).to_bytes()))
        .await
        .expect("sends its hello");
    let node_nonce = loop {
        match tokio::time::timeout(LIMIT, socket.next()).await {
            Ok(Some(Ok(Frame::Binary(bytes)))) => {
                if let Ok(powchain_p2p::Message::Hello(hello)) =
                    powchain_p2p::Message::from_bytes(&bytes)
                {
                    break hello.node_nonce;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the node's hello: {other:?}"),
        }
    };
    // Pongs for the first pings as the old nonces ran, sent ahead of them and often,
    // without reading (or answering) a single ping.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1_000) {
        for count in 1..=12u64 {
            let pong = powchain_p2p::Message::Pong(node_nonce ^ count);
            if socket.send(Frame::binary(pong.to_bytes())).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let peers = node.p2p.peers();
    assert_eq!(peers.len(), 1, "still connected");
    assert_eq!(peers[0].ping_ms, None, "no ping was answered");
}
