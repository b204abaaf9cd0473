//! API errors and their one mapping to gRPC statuses.
//!
//! Every error leaves the server as a `tonic::Status` whose details (the
//! `grpc-status-details-bin` trailer) hold an encoded `google.rpc.Status` with a
//! `google.rpc.ErrorInfo` (domain [`DOMAIN`], a stable reason from the generated
//! `akte.v1.ErrorReason` enum, never a string typed here) and, for invalid fields, a
//! `google.rpc.BadRequest`. [`RecordsError`], [`StoreError`], [`WitnessError`] and
//! [`ContentError`] are mapped here and nowhere else, by matches that name every variant:
//! a new core error does not compile until it is given a code and a reason (the one
//! exception, `ContentError`, is `#[non_exhaustive]`; its unnamed variants are INTERNAL).

use akte_core::backend::content::ContentError;
use akte_core::backend::FaultKind;
use akte_core::journal::JournalError;
use akte_core::merkle::MerkleError;
use akte_core::records::RecordsError;
use akte_core::store::StoreError;
use akte_core::witness::WitnessError;
use bytes::Bytes;
use prost::Message;
use tonic::{Code, Status};

use crate::pb::akte::v1::ErrorReason as R;
use crate::pb::google::rpc;

/// The `ErrorInfo.domain` of every akte error.
pub const DOMAIN: &str = "akte.de";

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
    /// The server is draining calls before it stops.
    #[error("the server is shutting down; retry shortly (against the restarted server)")]
    ShuttingDown,
    /// A page token that this server did not hand out for this listing.
    #[error("invalid page_token: not a token of this listing (altered, of another listing, or sent with other request fields); start again without a token")]
    InvalidPageToken,
    /// A write to an upload session at the wrong offset, or taken over by another write.
    #[error("{reason}; the session holds {persisted} bytes: resume from there")]
    UploadOffsetMismatch {
        /// Bytes the session holds.
        persisted: u64,
        /// What happened.
        reason: String,
    },
    /// An import of an upload session that is missing bytes.
    #[error("the upload session holds {persisted} of its {size} bytes; write the rest first")]
    UploadIncomplete {
        /// Bytes the session holds.
        persisted: u64,
        /// Bytes declared.
        size: u64,
    },
    /// A download range that starts beyond the end.
    #[error("offset {offset} is beyond the end of the {size} bytes")]
    InvalidRange {
        /// The offset asked for.
        offset: u64,
        /// The size of the bytes.
        size: u64,
    },
    /// A limit per tenant.
    #[error("the tenant has reached its limit of {limit} {what}; {hint}")]
    QuotaExceeded {
        /// What is limited.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// What to do.
        hint: &'static str,
    },
    /// The request does not fit the state of a resource of the server's own (an operation,
    /// an upload session).
    #[error("{resource}: {reason}")]
    FailedPrecondition {
        /// The resource.
        resource: String,
        /// Why.
        reason: String,
    },
    /// A long-running operation was cancelled.
    #[error("the operation was cancelled")]
    OperationCancelled,
    /// A long-running operation was running when the server stopped.
    #[error("{0}")]
    OperationInterrupted(String),
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
    reason: R,
    message: String,
    metadata: Vec<(&'static str, String)>,
    bad_field: Option<(String, String)>,
    retry_ms: Option<u64>,
}

fn parts(code: Code, reason: R, message: String) -> Parts {
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

    fn retry(mut self, ms: u64) -> Parts {
        self.retry_ms = Some(ms);
        self
    }
}

/// INTERNAL for a failure of the server's own data or machinery. The cause may name server
/// paths: it is logged, the client sees a generic message.
fn internal(cause: &dyn std::fmt::Display) -> Parts {
    tracing::error!(error = %cause, "internal error");
    parts(
        Code::Internal,
        R::Internal,
        "internal error; the server log has the details".into(),
    )
}

