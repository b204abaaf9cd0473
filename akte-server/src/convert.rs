//! Conversions between the records model and the API messages, including field masks to
//! the records model's update patches.

use akte_core::records::{
    Case, Confidentiality, DisposalDecision, Document, FieldChange, FieldValue, FieldValues, File,
    HistoryItem, Medium, ObjectKind, PlanUnit, Rendition, Retention, Stamp, Status, Version,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::names;
use crate::pb::akte::v1 as pb;
use crate::pb::google::r#type::Date;

/// A timestamp message.
pub fn timestamp(t: &DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn stamp(s: &Stamp) -> pb::AuditStamp {
    pb::AuditStamp {
        actor: s.actor.clone(),
        time: Some(timestamp(&s.at)),
        journal_seq: s.seq,
    }
}

/// A civil date message.
pub fn date(d: Option<NaiveDate>) -> Option<Date> {
    d.map(|d| Date {
        year: d.year(),
        month: d.month() as i32,
        day: d.day() as i32,
    })
}

/// A civil date from a message: unset (or all zero) is `None`; partial dates are refused.
pub fn parse_date(field: &str, d: Option<&Date>) -> Result<Option<NaiveDate>, ApiError> {
    let Some(d) = d else { return Ok(None) };
    if d.year == 0 && d.month == 0 && d.day == 0 {
        return Ok(None);
    }
    let ok = (1..=9999).contains(&d.year) && d.month >= 1 && d.day >= 1;
    ok.then(|| NaiveDate::from_ymd_opt(d.year, d.month as u32, d.day as u32))
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            ApiError::field(
                field,
                format!(
                    "{:04}-{:02}-{:02} is not a full calendar date",
                    d.year, d.month, d.day
                ),
            )
        })
}

fn etag(revision: u64) -> String {
    revision.to_string()
}

/// The revision an etag stands for; `None` for an empty etag.
pub fn parse_etag(field: &str, etag: &str) -> Result<Option<u64>, ApiError> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.parse::<u64>().map(Some).map_err(|_| {
        ApiError::field(
            field,
            "not an etag returned by this server (use the object's etag field)",
        )
    })
}

/// An optional client-chosen id.
pub fn parse_id(field: &str, id: &str) -> Result<Option<Uuid>, ApiError> {
    if id.is_empty() {
        return Ok(None);
    }
    match Uuid::parse_str(id) {
        Ok(u) if u.is_nil() => Err(ApiError::field(
            field,
            "is the nil UUID, which cannot be an object's id (it is kept free to mean none)",
        )),
        Ok(u) => Ok(Some(u)),
        Err(_) => Err(ApiError::field(
            field,
            "must be a UUID such as 7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60",
        )),
    }
}

