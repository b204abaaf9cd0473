//! The embedded backend: a data directory on a local file system, the default.
//!
//! ```text
//! DATA_DIR/
//!   FORMAT                      "akte-store 2\n": refuses directories of other versions
//!   LOCK                        flock: one process at a time
//!   tenants/<id>/
//!     ORIGIN                    checkpoint origin line of this tenant's log
//!     journal/<first-seq>.seg   journal segments (journal, segment)
//!     content/objects/ab/<hex>  content objects of 1 MiB and more (content)
//!     content/packs/<n>.pack    smaller content objects, many to a file (pack)
//!     checkpoints/<size>.note   signed checkpoints, with witness cosignatures
//!     keys/checkpoint.key       Ed25519 signing key (mode 0600)
//!     keys/checkpoint.pub       verifier key
//!     keys/witnesses            registered witnesses' keys (crate::witness)
//!   index/<id>/                 the tenant's derived index (redb_index; the pack locations in
//!                               packs.redb, pack_index), rebuildable
//! ```
//!
//! Everything that knows about paths, files and redb is in this module; the engine sees
//! it through the traits of [`crate::backend`]. Every durable file operation goes through
//! [`fsutil`]. [`read_only`] opens a data directory for verification without writing or
//! locking anything, beside a running akted or on a copy.

pub mod content;
pub mod fsutil;
pub mod journal;
pub mod meta;
mod overlay;
pub mod pack;
mod pack_index;
pub mod powerloss;
pub mod read_only;
pub mod redb_index;
pub mod segment;
mod tree_files;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backend::{
    Backend, BackendError, FaultKind, IndexBackend, MetaStore, TenantParts, TenantSeed,
};
use crate::embedded::content::{ContentOptions, ContentStore};
use crate::embedded::fsutil::IoContext;
use crate::embedded::journal::{Journal, JournalOptions};
use crate::embedded::meta::FileMeta;
use crate::embedded::redb_index::{Flusher, RedbIndex, RedbIndexes};

pub use read_only::{check_data_dir, open_read_only, ReadOnlyBackend};

/// An index on local disk for a while (redb in a temporary directory, removed when it is
/// dropped), with a flush thread of its own: the reference index verification rebuilds,
/// for backends that keep no data directory, so that its memory does not grow with the
/// store (redb's cache is bounded).
pub fn scratch_index() -> Result<Arc<dyn IndexBackend>, BackendError> {
    let idx =
        RedbIndex::scratch(redb_index::Flusher::start()).map_err(|e| BackendError::Tenant {
            tenant: String::new(),
            reason: format!("a scratch index: {e}"),
            kind: e.kind(),
        })?;
    Ok(Arc::new(idx))
}
pub use tree_files::{node_position, nodes_for};

/// Contents of the `FORMAT` file of a data directory of this version.
pub const STORE_FORMAT: &str = "akte-store 2\n";
/// The version before pack files. Its directories are a subset of version 2 (no
/// `content/packs/`), so they are opened and marked as version 2 from then on: an older
/// akte would not find the objects written to packs.
pub const STORE_FORMAT_1: &str = "akte-store 1\n";

/// Settings of the embedded backend.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Journal tunables.
    pub journal: JournalOptions,
    /// Content store settings (zstd level, packing).
    pub content: ContentOptions,
}

/// A data directory, opened by this process alone.
pub struct EmbeddedBackend {
    dir: PathBuf,
    options: EmbeddedOptions,
    flusher: Arc<Flusher>,
    indexes: RedbIndexes,
    install: Arc<FileMeta>,
    create_lock: Mutex<()>,
    /// Tenants served for reading only because their index could not be opened (a full
    /// disk, a failing device), with the parts they are served from; kept so that each
    /// attempt to open them again costs only that attempt.
    degraded: Mutex<std::collections::HashMap<String, DegradedParts>>,
    _lock: File,
}

/// The parts of a tenant whose index could not be opened: the journal and content opened
/// read-only, refusing writes with the index's fault, over a scratch index in the system's
/// temporary directory (not on the full disk) that the engine fills from the journal.
#[derive(Clone)]
struct DegradedParts {
    journal: Arc<Journal>,
    index: Arc<RedbIndex>,
    content: Arc<ContentStore>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("dir", &self.dir)
            .finish()
    }
}

fn lock_dir(dir: &Path) -> Result<File, BackendError> {
    let p = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .at("open", &p)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(BackendError::Locked {
            place: p.display().to_string(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(fsutil::failure("lock", &p, e).into()),
    }
}

fn read_format(dir: &Path) -> Result<Option<String>, BackendError> {
    let p = dir.join("FORMAT");
    match fs::read(&p) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fsutil::failure("read", &p, e).into()),
    }
}

