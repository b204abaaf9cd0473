//! The storage seams: what a backend must provide, and the promises it must keep.
//!
//! akte's engine ([`crate::store`]) and the records model above it see storage only
//! through four traits, one per kind of state of a tenant:
//!
//! - [`JournalBackend`]: the append-only, hash-chained journal, the truth. It decides the
//!   order of entries (sequence number, time, chain link) inside an exclusive
//!   [`AppendSession`], makes entries durable in groups, reads them back and redacts
//!   destroyed attachments.
//! - [`IndexBackend`]: state derived from the journal (keys and values of the records
//!   model, content reference counts, the Merkle tree's perfect nodes, record locations),
//!   applied one journal entry at a time as one atomic change, and rebuildable at any time.
//! - [`ContentBackend`]: document bytes by SHA-256, stored durably before any entry names
//!   them, read back verified.
//! - [`MetaStore`]: small named blobs (the tenant's origin, keys, signed checkpoints,
//!   witness lists, destruction records).
//!
//! A [`Backend`] makes and opens tenants out of these parts. Two backends live in this
//! crate: [`crate::embedded`] (segment files, pack files and redb in a data directory, the
//! default) and [`memory`] (everything in memory, for fast tests). The conformance suite
//! in the workspace's `tests/` runs the same cases against every backend.
//!
//! Invariants every backend keeps (ARCHITECTURE.md lists which part keeps which):
//! 1. A journal entry is durable when [`JournalBackend::wait_durable`] returns for it, and
//!    only then is it acknowledged; content is durable when a put returns.
//! 2. Sequence numbers are gapless and unique per tenant; each entry's chain link is the
//!    leaf hash of the entry before it.
//! 3. The index reflects a prefix of the journal, and says which one (its position).
//! 4. Nothing of one tenant is visible through another tenant's parts.
//!
//! A [`ReadScope`] marks the index reads of one request: a backend that caches committed
//! index values (PostgreSQL) checks its cache once per scope instead of once per read;
//! the others ignore it.

pub mod content;
pub mod index;
pub mod journal;
pub mod memory;
pub mod meta;
pub mod scope;

use std::io;
use std::sync::Arc;

pub use content::{ContentBackend, ContentRead};
pub use index::{IndexBackend, IndexBatch, KvIter, TreeUpdate, Value};
pub use journal::{AppendSession, JournalBackend, JournalScanItem};
pub use meta::{MetaError, MetaStore};
pub use scope::ReadScope;

/// What kind of failure an error is, so that callers (and the gRPC layer) can answer
/// precisely without knowing the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The thing asked for does not exist.
    NotFound,
    /// It exists already, or another writer changed it meanwhile.
    Conflict,
    /// The storage cannot be reached or failed to read or write (I/O error, connection
    /// lost); retrying later may succeed.
    Unavailable,
    /// The storage is full (no space left, quota exceeded).
    StorageFull,
    /// Stored data is damaged or not what it must be.
    Corrupt,
    /// Anything else (a bug, an invalid argument that slipped through).
    Other,
}

impl FaultKind {
    /// Classifies an operating-system error.
    pub fn of_io(e: &io::Error) -> FaultKind {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        const EIO: i32 = 5;
        match e.raw_os_error() {
            Some(ENOSPC) | Some(EDQUOT) => return FaultKind::StorageFull,
            Some(EIO) => return FaultKind::Unavailable,
            _ => {}
        }
        match e.kind() {
            io::ErrorKind::NotFound => FaultKind::NotFound,
            io::ErrorKind::AlreadyExists => FaultKind::Conflict,
            io::ErrorKind::StorageFull => FaultKind::StorageFull,
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => FaultKind::Corrupt,
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock => FaultKind::Unavailable,
            _ => FaultKind::Other,
        }
    }
}

