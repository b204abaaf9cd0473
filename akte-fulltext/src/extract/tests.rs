//! Extraction on small documents made here: a PDF written by hand, DOCX and ODT zipped
//! with the zip crate, XML and text in both encodings, and damaged inputs.

use std::io::Write;

use super::*;

/// A one-page PDF showing `text` (Latin-1 bytes; Helvetica, WinAnsiEncoding), with a
/// correct cross-reference table.
pub(crate) fn pdf_with(text: &[u8]) -> Vec<u8> {
    let mut stream = b"BT /F1 12 Tf 72 712 Td (".to_vec();
    stream.extend_from_slice(text);
    stream.extend_from_slice(b") Tj ET");
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        [
            format!("<< /Length {} >>\nstream\n", stream.len()).into_bytes(),
            stream.clone(),
            b"\nendstream".to_vec(),
        ]
        .concat(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A ZIP of `(name, content)` parts.
pub(crate) fn zip_of(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in parts {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub(crate) fn docx_with(paragraphs: &[&str]) -> Vec<u8> {
    let body: String = paragraphs
        .iter()
        .map(|p| {
            // Two runs per paragraph: runs join without a space.
            let (a, b) = p.split_at(p.len() / 2);
            format!("<w:p><w:r><w:t>{a}</w:t></w:r><w:r><w:t>{b}</w:t></w:r></w:p>")
        })
        .collect();
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    zip_of(&[
        ("[Content_Types].xml", "<Types/>"),
        ("word/document.xml", &doc),
    ])
}

pub(crate) fn odt_with(paragraphs: &[&str]) -> Vec<u8> {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<text:p>{p}</text:p>"))
        .collect();
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>{body}</office:text></office:body></office:document-content>"#
    );
    zip_of(&[
        ("mimetype", "application/vnd.oasis.opendocument.text"),
        ("content.xml", &doc),
    ])
}

#[test]
fn pdf_text_with_umlauts() {
    // "Bauantrag Müller" in WinAnsi: ü is 0xFC.
    let pdf = pdf_with(b"Bauantrag M\xFCller Flurst\xFCck 12");
    let e = extract(&pdf, "application/pdf");
    assert_eq!(e.note, None, "{e:?}");
    assert!(e.text.contains("Bauantrag Müller Flurstück 12"), "{e:?}");
}

#[test]
fn damaged_pdf_yields_no_text_and_a_reason() {
    let mut pdf = pdf_with(b"Bauantrag");
    pdf.truncate(40);
    let e = extract(&pdf, "application/pdf");
    assert!(e.text.is_empty());
    assert!(e.note.as_deref().unwrap_or("").contains("PDF"), "{e:?}");
    // Garbage after the magic number, and every prefix of a good PDF: no panic.
    let good = pdf_with(b"Bauantrag");
    for n in (0..good.len()).step_by(7) {
        let _ = extract(&good[..n], "application/pdf");
    }
    let _ = extract(b"%PDF-1.7\n\xFF\xFE garbage << /Root 9 0 R >>", "");
}

#[test]
fn docx_paragraphs_and_runs() {
    let d = docx_with(&["Anhörung zum Bescheid", "Sehr geehrte Frau Müller"]);
    let e = extract(&d, "application/octet-stream");
    assert_eq!(e.note, None);
    assert_eq!(e.text, "Anhörung zum Bescheid\nSehr geehrte Frau Müller");
}

#[test]
fn odt_paragraphs() {
    let d = odt_with(&["Widerspruch", "gegen den Gebührenbescheid"]);
    let e = extract(&d, "");
    assert_eq!(e.note, None);
    assert_eq!(e.text, "Widerspruch\ngegen den Gebührenbescheid");
}

#[test]
fn damaged_office_files_yield_a_reason() {
    let mut d = docx_with(&["Text"]);
    d.truncate(d.len() / 2);
    let e = extract(
        &d,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    );
    assert!(e.text.is_empty());
    assert!(e.note.is_some());
    // A ZIP that is neither: no text, no error.
    let other = zip_of(&[("a.txt", "hallo")]);
    let e = extract(&other, "application/zip");
    assert!(e.text.is_empty());
    assert!(e.note.is_some());
    // Broken XML inside a DOCX: the text before the damage is kept, with the reason.
    let bad = zip_of(&[(
        "word/document.xml",
        "<w:document><w:p><w:t>Vorher</w:t></w:p></w:oops>",
    )]);
    let e = extract(&bad, "");
    assert_eq!(e.text, "Vorher");
    assert!(e.note.as_deref().unwrap_or("").contains("XML"), "{e:?}");
}

#[test]
fn xml_text_nodes_only() {
    let x = br#"<?xml version="1.0"?><akte a="attribut"><betreff>Bauantrag &amp; Umbau</betreff><!-- nein --><b><![CDATA[Stra&szlig;e]]></b><c>Ma&#223;nahme</c></akte>"#;
    let e = extract(x, "application/xml");
    assert_eq!(e.note, None);
    assert_eq!(e.text, "Bauantrag & Umbau Stra&szlig;e Maßnahme");
}

#[test]
fn text_utf8_and_latin1() {
    let e = extract("Grüße aus Köln".as_bytes(), "text/plain");
    assert_eq!(e.text, "Grüße aus Köln");
    let e = extract(b"Gr\xFC\xDFe aus K\xF6ln", "text/plain; charset=iso-8859-1");
    assert_eq!(e.text, "Grüße aus Köln");
    // With a BOM, and whitespace folded.
    let e = extract(b"\xEF\xBB\xBFeins   zwei\r\n\r\ndrei", "text/plain");
    assert_eq!(e.text, "eins zwei\ndrei");
}

#[test]
fn binary_yields_no_text() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let e = extract(png, "image/png");
    assert!(e.text.is_empty());
    assert!(e.note.is_some());
    let e = extract(&[0u8, 1, 2, 3, 200, 255], "");
    assert!(e.text.is_empty());
}

#[test]
fn text_is_cut_at_the_limit() {
    let big = "wort ".repeat(MAX_TEXT / 5 + 100);
    let e = extract(big.as_bytes(), "text/plain");
    assert!(e.text.len() <= MAX_TEXT);
    assert!(e.text.len() > MAX_TEXT - 10);
    assert!(e.note.as_deref().unwrap_or("").contains("cut"));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator over every kind's magic number.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let heads: [&[u8]; 5] = [b"%PDF-1.4\n", b"PK\x03\x04", b"<?xml", b"", b"<a>"];
    for round in 0..300 {
        let mut buf = heads[round % heads.len()].to_vec();
        for _ in 0..(round * 3 % 400) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        let _ = extract(&buf, "");
        let _ = extract(&buf, "application/pdf");
    }
}
