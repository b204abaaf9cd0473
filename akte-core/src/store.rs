//! The store: a data directory holding tenants, each with its journal, content store,
//! checkpoints and signing key, plus the shared sled index.
//!
//! ```text
//! DATA_DIR/
//!   FORMAT                      "akte-store 2\n": refuses directories of other versions
//!   LOCK                        flock: one process at a time
//!   index/                      sled database (derived, rebuildable)
//!   merkle/<id>.nodes|.locations perfect Merkle nodes and record locations (derived)
//!   tenants/<id>/
//!     ORIGIN                    checkpoint origin line of this tenant's log
//!     journal/<first-seq>.seg   journal segments
//!     content/objects/ab/<hex>  content objects of 1 MiB and more
//!     content/packs/<n>.pack    smaller content objects, many to a file
//!     checkpoints/<size>.note   signed checkpoints, with witness cosignatures
//!     keys/checkpoint.key       Ed25519 signing key (mode 0600)
//!     keys/checkpoint.pub       verifier key
//!     keys/witnesses            registered witnesses' keys (crate::witness)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::content::{ContentError, ContentOptions, ContentStore, PutOutcome};
use crate::digest::Digest;
use crate::entry::{EntryDraft, PayloadKind};
use crate::fsutil::{self, IoContext, PathIoError};
use crate::index::{Index, IndexError, NoProjection, Projection, TenantIndex};
use crate::journal::{Journal, JournalError, JournalOptions, Record, Ticket};
use crate::keys::{KeyError, SigningKeyPair, VerifierKey};
use crate::merkle::{self, CompactRange, MerkleError};
use crate::note::{Checkpoint, NoteError, SignedNote};
use crate::segment::Attachment;

/// Contents of the `FORMAT` file of a data directory of this version.
pub const STORE_FORMAT: &str = "akte-store 2\n";
/// The version before pack files. Its directories are a subset of version 2 (no
/// `content/packs/`), so they are opened and marked as version 2 from then on: an older
/// akte would not find the objects written to packs.
pub const STORE_FORMAT_1: &str = "akte-store 1\n";
/// Name of a tenant's signing key file.
pub const SIGNING_KEY_FILE: &str = "checkpoint.key";
/// Name of a tenant's verifier key file.
pub const VERIFIER_KEY_FILE: &str = "checkpoint.pub";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// The directory is not an akte data directory.
    #[error("{path} is not an akte data directory (no FORMAT file, and it is not empty)")]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// The directory was written by another version of akte.
    #[error("{path} holds format {found:?}; this build reads {expected:?}")]
    UnsupportedFormat {
        /// The directory.
        path: PathBuf,
        /// What the FORMAT file says.
        found: String,
        /// What this build expects.
        expected: String,
    },
    /// Another process holds the store.
    #[error("{path} is in use by another process (lock held)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A tenant id is malformed.
    #[error("invalid tenant id {id:?}: {reason}")]
    InvalidTenantId {
        /// The rejected id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// No tenant of that id.
    #[error("tenant {0:?} does not exist")]
    UnknownTenant(String),
    /// The tenant exists but could not be opened (damaged journal, bad key file, ...).
    #[error("tenant {tenant:?} is unavailable: {reason}")]
    TenantUnavailable {
        /// The tenant.
        tenant: String,
        /// Why it could not be opened.
        reason: String,
    },
    /// A tenant of that id exists already.
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    /// An entry refers to content that is not in the content store.
    #[error("content {digest} is not stored for tenant {tenant} (put it first)")]
    ContentMissing {
        /// The tenant.
        tenant: String,
        /// The digest.
        digest: Digest,
    },
    /// An entry declares a content size that differs from the stored object.
    #[error("content {digest} is {actual} bytes, the entry declares {declared}")]
    ContentSize {
        /// The digest.
        digest: Digest,
        /// Size in the entry.
        declared: u64,
        /// Size of the stored object.
        actual: u64,
    },
    /// A size or sequence number beyond the journal was asked for.
    #[error("tree size {requested} exceeds the journal's {available} durable entries")]
    BeyondJournal {
        /// Requested.
        requested: u64,
        /// Available.
        available: u64,
    },
    /// No checkpoint exists yet.
    #[error("tenant {0:?} has no checkpoint yet")]
    NoCheckpoint(String),
    /// The tenant's writes are fenced after an internal failure.
    #[error("tenant {tenant:?} accepts no writes until the store is reopened: {reason}")]
    Fenced {
        /// The tenant.
        tenant: String,
        /// The failure.
        reason: String,
    },
    /// Content store error.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Journal error.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Index error.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Key error.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Signed note error.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Merkle tree error.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

/// How a store is opened.
#[derive(Clone)]
pub struct StoreOptions {
    /// Prefix of new tenants' checkpoint origins: `<prefix>/<tenant id>`.
    pub origin_prefix: String,
    /// Journal tunables.
    pub journal: JournalOptions,
    /// The records model's projection (the bare engine uses [`NoProjection`]).
    pub projection: Arc<dyn Projection>,
    /// Content store settings (zstd level, packing).
    pub content: ContentOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            origin_prefix: "akte.local".into(),
            journal: JournalOptions::default(),
            projection: Arc::new(NoProjection),
            content: ContentOptions::default(),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("origin_prefix", &self.origin_prefix)
            .field("journal", &self.journal)
            .finish()
    }
}

