//! ZIP containers: the offer (0501) and transfer (0503) packages, and reading a received
//! message out of its ZIP.
//!
//! xdomea sends each message as `{ProzessID}_{Nachrichtenname}.zip` holding
//! `{ProzessID}_{Nachrichtenname}.xml` and, in a transfer, the primary files.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, Write};

use ::zip::write::SimpleFileOptions;
use ::zip::{CompressionMethod, ZipArchive, ZipWriter};
use chrono::{Datelike, Timelike};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::error::XdomeaError;
use super::names::{message_xml_name, primary_file_name};
use super::types::{DocumentObject, FileObject, MessageHeader, MessageType, RenditionObject};
use super::write::{write_0501, write_0503_xml};
use akte_verify::digest::Digest;

/// Chunk size for streaming primary files.
const CHUNK: usize = 64 * 1024;

/// Files from this size on get ZIP64 headers: below 4 GiB with room for deflate's
/// overhead on incompressible data.
const ZIP64_FROM: u64 = 0xF000_0000;

fn zip_time(header: &MessageHeader) -> ::zip::DateTime {
    let t = header.created.naive_local();
    let (Ok(year), Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
        u16::try_from(t.year()),
        u8::try_from(t.month()),
        u8::try_from(t.day()),
        u8::try_from(t.hour()),
        u8::try_from(t.minute()),
        u8::try_from(t.second().min(59)),
    ) else {
        return ::zip::DateTime::default();
    };
    ::zip::DateTime::from_date_and_time(year, month, day, hour, minute, second).unwrap_or_default()
}

/// Writes a ZIP holding one message, `{ProzessID}_{Nachrichtenname}.xml`, and returns the
/// output.
pub fn write_message_zip<W: Write + Seek>(
    out: W,
    header: &MessageHeader,
    message: MessageType,
    xml: &[u8],
) -> Result<W, XdomeaError> {
    let mut zip = ZipWriter::new(out);
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(zip_time(header));
    zip.start_file(message_xml_name(header.process_id, message), options)?;
    zip.write_all(xml)?;
    Ok(zip.finish()?)
}

/// Writes the offer ZIP ([`offer_zip_name`](super::offer_zip_name)) holding the 0501 of
/// [`write_0501`].
pub fn write_0501_zip<W: Write + Seek>(
    out: W,
    header: &MessageHeader,
    files: &[FileObject],
) -> Result<W, XdomeaError> {
    let xml = write_0501(header, files)?;
    write_message_zip(out, header, MessageType::Offer, &xml)
}

/// A message read out of its ZIP container ([`read_received_zip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedZip {
    /// Which message the entry's name says it is.
    pub message: MessageType,
    /// The process id in the entry's name (check it against the Kopf).
    pub process_id: Uuid,
    /// The entry's name.
    pub entry: String,
    /// The XML.
    pub xml: Vec<u8>,
}

/// The message type and process id a ZIP entry's name stands for:
/// `{ProzessID}_{Nachrichtenname}.xml` (xdomea 3) or `{ProzessID}_{code}.xml` (the short
/// form of xdomea 4, which archives answer in when the agency used it).
pub fn parse_message_xml_name(name: &str) -> Option<(MessageType, Uuid)> {
    let stem = name.strip_suffix(".xml")?;
    let (process, rest) = stem.split_at_checked(36)?;
    let process = Uuid::try_parse(process).ok()?;
    let rest = rest.strip_prefix('_')?;
    MessageType::EVERY
        .into_iter()
        .find(|t| rest == t.element_name() || rest == t.code())
        .map(|t| (t, process))
}

