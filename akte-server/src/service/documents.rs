//! DocumentService: documents, versions, streaming upload and download.

use std::io::Read;

use akte_core::backend::content::ContentError;
use akte_core::records::{
    validate, Confidentiality, Document, NewDocument, NewRendition, NewVersion, ObjectKind,
    RecordsError, TenantRecords,
};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::{self, parse_date, parse_id, request_id};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::document_service_server::DocumentService;
use crate::range::Range;
use crate::upload::{
    receive_content, receive_small, ChunkSource, MAX_INLINE_CONTENT, SMALL_UPLOAD,
    STREAMED_UPLOAD_MEMORY,
};

use super::kept::{get_as, Kept};
use super::{blocking, get_kind, named, Api};

const DOC: &[ObjectKind] = &[ObjectKind::Document];
pub(super) const CONTAINERS: &[ObjectKind] =
    &[ObjectKind::File, ObjectKind::Case, ObjectKind::Document];
/// Size of download chunks.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// Refuses uploads for a document in a closed file or case before any byte is stored
/// (the records model checks again when the version is added).
fn ensure_open(t: &TenantRecords, doc: &Document) -> Result<(), ApiError> {
    Ok(t.check_writable(doc.id)?)
}

/// What AddVersion checks before it stores any byte: the document exists and is writable,
/// and the staged renditions it names are stored with the sizes given.
pub(super) fn check_version_target(
    t: &TenantRecords,
    id: Uuid,
    name: &str,
    staged: &[NewRendition],
) -> Result<(), ApiError> {
    let doc = get_as::<Document>(t, id, name)?;
    ensure_open(t, &doc)?;
    for s in staged {
        let info = t.tenant().content().stat(&s.sha256)?;
        if info.size != s.size {
            return Err(ApiError::SizeMismatch {
                expected: s.size,
                actual: info.size,
                at_least: false,
            });
        }
    }
    Ok(())
}

pub(super) fn rendition_spec(
    field: &str,
    u: &pb::RenditionUpload,
) -> Result<NewRendition, ApiError> {
    let prefixed = |e: RecordsError| match e {
        RecordsError::Invalid { field: f, reason } => {
            ApiError::field(format!("{field}.{f}"), reason)
        }
        other => other.into(),
    };
    validate::file_name(&u.file_name).map_err(prefixed)?;
    validate::media_type(&u.media_type).map_err(prefixed)?;
    Ok(NewRendition {
        file_name: u.file_name.clone(),
        media_type: u.media_type.clone(),
        sha256: convert::parse_digest(&format!("{field}.sha256"), &u.sha256)?,
        size: u.size,
    })
}

pub(super) fn stream_error(s: Status) -> ApiError {
    // The admission layer and the codec answer with akte's details already (a malformed
    // or late message): those go to the client as they are.
    if crate::error::error_info(&s).is_some() {
        return ApiError::Relayed(s);
    }
    ApiError::Stream {
        code: s.code(),
        message: s.message().to_owned(),
    }
}

/// The chunks of an AddVersion stream after its header.
struct VersionChunks<'a>(&'a mut Streaming<pb::AddVersionRequest>);

impl ChunkSource for VersionChunks<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        use pb::add_version_request::Message;
        match self.0.message().await {
            Ok(None) => Ok(None),
            Ok(Some(pb::AddVersionRequest {
                message: Some(Message::Chunk(b)),
            })) => Ok(Some(b)),
            Ok(Some(_)) => Err(ApiError::UploadProtocol(
                "after the header only chunks may follow".into(),
            )),
            Err(s) => Err(stream_error(s)),
        }
    }
}

/// The chunks of an UploadRendition stream after its header.
struct StagedChunks<'a>(&'a mut Streaming<pb::UploadRenditionRequest>);

impl ChunkSource for StagedChunks<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        use pb::upload_rendition_request::Message;
        match self.0.message().await {
            Ok(None) => Ok(None),
            Ok(Some(pb::UploadRenditionRequest {
                message: Some(Message::Chunk(b)),
            })) => Ok(Some(b)),
            Ok(Some(_)) => Err(ApiError::UploadProtocol(
                "after the header only chunks may follow".into(),
            )),
            Err(s) => Err(stream_error(s)),
        }
    }
}

