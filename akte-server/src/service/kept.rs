//! One path for the records the API keeps (plan units, files, cases and documents):
//! get, list, update, close and reopen work the same way for each kind, so they are
//! written once here, over [`Kept`], and the services only say what differs (the request
//! fields, how a listing finds its items, how an update builds its patch).
//!
//! Every step keeps the order of checks the services had when each wrote its own: the
//! name is parsed, then the tenant and role are checked (`Api::tenant`, which binds the
//! caller for access control), then the request's other fields, and only then is the
//! store touched. Tests in `akte-server/tests` pin the errors this order gives.

use akte_core::records::{
    Case, Document, File, Object, ObjectKind, Page, PageRequest, PlanUnit, RecordsError,
    TenantRecords,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert;
use crate::error::ApiError;
use crate::names::{self, ObjectName};
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;

use super::{blocking, get_kind, reason, Api, Caller};

/// A kind of record the API reads and changes through the generic path.
pub(crate) trait Kept: Sized + Send + 'static {
    /// The kind in the records model.
    const KIND: ObjectKind;
    /// The request field of the message in Update requests (`file` in `file.name`).
    const FIELD: &'static str;
    /// The operation a caller needs to change it.
    const CHANGE: Operation;
    /// The API message.
    type Message: Send + 'static;

    /// The record inside a records-model object, if it is of this kind.
    fn of(o: Object) -> Option<Self>;

    /// The API message of a record of `tenant`.
    fn message(t: &TenantRecords, tenant: &str, v: &Self) -> Self::Message;

    /// The API messages of a listing.
    fn messages(t: &TenantRecords, tenant: &str, items: &[Self]) -> Vec<Self::Message> {
        items.iter().map(|v| Self::message(t, tenant, v)).collect()
    }
}

impl Kept for PlanUnit {
    const KIND: ObjectKind = ObjectKind::PlanUnit;
    const FIELD: &'static str = "plan_unit";
    const CHANGE: Operation = Operation::KeepFiles;
    type Message = pb::PlanUnit;

    fn of(o: Object) -> Option<Self> {
        match o {
            Object::PlanUnit(u) => Some(u),
            _ => None,
        }
    }

    fn message(_: &TenantRecords, tenant: &str, v: &Self) -> pb::PlanUnit {
        convert::plan_unit(tenant, v)
    }
}

impl Kept for File {
    const KIND: ObjectKind = ObjectKind::File;
    const FIELD: &'static str = "file";
    const CHANGE: Operation = Operation::KeepFiles;
    type Message = pb::File;

    fn of(o: Object) -> Option<Self> {
        match o {
            Object::File(f) => Some(f),
            _ => None,
        }
    }

    fn message(_: &TenantRecords, tenant: &str, v: &Self) -> pb::File {
        convert::file(tenant, v)
    }
}

impl Kept for Case {
    const KIND: ObjectKind = ObjectKind::Case;
    const FIELD: &'static str = "case";
    const CHANGE: Operation = Operation::FileDocuments;
    type Message = pb::Case;

    fn of(o: Object) -> Option<Self> {
        match o {
            Object::Case(c) => Some(c),
            _ => None,
        }
    }

    fn message(_: &TenantRecords, tenant: &str, v: &Self) -> pb::Case {
        convert::case(tenant, v)
    }
}

impl Kept for Document {
    const KIND: ObjectKind = ObjectKind::Document;
    const FIELD: &'static str = "document";
    const CHANGE: Operation = Operation::FileDocuments;
    type Message = pb::Document;

    fn of(o: Object) -> Option<Self> {
        match o {
            Object::Document(d) => Some(d),
            _ => None,
        }
    }

    /// A document's parent is named by its kind (file, case or document), which the
    /// document does not hold: it is looked up.
    fn message(t: &TenantRecords, tenant: &str, v: &Self) -> pb::Document {
        convert::document(tenant, v, t.kind_of(v.parent))
    }

