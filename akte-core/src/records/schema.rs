//! Index keys of the records model, all under the model prefix `m` of the tenant's tree.
//!
//! | key                                         | value                         |
//! |---------------------------------------------|-------------------------------|
//! | `m o` id                                    | object (JSON)                 |
//! | `m P` parent-unit-id or 16 zero bytes, seq, id | — (plan units by parent)   |
//! | `m p` code                                  | plan unit id                  |
//! | `m u` unit-id, seq, file-id                 | — (files by plan unit)        |
//! | `m r` reference                             | file id                       |
//! | `m c` parent-id, seq, child-id              | kind (children of file, case, document) |
//! | `m n` scope-id, year (i32)                  | last running number (u32)     |
//! | `m h` id, seq                               | history item (JSON)           |
//! | `m v` document-id, number (u32)             | version (JSON)                |
//! | `m w` word, 0x00, id                        | — (subject words)             |
//! | `m i` request id                            | {digest, id} (JSON)           |
//! | `m t`                                       | tenant settings (JSON)        |
//! | `m H` hold-id                               | hold (JSON)                   |
//! | `m x` file-id, hold-id                      | — (active holds of a file)    |
//! | `m d` file-id                               | disposal progress (JSON)      |
//! | `m z` id                                    | tombstone of a destroyed object (JSON) |
//! | `m D` process-id                            | disposal process (JSON)       |
//! | `m S` source system, 0x00, source id        | id of the imported object     |
//! | `m O` id, number (u32)                      | original history item (JSON)  |
//! | `m A` process-id                            | handover process (JSON)       |
//! | `m a` file-id                               | pending handover process id   |
//! | `m U` org-unit-id                           | organisational unit (JSON)    |
//! | `m M` principal, 0x00, org-unit-id          | — (a principal's units)       |
//! | `m m` org-unit-id, principal                | — (a unit's members)          |
//! | `m K` principal                             | clearance (JSON)              |
//! | `m k` principal, 0x00, seq                  | clearance history item (JSON) |
//! | `m g` id                                    | a file's or case's lead unit and shares (JSON) |
//! | `m L` id, seq                               | access log item (JSON)        |
//! | `m Q` field-definition-id                   | custom field definition (JSON) |
//! | `m q` field name                            | custom field definition id    |
//! | `m V` field name, 0x00, value, 0x00, id     | — (objects by custom field value) |
//!
//! `seq` is the journal entry that created the object, so listings come in creation order.

use base64::Engine as _;
use uuid::Uuid;

use crate::index::PREFIX_MODEL;

/// Sub-prefixes under `m`.
pub mod tag {
    /// Objects by id.
    pub const OBJECT: u8 = b'o';
    /// Plan units by parent.
    pub const UNIT_CHILD: u8 = b'P';
    /// Plan unit codes.
    pub const UNIT_CODE: u8 = b'p';
    /// Files by plan unit.
    pub const UNIT_FILE: u8 = b'u';
    /// File references.
    pub const REFERENCE: u8 = b'r';
    /// Children of files, cases and documents.
    pub const CHILD: u8 = b'c';
    /// Running numbers.
    pub const COUNTER: u8 = b'n';
    /// History items.
    pub const HISTORY: u8 = b'h';
    /// Versions.
    pub const VERSION: u8 = b'v';
    /// Subject words.
    pub const WORD: u8 = b'w';
    /// Idempotency keys.
    pub const REQUEST: u8 = b'i';
    /// Tenant settings.
    pub const SETTINGS: u8 = b't';
    /// Holds by id.
    pub const HOLD: u8 = b'H';
    /// Active holds by top-level file.
    pub const FILE_HOLD: u8 = b'x';
    /// Disposal progress by top-level file.
    pub const DISPOSAL: u8 = b'd';
    /// Tombstones of destroyed objects.
    pub const TOMBSTONE: u8 = b'z';
    /// Disposal processes.
    pub const PROCESS: u8 = b'D';
    /// Imported objects by source system and source id.
    pub const SOURCE: u8 = b'S';
    /// Original history of imported objects.
    pub const ORIGINAL_HISTORY: u8 = b'O';
    /// Handover processes.
    pub const HANDOVER: u8 = b'A';
    /// Files in a pending handover.
    pub const FILE_HANDOVER: u8 = b'a';
    /// Organisational units.
    pub const ORG_UNIT: u8 = b'U';
    /// A principal's units.
    pub const MEMBER_UNITS: u8 = b'M';
    /// A unit's members.
    pub const UNIT_MEMBERS: u8 = b'm';
    /// Clearances.
    pub const CLEARANCE: u8 = b'K';
    /// Clearance history.
    pub const CLEARANCE_HISTORY: u8 = b'k';
    /// Lead units and shares of files and cases.
    pub const GRANTS: u8 = b'g';
    /// Access log.
    pub const ACCESS_LOG: u8 = b'L';
    /// Custom field definitions by id.
    pub const FIELD_DEFINITION: u8 = b'Q';
    /// Custom field definitions by name.
    pub const FIELD_NAME: u8 = b'q';
    /// Objects by custom field value (`records::fields`).
    pub const FIELD_VALUE: u8 = b'V';
}

