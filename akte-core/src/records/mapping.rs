//! The records model as xdomea objects: files with their sub-files, cases, documents and
//! (for a transfer) versions, and the parts of a file the archive appraised A.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::index::TenantIndex;
use crate::xdomea::{self, FileFormat, Party};

use super::retention::{effective, read_rule, retention_end};
use super::schema;
use super::service::get_object;
use super::types::*;
use super::RecordsError;

pub(super) fn x_decision(d: DisposalDecision) -> xdomea::DisposalDecision {
    match d {
        DisposalDecision::Archive => xdomea::DisposalDecision::Archive,
        DisposalDecision::Destroy => xdomea::DisposalDecision::Destroy,
        DisposalDecision::Appraise => xdomea::DisposalDecision::Appraise,
    }
}

fn x_retention(r: Retention) -> xdomea::Retention {
    match r {
        Retention::Years(y) => xdomea::Retention::Years(y),
        Retention::Unlimited => xdomea::Retention::Unlimited,
    }
}

fn x_conf(c: Confidentiality) -> xdomea::Confidentiality {
    match c {
        Confidentiality::Secret => xdomea::Confidentiality::Secret,
        Confidentiality::Restricted => xdomea::Confidentiality::Restricted,
        Confidentiality::Open => xdomea::Confidentiality::Open,
        Confidentiality::TopSecret => xdomea::Confidentiality::TopSecret,
        Confidentiality::Confidential => xdomea::Confidentiality::Confidential,
    }
}

fn x_medium(m: Medium) -> xdomea::Medium {
    match m {
        Medium::Electronic => xdomea::Medium::Electronic,
        Medium::Hybrid => xdomea::Medium::Hybrid,
        Medium::Paper => xdomea::Medium::Paper,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The children of a file, case or document, in creation order.
pub(super) fn children(index: &TenantIndex, parent: Uuid) -> Result<Vec<Object>, RecordsError> {
    let mut out = Vec::new();
    for kv in index.scan_prefix(schema::children(parent)) {
        let (k, _) = kv?;
        if let Some(id) = schema::trailing_id(&k) {
            out.push(get_object(index, id)?);
        }
    }
    Ok(out)
}

/// Maps the records model onto xdomea's objects.
pub(super) struct Mapper<'a> {
    pub index: &'a TenantIndex,
    /// Versions and renditions too (a transfer), or metadata only (an offer).
    pub with_versions: bool,
    /// For a transfer after appraisal: the archive's decision per appraisable object.
    /// Sub-files and cases whose decision (their own, else their container's) is not A
    /// are left out, with everything in them. `None` maps everything.
    pub decisions: Option<&'a BTreeMap<Uuid, DisposalDecision>>,
}

impl Mapper<'_> {
    /// Whether a part with `id` inside a container decided `inherited` goes into the
    /// message, and its decision.
    fn keep(&self, id: Uuid, inherited: DisposalDecision) -> (bool, DisposalDecision) {
        match self.decisions {
            None => (true, inherited),
            Some(d) => {
                let own = d.get(&id).copied().unwrap_or(inherited);
                (own == DisposalDecision::Archive, own)
            }
        }
    }

    /// A top-level file (or sub-file) with what goes with it.
    pub fn file(&self, f: &File) -> Result<xdomea::FileObject, RecordsError> {
        let inherited = match self.decisions {
            Some(d) => d.get(&f.id).copied().unwrap_or(DisposalDecision::Archive),
            None => DisposalDecision::Archive,
        };
        self.file_in(f, inherited)
    }

    fn file_in(
        &self,
        f: &File,
        decided: DisposalDecision,
    ) -> Result<xdomea::FileObject, RecordsError> {
        let (retention, decision, _) = effective(self.index, f)?;
        let unit = match get_object(self.index, f.plan_unit)? {
            Object::PlanUnit(u) => Some(xdomea::PlanUnitRef {
                reference: Some(u.code),
                title: Some(u.title),
            }),
            _ => None,
        };
        let rule = read_rule(self.index)?;
        // In a transfer the archive's appraisal is the decision that applies.
        let disposal = match self.decisions {
            Some(_) => x_decision(decided),
            None => x_decision(decision),
        };
        let mut out = xdomea::FileObject {
            custom_fields: custom_values(&f.custom_fields),
            id: f.id,
            reference: Some(f.reference.clone()),
            subject: Some(f.subject.clone()),
            lead_unit: non_empty(&f.lead_unit),
            confidentiality: Some(x_conf(f.confidentiality)),
            remark: non_empty(&f.notes),
            medium: Some(x_medium(f.medium)),
            plan_unit: unit,
            disposal,
            retention: Some(x_retention(retention)),
            retention_end: f.closed_on.and_then(|c| retention_end(rule, c, retention)),
            running_begin: f.begin,
            running_end: f.end,
            closed: f.closed_on,
            documents: Vec::new(),
            cases: Vec::new(),
            sub_files: Vec::new(),
        };
        for child in children(self.index, f.id)? {
            match child {
                Object::File(sub) => {
                    if let (true, d) = self.keep(sub.id, decided) {
                        out.sub_files.push(self.file_in(&sub, d)?);
                    }
                }
                Object::Case(c) => {
                    if let (true, d) = self.keep(c.id, decided) {
                        out.cases.push(self.case(&c, &f.reference, d)?);
                    }
                }
                Object::Document(d) => out.documents.push(self.document(&d)?),
                Object::PlanUnit(_) => {}
            }
        }
        Ok(out)
    }

    fn case(
        &self,
        c: &Case,
        file_reference: &str,
        decided: DisposalDecision,
    ) -> Result<xdomea::CaseObject, RecordsError> {
        let mut out = xdomea::CaseObject {
            custom_fields: custom_values(&c.custom_fields),
            id: c.id,
            reference: Some(case_reference(file_reference, c)),
            subject: Some(c.subject.clone()),
            confidentiality: Some(x_conf(c.confidentiality)),
            remark: non_empty(&c.notes),
            medium: None,
            disposal: None,
            retention: None,
            retention_end: None,
            running_begin: c.begin,
            running_end: c.end,
            closed: c.closed_on,
            documents: Vec::new(),
            sub_cases: Vec::new(),
        };
        for child in children(self.index, c.id)? {
            match child {
                Object::Case(sc) => {
                    if let (true, d) = self.keep(sc.id, decided) {
                        out.sub_cases.push(self.case(&sc, file_reference, d)?);
                    }
                }
                Object::Document(d) => out.documents.push(self.document(&d)?),
                _ => {}
            }
        }
        Ok(out)
    }

    fn document(&self, d: &Document) -> Result<xdomea::DocumentObject, RecordsError> {
        let party = |s: &str| Party {
            address_lines: vec![s.to_owned()],
            ..Party::default()
        };
        let mut versions = Vec::new();
        if self.with_versions {
            for n in 1..=d.versions {
                let Some(v) = self.index.get(schema::version(d.id, n))? else {
                    continue;
                };
                let v: Version = serde_json::from_slice(&v)
                    .map_err(|e| RecordsError::Internal(e.to_string()))?;
                versions.push(xdomea::VersionObject {
                    number: v.number,
                    renditions: v
                        .renditions
                        .iter()
                        .map(|r| xdomea::RenditionObject {
                            id: r.id,
                            file_name: r.file_name.clone(),
                            format: FileFormat::guess(&r.file_name, Some(&r.media_type)),
                            size: r.size,
                            digest: r.sha256,
                            created: Some(v.created.at.fixed_offset()),
                        })
                        .collect(),
                });
            }
        }
        let mut attachments = Vec::new();
        for (i, child) in children(self.index, d.id)?.into_iter().enumerate() {
            if let Object::Document(a) = child {
                attachments.push(xdomea::AttachmentObject {
                    document: self.document(&a)?,
                    number: Some((i + 1).to_string()),
                });
            }
        }
        Ok(xdomea::DocumentObject {
            id: d.id,
            reference: None,
            subject: Some(d.subject.clone()),
            confidentiality: Some(x_conf(d.confidentiality)),
            medium: None,
            foreign_reference: non_empty(&d.external_reference),
            received: d.received_on,
            sent: d.sent_on,
            letter_date: d.letter_date,
            clerk: non_empty(&d.clerk),
            kind: non_empty(&d.document_type),
            versions,
            attachments,
            senders: if d.sender.is_empty() {
                vec![]
            } else {
                vec![party(&d.sender)]
            },
            recipients: d.recipients.iter().map(|r| party(r)).collect(),
            custom_fields: custom_values(&d.custom_fields),
        })
    }
}

