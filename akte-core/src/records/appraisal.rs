//! The archive's appraisal object by object: what a 0502 decides for every file, sub-file,
//! case and sub-case of the offer, and which decision applies to any object later.
//!
//! The rules (xdomea: "Die Aussonderungsart vererbt sich auf alle unter einer
//! Hierarchiestufe angelegten Schriftgutobjekte"):
//!
//! - an object the 0502 names has the decision given;
//! - a container of an object appraised A is A as well (the archive cannot take a case
//!   without the file that holds it), unless the 0502 appraises it V, which contradicts and
//!   is refused;
//! - any other object takes the decision of its nearest container;
//! - a top-level file left with no decision at all is refused (the archive must say what
//!   becomes of it);
//! - documents are not appraised: they follow their case or file.

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use crate::index::TenantIndex;
use crate::xdomea::{self, AppraisalDecision};

use super::disposal::DisposalProcess;
use super::service::get_object;
use super::types::*;
use super::RecordsError;

/// An appraisable object of an offer, with its container.
struct Offered {
    parent: Option<Uuid>,
    label: String,
}

/// Why a 0502 is refused: the element and the rule.
pub(super) struct AppraisalProblem {
    /// The element path, e.g. `BewertetesObjekt[3]/ID`.
    pub element: String,
    /// A short name of the rule that failed.
    pub rule: &'static str,
    /// What is wrong, in words.
    pub reason: String,
}

fn problem(element: String, rule: &'static str, reason: String) -> AppraisalProblem {
    AppraisalProblem {
        element,
        rule,
        reason,
    }
}

fn appraisable(files: &[xdomea::FileObject]) -> (Vec<(Uuid, Offered)>, HashSet<Uuid>) {
    fn case(
        c: &xdomea::CaseObject,
        parent: Uuid,
        sub: bool,
        out: &mut Vec<(Uuid, Offered)>,
        docs: &mut HashSet<Uuid>,
    ) {
        let kind = if sub { "sub-case" } else { "case" };
        out.push((
            c.id,
            Offered {
                parent: Some(parent),
                label: format!("{kind} {}", c.reference.as_deref().unwrap_or("")),
            },
        ));
        for d in &c.documents {
            doc(d, docs);
        }
        for s in &c.sub_cases {
            case(s, c.id, true, out, docs);
        }
    }
    fn doc(d: &xdomea::DocumentObject, docs: &mut HashSet<Uuid>) {
        docs.insert(d.id);
        for a in &d.attachments {
            doc(&a.document, docs);
        }
    }
    fn file(
        f: &xdomea::FileObject,
        parent: Option<Uuid>,
        out: &mut Vec<(Uuid, Offered)>,
        docs: &mut HashSet<Uuid>,
    ) {
        let kind = if parent.is_some() { "sub-file" } else { "file" };
        out.push((
            f.id,
            Offered {
                parent,
                label: format!("{kind} {}", f.reference.as_deref().unwrap_or("")),
            },
        ));
        for d in &f.documents {
            doc(d, docs);
        }
        for c in &f.cases {
            case(c, f.id, false, out, docs);
        }
        for s in &f.sub_files {
            file(s, Some(f.id), out, docs);
        }
    }
    let mut out = Vec::new();
    let mut docs = HashSet::new();
    for f in files {
        file(f, None, &mut out, &mut docs);
    }
    (out, docs)
}

