//! Plain input and output data of the xdomea disposal messages.
//!
//! These types depend on nothing in akte but [`Digest`]: the records model is mapped onto
//! them by the caller. Names are English; the doc comment of each field names the xdomea
//! element it is written to or read from.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate};
use uuid::Uuid;

use akte_verify::digest::Digest;

/// The xdomea schema version a message was read in.
///
/// akte writes 3.1.0 only. It reads 3.1.0 and 3.0.0: the disposal messages (05xx) have the
/// same structure in both versions, only the namespace differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaVersion {
    /// `urn:xoev-de:xdomea:schema:3.0.0`
    V3_0_0,
    /// `urn:xoev-de:xdomea:schema:3.1.0`
    V3_1_0,
}

impl SchemaVersion {
    /// The namespace URI of this version.
    pub fn namespace(self) -> &'static str {
        match self {
            SchemaVersion::V3_0_0 => super::NAMESPACE_3_0_0,
            SchemaVersion::V3_1_0 => super::NAMESPACE,
        }
    }

    pub(crate) fn from_namespace(ns: &str) -> Option<SchemaVersion> {
        match ns {
            super::NAMESPACE => Some(SchemaVersion::V3_1_0),
            super::NAMESPACE_3_0_0 => Some(SchemaVersion::V3_0_0),
            _ => None,
        }
    }
}

/// The message types akte reads and writes (code list Nachrichtentyp 2.0): disposal
/// (Aussonderung, 0501-0507), file plan (Aktenplan, 0301-0302) and handover (Abgabe,
/// 0401-0403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 0501 Aussonderung.Anbieteverzeichnis: the offer list, agency to archive.
    Offer,
    /// 0502 Aussonderung.Bewertungsverzeichnis: the appraisal, archive to agency.
    Appraisal,
    /// 0503 Aussonderung.Aussonderung: the transfer with primary files, agency to archive.
    Transfer,
    /// 0504 Aussonderung.AnbietungEmpfangBestaetigen: receipt of the offer, archive to agency.
    OfferReceipt,
    /// 0505 Aussonderung.BewertungEmpfangBestaetigen: receipt of the appraisal, agency to
    /// archive.
    AppraisalReceipt,
    /// 0506 Aussonderung.AussonderungImportBestaetigen: import confirmation, archive to agency.
    ImportConfirmation,
    /// 0507 Aussonderung.AussonderungEmpfangBestaetigen: receipt of the transfer, archive to
    /// agency.
    TransferReceipt,
    /// 0301 Aktenplan.Aktenplan: a file plan, exchanged between agencies or systems.
    Plan,
    /// 0302 Aktenplan.EmpfangBestaetigen: receipt of a file plan.
    PlanReceipt,
    /// 0401 Abgabe.Abgabe: files handed over to another agency, with all content.
    Handover,
    /// 0402 Abgabe.ImportBestaetigen: the receiving agency's import result per object.
    HandoverImportConfirmation,
    /// 0403 Abgabe.EmpfangBestaetigen: receipt of a handover.
    HandoverReceipt,
}

impl MessageType {
    /// All disposal message types, in code order.
    pub const ALL: [MessageType; 7] = [
        MessageType::Offer,
        MessageType::Appraisal,
        MessageType::Transfer,
        MessageType::OfferReceipt,
        MessageType::AppraisalReceipt,
        MessageType::ImportConfirmation,
        MessageType::TransferReceipt,
    ];

    /// Every message type akte reads or writes: the disposal messages, the file plan
    /// (0301, 0302) and the handover (0401 to 0403).
    pub const EVERY: [MessageType; 12] = [
        MessageType::Offer,
        MessageType::Appraisal,
        MessageType::Transfer,
        MessageType::OfferReceipt,
        MessageType::AppraisalReceipt,
        MessageType::ImportConfirmation,
        MessageType::TransferReceipt,
        MessageType::Plan,
        MessageType::PlanReceipt,
        MessageType::Handover,
        MessageType::HandoverImportConfirmation,
        MessageType::HandoverReceipt,
    ];