/// Checks a tenant id: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a letter
/// or digit (safe in paths, resource names and checkpoint origins).
pub fn validate_tenant_id(id: &str) -> Result<(), StoreError> {
    let bad = |reason| StoreError::InvalidTenantId {
        id: id.chars().take(80).collect(),
        reason,
    };
    if id.is_empty() || id.len() > 63 {
        return Err(bad("must be 1 to 63 characters long"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("may only hold a-z, 0-9 and '-'"));
    }
    if id.starts_with('-') {
        return Err(bad("must start with a letter or digit"));
    }
    Ok(())
}

/// An open data directory.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    index: Index,
    tenants: RwLock<BTreeMap<String, Arc<Tenant>>>,
    /// Tenants that could not be opened, with the reason. One damaged tenant must not take
    /// the installation's other agencies down with it.
    unavailable: BTreeMap<String, String>,
    create_lock: Mutex<()>,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// What opening a tenant found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Entries replayed into the index because it lagged behind the journal.
    pub replayed: u64,
    /// Whether the index was rebuilt from scratch (it was ahead of or diverged from the journal).
    pub rebuilt: bool,
    /// Bytes cut from a torn journal tail.
    pub truncated_bytes: u64,
}

fn read_format(dir: &Path) -> Result<Option<String>, StoreError> {
    let p = dir.join("FORMAT");
    match fs::read(&p) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PathIoError {
            op: "read",
            path: p,
            source: e,
        }
        .into()),
    }
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let p = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .at("open", &p)?;
    // SAFETY: flock on a valid, owned file descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Locked { path: p });
    }
    Ok(f)
}

