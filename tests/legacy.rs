//! Legacy import with original metadata (idempotent per source id, validated object by
//! object, retention from the original closing dates) and re-filing (Umprotokollierung),
//! through the library's public API; every scenario ends with a rebuilt index equal to the
//! live one and a clean verify.

use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_tests::index_dump as dump;
use chrono::{Datelike, NaiveDate, Utc};
use serde_json::json;
use uuid::Uuid;

const REG: &str = "registrar:weber";
const IMPORTER: &str = "import:migration";

fn open() -> (tempfile::TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    (dir, records)
}

fn assert_rebuild_equal_and_verify_clean(records: &Records, t: &TenantRecords) {
    let live = dump(t);
    t.tenant().rebuild_index().unwrap();
    assert_eq!(dump(t), live, "rebuilt index differs from the live one");
    let report = verify_store(records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
}

fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn source() -> ImportSource {
    ImportSource {
        system: "dms-alt".into(),
        package: None,
    }
}

fn item(source_id: &str, parent: Option<ImportParent>, object: ImportObject) -> ImportItem {
    ImportItem {
        id: None,
        history: Vec::new(),
        source_id: source_id.into(),
        parent,
        created_on: date(2009, 3, 2),
        created_by: "Müller, Amt 63".into(),
        actors: vec!["Schulze".into()],
        object,
    }
}

fn src(id: &str) -> Option<ImportParent> {
    Some(ImportParent::Source(id.into()))
}

fn plan_unit(code: &str, disposal: DisposalDecision) -> ImportObject {
    ImportObject::PlanUnit(ImportPlanUnit {
        code: code.into(),
        title: format!("Bauordnung {code}"),
        retention: Retention::Years(10),
        disposal,
        ..ImportPlanUnit::default()
    })
}

fn file(reference: &str, closed_on: Option<NaiveDate>) -> ImportObject {
    ImportObject::File(ImportFile {
        reference: reference.into(),
        previous_references: vec!["63/12-2009".into()],
        subject: "Neubau Wohnhaus Gartenstraße 4".into(),
        begin: date(2009, 3, 2),
        end: closed_on,
        closed_on,
        ..ImportFile::default()
    })
}

fn case(subject: &str) -> ImportObject {
    ImportObject::Case(ImportCase {
        reference: "V-1".into(),
        subject: subject.into(),
        ..ImportCase::default()
    })
}

fn document(t: &TenantRecords, subject: &str, versions: &[&[u8]]) -> ImportObject {
    let versions = versions
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let put = t.put_content(*bytes).unwrap();
            ImportVersion {
                comment: format!("Fassung {}", i + 1),
                created_on: date(2010, 1, 1 + i as u32),
                created_by: "Schulze".into(),
                renditions: vec![NewRendition {
                    file_name: format!("bescheid-v{}.pdf", i + 1),
                    media_type: "application/pdf".into(),
                    sha256: put.digest,
                    size: put.size,
                }],
            }
        })
        .collect();
    ImportObject::Document(ImportDocument {
        reference: "D-7".into(),
        subject: subject.into(),
        letter_date: date(2010, 1, 1),
        sender: "Bauherr Özdemir".into(),
        versions,
        ..ImportDocument::default()
    })
}

/// A legacy stock: plan unit, a file closed in 2014, a case, a document with two versions.
fn stock(t: &TenantRecords) -> Vec<ImportItem> {
    vec![
        item("pu-1", None, plan_unit("632.1", DisposalDecision::Destroy)),
        item(
            "f-1",
            src("pu-1"),
            file("632.1-0012/2009", date(2014, 6, 30)),
        ),
        item("c-1", src("f-1"), case("Baugenehmigung")),
        item(
            "d-1",
            src("c-1"),
            document(t, "Bescheid", &[b"%PDF v1", b"%PDF v2"]),
        ),
    ]
}

fn import(t: &TenantRecords, items: Vec<ImportItem>) -> ImportReport {
    t.import_objects(IMPORTER, &source(), items, &mut |_| {})
        .unwrap()
}