    /// The Nachrichtentyp code, e.g. `"0501"`.
    pub fn code(self) -> &'static str {
        match self {
            MessageType::Offer => "0501",
            MessageType::Appraisal => "0502",
            MessageType::Transfer => "0503",
            MessageType::OfferReceipt => "0504",
            MessageType::AppraisalReceipt => "0505",
            MessageType::ImportConfirmation => "0506",
            MessageType::TransferReceipt => "0507",
            MessageType::Plan => "0301",
            MessageType::PlanReceipt => "0302",
            MessageType::Handover => "0401",
            MessageType::HandoverImportConfirmation => "0402",
            MessageType::HandoverReceipt => "0403",
        }
    }

    /// The root element name (without prefix), e.g. `"Aussonderung.Anbieteverzeichnis.0501"`;
    /// also the message part of file names.
    pub fn element_name(self) -> &'static str {
        match self {
            MessageType::Offer => "Aussonderung.Anbieteverzeichnis.0501",
            MessageType::Appraisal => "Aussonderung.Bewertungsverzeichnis.0502",
            MessageType::Transfer => "Aussonderung.Aussonderung.0503",
            MessageType::OfferReceipt => "Aussonderung.AnbietungEmpfangBestaetigen.0504",
            MessageType::AppraisalReceipt => "Aussonderung.BewertungEmpfangBestaetigen.0505",
            MessageType::ImportConfirmation => "Aussonderung.AussonderungImportBestaetigen.0506",
            MessageType::TransferReceipt => "Aussonderung.AussonderungEmpfangBestaetigen.0507",
            MessageType::Plan => "Aktenplan.Aktenplan.0301",
            MessageType::PlanReceipt => "Aktenplan.EmpfangBestaetigen.0302",
            MessageType::Handover => "Abgabe.Abgabe.0401",
            MessageType::HandoverImportConfirmation => "Abgabe.ImportBestaetigen.0402",
            MessageType::HandoverReceipt => "Abgabe.EmpfangBestaetigen.0403",
        }
    }

    /// The message type whose root element is `name`.
    pub fn from_element_name(name: &str) -> Option<MessageType> {
        MessageType::EVERY
            .into_iter()
            .find(|t| t.element_name() == name)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.element_name())
    }
}

/// How a message is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WriteStyle {
    /// As akte writes its own messages: times with their UTC offset, every code with its
    /// listURI and listVersionID.
    #[default]
    Full,
    /// As archive intake software writes its answers (0502, 0504, 0506, 0507; x-man of the
    /// Thuringian State Archive, for one): Erstellungszeitpunkt in local time without a
    /// UTC offset, codes without the optional list attributes. For archive simulations and
    /// tests; akte reads both styles.
    Archive,
}

/// Name of a natural person (NameNatuerlichePerson).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonName {
    /// Titel, e.g. "Dr.".
    pub title: Option<String>,
    /// Vorname/Name.
    pub given_name: Option<String>,
    /// Familienname/Name.
    pub family_name: Option<String>,
}

/// A party: sender or receiver of a message, or correspondent of a document (Kontakt).
///
/// Only the parts of xdomea's Kontakt that akte needs; other parts of a received Kontakt
/// (addresses, communication channels, ...) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    /// Behördenkennung/Behördenschlüssel/code: the agency key, e.g. `"LATh"` or a DVDV key.
    pub agency_code: Option<String>,
    /// Behördenkennung/Behördenschlüssel/name: the agency's name in that key list.
    /// Written only together with `agency_code`.
    pub agency_name: Option<String>,
    /// Behördenschlüssel/@listURI: the code list of `agency_code`, if any.
    pub agency_list_uri: Option<String>,
    /// Behördenschlüssel/@listVersionID.
    pub agency_list_version: Option<String>,
    /// Behördenkennung/Präfix/code (e.g. the DVDV prefix).
    pub prefix_code: Option<String>,
    /// Behördenkennung/Präfix/name. Written only together with `prefix_code`.
    pub prefix_name: Option<String>,
    /// Präfix/@listURI: the code list of `prefix_code`, if any.
    pub prefix_list_uri: Option<String>,
    /// Präfix/@listVersionID.
    pub prefix_list_version: Option<String>,
    /// Institution/Name: the organisation's full name.
    pub institution: Option<String>,
    /// Institution/Kurzbezeichnung: its short name.
    pub institution_short: Option<String>,
    /// Organisationseinheit/Name: the unit inside the institution.
    pub org_unit: Option<String>,
    /// Name: a natural person.
    pub person: Option<PersonName>,
    /// UnstrukturierteAnschrift/Zeile1 to Zeile6: a contact as free text (e.g. a
    /// document's sender as typed in), at most 6 lines. Read from the first
    /// UnstrukturierteAnschrift of a received Kontakt.
    pub address_lines: Vec<String>,
}

