//! The archive's import confirmation (0506) object by object: which transferred file each
//! named object belongs to, and whether each file counts as imported.
//!
//! An archive names in `AusgesondertesSGO/IDSGO` any object it imported: the file, its
//! sub-files, cases, sub-cases, documents. One that packages per case may leave the file's
//! own id out; `Archivkennung` is optional. So a file counts as imported when nothing in it
//! failed and every object the transfer carried of it is confirmed, by itself or by a
//! confirmed object that holds it (the file itself covers everything). Objects neither
//! named nor covered keep the file from destruction, like a failure: the agency destroys
//! only what the archive has said it holds.
//!
//! A 0506 naming an object this process did not transfer is refused as a whole: the
//! agency destroys on the strength of the 0506, and a message about objects it never sent
//! (an object appraised V, one of another process, or none of its own) shows the archive
//! mixed something up. Nothing is recorded; the archive sends a corrected message.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::index::TenantIndex;
use crate::xdomea::ImportConfirmation;

use super::disposal::{DisposalProcess, SentObject};
use super::service::get_object;
use super::types::*;
use super::RecordsError;

/// What the archive said about one object in a 0506.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// The top-level file the object was transferred with.
    pub file: Uuid,
    /// Erfolgreich.
    pub success: bool,
    /// Archivkennung, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_id: Option<String>,
    /// Fehlermeldung texts and FehlermeldungCode codes (`code name (list)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// An object that keeps its file from counting as imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectProblem {
    /// The object.
    pub object: Uuid,
    /// The archive's reason, or that the archive did not confirm it.
    pub reason: String,
}

/// Whether a transferred file counts as imported after a 0506.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileImport {
    /// Imported: nothing failed, everything confirmed.
    pub imported: bool,
    /// Otherwise: the failed and the unconfirmed objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ObjectProblem>,
}

/// A 0506 read against a process: the outcome per named object and per file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Evaluation {
    pub results: BTreeMap<Uuid, ImportOutcome>,
    pub files: BTreeMap<Uuid, FileImport>,
}

/// A 0506 refused: the element and why.
pub(super) struct Refusal {
    pub element: String,
    pub rule: &'static str,
    pub reason: String,
}

const NOT_CONFIRMED: &str = "the archive's import confirmation does not name it, nor any \
                             object that holds it";