#[test]
fn import_keeps_original_metadata_and_retention_runs_from_the_original_closing() {
    let (_dir, records) = open();
    let t = records.create_tenant("bauamt").unwrap();
    let mut calls = 0;
    let report = t
        .import_objects(IMPORTER, &source(), stock(&t), &mut |r| {
            calls += 1;
            assert_eq!(r.processed(), calls);
        })
        .unwrap();
    assert_eq!(
        (report.imported, report.already_imported, report.failed),
        (4, 0, 0),
        "{report:#?}"
    );
    assert_eq!(calls, 4);

    let file_id = t.imported_object("dms-alt", "f-1").unwrap().unwrap();
    let f = t.file(file_id).unwrap();
    assert_eq!(f.reference, "632.1-0012/2009");
    assert_eq!(f.previous_references, vec!["63/12-2009".to_owned()]);
    assert_eq!(f.status, Status::Closed);
    assert_eq!(f.closed_on, date(2014, 6, 30));
    let origin = f.origin.clone().unwrap();
    assert_eq!(origin.source_system, "dms-alt");
    assert_eq!(origin.source_id, "f-1");
    assert_eq!(origin.created_on, date(2009, 3, 2));
    assert_eq!(origin.created_by, "Müller, Amt 63");
    assert!(!origin.reference_nonconforming);
    // The entry's time is the import's; the original date is metadata.
    assert_eq!(f.created.at.date_naive(), Utc::now().date_naive());
    assert_eq!(f.created.actor, IMPORTER);
    assert_eq!(t.file_by_reference("632.1-0012/2009").unwrap().id, f.id);

    let history = t.history(f.id, &PageRequest::first(10)).unwrap().items;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].action, "file.import");
    let origin_change = history[0]
        .changes
        .iter()
        .find(|c| c.field == "origin")
        .unwrap();
    assert_eq!(origin_change.new["created_on"], json!("2009-03-02"));

    // The case inside the closed file is closed with it, the document has both versions.
    let case_id = t.imported_object("dms-alt", "c-1").unwrap().unwrap();
    let c = t.case(case_id).unwrap();
    assert_eq!((c.status, c.closed_on), (Status::Closed, date(2014, 6, 30)));
    assert_eq!(c.file, f.id);
    let doc_id = t.imported_object("dms-alt", "d-1").unwrap().unwrap();
    let d = t.document(doc_id).unwrap();
    assert_eq!((d.versions, d.parent, d.file), (2, c.id, f.id));
    let versions = t.versions(d.id).unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].comment, "Fassung 2");
    assert_eq!(versions[1].original.as_ref().unwrap().on, date(2010, 1, 2));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut t.open_rendition(&versions[1].renditions[0]).unwrap(),
        &mut bytes,
    )
    .unwrap();
    assert_eq!(bytes, b"%PDF v2");

    // Closed 2014, ten years from the end of 2014: due since 1 January 2025.
    let status = t.disposal_status(f.id).unwrap();
    assert_eq!(status.retention_end, date(2024, 12, 31));
    assert_eq!(
        status.status,
        DisposalStatus::Due {
            decision: DisposalDecision::Destroy
        },
        "{}",
        status.explanation
    );
    assert_rebuild_equal_and_verify_clean(&records, &t);

    // Migrated stock goes straight into disposal: destroyed, and the index still rebuilds
    // to the live one (the source keys go with the redacted import events).
    t.destroy(REG, &[f.id], "§ 18 ThürEGovG", "Amtsleitung")
        .unwrap();
    assert!(t.imported_object("dms-alt", "f-1").unwrap().is_none());
    assert!(t.imported_object("dms-alt", "pu-1").unwrap().is_some());
    let other = t.plan_unit_by_code("632.1").unwrap();
    assert!(matches!(
        t.refile_file(REG, f.id, f.revision, other.id, None),
        Err(RecordsError::Destroyed { .. })
    ));
    assert_rebuild_equal_and_verify_clean(&records, &t);
}

#[test]
fn rerunning_an_import_skips_what_is_done_and_resumes_the_rest() {
    let (_dir, records) = open();
    let t = records.create_tenant("bauamt").unwrap();
    let all = stock(&t);
    // An import that stopped after two objects (a crash, or the operator).
    let first = import(&t, all[..2].to_vec());
    assert_eq!(first.imported, 2);
    let size = t.tenant().size().unwrap();
    let again = import(&t, all[..2].to_vec());
    assert_eq!((again.imported, again.already_imported), (0, 2));
    assert_eq!(t.tenant().size().unwrap(), size, "a rerun appends nothing");
    let resumed = import(&t, all.clone());
    assert_eq!(
        (resumed.imported, resumed.already_imported, resumed.failed),
        (2, 2, 0)
    );
    assert_eq!(t.tenant().size().unwrap(), size + 2);
    // Exactly one object per source id.
    let unit = t.plan_unit_by_code("632.1").unwrap();
    let files = t
        .list_files(unit.id, &PageRequest::first(100))
        .unwrap()
        .items;
    assert_eq!(files.len(), 1);
    let children = t
        .list_children(files[0].id, &PageRequest::first(100))
        .unwrap()
        .items;
    assert_eq!(children.len(), 1);
    assert_rebuild_equal_and_verify_clean(&records, &t);
}

