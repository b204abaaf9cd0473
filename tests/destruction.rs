//! Destruction after retention: what is removed, what stays verifiable, the destruction
//! record, and every path that must refuse to destroy what is retained or held.

use std::io::Read;

use akte_core::merkle;
use akte_core::note::Checkpoint;
use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_tests::index_dump as dump;
use chrono::NaiveDate;
use uuid::Uuid;

const REG: &str = "registrar:weber";
const BASIS: &str = "§ 18 ThürEGovG, Aufbewahrungsfrist abgelaufen";

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    t: TenantRecords,
    unit_v: PlanUnit,
    unit_a: PlanUnit,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("amt").unwrap();
    let unit_v = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "1".into(),
                title: "Massenakten".into(),
                retention: Retention::Years(5),
                disposal: DisposalDecision::Destroy,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let unit_a = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "2".into(),
                title: "Grundsätzliches".into(),
                retention: Retention::Years(5),
                disposal: DisposalDecision::Archive,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    World {
        _dir: dir,
        records,
        t,
        unit_v,
        unit_a,
    }
}

/// A file with a case, a document with two versions and an attachment; closed on `closed`.
fn full_file(
    t: &TenantRecords,
    unit: Uuid,
    subject: &str,
    closed: NaiveDate,
    shared: &[u8],
) -> (File, Document) {
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                subject: subject.into(),
                ..NewFile::default()
            },
            Some(&format!(
                "req-{}",
                subject.bytes().map(u32::from).sum::<u32>()
            )),
        )
        .unwrap();
    let c = t
        .create_case(
            REG,
            NewCase {
                parent: f.id,
                subject: "Vorgang".into(),
                ..NewCase::default()
            },
            None,
        )
        .unwrap();
    let doc = t
        .create_document(
            REG,
            NewDocument {
                parent: c.id,
                subject: format!("Antrag {subject}"),
                sender: "Erika Mustermann".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let att = t
        .create_document(
            REG,
            NewDocument {
                parent: doc.id,
                subject: "Anlage".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    for (target, bytes) in [
        (doc.id, format!("{subject} v1").into_bytes()),
        (doc.id, shared.to_vec()),
        (att.id, format!("{subject} anlage").into_bytes()),
    ] {
        let put = t.put_content(&bytes[..]).unwrap();
        t.add_version(
            REG,
            target,
            NewVersion {
                comment: String::new(),
                renditions: vec![NewRendition {
                    file_name: "a.pdf".into(),
                    media_type: "application/pdf".into(),
                    sha256: put.digest,
                    size: put.size,
                }],
            },
            None,
        )
        .unwrap();
    }
    t.close(REG, f.id, None, Some(closed)).unwrap();
    (t.file(f.id).unwrap(), t.document(doc.id).unwrap())
}

#[test]
fn destroying_a_due_v_file_removes_records_and_content_and_stays_verifiable() {
    let w = world();
    let t = &w.t;
    let shared = b"bytes used by both files".to_vec();
    let (victim, victim_doc) = full_file(t, w.unit_v.id, "Alt", d(2015, 3, 1), &shared);
    let (keeper, _) = full_file(t, w.unit_v.id, "Neu", d(2025, 3, 1), &shared);
    let versions = t.versions(victim_doc.id).unwrap();
    let own_digest = versions[0].renditions[0].sha256;
    let shared_digest = versions[1].renditions[0].sha256;
    let tenant = t.tenant().clone();
    let before_cp = tenant.checkpoint().unwrap();
    let (cp, _) = Checkpoint::open(&before_cp.to_bytes(), &tenant.verifier()).unwrap();
    let leaves: Vec<_> = (0..cp.size)
        .map(|s| tenant.entry(s).unwrap().leaf)
        .collect();

    let (record, note) = t
        .destroy(
            "registrar:weber",
            &[victim.id],
            BASIS,
            "Amtsleitung Dr. Roth",
        )
        .unwrap();
    assert_eq!(record.files.len(), 1);
    let fd = &record.files[0];
    assert_eq!(fd.reference, victim.reference);
    assert_eq!(fd.objects.len(), 4, "file, case, document, attachment");
    assert!(
        fd.grounds.contains("retention ended 2020-12-31"),
        "{}",
        fd.grounds
    );
    assert!(fd.contents.contains(&own_digest));

    // Gone: objects (tombstones say so), the own content; the shared content stays.
    for o in &fd.objects {
        let got = t.get(o.id);
        assert!(
            matches!(got, Err(RecordsError::Destroyed { .. })),
            "{:?} {:?}: {got:?}",
            o.id,
            o.kind
        );
    }
    assert!(
        !tenant.content().contains(&own_digest).unwrap(),
        "own content deleted"
    );
    assert!(
        tenant.content().contains(&shared_digest).unwrap(),
        "content used by a retained file stays"
    );
    assert!(t.file(keeper.id).is_ok());
    assert!(t
        .list_files(w.unit_v.id, &PageRequest::first(10))
        .unwrap()
        .items
        .iter()
        .all(|f| f.id != victim.id));
    let hits = t
        .query(
            &Query {
                subject_words: vec!["Alt".into()],
                ..Query::default()
            },
            &PageRequest::first(10),
        )
        .unwrap();
    assert!(
        hits.items.is_empty(),
        "no subject words of destroyed objects remain"
    );
    // The salted records are gone from the journal: no trace of the sender's name except
    // in the keeper's records; on the embedded backend not in any segment file either.
    let mut stored = String::new();
    for rec in tenant.journal().iter(None, tenant.size().unwrap()).unwrap() {
        for a in rec.unwrap().attachments {
            stored.push_str(&String::from_utf8_lossy(
                a.bytes.as_deref().unwrap_or_default(),
            ));
        }
    }
    if akte_tests::embedded_backend() {
        for e in
            std::fs::read_dir(akte_tests::tenant_dir(w._dir.path(), tenant.id()).join("journal"))
                .unwrap()
        {
            let mut b = Vec::new();
            std::fs::File::open(e.unwrap().path())
                .unwrap()
                .read_to_end(&mut b)
                .unwrap();
            stored.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert!(
        !stored.contains("Antrag Alt"),
        "destroyed subject still stored"
    );
    assert!(stored.contains("Antrag Neu"));

    // History stays provable: every earlier leaf is unchanged, the old checkpoint is
    // consistent with the new one, inclusion proofs still verify.
    for (s, leaf) in leaves.iter().enumerate() {
        assert_eq!(&tenant.entry(s as u64).unwrap().leaf, leaf);
    }
    let after = tenant.checkpoint().unwrap();
    let (cp2, _) = Checkpoint::open(&after.to_bytes(), &tenant.verifier()).unwrap();
    let proof = tenant.consistency_proof(cp.size, cp2.size).unwrap();
    merkle::verify_consistency(cp.size, cp2.size, &cp.root, &cp2.root, &proof).unwrap();
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    // Creates of file, case, document and attachment, three versions, the closing.
    assert_eq!(report.tenants[0].destroyed_records, 8);
    assert_eq!(fd.records.len(), 8);

    // The independent verifier, written from docs/FORMAT.md, agrees.
    if akte_tests::embedded_backend() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/verify_store.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .arg(w._dir.path())
            .output()
            .expect("python3 is needed for this test");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Status and the signed destruction record.
    let status = t.disposal_status(victim.id);
    assert!(matches!(status, Err(RecordsError::Destroyed { .. })));
    let (again, again_note) = t.destruction_record(record.id).unwrap();
    assert_eq!(again, record);
    assert_eq!(again_note.to_bytes(), note.to_bytes());
    assert_eq!(t.list_destruction_records().unwrap(), vec![record.id]);
    assert!(note.text.starts_with("akte destruction record v1\n"));
    assert!(
        Checkpoint::open(&note.to_bytes(), &tenant.verifier()).is_err(),
        "a destruction record is no checkpoint"
    );

    // The index rebuilt from the redacted journal equals the live one; references are not reused.
    let live = dump(t);
    tenant.rebuild_index().unwrap();
    assert_eq!(dump(t), live);
    let next = t
        .create_file(
            REG,
            NewFile {
                plan_unit: w.unit_v.id,
                subject: "Nächste".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    assert_ne!(next.reference, victim.reference);
    assert_ne!(next.reference, keeper.reference);

    // Reopening keeps all of it.
    drop(tenant);
    let World {
        records,
        t: tt,
        _dir: data,
        ..
    } = w;
    let dir = data.path().to_path_buf();
    drop(tt);
    drop(records);
    let records = Records::open(akte_tests::backend(&dir), StoreOptions::default()).unwrap();
    let report = verify_store(records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
}

#[test]
fn nothing_retained_or_held_can_be_destroyed() {
    let w = world();
    let t = &w.t;
    let (retained, _) = full_file(t, w.unit_v.id, "Frist", d(2024, 6, 1), b"x"); // until 2029-12-31
    let (archive, _) = full_file(t, w.unit_a.id, "Archiv", d(2010, 1, 1), b"y"); // A, not transferred
    let (held, held_doc) = full_file(t, w.unit_v.id, "Gesperrt", d(2010, 1, 1), b"z");
    let hold = t
        .place_hold(REG, held_doc.id, "Auskunftsersuchen", "IFG-2026-17")
        .unwrap();
    let (unlimited, _) = full_file(t, w.unit_v.id, "Ewig", d(2010, 1, 1), b"u");
    t.set_retention(
        REG,
        unlimited.id,
        Some(Retention::Unlimited),
        None,
        "dauernd",
    )
    .unwrap();
    let open = t
        .create_file(
            REG,
            NewFile {
                plan_unit: w.unit_v.id,
                subject: "offen".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let sub = t
        .create_file(
            REG,
            NewFile {
                plan_unit: w.unit_v.id,
                parent_file: Some(open.id),
                subject: "teil".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let (due, due_doc) = full_file(t, w.unit_v.id, "Fällig", d(2010, 1, 1), b"w");
    let size = t.tenant().size().unwrap();

    let cases: Vec<(Uuid, &str)> = vec![
        (retained.id, "under retention until 2029-12-31"),
        (archive.id, "decision A"),
        (held.id, "held by hold"),
        (unlimited.id, "unlimited retention"),
        (open.id, "not closed"),
        (sub.id, "sub-file"),
    ];
    for (id, why) in &cases {
        let err = t.destroy(REG, &[*id], BASIS, "Amtsleitung").unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
        // Mixed with a destroyable file: nothing at all is destroyed.
        let err = t
            .destroy(REG, &[due.id, *id], BASIS, "Amtsleitung")
            .unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    // Wrong kinds, unknown ids, empty or duplicate lists, missing legal basis.
    assert!(matches!(
        t.destroy(REG, &[due_doc.id], BASIS, "A"),
        Err(RecordsError::WrongKind { .. })
    ));
    assert!(matches!(
        t.destroy(REG, &[w.unit_v.id], BASIS, "A"),
        Err(RecordsError::WrongKind { .. })
    ));
    assert!(matches!(
        t.destroy(REG, &[Uuid::new_v4()], BASIS, "A"),
        Err(RecordsError::NotFound { .. })
    ));
    assert!(matches!(
        t.destroy(REG, &[], BASIS, "A"),
        Err(RecordsError::Invalid { .. })
    ));
    assert!(matches!(
        t.destroy(REG, &[due.id, due.id], BASIS, "A"),
        Err(RecordsError::Invalid { .. })
    ));
    assert!(matches!(
        t.destroy(REG, &[due.id], "", "A"),
        Err(RecordsError::Invalid { .. })
    ));
    assert!(matches!(
        t.destroy(REG, &[due.id], BASIS, ""),
        Err(RecordsError::Invalid { .. })
    ));
    assert_eq!(
        t.tenant().size().unwrap(),
        size,
        "every refusal changed nothing"
    );
    assert!(t.get(due.id).is_ok());

    // Maintenance paths: rebuilding the index and a full verify never remove anything.
    t.tenant().rebuild_index().unwrap();
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(report.is_clean());
    for f in [
        retained.id,
        archive.id,
        held.id,
        unlimited.id,
        open.id,
        due.id,
    ] {
        assert!(t.get(f).is_ok());
    }

    // Releasing the hold makes the held file destroyable; the due one was all along.
    t.release_hold(REG, hold.id, "erledigt").unwrap();
    let (record, _) = t
        .destroy(REG, &[due.id, held.id], BASIS, "Amtsleitung")
        .unwrap();
    assert_eq!(record.files.len(), 2);
    let again = t.destroy(REG, &[due.id], BASIS, "A");
    assert!(
        matches!(again, Err(RecordsError::Destroyed { .. })),
        "{again:?}"
    );
    assert!(matches!(
        t.place_hold(REG, due.id, "zu spät", ""),
        Err(RecordsError::Destroyed { .. })
    ));
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
}
