//! Agency metadata: a tenant's own typed fields (custom fields) on files, cases and
//! documents.
//!
//! An administrator defines a field (text, number, date, code list, or reference to
//! another object of the tenant) for a plan unit, where it applies to the files, cases
//! and documents filed below that unit, or for a document type. Definitions are journal
//! events (`custom_field.define`, `custom_field.update`) with history like every other
//! object. Values live in the object itself (`custom_fields`, a map from field name to
//! typed value), so they are written by the object's own create and update events, shown
//! in its history, exported with it, and destroyed with it. Every write checks them here:
//! the field must apply to the object, the value must have the field's type (and be one
//! of its codes, or name an existing object), sizes are bounded, and required fields must
//! be present. A bad value is an `Invalid` error naming `custom_fields.<name>`, and
//! nothing is written.
//!
//! Values are searchable through index keys `m V` name, 0x00, encoded value, 0x00, id
//! (the encoding sorts like the values, so number and date ranges are key ranges).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::index::{IndexBatch, IndexError, TenantIndex};
use crate::journal::Record;

use super::event::{kind, EventRecord};
use super::projection::load_object;
use super::schema::{self, tag, KeyExt};
use super::service::Plan;
use super::types::{FieldChange, HistoryItem, Object, ObjectKind, Stamp};
use super::validate::{self, MAX_NAME, MAX_TEXT};
use super::{RecordsError, TenantRecords};

/// Most fields a tenant may define.
pub const MAX_DEFINITIONS: usize = 500;
/// Most codes of one code list.
pub const MAX_CODES: usize = 1000;
/// Longest code of a code list, in characters.
pub const MAX_CODE: usize = 128;
/// Longest text value, in characters.
pub const MAX_TEXT_VALUE: usize = 4000;
/// Longest field name, in bytes.
pub const MAX_FIELD_NAME: usize = 64;
/// Most custom field values on one object.
pub const MAX_VALUES: usize = 100;
/// Digits of a number before and after the decimal point.
const MAX_INT_DIGITS: usize = 18;
const MAX_FRACTION_DIGITS: usize = 9;
/// Text values are indexed (lower-case) up to this many bytes; longer ones are checked
/// against the object itself.
const INDEXED_TEXT: usize = 200;

/// The type of a custom field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A single line of text.
    Text,
    /// A decimal number (up to 18 digits before and 9 after the point).
    Number,
    /// A calendar date.
    Date,
    /// One code of the field's code list.
    Code,
    /// Another file, case or document of the tenant, by id.
    Reference,
}

impl FieldType {
    /// Lower-case name, as in messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Code => "code",
            FieldType::Reference => "reference",
        }
    }

    /// The xdomea Datentyp code (code list Datentyp 1.1) of values of this type.
    pub fn xdomea_datatype(self) -> &'static str {
        match self {
            FieldType::Text => "038",      // string
            FieldType::Number => "007",    // decimal
            FieldType::Date => "005",      // date
            FieldType::Code => "040",      // token
            FieldType::Reference => "001", // anyURI (urn:uuid:...)
        }
    }
}

/// Where a field applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldScope {
    /// Files, cases and documents filed under this plan unit or a unit below it.
    PlanUnit(Uuid),
    /// Documents of this document type (Dokumenttyp).
    DocumentType(String),
}

/// A typed value of a custom field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldValue {
    /// Text.
    Text(String),
    /// A decimal number in canonical form (`-12.5`, `3`): no `+`, no leading zeros, no
    /// trailing zeros after the point.
    Number(String),
    /// A date.
    Date(NaiveDate),
    /// A code of the field's code list.
    Code(String),
    /// The id of a file, case or document of the tenant.
    Reference(Uuid),
}

impl FieldValue {
    /// The value's type.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Text(_) => FieldType::Text,
            FieldValue::Number(_) => FieldType::Number,
            FieldValue::Date(_) => FieldType::Date,
            FieldValue::Code(_) => FieldType::Code,
            FieldValue::Reference(_) => FieldType::Reference,
        }
    }

    /// The value as text (as xdomea carries it: dates `YYYY-MM-DD`, references
    /// `urn:uuid:...`).
    pub fn to_text(&self) -> String {
        match self {
            FieldValue::Text(s) | FieldValue::Number(s) | FieldValue::Code(s) => s.clone(),
            FieldValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            FieldValue::Reference(id) => format!("urn:uuid:{id}"),
        }
    }

    /// Parses a value of type `t` from text (the inverse of [`FieldValue::to_text`]; a
    /// reference may also be a bare UUID). `field` names the field in the error.
    pub fn parse(field: &str, t: FieldType, text: &str) -> Result<FieldValue, RecordsError> {
        Ok(match t {
            FieldType::Text => FieldValue::Text(text.to_owned()),
            FieldType::Code => FieldValue::Code(text.to_owned()),
            FieldType::Number => FieldValue::Number(canonical_number(field, text)?),
            FieldType::Date => FieldValue::Date(
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| invalid(field, format!("{text:?} is no date (YYYY-MM-DD)")))?,
            ),
            FieldType::Reference => {
                let raw = text.strip_prefix("urn:uuid:").unwrap_or(text);
                FieldValue::Reference(
                    Uuid::parse_str(raw).map_err(|_| {
                        invalid(field, format!("{text:?} is no object id (a UUID)"))
                    })?,
                )
            }
        })
    }
}

