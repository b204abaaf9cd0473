//! The objects of the records model, named as in xdomea 3.x (German terms in the docs).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::digest::Digest;

/// Kind of a record object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Aktenplaneinheit: a unit of the file plan.
    PlanUnit,
    /// Akte or Teilakte: a file or sub-file.
    File,
    /// Vorgang or Teilvorgang: a case or sub-case.
    Case,
    /// Dokument or Anlage: a document or attachment.
    Document,
}

impl ObjectKind {
    /// Lower-case name as used in event kinds and messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::PlanUnit => "plan_unit",
            ObjectKind::File => "file",
            ObjectKind::Case => "case",
            ObjectKind::Document => "document",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Vertraulichkeitsstufe (xdomea code list Vertraulichkeitsstufe 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Confidentiality {
    /// 001 Geheim.
    #[serde(rename = "001")]
    Secret,
    /// 002 NfD (nur für den Dienstgebrauch).
    #[serde(rename = "002")]
    Restricted,
    /// 003 Offen.
    #[default]
    #[serde(rename = "003")]
    Open,
    /// 004 Streng geheim.
    #[serde(rename = "004")]
    TopSecret,
    /// 005 Vertraulich.
    #[serde(rename = "005")]
    Confidential,
}

impl Confidentiality {
    /// The xdomea code.
    pub fn code(self) -> &'static str {
        match self {
            Confidentiality::Secret => "001",
            Confidentiality::Restricted => "002",
            Confidentiality::Open => "003",
            Confidentiality::TopSecret => "004",
            Confidentiality::Confidential => "005",
        }
    }

    /// Parses an xdomea code.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "001" => Confidentiality::Secret,
            "002" => Confidentiality::Restricted,
            "003" => Confidentiality::Open,
            "004" => Confidentiality::TopSecret,
            "005" => Confidentiality::Confidential,
            _ => return None,
        })
    }
}

/// Medium (xdomea code list Medium 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Medium {
    /// 001 Elektronisch.
    #[default]
    #[serde(rename = "001")]
    Electronic,
    /// 002 Hybrid.
    #[serde(rename = "002")]
    Hybrid,
    /// 003 Papier.
    #[serde(rename = "003")]
    Paper,
}

impl Medium {
    /// The xdomea code.
    pub fn code(self) -> &'static str {
        match self {
            Medium::Electronic => "001",
            Medium::Hybrid => "002",
            Medium::Paper => "003",
        }
    }

    /// Parses an xdomea code.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "001" => Medium::Electronic,
            "002" => Medium::Hybrid,
            "003" => Medium::Paper,
            _ => return None,
        })
    }
}

/// Aussonderungsart: what happens to a file when its retention ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum DisposalDecision {
    /// A: archivwürdig, to be transferred to the archive.
    #[serde(rename = "A")]
    Archive,
    /// V: vernichten, to be destroyed.
    #[serde(rename = "V")]
    Destroy,
    /// B: bewerten, to be appraised by the archive.
    #[default]
    #[serde(rename = "B")]
    Appraise,
}

impl DisposalDecision {
    /// The xdomea code letter.
    pub fn code(self) -> &'static str {
        match self {
            DisposalDecision::Archive => "A",
            DisposalDecision::Destroy => "V",
            DisposalDecision::Appraise => "B",
        }
    }
}

/// Aufbewahrungsfrist: years after closing, or unlimited (never destroyed, only transferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Kept for this many years after the end of the year of closing.
    Years(u16),
    /// Unbefristet.
    Unlimited,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::Years(10)
    }
}

/// Open or closed (zdA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being worked on.
    #[default]
    Open,
    /// zu den Akten: closed; retention runs from the closing date.
    Closed,
}

/// Who did something when: taken from the journal entry that did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The acting principal.
    pub actor: String,
    /// When (journal entry time).
    pub at: DateTime<Utc>,
    /// The journal entry.
    pub seq: u64,
}

/// Aktenplaneinheit: a unit of the file plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanUnit {
    /// Identifier.
    pub id: Uuid,
    /// Parent unit; `None` at the top of the plan.
    pub parent: Option<Uuid>,
    /// Kennzeichen of the unit, e.g. `022.31`; unique within the tenant.
    pub code: String,
    /// Title (Inhalt).
    pub title: String,
    /// Free description.
    pub description: String,
    /// Default retention of files in this unit.
    pub retention: Retention,
    /// Default disposal decision of files in this unit.
    pub disposal: DisposalDecision,
    /// Inactive units accept no new files.
    pub active: bool,
    /// Where an imported unit came from; `None` for units created in akte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Incremented with every change; the etag of optimistic concurrency.
    pub revision: u64,
    /// Creation.
    pub created: Stamp,
    /// Last change.
    pub updated: Stamp,
}

