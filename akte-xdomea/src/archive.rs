//! The archive's side of a disposal, for rehearsals and tests (`akte archive-sim`): what an
//! intake system such as x-man of the Thuringian State Archive does with an offer and a
//! transfer, and the answers it writes.
//!
//! - [`appraise`]: a decision for every appraisable object of a 0501 (files, sub-files,
//!   cases, sub-cases), from [`AppraisalRules`]; containers of an object appraised A become
//!   A, as x-man marks them.
//! - [`check_transfer`]: a 0503 against the offer and the appraisal, as x-man's intake
//!   checks it: every object of the offer that falls under A is in the transfer, nothing
//!   appraised V is (x-man: "Die Abgabe ist nicht vollständig", "Die Abgabe enthält
//!   zusätzliche Schriftgutobjekte").
//! - [`import_results`]: the 0506 per object, packaged per file or per case (then the
//!   file's own id is not named), with or without Archivkennung, failing chosen objects.

use std::collections::{HashMap, HashSet};

use chrono::Local;
use uuid::Uuid;

use super::error::XdomeaError;
use super::tree::{ObjectList, ReceivedObject, SgoKind};
use super::types::{
    Appraisal, AppraisalDecision, ImportResult, MessageHeader, Party, SendingSystem,
};

/// How the archive appraises an offer: by object, by plan unit, else by the offered
/// decision (A or V), else the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalRules {
    /// Decisions for objects by id.
    pub by_id: HashMap<Uuid, AppraisalDecision>,
    /// Decisions for objects by reference (Kennzeichen of a file or case).
    pub by_reference: HashMap<String, AppraisalDecision>,
    /// Decisions for files (and sub-files) by their plan unit's code.
    pub by_plan_unit: HashMap<String, AppraisalDecision>,
    /// For a top-level file no rule names and offered with B (or no decision).
    pub default: AppraisalDecision,
}

impl Default for AppraisalRules {
    fn default() -> Self {
        AppraisalRules {
            by_id: HashMap::new(),
            by_reference: HashMap::new(),
            by_plan_unit: HashMap::new(),
            default: AppraisalDecision::Archive,
        }
    }
}

fn decision_code(field: &str, code: &str) -> Result<AppraisalDecision, XdomeaError> {
    match code.trim() {
        "A" | "a" => Ok(AppraisalDecision::Archive),
        "V" | "v" => Ok(AppraisalDecision::Destroy),
        other => Err(XdomeaError::InvalidInput {
            object: None,
            field: field.to_owned(),
            reason: format!("{other:?} is no appraisal; expected A (archive) or V (destroy)"),
        }),
    }
}

impl AppraisalRules {
    /// Adds one rule: `SELECTOR=A|V` or `SELECTOR A|V`, where the selector is `default`,
    /// `plan-unit:CODE`, `ref:REFERENCE`, an object's UUID, or a resource name ending in
    /// one (`tenants/t/cases/UUID`). `field` names the rule's origin in errors.
    pub fn add(&mut self, field: &str, rule: &str) -> Result<(), XdomeaError> {
        let rule = rule.trim();
        let (selector, code) = rule
            .rsplit_once('=')
            .or_else(|| rule.rsplit_once(char::is_whitespace))
            .ok_or_else(|| XdomeaError::InvalidInput {
                object: None,
                field: field.to_owned(),
                reason: format!(
                    "{rule:?} is no rule; write SELECTOR=A or SELECTOR=V (selector: default, \
                     plan-unit:CODE, ref:REFERENCE, or an object id)"
                ),
            })?;
        let decision = decision_code(field, code)?;
        let selector = selector.trim();
        if selector == "default" {
            self.default = decision;
        } else if let Some(code) = selector.strip_prefix("plan-unit:") {
            self.by_plan_unit.insert(code.trim().to_owned(), decision);
        } else if let Some(reference) = selector.strip_prefix("ref:") {
            self.by_reference
                .insert(reference.trim().to_owned(), decision);
        } else {
            let id = selector.rsplit('/').next().unwrap_or(selector);
            let id = Uuid::try_parse(id).map_err(|_| XdomeaError::InvalidInput {
                object: None,
                field: field.to_owned(),
                reason: format!(
                    "selector {selector:?} is neither default, plan-unit:CODE, ref:REFERENCE \
                     nor an object id"
                ),
            })?;
            self.by_id.insert(id, decision);
        }
        Ok(())
    }

