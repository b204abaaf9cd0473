//! A document created with its first version in one call (issue 20): one journal entry,
//! the same index, history, idempotency, access, evidence, destruction and verification as
//! a document made in two calls, and refused input changes nothing.

use std::io::{Cursor, Read};

use akte_core::access::{Operation, Role};
use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_tests::index_dump as dump;
use chrono::NaiveDate;
use uuid::Uuid;

const REG: &str = "registrar:weber";
const CLERK: &str = "clerk:schmidt";
const BASIS: &str = "§ 18 ThürEGovG, Aufbewahrungsfrist abgelaufen";

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    t: TenantRecords,
    unit: PlanUnit,
    file: File,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("bauamt").unwrap();
    let unit = t
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
    let file = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit.id,
                subject: "Bauantrag Flurstück 12".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    World {
        _dir: dir,
        records,
        t,
        unit,
        file,
    }
}

fn new_doc(parent: Uuid, subject: &str) -> NewDocument {
    NewDocument {
        parent,
        subject: subject.into(),
        sender: "Erika Mustermann".into(),
        ..NewDocument::default()
    }
}

fn new_version(t: &TenantRecords, bytes: &[u8]) -> NewVersion {
    let put = t.put_content(bytes).unwrap();
    NewVersion {
        comment: "Eingang".into(),
        renditions: vec![NewRendition {
            file_name: "antrag.pdf".into(),
            media_type: "application/pdf".into(),
            sha256: put.digest,
            size: put.size,
        }],
    }
}

fn size(t: &TenantRecords) -> u64 {
    t.tenant().size().unwrap()
}

fn assert_rebuild_equal_and_verify_clean(w: &World) {
    let live = dump(&w.t);
    w.t.tenant().rebuild_index().unwrap();
    assert_eq!(dump(&w.t), live, "rebuilt index differs from the live one");
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
}

#[test]
fn one_entry_holds_the_document_and_its_first_version() {
    let w = world();
    let t = &w.t;
    let v = new_version(t, b"%PDF-1.7 Bauantrag");
    let before = size(t);
    let (doc, version) = t
        .create_document_with_version(CLERK, new_doc(w.file.id, "Bauantrag"), v.clone(), None)
        .unwrap();
    assert_eq!(size(t), before + 1, "one journal entry");
    assert_eq!(doc.versions, 1);
    assert_eq!(doc.file, w.file.id);
    assert_eq!(version.number, 1);
    assert_eq!(version.comment, "Eingang");
    assert_eq!(version.created.seq, doc.created.seq);
    assert_eq!(version.renditions[0].sha256, v.renditions[0].sha256);

    // The entry: document.create, the event record and the rendition as content.
    let entry = t.tenant().entry(before).unwrap().entry;
    assert_eq!(entry.kind, "document.create");
    assert_eq!(entry.object, doc.id.to_string());
    let contents: Vec<_> = entry
        .payloads
        .iter()
        .filter(|p| p.kind == akte_core::entry::PayloadKind::Content)
        .collect();
    assert_eq!(contents.len(), 1);
    assert_eq!(contents[0].digest, v.renditions[0].sha256);

    // Reads as a document made in two calls does.
    assert_eq!(t.document(doc.id).unwrap(), doc);
    assert_eq!(t.versions(doc.id).unwrap(), vec![version.clone()]);
    let mut bytes = Vec::new();
    t.open_rendition(&version.renditions[0])
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes, b"%PDF-1.7 Bauantrag");
    let listed = t
        .list_children(w.file.id, &PageRequest::first(10))
        .unwrap()
        .items;
    assert_eq!(listed, vec![Object::Document(doc.clone())]);
    // History: one item for the creation, which shows the version among its changes.
    let history = t.history(doc.id, &PageRequest::first(10)).unwrap().items;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].action, "document.create");
    assert!(history[0]
        .changes
        .iter()
        .any(|c| c.field == "versions" && c.new == serde_json::json!(1)));

    // A second version goes on as usual.
    let v2 = new_version(t, b"%PDF-1.7 Bauantrag, korrigiert");
    let second = t.add_version(CLERK, doc.id, v2, None).unwrap();
    assert_eq!(second.number, 2);
    assert_eq!(t.document(doc.id).unwrap().versions, 2);

    // Attachments too.
    let (att, _) = t
        .create_document_with_version(
            CLERK,
            new_doc(doc.id, "Lageplan"),
            new_version(t, b"plan"),
            None,
        )
        .unwrap();
    assert_eq!(att.parent, doc.id);
    assert_eq!(att.file, w.file.id);
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn repeated_request_returns_the_first_and_a_different_one_conflicts() {
    let w = world();
    let t = &w.t;
    let v = new_version(t, b"Antrag");
    let (doc, version) = t
        .create_document_with_version(
            CLERK,
            new_doc(w.file.id, "Antrag"),
            v.clone(),
            Some("req-1"),
        )
        .unwrap();
    let before = size(t);
    let (again, again_v) = t
        .create_document_with_version(
            CLERK,
            new_doc(w.file.id, "Antrag"),
            v.clone(),
            Some("req-1"),
        )
        .unwrap();
    assert_eq!(size(t), before, "a retry appends nothing");
    assert_eq!(again.id, doc.id);
    assert_eq!(again_v, version);
    for err in [
        t.create_document_with_version(
            CLERK,
            new_doc(w.file.id, "Anderer Antrag"),
            v.clone(),
            Some("req-1"),
        )
        .map(|_| ())
        .unwrap_err(),
        // The same key for a document without a version is a different request.
        t.create_document(CLERK, new_doc(w.file.id, "Antrag"), Some("req-1"))
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, RecordsError::IdempotencyConflict { .. }),
            "{err}"
        );
    }
    assert_eq!(size(t), before);
    // The key survives a rebuild.
    t.tenant().rebuild_index().unwrap();
    let (third, _) = t
        .create_document_with_version(CLERK, new_doc(w.file.id, "Antrag"), v, Some("req-1"))
        .unwrap();
    assert_eq!(third.id, doc.id);
    assert_eq!(size(t), before);
}

