//! The xdomea disposal flow end to end over the library, with the archive's messages shaped
//! the way a real intake system (x-man of the Thuringian State Archive) writes them: every
//! appraisable object listed in the 0502, local times without offset, codes without list
//! attributes, an Institution-only sender, a 0506 naming cases and documents (the file's
//! own id left out when the archive packages per case) with or without Archivkennung.
//!
//! Scenarios: all A; a file A with a case and a sub-file V; a file V; a partial import
//! failure settled by a later 0506; destruction of V parts after confirmation; the
//! two-stage flow; and bad input (wrong process, unknown and duplicate ids, objects not
//! offered, wrong stage, missing settings), each refused with a clear error and nothing
//! recorded. Every message akte writes is validated by xmllint against the 3.1.0 schema.

use std::collections::BTreeSet;
use std::io::{Cursor, Read};
use std::process::Command;

use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_core::xdomea::{
    self, Appraisal, AppraisalDecision, CodeValue, ImportResult, MessageHeader, MessageType, Party,
    SendingSystem, SgoKind, WriteStyle,
};
use akte_tests::{content_text, index_dump as dump};
use chrono::NaiveDate;
use uuid::Uuid;

const REG: &str = "registrar:weber";
const ARCH: &str = "archivist:klein";
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/xdomea/schemas/3.1.0/xdomea.xsd"
);

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// Validates XML with xmllint against the xdomea schema; the test fails if xmllint is missing.
fn assert_valid(xml: &[u8], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.xml");
    std::fs::write(&p, xml).unwrap();
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", SCHEMA])
        .arg(&p)
        .output()
        .expect("xmllint is needed (apt-get install libxml2-utils)");
    assert!(
        out.status.success(),
        "{what} does not validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().to_owned(), b)
        })
        .collect()
}

/// The one XML of a message ZIP, checked against the schema and its xdomea name.
fn message_of(zip: &[u8], process: Uuid, message: MessageType) -> Vec<u8> {
    let entries = unzip(zip);
    let name = xdomea::message_xml_name(process, message);
    let xml = entries
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} in the ZIP"))
        .1
        .clone();
    assert_valid(&xml, message.code());
    xml
}

/// A header as x-man writes it: an Institution-only sender, the agency's Institution as
/// receiver, X-MAN as sending system.
fn archive_header(process: Uuid) -> MessageHeader {
    MessageHeader {
        process_id: process,
        created: chrono::Local::now().fixed_offset(),
        sender: Party {
            institution: Some("Landesarchiv Thüringen".into()),
            institution_short: Some("LATh".into()),
            ..Party::default()
        },
        receiver: Party {
            institution: Some("Stadtverwaltung Erfurt".into()),
            institution_short: Some("SV Erfurt".into()),
            ..Party::default()
        },
        system: Some(SendingSystem {
            instance_id: None,
            product_name: Some("X-MAN".into()),
            version: Some("1.0.0".into()),
        }),
        note: None,
        receipt_requested: true,
        archive_id_requested: false,
    }
}

/// An archive message as it travels: its ZIP.
fn zipped(process: Uuid, message: MessageType, xml: &[u8]) -> Vec<u8> {
    assert_valid(xml, message.code());
    xdomea::write_message_zip(
        Cursor::new(Vec::new()),
        &archive_header(process),
        message,
        xml,
    )
    .unwrap()
    .into_inner()
}

fn m0504(process: Uuid) -> Vec<u8> {
    let xml = xdomea::write_0504_with(&archive_header(process), WriteStyle::Archive).unwrap();
    assert!(
        !String::from_utf8_lossy(&xml).contains("listURI"),
        "archive style leaves list attributes out"
    );
    zipped(process, MessageType::OfferReceipt, &xml)
}

fn m0502(process: Uuid, decisions: &[(Uuid, AppraisalDecision)]) -> Vec<u8> {
    let appraisals: Vec<Appraisal> = decisions
        .iter()
        .map(|(id, decision)| Appraisal {
            id: *id,
            decision: *decision,
        })
        .collect();
    let xml = xdomea::write_0502_with(&archive_header(process), &appraisals, WriteStyle::Archive)
        .unwrap();
    zipped(process, MessageType::Appraisal, &xml)
}

fn m0507(process: Uuid) -> Vec<u8> {
    let xml = xdomea::write_0507_with(&archive_header(process), WriteStyle::Archive).unwrap();
    zipped(process, MessageType::TransferReceipt, &xml)
}

fn ok(id: Uuid, archive_id: Option<&str>) -> ImportResult {
    ImportResult {
        id,
        success: true,
        archive_id: archive_id.map(str::to_owned),
        error_messages: vec![],
        error_codes: vec![],
    }
}

