//! RetentionService and HoldService: retention overrides, disposal status, the due list,
//! the tenant's retention rule, and holds.

use akte_core::records::TenantRecords;
use akte_core::records::{
    DisposalExplanation, DisposalProgress, DisposalStatus, DueFilter, Hold, ObjectKind,
    RetentionRule,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::{self, parse_date};
use crate::error::ApiError;
use crate::filter;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::hold_service_server::HoldService;
use crate::pb::akte::v1::retention_service_server::RetentionService;

use super::{blocking, get_kind, named, page_after, Api};

const HELD: &[ObjectKind] = &[ObjectKind::File, ObjectKind::Case, ObjectKind::Document];

/// The kind of a (held) object, for its name; a file when it cannot be read.
fn kind_of(t: &TenantRecords, id: Uuid) -> ObjectKind {
    t.kind_of(id)
}

/// The message of a hold.
pub(crate) fn hold(t: &TenantRecords, tenant: &str, h: &Hold) -> pb::Hold {
    pb::Hold {
        name: names::resource_name(tenant, "holds", h.id),
        object: names::object_name(tenant, kind_of(t, h.object), h.object),
        file: names::object_name(tenant, ObjectKind::File, h.file),
        reason: h.reason.clone(),
        reference: h.reference.clone(),
        placed_by: h.placed.actor.clone(),
        place_time: Some(convert::timestamp(&h.placed.at)),
        active: h.released.is_none(),
        released_by: h
            .released
            .as_ref()
            .map(|r| r.stamp.actor.clone())
            .unwrap_or_default(),
        release_time: h.released.as_ref().map(|r| convert::timestamp(&r.stamp.at)),
        release_reason: h
            .released
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default(),
    }
}

/// The message of a disposal status; `object_kind` names the object asked about.
pub(crate) fn status(
    t: &TenantRecords,
    tenant: &str,
    object_kind: ObjectKind,
    e: &DisposalExplanation,
) -> pb::DisposalStatus {
    use pb::DisposalState as S;
    let mut out = pb::DisposalStatus {
        object: names::object_name(tenant, object_kind, e.object),
        archive_id: e.archive_id.clone().unwrap_or_default(),
        parts: e
            .parts
            .iter()
            .map(|part| status(t, tenant, part.kind, part))
            .collect(),
        file: names::object_name(tenant, ObjectKind::File, e.file),
        reference: e.reference.clone(),
        state: S::Unspecified as i32,
        retention: Some(convert::retention(e.retention)),
        decision: convert::disposal(e.decision),
        source: e.source.clone(),
        retention_end: convert::date(e.retention_end),
        explanation: e.explanation.clone(),
        ..Default::default()
    };
    let process = |p: &Uuid| names::resource_name(tenant, "disposalProcesses", *p);
    out.state = match &e.status {
        DisposalStatus::NotClosed => S::NotClosed,
        DisposalStatus::Retained { .. } => S::Retained,
        DisposalStatus::Unlimited => S::Unlimited,
        DisposalStatus::Held { holds } => {
            out.holds = holds.iter().map(|h| hold(t, tenant, h)).collect();
            S::Held
        }
        DisposalStatus::Due { .. } => S::Due,
        DisposalStatus::InProcess(p) => match p {
            DisposalProgress::Offered { process: id, on } => {
                out.process = process(id);
                out.since = convert::date(Some(*on));
                S::Offered
            }
            DisposalProgress::Appraised {
                process: id, on, ..
            } => {
                out.process = process(id);
                out.since = convert::date(Some(*on));
                S::Appraised
            }
            DisposalProgress::TransferSent { process: id, on } => {
                out.process = process(id);
                out.since = convert::date(Some(*on));
                S::TransferSent
            }
            DisposalProgress::Transferred {
                process: id, on, ..
            } => {
                out.process = process(id);
                out.since = convert::date(Some(*on));
                S::Transferred
            }
            DisposalProgress::ImportFailed {
                process: id, on, ..
            } => {
                out.process = process(id);
                out.since = convert::date(Some(*on));
                S::ImportFailed
            }
            DisposalProgress::Destroyed { on, record } => {
                out.destruction_record =
                    names::resource_name(tenant, "destructionRecords", *record);
                out.since = convert::date(Some(*on));
                S::Destroyed
            }
        },
    } as i32;
    out
}

fn rule(r: RetentionRule) -> i32 {
    match r {
        RetentionRule::EndOfClosingYear => pb::RetentionRule::EndOfClosingYear as i32,
        RetentionRule::ClosingDate => pb::RetentionRule::ClosingDate as i32,
    }
}

#[tonic::async_trait]
impl RetentionService for Api {
    async fn set_retention(
        &self,
        req: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::DisposalStatus>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, &[ObjectKind::File])?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let retention = convert::parse_retention("retention", r.retention.as_ref())?;
        let disposal = convert::parse_disposal("disposal", r.disposal)?;
        let actor = caller.actor().to_owned();
        let name = r.name.clone();
        let tenant = o.tenant.clone();
        let out = blocking(move || {
            get_kind(&t, o.id, ObjectKind::File, &name)?;
            t.set_retention(&actor, o.id, retention, disposal, &r.reason)?;
            let e = t.disposal_status(o.id)?;
            Ok(status(&t, &tenant, ObjectKind::File, &e))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn get_disposal_status(
        &self,
        req: Request<pb::GetDisposalStatusRequest>,
    ) -> Result<Response<pb::DisposalStatus>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let o = names::object_of("name", &name, HELD)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::Read)?;
        let kind = o.kind;
        let tenant = o.tenant.clone();
        let out = blocking(move || {
            get_kind(&t, o.id, kind, &name)?;
            let e = t.disposal_status(o.id).map_err(named(&name))?;
            Ok(status(&t, &tenant, kind, &e))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn list_due_files(
        &self,
        req: Request<pb::ListDueFilesRequest>,
    ) -> Result<Response<pb::ListDueFilesResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let plan_unit = if r.plan_unit.is_empty() {
            None
        } else {
            let u = names::object_of("plan_unit", &r.plan_unit, &[ObjectKind::PlanUnit])?;
            if u.tenant != tenant {
                return Err(ApiError::NotFound {
                    resource: r.plan_unit.clone(),
                }
                .into());
            }
            Some(u.id)
        };
        let filter = DueFilter {
            plan_unit,
            decision: convert::parse_disposal("decision", r.decision)?,
            ended_by: parse_date("ended_by", r.ended_by.as_ref())?,
        };
        let criteria = format!("{:?}", (&filter, &r.plan_unit));
        let scope = Scope::new("ListDueFiles", &[&r.parent, &criteria]);
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let (files, next) = blocking(move || {
            let due = t.due_page(&filter, akte_core::records::civil::today(), &page)?;
            // The records are bound to the caller: files it may not see are not listed.
            let files = due
                .items
                .iter()
                .map(|e| status(&t, &tenant, ObjectKind::File, e))
                .collect();
            Ok((files, due.next_page_token))
        })
        .await?;
        Ok(Response::new(pb::ListDueFilesResponse {
            files,
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }

    async fn set_retention_rule(
        &self,
        req: Request<pb::SetRetentionRuleRequest>,
    ) -> Result<Response<pb::SetRetentionRuleResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("name", &r.name)?;
        let new = match pb::RetentionRule::try_from(r.rule) {
            Ok(pb::RetentionRule::EndOfClosingYear) => RetentionRule::EndOfClosingYear,
            Ok(pb::RetentionRule::ClosingDate) => RetentionRule::ClosingDate,
            _ => {
                return Err(
                    ApiError::field("rule", format!("{} is not a rule (1 or 2)", r.rule)).into(),
                )
            }
        };
        let t = self.tenant(&caller, &tenant, &r.name, Operation::KeepFiles)?;
        let actor = caller.actor().to_owned();
        let now = blocking(move || {
            t.configure_retention_rule(&actor, new)?;
            Ok(t.retention_rule()?)
        })
        .await?;
        Ok(Response::new(pb::SetRetentionRuleResponse {
            rule: rule(now),
        }))
    }
}

#[tonic::async_trait]
impl HoldService for Api {
    async fn place_hold(
        &self,
        req: Request<pb::PlaceHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("object", &r.object, HELD)?;
        let t = self.tenant(&caller, &o.tenant, &r.object, Operation::Archive)?;
        let actor = caller.actor().to_owned();
        let name = r.object.clone();
        let tenant = o.tenant.clone();
        let out = blocking(move || {
            get_kind(&t, o.id, o.kind, &name)?;
            let h = t.place_hold(&actor, o.id, &r.reason, &r.reference)?;
            Ok(hold(&t, &tenant, &h))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn release_hold(
        &self,
        req: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (tenant, id) = names::resource("name", &r.name, "holds")?;
        let t = self.tenant(&caller, &tenant, &r.name, Operation::Archive)?;
        let actor = caller.actor().to_owned();
        let name = r.name.clone();
        let out = blocking(move || {
            t.hold(id).map_err(named(&name))?;
            let h = t.release_hold(&actor, id, &r.reason)?;
            Ok(hold(&t, &tenant, &h))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn get_hold(
        &self,
        req: Request<pb::GetHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (tenant, id) = names::resource("name", &name, "holds")?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        let out = blocking(move || {
            let h = t.hold(id).map_err(named(&name))?;
            // A hold on an object the caller may not see is not found either.
            if !t.may_see_id(h.object)? {
                return Err(ApiError::NotFound { resource: name });
            }
            Ok(hold(&t, &tenant, &h))
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn list_holds(
        &self,
        req: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let conditions = filter::parse(&r.filter, &["active", "object", "file"])?;
        for c in conditions.iter().filter(|c| c.field == "active") {
            c.boolean()?;
        }
        let scope = Scope::new("ListHolds", &[&r.parent, &r.filter]);
        let after = self.state().page_tokens.open_u64(&scope, &r.page_token)?;
        let size = convert::page_len(r.page_size)?;
        // Holds are few (legal matters, not records): the page is cut from all of them, in
        // the order they were placed; the cursor is the journal entry of the last placement.
        let matching = blocking(move || {
            let mut holds = t.list_holds(false)?;
            let mut visible = Vec::with_capacity(holds.len());
            for h in holds.drain(..) {
                if t.may_see_id(h.object)? {
                    visible.push(h);
                }
            }
            Ok(visible
                .iter()
                .map(|h| (h.placed.seq, hold(&t, &tenant, h)))
                .filter(|(_, h)| {
                    conditions.iter().all(|c| match c.field.as_str() {
                        "active" => c.holds(if h.active { "true" } else { "false" }),
                        "object" => c.holds(&h.object),
                        _ => c.holds(&h.file),
                    })
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let (page, next) = page_after(&matching, |(seq, _)| *seq, after.as_ref(), size);
        Ok(Response::new(pb::ListHoldsResponse {
            holds: page.into_iter().map(|(_, h)| h.clone()).collect(),
            next_page_token: self.state().page_tokens.seal_u64(&scope, next),
        }))
    }
}
