//! Writing the disposal messages as xdomea 3.1.0 XML.
//!
//! Elements are written in the order of the XSD sequences; only what the types carry is
//! written. Every function checks its input first and fails with
//! [`XdomeaError::InvalidInput`] rather than write a message that would not validate.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, SecondsFormat};
use uuid::Uuid;

use super::error::XdomeaError;
use super::handover::{ObjectExtras, CUSTOM_FIELDS_GROUP, HANDOVER_EXTENSION_ID, METADATA_GROUP};
use super::names::primary_file_name;
use super::types::{
    Appraisal, CaseObject, CustomValue, DocumentObject, FileFormat, FileObject, ImportResult,
    MessageHeader, MessageType, Party, RenditionObject, Retention, WriteStyle,
};
use super::xml::{is_xml_char, XmlOut};

const LIST_NACHRICHTENTYP: &str = "urn:xoev-de:xdomea:codeliste:nachrichtentyp";
const LIST_AUSSONDERUNGSART: &str = "urn:xoev-de:xdomea:codeliste:aussonderungsart";
const LIST_VERTRAULICHKEIT: &str = "urn:xoev-de:xdomea:codeliste:vertraulichkeitsstufe";
const LIST_MEDIUM: &str = "urn:xoev-de:xdomea:codeliste:medium";
const LIST_DATEIFORMAT: &str = "urn:xoev-de:xdomea:codeliste:dateiformat";
const LIST_DATENTYP: &str = "urn:xoev-de:xdomea:codeliste:datentyp";

/// The lines of an UnstrukturierteAnschrift.
pub(crate) const ADDRESS_LINES: [&str; 6] =
    ["Zeile1", "Zeile2", "Zeile3", "Zeile4", "Zeile5", "Zeile6"];

/// Kennung of the application-specific extension that carries each primary file's SHA-256
/// and size in a transfer (0503), on its Dokument (AnwendungsspezifischeErweiterung).
pub const CHECKSUM_EXTENSION_ID: &str = "urn:akte:xdomea:primaerdokument-pruefsummen:1";

/// Kennung of the extension holding a file's or case's custom fields in an offer or a
/// transfer (a document's are in its checksum extension).
pub const FIELDS_EXTENSION_ID: &str = "urn:akte:xdomea:fachdaten:1";

/// Offer list (0501, Aussonderung.Anbieteverzeichnis): the files with their cases,
/// sub-files and documents, metadata only (no versions, no primary files). Our UUIDs are the
/// xdomea IDs. `header.receipt_requested` is written as Empfangsbestaetigung.
pub fn write_0501(header: &MessageHeader, files: &[FileObject]) -> Result<Vec<u8>, XdomeaError> {
    write_objects(MessageType::Offer, header, files)
}

/// The XML of a transfer (0503, Aussonderung.Aussonderung): like the offer, plus every
/// document's versions with their renditions, each pointing at its primary file in the
/// ZIP (Primaerdokument/Dateiname = [`primary_file_name`]), and each document's SHA-256 and
/// sizes in an AnwendungsspezifischeErweiterung ([`CHECKSUM_EXTENSION_ID`]).
///
/// Use [`super::TransferWriter`] to write the whole ZIP; this function is the XML alone.
pub fn write_0503_xml(
    header: &MessageHeader,
    files: &[FileObject],
) -> Result<Vec<u8>, XdomeaError> {
    write_objects(MessageType::Transfer, header, files)
}

/// Appraisal list (0502, Aussonderung.Bewertungsverzeichnis): the archive side of the
/// offer, for tests and archive simulations.
pub fn write_0502(
    header: &MessageHeader,
    appraisals: &[Appraisal],
) -> Result<Vec<u8>, XdomeaError> {
    write_0502_with(header, appraisals, WriteStyle::Full)
}

/// [`write_0502`] in a [`WriteStyle`].
pub fn write_0502_with(
    header: &MessageHeader,
    appraisals: &[Appraisal],
    style: WriteStyle,
) -> Result<Vec<u8>, XdomeaError> {
    if appraisals.is_empty() {
        return Err(XdomeaError::InvalidInput {
            object: None,
            field: "BewertetesObjekt".into(),
            reason: "an appraisal list needs at least one object".into(),
        });
    }
    let mut seen = HashMap::new();
    for a in appraisals {
        if seen.insert(a.id, ()).is_some() {
            return Err(duplicate(a.id));
        }
    }
    let mut out = XmlOut::with_style(MessageType::Appraisal, style);
    write_header(&mut out, header, MessageType::Appraisal)?;
    for a in appraisals {
        out.start("BewertetesObjekt");
        out.leaf("ID", &uuid_text(a.id))?;
        out.start("Aussonderungsart");
        out.code(
            "Aussonderungsart",
            a.decision.code(),
            None,
            Some(LIST_AUSSONDERUNGSART),
            Some("1.0"),
        )?;
        out.end();
        out.end();
    }
    Ok(out.finish())
}

