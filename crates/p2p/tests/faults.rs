//! Network faults between real nodes: latency on every link, and partitions that heal,
//! with transactions in flight. The nodes must converge on the chain with the most work,
//! and no pool may lose a transaction that is still valid.
//!
//! ```text
//!   a ══proxy ab══ b ══proxy bc══ c        (each proxy: latency, cut, heal)
//!   cycle: cut bc │ {a, b} pay and mine 1 block │ {c} pays and mines 2 blocks │ heal
//!          ▶ every node on c's branch (more work); a's block's payment back in every
//!            pool; the payments nobody mined in every pool; no payment lost anywhere
//! ```

mod common;

use std::time::Duration;

use common::{Proxy, TestNode, config, wait_until};
use powchain_consensus::{Amount, Txid};

const LIMIT: Duration = Duration::from_secs(60);

/// A node that dials only the peers it is given (no peer exchange), so proxies decide who
/// can reach whom.
async fn start_isolated(peers: Vec<String>) -> TestNode {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut p2p_config = config(peers, 0);
    p2p_config.max_outbound = 0;
    // Reconnect soon after a heal, whatever the partition's length.
    p2p_config.max_backoff = Duration::from_millis(500);
    let dir = temp.path().to_path_buf();
    let mut node = TestNode::start_in(dir, p2p_config).await;
    node.keep(temp);
    node
}

async fn pay(from: &TestNode, to: &TestNode, coins: u64) -> Txid {
    let node = from.node.clone();
    let recipient = to.node.wallet_address();
    tokio::task::spawn_blocking(move || {
        node.send(
            recipient,
            Amount::from_coins(coins).expect("in range"),
            None,
        )
    })
    .await
    .expect("payment task")
    .expect("the payment is accepted")
    .txid
}

fn pooled_everywhere(nodes: &[&TestNode], txid: &Txid) -> bool {
    nodes
        .iter()
        .all(|node| node.node.pool_transaction(txid).is_some())
}

fn confirmed(node: &TestNode, txid: &Txid) -> bool {
    node.node
        .reader()
        .snapshot()
        .and_then(|snapshot| snapshot.tx_location(txid))
        .is_ok_and(|location| location.is_some())
}

/// Every node has the payment in its pool or on its main chain.
fn kept_everywhere(nodes: &[&TestNode], txid: &Txid) -> bool {
    nodes
        .iter()
        .all(|node| node.node.pool_transaction(txid).is_some() || confirmed(node, txid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_partitions_converge_on_the_most_work_and_keep_every_pooled_transaction() {
    let a = start_isolated(vec![]).await;
    let ab = Proxy::start(a.p2p.listen_port()).await;
    let b = start_isolated(vec![ab.url()]).await;
    let bc = Proxy::start(b.p2p.listen_port()).await;
    let c = start_isolated(vec![bc.url()]).await;
    let all = [&a, &b, &c];
    wait_until("a - b - c connected", LIMIT, || async {
        b.p2p.peers().len() == 2
    })
    .await;

    // Coins on both sides of the future partitions, mined and relayed under latency.
    ab.set_latency(Duration::from_millis(40));
    bc.set_latency(Duration::from_millis(40));
    a.mine_blocks(3).await;
    wait_until("a's blocks reach c under latency", LIMIT, || async {
        all.iter().all(|node| node.tip() == a.tip())
    })
    .await;
    c.mine_blocks(3).await;
    wait_until("c's blocks reach a under latency", LIMIT, || async {
        all.iter().all(|node| node.tip() == c.tip())
    })
    .await;
    let warm_up = pay(&a, &c, 1).await;
    wait_until("a payment crosses two slow links", LIMIT, || async {
        pooled_everywhere(&all, &warm_up)
    })
    .await;

    let mut payments = vec![warm_up];
    for (cycle, latency_ms) in [(1u32, 15u64), (2, 80), (3, 150)] {
        let started = std::time::Instant::now();
        bc.cut();
        wait_until("b and c notice the partition", LIMIT, || async {
            b.p2p.peers().len() == 1 && c.p2p.peers().is_empty()
        })
        .await;
        // The lighter side: one payment confirmed in one block, one left in the pool.
        let confirmed_on_light_side = pay(&a, &b, 2).await;
        wait_until("b pools a's payment", LIMIT, || async {
            b.node.pool_transaction(&confirmed_on_light_side).is_some()
        })
        .await;
        a.mine().await;
        // b spends what a paid it once a's block confirms it there: a wallet spends only
        // its own unconfirmed change, not others' payments (docs/API.md, GET /balance).
        wait_until("b has a's block", LIMIT, || async { b.tip() == a.tip() }).await;
        let pending_on_light_side = pay(&b, &a, 1).await;
        // The heavier side: two blocks, and a payment left in the pool.
        c.mine_blocks(2).await;
        let pending_on_heavy_side = pay(&c, &a, 1).await;
        let heavy_tip = c.tip();
        let heavy_height = c.height();
        assert!(heavy_height > a.height(), "c's branch is the longer one");

        ab.set_latency(Duration::from_millis(latency_ms));
        bc.set_latency(Duration::from_millis(latency_ms));
        bc.heal();
        wait_until("every node on the heavier branch", LIMIT, || async {
            all.iter().all(|node| node.tip() == heavy_tip)
        })
        .await;
        // Nothing valid was dropped: the light branch's confirmed payment came back, and
        // the payments nobody mined crossed the healed link, into every pool.
        for txid in [
            &confirmed_on_light_side,
            &pending_on_light_side,
            &pending_on_heavy_side,
        ] {
            wait_until("every pool holds the cycle's payments", LIMIT, || async {
                pooled_everywhere(&all, txid)
            })
            .await;
        }
        payments.extend([
            confirmed_on_light_side,
            pending_on_light_side,
            pending_on_heavy_side,
        ]);
        // Earlier payments: c's blocks may have confirmed them; none is lost.
        for txid in &payments {
            assert!(kept_everywhere(&all, txid), "payment {txid} was lost");
        }
        eprintln!(
            "partition cycle {cycle}: healed with {latency_ms} ms latency per link; all three \
             nodes at height {heavy_height} with {} pooled payments after {:?}",
            a.node.pool_transactions().len(),
            started.elapsed()
        );
    }

    // Finally the pools confirm: one block takes every payment, everywhere.
    let block = b.mine().await;
    wait_until("the last block reaches everyone", LIMIT, || async {
        all.iter().all(|node| node.tip() == block.compute_hash())
    })
    .await;
    wait_until("every pool empties", LIMIT, || async {
        all.iter()
            .all(|node| node.node.pool_transactions().is_empty())
    })
    .await;
    for txid in &payments {
        assert!(
            all.iter().all(|node| confirmed(node, txid)),
            "payment {txid} is not confirmed everywhere"
        );
    }
    drop((ab, bc));
    for node in [a, b, c] {
        node.stop().await;
    }
}
