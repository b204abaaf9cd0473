//! Long-running operations: the work runs on the server, independently of the call that
//! started it, and its state is kept in memory and in the data directory.
//!
//! Each operation is one file `DATA_DIR/operations/{tenant}/{id}.op` holding the encoded
//! `google.longrunning.Operation`, written (atomically) when it starts, when cancellation is
//! asked for and when it ends. Progress between those points lives in memory only. At start
//! the server loads the files: finished operations are served as before, unfinished ones
//! (the server stopped while they ran) end with OPERATION_INTERRUPTED and are not resumed:
//! resuming a transfer or a destruction half-way is not something to do behind an
//! archivist's back. Finished operations are forgotten 7 days after they ended.
//!
//! The work is a blocking closure on the blocking pool; it reports progress and checks for
//! cancellation through a [`Progress`] handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

impl Verb {
    /// The verb as `OperationMetadata.verb` has it.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Verify => "verify",
            Verb::Transfer => "transfer",
            Verb::Destroy => "destroy",
            Verb::Import => "import",
        }
    }

    fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "verify" => Verb::Verify,
            "transfer" => Verb::Transfer,
            "destroy" => Verb::Destroy,
            "import" => Verb::Import,
            _ => return None,
        })
    }

    /// What starting the method is, in the table of roles and operations; its roles may
    /// see, wait for, cancel and delete its operations.
    pub fn operation(self) -> Operation {
        match self {
            Verb::Verify => Operation::Verify,
            Verb::Transfer | Verb::Destroy => Operation::KeepFiles,
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
            .and_then(|b| lro::Operation::decode(b.as_slice()).map_err(|e| e.to_string()))
            .and_then(|op| {
                let meta = op
                    .metadata
                    .as_ref()
                    .map(|m| pb::OperationMetadata::decode(m.value.as_slice()))
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                Ok((op, meta))
            });
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
        });
        if !op.done {
            let why = match verb {
                Verb::Verify => "the server stopped while the verification ran; start it again",
                Verb::Transfer => "the server stopped while the transfer package was written; GetProcess shows whether the transfer was recorded: if it was, send it again with Transfer and resend set, else start the transfer again",
                Verb::Destroy => "the server stopped while the destruction ran; the store completes an interrupted destruction when it opens: ListDestructionRecords shows whether it was recorded, else start it again",
                Verb::Import => "the server stopped while the upload was imported; the upload session is kept: import it again",
            };
            self.finish_entry(&entry, Err(ApiError::OperationInterrupted(why.into())));
        }
        self.map().insert((tenant.to_owned(), id), entry);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Uuid), Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.dir.join(tenant)
    }

    fn file(&self, tenant: &str, id: Uuid) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{id}.{EXT}"))
    }

    /// Where the transfer package of an operation is written.
    pub fn package_path(&self, tenant: &str, id: Uuid) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{id}.zip"))
    }

    /// Writes the operation's current state to its file. A failure is logged: the
    /// operation goes on, and is only lost if the server stops before the next write.
    fn persist(&self, entry: &Entry) {
        let _one_writer = entry.persisting.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.file(&entry.tenant, entry.id);
        // Taken under the lock: a later change is written by its own, later call.
        let bytes = entry.to_pb().encode_to_vec();
        let written =
            akte_core::embedded::fsutil::create_dir_all_durable(&self.tenant_dir(&entry.tenant))
                .and_then(|_| akte_core::embedded::fsutil::write_file_atomic(&path, &bytes, 0o600));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), "storing an operation failed: {e}");
        }
    }

    fn finish_entry(&self, entry: &Entry, outcome: Outcome) {
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
        {
            let mut m = entry.lock();
            m.meta.end_time = Some(timestamp(&Utc::now()));
            m.meta.status_message = match &result {
                lro::operation::Result::Response(_) => "done".into(),
                lro::operation::Result::Error(s) => format!("failed: {}", s.message),
            };
            m.result = Some(result);
        }
        self.persist(entry);
        entry.done.send_replace(true);
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
            self.forget(&e);
        }
    }

    fn forget(&self, e: &Entry) {
        self.map().remove(&(e.tenant.clone(), e.id));
        for path in [Some(self.file(&e.tenant, e.id)), e.attachment()]
            .into_iter()
            .flatten()
        {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), "removing an operation's file: {err}")
                }
            }
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
        let (running, kept) = {
            let map = self.map();
            let mine = map.values().filter(|e| e.tenant == tenant);
            let (mut running, mut kept) = (0, 0);
            for e in mine {
                kept += 1;
                running += usize::from(!e.is_done());
            }
            (running, kept)
        };
        if running >= MAX_RUNNING_PER_TENANT {
            return Err(ApiError::QuotaExceeded {
                what: "running operations",
                limit: MAX_RUNNING_PER_TENANT,
                hint: "wait until one finishes",
            });
        }
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
            ops.persist(&entry);
            let _ = stored.send(entry.to_pb());
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
                other => other,
            };
            ops.finish_entry(&entry, outcome);
        });
        announced.await.map_err(|_| {
            ApiError::Internal("the operation's task ended before it was stored".into())
        })
    }

    /// The operation `id` of `tenant`.
    pub fn get(&self, tenant: &str, id: Uuid) -> Option<Arc<Entry>> {
        self.map().get(&(tenant.to_owned(), id)).cloned()
    }

    /// The operations of `tenant`, oldest first (by creation, then id). Forgets those kept
    /// long enough first (removing files): call it on the blocking pool.
    pub fn list(&self, tenant: &str) -> Vec<Arc<Entry>> {
        self.sweep();
        let mut out: Vec<Arc<Entry>> = self
            .map()
            .values()
            .filter(|e| e.tenant == tenant)
            .cloned()
            .collect();
        out.sort_by_key(|e| (e.created(), e.id));
        out
    }

    /// Asks a running operation to stop (stoppable work stops; other work finishes and
    /// only records the request). A finished operation is left as it is. Writes the
    /// operation's file: call it on the blocking pool.
    pub fn cancel(&self, entry: &Entry) {
        if entry.is_done() {
            return;
        }
        {
            let mut m = entry.lock();
            m.meta.requested_cancellation = true;
            if !entry.verb.stoppable() {
                m.meta.status_message =
                    "cancellation asked for, but this work cannot stop once running".into();
            }
        }
        if entry.verb.stoppable() {
            entry.cancel.store(true, Ordering::Relaxed);
        }
        self.persist(entry);
    }

    /// Forgets a finished operation and its files; a running one is refused. Removes
    /// files: call it on the blocking pool.
    pub fn delete(&self, entry: &Entry, name: &str) -> Result<(), ApiError> {
        if !entry.is_done() {
            return Err(ApiError::FailedPrecondition {
                resource: name.to_owned(),
                reason: "the operation is still running; cancel it or wait until it is done".into(),
            });
        }
        self.forget(entry);
        Ok(())
    }

    /// Stops stoppable work at shutdown and waits up to `deadline` for all running
    /// operations to finish; what still runs then ends as interrupted at the next start.
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
        let e = ops.get("t", id).unwrap();
        assert!(matches!(
            ops.delete(&e, &op.name),
            Err(ApiError::FailedPrecondition { .. })
        ));
        ops.cancel(&e);
        e.subscribe().wait_for(|d| *d).await.unwrap();
        assert_eq!(error_reason(&e), "OPERATION_CANCELLED");
        let meta =
            pb::OperationMetadata::decode(e.to_pb().metadata.unwrap().value.as_slice()).unwrap();
        assert!(meta.requested_cancellation);
        assert!(meta.end_time.is_some());
        ops.delete(&e, &op.name).unwrap();
        assert!(ops.get("t", id).is_none());
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
        let e = ops.get("t", id).unwrap();
        ops.cancel(&e);
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
        let e = ops.get("t", id).unwrap();
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
        ops.persist(&e);
        let reopened = Operations::open(dir.path()).unwrap();
        assert!(reopened.get("t", id).is_none());
        assert!(!dir.path().join(format!("operations/t/{id}.op")).exists());
    }
}
