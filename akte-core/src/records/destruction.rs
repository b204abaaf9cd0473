//! Destruction (Vernichtung) after retention, and the destruction record (Löschprotokoll).
//!
//! Destroying a file removes, for the file and everything in it, the salted event records
//! (redacted in the journal segments: bytes zeroed, digests kept) and the content of every
//! version and rendition that no retained object still uses; the journal entries stay, so
//! the chain, the Merkle tree and every checkpoint still verify. One journal entry per
//! file records the destruction: it lists the removed records and releases the content
//! references by digest, and its own record (never destroyed) says what was destroyed, on
//! which legal basis and with whose authorisation.
//!
//! Order, for crash safety: a marker file naming what will be redacted is written first;
//! then the destruction entry is appended (durable); then segments are redacted and
//! unreferenced content deleted; then the marker is removed. Opening the store completes a
//! destruction whose entry is durable and drops a marker whose entry never became durable.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::backend::content::Destruction;
use crate::digest::Digest;
use crate::entry::{Payload, PayloadKind, ROLE_RELEASE};
use crate::index::{IndexError, TenantIndex};
use crate::journal::Location;
use crate::note::SignedNote;
use crate::store::{StoreError, Tenant};

use super::appraisal::containers;
use super::destroyable::destroyable;
use super::event::{kind, Counter, ROLE_EVENT};
use super::retention::DisposalProgress;
use super::schema::{self, tag, KeyExt};
use super::service::{get_object, Plan};
use super::status::object_label;
use super::types::*;
use super::validate::{self, MAX_NAME, MAX_TEXT};
use super::{RecordsError, TenantRecords};

pub use crate::entry::ROLE_DESTROYED;

/// One object removed by a destruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedObject {
    /// Its id.
    pub id: Uuid,
    /// Its kind.
    pub kind: ObjectKind,
    /// The parent whose child listing held it (file, case or document).
    pub parent: Option<Uuid>,
    /// The file reference, for files.
    pub reference: Option<String>,
    /// The plan unit, for files.
    pub plan_unit: Option<Uuid>,
    /// Journal entry that created it.
    pub created_seq: u64,
}

/// What the destruction entry of one file says (its event record; never destroyed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDestruction {
    /// The destruction run.
    pub run: Uuid,
    /// The object destroyed: a top-level file, or a part of one (sub-file, case,
    /// sub-case) the archive appraised V.
    pub file: Uuid,
    /// Its reference (for a part, a label such as `case 632.1-0001/2026.2`).
    pub reference: String,
    /// For a part: the top-level file it belonged to (which stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Uuid>,
    /// Every object removed (the destroyed object first).
    pub objects: Vec<DestroyedObject>,
    /// Running numbers drawn by the destroyed files, so references are never reused.
    pub counters: Vec<Counter>,
    /// Legal basis (e.g. "§ 18 ThürEGovG, Aufbewahrungsfrist abgelaufen").
    pub legal_basis: String,
    /// Who authorised it.
    pub authorised_by: String,
    /// Why the file could be destroyed ("retention ended 2031-12-31, decision V" or
    /// "transferred, archive id X").
    pub grounds: String,
}

/// The destruction record (Löschprotokoll) of one run, signed with the tenant's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestructionRecord {
    /// The run.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who ran it.
    pub actor: String,
    /// Who authorised it.
    pub authorised_by: String,
    /// Legal basis.
    pub legal_basis: String,
    /// Per file: the journal entry of its destruction and what was removed.
    pub files: Vec<DestroyedFile>,
}

/// One destroyed file, or part of a file, in a destruction record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedFile {
    /// The object destroyed: a top-level file or a part of one.
    pub file: Uuid,
    /// Its reference (for a part, a label such as `case 632.1-0001/2026.2`).
    pub reference: String,
    /// For a part: the top-level file it belonged to (which stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Uuid>,
    /// Journal entry recording the destruction.
    pub seq: u64,
    /// Objects removed.
    pub objects: Vec<DestroyedObject>,
    /// Digests of the removed metadata records.
    pub records: Vec<Digest>,
    /// Digests of content released (deleted unless a retained object still uses it).
    pub contents: Vec<Digest>,
    /// Why it could be destroyed.
    pub grounds: String,
}