fn invalid_field(field: &str, msg: String) -> Parts {
    let mut p = parts(Code::InvalidArgument, R::InvalidField, msg.clone());
    p.bad_field = Some((field.to_owned(), msg));
    p.meta("field", field.to_owned())
}

fn beyond_journal(msg: String) -> Parts {
    parts(Code::OutOfRange, R::BeyondJournal, msg)
}

fn content_parts(e: &ContentError) -> Parts {
    let msg = e.to_string();
    match e {
        ContentError::NotFound { digest, .. } => {
            parts(Code::FailedPrecondition, R::ContentNotUploaded, msg)
                .meta("sha256", digest.to_hex())
        }
        ContentError::Corrupt { .. } => parts(Code::DataLoss, R::ContentCorrupt, msg),
        ContentError::DigestMismatch { expected, actual } => {
            parts(Code::InvalidArgument, R::DigestMismatch, msg)
                .meta("expected_sha256", expected.to_hex())
                .meta("actual_sha256", actual.to_hex())
        }
        ContentError::SizeMismatch { expected, actual } => {
            parts(Code::InvalidArgument, R::SizeMismatch, msg)
                .meta("expected_size", expected.to_string())
                .meta("actual_size", actual.to_string())
        }
        ContentError::Fenced { .. } | ContentError::Io(_) => storage_fault(e, e.kind(), "content"),
        ContentError::Read { .. }
        | ContentError::Compress { .. }
        | ContentError::Stray { .. }
        | ContentError::InvalidLevel { .. } => internal(e),
        // ContentError is #[non_exhaustive]: variants added later are the server's problem
        // until they are named here.
        _ => internal(e),
    }
}

/// A storage fault, by its kind whatever the backend: a full disk is an answer
/// (RESOURCE_EXHAUSTED, `STORAGE_FULL`), a failing device or connection is worth a retry
/// (UNAVAILABLE, `STORAGE_UNAVAILABLE`); anything else is the server's problem.
fn storage_fault(e: &dyn std::fmt::Display, kind: FaultKind, place: &str) -> Parts {
    match kind {
        FaultKind::StorageFull => parts(Code::ResourceExhausted, R::StorageFull, e.to_string())
            .meta("place", place.to_owned())
            .retry(1000),
        FaultKind::Unavailable => parts(Code::Unavailable, R::StorageUnavailable, e.to_string())
            .meta("place", place.to_owned())
            .retry(1000),
        _ => internal(e),
    }
}

fn journal_parts(e: &JournalError, msg: String) -> Parts {
    match e {
        JournalError::OutOfRange { seq, len } => beyond_journal(msg)
            .meta("requested", seq.to_string())
            .meta("available", len.to_string()),
        JournalError::Fenced {
            cause: FaultKind::StorageFull,
            ..
        } => storage_fault(e, FaultKind::StorageFull, "journal"),
        // Fenced after a device error: the client learns that storage failed, not only
        // that the tenant refuses writes.
        JournalError::Fenced {
            cause: FaultKind::Unavailable,
            ..
        } => storage_fault(e, FaultKind::Unavailable, "journal"),
        JournalError::Fenced { .. } => parts(Code::Unavailable, R::TenantFenced, msg).retry(1000),
        JournalError::Io(_) | JournalError::Backend { .. } => storage_fault(e, e.kind(), "journal"),
        JournalError::Damaged { .. }
        | JournalError::Inconsistent { .. }
        | JournalError::InvalidEntry(_)
        | JournalError::AttachmentMismatch(_)
        | JournalError::Misfit { .. } => internal(e),
    }
}

