//! Tests of the archive's side: received-message ZIPs and their names, the archive style
//! of writing, reading an offer and a transfer as the archive sees them, and appraisal,
//! intake check and import results of [`super::archive`]. Every message is validated
//! against the 3.1.0 XSD.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Write};

use uuid::Uuid;

use super::archive::{self, AppraisalRules, ArchiveIds, Packaging};
use super::tests::*;
use super::*;

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = ::zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        z.start_file(*name, ::zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn container_error(r: Result<ReceivedZip, XdomeaError>) -> String {
    match r {
        Err(XdomeaError::Container(m)) => m,
        other => panic!("expected a container error, got {other:?}"),
    }
}

#[test]
fn received_zips_are_found_by_their_xdomea_names_and_refused_with_the_reason() {
    let pid = id(PROCESS);
    let long = format!("{pid}_Aussonderung.AussonderungImportBestaetigen.0506.xml");
    let short = format!("{pid}_0506.xml");
    assert_eq!(
        parse_message_xml_name(&long),
        Some((MessageType::ImportConfirmation, pid))
    );
    assert_eq!(
        parse_message_xml_name(&short),
        Some((MessageType::ImportConfirmation, pid))
    );
    for bad in [
        "0506.xml",
        "x_Aussonderung.AussonderungImportBestaetigen.0506.xml",
        &format!("{pid}_Aussonderung.Unbekannt.0599.xml"),
        &format!("{pid}_0506.zip"),
        "ä",
    ] {
        assert_eq!(parse_message_xml_name(bad), None, "{bad}");
    }
    let xml = write_0507(&archive_header()).unwrap();
    let ok = read_received_zip(
        Cursor::new(zip_of(&[("readme.txt", b"x"), (&short, &xml)])),
        &[MessageType::ImportConfirmation],
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        (ok.message, ok.process_id, ok.entry.as_str()),
        (MessageType::ImportConfirmation, pid, short.as_str())
    );

    let m = container_error(read_received_zip(
        Cursor::new(zip_of(&[("readme.txt", b"x"), ("m.xml", &xml)])),
        &[MessageType::ImportConfirmation],
        1 << 20,
    ));
    assert!(
        m.contains("holds no xdomea message") && m.contains("readme.txt, m.xml"),
        "{m}"
    );
    let m = container_error(read_received_zip(
        Cursor::new(zip_of(&[(&long, &xml), (&short, &xml)])),
        &[MessageType::ImportConfirmation],
        1 << 20,
    ));
    assert!(m.contains("more than one message"), "{m}");
    let m = container_error(read_received_zip(
        Cursor::new(zip_of(&[(&long, &xml)])),
        &[MessageType::Appraisal, MessageType::TransferReceipt],
        1 << 20,
    ));
    assert!(
        m.contains("a 0506") && m.contains("Bewertungsverzeichnis.0502.xml"),
        "{m}"
    );
    let m = container_error(read_received_zip(
        Cursor::new(zip_of(&[(&long, &xml)])),
        &[MessageType::ImportConfirmation],
        100,
    ));
    assert!(
        m.contains(&format!("{} bytes uncompressed", xml.len()))
            && m.contains("limit of 100 bytes"),
        "{m}"
    );
    assert!(matches!(
        read_received_zip(
            Cursor::new(b"PK\x03\x04 no zip".to_vec()),
            &[MessageType::Appraisal],
            100
        ),
        Err(XdomeaError::Zip(_))
    ));
}

#[test]
fn the_archive_style_leaves_optional_parts_out_validates_and_reads_back() {
    let header = archive_header();
    let appraisals = [Appraisal {
        id: id(FILE_A),
        decision: AppraisalDecision::Archive,
    }];
    let results = [
        ImportResult {
            id: id(FILE_A),
            success: true,
            archive_id: None,
            error_messages: vec![],
            error_codes: vec![],
        },
        ImportResult {
            id: id(FILE_B),
            success: false,
            archive_id: None,
            error_messages: vec!["Format nicht lesbar".into()],
            error_codes: vec![CodeValue {
                code: "99".into(),
                name: None,
                list_uri: Some("urn:xoev-de:xdomea:codeliste:spezifischefehlermeldung0606".into()),
                list_version: Some("1.0".into()),
            }],
        },
    ];
    let m0502 = write_0502_with(&header, &appraisals, WriteStyle::Archive).unwrap();
    let m0504 = write_0504_with(&header, WriteStyle::Archive).unwrap();
    let m0506 = write_0506_with(&header, &results, WriteStyle::Archive).unwrap();
    let m0507 = write_0507_with(&header, WriteStyle::Archive).unwrap();
    validate(&[
        ("a0502.xml", &m0502),
        ("a0504.xml", &m0504),
        ("a0506.xml", &m0506),
        ("a0507.xml", &m0507),
    ]);
    for xml in [&m0502, &m0504, &m0507] {
        let text = String::from_utf8_lossy(xml);
        assert!(!text.contains("listURI"), "{text}");
        assert!(
            text.contains(
                "<xdomea:Erstellungszeitpunkt>2026-03-02T09:30:00</xdomea:Erstellungszeitpunkt>"
            ),
            "local time without offset: {text}"
        );
    }
    // FehlermeldungCode keeps the list attributes the schema requires.
    assert!(String::from_utf8_lossy(&m0506)
        .contains("listURI=\"urn:xoev-de:xdomea:codeliste:spezifischefehlermeldung0606\""));
    assert_eq!(read_0502(&m0502).unwrap().appraisals, appraisals);
    assert_eq!(read_0506(&m0506).unwrap().results, results);
    let r = read_0507(&m0507).unwrap();
    assert_eq!(r.header.created.to_rfc3339(), "2026-03-02T09:30:00+00:00");
}

fn offer() -> ObjectList {
    read_0501(&write_0501(&header(), &files()).unwrap()).unwrap()
}

#[test]
fn offer_and_transfer_read_as_the_archive_receives_them() {
    let list = offer();
    assert_eq!(list.message, MessageType::Offer);
    assert_eq!(list.header.process_id, id(PROCESS));
    let walk: Vec<(Uuid, SgoKind, Option<Uuid>)> = list
        .walk()
        .iter()
        .map(|(o, p)| (o.id, o.kind, *p))
        .collect();
    let expected = vec![
        (id(FILE_A), SgoKind::File, None),
        (id(DOC_A3), SgoKind::Document, Some(id(FILE_A))),
        (id(CASE_A1), SgoKind::Case, Some(id(FILE_A))),
        (id(DOC_A1), SgoKind::Document, Some(id(CASE_A1))),
        (id(DOC_A2), SgoKind::Document, Some(id(CASE_A1))),
        (id(ATTACH_A2), SgoKind::Attachment, Some(id(DOC_A2))),
        (id(SUBCASE_A1), SgoKind::SubCase, Some(id(CASE_A1))),
        (id(FILE_B), SgoKind::File, None),
        (id(SUBFILE_B), SgoKind::SubFile, Some(id(FILE_B))),
        (id(DOC_B1), SgoKind::Document, Some(id(SUBFILE_B))),
    ];
    assert_eq!(walk, expected);
    let a = &list.objects[0];
    assert_eq!(a.plan_unit.as_deref(), Some("022.31"));
    assert_eq!(a.reference.as_deref(), Some("022.31-0005/2026"));
    assert_eq!(a.disposal.as_deref(), Some("B"));
    assert!(a.primary_files.is_empty(), "an offer has no primary files");

    let transfer = read_0503(&write_0503_xml(&header(), &files()).unwrap()).unwrap();
    assert!(transfer.header.archive_id_requested);
    let names: usize = transfer
        .walk()
        .iter()
        .map(|(o, _)| o.primary_files.len())
        .sum();
    let mut expected = 0;
    super::package::for_each_rendition(&files(), &mut |_| expected += 1);
    assert_eq!(names, expected, "every Primaerdokument/Dateiname");

    // Duplicate ids and a 0501 read as a 0503 are refused.
    let xml = String::from_utf8(write_0501(&header(), &files()).unwrap())
        .unwrap()
        .replace(DOC_B1, DOC_A1);
    assert!(matches!(
        read_0501(xml.as_bytes()),
        Err(XdomeaError::DuplicateId { .. })
    ));
    assert!(matches!(
        read_0503(&write_0501(&header(), &files()).unwrap()),
        Err(XdomeaError::WrongMessageType { .. })
    ));
}

#[test]
fn rules_appraise_every_appraisable_object_and_containers_of_a_follow() {
    let list = offer();
    let mut rules = AppraisalRules::parse(
        "# Bewertung\n default V \n plan-unit:022.31 A\n\n0b8e5a52-8c1e-4c55-9d3e-1f6f0a7d2c03 V # Teilvorgang\n",
    )
    .unwrap();
    let decided = |rules: &AppraisalRules| -> Vec<(Uuid, &'static str)> {
        archive::appraise(&list, rules)
            .iter()
            .map(|a| (a.id, a.decision.code()))
            .collect()
    };
    assert_eq!(
        decided(&rules),
        vec![
            (id(FILE_A), "A"),
            (id(CASE_A1), "A"),
            (id(SUBCASE_A1), "V"),
            // FILE_B is offered A: the offered decision stands where no rule says otherwise.
            (id(FILE_B), "A"),
            (id(SUBFILE_B), "A"),
        ]
    );
    rules
        .add("--set", &format!("tenants/t/files/{FILE_A}=V"))
        .unwrap();
    rules.add("--set", &format!("{SUBCASE_A1}=A")).unwrap();
    rules.add("--set", "ref:010.10-0001/2019/1=V").unwrap();
    // The sub-case A makes its case and file A again.
    assert_eq!(
        decided(&rules),
        vec![
            (id(FILE_A), "A"),
            (id(CASE_A1), "A"),
            (id(SUBCASE_A1), "A"),
            (id(FILE_B), "A"),
            (id(SUBFILE_B), "V"),
        ]
    );
    for (bad, why) in [
        ("plan-unit:1=B", "no appraisal"),
        ("nichts", "no rule"),
        ("x=A", "neither default"),
    ] {
        let e = AppraisalRules::default().add("--set", bad).unwrap_err();
        assert!(e.to_string().contains(why), "{bad}: {e}");
    }
    let e = AppraisalRules::parse("default A\nkaputt\n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn the_intake_check_finds_missing_and_surplus_objects() {
    let list = offer();
    let appraisals = archive::appraise(
        &list,
        &AppraisalRules::parse(&format!("default A\n{CASE_A1} V\n")).unwrap(),
    );
    // Everything sent: the V case (with its content) is surplus, once.
    let all = read_0503(&write_0503_xml(&header(), &files()).unwrap()).unwrap();
    let problems = archive::check_transfer(&list, &appraisals, &all);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("surplus: Vorgang 022.31-0005/2026.1"),
        "{problems:?}"
    );
    // Only the A parts: clean.
    let mut right = files();
    right[0].cases.clear();
    let sent = read_0503(&write_0503_xml(&header(), &right).unwrap()).unwrap();
    assert!(archive::check_transfer(&list, &appraisals, &sent).is_empty());
    // A document under A left out: missing.
    right[0].documents.clear();
    let sent = read_0503(&write_0503_xml(&header(), &right).unwrap()).unwrap();
    let problems = archive::check_transfer(&list, &appraisals, &sent);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("missing: Dokument"), "{problems:?}");
}

