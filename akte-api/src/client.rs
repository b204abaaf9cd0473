//! A small client library over the generated stubs: connecting with a bearer token (and
//! TLS), building upload streams, and reading akte's error details. Used by the `akte`
//! command-line tool and the tests.

use std::path::PathBuf;

use bytes::Bytes;
use prost::Message;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::limits::{MAX_CHUNK, MAX_RECEIVED_MESSAGE};
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::access_service_client::AccessServiceClient;
use crate::pb::akte::v1::case_service_client::CaseServiceClient;
use crate::pb::akte::v1::custom_field_service_client::CustomFieldServiceClient;
use crate::pb::akte::v1::disposal_service_client::DisposalServiceClient;
use crate::pb::akte::v1::document_service_client::DocumentServiceClient;
use crate::pb::akte::v1::file_plan_service_client::FilePlanServiceClient;
use crate::pb::akte::v1::file_service_client::FileServiceClient;
use crate::pb::akte::v1::history_service_client::HistoryServiceClient;
use crate::pb::akte::v1::hold_service_client::HoldServiceClient;
use crate::pb::akte::v1::journal_service_client::JournalServiceClient;
use crate::pb::akte::v1::migration_service_client::MigrationServiceClient;
use crate::pb::akte::v1::retention_service_client::RetentionServiceClient;
use crate::pb::akte::v1::search_service_client::SearchServiceClient;
use crate::pb::akte::v1::tenant_service_client::TenantServiceClient;
use crate::pb::akte::v1::verification_service_client::VerificationServiceClient;
use crate::pb::google::longrunning as lro;
use crate::pb::google::longrunning::operations_client::OperationsClient;
use crate::pb::google::rpc;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel that sends the token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Client errors before any call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or a TLS file is unusable.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached.
    #[error("connecting to {url}: {message}")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        message: String,
    },
}

/// TLS settings of a client.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificate that signed the server's certificate (PEM); the system roots are not
    /// used.
    pub ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM).
    pub cert: Option<PathBuf>,
    /// Client key for mutual TLS (PEM).
    pub key: Option<PathBuf>,
    /// Server name to check in the certificate (default: the URL's host).
    pub domain: Option<String>,
}

/// One stub per service over one channel.
#[derive(Debug, Clone)]
pub struct Clients {
    /// TenantService.
    pub tenants: TenantServiceClient<AuthChannel>,
    /// FilePlanService.
    pub plan: FilePlanServiceClient<AuthChannel>,
    /// FileService.
    pub files: FileServiceClient<AuthChannel>,
    /// CaseService.
    pub cases: CaseServiceClient<AuthChannel>,
    /// DocumentService.
    pub documents: DocumentServiceClient<AuthChannel>,
    /// HistoryService.
    pub history: HistoryServiceClient<AuthChannel>,
    /// JournalService.
    pub journal: JournalServiceClient<AuthChannel>,
    /// VerificationService.
    pub verification: VerificationServiceClient<AuthChannel>,
    /// RetentionService.
    pub retention: RetentionServiceClient<AuthChannel>,
    /// HoldService.
    pub holds: HoldServiceClient<AuthChannel>,
    /// DisposalService.
    pub disposal: DisposalServiceClient<AuthChannel>,
    /// SearchService.
    pub search: SearchServiceClient<AuthChannel>,
    /// MigrationService.
    pub migration: MigrationServiceClient<AuthChannel>,
    /// google.longrunning.Operations.
    pub operations: OperationsClient<AuthChannel>,
    /// AccessService.
    pub access: AccessServiceClient<AuthChannel>,
    /// CustomFieldService.
    pub fields: CustomFieldServiceClient<AuthChannel>,
}

impl Clients {
    /// Stubs over an existing channel with a token.
    pub fn new(channel: Channel, token: Option<&str>) -> Result<Clients, ClientError> {
        let value = match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| ClientError::Config("the token is not printable ASCII".into()))?,
            ),
            None => None,
        };
        let svc = InterceptedService::new(channel, Bearer(value));
        let limit = 8 << 20;
        Ok(Clients {
            tenants: TenantServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            plan: FilePlanServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            files: FileServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            cases: CaseServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            documents: DocumentServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            history: HistoryServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            journal: JournalServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            verification: VerificationServiceClient::new(svc.clone())
                .max_decoding_message_size(limit),
            retention: RetentionServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            holds: HoldServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            search: SearchServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            operations: OperationsClient::new(svc.clone()).max_decoding_message_size(limit),
            access: AccessServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            fields: CustomFieldServiceClient::new(svc.clone()).max_decoding_message_size(limit),
            migration: MigrationServiceClient::new(svc.clone())
                .max_decoding_message_size(MAX_RECEIVED_MESSAGE + (64 << 10))
                .max_encoding_message_size(MAX_RECEIVED_MESSAGE + (64 << 10)),
            disposal: DisposalServiceClient::new(svc)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(MAX_RECEIVED_MESSAGE + (64 << 10)),
        })
    }

    /// Connects to `url` (`http://` or `https://`).
    pub async fn connect(
        url: &str,
        token: Option<&str>,
        tls: &ClientTls,
    ) -> Result<Clients, ClientError> {
        let mut ep = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ClientError::Config(format!("server URL {url:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let mut t = ClientTlsConfig::new();
            if let Some(ca) = &tls.ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| ClientError::Config(format!("reading {}: {e}", ca.display())))?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(c), Some(k)) = (&tls.cert, &tls.key) {
                let read = |p: &PathBuf| {
                    std::fs::read(p)
                        .map_err(|e| ClientError::Config(format!("reading {}: {e}", p.display())))
                };
                t = t.identity(Identity::from_pem(read(c)?, read(k)?));
            }
            if let Some(d) = &tls.domain {
                t = t.domain_name(d.clone());
            }
            ep = ep
                .tls_config(t)
                .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        }
        let channel = ep.connect().await.map_err(|e| ClientError::Connect {
            url: url.to_owned(),
            message: format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ),
        })?;
        Clients::new(channel, token)
    }
}

