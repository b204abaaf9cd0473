//! CreateDocuments: many documents, each with its first version, over one client stream.
//!
//! Each document is recorded as its own journal entry as soon as its bytes are complete,
//! on a blocking worker, while the stream goes on with the next document: up to
//! [`IN_FLIGHT`] documents of one stream wait for the journal at once, so they share its
//! group flushes instead of paying one each. A document that is refused (bad metadata,
//! a digest mismatch, no right to file there) is reported at its index and its bytes are
//! read past; only a stream that breaks the message order ends early.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use akte_core::backend::ReadScope;
use akte_core::records::{NewRendition, NewVersion, ObjectKind, TenantRecords};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tonic::{Request, Streaming};

use crate::auth::Operation;
use crate::convert::request_id;
use crate::error::ApiError;
use crate::names;
use crate::pb::akte::v1 as pb;
use crate::upload::{
    receive_content, receive_small, ChunkSource, SMALL_UPLOAD, STREAMED_UPLOAD_MEMORY,
};

use super::documents::{
    create_with_inline, inline_version, new_document, rendition_spec, stream_error, CONTAINERS,
};
use super::{get_kind, Api, Caller};

/// Documents of one stream being recorded at once: enough for a stream's documents to
/// share the journal's flushes, few enough to bound what they hold (each small one its
/// bytes, reserved from the upload budget).
const IN_FLIGHT: usize = 32;

/// The outcome of one document, by its index in the stream.
type Pending<'a> = Pin<Box<dyn Future<Output = pb::CreateDocumentsResult> + Send + 'a>>;

/// Why a document was not recorded, and whether the stream can go on after it.
struct Refused {
    error: ApiError,
    broken: bool,
}

/// The chunks of the current document: exactly its declared size, no more.
struct ItemChunks<'a> {
    stream: &'a mut Streaming<pb::CreateDocumentsRequest>,
    remaining: u64,
    /// The message order is broken: nothing after this can be read as a document.
    broken: bool,
}

impl ItemChunks<'_> {
    fn protocol(&mut self, reason: &str) -> ApiError {
        self.broken = true;
        ApiError::UploadProtocol(reason.into())
    }

    /// Reads past the rest of a refused document's bytes.
    async fn skip_rest(&mut self, idle: std::time::Duration) -> Result<(), ApiError> {
        while self.remaining > 0 {
            match tokio::time::timeout(idle, self.next_chunk()).await {
                Err(_) => {
                    self.broken = true;
                    return Err(ApiError::UploadIdle(idle.as_secs()));
                }
                Ok(r) => {
                    r?;
                }
            }
        }
        Ok(())
    }
}

impl ChunkSource for ItemChunks<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        use pb::create_documents_request::Message;
        if self.remaining == 0 {
            return Ok(None);
        }
        match self.stream.message().await {
            Ok(Some(pb::CreateDocumentsRequest {
                message: Some(Message::Chunk(b)),
            })) => {
                if b.len() as u64 > self.remaining {
                    return Err(self.protocol("more bytes than the document's upload declares"));
                }
                self.remaining -= b.len() as u64;
                Ok(Some(b))
            }
            Ok(Some(_)) => Err(self.protocol(
                "the next document started before all declared bytes of this one arrived",
            )),
            Ok(None) => {
                Err(self.protocol("the stream ended before all declared bytes of a document"))
            }
            Err(s) => {
                self.broken = true;
                Err(stream_error(s))
            }
        }
    }
}

fn refused(index: u32, e: &ApiError) -> pb::CreateDocumentsResult {
    pb::CreateDocumentsResult {
        index,
        result: Some(pb::create_documents_result::Result::Error(
            e.to_rpc_status(),
        )),
    }
}

/// Waits for a blocking commit started with `spawn_blocking` and names its outcome.
async fn settle(
    index: u32,
    handle: tokio::task::JoinHandle<Result<String, ApiError>>,
) -> pb::CreateDocumentsResult {
    let outcome = handle
        .await
        .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))
        .and_then(|r| r);
    match outcome {
        Ok(name) => pb::CreateDocumentsResult {
            index,
            result: Some(pb::create_documents_result::Result::Name(name)),
        },
        Err(e) => refused(index, &e),
    }
}