#[test]
fn import_results_name_every_object_of_every_package() {
    let sent = read_0503(&write_0503_xml(&header(), &files()).unwrap()).unwrap();
    let none = HashMap::new();
    let per_file = archive::import_results(
        &sent,
        Packaging::PerFile,
        ArchiveIds::PerPackage,
        "P-",
        &none,
    );
    assert_eq!(per_file.len(), sent.walk().len());
    let a_ids: HashSet<&str> = per_file
        .iter()
        .filter(|r| r.id == id(FILE_A) || r.id == id(DOC_A1))
        .filter_map(|r| r.archive_id.as_deref())
        .collect();
    assert_eq!(a_ids, HashSet::from(["P-1"]));
    let per_case = archive::import_results(
        &sent,
        Packaging::PerCase,
        ArchiveIds::None,
        "P-",
        &HashMap::from([(id(DOC_A1), "kaputt".to_owned())]),
    );
    let named: HashSet<Uuid> = per_case.iter().map(|r| r.id).collect();
    assert!(!named.contains(&id(FILE_A)) && !named.contains(&id(FILE_B)));
    assert_eq!(named.len(), sent.walk().len() - 2);
    let failed: Vec<&ImportResult> = per_case.iter().filter(|r| !r.success).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error_messages, vec!["kaputt".to_owned()]);
    assert!(per_case.iter().all(|r| r.archive_id.is_none()));
    let header = archive::answer_header(&header(), &Party::default(), "test");
    let xml = write_0506_with(&header, &per_case, WriteStyle::Archive).unwrap();
    validate(&[("sim0506.xml", &xml)]);
    assert_eq!(
        header.receiver.institution.as_deref(),
        Some("Stadtverwaltung Erfurt")
    );
    assert!(
        header.receiver.agency_code.is_none(),
        "only the Institution, as x-man does"
    );
}
