//! The conformance suite: what every storage backend must do, as test cases any backend
//! can run (in the spirit of object_store's one suite for every store).
//!
//! A backend's test file implements [`Harness`] and calls [`run_all`] (or single cases).
//! Each case panics with a message naming the backend and the broken promise. The cases
//! use only the traits of `akte_core::backend` and the engine above them.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use akte_core::backend::{Backend, FaultKind, JournalScanItem};
use akte_core::entry::{Attachment, EntryDraft, Payload, PayloadKind};
use akte_core::store::{Store, StoreError, StoreOptions, Tenant};
use akte_core::Digest;

use crate::{append_document, append_naming, Rng};

/// How the suite reaches one backend.
pub trait Harness {
    /// The backend's name, for messages.
    fn name(&self) -> String;

    /// Opens the backend over its storage: the same storage every time (a restart), so
    /// that what one opening wrote the next one sees.
    fn open(&self) -> Arc<dyn Backend>;

    /// A copy of the storage as a crash would leave it while `store` is open and has not
    /// flushed anything it keeps in memory, opened; `None` if the backend cannot be
    /// crashed that way (memory).
    fn crashed_copy(&self, store: &Store) -> Option<Arc<dyn Backend>>;
}

/// Runs every case against the backend of `h`.
pub fn run_all(h: &dyn Harness) {
    acknowledged_entries_survive_a_restart(h);
    content_puts_are_idempotent_and_verified(h);
    concurrent_appends_get_gapless_unique_sequence_numbers(h);
    reads_return_entries_in_order_with_their_chain(h);
    index_reads_during_writes_see_whole_entries(h);
    large_objects_stream_through(h);
    errors_have_the_right_kind(h);
    recovery_after_a_crash_keeps_every_acknowledged_entry(h);
    destruction_removes_content_and_records_but_keeps_the_chain(h);
    tenants_see_nothing_of_each_other(h);
    metadata_blobs_are_replaced_atomically(h);
    unreferenced_content_is_collected_and_referenced_content_never(h);
}

fn store(h: &dyn Harness) -> Store {
    Store::open(h.open(), StoreOptions::default())
        .unwrap_or_else(|e| panic!("{}: open: {e}", h.name()))
}

fn tenant(store: &Store, id: &str) -> Arc<Tenant> {
    store
        .tenant(id)
        .or_else(|_| store.create_tenant(id))
        .expect("tenant")
}

/// Acknowledged means durable: every appended entry and its content are there, unchanged,
/// after the backend is opened again.
pub fn acknowledged_entries_survive_a_restart(h: &dyn Harness) {
    let mut acked = Vec::new();
    {
        let store = store(h);
        let t = tenant(&store, "durable");
        let mut rng = Rng::new(1);
        for i in 0..40 {
            let len = rng.range(0, 4000) as usize;
            let body = rng.bytes(len);
            let a = append_document(&t, "clerk:c", &format!("d{i}"), &body, b"{}").unwrap();
            acked.push((a.ticket.entry.seq, a.ticket.leaf, Digest::of(&body)));
        }
        t.checkpoint().unwrap();
    }
    let store = store(h);
    let t = store.tenant("durable").unwrap();
    assert_eq!(t.size().unwrap(), acked.len() as u64, "{}", h.name());
    for (seq, leaf, digest) in acked {
        let rec = t.entry(seq).unwrap();
        assert_eq!(rec.leaf, leaf, "{}: entry {seq} changed", h.name());
        let mut bytes = Vec::new();
        t.content()
            .get(&digest)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(Digest::of(&bytes), digest, "{}", h.name());
    }
    let (cp, _) = t.latest_checkpoint().unwrap();
    assert_eq!(cp.root, t.root(cp.size).unwrap(), "{}", h.name());
}

