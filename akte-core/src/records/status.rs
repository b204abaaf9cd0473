//! The explained disposal status of a file, and of each part of it the archive appraised
//! on its own: retention, holds, where the disposal process stands, the archive's decision
//! and answer, in words a registrar can act on.

use chrono::NaiveDate;
use serde::Deserialize;
use uuid::Uuid;

use crate::index::TenantIndex;

use super::appraisal::{containers, decision_in};
use super::disposal::{load_process, DisposalProcess};
use super::mapping::{case_reference, children};
use super::retention::{
    active_holds, effective, load_progress, read_rule, retention_end, DisposalExplanation,
    DisposalProgress, DisposalStatus,
};
use super::schema::{self, tag, KeyExt};
use super::service::get_object;
use super::types::*;
use super::RecordsError;

/// At most this many objects are named in one explanation; the rest are counted.
const NAMED: usize = 5;

/// A short name of an object for people: `file 632.1-0001/2026`, `case
/// 632.1-0001/2026.2`, `document "Bauantrag" (id)`; the id alone if it is gone.
pub(super) fn object_label(index: &TenantIndex, id: Uuid) -> String {
    let Ok(obj) = get_object(index, id) else {
        return format!("object {id}");
    };
    match &obj {
        Object::File(f) if f.parent_file.is_some() => format!("sub-file {}", f.reference),
        Object::File(f) => format!("file {}", f.reference),
        Object::Case(c) => {
            let kind = if c.parent_case.is_some() {
                "sub-case"
            } else {
                "case"
            };
            match get_object(index, c.file) {
                Ok(Object::File(f)) => format!("{kind} {}", case_reference(&f.reference, c)),
                _ => format!("{kind} {id}"),
            }
        }
        Object::Document(d) => format!("document \"{}\" ({id})", d.subject),
        Object::PlanUnit(u) => format!("plan unit {}", u.code),
    }
}

fn named(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > NAMED {
        out.push_str(&format!("; and {} more", items.len() - NAMED));
    }
    out
}

/// The active holds of `file` that touch the object whose containers are `chain` (the
/// object first): on the object, on a container of it, or on anything inside it.
pub(super) fn holds_touching(
    index: &TenantIndex,
    file: Uuid,
    chain: &[Object],
) -> Result<Vec<Hold>, RecordsError> {
    let Some(target) = chain.first().map(Object::id) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for h in active_holds(index, file)? {
        let above = chain.iter().any(|o| o.id() == h.object);
        let below = match get_object(index, h.object) {
            Ok(held) => containers(index, &held)?.iter().any(|o| o.id() == target),
            Err(_) => false,
        };
        if above || below {
            out.push(h);
        }
    }
    Ok(out)
}

