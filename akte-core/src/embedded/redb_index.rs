//! The embedded backend's index: one redb database per tenant, a write-behind overlay in
//! front of it, and the Merkle nodes and record locations in two flat files beside it.
//!
//! ```text
//! index/<tenant>/index.redb   the keys (table "main"), a redb database
//! index/<tenant>/packs.redb   the pack location index (crate::embedded::pack_index)
//! index/<tenant>/nodes        perfect Merkle nodes (crate::embedded::tree_files)
//! index/<tenant>/locations    record locations
//! ```
//!
//! Each tenant's index is its own database, so damage, a lock or a rebuild in one tenant
//! never touches another (TARGET.md: tenants share nothing on disk either). Every entry's
//! changes go to the overlay ([`super::overlay`]) under the tenant's write lock; a
//! background thread shared by all tenants writes an overlay to redb in one write
//! transaction, with the journal position, once [`FLUSH_ENTRIES`] entries wait.
//!
//! # Why redb, and what a crash leaves
//!
//! sled, the store before, took 5× the records' space, about 16 µs per key on a rebuild,
//! and evicted only pages it had written out, so its memory grew with the store (issue 20,
//! `docs/PERFORMANCE.md`). redb is a copy-on-write B-tree in one file with a page cache of
//! a set size ([`CACHE_BYTES`]) and atomic commits.
//!
//! Commits alternate between redb's two durabilities. Most overlay batches commit with
//! `Durability::None`: atomic and visible, not fsynced; a crash returns the database to
//! the last durable commit, with all of its keys and the position it recorded, never a
//! mixture. Every [`DURABLE_EVERY`]th batch, every explicit flush and the last one at
//! close commit with `Durability::Immediate`, after the node and location files have been
//! flushed: so the durable position never claims entries whose keys or tree state are
//! missing. A crash costs a replay of at most `DURABLE_EVERY × FLUSH_ENTRIES` entries more
//! (plus those in the overlay), and the journal is the truth.
//!
//! # Data directories of earlier versions
//!
//! Before redb, the index was a sled database in `index/<tenant>/sled/`: first the keys
//! (tree "main") and the pack locations (tree "packs"), later only the pack locations.
//! Both are derived, so nothing of it is read: a tenant whose index directory still holds
//! `sled/` has it removed at open (logged). A missing `index.redb` starts empty and the
//! engine replays the whole journal into it; a missing `packs.redb` starts empty and the
//! pack store reads every pack into it when it opens (`PackStore::open`).

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Durability, ReadableDatabase, TableDefinition};

use crate::backend::{FaultKind, IndexBackend, IndexBatch, KvIter, TreeUpdate, Value};
use crate::digest::Digest;
use crate::embedded::fsutil::{self, IoContext};
use crate::embedded::overlay::{
    empty_range, Lookup, Merged, Overlay, FLUSH_ENTRIES, MAX_PENDING_ENTRIES,
};
use crate::embedded::pack_index::{PackIndex, PACKS_FILE};
use crate::embedded::tree_files::TreeFiles;
use crate::index::IndexError;
use crate::journal::Location;

impl IndexError {
    /// An error redb reported.
    pub(crate) fn from_redb(e: impl Into<redb::Error>) -> IndexError {
        let e: redb::Error = e.into();
        let kind = match &e {
            redb::Error::Io(io) => FaultKind::of_io(io),
            redb::Error::Corrupted(_)
            | redb::Error::RepairAborted
            | redb::Error::UpgradeRequired(_)
            | redb::Error::TableTypeMismatch(_)
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TypeDefinitionChanged(_) => FaultKind::Corrupt,
            redb::Error::PreviousIo | redb::Error::DatabaseClosed => FaultKind::Unavailable,
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
                FaultKind::Conflict
            }
            _ => FaultKind::Other,
        };
        IndexError::Backend {
            reason: e.to_string(),
            kind,
        }
    }
}

/// redb's page cache per tenant database. An installation holds hundreds of tenants, the
/// overlay serves recent writes and the flat files serve proofs, so the cache serves the
/// upper levels of the B-tree and the hot keys; the kernel's page cache holds the rest.
pub const CACHE_BYTES: usize = 16 << 20;

/// The cache of a scratch index (one at a time, for a verification or a degraded tenant).
pub const SCRATCH_CACHE_BYTES: usize = 32 << 20;