/// Reads the XML of a received message out of its ZIP, whichever of `accepted` it is: the
/// one entry whose name [`parse_message_xml_name`] recognises, at most `max_xml_bytes`
/// long (uncompressed). Other entries are ignored. Every refusal says why: no message
/// entry (naming the entries found), more than one, a message type not in `accepted`, or
/// an entry beyond the limit (naming its size and the limit).
pub fn read_received_zip<R: Read + Seek>(
    zip: R,
    accepted: &[MessageType],
    max_xml_bytes: u64,
) -> Result<ReceivedZip, XdomeaError> {
    let mut archive = ZipArchive::new(zip)?;
    let mut found: Option<(usize, MessageType, Uuid, String)> = None;
    let mut others = Vec::new();
    for i in 0..archive.len() {
        let Some(name) = archive.name_for_index(i) else {
            continue;
        };
        let Some((message, process)) = parse_message_xml_name(name) else {
            if others.len() < 10 {
                others.push(name.to_owned());
            }
            continue;
        };
        if let Some((_, _, _, first)) = &found {
            return Err(XdomeaError::Container(format!(
                "the ZIP holds more than one message: {first} and {name}"
            )));
        }
        found = Some((i, message, process, name.to_owned()));
    }
    let expected = accepted
        .iter()
        .map(|t| format!("{{ProzessID}}_{}.xml", t.element_name()))
        .collect::<Vec<_>>()
        .join(", ");
    let Some((index, message, process_id, entry)) = found else {
        let seen = if others.is_empty() {
            "it is empty".to_owned()
        } else {
            format!("its entries: {}", others.join(", "))
        };
        return Err(XdomeaError::Container(format!(
            "the ZIP holds no xdomea message (an entry named {expected}); {seen}"
        )));
    };
    if !accepted.contains(&message) {
        return Err(XdomeaError::Container(format!(
            "the ZIP holds {entry}, a {} ({}); expected {expected}",
            message.code(),
            message.element_name()
        )));
    }
    let file = archive.by_index(index)?;
    if file.size() > max_xml_bytes {
        return Err(XdomeaError::Container(format!(
            "{entry} is {} bytes uncompressed, more than the limit of {max_xml_bytes} bytes",
            file.size()
        )));
    }
    let mut xml = Vec::new();
    file.take(max_xml_bytes.saturating_add(1))
        .read_to_end(&mut xml)?;
    if xml.len() as u64 > max_xml_bytes {
        return Err(XdomeaError::Container(format!(
            "{entry} is more than the limit of {max_xml_bytes} bytes"
        )));
    }
    Ok(ReceivedZip {
        message,
        process_id,
        entry,
        xml,
    })
}

/// Reads the XML of a received `message` out of its ZIP (see [`read_received_zip`]).
/// Parse the result with the matching `read_05xx`.
pub fn read_message_zip<R: Read + Seek>(
    zip: R,
    message: MessageType,
    max_xml_bytes: u64,
) -> Result<Vec<u8>, XdomeaError> {
    Ok(read_received_zip(zip, &[message], max_xml_bytes)?.xml)
}

/// Options of a [`TransferWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Deflate the primary files (default). Turn off to store them as they are, which
    /// saves time for formats that are compressed already (PDF, JPEG, DOCX ...).
    pub compress_primary_files: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            compress_primary_files: true,
        }
    }
}

struct Pending {
    zip_name: String,
    size: u64,
    digest: Digest,
}

/// Writes a transfer (0503) ZIP with bounded memory.
///
/// [`TransferWriter::new`] checks the files, writes the 0503 XML as the first entry and
/// notes every rendition of every version. Then [`TransferWriter::add_primary_file`] streams
/// each rendition's bytes from a reader into the ZIP in 64 KiB chunks, checking the size and
/// SHA-256 the XML declares; [`TransferWriter::finish`] fails unless every rendition was
/// added. Memory does not grow with file size: nothing holds a whole file.
///
/// After any error the ZIP is unusable: discard the output. [`write_0503`] does the whole
/// sequence with a callback that opens each rendition.
pub struct TransferWriter<W: Write + Seek> {
    zip: ZipWriter<W>,
    message: (String, u64, Digest),
    names: HashSet<String>,
    pending: HashMap<Uuid, Pending>,
    order: Vec<Uuid>,
    added: HashSet<Uuid>,
    options: TransferOptions,
    modified: ::zip::DateTime,
    buffer: Vec<u8>,
    failed: Option<String>,
}

impl<W: Write + Seek> TransferWriter<W> {
    /// Starts a transfer ZIP ([`transfer_zip_name`](super::transfer_zip_name)) with the
    /// default options.
    pub fn new(
        out: W,
        header: &MessageHeader,
        files: &[FileObject],
    ) -> Result<TransferWriter<W>, XdomeaError> {
        TransferWriter::with_options(out, header, files, TransferOptions::default())
    }