fn store_parts(e: &StoreError) -> Parts {
    let msg = e.to_string();
    match e {
        StoreError::UnknownTenant(t) => parts(
            Code::NotFound,
            R::NotFound,
            format!("tenants/{t} not found"),
        )
        .meta("resource", format!("tenants/{t}")),
        StoreError::TenantExists(t) => parts(Code::AlreadyExists, R::AlreadyExists, msg)
            .meta("resource", format!("tenants/{t}")),
        StoreError::InvalidTenantId { .. } => invalid_field("tenant_id", msg),
        StoreError::ContentMissing { digest, .. } => {
            parts(Code::FailedPrecondition, R::ContentNotUploaded, msg)
                .meta("sha256", digest.to_hex())
        }
        StoreError::ContentSize {
            declared, actual, ..
        } => parts(Code::InvalidArgument, R::SizeMismatch, msg)
            .meta("expected_size", declared.to_string())
            .meta("actual_size", actual.to_string()),
        StoreError::BeyondJournal {
            requested,
            available,
        } => beyond_journal(msg)
            .meta("requested", requested.to_string())
            .meta("available", available.to_string()),
        StoreError::NoCheckpoint(t) => {
            parts(Code::NotFound, R::NoCheckpoint, msg).meta("resource", format!("tenants/{t}"))
        }
        StoreError::Fenced { tenant, .. } => parts(
            Code::Unavailable,
            R::TenantFenced,
            format!(
                "tenant {tenant} accepts no writes for now after a storage failure; retry later"
            ),
        )
        .retry(1000),
        StoreError::Content(c) => content_parts(c),
        StoreError::Journal(j) => journal_parts(j, msg),
        StoreError::Merkle(MerkleError::IndexOutOfRange { .. })
        | StoreError::Merkle(MerkleError::InvalidSizes { .. }) => beyond_journal(msg),
        StoreError::Merkle(
            MerkleError::InvalidRange { .. }
            | MerkleError::PeakCount { .. }
            | MerkleError::TreeFull { .. }
            | MerkleError::MissingNode { .. }
            | MerkleError::Source(_),
        ) => internal(e),
        // Storage the backend could not reach or fill: by its kind.
        StoreError::Index(i) => storage_fault(e, i.kind(), "index"),
        StoreError::Meta(m) => storage_fault(e, m.kind(), "metadata"),
        StoreError::Backend(b) => storage_fault(e, b.kind(), "storage"),
        // The server's own data: a damaged tenant, keys and stored notes.
        StoreError::TenantUnavailable { .. }
        | StoreError::TenantData { .. }
        | StoreError::Key(_)
        | StoreError::Note(_) => internal(e),
    }
}

fn witness_parts(e: &WitnessError) -> Parts {
    let msg = e.to_string();
    match e {
        WitnessError::InvalidKey(_) | WitnessError::OwnKey { .. } => {
            invalid_field("verifier_key", msg)
        }
        WitnessError::NameTaken { existing, .. } => {
            parts(Code::AlreadyExists, R::AlreadyExists, msg).meta("existing", existing.clone())
        }
        WitnessError::KeyTaken { existing } => {
            parts(Code::AlreadyExists, R::AlreadyExists, msg).meta("existing", existing.clone())
        }
        WitnessError::TooMany { limit, .. } => {
            parts(Code::FailedPrecondition, R::InvalidState, msg).meta("limit", limit.to_string())
        }
        WitnessError::NoSuchWitness {
            tenant,
            fingerprint,
        } => {
            let resource = format!("tenants/{tenant}/witnesses/{fingerprint}");
            parts(Code::NotFound, R::NotFound, format!("{resource} not found"))
                .meta("resource", resource)
        }
        WitnessError::MalformedNote(_)
        | WitnessError::WrongOrigin { .. }
        | WitnessError::NoCosignature { .. }
        | WitnessError::Note(_) => invalid_field("cosigned_note", msg),
        WitnessError::NotStored { tenant, size } => {
            let resource = format!("tenants/{tenant}/checkpoints/{size}");
            parts(Code::NotFound, R::NotFound, format!("{resource} not found"))
                .meta("resource", resource)
        }
        WitnessError::CheckpointMismatch {
            size,
            stored_root,
            given_root,
            ..
        } => parts(Code::InvalidArgument, R::CheckpointMismatch, msg)
            .meta("tree_size", size.to_string())
            .meta("stored_root", stored_root.clone())
            .meta("given_root", given_root.clone()),
        WitnessError::UnknownWitness { name, key_id, .. } => {
            parts(Code::FailedPrecondition, R::WitnessUnknown, msg)
                .meta("witness", name.clone())
                .meta("key_id", key_id.clone())
        }
        WitnessError::BadCosignature { name, .. } => {
            parts(Code::InvalidArgument, R::CosignatureInvalid, msg).meta("witness", name.clone())
        }
        WitnessError::Store(s) => store_parts(s),
        // A damaged witness list or stored note, or an I/O failure: the server's own data.
        WitnessError::DamagedList { .. }
        | WitnessError::DamagedCheckpoint { .. }
        | WitnessError::Io(_) => internal(e),
    }
}