/// Akte or Teilakte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Identifier.
    pub id: Uuid,
    /// The plan unit the file is filed under.
    pub plan_unit: Uuid,
    /// The file this is a sub-file (Teilakte) of.
    pub parent_file: Option<Uuid>,
    /// Aktenzeichen, generated from the unit, a running number and the year; unique.
    pub reference: String,
    /// Betreff.
    pub subject: String,
    /// Laufzeit: begin.
    pub begin: Option<NaiveDate>,
    /// Laufzeit: end.
    pub end: Option<NaiveDate>,
    /// Vertraulichkeitsstufe.
    pub confidentiality: Confidentiality,
    /// Medium.
    pub medium: Medium,
    /// Federführende Organisationseinheit.
    pub lead_unit: String,
    /// Free notes.
    pub notes: String,
    /// Open or closed.
    pub status: Status,
    /// Date of the last closing (zdA); retention runs from it.
    pub closed_on: Option<NaiveDate>,
    /// Retention set on the file itself; `None` inherits the plan unit's.
    #[serde(default)]
    pub retention_override: Option<Retention>,
    /// Disposal decision set on the file itself; `None` inherits the plan unit's.
    #[serde(default)]
    pub disposal_override: Option<DisposalDecision>,
    /// Earlier references of the file, oldest first: from the system it was imported
    /// from, and the ones it had before each re-filing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_references: Vec<String>,
    /// Where an imported file came from; `None` for files created in akte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Set once another agency confirmed taking the file over (0402): the file is closed
    /// for good and keeps its metadata and proofs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over: Option<HandedOver>,
    /// Agency metadata: the tenant's own typed fields (`records::fields`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: super::fields::FieldValues,
    /// Incremented with every change.
    pub revision: u64,
    /// Creation.
    pub created: Stamp,
    /// Last change.
    pub updated: Stamp,
}

/// Vorgang or Teilvorgang.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Identifier.
    pub id: Uuid,
    /// The file holding the case.
    pub file: Uuid,
    /// The case this is a sub-case of.
    pub parent_case: Option<Uuid>,
    /// Running number of the case within its file (1, 2, ...).
    pub number: u32,
    /// Betreff.
    pub subject: String,
    /// Laufzeit: begin.
    pub begin: Option<NaiveDate>,
    /// Laufzeit: end.
    pub end: Option<NaiveDate>,
    /// Vertraulichkeitsstufe.
    pub confidentiality: Confidentiality,
    /// Free notes.
    pub notes: String,
    /// Open or closed.
    pub status: Status,
    /// Date of the last closing.
    pub closed_on: Option<NaiveDate>,
    /// Where an imported case came from; `None` for cases created in akte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Agency metadata: the tenant's own typed fields (`records::fields`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: super::fields::FieldValues,
    /// Incremented with every change.
    pub revision: u64,
    /// Creation.
    pub created: Stamp,
    /// Last change.
    pub updated: Stamp,
}

/// Dokument or Anlage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Identifier.
    pub id: Uuid,
    /// The file, case or document (for an attachment) that holds it.
    pub parent: Uuid,
    /// The file it ultimately belongs to.
    pub file: Uuid,
    /// Betreff.
    pub subject: String,
    /// Datum des Schreibens.
    pub letter_date: Option<NaiveDate>,
    /// Eingangsdatum.
    pub received_on: Option<NaiveDate>,
    /// Ausgangsdatum.
    pub sent_on: Option<NaiveDate>,
    /// Absender.
    pub sender: String,
    /// Empfänger.
    pub recipients: Vec<String>,
    /// Bearbeiter.
    pub clerk: String,
    /// Fremdes Geschäftszeichen.
    pub external_reference: String,
    /// Vertraulichkeitsstufe.
    pub confidentiality: Confidentiality,
    /// Number of versions stored (versions are numbered 1..=versions).
    pub versions: u32,
    /// Where an imported document came from; `None` for documents created in akte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Dokumenttyp (e.g. `Bescheid`, `Antrag`): free text of the agency; custom fields
    /// may be defined per document type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub document_type: String,
    /// Agency metadata: the tenant's own typed fields (`records::fields`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: super::fields::FieldValues,
    /// Incremented with every change (a new version counts as one).
    pub revision: u64,
    /// Creation.
    pub created: Stamp,
    /// Last change.
    pub updated: Stamp,
}

/// One immutable version of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The document.
    pub document: Uuid,
    /// 1, 2, ...
    pub number: u32,
    /// Free comment on the version.
    pub comment: String,
    /// Its renditions (Formate), at least one.
    pub renditions: Vec<Rendition>,
    /// Creation.
    pub created: Stamp,
    /// When and by whom an imported version was made in the system it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalStamp>,
}

