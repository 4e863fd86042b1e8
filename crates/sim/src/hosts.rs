//! Which turmoil host each node runs on, and at which port.
//!
//! turmoil 0.7 keeps a link for every pair of hosts and, at every step, visits every link
//! for every host (`Topology::deliver_messages`): n hosts cost n × n(n-1)/2 link visits a
//! step, most of the wall time of a run of 200 hosts ("Scale and wall time" in
//! docs/SIMULATION.md). Nodes of one region are the same distance from every other region
//! (topology.rs), so they can share a host: [`HostLayout::Region`] runs each region's nodes
//! on one host, each listening on a port of its own, and turmoil's links become the pairs
//! of regions (21 for 7 regions, against 19,900 for 200 hosts).
//!
//! What that changes, besides the wall time:
//! - Nodes of one region reach each other over their host's loopback, which turmoil
//!   delivers one step later (5 ms at `--tick-ms 5`) instead of after the region's 1 ms.
//!   With steps of 5 ms a 1 ms link also delivers at the next step, so little moves.
//! - turmoil partitions and crashes whole hosts: cutting two nodes apart, or crashing one,
//!   would reach its whole region. A partition splits along regions instead
//!   (`Partition::by_groups`), and the crash scenario needs a host a node.
//! - An honest node that banned another would ban its region's address. Honest nodes do
//!   not ban each other; hostile hosts keep hosts of their own.

use std::collections::HashMap;
use std::time::Duration;

use crate::topology::{self, Topology};

/// The port a node listens on when it has a host of its own.
const PORT: u16 = 8333;
/// turmoil's ephemeral ports (its default range) start here: listening ports stay below.
const FIRST_EPHEMERAL_PORT: u16 = 49_152;

/// How nodes are placed on turmoil's hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostLayout {
    /// A host for each node, all listening on port 8333: any fault reaches one node.
    #[default]
    Node,
    /// A host for each region, its nodes on ports 8333 and up (a port a node): turmoil's
    /// cost per step falls from the cube of the nodes to the cube of the regions.
    Region,
}

impl std::str::FromStr for HostLayout {
    type Err = String;

    fn from_str(text: &str) -> Result<HostLayout, String> {
        match text {
            "node" => Ok(HostLayout::Node),
            "region" => Ok(HostLayout::Region),
            other => Err(format!("unknown host layout {other:?}: node or region")),
        }
    }
}

/// The most nodes [`HostLayout::Region`] can place: their ports must stay below turmoil's
/// ephemeral ports.
pub(crate) const MAX_NODES_BY_REGION: usize = (FIRST_EPHEMERAL_PORT - PORT) as usize;

/// Every node's host and port.
pub(crate) struct Hosts {
    /// Each node's host name, by node.
    host: Vec<String>,
    /// Each node's listening port, by node.
    port: Vec<u16>,
    /// The hosts, each with the nodes it runs, in the order of their first node.
    groups: Vec<(String, Vec<usize>)>,
}

impl Hosts {
    /// Places `topology`'s nodes as `layout` says. With [`HostLayout::Region`] a network
    /// may hold at most [`MAX_NODES_BY_REGION`] nodes (the caller checks).
    pub(crate) fn place(layout: HostLayout, topology: &Topology) -> Hosts {
        let count = topology.nodes.len();
        let (host, port): (Vec<String>, Vec<u16>) = match layout {
            HostLayout::Node => (
                (0..count).map(|node| format!("node-{node}")).collect(),
                vec![PORT; count],
            ),
            HostLayout::Region => (
                topology
                    .nodes
                    .iter()
                    .map(|node| topology::region_name(node.region).to_owned())
                    .collect(),
                (0..count)
                    .map(|node| PORT + u16::try_from(node).unwrap_or(u16::MAX - PORT))
                    .collect(),
            ),
        };
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (node, name) in host.iter().enumerate() {
            match group_of.get(name.as_str()) {
                Some(&group) => groups[group].1.push(node),
                None => {
                    group_of.insert(name, groups.len());
                    groups.push((name.clone(), vec![node]));
                }
            }
        }
        Hosts { host, port, groups }
    }

