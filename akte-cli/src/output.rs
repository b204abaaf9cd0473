//! How `akte` prints results and errors, the same way in every command.
//!
//! - `--json`: API objects in the proto3 JSON mapping (lowerCamelCase names, enums by
//!   name, 64-bit integers and bytes as strings, timestamps in RFC 3339, default values
//!   left out), exactly what grpcurl prints for the same call; results of offline
//!   commands as JSON objects. Always one JSON value on standard output, never a signed
//!   note or JSON inside a string.
//! - Without it: text for people (dates as dates, hashes in hex).
//! - Errors: a one-line message on standard error, under `--json` a JSON object with the
//!   gRPC code name, the stable reason and the message; the exit code by the table in
//!   the crate documentation (`lib.rs`).

use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{json, Value};
use tonic::Code;

use akte_core::backend::{BackendError, FaultKind};

/// The help heading of the options every command takes, shown after a command's own.
pub const GLOBAL: &str = "Global options";

/// A usage error found after parsing the arguments (a missing `--tenant`, a malformed
/// date, nothing to change): exit 2, like the errors clap finds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A usage error as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow!(Usage(message.into()))
}

/// No token was given to a command that talks to akted (exit 5).
#[derive(Debug, thiserror::Error)]
#[error(
    "no token: set AKTE_TOKEN_FILE to a file holding one (e.g. DATA_DIR/bootstrap-token), \
     or give --token-file FILE, or set AKTE_TOKEN"
)]
pub struct NoToken;

/// Something asked for does not exist (exit 6), found without a server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The proto3 JSON of a message of the API (what grpcurl prints for it).
pub fn api<M: prost::Message + prost::Name>(message: &M) -> Result<Value> {
    let pool = pool()?;
    let name = M::full_name();
    let descriptor = pool
        .get_message_by_name(&name)
        .ok_or_else(|| anyhow!("{name} is not in the API's descriptor set"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| anyhow!("re-reading a {name}: {e}"))?;
    Ok(serde_json::to_value(&dynamic)?)
}

/// The descriptors of the API, decoded once from the set the build embeds.
fn pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<std::result::Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(akte_api::pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow!("the embedded API descriptor set does not decode: {e}"))
}

/// Prints one JSON value on standard output.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned())
    );
}

/// A timestamp of the API as people read it: `2026-12-05 11:19:21 UTC`.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// What went wrong, classified for the exit code and the JSON error.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// The gRPC code name (`NOT_FOUND`), also for errors found without a server.
    pub code: &'static str,
    /// The stable reason (`google.rpc.ErrorInfo.reason` for server errors).
    pub reason: String,
    /// The message.
    pub message: String,
    /// The process exit code.
    pub exit: u8,
}

/// Classifies an error of any command.
pub fn failure(e: &anyhow::Error) -> Failure {
    let message = format!("{e:#}");
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        let reason = akte_api::client::error_info(s)
            .map(|i| i.reason)
            .unwrap_or_default();
        return Failure {
            code: code_name(s.code()),
            reason,
            message: s.message().to_owned(),
            exit: exit_code(s.code()),
        };
    }
    let local = |code: Code, reason: &str| Failure {
        code: code_name(code),
        reason: reason.to_owned(),
        message: message.clone(),
        exit: exit_code(code),
    };
    if e.downcast_ref::<Usage>().is_some() {
        return Failure {
            exit: 2,
            ..local(Code::InvalidArgument, "USAGE")
        };
    }
    if e.downcast_ref::<NotFound>().is_some() {
        return local(Code::NotFound, "NOT_FOUND");
    }
    if e.downcast_ref::<NoToken>().is_some() {
        return local(Code::Unauthenticated, "NO_TOKEN");
    }
    if let Some(akte_api::client::ClientError::Connect { .. }) =
        e.downcast_ref::<akte_api::client::ClientError>()
    {
        return local(Code::Unavailable, "UNREACHABLE");
    }
    let store = e.downcast_ref::<akte_core::store::StoreError>();
    let backend = e.downcast_ref::<BackendError>().or(match store {
        Some(akte_core::store::StoreError::Backend(b)) => Some(b),
        _ => None,
    });
    match backend {
        // The directory given is not one akte can open: the argument is wrong.
        Some(BackendError::NotAStore { .. } | BackendError::UnsupportedFormat { .. }) => {
            return Failure {
                exit: 2,
                ..local(Code::InvalidArgument, "NOT_A_DATA_DIRECTORY")
            }
        }
        // akted (or another akte) has it open.
        Some(BackendError::Locked { .. }) => return local(Code::Unavailable, "LOCKED"),
        _ => {}
    }
    if let Some(s) = store {
        if let akte_core::store::StoreError::InvalidTenantId { .. } = s {
            return local(Code::InvalidArgument, "INVALID_TENANT_ID");
        }
        return match s.kind() {
            FaultKind::NotFound => local(Code::NotFound, "NOT_FOUND"),
            FaultKind::Conflict => local(Code::AlreadyExists, "ALREADY_EXISTS"),
            FaultKind::Unavailable => local(Code::Unavailable, "STORAGE_UNAVAILABLE"),
            FaultKind::StorageFull => local(Code::ResourceExhausted, "STORAGE_FULL"),
            FaultKind::Corrupt => local(Code::DataLoss, "DATA_CORRUPT"),
            _ => local(Code::Unknown, "ERROR"),
        };
    }
    local(Code::Unknown, "ERROR")
}