    /// The documents of a listing mostly share one parent: its kind is looked up once
    /// per run of the same parent, not once per document.
    fn messages(t: &TenantRecords, tenant: &str, items: &[Self]) -> Vec<pb::Document> {
        let mut last: Option<(Uuid, ObjectKind)> = None;
        items
            .iter()
            .map(|d| {
                let kind = match last {
                    Some((id, kind)) if id == d.parent => kind,
                    _ => {
                        let kind = t.kind_of(d.parent);
                        last = Some((d.parent, kind));
                        kind
                    }
                };
                convert::document(tenant, d, kind)
            })
            .collect()
    }
}

/// The record named `name`, which must be of kind `K`; any other kind, or none, is
/// NOT_FOUND of that name.
pub(crate) fn get_as<K: Kept>(t: &TenantRecords, id: Uuid, name: &str) -> Result<K, ApiError> {
    K::of(get_kind(t, id, K::KIND, name)?).ok_or_else(|| ApiError::NotFound {
        resource: name.to_owned(),
    })
}

/// The children of kind `K` directly inside `parent` (a file, case or document named
/// `parent_name`), one page; what the caller may not see is left out, what it is shown
/// goes to the access log.
pub(crate) fn children<K: Kept>(
    t: &TenantRecords,
    parent: &ObjectName,
    parent_name: &str,
    page: &PageRequest,
) -> Result<Page<K>, ApiError> {
    get_kind(t, parent.id, parent.kind, parent_name)?;
    let p = t.list_children_of_kind(parent.id, Some(K::KIND), page)?;
    t.log_listed(&p.items)?;
    Ok(Page {
        items: p.items.into_iter().filter_map(K::of).collect(),
        next_page_token: p.next_page_token,
    })
}

/// Updates an object of `kind`; without an etag, against whatever revision is current.
fn update(
    t: &TenantRecords,
    actor: &str,
    (id, kind, name): (Uuid, ObjectKind, &str),
    etag: Option<u64>,
    patch: Map<String, Value>,
    reason: Option<String>,
) -> Result<Object, ApiError> {
    let current = get_kind(t, id, kind, name)?;
    if let Some(rev) = etag {
        return t
            .update(actor, id, rev, patch, reason)
            .map_err(ApiError::from);
    }
    // No etag: the caller means "whatever is current". A concurrent writer may move the
    // revision between reading and writing; a few retries ride that out.
    let mut rev = current.revision();
    for _ in 0..5 {
        match t.update(actor, id, rev, patch.clone(), reason.clone()) {
            Err(RecordsError::StaleRevision { current, .. }) => rev = current,
            r => return r.map_err(ApiError::from),
        }
    }
    t.update(actor, id, rev, patch, reason)
        .map_err(ApiError::from)
}

/// The record after an update or lifecycle step, as its API message.
fn changed<K: Kept>(t: &TenantRecords, tenant: &str, o: Object) -> Result<K::Message, ApiError> {
    match K::of(o) {
        Some(v) => Ok(K::message(t, tenant, &v)),
        None => Err(ApiError::Internal(format!(
            "a change of a {:?} returned another kind",
            K::KIND
        ))),
    }
}

/// Closing or reopening a file or case.
pub(crate) enum Lifecycle {
    /// Close, on the given day or today.
    Close(Option<chrono::NaiveDate>),
    /// Reopen, with an optional reason.
    Reopen(Option<String>),
}

/// One page of a listing, as the API answers it: the messages and the sealed token of
/// the next page (empty at the end).
pub(crate) struct Listed<M> {
    /// The messages.
    pub items: Vec<M>,
    /// The sealed next-page token.
    pub next_page_token: String,
}

impl Api {
    /// Get<Kind>: the record named `name` (the request field `name`), for a caller who
    /// may read in its tenant.
    pub(crate) async fn get_kept<K: Kept>(
        &self,
        caller: &Caller,
        name: String,
    ) -> Result<K::Message, ApiError> {
        let o = names::object_of("name", &name, &[K::KIND])?;
        let t = self.tenant(caller, &o.tenant, &name, Operation::Read)?;
        blocking(move || {
            let v = get_as::<K>(&t, o.id, &name)?;
            Ok(K::message(&t, &o.tenant, &v))
        })
        .await
    }