/// An optional idempotency key.
pub fn request_id(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

/// The proto value of a confidentiality (its number is the xdomea code).
pub fn confidentiality(c: Confidentiality) -> i32 {
    match c {
        Confidentiality::Secret => 1,
        Confidentiality::Restricted => 2,
        Confidentiality::Open => 3,
        Confidentiality::TopSecret => 4,
        Confidentiality::Confidential => 5,
    }
}

/// A confidentiality from its proto value; unspecified is `None`.
pub fn parse_confidentiality(field: &str, v: i32) -> Result<Option<Confidentiality>, ApiError> {
    if v == 0 {
        return Ok(None);
    }
    Confidentiality::from_code(&format!("{v:03}"))
        .map(Some)
        .ok_or_else(|| {
            ApiError::field(
                field,
                format!("{v} is not a confidentiality level (1 to 5)"),
            )
        })
}

fn medium(m: Medium) -> i32 {
    match m {
        Medium::Electronic => 1,
        Medium::Hybrid => 2,
        Medium::Paper => 3,
    }
}

fn parse_medium(field: &str, v: i32) -> Result<Option<Medium>, ApiError> {
    if v == 0 {
        return Ok(None);
    }
    Medium::from_code(&format!("{v:03}"))
        .map(Some)
        .ok_or_else(|| ApiError::field(field, format!("{v} is not a medium (1 to 3)")))
}

pub(crate) fn disposal(d: DisposalDecision) -> i32 {
    match d {
        DisposalDecision::Archive => 1,
        DisposalDecision::Destroy => 2,
        DisposalDecision::Appraise => 3,
    }
}

pub(crate) fn parse_disposal(field: &str, v: i32) -> Result<Option<DisposalDecision>, ApiError> {
    Ok(Some(match v {
        0 => return Ok(None),
        1 => DisposalDecision::Archive,
        2 => DisposalDecision::Destroy,
        3 => DisposalDecision::Appraise,
        _ => {
            return Err(ApiError::field(
                field,
                format!("{v} is not a disposal decision (1 to 3)"),
            ))
        }
    }))
}

pub(crate) fn retention(r: Retention) -> pb::Retention {
    pb::Retention {
        period: Some(match r {
            Retention::Years(y) => pb::retention::Period::Years(u32::from(y)),
            Retention::Unlimited => pb::retention::Period::Unlimited(true),
        }),
    }
}

pub(crate) fn parse_retention(
    field: &str,
    r: Option<&pb::Retention>,
) -> Result<Option<Retention>, ApiError> {
    match r.and_then(|r| r.period.as_ref()) {
        None => Ok(None),
        Some(pb::retention::Period::Years(y)) => u16::try_from(*y)
            .map(|y| Some(Retention::Years(y)))
            .map_err(|_| ApiError::field(field, format!("{y} years; at most 500"))),
        Some(pb::retention::Period::Unlimited(true)) => Ok(Some(Retention::Unlimited)),
        Some(pb::retention::Period::Unlimited(false)) => Err(ApiError::field(
            field,
            "unlimited must be true when set (set years instead)",
        )),
    }
}

pub(crate) fn state(s: Status) -> i32 {
    match s {
        Status::Open => pb::State::Open as i32,
        Status::Closed => pb::State::Closed as i32,
    }
}

/// A plan unit message.
pub fn plan_unit(tenant: &str, u: &PlanUnit) -> pb::PlanUnit {
    pb::PlanUnit {
        name: names::object_name(tenant, ObjectKind::PlanUnit, u.id),
        parent: u
            .parent
            .map(|p| names::object_name(tenant, ObjectKind::PlanUnit, p))
            .unwrap_or_default(),
        code: u.code.clone(),
        title: u.title.clone(),
        description: u.description.clone(),
        retention: Some(retention(u.retention)),
        disposal: disposal(u.disposal),
        active: u.active,
        etag: etag(u.revision),
        created: Some(stamp(&u.created)),
        updated: Some(stamp(&u.updated)),
    }
}

/// A file message.
pub fn file(tenant: &str, f: &File) -> pb::File {
    pb::File {
        name: names::object_name(tenant, ObjectKind::File, f.id),
        plan_unit: names::object_name(tenant, ObjectKind::PlanUnit, f.plan_unit),
        parent_file: f
            .parent_file
            .map(|p| names::object_name(tenant, ObjectKind::File, p))
            .unwrap_or_default(),
        reference: f.reference.clone(),
        subject: f.subject.clone(),
        begin: date(f.begin),
        end: date(f.end),
        confidentiality: confidentiality(f.confidentiality),
        medium: medium(f.medium),
        lead_unit: f.lead_unit.clone(),
        notes: f.notes.clone(),
        state: state(f.status),
        close_date: date(f.closed_on),
        etag: etag(f.revision),
        created: Some(stamp(&f.created)),
        updated: Some(stamp(&f.updated)),
        previous_references: f.previous_references.clone(),
        origin: f.origin.as_ref().map(origin),
        handover: f.handed_over.as_ref().map(|h| pb::FileHandover {
            process: names::resource_name(tenant, "handoverProcesses", h.process),
            receiver: h.to.clone(),
            date: date(Some(h.on)),
            receiving_reference: h.receiving_reference.clone().unwrap_or_default(),
        }),
        custom_fields: field_values(&f.custom_fields),
    }
}

/// Where an imported object came from.
pub fn origin(o: &akte_core::records::Origin) -> pb::ImportOrigin {
    pb::ImportOrigin {
        source_system: o.source_system.clone(),
        source_id: o.source_id.clone(),
        package_sha256: o.package.as_ref().map(digest_bytes).unwrap_or_default(),
        reference: o.reference.clone(),
        create_date: date(o.created_on),
        creator: o.created_by.clone(),
        reference_nonconforming: o.reference_nonconforming,
    }
}

/// A case message.
pub fn case(tenant: &str, c: &Case) -> pb::Case {
    pb::Case {
        name: names::object_name(tenant, ObjectKind::Case, c.id),
        file: names::object_name(tenant, ObjectKind::File, c.file),
        parent_case: c
            .parent_case
            .map(|p| names::object_name(tenant, ObjectKind::Case, p))
            .unwrap_or_default(),
        number: c.number,
        subject: c.subject.clone(),
        begin: date(c.begin),
        end: date(c.end),
        confidentiality: confidentiality(c.confidentiality),
        notes: c.notes.clone(),
        state: state(c.status),
        close_date: date(c.closed_on),
        etag: etag(c.revision),
        created: Some(stamp(&c.created)),
        updated: Some(stamp(&c.updated)),
        origin: c.origin.as_ref().map(origin),
        custom_fields: field_values(&c.custom_fields),
    }
}

/// A document message; `parent_kind` is the kind of the object holding it.
pub fn document(tenant: &str, d: &Document, parent_kind: ObjectKind) -> pb::Document {
    pb::Document {
        name: names::object_name(tenant, ObjectKind::Document, d.id),
        parent: names::object_name(tenant, parent_kind, d.parent),
        file: names::object_name(tenant, ObjectKind::File, d.file),
        subject: d.subject.clone(),
        letter_date: date(d.letter_date),
        received_on: date(d.received_on),
        sent_on: date(d.sent_on),
        sender: d.sender.clone(),
        recipients: d.recipients.clone(),
        clerk: d.clerk.clone(),
        external_reference: d.external_reference.clone(),
        confidentiality: confidentiality(d.confidentiality),
        version_count: d.versions,
        etag: etag(d.revision),
        created: Some(stamp(&d.created)),
        updated: Some(stamp(&d.updated)),
        origin: d.origin.as_ref().map(origin),
        custom_fields: field_values(&d.custom_fields),
        document_type: d.document_type.clone(),
    }
}

/// Custom field values as the API sends them, in field order.
pub fn field_values(values: &FieldValues) -> Vec<pb::CustomFieldValue> {
    use pb::custom_field_value::Value as V;
    values
        .iter()
        .map(|(name, v)| pb::CustomFieldValue {
            field: name.clone(),
            value: Some(match v {
                FieldValue::Text(s) => V::TextValue(s.clone()),
                FieldValue::Number(s) => V::NumberValue(s.clone()),
                FieldValue::Date(d) => V::DateValue(date(Some(*d)).unwrap_or_default()),
                FieldValue::Code(s) => V::CodeValue(s.clone()),
                FieldValue::Reference(id) => V::ReferenceValue(id.to_string()),
            }),
        })
        .collect()
}

/// Custom field values of a request (`field` names the repeated field): each field once,
/// each with a value. Types and codes are checked by the records model.
pub fn parse_field_values(
    field: &str,
    values: &[pb::CustomFieldValue],
) -> Result<FieldValues, ApiError> {
    use pb::custom_field_value::Value as V;
    let mut out = FieldValues::new();
    for v in values {
        let path = format!("{field}.{}", v.field);
        let value = match &v.value {
            None => return Err(ApiError::field(&path, "has no value")),
            Some(V::TextValue(s)) => FieldValue::Text(s.clone()),
            Some(V::NumberValue(s)) => FieldValue::Number(s.clone()),
            Some(V::DateValue(d)) => FieldValue::Date(
                parse_date(&path, Some(d))?.ok_or_else(|| ApiError::field(&path, "is no date"))?,
            ),
            Some(V::CodeValue(s)) => FieldValue::Code(s.clone()),
            Some(V::ReferenceValue(s)) => {
                // A resource name ends in the object's id.
                let raw = s.rsplit('/').next().unwrap_or(s);
                FieldValue::Reference(Uuid::parse_str(raw).map_err(|_| {
                    ApiError::field(&path, format!("{s:?} is no file, case or document id"))
                })?)
            }
        };
        if out.insert(v.field.clone(), value).is_some() {
            return Err(ApiError::field(&path, "is given twice"));
        }
    }
    Ok(out)
}

/// The patch entry of a custom-fields mask path: `custom_fields` (all values) or
/// `custom_fields.<name>` (one value; absent from the request: removed).
fn fields_patch(
    name: &str,
    path: &str,
    values: &[pb::CustomFieldValue],
) -> Result<Option<Value>, ApiError> {
    if name == "custom_fields" {
        return Ok(Some(json(&parse_field_values(path, values)?)?));
    }
    let Some(key) = name.strip_prefix("custom_fields.") else {
        return Ok(None);
    };
    let all = parse_field_values(path.trim_end_matches(&format!(".{key}")), values)?;
    Ok(Some(match all.get(key) {
        Some(v) => json(v)?,
        None => Value::Null,
    }))
}

/// A digest as the API sends it: 32 bytes.
pub fn digest_bytes(d: &akte_core::Digest) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(d.as_bytes())
}