fn held_text(holds: &[Hold]) -> String {
    holds
        .iter()
        .map(|h| format!("held by hold {} ({}; {})", h.id, h.reason, h.reference))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The process a file's progress points to, from its appraisal on.
fn appraising_process(
    index: &TenantIndex,
    progress: Option<&DisposalProgress>,
) -> Result<Option<DisposalProcess>, RecordsError> {
    let process = match progress {
        Some(
            DisposalProgress::Appraised { process, .. }
            | DisposalProgress::TransferSent { process, .. }
            | DisposalProgress::Transferred { process, .. }
            | DisposalProgress::ImportFailed { process, .. },
        ) => *process,
        _ => return Ok(None),
    };
    load_process(index, process)
}

/// What decides the status of a file and of every part of it, read once.
struct FileState {
    file: File,
    progress: Option<DisposalProgress>,
    process: Option<DisposalProcess>,
    /// The file's own status.
    explained: DisposalExplanation,
}

fn file_state(
    index: &TenantIndex,
    file: File,
    today: NaiveDate,
) -> Result<FileState, RecordsError> {
    let progress = load_progress(index, file.id)?;
    let process = appraising_process(index, progress.as_ref())?;
    let explained = explain_file(index, &file, progress.as_ref(), process.as_ref(), today)?;
    Ok(FileState {
        file,
        progress,
        process,
        explained,
    })
}

/// Computes the disposal status of `obj` (a file, sub-file, case or document) on `today`.
pub(super) fn explain(
    index: &TenantIndex,
    obj: &Object,
    today: NaiveDate,
) -> Result<DisposalExplanation, RecordsError> {
    let chain = containers(index, obj)?;
    let file = match chain.last() {
        Some(Object::File(f)) => f.clone(),
        _ => {
            return Err(RecordsError::WrongKind {
                id: obj.id().to_string(),
                expected: "file, case or document".into(),
                found: obj.kind(),
            })
        }
    };
    let state = file_state(index, file, today)?;
    if obj.id() == state.file.id {
        let mut e = state.explained.clone();
        if let Some(p) = &state.process {
            e.parts = parts(index, &state, p)?;
        }
        return Ok(e);
    }
    explain_part(index, obj, &chain, &state)
}

/// The status of a part of a file (`chain`: the part and its containers, the file last).
fn explain_part(
    index: &TenantIndex,
    obj: &Object,
    chain: &[Object],
    state: &FileState,
) -> Result<DisposalExplanation, RecordsError> {
    let (file, progress) = (&state.file, &state.progress);
    let mut e = state.explained.clone();
    e.object = obj.id();
    e.kind = obj.kind();
    let Some(p) = &state.process else {
        return Ok(e);
    };
    let Some((decision, _)) = decision_in(p, chain) else {
        return Ok(e);
    };
    e.decision = decision;
    let file_label = format!("file {}", file.reference);
    let holds = holds_touching(index, file.id, chain)?;
    if decision == DisposalDecision::Destroy
        && p.decisions.get(&file.id) == Some(&DisposalDecision::Archive)
    {
        // A part appraised V of a file the archive takes: destroyable once the archive
        // holds the rest.
        e.archive_id = None;
        (e.status, e.explanation) = if !holds.is_empty() {
            let text = held_text(&holds);
            (DisposalStatus::Held { holds }, text)
        } else if let Some(DisposalProgress::Transferred { on, .. }) = &progress {
            (
                DisposalStatus::Due {
                    decision: DisposalDecision::Destroy,
                },
                format!(
                    "appraised V by the archive in process {}; may be destroyed: the archive \
                     confirmed the transfer of {file_label} on {on}",
                    p.id
                ),
            )
        } else {
            (
                DisposalStatus::InProcess(DisposalProgress::Appraised {
                    process: p.id,
                    decision: DisposalDecision::Destroy,
                    on: progress_day(progress.as_ref()).unwrap_or_default(),
                }),
                format!(
                    "appraised V by the archive in process {}; may be destroyed once the \
                     archive has confirmed the transfer of {file_label}, which is {}",
                    p.id,
                    progress
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string)
                ),
            )
        };
        return Ok(e);
    }
    if decision == DisposalDecision::Archive && holds.is_empty() {
        match &progress {
            Some(DisposalProgress::ImportFailed { problems, .. }) => {
                if let Some(x) = problems
                    .iter()
                    .find(|x| chain.iter().any(|o| o.id() == x.object))
                {
                    e.explanation = format!(
                        "not imported by the archive ({}: {}); {file_label} is not destroyed \
                         and may be offered again",
                        object_label(index, x.object),
                        x.reason
                    );
                }
            }
            Some(
                p @ (DisposalProgress::Appraised { .. } | DisposalProgress::TransferSent { .. }),
            ) => {
                e.explanation =
                    format!("appraised A: goes to the archive with {file_label}, which is {p}");
            }
            _ => {}
        }
    }
    if let Some(DisposalProgress::Transferred {
        archive_ids, on, ..
    }) = &progress
    {
        let given = chain
            .iter()
            .find_map(|o| archive_ids.get(&o.id()).map(|a| (a.clone(), o.id())));
        e.explanation = match &given {
            Some((a, by)) if *by == obj.id() => format!(
                "transferred to the archive with {file_label}, confirmed on {on}, archive id {a}"
            ),
            Some((a, by)) => format!(
                "transferred to the archive with {file_label}, confirmed on {on}, archive id \
                 {a} (given for {})",
                object_label(index, *by)
            ),
            None => format!(
                "transferred to the archive with {file_label}, confirmed on {on} (the archive \
                 gave no archive id for it)"
            ),
        };
        e.archive_id = given.map(|(a, _)| a);
    }
    Ok(e)
}