    /// Starts a transfer ZIP with `options`.
    pub fn with_options(
        out: W,
        header: &MessageHeader,
        files: &[FileObject],
        options: TransferOptions,
    ) -> Result<TransferWriter<W>, XdomeaError> {
        let xml = write_0503_xml(header, files)?;
        TransferWriter::start(out, header, MessageType::Transfer, xml, files, options)
    }

    /// Starts a ZIP of `message` (0503 or 0401) whose XML is `xml`, for the renditions of
    /// `files`.
    pub(crate) fn start(
        out: W,
        header: &MessageHeader,
        message: MessageType,
        xml: Vec<u8>,
        files: &[FileObject],
        options: TransferOptions,
    ) -> Result<TransferWriter<W>, XdomeaError> {
        let mut pending = HashMap::new();
        let mut order = Vec::new();
        for_each_rendition(files, &mut |r| {
            order.push(r.id);
            pending.insert(
                r.id,
                Pending {
                    zip_name: primary_file_name(r),
                    size: r.size,
                    digest: r.digest,
                },
            );
        });
        let modified = zip_time(header);
        let xml_name = message_xml_name(header.process_id, message);
        let mut names: HashSet<String> = pending.values().map(|p| p.zip_name.clone()).collect();
        names.insert(xml_name.clone());
        let mut zip = ZipWriter::new(out);
        let xml_options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(modified);
        zip.start_file(xml_name.as_str(), xml_options)?;
        zip.write_all(&xml)?;
        Ok(TransferWriter {
            zip,
            message: (xml_name, xml.len() as u64, Digest::of(&xml)),
            names,
            pending,
            order,
            added: HashSet::new(),
            options,
            modified,
            buffer: vec![0u8; CHUNK],
            failed: None,
        })
    }

    /// Name, size and SHA-256 of the message XML, the first entry of the ZIP.
    pub fn message_entry(&self) -> (&str, u64, Digest) {
        (self.message.0.as_str(), self.message.1, self.message.2)
    }

    /// Adds a file the message does not reference (akte's evidence file, say) as one more
    /// deflated entry. Intake tools ignore such entries. Fails if the name is empty,
    /// contains `/` or `\`, or is the name of the message or of any entry of this
    /// transfer, or if the transfer failed earlier.
    pub fn add_extra_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), XdomeaError> {
        if let Some(reason) = &self.failed {
            return Err(XdomeaError::Container(format!(
                "the transfer failed earlier ({reason})"
            )));
        }
        if name.is_empty() || name.contains(['/', '\\']) || self.names.contains(name) {
            return Err(XdomeaError::Container(format!(
                "{name:?} cannot be added: empty, a path, or already an entry of the transfer"
            )));
        }
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(self.modified)
            .large_file(bytes.len() as u64 >= ZIP64_FROM);
        let written = self
            .zip
            .start_file(name, options)
            .and_then(|()| self.zip.write_all(bytes).map_err(Into::into));
        if let Err(e) = written {
            self.failed = Some(e.to_string());
            return Err(e.into());
        }
        self.names.insert(name.to_owned());
        Ok(())
    }

    /// The renditions whose primary files are still to be added, in message order.
    pub fn missing(&self) -> Vec<Uuid> {
        self.order
            .iter()
            .filter(|id| self.pending.contains_key(id))
            .copied()
            .collect()
    }

    /// Streams the primary file of rendition `rendition` from `reader` into the ZIP and
    /// returns its size. Fails if the rendition is not in the transfer or was added
    /// already, if reading fails, or if the bytes do not match the declared size and
    /// SHA-256 (reading stops one byte past the declared size).
    pub fn add_primary_file(
        &mut self,
        rendition: Uuid,
        mut reader: impl Read,
    ) -> Result<u64, XdomeaError> {
        if let Some(reason) = &self.failed {
            return Err(XdomeaError::PrimaryFile {
                rendition,
                reason: format!("the transfer failed earlier ({reason})"),
            });
        }
        let Some(expected) = self.pending.remove(&rendition) else {
            let reason = if self.added.contains(&rendition) {
                "added twice"
            } else {
                "not a rendition of this transfer"
            };
            return Err(XdomeaError::PrimaryFile {
                rendition,
                reason: reason.into(),
            });
        };
        let result = self.stream(rendition, &expected, &mut reader);
        match &result {
            Ok(_) => {
                self.added.insert(rendition);
            }
            Err(e) => self.failed = Some(e.to_string()),
        }
        result
    }

    fn stream(
        &mut self,
        rendition: Uuid,
        expected: &Pending,
        reader: &mut dyn Read,
    ) -> Result<u64, XdomeaError> {
        let method = if self.options.compress_primary_files {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(self.modified)
            .large_file(expected.size >= ZIP64_FROM);
        self.zip.start_file(expected.zip_name.as_str(), options)?;
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        // One byte more than declared is enough to know the file is too long.
        let mut limited = reader.take(expected.size.saturating_add(1));
        loop {
            let n = match limited.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(XdomeaError::Source {
                        rendition,
                        source: Box::new(e),
                    })
                }
            };
            let chunk = &self.buffer[..n];
            hasher.update(chunk);
            total += n as u64;
            if total > expected.size {
                break;
            }
            self.zip.write_all(chunk)?;
        }
        let actual = Digest(hasher.finalize().into());
        if total != expected.size || actual != expected.digest {
            return Err(XdomeaError::PrimaryFileMismatch {
                rendition,
                expected_size: expected.size,
                actual_size: total,
                expected_digest: expected.digest,
                actual_digest: actual,
            });
        }
        Ok(total)
    }

    /// Finishes the ZIP and returns the output. Fails if a rendition's file was not added.
    pub fn finish(self) -> Result<W, XdomeaError> {
        if let Some(reason) = self.failed {
            return Err(XdomeaError::Container(format!(
                "the transfer failed earlier ({reason})"
            )));
        }
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(XdomeaError::IncompleteTransfer { missing });
        }
        Ok(self.zip.finish()?)
    }
}