/// Receipt of an offer (0504, Aussonderung.AnbietungEmpfangBestaetigen): header only.
pub fn write_0504(header: &MessageHeader) -> Result<Vec<u8>, XdomeaError> {
    write_receipt(MessageType::OfferReceipt, header, WriteStyle::Full)
}

/// [`write_0504`] in a [`WriteStyle`].
pub fn write_0504_with(header: &MessageHeader, style: WriteStyle) -> Result<Vec<u8>, XdomeaError> {
    write_receipt(MessageType::OfferReceipt, header, style)
}

/// Receipt of an appraisal (0505, Aussonderung.BewertungEmpfangBestaetigen): header only.
/// The agency sends it after reading a 0502 with `receipt_requested`.
pub fn write_0505(header: &MessageHeader) -> Result<Vec<u8>, XdomeaError> {
    write_receipt(MessageType::AppraisalReceipt, header, WriteStyle::Full)
}

/// Receipt of a transfer (0507, Aussonderung.AussonderungEmpfangBestaetigen): header only;
/// the archive side, for tests and archive simulations.
pub fn write_0507(header: &MessageHeader) -> Result<Vec<u8>, XdomeaError> {
    write_receipt(MessageType::TransferReceipt, header, WriteStyle::Full)
}

/// [`write_0507`] in a [`WriteStyle`].
pub fn write_0507_with(header: &MessageHeader, style: WriteStyle) -> Result<Vec<u8>, XdomeaError> {
    write_receipt(MessageType::TransferReceipt, header, style)
}

/// Import confirmation (0506, Aussonderung.AussonderungImportBestaetigen): the archive
/// side, for tests and archive simulations. Error codes need listURI and listVersionID.
pub fn write_0506(
    header: &MessageHeader,
    results: &[ImportResult],
) -> Result<Vec<u8>, XdomeaError> {
    write_0506_with(header, results, WriteStyle::Full)
}

/// [`write_0506`] in a [`WriteStyle`].
pub fn write_0506_with(
    header: &MessageHeader,
    results: &[ImportResult],
    style: WriteStyle,
) -> Result<Vec<u8>, XdomeaError> {
    if results.is_empty() {
        return Err(XdomeaError::InvalidInput {
            object: None,
            field: "AusgesondertesSGO".into(),
            reason: "an import confirmation needs at least one object".into(),
        });
    }
    let mut seen = HashMap::new();
    for r in results {
        if seen.insert(r.id, ()).is_some() {
            return Err(duplicate(r.id));
        }
    }
    let mut out = XmlOut::with_style(MessageType::ImportConfirmation, style);
    write_header(&mut out, header, MessageType::ImportConfirmation)?;
    for r in results {
        out.enter_object(r.id);
        out.start("AusgesondertesSGO");
        out.leaf("IDSGO", &uuid_text(r.id))?;
        out.leaf("Erfolgreich", bool_text(r.success))?;
        for m in &r.error_messages {
            out.leaf("Fehlermeldung", m)?;
        }
        for c in &r.error_codes {
            let (Some(uri), Some(version)) = (&c.list_uri, &c.list_version) else {
                return Err(XdomeaError::InvalidInput {
                    object: Some(r.id),
                    field: "FehlermeldungCode".into(),
                    reason: "listURI and listVersionID are required".into(),
                });
            };
            out.code_with_list(
                "FehlermeldungCode",
                &c.code,
                c.name.as_deref(),
                uri,
                version,
            )?;
        }
        out.leaf_opt("Archivkennung", r.archive_id.as_deref())?;
        out.end();
        out.leave_object();
    }
    Ok(out.finish())
}

fn write_receipt(
    message: MessageType,
    header: &MessageHeader,
    style: WriteStyle,
) -> Result<Vec<u8>, XdomeaError> {
    let mut out = XmlOut::with_style(message, style);
    write_header(&mut out, header, message)?;
    Ok(out.finish())
}

fn write_objects(
    message: MessageType,
    header: &MessageHeader,
    files: &[FileObject],
) -> Result<Vec<u8>, XdomeaError> {
    let mode = Mode {
        primary: message == MessageType::Transfer,
        extras: None,
    };
    write_objects_with(message, header, files, mode)
}

