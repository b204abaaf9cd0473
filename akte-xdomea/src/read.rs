//! Reading the messages the archive sends: 0502, 0504, 0505, 0506, 0507.
//!
//! The readers are strict about what they use: the namespace (xdomea 3.1.0 or 3.0.0, the
//! same in every element), the root element, the Nachrichtentyp code in the header, every
//! element they walk (only the schema's children, each required one present, none
//! repeated that may occur once), the values (UUIDs, booleans, dates, codes) and unique
//! object IDs. They do not check the order of elements nor the parts of a Kontakt akte does
//! not use: run an XSD validator for that. Every error names the element path and line.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use uuid::Uuid;

use super::error::{Location, XdomeaError};
use super::types::{
    Appraisal, AppraisalDecision, AppraisalList, CaseObject, FileObject, ImportConfirmation,
    ImportResult, MessageHeader, MessageType, Party, PersonName, Receipt, SchemaVersion,
    SendingSystem,
};
use super::write::ADDRESS_LINES;
use super::xml::{collapse, parse, Element, Node, PathBuf};

const LIST_AUSSONDERUNGSART: &str = "urn:xoev-de:xdomea:codeliste:aussonderungsart";
const LIST_NACHRICHTENTYP: &str = "urn:xoev-de:xdomea:codeliste:nachrichtentyp";

/// The children of a Kontakt (KontaktType), all optional.
const KONTAKT: &[&str] = &[
    "Behoerdenkennung",
    "Institution",
    "Organisationseinheit",
    "Name",
    "Taetigkeit",
    "Zustaendigkeit",
    "Anschrift",
    "Kommunikation",
    "Rolle",
    "UnstrukturierteAnschrift",
    "Geburt",
];

/// The children of a header (NkBasisType).
const KOPF_BASIS: &[&str] = &[
    "ProzessID",
    "Nachrichtentyp",
    "Erstellungszeitpunkt",
    "Absender",
    "Empfaenger",
    "SendendesSystem",
    "Hinweis",
    "AnwendungsspezifischeErweiterung",
    "AnwendungsspezifischeErweiterungXML",
];

/// Which message and schema version `xml` is, from its root element.
pub fn identify(xml: &[u8]) -> Result<(MessageType, SchemaVersion), XdomeaError> {
    let root = parse(xml)?;
    let version = root_version(&root)?;
    let message =
        MessageType::from_element_name(&root.name).ok_or_else(|| XdomeaError::Unexpected {
            location: root_location(&root),
            element: root.name.clone(),
            reason: "not an xdomea message akte reads (0301, 0302, 0401 to 0403, 0501 to 0507)"
                .into(),
        })?;
    Ok((message, version))
}

/// Reads an appraisal list (0502, Aussonderung.Bewertungsverzeichnis): per offered file or
/// case, A (archive) or V (destroy). B, AussonderungsartKonfigurierbar, other codes and
/// duplicate IDs are errors. Whether the IDs were offered is the caller's check
/// ([`check_appraisal_against_offer`]).
pub fn read_0502(xml: &[u8]) -> Result<AppraisalList, XdomeaError> {
    let message = MessageType::Appraisal;
    let (root, schema) = open(xml, message)?;
    let path = PathBuf(format!("/{}", root.name));
    let node = Node::root(&root, schema.namespace(), &path);
    node.check_children(&["Kopf", "BewertetesObjekt"])?;
    let header = node.descend(node.one("Kopf")?, None, |k| read_header(k, message))?;
    let objects = node.all("BewertetesObjekt");
    if objects.is_empty() {
        return Err(XdomeaError::Missing {
            location: node.location(),
            element: "BewertetesObjekt".into(),
        });
    }
    let mut seen: HashMap<Uuid, u32> = HashMap::new();
    let mut appraisals = Vec::with_capacity(objects.len());
    for (i, el) in objects.into_iter().enumerate() {
        let appraisal = node.descend(el, Some(i + 1), |o| {
            o.check_children(&["ID", "Aussonderungsart"])?;
            let id_el = o.one("ID")?;
            let id = o.descend(id_el, None, parse_uuid)?;
            if let Some(first_line) = seen.insert(id, id_el.line) {
                return Err(XdomeaError::DuplicateId {
                    location: o.descend(id_el, None, |n| Ok(n.location()))?,
                    id,
                    first_line,
                });
            }
            let decision = o.descend(o.one("Aussonderungsart")?, None, read_decision)?;
            Ok(Appraisal { id, decision })
        })?;
        appraisals.push(appraisal);
    }
    Ok(AppraisalList {
        header,
        schema,
        appraisals,
    })
}