/// Every how many overlay batches a commit is made durable (the others are atomic and
/// visible, not fsynced; see the module documentation).
pub const DURABLE_EVERY: u32 = 16;

/// The table of the index's keys.
const MAIN: TableDefinition<&[u8], &[u8]> = TableDefinition::new("main");

/// That table, opened for reading.
type KeysTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The redb database file in a tenant's index directory.
pub const DB_FILE: &str = "index.redb";

/// The sled database of earlier versions (the keys, later only the pack locations):
/// removed at open.
const LEGACY_SLED_DIR: &str = "sled";

/// The background thread that writes tenants' overlays to redb once enough entries wait,
/// so that no request pays for the write; writers only fall back to flushing themselves
/// when far too many entries wait ([`RedbIndex::make_room`]). Dropping the last handle
/// stops the thread after it has written what was handed to it.
pub(crate) struct Flusher {
    inner: Arc<FlusherInner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the thread shares with the handles (never a handle itself, so that dropping the
/// last one is seen).
#[derive(Default)]
struct FlusherInner {
    state: Mutex<FlusherState>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct FlusherState {
    due: Vec<Arc<Shared>>,
    stop: bool,
}

impl Flusher {
    pub(crate) fn start() -> Arc<Flusher> {
        let inner = Arc::new(FlusherInner::default());
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("akte-index-flush".into())
            .spawn(move || Flusher::run(&for_thread))
            .map_err(|e| {
                // Without the thread, writers flush when the overlay reaches its limit.
                tracing::warn!(error = %e, "no background thread for index flushes");
            })
            .ok();
        Arc::new(Flusher {
            inner,
            thread: Mutex::new(thread),
        })
    }

    fn run(inner: &FlusherInner) {
        loop {
            let (due, stop) = {
                let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
                while st.due.is_empty() && !st.stop {
                    st = inner.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                (std::mem::take(&mut st.due), st.stop)
            };
            for shared in due {
                if let Err(e) = shared.flush(false) {
                    // The overlay keeps the changes; the next flush tries again, and writers
                    // meet the error themselves once the overlay is full.
                    tracing::error!(error = %e, index = %shared.dir.display(), "writing the index overlay to redb failed");
                }
            }
            if stop {
                return;
            }
        }
    }

    fn request(&self, shared: &Arc<Shared>) {
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.due.iter().any(|s| Arc::ptr_eq(s, shared)) {
            st.due.push(shared.clone());
        }
        self.inner.wake.notify_one();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop = true;
        self.inner.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// What the index of one tenant is made of; shared with the flush thread.
struct Shared {
    /// The database; `None` only while it is reopened after a failed commit, or when
    /// that failed (reads then fail until a later attempt succeeds).
    db: std::sync::RwLock<Option<Arc<redb::Database>>>,
    /// Its cache size.
    cache: usize,
    /// The pack location index's database (its own file, see [`super::pack_index`]).
    packs: PackIndex,
    overlay: Overlay,
    files: TreeFiles,
    dir: PathBuf,
    /// Commits since the last durable one.
    since_durable: AtomicU32,
    /// A commit failed: redb refuses writes until reopened, and its non-durable commits
    /// are lost then. Holds when the last attempt to reopen was made.
    broken: Mutex<Option<Option<std::time::Instant>>>,
}

/// How long after a failed attempt to reopen a database the next one is made.
const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Shared {
    /// The database, reopened first if a failed commit left it closed.
    fn database(&self) -> Result<Arc<redb::Database>, IndexError> {
        if let Ok(db) = self.current() {
            return Ok(db);
        }
        self.reopen()?;
        self.current()
    }

    /// The database as it is.
    fn current(&self) -> Result<Arc<redb::Database>, IndexError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| IndexError::Backend {
                reason: format!(
                    "the index database in {} is being reopened after a failed write",
                    self.dir.display()
                ),
                kind: FaultKind::Unavailable,
            })
    }

    /// After a failed commit: closes the database and opens it again (redb repairs what
    /// the commit left), at most once per [`REOPEN_INTERVAL`]; the overlay, which keeps
    /// every change until a durable commit holds it, writes them all again.
    fn reopen(&self) -> Result<(), IndexError> {
        let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = *broken else {
            return Ok(());
        };
        if last.is_some_and(|at| at.elapsed() < REOPEN_INTERVAL) {
            return Err(IndexError::Backend {
                reason: format!(
                    "the index database in {} failed a write and is not reopened yet",
                    self.dir.display()
                ),
                kind: FaultKind::Unavailable,
            });
        }
        *broken = Some(Some(std::time::Instant::now()));
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Readers hold the database only for the moment of a read (or a range being
        // iterated): it is closed once the last lets go, which the open waits for.
        drop(slot.take());
        let db = open_redb(&self.dir.join(DB_FILE), self.cache).map_err(IndexError::from_redb)?;
        create_table(&db)?;
        *slot = Some(Arc::new(db));
        self.overlay.rewind();
        self.since_durable.store(0, Ordering::Release);
        *broken = None;
        tracing::info!(index = %self.dir.display(), "the index database was reopened after a failed write");
        Ok(())
    }

    /// Writes the overlay to redb in one transaction, durable if `durable` or if
    /// [`DURABLE_EVERY`] commits were not; a durable commit is preceded by a flush of the
    /// node and location files (its position relies on them) and followed by a sync of the
    /// pack location index (whose pack flushes commit lazily: see [`super::pack_index`]).
    fn flush(&self, durable: bool) -> Result<(), IndexError> {
        self.reopen()?;
        let waiting = self.since_durable.load(Ordering::Acquire);
        let durable = durable || waiting + 1 >= DURABLE_EVERY;
        self.overlay.flush(durable, |changes| {
            if changes.is_empty() && !(durable && waiting > 0) {
                return Ok(());
            }
            if durable {
                self.files.sync()?;
            }
            // Not `database`: a reopen here would rewind the overlay under this flush.
            let db = self.current()?;
            let written = Self::commit(&db, changes, durable);
            if let Err(e) = written {
                // redb refuses writes after a failed commit until it is reopened.
                let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
                if broken.is_none() {
                    *broken = Some(None);
                }
                return Err(e);
            }
            if durable {
                self.since_durable.store(0, Ordering::Release);
                // The pack flushes since the last sync become durable with this one (no
                // sync thread per tenant: an installation holds hundreds).
                self.packs.sync().map_err(IndexError::from_redb)?;
            } else {
                self.since_durable.fetch_add(1, Ordering::AcqRel);
            }
            Ok(())
        })
    }

    /// One write transaction with `changes`.
    fn commit(
        db: &redb::Database,
        changes: &[(Vec<u8>, Option<Value>)],
        durable: bool,
    ) -> Result<(), IndexError> {
        let mut tx = db.begin_write().map_err(IndexError::from_redb)?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(IndexError::from_redb)?;
        {
            let mut table = tx.open_table(MAIN).map_err(IndexError::from_redb)?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        table
                            .insert(k.as_slice(), &v[..])
                            .map_err(IndexError::from_redb)?;
                    }
                    None => {
                        table.remove(k.as_slice()).map_err(IndexError::from_redb)?;
                    }
                }
            }
        }
        tx.commit().map_err(IndexError::from_redb)
    }

    fn read_table(&self) -> Result<Option<KeysTable>, IndexError> {
        let tx = self
            .database()?
            .begin_read()
            .map_err(IndexError::from_redb)?;
        match tx.open_table(MAIN) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(IndexError::from_redb(e)),
        }
    }
}

/// For a scratch index: removes its directory when the last handle goes.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The index of one tenant in the embedded backend.
pub struct RedbIndex {
    /// Replaced whole when the index is cleared or a damaged one set aside.
    shared: std::sync::RwLock<Arc<Shared>>,
    flusher: Arc<Flusher>,
    _scratch: Option<ScratchDir>,
}

impl std::fmt::Debug for RedbIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbIndex")
            .field("dir", &self.shared().dir)
            .finish()
    }
}

