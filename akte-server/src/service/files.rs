//! FileService: files and sub-files.

use akte_core::records::{Confidentiality, NewFile, Object, ObjectKind};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_date, parse_etag, parse_id, request_id};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::file_service_server::FileService;

use super::{blocking, get_kind, named, reason, update, Api, Lifecycle};

const FILE: &[ObjectKind] = &[ObjectKind::File];

fn file_of(tenant: &str, o: Object) -> Result<Response<pb::File>, Status> {
    match o {
        Object::File(f) => Ok(Response::new(convert::file(tenant, &f))),
        _ => Err(ApiError::Internal("expected a file".into()).into()),
    }
}

#[tonic::async_trait]
impl FileService for Api {
    async fn create_file(
        &self,
        req: Request<pb::CreateFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let parent = names::object_of(
            "parent",
            &r.parent,
            &[ObjectKind::PlanUnit, ObjectKind::File],
        )?;
        let t = self.tenant(&caller, &parent.tenant, &r.parent, Operation::KeepFiles)?;
        let f = r.file.unwrap_or_default();
        let new = NewFile {
            id: parse_id("file_id", &r.file_id)?,
            plan_unit: parent.id,
            parent_file: None,
            subject: f.subject,
            begin: parse_date("file.begin", f.begin.as_ref())?,
            end: parse_date("file.end", f.end.as_ref())?,
            confidentiality: convert::parse_confidentiality(
                "file.confidentiality",
                f.confidentiality,
            )?
            .unwrap_or(Confidentiality::Open),
            medium: convert::new_medium(f.medium)?,
            lead_unit: f.lead_unit,
            notes: f.notes,
        };
        let actor = caller.actor().to_owned();
        let parent_name = r.parent.clone();
        let file = blocking(move || {
            let mut new = new;
            let container = t.get(parent.id).map_err(named(&parent_name))?;
            match container {
                Object::File(p) if parent.kind == ObjectKind::File => {
                    new.plan_unit = p.plan_unit;
                    new.parent_file = Some(p.id);
                }
                Object::PlanUnit(_) if parent.kind == ObjectKind::PlanUnit => {}
                _ => {
                    return Err(ApiError::NotFound {
                        resource: parent_name,
                    })
                }
            }
            Ok(t.create_file(&actor, new, request_id(&r.request_id))?)
        })
        .await?;
        Ok(Response::new(convert::file(&parent.tenant, &file)))
    }

    async fn get_file(
        &self,
        req: Request<pb::GetFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let o = names::object_of("name", &name, FILE)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::Read)?;
        let f = blocking(move || t.file(o.id).map_err(named(&name))).await?;
        Ok(Response::new(convert::file(&o.tenant, &f)))
    }

    async fn lookup_file(
        &self,
        req: Request<pb::LookupFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        if r.reference.is_empty() {
            return Err(ApiError::field("reference", "is required").into());
        }
        let f = blocking(move || Ok(t.file_by_reference(&r.reference)?)).await?;
        Ok(Response::new(convert::file(&tenant, &f)))
    }

    async fn list_files(
        &self,
        req: Request<pb::ListFilesRequest>,
    ) -> Result<Response<pb::ListFilesResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let parent = names::object_of(
            "parent",
            &r.parent,
            &[ObjectKind::PlanUnit, ObjectKind::File],
        )?;
        let t = self.tenant(&caller, &parent.tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListFiles", &[&r.parent]);
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let tenant = parent.tenant.clone();
        let parent_name = r.parent;
        let (files, next) = blocking(move || {
            if parent.kind == ObjectKind::PlanUnit {
                let p = t
                    .list_files(parent.id, &page)
                    .map_err(named(&parent_name))?;
                let listed: Vec<Object> = p.items.iter().cloned().map(Object::File).collect();
                t.log_listed(&listed)?;
                return Ok((p.items, p.next_page_token));
            }
            get_kind(&t, parent.id, ObjectKind::File, &parent_name)?;
            let p = t.list_children_of_kind(parent.id, Some(ObjectKind::File), &page)?;
            t.log_listed(&p.items)?;
            let files = p
                .items
                .into_iter()
                .filter_map(|o| match o {
                    Object::File(f) => Some(f),
                    _ => None,
                })
                .collect();
            Ok((files, p.next_page_token))
        })
        .await?;
        Ok(Response::new(pb::ListFilesResponse {
            files: files.iter().map(|f| convert::file(&tenant, f)).collect(),
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }

    async fn update_file(
        &self,
        req: Request<pb::UpdateFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let f = r.file.unwrap_or_default();
        let name = f.name.clone();
        let o = names::object_of("file.name", &name, FILE)?;
        let t = self.tenant(&caller, &o.tenant, &name, Operation::KeepFiles)?;
        let patch = convert::file_patch(&f, r.update_mask.as_ref())?;
        let etag = parse_etag("etag", &r.etag)?;
        let actor = caller.actor().to_owned();
        let obj = blocking(move || {
            update(
                &t,
                &actor,
                (o.id, ObjectKind::File, &name),
                etag,
                patch,
                reason(r.reason),
            )
        })
        .await?;
        file_of(&o.tenant, obj)
    }

    async fn close_file(
        &self,
        req: Request<pb::CloseFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let date = parse_date("close_date", r.close_date.as_ref())?;
        let step = Lifecycle::Close(date);
        let (tenant, obj) = self
            .close_or_reopen(
                &caller,
                r.name,
                ObjectKind::File,
                Operation::KeepFiles,
                &r.etag,
                step,
            )
            .await?;
        file_of(&tenant, obj)
    }

    async fn reopen_file(
        &self,
        req: Request<pb::ReopenFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let step = Lifecycle::Reopen(reason(r.reason));
        let (tenant, obj) = self
            .close_or_reopen(
                &caller,
                r.name,
                ObjectKind::File,
                Operation::KeepFiles,
                &r.etag,
                step,
            )
            .await?;
        file_of(&tenant, obj)
    }
}
