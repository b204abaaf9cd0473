//! DisposalService: the xdomea disposal flow (offer, the archive's messages, transfer) and
//! destruction. The ZIPs the core writes need `Write + Seek`. The 0501 is written to a
//! temporary file under `DATA_DIR/tmp`, streamed out in chunks of at most 1 MiB and
//! deleted when the stream ends (or the client goes away). The 0503 is written by a
//! long-running operation into a package file kept with the operation
//! (`DATA_DIR/operations/{tenant}/{id}.zip`), which DownloadTransferPackage serves in
//! ranges; destruction runs as an operation too.
//!
//! Why a file and not a streaming ZIP writer (data descriptors, no `Seek`): the readers
//! would take one (Python's zipfile, `unzip`, tools/verify_transfer.py and akte-xdomea's
//! reader go by the central directory; `akte_xdomea` tests it), but the stream's first
//! message announces the size and SHA-256 of the whole ZIP (`MessageInfo`), which are
//! known only once it is written, and a 0503 is kept to be downloaded again in ranges.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use akte_core::records::destruction::DestructionRecord;
use akte_core::records::{
    DisposalProcess, DisposalSettings, ListCode, ObjectKind, PartyIdentity, ProcessStage,
    TenantRecords,
};
use akte_core::xdomea;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert;
use crate::error::ApiError;
use crate::names;
use crate::operations::{pack, Operations, Progress, Verb};
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::disposal_service_server::DisposalService;
use crate::pb::google::longrunning as lro;
use crate::range::Range;
use crate::upload::MAX_CHUNK;

use super::{blocking, named, page_after, Api};

/// Largest archive message ReceiveMessage accepts.
pub use akte_api::limits::MAX_RECEIVED_MESSAGE;

const PROCESSES: &str = "disposalProcesses";
const RECORDS: &str = "destructionRecords";
const SETTINGS: &str = "disposalSettings";
const PACKAGES: &str = "transferPackages";

/// The stream of an xdomea ZIP.
pub type ZipStream = ReceiverStream<Result<pb::MessageChunk, Status>>;

/// A temporary file that is deleted when dropped.
pub(super) struct TempZip(pub(super) PathBuf);

impl Drop for TempZip {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!(path = %self.0.display(), "removing a temporary ZIP: {e}");
        }
    }
}

/// The parties are the tenant's disposal settings now; a request that still names them
/// is refused rather than silently ignored.
fn no_parties(field: &str, p: Option<&pb::Parties>) -> Result<(), ApiError> {
    match p {
        None => Ok(()),
        Some(_) => Err(ApiError::field(
            field,
            "is no longer used: every message names the agency and the archive of the \
             tenant's disposal settings (UpdateDisposalSettings, `akte disposal settings \
             set`); leave it unset",
        )),
    }
}

fn list_code(c: &ListCode) -> pb::ListCode {
    pb::ListCode {
        code: c.code.clone(),
        name: c.name.clone(),
        list_uri: c.list_uri.clone(),
        list_version_id: c.list_version.clone(),
    }
}

fn party_identity(p: &PartyIdentity) -> pb::PartyIdentity {
    pb::PartyIdentity {
        key: p.key.as_ref().map(list_code),
        prefix: p.prefix.as_ref().map(list_code),
        institution: p.institution.clone(),
        institution_short: p.institution_short.clone(),
    }
}

fn settings_message(tenant: &str, s: &DisposalSettings) -> pb::DisposalSettings {
    pb::DisposalSettings {
        name: format!("tenants/{tenant}/{SETTINGS}"),
        agency: Some(party_identity(&s.agency)),
        archive: Some(party_identity(&s.archive)),
    }
}

/// A code of the request; an empty one (no code) is no code.
fn parse_code(c: Option<&pb::ListCode>) -> Option<ListCode> {
    let c = c?;
    if c.code.is_empty()
        && c.name.is_empty()
        && c.list_uri.is_empty()
        && c.list_version_id.is_empty()
    {
        return None;
    }
    Some(ListCode {
        code: c.code.clone(),
        name: c.name.clone(),
        list_uri: c.list_uri.clone(),
        list_version: c.list_version_id.clone(),
    })
}

