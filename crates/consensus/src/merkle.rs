//! The Merkle tree over a block's transaction ids, and inclusion proofs for light clients.
//!
//! ```text
//!            root
//!          /      \
//!       n01        c        an odd node is carried up unchanged, never paired with
//!      /   \       |        itself, so [a, b, c] and [a, b, c, c] have different roots
//!     a     b      c        (the CVE-2012-2459 ambiguity cannot arise)
//! ```
//!
//! Leaves are txids (SHA-256d); inner nodes are tagged hashes
//! `tagged_hash("powchain/merkle-node", left || right)`, so no transaction can be read as
//! an inner node and no inner node as a transaction.

use crate::hash::{MerkleRoot, Txid, tagged_hash};

const NODE_TAG: &str = "powchain/merkle-node";

fn hash_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    tagged_hash(NODE_TAG, &[left, right])
}

/// The level above `level`: pairs hashed together, an odd last node carried up unchanged.
fn parent_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => hash_node(left, right),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// The Merkle root of `txids`; zero for an empty list (no valid block has one).
pub fn compute_merkle_root(txids: &[Txid]) -> MerkleRoot {
    if txids.is_empty() {
        return MerkleRoot::ZERO;
    }
    let mut level: Vec<[u8; 32]> = txids.iter().map(|txid| txid.0).collect();
    while level.len() > 1 {
        level = parent_level(&level);
    }
    MerkleRoot(level[0])
}

/// Which side a proof's sibling hash sits on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// The sibling is the left child; the running hash is the right.
    Left,
    /// The sibling is the right child; the running hash is the left.
    Right,
}

/// A proof that a txid is a leaf of a Merkle tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MerkleProof {
    /// The leaf's position.
    pub index: usize,
    /// Number of leaves in the tree.
    pub leaf_count: usize,
    /// Siblings from the leaf up, skipping levels where the node was carried up alone.
    pub siblings: Vec<(Side, [u8; 32])>,
}

impl MerkleProof {
    /// Builds the proof for leaf `index`; `None` if out of range.
    pub fn build(txids: &[Txid], index: usize) -> Option<MerkleProof> {
        if index >= txids.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut level: Vec<[u8; 32]> = txids.iter().map(|txid| txid.0).collect();
        let mut position = index;
        while level.len() > 1 {
            let sibling = position ^ 1;
            if sibling < level.len() {
                let side = if sibling < position {
                    Side::Left
                } else {
                    Side::Right
                };
                siblings.push((side, level[sibling]));
            }
            level = parent_level(&level);
            position /= 2;
        }
        Some(MerkleProof {
            index,
            leaf_count: txids.len(),
            siblings,
        })
    }

    /// True if this proof links `txid` to `root`. The claimed `index` and `leaf_count`
    /// shape the path but are not proven: an odd node carried up leaves no trace, so one
    /// path can fit several of them (docs/CONSENSUS.md, section 3).
    pub fn verify(&self, txid: Txid, root: MerkleRoot) -> bool {
        if self.index >= self.leaf_count {
            return false;
        }
        // Recompute the path shape from index and leaf count so a proof cannot claim a
        // different position than the one it proves.
        let mut expected = Vec::new();
        let mut position = self.index;
        let mut width = self.leaf_count;
        while width > 1 {
            let sibling = position ^ 1;
            if sibling < width {
                expected.push(if sibling < position {
                    Side::Left
                } else {
                    Side::Right
                });
            }
            position /= 2;
            width = width.div_ceil(2);
        }
        if expected.len() != self.siblings.len()
            || expected
                .iter()
                .zip(&self.siblings)
                .any(|(side, (claimed, _))| side != claimed)
        {
            return false;
        }
        let computed = self
            .siblings
            .iter()
            .fold(txid.0, |running, (side, sibling)| match side {
                Side::Left => hash_node(sibling, &running),
                Side::Right => hash_node(&running, sibling),
            });
        computed == root.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn txid(byte: u8) -> Txid {
        Txid([byte; 32])
    }

    #[test]
    fn single_leaf_root_is_the_leaf() {
        assert_eq!(compute_merkle_root(&[txid(7)]).0, [7; 32]);
    }

    #[test]
    fn duplicated_last_leaf_changes_the_root() {
        // CVE-2012-2459: in Bitcoin these two lists share a root.
        let three = [txid(1), txid(2), txid(3)];
        let four = [txid(1), txid(2), txid(3), txid(3)];
        assert_ne!(compute_merkle_root(&three), compute_merkle_root(&four));
        let five = [txid(1), txid(2), txid(3), txid(4), txid(5)];
        let six = [txid(1), txid(2), txid(3), txid(4), txid(5), txid(5)];
        assert_ne!(compute_merkle_root(&five), compute_merkle_root(&six));
    }

    /// What docs/CONSENSUS.md says a proof does not prove: its position and tree size.
    #[test]
    fn a_proof_proves_membership_not_its_position_or_the_tree_size() {
        let txids = [txid(1), txid(2), txid(3)];
        let root = compute_merkle_root(&txids);
        let mut proof = MerkleProof::build(&txids, 2).expect("in range");
        assert!(proof.verify(txid(3), root));
        (proof.index, proof.leaf_count) = (1, 2);
        assert!(
            proof.verify(txid(3), root),
            "the same path fits index 1 of 2"
        );
        assert!(!proof.verify(txid(2), root), "but no other txid");
    }

    #[test]
    fn order_matters() {
        assert_ne!(
            compute_merkle_root(&[txid(1), txid(2)]),
            compute_merkle_root(&[txid(2), txid(1)])
        );
    }

    proptest! {
        #[test]
        fn every_leaf_has_a_valid_proof(count in 1usize..40, seed in any::<u8>()) {
            let txids: Vec<Txid> = (0..count).map(|index| txid(seed.wrapping_add(index as u8))).collect();
            let root = compute_merkle_root(&txids);
            for (index, leaf) in txids.iter().enumerate() {
                let proof = MerkleProof::build(&txids, index).expect("in range");
                prop_assert!(proof.verify(*leaf, root));
                // A txid not in the list does not verify.
                prop_assert!(!proof.verify(txid(seed.wrapping_sub(1)), root));
                // Nor does the proof for one position claimed for another.
                if count > 1 {
                    let mut moved = proof.clone();
                    moved.index = (index + 1) % count;
                    prop_assert!(!moved.verify(*leaf, root));
                }
            }
            prop_assert!(MerkleProof::build(&txids, count).is_none());
        }
    }
}