#[test]
fn bad_objects_are_reported_and_the_rest_is_imported() {
    let (_dir, records) = open();
    let t = records.create_tenant("bauamt").unwrap();
    let tomorrow = Utc::now().date_naive().succ_opt();
    let mut future = item("f-future", src("pu-1"), file("632.1-0002/2020", None));
    future.created_on = tomorrow;
    let mut backwards = item(
        "f-backwards",
        src("pu-1"),
        file("632.1-0003/2020", date(2008, 1, 1)),
    );
    backwards.created_on = date(2009, 1, 1);
    let items = vec![
        item("pu-1", None, plan_unit("632.1", DisposalDecision::Archive)),
        item("f-1", src("pu-1"), file("632.1-0001/2020", None)),
        // Same reference as f-1.
        item("f-dup", src("pu-1"), file("632.1-0001/2020", None)),
        // Plan unit the import does not know.
        item("f-orphan", src("pu-404"), file("632.1-0009/2020", None)),
        item(
            "f-code",
            Some(ImportParent::PlanCode("999".into())),
            file("999-1", None),
        ),
        future,
        backwards,
        // Its file failed: nothing to put it in.
        item("c-orphan", src("f-dup"), case("Nachtrag")),
        // Kept as it is, flagged.
        item("f-old", src("pu-1"), file("AZ 63/4711", None)),
        // A sub-file and a document in the good file.
        item("sf-1", src("f-1"), file("632.1-0001/2020-1", None)),
        item("d-1", src("f-1"), document(&t, "Antrag", &[b"%PDF antrag"])),
        // The same plan unit code again under another source id.
        item("pu-2", None, plan_unit("632.1", DisposalDecision::Archive)),
    ];
    let size_before = t.tenant().size().unwrap();
    let report = import(&t, items);
    assert_eq!(
        (report.imported, report.failed, report.warned),
        (5, 7, 2),
        "{report:#?}"
    );
    let rule = |sid: &str| {
        report
            .items
            .iter()
            .find(|i| i.source_id == sid)
            .and_then(|i| i.rule.clone())
            .unwrap_or_default()
    };
    assert_eq!(rule("f-dup"), "duplicate-reference");
    assert_eq!(rule("f-orphan"), "unknown-parent");
    assert_eq!(rule("f-code"), "unknown-parent");
    assert_eq!(rule("f-future"), "invalid-date");
    assert_eq!(rule("f-backwards"), "invalid-date");
    assert_eq!(rule("c-orphan"), "unknown-parent");
    assert_eq!(rule("pu-2"), "duplicate-code");
    let dup = report
        .items
        .iter()
        .find(|i| i.source_id == "f-dup")
        .unwrap();
    assert!(
        dup.error.as_deref().unwrap().contains("632.1-0001/2020"),
        "{dup:?}"
    );
    let flagged = report
        .items
        .iter()
        .find(|i| i.source_id == "f-old")
        .unwrap();
    assert_eq!(flagged.status, ItemStatus::Imported);
    assert!(
        flagged.warnings[0].contains("does not follow"),
        "{flagged:?}"
    );
    let old = t.file_by_reference("AZ 63/4711").unwrap();
    assert!(old.origin.unwrap().reference_nonconforming);
    // The sub-file's reference, taken verbatim, is flagged too.
    assert!(report.items.iter().any(|i| i.source_id == "sf-1"));
    // Only the good objects were recorded: one entry each.
    assert_eq!(t.tenant().size().unwrap(), size_before + 5);
    for sid in ["f-dup", "f-orphan", "f-future", "f-backwards", "c-orphan"] {
        assert!(
            t.imported_object("dms-alt", sid).unwrap().is_none(),
            "{sid}"
        );
    }
    // A document without versions' bytes in the store is refused, nothing recorded.
    let mut missing = document(&t, "Fehlt", &[b"x"]);
    if let ImportObject::Document(d) = &mut missing {
        d.versions[0].renditions[0].sha256 = akte_core::digest::Digest::of(b"not stored");
    }
    let size = t.tenant().size().unwrap();
    let err = t
        .import_object(IMPORTER, &source(), &item("d-missing", src("f-1"), missing))
        .unwrap_err();
    assert!(err.to_string().contains("not"), "{err}");
    assert_eq!(t.tenant().size().unwrap(), size);
    assert_rebuild_equal_and_verify_clean(&records, &t);
}

