//! The sled index: state derived from the journals, rebuildable at any time.
//!
//! One sled tree per tenant. Every journal entry's changes are applied as one
//! [`IndexBatch`] to the tenant's write-behind overlay ([`crate::overlay`]), which goes to
//! sled as one atomic batch, together with the journal position it brings the index to,
//! every few hundred entries. So after a crash sled's index is at some position p and
//! catching up means replaying entries p.. from the journal. Reads look at the overlay
//! first: an applied entry is visible at once.
//!
//! Keys of a tenant tree (all integers big-endian, so sled's byte order is numeric order):
//!
//! | prefix | key                      | value                                   |
//! |--------|--------------------------|-----------------------------------------|
//! | `p`    | —                        | next sequence number u64, last leaf [32] |
//! | `r`    | content digest [32]      | reference count u64, size u64            |
//! | `m`    | (records model)          | owned by the [`Projection`]              |
//!
//! The storage layer owns `p` and `r`; a [`Projection`] (the records model) adds its own
//! keys under `m` in the same batch. Perfect Merkle nodes and record locations, which have
//! a fixed shape, are in two flat files per tenant beside sled ([`crate::tree_files`]).

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sled::IVec;

use crate::fsutil::PathIoError;
pub use crate::overlay::IndexBatch;
use crate::overlay::{Lookup, Merged, Overlay, FLUSH_ENTRIES, MAX_PENDING_ENTRIES};
use crate::tree_files::TreeFiles;

use crate::digest::Digest;
use crate::entry::PayloadKind;
use crate::journal::{Location, Record};
use crate::merkle::{MerkleError, NewNode, NodeSource};

/// Payload role that releases one reference to a content object (destruction uses it).
pub const ROLE_RELEASE: &str = "release";
/// Payload role of a reference payload naming a metadata record that destruction removed.
pub const ROLE_DESTROYED: &str = "destroyed";

const KEY_POSITION: &[u8] = b"p";
const PREFIX_CONTENT_REF: u8 = b'r';
/// Key prefix reserved for the records model's projection.
pub const PREFIX_MODEL: u8 = b'm';

