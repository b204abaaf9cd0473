//! XML plumbing: an escaping writer for the messages akte writes, and a strict reader that
//! turns a received message into a small element tree with positions.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};
use uuid::Uuid;

use super::error::{Location, XdomeaError};
use super::types::{CodeValue, MessageType, WriteStyle};

/// Prefix of xdomea elements in written messages.
const PREFIX: &str = "xdomea";

/// Deepest element nesting a received message may have.
const MAX_DEPTH: usize = 256;

/// Whether `c` may appear in an XML 1.0 document.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Writes an xdomea message: every element in the xdomea namespace, two-space indentation,
/// text escaped, characters checked against XML 1.0.
pub(crate) struct XmlOut {
    buf: String,
    stack: Vec<&'static str>,
    objects: Vec<Uuid>,
    style: WriteStyle,
}

impl XmlOut {
    /// Starts a message: XML declaration and the root element with the namespace.
    pub(crate) fn new(message: MessageType) -> XmlOut {
        XmlOut::with_style(message, WriteStyle::Full)
    }

    /// Starts a message written in `style`.
    pub(crate) fn with_style(message: MessageType, style: WriteStyle) -> XmlOut {
        let mut buf = String::with_capacity(4096);
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        buf.push('<');
        buf.push_str(PREFIX);
        buf.push(':');
        buf.push_str(message.element_name());
        buf.push_str(" xmlns:");
        buf.push_str(PREFIX);
        buf.push_str("=\"");
        buf.push_str(super::NAMESPACE);
        buf.push_str("\">\n");
        XmlOut {
            buf,
            stack: vec![message.element_name()],
            objects: Vec::new(),
            style,
        }
    }

    /// The style the message is written in.
    pub(crate) fn style(&self) -> WriteStyle {
        self.style
    }

    fn indent(&mut self) {
        for _ in 0..self.stack.len() {
            self.buf.push_str("  ");
        }
    }

    fn open_tag(&mut self, name: &str) {
        self.buf.push('<');
        self.buf.push_str(PREFIX);
        self.buf.push(':');
        self.buf.push_str(name);
    }

