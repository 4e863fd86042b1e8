//! Where the simulated nodes are, whom they dial, how long their links take and how much
//! hash power each has.
//!
//! Latencies come from a published table of average round trips between cloud regions
//! ("Latency Between AWS Global Regions", 2017, as tabulated at
//! acomputerscientistlearnsaws.blogspot.com/2017/04/aws-regions.html), symmetrised and
//! halved for one way; two nodes in the same region are 1 ms apart. Hash power is skewed as
//! in a real network: a few large miners hold most of it (see [`MINER_SHARES`]).

use std::time::Duration;

use crate::random::SimRng;

/// A region nodes can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region(usize);

/// The regions: name and the share of nodes placed there (most public nodes of a real
/// network are in North America and Europe).
pub(crate) const REGIONS: [(&str, f64); 7] = [
    ("us-east", 0.24),
    ("us-west", 0.12),
    ("eu-ireland", 0.18),
    ("eu-frankfurt", 0.24),
    ("ap-tokyo", 0.09),
    ("ap-singapore", 0.09),
    ("sa-saopaulo", 0.04),
];

/// The name of `region` (its host's name when nodes share a host a region, hosts.rs).
pub(crate) fn region_name(Region(index): Region) -> &'static str {
    REGIONS[index].0
}

/// Average round trips in milliseconds between the regions above, in their order.
const ROUND_TRIP_MS: [[f64; 7]; 7] = [
    [2.0, 87.8, 80.5, 88.6, 145.3, 216.7, 119.5],
    [87.8, 2.0, 137.0, 159.5, 89.1, 161.4, 182.7],
    [80.5, 137.0, 2.0, 19.6, 212.4, 238.5, 191.3],
    [88.6, 159.5, 19.6, 2.0, 236.5, 325.9, 194.9],
    [145.3, 89.1, 212.4, 236.5, 2.0, 73.8, 256.8],
    [216.7, 161.4, 238.5, 325.9, 73.8, 2.0, 328.1],
    [119.5, 182.7, 191.3, 194.9, 256.8, 328.1, 2.0],
];

/// Shares of the hash power of the largest miners (roughly the largest pools' shares on
/// a large proof-of-work network); the rest is spread evenly over the other nodes.
pub(crate) const MINER_SHARES: [f64; 6] = [0.28, 0.22, 0.12, 0.10, 0.08, 0.05];

/// How links delay messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyModel {
    /// Every link 1 ms one way.
    Lan,
    /// One way: half the round trip between the two nodes' regions.
    Wan,
}

impl std::str::FromStr for LatencyModel {
    type Err = String;

    fn from_str(text: &str) -> Result<LatencyModel, String> {
        match text {
            "lan" => Ok(LatencyModel::Lan),
            "wan" => Ok(LatencyModel::Wan),
            other => Err(format!("unknown latency model {other:?}: use lan or wan")),
        }
    }
}

/// One simulated node's place in the network.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub(crate) region: Region,
    /// Nodes it dials.
    pub(crate) outbound: Vec<usize>,
    /// Its share of the hash power (all shares sum to 1).
    pub(crate) hash_share: f64,
    /// Its uplink, in bits per second.
    pub(crate) uplink_bits_per_second: u64,
}

/// The whole network's layout.
#[derive(Clone, Debug)]
pub(crate) struct Topology {
    pub(crate) nodes: Vec<Placement>,
    latency: LatencyModel,
}

impl Topology {
    /// Draws a network of `count` nodes, each dialling `outbound` distinct others, with
    /// uplinks between `min_mbit` and `max_mbit`.
    pub(crate) fn draw(
        rng: &mut SimRng,
        count: usize,
        outbound: usize,
        latency: LatencyModel,
        (min_mbit, max_mbit): (u64, u64),
    ) -> Topology {
        let weights: Vec<f64> = REGIONS.iter().map(|(_, share)| *share).collect();
        let mut order: Vec<usize> = (0..count).collect();
        rng.shuffle(&mut order);
        let mut shares = vec![0.0; count];
        let large = MINER_SHARES.len().min(count.saturating_sub(1)).max(1);
        let large_total: f64 = MINER_SHARES[..large].iter().sum();
        let rest = 1.0 - large_total;
        for (rank, node) in order.iter().enumerate() {
            shares[*node] = if rank < large {
                MINER_SHARES[rank]
            } else {
                rest / (count - large) as f64
            };
        }
        if count <= large {
            // Too few nodes for a tail: the large shares are scaled to sum to 1.
            for share in &mut shares {
                *share /= large_total;
            }
        }
        let nodes = (0..count)
            .map(|node| {
                let region = Region(rng.weighted(&weights));
                let wanted = outbound.min(count - 1);
                let mut outbound = Vec::with_capacity(wanted);
                while outbound.len() < wanted {
                    let other = rng.below(count);
                    if other != node && !outbound.contains(&other) {
                        outbound.push(other);
                    }
                }
                let spread = max_mbit.saturating_sub(min_mbit);
                let mbit = min_mbit
                    + if spread == 0 {
                        0
                    } else {
                        rng.next_u64() % (spread + 1)
                    };
                Placement {
                    region,
                    outbound,
                    hash_share: shares[node],
                    uplink_bits_per_second: mbit * 1_000_000,
                }
            })
            .collect();
        Topology { nodes, latency }
    }