/// The decision of every appraisable object of the offered `files` (parents before
/// children in the map's construction; the map itself is by id), from the 0502's
/// `appraisals` in message order, or the first rule the message breaks.
pub(super) fn resolve(
    process: Uuid,
    files: &[xdomea::FileObject],
    appraisals: &[xdomea::Appraisal],
) -> Result<BTreeMap<Uuid, DisposalDecision>, AppraisalProblem> {
    let (offered, documents) = appraisable(files);
    let nodes: HashMap<Uuid, &Offered> = offered.iter().map(|(id, o)| (*id, o)).collect();
    let element = |i: usize, child: &str| format!("BewertetesObjekt[{}]/{child}", i + 1);
    let mut explicit: HashMap<Uuid, (AppraisalDecision, usize)> = HashMap::new();
    for (i, a) in appraisals.iter().enumerate() {
        if !nodes.contains_key(&a.id) {
            let reason = if documents.contains(&a.id) {
                format!(
                    "object {} is a document of the offer; documents are not appraised, they \
                     follow their case or file",
                    a.id
                )
            } else {
                format!(
                    "object {} was not offered in process {process} (the 0502 may appraise \
                     the offered files, sub-files, cases and sub-cases only)",
                    a.id
                )
            };
            return Err(problem(element(i, "ID"), "not-offered", reason));
        }
        explicit.insert(a.id, (a.decision, i));
    }
    // Containers of objects appraised A are A.
    let mut implied_a: HashSet<Uuid> = HashSet::new();
    for (i, a) in appraisals.iter().enumerate() {
        if a.decision != AppraisalDecision::Archive {
            continue;
        }
        let mut cur = nodes.get(&a.id).and_then(|n| n.parent);
        while let Some(parent) = cur {
            if let Some((AppraisalDecision::Destroy, j)) = explicit.get(&parent) {
                let (inner, outer) = (&nodes[&a.id].label, &nodes[&parent].label);
                return Err(problem(
                    element(i, "Aussonderungsart"),
                    "contradicting-decisions",
                    format!(
                        "{inner} ({}) is appraised A, but the {outer} ({parent}) that holds \
                         it is appraised V ({}); to archive a part, appraise its containers A \
                         and the other parts V",
                        a.id,
                        element(*j, "Aussonderungsart")
                    ),
                ));
            }
            implied_a.insert(parent);
            cur = nodes.get(&parent).and_then(|n| n.parent);
        }
    }
    // Everything else inherits from its container; `offered` lists parents first.
    let mut out: BTreeMap<Uuid, DisposalDecision> = BTreeMap::new();
    for (id, node) in &offered {
        let decision = match explicit.get(id) {
            Some((d, _)) => Some(DisposalDecision::from(*d)),
            None if implied_a.contains(id) => Some(DisposalDecision::Archive),
            None => node.parent.and_then(|p| out.get(&p).copied()),
        };
        match decision {
            Some(d) => {
                out.insert(*id, d);
            }
            None => {
                return Err(problem(
                    "BewertetesObjekt".into(),
                    "not-appraised",
                    format!(
                        "{} ({id}) was offered but is not appraised: neither it nor any part \
                         of it is appraised A, and it has no decision of its own; appraise it \
                         A or V",
                        node.label
                    ),
                ))
            }
        }
    }
    Ok(out)
}

impl From<AppraisalDecision> for DisposalDecision {
    fn from(d: AppraisalDecision) -> DisposalDecision {
        match d {
            AppraisalDecision::Archive => DisposalDecision::Archive,
            AppraisalDecision::Destroy => DisposalDecision::Destroy,
        }
    }
}

/// The containers of an object from itself up to its top-level file: the object, then its
/// case, sub-case, sub-file ..., the file last. Documents and attachments are included
/// (they are never appraised themselves).
pub(super) fn containers(index: &TenantIndex, obj: &Object) -> Result<Vec<Object>, RecordsError> {
    let mut out = vec![obj.clone()];
    for _ in 0..10_000 {
        let parent = match out.last() {
            Some(Object::File(f)) => f.parent_file,
            Some(Object::Case(c)) => Some(c.parent_case.unwrap_or(c.file)),
            Some(Object::Document(d)) => Some(d.parent),
            _ => None,
        };
        match parent {
            None => return Ok(out),
            Some(p) => out.push(get_object(index, p)?),
        }
    }
    Err(RecordsError::Internal(
        "containment deeper than 10000".into(),
    ))
}

/// The archive's decision on `obj` in process `p`: its own, or its nearest appraised
/// container's, with the object that carries it. `None` before the appraisal.
pub(super) fn decision_in(
    p: &DisposalProcess,
    chain: &[Object],
) -> Option<(DisposalDecision, Uuid)> {
    chain
        .iter()
        .find_map(|o| p.decisions.get(&o.id()).map(|d| (*d, o.id())))
}