#[test]
fn refused_input_appends_nothing() {
    let w = world();
    let t = &w.t;
    let good = new_version(t, b"Antrag");
    let unknown = NewVersion {
        comment: String::new(),
        renditions: vec![NewRendition {
            file_name: "x.pdf".into(),
            media_type: "application/pdf".into(),
            sha256: akte_core::Digest::of(b"never stored"),
            size: 12,
        }],
    };
    let wrong_size = NewVersion {
        comment: String::new(),
        renditions: vec![NewRendition {
            size: good.renditions[0].size + 1,
            ..good.renditions[0].clone()
        }],
    };
    let bad_name = NewVersion {
        comment: String::new(),
        renditions: vec![NewRendition {
            file_name: "a/b.pdf".into(),
            ..good.renditions[0].clone()
        }],
    };
    let bad_type = NewVersion {
        comment: String::new(),
        renditions: vec![NewRendition {
            media_type: "pdf".into(),
            ..good.renditions[0].clone()
        }],
    };
    let none = NewVersion {
        comment: String::new(),
        renditions: vec![],
    };
    let taken = t
        .create_document(CLERK, new_doc(w.file.id, "Erster"), None)
        .unwrap();
    let before = size(t);
    let live = dump(t);
    let cases: Vec<(&str, NewDocument, NewVersion)> = vec![
        ("unknown content", new_doc(w.file.id, "x"), unknown),
        ("wrong size", new_doc(w.file.id, "x"), wrong_size),
        ("file name", new_doc(w.file.id, "x"), bad_name),
        ("media type", new_doc(w.file.id, "x"), bad_type),
        ("no rendition", new_doc(w.file.id, "x"), none),
        ("empty subject", new_doc(w.file.id, ""), good.clone()),
        (
            "subject with a line break",
            new_doc(w.file.id, "a\nb"),
            good.clone(),
        ),
        ("unknown parent", new_doc(Uuid::new_v4(), "x"), good.clone()),
        ("plan unit as parent", new_doc(w.unit.id, "x"), good.clone()),
        (
            "id taken",
            NewDocument {
                id: Some(taken.id),
                ..new_doc(w.file.id, "x")
            },
            good.clone(),
        ),
    ];
    for (what, doc, version) in cases {
        let r = t.create_document_with_version(CLERK, doc, version, Some("req-bad"));
        assert!(r.is_err(), "{what}: {r:?}");
        assert_eq!(size(t), before, "{what}: nothing appended");
        assert_eq!(dump(t), live, "{what}: the index unchanged");
    }
    // A closed file takes nothing.
    t.close(REG, w.file.id, None, None).unwrap();
    let before = size(t);
    let err = t
        .create_document_with_version(CLERK, new_doc(w.file.id, "x"), good, None)
        .unwrap_err();
    assert!(matches!(err, RecordsError::Closed { .. }), "{err}");
    assert_eq!(size(t), before);
}