/// Writes a message of Schriftgutobjekte (0501, 0503, 0401) in `mode`.
pub(crate) fn write_objects_with(
    message: MessageType,
    header: &MessageHeader,
    files: &[FileObject],
    mode: Mode<'_>,
) -> Result<Vec<u8>, XdomeaError> {
    if files.is_empty() {
        return Err(XdomeaError::InvalidInput {
            object: None,
            field: "Schriftgutobjekt".into(),
            reason: "a message needs at least one file".into(),
        });
    }
    check_ids(files, mode.primary)?;
    let mut out = XmlOut::new(message);
    write_header(&mut out, header, message)?;
    for f in files {
        out.start("Schriftgutobjekt");
        write_file(&mut out, "Akte", f, mode)?;
        out.end();
    }
    Ok(out.finish())
}

// ---------------------------------------------------------------------------------------
// Checks before writing
// ---------------------------------------------------------------------------------------

fn duplicate(id: Uuid) -> XdomeaError {
    XdomeaError::InvalidInput {
        object: Some(id),
        field: "Identifikation/ID".into(),
        reason: "the ID is used by more than one object in this message".into(),
    }
}

/// Object IDs must be unique in a message; in a transfer, rendition IDs too, every version
/// needs a rendition and every format code must be known.
fn check_ids(files: &[FileObject], transfer: bool) -> Result<(), XdomeaError> {
    let mut objects = HashMap::new();
    let mut renditions = HashMap::new();
    let mut add = |id: Uuid| -> Result<(), XdomeaError> {
        match objects.insert(id, ()) {
            None => Ok(()),
            Some(()) => Err(duplicate(id)),
        }
    };
    fn walk_doc(
        d: &DocumentObject,
        add: &mut dyn FnMut(Uuid) -> Result<(), XdomeaError>,
        renditions: &mut HashMap<Uuid, ()>,
        transfer: bool,
    ) -> Result<(), XdomeaError> {
        add(d.id)?;
        if transfer {
            for v in &d.versions {
                if v.renditions.is_empty() {
                    return Err(XdomeaError::InvalidInput {
                        object: Some(d.id),
                        field: format!("Version {}", v.number),
                        reason: "a transferred version needs at least one rendition (Format)"
                            .into(),
                    });
                }
                for r in &v.renditions {
                    if renditions.insert(r.id, ()).is_some() {
                        return Err(XdomeaError::InvalidInput {
                            object: Some(d.id),
                            field: format!("Version {} rendition {}", v.number, r.id),
                            reason: "rendition ID used more than once in this transfer".into(),
                        });
                    }
                    check_format(d.id, &r.format)?;
                }
            }
        }
        for a in &d.attachments {
            walk_doc(&a.document, add, renditions, transfer)?;
        }
        Ok(())
    }
    fn walk_case(
        c: &CaseObject,
        add: &mut dyn FnMut(Uuid) -> Result<(), XdomeaError>,
        renditions: &mut HashMap<Uuid, ()>,
        transfer: bool,
    ) -> Result<(), XdomeaError> {
        add(c.id)?;
        for d in &c.documents {
            walk_doc(d, add, renditions, transfer)?;
        }
        for s in &c.sub_cases {
            walk_case(s, add, renditions, transfer)?;
        }
        Ok(())
    }
    fn walk_file(
        f: &FileObject,
        add: &mut dyn FnMut(Uuid) -> Result<(), XdomeaError>,
        renditions: &mut HashMap<Uuid, ()>,
        transfer: bool,
    ) -> Result<(), XdomeaError> {
        add(f.id)?;
        for d in &f.documents {
            walk_doc(d, add, renditions, transfer)?;
        }
        for c in &f.cases {
            walk_case(c, add, renditions, transfer)?;
        }
        for s in &f.sub_files {
            walk_file(s, add, renditions, transfer)?;
        }
        Ok(())
    }
    for f in files {
        walk_file(f, &mut add, &mut renditions, transfer)?;
    }
    Ok(())
}

