//! MigrationService: taking over packages (0401, legacy 0503) as an operation, handing
//! files over (0401 out, 0402/0403 in), the file plan exchange (0301/0302) and re-filing.
//!
//! ImportPackage receives the ZIP into a temporary file under `DATA_DIR/tmp` (bounded
//! memory whatever its size) and then imports it on the blocking pool as an operation
//! whose progress counts objects; the file is removed when the operation ends.

use std::collections::BTreeMap;
use std::io::Cursor;

use tokio::io::AsyncWriteExt;

use akte_core::records::{
    HandoverProcess, ImportReport, ItemStatus, ObjectKind, PackageImport, PackageOptions,
    TenantRecords,
};
use akte_core::xdomea::{self, MessageType, Party};
use bytes::Bytes;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::{self, parse_etag};
use crate::error::ApiError;
use crate::names;
use crate::operations::{pack, Verb};
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::migration_service_server::MigrationService;
use crate::pb::google::longrunning as lro;

use super::disposal::{
    existing, objects_named, stream_zip_in, temp_dir, TempZip, ZipStream, MAX_RECEIVED_MESSAGE,
};
use super::{blocking, named, reason, Api};

const HANDOVERS: &str = "handoverProcesses";

/// Largest package ImportPackage takes.
pub const MAX_PACKAGE_BYTES: u64 = 1 << 40;

fn party(field: &str, a: Option<&pb::Agency>) -> Result<Option<Party>, ApiError> {
    let Some(a) = a else {
        return Ok(None);
    };
    if a.code.is_empty() && a.institution.is_empty() {
        return Err(ApiError::field(field, "needs a code or an institution"));
    }
    if !a.name.is_empty() && a.code.is_empty() {
        return Err(ApiError::field(field, "a name needs its code"));
    }
    Ok(Some(Party {
        agency_code: (!a.code.is_empty()).then(|| a.code.clone()),
        agency_name: (!a.name.is_empty()).then(|| a.name.clone()),
        institution: (!a.institution.is_empty()).then(|| a.institution.clone()),
        ..Party::default()
    }))
}

/// The sender: as given, else the agency of the tenant's disposal settings.
fn sender(t: &TenantRecords, given: Option<Party>) -> Result<Party, ApiError> {
    if let Some(p) = given {
        return Ok(p);
    }
    let agency = t.disposal_settings()?.agency;
    if agency.key.is_none() && agency.institution.is_empty() {
        return Err(ApiError::field(
            "sender",
            "is required while the tenant's disposal settings name no agency",
        ));
    }
    Ok(agency.party())
}

fn message_bytes(field: &str, b: &[u8]) -> Result<(), ApiError> {
    if b.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    if b.len() > MAX_RECEIVED_MESSAGE {
        return Err(ApiError::field(
            field,
            format!(
                "is {} bytes; at most {MAX_RECEIVED_MESSAGE} are accepted",
                b.len()
            ),
        ));
    }
    Ok(())
}

fn process_message(tenant: &str, p: &HandoverProcess) -> pb::HandoverProcess {
    pb::HandoverProcess {
        name: names::resource_name(tenant, HANDOVERS, p.id),
        receiver: p.receiver.clone(),
        files: p
            .files
            .iter()
            .map(|f| names::object_name(tenant, ObjectKind::File, *f))
            .collect(),
        sent_date: convert::date(Some(p.sent_on)),
        message_sha256: convert::digest_bytes(&p.message_digest),
        receipt_date: convert::date(p.receipt_on),
        confirmed_date: convert::date(p.confirmed_on),
        failed: p
            .failed
            .iter()
            .map(|(id, reasons)| pb::HandoverFailure {
                object_id: id.to_string(),
                reasons: reasons.clone(),
            })
            .collect(),
    }
}