#[test]
fn the_caller_needs_the_right_to_file_into_the_parent() {
    let w = world();
    let t = &w.t;
    let unit = t.create_org_unit("admin:root", "Bauamt", None).unwrap().id;
    t.add_member("admin:root", unit, "clerk:bau").unwrap();
    t.set_lead_unit(REG, w.file.id, Some(unit), None).unwrap();
    let v = new_version(t, b"Antrag");
    let before = size(t);
    let outsider = t
        .bind("clerk:other", &[Role::Clerk], &[], Operation::FileDocuments)
        .unwrap();
    let err = outsider
        .create_document_with_version("clerk:other", new_doc(w.file.id, "x"), v.clone(), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RecordsError::NotFound { .. } | RecordsError::AccessDenied { .. }
        ),
        "{err}"
    );
    let reader = t
        .bind("clerk:bau", &[Role::Clerk], &[], Operation::Read)
        .unwrap();
    assert!(reader
        .create_document_with_version("clerk:bau", new_doc(w.file.id, "x"), v.clone(), None)
        .is_err());
    // Denials may be logged (access.log), but no document is created.
    assert!(t
        .list_children(w.file.id, &PageRequest::first(10))
        .unwrap()
        .items
        .is_empty());
    let member = t
        .bind("clerk:bau", &[Role::Clerk], &[], Operation::FileDocuments)
        .unwrap();
    let (doc, _) = member
        .create_document_with_version("clerk:bau", new_doc(w.file.id, "Antrag"), v, None)
        .unwrap();
    assert!(size(t) > before);
    assert_eq!(t.document(doc.id).unwrap().versions, 1);
}

#[test]
fn evidence_and_destruction_of_a_one_call_document() {
    let w = world();
    let t = &w.t;
    let bytes = b"%PDF-1.7 Bescheid".to_vec();
    let (doc, version) = t
        .create_document_with_version(
            CLERK,
            new_doc(w.file.id, "Bescheid"),
            new_version(t, &bytes),
            None,
        )
        .unwrap();
    // Evidence names the create entry, which lists the rendition as content.
    let evidence = t.document_evidence(doc.id).unwrap();
    assert_eq!(evidence.objects.len(), 1);
    let zip = t
        .document_evidence_package(doc.id, Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let dir = tempfile::tempdir().unwrap();
    let zpath = dir.path().join("document.zip");
    std::fs::write(&zpath, &zip).unwrap();
    assert!(akte_core::evidence::verify_package(&zpath, None)
        .unwrap()
        .is_clean());

    // Retention runs from the file; after it, destruction removes record and content.
    let closed = NaiveDate::from_ymd_opt(2015, 3, 1).unwrap();
    t.close(REG, w.file.id, None, Some(closed)).unwrap();
    let digest = version.renditions[0].sha256;
    assert!(t.tenant().content().contains(&digest).unwrap());
    let (record, _) = t
        .destroy(REG, &[w.file.id], BASIS, "Amtsleitung Dr. Roth")
        .unwrap();
    assert_eq!(record.files[0].objects.len(), 2, "file and document");
    assert!(record.files[0].contents.contains(&digest));
    assert!(matches!(t.get(doc.id), Err(RecordsError::Destroyed { .. })));
    assert!(!t.tenant().content().contains(&digest).unwrap());
    assert_rebuild_equal_and_verify_clean(&w);
}
