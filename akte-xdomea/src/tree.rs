//! Reading the messages the agency sends (0501, 0503) as the archive receives them: the
//! header and the tree of objects (Schriftgutobjekte) with what an appraiser and an intake
//! check use: ids, kinds, references, subjects, the plan unit, the offered disposal
//! decision and the primary files' names.
//!
//! The reader is strict about what it uses (namespace, root element, Nachrichtentyp,
//! UUIDs, unique ids, the nesting of files, cases and documents) and skips the metadata it
//! does not use; run an XSD validator for the rest.

use std::collections::HashMap;

use uuid::Uuid;

use super::error::XdomeaError;
use super::read::{open, parse_uuid, read_header};
use super::types::{MessageHeader, MessageType, SchemaVersion};
use super::xml::{Node, PathBuf};

/// What an object of a received offer or transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SgoKind {
    /// Akte (top level).
    File,
    /// Teilakte.
    SubFile,
    /// Vorgang.
    Case,
    /// Teilvorgang.
    SubCase,
    /// Dokument.
    Document,
    /// Anlage (a document inside a document).
    Attachment,
}

impl SgoKind {
    /// Whether the archive appraises it (BewertetesObjekt in a 0502): files, sub-files,
    /// cases and sub-cases; documents follow their container.
    pub fn appraisable(self) -> bool {
        matches!(
            self,
            SgoKind::File | SgoKind::SubFile | SgoKind::Case | SgoKind::SubCase
        )
    }

    /// The German name, as archivists know it.
    pub fn german(self) -> &'static str {
        match self {
            SgoKind::File => "Akte",
            SgoKind::SubFile => "Teilakte",
            SgoKind::Case => "Vorgang",
            SgoKind::SubCase => "Teilvorgang",
            SgoKind::Document => "Dokument",
            SgoKind::Attachment => "Anlage",
        }
    }
}

/// One object of a received 0501 or 0503, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedObject {
    /// Identifikation/ID.
    pub id: Uuid,
    /// Akte, Teilakte, Vorgang, Teilvorgang, Dokument or Anlage.
    pub kind: SgoKind,
    /// AllgemeineMetadaten/Kennzeichen.
    pub reference: Option<String>,
    /// AllgemeineMetadaten/Betreff.
    pub subject: Option<String>,
    /// AllgemeineMetadaten/Aktenplaneinheit/Kennzeichen (files).
    pub plan_unit: Option<String>,
    /// ArchivspezifischeMetadaten/Aussonderungsart code (A, V or B), where given.
    pub disposal: Option<String>,
    /// Version/Format/Primaerdokument/Dateiname of every primary file (a transfer).
    pub primary_files: Vec<String>,
    /// Documents, cases, sub-files, sub-cases or attachments inside it, in message order.
    pub children: Vec<ReceivedObject>,
}

impl ReceivedObject {
    /// A short label: kind, reference or subject, and id.
    pub fn label(&self) -> String {
        let name = self
            .reference
            .as_deref()
            .or(self.subject.as_deref())
            .unwrap_or("");
        if name.is_empty() {
            format!("{} {}", self.kind.german(), self.id)
        } else {
            format!("{} {name} ({})", self.kind.german(), self.id)
        }
    }
}

/// A received 0501 or 0503 as a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectList {
    /// Which of the two.
    pub message: MessageType,
    /// Kopf.
    pub header: MessageHeader,
    /// The schema version the message was in.
    pub schema: SchemaVersion,
    /// The Schriftgutobjekte, in message order.
    pub objects: Vec<ReceivedObject>,
}

impl ObjectList {
    /// Every object with its parent's id, parents before children, in message order.
    pub fn walk(&self) -> Vec<(&ReceivedObject, Option<Uuid>)> {
        fn go<'a>(
            o: &'a ReceivedObject,
            parent: Option<Uuid>,
            out: &mut Vec<(&'a ReceivedObject, Option<Uuid>)>,
        ) {
            out.push((o, parent));
            for c in &o.children {
                go(c, Some(o.id), out);
            }
        }
        let mut out = Vec::new();
        for o in &self.objects {
            go(o, None, &mut out);
        }
        out
    }
}

/// Reads an offer list (0501) as the archive receives it.
pub fn read_0501(xml: &[u8]) -> Result<ObjectList, XdomeaError> {
    read_objects(xml, MessageType::Offer)
}

/// Reads the XML of a transfer (0503) as the archive receives it.
pub fn read_0503(xml: &[u8]) -> Result<ObjectList, XdomeaError> {
    read_objects(xml, MessageType::Transfer)
}