/// Reads a receipt of the offer (0504, Aussonderung.AnbietungEmpfangBestaetigen).
pub fn read_0504(xml: &[u8]) -> Result<Receipt, XdomeaError> {
    read_receipt(xml, MessageType::OfferReceipt)
}

/// Reads a receipt of the appraisal (0505, Aussonderung.BewertungEmpfangBestaetigen).
pub fn read_0505(xml: &[u8]) -> Result<Receipt, XdomeaError> {
    read_receipt(xml, MessageType::AppraisalReceipt)
}

/// Reads a receipt of the transfer (0507, Aussonderung.AussonderungEmpfangBestaetigen).
pub fn read_0507(xml: &[u8]) -> Result<Receipt, XdomeaError> {
    read_receipt(xml, MessageType::TransferReceipt)
}

/// Reads an import confirmation (0506, Aussonderung.AussonderungImportBestaetigen): per
/// transferred object, success and the archive's identifier, or error texts and codes.
/// Duplicate IDs are errors.
pub fn read_0506(xml: &[u8]) -> Result<ImportConfirmation, XdomeaError> {
    let message = MessageType::ImportConfirmation;
    let (root, schema) = open(xml, message)?;
    let path = PathBuf(format!("/{}", root.name));
    let node = Node::root(&root, schema.namespace(), &path);
    node.check_children(&["Kopf", "AusgesondertesSGO"])?;
    let header = node.descend(node.one("Kopf")?, None, |k| read_header(k, message))?;
    let objects = node.all("AusgesondertesSGO");
    if objects.is_empty() {
        return Err(XdomeaError::Missing {
            location: node.location(),
            element: "AusgesondertesSGO".into(),
        });
    }
    let mut seen: HashMap<Uuid, u32> = HashMap::new();
    let mut results = Vec::with_capacity(objects.len());
    for (i, el) in objects.into_iter().enumerate() {
        let result = node.descend(el, Some(i + 1), |o| {
            o.check_children(&[
                "IDSGO",
                "Erfolgreich",
                "Fehlermeldung",
                "FehlermeldungCode",
                "Archivkennung",
            ])?;
            let id_el = o.one("IDSGO")?;
            let id = o.descend(id_el, None, parse_uuid)?;
            if let Some(first_line) = seen.insert(id, id_el.line) {
                return Err(XdomeaError::DuplicateId {
                    location: o.descend(id_el, None, |n| Ok(n.location()))?,
                    id,
                    first_line,
                });
            }
            let success = o.descend(o.one("Erfolgreich")?, None, parse_bool)?;
            let mut error_messages = Vec::new();
            for (j, m) in o.all("Fehlermeldung").into_iter().enumerate() {
                error_messages.push(o.descend(m, Some(j + 1), |n| Ok(n.text()?.to_string()))?);
            }
            let mut error_codes = Vec::new();
            for (j, c) in o.all("FehlermeldungCode").into_iter().enumerate() {
                error_codes.push(o.descend(c, Some(j + 1), |n| {
                    let code = n.code()?;
                    if code.list_uri.is_none() || code.list_version.is_none() {
                        return Err(n.invalid(
                            &code.code,
                            "FehlermeldungCode needs the attributes listURI and listVersionID",
                        ));
                    }
                    Ok(code)
                })?);
            }
            let archive_id = match o.opt("Archivkennung")? {
                Some(a) => Some(o.descend(a, None, |n| Ok(n.text()?.to_string()))?),
                None => None,
            };
            Ok(ImportResult {
                id,
                success,
                archive_id,
                error_messages,
                error_codes,
            })
        })?;
        results.push(result);
    }
    Ok(ImportConfirmation {
        header,
        schema,
        results,
    })
}

