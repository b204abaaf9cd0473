//! Long-running operations: the work runs on the server, independently of the call that
//! started it, and its state is stored so that a restart, or another instance, can answer
//! for it.
//!
//! **Data directory** (no database): each operation is one file
//! `DATA_DIR/operations/{tenant}/{id}.op` holding the encoded `google.longrunning.Operation`,
//! written (atomically) when it starts, when cancellation is asked for and when it ends.
//! Progress between those points lives in memory only. At start the server loads the files:
//! finished operations are served as before, unfinished ones (the server stopped while they
//! ran) end with OPERATION_INTERRUPTED and are not resumed: resuming a transfer or a
//! destruction half-way is not something to do behind an archivist's back.
//!
//! **Shared backend** (a database, several instances): each operation is the installation
//! blob `operations/{tenant}/{id}.op` of the [`MetaStore`], holding a small `Stored`
//! record: the encoded `google.longrunning.Operation`, when the running instance last wrote
//! it, and that instance's heartbeat interval. The instance that runs an operation writes it
//! when it starts, every heartbeat while it runs (so that every instance sees its progress),
//! when cancellation is asked for and when it ends. Any instance answers Get, List, Wait,
//! Cancel and Delete from the stored record:
//! - every write is a compare-and-put of the record just read, so that writes of different
//!   instances never lose each other's changes;
//! - CancelOperation on another instance sets `requested_cancellation` in the record; the
//!   running instance reads the record before each of its writes, so it sees the request
//!   within one heartbeat and stops stoppable work;
//! - a record that is not done and was not written for three of its heartbeat intervals
//!   belongs to an instance that died: the instance reading it stores it as ended with
//!   OPERATION_INTERRUPTED (as after a restart). Should the runner only have been slow, its
//!   next heartbeat sees the verdict and stops stoppable work; its final write still stores
//!   the real outcome.
//!
//! The running limit ([`MAX_RUNNING_PER_TENANT`]) holds per instance (it bounds the
//! instance's threads); the kept limit counts the stored operations of the tenant.
//! Finished operations are forgotten 7 days after they ended (on a shared backend when the
//! tenant's operations are listed). A transfer package stays a file of the instance that
//! wrote it.
//!
//! The work is a blocking closure on the blocking pool; it reports progress and checks for
//! cancellation through a [`Progress`] handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use akte_core::backend::MetaStore;
use akte_core::store::StoreError;
use chrono::{DateTime, Utc};
use prost::Message;
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::timestamp;
use crate::error::ApiError;
use crate::pb::akte::v1 as pb;
use crate::pb::google::longrunning as lro;
use crate::pb::google::rpc;

/// How long finished operations are kept.
pub const KEEP_FINISHED: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Operations running at once per tenant.
pub const MAX_RUNNING_PER_TENANT: usize = 16;
/// Operations kept per tenant (running and finished).
pub const MAX_KEPT_PER_TENANT: usize = 10_000;
/// Extension of operation files.
const EXT: &str = "op";
/// Heartbeats a running operation may miss before it counts as interrupted.
const MISSED_HEARTBEATS: i64 = 3;
/// Compare-and-put attempts of one write before it gives up (another instance keeps
/// changing the record).
const CAS_ATTEMPTS: usize = 16;

/// An operation as a shared backend stores it.
#[derive(Clone, PartialEq, prost::Message)]
struct Stored {
    /// The encoded `google.longrunning.Operation`.
    #[prost(bytes = "vec", tag = "1")]
    operation: Vec<u8>,
    /// When the running instance last wrote it, Unix milliseconds.
    #[prost(int64, tag = "2")]
    written_ms: i64,
    /// The running instance's heartbeat interval, milliseconds.
    #[prost(int64, tag = "3")]
    heartbeat_ms: i64,
}

impl Stored {
    fn decode_parts(
        bytes: &[u8],
    ) -> Result<(Stored, lro::Operation, pb::OperationMetadata), String> {
        let stored = Stored::decode(bytes).map_err(|e| e.to_string())?;
        let (op, meta) = decode_operation(&stored.operation)?;
        Ok((stored, op, meta))
    }

