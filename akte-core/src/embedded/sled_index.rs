//! The embedded backend's index: one sled database per tenant, a write-behind overlay in
//! front of it, and the Merkle nodes and record locations in two flat files beside it.
//!
//! ```text
//! index/<tenant>/sled/        the keys (tree "main") and the pack location index
//!                             (tree "packs", crate::embedded::pack)
//! index/<tenant>/nodes        perfect Merkle nodes (crate::embedded::tree_files)
//! index/<tenant>/locations    record locations
//! ```
//!
//! Each tenant's index is its own database, so damage, a lock or a rebuild in one tenant
//! never touches another (TARGET.md: tenants share nothing on disk either). Every entry's
//! changes go to the overlay ([`super::overlay`]) under the tenant's write lock; a
//! background thread shared by all tenants writes an overlay to sled in one atomic batch,
//! with the journal position, once [`FLUSH_ENTRIES`] entries wait, after flushing the node
//! and location files that position relies on.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backend::{FaultKind, IndexBackend, IndexBatch, KvIter, TreeUpdate, Value};
use crate::digest::Digest;
use crate::embedded::fsutil::{self, IoContext};
use crate::embedded::overlay::{Lookup, Merged, Overlay, FLUSH_ENTRIES, MAX_PENDING_ENTRIES};
use crate::embedded::tree_files::TreeFiles;
use crate::index::IndexError;
use crate::journal::Location;

impl IndexError {
    /// An error sled reported.
    pub(crate) fn from_sled(e: sled::Error) -> IndexError {
        let kind = match &e {
            sled::Error::Io(io) => FaultKind::of_io(io),
            sled::Error::Corruption { .. } => FaultKind::Corrupt,
            sled::Error::CollectionNotFound(_) => FaultKind::NotFound,
            sled::Error::Unsupported(_) | sled::Error::ReportableBug(_) => FaultKind::Other,
        };
        IndexError::Backend {
            reason: e.to_string(),
            kind,
        }
    }
}

/// sled's cache per tenant database. Small: the overlay serves recent writes, the flat
/// files serve proofs, and an installation holds hundreds of tenants.
const CACHE_BYTES: u64 = 8 << 20;

/// The background thread that writes tenants' overlays to sled once enough entries wait,
/// so that no request pays for sled's work; writers only fall back to flushing themselves
/// when far too many entries wait ([`SledIndex::make_room`]). Dropping the last handle
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
                if let Err(e) = shared.flush() {
                    // The overlay keeps the changes; the next flush tries again, and writers
                    // meet the error themselves once the overlay is full.
                    tracing::error!(error = %e, index = %shared.dir.display(), "writing the index overlay to sled failed");
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
    db: sled::Db,
    main: sled::Tree,
    overlay: Overlay,
    files: TreeFiles,
    dir: PathBuf,
}

impl Shared {
    /// Flushes the files, then the overlay (the order sled's position relies on).
    fn flush(&self) -> Result<(), IndexError> {
        self.files.sync()?;
        self.overlay
            .flush(&self.main)
            .map_err(IndexError::from_sled)?;
        // sled can evict only pages it has written out, and it writes them only when
        // flushed (no flush thread per tenant: an installation holds hundreds). Without this
        // its memory grew with every page written since the start: a rebuild of 100,000
        // entries peaked at 525 MB.
        self.db.flush().map_err(IndexError::from_sled)?;
        Ok(())
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
pub struct SledIndex {
    /// Replaced whole when a damaged index is set aside ([`IndexBackend::reset`]).
    shared: std::sync::RwLock<Arc<Shared>>,
    flusher: Arc<Flusher>,
    _scratch: Option<ScratchDir>,
}

impl std::fmt::Debug for SledIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledIndex")
            .field("dir", &self.shared().dir)
            .finish()
    }
}

