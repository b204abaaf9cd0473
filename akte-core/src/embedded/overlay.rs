//! Write-behind for the embedded index: entries are applied to memory, the index database
//! ([`super::redb_index`]) gets them in bulk.
//!
//! A write transaction of the database has a fixed cost (with sled, the store before redb,
//! about 80 µs for its log reservation and concurrency control; with redb, a commit and
//! now and then an `fsync`) on top of its cost per key, and the index used to apply every
//! journal entry as a transaction of its own: most of a small document's time went there.
//! Here each entry's changes ([`IndexBatch`]) are merged into an in-memory [`Overlay`]
//! under the tenant's write lock, which costs microseconds, and the overlay goes to the
//! database as one atomic write transaction (with the journal position it brings the index
//! to) every [`FLUSH_ENTRIES`] entries, when the store flushes, and at shutdown. Every read
//! of the index looks at the overlay first, so readers see each entry as soon as it is
//! applied.
//!
//! Crash safety: the database holds the index as of some journal position, with every
//! key of the entries before it and none after; opening replays the journal from there.
//! The replay is longer by at most the entries still in the overlay.
//!
//! The overlay is bounded: a writer that finds [`MAX_PENDING_ENTRIES`] entries waiting
//! flushes before it goes on.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::backend::{IndexBatch, Value};
use crate::index::IndexError;

/// Entries after which the overlay is written to the database (by the background thread).
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
    /// Changes up to this generation are in the database, not all durably.
    written: u64,
    /// Entries merged since the last flush began.
    entries: u64,
}

/// Changes applied to a tenant's index and not yet written to the database.
#[derive(Default)]
pub(crate) struct Overlay {
    pending: RwLock<Pending>,
    /// Held while a flush writes to the database, so that flushes do not overlap.
    flushing: Mutex<()>,
}

/// What a lookup in the overlay found.
pub(crate) enum Lookup {
    /// The overlay holds the key's latest value (`None`: removed).
    Found(Option<Value>),
    /// The overlay does not know the key: the database has its value.
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
        if empty_range(&start, &end) {
            return Vec::new();
        }
        self.read()
            .map
            .range((start, end))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Hands the changes not yet written to `write`, which must store them in one atomic
    /// transaction, durable if `durable`. Concurrent merges go on during the write. The
    /// snapshot is taken between two merges, so the database gets the index exactly as of
    /// one journal position. `write` is called even when nothing new waits (so that it can
    /// make earlier transactions durable); the changes are then empty.
    ///
    /// The overlay forgets changes only once a durable transaction holds them: a database
    /// that loses its non-durable transactions (reopened after a failed commit) gets them
    /// again after [`Overlay::rewind`].
    pub(crate) fn flush<E>(
        &self,
        durable: bool,
        write: impl FnOnce(&[(Vec<u8>, Option<Value>)]) -> Result<(), E>,
    ) -> Result<(), E> {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let (waiting, upto, changes) = {
            let mut p = self.write();
            let waiting = std::mem::take(&mut p.entries);
            let written = p.written;
            let changes: Vec<(Vec<u8>, Option<Value>)> = p
                .map
                .iter()
                .filter(|(_, (g, _))| *g > written)
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect();
            (waiting, p.generation, changes)
        };
        if let Err(e) = write(&changes) {
            // Nothing was forgotten; the entries count again towards the next flush, so
            // that writers meet the failure themselves once too many wait.
            let mut p = self.write();
            p.entries += waiting;
            return Err(e);
        }
        drop(changes);
        let mut p = self.write();
        p.written = p.written.max(upto);
        if durable {
            // Changes merged meanwhile have later generations and stay.
            p.map.retain(|_, (g, _)| *g > upto);
        }
        Ok(())
    }

    /// Makes the next flush write every change the overlay holds again (the database was
    /// reopened and lost what it had not made durable).
    pub(crate) fn rewind(&self) {
        self.write().written = 0;
    }

    /// Keys held (written or not), for tests and bounds.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.read().map.len()
    }

    /// Forgets everything waiting (the tree is being cleared).
    pub(crate) fn clear(&self) {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let mut p = self.write();
        p.map.clear();
        p.entries = 0;
        p.written = p.generation;
    }

    /// Whether a flush is running right now.
    pub(crate) fn try_flush_slot(&self) -> bool {
        self.flushing.try_lock().is_ok()
    }
}

/// Whether no key lies between `start` and `end`, because the start is after the end or
/// both exclude the same key: ranges over such bounds panic in `BTreeMap` and in redb.
pub(crate) fn empty_range(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
            s >= e
        }
        _ => false,
    }
}

/// Merges a snapshot of overlay entries with an iterator of the database over the same
/// range: the overlay's value wins, its removals hide the database's keys.
pub(crate) struct Merged<I: Iterator> {
    overlay: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<Value>)>>,
    stored: std::iter::Peekable<I>,
}

