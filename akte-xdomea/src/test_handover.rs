//! Tests of the handover messages (0401 to 0403) and of reading packages as a migration
//! source. Every message written is validated against the 3.1.0 XSD with xmllint.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use chrono::DateTime;
use uuid::Uuid;

use super::tests::{content, files, header, validate};
use super::*;

fn extras(files: &[FileObject]) -> HashMap<Uuid, ObjectExtras> {
    let mut out = HashMap::new();
    let f = &files[0];
    out.insert(
        f.id,
        ObjectExtras {
            history: vec![
                HistoryRecord {
                    field: Some("subject".into()),
                    old: None,
                    new: Some("\"Neubau <Gartenstraße>\"".into()),
                    actor: "registrar:weber".into(),
                    at: DateTime::parse_from_rfc3339("2014-03-02T10:00:00+01:00").unwrap(),
                    remark: None,
                    action: "file.create".into(),
                },
                HistoryRecord {
                    field: None,
                    old: None,
                    new: None,
                    actor: "registrar:weber".into(),
                    at: DateTime::parse_from_rfc3339("2014-06-30T10:00:00Z").unwrap(),
                    remark: Some("zdA".into()),
                    action: "file.close".into(),
                },
            ],
            metadata: vec![
                ("vorheriges_kennzeichen".into(), "63/12-2009".into()),
                ("vorheriges_kennzeichen".into(), "63/12-2010".into()),
            ],
        },
    );
    let case = &f.cases[0];
    out.insert(
        case.id,
        ObjectExtras {
            history: vec![],
            metadata: vec![("nummer".into(), "1".into())],
        },
    );
    let doc = &f.documents[0];
    out.insert(
        doc.id,
        ObjectExtras {
            history: vec![],
            metadata: vec![("version.1.kommentar".into(), "Entwurf & Endfassung".into())],
        },
    );
    out
}

fn zip_0401(handover: &Handover) -> Vec<u8> {
    write_0401(
        Cursor::new(Vec::new()),
        &header(),
        handover,
        TransferOptions::default(),
        |r: &RenditionObject| Ok::<_, std::io::Error>(Cursor::new(content(r.id))),
    )
    .unwrap()
    .into_inner()
}

#[test]
fn a_handover_validates_and_reads_back_with_history_metadata_and_checksums() {
    let files = files();
    let handover = Handover {
        extras: extras(&files),
        files,
    };
    let zip = zip_0401(&handover);
    let xml = read_message_zip(Cursor::new(&zip), MessageType::Handover, 64 << 20).unwrap();
    validate(&[("0401.xml", &xml)]);
    let read = read_package(&xml, MessageType::Handover).unwrap();
    // A handover has no RueckmeldungArchivkennung.
    let expected = MessageHeader {
        archive_id_requested: false,
        ..header()
    };
    assert_eq!(read.header, expected);
    assert_eq!(read.files.len(), handover.files.len());
    let (a, b) = (&read.files[0], &handover.files[0]);
    assert_eq!(
        (
            &a.id,
            &a.reference,
            &a.subject,
            a.closed,
            a.retention,
            a.disposal
        ),
        (
            &b.id,
            &b.reference,
            &b.subject,
            b.closed,
            b.retention,
            b.disposal
        )
    );
    assert_eq!(a.cases[0].id, b.cases[0].id);
    assert_eq!(a.documents[0].subject, b.documents[0].subject);
    // The agency's own fields come back typed as written (Fachdaten).
    assert_eq!(b.custom_fields.len(), 2);
    assert_eq!(a.custom_fields, b.custom_fields);
    assert_eq!(read.extras, handover.extras);
    // Every rendition: its ZIP entry, declared size and digest as written, and the bytes.
    let mut archive = ::zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    let mut count = 0;
    for f in &read.files {
        let mut all = Vec::new();
        super::package::for_each_rendition(std::slice::from_ref(f), &mut |r| all.push(r.clone()));
        for r in all {
            let p = &read.primary_files[&r.id];
            let mut bytes = Vec::new();
            archive
                .by_name(&p.zip_name)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            assert_eq!(bytes, content(r.id));
            assert_eq!(p.sha256, Some(akte_verify::digest::Digest::of(&bytes)));
            assert_eq!(r.size, bytes.len() as u64);
            count += 1;
        }
    }
    assert!(count >= 3, "{count}");
}