fn new_unit(t: &TenantRecords, code: &str, retention: Retention) -> PlanUnit {
    t.create_plan_unit(
        REG,
        NewPlanUnit {
            code: code.into(),
            title: format!("Einheit {code}"),
            retention,
            ..NewPlanUnit::default()
        },
        None,
    )
    .unwrap()
}

fn new_file(t: &TenantRecords, unit: Uuid, parent_file: Option<Uuid>) -> File {
    t.create_file(
        REG,
        NewFile {
            plan_unit: unit,
            parent_file,
            subject: "Akte".into(),
            ..NewFile::default()
        },
        None,
    )
    .unwrap()
}

fn new_case(t: &TenantRecords, parent: Uuid) -> Case {
    t.create_case(
        REG,
        NewCase {
            parent,
            subject: "Vorgang".into(),
            ..NewCase::default()
        },
        None,
    )
    .unwrap()
}

fn new_doc(t: &TenantRecords, parent: Uuid) -> Document {
    t.create_document(
        REG,
        NewDocument {
            parent,
            subject: "Schreiben".into(),
            ..NewDocument::default()
        },
        None,
    )
    .unwrap()
}

#[test]
fn refiling_moves_files_cases_and_documents_with_history() {
    let (_dir, records) = open();
    let t = records.create_tenant("amt").unwrap();
    let a = new_unit(&t, "010", Retention::Years(5));
    let b = new_unit(&t, "020", Retention::Years(30));
    let f = new_file(&t, a.id, None);
    let sub = new_file(&t, a.id, Some(f.id));
    let year = Utc::now().date_naive().year();
    assert_eq!(f.reference, format!("010-0001/{year}"));

    // Stale etag, same unit, sub-file: refused, nothing recorded.
    let size = t.tenant().size().unwrap();
    assert!(matches!(
        t.refile_file(REG, f.id, f.revision + 1, b.id, None),
        Err(RecordsError::StaleRevision { .. })
    ));
    assert!(matches!(
        t.refile_file(REG, f.id, f.revision, a.id, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));
    assert!(matches!(
        t.refile_file(REG, sub.id, sub.revision, b.id, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));
    assert_eq!(t.tenant().size().unwrap(), size);

    let moved = t
        .refile_file(REG, f.id, f.revision, b.id, Some("Zuständigkeit".into()))
        .unwrap();
    assert_eq!(moved.plan_unit, b.id);
    assert_eq!(moved.reference, format!("020-0001/{year}"));
    assert_eq!(moved.previous_references, vec![f.reference.clone()]);
    assert_eq!(moved.revision, f.revision + 1);
    let moved_sub = t.file(sub.id).unwrap();
    assert_eq!(moved_sub.plan_unit, b.id);
    assert_eq!(moved_sub.previous_references, vec![sub.reference.clone()]);
    assert_eq!(t.file_by_reference(&moved.reference).unwrap().id, f.id);
    assert!(t.file_by_reference(&f.reference).is_err());
    let listed = |u: Uuid| {
        t.list_files(u, &PageRequest::first(10))
            .unwrap()
            .items
            .len()
    };
    assert_eq!((listed(a.id), listed(b.id)), (0, 2));
    let h = t.history(f.id, &PageRequest::first(10)).unwrap().items;
    let last = h.last().unwrap();
    assert_eq!(last.action, "file.refile");
    assert_eq!(last.reason.as_deref(), Some("Zuständigkeit"));
    let unit_change = last
        .changes
        .iter()
        .find(|c| c.field == "plan_unit")
        .unwrap();
    assert_eq!(
        (unit_change.old.clone(), unit_change.new.clone()),
        (json!(a.id.to_string()), json!(b.id.to_string()))
    );
    // Retention now comes from the new unit.
    assert_eq!(
        t.disposal_status(f.id).unwrap().retention,
        Retention::Years(30)
    );
    // A new file in the old unit does not get a reference the moved files had.
    let f2 = new_file(&t, a.id, None);
    assert_eq!(f2.reference, format!("010-0003/{year}"));
    assert_eq!(moved_sub.reference, format!("020-0002/{year}"));

    // A case with a sub-case and a document moves to another file.
    let c = new_case(&t, f.id);
    let sc = new_case(&t, c.id);
    let d = new_doc(&t, sc.id);
    let c2 = new_case(&t, f2.id);
    let moved_case = t.refile_case(REG, c.id, c.revision, f2.id, None).unwrap();
    assert_eq!((moved_case.file, moved_case.parent_case), (f2.id, None));
    assert_eq!(moved_case.number, c2.number + 1);
    assert_eq!(t.case(sc.id).unwrap().file, f2.id);
    assert_eq!(t.document(d.id).unwrap().file, f2.id);
    let kids = |id: Uuid| {
        t.list_children(id, &PageRequest::first(10))
            .unwrap()
            .items
            .iter()
            .map(Object::id)
            .collect::<Vec<_>>()
    };
    assert!(!kids(f.id).contains(&c.id));
    assert!(kids(f2.id).contains(&c.id));
    // Into its own sub-case: refused.
    let c_now = t.case(c.id).unwrap();
    assert!(matches!(
        t.refile_case(REG, c.id, c_now.revision, sc.id, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));

    // A document moves to another case; its history shows from and to.
    let d_now = t.document(d.id).unwrap();
    let moved_doc = t
        .refile_document(REG, d.id, d_now.revision, c2.id, None)
        .unwrap();
    assert_eq!((moved_doc.parent, moved_doc.file), (c2.id, f2.id));
    let dh = t.history(d.id, &PageRequest::first(10)).unwrap().items;
    let change = dh
        .last()
        .unwrap()
        .changes
        .iter()
        .find(|c| c.field == "parent")
        .unwrap()
        .clone();
    assert_eq!(change.old, json!(sc.id.to_string()));
    assert_eq!(change.new, json!(c2.id.to_string()));
    assert_rebuild_equal_and_verify_clean(&records, &t);
}

#[test]
fn refiling_is_refused_for_closed_held_and_destroyed_objects() {
    let (_dir, records) = open();
    let t = records.create_tenant("amt").unwrap();
    let a = new_unit(&t, "010", Retention::Years(1));
    let b = new_unit(&t, "020", Retention::Years(1));
    let open_file = new_file(&t, a.id, None);
    let d = new_doc(&t, open_file.id);

    // Held.
    let held = new_file(&t, a.id, None);
    let hold = t.place_hold(REG, held.id, "Klage", "VG 1 K 2/26").unwrap();
    let held = t.file(held.id).unwrap();
    assert!(matches!(
        t.refile_file(REG, held.id, held.revision, b.id, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));
    // Nor may a document move into or out of a held file.
    let d_now = t.document(d.id).unwrap();
    assert!(matches!(
        t.refile_document(REG, d.id, d_now.revision, held.id, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));
    t.release_hold(REG, hold.id, "erledigt").unwrap();
    let held = t.file(held.id).unwrap();
    t.refile_file(REG, held.id, held.revision, b.id, None)
        .unwrap();

    // Closed: the file, and a document in it.
    let closed = new_file(&t, a.id, None);
    let inside = new_doc(&t, closed.id);
    let closed = t
        .close(REG, closed.id, None, date(2020, 1, 1))
        .map(|o| match o {
            Object::File(f) => f,
            _ => unreachable!(),
        })
        .unwrap();
    assert!(matches!(
        t.refile_file(REG, closed.id, closed.revision, b.id, None),
        Err(RecordsError::Closed { .. })
    ));
    let inside = t.document(inside.id).unwrap();
    assert!(matches!(
        t.refile_document(REG, inside.id, inside.revision, open_file.id, None),
        Err(RecordsError::Closed { .. })
    ));
    let d_now = t.document(d.id).unwrap();
    assert!(matches!(
        t.refile_document(REG, d.id, d_now.revision, closed.id, None),
        Err(RecordsError::Closed { .. })
    ));

    assert_rebuild_equal_and_verify_clean(&records, &t);
}