impl Api {
    /// CreateDocuments (see the module comment and documents.proto).
    pub(super) async fn create_document_stream(
        &self,
        req: Request<Streaming<pb::CreateDocumentsRequest>>,
    ) -> Result<pb::CreateDocumentsResponse, ApiError> {
        use pb::create_documents_request::Message;
        let caller = self.caller(&req)?;
        let idle = self.state.upload_idle;
        let mut stream = req.into_inner();
        let mut tenants: HashMap<String, TenantRecords> = HashMap::new();
        let mut pending: FuturesUnordered<Pending<'_>> = FuturesUnordered::new();
        let mut results = Vec::new();
        let mut index: u32 = 0;
        loop {
            let next = match tokio::time::timeout(idle, stream.message()).await {
                Err(_) => Err(ApiError::UploadIdle(idle.as_secs())),
                Ok(Err(s)) => Err(stream_error(s)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(pb::CreateDocumentsRequest {
                    message: Some(Message::Document(item)),
                }))) => Ok(item),
                Ok(Ok(Some(_))) => Err(ApiError::UploadProtocol(
                    "a chunk where a document must start: only a document with an upload \
                     is followed by chunks, exactly its declared size"
                        .into(),
                )),
            };
            let item = match next {
                Ok(item) => item,
                // Broken before any document: the call is refused as a whole, as a unary
                // call with a malformed message is.
                Err(e) if index == 0 => return Err(e),
                Err(e) => {
                    results.push(refused(index, &e));
                    break;
                }
            };
            let i = index;
            index = index.saturating_add(1);
            match self
                .start_document(&caller, &mut tenants, i, item, &mut stream)
                .await
            {
                Ok(p) => pending.push(p),
                Err(r) => {
                    results.push(refused(i, &r.error));
                    if r.broken {
                        break;
                    }
                }
            }
            // Collect what is done (the answer needs it; the upload budget was given back
            // by the worker itself).
            while let Some(Some(r)) = pending.next().now_or_never() {
                results.push(r);
            }
            while pending.len() >= IN_FLIGHT {
                if let Some(r) = pending.next().await {
                    results.push(r);
                }
            }
        }
        while let Some(r) = pending.next().await {
            results.push(r);
        }
        results.sort_by_key(|r| r.index);
        let created = results
            .iter()
            .filter(|r| matches!(r.result, Some(pb::create_documents_result::Result::Name(_))))
            .count() as u32;
        let failed = results.len() as u32 - created;
        tracing::info!(created, failed, principal = %caller.principal.name, "documents created");
        Ok(pb::CreateDocumentsResponse {
            results,
            created,
            failed,
        })
    }

    /// Reads one document (and its bytes) and starts recording it. On a refusal its
    /// remaining bytes are read past, so the stream can go on, unless the stream broke.
    async fn start_document<'a>(
        &'a self,
        caller: &Caller,
        tenants: &mut HashMap<String, TenantRecords>,
        index: u32,
        item: pb::CreateDocumentsItem,
        stream: &mut Streaming<pb::CreateDocumentsRequest>,
    ) -> Result<Pending<'a>, Refused> {
        let idle = self.state.upload_idle;
        let mut chunks = ItemChunks {
            stream,
            remaining: item.upload.as_ref().map_or(0, |u| u.size),
            broken: false,
        };
        match self
            .receive_document(caller, tenants, index, item, &mut chunks)
            .await
        {
            Ok(p) => Ok(p),
            Err(error) => {
                if !chunks.broken {
                    if let Err(e) = chunks.skip_rest(idle).await {
                        tracing::debug!("skipping a refused document's bytes: {e}");
                    }
                }
                Err(Refused {
                    error,
                    broken: chunks.broken,
                })
            }
        }
    }

    async fn receive_document<'a>(
        &'a self,
        caller: &Caller,
        tenants: &mut HashMap<String, TenantRecords>,
        index: u32,
        item: pb::CreateDocumentsItem,
        chunks: &mut ItemChunks<'_>,
    ) -> Result<Pending<'a>, ApiError> {
        let idle = self.state.upload_idle;
        let mut doc = item.document.unwrap_or_default();
        let parent = names::object_of("document.parent", &doc.parent, CONTAINERS)?;
        let t = match tenants.get(&parent.tenant) {
            Some(t) => t.clone(),
            None => {
                let t = self.tenant(
                    caller,
                    &parent.tenant,
                    &doc.parent,
                    Operation::FileDocuments,
                )?;
                tenants.insert(parent.tenant.clone(), t.clone());
                t
            }
        };
        let actor = caller.actor().to_owned();
        let tenant = parent.tenant.clone();
        let parent_name = doc.parent.clone();
        let name_of = move |id| names::object_name(&tenant, ObjectKind::Document, id);
        let Some(upload) = item.upload else {
            // Inline bytes, or no version: one blocking call does it all.
            let first = inline_version(&mut doc, "document.")?;
            let new = new_document(&doc, parent.id)?;
            // The bytes arrived with the message; while they wait to be stored they count
            // against the upload budget, which bounds what all streams hold in flight.
            let held = first.as_ref().map_or(0, |v| v.size());
            let memory = self.state.upload_memory.reserve_owned(held, idle).await?;
            // Each document's blocking call runs in a read scope, as `super::blocking`
            // runs a unary call.
            let handle = tokio::task::spawn_blocking(move || {
                ReadScope::run(|| {
                    // Given back when the bytes are stored and recorded (or refused).
                    let _memory = memory;
                    get_kind(&t, parent.id, parent.kind, &parent_name)?;
                    let rid = request_id(&doc.request_id);
                    let d = match first {
                        None => t.create_document(&actor, new, rid)?,
                        Some(v) => create_with_inline(&t, &actor, new, v, rid)?,
                    };
                    Ok(name_of(d.id))
                })
            });
            return Ok(Box::pin(settle(index, handle)));
        };
        let comment = std::mem::take(&mut doc.version_comment);
        if inline_version(&mut doc, "document.")?.is_some() {
            return Err(ApiError::field(
                "upload",
                "a document's bytes come inline (content_file_name, content) or as an \
                 upload, not both",
            ));
        }
        let spec = rendition_spec("upload", &upload)?;
        let new = new_document(&doc, parent.id)?;
        // Check before any byte is stored: the parent exists, is visible and writable.
        let (tc, pn) = (t.clone(), parent_name.clone());
        super::blocking(move || {
            get_kind(&tc, parent.id, parent.kind, &pn)?;
            Ok(tc.check_writable(parent.id)?)
        })
        .await?;
        let rid = doc.request_id;
        let version = NewVersion {
            comment,
            renditions: vec![NewRendition {
                file_name: spec.file_name.clone(),
                media_type: spec.media_type.clone(),
                sha256: spec.sha256,
                size: spec.size,
            }],
        };
        if spec.size < SMALL_UPLOAD {
            // Held until the bytes are stored.
            let memory = self
                .state
                .upload_memory
                .reserve_owned(spec.size, idle)
                .await?;
            let bytes = receive_small(chunks, spec.size, idle).await?;
            let handle = tokio::task::spawn_blocking(move || {
                ReadScope::run(|| {
                    let _memory = memory;
                    t.tenant().content().put_bytes_for_entry(
                        &bytes,
                        Some(spec.sha256),
                        Some(spec.size),
                    )?;
                    let (d, _) =
                        t.create_document_with_version(&actor, new, version, request_id(&rid))?;
                    Ok(name_of(d.id))
                })
            });
            return Ok(Box::pin(settle(index, handle)));
        }
        {
            let _memory = self
                .state
                .upload_memory
                .reserve(STREAMED_UPLOAD_MEMORY, idle)
                .await?;
            receive_content(chunks, t.clone(), spec.sha256, spec.size, idle).await?;
        }
        let handle = tokio::task::spawn_blocking(move || {
            ReadScope::run(|| {
                let (d, _) =
                    t.create_document_with_version(&actor, new, version, request_id(&rid))?;
                Ok(name_of(d.id))
            })
        });
        Ok(Box::pin(settle(index, handle)))
    }
}