#[test]
fn receipts_and_confirmations_of_a_handover_validate_and_read_back() {
    let files = files();
    let results = vec![
        HandoverResult {
            id: files[0].id,
            success: true,
            error_messages: vec![],
        },
        HandoverResult {
            id: files[1].id,
            success: false,
            error_messages: vec!["Aktenzeichen bereits vergeben".into()],
        },
    ];
    let x0402 = write_0402(&header(), &results).unwrap();
    let x0403 = write_0403(&header()).unwrap();
    validate(&[("0402.xml", &x0402), ("0403.xml", &x0403)]);
    let c = read_0402(&x0402).unwrap();
    assert_eq!(c.results, results);
    assert_eq!(c.header.process_id, header().process_id);
    let r = read_0403(&x0403).unwrap();
    assert_eq!(r.message_type, MessageType::HandoverReceipt);
    // Each reader takes only its own message.
    assert!(matches!(
        read_0402(&x0403),
        Err(XdomeaError::WrongMessageType { .. })
    ));
    assert!(write_0402(&header(), &[]).is_err());
    let twice = vec![results[0].clone(), results[0].clone()];
    assert!(write_0402(&header(), &twice).is_err());
}

#[test]
fn a_transfer_of_another_system_reads_as_a_package() {
    let files = files();
    let mut zip = Cursor::new(Vec::new());
    zip = write_0503(zip, &header(), &files, |r: &RenditionObject| {
        Ok::<_, std::io::Error>(Cursor::new(content(r.id)))
    })
    .unwrap();
    let xml = read_message_zip(
        Cursor::new(zip.into_inner()),
        MessageType::Transfer,
        64 << 20,
    )
    .unwrap();
    let read = read_package(&xml, MessageType::Transfer).unwrap();
    assert_eq!(read.files.len(), files.len());
    assert!(read.extras.is_empty());
    // akte's 0503 declares its checksums; they are taken over.
    assert!(read.primary_files.values().all(|p| p.sha256.is_some()));
}

#[test]
fn bad_packages_are_refused_naming_the_place() {
    let files = files();
    let handover = Handover {
        extras: extras(&files),
        files,
    };
    let xml = String::from_utf8(write_0401_xml(&header(), &handover).unwrap()).unwrap();
    let cases = [
        // A path instead of a file name.
        (
            xml.replacen("<xdomea:Dateiname>", "<xdomea:Dateiname>../../etc/", 1),
            "plain name",
        ),
        // Twice the same id.
        (
            {
                let first = handover.files[0].id.to_string();
                let second = handover.files[1].id.to_string();
                xml.replace(&second, &first)
            },
            "",
        ),
        // A case at the top level.
        (
            xml.replacen(
                "<xdomea:Schriftgutobjekt>",
                "<xdomea:Schriftgutobjekt><xdomea:Vorgang><xdomea:Identifikation><xdomea:ID>11111111-2222-4333-8444-555555555555</xdomea:ID></xdomea:Identifikation></xdomea:Vorgang>",
                1,
            ),
            "only files",
        ),
        // An element the schema does not have there.
        (
            xml.replacen("<xdomea:ZdA>", "<xdomea:Unbekannt>x</xdomea:Unbekannt><xdomea:ZdA>", 1),
            "Unbekannt",
        ),
        // Closed without a date.
        (
            xml.replacen("<xdomea:ZdA>0</xdomea:ZdA>", "<xdomea:ZdA>1</xdomea:ZdA>", 1),
            "ZdADatum",
        ),
        // An entity bomb.
        (
            xml.replacen(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]>",
                1,
            ),
            "",
        ),
    ];
    for (bad, needle) in cases {
        let err = read_package(bad.as_bytes(), MessageType::Handover).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    }
    // A 0503 is not a 0401.
    assert!(matches!(
        read_package(xml.as_bytes(), MessageType::Transfer),
        Err(XdomeaError::WrongMessageType { .. })
    ));
}

fn plan() -> FilePlan {
    let unit = |code: &str, title: &str, children| PlanUnitEntry {
        code: code.into(),
        title: Some(title.into()),
        disposal: DisposalDecision::Appraise,
        valid_from: None,
        valid_until: None,
        inactive: false,
        retention: Retention::Years(10),
        children,
    };
    let mut bau = unit("632", "Bauordnung & Bauaufsicht", vec![]);
    let mut old = unit("632.9", "Altfälle", vec![]);
    old.inactive = true;
    old.retention = Retention::Unlimited;
    old.disposal = DisposalDecision::Archive;
    old.valid_until = chrono::NaiveDate::from_ymd_opt(2020, 12, 31);
    bau.children = vec![unit("632.1", "Baugenehmigungen", vec![]), old];
    FilePlan {
        name: "Aktenplan Stadt Erfurt".into(),
        version: "2026-1".into(),
        units: vec![unit("0", "Allgemeine Verwaltung", vec![]), bau],
    }
}