impl<I> Merged<I>
where
    I: Iterator<Item = Result<(Value, Value), IndexError>>,
{
    pub(crate) fn new(overlay: Vec<(Vec<u8>, Option<Value>)>, stored: I) -> Merged<I> {
        Merged {
            overlay: overlay.into_iter().peekable(),
            stored: stored.peekable(),
        }
    }
}

impl<I> Iterator for Merged<I>
where
    I: Iterator<Item = Result<(Value, Value), IndexError>>,
{
    type Item = Result<(Value, Value), IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.overlay.peek(), self.stored.peek()) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), Some(Err(_))) => std::cmp::Ordering::Greater,
                (Some((ok, _)), Some(Ok((sk, _)))) => ok.as_slice().cmp(sk.as_ref()),
            };
            match order {
                std::cmp::Ordering::Greater => return self.stored.next(),
                std::cmp::Ordering::Equal => {
                    // The overlay's value replaces the stored one.
                    self.stored.next();
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

    type Stored = BTreeMap<Vec<u8>, Vec<u8>>;

    fn write_to(stored: &mut Stored, changes: &[(Vec<u8>, Option<Value>)]) {
        for (k, v) in changes {
            match v {
                Some(v) => stored.insert(k.clone(), v.to_vec()),
                None => stored.remove(k),
            };
        }
    }

    fn iter(stored: &Stored) -> impl Iterator<Item = Result<(Value, Value), IndexError>> + '_ {
        stored
            .iter()
            .map(|(k, v)| Ok((Value::from(&k[..]), Value::from(&v[..]))))
    }

    #[test]
    fn merged_iteration_prefers_the_overlay_and_hides_removals() {
        let mut stored = Stored::new();
        for k in ["a", "b", "c", "e"] {
            stored.insert(k.as_bytes().to_vec(), k.as_bytes().to_vec());
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
            iter(&stored),
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
        // After a flush the store holds the same, the overlay nothing.
        overlay
            .flush(true, |c| {
                write_to(&mut stored, c);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert!(matches!(overlay.get(b"b"), Lookup::Absent));
        assert_eq!(stored.get(&b"b"[..]).unwrap(), b"B");
        assert_eq!(stored.get(&b"c"[..]), None);
        assert_eq!(stored.get(&b"d"[..]).unwrap(), b"D");
    }

    #[test]
    fn a_merge_during_a_flush_is_kept_for_the_next_one() {
        let mut stored = Stored::new();
        let overlay = Overlay::default();
        let mut b = IndexBatch::default();
        b.insert("k", &b"1"[..]);
        overlay.merge(b);
        overlay
            .flush(true, |c| {
                // A writer merges while the flush writes.
                let mut b = IndexBatch::default();
                b.insert("k", &b"2"[..]);
                overlay.merge(b);
                write_to(&mut stored, c);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(stored.get(&b"k"[..]).unwrap(), b"1");
        assert!(matches!(overlay.get(b"k"), Lookup::Found(Some(v)) if &v[..] == b"2"));
        overlay
            .flush(true, |c| {
                write_to(&mut stored, c);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(stored.get(&b"k"[..]).unwrap(), b"2");
        assert_eq!(overlay.held(), 0);
    }

    /// Changes written without durability stay in the overlay (not written again) until a
    /// durable flush; after a rewind they are written again.
    #[test]
    fn changes_stay_until_durable_and_a_rewind_writes_them_again() {
        let overlay = Overlay::default();
        let mut lost = Stored::new();
        for i in 0..3u8 {
            let mut b = IndexBatch::default();
            b.insert([i], [i]);
            overlay.merge(b);
            overlay
                .flush(false, |c| {
                    assert_eq!(c.len(), 1, "only what is new");
                    write_to(&mut lost, c);
                    Ok::<(), ()>(())
                })
                .unwrap();
        }
        assert_eq!(overlay.held(), 3);
        // The database lost its non-durable transactions and was reopened.
        overlay.rewind();
        let mut stored = Stored::new();
        overlay
            .flush(true, |c| {
                write_to(&mut stored, c);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(stored, lost);
        assert_eq!(overlay.held(), 0);
    }

    #[test]
    fn a_failed_flush_keeps_everything_and_its_count() {
        let overlay = Overlay::default();
        for i in 0..3u8 {
            let mut b = IndexBatch::default();
            b.insert([i], [i]);
            overlay.merge(b);
        }
        assert_eq!(overlay.flush(true, |_| Err("disk full")), Err("disk full"));
        assert_eq!(overlay.entries(), 3);
        assert!(matches!(overlay.get(&[1]), Lookup::Found(Some(v)) if v[..] == [1]));
    }
}
