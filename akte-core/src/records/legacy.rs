//! Import of records from another system with their original metadata: plan units, files,
//! sub-files, cases, documents with all versions and renditions, each with the reference,
//! dates and actors the source recorded and where it came from ([`Origin`]).
//!
//! Every object is one journal entry (`plan_unit.import`, `file.import`, `case.import`,
//! `document.import`): the entry's time is the time of the import, the original dates are
//! metadata in its salted record. So an object is imported entirely or not at all; a
//! document travels with its versions in one entry.
//!
//! An import is idempotent per source system and source id: the index maps each imported
//! pair to its object, and an object already there is skipped, so an import interrupted by
//! a crash or stopped by an error is resumed by running it again.
//!
//! A closed file keeps its original closing date, so retention runs from it: a file closed
//! in 2014 with ten years of retention is due for disposal once imported.

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::digest::Digest;
use crate::entry::{Payload, PayloadKind};
use crate::index::TenantIndex;

use super::event::{kind, Counter, VersionData, ROLE_RENDITION};
use super::projection::load_object;
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, NewRendition, Plan};
use super::types::*;
use super::validate::{self, MAX_NAME, MAX_RENDITIONS, MAX_SUBJECT, MAX_TEXT};
use super::{RecordsError, TenantRecords};

/// Most versions of one imported document.
pub const MAX_IMPORT_VERSIONS: usize = 1000;
/// Most previous references of one imported file.
pub const MAX_PREVIOUS_REFERENCES: usize = 100;
/// Most original history entries of one imported object.
pub const MAX_ORIGINAL_HISTORY: usize = 10_000;
/// Most items a report lists one by one (failures and warnings); counts are always complete.
pub const MAX_REPORT_ITEMS: usize = 10_000;

/// Where the objects of one import come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSource {
    /// The source system (a DMS name, or the Behördenkennung of the agency handing over).
    pub system: String,
    /// SHA-256 of the package the objects come in, recorded on every object.
    pub package: Option<Digest>,
}

/// The container of an imported object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportParent {
    /// An object already in akte, by id.
    Id(Uuid),
    /// An object of the same import source, by its source id.
    Source(String),
    /// A plan unit, by its code.
    PlanCode(String),
}

/// One object to import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportItem {
    /// The id to give the object in akte (an xdomea ID, kept across a handover); a new
    /// one when `None`.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The object's id in the source system (unique there).
    pub source_id: String,
    /// Its container: none for a top-level plan unit; a plan unit for a file; a file for a
    /// sub-file; a file or case for a case; a file, case or document for a document.
    #[serde(default)]
    pub parent: Option<ImportParent>,
    /// Original creation date.
    #[serde(default)]
    pub created_on: Option<NaiveDate>,
    /// Original author.
    #[serde(default)]
    pub created_by: String,
    /// Further actors the source recorded.
    #[serde(default)]
    pub actors: Vec<String>,
    /// The object itself.
    pub object: ImportObject,
    /// Its history as the source recorded it, oldest first.
    #[serde(default)]
    pub history: Vec<OriginalHistoryItem>,
}

/// The kind-specific part of an imported object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImportObject {
    /// A plan unit.
    PlanUnit(ImportPlanUnit),
    /// A file or sub-file.
    File(ImportFile),
    /// A case or sub-case.
    Case(ImportCase),
    /// A document or attachment, with its versions.
    Document(ImportDocument),
}

impl ImportObject {
    /// The kind of object it becomes.
    pub fn kind(&self) -> ObjectKind {
        match self {
            ImportObject::PlanUnit(_) => ObjectKind::PlanUnit,
            ImportObject::File(_) => ObjectKind::File,
            ImportObject::Case(_) => ObjectKind::Case,
            ImportObject::Document(_) => ObjectKind::Document,
        }
    }
}

/// An imported plan unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportPlanUnit {
    /// Its code (Kennzeichen), unique in the tenant.
    pub code: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Default retention.
    pub retention: Retention,
    /// Default disposal decision.
    pub disposal: DisposalDecision,
}

