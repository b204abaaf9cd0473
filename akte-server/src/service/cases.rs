//! CaseService: cases and sub-cases.

use akte_core::records::{Confidentiality, NewCase, Object, ObjectKind};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_date, parse_etag, parse_id, request_id};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::case_service_server::CaseService;

use super::{blocking, get_kind, named, reason, update, Api, Lifecycle};

const CASE: &[ObjectKind] = &[ObjectKind::Case];
const CONTAINERS: &[ObjectKind] = &[ObjectKind::File, ObjectKind::Case];

fn case_of(tenant: &str, o: Object) -> Result<Response<pb::Case>, Status> {
    match o {
        Object::Case(c) => Ok(Response::new(convert::case(tenant, &c))),
        _ => Err(ApiError::Internal("expected a case".into()).into()),
    }
}

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
        let o = names::object_of("name", &name, CASE)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::Read)?;
        let c = blocking(move || t.case(o.id).map_err(named(&name))).await?;
        Ok(Response::new(convert::case(&o.tenant, &c)))
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let parent = names::object_of("parent", &r.parent, CONTAINERS)?;
        let t = self.tenant(&caller, &parent.tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListCases", &[&r.parent]);
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let tenant = parent.tenant.clone();
        let parent_name = r.parent;
        let (cases, next) = blocking(move || {
            get_kind(&t, parent.id, parent.kind, &parent_name)?;
            let p = t.list_children_of_kind(parent.id, Some(ObjectKind::Case), &page)?;
            t.log_listed(&p.items)?;
            let cases: Vec<_> = p
                .items
                .into_iter()
                .filter_map(|o| match o {
                    Object::Case(c) => Some(c),
                    _ => None,
                })
                .collect();
            Ok((cases, p.next_page_token))
        })
        .await?;
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(|c| convert::case(&tenant, c)).collect(),
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }

    async fn update_case(
        &self,
        req: Request<pb::UpdateCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let c = r.case.unwrap_or_default();
        let name = c.name.clone();
        let o = names::object_of("case.name", &name, CASE)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::FileDocuments)?;
        let patch = convert::case_patch(&c, r.update_mask.as_ref())?;
        let etag = parse_etag("etag", &r.etag)?;
        let actor = caller.actor().to_owned();
        let obj = blocking(move || {
            update(
                &t,
                &actor,
                (o.id, ObjectKind::Case, &name),
                etag,
                patch,
                reason(r.reason),
            )
        })
        .await?;
        case_of(&o.tenant, obj)
    }

    async fn close_case(
        &self,
        req: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let date = parse_date("close_date", r.close_date.as_ref())?;
        let step = Lifecycle::Close(date);
        let (tenant, obj) = self
            .close_or_reopen(
                &caller,
                r.name,
                ObjectKind::Case,
                Operation::FileDocuments,
                &r.etag,
                step,
            )
            .await?;
        case_of(&tenant, obj)
    }

    async fn reopen_case(
        &self,
        req: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let step = Lifecycle::Reopen(reason(r.reason));
        let (tenant, obj) = self
            .close_or_reopen(
                &caller,
                r.name,
                ObjectKind::Case,
                Operation::FileDocuments,
                &r.etag,
                step,
            )
            .await?;
        case_of(&tenant, obj)
    }
}
