//! PDF through pdf-extract (over lopdf): it maps the fonts' encodings and ToUnicode maps
//! to text, which lopdf's own `extract_text` does not.
//!
//! pdf-extract may panic on malformed input (it indexes and unwraps inside font and
//! content-stream handling), so it runs inside `catch_unwind`: a panic there is one more
//! damaged file, never a crash of the indexer. Its state is only the document it was
//! given, so nothing is left half-changed after an unwind.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::Sink;

/// Appends the text of a PDF.
pub(crate) fn extract(bytes: &[u8], sink: &mut Sink) -> Result<(), String> {
    let run = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    }));
    match run {
        Ok(Ok(text)) => {
            sink.push(&text);
            Ok(())
        }
        Ok(Err(e)) => Err(format!("unreadable PDF: {e}")),
        Err(_) => Err("unreadable PDF (the PDF library gave up on it)".into()),
    }
}
