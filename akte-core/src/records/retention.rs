//! Retention (Aufbewahrung): the retention clock, holds, and the explained disposal status
//! of every object.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::index::TenantIndex;

use super::event::kind;
use super::import::ObjectProblem;
use super::projection::load_object;
use super::read::{scan_page_marked, Scanned, MAX_PAGE_SIZE, MAX_SCAN_PER_PAGE};
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, Plan};
use super::types::*;
use super::validate::{self, MAX_NAME, MAX_TEXT};
use super::{RecordsError, TenantRecords};

/// How the end of retention is computed from the closing date.
///
/// The common German rule counts from the end of the calendar year in which the file was
/// closed; a tenant may choose to count from the closing date itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetentionRule {
    /// End of the closing year plus the retention years (31 December).
    #[default]
    EndOfClosingYear,
    /// The closing date plus the retention years.
    ClosingDate,
}

/// The last day of retention, or `None` for unlimited retention. This is the one place the
/// rule is applied.
pub fn retention_end(
    rule: RetentionRule,
    closed_on: NaiveDate,
    retention: Retention,
) -> Option<NaiveDate> {
    let Retention::Years(years) = retention else {
        return None;
    };
    match rule {
        RetentionRule::EndOfClosingYear => {
            NaiveDate::from_ymd_opt(closed_on.year().checked_add(i32::from(years))?, 12, 31)
        }
        // 29 February plus whole years lands on 28 February in common years.
        RetentionRule::ClosingDate => {
            closed_on.checked_add_months(Months::new(u32::from(years) * 12))
        }
    }
}

/// Where a file stands in the disposal process, as recorded by disposal events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DisposalProgress {
    /// Offered to the archive in a 0501 offer list.
    Offered {
        /// The xdomea process.
        process: Uuid,
        /// When.
        on: NaiveDate,
    },
    /// Appraised by the archive (0502).
    Appraised {
        /// The xdomea process.
        process: Uuid,
        /// A or V.
        decision: DisposalDecision,
        /// When the appraisal was read.
        on: NaiveDate,
    },
    /// Sent in a 0503 transfer, confirmation pending.
    TransferSent {
        /// The xdomea process.
        process: Uuid,
        /// When.
        on: NaiveDate,
    },
    /// The archive confirmed the import (0506) of everything transferred of the file.
    Transferred {
        /// The xdomea process.
        process: Uuid,
        /// The archive's identifier of the file itself; empty when it gave none for the
        /// file (it may have given ids for parts, `archive_ids`).
        archive_id: String,
        /// When the confirmation was read.
        on: NaiveDate,
        /// The archive's identifiers as given, per object (the file or its parts).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        archive_ids: BTreeMap<Uuid, String>,
    },
    /// The archive's import failed for an object of the file, or its 0506 left one
    /// unconfirmed: the file is not destroyed, and may be offered again.
    ImportFailed {
        /// The xdomea process.
        process: Uuid,
        /// When the confirmation was read.
        on: NaiveDate,
        /// The objects that failed or were not confirmed, with the archive's reason.
        problems: Vec<ObjectProblem>,
    },
    /// Destroyed; only a tombstone remains.
    Destroyed {
        /// When.
        on: NaiveDate,
        /// The destruction record.
        record: Uuid,
    },
}

impl fmt::Display for DisposalProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisposalProgress::Offered { process, on } => {
                write!(f, "offered to the archive on {on} in process {process}")
            }
            DisposalProgress::Appraised {
                process,
                decision,
                on,
            } => write!(
                f,
                "appraised {} by the archive on {on} in process {process}",
                decision.code()
            ),
            DisposalProgress::TransferSent { process, on } => write!(
                f,
                "sent to the archive on {on} in process {process}, confirmation pending"
            ),
            DisposalProgress::Transferred { process, on, .. } => write!(
                f,
                "transferred to the archive in process {process}, confirmed on {on}"
            ),
            DisposalProgress::ImportFailed { process, on, .. } => write!(
                f,
                "not imported by the archive (process {process}, confirmation read on {on})"
            ),
            DisposalProgress::Destroyed { on, record } => {
                write!(f, "destroyed on {on} (destruction record {record})")
            }
        }
    }
}

