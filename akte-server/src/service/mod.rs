//! The gRPC services over the records model. One [`Api`] value implements every service
//! trait; each call authenticates, checks tenant and role, and runs the (blocking) core
//! call on the blocking thread pool.

mod access;
mod batch;
mod cases;
mod disposal;
mod documents;
mod feed;
mod fields;
mod files;
mod journal;
mod kept;
mod migration;
mod operations;
mod plan;
mod retention;
mod search;
mod sessions;
mod tenants;

pub use disposal::{remove_temporary_zips, MAX_RECEIVED_MESSAGE};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use akte_core::backend::ReadScope;
use akte_core::records::{Object, ObjectKind, PageRequest, Records, RecordsError, TenantRecords};
use akte_core::store::StoreError;
use uuid::Uuid;

use crate::admission::Admitted;
use crate::auth::{Operation, Principal, TokenStore};
use crate::error::ApiError;
use crate::names;
use crate::operations::Operations;
use crate::page_token::{PageTokens, Scope};
use crate::uploads::Uploads;

/// Streams of WatchEntries open at once (they do not count against the concurrency limit
/// of calls, which they would otherwise hold for hours).
pub const MAX_WATCHERS: usize = 256;

/// What all services share.
#[derive(Debug)]
pub struct State {
    /// The records of all tenants.
    pub records: Records,
    /// Known tokens.
    pub tokens: RwLock<TokenStore>,
    /// One verification at a time.
    pub verify_lock: Arc<tokio::sync::Mutex<()>>,
    /// How long an upload may send nothing.
    pub upload_idle: Duration,
    /// Where this instance writes temporary files (the ZIPs of disposal streams).
    pub scratch_dir: std::path::PathBuf,
    /// The key of page tokens.
    pub page_tokens: PageTokens,
    /// Long-running operations.
    pub operations: Arc<Operations>,
    /// Resumable upload sessions.
    pub uploads: Arc<Uploads>,
    /// Turns true when the server starts draining for shutdown.
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// Permits of open WatchEntries streams.
    pub watchers: Arc<tokio::sync::Semaphore>,
    /// What all uploads together may buffer.
    pub upload_memory: crate::upload::UploadMemory,
    /// The full-text indexes and their background indexer.
    pub fulltext: Arc<akte_fulltext::Fulltext>,
}

impl State {
    /// The principal of a call's `authorization` header value: `Bearer <token>` with a
    /// token the server knows and that has not expired.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<Principal>, ApiError> {
        let deny = |why: &str| {
            ApiError::Unauthenticated(format!(
                "{why}: send the metadata `authorization: Bearer <token>` with a token the server knows"
            ))
        };
        let Some(value) = authorization else {
            return Err(deny("no bearer token"));
        };
        let value = std::str::from_utf8(value).map_err(|_| deny("malformed authorization"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| deny("authorization is not `Bearer <token>`"))?;
        let principal = {
            let tokens = self
                .tokens
                .read()
                .map_err(|_| ApiError::Internal("token store lock poisoned".into()))?;
            tokens.authenticate(token)
        };
        principal.map_err(|refusal| deny(&refusal.to_string()))
    }
}

/// The implementation of every akte service.
#[derive(Debug, Clone)]
pub struct Api {
    state: Arc<State>,
}

/// The caller of one request.
pub(crate) struct Caller {
    principal: Arc<Principal>,
    method: String,
}

impl Caller {
    /// The actor recorded in the journal.
    fn actor(&self) -> &str {
        &self.principal.name
    }
}

fn method_of<T>(req: &tonic::Request<T>) -> String {
    req.extensions()
        .get::<tonic::GrpcMethod>()
        .map(|m| format!("{}/{}", m.service(), m.method()))
        .unwrap_or_else(|| "unknown".into())
}

impl Api {
    /// An API over shared state.
    pub fn new(state: Arc<State>) -> Api {
        Api { state }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The caller of a request: the principal the admission layer found for its token
    /// (`crate::admission`), or, where the API is served without that layer, the
    /// principal of its token checked here. While the server drains, every call is
    /// answered SHUTTING_DOWN instead.
    pub(crate) fn caller<T>(&self, req: &tonic::Request<T>) -> Result<Caller, ApiError> {
        if *self.state.draining.borrow() {
            return Err(ApiError::ShuttingDown);
        }
        let method = method_of(req);
        if let Some(Admitted(principal)) = req.extensions().get::<Admitted>() {
            return Ok(Caller {
                principal: principal.clone(),
                method,
            });
        }
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_encoded_bytes());
        let principal = self.state.authenticate(header).inspect_err(|e| {
            tracing::warn!(method = %method, peer = ?req.remote_addr(), "denied: {e}");
        })?;
        Ok(Caller { principal, method })
    }

