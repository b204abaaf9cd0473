//! Events: what one journal entry of the records model says, as a salted record.
//!
//! The entry itself holds only the event kind (e.g. `file.update`), the object's UUID and
//! the digest of this record; the record, attached to the same journal record, holds the
//! personal data. It starts with 16 random bytes of salt, so its digest reveals nothing
//! about its content even for guessable values, and destruction can remove record and salt
//! while the entry, and every hash above it, stays verifiable.
//!
//! Events hold what the writer decided (new field values, the generated reference, the
//! objects a closing cascades to); everything else (revisions, stamps, history, indexes)
//! the projection derives, so a rebuilt index equals the live one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::digest::Digest;

use super::types::{OriginalHistoryItem, OriginalStamp, Rendition};

/// Event kinds of the records model (the journal entry's `kind`).
pub mod kind {
    /// Tenant settings changed.
    pub const TENANT_CONFIGURE: &str = "tenant.configure";
    /// A plan unit was created.
    pub const PLAN_UNIT_CREATE: &str = "plan_unit.create";
    /// A plan unit's fields changed (including deactivation).
    pub const PLAN_UNIT_UPDATE: &str = "plan_unit.update";
    /// An unused plan unit was deleted.
    pub const PLAN_UNIT_DELETE: &str = "plan_unit.delete";
    /// A file or sub-file was created.
    pub const FILE_CREATE: &str = "file.create";
    /// A file's fields changed.
    pub const FILE_UPDATE: &str = "file.update";
    /// A file was closed (zdA), with its cases and sub-files.
    pub const FILE_CLOSE: &str = "file.close";
    /// A file was reopened.
    pub const FILE_REOPEN: &str = "file.reopen";
    /// A case or sub-case was created.
    pub const CASE_CREATE: &str = "case.create";
    /// A case's fields changed.
    pub const CASE_UPDATE: &str = "case.update";
    /// A case was closed, with its sub-cases.
    pub const CASE_CLOSE: &str = "case.close";
    /// A case was reopened.
    pub const CASE_REOPEN: &str = "case.reopen";
    /// A document or attachment was created.
    pub const DOCUMENT_CREATE: &str = "document.create";
    /// A document's fields changed.
    pub const DOCUMENT_UPDATE: &str = "document.update";
    /// A new version of a document was stored.
    pub const VERSION_ADD: &str = "version.add";
    /// Retention or disposal decision set on a file.
    pub const FILE_RETENTION: &str = "file.retention";
    /// A hold was placed.
    pub const HOLD_PLACE: &str = "hold.place";
    /// A hold was released.
    pub const HOLD_RELEASE: &str = "hold.release";
    /// A file and everything in it was destroyed.
    pub const DISPOSAL_DESTROY: &str = "disposal.destroy";
    /// Files were offered to the archive (0501).
    pub const DISPOSAL_OFFER: &str = "disposal.offer";
    /// The archive confirmed receipt of the offer (0504).
    pub const DISPOSAL_OFFER_RECEIPT: &str = "disposal.offer_receipt";
    /// The archive's appraisal was read (0502).
    pub const DISPOSAL_APPRAISE: &str = "disposal.appraise";
    /// Files were transferred (0503).
    pub const DISPOSAL_TRANSFER: &str = "disposal.transfer";
    /// The archive confirmed receipt of the transfer (0507).
    pub const DISPOSAL_TRANSFER_RECEIPT: &str = "disposal.transfer_receipt";
    /// The archive confirmed the import (0506).
    pub const DISPOSAL_IMPORT_CONFIRM: &str = "disposal.import_confirm";
    /// A plan unit was imported with its original metadata.
    pub const PLAN_UNIT_IMPORT: &str = "plan_unit.import";
    /// A file or sub-file was imported with its original reference, dates and state.
    pub const FILE_IMPORT: &str = "file.import";
    /// A case or sub-case was imported.
    pub const CASE_IMPORT: &str = "case.import";
    /// A document was imported with all its versions and renditions.
    pub const DOCUMENT_IMPORT: &str = "document.import";
    /// A file was re-filed under another plan unit (Umprotokollierung), with a new
    /// reference; its sub-files move with it.
    pub const FILE_REFILE: &str = "file.refile";
    /// A case was moved to another file or case, with everything in it.
    pub const CASE_REFILE: &str = "case.refile";
    /// A document was moved to another file, case or document, with its attachments.
    pub const DOCUMENT_REFILE: &str = "document.refile";
    /// Files were handed over to another agency (0401 written).
    pub const HANDOVER_SEND: &str = "handover.send";
    /// The receiving agency confirmed receipt of a handover (0403).
    pub const HANDOVER_RECEIPT: &str = "handover.receipt";
    /// The receiving agency confirmed the import of a handover (0402).
    pub const HANDOVER_CONFIRM: &str = "handover.confirm";
    /// An organisational unit was created.
    pub const ORG_UNIT_CREATE: &str = "org_unit.create";
    /// An organisational unit was renamed or moved.
    pub const ORG_UNIT_UPDATE: &str = "org_unit.update";
    /// A principal became a member of a unit.
    pub const ORG_UNIT_MEMBER_ADD: &str = "org_unit.member_add";
    /// A principal stopped being a member of a unit.
    pub const ORG_UNIT_MEMBER_REMOVE: &str = "org_unit.member_remove";
    /// A principal's clearance was set.
    pub const PRINCIPAL_CLEARANCE: &str = "principal.clearance";
    /// A file's or case's lead unit was set or removed.
    pub const ACCESS_LEAD_UNIT: &str = "access.lead_unit";
    /// A file or case was shared, or a share changed or ended.
    pub const ACCESS_SHARE: &str = "access.share";
    /// A file's, case's or document's confidentiality level was set.
    pub const ACCESS_CONFIDENTIALITY: &str = "access.confidentiality";
    /// An access to a confidential object, or a denied attempt.
    pub const ACCESS_LOG: &str = "access.log";
    /// A custom field was defined.
    pub const CUSTOM_FIELD_DEFINE: &str = "custom_field.define";
    /// A custom field's definition changed.
    pub const CUSTOM_FIELD_UPDATE: &str = "custom_field.update";
}

