//! Collecting content that no committed entry refers to.
//!
//! Content is stored before the entry that names it (durable content before its entry), so
//! a write that fails after its upload (bad metadata, a client that gives up, a crash
//! between the two) leaves an object nothing refers to. On a shared installation such
//! objects would pile up forever; this module removes them, and never the reverse: an
//! object a committed entry refers to is never removed.
//!
//! Two rules make that hold while writers run on any number of processes:
//!
//! - **Removal inside the append session.** An object is removed only inside the tenant's
//!   append session (the same exclusive session every write takes, across processes on a
//!   shared backend), after its reference count in the index was read again there. A
//!   writer checks that its content is stored inside that session too
//!   (`Tenant::check_content`), so a write whose content was removed a moment before is
//!   refused with "content not stored" and records nothing; it never commits a dangling
//!   reference.
//! - **Two sightings, a grace period apart.** A run only marks what it finds unreferenced
//!   (blob `gc/unreferenced`: each digest with the time it was first seen so); an object is
//!   removed by a later run once it was first seen unreferenced at least the grace period
//!   before. Uploads that are about to be recorded (a client streaming a large version,
//!   an import that stores a package's content before its entries, a migration copying
//!   content ahead of the journal) are thereby left alone, as long as they are recorded
//!   within the grace period.
//!
//! Two runs at once (two akted instances) are harmless: each removal is decided inside
//! the session; at worst one run's marks overwrite the other's and an object waits one
//! run longer. The blob is bounded ([`MAX_MARKS`]); what does not fit is marked by a
//! later run.
//!
//! Content that is kept for a while without an entry (a transfer package, stored so that
//! every instance of a shared installation can serve its download) is *pinned*: a blob
//! under `pins/` names its digest and until when it is kept; pinned content counts as
//! referenced until then, and an expired pin is removed by the next run.
//!
//! Besides objects, a content backend may hold leftovers of interrupted uploads (S3's
//! `tmp/` objects); `ContentBackend::sweep_leftovers` removes those older than the
//! grace period.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::content::{ContentError, Destruction};
use crate::digest::Digest;
use crate::store::{StoreError, Tenant, Write};

/// The tenant blob that holds the marks of earlier runs.
pub const MARKS_BLOB: &str = "gc/unreferenced";

/// First line of the marks blob; then one record per mark: 32 bytes of digest and the
/// time it was first seen unreferenced as 8 bytes big-endian milliseconds since the Unix
/// epoch.
const MARKS_MAGIC: &[u8] = b"akte-gc-marks 1\n";

/// Prefix of the tenant blobs that pin content (see the module documentation).
pub const PINS: &str = "pins/";

/// First line of a pin blob; then 32 bytes of digest and the time the pin ends as 8
/// bytes big-endian milliseconds since the Unix epoch.
const PIN_MAGIC: &[u8] = b"akte-pin 1\n";

/// Most marks kept (40 bytes each: 8 MB).
pub const MAX_MARKS: usize = 200_000;

/// Objects removed per append session, so that writers never wait long for one.
const REMOVE_BATCH: usize = 64;

/// Default grace period: a day, far beyond any upload or import being recorded.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How a run behaves.
#[derive(Debug, Clone, Copy)]
pub struct CollectOptions {
    /// How long an object must have been unreferenced (seen so by an earlier run) before
    /// it is removed.
    pub grace: Duration,
    /// Only report: mark nothing, remove nothing.
    pub dry_run: bool,
}

impl Default for CollectOptions {
    fn default() -> CollectOptions {
        CollectOptions {
            grace: DEFAULT_GRACE,
            dry_run: false,
        }
    }
}

