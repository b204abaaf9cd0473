//! The records model's projection: how each event changes the index.
//!
//! Pure function of the index before the entry and the entry itself, applied live and
//! during rebuild alike, so that a rebuilt index equals the live one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::index::{IndexError, Projection, TenantIndex};
use crate::journal::Record;

use super::event::{kind, EventRecord, ROLE_EVENT};
use super::schema::{self, tag, KeyExt};
use super::types::{FieldChange, HistoryItem, Hold, HoldRelease, Object, Stamp, Version};

/// Keeps the records model's derived state in the index.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordsProjection;

/// Whether an entry kind belongs to the records model.
pub fn is_records_event(kind: &str) -> bool {
    kind == kind::TENANT_CONFIGURE
        || [
            "plan_unit.",
            "file.",
            "case.",
            "document.",
            "version.",
            "hold.",
            "disposal.",
            "handover.",
            "org_unit.",
            "principal.",
            "access.",
            "custom_field.",
        ]
        .iter()
        .any(|p| kind.starts_with(p))
}

fn fail(seq: u64, reason: impl Into<String>) -> IndexError {
    IndexError::Projection {
        seq,
        reason: reason.into(),
    }
}

/// Objects decoded recently, each with the stored bytes it was decoded from, by index and
/// id. Filing one document reads its file and the document itself about ten times
/// (validation, the projection, the answer), and decoding the JSON was a tenth of the
/// daemon's CPU. A hit needs the stored bytes to be identical, so the cache can never hand
/// out anything but what decoding would.
struct DecodedObjects {
    map: HashMap<(usize, Uuid), (crate::backend::Value, Object)>,
}

/// Entries after which the cache starts afresh (a few MB at most).
const DECODED_OBJECTS_MAX: usize = 4096;

fn decoded_objects() -> std::sync::MutexGuard<'static, DecodedObjects> {
    static CACHE: OnceLock<Mutex<DecodedObjects>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            Mutex::new(DecodedObjects {
                map: HashMap::new(),
            })
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Drops the decoded copy of an object (destruction).
pub(crate) fn forget_decoded(index: &TenantIndex, id: Uuid) {
    decoded_objects().map.remove(&(index.identity(), id));
}

/// Reads an object from the index.
pub fn load_object(index: &TenantIndex, id: Uuid) -> Result<Option<Object>, IndexError> {
    let Some(v) = index.get(schema::object(id))? else {
        return Ok(None);
    };
    let key = (index.identity(), id);
    if let Some((bytes, obj)) = decoded_objects().map.get(&key) {
        if bytes == &v {
            return Ok(Some(obj.clone()));
        }
    }
    let obj: Object = serde_json::from_slice(&v).map_err(|e| IndexError::Malformed {
        key: format!("object {id}"),
        reason: e.to_string(),
    })?;
    let mut cache = decoded_objects();
    if cache.map.len() >= DECODED_OBJECTS_MAX {
        cache.map.clear();
    }
    cache.map.insert(key, (v, obj.clone()));
    Ok(Some(obj))
}

struct Apply<'a> {
    index: &'a TenantIndex,
    batch: &'a mut crate::index::IndexBatch,
    record: &'a Record,
    event: &'a EventRecord,
    /// Objects changed by this entry, written once at the end.
    changed: BTreeMap<Uuid, Object>,
}