/// First line of a signed destruction record (distinguishes it from any checkpoint).
pub const DESTRUCTION_RECORD_HEADER: &str = "akte destruction record v1";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    seq: u64,
    record_digest: Digest,
    targets: Vec<(u64, u64, Digest)>,
    contents: Vec<Digest>,
}

/// Blobs of destructions whose entry may be durable but whose removal may not be done.
const MARKERS: &str = "pending-destruction/";
/// Blobs of signed destruction records.
const RECORDS: &str = "destruction-records/";

fn marker_name(seq: u64) -> String {
    format!("{MARKERS}{seq}.json")
}

fn record_name(run: Uuid) -> String {
    format!("{RECORDS}{run}.note")
}

/// The object (a file, or a part of one) and everything in it, parents before children.
fn contents_of(index: &TenantIndex, root: &Object) -> Result<Vec<DestroyedObject>, RecordsError> {
    let (parent, reference, plan_unit) = match root {
        Object::File(f) => (f.parent_file, Some(f.reference.clone()), Some(f.plan_unit)),
        Object::Case(c) => (Some(c.parent_case.unwrap_or(c.file)), None, None),
        other => (
            match other {
                Object::Document(d) => Some(d.parent),
                _ => None,
            },
            None,
            None,
        ),
    };
    let mut out = vec![DestroyedObject {
        id: root.id(),
        kind: root.kind(),
        parent,
        reference,
        plan_unit,
        created_seq: root.created().seq,
    }];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].id;
        for kv in index.scan_prefix(schema::children(parent)) {
            let (k, _) = kv?;
            let Some(id) = schema::trailing_id(&k) else {
                continue;
            };
            let obj = get_object(index, id)?;
            let (reference, plan_unit) = match &obj {
                Object::File(f) => (Some(f.reference.clone()), Some(f.plan_unit)),
                _ => (None, None),
            };
            out.push(DestroyedObject {
                id,
                kind: obj.kind(),
                parent: Some(parent),
                reference,
                plan_unit,
                created_seq: obj.created().seq,
            });
        }
        i += 1;
    }
    Ok(out)
}

impl TenantRecords {
    /// Destroys top-level files whose retention has ended with decision V, or whose import
    /// the archive confirmed, and parts of files (sub-files, cases, sub-cases) the archive
    /// appraised V once the rest of their file is with the archive; nothing else (see
    /// [`super::destroyable`]). Anything refused is refused with the reason, and then
    /// nothing at all is destroyed. Returns the signed destruction record.
    pub fn destroy(
        &self,
        actor: &str,
        files: &[Uuid],
        legal_basis: &str,
        authorised_by: &str,
    ) -> Result<(DestructionRecord, SignedNote), RecordsError> {
        self.destroy_on(
            actor,
            files,
            legal_basis,
            authorised_by,
            super::civil::today(),
        )
    }

