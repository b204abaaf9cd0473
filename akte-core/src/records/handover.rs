//! Handover of files to another agency (Abgabe, xdomea 0401 to 0403), and taking over
//! packages (a 0401 from another agency, or a 0503 another system wrote of its stock) as
//! legacy import.
//!
//! The giving side writes the 0401 with every document, version and primary file and each
//! object's history, and records `handover.send`. Receipt (0403) and import confirmation
//! (0402) of the receiving side are read back: a file every object of which the receiver
//! imported is closed as handed over ([`HandedOver`]), keeps its metadata, content and
//! proofs, and takes nothing new. Its content is not removed: the giving agency's records
//! stay under their retention and leave only through disposal (`destroy`), which is the one
//! path that removes anything (DOMAIN.md: retention is law).
//!
//! The receiving side imports a package object by object with
//! [`TenantRecords::import_objects`]: original references, dates, actors and history,
//! the same ids, each object's origin naming the sender and the SHA-256 of the package;
//! then answers with 0403 and 0402.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::digest::Digest;
use crate::index::TenantIndex;
use crate::xdomea::{
    self, Handover, HandoverResult, HistoryRecord, MessageHeader, MessageType, ObjectExtras, Party,
    ReceivedPackage, SendingSystem, TransferOptions,
};

use super::event::kind;
use super::legacy::{
    ImportCase, ImportDocument, ImportFile, ImportItem, ImportObject, ImportParent, ImportPlanUnit,
    ImportReport, ImportSource, ImportVersion, ItemStatus,
};
use super::mapping::{children, Mapper};
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, NewRendition, Plan};
use super::types::*;
use super::{RecordsError, TenantRecords};

/// Largest message XML read out of a package, in bytes.
pub const MAX_PACKAGE_XML: u64 = 256 << 20;

fn internal(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Internal(e.to_string())
}

fn refused(message: &str, reason: impl Into<String>) -> RecordsError {
    RecordsError::RefusedMessage {
        message: message.into(),
        element: String::new(),
        rule: "package".into(),
        reason: reason.into(),
    }
}

fn xdomea_error(message: &str, e: xdomea::XdomeaError) -> RecordsError {
    RecordsError::RefusedMessage {
        message: message.into(),
        element: String::new(),
        rule: "xdomea".into(),
        reason: e.to_string(),
    }
}

/// A handover as the giving side records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverProcess {
    /// The xdomea ProzessID.
    pub id: Uuid,
    /// The receiving agency, as named in the 0401.
    pub receiver: String,
    /// The files handed over.
    pub files: Vec<Uuid>,
    /// Every object sent, with its top-level file.
    pub objects: Vec<(Uuid, Uuid)>,
    /// When the 0401 was written.
    pub sent_on: NaiveDate,
    /// SHA-256 of the 0401's XML.
    pub message_digest: Digest,
    /// When the receipt (0403) was read.
    pub receipt_on: Option<NaiveDate>,
    /// When the import confirmation (0402) was read.
    pub confirmed_on: Option<NaiveDate>,
    /// Objects the receiver did not import, with its reasons.
    pub failed: Vec<(Uuid, Vec<String>)>,
}

/// What writing a 0401 did.
#[derive(Debug, Clone)]
pub struct HandoverSent {
    /// The process.
    pub process: HandoverProcess,
    /// Name of the ZIP by xdomea's convention.
    pub zip_name: String,
}

/// How a package is taken over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageOptions {
    /// Plan unit for files whose plan unit code is unknown here (or absent); `None`
    /// refuses such files, unless `create_plan_units`.
    pub plan_unit: Option<Uuid>,
    /// Create the plan units the package names and this tenant lacks (code and title as
    /// given, default retention).
    pub create_plan_units: bool,
    /// Source system recorded on every object; by default the sender's agency key (or
    /// `xdomea:{ProzessID}` without one).
    pub source_system: Option<String>,
    /// Limits of the ZIP.
    pub limits: PackageLimits,
}

/// Limits a package must keep, checked before anything is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageLimits {
    /// Most entries in the ZIP.
    pub max_entries: usize,
    /// Largest entry, uncompressed.
    pub max_entry_bytes: u64,
    /// All entries together, uncompressed.
    pub max_total_bytes: u64,
    /// Highest ratio of uncompressed to compressed size of an entry (ZIP bombs).
    pub max_ratio: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_entries: 1_000_000,
            max_entry_bytes: 8 << 30,
            max_total_bytes: 1 << 40,
            max_ratio: 1000,
        }
    }
}

/// What taking over a package did.
#[derive(Debug, Clone)]
pub struct PackageImport {
    /// 0401 or 0503.
    pub message: MessageType,
    /// The package's Kopf.
    pub header: MessageHeader,
    /// SHA-256 of the whole ZIP, recorded on every imported object.
    pub digest: Digest,
    /// The source system recorded.
    pub source_system: String,
    /// The import report.
    pub report: ImportReport,
    /// Per object of the package: imported (now or before) or not, with the reason.
    pub results: Vec<HandoverResult>,
}

impl PackageImport {
    /// The header of the answers (0402, 0403): same process, sender and receiver swapped.
    pub fn answer_header(&self) -> MessageHeader {
        MessageHeader {
            process_id: self.header.process_id,
            created: Utc::now().fixed_offset(),
            sender: self.header.receiver.clone(),
            receiver: self.header.sender.clone(),
            system: Some(SendingSystem::akte(None)),
            note: None,
            receipt_requested: false,
            archive_id_requested: false,
        }
    }

    /// The receipt (0403) as a ZIP, `{ProzessID}_Abgabe.EmpfangBestaetigen.0403.zip`.
    pub fn receipt_zip(&self) -> Result<Vec<u8>, RecordsError> {
        let header = self.answer_header();
        let xml = xdomea::write_0403(&header).map_err(|e| xdomea_error("0403", e))?;
        message_zip(&header, MessageType::HandoverReceipt, &xml)
    }

