//! API errors and their one mapping to gRPC statuses.
//!
//! Every error leaves the server as a `tonic::Status` whose details (the
//! `grpc-status-details-bin` trailer) hold an encoded `google.rpc.Status` with a
//! `google.rpc.ErrorInfo` (domain [`DOMAIN`], a stable reason from `akte.v1.ErrorReason`)
//! and, for invalid fields, a `google.rpc.BadRequest`. [`RecordsError`], [`StoreError`],
//! [`WitnessError`] and [`ContentError`] are mapped here and nowhere else.

use akte_core::content::ContentError;
use akte_core::journal::JournalError;
use akte_core::merkle::MerkleError;
use akte_core::records::RecordsError;
use akte_core::store::StoreError;
use akte_core::witness::WitnessError;
use bytes::Bytes;
use prost::Message;
use tonic::{Code, Status};

use crate::pb::google::rpc;

/// The `ErrorInfo.domain` of every akte error.
pub const DOMAIN: &str = "akte.example";

/// An error of an API call, before it becomes a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field path in the request.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A resource name does not have the expected pattern.
    #[error("invalid resource name in {field}: {reason}")]
    InvalidName {
        /// Field path in the request.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A resource does not exist, or is in a tenant the caller cannot see.
    #[error("{resource} not found")]
    NotFound {
        /// The resource as the caller named it.
        resource: String,
    },
    /// No or an unknown bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token's roles do not allow the call.
    #[error("the token's roles do not allow this call; it needs one of: {required}")]
    PermissionDenied {
        /// The roles that would.
        required: String,
    },
    /// An upload stream out of order.
    #[error("upload protocol: {0}")]
    UploadProtocol(String),
    /// An upload stream went quiet.
    #[error("the upload sent nothing for {0} seconds")]
    UploadIdle(u64),
    /// A client-declared size differs from the bytes received.
    #[error("size mismatch: declared {expected} bytes, received {actual}{}", if *.at_least { " or more" } else { "" })]
    SizeMismatch {
        /// Declared.
        expected: u64,
        /// Received (a lower bound when `at_least`).
        actual: u64,
        /// Whether reading stopped early.
        at_least: bool,
    },
    /// A client-declared digest differs from the bytes received.
    #[error("SHA-256 mismatch: declared {expected}, the bytes received hash to {actual}")]
    DigestMismatch {
        /// Declared, hex.
        expected: String,
        /// Actual, hex.
        actual: String,
    },
    /// A staged rendition that was never uploaded.
    #[error("no content with SHA-256 {sha256} was uploaded; upload it first (UploadRendition)")]
    ContentNotUploaded {
        /// The digest, hex.
        sha256: String,
    },
    /// Stored bytes are damaged.
    #[error("stored content is damaged: {0}")]
    ContentCorrupt(String),
    /// The client's stream failed (it was cut off, or a message was refused by the transport).
    #[error("upload stream: {message}")]
    Stream {
        /// The transport's code.
        code: Code,
        /// Its message.
        message: String,
    },
    /// A status with akte's details built below the service (the request body's checks,
    /// the codec), relayed unchanged.
    #[error("{}", .0.message())]
    Relayed(Status),
    /// Too many calls in flight.
    #[error("the server is at its limit of {0} concurrent calls; retry shortly")]
    Overloaded(usize),
    /// The memory for uploads stayed in use by other uploads.
    #[error(
        "the server's memory for uploads ({0} MiB) stayed in use by other uploads; retry shortly"
    )]
    UploadsBusy(u64),
    /// A records-model error.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// A storage error outside the records model (journal, checkpoints, proofs).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Registering a witness or storing a cosignature was refused or failed.
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// Anything unexpected; the message is logged, the client sees a generic one.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An invalid field.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ContentError> for ApiError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::DigestMismatch { expected, actual } => ApiError::DigestMismatch {
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            },
            ContentError::SizeMismatch { expected, actual } => ApiError::SizeMismatch {
                expected,
                actual,
                at_least: actual > expected,
            },
            ContentError::NotFound { digest, .. } => ApiError::ContentNotUploaded {
                sha256: digest.to_hex(),
            },
            ContentError::Corrupt { digest, reason, .. } => {
                ApiError::ContentCorrupt(format!("content {digest}: {reason}"))
            }
            other => ApiError::Store(StoreError::Content(other)),
        }
    }
}

