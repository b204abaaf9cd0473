//! The engine: tenants over a storage backend, with the rules every backend shares.
//!
//! A [`Store`] opens the tenants of a [`Backend`] and keeps, per [`Tenant`], what the
//! backend does not: the Merkle frontier of the journal, the check of a write against the
//! index and its append under one lock, index catch-up after a crash, checkpoints and
//! proofs. The backends keep the bytes (see [`crate::backend`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};

use crate::backend::content::{ContentError, PutOutcome};
use crate::backend::{
    AppendSession, Backend, BackendError, ContentBackend, FaultKind, JournalBackend, MetaError,
    MetaStore, TenantParts, TenantSeed,
};
use crate::digest::Digest;
use crate::entry::{Attachment, Entry, EntryDraft, PayloadKind};
use crate::index::{IndexError, NoProjection, Projection, TenantIndex};
use crate::journal::{JournalError, Record, Ticket};
use crate::keys::{KeyError, SigningKeyPair, VerifierKey};
use crate::merkle::{self, CompactRange, MerkleError};
use crate::note::{Checkpoint, NoteError, SignedNote};

/// Name of a tenant's signing key blob.
pub const SIGNING_KEY: &str = "keys/checkpoint.key";
/// Name of a tenant's verifier key blob.
pub const VERIFIER_KEY: &str = "keys/checkpoint.pub";
/// Name of the blob holding a tenant's checkpoint origin line.
pub const ORIGIN: &str = "ORIGIN";
/// Prefix of the blobs holding signed checkpoints.
pub const CHECKPOINTS: &str = "checkpoints/";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A blob of the metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
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
    /// A blob the tenant needs is missing or malformed.
    #[error("tenant {tenant:?}: {what} ({place}) {reason}")]
    TenantData {
        /// The tenant.
        tenant: String,
        /// What ("origin", "signing key", ...).
        what: &'static str,
        /// Where it is stored.
        place: String,
        /// What is wrong.
        reason: String,
    },
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

impl StoreError {
    /// What kind of failure it is, where it is one of storage.
    pub fn kind(&self) -> FaultKind {
        match self {
            StoreError::Backend(e) => e.kind(),
            StoreError::Meta(e) => e.kind(),
            StoreError::Content(e) => e.kind(),
            StoreError::Journal(e) => e.kind(),
            StoreError::Index(e) => e.kind(),
            StoreError::UnknownTenant(_) | StoreError::NoCheckpoint(_) => FaultKind::NotFound,
            StoreError::TenantExists(_) => FaultKind::Conflict,
            StoreError::TenantUnavailable { .. } | StoreError::Fenced { .. } => {
                FaultKind::Unavailable
            }
            StoreError::TenantData { .. } => FaultKind::Corrupt,
            _ => FaultKind::Other,
        }
    }
}