    fn close_tag(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(PREFIX);
        self.buf.push(':');
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// The object whose data is being written, for error messages.
    pub(crate) fn enter_object(&mut self, id: Uuid) {
        self.objects.push(id);
    }

    pub(crate) fn leave_object(&mut self) {
        self.objects.pop();
    }

    /// An [`XdomeaError::InvalidInput`] for `field` at the current element and object.
    pub(crate) fn invalid(&self, field: &str, reason: String) -> XdomeaError {
        let mut path: Vec<&str> = self.stack.iter().skip(1).copied().collect();
        path.push(field);
        XdomeaError::InvalidInput {
            object: self.objects.last().copied(),
            field: path.join("/"),
            reason,
        }
    }

    fn check(&self, field: &str, text: &str) -> Result<(), XdomeaError> {
        match text.chars().find(|c| !is_xml_char(*c)) {
            None => Ok(()),
            Some(c) => Err(self.invalid(
                field,
                format!(
                    "character U+{:04X} is not allowed in XML 1.0 (text {:?})",
                    c as u32,
                    truncate(text)
                ),
            )),
        }
    }

    /// Opens an element with element content.
    pub(crate) fn start(&mut self, name: &'static str) {
        self.indent();
        self.open_tag(name);
        self.buf.push_str(">\n");
        self.stack.push(name);
    }

    /// Closes the innermost open element.
    pub(crate) fn end(&mut self) {
        if let Some(name) = self.stack.pop() {
            self.indent();
            self.close_tag(name);
            self.buf.push('\n');
        }
    }

    /// An element with text content.
    pub(crate) fn leaf(&mut self, name: &'static str, text: &str) -> Result<(), XdomeaError> {
        self.check(name, text)?;
        self.indent();
        self.open_tag(name);
        self.buf.push('>');
        escape_text(&mut self.buf, text);
        self.close_tag(name);
        self.buf.push('\n');
        Ok(())
    }

    /// An element with text content, if there is text.
    pub(crate) fn leaf_opt(
        &mut self,
        name: &'static str,
        text: Option<&str>,
    ) -> Result<(), XdomeaError> {
        match text {
            Some(t) => self.leaf(name, t),
            None => Ok(()),
        }
    }

    /// A code element (xoev Code): unqualified `code` and optional `name` children,
    /// optional `listURI` and `listVersionID` attributes (left out in the archive style,
    /// as they are optional wherever the schema fixes the list).
    pub(crate) fn code(
        &mut self,
        name: &'static str,
        code: &str,
        code_name: Option<&str>,
        list_uri: Option<&str>,
        list_version: Option<&str>,
    ) -> Result<(), XdomeaError> {
        self.check(name, code)?;
        if let Some(n) = code_name {
            self.check(name, n)?;
        }
        for v in [list_uri, list_version].into_iter().flatten() {
            self.check(name, v)?;
        }
        let (list_uri, list_version) = match self.style {
            WriteStyle::Full => (list_uri, list_version),
            WriteStyle::Archive => (None, None),
        };
        self.indent();
        self.open_tag(name);
        if let Some(uri) = list_uri {
            self.buf.push_str(" listURI=\"");
            escape_attr(&mut self.buf, uri);
            self.buf.push('"');
        }
        if let Some(v) = list_version {
            self.buf.push_str(" listVersionID=\"");
            escape_attr(&mut self.buf, v);
            self.buf.push('"');
        }
        self.buf.push_str(">\n");
        self.stack.push(name);
        self.indent();
        self.buf.push_str("<code>");
        escape_text(&mut self.buf, code);
        self.buf.push_str("</code>\n");
        if let Some(n) = code_name {
            self.indent();
            self.buf.push_str("<name>");
            escape_text(&mut self.buf, n);
            self.buf.push_str("</name>\n");
        }
        self.end();
        Ok(())
    }

    /// A code element whose list attributes the schema requires (FehlermeldungCode):
    /// written with them in every style.
    pub(crate) fn code_with_list(
        &mut self,
        name: &'static str,
        code: &str,
        code_name: Option<&str>,
        list_uri: &str,
        list_version: &str,
    ) -> Result<(), XdomeaError> {
        let style = std::mem::replace(&mut self.style, WriteStyle::Full);
        let written = self.code(name, code, code_name, Some(list_uri), Some(list_version));
        self.style = style;
        written
    }

    /// Closes the root element and returns the UTF-8 bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        while !self.stack.is_empty() {
            self.end();
        }
        self.buf.into_bytes()
    }
}

fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A literal CR would be normalised away by every XML parser.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn escape_attr(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// An attribute of a received element.
#[derive(Debug)]
pub(crate) struct Attr {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

/// A received element: namespace, local name, attributes, children, text, position.
#[derive(Debug)]
pub(crate) struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub text: String,
    pub line: u32,
    pub column: u32,
}

/// Tracks line and column while positions only grow.
struct LineTracker<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    column: u32,
}

