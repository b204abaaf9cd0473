//! Following a tenant's journal into its full-text index.
//!
//! The indexer reads entries from its index's position on and notes what they touch:
//! `document.*` and `version.add` the document named; a refile or destruction of a
//! file or case every document indexed below it. It then indexes each touched document
//! as the records have it *now* (newest version's primary rendition and subject) or
//! removes it when the records no longer have it (destroyed, unknown), and commits with
//! the position reached. Reading the current state rather than the entry's own makes
//! the outcome independent of how entries are grouped, and the index at position p is
//! never older than the records at p.
//!
//! Writers never wait for this: the indexer only reads the journal and the records.

use std::collections::BTreeSet;
use std::io::Read;

use akte_core::records::event::kind;
use akte_core::records::{Object, RecordsError, TenantRecords};
use uuid::Uuid;

use crate::extract::{self, MAX_INPUT};
use crate::index::{IndexedDoc, TextIndex};
use crate::FulltextError;

/// Most entries read before a commit: a long catch-up commits along the way, so a
/// restart does not start over and searches see progress.
pub const BATCH: u64 = 2000;
/// Deepest parent chain followed (files in files in cases ...).
const MAX_DEPTH: usize = 64;

/// What a range of entries touches.
#[derive(Debug, Default)]
struct Touched {
    documents: BTreeSet<Uuid>,
    subtrees: BTreeSet<Uuid>,
    /// Documents whose first entry in the range is their `document.create`: the index
    /// committed before the range cannot hold them, so indexing them needs no delete of
    /// an older copy. (A delete is kept by the index writer until the commit and then
    /// looked up in every segment: one per new document was most of the deletes, and
    /// their cost grows with the number of segments.)
    new: BTreeSet<Uuid>,
    /// Objects an entry of the range was about, to tell their first entry.
    seen: BTreeSet<Uuid>,
}

/// Indexes the entries from `from` on (at most [`BATCH`], only durable ones) and commits;
/// returns the new position (`from` when there was nothing new).
pub fn step(records: &TenantRecords, index: &TextIndex, from: u64) -> Result<u64, FulltextError> {
    let size = records.tenant().size()?;
    if size <= from {
        return Ok(from);
    }
    let to = size.min(from.saturating_add(BATCH));
    let mut touched = Touched::default();
    for seq in from..to {
        let rec = records.tenant().entry(seq)?;
        let Ok(object) = Uuid::parse_str(&rec.entry.object) else {
            continue;
        };
        let k = rec.entry.kind.as_str();
        if touched.seen.insert(object) && k == kind::DOCUMENT_CREATE {
            touched.new.insert(object);
        }
        if k.starts_with("document.") || k == kind::VERSION_ADD {
            touched.documents.insert(object);
        } else if k == kind::FILE_REFILE || k == kind::CASE_REFILE || k == kind::DISPOSAL_DESTROY {
            touched.subtrees.insert(object);
        }
    }
    for s in &touched.subtrees {
        touched.documents.extend(index.below(*s)?);
    }
    for d in touched.documents {
        index_document(records, index, d, !touched.new.contains(&d))?;
    }
    index.commit(to)?;
    Ok(to)
}

/// Indexes `id` as the records have it now, or removes it.
pub fn reindex(records: &TenantRecords, index: &TextIndex, id: Uuid) -> Result<(), FulltextError> {
    index_document(records, index, id, true)
}

/// As [`reindex`]; without `replace` the index must not hold the document yet (see
/// [`Touched::new`]), and no delete of an older copy is queued.
fn index_document(
    records: &TenantRecords,
    index: &TextIndex,
    id: Uuid,
    replace: bool,
) -> Result<(), FulltextError> {
    let doc = match records.get(id) {
        Ok(Object::Document(d)) => d,
        Ok(_) => return Ok(()),
        Err(RecordsError::Destroyed { .. }) | Err(RecordsError::NotFound { .. }) => {
            return index.remove(id);
        }
        Err(e) => return Err(e.into()),
    };
    let (body, note) = text_of(records, id, doc.versions);
    if let Some(n) = &note {
        tracing::debug!(tenant = records.tenant().id(), document = %id, note = %n, "full-text extraction");
    }
    let indexed = IndexedDoc {
        id,
        above: above(records, doc.parent)?,
        title: doc.subject.clone(),
        body,
        created: doc.created.at.timestamp_micros(),
        note,
    };
    if replace {
        index.put(&indexed)
    } else {
        index.add_new(&indexed)
    }
}