impl Store {
    /// Opens the data directory `dir`, creating it when it does not exist or is empty.
    ///
    /// Every tenant's journal is recovered (a torn tail is cut back) and the index catches
    /// up with the journals.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        fsutil::create_dir_all_durable(dir)?;
        let mut upgrade = false;
        match read_format(dir)? {
            Some(f) if f == STORE_FORMAT => {}
            Some(f) if f == STORE_FORMAT_1 => upgrade = true,
            Some(found) => {
                return Err(StoreError::UnsupportedFormat {
                    path: dir.to_path_buf(),
                    found: found.trim_end().chars().take(80).collect(),
                    expected: STORE_FORMAT.trim_end().into(),
                })
            }
            None => {
                let empty = fs::read_dir(dir).at("list", dir)?.next().is_none();
                if !empty {
                    return Err(StoreError::NotAStore {
                        path: dir.to_path_buf(),
                    });
                }
                fsutil::create_dir_all_durable(&dir.join("tenants"))?;
                fsutil::write_file_atomic(&dir.join("FORMAT"), STORE_FORMAT.as_bytes(), 0o644)?;
            }
        }
        let lock = lock_dir(dir)?;
        if upgrade {
            fsutil::write_file_atomic(&dir.join("FORMAT"), STORE_FORMAT.as_bytes(), 0o644)?;
            tracing::info!(dir = %dir.display(), "data directory of format 1 is now format 2 (small content objects go to pack files)");
        }
        fsutil::create_dir_all_durable(&dir.join("tenants"))?;
        let index = Index::open(&dir.join("index"), &dir.join("merkle"))?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            options,
            index,
            tenants: RwLock::new(BTreeMap::new()),
            unavailable: BTreeMap::new(),
            create_lock: Mutex::new(()),
            _lock: lock,
        };
        let tenants_dir = dir.join("tenants");
        let mut ids = Vec::new();
        for item in fs::read_dir(&tenants_dir).at("list", &tenants_dir)? {
            let item = item.at("list", &tenants_dir)?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // An interrupted tenant creation; it never became visible.
                tracing::warn!(path = %item.path().display(), "removing incomplete tenant directory");
                fs::remove_dir_all(item.path()).at("remove", &item.path())?;
                continue;
            }
            if let Err(e) = validate_tenant_id(&name) {
                tracing::error!(path = %item.path().display(), error = %e, "not a tenant directory");
                store.unavailable.insert(name, e.to_string());
                continue;
            }
            ids.push(name);
        }
        for id in ids {
            let (tenant, report) = match Tenant::open(&store, &id) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "tenant cannot be opened; it stays unavailable, the others are served");
                    store.unavailable.insert(id, e.to_string());
                    continue;
                }
            };
            if report.replayed > 0 || report.rebuilt || report.truncated_bytes > 0 {
                tracing::info!(tenant = %id, replayed = report.replayed, rebuilt = report.rebuilt,
                    truncated_bytes = report.truncated_bytes, "tenant recovered");
            }
            store.write_tenants().insert(id, Arc::new(tenant));
        }
        Ok(store)
    }

    fn write_tenants(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Tenant>>> {
        self.tenants.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_tenants(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Tenant>>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shared index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Creates a tenant with its own journal, content store and signing key.
    pub fn create_tenant(&self, id: &str) -> Result<Arc<Tenant>, StoreError> {
        validate_tenant_id(id)?;
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.read_tenants().contains_key(id) || self.unavailable.contains_key(id) {
            return Err(StoreError::TenantExists(id.into()));
        }
        // Build the tenant in a hidden directory and rename it into place, so that a crash
        // never leaves a half-made tenant visible.
        // A stale index of a tenant of the same name (removed by hand) must not leak in.
        self.index.clear_tenant(id)?;
        let tenants_dir = self.dir.join("tenants");
        let staging = tenants_dir.join(format!(".new-{id}"));
        if staging.exists() {
            fs::remove_dir_all(&staging).at("remove", &staging)?;
        }
        fsutil::create_dir_all_durable(&staging.join("keys"))?;
        fsutil::create_dir_all_durable(&staging.join("checkpoints"))?;
        let origin = format!("{}/{id}", self.options.origin_prefix);
        fsutil::write_file_atomic(
            &staging.join("ORIGIN"),
            format!("{origin}\n").as_bytes(),
            0o644,
        )?;
        let key = SigningKeyPair::generate(&origin)?;
        key.save(&staging.join("keys").join(SIGNING_KEY_FILE))?;
        key.verifier()
            .save(&staging.join("keys").join(VERIFIER_KEY_FILE))?;
        // The first journal segment and the content directories are made here too, so a
        // tenant never becomes visible without them.
        drop(Journal::open(
            &staging.join("journal"),
            self.options.journal.clone(),
        )?);
        drop(ContentStore::open_indexed(
            &staging.join("content"),
            self.options.content,
            self.index.packs_tree(id)?,
        )?);
        let final_dir = tenants_dir.join(id);
        fs::rename(&staging, &final_dir).at("rename", &final_dir)?;
        fsutil::fsync_dir(&tenants_dir)?;
        let (tenant, _) = Tenant::open(self, id)?;
        let tenant = Arc::new(tenant);
        self.write_tenants().insert(id.into(), tenant.clone());
        tracing::info!(tenant = %id, origin = %origin, "tenant created");
        Ok(tenant)
    }

    /// An existing tenant.
    pub fn tenant(&self, id: &str) -> Result<Arc<Tenant>, StoreError> {
        if let Some(reason) = self.unavailable.get(id) {
            return Err(StoreError::TenantUnavailable {
                tenant: id.to_owned(),
                reason: reason.clone(),
            });
        }
        self.read_tenants()
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTenant(id.chars().take(80).collect()))
    }

    /// Tenants that could not be opened, with the reason (naming file and place).
    pub fn unavailable_tenants(&self) -> &BTreeMap<String, String> {
        &self.unavailable
    }

    /// All tenants, by id.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.read_tenants().values().cloned().collect()
    }

    /// Recreates every tenant's index from its journal, and the location index of its
    /// pack files from the packs.
    pub fn rebuild_index(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for t in self.tenants() {
            total += t.rebuild_index()?;
            t.content.reindex_packs()?;
        }
        self.index.flush()?;
        Ok(total)
    }

    /// Flushes the index (on shutdown; the journal is durable at every acknowledgement).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.index.flush()?;
        Ok(())
    }
}

