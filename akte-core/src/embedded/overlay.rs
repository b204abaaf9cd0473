//! Write-behind for the sled index: entries are applied to memory, sled gets them in bulk.
//! (Only the embedded backend needs it: it exists because of sled's per-batch cost.)
//!
//! sled's atomic batch has a fixed cost of about 80 µs (its log reservation and
//! concurrency control) on top of some 6 µs per key, and the index used to apply every
//! journal entry as a batch of its own: most of a small document's time went there. Here
//! each entry's changes ([`IndexBatch`]) are merged into an in-memory [`Overlay`] under the
//! tenant's write lock, which costs microseconds, and the overlay goes to sled as one
//! atomic batch (with the journal position it brings the index to) every
//! [`FLUSH_ENTRIES`] entries, when the store flushes, and at shutdown. Every read of the
//! index looks at the overlay first, so readers see each entry as soon as it is applied,
//! exactly as before.
//!
//! Crash safety is unchanged in kind: sled holds the index as of some journal position,
//! with every key of the entries before it and none after; opening replays the journal
//! from there. The replay is longer by at most the entries still in the overlay.
//!
//! The overlay is bounded: a writer that finds [`MAX_PENDING_ENTRIES`] entries waiting
//! flushes before it goes on.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::IVec;

use crate::backend::{IndexBatch, Value};
use crate::index::IndexError;

/// Entries after which the writer that applied the last one flushes the overlay to sled.
pub const FLUSH_ENTRIES: u64 = 512;
/// Entries after which writers wait for a flush (bounds the overlay's memory).
pub const MAX_PENDING_ENTRIES: u64 = 8 * FLUSH_ENTRIES;

/// A key's latest value (`None`: removed) and the generation that wrote it.
type Slot = (u64, Option<Value>);

#[derive(Default)]
struct Pending {
    map: BTreeMap<Vec<u8>, Slot>,
    /// Generation of the last merge; every merge takes the next one.
    generation: u64,
    /// Entries merged since the last flush began.
    entries: u64,
}

/// Changes applied to a tenant's index and not yet written to sled.
#[derive(Default)]
pub(crate) struct Overlay {
    pending: RwLock<Pending>,
    /// Held while a flush writes to sled, so that flushes do not overlap.
    flushing: Mutex<()>,
}

/// What a lookup in the overlay found.
pub(crate) enum Lookup {
    /// The overlay holds the key's latest value (`None`: removed).
    Found(Option<Value>),
    /// The overlay does not know the key: sled has its value.
    Absent,
}

impl Overlay {
    fn read(&self) -> RwLockReadGuard<'_, Pending> {
        self.pending.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Pending> {
        self.pending.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges one entry's changes (the journal position after it among them).
    pub(crate) fn merge(&self, batch: IndexBatch) {
        let mut p = self.write();
        p.generation += 1;
        let g = p.generation;
        for (k, v) in batch.into_ops() {
            p.map.insert(k, (g, v));
        }
        p.entries += 1;
    }

    /// Entries waiting for a flush.
    pub(crate) fn entries(&self) -> u64 {
        self.read().entries
    }

    /// The overlay's view of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Lookup {
        match self.read().map.get(key) {
            Some((_, v)) => Lookup::Found(v.clone()),
            None => Lookup::Absent,
        }
    }

    /// The overlay's keys in `[start, end)` with their values, in key order (a snapshot).
    pub(crate) fn range(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Vec<(Vec<u8>, Option<Value>)> {
        self.read()
            .map
            .range((start, end))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Writes everything waiting to `tree` in one atomic batch, then forgets what did not
    /// change meanwhile. Concurrent merges go on during the write. The snapshot is taken
    /// between two merges, so sled gets the index exactly as of one journal position.
    pub(crate) fn flush(&self, tree: &sled::Tree) -> sled::Result<()> {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot: Vec<(Vec<u8>, Slot)> = {
            let mut p = self.write();
            p.entries = 0;
            p.map.iter().map(|(k, s)| (k.clone(), s.clone())).collect()
        };
        if snapshot.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, (_, v)) in &snapshot {
            match v {
                Some(v) => batch.insert(&k[..], IVec::from(&v[..])),
                None => batch.remove(&k[..]),
            }
        }
        tree.apply_batch(batch)?;
        let mut p = self.write();
        for (k, (g, _)) in snapshot {
            if p.map.get(&k).map(|(g2, _)| *g2) == Some(g) {
                p.map.remove(&k);
            }
        }
        Ok(())
    }

    /// Forgets everything waiting (the tree is being cleared).
    pub(crate) fn clear(&self) {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let mut p = self.write();
        p.map.clear();
        p.entries = 0;
    }

    /// Whether a flush is running right now.
    pub(crate) fn try_flush_slot(&self) -> bool {
        self.flushing.try_lock().is_ok()
    }
}

/// Merges a snapshot of overlay entries with a sled iterator over the same range: the
/// overlay's value wins, its removals hide sled's keys.
pub(crate) struct Merged<I: Iterator> {
    overlay: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<Value>)>>,
    sled: std::iter::Peekable<I>,
}