/// Writes a whole transfer ZIP: [`TransferWriter::new`], then for each rendition in message
/// order `open(rendition)` and [`TransferWriter::add_primary_file`], then `finish`. `open`
/// returns a reader of the rendition's bytes (e.g. from the content store); its error is
/// reported as [`XdomeaError::Source`].
pub fn write_0503<W, R, E, F>(
    out: W,
    header: &MessageHeader,
    files: &[FileObject],
    mut open: F,
) -> Result<W, XdomeaError>
where
    W: Write + Seek,
    R: Read,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnMut(&RenditionObject) -> Result<R, E>,
{
    let mut writer = TransferWriter::new(out, header, files)?;
    let mut renditions: Vec<&RenditionObject> = Vec::new();
    for_each_rendition(files, &mut |r| renditions.push(r));
    for r in renditions {
        let reader = open(r).map_err(|e| XdomeaError::Source {
            rendition: r.id,
            source: e.into(),
        })?;
        writer.add_primary_file(r.id, reader)?;
    }
    writer.finish()
}

/// Calls `f` for every rendition of every version of every document, attachment, case and
/// sub-file, in the order the 0503 XML lists them.
pub fn for_each_rendition<'a>(files: &'a [FileObject], f: &mut dyn FnMut(&'a RenditionObject)) {
    fn doc<'a>(d: &'a DocumentObject, f: &mut dyn FnMut(&'a RenditionObject)) {
        for v in &d.versions {
            for r in &v.renditions {
                f(r);
            }
        }
        for a in &d.attachments {
            doc(&a.document, f);
        }
    }
    fn case<'a>(c: &'a super::types::CaseObject, f: &mut dyn FnMut(&'a RenditionObject)) {
        for d in &c.documents {
            doc(d, f);
        }
        for s in &c.sub_cases {
            case(s, f);
        }
    }
    fn file<'a>(x: &'a FileObject, f: &mut dyn FnMut(&'a RenditionObject)) {
        for d in &x.documents {
            doc(d, f);
        }
        for c in &x.cases {
            case(c, f);
        }
        for s in &x.sub_files {
            file(s, f);
        }
    }
    for x in files {
        file(x, f);
    }
}
