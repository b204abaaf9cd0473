//! The records model: file plan, files (Akten), cases (Vorgänge), documents with versions
//! and renditions, history, closing and queries, over the storage engine.
//!
//! Every change is one journal entry ([`event`]) whose salted record holds the personal
//! data; the [`projection`] derives the current state, listings and history in the index,
//! so that `rebuild-index` recreates them from the journal alone.
//!
//! ```
//! use akte_core::records::{NewDocument, NewFile, NewPlanUnit, NewRendition, NewVersion, Records};
//! use akte_core::store::StoreOptions;
//! use std::io::Read;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let records = Records::open(akte_core::embedded::open(dir.path())?, StoreOptions::default())?;
//! let agency = records.create_tenant("bauamt-erfurt")?;
//! let unit = agency.create_plan_unit("registrar:weber", NewPlanUnit {
//!     code: "632.1".into(),
//!     title: "Baugenehmigungen".into(),
//!     ..NewPlanUnit::default()
//! }, None)?;
//! let file = agency.create_file("registrar:weber", NewFile {
//!     plan_unit: unit.id,
//!     subject: "Neubau Einfamilienhaus, Flurstück 12/3".into(),
//!     ..NewFile::default()
//! }, None)?;
//! assert!(file.reference.starts_with("632.1-0001/"));
//! let doc = agency.create_document("clerk:schmidt", NewDocument {
//!     parent: file.id,
//!     subject: "Bauantrag".into(),
//!     ..NewDocument::default()
//! }, None)?;
//! let put = agency.put_content(&b"%PDF-1.7 ..."[..])?;
//! let version = agency.add_version("clerk:schmidt", doc.id, NewVersion {
//!     comment: String::new(),
//!     renditions: vec![NewRendition {
//!         file_name: "bauantrag.pdf".into(),
//!         media_type: "application/pdf".into(),
//!         sha256: put.digest,
//!         size: put.size,
//!     }],
//! }, None)?;
//! let mut bytes = Vec::new();
//! agency.open_rendition(&version.renditions[0])?.read_to_end(&mut bytes)?;
//! assert_eq!(bytes, b"%PDF-1.7 ...");
//! # Ok(()) }
//! ```

mod appraisal;
pub mod civil;
mod destroyable;
pub mod destruction;
pub mod disposal;
pub mod event;
pub(crate) mod evidence;
pub mod fields;
pub mod handover;
pub mod identity;
pub mod import;
pub mod legacy;
mod mapping;
pub mod org;
mod plan_exchange;
pub mod projection;
mod read;
mod refile;
pub mod retention;
pub mod schema;
mod service;
mod status;
pub mod types;
pub mod validate;
pub mod view;

use std::sync::Arc;

use crate::backend::Backend;

use crate::index::IndexError;
use crate::store::{Store, StoreError, StoreOptions};