fn parse_identity(p: Option<&pb::PartyIdentity>) -> PartyIdentity {
    let Some(p) = p else {
        return PartyIdentity::default();
    };
    PartyIdentity {
        key: parse_code(p.key.as_ref()),
        prefix: parse_code(p.prefix.as_ref()),
        institution: p.institution.clone(),
        institution_short: p.institution_short.clone(),
    }
}

/// The tenant of `tenants/{tenant}/disposalSettings`.
fn settings_tenant(field: &str, name: &str) -> Result<String, ApiError> {
    name.strip_suffix(&format!("/{SETTINGS}"))
        .and_then(|t| names::tenant(field, t).ok())
        .ok_or_else(|| ApiError::InvalidName {
            field: field.into(),
            reason: format!("{name:?} is not tenants/{{tenant}}/{SETTINGS}"),
        })
}

/// The objects named in `files` (of `kinds`) in `tenant`, with their names. One of
/// another tenant is NOT_FOUND, as everywhere.
pub(super) fn objects_named(
    tenant: &str,
    files: &[String],
    kinds: &[ObjectKind],
) -> Result<Vec<(String, names::ObjectName)>, ApiError> {
    if files.is_empty() {
        return Err(ApiError::field("files", "name at least one file"));
    }
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let o = names::object_of(&format!("files[{i}]"), f, kinds)?;
        if o.tenant != tenant {
            return Err(ApiError::NotFound {
                resource: f.clone(),
            });
        }
        out.push((f.clone(), o));
    }
    Ok(out)
}

/// The ids of named objects, each checked to exist as the kind its name says (NOT_FOUND
/// with its name otherwise).
pub(super) fn existing(
    t: &TenantRecords,
    named: &[(String, names::ObjectName)],
) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::with_capacity(named.len());
    for (name, o) in named {
        super::get_kind(t, o.id, o.kind, name)?;
        ids.push(o.id);
    }
    Ok(ids)
}

fn stage(s: ProcessStage) -> i32 {
    use pb::ProcessStage as P;
    (match s {
        ProcessStage::Offered => P::Offered,
        ProcessStage::OfferReceived => P::OfferReceived,
        ProcessStage::Appraised => P::Appraised,
        ProcessStage::TransferSent => P::TransferSent,
        ProcessStage::TransferReceived => P::TransferReceived,
        ProcessStage::Confirmed => P::Confirmed,
    }) as i32
}

/// The message of a disposal process.
pub(crate) fn process(t: &TenantRecords, tenant: &str, p: &DisposalProcess) -> pb::DisposalProcess {
    let file = |id: &Uuid| names::object_name(tenant, ObjectKind::File, *id);
    let object = |id: &Uuid| names::object_name(tenant, t.kind_of(*id), *id);
    let tops: std::collections::HashSet<&Uuid> = p.files.iter().collect();
    pb::DisposalProcess {
        name: names::resource_name(tenant, PROCESSES, p.id),
        two_stage: p.two_stage,
        files: p.files.iter().map(file).collect(),
        stage: stage(p.stage),
        decisions: p
            .decisions
            .iter()
            .filter(|(f, _)| tops.contains(f))
            .map(|(f, d)| pb::FileDecision {
                file: file(f),
                decision: convert::disposal(*d),
            })
            .collect(),
        object_decisions: p
            .decisions
            .iter()
            .map(|(o, d)| pb::ObjectDecision {
                object: object(o),
                decision: convert::disposal(*d),
            })
            .collect(),
        import_results: p
            .results
            .iter()
            .map(|(o, r)| pb::ImportResult {
                object: object(o),
                file: file(&r.file),
                success: r.success,
                archive_id: r.archive_id.clone().unwrap_or_default(),
                errors: r.errors.clone(),
            })
            .collect(),
        sent_objects: u32::try_from(p.sent.len()).unwrap_or(u32::MAX),
        confirmations: p
            .confirmations
            .iter()
            .map(|(f, text)| pb::FileConfirmation {
                file: file(f),
                text: text.clone(),
            })
            .collect(),
        steps: p.steps.clone(),
    }
}