impl Drop for Store {
    /// Writes the index's pending changes to sled, so the next open does not replay them.
    /// Nothing depends on it: the journal is the truth, and a failure here is only logged.
    fn drop(&mut self) {
        if let Err(e) = self.index.flush() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "flushing the index at close failed; the next open replays the journal");
        }
    }
}

struct Writer {
    frontier: CompactRange,
    fenced: Option<String>,
}

/// One tenant: journal, content store, index tree and signing key.
pub struct Tenant {
    id: String,
    dir: PathBuf,
    origin: String,
    content: ContentStore,
    journal: Journal,
    index: TenantIndex,
    key: SigningKeyPair,
    projection: Arc<dyn Projection>,
    writer: Mutex<Writer>,
    upper_nodes: RwLock<HashMap<(u8, u64), Digest>>,
    /// Serialises rewrites of files under `checkpoints/` and `keys/witnesses`: signing a
    /// checkpoint and adding a witness's cosignature to a stored one both replace a file,
    /// and two unserialised replacements could lose one of them.
    notes_lock: Mutex<()>,
}

/// Perfect subtrees at this level and above are cached in memory: they never change once
/// complete, there are only n / 2^level of them, and they make up most of every proof.
const CACHED_NODE_LEVEL: u8 = 6;

/// The tenant's Merkle nodes: the upper levels from memory, the rest from the index.
struct CachedNodes<'a> {
    index: &'a TenantIndex,
    cache: &'a RwLock<HashMap<(u8, u64), Digest>>,
}

impl merkle::NodeSource for CachedNodes<'_> {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        if level < CACHED_NODE_LEVEL {
            return self.index.perfect_node(level, index);
        }
        if let Some(d) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(level, index))
        {
            return Ok(*d);
        }
        let d = self.index.perfect_node(level, index)?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((level, index), d);
        Ok(d)
    }
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.id).finish()
    }
}

/// What the `build` step of [`Tenant::append_with`] decided.
#[derive(Debug)]
pub enum Write<T> {
    /// Append this entry; `value` is handed back with the result.
    Append {
        /// The entry.
        draft: EntryDraft,
        /// Its attachments (the records behind its inline payloads).
        attachments: Vec<Attachment>,
        /// Returned to the caller once the entry is durable.
        value: T,
    },
    /// Append nothing and return `value` (nothing to do).
    Skip(T),
}

/// A durable journal entry, as `append` returns it.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The entry and where it is stored.
    pub ticket: Ticket,
}

impl Tenant {
    fn open(store: &Store, id: &str) -> Result<(Tenant, OpenReport), StoreError> {
        let dir = store.dir.join("tenants").join(id);
        let origin_path = dir.join("ORIGIN");
        let origin = fs::read_to_string(&origin_path)
            .at("read", &origin_path)?
            .trim_end()
            .to_owned();
        let key = SigningKeyPair::load(&dir.join("keys").join(SIGNING_KEY_FILE))?;
        let journal = Journal::open(&dir.join("journal"), store.options.journal.clone())?;
        let content = ContentStore::open_indexed(
            &dir.join("content"),
            store.options.content,
            store.index.packs_tree(id)?,
        )?;
        let index = store.index.tenant(id)?;
        let tenant = Tenant {
            id: id.to_owned(),
            dir,
            origin,
            content,
            journal,
            index,
            key,
            projection: store.options.projection.clone(),
            writer: Mutex::new(Writer {
                frontier: CompactRange::new(),
                fenced: None,
            }),
            upper_nodes: RwLock::new(HashMap::new()),
            notes_lock: Mutex::new(()),
        };
        let mut report = OpenReport {
            truncated_bytes: tenant.journal.recovery().truncated_bytes,
            ..OpenReport::default()
        };
        let (replayed, rebuilt) = tenant.catch_up_index()?;
        report.replayed = replayed;
        report.rebuilt = rebuilt;
        Ok((tenant, report))
    }

