//! The file plan exchange (Aktenplan, 0301 and 0302): an agency's plan units with their
//! titles, retention periods and disposal decisions, and the receipt.

use chrono::NaiveDate;

use super::error::XdomeaError;
use super::read::{open, opt_text, parse_bool, read_header, read_receipt};
use super::types::{
    DisposalDecision, MessageHeader, MessageType, Receipt, Retention, SchemaVersion,
};
use super::write::write_header_for;
use super::xml::{collapse, Node, PathBuf, XmlOut};

const LIST_AUSSONDERUNGSART: &str = "urn:xoev-de:xdomea:codeliste:aussonderungsart";

/// Deepest nesting of plan units read.
const MAX_PLAN_DEPTH: usize = 64;
/// Most plan units read from one plan.
pub const MAX_PLAN_UNITS: usize = 100_000;

/// A file plan (Aktenplan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// Bezeichnung.
    pub name: String,
    /// Version.
    pub version: String,
    /// Einheit: the top-level units with their sub-units.
    pub units: Vec<PlanUnitEntry>,
}

/// A unit of a file plan (Einheit, AktenplaneinheitAktenplanType).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUnitEntry {
    /// Kennzeichen, e.g. `632.1`.
    pub code: String,
    /// Inhaltsangabe: the title.
    pub title: Option<String>,
    /// Aussonderungsart.
    pub disposal: DisposalDecision,
    /// Gueltigkeit: valid from.
    pub valid_from: Option<NaiveDate>,
    /// Gueltigkeit: valid until.
    pub valid_until: Option<NaiveDate>,
    /// Stillgelegt: the unit takes no new files.
    pub inactive: bool,
    /// Aufbewahrungsdauer.
    pub retention: Retention,
    /// Einheit: sub-units.
    pub children: Vec<PlanUnitEntry>,
}

/// A read 0301.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMessage {
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version.
    pub schema: SchemaVersion,
    /// The plan.
    pub plan: FilePlan,
}

/// A file plan (0301, Aktenplan.Aktenplan). Unit codes must be unique.
pub fn write_0301(header: &MessageHeader, plan: &FilePlan) -> Result<Vec<u8>, XdomeaError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = XmlOut::new(MessageType::Plan);
    write_header_for(&mut out, header, MessageType::Plan)?;
    out.start("Aktenplan");
    out.leaf("Bezeichnung", &plan.name)?;
    out.leaf("Version", &plan.version)?;
    for u in &plan.units {
        write_unit(&mut out, u, &mut seen, 0)?;
    }
    out.end();
    Ok(out.finish())
}

fn write_unit(
    out: &mut XmlOut,
    u: &PlanUnitEntry,
    seen: &mut std::collections::HashSet<String>,
    depth: usize,
) -> Result<(), XdomeaError> {
    if depth > MAX_PLAN_DEPTH {
        return Err(out.invalid("Einheit", format!("nested deeper than {MAX_PLAN_DEPTH}")));
    }
    if !seen.insert(u.code.clone()) {
        return Err(out.invalid("Einheit/Kennzeichen", format!("code {} twice", u.code)));
    }
    out.start("Einheit");
    out.leaf("Kennzeichen", &u.code)?;
    out.leaf_opt("Inhaltsangabe", u.title.as_deref())?;
    out.start("Aussonderungsart");
    out.code(
        "Aussonderungsart",
        u.disposal.code(),
        None,
        Some(LIST_AUSSONDERUNGSART),
        Some("1.0"),
    )?;
    out.end();
    if u.valid_from.is_some() || u.valid_until.is_some() {
        out.start("Gueltigkeit");
        if let Some(d) = u.valid_from {
            out.leaf("Beginn", &d.format("%Y-%m-%d").to_string())?;
        }
        if let Some(d) = u.valid_until {
            out.leaf("Ende", &d.format("%Y-%m-%d").to_string())?;
        }
        out.end();
    }
    out.leaf("Stillgelegt", if u.inactive { "1" } else { "0" })?;
    out.start("Aufbewahrungsdauer");
    match u.retention {
        Retention::Years(n) => out.leaf("AnzahlJahre", &n.to_string())?,
        Retention::Unlimited => out.leaf("Unbefristet", "1")?,
    }
    out.end();
    for c in &u.children {
        write_unit(out, c, seen, depth + 1)?;
    }
    out.end();
    Ok(())
}

/// Receipt of a file plan (0302, Aktenplan.EmpfangBestaetigen): header only.
pub fn write_0302(header: &MessageHeader) -> Result<Vec<u8>, XdomeaError> {
    let mut out = XmlOut::new(MessageType::PlanReceipt);
    write_header_for(&mut out, header, MessageType::PlanReceipt)?;
    Ok(out.finish())
}

/// Reads a receipt of a file plan (0302).
pub fn read_0302(xml: &[u8]) -> Result<Receipt, XdomeaError> {
    read_receipt(xml, MessageType::PlanReceipt)
}