/// The message of a destruction record with its signed note.
pub(crate) fn record(
    t: &TenantRecords,
    tenant: &str,
    r: &DestructionRecord,
    note: &akte_core::note::SignedNote,
) -> pb::DestructionRecord {
    pb::DestructionRecord {
        name: names::resource_name(tenant, RECORDS, r.id),
        destroy_time: Some(convert::timestamp(&r.at)),
        actor: r.actor.clone(),
        authorised_by: r.authorised_by.clone(),
        legal_basis: r.legal_basis.clone(),
        files: r
            .files
            .iter()
            .map(|f| pb::DestroyedFile {
                file: names::object_name(tenant, ObjectKind::File, f.within.unwrap_or(f.file)),
                reference: f.reference.clone(),
                seq: f.seq,
                objects: u32::try_from(f.objects.len()).unwrap_or(u32::MAX),
                grounds: f.grounds.clone(),
                object: names::object_name(
                    tenant,
                    f.objects
                        .first()
                        .map_or_else(|| t.kind_of(f.file), |o| o.kind),
                    f.file,
                ),
            })
            .collect(),
        signed_note: String::from_utf8_lossy(&note.to_bytes()).into_owned(),
    }
}

/// Writes a ZIP with `produce` to a temporary file in `dir`, then streams it: the first
/// message names the process and the file, the others carry at most 1 MiB each.
async fn stream_zip<F>(
    dir: PathBuf,
    tenant: String,
    zip_name: fn(Uuid) -> String,
    produce: F,
) -> Result<Response<ZipStream>, Status>
where
    F: FnOnce(File) -> Result<(Uuid, File), ApiError> + Send + 'static,
{
    stream_zip_in(dir, tenant, PROCESSES, zip_name, produce).await
}

/// Writes a ZIP with `produce` into a temporary file and streams it: first its info (the
/// process, a resource of `collection`), then chunks.
pub(super) async fn stream_zip_in<F>(
    dir: PathBuf,
    tenant: String,
    collection: &'static str,
    zip_name: fn(Uuid) -> String,
    produce: F,
) -> Result<Response<ZipStream>, Status>
where
    F: FnOnce(File) -> Result<(Uuid, File), ApiError> + Send + 'static,
{
    let (process, temp, file, size, sha256) = blocking(move || {
        let tmp = temp_dir(&dir)?;
        let path = tmp.join(format!("disposal-{}.zip", Uuid::new_v4()));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ApiError::Internal(format!("creating {}: {e}", path.display())))?;
        let temp = TempZip(path);
        let (process, mut f) = produce(f)?;
        let (size, sha256) = digest_of(&mut f)?;
        Ok((process, temp, f, size, sha256))
    })
    .await?;
    let (tx, rx) = mpsc::channel(4);
    let first = pb::MessageChunk {
        message: Some(pb::message_chunk::Message::Info(pb::MessageInfo {
            process: names::resource_name(&tenant, collection, process),
            file_name: zip_name(process),
            size,
            sha256: convert::digest_bytes(&sha256),
        })),
    };
    if tx.send(Ok(first)).await.is_err() {
        return Err(ApiError::Internal("download channel closed".into()).into());
    }
    // Each chunk is read on a blocking thread, free again while the client takes it.
    tokio::spawn(async move {
        let _temp = temp;
        let mut file = file;
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            let read = tokio::task::spawn_blocking(move || {
                let n = read_full(&mut file, &mut buf);
                (file, buf, n)
            })
            .await;
            let n;
            (file, buf, n) = match read {
                Ok(r) => r,
                Err(e) => {
                    let e = ApiError::Internal(format!("ZIP worker failed: {e}"));
                    let _ = tx.send(Err(e.to_status())).await;
                    return;
                }
            };
            let msg = match n {
                Ok(0) => return,
                Ok(n) => Ok(pb::MessageChunk {
                    message: Some(pb::message_chunk::Message::Chunk(Bytes::copy_from_slice(
                        &buf[..n],
                    ))),
                }),
                Err(e) => Err(ApiError::Internal(format!("reading the ZIP: {e}")).to_status()),
            };
            let failed = msg.is_err();
            if tx.send(msg).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// Removes temporary disposal ZIPs left in `DATA_DIR/tmp` by an interrupted server.
pub fn remove_temporary_zips(data: &Path) {
    let Ok(items) = std::fs::read_dir(data.join("tmp")) else {
        return;
    };
    for item in items.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with("disposal-") && name.ends_with(".zip") {
            if let Err(e) = std::fs::remove_file(item.path()) {
                tracing::warn!(path = %item.path().display(), "removing a temporary ZIP: {e}");
            }
        }
    }
}

pub(super) fn temp_dir(data: &Path) -> Result<PathBuf, ApiError> {
    let tmp = data.join("tmp");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", tmp.display())))?;
    Ok(tmp)
}

/// Size and SHA-256 of a ZIP just written; leaves the file at its start.
fn digest_of(f: &mut File) -> Result<(u64, akte_core::Digest), ApiError> {
    use sha2::Digest as _;
    let fail = |e: std::io::Error| ApiError::Internal(format!("reading the ZIP back: {e}"));
    f.seek(SeekFrom::Start(0)).map_err(fail)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
    }
    f.seek(SeekFrom::Start(0)).map_err(fail)?;
    let digest: [u8; 32] = hasher.finalize().into();
    Ok((size, akte_core::Digest(digest)))
}

