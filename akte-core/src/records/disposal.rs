//! The xdomea disposal flow (Aussonderung) over the records model: offer (0501), receipts
//! (0504, 0505, 0507), appraisal (0502, object by object: [`super::appraisal`]), transfer
//! (0503, exactly the objects appraised A) and import confirmation (0506, object by object:
//! [`super::import`]).
//!
//! Every step the agency takes or receives is one journal entry; the state of each process
//! and of each file in it is derived in the index. Messages from the archive are checked
//! completely (process, stage, message type, every object) before anything is recorded: a
//! refused message changes nothing and the error names the element and the rule.
//! Sender and receiver of every message come from the tenant's disposal settings
//! ([`super::identity`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{Cursor, Seek, Write};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::index::{IndexError, TenantIndex};
use crate::xdomea::{self, MessageHeader, MessageType, Party, SendingSystem, XdomeaError};

use super::appraisal;
use super::event::kind;
use super::identity::message_parties;
use super::import::{self, FileImport, ImportOutcome, ObjectProblem};
use super::mapping::{objects_of, Mapper};
use super::retention::{explain, DisposalProgress, DisposalStatus};
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, Plan};
use super::types::*;
use super::{RecordsError, TenantRecords};

/// Largest message XML the agency reads from the archive (uncompressed), in bytes.
pub const MAX_MESSAGE_XML: u64 = 16 << 20;

/// The two sides of a disposal process, as xdomea names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    /// The agency (sender of 0501, 0503 and 0505).
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

impl fmt::Display for ProcessStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessStage::Offered => "offered (0501 sent)",
            ProcessStage::OfferReceived => "offer received (0504 read)",
            ProcessStage::Appraised => "appraised (0502 read, 0505 written)",
            ProcessStage::TransferSent => "transferred (0503 sent)",
            ProcessStage::TransferReceived => "transfer received (0507 read)",
            ProcessStage::Confirmed => "confirmed (0506 read)",
        })
    }
}

/// One object a transfer (0503) carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentObject {
    /// The object.
    pub id: Uuid,
    /// File (or sub-file), case (or sub-case), document (or attachment).
    pub kind: ObjectKind,
    /// The object holding it in the message; `None` for a top-level file.
    pub parent: Option<Uuid>,
    /// The top-level file it was transferred with.
    pub file: Uuid,
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
    /// The archive's decision per appraisable object (file, sub-file, case, sub-case)
    /// after the 0502; A for the files of a two-stage transfer. An object not listed
    /// (documents, and the parts of processes recorded before appraisal was object by
    /// object) takes its nearest container's.
    pub decisions: BTreeMap<Uuid, DisposalDecision>,
    /// Per transferred top-level file, the outcome of the import in words (after 0506).
    pub confirmations: BTreeMap<Uuid, String>,
    /// Every object the 0503 carried, after the transfer.
    #[serde(default)]
    pub sent: Vec<SentObject>,
    /// The archive's answer per object its 0506 named.
    #[serde(default)]
    pub results: BTreeMap<Uuid, ImportOutcome>,
    /// Journal entries of each step.
    pub steps: Vec<u64>,
}

impl DisposalProcess {
    /// The top-level files the archive appraised A (or, two-stage, that were sent with
    /// decision A): the files a transfer carries.
    pub fn files_to_archive(&self) -> Vec<Uuid> {
        self.files
            .iter()
            .filter(|f| self.decisions.get(f) == Some(&DisposalDecision::Archive))
            .copied()
            .collect()
    }
}

/// A message the agency writes in answer, as it travels: the ZIP and its xdomea name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// `{ProzessID}_{Nachrichtenname}.zip`.
    pub file_name: String,
    /// The ZIP, holding `{ProzessID}_{Nachrichtenname}.xml`.
    pub zip: Vec<u8>,
    /// The XML in it.
    pub xml: Vec<u8>,
}

/// What reading a message of the archive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Which message it was.
    pub message: MessageType,
    /// The process after it.
    pub process: DisposalProcess,
    /// The receipt to send back (0505 for a 0502).
    pub receipt: Option<OutgoingMessage>,
}