/// The custom field values of an object, by field name.
pub type FieldValues = BTreeMap<String, FieldValue>;

/// A custom field's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDefinition {
    /// Identifier.
    pub id: Uuid,
    /// The key under which objects carry values, unique in the tenant: lower-case
    /// letters, digits and `_`, starting with a letter (e.g. `aktenart`).
    pub name: String,
    /// Name shown to people, e.g. "Art der Akte".
    pub label: String,
    /// What it means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The type of its values.
    pub field_type: FieldType,
    /// Where it applies.
    pub scope: FieldScope,
    /// The kinds of objects it applies to (files, cases, documents); empty: all three.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applies_to: Vec<ObjectKind>,
    /// Whether every object it applies to must have a value when it is created or its
    /// custom fields change.
    pub required: bool,
    /// The code list of a code field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// Retired fields accept no new values; objects keep the ones they have.
    pub active: bool,
    /// Incremented with every change.
    pub revision: u64,
    /// Creation.
    pub created: Stamp,
    /// Last change.
    pub updated: Stamp,
}

impl FieldDefinition {
    fn applies_to_kind(&self, k: ObjectKind) -> bool {
        k != ObjectKind::PlanUnit && (self.applies_to.is_empty() || self.applies_to.contains(&k))
    }
}

/// A new field definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFieldDefinition {
    /// See [`FieldDefinition::name`].
    pub name: String,
    /// See [`FieldDefinition::label`].
    pub label: String,
    /// See [`FieldDefinition::description`].
    pub description: String,
    /// See [`FieldDefinition::field_type`].
    pub field_type: FieldType,
    /// See [`FieldDefinition::scope`].
    pub scope: FieldScope,
    /// See [`FieldDefinition::applies_to`].
    pub applies_to: Vec<ObjectKind>,
    /// See [`FieldDefinition::required`].
    pub required: bool,
    /// See [`FieldDefinition::allowed_values`].
    pub allowed_values: Vec<String>,
}

/// A change of a definition; `None` keeps a property. Name, type and scope never change
/// (values already written depend on them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldDefinitionPatch {
    /// New label.
    pub label: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New kinds of objects.
    pub applies_to: Option<Vec<ObjectKind>>,
    /// Required or not.
    pub required: Option<bool>,
    /// New code list (codes may be added and retired; values already written stay).
    pub allowed_values: Option<Vec<String>>,
    /// Active or retired.
    pub active: Option<bool>,
}

/// A search criterion on a custom field: equal to a value, or (numbers and dates) within
/// a range; all given bounds must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFilter {
    /// The field's name.
    pub name: String,
    /// Equal to this (text: case-insensitive).
    pub equals: Option<String>,
    /// At least this (numbers and dates).
    pub from: Option<String>,
    /// At most this (numbers and dates).
    pub to: Option<String>,
}

/// A filter resolved against the field's definition.
#[derive(Debug, Clone)]
pub(super) struct ResolvedFilter {
    name: String,
    equals: Option<FieldValue>,
    from: Option<FieldValue>,
    to: Option<FieldValue>,
}

fn invalid(field: &str, reason: impl Into<String>) -> RecordsError {
    RecordsError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn internal(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Internal(e.to_string())
}

fn value_field(name: &str) -> String {
    format!("custom_fields.{name}")
}

fn definition_key(id: Uuid) -> Vec<u8> {
    schema::key(tag::FIELD_DEFINITION).id(id)
}

fn name_key(name: &str) -> Vec<u8> {
    schema::key(tag::FIELD_NAME).raw(name.as_bytes())
}

/// `m V` name 0x00: every indexed value of one field.
fn values_prefix(name: &str) -> Vec<u8> {
    schema::key(tag::FIELD_VALUE).raw(name.as_bytes()).raw(&[0])
}

/// `m V` name 0x00 encoded 0x00: the objects with one value.
fn value_prefix(name: &str, v: &FieldValue) -> Vec<u8> {
    values_prefix(name).raw(&encode(v)).raw(&[0])
}

/// Sortable bytes of a value: numbers as a sign-flipped 128-bit fixed-point integer,
/// dates as sign-flipped days, text lower-cased and cut (on a character boundary).
fn encode(v: &FieldValue) -> Vec<u8> {
    match v {
        FieldValue::Text(s) => {
            let lower = s.to_lowercase();
            let mut end = lower.len().min(INDEXED_TEXT);
            while !lower.is_char_boundary(end) {
                end -= 1;
            }
            lower.as_bytes()[..end].to_vec()
        }
        FieldValue::Code(s) => s.as_bytes().to_vec(),
        FieldValue::Number(s) => {
            let n = fixed_point(s).unwrap_or(0);
            ((n as u128) ^ (1u128 << 127)).to_be_bytes().to_vec()
        }
        FieldValue::Date(d) => {
            let days = d.num_days_from_ce();
            ((days as u32) ^ (1u32 << 31)).to_be_bytes().to_vec()
        }
        FieldValue::Reference(id) => id.as_bytes().to_vec(),
    }
}

/// A canonical number as an integer scaled by 10^9.
fn fixed_point(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut n: i128 = int.parse().ok()?;
    let mut frac = frac.to_owned();
    while frac.len() < MAX_FRACTION_DIGITS {
        frac.push('0');
    }
    n = n.checked_mul(1_000_000_000)?;
    n = n.checked_add(if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    })?;
    Some(if neg { -n } else { n })
}