fn records_parts(e: &RecordsError) -> Parts {
    let msg = e.to_string();
    match e {
        RecordsError::Invalid { field, reason } => {
            let mut p = parts(Code::InvalidArgument, R::InvalidField, msg.clone());
            p.bad_field = Some((field.clone(), reason.clone()));
            p.meta("field", field.clone())
        }
        RecordsError::NotFound { id, what } => parts(Code::NotFound, R::NotFound, msg)
            .meta("resource", id.clone())
            .meta("what", what.clone()),
        RecordsError::WrongKind {
            id,
            expected,
            found,
        } => parts(Code::InvalidArgument, R::WrongKind, msg)
            .meta("resource", id.clone())
            .meta("expected", expected.clone())
            .meta("found", found.name()),
        RecordsError::Closed { id, kind } => parts(Code::FailedPrecondition, R::ObjectClosed, msg)
            .meta("resource", id.clone())
            .meta("kind", kind.name()),
        RecordsError::FailedPrecondition { id, .. } => {
            parts(Code::FailedPrecondition, R::InvalidState, msg).meta("resource", id.clone())
        }
        RecordsError::StaleRevision { id, current, .. } => parts(Code::Aborted, R::StaleEtag, msg)
            .meta("resource", id.clone())
            .meta("current_etag", current.to_string()),
        RecordsError::DuplicateCode { code, existing } => {
            parts(Code::AlreadyExists, R::DuplicateCode, msg)
                .meta("code", code.clone())
                .meta("resource", existing.clone())
        }
        RecordsError::AlreadyExists { id } => {
            parts(Code::AlreadyExists, R::AlreadyExists, msg).meta("resource", id.clone())
        }
        RecordsError::DuplicateReference {
            reference,
            existing,
        } => parts(Code::AlreadyExists, R::AlreadyExists, msg)
            .meta("reference", reference.clone())
            .meta("resource", existing.clone()),
        RecordsError::Cycle { id, .. } => {
            parts(Code::InvalidArgument, R::PlanUnitCycle, msg).meta("resource", id.clone())
        }
        RecordsError::InUse { id, .. } => {
            parts(Code::FailedPrecondition, R::PlanUnitInUse, msg).meta("resource", id.clone())
        }
        RecordsError::Inactive { id } => {
            parts(Code::FailedPrecondition, R::PlanUnitInactive, msg).meta("resource", id.clone())
        }
        RecordsError::IdempotencyConflict { request_id } => {
            parts(Code::InvalidArgument, R::RequestIdReused, msg)
                .meta("request_id", request_id.clone())
        }
        RecordsError::ProcessState { process, .. } => {
            parts(Code::FailedPrecondition, R::InvalidState, msg)
                .meta("process", process.to_string())
        }
        RecordsError::NotConfigured { setting, .. } => {
            parts(Code::FailedPrecondition, R::InvalidState, msg).meta("setting", setting.clone())
        }
        RecordsError::RefusedMessage {
            message,
            element,
            rule,
            ..
        } => invalid_field("message", msg)
            .meta("message_type", message.clone())
            .meta("element", element.clone())
            .meta("rule", rule.clone()),
        RecordsError::Destroyed { kind, id, on } => parts(Code::NotFound, R::ObjectDestroyed, msg)
            .meta("resource", id.clone())
            .meta("kind", kind.name())
            .meta("destroyed_on", on.to_string()),
        RecordsError::AccessDenied { id, .. } => {
            parts(Code::PermissionDenied, R::PermissionDenied, msg).meta("resource", id.clone())
        }
        RecordsError::Store(s) => store_parts(s),
        RecordsError::Index(i) => storage_fault(e, i.kind(), "index"),
        RecordsError::Internal(_) => internal(e),
    }
}

