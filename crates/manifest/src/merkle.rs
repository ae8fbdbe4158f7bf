//! The Merkle tree over a manifest's file entries, as Certificate Transparency defines it
//! (RFC 9162, section 2.1): a leaf is `SHA-256(0x00 || entry line)`, an inner node
//! `SHA-256(0x01 || left || right)`, the tree over `n > 1` leaves splits at the largest power
//! of two below `n`, and the root of no leaves is `SHA-256("")`. An auditor can recompute it
//! with any SHA-256 tool; a proof of one entry is `log2(n)` hashes.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The hash of one leaf: `SHA-256(0x00 || bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root over leaf hashes, in order.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index`: the sibling hashes from the leaf up to the root.
pub fn audit_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    collect_path(leaves, index, &mut path);
    path
}

fn collect_path(leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        collect_path(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// The root that leaf `leaf` at `index` of a tree of `size` leaves gives with `path`, or
/// `None` when the path does not fit the position (RFC 9162, 2.1.3.2). A proof is valid when
/// the result equals the signed root.
pub fn root_from_path(leaf: Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                loop {
                    f_n >>= 1;
                    s_n >>= 1;
                    if f_n & 1 == 1 || f_n == 0 {
                        break;
                    }
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    (s_n == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_path_of_every_size_leads_to_the_root_and_no_other_position_does() {
        for n in 1..=33 {
            let leaves = leaves(n);
            let root = root(&leaves);
            for i in 0..n {
                let path = audit_path(&leaves, i);
                assert_eq!(
                    root_from_path(leaves[i], i as u64, n as u64, &path),
                    Some(root),
                    "leaf {i} of {n}"
                );
                // The same path proves nothing for a neighbour's leaf or position.
                let other = (i + 1) % n;
                if other != i {
                    assert_ne!(
                        root_from_path(leaves[other], i as u64, n as u64, &path),
                        Some(root)
                    );
                    assert_ne!(
                        root_from_path(leaves[i], other as u64, n as u64, &path),
                        Some(root),
                        "leaf {i} at {other} of {n}"
                    );
                }
            }
            assert_eq!(root_from_path(leaves[0], n as u64, n as u64, &[]), None);
        }
    }

    #[test]
    fn the_root_follows_rfc_9162_by_hand() {
        let l = leaves(3);
        let expected = node_hash(&node_hash(&l[0], &l[1]), &l[2]);
        assert_eq!(root(&l), expected);
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Reordering leaves changes the root.
        assert_ne!(root(&[l[1], l[0], l[2]]), expected);
    }
}