impl Party {
    /// A party identified by agency key and name (Behördenkennung), the usual form in
    /// message headers.
    pub fn agency(code: impl Into<String>, name: impl Into<String>) -> Party {
        Party {
            agency_code: Some(code.into()),
            agency_name: Some(name.into()),
            ..Party::default()
        }
    }
}

/// The sending system (SendendesSystem).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendingSystem {
    /// InstanzID: the installation's identifier.
    pub instance_id: Option<String>,
    /// Produktname.
    pub product_name: Option<String>,
    /// Version.
    pub version: Option<String>,
}

impl SendingSystem {
    /// akte itself, with this crate's version.
    pub fn akte(instance_id: Option<String>) -> SendingSystem {
        SendingSystem {
            instance_id,
            product_name: Some("akte".to_string()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
        }
    }
}

/// The message header (Kopf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    /// ProzessID: one UUID for all messages of one disposal process (0501 to 0507).
    pub process_id: Uuid,
    /// Erstellungszeitpunkt. Written with its UTC offset and whole seconds. Read values
    /// without an offset (as in the xdomea samples) are taken as UTC.
    pub created: DateTime<FixedOffset>,
    /// Absender.
    pub sender: Party,
    /// Empfaenger.
    pub receiver: Party,
    /// SendendesSystem.
    pub system: Option<SendingSystem>,
    /// Hinweis: a free-text note.
    pub note: Option<String>,
    /// Empfangsbestaetigung: the sender asks for a receipt. Part of the header of 0501, 0502,
    /// 0503, 0301 and 0401 only; ignored when writing other messages, read as `false` from
    /// them.
    pub receipt_requested: bool,
    /// RueckmeldungArchivkennung: the agency asks the archive to return its archive
    /// identifiers in the import confirmation (0506). Part of the 0503 header only.
    pub archive_id_requested: bool,
}

/// Aussonderungsart: the disposal decision of a file or case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisposalDecision {
    /// A: archivwürdig, to be archived.
    Archive,
    /// V: vernichten, to be destroyed.
    Destroy,
    /// B: bewerten, to be appraised by the archive.
    Appraise,
}

impl DisposalDecision {
    /// The code (`"A"`, `"V"`, `"B"`) in code list Aussonderungsart 1.0.
    pub fn code(self) -> &'static str {
        match self {
            DisposalDecision::Archive => "A",
            DisposalDecision::Destroy => "V",
            DisposalDecision::Appraise => "B",
        }
    }
}

/// The archive's appraisal result for one object (Aussonderungsart in a 0502): only A or V.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppraisalDecision {
    /// A: archivwürdig; the object is to be transferred (0503).
    Archive,
    /// V: vernichten; the agency destroys the object.
    Destroy,
}

impl AppraisalDecision {
    /// The code (`"A"` or `"V"`).
    pub fn code(self) -> &'static str {
        match self {
            AppraisalDecision::Archive => "A",
            AppraisalDecision::Destroy => "V",
        }
    }
}

impl From<AppraisalDecision> for DisposalDecision {
    fn from(d: AppraisalDecision) -> DisposalDecision {
        match d {
            AppraisalDecision::Archive => DisposalDecision::Archive,
            AppraisalDecision::Destroy => DisposalDecision::Destroy,
        }
    }
}

/// Aufbewahrungsdauer: retention period after closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retention {
    /// AnzahlJahre: a number of years.
    Years(u16),
    /// Unbefristet: kept without limit.
    Unlimited,
}

/// Vertraulichkeitsstufe (code list Vertraulichkeitsstufe 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Confidentiality {
    /// 001 Geheim.
    Secret,
    /// 002 NfD: nur für den Dienstgebrauch.
    Restricted,
    /// 003 Offen: not classified.
    Open,
    /// 004 Streng geheim.
    TopSecret,
    /// 005 Vertraulich.
    Confidential,
}

impl Confidentiality {
    /// The code, e.g. `"003"`.
    pub fn code(self) -> &'static str {
        match self {
            Confidentiality::Secret => "001",
            Confidentiality::Restricted => "002",
            Confidentiality::Open => "003",
            Confidentiality::TopSecret => "004",
            Confidentiality::Confidential => "005",
        }
    }
}