/// A digest from a request field: exactly 32 bytes.
pub fn parse_digest(field: &str, b: &[u8]) -> Result<akte_core::Digest, ApiError> {
    akte_core::Digest::from_slice(b).ok_or_else(|| {
        ApiError::field(
            field,
            format!("must be the 32 bytes of a SHA-256, not {} bytes", b.len()),
        )
    })
}

/// A rendition message.
pub fn rendition(tenant: &str, document: Uuid, number: u32, r: &Rendition) -> pb::Rendition {
    pb::Rendition {
        name: names::rendition_name(tenant, document, number, r.id),
        file_name: r.file_name.clone(),
        media_type: r.media_type.clone(),
        size: r.size,
        sha256: digest_bytes(&r.sha256),
    }
}

/// A version message.
pub fn version(tenant: &str, v: &Version) -> pb::Version {
    pb::Version {
        name: names::version_name(tenant, v.document, v.number),
        number: v.number,
        comment: v.comment.clone(),
        renditions: v
            .renditions
            .iter()
            .map(|r| rendition(tenant, v.document, v.number, r))
            .collect(),
        created: Some(stamp(&v.created)),
    }
}

fn change(c: &FieldChange) -> pb::FieldChange {
    pb::FieldChange {
        field: c.field.clone(),
        old_value: c.old.to_string(),
        new_value: c.new.to_string(),
    }
}