/// Index errors.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled reported an error.
    #[error("index database: {0}")]
    Sled(#[from] sled::Error),
    /// The files of Merkle nodes and record locations failed.
    #[error("index files: {0}")]
    Files(#[from] PathIoError),
    /// A stored value does not have the expected form.
    #[error("index value for {key} is malformed: {reason}")]
    Malformed {
        /// Which key (described).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The projection rejected an entry while applying it.
    #[error("applying entry {seq} to the index: {reason}")]
    Projection {
        /// The entry.
        seq: u64,
        /// Why.
        reason: String,
    },
}

/// How the records model keeps its own derived state in step with the journal.
///
/// `apply` is called for every entry in journal order, live and during rebuild, and must be
/// a pure function of the index state before the entry and the entry itself, so that a
/// rebuilt index equals the live one.
pub trait Projection: Send + Sync {
    /// Adds the entry's effects to `batch` (keys under [`PREFIX_MODEL`] only).
    fn apply(
        &self,
        index: &TenantIndex,
        record: &Record,
        batch: &mut IndexBatch,
    ) -> Result<(), IndexError>;
}

/// A projection that keeps nothing (the bare storage engine).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProjection;

impl Projection for NoProjection {
    fn apply(&self, _: &TenantIndex, _: &Record, _: &mut IndexBatch) -> Result<(), IndexError> {
        Ok(())
    }
}

/// The index database of a store.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    /// Where the tenants' files of Merkle nodes and record locations are.
    files_dir: std::path::PathBuf,
    /// Each tenant's overlay and files, shared by every handle of that tenant's index.
    tenants: Arc<Mutex<HashMap<String, Arc<Shared>>>>,
    /// For a temporary index: removes its files directory when the last handle goes.
    _temporary: Option<Arc<TemporaryDir>>,
    /// Writes overlays to sled in the background; stopped when the last handle goes.
    flusher: Arc<Flusher>,
}

/// The background thread that writes tenants' overlays to sled once enough entries wait,
/// so that no request pays for sled's work; writers only fall back to flushing themselves
/// when far too many entries wait ([`TenantIndex::make_room`]). Dropping the last handle
/// stops the thread after it has written what was handed to it.
struct Flusher {
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
    due: Vec<(sled::Tree, Arc<Shared>)>,
    stop: bool,
}

impl Flusher {
    fn start() -> Arc<Flusher> {
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
            for (tree, shared) in due {
                if let Err(e) = flush_shared(&tree, &shared) {
                    // The overlay keeps the changes; the next flush tries again, and writers
                    // meet the error themselves once the overlay is full.
                    tracing::error!(error = %e, "writing the index overlay to sled failed");
                }
            }
            if stop {
                return;
            }
        }
    }

    fn request(&self, tree: &sled::Tree, shared: &Arc<Shared>) {
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.due.iter().any(|(_, s)| Arc::ptr_eq(s, shared)) {
            st.due.push((tree.clone(), shared.clone()));
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

/// Flushes one tenant's files, then its overlay (the order sled's position relies on).
fn flush_shared(tree: &sled::Tree, shared: &Shared) -> Result<(), IndexError> {
    shared.files.sync()?;
    shared.overlay.flush(tree)?;
    Ok(())
}

/// What every handle of one tenant's index shares.
struct Shared {
    overlay: Overlay,
    files: TreeFiles,
}

struct TemporaryDir(std::path::PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

fn tree_name(tenant: &str) -> String {
    format!("tenant/{tenant}")
}

fn packs_tree_name(tenant: &str) -> String {
    format!("packs/{tenant}")
}

impl Index {
    /// Opens (or creates) the index database in `dir`, with the tenants' files of Merkle
    /// nodes and record locations in `files_dir`.
    pub fn open(dir: &Path, files_dir: &Path) -> Result<Index, IndexError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .flush_every_ms(Some(500));
        // sled releases its file lock from a background thread shortly after the last
        // handle is dropped, so reopening in the same process can find it still held for a
        // moment. Other processes are kept out by the store's own lock, taken before this.
        let mut waited = 0;
        loop {
            match config.open() {
                Ok(db) => return Ok(Index::over(db, files_dir.to_path_buf(), None)),
                // sled 0.34 reports its lock as ErrorKind::Other with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && waited < 100 =>
                {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens a throw-away index (for verification by rebuild and for tests).
    pub fn temporary() -> Result<Index, IndexError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(32 << 20)
            .open()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "akte-index-{}-{nanos:x}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let guard = Arc::new(TemporaryDir(dir.clone()));
        Ok(Index::over(db, dir, Some(guard)))
    }

    fn over(
        db: sled::Db,
        files_dir: std::path::PathBuf,
        temporary: Option<Arc<TemporaryDir>>,
    ) -> Index {
        Index {
            db,
            files_dir,
            tenants: Arc::new(Mutex::new(HashMap::new())),
            _temporary: temporary,
            flusher: Flusher::start(),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Shared>>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index tree of one tenant.
    pub fn tenant(&self, tenant: &str) -> Result<TenantIndex, IndexError> {
        let mut all = self.shared();
        let shared = match all.get(tenant) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(Shared {
                    overlay: Overlay::default(),
                    files: TreeFiles::open(&self.files_dir, tenant)?,
                });
                all.insert(tenant.to_owned(), s.clone());
                s
            }
        };
        Ok(TenantIndex {
            tree: self.db.open_tree(tree_name(tenant))?,
            shared,
            flusher: self.flusher.clone(),
        })
    }

    /// Where a tenant's content store keeps the location of packed objects
    /// ([`crate::pack`]): derived from the pack files, as the tenant tree is from the journal.
    pub fn packs_tree(&self, tenant: &str) -> Result<sled::Tree, IndexError> {
        Ok(self.db.open_tree(packs_tree_name(tenant))?)
    }

    /// Removes a tenant's index trees entirely (before creating a tenant of that name).
    pub fn clear_tenant(&self, tenant: &str) -> Result<(), IndexError> {
        if let Some(s) = self.shared().remove(tenant) {
            s.overlay.clear();
        }
        TreeFiles::remove(&self.files_dir, tenant)?;
        self.db.drop_tree(tree_name(tenant))?;
        self.db.drop_tree(packs_tree_name(tenant))?;
        Ok(())
    }

    /// Writes every tenant's overlay to sled and flushes sled's buffers to disk. Not needed
    /// for safety (the journal is the truth) but shortens the replay after a crash.
    pub fn flush(&self) -> Result<(), IndexError> {
        let all: Vec<(String, Arc<Shared>)> = self
            .shared()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (tenant, shared) in all {
            flush_shared(&self.db.open_tree(tree_name(&tenant))?, &shared)?;
        }
        self.db.flush()?;
        Ok(())
    }
}

/// Where an index stands relative to its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Entries `0..next_seq` have been applied.
    pub next_seq: u64,
    /// Leaf hash of entry `next_seq - 1` (zero when nothing is applied).
    pub last_leaf: Digest,
}

/// Reference count and size of one content object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRef {
    /// How many live references the journal holds.
    pub count: u64,
    /// Original size in bytes.
    pub size: u64,
}

/// The index tree of one tenant, with its overlay of changes not yet in sled and its files
/// of Merkle nodes and record locations.
#[derive(Clone)]
pub struct TenantIndex {
    tree: sled::Tree,
    shared: Arc<Shared>,
    flusher: Arc<Flusher>,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantIndex")
    }
}

fn digest_key(prefix: u8, d: &Digest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(d.as_bytes());
    k
}

fn u64_at(v: &[u8], at: usize) -> Option<u64> {
    v.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
}

impl TenantIndex {
    /// A number that tells this tenant's index apart from every other one open in the
    /// process (for caches of decoded values, which also compare the stored bytes).
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// The value of `key`, as of the last applied entry.
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        match self.shared.overlay.get(key.as_ref()) {
            Lookup::Found(v) => Ok(v),
            Lookup::Absent => self.tree.get(key),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Every key starting with `prefix`, in order, with its value.
    pub fn scan_prefix<P: AsRef<[u8]>>(
        &self,
        prefix: P,
    ) -> impl Iterator<Item = sled::Result<(IVec, IVec)>> + use<P> {
        let prefix = prefix.as_ref().to_vec();
        let pending = match prefix_end(&prefix) {
            Some(end) => self
                .shared
                .overlay
                .range(Bound::Included(prefix.clone()), Bound::Excluded(end)),
            None => self
                .shared
                .overlay
                .range(Bound::Included(prefix.clone()), Bound::Unbounded),
        };
        Merged::new(pending, self.tree.scan_prefix(prefix))
    }

    /// Every key in `range`, in order, with its value.
    pub fn range<R: RangeBounds<Vec<u8>>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = sled::Result<(IVec, IVec)>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let pending = self.shared.overlay.range(start.clone(), end.clone());
        Merged::new(pending, self.tree.range::<Vec<u8>, _>((start, end)))
    }

    /// Writes the changes waiting in memory to sled (one atomic batch), after flushing the
    /// files of nodes and locations that the batch's position relies on.
    pub fn flush_pending(&self) -> Result<(), IndexError> {
        flush_shared(&self.tree, &self.shared)
    }

    /// How many entries the files of nodes and locations hold.
    pub fn file_entries(&self) -> Result<u64, IndexError> {
        Ok(self.shared.files.entries()?)
    }

    /// Cuts the files of nodes and locations back to the first `n` entries.
    pub fn truncate_files(&self, n: u64) -> Result<(), IndexError> {
        Ok(self.shared.files.truncate(n)?)
    }

    /// Where this index's files of nodes and locations differ from `other`'s, if they do.
    pub fn files_difference(&self, other: &TenantIndex) -> Result<Option<String>, IndexError> {
        Ok(self.shared.files.first_difference(&other.shared.files)?)
    }

    /// Flushes if enough entries wait and no flush runs; waits for one if far too many
    /// wait. For single-threaded replays; live writers use [`Self::make_room`] and
    /// [`Self::request_flush`].
    pub fn flush_if_due(&self) -> Result<(), IndexError> {
        let waiting = self.shared.overlay.entries();
        if waiting >= MAX_PENDING_ENTRIES
            || (waiting >= FLUSH_ENTRIES && self.shared.overlay.try_flush_slot())
        {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Before a writer applies an entry: if the overlay is full (the background flush fell
    /// behind or fails), flush now, so that memory stays bounded and a failing index is
    /// reported before anything is queued.
    pub fn make_room(&self) -> Result<(), IndexError> {
        if self.shared.overlay.entries() >= MAX_PENDING_ENTRIES {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// After a writer applied an entry: hands the overlay to the background flush once
    /// enough entries wait.
    pub fn request_flush(&self) {
        if self.shared.overlay.entries() >= FLUSH_ENTRIES {
            self.flusher.request(&self.tree, &self.shared);
        }
    }

    /// How far the index has applied the journal.
    pub fn position(&self) -> Result<Position, IndexError> {
        match self.get(KEY_POSITION)? {
            None => Ok(Position {
                next_seq: 0,
                last_leaf: Digest::ZERO,
            }),
            Some(v) => {
                let next_seq = u64_at(&v, 0);
                let leaf = v.get(8..40).and_then(Digest::from_slice);
                match (next_seq, leaf, v.len()) {
                    (Some(next_seq), Some(last_leaf), 40) => Ok(Position {
                        next_seq,
                        last_leaf,
                    }),
                    _ => Err(IndexError::Malformed {
                        key: "position".into(),
                        reason: format!("{} bytes", v.len()),
                    }),
                }
            }
        }
    }

    /// Applies one journal record: Merkle nodes, location, content references, the
    /// projection's keys and the new position, all in one atomic batch.
    pub fn apply(
        &self,
        record: &Record,
        new_nodes: &[NewNode],
        projection: &dyn Projection,
    ) -> Result<(), IndexError> {
        self.shared
            .files
            .write(record.entry.seq, record.location, new_nodes)?;
        let mut batch = IndexBatch::default();
        let mut deltas: BTreeMap<Digest, (i64, u64)> = BTreeMap::new();
        for p in &record.entry.payloads {
            match p.kind {
                PayloadKind::Content => {
                    let d = deltas.entry(p.digest).or_insert((0, p.size));
                    d.0 += 1;
                }
                PayloadKind::Reference if p.role == ROLE_RELEASE => {
                    let d = deltas.entry(p.digest).or_insert((0, p.size));
                    d.0 -= 1;
                }
                _ => {}
            }
        }
        for (digest, (delta, size)) in deltas {
            let current = self.content_ref(&digest)?;
            let count = current.map_or(0, |c| c.count) as i64 + delta;
            let key = digest_key(PREFIX_CONTENT_REF, &digest);
            if count <= 0 {
                batch.remove(&key[..]);
            } else {
                let size = current.map_or(size, |c| c.size);
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&(count as u64).to_be_bytes());
                v[8..].copy_from_slice(&size.to_be_bytes());
                batch.insert(&key[..], &v[..]);
            }
        }
        projection.apply(self, record, &mut batch)?;
        let mut pos = [0u8; 40];
        pos[..8].copy_from_slice(&(record.entry.seq + 1).to_be_bytes());
        pos[8..].copy_from_slice(record.leaf.as_bytes());
        batch.insert(KEY_POSITION, &pos[..]);
        self.shared.overlay.merge(batch);
        Ok(())
    }

    /// Location of entry `seq`, if applied.
    pub fn location(&self, seq: u64) -> Result<Option<Location>, IndexError> {
        if seq >= self.position()?.next_seq {
            return Ok(None);
        }
        Ok(self.shared.files.location(seq)?)
    }

    /// Reference count of a content object (`None` when no live entry refers to it).
    pub fn content_ref(&self, digest: &Digest) -> Result<Option<ContentRef>, IndexError> {
        match self.get(digest_key(PREFIX_CONTENT_REF, digest))? {
            None => Ok(None),
            Some(v) => match (u64_at(&v, 0), u64_at(&v, 8), v.len()) {
                (Some(count), Some(size), 16) => Ok(Some(ContentRef { count, size })),
                _ => Err(IndexError::Malformed {
                    key: format!("content reference {digest}"),
                    reason: format!("{} bytes", v.len()),
                }),
            },
        }
    }

    /// All referenced content objects, in digest order, streaming.
    pub fn content_refs(
        &self,
    ) -> impl Iterator<Item = Result<(Digest, ContentRef), IndexError>> + '_ {
        self.scan_prefix([PREFIX_CONTENT_REF]).map(|kv| {
            let (k, v) = kv?;
            let digest = Digest::from_slice(&k[1..]).ok_or_else(|| IndexError::Malformed {
                key: "content reference".into(),
                reason: format!("key of {} bytes", k.len()),
            })?;
            match (u64_at(&v, 0), u64_at(&v, 8)) {
                (Some(count), Some(size)) => Ok((digest, ContentRef { count, size })),
                _ => Err(IndexError::Malformed {
                    key: format!("content reference {digest}"),
                    reason: format!("{} bytes", v.len()),
                }),
            }
        })
    }

    /// Every key and value, in order (for comparing a live index with a rebuilt one).
    pub fn iter_all(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), IndexError>> {
        self.range::<std::ops::RangeFull>(..)
            .map(|kv| kv.map_err(IndexError::from))
    }

    /// Removes everything (before a rebuild).
    pub fn clear(&self) -> Result<(), IndexError> {
        self.shared.overlay.clear();
        self.tree.clear()?;
        self.shared.files.truncate(0)?;
        Ok(())
    }
}

/// The first key after every key that starts with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl NodeSource for TenantIndex {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        match self.shared.files.node(level, index) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(MerkleError::MissingNode { level, index }),
            Err(e) => Err(MerkleError::Source(e.to_string())),
        }
    }
}
