//! The app hash chain (DESIGN §3): `app_hash = H(prev_app_hash ‖ H(sorted write set))`.
//!
//! Two nodes that executed the same blocks have equal app hashes; the next block header commits
//! to it, so a node with diverging state stops agreeing instead of silently forking.

use govchain_ledger::hash::{hash_parts, Domain};
use govchain_ledger::{Hash, WriteSet};

/// The app hash after applying `writes` on top of `prev`.
pub fn next(prev: &Hash, writes: &WriteSet) -> Hash {
    hash_parts(
        Domain::AppHash,
        &[prev.as_bytes(), writes.hash().as_bytes()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_previous_hash_and_every_write() {
        let mut w = WriteSet::default();
        w.put(b"a".to_vec(), b"1".to_vec());
        let h1 = next(&Hash::ZERO, &w);
        assert_ne!(h1, next(&Hash([1; 32]), &w));
        let mut w2 = w.clone();
        w2.put(b"a".to_vec(), b"2".to_vec());
        assert_ne!(h1, next(&Hash::ZERO, &w2));
        let mut w3 = w.clone();
        w3.delete(b"b".to_vec());
        assert_ne!(h1, next(&Hash::ZERO, &w3));
    }
}
