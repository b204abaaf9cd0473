//! Handover between agencies (Abgabe, 0401 to 0403), and reading packages of
//! Schriftgutobjekte with everything in them, as a migration source.
//!
//! | message | direction | here |
//! |---|---|---|
//! | 0401 Abgabe.Abgabe (files with documents, versions, primary files, history) | giving → receiving agency | [`write_0401`], [`write_0401_xml`], [`read_package`] |
//! | 0402 Abgabe.ImportBestaetigen (import result per object) | receiving → giving | [`write_0402`], [`read_0402`] |
//! | 0403 Abgabe.EmpfangBestaetigen (receipt) | receiving → giving | [`write_0403`], [`read_0403`] |
//!
//! A 0401 carries, besides what a transfer (0503) carries, each object's history
//! (HistorienProtokollInformation) and akte's further metadata as named fields in an
//! AnwendungsspezifischeErweiterung ([`HANDOVER_EXTENSION_ID`]), which also holds every
//! primary file's SHA-256 and size. [`read_package`] reads a 0401, and a 0503 that
//! another system wrote of its stock, into the same plain types; it is strict about what
//! it uses and names the element and line of every problem.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};

use chrono::{DateTime, FixedOffset, NaiveDate};
use uuid::Uuid;

use super::error::XdomeaError;
use super::package::{for_each_rendition, TransferOptions, TransferWriter};
use super::read::{
    open, opt_text, parse_bool, parse_datetime, parse_uuid, read_header, read_party, read_receipt,
};
use super::types::*;
use super::write::{write_objects_with, Mode, CHECKSUM_EXTENSION_ID, FIELDS_EXTENSION_ID};
use super::xml::{collapse, Node, PathBuf, XmlOut};
use akte_verify::digest::Digest;

/// Kennung of akte's extension in a handover (0401): primary files' SHA-256 and size, and
/// the object's further metadata ([`METADATA_GROUP`]).
pub const HANDOVER_EXTENSION_ID: &str = "urn:akte:xdomea:abgabe:1";

/// Name of the Feldgruppe holding an object's further metadata in the handover extension.
pub const METADATA_GROUP: &str = "Metadaten";

/// Name of the Feldgruppe holding an object's agency metadata (the tenant's custom
/// fields), each a Feld with Name, Datentyp (code list Datentyp 1.1) and Wert.
pub const CUSTOM_FIELDS_GROUP: &str = "Fachdaten";

/// Most objects (files, cases, documents) one package may hold.
pub const MAX_PACKAGE_OBJECTS: usize = 1_000_000;

/// One entry of an object's history (HistorienProtokollInformation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// MetadatumName: the field changed, if one was.
    pub field: Option<String>,
    /// MetadatumAlterWert.
    pub old: Option<String>,
    /// MetadatumNeuerWert.
    pub new: Option<String>,
    /// Akteur.
    pub actor: String,
    /// DatumUhrzeit.
    pub at: DateTime<FixedOffset>,
    /// Bemerkung.
    pub remark: Option<String>,
    /// Aktion.
    pub action: String,
}

/// What a handover carries of an object besides its xdomea metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectExtras {
    /// Its history, oldest first.
    pub history: Vec<HistoryRecord>,
    /// Further metadata as named fields (a name may repeat), in order.
    pub metadata: Vec<(String, String)>,
}

impl ObjectExtras {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.metadata
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The content of a handover: files (with sub-files, cases, documents, versions) and the
/// extras of each object by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    /// The files handed over.
    pub files: Vec<FileObject>,
    /// History and further metadata per object.
    pub extras: HashMap<Uuid, ObjectExtras>,
}

/// The XML of a handover (0401). Versions with their renditions are written as in a
/// transfer; every primary file goes into the ZIP ([`write_0401`]).
pub fn write_0401_xml(header: &MessageHeader, handover: &Handover) -> Result<Vec<u8>, XdomeaError> {
    let mode = Mode {
        primary: true,
        extras: Some(&handover.extras),
    };
    write_objects_with(MessageType::Handover, header, &handover.files, mode)
}