fn progress_day(progress: Option<&DisposalProgress>) -> Option<NaiveDate> {
    match progress? {
        DisposalProgress::Offered { on, .. }
        | DisposalProgress::Appraised { on, .. }
        | DisposalProgress::TransferSent { on, .. }
        | DisposalProgress::Transferred { on, .. }
        | DisposalProgress::ImportFailed { on, .. }
        | DisposalProgress::Destroyed { on, .. } => Some(*on),
    }
}

/// The status of a top-level file itself.
fn explain_file(
    index: &TenantIndex,
    file: &File,
    progress: Option<&DisposalProgress>,
    process: Option<&DisposalProcess>,
    today: NaiveDate,
) -> Result<DisposalExplanation, RecordsError> {
    let (retention, mut decision, source) = effective(index, file)?;
    let rule = read_rule(index)?;
    let end = file
        .closed_on
        .and_then(|c| retention_end(rule, c, retention));
    let holds = active_holds(index, file.id)?;
    if let Some(DisposalProgress::Appraised { decision: d, .. }) = progress {
        decision = *d;
    }
    if let Some(d) = process.and_then(|p| p.decisions.get(&file.id)) {
        decision = *d;
    }
    let mut archive_id = None;
    let (status, explanation) = match progress {
        Some(p @ DisposalProgress::Destroyed { .. }) => {
            (DisposalStatus::InProcess(p.clone()), p.to_string())
        }
        Some(
            p @ DisposalProgress::Transferred {
                archive_id: id,
                on,
                archive_ids,
                ..
            },
        ) => {
            let mut text = if !id.is_empty() {
                archive_id = Some(id.clone());
                format!("transferred to the archive, archive id {id}, confirmed on {on}")
            } else if !archive_ids.is_empty() {
                let ids: Vec<String> = archive_ids
                    .values()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                format!(
                    "transferred to the archive, confirmed on {on}; archive ids {} (given for \
                     {} of its objects)",
                    named(&ids),
                    archive_ids.len()
                )
            } else {
                format!(
                    "transferred to the archive, confirmed on {on} (the archive gave no \
                     archive id)"
                )
            };
            if let Some(proc_) = process {
                let left = parts_appraised_v(index, file, proc_)?;
                if !left.is_empty() {
                    text.push_str(&format!(
                        "; appraised V and not yet destroyed: {}",
                        named(&left)
                    ));
                }
            }
            (DisposalStatus::InProcess(p.clone()), text)
        }
        _ if !holds.is_empty() => {
            let text = held_text(&holds);
            (DisposalStatus::Held { holds }, text)
        }
        Some(
            p @ DisposalProgress::ImportFailed {
                process: id,
                on,
                problems,
            },
        ) => {
            let items: Vec<String> = problems
                .iter()
                .map(|x| format!("{}: {}", object_label(index, x.object), x.reason))
                .collect();
            let text = format!(
                "not imported by the archive (process {id}, confirmation read on {on}): {}; \
                 it is not destroyed, and may be offered again once the archive has resolved \
                 this",
                named(&items)
            );
            (DisposalStatus::InProcess(p.clone()), text)
        }
        Some(p) => {
            let mut text = p.to_string();
            if let (DisposalProgress::Appraised { .. }, Some(proc_)) = (p, process) {
                let v = parts_appraised_v(index, file, proc_)?;
                if decision == DisposalDecision::Archive && !v.is_empty() {
                    text.push_str(&format!(
                        "; parts appraised V (destroyed once the transfer is confirmed): {}",
                        named(&v)
                    ));
                }
            }
            (DisposalStatus::InProcess(p.clone()), text)
        }
        None if file.status == Status::Open => (DisposalStatus::NotClosed, "not closed".to_owned()),
        None => match end {
            None => (
                DisposalStatus::Unlimited,
                "unlimited retention: never destroyed, only transferred".to_owned(),
            ),
            Some(until) if until >= today => (
                DisposalStatus::Retained { until },
                format!("retention ends {until}"),
            ),
            Some(until) => (
                DisposalStatus::Due { decision },
                format!(
                    "due since {} (retention ended {until}), decision {}",
                    until.succ_opt().unwrap_or(until),
                    decision.code()
                ),
            ),
        },
    };
    Ok(DisposalExplanation {
        object: file.id,
        kind: ObjectKind::File,
        file: file.id,
        reference: file.reference.clone(),
        status,
        retention,
        decision,
        source,
        retention_end: end,
        explanation,
        archive_id,
        parts: Vec::new(),
    })
}