/// What one run did for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CollectReport {
    /// The tenant.
    pub tenant: String,
    /// Objects listed in the content store.
    pub listed: u64,
    /// Of those, objects no committed entry refers to.
    pub unreferenced: u64,
    /// Unreferenced objects seen so for the first time (marked now).
    pub newly_marked: u64,
    /// Unreferenced objects whose grace period has not run out yet.
    pub waiting: u64,
    /// Objects removed.
    pub removed: u64,
    /// Their size in bytes.
    pub removed_bytes: u64,
    /// Objects found referenced again when checked inside the append session (recorded
    /// meanwhile), kept.
    pub referenced_meanwhile: u64,
    /// Leftovers of interrupted uploads removed (backend-specific, e.g. S3 `tmp/`).
    pub leftovers_removed: u64,
    /// Objects kept because a live pin names them (not counted as unreferenced).
    pub pinned: u64,
    /// Pins that ended and were removed.
    pub pins_expired: u64,
    /// Unreferenced objects not marked because the marks blob is full.
    pub not_marked: u64,
    /// Objects or listings that could not be handled (each named); the run goes on.
    pub problems: Vec<String>,
}

/// Collects unreferenced content of one tenant as of `now` (see the module
/// documentation). Errors of single objects are collected in the report; an error that
/// stops the run (the marks cannot be read or written, the tenant is fenced) is returned.
pub fn collect_tenant(
    tenant: &Tenant,
    now: DateTime<Utc>,
    options: CollectOptions,
) -> Result<CollectReport, StoreError> {
    let mut report = CollectReport {
        tenant: tenant.id().to_owned(),
        ..CollectReport::default()
    };
    let earlier = read_marks(tenant)?;
    let (pins, expired) = live_pins(tenant, now)?;
    if !options.dry_run {
        for name in &expired {
            tenant.meta().remove(name)?;
        }
        report.pins_expired = expired.len() as u64;
    }
    let grace_ms = i64::try_from(options.grace.as_millis()).unwrap_or(i64::MAX);
    let due_before = now.timestamp_millis().saturating_sub(grace_ms);

    // Mark: everything unreferenced now, with the time it was first seen so.
    let mut marks: HashMap<Digest, i64> = HashMap::new();
    let mut due: Vec<Digest> = Vec::new();
    for item in tenant.content().list() {
        let digest = match item {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        if marks.contains_key(&digest) {
            continue; // listed twice (a file and a pack record of the same object)
        }
        report.listed += 1;
        if pins.contains(&digest) {
            report.pinned += 1;
            continue;
        }
        match tenant.index().content_ref(&digest) {
            Ok(Some(r)) if r.count > 0 => continue,
            Ok(_) => {}
            Err(e) => {
                report.problems.push(format!("content {digest}: {e}"));
                continue;
            }
        }
        report.unreferenced += 1;
        let first_seen = match earlier.get(&digest) {
            Some(&t) => t,
            None => {
                if marks.len() >= MAX_MARKS {
                    report.not_marked += 1;
                    continue;
                }
                report.newly_marked += 1;
                now.timestamp_millis()
            }
        };
        if first_seen <= due_before {
            due.push(digest);
        } else {
            report.waiting += 1;
        }
        marks.insert(digest, first_seen);
    }
    if options.dry_run {
        // What a real run would remove (at most: a write may record some meanwhile).
        report.removed = due.len() as u64;
        report.removed_bytes = due
            .iter()
            .filter_map(|d| tenant.content().stat(d).ok())
            .map(|info| info.size)
            .sum();
        return Ok(report);
    }

    // Sweep: what is due, checked again inside the append session.
    for batch in due.chunks(REMOVE_BATCH) {
        let outcomes = remove_unreferenced(tenant, batch, now)?;
        for (digest, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Removal::Removed(size) => {
                    report.removed += 1;
                    report.removed_bytes += size;
                    marks.remove(digest);
                }
                Removal::Gone => {
                    marks.remove(digest);
                }
                Removal::Referenced => {
                    report.referenced_meanwhile += 1;
                    marks.remove(digest);
                }
                Removal::Failed(e) => {
                    report.problems.push(format!("content {digest}: {e}"));
                }
            }
        }
    }
    match tenant.content().sweep_leftovers(options.grace) {
        Ok(n) => report.leftovers_removed = n,
        Err(e) => report.problems.push(e.to_string()),
    }
    write_marks(tenant, &marks)?;
    if report.removed > 0 || report.leftovers_removed > 0 {
        tracing::info!(
            tenant = tenant.id(),
            removed = report.removed,
            bytes = report.removed_bytes,
            leftovers = report.leftovers_removed,
            "collected unreferenced content"
        );
    }
    Ok(report)
}