pub(super) async fn first_message<M>(
    stream: &mut Streaming<M>,
    idle: std::time::Duration,
) -> Result<M, ApiError> {
    match tokio::time::timeout(idle, stream.message()).await {
        Err(_) => Err(ApiError::UploadIdle(idle.as_secs())),
        Ok(Err(s)) => Err(stream_error(s)),
        Ok(Ok(None)) => Err(ApiError::UploadProtocol(
            "the stream ended before its header".into(),
        )),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

/// Reads until `buf` is full or the reader ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn download_error(e: std::io::Error) -> ApiError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ContentError>())
    {
        Some(ContentError::Corrupt { digest, reason, .. }) => {
            tracing::error!(%digest, %reason, "stored content is corrupt; download stopped");
            ApiError::ContentCorrupt(format!("content {digest}: {reason}"))
        }
        _ => ApiError::Internal(format!("reading content: {e}")),
    }
}

/// The document a create request describes (without its version).
pub(super) fn new_document(
    r: &pb::CreateDocumentRequest,
    parent: Uuid,
) -> Result<NewDocument, ApiError> {
    let d = r.document.clone().unwrap_or_default();
    Ok(NewDocument {
        id: parse_id("document_id", &r.document_id)?,
        parent,
        subject: d.subject,
        letter_date: parse_date("document.letter_date", d.letter_date.as_ref())?,
        received_on: parse_date("document.received_on", d.received_on.as_ref())?,
        sent_on: parse_date("document.sent_on", d.sent_on.as_ref())?,
        sender: d.sender,
        recipients: d.recipients,
        clerk: d.clerk,
        external_reference: d.external_reference,
        confidentiality: convert::parse_confidentiality(
            "document.confidentiality",
            d.confidentiality,
        )?
        .unwrap_or(Confidentiality::Open),
        document_type: d.document_type,
        custom_fields: convert::parse_field_values("document.custom_fields", &d.custom_fields)?,
    })
}

/// A first version whose one rendition's bytes came inline in a CreateDocumentRequest.
#[derive(Debug)]
pub(super) struct InlineVersion {
    file_name: String,
    media_type: String,
    comment: String,
    bytes: Bytes,
    sha256: Option<akte_core::Digest>,
}

impl InlineVersion {
    /// Bytes it holds in memory.
    pub(super) fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Takes the inline first version out of a create request, if it asks for one
/// (`content_file_name` set), checking what needs no store: the 4 MiB bound, file name,
/// media type, comment and the declared digest's form. `prefix` goes before the field
/// names in errors (`document.` inside a CreateDocuments stream).
pub(super) fn inline_version(
    r: &mut pb::CreateDocumentRequest,
    prefix: &str,
) -> Result<Option<InlineVersion>, ApiError> {
    let field = |f: &str| format!("{prefix}{f}");
    if r.content_file_name.is_empty() {
        let stray = [
            ("content", !r.content.is_empty()),
            ("content_media_type", !r.content_media_type.is_empty()),
            ("version_comment", !r.version_comment.is_empty()),
            ("content_sha256", !r.content_sha256.is_empty()),
        ];
        if let Some((f, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(ApiError::field(
                field(f),
                "belongs to a first version, which needs content_file_name",
            ));
        }
        return Ok(None);
    }
    if r.content.len() > MAX_INLINE_CONTENT {
        return Err(ApiError::field(
            field("content"),
            format!(
                "{} bytes; at most {MAX_INLINE_CONTENT} bytes (4 MiB) inline: send larger \
                 content with CreateDocuments (chunked upload) or AddVersion",
                r.content.len()
            ),
        ));
    }
    let named = |f: &'static str| {
        move |e: RecordsError| match e {
            RecordsError::Invalid { reason, .. } => ApiError::field(format!("{prefix}{f}"), reason),
            other => other.into(),
        }
    };
    validate::file_name(&r.content_file_name).map_err(named("content_file_name"))?;
    validate::media_type(&r.content_media_type).map_err(named("content_media_type"))?;
    validate::text("version_comment", &r.version_comment, validate::MAX_TEXT)
        .map_err(named("version_comment"))?;
    let sha256 = if r.content_sha256.is_empty() {
        None
    } else {
        Some(convert::parse_digest(
            &field("content_sha256"),
            &r.content_sha256,
        )?)
    };
    Ok(Some(InlineVersion {
        file_name: std::mem::take(&mut r.content_file_name),
        media_type: std::mem::take(&mut r.content_media_type),
        comment: std::mem::take(&mut r.version_comment),
        bytes: std::mem::take(&mut r.content),
        sha256,
    }))
}

/// Stores an inline first version's bytes and records the document with it as one entry
/// (blocking). The parent's writability is checked before any byte is stored; bytes
/// stored for a request refused afterwards belong to no record (and, like staged
/// renditions never named, to no one).
pub(super) fn create_with_inline(
    t: &TenantRecords,
    actor: &str,
    new: NewDocument,
    v: InlineVersion,
    rid: Option<&str>,
) -> Result<Document, ApiError> {
    t.check_writable(new.parent)?;
    let put =
        t.tenant()
            .content()
            .put_bytes_for_entry(&v.bytes, v.sha256, Some(v.bytes.len() as u64))?;
    let version = NewVersion {
        comment: v.comment,
        renditions: vec![NewRendition {
            file_name: v.file_name,
            media_type: v.media_type,
            sha256: put.digest,
            size: put.size,
        }],
    };
    let (d, _) = t.create_document_with_version(actor, new, version, rid)?;
    Ok(d)
}

#[tonic::async_trait]
impl DocumentService for Api {
    async fn create_document(
        &self,
        req: Request<pb::CreateDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&req)?;
        let mut r = req.into_inner();
        let parent = names::object_of("parent", &r.parent, CONTAINERS)?;
        let t = self.tenant(&caller, &parent.tenant, &r.parent, Operation::FileDocuments)?;
        let first = inline_version(&mut r, "")?;
        let new = new_document(&r, parent.id)?;
        let actor = caller.actor().to_owned();
        let tenant = parent.tenant.clone();
        let parent_name = r.parent.clone();
        let msg = blocking(move || {
            get_kind(&t, parent.id, parent.kind, &parent_name)?;
            let rid = request_id(&r.request_id);
            let d = match first {
                None => t.create_document(&actor, new, rid)?,
                Some(v) => create_with_inline(&t, &actor, new, v, rid)?,
            };
            Ok(Document::message(&t, &tenant, &d))
        })
        .await?;
        Ok(Response::new(msg))
    }

    async fn create_documents(
        &self,
        req: Request<Streaming<pb::CreateDocumentsRequest>>,
    ) -> Result<Response<pb::CreateDocumentsResponse>, Status> {
        Ok(Response::new(self.create_document_stream(req).await?))
    }

    async fn get_document(
        &self,
        req: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        Ok(Response::new(
            self.get_kept::<Document>(&caller, name).await?,
        ))
    }

    async fn list_documents(
        &self,
        req: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let page = self
            .list_children::<Document>(
                &caller,
                r.parent,
                CONTAINERS,
                "ListDocuments",
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListDocumentsResponse {
            documents: page.items,
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_document(
        &self,
        req: Request<pb::UpdateDocumentRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let d = r.document.unwrap_or_default();
        let patch = |_: &str| convert::document_patch(&d, r.update_mask.as_ref());
        let doc = self
            .update_kept::<Document, _>(&caller, d.name.clone(), patch, &r.etag, r.reason)
            .await?;
        Ok(Response::new(doc))
    }

    async fn add_version(
        &self,
        req: Request<Streaming<pb::AddVersionRequest>>,
    ) -> Result<Response<pb::Version>, Status> {
        let caller = self.caller(&req)?;
        let idle = self.state.upload_idle;
        let mut stream = req.into_inner();
        let header = match first_message(&mut stream, idle).await? {
            pb::AddVersionRequest {
                message: Some(pb::add_version_request::Message::Header(h)),
            } => h,
            _ => {
                return Err(
                    ApiError::UploadProtocol("the first message must be the header".into()).into(),
                )
            }
        };
        let o = names::object_of("header.parent", &header.parent, DOC)?;
        let t = self.tenant(&caller, &o.tenant, &header.parent, Operation::FileDocuments)?;
        let upload = header
            .upload
            .as_ref()
            .map(|u| rendition_spec("header.upload", u))
            .transpose()?;
        let staged = header
            .staged_renditions
            .iter()
            .enumerate()
            .map(|(i, u)| rendition_spec(&format!("header.staged_renditions[{i}]"), u))
            .collect::<Result<Vec<_>, _>>()?;
        if upload.is_none() && staged.is_empty() {
            return Err(ApiError::field(
                "header.upload",
                "a version needs a rendition: stream one (upload) or name staged ones",
            )
            .into());
        }
        let count = staged.len() + usize::from(upload.is_some());
        if count > validate::MAX_RENDITIONS {
            return Err(ApiError::field(
                "header.staged_renditions",
                format!("{count} renditions; at most {}", validate::MAX_RENDITIONS),
            )
            .into());
        }
        let actor = caller.actor().to_owned();
        let rid = header.request_id;
        let (comment, name) = (header.comment, header.parent);
        // A small upload (the common case: letters, forms, XML) is received into memory
        // first, then checked, stored and recorded in one blocking call: one hand-off to a
        // worker thread instead of three. Memory stays bounded: below SMALL_UPLOAD (1 MiB)
        // bytes per request, plus their compressed form, and requests are limited.
        if let Some(u) = upload.as_ref().filter(|u| u.size < SMALL_UPLOAD) {
            // Held until the bytes are stored.
            let _memory = self.state.upload_memory.reserve(u.size, idle).await?;
            let bytes = receive_small(&mut VersionChunks(&mut stream), u.size, idle).await?;
            let spec = u.clone();
            let version = blocking(move || {
                check_version_target(&t, o.id, &name, &staged)?;
                t.tenant().content().put_bytes_for_entry(
                    &bytes,
                    Some(spec.sha256),
                    Some(spec.size),
                )?;
                let new = NewVersion {
                    comment,
                    renditions: std::iter::once(spec).chain(staged).collect(),
                };
                Ok(t.add_version(&actor, o.id, new, request_id(&rid))?)
            })
            .await?;
            tracing::info!(document = %o.id, version = version.number, principal = %caller.principal.name, "version added");
            return Ok(Response::new(convert::version(&o.tenant, &version)));
        }
        // Check before any byte is stored: the document exists, is writable, and staged
        // content is there.
        let (tc, name_c, staged_c) = (t.clone(), name.clone(), staged.clone());
        blocking(move || check_version_target(&tc, o.id, &name_c, &staged_c)).await?;
        match &upload {
            Some(u) => {
                let _memory = self
                    .state
                    .upload_memory
                    .reserve(STREAMED_UPLOAD_MEMORY, idle)
                    .await?;
                receive_content(
                    &mut VersionChunks(&mut stream),
                    t.clone(),
                    u.sha256,
                    u.size,
                    idle,
                )
                .await?;
            }
            None => {
                if VersionChunks(&mut stream).next_chunk().await?.is_some() {
                    return Err(ApiError::UploadProtocol(
                        "chunks sent but the header declares no streamed rendition".into(),
                    )
                    .into());
                }
            }
        }
        let new = NewVersion {
            comment,
            renditions: upload.into_iter().chain(staged).collect(),
        };
        let version =
            blocking(move || Ok(t.add_version(&actor, o.id, new, request_id(&rid))?)).await?;
        tracing::info!(document = %o.id, version = version.number, principal = %caller.principal.name, "version added");
        Ok(Response::new(convert::version(&o.tenant, &version)))
    }

    async fn upload_rendition(
        &self,
        req: Request<Streaming<pb::UploadRenditionRequest>>,
    ) -> Result<Response<pb::UploadRenditionResponse>, Status> {
        let caller = self.caller(&req)?;
        let idle = self.state.upload_idle;
        let mut stream = req.into_inner();
        let header = match first_message(&mut stream, idle).await? {
            pb::UploadRenditionRequest {
                message: Some(pb::upload_rendition_request::Message::Header(h)),
            } => h,
            _ => {
                return Err(
                    ApiError::UploadProtocol("the first message must be the header".into()).into(),
                )
            }
        };
        let o = names::object_of("header.parent", &header.parent, DOC)?;
        let t = self.tenant(&caller, &o.tenant, &header.parent, Operation::FileDocuments)?;
        let sha = convert::parse_digest("header.sha256", &header.sha256)?;
        let (tc, name) = (t.clone(), header.parent.clone());
        blocking(move || ensure_open(&tc, &get_as::<Document>(&tc, o.id, &name)?)).await?;
        let _memory = self
            .state
            .upload_memory
            .reserve(STREAMED_UPLOAD_MEMORY.min(header.size), idle)
            .await?;
        let put =
            receive_content(&mut StagedChunks(&mut stream), t, sha, header.size, idle).await?;
        Ok(Response::new(pb::UploadRenditionResponse {
            sha256: convert::digest_bytes(&put.digest),
            size: put.size,
        }))
    }

    async fn get_version(
        &self,
        req: Request<pb::GetVersionRequest>,
    ) -> Result<Response<pb::Version>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let v = names::version("name", &name, false)?;
        let t = self.tenant(&caller, &v.tenant, &name, Operation::Read)?;
        let (doc, number) = (v.document, v.number);
        let version = blocking(move || t.version(doc, number).map_err(named(&name))).await?;
        Ok(Response::new(convert::version(&v.tenant, &version)))
    }

    async fn list_versions(
        &self,
        req: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let o = names::object_of("parent", &r.parent, DOC)?;
        let t = self.tenant(&caller, &o.tenant, &r.parent, Operation::Read)?;
        let scope = Scope::new("ListVersions", &[&r.parent]);
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let parent = r.parent;
        let p = blocking(move || t.versions_page(o.id, &page).map_err(named(&parent))).await?;
        Ok(Response::new(pb::ListVersionsResponse {
            versions: p
                .items
                .iter()
                .map(|v| convert::version(&o.tenant, v))
                .collect(),
            next_page_token: self.seal_token(&scope, p.next_page_token.as_deref()),
        }))
    }

    type DownloadRenditionStream = ReceiverStream<Result<pb::DownloadRenditionResponse, Status>>;

    async fn download_rendition(
        &self,
        req: Request<pb::DownloadRenditionRequest>,
    ) -> Result<Response<Self::DownloadRenditionStream>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let (name, offset, length) = (r.name, r.offset, r.length);
        let v = names::version("name", &name, true)?;
        let t = self.tenant(&caller, &v.tenant, &name, Operation::Read)?;
        let (doc, number, wanted) = (v.document, v.number, v.rendition);
        let (rendition, reader) = blocking(move || {
            let version = t.version(doc, number).map_err(named(&name))?;
            let r = match wanted {
                Some(id) => version.renditions.iter().find(|r| r.id == id),
                None => version.renditions.first(),
            }
            .cloned()
            .ok_or(ApiError::NotFound { resource: name })?;
            if offset > r.size {
                return Err(ApiError::InvalidRange {
                    offset,
                    size: r.size,
                });
            }
            let reader = t.open_rendition(&r)?;
            Ok((r, reader))
        })
        .await?;
        let mut range = Range::new(offset, length);
        let (tx, rx) = mpsc::channel(4);
        let first = pb::DownloadRenditionResponse {
            message: Some(pb::download_rendition_response::Message::Rendition(
                convert::rendition(&v.tenant, doc, number, &rendition),
            )),
        };
        if tx.send(Ok(first)).await.is_err() {
            return Err(ApiError::Internal("download channel closed".into()).into());
        }
        // Each chunk is read on a blocking thread, which is free again while the client
        // takes the chunk: a client that reads slowly holds no thread.
        tokio::spawn(async move {
            let mut reader = reader;
            let mut buf = vec![0u8; DOWNLOAD_CHUNK];
            loop {
                let read = tokio::task::spawn_blocking(move || {
                    let n = read_full(&mut reader, &mut buf);
                    (reader, buf, n)
                })
                .await;
                let n;
                (reader, buf, n) = match read {
                    Ok(r) => r,
                    Err(e) => {
                        let e = ApiError::Internal(format!("download worker failed: {e}"));
                        let _ = tx.send(Err(e.to_status())).await;
                        return;
                    }
                };
                let msg = match n {
                    Ok(0) => return,
                    // Bytes outside the range are read all the same: the reader checks the
                    // digest of the whole rendition at its end, and a damaged rendition must
                    // end the stream with DATA_LOSS whatever range was asked for.
                    Ok(n) => match range.take(&buf[..n]) {
                        Some(part) => Ok(pb::DownloadRenditionResponse {
                            message: Some(pb::download_rendition_response::Message::Chunk(
                                Bytes::copy_from_slice(part),
                            )),
                        }),
                        None => continue,
                    },
                    Err(e) => Err(download_error(e).to_status()),
                };
                let failed = msg.is_err();
                // A closed channel means the client went away: stop reading.
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn create_upload_session(
        &self,
        req: Request<pb::CreateUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        self.create_upload_session_impl(req).await
    }

    async fn get_upload_session(
        &self,
        req: Request<pb::GetUploadSessionRequest>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        self.get_upload_session_impl(req).await
    }

    async fn write_upload_session(
        &self,
        req: Request<Streaming<pb::WriteUploadSessionRequest>>,
    ) -> Result<Response<pb::UploadSession>, Status> {
        self.write_upload_session_impl(req).await
    }

    async fn import_upload_session(
        &self,
        req: Request<pb::ImportUploadSessionRequest>,
    ) -> Result<Response<crate::pb::google::longrunning::Operation>, Status> {
        self.import_upload_session_impl(req).await
    }

    async fn delete_upload_session(
        &self,
        req: Request<pb::DeleteUploadSessionRequest>,
    ) -> Result<Response<pb::DeleteUploadSessionResponse>, Status> {
        self.delete_upload_session_impl(req).await
    }
}