    /// Whether the instance running it stopped writing it.
    fn is_stale(&self, now_ms: i64) -> bool {
        let beat = self.heartbeat_ms.max(1);
        now_ms.saturating_sub(self.written_ms) > beat.saturating_mul(MISSED_HEARTBEATS)
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// An encoded operation and its metadata.
fn decode_operation(bytes: &[u8]) -> Result<(lro::Operation, pb::OperationMetadata), String> {
    let op = lro::Operation::decode(bytes).map_err(|e| e.to_string())?;
    let meta = op
        .metadata
        .as_ref()
        .map(|m| pb::OperationMetadata::decode(m.value.as_slice()))
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    Ok((op, meta))
}

/// The installation blob of an operation on a shared backend.
pub fn blob_name(tenant: &str, id: Uuid) -> String {
    format!("operations/{tenant}/{id}.{EXT}")
}

/// The record a shared backend keeps for `op`, as last written at `written_ms` (Unix
/// milliseconds) by an instance with heartbeat `heartbeat_ms` (for tools and tests that
/// set up a stored state).
pub fn stored_record(op: &lro::Operation, written_ms: i64, heartbeat_ms: i64) -> Vec<u8> {
    Stored {
        operation: op.encode_to_vec(),
        written_ms,
        heartbeat_ms,
    }
    .encode_to_vec()
}

fn meta_failed(e: akte_core::backend::MetaError) -> ApiError {
    ApiError::Store(StoreError::Meta(e))
}

/// Where a shared backend keeps operations.
#[derive(Clone)]
struct Shared {
    meta: Arc<dyn MetaStore>,
    heartbeat: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

/// What a write of an operation's state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// The running instance's periodic write.
    Heartbeat,
    /// A change while it runs (start, cancellation).
    Change,
    /// The outcome.
    Final,
}

/// What an operation does; decides who may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// VerificationService.VerifyTenant.
    Verify,
    /// DisposalService.Transfer and TransferTwoStage.
    Transfer,
    /// DisposalService.Destroy.
    Destroy,
    /// DocumentService.ImportUploadSession.
    Import,
    /// MigrationService.ImportPackage.
    ImportPackage,
}

impl Verb {
    /// The verb as `OperationMetadata.verb` has it.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Verify => "verify",
            Verb::Transfer => "transfer",
            Verb::Destroy => "destroy",
            Verb::Import => "import",
            Verb::ImportPackage => "import_package",
        }
    }

    fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "verify" => Verb::Verify,
            "transfer" => Verb::Transfer,
            "destroy" => Verb::Destroy,
            "import" => Verb::Import,
            "import_package" => Verb::ImportPackage,
            _ => return None,
        })
    }

    /// What starting the method is, in the table of roles and operations; its roles may
    /// see, wait for, cancel and delete its operations.
    pub fn operation(self) -> Operation {
        match self {
            Verb::Verify => Operation::Verify,
            Verb::Transfer | Verb::Destroy | Verb::ImportPackage => Operation::KeepFiles,
            Verb::Import => Operation::FileDocuments,
        }
    }

    /// Whether the work stops when cancelled (else it finishes and only notes the request).
    fn stoppable(self) -> bool {
        matches!(self, Verb::Transfer | Verb::Import)
    }
}

/// `tenants/{tenant}/operations/{id}`.
pub fn operation_name(tenant: &str, id: Uuid) -> String {
    format!("tenants/{tenant}/operations/{id}")
}

/// A message packed into `google.protobuf.Any` under its proto full name.
pub fn pack<M: Message>(full_name: &str, m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{full_name}"),
        value: m.encode_to_vec(),
    }
}

/// The mutable part of an operation.
#[derive(Debug, Clone)]
struct Mutable {
    meta: pb::OperationMetadata,
    result: Option<lro::operation::Result>,
}

/// One operation.
#[derive(Debug)]
pub struct Entry {
    tenant: String,
    id: Uuid,
    verb: Verb,
    state: Mutex<Mutable>,
    cancel: AtomicBool,
    /// True once the result is set; WaitOperation waits on it.
    done: watch::Sender<bool>,
    /// Files that belong to the operation's result (a transfer package) and go with it.
    attachment: Mutex<Option<PathBuf>>,
    /// Held while the operation's file is written, so that the last state written wins.
    persisting: Mutex<()>,
    /// Read from a shared backend: another instance runs it (or ran it), this is a copy.
    remote: bool,
    /// Running here, but another instance stored it as interrupted (this one could not
    /// write it for too long): its stoppable work stops, and does not end as cancelled.
    overruled: AtomicBool,
}

impl Entry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mutable> {
        // A panic while holding the lock cannot leave the plain data inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// What it does.
    pub fn verb(&self) -> Verb {
        self.verb
    }

    /// Its id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// When it was started, as seconds and nanoseconds (for ordering).
    pub fn created(&self) -> (i64, i32) {
        self.lock()
            .meta
            .create_time
            .map(|t| (t.seconds, t.nanos))
            .unwrap_or_default()
    }