pub use disposal::{
    DisposalProcess, OutgoingMessage, Parties, ProcessStage, Received, SentObject, MAX_MESSAGE_XML,
};
pub use fields::{
    FieldDefinition, FieldDefinitionPatch, FieldFilter, FieldScope, FieldType, FieldValue,
    FieldValues, NewFieldDefinition,
};
pub use handover::{HandoverProcess, HandoverSent, PackageImport, PackageLimits, PackageOptions};
pub use identity::{DisposalSettings, ListCode, PartyIdentity};
pub use import::{ImportOutcome, ObjectProblem};
pub use legacy::{
    ImportCase, ImportDocument, ImportFile, ImportItem, ImportObject, ImportParent, ImportPlanUnit,
    ImportReport, ImportSource, ImportVersion, ImportedObject, ItemReport, ItemStatus,
};
pub use org::{AccessLogItem, Clearance, ObjectGrants, OrgUnit};
pub use plan_exchange::PlanImport;
pub use projection::RecordsProjection;
pub use read::{Query, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use retention::{
    retention_end, DisposalExplanation, DisposalProgress, DisposalStatus, DueFilter, RetentionRule,
};
pub use service::{
    NewCase, NewDocument, NewFile, NewPlanUnit, NewRendition, NewVersion, TenantRecords,
    DEFAULT_REFERENCE_PATTERN,
};
pub use types::*;

/// Errors of the records model. Each says what is wrong with which object or field.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// A field of the request is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No object with that id (in this tenant).
    #[error("{what} {id} does not exist")]
    NotFound {
        /// What was looked for ("object", "file", "version", ...).
        what: String,
        /// The id, reference or code looked for.
        id: String,
    },
    /// The object exists but is of another kind.
    #[error("{id} is a {found}, not a {expected}")]
    WrongKind {
        /// The object.
        id: String,
        /// What the request needs.
        expected: String,
        /// What it is.
        found: ObjectKind,
    },
    /// The object, or a file or case containing it, is closed (zdA).
    #[error("{kind} {id} is closed; reopen it first")]
    Closed {
        /// Kind of the closed object.
        kind: ObjectKind,
        /// Its id.
        id: String,
    },
    /// The request does not fit the object's state (closing a closed file, ...).
    #[error("{kind} {id}: {reason}")]
    FailedPrecondition {
        /// Kind of the object.
        kind: ObjectKind,
        /// Its id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The caller's revision (etag) is not the current one.
    #[error("{id} was changed meanwhile: revision {current} is current, the request was based on {expected}")]
    StaleRevision {
        /// The object.
        id: String,
        /// Revision in the request.
        expected: u64,
        /// Current revision.
        current: u64,
    },
    /// A plan unit code is taken.
    #[error("plan unit code {code} is already used by plan unit {existing}")]
    DuplicateCode {
        /// The code.
        code: String,
        /// The unit holding it.
        existing: String,
    },
    /// A file reference is taken (by a file, or kept by a destroyed one).
    #[error("file reference {reference} is already used by {existing}")]
    DuplicateReference {
        /// The reference.
        reference: String,
        /// The file holding it.
        existing: String,
    },
    /// A client-chosen id is taken.
    #[error("an object with id {id} already exists")]
    AlreadyExists {
        /// The id.
        id: String,
    },
    /// A plan unit would become its own ancestor.
    #[error("plan unit {id} cannot be moved under {parent}: that would make a cycle")]
    Cycle {
        /// The unit moved.
        id: String,
        /// The requested parent.
        parent: String,
    },
    /// The object was destroyed after its retention; only a tombstone remains.
    #[error("{kind} {id} was destroyed on {on}")]
    Destroyed {
        /// Kind of the destroyed object.
        kind: ObjectKind,
        /// Its id.
        id: String,
        /// When.
        on: chrono::NaiveDate,
    },
    /// A plan unit cannot be deleted while used.
    #[error("plan unit {id} is in use: {reason}; deactivate it instead")]
    InUse {
        /// The unit.
        id: String,
        /// What uses it.
        reason: String,
    },
    /// A deactivated plan unit accepts no new files or units.
    #[error("plan unit {id} is deactivated")]
    Inactive {
        /// The unit.
        id: String,
    },
    /// An idempotency key was reused for a different request.
    #[error("request id {request_id:?} was already used for a different request")]
    IdempotencyConflict {
        /// The key.
        request_id: String,
    },
    /// A disposal process is at a stage where the request does not fit; the reason says
    /// what the caller can do.
    #[error("disposal process {process} {reason}")]
    ProcessState {
        /// The process.
        process: uuid::Uuid,
        /// Its stage, what the request needs, and what to do.
        reason: String,
    },
    /// A tenant setting the request needs is not set.
    #[error(
        "the tenant's disposal settings lack {what} (setting {setting}); an admin sets it \
         (gRPC UpdateDisposalSettings, CLI `akte disposal settings set`)"
    )]
    NotConfigured {
        /// The setting, e.g. `agency.key`.
        setting: String,
        /// What it is, in words.
        what: String,
    },
    /// A message of the archive breaks a rule; nothing was recorded.
    #[error("{}", refused_text(message, element, reason))]
    RefusedMessage {
        /// The message: `0502`, `0504`, `0506`, `0507`, or `ZIP` for its container.
        message: String,
        /// The element path where the rule failed, when there is one, e.g.
        /// `/Aussonderung.AussonderungImportBestaetigen.0506/AusgesondertesSGO[2]/IDSGO`.
        element: String,
        /// A short name of the rule, e.g. `unknown-object`, `not-offered`,
        /// `required-element`.
        rule: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The caller may see the object but not do this to it (a read-only share, a
    /// lowering of its level by someone who is not its registrar).
    #[error("access to {id} denied: {reason}")]
    AccessDenied {
        /// The object.
        id: String,
        /// Why.
        reason: String,
    },
    /// Storage engine error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Index error.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Something that should not happen (no randomness, a malformed index value).
    #[error("internal error: {0}")]
    Internal(String),
}

fn refused_text(message: &str, element: &str, reason: &str) -> String {
    if element.is_empty() || reason.contains(element) {
        format!("the {message} is refused: {reason}")
    } else {
        format!("the {message} is refused at {element}: {reason}")
    }
}

/// A store opened with the records model's projection.
#[derive(Debug, Clone)]
pub struct Records {
    store: Arc<Store>,
}

impl Records {
    /// Opens the tenants of `backend` with the records model (for a data directory:
    /// [`crate::embedded::open`]).
    pub fn open(backend: Arc<dyn Backend>, options: StoreOptions) -> Result<Records, RecordsError> {
        let options = StoreOptions {
            projection: Arc::new(RecordsProjection),
            ..options
        };
        let records = Records {
            store: Arc::new(Store::open(backend, options)?),
        };
        records.recover()?;
        Ok(records)
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Creates a tenant (agency) with its own journal, content store and signing key.
    pub fn create_tenant(&self, id: &str) -> Result<TenantRecords, RecordsError> {
        Ok(TenantRecords::new(self.store.create_tenant(id)?))
    }

    /// An existing tenant.
    pub fn tenant(&self, id: &str) -> Result<TenantRecords, RecordsError> {
        Ok(TenantRecords::new(self.store.tenant(id)?))
    }

    /// Completes destructions a crash interrupted (see [`destruction`]); run at open.
    fn recover(&self) -> Result<(), RecordsError> {
        for t in self.store.tenants() {
            destruction::recover(&t)?;
        }
        Ok(())
    }

    /// Ids of all tenants.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.store
            .tenants()
            .iter()
            .map(|t| t.id().to_owned())
            .collect()
    }
}