/// An imported file or sub-file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportFile {
    /// The original reference (Aktenzeichen); kept as it is, unique in the tenant.
    pub reference: String,
    /// Earlier references, oldest first.
    pub previous_references: Vec<String>,
    /// Betreff.
    pub subject: String,
    /// Laufzeit begin.
    pub begin: Option<NaiveDate>,
    /// Laufzeit end.
    pub end: Option<NaiveDate>,
    /// Vertraulichkeitsstufe.
    pub confidentiality: Confidentiality,
    /// Medium.
    pub medium: Medium,
    /// Federführende Organisationseinheit.
    pub lead_unit: String,
    /// Notes.
    pub notes: String,
    /// Original closing date (zdA); the file is imported closed when given.
    pub closed_on: Option<NaiveDate>,
    /// Retention set on the file in the source; `None` inherits the plan unit's.
    pub retention: Option<Retention>,
    /// Disposal decision set on the file in the source; `None` inherits the plan unit's.
    pub disposal: Option<DisposalDecision>,
    /// Values of custom fields by field name, as text (dates `YYYY-MM-DD`, references
    /// `urn:uuid:...` or a UUID); typed and checked against the importing tenant's
    /// definitions. A field the tenant does not define for the object is left out with a
    /// warning.
    pub custom_fields: std::collections::BTreeMap<String, String>,
}

/// An imported case or sub-case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportCase {
    /// The original Kennzeichen of the case, if the source had one.
    pub reference: String,
    /// Betreff.
    pub subject: String,
    /// Laufzeit begin.
    pub begin: Option<NaiveDate>,
    /// Laufzeit end.
    pub end: Option<NaiveDate>,
    /// Vertraulichkeitsstufe.
    pub confidentiality: Confidentiality,
    /// Notes.
    pub notes: String,
    /// Original closing date.
    pub closed_on: Option<NaiveDate>,
    /// Values of custom fields by field name, as text (dates `YYYY-MM-DD`, references
    /// `urn:uuid:...` or a UUID); typed and checked against the importing tenant's
    /// definitions. A field the tenant does not define for the object is left out with a
    /// warning.
    pub custom_fields: std::collections::BTreeMap<String, String>,
}

/// An imported document or attachment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportDocument {
    /// The original Kennzeichen of the document, if the source had one.
    pub reference: String,
    /// Betreff.
    pub subject: String,
    /// Date of the letter.
    pub letter_date: Option<NaiveDate>,
    /// Received on.
    pub received_on: Option<NaiveDate>,
    /// Sent on.
    pub sent_on: Option<NaiveDate>,
    /// Sender.
    pub sender: String,
    /// Recipients.
    pub recipients: Vec<String>,
    /// Clerk.
    pub clerk: String,
    /// External reference.
    pub external_reference: String,
    /// Vertraulichkeitsstufe.
    pub confidentiality: Confidentiality,
    /// Versions, oldest first; numbered 1, 2, ... in this order.
    pub versions: Vec<ImportVersion>,
    /// Dokumenttyp.
    pub document_type: String,
    /// Values of custom fields by field name, as text (dates `YYYY-MM-DD`, references
    /// `urn:uuid:...` or a UUID); typed and checked against the importing tenant's
    /// definitions. A field the tenant does not define for the object is left out with a
    /// warning.
    pub custom_fields: std::collections::BTreeMap<String, String>,
}

/// One version of an imported document; its bytes are already in the content store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportVersion {
    /// Comment.
    pub comment: String,
    /// When it was made in the source.
    pub created_on: Option<NaiveDate>,
    /// By whom.
    pub created_by: String,
    /// Renditions, at least one.
    pub renditions: Vec<NewRendition>,
}

/// What importing one object did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedObject {
    /// The object in akte.
    pub id: Uuid,
    /// It had been imported before (same source system and id) and was left as it is.
    pub already: bool,
    /// What is unusual but was accepted (a reference not following the tenant's pattern).
    pub warnings: Vec<String>,
}

/// How one item of an import ended, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Imported now.
    Imported,
    /// Imported by an earlier run; skipped.
    AlreadyImported,
    /// Not imported; the error says why. Nothing of it was recorded.
    Failed,
}

/// One line of an import report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemReport {
    /// The source id.
    pub source_id: String,
    /// The kind of object.
    pub kind: ObjectKind,
    /// How it ended.
    pub status: ItemStatus,
    /// The object in akte, unless it failed.
    pub id: Option<Uuid>,
    /// Short name of the rule that failed (`duplicate-reference`, `unknown-parent`,
    /// `invalid-date`, `invalid-field`, `closed-parent`, `in-disposal`, ...).
    pub rule: Option<String>,
    /// The error, in words.
    pub error: Option<String>,
    /// Warnings about an imported object.
    pub warnings: Vec<String>,
}