/// Writes a whole handover ZIP (`{ProzessID}_Abgabe.Abgabe.0401.zip`): the XML, then every
/// rendition's bytes from `open(rendition)`, streamed and checked against size and SHA-256.
pub fn write_0401<W, R, E, F>(
    out: W,
    header: &MessageHeader,
    handover: &Handover,
    options: TransferOptions,
    mut open: F,
) -> Result<W, XdomeaError>
where
    W: Write + Seek,
    R: Read,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnMut(&RenditionObject) -> Result<R, E>,
{
    let xml = write_0401_xml(header, handover)?;
    let mut writer = TransferWriter::start(
        out,
        header,
        MessageType::Handover,
        xml,
        &handover.files,
        options,
    )?;
    let mut renditions: Vec<&RenditionObject> = Vec::new();
    for_each_rendition(&handover.files, &mut |r| renditions.push(r));
    for r in renditions {
        let reader = open(r).map_err(|e| XdomeaError::Source {
            rendition: r.id,
            source: e.into(),
        })?;
        writer.add_primary_file(r.id, reader)?;
    }
    writer.finish()
}

/// The receiving agency's result for one handed-over object (AbgegebenesObjekt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverResult {
    /// IDSGO: the object's id in the handover.
    pub id: Uuid,
    /// Erfolgreich.
    pub success: bool,
    /// Fehlermeldung: why it failed.
    pub error_messages: Vec<String>,
}

/// A read 0402.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverConfirmation {
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version.
    pub schema: SchemaVersion,
    /// AbgegebenesObjekt, in order; ids unique.
    pub results: Vec<HandoverResult>,
}

/// Import confirmation of a handover (0402, Abgabe.ImportBestaetigen).
pub fn write_0402(
    header: &MessageHeader,
    results: &[HandoverResult],
) -> Result<Vec<u8>, XdomeaError> {
    if results.is_empty() {
        return Err(XdomeaError::InvalidInput {
            object: None,
            field: "AbgegebenesObjekt".into(),
            reason: "an import confirmation needs at least one object".into(),
        });
    }
    let mut seen = HashMap::new();
    let mut out = XmlOut::new(MessageType::HandoverImportConfirmation);
    super::write::write_header_for(&mut out, header, MessageType::HandoverImportConfirmation)?;
    for r in results {
        if seen.insert(r.id, ()).is_some() {
            return Err(XdomeaError::InvalidInput {
                object: Some(r.id),
                field: "IDSGO".into(),
                reason: "the ID is used by more than one object in this message".into(),
            });
        }
        out.enter_object(r.id);
        out.start("AbgegebenesObjekt");
        out.leaf("IDSGO", &r.id.hyphenated().to_string())?;
        out.leaf("Erfolgreich", if r.success { "1" } else { "0" })?;
        for m in &r.error_messages {
            out.leaf("Fehlermeldung", m)?;
        }
        out.end();
        out.leave_object();
    }
    Ok(out.finish())
}

/// Receipt of a handover (0403, Abgabe.EmpfangBestaetigen): header only.
pub fn write_0403(header: &MessageHeader) -> Result<Vec<u8>, XdomeaError> {
    let mut out = XmlOut::new(MessageType::HandoverReceipt);
    super::write::write_header_for(&mut out, header, MessageType::HandoverReceipt)?;
    Ok(out.finish())
}

/// Reads a receipt of a handover (0403).
pub fn read_0403(xml: &[u8]) -> Result<Receipt, XdomeaError> {
    read_receipt(xml, MessageType::HandoverReceipt)
}