    /// Rules from a rule file: one rule per line, `#` starts a comment.
    pub fn parse(text: &str) -> Result<AppraisalRules, XdomeaError> {
        let mut rules = AppraisalRules::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                rules.add(&format!("rule file, line {}", i + 1), line)?;
            }
        }
        Ok(rules)
    }

    fn rule_for(&self, o: &ReceivedObject) -> Option<AppraisalDecision> {
        if let Some(d) = self.by_id.get(&o.id) {
            return Some(*d);
        }
        if let Some(d) = o.reference.as_ref().and_then(|r| self.by_reference.get(r)) {
            return Some(*d);
        }
        if matches!(o.kind, SgoKind::File | SgoKind::SubFile) {
            if let Some(d) = o.plan_unit.as_ref().and_then(|u| self.by_plan_unit.get(u)) {
                return Some(*d);
            }
        }
        None
    }
}

/// A decision for every appraisable object of `offer`, in message order, as x-man lists
/// them: the rule for the object, else its container's decision; a top-level file with
/// no rule takes the offered A or V, else the default; containers of an object appraised A
/// are A.
pub fn appraise(offer: &ObjectList, rules: &AppraisalRules) -> Vec<Appraisal> {
    let walk = offer.walk();
    let parent: HashMap<Uuid, Option<Uuid>> = walk.iter().map(|(o, p)| (o.id, *p)).collect();
    let mut decisions: HashMap<Uuid, AppraisalDecision> = HashMap::new();
    let mut order = Vec::new();
    for (o, p) in &walk {
        if !o.kind.appraisable() {
            continue;
        }
        let inherited = p.and_then(|p| decisions.get(&p).copied());
        let offered = match o.disposal.as_deref() {
            Some("A") => Some(AppraisalDecision::Archive),
            Some("V") => Some(AppraisalDecision::Destroy),
            _ => None,
        };
        let d = rules
            .rule_for(o)
            .or(inherited)
            .or(offered)
            .unwrap_or(rules.default);
        decisions.insert(o.id, d);
        order.push(o.id);
    }
    let archived: Vec<Uuid> = order
        .iter()
        .filter(|id| decisions.get(id) == Some(&AppraisalDecision::Archive))
        .copied()
        .collect();
    for id in archived {
        let mut cur = parent.get(&id).copied().flatten();
        while let Some(p) = cur {
            decisions.insert(p, AppraisalDecision::Archive);
            cur = parent.get(&p).copied().flatten();
        }
    }
    order
        .into_iter()
        .filter_map(|id| decisions.get(&id).map(|d| Appraisal { id, decision: *d }))
        .collect()
}

/// The decision that applies to each object of the offer: its own, or its nearest
/// appraised container's.
fn applying(offer: &ObjectList, appraisals: &[Appraisal]) -> HashMap<Uuid, AppraisalDecision> {
    let own: HashMap<Uuid, AppraisalDecision> =
        appraisals.iter().map(|a| (a.id, a.decision)).collect();
    let mut out = HashMap::new();
    for (o, p) in offer.walk() {
        let d = own
            .get(&o.id)
            .copied()
            .or_else(|| p.and_then(|p| out.get(&p).copied()));
        if let Some(d) = d {
            out.insert(o.id, d);
        }
    }
    out
}