/// The output of a transfer operation: counts what is written and stops the core's writer
/// when the operation is cancelled (the transfer is then not recorded).
struct Counted {
    file: File,
    progress: Progress,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.progress.cancelled() {
            return Err(std::io::Error::other("the operation was cancelled"));
        }
        let n = self.file.write(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Counted {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Writes a transfer package with `produce` as operation `progress` and describes it.
/// On a shared installation the package is stored in the tenant's content store instead,
/// pinned until the operation expires, so that any instance serves its download.
fn write_package<F>(
    ops: &Operations,
    records: &akte_core::records::Records,
    tenant: &str,
    progress: &Progress,
    produce: F,
) -> Result<pb::TransferPackage, ApiError>
where
    F: FnOnce(Counted) -> Result<(Uuid, Counted), ApiError>,
{
    let path = ops.package_path(tenant, progress.id());
    if let Some(dir) = path.parent() {
        akte_core::embedded::fsutil::create_dir_all_durable(dir)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", path.display())))?;
    progress.total(0, "bytes");
    progress.message("writing the 0503 transfer package");
    let written = produce(Counted {
        file,
        progress: progress.clone(),
    })
    .and_then(|(process, out)| {
        let mut f = out.file;
        f.sync_all()
            .map_err(|e| ApiError::Internal(format!("flushing {}: {e}", path.display())))?;
        progress.message("computing the package's SHA-256");
        let (size, sha256) = digest_of(&mut f)?;
        Ok((process, size, sha256))
    });
    let expire_time = chrono::Utc::now() + crate::operations::KEEP_FINISHED;
    let written = written.and_then(|(process, size, sha256)| {
        if ops.is_shared() {
            progress.message("storing the package for every instance");
            share_package(
                records,
                tenant,
                progress.id(),
                &path,
                sha256,
                size,
                expire_time,
            )?;
        }
        Ok((process, size, sha256))
    });
    let (process, size, sha256) = match written {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(if progress.cancelled() {
                ApiError::OperationCancelled
            } else {
                e
            });
        }
    };
    if ops.is_shared() {
        // Served from the content store by every instance; the local copy is not needed.
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), "removing a shared package's local copy: {e}");
        }
    } else {
        progress.attach(path);
    }
    progress.set(size);
    Ok(pb::TransferPackage {
        name: names::resource_name(tenant, PACKAGES, progress.id()),
        process: names::resource_name(tenant, PROCESSES, process),
        file_name: xdomea::transfer_zip_name(process),
        size,
        sha256: convert::digest_bytes(&sha256),
        expire_time: Some(convert::timestamp(&expire_time)),
    })
}

/// Name of the pin that keeps a transfer package's content (see akte_core::content_gc).
fn package_pin(id: Uuid) -> String {
    format!("transfer-{id}")
}