/// The messages of an AddVersion call streaming `data` in chunks of `chunk` bytes.
pub fn add_version_messages(
    header: pb::AddVersionHeader,
    data: Bytes,
    chunk: usize,
) -> Vec<pb::AddVersionRequest> {
    let chunk = chunk.clamp(1, MAX_CHUNK);
    let mut out = vec![pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Header(header)),
    }];
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        out.push(pb::AddVersionRequest {
            message: Some(pb::add_version_request::Message::Chunk(
                data.slice(off..end),
            )),
        });
        off = end;
    }
    out
}

/// A CreateDocument request's first version inline: `data` as its one rendition, with
/// the digest for the server to check.
pub fn with_first_version(
    mut request: pb::CreateDocumentRequest,
    data: Bytes,
    file_name: &str,
    media_type: &str,
) -> pb::CreateDocumentRequest {
    request.content_sha256 = sha256(&data);
    request.content = data;
    request.content_file_name = file_name.into();
    request.content_media_type = media_type.into();
    request
}

/// The messages of one document in a CreateDocuments stream: with `upload`, the document
/// followed by `data` in chunks of `chunk` bytes (at most 1 MiB); without, the document
/// alone (its bytes inline, if any).
pub fn create_documents_messages(
    document: pb::CreateDocumentRequest,
    upload: Option<pb::RenditionUpload>,
    data: Bytes,
    chunk: usize,
) -> Vec<pb::CreateDocumentsRequest> {
    let chunk = chunk.clamp(1, MAX_CHUNK);
    let streamed = upload.is_some();
    let mut out = vec![pb::CreateDocumentsRequest {
        message: Some(pb::create_documents_request::Message::Document(
            pb::CreateDocumentsItem {
                document: Some(document),
                upload,
            },
        )),
    }];
    let mut off = 0;
    while streamed && off < data.len() {
        let end = (off + chunk).min(data.len());
        out.push(pb::CreateDocumentsRequest {
            message: Some(pb::create_documents_request::Message::Chunk(
                data.slice(off..end),
            )),
        });
        off = end;
    }
    out
}

/// The messages of an UploadRendition call.
pub fn upload_rendition_messages(
    header: pb::UploadRenditionHeader,
    data: Bytes,
    chunk: usize,
) -> Vec<pb::UploadRenditionRequest> {
    let chunk = chunk.clamp(1, MAX_CHUNK);
    let mut out = vec![pb::UploadRenditionRequest {
        message: Some(pb::upload_rendition_request::Message::Header(header)),
    }];
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        out.push(pb::UploadRenditionRequest {
            message: Some(pb::upload_rendition_request::Message::Chunk(
                data.slice(off..end),
            )),
        });
        off = end;
    }
    out
}

/// The status an operation failed with, as the call would have returned it (code,
/// message and the details with akte's `ErrorInfo`).
pub fn operation_error(s: &crate::pb::google::rpc::Status) -> Status {
    use prost::Message as _;
    Status::with_details(
        tonic::Code::from_i32(s.code),
        s.message.clone(),
        Bytes::from(s.encode_to_vec()),
    )
}

/// Waits until an operation is done (WaitOperation, again and again) and returns its
/// response; a failed operation becomes the status it failed with.
pub async fn wait_operation(
    ops: &mut OperationsClient<AuthChannel>,
    mut op: lro::Operation,
) -> Result<prost_types::Any, Status> {
    while !op.done {
        op = ops
            .wait_operation(lro::WaitOperationRequest {
                name: op.name.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            })
            .await?
            .into_inner();
    }
    match op.result {
        Some(lro::operation::Result::Response(any)) => Ok(any),
        Some(lro::operation::Result::Error(s)) => Err(operation_error(&s)),
        None => Err(Status::internal(format!(
            "operation {} is done without a result",
            op.name
        ))),
    }
}

/// The message packed in an operation's response (or metadata).
pub fn unpack<M: prost::Message + Default>(any: &prost_types::Any) -> Result<M, Status> {
    M::decode(any.value.as_slice()).map_err(|e| {
        Status::internal(format!(
            "the server's {} does not decode: {e}",
            any.type_url
        ))
    })
}

/// SHA-256 of bytes, as the API carries digests (32 bytes).
pub fn sha256(data: &[u8]) -> Bytes {
    use sha2::Digest as _;
    Bytes::copy_from_slice(&sha2::Sha256::digest(data))
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// The `google.rpc.ErrorInfo` of a status received from akted, if it has one.
pub fn error_info(status: &Status) -> Option<rpc::ErrorInfo> {
    let st = rpc::Status::decode(status.details()).ok()?;
    st.details
        .iter()
        .find(|a| a.type_url.ends_with("/google.rpc.ErrorInfo"))
        .and_then(|a| rpc::ErrorInfo::decode(&a.value[..]).ok())
}

/// The reason of a status received from akted (empty when it has none).
pub fn reason(status: &Status) -> String {
    error_info(status).map(|i| i.reason).unwrap_or_default()
}
