//! Tests of the xdomea module. Every message written here is validated against the official
//! 3.1.0 XSD with `xmllint` (package libxml2-utils); without xmllint these tests fail.

use std::collections::HashSet;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, FixedOffset, NaiveDate};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::*;
use akte_verify::digest::Digest;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/xdomea");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata");

fn schema_3_1_0() -> PathBuf {
    Path::new(SHARED).join("schemas/3.1.0/xdomea.xsd")
}

fn schema_3_0_0() -> PathBuf {
    Path::new(SHARED).join("schemas/3.0.0/xdomea.xsd")
}

/// Validates each `(name, xml)` against `schema` with one xmllint run; panics with
/// xmllint's output if any fails, or if xmllint is missing.
fn validate_with(schema: &Path, docs: &[(&str, &[u8])]) {
    assert!(
        schema.is_file(),
        "xdomea schema not found at {} (shared/ must sit beside the repository)",
        schema.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (name, xml) in docs {
        let p = dir.path().join(name);
        std::fs::write(&p, xml).expect("write temp file");
        paths.push(p);
    }
    let output = match Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema)
        .args(&paths)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run xmllint ({e}): the xdomea tests validate every message against the \
             official XSD and need it; install it with `apt-get install -y libxml2-utils`"
        ),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "XSD validation against {} failed:\n{stderr}",
        schema.display()
    );
    for (name, _) in docs {
        assert!(
            stderr.contains(&format!("{name} validates")),
            "xmllint did not report {name} as valid:\n{stderr}"
        );
    }
}

pub(super) fn validate(docs: &[(&str, &[u8])]) {
    validate_with(&schema_3_1_0(), docs);
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(SHARED).join("patterns/3.0.0").join(name)).expect("xdomea sample")
}

pub(super) fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("test UUID")
}

pub(super) const PROCESS: &str = "5d4c3b2a-1f0e-4d9c-8b7a-695847362514";
pub(super) const FILE_A: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c01";
pub(super) const CASE_A1: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02";
pub(super) const SUBCASE_A1: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c03";
pub(super) const DOC_A1: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c11";
pub(super) const DOC_A2: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c12";
pub(super) const ATTACH_A2: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c13";
pub(super) const DOC_A3: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c14";
pub(super) const FILE_B: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c21";
pub(super) const SUBFILE_B: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c31";
pub(super) const DOC_B1: &str = "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c32";