/// Opens (creating if needed) the redb database at `path`. redb refuses a file another
/// handle holds; in this process that is an index being dropped (the flush thread may
/// hold it a moment longer), other processes are kept out by the data directory's own
/// lock, taken before this, so waiting briefly is safe.
pub(crate) fn open_redb(path: &Path, cache: usize) -> Result<redb::Database, redb::DatabaseError> {
    let mut waited = 0;
    loop {
        // Every page's checksum is verified at open: redb trusts a file it closed cleanly
        // and may panic on one changed since, while a damaged index must be set aside and
        // rebuilt (tests/index_heal.rs). It reads the whole file once per open of a tenant.
        // A panic nonetheless is damage too, never the process's end.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redb::Builder::new()
                .set_cache_size(cache)
                .set_check_integrity_on_open(true)
                .create(path)
        }))
        .unwrap_or_else(|_| Err(redb::DatabaseError::RepairAborted));
        match opened {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if waited < 100 => {
                waited += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Creates the table of keys, so that reads find it from the start.
fn create_table(db: &redb::Database) -> Result<(), IndexError> {
    let tx = db.begin_write().map_err(IndexError::from_redb)?;
    tx.open_table(MAIN).map_err(IndexError::from_redb)?;
    tx.commit().map_err(IndexError::from_redb)
}

/// Whether a failure to open is a full disk or a failing device: not damage, nothing is
/// set aside for it.
fn not_damage(e: &IndexError) -> bool {
    matches!(e.kind(), FaultKind::StorageFull | FaultKind::Unavailable)
}

impl RedbIndex {
    /// Opens (creating if needed) the index in `dir`, sharing `flusher`'s background
    /// thread. A database that cannot be opened (damaged) is set aside under a new name,
    /// never deleted, and an empty one takes its place: the engine then rebuilds the index
    /// from the journal.
    pub(crate) fn open(dir: &Path, flusher: Arc<Flusher>) -> Result<RedbIndex, IndexError> {
        let shared = open_shared(dir)?;
        Ok(RedbIndex {
            shared: std::sync::RwLock::new(Arc::new(shared)),
            flusher,
            _scratch: None,
        })
    }

    /// A throw-away index in a new directory under the system's temporary directory,
    /// removed when dropped (the reference verification rebuilds). On disk, so its memory
    /// stays bounded however long the journal.
    pub(crate) fn scratch(flusher: Arc<Flusher>) -> Result<RedbIndex, IndexError> {
        let dir = tempfile_dir("akte-index")?;
        let scratch = ScratchDir(dir.clone());
        let db =
            open_redb(&dir.join(DB_FILE), SCRATCH_CACHE_BYTES).map_err(IndexError::from_redb)?;
        create_table(&db)?;
        let packs = PackIndex::open(&dir.join(PACKS_FILE)).map_err(IndexError::from_redb)?;
        Ok(RedbIndex {
            shared: std::sync::RwLock::new(Arc::new(shared_over(
                db,
                SCRATCH_CACHE_BYTES,
                packs,
                &dir,
            )?)),
            flusher,
            _scratch: Some(scratch),
        })
    }

    fn shared(&self) -> Arc<Shared> {
        self.shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the tenant's content store keeps the location of packed objects: derived from
    /// the pack files, as the rest is from the journal.
    pub(crate) fn packs(&self) -> PackIndex {
        self.shared().packs.clone()
    }
}

/// Prefix of an old redb file a clear renamed aside (removed right after, or at the next
/// open after a crash).
const CLEARED: &str = "index.redb.cleared-";

/// Removes the databases a clear renamed aside; what cannot be removed now is tried again
/// at the next open (logged).
fn remove_cleared(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(CLEARED) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err,
                    "removing a cleared index database");
            }
        }
    }
}