    /// Whether it has finished.
    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// A receiver that turns true when it finishes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.done.subscribe()
    }

    fn end_time(&self) -> Option<DateTime<Utc>> {
        meta_time(self.lock().meta.end_time.as_ref())
    }

    /// The operation as the API returns it.
    pub fn to_pb(&self) -> lro::Operation {
        let m = self.lock();
        lro::Operation {
            name: operation_name(&self.tenant, self.id),
            metadata: Some(pack("akte.v1.OperationMetadata", &m.meta)),
            done: m.result.is_some(),
            result: m.result.clone(),
        }
    }

    /// What it is about and who started it: (`OperationMetadata.target`, principal,
    /// the result's message when it ended with one).
    pub fn about(&self) -> (String, String, Option<prost_types::Any>) {
        let m = self.lock();
        let result = match &m.result {
            Some(lro::operation::Result::Response(any)) => Some(any.clone()),
            _ => None,
        };
        (m.meta.target.clone(), m.meta.principal.clone(), result)
    }

    /// The package file of a finished transfer.
    pub fn attachment(&self) -> Option<PathBuf> {
        self.attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What the work of an operation sees: progress reporting and cancellation.
#[derive(Debug, Clone)]
pub struct Progress {
    entry: Arc<Entry>,
}

impl Progress {
    /// Sets the unit and total of the work.
    pub fn total(&self, total: u64, unit: &str) {
        let mut m = self.entry.lock();
        m.meta.total = total;
        m.meta.unit = unit.to_owned();
    }

    /// Adds to the units done.
    pub fn add(&self, n: u64) {
        let mut m = self.entry.lock();
        m.meta.processed = m.meta.processed.saturating_add(n);
    }

    /// Sets the units done.
    pub fn set(&self, n: u64) {
        self.entry.lock().meta.processed = n;
    }

    /// Says where the work stands.
    pub fn message(&self, text: impl Into<String>) {
        self.entry.lock().meta.status_message = text.into();
    }

    /// Whether the work should stop (cancelled, or the server is stopping).
    pub fn cancelled(&self) -> bool {
        self.entry.cancel.load(Ordering::Relaxed)
    }

    /// The operation's id.
    pub fn id(&self) -> Uuid {
        self.entry.id
    }

    /// Keeps a file with the operation: removed when the operation is forgotten.
    pub fn attach(&self, path: PathBuf) {
        *self
            .entry
            .attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(path);
    }
}

/// The result of an operation's work: a packed response, or the error it ended with.
pub type Outcome = Result<prost_types::Any, ApiError>;

/// All operations of the server.
#[derive(Debug)]
pub struct Operations {
    dir: PathBuf,
    /// The shared backend, if there is one; else the operations are files in `dir`.
    shared: Option<Shared>,
    /// Without a shared backend: every operation. With one: those this instance runs (and
    /// any whose final write failed).
    entries: Mutex<HashMap<(String, Uuid), Arc<Entry>>>,
    /// Set when the server stops: stoppable work stops, and ends as interrupted.
    stopping: AtomicBool,
}

/// Errors loading the stored operations.
#[derive(Debug, thiserror::Error)]
#[error("operations in {path}: {source}")]
pub struct LoadError {
    path: String,
    source: std::io::Error,
}

fn meta_time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

impl Operations {
    /// Loads the operations stored under `data_dir`, ending those a stop interrupted and
    /// forgetting those finished more than [`KEEP_FINISHED`] ago.
    pub fn open(data_dir: &Path) -> Result<Operations, LoadError> {
        let dir = data_dir.join("operations");
        let ops = Operations {
            dir: dir.clone(),
            shared: None,
            entries: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        };
        let err = |p: &Path, source| LoadError {
            path: p.display().to_string(),
            source,
        };
        let tenants = match std::fs::read_dir(&dir) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ops),
            Err(e) => return Err(err(&dir, e)),
        };
        for t in tenants {
            let t = t.map_err(|e| err(&dir, e))?;
            let tenant = t.file_name().to_string_lossy().into_owned();
            if akte_core::store::validate_tenant_id(&tenant).is_err() {
                continue;
            }
            let tdir = t.path();
            for f in std::fs::read_dir(&tdir).map_err(|e| err(&tdir, e))? {
                let f = f.map_err(|e| err(&tdir, e))?;
                ops.load_one(&tenant, &f.path());
            }
        }
        ops.sweep();
        Ok(ops)
    }

    /// Loads one stored operation; files that are not operations (a package, a temporary
    /// file of an interrupted write) are left to [`Operations::sweep`] or ignored.
    fn load_one(&self, tenant: &str, path: &Path) {
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
            .and_then(|n| Uuid::parse_str(n).ok())
        else {
            return;
        };
        let decoded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode_operation(&b));
        let (op, meta) = match decoded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(path = %path.display(), "stored operation unreadable, ignored: {e}");
                return;
            }
        };
        let Some(verb) = Verb::parse(&meta.verb) else {
            tracing::error!(path = %path.display(), verb = %meta.verb, "stored operation of an unknown kind, ignored");
            return;
        };
        let package = self.package_path(tenant, id);
        let entry = Arc::new(Entry {
            tenant: tenant.to_owned(),
            id,
            verb,
            state: Mutex::new(Mutable {
                meta,
                result: op.result,
            }),
            cancel: AtomicBool::new(false),
            done: watch::Sender::new(op.done),
            attachment: Mutex::new(package.exists().then_some(package)),
            persisting: Mutex::new(()),
            remote: false,
            overruled: AtomicBool::new(false),
        });
        if !op.done {
            let why = interrupted_reason(verb);
            self.finish_entry(&entry, Err(ApiError::OperationInterrupted(why.into())));
        }
        self.map().insert((tenant.to_owned(), id), entry);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Uuid), Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operations of an installation whose instances share `meta` (the installation's
    /// blobs): nothing is loaded, every instance reads the stored records when asked. Starts
    /// the thread that writes the running operations every `heartbeat`.
    pub fn open_shared(
        data_dir: &Path,
        meta: Arc<dyn MetaStore>,
        heartbeat: Duration,
    ) -> Arc<Operations> {
        let ops = Arc::new(Operations {
            dir: data_dir.join("operations"),
            shared: Some(Shared { meta, heartbeat }),
            entries: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&ops);
        let spawned = std::thread::Builder::new()
            .name("akte-op-heartbeat".into())
            .spawn(move || heartbeats(weak, heartbeat));
        if let Err(e) = spawned {
            // Without it other instances see the running operations as interrupted.
            tracing::error!("starting the operations' heartbeat thread failed: {e}");
        }
        ops
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.dir.join(tenant)
    }

    fn file(&self, tenant: &str, id: Uuid) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{id}.{EXT}"))
    }

    /// Whether operations are shared with other instances (a database backend).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Where the transfer package of an operation is written.
    pub fn package_path(&self, tenant: &str, id: Uuid) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{id}.zip"))
    }

    /// Writes the operation's current state (to its file, or to the shared backend); returns
    /// whether it is stored. A failure is logged: the operation goes on, and is only lost if
    /// the server stops before the next write.
    fn persist(&self, entry: &Entry, kind: Write) -> bool {
        let _one_writer = entry.persisting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = &self.shared {
            if kind == Write::Heartbeat && entry.is_done() {
                // The final write was made (or is being retried by the finish).
                return true;
            }
            return match self.persist_shared(shared, entry, kind) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(tenant = %entry.tenant, id = %entry.id, "storing an operation failed: {e}");
                    false
                }
            };
        }
        let path = self.file(&entry.tenant, entry.id);
        // Taken under the lock: a later change is written by its own, later call.
        let bytes = entry.to_pb().encode_to_vec();
        let written =
            akte_core::embedded::fsutil::create_dir_all_durable(&self.tenant_dir(&entry.tenant))
                .and_then(|_| akte_core::embedded::fsutil::write_file_atomic(&path, &bytes, 0o600));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), "storing an operation failed: {e}");
            return false;
        }
        true
    }

    /// The running instance's write to the shared backend: takes up what other instances
    /// stored (a cancellation request, a verdict of interruption), then replaces the record
    /// it read.
    fn persist_shared(&self, shared: &Shared, entry: &Entry, kind: Write) -> Result<(), ApiError> {
        let name = blob_name(&entry.tenant, entry.id);
        for _ in 0..CAS_ATTEMPTS {
            let current = shared.meta.get(&name).map_err(meta_failed)?;
            if let Some(bytes) = &current {
                match Stored::decode_parts(bytes) {
                    Ok((_, op, meta)) => {
                        if meta.requested_cancellation {
                            note_cancellation(entry);
                        }
                        if op.done && kind != Write::Final {
                            // Declared interrupted by an instance that saw no write for
                            // too long: stoppable work stops; the verdict stands until the
                            // outcome is written.
                            entry.overruled.store(true, Ordering::Relaxed);
                            if entry.verb.stoppable() {
                                entry.cancel.store(true, Ordering::Relaxed);
                            }
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        tracing::error!(tenant = %entry.tenant, id = %entry.id, "stored operation unreadable, replaced: {e}")
                    }
                }
            }
            let record = Stored {
                operation: entry.to_pb().encode_to_vec(),
                written_ms: now_ms(),
                heartbeat_ms: i64::try_from(shared.heartbeat.as_millis()).unwrap_or(i64::MAX),
            };
            if shared
                .meta
                .compare_and_put(&name, current.as_deref(), &record.encode_to_vec(), false)
                .map_err(meta_failed)?
            {
                return Ok(());
            }
        }
        Err(ApiError::Internal(format!(
            "operation {}: the stored record kept changing",
            entry.id
        )))
    }

    /// An operation stored by some instance, as this one answers for it: one that is not
    /// done and was not written for too long ended as interrupted (stored as such).
    fn read_stored(
        &self,
        shared: &Shared,
        tenant: &str,
        id: Uuid,
        bytes: &[u8],
    ) -> Option<Arc<Entry>> {
        let (stored, op, meta) = match Stored::decode_parts(bytes) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(tenant = %tenant, id = %id, "stored operation unreadable, ignored: {e}");
                return None;
            }
        };
        let Some(verb) = Verb::parse(&meta.verb) else {
            tracing::error!(tenant = %tenant, id = %id, verb = %meta.verb, "stored operation of an unknown kind, ignored");
            return None;
        };
        let package = self.package_path(tenant, id);
        let entry = Arc::new(Entry {
            tenant: tenant.to_owned(),
            id,
            verb,
            state: Mutex::new(Mutable {
                meta,
                result: op.result,
            }),
            cancel: AtomicBool::new(false),
            done: watch::Sender::new(op.done),
            attachment: Mutex::new(package.exists().then_some(package)),
            persisting: Mutex::new(()),
            remote: true,
            overruled: AtomicBool::new(false),
        });
        if !op.done && stored.is_stale(now_ms()) {
            let why = format!(
                "the instance running the operation stopped writing it (no write for {} ms); {}",
                now_ms().saturating_sub(stored.written_ms),
                interrupted_reason(verb)
            );
            set_outcome(&entry, Err(ApiError::OperationInterrupted(why)));
            entry.done.send_replace(true);
            let verdict = Stored {
                operation: entry.to_pb().encode_to_vec(),
                ..stored
            };
            let name = blob_name(tenant, id);
            match shared
                .meta
                .compare_and_put(&name, Some(bytes), &verdict.encode_to_vec(), false)
            {
                Ok(true) => {
                    tracing::warn!(tenant = %tenant, id = %id, "operation of a stopped instance ended as interrupted")
                }
                // Written in between (by its runner after all, or by another reader): the
                // record as it is now.
                Ok(false) => {
                    return match shared.meta.get(&name) {
                        Ok(Some(now)) if now != bytes => self.read_stored(shared, tenant, id, &now),
                        _ => Some(entry),
                    }
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant, id = %id, "storing an interrupted operation failed: {e}")
                }
            }
        }
        Some(entry)
    }

    fn finish_entry(&self, entry: &Entry, outcome: Outcome) {
        set_outcome(entry, outcome);
        let stored = self.persist(entry, Write::Final);
        entry.done.send_replace(true);
        if stored && self.shared.is_some() {
            // The record answers for it from now on, on every instance alike.
            self.map().remove(&(entry.tenant.clone(), entry.id));
        }
    }

    /// Forgets finished operations older than [`KEEP_FINISHED`], with their files.
    pub fn sweep(&self) {
        let cutoff = Utc::now() - KEEP_FINISHED;
        let old: Vec<Arc<Entry>> = self
            .map()
            .values()
            .filter(|e| e.is_done() && e.end_time().is_some_and(|t| t < cutoff))
            .cloned()
            .collect();
        for e in old {
            if let Err(err) = self.forget(&e) {
                tracing::warn!(tenant = %e.tenant, id = %e.id, "forgetting an operation: {err}");
            }
        }
    }

    fn forget(&self, e: &Entry) -> Result<(), ApiError> {
        if let Some(shared) = &self.shared {
            shared
                .meta
                .remove(&blob_name(&e.tenant, e.id))
                .map_err(meta_failed)?;
        }
        self.map().remove(&(e.tenant.clone(), e.id));
        let file = self.shared.is_none().then(|| self.file(&e.tenant, e.id));
        for path in [file, e.attachment()].into_iter().flatten() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), "removing an operation's file: {err}")
                }
            }
        }
        Ok(())
    }

    /// Operations of `tenant` kept: on a shared backend, those stored by any instance.
    fn kept(&self, tenant: &str) -> Result<usize, ApiError> {
        match &self.shared {
            Some(shared) => Ok(shared
                .meta
                .list(&format!("operations/{tenant}/"))
                .map_err(meta_failed)?
                .len()),
            None => Ok(self.map().values().filter(|e| e.tenant == tenant).count()),
        }
    }

    /// Starts `work` as an operation of `tenant` and returns it as it stands, once it is
    /// stored.
    pub async fn start<F>(
        self: &Arc<Self>,
        tenant: &str,
        verb: Verb,
        target: String,
        principal: &str,
        work: F,
    ) -> Result<lro::Operation, ApiError>
    where
        F: FnOnce(&Progress) -> Outcome + Send + 'static,
    {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(ApiError::ShuttingDown);
        }
        let running = self
            .map()
            .values()
            .filter(|e| e.tenant == tenant && !e.is_done())
            .count();
        if running >= MAX_RUNNING_PER_TENANT {
            return Err(ApiError::QuotaExceeded {
                what: "running operations",
                limit: MAX_RUNNING_PER_TENANT,
                hint: "wait until one finishes",
            });
        }
        let kept = {
            let (ops, t) = (self.clone(), tenant.to_owned());
            tokio::task::spawn_blocking(move || ops.kept(&t))
                .await
                .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))??
        };
        if kept >= MAX_KEPT_PER_TENANT {
            return Err(ApiError::QuotaExceeded {
                what: "kept operations",
                limit: MAX_KEPT_PER_TENANT,
                hint: "delete finished ones with DeleteOperation",
            });
        }
        let id = Uuid::new_v4();
        let entry = Arc::new(Entry {
            tenant: tenant.to_owned(),
            id,
            verb,
            state: Mutex::new(Mutable {
                meta: pb::OperationMetadata {
                    target,
                    verb: verb.name().to_owned(),
                    principal: principal.to_owned(),
                    create_time: Some(timestamp(&Utc::now())),
                    status_message: "started".into(),
                    ..Default::default()
                },
                result: None,
            }),
            cancel: AtomicBool::new(false),
            done: watch::Sender::new(false),
            attachment: Mutex::new(None),
            persisting: Mutex::new(()),
            remote: false,
            overruled: AtomicBool::new(false),
        });
        // Counted from now on (quotas), but not answered before it is stored.
        self.map().insert((tenant.to_owned(), id), entry.clone());
        let (stored, announced) = tokio::sync::oneshot::channel();
        let ops = self.clone();
        // One blocking task stores the operation, runs the work and stores the result. It
        // does not depend on the call that started it: a caller that goes away right after
        // asking changes nothing.
        tokio::task::spawn_blocking(move || {
            ops.sweep();
            if !ops.persist(&entry, Write::Change) && ops.shared.is_some() {
                // Other instances could not answer for it: refused before any work.
                ops.map().remove(&(entry.tenant.clone(), entry.id));
                let _ = stored.send(Err(ApiError::Internal(
                    "the operation could not be stored".into(),
                )));
                return;
            }
            let _ = stored.send(Ok(entry.to_pb()));
            let progress = Progress {
                entry: entry.clone(),
            };
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&progress)))
                    .unwrap_or_else(|_| {
                        Err(ApiError::Internal("the operation's work panicked".into()))
                    });
            // Work that stopped because the server is stopping was interrupted, not
            // cancelled by anyone.
            let outcome = match outcome {
                Err(ApiError::OperationCancelled) if ops.stopping.load(Ordering::Relaxed) => {
                    Err(ApiError::OperationInterrupted(
                        "the server stopped while the operation ran; start it again".into(),
                    ))
                }
                Err(ApiError::OperationCancelled)
                    if entry.overruled.load(Ordering::Relaxed)
                        && !entry.lock().meta.requested_cancellation =>
                {
                    Err(ApiError::OperationInterrupted(format!(
                        "this instance could not store the operation's progress for too long, so it was taken as stopped; {}",
                        interrupted_reason(entry.verb)
                    )))
                }
                other => other,
            };
            ops.finish_entry(&entry, outcome);
        });
        announced.await.map_err(|_| {
            ApiError::Internal("the operation's task ended before it was stored".into())
        })?
    }

    /// The operation `id` of `tenant`: the one this instance runs, or (shared backend) the
    /// stored one. Reads the shared backend: call it on the blocking pool.
    pub fn get(&self, tenant: &str, id: Uuid) -> Result<Option<Arc<Entry>>, ApiError> {
        if let Some(e) = self.map().get(&(tenant.to_owned(), id)).cloned() {
            return Ok(Some(e));
        }
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let Some(bytes) = shared
            .meta
            .get(&blob_name(tenant, id))
            .map_err(meta_failed)?
        else {
            return Ok(None);
        };
        Ok(self.read_stored(shared, tenant, id, &bytes))
    }

    /// The operations of `tenant`, oldest first (by creation, then id). Forgets those kept
    /// long enough first (removing files or records): call it on the blocking pool.
    pub fn list(&self, tenant: &str) -> Result<Vec<Arc<Entry>>, ApiError> {
        self.sweep();
        let mut out: Vec<Arc<Entry>> = self
            .map()
            .values()
            .filter(|e| e.tenant == tenant)
            .cloned()
            .collect();
        if let Some(shared) = &self.shared {
            let cutoff = Utc::now() - KEEP_FINISHED;
            // One read for all of them (one query on a database, not one per operation).
            let stored = shared
                .meta
                .get_all(&format!("operations/{tenant}/"))
                .map_err(meta_failed)?;
            for (name, bytes) in stored {
                let Some(id) = name
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
                    .and_then(|n| Uuid::parse_str(n).ok())
                else {
                    continue;
                };
                if out.iter().any(|e| e.id == id) {
                    // Run here: the copy in memory is the fresher one.
                    continue;
                }
                let Some(e) = self.read_stored(shared, tenant, id, &bytes) else {
                    continue;
                };
                if e.is_done() && e.end_time().is_some_and(|t| t < cutoff) {
                    self.forget(&e)?;
                    continue;
                }
                out.push(e);
            }
        }
        out.sort_by_key(|e| (e.created(), e.id));
        Ok(out)
    }

    /// Asks a running operation to stop (stoppable work stops; other work finishes and
    /// only records the request). A finished operation is left as it is. On a shared
    /// backend the request is stored; the instance running the operation sees it at its
    /// next heartbeat. Writes: call it on the blocking pool.
    pub fn cancel(&self, entry: &Entry) -> Result<(), ApiError> {
        if entry.is_done() {
            return Ok(());
        }
        match &self.shared {
            Some(shared) if entry.remote => self.cancel_stored(shared, entry),
            _ => {
                note_cancellation(entry);
                self.persist(entry, Write::Change);
                Ok(())
            }
        }
    }

    /// Stores a cancellation request in the record of an operation another instance runs,
    /// keeping the runner's write time (only the runner's writes say that it lives).
    fn cancel_stored(&self, shared: &Shared, entry: &Entry) -> Result<(), ApiError> {
        let name = blob_name(&entry.tenant, entry.id);
        for _ in 0..CAS_ATTEMPTS {
            let Some(current) = shared.meta.get(&name).map_err(meta_failed)? else {
                return Ok(());
            };
            let (stored, mut op, mut meta) = Stored::decode_parts(&current)
                .map_err(|e| ApiError::Internal(format!("stored operation {}: {e}", entry.id)))?;
            if op.done || meta.requested_cancellation {
                return Ok(());
            }
            meta.requested_cancellation = true;
            if !entry.verb.stoppable() {
                meta.status_message =
                    "cancellation asked for, but this work cannot stop once running".into();
            }
            op.metadata = Some(pack("akte.v1.OperationMetadata", &meta));
            let record = Stored {
                operation: op.encode_to_vec(),
                ..stored
            };
            if shared
                .meta
                .compare_and_put(&name, Some(&current), &record.encode_to_vec(), false)
                .map_err(meta_failed)?
            {
                let mut m = entry.lock();
                m.meta = meta;
                return Ok(());
            }
        }
        Err(ApiError::Internal(format!(
            "operation {}: the stored record kept changing",
            entry.id
        )))
    }

    /// Forgets a finished operation and its files; a running one is refused. Removes
    /// files or records: call it on the blocking pool.
    pub fn delete(&self, entry: &Entry, name: &str) -> Result<(), ApiError> {
        if !entry.is_done() {
            return Err(ApiError::FailedPrecondition {
                resource: name.to_owned(),
                reason: "the operation is still running; cancel it or wait until it is done".into(),
            });
        }
        self.forget(entry)
    }

    /// How often a copy of an operation another instance runs is read again while waiting
    /// for it.
    pub fn poll_interval(&self) -> Duration {
        self.shared
            .as_ref()
            .map(|s| s.heartbeat.min(Duration::from_secs(1)))
            .unwrap_or(Duration::from_secs(1))
    }

    /// Stops stoppable work at shutdown and waits up to `deadline` for all running
    /// operations to finish; what still runs then ends as interrupted at the next start
    /// (on a shared backend: when other instances see no more writes).
    pub async fn shutdown(&self, deadline: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let running: Vec<Arc<Entry>> = self
            .map()
            .values()
            .filter(|e| !e.is_done())
            .cloned()
            .collect();
        for e in &running {
            if e.verb.stoppable() {
                e.cancel.store(true, Ordering::Relaxed);
            }
        }
        let all = async {
            for e in &running {
                let mut rx = e.subscribe();
                let _ = rx.wait_for(|done| *done).await;
            }
        };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(
                "operations still running at shutdown; they end as interrupted at the next start"
            );
        }
    }
}