/// The parts of a status: code, reason, message and metadata.
struct Parts {
    code: Code,
    reason: &'static str,
    message: String,
    metadata: Vec<(&'static str, String)>,
    bad_field: Option<(String, String)>,
    retry_ms: Option<u64>,
}

fn parts(code: Code, reason: &'static str, message: String) -> Parts {
    Parts {
        code,
        reason,
        message,
        metadata: Vec::new(),
        bad_field: None,
        retry_ms: None,
    }
}

impl Parts {
    fn meta(mut self, key: &'static str, value: impl Into<String>) -> Parts {
        self.metadata.push((key, value.into()));
        self
    }
}

fn store_parts(e: &StoreError) -> Option<Parts> {
    let msg = e.to_string();
    Some(match e {
        StoreError::UnknownTenant(t) => parts(
            Code::NotFound,
            "NOT_FOUND",
            format!("tenants/{t} not found"),
        )
        .meta("resource", format!("tenants/{t}")),
        StoreError::TenantExists(t) => parts(Code::AlreadyExists, "ALREADY_EXISTS", msg)
            .meta("resource", format!("tenants/{t}")),
        StoreError::InvalidTenantId { .. } => {
            let mut p = parts(Code::InvalidArgument, "INVALID_FIELD", msg.clone());
            p.bad_field = Some(("tenant_id".into(), msg));
            p.meta("field", "tenant_id")
        }
        StoreError::ContentMissing { digest, .. } => {
            parts(Code::FailedPrecondition, "CONTENT_NOT_UPLOADED", msg)
                .meta("sha256", digest.to_hex())
        }
        StoreError::ContentSize {
            declared, actual, ..
        } => parts(Code::InvalidArgument, "SIZE_MISMATCH", msg)
            .meta("expected_size", declared.to_string())
            .meta("actual_size", actual.to_string()),
        StoreError::BeyondJournal {
            requested,
            available,
        } => parts(Code::OutOfRange, "BEYOND_JOURNAL", msg)
            .meta("requested", requested.to_string())
            .meta("available", available.to_string()),
        StoreError::Journal(JournalError::OutOfRange { seq, len }) => {
            parts(Code::OutOfRange, "BEYOND_JOURNAL", msg)
                .meta("requested", seq.to_string())
                .meta("available", len.to_string())
        }
        StoreError::Merkle(MerkleError::IndexOutOfRange { .. })
        | StoreError::Merkle(MerkleError::InvalidSizes { .. }) => {
            parts(Code::OutOfRange, "BEYOND_JOURNAL", msg)
        }
        StoreError::NoCheckpoint(t) => {
            parts(Code::NotFound, "NO_CHECKPOINT", msg).meta("resource", format!("tenants/{t}"))
        }
        StoreError::Fenced { tenant, .. } => parts(
            Code::Unavailable,
            "TENANT_FENCED",
            format!("tenant {tenant} accepts no writes until the server is restarted"),
        ),
        StoreError::Content(ContentError::Corrupt { .. }) => {
            parts(Code::DataLoss, "CONTENT_CORRUPT", msg)
        }
        _ => return None,
    })
}

fn invalid_field(field: &str, msg: String) -> Parts {
    let mut p = parts(Code::InvalidArgument, "INVALID_FIELD", msg.clone());
    p.bad_field = Some((field.to_owned(), msg));
    p.meta("field", field.to_owned())
}

fn witness_parts(e: &WitnessError) -> Option<Parts> {
    let msg = e.to_string();
    Some(match e {
        WitnessError::InvalidKey(_) | WitnessError::OwnKey { .. } => {
            invalid_field("verifier_key", msg)
        }
        WitnessError::NameTaken { existing, .. } => {
            parts(Code::AlreadyExists, "ALREADY_EXISTS", msg).meta("existing", existing.clone())
        }
        WitnessError::KeyTaken { existing } => {
            parts(Code::AlreadyExists, "ALREADY_EXISTS", msg).meta("existing", existing.clone())
        }
        WitnessError::TooMany { limit, .. } => {
            parts(Code::FailedPrecondition, "INVALID_STATE", msg).meta("limit", limit.to_string())
        }
        WitnessError::NoSuchWitness {
            tenant,
            fingerprint,
        } => {
            let resource = format!("tenants/{tenant}/witnesses/{fingerprint}");
            parts(Code::NotFound, "NOT_FOUND", format!("{resource} not found"))
                .meta("resource", resource)
        }
        WitnessError::MalformedNote(_)
        | WitnessError::WrongOrigin { .. }
        | WitnessError::NoCosignature { .. }
        | WitnessError::Note(_) => invalid_field("cosigned_note", msg),
        WitnessError::NotStored { tenant, size } => {
            let resource = format!("tenants/{tenant}/checkpoints/{size}");
            parts(Code::NotFound, "NOT_FOUND", format!("{resource} not found"))
                .meta("resource", resource)
        }
        WitnessError::CheckpointMismatch {
            size,
            stored_root,
            given_root,
            ..
        } => parts(Code::InvalidArgument, "CHECKPOINT_MISMATCH", msg)
            .meta("tree_size", size.to_string())
            .meta("stored_root", stored_root.clone())
            .meta("given_root", given_root.clone()),
        WitnessError::UnknownWitness { name, key_id, .. } => {
            parts(Code::FailedPrecondition, "WITNESS_UNKNOWN", msg)
                .meta("witness", name.clone())
                .meta("key_id", key_id.clone())
        }
        WitnessError::BadCosignature { name, .. } => {
            parts(Code::InvalidArgument, "COSIGNATURE_INVALID", msg).meta("witness", name.clone())
        }
        WitnessError::Store(s) => return store_parts(s),
        // A damaged witness list or stored note, or an I/O failure: the server's own data,
        // logged with its path; the client sees INTERNAL.
        WitnessError::DamagedList { .. }
        | WitnessError::DamagedCheckpoint { .. }
        | WitnessError::Io(_) => return None,
    })
}

fn records_parts(e: &RecordsError) -> Option<Parts> {
    let msg = e.to_string();
    Some(match e {
        RecordsError::Invalid { field, reason } => {
            let mut p = parts(Code::InvalidArgument, "INVALID_FIELD", msg.clone());
            p.bad_field = Some((field.clone(), reason.clone()));
            p.meta("field", field.clone())
        }
        RecordsError::NotFound { id, what } => parts(Code::NotFound, "NOT_FOUND", msg)
            .meta("resource", id.clone())
            .meta("what", what.clone()),
        RecordsError::WrongKind {
            id,
            expected,
            found,
        } => parts(Code::InvalidArgument, "WRONG_KIND", msg)
            .meta("resource", id.clone())
            .meta("expected", expected.clone())
            .meta("found", found.name()),
        RecordsError::Closed { id, kind } => parts(Code::FailedPrecondition, "OBJECT_CLOSED", msg)
            .meta("resource", id.clone())
            .meta("kind", kind.name()),
        RecordsError::FailedPrecondition { id, .. } => {
            parts(Code::FailedPrecondition, "INVALID_STATE", msg).meta("resource", id.clone())
        }
        RecordsError::StaleRevision { id, current, .. } => parts(Code::Aborted, "STALE_ETAG", msg)
            .meta("resource", id.clone())
            .meta("current_etag", current.to_string()),
        RecordsError::DuplicateCode { code, existing } => {
            parts(Code::AlreadyExists, "DUPLICATE_CODE", msg)
                .meta("code", code.clone())
                .meta("resource", existing.clone())
        }
        RecordsError::AlreadyExists { id } => {
            parts(Code::AlreadyExists, "ALREADY_EXISTS", msg).meta("resource", id.clone())
        }
        RecordsError::Cycle { id, .. } => {
            parts(Code::InvalidArgument, "PLAN_UNIT_CYCLE", msg).meta("resource", id.clone())
        }
        RecordsError::InUse { id, .. } => {
            parts(Code::FailedPrecondition, "PLAN_UNIT_IN_USE", msg).meta("resource", id.clone())
        }
        RecordsError::Inactive { id } => {
            parts(Code::FailedPrecondition, "PLAN_UNIT_INACTIVE", msg).meta("resource", id.clone())
        }
        RecordsError::IdempotencyConflict { request_id } => {
            parts(Code::InvalidArgument, "REQUEST_ID_REUSED", msg)
                .meta("request_id", request_id.clone())
        }
        RecordsError::Destroyed { kind, id, on } => parts(Code::NotFound, "OBJECT_DESTROYED", msg)
            .meta("resource", id.clone())
            .meta("kind", kind.name())
            .meta("destroyed_on", on.to_string()),
        RecordsError::Store(s) => return store_parts(s),
        _ => return None,
    })
}

impl ApiError {
    fn parts(&self) -> Parts {
        let msg = self.to_string();
        let known = match self {
            ApiError::InvalidField { field, reason } => {
                let mut p = parts(Code::InvalidArgument, "INVALID_FIELD", msg);
                p.bad_field = Some((field.clone(), reason.clone()));
                Some(p.meta("field", field.clone()))
            }
            ApiError::InvalidName { field, reason } => {
                let mut p = parts(Code::InvalidArgument, "INVALID_NAME", msg);
                p.bad_field = Some((field.clone(), reason.clone()));
                Some(p.meta("field", field.clone()))
            }
            ApiError::NotFound { resource } => {
                Some(parts(Code::NotFound, "NOT_FOUND", msg).meta("resource", resource.clone()))
            }
            ApiError::Unauthenticated(_) => {
                Some(parts(Code::Unauthenticated, "UNAUTHENTICATED", msg))
            }
            ApiError::PermissionDenied { required } => Some(
                parts(Code::PermissionDenied, "PERMISSION_DENIED", msg)
                    .meta("required", required.clone()),
            ),
            ApiError::UploadProtocol(_) => {
                Some(parts(Code::InvalidArgument, "UPLOAD_PROTOCOL", msg))
            }
            ApiError::Stream { code, .. } => Some(parts(*code, "UPLOAD_PROTOCOL", msg)),
            // Handled in to_status; unreachable here, but a status is still owed.
            ApiError::Relayed(s) => Some(parts(s.code(), "UPLOAD_PROTOCOL", msg)),
            ApiError::UploadIdle(_) => Some(parts(Code::DeadlineExceeded, "UPLOAD_IDLE", msg)),
            ApiError::SizeMismatch {
                expected, actual, ..
            } => Some(
                parts(Code::InvalidArgument, "SIZE_MISMATCH", msg)
                    .meta("expected_size", expected.to_string())
                    .meta("actual_size", actual.to_string()),
            ),
            ApiError::DigestMismatch { expected, actual } => Some(
                parts(Code::InvalidArgument, "DIGEST_MISMATCH", msg)
                    .meta("expected_sha256", expected.clone())
                    .meta("actual_sha256", actual.clone()),
            ),
            ApiError::ContentNotUploaded { sha256 } => Some(
                parts(Code::FailedPrecondition, "CONTENT_NOT_UPLOADED", msg)
                    .meta("sha256", sha256.clone()),
            ),
            ApiError::ContentCorrupt(_) => Some(parts(Code::DataLoss, "CONTENT_CORRUPT", msg)),
            ApiError::Overloaded(_) | ApiError::UploadsBusy(_) => {
                let mut p = parts(Code::ResourceExhausted, "OVERLOADED", msg);
                p.retry_ms = Some(200);
                Some(p)
            }
            ApiError::Records(e) => records_parts(e),
            ApiError::Store(e) => store_parts(e),
            ApiError::Witness(e) => witness_parts(e),
            ApiError::Internal(_) => None,
        };
        known.unwrap_or_else(|| {
            // Internal errors may name server paths: log them, tell the client little.
            tracing::error!(error = %self, "internal error");
            parts(
                Code::Internal,
                "INTERNAL",
                "internal error; the server log has the details".into(),
            )
        })
    }