/// Opens sled in `dir`. sled releases its file lock from a background thread shortly
/// after the last handle of a database is dropped, so reopening in the same process can
/// find it still held for a moment; other processes are kept out by the data directory's
/// own lock, taken before this, so waiting briefly is safe. sled 0.34 reports its lock
/// only as an `Other` I/O error with this text: the match stays sealed in here.
fn open_sled(dir: &Path) -> Result<sled::Db, sled::Error> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None);
    let mut waited = 0;
    loop {
        // sled panics on some damage instead of reporting it; that is damage too.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .unwrap_or_else(|_| Err(sled::Error::Corruption { at: None, bt: () }));
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && waited < 100 =>
            {
                waited += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

impl SledIndex {
    /// Opens (creating if needed) the index in `dir`, sharing `flusher`'s background
    /// thread. A database sled cannot open (damaged) is set aside under a new name, never
    /// deleted, and an empty one takes its place: the engine then rebuilds the index from
    /// the journal.
    pub(crate) fn open(dir: &Path, flusher: Arc<Flusher>) -> Result<SledIndex, IndexError> {
        let shared = open_shared(dir)?;
        Ok(SledIndex {
            shared: std::sync::RwLock::new(Arc::new(shared)),
            flusher,
            _scratch: None,
        })
    }

    /// A throw-away index in a new directory under the system's temporary directory,
    /// removed when dropped (the reference verification rebuilds). On disk, so its memory
    /// stays bounded however long the journal.
    pub(crate) fn scratch(flusher: Arc<Flusher>) -> Result<SledIndex, IndexError> {
        let dir = tempfile_dir("akte-index")?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .temporary(true)
            .cache_capacity(32 << 20)
            .open()
            .map_err(IndexError::from_sled)?;
        Self::over(db, &dir, flusher, Some(ScratchDir(dir.clone())))
    }

    fn over(
        db: sled::Db,
        dir: &Path,
        flusher: Arc<Flusher>,
        scratch: Option<ScratchDir>,
    ) -> Result<SledIndex, IndexError> {
        Ok(SledIndex {
            shared: std::sync::RwLock::new(Arc::new(shared_over(db, dir)?)),
            flusher,
            _scratch: scratch,
        })
    }

    fn shared(&self) -> Arc<Shared> {
        self.shared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tree where the tenant's content store keeps the location of packed objects:
    /// derived from the pack files, as the rest is from the journal.
    pub(crate) fn packs_tree(&self) -> Result<sled::Tree, IndexError> {
        self.shared()
            .db
            .open_tree("packs")
            .map_err(IndexError::from_sled)
    }

    /// Writes the overlay and sled's buffers to disk.
    fn flush_all(&self) -> Result<(), IndexError> {
        let shared = self.shared();
        shared.flush()?;
        shared.db.flush().map_err(IndexError::from_sled)?;
        Ok(())
    }
}

/// Prefix of an old sled database a clear renamed aside (removed right after, or at the
/// next open after a crash).
const CLEARED: &str = "sled.cleared-";

/// Removes the databases a clear renamed aside; what cannot be removed now is tried again
/// at the next open (logged).
fn remove_cleared(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(CLEARED) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err,
                    "removing a cleared index database");
            }
        }
    }
}

/// A suffix no earlier name in this process or a recent one has.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
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

/// Opens the index in `dir`: a sled database that cannot be opened is set aside and an
/// empty one takes its place; node and location files are cut back to the entries they
/// hold consistently. Either makes the engine rebuild what is missing from the journal.
fn open_shared(dir: &Path) -> Result<Shared, IndexError> {
    fsutil::create_dir_all_durable(dir)?;
    remove_cleared(dir);
    let sled_dir = dir.join("sled");
    let db = match open_sled(&sled_dir) {
        Ok(db) => db,
        Err(e) => {
            if let sled::Error::Io(io) = &e {
                // A full disk or a failing device is not damage: nothing is set aside.
                if matches!(
                    FaultKind::of_io(io),
                    FaultKind::StorageFull | FaultKind::Unavailable
                ) {
                    return Err(IndexError::from_sled(e));
                }
            }
            let aside = set_aside(dir)?;
            tracing::warn!(index = %dir.display(), set_aside = %aside.display(), error = %e,
                "the index database cannot be opened; it was set aside and the index is rebuilt from the journal");
            fsutil::create_dir_all_durable(dir)?;
            open_sled(&sled_dir).map_err(IndexError::from_sled)?
        }
    };
    let shared = shared_over(db, dir)?;
    let held = shared.files.entries()?;
    let sound = shared.files.consistent_entries()?;
    if sound < held {
        tracing::warn!(index = %dir.display(), held, sound,
            "the index's node or location file is damaged after entry {sound}; it is cut back there and the index is rebuilt from the journal");
        shared.files.truncate(sound)?;
    }
    Ok(shared)
}

