//! XML: the text nodes, in document order. Markup, attributes, comments and processing
//! instructions are left out; a well-formedness error ends extraction with what was read.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::Sink;

/// Deepest nesting read (a bound against hostile inputs; quick-xml keeps a stack of names).
const MAX_DEPTH: usize = 512;

/// How element boundaries become whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Every element boundary separates words.
    Generic,
    /// WordprocessingML: runs (`w:r`) join without space, `w:p` ends a paragraph, `w:tab`
    /// and `w:br` separate.
    Docx,
    /// OpenDocument: `text:p` and `text:h` end a paragraph, `text:s`, `text:tab` and
    /// `text:line-break` separate, spans join.
    Odt,
}

/// What an element boundary means in `style`.
fn boundary(style: Style, name: &str, sink: &mut Sink) {
    match style {
        Style::Generic => sink.space(),
        Style::Docx => match name {
            "w:p" | "w:br" | "w:cr" => sink.line_break(),
            "w:tab" => sink.space(),
            _ => {}
        },
        Style::Odt => match name {
            "text:p" | "text:h" | "text:line-break" | "table:table-cell" => sink.line_break(),
            "text:s" | "text:tab" => sink.space(),
            _ => {}
        },
    }
}

/// Appends the text nodes of the XML document `bytes`.
pub(crate) fn extract(bytes: &[u8], sink: &mut Sink, style: Style) -> Result<(), String> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    loop {
        if sink.is_full() {
            return Ok(());
        }
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                boundary(style, e.name().as_ref(), sink);
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                boundary(style, e.name().as_ref(), sink);
            }
            Event::Empty(e) => boundary(style, e.name().as_ref(), sink),
            Event::Text(t) => {
                let s = t.xml10_content();
                sink.push(&s);
            }
            Event::CData(t) => {
                let s = t.xml10_content();
                sink.push(&s);
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    match r.xml10_content().as_ref() {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "apos" => Some('\''),
                        "quot" => Some('"'),
                        // An entity of a DTD is not expanded (no DTD is read).
                        _ => None,
                    }
                };
                if let Some(c) = c {
                    let mut b = [0u8; 4];
                    sink.push(c.encode_utf8(&mut b));
                }
            }
            Event::Eof => return Ok(()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}
