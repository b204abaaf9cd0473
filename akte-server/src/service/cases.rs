//! CaseService: cases and sub-cases.

use akte_core::records::{Case, Confidentiality, NewCase, ObjectKind};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_date, parse_id, request_id};
use crate::names;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::case_service_server::CaseService;

use super::kept::Lifecycle;
use super::{blocking, get_kind, reason, Api};

const CONTAINERS: &[ObjectKind] = &[ObjectKind::File, ObjectKind::Case];

#[tonic::async_trait]
impl CaseService for Api {
    async fn create_case(
        &self,
        req: Request<pb::CreateCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let parent = names::object_of("parent", &r.parent, CONTAINERS)?;
        let t = self.tenant(&caller, &parent.tenant, &r.parent, Operation::FileDocuments)?;
        let c = r.case.unwrap_or_default();
        let new = NewCase {
            id: parse_id("case_id", &r.case_id)?,
            parent: parent.id,
            subject: c.subject,
            begin: parse_date("case.begin", c.begin.as_ref())?,
            end: parse_date("case.end", c.end.as_ref())?,
            confidentiality: convert::parse_confidentiality(
                "case.confidentiality",
                c.confidentiality,
            )?
            .unwrap_or(Confidentiality::Open),
            notes: c.notes,
            custom_fields: convert::parse_field_values("case.custom_fields", &c.custom_fields)?,
        };
        let actor = caller.actor().to_owned();
        let parent_name = r.parent.clone();
        let case = blocking(move || {
            get_kind(&t, parent.id, parent.kind, &parent_name)?;
            Ok(t.create_case(&actor, new, request_id(&r.request_id))?)
        })
        .await?;
        Ok(Response::new(convert::case(&parent.tenant, &case)))
    }

    async fn get_case(
        &self,
        req: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        Ok(Response::new(self.get_kept::<Case>(&caller, name).await?))
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let page = self
            .list_children::<Case>(
                &caller,
                r.parent,
                CONTAINERS,
                "ListCases",
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListCasesResponse {
            cases: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_case(
        &self,
        req: Request<pb::UpdateCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let c = r.case.unwrap_or_default();
        let patch = |_: &str| convert::case_patch(&c, r.update_mask.as_ref());
        let case = self
            .update_kept::<Case, _>(&caller, c.name.clone(), patch, &r.etag, r.reason)
            .await?;
        Ok(Response::new(case))
    }

    async fn close_case(
        &self,
        req: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let date = parse_date("close_date", r.close_date.as_ref())?;
        let step = Lifecycle::Close(date);
        let case = self
            .close_or_reopen::<Case>(&caller, r.name, &r.etag, step)
            .await?;
        Ok(Response::new(case))
    }

    async fn reopen_case(
        &self,
        req: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let step = Lifecycle::Reopen(reason(r.reason));
        let case = self
            .close_or_reopen::<Case>(&caller, r.name, &r.etag, step)
            .await?;
        Ok(Response::new(case))
    }
}