/// Reads a file plan (0301). Codes must be unique; every unit needs its Aussonderungsart
/// (A, V or B) and retention.
pub fn read_0301(xml: &[u8]) -> Result<PlanMessage, XdomeaError> {
    let message = MessageType::Plan;
    let (root, schema) = open(xml, message)?;
    let path = PathBuf(format!("/{}", root.name));
    let node = Node::root(&root, schema.namespace(), &path);
    node.check_children(&["Kopf", "Aktenplan"])?;
    let header = node.descend(node.one("Kopf")?, None, |k| read_header(k, message))?;
    let mut seen = std::collections::HashMap::new();
    let plan = node.descend(node.one("Aktenplan")?, None, |p| {
        p.check_children(&[
            "Bezeichnung",
            "Typ",
            "Version",
            "Einheit",
            "Gueltigkeit",
            "Aktenplandatei",
        ])?;
        let text = |name: &str| -> Result<String, XdomeaError> {
            p.descend(p.one(name)?, None, |t| Ok(t.text()?.trim().to_owned()))
        };
        let mut units = Vec::new();
        for (i, el) in p.all("Einheit").into_iter().enumerate() {
            units.push(p.descend(el, Some(i + 1), |u| unit(u, &mut seen, 0))?);
        }
        Ok(FilePlan {
            name: text("Bezeichnung")?,
            version: text("Version")?,
            units,
        })
    })?;
    Ok(PlanMessage {
        header,
        schema,
        plan,
    })
}

fn date(n: &Node<'_>, name: &str) -> Result<Option<NaiveDate>, XdomeaError> {
    match n.opt(name)? {
        Some(el) => n.descend(el, None, |d| {
            let t = d.text()?;
            let s = collapse(t);
            NaiveDate::parse_from_str(s.get(..10).unwrap_or(&s), "%Y-%m-%d")
                .map(Some)
                .map_err(|_| d.invalid(t, "not an xs:date"))
        }),
        None => Ok(None),
    }
}

fn unit(
    u: Node<'_>,
    seen: &mut std::collections::HashMap<String, u32>,
    depth: usize,
) -> Result<PlanUnitEntry, XdomeaError> {
    if depth > MAX_PLAN_DEPTH {
        return Err(u.invalid("Einheit", format!("nested deeper than {MAX_PLAN_DEPTH}")));
    }
    u.check_children(&[
        "Kennzeichen",
        "Inhaltsangabe",
        "BetreffKurz",
        "Aussonderungsart",
        "Gueltigkeit",
        "Stillgelegt",
        "Aufbewahrungsdauer",
        "Einheit",
        "VerweisAktenplaneinheit",
        "AnwendungsspezifischeErweiterung",
        "AnwendungsspezifischeErweiterungXML",
    ])?;
    let code_el = u.one("Kennzeichen")?;
    let code = u.descend(code_el, None, |c| Ok(c.text()?.trim().to_owned()))?;
    if code.is_empty() {
        return Err(u.invalid("", "a plan unit needs its Kennzeichen"));
    }
    if let Some(first) = seen.insert(code.clone(), code_el.line) {
        return Err(u.invalid(&code, format!("code used twice (first in line {first})")));
    }
    if seen.len() > MAX_PLAN_UNITS {
        return Err(u.invalid(&code, format!("more than {MAX_PLAN_UNITS} units")));
    }
    let disposal = u.descend(u.one("Aussonderungsart")?, None, |a| {
        a.check_children(&["Aussonderungsart", "AussonderungsartKonfigurierbar"])?;
        a.descend(a.one("Aussonderungsart")?, None, |v| {
            let code = v.code()?;
            match code.code.as_str() {
                "A" => Ok(DisposalDecision::Archive),
                "V" => Ok(DisposalDecision::Destroy),
                "B" => Ok(DisposalDecision::Appraise),
                other => Err(v.invalid(other, "not A, V or B")),
            }
        })
    })?;
    let retention = u.descend(u.one("Aufbewahrungsdauer")?, None, |r| {
        r.check_children(&["AnzahlJahre", "Unbefristet"])?;
        if let Some(y) = r.opt("AnzahlJahre")? {
            return r.descend(y, None, |y| {
                let t = y.text()?;
                collapse(t)
                    .parse::<u16>()
                    .map(Retention::Years)
                    .map_err(|_| y.invalid(t, "not a number of years"))
            });
        }
        let unlimited = r.descend(r.one("Unbefristet")?, None, parse_bool)?;
        if unlimited {
            Ok(Retention::Unlimited)
        } else {
            Err(r.invalid("0", "Unbefristet = false says nothing about the retention"))
        }
    })?;
    let (valid_from, valid_until) = match u.opt("Gueltigkeit")? {
        Some(g) => u.descend(g, None, |g| {
            g.check_children(&["Beginn", "Ende"])?;
            Ok((date(&g, "Beginn")?, date(&g, "Ende")?))
        })?,
        None => (None, None),
    };
    let inactive = u.descend(u.one("Stillgelegt")?, None, parse_bool)?;
    let mut children = Vec::new();
    for (i, el) in u.all("Einheit").into_iter().enumerate() {
        children.push(u.descend(el, Some(i + 1), |c| unit(c, seen, depth + 1))?);
    }
    Ok(PlanUnitEntry {
        code,
        title: opt_text(&u, "Inhaltsangabe")?
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        disposal,
        valid_from,
        valid_until,
        inactive,
        retention,
        children,
    })
}