/// A fresh id for what the model keys by id (objects, processes, holds, units, field
/// definitions, renditions): a UUID of version 7 (RFC 9562), whose first 48 bits are the
/// creation time in milliseconds and the rest random.
///
/// Why not random (version 4): nearly every key of the model starts with an id (`m o`,
/// `m h`, `m v`, `m g`, ...). With random ids each new object's keys land on a random page
/// of the index's B-tree; once the tree outgrows the cache, every key written costs a page
/// read and a page rewritten, and a rebuild of 10^6 entries wrote 17.5 GB for a 2.3 GB
/// index. Time-ordered ids put what is created together side by side, so writes and a
/// rebuild append to a few hot pages (issue 20, `docs/PERFORMANCE.md`). The id shows when
/// the object was created, which its record (`created.at`) shows anyway. Ids given by a
/// client or an import are kept as they are.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// A key builder: `m`, a tag, then parts.
pub fn key(tag: u8) -> Vec<u8> {
    vec![PREFIX_MODEL, tag]
}

/// Appends the parts of a key.
pub trait KeyExt {
    /// Appends a UUID (16 bytes).
    fn id(self, id: Uuid) -> Self;
    /// Appends a u64, big-endian.
    fn num(self, n: u64) -> Self;
    /// Appends raw bytes.
    fn raw(self, b: &[u8]) -> Self;
}

impl KeyExt for Vec<u8> {
    fn id(mut self, id: Uuid) -> Self {
        self.extend_from_slice(id.as_bytes());
        self
    }
    fn num(mut self, n: u64) -> Self {
        self.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.extend_from_slice(b);
        self
    }
}

/// `m o` id.
pub fn object(id: Uuid) -> Vec<u8> {
    key(tag::OBJECT).id(id)
}

/// `m P` parent (or zeros for the top level).
pub fn unit_children(parent: Option<Uuid>) -> Vec<u8> {
    key(tag::UNIT_CHILD).id(parent.unwrap_or(Uuid::nil()))
}

/// `m c` parent.
pub fn children(parent: Uuid) -> Vec<u8> {
    key(tag::CHILD).id(parent)
}

/// `m u` unit.
pub fn unit_files(unit: Uuid) -> Vec<u8> {
    key(tag::UNIT_FILE).id(unit)
}

/// `m h` id.
pub fn history(id: Uuid) -> Vec<u8> {
    key(tag::HISTORY).id(id)
}

/// `m v` document.
pub fn versions(document: Uuid) -> Vec<u8> {
    key(tag::VERSION).id(document)
}

/// `m v` document number.
pub fn version(document: Uuid, number: u32) -> Vec<u8> {
    versions(document).raw(&number.to_be_bytes())
}

/// `m n` scope year.
pub fn counter(scope: Uuid, year: i32) -> Vec<u8> {
    key(tag::COUNTER).id(scope).raw(&year.to_be_bytes())
}

/// `m w` word 0x00.
pub fn word(word: &str) -> Vec<u8> {
    key(tag::WORD).raw(word.as_bytes()).raw(&[0])
}

/// The last 16 bytes of a key, as a UUID (listing keys end in the listed object's id).
pub fn trailing_id(key: &[u8]) -> Option<Uuid> {
    let start = key.len().checked_sub(16)?;
    Uuid::from_slice(&key[start..]).ok()
}

/// Splits a subject into the lower-case words the word index holds (at least 2 characters,
/// letters and digits only, at most 64 bytes each).
pub fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(|w| w.to_lowercase())
        .filter(|w| w.len() <= 64)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Page tokens are the last key returned, tagged with the listing they belong to, in
/// URL-safe base64: opaque to clients, and checked so that a token of one listing cannot
/// be replayed against another.
pub fn encode_token(listing: &[u8], last_key: &[u8]) -> String {
    let mut raw = Vec::with_capacity(2 + listing.len() + last_key.len());
    raw.extend_from_slice(&(listing.len() as u16).to_be_bytes());
    raw.extend_from_slice(listing);
    raw.extend_from_slice(last_key);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a page token for `listing`; `None` if it is not one.
pub fn decode_token(listing: &[u8], token: &str) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let n = u16::from_be_bytes([*raw.first()?, *raw.get(1)?]) as usize;
    let tag = raw.get(2..2 + n)?;
    if tag != listing {
        return None;
    }
    Some(raw[2 + n..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_listing() {
        let t = encode_token(b"list-a", b"\x00\x01key");
        assert_eq!(decode_token(b"list-a", &t).unwrap(), b"\x00\x01key");
        assert_eq!(decode_token(b"list-b", &t), None);
        assert_eq!(decode_token(b"list-a", "not base64!"), None);
        assert_eq!(decode_token(b"list-a", ""), None);
    }

    #[test]
    fn fresh_ids_are_time_ordered_and_distinct() {
        let ids: Vec<Uuid> = (0..1000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        // In the order made, within one process (same millisecond included), so the keys
        // of objects made one after the other sort one after the other.
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not increasing");
        assert!(object(ids[0]) < object(ids[999]));
    }

    #[test]
    fn words_are_normalised() {
        assert_eq!(
            words("Antrag auf Baugenehmigung, Flurstück 12/3 — ANTRAG"),
            vec!["12", "antrag", "auf", "baugenehmigung", "flurstück"]
        );
    }
}
