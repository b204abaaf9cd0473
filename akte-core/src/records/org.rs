//! Organisational units (Organisationseinheiten), their members, principals' clearances,
//! and each file's and case's own access settings (lead unit, shares) and confidentiality
//! changes: the records model's side of access control. The decision itself is
//! [`crate::access::decide`]; [`super::view`] applies it to a caller.
//!
//! Every change is a journal event like the rest of the model (`org_unit.*`,
//! `principal.clearance`, `access.*`), with history: a unit's changes and members in the
//! unit's history, an object's lead unit, shares and level in the object's history, a
//! principal's clearances in a history of its own.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::access::{rank, Grantee, Share, DEFAULT_CLEARANCE};
use crate::index::{IndexBatch, IndexError, TenantIndex};
use crate::journal::Record;

use super::event::{kind, EventRecord};
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, Plan};
use super::types::{
    Confidentiality, FieldChange, HistoryItem, Object, ObjectKind, Page, PageRequest, Stamp,
};
use super::validate::{self, MAX_NAME, MAX_TEXT};
use super::{RecordsError, TenantRecords};

/// Deepest nesting of units (and of files, cases and documents) the model walks; deeper
/// chains are refused when made, so a walk never loops.
pub const MAX_DEPTH: usize = 64;

/// An organisational unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUnit {
    /// Identifier.
    pub id: Uuid,
    /// Name, e.g. `Bauamt` or `Referat 21 Personal`.
    pub name: String,
    /// The unit it belongs to; `None` at the top.
    pub parent: Option<Uuid>,
    /// Incremented with every change of name, parent or members.
    pub revision: u64,
    /// Creation.
    pub created: Stamp,
    /// Last change.
    pub updated: Stamp,
}

/// A file's or case's own access settings (what is inherited from above is not here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectGrants {
    /// Federführung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_unit: Option<Uuid>,
    /// Shares, at most one per grantee.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
}

/// One access to an object as the access log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLogItem {
    /// The journal entry that records it.
    pub seq: u64,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who.
    pub actor: String,
    /// The operation (`read`, `file_documents`, ...).
    pub operation: String,
    /// Whether it was allowed.
    pub allowed: bool,
    /// For a denial, why (`unit`, `clearance`, `read_only`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub denial: String,
}

/// A principal's clearance as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearance {
    /// The principal.
    pub principal: String,
    /// The highest level it may see.
    pub level: Confidentiality,
    /// The change that set it.
    pub updated: Stamp,
}

fn unit_key(id: Uuid) -> Vec<u8> {
    schema::key(tag::ORG_UNIT).id(id)
}

fn member_key(principal: &str) -> Vec<u8> {
    schema::key(tag::MEMBER_UNITS)
        .raw(principal.as_bytes())
        .raw(&[0])
}

fn unit_members_key(unit: Uuid) -> Vec<u8> {
    schema::key(tag::UNIT_MEMBERS).id(unit)
}

fn clearance_key(principal: &str) -> Vec<u8> {
    schema::key(tag::CLEARANCE).raw(principal.as_bytes())
}

fn clearance_history_key(principal: &str) -> Vec<u8> {
    schema::key(tag::CLEARANCE_HISTORY)
        .raw(principal.as_bytes())
        .raw(&[0])
}

pub(super) fn grants_key(id: Uuid) -> Vec<u8> {
    schema::key(tag::GRANTS).id(id)
}

fn log_key(id: Uuid) -> Vec<u8> {
    schema::key(tag::ACCESS_LOG).id(id)
}

fn internal(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Internal(e.to_string())
}

fn invalid(field: &str, reason: impl Into<String>) -> RecordsError {
    RecordsError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A unit by id, from the index.
pub(super) fn load_unit(index: &TenantIndex, id: Uuid) -> Result<Option<OrgUnit>, IndexError> {
    match index.get(unit_key(id))? {
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| IndexError::Malformed {
                key: format!("organisational unit {id}"),
                reason: e.to_string(),
            }),
        None => Ok(None),
    }
}

