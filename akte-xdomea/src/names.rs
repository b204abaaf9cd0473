//! The names of xdomea messages and files in their ZIP containers:
//! `{ProzessID}_{Nachrichtenname}.zip` holding `{ProzessID}_{Nachrichtenname}.xml` and, in
//! a transfer, the primary files `{rendition UUID}_{sanitised original name}`. Apart from
//! the ZIP code (`package.rs`) so that the XML writer, which names the primary files in
//! the message, does not import the ZIP writer that imports it.

use uuid::Uuid;

use super::types::{MessageType, RenditionObject};

/// Longest sanitised original name in a primary file's ZIP name, in bytes (the UUID and
/// `_` come on top, 37 bytes).
pub const MAX_NAME_BYTES: usize = 180;

/// `{ProzessID}_{Nachrichtenname}.zip`, e.g.
/// `242f44e8-..._Aussonderung.Anbieteverzeichnis.0501.zip`.
pub fn message_zip_name(process_id: Uuid, message: MessageType) -> String {
    format!("{}_{}.zip", process_id.hyphenated(), message.element_name())
}

/// `{ProzessID}_{Nachrichtenname}.xml`: the message's name inside its ZIP.
pub fn message_xml_name(process_id: Uuid, message: MessageType) -> String {
    format!("{}_{}.xml", process_id.hyphenated(), message.element_name())
}

/// `{ProzessID}_Aussonderung.Anbieteverzeichnis.0501.zip`.
pub fn offer_zip_name(process_id: Uuid) -> String {
    message_zip_name(process_id, MessageType::Offer)
}

/// `{ProzessID}_Aussonderung.Aussonderung.0503.zip`.
pub fn transfer_zip_name(process_id: Uuid) -> String {
    message_zip_name(process_id, MessageType::Transfer)
}

/// Bidirectional-text controls, which can make a name display as something else.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A file name safe for a ZIP entry and for the file systems archives unpack to: the part
/// after the last `/` or `\`; control, bidi-control and `: * ? " < > |` characters replaced
/// by `_`; surrounding spaces and trailing dots removed; at most [`MAX_NAME_BYTES`] bytes
/// (the extension kept); `datei` if nothing is left.
pub fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let replaced: String = base
        .chars()
        .map(|c| {
            if c.is_control()
                || is_bidi_control(c)
                || !super::xml::is_xml_char(c)
                || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')
            {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = replaced.trim().trim_end_matches(['.', ' ']);
    if trimmed.is_empty() {
        return "datei".to_string();
    }
    if trimmed.len() <= MAX_NAME_BYTES {
        return trimmed.to_string();
    }
    let (stem, ext) = match trimmed.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && !e.is_empty() && e.len() <= 16 => (s, Some(e)),
        _ => (trimmed, None),
    };
    let room = MAX_NAME_BYTES - ext.map_or(0, |e| e.len() + 1);
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    match ext {
        Some(e) => format!("{}.{e}", stem[..cut].trim_end()),
        None => stem[..cut].to_string(),
    }
}

/// The name of a rendition's primary file in the transfer ZIP and in its
/// Primaerdokument/Dateiname: `{rendition UUID}_{sanitised original name}`. Unique as long
/// as rendition IDs are (the writer checks).
pub fn primary_file_name(rendition: &RenditionObject) -> String {
    format!(
        "{}_{}",
        rendition.id.hyphenated(),
        sanitize_file_name(&rendition.file_name)
    )
}