/// A suffix no earlier name in this process or a recent one has.
fn unique_suffix() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Opens the databases in `dir`. Errors are the first that occurred.
fn open_dbs(dir: &Path) -> Result<(redb::Database, PackIndex), IndexError> {
    let packs = PackIndex::open(&dir.join(PACKS_FILE)).map_err(IndexError::from_redb)?;
    let db = open_redb(&dir.join(DB_FILE), CACHE_BYTES).map_err(IndexError::from_redb)?;
    create_table(&db)?;
    Ok((db, packs))
}

/// Opens the index in `dir`: databases that cannot be opened are set aside and empty ones
/// take their place; node and location files are cut back to the entries they hold
/// consistently. Either makes the engine rebuild what is missing from the journal.
fn open_shared(dir: &Path) -> Result<Shared, IndexError> {
    fsutil::create_dir_all_durable(dir)?;
    remove_cleared(dir);
    let (db, packs) = match open_dbs(dir) {
        Ok(dbs) => dbs,
        Err(e) if not_damage(&e) => return Err(e),
        Err(e) => {
            let aside = set_aside(dir)?;
            tracing::warn!(index = %dir.display(), set_aside = %aside.display(), error = %e,
                "the index database cannot be opened; it was set aside and the index is rebuilt from the journal");
            fsutil::create_dir_all_durable(dir)?;
            open_dbs(dir)?
        }
    };
    let shared = shared_over(db, CACHE_BYTES, packs, dir)?;
    remove_legacy_sled(dir);
    let held = shared.files.entries()?;
    let sound = shared.files.consistent_entries()?;
    if sound < held {
        tracing::warn!(index = %dir.display(), held, sound,
            "the index's node or location file is damaged after entry {sound}; it is cut back there and the index is rebuilt from the journal");
        shared.files.truncate(sound)?;
    }
    Ok(shared)
}