#[test]
fn a_file_plan_and_its_receipt_validate_and_read_back() {
    let x0301 = write_0301(&header(), &plan()).unwrap();
    let x0302 = write_0302(&header()).unwrap();
    validate(&[("0301.xml", &x0301), ("0302.xml", &x0302)]);
    let read = read_0301(&x0301).unwrap();
    assert_eq!(read.plan, plan());
    assert_eq!(
        read_0302(&x0302).unwrap().message_type,
        MessageType::PlanReceipt
    );
    // Codes are unique.
    let mut twice = plan();
    twice.units[1].children[0].code = "0".into();
    assert!(write_0301(&header(), &twice).is_err());
    let xml = String::from_utf8(x0301).unwrap();
    let bad = xml.replacen("<xdomea:Kennzeichen>632.1<", "<xdomea:Kennzeichen>0<", 1);
    let err = read_0301(bad.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let bad = xml.replacen("<xdomea:Stillgelegt>0</xdomea:Stillgelegt>", "", 1);
    assert!(read_0301(bad.as_bytes()).is_err());
}

/// Writes the seed corpus of the fuzz target `xdomea_exchange` (run with --ignored).
#[test]
#[ignore]
fn write_exchange_fuzz_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xdomea_exchange");
    std::fs::create_dir_all(&dir).unwrap();
    let files = files();
    let results = vec![HandoverResult {
        id: files[0].id,
        success: false,
        error_messages: vec!["Aktenzeichen vergeben".into()],
    }];
    let handover = Handover {
        extras: extras(&files),
        files,
    };
    let seeds: [(&str, Vec<u8>); 5] = [
        (
            "0401_valid.xml",
            write_0401_xml(&header(), &handover).unwrap(),
        ),
        ("0402_valid.xml", write_0402(&header(), &results).unwrap()),
        ("0403_valid.xml", write_0403(&header()).unwrap()),
        ("0301_valid.xml", write_0301(&header(), &plan()).unwrap()),
        ("0302_valid.xml", write_0302(&header()).unwrap()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A 0503 as other systems fill it: optional elements akte does not take over (Standort,
/// Typ, Aktenbetreff, Bezug, Hier, Verweis, Kontakt, SignaturSiegel, extensions of their
/// own) are accepted, and the package reads with what akte takes over.
#[test]
fn optional_elements_other_systems_fill_are_accepted() {
    let files = files();
    let xml = String::from_utf8(write_0503_xml(&header(), &files).unwrap()).unwrap();
    let once = |xml: String, anchor: &str, insert: &str| -> String {
        assert!(xml.contains(anchor), "no {anchor} in the fixture");
        xml.replacen(anchor, &format!("{insert}{anchor}"), 1)
    };
    let mut x = once(
        xml,
        "<xdomea:Laufzeit>",
        "<xdomea:Standort>Keller 2, Regal 4</xdomea:Standort><xdomea:Typ>Bauakte</xdomea:Typ>",
    );
    x = once(
        x,
        "<xdomea:Bearbeiter>",
        "<xdomea:Bezug>Ihr Schreiben vom 3. Januar</xdomea:Bezug><xdomea:Hier>Eingang Bürgerbüro</xdomea:Hier>",
    );
    x = once(
        x,
        "<xdomea:DatumUhrzeit>",
        "<xdomea:Ersteller>Scanstelle Müller</xdomea:Ersteller>",
    );
    let checked = x.clone();
    validate(&[("legacy-0503.xml", checked.as_bytes())]);
    let read = read_package(x.as_bytes(), MessageType::Transfer).unwrap();
    assert_eq!(read.files.len(), files.len());
    assert!(read
        .primary_files
        .values()
        .any(|p| p.creator.as_deref() == Some("Scanstelle Müller")));
    // Something the schema does not have there is refused, naming it.
    let bad = checked
        .replacen("<xdomea:Standort>", "<xdomea:Lagerort>", 1)
        .replacen("</xdomea:Standort>", "</xdomea:Lagerort>", 1);
    let err = read_package(bad.as_bytes(), MessageType::Transfer).unwrap_err();
    assert!(err.to_string().contains("Lagerort"), "{err}");
}