/// What became of one object due for removal.
pub(crate) enum Removal {
    /// Removed; its stored size.
    Removed(u64),
    /// Already gone (another run removed it).
    Gone,
    /// An entry committed meanwhile refers to it: kept.
    Referenced,
    /// It could not be checked or removed.
    Failed(StoreError),
}

/// Removes the objects of `batch` that are still unreferenced, inside one append session
/// of the tenant, so that no write can record a reference between the check and the
/// removal (see the module documentation). Destruction removes released content through
/// here too. Nothing is removed while the index does not hold every entry of the journal
/// (an index being rebuilt, on a shared database by another process): then every object
/// is reported [`Removal::Failed`].
pub(crate) fn remove_unreferenced(
    tenant: &Tenant,
    batch: &[Digest],
    now: DateTime<Utc>,
) -> Result<Vec<Removal>, StoreError> {
    let content = tenant.content();
    let (outcomes, _) = tenant.append_at(|index, next_seq| {
        let indexed = index.position()?.next_seq;
        if indexed != next_seq {
            let reason = format!(
                "the index holds {indexed} of the journal's {next_seq} entries (being \
                 rebuilt?); nothing is removed until it is complete"
            );
            let unavailable = || StoreError::TenantUnavailable {
                tenant: tenant.id().to_owned(),
                reason: reason.clone(),
            };
            return Ok::<_, StoreError>(Write::Skip(
                batch
                    .iter()
                    .map(|_| Removal::Failed(unavailable()))
                    .collect(),
            ));
        }
        // Pins are read again in here: content pinned since the run began is kept.
        let (pins, _) = live_pins(tenant, now)?;
        let mut out = Vec::with_capacity(batch.len());
        for digest in batch {
            if pins.contains(digest) {
                out.push(Removal::Referenced);
                continue;
            }
            match index.content_ref(digest) {
                Ok(Some(r)) if r.count > 0 => {
                    out.push(Removal::Referenced);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    out.push(Removal::Failed(e.into()));
                    continue;
                }
            }
            let size = match content.stat(digest) {
                Ok(info) => info.size,
                Err(ContentError::NotFound { .. }) => {
                    out.push(Removal::Gone);
                    continue;
                }
                Err(e) => {
                    out.push(Removal::Failed(e.into()));
                    continue;
                }
            };
            out.push(match content.remove(digest, Destruction::authorised()) {
                Ok(true) => Removal::Removed(size),
                Ok(false) => Removal::Gone,
                Err(e) => Removal::Failed(e.into()),
            });
        }
        Ok(Write::Skip(out))
    })?;
    Ok(outcomes)
}

/// Pins `digest` until `until` under the blob `pins/<name>` (replacing an earlier pin
/// of that name): until then no run collects it. Pin before storing the content.
pub fn pin(
    tenant: &Tenant,
    name: &str,
    digest: &Digest,
    until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut bytes = PIN_MAGIC.to_vec();
    bytes.extend_from_slice(digest.as_bytes());
    bytes.extend_from_slice(&until.timestamp_millis().to_be_bytes());
    tenant.meta().put(&format!("{PINS}{name}"), &bytes, false)?;
    Ok(())
}

/// The digests pinned at `now`, and the names of pins that ended. A damaged pin keeps
/// nothing and is reported as ended (logged).
fn live_pins(
    tenant: &Tenant,
    now: DateTime<Utc>,
) -> Result<(std::collections::HashSet<Digest>, Vec<String>), StoreError> {
    let mut live = std::collections::HashSet::new();
    let mut ended = Vec::new();
    for (name, bytes) in tenant.meta().get_all(PINS)? {
        let parsed = bytes
            .strip_prefix(PIN_MAGIC)
            .filter(|b| b.len() == 40)
            .and_then(|b| Some((Digest::from_slice(&b[..32])?, b[32..].try_into().ok()?)));
        match parsed {
            Some((digest, until)) if i64::from_be_bytes(until) > now.timestamp_millis() => {
                live.insert(digest);
            }
            Some(_) => ended.push(name),
            None => {
                tracing::warn!(tenant = tenant.id(), blob = %name, "a damaged pin is dropped");
                ended.push(name);
            }
        }
    }
    Ok((live, ended))
}

