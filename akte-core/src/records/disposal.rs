//! The xdomea disposal flow (Aussonderung) over the records model: offer (0501), receipts
//! (0504, 0505, 0507), appraisal (0502), transfer (0503) and import confirmation (0506).
//!
//! Every step the agency takes or receives is one journal entry; the state of each process
//! and of each file in it is derived in the index. Messages from the archive are checked
//! completely (process, message type, every object offered and nothing else) before
//! anything is recorded: a rejected message changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::io::{Seek, Write};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::index::{IndexError, TenantIndex};
use crate::xdomea::{self, FileFormat, MessageHeader, Party, SendingSystem, XdomeaError};

use super::event::kind;
use super::retention::{
    effective, explain, read_rule, retention_end, DisposalProgress, DisposalStatus,
};
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, Plan};
use super::types::*;
use super::{RecordsError, TenantRecords};

/// The two sides of a disposal process, as xdomea names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    /// The agency (sender of 0501 and 0503).
    pub agency: Party,
    /// The archive.
    pub archive: Party,
}

/// Stage of a disposal process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStage {
    /// 0501 sent.
    Offered,
    /// 0504 received.
    OfferReceived,
    /// 0502 received (and 0505 written).
    Appraised,
    /// 0503 sent.
    TransferSent,
    /// 0507 received.
    TransferReceived,
    /// 0506 received.
    Confirmed,
}

/// A disposal process (xdomea ProzessID) as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisposalProcess {
    /// The xdomea process id.
    pub id: Uuid,
    /// Whether the process started with an offer (four stages) or a direct transfer.
    pub two_stage: bool,
    /// The top-level files of the process.
    pub files: Vec<Uuid>,
    /// Where it stands.
    pub stage: ProcessStage,
    /// Decisions of the archive per file (after 0502; A for a two-stage transfer).
    pub decisions: BTreeMap<Uuid, DisposalDecision>,
    /// Archive ids per confirmed file, and errors per failed one (after 0506).
    pub confirmations: BTreeMap<Uuid, String>,
    /// Journal entries of each step.
    pub steps: Vec<u64>,
}

fn xdomea_err(e: XdomeaError) -> RecordsError {
    RecordsError::Invalid {
        field: "message".into(),
        reason: e.to_string(),
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub(super) fn load_process(
    index: &TenantIndex,
    id: Uuid,
) -> Result<Option<DisposalProcess>, RecordsError> {
    match index.get(schema::key(tag::PROCESS).id(id))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| RecordsError::Internal(e.to_string())),
    }
}