impl ApiError {
    fn parts(&self) -> Parts {
        let msg = self.to_string();
        match self {
            ApiError::InvalidField { field, reason } => {
                let mut p = parts(Code::InvalidArgument, R::InvalidField, msg);
                p.bad_field = Some((field.clone(), reason.clone()));
                p.meta("field", field.clone())
            }
            ApiError::InvalidName { field, reason } => {
                let mut p = parts(Code::InvalidArgument, R::InvalidName, msg);
                p.bad_field = Some((field.clone(), reason.clone()));
                p.meta("field", field.clone())
            }
            ApiError::NotFound { resource } => {
                parts(Code::NotFound, R::NotFound, msg).meta("resource", resource.clone())
            }
            ApiError::Unauthenticated(_) => parts(Code::Unauthenticated, R::Unauthenticated, msg),
            ApiError::PermissionDenied { required } => {
                parts(Code::PermissionDenied, R::PermissionDenied, msg)
                    .meta("required", required.clone())
            }
            ApiError::UploadProtocol(_) => parts(Code::InvalidArgument, R::UploadProtocol, msg),
            ApiError::Stream { code, .. } => parts(*code, R::UploadProtocol, msg),
            // Handled in to_status; unreachable here, but a status is still owed.
            ApiError::Relayed(s) => parts(s.code(), R::UploadProtocol, msg),
            ApiError::UploadIdle(_) => parts(Code::DeadlineExceeded, R::UploadIdle, msg),
            ApiError::SizeMismatch {
                expected, actual, ..
            } => parts(Code::InvalidArgument, R::SizeMismatch, msg)
                .meta("expected_size", expected.to_string())
                .meta("actual_size", actual.to_string()),
            ApiError::DigestMismatch { expected, actual } => {
                parts(Code::InvalidArgument, R::DigestMismatch, msg)
                    .meta("expected_sha256", expected.clone())
                    .meta("actual_sha256", actual.clone())
            }
            ApiError::ContentNotUploaded { sha256 } => {
                parts(Code::FailedPrecondition, R::ContentNotUploaded, msg)
                    .meta("sha256", sha256.clone())
            }
            ApiError::ContentCorrupt(_) => parts(Code::DataLoss, R::ContentCorrupt, msg),
            ApiError::Overloaded(_) | ApiError::UploadsBusy(_) => {
                parts(Code::ResourceExhausted, R::Overloaded, msg).retry(200)
            }
            ApiError::ShuttingDown => parts(Code::Unavailable, R::ShuttingDown, msg).retry(1000),
            ApiError::InvalidPageToken => {
                let mut p = parts(Code::InvalidArgument, R::InvalidPageToken, msg.clone());
                p.bad_field = Some(("page_token".into(), msg));
                p.meta("field", "page_token")
            }
            ApiError::UploadOffsetMismatch { persisted, .. } => {
                parts(Code::Aborted, R::UploadOffsetMismatch, msg)
                    .meta("persisted_size", persisted.to_string())
            }
            ApiError::UploadIncomplete { persisted, size } => {
                parts(Code::FailedPrecondition, R::UploadIncomplete, msg)
                    .meta("persisted_size", persisted.to_string())
                    .meta("size", size.to_string())
            }
            ApiError::InvalidRange { size, .. } => {
                parts(Code::OutOfRange, R::InvalidRange, msg).meta("size", size.to_string())
            }
            ApiError::QuotaExceeded { what, limit, .. } => {
                parts(Code::ResourceExhausted, R::QuotaExceeded, msg)
                    .meta("what", *what)
                    .meta("limit", limit.to_string())
            }
            ApiError::FailedPrecondition { resource, .. } => {
                parts(Code::FailedPrecondition, R::InvalidState, msg)
                    .meta("resource", resource.clone())
            }
            ApiError::OperationCancelled => parts(Code::Cancelled, R::OperationCancelled, msg),
            ApiError::OperationInterrupted(_) => parts(Code::Aborted, R::OperationInterrupted, msg),
            ApiError::Records(e) => records_parts(e),
            ApiError::Store(e) => store_parts(e),
            ApiError::Witness(e) => witness_parts(e),
            ApiError::Internal(_) => internal(self),
        }
    }