    fn destroy_on(
        &self,
        actor: &str,
        files: &[Uuid],
        legal_basis: &str,
        authorised_by: &str,
        today: NaiveDate,
    ) -> Result<(DestructionRecord, SignedNote), RecordsError> {
        validate::line("legal_basis", legal_basis, MAX_TEXT)?;
        validate::line("authorised_by", authorised_by, MAX_NAME)?;
        let unique: BTreeSet<Uuid> = files.iter().copied().collect();
        if unique.is_empty() || unique.len() != files.len() {
            return Err(RecordsError::Invalid {
                field: "files".into(),
                reason: "must name at least one file or part of a file, each once".into(),
            });
        }
        // Check every object first, so that one refusal destroys nothing.
        let index = self.tenant.index();
        for id in files {
            let obj = get_object(index, *id)?;
            destroyable(index, &obj, today)?;
            if let Some(outer) = containers(index, &obj)?[1..]
                .iter()
                .find(|c| unique.contains(&c.id()))
            {
                return Err(RecordsError::Invalid {
                    field: "files".into(),
                    reason: format!(
                        "{} is inside {}, which this request destroys as well; name one of \
                         them",
                        object_label(index, *id),
                        object_label(index, outer.id())
                    ),
                });
            }
        }
        let run = super::schema::new_id();
        let mut destroyed = Vec::new();
        for id in files {
            destroyed.push(self.destroy_file(
                actor,
                *id,
                run,
                legal_basis,
                authorised_by,
                today,
            )?);
        }
        let record = DestructionRecord {
            id: run,
            tenant: self.tenant.id().to_owned(),
            at: Utc::now(),
            actor: actor.to_owned(),
            authorised_by: authorised_by.to_owned(),
            legal_basis: legal_basis.to_owned(),
            files: destroyed,
        };
        let json =
            serde_json::to_string(&record).map_err(|e| RecordsError::Internal(e.to_string()))?;
        let note = self
            .tenant
            .sign_text(&format!("{DESTRUCTION_RECORD_HEADER}\n{json}\n"))?;
        self.tenant
            .meta()
            .put(&record_name(run), &note.to_bytes(), false)
            .map_err(StoreError::from)?;
        Ok((record, note))
    }

    fn destroy_file(
        &self,
        actor: &str,
        file: Uuid,
        run: Uuid,
        legal_basis: &str,
        authorised_by: &str,
        today: NaiveDate,
    ) -> Result<DestroyedFile, RecordsError> {
        let (marker, destroyed) =
            self.append_destruction(actor, file, run, legal_basis, authorised_by, today)?;
        complete(&self.tenant, &marker)?;
        Ok(destroyed)
    }

    /// The first half of a file's destruction: marker, then the durable entry. What a
    /// crash right after it leaves behind is what [`recover`] completes.
    fn append_destruction(
        &self,
        actor: &str,
        file: Uuid,
        run: Uuid,
        legal_basis: &str,
        authorised_by: &str,
        today: NaiveDate,
    ) -> Result<(Marker, DestroyedFile), RecordsError> {
        let tenant = self.tenant.clone();
        let mut outcome: Option<(Marker, DestroyedFile)> = None;
        self.write_plan_at(actor, |index, seq| {
            let root = get_object(index, file)?;
            // Checked again under the write lock: nothing may have changed since.
            let grounds = destroyable(index, &root, today)?;
            let chain = containers(index, &root)?;
            let within = (chain.len() > 1)
                .then(|| chain.last().map(Object::id))
                .flatten();
            let reference = match &root {
                Object::File(f) => f.reference.clone(),
                other => object_label(index, other.id()),
            };
            let objects = contents_of(index, &root)?;
            let mut targets = Vec::new();
            let mut records = Vec::new();
            let mut contents = Vec::new();
            for o in &objects {
                let oid = o.id.to_string();
                for kv in index.scan_prefix(schema::history(o.id)) {
                    let (k, _) = kv?;
                    let Some(seq) = k
                        .get(k.len() - 8..)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                    else {
                        continue;
                    };
                    let loc = index.location(seq)?.ok_or_else(|| {
                        RecordsError::Internal(format!("entry {seq} has no location"))
                    })?;
                    let rec = tenant.journal().read_at(loc).map_err(StoreError::from)?;
                    // Only the object's own events; holds and the like stay on record.
                    if rec.entry.object != oid {
                        continue;
                    }
                    for p in &rec.entry.payloads {
                        match p.kind {
                            PayloadKind::Inline if rec.attachment(&p.digest).is_some() => {
                                targets.push((loc, p.digest));
                                records.push((p.digest, p.size));
                            }
                            PayloadKind::Content => contents.push((p.digest, p.size)),
                            _ => {}
                        }
                    }
                }
            }
            // Running numbers: of the plan units of destroyed files, and, for a case, of
            // the file that numbers its cases and stays.
            let mut scopes: BTreeSet<Uuid> = objects.iter().filter_map(|o| o.plan_unit).collect();
            if let Object::Case(c) = &root {
                scopes.insert(c.file);
            }
            let mut counters = Vec::new();
            for scope in scopes {
                counters.extend(counters_of(index, scope)?);
            }
            let body = FileDestruction {
                run,
                file,
                reference: reference.clone(),
                within,
                objects: objects.clone(),
                counters,
                legal_basis: legal_basis.to_owned(),
                authorised_by: authorised_by.to_owned(),
                grounds: grounds.clone(),
            };
            let mut record = Self::new_event(Some(file))?;
            record.set.insert(
                "destruction".into(),
                serde_json::to_value(&body).map_err(|e| RecordsError::Internal(e.to_string()))?,
            );
            let mut payloads: Vec<Payload> = records
                .iter()
                .map(|(d, size)| Payload {
                    kind: PayloadKind::Reference,
                    role: ROLE_DESTROYED.into(),
                    size: *size,
                    digest: *d,
                })
                .collect();
            payloads.extend(contents.iter().map(|(d, size)| Payload {
                kind: PayloadKind::Reference,
                role: ROLE_RELEASE.into(),
                size: *size,
                digest: *d,
            }));
            // Under the append session the next sequence number is known: the marker names
            // it, so recovery can tell whether this entry became durable.
            let record_digest = Digest::of(&record.to_bytes());
            let marker = Marker {
                seq,
                record_digest,
                targets: targets
                    .iter()
                    .map(|(l, d)| (l.segment, l.offset, *d))
                    .collect(),
                contents: contents.iter().map(|(d, _)| *d).collect(),
            };
            write_marker(&tenant, &marker)?;
            outcome = Some((
                marker,
                DestroyedFile {
                    file,
                    reference,
                    within,
                    seq,
                    objects,
                    records: records.iter().map(|(d, _)| *d).collect(),
                    contents: contents.iter().map(|(d, _)| *d).collect(),
                    grounds,
                },
            ));
            Ok(Plan::event(kind::DISPOSAL_DESTROY, record, payloads))
        })?;
        outcome.ok_or_else(|| RecordsError::Internal("destruction planned nothing".into()))
    }

