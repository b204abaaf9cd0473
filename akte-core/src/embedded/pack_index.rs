//! The pack location index: where each packed content object is (digest → pack, offset),
//! and the marker saying how far the packs are indexed ([`crate::embedded::pack`] owns
//! what the keys and values mean). A redb database of its own per tenant:
//!
//! ```text
//! index/<tenant>/packs.redb   table "packs"
//! ```
//!
//! # Why a file of its own, not a table beside the index's keys
//!
//! * Its truth is a different one. The keys are derived from the journal, the locations
//!   from the pack files, each with its own marker of how far it is derived. Nothing ever
//!   needs both in one atomic commit, so one database would add no consistency, only
//!   coupling.
//! * The keys index is cleared by starting a fresh file ([`super::redb_index`]'s `clear`,
//!   before every rebuild from the journal). A replay of the journal does not bring pack
//!   locations back, so in the same file they would be lost with every clear.
//! * redb runs one write transaction at a time per database. A pack flush commits here on
//!   the journal leader's path (the folded flush: content before the entry); in the keys'
//!   database it would queue behind an overlay batch being written by the flush thread.
//!
//! # What a crash leaves
//!
//! A flush of the packs commits its locations and the new marker in one transaction, with
//! `Durability::None` (atomic and visible, not fsynced: a pack flush already pays one
//! `fdatasync`, for the records). [`PackIndex::sync`] makes them durable; the tenant's index
//! calls it with each of its own durable commits, and redb makes the pending commits durable
//! when the database is closed. A crash returns the database to its last durable commit:
//! locations and marker together, never a mixture. The pack store reads the records beyond
//! that marker again at open (`PackStore::open`), so an object whose record reached its pack
//! but whose location did not is found again, exactly as with sled before (which wrote its
//! batches to disk only when flushed, at the same points).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

/// The table of locations and the marker.
const PACKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("packs");

/// The file in a tenant's index directory.
pub const PACKS_FILE: &str = "packs.redb";

/// redb's page cache for a tenant's pack locations. Lookups are by digest, random by
/// nature: the cache holds the upper levels of the B-tree, the kernel's page cache the rest.
pub const PACKS_CACHE_BYTES: usize = 8 << 20;

/// One key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Changes applied together in one transaction.
#[derive(Debug, Default)]
pub(crate) struct PackBatch {
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl PackBatch {
    /// Sets `key` to `value`.
    pub(crate) fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.changes.push((key.to_vec(), Some(value.to_vec())));
    }

    /// Removes `key`.
    pub(crate) fn remove(&mut self, key: &[u8]) {
        self.changes.push((key.to_vec(), None));
    }

    /// Whether it changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Whether a commit is fsynced before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Atomic and visible, durable with the next [`PackIndex::sync`] (or the close).
    Lazy,
    /// Durable when it returns, with every lazy commit before it.
    Durable,
}

/// A handle on a tenant's pack location index; clones share the database.
#[derive(Clone)]
pub(crate) struct PackIndex {
    inner: Arc<Inner>,
}

struct Inner {
    db: redb::Database,
    path: PathBuf,
    /// Lazy commits were made since the last durable one.
    unsynced: AtomicBool,
    /// Removes a temporary database's file, after `db` (fields drop in order).
    _temporary: Option<RemoveOnDrop>,
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::fmt::Debug for PackIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackIndex")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl PackIndex {
    /// Opens (creating if needed) the database at `path`. Opening checks every page (see
    /// `redb_index::open_redb`): a damaged file is an error here, which the tenant's index
    /// answers by setting its directory aside.
    pub(crate) fn open(path: &Path) -> Result<PackIndex, redb::Error> {
        let db = super::redb_index::open_redb(path, PACKS_CACHE_BYTES)?;
        Self::over(db, path, None)
    }

    /// A throw-away index in a new file under the system's temporary directory, removed
    /// when the last handle goes: on disk, so that its memory stays bounded however many
    /// objects the packs hold.
    pub(crate) fn temporary() -> Result<PackIndex, redb::Error> {
        use std::sync::atomic::AtomicU64;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "akte-packs-{}-{nanos:x}-{}.redb",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let guard = RemoveOnDrop(path.clone());
        let db = super::redb_index::open_redb(&path, PACKS_CACHE_BYTES)?;
        Self::over(db, &path, Some(guard))
    }

    fn over(
        db: redb::Database,
        path: &Path,
        temporary: Option<RemoveOnDrop>,
    ) -> Result<PackIndex, redb::Error> {
        // The table exists from the start, so that reads never meet its absence.
        let tx = db.begin_write()?;
        tx.open_table(PACKS)?;
        tx.commit()?;
        Ok(PackIndex {
            inner: Arc::new(Inner {
                db,
                path: path.to_path_buf(),
                unsynced: AtomicBool::new(false),
                _temporary: temporary,
            }),
        })
    }