    /// The stale rate physics allows at mean block interval `interval`: the share of
    /// blocks some other miner would beat if every block reached every node over its
    /// direct link at once (no validation, no bandwidth, no relay hops). A block of node
    /// `i` races while another miner `j` has not heard of it, for the one-way latency
    /// between them: the chance that a block is found by someone in that window is
    /// `1 - exp(-sum over j of share_j * latency_ij / interval)`; averaged over who finds
    /// the block. In parts per million.
    pub(crate) fn stale_floor_ppm(&self, interval: Duration) -> u64 {
        self.stale_rate_ppm(interval, |finder| {
            (0..self.nodes.len())
                .map(|other| self.one_way(finder, other))
                .collect()
        })
    }

    /// The same bound on the links the nodes actually have: every block crosses every
    /// link at once, with no validation and no bandwidth cost, so it reaches each node
    /// along the fastest path of links from its finder (a node reaches another it has no
    /// link to through the peers between them). What is left between this and the
    /// measured rate is the relay's own cost; what lies between this and
    /// [`Topology::stale_floor_ppm`] is the topology's.
    pub(crate) fn stale_floor_over_links_ppm(&self, interval: Duration) -> u64 {
        let links = self.links();
        self.stale_rate_ppm(interval, |finder| self.path_delays(&links, finder))
    }

    /// The stale-rate formula of [`Topology::stale_floor_ppm`], with the delay from each
    /// finder to every node given by `delays` (`Duration::MAX`: never reached).
    fn stale_rate_ppm(&self, interval: Duration, delays: impl Fn(usize) -> Vec<Duration>) -> u64 {
        let interval = interval.as_secs_f64();
        if interval <= 0.0 {
            return 0;
        }
        let shares: Vec<f64> = self.nodes.iter().map(|node| node.hash_share).collect();
        let floor: f64 = (0..self.nodes.len())
            .map(|finder| {
                let delays = delays(finder);
                let delay = |other: usize| match delays[other] {
                    Duration::MAX => None,
                    delay => Some(delay.as_secs_f64()),
                };
                shares[finder] * race_chance(&shares, finder, delay, interval)
            })
            .sum();
        (floor * 1_000_000.0).round() as u64
    }

    /// Each node's peers: those it dials and those that dial it.
    fn links(&self) -> Vec<Vec<usize>> {
        let mut links = vec![Vec::new(); self.nodes.len()];
        for (node, placement) in self.nodes.iter().enumerate() {
            for &other in &placement.outbound {
                links[node].push(other);
                links[other].push(node);
            }
        }
        links
    }

    /// The one-way delay of the fastest path of links from `from` to every node
    /// (Dijkstra); `Duration::MAX` for a node no path reaches.
    fn path_delays(&self, links: &[Vec<usize>], from: usize) -> Vec<Duration> {
        let mut delays = vec![Duration::MAX; self.nodes.len()];
        let mut queue = std::collections::BinaryHeap::new();
        delays[from] = Duration::ZERO;
        queue.push(std::cmp::Reverse((Duration::ZERO, from)));
        while let Some(std::cmp::Reverse((delay, node))) = queue.pop() {
            if delay > delays[node] {
                continue;
            }
            for &next in &links[node] {
                let through = delay.saturating_add(self.one_way(node, next));
                if through < delays[next] {
                    delays[next] = through;
                    queue.push(std::cmp::Reverse((through, next)));
                }
            }
        }
        delays
    }