/// The report of an import: counts, and every failure and warning (up to
/// [`MAX_REPORT_ITEMS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Objects imported by this run.
    pub imported: u64,
    /// Objects an earlier run had imported.
    pub already_imported: u64,
    /// Objects refused.
    pub failed: u64,
    /// Imported objects with warnings.
    pub warned: u64,
    /// Failures and warnings, in input order.
    pub items: Vec<ItemReport>,
    /// More failures or warnings happened than `items` lists.
    pub truncated: bool,
}

impl ImportReport {
    /// Objects looked at so far.
    pub fn processed(&self) -> u64 {
        self.imported + self.already_imported + self.failed
    }

    pub(super) fn note(&mut self, item: ItemReport) {
        if self.items.len() < MAX_REPORT_ITEMS {
            self.items.push(item);
        } else {
            self.truncated = true;
        }
    }
}

/// The short rule name of an error that refuses one item.
pub fn rule_of(e: &RecordsError) -> &'static str {
    match e {
        RecordsError::Invalid { field, .. }
            if field.contains("date")
                || field.ends_with("_on")
                || field == "begin"
                || field == "end" =>
        {
            "invalid-date"
        }
        RecordsError::Invalid { field, .. } if field == "parent" => "wrong-parent",
        RecordsError::Invalid { .. } => "invalid-field",
        RecordsError::NotFound { .. } => "unknown-parent",
        RecordsError::WrongKind { .. } => "wrong-parent",
        RecordsError::Closed { .. } => "closed-parent",
        RecordsError::FailedPrecondition { .. } => "in-disposal",
        RecordsError::DuplicateCode { .. } => "duplicate-code",
        RecordsError::DuplicateReference { .. } => "duplicate-reference",
        RecordsError::AlreadyExists { .. } => "duplicate-id",
        RecordsError::Destroyed { .. } => "destroyed-parent",
        RecordsError::Inactive { .. } => "inactive-plan-unit",
        _ => "error",
    }
}

/// Whether an error is the item's fault (reported, the import goes on) rather than the
/// store's (the import stops; running it again resumes).
pub(super) fn item_fault(e: &RecordsError) -> bool {
    !matches!(
        e,
        RecordsError::Store(_) | RecordsError::Index(_) | RecordsError::Internal(_)
    )
}