/// Medium (code list Medium 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medium {
    /// 001 Elektronisch.
    Electronic,
    /// 002 Hybrid: partly electronic, partly paper.
    Hybrid,
    /// 003 Papier.
    Paper,
}

impl Medium {
    /// The code, e.g. `"001"`.
    pub fn code(self) -> &'static str {
        match self {
            Medium::Electronic => "001",
            Medium::Hybrid => "002",
            Medium::Paper => "003",
        }
    }
}

/// The file-plan unit a file belongs to (Aktenplaneinheit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanUnitRef {
    /// Kennzeichen, e.g. `"022.31"`.
    pub reference: Option<String>,
    /// Inhaltsangabe: the unit's title.
    pub title: Option<String>,
}

/// One value of an agency's own field (custom field), as akte's AnwendungsspezifischeErweiterung carries it
/// (Feldgruppe `Fachdaten`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomValue {
    /// The field's key.
    pub name: String,
    /// Its Datentyp code (`038` string, `007` decimal, `005` date, `040` token, `001`
    /// anyURI), if given.
    pub datatype: Option<String>,
    /// The value as text.
    pub value: String,
}

/// Akte (or Teilakte): a file offered or transferred, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObject {
    /// Identifikation/ID: akte's UUID of the file.
    pub id: Uuid,
    /// AllgemeineMetadaten/Kennzeichen: the file reference (Aktenzeichen).
    pub reference: Option<String>,
    /// AllgemeineMetadaten/Betreff.
    pub subject: Option<String>,
    /// AllgemeineMetadaten/Federfuehrung: the lead organisational unit.
    pub lead_unit: Option<String>,
    /// AllgemeineMetadaten/Vertraulichkeitsstufe.
    pub confidentiality: Option<Confidentiality>,
    /// AllgemeineMetadaten/Bemerkung: free notes.
    pub remark: Option<String>,
    /// AllgemeineMetadaten/Medium.
    pub medium: Option<Medium>,
    /// AllgemeineMetadaten/Aktenplaneinheit.
    pub plan_unit: Option<PlanUnitRef>,
    /// ArchivspezifischeMetadaten/Aussonderungsart: the disposal decision (required by
    /// xdomea for offered and transferred files).
    pub disposal: DisposalDecision,
    /// ArchivspezifischeMetadaten/Aufbewahrungsdauer.
    pub retention: Option<Retention>,
    /// ArchivspezifischeMetadaten/Aufbewahrungsende: the date the retention period ends.
    pub retention_end: Option<NaiveDate>,
    /// Laufzeit/Beginn: running time begin.
    pub running_begin: Option<NaiveDate>,
    /// Laufzeit/Ende: running time end.
    pub running_end: Option<NaiveDate>,
    /// ZdA and ZdADatum: the date the file was closed; `None` writes ZdA = false.
    pub closed: Option<NaiveDate>,
    /// Akteninhalt/Dokument: documents filed directly in the file.
    pub documents: Vec<DocumentObject>,
    /// Akteninhalt/Vorgang: cases.
    pub cases: Vec<CaseObject>,
    /// Akteninhalt/Teilakte: sub-files.
    pub sub_files: Vec<FileObject>,
    /// Values of the agency's own fields (custom fields), in order.
    pub custom_fields: Vec<CustomValue>,
}

/// Vorgang (or Teilvorgang): a case inside a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseObject {
    /// Identifikation/ID.
    pub id: Uuid,
    /// AllgemeineMetadaten/Kennzeichen: the case reference.
    pub reference: Option<String>,
    /// AllgemeineMetadaten/Betreff.
    pub subject: Option<String>,
    /// AllgemeineMetadaten/Vertraulichkeitsstufe.
    pub confidentiality: Option<Confidentiality>,
    /// AllgemeineMetadaten/Bemerkung: free notes.
    pub remark: Option<String>,
    /// AllgemeineMetadaten/Medium.
    pub medium: Option<Medium>,
    /// ArchivspezifischeMetadaten/Aussonderungsart; `None` when the case inherits the
    /// file's decision.
    pub disposal: Option<DisposalDecision>,
    /// ArchivspezifischeMetadaten/Aufbewahrungsdauer.
    pub retention: Option<Retention>,
    /// ArchivspezifischeMetadaten/Aufbewahrungsende.
    pub retention_end: Option<NaiveDate>,
    /// Laufzeit/Beginn.
    pub running_begin: Option<NaiveDate>,
    /// Laufzeit/Ende.
    pub running_end: Option<NaiveDate>,
    /// ZdA and ZdADatum: the date the case was closed; `None` writes ZdA = false.
    pub closed: Option<NaiveDate>,
    /// Dokument.
    pub documents: Vec<DocumentObject>,
    /// Teilvorgang: sub-cases.
    pub sub_cases: Vec<CaseObject>,
    /// Values of the agency's own fields (custom fields), in order.
    pub custom_fields: Vec<CustomValue>,
}