    /// The import confirmation (0402) as a ZIP.
    pub fn confirmation_zip(&self) -> Result<Vec<u8>, RecordsError> {
        let header = self.answer_header();
        let xml =
            xdomea::write_0402(&header, &self.results).map_err(|e| xdomea_error("0402", e))?;
        message_zip(&header, MessageType::HandoverImportConfirmation, &xml)
    }
}

fn message_zip(
    header: &MessageHeader,
    message: MessageType,
    xml: &[u8],
) -> Result<Vec<u8>, RecordsError> {
    let out = xdomea::write_message_zip(std::io::Cursor::new(Vec::new()), header, message, xml)
        .map_err(|e| xdomea_error(message.code(), e))?;
    Ok(out.into_inner())
}

/// A party's name for the records: agency key, institution, or the first address line.
fn party_label(p: &Party) -> String {
    p.agency_code
        .clone()
        .or_else(|| p.institution.clone())
        .or_else(|| p.org_unit.clone())
        .or_else(|| p.address_lines.first().cloned())
        .or_else(|| {
            p.person.as_ref().map(|n| {
                [n.given_name.as_deref(), n.family_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .unwrap_or_default()
}

fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Names of the metadata fields a 0401 of akte carries in its extension.
mod field {
    pub const PREVIOUS_REFERENCE: &str = "vorheriges_kennzeichen";
    pub const CREATED_ON: &str = "ursprung.erstellt_am";
    pub const CREATED_BY: &str = "ursprung.erstellt_von";
    pub const ACTOR: &str = "ursprung.akteur";
    pub const MEDIA_TYPE: &str = "medientyp";
    pub fn version(n: u32, what: &str) -> String {
        format!("version.{n}.{what}")
    }
}

/// History and further metadata of every object of the mapped files.
fn extras_of(
    records: &TenantRecords,
    index: &TenantIndex,
    files: &[xdomea::FileObject],
) -> Result<HashMap<Uuid, ObjectExtras>, RecordsError> {
    let mut out = HashMap::new();
    let mut ids = Vec::new();
    fn doc(d: &xdomea::DocumentObject, ids: &mut Vec<Uuid>) {
        ids.push(d.id);
        for a in &d.attachments {
            doc(&a.document, ids);
        }
    }
    fn case(c: &xdomea::CaseObject, ids: &mut Vec<Uuid>) {
        ids.push(c.id);
        c.documents.iter().for_each(|d| doc(d, ids));
        c.sub_cases.iter().for_each(|s| case(s, ids));
    }
    fn file(f: &xdomea::FileObject, ids: &mut Vec<Uuid>) {
        ids.push(f.id);
        f.documents.iter().for_each(|d| doc(d, ids));
        f.cases.iter().for_each(|c| case(c, ids));
        f.sub_files.iter().for_each(|s| file(s, ids));
    }
    files.iter().for_each(|f| file(f, &mut ids));
    // Each rendition's name in the ZIP, under which its media type travels.
    let mut zip_names: HashMap<Uuid, String> = HashMap::new();
    for f in files {
        xdomea::for_each_rendition(std::slice::from_ref(f), &mut |r| {
            zip_names.insert(r.id, xdomea::primary_file_name(r));
        });
    }
    for id in ids {
        let obj = get_object(index, id)?;
        let mut extras = ObjectExtras::default();
        // What the object went through before it came here, then what it went through here.
        for h in records.original_history(id)? {
            extras.history.push(HistoryRecord {
                field: h.field,
                old: h.old,
                new: h.new,
                actor: h.actor,
                at: h.at.fixed_offset(),
                remark: h.remark,
                action: h.action,
            });
        }
        for kv in index.scan_prefix(schema::history(id)) {
            let (_, v) = kv?;
            let item: HistoryItem = serde_json::from_slice(&v).map_err(internal)?;
            let record =
                |field: Option<String>, old: Option<String>, new: Option<String>| HistoryRecord {
                    field,
                    old,
                    new,
                    actor: item.actor.clone(),
                    at: item.at.fixed_offset(),
                    remark: item.reason.clone(),
                    action: item.action.clone(),
                };
            if item.changes.is_empty() {
                extras.history.push(record(None, None, None));
            }
            for c in &item.changes {
                extras.history.push(record(
                    Some(c.field.clone()),
                    json_text(&c.old),
                    json_text(&c.new),
                ));
            }
        }
        let origin = super::projection::origin_of(&obj).cloned();
        let created = obj.created().clone();
        let m = &mut extras.metadata;
        m.push((
            field::CREATED_ON.into(),
            origin
                .as_ref()
                .and_then(|o| o.created_on)
                .unwrap_or(created.at.date_naive())
                .to_string(),
        ));
        let by = origin
            .as_ref()
            .map(|o| o.created_by.clone())
            .filter(|b| !b.is_empty())
            .unwrap_or(created.actor.clone());
        if !by.is_empty() {
            m.push((field::CREATED_BY.into(), by));
        }
        for a in origin.iter().flat_map(|o| o.actors.iter()) {
            m.push((field::ACTOR.into(), a.clone()));
        }
        match &obj {
            Object::File(f) => {
                for r in &f.previous_references {
                    m.push((field::PREVIOUS_REFERENCE.into(), r.clone()));
                }
            }
            Object::Document(d) => {
                for n in 1..=d.versions {
                    let v = records.version(d.id, n)?;
                    if !v.comment.is_empty() {
                        m.push((field::version(n, "kommentar"), v.comment.clone()));
                    }
                    let (on, by) = match &v.original {
                        Some(o) => (o.on, o.by.clone()),
                        None => (Some(v.created.at.date_naive()), v.created.actor.clone()),
                    };
                    if let Some(on) = on {
                        m.push((field::version(n, "erstellt_am"), on.to_string()));
                    }
                    if !by.is_empty() {
                        m.push((field::version(n, "erstellt_von"), by));
                    }
                    for r in &v.renditions {
                        if let Some(name) = zip_names.get(&r.id) {
                            m.push((
                                format!("{}.{name}", field::MEDIA_TYPE),
                                r.media_type.clone(),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        out.insert(id, extras);
    }
    Ok(out)
}

impl TenantRecords {
    /// Hands files over to another agency: writes the 0401 ZIP (every document, version
    /// and primary file, each object's history and further metadata) to `out` and records
    /// the handover. Only open or closed top-level files that are not in disposal, not
    /// destroyed and not already handed over or in a pending handover can be handed over.
    pub fn export_handover<W: Write + Seek>(
        &self,
        actor: &str,
        files: &[Uuid],
        sender: Party,
        receiver: Party,
        out: W,
    ) -> Result<(W, HandoverSent), RecordsError> {
        if files.is_empty() {
            return Err(RecordsError::Invalid {
                field: "files".into(),
                reason: "name at least one file".into(),
            });
        }
        let index = self.tenant.index();
        let mut mapped = Vec::with_capacity(files.len());
        for id in files {
            let f = match get_object(index, *id)? {
                Object::File(f) => f,
                other => {
                    return Err(RecordsError::WrongKind {
                        id: id.to_string(),
                        expected: "file".into(),
                        found: other.kind(),
                    })
                }
            };
            check_handover(index, &f)?;
            let mapper = Mapper {
                index,
                with_versions: true,
                decisions: None,
            };
            mapped.push(mapper.file(&f)?);
        }
        let handover = Handover {
            extras: extras_of(self, index, &mapped)?,
            files: mapped,
        };
        let header = MessageHeader {
            process_id: super::schema::new_id(),
            created: Utc::now().fixed_offset(),
            sender,
            receiver: receiver.clone(),
            system: Some(SendingSystem::akte(None)),
            note: None,
            receipt_requested: true,
            archive_id_requested: false,
        };
        let xml =
            xdomea::write_0401_xml(&header, &handover).map_err(|e| xdomea_error("0401", e))?;
        let content = self.tenant.content();
        let out = xdomea::write_0401(out, &header, &handover, TransferOptions::default(), |r| {
            content.get(&r.digest)
        })
        .map_err(|e| xdomea_error("0401", e))?;
        let objects = super::mapping::objects_of(&handover.files)
            .into_iter()
            .map(|o| (o.id, o.file))
            .collect();
        let process = HandoverProcess {
            id: header.process_id,
            receiver: party_label(&receiver),
            files: files.to_vec(),
            objects,
            sent_on: Utc::now().date_naive(),
            message_digest: Digest::of(&xml),
            receipt_on: None,
            confirmed_on: None,
            failed: Vec::new(),
        };
        let recorded = process.clone();
        self.write_plan(actor, |index| {
            // Checked again under the append session: nothing may have changed meanwhile.
            for id in files {
                if let Object::File(f) = get_object(index, *id)? {
                    check_handover(index, &f)?;
                }
            }
            let mut record = Self::new_event(Some(recorded.id))?;
            record.set.insert(
                "process".into(),
                serde_json::to_value(&recorded).map_err(internal)?,
            );
            Ok(Plan::event(kind::HANDOVER_SEND, record, vec![]))
        })?;
        Ok((
            out,
            HandoverSent {
                zip_name: xdomea::message_zip_name(process.id, MessageType::Handover),
                process,
            },
        ))
    }

    /// A handover process of this tenant.
    pub fn handover_process(&self, id: Uuid) -> Result<HandoverProcess, RecordsError> {
        let not_found = || RecordsError::NotFound {
            what: "handover process".into(),
            id: id.to_string(),
        };
        let p = load_process(self.tenant.index(), id)?.ok_or_else(not_found)?;
        // A process is as hidden as the least visible of its files.
        if !self.admit_all(&p.files)? {
            return Err(not_found());
        }
        Ok(p)
    }

    /// Reads the receiving agency's answer to a handover, a 0403 (receipt) or a 0402
    /// (import confirmation), as a ZIP. After a 0402, every file all of whose objects the
    /// receiver imported is closed as handed over, with `receiving_references` (by file)
    /// recorded where given; the others stay as they are and the process lists what
    /// failed. Returns the process afterwards.
    pub fn read_handover_answer<R: Read + Seek>(
        &self,
        actor: &str,
        zip: R,
        receiving_references: &BTreeMap<Uuid, String>,
    ) -> Result<HandoverProcess, RecordsError> {
        let received = xdomea::read_received_zip(
            zip,
            &[
                MessageType::HandoverReceipt,
                MessageType::HandoverImportConfirmation,
            ],
            crate::records::MAX_MESSAGE_XML,
        )
        .map_err(|e| xdomea_error("ZIP", e))?;
        let today = Utc::now().date_naive();
        let pid = match received.message {
            MessageType::HandoverReceipt => {
                let r = xdomea::read_0403(&received.xml).map_err(|e| xdomea_error("0403", e))?;
                let pid = r.header.process_id;
                self.write_plan(actor, |index| {
                    let mut p = expect_process(index, pid)?;
                    if p.receipt_on.is_some() {
                        return Ok(Plan::Done(Uuid::nil()));
                    }
                    p.receipt_on = Some(today);
                    let mut record = Self::new_event(Some(pid))?;
                    record.set.insert(
                        "process".into(),
                        serde_json::to_value(&p).map_err(internal)?,
                    );
                    Ok(Plan::event(kind::HANDOVER_RECEIPT, record, vec![]))
                })?;
                pid
            }
            _ => {
                let c = xdomea::read_0402(&received.xml).map_err(|e| xdomea_error("0402", e))?;
                let pid = c.header.process_id;
                self.write_plan(actor, |index| {
                    let mut p = expect_process(index, pid)?;
                    if p.confirmed_on.is_some() {
                        return Err(RecordsError::ProcessState {
                            process: pid,
                            reason: "was confirmed already (0402 read before)".into(),
                        });
                    }
                    let sent: HashMap<Uuid, Uuid> = p.objects.iter().copied().collect();
                    let mut answered: HashMap<Uuid, &HandoverResult> = HashMap::new();
                    for r in &c.results {
                        if !sent.contains_key(&r.id) {
                            return Err(RecordsError::RefusedMessage {
                                message: "0402".into(),
                                element: "AbgegebenesObjekt/IDSGO".into(),
                                rule: "unknown-object".into(),
                                reason: format!("{} was not handed over in process {pid}", r.id),
                            });
                        }
                        answered.insert(r.id, r);
                    }
                    // A file counts as taken over when the receiver confirmed the file
                    // itself and said of nothing in it that it failed.
                    let mut failed = Vec::new();
                    for (obj, _) in &p.objects {
                        match answered.get(obj) {
                            Some(r) if !r.success => failed.push((*obj, r.error_messages.clone())),
                            None if p.files.contains(obj) => {
                                failed.push((*obj, vec!["not confirmed in the 0402".to_owned()]))
                            }
                            _ => {}
                        }
                    }
                    let mut moves = Vec::new();
                    for file in &p.files {
                        if failed.iter().any(|(o, _)| sent.get(o) == Some(file)) {
                            continue;
                        }
                        let f = match get_object(index, *file)? {
                            Object::File(f) => f,
                            _ => continue,
                        };
                        let handed = HandedOver {
                            process: pid,
                            to: p.receiver.clone(),
                            on: today,
                            receiving_reference: receiving_references.get(file).cloned(),
                        };
                        let mut set = serde_json::Map::new();
                        set.insert(
                            "status".into(),
                            serde_json::to_value(Status::Closed).map_err(internal)?,
                        );
                        set.insert(
                            "closed_on".into(),
                            serde_json::to_value(f.closed_on.unwrap_or(today)).map_err(internal)?,
                        );
                        set.insert(
                            "handed_over".into(),
                            serde_json::to_value(&handed).map_err(internal)?,
                        );
                        moves.push(super::event::Move { id: *file, set });
                        // Its open cases and sub-files close with it.
                        for o in open_parts(index, *file)? {
                            let mut s = serde_json::Map::new();
                            s.insert(
                                "status".into(),
                                serde_json::to_value(Status::Closed).map_err(internal)?,
                            );
                            s.insert(
                                "closed_on".into(),
                                serde_json::to_value(today).map_err(internal)?,
                            );
                            moves.push(super::event::Move { id: o, set: s });
                        }
                    }
                    p.confirmed_on = Some(today);
                    p.failed = failed;
                    let mut record = Self::new_event(Some(pid))?;
                    record.set.insert(
                        "process".into(),
                        serde_json::to_value(&p).map_err(internal)?,
                    );
                    record.moves = moves;
                    Ok(Plan::event(kind::HANDOVER_CONFIRM, record, vec![]))
                })?;
                pid
            }
        };
        self.handover_process(pid)
    }

    /// Takes over a package (a 0401 handover, or a 0503 of another system's stock) as a
    /// legacy import: checks the ZIP against the limits and reads the message strictly
    /// before anything is stored; then imports object by object (idempotent per object id,
    /// so a rerun resumes), streaming every primary file from the ZIP into the content
    /// store. `progress` is called after each object.
    pub fn import_package<R: Read + Seek>(
        &self,
        actor: &str,
        mut zip: R,
        options: &PackageOptions,
        progress: &mut dyn FnMut(&ImportReport),
    ) -> Result<PackageImport, RecordsError> {
        // The package's digest, recorded on every object it brings.
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        zip.seek(SeekFrom::Start(0))
            .map_err(|e| refused("ZIP", e.to_string()))?;
        loop {
            let n = zip
                .read(&mut buf)
                .map_err(|e| refused("ZIP", e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest = Digest(hasher.finalize().into());
        zip.seek(SeekFrom::Start(0))
            .map_err(|e| refused("ZIP", e.to_string()))?;
        let mut archive = ::zip::ZipArchive::new(zip).map_err(|e| refused("ZIP", e.to_string()))?;
        check_limits(&mut archive, &options.limits)?;
        let received = {
            let mut xml = None;
            for i in 0..archive.len() {
                let name = archive.name_for_index(i).unwrap_or_default().to_owned();
                if let Some((message, _)) = xdomea::parse_message_xml_name(&name) {
                    if !matches!(message, MessageType::Handover | MessageType::Transfer) {
                        return Err(refused(
                            "ZIP",
                            format!("{name} is a {}, not a 0401 or 0503", message.code()),
                        ));
                    }
                    if xml.is_some() {
                        return Err(refused("ZIP", "more than one message in the package"));
                    }
                    let entry = archive
                        .by_index(i)
                        .map_err(|e| refused("ZIP", e.to_string()))?;
                    if entry.size() > MAX_PACKAGE_XML {
                        return Err(refused(
                            "ZIP",
                            format!("{name} is larger than {MAX_PACKAGE_XML} bytes"),
                        ));
                    }
                    let mut bytes = Vec::new();
                    entry
                        .take(MAX_PACKAGE_XML + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| refused("ZIP", e.to_string()))?;
                    // The size in the ZIP's directory may lie; what counts is what inflates.
                    if bytes.len() as u64 > MAX_PACKAGE_XML {
                        return Err(refused(
                            "ZIP",
                            format!("{name} is larger than {MAX_PACKAGE_XML} bytes"),
                        ));
                    }
                    xml = Some((message, bytes));
                }
            }
            xml.ok_or_else(|| {
                refused(
                    "ZIP",
                    "no 0401 or 0503 message ({ProzessID}_{Nachrichtenname}.xml) in it",
                )
            })?
        };
        let (message, xml) = received;
        let package =
            xdomea::read_package(&xml, message).map_err(|e| xdomea_error(message.code(), e))?;
        drop(xml);
        for p in package.primary_files.values() {
            if archive.index_for_name(&p.zip_name).is_none() {
                return Err(refused(
                    message.code(),
                    format!(
                        "primary file {} is named in the message but not in the ZIP",
                        p.zip_name
                    ),
                ));
            }
        }
        let source_system = match &options.source_system {
            Some(s) => s.clone(),
            None => package
                .header
                .sender
                .agency_code
                .clone()
                .map(|c| format!("xdomea:{c}"))
                .unwrap_or_else(|| format!("xdomea:{}", package.header.process_id)),
        };
        let source = ImportSource {
            system: source_system.clone(),
            package: Some(digest),
        };
        let mut report = ImportReport::default();
        let mut results = Vec::new();
        let mut taker = Taker {
            records: self,
            actor,
            source: &source,
            package: &package,
            archive: &mut archive,
            options,
            report: &mut report,
            results: &mut results,
            progress,
        };
        for f in &package.files {
            taker.top_file(f)?;
        }
        Ok(PackageImport {
            message,
            header: package.header.clone(),
            digest,
            source_system,
            report,
            results,
        })
    }
}

fn check_limits<R: Read + Seek>(
    archive: &mut ::zip::ZipArchive<R>,
    limits: &PackageLimits,
) -> Result<(), RecordsError> {
    if archive.len() > limits.max_entries {
        return Err(refused(
            "ZIP",
            format!("{} entries, at most {}", archive.len(), limits.max_entries),
        ));
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| refused("ZIP", e.to_string()))?;
        let name = entry.name().to_owned();
        if let Err(reason) = xdomea::check_entry_name(&name) {
            return Err(refused("ZIP", format!("entry {name:?}: {reason}")));
        }
        if entry.size() > limits.max_entry_bytes {
            return Err(refused(
                "ZIP",
                format!(
                    "entry {name} is {} bytes uncompressed, more than {}",
                    entry.size(),
                    limits.max_entry_bytes
                ),
            ));
        }
        if entry.size()
            > entry
                .compressed_size()
                .max(1)
                .saturating_mul(limits.max_ratio)
            && entry.size() > 1 << 20
        {
            return Err(refused(
                "ZIP",
                format!(
                    "entry {name} expands {} bytes to {}: more than {}-fold (a ZIP bomb?)",
                    entry.compressed_size(),
                    entry.size(),
                    limits.max_ratio
                ),
            ));
        }
        total = total.saturating_add(entry.size());
    }
    if total > limits.max_total_bytes {
        return Err(refused(
            "ZIP",
            format!(
                "{total} bytes uncompressed, more than {}",
                limits.max_total_bytes
            ),
        ));
    }
    Ok(())
}

fn check_handover(index: &TenantIndex, f: &File) -> Result<(), RecordsError> {
    let refuse = |reason: String| RecordsError::FailedPrecondition {
        kind: ObjectKind::File,
        id: f.id.to_string(),
        reason,
    };
    if f.parent_file.is_some() {
        return Err(refuse("is a sub-file; hand over its file".into()));
    }
    if let Some(h) = &f.handed_over {
        return Err(refuse(format!("was handed over to {} on {}", h.to, h.on)));
    }
    if let Some(v) = index.get(schema::key(tag::FILE_HANDOVER).id(f.id))? {
        let pid = Uuid::from_slice(&v).map_err(internal)?;
        return Err(refuse(format!(
            "is in handover process {pid}, not yet confirmed"
        )));
    }
    if let Some(p) = super::retention::load_progress(index, f.id)? {
        return Err(refuse(format!("is in disposal ({p})")));
    }
    Ok(())
}

fn load_process(index: &TenantIndex, id: Uuid) -> Result<Option<HandoverProcess>, RecordsError> {
    match index.get(schema::key(tag::HANDOVER).id(id))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(internal),
    }
}

fn expect_process(index: &TenantIndex, id: Uuid) -> Result<HandoverProcess, RecordsError> {
    load_process(index, id)?.ok_or_else(|| RecordsError::RefusedMessage {
        message: "answer".into(),
        element: "Kopf/ProzessID".into(),
        rule: "unknown-process".into(),
        reason: format!("{id} is no handover of this tenant"),
    })
}

/// Open cases, sub-cases and sub-files below a file.
fn open_parts(index: &TenantIndex, id: Uuid) -> Result<Vec<Uuid>, RecordsError> {
    let mut out = Vec::new();
    let mut todo = vec![id];
    while let Some(parent) = todo.pop() {
        for child in children(index, parent)? {
            if child.kind() == ObjectKind::Document {
                continue;
            }
            if child.status() == Status::Open {
                out.push(child.id());
            }
            todo.push(child.id());
        }
    }
    Ok(out)
}

/// The projection of the handover events.
pub(super) fn apply(
    batch: &mut crate::index::IndexBatch,
    kind_name: &str,
    event: &super::event::EventRecord,
    seq: u64,
) -> Result<(), crate::index::IndexError> {
    let fail = |reason: String| crate::index::IndexError::Projection { seq, reason };
    let p: HandoverProcess = event
        .set
        .get("process")
        .cloned()
        .ok_or_else(|| fail("handover event without its process".into()))
        .and_then(|v| serde_json::from_value(v).map_err(|e| fail(e.to_string())))?;
    let bytes = serde_json::to_vec(&p).map_err(|e| fail(e.to_string()))?;
    batch.insert(schema::key(tag::HANDOVER).id(p.id), bytes);
    match kind_name {
        kind::HANDOVER_SEND => {
            for f in &p.files {
                batch.insert(schema::key(tag::FILE_HANDOVER).id(*f), p.id.as_bytes());
            }
        }
        kind::HANDOVER_CONFIRM => {
            for f in &p.files {
                batch.remove(schema::key(tag::FILE_HANDOVER).id(*f));
            }
        }
        _ => {}
    }
    Ok(())
}

struct Taker<'a, R: Read + Seek> {
    records: &'a TenantRecords,
    actor: &'a str,
    source: &'a ImportSource,
    package: &'a ReceivedPackage,
    archive: &'a mut ::zip::ZipArchive<R>,
    options: &'a PackageOptions,
    report: &'a mut ImportReport,
    results: &'a mut Vec<HandoverResult>,
    progress: &'a mut dyn FnMut(&ImportReport),
}

/// The custom field values a package carries for an object, by field name (the first
/// value of a name counts); the receiving tenant's definitions type and check them.
fn custom_values(values: &[xdomea::CustomValue]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in values {
        out.entry(v.name.clone()).or_insert_with(|| v.value.clone());
    }
    out
}

fn date_field(extras: Option<&ObjectExtras>, name: &str) -> Option<NaiveDate> {
    extras
        .and_then(|e| e.get(name))
        .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
}

/// A Kontakt as one line of text (sender, recipient).
fn contact_text(p: &Party) -> String {
    party_label(p)
}

/// A media type for a file name when the package does not say.
fn media_type_for(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "xml" => "application/xml",
        "htm" | "html" => "text/html",
        "jpg" | "jpeg" | "jpe" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "eml" => "message/rfc822",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}

impl<R: Read + Seek> Taker<'_, R> {
    fn extras(&self, id: Uuid) -> Option<&ObjectExtras> {
        self.package.extras.get(&id)
    }

    fn history(&self, id: Uuid) -> Vec<OriginalHistoryItem> {
        self.extras(id)
            .map(|e| {
                e.history
                    .iter()
                    .map(|h| OriginalHistoryItem {
                        at: h.at.with_timezone(&Utc),
                        actor: h.actor.clone(),
                        action: h.action.clone(),
                        field: h.field.clone(),
                        old: h.old.clone(),
                        new: h.new.clone(),
                        remark: h.remark.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn item(&self, id: Uuid, parent: Option<ImportParent>, object: ImportObject) -> ImportItem {
        let extras = self.extras(id);
        ImportItem {
            id: Some(id),
            source_id: id.to_string(),
            parent,
            created_on: date_field(extras, field::CREATED_ON),
            created_by: extras
                .and_then(|e| e.get(field::CREATED_BY))
                .unwrap_or_default()
                .to_owned(),
            actors: extras
                .map(|e| e.all(field::ACTOR).into_iter().map(str::to_owned).collect())
                .unwrap_or_default(),
            object,
            history: self.history(id),
        }
    }

    /// Imports one item and notes the outcome; returns whether the object is there.
    fn run(&mut self, item: ImportItem) -> Result<bool, RecordsError> {
        let id = item.id.unwrap_or(Uuid::nil());
        let kind = item.object.kind();
        let outcome = self.records.import_object(self.actor, self.source, &item);
        self.note(id, &item.source_id, kind, outcome)
    }

    fn note(
        &mut self,
        id: Uuid,
        source_id: &str,
        kind: ObjectKind,
        outcome: Result<super::legacy::ImportedObject, RecordsError>,
    ) -> Result<bool, RecordsError> {
        let ok = match outcome {
            Ok(done) => {
                if done.already {
                    self.report.already_imported += 1;
                } else {
                    self.report.imported += 1;
                    if !done.warnings.is_empty() {
                        self.report.warned += 1;
                        self.report.note(super::legacy::ItemReport {
                            source_id: source_id.to_owned(),
                            kind,
                            status: ItemStatus::Imported,
                            id: Some(done.id),
                            rule: None,
                            error: None,
                            warnings: done.warnings,
                        });
                    }
                }
                self.results.push(HandoverResult {
                    id,
                    success: true,
                    error_messages: vec![],
                });
                true
            }
            Err(e) if super::legacy::item_fault(&e) => {
                self.report.failed += 1;
                self.report.note(super::legacy::ItemReport {
                    source_id: source_id.to_owned(),
                    kind,
                    status: ItemStatus::Failed,
                    id: None,
                    rule: Some(super::legacy::rule_of(&e).to_owned()),
                    error: Some(e.to_string()),
                    warnings: vec![],
                });
                self.results.push(HandoverResult {
                    id,
                    success: false,
                    error_messages: vec![e.to_string()],
                });
                false
            }
            Err(e) => return Err(e),
        };
        (self.progress)(self.report);
        Ok(ok)
    }

    /// Everything below an object that failed fails with it.
    fn skip_below(&mut self, ids: Vec<(Uuid, ObjectKind)>, why: &str) {
        for (id, kind) in ids {
            self.report.failed += 1;
            let reason = format!("not imported: {why}");
            self.report.note(super::legacy::ItemReport {
                source_id: id.to_string(),
                kind,
                status: ItemStatus::Failed,
                id: None,
                rule: Some("parent-failed".into()),
                error: Some(reason.clone()),
                warnings: vec![],
            });
            self.results.push(HandoverResult {
                id,
                success: false,
                error_messages: vec![reason],
            });
        }
        (self.progress)(self.report);
    }

    fn plan_unit_for(
        &mut self,
        f: &xdomea::FileObject,
    ) -> Result<Option<ImportParent>, RecordsError> {
        let code = f
            .plan_unit
            .as_ref()
            .and_then(|u| u.reference.clone())
            .filter(|c| !c.is_empty());
        if let Some(code) = &code {
            if self.records.plan_unit_by_code(code).is_ok() {
                return Ok(Some(ImportParent::PlanCode(code.clone())));
            }
            if self.options.create_plan_units {
                let title = f
                    .plan_unit
                    .as_ref()
                    .and_then(|u| u.title.clone())
                    .unwrap_or_else(|| code.clone());
                let item = ImportItem {
                    id: None,
                    source_id: format!("aktenplaneinheit:{code}"),
                    parent: None,
                    created_on: None,
                    created_by: String::new(),
                    actors: vec![],
                    object: ImportObject::PlanUnit(ImportPlanUnit {
                        code: code.clone(),
                        title,
                        ..ImportPlanUnit::default()
                    }),
                    history: vec![],
                };
                let outcome = self.records.import_object(self.actor, self.source, &item);
                return match outcome {
                    Ok(done) => {
                        if done.already {
                            self.report.already_imported += 1;
                        } else {
                            self.report.imported += 1;
                        }
                        Ok(Some(ImportParent::PlanCode(code.clone())))
                    }
                    Err(e) if super::legacy::item_fault(&e) => Ok(None),
                    Err(e) => Err(e),
                };
            }
        }
        Ok(self.options.plan_unit.map(ImportParent::Id))
    }

    fn top_file(&mut self, f: &xdomea::FileObject) -> Result<(), RecordsError> {
        let parent = self.plan_unit_for(f)?;
        let parent = match parent {
            Some(p) => p,
            None => {
                let code = f
                    .plan_unit
                    .as_ref()
                    .and_then(|u| u.reference.clone())
                    .unwrap_or_else(|| "(none)".into());
                let e = RecordsError::NotFound {
                    what: "plan unit".into(),
                    id: format!(
                        "{code}: the tenant has no such plan unit; give one for the package \
                         or let the import create it"
                    ),
                };
                let ok = self.note(f.id, &f.id.to_string(), ObjectKind::File, Err(e))?;
                debug_assert!(!ok);
                let below = below_file(f);
                self.skip_below(below, &format!("its file {} was not imported", f.id));
                return Ok(());
            }
        };
        self.file(f, parent)
    }

    fn file(&mut self, f: &xdomea::FileObject, parent: ImportParent) -> Result<(), RecordsError> {
        let extras = self.extras(f.id);
        let object = ImportObject::File(ImportFile {
            reference: f.reference.clone().unwrap_or_else(|| f.id.to_string()),
            previous_references: extras
                .map(|e| {
                    e.all(field::PREVIOUS_REFERENCE)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            subject: f.subject.clone().unwrap_or_else(|| "(ohne Betreff)".into()),
            begin: f.running_begin,
            end: f.running_end,
            confidentiality: f.confidentiality.map(from_x_conf).unwrap_or_default(),
            medium: f.medium.map(from_x_medium).unwrap_or_default(),
            lead_unit: f.lead_unit.clone().unwrap_or_default(),
            notes: f.remark.clone().unwrap_or_default(),
            closed_on: f.closed,
            retention: f.retention.map(from_x_retention),
            disposal: Some(from_x_decision(f.disposal)),
            custom_fields: custom_values(&f.custom_fields),
        });
        let item = self.item(f.id, Some(parent), object);
        if !self.run(item)? {
            let below = below_file(f);
            self.skip_below(below, &format!("its file {} was not imported", f.id));
            return Ok(());
        }
        let me = || Some(ImportParent::Id(f.id));
        for d in &f.documents {
            self.document(d, me())?;
        }
        for c in &f.cases {
            self.case(c, me())?;
        }
        for s in &f.sub_files {
            self.file(s, ImportParent::Id(f.id))?;
        }
        Ok(())
    }

    fn case(
        &mut self,
        c: &xdomea::CaseObject,
        parent: Option<ImportParent>,
    ) -> Result<(), RecordsError> {
        let object = ImportObject::Case(ImportCase {
            reference: c.reference.clone().unwrap_or_default(),
            subject: c.subject.clone().unwrap_or_else(|| "(ohne Betreff)".into()),
            begin: c.running_begin,
            end: c.running_end,
            confidentiality: c.confidentiality.map(from_x_conf).unwrap_or_default(),
            notes: c.remark.clone().unwrap_or_default(),
            closed_on: c.closed,
            custom_fields: custom_values(&c.custom_fields),
        });
        let item = self.item(c.id, parent, object);
        if !self.run(item)? {
            let mut below = Vec::new();
            case_ids(c, &mut below);
            below.remove(0);
            self.skip_below(below, &format!("its case {} was not imported", c.id));
            return Ok(());
        }
        for d in &c.documents {
            self.document(d, Some(ImportParent::Id(c.id)))?;
        }
        for s in &c.sub_cases {
            self.case(s, Some(ImportParent::Id(c.id)))?;
        }
        Ok(())
    }

    fn document(
        &mut self,
        d: &xdomea::DocumentObject,
        parent: Option<ImportParent>,
    ) -> Result<(), RecordsError> {
        let done = self
            .records
            .imported_object(&self.source.system, &d.id.to_string())?;
        let versions = if done.is_some() {
            // Imported by an earlier run: its bytes are stored already.
            Vec::new()
        } else {
            match self.versions(d) {
                Ok(v) => v,
                Err(e) if super::legacy::item_fault(&e) => {
                    self.note(d.id, &d.id.to_string(), ObjectKind::Document, Err(e))?;
                    let mut below = Vec::new();
                    doc_ids(d, &mut below);
                    below.remove(0);
                    self.skip_below(below, &format!("its document {} was not imported", d.id));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        let object = ImportObject::Document(ImportDocument {
            reference: d.reference.clone().unwrap_or_default(),
            subject: d.subject.clone().unwrap_or_else(|| "(ohne Betreff)".into()),
            letter_date: d.letter_date,
            received_on: d.received,
            sent_on: d.sent,
            sender: d.senders.first().map(contact_text).unwrap_or_default(),
            recipients: d
                .recipients
                .iter()
                .map(contact_text)
                .filter(|r| !r.is_empty())
                .collect(),
            clerk: d.clerk.clone().unwrap_or_default(),
            external_reference: d.foreign_reference.clone().unwrap_or_default(),
            confidentiality: d.confidentiality.map(from_x_conf).unwrap_or_default(),
            versions,
            document_type: d.kind.clone().unwrap_or_default(),
            custom_fields: custom_values(&d.custom_fields),
        });
        let item = self.item(d.id, parent, object);
        if !self.run(item)? {
            let mut below = Vec::new();
            doc_ids(d, &mut below);
            below.remove(0);
            self.skip_below(below, &format!("its document {} was not imported", d.id));
            return Ok(());
        }
        for a in &d.attachments {
            self.document(&a.document, Some(ImportParent::Id(d.id)))?;
        }
        Ok(())
    }

    /// Streams a document's primary files into the content store, checking what the
    /// package declared.
    fn versions(&mut self, d: &xdomea::DocumentObject) -> Result<Vec<ImportVersion>, RecordsError> {
        let extras = self.package.extras.get(&d.id);
        let mut out = Vec::new();
        for v in &d.versions {
            let mut renditions = Vec::new();
            let mut creator = String::new();
            for r in &v.renditions {
                let p = self.package.primary_files.get(&r.id).ok_or_else(|| {
                    internal(format!("rendition {} without its primary file", r.id))
                })?;
                if creator.is_empty() {
                    creator = p.creator.clone().unwrap_or_default();
                }
                let entry = self
                    .archive
                    .by_name(&p.zip_name)
                    .map_err(|e| invalid_file(&p.zip_name, e.to_string()))?;
                let limit = entry.size();
                let put = self
                    .records
                    .put_content(entry.take(limit.saturating_add(1)))
                    .map_err(|e| match e {
                        RecordsError::Store(s) => invalid_file(&p.zip_name, s.to_string()),
                        other => other,
                    })?;
                if put.size != limit {
                    return Err(invalid_file(
                        &p.zip_name,
                        format!("{} bytes, the ZIP says {limit}", put.size),
                    ));
                }
                if let Some(expected) = p.sha256 {
                    if expected != put.digest {
                        return Err(invalid_file(
                            &p.zip_name,
                            format!(
                                "SHA-256 {} differs from the declared {expected}",
                                put.digest
                            ),
                        ));
                    }
                }
                if let Some(size) = p.size {
                    if size != put.size {
                        return Err(invalid_file(
                            &p.zip_name,
                            format!("{} bytes, declared {size}", put.size),
                        ));
                    }
                }
                let media_type = extras
                    .and_then(|e| e.get(&format!("{}.{}", field::MEDIA_TYPE, p.zip_name)))
                    .map(str::to_owned)
                    .unwrap_or_else(|| media_type_for(&r.file_name).to_owned());
                renditions.push(NewRendition {
                    file_name: r.file_name.clone(),
                    media_type,
                    sha256: put.digest,
                    size: put.size,
                });
            }
            let n = v.number;
            out.push(ImportVersion {
                comment: extras
                    .and_then(|e| e.get(&field::version(n, "kommentar")))
                    .unwrap_or_default()
                    .to_owned(),
                created_on: date_field(extras, &field::version(n, "erstellt_am")).or_else(|| {
                    v.renditions
                        .first()
                        .and_then(|r| r.created)
                        .map(|t| t.date_naive())
                }),
                created_by: extras
                    .and_then(|e| e.get(&field::version(n, "erstellt_von")))
                    .map(str::to_owned)
                    .unwrap_or(creator),
                renditions,
            });
        }
        Ok(out)
    }
}

fn invalid_file(name: &str, reason: String) -> RecordsError {
    RecordsError::Invalid {
        field: format!("primary file {name}"),
        reason,
    }
}

fn doc_ids(d: &xdomea::DocumentObject, out: &mut Vec<(Uuid, ObjectKind)>) {
    out.push((d.id, ObjectKind::Document));
    for a in &d.attachments {
        doc_ids(&a.document, out);
    }
}

fn case_ids(c: &xdomea::CaseObject, out: &mut Vec<(Uuid, ObjectKind)>) {
    out.push((c.id, ObjectKind::Case));
    for d in &c.documents {
        doc_ids(d, out);
    }
    for s in &c.sub_cases {
        case_ids(s, out);
    }
}

/// Everything inside a file, without the file itself.
fn below_file(f: &xdomea::FileObject) -> Vec<(Uuid, ObjectKind)> {
    let mut out = Vec::new();
    for d in &f.documents {
        doc_ids(d, &mut out);
    }
    for c in &f.cases {
        case_ids(c, &mut out);
    }
    for s in &f.sub_files {
        out.push((s.id, ObjectKind::File));
        out.extend(below_file(s));
    }
    out
}

fn from_x_conf(c: xdomea::Confidentiality) -> Confidentiality {
    match c {
        xdomea::Confidentiality::Secret => Confidentiality::Secret,
        xdomea::Confidentiality::Restricted => Confidentiality::Restricted,
        xdomea::Confidentiality::Open => Confidentiality::Open,
        xdomea::Confidentiality::TopSecret => Confidentiality::TopSecret,
        xdomea::Confidentiality::Confidential => Confidentiality::Confidential,
    }
}

fn from_x_medium(m: xdomea::Medium) -> Medium {
    match m {
        xdomea::Medium::Electronic => Medium::Electronic,
        xdomea::Medium::Hybrid => Medium::Hybrid,
        xdomea::Medium::Paper => Medium::Paper,
    }
}

fn from_x_retention(r: xdomea::Retention) -> Retention {
    match r {
        xdomea::Retention::Years(y) => Retention::Years(y),
        xdomea::Retention::Unlimited => Retention::Unlimited,
    }
}

fn from_x_decision(d: xdomea::DisposalDecision) -> DisposalDecision {
    match d {
        xdomea::DisposalDecision::Archive => DisposalDecision::Archive,
        xdomea::DisposalDecision::Destroy => DisposalDecision::Destroy,
        xdomea::DisposalDecision::Appraise => DisposalDecision::Appraise,
    }
}