/// Removes the sled database an earlier version kept (see the module documentation),
/// after the redb databases that take its place exist. Derived data: nothing is read from
/// it. A failure to remove it is only logged, since nothing reads it either.
fn remove_legacy_sled(dir: &Path) {
    let sled = dir.join(LEGACY_SLED_DIR);
    if !sled.exists() {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&sled) {
        tracing::warn!(path = %sled.display(), error = %e,
            "removing the sled index of an earlier akte failed; it is not used and may be removed by hand");
        return;
    }
    if let Err(e) = fsutil::fsync_dir(dir) {
        tracing::warn!(index = %dir.display(), error = %e, "flushing the index directory");
    }
    tracing::info!(index = %dir.display(),
        "removed the sled index of an earlier akte; the index is in redb, rebuilt from the journal and the pack files where it was missing");
}

fn shared_over(
    db: redb::Database,
    cache: usize,
    packs: PackIndex,
    dir: &Path,
) -> Result<Shared, IndexError> {
    let files = TreeFiles::open(dir)?;
    Ok(Shared {
        db: std::sync::RwLock::new(Some(Arc::new(db))),
        cache,
        broken: Mutex::new(None),
        packs,
        overlay: Overlay::default(),
        files,
        dir: dir.to_path_buf(),
        since_durable: AtomicU32::new(0),
    })
}

/// Renames a damaged index directory out of the way (`<dir>.damaged-<unix seconds>`).
fn set_aside(dir: &Path) -> Result<PathBuf, IndexError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    let aside = dir.with_file_name(format!("{name}.damaged-{secs}"));
    std::fs::rename(dir, &aside).at("rename", dir)?;
    if let Some(parent) = dir.parent() {
        fsutil::fsync_dir(parent)?;
    }
    Ok(aside)
}

/// A new, empty directory under the system's temporary directory.
fn tempfile_dir(prefix: &str) -> Result<PathBuf, IndexError> {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
    Ok(dir)
}