    /// List<Kinds>: one page of records of `tenant` under `parent` (a name the request
    /// gave, already parsed by the caller of this). `rpc` names the listing in its page
    /// tokens, so a token of one listing is refused by another; `fetch` reads the page.
    #[allow(clippy::too_many_arguments)] // the fields of a List request, one by one
    pub(crate) async fn list_kept<K, F>(
        &self,
        caller: &Caller,
        tenant: String,
        parent: String,
        rpc: &str,
        page_size: i32,
        page_token: &str,
        fetch: F,
    ) -> Result<Listed<K::Message>, ApiError>
    where
        K: Kept,
        F: FnOnce(&TenantRecords, &str, &PageRequest) -> Result<Page<K>, ApiError> + Send + 'static,
    {
        let t = self.tenant(caller, &tenant, &parent, Operation::Read)?;
        let scope = Scope::new(rpc, &[&parent]);
        let page = self.page_request(&scope, page_size, page_token)?;
        let (items, next) = blocking(move || {
            let p = fetch(&t, &parent, &page)?;
            Ok((K::messages(&t, &tenant, &p.items), p.next_page_token))
        })
        .await?;
        Ok(Listed {
            items,
            next_page_token: self.seal_token(&scope, next.as_deref()),
        })
    }

    /// List<Kinds> of the children of kind `K` directly inside `parent`, a record of one
    /// of the kinds `containers` (the request field `parent`).
    pub(crate) async fn list_children<K: Kept>(
        &self,
        caller: &Caller,
        parent: String,
        containers: &[ObjectKind],
        rpc: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<Listed<K::Message>, ApiError> {
        let p = names::object_of("parent", &parent, containers)?;
        let tenant = p.tenant.clone();
        let fetch = move |t: &TenantRecords, parent_name: &str, page: &PageRequest| {
            children::<K>(t, &p, parent_name, page)
        };
        self.list_kept(caller, tenant, parent, rpc, page_size, page_token, fetch)
            .await
    }

    /// Update<Kind>: applies the patch `patch` builds (from the record's tenant) to the
    /// record `name` (the request field `<kind>.name`), checked against `etag` when one
    /// is given.
    pub(crate) async fn update_kept<K, P>(
        &self,
        caller: &Caller,
        name: String,
        patch: P,
        etag: &str,
        why: String,
    ) -> Result<K::Message, ApiError>
    where
        K: Kept,
        P: FnOnce(&str) -> Result<Map<String, Value>, ApiError>,
    {
        let o = names::object_of(&format!("{}.name", K::FIELD), &name, &[K::KIND])?;
        let t = self.tenant(caller, &o.tenant, &name, K::CHANGE)?;
        let patch = patch(&o.tenant)?;
        let etag = convert::parse_etag("etag", etag)?;
        let actor = caller.actor().to_owned();
        blocking(move || {
            let obj = update(&t, &actor, (o.id, K::KIND, &name), etag, patch, reason(why))?;
            changed::<K>(&t, &o.tenant, obj)
        })
        .await
    }

    /// Close<Kind>/Reopen<Kind>: resolves `name` as a record of kind `K` in a tenant
    /// where the caller may change it, checks the etag and applies `step`.
    pub(crate) async fn close_or_reopen<K: Kept>(
        &self,
        caller: &Caller,
        name: String,
        etag: &str,
        step: Lifecycle,
    ) -> Result<K::Message, ApiError> {
        let o = names::object_of("name", &name, &[K::KIND])?;
        let t = self.tenant(caller, &o.tenant, &name, K::CHANGE)?;
        let etag = convert::parse_etag("etag", etag)?;
        let actor = caller.actor().to_owned();
        blocking(move || {
            get_kind(&t, o.id, K::KIND, &name)?;
            let obj = match step {
                Lifecycle::Close(date) => t.close(&actor, o.id, etag, date)?,
                Lifecycle::Reopen(reason) => t.reopen(&actor, o.id, etag, reason)?,
            };
            changed::<K>(&t, &o.tenant, obj)
        })
        .await
    }
}