fn failed(id: Uuid, why: &str) -> ImportResult {
    ImportResult {
        id,
        success: false,
        archive_id: None,
        error_messages: vec![why.into()],
        error_codes: vec![CodeValue {
            code: "99".into(),
            name: Some("Sonstiger Fehler".into()),
            list_uri: Some("urn:xoev-de:xdomea:codeliste:spezifischefehlermeldung0606".into()),
            list_version: Some("1.0".into()),
        }],
    }
}

fn m0506_xml(process: Uuid, results: &[ImportResult]) -> Vec<u8> {
    xdomea::write_0506_with(&archive_header(process), results, WriteStyle::Archive).unwrap()
}

fn m0506(process: Uuid, results: &[ImportResult]) -> Vec<u8> {
    zipped(
        process,
        MessageType::ImportConfirmation,
        &m0506_xml(process, results),
    )
}

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    t: TenantRecords,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("stadt-erfurt").unwrap();
    akte_tests::configure_disposal(&t);
    World {
        _dir: dir,
        records,
        t,
    }
}

fn unit(t: &TenantRecords, code: &str, decision: DisposalDecision) -> PlanUnit {
    t.create_plan_unit(
        REG,
        NewPlanUnit {
            code: code.into(),
            title: format!("Einheit {code}"),
            retention: Retention::Years(10),
            disposal: decision,
            ..NewPlanUnit::default()
        },
        None,
    )
    .unwrap()
}

