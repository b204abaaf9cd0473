//! The `google.longrunning.Operations` service over [`crate::operations`]: get, list, wait,
//! cancel and delete, within the caller's tenant and roles.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::Operation;
use crate::error::ApiError;
use crate::filter;
use crate::names;
use crate::operations::{Entry, Verb};
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::google::longrunning as lro;
use crate::pb::google::longrunning::operations_server::Operations;
use akte_core::records::{RecordsError, TenantRecords};
use prost::Message as _;

use super::{page_after, Api, Caller};

/// Longest WaitOperation.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// WaitOperation without a timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

impl Api {
    /// The operation named, if the caller may see it: of a tenant it sees, started by a
    /// method its roles allow. Anything else is NOT_FOUND, like an operation that is not
    /// there.
    async fn operation(&self, caller: &Caller, name: &str) -> Result<Arc<Entry>, ApiError> {
        let (tenant, id) = names::resource("name", name, "operations")?;
        let not_found = || ApiError::NotFound {
            resource: name.to_owned(),
        };
        let t = self.tenant(caller, &tenant, name, Operation::Read)?;
        let ops = self.state().operations.clone();
        let who = caller.principal.name.clone();
        let entry = super::blocking(move || {
            let Some(e) = ops.get(&tenant, id)? else {
                return Ok(None);
            };
            Ok(visible(&t, &who, &e, true)?.then_some(e))
        })
        .await?
        .ok_or_else(not_found)?;
        if !caller.principal.may(entry.verb().operation()) {
            tracing::warn!(principal = %caller.principal.name, operation = %name, "denied: operation of a method the token's roles do not allow (answered NOT_FOUND)");
            return Err(not_found());
        }
        Ok(entry)
    }
}