    /// A stored destruction record, with its signature checked.
    pub fn destruction_record(
        &self,
        run: Uuid,
    ) -> Result<(DestructionRecord, SignedNote), RecordsError> {
        let name = record_name(run);
        let bytes = self
            .tenant
            .meta()
            .get(&name)
            .map_err(StoreError::from)?
            .ok_or_else(|| RecordsError::NotFound {
                what: "destruction record".into(),
                id: run.to_string(),
            })?;
        let note = SignedNote::parse(&bytes).map_err(StoreError::from)?;
        note.verify(&[self.tenant.verifier()])
            .map_err(StoreError::from)?;
        let json = note
            .text
            .strip_prefix(&format!("{DESTRUCTION_RECORD_HEADER}\n"))
            .ok_or_else(|| {
                RecordsError::Internal(format!(
                    "{} is not a destruction record",
                    self.tenant.meta().describe(&name)
                ))
            })?;
        let record: DestructionRecord = serde_json::from_str(json.trim_end())
            .map_err(|e| RecordsError::Internal(e.to_string()))?;
        // A record of files the caller may not see is hidden like them.
        if self.bound().is_some() {
            let ids: Vec<Uuid> = record
                .files
                .iter()
                .flat_map(|f| std::iter::once(f.file).chain(f.within))
                .collect();
            if !self.admit_all(&ids)? {
                return Err(RecordsError::NotFound {
                    what: "destruction record".into(),
                    id: run.to_string(),
                });
            }
        }
        Ok((record, note))
    }