/// A bound over a borrowed key.
fn bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The stored keys in a range, as the index's iterator yields them.
fn stored_range(
    shared: &Shared,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
) -> Box<dyn Iterator<Item = Result<(Value, Value), IndexError>> + Send> {
    // redb, like BTreeMap, panics on a start after the end.
    if empty_range(start, end) {
        return Box::new(std::iter::empty());
    }
    let table = match shared.read_table() {
        Ok(Some(t)) => t,
        Ok(None) => return Box::new(std::iter::empty()),
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    match table.range_owned((bound(start), bound(end))) {
        Ok(range) => Box::new(range.map(|kv| {
            kv.map(|(k, v)| (Value::from(k.value()), Value::from(v.value())))
                .map_err(IndexError::from_redb)
        })),
        Err(e) => Box::new(std::iter::once(Err(IndexError::from_redb(e)))),
    }
}

impl IndexBackend for RedbIndex {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, IndexError> {
        let shared = self.shared();
        // The overlay first: a flush commits before it forgets, so a key leaving the
        // overlay now is already in the database read next.
        match shared.overlay.get(key) {
            Lookup::Found(v) => Ok(v),
            Lookup::Absent => {
                use redb::ReadableTable;
                let Some(table) = shared.read_table()? else {
                    return Ok(None);
                };
                let value = table
                    .get(key)
                    .map_err(IndexError::from_redb)?
                    .map(|v| Value::from(v.value()));
                Ok(value)
            }
        }
    }

    fn range(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KvIter<'_> {
        let shared = self.shared();
        // The overlay's snapshot before the database's (see `get`).
        let pending = shared.overlay.range(start.clone(), end.clone());
        Box::new(Merged::new(pending, stored_range(&shared, &start, &end)))
    }

    fn apply(&self, batch: IndexBatch, tree: TreeUpdate<'_>) -> Result<(), IndexError> {
        let shared = self.shared();
        shared.files.write(tree.seq, tree.location, tree.nodes)?;
        shared.overlay.merge(batch);
        Ok(())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Digest>, IndexError> {
        Ok(self.shared().files.node(level, index)?)
    }

    fn location(&self, seq: u64) -> Result<Option<Location>, IndexError> {
        Ok(self.shared().files.location(seq)?)
    }

    fn tree_len(&self) -> Result<u64, IndexError> {
        Ok(self.shared().files.entries()?)
    }

    fn truncate_tree(&self, n: u64) -> Result<(), IndexError> {
        Ok(self.shared().files.truncate(n)?)
    }

    /// Starts a fresh redb file rather than removing keys one by one: a rebuild then writes
    /// into a compact file instead of one full of freed pages. The old file is renamed
    /// aside and removed; readers still holding it read the old, whole index until they let
    /// go. A crash leaves the renamed one, removed at open.
    fn clear(&self) -> Result<(), IndexError> {
        let mut slot = self.shared.write().unwrap_or_else(|p| p.into_inner());
        // Nothing of the old index may reach the files the fresh one takes over.
        slot.overlay.clear();
        slot.files.truncate(0)?;
        let dir = slot.dir.clone();
        let file = dir.join(DB_FILE);
        let cleared = dir.join(format!("{CLEARED}{}", unique_suffix()));
        std::fs::rename(&file, &cleared).at("rename", &file)?;
        fsutil::fsync_dir(&dir)?;
        let cache = if self._scratch.is_some() {
            SCRATCH_CACHE_BYTES
        } else {
            CACHE_BYTES
        };
        let db = open_redb(&file, cache).map_err(IndexError::from_redb)?;
        create_table(&db)?;
        let fresh = Shared {
            db: std::sync::RwLock::new(Some(Arc::new(db))),
            cache,
            broken: Mutex::new(None),
            packs: slot.packs.clone(),
            overlay: Overlay::default(),
            files: TreeFiles::open(&dir)?,
            dir: dir.clone(),
            since_durable: AtomicU32::new(0),
        };
        *slot = Arc::new(fresh);
        drop(slot);
        remove_cleared(&dir);
        Ok(())
    }

    fn reset(&self) -> Result<(), IndexError> {
        if self.clear().is_ok() {
            return Ok(());
        }
        // Not even clearing works: set the whole directory aside and start afresh, without
        // reading anything of the old index.
        let mut slot = self.shared.write().unwrap_or_else(|p| p.into_inner());
        let dir = slot.dir.clone();
        let aside = set_aside(&dir)?;
        tracing::warn!(index = %dir.display(), set_aside = %aside.display(),
            "the index could not be cleared; it was set aside and is rebuilt from the journal");
        fsutil::create_dir_all_durable(&dir)?;
        let (db, packs) = open_dbs(&dir)?;
        *slot = Arc::new(shared_over(db, CACHE_BYTES, packs, &dir)?);
        Ok(())
    }

    /// Writes the overlay durably (and syncs the pack location index with it).
    fn flush(&self) -> Result<(), IndexError> {
        self.shared().flush(true)
    }

    fn make_room(&self) -> Result<(), IndexError> {
        let shared = self.shared();
        if shared.overlay.entries() >= MAX_PENDING_ENTRIES {
            shared.flush(false)?;
        }
        Ok(())
    }

    fn entry_durable(&self) {
        let shared = self.shared();
        if shared.overlay.entries() >= FLUSH_ENTRIES {
            self.flusher.request(&shared);
        }
    }

    fn flush_if_due(&self) -> Result<(), IndexError> {
        let shared = self.shared();
        let waiting = shared.overlay.entries();
        if waiting >= MAX_PENDING_ENTRIES
            || (waiting >= FLUSH_ENTRIES && shared.overlay.try_flush_slot())
        {
            shared.flush(false)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.shared().dir.display().to_string()
    }

    fn identity(&self) -> usize {
        self as *const RedbIndex as usize
    }
}

impl Drop for RedbIndex {
    /// Writes the pending changes durably, so the next open does not replay them. Nothing
    /// depends on it: the journal is the truth, and a failure here is only logged.
    fn drop(&mut self) {
        if self._scratch.is_some() || Arc::strong_count(&self.shared()) > 2 {
            return;
        }
        if let Err(e) = self.shared().flush(true) {
            tracing::warn!(index = %self.shared().dir.display(), error = %e, "flushing the index at close failed; the next open replays the journal");
        }
    }
}

/// Keeps the tenant indexes of one data directory: one per tenant, opened once.
#[derive(Default)]
pub(crate) struct RedbIndexes {
    open: Mutex<HashMap<String, std::sync::Weak<RedbIndex>>>,
}

impl RedbIndexes {
    /// The open index of `tenant` in `dir`, or a newly opened one.
    pub(crate) fn get(
        &self,
        tenant: &str,
        dir: &Path,
        flusher: &Arc<Flusher>,
    ) -> Result<Arc<RedbIndex>, IndexError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idx) = open.get(tenant).and_then(|w| w.upgrade()) {
            return Ok(idx);
        }
        let idx = Arc::new(RedbIndex::open(dir, flusher.clone())?);
        open.insert(tenant.to_owned(), Arc::downgrade(&idx));
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{NewDocument, NewFile, NewPlanUnit, Records};
    use crate::store::StoreOptions;
    use crate::verify::{verify_store, VerifyOptions};

    fn open(data: &Path) -> Records {
        Records::open(
            crate::embedded::open(data).unwrap(),
            StoreOptions::default(),
        )
        .unwrap()
    }

    /// A tenant with a few documents; returns their ids.
    fn fill(records: &Records, tenant: &str, docs: usize) -> Vec<uuid::Uuid> {
        let t = records.create_tenant(tenant).unwrap();
        let unit = t
            .create_plan_unit(
                "registrar:r",
                NewPlanUnit {
                    code: "1".into(),
                    title: "Allgemeines".into(),
                    ..NewPlanUnit::default()
                },
                None,
            )
            .unwrap();
        let file = t
            .create_file(
                "registrar:r",
                NewFile {
                    plan_unit: unit.id,
                    subject: "Akte".into(),
                    ..NewFile::default()
                },
                None,
            )
            .unwrap();
        (0..docs)
            .map(|i| {
                t.create_document(
                    "clerk:c",
                    NewDocument {
                        parent: file.id,
                        subject: format!("Schreiben {i}"),
                        ..NewDocument::default()
                    },
                    None,
                )
                .unwrap()
                .id
            })
            .collect()
    }

    /// Data directories of earlier versions: the keys and the pack locations in sled
    /// (`sled/`, no redb file), or the keys already in redb and only the pack locations in
    /// sled. Either opens: the sled directory is removed, the keys are replayed from the
    /// journal where `index.redb` is missing, the pack locations read from the packs into
    /// `packs.redb`; documents and their content read back and verification is clean.
    #[test]
    fn a_sled_index_of_an_earlier_version_is_removed_and_rebuilt() {
        for keys_in_sled in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let bodies: Vec<Vec<u8>> = (0..20)
                .map(|i| format!("Inhalt des Schreibens {i} ({keys_in_sled})").into_bytes())
                .collect();
            let (ids, digests) = stored(&data, 20, &bodies);
            let index = data.join("index").join("amt");
            // What an older akte left: a sled database (nothing of it is read, so its
            // files' contents do not matter) and no redb file for what it held.
            std::fs::remove_file(index.join(PACKS_FILE)).unwrap();
            if keys_in_sled {
                std::fs::remove_file(index.join(DB_FILE)).unwrap();
            }
            let sled = index.join(LEGACY_SLED_DIR);
            std::fs::create_dir_all(sled.join("blobs")).unwrap();
            std::fs::write(sled.join("conf"), b"segment_size: 524288\n").unwrap();
            std::fs::write(sled.join("db"), [0u8; 4096]).unwrap();

            let records = open(&data);
            assert!(!sled.exists(), "the sled directory is removed");
            assert!(index.join(DB_FILE).exists() && index.join(PACKS_FILE).exists());
            all_back(&records, &ids, &digests, &bodies);
        }
    }

    /// A store in `data` with `docs` documents in tenant "amt" and `bodies` stored as its
    /// content, closed again; returns the documents' ids and the bodies' digests.
    fn stored(data: &Path, docs: usize, bodies: &[Vec<u8>]) -> (Vec<uuid::Uuid>, Vec<Digest>) {
        let records = open(data);
        let ids = fill(&records, "amt", docs);
        let t = records.tenant("amt").unwrap();
        let digests = bodies
            .iter()
            .map(|b| t.put_content(&b[..]).unwrap().digest)
            .collect();
        (ids, digests)
    }

    /// Every document of tenant "amt" opens, every content object reads back as `bodies`,
    /// and the store verifies clean.
    fn all_back(records: &Records, ids: &[uuid::Uuid], digests: &[Digest], bodies: &[Vec<u8>]) {
        let t = records.tenant("amt").unwrap();
        for id in ids {
            t.document(*id).unwrap();
        }
        let content = t.tenant().content();
        for (d, body) in digests.iter().zip(bodies) {
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut content.get(d).unwrap(), &mut read).unwrap();
            assert_eq!(&read, body);
        }
        drop(t);
        let report = verify_store(records.store(), VerifyOptions::default()).unwrap();
        assert!(
            report.is_clean(),
            "{:?}",
            report.problems().collect::<Vec<_>>()
        );
    }

    /// A pack location index that cannot be opened (its pages overwritten) is set aside
    /// with the tenant's index directory, never deleted, and rebuilt: the keys from the
    /// journal, the locations from the packs; the content reads back.
    #[test]
    fn a_damaged_pack_index_is_set_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bodies: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("Bescheid Nr. {i}").into_bytes())
            .collect();
        let (ids, digests) = stored(&data, 5, &bodies);
        let index = data.join("index").join("amt");
        let packs = index.join(PACKS_FILE);
        let len = std::fs::metadata(&packs).unwrap().len() as usize;
        let mut bytes = std::fs::read(&packs).unwrap();
        for b in &mut bytes[4096.min(len)..] {
            *b = 0xA5;
        }
        std::fs::write(&packs, bytes).unwrap();

        let records = open(&data);
        let aside: Vec<_> = std::fs::read_dir(data.join("index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("amt.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "set aside once: {aside:?}");
        all_back(&records, &ids, &digests, &bodies);
    }

    /// Everything applied is in the database after a close (the last commit is durable):
    /// the index read straight from the file then equals the one after the engine's
    /// catch-up at the next open.
    #[test]
    fn keys_survive_a_close_without_replay() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // More entries than one overlay batch, fewer than a multiple of it.
        fill(&open(&data), "amt", 700);
        let index = data.join("index").join("amt");
        let read_all = || -> Vec<(Value, Value)> {
            let idx = RedbIndex::open(&index, Flusher::start()).unwrap();
            idx.range(Bound::Unbounded, Bound::Unbounded)
                .map(|kv| kv.unwrap())
                .collect()
        };
        let closed = read_all();
        assert!(closed.len() > 700);
        drop(open(&data));
        assert_eq!(closed, read_all());
    }

    fn update(seq: u64) -> TreeUpdate<'static> {
        TreeUpdate {
            seq,
            location: Location {
                segment: 0,
                offset: seq * 100,
            },
            nodes: &[],
        }
    }

    /// Reads see applied changes at once, before and after the overlay is written, and
    /// ranges merge the two; a clear forgets everything.
    #[test]
    fn reads_merge_the_overlay_with_the_database() {
        let idx = RedbIndex::scratch(Flusher::start()).unwrap();
        for i in 0..(FLUSH_ENTRIES as u8 + 10) {
            let mut b = IndexBatch::default();
            b.insert([b'k', i], [i]);
            if i > 0 {
                b.remove([b'k', i - 1]);
            }
            b.insert([b'p'], [i]);
            idx.apply(b, update(u64::from(i))).unwrap();
            idx.flush_if_due().unwrap();
        }
        let last = FLUSH_ENTRIES as u8 + 9;
        assert_eq!(&idx.get(b"p").unwrap().unwrap()[..], [last]);
        assert!(idx.get(&[b'k', 0]).unwrap().is_none());
        let keys: Vec<Value> = idx
            .range(Bound::Included(vec![b'k']), Bound::Excluded(vec![b'l']))
            .map(|kv| kv.unwrap().0)
            .collect();
        assert_eq!(keys, vec![Value::from(&[b'k', last][..])]);
        idx.flush().unwrap();
        assert_eq!(
            idx.range(Bound::Unbounded, Bound::Unbounded).count(),
            2,
            "k{last} and p"
        );
        // An empty or reversed range is no error.
        assert_eq!(
            idx.range(Bound::Included(vec![b'z']), Bound::Excluded(vec![b'a']))
                .count(),
            0
        );
        idx.clear().unwrap();
        assert!(idx.get(b"p").unwrap().is_none());
        assert_eq!(idx.tree_len().unwrap(), 0);
        assert_eq!(idx.range(Bound::Unbounded, Bound::Unbounded).count(), 0);
    }
}