/// What is wrong with a transfer against the offer and the appraisal, as the intake
/// reports it: objects under A missing from the transfer, objects in it not appraised A or
/// never offered. Below a missing or surplus object, its content is not listed again.
/// Empty when the transfer is complete.
pub fn check_transfer(
    offer: &ObjectList,
    appraisals: &[Appraisal],
    transfer: &ObjectList,
) -> Vec<String> {
    let decided = applying(offer, appraisals);
    let offered: HashMap<Uuid, (&ReceivedObject, Option<Uuid>)> = offer
        .walk()
        .into_iter()
        .map(|(o, p)| (o.id, (o, p)))
        .collect();
    let sent: HashMap<Uuid, (&ReceivedObject, Option<Uuid>)> = transfer
        .walk()
        .into_iter()
        .map(|(o, p)| (o.id, (o, p)))
        .collect();
    let mut problems = Vec::new();
    let mut reported: HashSet<Uuid> = HashSet::new();
    for (o, p) in offer.walk() {
        let wanted = decided.get(&o.id) == Some(&AppraisalDecision::Archive);
        let above_reported = p.is_some_and(|p| reported.contains(&p));
        if above_reported {
            reported.insert(o.id);
            continue;
        }
        if wanted && !sent.contains_key(&o.id) {
            problems.push(format!(
                "missing: {} is appraised A but not in the transfer",
                o.label()
            ));
            reported.insert(o.id);
        }
    }
    let mut reported: HashSet<Uuid> = HashSet::new();
    for (o, p) in transfer.walk() {
        if p.is_some_and(|p| reported.contains(&p)) {
            reported.insert(o.id);
            continue;
        }
        let problem = match (offered.get(&o.id), decided.get(&o.id)) {
            (None, _) => Some(format!("surplus: {} was not offered", o.label())),
            (Some(_), Some(AppraisalDecision::Archive)) => None,
            (Some(_), _) => Some(format!(
                "surplus: {} is not appraised A (x-man: \"Die Abgabe enthält zusätzliche \
                 Schriftgutobjekte\")",
                o.label()
            )),
        };
        if let Some(problem) = problem {
            problems.push(problem);
            reported.insert(o.id);
        }
    }
    problems
}

/// How the simulated archive packages what it imports, which decides which ids its 0506
/// names (x-man lists every object of every package).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// One package per top-level file: the file and everything in it.
    PerFile,
    /// One package per case, sub-file and for the loose documents of a file: the file's
    /// own id is not named.
    PerCase,
}

/// Which Archivkennung the simulated archive gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveIds {
    /// The package's id for every object in it (x-man with DIMAG).
    PerPackage,
    /// None (Archivkennung left out, as x-man without DIMAG does).
    None,
}

/// The 0506 results for `transfer`: every object of every package, success unless listed
/// in `failures` (id and reason; a failed object gets no Archivkennung). Package ids are
/// `{prefix}{n}`, counted from 1 in message order.
pub fn import_results(
    transfer: &ObjectList,
    packaging: Packaging,
    ids: ArchiveIds,
    prefix: &str,
    failures: &HashMap<Uuid, String>,
) -> Vec<ImportResult> {
    fn all(o: &ReceivedObject, out: &mut Vec<Uuid>) {
        out.push(o.id);
        for c in &o.children {
            all(c, out);
        }
    }
    let mut packages: Vec<Vec<Uuid>> = Vec::new();
    for top in &transfer.objects {
        match (packaging, top.kind) {
            (Packaging::PerCase, SgoKind::File) => {
                let mut loose = Vec::new();
                for c in &top.children {
                    if c.kind == SgoKind::Document {
                        all(c, &mut loose);
                    } else {
                        let mut package = Vec::new();
                        all(c, &mut package);
                        packages.push(package);
                    }
                }
                if !loose.is_empty() {
                    packages.push(loose);
                }
            }
            _ => {
                let mut package = Vec::new();
                all(top, &mut package);
                packages.push(package);
            }
        }
    }
    let mut out = Vec::new();
    for (n, package) in packages.iter().enumerate() {
        for id in package {
            let failure = failures.get(id);
            out.push(ImportResult {
                id: *id,
                success: failure.is_none(),
                archive_id: match (ids, failure) {
                    (ArchiveIds::PerPackage, None) => Some(format!("{prefix}{}", n + 1)),
                    _ => None,
                },
                error_messages: failure.cloned().into_iter().collect(),
                error_codes: Vec::new(),
            });
        }
    }
    out
}

/// The Kopf of the archive's answer to `received`, as x-man writes it: the archive's
/// Institution as sender, the agency's Institution (taken from the received message's
/// sender) as receiver, the time as local time, the sending system.
pub fn answer_header(received: &MessageHeader, archive: &Party, product: &str) -> MessageHeader {
    let agency = &received.sender;
    let receiver = if agency.institution.is_some() || agency.institution_short.is_some() {
        Party {
            institution: agency.institution.clone(),
            institution_short: agency.institution_short.clone(),
            ..Party::default()
        }
    } else {
        agency.clone()
    };
    MessageHeader {
        process_id: received.process_id,
        created: Local::now().fixed_offset(),
        sender: archive.clone(),
        receiver,
        system: Some(SendingSystem {
            instance_id: None,
            product_name: Some(product.to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }),
        note: None,
        receipt_requested: true,
        archive_id_requested: false,
    }
}