/// An object's custom fields as xdomea carries them: text with the Datentyp of each.
pub(super) fn custom_values(values: &super::fields::FieldValues) -> Vec<xdomea::CustomValue> {
    values
        .iter()
        .map(|(name, v)| xdomea::CustomValue {
            name: name.clone(),
            datatype: Some(v.field_type().xdomea_datatype().to_owned()),
            value: v.to_text(),
        })
        .collect()
}

/// A case's reference in the messages: its file's reference and its number.
pub(super) fn case_reference(file_reference: &str, c: &Case) -> String {
    format!("{file_reference}.{}", c.number)
}

/// Every object of mapped files with its container and top-level file, parents first:
/// what a transfer carries, recorded with it so that the archive's answer (0506) can be
/// matched against exactly what was sent.
pub(super) fn objects_of(files: &[xdomea::FileObject]) -> Vec<super::disposal::SentObject> {
    use super::disposal::SentObject;
    fn doc(d: &xdomea::DocumentObject, parent: Uuid, file: Uuid, out: &mut Vec<SentObject>) {
        out.push(SentObject {
            id: d.id,
            kind: ObjectKind::Document,
            parent: Some(parent),
            file,
        });
        for a in &d.attachments {
            doc(&a.document, d.id, file, out);
        }
    }
    fn case(c: &xdomea::CaseObject, parent: Uuid, file: Uuid, out: &mut Vec<SentObject>) {
        out.push(SentObject {
            id: c.id,
            kind: ObjectKind::Case,
            parent: Some(parent),
            file,
        });
        for d in &c.documents {
            doc(d, c.id, file, out);
        }
        for s in &c.sub_cases {
            case(s, c.id, file, out);
        }
    }
    fn go(f: &xdomea::FileObject, parent: Option<Uuid>, file: Uuid, out: &mut Vec<SentObject>) {
        out.push(SentObject {
            id: f.id,
            kind: ObjectKind::File,
            parent,
            file,
        });
        for d in &f.documents {
            doc(d, f.id, file, out);
        }
        for c in &f.cases {
            case(c, f.id, file, out);
        }
        for s in &f.sub_files {
            go(s, Some(f.id), file, out);
        }
    }
    let mut out = Vec::new();
    for f in files {
        go(f, None, f.id, &mut out);
    }
    out
}