    /// Ids of all destruction records.
    pub fn list_destruction_records(&self) -> Result<Vec<Uuid>, RecordsError> {
        let mut out = Vec::new();
        for name in self.tenant.meta().list(RECORDS).map_err(StoreError::from)? {
            if let Some(id) = name
                .strip_prefix(RECORDS)
                .and_then(|n| n.strip_suffix(".note"))
                .and_then(|s| Uuid::parse_str(s).ok())
            {
                out.push(id);
            }
        }
        out.sort();
        if self.bound().is_some() {
            // Records of files the caller may not see are left out (records are few: one
            // per destruction run).
            let mut visible = Vec::with_capacity(out.len());
            for id in out {
                match self.destruction_record(id) {
                    Ok(_) => visible.push(id),
                    Err(RecordsError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            out = visible;
        }
        Ok(out)
    }
}

/// Every running-number counter of a scope (a plan unit numbering files, a file numbering
/// cases). The destroyed objects' create events, which drew those numbers, are about to be
/// redacted; keeping the counters in the destruction entry means a rebuilt index never
/// hands out a destroyed file's reference or case number again.
fn counters_of(index: &TenantIndex, unit: Uuid) -> Result<Vec<Counter>, RecordsError> {
    let mut out = Vec::new();
    for kv in index.scan_prefix(schema::key(tag::COUNTER).id(unit)) {
        let (k, v) = kv?;
        let year = k
            .get(k.len().saturating_sub(4)..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(i32::from_be_bytes);
        let number = <[u8; 4]>::try_from(&v[..]).ok().map(u32::from_be_bytes);
        if let (Some(year), Some(number)) = (year, number) {
            out.push(Counter {
                scope: unit,
                year,
                number,
            });
        }
    }
    Ok(out)
}

fn write_marker(tenant: &Tenant, marker: &Marker) -> Result<(), RecordsError> {
    let bytes = serde_json::to_vec(marker).map_err(|e| RecordsError::Internal(e.to_string()))?;
    tenant
        .meta()
        .put(&marker_name(marker.seq), &bytes, true)
        .map_err(StoreError::from)?;
    Ok(())
}

/// Redacts the records and deletes the released content a durable destruction entry names,
/// then removes its marker. Safe to repeat.
fn complete(tenant: &Tenant, marker: &Marker) -> Result<(), RecordsError> {
    let targets: Vec<(Location, Digest)> = marker
        .targets
        .iter()
        .map(|(segment, offset, d)| {
            (
                Location {
                    segment: *segment,
                    offset: *offset,
                },
                *d,
            )
        })
        .collect();
    tenant
        .journal()
        .redact(&targets, Destruction::authorised())
        .map_err(StoreError::from)?;
    // Inside the append session, as the collection of unreferenced content does: a write
    // that names the same bytes either committed first (and keeps them) or finds them
    // gone and is refused; it never records content that is then removed.
    let outcomes = crate::content_gc::remove_unreferenced(tenant, &marker.contents, Utc::now())?;
    for outcome in outcomes {
        if let crate::content_gc::Removal::Failed(e) = outcome {
            return Err(e.into());
        }
    }
    tenant
        .meta()
        .remove(&marker_name(marker.seq))
        .map_err(StoreError::from)?;
    Ok(())
}

/// Finishes destructions interrupted by a crash: completes those whose entry is durable,
/// forgets those whose entry never was. Called when the records model opens a tenant.
pub(super) fn recover(tenant: &Tenant) -> Result<usize, RecordsError> {
    let meta = tenant.meta();
    let mut done = 0;
    for name in meta.list(MARKERS).map_err(StoreError::from)? {
        let Ok(Some(bytes)) = meta.get(&name) else {
            continue;
        };
        let Ok(marker) = serde_json::from_slice::<Marker>(&bytes) else {
            tracing::warn!(blob = %meta.describe(&name), "ignoring unreadable destruction marker");
            continue;
        };
        let durable = marker.seq < tenant.size()?
            && tenant
                .entry(marker.seq)
                .map(|r| {
                    r.entry
                        .payloads
                        .iter()
                        .any(|p| p.role == ROLE_EVENT && p.digest == marker.record_digest)
                })
                .unwrap_or(false);
        if durable {
            tracing::warn!(tenant = %tenant.id(), seq = marker.seq, "completing a destruction interrupted by a crash");
            complete(tenant, &marker)?;
            done += 1;
        } else {
            meta.remove(&name).map_err(StoreError::from)?;
        }
    }
    Ok(done)
}

/// The index changes of a destruction entry (called by the projection).
pub(super) fn apply_destruction(
    index: &TenantIndex,
    batch: &mut crate::index::IndexBatch,
    body: &FileDestruction,
    seq: u64,
    on: NaiveDate,
) -> Result<(), IndexError> {
    let fail = |reason: String| IndexError::Projection { seq, reason };
    let ids: BTreeSet<Uuid> = body.objects.iter().map(|o| o.id).collect();
    for o in &body.objects {
        if let Some(v) = index.get(schema::object(o.id))? {
            if let Ok(obj) = serde_json::from_slice::<Object>(&v) {
                for w in schema::words(obj.subject()) {
                    batch.remove(schema::word(&w).id(o.id));
                }
                super::fields::reindex(batch, o.id, Some(&obj), None);
                // The import event that made the key is redacted with the object, so a
                // rebuilt index has no key either.
                if let Some(origin) = super::projection::origin_of(&obj) {
                    batch.remove(super::legacy::source_key(
                        &origin.source_system,
                        &origin.source_id,
                    ));
                }
            }
        }
        batch.remove(schema::object(o.id));
        // Not even a decoded copy in memory outlives the destruction.
        super::projection::forget_decoded(index, o.id);
        if let Some(p) = o.parent {
            batch.remove(schema::children(p).num(o.created_seq).id(o.id));
        }
        if let Some(u) = o.plan_unit {
            batch.remove(schema::unit_files(u).num(o.created_seq).id(o.id));
        }
        for prefix in [
            schema::history(o.id),
            schema::versions(o.id),
            schema::key(tag::COUNTER).id(o.id),
            schema::key(tag::ORIGINAL_HISTORY).id(o.id),
        ] {
            for kv in index.scan_prefix(&prefix) {
                let (k, _) = kv?;
                batch.remove(k);
            }
        }
        if let Some(r) = &o.reference {
            batch.insert(
                schema::key(tag::REFERENCE).raw(r.as_bytes()),
                o.id.as_bytes(),
            );
        }
        let tomb = serde_json::json!({"kind": o.kind, "destroyed_on": on, "run": body.run, "file": body.within.unwrap_or(body.file), "reference": o.reference});
        batch.insert(
            schema::key(tag::TOMBSTONE).id(o.id),
            serde_json::to_vec(&tomb).map_err(|e| fail(e.to_string()))?,
        );
    }
    for kv in index.scan_prefix(schema::key(tag::REQUEST)) {
        let (k, v) = kv?;
        let points_here = serde_json::from_slice::<Value>(&v)
            .ok()
            .and_then(|j| {
                j.get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
            })
            .is_some_and(|id| ids.contains(&id));
        if points_here {
            batch.remove(k);
        }
    }
    for c in &body.counters {
        let key = schema::counter(c.scope, c.year);
        let current = index
            .get(&key)?
            .and_then(|v| <[u8; 4]>::try_from(&v[..]).ok())
            .map_or(0, u32::from_be_bytes);
        batch.insert(key, &current.max(c.number).to_be_bytes()[..]);
    }
    let progress = DisposalProgress::Destroyed {
        on,
        record: body.run,
    };
    batch.insert(
        schema::key(tag::DISPOSAL).id(body.file),
        serde_json::to_vec(&progress).map_err(|e| fail(e.to_string()))?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{NewDocument, NewFile, NewPlanUnit, NewRendition, NewVersion, Records};
    use crate::store::StoreOptions;
    use crate::verify::{verify_store, VerifyOptions};

    fn tenant_dir(dir: &tempfile::TempDir, t: &TenantRecords) -> std::path::PathBuf {
        dir.path().join("tenants").join(t.tenant().id())
    }

    fn journal_text(dir: &tempfile::TempDir, t: &TenantRecords) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(tenant_dir(dir, t).join("journal")).unwrap() {
            all.push_str(&String::from_utf8_lossy(
                &std::fs::read(e.unwrap().path()).unwrap(),
            ));
        }
        all
    }

    /// Every byte under the tenant's content store, as text (pack files and object files).
    fn content_text(dir: &tempfile::TempDir, t: &TenantRecords) -> String {
        let mut all = String::new();
        let mut todo = vec![tenant_dir(dir, t).join("content")];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    all.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
                }
            }
        }
        all
    }

    /// A due V file with one document version; returns (file, content digest).
    fn due_file(t: &TenantRecords) -> (Uuid, Digest) {
        let unit = t
            .create_plan_unit(
                "r",
                NewPlanUnit {
                    code: "9".into(),
                    title: "U".into(),
                    retention: Retention::Years(1),
                    disposal: DisposalDecision::Destroy,
                    ..NewPlanUnit::default()
                },
                None,
            )
            .unwrap();
        let f = t
            .create_file(
                "r",
                NewFile {
                    plan_unit: unit.id,
                    subject: "Geheimsache Zebra".into(),
                    ..NewFile::default()
                },
                None,
            )
            .unwrap();
        let d = t
            .create_document(
                "r",
                NewDocument {
                    parent: f.id,
                    subject: "Brief".into(),
                    ..NewDocument::default()
                },
                None,
            )
            .unwrap();
        let put = t.put_content(&b"only in this file"[..]).unwrap();
        t.add_version(
            "r",
            d.id,
            NewVersion {
                comment: String::new(),
                renditions: vec![NewRendition {
                    file_name: "b.txt".into(),
                    media_type: "text/plain".into(),
                    sha256: put.digest,
                    size: put.size,
                }],
            },
            None,
        )
        .unwrap();
        t.close("r", f.id, None, NaiveDate::from_ymd_opt(2010, 1, 1))
            .unwrap();
        (f.id, put.digest)
    }

    #[test]
    fn a_destruction_interrupted_after_its_entry_is_completed_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.create_tenant("t").unwrap();
        let (file, digest) = due_file(&t);
        // "Crash" right after the destruction entry became durable: no redaction yet.
        let (marker, _) = t
            .append_destruction(
                "r",
                file,
                Uuid::new_v4(),
                "basis",
                "auth",
                Utc::now().date_naive(),
            )
            .unwrap();
        assert!(journal_text(&dir, &t).contains("Geheimsache Zebra"));
        assert!(t.tenant().content().contains(&digest).unwrap());
        assert!(content_text(&dir, &t).contains("only in this file"));
        assert!(t
            .tenant()
            .meta()
            .get(&marker_name(marker.seq))
            .unwrap()
            .is_some());
        drop(t);
        drop(records);

        let records = Records::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.tenant("t").unwrap();
        assert!(
            !journal_text(&dir, &t).contains("Geheimsache Zebra"),
            "redacted on reopen"
        );
        assert!(
            !t.tenant().content().contains(&digest).unwrap(),
            "content deleted on reopen"
        );
        assert!(
            !content_text(&dir, &t).contains("only in this file"),
            "no byte of the content is left in the packs"
        );
        assert!(t.tenant().meta().list(MARKERS).unwrap().is_empty());
        let report = verify_store(records.store(), VerifyOptions::default()).unwrap();
        assert!(
            report.is_clean(),
            "{:#?}",
            report.problems().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_marker_whose_entry_never_became_durable_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.create_tenant("t").unwrap();
        let (file, digest) = due_file(&t);
        let size = t.tenant().size().unwrap();
        let marker = Marker {
            seq: size,
            record_digest: Digest::of(b"never appended"),
            targets: vec![],
            contents: vec![digest],
        };
        write_marker(t.tenant(), &marker).unwrap();
        drop(t);
        drop(records);
        let records = Records::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = records.tenant("t").unwrap();
        assert_eq!(t.tenant().size().unwrap(), size);
        assert!(t.get(file).is_ok(), "nothing destroyed");
        assert!(
            t.tenant().content().contains(&digest).unwrap(),
            "content kept"
        );
        assert!(t.tenant().meta().list(MARKERS).unwrap().is_empty());
    }
}