/// A message of the archive refused, from what the xdomea reader found.
pub(super) fn refused(message: MessageType, e: XdomeaError) -> RecordsError {
    let (element, rule) = match &e {
        XdomeaError::Malformed { .. } => (String::new(), "well-formed-xml"),
        XdomeaError::WrongNamespace { location, .. } => (location.path.clone(), "namespace"),
        XdomeaError::WrongMessageType { found, .. } => (format!("/{found}"), "message-type"),
        XdomeaError::MessageTypeCodeMismatch { location, .. } => {
            (location.path.clone(), "message-type")
        }
        XdomeaError::Missing { location, element } => {
            (format!("{}/{element}", location.path), "required-element")
        }
        XdomeaError::Unexpected { location, .. } => (location.path.clone(), "allowed-elements"),
        XdomeaError::InvalidValue { location, .. } => (location.path.clone(), "value"),
        XdomeaError::UnknownDecision { location, .. } => (location.path.clone(), "decision-code"),
        XdomeaError::DuplicateId { location, .. } => (location.path.clone(), "unique-ids"),
        XdomeaError::Container(_) | XdomeaError::Zip(_) => (String::new(), "container"),
        _ => (String::new(), "message"),
    };
    RecordsError::RefusedMessage {
        message: message.code().to_owned(),
        element,
        rule: rule.to_owned(),
        reason: e.to_string(),
    }
}

fn today() -> NaiveDate {
    super::civil::today()
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
        system: Some(SendingSystem::akte(None)),
        note: None,
        receipt_requested: true,
        archive_id_requested: true,
    }
}

