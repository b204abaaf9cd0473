//! Handover between agencies (xdomea 0401 to 0403) and taking over packages of other
//! systems (0503) as legacy import, through the library's public API: the round trip from
//! one data directory to another keeps bytes, metadata and history; answers close the
//! giving side's files as handed over; reruns duplicate nothing; bad packages change
//! nothing. Both sides' indexes rebuild to the live ones and verify clean.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_core::xdomea::{self, Party};
use akte_tests::index_dump as dump;
use chrono::NaiveDate;
use serde_json::{json, Map};
use uuid::Uuid;

const REG: &str = "registrar:weber";
const CLERK: &str = "clerk:schmidt";

fn open() -> (tempfile::TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    (dir, records)
}

fn assert_rebuild_equal_and_verify_clean(records: &Records, t: &TenantRecords) {
    t.tenant().checkpoint().unwrap();
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

fn add_version(t: &TenantRecords, doc: Uuid, files: &[(&str, &str, &[u8])], comment: &str) {
    let renditions = files
        .iter()
        .map(|(name, media, bytes)| {
            let put = t.put_content(*bytes).unwrap();
            NewRendition {
                file_name: (*name).into(),
                media_type: (*media).into(),
                sha256: put.digest,
                size: put.size,
            }
        })
        .collect();
    t.add_version(
        CLERK,
        doc,
        NewVersion {
            comment: comment.into(),
            renditions,
        },
        None,
    )
    .unwrap();
}

struct Stock {
    file: File,
    sub_file: File,
    case: Case,
    sub_case: Case,
    letter: Document,
    attachment: Document,
    decision: Document,
}

/// A file with what real files hold: a sub-file, a case with a sub-case, documents with
/// several versions and formats, an attachment, umlauts, changes in its history.
fn stock(t: &TenantRecords) -> Stock {
    let unit = t
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                retention: Retention::Years(30),
                disposal: DisposalDecision::Archive,
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
                subject: "Neubau Wohnhaus, Flurstück 12/3, Gößnitz".into(),
                begin: date(2025, 2, 1),
                lead_unit: "Bauordnungsamt".into(),
                notes: "Nachbarwiderspruch läuft".into(),
                confidentiality: Confidentiality::Restricted,
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let mut patch = Map::new();
    patch.insert("subject".into(), json!("Neubau Wohnhaus, Flurstück 12/3"));
    let file = match t
        .update(
            REG,
            file.id,
            file.revision,
            patch,
            Some("Tippfehler".into()),
        )
        .unwrap()
    {
        Object::File(f) => f,
        _ => unreachable!(),
    };
    let sub_file = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit.id,
                parent_file: Some(file.id),
                subject: "Statik".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let case = t
        .create_case(
            REG,
            NewCase {
                parent: file.id,
                subject: "Bauantrag".into(),
                ..NewCase::default()
            },
            None,
        )
        .unwrap();
    let sub_case = t
        .create_case(
            REG,
            NewCase {
                parent: case.id,
                subject: "Nachforderung".into(),
                ..NewCase::default()
            },
            None,
        )
        .unwrap();
    let letter = t
        .create_document(
            CLERK,
            NewDocument {
                parent: case.id,
                subject: "Antrag Müller".into(),
                letter_date: date(2025, 2, 3),
                received_on: date(2025, 2, 5),
                sender: "Jürgen Müller".into(),
                clerk: "Schmidt".into(),
                external_reference: "M-17/25".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    add_version(
        t,
        letter.id,
        &[
            (
                "Antrag Müller.pdf",
                "application/pdf",
                b"%PDF-1.7 Antrag v1",
            ),
            (
                "Antrag Müller.odt",
                "application/vnd.oasis.opendocument.text",
                b"PK odt v1",
            ),
        ],
        "eingescannt",
    );
    add_version(
        t,
        letter.id,
        &[(
            "Antrag Müller.pdf",
            "application/pdf",
            b"%PDF-1.7 Antrag v2",
        )],
        "korrigiert",
    );
    let attachment = t
        .create_document(
            CLERK,
            NewDocument {
                parent: letter.id,
                subject: "Lageplan".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    add_version(
        t,
        attachment.id,
        &[("Lageplan Straße.tif", "image/tiff", b"II*\0 lageplan")],
        "",
    );
    let decision = t
        .create_document(
            CLERK,
            NewDocument {
                parent: sub_case.id,
                subject: "Bescheid".into(),
                sent_on: date(2025, 3, 1),
                recipients: vec!["Jürgen Müller".into(), "Bauaufsicht".into()],
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    add_version(
        t,
        decision.id,
        &[("bescheid.pdf", "application/pdf", b"%PDF-1.7 Bescheid")],
        "",
    );
    Stock {
        file,
        sub_file,
        case,
        sub_case,
        letter,
        attachment,
        decision,
    }
}

fn agency(code: &str, name: &str) -> Party {
    Party::agency(code, name)
}

fn export(t: &TenantRecords, files: &[Uuid]) -> (Vec<u8>, HandoverSent) {
    let (out, sent) = t
        .export_handover(
            REG,
            files,
            agency("16051000", "Stadt Erfurt"),
            agency("16055000", "Landkreis Weimarer Land"),
            Cursor::new(Vec::new()),
        )
        .unwrap();
    (out.into_inner(), sent)
}

fn take_over(t: &TenantRecords, zip: &[u8]) -> PackageImport {
    t.import_package(
        "import:abgabe",
        Cursor::new(zip),
        &PackageOptions {
            create_plan_units: true,
            ..PackageOptions::default()
        },
        &mut |_| {},
    )
    .unwrap()
}

fn bytes(t: &TenantRecords, r: &Rendition) -> Vec<u8> {
    let mut out = Vec::new();
    t.open_rendition(r).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// A's history of an object as B keeps it: one line per changed field.
fn flattened(items: &[HistoryItem]) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for i in items {
        if i.changes.is_empty() {
            out.push((i.action.clone(), i.actor.clone(), None));
        }
        for c in &i.changes {
            out.push((i.action.clone(), i.actor.clone(), Some(c.field.clone())));
        }
    }
    out
}

fn history(t: &TenantRecords, id: Uuid) -> Vec<HistoryItem> {
    t.history(id, &PageRequest::first(1000)).unwrap().items
}

#[test]
fn handover_round_trip_keeps_bytes_metadata_and_history_and_closes_the_giving_file() {
    let (_da, ra) = open();
    let (_db, rb) = open();
    let a = ra.create_tenant("stadt-erfurt").unwrap();
    let b = rb.create_tenant("lk-weimarer-land").unwrap();
    let s = stock(&a);

    let (zip, sent) = export(&a, &[s.file.id]);
    assert!(sent.zip_name.ends_with("_Abgabe.Abgabe.0401.zip"));
    assert_eq!(sent.process.files, vec![s.file.id]);
    // The 0401 validates against the xdomea 3.1.0 schema.
    let xml = xdomea::read_message_zip(Cursor::new(&zip), xdomea::MessageType::Handover, 1 << 26)
        .unwrap();
    akte_tests::xdomea_validate(&[("0401.xml", &xml)]);
    // While the handover is pending, the file cannot be handed over again.
    assert!(matches!(
        a.export_handover(
            REG,
            &[s.file.id],
            Party::default(),
            Party::default(),
            Cursor::new(Vec::new())
        ),
        Err(RecordsError::FailedPrecondition { .. })
    ));

    let taken = take_over(&b, &zip);
    assert_eq!(
        (taken.report.imported, taken.report.failed),
        (8, 0),
        "{:#?}",
        taken.report
    );
    assert!(taken.results.iter().all(|r| r.success));
    assert_eq!(taken.results.len(), 7);
    let digest = akte_core::digest::Digest::of(&zip);
    assert_eq!(taken.digest, digest);

    // Same ids, references, metadata; original dates and actors as origin.
    let fb = b.file(s.file.id).unwrap();
    let fa = a.file(s.file.id).unwrap();
    assert_eq!(fb.reference, fa.reference);
    assert_eq!(fb.subject, fa.subject);
    assert_eq!(
        (
            fb.begin,
            fb.lead_unit.as_str(),
            fb.notes.as_str(),
            fb.confidentiality
        ),
        (
            fa.begin,
            fa.lead_unit.as_str(),
            fa.notes.as_str(),
            fa.confidentiality
        )
    );
    assert_eq!(fb.status, Status::Open);
    let origin = fb.origin.clone().unwrap();
    assert_eq!(origin.source_system, "xdomea:16051000");
    assert_eq!(origin.package, Some(digest));
    assert_eq!(origin.created_by, REG);
    assert_eq!(origin.created_on, Some(fa.created.at.date_naive()));
    assert_eq!(b.plan_unit(fb.plan_unit).unwrap().code, "632.1");
    assert_eq!(b.file(s.sub_file.id).unwrap().parent_file, Some(fb.id));
    assert_eq!(b.case(s.sub_case.id).unwrap().parent_case, Some(s.case.id));
    let letter = b.document(s.letter.id).unwrap();
    assert_eq!(
        (
            letter.subject.as_str(),
            letter.sender.as_str(),
            letter.letter_date,
            letter.received_on,
            letter.clerk.as_str(),
            letter.external_reference.as_str()
        ),
        (
            "Antrag Müller",
            "Jürgen Müller",
            date(2025, 2, 3),
            date(2025, 2, 5),
            "Schmidt",
            "M-17/25"
        )
    );
    assert_eq!(
        b.document(s.decision.id).unwrap().recipients,
        vec!["Jürgen Müller".to_owned(), "Bauaufsicht".to_owned()]
    );
    assert_eq!(b.document(s.attachment.id).unwrap().parent, s.letter.id);

    // Same bytes, names, media types and version comments.
    for doc in [s.letter.id, s.attachment.id, s.decision.id] {
        let va = a.versions(doc).unwrap();
        let vb = b.versions(doc).unwrap();
        assert_eq!(va.len(), vb.len());
        for (x, y) in va.iter().zip(&vb) {
            assert_eq!((x.number, &x.comment), (y.number, &y.comment));
            assert_eq!(y.original.as_ref().unwrap().by, CLERK);
            assert_eq!(x.renditions.len(), y.renditions.len());
            for (r, q) in x.renditions.iter().zip(&y.renditions) {
                assert_eq!(
                    (&r.file_name, &r.media_type, r.sha256, r.size),
                    (&q.file_name, &q.media_type, q.sha256, q.size)
                );
                assert_eq!(bytes(&a, r), bytes(&b, q));
            }
        }
    }

    // A's history is B's original history, line by line; B's own history says import.
    for id in [s.file.id, s.case.id, s.letter.id, s.decision.id] {
        let ha = flattened(&history(&a, id));
        let hb: Vec<_> = b
            .original_history(id)
            .unwrap()
            .into_iter()
            .map(|h| (h.action, h.actor, h.field))
            .collect();
        // A's history of the file also holds the handover itself, recorded after export.
        let ha: Vec<_> = ha
            .into_iter()
            .filter(|(a, _, _)| a != "handover.send")
            .collect();
        assert_eq!(hb, ha, "history of {id}");
        let own = history(&b, id);
        assert!(own[0].action.ends_with(".import"), "{:?}", own[0]);
    }
    let update = b
        .original_history(s.file.id)
        .unwrap()
        .into_iter()
        .find(|h| h.action == "file.update")
        .unwrap();
    assert_eq!(update.remark.as_deref(), Some("Tippfehler"));
    assert_eq!(update.field.as_deref(), Some("subject"));

    // Rerunning the import finds everything done.
    let size = b.tenant().size().unwrap();
    let again = take_over(&b, &zip);
    assert_eq!(
        (again.report.imported, again.report.already_imported),
        (0, 7)
    );
    assert!(again.results.iter().all(|r| r.success));
    assert_eq!(b.tenant().size().unwrap(), size);

    // B answers; A reads receipt and confirmation: the file is handed over and closed.
    let receipt = taken.receipt_zip().unwrap();
    let confirmation = taken.confirmation_zip().unwrap();
    for (zip, message) in [
        (&receipt, xdomea::MessageType::HandoverReceipt),
        (
            &confirmation,
            xdomea::MessageType::HandoverImportConfirmation,
        ),
    ] {
        let xml = xdomea::read_message_zip(Cursor::new(zip), message, 1 << 20).unwrap();
        akte_tests::xdomea_validate(&[("answer.xml", &xml)]);
    }
    let p = a
        .read_handover_answer(REG, Cursor::new(&receipt), &BTreeMap::new())
        .unwrap();
    assert!(p.receipt_on.is_some() && p.confirmed_on.is_none());
    assert_eq!(a.file(s.file.id).unwrap().handed_over, None);
    let mut refs = BTreeMap::new();
    refs.insert(s.file.id, "WL-632.1-17/2026".to_owned());
    let p = a
        .read_handover_answer(REG, Cursor::new(&confirmation), &refs)
        .unwrap();
    assert!(p.confirmed_on.is_some() && p.failed.is_empty());
    let handed = a.file(s.file.id).unwrap();
    assert_eq!(handed.status, Status::Closed);
    let h = handed.handed_over.clone().unwrap();
    assert_eq!(
        (h.to.as_str(), h.receiving_reference.as_deref()),
        ("16055000", Some("WL-632.1-17/2026"))
    );
    assert_eq!(a.case(s.case.id).unwrap().status, Status::Closed);
    // It keeps its content and cannot be reopened or read in twice.
    let v = a.versions(s.letter.id).unwrap();
    assert_eq!(bytes(&a, &v[1].renditions[0]), b"%PDF-1.7 Antrag v2");
    assert!(matches!(
        a.reopen(REG, s.file.id, None, None),
        Err(RecordsError::FailedPrecondition { .. })
    ));
    assert!(a
        .read_handover_answer(REG, Cursor::new(&confirmation), &refs)
        .is_err());

    assert_rebuild_equal_and_verify_clean(&ra, &a);
    assert_rebuild_equal_and_verify_clean(&rb, &b);
}

/// Rewrites a ZIP: each entry through `rename`, the message XML through `edit`.
fn rewrite_zip(
    zip: &[u8],
    rename: &dyn Fn(&str) -> String,
    edit: &dyn Fn(String) -> String,
) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let (name, bytes) = if name.ends_with(".xml") {
            (name, edit(String::from_utf8(bytes).unwrap()).into_bytes())
        } else {
            (rename(&name), bytes)
        };
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// A 0503 as another DMS writes its stock: primary files named as the users named them,
/// version numbers "1.0", no checksums, a file closed in 2012.
fn legacy_0503(src: &TenantRecords, s: &Stock) -> Vec<u8> {
    let (zip, _) = export(src, &[s.file.id]);
    let xml = xdomea::read_message_zip(Cursor::new(&zip), xdomea::MessageType::Handover, 1 << 26)
        .unwrap();
    let package = xdomea::read_package(&xml, xdomea::MessageType::Handover).unwrap();
    let mut files = package.files.clone();
    files[0].running_begin = date(2009, 4, 1);
    files[0].closed = date(2012, 12, 20);
    files[0].running_end = date(2012, 12, 20);
    files[0].retention = Some(xdomea::Retention::Years(10));
    files[0].disposal = xdomea::DisposalDecision::Destroy;
    let header = xdomea::MessageHeader {
        sender: Party {
            institution: Some("Altsystem Gemeinde Gößnitz".into()),
            ..Party::default()
        },
        ..package.header.clone()
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    let mut out = Cursor::new(Vec::new());
    out = xdomea::write_0503(out, &header, &files, |r: &xdomea::RenditionObject| {
        let name = xdomea::primary_file_name(r);
        let mut bytes = Vec::new();
        archive
            .by_name(&name)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        Ok::<_, std::io::Error>(Cursor::new(bytes))
    })
    .unwrap();
    let zip = out.into_inner();
    // Other systems name primary files by UUIDs of their own; label versions their own way;
    // declare no checksums.
    let mut renamed = std::collections::HashMap::new();
    {
        let mut a = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
        for i in 0..a.len() {
            let n = a.by_index(i).unwrap().name().to_owned();
            if !n.ends_with(".xml") {
                renamed.insert(n.clone(), format!("{}{}", Uuid::new_v4(), &n[36..]));
            }
        }
    }
    rewrite_zip(&zip, &|n| renamed[n].clone(), &|xml| {
        let mut out = xml;
        for (old, new) in &renamed {
            out = out.replace(old.as_str(), new);
        }
        let out = out
            .replace(
                "<xdomea:Nummer>1</xdomea:Nummer>",
                "<xdomea:Nummer>1.0</xdomea:Nummer>",
            )
            .replace(
                "<xdomea:Nummer>2</xdomea:Nummer>",
                "<xdomea:Nummer>2.0</xdomea:Nummer>",
            );
        // Drop akte's checksum extension: other systems have none.
        let mut cleaned = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find("<xdomea:AnwendungsspezifischeErweiterung>") {
            cleaned.push_str(&rest[..i]);
            let end = rest
                .find("</xdomea:AnwendungsspezifischeErweiterung>")
                .unwrap()
                + "</xdomea:AnwendungsspezifischeErweiterung>".len();
            rest = &rest[end..];
        }
        cleaned.push_str(rest);
        cleaned
    })
}

#[test]
fn a_legacy_0503_is_taken_over_as_migration_source_and_goes_straight_into_disposal() {
    let (_ds, rs) = open();
    let src = rs.create_tenant("altsystem").unwrap();
    let s = stock(&src);
    let zip = legacy_0503(&src, &s);
    let xml = xdomea::read_message_zip(Cursor::new(&zip), xdomea::MessageType::Transfer, 1 << 26)
        .unwrap();
    akte_tests::xdomea_validate(&[("legacy-0503.xml", &xml)]);

    let (_d, r) = open();
    let t = r.create_tenant("gemeinde").unwrap();
    let taken = take_over(&t, &zip);
    assert_eq!(
        (taken.report.imported, taken.report.failed),
        (8, 0),
        "{:#?}",
        taken.report
    );
    assert_eq!(
        taken.source_system,
        format!("xdomea:{}", taken.header.process_id)
    );
    let f = t.file(s.file.id).unwrap();
    assert_eq!(
        (f.status, f.closed_on),
        (Status::Closed, date(2012, 12, 20))
    );
    // Its cases closed with it; versions by their order; names as the users gave them.
    assert_eq!(t.case(s.sub_case.id).unwrap().status, Status::Closed);
    let v = t.versions(s.letter.id).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].renditions.len(), 2);
    assert_eq!(v[0].renditions[0].file_name, "Antrag Müller.pdf");
    assert_eq!(v[0].renditions[0].media_type, "application/pdf");
    assert_eq!(
        v[0].renditions[1].media_type,
        "application/vnd.oasis.opendocument.text"
    );
    assert_eq!(bytes(&t, &v[1].renditions[0]), b"%PDF-1.7 Antrag v2");
    let att = t.versions(s.attachment.id).unwrap();
    assert_eq!(att[0].renditions[0].file_name, "Lageplan Straße.tif");
    // Closed 2012 with ten years: due, and destroyable at once (V).
    let status = t.disposal_status(f.id).unwrap();
    assert_eq!(
        status.status,
        DisposalStatus::Due {
            decision: DisposalDecision::Destroy
        },
        "{}",
        status.explanation
    );
    t.destroy(REG, &[f.id], "§ 18 ThürEGovG", "Amtsleitung")
        .unwrap();
    assert_rebuild_equal_and_verify_clean(&r, &t);
}

#[test]
fn an_interrupted_package_import_resumes_without_duplicates() {
    let (_da, ra) = open();
    let a = ra.create_tenant("a").unwrap();
    let s = stock(&a);
    let (zip, _) = export(&a, &[s.file.id]);
    let (_db, rb) = open();
    let b = rb.create_tenant("b").unwrap();
    // Stop after three objects (an operator's Ctrl-C, a crash of the caller).
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.import_package(
            "import:abgabe",
            Cursor::new(&zip),
            &PackageOptions {
                create_plan_units: true,
                ..PackageOptions::default()
            },
            &mut |r| {
                if r.processed() == 3 {
                    panic!("interrupted");
                }
            },
        )
    }));
    assert!(stopped.is_err());
    assert!(b.file(s.file.id).is_ok());
    assert!(b.case(s.case.id).is_ok());
    assert!(b.document(s.letter.id).is_err());
    let resumed = take_over(&b, &zip);
    assert_eq!(
        (
            resumed.report.imported,
            resumed.report.already_imported,
            resumed.report.failed
        ),
        (5, 2, 0),
        "{:#?}",
        resumed.report
    );
    // Nothing twice: one file per reference, one child listing entry per object.
    let unit = b.plan_unit_by_code("632.1").unwrap();
    assert_eq!(
        b.list_files(unit.id, &PageRequest::first(100))
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(b.versions(s.letter.id).unwrap().len(), 2);
    assert_rebuild_equal_and_verify_clean(&rb, &b);
}

#[test]
fn bad_packages_are_refused_and_change_nothing() {
    let (_da, ra) = open();
    let a = ra.create_tenant("a").unwrap();
    let s = stock(&a);
    let (zip, _) = export(&a, &[s.file.id]);
    let (_db, rb) = open();
    let b = rb.create_tenant("b").unwrap();
    let size = b.tenant().size().unwrap();
    let attempt = |zip: &[u8], options: &PackageOptions| {
        b.import_package("import:abgabe", Cursor::new(zip), options, &mut |_| {})
    };
    let create = PackageOptions {
        create_plan_units: true,
        ..PackageOptions::default()
    };
    // A path in the ZIP.
    let evil = rewrite_zip(&zip, &|n| format!("../{n}"), &|x| x);
    let err = attempt(&evil, &create).unwrap_err();
    assert!(err.to_string().contains("not a path"), "{err}");
    // Over the limits.
    let small = PackageOptions {
        limits: PackageLimits {
            max_entries: 3,
            ..PackageLimits::default()
        },
        ..create.clone()
    };
    let err = attempt(&zip, &small).unwrap_err();
    assert!(err.to_string().contains("entries"), "{err}");
    // A ZIP bomb: a megabyte of zeros compressed a thousandfold.
    let mut bomb = zip::ZipWriter::new(Cursor::new(Vec::new()));
    bomb.start_file(
        "x.bin",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    for _ in 0..16 {
        bomb.write_all(&[0u8; 1 << 20]).unwrap();
    }
    let bomb = bomb.finish().unwrap().into_inner();
    let strict = PackageOptions {
        limits: PackageLimits {
            max_ratio: 100,
            ..PackageLimits::default()
        },
        ..create.clone()
    };
    let err = attempt(&bomb, &strict).unwrap_err();
    assert!(err.to_string().contains("bomb"), "{err}");
    // Not a ZIP, and a ZIP without a message.
    assert!(attempt(b"not a zip", &create).is_err());
    // Schema-invalid XML.
    let invalid = rewrite_zip(&zip, &|n| n.to_owned(), &|x| {
        x.replacen(
            "<xdomea:ZdA>0</xdomea:ZdA>",
            "<xdomea:ZdA>vielleicht</xdomea:ZdA>",
            1,
        )
    });
    let err = attempt(&invalid, &create).unwrap_err();
    assert!(err.to_string().contains("ZdA"), "{err}");
    // A primary file named in the message but missing from the ZIP.
    let name = {
        let mut a = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
        let n = (0..a.len())
            .map(|i| a.by_index(i).unwrap().name().to_owned())
            .find(|n| !n.ends_with(".xml"))
            .unwrap();
        n
    };
    let missing = rewrite_zip(
        &zip,
        &|n| {
            if n == name {
                "other.bin".into()
            } else {
                n.to_owned()
            }
        },
        &|x| x,
    );
    let err = attempt(&missing, &create).unwrap_err();
    assert!(err.to_string().contains("not in the ZIP"), "{err}");
    assert_eq!(b.tenant().size().unwrap(), size, "nothing was recorded");

    // An unknown plan unit without leave to create it: the file and all in it fail,
    // nothing of them is recorded.
    let r = attempt(&zip, &PackageOptions::default()).unwrap();
    assert_eq!(
        (r.report.imported, r.report.failed),
        (0, 7),
        "{:#?}",
        r.report
    );
    assert_eq!(r.report.items[0].rule.as_deref(), Some("unknown-parent"));
    assert!(r.results.iter().all(|x| !x.success));
    assert_eq!(b.tenant().size().unwrap(), size);
    // The reference is taken here already: the file fails as a duplicate.
    let unit = b
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "632.1".into(),
                title: "Bau".into(),
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    b.configure_reference_pattern(REG, "{unit}-{seq:04}/{year}")
        .unwrap();
    let mine = b
        .create_file(
            REG,
            NewFile {
                plan_unit: unit.id,
                subject: "Eigene Akte".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(mine.reference, s.file.reference);
    let r = attempt(&zip, &PackageOptions::default()).unwrap();
    assert_eq!(
        r.report.items[0].rule.as_deref(),
        Some("duplicate-reference")
    );
    assert_eq!(r.report.imported, 0);
    assert_rebuild_equal_and_verify_clean(&rb, &b);
}

#[test]
fn a_file_plan_round_trips_and_updates_with_history() {
    let (_da, ra) = open();
    let (_db, rb) = open();
    let a = ra.create_tenant("a").unwrap();
    let b = rb.create_tenant("b").unwrap();
    let top = a
        .create_plan_unit(
            REG,
            NewPlanUnit {
                code: "632".into(),
                title: "Bauordnung".into(),
                retention: Retention::Unlimited,
                disposal: DisposalDecision::Archive,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let sub = a
        .create_plan_unit(
            REG,
            NewPlanUnit {
                parent: Some(top.id),
                code: "632.1".into(),
                title: "Baugenehmigungen für Wohngebäude".into(),
                retention: Retention::Years(30),
                disposal: DisposalDecision::Destroy,
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    let old = a
        .create_plan_unit(
            REG,
            NewPlanUnit {
                parent: Some(top.id),
                code: "632.9".into(),
                title: "Altfälle".into(),
                ..NewPlanUnit::default()
            },
            None,
        )
        .unwrap();
    a.deactivate_plan_unit(REG, old.id, old.revision).unwrap();
    let sender = agency("16051000", "Stadt Erfurt");
    let receiver = agency("16055000", "Landkreis");
    let (zip, name) = a
        .export_plan(sender.clone(), receiver.clone(), "Aktenplan Erfurt", "2026")
        .unwrap();
    assert!(name.ends_with("_Aktenplan.Aktenplan.0301.zip"));
    let xml =
        xdomea::read_message_zip(Cursor::new(&zip), xdomea::MessageType::Plan, 1 << 20).unwrap();
    akte_tests::xdomea_validate(&[("0301.xml", &xml)]);

    let taken = b.import_plan(REG, Cursor::new(&zip)).unwrap();
    assert_eq!(taken.created, vec!["632", "632.1", "632.9"]);
    assert!(taken.failed.is_empty() && taken.updated.is_empty());
    let receipt = taken.receipt_zip().unwrap();
    let rxml = xdomea::read_message_zip(
        Cursor::new(&receipt),
        xdomea::MessageType::PlanReceipt,
        1 << 20,
    )
    .unwrap();
    akte_tests::xdomea_validate(&[("0302.xml", &rxml)]);
    assert_eq!(
        xdomea::read_0302(&rxml).unwrap().header.process_id,
        taken.header.process_id
    );
    for code in ["632", "632.1", "632.9"] {
        let (x, y) = (
            a.plan_unit_by_code(code).unwrap(),
            b.plan_unit_by_code(code).unwrap(),
        );
        assert_eq!(
            (&x.title, x.retention, x.disposal, x.active),
            (&y.title, y.retention, y.disposal, y.active)
        );
    }
    assert_eq!(
        b.plan_unit_by_code("632.1").unwrap().parent,
        Some(b.plan_unit_by_code("632").unwrap().id)
    );

    // A changes a unit; the second plan updates B with history, the rest stays.
    let sub = a.plan_unit(sub.id).unwrap();
    let mut patch = Map::new();
    patch.insert("retention".into(), json!({"years": 50}));
    a.update(REG, sub.id, sub.revision, patch, None).unwrap();
    let (zip, _) = a
        .export_plan(sender, receiver, "Aktenplan Erfurt", "2027")
        .unwrap();
    let again = b.import_plan(REG, Cursor::new(&zip)).unwrap();
    assert_eq!(again.updated, vec!["632.1"]);
    assert_eq!(again.unchanged, vec!["632", "632.9"]);
    let y = b.plan_unit_by_code("632.1").unwrap();
    assert_eq!(y.retention, Retention::Years(50));
    let h = history(&b, y.id);
    let last = h.last().unwrap();
    assert_eq!(last.action, "plan_unit.update");
    assert!(last.reason.as_deref().unwrap().contains("2027"));
    assert_eq!(last.changes[0].field, "retention");
    // Not a 0301: refused, nothing changed.
    let size = b.tenant().size().unwrap();
    assert!(b.import_plan(REG, Cursor::new(&receipt)).is_err());
    assert_eq!(b.tenant().size().unwrap(), size);
    assert_rebuild_equal_and_verify_clean(&rb, &b);
}