fn report_items(tenant: &str, r: &ImportReport) -> Vec<pb::ImportItemReport> {
    r.items
        .iter()
        .map(|i| pb::ImportItemReport {
            source_id: i.source_id.clone(),
            kind: i.kind.name().to_owned(),
            status: match i.status {
                ItemStatus::Imported => "imported",
                ItemStatus::AlreadyImported => "already_imported",
                ItemStatus::Failed => "failed",
            }
            .to_owned(),
            object: i
                .id
                .map(|id| names::object_name(tenant, i.kind, id))
                .unwrap_or_default(),
            rule: i.rule.clone().unwrap_or_default(),
            error: i.error.clone().unwrap_or_default(),
            warnings: i.warnings.clone(),
        })
        .collect()
}

fn result_message(tenant: &str, p: &PackageImport) -> Result<pb::ImportPackageResult, ApiError> {
    let receipt = p.receipt_zip()?;
    let handover = p.message == MessageType::Handover;
    let confirmation = if handover && !p.results.is_empty() {
        p.confirmation_zip()?
    } else {
        Vec::new()
    };
    Ok(pb::ImportPackageResult {
        message_type: p.message.code().to_owned(),
        process_id: p.header.process_id.to_string(),
        sha256: convert::digest_bytes(&p.digest),
        source_system: p.source_system.clone(),
        imported: p.report.imported,
        already_imported: p.report.already_imported,
        failed: p.report.failed,
        warned: p.report.warned,
        items: report_items(tenant, &p.report),
        receipt_zip: Bytes::from(receipt),
        receipt_file_name: xdomea::message_zip_name(
            p.header.process_id,
            MessageType::HandoverReceipt,
        ),
        confirmation_file_name: if confirmation.is_empty() {
            String::new()
        } else {
            xdomea::message_zip_name(p.header.process_id, MessageType::HandoverImportConfirmation)
        },
        confirmation_zip: Bytes::from(confirmation),
    })
}

/// `target` of a refile: a file or case of the same tenant.
fn target_of(tenant: &str, field: &str, name: &str) -> Result<Uuid, ApiError> {
    let o = names::object_of(field, name, &[ObjectKind::File, ObjectKind::Case])?;
    if o.tenant != tenant {
        return Err(ApiError::NotFound {
            resource: name.to_owned(),
        });
    }
    Ok(o.id)
}

fn required_etag(etag: &str) -> Result<u64, ApiError> {
    parse_etag("etag", etag)?.ok_or_else(|| {
        ApiError::field(
            "etag",
            "is required: re-filing is done against the revision the caller saw",
        )
    })
}