/// Parses a decimal number and writes it canonically.
pub fn canonical_number(field: &str, text: &str) -> Result<String, RecordsError> {
    let bad = || {
        invalid(
            field,
            format!(
                "{text:?} is no number (digits with an optional sign and decimal point, at \
                 most {MAX_INT_DIGITS} digits before and {MAX_FRACTION_DIGITS} after it)"
            ),
        )
    };
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || (rest.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int.len() > MAX_INT_DIGITS || frac.len() > MAX_FRACTION_DIGITS {
        return Err(bad());
    }
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    };
    Ok(if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    })
}

/// A field name: lower-case ASCII letters, digits and `_`, starting with a letter.
pub fn check_field_name(field: &str, name: &str) -> Result<(), RecordsError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= MAX_FIELD_NAME;
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{name:?}: a field name is 1 to {MAX_FIELD_NAME} lower-case letters, digits \
                 and _, starting with a letter"
            ),
        ))
    }
}

/// A document type: one line (empty for none).
pub fn check_document_type(field: &str, t: &str) -> Result<(), RecordsError> {
    validate::optional_line(field, t, MAX_NAME)
}

fn check_codes(codes: &[String]) -> Result<(), RecordsError> {
    if codes.len() > MAX_CODES {
        return Err(invalid(
            "allowed_values",
            format!("{} codes, at most {MAX_CODES}", codes.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for c in codes {
        validate::line("allowed_values", c, MAX_CODE)?;
        if !seen.insert(c) {
            return Err(invalid("allowed_values", format!("{c:?} is listed twice")));
        }
    }
    Ok(())
}

fn check_kinds(kinds: &[ObjectKind]) -> Result<(), RecordsError> {
    if kinds.contains(&ObjectKind::PlanUnit) {
        return Err(invalid(
            "applies_to",
            "custom fields apply to files, cases and documents, not plan units",
        ));
    }
    Ok(())
}

/// Every definition of the tenant, in name order.
pub(super) fn definitions(index: &TenantIndex) -> Result<Vec<FieldDefinition>, RecordsError> {
    let mut out = Vec::new();
    for kv in index.scan_prefix(schema::key(tag::FIELD_DEFINITION)) {
        let (_, v) = kv?;
        out.push(serde_json::from_slice::<FieldDefinition>(&v).map_err(internal)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn definition_by_name(
    index: &TenantIndex,
    name: &str,
) -> Result<Option<FieldDefinition>, RecordsError> {
    let Some(id) = index.get(name_key(name))? else {
        return Ok(None);
    };
    let id = Uuid::from_slice(&id).map_err(internal)?;
    load_definition(index, id)
}

fn load_definition(index: &TenantIndex, id: Uuid) -> Result<Option<FieldDefinition>, RecordsError> {
    match index.get(definition_key(id))? {
        Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(internal)?)),
        None => Ok(None),
    }
}

/// What decides which fields apply to an object.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The plan unit of its file.
    pub plan_unit: Uuid,
    /// Its document type (documents).
    pub document_type: String,
}

impl Target {
    /// The target of an existing (or just built) file, case or document.
    pub(super) fn of(index: &TenantIndex, obj: &Object) -> Result<Option<Target>, RecordsError> {
        let (file, document_type) = match obj {
            Object::PlanUnit(_) => return Ok(None),
            Object::File(f) => {
                return Ok(Some(Target {
                    kind: ObjectKind::File,
                    plan_unit: f.plan_unit,
                    document_type: String::new(),
                }))
            }
            Object::Case(c) => (c.file, String::new()),
            Object::Document(d) => (d.file, d.document_type.clone()),
        };
        let plan_unit = match load_object(index, file)? {
            Some(Object::File(f)) => f.plan_unit,
            _ => return Err(internal(format!("file {file} of {} is missing", obj.id()))),
        };
        Ok(Some(Target {
            kind: obj.kind(),
            plan_unit,
            document_type,
        }))
    }
}

/// The plan unit and the units above it.
fn unit_chain(index: &TenantIndex, unit: Uuid) -> Result<Vec<Uuid>, RecordsError> {
    let mut out = vec![unit];
    let mut cur = unit;
    for _ in 0..super::org::MAX_DEPTH {
        match load_object(index, cur)? {
            Some(Object::PlanUnit(u)) => match u.parent {
                Some(p) if !out.contains(&p) => {
                    out.push(p);
                    cur = p;
                }
                _ => break,
            },
            _ => break,
        }
    }
    Ok(out)
}

/// The definitions that apply to `target` (active or not), by name.
fn applicable(
    index: &TenantIndex,
    target: &Target,
) -> Result<BTreeMap<String, FieldDefinition>, RecordsError> {
    let units = unit_chain(index, target.plan_unit)?;
    Ok(definitions(index)?
        .into_iter()
        .filter(|d| d.applies_to_kind(target.kind))
        .filter(|d| match &d.scope {
            FieldScope::PlanUnit(u) => units.contains(u),
            FieldScope::DocumentType(t) => {
                target.kind == ObjectKind::Document && *t == target.document_type
            }
        })
        .map(|d| (d.name.clone(), d))
        .collect())
}

/// Checks one value against its definition and returns it in canonical form.
fn check_value(
    index: &TenantIndex,
    def: &FieldDefinition,
    value: &FieldValue,
) -> Result<FieldValue, RecordsError> {
    let field = value_field(&def.name);
    if value.field_type() != def.field_type {
        return Err(invalid(
            &field,
            format!(
                "is a {} field; a {} value was given",
                def.field_type.name(),
                value.field_type().name()
            ),
        ));
    }
    Ok(match value {
        FieldValue::Text(s) => {
            validate::optional_line(&field, s, MAX_TEXT_VALUE)?;
            value.clone()
        }
        FieldValue::Number(s) => FieldValue::Number(canonical_number(&field, s)?),
        FieldValue::Date(d) => {
            // Four-digit years keep the text form (and xdomea's xs:date) unambiguous.
            if !(1..=9999).contains(&d.year()) {
                return Err(invalid(&field, format!("{d}: the year must be 1 to 9999")));
            }
            value.clone()
        }
        FieldValue::Code(c) => {
            if !def.allowed_values.contains(c) {
                let shown: Vec<&str> = def
                    .allowed_values
                    .iter()
                    .take(20)
                    .map(String::as_str)
                    .collect();
                return Err(invalid(
                    &field,
                    format!(
                        "{c:?} is not a code of the field's code list ({}{})",
                        shown.join(", "),
                        if def.allowed_values.len() > 20 {
                            ", ..."
                        } else {
                            ""
                        }
                    ),
                ));
            }
            value.clone()
        }
        FieldValue::Reference(id) => {
            match load_object(index, *id)? {
                Some(o) if o.kind() != ObjectKind::PlanUnit => {}
                _ => {
                    return Err(invalid(
                        &field,
                        format!("{id} is no file, case or document of the tenant"),
                    ))
                }
            }
            value.clone()
        }
    })
}

/// Checks the complete set of values an object will have. `changed` says whether the
/// write sets them (then required fields must be present and every value is checked);
/// values a write leaves alone are not checked again, so a code later retired from a list
/// or a field made required later does not block unrelated changes.
pub(super) fn check_values(
    index: &TenantIndex,
    target: &Target,
    values: &FieldValues,
    before: Option<&FieldValues>,
) -> Result<FieldValues, RecordsError> {
    check_values_with(index, target, values, before, true)
}

/// As [`check_values`]; `require` says whether required fields must be present (an
/// imported object brings what its source had).
fn check_values_with(
    index: &TenantIndex,
    target: &Target,
    values: &FieldValues,
    before: Option<&FieldValues>,
    require: bool,
) -> Result<FieldValues, RecordsError> {
    if values.len() > MAX_VALUES {
        return Err(invalid(
            "custom_fields",
            format!("{} values, at most {MAX_VALUES}", values.len()),
        ));
    }
    let defs = applicable(index, target)?;
    let mut out = FieldValues::new();
    for (name, value) in values {
        let field = value_field(name);
        let unchanged = before.is_some_and(|b| b.get(name) == Some(value));
        if unchanged {
            out.insert(name.clone(), value.clone());
            continue;
        }
        check_field_name(&field, name)?;
        let Some(def) = defs.get(name) else {
            return Err(invalid(
                &field,
                format!(
                    "no custom field {name:?} applies to this {} (defined for its plan unit \
                     or above{})",
                    target.kind,
                    if target.kind == ObjectKind::Document {
                        " or for its document type"
                    } else {
                        ""
                    }
                ),
            ));
        };
        if !def.active {
            return Err(invalid(
                &field,
                "the field is retired and takes no new values",
            ));
        }
        out.insert(name.clone(), check_value(index, def, value)?);
    }
    for def in defs.values().filter(|d| require && d.required && d.active) {
        if !out.contains_key(&def.name) {
            return Err(invalid(
                &value_field(&def.name),
                format!("is required on every {} here", target.kind),
            ));
        }
    }
    Ok(out)
}

/// The custom field values of an imported file, case or document (text by field name, as
/// a package or a migration source carries them), typed by the importing tenant's
/// definitions, checked, and written into the import event's fields `set` (which hold
/// the object's plan unit or file, and a document's type). A field the tenant does not
/// define for the object is left out and named in the returned warnings; a value that
/// does not fit its field refuses the object. Required fields are not demanded: the
/// source may not have had them.
pub(super) fn import_values(
    index: &TenantIndex,
    kind: ObjectKind,
    set: &mut Map<String, Value>,
    values: &BTreeMap<String, String>,
) -> Result<Vec<String>, RecordsError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let id_of = |k: &str| {
        set.get(k)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| internal(format!("import event without {k}")))
    };
    let plan_unit = match kind {
        ObjectKind::File => id_of("plan_unit")?,
        _ => match load_object(index, id_of("file")?)? {
            Some(Object::File(f)) => f.plan_unit,
            _ => return Err(internal("the imported object's file is missing")),
        },
    };
    let document_type = set
        .get("document_type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    check_document_type("document_type", &document_type)?;
    let target = Target {
        kind,
        plan_unit,
        document_type,
    };
    let defs = applicable(index, &target)?;
    let mut typed = FieldValues::new();
    let mut warnings = Vec::new();
    for (name, text) in values {
        let field = value_field(name);
        match defs.get(name).filter(|d| d.active) {
            Some(def) => {
                validate::optional_line(&field, text, MAX_TEXT_VALUE)?;
                typed.insert(name.clone(), FieldValue::parse(&field, def.field_type, text)?);
            }
            None => warnings.push(format!(
                "custom field {:?} is not defined for this {kind} here; its value {:?} was                  not taken over",
                name.chars().take(MAX_FIELD_NAME).collect::<String>(),
                text.chars().take(200).collect::<String>()
            )),
        }
    }
    let checked = check_values_with(index, &target, &typed, None, false)?;
    put_values(set, &checked)?;
    Ok(warnings)
}

/// Resolves search filters against the definitions (unknown fields and values of the
/// wrong type are errors naming the filter).
pub(super) fn resolve_filters(
    index: &TenantIndex,
    filters: &[FieldFilter],
) -> Result<Vec<ResolvedFilter>, RecordsError> {
    let mut out = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let field = format!("custom_fields[{i}]");
        let def = definition_by_name(index, &f.name)?
            .ok_or_else(|| invalid(&field, format!("no custom field {:?} is defined", f.name)))?;
        let parse = |v: &Option<String>| -> Result<Option<FieldValue>, RecordsError> {
            v.as_deref()
                .map(|s| {
                    validate::optional_line(&field, s, MAX_TEXT_VALUE)?;
                    FieldValue::parse(&field, def.field_type, s)
                })
                .transpose()
        };
        let (equals, from, to) = (parse(&f.equals)?, parse(&f.from)?, parse(&f.to)?);
        if (from.is_some() || to.is_some())
            && !matches!(def.field_type, FieldType::Number | FieldType::Date)
        {
            return Err(invalid(
                &field,
                format!(
                    "a range needs a number or date field; {} is a {} field",
                    f.name,
                    def.field_type.name()
                ),
            ));
        }
        if equals.is_none() && from.is_none() && to.is_none() {
            return Err(invalid(&field, "needs a value or a range"));
        }
        out.push(ResolvedFilter {
            name: f.name.clone(),
            equals,
            from,
            to,
        });
    }
    Ok(out)
}

impl ResolvedFilter {
    /// Whether an object's values satisfy the filter.
    pub(super) fn matches(&self, values: Option<&FieldValues>) -> bool {
        let Some(v) = values.and_then(|m| m.get(&self.name)) else {
            return false;
        };
        if let Some(e) = &self.equals {
            let same = match (v, e) {
                (FieldValue::Text(a), FieldValue::Text(b)) => a.to_lowercase() == b.to_lowercase(),
                _ => encode(v) == encode(e),
            };
            if !same {
                return false;
            }
        }
        if self.from.as_ref().is_some_and(|f| encode(v) < encode(f)) {
            return false;
        }
        if self.to.as_ref().is_some_and(|t| encode(v) > encode(t)) {
            return false;
        }
        true
    }

    /// The index keys to scan for it: (listing, prefix, first key).
    pub(super) fn scan(&self) -> (Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
        match &self.equals {
            Some(e) => {
                let p = value_prefix(&self.name, e);
                (p.clone(), p, None)
            }
            None => {
                let p = values_prefix(&self.name);
                let start = self.from.as_ref().map(|f| p.clone().raw(&encode(f)));
                (p.clone(), p, start)
            }
        }
    }
}

/// The custom field values of an object (none for plan units).
pub fn values_of(obj: &Object) -> Option<&FieldValues> {
    match obj {
        Object::File(f) => Some(&f.custom_fields),
        Object::Case(c) => Some(&c.custom_fields),
        Object::Document(d) => Some(&d.custom_fields),
        Object::PlanUnit(_) => None,
    }
}

/// Keeps the value index in step with an object's changed values.
pub(super) fn reindex(
    batch: &mut IndexBatch,
    id: Uuid,
    old: Option<&Object>,
    new: Option<&Object>,
) {
    let empty = FieldValues::new();
    let old = old.and_then(values_of).unwrap_or(&empty);
    let new = new.and_then(values_of).unwrap_or(&empty);
    if old == new {
        return;
    }
    for (name, v) in old {
        if new.get(name) != Some(v) {
            batch.remove(value_prefix(name, v).id(id));
        }
    }
    for (name, v) in new {
        if old.get(name) != Some(v) {
            batch.insert(value_prefix(name, v).id(id), &[][..]);
        }
    }
}

/// Writes checked values into a create event (nothing when there are none, so events
/// without custom fields stay as they were).
pub(super) fn put_values(
    set: &mut Map<String, Value>,
    values: &FieldValues,
) -> Result<(), RecordsError> {
    if !values.is_empty() {
        set.insert("custom_fields".into(), to_value(values)?);
    }
    Ok(())
}

/// Turns the per-field keys of an update (`custom_fields.<name>`: the value, or null to
/// remove it) into one `custom_fields` key holding the object's complete new values.
pub(super) fn expand_patch(
    current: &Object,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, RecordsError> {
    if !patch.keys().any(|k| k.starts_with("custom_fields.")) {
        return Ok(patch.clone());
    }
    if patch.contains_key("custom_fields") {
        return Err(invalid(
            "update_mask",
            "names custom_fields and single custom fields together",
        ));
    }
    let mut values = values_of(current).cloned().unwrap_or_default();
    let mut out = Map::new();
    for (k, v) in patch {
        match k.strip_prefix("custom_fields.") {
            Some(name) => {
                check_field_name(k, name)?;
                if v.is_null() {
                    values.remove(name);
                } else {
                    let value: FieldValue = serde_json::from_value(v.clone())
                        .map_err(|e| invalid(k, format!("value {v} does not fit: {e}")))?;
                    values.insert(name.to_owned(), value);
                }
            }
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("custom_fields".into(), to_value(&values)?);
    Ok(out)
}

/// Checks (and canonicalises) the custom field values of an object an update changed:
/// when its values or its document type changed.
pub(super) fn check_object(
    index: &TenantIndex,
    before: &Object,
    after: &mut Object,
) -> Result<(), RecordsError> {
    let type_changed = match (before, &*after) {
        (Object::Document(a), Object::Document(b)) => a.document_type != b.document_type,
        _ => false,
    };
    let (Some(old), Some(new)) = (values_of(before), values_of(after)) else {
        return Ok(());
    };
    if old == new && !type_changed {
        return Ok(());
    }
    let Some(target) = Target::of(index, after)? else {
        return Ok(());
    };
    // A new document type may take fields away: then every value is checked again.
    let checked = check_values(index, &target, new, (!type_changed).then_some(old))?;
    match after {
        Object::File(f) => f.custom_fields = checked,
        Object::Case(c) => c.custom_fields = checked,
        Object::Document(d) => d.custom_fields = checked,
        Object::PlanUnit(_) => {}
    }
    Ok(())
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RecordsError> {
    serde_json::to_value(v).map_err(internal)
}

impl TenantRecords {
    /// Defines a custom field.
    pub fn define_field(
        &self,
        actor: &str,
        new: NewFieldDefinition,
    ) -> Result<FieldDefinition, RecordsError> {
        check_field_name("name", &new.name)?;
        validate::line("label", &new.label, MAX_NAME)?;
        validate::text("description", &new.description, MAX_TEXT)?;
        check_kinds(&new.applies_to)?;
        check_codes(&new.allowed_values)?;
        match (new.field_type, new.allowed_values.is_empty()) {
            (FieldType::Code, true) => {
                return Err(invalid(
                    "allowed_values",
                    "a code field needs its code list",
                ))
            }
            (t, false) if t != FieldType::Code => {
                return Err(invalid(
                    "allowed_values",
                    format!(
                        "only code fields have a code list; this is a {} field",
                        t.name()
                    ),
                ))
            }
            _ => {}
        }
        if let FieldScope::DocumentType(t) = &new.scope {
            validate::line("scope.document_type", t, MAX_NAME)?;
            if !new.applies_to.is_empty() && new.applies_to != [ObjectKind::Document] {
                return Err(invalid(
                    "applies_to",
                    "a field of a document type applies to documents only",
                ));
            }
        }
        let id = self.write_plan(actor, |index| {
            if let FieldScope::PlanUnit(u) = &new.scope {
                match load_object(index, *u)? {
                    Some(Object::PlanUnit(_)) => {}
                    _ => {
                        return Err(RecordsError::NotFound {
                            what: "plan unit (scope.plan_unit)".into(),
                            id: u.to_string(),
                        })
                    }
                }
            }
            if index.contains_key(name_key(&new.name))? {
                return Err(RecordsError::AlreadyExists {
                    id: new.name.clone(),
                });
            }
            if index
                .scan_prefix(schema::key(tag::FIELD_DEFINITION))
                .take(MAX_DEFINITIONS + 1)
                .count()
                >= MAX_DEFINITIONS
            {
                return Err(invalid(
                    "name",
                    format!("a tenant defines at most {MAX_DEFINITIONS} custom fields"),
                ));
            }
            let id = super::schema::new_id();
            let mut record = Self::new_event(Some(id))?;
            record.set = [
                ("name", Value::from(new.name.clone())),
                ("label", Value::from(new.label.clone())),
                ("description", Value::from(new.description.clone())),
                ("field_type", to_value(&new.field_type)?),
                ("scope", to_value(&new.scope)?),
                ("applies_to", to_value(&new.applies_to)?),
                ("required", Value::from(new.required)),
                ("allowed_values", to_value(&new.allowed_values)?),
                ("active", Value::from(true)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            Ok(Plan::event(kind::CUSTOM_FIELD_DEFINE, record, vec![]))
        })?;
        self.field_definition(id)
    }

    /// Changes a definition (label, description, kinds, required, code list, active);
    /// `expected_revision` must be its current revision.
    pub fn update_field(
        &self,
        actor: &str,
        id: Uuid,
        expected_revision: u64,
        patch: FieldDefinitionPatch,
        reason: Option<&str>,
    ) -> Result<FieldDefinition, RecordsError> {
        if let Some(l) = &patch.label {
            validate::line("label", l, MAX_NAME)?;
        }
        if let Some(d) = &patch.description {
            validate::text("description", d, MAX_TEXT)?;
        }
        if let Some(k) = &patch.applies_to {
            check_kinds(k)?;
        }
        if let Some(c) = &patch.allowed_values {
            check_codes(c)?;
        }
        if let Some(r) = reason {
            validate::optional_line("reason", r, MAX_TEXT)?;
        }
        self.write_plan(actor, |index| {
            let def = load_definition(index, id)?.ok_or_else(|| RecordsError::NotFound {
                what: "custom field".into(),
                id: id.to_string(),
            })?;
            if def.revision != expected_revision {
                return Err(RecordsError::StaleRevision {
                    id: id.to_string(),
                    expected: expected_revision,
                    current: def.revision,
                });
            }
            if let Some(c) = &patch.allowed_values {
                if def.field_type != FieldType::Code && !c.is_empty() {
                    return Err(invalid(
                        "allowed_values",
                        "only code fields have a code list",
                    ));
                }
                if def.field_type == FieldType::Code && c.is_empty() {
                    return Err(invalid(
                        "allowed_values",
                        "a code field needs its code list",
                    ));
                }
            }
            if let (Some(k), FieldScope::DocumentType(_)) = (&patch.applies_to, &def.scope) {
                if !k.is_empty() && k.as_slice() != [ObjectKind::Document] {
                    return Err(invalid(
                        "applies_to",
                        "a field of a document type applies to documents only",
                    ));
                }
            }
            let mut set = Map::new();
            let mut put = |k: &str, old: Value, new: Value| {
                if old != new {
                    set.insert(k.to_owned(), new);
                }
            };
            if let Some(v) = &patch.label {
                put(
                    "label",
                    Value::from(def.label.clone()),
                    Value::from(v.clone()),
                );
            }
            if let Some(v) = &patch.description {
                put(
                    "description",
                    Value::from(def.description.clone()),
                    Value::from(v.clone()),
                );
            }
            if let Some(v) = &patch.applies_to {
                put("applies_to", to_value(&def.applies_to)?, to_value(v)?);
            }
            if let Some(v) = patch.required {
                put("required", Value::from(def.required), Value::from(v));
            }
            if let Some(v) = &patch.allowed_values {
                put(
                    "allowed_values",
                    to_value(&def.allowed_values)?,
                    to_value(v)?,
                );
            }
            if let Some(v) = patch.active {
                put("active", Value::from(def.active), Value::from(v));
            }
            if set.is_empty() {
                return Ok(Plan::Done(id));
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = set;
            record.reason = reason.map(str::to_owned);
            Ok(Plan::event(kind::CUSTOM_FIELD_UPDATE, record, vec![]))
        })?;
        self.field_definition(id)
    }

    /// A definition by id.
    pub fn field_definition(&self, id: Uuid) -> Result<FieldDefinition, RecordsError> {
        load_definition(self.tenant.index(), id)?.ok_or_else(|| RecordsError::NotFound {
            what: "custom field".into(),
            id: id.to_string(),
        })
    }

    /// A definition by name.
    pub fn field_definition_named(&self, name: &str) -> Result<FieldDefinition, RecordsError> {
        definition_by_name(self.tenant.index(), name)?.ok_or_else(|| RecordsError::NotFound {
            what: "custom field".into(),
            id: name.to_owned(),
        })
    }

    /// Every definition of the tenant, in name order.
    pub fn field_definitions(&self) -> Result<Vec<FieldDefinition>, RecordsError> {
        definitions(self.tenant.index())
    }

    /// The definitions that apply to an object (what a form for it would show).
    pub fn fields_for(&self, id: Uuid) -> Result<Vec<FieldDefinition>, RecordsError> {
        let obj = self.get(id)?;
        let index = self.tenant.index();
        match Target::of(index, &obj)? {
            Some(t) => Ok(applicable(index, &t)?.into_values().collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Every change of a definition, oldest first.
    pub fn field_history(&self, id: Uuid) -> Result<Vec<HistoryItem>, RecordsError> {
        self.field_definition(id)?;
        let mut out = Vec::new();
        for kv in self.tenant.index().scan_prefix(schema::history(id)) {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(internal)?);
        }
        Ok(out)
    }
}

/// The projection of the definition events.
pub(super) fn apply(
    index: &TenantIndex,
    batch: &mut IndexBatch,
    record: &Record,
    event: &EventRecord,
) -> Result<(), IndexError> {
    let entry = &record.entry;
    let seq = entry.seq;
    let fail = |reason: String| IndexError::Projection { seq, reason };
    let id = event
        .id
        .ok_or_else(|| fail("custom field event without id".into()))?;
    let stamp = Stamp {
        actor: entry.actor.clone(),
        at: entry.time,
        seq,
    };
    let old = match index.get(definition_key(id))? {
        Some(v) => {
            Some(serde_json::from_slice::<FieldDefinition>(&v).map_err(|e| fail(e.to_string()))?)
        }
        None => None,
    };
    let mut fields = match (&old, entry.kind.as_str()) {
        (None, kind::CUSTOM_FIELD_DEFINE) => {
            let mut m = Map::new();
            m.insert("id".into(), Value::from(id.to_string()));
            m.insert("revision".into(), Value::from(0u64));
            let s = serde_json::to_value(&stamp).map_err(|e| fail(e.to_string()))?;
            m.insert("created".into(), s.clone());
            m.insert("updated".into(), s);
            m
        }
        (Some(d), kind::CUSTOM_FIELD_UPDATE) => match serde_json::to_value(d) {
            Ok(Value::Object(m)) => m,
            _ => return Err(fail("definition does not serialise".into())),
        },
        _ => {
            return Err(fail(format!(
                "{} of custom field {id} does not fit",
                entry.kind
            )))
        }
    };
    let mut changes = Vec::new();
    for (k, v) in &event.set {
        let before = fields.get(k).cloned().unwrap_or(Value::Null);
        if old.is_none() || &before != v {
            changes.push(FieldChange {
                field: k.clone(),
                old: if old.is_none() { Value::Null } else { before },
                new: v.clone(),
            });
        }
        fields.insert(k.clone(), v.clone());
    }
    let revision = old.as_ref().map_or(0, |d| d.revision) + 1;
    fields.insert("revision".into(), Value::from(revision));
    fields.insert(
        "updated".into(),
        serde_json::to_value(&stamp).map_err(|e| fail(e.to_string()))?,
    );
    let def: FieldDefinition =
        serde_json::from_value(Value::Object(fields)).map_err(|e| fail(e.to_string()))?;
    if old.is_none() {
        batch.insert(name_key(&def.name), id.as_bytes());
    }
    batch.insert(
        definition_key(id),
        serde_json::to_vec(&def).map_err(|e| fail(e.to_string()))?,
    );
    let item = HistoryItem {
        seq,
        at: entry.time,
        actor: entry.actor.clone(),
        action: entry.kind.clone(),
        changes,
        reason: event.reason.clone(),
    };
    batch.insert(
        schema::history(id).num(seq),
        serde_json::to_vec(&item).map_err(|e| fail(e.to_string()))?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_canonical_and_bounded() {
        let c = |s: &str| canonical_number("f", s);
        assert_eq!(c("0012.500").unwrap(), "12.5");
        assert_eq!(c("+7").unwrap(), "7");
        assert_eq!(c("-0.0").unwrap(), "0");
        assert_eq!(c(".5").unwrap(), "0.5");
        assert_eq!(c("-3.25").unwrap(), "-3.25");
        for bad in [
            "",
            "-",
            ".",
            "1.",
            "1e5",
            "1,5",
            "12a",
            " 1",
            "1234567890123456789",
            "0.1234567891",
        ] {
            let e = c(bad).unwrap_err();
            assert!(e.to_string().contains("invalid f"), "{bad}: {e}");
        }
    }

    #[test]
    fn encodings_sort_like_the_values() {
        let n = |s: &str| encode(&FieldValue::Number(canonical_number("f", s).unwrap()));
        let mut v = vec![
            n("10"),
            n("-2.5"),
            n("0"),
            n("2.25"),
            n("-100"),
            n("999999999999999999.999999999"),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                n("-100"),
                n("-2.5"),
                n("0"),
                n("2.25"),
                n("10"),
                n("999999999999999999.999999999")
            ]
        );
        let d = |s: &str| {
            encode(&FieldValue::Date(
                NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap(),
            ))
        };
        assert!(d("0001-01-01") < d("1999-12-31"));
        assert!(d("1999-12-31") < d("2000-01-01"));
        assert!(d("2000-01-01") < d("9999-12-31"));
    }

    #[test]
    fn values_parse_by_type_and_name_the_field() {
        let p = |t, s: &str| FieldValue::parse("custom_fields.x", t, s);
        assert_eq!(
            p(FieldType::Date, "2024-02-29").unwrap(),
            FieldValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
        );
        assert!(p(FieldType::Date, "2023-02-29").is_err());
        assert!(p(FieldType::Date, "29.02.2024").is_err());
        let id = Uuid::new_v4();
        assert_eq!(
            p(FieldType::Reference, &format!("urn:uuid:{id}")).unwrap(),
            FieldValue::Reference(id)
        );
        assert_eq!(
            p(FieldType::Reference, &id.to_string()).unwrap().to_text(),
            format!("urn:uuid:{id}")
        );
        let e = p(FieldType::Reference, "file-12").unwrap_err();
        assert!(e.to_string().starts_with("invalid custom_fields.x"), "{e}");
        assert_eq!(
            p(FieldType::Number, "1.50").unwrap(),
            FieldValue::Number("1.5".into())
        );
        assert_eq!(
            p(FieldType::Code, "B").unwrap(),
            FieldValue::Code("B".into())
        );
    }

    #[test]
    fn field_names_are_keys() {
        for ok in ["aktenart", "a1", "bau_art_2"] {
            check_field_name("name", ok).unwrap();
        }
        for bad in [
            "",
            "Aktenart",
            "1a",
            "_a",
            "a-b",
            "ä",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(check_field_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_typed_values() {
        let f = ResolvedFilter {
            name: "betrag".into(),
            equals: None,
            from: Some(FieldValue::Number("10".into())),
            to: Some(FieldValue::Number("20.5".into())),
        };
        let with = |v: &str| {
            let mut m = FieldValues::new();
            m.insert("betrag".into(), FieldValue::Number(v.into()));
            m
        };
        assert!(f.matches(Some(&with("10"))));
        assert!(f.matches(Some(&with("20.5"))));
        assert!(!f.matches(Some(&with("9.999"))));
        assert!(!f.matches(Some(&with("21"))));
        assert!(!f.matches(Some(&FieldValues::new())));
        let t = ResolvedFilter {
            name: "art".into(),
            equals: Some(FieldValue::Text("Bauantrag".into())),
            from: None,
            to: None,
        };
        let mut m = FieldValues::new();
        m.insert("art".into(), FieldValue::Text("BAUANTRAG".into()));
        assert!(t.matches(Some(&m)));
    }
}