fn time(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("test time")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

fn agency() -> Party {
    Party {
        agency_code: Some("16051000".into()),
        agency_name: Some("Stadtverwaltung Erfurt".into()),
        institution: Some("Stadtverwaltung Erfurt".into()),
        institution_short: Some("SV Erfurt".into()),
        org_unit: Some("Haupt- und Personalamt, Registratur".into()),
        person: Some(PersonName {
            title: None,
            given_name: Some("Jörg".into()),
            family_name: Some("Schmidt".into()),
        }),
        ..Party::default()
    }
}

fn archive() -> Party {
    Party {
        address_lines: vec!["Marstallstraße 2".into(), "99423 Weimar".into()],
        agency_list_uri: Some("urn:de:example:behoerden".into()),
        agency_list_version: Some("1".into()),
        prefix_code: Some("psw".into()),
        prefix_name: Some("Präfix".into()),
        ..Party::agency("LATh", "Landesarchiv Thüringen")
    }
}

pub(super) fn header() -> MessageHeader {
    MessageHeader {
        process_id: id(PROCESS),
        created: time("2026-03-01T10:15:30+01:00"),
        sender: agency(),
        receiver: archive(),
        system: Some(SendingSystem::akte(Some("kommunal-cloud-1".into()))),
        note: Some("Anbietung 2026 <Teil 1> & Rest".into()),
        receipt_requested: true,
        archive_id_requested: true,
    }
}

/// The archive's answer header: sender and receiver swapped, flags as read from messages
/// without them.
pub(super) fn archive_header() -> MessageHeader {
    MessageHeader {
        sender: archive(),
        receiver: agency(),
        system: None,
        note: None,
        receipt_requested: false,
        archive_id_requested: false,
        created: time("2026-03-02T09:30:00Z"),
        ..header()
    }
}

/// Deterministic content of a small primary file.
pub(super) fn content(rendition: Uuid) -> Vec<u8> {
    let mut v = format!("Inhalt von {rendition}\n").into_bytes();
    v.extend((0..(rendition.as_bytes()[15] as usize * 37)).map(|i| (i % 251) as u8));
    v
}

fn rendition(uuid: &str, file_name: &str, code: &str) -> RenditionObject {
    let id = id(uuid);
    let bytes = content(id);
    RenditionObject {
        id,
        file_name: file_name.into(),
        format: FileFormat {
            code: code.into(),
            other_name: (code == "100").then(|| "heic".to_string()),
            version: if code == "044" {
                "2b".into()
            } else {
                String::new()
            },
        },
        size: bytes.len() as u64,
        digest: Digest::of(&bytes),
        created: Some(time("2026-01-12T08:00:00+01:00")),
    }
}

fn document(uuid: &str, subject: &str) -> DocumentObject {
    DocumentObject {
        id: id(uuid),
        reference: None,
        subject: Some(subject.into()),
        confidentiality: None,
        medium: Some(Medium::Electronic),
        foreign_reference: None,
        received: None,
        sent: None,
        letter_date: None,
        clerk: None,
        kind: None,
        versions: Vec::new(),
        attachments: Vec::new(),
        senders: Vec::new(),
        recipients: Vec::new(),
        custom_fields: Vec::new(),
    }
}

/// Two files: A with a case (and sub-case), documents with several versions and renditions
/// and an attachment; B with a sub-file. Names and texts need escaping and sanitising.
pub(super) fn files() -> Vec<FileObject> {
    let doc_a1 = DocumentObject {
        reference: Some("022.31-0005/2026-1".into()),
        confidentiality: Some(Confidentiality::Restricted),
        foreign_reference: Some("AZ 17/26 \"Müller\"".into()),
        received: Some(date(2026, 1, 12)),
        letter_date: Some(date(2026, 1, 9)),
        clerk: Some("Schmidt".into()),
        kind: Some("Antrag".into()),
        senders: vec![Party {
            person: Some(PersonName {
                title: Some("Dr.".into()),
                given_name: Some("Erika".into()),
                family_name: Some("Müller".into()),
            }),
            ..Party::default()
        }],
        versions: vec![
            VersionObject {
                number: 1,
                renditions: vec![
                    rendition(
                        "7a1d0c3e-5b2f-4e8a-9c6d-000000000a01",
                        "Antrag Müller.docx",
                        "035",
                    ),
                    rendition(
                        "7a1d0c3e-5b2f-4e8a-9c6d-000000000a02",
                        "../../etc/Antrag Müller.pdf",
                        "044",
                    ),
                ],
            },
            VersionObject {
                number: 2,
                renditions: vec![rendition(
                    "7a1d0c3e-5b2f-4e8a-9c6d-000000000a03",
                    "C:\\Scans\\Antrag: Müller?.pdf",
                    "018",
                )],
            },
        ],
        ..document(DOC_A1, "Antrag auf Baugenehmigung, Flurstück 12/3")
    };
    let mut attachment = document(ATTACH_A2, "Lageplan");
    attachment.versions = vec![VersionObject {
        number: 1,
        renditions: vec![rendition(
            "7a1d0c3e-5b2f-4e8a-9c6d-000000000a04",
            "Lage\u{1}plan\u{202E}gnp.heic",
            "100",
        )],
    }];
    let doc_a2 = DocumentObject {
        sent: Some(date(2026, 2, 3)),
        recipients: vec![
            agency(),
            Party {
                address_lines: vec![
                    "Erika Müller".into(),
                    "Domplatz 1".into(),
                    "99084 Erfurt".into(),
                ],
                ..Party::default()
            },
        ],
        versions: vec![VersionObject {
            number: 1,
            renditions: vec![rendition(
                "7a1d0c3e-5b2f-4e8a-9c6d-000000000a05",
                "Bescheid.pdf",
                "044",
            )],
        }],
        attachments: vec![AttachmentObject {
            document: attachment,
            number: Some("1".into()),
        }],
        ..document(DOC_A2, "Bescheid <Entwurf> & Endfassung\r\nzweite Zeile")
    };
    let doc_a3 = DocumentObject {
        versions: vec![VersionObject {
            number: 1,
            renditions: vec![rendition(
                "7a1d0c3e-5b2f-4e8a-9c6d-000000000a06",
                &format!("{}.pdf", "Sehr langer Name ".repeat(20)),
                "018",
            )],
        }],
        ..document(DOC_A3, "Vermerk")
    };
    let file_a = FileObject {
        id: id(FILE_A),
        reference: Some("022.31-0005/2026".into()),
        subject: Some("Bauvorhaben Domplatz 1 – Umbau".into()),
        lead_unit: Some("Bauordnungsamt".into()),
        confidentiality: Some(Confidentiality::Open),
        remark: Some("Pläne im Papierteil".into()),
        medium: Some(Medium::Hybrid),
        plan_unit: Some(PlanUnitRef {
            reference: Some("022.31".into()),
            title: Some("Baugenehmigungen".into()),
        }),
        disposal: DisposalDecision::Appraise,
        retention: Some(Retention::Years(10)),
        retention_end: Some(date(2036, 12, 31)),
        running_begin: Some(date(2026, 1, 9)),
        running_end: Some(date(2026, 2, 3)),
        closed: Some(date(2026, 2, 3)),
        documents: vec![doc_a3],
        cases: vec![CaseObject {
            id: id(CASE_A1),
            reference: Some("022.31-0005/2026.1".into()),
            subject: Some("Antragsprüfung".into()),
            confidentiality: None,
            remark: None,
            medium: None,
            disposal: Some(DisposalDecision::Appraise),
            retention: Some(Retention::Unlimited),
            retention_end: None,
            running_begin: Some(date(2026, 1, 9)),
            running_end: None,
            closed: Some(date(2026, 2, 3)),
            documents: vec![doc_a1, doc_a2],
            sub_cases: vec![CaseObject {
                id: id(SUBCASE_A1),
                reference: None,
                subject: Some("Beteiligung Denkmalschutz".into()),
                confidentiality: None,
                remark: None,
                medium: None,
                disposal: None,
                retention: None,
                retention_end: None,
                running_begin: None,
                running_end: None,
                closed: None,
                documents: Vec::new(),
                sub_cases: Vec::new(),
                custom_fields: Vec::new(),
            }],
            custom_fields: Vec::new(),
        }],
        sub_files: Vec::new(),
        custom_fields: vec![
            CustomValue {
                name: "verfahrensart".into(),
                datatype: Some("040".into()),
                value: "Neubau & <Umbau>".into(),
            },
            CustomValue {
                name: "baukosten".into(),
                datatype: Some("007".into()),
                value: "450000.5".into(),
            },
        ],
    };
    let mut doc_b1 = document(DOC_B1, "Protokoll");
    doc_b1.versions = vec![VersionObject {
        number: 3,
        renditions: vec![rendition(
            "7a1d0c3e-5b2f-4e8a-9c6d-000000000b01",
            "Protokoll.odt",
            "015",
        )],
    }];
    let file_b = FileObject {
        id: id(FILE_B),
        reference: Some("010.10-0001/2019".into()),
        subject: Some("Ratssitzungen 2019".into()),
        lead_unit: None,
        confidentiality: None,
        remark: None,
        medium: None,
        plan_unit: None,
        disposal: DisposalDecision::Archive,
        retention: None,
        retention_end: None,
        running_begin: None,
        running_end: None,
        closed: None,
        documents: Vec::new(),
        cases: Vec::new(),
        sub_files: vec![FileObject {
            id: id(SUBFILE_B),
            reference: Some("010.10-0001/2019/1".into()),
            subject: Some("Januar".into()),
            lead_unit: None,
            confidentiality: None,
            remark: None,
            medium: None,
            plan_unit: None,
            disposal: DisposalDecision::Archive,
            retention: Some(Retention::Years(30)),
            retention_end: None,
            running_begin: Some(date(2019, 1, 1)),
            running_end: Some(date(2019, 1, 31)),
            closed: Some(date(2019, 2, 1)),
            documents: vec![doc_b1],
            cases: Vec::new(),
            sub_files: Vec::new(),
            custom_fields: Vec::new(),
        }],
        custom_fields: Vec::new(),
    };
    vec![file_a, file_b]
}

fn all_renditions(files: &[FileObject]) -> Vec<RenditionObject> {
    let mut out = Vec::new();
    package::for_each_rendition(files, &mut |r| out.push(r.clone()));
    out
}

fn text(xml: &[u8]) -> &str {
    std::str::from_utf8(xml).expect("UTF-8")
}

// ---------------------------------------------------------------------------------------
// Writing: every message validates
// ---------------------------------------------------------------------------------------

#[test]
fn every_written_message_validates_against_the_3_1_0_schema() {
    let files = files();
    let m0501 = write_0501(&header(), &files).unwrap();
    let m0502 = write_0502(
        &MessageHeader {
            receipt_requested: true,
            ..archive_header()
        },
        &[
            Appraisal {
                id: id(FILE_A),
                decision: AppraisalDecision::Archive,
            },
            Appraisal {
                id: id(CASE_A1),
                decision: AppraisalDecision::Destroy,
            },
        ],
    )
    .unwrap();
    let m0503 = write_0503_xml(&header(), &files).unwrap();
    // A file's custom fields travel in an extension of their own, escaped.
    let written = String::from_utf8_lossy(&m0503);
    assert!(written.contains(FIELDS_EXTENSION_ID), "{written}");
    assert!(written.contains("Neubau &amp; &lt;Umbau&gt;"), "{written}");
    let m0504 = write_0504(&archive_header()).unwrap();
    let m0505 = write_0505(&header()).unwrap();
    let m0506 = write_0506(&archive_header(), &import_results()).unwrap();
    let m0507 = write_0507(&archive_header()).unwrap();
    validate(&[
        ("0501.xml", &m0501),
        ("0502.xml", &m0502),
        ("0503.xml", &m0503),
        ("0504.xml", &m0504),
        ("0505.xml", &m0505),
        ("0506.xml", &m0506),
        ("0507.xml", &m0507),
    ]);

    // The offer carries metadata only; the transfer the versions and checksums.
    let offer = text(&m0501);
    assert!(offer.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
    assert!(offer.contains("xmlns:xdomea=\"urn:xoev-de:xdomea:schema:3.1.0\""));
    assert!(!offer.contains("<xdomea:Version>\n"));
    assert!(!offer.contains("<xdomea:Format>"));
    assert!(!offer.contains("Primaerdokument"));
    assert!(
        offer.contains("<xdomea:ProzessID>5d4c3b2a-1f0e-4d9c-8b7a-695847362514</xdomea:ProzessID>")
    );
    assert!(offer.contains("<code>0501</code>"));
    assert!(offer.contains(
        "<xdomea:Erstellungszeitpunkt>2026-03-01T10:15:30+01:00</xdomea:Erstellungszeitpunkt>"
    ));
    assert!(offer.contains("<xdomea:Kennzeichen>022.31-0005/2026</xdomea:Kennzeichen>"));
    assert!(offer.contains("<xdomea:Betreff>Bescheid &lt;Entwurf&gt; &amp; Endfassung&#13;\nzweite Zeile</xdomea:Betreff>"));
    assert!(offer.contains("<xdomea:Teilakte>"));
    assert!(offer.contains("<xdomea:Teilvorgang>"));
    assert!(offer.contains("<xdomea:Anlage>"));
    let transfer = text(&m0503);
    assert!(transfer.contains("<xdomea:Importbestaetigung>1</xdomea:Importbestaetigung>"));
    assert!(
        transfer.contains("<xdomea:RueckmeldungArchivkennung>1</xdomea:RueckmeldungArchivkennung>")
    );
    assert!(transfer.contains(CHECKSUM_EXTENSION_ID));
    for r in all_renditions(&files) {
        assert!(transfer.contains(&format!(
            "<xdomea:Dateiname>{}</xdomea:Dateiname>",
            primary_file_name(&r)
        )));
        assert!(transfer.contains(&r.digest.to_hex()));
    }
    // Writing is deterministic.
    assert_eq!(m0501, write_0501(&header(), &files).unwrap());
    assert_eq!(m0503, write_0503_xml(&header(), &files).unwrap());
}

fn import_results() -> Vec<ImportResult> {
    vec![
        ImportResult {
            id: id(FILE_A),
            success: true,
            archive_id: Some("LATh 6-21-0815 Nr. 17".into()),
            error_messages: Vec::new(),
            error_codes: Vec::new(),
        },
        ImportResult {
            id: id(ATTACH_A2),
            success: false,
            archive_id: None,
            error_messages: vec!["Datei <Lageplan> nicht lesbar".into()],
            error_codes: vec![CodeValue {
                code: "09".into(),
                name: Some("Primärdokument beschädigt".into()),
                list_uri: Some("urn:example:fehler".into()),
                list_version: Some("1.0".into()),
            }],
        },
    ]
}

#[test]
fn written_answers_read_back_unchanged() {
    let appraisals = vec![
        Appraisal {
            id: id(FILE_A),
            decision: AppraisalDecision::Archive,
        },
        Appraisal {
            id: id(FILE_B),
            decision: AppraisalDecision::Destroy,
        },
    ];
    let h = MessageHeader {
        receipt_requested: true,
        system: Some(SendingSystem {
            instance_id: None,
            product_name: Some("Archiv".into()),
            version: None,
        }),
        note: Some("Hinweis mit \"Zeichen\" & <Klammern>".into()),
        ..archive_header()
    };
    let read = read_0502(&write_0502(&h, &appraisals).unwrap()).unwrap();
    assert_eq!(read.header, h);
    assert_eq!(read.schema, SchemaVersion::V3_1_0);
    assert_eq!(read.appraisals, appraisals);

    let read = read_0506(&write_0506(&archive_header(), &import_results()).unwrap()).unwrap();
    assert_eq!(read.header, archive_header());
    assert_eq!(read.results, import_results());

    for (write, read, t) in [
        (
            write_0504 as fn(&MessageHeader) -> Result<Vec<u8>, XdomeaError>,
            read_0504 as fn(&[u8]) -> Result<Receipt, XdomeaError>,
            MessageType::OfferReceipt,
        ),
        (write_0505, read_0505, MessageType::AppraisalReceipt),
        (write_0507, read_0507, MessageType::TransferReceipt),
    ] {
        let xml = write(&archive_header()).unwrap();
        let receipt = read(&xml).unwrap();
        assert_eq!(receipt.message_type, t);
        assert_eq!(receipt.header, archive_header());
        assert_eq!(identify(&xml).unwrap(), (t, SchemaVersion::V3_1_0));
    }
}

#[test]
fn invalid_input_is_refused_with_object_and_field() {
    let mut files = files();
    files[0].cases[0].subject = Some("Antrag\u{7}".into());
    let err = write_0501(&header(), &files).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, XdomeaError::InvalidInput { object: Some(o), .. } if o == id(CASE_A1)));
    assert!(msg.contains("Betreff") && msg.contains("U+0007"), "{msg}");

    let mut files = self::files();
    files[1].sub_files[0].id = id(FILE_A);
    let err = write_0501(&header(), &files).unwrap_err();
    assert!(err.to_string().contains("more than one object"), "{err}");

    let mut files = self::files();
    files[0].cases[0].documents[0].versions[0].renditions[0]
        .format
        .code = "999".into();
    assert!(
        write_0501(&header(), &files).is_ok(),
        "the offer has no formats"
    );
    let err = write_0503_xml(&header(), &files).unwrap_err();
    assert!(err.to_string().contains("Dateiformat"), "{err}");

    let mut files = self::files();
    let again = files[0].cases[0].documents[0].versions[0].renditions[0].clone();
    files[1].sub_files[0].documents[0].versions[0]
        .renditions
        .push(again);
    let err = write_0503_xml(&header(), &files).unwrap_err();
    assert!(
        err.to_string().contains("rendition ID used more than once"),
        "{err}"
    );

    let mut files = self::files();
    files[0].cases[0].documents[0].versions[1]
        .renditions
        .clear();
    let err = write_0503_xml(&header(), &files).unwrap_err();
    assert!(err.to_string().contains("at least one rendition"), "{err}");

    let mut files = self::files();
    files[0].cases[0].documents[1].recipients[1].address_lines = vec!["x".into(); 7];
    let err = write_0501(&header(), &files).unwrap_err();
    assert!(err.to_string().contains("at most 6 fit"), "{err}");

    assert!(write_0501(&header(), &[]).is_err());
    assert!(write_0502(&header(), &[]).is_err());

    let mut h = header();
    h.sender.agency_code = None;
    let err = write_0504(&h).unwrap_err();
    assert!(
        err.to_string().contains("agency_name needs agency_code"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Reading: fixtures, the 3.0.0 samples, malformed variants
// ---------------------------------------------------------------------------------------

#[test]
fn hand_written_3_1_0_fixtures_validate_and_read() {
    let f0502 = fixture("0502_valid.xml");
    let f0506 = fixture("0506_valid.xml");
    let f0507 = fixture("0507_valid.xml");
    validate(&[
        ("0502_valid.xml", &f0502),
        ("0506_valid.xml", &f0506),
        ("0507_valid.xml", &f0507),
    ]);

    let list = read_0502(&f0502).unwrap();
    assert_eq!(list.schema, SchemaVersion::V3_1_0);
    assert_eq!(list.header.process_id, id(PROCESS));
    assert_eq!(list.header.created, time("2026-03-02T09:30:00+01:00"));
    assert_eq!(list.header.sender.agency_code.as_deref(), Some("LATh"));
    assert_eq!(
        list.header.sender.agency_name.as_deref(),
        Some("Landesarchiv Thüringen")
    );
    assert_eq!(
        list.header.sender.institution_short.as_deref(),
        Some("LATh-HStA Weimar")
    );
    assert_eq!(
        list.header.sender.org_unit.as_deref(),
        Some("Referat Überlieferungsbildung")
    );
    assert_eq!(
        list.header.sender.person,
        Some(PersonName {
            title: Some("Dr.".into()),
            given_name: Some("Jana".into()),
            family_name: Some("Sommer".into()),
        })
    );
    assert_eq!(
        list.header.receiver.agency_code.as_deref(),
        Some("16051000")
    );
    assert_eq!(
        list.header.note.as_deref(),
        Some("Bewertung & Übernahme nach Absprache vom 20.02.2026")
    );
    assert!(list.header.receipt_requested);
    assert_eq!(
        list.header
            .system
            .as_ref()
            .and_then(|s| s.version.as_deref()),
        Some("4.2")
    );
    assert_eq!(
        list.appraisals,
        vec![
            Appraisal {
                id: id(FILE_A),
                decision: AppraisalDecision::Archive
            },
            Appraisal {
                id: id(CASE_A1),
                decision: AppraisalDecision::Destroy
            },
            // Upper-case hex in the message.
            Appraisal {
                id: id(FILE_B),
                decision: AppraisalDecision::Archive
            },
        ]
    );
    let offered = offered_ids(&files());
    check_appraisal_against_offer(&list.appraisals, &offered).unwrap();
    assert_eq!(unappraised(&list.appraisals, &offered), {
        let mut v = vec![id(SUBCASE_A1), id(SUBFILE_B)];
        v.sort();
        v
    });

    let conf = read_0506(&f0506).unwrap();
    assert_eq!(conf.header.created, time("2026-04-15T14:05:09Z"));
    assert_eq!(conf.results.len(), 2);
    assert!(conf.results[0].success);
    assert_eq!(
        conf.results[0].archive_id.as_deref(),
        Some("LATh 6-21-0815 Nr. 17")
    );
    assert!(!conf.results[1].success);
    assert_eq!(conf.results[1].archive_id, None);
    assert_eq!(
        conf.results[1].error_messages,
        vec!["Primärdokument <Anlage.docx> nicht lesbar".to_string()]
    );
    assert_eq!(conf.results[1].error_codes[0].code, "09");
    assert_eq!(
        conf.results[1].error_codes[0].list_uri.as_deref(),
        Some("urn:xoev-de:xdomea:codeliste:fehlermeldung-0503")
    );

    let receipt = read_0507(&f0507).unwrap();
    assert_eq!(receipt.message_type, MessageType::TransferReceipt);
    assert_eq!(receipt.header.process_id, id(PROCESS));
    assert_eq!(
        receipt.header.created,
        time("2026-04-10T08:00:00.250+02:00")
    );
    assert_eq!(
        receipt.header.receiver.institution.as_deref(),
        Some("Stadtverwaltung Erfurt")
    );
    assert_eq!(
        receipt.header.note.as_deref(),
        Some("Paket vollständig erhalten.")
    );
}

/// The xdomea 3.0.0 samples carry placeholder values, including a Kopf/Nachrichtentyp that
/// names another message (0502 says 0503, 0504 says 0501). The readers accept the 3.0.0
/// namespace but not that inconsistency; with only the code corrected, the samples read.
#[test]
fn xdomea_3_0_0_samples_read_once_their_placeholder_message_code_is_fixed() {
    let s0502 = sample("xx_Aussonderung.Bewertungsverzeichnis.0502.xml");
    let s0504 = sample("xx_Aussonderung.AnbietungEmpfangBestaetigen.0504.xml");

    let err = read_0502(&s0502).unwrap_err();
    assert!(
        matches!(&err, XdomeaError::MessageTypeCodeMismatch { expected: "0502", found, .. } if found == "0503"),
        "{err}"
    );
    assert!(err.to_string().contains("Kopf/Nachrichtentyp"), "{err}");
    let err = read_0504(&s0504).unwrap_err();
    assert!(
        matches!(&err, XdomeaError::MessageTypeCodeMismatch { expected: "0504", found, .. } if found == "0501"),
        "{err}"
    );

    let fixed0502 = text(&s0502).replacen("<code>0503</code>", "<code>0502</code>", 1);
    let fixed0504 = text(&s0504).replacen("<code>0501</code>", "<code>0504</code>", 1);
    validate_with(
        &schema_3_0_0(),
        &[
            ("0502_sample_fixed.xml", fixed0502.as_bytes()),
            ("0504_sample_fixed.xml", fixed0504.as_bytes()),
        ],
    );

    let list = read_0502(fixed0502.as_bytes()).unwrap();
    assert_eq!(list.schema, SchemaVersion::V3_0_0);
    assert_eq!(
        list.header.process_id,
        id("242f44e8-bebf-4503-a086-db252c6a4277")
    );
    // No offset in the sample: taken as UTC.
    assert_eq!(list.header.created, time("2018-07-24T17:21:25Z"));
    assert_eq!(list.header.sender.agency_code.as_deref(), Some("LATh"));
    assert_eq!(
        list.header.sender.prefix_code.as_deref(),
        Some("AbsBehoerdenkennungPraefixCode")
    );
    assert_eq!(
        list.header.receiver.agency_name.as_deref(),
        Some("Landesarchiv Thüringen")
    );
    assert_eq!(
        list.header
            .system
            .as_ref()
            .and_then(|s| s.product_name.as_deref()),
        Some("LAThDMeACU-Dummy")
    );
    assert!(list.header.receipt_requested);
    assert_eq!(
        list.appraisals,
        vec![Appraisal {
            id: id("cbdbfccc-72e5-44b2-9e71-937e6f4f8ce9"),
            decision: AppraisalDecision::Archive
        }]
    );

    let receipt = read_0504(fixed0504.as_bytes()).unwrap();
    assert_eq!(receipt.schema, SchemaVersion::V3_0_0);
    assert_eq!(
        receipt.header.process_id,
        id("242f44e8-bebf-4503-a086-db252c6a4277")
    );

    // The samples of the messages akte writes are recognised too.
    assert_eq!(
        identify(&sample("xx_Aussonderung.Anbieteverzeichnis.0501.xml")).unwrap(),
        (MessageType::Offer, SchemaVersion::V3_0_0)
    );
    assert_eq!(
        identify(&sample("xx_Aussonderung.Aussonderung.0503.xml")).unwrap(),
        (MessageType::Transfer, SchemaVersion::V3_0_0)
    );
}

fn f0502() -> String {
    String::from_utf8(fixture("0502_valid.xml")).expect("UTF-8 fixture")
}

fn err_0502(xml: &str) -> XdomeaError {
    match read_0502(xml.as_bytes()) {
        Ok(list) => panic!("accepted a broken 0502: {list:?}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_appraisals_are_rejected_naming_the_problem() {
    let good = f0502();

    // Wrong namespace.
    let e = err_0502(&good.replace(
        "urn:xoev-de:xdomea:schema:3.1.0",
        "urn:xoev-de:xdomea:schema:2.4.0",
    ));
    assert!(matches!(e, XdomeaError::WrongNamespace { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("2.4.0") && m.contains("3.1.0") && m.contains("line 4"),
        "{m}"
    );

    // No namespace at all.
    let e = err_0502(&good.replace(" xmlns:x=\"urn:xoev-de:xdomea:schema:3.1.0\"", ""));
    assert!(matches!(e, XdomeaError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("not declared"), "{e}");

    // Another message.
    let e = read_0502(&fixture("0506_valid.xml")).unwrap_err();
    assert!(
        matches!(
            e,
            XdomeaError::WrongMessageType {
                expected: MessageType::Appraisal,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("Aussonderung.AussonderungImportBestaetigen.0506"),
        "{e}"
    );

    // Unknown decision code, and B.
    let e = err_0502(&good.replacen("<code>V</code>", "<code>X</code>", 1));
    assert!(
        matches!(&e, XdomeaError::UnknownDecision { code, .. } if code == "X"),
        "{e}"
    );
    let m = e.to_string();
    assert!(
        m.contains("/BewertetesObjekt[2]/Aussonderungsart/Aussonderungsart")
            && m.contains("line 69"),
        "{m}"
    );
    let e = err_0502(&good.replacen("<code>V</code>", "<code>B</code>", 1));
    assert!(
        e.to_string()
            .contains("B (to be appraised) is not an appraisal result"),
        "{e}"
    );

    // Missing ID.
    let e = err_0502(&good.replacen("<x:ID>0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02</x:ID>", "", 1));
    assert!(
        matches!(&e, XdomeaError::Missing { element, .. } if element == "ID"),
        "{e}"
    );
    assert!(e.to_string().contains("/BewertetesObjekt[2]"), "{e}");

    // Duplicate IDs.
    let e = err_0502(&good.replacen(
        "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02",
        "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c01",
        1,
    ));
    assert!(
        matches!(&e, XdomeaError::DuplicateId { id: i, first_line: 59, .. } if *i == id(FILE_A)),
        "{e}"
    );
    assert!(e.to_string().contains("appears more than once"), "{e}");
    // Duplicate in another spelling (upper case) is the same ID.
    let e = err_0502(&good.replacen(
        "0B8E5A52-8C1E-4C55-9D3E-1F6F0A7D2C21",
        "0B8E5A52-8C1E-4C55-9D3E-1F6F0A7D2C01",
        1,
    ));
    assert!(matches!(e, XdomeaError::DuplicateId { .. }), "{e}");

    // Truncated XML.
    let cut = &good[..good.len() / 2];
    let e = err_0502(cut);
    assert!(matches!(e, XdomeaError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("malformed XML at line"), "{e}");

    // Not a UUID.
    let e = err_0502(&good.replacen(
        "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02",
        "{0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02}",
        1,
    ));
    assert!(matches!(e, XdomeaError::InvalidValue { .. }), "{e}");
    assert!(e.to_string().contains("BewertetesObjekt[2]/ID"), "{e}");

    // An element from another xdomea version inside a 3.1.0 message.
    let e = err_0502(
        &good
            .replacen(
                "<x:BewertetesObjekt>",
                "<y:BewertetesObjekt xmlns:y=\"urn:xoev-de:xdomea:schema:3.0.0\">",
                1,
            )
            .replacen("</x:BewertetesObjekt>", "</y:BewertetesObjekt>", 1),
    );
    assert!(matches!(e, XdomeaError::WrongNamespace { .. }), "{e}");

    // An element the schema does not allow there.
    let e = err_0502(&good.replacen(
        "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02</x:ID>",
        "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c02</x:ID><x:Bemerkung>?</x:Bemerkung>",
        1,
    ));
    assert!(
        matches!(&e, XdomeaError::Unexpected { element, .. } if element == "Bemerkung"),
        "{e}"
    );
    assert!(
        e.to_string().contains("not allowed in BewertetesObjekt"),
        "{e}"
    );
    // Anything but code and name inside a code.
    let e = err_0502(&good.replacen(
        "<code>V</code>",
        "<code>V</code><x:Bemerkung>?</x:Bemerkung>",
        1,
    ));
    assert!(
        e.to_string().contains("code and name are unqualified"),
        "{e}"
    );

    // Nothing appraised.
    let start = good.find("  <x:BewertetesObjekt>").expect("fixture layout");
    let end = good.rfind("</x:BewertetesObjekt>").expect("fixture layout")
        + "</x:BewertetesObjekt>".len();
    let e = err_0502(&format!("{}{}", &good[..start], &good[end..]));
    assert!(
        matches!(&e, XdomeaError::Missing { element, .. } if element == "BewertetesObjekt"),
        "{e}"
    );

    // Kopf without a required element.
    let e = err_0502(&good.replacen(
        "<x:Empfangsbestaetigung>true</x:Empfangsbestaetigung>",
        "",
        1,
    ));
    assert!(
        matches!(&e, XdomeaError::Missing { element, .. } if element == "Empfangsbestaetigung"),
        "{e}"
    );

    // Bad encodings and DTDs.
    let mut latin1 = good.clone().into_bytes();
    let pos = good.find("Übernahme").expect("fixture layout");
    latin1.splice(pos..pos + 2, [0xDC]);
    let e = read_0502(&latin1).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    let e = err_0502(&good.replacen("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"", 1));
    assert!(e.to_string().contains("must be UTF-8"), "{e}");
    let e = err_0502(&good.replacen(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE x [<!ENTITY big \"boom\">]>",
        1,
    ));
    assert!(e.to_string().contains("DTD"), "{e}");
    let e = err_0502(&good.replacen("Bewertung &amp;", "Bewertung &big;", 1));
    assert!(e.to_string().contains("undefined entity &big;"), "{e}");
    let e = err_0502(&good.replacen("Bewertung &amp;", "Bewertung &#1;", 1));
    assert!(e.to_string().contains("character reference"), "{e}");
    let e = err_0502(&format!("{good}<x:Kopf/>"));
    assert!(matches!(e, XdomeaError::Malformed { .. }), "{e}");
}

#[test]
fn malformed_confirmations_and_receipts_are_rejected() {
    let good = String::from_utf8(fixture("0506_valid.xml")).expect("UTF-8 fixture");
    let e = read_0506(
        good.replacen(
            "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c13",
            "0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c01",
            1,
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(e, XdomeaError::DuplicateId { .. }), "{e}");
    let e = read_0506(
        good.replacen("<xdomea:Erfolgreich>1<", "<xdomea:Erfolgreich>ja<", 1)
            .as_bytes(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a boolean"), "{e}");
    assert!(
        e.to_string().contains("AusgesondertesSGO[1]/Erfolgreich"),
        "{e}"
    );
    let e = read_0506(
        good.replacen(
            " listURI=\"urn:xoev-de:xdomea:codeliste:fehlermeldung-0503\"",
            "",
            1,
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("listURI and listVersionID"), "{e}");
    let e = read_0506(
        good.replacen(
            "<xdomea:IDSGO>0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c01</xdomea:IDSGO>",
            "",
            1,
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, XdomeaError::Missing { element, .. } if element == "IDSGO"),
        "{e}"
    );

    let r0507 = String::from_utf8(fixture("0507_valid.xml")).expect("UTF-8 fixture");
    // A receipt read as another receipt.
    let e = read_0504(r0507.as_bytes()).unwrap_err();
    assert!(matches!(e, XdomeaError::WrongMessageType { .. }), "{e}");
    // Unqualified code element in the xdomea namespace (default namespace not undone).
    let e = read_0507(
        r0507
            .replacen("<code xmlns=\"\">0507</code>", "<code>0507</code>", 1)
            .as_bytes(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unqualified"), "{e}");
    let e = read_0507(
        r0507
            .replacen("2026-04-10T08:00:00.250+02:00", "10.04.2026 08:00", 1)
            .as_bytes(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("xs:dateTime"), "{e}");
    let e = read_0507(r0507.replacen("<Hinweis>", "<Hinweis>x<b/>", 1).as_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            XdomeaError::Unexpected { .. } | XdomeaError::WrongNamespace { .. }
        ),
        "{e}"
    );
    assert!(read_0507(b"").is_err());
    assert!(read_0507(b"<a>").is_err());
}

#[test]
fn appraisals_of_objects_not_offered_are_refused() {
    let offered = offered_ids(&files());
    assert!(offered.contains(&id(FILE_A)));
    assert!(offered.contains(&id(SUBCASE_A1)));
    assert!(offered.contains(&id(SUBFILE_B)));
    assert!(
        !offered.contains(&id(DOC_A1)),
        "documents are appraised with their file"
    );
    let stranger = Uuid::new_v4();
    let appraisals = [
        Appraisal {
            id: id(FILE_A),
            decision: AppraisalDecision::Archive,
        },
        Appraisal {
            id: stranger,
            decision: AppraisalDecision::Destroy,
        },
        Appraisal {
            id: id(DOC_A1),
            decision: AppraisalDecision::Destroy,
        },
    ];
    let e = check_appraisal_against_offer(&appraisals, &offered).unwrap_err();
    assert!(
        matches!(e, XdomeaError::NotOffered { id } if id == stranger),
        "{e}"
    );
    assert!(e.to_string().contains(&stranger.to_string()));
    let e = check_appraisal_against_offer(&appraisals[2..], &offered).unwrap_err();
    assert!(
        matches!(e, XdomeaError::NotOffered { id: i } if i == id(DOC_A1)),
        "{e}"
    );
    check_appraisal_against_offer(&appraisals[..1], &offered).unwrap();
    check_appraisal_against_offer(&[], &HashSet::new()).unwrap();
}

// ---------------------------------------------------------------------------------------
// ZIP packages
// ---------------------------------------------------------------------------------------

#[test]
fn zip_and_file_names() {
    let pid = id(PROCESS);
    assert_eq!(
        offer_zip_name(pid),
        "5d4c3b2a-1f0e-4d9c-8b7a-695847362514_Aussonderung.Anbieteverzeichnis.0501.zip"
    );
    assert_eq!(
        transfer_zip_name(pid),
        "5d4c3b2a-1f0e-4d9c-8b7a-695847362514_Aussonderung.Aussonderung.0503.zip"
    );
    assert_eq!(
        message_xml_name(pid, MessageType::Offer),
        "5d4c3b2a-1f0e-4d9c-8b7a-695847362514_Aussonderung.Anbieteverzeichnis.0501.xml"
    );
    assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
    assert_eq!(
        sanitize_file_name("C:\\Scans\\Bescheid.pdf"),
        "Bescheid.pdf"
    );
    assert_eq!(sanitize_file_name("a\u{0}b\nc\u{7f}.txt"), "a_b_c_.txt");
    assert_eq!(
        sanitize_file_name("Antrag: Müller?.pdf"),
        "Antrag_ Müller_.pdf"
    );
    assert_eq!(sanitize_file_name("\u{202E}fdp.exe"), "_fdp.exe");
    assert_eq!(sanitize_file_name(""), "datei");
    assert_eq!(sanitize_file_name(".."), "datei");
    assert_eq!(sanitize_file_name("dir/"), "datei");
    assert_eq!(sanitize_file_name("  Bericht.pdf. "), "Bericht.pdf");
    assert_eq!(
        sanitize_file_name("Übersicht über Ämter.xlsx"),
        "Übersicht über Ämter.xlsx"
    );
    let long = format!("{}.pdf", "ä".repeat(300));
    let s = sanitize_file_name(&long);
    assert!(
        s.len() <= MAX_NAME_BYTES && s.ends_with(".pdf") && s.starts_with("ää"),
        "{s}"
    );
    let s = sanitize_file_name(&"x".repeat(500));
    assert_eq!(s.len(), MAX_NAME_BYTES);

    assert_eq!(FileFormat::guess("Bescheid.PDF", None).code, "018");
    assert_eq!(FileFormat::guess("a.docx", None).code, "035");
    let other = FileFormat::guess("scan.heic", Some("image/heic"));
    assert_eq!(
        (other.code.as_str(), other.other_name.as_deref()),
        ("100", Some("heic"))
    );
    let other = FileFormat::guess("README", Some("text/x-readme"));
    assert_eq!(other.other_name.as_deref(), Some("text/x-readme"));
}

#[test]
fn offer_zip_holds_the_0501() {
    let files = files();
    let zip = write_0501_zip(Cursor::new(Vec::new()), &header(), &files)
        .unwrap()
        .into_inner();
    let mut archive = ::zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    assert_eq!(archive.len(), 1);
    assert_eq!(
        archive.name_for_index(0),
        Some(message_xml_name(id(PROCESS), MessageType::Offer).as_str())
    );
    let mut xml = Vec::new();
    archive.by_index(0).unwrap().read_to_end(&mut xml).unwrap();
    assert_eq!(xml, write_0501(&header(), &files).unwrap());
    let again = read_message_zip(Cursor::new(&zip), MessageType::Offer, 1 << 20).unwrap();
    assert_eq!(again, xml);
    assert!(matches!(
        read_message_zip(Cursor::new(&zip), MessageType::Appraisal, 1 << 20),
        Err(XdomeaError::Container(_))
    ));
    assert!(matches!(
        read_message_zip(Cursor::new(&zip), MessageType::Offer, 100),
        Err(XdomeaError::Container(_))
    ));

    // The archive's answer in its ZIP reads back.
    let answer = fixture("0502_valid.xml");
    let zipped = write_message_zip(
        Cursor::new(Vec::new()),
        &archive_header(),
        MessageType::Appraisal,
        &answer,
    )
    .unwrap()
    .into_inner();
    let xml = read_message_zip(Cursor::new(zipped), MessageType::Appraisal, 1 << 20).unwrap();
    assert_eq!(read_0502(&xml).unwrap().appraisals.len(), 3);
}

#[test]
fn transfer_zip_has_unique_uuid_named_primary_files_that_round_trip() {
    let files = files();
    let renditions = all_renditions(&files);
    assert_eq!(renditions.len(), 7);
    let zip = write_0503(Cursor::new(Vec::new()), &header(), &files, |r| {
        Ok::<_, std::io::Error>(Cursor::new(content(r.id)))
    })
    .unwrap()
    .into_inner();

    let mut archive = ::zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.name_for_index(i).unwrap_or_default().to_string())
        .collect();
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "names not unique: {names:?}");
    let xml_name = message_xml_name(id(PROCESS), MessageType::Transfer);
    assert_eq!(names[0], xml_name, "the message comes first");
    assert_eq!(names.len(), 1 + renditions.len());
    for name in &names[1..] {
        let (prefix, rest) = name.split_at(36);
        Uuid::try_parse(prefix).unwrap_or_else(|_| panic!("not UUID-prefixed: {name}"));
        assert!(rest.starts_with('_'), "{name}");
        assert!(
            !rest.contains(['/', '\\']) && !rest.chars().any(char::is_control),
            "unsafe name {name:?}"
        );
        assert!(name.len() <= 37 + MAX_NAME_BYTES);
    }
    assert!(names.contains(&"7a1d0c3e-5b2f-4e8a-9c6d-000000000a02_Antrag Müller.pdf".to_string()));
    assert!(names.contains(&"7a1d0c3e-5b2f-4e8a-9c6d-000000000a03_Antrag_ Müller_.pdf".to_string()));
    assert!(names.contains(&"7a1d0c3e-5b2f-4e8a-9c6d-000000000a04_Lage_plan_gnp.heic".to_string()));

    let mut xml = Vec::new();
    archive
        .by_name(&xml_name)
        .unwrap()
        .read_to_end(&mut xml)
        .unwrap();
    assert_eq!(xml, write_0503_xml(&header(), &files).unwrap());
    validate(&[("0503_from_zip.xml", &xml)]);
    let xml = text(&xml);
    for r in &renditions {
        let name = primary_file_name(r);
        assert!(
            xml.contains(&format!("<xdomea:Dateiname>{name}</xdomea:Dateiname>")),
            "{name}"
        );
        let mut bytes = Vec::new();
        archive
            .by_name(&name)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes, content(r.id), "bytes of {name}");
        assert_eq!(Digest::of(&bytes), r.digest);
    }
    // Every Dateiname in the XML is an entry.
    for line in xml.lines().filter(|l| l.contains("<xdomea:Dateiname>")) {
        let name = line
            .trim()
            .trim_start_matches("<xdomea:Dateiname>")
            .trim_end_matches("</xdomea:Dateiname>");
        assert!(names.iter().any(|n| n == name), "{name} not in the ZIP");
    }
    // The original names are kept in the XML.
    assert!(xml.contains(
        "<xdomea:DateinameOriginal>C:\\Scans\\Antrag: Müller?.pdf</xdomea:DateinameOriginal>"
    ));
    assert!(xml.contains(
        "<xdomea:DateinameOriginal>Lage\u{FFFD}plan\u{202E}gnp.heic</xdomea:DateinameOriginal>"
    ));
}

#[test]
fn transfer_writer_checks_what_it_streams() {
    let files = files();
    let renditions = all_renditions(&files);
    let first = &renditions[0];

    // Wrong bytes.
    let mut w = TransferWriter::new(Cursor::new(Vec::new()), &header(), &files).unwrap();
    let mut wrong = content(first.id);
    wrong[0] ^= 1;
    let e = w
        .add_primary_file(first.id, Cursor::new(wrong))
        .unwrap_err();
    assert!(matches!(e, XdomeaError::PrimaryFileMismatch { .. }), "{e}");
    let e = w.add_primary_file(renditions[1].id, Cursor::new(content(renditions[1].id)));
    assert!(e.unwrap_err().to_string().contains("failed earlier"));
    assert!(w.finish().is_err());

    // Too long: reading stops one byte past the declared size, even for an endless source.
    let mut w = TransferWriter::new(Cursor::new(Vec::new()), &header(), &files).unwrap();
    let e = w
        .add_primary_file(first.id, std::io::repeat(7))
        .unwrap_err();
    assert!(
        matches!(e, XdomeaError::PrimaryFileMismatch { actual_size, expected_size, .. } if actual_size == expected_size + 1),
        "{e}"
    );

    // Too short, unknown, twice, missing.
    let mut w = TransferWriter::new(Cursor::new(Vec::new()), &header(), &files).unwrap();
    let short = content(first.id)[1..].to_vec();
    assert!(matches!(
        w.add_primary_file(first.id, Cursor::new(short)),
        Err(XdomeaError::PrimaryFileMismatch { .. })
    ));
    let mut w = TransferWriter::new(Cursor::new(Vec::new()), &header(), &files).unwrap();
    assert_eq!(w.missing().len(), renditions.len());
    let e = w
        .add_primary_file(Uuid::new_v4(), Cursor::new(Vec::new()))
        .unwrap_err();
    assert!(
        e.to_string().contains("not a rendition of this transfer"),
        "{e}"
    );
    w.add_primary_file(first.id, Cursor::new(content(first.id)))
        .unwrap();
    let e = w
        .add_primary_file(first.id, Cursor::new(content(first.id)))
        .unwrap_err();
    assert!(e.to_string().contains("added twice"), "{e}");
    let e = w.finish().unwrap_err();
    assert!(
        matches!(&e, XdomeaError::IncompleteTransfer { missing } if missing.len() == renditions.len() - 1 && missing[0] == renditions[1].id),
        "{e}"
    );

    // A failing source is reported with the rendition.
    let e = write_0503(Cursor::new(Vec::new()), &header(), &files, |r| {
        if r.id == renditions[2].id {
            Err(std::io::Error::other("content store: blob missing"))
        } else {
            Ok(Cursor::new(content(r.id)))
        }
    })
    .unwrap_err();
    assert!(
        matches!(&e, XdomeaError::Source { rendition, .. } if *rendition == renditions[2].id),
        "{e}"
    );
    assert!(e.to_string().contains("blob missing"), "{e}");

    // Files may be stored instead of deflated.
    let mut w = TransferWriter::with_options(
        Cursor::new(Vec::new()),
        &header(),
        &files,
        TransferOptions {
            compress_primary_files: false,
        },
    )
    .unwrap();
    for r in &renditions {
        w.add_primary_file(r.id, Cursor::new(content(r.id)))
            .unwrap();
    }
    let zip = w.finish().unwrap().into_inner();
    let mut archive = ::zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let entry = archive.by_name(&primary_file_name(first)).unwrap();
    assert_eq!(entry.compression(), ::zip::CompressionMethod::Stored);
}

// ---------------------------------------------------------------------------------------
// Bounded memory
// ---------------------------------------------------------------------------------------

/// A deterministic, hardly compressible byte stream of `len` bytes (xorshift), generated
/// on the fly.
struct Generator {
    state: u64,
    left: u64,
}

impl Generator {
    fn new(len: u64) -> Generator {
        Generator {
            state: 0x9E37_79B9_7F4A_7C15,
            left: len,
        }
    }
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX))
            / 8
            * 8;
        let n = if n == 0 {
            buf.len().min(self.left as usize)
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn sha256_of(mut r: impl Read) -> (u64, Digest) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    (total, Digest(h.finalize().into()))
}

/// Peak resident memory of this process (VmHWM), in bytes.
#[cfg(target_os = "linux")]
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

const LARGE: u64 = 50 * 1024 * 1024;
const MEMORY_CHILD_ENV: &str = "AKTE_XDOMEA_MEMORY_CHILD";

/// Streams a 50 MiB generated primary file through a transfer into a file on disk. The
/// work runs in a child process of this test binary (only this test, one thread), so that
/// its peak memory is its own: it must stay far below the file's size.
#[test]
fn large_primary_file_streams_with_bounded_memory() {
    if std::env::var_os(MEMORY_CHILD_ENV).is_some() {
        stream_large_file();
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([
            "tests::large_primary_file_streams_with_bounded_memory",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD_ENV, "1")
        .output()
        .expect("run the test binary");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{out}\n{err}");
    assert!(out.contains("1 passed"), "child ran no test:\n{out}\n{err}");
    assert!(
        out.contains("peak RSS"),
        "child did not measure:\n{out}\n{err}"
    );
}

fn stream_large_file() {
    let (size, digest) = sha256_of(Generator::new(LARGE));
    assert_eq!(size, LARGE);
    let big = RenditionObject {
        id: id("7a1d0c3e-5b2f-4e8a-9c6d-00000000ffff"),
        file_name: "Bauakte gescannt.tif".into(),
        format: FileFormat {
            code: "024".into(),
            other_name: None,
            version: "6.0".into(),
        },
        size,
        digest,
        created: None,
    };
    let mut files = files();
    files[1].sub_files[0].documents[0].versions[0]
        .renditions
        .push(big.clone());

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(transfer_zip_name(id(PROCESS)));
    let out = std::fs::File::create(&path).expect("create ZIP");
    let before = peak_rss_or_zero();
    let out = write_0503(std::io::BufWriter::new(out), &header(), &files, |r| {
        if r.id == big.id {
            Ok::<Box<dyn Read>, std::io::Error>(Box::new(Generator::new(LARGE)))
        } else {
            Ok(Box::new(Cursor::new(content(r.id))))
        }
    })
    .unwrap();
    drop(out);
    let after = peak_rss_or_zero();

    let zip_len = std::fs::metadata(&path).expect("ZIP on disk").len();
    assert!(
        zip_len > LARGE,
        "a random stream does not compress: {zip_len}"
    );
    let mut archive =
        ::zip::ZipArchive::new(std::fs::File::open(&path).expect("open ZIP")).expect("read ZIP");
    let entry = archive
        .by_name(&primary_file_name(&big))
        .expect("big entry");
    assert_eq!(
        sha256_of(entry),
        (LARGE, digest),
        "the big file round-trips"
    );

    println!(
        "peak RSS before {} MiB, after {} MiB, for a {} MiB primary file",
        before >> 20,
        after >> 20,
        LARGE >> 20
    );
    #[cfg(target_os = "linux")]
    {
        assert!(
            after < 32 * 1024 * 1024 && after - before < 16 * 1024 * 1024,
            "memory grew with the file: peak RSS {before} -> {after} bytes"
        );
    }
}

fn peak_rss_or_zero() -> u64 {
    #[cfg(target_os = "linux")]
    {
        peak_rss()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// A ZIP written as a stream (sizes and CRC in data descriptors after each entry, general
/// purpose bit 3) reads like any other: what a streaming writer would send, and what an
/// archive may send back. The reader goes by the central directory.
#[test]
fn a_message_zip_with_data_descriptors_reads_back() {
    use std::io::Write as _;
    let answer = fixture("0502_valid.xml");
    let name = message_xml_name(id(PROCESS), MessageType::Appraisal);
    let mut zip = ::zip::ZipWriter::new_stream(Vec::new());
    let options = ::zip::write::SimpleFileOptions::default()
        .compression_method(::zip::CompressionMethod::Deflated);
    zip.start_file(name.as_str(), options).unwrap();
    zip.write_all(&answer).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    // The first local header has bit 3 set: its sizes follow the data.
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]) & 0x08, 0x08);
    let xml = read_message_zip(Cursor::new(bytes), MessageType::Appraisal, 1 << 20).unwrap();
    assert_eq!(xml, answer);
}