/// The parts of `file` (below it, in creation order) that `p` appraised V and that still
/// exist, as labels.
fn parts_appraised_v(
    index: &TenantIndex,
    file: &File,
    p: &DisposalProcess,
) -> Result<Vec<String>, RecordsError> {
    let mut out = Vec::new();
    for part in appraised_parts(index, file.id, p)? {
        let chain = containers(index, &part)?;
        if decision_in(p, &chain).map(|(d, _)| d) == Some(DisposalDecision::Destroy)
            && p.decisions.contains_key(&part.id())
            && !chain[1..]
                .iter()
                .any(|c| p.decisions.get(&c.id()) == Some(&DisposalDecision::Destroy))
        {
            out.push(object_label(index, part.id()));
        }
    }
    Ok(out)
}

/// The sub-files, cases and sub-cases of `file` the process decided on, in creation order.
fn appraised_parts(
    index: &TenantIndex,
    file: Uuid,
    p: &DisposalProcess,
) -> Result<Vec<Object>, RecordsError> {
    let mut out = Vec::new();
    let mut todo = vec![file];
    while let Some(parent) = todo.pop() {
        for child in children(index, parent)?.into_iter().rev() {
            if matches!(child, Object::File(_) | Object::Case(_)) {
                todo.push(child.id());
                if p.decisions.contains_key(&child.id()) {
                    out.push(child);
                }
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Tomb {
    kind: ObjectKind,
    destroyed_on: NaiveDate,
    run: Uuid,
    #[serde(default)]
    file: Option<Uuid>,
}

/// The status of each appraised part of `file` and of each object its import left open;
/// parts destroyed since are listed as destroyed.
fn parts(
    index: &TenantIndex,
    state: &FileState,
    p: &DisposalProcess,
) -> Result<Vec<DisposalExplanation>, RecordsError> {
    let file = &state.file;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut ids: Vec<Uuid> = appraised_parts(index, file.id, p)?
        .iter()
        .map(Object::id)
        .collect();
    if let Some(DisposalProgress::ImportFailed { problems, .. }) = &state.progress {
        ids.extend(problems.iter().map(|x| x.object).filter(|o| *o != file.id));
    }
    // Parts destroyed since: in the process's decisions, with a tombstone of this file.
    for id in p.decisions.keys() {
        if *id == file.id || ids.contains(id) {
            continue;
        }
        if let Some(v) = index.get(schema::key(tag::TOMBSTONE).id(*id))? {
            if let Ok(t) = serde_json::from_slice::<Tomb>(&v) {
                if t.file == Some(file.id) {
                    out.push(DisposalExplanation {
                        object: *id,
                        kind: t.kind,
                        file: file.id,
                        reference: file.reference.clone(),
                        status: DisposalStatus::InProcess(DisposalProgress::Destroyed {
                            on: t.destroyed_on,
                            record: t.run,
                        }),
                        retention: Retention::default(),
                        decision: p.decisions.get(id).copied().unwrap_or_default(),
                        source: String::new(),
                        retention_end: None,
                        explanation: format!(
                            "destroyed on {} (destruction record {})",
                            t.destroyed_on, t.run
                        ),
                        archive_id: None,
                        parts: Vec::new(),
                    });
                    seen.insert(*id);
                }
            }
        }
    }
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        let obj = get_object(index, id)?;
        let chain = containers(index, &obj)?;
        out.push(explain_part(index, &obj, &chain, state)?);
    }
    Ok(out)
}