    /// Node `node`'s host name.
    pub(crate) fn host(&self, node: usize) -> &str {
        &self.host[node]
    }

    /// The port node `node` listens on.
    pub(crate) fn port(&self, node: usize) -> u16 {
        self.port[node]
    }

    /// Where peers dial node `node`: `host:port`.
    pub(crate) fn address(&self, node: usize) -> String {
        format!("{}:{}", self.host[node], self.port[node])
    }

    /// The hosts, each with the nodes it runs, in the order of their first node.
    pub(crate) fn groups(&self) -> &[(String, Vec<usize>)] {
        &self.groups
    }

    /// Every pair of distinct hosts with its one-way latency: a host's nodes are all as
    /// far from another host's nodes, so its first node stands for them.
    pub(crate) fn links(&self, topology: &Topology) -> Vec<(String, String, Duration)> {
        let groups = &self.groups;
        let mut links = Vec::new();
        for (at, (a, a_nodes)) in groups.iter().enumerate() {
            for (b, b_nodes) in &groups[at + 1..] {
                links.push((
                    a.clone(),
                    b.clone(),
                    topology.one_way(a_nodes[0], b_nodes[0]),
                ));
            }
        }
        links
    }

    /// The one-way latency from node `from` to the nodes of every host, by host name (a
    /// lost segment waits for a round trip of it).
    pub(crate) fn one_way_from(
        &self,
        topology: &Topology,
        from: usize,
    ) -> HashMap<String, Duration> {
        self.groups
            .iter()
            .map(|(host, nodes)| (host.clone(), topology.one_way(from, nodes[0])))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SimRng;
    use crate::topology::LatencyModel;

    fn drawn(count: usize) -> Topology {
        Topology::draw(&mut SimRng::new(11), count, 8, LatencyModel::Wan, (20, 100))
    }

    #[test]
    fn a_host_a_node_listens_on_one_port_and_links_every_pair() {
        let topology = drawn(12);
        let hosts = Hosts::place(HostLayout::Node, &topology);
        assert_eq!(hosts.address(3), "node-3:8333");
        assert_eq!(hosts.groups().len(), 12);
        let links = hosts.links(&topology);
        assert_eq!(links.len(), 12 * 11 / 2);
        for (a, b, latency) in links {
            let index = |name: &str| name["node-".len()..].parse::<usize>().expect("a node");
            assert_eq!(latency, topology.one_way(index(&a), index(&b)));
        }
    }

    #[test]
    fn a_host_a_region_gives_each_node_its_own_port_and_keeps_every_latency() {
        let topology = drawn(200);
        let hosts = Hosts::place(HostLayout::Region, &topology);
        let groups = hosts.groups();
        assert!(groups.len() <= topology::REGIONS.len(), "{}", groups.len());
        assert!(groups.len() >= 5, "200 nodes fill most regions");
        // Each node in its host's group, once; groups in the order of their first node.
        let mut grouped: Vec<usize> = Vec::new();
        for (name, nodes) in groups {
            assert!(nodes.iter().all(|node| hosts.host(*node) == name));
            grouped.extend(nodes);
        }
        assert!(groups.windows(2).all(|pair| pair[0].1[0] < pair[1].1[0]));
        grouped.sort_unstable();
        assert_eq!(grouped, (0..200).collect::<Vec<_>>());
        let mut addresses: Vec<String> = (0..200).map(|node| hosts.address(node)).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), 200, "every node its own address");
        let links = hosts.links(&topology);
        assert_eq!(links.len(), groups.len() * (groups.len() - 1) / 2);
        // Any two nodes are as far apart as with hosts of their own.
        for a in 0..200 {
            let from_a = hosts.one_way_from(&topology, a);
            for b in 0..200 {
                assert_eq!(from_a[hosts.host(b)], topology.one_way(a, b), "{a} to {b}");
            }
        }
        for (x, y, latency) in links {
            let a = (0..200)
                .find(|node| hosts.host(*node) == x)
                .expect("a node on x");
            for b in (0..200).filter(|node| hosts.host(*node) == y) {
                assert_eq!(latency, topology.one_way(a, b));
            }
        }
    }
}