    /// The gRPC status for this error, with its details.
    pub fn to_status(&self) -> Status {
        if let ApiError::Relayed(s) = self {
            return s.clone();
        }
        build_status(self.parts())
    }

    /// The `google.rpc.Status` of this error (for `Operation.error`).
    pub fn to_rpc_status(&self) -> rpc::Status {
        rpc_status(self.parts())
    }
}

fn any<M: Message>(type_name: &str, m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

fn rpc_status(p: Parts) -> rpc::Status {
    let mut details = vec![any(
        "google.rpc.ErrorInfo",
        &rpc::ErrorInfo {
            reason: p.reason.as_str_name().to_owned(),
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
                    reason: p.reason.as_str_name().to_owned(),
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
    rpc::Status {
        code: p.code as i32,
        message: p.message,
        details,
    }
}

fn build_status(p: Parts) -> Status {
    let code = p.code;
    let status = rpc_status(p);
    Status::with_details(
        code,
        status.message.clone(),
        Bytes::from(status.encode_to_vec()),
    )
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        e.to_status()
    }
}

/// A status for the server itself (overload, shutdown), built like every other.
pub fn server_status(code: Code, reason: R, message: &str) -> Status {
    server_status_with(code, reason, message, Vec::new())
}

/// [`server_status`] with `ErrorInfo` metadata.
pub fn server_status_with(
    code: Code,
    reason: R,
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

/// Reading akte's error details from a received status is the client library's.
pub use akte_api::client::{error_info, reason};

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use akte_core::records::ObjectKind;
    use akte_core::Digest;

    use super::*;

    /// One error of every kind the API sends.
    fn one_of_each() -> Vec<ApiError> {
        let s = String::new;
        let records = |e: RecordsError| ApiError::Records(e);
        vec![
            ApiError::field("subject", "is required"),
            ApiError::InvalidName {
                field: "name".into(),
                reason: "x".into(),
            },
            records(RecordsError::WrongKind {
                id: s(),
                expected: "file".into(),
                found: ObjectKind::Case,
            }),
            ApiError::NotFound { resource: s() },
            records(RecordsError::AlreadyExists { id: s() }),
            records(RecordsError::DuplicateCode {
                code: s(),
                existing: s(),
            }),
            records(RecordsError::Closed {
                kind: ObjectKind::File,
                id: s(),
            }),
            ApiError::FailedPrecondition {
                resource: s(),
                reason: s(),
            },
            records(RecordsError::StaleRevision {
                id: s(),
                expected: 1,
                current: 2,
            }),
            records(RecordsError::Cycle {
                id: s(),
                parent: s(),
            }),
            records(RecordsError::InUse {
                id: s(),
                reason: s(),
            }),
            records(RecordsError::Inactive { id: s() }),
            records(RecordsError::IdempotencyConflict { request_id: s() }),
            ApiError::from(ContentError::DigestMismatch {
                expected: Digest::of(b"a"),
                actual: Digest::of(b"b"),
            }),
            ApiError::from(ContentError::SizeMismatch {
                expected: 1,
                actual: 2,
            }),
            ApiError::ContentNotUploaded { sha256: s() },
            ApiError::UploadProtocol(s()),
            ApiError::ContentCorrupt(s()),
            ApiError::Store(StoreError::NoCheckpoint(s())),
            ApiError::Store(StoreError::BeyondJournal {
                requested: 2,
                available: 1,
            }),
            ApiError::Unauthenticated(s()),
            ApiError::PermissionDenied { required: s() },
            ApiError::Overloaded(1),
            ApiError::Store(StoreError::Fenced {
                tenant: s(),
                reason: s(),
            }),
            ApiError::ShuttingDown,
            ApiError::Internal(s()),
            ApiError::UploadIdle(1),
            records(RecordsError::Destroyed {
                kind: ObjectKind::File,
                id: s(),
                on: chrono::NaiveDate::MIN,
            }),
            ApiError::Witness(WitnessError::UnknownWitness {
                tenant: s(),
                name: s(),
                key_id: s(),
            }),
            ApiError::Witness(WitnessError::BadCosignature {
                name: s(),
                reason: s(),
            }),
            ApiError::Witness(WitnessError::CheckpointMismatch {
                tenant: s(),
                size: 1,
                stored_root: s(),
                given_root: s(),
            }),
            ApiError::InvalidPageToken,
            ApiError::UploadOffsetMismatch {
                persisted: 1,
                reason: s(),
            },
            ApiError::UploadIncomplete {
                persisted: 1,
                size: 2,
            },
            ApiError::InvalidRange { offset: 3, size: 2 },
            ApiError::OperationCancelled,
            ApiError::OperationInterrupted(s()),
            ApiError::QuotaExceeded {
                what: "x",
                limit: 1,
                hint: "y",
            },
            ApiError::Store(StoreError::Content(ContentError::Fenced {
                place: s(),
                reason: s(),
                cause: akte_core::backend::FaultKind::StorageFull,
            })),
            ApiError::Store(StoreError::Journal(JournalError::Io(
                akte_core::backend::IoFailure::new(
                    "fdatasync",
                    s(),
                    std::io::Error::from_raw_os_error(5),
                ),
            ))),
        ]
    }

    #[test]
    fn every_reason_of_the_contract_is_sent_with_the_domain_and_the_enums_name() {
        let mut sent = BTreeSet::new();
        for e in one_of_each() {
            let status = e.to_status();
            let info = error_info(&status).expect("ErrorInfo on every error");
            assert_eq!(info.domain, DOMAIN);
            let r = R::from_str_name(&info.reason)
                .unwrap_or_else(|| panic!("{:?} is not an ErrorReason", info.reason));
            assert_ne!(r, R::Unspecified);
            // The details' status repeats the call's code and message.
            let st = rpc::Status::decode(status.details()).unwrap();
            assert_eq!(st.code, status.code() as i32);
            assert_eq!(st.message, status.message());
            sent.insert(r as i32);
        }
        // Every value of the enum (but UNSPECIFIED) is a reason the server sends, so the
        // contract documents no reason that never comes, and no reason is sent that it
        // does not document.
        let all: BTreeSet<i32> = (1..200).filter(|v| R::try_from(*v).is_ok()).collect();
        assert_eq!(sent, all);
    }

    #[test]
    fn internal_errors_tell_the_client_nothing_of_the_server() {
        let e = ApiError::Internal("/var/lib/akte/tenants/x: permission denied".into());
        let s = e.to_status();
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/var/lib"));
        let e = ApiError::Store(StoreError::TenantUnavailable {
            tenant: "x".into(),
            reason: "/secret/path".into(),
        });
        assert!(!e.to_status().message().contains("/secret"));
    }
}