/// Role of the salted record among the entry's payloads.
pub const ROLE_EVENT: &str = "event";
/// Role of a rendition's bytes among the entry's payloads.
pub const ROLE_RENDITION: &str = "rendition";

/// A new version as the event records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionData {
    /// Its number (one more than the versions so far).
    pub number: u32,
    /// Free comment.
    pub comment: String,
    /// Renditions with their digests.
    pub renditions: Vec<Rendition>,
    /// For an imported version: when and by whom it was made in the source system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalStamp>,
}

/// A running number drawn by a create event (file references, case numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The scope: the plan unit for files, the file for cases.
    pub scope: Uuid,
    /// The year for file references; 0 for case numbers.
    pub year: i32,
    /// The number drawn.
    pub number: u32,
}

/// The salted record of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Record format version (1).
    pub v: u8,
    /// 16 random bytes, hex: makes the record's digest unguessable.
    pub salt: String,
    /// The object the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Field values set by the event (all initial fields for a create).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub set: Map<String, Value>,
    /// Further objects the same change applies to (cases closed with their file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cascade: Vec<Uuid>,
    /// Running number drawn by a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<Counter>,
    /// The new version, for `version.add`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionData>,
    /// Why the change was made, if the caller said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The client's idempotency key of a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Digest of the create request, to tell a retry from a different request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<Digest>,
    /// An imported document's versions, stored with it in one entry so that a document
    /// is never half imported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionData>,
    /// An imported object's history as the source recorded it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_history: Vec<OriginalHistoryItem>,
    /// Objects a re-filing moves, each with the fields it changes (the moved object
    /// first, then what moves with it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Move>,
}

/// One object moved by a re-filing and the fields that change on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// The object.
    pub id: Uuid,
    /// New field values.
    pub set: Map<String, Value>,
}

impl EventRecord {
    /// A new record with a fresh random salt.
    pub fn new(id: Option<Uuid>) -> Result<EventRecord, getrandom::Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)?;
        Ok(EventRecord {
            v: 1,
            salt: hex::encode(salt),
            id,
            set: Map::new(),
            cascade: Vec::new(),
            counter: None,
            version: None,
            reason: None,
            request_id: None,
            request_digest: None,
            versions: Vec::new(),
            original_history: Vec::new(),
            moves: Vec::new(),
        })
    }

    /// The bytes that are attached to the journal record and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data to a Vec cannot fail; an empty record would be caught
        // by the projection, never silently accepted.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record.
    pub fn from_bytes(bytes: &[u8]) -> Result<EventRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