/// The marks of earlier runs. A damaged blob is dropped (logged): marks only delay
/// removal, so starting afresh is safe.
fn read_marks(tenant: &Tenant) -> Result<HashMap<Digest, i64>, StoreError> {
    let Some(bytes) = tenant.meta().get(MARKS_BLOB)? else {
        return Ok(HashMap::new());
    };
    match decode_marks(&bytes) {
        Some(marks) => Ok(marks),
        None => {
            tracing::warn!(
                tenant = tenant.id(),
                blob = MARKS_BLOB,
                "the marks of unreferenced content are damaged; marking afresh"
            );
            Ok(HashMap::new())
        }
    }
}

fn write_marks(tenant: &Tenant, marks: &HashMap<Digest, i64>) -> Result<(), StoreError> {
    if marks.is_empty() {
        tenant.meta().remove(MARKS_BLOB)?;
        return Ok(());
    }
    tenant.meta().put(MARKS_BLOB, &encode_marks(marks), false)?;
    Ok(())
}

fn encode_marks(marks: &HashMap<Digest, i64>) -> Vec<u8> {
    let mut sorted: Vec<_> = marks.iter().collect();
    sorted.sort();
    let mut out = Vec::with_capacity(MARKS_MAGIC.len() + sorted.len() * 40);
    out.extend_from_slice(MARKS_MAGIC);
    for (digest, first_seen) in sorted {
        out.extend_from_slice(digest.as_bytes());
        out.extend_from_slice(&first_seen.to_be_bytes());
    }
    out
}

fn decode_marks(bytes: &[u8]) -> Option<HashMap<Digest, i64>> {
    let body = bytes.strip_prefix(MARKS_MAGIC)?;
    if body.len() % 40 != 0 || body.len() / 40 > MAX_MARKS {
        return None;
    }
    let mut marks = HashMap::with_capacity(body.len() / 40);
    for record in body.chunks_exact(40) {
        let digest = Digest::from_slice(&record[..32])?;
        let first_seen = i64::from_be_bytes(record[32..].try_into().ok()?);
        marks.insert(digest, first_seen);
    }
    Some(marks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::store::{Store, StoreOptions};

    #[test]
    fn nothing_is_removed_while_the_index_lacks_entries() {
        let store = Store::open(MemoryBackend::new(), StoreOptions::default()).unwrap();
        let t = store.create_tenant("t").unwrap();
        let orphan = t.put_content(&b"never recorded"[..]).unwrap();
        let t0 = Utc::now();
        let options = CollectOptions::default();
        collect_tenant(&t, t0, options).unwrap();
        // An entry, then the index emptied, as while another process rebuilds a shared
        // database's index: the journal holds more than the index.
        let draft = crate::entry::EntryDraft {
            actor: "clerk:c".into(),
            kind: "note".into(),
            object: "o".into(),
            payloads: Vec::new(),
        };
        t.append(draft, Vec::new()).unwrap();
        t.index().clear().unwrap();
        let r = collect_tenant(&t, t0 + chrono::Duration::hours(25), options).unwrap();
        assert_eq!(r.removed, 0, "{r:?}");
        assert!(t.content().contains(&orphan.digest).unwrap());
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(r.problems[0].contains("being rebuilt"), "{r:?}");
        // Rebuilt, the index is whole again and the orphan goes.
        t.rebuild_index().unwrap();
        let r = collect_tenant(&t, t0 + chrono::Duration::hours(26), options).unwrap();
        assert_eq!(r.removed, 1, "{r:?}");
    }

    #[test]
    fn marks_round_trip_and_damage_is_refused() {
        let mut marks = HashMap::new();
        marks.insert(Digest::of(b"a"), 1_700_000_000_000);
        marks.insert(Digest::of(b"b"), -5);
        let bytes = encode_marks(&marks);
        assert_eq!(decode_marks(&bytes), Some(marks));
        assert_eq!(decode_marks(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_marks(b"other blob"), None);
        assert_eq!(decode_marks(MARKS_MAGIC), Some(HashMap::new()));
    }
}