impl Apply<'_> {
    fn seq(&self) -> u64 {
        self.record.entry.seq
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            actor: self.record.entry.actor.clone(),
            at: self.record.entry.time,
            seq: self.seq(),
        }
    }

    fn get(&self, id: Uuid) -> Result<Object, IndexError> {
        if let Some(o) = self.changed.get(&id) {
            return Ok(o.clone());
        }
        load_object(self.index, id)?
            .ok_or_else(|| fail(self.seq(), format!("object {id} does not exist")))
    }

    fn history(&mut self, id: Uuid, changes: Vec<FieldChange>) -> Result<(), IndexError> {
        let item = HistoryItem {
            seq: self.seq(),
            at: self.record.entry.time,
            actor: self.record.entry.actor.clone(),
            action: self.record.entry.kind.clone(),
            changes,
            reason: self.event.reason.clone(),
        };
        let bytes = serde_json::to_vec(&item).map_err(|e| fail(self.seq(), e.to_string()))?;
        self.batch
            .insert(schema::history(id).num(self.seq()), bytes);
        Ok(())
    }

    /// Keeps the word index in step with a changed subject; words in both stay untouched.
    fn words(&mut self, id: Uuid, old: &str, new: &str) {
        if old == new {
            return;
        }
        let old = schema::words(old);
        let new = schema::words(new);
        for w in old.iter().filter(|w| !new.contains(w)) {
            self.batch.remove(schema::word(w).id(id));
        }
        for w in new.iter().filter(|w| !old.contains(w)) {
            self.batch.insert(schema::word(w).id(id), &[][..]);
        }
    }

    /// Builds a new object from the event's fields plus what the journal knows.
    fn create(&mut self, kind_name: &str) -> Result<Object, IndexError> {
        let id = self
            .event
            .id
            .ok_or_else(|| fail(self.seq(), "create without id"))?;
        let mut fields = self.event.set.clone();
        let stamp =
            serde_json::to_value(self.stamp()).map_err(|e| fail(self.seq(), e.to_string()))?;
        fields.insert("kind".into(), Value::from(kind_name));
        fields.insert("id".into(), Value::from(id.to_string()));
        fields.insert("revision".into(), Value::from(1u64));
        fields.insert("created".into(), stamp.clone());
        fields.insert("updated".into(), stamp);
        let obj: Object = serde_json::from_value(Value::Object(fields)).map_err(|e| {
            fail(
                self.seq(),
                format!("{kind_name} event does not make an object: {e}"),
            )
        })?;
        let changes = self
            .event
            .set
            .iter()
            .map(|(k, v)| FieldChange {
                field: k.clone(),
                old: Value::Null,
                new: v.clone(),
            })
            .collect();
        self.history(id, changes)?;
        self.words(id, "", obj.subject());
        super::fields::reindex(self.batch, id, None, Some(&obj));
        self.changed.insert(id, obj.clone());
        Ok(obj)
    }

    /// Applies `set` to an existing object: new revision, stamp, history, word index.
    fn update(
        &mut self,
        id: Uuid,
        set: &Map<String, Value>,
    ) -> Result<(Object, Object), IndexError> {
        let old = self.get(id)?;
        let Value::Object(mut fields) =
            serde_json::to_value(&old).map_err(|e| fail(self.seq(), e.to_string()))?
        else {
            return Err(fail(self.seq(), "object is not a JSON object"));
        };
        let mut changes = Vec::new();
        for (k, v) in set {
            let before = fields.get(k).cloned().unwrap_or(Value::Null);
            if &before != v {
                changes.push(FieldChange {
                    field: k.clone(),
                    old: before,
                    new: v.clone(),
                });
                fields.insert(k.clone(), v.clone());
            }
        }
        fields.insert("revision".into(), Value::from(old.revision() + 1));
        fields.insert(
            "updated".into(),
            serde_json::to_value(self.stamp()).map_err(|e| fail(self.seq(), e.to_string()))?,
        );
        let new: Object = serde_json::from_value(Value::Object(fields)).map_err(|e| {
            fail(
                self.seq(),
                format!("update of {id} does not make an object: {e}"),
            )
        })?;
        self.history(id, changes)?;
        self.words(id, old.subject(), new.subject());
        super::fields::reindex(self.batch, id, Some(&old), Some(&new));
        self.changed.insert(id, new.clone());
        Ok((old, new))
    }

    fn hold(&self, id: Uuid) -> Result<Hold, IndexError> {
        let v = self
            .index
            .get(schema::key(tag::HOLD).id(id))?
            .ok_or_else(|| fail(self.seq(), format!("hold {id} does not exist")))?;
        serde_json::from_slice(&v).map_err(|e| fail(self.seq(), e.to_string()))
    }

    fn put_hold(&mut self, hold: &Hold) -> Result<(), IndexError> {
        let bytes = serde_json::to_vec(hold).map_err(|e| fail(self.seq(), e.to_string()))?;
        self.batch.insert(schema::key(tag::HOLD).id(hold.id), bytes);
        Ok(())
    }

    fn finish(self) -> Result<(), IndexError> {
        for (id, obj) in &self.changed {
            let bytes = serde_json::to_vec(obj).map_err(|e| fail(self.seq(), e.to_string()))?;
            self.batch.insert(schema::object(*id), bytes);
        }
        Ok(())
    }
}