/// The disposal status of an object, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DisposalStatus {
    /// The file is still open.
    NotClosed,
    /// Under retention until the given day (inclusive).
    Retained {
        /// Last day of retention.
        until: NaiveDate,
    },
    /// Unlimited retention: never destroyed, only transferred.
    Unlimited,
    /// Blocked by active holds.
    Held {
        /// The holds.
        holds: Vec<Hold>,
    },
    /// Retention has ended; ready to be offered, transferred or destroyed.
    Due {
        /// The decision that applies.
        decision: DisposalDecision,
    },
    /// In a disposal process (offered, appraised, sent, transferred or destroyed).
    InProcess(DisposalProgress),
}

/// A disposal status with everything that explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisposalExplanation {
    /// The object asked about.
    pub object: Uuid,
    /// Its kind.
    pub kind: ObjectKind,
    /// The top-level file whose disposal decides the object's.
    pub file: Uuid,
    /// That file's reference.
    pub reference: String,
    /// The status.
    pub status: DisposalStatus,
    /// Retention that applies.
    pub retention: Retention,
    /// Decision that applies (an archive's appraisal overrides it).
    pub decision: DisposalDecision,
    /// Where retention and decision come from ("plan unit 632.1" or "set on the file").
    pub source: String,
    /// Last day of retention, when closed and limited.
    pub retention_end: Option<NaiveDate>,
    /// The status in words.
    pub explanation: String,
    /// The archive's identifier that applies to the object (its own, else its nearest
    /// container's), once transferred.
    pub archive_id: Option<String>,
    /// For a top-level file the archive appraised object by object: the status of each
    /// appraised part (sub-files, cases, sub-cases) and of each object the import left
    /// open.
    pub parts: Vec<DisposalExplanation>,
}

/// Filters of the due list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueFilter {
    /// Only files of this plan unit.
    pub plan_unit: Option<Uuid>,
    /// Only files with this decision.
    pub decision: Option<DisposalDecision>,
    /// Only files whose retention ended on or before this day.
    pub ended_by: Option<NaiveDate>,
}

pub(super) fn read_rule(index: &TenantIndex) -> Result<RetentionRule, RecordsError> {
    match index.get(schema::key(tag::SETTINGS))? {
        None => Ok(RetentionRule::default()),
        Some(v) => {
            let settings: Map<String, Value> =
                serde_json::from_slice(&v).map_err(|e| RecordsError::Internal(e.to_string()))?;
            Ok(settings
                .get("retention_rule")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
                .unwrap_or_default())
        }
    }
}

/// The top-level file containing an object (the object itself for a top-level file).
pub(super) fn top_file(index: &TenantIndex, obj: &Object) -> Result<File, RecordsError> {
    let mut cur = obj.clone();
    for _ in 0..10_000 {
        cur = match cur {
            Object::File(f) => match f.parent_file {
                None => return Ok(f),
                Some(p) => get_object(index, p)?,
            },
            Object::Case(c) => get_object(index, c.file)?,
            Object::Document(d) => get_object(index, d.file)?,
            Object::PlanUnit(u) => {
                return Err(RecordsError::WrongKind {
                    id: u.id.to_string(),
                    expected: "file, case or document".into(),
                    found: ObjectKind::PlanUnit,
                })
            }
        };
    }
    Err(RecordsError::Internal(
        "file nesting deeper than 10000".into(),
    ))
}

pub(super) fn active_holds(index: &TenantIndex, file: Uuid) -> Result<Vec<Hold>, RecordsError> {
    let mut out = Vec::new();
    for kv in index.scan_prefix(schema::key(tag::FILE_HOLD).id(file)) {
        let (k, _) = kv?;
        if let Some(hold_id) = schema::trailing_id(&k) {
            if let Some(h) = load_hold(index, hold_id)? {
                out.push(h);
            }
        }
    }
    Ok(out)
}

pub(super) fn load_hold(index: &TenantIndex, id: Uuid) -> Result<Option<Hold>, RecordsError> {
    match index.get(schema::key(tag::HOLD).id(id))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| RecordsError::Internal(e.to_string())),
    }
}

pub(super) fn load_progress(
    index: &TenantIndex,
    file: Uuid,
) -> Result<Option<DisposalProgress>, RecordsError> {
    match index.get(schema::key(tag::DISPOSAL).id(file))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| RecordsError::Internal(e.to_string())),
    }
}