impl<'a> LineTracker<'a> {
    fn new(src: &'a str) -> LineTracker<'a> {
        LineTracker {
            src,
            pos: 0,
            line: 1,
            column: 1,
        }
    }

    fn at(&mut self, pos: u64) -> (u32, u32) {
        let mut to = usize::try_from(pos)
            .unwrap_or(usize::MAX)
            .min(self.src.len());
        while to > 0 && !self.src.is_char_boundary(to) {
            to -= 1;
        }
        if to < self.pos {
            // Positions only grow while parsing; count afresh if not.
            self.pos = 0;
            self.line = 1;
            self.column = 1;
        }
        for c in self.src[self.pos..to].chars() {
            if c == '\n' {
                self.line = self.line.saturating_add(1);
                self.column = 1;
            } else {
                self.column = self.column.saturating_add(1);
            }
        }
        self.pos = to;
        (self.line, self.column)
    }
}

fn malformed(tracker: &mut LineTracker<'_>, pos: u64, message: impl Into<String>) -> XdomeaError {
    let (line, column) = tracker.at(pos);
    XdomeaError::Malformed {
        line,
        column,
        message: message.into(),
    }
}

fn check_chars(
    tracker: &mut LineTracker<'_>,
    pos: u64,
    text: &str,
    what: &str,
) -> Result<(), XdomeaError> {
    match text.chars().find(|c| !is_xml_char(*c)) {
        None => Ok(()),
        Some(c) => Err(malformed(
            tracker,
            pos,
            format!(
                "character U+{:04X} is not allowed in XML 1.0 {what}",
                c as u32
            ),
        )),
    }
}

fn resolved_ns(res: ResolveResult<'_>) -> Result<Option<String>, String> {
    match res {
        ResolveResult::Bound(ns) => Ok(Some(ns.as_ref().to_string())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => {
            Err(format!("namespace prefix {:?} is not declared", prefix))
        }
    }
}

/// Parses a whole message into an element tree. Rejects what is not well-formed XML 1.0
/// in UTF-8, DTDs, undefined entities and undeclared namespace prefixes.
pub(crate) fn parse(xml: &[u8]) -> Result<Element, XdomeaError> {
    let src = match std::str::from_utf8(xml) {
        Ok(s) => s,
        Err(e) => {
            let valid = &xml[..e.valid_up_to()];
            // The valid prefix is UTF-8 by definition.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let mut tracker = LineTracker::new(prefix);
            return Err(malformed(
                &mut tracker,
                prefix.len() as u64,
                "not UTF-8 (xdomea messages must be UTF-8 encoded)",
            ));
        }
    };
    let src = src.strip_prefix('\u{FEFF}').unwrap_or(src);
    let mut tracker = LineTracker::new(src);
    let mut reader = NsReader::from_str(src);
    {
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.trim_text(false);
    }

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let pos = reader.buffer_position();
        let (res, event) = match reader.read_resolved_event() {
            Ok(r) => r,
            Err(e) => {
                let at = reader.error_position();
                return Err(malformed(&mut tracker, at, e.to_string()));
            }
        };
        match event {
            Event::Start(start) => {
                let ns = resolved_ns(res).map_err(|m| malformed(&mut tracker, pos, m))?;
                let name = start.local_name().as_ref().to_string();
                if root.is_some() {
                    return Err(malformed(
                        &mut tracker,
                        pos,
                        format!("element {name} after the end of the root element"),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(
                        &mut tracker,
                        pos,
                        format!("elements nested deeper than {MAX_DEPTH}"),
                    ));
                }
                let mut attrs = Vec::new();
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| malformed(&mut tracker, pos, e.to_string()))?;
                    if attr.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (ares, local) = reader.resolver().resolve_attribute(attr.key);
                    let ans = resolved_ns(ares).map_err(|m| malformed(&mut tracker, pos, m))?;
                    let value = attr
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| malformed(&mut tracker, pos, e.to_string()))?;
                    check_chars(&mut tracker, pos, &value, "in an attribute value")?;
                    attrs.push(Attr {
                        ns: ans,
                        name: local.as_ref().to_string(),
                        value: value.into_owned(),
                    });
                }
                let (line, column) = tracker.at(pos);
                stack.push(Element {
                    ns,
                    name,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                    line,
                    column,
                });
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(malformed(&mut tracker, pos, "end tag without start tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Empty(_) => {
                // expand_empty_elements turns these into Start + End.
                return Err(malformed(
                    &mut tracker,
                    pos,
                    "unexpected empty-element event",
                ));
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                check_chars(&mut tracker, pos, &content, "in text")?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None => {
                        if !content.trim().is_empty() {
                            return Err(malformed(
                                &mut tracker,
                                pos,
                                "text outside the root element",
                            ));
                        }
                    }
                }
            }
            Event::CData(data) => {
                let content = data.xml10_content();
                check_chars(&mut tracker, pos, &content, "in CDATA")?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None => {
                        return Err(malformed(
                            &mut tracker,
                            pos,
                            "CDATA outside the root element",
                        ))
                    }
                }
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => c,
                        _ => {
                            return Err(malformed(
                                &mut tracker,
                                pos,
                                format!(
                                    "invalid character reference &{};",
                                    truncate(&r.xml10_content())
                                ),
                            ))
                        }
                    }
                } else {
                    match r.xml10_content().as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(malformed(
                                &mut tracker,
                                pos,
                                format!("undefined entity &{};", truncate(other)),
                            ))
                        }
                    }
                };
                match stack.last_mut() {
                    Some(el) => el.text.push(c),
                    None => {
                        return Err(malformed(
                            &mut tracker,
                            pos,
                            "reference outside the root element",
                        ))
                    }
                }
            }
            Event::Decl(decl) => {
                if let Some(enc) = decl.encoding() {
                    let enc = enc.map_err(|e| malformed(&mut tracker, pos, e.to_string()))?;
                    let enc = enc.as_ref().to_string();
                    if !enc.eq_ignore_ascii_case("UTF-8") {
                        return Err(malformed(
                            &mut tracker,
                            pos,
                            format!("encoding {enc:?} declared; xdomea messages must be UTF-8"),
                        ));
                    }
                }
                let version = decl
                    .version()
                    .map_err(|e| malformed(&mut tracker, pos, e.to_string()))?;
                if version.as_ref() != "1.0" {
                    return Err(malformed(
                        &mut tracker,
                        pos,
                        format!("XML version {:?}; expected 1.0", truncate(&version)),
                    ));
                }
            }
            Event::DocType(_) => {
                return Err(malformed(
                    &mut tracker,
                    pos,
                    "document type declarations (DTD) are not accepted",
                ));
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        let at = src.len() as u64;
        return Err(malformed(
            &mut tracker,
            at,
            format!(
                "unexpected end of document: element {} (line {}) is not closed",
                open.name, open.line
            ),
        ));
    }
    root.ok_or_else(|| malformed(&mut tracker, src.len() as u64, "no root element"))
}