/// An I/O error of a backend, with what was being done to which stored object (a file,
/// a table, an object key: whatever names it in the backend).
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {source}")]
pub struct IoFailure {
    /// What was being done ("open", "fsync", "rename", "insert", ...).
    pub op: &'static str,
    /// What it was done to, as the backend names it.
    pub target: String,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl IoFailure {
    /// A failure of `op` on `target`.
    pub fn new(op: &'static str, target: impl Into<String>, source: io::Error) -> IoFailure {
        IoFailure {
            op,
            target: target.into(),
            source,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> FaultKind {
        FaultKind::of_io(&self.source)
    }
}

/// The parts of one open tenant, as a [`Backend`] hands them to the engine.
pub struct TenantParts {
    /// The journal.
    pub journal: Arc<dyn JournalBackend>,
    /// The derived index.
    pub index: Arc<dyn IndexBackend>,
    /// Document bytes.
    pub content: Arc<dyn ContentBackend>,
    /// Small named blobs (origin, keys, checkpoints, ...).
    pub meta: Arc<dyn MetaStore>,
}

impl std::fmt::Debug for TenantParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantParts")
    }
}

/// Errors of a backend's tenant management.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// The backend's storage is not one this build can use.
    #[error("{0}")]
    Unusable(String),
    /// The storage is not an akte store (and is not empty either).
    #[error("{place} is not an akte data store ({reason})")]
    NotAStore {
        /// Where.
        place: String,
        /// Why not.
        reason: String,
    },
    /// The storage was written by another version of akte.
    #[error("{place} holds format {found:?}; this build reads {expected:?}")]
    UnsupportedFormat {
        /// Where.
        place: String,
        /// What it holds.
        found: String,
        /// What this build reads.
        expected: String,
    },
    /// The storage is opened read-only (for verification); nothing can be created.
    #[error("{place} is opened read-only; nothing is written")]
    ReadOnly {
        /// What is opened read-only.
        place: String,
    },
    /// Another process holds the storage exclusively.
    #[error("{place} is in use by another process (lock held)")]
    Locked {
        /// What is locked.
        place: String,
    },
    /// No tenant of that id.
    #[error("tenant {0:?} does not exist")]
    UnknownTenant(String),
    /// A tenant of that id exists already.
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    /// A part of the tenant could not be opened.
    #[error("tenant {tenant:?}: {reason}")]
    Tenant {
        /// The tenant.
        tenant: String,
        /// What failed.
        reason: String,
        /// Its kind.
        kind: FaultKind,
    },
}

impl BackendError {
    /// What kind of failure it is.
    pub fn kind(&self) -> FaultKind {
        match self {
            BackendError::Io(e) => e.kind(),
            BackendError::Unusable(_)
            | BackendError::ReadOnly { .. }
            | BackendError::NotAStore { .. }
            | BackendError::UnsupportedFormat { .. } => FaultKind::Other,
            BackendError::Locked { .. } => FaultKind::Conflict,
            BackendError::UnknownTenant(_) => FaultKind::NotFound,
            BackendError::TenantExists(_) => FaultKind::Conflict,
            BackendError::Tenant { kind, .. } => *kind,
        }
    }
}

/// What a new tenant starts with: written by [`Backend::create_tenant`] atomically with
/// the tenant's parts, so that a tenant never exists without them.
#[derive(Debug, Clone)]
pub struct TenantSeed {
    /// Blobs of the tenant's [`MetaStore`] (its origin, keys), by name, with whether each
    /// is secret (readable by the service only).
    pub meta: Vec<(String, Vec<u8>, bool)>,
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A storage backend: where tenants live.
///
/// `create_tenant` is atomic: after a crash at any point the tenant either exists with
/// every part and every seed blob, or not at all.
pub trait Backend: Send + Sync {
    /// A short description for logs and error messages ("data directory /var/lib/akte").
    fn describe(&self) -> String;

    /// Ids of the tenants that exist, in order (including ones that may fail to open).
    fn tenant_ids(&self) -> Result<Vec<String>, BackendError>;

    /// Creates a tenant with its parts and its seed blobs, and opens it.
    fn create_tenant(&self, id: &str, seed: &TenantSeed) -> Result<TenantParts, BackendError>;

    /// Opens an existing tenant, recovering its parts after a crash (a torn journal tail
    /// cut back, content a crash left half-written removed).
    fn open_tenant(&self, id: &str) -> Result<TenantParts, BackendError>;

    /// An empty index of the same kind as a tenant's, thrown away when dropped (the
    /// reference that verification rebuilds from the journal). Bounded in memory.
    fn scratch_index(&self) -> Result<Arc<dyn IndexBackend>, BackendError>;

    /// Installation-wide blobs (tokens of the server, ...), not belonging to any tenant.
    fn installation_meta(&self) -> Arc<dyn MetaStore>;

    /// Writes what is buffered to durable storage (at shutdown; never needed for safety).
    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether the storage is opened read-only (verification beside a running server, or
    /// of a copy): its tenants' parts refuse every write, their index is an empty scratch
    /// one that the engine does not fill at open, and recovery only reports (a torn tail
    /// is left in place). Backends that cannot be opened so keep the default.
    fn read_only(&self) -> bool {
        false
    }
}