fn internal(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Internal(e.to_string())
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RecordsError> {
    serde_json::to_value(v).map_err(internal)
}

fn invalid(field: &str, reason: impl Into<String>) -> RecordsError {
    RecordsError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Dates of the source may not lie in the future.
fn past(field: &str, date: Option<NaiveDate>, today: NaiveDate) -> Result<(), RecordsError> {
    match date {
        Some(d) if d > today => Err(invalid(field, format!("{d} is in the future"))),
        _ => Ok(()),
    }
}

/// The index key mapping a source system and id to the imported object.
pub(super) fn source_key(system: &str, source_id: &str) -> Vec<u8> {
    schema::key(tag::SOURCE)
        .raw(system.as_bytes())
        .raw(&[0])
        .raw(source_id.as_bytes())
}

fn lookup_source(
    index: &TenantIndex,
    system: &str,
    source_id: &str,
) -> Result<Option<Uuid>, RecordsError> {
    match index.get(source_key(system, source_id))? {
        None => Ok(None),
        Some(v) => Uuid::from_slice(&v).map(Some).map_err(internal),
    }
}

/// Checks what needs no index: lengths, characters, dates.
fn check_item(source: &ImportSource, item: &ImportItem) -> Result<(), RecordsError> {
    let today = Utc::now().date_naive();
    validate::line("source_system", &source.system, MAX_NAME)?;
    validate::line("source_id", &item.source_id, MAX_NAME)?;
    validate::optional_line("created_by", &item.created_by, MAX_NAME)?;
    if item.actors.len() > validate::MAX_RECIPIENTS {
        return Err(invalid(
            "actors",
            format!(
                "{} given, at most {}",
                item.actors.len(),
                validate::MAX_RECIPIENTS
            ),
        ));
    }
    for a in &item.actors {
        validate::line("actors", a, MAX_NAME)?;
    }
    if item.history.len() > MAX_ORIGINAL_HISTORY {
        return Err(invalid(
            "history",
            format!(
                "{} entries, at most {MAX_ORIGINAL_HISTORY}",
                item.history.len()
            ),
        ));
    }
    for h in &item.history {
        validate::line("history actor", &h.actor, MAX_NAME)?;
        validate::line("history action", &h.action, MAX_NAME)?;
        for v in [&h.field, &h.old, &h.new, &h.remark].into_iter().flatten() {
            validate::text("history value", v, MAX_TEXT)?;
        }
    }
    past("created_on", item.created_on, today)?;
    let closing = |closed_on: Option<NaiveDate>| -> Result<(), RecordsError> {
        past("closed_on", closed_on, today)?;
        if let (Some(c), Some(o)) = (item.created_on, closed_on) {
            if o < c {
                return Err(invalid(
                    "closed_on",
                    format!("{o} is before the creation date {c}"),
                ));
            }
        }
        Ok(())
    };
    match &item.object {
        ImportObject::PlanUnit(u) => {
            validate::plan_code(&u.code)?;
            validate::line("title", &u.title, MAX_SUBJECT)?;
            validate::text("description", &u.description, MAX_TEXT)?;
            check_years(u.retention)?;
        }
        ImportObject::File(f) => {
            validate::line("reference", &f.reference, MAX_NAME)?;
            if f.previous_references.len() > MAX_PREVIOUS_REFERENCES {
                return Err(invalid(
                    "previous_references",
                    format!("at most {MAX_PREVIOUS_REFERENCES}"),
                ));
            }
            for r in &f.previous_references {
                validate::line("previous_references", r, MAX_NAME)?;
            }
            validate::line("subject", &f.subject, MAX_SUBJECT)?;
            validate::running_time(f.begin, f.end)?;
            past("begin", f.begin, today)?;
            past("end", f.end, today)?;
            validate::optional_line("lead_unit", &f.lead_unit, MAX_NAME)?;
            validate::text("notes", &f.notes, MAX_TEXT)?;
            closing(f.closed_on)?;
            if let Some(r) = f.retention {
                check_years(r)?;
            }
        }
        ImportObject::Case(c) => {
            validate::optional_line("reference", &c.reference, MAX_NAME)?;
            validate::line("subject", &c.subject, MAX_SUBJECT)?;
            validate::running_time(c.begin, c.end)?;
            past("begin", c.begin, today)?;
            past("end", c.end, today)?;
            validate::text("notes", &c.notes, MAX_TEXT)?;
            closing(c.closed_on)?;
        }
        ImportObject::Document(d) => {
            validate::optional_line("reference", &d.reference, MAX_NAME)?;
            validate::line("subject", &d.subject, MAX_SUBJECT)?;
            validate::optional_line("sender", &d.sender, MAX_NAME)?;
            validate::optional_line("clerk", &d.clerk, MAX_NAME)?;
            validate::optional_line("external_reference", &d.external_reference, MAX_NAME)?;
            if d.recipients.len() > validate::MAX_RECIPIENTS {
                return Err(invalid("recipients", "too many"));
            }
            for r in &d.recipients {
                validate::line("recipients", r, MAX_NAME)?;
            }
            past("letter_date", d.letter_date, today)?;
            past("received_on", d.received_on, today)?;
            past("sent_on", d.sent_on, today)?;
            if d.versions.len() > MAX_IMPORT_VERSIONS {
                return Err(invalid(
                    "versions",
                    format!("{} given, at most {MAX_IMPORT_VERSIONS}", d.versions.len()),
                ));
            }
            for v in &d.versions {
                validate::text("comment", &v.comment, MAX_TEXT)?;
                validate::optional_line("created_by", &v.created_by, MAX_NAME)?;
                past("version created_on", v.created_on, today)?;
                if v.renditions.is_empty() || v.renditions.len() > MAX_RENDITIONS {
                    return Err(invalid(
                        "renditions",
                        format!(
                            "{} given, 1 to {MAX_RENDITIONS} allowed",
                            v.renditions.len()
                        ),
                    ));
                }
                for r in &v.renditions {
                    validate::file_name(&r.file_name)?;
                    validate::media_type(&r.media_type)?;
                }
            }
        }
    }
    Ok(())
}

fn check_years(r: Retention) -> Result<(), RecordsError> {
    match r {
        Retention::Years(y) if y > 500 => Err(invalid(
            "retention",
            format!("{y} years; at most 500 (use unlimited for permanent retention)"),
        )),
        _ => Ok(()),
    }
}

/// Finds the container an item names.
fn resolve_parent(
    index: &TenantIndex,
    system: &str,
    parent: &ImportParent,
) -> Result<Object, RecordsError> {
    let not_found = |id: String| RecordsError::NotFound {
        what: "parent".into(),
        id,
    };
    let id = match parent {
        ImportParent::Id(id) => *id,
        ImportParent::Source(sid) => lookup_source(index, system, sid)?
            .ok_or_else(|| not_found(format!("{sid} (source id in {system})")))?,
        ImportParent::PlanCode(code) => {
            let v = index
                .get(schema::key(tag::UNIT_CODE).raw(code.as_bytes()))?
                .ok_or_else(|| not_found(format!("plan unit code {code}")))?;
            Uuid::from_slice(&v).map_err(internal)?
        }
    };
    get_object(index, id).map_err(|e| match e {
        RecordsError::NotFound { id, .. } => not_found(id),
        other => other,
    })
}

/// Refuses containers an import may not add to: in disposal or destroyed, or closed in
/// akte. A container that was itself imported closed takes its imported content, so that
/// a closed legacy file can be brought in object by object and an interrupted import be
/// resumed.
fn check_container(index: &TenantIndex, parent: &Object) -> Result<(), RecordsError> {
    let mut cur = parent.clone();
    for _ in 0..10_000 {
        let (closed, origin, next) = match &cur {
            Object::PlanUnit(_) => return Ok(()),
            Object::File(f) => (f.status == Status::Closed, &f.origin, f.parent_file),
            Object::Case(c) => (
                c.status == Status::Closed,
                &c.origin,
                Some(c.parent_case.unwrap_or(c.file)),
            ),
            Object::Document(d) => (false, &d.origin, Some(d.parent)),
        };
        if closed && origin.is_none() {
            return Err(RecordsError::Closed {
                kind: cur.kind(),
                id: cur.id().to_string(),
            });
        }
        if let Object::File(f) = &cur {
            if f.parent_file.is_none() {
                if let Some(p) = super::retention::load_progress(index, f.id)? {
                    return Err(RecordsError::FailedPrecondition {
                        kind: ObjectKind::File,
                        id: f.id.to_string(),
                        reason: format!("is in disposal ({p}); nothing can be imported into it"),
                    });
                }
            }
        }
        match next {
            Some(n) => cur = get_object(index, n)?,
            None => return Ok(()),
        }
    }
    Err(internal("containment deeper than 10000"))
}

/// The closing date a closed container gives an imported child that has none: a closed
/// file cannot hold open cases.
fn closed_container(parent: &Object) -> Option<NaiveDate> {
    match parent {
        Object::File(f) if f.status == Status::Closed => f.closed_on,
        Object::Case(c) if c.status == Status::Closed => c.closed_on,
        _ => None,
    }
}

impl TenantRecords {
    /// The object imported from `system` with `source_id`, if any.
    pub fn imported_object(
        &self,
        system: &str,
        source_id: &str,
    ) -> Result<Option<Uuid>, RecordsError> {
        lookup_source(self.tenant.index(), system, source_id)
    }

    /// Imports one object with its original metadata, or finds it imported before. The
    /// bytes of a document's renditions must be in the content store already
    /// ([`TenantRecords::put_content`]). An error changes nothing.
    pub fn import_object(
        &self,
        actor: &str,
        source: &ImportSource,
        item: &ImportItem,
    ) -> Result<ImportedObject, RecordsError> {
        check_item(source, item)?;
        let mut outcome = ImportedObject {
            id: Uuid::nil(),
            already: false,
            warnings: Vec::new(),
        };
        let id = self.write_plan(actor, |index| {
            if let Some(id) = lookup_source(index, &source.system, &item.source_id)? {
                outcome.already = true;
                return Ok(Plan::Done(id));
            }
            outcome.warnings.clear();
            let parent = match &item.parent {
                Some(p) => Some(resolve_parent(index, &source.system, p)?),
                None => None,
            };
            if let Some(p) = &parent {
                check_container(index, p)?;
            }
            let id = match item.id {
                None => super::schema::new_id(),
                Some(id) if id.is_nil() => return Err(invalid("id", "the nil UUID is not an id")),
                Some(id) => {
                    if index.contains_key(schema::object(id))?
                        || index.contains_key(schema::key(tag::TOMBSTONE).id(id))?
                    {
                        return Err(RecordsError::AlreadyExists { id: id.to_string() });
                    }
                    id
                }
            };
            let mut origin = Origin {
                source_system: source.system.clone(),
                source_id: item.source_id.clone(),
                package: source.package,
                reference: String::new(),
                created_on: item.created_on,
                created_by: item.created_by.clone(),
                actors: item.actors.clone(),
                reference_nonconforming: false,
            };
            let mut record = Self::new_event(Some(id))?;
            let (event_kind, contents) = match &item.object {
                ImportObject::PlanUnit(u) => {
                    plan_unit_fields(index, &mut record.set, parent.as_ref(), u)?;
                    (kind::PLAN_UNIT_IMPORT, vec![])
                }
                ImportObject::File(f) => {
                    origin.reference = f.reference.clone();
                    let warning = file_fields(index, &mut record.set, parent.as_ref(), f)?;
                    if let Some(w) = warning {
                        origin.reference_nonconforming = true;
                        outcome.warnings.push(w);
                    }
                    (kind::FILE_IMPORT, vec![])
                }
                ImportObject::Case(c) => {
                    origin.reference = c.reference.clone();
                    let counter = case_fields(index, &mut record.set, parent.as_ref(), c)?;
                    record.counter = Some(counter);
                    (kind::CASE_IMPORT, vec![])
                }
                ImportObject::Document(d) => {
                    origin.reference = d.reference.clone();
                    document_fields(&mut record.set, parent.as_ref(), d)?;
                    if !d.document_type.is_empty() {
                        record
                            .set
                            .insert("document_type".into(), Value::from(d.document_type.clone()));
                    }
                    let (versions, contents) = versions_of(d);
                    record.versions = versions;
                    (kind::DOCUMENT_IMPORT, contents)
                }
            };
            let values = match &item.object {
                ImportObject::File(f) => Some((ObjectKind::File, &f.custom_fields)),
                ImportObject::Case(c) => Some((ObjectKind::Case, &c.custom_fields)),
                ImportObject::Document(d) => Some((ObjectKind::Document, &d.custom_fields)),
                ImportObject::PlanUnit(_) => None,
            };
            if let Some((k, values)) = values {
                let warnings = super::fields::import_values(index, k, &mut record.set, values)?;
                outcome.warnings.extend(warnings);
            }
            record.set.insert("origin".into(), to_value(&origin)?);
            record.original_history = item.history.clone();
            Ok(Plan::event(event_kind, record, contents))
        })?;
        outcome.id = id;
        Ok(outcome)
    }

    /// Imports objects one by one, in order (containers before what they contain),
    /// reporting each refused object and going on with the rest; objects of an earlier
    /// run are skipped. `progress` is called after every object. Errors of the store
    /// (not of an object) stop the import and are returned; running it again resumes.
    pub fn import_objects<I>(
        &self,
        actor: &str,
        source: &ImportSource,
        items: I,
        progress: &mut dyn FnMut(&ImportReport),
    ) -> Result<ImportReport, RecordsError>
    where
        I: IntoIterator<Item = ImportItem>,
    {
        let mut report = ImportReport::default();
        for item in items {
            let kind = item.object.kind();
            match self.import_object(actor, source, &item) {
                Ok(done) if done.already => report.already_imported += 1,
                Ok(done) => {
                    report.imported += 1;
                    if !done.warnings.is_empty() {
                        report.warned += 1;
                        report.note(ItemReport {
                            source_id: item.source_id.clone(),
                            kind,
                            status: ItemStatus::Imported,
                            id: Some(done.id),
                            rule: None,
                            error: None,
                            warnings: done.warnings,
                        });
                    }
                }
                Err(e) if item_fault(&e) => {
                    report.failed += 1;
                    report.note(ItemReport {
                        source_id: item.source_id.clone(),
                        kind,
                        status: ItemStatus::Failed,
                        id: None,
                        rule: Some(rule_of(&e).to_owned()),
                        error: Some(e.to_string()),
                        warnings: Vec::new(),
                    });
                }
                Err(e) => return Err(e),
            }
            progress(&report);
        }
        Ok(report)
    }
}

fn plan_unit_fields(
    index: &TenantIndex,
    set: &mut serde_json::Map<String, Value>,
    parent: Option<&Object>,
    u: &ImportPlanUnit,
) -> Result<(), RecordsError> {
    let parent_id = match parent {
        None => None,
        Some(Object::PlanUnit(p)) => Some(p.id),
        Some(other) => {
            return Err(RecordsError::WrongKind {
                id: other.id().to_string(),
                expected: "plan unit".into(),
                found: other.kind(),
            })
        }
    };
    if let Some(v) = index.get(schema::key(tag::UNIT_CODE).raw(u.code.as_bytes()))? {
        return Err(RecordsError::DuplicateCode {
            code: u.code.clone(),
            existing: Uuid::from_slice(&v).map_err(internal)?.to_string(),
        });
    }
    for (k, v) in [
        ("parent", to_value(&parent_id)?),
        ("code", Value::from(u.code.clone())),
        ("title", Value::from(u.title.clone())),
        ("description", Value::from(u.description.clone())),
        ("retention", to_value(&u.retention)?),
        ("disposal", to_value(&u.disposal)?),
        ("active", Value::from(true)),
    ] {
        set.insert(k.into(), v);
    }
    Ok(())
}

/// Fills a file's fields; returns a warning when its reference does not follow the
/// tenant's pattern.
fn file_fields(
    index: &TenantIndex,
    set: &mut serde_json::Map<String, Value>,
    parent: Option<&Object>,
    f: &ImportFile,
) -> Result<Option<String>, RecordsError> {
    let (unit, parent_file, inherited_close) = match parent {
        Some(Object::PlanUnit(u)) => (u.clone(), None, None),
        Some(p @ Object::File(pf)) => {
            let unit = match load_object(index, pf.plan_unit)? {
                Some(Object::PlanUnit(u)) => u,
                _ => return Err(internal(format!("plan unit of file {} is missing", pf.id))),
            };
            (unit, Some(pf.id), closed_container(p))
        }
        Some(other) => {
            return Err(RecordsError::WrongKind {
                id: other.id().to_string(),
                expected: "plan unit or file".into(),
                found: other.kind(),
            })
        }
        None => {
            return Err(invalid(
                "parent",
                "a file needs its plan unit (or, for a sub-file, its file)",
            ))
        }
    };
    if parent_file.is_none() && !unit.active {
        return Err(RecordsError::Inactive {
            id: unit.id.to_string(),
        });
    }
    if let Some(v) = index.get(schema::key(tag::REFERENCE).raw(f.reference.as_bytes()))? {
        return Err(RecordsError::DuplicateReference {
            reference: f.reference.clone(),
            existing: Uuid::from_slice(&v).map_err(internal)?.to_string(),
        });
    }
    let pattern = super::service::read_pattern(index)?;
    let warning = (!validate::reference_matches(&pattern, &unit.code, &f.reference)).then(|| {
        format!(
            "reference {} does not follow the tenant's pattern {pattern} for plan unit {}; \
             kept as it is",
            f.reference, unit.code
        )
    });
    let closed_on = f.closed_on.or(inherited_close);
    let status = if closed_on.is_some() {
        Status::Closed
    } else {
        Status::Open
    };
    for (k, v) in [
        ("plan_unit", to_value(&unit.id)?),
        ("parent_file", to_value(&parent_file)?),
        ("reference", Value::from(f.reference.clone())),
        ("previous_references", to_value(&f.previous_references)?),
        ("subject", Value::from(f.subject.clone())),
        ("begin", to_value(&f.begin)?),
        ("end", to_value(&f.end)?),
        ("confidentiality", to_value(&f.confidentiality)?),
        ("medium", to_value(&f.medium)?),
        ("lead_unit", Value::from(f.lead_unit.clone())),
        ("notes", Value::from(f.notes.clone())),
        ("status", to_value(&status)?),
        ("closed_on", to_value(&closed_on)?),
        ("retention_override", to_value(&f.retention)?),
        ("disposal_override", to_value(&f.disposal)?),
    ] {
        set.insert(k.into(), v);
    }
    Ok(warning)
}

fn case_fields(
    index: &TenantIndex,
    set: &mut serde_json::Map<String, Value>,
    parent: Option<&Object>,
    c: &ImportCase,
) -> Result<Counter, RecordsError> {
    let (file, parent_case) = match parent {
        Some(Object::File(f)) => (f.id, None),
        Some(Object::Case(pc)) => (pc.file, Some(pc.id)),
        Some(other) => {
            return Err(RecordsError::WrongKind {
                id: other.id().to_string(),
                expected: "file or case".into(),
                found: other.kind(),
            })
        }
        None => return Err(invalid("parent", "a case needs its file or case")),
    };
    let number = super::service::read_counter(index, file, 0)?
        .checked_add(1)
        .ok_or_else(|| internal("case number overflow"))?;
    let closed_on = c.closed_on.or(parent.and_then(closed_container));
    let status = if closed_on.is_some() {
        Status::Closed
    } else {
        Status::Open
    };
    for (k, v) in [
        ("file", to_value(&file)?),
        ("parent_case", to_value(&parent_case)?),
        ("number", Value::from(number)),
        ("subject", Value::from(c.subject.clone())),
        ("begin", to_value(&c.begin)?),
        ("end", to_value(&c.end)?),
        ("confidentiality", to_value(&c.confidentiality)?),
        ("notes", Value::from(c.notes.clone())),
        ("status", to_value(&status)?),
        ("closed_on", to_value(&closed_on)?),
    ] {
        set.insert(k.into(), v);
    }
    Ok(Counter {
        scope: file,
        year: 0,
        number,
    })
}

fn document_fields(
    set: &mut serde_json::Map<String, Value>,
    parent: Option<&Object>,
    d: &ImportDocument,
) -> Result<(), RecordsError> {
    let (parent_id, file) = match parent {
        Some(Object::File(f)) => (f.id, f.id),
        Some(Object::Case(c)) => (c.id, c.file),
        Some(Object::Document(pd)) => (pd.id, pd.file),
        Some(other) => {
            return Err(RecordsError::WrongKind {
                id: other.id().to_string(),
                expected: "file, case or document".into(),
                found: other.kind(),
            })
        }
        None => return Err(invalid("parent", "a document needs its file or case")),
    };
    for (k, v) in [
        ("parent", to_value(&parent_id)?),
        ("file", to_value(&file)?),
        ("subject", Value::from(d.subject.clone())),
        ("letter_date", to_value(&d.letter_date)?),
        ("received_on", to_value(&d.received_on)?),
        ("sent_on", to_value(&d.sent_on)?),
        ("sender", Value::from(d.sender.clone())),
        ("recipients", to_value(&d.recipients)?),
        ("clerk", Value::from(d.clerk.clone())),
        (
            "external_reference",
            Value::from(d.external_reference.clone()),
        ),
        ("confidentiality", to_value(&d.confidentiality)?),
        ("versions", Value::from(d.versions.len() as u32)),
    ] {
        set.insert(k.into(), v);
    }
    Ok(())
}

/// The versions an imported document's entry records, and its content payloads.
fn versions_of(d: &ImportDocument) -> (Vec<VersionData>, Vec<Payload>) {
    let mut versions = Vec::with_capacity(d.versions.len());
    let mut contents = Vec::new();
    for (i, v) in d.versions.iter().enumerate() {
        let renditions: Vec<Rendition> = v
            .renditions
            .iter()
            .map(|r| Rendition {
                id: super::schema::new_id(),
                file_name: r.file_name.clone(),
                media_type: r.media_type.clone(),
                size: r.size,
                sha256: r.sha256,
            })
            .collect();
        contents.extend(renditions.iter().map(|r| Payload {
            kind: PayloadKind::Content,
            role: ROLE_RENDITION.into(),
            size: r.size,
            digest: r.sha256,
        }));
        let original =
            (v.created_on.is_some() || !v.created_by.is_empty()).then(|| OriginalStamp {
                on: v.created_on,
                by: v.created_by.clone(),
            });
        versions.push(VersionData {
            number: i as u32 + 1,
            comment: v.comment.clone(),
            renditions,
            original,
        });
    }
    (versions, contents)
}

impl TenantRecords {
    /// An imported object's history as the source system recorded it (empty for objects
    /// made in akte); akte's own history of it is [`TenantRecords::history`].
    pub fn original_history(&self, id: Uuid) -> Result<Vec<OriginalHistoryItem>, RecordsError> {
        let mut out = Vec::new();
        for kv in self
            .tenant
            .index()
            .scan_prefix(schema::key(tag::ORIGINAL_HISTORY).id(id))
        {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(internal)?);
        }
        Ok(out)
    }
}