/// An object's own grants.
pub(super) fn load_grants(index: &TenantIndex, id: Uuid) -> Result<ObjectGrants, IndexError> {
    match index.get(grants_key(id))? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| IndexError::Malformed {
            key: format!("access settings of {id}"),
            reason: e.to_string(),
        }),
        None => Ok(ObjectGrants::default()),
    }
}

/// The parent of every unit of the tenant.
pub(super) fn unit_parents(
    index: &TenantIndex,
) -> Result<BTreeMap<Uuid, Option<Uuid>>, RecordsError> {
    let mut out = BTreeMap::new();
    for kv in index.scan_prefix(schema::key(tag::ORG_UNIT)) {
        let (_, v) = kv?;
        let u: OrgUnit = serde_json::from_slice(&v).map_err(internal)?;
        out.insert(u.id, u.parent);
    }
    Ok(out)
}

/// The units a principal is a member of (directly).
pub(super) fn memberships(index: &TenantIndex, principal: &str) -> Result<Vec<Uuid>, RecordsError> {
    let mut out = Vec::new();
    for kv in index.scan_prefix(member_key(principal)) {
        let (k, _) = kv?;
        if let Some(id) = schema::trailing_id(&k) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The clearance recorded for a principal, or the default.
pub(super) fn clearance_of(
    index: &TenantIndex,
    principal: &str,
) -> Result<Confidentiality, RecordsError> {
    match index.get(clearance_key(principal))? {
        Some(v) => Ok(serde_json::from_slice::<Clearance>(&v)
            .map_err(internal)?
            .level),
        None => Ok(DEFAULT_CLEARANCE),
    }
}

fn principal_name(field: &str, principal: &str) -> Result<(), RecordsError> {
    validate::line(field, principal, MAX_NAME)?;
    if principal.contains('\0') {
        return Err(invalid(field, "must not contain NUL"));
    }
    Ok(())
}

fn expect_unit(index: &TenantIndex, id: Uuid, field: &str) -> Result<OrgUnit, RecordsError> {
    load_unit(index, id)?.ok_or_else(|| RecordsError::NotFound {
        what: format!("organisational unit ({field})"),
        id: id.to_string(),
    })
}

/// Files and cases carry lead units and shares; `what` names the request's purpose.
fn expect_file_or_case(index: &TenantIndex, id: Uuid) -> Result<Object, RecordsError> {
    let o = get_object(index, id)?;
    match o.kind() {
        ObjectKind::File | ObjectKind::Case => Ok(o),
        found => Err(RecordsError::WrongKind {
            id: id.to_string(),
            expected: "file or case".into(),
            found,
        }),
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RecordsError> {
    serde_json::to_value(v).map_err(internal)
}

impl TenantRecords {
    /// Creates an organisational unit, at the top or below `parent`.
    pub fn create_org_unit(
        &self,
        actor: &str,
        name: &str,
        parent: Option<Uuid>,
    ) -> Result<OrgUnit, RecordsError> {
        validate::line("name", name, MAX_NAME)?;
        let id = self.write_plan(actor, |index| {
            if let Some(p) = parent {
                expect_unit(index, p, "parent")?;
                let parents = unit_parents(index)?;
                if depth(&parents, p) + 1 >= MAX_DEPTH {
                    return Err(invalid(
                        "parent",
                        format!("units nest at most {MAX_DEPTH} deep"),
                    ));
                }
            }
            let id = super::schema::new_id();
            let mut record = Self::new_event(Some(id))?;
            record.set = fields(vec![
                ("name", Value::from(name)),
                ("parent", to_value(&parent)?),
            ]);
            Ok(Plan::event(kind::ORG_UNIT_CREATE, record, vec![]))
        })?;
        self.org_unit(id)
    }

    /// Renames a unit and/or moves it below another (`Some(None)`: to the top).
    pub fn update_org_unit(
        &self,
        actor: &str,
        id: Uuid,
        name: Option<&str>,
        parent: Option<Option<Uuid>>,
    ) -> Result<OrgUnit, RecordsError> {
        if let Some(n) = name {
            validate::line("name", n, MAX_NAME)?;
        }
        self.write_plan(actor, |index| {
            let unit = expect_unit(index, id, "name")?;
            let mut set = Map::new();
            if let Some(n) = name.filter(|n| *n != unit.name) {
                set.insert("name".into(), Value::from(n));
            }
            if let Some(p) = parent.filter(|p| *p != unit.parent) {
                if let Some(p) = p {
                    expect_unit(index, p, "parent")?;
                    let parents = unit_parents(index)?;
                    // Moving below itself or one of its own units would make a cycle.
                    if ancestors(&parents, p).contains(&id) {
                        return Err(invalid(
                            "parent",
                            format!("unit {id} cannot be moved below {p}: that would make a cycle"),
                        ));
                    }
                    if depth(&parents, p) + subtree_height(&parents, id) >= MAX_DEPTH {
                        return Err(invalid(
                            "parent",
                            format!("units nest at most {MAX_DEPTH} deep"),
                        ));
                    }
                }
                set.insert("parent".into(), to_value(&p)?);
            }
            if set.is_empty() {
                return Ok(Plan::Done(id));
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = set;
            Ok(Plan::event(kind::ORG_UNIT_UPDATE, record, vec![]))
        })?;
        self.org_unit(id)
    }

    /// Makes `principal` a member of `unit` (nothing happens if it is one already).
    pub fn add_member(
        &self,
        actor: &str,
        unit: Uuid,
        principal: &str,
    ) -> Result<OrgUnit, RecordsError> {
        self.membership(actor, unit, principal, true)
    }

    /// Ends `principal`'s membership of `unit` (nothing happens if it is none).
    pub fn remove_member(
        &self,
        actor: &str,
        unit: Uuid,
        principal: &str,
    ) -> Result<OrgUnit, RecordsError> {
        self.membership(actor, unit, principal, false)
    }

    fn membership(
        &self,
        actor: &str,
        unit: Uuid,
        principal: &str,
        add: bool,
    ) -> Result<OrgUnit, RecordsError> {
        principal_name("principal", principal)?;
        self.write_plan(actor, |index| {
            expect_unit(index, unit, "unit")?;
            let is = index.contains_key(member_key(principal).id(unit))?;
            if is == add {
                return Ok(Plan::Done(unit));
            }
            let mut record = Self::new_event(Some(unit))?;
            record.set = fields(vec![("principal", Value::from(principal))]);
            let kind = if add {
                kind::ORG_UNIT_MEMBER_ADD
            } else {
                kind::ORG_UNIT_MEMBER_REMOVE
            };
            Ok(Plan::event(kind, record, vec![]))
        })?;
        self.org_unit(unit)
    }

    /// Records the highest level `principal` is cleared for.
    pub fn set_clearance(
        &self,
        actor: &str,
        principal: &str,
        level: Confidentiality,
        reason: Option<&str>,
    ) -> Result<Clearance, RecordsError> {
        principal_name("principal", principal)?;
        if let Some(r) = reason {
            validate::optional_line("reason", r, MAX_TEXT)?;
        }
        self.write_plan(actor, |index| {
            let current = index.get(clearance_key(principal))?;
            if let Some(v) = current {
                let c: Clearance = serde_json::from_slice(&v).map_err(internal)?;
                if c.level == level {
                    return Ok(Plan::Done(Uuid::nil()));
                }
            }
            let mut record = Self::new_event(None)?;
            record.set = fields(vec![
                ("principal", Value::from(principal)),
                ("clearance", to_value(&level)?),
            ]);
            record.reason = reason.map(str::to_owned);
            Ok(Plan::event(kind::PRINCIPAL_CLEARANCE, record, vec![]))
        })?;
        Ok(self.clearance(principal)?.unwrap_or(Clearance {
            principal: principal.to_owned(),
            level,
            updated: Stamp {
                actor: actor.to_owned(),
                at: chrono::Utc::now(),
                seq: 0,
            },
        }))
    }

    /// Sets (or with `None` removes) the lead unit of a file or case.
    pub fn set_lead_unit(
        &self,
        actor: &str,
        id: Uuid,
        unit: Option<Uuid>,
        reason: Option<&str>,
    ) -> Result<ObjectGrants, RecordsError> {
        if let Some(r) = reason {
            validate::optional_line("reason", r, MAX_TEXT)?;
        }
        self.authorize_write(id)?;
        self.write_plan(actor, |index| {
            expect_file_or_case(index, id)?;
            if let Some(u) = unit {
                expect_unit(index, u, "lead_unit")?;
            }
            if load_grants(index, id)?.lead_unit == unit {
                return Ok(Plan::Done(id));
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = fields(vec![("lead_unit", to_value(&unit)?)]);
            record.reason = reason.map(str::to_owned);
            Ok(Plan::event(kind::ACCESS_LEAD_UNIT, record, vec![]))
        })?;
        Ok(load_grants(self.tenant.index(), id)?)
    }

    /// Shares a file or case with a unit or principal, for reading or writing (replacing
    /// an earlier share with the same grantee); `write: None` ends the share.
    pub fn share(
        &self,
        actor: &str,
        id: Uuid,
        grantee: Grantee,
        write: Option<bool>,
        reason: Option<&str>,
    ) -> Result<ObjectGrants, RecordsError> {
        if let Some(r) = reason {
            validate::optional_line("reason", r, MAX_TEXT)?;
        }
        if let Grantee::Principal(p) = &grantee {
            principal_name("grantee.principal", p)?;
        }
        self.authorize_write(id)?;
        self.write_plan(actor, |index| {
            expect_file_or_case(index, id)?;
            if let (Grantee::Unit(u), Some(_)) = (&grantee, write) {
                expect_unit(index, *u, "grantee.unit")?;
            }
            let grants = load_grants(index, id)?;
            let current = grants
                .shares
                .iter()
                .find(|s| s.grantee == grantee)
                .map(|s| s.write);
            if current == write {
                return Ok(Plan::Done(id));
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = fields(vec![
                ("grantee", to_value(&grantee)?),
                ("write", to_value(&write)?),
            ]);
            record.reason = reason.map(str::to_owned);
            Ok(Plan::event(kind::ACCESS_SHARE, record, vec![]))
        })?;
        Ok(load_grants(self.tenant.index(), id)?)
    }

    /// Sets the confidentiality level of a file, case or document. Raising is open to
    /// whoever may change the object; lowering needs a reason and, for a caller bound to
    /// a principal, the right to keep files (a registrar).
    pub fn set_confidentiality(
        &self,
        actor: &str,
        id: Uuid,
        level: Confidentiality,
        reason: Option<&str>,
    ) -> Result<Object, RecordsError> {
        if let Some(r) = reason {
            validate::optional_line("reason", r, MAX_TEXT)?;
        }
        let current = self.authorize_write(id)?;
        let own = own_level(&current)?;
        if rank(level) < rank(own) {
            if reason.is_none_or(|r| r.trim().is_empty()) {
                return Err(invalid(
                    "reason",
                    "lowering the confidentiality level needs a reason",
                ));
            }
            self.authorize_lowering(&current)?;
        }
        self.write_plan(actor, |index| {
            let o = get_object(index, id)?;
            if own_level(&o)? == level {
                return Ok(Plan::Done(id));
            }
            let mut record = Self::new_event(Some(id))?;
            record.set = fields(vec![("confidentiality", to_value(&level)?)]);
            record.reason = reason.map(str::to_owned);
            Ok(Plan::event(kind::ACCESS_CONFIDENTIALITY, record, vec![]))
        })?;
        self.get(id)
    }

    /// A unit by id.
    pub fn org_unit(&self, id: Uuid) -> Result<OrgUnit, RecordsError> {
        expect_unit(self.tenant.index(), id, "name")
    }

    /// Every unit of the tenant, parents before children, in name order among siblings.
    pub fn list_org_units(&self) -> Result<Vec<OrgUnit>, RecordsError> {
        let mut all = Vec::new();
        for kv in self.tenant.index().scan_prefix(schema::key(tag::ORG_UNIT)) {
            let (_, v) = kv?;
            all.push(serde_json::from_slice::<OrgUnit>(&v).map_err(internal)?);
        }
        let mut by_parent: BTreeMap<Option<Uuid>, Vec<OrgUnit>> = BTreeMap::new();
        for u in all {
            by_parent.entry(u.parent).or_default().push(u);
        }
        for v in by_parent.values_mut() {
            v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        }
        let mut out = Vec::new();
        let mut stack: Vec<OrgUnit> = by_parent.remove(&None).unwrap_or_default();
        stack.reverse();
        while let Some(u) = stack.pop() {
            if let Some(mut children) = by_parent.remove(&Some(u.id)) {
                children.reverse();
                stack.extend(children);
            }
            out.push(u);
        }
        Ok(out)
    }

    /// The direct members of a unit, in name order.
    pub fn members(&self, unit: Uuid) -> Result<Vec<String>, RecordsError> {
        self.org_unit(unit)?;
        let prefix = unit_members_key(unit);
        let mut out = Vec::new();
        for kv in self.tenant.index().scan_prefix(&prefix) {
            let (k, _) = kv?;
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// The units `principal` is a direct member of.
    pub fn units_of(&self, principal: &str) -> Result<Vec<Uuid>, RecordsError> {
        memberships(self.tenant.index(), principal)
    }

    /// The clearance recorded for `principal` (`None`: the default, VS-NfD).
    pub fn clearance(&self, principal: &str) -> Result<Option<Clearance>, RecordsError> {
        match self.tenant.index().get(clearance_key(principal))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(internal)?)),
            None => Ok(None),
        }
    }

    /// Every change of `principal`'s clearance, oldest first.
    pub fn clearance_history(&self, principal: &str) -> Result<Vec<HistoryItem>, RecordsError> {
        let mut out = Vec::new();
        for kv in self
            .tenant
            .index()
            .scan_prefix(clearance_history_key(principal))
        {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(internal)?);
        }
        Ok(out)
    }

    /// A file's or case's own lead unit and shares (the caller must see it).
    pub fn grants(&self, id: Uuid) -> Result<ObjectGrants, RecordsError> {
        self.get(id)?;
        Ok(load_grants(self.tenant.index(), id)?)
    }

    /// The access log of an object, oldest first: reads of it at VS-NfD and above, and
    /// every denied attempt. For a caller bound to a principal, only one who may keep the
    /// object (its registrar) may list it.
    pub fn access_log(
        &self,
        id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<AccessLogItem>, RecordsError> {
        self.authorize_registrar(id)?;
        let prefix = log_key(id);
        super::read::scan_page(
            self.tenant.index(),
            &prefix,
            &prefix,
            page,
            usize::MAX,
            |_, v| serde_json::from_slice(v).map(Some).map_err(internal),
        )
    }

    /// Records a call the role table refused (`denial` `role`), as one access log entry:
    /// under the object the call named when it named a file, case or document of the
    /// tenant, otherwise in the tenant's own access log ([`Self::tenant_access_log`]).
    /// The server writes one per refused request, so the journal grows with requests,
    /// never more within one.
    pub fn log_role_denial(
        &self,
        principal: &str,
        operation: &str,
        object: Option<Uuid>,
    ) -> Result<(), RecordsError> {
        validate::line("operation", operation, MAX_NAME)?;
        let index = self.tenant.index();
        let id = match object {
            Some(id)
                if super::projection::load_object(index, id)?
                    .is_some_and(|o| o.kind() != ObjectKind::PlanUnit) =>
            {
                id
            }
            _ => Uuid::nil(),
        };
        self.log_access(principal, &[id], operation, Some("role"))
    }

    /// The tenant's own access log, oldest first: refused calls that named no object.
    pub fn tenant_access_log(
        &self,
        page: &PageRequest,
    ) -> Result<Page<AccessLogItem>, RecordsError> {
        let prefix = log_key(Uuid::nil());
        super::read::scan_page(
            self.tenant.index(),
            &prefix,
            &prefix,
            page,
            usize::MAX,
            |_, v| serde_json::from_slice(v).map(Some).map_err(internal),
        )
    }

    /// Appends one access log entry about `ids` (the first is the object named, the rest
    /// appear in the same answer).
    pub(super) fn log_access(
        &self,
        actor: &str,
        ids: &[Uuid],
        operation: &str,
        denial: Option<&str>,
    ) -> Result<(), RecordsError> {
        let Some((&first, rest)) = ids.split_first() else {
            return Ok(());
        };
        self.write_plan(actor, |_| {
            let mut record = Self::new_event(Some(first))?;
            record.cascade = rest.to_vec();
            record.set = fields(vec![
                ("operation", Value::from(operation)),
                ("allowed", Value::from(denial.is_none())),
                ("denial", Value::from(denial.unwrap_or_default())),
            ]);
            Ok(Plan::event(kind::ACCESS_LOG, record, vec![]))
        })?;
        Ok(())
    }
}

fn fields(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The level set on the object itself.
pub fn own_level(o: &Object) -> Result<Confidentiality, RecordsError> {
    match o {
        Object::File(f) => Ok(f.confidentiality),
        Object::Case(c) => Ok(c.confidentiality),
        Object::Document(d) => Ok(d.confidentiality),
        Object::PlanUnit(u) => Err(RecordsError::WrongKind {
            id: u.id.to_string(),
            expected: "file, case or document".into(),
            found: ObjectKind::PlanUnit,
        }),
    }
}

/// `id` and the units above it, nearest first (bounded, so a damaged index cannot loop).
pub(super) fn ancestors(parents: &BTreeMap<Uuid, Option<Uuid>>, id: Uuid) -> Vec<Uuid> {
    let mut out = vec![id];
    let mut cur = id;
    while let Some(Some(p)) = parents.get(&cur) {
        if out.len() > MAX_DEPTH || out.contains(p) {
            break;
        }
        out.push(*p);
        cur = *p;
    }
    out
}

fn depth(parents: &BTreeMap<Uuid, Option<Uuid>>, id: Uuid) -> usize {
    ancestors(parents, id).len()
}

fn subtree_height(parents: &BTreeMap<Uuid, Option<Uuid>>, id: Uuid) -> usize {
    parents
        .keys()
        .filter_map(|u| ancestors(parents, *u).iter().position(|a| *a == id))
        .max()
        .unwrap_or(0)
        + 1
}

/// The units a principal acts in: its own and its token's, and every unit below them.
pub(super) fn acting_units(
    index: &TenantIndex,
    principal: &str,
    token_units: &[Uuid],
) -> Result<BTreeSet<Uuid>, RecordsError> {
    let mut direct: BTreeSet<Uuid> = memberships(index, principal)?.into_iter().collect();
    direct.extend(token_units.iter().copied());
    if direct.is_empty() {
        return Ok(direct);
    }
    let parents = unit_parents(index)?;
    Ok(parents
        .keys()
        .copied()
        .filter(|u| ancestors(&parents, *u).iter().any(|a| direct.contains(a)))
        .collect())
}

/// The projection of the access events: index keys and history.
pub(super) fn apply(
    index: &TenantIndex,
    batch: &mut IndexBatch,
    record: &Record,
    event: &EventRecord,
) -> Result<(), IndexError> {
    let entry = &record.entry;
    let seq = entry.seq;
    let fail = |reason: String| IndexError::Projection { seq, reason };
    let stamp = Stamp {
        actor: entry.actor.clone(),
        at: entry.time,
        seq,
    };
    let history = |changes: Vec<FieldChange>| HistoryItem {
        seq,
        at: entry.time,
        actor: entry.actor.clone(),
        action: entry.kind.clone(),
        changes,
        reason: event.reason.clone(),
    };
    let json = |v: &dyn erased::Ser| v.to_json().map_err(|e| fail(e.to_string()));
    let text = |k: &str| {
        event
            .set
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| fail(format!("{} without {k}", entry.kind)))
    };
    let id = event.id;
    match entry.kind.as_str() {
        kind::ORG_UNIT_CREATE | kind::ORG_UNIT_UPDATE => {
            let id = id.ok_or_else(|| fail("unit event without id".into()))?;
            let old = load_unit(index, id)?;
            let mut unit = match (&old, entry.kind.as_str()) {
                (None, kind::ORG_UNIT_CREATE) => OrgUnit {
                    id,
                    name: String::new(),
                    parent: None,
                    revision: 0,
                    created: stamp.clone(),
                    updated: stamp.clone(),
                },
                (Some(u), kind::ORG_UNIT_UPDATE) => u.clone(),
                _ => return Err(fail(format!("{} of unit {id} does not fit", entry.kind))),
            };
            let mut changes = Vec::new();
            if let Some(n) = event.set.get("name").and_then(Value::as_str) {
                changes.push(FieldChange {
                    field: "name".into(),
                    old: old
                        .as_ref()
                        .map_or(Value::Null, |o| Value::from(o.name.clone())),
                    new: Value::from(n),
                });
                unit.name = n.to_owned();
            }
            if let Some(p) = event.set.get("parent") {
                let p: Option<Uuid> =
                    serde_json::from_value(p.clone()).map_err(|e| fail(e.to_string()))?;
                changes.push(FieldChange {
                    field: "parent".into(),
                    old: old
                        .as_ref()
                        .and_then(|o| o.parent)
                        .map_or(Value::Null, |p| Value::from(p.to_string())),
                    new: p.map_or(Value::Null, |p| Value::from(p.to_string())),
                });
                unit.parent = p;
            }
            unit.revision += 1;
            unit.updated = stamp.clone();
            batch.insert(unit_key(id), json(&unit)?);
            batch.insert(schema::history(id).num(seq), json(&history(changes))?);
        }
        kind::ORG_UNIT_MEMBER_ADD | kind::ORG_UNIT_MEMBER_REMOVE => {
            let id = id.ok_or_else(|| fail("membership without unit".into()))?;
            let principal = text("principal")?;
            let add = entry.kind == kind::ORG_UNIT_MEMBER_ADD;
            let mut unit =
                load_unit(index, id)?.ok_or_else(|| fail(format!("unit {id} does not exist")))?;
            let (mk, uk) = (
                member_key(&principal).id(id),
                unit_members_key(id).raw(principal.as_bytes()),
            );
            let (old, new) = if add {
                batch.insert(mk, &[][..]);
                batch.insert(uk, &[][..]);
                (Value::Null, Value::from(principal))
            } else {
                batch.remove(mk);
                batch.remove(uk);
                (Value::from(principal), Value::Null)
            };
            unit.revision += 1;
            unit.updated = stamp.clone();
            batch.insert(unit_key(id), json(&unit)?);
            let change = FieldChange {
                field: "member".into(),
                old,
                new,
            };
            batch.insert(schema::history(id).num(seq), json(&history(vec![change]))?);
        }
        kind::PRINCIPAL_CLEARANCE => {
            let principal = text("principal")?;
            let level: Confidentiality = event
                .set
                .get("clearance")
                .cloned()
                .ok_or_else(|| fail("clearance without level".into()))
                .and_then(|v| serde_json::from_value(v).map_err(|e| fail(e.to_string())))?;
            let old = match index.get(clearance_key(&principal))? {
                Some(v) => serde_json::from_slice::<Clearance>(&v)
                    .map(|c| Value::from(c.level.code()))
                    .unwrap_or(Value::Null),
                None => Value::Null,
            };
            let c = Clearance {
                principal: principal.clone(),
                level,
                updated: stamp.clone(),
            };
            batch.insert(clearance_key(&principal), json(&c)?);
            let change = FieldChange {
                field: "clearance".into(),
                old,
                new: Value::from(level.code()),
            };
            batch.insert(
                clearance_history_key(&principal).num(seq),
                json(&history(vec![change]))?,
            );
        }
        kind::ACCESS_LEAD_UNIT | kind::ACCESS_SHARE => {
            let id = id.ok_or_else(|| fail("access event without object".into()))?;
            let mut grants = load_grants(index, id)?;
            let change = if entry.kind == kind::ACCESS_LEAD_UNIT {
                let unit: Option<Uuid> = event
                    .set
                    .get("lead_unit")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?
                    .flatten();
                let old = grants
                    .lead_unit
                    .map_or(Value::Null, |u| Value::from(u.to_string()));
                grants.lead_unit = unit;
                FieldChange {
                    field: "lead_org_unit".into(),
                    old,
                    new: unit.map_or(Value::Null, |u| Value::from(u.to_string())),
                }
            } else {
                let grantee: Grantee = event
                    .set
                    .get("grantee")
                    .cloned()
                    .ok_or_else(|| fail("share without grantee".into()))
                    .and_then(|v| serde_json::from_value(v).map_err(|e| fail(e.to_string())))?;
                let write: Option<bool> = event
                    .set
                    .get("write")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?
                    .flatten();
                let shown = |w: Option<bool>| match w {
                    None => Value::Null,
                    Some(true) => Value::from("write"),
                    Some(false) => Value::from("read"),
                };
                let before = grants
                    .shares
                    .iter()
                    .find(|s| s.grantee == grantee)
                    .map(|s| s.write);
                grants.shares.retain(|s| s.grantee != grantee);
                if let Some(write) = write {
                    grants.shares.push(Share {
                        grantee: grantee.clone(),
                        write,
                    });
                    grants.shares.sort();
                }
                let who = match &grantee {
                    Grantee::Unit(u) => format!("share unit {u}"),
                    Grantee::Principal(p) => format!("share principal {p}"),
                };
                FieldChange {
                    field: who,
                    old: shown(before),
                    new: shown(write),
                }
            };
            if grants == ObjectGrants::default() {
                batch.remove(grants_key(id));
            } else {
                batch.insert(grants_key(id), json(&grants)?);
            }
            // An object destroyed later has no history when the index is rebuilt (its
            // create event is redacted); live, it always exists here.
            if super::projection::load_object(index, id)?.is_some() {
                batch.insert(schema::history(id).num(seq), json(&history(vec![change]))?);
            }
        }
        kind::ACCESS_LOG => {
            let operation = text("operation")?;
            let allowed = event
                .set
                .get("allowed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let denial = event
                .set
                .get("denial")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let item = AccessLogItem {
                seq,
                at: entry.time,
                actor: entry.actor.clone(),
                operation,
                allowed,
                denial,
            };
            let bytes = json(&item)?;
            for id in id.iter().chain(&event.cascade) {
                batch.insert(log_key(*id).num(seq), bytes.clone());
            }
        }
        other => return Err(fail(format!("{other} is not an access event"))),
    }
    Ok(())
}

/// Serialising for the projection without naming each type.
mod erased {
    pub(super) trait Ser {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(self)
        }
    }
}