/// A history entry message.
pub fn history(h: &HistoryItem) -> pb::HistoryEntry {
    pb::HistoryEntry {
        journal_seq: h.seq,
        time: Some(timestamp(&h.at)),
        actor: h.actor.clone(),
        action: h.action.clone(),
        changes: h.changes.iter().map(change).collect(),
        reason: h.reason.clone().unwrap_or_default(),
    }
}

/// Page size of a request for the records model: negative sizes are refused, sizes above
/// the largest page are capped to it (AIP-158), 0 stays 0 (the default).
pub fn page_size(v: i32) -> Result<u32, ApiError> {
    let n = u32::try_from(v).map_err(|_| ApiError::field("page_size", "must not be negative"))?;
    Ok(n.min(akte_core::records::MAX_PAGE_SIZE))
}

/// Items per page of a listing the server pages itself: 0 means the default, more than
/// the largest page means the largest page.
pub fn page_len(v: i32) -> Result<usize, ApiError> {
    Ok(match page_size(v)? {
        0 => akte_core::records::DEFAULT_PAGE_SIZE as usize,
        n => n as usize,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.to_string()))
}

fn date_json(field: &str, d: Option<&Date>) -> Result<Value, ApiError> {
    json(&parse_date(field, d)?)
}

fn required<T>(field: &str, v: Option<T>) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::field(field, "must be set when named in update_mask"))
}