/// The text of the newest version's primary rendition, with extraction's note. Content
/// that cannot be read (released, damaged) is a note, never an error: the subject is
/// still indexed.
fn text_of(records: &TenantRecords, id: Uuid, versions: u32) -> (String, Option<String>) {
    if versions == 0 {
        return (String::new(), None);
    }
    let version = match records.version(id, versions) {
        Ok(v) => v,
        Err(e) => return (String::new(), Some(format!("version {versions}: {e}"))),
    };
    let Some(primary) = version.renditions.first() else {
        return (String::new(), Some("no rendition".into()));
    };
    if primary.size > MAX_INPUT {
        return (
            String::new(),
            Some(format!(
                "{} bytes: larger than {MAX_INPUT}, not extracted",
                primary.size
            )),
        );
    }
    let mut bytes = Vec::new();
    let read = records
        .open_rendition(primary)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            r.take(MAX_INPUT)
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = read {
        return (String::new(), Some(format!("content cannot be read: {e}")));
    }
    let e = extract::extract(&bytes, &primary.media_type);
    (e.text, e.note)
}

/// The parent chain of a document from `parent` up to its top-level file.
fn above(records: &TenantRecords, parent: Uuid) -> Result<Vec<Uuid>, FulltextError> {
    let mut out = Vec::new();
    let mut cur = Some(parent);
    while let Some(id) = cur {
        if out.len() >= MAX_DEPTH || out.contains(&id) {
            break;
        }
        out.push(id);
        cur = match records.get(id) {
            Ok(Object::Document(d)) => Some(d.parent),
            Ok(Object::Case(c)) => Some(c.parent_case.unwrap_or(c.file)),
            Ok(Object::File(f)) => f.parent_file,
            Ok(Object::PlanUnit(_)) => None,
            Err(RecordsError::Destroyed { .. }) | Err(RecordsError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use akte_core::records::{
        DisposalDecision, NewDocument, NewFile, NewPlanUnit, Records, Retention,
    };
    use akte_core::store::StoreOptions;
    use serde_json::{json, Map};

    fn new_document(t: &TenantRecords, file: Uuid, subject: &str) -> Uuid {
        let doc = NewDocument {
            parent: file,
            subject: subject.into(),
            ..NewDocument::default()
        };
        t.create_document("clerk", doc, None).unwrap().id
    }

    fn rename(t: &TenantRecords, id: Uuid, subject: &str) {
        let Object::Document(d) = t.get(id).unwrap() else {
            panic!("not a document")
        };
        let mut patch = Map::new();
        patch.insert("subject".to_owned(), json!(subject));
        t.update("clerk", id, d.revision, patch, None).unwrap();
    }

    /// New documents are added without a delete, changed ones replaced: in neither case
    /// does the index hold a document twice or an old subject.
    #[test]
    fn new_documents_are_added_once_and_changed_ones_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(
            akte_core::embedded::open(&dir.path().join("data")).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.create_tenant("amt").unwrap();
        let unit = t
            .create_plan_unit(
                "clerk",
                NewPlanUnit {
                    id: None,
                    parent: None,
                    code: "1".into(),
                    title: "Allgemeines".into(),
                    description: String::new(),
                    retention: Retention::Years(10),
                    disposal: DisposalDecision::Destroy,
                },
                None,
            )
            .unwrap();
        let file = t
            .create_file(
                "clerk",
                NewFile {
                    plan_unit: unit.id,
                    subject: "Sammelakte".into(),
                    ..NewFile::default()
                },
                None,
            )
            .unwrap()
            .id;
        let index = TextIndex::open(&dir.path().join("ft")).unwrap();

        // One range: a new document, and a new one changed in the same range.
        let a = new_document(&t, file, "Bauantrag Lindenweg");
        let b = new_document(&t, file, "Gewerbeanmeldung Bäckerei");
        rename(&t, b, "Gewerbeabmeldung Bäckerei");
        let pos = step(&t, &index, 0).unwrap();
        // The next: a document the index holds changed, and a new one.
        rename(&t, a, "Bauvoranfrage Lindenweg");
        let c = new_document(&t, file, "Widerspruch Gebührenbescheid");
        let pos = step(&t, &index, pos).unwrap();
        assert_eq!(pos, t.tenant().size().unwrap());

        let mut held = index.all_ids().unwrap();
        held.sort();
        let mut want = vec![a, b, c];
        want.sort();
        assert_eq!(held, want, "each document once");
        let found = |text: &str| -> Vec<Uuid> {
            index
                .search(text, Default::default())
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect()
        };
        assert_eq!(found("Bauvoranfrage"), vec![a]);
        assert!(found("Bauantrag").is_empty(), "the old subject is gone");
        assert_eq!(found("Gewerbeabmeldung"), vec![b]);
        assert!(found("Gewerbeanmeldung").is_empty());
        assert_eq!(found("Widerspruch"), vec![c]);
    }
}