/// Whether the caller `t` is bound to may see an operation: the principal that started it
/// may; anyone else only if it may see what the operation is about (its target object or
/// process, or the destruction record it produced). An operation about a hidden file is
/// NOT_FOUND like the file; `log` (a Get, not a listing) writes a denial to the access log
/// like any other denied read.
fn visible(t: &TenantRecords, caller: &str, e: &Entry, log: bool) -> Result<bool, ApiError> {
    let (target, principal, result) = e.about();
    if principal == caller {
        return Ok(true);
    }
    let id_after = |marker: &str| {
        target
            .split_once(marker)
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    // What the operation names, read without the caller's view; then judged with it.
    let all = t.unbound();
    let found = |r: Result<Vec<Uuid>, RecordsError>| match r {
        Ok(ids) => Ok(Some(ids)),
        Err(RecordsError::NotFound { .. }) => Ok(None),
        Err(other) => Err(ApiError::from(other)),
    };
    let named = if let Some(id) = id_after("/disposalProcesses/") {
        found(all.disposal_process(id).map(|p| p.files))?
    } else if let Some(id) = id_after("/handoverProcesses/") {
        found(all.handover_process(id).map(|p| p.files))?
    } else if let Some(id) = ["/files/", "/cases/", "/documents/"]
        .iter()
        .find_map(|m| id_after(m))
    {
        Some(vec![id])
    } else if e.verb() == Verb::Destroy {
        let record = result
            .and_then(|any| pb::DestructionRecord::decode(any.value.as_slice()).ok())
            .and_then(|r| {
                r.name
                    .rsplit('/')
                    .next()
                    .and_then(|s| Uuid::parse_str(s).ok())
            });
        match record {
            Some(id) => found(all.destruction_record(id).map(|(r, _)| {
                r.files
                    .iter()
                    .flat_map(|f| std::iter::once(f.file).chain(f.within))
                    .collect()
            }))?,
            None => None,
        }
    } else {
        None
    };
    let Some(ids) = named else {
        return Ok(true);
    };
    Ok(if log {
        t.admit_all(&ids)?
    } else {
        t.may_see_all(&ids)?
    })
}

fn timeout(t: Option<&prost_types::Duration>) -> Result<Duration, ApiError> {
    let Some(t) = t else {
        return Ok(DEFAULT_WAIT);
    };
    if t.seconds < 0 || t.nanos < 0 {
        return Err(ApiError::field("timeout", "must not be negative"));
    }
    Ok(Duration::new(t.seconds as u64, t.nanos.clamp(0, 999_999_999) as u32).min(MAX_WAIT))
}

#[tonic::async_trait]
impl Operations for Api {
    async fn list_operations(
        &self,
        req: Request<lro::ListOperationsRequest>,
    ) -> Result<Response<lro::ListOperationsResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("name", &r.name)?;
        let t = self.tenant(&caller, &tenant, &r.name, Operation::Read)?;
        let conditions = filter::parse(&r.filter, &["done", "verb"])?;
        for c in &conditions {
            if c.field == "done" {
                c.boolean()?;
            }
        }
        let scope = Scope::new("ListOperations", &[&r.name, &r.filter]);
        let size = crate::convert::page_len(r.page_size)?;
        let after = self.state().page_tokens.open(&scope, &r.page_token)?;
        let after = (!after.is_empty())
            .then(|| {
                String::from_utf8(after)
                    .ok()
                    .and_then(|s| parse_cursor(&s))
                    .ok_or(ApiError::InvalidPageToken)
            })
            .transpose()?;
        let ops = self.state().operations.clone();
        let who = caller.principal.name.clone();
        // Operations about objects the caller may not see are left out, like the objects.
        let listed = super::blocking(move || {
            let mut out = Vec::new();
            for e in ops.list(&tenant)? {
                if visible(&t, &who, &e, false)? {
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await?;
        let visible: Vec<Arc<Entry>> = listed
            .into_iter()
            .filter(|e| caller.principal.may(e.verb().operation()))
            .filter(|e| {
                conditions.iter().all(|c| match c.field.as_str() {
                    "done" => c.holds(if e.is_done() { "true" } else { "false" }),
                    _ => c.holds(e.verb().name()),
                })
            })
            .collect();
        let key = |e: &Arc<Entry>| {
            let (s, n) = e.created();
            (s, n, e.id())
        };
        let (page, next) = page_after(&visible, key, after.as_ref(), size);
        Ok(Response::new(lro::ListOperationsResponse {
            operations: page.iter().map(|e| e.to_pb()).collect(),
            next_page_token: self.state().page_tokens.seal(
                &scope,
                next.map(|(s, n, id)| format!("{s}.{n}.{id}"))
                    .unwrap_or_default()
                    .as_bytes(),
            ),
            unreachable: Vec::new(),
        }))
    }

    async fn get_operation(
        &self,
        req: Request<lro::GetOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        Ok(Response::new(self.operation(&caller, &name).await?.to_pb()))
    }

    async fn delete_operation(
        &self,
        req: Request<lro::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let entry = self.operation(&caller, &name).await?;
        let (ops, shown) = (self.state().operations.clone(), name.clone());
        super::blocking(move || ops.delete(&entry, &shown)).await?;
        tracing::info!(operation = %name, principal = %caller.principal.name, "operation deleted");
        Ok(Response::new(()))
    }

    async fn cancel_operation(
        &self,
        req: Request<lro::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let entry = self.operation(&caller, &name).await?;
        let ops = self.state().operations.clone();
        super::blocking(move || ops.cancel(&entry)).await?;
        tracing::info!(operation = %name, principal = %caller.principal.name, "operation cancellation asked for");
        Ok(Response::new(()))
    }

    async fn wait_operation(
        &self,
        req: Request<lro::WaitOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let entry = self.operation(&caller, &r.name).await?;
        let wait = timeout(r.timeout.as_ref())?;
        let mut draining = self.state().draining.clone();
        let until = tokio::time::Instant::now() + wait;
        let ops = self.state().operations.clone();
        let mut entry = entry;
        // Done, timed out or the server drains: the operation as it stands either way. A
        // copy of an operation another instance runs is read again every poll interval.
        loop {
            let mut done = entry.subscribe();
            let poll = if entry.is_remote() {
                ops.poll_interval()
            } else {
                wait
            };
            let next = (tokio::time::Instant::now() + poll).min(until);
            tokio::select! {
                _ = async { let _ = done.wait_for(|d| *d).await; } => break,
                _ = tokio::time::sleep_until(next) => {}
                _ = async { let _ = draining.wait_for(|d| *d).await; } => break,
            }
            if tokio::time::Instant::now() >= until || !entry.is_remote() {
                break;
            }
            let (o, tenant, id) = (ops.clone(), entry.tenant().to_owned(), entry.id());
            match super::blocking(move || o.get(&tenant, id)).await? {
                Some(e) => entry = e,
                // Deleted meanwhile: the copy read last.
                None => break,
            }
            if entry.is_done() {
                break;
            }
        }
        Ok(Response::new(entry.to_pb()))
    }
}

fn parse_cursor(s: &str) -> Option<(i64, i32, Uuid)> {
    let mut it = s.splitn(3, '.');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        Uuid::parse_str(it.next()?).ok()?,
    ))
}