    /// Gives the largest miner `share` of the hash power and scales the others' to the
    /// rest, keeping their proportions.
    pub(crate) fn set_largest_share(&mut self, share: f64) {
        let largest = self.largest_miner();
        let others: f64 = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != largest)
            .map(|(_, node)| node.hash_share)
            .sum();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.hash_share = if index == largest {
                share
            } else if others > 0.0 {
                node.hash_share / others * (1.0 - share)
            } else {
                0.0
            };
        }
    }

    /// Has the largest miner dial `peers` distinct others in all (more than the rest dial:
    /// a miner that buys its way to the network's ears), the new ones drawn from `rng`.
    pub(crate) fn widen_largest_miner(&mut self, rng: &mut SimRng, peers: usize) {
        let largest = self.largest_miner();
        let count = self.nodes.len();
        let wanted = peers.min(count - 1);
        let outbound = &mut self.nodes[largest].outbound;
        while outbound.len() < wanted {
            let other = rng.below(count);
            if other != largest && !outbound.contains(&other) {
                outbound.push(other);
            }
        }
    }

    /// The node with the most hash power (the first of equals).
    pub(crate) fn largest_miner(&self) -> usize {
        let mut largest = 0;
        for (index, node) in self.nodes.iter().enumerate() {
            if node.hash_share > self.nodes[largest].hash_share {
                largest = index;
            }
        }
        largest
    }

    /// The one-way delay between two nodes.
    pub(crate) fn one_way(&self, a: usize, b: usize) -> Duration {
        match self.latency {
            LatencyModel::Lan => Duration::from_millis(1),
            LatencyModel::Wan => {
                let (Region(x), Region(y)) = (self.nodes[a].region, self.nodes[b].region);
                Duration::from_micros((ROUND_TRIP_MS[x][y] * 500.0) as u64)
            }
        }
    }
}