/// Retention and decision that apply to a file, and where they come from.
pub(super) fn effective(
    index: &TenantIndex,
    f: &File,
) -> Result<(Retention, DisposalDecision, String), RecordsError> {
    let unit = match load_object(index, f.plan_unit)? {
        Some(Object::PlanUnit(u)) => u,
        _ => {
            return Err(RecordsError::Internal(format!(
                "plan unit {} of file {} is missing",
                f.plan_unit, f.id
            )))
        }
    };
    let retention = f.retention_override.unwrap_or(unit.retention);
    let decision = f.disposal_override.unwrap_or(unit.disposal);
    let source = match (f.retention_override, f.disposal_override) {
        (None, None) => format!("plan unit {}", unit.code),
        (Some(_), Some(_)) => "set on the file".to_owned(),
        _ => format!("set on the file, the rest from plan unit {}", unit.code),
    };
    Ok((retention, decision, source))
}

pub(super) use super::status::explain;

impl TenantRecords {
    /// Sets (or, with `None`, clears) retention and disposal decision on a file instead of
    /// inheriting them from its plan unit. The reason is required and kept in the history.
    pub fn set_retention(
        &self,
        actor: &str,
        file: Uuid,
        retention: Option<Retention>,
        disposal: Option<DisposalDecision>,
        reason: &str,
    ) -> Result<File, RecordsError> {
        validate::line("reason", reason, MAX_TEXT)?;
        if let Some(Retention::Years(y)) = retention {
            if y > 500 {
                return Err(RecordsError::Invalid {
                    field: "retention".into(),
                    reason: format!("{y} years; at most 500"),
                });
            }
        }
        self.write_plan(actor, |index| {
            let f = match get_object(index, file)? {
                Object::File(f) => f,
                other => {
                    return Err(RecordsError::WrongKind {
                        id: file.to_string(),
                        expected: "file".into(),
                        found: other.kind(),
                    })
                }
            };
            if let Some(p) = load_progress(index, file)? {
                return Err(RecordsError::FailedPrecondition {
                    kind: ObjectKind::File,
                    id: file.to_string(),
                    reason: format!("is in disposal ({p}); its retention can no longer change"),
                });
            }
            let mut record = Self::new_event(Some(f.id))?;
            record.set.insert(
                "retention_override".into(),
                serde_json::to_value(retention).unwrap_or(Value::Null),
            );
            record.set.insert(
                "disposal_override".into(),
                serde_json::to_value(disposal).unwrap_or(Value::Null),
            );
            record.reason = Some(reason.to_owned());
            Ok(Plan::event(kind::FILE_RETENTION, record, vec![]))
        })?;
        self.file(file)
    }

    /// Chooses how retention ends are computed for this tenant.
    pub fn configure_retention_rule(
        &self,
        actor: &str,
        rule: RetentionRule,
    ) -> Result<(), RecordsError> {
        let mut set = Map::new();
        set.insert(
            "retention_rule".into(),
            serde_json::to_value(rule).unwrap_or(Value::Null),
        );
        self.configure(actor, set)
    }

    /// The tenant's retention rule.
    pub fn retention_rule(&self) -> Result<RetentionRule, RecordsError> {
        read_rule(self.tenant.index())
    }

    /// Places a hold on a file, case or document: it and everything in it, and the file it
    /// belongs to as a whole, cannot be disposed of until the hold is released.
    pub fn place_hold(
        &self,
        actor: &str,
        object: Uuid,
        reason: &str,
        reference: &str,
    ) -> Result<Hold, RecordsError> {
        validate::line("reason", reason, MAX_TEXT)?;
        validate::optional_line("reference", reference, MAX_NAME)?;
        let hold_id = super::schema::new_id();
        self.write_plan(actor, |index| {
            let obj = get_object(index, object)?;
            let file = top_file(index, &obj)?;
            if let Some(DisposalProgress::Destroyed { .. }) = load_progress(index, file.id)? {
                return Err(RecordsError::FailedPrecondition {
                    kind: obj.kind(),
                    id: object.to_string(),
                    reason: "is destroyed".into(),
                });
            }
            let mut record = Self::new_event(Some(hold_id))?;
            record
                .set
                .insert("object".into(), Value::from(object.to_string()));
            record
                .set
                .insert("file".into(), Value::from(file.id.to_string()));
            record.set.insert("reason".into(), Value::from(reason));
            record
                .set
                .insert("reference".into(), Value::from(reference));
            Ok(Plan::event(kind::HOLD_PLACE, record, vec![]))
        })?;
        self.hold(hold_id)
    }

