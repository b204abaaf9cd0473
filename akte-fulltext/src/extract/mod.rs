//! Text extraction from a document's bytes: PDF, plain text, XML and Office (DOCX, ODT).
//!
//! Extraction is bounded and never fails the caller: it reads at most [`MAX_INPUT`] bytes,
//! keeps at most [`MAX_TEXT`] bytes of text, and a file it cannot read (damaged, encrypted,
//! of a kind it does not know) yields no text and the reason, which the indexer records.
//! The kind is told by the bytes first (magic numbers), the media type second, so a wrong
//! media type does not hide the text.

mod office;
mod pdf;
mod text;
mod xml;

/// Most bytes of a document that are read for extraction; a larger one is not extracted
/// (its subject is still indexed).
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;
/// Most bytes of UTF-8 text kept per document; the rest is cut (and said so).
pub const MAX_TEXT: usize = 1024 * 1024;

/// The text of one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The text, at most [`MAX_TEXT`] bytes.
    pub text: String,
    /// Why there is no text, or less than all: damaged, unknown kind, cut at the limit.
    pub note: Option<String>,
}

impl Extracted {
    fn failed(why: impl Into<String>) -> Extracted {
        Extracted {
            text: String::new(),
            note: Some(why.into()),
        }
    }
}

/// The kinds of document extraction knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PDF.
    Pdf,
    /// Office Open XML word processing (DOCX).
    Docx,
    /// OpenDocument text (ODT).
    Odt,
    /// XML.
    Xml,
    /// Plain text.
    Text,
}

/// The kind of `bytes`, by their first bytes and then by `media_type`; `None` for kinds
/// that hold no extractable text (images, unknown binaries).
pub fn kind_of(bytes: &[u8], media_type: &str) -> Option<Kind> {
    let mt = media_type.split(';').next().unwrap_or("").trim();
    let mt = mt.to_ascii_lowercase();
    if bytes.starts_with(b"%PDF-") {
        return Some(Kind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return office::kind_of_zip(bytes, &mt);
    }
    match mt.as_str() {
        "application/pdf" => return Some(Kind::Pdf),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
            return Some(Kind::Docx)
        }
        "application/vnd.oasis.opendocument.text" => return Some(Kind::Odt),
        _ => {}
    }
    let head = text::strip_bom(&bytes[..bytes.len().min(512)]);
    let looks_xml = head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    if mt.ends_with("/xml") || mt.ends_with("+xml") || looks_xml {
        return Some(Kind::Xml);
    }
    if mt.starts_with("text/") || mt.is_empty() || mt == "application/octet-stream" {
        return text::is_text(bytes).then_some(Kind::Text);
    }
    None
}

/// The text of a document's bytes (at most [`MAX_INPUT`] of them were read).
pub fn extract(bytes: &[u8], media_type: &str) -> Extracted {
    if bytes.len() as u64 > MAX_INPUT {
        return Extracted::failed(format!("larger than {MAX_INPUT} bytes: not extracted"));
    }
    let Some(kind) = kind_of(bytes, media_type) else {
        return Extracted::failed(format!("no text in a {media_type} document"));
    };
    let mut sink = Sink::default();
    let result = match kind {
        Kind::Pdf => pdf::extract(bytes, &mut sink),
        Kind::Docx => office::docx(bytes, &mut sink),
        Kind::Odt => office::odt(bytes, &mut sink),
        Kind::Xml => xml::extract(bytes, &mut sink, xml::Style::Generic),
        Kind::Text => {
            text::extract(bytes, &mut sink);
            Ok(())
        }
    };
    match result {
        Ok(()) => sink.finish(None),
        // What was read before the damage is kept; the reason says why it stops there.
        Err(why) => sink.finish(Some(format!("{kind:?}: {why}"))),
    }
}

/// Collects text up to [`MAX_TEXT`] bytes, with whitespace runs folded to one space or
/// line break so that layout does not eat the budget.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    text: String,
    full: bool,
    pending_space: bool,
    pending_break: bool,
}

impl Sink {
    /// Appends text.
    pub(crate) fn push(&mut self, s: &str) {
        for c in s.chars() {
            if self.full {
                return;
            }
            if c == '\n' || c == '\r' {
                self.pending_break = true;
            } else if c.is_whitespace() || c.is_control() {
                self.pending_space = true;
            } else {
                if !self.text.is_empty() {
                    if self.pending_break {
                        self.put('\n');
                    } else if self.pending_space {
                        self.put(' ');
                    }
                }
                self.pending_break = false;
                self.pending_space = false;
                self.put(c);
            }
        }
    }

    /// Ends a paragraph or block.
    pub(crate) fn line_break(&mut self) {
        self.pending_break = true;
    }

    /// Separates two words (text nodes of generic XML).
    pub(crate) fn space(&mut self) {
        self.pending_space = true;
    }

    /// Whether the limit is reached (extractors may stop early).
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    fn put(&mut self, c: char) {
        if self.text.len() + c.len_utf8() > MAX_TEXT {
            self.full = true;
            return;
        }
        self.text.push(c);
    }

    fn finish(self, damage: Option<String>) -> Extracted {
        let note = match (damage, self.full) {
            (Some(d), _) => Some(d),
            (None, true) => Some(format!("text cut at {MAX_TEXT} bytes")),
            (None, false) => None,
        };
        Extracted {
            text: self.text,
            note,
        }
    }
}

#[cfg(test)]
mod tests;