/// Dokument: a record with its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentObject {
    /// Identifikation/ID.
    pub id: Uuid,
    /// AllgemeineMetadaten/Kennzeichen.
    pub reference: Option<String>,
    /// AllgemeineMetadaten/Betreff.
    pub subject: Option<String>,
    /// AllgemeineMetadaten/Vertraulichkeitsstufe.
    pub confidentiality: Option<Confidentiality>,
    /// AllgemeineMetadaten/Medium.
    pub medium: Option<Medium>,
    /// FremdesGeschaeftszeichen: the correspondent's reference.
    pub foreign_reference: Option<String>,
    /// Posteingangsdatum: date received.
    pub received: Option<NaiveDate>,
    /// Postausgangsdatum: date sent.
    pub sent: Option<NaiveDate>,
    /// DatumDesSchreibens: the letter's date.
    pub letter_date: Option<NaiveDate>,
    /// Bearbeiter: the clerk.
    pub clerk: Option<String>,
    /// Typ: the kind of document (e.g. "Bescheid"), free text.
    pub kind: Option<String>,
    /// Version: the versions with their renditions. Written in the transfer (0503) only;
    /// the offer (0501) carries metadata only.
    pub versions: Vec<VersionObject>,
    /// Anlage: attachments.
    pub attachments: Vec<AttachmentObject>,
    /// Absender: who sent the document.
    pub senders: Vec<Party>,
    /// Empfaenger: to whom it was sent.
    pub recipients: Vec<Party>,
    /// Values of the agency's own fields (custom fields), in order.
    pub custom_fields: Vec<CustomValue>,
}

/// Anlage: an attachment, a document of its own inside another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentObject {
    /// The attachment's document data.
    pub document: DocumentObject,
    /// Nummer: its number among the attachments (free text).
    pub number: Option<String>,
}

/// Version: one version of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionObject {
    /// Nummer.
    pub number: u32,
    /// Format: the renditions of this version, each one primary file. At least one for
    /// the transfer (0503).
    pub renditions: Vec<RenditionObject>,
}

/// Format with its Primaerdokument: one rendition of a version, i.e. one primary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionObject {
    /// The UUID that prefixes the file's name in the transfer ZIP. If the records model
    /// has no UUID of its own for a rendition, generate one per export (`Uuid::new_v4()`).
    pub id: Uuid,
    /// Primaerdokument/DateinameOriginal: the original file name. The name in the ZIP
    /// (Dateiname) is `{id}_{sanitised file_name}`, see [`super::primary_file_name`].
    pub file_name: String,
    /// Format/Name, SonstigerName and Version.
    pub format: FileFormat,
    /// Size in bytes; checked while the file is streamed into the ZIP.
    pub size: u64,
    /// SHA-256 of the bytes; checked while the file is streamed into the ZIP.
    pub digest: Digest,
    /// Primaerdokument/DatumUhrzeit: when the file was created.
    pub created: Option<DateTime<FixedOffset>>,
}

/// Format/Name (code list Dateiformat 1.0), SonstigerName and Version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFormat {
    /// The Dateiformat code, e.g. `"018"` (pdf) or `"044"` (PDF/A); `"100"` is "Sonstiges"
    /// and needs `other_name`.
    pub code: String,
    /// SonstigerName: the format's name when `code` is `"100"`.
    pub other_name: Option<String>,
    /// Version: the format version (e.g. `"1b"` for PDF/A-1b); may be empty when unknown.
    pub version: String,
}

