//! The index seam: state derived from the journal, one atomic change per entry.

use std::ops::Bound;
use std::sync::Arc;

use crate::digest::Digest;
use crate::index::IndexError;
use crate::journal::Location;
use crate::merkle::NewNode;

/// A stored value (cheap to clone).
pub type Value = Arc<[u8]>;

/// Keys and values in key order, as a range read yields them.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Value, Value), IndexError>> + Send + 'a>;

/// The changes one journal entry makes to the index's keys: inserts and removals, applied
/// atomically and in order (a later change of the same key wins).
#[derive(Debug, Default, Clone)]
pub struct IndexBatch {
    ops: Vec<(Vec<u8>, Option<Value>)>,
}

impl IndexBatch {
    /// Sets `key` to `value`.
    pub fn insert<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, key: K, value: V) {
        self.ops
            .push((key.as_ref().to_vec(), Some(Value::from(value.as_ref()))));
    }

    /// Removes `key`.
    pub fn remove<K: AsRef<[u8]>>(&mut self, key: K) {
        self.ops.push((key.as_ref().to_vec(), None));
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The changes, in order (`None`: removal).
    pub fn ops(&self) -> &[(Vec<u8>, Option<Value>)] {
        &self.ops
    }

    /// The changes, consumed.
    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Value>)> {
        self.ops
    }
}

/// What one journal entry adds to the tree state: its location and the perfect Merkle
/// nodes its leaf completes (the leaf first, as `CompactRange::push` returns them).
#[derive(Debug, Clone, Copy)]
pub struct TreeUpdate<'a> {
    /// The entry's sequence number.
    pub seq: u64,
    /// Where the journal stored it.
    pub location: Location,
    /// The nodes completed by its leaf.
    pub nodes: &'a [NewNode],
}

/// Where a tenant's derived state lives.
///
/// The engine applies every journal entry, in order, with [`IndexBackend::apply`]: its key
/// changes (among them the position key that says how far the index has got) and its tree
/// update, as one atomic change. Reads see an applied entry at once. A backend may keep
/// applied changes in memory and make them durable later ([`IndexBackend::flush`]), as long
/// as what it stores durably is always the index as of one journal position: the engine
/// replays the journal from there when it opens the tenant.
///
/// Reads ([`IndexBackend::get`], [`IndexBackend::range`]) see every entry this process
/// applied and, on a backend shared by several processes, every entry any of them committed
/// before the read; inside a [`ReadScope`](super::ReadScope), before the scope was opened.
pub trait IndexBackend: Send + Sync {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Value>, IndexError>;

    /// The keys in `[start, end)` (as the bounds say) with their values, in key order.
    fn range(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KvIter<'_>;

    /// Applies one entry's changes atomically.
    fn apply(&self, batch: IndexBatch, tree: TreeUpdate<'_>) -> Result<(), IndexError>;

    /// The perfect Merkle node at `level` and `index`, if applied.
    fn node(&self, level: u8, index: u64) -> Result<Option<Digest>, IndexError>;

    /// The nodes at `positions` (level, index), in that order. Backends that pay a round
    /// trip per read answer this in one (a tree's peaks after another process appended).
    fn nodes(&self, positions: &[(u8, u64)]) -> Result<Vec<Option<Digest>>, IndexError> {
        positions
            .iter()
            .map(|&(level, index)| self.node(level, index))
            .collect()
    }

    /// Where entry `seq` is stored, if applied.
    fn location(&self, seq: u64) -> Result<Option<Location>, IndexError>;

    /// How many entries the tree state (nodes and locations) holds. It may hold more than
    /// the keys' position says after a crash; never fewer.
    fn tree_len(&self) -> Result<u64, IndexError>;

    /// Cuts the tree state back to the first `n` entries.
    fn truncate_tree(&self, n: u64) -> Result<(), IndexError>;

    /// Removes everything (before a rebuild).
    fn clear(&self) -> Result<(), IndexError>;

    /// Starts afresh without reading the old index, which may be damaged: a backend that
    /// cannot clear it sets it aside (never deletes what it cannot read). Rebuilds use it.
    fn reset(&self) -> Result<(), IndexError> {
        self.clear()
    }

    /// Makes everything applied so far durable.
    fn flush(&self) -> Result<(), IndexError>;

    /// Called before an entry is queued: a backend that buffers applied changes may make
    /// room here, so that its failure reaches the caller with nothing written.
    fn make_room(&self) -> Result<(), IndexError> {
        Ok(())
    }

    /// Called after an applied entry became durable in the journal: a backend that buffers
    /// may hand its buffer to a background flush.
    fn entry_durable(&self) {}

    /// Called between entries of a long replay: a backend that buffers may flush here to
    /// keep its memory bounded.
    fn flush_if_due(&self) -> Result<(), IndexError> {
        Ok(())
    }

    /// Where the index is stored, as the backend names it (for messages).
    fn describe(&self) -> String;

    /// A number that tells this index apart from every other one open in the process (for
    /// caches of decoded values, which also compare the stored bytes).
    fn identity(&self) -> usize;
}
