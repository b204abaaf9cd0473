//! Writes of the records model: validate against the current index, then append one event,
//! all under the tenant's write lock.

use std::io::Read;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::backend::content::{ContentRead, PutOutcome};
use crate::digest::Digest;
use crate::entry::Attachment;
use crate::entry::{EntryDraft, Payload, PayloadKind};
use crate::index::TenantIndex;
use crate::store::{Tenant, Write};

use super::event::{kind, Counter, EventRecord, VersionData, ROLE_EVENT, ROLE_RENDITION};
use super::projection::load_object;
use super::schema::{self, tag, KeyExt};
use super::types::*;
use super::validate::{self, MAX_NAME, MAX_RECIPIENTS, MAX_RENDITIONS, MAX_SUBJECT, MAX_TEXT};
use super::RecordsError;

/// File reference pattern used until a tenant configures its own.
pub const DEFAULT_REFERENCE_PATTERN: &str = "{unit}-{seq:04}/{year}";

/// A new plan unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPlanUnit {
    /// Client-chosen id; generated when `None`.
    pub id: Option<Uuid>,
    /// Parent unit, `None` for the top level.
    pub parent: Option<Uuid>,
    /// Code such as `022.31`, unique in the tenant.
    pub code: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Default retention for its files.
    pub retention: Retention,
    /// Default disposal decision for its files.
    pub disposal: DisposalDecision,
}

/// A new file or sub-file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFile {
    /// Client-chosen id; generated when `None`.
    pub id: Option<Uuid>,
    /// The plan unit (for a sub-file: the parent file's unit).
    pub plan_unit: Uuid,
    /// Parent file, for a sub-file (Teilakte).
    pub parent_file: Option<Uuid>,
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
    /// Custom field values (`records::fields`), by field name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: super::fields::FieldValues,
}

/// A new case or sub-case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCase {
    /// Client-chosen id; generated when `None`.
    pub id: Option<Uuid>,
    /// The file, or the case for a sub-case.
    pub parent: Uuid,
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
    /// Custom field values (`records::fields`), by field name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: super::fields::FieldValues,
}

/// A new document or attachment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDocument {
    /// Client-chosen id; generated when `None`.
    pub id: Option<Uuid>,
    /// The file, case or (for an attachment) document holding it.
    pub parent: Uuid,
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
    /// Dokumenttyp (custom fields may be defined per document type).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub document_type: String,
    /// Custom field values (`records::fields`), by field name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_fields: super::fields::FieldValues,
}

/// A new version with its renditions, whose bytes are already in the content store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion {
    /// Free comment.
    pub comment: String,
    /// One or more renditions.
    pub renditions: Vec<NewRendition>,
}

/// A rendition of a new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRendition {
    /// Original file name.
    pub file_name: String,
    /// Media type.
    pub media_type: String,
    /// SHA-256 of the stored bytes (from [`TenantRecords::put_content`]).
    pub sha256: Digest,
    /// Size of the stored bytes.
    pub size: u64,
}

/// The records of one tenant: everything here stays inside that tenant.
#[derive(Debug, Clone)]
pub struct TenantRecords {
    pub(super) tenant: Arc<Tenant>,
    /// The caller these records are bound to (`view.rs`); `None` sees everything.
    pub(super) viewer: Option<Arc<super::view::Bound>>,
}

/// What a write's check decided.
pub(super) enum Plan {
    /// Append this event; `object` is what to return afterwards.
    Event {
        kind: &'static str,
        record: Box<EventRecord>,
        contents: Vec<Payload>,
    },
    /// Nothing to append: return this object as it is (a repeated request, a no-op update).
    Done(Uuid),
}