/// The chance that a block `finder` found loses a race: that some other miner finds a
/// block before this one reaches it, `1 - exp(-sum over j of share_j * delay_j /
/// interval)`, with `delay(j)` the seconds the block takes to reach miner `j` (`None`:
/// never, which makes the loss certain) and `interval` the mean block interval in
/// seconds. Miners with no hash share are no rivals and are not asked for a delay.
pub(crate) fn race_chance(
    shares: &[f64],
    finder: usize,
    delay: impl Fn(usize) -> Option<f64>,
    interval: f64,
) -> f64 {
    let exposure: f64 = shares
        .iter()
        .enumerate()
        .filter(|(other, share)| *other != finder && **share > 0.0)
        .map(|(other, share)| share * delay(other).unwrap_or(f64::INFINITY))
        .sum();
    1.0 - (-exposure / interval).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_miner_can_dial_more_peers_than_the_rest() {
        let drawn = Topology::draw(&mut SimRng::new(3), 20, 8, LatencyModel::Wan, (20, 100));
        let largest = drawn.largest_miner();
        for peers in [4, 12, 19, 50] {
            let mut topology =
                Topology::draw(&mut SimRng::new(3), 20, 8, LatencyModel::Wan, (20, 100));
            topology.widen_largest_miner(&mut SimRng::new(5), peers);
            let outbound = &topology.nodes[largest].outbound;
            assert_eq!(outbound.len(), peers.clamp(8, 19), "{peers} asked");
            assert_eq!(
                outbound[..8],
                drawn.nodes[largest].outbound[..],
                "its first 8 stay"
            );
            assert!(!outbound.contains(&largest));
            let mut distinct = outbound.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), outbound.len());
            for (index, node) in topology.nodes.iter().enumerate() {
                if index != largest {
                    assert_eq!(node.outbound, drawn.nodes[index].outbound, "node {index}");
                }
            }
        }
    }

    #[test]
    fn the_largest_share_can_be_set_and_the_rest_keep_their_proportions() {
        let mut topology = Topology::draw(&mut SimRng::new(3), 20, 8, LatencyModel::Wan, (20, 100));
        let largest = topology.largest_miner();
        let (a, b) = (
            (0..20).find(|index| *index != largest).expect("another"),
            (0..20)
                .rev()
                .find(|index| *index != largest)
                .expect("a third"),
        );
        let ratio = topology.nodes[a].hash_share / topology.nodes[b].hash_share;
        topology.set_largest_share(0.45);
        assert_eq!(topology.largest_miner(), largest);
        assert!((topology.nodes[largest].hash_share - 0.45).abs() < 1e-12);
        let total: f64 = topology.nodes.iter().map(|node| node.hash_share).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let after = topology.nodes[a].hash_share / topology.nodes[b].hash_share;
        assert!((ratio - after).abs() < 1e-9);
    }

    #[test]
    fn the_table_is_symmetric_and_shares_sum_to_one() {
        for (x, row) in ROUND_TRIP_MS.iter().enumerate() {
            for (y, value) in row.iter().enumerate() {
                assert_eq!(*value, ROUND_TRIP_MS[y][x]);
            }
        }
        for count in [1, 2, 5, 7, 30, 200] {
            let topology =
                Topology::draw(&mut SimRng::new(3), count, 8, LatencyModel::Wan, (20, 100));
            let total: f64 = topology.nodes.iter().map(|node| node.hash_share).sum();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{count} nodes: shares sum to {total}"
            );
            for (index, node) in topology.nodes.iter().enumerate() {
                assert_eq!(node.outbound.len(), 8.min(count - 1));
                assert!(!node.outbound.contains(&index));
                let mbit = node.uplink_bits_per_second / 1_000_000;
                assert!((20..=100).contains(&mbit));
            }
        }
    }

    #[test]
    fn wan_links_take_half_the_regions_round_trip() {
        let topology = Topology::draw(&mut SimRng::new(9), 50, 8, LatencyModel::Wan, (20, 20));
        for a in 0..50 {
            for b in 0..50 {
                let one_way = topology.one_way(a, b);
                assert_eq!(one_way, topology.one_way(b, a));
                assert!(
                    one_way >= Duration::from_millis(1) && one_way <= Duration::from_millis(165)
                );
            }
        }
    }

    #[test]
    fn the_stale_floor_grows_with_latency_and_shrinks_with_the_interval() {
        let draw = |latency| Topology::draw(&mut SimRng::new(4), 30, 8, latency, (20, 100));
        let (wan, lan) = (draw(LatencyModel::Wan), draw(LatencyModel::Lan));
        let three = Duration::from_secs(3);
        // On a LAN every link takes 1 ms: about (1 - the finder's share) * 1 ms / 3 s.
        let lan_floor = lan.stale_floor_ppm(three);
        assert!((200..=334).contains(&lan_floor), "{lan_floor} ppm");
        let wan_floor = wan.stale_floor_ppm(three);
        assert!(
            wan_floor > 10 * lan_floor,
            "{wan_floor} against {lan_floor} ppm"
        );
        assert!(wan.stale_floor_ppm(Duration::from_secs(600)) < wan_floor / 100);
        assert_eq!(wan.stale_floor_ppm(Duration::ZERO), 0);
    }

    #[test]
    fn over_the_drawn_links_a_block_takes_the_fastest_path_of_hops() {
        let three = Duration::from_secs(3);
        // On a LAN a path takes a millisecond a hop: the hops a breadth-first walk counts.
        let lan = Topology::draw(&mut SimRng::new(4), 30, 3, LatencyModel::Lan, (20, 100));
        let links = lan.links();
        for from in [0, 7, 29] {
            let mut hops = vec![usize::MAX; 30];
            hops[from] = 0;
            let mut queue = std::collections::VecDeque::from([from]);
            while let Some(node) = queue.pop_front() {
                for &next in &links[node] {
                    if hops[next] == usize::MAX {
                        hops[next] = hops[node] + 1;
                        queue.push_back(next);
                    }
                }
            }
            let delays = lan.path_delays(&links, from);
            for node in 0..30 {
                assert_eq!(
                    delays[node],
                    Duration::from_millis(hops[node] as u64),
                    "{from} to {node}"
                );
            }
        }
        // Nodes that are not neighbours are more than one hop apart.
        assert!(lan.stale_floor_over_links_ppm(three) > lan.stale_floor_ppm(three));
        // With a link between every pair, no path is slower than the direct link, and on
        // a LAN none is faster.
        let mesh = |latency| Topology::draw(&mut SimRng::new(4), 12, 11, latency, (20, 100));
        let (lan, wan) = (mesh(LatencyModel::Lan), mesh(LatencyModel::Wan));
        assert_eq!(
            lan.stale_floor_over_links_ppm(three),
            lan.stale_floor_ppm(three)
        );
        assert!(wan.stale_floor_over_links_ppm(three) <= wan.stale_floor_ppm(three));
        // A miner nobody can reach races every block.
        let mut islands = Topology::draw(&mut SimRng::new(4), 5, 0, LatencyModel::Wan, (20, 100));
        assert_eq!(islands.stale_floor_over_links_ppm(three), 1_000_000);
        // A node with no hash power is no rival, reached or not.
        let moved = islands.nodes[4].hash_share;
        islands.nodes[4].hash_share = 0.0;
        islands.nodes[0].hash_share += moved;
        assert_eq!(islands.stale_floor_over_links_ppm(three), 1_000_000);
        islands.set_largest_share(1.0);
        assert_eq!(islands.stale_floor_over_links_ppm(three), 0);
    }
}