/// A received element with its path, for walking a message with precise errors.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    pub el: &'a Element,
    /// The message's namespace: every xdomea element must be in it.
    pub ns: &'a str,
    path: &'a PathBuf,
}

/// An element path, built as the walk descends.
pub(crate) struct PathBuf(pub String);

impl<'a> Node<'a> {
    pub(crate) fn root(el: &'a Element, ns: &'a str, path: &'a PathBuf) -> Node<'a> {
        Node { el, ns, path }
    }

    pub(crate) fn location(&self) -> Location {
        Location {
            path: self.path.0.clone(),
            line: self.el.line,
            column: self.el.column,
        }
    }

    fn child_location(&self, child: &Element, index: Option<usize>) -> Location {
        Location {
            path: child_path(&self.path.0, &child.name, index),
            line: child.line,
            column: child.column,
        }
    }

    /// Every child must be an xdomea element named in `allowed`; text beside child
    /// elements is not allowed.
    pub(crate) fn check_children(&self, allowed: &[&str]) -> Result<(), XdomeaError> {
        if !self.el.children.is_empty() && !self.el.text.trim().is_empty() {
            return Err(XdomeaError::InvalidValue {
                location: self.location(),
                value: truncate(self.el.text.trim()),
                reason: "text is not allowed beside child elements".to_string(),
            });
        }
        for child in &self.el.children {
            if child.ns.as_deref() != Some(self.ns) {
                return Err(XdomeaError::WrongNamespace {
                    location: self.child_location(child, None),
                    element: child.name.clone(),
                    found: child.ns.clone(),
                    expected: self.ns.to_string(),
                });
            }
            if !allowed.contains(&child.name.as_str()) {
                return Err(XdomeaError::Unexpected {
                    location: self.child_location(child, None),
                    element: child.name.clone(),
                    reason: format!("not allowed in {}", self.el.name),
                });
            }
        }
        Ok(())
    }

    fn matching<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a Element> + 'n
    where
        'a: 'n,
    {
        let ns = self.ns;
        self.el
            .children
            .iter()
            .filter(move |c| c.name == name && c.ns.as_deref() == Some(ns))
    }

    /// Walks into `child`, extending the path.
    pub(crate) fn descend<T>(
        &self,
        child: &'a Element,
        index: Option<usize>,
        f: impl FnOnce(Node<'_>) -> Result<T, XdomeaError>,
    ) -> Result<T, XdomeaError> {
        let path = PathBuf(child_path(&self.path.0, &child.name, index));
        f(Node {
            el: child,
            ns: self.ns,
            path: &path,
        })
    }

    /// The one child `name`: missing or repeated is an error.
    pub(crate) fn one(&self, name: &str) -> Result<&'a Element, XdomeaError> {
        let mut it = self.matching(name);
        let first = it.next().ok_or_else(|| XdomeaError::Missing {
            location: self.location(),
            element: name.to_string(),
        })?;
        if let Some(second) = it.next() {
            return Err(XdomeaError::Unexpected {
                location: self.child_location(second, Some(2)),
                element: name.to_string(),
                reason: format!("allowed only once in {}", self.el.name),
            });
        }
        Ok(first)
    }

    /// The child `name`, if present; repeated is an error.
    pub(crate) fn opt(&self, name: &str) -> Result<Option<&'a Element>, XdomeaError> {
        let mut it = self.matching(name);
        let first = it.next();
        if let Some(second) = it.next() {
            return Err(XdomeaError::Unexpected {
                location: self.child_location(second, Some(2)),
                element: name.to_string(),
                reason: format!("allowed only once in {}", self.el.name),
            });
        }
        Ok(first)
    }

