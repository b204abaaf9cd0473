//! Re-filing (Umprotokollierung): a file moves to another plan unit and gets a new
//! reference by the tenant's pattern (the old one is kept as a previous reference), a case
//! moves to another file or case, a document to another file or case.
//!
//! One entry records the move of the object and of everything that moves with it
//! (sub-files with the file; sub-cases and documents with a case; attachments with a
//! document), each with its fields before and after in the history. Re-filing is refused
//! for closed objects (and into closed containers), for files under a hold and for files
//! in disposal, so that what was offered or held stays where it was; destroyed objects are
//! gone. Retention follows the new place: a file inherits its new plan unit's defaults
//! unless it has its own, and cases and documents follow their new file.

use chrono::{Datelike, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::index::TenantIndex;

use super::event::{kind, Counter, Move};
use super::retention::{active_holds, load_progress, top_file};
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, read_counter, read_pattern, Plan};
use super::types::*;
use super::validate::{self, MAX_TEXT};
use super::{RecordsError, TenantRecords};

fn internal(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Internal(e.to_string())
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RecordsError> {
    serde_json::to_value(v).map_err(internal)
}

fn fields(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn precondition(obj: &Object, reason: String) -> RecordsError {
    RecordsError::FailedPrecondition {
        kind: obj.kind(),
        id: obj.id().to_string(),
        reason,
    }
}

/// Refuses moving `obj` out of, or anything into, the file tree `top` when that tree is
/// held or in disposal.
fn check_tree(index: &TenantIndex, obj: &Object, top: &File) -> Result<(), RecordsError> {
    let holds = active_holds(index, top.id)?;
    if let Some(h) = holds.first() {
        return Err(precondition(
            obj,
            format!(
                "file {} is under hold {} ({}); release the hold before re-filing",
                top.reference, h.id, h.reason
            ),
        ));
    }
    if let Some(p) = load_progress(index, top.id)? {
        return Err(precondition(
            obj,
            format!(
                "file {} is in disposal ({p}); it can no longer be re-filed",
                top.reference
            ),
        ));
    }
    Ok(())
}

/// Refuses closed objects and objects in closed containers, following up to the file.
fn check_open(index: &TenantIndex, obj: &Object) -> Result<(), RecordsError> {
    let mut cur = obj.clone();
    for _ in 0..10_000 {
        if cur.status() == Status::Closed {
            return Err(RecordsError::Closed {
                kind: cur.kind(),
                id: cur.id().to_string(),
            });
        }
        let next = match &cur {
            Object::PlanUnit(_) => None,
            Object::File(f) => f.parent_file,
            Object::Case(c) => Some(c.parent_case.unwrap_or(c.file)),
            Object::Document(d) => Some(d.parent),
        };
        match next {
            Some(n) => cur = get_object(index, n)?,
            None => return Ok(()),
        }
    }
    Err(internal("containment deeper than 10000"))
}

/// Everything below `id` (sub-files, cases, documents), level by level.
fn descendants(index: &TenantIndex, id: Uuid) -> Result<Vec<Object>, RecordsError> {
    let mut out: Vec<Object> = Vec::new();
    let mut todo = vec![id];
    let mut i = 0;
    while let Some(parent) = todo.get(i).copied() {
        i += 1;
        for kv in index.scan_prefix(schema::children(parent)) {
            let (k, _) = kv?;
            let Some(child) = schema::trailing_id(&k) else {
                continue;
            };
            let obj = get_object(index, child)?;
            todo.push(child);
            out.push(obj);
        }
        if out.len() > 1_000_000 {
            return Err(internal("more than 10^6 objects below one object"));
        }
    }
    Ok(out)
}

fn check_reason(reason: &Option<String>) -> Result<(), RecordsError> {
    if let Some(r) = reason {
        validate::line("reason", r, MAX_TEXT)?;
    }
    Ok(())
}

impl TenantRecords {
    /// Re-files a top-level file under another plan unit: a new reference by the tenant's
    /// pattern (this year, the unit's next number), the old one appended to its previous
    /// references; its sub-files move with it and get new references too.
    pub fn refile_file(
        &self,
        actor: &str,
        file: Uuid,
        expected_revision: u64,
        plan_unit: Uuid,
        reason: Option<String>,
    ) -> Result<File, RecordsError> {
        check_reason(&reason)?;
        self.write_plan(actor, |index| {
            let obj = get_object(index, file)?;
            let Object::File(f) = &obj else {
                return Err(RecordsError::WrongKind {
                    id: file.to_string(),
                    expected: "file".into(),
                    found: obj.kind(),
                });
            };
            if obj.revision() != expected_revision {
                return Err(RecordsError::StaleRevision {
                    id: file.to_string(),
                    expected: expected_revision,
                    current: obj.revision(),
                });
            }
            if f.parent_file.is_some() {
                return Err(precondition(
                    &obj,
                    "is a sub-file; it moves with its file, re-file that one".into(),
                ));
            }
            check_open(index, &obj)?;
            check_tree(index, &obj, f)?;
            let unit = match get_object(index, plan_unit).map_err(|e| match e {
                RecordsError::NotFound { id, .. } => RecordsError::NotFound {
                    what: "plan unit".into(),
                    id,
                },
                other => other,
            })? {
                Object::PlanUnit(u) => u,
                other => {
                    return Err(RecordsError::WrongKind {
                        id: plan_unit.to_string(),
                        expected: "plan unit".into(),
                        found: other.kind(),
                    })
                }
            };
            if !unit.active {
                return Err(RecordsError::Inactive {
                    id: unit.id.to_string(),
                });
            }
            if unit.id == f.plan_unit {
                return Err(precondition(
                    &obj,
                    format!("is already filed under plan unit {}", unit.code),
                ));
            }
            let year = Utc::now().date_naive().year();
            let pattern = read_pattern(index)?;
            let mut number = read_counter(index, unit.id, year)?;
            let mut taken: Vec<String> = Vec::new();
            let mut draw = |index: &TenantIndex| -> Result<String, RecordsError> {
                loop {
                    number = number
                        .checked_add(1)
                        .ok_or_else(|| internal("running number overflow"))?;
                    let r = validate::render_reference(&pattern, &unit.code, year, number);
                    if !index.contains_key(schema::key(tag::REFERENCE).raw(r.as_bytes()))?
                        && !taken.contains(&r)
                    {
                        taken.push(r.clone());
                        return Ok(r);
                    }
                }
            };
            let mut moves = Vec::new();
            let files = std::iter::once(obj.clone()).chain(
                descendants(index, file)?
                    .into_iter()
                    .filter(|o| o.kind() == ObjectKind::File),
            );
            for o in files {
                let Object::File(sf) = o else { continue };
                let mut previous = sf.previous_references.clone();
                previous.push(sf.reference.clone());
                moves.push(Move {
                    id: sf.id,
                    set: fields(vec![
                        ("plan_unit", to_value(&unit.id)?),
                        ("reference", Value::from(draw(index)?)),
                        ("previous_references", to_value(&previous)?),
                    ]),
                });
            }
            let mut record = Self::new_event(Some(file))?;
            record.moves = moves;
            record.counter = Some(Counter {
                scope: unit.id,
                year,
                number,
            });
            record.reason = reason.clone();
            Ok(Plan::event(kind::FILE_REFILE, record, vec![]))
        })?;
        self.file(file)
    }

    /// Moves a case (with its sub-cases and documents) into another file, or under
    /// another case as a sub-case. Moved into another file it takes that file's next case
    /// number, and its sub-cases the ones after.
    pub fn refile_case(
        &self,
        actor: &str,
        case: Uuid,
        expected_revision: u64,
        target: Uuid,
        reason: Option<String>,
    ) -> Result<Case, RecordsError> {
        check_reason(&reason)?;
        self.write_plan(actor, |index| {
            let obj = get_object(index, case)?;
            let Object::Case(c) = &obj else {
                return Err(RecordsError::WrongKind {
                    id: case.to_string(),
                    expected: "case".into(),
                    found: obj.kind(),
                });
            };
            if obj.revision() != expected_revision {
                return Err(RecordsError::StaleRevision {
                    id: case.to_string(),
                    expected: expected_revision,
                    current: obj.revision(),
                });
            }
            let dest = get_object(index, target).map_err(|e| match e {
                RecordsError::NotFound { id, .. } => RecordsError::NotFound {
                    what: "target".into(),
                    id,
                },
                other => other,
            })?;
            let (new_file, new_parent_case) = match &dest {
                Object::File(f) => (f.id, None),
                Object::Case(d) => (d.file, Some(d.id)),
                other => {
                    return Err(RecordsError::WrongKind {
                        id: target.to_string(),
                        expected: "file or case".into(),
                        found: other.kind(),
                    })
                }
            };
            if c.parent_case.unwrap_or(c.file) == target {
                return Err(precondition(&obj, format!("is already in {target}")));
            }
            let below = descendants(index, case)?;
            if target == case || below.iter().any(|o| o.id() == target) {
                return Err(precondition(
                    &obj,
                    format!("cannot be moved into itself or its own sub-case {target}"),
                ));
            }
            check_open(index, &obj)?;
            check_open(index, &dest)?;
            check_tree(index, &obj, &top_file(index, &obj)?)?;
            check_tree(index, &obj, &top_file(index, &dest)?)?;
            let mut record = Self::new_event(Some(case))?;
            let mut moves = Vec::new();
            if new_file == c.file {
                moves.push(Move {
                    id: case,
                    set: fields(vec![("parent_case", to_value(&new_parent_case)?)]),
                });
            } else {
                let mut number = read_counter(index, new_file, 0)?;
                let mut next = || {
                    number = number
                        .checked_add(1)
                        .ok_or_else(|| internal("case number overflow"))?;
                    Ok::<_, RecordsError>(number)
                };
                moves.push(Move {
                    id: case,
                    set: fields(vec![
                        ("file", to_value(&new_file)?),
                        ("parent_case", to_value(&new_parent_case)?),
                        ("number", Value::from(next()?)),
                    ]),
                });
                for o in &below {
                    let mut set = fields(vec![("file", to_value(&new_file)?)]);
                    if o.kind() == ObjectKind::Case {
                        set.insert("number".into(), Value::from(next()?));
                    }
                    moves.push(Move { id: o.id(), set });
                }
                record.counter = Some(Counter {
                    scope: new_file,
                    year: 0,
                    number,
                });
            }
            record.moves = moves;
            record.reason = reason.clone();
            Ok(Plan::event(kind::CASE_REFILE, record, vec![]))
        })?;
        self.case(case)
    }

    /// Moves a document (with its attachments) into another file or case.
    pub fn refile_document(
        &self,
        actor: &str,
        document: Uuid,
        expected_revision: u64,
        target: Uuid,
        reason: Option<String>,
    ) -> Result<Document, RecordsError> {
        check_reason(&reason)?;
        self.write_plan(actor, |index| {
            let obj = get_object(index, document)?;
            let Object::Document(d) = &obj else {
                return Err(RecordsError::WrongKind {
                    id: document.to_string(),
                    expected: "document".into(),
                    found: obj.kind(),
                });
            };
            if obj.revision() != expected_revision {
                return Err(RecordsError::StaleRevision {
                    id: document.to_string(),
                    expected: expected_revision,
                    current: obj.revision(),
                });
            }
            let dest = get_object(index, target).map_err(|e| match e {
                RecordsError::NotFound { id, .. } => RecordsError::NotFound {
                    what: "target".into(),
                    id,
                },
                other => other,
            })?;
            let new_file = match &dest {
                Object::File(f) => f.id,
                Object::Case(c) => c.file,
                other => {
                    return Err(RecordsError::WrongKind {
                        id: target.to_string(),
                        expected: "file or case".into(),
                        found: other.kind(),
                    })
                }
            };
            if d.parent == target {
                return Err(precondition(&obj, format!("is already in {target}")));
            }
            check_open(index, &obj)?;
            check_open(index, &dest)?;
            check_tree(index, &obj, &top_file(index, &obj)?)?;
            check_tree(index, &obj, &top_file(index, &dest)?)?;
            let mut moves = vec![Move {
                id: document,
                set: fields(vec![
                    ("parent", to_value(&target)?),
                    ("file", to_value(&new_file)?),
                ]),
            }];
            if new_file != d.file {
                for o in descendants(index, document)? {
                    moves.push(Move {
                        id: o.id(),
                        set: fields(vec![("file", to_value(&new_file)?)]),
                    });
                }
            }
            let mut record = Self::new_event(Some(document))?;
            record.moves = moves;
            record.reason = reason.clone();
            Ok(Plan::event(kind::DOCUMENT_REFILE, record, vec![]))
        })?;
        self.document(document)
    }
}