    /// Releases an active hold.
    pub fn release_hold(
        &self,
        actor: &str,
        hold: Uuid,
        reason: &str,
    ) -> Result<Hold, RecordsError> {
        validate::line("reason", reason, MAX_TEXT)?;
        self.write_plan(actor, |index| {
            let h = load_hold(index, hold)?.ok_or_else(|| RecordsError::NotFound {
                what: "hold".into(),
                id: hold.to_string(),
            })?;
            if h.released.is_some() {
                return Err(RecordsError::FailedPrecondition {
                    kind: ObjectKind::File,
                    id: h.file.to_string(),
                    reason: format!("hold {hold} is already released"),
                });
            }
            let mut record = Self::new_event(Some(hold))?;
            record.reason = Some(reason.to_owned());
            Ok(Plan::event(kind::HOLD_RELEASE, record, vec![]))
        })?;
        self.hold(hold)
    }

    /// A hold by id.
    pub fn hold(&self, id: Uuid) -> Result<Hold, RecordsError> {
        load_hold(self.tenant.index(), id)?.ok_or_else(|| RecordsError::NotFound {
            what: "hold".into(),
            id: id.to_string(),
        })
    }

    /// All holds (active first is not implied: in the order they were placed), or only the
    /// active ones.
    pub fn list_holds(&self, active_only: bool) -> Result<Vec<Hold>, RecordsError> {
        let mut out = Vec::new();
        for kv in self.tenant.index().scan_prefix(schema::key(tag::HOLD)) {
            let (_, v) = kv?;
            let h: Hold =
                serde_json::from_slice(&v).map_err(|e| RecordsError::Internal(e.to_string()))?;
            if !active_only || h.released.is_none() {
                out.push(h);
            }
        }
        out.sort_by_key(|h| h.placed.seq);
        Ok(out)
    }

    /// The disposal status of a file, case or document today, explained.
    pub fn disposal_status(&self, id: Uuid) -> Result<DisposalExplanation, RecordsError> {
        self.disposal_status_on(id, super::civil::today())
    }

    /// The disposal status on a given day (for planning and tests).
    pub fn disposal_status_on(
        &self,
        id: Uuid,
        day: NaiveDate,
    ) -> Result<DisposalExplanation, RecordsError> {
        let index = self.tenant.index();
        let obj = get_object(index, id)?;
        explain(index, &obj, day)
    }

    /// Top-level files that are due for disposal on `day`, with their explanation: all of
    /// them, page by page (see [`Self::due_page`]).
    pub fn due_list(
        &self,
        filter: &DueFilter,
        day: NaiveDate,
    ) -> Result<Vec<DisposalExplanation>, RecordsError> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let p = self.due_page(filter, day, &page)?;
            out.extend(p.items);
            match p.next_page_token {
                Some(token) => page.page_token = token,
                None => return Ok(out),
            }
        }
    }

    /// One page of the top-level files due for disposal on `day`, in the order of their
    /// ids. Every object of the tenant is examined to find them, so a page stops after
    /// 20,000 objects and may then hold fewer files than asked for (or none) while a token
    /// to go on is returned: no request turns into one unbounded scan.
    pub fn due_page(
        &self,
        filter: &DueFilter,
        day: NaiveDate,
        page: &PageRequest,
    ) -> Result<Page<DisposalExplanation>, RecordsError> {
        let index = self.tenant.index();
        let prefix = schema::key(tag::OBJECT);
        // Files the caller may not see are left out (and no page ends on one).
        scan_page_marked(index, b"due", &prefix, page, MAX_SCAN_PER_PAGE, |_, v| {
            let Ok(Object::File(f)) = serde_json::from_slice::<Object>(v) else {
                return Ok(Scanned::Skip);
            };
            if f.parent_file.is_some() || f.status != Status::Closed {
                return Ok(Scanned::Skip);
            }
            if filter.plan_unit.is_some_and(|u| u != f.plan_unit) {
                return Ok(Scanned::Skip);
            }
            let obj = Object::File(f);
            let e = explain(index, &obj, day)?;
            let DisposalStatus::Due { decision } = e.status else {
                return Ok(Scanned::Skip);
            };
            if filter.decision.is_some_and(|d| d != decision) {
                return Ok(Scanned::Skip);
            }
            if let (Some(by), Some(end)) = (filter.ended_by, e.retention_end) {
                if end > by {
                    return Ok(Scanned::Skip);
                }
            }
            if !self.may_see(&obj)? {
                return Ok(Scanned::Hidden);
            }
            Ok(Scanned::Item(e))
        })
    }
}