/// Opens the data directory `dir` with default settings (see [`EmbeddedBackend::open`]).
pub fn open(dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    open_with(dir, EmbeddedOptions::default())
}

/// Opens the data directory `dir` with `options` (see [`EmbeddedBackend::open`]).
pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(EmbeddedBackend::open(dir, options)?))
}

impl EmbeddedBackend {
    /// Opens the data directory `dir`, creating it when it does not exist or is empty.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedBackend, BackendError> {
        fsutil::create_dir_all_durable(dir)?;
        let mut upgrade = false;
        match read_format(dir)? {
            Some(f) if f == STORE_FORMAT => {}
            Some(f) if f == STORE_FORMAT_1 => upgrade = true,
            Some(found) => {
                return Err(BackendError::UnsupportedFormat {
                    place: dir.display().to_string(),
                    found: found.trim_end().chars().take(80).collect(),
                    expected: STORE_FORMAT.trim_end().into(),
                })
            }
            None => {
                let empty = fs::read_dir(dir).at("list", dir)?.next().is_none();
                if !empty {
                    return Err(BackendError::NotAStore {
                        place: dir.display().to_string(),
                        reason: "no FORMAT file, and it is not empty".into(),
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
        drop_shared_index(dir)?;
        fsutil::create_dir_all_durable(&dir.join("index"))?;
        Ok(EmbeddedBackend {
            dir: dir.to_path_buf(),
            options,
            flusher: Flusher::start(),
            indexes: RedbIndexes::default(),
            install: Arc::new(FileMeta::new(dir)),
            create_lock: Mutex::new(()),
            degraded: Mutex::new(std::collections::HashMap::new()),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of a tenant.
    pub fn tenant_dir(&self, id: &str) -> PathBuf {
        self.dir.join("tenants").join(id)
    }

    /// The directory of a tenant's index.
    pub fn index_dir(&self, id: &str) -> PathBuf {
        self.dir.join("index").join(id)
    }

    fn tenant_error(id: &str, e: impl std::fmt::Display, kind: FaultKind) -> BackendError {
        BackendError::Tenant {
            tenant: id.to_owned(),
            reason: e.to_string(),
            kind,
        }
    }

    fn open_parts(&self, id: &str, dir: &Path) -> Result<TenantParts, BackendError> {
        let index: Arc<RedbIndex> = match self.indexes.get(id, &self.index_dir(id), &self.flusher) {
            Ok(index) => index,
            Err(e) if matches!(e.kind(), FaultKind::StorageFull | FaultKind::Unavailable) => {
                return self.open_degraded(id, dir, &e);
            }
            Err(e) => return Err(Self::tenant_error(id, &e, e.kind())),
        };
        self.lock_degraded().remove(id);
        let journal = Journal::open(&dir.join("journal"), self.options.journal.clone())
            .map_err(|e| Self::tenant_error(id, &e, e.kind()))?;
        let packs = index.packs();
        let content = ContentStore::open_indexed(&dir.join("content"), self.options.content, packs)
            .map_err(|e| Self::tenant_error(id, &e, e.kind()))?;
        let content = Arc::new(content);
        // The journal's leader flushes content queued for its entries first (issue 20).
        let journal = journal.flushing_content_first(content.clone());
        Ok(TenantParts {
            journal: Arc::new(journal),
            index,
            content,
            meta: Arc::new(FileMeta::new(dir)),
        })
    }
}

impl EmbeddedBackend {
    fn lock_degraded(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, DegradedParts>> {
        self.degraded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's index cannot be opened for want of space or a working device (redb
    /// writes when it opens). Rather than leave the tenant unavailable, it is served for
    /// reading ([`DegradedParts`]) and refuses writes with the same fault; it reports
    /// itself fenced, so the engine opens it again once a second and takes the real
    /// index as soon as it opens. Nothing in the data directory is written meanwhile.
    fn open_degraded(
        &self,
        id: &str,
        dir: &Path,
        cause: &crate::index::IndexError,
    ) -> Result<TenantParts, BackendError> {
        let kind = cause.kind();
        let cached = self.lock_degraded().get(id).cloned();
        let parts = match cached {
            Some(parts) => parts,
            None => {
                let reason = format!(
                    "its index {} cannot be opened ({cause}); reads are served, writes wait until it can be",
                    self.index_dir(id).display()
                );
                tracing::warn!(tenant = %id, error = %cause,
                    "the tenant's index cannot be opened; serving reads from a temporary index, refusing writes until it opens");
                let journal =
                    Journal::open_read_only(&dir.join("journal"), self.options.journal.clone())
                        .map_err(|e| Self::tenant_error(id, &e, e.kind()))?;
                journal.refuse_as_fenced(reason.clone(), kind);
                let index = Arc::new(RedbIndex::scratch(self.flusher.clone()).map_err(|e| {
                    Self::tenant_error(id, format!("a temporary index: {e}"), e.kind())
                })?);
                let packs = index.packs();
                let content =
                    ContentStore::open_read_only(&dir.join("content"), self.options.content, packs)
                        .map_err(|e| Self::tenant_error(id, &e, e.kind()))?
                        .refusing(reason, kind);
                let parts = DegradedParts {
                    journal: Arc::new(journal),
                    index,
                    content: Arc::new(content),
                };
                self.lock_degraded().insert(id.to_owned(), parts.clone());
                parts
            }
        };
        Ok(TenantParts {
            journal: parts.journal,
            index: parts.index,
            content: parts.content,
            meta: Arc::new(FileMeta::new(dir)),
        })
    }
}

/// Data directories before per-tenant indexes kept one sled database for every tenant in
/// `index/` and the Merkle files in `merkle/`. Both are derived: they are removed, and
/// each tenant's index is rebuilt from its journal when the tenant opens.
fn drop_shared_index(dir: &Path) -> Result<(), BackendError> {
    let shared_db = dir.join("index").join("conf");
    let merkle = dir.join("merkle");
    if shared_db.exists() {
        let index = dir.join("index");
        tracing::info!(dir = %index.display(), "removing the index shared by all tenants; each tenant's index is rebuilt on its own");
        fs::remove_dir_all(&index).at("remove", &index)?;
    }
    if merkle.exists() {
        fs::remove_dir_all(&merkle).at("remove", &merkle)?;
    }
    fsutil::fsync_dir(dir)?;
    Ok(())
}

impl Backend for EmbeddedBackend {
    fn describe(&self) -> String {
        format!("data directory {}", self.dir.display())
    }

    fn tenant_ids(&self) -> Result<Vec<String>, BackendError> {
        // Under the creation lock: a creation under way has its staging directory, which
        // this listing would otherwise take for an interrupted one and remove.
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let tenants_dir = self.dir.join("tenants");
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
            ids.push(name);
        }
        ids.sort();
        Ok(ids)
    }

    fn create_tenant(&self, id: &str, seed: &TenantSeed) -> Result<TenantParts, BackendError> {
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let tenants_dir = self.dir.join("tenants");
        let final_dir = tenants_dir.join(id);
        if final_dir.exists() {
            return Err(BackendError::TenantExists(id.to_owned()));
        }
        // A stale index of a tenant of the same name (removed by hand) must not leak in.
        let index_dir = self.index_dir(id);
        if index_dir.exists() {
            fs::remove_dir_all(&index_dir).at("remove", &index_dir)?;
        }
        // Build the tenant in a hidden directory and rename it into place, so that a crash
        // never leaves a half-made tenant visible.
        let staging = tenants_dir.join(format!(".new-{id}"));
        if staging.exists() {
            fs::remove_dir_all(&staging).at("remove", &staging)?;
        }
        fsutil::create_dir_all_durable(&staging.join("keys"))?;
        fsutil::create_dir_all_durable(&staging.join("checkpoints"))?;
        let meta = FileMeta::new(&staging);
        for (name, bytes, secret) in &seed.meta {
            meta.put(name, bytes, *secret)
                .map_err(|e| Self::tenant_error(id, &e, e.kind()))?;
        }
        // The first journal segment and the content directories are made here too, so a
        // tenant never becomes visible without them.
        drop(
            Journal::open(&staging.join("journal"), self.options.journal.clone())
                .map_err(|e| Self::tenant_error(id, &e, e.kind()))?,
        );
        drop(
            ContentStore::open_with(&staging.join("content"), self.options.content)
                .map_err(|e| Self::tenant_error(id, &e, e.kind()))?,
        );
        fs::rename(&staging, &final_dir).at("rename", &final_dir)?;
        fsutil::fsync_dir(&tenants_dir)?;
        self.open_parts(id, &final_dir)
    }

    fn open_tenant(&self, id: &str) -> Result<TenantParts, BackendError> {
        let dir = self.tenant_dir(id);
        if !dir.is_dir() {
            return Err(BackendError::UnknownTenant(id.to_owned()));
        }
        self.open_parts(id, &dir)
    }

    fn scratch_index(&self) -> Result<Arc<dyn IndexBackend>, BackendError> {
        let idx = RedbIndex::scratch(self.flusher.clone()).map_err(|e| BackendError::Tenant {
            tenant: String::new(),
            reason: format!("a scratch index: {e}"),
            kind: e.kind(),
        })?;
        Ok(Arc::new(idx))
    }

    fn installation_meta(&self) -> Arc<dyn MetaStore> {
        self.install.clone()
    }
}