    /// All children `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&'a Element> {
        self.matching(name).collect()
    }

    /// The text of this element, which must have no child elements.
    pub(crate) fn text(&self) -> Result<&'a str, XdomeaError> {
        if let Some(child) = self.el.children.first() {
            return Err(XdomeaError::Unexpected {
                location: self.child_location(child, None),
                element: child.name.clone(),
                reason: format!("{} has text content only", self.el.name),
            });
        }
        Ok(&self.el.text)
    }

    /// An unqualified attribute.
    pub(crate) fn attr(&self, name: &str) -> Option<&'a str> {
        self.el
            .attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// This element as an xoev Code: unqualified children `code` (required) and `name`
    /// (optional), attributes `listURI` and `listVersionID`.
    pub(crate) fn code(&self) -> Result<CodeValue, XdomeaError> {
        let mut code = None;
        let mut name = None;
        for child in &self.el.children {
            if child.ns.is_some() {
                return Err(XdomeaError::WrongNamespace {
                    location: self.child_location(child, None),
                    element: child.name.clone(),
                    found: child.ns.clone(),
                    expected: "no namespace (code and name are unqualified)".to_string(),
                });
            }
            let slot = match child.name.as_str() {
                "code" => &mut code,
                "name" => &mut name,
                _ => {
                    return Err(XdomeaError::Unexpected {
                        location: self.child_location(child, None),
                        element: child.name.clone(),
                        reason: "a code has only code and name".to_string(),
                    })
                }
            };
            if slot.is_some() {
                return Err(XdomeaError::Unexpected {
                    location: self.child_location(child, Some(2)),
                    element: child.name.clone(),
                    reason: format!("allowed only once in {}", self.el.name),
                });
            }
            if let Some(grandchild) = child.children.first() {
                return Err(XdomeaError::Unexpected {
                    location: Location {
                        path: format!(
                            "{}/{}",
                            child_path(&self.path.0, &child.name, None),
                            grandchild.name
                        ),
                        line: grandchild.line,
                        column: grandchild.column,
                    },
                    element: grandchild.name.clone(),
                    reason: format!("{} has text content only", child.name),
                });
            }
            *slot = Some(child.text.as_str());
        }
        let code = code.ok_or_else(|| XdomeaError::Missing {
            location: self.location(),
            element: "code".to_string(),
        })?;
        Ok(CodeValue {
            // xs:token: whitespace collapsed.
            code: collapse(code),
            name: name.map(|n| n.to_string()),
            list_uri: self.attr("listURI").map(str::to_string),
            list_version: self.attr("listVersionID").map(str::to_string),
        })
    }

    pub(crate) fn invalid(&self, value: &str, reason: impl Into<String>) -> XdomeaError {
        XdomeaError::InvalidValue {
            location: self.location(),
            value: truncate(value),
            reason: reason.into(),
        }
    }
}

fn child_path(parent: &str, name: &str, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("{parent}/{name}[{i}]"),
        None => format!("{parent}/{name}"),
    }
}

/// XSD whitespace "collapse": trim and fold runs of whitespace into one space.
pub(crate) fn collapse(s: &str) -> String {
    s.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}
