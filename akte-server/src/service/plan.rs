//! FilePlanService: plan units.

use akte_core::records::{NewPlanUnit, ObjectKind, PlanUnit, RecordsError};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_etag, parse_id, request_id};
use crate::error::ApiError;
use crate::names;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::file_plan_service_server::FilePlanService;

use super::{blocking, get_kind, named, Api};

const UNIT: &[ObjectKind] = &[ObjectKind::PlanUnit];

#[tonic::async_trait]
impl FilePlanService for Api {
    async fn create_plan_unit(
        &self,
        req: Request<pb::CreatePlanUnitRequest>,
    ) -> Result<Response<pb::PlanUnit>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (tenant, parent) = names::tenant_or_object("parent", &r.parent, UNIT)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::KeepFiles)?;
        let u = r.plan_unit.unwrap_or_default();
        let (retention, disposal) = convert::plan_unit_defaults(&u)?;
        let new = NewPlanUnit {
            id: parse_id("plan_unit_id", &r.plan_unit_id)?,
            parent: parent.map(|p| p.id),
            code: u.code,
            title: u.title,
            description: u.description,
            retention,
            disposal,
        };
        let actor = caller.actor().to_owned();
        let parent_name = r.parent.clone();
        let unit = blocking(move || {
            t.create_plan_unit(&actor, new, request_id(&r.request_id))
                .map_err(|e| match e {
                    RecordsError::NotFound { what, .. } if what == "parent" => ApiError::NotFound {
                        resource: parent_name,
                    },
                    other => other.into(),
                })
        })
        .await?;
        Ok(Response::new(convert::plan_unit(&tenant, &unit)))
    }

    async fn get_plan_unit(
        &self,
        req: Request<pb::GetPlanUnitRequest>,
    ) -> Result<Response<pb::PlanUnit>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        Ok(Response::new(
            self.get_kept::<PlanUnit>(&caller, name).await?,
        ))
    }

    async fn list_plan_units(
        &self,
        req: Request<pb::ListPlanUnitsRequest>,
    ) -> Result<Response<pb::ListPlanUnitsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        // The parent is a plan unit, or the tenant itself for the top level.
        let (tenant, parent) = names::tenant_or_object("parent", &r.parent, UNIT)?;
        let page = self
            .list_kept(
                &caller,
                tenant,
                r.parent,
                "ListPlanUnits",
                r.page_size,
                &r.page_token,
                move |t, parent_name, page| {
                    t.list_plan_units(parent.map(|p| p.id), page)
                        .map_err(named(parent_name))
                },
            )
            .await?;
        Ok(Response::new(pb::ListPlanUnitsResponse {
            plan_units: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_plan_unit(
        &self,
        req: Request<pb::UpdatePlanUnitRequest>,
    ) -> Result<Response<pb::PlanUnit>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let u = r.plan_unit.unwrap_or_default();
        // A new parent must be in the unit's own tenant.
        let patch = |tenant: &str| convert::plan_unit_patch(tenant, &u, r.update_mask.as_ref());
        let unit = self
            .update_kept::<PlanUnit, _>(&caller, u.name.clone(), patch, &r.etag, r.reason)
            .await?;
        Ok(Response::new(unit))
    }

    async fn delete_plan_unit(
        &self,
        req: Request<pb::DeletePlanUnitRequest>,
    ) -> Result<Response<pb::DeletePlanUnitResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("name", &r.name, UNIT)?;
        let t = self.tenant(&caller, &o.tenant, &r.name, Operation::KeepFiles)?;
        let etag = parse_etag("etag", &r.etag)?
            .ok_or_else(|| ApiError::field("etag", "is required to delete a plan unit"))?;
        let actor = caller.actor().to_owned();
        blocking(move || {
            get_kind(&t, o.id, ObjectKind::PlanUnit, &r.name)?;
            Ok(t.delete_plan_unit(&actor, o.id, etag)?)
        })
        .await?;
        Ok(Response::new(pb::DeletePlanUnitResponse {}))
    }
}