fn shared_over(db: sled::Db, dir: &Path) -> Result<Shared, IndexError> {
    let main = db.open_tree("main").map_err(IndexError::from_sled)?;
    let files = TreeFiles::open(dir)?;
    Ok(Shared {
        db,
        main,
        overlay: Overlay::default(),
        files,
        dir: dir.to_path_buf(),
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
    use std::sync::atomic::{AtomicU64, Ordering};
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

impl IndexBackend for SledIndex {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, IndexError> {
        let shared = self.shared();
        match shared.overlay.get(key) {
            Lookup::Found(v) => Ok(v),
            Lookup::Absent => Ok(shared
                .main
                .get(key)
                .map_err(IndexError::from_sled)?
                .map(|v| Value::from(&v[..]))),
        }
    }

    fn range(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KvIter<'_> {
        let shared = self.shared();
        let pending = shared.overlay.range(start.clone(), end.clone());
        Box::new(Merged::new(
            pending,
            shared.main.range::<Vec<u8>, _>((start, end)),
        ))
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

    /// Starts a fresh sled database rather than clearing the old one key by key: a
    /// rebuild refilling a cleared database carries its garbage (100,000 entries peaked at
    /// 525 MB that way, at 140 MB into a fresh database, and took 26 s instead of 20). The
    /// old database is renamed aside and removed; readers still holding it read the old,
    /// whole index until they let go. A crash leaves the renamed one, removed at open.
    fn clear(&self) -> Result<(), IndexError> {
        let mut slot = self.shared.write().unwrap_or_else(|p| p.into_inner());
        // Nothing of the old index may reach the files the fresh one takes over.
        slot.overlay.clear();
        slot.files.truncate(0)?;
        let dir = slot.dir.clone();
        let sled_dir = dir.join("sled");
        let cleared = dir.join(format!("{CLEARED}{}", unique_suffix()));
        std::fs::rename(&sled_dir, &cleared).at("rename", &sled_dir)?;
        fsutil::fsync_dir(&dir)?;
        let db = open_sled(&sled_dir).map_err(IndexError::from_sled)?;
        *slot = Arc::new(shared_over(db, &dir)?);
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
        let db = open_sled(&dir.join("sled")).map_err(IndexError::from_sled)?;
        *slot = Arc::new(shared_over(db, &dir)?);
        Ok(())
    }

    fn flush(&self) -> Result<(), IndexError> {
        self.flush_all()
    }

    fn make_room(&self) -> Result<(), IndexError> {
        let shared = self.shared();
        if shared.overlay.entries() >= MAX_PENDING_ENTRIES {
            shared.flush()?;
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
            shared.flush()?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.shared().dir.display().to_string()
    }

    fn identity(&self) -> usize {
        self as *const SledIndex as usize
    }
}

impl Drop for SledIndex {
    /// Writes the pending changes to sled, so the next open does not replay them. Nothing
    /// depends on it: the journal is the truth, and a failure here is only logged.
    fn drop(&mut self) {
        if self._scratch.is_some() || Arc::strong_count(&self.shared()) > 2 {
            return;
        }
        if let Err(e) = self.flush_all() {
            tracing::warn!(index = %self.shared().dir.display(), error = %e, "flushing the index at close failed; the next open replays the journal");
        }
    }
}

/// Keeps the tenant indexes of one data directory: one per tenant, opened once.
#[derive(Default)]
pub(crate) struct SledIndexes {
    open: Mutex<HashMap<String, std::sync::Weak<SledIndex>>>,
}

impl SledIndexes {
    /// The open index of `tenant` in `dir`, or a newly opened one.
    pub(crate) fn get(
        &self,
        tenant: &str,
        dir: &Path,
        flusher: &Arc<Flusher>,
    ) -> Result<Arc<SledIndex>, IndexError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idx) = open.get(tenant).and_then(|w| w.upgrade()) {
            return Ok(idx);
        }
        let idx = Arc::new(SledIndex::open(dir, flusher.clone())?);
        open.insert(tenant.to_owned(), Arc::downgrade(&idx));
        Ok(idx)
    }
}
