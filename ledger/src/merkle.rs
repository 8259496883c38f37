//! RFC 6962-style Merkle trees over 32-byte leaves (transaction ids), with inclusion proofs.
//!
//! Leaves and inner nodes are hashed in separate domains ([`Domain::MerkleLeaf`],
//! [`Domain::MerkleNode`]), so an inner node can never be passed off as a leaf. The split rule is
//! RFC 6962's: the left subtree holds the largest power of two strictly below `n` leaves.
//! Verification follows RFC 9162 §2.1.3.2.

use serde::{Deserialize, Serialize};

use crate::bytes::Hash;
use crate::hash::{hash, hash_parts, Domain};

/// Most siblings a proof may carry (trees up to 2^64 leaves).
pub const MAX_PROOF_LEN: usize = 64;

/// The root of an empty tree.
pub fn empty_root() -> Hash {
    hash(Domain::MerkleNode, b"")
}

/// Hash of one leaf.
pub fn leaf_hash(leaf: &Hash) -> Hash {
    hash(Domain::MerkleLeaf, leaf.as_bytes())
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    hash_parts(Domain::MerkleNode, &[left.as_bytes(), right.as_bytes()])
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// The Merkle root of `leaves`, in order.
pub fn root(leaves: &[Hash]) -> Hash {
    subtree_root(leaves)
}

/// Proof that one leaf is at `index` in a tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf.
    pub index: u64,
    /// Number of leaves in the tree.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

/// Builds the inclusion proof for `leaves[index]`; `None` if `index` is out of range.
pub fn prove(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    collect_path(leaves, index, &mut path);
    Some(InclusionProof {
        index: index as u64,
        tree_size: leaves.len() as u64,
        path,
    })
}

fn collect_path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        collect_path(&leaves[..k], m, out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], m - k, out);
        out.push(subtree_root(&leaves[..k]));
    }
}

/// Why an inclusion proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Index not below tree size.
    #[error("leaf index {index} is outside a tree of {tree_size} leaves")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The size.
        tree_size: u64,
    },
    /// Path of the wrong length or too long.
    #[error("proof path has the wrong length for this index and tree size")]
    BadPathLength,
    /// The recomputed root differs.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

impl InclusionProof {
    /// Checks that `leaf` is at `self.index` in the tree with `expected_root`.
    pub fn verify(&self, leaf: &Hash, expected_root: &Hash) -> Result<(), ProofError> {
        if self.index >= self.tree_size {
            return Err(ProofError::IndexOutOfRange {
                index: self.index,
                tree_size: self.tree_size,
            });
        }
        if self.path.len() > MAX_PROOF_LEN {
            return Err(ProofError::BadPathLength);
        }
        let mut f = self.index;
        let mut s = self.tree_size - 1;
        let mut r = leaf_hash(leaf);
        for p in &self.path {
            if s == 0 {
                return Err(ProofError::BadPathLength);
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        if s != 0 {
            return Err(ProofError::BadPathLength);
        }
        if &r != expected_root {
            return Err(ProofError::RootMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                hash(
                    Domain::TxId,
                    &[&(i as u64).to_le_bytes()[..], &[salt]].concat(),
                )
            })
            .collect()
    }

    #[test]
    fn small_trees_match_the_rfc_shape() {
        let l = leaves(3, 0);
        let expect = node_hash(
            &node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1])),
            &leaf_hash(&l[2]),
        );
        assert_eq!(root(&l), expect);
        assert_eq!(root(&l[..1]), leaf_hash(&l[0]));
        assert_eq!(root(&[]), empty_root());
    }

    #[test]
    fn index_out_of_range_has_no_proof() {
        assert!(prove(&leaves(4, 0), 4).is_none());
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_alterations_fail(n in 1usize..300, salt: u8, pick: usize, bit in 0usize..256) {
            let l = leaves(n, salt);
            let r = root(&l);
            for (i, leaf) in l.iter().enumerate() {
                let p = prove(&l, i).unwrap();
                prop_assert_eq!(p.verify(leaf, &r), Ok(()));
            }
            let i = pick % n;
            let p = prove(&l, i).unwrap();
            // altered leaf
            let mut bad_leaf = l[i];
            bad_leaf.0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(p.verify(&bad_leaf, &r).is_err());
            // altered index
            if n > 1 {
                let mut q = p.clone();
                q.index = ((i + 1 + pick % (n - 1)) % n) as u64;
                prop_assert!(q.verify(&l[i], &r).is_err());
            }
            let mut q = p.clone();
            q.index = n as u64;
            prop_assert!(q.verify(&l[i], &r).is_err());
            // altered sibling
            if !p.path.is_empty() {
                let mut q = p.clone();
                let j = pick % q.path.len();
                q.path[j].0[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(q.verify(&l[i], &r).is_err());
                // dropped or extra sibling
                let mut q = p.clone();
                q.path.pop();
                prop_assert!(q.verify(&l[i], &r).is_err());
            }
            let mut q = p.clone();
            q.path.push(r);
            prop_assert!(q.verify(&l[i], &r).is_err());
        }
    }
}