/// The codes of code list Dateiformat 1.0 with the file extension each stands for.
pub const FILE_FORMAT_CODES: &[(&str, &str)] = &[
    ("001", "bmp"),
    ("002", "csv"),
    ("003", "doc"),
    ("004", "doc"),
    ("005", "doc"),
    ("006", "eml"),
    ("007", "htm"),
    ("008", "html"),
    ("009", "jpe"),
    ("010", "jpeg"),
    ("011", "jpg"),
    ("012", "msg"),
    ("013", "odp"),
    ("014", "ods"),
    ("015", "odt"),
    ("016", "otp"),
    ("017", "ots"),
    ("018", "pdf"),
    ("019", "png"),
    ("020", "ppt"),
    ("021", "ps"),
    ("022", "rtf"),
    ("023", "tif"),
    ("024", "tiff"),
    ("025", "wps"),
    ("026", "xlc"),
    ("027", "xlm"),
    ("028", "xls"),
    ("029", "xlw"),
    ("030", "xml"),
    ("031", "xsd"),
    ("032", "dot"),
    ("033", "pot"),
    ("034", "xlt"),
    ("035", "docx"),
    ("036", "xlsx"),
    ("037", "pptx"),
    ("038", "dotx"),
    ("039", "xltx"),
    ("040", "potx"),
    ("041", "dtd"),
    ("042", "mpp"),
    ("043", "ott"),
    ("044", "pdf"),
    ("045", "txt"),
    ("100", ""),
];

impl FileFormat {
    /// The format for a file name: the first Dateiformat code whose extension matches
    /// (case-insensitive; `pdf` gives `018`, set `044` yourself for PDF/A), else `100`
    /// (Sonstiges) with the extension, or `media_type`, as `other_name`.
    pub fn guess(file_name: &str, media_type: Option<&str>) -> FileFormat {
        let ext = file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        if !ext.is_empty() {
            if let Some((code, _)) = FILE_FORMAT_CODES.iter().find(|(_, e)| *e == ext) {
                return FileFormat {
                    code: (*code).to_string(),
                    other_name: None,
                    version: String::new(),
                };
            }
        }
        let other = if !ext.is_empty() {
            ext
        } else {
            media_type.unwrap_or("unbekannt").to_string()
        };
        FileFormat {
            code: "100".to_string(),
            other_name: Some(other),
            version: String::new(),
        }
    }

    /// Whether `code` is in code list Dateiformat 1.0.
    pub fn is_known_code(code: &str) -> bool {
        FILE_FORMAT_CODES.iter().any(|(c, _)| *c == code)
    }
}

/// One object's appraisal (BewertetesObjekt in a 0502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Appraisal {
    /// ID: the offered file's or case's UUID.
    pub id: Uuid,
    /// Aussonderungsart: A or V.
    pub decision: AppraisalDecision,
}

/// A code value as received, e.g. a FehlermeldungCode (xoev Code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeValue {
    /// code.
    pub code: String,
    /// name.
    pub name: Option<String>,
    /// @listURI.
    pub list_uri: Option<String>,
    /// @listVersionID.
    pub list_version: Option<String>,
}

/// The archive's result for one transferred object (AusgesondertesSGO in a 0506).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportResult {
    /// IDSGO: the transferred object's UUID.
    pub id: Uuid,
    /// Erfolgreich: whether the archive imported it.
    pub success: bool,
    /// Archivkennung: the archive's identifier for the object (when imported and asked
    /// for).
    pub archive_id: Option<String>,
    /// Fehlermeldung: error texts.
    pub error_messages: Vec<String>,
    /// FehlermeldungCode: error codes (code lists 06xx.SpezifischeFehlermeldung).
    pub error_codes: Vec<CodeValue>,
}

/// A read 0502 (Aussonderung.Bewertungsverzeichnis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalList {
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version the message was in.
    pub schema: SchemaVersion,
    /// BewertetesObjekt, in message order; IDs are unique.
    pub appraisals: Vec<Appraisal>,
}

/// A read receipt: 0504, 0505 or 0507, which carry a header only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Which receipt.
    pub message_type: MessageType,
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version the message was in.
    pub schema: SchemaVersion,
}

/// A read 0506 (Aussonderung.AussonderungImportBestaetigen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportConfirmation {
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version the message was in.
    pub schema: SchemaVersion,
    /// AusgesondertesSGO, in message order; IDs are unique.
    pub results: Vec<ImportResult>,
}