impl Plan {
    /// Append this event.
    pub(super) fn event(kind: &'static str, record: EventRecord, contents: Vec<Payload>) -> Plan {
        Plan::Event {
            kind,
            record: Box::new(record),
            contents,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Internal(e.to_string())
}

fn today() -> NaiveDate {
    super::civil::today()
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RecordsError> {
    serde_json::to_value(v).map_err(internal)
}

fn set_fields(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Fields a client may change with `update`, per kind.
fn updatable(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::PlanUnit => &[
            "parent",
            "code",
            "title",
            "description",
            "retention",
            "disposal",
            "active",
        ],
        ObjectKind::File => &[
            "subject",
            "begin",
            "end",
            "confidentiality",
            "medium",
            "lead_unit",
            "notes",
            "custom_fields",
        ],
        ObjectKind::Case => &[
            "subject",
            "begin",
            "end",
            "confidentiality",
            "notes",
            "custom_fields",
        ],
        ObjectKind::Document => &[
            "subject",
            "letter_date",
            "received_on",
            "sent_on",
            "sender",
            "recipients",
            "clerk",
            "external_reference",
            "confidentiality",
            "document_type",
            "custom_fields",
        ],
    }
}

impl TenantRecords {
    /// The records of a tenant of a store opened with the records projection (a
    /// read-only opening, a `Store` the CLI opened), unbound.
    pub fn over(tenant: Arc<Tenant>) -> TenantRecords {
        TenantRecords::new(tenant)
    }

    pub(super) fn new(tenant: Arc<Tenant>) -> TenantRecords {
        TenantRecords {
            tenant,
            viewer: None,
        }
    }

    /// The storage tenant underneath (journal, checkpoints, proofs).
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }

    /// Stores document bytes (streaming, durable) for a later [`TenantRecords::add_version`].
    pub fn put_content<R: Read>(&self, reader: R) -> Result<PutOutcome, RecordsError> {
        Ok(self.tenant.put_content(reader)?)
    }

    /// Opens a rendition's bytes; the reader verifies the SHA-256 as it reaches the end.
    pub fn open_rendition(
        &self,
        rendition: &Rendition,
    ) -> Result<Box<dyn ContentRead>, RecordsError> {
        Ok(self
            .tenant
            .content()
            .get(&rendition.sha256)
            .map_err(crate::store::StoreError::from)?)
    }

    /// Appends the event that `check` plans, under the tenant's write lock, and returns the
    /// object it concerns as the index has it afterwards.
    fn write<F>(&self, actor: &str, check: F) -> Result<Object, RecordsError>
    where
        F: FnOnce(&TenantIndex) -> Result<Plan, RecordsError>,
    {
        let id = self.write_plan(actor, check)?;
        if id.is_nil() {
            return Err(RecordsError::Internal("write without an object".into()));
        }
        self.get(id)
    }

    /// Appends the event that `check` plans and returns the id it concerns (nil if none).
    pub(super) fn write_plan<F>(&self, actor: &str, check: F) -> Result<Uuid, RecordsError>
    where
        F: FnOnce(&TenantIndex) -> Result<Plan, RecordsError>,
    {
        self.write_plan_at(actor, |index, _| check(index))
    }

    /// As [`Self::write_plan`], telling `check` the sequence number the entry will get.
    pub(super) fn write_plan_at<F>(&self, actor: &str, check: F) -> Result<Uuid, RecordsError>
    where
        F: FnOnce(&TenantIndex, u64) -> Result<Plan, RecordsError>,
    {
        validate::line("actor", actor, MAX_NAME)?;
        let (id, _) = self.tenant.append_at(|index, seq| {
            let (kind, record, contents) = match check(index, seq)? {
                Plan::Done(id) => return Ok(Write::Skip(id)),
                Plan::Event {
                    kind,
                    record,
                    contents,
                } => (kind, record, contents),
            };
            let id = record.id.unwrap_or(Uuid::nil());
            let (draft, attachments) = event_entry(actor, kind, &record, contents);
            Ok::<_, RecordsError>(Write::Append {
                draft,
                attachments,
                value: id,
            })
        })?;
        Ok(id)
    }

    /// Records tenant settings (reference pattern, retention rule).
    pub(super) fn configure(
        &self,
        actor: &str,
        set: Map<String, Value>,
    ) -> Result<(), RecordsError> {
        self.write_plan(actor, |_| {
            let mut record = Self::new_event(None)?;
            record.set = set;
            Ok(Plan::event(kind::TENANT_CONFIGURE, record, vec![]))
        })?;
        Ok(())
    }

    pub(super) fn new_event(id: Option<Uuid>) -> Result<EventRecord, RecordsError> {
        EventRecord::new(id)
            .map_err(|e| RecordsError::Internal(format!("no randomness for the salt: {e}")))
    }

    /// Looks up an idempotency key: the object of the first request, an error for a
    /// different request, or `None` when the key is new.
    fn replay(
        index: &TenantIndex,
        request_id: Option<&str>,
        digest: &Digest,
    ) -> Result<Option<Uuid>, RecordsError> {
        Ok(Self::replay_version(index, request_id, digest)?.map(|(id, _)| id))
    }

    /// Like `replay`, also handing back the version number an `add_version` created.
    fn replay_version(
        index: &TenantIndex,
        request_id: Option<&str>,
        digest: &Digest,
    ) -> Result<Option<(Uuid, Option<u32>)>, RecordsError> {
        let Some(rid) = request_id else {
            return Ok(None);
        };
        validate::request_id(rid)?;
        let Some(v) = index.get(schema::key(tag::REQUEST).raw(rid.as_bytes()))? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Seen {
            digest: Digest,
            id: Uuid,
            #[serde(default)]
            version: Option<u32>,
        }
        let seen: Seen = serde_json::from_slice(&v).map_err(internal)?;
        if &seen.digest != digest {
            return Err(RecordsError::IdempotencyConflict {
                request_id: rid.to_owned(),
            });
        }
        Ok(Some((seen.id, seen.version)))
    }

    fn request_digest<T: Serialize>(op: &str, request: &T) -> Result<Digest, RecordsError> {
        let mut bytes = op.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend(serde_json::to_vec(request).map_err(internal)?);
        Ok(Digest::of(&bytes))
    }

    fn fresh_id(index: &TenantIndex, id: Option<Uuid>) -> Result<Uuid, RecordsError> {
        match id {
            None => Ok(schema::new_id()),
            Some(id) if id.is_nil() => Err(RecordsError::Invalid {
                field: "id".into(),
                reason: "the nil UUID is not an id".into(),
            }),
            Some(id) => {
                if index.contains_key(schema::object(id))? {
                    return Err(RecordsError::AlreadyExists { id: id.to_string() });
                }
                Ok(id)
            }
        }
    }

    /// Sets the tenant's file reference pattern (default `{unit}-{seq:04}/{year}`).
    pub fn configure_reference_pattern(
        &self,
        actor: &str,
        pattern: &str,
    ) -> Result<(), RecordsError> {
        validate::reference_pattern(pattern)?;
        self.configure(
            actor,
            set_fields(vec![("reference_pattern", Value::from(pattern))]),
        )
    }

    /// The tenant's file reference pattern.
    pub fn reference_pattern(&self) -> Result<String, RecordsError> {
        read_pattern(self.tenant.index())
    }

    /// Creates a plan unit.
    pub fn create_plan_unit(
        &self,
        actor: &str,
        new: NewPlanUnit,
        request_id: Option<&str>,
    ) -> Result<PlanUnit, RecordsError> {
        validate::plan_code(&new.code)?;
        validate::line("title", &new.title, MAX_SUBJECT)?;
        validate::text("description", &new.description, MAX_TEXT)?;
        check_retention(new.retention)?;
        let digest = Self::request_digest("plan_unit.create", &new)?;
        let obj = self.write(actor, |index| {
            if let Some(id) = Self::replay(index, request_id, &digest)? {
                return Ok(Plan::Done(id));
            }
            if let Some(parent) = new.parent {
                let p = expect_plan_unit(index, parent, "parent")?;
                if !p.active {
                    return Err(RecordsError::Inactive {
                        id: parent.to_string(),
                    });
                }
            }
            check_code_free(index, &new.code, None)?;
            let id = Self::fresh_id(index, new.id)?;
            let mut record = Self::new_event(Some(id))?;
            record.set = set_fields(vec![
                ("parent", to_value(&new.parent)?),
                ("code", Value::from(new.code.clone())),
                ("title", Value::from(new.title.clone())),
                ("description", Value::from(new.description.clone())),
                ("retention", to_value(&new.retention)?),
                ("disposal", to_value(&new.disposal)?),
                ("active", Value::from(true)),
            ]);
            record.request_id = request_id.map(str::to_owned);
            record.request_digest = request_id.map(|_| digest);
            Ok(Plan::Event {
                kind: kind::PLAN_UNIT_CREATE,
                record: Box::new(record),
                contents: vec![],
            })
        })?;
        as_plan_unit(obj)
    }

    /// Changes fields of a plan unit, file, case or document. `patch` maps field names to
    /// new JSON values (the fields an API's field mask names); `expected_revision` must be
    /// the object's current revision. Closed files and cases, and documents in them,
    /// cannot be changed. Returns the object after the change.
    pub fn update(
        &self,
        actor: &str,
        id: Uuid,
        expected_revision: u64,
        patch: Map<String, Value>,
        reason: Option<String>,
    ) -> Result<Object, RecordsError> {
        if let Some(r) = &reason {
            validate::line("reason", r, MAX_TEXT)?;
        }
        if patch.is_empty() {
            return Err(RecordsError::Invalid {
                field: "update_mask".into(),
                reason: "names no field to change".into(),
            });
        }
        self.authorize_write(id)?;
        self.write(actor, |index| {
            let current = get_object(index, id)?;
            check_revision(&current, expected_revision)?;
            let patch = super::fields::expand_patch(&current, &patch)?;
            let allowed = updatable(current.kind());
            for field in patch.keys() {
                if !allowed.contains(&field.as_str()) {
                    return Err(RecordsError::Invalid {
                        field: field.clone(),
                        reason: format!(
                            "cannot be changed on a {}; changeable: {}",
                            current.kind(),
                            allowed.join(", ")
                        ),
                    });
                }
            }
            ensure_writable(index, &current)?;
            let mut updated = apply_patch(&current, &patch)?;
            super::fields::check_object(index, &current, &mut updated)?;
            // Levels are raised by an update; lowering one is a registrar's decision with
            // a reason (`set_confidentiality`).
            if let (Ok(old), Ok(new)) = (
                super::org::own_level(&current),
                super::org::own_level(&updated),
            ) {
                if crate::access::rank(new) < crate::access::rank(old) {
                    return Err(RecordsError::FailedPrecondition {
                        kind: current.kind(),
                        id: id.to_string(),
                        reason: format!(
                            "confidentiality {} cannot be lowered to {} by an update; a \
                             registrar lowers it with a reason (SetConfidentiality)",
                            old.code(),
                            new.code()
                        ),
                    });
                }
            }
            validate_object(index, &current, &updated)?;
            let old = to_value(&current)?;
            let new = to_value(&updated)?;
            let set: Map<String, Value> = patch
                .keys()
                .filter(|k| old.get(k.as_str()) != new.get(k.as_str()))
                .map(|k| {
                    // Fields left out when empty are written as their empty value.
                    let absent = match k.as_str() {
                        "custom_fields" => Value::Object(Map::new()),
                        "document_type" => Value::from(""),
                        _ => Value::Null,
                    };
                    (k.clone(), new.get(k.as_str()).cloned().unwrap_or(absent))
                })
                .collect();
            if set.is_empty() {
                return Ok(Plan::Done(id));
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = set;
            record.reason = reason.clone();
            let kind = match current.kind() {
                ObjectKind::PlanUnit => kind::PLAN_UNIT_UPDATE,
                ObjectKind::File => kind::FILE_UPDATE,
                ObjectKind::Case => kind::CASE_UPDATE,
                ObjectKind::Document => kind::DOCUMENT_UPDATE,
            };
            Ok(Plan::Event {
                kind,
                record: Box::new(record),
                contents: vec![],
            })
        })
    }

    /// Deactivates a plan unit: it keeps its files but accepts no new ones.
    pub fn deactivate_plan_unit(
        &self,
        actor: &str,
        id: Uuid,
        expected_revision: u64,
    ) -> Result<PlanUnit, RecordsError> {
        let patch = set_fields(vec![("active", Value::from(false))]);
        as_plan_unit(self.update(actor, id, expected_revision, patch, None)?)
    }

    /// Deletes a plan unit that no file and no other unit uses.
    pub fn delete_plan_unit(
        &self,
        actor: &str,
        id: Uuid,
        expected_revision: u64,
    ) -> Result<(), RecordsError> {
        validate::line("actor", actor, MAX_NAME)?;
        let ((), _) = self.tenant.append_with(|index| {
            let unit = expect_plan_unit(index, id, "id")?;
            check_revision(&Object::PlanUnit(unit.clone()), expected_revision)?;
            if index.scan_prefix(schema::unit_files(id)).next().is_some() {
                return Err(RecordsError::InUse {
                    id: id.to_string(),
                    reason: "files are filed under it".into(),
                });
            }
            if index
                .scan_prefix(schema::unit_children(Some(id)))
                .next()
                .is_some()
            {
                return Err(RecordsError::InUse {
                    id: id.to_string(),
                    reason: "it has sub-units".into(),
                });
            }
            let record = Self::new_event(Some(id))?;
            let (draft, attachments) = event_entry(actor, kind::PLAN_UNIT_DELETE, &record, vec![]);
            Ok(Write::Append {
                draft,
                attachments,
                value: (),
            })
        })?;
        Ok(())
    }

    /// Creates a file (or, with `parent_file`, a sub-file) with a generated reference.
    pub fn create_file(
        &self,
        actor: &str,
        new: NewFile,
        request_id: Option<&str>,
    ) -> Result<File, RecordsError> {
        validate::line("subject", &new.subject, MAX_SUBJECT)?;
        validate::running_time(new.begin, new.end)?;
        validate::optional_line("lead_unit", &new.lead_unit, MAX_NAME)?;
        validate::text("notes", &new.notes, MAX_TEXT)?;
        let digest = Self::request_digest("file.create", &new)?;
        if let Some(p) = new.parent_file {
            self.authorize_write(p)?;
        }
        let obj = self.write(actor, |index| {
            if let Some(id) = Self::replay(index, request_id, &digest)? {
                return Ok(Plan::Done(id));
            }
            let unit = expect_plan_unit(index, new.plan_unit, "plan_unit")?;
            if !unit.active {
                return Err(RecordsError::Inactive {
                    id: unit.id.to_string(),
                });
            }
            if let Some(parent) = new.parent_file {
                let p = expect_file(index, parent, "parent_file")?;
                if p.status == Status::Closed {
                    return Err(RecordsError::Closed {
                        kind: ObjectKind::File,
                        id: parent.to_string(),
                    });
                }
                if p.plan_unit != new.plan_unit {
                    return Err(RecordsError::Invalid {
                        field: "plan_unit".into(),
                        reason: format!(
                            "a sub-file belongs to its parent file's plan unit {}",
                            p.plan_unit
                        ),
                    });
                }
            }
            let custom_fields = super::fields::check_values(
                index,
                &super::fields::Target {
                    kind: ObjectKind::File,
                    plan_unit: unit.id,
                    document_type: String::new(),
                },
                &new.custom_fields,
                None,
            )?;
            let id = Self::fresh_id(index, new.id)?;
            let year = today().year();
            let pattern = read_pattern(index)?;
            let mut number = read_counter(index, unit.id, year)?;
            // A changed pattern can collide with older references; draw until free.
            let reference = loop {
                number = number
                    .checked_add(1)
                    .ok_or_else(|| internal("running number overflow"))?;
                let r = validate::render_reference(&pattern, &unit.code, year, number);
                if !index.contains_key(schema::key(tag::REFERENCE).raw(r.as_bytes()))? {
                    break r;
                }
            };
            let mut record = Self::new_event(Some(id))?;
            record.set = set_fields(vec![
                ("plan_unit", to_value(&new.plan_unit)?),
                ("parent_file", to_value(&new.parent_file)?),
                ("reference", Value::from(reference)),
                ("subject", Value::from(new.subject.clone())),
                ("begin", to_value(&new.begin)?),
                ("end", to_value(&new.end)?),
                ("confidentiality", to_value(&new.confidentiality)?),
                ("medium", to_value(&new.medium)?),
                ("lead_unit", Value::from(new.lead_unit.clone())),
                ("notes", Value::from(new.notes.clone())),
                ("status", to_value(&Status::Open)?),
                ("closed_on", Value::Null),
            ]);
            super::fields::put_values(&mut record.set, &custom_fields)?;
            record.counter = Some(Counter {
                scope: unit.id,
                year,
                number,
            });
            record.request_id = request_id.map(str::to_owned);
            record.request_digest = request_id.map(|_| digest);
            Ok(Plan::Event {
                kind: kind::FILE_CREATE,
                record: Box::new(record),
                contents: vec![],
            })
        })?;
        as_file(obj)
    }

    /// Creates a case in an open file, or a sub-case in an open case.
    pub fn create_case(
        &self,
        actor: &str,
        new: NewCase,
        request_id: Option<&str>,
    ) -> Result<Case, RecordsError> {
        validate::line("subject", &new.subject, MAX_SUBJECT)?;
        validate::running_time(new.begin, new.end)?;
        validate::text("notes", &new.notes, MAX_TEXT)?;
        let digest = Self::request_digest("case.create", &new)?;
        self.authorize_write(new.parent)?;
        let obj = self.write(actor, |index| {
            if let Some(id) = Self::replay(index, request_id, &digest)? {
                return Ok(Plan::Done(id));
            }
            let parent =
                get_object(index, new.parent).map_err(|e| rename_not_found(e, "parent"))?;
            let (file, parent_case) = match &parent {
                Object::File(f) => (f.id, None),
                Object::Case(c) => (c.file, Some(c.id)),
                other => {
                    return Err(RecordsError::WrongKind {
                        id: new.parent.to_string(),
                        expected: "file or case".into(),
                        found: other.kind(),
                    })
                }
            };
            ensure_writable(index, &parent)?;
            let custom_fields = super::fields::check_values(
                index,
                &super::fields::Target {
                    kind: ObjectKind::Case,
                    plan_unit: expect_file(index, file, "parent")?.plan_unit,
                    document_type: String::new(),
                },
                &new.custom_fields,
                None,
            )?;
            let id = Self::fresh_id(index, new.id)?;
            let number = read_counter(index, file, 0)?
                .checked_add(1)
                .ok_or_else(|| internal("case number overflow"))?;
            let mut record = Self::new_event(Some(id))?;
            record.set = set_fields(vec![
                ("file", to_value(&file)?),
                ("parent_case", to_value(&parent_case)?),
                ("number", Value::from(number)),
                ("subject", Value::from(new.subject.clone())),
                ("begin", to_value(&new.begin)?),
                ("end", to_value(&new.end)?),
                ("confidentiality", to_value(&new.confidentiality)?),
                ("notes", Value::from(new.notes.clone())),
                ("status", to_value(&Status::Open)?),
                ("closed_on", Value::Null),
            ]);
            super::fields::put_values(&mut record.set, &custom_fields)?;
            record.counter = Some(Counter {
                scope: file,
                year: 0,
                number,
            });
            record.request_id = request_id.map(str::to_owned);
            record.request_digest = request_id.map(|_| digest);
            Ok(Plan::Event {
                kind: kind::CASE_CREATE,
                record: Box::new(record),
                contents: vec![],
            })
        })?;
        as_case(obj)
    }

    /// Creates a document in an open file or case, or an attachment under a document.
    pub fn create_document(
        &self,
        actor: &str,
        new: NewDocument,
        request_id: Option<&str>,
    ) -> Result<Document, RecordsError> {
        check_document_fields(
            &new.subject,
            &new.sender,
            &new.recipients,
            &new.clerk,
            &new.external_reference,
        )?;
        super::fields::check_document_type("document_type", &new.document_type)?;
        let digest = Self::request_digest("document.create", &new)?;
        self.authorize_write(new.parent)?;
        let obj = self.write(actor, |index| {
            if let Some(id) = Self::replay(index, request_id, &digest)? {
                return Ok(Plan::Done(id));
            }
            let (record, contents) = document_record(index, &new, None, request_id, digest)?;
            Ok(Plan::event(kind::DOCUMENT_CREATE, record, contents))
        })?;
        as_document(obj)
    }

    /// Creates a document (or attachment) together with its first version, as one
    /// journal entry: the `document.create` event carries version 1 in its `versions`, as
    /// an imported document's entry does, and the entry lists the renditions' bytes as
    /// content payloads. The bytes must be in the content store already
    /// ([`TenantRecords::put_content`]); unknown content or any refused field appends
    /// nothing. One entry instead of two halves what a new document costs the journal and
    /// the writers' group-commit waits (issue 20).
    pub fn create_document_with_version(
        &self,
        actor: &str,
        new: NewDocument,
        version: NewVersion,
        request_id: Option<&str>,
    ) -> Result<(Document, Version), RecordsError> {
        check_document_fields(
            &new.subject,
            &new.sender,
            &new.recipients,
            &new.clerk,
            &new.external_reference,
        )?;
        check_new_version(&version)?;
        let digest = Self::request_digest("document.create_with_version", &(&new, &version))?;
        self.authorize_write(new.parent)?;
        let obj = self.write(actor, |index| {
            if let Some(id) = Self::replay(index, request_id, &digest)? {
                return Ok(Plan::Done(id));
            }
            let (record, contents) =
                document_record(index, &new, Some(&version), request_id, digest)?;
            Ok(Plan::event(kind::DOCUMENT_CREATE, record, contents))
        })?;
        let doc = as_document(obj)?;
        let first = self.version(doc.id, 1)?;
        Ok((doc, first))
    }

    /// Stores a new version of a document; its renditions' bytes must already be in the
    /// content store. Versions are numbered 1, 2, ... and never change afterwards.
    pub fn add_version(
        &self,
        actor: &str,
        document: Uuid,
        new: NewVersion,
        request_id: Option<&str>,
    ) -> Result<Version, RecordsError> {
        check_new_version(&new)?;
        self.authorize_write(document)?;
        let digest = Self::request_digest("version.add", &(document, &new))?;
        let mut replayed: Option<u32> = None;
        let obj = self.write(actor, |index| {
            if let Some((id, number)) = Self::replay_version(index, request_id, &digest)? {
                replayed = number;
                return Ok(Plan::Done(id));
            }
            let doc = expect_document(index, document, "document")?;
            ensure_writable(index, &Object::Document(doc.clone()))?;
            let number = doc
                .versions
                .checked_add(1)
                .ok_or_else(|| internal("version overflow"))?;
            let (data, contents) = version_data(number, &new);
            let mut record = Self::new_event(Some(document))?;
            record.version = Some(data);
            record.request_id = request_id.map(str::to_owned);
            record.request_digest = request_id.map(|_| digest);
            Ok(Plan::Event {
                kind: kind::VERSION_ADD,
                record: Box::new(record),
                contents,
            })
        })?;
        let doc = as_document(obj)?;
        self.version(doc.id, replayed.unwrap_or(doc.versions))
    }

    /// Whether new documents, cases or versions may be added to `id` (a file, case or
    /// document): `Closed` names the closed file or case on the way up, if any. For
    /// refusing an upload before any byte is stored.
    pub fn check_writable(&self, id: Uuid) -> Result<(), RecordsError> {
        let index = self.tenant.index();
        ensure_writable(index, &get_object(index, id)?)
    }

    /// Closes (zdA) a file with its open cases and sub-files, or a case with its open
    /// sub-cases, on `date` (today if `None`; not in the future).
    pub fn close(
        &self,
        actor: &str,
        id: Uuid,
        expected_revision: Option<u64>,
        date: Option<NaiveDate>,
    ) -> Result<Object, RecordsError> {
        let date = date.unwrap_or_else(today);
        if date > today() {
            return Err(RecordsError::Invalid {
                field: "closed_on".into(),
                reason: format!("{date} is in the future"),
            });
        }
        self.authorize_write(id)?;
        self.write(actor, |index| {
            let current = get_object(index, id)?;
            if let Some(r) = expected_revision {
                check_revision(&current, r)?;
            }
            let kind = match &current {
                Object::File(_) => kind::FILE_CLOSE,
                Object::Case(_) => kind::CASE_CLOSE,
                other => {
                    return Err(RecordsError::WrongKind {
                        id: id.to_string(),
                        expected: "file or case".into(),
                        found: other.kind(),
                    })
                }
            };
            if current.status() == Status::Closed {
                return Err(RecordsError::FailedPrecondition {
                    kind: current.kind(),
                    id: id.to_string(),
                    reason: "is already closed".into(),
                });
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = set_fields(vec![
                ("status", to_value(&Status::Closed)?),
                ("closed_on", to_value(&date)?),
            ]);
            record.cascade = open_descendants(index, id)?;
            Ok(Plan::Event {
                kind,
                record: Box::new(record),
                contents: vec![],
            })
        })
    }

    /// Reopens a closed file or case (a case only inside an open file).
    pub fn reopen(
        &self,
        actor: &str,
        id: Uuid,
        expected_revision: Option<u64>,
        reason: Option<String>,
    ) -> Result<Object, RecordsError> {
        if let Some(r) = &reason {
            validate::line("reason", r, MAX_TEXT)?;
        }
        self.authorize_write(id)?;
        self.write(actor, |index| {
            let current = get_object(index, id)?;
            if let Some(r) = expected_revision {
                check_revision(&current, r)?;
            }
            let (kind, container) = match &current {
                Object::File(f) => (kind::FILE_REOPEN, f.parent_file),
                Object::Case(c) => (kind::CASE_REOPEN, Some(c.parent_case.unwrap_or(c.file))),
                other => {
                    return Err(RecordsError::WrongKind {
                        id: id.to_string(),
                        expected: "file or case".into(),
                        found: other.kind(),
                    })
                }
            };
            if current.status() == Status::Open {
                return Err(RecordsError::FailedPrecondition {
                    kind: current.kind(),
                    id: id.to_string(),
                    reason: "is not closed".into(),
                });
            }
            // What was offered, appraised or transferred must stay as it was.
            let top = super::retention::top_file(index, &current)?;
            if let Some(h) = &top.handed_over {
                return Err(RecordsError::FailedPrecondition {
                    kind: current.kind(),
                    id: id.to_string(),
                    reason: format!(
                        "belongs to file {}, which was handed over to {} on {}; it can no \
                         longer be reopened",
                        top.reference, h.to, h.on
                    ),
                });
            }
            if let Some(p) = super::retention::load_progress(index, top.id)? {
                return Err(RecordsError::FailedPrecondition {
                    kind: current.kind(),
                    id: id.to_string(),
                    reason: format!(
                        "belongs to file {}, which is in disposal ({p}); it can no longer be \
                         reopened",
                        top.reference
                    ),
                });
            }
            if let Some(c) = container {
                ensure_writable(index, &get_object(index, c)?)?;
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = set_fields(vec![("status", to_value(&Status::Open)?)]);
            record.reason = reason.clone();
            Ok(Plan::Event {
                kind,
                record: Box::new(record),
                contents: vec![],
            })
        })
    }
}

/// The journal entry of an event: its salted record attached, content payloads listed.
fn event_entry(
    actor: &str,
    kind: &str,
    record: &EventRecord,
    contents: Vec<Payload>,
) -> (EntryDraft, Vec<Attachment>) {
    let attachment = Attachment::new(record.to_bytes());
    let mut payloads = vec![Payload {
        kind: PayloadKind::Inline,
        role: ROLE_EVENT.into(),
        size: attachment.bytes.as_ref().map_or(0, |b| b.len() as u64),
        digest: attachment.digest,
    }];
    payloads.extend(contents);
    let object = record.id.map(|id| id.to_string()).unwrap_or_default();
    (
        EntryDraft {
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            object,
            payloads,
        },
        vec![attachment],
    )
}

/// The event of a new document (with its first version, if given) and the content
/// payloads of its entry, checked against the index: the parent must be a writable file,
/// case or document, a client-chosen id unused.
fn document_record(
    index: &TenantIndex,
    new: &NewDocument,
    first: Option<&NewVersion>,
    request_id: Option<&str>,
    digest: Digest,
) -> Result<(EventRecord, Vec<Payload>), RecordsError> {
    let parent = get_object(index, new.parent).map_err(|e| rename_not_found(e, "parent"))?;
    let file = match &parent {
        Object::File(f) => f.id,
        Object::Case(c) => c.file,
        Object::Document(d) => d.file,
        Object::PlanUnit(_) => {
            return Err(RecordsError::WrongKind {
                id: new.parent.to_string(),
                expected: "file, case or document".into(),
                found: ObjectKind::PlanUnit,
            })
        }
    };
    ensure_writable(index, &parent)?;
    let custom_fields = super::fields::check_values(
        index,
        &super::fields::Target {
            kind: ObjectKind::Document,
            plan_unit: expect_file(index, file, "parent")?.plan_unit,
            document_type: new.document_type.clone(),
        },
        &new.custom_fields,
        None,
    )?;
    let id = TenantRecords::fresh_id(index, new.id)?;
    let mut record = TenantRecords::new_event(Some(id))?;
    let versions = u32::from(first.is_some());
    record.set = set_fields(vec![
        ("parent", to_value(&new.parent)?),
        ("file", to_value(&file)?),
        ("subject", Value::from(new.subject.clone())),
        ("letter_date", to_value(&new.letter_date)?),
        ("received_on", to_value(&new.received_on)?),
        ("sent_on", to_value(&new.sent_on)?),
        ("sender", Value::from(new.sender.clone())),
        ("recipients", to_value(&new.recipients)?),
        ("clerk", Value::from(new.clerk.clone())),
        (
            "external_reference",
            Value::from(new.external_reference.clone()),
        ),
        ("confidentiality", to_value(&new.confidentiality)?),
        ("versions", Value::from(versions)),
    ]);
    if !new.document_type.is_empty() {
        record.set.insert(
            "document_type".into(),
            Value::from(new.document_type.clone()),
        );
    }
    super::fields::put_values(&mut record.set, &custom_fields)?;
    let mut contents = Vec::new();
    if let Some(v) = first {
        let (data, c) = version_data(1, v);
        record.versions = vec![data];
        contents = c;
    }
    record.request_id = request_id.map(str::to_owned);
    record.request_digest = request_id.map(|_| digest);
    Ok((record, contents))
}

/// A version as its event records it (fresh rendition ids), and the entry's content
/// payloads naming the renditions' bytes.
fn version_data(number: u32, new: &NewVersion) -> (VersionData, Vec<Payload>) {
    let renditions: Vec<Rendition> = new
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
    let contents = renditions
        .iter()
        .map(|r| Payload {
            kind: PayloadKind::Content,
            role: ROLE_RENDITION.into(),
            size: r.size,
            digest: r.sha256,
        })
        .collect();
    let data = VersionData {
        number,
        comment: new.comment.clone(),
        renditions,
        original: None,
    };
    (data, contents)
}

/// The rules of a new version that need no index: comment, 1 to 32 renditions, their
/// names and media types.
fn check_new_version(new: &NewVersion) -> Result<(), RecordsError> {
    validate::text("comment", &new.comment, MAX_TEXT)?;
    if new.renditions.is_empty() || new.renditions.len() > MAX_RENDITIONS {
        return Err(RecordsError::Invalid {
            field: "renditions".into(),
            reason: format!(
                "{} given, 1 to {MAX_RENDITIONS} allowed",
                new.renditions.len()
            ),
        });
    }
    for r in &new.renditions {
        validate::file_name(&r.file_name)?;
        validate::media_type(&r.media_type)?;
    }
    Ok(())
}

fn check_retention(r: Retention) -> Result<(), RecordsError> {
    match r {
        Retention::Years(y) if y > 500 => Err(RecordsError::Invalid {
            field: "retention".into(),
            reason: format!("{y} years; at most 500 (use unlimited for permanent retention)"),
        }),
        _ => Ok(()),
    }
}

fn check_document_fields(
    subject: &str,
    sender: &str,
    recipients: &[String],
    clerk: &str,
    external_reference: &str,
) -> Result<(), RecordsError> {
    validate::line("subject", subject, MAX_SUBJECT)?;
    validate::optional_line("sender", sender, MAX_NAME)?;
    validate::optional_line("clerk", clerk, MAX_NAME)?;
    validate::optional_line("external_reference", external_reference, MAX_NAME)?;
    if recipients.len() > MAX_RECIPIENTS {
        return Err(RecordsError::Invalid {
            field: "recipients".into(),
            reason: format!("{} given, at most {MAX_RECIPIENTS}", recipients.len()),
        });
    }
    for r in recipients {
        validate::line("recipients", r, MAX_NAME)?;
    }
    Ok(())
}

/// Validates an object after a patch, including rules that need the index.
fn validate_object(
    index: &TenantIndex,
    before: &Object,
    after: &Object,
) -> Result<(), RecordsError> {
    match after {
        Object::PlanUnit(u) => {
            validate::plan_code(&u.code)?;
            validate::line("title", &u.title, MAX_SUBJECT)?;
            validate::text("description", &u.description, MAX_TEXT)?;
            check_retention(u.retention)?;
            check_code_free(index, &u.code, Some(u.id))?;
            let Object::PlanUnit(old) = before else {
                return Ok(());
            };
            if u.parent != old.parent {
                if let Some(p) = u.parent {
                    expect_plan_unit(index, p, "parent")?;
                    check_no_cycle(index, u.id, p)?;
                }
            }
            Ok(())
        }
        Object::File(f) => {
            validate::line("subject", &f.subject, MAX_SUBJECT)?;
            validate::running_time(f.begin, f.end)?;
            validate::optional_line("lead_unit", &f.lead_unit, MAX_NAME)?;
            validate::text("notes", &f.notes, MAX_TEXT)
        }
        Object::Case(c) => {
            validate::line("subject", &c.subject, MAX_SUBJECT)?;
            validate::running_time(c.begin, c.end)?;
            validate::text("notes", &c.notes, MAX_TEXT)
        }
        Object::Document(d) => {
            super::fields::check_document_type("document_type", &d.document_type)?;
            check_document_fields(
                &d.subject,
                &d.sender,
                &d.recipients,
                &d.clerk,
                &d.external_reference,
            )
        }
    }
}

/// Applies a patch field by field, so that a type error names its field.
fn apply_patch(current: &Object, patch: &Map<String, Value>) -> Result<Object, RecordsError> {
    let Value::Object(mut fields) = to_value(current)? else {
        return Err(internal("object is not a JSON object"));
    };
    for (k, v) in patch {
        fields.insert(k.clone(), v.clone());
        serde_json::from_value::<Object>(Value::Object(fields.clone())).map_err(|e| {
            RecordsError::Invalid {
                field: k.clone(),
                reason: format!("value {v} does not fit: {e}"),
            }
        })?;
    }
    serde_json::from_value(Value::Object(fields)).map_err(internal)
}

fn check_revision(obj: &Object, expected: u64) -> Result<(), RecordsError> {
    if obj.revision() != expected {
        return Err(RecordsError::StaleRevision {
            id: obj.id().to_string(),
            expected,
            current: obj.revision(),
        });
    }
    Ok(())
}

fn check_code_free(index: &TenantIndex, code: &str, own: Option<Uuid>) -> Result<(), RecordsError> {
    if let Some(v) = index.get(schema::key(tag::UNIT_CODE).raw(code.as_bytes()))? {
        let existing = Uuid::from_slice(&v).map_err(internal)?;
        if Some(existing) != own {
            return Err(RecordsError::DuplicateCode {
                code: code.to_owned(),
                existing: existing.to_string(),
            });
        }
    }
    Ok(())
}

fn check_no_cycle(index: &TenantIndex, id: Uuid, new_parent: Uuid) -> Result<(), RecordsError> {
    let mut cur = Some(new_parent);
    let mut steps = 0;
    while let Some(c) = cur {
        if c == id {
            return Err(RecordsError::Cycle {
                id: id.to_string(),
                parent: new_parent.to_string(),
            });
        }
        steps += 1;
        if steps > 10_000 {
            return Err(internal("plan unit hierarchy deeper than 10000"));
        }
        cur = expect_plan_unit(index, c, "parent")?.parent;
    }
    Ok(())
}

/// Refuses writes into closed files and cases, following documents and cases up to their file.
fn ensure_writable(index: &TenantIndex, obj: &Object) -> Result<(), RecordsError> {
    let mut cur = obj.clone();
    for _ in 0..10_000 {
        match &cur {
            Object::PlanUnit(_) => return Ok(()),
            Object::File(f) => {
                if f.status == Status::Closed {
                    return Err(RecordsError::Closed {
                        kind: ObjectKind::File,
                        id: f.id.to_string(),
                    });
                }
                match f.parent_file {
                    Some(p) => cur = get_object(index, p)?,
                    None => return Ok(()),
                }
            }
            Object::Case(c) => {
                if c.status == Status::Closed {
                    return Err(RecordsError::Closed {
                        kind: ObjectKind::Case,
                        id: c.id.to_string(),
                    });
                }
                cur = get_object(index, c.parent_case.unwrap_or(c.file))?;
            }
            Object::Document(d) => cur = get_object(index, d.parent)?,
        }
    }
    Err(internal("containment deeper than 10000"))
}

/// Open cases and sub-files below `id` (closing cascades to them).
fn open_descendants(index: &TenantIndex, id: Uuid) -> Result<Vec<Uuid>, RecordsError> {
    let mut out = Vec::new();
    let mut todo = vec![id];
    while let Some(parent) = todo.pop() {
        for kv in index.scan_prefix(schema::children(parent)) {
            let (k, v) = kv?;
            if v.first() == Some(&b'd') {
                continue;
            }
            let Some(child) = schema::trailing_id(&k) else {
                continue;
            };
            if let Some(obj) = load_object(index, child)? {
                if obj.status() == Status::Open {
                    out.push(child);
                }
                todo.push(child);
            }
        }
    }
    Ok(out)
}

pub(super) fn read_pattern(index: &TenantIndex) -> Result<String, RecordsError> {
    match index.get(schema::key(tag::SETTINGS))? {
        None => Ok(DEFAULT_REFERENCE_PATTERN.to_owned()),
        Some(v) => {
            let settings: Map<String, Value> = serde_json::from_slice(&v).map_err(internal)?;
            Ok(settings
                .get("reference_pattern")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_REFERENCE_PATTERN)
                .to_owned())
        }
    }
}

pub(super) fn read_counter(
    index: &TenantIndex,
    scope: Uuid,
    year: i32,
) -> Result<u32, RecordsError> {
    Ok(index
        .get(schema::counter(scope, year))?
        .and_then(|v| <[u8; 4]>::try_from(&v[..]).ok())
        .map_or(0, u32::from_be_bytes))
}

pub(super) fn get_object(index: &TenantIndex, id: Uuid) -> Result<Object, RecordsError> {
    if let Some(o) = load_object(index, id)? {
        return Ok(o);
    }
    if let Some(v) = index.get(schema::key(tag::TOMBSTONE).id(id))? {
        #[derive(Deserialize)]
        struct Tomb {
            kind: ObjectKind,
            destroyed_on: NaiveDate,
        }
        if let Ok(t) = serde_json::from_slice::<Tomb>(&v) {
            return Err(RecordsError::Destroyed {
                kind: t.kind,
                id: id.to_string(),
                on: t.destroyed_on,
            });
        }
    }
    Err(RecordsError::NotFound {
        what: "object".into(),
        id: id.to_string(),
    })
}

fn rename_not_found(e: RecordsError, what: &str) -> RecordsError {
    match e {
        RecordsError::NotFound { id, .. } => RecordsError::NotFound {
            what: what.into(),
            id,
        },
        other => other,
    }
}

fn wrong_kind(id: Uuid, expected: &str, found: ObjectKind) -> RecordsError {
    RecordsError::WrongKind {
        id: id.to_string(),
        expected: expected.into(),
        found,
    }
}

fn expect_plan_unit(index: &TenantIndex, id: Uuid, what: &str) -> Result<PlanUnit, RecordsError> {
    match get_object(index, id).map_err(|e| rename_not_found(e, what))? {
        Object::PlanUnit(u) => Ok(u),
        other => Err(wrong_kind(id, "plan unit", other.kind())),
    }
}

fn expect_file(index: &TenantIndex, id: Uuid, what: &str) -> Result<File, RecordsError> {
    match get_object(index, id).map_err(|e| rename_not_found(e, what))? {
        Object::File(f) => Ok(f),
        other => Err(wrong_kind(id, "file", other.kind())),
    }
}

fn expect_document(index: &TenantIndex, id: Uuid, what: &str) -> Result<Document, RecordsError> {
    match get_object(index, id).map_err(|e| rename_not_found(e, what))? {
        Object::Document(d) => Ok(d),
        other => Err(wrong_kind(id, "document", other.kind())),
    }
}

pub(super) fn as_plan_unit(o: Object) -> Result<PlanUnit, RecordsError> {
    match o {
        Object::PlanUnit(u) => Ok(u),
        other => Err(wrong_kind(other.id(), "plan unit", other.kind())),
    }
}

pub(super) fn as_file(o: Object) -> Result<File, RecordsError> {
    match o {
        Object::File(f) => Ok(f),
        other => Err(wrong_kind(other.id(), "file", other.kind())),
    }
}

pub(super) fn as_case(o: Object) -> Result<Case, RecordsError> {
    match o {
        Object::Case(c) => Ok(c),
        other => Err(wrong_kind(other.id(), "case", other.kind())),
    }
}

pub(super) fn as_document(o: Object) -> Result<Document, RecordsError> {
    match o {
        Object::Document(d) => Ok(d),
        other => Err(wrong_kind(other.id(), "document", other.kind())),
    }
}