    /// The database file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    fn read_table(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, redb::Error> {
        let tx = self.inner.db.begin_read()?;
        Ok(tx.open_table(PACKS)?)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        use redb::ReadableTable;
        let table = self.read_table()?;
        let value = table.get(key)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    /// The entries whose keys start with `prefix`, in key order, as they are when called.
    /// The iterator holds a snapshot of the database until it is dropped.
    pub(crate) fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry, redb::Error>> + Send> {
        let table = match self.read_table() {
            Ok(t) => t,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let end = prefix_end(prefix);
        let range = (
            Bound::Included(prefix),
            end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
        );
        match table.range_owned(range) {
            Ok(range) => Box::new(range.map(|kv| {
                kv.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                    .map_err(redb::Error::from)
            })),
            Err(e) => Box::new(std::iter::once(Err(e.into()))),
        }
    }

    /// Whether the index holds nothing, not even a marker.
    pub(crate) fn is_empty(&self) -> Result<bool, redb::Error> {
        Ok(self.read_table()?.is_empty()?)
    }

    /// Applies `batch` in one transaction. Its changes are sorted by key first, so that a
    /// large batch (a reindex) writes each page of the B-tree once, not once per key.
    pub(crate) fn apply(&self, mut batch: PackBatch, commit: Commit) -> Result<(), redb::Error> {
        if batch.is_empty() && commit == Commit::Lazy {
            return Ok(());
        }
        // Stable: of two changes of one key, the later one is applied last.
        batch.changes.sort_by(|a, b| a.0.cmp(&b.0));
        self.write(commit, |table| {
            for (k, v) in &batch.changes {
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice())?;
                    }
                    None => {
                        table.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Removes every entry, durably: the table is dropped whole (its pages freed at once,
    /// not key by key) and created again empty.
    pub(crate) fn clear(&self) -> Result<(), redb::Error> {
        let tx = self.inner.db.begin_write()?;
        tx.delete_table(PACKS)?;
        tx.open_table(PACKS)?;
        tx.commit()?;
        self.inner.unsynced.store(false, Ordering::Release);
        Ok(())
    }

    /// Makes the lazy commits so far durable (one `fsync`; nothing if there were none).
    pub(crate) fn sync(&self) -> Result<(), redb::Error> {
        if !self.inner.unsynced.load(Ordering::Acquire) {
            return Ok(());
        }
        self.write(Commit::Durable, |_| Ok(()))
    }

    fn write(
        &self,
        commit: Commit,
        change: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        let mut tx = self.inner.db.begin_write()?;
        tx.set_durability(match commit {
            Commit::Lazy => Durability::None,
            Commit::Durable => Durability::Immediate,
        })?;
        {
            let mut table = tx.open_table(PACKS)?;
            change(&mut table)?;
        }
        // Set before the commit: a sync that runs meanwhile and clears it is followed by
        // this commit, which sets it again only if it is lazy.
        match commit {
            Commit::Lazy => {
                self.inner.unsynced.store(true, Ordering::Release);
                tx.commit()?;
            }
            Commit::Durable => {
                self.inner.unsynced.store(false, Ordering::Release);
                if let Err(e) = tx.commit() {
                    self.inner.unsynced.store(true, Ordering::Release);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

/// Single changes, for tests that play the index a crash left.
#[cfg(test)]
impl PackIndex {
    pub(crate) fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), redb::Error> {
        let mut b = PackBatch::default();
        b.insert(key, value);
        self.apply(b, Commit::Lazy)
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Result<(), redb::Error> {
        let mut b = PackBatch::default();
        b.remove(key);
        self.apply(b, Commit::Lazy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    /// Scans see exactly their prefix; batches apply in key order with later changes of a
    /// key winning; a clear leaves nothing; the temporary file goes with the last handle.
    #[test]
    fn scans_batches_and_clear() {
        let idx = PackIndex::temporary().unwrap();
        let path = idx.path().to_path_buf();
        assert!(idx.is_empty().unwrap());
        let mut b = PackBatch::default();
        b.insert(b"ob2", b"2");
        b.insert(b"oa1", b"1");
        b.insert(b"t", b"marker");
        b.insert(b"oa2", b"x");
        b.remove(b"oa2");
        b.insert(b"o\xff", b"ff");
        idx.apply(b, Commit::Lazy).unwrap();
        let keys =
            |p: &[u8]| -> Vec<Vec<u8>> { idx.scan_prefix(p).map(|kv| kv.unwrap().0).collect() };
        assert_eq!(keys(b"oa"), vec![b"oa1".to_vec()]);
        assert_eq!(
            keys(b"o"),
            vec![b"oa1".to_vec(), b"ob2".to_vec(), b"o\xff".to_vec()]
        );
        assert_eq!(idx.get(b"t").unwrap().as_deref(), Some(&b"marker"[..]));
        idx.sync().unwrap();
        idx.clear().unwrap();
        assert!(idx.is_empty().unwrap());
        let clone = idx.clone();
        drop(idx);
        assert!(path.exists());
        drop(clone);
        assert!(!path.exists());
    }

    /// Lazy commits are kept by a close, and a durable one keeps them through a crash.
    #[test]
    fn lazy_commits_survive_a_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACKS_FILE);
        let idx = PackIndex::open(&path).unwrap();
        let mut b = PackBatch::default();
        b.insert(b"k", b"v");
        idx.apply(b, Commit::Lazy).unwrap();
        drop(idx);
        let idx = PackIndex::open(&path).unwrap();
        assert_eq!(idx.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
