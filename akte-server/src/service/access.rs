//! AccessService: organisational units, members, clearances, lead units, shares,
//! confidentiality levels and the access log (`akte_core::records::org`).

use akte_core::access::{rank, Grantee};
use akte_core::records::{
    AccessLogItem, Confidentiality, HistoryItem, Object, ObjectGrants, ObjectKind, OrgUnit,
    TenantRecords,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::{self, timestamp};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::access_service_server::AccessService;

use super::{blocking, named, page_after, reason, Api};

/// The collection of units in resource names.
pub(crate) const ORG_UNITS: &str = "orgUnits";
const OBJECTS: &[ObjectKind] = &[ObjectKind::File, ObjectKind::Case, ObjectKind::Document];
const CONTAINERS: &[ObjectKind] = &[ObjectKind::File, ObjectKind::Case];

fn unit_name(tenant: &str, id: Uuid) -> String {
    names::resource_name(tenant, ORG_UNITS, id)
}

/// A unit named in `field`, which must be of `tenant`.
pub(crate) fn unit_in(field: &str, name: &str, tenant: &str) -> Result<Uuid, ApiError> {
    let (t, id) = names::resource(field, name, ORG_UNITS)?;
    if t != tenant {
        return Err(ApiError::field(
            field,
            format!("{name:?} is a unit of another tenant"),
        ));
    }
    Ok(id)
}

fn unit_msg(t: &TenantRecords, tenant: &str, u: &OrgUnit) -> Result<pb::OrgUnit, ApiError> {
    Ok(pb::OrgUnit {
        name: unit_name(tenant, u.id),
        display_name: u.name.clone(),
        parent_unit: u.parent.map(|p| unit_name(tenant, p)).unwrap_or_default(),
        members: t.members(u.id)?,
        revision: u.revision,
    })
}

fn level(field: &str, v: i32) -> Result<Confidentiality, ApiError> {
    convert::parse_confidentiality(field, v)?.ok_or_else(|| ApiError::field(field, "is required"))
}

fn access_msg(
    t: &TenantRecords,
    tenant: &str,
    obj: &Object,
    grants: &ObjectGrants,
) -> Result<pb::ObjectAccess, ApiError> {
    let own = match obj {
        Object::File(f) => f.confidentiality,
        Object::Case(c) => c.confidentiality,
        Object::Document(d) => d.confidentiality,
        Object::PlanUnit(_) => Confidentiality::Open,
    };
    let effective = t.effective_access(obj)?.unwrap_or_default();
    let shares = grants
        .shares
        .iter()
        .map(|s| {
            let (org_unit, principal) = match &s.grantee {
                Grantee::Unit(u) => (unit_name(tenant, *u), String::new()),
                Grantee::Principal(p) => (String::new(), p.clone()),
            };
            pb::Share {
                org_unit,
                principal,
                mode: if s.write {
                    pb::ShareMode::Write
                } else {
                    pb::ShareMode::Read
                } as i32,
            }
        })
        .collect();
    Ok(pb::ObjectAccess {
        name: names::object_name(tenant, obj.kind(), obj.id()),
        lead_unit: grants
            .lead_unit
            .map(|u| unit_name(tenant, u))
            .unwrap_or_default(),
        shares,
        confidentiality: convert::confidentiality(own),
        effective_confidentiality: convert::confidentiality(effective.level),
        effective_lead_units: effective
            .lead_units
            .iter()
            .map(|u| unit_name(tenant, *u))
            .collect(),
    })
}

fn log_msg(e: &AccessLogItem) -> pb::AccessLogEntry {
    pb::AccessLogEntry {
        journal_seq: e.seq,
        time: Some(timestamp(&e.at)),
        principal: e.actor.clone(),
        operation: e.operation.clone(),
        allowed: e.allowed,
        denial: e.denial.clone(),
    }
}

fn clearance_change(h: &HistoryItem) -> pb::ClearanceChange {
    let code = |v: &serde_json::Value| {
        v.as_str()
            .and_then(Confidentiality::from_code)
            .map_or(0, convert::confidentiality)
    };
    let change = h.changes.first();
    pb::ClearanceChange {
        time: Some(timestamp(&h.at)),
        actor: h.actor.clone(),
        old_level: change.map_or(0, |c| code(&c.old)),
        new_level: change.map_or(0, |c| code(&c.new)),
        reason: h.reason.clone().unwrap_or_default(),
    }
}

fn clearance_msg(t: &TenantRecords, principal: &str) -> Result<pb::Clearance, ApiError> {
    let recorded = t.clearance(principal)?;
    Ok(pb::Clearance {
        principal: principal.to_owned(),
        level: convert::confidentiality(
            recorded
                .as_ref()
                .map_or(akte_core::access::DEFAULT_CLEARANCE, |c| c.level),
        ),
        recorded: recorded.is_some(),
        history: t
            .clearance_history(principal)?
            .iter()
            .map(clearance_change)
            .collect(),
    })
}

#[tonic::async_trait]
impl AccessService for Api {
    async fn create_org_unit(
        &self,
        req: Request<pb::CreateOrgUnitRequest>,
    ) -> Result<Response<pb::OrgUnit>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Administer)?;
        let u = r.org_unit.unwrap_or_default();
        let parent = match u.parent_unit.as_str() {
            "" => None,
            p => Some(unit_in("org_unit.parent_unit", p, &tenant)?),
        };
        let actor = caller.actor().to_owned();
        let msg = blocking(move || {
            let unit = t
                .create_org_unit(&actor, &u.display_name, parent)
                .map_err(named(&u.parent_unit))?;
            unit_msg(&t, &tenant, &unit)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn get_org_unit(
        &self,
        req: Request<pb::GetOrgUnitRequest>,
    ) -> Result<Response<pb::OrgUnit>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, ORG_UNITS)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let msg = blocking(move || {
            let u = t.org_unit(id).map_err(named(&name))?;
            unit_msg(&t, &tenant, &u)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn list_org_units(
        &self,
        req: Request<pb::ListOrgUnitsRequest>,
    ) -> Result<Response<pb::ListOrgUnitsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListOrgUnits", &[&r.parent]);
        let after = self.open_token(&scope, &r.page_token)?;
        let after: Option<usize> = match after.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| ApiError::InvalidPageToken)?),
        };
        let size = convert::page_len(r.page_size)?;
        let (units, next) = blocking(move || {
            // Units are few (hundreds); the listing's order is the tree's, so a page is
            // a position in it.
            let all: Vec<(usize, OrgUnit)> = t.list_org_units()?.into_iter().enumerate().collect();
            let (page, next) = page_after(&all, |(i, _)| *i, after.as_ref(), size);
            let units = page
                .into_iter()
                .map(|(_, u)| unit_msg(&t, &tenant, u))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((units, next))
        })
        .await?;
        Ok(Response::new(pb::ListOrgUnitsResponse {
            org_units: units,
            next_page_token: self.seal_token(&scope, next.map(|n| n.to_string()).as_deref()),
        }))
    }

    async fn update_org_unit(
        &self,
        req: Request<pb::UpdateOrgUnitRequest>,
    ) -> Result<Response<pb::OrgUnit>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (tenant, id) = names::resource("name", &r.name, ORG_UNITS)?;
        let t = self.tenant(&caller, &tenant, &r.name, Operation::Administer)?;
        let parent = match r.parent_unit.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some(unit_in("parent_unit", p, &tenant)?)),
        };
        let name = (!r.display_name.is_empty()).then_some(r.display_name);
        let actor = caller.actor().to_owned();
        let shown = r.name;
        let msg = blocking(move || {
            let u = t
                .update_org_unit(&actor, id, name.as_deref(), parent)
                .map_err(named(&shown))?;
            unit_msg(&t, &tenant, &u)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn add_org_unit_member(
        &self,
        req: Request<pb::AddOrgUnitMemberRequest>,
    ) -> Result<Response<pb::OrgUnit>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        self.membership(caller, r.name, r.principal, true).await
    }

    async fn remove_org_unit_member(
        &self,
        req: Request<pb::RemoveOrgUnitMemberRequest>,
    ) -> Result<Response<pb::OrgUnit>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        self.membership(caller, r.name, r.principal, false).await
    }

    async fn set_clearance(
        &self,
        req: Request<pb::SetClearanceRequest>,
    ) -> Result<Response<pb::Clearance>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Administer)?;
        let lvl = level("level", r.level)?;
        let actor = caller.actor().to_owned();
        let msg = blocking(move || {
            t.set_clearance(&actor, &r.principal, lvl, reason(r.reason).as_deref())?;
            clearance_msg(&t, &r.principal)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn get_clearance(
        &self,
        req: Request<pb::GetClearanceRequest>,
    ) -> Result<Response<pb::Clearance>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Administer)?;
        if r.principal.is_empty() {
            return Err(ApiError::field("principal", "is required").into());
        }
        Ok(Response::new(
            blocking(move || clearance_msg(&t, &r.principal)).await?,
        ))
    }

    async fn get_access(
        &self,
        req: Request<pb::GetAccessRequest>,
    ) -> Result<Response<pb::ObjectAccess>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let o = names::object_of("name", &name, OBJECTS)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::Read)?;
        let msg = blocking(move || {
            let obj = super::get_kind(&t, o.id, o.kind, &name)?;
            let grants = t.grants(o.id).map_err(named(&name))?;
            access_msg(&t, &o.tenant, &obj, &grants)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn set_lead_unit(
        &self,
        req: Request<pb::SetLeadUnitRequest>,
    ) -> Result<Response<pb::ObjectAccess>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, CONTAINERS)?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let unit = match r.lead_unit.as_str() {
            "" => None,
            u => Some(unit_in("lead_unit", u, &o.tenant)?),
        };
        let actor = caller.actor().to_owned();
        let name = r.name;
        let msg = blocking(move || {
            super::get_kind(&t, o.id, o.kind, &name)?;
            let grants = t
                .set_lead_unit(&actor, o.id, unit, reason(r.reason).as_deref())
                .map_err(|e| match e {
                    akte_core::records::RecordsError::NotFound { what, .. }
                        if what.contains("organisational unit") =>
                    {
                        ApiError::NotFound {
                            resource: r.lead_unit.clone(),
                        }
                    }
                    other => other.into(),
                })?;
            let obj = t.unbound().get(o.id)?;
            access_msg(&t, &o.tenant, &obj, &grants)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn update_share(
        &self,
        req: Request<pb::UpdateShareRequest>,
    ) -> Result<Response<pb::ObjectAccess>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, CONTAINERS)?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let share = r
            .share
            .ok_or_else(|| ApiError::field("share", "is required"))?;
        let grantee = match (share.org_unit.as_str(), share.principal.as_str()) {
            (u, "") if !u.is_empty() => Grantee::Unit(unit_in("share.org_unit", u, &o.tenant)?),
            ("", p) if !p.is_empty() => Grantee::Principal(p.to_owned()),
            _ => {
                return Err(
                    ApiError::field("share", "name exactly one of org_unit and principal").into(),
                )
            }
        };
        let write = match pb::ShareMode::try_from(share.mode) {
            Ok(pb::ShareMode::Read) => Some(false),
            Ok(pb::ShareMode::Write) => Some(true),
            Ok(pb::ShareMode::None) => None,
            _ => {
                return Err(ApiError::field("share.mode", "READ, WRITE or NONE is required").into())
            }
        };
        let actor = caller.actor().to_owned();
        let name = r.name;
        let msg = blocking(move || {
            super::get_kind(&t, o.id, o.kind, &name)?;
            let grants = t.share(&actor, o.id, grantee, write, reason(r.reason).as_deref())?;
            let obj = t.unbound().get(o.id)?;
            access_msg(&t, &o.tenant, &obj, &grants)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn set_confidentiality(
        &self,
        req: Request<pb::SetConfidentialityRequest>,
    ) -> Result<Response<pb::ObjectAccess>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, OBJECTS)?;
        // As changing the object otherwise: files are the registrar's, cases and
        // documents the clerk's; lowering is checked as the registrar's in the core.
        let op = if o.kind == ObjectKind::File {
            Operation::KeepFiles
        } else {
            Operation::FileDocuments
        };
        let t = self.tenant(&caller, &o.tenant, &r.name, op)?;
        let lvl = level("confidentiality", r.confidentiality)?;
        let actor = caller.actor().to_owned();
        let name = r.name;
        let msg = blocking(move || {
            let before = super::get_kind(&t, o.id, o.kind, &name)?;
            let lowering =
                akte_core::records::org::own_level(&before).is_ok_and(|l| rank(lvl) < rank(l));
            if lowering && !caller.principal.may(Operation::KeepFiles) {
                return Err(ApiError::PermissionDenied {
                    required: "registrar (lowering a confidentiality level)".into(),
                });
            }
            t.set_confidentiality(&actor, o.id, lvl, reason(r.reason).as_deref())?;
            let obj = t.unbound().get(o.id)?;
            let grants = t.unbound().grants(o.id)?;
            access_msg(&t, &o.tenant, &obj, &grants)
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn list_access_log(
        &self,
        req: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let scope = Scope::new("ListAccessLog", &[&r.parent]);
        if r.parent.matches('/').count() <= 1 {
            // The tenant's own log (refused calls that named no object) is its
            // administrator's.
            let tenant = names::tenant("parent", &r.parent)?;
            let t = self.tenant(&caller, &tenant, &r.parent, Operation::Administer)?;
            let page = self.page_request(&scope, r.page_size, &r.page_token)?;
            let page = blocking(move || Ok(t.tenant_access_log(&page)?)).await?;
            return Ok(Response::new(pb::ListAccessLogResponse {
                entries: page.items.iter().map(log_msg).collect(),
                next_page_token: self.seal_token(&scope, page.next_page_token.as_deref()),
            }));
        }
        let o = names::object_of("parent", &r.parent, OBJECTS)?;
        let t = self.tenant(&caller, &o.tenant, &r.parent, Operation::KeepFiles)?;
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let name = r.parent;
        let page = blocking(move || {
            super::get_kind(&t.unbound(), o.id, o.kind, &name)?;
            t.access_log(o.id, &page).map_err(named(&name))
        })
        .await?;
        Ok(Response::new(pb::ListAccessLogResponse {
            entries: page.items.iter().map(log_msg).collect(),
            next_page_token: self.seal_token(&scope, page.next_page_token.as_deref()),
        }))
    }
}

impl Api {
    async fn membership(
        &self,
        caller: super::Caller,
        name: String,
        principal: String,
        add: bool,
    ) -> Result<Response<pb::OrgUnit>, Status> {
        let (tenant, id) = names::resource("name", &name, ORG_UNITS)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Administer)?;
        crate::auth::validate_principal(&principal)
            .map_err(|e| ApiError::field("principal", e.to_string()))?;
        let actor = caller.actor().to_owned();
        let msg = blocking(move || {
            let u = if add {
                t.add_member(&actor, id, &principal)
            } else {
                t.remove_member(&actor, id, &principal)
            }
            .map_err(named(&name))?;
            unit_msg(&t, &tenant, &u)
        })
        .await?;
        Ok(Response::new(msg))
    }
}