/// Stores the package at `path` in the tenant's content store, pinned until `until`
/// (pinned first, so that no collection can take it between the two).
fn share_package(
    records: &akte_core::records::Records,
    tenant: &str,
    id: Uuid,
    path: &Path,
    sha256: akte_core::Digest,
    size: u64,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let t = records.tenant(tenant)?;
    let store_err =
        |e: akte_core::store::StoreError| ApiError::from(akte_core::records::RecordsError::from(e));
    akte_core::content_gc::pin(t.tenant(), &package_pin(id), &sha256, until).map_err(store_err)?;
    let mut file = File::open(path)
        .map_err(|e| ApiError::Internal(format!("opening {}: {e}", path.display())))?;
    t.tenant()
        .content()
        .put(&mut file, Some(sha256), Some(size))?;
    Ok(())
}

/// The stored package of a shared installation, from `offset` on.
fn shared_package(
    records: &akte_core::records::Records,
    tenant: &str,
    sha256: akte_core::Digest,
    offset: u64,
) -> Result<Box<dyn Read + Send>, ApiError> {
    let t = records.tenant(tenant)?;
    let mut reader = t.tenant().content().get(&sha256)?;
    // Content is read from its start; what lies before the offset is read and dropped.
    std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())
        .map_err(|e| ApiError::Internal(format!("reading the package: {e}")))?;
    Ok(Box::new(reader))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Api {
    pub(super) fn data_dir(&self) -> PathBuf {
        self.state().scratch_dir.clone()
    }

    /// Starts a transfer operation of `tenant` whose work writes the package with
    /// `produce`.
    async fn start_transfer<F>(
        &self,
        tenant: &str,
        target: String,
        actor: String,
        produce: F,
    ) -> Result<lro::Operation, ApiError>
    where
        F: FnOnce(Counted) -> Result<(Uuid, Counted), ApiError> + Send + 'static,
    {
        let ops = self.state().operations.clone();
        let (tn, ops_w) = (tenant.to_owned(), ops.clone());
        let records = self.state().records.clone();
        ops.start(tenant, Verb::Transfer, target, &actor, move |progress| {
            let package = write_package(&ops_w, &records, &tn, progress, produce)?;
            Ok(pack("akte.v1.TransferPackage", &package))
        })
        .await
    }
}

#[tonic::async_trait]
impl DisposalService for Api {
    type OfferStream = ZipStream;

    async fn offer(&self, req: Request<pb::OfferRequest>) -> Result<Response<ZipStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let files = objects_named(&tenant, &r.files, &[ObjectKind::File])?;
        no_parties("parties", r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        stream_zip(
            self.data_dir(),
            tenant,
            xdomea::offer_zip_name,
            move |out| {
                let ids = existing(&t, &files)?;
                Ok(t.offer(&actor, &ids, out)?)
            },
        )
        .await
    }