/// Where an imported object came from, with the metadata the source system recorded.
///
/// The journal entry that imported the object is stamped with the time of the import;
/// these are the original facts, kept as metadata and shown as such.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The system the object came from (e.g. `dms-altsystem`, or the Behördenkennung of
    /// the agency that handed it over).
    pub source_system: String,
    /// The object's id in that system; an import is idempotent per system and id.
    pub source_id: String,
    /// SHA-256 of the package the object came in, when it came in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Digest>,
    /// The original reference (Aktenzeichen, Kennzeichen) as the source gave it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Original creation date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<NaiveDate>,
    /// Original author or creating actor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    /// Further actors the source recorded (processors, last editors), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<String>,
    /// The reference does not follow the tenant's reference pattern: kept as it is and
    /// flagged, so a registrar can see it was not made here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reference_nonconforming: bool,
}

/// One entry of an imported object's history as the source system recorded it
/// (HistorienProtokollInformation); kept beside akte's own history of the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalHistoryItem {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The field changed, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Value before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// Value after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    /// Remark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

/// A file handed over to another agency (Abgabe), as confirmed by its 0402.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOver {
    /// The handover process (xdomea ProzessID).
    pub process: Uuid,
    /// The receiving agency.
    pub to: String,
    /// When the confirmation was read.
    pub on: NaiveDate,
    /// The receiving agency's reference of the file, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_reference: Option<String>,
}

/// When and by whom something was done in the system it was imported from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalStamp {
    /// Original date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<NaiveDate>,
    /// Original actor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
}

/// A rendition (Format / Primärdokument): bytes in the content store with a name and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Identifier of this rendition.
    pub id: Uuid,
    /// Original file name.
    pub file_name: String,
    /// Media type, e.g. `application/pdf`.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes (the content store key).
    pub sha256: Digest,
}

/// Any object of the model, as stored in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Object {
    /// A plan unit.
    PlanUnit(PlanUnit),
    /// A file.
    File(File),
    /// A case.
    Case(Case),
    /// A document.
    Document(Document),
}

impl Object {
    /// The object's id.
    pub fn id(&self) -> Uuid {
        match self {
            Object::PlanUnit(o) => o.id,
            Object::File(o) => o.id,
            Object::Case(o) => o.id,
            Object::Document(o) => o.id,
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::PlanUnit(_) => ObjectKind::PlanUnit,
            Object::File(_) => ObjectKind::File,
            Object::Case(_) => ObjectKind::Case,
            Object::Document(_) => ObjectKind::Document,
        }
    }

    /// The object's revision.
    pub fn revision(&self) -> u64 {
        match self {
            Object::PlanUnit(o) => o.revision,
            Object::File(o) => o.revision,
            Object::Case(o) => o.revision,
            Object::Document(o) => o.revision,
        }
    }

    /// The subject or title (for queries).
    pub fn subject(&self) -> &str {
        match self {
            Object::PlanUnit(o) => &o.title,
            Object::File(o) => &o.subject,
            Object::Case(o) => &o.subject,
            Object::Document(o) => &o.subject,
        }
    }

    /// Open or closed; plan units and documents count as open.
    pub fn status(&self) -> Status {
        match self {
            Object::File(o) => o.status,
            Object::Case(o) => o.status,
            _ => Status::Open,
        }
    }

    /// When it was created.
    pub fn created(&self) -> &Stamp {
        match self {
            Object::PlanUnit(o) => &o.created,
            Object::File(o) => &o.created,
            Object::Case(o) => &o.created,
            Object::Document(o) => &o.created,
        }
    }
}

/// One change of one field, as the history reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field's name.
    pub field: String,
    /// Value before (JSON; null when the object was created).
    pub old: serde_json::Value,
    /// Value after.
    pub new: serde_json::Value,
}

/// One entry of an object's history (HistorienProtokoll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// The journal entry.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What (the event kind, e.g. `file.close`).
    pub action: String,
    /// Field changes, in field order.
    pub changes: Vec<FieldChange>,
    /// Reason given, if any.
    pub reason: Option<String>,
}

/// A page of results and the token for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this as `page_token` for the next page; `None` at the end.
    pub next_page_token: Option<String>,
}

/// How many items and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page: 1 to 1000; 0 means the default of 100.
    pub page_size: u32,
    /// Token from the previous page, or empty for the first page.
    pub page_token: String,
}

impl PageRequest {
    /// The first page of `size` items.
    pub fn first(page_size: u32) -> PageRequest {
        PageRequest {
            page_size,
            page_token: String::new(),
        }
    }
}

/// Sperre / legal hold: blocks disposal of the object and everything in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Identifier.
    pub id: Uuid,
    /// The held file, case or document.
    pub object: Uuid,
    /// The top-level file containing the object (whose disposal the hold blocks).
    pub file: Uuid,
    /// Why (e.g. pending lawsuit, file inspection request).
    pub reason: String,
    /// Reference of the matter (court file number, request number).
    pub reference: String,
    /// Placed by and when.
    pub placed: Stamp,
    /// Released by and when, with the reason; `None` while active.
    pub released: Option<HoldRelease>,
}

/// The release of a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRelease {
    /// Released by and when.
    pub stamp: Stamp,
    /// Why.
    pub reason: String,
}
