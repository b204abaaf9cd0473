//! DisposalService: the xdomea disposal flow (offer, the archive's messages, transfer) and
//! destruction. The ZIPs the core writes need `Write + Seek`; they are written to a
//! temporary file under `DATA_DIR/tmp`, streamed out in chunks of at most 1 MiB and
//! deleted when the stream ends (or the client goes away).

use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use akte_core::records::destruction::DestructionRecord;
use akte_core::records::{DisposalProcess, ObjectKind, Parties, ProcessStage, TenantRecords};
use akte_core::xdomea::{self, MessageType, Party};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::{ARCHIVE, READ, REGISTRAR_WRITE};
use crate::convert;
use crate::error::ApiError;
use crate::names;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::disposal_service_server::DisposalService;
use crate::upload::MAX_CHUNK;

use super::{blocking, named, Api};

/// Largest archive message ReceiveMessage accepts.
pub const MAX_RECEIVED_MESSAGE: usize = 16 << 20;

const PROCESSES: &str = "disposalProcesses";
const RECORDS: &str = "destructionRecords";

/// The stream of an xdomea ZIP.
pub type ZipStream = ReceiverStream<Result<pb::MessageChunk, Status>>;

/// A temporary file that is deleted when dropped.
struct TempZip(PathBuf);

impl Drop for TempZip {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!(path = %self.0.display(), "removing a temporary ZIP: {e}");
        }
    }
}

fn party(field: &str, p: Option<&pb::Party>) -> Result<Party, ApiError> {
    let p = p.ok_or_else(|| ApiError::field(field, "is required"))?;
    if p.agency_code.trim().is_empty() || p.agency_name.trim().is_empty() {
        return Err(ApiError::field(
            field,
            "agency_code and agency_name are required",
        ));
    }
    Ok(Party {
        agency_code: Some(p.agency_code.clone()),
        agency_name: Some(p.agency_name.clone()),
        institution: (!p.institution.is_empty()).then(|| p.institution.clone()),
        ..Party::default()
    })
}

fn parties(p: Option<&pb::Parties>) -> Result<Parties, ApiError> {
    let p = p.ok_or_else(|| ApiError::field("parties", "is required"))?;
    Ok(Parties {
        agency: party("parties.agency", p.agency.as_ref())?,
        archive: party("parties.archive", p.archive.as_ref())?,
    })
}

/// The ids of named top-level files of `tenant`.
fn file_ids(tenant: &str, files: &[String]) -> Result<Vec<Uuid>, ApiError> {
    if files.is_empty() {
        return Err(ApiError::field("files", "name at least one file"));
    }
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let field = format!("files[{i}]");
        let o = names::object_of(&field, f, &[ObjectKind::File])?;
        if o.tenant != tenant {
            return Err(ApiError::field(field, "is in another tenant than parent"));
        }
        out.push(o.id);
    }
    Ok(out)
}

/// Checks that every id is a file of the tenant (NOT_FOUND with its name otherwise).
fn check_files(t: &TenantRecords, tenant: &str, ids: &[Uuid]) -> Result<(), ApiError> {
    for id in ids {
        let name = names::object_name(tenant, ObjectKind::File, *id);
        super::get_kind(t, *id, ObjectKind::File, &name)?;
    }
    Ok(())
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
pub(crate) fn process(tenant: &str, p: &DisposalProcess) -> pb::DisposalProcess {
    let file = |id: &Uuid| names::object_name(tenant, ObjectKind::File, *id);
    pb::DisposalProcess {
        name: names::resource_name(tenant, PROCESSES, p.id),
        two_stage: p.two_stage,
        files: p.files.iter().map(file).collect(),
        stage: stage(p.stage),
        decisions: p
            .decisions
            .iter()
            .map(|(f, d)| pb::FileDecision {
                file: file(f),
                decision: convert::disposal(*d),
            })
            .collect(),
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
                file: names::object_name(tenant, ObjectKind::File, f.file),
                reference: f.reference.clone(),
                seq: f.seq,
                objects: u32::try_from(f.objects.len()).unwrap_or(u32::MAX),
                grounds: f.grounds.clone(),
            })
            .collect(),
        signed_note: String::from_utf8_lossy(&note.to_bytes()).into_owned(),
    }
}