fn read_objects(xml: &[u8], message: MessageType) -> Result<ObjectList, XdomeaError> {
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
    let mut seen: HashMap<Uuid, u32> = HashMap::new();
    let mut objects = Vec::with_capacity(elements.len());
    for (i, el) in elements.into_iter().enumerate() {
        objects.push(node.descend(el, Some(i + 1), |s| {
            s.check_children(&["Akte", "Vorgang", "Dokument"])?;
            let (name, kind) = [
                ("Akte", SgoKind::File),
                ("Vorgang", SgoKind::Case),
                ("Dokument", SgoKind::Document),
            ]
            .into_iter()
            .find(|(name, _)| !s.all(name).is_empty())
            .ok_or_else(|| XdomeaError::Missing {
                location: s.location(),
                element: "Akte, Vorgang or Dokument".into(),
            })?;
            s.descend(s.one(name)?, None, |o| object(o, kind, &mut seen))
        })?);
    }
    Ok(ObjectList {
        message,
        header,
        schema,
        objects,
    })
}

/// The children a kind of object may hold, by element name.
fn child_elements(kind: SgoKind) -> &'static [(&'static str, SgoKind)] {
    match kind {
        SgoKind::File | SgoKind::SubFile => &[
            ("Dokument", SgoKind::Document),
            ("Vorgang", SgoKind::Case),
            ("Teilakte", SgoKind::SubFile),
        ],
        SgoKind::Case | SgoKind::SubCase => &[
            ("Dokument", SgoKind::Document),
            ("Teilvorgang", SgoKind::SubCase),
        ],
        SgoKind::Document | SgoKind::Attachment => &[("Anlage", SgoKind::Attachment)],
    }
}

fn opt_text(n: &Node<'_>, name: &str) -> Result<Option<String>, XdomeaError> {
    match n.opt(name)? {
        Some(el) => Ok(Some(
            n.descend(el, None, |c| Ok(c.text()?.trim().to_owned()))?,
        )),
        None => Ok(None),
    }
}

fn object(
    o: Node<'_>,
    kind: SgoKind,
    seen: &mut HashMap<Uuid, u32>,
) -> Result<ReceivedObject, XdomeaError> {
    let ident = o.one("Identifikation")?;
    let (id, line) = o.descend(ident, None, |i| {
        let el = i.one("ID")?;
        Ok((i.descend(el, None, parse_uuid)?, el.line))
    })?;
    if let Some(first_line) = seen.insert(id, line) {
        return Err(XdomeaError::DuplicateId {
            location: o.descend(ident, None, |n| Ok(n.location()))?,
            id,
            first_line,
        });
    }
    let (mut reference, mut subject, mut plan_unit) = (None, None, None);
    if let Some(general) = o.opt("AllgemeineMetadaten")? {
        o.descend(general, None, |g| {
            subject = opt_text(&g, "Betreff")?;
            reference = opt_text(&g, "Kennzeichen")?;
            if let Some(unit) = g.opt("Aktenplaneinheit")? {
                plan_unit = g.descend(unit, None, |u| opt_text(&u, "Kennzeichen"))?;
            }
            Ok(())
        })?;
    }
    let mut disposal = None;
    if let Some(archival) = o.opt("ArchivspezifischeMetadaten")? {
        o.descend(archival, None, |a| {
            if let Some(outer) = a.opt("Aussonderungsart")? {
                disposal = a.descend(outer, None, |x| match x.opt("Aussonderungsart")? {
                    Some(inner) => Ok(Some(x.descend(inner, None, |c| c.code())?.code)),
                    None => Ok(None),
                })?;
            }
            Ok(())
        })?;
    }
    let mut primary_files = Vec::new();
    if matches!(kind, SgoKind::Document | SgoKind::Attachment) {
        for (vi, version) in o.all("Version").into_iter().enumerate() {
            o.descend(version, Some(vi + 1), |v| {
                for (fi, format) in v.all("Format").into_iter().enumerate() {
                    v.descend(format, Some(fi + 1), |f| {
                        if let Some(p) = f.opt("Primaerdokument")? {
                            f.descend(p, None, |p| {
                                if let Some(name) = opt_text(&p, "Dateiname")? {
                                    primary_files.push(name);
                                }
                                Ok(())
                            })?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
    }
    // A file's content sits in Akteninhalt; cases and documents hold theirs directly.
    let container = match kind {
        SgoKind::File | SgoKind::SubFile => o.opt("Akteninhalt")?,
        _ => Some(o.el),
    };
    let mut children = Vec::new();
    if let Some(container) = container {
        let mut walk = |c: Node<'_>, children: &mut Vec<ReceivedObject>| {
            for (name, child_kind) in child_elements(kind) {
                for (i, el) in c.all(name).into_iter().enumerate() {
                    children.push(c.descend(el, Some(i + 1), |x| object(x, *child_kind, seen))?);
                }
            }
            Ok::<_, XdomeaError>(())
        };
        if std::ptr::eq(container, o.el) {
            walk(o, &mut children)?;
        } else {
            o.descend(container, None, |c| walk(c, &mut children))?;
        }
    }
    Ok(ReceivedObject {
        id,
        kind,
        reference,
        subject,
        plan_unit,
        disposal,
        primary_files,
        children,
    })
}