/// The same bytes twice store one object; announced digests and sizes are checked and a
/// mismatch stores nothing.
pub fn content_puts_are_idempotent_and_verified(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "idem");
    let c = t.content();
    let bytes = b"Bescheid vom 3. Mai".to_vec();
    let first = c.put_bytes(&bytes, None, None).unwrap();
    let second = c
        .put(&mut &bytes[..], Some(first.digest), Some(19))
        .unwrap();
    assert!(first.newly_stored, "{}", h.name());
    assert!(!second.newly_stored, "{}: stored twice", h.name());
    assert_eq!(first.digest, second.digest);
    assert_eq!(c.stat(&first.digest).unwrap().size, 19);
    let wrong = Digest::of(b"something else");
    let other = b"other bytes".to_vec();
    assert!(c.put(&mut &other[..], Some(wrong), None).is_err());
    assert!(c.put(&mut &other[..], None, Some(3)).is_err());
    assert!(
        !c.contains(&Digest::of(&other)).unwrap(),
        "{}: a refused put stored something",
        h.name()
    );
    let listed: HashSet<Digest> = c.list().map(|d| d.unwrap()).collect();
    assert!(listed.contains(&first.digest), "{}", h.name());
}

/// Many threads appending at once: every entry gets a unique sequence number, none is
/// skipped, and every acknowledged entry is readable.
pub fn concurrent_appends_get_gapless_unique_sequence_numbers(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "concurrent");
    let threads = 8;
    let per = 25;
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let t = t.clone();
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            append_document(
                                &t,
                                "clerk:c",
                                &format!("w{w}-{i}"),
                                format!("{w}/{i}").as_bytes(),
                                b"{}",
                            )
                            .unwrap()
                            .ticket
                            .entry
                            .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    let n = (threads * per) as u64;
    assert_eq!(
        unique.len() as u64,
        n,
        "{}: a sequence number twice",
        h.name()
    );
    assert_eq!(unique, (0..n).collect::<HashSet<_>>(), "{}: gaps", h.name());
    assert_eq!(t.size().unwrap(), n);
}

/// Reading the journal back gives the entries in order, each linked to the one before.
pub fn reads_return_entries_in_order_with_their_chain(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "order");
    for i in 0..30 {
        append_document(&t, "clerk:c", &format!("d{i}"), &[i as u8; 9], b"{}").unwrap();
    }
    let end = t.size().unwrap();
    let mut prev = Digest::ZERO;
    let mut n = 0;
    for rec in t.journal().iter(None, end).unwrap() {
        let rec = rec.unwrap();
        assert_eq!(rec.entry.seq, n, "{}", h.name());
        assert_eq!(rec.entry.prev, prev, "{}: chain broken", h.name());
        prev = rec.leaf;
        n += 1;
    }
    assert_eq!(n, end);
    // The verification scan sees the same records, and nothing damaged.
    let mut scanned = 0;
    for item in t.journal().scan(None, end) {
        match item {
            JournalScanItem::Record { record, .. } => {
                assert_eq!(record.entry.seq, scanned);
                scanned += 1;
            }
            JournalScanItem::Boundary { .. } => {}
            JournalScanItem::Damaged { place, reason, .. } => {
                panic!(
                    "{}: damage in a sound journal at {place}: {reason}",
                    h.name()
                )
            }
        }
    }
    assert_eq!(scanned, end);
    // Proofs from the index agree with the entries.
    let root = t.root(end).unwrap();
    for seq in [0, end / 2, end - 1] {
        let proof = t.inclusion_proof(seq, end).unwrap();
        let leaf = t.entry(seq).unwrap().leaf;
        akte_core::merkle::verify_inclusion(&leaf, seq, end, &proof, &root).unwrap();
    }
    // Nodes read together are the nodes read one by one; one not stored is missing.
    use akte_core::merkle::NodeSource;
    let mut positions = akte_core::merkle::CompactRange::peak_positions(end);
    positions.push((0, end / 2));
    let together = t.index().perfect_nodes(&positions).unwrap();
    for (&(level, index), node) in positions.iter().zip(&together) {
        assert_eq!(
            *node,
            t.index().perfect_node(level, index).unwrap(),
            "{}",
            h.name()
        );
    }
    assert!(
        t.index().perfect_nodes(&[(0, end + 5)]).is_err(),
        "{}: a node beyond the tree",
        h.name()
    );
}