    /// The gRPC status for this error, with its details.
    pub fn to_status(&self) -> Status {
        if let ApiError::Relayed(s) = self {
            return s.clone();
        }
        let p = self.parts();
        build_status(p)
    }
}

fn any<M: Message>(type_name: &str, m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

fn build_status(p: Parts) -> Status {
    let mut details = vec![any(
        "google.rpc.ErrorInfo",
        &rpc::ErrorInfo {
            reason: p.reason.to_owned(),
            domain: DOMAIN.to_owned(),
            metadata: p
                .metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        },
    )];
    if let Some((field, description)) = p.bad_field {
        details.push(any(
            "google.rpc.BadRequest",
            &rpc::BadRequest {
                field_violations: vec![rpc::bad_request::FieldViolation {
                    field,
                    description,
                    reason: p.reason.to_owned(),
                    localized_message: None,
                }],
            },
        ));
    }
    if let Some(ms) = p.retry_ms {
        details.push(any(
            "google.rpc.RetryInfo",
            &rpc::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: (ms / 1000) as i64,
                    nanos: ((ms % 1000) * 1_000_000) as i32,
                }),
            },
        ));
    }
    let status = rpc::Status {
        code: p.code as i32,
        message: p.message.clone(),
        details,
    };
    Status::with_details(p.code, p.message, Bytes::from(status.encode_to_vec()))
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        e.to_status()
    }
}

/// A status for the server itself (overload, shutdown), built like every other.
pub fn server_status(code: Code, reason: &'static str, message: &str) -> Status {
    server_status_with(code, reason, message, Vec::new())
}

/// [`server_status`] with `ErrorInfo` metadata.
pub fn server_status_with(
    code: Code,
    reason: &'static str,
    message: &str,
    metadata: Vec<(&'static str, String)>,
) -> Status {
    let mut p = parts(code, reason, message.to_owned());
    p.metadata = metadata;
    if code == Code::ResourceExhausted || code == Code::Unavailable {
        p.retry_ms = Some(200);
    }
    build_status(p)
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
