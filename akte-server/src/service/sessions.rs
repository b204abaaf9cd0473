//! Resumable upload sessions of DocumentService: create, get, write from an offset, import
//! as a version (a long-running operation), delete. The storage side is
//! [`crate::uploads`].

use std::io::Read;
use std::sync::Arc;

use akte_core::records::{NewRendition, NewVersion, ObjectKind};
use chrono::Utc;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::{self, request_id, timestamp};
use crate::error::ApiError;
use crate::names;
use crate::operations::{pack, Progress, Verb};
use crate::pb::akte::v1 as pb;
use crate::pb::google::longrunning as lro;
use crate::upload::MAX_CHUNK;
use crate::uploads::{self, session_name, Session, Uploads};

use super::documents::{check_version_target, rendition_spec};
use super::{blocking, Api, Caller};

/// A parsed session name.
struct SessionName {
    tenant: String,
    document: Uuid,
    id: Uuid,
}

fn parse_name(field: &str, name: &str) -> Result<SessionName, ApiError> {
    let bad = || ApiError::InvalidName {
        field: field.to_owned(),
        reason: format!(
            "{:?} is not tenants/{{tenant}}/documents/{{id}}/uploadSessions/{{id}}",
            name.chars().take(200).collect::<String>()
        ),
    };
    let (doc, id) = name.rsplit_once("/uploadSessions/").ok_or_else(bad)?;
    let d = names::object_of(field, doc, &[ObjectKind::Document])?;
    // The nil UUID is a UUID (no session has it: NOT_FOUND later).
    let id = Uuid::parse_str(id).ok().ok_or_else(bad)?;
    Ok(SessionName {
        tenant: d.tenant,
        document: d.id,
        id,
    })
}

fn session_msg(tenant: &str, s: &Session, persisted: u64) -> Result<pb::UploadSession, ApiError> {
    let sha = akte_core::Digest::from_hex(&s.sha256)
        .map_err(|e| ApiError::Internal(format!("stored upload session {}: {e}", s.id)))?;
    Ok(pb::UploadSession {
        name: session_name(tenant, s.document, s.id),
        rendition: Some(pb::RenditionUpload {
            file_name: s.file_name.clone(),
            media_type: s.media_type.clone(),
            sha256: convert::digest_bytes(&sha),
            size: s.size,
        }),
        persisted_size: persisted,
        create_time: Some(timestamp(&s.create_time)),
        expire_time: Some(timestamp(&s.expire_time)),
        creator: s.creator.clone(),
    })
}