/// Reads `conf` against what process `p` transferred (`sent`). `pending` are the files
/// still open to a confirmation (all transferred ones at the first 0506; those not yet
/// imported at a later one). Earlier answers of the process stand unless this message
/// answers the same object again.
pub(super) fn evaluate(
    index: &TenantIndex,
    p: &DisposalProcess,
    sent: &[SentObject],
    pending: &HashSet<Uuid>,
    conf: &ImportConfirmation,
) -> Result<Evaluation, Refusal> {
    let by_id: HashMap<Uuid, &SentObject> = sent.iter().map(|o| (o.id, o)).collect();
    let mut strangers = Vec::new();
    let mut settled = Vec::new();
    for (i, r) in conf.results.iter().enumerate() {
        match by_id.get(&r.id) {
            None => strangers.push((i, r.id)),
            Some(o) if !pending.contains(&o.file) => settled.push((i, r.id, o.file)),
            Some(_) => {}
        }
    }
    if let Some((i, _)) = strangers.first() {
        let listed: Vec<String> = strangers
            .iter()
            .take(5)
            .map(|(_, id)| stranger(index, p, *id))
            .collect();
        let more = strangers.len().saturating_sub(5);
        return Err(Refusal {
            element: format!("AusgesondertesSGO[{}]/IDSGO", i + 1),
            rule: "unknown-object",
            reason: format!(
                "{} {} not transferred in process {}: {}{}; nothing was recorded, ask the \
                 archive for a corrected 0506",
                strangers.len(),
                if strangers.len() == 1 {
                    "object was"
                } else {
                    "objects were"
                },
                p.id,
                listed.join("; "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        });
    }
    if let Some((i, id, file)) = settled.first() {
        return Err(Refusal {
            element: format!("AusgesondertesSGO[{}]/IDSGO", i + 1),
            rule: "already-confirmed",
            reason: format!(
                "object {id} belongs to file {file}, which does not wait for a confirmation \
                 of process {}: an earlier 0506 confirmed its import, or it was offered again \
                 in another process; a later 0506 may only settle files still open",
                p.id
            ),
        });
    }
    // Earlier answers stand unless this message answers the same object again.
    let mut results: BTreeMap<Uuid, ImportOutcome> = p.results.clone();
    for r in &conf.results {
        let file = by_id.get(&r.id).map(|o| o.file).unwrap_or(r.id);
        let mut errors = r.error_messages.clone();
        errors.extend(r.error_codes.iter().map(|c| match &c.name {
            Some(n) => format!("{} {n}", c.code),
            None => c.code.clone(),
        }));
        results.insert(
            r.id,
            ImportOutcome {
                file,
                success: r.success,
                archive_id: r.archive_id.clone().filter(|a| !a.trim().is_empty()),
                errors,
            },
        );
    }
    let mut children: HashMap<Uuid, Vec<&SentObject>> = HashMap::new();
    for o in sent {
        if let Some(parent) = o.parent {
            children.entry(parent).or_default().push(o);
        }
    }
    let mut files = BTreeMap::new();
    for file in pending {
        let mut problems: Vec<ObjectProblem> = results
            .iter()
            .filter(|(_, o)| o.file == *file && !o.success)
            .map(|(id, o)| ObjectProblem {
                object: *id,
                reason: if o.errors.is_empty() {
                    "the archive reports that its import failed, without a reason".into()
                } else {
                    o.errors.join("; ")
                },
            })
            .collect();
        if problems.is_empty() {
            let mut missing = Vec::new();
            uncovered(*file, &by_id, &children, &results, &mut missing);
            problems = missing
                .into_iter()
                .map(|object| ObjectProblem {
                    object,
                    reason: NOT_CONFIRMED.into(),
                })
                .collect();
        }
        files.insert(
            *file,
            FileImport {
                imported: problems.is_empty(),
                problems,
            },
        );
    }
    Ok(Evaluation { results, files })
}

/// The objects under `id` (itself included) that no confirmed object covers: a confirmed
/// object covers itself and everything in it; a container is covered when all it holds is
/// (and it holds something); a document only by itself or a container.
fn uncovered(
    id: Uuid,
    by_id: &HashMap<Uuid, &SentObject>,
    children: &HashMap<Uuid, Vec<&SentObject>>,
    results: &BTreeMap<Uuid, ImportOutcome>,
    out: &mut Vec<Uuid>,
) {
    if results.get(&id).is_some_and(|r| r.success) {
        return;
    }
    let kids = children.get(&id).map(Vec::as_slice).unwrap_or(&[]);
    let is_document = by_id
        .get(&id)
        .is_some_and(|o| o.kind == ObjectKind::Document);
    if is_document || kids.is_empty() {
        out.push(id);
        return;
    }
    for k in kids {
        uncovered(k.id, by_id, children, results, out);
    }
}

/// Why an id named in a 0506 is not one of the process's transferred objects.
fn stranger(index: &TenantIndex, p: &DisposalProcess, id: Uuid) -> String {
    match get_object(index, id) {
        Ok(o) => {
            let appraised_v = p.decisions.get(&id) == Some(&DisposalDecision::Destroy);
            if appraised_v {
                format!("{} {id} was appraised V and not transferred", o.kind())
            } else {
                format!(
                    "{} {id} of this agency was not part of this transfer",
                    o.kind()
                )
            }
        }
        Err(RecordsError::Destroyed { kind, .. }) => {
            format!("{kind} {id} of this agency was destroyed and not part of this transfer")
        }
        Err(_) => format!("{id} is no object of this agency"),
    }
}