/// Reads an import confirmation of a handover (0402). Duplicate ids are errors.
pub fn read_0402(xml: &[u8]) -> Result<HandoverConfirmation, XdomeaError> {
    let message = MessageType::HandoverImportConfirmation;
    let (root, schema) = open(xml, message)?;
    let path = PathBuf(format!("/{}", root.name));
    let node = Node::root(&root, schema.namespace(), &path);
    node.check_children(&["Kopf", "AbgegebenesObjekt"])?;
    let header = node.descend(node.one("Kopf")?, None, |k| read_header(k, message))?;
    let elements = node.all("AbgegebenesObjekt");
    if elements.is_empty() {
        return Err(XdomeaError::Missing {
            location: node.location(),
            element: "AbgegebenesObjekt".into(),
        });
    }
    let mut seen: HashMap<Uuid, u32> = HashMap::new();
    let mut results = Vec::with_capacity(elements.len());
    for (i, el) in elements.into_iter().enumerate() {
        results.push(node.descend(el, Some(i + 1), |o| {
            o.check_children(&["IDSGO", "Erfolgreich", "Fehlermeldung", "FehlermeldungCode"])?;
            let id_el = o.one("IDSGO")?;
            let id = o.descend(id_el, None, parse_uuid)?;
            if let Some(first_line) = seen.insert(id, id_el.line) {
                return Err(XdomeaError::DuplicateId {
                    location: o.location(),
                    id,
                    first_line,
                });
            }
            let success = o.descend(o.one("Erfolgreich")?, None, parse_bool)?;
            let mut error_messages = Vec::new();
            for (j, m) in o.all("Fehlermeldung").into_iter().enumerate() {
                error_messages.push(o.descend(m, Some(j + 1), |t| Ok(t.text()?.to_owned()))?);
            }
            for (j, c) in o.all("FehlermeldungCode").into_iter().enumerate() {
                let code = o.descend(c, Some(j + 1), |t| t.code())?;
                error_messages.push(match code.name {
                    Some(n) => format!("{} {n}", code.code),
                    None => code.code,
                });
            }
            Ok(HandoverResult {
                id,
                success,
                error_messages,
            })
        })?);
    }
    Ok(HandoverConfirmation {
        header,
        schema,
        results,
    })
}

/// Where a rendition's bytes are in a received package, and what the sender declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryFileRef {
    /// Primaerdokument/Dateiname: the entry's name in the ZIP.
    pub zip_name: String,
    /// Primaerdokument/Ersteller.
    pub creator: Option<String>,
    /// SHA-256 the sender declared (in akte's checksum or handover extension), if any.
    pub sha256: Option<Digest>,
    /// Size the sender declared, if any.
    pub size: Option<u64>,
}

/// A received package of Schriftgutobjekte (a 0401, or a 0503 read as migration source)
/// with everything akte takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPackage {
    /// 0401 or 0503.
    pub message: MessageType,
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version.
    pub schema: SchemaVersion,
    /// The files (Akte) with their content. Renditions carry the declared size and
    /// SHA-256 where the sender declared them, else 0 and the zero digest.
    pub files: Vec<FileObject>,
    /// History and further metadata per object.
    pub extras: HashMap<Uuid, ObjectExtras>,
    /// Per rendition id: its entry in the ZIP.
    pub primary_files: HashMap<Uuid, PrimaryFileRef>,
}

const AKTE: &[&str] = &[
    "Identifikation",
    "AllgemeineMetadaten",
    "ArchivspezifischeMetadaten",
    "Standort",
    "Typ",
    "Laufzeit",
    "HistorienProtokollInformation",
    "InternerGeschaeftsgang",
    "Akteninhalt",
    "Verweis",
    "Kontakt",
    "ZdA",
    "ZdADatum",
    "AnwendungsspezifischeErweiterung",
    "AnwendungsspezifischeErweiterungXML",
];

const VORGANG: &[&str] = &[
    "Identifikation",
    "AllgemeineMetadaten",
    "ArchivspezifischeMetadaten",
    "Aktenbetreff",
    "Typ",
    "ZdA",
    "ZdADatum",
    "Laufzeit",
    "HistorienProtokollInformation",
    "InternerGeschaeftsgang",
    "Dokument",
    "Verweis",
    "Kontakt",
    "Teilvorgang",
    "AnwendungsspezifischeErweiterung",
    "AnwendungsspezifischeErweiterungXML",
];

const DOKUMENT: &[&str] = &[
    "Identifikation",
    "AllgemeineMetadaten",
    "FremdesGeschaeftszeichen",
    "Posteingangsdatum",
    "Postausgangsdatum",
    "DatumDesSchreibens",
    "Bezug",
    "Hier",
    "Bearbeiter",
    "Typ",
    "HistorienProtokollInformation",
    "InternerGeschaeftsgang",
    "Version",
    "Verweis",
    "Anlage",
    "Absender",
    "Empfaenger",
    "WeitererKontakt",
    "AnwendungsspezifischeErweiterung",
    "AnwendungsspezifischeErweiterungXML",
    "Nummer",
];

