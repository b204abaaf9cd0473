//! What only the PostgreSQL backend has: schema migrations, several processes on one
//! database, and a database that goes away and comes back.

use std::sync::Arc;

use akte_core::backend::{BackendError, FaultKind};
use akte_core::store::{Store, StoreOptions};
use akte_postgres::{PgBackend, PgOptions, SCHEMA_VERSION};
use akte_tests::append_document;
use akte_tests::pg::{shared, PgServer};

fn connect(url: &str) -> Arc<PgBackend> {
    PgBackend::connect(url, PgOptions::default()).expect("connect")
}

#[test]
fn an_older_schema_is_upgraded_and_a_newer_one_refused() {
    let pg = shared();
    let url = pg.fresh_database();
    let db = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    // A database as the first release left it: schema version 1, a tenant with entries.
    {
        let old = PgBackend::connect_at(&url, PgOptions::default(), 1).unwrap();
        assert_eq!(
            pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
            "1"
        );
        assert!(
            pg.psql(&db, "SELECT 1 FROM akte_objects").is_err(),
            "no content tables at 1"
        );
        let _ = old;
    }
    // Schema version 2 (content in the database) has no upload sessions yet.
    {
        let v2 = PgBackend::connect_at(&url, PgOptions::default(), 2).unwrap();
        assert_eq!(
            pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
            "2"
        );
        assert!(pg.psql(&db, "SELECT 1 FROM akte_objects").is_ok());
        assert!(
            pg.psql(&db, "SELECT 1 FROM akte_upload_sessions").is_err(),
            "no upload tables at 2"
        );
        let _ = v2;
    }
    // This build upgrades it and works on it.
    let backend = connect(&url);
    assert_eq!(
        pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
        SCHEMA_VERSION.to_string()
    );
    assert!(pg.psql(&db, "SELECT 1 FROM akte_upload_parts").is_ok());
    let store = Store::open(backend, StoreOptions::default()).unwrap();
    let t = store.create_tenant("gemeinde").unwrap();
    append_document(&t, "clerk:c", "a", b"nach dem Upgrade", b"{}").unwrap();
    drop(t);
    drop(store);
    // Connecting again changes nothing.
    connect(&url);
    // A schema written by a newer akte is refused with a clear error, and left alone.
    pg.psql(&db, "UPDATE akte_schema SET version = 99").unwrap();
    let err = PgBackend::connect(&url, PgOptions::default()).unwrap_err();
    assert!(
        matches!(err, BackendError::UnsupportedFormat { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("99") && text.contains("newer"), "{text}");
    assert_eq!(
        pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
        "99"
    );
}

#[test]
fn bad_connection_strings_and_absent_servers_are_clear_errors() {
    let err = PgBackend::connect("postgres://host:notaport/db", PgOptions::default()).unwrap_err();
    assert_eq!(err.kind(), FaultKind::Other, "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::default()
    };
    let url = format!("postgres://akte:geheim@127.0.0.1:{port}/akte?sslmode=disable");
    let err = PgBackend::connect(&url, options).unwrap_err();
    assert_eq!(err.kind(), FaultKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(text.contains("refused"), "says why: {text}");
    assert!(
        !text.contains("geheim"),
        "the password is never shown: {text}"
    );
}

/// The database restarts under load: writes fail with "unavailable" while it is down,
/// nothing acknowledged is lost, nothing half-written stays, and the same store writes
/// again once it is back, without being opened again.
#[test]
fn a_database_restart_fails_writes_cleanly_and_heals() {
    let pg = PgServer::start();
    let url = pg.fresh_database();
    let store = Store::open(connect(&url), StoreOptions::default()).unwrap();
    store.create_tenant("amt").unwrap();
    let mut acked = Vec::new();
    let mut failed = 0u64;
    let mut kinds = std::collections::BTreeSet::new();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut i = 0u32;
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(6) {
                i += 1;
                let t = match store.tenant("amt") {
                    Ok(t) => t,
                    Err(e) => {
                        kinds.insert(format!("{:?}", e.kind()));
                        failed += 1;
                        continue;
                    }
                };
                match append_document(&t, "clerk:c", "d", &i.to_be_bytes(), b"{}") {
                    Ok(a) => acked.push((a.ticket.entry.seq, a.ticket.leaf)),
                    Err(e) => {
                        kinds.insert(format!("{:?}", e.kind()));
                        failed += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(1500));
        pg.stop(false); // immediate: as a crash of the database server
        std::thread::sleep(std::time::Duration::from_millis(1500));
        pg.resume();
        writer.join().unwrap();
    });
    assert!(failed > 0, "writes failed while the database was down");
    assert!(
        kinds.iter().all(|k| k == "Unavailable"),
        "failures are 'unavailable': {kinds:?}"
    );
    let before = acked.len();
    // Writes work again through the same store.
    let t = store.tenant("amt").unwrap();
    let a = append_document(&t, "clerk:c", "d", b"after", b"{}").unwrap();
    acked.push((a.ticket.entry.seq, a.ticket.leaf));
    assert!(before > 0);
    // Every acknowledged entry is there, at its place in one verified chain.
    let fresh = Store::open(connect(&url), StoreOptions::default()).unwrap();
    let t = fresh.tenant("amt").unwrap();
    for (seq, leaf) in &acked {
        assert_eq!(&t.entry(*seq).unwrap().leaf, leaf, "entry {seq}");
    }
    let report = akte_core::verify::verify_store(&fresh, Default::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    eprintln!(
        "{} entries acknowledged, {failed} writes failed while the database restarted",
        acked.len()
    );
}

/// A tenant with `n` documents of one version each in a file, and a file that was
/// destroyed (so the copy carries redacted records and removed content).
fn fill(records: &akte_core::records::Records, tenant: &str, n: u32) {
    use akte_core::records::*;
    let t = records.create_tenant(tenant).unwrap();
    let unit = t
        .create_plan_unit(
            "registrar:r",
            NewPlanUnit {
                code: "1".into(),
                title: "Bauanträge".into(),
                retention: Retention::Years(1),
                disposal: DisposalDecision::Destroy,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let mut files = Vec::new();
    for subject in ["Bauantrag Lindenstraße 4", "Abriss Mühlweg"] {
        let file = t
            .create_file(
                "registrar:r",
                NewFile {
                    plan_unit: unit.id,
                    subject: subject.into(),
                    ..NewFile::default()
                },
                None,
            )
            .unwrap();
        files.push(file.id);
    }
    for i in 0..n {
        add_doc(&t, files[(i % 2) as usize], i);
    }
    let closed = chrono::NaiveDate::from_ymd_opt(2019, 3, 1).unwrap();
    t.close("registrar:r", files[1], None, Some(closed))
        .unwrap();
    t.destroy("registrar:r", &[files[1]], "Fristablauf", "Amtsleitung")
        .unwrap();
    t.tenant().checkpoint().unwrap();
}

fn add_doc(t: &akte_core::records::TenantRecords, file: uuid::Uuid, i: u32) {
    use akte_core::records::*;
    let doc = t
        .create_document(
            "clerk:c",
            NewDocument {
                parent: file,
                subject: format!("Schreiben {i}"),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let body = format!("Schreiben Nr. {i} an Frau Müller").repeat(1 + i as usize % 50);
    let put = t.put_content(body.as_bytes()).unwrap();
    t.add_version(
        "clerk:c",
        doc.id,
        NewVersion {
            comment: String::new(),
            renditions: vec![NewRendition {
                file_name: format!("schreiben-{i}.txt"),
                media_type: "text/plain".into(),
                sha256: put.digest,
                size: put.size,
            }],
        },
        None,
    )
    .unwrap();
}

/// A data directory's tenants moved to PostgreSQL and back: every entry, blob and object
/// arrives unchanged, both stores verify, the copy back is a data directory the
/// independent Python verifier accepts, and running the copy again resumes (copies only
/// what is new).
#[test]
fn stores_move_between_backends_unchanged_and_resumably() {
    use akte_core::migrate::copy_store;
    use akte_core::records::Records;

    let records_store = |backend: Arc<dyn akte_core::backend::Backend>| {
        Records::open(backend, StoreOptions::default())
            .unwrap()
            .store()
            .clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let source_records = Records::open(
        akte_core::embedded::open(&dir.path().join("source")).unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    for tenant in ["bauamt", "ordnungsamt"] {
        fill(&source_records, tenant, 60);
    }
    let source = source_records.store().clone();
    let url = shared().fresh_database();
    let target = records_store(connect(&url));
    let copied = copy_store(&source, &target, &mut |_| {}).unwrap();
    assert_eq!(copied.len(), 2);
    for c in &copied {
        let s = source.tenant(&c.tenant).unwrap();
        let t = target.tenant(&c.tenant).unwrap();
        let n = s.size().unwrap();
        assert!(n > 120, "{c:?}");
        assert_eq!((c.entries, c.copied_entries), (n, n), "{c:?}");
        assert_eq!(c.copied_objects, c.objects, "{c:?}");
        assert!(c.objects >= 30, "{c:?}");
        assert_eq!(t.root(n).unwrap(), s.root(n).unwrap());
        assert_eq!(t.verifier(), s.verifier());
        assert_eq!(
            t.latest_checkpoint().unwrap().0,
            s.latest_checkpoint().unwrap().0
        );
    }
    let report = akte_core::verify::verify_store(&target, Default::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );

    // The source grows; the second run copies only the new entries and objects.
    let before = source.tenant("bauamt").unwrap().size().unwrap();
    source_records
        .tenant("bauamt")
        .unwrap()
        .create_plan_unit(
            "registrar:r",
            akte_core::records::NewPlanUnit {
                code: "2".into(),
                title: "Neu".into(),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    let again = copy_store(&source, &target, &mut |_| {}).unwrap();
    let bauamt = again.iter().find(|c| c.tenant == "bauamt").unwrap();
    assert_eq!(
        (bauamt.entries, bauamt.copied_entries, bauamt.copied_objects),
        (before + 1, 1, 0)
    );
    let ordnungsamt = again.iter().find(|c| c.tenant == "ordnungsamt").unwrap();
    assert_eq!(
        (ordnungsamt.copied_entries, ordnungsamt.copied_objects),
        (0, 0)
    );

    // And back into a data directory, which the independent verifier checks.
    let back_dir = dir.path().join("back");
    let back = records_store(akte_core::embedded::open(&back_dir).unwrap());
    copy_store(&target, &back, &mut |_| {}).unwrap();
    let report = akte_core::verify::verify_store(&back, Default::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    drop(back);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_store.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&back_dir)
        .output()
        .expect("python3 runs tools/verify_store.py");
    assert!(
        out.status.success(),
        "verify_store.py: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A target holding a different tenant of the same id is refused, and left alone.
    let other_dir = tempfile::tempdir().unwrap();
    let other = records_store(akte_core::embedded::open(other_dir.path()).unwrap());
    let o = other.create_tenant("bauamt").unwrap();
    o.checkpoint().unwrap();
    let err = copy_store(&source, &other, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("different tenant"), "{err}");
    assert_eq!(o.size().unwrap(), 0);
}

/// Signing keys are sealed in the database with the configured key: the stored bytes are
/// not the key, the tenant works with the key, and without it (or with another one) it is
/// refused with a clear error instead of signing with something else.
#[test]
fn signing_keys_are_sealed_in_the_database() {
    use akte_postgres::seal::SealKey;
    let pg = shared();
    let url = pg.fresh_database();
    let db = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let with = |key: Option<SealKey>| {
        PgBackend::connect(
            &url,
            PgOptions {
                seal_key: key,
                ..PgOptions::default()
            },
        )
        .unwrap()
    };
    let key = SealKey::new([9; 32]);
    {
        let store = Store::open(with(Some(key.clone())), StoreOptions::default()).unwrap();
        let t = store.create_tenant("kaemmerei").unwrap();
        append_document(&t, "clerk:c", "a", b"Haushalt", b"{}").unwrap();
        t.checkpoint().unwrap();
    }
    let stored = pg
        .psql(
            &db,
            "SELECT encode(substr(bytes, 1, 14), 'escape') FROM akte_meta \
             WHERE tenant = 'kaemmerei' AND name = 'keys/checkpoint.key'",
        )
        .unwrap();
    assert_eq!(stored, "akte-sealed-v1", "the signing key is stored sealed");
    // With the key: it signs again.
    let store = Store::open(with(Some(key)), StoreOptions::default()).unwrap();
    let t = store.tenant("kaemmerei").unwrap();
    append_document(&t, "clerk:c", "b", b"Nachtrag", b"{}").unwrap();
    t.checkpoint().unwrap();
    drop(t);
    drop(store);
    // Without it, or with another one: the tenant does not open, and says why.
    for other in [None, Some(SealKey::new([1; 32]))] {
        let store = Store::open(with(other), StoreOptions::default()).unwrap();
        let err = store.tenant("kaemmerei").unwrap_err().to_string();
        assert!(
            err.contains("sealed") || err.contains("configured key"),
            "{err}"
        );
    }
}

/// Object storage that hangs: uploads fail with "unavailable" and record nothing, reads of
/// stored content fail with a clear error, and both work again when it is back, through the
/// same store.
#[test]
fn object_storage_down_fails_cleanly_and_heals() {
    use akte_tests::s3::S3Server;
    let s3 = S3Server::start();
    let url = shared().fresh_database();
    let backend = PgBackend::connect(
        &url,
        PgOptions {
            content: Some(s3.options(s3.fresh_bucket())),
            op_timeout: std::time::Duration::from_secs(3),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let store = Store::open(backend, StoreOptions::default()).unwrap();
    let t = store.create_tenant("ordnungsamt").unwrap();
    append_document(&t, "clerk:c", "a", b"vor dem Ausfall", b"{}").unwrap();
    let size = t.size().unwrap();
    let digest = akte_core::Digest::of(b"vor dem Ausfall");
    assert!(t.content().contains(&digest).unwrap());

    s3.pause(true);
    let err = append_document(&t, "clerk:c", "b", b"waehrend des Ausfalls", b"{}").unwrap_err();
    assert_eq!(err.kind(), FaultKind::Unavailable, "{err}");
    assert_eq!(
        t.size().unwrap(),
        size,
        "nothing recorded without its content"
    );
    let read = t.content().get(&digest).map(|_| ()).unwrap_err();
    assert_eq!(read.kind(), FaultKind::Unavailable, "{read}");
    assert!(
        read.to_string().contains("s3://"),
        "names the place: {read}"
    );
    s3.pause(false);

    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut t.content().get(&digest).unwrap(), &mut body).unwrap();
    assert_eq!(body, b"vor dem Ausfall");
    append_document(&t, "clerk:c", "c", b"nach dem Ausfall", b"{}").unwrap();
    assert_eq!(t.size().unwrap(), size + 1);
    let report = akte_core::verify::verify_store(&store, Default::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
}

/// Upload sessions in the database: offsets stay exact whoever writes, a write taken over
/// is refused, an import holds the session until it ends or its hold runs out, and the
/// bytes are read back in order.
#[test]
fn upload_sessions_keep_exact_offsets_across_writers() {
    use akte_postgres::uploads::Refusal;
    use std::io::Read;
    let pg = shared();
    let a = connect(&pg.fresh_database()).uploads();
    let now = 1_000_000;
    assert!(a.create("t", "s1", b"{}", now + 1000, now, 1).unwrap());
    // The tenant's limit; an expired session is removed to make room.
    assert!(!a.create("t", "s2", b"{}", now + 1000, now, 1).unwrap());
    assert!(a
        .create("t", "s2", b"{}", now + 1000, now + 2000, 1)
        .unwrap());
    assert!(a.get("t", "s1").unwrap().is_none());
    let first = a.begin_write("t", "s2", 0, now).unwrap().unwrap();
    assert_eq!(a.append("t", "s2", first, 0, b"abc").unwrap(), Ok(3));
    // A second writer (another instance) takes over from what is stored.
    assert_eq!(
        a.begin_write("t", "s2", 0, now).unwrap(),
        Err(Refusal::Offset(3))
    );
    let second = a.begin_write("t", "s2", 3, now).unwrap().unwrap();
    assert_eq!(
        a.append("t", "s2", first, 3, b"xx").unwrap(),
        Err(Refusal::TakenOver(3))
    );
    assert_eq!(a.append("t", "s2", second, 3, b"def").unwrap(), Ok(6));
    assert_eq!(
        a.append("t", "s2", second, 3, b"def").unwrap(),
        Err(Refusal::Offset(6))
    );
    assert_eq!(a.get("t", "s2").unwrap().unwrap().persisted, 6);
    assert_eq!(
        a.begin_import("t", "s2", 7, now, now + 100).unwrap(),
        Err(Refusal::Incomplete(6))
    );
    a.begin_import("t", "s2", 6, now, now + 100)
        .unwrap()
        .unwrap();
    // Held by the import: no write, delete or second import until the hold runs out.
    assert_eq!(
        a.begin_write("t", "s2", 6, now).unwrap(),
        Err(Refusal::Importing)
    );
    assert_eq!(a.delete("t", "s2", now).unwrap(), Err(Refusal::Importing));
    assert_eq!(
        a.begin_import("t", "s2", 6, now + 50, now + 150).unwrap(),
        Err(Refusal::Importing)
    );
    assert_eq!(
        a.append("t", "s2", second, 6, b"g").unwrap(),
        Err(Refusal::TakenOver(6))
    );
    let mut bytes = Vec::new();
    a.reader("t", "s2", 6).read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"abcdef");
    // An import whose instance died gives way when its hold runs out.
    a.begin_import("t", "s2", 6, now + 101, now + 200)
        .unwrap()
        .unwrap();
    a.end_import("t", "s2", false).unwrap();
    a.delete("t", "s2", now).unwrap().unwrap();
    assert!(a.get("t", "s2").unwrap().is_none());
    // Bytes that are not all there are an error, not a short read.
    assert!(a.create("t", "s3", b"{}", now + 1000, now, 10).unwrap());
    let g = a.begin_write("t", "s3", 0, now).unwrap().unwrap();
    a.append("t", "s3", g, 0, b"ab").unwrap().unwrap();
    let mut out = Vec::new();
    assert!(a.reader("t", "s3", 5).read_to_end(&mut out).is_err());
}

/// Index work that takes the tenant's head row (a flush at shutdown, cutting the tree,
/// clearing) while an entry is queued but not yet committed (its writer is between queueing
/// and waiting for the commit): the queued group is committed first. It used to wait for
/// the head row's lock, held by the group's own open transaction, while the group's leader
/// waited for the session the index work held, until the operation timed out.
#[test]
fn index_work_while_an_entry_is_queued_commits_it_first() {
    use akte_core::backend::{Backend, TenantSeed};
    use akte_core::entry::EntryDraft;
    let pg = shared();
    let url = pg.fresh_database();
    let options = PgOptions {
        op_timeout: std::time::Duration::from_secs(5),
        ..PgOptions::default()
    };
    let backend = PgBackend::connect(&url, options).unwrap();
    let parts = backend
        .create_tenant("amt", &TenantSeed { meta: Vec::new() })
        .unwrap();
    let draft = |n: u32| EntryDraft {
        actor: "clerk".into(),
        kind: "test.entry".into(),
        object: format!("object-{n}"),
        payloads: Vec::new(),
    };
    let mut queued = Vec::new();
    for (n, work) in ["cut the tree", "clear the index"].into_iter().enumerate() {
        let ticket = {
            let mut session = parts.journal.begin().unwrap();
            session.enqueue(draft(n as u32), Vec::new()).unwrap()
        };
        match work {
            "cut the tree" => parts.index.truncate_tree(0),
            _ => parts.index.clear(),
        }
        .unwrap_or_else(|e| panic!("{work} with an entry queued: {e}"));
        parts.journal.wait_durable(ticket.entry.seq).unwrap();
        queued.push(ticket);
    }
    assert_eq!(parts.journal.durable_len().unwrap(), 2);
    for ticket in &queued {
        let record = parts.journal.read_at(ticket.location).unwrap();
        assert_eq!(record.leaf, ticket.leaf);
    }
}

/// Two instances on one database, with a tenant and a document (in a file) made on the
/// first; the second opens the tenant after that.
fn two_instances(
    url: &str,
) -> (
    [akte_core::records::Records; 2],
    akte_core::records::TenantRecords,
    akte_core::records::TenantRecords,
    uuid::Uuid,
) {
    use akte_core::records::*;
    let a = Records::open(connect(url), StoreOptions::default()).unwrap();
    let ta = a.create_tenant("amt").unwrap();
    let unit = ta
        .create_plan_unit(
            "registrar:r",
            NewPlanUnit {
                code: "1".into(),
                title: "Bauanträge".into(),
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let file = ta
        .create_file(
            "registrar:r",
            NewFile {
                plan_unit: unit.id,
                subject: "Bauantrag Lindenstraße 4".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let doc = ta
        .create_document(
            "clerk:c",
            NewDocument {
                parent: file.id,
                subject: "v0".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let b = Records::open(connect(url), StoreOptions::default()).unwrap();
    let tb = b.tenant("amt").unwrap();
    ([a, b], ta, tb, doc.id)
}

/// Sets the document's subject on `t`, retrying after another instance's change; the
/// revision the acknowledged change made.
fn set_subject(t: &akte_core::records::TenantRecords, doc: uuid::Uuid, subject: &str) -> u64 {
    use akte_core::records::RecordsError;
    loop {
        let current = t.get(doc).unwrap().revision();
        let patch = [("subject".to_owned(), serde_json::json!(subject))]
            .into_iter()
            .collect();
        match t.update("clerk:c", doc, current, patch, None) {
            Ok(changed) => return changed.revision(),
            Err(RecordsError::StaleRevision { .. }) => continue,
            Err(e) => panic!("update: {e}"),
        }
    }
}

/// Issue 15: a read scope (one request) checks this instance's cache of committed index
/// values once, at its first read, against the journal's end in the database. A change
/// acknowledged on one instance is seen by the next request on the other, and reads
/// after the first in a scope cost no database call.
#[test]
fn a_read_scope_sees_what_another_instance_acknowledged_before_it() {
    use akte_core::backend::ReadScope;
    use akte_postgres::thread_round_trips;
    let pg = shared();
    let url = pg.fresh_database();
    let (_instances, ta, tb, doc) = two_instances(&url);
    let calls = |f: &dyn Fn()| {
        let before = thread_round_trips();
        f();
        thread_round_trips() - before
    };
    ReadScope::run(|| {
        assert_eq!(tb.get(doc).unwrap().subject(), "v0");
        let again = calls(&|| assert_eq!(tb.get(doc).unwrap().subject(), "v0"));
        assert_eq!(again, 0, "a second read in the scope comes from the cache");
    });
    for i in 1..=10 {
        // Changed on one instance, read on the other right after, both ways round.
        let (writer, reader) = if i % 2 == 1 { (&ta, &tb) } else { (&tb, &ta) };
        let rev = set_subject(writer, doc, &format!("v{i}"));
        ReadScope::run(|| {
            let first = calls(&|| {
                let seen = reader.get(doc).unwrap();
                assert_eq!(seen.subject(), format!("v{i}"));
                assert_eq!(seen.revision(), rev);
            });
            assert!(first > 0, "the scope's first read asks the database");
            let again = calls(&|| assert_eq!(reader.get(doc).unwrap().subject(), format!("v{i}")));
            assert_eq!(again, 0);
        });
        // Outside a scope every read asks the database.
        let unscoped = calls(&|| assert_eq!(reader.get(doc).unwrap().subject(), format!("v{i}")));
        assert!(unscoped > 0);
    }
}

/// Readers in scopes on one instance while both instances change the same document: no
/// scope ever sees a revision older than one acknowledged before it opened, nor goes back
/// within itself. The second instance's own commits race with its readers filling the
/// cache from the database (a value read before a commit must not be kept after it).
#[test]
fn scoped_reads_never_fall_behind_acknowledged_writes() {
    use akte_core::backend::ReadScope;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let pg = shared();
    let url = pg.fresh_database();
    let (_instances, ta, tb, doc) = two_instances(&url);
    let acked = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let scopes = AtomicU64::new(0);
    std::thread::scope(|s| {
        let writers: Vec<_> = [(&ta, "a"), (&tb, "b")]
            .into_iter()
            .map(|(t, name)| {
                let acked = &acked;
                s.spawn(move || {
                    for i in 0..40 {
                        let rev = set_subject(t, doc, &format!("{name}{i}"));
                        acked.fetch_max(rev, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for _ in 0..3 {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let floor = acked.load(Ordering::SeqCst);
                    ReadScope::run(|| {
                        let first = tb.get(doc).unwrap().revision();
                        assert!(
                            first >= floor,
                            "saw revision {first} after {floor} was acknowledged"
                        );
                        let second = tb.get(doc).unwrap().revision();
                        assert!(second >= first, "went back from {first} to {second}");
                    });
                    scopes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    let last = acked.load(Ordering::SeqCst);
    assert_eq!(ReadScope::run(|| tb.get(doc).unwrap().revision()), last);
    assert_eq!(ReadScope::run(|| ta.get(doc).unwrap().revision()), last);
    eprintln!(
        "{} scopes read while 80 changes were acknowledged",
        scopes.load(Ordering::Relaxed)
    );
}