impl Projection for RecordsProjection {
    fn apply(
        &self,
        index: &TenantIndex,
        record: &Record,
        batch: &mut crate::index::IndexBatch,
    ) -> Result<(), IndexError> {
        let entry = &record.entry;
        if !is_records_event(&entry.kind) {
            return Ok(());
        }
        let seq = entry.seq;
        let Some(payload) = entry.payloads.iter().find(|p| p.role == ROLE_EVENT) else {
            return Err(fail(seq, "records event without an event record"));
        };
        let Some(bytes) = record.attachment(&payload.digest) else {
            // Destroyed: the record and its salt are gone; what the event did to the
            // index was removed by the destruction that redacted it.
            return Ok(());
        };
        let event = EventRecord::from_bytes(bytes)
            .map_err(|e| fail(seq, format!("event record does not parse: {e}")))?;
        let mut a = Apply {
            index,
            batch,
            record,
            event: &event,
            changed: BTreeMap::new(),
        };
        let created_seq = |o: &Object| o.created().seq;
        match entry.kind.as_str() {
            kind::TENANT_CONFIGURE => {
                let key = schema::key(tag::SETTINGS);
                let mut settings: Map<String, Value> = match index.get(&key)? {
                    Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
                    None => Map::new(),
                };
                for (k, v) in &event.set {
                    settings.insert(k.clone(), v.clone());
                }
                let bytes = serde_json::to_vec(&settings).map_err(|e| fail(seq, e.to_string()))?;
                a.batch.insert(key, bytes);
            }
            kind::PLAN_UNIT_CREATE | kind::PLAN_UNIT_IMPORT => {
                let Object::PlanUnit(u) = a.create("plan_unit")? else {
                    return Err(fail(seq, "not a plan unit"));
                };
                a.batch.insert(
                    schema::key(tag::UNIT_CODE).raw(u.code.as_bytes()),
                    u.id.as_bytes(),
                );
                a.batch
                    .insert(schema::unit_children(u.parent).num(seq).id(u.id), &[][..]);
            }
            kind::PLAN_UNIT_UPDATE => {
                let id = event.id.ok_or_else(|| fail(seq, "update without id"))?;
                let (old, new) = a.update(id, &event.set)?;
                if let (Object::PlanUnit(o), Object::PlanUnit(n)) = (&old, &new) {
                    if o.code != n.code {
                        a.batch
                            .remove(schema::key(tag::UNIT_CODE).raw(o.code.as_bytes()));
                        a.batch.insert(
                            schema::key(tag::UNIT_CODE).raw(n.code.as_bytes()),
                            n.id.as_bytes(),
                        );
                    }
                    if o.parent != n.parent {
                        let s = created_seq(&old);
                        a.batch
                            .remove(schema::unit_children(o.parent).num(s).id(id));
                        a.batch
                            .insert(schema::unit_children(n.parent).num(s).id(id), &[][..]);
                    }
                }
            }
            kind::PLAN_UNIT_DELETE => {
                let id = event.id.ok_or_else(|| fail(seq, "delete without id"))?;
                let Object::PlanUnit(u) = a.get(id)? else {
                    return Err(fail(seq, "not a plan unit"));
                };
                a.batch.remove(schema::object(id));
                a.batch
                    .remove(schema::key(tag::UNIT_CODE).raw(u.code.as_bytes()));
                a.batch
                    .remove(schema::unit_children(u.parent).num(u.created.seq).id(id));
                a.words(id, &u.title, "");
                a.history(id, vec![])?;
            }
            kind::FILE_CREATE | kind::FILE_IMPORT => {
                let Object::File(f) = a.create("file")? else {
                    return Err(fail(seq, "not a file"));
                };
                a.batch.insert(
                    schema::key(tag::REFERENCE).raw(f.reference.as_bytes()),
                    f.id.as_bytes(),
                );
                a.batch
                    .insert(schema::unit_files(f.plan_unit).num(seq).id(f.id), &[][..]);
                if let Some(parent) = f.parent_file {
                    a.batch
                        .insert(schema::children(parent).num(seq).id(f.id), &[b'f'][..]);
                }
            }
            kind::CASE_CREATE | kind::CASE_IMPORT => {
                let Object::Case(c) = a.create("case")? else {
                    return Err(fail(seq, "not a case"));
                };
                let parent = c.parent_case.unwrap_or(c.file);
                a.batch
                    .insert(schema::children(parent).num(seq).id(c.id), &[b'c'][..]);
            }
            kind::DOCUMENT_CREATE | kind::DOCUMENT_IMPORT => {
                let Object::Document(d) = a.create("document")? else {
                    return Err(fail(seq, "not a document"));
                };
                a.batch
                    .insert(schema::children(d.parent).num(seq).id(d.id), &[b'd'][..]);
                // An imported document's versions come in its own entry.
                for data in &event.versions {
                    let version = Version {
                        document: d.id,
                        number: data.number,
                        comment: data.comment.clone(),
                        renditions: data.renditions.clone(),
                        created: a.stamp(),
                        original: data.original.clone(),
                    };
                    let bytes =
                        serde_json::to_vec(&version).map_err(|e| fail(seq, e.to_string()))?;
                    a.batch.insert(schema::version(d.id, data.number), bytes);
                }
            }
            kind::HANDOVER_SEND | kind::HANDOVER_RECEIPT | kind::HANDOVER_CONFIRM => {
                super::handover::apply(a.batch, &entry.kind, &event, seq)?;
                if entry.kind == kind::HANDOVER_SEND {
                    let process = event.id.unwrap_or_default();
                    let files: Vec<Uuid> = event
                        .set
                        .get("process")
                        .and_then(|p| p.get("files"))
                        .and_then(|f| serde_json::from_value(f.clone()).ok())
                        .unwrap_or_default();
                    for f in files {
                        let change = vec![FieldChange {
                            field: "handover".into(),
                            old: Value::Null,
                            new: Value::from(process.to_string()),
                        }];
                        a.history(f, change)?;
                    }
                }
                for m in &event.moves {
                    // A file destroyed later is gone when the index is rebuilt.
                    if !a.changed.contains_key(&m.id) && load_object(index, m.id)?.is_none() {
                        continue;
                    }
                    a.update(m.id, &m.set)?;
                }
            }
            kind::FILE_REFILE | kind::CASE_REFILE | kind::DOCUMENT_REFILE => {
                for (i, m) in event.moves.iter().enumerate() {
                    // What moved along and was destroyed on its own later is gone when
                    // the index is rebuilt (its create event is redacted); live, every
                    // move finds its object.
                    if i > 0
                        && !a.changed.contains_key(&m.id)
                        && load_object(index, m.id)?.is_none()
                    {
                        continue;
                    }
                    let (old, new) = a.update(m.id, &m.set)?;
                    refile_keys(a.batch, &old, &new);
                }
            }
            kind::ACCESS_CONFIDENTIALITY => {
                let id = event.id.ok_or_else(|| fail(seq, "change without id"))?;
                // Destroyed later: gone when the index is rebuilt (see the cascade below).
                if load_object(index, id)?.is_some() {
                    a.update(id, &event.set)?;
                }
            }
            kind::ORG_UNIT_CREATE
            | kind::ORG_UNIT_UPDATE
            | kind::ORG_UNIT_MEMBER_ADD
            | kind::ORG_UNIT_MEMBER_REMOVE
            | kind::PRINCIPAL_CLEARANCE
            | kind::ACCESS_LEAD_UNIT
            | kind::ACCESS_SHARE
            | kind::ACCESS_LOG => super::org::apply(index, a.batch, record, &event)?,
            kind::CUSTOM_FIELD_DEFINE | kind::CUSTOM_FIELD_UPDATE => {
                super::fields::apply(index, a.batch, record, &event)?
            }
            kind::FILE_UPDATE
            | kind::FILE_RETENTION
            | kind::CASE_UPDATE
            | kind::DOCUMENT_UPDATE
            | kind::FILE_CLOSE
            | kind::FILE_REOPEN
            | kind::CASE_CLOSE
            | kind::CASE_REOPEN => {
                let id = event.id.ok_or_else(|| fail(seq, "change without id"))?;
                a.update(id, &event.set)?;
                for other in &event.cascade {
                    // A part destroyed later on its own (a case the archive appraised V)
                    // is gone when the index is rebuilt: its create event is redacted.
                    // Live, the cascade always finds it.
                    if !a.changed.contains_key(other) && load_object(index, *other)?.is_none() {
                        continue;
                    }
                    a.update(*other, &event.set)?;
                }
            }
            kind::VERSION_ADD => {
                let id = event
                    .id
                    .ok_or_else(|| fail(seq, "version without document id"))?;
                let data = event
                    .version
                    .as_ref()
                    .ok_or_else(|| fail(seq, "version.add without version"))?;
                let version = Version {
                    document: id,
                    number: data.number,
                    comment: data.comment.clone(),
                    renditions: data.renditions.clone(),
                    created: a.stamp(),
                    original: data.original.clone(),
                };
                let bytes = serde_json::to_vec(&version).map_err(|e| fail(seq, e.to_string()))?;
                a.batch.insert(schema::version(id, data.number), bytes);
                let mut set = Map::new();
                set.insert("versions".into(), Value::from(data.number));
                a.update(id, &set)?;
            }
            kind::DISPOSAL_OFFER
            | kind::DISPOSAL_OFFER_RECEIPT
            | kind::DISPOSAL_APPRAISE
            | kind::DISPOSAL_TRANSFER
            | kind::DISPOSAL_TRANSFER_RECEIPT
            | kind::DISPOSAL_IMPORT_CONFIRM => {
                let process = event
                    .id
                    .ok_or_else(|| fail(seq, "disposal step without process id"))?;
                let step = event.set.get("step").cloned().unwrap_or(Value::Null);
                super::disposal::apply_step(
                    index,
                    a.batch,
                    &entry.kind,
                    process,
                    &step,
                    seq,
                    super::civil::civil_date(entry.time),
                )?;
            }
            kind::DISPOSAL_DESTROY => {
                let body: super::destruction::FileDestruction = event
                    .set
                    .get("destruction")
                    .cloned()
                    .ok_or_else(|| fail(seq, "destruction without its description"))
                    .and_then(|v| {
                        serde_json::from_value(v).map_err(|e| fail(seq, e.to_string()))
                    })?;
                super::destruction::apply_destruction(
                    index,
                    a.batch,
                    &body,
                    seq,
                    super::civil::civil_date(entry.time),
                )?;
            }
            kind::HOLD_PLACE => {
                let id = event.id.ok_or_else(|| fail(seq, "hold without id"))?;
                let field = |k: &str| {
                    event
                        .set
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let parse = |k: &str| {
                    Uuid::parse_str(&field(k)).map_err(|e| fail(seq, format!("hold {k}: {e}")))
                };
                let hold = Hold {
                    id,
                    object: parse("object")?,
                    file: parse("file")?,
                    reason: field("reason"),
                    reference: field("reference"),
                    placed: a.stamp(),
                    released: None,
                };
                a.put_hold(&hold)?;
                a.batch
                    .insert(schema::key(tag::FILE_HOLD).id(hold.file).id(id), &[][..]);
                let change = vec![FieldChange {
                    field: "hold".into(),
                    old: Value::Null,
                    new: Value::from(id.to_string()),
                }];
                a.history(hold.object, change)?;
            }
            kind::HOLD_RELEASE => {
                let id = event.id.ok_or_else(|| fail(seq, "release without id"))?;
                let mut hold = a.hold(id)?;
                hold.released = Some(HoldRelease {
                    stamp: a.stamp(),
                    reason: event.reason.clone().unwrap_or_default(),
                });
                a.put_hold(&hold)?;
                a.batch
                    .remove(schema::key(tag::FILE_HOLD).id(hold.file).id(id));
                let change = vec![FieldChange {
                    field: "hold".into(),
                    old: Value::from(id.to_string()),
                    new: Value::Null,
                }];
                a.history(hold.object, change)?;
            }
            other => return Err(fail(seq, format!("unknown records event {other}"))),
        }
        if let Some(c) = event.counter {
            let key = schema::counter(c.scope, c.year);
            let current = index
                .get(&key)?
                .and_then(|v| <[u8; 4]>::try_from(&v[..]).ok())
                .map_or(0, u32::from_be_bytes);
            a.batch
                .insert(key, &current.max(c.number).to_be_bytes()[..]);
        }
        if matches!(
            entry.kind.as_str(),
            kind::PLAN_UNIT_IMPORT | kind::FILE_IMPORT | kind::CASE_IMPORT | kind::DOCUMENT_IMPORT
        ) {
            let id = event.id.ok_or_else(|| fail(seq, "import without id"))?;
            let origin = a
                .changed
                .get(&id)
                .and_then(origin_of)
                .ok_or_else(|| fail(seq, "import without origin"))?;
            a.batch.insert(
                super::legacy::source_key(&origin.source_system, &origin.source_id),
                id.as_bytes(),
            );
            for (i, h) in event.original_history.iter().enumerate() {
                let bytes = serde_json::to_vec(h).map_err(|e| fail(seq, e.to_string()))?;
                a.batch.insert(
                    schema::key(tag::ORIGINAL_HISTORY)
                        .id(id)
                        .raw(&(i as u32).to_be_bytes()),
                    bytes,
                );
            }
        }
        if let (Some(rid), Some(digest), Some(id)) =
            (&event.request_id, event.request_digest, event.id)
        {
            let version = event.version.as_ref().map(|v| v.number);
            let v = serde_json::json!({"digest": digest, "id": id, "version": version});
            a.batch.insert(
                schema::key(tag::REQUEST).raw(rid.as_bytes()),
                serde_json::to_vec(&v).unwrap_or_default(),
            );
        }
        a.finish()
    }
}

/// Where an imported object came from.
pub(crate) fn origin_of(obj: &Object) -> Option<&super::types::Origin> {
    match obj {
        Object::PlanUnit(o) => o.origin.as_ref(),
        Object::File(o) => o.origin.as_ref(),
        Object::Case(o) => o.origin.as_ref(),
        Object::Document(o) => o.origin.as_ref(),
    }
}

/// Moves the listing and reference keys of an object a re-filing moved. The listing keys
/// carry the entry that created the object, so they stay in creation order.
fn refile_keys(batch: &mut crate::index::IndexBatch, old: &Object, new: &Object) {
    let created = old.created().seq;
    match (old, new) {
        (Object::File(o), Object::File(n)) => {
            if o.plan_unit != n.plan_unit {
                batch.remove(schema::unit_files(o.plan_unit).num(created).id(o.id));
                batch.insert(
                    schema::unit_files(n.plan_unit).num(created).id(n.id),
                    &[][..],
                );
            }
            if o.reference != n.reference {
                batch.remove(schema::key(tag::REFERENCE).raw(o.reference.as_bytes()));
                batch.insert(
                    schema::key(tag::REFERENCE).raw(n.reference.as_bytes()),
                    n.id.as_bytes(),
                );
            }
        }
        (Object::Case(o), Object::Case(n)) => {
            let (from, to) = (
                o.parent_case.unwrap_or(o.file),
                n.parent_case.unwrap_or(n.file),
            );
            if from != to {
                batch.remove(schema::children(from).num(created).id(o.id));
                batch.insert(schema::children(to).num(created).id(n.id), &[b'c'][..]);
            }
        }
        (Object::Document(o), Object::Document(n)) if o.parent != n.parent => {
            batch.remove(schema::children(o.parent).num(created).id(o.id));
            batch.insert(
                schema::children(n.parent).num(created).id(n.id),
                &[b'd'][..],
            );
        }
        _ => {}
    }
}