/// Reads the XML of a handover (0401) or of a transfer (0503, `message`) with all the
/// metadata akte takes over. Only files (Akte) may stand at the top level.
pub fn read_package(xml: &[u8], message: MessageType) -> Result<ReceivedPackage, XdomeaError> {
    if !matches!(message, MessageType::Handover | MessageType::Transfer) {
        return Err(XdomeaError::Container(format!(
            "a {} is not a package of Schriftgutobjekte",
            message.code()
        )));
    }
    let (root, schema) = open(xml, message)?;
    let path = PathBuf(format!("/{}", root.name));
    let node = Node::root(&root, schema.namespace(), &path);
    node.check_children(&["Kopf", "Anschreiben", "Schriftgutobjekt", "Aktenplan"])?;
    let header = node.descend(node.one("Kopf")?, None, |k| read_header(k, message))?;
    let elements = node.all("Schriftgutobjekt");
    if elements.is_empty() {
        return Err(XdomeaError::Missing {
            location: node.location(),
            element: "Schriftgutobjekt".into(),
        });
    }
    let mut state = State::default();
    let mut files = Vec::with_capacity(elements.len());
    for (i, el) in elements.into_iter().enumerate() {
        files.push(node.descend(el, Some(i + 1), |s| {
            s.check_children(&["Akte", "Vorgang", "Dokument"])?;
            for other in ["Vorgang", "Dokument"] {
                if let Some(first) = s.all(other).first() {
                    return Err(XdomeaError::Unexpected {
                        location: s.descend(first, None, |n| Ok(n.location()))?,
                        element: other.into(),
                        reason: "only files (Akte) can be taken over at the top level; \
                                 put the case or document into a file"
                            .into(),
                    });
                }
            }
            s.descend(s.one("Akte")?, None, |a| state.file(a))
        })?);
    }
    Ok(ReceivedPackage {
        message,
        header,
        schema,
        files,
        extras: state.extras,
        primary_files: state.primary,
    })
}

#[derive(Default)]
struct State {
    seen: HashMap<Uuid, u32>,
    /// Declared checksums of the document being read, by ZIP name.
    sums: HashMap<String, (Option<Digest>, Option<u64>)>,
    extras: HashMap<Uuid, ObjectExtras>,
    primary: HashMap<Uuid, PrimaryFileRef>,
}

/// What the general and archival metadata of an object say.
#[derive(Default)]
struct Common {
    id: Uuid,
    subject: Option<String>,
    reference: Option<String>,
    lead_unit: Option<String>,
    confidentiality: Option<Confidentiality>,
    remark: Option<String>,
    medium: Option<Medium>,
    plan_unit: Option<PlanUnitRef>,
    retention: Option<Retention>,
    disposal: Option<DisposalDecision>,
    retention_end: Option<NaiveDate>,
    begin: Option<NaiveDate>,
    end: Option<NaiveDate>,
    closed: Option<NaiveDate>,
    custom_fields: Vec<CustomValue>,
}

fn parse_date(n: Node<'_>) -> Result<NaiveDate, XdomeaError> {
    let text = n.text()?;
    let s = collapse(text);
    // xs:date may carry a time zone; the day is what counts.
    let day = s.get(..10).unwrap_or(&s);
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| n.invalid(text, "not an xs:date (e.g. 2014-06-30)"))
}

fn opt_date(n: &Node<'_>, name: &str) -> Result<Option<NaiveDate>, XdomeaError> {
    match n.opt(name)? {
        Some(el) => Ok(Some(n.descend(el, None, parse_date)?)),
        None => Ok(None),
    }
}