fn check_format(doc: Uuid, format: &FileFormat) -> Result<(), XdomeaError> {
    if !FileFormat::is_known_code(&format.code) {
        return Err(XdomeaError::InvalidInput {
            object: Some(doc),
            field: "Format/Name".into(),
            reason: format!(
                "{:?} is not a code of code list Dateiformat 1.0 (use \"100\" with a SonstigerName)",
                format.code
            ),
        });
    }
    if format.code == "100" && format.other_name.as_deref().is_none_or(str::is_empty) {
        return Err(XdomeaError::InvalidInput {
            object: Some(doc),
            field: "Format/SonstigerName".into(),
            reason: "format code 100 (Sonstiges) needs a SonstigerName".into(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------

fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn datetime_text(t: &DateTime<FixedOffset>, style: WriteStyle) -> String {
    match style {
        WriteStyle::Full => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        WriteStyle::Archive => t.naive_local().format("%Y-%m-%dT%H:%M:%S").to_string(),
    }
}

fn date(out: &mut XmlOut, name: &'static str, d: NaiveDate) -> Result<(), XdomeaError> {
    if !(1..=9999).contains(&d.year()) {
        return Err(out.invalid(name, format!("date {d} is outside the years 1 to 9999")));
    }
    out.leaf(name, &d.format("%Y-%m-%d").to_string())
}

fn date_opt(out: &mut XmlOut, name: &'static str, d: Option<NaiveDate>) -> Result<(), XdomeaError> {
    match d {
        Some(d) => date(out, name, d),
        None => Ok(()),
    }
}

fn datetime(
    out: &mut XmlOut,
    name: &'static str,
    t: &DateTime<FixedOffset>,
) -> Result<(), XdomeaError> {
    if !(1..=9999).contains(&t.year()) {
        return Err(out.invalid(name, format!("time {t} is outside the years 1 to 9999")));
    }
    let text = datetime_text(t, out.style());
    out.leaf(name, &text)
}

/// Writes the Kopf of `message` (for the handover and file plan messages).
pub(crate) fn write_header_for(
    out: &mut XmlOut,
    header: &MessageHeader,
    message: MessageType,
) -> Result<(), XdomeaError> {
    write_header(out, header, message)
}

fn write_header(
    out: &mut XmlOut,
    header: &MessageHeader,
    message: MessageType,
) -> Result<(), XdomeaError> {
    out.start("Kopf");
    out.leaf("ProzessID", &uuid_text(header.process_id))?;
    out.code(
        "Nachrichtentyp",
        message.code(),
        None,
        Some(LIST_NACHRICHTENTYP),
        Some("2.0"),
    )?;
    datetime(out, "Erstellungszeitpunkt", &header.created)?;
    write_party(out, "Absender", &header.sender)?;
    write_party(out, "Empfaenger", &header.receiver)?;
    if let Some(sys) = &header.system {
        out.start("SendendesSystem");
        out.leaf_opt("InstanzID", sys.instance_id.as_deref())?;
        out.leaf_opt("Produktname", sys.product_name.as_deref())?;
        out.leaf_opt("Version", sys.version.as_deref())?;
        out.end();
    }
    out.leaf_opt("Hinweis", header.note.as_deref())?;
    match message {
        MessageType::Offer | MessageType::Appraisal => {
            out.leaf("Empfangsbestaetigung", bool_text(header.receipt_requested))?;
        }
        MessageType::Plan => {
            out.leaf("Empfangsbestaetigung", bool_text(header.receipt_requested))?;
        }
        MessageType::Handover => {
            // Importbestaetigung is fixed to 1 in 3.x.
            out.leaf("Importbestaetigung", "1")?;
            out.leaf("Empfangsbestaetigung", bool_text(header.receipt_requested))?;
        }
        MessageType::Transfer => {
            // Importbestaetigung is fixed to 1 in 3.x.
            out.leaf("Importbestaetigung", "1")?;
            out.leaf(
                "RueckmeldungArchivkennung",
                bool_text(header.archive_id_requested),
            )?;
            out.leaf("Empfangsbestaetigung", bool_text(header.receipt_requested))?;
        }
        _ => {}
    }
    out.end();
    Ok(())
}

fn write_party(out: &mut XmlOut, element: &'static str, p: &Party) -> Result<(), XdomeaError> {
    if p.agency_name.is_some() && p.agency_code.is_none() {
        return Err(out.invalid(
            &format!("{element}/Behoerdenkennung"),
            "agency_name needs agency_code".into(),
        ));
    }
    if p.prefix_name.is_some() && p.prefix_code.is_none() {
        return Err(out.invalid(
            &format!("{element}/Behoerdenkennung/Praefix"),
            "prefix_name needs prefix_code".into(),
        ));
    }
    if p.address_lines.len() > ADDRESS_LINES.len() {
        return Err(out.invalid(
            &format!("{element}/UnstrukturierteAnschrift"),
            format!(
                "{} address lines, at most {} fit",
                p.address_lines.len(),
                ADDRESS_LINES.len()
            ),
        ));
    }
    out.start(element);
    if p.agency_code.is_some() || p.prefix_code.is_some() {
        out.start("Behoerdenkennung");
        if let Some(code) = &p.agency_code {
            out.code(
                "Behoerdenschluessel",
                code,
                p.agency_name.as_deref(),
                p.agency_list_uri.as_deref(),
                p.agency_list_version.as_deref(),
            )?;
        }
        if let Some(code) = &p.prefix_code {
            out.code(
                "Praefix",
                code,
                p.prefix_name.as_deref(),
                p.prefix_list_uri.as_deref(),
                p.prefix_list_version.as_deref(),
            )?;
        }
        out.end();
    }
    if p.institution.is_some() || p.institution_short.is_some() {
        out.start("Institution");
        out.leaf_opt("Name", p.institution.as_deref())?;
        out.leaf_opt("Kurzbezeichnung", p.institution_short.as_deref())?;
        out.end();
    }
    if let Some(unit) = &p.org_unit {
        out.start("Organisationseinheit");
        out.leaf("Name", unit)?;
        out.end();
    }
    if let Some(person) = &p.person {
        out.start("Name");
        out.leaf_opt("Titel", person.title.as_deref())?;
        if let Some(family) = &person.family_name {
            out.start("Familienname");
            out.leaf("Name", family)?;
            out.end();
        }
        if let Some(given) = &person.given_name {
            out.start("Vorname");
            out.leaf("Name", given)?;
            out.end();
        }
        out.end();
    }
    if !p.address_lines.is_empty() {
        out.start("UnstrukturierteAnschrift");
        for (name, line) in ADDRESS_LINES.iter().zip(&p.address_lines) {
            out.leaf(name, line)?;
        }
        out.end();
    }
    out.end();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Schriftgutobjekte
// ---------------------------------------------------------------------------------------

/// The parts of AllgemeineMetadaten akte writes.
struct General<'a> {
    subject: Option<&'a str>,
    reference: Option<&'a str>,
    lead_unit: Option<&'a str>,
    confidentiality: Option<&'static str>,
    remark: Option<&'a str>,
    medium: Option<&'static str>,
    plan_unit: Option<(&'a Option<String>, &'a Option<String>)>,
}

fn write_general(out: &mut XmlOut, g: General<'_>) -> Result<(), XdomeaError> {
    if g.subject.is_none()
        && g.reference.is_none()
        && g.lead_unit.is_none()
        && g.confidentiality.is_none()
        && g.remark.is_none()
        && g.medium.is_none()
        && g.plan_unit.is_none()
    {
        return Ok(());
    }
    out.start("AllgemeineMetadaten");
    out.leaf_opt("Betreff", g.subject)?;
    out.leaf_opt("Kennzeichen", g.reference)?;
    out.leaf_opt("Federfuehrung", g.lead_unit)?;
    if let Some(code) = g.confidentiality {
        out.code(
            "Vertraulichkeitsstufe",
            code,
            None,
            Some(LIST_VERTRAULICHKEIT),
            Some("1.0"),
        )?;
    }
    out.leaf_opt("Bemerkung", g.remark)?;
    if let Some(code) = g.medium {
        out.code("Medium", code, None, Some(LIST_MEDIUM), Some("1.0"))?;
    }
    if let Some((reference, title)) = g.plan_unit {
        out.start("Aktenplaneinheit");
        out.leaf_opt("Kennzeichen", reference.as_deref())?;
        out.leaf_opt("Inhaltsangabe", title.as_deref())?;
        out.end();
    }
    out.end();
    Ok(())
}

fn write_archival(
    out: &mut XmlOut,
    retention: Option<Retention>,
    disposal: Option<&'static str>,
    retention_end: Option<NaiveDate>,
) -> Result<(), XdomeaError> {
    if retention.is_none() && disposal.is_none() && retention_end.is_none() {
        return Ok(());
    }
    out.start("ArchivspezifischeMetadaten");
    if let Some(r) = retention {
        out.start("Aufbewahrungsdauer");
        match r {
            Retention::Years(n) => out.leaf("AnzahlJahre", &n.to_string())?,
            Retention::Unlimited => out.leaf("Unbefristet", "1")?,
        }
        out.end();
    }
    if let Some(code) = disposal {
        out.start("Aussonderungsart");
        out.code(
            "Aussonderungsart",
            code,
            None,
            Some(LIST_AUSSONDERUNGSART),
            Some("1.0"),
        )?;
        out.end();
    }
    date_opt(out, "Aufbewahrungsende", retention_end)?;
    out.end();
    Ok(())
}

fn write_running_time(
    out: &mut XmlOut,
    begin: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> Result<(), XdomeaError> {
    if begin.is_none() && end.is_none() {
        return Ok(());
    }
    if let (Some(b), Some(e)) = (begin, end) {
        if e < b {
            return Err(out.invalid(
                "Laufzeit",
                format!("running time ends ({e}) before it begins ({b})"),
            ));
        }
    }
    out.start("Laufzeit");
    date_opt(out, "Beginn", begin)?;
    date_opt(out, "Ende", end)?;
    out.end();
    Ok(())
}

fn write_file(
    out: &mut XmlOut,
    element: &'static str,
    f: &FileObject,
    mode: Mode<'_>,
) -> Result<(), XdomeaError> {
    out.enter_object(f.id);
    out.start(element);
    out.start("Identifikation");
    out.leaf("ID", &uuid_text(f.id))?;
    out.end();
    write_general(
        out,
        General {
            subject: f.subject.as_deref(),
            reference: f.reference.as_deref(),
            lead_unit: f.lead_unit.as_deref(),
            confidentiality: f.confidentiality.map(|c| c.code()),
            remark: f.remark.as_deref(),
            medium: f.medium.map(|m| m.code()),
            plan_unit: f.plan_unit.as_ref().map(|p| (&p.reference, &p.title)),
        },
    )?;
    write_archival(out, f.retention, Some(f.disposal.code()), f.retention_end)?;
    write_running_time(out, f.running_begin, f.running_end)?;
    write_history(out, mode.of(f.id))?;
    if !f.documents.is_empty() || !f.cases.is_empty() || !f.sub_files.is_empty() {
        out.start("Akteninhalt");
        for d in &f.documents {
            write_document(out, "Dokument", d, None, mode)?;
        }
        for c in &f.cases {
            write_case(out, "Vorgang", c, mode)?;
        }
        for s in &f.sub_files {
            write_file(out, "Teilakte", s, mode)?;
        }
        out.end();
    }
    out.leaf("ZdA", bool_text(f.closed.is_some()))?;
    date_opt(out, "ZdADatum", f.closed)?;
    write_object_extension(out, None, mode, f.id, &f.custom_fields)?;
    out.end();
    out.leave_object();
    Ok(())
}

fn write_case(
    out: &mut XmlOut,
    element: &'static str,
    c: &CaseObject,
    mode: Mode<'_>,
) -> Result<(), XdomeaError> {
    out.enter_object(c.id);
    out.start(element);
    out.start("Identifikation");
    out.leaf("ID", &uuid_text(c.id))?;
    out.end();
    write_general(
        out,
        General {
            subject: c.subject.as_deref(),
            reference: c.reference.as_deref(),
            lead_unit: None,
            confidentiality: c.confidentiality.map(|x| x.code()),
            remark: c.remark.as_deref(),
            medium: c.medium.map(|m| m.code()),
            plan_unit: None,
        },
    )?;
    write_archival(
        out,
        c.retention,
        c.disposal.map(|d| d.code()),
        c.retention_end,
    )?;
    out.leaf("ZdA", bool_text(c.closed.is_some()))?;
    date_opt(out, "ZdADatum", c.closed)?;
    write_running_time(out, c.running_begin, c.running_end)?;
    write_history(out, mode.of(c.id))?;
    for d in &c.documents {
        write_document(out, "Dokument", d, None, mode)?;
    }
    for s in &c.sub_cases {
        write_case(out, "Teilvorgang", s, mode)?;
    }
    write_object_extension(out, None, mode, c.id, &c.custom_fields)?;
    out.end();
    out.leave_object();
    Ok(())
}

fn write_document(
    out: &mut XmlOut,
    element: &'static str,
    d: &DocumentObject,
    attachment_number: Option<&str>,
    mode: Mode<'_>,
) -> Result<(), XdomeaError> {
    out.enter_object(d.id);
    out.start(element);
    out.start("Identifikation");
    out.leaf("ID", &uuid_text(d.id))?;
    out.end();
    write_general(
        out,
        General {
            subject: d.subject.as_deref(),
            reference: d.reference.as_deref(),
            lead_unit: None,
            confidentiality: d.confidentiality.map(|x| x.code()),
            remark: None,
            medium: d.medium.map(|m| m.code()),
            plan_unit: None,
        },
    )?;
    out.leaf_opt("FremdesGeschaeftszeichen", d.foreign_reference.as_deref())?;
    date_opt(out, "Posteingangsdatum", d.received)?;
    date_opt(out, "Postausgangsdatum", d.sent)?;
    date_opt(out, "DatumDesSchreibens", d.letter_date)?;
    out.leaf_opt("Bearbeiter", d.clerk.as_deref())?;
    out.leaf_opt("Typ", d.kind.as_deref())?;
    write_history(out, mode.of(d.id))?;
    if mode.primary {
        for v in &d.versions {
            out.start("Version");
            out.leaf("Nummer", &v.number.to_string())?;
            for r in &v.renditions {
                write_rendition(out, r)?;
            }
            out.end();
        }
    }
    for a in &d.attachments {
        write_document(out, "Anlage", &a.document, a.number.as_deref(), mode)?;
    }
    for p in &d.senders {
        write_party(out, "Absender", p)?;
    }
    for p in &d.recipients {
        write_party(out, "Empfaenger", p)?;
    }
    write_object_extension(out, Some(d), mode, d.id, &d.custom_fields)?;
    out.leaf_opt("Nummer", attachment_number)?;
    out.end();
    out.leave_object();
    Ok(())
}

fn write_rendition(out: &mut XmlOut, r: &RenditionObject) -> Result<(), XdomeaError> {
    out.start("Format");
    out.code(
        "Name",
        &r.format.code,
        None,
        Some(LIST_DATEIFORMAT),
        Some("1.0"),
    )?;
    out.leaf_opt("SonstigerName", r.format.other_name.as_deref())?;
    out.leaf("Version", &r.format.version)?;
    out.start("Primaerdokument");
    out.leaf("Dateiname", &primary_file_name(r))?;
    // An uploaded name may hold characters XML cannot carry; they become U+FFFD here (the
    // ZIP name is sanitised anyway).
    let original: String = r
        .file_name
        .chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    out.leaf("DateinameOriginal", &original)?;
    if let Some(t) = &r.created {
        datetime(out, "DatumUhrzeit", t)?;
    }
    out.end();
    out.end();
    Ok(())
}

/// What a message of Schriftgutobjekte carries besides their metadata.
#[derive(Clone, Copy)]
pub(crate) struct Mode<'a> {
    /// Versions with their renditions and primary files (0503, 0401).
    pub primary: bool,
    /// History and further metadata per object (0401).
    pub extras: Option<&'a HashMap<Uuid, ObjectExtras>>,
}

impl<'a> Mode<'a> {
    fn of(&self, id: Uuid) -> Option<&'a ObjectExtras> {
        self.extras.and_then(|e| e.get(&id))
    }
}

/// The history of an object (HistorienProtokollInformation, one per record).
fn write_history(out: &mut XmlOut, extras: Option<&ObjectExtras>) -> Result<(), XdomeaError> {
    let Some(extras) = extras else {
        return Ok(());
    };
    for h in &extras.history {
        out.start("HistorienProtokollInformation");
        out.leaf_opt("MetadatumName", h.field.as_deref())?;
        out.leaf_opt("MetadatumAlterWert", h.old.as_deref())?;
        out.leaf_opt("MetadatumNeuerWert", h.new.as_deref())?;
        out.leaf("Akteur", &h.actor)?;
        datetime(out, "DatumUhrzeit", &h.at)?;
        out.leaf_opt("Bemerkung", h.remark.as_deref())?;
        out.leaf("Aktion", &h.action)?;
        out.end();
    }
    Ok(())
}

/// The handover extension of an object: each primary file's SHA-256 and size
/// (documents), and the object's further metadata as named fields.
/// The one AnwendungsspezifischeErweiterung an object may have: in a handover akte's
/// handover extension; otherwise, in a transfer, a document's checksums, and the custom
/// fields of any object (in the checksum extension of a document, else in an extension of
/// their own, [`FIELDS_EXTENSION_ID`]).
fn write_object_extension(
    out: &mut XmlOut,
    document: Option<&DocumentObject>,
    mode: Mode<'_>,
    id: Uuid,
    custom: &[CustomValue],
) -> Result<(), XdomeaError> {
    if mode.extras.is_some() {
        return write_extension(out, document, mode.of(id), custom);
    }
    match document {
        Some(d) if mode.primary && d.versions.iter().any(|v| !v.renditions.is_empty()) => {
            write_checksums(out, d, custom)
        }
        _ if !custom.is_empty() => {
            out.start("AnwendungsspezifischeErweiterung");
            out.leaf("Kennung", FIELDS_EXTENSION_ID)?;
            out.leaf("Name", "Fachdaten")?;
            out.leaf(
                "Beschreibung",
                "Fachdaten der Behörde: in akte definierte Felder des Objekts",
            )?;
            write_custom_group(out, custom)?;
            out.end();
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The Feldgruppe of an object's custom fields, each Feld with its Datentyp.
fn write_custom_group(out: &mut XmlOut, custom: &[CustomValue]) -> Result<(), XdomeaError> {
    if custom.is_empty() {
        return Ok(());
    }
    out.start("Feldgruppe");
    out.leaf("Name", CUSTOM_FIELDS_GROUP)?;
    out.leaf(
        "Beschreibung",
        "Fachdaten der abgebenden Behörde (in akte definierte Felder)",
    )?;
    for v in custom {
        out.start("Feld");
        out.leaf("Name", &v.name)?;
        if let Some(t) = &v.datatype {
            out.code("Datentyp", t, None, Some(LIST_DATENTYP), Some("1.1"))?;
        }
        out.leaf("Wert", &v.value)?;
        out.end();
    }
    out.end();
    Ok(())
}

fn write_extension(
    out: &mut XmlOut,
    document: Option<&DocumentObject>,
    extras: Option<&ObjectExtras>,
    custom: &[CustomValue],
) -> Result<(), XdomeaError> {
    let metadata = extras.map(|e| e.metadata.as_slice()).unwrap_or_default();
    let files: Vec<(u32, &RenditionObject)> = document
        .map(|d| {
            d.versions
                .iter()
                .flat_map(|v| v.renditions.iter().map(move |r| (v.number, r)))
                .collect()
        })
        .unwrap_or_default();
    if metadata.is_empty() && files.is_empty() && custom.is_empty() {
        return Ok(());
    }
    out.start("AnwendungsspezifischeErweiterung");
    out.leaf("Kennung", HANDOVER_EXTENSION_ID)?;
    out.leaf("Name", "akte: Prüfsummen und Metadaten")?;
    out.leaf(
        "Beschreibung",
        "SHA-256 (hexadezimal) und Größe in Bytes jeder Datei dieses Dokuments; weitere \
         Metadaten des Objekts als benannte Felder",
    )?;
    for (number, r) in files {
        out.start("Feldgruppe");
        out.leaf("Name", &primary_file_name(r))?;
        out.leaf("Beschreibung", &format!("Version {number}"))?;
        for (name, value) in [
            ("SHA-256", r.digest.to_hex()),
            ("Groesse", r.size.to_string()),
        ] {
            out.start("Feld");
            out.leaf("Name", name)?;
            out.leaf("Wert", &value)?;
            out.end();
        }
        out.end();
    }
    if !metadata.is_empty() {
        out.start("Feldgruppe");
        out.leaf("Name", METADATA_GROUP)?;
        out.leaf("Beschreibung", "Metadaten des Objekts in akte")?;
        for (name, value) in metadata {
            out.start("Feld");
            out.leaf("Name", name)?;
            out.leaf("Wert", value)?;
            out.end();
        }
        out.end();
    }
    write_custom_group(out, custom)?;
    out.end();
    Ok(())
}

/// SHA-256 and size of each primary file of a document, as an application-specific
/// extension: one Feldgruppe per file, named by its name in the ZIP.
fn write_checksums(
    out: &mut XmlOut,
    d: &DocumentObject,
    custom: &[CustomValue],
) -> Result<(), XdomeaError> {
    out.start("AnwendungsspezifischeErweiterung");
    out.leaf("Kennung", CHECKSUM_EXTENSION_ID)?;
    out.leaf("Name", "Prüfsummen der Primärdokumente")?;
    out.leaf(
        "Beschreibung",
        "SHA-256 (hexadezimal) und Größe in Bytes jeder Datei dieses Dokuments im Aussonderungspaket",
    )?;
    for v in &d.versions {
        for r in &v.renditions {
            out.start("Feldgruppe");
            out.leaf("Name", &primary_file_name(r))?;
            out.leaf("Beschreibung", &format!("Version {}", v.number))?;
            out.start("Feld");
            out.leaf("Name", "SHA-256")?;
            out.code("Datentyp", "018", None, Some(LIST_DATENTYP), Some("1.1"))?;
            out.leaf("Wert", &r.digest.to_hex())?;
            out.end();
            out.start("Feld");
            out.leaf("Name", "Groesse")?;
            out.code("Datentyp", "043", None, Some(LIST_DATENTYP), Some("1.1"))?;
            out.leaf("Wert", &r.size.to_string())?;
            out.end();
            out.end();
        }
    }
    write_custom_group(out, custom)?;
    out.end();
    Ok(())
}