impl Entry {
    /// Whether this is a copy read from the shared backend (another instance runs it or
    /// ran it): its `done` signal does not fire, poll it with [`Operations::get`].
    pub fn is_remote(&self) -> bool {
        self.remote
    }
}

/// Writes the running operations of this instance every `interval`, until the operations
/// are dropped.
fn heartbeats(ops: Weak<Operations>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(ops) = ops.upgrade() else {
            return;
        };
        let running: Vec<Arc<Entry>> = ops
            .map()
            .values()
            .filter(|e| !e.is_done())
            .cloned()
            .collect();
        for e in running {
            ops.persist(&e, Write::Heartbeat);
        }
    }
}

/// Records that cancellation was asked for; stoppable work is told to stop.
fn note_cancellation(entry: &Entry) {
    {
        let mut m = entry.lock();
        if m.meta.requested_cancellation {
            return;
        }
        m.meta.requested_cancellation = true;
        if !entry.verb.stoppable() {
            m.meta.status_message =
                "cancellation asked for, but this work cannot stop once running".into();
        }
    }
    if entry.verb.stoppable() {
        entry.cancel.store(true, Ordering::Relaxed);
    }
}

/// Sets the result of an operation and its end time (in memory).
fn set_outcome(entry: &Entry, outcome: Outcome) {
    let result = match outcome {
        Ok(any) => lro::operation::Result::Response(any),
        Err(e) => {
            if matches!(
                e,
                ApiError::OperationCancelled | ApiError::OperationInterrupted(_)
            ) {
                tracing::info!(tenant = %entry.tenant, id = %entry.id, "operation ended: {e}");
            } else {
                tracing::warn!(tenant = %entry.tenant, id = %entry.id, verb = entry.verb.name(), "operation failed: {e}");
            }
            let status: rpc::Status = e.to_rpc_status();
            lro::operation::Result::Error(status)
        }
    };
    let mut m = entry.lock();
    m.meta.end_time = Some(timestamp(&Utc::now()));
    m.meta.status_message = match &result {
        lro::operation::Result::Response(_) => "done".into(),
        lro::operation::Result::Error(s) => format!("failed: {}", s.message),
    };
    m.result = Some(result);
}

