//! The xdomea disposal flow end to end: four-stage (0501 → 0504 → 0502 → 0505 → 0503 →
//! 0507 → 0506 → destruction) and two-stage (0503 directly), with every message akte writes
//! validated by xmllint against the official 3.1.0 schema, and archive messages that must be
//! rejected without changing anything.

use std::io::{Cursor, Read};
use std::process::Command;

use akte_core::records::*;
use akte_core::store::StoreOptions;
use akte_core::verify::{verify_store, VerifyOptions};
use akte_core::xdomea::{self, AppraisalDecision, ImportResult, MessageHeader, MessageType, Party};
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

fn parties() -> Parties {
    Parties {
        agency: Party {
            agency_code: Some("STADT-ERFURT".into()),
            agency_name: Some("Stadtverwaltung Erfurt".into()),
            ..Party::default()
        },
        archive: Party {
            agency_code: Some("STAAT-ARCHIV".into()),
            agency_name: Some("Landesarchiv Thüringen".into()),
            ..Party::default()
        },
    }
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

/// A message from the archive for `process`.
fn archive_header(process: Uuid) -> MessageHeader {
    let p = parties();
    MessageHeader {
        process_id: process,
        created: chrono::Utc::now().fixed_offset(),
        sender: p.archive,
        receiver: p.agency,
        system: None,
        note: None,
        receipt_requested: true,
        archive_id_requested: false,
    }
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

/// A closed, due file with a case, a document with two renditions and an attachment.
fn due_file(t: &TenantRecords, unit: Uuid, subject: &str) -> File {
    let f = t
        .create_file(
            REG,
            NewFile {
                plan_unit: unit,
                subject: subject.into(),
                ..NewFile::default()
            },
            None,
        )
        .unwrap();
    let c = t
        .create_case(
            REG,
            NewCase {
                parent: f.id,
                subject: "Antrag".into(),
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
                subject: "Bauantrag".into(),
                sender: "Familie Meier".into(),
                letter_date: Some(d(2009, 5, 3)),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let pdf = t
        .put_content(&format!("%PDF-1.7 {subject}").into_bytes()[..])
        .unwrap();
    let docx = t
        .put_content(&format!("DOCX {subject}").into_bytes()[..])
        .unwrap();
    t.add_version(
        REG,
        doc.id,
        NewVersion {
            comment: String::new(),
            renditions: vec![
                NewRendition {
                    file_name: "antrag.pdf".into(),
                    media_type: "application/pdf".into(),
                    sha256: pdf.digest,
                    size: pdf.size,
                },
                NewRendition {
                    file_name: "antrag.docx".into(),
                    media_type:
                        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                            .into(),
                    sha256: docx.digest,
                    size: docx.size,
                },
            ],
        },
        None,
    )
    .unwrap();
    let att = t
        .create_document(
            REG,
            NewDocument {
                parent: doc.id,
                subject: "Lageplan".into(),
                ..NewDocument::default()
            },
            None,
        )
        .unwrap();
    let plan = t.put_content(&b"Lageplan"[..]).unwrap();
    t.add_version(
        REG,
        att.id,
        NewVersion {
            comment: String::new(),
            renditions: vec![NewRendition {
                file_name: "antrag.pdf".into(),
                media_type: "application/pdf".into(),
                sha256: plan.digest,
                size: plan.size,
            }],
        },
        None,
    )
    .unwrap();
    t.close(REG, f.id, None, Some(d(2010, 6, 30))).unwrap();
    t.file(f.id).unwrap()
}

#[test]
fn four_stage_flow_end_to_end() {
    let w = world();
    let t = &w.t;
    let appraise = unit(t, "1", DisposalDecision::Appraise);
    let keep = due_file(t, appraise.id, "Bebauungsplan Nord");
    let toss = due_file(t, appraise.id, "Carport Süd");
    let p = parties();

    // 0501: offer list, metadata only.
    let (process, zip) = t
        .offer(REG, &[keep.id, toss.id], &p, Cursor::new(Vec::new()))
        .unwrap();
    let zip = zip.into_inner();
    let entries = unzip(&zip);
    assert_eq!(entries.len(), 1, "an offer carries no primary files");
    assert_eq!(
        entries[0].0,
        format!("{process}_Aussonderung.Anbieteverzeichnis.0501.xml")
    );
    assert_valid(&entries[0].1, "0501");
    let xml = String::from_utf8(entries[0].1.clone()).unwrap();
    assert!(xml.contains(&keep.id.to_string()) && xml.contains(&keep.reference));
    assert_eq!(
        xdomea::offer_zip_name(process),
        format!("{process}_Aussonderung.Anbieteverzeichnis.0501.zip")
    );
    let s = t.disposal_status(keep.id).unwrap();
    assert!(
        s.explanation.contains("offered to the archive"),
        "{}",
        s.explanation
    );
    // Offering again is refused: the files are in a process now.
    assert!(t
        .offer(REG, &[keep.id], &p, Cursor::new(Vec::new()))
        .is_err());

    // 0504 receipt.
    let receipt = xdomea::write_0504(&archive_header(process)).unwrap();
    assert_eq!(
        t.receive_offer_receipt(ARCH, &receipt).unwrap().stage,
        ProcessStage::OfferReceived
    );

    // Bad 0502s are rejected and change nothing.
    let size = t.tenant().size().unwrap();
    let case_of_keep = t
        .list_children(keep.id, &PageRequest::first(10))
        .unwrap()
        .items[0]
        .id();
    let stranger = Uuid::new_v4();
    let bad: Vec<Vec<u8>> = vec![
        b"<not xml".to_vec(),
        xdomea::write_0502(
            &archive_header(process),
            &[xdomea::Appraisal {
                id: stranger,
                decision: AppraisalDecision::Archive,
            }],
        )
        .unwrap(),
        xdomea::write_0502(
            &archive_header(Uuid::new_v4()),
            &[xdomea::Appraisal {
                id: keep.id,
                decision: AppraisalDecision::Archive,
            }],
        )
        .unwrap(),
        xdomea::write_0502(
            &archive_header(process),
            &[xdomea::Appraisal {
                id: keep.id,
                decision: AppraisalDecision::Archive,
            }],
        )
        .unwrap(), // toss missing
        receipt.clone(), // a 0504 where a 0502 belongs
    ];
    for (i, m) in bad.iter().enumerate() {
        let e = t.receive_appraisal(ARCH, m, &p).unwrap_err();
        println!("rejected 0502 #{i}: {e}");
    }
    assert_eq!(
        t.tenant().size().unwrap(),
        size,
        "rejected messages recorded nothing"
    );

    // 0502: the archive wants the first file (by one of its cases) and not the second.
    let appraisal = xdomea::write_0502(
        &archive_header(process),
        &[
            xdomea::Appraisal {
                id: case_of_keep,
                decision: AppraisalDecision::Archive,
            },
            xdomea::Appraisal {
                id: toss.id,
                decision: AppraisalDecision::Destroy,
            },
        ],
    )
    .unwrap();
    let (proc_after, receipt_0505) = t.receive_appraisal(ARCH, &appraisal, &p).unwrap();
    assert_valid(&receipt_0505, "0505");
    assert_eq!(proc_after.decisions[&keep.id], DisposalDecision::Archive);
    assert_eq!(proc_after.decisions[&toss.id], DisposalDecision::Destroy);
    assert!(t
        .disposal_status(toss.id)
        .unwrap()
        .explanation
        .contains("appraised V"));

    // 0503: the A file with every version and rendition, UUID-prefixed unique names.
    let zip = t
        .transfer(REG, process, &p, Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let entries = unzip(&zip);
    let xml_entry = entries
        .iter()
        .find(|(n, _)| n.ends_with("Aussonderung.Aussonderung.0503.xml"))
        .unwrap();
    assert_valid(&xml_entry.1, "0503");
    let primaries: Vec<&(String, Vec<u8>)> = entries
        .iter()
        .filter(|(n, _)| !n.ends_with(".xml") && !n.ends_with("_akte-evidence.json"))
        .collect();
    assert_eq!(
        primaries.len(),
        3,
        "two renditions of the document, one of the attachment"
    );
    let names: std::collections::BTreeSet<&str> =
        primaries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        3,
        "names are unique even where original names repeat"
    );
    for (name, bytes) in &primaries {
        let (uuid, original) = name.split_once('_').unwrap();
        Uuid::parse_str(uuid).unwrap();
        assert!(original.starts_with("antrag."), "{name}");
        assert!(
            xml_entry
                .1
                .windows(name.len())
                .any(|w| w == name.as_bytes()),
            "{name} is referenced in the XML"
        );
        assert!(!bytes.is_empty());
    }
    assert!(primaries
        .iter()
        .any(|(_, b)| b == b"%PDF-1.7 Bebauungsplan Nord"));

    // The download was lost: a plain second transfer is refused, a re-send writes the
    // same files (same names, same bytes) again and is recorded; the stage stays.
    let size = t.tenant().size().unwrap();
    assert!(t
        .transfer(REG, process, &p, Cursor::new(Vec::new()))
        .is_err());
    assert_eq!(
        t.tenant().size().unwrap(),
        size,
        "a refused transfer records nothing"
    );
    let again = t
        .resend_transfer(REG, process, &p, Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let files_of = |entries: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
        entries
            .iter()
            .filter(|(n, _)| !n.ends_with(".xml") && !n.ends_with("_akte-evidence.json"))
            .cloned()
            .collect()
    };
    let entries_again = unzip(&again);
    assert_eq!(files_of(&entries_again), files_of(&entries));
    let xml_again = entries_again
        .iter()
        .find(|(n, _)| n.ends_with("Aussonderung.Aussonderung.0503.xml"))
        .unwrap();
    assert_valid(&xml_again.1, "re-sent 0503");
    assert_eq!(
        t.tenant().size().unwrap(),
        size + 1,
        "the re-send is recorded"
    );
    assert_eq!(
        t.disposal_process(process).unwrap().stage,
        ProcessStage::TransferSent
    );

    // 0507 and 0506.
    let r0507 = xdomea::write_0507(&archive_header(process)).unwrap();
    assert_eq!(
        t.receive_transfer_receipt(ARCH, &r0507).unwrap().stage,
        ProcessStage::TransferReceived
    );
    assert!(
        t.resend_transfer(REG, process, &p, Cursor::new(Vec::new()))
            .is_err(),
        "once the archive confirmed receipt there is nothing to re-send"
    );
    let wrong = xdomea::write_0506(
        &archive_header(process),
        &[ImportResult {
            id: toss.id,
            success: true,
            archive_id: Some("X".into()),
            error_messages: vec![],
            error_codes: vec![],
        }],
    )
    .unwrap();
    assert!(
        t.receive_import_confirmation(ARCH, &wrong).is_err(),
        "the V file was never transferred"
    );
    let ok = xdomea::write_0506(
        &archive_header(process),
        &[ImportResult {
            id: keep.id,
            success: true,
            archive_id: Some("LATh 5-12/2026".into()),
            error_messages: vec![],
            error_codes: vec![],
        }],
    )
    .unwrap();
    let done = t.receive_import_confirmation(ARCH, &ok).unwrap();
    assert_eq!(done.stage, ProcessStage::Confirmed);
    let s = t.disposal_status(keep.id).unwrap();
    assert!(
        s.explanation.contains("archive id LATh 5-12/2026"),
        "{}",
        s.explanation
    );

    // Destruction: the transferred file and the file appraised V.
    let (record, _) = t
        .destroy(
            REG,
            &[keep.id, toss.id],
            "§ 18 ThürEGovG; Übernahme bestätigt bzw. Bewertung V",
            "Amtsleitung",
        )
        .unwrap();
    assert!(
        record.files[0].grounds.contains("transferred"),
        "{}",
        record.files[0].grounds
    );
    assert!(
        record.files[1].grounds.contains("decision V"),
        "{}",
        record.files[1].grounds
    );
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    // The process (derived state) survives a rebuild.
    let before = t.disposal_process(process).unwrap();
    t.tenant().rebuild_index().unwrap();
    assert_eq!(t.disposal_process(process).unwrap(), before);
}

#[test]
fn two_stage_transfer_and_what_blocks_disposal() {
    let w = world();
    let t = &w.t;
    let archive = unit(t, "2", DisposalDecision::Archive);
    let destroy = unit(t, "3", DisposalDecision::Destroy);
    let a = due_file(t, archive.id, "Satzung");
    let held = due_file(t, archive.id, "Streitsache");
    let v = due_file(t, destroy.id, "Massenakte");
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
    t.place_hold(REG, held.id, "Klage", "VG 1 K 1/26").unwrap();
    let p = parties();
    let size = t.tenant().size().unwrap();
    for (id, why) in [
        (held.id, "held"),
        (v.id, "decision A"),
        (open.id, "not closed"),
    ] {
        let e = t
            .transfer_two_stage(REG, &[id], &p, Cursor::new(Vec::new()))
            .unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    assert!(t
        .offer(REG, &[open.id], &p, Cursor::new(Vec::new()))
        .unwrap_err()
        .to_string()
        .contains("not closed"));
    assert!(t
        .offer(REG, &[held.id], &p, Cursor::new(Vec::new()))
        .unwrap_err()
        .to_string()
        .contains("held"));
    assert_eq!(t.tenant().size().unwrap(), size);

    let (process, zip) = t
        .transfer_two_stage(REG, &[a.id], &p, Cursor::new(Vec::new()))
        .unwrap();
    let entries = unzip(&zip.into_inner());
    assert_valid(
        &entries.iter().find(|(n, _)| n.ends_with(".xml")).unwrap().1,
        "two-stage 0503",
    );
    assert_eq!(
        xdomea::message_zip_name(process, MessageType::Transfer),
        format!("{process}_Aussonderung.Aussonderung.0503.zip")
    );
    // A two-stage process can be re-sent too, and keeps its files and decisions.
    let before = t.disposal_process(process).unwrap();
    let again = unzip(
        &t.resend_transfer(REG, process, &p, Cursor::new(Vec::new()))
            .unwrap()
            .into_inner(),
    );
    assert_eq!(again.len(), entries.len());
    let after = t.disposal_process(process).unwrap();
    assert_eq!(
        (after.two_stage, &after.files, &after.decisions, after.stage),
        (
            before.two_stage,
            &before.files,
            &before.decisions,
            before.stage
        )
    );
    let failed = xdomea::write_0506(
        &archive_header(process),
        &[ImportResult {
            id: a.id,
            success: false,
            archive_id: None,
            error_messages: vec!["Datei beschädigt".into()],
            error_codes: vec![],
        }],
    )
    .unwrap();
    t.receive_import_confirmation(ARCH, &failed).unwrap();
    let s = t.disposal_status(a.id).unwrap();
    assert!(
        s.explanation.contains("appraised A"),
        "a failed import leaves the file for another transfer: {}",
        s.explanation
    );
    assert!(
        t.destroy(REG, &[a.id], "x", "y").is_err(),
        "not destroyable without a confirmed transfer"
    );
    let report = verify_store(w.records.store(), VerifyOptions::default()).unwrap();
    assert!(report.is_clean());
}