impl<I> Merged<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    pub(crate) fn new(overlay: Vec<(Vec<u8>, Option<Value>)>, sled: I) -> Merged<I> {
        Merged {
            overlay: overlay.into_iter().peekable(),
            sled: sled.peekable(),
        }
    }
}

impl<I> Iterator for Merged<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = Result<(Value, Value), IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.overlay.peek(), self.sled.peek()) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), Some(Err(_))) => std::cmp::Ordering::Greater,
                (Some((ok, _)), Some(Ok((sk, _)))) => ok.as_slice().cmp(sk.as_ref()),
            };
            match order {
                std::cmp::Ordering::Greater => {
                    return self.sled.next().map(|kv| {
                        kv.map(|(k, v)| (Value::from(&k[..]), Value::from(&v[..])))
                            .map_err(IndexError::from_sled)
                    })
                }
                std::cmp::Ordering::Equal => {
                    // The overlay's value replaces sled's.
                    self.sled.next();
                }
                std::cmp::Ordering::Less => {}
            }
            if let Some((k, Some(v))) = self.overlay.next() {
                return Some(Ok((Value::from(k), v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_iteration_prefers_the_overlay_and_hides_removals() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for k in ["a", "b", "c", "e"] {
            tree.insert(k, k.as_bytes()).unwrap();
        }
        let overlay = Overlay::default();
        let mut b = IndexBatch::default();
        b.insert("b", &b"B"[..]);
        b.remove("c");
        b.insert("d", &b"D"[..]);
        b.insert("f", &b"F"[..]);
        b.remove("zz");
        overlay.merge(b);
        let got: Vec<(String, String)> = Merged::new(
            overlay.range(Bound::Unbounded, Bound::Unbounded),
            tree.iter(),
        )
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect();
        let want = [("a", "a"), ("b", "B"), ("d", "D"), ("e", "e"), ("f", "F")];
        assert_eq!(
            got,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
        assert!(matches!(overlay.get(b"c"), Lookup::Found(None)));
        assert!(matches!(overlay.get(b"a"), Lookup::Absent));
        // After a flush sled holds the same, the overlay nothing.
        overlay.flush(&tree).unwrap();
        assert!(matches!(overlay.get(b"b"), Lookup::Absent));
        assert_eq!(tree.get("b").unwrap().unwrap(), IVec::from(&b"B"[..]));
        assert_eq!(tree.get("c").unwrap(), None);
        assert_eq!(tree.get("d").unwrap().unwrap(), IVec::from(&b"D"[..]));
    }

    #[test]
    fn a_merge_during_a_flush_is_kept_for_the_next_one() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let overlay = Overlay::default();
        let mut b = IndexBatch::default();
        b.insert("k", &b"1"[..]);
        overlay.merge(b);
        // Simulate the interleaving: snapshot taken, then a newer merge, then the removal.
        let snapshot_gen = overlay.read().generation;
        let mut b = IndexBatch::default();
        b.insert("k", &b"2"[..]);
        overlay.merge(b);
        {
            let mut p = overlay.write();
            if p.map.get(&b"k"[..]).map(|(g, _)| *g) == Some(snapshot_gen) {
                p.map.remove(&b"k"[..]);
            }
        }
        assert!(matches!(overlay.get(b"k"), Lookup::Found(Some(v)) if &v[..] == b"2"));
        overlay.flush(&tree).unwrap();
        assert_eq!(tree.get("k").unwrap().unwrap(), IVec::from(&b"2"[..]));
    }
}