fn header(process: Uuid, sender: &Party, receiver: &Party) -> MessageHeader {
    MessageHeader {
        process_id: process,
        created: Utc::now().fixed_offset(),
        sender: sender.clone(),
        receiver: receiver.clone(),
        system: Some(SendingSystem {
            instance_id: None,
            product_name: Some("akte".into()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
        note: None,
        receipt_requested: true,
        archive_id_requested: true,
    }
}

fn x_decision(d: DisposalDecision) -> xdomea::DisposalDecision {
    match d {
        DisposalDecision::Archive => xdomea::DisposalDecision::Archive,
        DisposalDecision::Destroy => xdomea::DisposalDecision::Destroy,
        DisposalDecision::Appraise => xdomea::DisposalDecision::Appraise,
    }
}

fn x_retention(r: Retention) -> xdomea::Retention {
    match r {
        Retention::Years(y) => xdomea::Retention::Years(y),
        Retention::Unlimited => xdomea::Retention::Unlimited,
    }
}

fn x_conf(c: Confidentiality) -> xdomea::Confidentiality {
    match c {
        Confidentiality::Secret => xdomea::Confidentiality::Secret,
        Confidentiality::Restricted => xdomea::Confidentiality::Restricted,
        Confidentiality::Open => xdomea::Confidentiality::Open,
        Confidentiality::TopSecret => xdomea::Confidentiality::TopSecret,
        Confidentiality::Confidential => xdomea::Confidentiality::Confidential,
    }
}

fn x_medium(m: Medium) -> xdomea::Medium {
    match m {
        Medium::Electronic => xdomea::Medium::Electronic,
        Medium::Hybrid => xdomea::Medium::Hybrid,
        Medium::Paper => xdomea::Medium::Paper,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn children(index: &TenantIndex, parent: Uuid) -> Result<Vec<Object>, RecordsError> {
    let mut out = Vec::new();
    for kv in index.scan_prefix(schema::children(parent)) {
        let (k, _) = kv?;
        if let Some(id) = schema::trailing_id(&k) {
            out.push(get_object(index, id)?);
        }
    }
    Ok(out)
}

/// Maps the records model onto xdomea's objects (with versions for a transfer).
struct Mapper<'a> {
    index: &'a TenantIndex,
    with_versions: bool,
}

impl Mapper<'_> {
    fn file(&self, f: &File) -> Result<xdomea::FileObject, RecordsError> {
        let (retention, decision, _) = effective(self.index, f)?;
        let unit = match get_object(self.index, f.plan_unit)? {
            Object::PlanUnit(u) => Some(xdomea::PlanUnitRef {
                reference: Some(u.code),
                title: Some(u.title),
            }),
            _ => None,
        };
        let rule = read_rule(self.index)?;
        let mut out = xdomea::FileObject {
            id: f.id,
            reference: Some(f.reference.clone()),
            subject: Some(f.subject.clone()),
            lead_unit: non_empty(&f.lead_unit),
            confidentiality: Some(x_conf(f.confidentiality)),
            remark: non_empty(&f.notes),
            medium: Some(x_medium(f.medium)),
            plan_unit: unit,
            disposal: x_decision(decision),
            retention: Some(x_retention(retention)),
            retention_end: f.closed_on.and_then(|c| retention_end(rule, c, retention)),
            running_begin: f.begin,
            running_end: f.end,
            closed: f.closed_on,
            documents: Vec::new(),
            cases: Vec::new(),
            sub_files: Vec::new(),
        };
        for child in children(self.index, f.id)? {
            match child {
                Object::File(sub) => out.sub_files.push(self.file(&sub)?),
                Object::Case(c) => out.cases.push(self.case(&c, &f.reference)?),
                Object::Document(d) => out.documents.push(self.document(&d)?),
                Object::PlanUnit(_) => {}
            }
        }
        Ok(out)
    }

    fn case(&self, c: &Case, file_reference: &str) -> Result<xdomea::CaseObject, RecordsError> {
        let mut out = xdomea::CaseObject {
            id: c.id,
            reference: Some(format!("{file_reference}.{}", c.number)),
            subject: Some(c.subject.clone()),
            confidentiality: Some(x_conf(c.confidentiality)),
            remark: non_empty(&c.notes),
            medium: None,
            disposal: None,
            retention: None,
            retention_end: None,
            running_begin: c.begin,
            running_end: c.end,
            closed: c.closed_on,
            documents: Vec::new(),
            sub_cases: Vec::new(),
        };
        for child in children(self.index, c.id)? {
            match child {
                Object::Case(sc) => out.sub_cases.push(self.case(&sc, file_reference)?),
                Object::Document(d) => out.documents.push(self.document(&d)?),
                _ => {}
            }
        }
        Ok(out)
    }

    fn document(&self, d: &Document) -> Result<xdomea::DocumentObject, RecordsError> {
        let party = |s: &str| Party {
            address_lines: vec![s.to_owned()],
            ..Party::default()
        };
        let mut versions = Vec::new();
        if self.with_versions {
            for n in 1..=d.versions {
                let Some(v) = self.index.get(schema::version(d.id, n))? else {
                    continue;
                };
                let v: Version = serde_json::from_slice(&v)
                    .map_err(|e| RecordsError::Internal(e.to_string()))?;
                versions.push(xdomea::VersionObject {
                    number: v.number,
                    renditions: v
                        .renditions
                        .iter()
                        .map(|r| xdomea::RenditionObject {
                            id: r.id,
                            file_name: r.file_name.clone(),
                            format: FileFormat::guess(&r.file_name, Some(&r.media_type)),
                            size: r.size,
                            digest: r.sha256,
                            created: Some(v.created.at.fixed_offset()),
                        })
                        .collect(),
                });
            }
        }
        let mut attachments = Vec::new();
        for (i, child) in children(self.index, d.id)?.into_iter().enumerate() {
            if let Object::Document(a) = child {
                attachments.push(xdomea::AttachmentObject {
                    document: self.document(&a)?,
                    number: Some((i + 1).to_string()),
                });
            }
        }
        Ok(xdomea::DocumentObject {
            id: d.id,
            reference: None,
            subject: Some(d.subject.clone()),
            confidentiality: Some(x_conf(d.confidentiality)),
            medium: None,
            foreign_reference: non_empty(&d.external_reference),
            received: d.received_on,
            sent: d.sent_on,
            letter_date: d.letter_date,
            clerk: non_empty(&d.clerk),
            kind: None,
            versions,
            attachments,
            senders: if d.sender.is_empty() {
                vec![]
            } else {
                vec![party(&d.sender)]
            },
            recipients: d.recipients.iter().map(|r| party(r)).collect(),
        })
    }
}

fn top_level_file(index: &TenantIndex, id: Uuid) -> Result<File, RecordsError> {
    match get_object(index, id)? {
        Object::File(f) if f.parent_file.is_none() => Ok(f),
        Object::File(_) => Err(RecordsError::FailedPrecondition {
            kind: ObjectKind::File,
            id: id.to_string(),
            reason: "is a sub-file; disposal works on top-level files".into(),
        }),
        other => Err(RecordsError::WrongKind {
            id: id.to_string(),
            expected: "file".into(),
            found: other.kind(),
        }),
    }
}

fn check_files(files: &[Uuid]) -> Result<(), RecordsError> {
    let unique: HashSet<&Uuid> = files.iter().collect();
    if files.is_empty() || unique.len() != files.len() {
        return Err(RecordsError::Invalid {
            field: "files".into(),
            reason: "must name at least one file, each once".into(),
        });
    }
    Ok(())
}

impl TenantRecords {
    /// A disposal process.
    pub fn disposal_process(&self, id: Uuid) -> Result<DisposalProcess, RecordsError> {
        load_process(self.tenant.index(), id)?.ok_or_else(|| RecordsError::NotFound {
            what: "disposal process".into(),
            id: id.to_string(),
        })
    }

    fn step(
        &self,
        actor: &str,
        kind: &'static str,
        process: Uuid,
        data: Value,
    ) -> Result<(), RecordsError> {
        self.write_plan(actor, |_| {
            let mut record = Self::new_event(Some(process))?;
            record.set.insert("step".into(), data);
            Ok(Plan::event(kind, record, vec![]))
        })?;
        Ok(())
    }

    /// Offers due files to the archive: writes the 0501 offer list (metadata only) as a ZIP
    /// to `out` and records the offer. Files must be due (closed, retention ended, not held,
    /// not in another process). Returns the process id.
    pub fn offer<W: Write + Seek>(
        &self,
        actor: &str,
        files: &[Uuid],
        parties: &Parties,
        out: W,
    ) -> Result<(Uuid, W), RecordsError> {
        check_files(files)?;
        let index = self.tenant.index();
        let mut objects = Vec::new();
        for id in files {
            let f = top_level_file(index, *id)?;
            let e = explain(index, &Object::File(f.clone()), today())?;
            if !matches!(e.status, DisposalStatus::Due { .. }) {
                return Err(RecordsError::FailedPrecondition {
                    kind: ObjectKind::File,
                    id: id.to_string(),
                    reason: format!("is not due: {}", e.explanation),
                });
            }
            objects.push(
                Mapper {
                    index,
                    with_versions: false,
                }
                .file(&f)?,
            );
        }
        let process = Uuid::new_v4();
        let out = xdomea::write_0501_zip(
            out,
            &header(process, &parties.agency, &parties.archive),
            &objects,
        )
        .map_err(xdomea_err)?;
        self.step(
            actor,
            kind::DISPOSAL_OFFER,
            process,
            serde_json::json!({"files": files, "two_stage": false}),
        )?;
        Ok((process, out))
    }

    /// Reads the archive's receipt of an offer (0504).
    pub fn receive_offer_receipt(
        &self,
        actor: &str,
        xml: &[u8],
    ) -> Result<DisposalProcess, RecordsError> {
        let receipt = xdomea::read_0504(xml).map_err(xdomea_err)?;
        let p = self.disposal_process(receipt.header.process_id)?;
        if p.stage != ProcessStage::Offered {
            return Err(self.wrong_stage(&p, "an offer receipt (0504)"));
        }
        self.step(actor, kind::DISPOSAL_OFFER_RECEIPT, p.id, Value::Null)?;
        self.disposal_process(p.id)
    }

    fn wrong_stage(&self, p: &DisposalProcess, what: &str) -> RecordsError {
        RecordsError::Invalid {
            field: "message".into(),
            reason: format!(
                "process {} is at stage {:?} and expects no {what}",
                p.id, p.stage
            ),
        }
    }

    /// Reads the archive's appraisal (0502): every offered file (and any case in it) must be
    /// appraised A or V, nothing else may be. Records it and returns the 0505 receipt.
    pub fn receive_appraisal(
        &self,
        actor: &str,
        xml: &[u8],
        parties: &Parties,
    ) -> Result<(DisposalProcess, Vec<u8>), RecordsError> {
        let list = xdomea::read_0502(xml).map_err(xdomea_err)?;
        let p = self.disposal_process(list.header.process_id)?;
        if !matches!(p.stage, ProcessStage::Offered | ProcessStage::OfferReceived) || p.two_stage {
            return Err(self.wrong_stage(&p, "an appraisal (0502)"));
        }
        let index = self.tenant.index();
        let mut offered_files = Vec::new();
        for id in &p.files {
            offered_files.push(
                Mapper {
                    index,
                    with_versions: false,
                }
                .file(&top_level_file(index, *id)?)?,
            );
        }
        let offered = xdomea::offered_ids(&offered_files);
        xdomea::check_appraisal_against_offer(&list.appraisals, &offered).map_err(xdomea_err)?;
        let by_id: BTreeMap<Uuid, xdomea::AppraisalDecision> =
            list.appraisals.iter().map(|a| (a.id, a.decision)).collect();
        let mut decisions = BTreeMap::new();
        for f in &offered_files {
            // The file's own decision; failing that, A if the archive wants any part of it.
            let d = match by_id.get(&f.id) {
                Some(d) => *d,
                None => {
                    let parts = xdomea::offered_ids(std::slice::from_ref(f));
                    let mut any = parts.iter().filter_map(|id| by_id.get(id)).peekable();
                    if any.peek().is_none() {
                        return Err(RecordsError::Invalid {
                            field: "message".into(),
                            reason: format!(
                                "file {} ({}) was offered but not appraised",
                                f.id,
                                f.reference.clone().unwrap_or_default()
                            ),
                        });
                    }
                    if any.any(|d| *d == xdomea::AppraisalDecision::Archive) {
                        xdomea::AppraisalDecision::Archive
                    } else {
                        xdomea::AppraisalDecision::Destroy
                    }
                }
            };
            decisions.insert(
                f.id,
                match d {
                    xdomea::AppraisalDecision::Archive => DisposalDecision::Archive,
                    xdomea::AppraisalDecision::Destroy => DisposalDecision::Destroy,
                },
            );
        }
        self.step(
            actor,
            kind::DISPOSAL_APPRAISE,
            p.id,
            serde_json::json!({"decisions": decisions}),
        )?;
        let receipt = xdomea::write_0505(&header(p.id, &parties.agency, &parties.archive))
            .map_err(xdomea_err)?;
        Ok((self.disposal_process(p.id)?, receipt))
    }

    /// Writes the 0503 transfer of every file the archive appraised A in `process`,
    /// streaming each rendition from the content store into the ZIP, with the evidence
    /// file of [`crate::evidence`], and records it.
    pub fn transfer<W: Write + Seek>(
        &self,
        actor: &str,
        process: Uuid,
        parties: &Parties,
        out: W,
    ) -> Result<W, RecordsError> {
        let p = self.disposal_process(process)?;
        if p.stage != ProcessStage::Appraised {
            return Err(self.wrong_stage(&p, "a transfer"));
        }
        let files = p.files_to_archive();
        if files.is_empty() {
            return Err(RecordsError::FailedPrecondition {
                kind: ObjectKind::File,
                id: process.to_string(),
                reason: "the archive appraised no file A".into(),
            });
        }
        self.write_transfer(actor, process, &files, TransferKind::First, parties, out)
    }

    /// Writes the 0503 of a process that was already transferred again, for example after
    /// the first package was lost in the download, and records the re-send. Only before the
    /// archive has answered (stage TransferSent): once a receipt (0507) or an import
    /// confirmation (0506) has arrived, the archive holds the package. The new package has
    /// a fresh message and a fresh evidence checkpoint; the files, versions and digests are
    /// those of the first one (files in a disposal process cannot change).
    pub fn resend_transfer<W: Write + Seek>(
        &self,
        actor: &str,
        process: Uuid,
        parties: &Parties,
        out: W,
    ) -> Result<W, RecordsError> {
        let p = self.disposal_process(process)?;
        if p.stage != ProcessStage::TransferSent {
            return Err(self.wrong_stage(&p, "re-sent transfer"));
        }
        let files = p.files_to_archive();
        self.write_transfer(actor, process, &files, TransferKind::Resend, parties, out)
    }

    /// The two-stage flow: transfers files whose decision is already A (due, not held)
    /// directly with a 0503, without offer and appraisal. Returns the new process id.
    pub fn transfer_two_stage<W: Write + Seek>(
        &self,
        actor: &str,
        files: &[Uuid],
        parties: &Parties,
        out: W,
    ) -> Result<(Uuid, W), RecordsError> {
        check_files(files)?;
        let index = self.tenant.index();
        for id in files {
            let f = top_level_file(index, *id)?;
            let e = explain(index, &Object::File(f), today())?;
            if e.status
                != (DisposalStatus::Due {
                    decision: DisposalDecision::Archive,
                })
            {
                return Err(RecordsError::FailedPrecondition {
                    kind: ObjectKind::File,
                    id: id.to_string(),
                    reason: format!(
                        "needs decision A and to be due for a two-stage transfer: {}",
                        e.explanation
                    ),
                });
            }
        }
        let process = Uuid::new_v4();
        let out =
            self.write_transfer(actor, process, files, TransferKind::TwoStage, parties, out)?;
        Ok((process, out))
    }

    fn write_transfer<W: Write + Seek>(
        &self,
        actor: &str,
        process: Uuid,
        files: &[Uuid],
        transfer: TransferKind,
        parties: &Parties,
        out: W,
    ) -> Result<W, RecordsError> {
        let index = self.tenant.index();
        let mut objects = Vec::new();
        for id in files {
            let f = top_level_file(index, *id)?;
            if let Some(h) = super::retention::active_holds(index, f.id)?.first() {
                return Err(RecordsError::FailedPrecondition {
                    kind: ObjectKind::File,
                    id: id.to_string(),
                    reason: format!("is held by hold {} ({})", h.id, h.reason),
                });
            }
            objects.push(
                Mapper {
                    index,
                    with_versions: true,
                }
                .file(&f)?,
            );
        }
        // The ZIP carries the evidence file (crate::evidence) beside the XML and the files.
        let out = crate::evidence::write_transfer(
            self,
            &header(process, &parties.agency, &parties.archive),
            &objects,
            out,
        )?;
        self.step(
            actor,
            kind::DISPOSAL_TRANSFER,
            process,
            serde_json::json!({
                "files": files,
                "two_stage": transfer == TransferKind::TwoStage,
                "resend": transfer == TransferKind::Resend,
            }),
        )?;
        Ok(out)
    }

    /// Reads the archive's receipt of a transfer (0507).
    pub fn receive_transfer_receipt(
        &self,
        actor: &str,
        xml: &[u8],
    ) -> Result<DisposalProcess, RecordsError> {
        let receipt = xdomea::read_0507(xml).map_err(xdomea_err)?;
        let p = self.disposal_process(receipt.header.process_id)?;
        if p.stage != ProcessStage::TransferSent {
            return Err(self.wrong_stage(&p, "a transfer receipt (0507)"));
        }
        self.step(actor, kind::DISPOSAL_TRANSFER_RECEIPT, p.id, Value::Null)?;
        self.disposal_process(p.id)
    }

    /// Reads the archive's import confirmation (0506): files confirmed with an archive id
    /// are marked transferred (and may then be destroyed); failures are kept with their
    /// error text and the files stay appraised A for another transfer.
    pub fn receive_import_confirmation(
        &self,
        actor: &str,
        xml: &[u8],
    ) -> Result<DisposalProcess, RecordsError> {
        let conf = xdomea::read_0506(xml).map_err(xdomea_err)?;
        let p = self.disposal_process(conf.header.process_id)?;
        if !matches!(
            p.stage,
            ProcessStage::TransferSent | ProcessStage::TransferReceived
        ) {
            return Err(self.wrong_stage(&p, "an import confirmation (0506)"));
        }
        let sent: HashSet<Uuid> = p
            .decisions
            .iter()
            .filter(|(_, d)| **d == DisposalDecision::Archive)
            .map(|(f, _)| *f)
            .collect();
        let mut results = BTreeMap::new();
        for r in &conf.results {
            if !sent.contains(&r.id) {
                return Err(RecordsError::Invalid {
                    field: "message".into(),
                    reason: format!("object {} was not transferred in process {}", r.id, p.id),
                });
            }
            let value = match (&r.success, &r.archive_id) {
                (true, Some(a)) if !a.is_empty() => serde_json::json!({"archive_id": a}),
                (true, _) => {
                    return Err(RecordsError::Invalid {
                        field: "message".into(),
                        reason: format!("object {} is confirmed without an archive id", r.id),
                    })
                }
                (false, _) => serde_json::json!({"error": r.error_messages.join("; ")}),
            };
            results.insert(r.id, value);
        }
        self.step(
            actor,
            kind::DISPOSAL_IMPORT_CONFIRM,
            p.id,
            serde_json::json!({"results": results}),
        )?;
        self.disposal_process(p.id)
    }
}

impl DisposalProcess {
    /// The files the archive appraised A (or, two-stage, that were sent with decision A).
    fn files_to_archive(&self) -> Vec<Uuid> {
        self.decisions
            .iter()
            .filter(|(_, d)| **d == DisposalDecision::Archive)
            .map(|(f, _)| *f)
            .collect()
    }
}

/// Which transfer a `disposal.transfer` step records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferKind {
    /// The transfer of an appraised process.
    First,
    /// A two-stage transfer, which opens its process.
    TwoStage,
    /// The same package written again for a process already at TransferSent.
    Resend,
}

/// The index changes of a disposal step (called by the projection).
pub(super) fn apply_step(
    index: &TenantIndex,
    batch: &mut crate::index::IndexBatch,
    kind_name: &str,
    process: Uuid,
    step: &Value,
    seq: u64,
    on: NaiveDate,
) -> Result<(), IndexError> {
    let fail = |reason: String| IndexError::Projection { seq, reason };
    let key = schema::key(tag::PROCESS).id(process);
    let mut p: DisposalProcess = match index.get(&key)? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| fail(e.to_string()))?,
        None => DisposalProcess {
            id: process,
            two_stage: false,
            files: Vec::new(),
            stage: ProcessStage::Offered,
            decisions: BTreeMap::new(),
            confirmations: BTreeMap::new(),
            steps: Vec::new(),
        },
    };
    let ids = |field: &str| -> Vec<Uuid> {
        step.get(field)
            .and_then(|v| serde_json::from_value::<Vec<Uuid>>(v.clone()).ok())
            .unwrap_or_default()
    };
    let mut progress: Vec<(Uuid, DisposalProgress)> = Vec::new();
    match kind_name {
        kind::DISPOSAL_OFFER => {
            p.files = ids("files");
            p.stage = ProcessStage::Offered;
            for f in &p.files {
                progress.push((*f, DisposalProgress::Offered { process, on }));
            }
        }
        kind::DISPOSAL_OFFER_RECEIPT => p.stage = ProcessStage::OfferReceived,
        kind::DISPOSAL_APPRAISE => {
            p.decisions = step
                .get("decisions")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .ok_or_else(|| fail("appraisal without decisions".into()))?;
            p.stage = ProcessStage::Appraised;
            for (f, d) in &p.decisions {
                progress.push((
                    *f,
                    DisposalProgress::Appraised {
                        process,
                        decision: *d,
                        on,
                    },
                ));
            }
        }
        kind::DISPOSAL_TRANSFER => {
            let files = ids("files");
            if step.get("two_stage").and_then(Value::as_bool) == Some(true) {
                p.two_stage = true;
                p.files = files.clone();
                p.decisions = files
                    .iter()
                    .map(|f| (*f, DisposalDecision::Archive))
                    .collect();
            }
            p.stage = ProcessStage::TransferSent;
            for f in files {
                progress.push((f, DisposalProgress::TransferSent { process, on }));
            }
        }
        kind::DISPOSAL_TRANSFER_RECEIPT => p.stage = ProcessStage::TransferReceived,
        kind::DISPOSAL_IMPORT_CONFIRM => {
            let results: BTreeMap<Uuid, Value> = step
                .get("results")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            for (f, r) in results {
                if let Some(a) = r.get("archive_id").and_then(Value::as_str) {
                    p.confirmations.insert(f, a.to_owned());
                    progress.push((
                        f,
                        DisposalProgress::Transferred {
                            process,
                            archive_id: a.to_owned(),
                            on,
                        },
                    ));
                } else {
                    let e = r.get("error").and_then(Value::as_str).unwrap_or_default();
                    p.confirmations.insert(f, format!("error: {e}"));
                    progress.push((
                        f,
                        DisposalProgress::Appraised {
                            process,
                            decision: DisposalDecision::Archive,
                            on,
                        },
                    ));
                }
            }
            p.stage = ProcessStage::Confirmed;
        }
        other => return Err(fail(format!("unknown disposal step {other}"))),
    }
    p.steps.push(seq);
    batch.insert(
        key,
        serde_json::to_vec(&p).map_err(|e| fail(e.to_string()))?,
    );
    for (f, pr) in progress {
        batch.insert(
            schema::key(tag::DISPOSAL).id(f),
            serde_json::to_vec(&pr).map_err(|e| fail(e.to_string()))?,
        );
    }
    Ok(())
}
