//! Index changes applied but not yet stored: the entries of the append group that has
//! not committed yet (or of a replay that has not been flushed).
//!
//! Each change carries the sequence number of the entry that made it, so a reader that
//! merges the overlay with a database snapshot can tell which changes the snapshot
//! already holds (those of entries before the snapshot's journal end) and never mixes
//! two states of one entry.

use std::collections::BTreeMap;

use akte_core::backend::Value;
use akte_core::embedded::nodes_for;
use akte_core::Digest;

/// What one stored change set holds: rows for `akte_index`, `akte_nodes` and the tree
/// length, collapsed to the last change of each key.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub upsert_keys: Vec<Vec<u8>>,
    pub upsert_values: Vec<Vec<u8>>,
    pub delete_keys: Vec<Vec<u8>>,
    pub node_pos: Vec<i64>,
    pub node_hash: Vec<Vec<u8>>,
    pub tree_len: Option<i64>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.upsert_keys.is_empty()
            && self.delete_keys.is_empty()
            && self.node_pos.is_empty()
            && self.tree_len.is_none()
    }
}

/// Applied, unstored index changes of one tenant.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Key → (entry that changed it last, new value or removal).
    pub kv: BTreeMap<Vec<u8>, (u64, Option<Value>)>,
    /// Node position → (entry that completed it, hash).
    pub nodes: BTreeMap<u64, (u64, Digest)>,
    /// Tree length after the last applied entry, while that entry is unstored.
    pub applied: Option<u64>,
    /// Entries whose changes are being stored: once their transaction commits, other
    /// instances may change the same keys before this one settles them, so until then a
    /// reader cannot take their changes as the newest without asking the database.
    storing: Option<(u64, u64)>,
}

impl Overlay {
    /// Records one entry's changes.
    pub(crate) fn apply(
        &mut self,
        seq: u64,
        ops: Vec<(Vec<u8>, Option<Value>)>,
        nodes: impl Iterator<Item = Digest>,
    ) {
        for (k, v) in ops {
            self.kv.insert(k, (seq, v));
        }
        let base = nodes_for(seq);
        self.nodes.split_off(&base);
        for (i, hash) in nodes.enumerate() {
            self.nodes.insert(base + i as u64, (seq, hash));
        }
        self.applied = Some(seq + 1);
    }

    /// The changes of entries `from..to`, for storing.
    pub(crate) fn changes(&self, from: u64, to: u64) -> Changes {
        let mut c = Changes::default();
        let within = |seq: &u64| (from..to).contains(seq);
        for (k, (seq, v)) in &self.kv {
            if !within(seq) {
                continue;
            }
            match v {
                Some(v) => {
                    c.upsert_keys.push(k.clone());
                    c.upsert_values.push(v.to_vec());
                }
                None => c.delete_keys.push(k.clone()),
            }
        }
        for (pos, (seq, hash)) in &self.nodes {
            if within(seq) {
                c.node_pos.push(*pos as i64);
                c.node_hash.push(hash.0.to_vec());
            }
        }
        if let Some(applied) = self.applied {
            if applied > from {
                c.tree_len = Some(applied.min(to) as i64);
            }
        }
        c
    }

    /// The changes of entries `from..to`, which are about to be stored.
    pub(crate) fn store(&mut self, from: u64, to: u64) -> Changes {
        self.storing = Some(match self.storing {
            Some((a, b)) => (a.min(from), b.max(to)),
            None => (from, to),
        });
        self.changes(from, to)
    }

    /// Whether the changes of entry `seq` are being stored (see [`Overlay::store`]).
    pub(crate) fn storing(&self, seq: u64) -> bool {
        self.storing.is_some_and(|(a, b)| (a..b).contains(&seq))
    }

    /// Forgets the changes of entries `from..to` once stored (or thrown away).
    pub(crate) fn settle(&mut self, from: u64, to: u64) {
        if self.storing.is_some_and(|(a, b)| from <= a && b <= to) {
            self.storing = None;
        }
        let within = |seq: &u64| (from..to).contains(seq);
        self.kv.retain(|_, (seq, _)| !within(seq));
        self.nodes.retain(|_, (seq, _)| !within(seq));
        if self.applied.is_some_and(|a| a <= to) {
            self.applied = None;
        }
    }

    /// Whether nothing is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.kv.is_empty()
            && self.nodes.is_empty()
            && self.applied.is_none()
            && self.storing.is_none()
    }

    /// Number of pending key changes (to bound memory during replays).
    pub(crate) fn len(&self) -> usize {
        self.kv.len() + self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> Option<Value> {
        Some(Value::from(b))
    }

    #[test]
    fn changes_collapse_to_the_last_write_and_settle_by_range() {
        let mut o = Overlay::default();
        o.apply(
            5,
            vec![(b"a".to_vec(), v(b"1")), (b"b".to_vec(), v(b"x"))],
            [Digest([1; 32])].into_iter(),
        );
        o.apply(
            6,
            vec![(b"a".to_vec(), None)],
            [Digest([2; 32]), Digest([3; 32])].into_iter(),
        );
        let c = o.changes(5, 7);
        assert_eq!(c.upsert_keys, vec![b"b".to_vec()]);
        assert_eq!(c.delete_keys, vec![b"a".to_vec()]);
        assert_eq!(c.node_pos.len(), 3);
        assert_eq!(c.tree_len, Some(7));
        // Only entry 5's own changes: "a" was changed again by 6.
        let c5 = o.changes(5, 6);
        assert_eq!(c5.upsert_keys, vec![b"b".to_vec()]);
        assert!(c5.delete_keys.is_empty());
        assert_eq!(c5.tree_len, Some(6));
        o.settle(5, 7);
        assert!(o.is_empty());
    }

    #[test]
    fn changes_being_stored_are_marked_until_settled() {
        let mut o = Overlay::default();
        o.apply(5, vec![(b"a".to_vec(), v(b"1"))], std::iter::empty());
        o.apply(6, vec![(b"b".to_vec(), v(b"2"))], std::iter::empty());
        assert!(!o.storing(5));
        let c = o.store(5, 6);
        assert_eq!(c.upsert_keys, vec![b"a".to_vec()]);
        assert!(o.storing(5));
        assert!(!o.storing(6), "entry 6 is only queued");
        o.settle(5, 6);
        assert!(!o.storing(5) && !o.storing(6));
        o.store(6, 7);
        o.settle(6, u64::MAX);
        assert!(o.is_empty());
        assert!(!o.storing(6));
    }
}