/// Reports an error on standard error (as JSON under `--json`) and returns its exit code.
pub fn report(e: &anyhow::Error, json: bool) -> ExitCode {
    let f = failure(e);
    if json {
        let v = json!({"error": {"code": f.code, "reason": f.reason, "message": f.message}});
        eprintln!("{}", serde_json::to_string(&v).unwrap_or_default());
    } else if f.reason.is_empty() || f.reason == "ERROR" || f.reason == "USAGE" {
        eprintln!("akte: error: {}", f.message);
    } else {
        eprintln!("akte: error: {} ({}): {}", f.code, f.reason, f.message);
    }
    ExitCode::from(f.exit)
}

/// Reports that an offline check could not run at all (unreadable input, a malformed
/// key): exit 2, as `tools/verify_transfer.py` does, as JSON under `--json`.
pub fn report_cannot_check(message: &str, json: bool) -> ExitCode {
    if json {
        let v = json!({"error": {"code": "INVALID_ARGUMENT", "reason": "CANNOT_CHECK", "message": message}});
        eprintln!("{}", serde_json::to_string(&v).unwrap_or_default());
    } else {
        eprintln!("akte: error: {message}");
    }
    ExitCode::from(2)
}

/// Exit code of a failed call, from its gRPC status (documented in the README).
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => 4,
        Code::Unauthenticated | Code::PermissionDenied => 5,
        Code::NotFound => 6,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::Aborted
        | Code::OutOfRange => 7,
        Code::DataLoss => 8,
        _ => 3,
    }
}

/// The name of a gRPC code as the proto3 JSON of `google.rpc.Code` spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use akte_api::pb::akte::v1 as pb;

    #[test]
    fn api_objects_use_the_proto3_json_mapping() {
        let f = pb::File {
            name: "tenants/t/files/x".into(),
            plan_unit: "tenants/t/planUnits/u".into(),
            state: pb::State::Closed as i32,
            close_date: Some(akte_api::pb::google::r#type::Date {
                year: 2026,
                month: 1,
                day: 5,
            }),
            created: Some(pb::AuditStamp {
                actor: "clerk:a".into(),
                time: Some(prost_types::Timestamp {
                    seconds: 1_767_225_600,
                    nanos: 0,
                }),
                journal_seq: 7,
            }),
            ..Default::default()
        };
        let v = api(&f).expect("json");
        assert_eq!(v["planUnit"], "tenants/t/planUnits/u");
        assert_eq!(v["state"], "STATE_CLOSED");
        assert_eq!(v["closeDate"]["year"], 2026);
        assert_eq!(v["created"]["time"], "2026-01-01T00:00:00Z");
        // uint64 is a string in proto3 JSON; default values are left out.
        assert_eq!(v["created"]["journalSeq"], "7");
        assert!(v.get("subject").is_none(), "{v}");
        let r = pb::Rendition {
            sha256: vec![0xab; 32].into(),
            ..Default::default()
        };
        let v = api(&r).expect("json");
        assert_eq!(v["sha256"], "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=");
    }

    #[test]
    fn errors_are_classified_for_exit_code_and_json() {
        let f = failure(&usage("--tenant is required"));
        assert_eq!(
            (f.code, f.reason.as_str(), f.exit),
            ("INVALID_ARGUMENT", "USAGE", 2)
        );
        let f = failure(&anyhow!(NoToken));
        assert_eq!(f.exit, 5);
        assert!(f.message.contains("AKTE_TOKEN_FILE"), "{}", f.message);
        let f = failure(&anyhow!(tonic::Status::not_found("gone")));
        assert_eq!((f.code, f.exit), ("NOT_FOUND", 6));
        let f = failure(&anyhow!(akte_core::store::StoreError::UnknownTenant(
            "x".into()
        )));
        assert_eq!((f.code, f.exit), ("NOT_FOUND", 6));
        let f = failure(&anyhow!(BackendError::Locked {
            place: "/srv/akte".into()
        }));
        assert_eq!((f.code, f.exit), ("UNAVAILABLE", 4));
        let f = failure(&anyhow!("disk on fire"));
        assert_eq!((f.code, f.exit), ("UNKNOWN", 3));
    }

    #[test]
    fn times_are_dates() {
        let t = prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 0,
        };
        assert_eq!(time(Some(&t)), "2026-01-01 00:00:00 UTC");
        assert_eq!(time(None), "-");
    }
}