fn document(t: &TenantRecords, parent: Uuid, subject: &str, bytes: &[u8]) -> Uuid {
    let doc = t
        .create_document(
            REG,
            NewDocument {
                parent,
                subject: subject.into(),
                sender: "Familie Meier".into(),
                letter_date: Some(d(2009, 5, 3)),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let put = t.put_content(bytes).unwrap();
    t.add_version(
        REG,
        doc.id,
        NewVersion {
            comment: String::new(),
            renditions: vec![NewRendition {
                file_name: format!("{subject}.pdf"),
                media_type: "application/pdf".into(),
                sha256: put.digest,
                size: put.size,
            }],
        },
        None,
    )
    .unwrap();
    doc.id
}

fn case(t: &TenantRecords, parent: Uuid, subject: &str) -> Uuid {
    t.create_case(
        REG,
        NewCase {
            parent,
            subject: subject.into(),
            ..NewCase::default()
        },
        None,
    )
    .unwrap()
    .id
}

/// A closed, due file: a document filed in the file itself, case 1 with a document and
/// its attachment, case 2 with a document, and a sub-file with a case and a document.
struct Rich {
    file: Uuid,
    reference: String,
    loose: Uuid,
    c1: Uuid,
    c1_doc: Uuid,
    c1_att: Uuid,
    c2: Uuid,
    c2_doc: Uuid,
    sub: Uuid,
    sub_case: Uuid,
    sub_doc: Uuid,
}

impl Rich {
    fn appraisable(&self) -> Vec<Uuid> {
        vec![self.file, self.c1, self.c2, self.sub, self.sub_case]
    }
    fn documents(&self) -> Vec<Uuid> {
        vec![
            self.loose,
            self.c1_doc,
            self.c1_att,
            self.c2_doc,
            self.sub_doc,
        ]
    }
}

fn rich_file(t: &TenantRecords, unit: Uuid, subject: &str) -> Rich {
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                subject: subject.into(),
                begin: Some(d(2008, 1, 2)),
                end: Some(d(2010, 6, 30)),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let loose = document(t, f.id, "Deckblatt", format!("loose {subject}").as_bytes());
    let c1 = case(t, f.id, "Bauantrag");
    let c1_doc = document(t, c1, "Antrag", format!("antrag {subject}").as_bytes());
    let c1_att = document(t, c1_doc, "Lageplan", format!("plan {subject}").as_bytes());
    let c2 = case(t, f.id, "Nachbarbeschwerde");
    let c2_doc = document(
        t,
        c2,
        "Beschwerde",
        format!("only in c2 {subject}").as_bytes(),
    );
    let sub = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                parent_file: Some(f.id),
                subject: "Statik".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap()
        .id;
    let sub_case = case(t, sub, "Prüfstatik");
    let sub_doc = document(
        t,
        sub_case,
        "Gutachten",
        format!("only in sub {subject}").as_bytes(),
    );
    t.close(REG, f.id, None, Some(d(2010, 6, 30))).unwrap();
    Rich {
        file: f.id,
        reference: t.file(f.id).unwrap().reference,
        loose,
        c1,
        c1_doc,
        c1_att,
        c2,
        c2_doc,
        sub,
        sub_case,
        sub_doc,
    }
}

fn offer(t: &TenantRecords, files: &[Uuid]) -> Uuid {
    let (process, zip) = t.offer(REG, files, Cursor::new(Vec::new())).unwrap();
    let zip = zip.into_inner();
    let entries = unzip(&zip);
    assert_eq!(entries.len(), 1, "an offer carries no primary files");
    let xml = message_of(&zip, process, MessageType::Offer);
    let text = String::from_utf8(xml).unwrap();
    assert!(text.contains("<code>16051000</code>") && text.contains("<code>ags:</code>"));
    process
}

/// The 0503 of a process: the ZIP, with the XML checked against the schema.
fn transfer(t: &TenantRecords, process: Uuid) -> (Vec<u8>, xdomea::ObjectList) {
    let zip = t
        .transfer(REG, process, Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let xml = message_of(&zip, process, MessageType::Transfer);
    (zip, xdomea::read_0503(&xml).unwrap())
}

fn ids_in(list: &xdomea::ObjectList) -> BTreeSet<Uuid> {
    list.walk().iter().map(|(o, _)| o.id).collect()
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

fn receive(t: &TenantRecords, message: &[u8]) -> Received {
    t.receive_message(ARCH, message).unwrap()
}

fn refused(t: &TenantRecords, message: &[u8]) -> RecordsError {
    let size = t.tenant().size().unwrap();
    let e = t.receive_message(ARCH, message).unwrap_err();
    assert_eq!(
        t.tenant().size().unwrap(),
        size,
        "a refused message records nothing: {e}"
    );
    e
}

fn rule_of(e: &RecordsError) -> (&str, &str) {
    match e {
        RecordsError::RefusedMessage { rule, element, .. } => (rule.as_str(), element.as_str()),
        other => panic!("expected a refused message, got {other:?}"),
    }
}

#[test]
fn all_appraised_a_with_every_object_confirmed_per_case_package() {
    let w = world();
    let t = &w.t;
    let u = unit(t, "1", DisposalDecision::Appraise);
    let a = rich_file(t, u.id, "Bebauungsplan Nord");
    let b = rich_file(t, u.id, "Bebauungsplan Süd");
    let process = offer(t, &[a.file, b.file]);
    assert!(t
        .disposal_status(a.file)
        .unwrap()
        .explanation
        .contains("offered to the archive"));
    // The file cannot change any more.
    let e = t.reopen(REG, a.file, None, None).unwrap_err();
    assert!(e.to_string().contains("can no longer be reopened"), "{e}");

    assert_eq!(
        receive(t, &m0504(process)).process.stage,
        ProcessStage::OfferReceived
    );
    // x-man lists every appraisable object.
    let all: Vec<(Uuid, AppraisalDecision)> = a
        .appraisable()
        .into_iter()
        .chain(b.appraisable())
        .map(|id| (id, AppraisalDecision::Archive))
        .collect();
    let r = receive(t, &m0502(process, &all));
    assert_eq!(r.message, MessageType::Appraisal);
    let receipt = r.receipt.expect("a 0505");
    assert_eq!(
        receipt.file_name,
        format!("{process}_Aussonderung.BewertungEmpfangBestaetigen.0505.zip")
    );
    let xml = message_of(&receipt.zip, process, MessageType::AppraisalReceipt);
    assert!(String::from_utf8_lossy(&xml).contains("<code>ags:</code>"));

    let (zip, sent) = transfer(t, process);
    let mut expected: BTreeSet<Uuid> = a.appraisable().into_iter().collect();
    expected.extend(a.documents());
    expected.extend(b.appraisable());
    expected.extend(b.documents());
    assert_eq!(ids_in(&sent), expected, "every object of both files");
    assert!(sent.header.archive_id_requested);
    let primaries = unzip(&zip)
        .into_iter()
        .filter(|(n, _)| !n.ends_with(".xml") && !n.ends_with("_akte-evidence.json"))
        .count();
    assert_eq!(primaries, 10, "one primary file per document");

    assert_eq!(
        receive(t, &m0507(process)).process.stage,
        ProcessStage::TransferReceived
    );
    // Packaged per case: the files' own ids are not named; every case, sub-file and
    // loose document is, each with its package's id.
    let mut results = Vec::new();
    for (f, tag) in [(&a, "A"), (&b, "B")] {
        results.push(ok(f.c1, Some(&format!("LATh 5-{tag}1"))));
        results.push(ok(f.c1_doc, Some(&format!("LATh 5-{tag}1"))));
        results.push(ok(f.c1_att, Some(&format!("LATh 5-{tag}1"))));
        results.push(ok(f.c2, Some(&format!("LATh 5-{tag}2"))));
        results.push(ok(f.c2_doc, Some(&format!("LATh 5-{tag}2"))));
        results.push(ok(f.sub, Some(&format!("LATh 5-{tag}3"))));
        results.push(ok(f.loose, Some(&format!("LATh 5-{tag}4"))));
    }
    let p = receive(t, &m0506(process, &results)).process;
    assert_eq!(p.stage, ProcessStage::Confirmed);
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        matches!(
            s.status,
            DisposalStatus::InProcess(DisposalProgress::Transferred { .. })
        ),
        "{s:?}"
    );
    assert!(s.explanation.contains("LATh 5-A1"), "{}", s.explanation);
    let s = t.disposal_status(a.c1_att).unwrap();
    assert_eq!(s.archive_id.as_deref(), Some("LATh 5-A1"), "{s:?}");
    assert!(
        s.explanation.ends_with("archive id LATh 5-A1"),
        "{}",
        s.explanation
    );
    let s = t.disposal_status(a.sub_doc).unwrap();
    assert_eq!(
        s.archive_id.as_deref(),
        Some("LATh 5-A3"),
        "the sub-file's id covers it"
    );
    assert!(
        s.explanation.contains("given for sub-file"),
        "{}",
        s.explanation
    );

    let (record, _) = t
        .destroy(REG, &[a.file, b.file], "§ 18 ThürEGovG", "Amtsleitung")
        .unwrap();
    assert_eq!(record.files.len(), 2);
    assert!(record.files[0].grounds.contains("transferred"));
    assert!(!content_text(w._dir.path(), t).contains("only in c2 Bebauungsplan Nord"));
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn a_file_a_with_a_case_and_a_sub_file_v_sends_exactly_its_a_parts() {
    let w = world();
    let t = &w.t;
    let u = unit(t, "1", DisposalDecision::Appraise);
    let a = rich_file(t, u.id, "Neubau Schule");
    let process = offer(t, &[a.file]);
    receive(t, &m0504(process));
    use AppraisalDecision::{Archive as A, Destroy as V};
    receive(
        t,
        &m0502(
            process,
            &[
                (a.file, A),
                (a.c1, A),
                (a.c2, V),
                (a.sub, V),
                (a.sub_case, V),
            ],
        ),
    );
    let p = t.disposal_process(process).unwrap();
    assert_eq!(p.decisions[&a.c2], DisposalDecision::Destroy);
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        s.explanation.contains("parts appraised V") && s.explanation.contains(".2"),
        "{}",
        s.explanation
    );
    assert_eq!(s.parts.len(), 4, "{:#?}", s.parts);
    let s = t.disposal_status(a.c2_doc).unwrap();
    assert_eq!(s.decision, DisposalDecision::Destroy);
    assert!(
        s.explanation.contains("once the archive has confirmed"),
        "{}",
        s.explanation
    );

    let (_, sent) = transfer(t, process);
    let expected: BTreeSet<Uuid> = [a.file, a.loose, a.c1, a.c1_doc, a.c1_att]
        .into_iter()
        .collect();
    assert_eq!(
        ids_in(&sent),
        expected,
        "the A parts with their container, nothing V"
    );
    let file = &sent.objects[0];
    assert_eq!(file.disposal.as_deref(), Some("A"));
    assert!(file
        .children
        .iter()
        .all(|c| c.kind != SgoKind::SubFile && c.id != a.c2));

    // The V parts wait for the archive's confirmation.
    let e = t.destroy(REG, &[a.c2], "§ 18", "Amtsleitung").unwrap_err();
    assert!(
        e.to_string().contains("once the archive has confirmed"),
        "{e}"
    );
    let e = t.destroy(REG, &[a.c1], "§ 18", "Amtsleitung").unwrap_err();
    assert!(e.to_string().contains("appraised A"), "{e}");

    receive(t, &m0507(process));
    // Only cases and documents named; Archivkennung only for the case.
    receive(
        t,
        &m0506(
            process,
            &[
                ok(a.c1, Some("LATh 7/1")),
                ok(a.c1_doc, None),
                ok(a.c1_att, None),
                ok(a.loose, None),
            ],
        ),
    );
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        matches!(
            s.status,
            DisposalStatus::InProcess(DisposalProgress::Transferred { .. })
        ),
        "{s:?}"
    );
    assert!(
        s.explanation.contains("appraised V and not yet destroyed"),
        "{}",
        s.explanation
    );
    assert_eq!(t.disposal_status(a.loose).unwrap().archive_id, None);
    let s = t.disposal_status(a.c2).unwrap();
    assert_eq!(
        s.status,
        DisposalStatus::Due {
            decision: DisposalDecision::Destroy
        },
        "{}",
        s.explanation
    );

    // A hold on the V case stops it, and only it.
    let hold = t
        .place_hold(ARCH, a.c2_doc, "Akteneinsicht", "AE 3/26")
        .unwrap();
    let e = t.destroy(REG, &[a.c2], "§ 18", "Amtsleitung").unwrap_err();
    assert!(e.to_string().contains("held by hold"), "{e}");
    let e = t
        .destroy(REG, &[a.c2, a.file], "§ 18", "Amtsleitung")
        .unwrap_err();
    assert!(e.to_string().contains("held"), "{e}");
    t.release_hold(ARCH, hold.id, "erledigt").unwrap();
    let e = t
        .destroy(REG, &[a.c2, a.file], "§ 18", "Amtsleitung")
        .unwrap_err();
    assert!(e.to_string().contains("is inside"), "{e}");

    let (record, _) = t
        .destroy(
            REG,
            &[a.c2, a.sub],
            "§ 18 ThürEGovG, Bewertung V",
            "Amtsleitung",
        )
        .unwrap();
    assert_eq!(record.files.len(), 2);
    assert_eq!(record.files[0].within, Some(a.file));
    assert!(
        record.files[0].grounds.contains("appraised V"),
        "{}",
        record.files[0].grounds
    );
    assert!(
        record.files[0].reference.starts_with("case "),
        "{}",
        record.files[0].reference
    );
    assert_eq!(
        record.files[1].objects.len(),
        3,
        "the sub-file, its case and document"
    );
    let (again, _) = t.destruction_record(record.id).unwrap();
    assert_eq!(again, record);
    assert!(matches!(
        t.get(a.c2_doc),
        Err(RecordsError::Destroyed { .. })
    ));
    assert!(
        t.get(a.c1_doc).is_ok(),
        "the A parts stay until the file goes"
    );
    let text = content_text(w._dir.path(), t);
    assert!(!text.contains("only in c2 Neubau Schule") && !text.contains("only in sub Neubau"));
    assert!(text.contains("antrag Neubau Schule"));
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        !s.explanation.contains("not yet destroyed"),
        "{}",
        s.explanation
    );
    assert!(
        s.parts
            .iter()
            .any(|p| p.object == a.c2 && p.explanation.contains("destroyed on")),
        "{:#?}",
        s.parts
    );
    // A new case gets a new number, after a rebuild too.
    assert_rebuild_equal_and_verify_clean(&w);

    let (record, _) = t.destroy(REG, &[a.file], "§ 18", "Amtsleitung").unwrap();
    assert!(record.files[0].grounds.contains("transferred"));
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn a_file_v_is_destroyed_not_offered_and_one_appraised_v_is_not_sent() {
    let w = world();
    let t = &w.t;
    let v = unit(t, "3", DisposalDecision::Destroy);
    let b = unit(t, "4", DisposalDecision::Appraise);
    let mass = rich_file(t, v.id, "Massenakte");
    let size = t.tenant().size().unwrap();
    let e = t
        .offer(REG, &[mass.file], Cursor::new(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(e, RecordsError::FailedPrecondition { .. })
            && e.to_string().contains("decision V"),
        "{e}"
    );
    assert_eq!(t.tenant().size().unwrap(), size);
    t.destroy(REG, &[mass.file], "§ 18", "Amtsleitung").unwrap();

    let keep = rich_file(t, b.id, "Satzung");
    let toss = rich_file(t, b.id, "Carport");
    let process = offer(t, &[keep.file, toss.file]);
    use AppraisalDecision::{Archive as A, Destroy as V};
    // The archive appraises only the files; the parts inherit.
    receive(t, &m0502(process, &[(keep.file, A), (toss.file, V)]));
    let (_, sent) = transfer(t, process);
    assert!(ids_in(&sent).contains(&keep.c2_doc));
    assert!(!ids_in(&sent).contains(&toss.file));
    assert!(t
        .disposal_status(toss.c1)
        .unwrap()
        .explanation
        .contains("appraised V"));
    // A file appraised V as a whole: destroyable now, whole or in parts.
    t.destroy(REG, &[toss.c2], "§ 18", "Amtsleitung").unwrap();
    t.destroy(REG, &[toss.file], "§ 18", "Amtsleitung").unwrap();
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn a_failed_import_keeps_the_file_and_names_the_object_until_a_later_0506_settles_it() {
    let w = world();
    let t = &w.t;
    let u = unit(t, "1", DisposalDecision::Appraise);
    let a = rich_file(t, u.id, "Fördermittel");
    let b = rich_file(t, u.id, "Zuwendung");
    let process = offer(t, &[a.file, b.file]);
    use AppraisalDecision::Archive as A;
    receive(t, &m0502(process, &[(a.file, A), (b.file, A)]));
    transfer(t, process);
    // No 0507: a 0506 may come straight away. One document of a failed; b complete.
    let results = vec![
        ok(a.c1, None),
        failed(a.c2_doc, "Primärdatei nicht lesbar"),
        ok(a.c2, None),
        ok(a.sub, None),
        ok(a.loose, None),
        ok(b.file, Some("LATh 9")),
    ];
    let p = receive(t, &m0506(process, &results)).process;
    assert_eq!(p.stage, ProcessStage::Confirmed);
    assert!(
        p.confirmations[&a.file].starts_with("error:"),
        "{:?}",
        p.confirmations
    );
    assert_eq!(p.confirmations[&b.file], "LATh 9");
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        s.explanation.contains("not imported by the archive")
            && s.explanation.contains("Primärdatei nicht lesbar")
            && s.explanation.contains("Beschwerde"),
        "{}",
        s.explanation
    );
    let e = t
        .destroy(REG, &[a.file], "§ 18", "Amtsleitung")
        .unwrap_err();
    assert!(e.to_string().contains("did not confirm its import"), "{e}");
    t.destroy(REG, &[b.file], "§ 18", "Amtsleitung").unwrap();

    // A later 0506 may settle the open file; one about the settled file is refused.
    let e = refused(t, &m0506(process, &[ok(b.c1, None)]));
    assert!(e.to_string().contains("does not wait"), "{e}");
    receive(t, &m0506(process, &[ok(a.c2_doc, Some("LATh 9/2"))]));
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        matches!(
            s.status,
            DisposalStatus::InProcess(DisposalProgress::Transferred { .. })
        ),
        "{}",
        s.explanation
    );
    let e = refused(t, &m0506(process, &[ok(a.c2_doc, None)]));
    assert!(
        matches!(e, RecordsError::ProcessState { .. }) && e.to_string().contains("settled"),
        "{e}"
    );
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn a_0506_that_leaves_an_object_out_keeps_its_file_and_it_may_be_offered_again() {
    let w = world();
    let t = &w.t;
    let u = unit(t, "1", DisposalDecision::Appraise);
    let a = rich_file(t, u.id, "Straßenbau");
    let process = offer(t, &[a.file]);
    receive(t, &m0502(process, &[(a.file, AppraisalDecision::Archive)]));
    transfer(t, process);
    receive(t, &m0507(process));
    // No Archivkennung at all, and the loose document left out.
    receive(
        t,
        &m0506(process, &[ok(a.c1, None), ok(a.c2, None), ok(a.sub, None)]),
    );
    let s = t.disposal_status(a.file).unwrap();
    assert!(
        s.explanation.contains("does not name it"),
        "{}",
        s.explanation
    );
    assert!(s.explanation.contains("Deckblatt"), "{}", s.explanation);
    assert!(t.destroy(REG, &[a.file], "§ 18", "Amtsleitung").is_err());
    // Offered again in a new process.
    let again = offer(t, &[a.file]);
    assert_ne!(again, process);
    assert!(t
        .disposal_status(a.file)
        .unwrap()
        .explanation
        .contains(&again.to_string()));
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn two_stage_transfer_and_what_blocks_disposal() {
    let w = world();
    let t = &w.t;
    let archive = unit(t, "2", DisposalDecision::Archive);
    let destroy = unit(t, "3", DisposalDecision::Destroy);
    let a = rich_file(t, archive.id, "Satzung");
    let held = rich_file(t, archive.id, "Streitsache");
    let v = rich_file(t, destroy.id, "Massenakte");
    let open = t
        .create_file(
            REG,
            NewFile {
                plan_unit: archive.id,
                subject: "offen".into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    t.place_hold(REG, held.c1_doc, "Klage", "VG 1 K 1/26")
        .unwrap();
    let size = t.tenant().size().unwrap();
    for (id, why) in [
        (held.file, "held"),
        (v.file, "decision A"),
        (open.id, "not closed"),
    ] {
        let e = t
            .transfer_two_stage(REG, &[id], Cursor::new(Vec::new()))
            .unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    assert!(t
        .offer(REG, &[open.id], Cursor::new(Vec::new()))
        .unwrap_err()
        .to_string()
        .contains("not closed"));
    assert!(t
        .offer(REG, &[held.file], Cursor::new(Vec::new()))
        .unwrap_err()
        .to_string()
        .contains("held"));
    assert_eq!(t.tenant().size().unwrap(), size);

    let (process, zip) = t
        .transfer_two_stage(REG, &[a.file], Cursor::new(Vec::new()))
        .unwrap();
    let zip = zip.into_inner();
    assert_eq!(
        xdomea::transfer_zip_name(process),
        format!("{process}_Aussonderung.Aussonderung.0503.zip")
    );
    let sent = xdomea::read_0503(&message_of(&zip, process, MessageType::Transfer)).unwrap();
    assert_eq!(
        ids_in(&sent).len(),
        10,
        "a two-stage transfer sends the whole file"
    );
    // A two-stage process can be re-sent too, and keeps its files and decisions.
    let before = t.disposal_process(process).unwrap();
    let again = t
        .resend_transfer(REG, process, Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    assert_eq!(unzip(&again).len(), unzip(&zip).len());
    let after = t.disposal_process(process).unwrap();
    assert_eq!(
        (&after.files, &after.decisions, after.stage, &after.sent),
        (&before.files, &before.decisions, before.stage, &before.sent)
    );
    let e = refused(t, &m0502(process, &[(a.file, AppraisalDecision::Archive)]));
    assert!(e.to_string().contains("two-stage"), "{e}");
    receive(t, &m0506(process, &[ok(a.file, Some("LATh 2"))]));
    assert_eq!(
        t.disposal_status(a.c2_doc).unwrap().archive_id.as_deref(),
        Some("LATh 2")
    );
    assert_rebuild_equal_and_verify_clean(&w);
}

#[test]
fn bad_archive_messages_are_refused_naming_element_and_rule_and_change_nothing() {
    let w = world();
    let t = &w.t;
    let u = unit(t, "1", DisposalDecision::Appraise);
    let a = rich_file(t, u.id, "Kita Nord");
    let b = rich_file(t, u.id, "Kita Süd");
    let process = offer(t, &[a.file, b.file]);
    use AppraisalDecision::{Archive as A, Destroy as V};

    // 0502: not offered, a document, contradicting, a file left open, another process,
    // a 0504 where a 0502 belongs, a message the agency writes.
    let stranger = Uuid::new_v4();
    let e = refused(
        t,
        &m0502(process, &[(a.file, A), (b.file, A), (stranger, A)]),
    );
    assert_eq!(
        rule_of(&e),
        (
            "not-offered",
            "/Aussonderung.Bewertungsverzeichnis.0502/BewertetesObjekt[3]/ID"
        )
    );
    assert!(e.to_string().contains(&stranger.to_string()), "{e}");
    let e = refused(
        t,
        &m0502(process, &[(a.file, A), (b.file, A), (a.c1_doc, V)]),
    );
    assert_eq!(rule_of(&e).0, "not-offered");
    assert!(e.to_string().contains("is a document"), "{e}");
    let e = refused(t, &m0502(process, &[(a.file, V), (a.c1, A), (b.file, A)]));
    assert_eq!(
        rule_of(&e),
        (
            "contradicting-decisions",
            "/Aussonderung.Bewertungsverzeichnis.0502/BewertetesObjekt[2]/Aussonderungsart"
        )
    );
    let e = refused(t, &m0502(process, &[(a.file, A), (b.c1, V)]));
    assert_eq!(rule_of(&e).0, "not-appraised");
    assert!(e.to_string().contains(&b.reference), "{e}");
    let other = Uuid::new_v4();
    let e = refused(t, &m0502(other, &[(a.file, A), (b.file, A)]));
    assert!(matches!(e, RecordsError::NotFound { .. }), "{e}");
    // A ZIP whose entry names another process than the message inside.
    let mismatched = xdomea::write_message_zip(
        Cursor::new(Vec::new()),
        &archive_header(other),
        MessageType::Appraisal,
        &xdomea::write_0502(
            &archive_header(process),
            &[Appraisal {
                id: a.file,
                decision: A,
            }],
        )
        .unwrap(),
    )
    .unwrap()
    .into_inner();
    assert_eq!(rule_of(&refused(t, &mismatched)).0, "process-id");
    // The 0501 itself is not an archive message.
    let (_, offer_zip) = {
        let u2 = unit(t, "9", DisposalDecision::Archive);
        let c = rich_file(t, u2.id, "Dritte");
        t.offer(REG, &[c.file], Cursor::new(Vec::new())).unwrap()
    };
    let e = refused(t, &offer_zip.into_inner());
    assert!(
        e.to_string().contains("holds no xdomea message") || e.to_string().contains("0501"),
        "{e}"
    );
    // An XML beyond the limit: the real reason, with the limit.
    let big = {
        let mut xml = m0506_xml(process, &[ok(a.file, None)]);
        let at = xml.len() - 2;
        xml.splice(
            at..at,
            std::iter::repeat_n(b' ', (MAX_MESSAGE_XML as usize) + 1),
        );
        zipped_raw(process, MessageType::ImportConfirmation, &xml)
    };
    let e = refused(t, &big);
    assert!(
        e.to_string()
            .contains("more than the limit of 16777216 bytes"),
        "{e}"
    );
    // A Kopf without Erstellungszeitpunkt: rule and element named.
    let xml = String::from_utf8(xdomea::write_0504(&archive_header(process)).unwrap()).unwrap();
    let start = xml.find("<xdomea:Erstellungszeitpunkt>").unwrap();
    let end = xml.find("</xdomea:Erstellungszeitpunkt>").unwrap() + 30;
    let broken = format!("{}{}", &xml[..start], &xml[end..]);
    let e = refused(t, broken.as_bytes());
    assert_eq!(
        rule_of(&e),
        (
            "required-element",
            "/Aussonderung.AnbietungEmpfangBestaetigen.0504/Kopf/Erstellungszeitpunkt"
        )
    );

    // Wrong stage: a 0506 before the transfer is a failed precondition, saying what fits.
    let e = refused(t, &m0506(process, &[ok(a.file, None)]));
    assert!(matches!(e, RecordsError::ProcessState { .. }), "{e:?}");
    assert!(!e.to_string().contains("Some(") && !e.to_string().contains("TransferSent"));

    receive(t, &m0502(process, &[(a.file, A), (a.c2, V), (b.file, A)]));
    transfer(t, process);
    let size = t.tenant().size().unwrap();
    let e = t
        .transfer(REG, process, Cursor::new(Vec::new()))
        .unwrap_err();
    assert!(matches!(e, RecordsError::ProcessState { .. }), "{e:?}");
    assert!(e.to_string().contains("--resend"), "{e}");
    assert_eq!(t.tenant().size().unwrap(), size);

    // 0506: unknown ids, an object appraised V, duplicates, another process.
    let e = refused(t, &m0506(process, &[ok(a.file, None), ok(stranger, None)]));
    assert_eq!(
        rule_of(&e),
        (
            "unknown-object",
            "/Aussonderung.AussonderungImportBestaetigen.0506/AusgesondertesSGO[2]/IDSGO"
        )
    );
    assert!(e.to_string().contains("no object of this agency"), "{e}");
    let e = refused(t, &m0506(process, &[ok(a.c2, None)]));
    assert!(
        e.to_string().contains("appraised V and not transferred"),
        "{e}"
    );
    let dup = m0506_xml(process, &[ok(a.file, None), ok(b.file, None)]);
    let text = String::from_utf8(dup)
        .unwrap()
        .replace(&b.file.to_string(), &a.file.to_string());
    let e = refused(t, text.as_bytes());
    assert_eq!(rule_of(&e).0, "unique-ids");
    let e = refused(t, &m0506(other, &[ok(a.file, None)]));
    assert!(matches!(e, RecordsError::NotFound { .. }), "{e}");
    // The same 0506 without errors is read.
    receive(t, &m0506(process, &[ok(a.file, None), ok(b.file, None)]));
    assert_rebuild_equal_and_verify_clean(&w);
}

/// A ZIP with one entry as an archive would send it, without validating the XML.
fn zipped_raw(process: Uuid, message: MessageType, xml: &[u8]) -> Vec<u8> {
    xdomea::write_message_zip(
        Cursor::new(Vec::new()),
        &archive_header(process),
        message,
        xml,
    )
    .unwrap()
    .into_inner()
}

#[test]
fn messages_need_the_agency_identity_and_the_settings_are_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(akte_tests::backend(dir.path()), StoreOptions::default()).unwrap();
    let t = records.create_tenant("amt").unwrap();
    let u = unit(&t, "1", DisposalDecision::Archive);
    let a = rich_file(&t, u.id, "Ohne Kennung");
    let size = t.tenant().size().unwrap();
    let e = t
        .offer(REG, &[a.file], Cursor::new(Vec::new()))
        .unwrap_err();
    assert!(
        matches!(&e, RecordsError::NotConfigured { setting, .. } if setting == "agency.key"),
        "{e}"
    );
    assert!(e.to_string().contains("Behördenschlüssel"), "{e}");
    assert!(t
        .transfer_two_stage(REG, &[a.file], Cursor::new(Vec::new()))
        .is_err());
    assert_eq!(t.tenant().size().unwrap(), size, "nothing recorded");
    let mut settings = DisposalSettings::default();
    settings.agency.key = Some(ListCode {
        code: "16051000".into(),
        ..ListCode::default()
    });
    t.set_disposal_settings("admin:x", &settings).unwrap();
    let e = t
        .offer(REG, &[a.file], Cursor::new(Vec::new()))
        .unwrap_err();
    assert!(e.to_string().contains("agency.institution"), "{e}");
    settings.agency.institution = "Stadt Apolda".into();
    settings.archive.institution = "Kreisarchiv".into();
    settings.agency.prefix = Some(ListCode {
        code: " ags:".into(),
        ..ListCode::default()
    });
    let e = t.set_disposal_settings("admin:x", &settings).unwrap_err();
    assert!(e.to_string().contains("agency.prefix.code"), "{e}");
    settings.agency.prefix = Some(ListCode {
        code: "ags:".into(),
        name: "Amtlicher Gemeindeschlüssel".into(),
        list_uri: "urn:de:dvdv:praefixe".into(),
        list_version: "1".into(),
    });
    assert_eq!(
        t.set_disposal_settings("admin:x", &settings).unwrap(),
        settings
    );
    let (process, zip) = t.offer(REG, &[a.file], Cursor::new(Vec::new())).unwrap();
    let xml =
        String::from_utf8(message_of(&zip.into_inner(), process, MessageType::Offer)).unwrap();
    assert!(
        xml.contains(r#"<xdomea:Praefix listURI="urn:de:dvdv:praefixe" listVersionID="1">"#),
        "{xml}"
    );
    t.tenant().rebuild_index().unwrap();
    assert_eq!(t.disposal_settings().unwrap(), settings);
}