    /// The records of `tenant` if the caller may do `op` there (the table of roles and
    /// operations in `akte_core::access`).
    ///
    /// Another tenant is reported as NOT_FOUND of `resource` (exactly like a resource that
    /// does not exist); a missing role as PERMISSION_DENIED. Both are logged.
    pub(crate) fn tenant(
        &self,
        caller: &Caller,
        tenant: &str,
        resource: &str,
        op: Operation,
    ) -> Result<TenantRecords, ApiError> {
        let p = &caller.principal;
        if !p.sees(tenant) {
            tracing::warn!(principal = %p.name, method = %caller.method, resource, "denied: resource of another tenant (answered NOT_FOUND)");
            return Err(ApiError::NotFound {
                resource: resource.to_owned(),
            });
        }
        if !p.may(op) {
            let required: Vec<&str> = op.roles().iter().map(|r| r.name()).collect();
            tracing::warn!(principal = %p.name, method = %caller.method, resource, "denied: role missing (needs one of {})", required.join(", "));
            self.journal_role_denial(caller, tenant, resource, op);
            return Err(ApiError::PermissionDenied {
                required: required.join(", "),
            });
        }
        let records = self.state.records.tenant(tenant).map_err(|e| match e {
            RecordsError::Store(StoreError::UnknownTenant(_)) => ApiError::NotFound {
                resource: resource.to_owned(),
            },
            other => other.into(),
        })?;
        // Bound to the caller: what it may not see is not found, listings leave it out,
        // confidential reads and denials go to the access log (`akte_core::records::view`).
        // Unit ids were checked when the token was made; one that is no UUID binds nothing.
        let units: Vec<Uuid> = p
            .units
            .iter()
            .filter_map(|u| Uuid::parse_str(u).ok())
            .collect();
        // Its reads (the caller's units and clearance) share one read scope (see
        // `blocking`).
        Ok(ReadScope::run(|| {
            records.bind(&p.name, &p.roles, &units, op)
        })?)
    }

    /// Writes the refusal of a call by the role table to the tenant's access log (issue
    /// 18: every denied attempt is a journal entry): one entry per refused request, under
    /// the file, case or document the request named, else in the tenant's own log. It is
    /// written on the blocking pool while the refusal is answered; a tenant that cannot be
    /// written (fenced, read-only) keeps the refusal in the server log only.
    fn journal_role_denial(&self, caller: &Caller, tenant: &str, resource: &str, op: Operation) {
        let Ok(records) = self.state.records.tenant(tenant) else {
            return;
        };
        let object = names::object("resource", resource).ok().map(|o| o.id);
        let principal = caller.principal.name.clone();
        let (method, shown) = (caller.method.clone(), resource.to_owned());
        let operation = op.name();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn_blocking(move || {
            if let Err(e) = records.log_role_denial(&principal, operation, object) {
                tracing::warn!(principal = %principal, method = %method, resource = %shown, "a refused call could not be written to the access log: {e}");
            }
        });
    }

    /// Requires an administrator of all tenants.
    pub(crate) fn global_admin(&self, caller: &Caller) -> Result<(), ApiError> {
        if caller.principal.is_global_admin() {
            return Ok(());
        }
        tracing::warn!(principal = %caller.principal.name, method = %caller.method, "denied: needs an admin token for all tenants");
        Err(ApiError::PermissionDenied {
            required: "admin for all tenants (tenant \"*\")".into(),
        })
    }
}

impl Api {
    /// Opens a page token of a listing of the records model.
    pub(crate) fn open_token(&self, scope: &Scope, token: &str) -> Result<String, ApiError> {
        self.state.page_tokens.open_str(scope, token)
    }

    /// Seals the records model's next-page token.
    pub(crate) fn seal_token(&self, scope: &Scope, next: Option<&str>) -> String {
        self.state.page_tokens.seal_str(scope, next)
    }

    /// A records-model page request from a request's size and (sealed) token.
    pub(crate) fn page_request(
        &self,
        scope: &Scope,
        page_size: i32,
        page_token: &str,
    ) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            page_size: crate::convert::page_size(page_size)?,
            page_token: self.open_token(scope, page_token)?,
        })
    }
}

/// One page of an in-memory listing sorted by `key`: the items after the cursor `after`,
/// at most `size` of them, and the key to resume after when more follow.
pub(crate) fn page_after<'a, T, K: Ord + Clone>(
    items: &'a [T],
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    size: usize,
) -> (Vec<&'a T>, Option<K>) {
    let start = match after {
        Some(a) => items.partition_point(|i| key(i) <= *a),
        None => 0,
    };
    let page: Vec<&T> = items.iter().skip(start).take(size).collect();
    let next = if start + page.len() < items.len() {
        page.last().map(|i| key(i))
    } else {
        None
    };
    (page, next)
}

/// Runs a blocking core call on the blocking pool, in a read scope of its own: on a
/// shared database the call's index reads check once that this instance's cache holds
/// at least what was committed when the call started, instead of asking the database
/// every time (`akte_core::backend::ReadScope`).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || ReadScope::run(f))
        .await
        .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))?
}

/// Maps a core "not found" or "wrong kind" for an object named by the caller to
/// NOT_FOUND of that name: a file id used as a case is simply no such case.
pub(crate) fn named(name: &str) -> impl Fn(RecordsError) -> ApiError + '_ {
    move |e| match e {
        RecordsError::NotFound { .. } | RecordsError::WrongKind { .. } => ApiError::NotFound {
            resource: name.to_owned(),
        },
        other => other.into(),
    }
}

/// The object named, which must be of `kind`.
pub(crate) fn get_kind(
    t: &TenantRecords,
    id: Uuid,
    kind: ObjectKind,
    name: &str,
) -> Result<Object, ApiError> {
    let o = t.get(id).map_err(named(name))?;
    if o.kind() != kind {
        return Err(ApiError::NotFound {
            resource: name.to_owned(),
        });
    }
    Ok(o)
}

/// A reason field: empty is none.
pub(crate) fn reason(r: String) -> Option<String> {
    (!r.is_empty()).then_some(r)
}
