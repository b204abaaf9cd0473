//! FileService: files and sub-files.

use akte_core::records::{Confidentiality, File, NewFile, Object, ObjectKind};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_date, parse_id, request_id};
use crate::error::ApiError;
use crate::names;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::file_service_server::FileService;

use super::kept::{children, Lifecycle};
use super::{blocking, named, reason, Api};

/// What a file is filed in: a plan unit, or a file (a sub-file).
const CONTAINERS: &[ObjectKind] = &[ObjectKind::PlanUnit, ObjectKind::File];

#[tonic::async_trait]
impl FileService for Api {
    async fn create_file(
        &self,
        req: Request<pb::CreateFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let parent = names::object_of("parent", &r.parent, CONTAINERS)?;
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
            custom_fields: convert::parse_field_values("file.custom_fields", &f.custom_fields)?,
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
        Ok(Response::new(self.get_kept::<File>(&caller, name).await?))
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
        let parent = names::object_of("parent", &r.parent, CONTAINERS)?;
        let page = self
            .list_kept(
                &caller,
                parent.tenant.clone(),
                r.parent,
                "ListFiles",
                r.page_size,
                &r.page_token,
                move |t, parent_name, page| {
                    if parent.kind == ObjectKind::File {
                        return children::<File>(t, &parent, parent_name, page);
                    }
                    // A plan unit's files (sub-files included) have an index of their own.
                    let p = t.list_files(parent.id, page).map_err(named(parent_name))?;
                    let listed: Vec<Object> = p.items.iter().cloned().map(Object::File).collect();
                    t.log_listed(&listed)?;
                    Ok(p)
                },
            )
            .await?;
        Ok(Response::new(pb::ListFilesResponse {
            files: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_file(
        &self,
        req: Request<pb::UpdateFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let f = r.file.unwrap_or_default();
        let patch = |_: &str| convert::file_patch(&f, r.update_mask.as_ref());
        let file = self
            .update_kept::<File, _>(&caller, f.name.clone(), patch, &r.etag, r.reason)
            .await?;
        Ok(Response::new(file))
    }

    async fn close_file(
        &self,
        req: Request<pb::CloseFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let date = parse_date("close_date", r.close_date.as_ref())?;
        let step = Lifecycle::Close(date);
        let file = self
            .close_or_reopen::<File>(&caller, r.name, &r.etag, step)
            .await?;
        Ok(Response::new(file))
    }

    async fn reopen_file(
        &self,
        req: Request<pb::ReopenFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let step = Lifecycle::Reopen(reason(r.reason));
        let file = self
            .close_or_reopen::<File>(&caller, r.name, &r.etag, step)
            .await?;
        Ok(Response::new(file))
    }
}