/// The fields named by an update mask, in mask order, without duplicates; paths may be
/// given bare (`subject`) or prefixed with the resource field (`file.subject`).
fn mask_fields(
    mask: Option<&prost_types::FieldMask>,
    resource: &str,
    allowed: &[&str],
) -> Result<Vec<String>, ApiError> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::field(
            "update_mask",
            format!("names no field; changeable: {}", allowed.join(", ")),
        ));
    }
    let prefix = format!("{resource}.");
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        let f = p.strip_prefix(&prefix).unwrap_or(p);
        let one_custom_field =
            f.starts_with("custom_fields.") && allowed.contains(&"custom_fields");
        if !allowed.contains(&f) && !one_custom_field {
            return Err(ApiError::field(
                "update_mask",
                format!(
                    "{:?} cannot be changed; changeable: {}",
                    p.chars().take(80).collect::<String>(),
                    allowed.join(", ")
                ),
            ));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_owned());
        }
    }
    Ok(out)
}

/// Fields of a plan unit an update may name.
pub const PLAN_UNIT_FIELDS: &[&str] = &[
    "parent",
    "code",
    "title",
    "description",
    "retention",
    "disposal",
    "active",
];
/// Fields of a file an update may name.
pub const FILE_FIELDS: &[&str] = &[
    "subject",
    "begin",
    "end",
    "confidentiality",
    "medium",
    "lead_unit",
    "notes",
    "custom_fields",
];
/// Fields of a case an update may name.
pub const CASE_FIELDS: &[&str] = &[
    "subject",
    "begin",
    "end",
    "confidentiality",
    "notes",
    "custom_fields",
];
/// Fields of a document an update may name.
pub const DOCUMENT_FIELDS: &[&str] = &[
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
];

