//! Inbound eviction: when every inbound slot is taken, which peer makes room.
//!
//! A stranger who fills the slots first must not keep honest peers out, so a full node
//! still admits a newcomer by closing its least useful inbound peer. The rule is Bitcoin
//! Core's (`src/node/eviction.cpp`): protect the peers an attacker finds hardest to
//! imitate, then take the youngest peer of the most crowded address group among the rest.
//!
//! ```text
//!   candidates: every inbound peer
//!     protect 4  by a keyed hash of their address group  (an attacker cannot aim at it)
//!     protect 8  with the lowest ping                     (close, live peers)
//!     protect 4  that most recently sent a new transaction
//!     protect 4  that most recently sent a new block
//!     protect half of the rest, the longest connected, up to half of those places
//!       going first to local peers (127.0.0.1, ::1), oldest first
//!   rest ──▶ the group with most peers (ties: the one with the youngest) ──▶ its youngest
//!   no rest ──▶ nobody is evicted; the newcomer is refused
//! ```

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::address_group::AddressGroup;
use crate::registry::PeerId;

/// What eviction knows of one inbound peer.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) id: PeerId,
    pub(crate) group: AddressGroup,
    /// A hash of `group` under a key this node drew at random.
    pub(crate) group_key: u64,
    pub(crate) connected_ms: u64,
    /// Its lowest ping round trip, if it ever answered one.
    pub(crate) min_ping_ms: Option<u64>,
    /// When it last sent a block new to us.
    pub(crate) last_block_ms: Option<u64>,
    /// When it last sent a transaction new to us that we pooled.
    pub(crate) last_transaction_ms: Option<u64>,
}

/// Removes the `count` candidates that sort first by `key`.
fn protect<K: Ord>(candidates: &mut Vec<Candidate>, count: usize, key: impl Fn(&Candidate) -> K) {
    candidates.sort_by_key(|candidate| key(candidate));
    let protected = count.min(candidates.len());
    candidates.drain(..protected);
}

/// The inbound peer to close so a newcomer can have its slot, if any may be closed.
pub(crate) fn select_victim(mut candidates: Vec<Candidate>) -> Option<PeerId> {
    protect(&mut candidates, 4, |c| Reverse(c.group_key));
    protect(&mut candidates, 8, |c| {
        (c.min_ping_ms.is_none(), c.min_ping_ms)
    });
    protect(&mut candidates, 4, |c| Reverse(c.last_transaction_ms));
    protect(&mut candidates, 4, |c| Reverse(c.last_block_ms));
    // Half of the rest by uptime; up to half of those places go first to local peers
    // (127.0.0.1, ::1: the operator's own nodes, or a local proxy such as Tor's), as Bitcoin
    // Core reserves them for networks that are otherwise at a disadvantage.
    let half = candidates.len() / 2;
    let mut locals: Vec<(u64, PeerId)> = candidates
        .iter()
        .filter(|c| c.group == AddressGroup::Local)
        .map(|c| (c.connected_ms, c.id))
        .collect();
    locals.sort();
    locals.truncate(half / 2);
    candidates.retain(|c| !locals.iter().any(|(_, id)| *id == c.id));
    protect(&mut candidates, half - locals.len(), |c| c.connected_ms);
    let mut groups: HashMap<AddressGroup, Vec<&Candidate>> = HashMap::new();
    for candidate in &candidates {
        groups.entry(candidate.group).or_default().push(candidate);
    }
    groups
        .values()
        .filter_map(|members| {
            let youngest = members.iter().map(|c| (c.connected_ms, c.id)).max()?;
            Some((members.len(), youngest))
        })
        .max()
        .map(|(_, (_, id))| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: u64, group: AddressGroup, connected_ms: u64) -> Candidate {
        Candidate {
            id: PeerId::for_test(id),
            group,
            group_key: id,
            connected_ms,
            min_ping_ms: None,
            last_block_ms: None,
            last_transaction_ms: None,
        }
    }

    /// `count` peers from distinct groups, one each, connected at 1000 + id.
    fn spread(count: u64) -> Vec<Candidate> {
        (0..count)
            .map(|id| candidate(id, AddressGroup::V4([10, id as u8]), 1000 + id))
            .collect()
    }

    #[test]
    fn few_peers_are_all_protected() {
        assert_eq!(select_victim(spread(20)), None, "4 + 8 + 4 + 4 protected");
        assert_eq!(select_victim(Vec::new()), None);
    }

    #[test]
    fn the_youngest_of_the_most_crowded_group_goes() {
        let mut peers = spread(24);
        // Eight more from one group, connected after all others.
        for id in 100..108 {
            peers.push(candidate(id, AddressGroup::V4([203, 0]), 5000 + id));
        }
        // Keep the crowd out of the keyed-hash protection.
        for peer in &mut peers {
            if peer.group == AddressGroup::V4([203, 0]) {
                peer.group_key = 0;
            }
        }
        assert_eq!(select_victim(peers), Some(PeerId::for_test(107)));
    }

    #[test]
    fn useful_peers_are_protected_from_a_crowd_of_idle_ones() {
        let crowd = AddressGroup::V4([203, 0]);
        let mut peers: Vec<Candidate> = (0..31)
            .map(|id| Candidate {
                group_key: 0,
                ..candidate(id, crowd, 1000 + id)
            })
            .collect();
        // The honest peer: the youngest, in the crowd's group even, but it relays blocks.
        let mut honest = candidate(99, crowd, 9000);
        honest.last_block_ms = Some(9500);
        honest.group_key = 0;
        peers.push(honest);
        let victim = select_victim(peers).expect("someone goes");
        assert_ne!(victim, PeerId::for_test(99));
        assert_eq!(victim, PeerId::for_test(30), "the youngest idle one");
    }

    #[test]
    fn a_local_peer_is_protected_from_a_crowd_of_strangers_in_single_groups() {
        let mut peers = spread(32);
        for peer in &mut peers {
            peer.group_key = 0;
        }
        // The youngest peer is local and has answered no ping yet.
        if let Some(last) = peers.last_mut() {
            last.group = AddressGroup::Local;
        }
        let victim = select_victim(peers).expect("someone goes");
        assert_ne!(victim, PeerId::for_test(31));
        assert_eq!(victim, PeerId::for_test(30), "the youngest stranger");
    }

    #[test]
    fn peers_that_answer_pings_fast_are_protected() {
        let mut peers = spread(32);
        for peer in &mut peers {
            peer.group = AddressGroup::Local;
            peer.group_key = 0;
        }
        // The youngest peer answers pings; the others never did.
        if let Some(last) = peers.last_mut() {
            last.min_ping_ms = Some(1);
        }
        let victim = select_victim(peers).expect("someone goes");
        assert_eq!(victim, PeerId::for_test(30));
    }
}