    /// Brings the index up to the journal: replays the entries it has not seen, or rebuilds
    /// it entirely if it is ahead of the journal or disagrees with it (possible after a
    /// crash, since the index is written before the journal's flush completes).
    fn catch_up_index(&self) -> Result<(u64, bool), StoreError> {
        let journal_len = self.journal.durable_len();
        let pos = self.index.position()?;
        // The files of nodes and locations are flushed before sled records a position, so
        // they hold at least that many entries; fewer means they were lost or cut.
        let files = self.index.file_entries()?;
        let consistent = if pos.next_seq == 0 {
            true
        } else if pos.next_seq > journal_len || files < pos.next_seq {
            false
        } else {
            let leaf = merkle::NodeSource::perfect_node(&self.index, 0, pos.next_seq - 1).ok();
            match self.index.location(pos.next_seq - 1)? {
                Some(loc) => match self.journal.read_at(loc) {
                    Ok(rec) => {
                        rec.leaf == pos.last_leaf
                            && leaf == Some(pos.last_leaf)
                            && rec.entry.seq == pos.next_seq - 1
                    }
                    Err(_) => false,
                },
                None => false,
            }
        };
        if !consistent {
            tracing::warn!(tenant = %self.id, index_position = pos.next_seq, journal_len,
                "index does not match the journal (ahead after a crash, or damaged); rebuilding it from the journal");
            let n = self.rebuild_index()?;
            return Ok((n, true));
        }
        // Whatever the files hold beyond sled's position is replayed from the journal.
        self.index.truncate_files(pos.next_seq)?;
        let peaks = CompactRange::peak_positions(pos.next_seq)
            .into_iter()
            .map(|(level, idx)| merkle::NodeSource::perfect_node(&self.index, level, idx))
            .collect::<Result<Vec<_>, _>>()?;
        let mut w = self.lock_writer();
        w.frontier = CompactRange::from_parts(pos.next_seq, peaks)?;
        if pos.next_seq == journal_len {
            return Ok((0, false));
        }
        let start = match pos.next_seq {
            0 => None,
            n => self.index.location(n - 1)?,
        };
        // The iterator starts at the last applied record (checked against the index's leaf
        // hash above), so the chain check covers the link to the first replayed entry.
        let iter = self.journal.iter(start, journal_len)?;
        let mut replayed = 0u64;
        for rec in iter {
            let rec = rec?;
            if rec.entry.seq < pos.next_seq {
                continue;
            }
            let nodes = w.frontier.push(rec.leaf)?;
            self.index.apply(&rec, &nodes, self.projection.as_ref())?;
            self.index.flush_if_due()?;
            replayed += 1;
        }
        self.index.flush_pending()?;
        Ok((replayed, false))
    }