/// What to do about an operation a stop interrupted, by kind.
fn interrupted_reason(verb: Verb) -> &'static str {
    match verb {
        Verb::Verify => "the server stopped while the verification ran; start it again",
        Verb::Transfer => "the server stopped while the transfer package was written; GetProcess shows whether the transfer was recorded: if it was, send it again with Transfer and resend set, else start the transfer again",
        Verb::Destroy => "the server stopped while the destruction ran; the store completes an interrupted destruction when it opens: ListDestructionRecords shows whether it was recorded, else start it again",
        Verb::Import => "the server stopped while the upload was imported; the upload session is kept: import it again",
        Verb::ImportPackage => "the server stopped while the package was imported; send it again: what was imported is skipped, the rest is imported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work that runs until it is told to stop, then ends as cancelled.
    fn until_stopped(p: &Progress) -> Outcome {
        p.total(10, "bytes");
        while !p.cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(ApiError::OperationCancelled)
    }

    fn error_reason(e: &Entry) -> String {
        match e.to_pb().result {
            Some(lro::operation::Result::Error(s)) => {
                let info = s
                    .details
                    .iter()
                    .find(|a| a.type_url.ends_with("ErrorInfo"))
                    .map(|a| rpc::ErrorInfo::decode(a.value.as_slice()).unwrap());
                info.map(|i| i.reason).unwrap_or_default()
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_work_stops_and_running_work_cannot_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Arc::new(Operations::open(dir.path()).unwrap());
        let op = ops
            .start("t", Verb::Import, "x".into(), "clerk", until_stopped)
            .await
            .unwrap();
        let id = Uuid::parse_str(op.name.rsplit('/').next().unwrap()).unwrap();
        let e = ops.get("t", id).unwrap().unwrap();
        assert!(matches!(
            ops.delete(&e, &op.name),
            Err(ApiError::FailedPrecondition { .. })
        ));
        ops.cancel(&e).unwrap();
        e.subscribe().wait_for(|d| *d).await.unwrap();
        assert_eq!(error_reason(&e), "OPERATION_CANCELLED");
        let meta =
            pb::OperationMetadata::decode(e.to_pb().metadata.unwrap().value.as_slice()).unwrap();
        assert!(meta.requested_cancellation);
        assert!(meta.end_time.is_some());
        ops.delete(&e, &op.name).unwrap();
        assert!(ops.get("t", id).unwrap().is_none());
        assert!(!dir.path().join(format!("operations/t/{id}.op")).exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_that_cannot_stop_only_notes_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Arc::new(Operations::open(dir.path()).unwrap());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let op = ops
            .start("t", Verb::Destroy, "x".into(), "registrar", move |p| {
                rx.recv().unwrap();
                assert!(!p.cancelled(), "destruction is not stopped half-way");
                Ok(pack(
                    "akte.v1.OperationMetadata",
                    &pb::OperationMetadata::default(),
                ))
            })
            .await
            .unwrap();
        let id = Uuid::parse_str(op.name.rsplit('/').next().unwrap()).unwrap();
        let e = ops.get("t", id).unwrap().unwrap();
        ops.cancel(&e).unwrap();
        tx.send(()).unwrap();
        e.subscribe().wait_for(|d| *d).await.unwrap();
        assert!(matches!(
            e.to_pb().result,
            Some(lro::operation::Result::Response(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_interrupts_running_work_and_old_operations_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Arc::new(Operations::open(dir.path()).unwrap());
        let op = ops
            .start("t", Verb::Transfer, "x".into(), "registrar", until_stopped)
            .await
            .unwrap();
        let id = Uuid::parse_str(op.name.rsplit('/').next().unwrap()).unwrap();
        ops.shutdown(Duration::from_secs(30)).await;
        let e = ops.get("t", id).unwrap().unwrap();
        assert_eq!(error_reason(&e), "OPERATION_INTERRUPTED");
        assert!(matches!(
            ops.start("t", Verb::Verify, "x".into(), "a", until_stopped)
                .await,
            Err(ApiError::ShuttingDown)
        ));
        // Ended more than 7 days ago: forgotten at the next open.
        {
            let mut m = e.lock();
            m.meta.end_time = Some(timestamp(&(Utc::now() - KEEP_FINISHED - KEEP_FINISHED)));
        }
        ops.persist(&e, Write::Change);
        let reopened = Operations::open(dir.path()).unwrap();
        assert!(reopened.get("t", id).unwrap().is_none());
        assert!(!dir.path().join(format!("operations/t/{id}.op")).exists());
    }

    /// Polls (bounded) until `f` holds for the operation as `ops` reads it.
    async fn until(ops: &Operations, id: Uuid, f: impl Fn(&Entry) -> bool) -> Arc<Entry> {
        for _ in 0..1000 {
            if let Some(e) = ops.get("t", id).unwrap() {
                if f(&e) {
                    return e;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the operation never got there");
    }

    fn metadata(e: &Entry) -> pb::OperationMetadata {
        pb::OperationMetadata::decode(e.to_pb().metadata.unwrap().value.as_slice()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_sharing_a_store_see_progress_cancellation_and_dead_runners() {
        let meta: Arc<dyn MetaStore> = Arc::new(akte_core::backend::memory::MemoryMeta::default());
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let beat = Duration::from_millis(20);
        let a = Operations::open_shared(d1.path(), meta.clone(), beat);
        let b = Operations::open_shared(d2.path(), meta.clone(), beat);
        let op = a
            .start("t", Verb::Import, "x".into(), "clerk", |p| {
                p.set(7);
                until_stopped(p)
            })
            .await
            .unwrap();
        let id = Uuid::parse_str(op.name.rsplit('/').next().unwrap()).unwrap();
        // The other instance sees it running, with the progress of a later heartbeat.
        let remote = until(&b, id, |e| metadata(e).processed == 7).await;
        assert!(remote.is_remote() && !remote.is_done());
        assert_eq!(b.list("t").unwrap().len(), 1);
        assert!(matches!(
            b.delete(&remote, &op.name),
            Err(ApiError::FailedPrecondition { .. })
        ));
        // Cancelled there: the work here stops, and there the outcome is seen.
        b.cancel(&remote).unwrap();
        let local = a.get("t", id).unwrap().unwrap();
        assert!(!local.is_remote());
        tokio::time::timeout(Duration::from_secs(60), local.subscribe().wait_for(|d| *d))
            .await
            .unwrap()
            .unwrap();
        let seen = until(&b, id, |e| e.is_done()).await;
        assert_eq!(error_reason(&seen), "OPERATION_CANCELLED");
        assert!(metadata(&seen).requested_cancellation);

        // A record whose instance stopped writing it long ago ended as interrupted, and is
        // stored so: every instance answers the same.
        let dead = Uuid::new_v4();
        let running = lro::Operation {
            name: operation_name("t", dead),
            metadata: Some(pack(
                "akte.v1.OperationMetadata",
                &pb::OperationMetadata {
                    verb: "verify".into(),
                    create_time: Some(timestamp(&Utc::now())),
                    ..Default::default()
                },
            )),
            done: false,
            result: None,
        };
        let record = Stored {
            operation: running.encode_to_vec(),
            written_ms: now_ms() - 10_000,
            heartbeat_ms: 20,
        };
        meta.put(&blob_name("t", dead), &record.encode_to_vec(), false)
            .unwrap();
        let e = b.get("t", dead).unwrap().unwrap();
        assert_eq!(error_reason(&e), "OPERATION_INTERRUPTED");
        let again = a.get("t", dead).unwrap().unwrap();
        assert_eq!(error_reason(&again), "OPERATION_INTERRUPTED");
        assert_eq!(a.list("t").unwrap().len(), 2);
        // Deleted on one instance: gone on the other.
        b.delete(&e, "n").unwrap();
        assert!(a.get("t", dead).unwrap().is_none());
        assert_eq!(a.list("t").unwrap().len(), 1);

        // Running here, but taken as stopped elsewhere (as when this instance could not
        // write for too long): the work stops at the next heartbeat and ends interrupted,
        // not cancelled.
        let op = a
            .start("t", Verb::Import, "y".into(), "clerk", until_stopped)
            .await
            .unwrap();
        let id = Uuid::parse_str(op.name.rsplit('/').next().unwrap()).unwrap();
        let verdict = lro::Operation {
            done: true,
            result: Some(lro::operation::Result::Error(
                ApiError::OperationInterrupted("elsewhere".into()).to_rpc_status(),
            )),
            ..op
        };
        meta.put(
            &blob_name("t", id),
            &stored_record(&verdict, now_ms(), 20),
            false,
        )
        .unwrap();
        let local = a.get("t", id).unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(60), local.subscribe().wait_for(|d| *d))
            .await
            .unwrap()
            .unwrap();
        let seen = until(&b, id, |e| e.is_done()).await;
        assert_eq!(error_reason(&seen), "OPERATION_INTERRUPTED");
        let Some(lro::operation::Result::Error(st)) = seen.to_pb().result else {
            panic!("expected an error");
        };
        assert!(st.message.contains("could not store"), "{}", st.message);
    }
}