fn top_level_file(index: &TenantIndex, id: Uuid) -> Result<File, RecordsError> {
    match get_object(index, id)? {
        Object::File(f) if f.parent_file.is_none() => Ok(f),
        Object::File(f) => Err(RecordsError::FailedPrecondition {
            kind: ObjectKind::File,
            id: id.to_string(),
            reason: format!(
                "is a sub-file of file {}; disposal offers and transfers top-level files \
                 (the archive appraises their parts)",
                f.parent_file.map(|p| p.to_string()).unwrap_or_default()
            ),
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

fn wrong_stage(p: &DisposalProcess, what: &str, hint: &str) -> RecordsError {
    RecordsError::ProcessState {
        process: p.id,
        reason: format!("is at stage {}: {what}{hint}", p.stage),
    }
}

fn mapper(index: &TenantIndex) -> Mapper<'_> {
    Mapper {
        index,
        with_versions: false,
        decisions: None,
    }
}

impl TenantRecords {
    /// The kind of an object, destroyed ones included (from their tombstone); a file when
    /// nothing is known of it. For naming the objects of a process.
    pub fn kind_of(&self, id: Uuid) -> ObjectKind {
        match get_object(self.tenant.index(), id) {
            Ok(o) => o.kind(),
            Err(RecordsError::Destroyed { kind, .. }) => kind,
            Err(_) => ObjectKind::File,
        }
    }

    /// A disposal process.
    pub fn disposal_process(&self, id: Uuid) -> Result<DisposalProcess, RecordsError> {
        let not_found = || RecordsError::NotFound {
            what: "disposal process".into(),
            id: id.to_string(),
        };
        let p = load_process(self.tenant.index(), id)?.ok_or_else(not_found)?;
        // A process is as hidden as the least visible of its files.
        if !self.admit_all(&p.files)? {
            return Err(not_found());
        }
        Ok(p)
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
    /// to `out` and records the offer. Files must be due with decision A or B (V is
    /// destroyed, not offered), not held and in no process, or be back from a failed import.
    /// Returns the process id.
    pub fn offer<W: Write + Seek>(
        &self,
        actor: &str,
        files: &[Uuid],
        out: W,
    ) -> Result<(Uuid, W), RecordsError> {
        check_files(files)?;
        let index = self.tenant.index();
        let parties = message_parties(index)?;
        let mut objects = Vec::new();
        for id in files {
            let f = top_level_file(index, *id)?;
            let e = explain(index, &Object::File(f.clone()), today())?;
            let refuse = |reason: String| RecordsError::FailedPrecondition {
                kind: ObjectKind::File,
                id: id.to_string(),
                reason,
            };
            match e.status {
                DisposalStatus::Due {
                    decision: DisposalDecision::Destroy,
                } => {
                    return Err(refuse(format!(
                        "has disposal decision V ({}): it is destroyed, not offered to the \
                         archive; destroy it, or set decision A or B on it first",
                        e.source
                    )))
                }
                DisposalStatus::Due { .. }
                | DisposalStatus::InProcess(DisposalProgress::ImportFailed { .. }) => {}
                _ => return Err(refuse(format!("is not due: {}", e.explanation))),
            }
            objects.push(mapper(index).file(&f)?);
        }
        let process = super::schema::new_id();
        let out = xdomea::write_0501_zip(
            out,
            &header(process, &parties.agency, &parties.archive),
            &objects,
        )
        .map_err(|e| RecordsError::Internal(format!("writing the 0501: {e}")))?;
        self.step(
            actor,
            kind::DISPOSAL_OFFER,
            process,
            serde_json::json!({"files": files, "two_stage": false}),
        )?;
        Ok((process, out))
    }

    /// Reads a message of the archive, as it arrives (its ZIP, or the XML alone):
    /// 0502, 0504, 0506 or 0507, dispatched by type. A 0502 is answered with the 0505
    /// receipt. Anything else, and any message that breaks a rule, is refused with the
    /// element and the rule, and nothing is recorded.
    pub fn receive_message(&self, actor: &str, bytes: &[u8]) -> Result<Received, RecordsError> {
        const FROM_ARCHIVE: [MessageType; 4] = [
            MessageType::Appraisal,
            MessageType::OfferReceipt,
            MessageType::ImportConfirmation,
            MessageType::TransferReceipt,
        ];
        let (message, xml, named) = if bytes.starts_with(b"PK\x03\x04") {
            let z = xdomea::read_received_zip(Cursor::new(bytes), &FROM_ARCHIVE, MAX_MESSAGE_XML)
                .map_err(|e| RecordsError::RefusedMessage {
                message: "ZIP".into(),
                element: String::new(),
                rule: "container".into(),
                reason: e.to_string(),
            })?;
            (z.message, z.xml, Some((z.process_id, z.entry)))
        } else {
            if bytes.len() as u64 > MAX_MESSAGE_XML {
                return Err(RecordsError::RefusedMessage {
                    message: "message".into(),
                    element: String::new(),
                    rule: "container".into(),
                    reason: format!(
                        "the XML is {} bytes, more than the limit of {MAX_MESSAGE_XML} bytes",
                        bytes.len()
                    ),
                });
            }
            let (message, _) =
                xdomea::identify(bytes).map_err(|e| RecordsError::RefusedMessage {
                    message: "message".into(),
                    element: String::new(),
                    rule: "message-type".into(),
                    reason: e.to_string(),
                })?;
            (message, bytes.to_vec(), None)
        };
        if !FROM_ARCHIVE.contains(&message) {
            return Err(RecordsError::RefusedMessage {
                message: message.code().into(),
                element: format!("/{}", message.element_name()),
                rule: "message-type".into(),
                reason: format!(
                    "a {} ({}) is a message the agency writes; the archive sends 0502, 0504, \
                     0506 and 0507",
                    message.code(),
                    message.element_name()
                ),
            });
        }
        let check = |header: &MessageHeader| match &named {
            Some((pid, entry)) if *pid != header.process_id => Err(RecordsError::RefusedMessage {
                message: message.code().into(),
                element: format!("/{}/Kopf/ProzessID", message.element_name()),
                rule: "process-id".into(),
                reason: format!(
                    "the ZIP entry {entry} names process {pid}, the message's Kopf/ProzessID \
                     {}",
                    header.process_id
                ),
            }),
            _ => Ok(()),
        };
        let (process, receipt) = match message {
            MessageType::Appraisal => {
                let (p, r) = self.appraisal(actor, &xml, &check)?;
                (p, Some(r))
            }
            MessageType::OfferReceipt => (self.offer_receipt(actor, &xml, &check)?, None),
            MessageType::TransferReceipt => (self.transfer_receipt(actor, &xml, &check)?, None),
            _ => (self.import_confirmation(actor, &xml, &check)?, None),
        };
        Ok(Received {
            message,
            process,
            receipt,
        })
    }

    /// The archive's receipt of an offer (0504).
    fn offer_receipt(
        &self,
        actor: &str,
        xml: &[u8],
        check: &dyn Fn(&MessageHeader) -> Result<(), RecordsError>,
    ) -> Result<DisposalProcess, RecordsError> {
        let receipt = xdomea::read_0504(xml).map_err(|e| refused(MessageType::OfferReceipt, e))?;
        check(&receipt.header)?;
        let p = self.disposal_process(receipt.header.process_id)?;
        if p.stage != ProcessStage::Offered {
            return Err(wrong_stage(
                &p,
                "an offer receipt (0504) answers an offer (stage offered)",
                "",
            ));
        }
        self.step(actor, kind::DISPOSAL_OFFER_RECEIPT, p.id, Value::Null)?;
        self.disposal_process(p.id)
    }

    /// The archive's appraisal (0502), object by object (see [`super::appraisal`]): records
    /// the decision of every file, sub-file, case and sub-case and returns the 0505 receipt
    /// to send back, as its ZIP.
    fn appraisal(
        &self,
        actor: &str,
        xml: &[u8],
        check: &dyn Fn(&MessageHeader) -> Result<(), RecordsError>,
    ) -> Result<(DisposalProcess, OutgoingMessage), RecordsError> {
        let list = xdomea::read_0502(xml).map_err(|e| refused(MessageType::Appraisal, e))?;
        check(&list.header)?;
        let p = self.disposal_process(list.header.process_id)?;
        if p.two_stage {
            return Err(RecordsError::ProcessState {
                process: p.id,
                reason: "is a two-stage transfer, which the archive does not appraise".into(),
            });
        }
        if !matches!(p.stage, ProcessStage::Offered | ProcessStage::OfferReceived) {
            return Err(wrong_stage(
                &p,
                "an appraisal (0502) answers an offer (stage offered or offer received)",
                "",
            ));
        }
        let index = self.tenant.index();
        let parties = message_parties(index)?;
        let mut offered = Vec::new();
        for id in &p.files {
            offered.push(mapper(index).file(&top_level_file(index, *id)?)?);
        }
        let decisions = appraisal::resolve(p.id, &offered, &list.appraisals).map_err(|e| {
            RecordsError::RefusedMessage {
                message: MessageType::Appraisal.code().into(),
                element: format!("/{}/{}", MessageType::Appraisal.element_name(), e.element),
                rule: e.rule.into(),
                reason: e.reason,
            }
        })?;
        let head = header(p.id, &parties.agency, &parties.archive);
        let xml = xdomea::write_0505(&head)
            .map_err(|e| RecordsError::Internal(format!("writing the 0505: {e}")))?;
        let zip = xdomea::write_message_zip(
            Cursor::new(Vec::new()),
            &head,
            MessageType::AppraisalReceipt,
            &xml,
        )
        .map_err(|e| RecordsError::Internal(format!("writing the 0505 ZIP: {e}")))?
        .into_inner();
        self.step(
            actor,
            kind::DISPOSAL_APPRAISE,
            p.id,
            serde_json::json!({"decisions": decisions}),
        )?;
        Ok((
            self.disposal_process(p.id)?,
            OutgoingMessage {
                file_name: xdomea::message_zip_name(p.id, MessageType::AppraisalReceipt),
                zip,
                xml,
            },
        ))
    }

    /// Writes the 0503 transfer of `process`: every file appraised A with exactly its
    /// parts appraised A (nothing appraised V), every version and rendition streamed from
    /// the content store into the ZIP, with the evidence file of [`crate::evidence`], and
    /// records it with the list of objects sent.
    pub fn transfer<W: Write + Seek>(
        &self,
        actor: &str,
        process: Uuid,
        out: W,
    ) -> Result<W, RecordsError> {
        let p = self.disposal_process(process)?;
        match p.stage {
            ProcessStage::Appraised => {}
            ProcessStage::Offered | ProcessStage::OfferReceived => {
                return Err(wrong_stage(
                    &p,
                    "a transfer follows the archive's appraisal (0502)",
                    "; receive the 0502 first",
                ))
            }
            ProcessStage::TransferSent => {
                return Err(wrong_stage(
                    &p,
                    "its package was written already",
                    "; to write it again (say, after a lost download) re-send it: \
                     `akte disposal transfer PROCESS --resend`, or resend = true in the \
                     Transfer call",
                ))
            }
            ProcessStage::TransferReceived | ProcessStage::Confirmed => {
                return Err(wrong_stage(
                    &p,
                    "the archive has received its transfer",
                    "; there is nothing left to transfer",
                ))
            }
        }
        let files = p.files_to_archive();
        if files.is_empty() {
            return Err(RecordsError::ProcessState {
                process,
                reason: "has no file the archive appraised A, so there is nothing to \
                         transfer; the files appraised V may be destroyed"
                    .into(),
            });
        }
        self.write_transfer(actor, &p, &files, TransferKind::First, out)
    }

    /// Writes the 0503 of a process that was already transferred again, for example after
    /// the first package was lost in the download, and records the re-send. Only before the
    /// archive has answered (stage TransferSent): once a receipt (0507) or an import
    /// confirmation (0506) has arrived, the archive holds the package. The new package has
    /// a fresh message and a fresh evidence checkpoint; the objects, versions and digests
    /// are those of the first one (files in a disposal process cannot change).
    ///
    /// The ZIP has the same name as the first one. An archive that has read a 0503 of the
    /// process already may ignore a second file of that name (x-man remembers the names it
    /// has processed): the archive must remove the first one from its intake (or be told
    /// to import this one) before it takes the re-sent package.
    pub fn resend_transfer<W: Write + Seek>(
        &self,
        actor: &str,
        process: Uuid,
        out: W,
    ) -> Result<W, RecordsError> {
        let p = self.disposal_process(process)?;
        match p.stage {
            ProcessStage::TransferSent => {}
            ProcessStage::Offered | ProcessStage::OfferReceived | ProcessStage::Appraised => {
                return Err(wrong_stage(
                    &p,
                    "a re-send writes a package sent before",
                    "; nothing was transferred yet: transfer it (without --resend)",
                ))
            }
            ProcessStage::TransferReceived | ProcessStage::Confirmed => {
                return Err(wrong_stage(
                    &p,
                    "the archive has confirmed it holds the package (0507 or 0506)",
                    "; there is nothing to re-send",
                ))
            }
        }
        let files = p.files_to_archive();
        self.write_transfer(actor, &p, &files, TransferKind::Resend, out)
    }

    /// The two-stage flow: transfers files whose decision is already A (due, not held)
    /// directly with a 0503, without offer and appraisal. Returns the new process id.
    pub fn transfer_two_stage<W: Write + Seek>(
        &self,
        actor: &str,
        files: &[Uuid],
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
                        "needs decision A and to be due for a two-stage transfer; it is: {}",
                        e.explanation
                    ),
                });
            }
        }
        let process = DisposalProcess {
            id: super::schema::new_id(),
            two_stage: true,
            files: files.to_vec(),
            stage: ProcessStage::Offered,
            decisions: files
                .iter()
                .map(|f| (*f, DisposalDecision::Archive))
                .collect(),
            confirmations: BTreeMap::new(),
            sent: Vec::new(),
            results: BTreeMap::new(),
            steps: Vec::new(),
        };
        let out = self.write_transfer(actor, &process, files, TransferKind::TwoStage, out)?;
        Ok((process.id, out))
    }

    fn write_transfer<W: Write + Seek>(
        &self,
        actor: &str,
        p: &DisposalProcess,
        files: &[Uuid],
        transfer: TransferKind,
        out: W,
    ) -> Result<W, RecordsError> {
        let index = self.tenant.index();
        let parties = message_parties(index)?;
        let mut objects = Vec::new();
        for id in files {
            let f = top_level_file(index, *id)?;
            if let Some(h) = super::retention::active_holds(index, f.id)?.first() {
                return Err(RecordsError::FailedPrecondition {
                    kind: ObjectKind::File,
                    id: id.to_string(),
                    reason: format!(
                        "is held by hold {} ({}; {}): release it before the transfer",
                        h.id, h.reason, h.reference
                    ),
                });
            }
            objects.push(
                Mapper {
                    index,
                    with_versions: true,
                    decisions: Some(&p.decisions),
                }
                .file(&f)?,
            );
        }
        let sent = objects_of(&objects);
        // The ZIP carries the evidence file (crate::evidence) beside the XML and the files.
        let out = super::evidence::write_transfer(
            self,
            &header(p.id, &parties.agency, &parties.archive),
            &objects,
            out,
        )?;
        self.step(
            actor,
            kind::DISPOSAL_TRANSFER,
            p.id,
            serde_json::json!({
                "files": files,
                "objects": sent,
                "two_stage": transfer == TransferKind::TwoStage,
                "resend": transfer == TransferKind::Resend,
            }),
        )?;
        Ok(out)
    }

    /// The archive's receipt of a transfer (0507).
    fn transfer_receipt(
        &self,
        actor: &str,
        xml: &[u8],
        check: &dyn Fn(&MessageHeader) -> Result<(), RecordsError>,
    ) -> Result<DisposalProcess, RecordsError> {
        let receipt =
            xdomea::read_0507(xml).map_err(|e| refused(MessageType::TransferReceipt, e))?;
        check(&receipt.header)?;
        let p = self.disposal_process(receipt.header.process_id)?;
        if p.stage != ProcessStage::TransferSent {
            return Err(wrong_stage(
                &p,
                "a transfer receipt (0507) answers a transfer (stage transferred)",
                "",
            ));
        }
        self.step(actor, kind::DISPOSAL_TRANSFER_RECEIPT, p.id, Value::Null)?;
        self.disposal_process(p.id)
    }

    /// The archive's import confirmation (0506), object by object (see [`super::import`]):
    /// files whose transferred objects are all confirmed and none failed become transferred
    /// (and may be destroyed, with their parts appraised V); the others stay, each named
    /// with the archive's reason, and may be offered again. A later 0506 of the same
    /// process may settle the files an earlier one left open.
    fn import_confirmation(
        &self,
        actor: &str,
        xml: &[u8],
        check: &dyn Fn(&MessageHeader) -> Result<(), RecordsError>,
    ) -> Result<DisposalProcess, RecordsError> {
        let conf =
            xdomea::read_0506(xml).map_err(|e| refused(MessageType::ImportConfirmation, e))?;
        check(&conf.header)?;
        let p = self.disposal_process(conf.header.process_id)?;
        let index = self.tenant.index();
        let transferred = p.files_to_archive();
        let pending: HashSet<Uuid> = match p.stage {
            ProcessStage::TransferSent | ProcessStage::TransferReceived => {
                transferred.iter().copied().collect()
            }
            ProcessStage::Confirmed => {
                let mut open = HashSet::new();
                for f in &transferred {
                    let still_open = matches!(
                        super::retention::load_progress(index, *f)?,
                        Some(DisposalProgress::ImportFailed { process, .. }) if process == p.id
                    );
                    if still_open {
                        open.insert(*f);
                    }
                }
                if open.is_empty() {
                    return Err(wrong_stage(
                        &p,
                        "its import confirmation (0506) settled every file already",
                        "; a later 0506 is read only while a file of it is not imported",
                    ));
                }
                open
            }
            _ => {
                return Err(wrong_stage(
                    &p,
                    "an import confirmation (0506) answers a transfer (stage transferred or \
                     transfer received)",
                    "",
                ))
            }
        };
        // Processes transferred before the objects sent were recorded: what would be sent.
        let sent = if p.sent.is_empty() {
            let mut objects = Vec::new();
            for f in &transferred {
                objects.push(
                    Mapper {
                        index,
                        with_versions: false,
                        decisions: Some(&p.decisions),
                    }
                    .file(&top_level_file(index, *f)?)?,
                );
            }
            objects_of(&objects)
        } else {
            p.sent.clone()
        };
        let evaluation = import::evaluate(index, &p, &sent, &pending, &conf).map_err(|e| {
            RecordsError::RefusedMessage {
                message: MessageType::ImportConfirmation.code().into(),
                element: format!(
                    "/{}/{}",
                    MessageType::ImportConfirmation.element_name(),
                    e.element
                ),
                rule: e.rule.into(),
                reason: e.reason,
            }
        })?;
        self.step(
            actor,
            kind::DISPOSAL_IMPORT_CONFIRM,
            p.id,
            serde_json::to_value(&evaluation).map_err(|e| RecordsError::Internal(e.to_string()))?,
        )?;
        self.disposal_process(p.id)
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

/// The summary of a file's import in words (the process's `confirmations`).
fn confirmation_text(
    file: Uuid,
    f: &FileImport,
    results: &BTreeMap<Uuid, ImportOutcome>,
) -> String {
    if !f.imported {
        let problems: Vec<String> = f
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.object, p.reason))
            .collect();
        return format!("error: {}", problems.join("; "));
    }
    if let Some(id) = results.get(&file).and_then(|r| r.archive_id.clone()) {
        return id;
    }
    let ids: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.file == file)
        .filter_map(|(o, r)| r.archive_id.as_ref().map(|a| format!("{o}: {a}")))
        .collect();
    if ids.is_empty() {
        "imported (the archive gave no archive id)".into()
    } else {
        format!("imported; archive ids {}", ids.join(", "))
    }
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
            sent: Vec::new(),
            results: BTreeMap::new(),
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
            for f in &p.files {
                if let Some(d) = p.decisions.get(f) {
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
            if let Some(sent) = step
                .get("objects")
                .and_then(|v| serde_json::from_value::<Vec<SentObject>>(v.clone()).ok())
            {
                p.sent = sent;
            }
            p.stage = ProcessStage::TransferSent;
            for f in files {
                progress.push((f, DisposalProgress::TransferSent { process, on }));
            }
        }
        kind::DISPOSAL_TRANSFER_RECEIPT => p.stage = ProcessStage::TransferReceived,
        kind::DISPOSAL_IMPORT_CONFIRM if step.get("files").is_some() => {
            let evaluation: import::Evaluation =
                serde_json::from_value(step.clone()).map_err(|e| fail(e.to_string()))?;
            p.results = evaluation.results;
            for (f, outcome) in &evaluation.files {
                p.confirmations
                    .insert(*f, confirmation_text(*f, outcome, &p.results));
                let state = if outcome.imported {
                    DisposalProgress::Transferred {
                        process,
                        archive_id: p
                            .results
                            .get(f)
                            .and_then(|r| r.archive_id.clone())
                            .unwrap_or_default(),
                        on,
                        archive_ids: p
                            .results
                            .iter()
                            .filter(|(_, r)| r.file == *f)
                            .filter_map(|(o, r)| r.archive_id.clone().map(|a| (*o, a)))
                            .collect(),
                    }
                } else {
                    DisposalProgress::ImportFailed {
                        process,
                        on,
                        problems: outcome.problems.clone(),
                    }
                };
                progress.push((*f, state));
            }
            p.stage = ProcessStage::Confirmed;
        }
        kind::DISPOSAL_IMPORT_CONFIRM => {
            // Recorded before confirmations were read object by object: per file, an
            // archive id or an error text.
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
                            archive_ids: BTreeMap::new(),
                        },
                    ));
                } else {
                    let e = r.get("error").and_then(Value::as_str).unwrap_or_default();
                    p.confirmations.insert(f, format!("error: {e}"));
                    progress.push((
                        f,
                        DisposalProgress::ImportFailed {
                            process,
                            on,
                            problems: vec![ObjectProblem {
                                object: f,
                                reason: e.to_owned(),
                            }],
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