    /// Clears this tenant's index and replays its whole journal; returns the entry count.
    pub fn rebuild_index(&self) -> Result<u64, StoreError> {
        let mut w = self.lock_writer();
        self.index.clear()?;
        let n = replay_into(
            &self.journal,
            &self.index,
            self.projection.as_ref(),
            self.journal.durable_len(),
        )?;
        let pos = self.index.position()?;
        let peaks = CompactRange::peak_positions(pos.next_seq)
            .into_iter()
            .map(|(level, idx)| merkle::NodeSource::perfect_node(&self.index, level, idx))
            .collect::<Result<Vec<_>, _>>()?;
        w.frontier = CompactRange::from_parts(pos.next_seq, peaks)?;
        Ok(n)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The origin line of this tenant's checkpoints.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The index tree.
    pub fn index(&self) -> &TenantIndex {
        &self.index
    }

    /// The public key that verifies this tenant's checkpoints.
    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// Stores document bytes (durably) and returns their digest. Nothing refers to them
    /// until an entry lists the digest as a content payload.
    pub fn put_content<R: Read>(&self, reader: R) -> Result<PutOutcome, StoreError> {
        Ok(self.content.put(reader)?)
    }

    /// Appends an entry and returns once it is durable. Content payloads must already be
    /// stored (durable content before its entry); inline payloads must come with their
    /// attachments.
    pub fn append(
        &self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Appended, StoreError> {
        let ((), appended) = self.append_with(|_| {
            Ok::<_, StoreError>(Write::Append {
                draft,
                attachments,
                value: (),
            })
        })?;
        appended.ok_or_else(|| StoreError::Fenced {
            tenant: self.id.clone(),
            reason: "append produced no entry".into(),
        })
    }

    /// Appends the entry that `build` makes from the current index, holding the tenant's
    /// write lock so that no other write comes between the check and the append. Returns
    /// once the entry is durable; writers waiting at the same time share one flush.
    /// `build` may also decide that nothing needs appending ([`Write::Skip`]), for example
    /// when an idempotent request is repeated.
    pub fn append_with<T, E, F>(&self, build: F) -> Result<(T, Option<Appended>), E>
    where
        F: FnOnce(&TenantIndex) -> Result<Write<T>, E>,
        E: From<StoreError>,
    {
        // A full overlay (the background flush fell behind, or sled fails) is dealt with
        // before anything is queued, so its error reaches the caller with nothing written.
        self.index.make_room().map_err(StoreError::from)?;
        let (value, ticket) = {
            let mut w = self.lock_writer();
            if let Some(reason) = &w.fenced {
                return Err(StoreError::Fenced {
                    tenant: self.id.clone(),
                    reason: reason.clone(),
                }
                .into());
            }
            let (draft, attachments, value) = match build(&self.index)? {
                Write::Skip(value) => return Ok((value, None)),
                Write::Append {
                    draft,
                    attachments,
                    value,
                } => (draft, attachments, value),
            };
            self.check_content(&draft)?;
            let ticket = self
                .journal
                .enqueue(draft, attachments.clone())
                .map_err(StoreError::from)?;
            let record = Record {
                entry: ticket.entry.clone(),
                leaf: ticket.leaf,
                attachments,
                location: ticket.location,
            };
            let applied = w
                .frontier
                .push(ticket.leaf)
                .map_err(StoreError::from)
                .and_then(|nodes| {
                    Ok(self
                        .index
                        .apply(&record, &nodes, self.projection.as_ref())?)
                });
            if let Err(e) = applied {
                // The entry is in the journal's queue but not in the index: stop writing
                // until a reopen replays the journal into the index.
                tracing::error!(tenant = %self.id, error = %e, "index update failed; fencing tenant writes");
                w.fenced = Some(e.to_string());
                drop(w);
                self.journal
                    .wait_durable(ticket.entry.seq)
                    .map_err(StoreError::from)?;
                return Err(e.into());
            }
            (value, ticket)
        };
        self.journal
            .wait_durable(ticket.entry.seq)
            .map_err(StoreError::from)?;
        self.index.request_flush();
        Ok((value, Some(Appended { ticket })))
    }

    fn check_content(&self, draft: &EntryDraft) -> Result<(), StoreError> {
        for p in draft
            .payloads
            .iter()
            .filter(|p| p.kind == PayloadKind::Content)
        {
            match self.content.stat(&p.digest) {
                Ok(info) if info.size == p.size => {}
                Ok(info) => {
                    return Err(StoreError::ContentSize {
                        digest: p.digest,
                        declared: p.size,
                        actual: info.size,
                    })
                }
                Err(ContentError::NotFound { .. }) => {
                    return Err(StoreError::ContentMissing {
                        tenant: self.id.clone(),
                        digest: p.digest,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn nodes(&self) -> CachedNodes<'_> {
        CachedNodes {
            index: &self.index,
            cache: &self.upper_nodes,
        }
    }

    /// Number of durable journal entries (the largest tree size that can be proven).
    pub fn size(&self) -> u64 {
        self.journal.durable_len()
    }

    /// Reads entry `seq`.
    pub fn entry(&self, seq: u64) -> Result<Record, StoreError> {
        let len = self.size();
        if seq >= len {
            return Err(JournalError::OutOfRange { seq, len }.into());
        }
        let loc = self
            .index
            .location(seq)?
            .ok_or(JournalError::OutOfRange { seq, len })?;
        Ok(self.journal.read_at(loc)?)
    }

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        let available = self.size();
        if size > available {
            return Err(StoreError::BeyondJournal {
                requested: size,
                available,
            });
        }
        Ok(())
    }

    /// Merkle root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Digest, StoreError> {
        self.check_size(size)?;
        Ok(merkle::root(&self.nodes(), size)?)
    }

    /// Inclusion proof of entry `seq` in the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Digest>, StoreError> {
        self.check_size(size)?;
        Ok(merkle::inclusion_proof(&self.nodes(), seq, size)?)
    }

    /// Consistency proof between tree sizes `old` and `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Digest>, StoreError> {
        self.check_size(new)?;
        Ok(merkle::consistency_proof(&self.nodes(), old, new)?)
    }

    /// Signs a checkpoint of the journal as it is now (all durable entries), stores it and
    /// returns it. A checkpoint of the same size is returned as stored.
    pub fn checkpoint(&self) -> Result<SignedNote, StoreError> {
        // Held from the existence check to the write, so that a cosignature added in
        // between (crate::witness) is never overwritten by the bare note.
        let _notes = self.lock_notes();
        let size = self.size();
        let path = self.checkpoint_path(size);
        if path.exists() {
            return self.read_checkpoint_note(&path);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: merkle::root(&self.nodes(), size)?,
            extensions: Vec::new(),
        };
        let note = cp.sign(&self.key)?;
        fsutil::write_file_atomic(&path, &note.to_bytes(), 0o644)?;
        Ok(note)
    }

    /// The lock every rewrite of a stored note or of the witness list takes.
    pub(crate) fn lock_notes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.notes_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the checkpoint of `size` entries is stored (it may not exist).
    pub(crate) fn checkpoint_path(&self, size: u64) -> PathBuf {
        self.dir
            .join("checkpoints")
            .join(format!("{size:020}.note"))
    }

    fn read_checkpoint_note(&self, path: &Path) -> Result<SignedNote, StoreError> {
        let bytes = fs::read(path).at("read", path)?;
        Ok(SignedNote::parse(&bytes)?)
    }

    /// Signs a text that is not a checkpoint (a destruction record) with the tenant's key.
    /// Crate-private: a public "sign anything" would let callers forge checkpoints. The
    /// texts signed here never start with the tenant's origin line, so no checkpoint
    /// verifier accepts them as checkpoints.
    pub(crate) fn sign_text(&self, text: &str) -> Result<SignedNote, StoreError> {
        if text.starts_with(&format!("{}\n", self.origin)) {
            return Err(StoreError::Note(crate::note::NoteError::InvalidText {
                reason: "a text starting with the origin line would look like a checkpoint".into(),
            }));
        }
        Ok(SignedNote::sign(text, &self.key)?)
    }

    /// Stored checkpoint files, by tree size.
    pub fn checkpoint_files(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let dir = self.dir.join("checkpoints");
        let mut out = Vec::new();
        for item in fs::read_dir(&dir).at("list", &dir)? {
            let item = item.at("list", &dir)?;
            let name = item.file_name().to_string_lossy().into_owned();
            let size = name
                .strip_suffix(".note")
                .filter(|d| d.len() == 20)
                .and_then(|d| d.parse::<u64>().ok());
            match size {
                Some(s) => out.push((s, item.path())),
                None if name.starts_with('.') => {}
                None => {
                    tracing::warn!(path = %item.path().display(), "ignoring unexpected file among checkpoints")
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest stored checkpoint, verified with the tenant's key.
    pub fn latest_checkpoint(&self) -> Result<(Checkpoint, SignedNote), StoreError> {
        let files = self.checkpoint_files()?;
        let (_, path) = files
            .last()
            .ok_or_else(|| StoreError::NoCheckpoint(self.id.clone()))?;
        let bytes = fs::read(path).at("read", path)?;
        Ok(Checkpoint::open(&bytes, &self.verifier())?)
    }
}

/// Replays a journal's durable entries `0..end` into an (empty) index tree.
pub fn replay_into(
    journal: &Journal,
    index: &TenantIndex,
    projection: &dyn Projection,
    end: u64,
) -> Result<u64, StoreError> {
    let mut frontier = CompactRange::new();
    let mut n = 0u64;
    for rec in journal.iter(None, end)? {
        let rec = rec?;
        let nodes = frontier.push(rec.leaf)?;
        index.apply(&rec, &nodes, projection)?;
        index.flush_if_due()?;
        n += 1;
    }
    index.flush_pending()?;
    Ok(n)
}
