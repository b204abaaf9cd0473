//! Plain text: UTF-8, else Latin-1 (ISO 8859-1, which every byte string is).

use super::Sink;

/// `bytes` without a UTF-8 byte order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Whether `bytes` look like text: no NUL and few other control bytes in the first 8 KiB
/// (binary formats are full of both).
pub(crate) fn is_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return false;
    }
    let controls = head
        .iter()
        .filter(|b| b.is_ascii_control() && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    controls * 100 <= head.len()
}

/// Appends the text of `bytes`: UTF-8 when they are valid UTF-8, Latin-1 otherwise.
pub(crate) fn extract(bytes: &[u8], sink: &mut Sink) {
    let bytes = strip_bom(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => sink.push(s),
        Err(_) => {
            // Latin-1 maps each byte to the code point of the same number.
            let mut buf = String::with_capacity(4096);
            for chunk in bytes.chunks(4096) {
                buf.clear();
                buf.extend(chunk.iter().map(|b| char::from(*b)));
                sink.push(&buf);
                if sink.is_full() {
                    return;
                }
            }
        }
    }
}