/// Text with surrounding white space removed; empty counts as absent.
fn opt_trimmed(n: &Node<'_>, name: &str) -> Result<Option<String>, XdomeaError> {
    Ok(opt_text(n, name)?
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

impl State {
    fn identify(&mut self, o: &Node<'_>) -> Result<Uuid, XdomeaError> {
        let ident = o.one("Identifikation")?;
        let (id, line) = o.descend(ident, None, |i| {
            i.check_children(&["ID", "NummerImUebergeordnetenContainer"])?;
            let el = i.one("ID")?;
            Ok((i.descend(el, None, parse_uuid)?, el.line))
        })?;
        if let Some(first_line) = self.seen.insert(id, line) {
            return Err(XdomeaError::DuplicateId {
                location: o.descend(ident, None, |n| Ok(n.location()))?,
                id,
                first_line,
            });
        }
        if self.seen.len() > MAX_PACKAGE_OBJECTS {
            return Err(XdomeaError::Container(format!(
                "more than {MAX_PACKAGE_OBJECTS} objects in one package"
            )));
        }
        Ok(id)
    }

    fn common(&mut self, o: &Node<'_>) -> Result<Common, XdomeaError> {
        let mut c = Common {
            id: self.identify(o)?,
            ..Common::default()
        };
        if let Some(general) = o.opt("AllgemeineMetadaten")? {
            o.descend(general, None, |g| {
                g.check_children(&[
                    "Betreff",
                    "Kennzeichen",
                    "Federfuehrung",
                    "Aktenfuehrung",
                    "Vertraulichkeitsstufe",
                    "Bemerkung",
                    "Medium",
                    "Aktenplaneinheit",
                ])?;
                c.subject = opt_trimmed(&g, "Betreff")?;
                c.reference = opt_trimmed(&g, "Kennzeichen")?;
                c.lead_unit = opt_trimmed(&g, "Federfuehrung")?;
                c.remark = opt_text(&g, "Bemerkung")?.filter(|t| !t.trim().is_empty());
                if let Some(el) = g.opt("Vertraulichkeitsstufe")? {
                    c.confidentiality = Some(g.descend(el, None, |v| {
                        let code = v.code()?;
                        confidentiality(&code.code).ok_or_else(|| {
                            v.invalid(&code.code, "not a code of Vertraulichkeitsstufe 1.0")
                        })
                    })?);
                }
                if let Some(el) = g.opt("Medium")? {
                    c.medium = Some(g.descend(el, None, |v| {
                        let code = v.code()?;
                        medium(&code.code)
                            .ok_or_else(|| v.invalid(&code.code, "not a code of Medium 1.0"))
                    })?);
                }
                if let Some(unit) = g.opt("Aktenplaneinheit")? {
                    c.plan_unit = Some(g.descend(unit, None, |u| {
                        u.check_children(&["Kennzeichen", "Inhaltsangabe", "BetreffKurz"])?;
                        Ok(PlanUnitRef {
                            reference: opt_trimmed(&u, "Kennzeichen")?,
                            title: opt_trimmed(&u, "Inhaltsangabe")?,
                        })
                    })?);
                }
                Ok(())
            })?;
        }
        if let Some(archival) = o.opt("ArchivspezifischeMetadaten")? {
            o.descend(archival, None, |a| {
                a.check_children(&[
                    "Aufbewahrungsdauer",
                    "Aussonderungsart",
                    "Kennung",
                    "Bewertungsvorschlag",
                    "Aufbewahrungsende",
                ])?;
                if let Some(el) = a.opt("Aufbewahrungsdauer")? {
                    c.retention = a.descend(el, None, |r| {
                        r.check_children(&["AnzahlJahre", "Unbefristet"])?;
                        if let Some(y) = r.opt("AnzahlJahre")? {
                            return r.descend(y, None, |y| {
                                let t = y.text()?;
                                collapse(t)
                                    .parse::<u16>()
                                    .map(|n| Some(Retention::Years(n)))
                                    .map_err(|_| y.invalid(t, "not a number of years"))
                            });
                        }
                        match r.opt("Unbefristet")? {
                            Some(u) if r.descend(u, None, parse_bool)? => {
                                Ok(Some(Retention::Unlimited))
                            }
                            _ => Ok(None),
                        }
                    })?;
                }
                if let Some(outer) = a.opt("Aussonderungsart")? {
                    c.disposal = a.descend(outer, None, |x| {
                        x.check_children(&["Aussonderungsart", "AussonderungsartKonfigurierbar"])?;
                        match x.opt("Aussonderungsart")? {
                            Some(inner) => x.descend(inner, None, |v| {
                                let code = v.code()?;
                                match code.code.as_str() {
                                    "A" => Ok(Some(DisposalDecision::Archive)),
                                    "V" => Ok(Some(DisposalDecision::Destroy)),
                                    "B" => Ok(Some(DisposalDecision::Appraise)),
                                    other => Err(v.invalid(other, "not A, V or B")),
                                }
                            }),
                            None => Ok(None),
                        }
                    })?;
                }
                c.retention_end = opt_date(&a, "Aufbewahrungsende")?;
                Ok(())
            })?;
        }
        if let Some(el) = o.opt("Laufzeit")? {
            o.descend(el, None, |l| {
                l.check_children(&["Beginn", "Ende"])?;
                c.begin = opt_date(&l, "Beginn")?;
                c.end = opt_date(&l, "Ende")?;
                Ok(())
            })?;
        }
        let zda = match o.opt("ZdA")? {
            Some(el) => o.descend(el, None, parse_bool)?,
            None => false,
        };
        let zda_date = opt_date(o, "ZdADatum")?;
        c.closed = match (zda, zda_date) {
            (true, Some(d)) => Some(d),
            // Closed without a date: the end of the running time is the best there is.
            (true, None) => c.end,
            (false, _) => None,
        };
        if zda && c.closed.is_none() {
            return Err(o.invalid(
                "ZdA",
                "closed (ZdA = true) without ZdADatum or Laufzeit/Ende",
            ));
        }
        let mut extras = ObjectExtras::default();
        for (i, el) in o
            .all("HistorienProtokollInformation")
            .into_iter()
            .enumerate()
        {
            extras.history.push(o.descend(el, Some(i + 1), history)?);
        }
        if let Some(el) = o.opt("AnwendungsspezifischeErweiterung")? {
            o.descend(el, None, |e| {
                self.extension(e, &mut extras, &mut c.custom_fields)
            })?;
        }
        if !extras.history.is_empty() || !extras.metadata.is_empty() {
            self.extras.insert(c.id, extras);
        }
        Ok(c)
    }

    /// akte's own extensions: checksums by ZIP name, metadata fields. Other systems'
    /// extensions are accepted and not used.
    fn extension(
        &mut self,
        e: Node<'_>,
        extras: &mut ObjectExtras,
        custom: &mut Vec<CustomValue>,
    ) -> Result<(), XdomeaError> {
        let kennung = opt_text(&e, "Kennung")?.unwrap_or_default();
        if kennung != HANDOVER_EXTENSION_ID
            && kennung != CHECKSUM_EXTENSION_ID
            && kennung != FIELDS_EXTENSION_ID
        {
            return Ok(());
        }
        for (i, el) in e.all("Feldgruppe").into_iter().enumerate() {
            e.descend(el, Some(i + 1), |g| {
                let name = opt_text(&g, "Name")?.unwrap_or_default();
                if name == CUSTOM_FIELDS_GROUP {
                    for (j, f) in g.all("Feld").into_iter().enumerate() {
                        let value = g.descend(f, Some(j + 1), |f| {
                            let datatype = match f.opt("Datentyp")? {
                                Some(el) => Some(f.descend(el, None, |v| Ok(v.code()?.code))?),
                                None => None,
                            };
                            Ok(CustomValue {
                                name: opt_text(&f, "Name")?.unwrap_or_default(),
                                datatype,
                                value: opt_text(&f, "Wert")?.unwrap_or_default(),
                            })
                        })?;
                        custom.push(value);
                    }
                    return Ok(());
                }
                let mut fields = Vec::new();
                for (j, f) in g.all("Feld").into_iter().enumerate() {
                    fields.push(g.descend(f, Some(j + 1), |f| {
                        Ok((
                            opt_text(&f, "Name")?.unwrap_or_default(),
                            opt_text(&f, "Wert")?.unwrap_or_default(),
                        ))
                    })?);
                }
                if name == METADATA_GROUP {
                    extras.metadata.extend(fields);
                } else {
                    let mut sum = (None, None);
                    for (n, v) in &fields {
                        match n.as_str() {
                            "SHA-256" => {
                                sum.0 =
                                    Some(Digest::from_hex(v).map_err(|_| {
                                        g.invalid(v, "not a SHA-256 in hexadecimal")
                                    })?)
                            }
                            "Groesse" => {
                                sum.1 = Some(
                                    v.parse::<u64>()
                                        .map_err(|_| g.invalid(v, "not a size in bytes"))?,
                                )
                            }
                            _ => {}
                        }
                    }
                    self.sums.insert(name, sum);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn file(&mut self, a: Node<'_>) -> Result<FileObject, XdomeaError> {
        a.check_children(AKTE)?;
        let c = self.common(&a)?;
        let mut f = FileObject {
            id: c.id,
            reference: c.reference,
            subject: c.subject,
            lead_unit: c.lead_unit,
            confidentiality: c.confidentiality,
            remark: c.remark,
            medium: c.medium,
            plan_unit: c.plan_unit,
            disposal: c.disposal.unwrap_or(DisposalDecision::Appraise),
            retention: c.retention,
            retention_end: c.retention_end,
            running_begin: c.begin,
            running_end: c.end,
            closed: c.closed,
            documents: Vec::new(),
            cases: Vec::new(),
            sub_files: Vec::new(),
            custom_fields: c.custom_fields,
        };
        if let Some(content) = a.opt("Akteninhalt")? {
            a.descend(content, None, |k| {
                k.check_children(&["Dokument", "Vorgang", "Teilakte"])?;
                for (i, el) in k.all("Dokument").into_iter().enumerate() {
                    f.documents
                        .push(k.descend(el, Some(i + 1), |d| self.document(d))?);
                }
                for (i, el) in k.all("Vorgang").into_iter().enumerate() {
                    f.cases.push(k.descend(el, Some(i + 1), |v| self.case(v))?);
                }
                for (i, el) in k.all("Teilakte").into_iter().enumerate() {
                    f.sub_files
                        .push(k.descend(el, Some(i + 1), |t| self.file(t))?);
                }
                Ok(())
            })?;
        }
        Ok(f)
    }

    fn case(&mut self, v: Node<'_>) -> Result<CaseObject, XdomeaError> {
        v.check_children(VORGANG)?;
        let c = self.common(&v)?;
        let mut out = CaseObject {
            id: c.id,
            reference: c.reference,
            subject: c.subject,
            confidentiality: c.confidentiality,
            remark: c.remark,
            medium: c.medium,
            disposal: c.disposal,
            retention: c.retention,
            retention_end: c.retention_end,
            running_begin: c.begin,
            running_end: c.end,
            closed: c.closed,
            documents: Vec::new(),
            sub_cases: Vec::new(),
            custom_fields: c.custom_fields,
        };
        for (i, el) in v.all("Dokument").into_iter().enumerate() {
            out.documents
                .push(v.descend(el, Some(i + 1), |d| self.document(d))?);
        }
        for (i, el) in v.all("Teilvorgang").into_iter().enumerate() {
            out.sub_cases
                .push(v.descend(el, Some(i + 1), |t| self.case(t))?);
        }
        Ok(out)
    }

    fn document(&mut self, d: Node<'_>) -> Result<DocumentObject, XdomeaError> {
        d.check_children(DOKUMENT)?;
        self.sums.clear();
        let c = self.common(&d)?;
        let sums = std::mem::take(&mut self.sums);
        let mut versions = Vec::new();
        for (vi, el) in d.all("Version").into_iter().enumerate() {
            versions.push(d.descend(el, Some(vi + 1), |v| {
                v.check_children(&["Nummer", "Format"])?;
                let label = v.descend(v.one("Nummer")?, None, |n| Ok(collapse(n.text()?)))?;
                // Other systems number versions "1.0", "2.1", ...; their order is what
                // counts, so a number that is not a whole number becomes the position.
                let number = label.parse::<u32>().unwrap_or(vi as u32 + 1);
                let mut renditions = Vec::new();
                for (fi, fe) in v.all("Format").into_iter().enumerate() {
                    renditions.push(v.descend(fe, Some(fi + 1), |f| self.rendition(f, &sums))?);
                }
                if renditions.is_empty() {
                    return Err(XdomeaError::Missing {
                        location: v.location(),
                        element: "Format".into(),
                    });
                }
                Ok(VersionObject { number, renditions })
            })?);
        }
        let mut attachments = Vec::new();
        for (i, el) in d.all("Anlage").into_iter().enumerate() {
            attachments.push(d.descend(el, Some(i + 1), |a| {
                let number = opt_trimmed(&a, "Nummer")?;
                Ok(AttachmentObject {
                    document: self.document(a)?,
                    number,
                })
            })?);
        }
        let mut senders = Vec::new();
        for (i, el) in d.all("Absender").into_iter().enumerate() {
            senders.push(d.descend(el, Some(i + 1), read_party)?);
        }
        let mut recipients = Vec::new();
        for (i, el) in d.all("Empfaenger").into_iter().enumerate() {
            recipients.push(d.descend(el, Some(i + 1), read_party)?);
        }
        Ok(DocumentObject {
            id: c.id,
            reference: c.reference,
            subject: c.subject,
            confidentiality: c.confidentiality,
            medium: c.medium,
            foreign_reference: opt_trimmed(&d, "FremdesGeschaeftszeichen")?,
            received: opt_date(&d, "Posteingangsdatum")?,
            sent: opt_date(&d, "Postausgangsdatum")?,
            letter_date: opt_date(&d, "DatumDesSchreibens")?,
            clerk: opt_trimmed(&d, "Bearbeiter")?,
            kind: opt_trimmed(&d, "Typ")?,
            versions,
            attachments,
            senders,
            recipients,
            custom_fields: c.custom_fields,
        })
    }

    fn rendition(
        &mut self,
        f: Node<'_>,
        sums: &HashMap<String, (Option<Digest>, Option<u64>)>,
    ) -> Result<RenditionObject, XdomeaError> {
        f.check_children(&["Name", "SonstigerName", "Version", "Primaerdokument"])?;
        let code = f.descend(f.one("Name")?, None, |n| n.code())?.code;
        let format = FileFormat {
            code,
            other_name: opt_trimmed(&f, "SonstigerName")?,
            version: opt_text(&f, "Version")?.unwrap_or_default(),
        };
        f.descend(f.one("Primaerdokument")?, None, |p| {
            p.check_children(&[
                "Dateiname",
                "DateinameOriginal",
                "Ersteller",
                "DatumUhrzeit",
                "SignaturSiegel",
            ])?;
            let zip_name = p.descend(p.one("Dateiname")?, None, |n| {
                let t = n.text()?.trim().to_owned();
                check_entry_name(&t).map_err(|reason| n.invalid(&t, reason))?;
                Ok(t)
            })?;
            let original = opt_trimmed(&p, "DateinameOriginal")?;
            let created = match p.opt("DatumUhrzeit")? {
                Some(el) => Some(p.descend(el, None, parse_datetime)?),
                None => None,
            };
            // akte names primary files {rendition UUID}_{name}; others any way they like.
            let id = zip_name
                .get(..36)
                .filter(|_| zip_name.as_bytes().get(36) == Some(&b'_'))
                .and_then(|u| Uuid::try_parse(u).ok())
                .filter(|u| !self.primary.contains_key(u))
                .unwrap_or_else(Uuid::new_v4);
            let (sha256, size) = sums.get(&zip_name).copied().unwrap_or((None, None));
            self.primary.insert(
                id,
                PrimaryFileRef {
                    zip_name: zip_name.clone(),
                    creator: opt_trimmed(&p, "Ersteller")?,
                    sha256,
                    size,
                },
            );
            Ok(RenditionObject {
                id,
                file_name: original.unwrap_or_else(|| zip_name.clone()),
                format,
                size: size.unwrap_or(0),
                digest: sha256.unwrap_or(Digest([0; 32])),
                created,
            })
        })
    }
}

/// A primary file's name in the ZIP: a plain name, no path, nothing that could leave the
/// directory it is unpacked to.
pub fn check_entry_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." || name.contains('\0') {
        return Err("a primary file must be a plain name in the ZIP, not a path".into());
    }
    if name.chars().any(char::is_control) {
        return Err("control characters in a file name".into());
    }
    Ok(())
}

fn history(h: Node<'_>) -> Result<HistoryRecord, XdomeaError> {
    h.check_children(&[
        "MetadatumName",
        "MetadatumAlterWert",
        "MetadatumNeuerWert",
        "Akteur",
        "DatumUhrzeit",
        "Bemerkung",
        "Aktion",
    ])?;
    Ok(HistoryRecord {
        field: opt_text(&h, "MetadatumName")?,
        old: opt_text(&h, "MetadatumAlterWert")?,
        new: opt_text(&h, "MetadatumNeuerWert")?,
        actor: h.descend(h.one("Akteur")?, None, |t| Ok(t.text()?.to_owned()))?,
        at: h.descend(h.one("DatumUhrzeit")?, None, parse_datetime)?,
        remark: opt_text(&h, "Bemerkung")?,
        action: h.descend(h.one("Aktion")?, None, |t| Ok(t.text()?.to_owned()))?,
    })
}

fn confidentiality(code: &str) -> Option<Confidentiality> {
    Some(match code {
        "001" => Confidentiality::Secret,
        "002" => Confidentiality::Restricted,
        "003" => Confidentiality::Open,
        "004" => Confidentiality::TopSecret,
        "005" => Confidentiality::Confidential,
        _ => return None,
    })
}

fn medium(code: &str) -> Option<Medium> {
    Some(match code {
        "001" => Medium::Electronic,
        "002" => Medium::Hybrid,
        "003" => Medium::Paper,
        _ => return None,
    })
}