/// A reader over the session's bytes that reports progress and stops when the operation
/// is cancelled (the put then fails and stores nothing).
struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.progress.cancelled() {
            return Err(std::io::Error::other("the operation was cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

impl Api {
    fn uploads(&self) -> &Arc<Uploads> {
        &self.state().uploads
    }

    pub(super) async fn create_upload_session_impl(
        &self,
        req: Request<pb::CreateUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let d = names::object_of("parent", &r.parent, &[ObjectKind::Document])?;
        let t = self.tenant(&caller, &d.tenant, &r.parent, Operation::FileDocuments)?;
        let spec = r
            .upload_session
            .as_ref()
            .and_then(|s| s.rendition.as_ref())
            .ok_or_else(|| ApiError::field("upload_session.rendition", "is required"))?;
        let spec = rendition_spec("upload_session.rendition", spec)?;
        let now = Utc::now();
        let session = Session {
            id: Uuid::new_v4(),
            document: d.id,
            file_name: spec.file_name,
            media_type: spec.media_type,
            sha256: spec.sha256.to_hex(),
            size: spec.size,
            create_time: now,
            expire_time: now + uploads::KEEP,
            creator: caller.actor().to_owned(),
        };
        let uploads = self.uploads().clone();
        let (tenant, name) = (d.tenant.clone(), r.parent.clone());
        let stored = session.clone();
        blocking(move || {
            check_version_target(&t, d.id, &name, &[])?;
            uploads.create(&tenant, &stored)
        })
        .await?;
        tracing::info!(tenant = %d.tenant, document = %d.id, session = %session.id, size = session.size, principal = %caller.actor(), "upload session created");
        Ok(Response::new(session_msg(&d.tenant, &session, 0)?))
    }

    /// The session named, after the caller's access to its document is checked.
    fn session_of(
        &self,
        caller: &Caller,
        field: &str,
        name: &str,
    ) -> Result<(SessionName, Session, u64), ApiError> {
        let n = parse_name(field, name)?;
        let t = self.tenant(caller, &n.tenant, name, Operation::FileDocuments)?;
        // A session of a document the caller may not see (or change) is not found: its
        // name must not tell that the document exists.
        t.admit_id(n.document).map_err(|e| match e {
            akte_core::records::RecordsError::NotFound { .. }
            | akte_core::records::RecordsError::AccessDenied { .. } => ApiError::NotFound {
                resource: name.to_owned(),
            },
            other => other.into(),
        })?;
        let (s, persisted) = self.uploads().get(&n.tenant, n.document, n.id, name)?;
        Ok((n, s, persisted))
    }

    pub(super) async fn get_upload_session_impl(
        &self,
        req: Request<pb::GetUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (n, s, persisted) = self.session_of(&caller, "name", &name)?;
        Ok(Response::new(session_msg(&n.tenant, &s, persisted)?))
    }

    pub(super) async fn write_upload_session_impl(
        &self,
        req: Request<Streaming<pb::WriteUploadSessionRequest>>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        use pb::write_upload_session_request::Message;
        let caller = self.caller(&req)?;
        let idle = self.state().upload_idle;
        let mut stream = req.into_inner();
        let header = match super::documents::first_message(&mut stream, idle).await? {
            pb::WriteUploadSessionRequest {
                message: Some(Message::Header(h)),
            } => h,
            _ => {
                return Err(
                    ApiError::UploadProtocol("the first message must be the header".into()).into(),
                )
            }
        };
        let (n, s, _) = self.session_of(&caller, "header.name", &header.name)?;
        let uploads = self.uploads().clone();
        // Takes the session over: from now on an older write still open stops at its next
        // chunk. Every step that touches the files runs (and locks) on the blocking pool,
        // so that a call dropped half-way cannot race the next one.
        let mut writer = {
            let (u, t, name) = (uploads.clone(), n.tenant.clone(), header.name.clone());
            let offset = header.offset;
            blocking(move || u.begin_write(&t, n.document, n.id, &name, offset)).await?
        };
        let outcome: Result<(), ApiError> = loop {
            let next = match tokio::time::timeout(idle, stream.message()).await {
                Err(_) => break Err(ApiError::UploadIdle(idle.as_secs())),
                Ok(Err(s)) => break Err(super::documents::stream_error(s)),
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(m))) => m,
            };
            let chunk = match next.message {
                Some(Message::Chunk(c)) => c,
                _ => {
                    break Err(ApiError::UploadProtocol(
                        "after the header only chunks may follow".into(),
                    ))
                }
            };
            if chunk.is_empty() || chunk.len() > MAX_CHUNK {
                break Err(ApiError::UploadProtocol(format!(
                    "a chunk of {} bytes; chunks are 1 byte to {MAX_CHUNK} bytes",
                    chunk.len()
                )));
            }
            let u = uploads.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let r = u.append(&mut writer, &chunk);
                (writer, r)
            })
            .await;
            let appended;
            (writer, appended) = match joined {
                Ok(x) => x,
                Err(e) => return Err(ApiError::Internal(format!("worker task failed: {e}")).into()),
            };
            if let Err(e) = appended {
                break Err(e);
            }
        };
        // Whatever arrived is kept, also when the stream broke off: flushed and recorded as
        // on disk, so that the client can resume after it.
        let u = uploads.clone();
        let persisted = blocking(move || u.end_write(&writer)).await?;
        outcome?;
        tracing::debug!(tenant = %n.tenant, session = %n.id, persisted, "upload session written");
        Ok(Response::new(session_msg(&n.tenant, &s, persisted)?))
    }

    pub(super) async fn import_upload_session_impl(
        &self,
        req: Request<pb::ImportUploadSessionRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (n, _, _) = self.session_of(&caller, "name", &r.name)?;
        let t = self.tenant(&caller, &n.tenant, &r.name, Operation::FileDocuments)?;
        let staged = r
            .staged_renditions
            .iter()
            .enumerate()
            .map(|(i, u)| rendition_spec(&format!("staged_renditions[{i}]"), u))
            .collect::<Result<Vec<_>, _>>()?;
        let max = akte_core::records::validate::MAX_RENDITIONS;
        if staged.len() + 1 > max {
            return Err(ApiError::field(
                "staged_renditions",
                format!("{} renditions; at most {max}", staged.len() + 1),
            )
            .into());
        }
        let uploads = self.uploads().clone();
        let s = {
            let (tc, staged_c, u, name) =
                (t.clone(), staged.clone(), uploads.clone(), r.name.clone());
            let doc = names::object_name(&n.tenant, ObjectKind::Document, n.document);
            blocking(move || {
                check_version_target(&tc, n.document, &doc, &staged_c)?;
                u.begin_import(tc.tenant().id(), n.document, n.id, &name)
            })
            .await?
        };
        let sha = akte_core::Digest::from_hex(&s.sha256)
            .map_err(|e| ApiError::Internal(format!("stored upload session {}: {e}", s.id)));
        let sha = match sha {
            Ok(d) => d,
            Err(e) => {
                uploads.end_import(&n.tenant, n.id, false);
                return Err(e.into());
            }
        };
        let spec = NewRendition {
            file_name: s.file_name,
            media_type: s.media_type,
            sha256: sha,
            size: s.size,
        };
        let actor = caller.actor().to_owned();
        let (tenant, document, id) = (n.tenant.clone(), n.document, n.id);
        let (rid, comment) = (r.request_id, r.comment);
        let u = uploads.clone();
        let started = self.state().operations.start(
            &n.tenant,
            Verb::Import,
            r.name.clone(),
            caller.actor(),
            move |progress| {
                let out = (|| {
                    progress.total(spec.size, "bytes");
                    progress.message("checking the SHA-256 of all bytes and storing them");
                    let mut reader = Counted {
                        inner: u.reader(&tenant, id, spec.size)?,
                        progress: progress.clone(),
                    };
                    let put = t.tenant().content().put(
                        &mut reader,
                        Some(spec.sha256),
                        Some(spec.size),
                    );
                    if progress.cancelled() {
                        return Err(ApiError::OperationCancelled);
                    }
                    put?;
                    progress.message("recording the version");
                    let new = NewVersion {
                        comment,
                        renditions: std::iter::once(spec).chain(staged).collect(),
                    };
                    let version = t.add_version(&actor, document, new, request_id(&rid))?;
                    tracing::info!(tenant = %tenant, document = %document, version = version.number, principal = %actor, "version imported from an upload session");
                    Ok(pack(
                        "akte.v1.Version",
                        &convert::version(&tenant, &version),
                    ))
                })();
                u.end_import(&tenant, id, out.is_ok());
                out
            },
        )
        .await;
        match started {
            Ok(op) => Ok(Response::new(op)),
            Err(e) => {
                uploads.end_import(&n.tenant, n.id, false);
                Err(e.into())
            }
        }
    }

    pub(super) async fn delete_upload_session_impl(
        &self,
        req: Request<pb::DeleteUploadSessionRequest>,
    ) -> Result<Response<pb::DeleteUploadSessionResponse>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (n, _, _) = self.session_of(&caller, "name", &name)?;
        let u = self.uploads().clone();
        blocking(move || u.delete(&n.tenant, n.document, n.id, &name)).await?;
        Ok(Response::new(pb::DeleteUploadSessionResponse {}))
    }
}