/// The IDs an offer (0501) of `files` makes appraisable: every file, sub-file, case and
/// sub-case (documents are appraised with their case or file).
pub fn offered_ids(files: &[FileObject]) -> HashSet<Uuid> {
    fn case(c: &CaseObject, out: &mut HashSet<Uuid>) {
        out.insert(c.id);
        for s in &c.sub_cases {
            case(s, out);
        }
    }
    fn file(f: &FileObject, out: &mut HashSet<Uuid>) {
        out.insert(f.id);
        for c in &f.cases {
            case(c, out);
        }
        for s in &f.sub_files {
            file(s, out);
        }
    }
    let mut out = HashSet::new();
    for f in files {
        file(f, &mut out);
    }
    out
}

/// Rejects an appraisal of any object that was not offered ([`XdomeaError::NotOffered`]
/// naming the first such ID, in message order).
pub fn check_appraisal_against_offer(
    appraisals: &[Appraisal],
    offered: &HashSet<Uuid>,
) -> Result<(), XdomeaError> {
    match appraisals.iter().find(|a| !offered.contains(&a.id)) {
        Some(a) => Err(XdomeaError::NotOffered { id: a.id }),
        None => Ok(()),
    }
}

/// The offered IDs the appraisal says nothing about, sorted. Whether these inherit their
/// parent's decision or stay pending is the records model's rule.
pub fn unappraised(appraisals: &[Appraisal], offered: &HashSet<Uuid>) -> Vec<Uuid> {
    let appraised: HashSet<Uuid> = appraisals.iter().map(|a| a.id).collect();
    let mut out: Vec<Uuid> = offered
        .iter()
        .filter(|id| !appraised.contains(id))
        .copied()
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------

fn root_location(root: &Element) -> Location {
    Location {
        path: format!("/{}", root.name),
        line: root.line,
        column: root.column,
    }
}

fn root_version(root: &Element) -> Result<SchemaVersion, XdomeaError> {
    root.ns
        .as_deref()
        .and_then(SchemaVersion::from_namespace)
        .ok_or_else(|| XdomeaError::WrongNamespace {
            location: root_location(root),
            element: root.name.clone(),
            found: root.ns.clone(),
            expected: format!("{} (or {})", super::NAMESPACE, super::NAMESPACE_3_0_0),
        })
}

pub(crate) fn open(
    xml: &[u8],
    expected: MessageType,
) -> Result<(Element, SchemaVersion), XdomeaError> {
    let root = parse(xml)?;
    let version = root_version(&root)?;
    if root.name != expected.element_name() {
        return Err(XdomeaError::WrongMessageType {
            expected,
            found: root.name,
        });
    }
    Ok((root, version))
}

pub(crate) fn read_receipt(xml: &[u8], message: MessageType) -> Result<Receipt, XdomeaError> {
    let (root, schema) = open(xml, message)?;
    let path = PathBuf(format!("/{}", root.name));
    let node = Node::root(&root, schema.namespace(), &path);
    node.check_children(&["Kopf"])?;
    let header = node.descend(node.one("Kopf")?, None, |k| read_header(k, message))?;
    Ok(Receipt {
        message_type: message,
        header,
        schema,
    })
}

pub(crate) fn read_header(k: Node<'_>, message: MessageType) -> Result<MessageHeader, XdomeaError> {
    let mut allowed: Vec<&str> = KOPF_BASIS.to_vec();
    let transfer = message == MessageType::Transfer;
    let with_receipt_flag = transfer
        || matches!(
            message,
            MessageType::Offer | MessageType::Appraisal | MessageType::Plan | MessageType::Handover
        );
    if with_receipt_flag {
        allowed.push("Empfangsbestaetigung");
    }
    if transfer {
        allowed.extend(["Importbestaetigung", "RueckmeldungArchivkennung"]);
    }
    // Further receivers (WeitererEmpfaenger) are accepted and not used.
    if matches!(message, MessageType::Plan | MessageType::Handover) {
        allowed.push("WeitererEmpfaenger");
    }
    if message == MessageType::Handover {
        allowed.push("Importbestaetigung");
    }
    k.check_children(&allowed)?;
    let process_id = k.descend(k.one("ProzessID")?, None, parse_uuid)?;
    k.descend(k.one("Nachrichtentyp")?, None, |n| {
        let code = n.code()?;
        if let Some(uri) = &code.list_uri {
            if uri != LIST_NACHRICHTENTYP {
                return Err(n.invalid(uri, format!("listURI must be {LIST_NACHRICHTENTYP}")));
            }
        }
        if code.code != message.code() {
            return Err(XdomeaError::MessageTypeCodeMismatch {
                location: n.location(),
                expected: message.code(),
                found: code.code,
            });
        }
        Ok(())
    })?;
    let created = k.descend(k.one("Erstellungszeitpunkt")?, None, parse_datetime)?;
    let sender = k.descend(k.one("Absender")?, None, read_party)?;
    let receiver = k.descend(k.one("Empfaenger")?, None, read_party)?;
    let system = match k.opt("SendendesSystem")? {
        Some(s) => Some(k.descend(s, None, |n| {
            n.check_children(&["InstanzID", "Produktname", "Version"])?;
            Ok(SendingSystem {
                instance_id: opt_text(&n, "InstanzID")?,
                product_name: opt_text(&n, "Produktname")?,
                version: opt_text(&n, "Version")?,
            })
        })?),
        None => None,
    };
    let note = opt_text(&k, "Hinweis")?;
    let receipt_requested = if with_receipt_flag {
        k.descend(k.one("Empfangsbestaetigung")?, None, parse_bool)?
    } else {
        false
    };
    let archive_id_requested = if transfer {
        k.descend(k.one("RueckmeldungArchivkennung")?, None, parse_bool)?
    } else {
        false
    };
    Ok(MessageHeader {
        process_id,
        created,
        sender,
        receiver,
        system,
        note,
        receipt_requested,
        archive_id_requested,
    })
}

pub(crate) fn opt_text(n: &Node<'_>, name: &str) -> Result<Option<String>, XdomeaError> {
    match n.opt(name)? {
        Some(el) => Ok(Some(n.descend(el, None, |c| Ok(c.text()?.to_string()))?)),
        None => Ok(None),
    }
}

pub(crate) fn read_party(n: Node<'_>) -> Result<Party, XdomeaError> {
    n.check_children(KONTAKT)?;
    let mut party = Party::default();
    if let Some(b) = n.opt("Behoerdenkennung")? {
        n.descend(b, None, |b| {
            b.check_children(&["Behoerdenschluessel", "Praefix"])?;
            if let Some(key) = b.opt("Behoerdenschluessel")? {
                let code = b.descend(key, None, |c| c.code())?;
                party.agency_code = Some(code.code);
                party.agency_name = code.name;
                party.agency_list_uri = code.list_uri;
                party.agency_list_version = code.list_version;
            }
            if let Some(prefix) = b.opt("Praefix")? {
                let code = b.descend(prefix, None, |c| c.code())?;
                party.prefix_code = Some(code.code);
                party.prefix_name = code.name;
                party.prefix_list_uri = code.list_uri;
                party.prefix_list_version = code.list_version;
            }
            Ok(())
        })?;
    }
    if let Some(i) = n.opt("Institution")? {
        n.descend(i, None, |i| {
            i.check_children(&["Name", "Kurzbezeichnung"])?;
            party.institution = opt_text(&i, "Name")?;
            party.institution_short = opt_text(&i, "Kurzbezeichnung")?;
            Ok(())
        })?;
    }
    if let Some(o) = n.opt("Organisationseinheit")? {
        party.org_unit = n.descend(o, None, |o| {
            o.check_children(&["Name"])?;
            Ok(Some(o.descend(o.one("Name")?, None, |t| {
                Ok(t.text()?.to_string())
            })?))
        })?;
    }
    if let Some(p) = n.opt("Name")? {
        party.person = Some(n.descend(p, None, |p| {
            p.check_children(&["Anrede", "Titel", "Familienname", "Vorname"])?;
            let name_part = |part: &str| -> Result<Option<String>, XdomeaError> {
                match p.opt(part)? {
                    Some(el) => p.descend(el, None, |x| {
                        x.check_children(&["Name"])?;
                        opt_text(&x, "Name")
                    }),
                    None => Ok(None),
                }
            };
            Ok(PersonName {
                title: opt_text(&p, "Titel")?,
                given_name: name_part("Vorname")?,
                family_name: name_part("Familienname")?,
            })
        })?);
    }
    if let Some(u) = n.all("UnstrukturierteAnschrift").first() {
        party.address_lines = n.descend(u, Some(1), |u| {
            let mut allowed = vec!["Typ", "Zusatz"];
            allowed.extend(ADDRESS_LINES);
            u.check_children(&allowed)?;
            let mut lines = Vec::new();
            for name in ADDRESS_LINES {
                if let Some(line) = opt_text(&u, name)? {
                    lines.push(line);
                }
            }
            Ok(lines)
        })?;
    }
    Ok(party)
}

fn read_decision(n: Node<'_>) -> Result<AppraisalDecision, XdomeaError> {
    n.check_children(&["Aussonderungsart", "AussonderungsartKonfigurierbar"])?;
    if let Some(el) = n.opt("AussonderungsartKonfigurierbar")? {
        return n.descend(el, None, |c| {
            Err(XdomeaError::UnknownDecision {
                location: c.location(),
                code: c.text()?.to_string(),
                reason: "AussonderungsartKonfigurierbar is not supported; expected \
                         Aussonderungsart with code A or V"
                    .into(),
            })
        });
    }
    n.descend(n.one("Aussonderungsart")?, None, |c| {
        let code = c.code()?;
        if let Some(uri) = &code.list_uri {
            if uri != LIST_AUSSONDERUNGSART {
                return Err(c.invalid(uri, format!("listURI must be {LIST_AUSSONDERUNGSART}")));
            }
        }
        match code.code.as_str() {
            "A" => Ok(AppraisalDecision::Archive),
            "V" => Ok(AppraisalDecision::Destroy),
            "B" => Err(XdomeaError::UnknownDecision {
                location: c.location(),
                code: code.code.clone(),
                reason: "B (to be appraised) is not an appraisal result; expected A or V".into(),
            }),
            _ => Err(XdomeaError::UnknownDecision {
                location: c.location(),
                code: code.code.clone(),
                reason: "not in code list Aussonderungsart; expected A or V".into(),
            }),
        }
    })
}

/// A UUID in the form xdomea's stringUUIDType allows: 8-4-4-4-12 hexadecimal digits.
pub(crate) fn parse_uuid(n: Node<'_>) -> Result<Uuid, XdomeaError> {
    let text = n.text()?;
    let shaped = text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !shaped {
        return Err(n.invalid(
            text,
            "not a UUID (8-4-4-4-12 hexadecimal digits, e.g. 242f44e8-bebf-4503-a086-db252c6a4277)",
        ));
    }
    Uuid::try_parse(text).map_err(|e| n.invalid(text, format!("not a UUID: {e}")))
}

pub(crate) fn parse_bool(n: Node<'_>) -> Result<bool, XdomeaError> {
    let text = n.text()?;
    match collapse(text).as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(n.invalid(text, "not a boolean (1, 0, true or false)")),
    }
}

/// xs:dateTime; without a UTC offset the time is taken as UTC.
pub(crate) fn parse_datetime(n: Node<'_>) -> Result<DateTime<FixedOffset>, XdomeaError> {
    let text = n.text()?;
    let s = collapse(text);
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Ok(t);
    }
    NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().fixed_offset())
        .map_err(|_| {
            n.invalid(
                text,
                "not an xs:dateTime (e.g. 2026-05-03T10:15:00Z or 2026-05-03T10:15:00)",
            )
        })
}