/// The XML of a received message (given as ZIP or XML) and its type.
fn message_xml(bytes: &[u8]) -> Result<(MessageType, Vec<u8>), ApiError> {
    let invalid = |reason: String| ApiError::field("message", reason);
    let xml = if bytes.starts_with(b"PK\x03\x04") {
        let mut found = None;
        for t in [
            MessageType::Appraisal,
            MessageType::OfferReceipt,
            MessageType::ImportConfirmation,
            MessageType::TransferReceipt,
        ] {
            if let Ok(xml) =
                xdomea::read_message_zip(Cursor::new(bytes), t, MAX_RECEIVED_MESSAGE as u64)
            {
                found = Some(xml);
                break;
            }
        }
        found.ok_or_else(|| invalid("the ZIP holds no 0502, 0504, 0506 or 0507 message".into()))?
    } else {
        bytes.to_vec()
    };
    let (t, _) = xdomea::identify(&xml).map_err(|e| invalid(e.to_string()))?;
    Ok((t, xml))
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
    let (process, temp, file, size) = blocking(move || {
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
        let size = f
            .seek(SeekFrom::End(0))
            .and_then(|n| f.seek(SeekFrom::Start(0)).map(|_| n))
            .map_err(|e| ApiError::Internal(format!("reading the ZIP back: {e}")))?;
        Ok((process, temp, f, size))
    })
    .await?;
    let (tx, rx) = mpsc::channel(4);
    let first = pb::MessageChunk {
        message: Some(pb::message_chunk::Message::Info(pb::MessageInfo {
            process: names::resource_name(&tenant, PROCESSES, process),
            file_name: zip_name(process),
            size,
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

fn temp_dir(data: &Path) -> Result<PathBuf, ApiError> {
    let tmp = data.join("tmp");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", tmp.display())))?;
    Ok(tmp)
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
    fn data_dir(&self) -> PathBuf {
        self.state().records.store().dir().to_path_buf()
    }
}

#[tonic::async_trait]
impl DisposalService for Api {
    type OfferStream = ZipStream;
    type TransferStream = ZipStream;
    type TransferTwoStageStream = ZipStream;

    async fn offer(&self, req: Request<pb::OfferRequest>) -> Result<Response<ZipStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let files = file_ids(&tenant, &r.files)?;
        let parties = parties(r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, REGISTRAR_WRITE)?;
        let actor = caller.actor().to_owned();
        let name = tenant.clone();
        stream_zip(
            self.data_dir(),
            tenant,
            xdomea::offer_zip_name,
            move |out| {
                check_files(&t, &name, &files)?;
                Ok(t.offer(&actor, &files, &parties, out)?)
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
                format!("{} bytes; at most {MAX_RECEIVED_MESSAGE}", r.message.len()),
            )
            .into());
        }
        let t = self.tenant(&caller, &tenant, &r.parent, ARCHIVE)?;
        let actor = caller.actor().to_owned();
        let out_tenant = tenant.clone();
        let (kind, p, receipt) = blocking(move || {
            let (kind, xml) = message_xml(&r.message)?;
            let (p, receipt) = match kind {
                MessageType::Appraisal => {
                    let parties = parties(r.parties.as_ref())?;
                    t.receive_appraisal(&actor, &xml, &parties)?
                }
                MessageType::OfferReceipt => (t.receive_offer_receipt(&actor, &xml)?, Vec::new()),
                MessageType::TransferReceipt => {
                    (t.receive_transfer_receipt(&actor, &xml)?, Vec::new())
                }
                MessageType::ImportConfirmation => {
                    (t.receive_import_confirmation(&actor, &xml)?, Vec::new())
                }
                other => {
                    return Err(ApiError::field(
                        "message",
                        format!(
                        "is a {} ({}), which the agency writes; expected 0502, 0504, 0506 or 0507",
                        other.code(),
                        other.element_name()
                    ),
                    ))
                }
            };
            Ok((kind, p, receipt))
        })
        .await?;
        Ok(Response::new(pb::ReceiveMessageResponse {
            message_type: kind.code().to_owned(),
            process: Some(process(&out_tenant, &p)),
            receipt: Bytes::from(receipt),
        }))
    }

    async fn transfer(
        &self,
        req: Request<pb::TransferRequest>,
    ) -> Result<Response<ZipStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (tenant, id) = names::resource("process", &r.process, PROCESSES)?;
        let parties = parties(r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.process, REGISTRAR_WRITE)?;
        let actor = caller.actor().to_owned();
        let (name, resend) = (r.process, r.resend);
        stream_zip(
            self.data_dir(),
            tenant,
            xdomea::transfer_zip_name,
            move |out| {
                t.disposal_process(id).map_err(named(&name))?;
                let out = if resend {
                    t.resend_transfer(&actor, id, &parties, out)?
                } else {
                    t.transfer(&actor, id, &parties, out)?
                };
                Ok((id, out))
            },
        )
        .await
    }

    async fn transfer_two_stage(
        &self,
        req: Request<pb::TransferTwoStageRequest>,
    ) -> Result<Response<ZipStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let files = file_ids(&tenant, &r.files)?;
        let parties = parties(r.parties.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, REGISTRAR_WRITE)?;
        let actor = caller.actor().to_owned();
        let name = tenant.clone();
        stream_zip(
            self.data_dir(),
            tenant,
            xdomea::transfer_zip_name,
            move |out| {
                check_files(&t, &name, &files)?;
                Ok(t.transfer_two_stage(&actor, &files, &parties, out)?)
            },
        )
        .await
    }

    async fn get_process(
        &self,
        req: Request<pb::GetProcessRequest>,
    ) -> Result<Response<pb::DisposalProcess>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, PROCESSES)?;
        let t = self.tenant(&caller, &tenant, &name, READ)?;
        let p = blocking(move || t.disposal_process(id).map_err(named(&name))).await?;
        Ok(Response::new(process(&tenant, &p)))
    }

    async fn destroy(
        &self,
        req: Request<pb::DestroyRequest>,
    ) -> Result<Response<pb::DestructionRecord>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let files = file_ids(&tenant, &r.files)?;
        let t = self.tenant(&caller, &tenant, &r.parent, REGISTRAR_WRITE)?;
        let actor = caller.actor().to_owned();
        let name = tenant.clone();
        let out = blocking(move || {
            check_files(&t, &name, &files)?;
            let (rec, note) = t.destroy(&actor, &files, &r.legal_basis, &r.authorised_by)?;
            Ok(record(&name, &rec, &note))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn get_destruction_record(
        &self,
        req: Request<pb::GetDestructionRecordRequest>,
    ) -> Result<Response<pb::DestructionRecord>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, RECORDS)?;
        let t = self.tenant(&caller, &tenant, &name, READ)?;
        let out = blocking(move || {
            let (rec, note) = t.destruction_record(id).map_err(named(&name))?;
            Ok(record(&tenant, &rec, &note))
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
        let t = self.tenant(&caller, &tenant, &r.parent, READ)?;
        let ids = blocking(move || Ok(t.list_destruction_records()?)).await?;
        Ok(Response::new(pb::ListDestructionRecordsResponse {
            records: ids
                .iter()
                .map(|id| names::resource_name(&tenant, RECORDS, *id))
                .collect(),
        }))
    }
}
