//! The application state as chaincode sees it: a read view and a block's write set.

use std::collections::BTreeMap;

use crate::bytes::Hash;
use crate::codec;
use crate::hash::{hash, Domain};

/// A storage failure while reading state (the store is damaged or unreachable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct StateError(pub String);

/// Read access to committed state.
pub trait StateView {
    /// The value at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

impl StateView for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// The sorted state changes of one block: `Some(value)` puts, `None` deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet(pub BTreeMap<Vec<u8>, Option<Vec<u8>>>);

impl WriteSet {
    /// Records a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.insert(key, Some(value));
    }
    /// Records a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.0.insert(key, None);
    }
    /// The pending value at `key`: `Some(Some(v))` put, `Some(None)` deleted, `None` untouched.
    pub fn pending(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.0.get(key)
    }
    /// Merges `other` over this set (later writes win).
    pub fn extend(&mut self, other: WriteSet) {
        self.0.extend(other.0);
    }
    /// Number of keys touched.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The hash of the sorted write set (its canonical encoding).
    pub fn hash(&self) -> Hash {
        // Byte strings as bytes (same encoding as a sequence of u8, without per-byte calls).
        let entries: Vec<(&serde_bytes::Bytes, Option<&serde_bytes::Bytes>)> = self
            .0
            .iter()
            .map(|(k, v)| {
                (
                    serde_bytes::Bytes::new(k),
                    v.as_deref().map(serde_bytes::Bytes::new),
                )
            })
            .collect();
        hash(Domain::WriteSet, &codec::encode_infallible(&entries))
    }
}

/// A state view with a block's pending writes layered over committed state.
pub struct Overlay<'a> {
    base: &'a dyn StateView,
    /// The pending writes.
    pub writes: WriteSet,
}

impl<'a> Overlay<'a> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a dyn StateView) -> Self {
        Self {
            base,
            writes: WriteSet::default(),
        }
    }
}

impl StateView for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.pending(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }
}