#[tonic::async_trait]
impl MigrationService for Api {
    async fn import_package(
        &self,
        req: Request<Streaming<pb::ImportPackageRequest>>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            ApiError::field("options", "the first message must carry the options")
        })?;
        let Some(pb::import_package_request::Message::Options(o)) = first.message else {
            return Err(
                ApiError::field("options", "the first message must carry the options").into(),
            );
        };
        let tenant = names::tenant("options.parent", &o.parent)?;
        let plan_unit = if o.plan_unit.is_empty() {
            None
        } else {
            let u = names::object_of("options.plan_unit", &o.plan_unit, &[ObjectKind::PlanUnit])?;
            if u.tenant != tenant {
                return Err(ApiError::NotFound {
                    resource: o.plan_unit.clone(),
                }
                .into());
            }
            Some(u.id)
        };
        let t = self.tenant(&caller, &tenant, &o.parent, Operation::KeepFiles)?;
        let options = PackageOptions {
            plan_unit,
            create_plan_units: o.create_plan_units,
            source_system: (!o.source_system.is_empty()).then(|| o.source_system.clone()),
            ..PackageOptions::default()
        };
        // The ZIP goes to a temporary file as it arrives.
        let dir = temp_dir(&self.data_dir())?;
        let path = dir.join(format!("import-{}.zip", Uuid::new_v4()));
        let temp = TempZip(path.clone());
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| ApiError::Internal(format!("creating {}: {e}", path.display())))?;
        let mut total: u64 = 0;
        while let Some(m) = stream.message().await? {
            match m.message {
                Some(pb::import_package_request::Message::Chunk(b)) => {
                    total += b.len() as u64;
                    if total > MAX_PACKAGE_BYTES {
                        return Err(ApiError::field(
                            "chunk",
                            format!("the package is larger than {MAX_PACKAGE_BYTES} bytes"),
                        )
                        .into());
                    }
                    file.write_all(&b).await.map_err(|e| {
                        ApiError::Internal(format!("writing {}: {e}", path.display()))
                    })?;
                }
                _ => {
                    return Err(ApiError::field(
                        "options",
                        "only the first message carries options; the others carry chunks",
                    )
                    .into())
                }
            }
        }
        if total == 0 {
            return Err(ApiError::field("chunk", "the package is empty").into());
        }
        file.sync_all()
            .await
            .map_err(|e| ApiError::Internal(format!("writing {}: {e}", path.display())))?;
        drop(file);
        let actor = caller.actor().to_owned();
        let ops = self.state().operations.clone();
        let (tn, who) = (tenant.clone(), actor.clone());
        let op = ops
            .start(
                &tn,
                Verb::ImportPackage,
                o.parent.clone(),
                &who,
                move |progress| {
                    let _temp = temp;
                    let f = std::fs::File::open(&path).map_err(|e| {
                        ApiError::Internal(format!("opening {}: {e}", path.display()))
                    })?;
                    progress.total(0, "objects");
                    progress.message("importing");
                    let done = t.import_package(&actor, f, &options, &mut |r| {
                        progress.set(r.processed());
                    })?;
                    progress.message(format!(
                        "{} imported, {} imported before, {} refused",
                        done.report.imported, done.report.already_imported, done.report.failed
                    ));
                    let result = result_message(&tenant, &done)?;
                    Ok(pack("akte.v1.ImportPackageResult", &result))
                },
            )
            .await?;
        Ok(Response::new(op))
    }

    type ExportHandoverStream = ZipStream;

    async fn export_handover(
        &self,
        req: Request<pb::ExportHandoverRequest>,
    ) -> Result<Response<ZipStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let files = objects_named(&tenant, &r.files, &[ObjectKind::File])?;
        let receiver = party("receiver", r.receiver.as_ref())?
            .ok_or_else(|| ApiError::field("receiver", "is required"))?;
        let given = party("sender", r.sender.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        stream_zip_in(
            self.data_dir(),
            tenant,
            HANDOVERS,
            |id| xdomea::message_zip_name(id, MessageType::Handover),
            move |out| {
                let ids = existing(&t, &files)?;
                let sender = sender(&t, given)?;
                let (out, sent) = t.export_handover(&actor, &ids, sender, receiver, out)?;
                Ok((sent.process.id, out))
            },
        )
        .await
    }

    async fn receive_handover_answer(
        &self,
        req: Request<pb::ReceiveHandoverAnswerRequest>,
    ) -> Result<Response<pb::HandoverProcess>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        message_bytes("message", &r.message)?;
        let mut refs = BTreeMap::new();
        for (name, reference) in &r.receiving_references {
            let o = names::object_of("receiving_references", name, &[ObjectKind::File])?;
            if o.tenant != tenant {
                return Err(ApiError::NotFound {
                    resource: name.clone(),
                }
                .into());
            }
            refs.insert(o.id, reference.clone());
        }
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        let p = blocking(move || {
            Ok(t.read_handover_answer(&actor, Cursor::new(&r.message[..]), &refs)?)
        })
        .await?;
        Ok(Response::new(process_message(&tenant, &p)))
    }

    async fn get_handover_process(
        &self,
        req: Request<pb::GetHandoverProcessRequest>,
    ) -> Result<Response<pb::HandoverProcess>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, HANDOVERS)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::KeepFiles)?;
        let n = name.clone();
        let p = blocking(move || t.handover_process(id).map_err(named(&n))).await?;
        Ok(Response::new(process_message(&tenant, &p)))
    }

    async fn export_file_plan(
        &self,
        req: Request<pb::ExportFilePlanRequest>,
    ) -> Result<Response<pb::ExportFilePlanResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        if r.plan_name.trim().is_empty() || r.version.trim().is_empty() {
            return Err(ApiError::field("plan_name", "plan_name and version are required").into());
        }
        let receiver = party("receiver", r.receiver.as_ref())?
            .ok_or_else(|| ApiError::field("receiver", "is required"))?;
        let given = party("sender", r.sender.as_ref())?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let out = blocking(move || {
            let sender = sender(&t, given)?;
            let (zip, file_name) = t.export_plan(sender, receiver, &r.plan_name, &r.version)?;
            Ok(pb::ExportFilePlanResponse {
                zip: Bytes::from(zip),
                file_name,
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn import_file_plan(
        &self,
        req: Request<pb::ImportFilePlanRequest>,
    ) -> Result<Response<pb::ImportFilePlanResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        message_bytes("message", &r.message)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        let out = blocking(move || {
            let done = t.import_plan(&actor, Cursor::new(&r.message[..]))?;
            let receipt = done.receipt_zip()?;
            Ok(pb::ImportFilePlanResponse {
                created: done.created,
                updated: done.updated,
                unchanged: done.unchanged,
                failed: done
                    .failed
                    .into_iter()
                    .map(|(code, reason)| pb::PlanUnitFailure { code, reason })
                    .collect(),
                receipt_zip: Bytes::from(receipt),
                receipt_file_name: xdomea::message_zip_name(
                    done.header.process_id,
                    MessageType::PlanReceipt,
                ),
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn refile_file(
        &self,
        req: Request<pb::RefileFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, &[ObjectKind::File])?;
        let unit = names::object_of("plan_unit", &r.plan_unit, &[ObjectKind::PlanUnit])?;
        if unit.tenant != o.tenant {
            return Err(ApiError::NotFound {
                resource: r.plan_unit,
            }
            .into());
        }
        let etag = required_etag(&r.etag)?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        let name = r.name.clone();
        let f = blocking(move || {
            super::get_kind(&t, o.id, ObjectKind::File, &name)?;
            Ok(t.refile_file(&actor, o.id, etag, unit.id, reason(r.reason))?)
        })
        .await?;
        Ok(Response::new(convert::file(&o.tenant, &f)))
    }

    async fn refile_case(
        &self,
        req: Request<pb::RefileCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, &[ObjectKind::Case])?;
        let target = target_of(&o.tenant, "target", &r.target)?;
        let etag = required_etag(&r.etag)?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        let name = r.name.clone();
        let c = blocking(move || {
            super::get_kind(&t, o.id, ObjectKind::Case, &name)?;
            Ok(t.refile_case(&actor, o.id, etag, target, reason(r.reason))?)
        })
        .await?;
        Ok(Response::new(convert::case(&o.tenant, &c)))
    }

    async fn refile_document(
        &self,
        req: Request<pb::RefileDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, &[ObjectKind::Document])?;
        let target = target_of(&o.tenant, "target", &r.target)?;
        let etag = required_etag(&r.etag)?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        let name = r.name.clone();
        let d = blocking(move || {
            super::get_kind(&t, o.id, ObjectKind::Document, &name)?;
            Ok(t.refile_document(&actor, o.id, etag, target, reason(r.reason))?)
        })
        .await?;
        let parent_kind = if d.parent == d.file {
            ObjectKind::File
        } else {
            ObjectKind::Case
        };
        Ok(Response::new(convert::document(&o.tenant, &d, parent_kind)))
    }

    async fn list_original_history(
        &self,
        req: Request<pb::ListOriginalHistoryRequest>,
    ) -> Result<Response<pb::ListOriginalHistoryResponse>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let o = names::object("name", &name)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::Read)?;
        let n = name.clone();
        let entries = blocking(move || {
            super::get_kind(&t, o.id, o.kind, &n)?;
            Ok(t.original_history(o.id)?)
        })
        .await?;
        Ok(Response::new(pb::ListOriginalHistoryResponse {
            entries: entries
                .iter()
                .map(|h| pb::OriginalHistoryEntry {
                    time: Some(convert::timestamp(&h.at)),
                    actor: h.actor.clone(),
                    action: h.action.clone(),
                    field: h.field.clone().unwrap_or_default(),
                    old_value: h.old.clone().unwrap_or_default(),
                    new_value: h.new.clone().unwrap_or_default(),
                    remark: h.remark.clone().unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
