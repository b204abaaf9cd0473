//! Office documents: DOCX (Office Open XML) and ODT (OpenDocument), both a ZIP of XML
//! parts. Only the part with the body text is read (`word/document.xml`, `content.xml`),
//! and at most [`MAX_PART`] bytes of it, whatever the ZIP claims (a ZIP bomb stops there).

use std::io::{Cursor, Read};

use super::xml::{self, Style};
use super::{Kind, Sink};

/// Most uncompressed bytes of the body part read.
const MAX_PART: u64 = 64 * 1024 * 1024;

/// DOCX or ODT by the ZIP's parts (then by media type); `None` for other ZIPs.
pub(crate) fn kind_of_zip(bytes: &[u8], media_type: &str) -> Option<Kind> {
    match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(mut z) => {
            if z.by_name("word/document.xml").is_ok() {
                return Some(Kind::Docx);
            }
            if let Ok(mut m) = z.by_name("mimetype") {
                let mut s = String::new();
                if (&mut m).take(128).read_to_string(&mut s).is_ok()
                    && s.trim() == "application/vnd.oasis.opendocument.text"
                {
                    return Some(Kind::Odt);
                }
            }
            if z.by_name("content.xml").is_ok() && media_type.contains("opendocument.text") {
                return Some(Kind::Odt);
            }
            None
        }
        // A damaged ZIP that says it is one of ours is tried as such (and fails with a
        // reason); any other is no text.
        Err(_) => match media_type {
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                Some(Kind::Docx)
            }
            "application/vnd.oasis.opendocument.text" => Some(Kind::Odt),
            _ => None,
        },
    }
}

/// The XML of `part` in the ZIP `bytes`, at most [`MAX_PART`] bytes.
fn part(bytes: &[u8], part: &str) -> Result<Vec<u8>, String> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a ZIP: {e}"))?;
    let f = z
        .by_name(part)
        .map_err(|e| format!("no readable {part}: {e}"))?;
    let mut out = Vec::new();
    f.take(MAX_PART)
        .read_to_end(&mut out)
        .map_err(|e| format!("{part} cannot be read: {e}"))?;
    Ok(out)
}

/// The body text of a DOCX.
pub(crate) fn docx(bytes: &[u8], sink: &mut Sink) -> Result<(), String> {
    let xml = part(bytes, "word/document.xml")?;
    xml::extract(&xml, sink, Style::Docx)
}

/// The body text of an ODT.
pub(crate) fn odt(bytes: &[u8], sink: &mut Sink) -> Result<(), String> {
    let xml = part(bytes, "content.xml")?;
    xml::extract(&xml, sink, Style::Odt)
}