/// How a store is opened.
#[derive(Clone)]
pub struct StoreOptions {
    /// Prefix of new tenants' checkpoint origins: `<prefix>/<tenant id>`.
    pub origin_prefix: String,
    /// The records model's projection (the bare engine uses [`NoProjection`]).
    pub projection: Arc<dyn Projection>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            origin_prefix: "akte.local".into(),
            projection: Arc::new(NoProjection),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("origin_prefix", &self.origin_prefix)
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

/// How long a tenant that refuses writes after a failure waits between attempts to open
/// it again.
pub const HEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The tenants of a backend, open.
pub struct Store {
    backend: Arc<dyn Backend>,
    options: StoreOptions,
    tenants: RwLock<BTreeMap<String, Arc<Tenant>>>,
    /// When each fenced tenant was last opened again (one attempt per [`HEAL_INTERVAL`]).
    healed: Mutex<HashMap<String, std::time::Instant>>,
    /// Tenants that could not be opened, with the reason. One damaged tenant must not take
    /// the installation's other agencies down with it.
    unavailable: RwLock<BTreeMap<String, String>>,
    create_lock: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.describe())
            .finish()
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

impl Store {
    /// Opens every tenant of `backend`: each journal is recovered (a torn tail is cut
    /// back) and each index catches up with its journal. A tenant that cannot be opened
    /// is reported as unavailable; the others are served.
    pub fn open(backend: Arc<dyn Backend>, options: StoreOptions) -> Result<Store, StoreError> {
        let store = Store {
            backend,
            options,
            tenants: RwLock::new(BTreeMap::new()),
            healed: Mutex::new(HashMap::new()),
            unavailable: RwLock::new(BTreeMap::new()),
            create_lock: Mutex::new(()),
        };
        for id in store.backend.tenant_ids()? {
            if let Err(e) = validate_tenant_id(&id) {
                tracing::error!(tenant = %id, error = %e, "not a tenant");
                store.write_unavailable().insert(id, e.to_string());
                continue;
            }
            let opened = store
                .backend
                .open_tenant(&id)
                .map_err(StoreError::from)
                .and_then(|parts| Tenant::open(&store, &id, parts));
            let (tenant, report) = match opened {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "tenant cannot be opened; it stays unavailable, the others are served");
                    store.write_unavailable().insert(id, e.to_string());
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

    fn write_unavailable(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, String>> {
        self.unavailable.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Whether the backend is opened read-only ([`Backend::read_only`]): tenants serve
    /// their journal, content and blobs for verification, but no index reads and no writes.
    pub fn read_only(&self) -> bool {
        self.backend.read_only()
    }

    /// Creates a tenant with its own journal, content store and signing key.
    pub fn create_tenant(&self, id: &str) -> Result<Arc<Tenant>, StoreError> {
        validate_tenant_id(id)?;
        let origin = format!("{}/{id}", self.options.origin_prefix);
        let key = SigningKeyPair::generate(&origin)?;
        let mut key_bytes = key.to_file_bytes();
        let seed = TenantSeed {
            meta: vec![
                (ORIGIN.into(), format!("{origin}\n").into_bytes(), false),
                (SIGNING_KEY.into(), key_bytes.clone(), true),
                (
                    VERIFIER_KEY.into(),
                    format!("{}\n", key.verifier()).into_bytes(),
                    false,
                ),
            ],
        };
        key_bytes.fill(0);
        let created = self.create_tenant_seeded(id, &seed);
        for (_, bytes, _) in seed.meta {
            let mut bytes = bytes;
            bytes.fill(0);
        }
        let tenant = created?;
        tracing::info!(tenant = %id, origin = %origin, "tenant created");
        Ok(tenant)
    }

    /// Creates a tenant with the given blobs (origin, keys, ...: a copy of a tenant of
    /// another store, in a migration).
    pub fn create_tenant_seeded(
        &self,
        id: &str,
        seed: &TenantSeed,
    ) -> Result<Arc<Tenant>, StoreError> {
        validate_tenant_id(id)?;
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.read_tenants().contains_key(id) || self.unavailable_tenants().contains_key(id) {
            return Err(StoreError::TenantExists(id.into()));
        }
        let parts = match self.backend.create_tenant(id, seed) {
            Err(BackendError::TenantExists(id)) => return Err(StoreError::TenantExists(id)),
            other => other?,
        };
        let (tenant, _) = Tenant::open(self, id, parts)?;
        let tenant = Arc::new(tenant);
        self.write_tenants().insert(id.into(), tenant.clone());
        Ok(tenant)
    }

    /// An existing tenant. A tenant that refuses writes after a failed write (a full disk,
    /// an I/O error) is opened again here, at most once per [`HEAL_INTERVAL`]: once the
    /// cause is gone its writes resume without a restart.
    pub fn tenant(&self, id: &str) -> Result<Arc<Tenant>, StoreError> {
        let unavailable = self.unavailable_tenants().get(id).cloned();
        if let Some(reason) = unavailable {
            // Whatever kept it from opening (a full disk, a device error) may be gone.
            return self.retry_unavailable(id, reason);
        }
        let known = self.read_tenants().get(id).cloned();
        let tenant = match known {
            Some(t) => t,
            None if validate_tenant_id(id).is_ok() => self.adopt(id)?,
            None => return Err(StoreError::UnknownTenant(id.chars().take(80).collect())),
        };
        match tenant.fenced() {
            None => Ok(tenant),
            Some(reason) => Ok(self.heal(tenant, &reason)),
        }
    }

    /// Opens a fenced tenant again (recovering its journal and content, rebuilding what its
    /// index holds beyond the journal) and serves the new one from now on; keeps the old
    /// one if that fails or was tried a moment ago.
    fn heal(&self, tenant: Arc<Tenant>, reason: &str) -> Arc<Tenant> {
        let id = tenant.id().to_owned();
        {
            let mut healed = self.healed.lock().unwrap_or_else(|p| p.into_inner());
            if healed
                .get(&id)
                .is_some_and(|at| at.elapsed() < HEAL_INTERVAL)
            {
                return tenant;
            }
            healed.insert(id.clone(), std::time::Instant::now());
        }
        let opened = self
            .backend
            .open_tenant(&id)
            .map_err(StoreError::from)
            .and_then(|parts| Tenant::open(self, &id, parts));
        match opened {
            Ok((fresh, report)) if fresh.fenced().is_none() => {
                tracing::warn!(tenant = %id, earlier_failure = %reason, replayed = report.replayed,
                    rebuilt = report.rebuilt, "tenant opened again after a failed write; writes resume");
                let fresh = Arc::new(fresh);
                self.write_tenants().insert(id, fresh.clone());
                fresh
            }
            Ok(_) => tenant,
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "tenant still refuses writes; trying again later");
                tenant
            }
        }
    }

    /// Tenants that could not be opened, with the reason (naming file and place).
    pub fn unavailable_tenants(&self) -> BTreeMap<String, String> {
        self.unavailable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tries to open a tenant that could not be opened before, at most once per
    /// [`HEAL_INTERVAL`].
    fn retry_unavailable(&self, id: &str, reason: String) -> Result<Arc<Tenant>, StoreError> {
        let unavailable = || StoreError::TenantUnavailable {
            tenant: id.to_owned(),
            reason: reason.clone(),
        };
        if validate_tenant_id(id).is_err() {
            return Err(unavailable());
        }
        {
            let mut healed = self.healed.lock().unwrap_or_else(|p| p.into_inner());
            if healed
                .get(id)
                .is_some_and(|at| at.elapsed() < HEAL_INTERVAL)
            {
                return Err(unavailable());
            }
            healed.insert(id.to_owned(), std::time::Instant::now());
        }
        let opened = self
            .backend
            .open_tenant(id)
            .map_err(StoreError::from)
            .and_then(|parts| Tenant::open(self, id, parts));
        match opened {
            Ok((tenant, _)) => {
                tracing::warn!(tenant = %id, earlier_failure = %reason, "tenant opened after all; it is served again");
                let tenant = Arc::new(tenant);
                self.write_unavailable().remove(id);
                self.write_tenants().insert(id.to_owned(), tenant.clone());
                Ok(tenant)
            }
            Err(e) => {
                self.write_unavailable()
                    .insert(id.to_owned(), e.to_string());
                Err(StoreError::TenantUnavailable {
                    tenant: id.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Opens a tenant this store has not seen: one another process created on a backend
    /// several processes share (on a data directory, which one process holds, there is
    /// none, and the answer is "unknown tenant").
    fn adopt(&self, id: &str) -> Result<Arc<Tenant>, StoreError> {
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.read_tenants().get(id) {
            return Ok(t.clone());
        }
        let parts = match self.backend.open_tenant(id) {
            Err(BackendError::UnknownTenant(_)) => {
                return Err(StoreError::UnknownTenant(id.chars().take(80).collect()))
            }
            other => other?,
        };
        let (tenant, _) = Tenant::open(self, id, parts)?;
        let tenant = Arc::new(tenant);
        self.write_tenants().insert(id.to_owned(), tenant.clone());
        tracing::info!(tenant = %id, "tenant created by another instance; serving it");
        Ok(tenant)
    }

    /// All tenants, by id (with those another process created on a shared backend).
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        match self.backend.tenant_ids() {
            Ok(ids) => {
                for id in ids {
                    let unseen = !self.read_tenants().contains_key(&id)
                        && !self.unavailable_tenants().contains_key(&id);
                    if unseen && validate_tenant_id(&id).is_ok() {
                        if let Err(e) = self.adopt(&id) {
                            tracing::warn!(tenant = %id, error = %e, "a tenant another instance created cannot be opened");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the backend's tenants failed; listing the known ones")
            }
        }
        self.read_tenants().values().cloned().collect()
    }

    /// Recreates every tenant's index from its journal, and what the content stores derive
    /// from their own bytes (the location index of pack files).
    pub fn rebuild_index(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for t in self.tenants() {
            total += t.rebuild_index()?;
            t.content.reindex()?;
            t.index.flush_pending()?;
        }
        Ok(total)
    }

    /// Flushes the indexes (on shutdown; the journal is durable at every acknowledgement).
    pub fn flush(&self) -> Result<(), StoreError> {
        for t in self.tenants() {
            t.index.flush_pending()?;
        }
        self.backend.flush()?;
        Ok(())
    }
}

impl Drop for Store {
    /// Writes the indexes' pending changes, so the next open does not replay them. Nothing
    /// depends on it: the journal is the truth, and a failure here is only logged.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(backend = %self.backend.describe(), error = %e, "flushing the index at close failed; the next open replays the journal");
        }
    }
}

/// How long a writer waits at most for writes under way to join its flush or commit.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Counts a write from its start until its entry is queued (or it gave up).
struct Writing<'a>(&'a Tenant);

impl<'a> Writing<'a> {
    fn start(tenant: &'a Tenant) -> Writing<'a> {
        *tenant.writing.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Writing(tenant)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut n = self.0.writing.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.written.notify_all();
        }
    }
}

struct Writer {
    frontier: CompactRange,
    /// Leaf hash of the last entry the frontier holds.
    last_leaf: Digest,
}

/// One tenant: journal, content store, index, metadata and signing key.
pub struct Tenant {
    /// Kept so that the backend (and whatever it holds exclusively, the data directory's
    /// lock) lives as long as any of its tenants.
    _backend: Arc<dyn Backend>,
    id: String,
    origin: String,
    content: Arc<dyn ContentBackend>,
    journal: Arc<dyn JournalBackend>,
    index: TenantIndex,
    meta: Arc<dyn MetaStore>,
    key: SigningKeyPair,
    projection: Arc<dyn Projection>,
    /// Opened over a read-only backend: the index is an empty scratch one, never caught up.
    read_only: bool,
    writer: Mutex<Writer>,
    /// Why writes are refused after an index update failed. Apart from the writer, so
    /// that asking for it (every request does) never waits behind a write in progress,
    /// which on a database backend holds the writer across round trips.
    fence: Mutex<Option<String>>,
    /// Writes between their start and their queued entry (see [`Tenant::gather`]).
    writing: Mutex<usize>,
    /// Signalled when `writing` drops to zero.
    written: std::sync::Condvar,
    upper_nodes: RwLock<HashMap<(u8, u64), Digest>>,
    /// Serialises rewrites of checkpoint blobs and of the witness list: signing a
    /// checkpoint and adding a witness's cosignature to a stored one both replace a blob,
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

/// What an append queues: a new draft, or an entry sealed elsewhere.
enum Next {
    Draft(EntryDraft),
    Sealed(Entry),
}

/// A durable journal entry, as `append` returns it.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The entry and where it is stored.
    pub ticket: Ticket,
}

fn peaks_frontier(index: &TenantIndex, size: u64) -> Result<CompactRange, StoreError> {
    // Read together: on a shared database this runs whenever another instance appended.
    let peaks = index.perfect_nodes(&CompactRange::peak_positions(size))?;
    Ok(CompactRange::from_parts(size, peaks)?)
}

impl Tenant {
    fn open(
        store: &Store,
        id: &str,
        parts: TenantParts,
    ) -> Result<(Tenant, OpenReport), StoreError> {
        let TenantParts {
            journal,
            index,
            content,
            meta,
        } = parts;
        let missing = |what: &'static str, name: &str, reason: &str| StoreError::TenantData {
            tenant: id.to_owned(),
            what,
            place: meta.describe(name),
            reason: reason.to_owned(),
        };
        let origin = meta
            .get(ORIGIN)?
            .ok_or_else(|| missing("checkpoint origin", ORIGIN, "is missing"))?;
        let origin = String::from_utf8(origin)
            .map_err(|_| missing("checkpoint origin", ORIGIN, "is not UTF-8 text"))?
            .trim_end()
            .to_owned();
        let mut key_bytes = meta
            .get_secret(SIGNING_KEY)?
            .ok_or_else(|| missing("signing key", SIGNING_KEY, "is missing"))?;
        let key = SigningKeyPair::from_file_bytes(
            &key_bytes,
            &format!("private key {}", meta.describe(SIGNING_KEY)),
        );
        key_bytes.fill(0);
        let key = key?;
        let tenant = Tenant {
            _backend: store.backend.clone(),
            id: id.to_owned(),
            origin,
            content,
            journal,
            index: TenantIndex::new(index),
            meta,
            key,
            projection: store.options.projection.clone(),
            read_only: store.read_only(),
            writer: Mutex::new(Writer {
                frontier: CompactRange::new(),
                last_leaf: Digest::ZERO,
            }),
            fence: Mutex::new(None),
            writing: Mutex::new(0),
            written: std::sync::Condvar::new(),
            upper_nodes: RwLock::new(HashMap::new()),
            notes_lock: Mutex::new(()),
        };
        let mut report = OpenReport {
            truncated_bytes: tenant.journal.recovery().truncated_bytes,
            ..OpenReport::default()
        };
        if tenant.read_only {
            // Replaying the journal here would only fill a scratch index that verification
            // rebuilds itself, and would stop at the first damage it met.
            return Ok((tenant, report));
        }
        let (replayed, rebuilt) = match tenant.catch_up_index() {
            Ok(done) => done,
            // The index cannot even be read: it is derived, so it is rebuilt (a backend
            // sets aside what it cannot clear).
            Err(e @ (StoreError::Index(_) | StoreError::Merkle(_))) => {
                tracing::warn!(tenant = %id, error = %e,
                    "the index cannot be read; rebuilding it from the journal");
                (tenant.rebuild_index()?, true)
            }
            Err(e) => return Err(e),
        };
        report.replayed = replayed;
        report.rebuilt = rebuilt;
        Ok((tenant, report))
    }

    /// Brings the index up to the journal: replays the entries it has not seen, or rebuilds
    /// it entirely if it is ahead of the journal or disagrees with it (possible after a
    /// crash, since the index may be written before the journal's flush completes).
    fn catch_up_index(&self) -> Result<(u64, bool), StoreError> {
        // Both read while holding the append session: on a backend shared by several
        // processes nobody appends meanwhile, so the two agree unless the index really
        // lags or leads (an append between the reads would look like either, and start a
        // replay or a rebuild racing the writers).
        let (pos, journal_len) = {
            let _session = self.journal.begin()?;
            (self.index.position()?, self.journal.durable_len()?)
        };
        // The tree state is made durable before the index records a position, so it holds
        // at least that many entries; fewer means it was lost or cut.
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
        // Whatever the tree state holds beyond the index's position is replayed.
        self.index.truncate_files(pos.next_seq)?;
        let mut w = self.lock_writer();
        w.frontier = peaks_frontier(&self.index, pos.next_seq)?;
        w.last_leaf = pos.last_leaf;
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
            w.last_leaf = rec.leaf;
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
        let end = self.journal.durable_len()?;
        let n = replay_into(
            self.journal.as_ref(),
            &self.index,
            self.projection.as_ref(),
            end,
        )?;
        let pos = self.index.position()?;
        w.frontier = peaks_frontier(&self.index, pos.next_seq)?;
        w.last_leaf = pos.last_leaf;
        Ok(n)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why writes are refused after an index update failed, if they are.
    fn index_fence(&self) -> Option<String> {
        self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Why the tenant refuses writes after a failure, if it does.
    pub fn fenced(&self) -> Option<String> {
        self.index_fence()
            .or_else(|| self.journal.fenced())
            .or_else(|| self.content.fenced())
    }

    /// The origin line of this tenant's checkpoints.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The content store.
    pub fn content(&self) -> &dyn ContentBackend {
        self.content.as_ref()
    }

    /// The journal.
    pub fn journal(&self) -> &dyn JournalBackend {
        self.journal.as_ref()
    }

    /// The index.
    pub fn index(&self) -> &TenantIndex {
        &self.index
    }

    /// The tenant's small blobs (origin, keys, checkpoints, witness lists, ...).
    pub fn meta(&self) -> &dyn MetaStore {
        self.meta.as_ref()
    }

    /// The public key that verifies this tenant's checkpoints.
    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// Stores document bytes (durably) and returns their digest. Nothing refers to them
    /// until an entry lists the digest as a content payload.
    pub fn put_content<R: Read>(&self, mut reader: R) -> Result<PutOutcome, StoreError> {
        Ok(self.content.put(&mut reader, None, None)?)
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
    /// append session so that no other write comes between the check and the append.
    /// Returns once the entry is durable; writers waiting at the same time share one flush.
    /// `build` may also decide that nothing needs appending ([`Write::Skip`]), for example
    /// when an idempotent request is repeated. `build` also learns the sequence number the
    /// entry will get.
    pub fn append_with<T, E, F>(&self, build: F) -> Result<(T, Option<Appended>), E>
    where
        F: FnOnce(&TenantIndex) -> Result<Write<T>, E>,
        E: From<StoreError>,
    {
        self.append_at(|index, _| build(index))
    }

    /// As [`Tenant::append_with`], with the sequence number the entry will get passed to
    /// `build` (destruction writes it into a marker before the entry exists).
    pub fn append_at<T, E, F>(&self, build: F) -> Result<(T, Option<Appended>), E>
    where
        F: FnOnce(&TenantIndex, u64) -> Result<Write<T>, E>,
        E: From<StoreError>,
    {
        // A full index buffer (its background flush fell behind, or it fails) is dealt
        // with before anything is queued, so its error reaches the caller with nothing
        // written.
        self.index.make_room().map_err(StoreError::from)?;
        let writing = Writing::start(self);
        let (value, ticket) = {
            let mut w = self.lock_writer();
            if let Some(reason) = self.index_fence() {
                return Err(StoreError::Fenced {
                    tenant: self.id.clone(),
                    reason,
                }
                .into());
            }
            let session = self.journal.begin().map_err(StoreError::from)?;
            if session.next_seq() != w.frontier.size() || session.last_leaf() != w.last_leaf {
                // Another writer of a shared backend appended meanwhile: its entries are
                // in the index (committed with them), so the frontier is read from there.
                self.resync(&mut w, session.next_seq(), session.last_leaf())?;
            }
            let (draft, attachments, value) = match build(&self.index, session.next_seq())? {
                Write::Skip(value) => {
                    // A repeated request answers as the first did, and that answer may name
                    // an entry still queued: it is given only once everything queued so far
                    // is durable, or a crash could lose a write this answer acknowledged.
                    let end = session.next_seq();
                    drop(session);
                    drop(w);
                    drop(writing);
                    if let Some(last) = end.checked_sub(1) {
                        self.journal.wait_durable(last).map_err(StoreError::from)?;
                    }
                    return Ok((value, None));
                }
                Write::Append {
                    draft,
                    attachments,
                    value,
                } => (draft, attachments, value),
            };
            self.check_content(&draft)?;
            let ticket = self.queue(&mut w, session, Next::Draft(draft), attachments)?;
            (value, ticket)
        };
        drop(writing);
        self.gather();
        self.journal
            .wait_durable(ticket.entry.seq)
            .map_err(StoreError::from)?;
        self.index.request_flush();
        Ok((value, Some(Appended { ticket })))
    }

    /// Waits a moment for the writes already under way (waiting for the writer, or
    /// checking what they append) to queue their entries, so that the flush or commit
    /// this writer is about to wait for takes them too. Without it a writer that finds
    /// no flush running starts one for its own entry alone while the others still queue
    /// behind the writer lock: on a database backend, where each write holds the writer
    /// across round trips, groups stayed at about one entry.
    fn gather(&self) {
        let writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if *writing == 0 {
            return;
        }
        let _ = self
            .written
            .wait_timeout_while(writing, GATHER, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// Queues one entry in `session`, adds it to the frontier and applies it to the index.
    /// If the index update fails, the entry is still made durable (it is in the journal's
    /// queue) and the tenant stops writing until a reopen replays it into the index.
    fn queue(
        &self,
        w: &mut std::sync::MutexGuard<'_, Writer>,
        mut session: Box<dyn AppendSession + '_>,
        next: Next,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, StoreError> {
        let ticket = match next {
            Next::Draft(draft) => session.enqueue(draft, attachments.clone()),
            Next::Sealed(entry) => session.enqueue_sealed(entry, attachments.clone()),
        }?;
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
        drop(session);
        if let Err(e) = applied {
            tracing::error!(tenant = %self.id, error = %e, "index update failed; fencing tenant writes");
            *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            self.journal.wait_durable(ticket.entry.seq)?;
            return Err(e);
        }
        w.last_leaf = ticket.leaf;
        Ok(ticket)
    }

    /// Appends entries sealed elsewhere, unchanged (a migration from another backend):
    /// they must continue this tenant's journal, in order. Their content must be stored
    /// already, unless it is absent from the source too (destroyed there). Returns once all
    /// are durable; they share one flush or commit.
    pub fn append_sealed(&self, entries: Vec<(Entry, Vec<Attachment>)>) -> Result<u64, StoreError> {
        self.index.make_room()?;
        let mut last = None;
        for (entry, attachments) in entries {
            match self.queue_sealed(entry, attachments) {
                Ok(seq) => last = Some(seq),
                Err(e) => {
                    // The entries queued before are sound: they are committed (not left
                    // queued, which on a database holds the journal's end locked), and the
                    // caller resumes after them.
                    if let Some(last) = last {
                        self.journal.wait_durable(last)?;
                    }
                    return Err(e);
                }
            }
        }
        let Some(last) = last else {
            return Ok(0);
        };
        self.journal.wait_durable(last)?;
        self.index.request_flush();
        Ok(last + 1)
    }

    /// Queues one entry sealed elsewhere (see [`Tenant::append_sealed`]); returns its
    /// sequence number.
    fn queue_sealed(&self, entry: Entry, attachments: Vec<Attachment>) -> Result<u64, StoreError> {
        let mut w = self.lock_writer();
        if let Some(reason) = self.index_fence() {
            return Err(StoreError::Fenced {
                tenant: self.id.clone(),
                reason,
            });
        }
        let session = self.journal.begin()?;
        if session.next_seq() != w.frontier.size() || session.last_leaf() != w.last_leaf {
            self.resync(&mut w, session.next_seq(), session.last_leaf())?;
        }
        let ticket = self.queue(&mut w, session, Next::Sealed(entry), attachments)?;
        Ok(ticket.entry.seq)
    }

    /// Reloads the frontier after another writer appended (or a failed commit was
    /// dropped): the index must stand exactly where the journal does.
    fn resync(&self, w: &mut Writer, next_seq: u64, last_leaf: Digest) -> Result<(), StoreError> {
        let pos = self.index.position()?;
        if pos.next_seq != next_seq || pos.last_leaf != last_leaf {
            return Err(StoreError::Fenced {
                tenant: self.id.clone(),
                reason: format!(
                    "the journal holds {next_seq} entries but the index stands at {}",
                    pos.next_seq
                ),
            });
        }
        w.frontier = peaks_frontier(&self.index, next_seq)?;
        w.last_leaf = last_leaf;
        Ok(())
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

    /// Number of entries that can be proven: durable in the journal and applied to the
    /// index. An entry can become durable a moment before the index has it (the flush
    /// that covers it may be led by another writer while its own writer is still applying
    /// it), and a checkpoint or proof over it would miss its nodes.
    pub fn size(&self) -> Result<u64, StoreError> {
        let durable = self.journal.durable_len()?;
        if self.read_only {
            // Nothing is applied to the scratch index; the journal's complete records count.
            return Ok(durable);
        }
        let applied = self.index.position()?.next_seq;
        Ok(durable.min(applied))
    }

    /// Reads entry `seq`.
    pub fn entry(&self, seq: u64) -> Result<Record, StoreError> {
        let len = self.size()?;
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
        let available = self.size()?;
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
        let size = self.size()?;
        let name = checkpoint_name(size);
        if let Some(bytes) = self.meta.get(&name)? {
            return Ok(SignedNote::parse(&bytes)?);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: merkle::root(&self.nodes(), size)?,
            extensions: Vec::new(),
        };
        let note = cp.sign(&self.key)?;
        self.meta.put(&name, &note.to_bytes(), false)?;
        Ok(note)
    }

    /// The lock every rewrite of a stored note or of the witness list takes.
    pub(crate) fn lock_notes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.notes_lock.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Stored checkpoints, by tree size, with the name of the blob holding each.
    pub fn checkpoint_files(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out = Vec::new();
        for name in self.meta.list(CHECKPOINTS)? {
            match parse_checkpoint_name(&name) {
                Some(size) => out.push((size, name)),
                None => {
                    tracing::warn!(blob = %self.meta.describe(&name), "ignoring unexpected blob among checkpoints")
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest stored checkpoint, verified with the tenant's key.
    pub fn latest_checkpoint(&self) -> Result<(Checkpoint, SignedNote), StoreError> {
        let files = self.checkpoint_files()?;
        let (_, name) = files
            .last()
            .ok_or_else(|| StoreError::NoCheckpoint(self.id.clone()))?;
        let bytes = self
            .meta
            .get(name)?
            .ok_or_else(|| StoreError::NoCheckpoint(self.id.clone()))?;
        Ok(Checkpoint::open(&bytes, &self.verifier())?)
    }
}

/// Name of the blob holding the checkpoint of `size` entries.
pub fn checkpoint_name(size: u64) -> String {
    format!("{CHECKPOINTS}{size:020}.note")
}

/// The tree size a checkpoint blob's name stands for.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    name.strip_prefix(CHECKPOINTS)?
        .strip_suffix(".note")
        .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
}

/// Replays a journal's durable entries `0..end` into an (empty) index.
pub fn replay_into(
    journal: &dyn JournalBackend,
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