/// Readers running beside writers see the index as of whole entries: the position never
/// goes back, and every content reference it counts is stored.
pub fn index_reads_during_writes_see_whole_entries(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "snapshot");
    std::thread::scope(|s| {
        let writer = {
            let t = t.clone();
            s.spawn(move || {
                for i in 0..120u32 {
                    append_document(&t, "clerk:c", "x", &i.to_be_bytes(), b"{}").unwrap();
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let pos = t.index().position().unwrap().next_seq;
            assert!(pos >= last, "{}: the index position went back", h.name());
            last = pos;
            for r in t.index().content_refs() {
                let (digest, _) = r.unwrap();
                assert!(
                    t.content().contains(&digest).unwrap(),
                    "{}: the index counts content that is not stored",
                    h.name()
                );
            }
        }
        writer.join().unwrap();
    });
}

/// A reader that makes `len` bytes of a repeating pattern without holding them.
struct Pattern {
    left: u64,
    at: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            *b = (self.at % 251) as u8 ^ (self.at >> 16) as u8;
            self.at += 1;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A 24 MiB object goes in from a reader and comes out the same, in pieces.
pub fn large_objects_stream_through(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "large");
    let len = 24u64 << 20;
    let put = t
        .content()
        .put(&mut Pattern { left: len, at: 0 }, None, Some(len))
        .unwrap();
    assert_eq!(put.size, len, "{}", h.name());
    let expected = sha2_of(Pattern { left: len, at: 0 });
    let got = sha2_of(t.content().get(&put.digest).unwrap());
    assert_eq!(got, expected, "{}", h.name());
    assert_eq!(Digest(got.0), put.digest, "{}", h.name());
}

fn sha2_of(mut r: impl Read) -> ([u8; 32], u64) {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).unwrap();
        if k == 0 {
            return (h.finalize().into(), n);
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// Errors say what kind of failure they are, whatever the backend.
pub fn errors_have_the_right_kind(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "errors");
    let missing = Digest::of(b"never stored");
    let e = t.content().stat(&missing).unwrap_err();
    assert_eq!(e.kind(), FaultKind::NotFound, "{}: {e}", h.name());
    let e = t.entry(999).unwrap_err();
    assert_eq!(e.kind(), FaultKind::NotFound, "{}: {e}", h.name());
    let e = store.create_tenant("errors").unwrap_err();
    assert_eq!(e.kind(), FaultKind::Conflict, "{}: {e}", h.name());
    let e = store.tenant("nobody").unwrap_err();
    assert_eq!(e.kind(), FaultKind::NotFound, "{}: {e}", h.name());
    // An entry naming content that is not stored is refused, and nothing is appended.
    let size = t.size().unwrap();
    let e = t
        .append(
            EntryDraft {
                actor: "clerk:c".into(),
                kind: "document.version".into(),
                object: "x".into(),
                payloads: vec![Payload {
                    kind: PayloadKind::Content,
                    role: "rendition".into(),
                    size: 3,
                    digest: missing,
                }],
            },
            vec![],
        )
        .unwrap_err();
    assert!(
        matches!(e, StoreError::ContentMissing { .. }),
        "{}: {e}",
        h.name()
    );
    // Attachments that do not match their payloads are refused.
    let att = Attachment::new(b"record".to_vec());
    let e = t
        .append(
            EntryDraft {
                actor: "clerk:c".into(),
                kind: "x".into(),
                object: "x".into(),
                payloads: vec![Payload {
                    kind: PayloadKind::Inline,
                    role: "event".into(),
                    size: 99,
                    digest: att.digest,
                }],
            },
            vec![att],
        )
        .unwrap_err();
    assert!(e.to_string().contains("attachment"), "{}: {e}", h.name());
    assert_eq!(t.size().unwrap(), size, "{}: a refusal appended", h.name());
    // Blob names are checked.
    assert!(t.meta().put("../escape", b"x", false).is_err());
    assert!(t.meta().get("a//b").is_err());
}

/// A crash while the store is open (nothing it buffers flushed) loses nothing that was
/// acknowledged; the store opens, verifies clean, and appends go on.
pub fn recovery_after_a_crash_keeps_every_acknowledged_entry(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "crash");
    let mut leaves = Vec::new();
    for i in 0..700u32 {
        let a = append_document(&t, "clerk:c", "d", &i.to_le_bytes(), b"{}").unwrap();
        leaves.push(a.ticket.leaf);
    }
    let Some(backend) = h.crashed_copy(&store) else {
        return;
    };
    let crashed = Store::open(backend, StoreOptions::default()).unwrap();
    let t = crashed.tenant("crash").unwrap();
    assert_eq!(t.size().unwrap(), leaves.len() as u64, "{}", h.name());
    for (seq, leaf) in leaves.iter().enumerate() {
        assert_eq!(&t.entry(seq as u64).unwrap().leaf, leaf, "{}", h.name());
    }
    let report =
        akte_core::verify::verify_store(&crashed, akte_core::verify::VerifyOptions::default())
            .unwrap();
    let crash_problems: Vec<_> = report.problems().filter(|p| p.tenant == "crash").collect();
    assert!(
        crash_problems.is_empty(),
        "{}: {crash_problems:#?}",
        h.name()
    );
    append_document(&t, "clerk:c", "after", b"after the crash", b"{}").unwrap();
}

/// Destruction (through the records model, the only path allowed to remove anything)
/// removes the salted records and the content, keeps every entry and proof, and the
/// backend's verification agrees.
pub fn destruction_removes_content_and_records_but_keeps_the_chain(h: &dyn Harness) {
    use akte_core::records::*;
    let records = Records::open(h.open(), StoreOptions::default()).unwrap();
    let t = records
        .tenant("destroy")
        .or_else(|_| records.create_tenant("destroy"))
        .unwrap();
    let unit = t
        .create_plan_unit(
            "registrar:r",
            NewPlanUnit {
                code: "1".into(),
                title: "Zeitweilig".into(),
                retention: Retention::Years(1),
                disposal: DisposalDecision::Destroy,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let file = t
        .create_file(
            "registrar:r",
            NewFile {
                plan_unit: unit.id,
                subject: "Geheimsache Zebra".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let doc = t
        .create_document(
            "clerk:c",
            NewDocument {
                parent: file.id,
                subject: "Anlage".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let body = b"only in the destroyed file".to_vec();
    let put = t.put_content(&body[..]).unwrap();
    t.add_version(
        "clerk:c",
        doc.id,
        NewVersion {
            comment: String::new(),
            renditions: vec![NewRendition {
                file_name: "a.txt".into(),
                media_type: "text/plain".into(),
                sha256: put.digest,
                size: put.size,
            }],
        },
        None,
    )
    .unwrap();
    let closed = chrono::NaiveDate::from_ymd_opt(2019, 3, 1).unwrap();
    t.close("registrar:r", file.id, None, Some(closed)).unwrap();
    let tenant = t.tenant().clone();
    let size = tenant.size().unwrap();
    let root = tenant.root(size).unwrap();
    let (record, _) = t
        .destroy("registrar:r", &[file.id], "basis", "Amtsleitung")
        .unwrap_or_else(|e| panic!("{}: destroy: {e}", h.name()));
    assert_eq!(record.files.len(), 1);
    assert!(
        !tenant.content().contains(&put.digest).unwrap(),
        "{}: content of a destroyed file is still stored",
        h.name()
    );
    // Every entry is still there, and the old root is still the root of the old size.
    assert_eq!(tenant.root(size).unwrap(), root, "{}", h.name());
    let redacted = tenant
        .journal()
        .iter(None, tenant.size().unwrap())
        .unwrap()
        .map(|r| r.unwrap())
        .flat_map(|r| r.attachments)
        .filter(|a| a.bytes.is_none())
        .count();
    assert!(redacted >= 3, "{}: {redacted} records redacted", h.name());
    let report = akte_core::verify::verify_store(
        records.store(),
        akte_core::verify::VerifyOptions::default(),
    )
    .unwrap();
    let problems: Vec<_> = report
        .problems()
        .filter(|p| p.tenant == "destroy")
        .collect();
    assert!(problems.is_empty(), "{}: {problems:#?}", h.name());
}

/// Two tenants with the same content and names see nothing of each other.
pub fn tenants_see_nothing_of_each_other(h: &dyn Harness) {
    let store = store(h);
    let a = tenant(&store, "wall-a");
    let b = tenant(&store, "wall-b");
    let put = a.put_content(&b"shared secret"[..]).unwrap();
    assert!(
        !b.content().contains(&put.digest).unwrap(),
        "{}: content crossed tenants",
        h.name()
    );
    a.meta().put("notes/x", b"a's", false).unwrap();
    assert_eq!(b.meta().get("notes/x").unwrap(), None, "{}", h.name());
    let before = b.size().unwrap();
    append_document(&a, "clerk:c", "x", b"only a", b"{}").unwrap();
    assert_eq!(b.size().unwrap(), before, "{}", h.name());
    assert_ne!(a.verifier(), b.verifier(), "{}: a shared key", h.name());
}

/// Blobs are replaced whole, listed by prefix, removed durably.
pub fn metadata_blobs_are_replaced_atomically(h: &dyn Harness) {
    let store = store(h);
    let t = tenant(&store, "blobs");
    let m = t.meta();
    m.put("things/one", b"1", false).unwrap();
    m.put("things/two", b"2", true).unwrap();
    m.put("things/one", b"one", false).unwrap();
    assert_eq!(m.get("things/one").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(
        m.get_secret("things/two").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        m.list("things/").unwrap(),
        vec!["things/one".to_owned(), "things/two".to_owned()],
        "{}",
        h.name()
    );
    // All blobs of a prefix at once: the same bytes as one by one, children only.
    m.put("things/deeper/three", b"3", false).unwrap();
    let all = m.get_all("things/").unwrap();
    let one_by_one: Vec<(String, Vec<u8>)> = m
        .list("things/")
        .unwrap()
        .into_iter()
        .map(|n| {
            let bytes = m.get(&n).unwrap().unwrap();
            (n, bytes)
        })
        .collect();
    assert_eq!(all, one_by_one, "{}", h.name());
    assert_eq!(
        all[0],
        ("things/one".to_owned(), b"one".to_vec()),
        "{}",
        h.name()
    );
    assert!(m.remove("things/one").unwrap());
    assert!(!m.remove("things/one").unwrap());
    drop(t);
    drop(store);
    let store = self::store(h);
    let t = store.tenant("blobs").unwrap();
    assert_eq!(
        t.meta().list("things/").unwrap(),
        vec!["things/two".to_owned()],
        "{}",
        h.name()
    );
}

/// Content no entry refers to is removed once a later run finds it still unreferenced
/// after the grace period; referenced content never is; a write naming content that was
/// removed is refused and records nothing.
pub fn unreferenced_content_is_collected_and_referenced_content_never(h: &dyn Harness) {
    use akte_core::content_gc::{collect_tenant, CollectOptions, MARKS_BLOB};
    use chrono::{Duration, Utc};
    let store = store(h);
    let t = tenant(&store, "collect");
    let name = h.name();
    let kept = b"recorded: the Bescheid".to_vec();
    append_document(&t, "clerk:c", "d1", &kept, b"{}").unwrap();
    let orphan = t
        .content()
        .put_bytes(b"uploaded, never recorded", None, None)
        .unwrap();
    let late = t
        .content()
        .put_bytes(b"recorded after its removal", None, None)
        .unwrap();
    let options = CollectOptions::default(); // a day's grace
    let t0 = Utc::now();

    // A dry run changes nothing.
    let dry = collect_tenant(
        &t,
        t0,
        CollectOptions {
            dry_run: true,
            ..options
        },
    )
    .unwrap();
    assert_eq!(
        (dry.listed, dry.unreferenced, dry.removed),
        (3, 2, 0),
        "{name}: {dry:?}"
    );
    assert!(
        t.meta().get(MARKS_BLOB).unwrap().is_none(),
        "{name}: a dry run marked"
    );

    // The first run only marks; within the grace period nothing goes.
    let first = collect_tenant(&t, t0, options).unwrap();
    assert_eq!(
        (first.newly_marked, first.waiting, first.removed),
        (2, 2, 0),
        "{name}"
    );
    let within = collect_tenant(&t, t0 + Duration::hours(23), options).unwrap();
    assert_eq!(
        (within.newly_marked, within.waiting, within.removed),
        (0, 2, 0),
        "{name}"
    );
    assert!(t.content().contains(&orphan.digest).unwrap(), "{name}");

    // After the grace period both unreferenced objects go, the recorded one stays.
    let after = collect_tenant(&t, t0 + Duration::hours(25), options).unwrap();
    assert_eq!(after.removed, 2, "{name}: {after:?}");
    assert!(after.problems.is_empty(), "{name}: {:?}", after.problems);
    assert_eq!(after.removed_bytes, orphan.size + late.size, "{name}");
    assert!(!t.content().contains(&orphan.digest).unwrap(), "{name}");
    assert!(
        t.content().contains(&Digest::of(&kept)).unwrap(),
        "{name}: referenced content removed"
    );
    assert!(
        t.meta().get(MARKS_BLOB).unwrap().is_none(),
        "{name}: marks left behind"
    );

    // A writer that stored its content before the removal and records it afterwards is
    // refused; the journal does not grow.
    let size = t.size().unwrap();
    let refused = append_naming(&t, "clerk:c", "d2", late.digest, late.size, b"{}");
    assert!(
        matches!(refused, Err(StoreError::ContentMissing { .. })),
        "{name}: {refused:?}"
    );
    assert_eq!(t.size().unwrap(), size, "{name}");

    // Nothing unreferenced is left, and the store verifies.
    let again = collect_tenant(&t, t0 + Duration::hours(50), options).unwrap();
    assert_eq!(
        (again.listed, again.unreferenced),
        (1, 0),
        "{name}: {again:?}"
    );

    // Pinned content (a transfer package kept for its download) stays while pinned, and
    // is collected like any other once the pin ended.
    let parked = t
        .content()
        .put_bytes(b"a transfer package", None, None)
        .unwrap();
    akte_core::content_gc::pin(&t, "transfer-1", &parked.digest, t0 + Duration::hours(60)).unwrap();
    let pinned = collect_tenant(&t, t0 + Duration::hours(55), options).unwrap();
    assert_eq!(
        (pinned.pinned, pinned.unreferenced),
        (1, 0),
        "{name}: {pinned:?}"
    );
    let ended = collect_tenant(&t, t0 + Duration::hours(61), options).unwrap();
    assert_eq!(
        (ended.pins_expired, ended.newly_marked),
        (1, 1),
        "{name}: {ended:?}"
    );
    assert!(
        t.meta()
            .list(akte_core::content_gc::PINS)
            .unwrap()
            .is_empty(),
        "{name}"
    );
    let gone = collect_tenant(&t, t0 + Duration::hours(86), options).unwrap();
    assert_eq!(gone.removed, 1, "{name}: {gone:?}");
    let report = akte_core::verify::verify_store(&store, Default::default()).unwrap();
    let problems: Vec<_> = report
        .problems()
        .filter(|p| p.tenant == "collect")
        .collect();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
}