    async fn receive_message(
        &self,
        req: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<pb::ReceiveMessageResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        if r.message.is_empty() {
            return Err(ApiError::field("message", "is required").into());
        }
        if r.message.len() > MAX_RECEIVED_MESSAGE {
            return Err(ApiError::field(
                "message",
                format!(
                    "is {} bytes; at most {MAX_RECEIVED_MESSAGE} are accepted",
                    r.message.len()
                ),
            )
            .into());
        }
        no_parties("parties", r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Archive)?;
        let actor = caller.actor().to_owned();
        let out = blocking(move || {
            let received = t.receive_message(&actor, &r.message)?;
            let receipt = received
                .receipt
                .unwrap_or_else(|| akte_core::records::OutgoingMessage {
                    file_name: String::new(),
                    zip: Vec::new(),
                    xml: Vec::new(),
                });
            Ok(pb::ReceiveMessageResponse {
                message_type: received.message.code().to_owned(),
                process: Some(process(&t, &tenant, &received.process)),
                receipt: Bytes::from(receipt.xml),
                receipt_zip: Bytes::from(receipt.zip),
                receipt_file_name: receipt.file_name,
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn transfer(
        &self,
        req: Request<pb::TransferRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (tenant, id) = names::resource("name", &r.name, PROCESSES)?;
        no_parties("parties", r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.name, Operation::KeepFiles)?;
        let (tc, name) = (t.clone(), r.name.clone());
        blocking(move || tc.disposal_process(id).map_err(named(&name))).await?;
        let actor = caller.actor().to_owned();
        let resend = r.resend;
        let op = self
            .start_transfer(&tenant, r.name, actor.clone(), move |out| {
                let out = if resend {
                    t.resend_transfer(&actor, id, out)?
                } else {
                    t.transfer(&actor, id, out)?
                };
                Ok((id, out))
            })
            .await?;
        Ok(Response::new(op))
    }

    async fn transfer_two_stage(
        &self,
        req: Request<pb::TransferTwoStageRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let files = objects_named(&tenant, &r.files, &[ObjectKind::File])?;
        no_parties("parties", r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let (tc, fc) = (t.clone(), files.clone());
        let ids = blocking(move || existing(&tc, &fc)).await?;
        let actor = caller.actor().to_owned();
        let op = self
            .start_transfer(&tenant, r.parent, actor.clone(), move |out| {
                Ok(t.transfer_two_stage(&actor, &ids, out)?)
            })
            .await?;
        Ok(Response::new(op))
    }

    type DownloadTransferPackageStream = ZipStream;

    async fn download_transfer_package(
        &self,
        req: Request<pb::DownloadTransferPackageRequest>,
    ) -> Result<Response<ZipStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (tenant, id) = names::resource("name", &r.name, PACKAGES)?;
        self.tenant(&caller, &tenant, &r.name, Operation::KeepFiles)?;
        let not_found = || ApiError::NotFound {
            resource: r.name.clone(),
        };
        let ops = self.state().operations.clone();
        let t = tenant.clone();
        let entry = blocking(move || ops.get(&t, id))
            .await?
            .filter(|e| e.verb() == Verb::Transfer)
            .ok_or_else(not_found)?;
        let package = match entry.to_pb().result {
            Some(lro::operation::Result::Response(any)) => {
                <pb::TransferPackage as prost::Message>::decode(any.value.as_slice())
                    .map_err(|e| ApiError::Internal(format!("stored transfer package: {e}")))?
            }
            _ => return Err(not_found().into()),
        };
        let (offset, length) = (r.offset, r.length);
        if offset > package.size {
            return Err(ApiError::InvalidRange {
                offset,
                size: package.size,
            }
            .into());
        }
        // The file this instance wrote, or (shared installation, written by any instance)
        // the package in the tenant's content store.
        let local = entry.attachment().filter(|p| p.exists());
        let shared = self.state().operations.is_shared();
        let records = self.state().records.clone();
        let name = r.name.clone();
        let sha256 = akte_core::Digest::from_slice(&package.sha256)
            .ok_or_else(|| ApiError::Internal("stored transfer package: no SHA-256".into()))?;
        let file: Box<dyn Read + Send> = blocking(move || match local {
            Some(path) => {
                let mut f = File::open(&path)
                    .map_err(|e| ApiError::Internal(format!("opening {}: {e}", path.display())))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| ApiError::Internal(format!("reading {}: {e}", path.display())))?;
                Ok(Box::new(f) as Box<dyn Read + Send>)
            }
            None if shared => shared_package(&records, &tenant, sha256, offset),
            None => Err(ApiError::NotFound { resource: name }),
        })
        .await?;
        let (tx, rx) = mpsc::channel(4);
        let first = pb::MessageChunk {
            message: Some(pb::message_chunk::Message::Info(pb::MessageInfo {
                process: package.process.clone(),
                file_name: package.file_name.clone(),
                size: package.size,
                sha256: package.sha256.clone(),
            })),
        };
        if tx.send(Ok(first)).await.is_err() {
            return Err(ApiError::Internal("download channel closed".into()).into());
        }
        let mut left = Range::len_of(offset, length, package.size);
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut buf = vec![0u8; MAX_CHUNK];
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let msg = match read_full(&mut file, &mut buf[..want]) {
                    Ok(0) => Err(ApiError::Internal(
                        "the transfer package is shorter than recorded".into(),
                    )
                    .to_status()),
                    Ok(n) => {
                        left -= n as u64;
                        Ok(pb::MessageChunk {
                            message: Some(pb::message_chunk::Message::Chunk(
                                Bytes::copy_from_slice(&buf[..n]),
                            )),
                        })
                    }
                    Err(e) => {
                        Err(ApiError::Internal(format!("reading the package: {e}")).to_status())
                    }
                };
                let failed = msg.is_err();
                if tx.blocking_send(msg).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_process(
        &self,
        req: Request<pb::GetProcessRequest>,
    ) -> Result<Response<pb::DisposalProcess>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, PROCESSES)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let out = blocking(move || {
            let p = t.disposal_process(id).map_err(named(&name))?;
            Ok(process(&t, &tenant, &p))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn destroy(
        &self,
        req: Request<pb::DestroyRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let objects = objects_named(&tenant, &r.files, &[ObjectKind::File, ObjectKind::Case])?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let tc = t.clone();
        let ids = blocking(move || existing(&tc, &objects)).await?;
        let actor = caller.actor().to_owned();
        let tn = tenant.clone();
        let op = self
            .state()
            .operations
            .start(
                &tn,
                Verb::Destroy,
                r.parent,
                &actor.clone(),
                move |progress| {
                    progress.total(ids.len() as u64, "objects");
                    progress.message(format!("destroying {} objects", ids.len()));
                    let (rec, note) = t.destroy(&actor, &ids, &r.legal_basis, &r.authorised_by)?;
                    progress.set(ids.len() as u64);
                    Ok(pack(
                        "akte.v1.DestructionRecord",
                        &record(&t, &tenant, &rec, &note),
                    ))
                },
            )
            .await?;
        Ok(Response::new(op))
    }

    async fn get_destruction_record(
        &self,
        req: Request<pb::GetDestructionRecordRequest>,
    ) -> Result<Response<pb::DestructionRecord>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, RECORDS)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let out = blocking(move || {
            let (rec, note) = t.destruction_record(id).map_err(named(&name))?;
            Ok(record(&t, &tenant, &rec, &note))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn list_destruction_records(
        &self,
        req: Request<pb::ListDestructionRecordsRequest>,
    ) -> Result<Response<pb::ListDestructionRecordsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListDestructionRecords", &[&r.parent]);
        let after = self.state().page_tokens.open(&scope, &r.page_token)?;
        let after = match after.len() {
            0 => None,
            _ => Some(Uuid::from_slice(&after).map_err(|_| ApiError::InvalidPageToken)?),
        };
        let size = convert::page_len(r.page_size)?;
        let (records, next) = blocking(move || {
            let ids = t.list_destruction_records()?;
            let (page, next) = page_after(&ids, |id| *id, after.as_ref(), size);
            let records = page
                .into_iter()
                .map(|id| {
                    let (rec, note) = t.destruction_record(*id)?;
                    Ok(record(&t, &tenant, &rec, &note))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok((records, next))
        })
        .await?;
        Ok(Response::new(pb::ListDestructionRecordsResponse {
            destruction_records: records,
            next_page_token: self.state().page_tokens.seal(
                &scope,
                next.map(|id| id.as_bytes().to_vec())
                    .unwrap_or_default()
                    .as_slice(),
            ),
        }))
    }

    async fn get_disposal_settings(
        &self,
        req: Request<pb::GetDisposalSettingsRequest>,
    ) -> Result<Response<pb::DisposalSettings>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let tenant = settings_tenant("name", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let settings = blocking(move || Ok(t.disposal_settings()?)).await?;
        Ok(Response::new(settings_message(&tenant, &settings)))
    }

    async fn update_disposal_settings(
        &self,
        req: Request<pb::UpdateDisposalSettingsRequest>,
    ) -> Result<Response<pb::DisposalSettings>, Status> {
        let caller = self.caller(&req)?;
        let s = req
            .into_inner()
            .settings
            .ok_or_else(|| ApiError::field("settings", "is required"))?;
        let tenant = settings_tenant("settings.name", &s.name)?;
        let t = self.tenant(&caller, &tenant, &s.name, Operation::Administer)?;
        let actor = caller.actor().to_owned();
        let new = DisposalSettings {
            agency: parse_identity(s.agency.as_ref()),
            archive: parse_identity(s.archive.as_ref()),
        };
        let stored = blocking(move || Ok(t.set_disposal_settings(&actor, &new)?)).await?;
        Ok(Response::new(settings_message(&tenant, &stored)))
    }
}