/// The records-model patch of a plan unit update. `tenant` is the unit's tenant: a new
/// parent must be in it.
pub fn plan_unit_patch(
    tenant: &str,
    u: &pb::PlanUnit,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Map<String, Value>, ApiError> {
    let mut patch = Map::new();
    for f in mask_fields(mask, "plan_unit", PLAN_UNIT_FIELDS)? {
        let path = format!("plan_unit.{f}");
        let v = match f.as_str() {
            "parent" => {
                if u.parent.is_empty() {
                    Value::Null
                } else {
                    let p = names::object_of(&path, &u.parent, &[ObjectKind::PlanUnit])?;
                    if p.tenant != tenant {
                        return Err(ApiError::NotFound {
                            resource: u.parent.clone(),
                        });
                    }
                    Value::from(p.id.to_string())
                }
            }
            "code" => Value::from(u.code.clone()),
            "title" => Value::from(u.title.clone()),
            "description" => Value::from(u.description.clone()),
            "retention" => json(&required(
                &path,
                parse_retention(&path, u.retention.as_ref())?,
            )?)?,
            "disposal" => json(&required(&path, parse_disposal(&path, u.disposal)?)?)?,
            "active" => Value::from(u.active),
            _ => continue,
        };
        patch.insert(f, v);
    }
    Ok(patch)
}

/// The records-model patch of a file update.
pub fn file_patch(
    f: &pb::File,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Map<String, Value>, ApiError> {
    let mut patch = Map::new();
    for name in mask_fields(mask, "file", FILE_FIELDS)? {
        let path = format!("file.{name}");
        let v = match name.as_str() {
            "subject" => Value::from(f.subject.clone()),
            "begin" => date_json(&path, f.begin.as_ref())?,
            "end" => date_json(&path, f.end.as_ref())?,
            "confidentiality" => json(&required(
                &path,
                parse_confidentiality(&path, f.confidentiality)?,
            )?)?,
            "medium" => json(&required(&path, parse_medium(&path, f.medium)?)?)?,
            "lead_unit" => Value::from(f.lead_unit.clone()),
            "notes" => Value::from(f.notes.clone()),
            other => match fields_patch(other, "file.custom_fields", &f.custom_fields)? {
                Some(v) => v,
                None => continue,
            },
        };
        patch.insert(name, v);
    }
    Ok(patch)
}

/// The records-model patch of a case update.
pub fn case_patch(
    c: &pb::Case,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Map<String, Value>, ApiError> {
    let mut patch = Map::new();
    for name in mask_fields(mask, "case", CASE_FIELDS)? {
        let path = format!("case.{name}");
        let v = match name.as_str() {
            "subject" => Value::from(c.subject.clone()),
            "begin" => date_json(&path, c.begin.as_ref())?,
            "end" => date_json(&path, c.end.as_ref())?,
            "confidentiality" => json(&required(
                &path,
                parse_confidentiality(&path, c.confidentiality)?,
            )?)?,
            "notes" => Value::from(c.notes.clone()),
            other => match fields_patch(other, "case.custom_fields", &c.custom_fields)? {
                Some(v) => v,
                None => continue,
            },
        };
        patch.insert(name, v);
    }
    Ok(patch)
}

/// The records-model patch of a document update.
pub fn document_patch(
    d: &pb::Document,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Map<String, Value>, ApiError> {
    let mut patch = Map::new();
    for name in mask_fields(mask, "document", DOCUMENT_FIELDS)? {
        let path = format!("document.{name}");
        let v = match name.as_str() {
            "subject" => Value::from(d.subject.clone()),
            "letter_date" => date_json(&path, d.letter_date.as_ref())?,
            "received_on" => date_json(&path, d.received_on.as_ref())?,
            "sent_on" => date_json(&path, d.sent_on.as_ref())?,
            "sender" => Value::from(d.sender.clone()),
            "recipients" => json(&d.recipients)?,
            "clerk" => Value::from(d.clerk.clone()),
            "external_reference" => Value::from(d.external_reference.clone()),
            "confidentiality" => json(&required(
                &path,
                parse_confidentiality(&path, d.confidentiality)?,
            )?)?,
            "document_type" => Value::from(d.document_type.clone()),
            other => match fields_patch(other, "document.custom_fields", &d.custom_fields)? {
                Some(v) => v,
                None => continue,
            },
        };
        patch.insert(name, v);
    }
    Ok(patch)
}

/// Values of a new plan unit: (retention, disposal) with defaults.
pub fn plan_unit_defaults(u: &pb::PlanUnit) -> Result<(Retention, DisposalDecision), ApiError> {
    Ok((
        parse_retention("plan_unit.retention", u.retention.as_ref())?.unwrap_or_default(),
        parse_disposal("plan_unit.disposal", u.disposal)?.unwrap_or_default(),
    ))
}

/// Medium of a new file, default electronic.
pub fn new_medium(v: i32) -> Result<Medium, ApiError> {
    Ok(parse_medium("file.medium", v)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_partial_dates_are_refused() {
        let d = NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        assert_eq!(parse_date("f", date(Some(d)).as_ref()).unwrap(), Some(d));
        assert_eq!(parse_date("f", Some(&Date::default())).unwrap(), None);
        for (y, m, dd) in [(2026, 2, 30), (2026, 0, 1), (0, 1, 1), (2026, 13, 1)] {
            let bad = Date {
                year: y,
                month: m,
                day: dd,
            };
            assert!(parse_date("f", Some(&bad)).is_err());
        }
    }

    #[test]
    fn masks_map_to_core_values() {
        let f = pb::File {
            subject: "Neu".into(),
            confidentiality: 2,
            ..Default::default()
        };
        let mask = prost_types::FieldMask {
            paths: vec![
                "file.subject".into(),
                "confidentiality".into(),
                "end".into(),
            ],
        };
        let p = file_patch(&f, Some(&mask)).unwrap();
        assert_eq!(p["subject"], Value::from("Neu"));
        assert_eq!(p["confidentiality"], Value::from("002"));
        assert_eq!(p["end"], Value::Null);
        let bad = prost_types::FieldMask {
            paths: vec!["reference".into()],
        };
        assert!(file_patch(&f, Some(&bad)).is_err());
        assert!(file_patch(&f, None).is_err());
        let u = pb::PlanUnit {
            retention: Some(retention(Retention::Unlimited)),
            ..Default::default()
        };
        let mask = prost_types::FieldMask {
            paths: vec!["retention".into()],
        };
        let p = plan_unit_patch("t", &u, Some(&mask)).unwrap();
        assert_eq!(p["retention"], Value::from("unlimited"));
    }
}
