//! Whether an object may be destroyed today, and on what grounds: the one place the rules
//! of destruction are decided ("retention is law").
//!
//! A top-level file may be destroyed when it is not held and either the archive confirmed
//! the import of everything transferred of it, or it is closed, its retention has ended
//! and its decision (or the archive's appraisal) is V. A part of a file (sub-file, case,
//! sub-case) may be destroyed on its own when the archive appraised it V and its file is
//! not waiting for the archive any more (the transfer of the rest was confirmed, or the
//! whole file was appraised V), nothing held touches it, it is closed and its file's
//! retention has ended. Documents go with their case or file.

use chrono::NaiveDate;

use crate::index::TenantIndex;

use super::appraisal::{containers, decision_in};
use super::disposal::load_process;
use super::retention::{
    active_holds, effective, load_progress, read_rule, retention_end, DisposalProgress,
};
use super::status::{explain, holds_touching, object_label};
use super::types::*;
use super::RecordsError;

/// Why `obj` may be destroyed on `today`, in words for the destruction record, or why not.
pub(super) fn destroyable(
    index: &TenantIndex,
    obj: &Object,
    today: NaiveDate,
) -> Result<String, RecordsError> {
    match obj {
        Object::File(f) if f.parent_file.is_none() => destroyable_file(index, f, today),
        Object::File(_) | Object::Case(_) => destroyable_part(index, obj, today),
        Object::Document(d) => Err(RecordsError::WrongKind {
            id: d.id.to_string(),
            expected: "file, sub-file, case or sub-case (a document goes with its case or file)"
                .into(),
            found: ObjectKind::Document,
        }),
        Object::PlanUnit(u) => Err(RecordsError::WrongKind {
            id: u.id.to_string(),
            expected: "file, sub-file, case or sub-case".into(),
            found: ObjectKind::PlanUnit,
        }),
    }
}

/// The end of a file's retention, or why it has not ended by `today`.
fn retention_ended(
    index: &TenantIndex,
    f: &File,
    today: NaiveDate,
    refuse: &dyn Fn(String) -> RecordsError,
) -> Result<NaiveDate, RecordsError> {
    let (retention, _, _) = effective(index, f)?;
    let closed_on = f
        .closed_on
        .ok_or_else(|| refuse("has no closing date".into()))?;
    let Some(end) = retention_end(read_rule(index)?, closed_on, retention) else {
        return Err(refuse(
            "has unlimited retention: it can only be transferred".into(),
        ));
    };
    if end >= today {
        return Err(refuse(format!("is under retention until {end}")));
    }
    Ok(end)
}

fn destroyable_file(
    index: &TenantIndex,
    f: &File,
    today: NaiveDate,
) -> Result<String, RecordsError> {
    let refuse = |reason: String| RecordsError::FailedPrecondition {
        kind: ObjectKind::File,
        id: f.id.to_string(),
        reason,
    };
    if let Some(h) = active_holds(index, f.id)?.first() {
        return Err(refuse(format!(
            "is held by hold {} ({}; {})",
            h.id, h.reason, h.reference
        )));
    }
    let progress = load_progress(index, f.id)?;
    match &progress {
        Some(DisposalProgress::Transferred {
            process,
            archive_id,
            on,
            ..
        }) => {
            let id = if archive_id.is_empty() {
                String::new()
            } else {
                format!(", archive id {archive_id}")
            };
            return Ok(format!(
                "transferred to the archive in process {process}{id}, import confirmed on {on}"
            ));
        }
        Some(DisposalProgress::ImportFailed { .. }) => {
            let e = explain(index, &Object::File(f.clone()), today)?;
            return Err(refuse(format!(
                "has decision A and the archive did not confirm its import: {}",
                e.explanation
            )));
        }
        Some(DisposalProgress::Appraised { .. }) | None => {}
        Some(p) => {
            return Err(refuse(format!(
                "is in a disposal process: {p}; it may be destroyed once the archive has \
                 confirmed the import"
            )))
        }
    }
    if f.status != Status::Closed {
        return Err(refuse("is not closed".into()));
    }
    let (_, mut decision, _) = effective(index, f)?;
    if let Some(DisposalProgress::Appraised { decision: d, .. }) = &progress {
        decision = *d;
    }
    let end = retention_ended(index, f, today, &refuse)?;
    if decision != DisposalDecision::Destroy {
        return Err(refuse(format!(
            "has disposal decision {} and no confirmed transfer; only V may be destroyed",
            decision.code()
        )));
    }
    Ok(format!("retention ended {end}, disposal decision V"))
}

fn destroyable_part(
    index: &TenantIndex,
    obj: &Object,
    today: NaiveDate,
) -> Result<String, RecordsError> {
    let refuse = |reason: String| RecordsError::FailedPrecondition {
        kind: obj.kind(),
        id: obj.id().to_string(),
        reason,
    };
    let chain = containers(index, obj)?;
    let Some(Object::File(file)) = chain.last() else {
        return Err(RecordsError::Internal(format!(
            "{} {} is in no file",
            obj.kind(),
            obj.id()
        )));
    };
    let file_label = object_label(index, file.id);
    let holds = holds_touching(index, file.id, &chain)?;
    if let Some(h) = holds.first() {
        return Err(refuse(format!(
            "is held by hold {} ({}; {})",
            h.id, h.reason, h.reference
        )));
    }
    let progress = load_progress(index, file.id)?;
    let process = match &progress {
        Some(
            DisposalProgress::Appraised { process, .. }
            | DisposalProgress::TransferSent { process, .. }
            | DisposalProgress::Transferred { process, .. }
            | DisposalProgress::ImportFailed { process, .. },
        ) => load_process(index, *process)?,
        _ => None,
    };
    let part = match obj {
        Object::File(_) => "sub-file",
        Object::Case(c) if c.parent_case.is_some() => "sub-case",
        _ => "case",
    };
    let not_appraised = || {
        refuse(format!(
            "is a {part} of {file_label}, which the archive has not appraised object by object \
             ({}); a {part} is destroyed on its own only when the archive appraised it V, \
             otherwise with its whole file",
            progress
                .as_ref()
                .map_or_else(|| "no disposal process".to_owned(), ToString::to_string)
        ))
    };
    let Some(p) = process else {
        return Err(not_appraised());
    };
    let Some((decision, _)) = decision_in(&p, &chain) else {
        return Err(not_appraised());
    };
    if decision != DisposalDecision::Destroy {
        return Err(refuse(format!(
            "was appraised A by the archive (process {}) and goes with {file_label}: it is \
             destroyed with the whole file once the archive has confirmed its import",
            p.id
        )));
    }
    let confirmed = match &progress {
        Some(DisposalProgress::Transferred { on, .. }) => {
            format!("the archive confirmed the transfer of {file_label} on {on}")
        }
        Some(DisposalProgress::Appraised {
            decision: DisposalDecision::Destroy,
            ..
        }) => format!("{file_label} was appraised V as a whole"),
        Some(other) => {
            return Err(refuse(format!(
                "is appraised V, and may be destroyed once the archive has confirmed the \
                 transfer of {file_label}, which is {other}"
            )))
        }
        None => return Err(not_appraised()),
    };
    if obj.status() != Status::Closed {
        return Err(refuse("is not closed".into()));
    }
    let end = retention_ended(index, file, today, &|reason| {
        refuse(format!("belongs to {file_label}, which {reason}"))
    })?;
    Ok(format!(
        "appraised V by the archive in process {}; {confirmed}; retention ended {end}",
        p.id
    ))
}
