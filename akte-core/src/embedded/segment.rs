//! Journal segment files: the on-disk framing of journal records.
//!
//! A segment is a header followed by records, each framed with a magic number, a length
//! and a CRC-32C, so that a reader can tell a record cut short by a crash (a torn tail)
//! from damage in the middle of history. The byte layout is in docs/FORMAT.md,
//! "Segment files"; this module is its only writer and reader.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AKTE-JNL";
/// Version of the segment format written by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Length of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// First four bytes of every record ("AKR1").
pub const RECORD_MAGIC: [u8; 4] = *b"AKR1";
/// Length of a record's frame header (magic, body length, CRC-32C).
pub const RECORD_HEADER_LEN: usize = 12;
/// Largest record body accepted; bigger lengths are damage, not data.
pub const MAX_RECORD_BODY: usize = 16 << 20;
/// Attachment state byte: bytes present.
const ATTACHMENT_PRESENT: u8 = 1;
/// Attachment state byte: bytes removed by destruction, digest kept.
const ATTACHMENT_REDACTED: u8 = 2;

pub use crate::entry::Attachment;

/// One record as framed on disk: the entry's bytes and its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The canonical entry encoding (what the leaf hash covers).
    pub entry_bytes: Vec<u8>,
    /// Attached records.
    pub attachments: Vec<Attachment>,
}

/// Where a segment failed to read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Reading the file failed.
    #[error("read {path}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file ends inside a record (or inside the header).
    #[error("{path}: incomplete record at byte {offset} (file ends after {len} bytes)")]
    Incomplete {
        /// The segment file.
        path: PathBuf,
        /// Offset of the incomplete record.
        offset: u64,
        /// File length.
        len: u64,
    },
    /// A record whose checksum is right but whose body does not decode: written that way,
    /// so never a torn write.
    #[error("{path}: record at byte {offset} has a valid checksum but does not decode: {reason}")]
    Malformed {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The bytes at `offset` are not a well-formed record or header.
    #[error("{path}: damaged at byte {offset}: {reason}")]
    Damaged {
        /// The segment file.
        path: PathBuf,
        /// Offset of the damaged record or header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl From<SegmentError> for crate::journal::JournalError {
    fn from(e: SegmentError) -> Self {
        use crate::journal::JournalError;
        match e {
            SegmentError::Io { path, source } => JournalError::Io(crate::backend::IoFailure::new(
                "read",
                path.display().to_string(),
                source,
            )),
            SegmentError::Incomplete { ref path, .. }
            | SegmentError::Malformed { ref path, .. }
            | SegmentError::Damaged { ref path, .. } => JournalError::Damaged {
                place: path.display().to_string(),
                detail: e.to_string(),
            },
        }
    }
}

/// The name of the segment file whose first entry is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Parses a segment file name back into its first sequence number.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a segment header.
pub fn encode_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_be_bytes());
    h[12..20].copy_from_slice(&first_seq.to_be_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Decodes a segment header, returning the first sequence number it declares.
pub fn decode_header(path: &Path, h: &[u8; SEGMENT_HEADER_LEN]) -> Result<u64, SegmentError> {
    let damaged = |reason: String| SegmentError::Damaged {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    if h[0..8] != SEGMENT_MAGIC {
        return Err(damaged("not an akte journal segment (bad magic)".into()));
    }
    let crc = u32::from_be_bytes([h[20], h[21], h[22], h[23]]);
    if crc != crc32c::crc32c(&h[0..20]) {
        return Err(damaged("segment header checksum mismatch".into()));
    }
    let version = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(damaged(format!(
            "segment format version {version}; this build reads version {SEGMENT_FORMAT_VERSION}"
        )));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[12..20]);
    Ok(u64::from_be_bytes(seq))
}

/// Frames a record: header (magic, body length, CRC-32C of length and body) and body.
pub fn encode_record(entry_bytes: &[u8], attachments: &[Attachment]) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        entry_bytes.len()
            + 6
            + attachments
                .iter()
                .map(|a| 37 + a.bytes.as_ref().map_or(a.len as usize, Vec::len))
                .sum::<usize>(),
    );
    body.extend_from_slice(&(entry_bytes.len() as u32).to_be_bytes());
    body.extend_from_slice(entry_bytes);
    body.extend_from_slice(&(attachments.len() as u16).to_be_bytes());
    for a in attachments {
        match &a.bytes {
            Some(bytes) => {
                body.push(ATTACHMENT_PRESENT);
                body.extend_from_slice(a.digest.as_bytes());
                body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                body.extend_from_slice(bytes);
            }
            None => {
                // Same length as the bytes it replaces, all zeros: the record keeps its size.
                body.push(ATTACHMENT_REDACTED);
                body.extend_from_slice(a.digest.as_bytes());
                body.extend_from_slice(&a.len.to_be_bytes());
                body.resize(body.len() + a.len as usize, 0);
            }
        }
    }
    let len = (body.len() as u32).to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks a record frame header; returns the body length if it is plausible.
fn check_frame_header(h: &[u8; RECORD_HEADER_LEN]) -> Result<(usize, u32), String> {
    if h[0..4] != RECORD_MAGIC {
        return Err(format!("bad record magic {:02x?}", &h[0..4]));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_RECORD_BODY {
        return Err(format!("record length {len} exceeds {MAX_RECORD_BODY}"));
    }
    Ok((len, u32::from_be_bytes([h[8], h[9], h[10], h[11]])))
}

fn body_crc(len: usize, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&(len as u32).to_be_bytes()), body)
}

/// Decodes a record body (after its checksum was checked).
pub fn decode_body(body: &[u8]) -> Result<RawRecord, String> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or_else(|| format!("record body ends at {} while reading {n} bytes", body.len()))?;
        let s = &body[pos..end];
        pos = end;
        Ok(s)
    };
    let elen = u32::from_be_bytes(take(4)?.try_into().map_err(|_| "entry length")?) as usize;
    let entry_bytes = take(elen)?.to_vec();
    let count = u16::from_be_bytes(take(2)?.try_into().map_err(|_| "attachment count")?);
    let mut attachments = Vec::with_capacity(count as usize);
    for i in 0..count {
        let state = take(1)?[0];
        let digest = Digest::from_slice(take(32)?).ok_or("attachment digest")?;
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| "attachment length")?);
        let raw = take(len as usize)?;
        let bytes = match state {
            ATTACHMENT_PRESENT => Some(raw.to_vec()),
            ATTACHMENT_REDACTED if raw.iter().all(|&b| b == 0) => None,
            ATTACHMENT_REDACTED => {
                return Err(format!("redacted attachment {i} is not zero-filled"))
            }
            other => return Err(format!("attachment {i} has unknown state {other}")),
        };
        attachments.push(Attachment { digest, bytes, len });
    }
    if pos != body.len() {
        return Err(format!(
            "{} trailing bytes in record body",
            body.len() - pos
        ));
    }
    Ok(RawRecord {
        entry_bytes,
        attachments,
    })
}

/// Reads the records of one segment file in order, streaming.
pub struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    offset: u64,
    len: u64,
    first_seq: u64,
}

impl SegmentReader {
    /// Opens a segment and checks its header.
    pub fn open(path: &Path) -> Result<SegmentReader, SegmentError> {
        let io_err = |source| SegmentError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let mut file = BufReader::with_capacity(256 << 10, file);
        if len < SEGMENT_HEADER_LEN as u64 {
            return Err(SegmentError::Incomplete {
                path: path.to_path_buf(),
                offset: 0,
                len,
            });
        }
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact(&mut h).map_err(io_err)?;
        let first_seq = decode_header(path, &h)?;
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file,
            offset: SEGMENT_HEADER_LEN as u64,
            len,
            first_seq,
        })
    }

    /// Opens a segment positioned at `offset`, which must be the start of a record.
    pub fn open_at(path: &Path, offset: u64) -> Result<SegmentReader, SegmentError> {
        let mut r = SegmentReader::open(path)?;
        r.file
            .seek(SeekFrom::Start(offset))
            .map_err(|source| SegmentError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        r.offset = offset;
        Ok(r)
    }

    /// The first sequence number the header declares.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// File length when opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment holds no records.
    pub fn is_empty(&self) -> bool {
        self.len == SEGMENT_HEADER_LEN as u64
    }

    /// Reads the next record, with its offset; `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<(u64, RawRecord)>, SegmentError> {
        let offset = self.offset;
        if offset == self.len {
            return Ok(None);
        }
        let path = self.path.clone();
        let len = self.len;
        let incomplete = || SegmentError::Incomplete {
            path: path.clone(),
            offset,
            len,
        };
        let damaged = |reason: String| SegmentError::Damaged {
            path: path.clone(),
            offset,
            reason,
        };
        if self.len - offset < RECORD_HEADER_LEN as u64 {
            return Err(incomplete());
        }
        let mut h = [0u8; RECORD_HEADER_LEN];
        self.read_exact(&mut h)?;
        let (body_len, crc) = check_frame_header(&h).map_err(damaged)?;
        if self.len - offset - (RECORD_HEADER_LEN as u64) < body_len as u64 {
            return Err(incomplete());
        }
        let mut body = vec![0u8; body_len];
        self.read_exact(&mut body)?;
        if body_crc(body_len, &body) != crc {
            return Err(damaged("record checksum mismatch".into()));
        }
        let rec = decode_body(&body).map_err(|reason| SegmentError::Malformed {
            path: path.clone(),
            offset,
            reason,
        })?;
        self.offset = offset + (RECORD_HEADER_LEN + body_len) as u64;
        Ok(Some((offset, rec)))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SegmentError> {
        self.file
            .read_exact(buf)
            .map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Whether any well-framed record (magic, plausible length, matching checksum) starts
/// somewhere in `bytes`. Recovery uses it to tell a torn tail (nothing valid follows the
/// damage) from damage in the middle of history (valid records follow it).
pub fn contains_valid_record(bytes: &[u8]) -> Option<usize> {
    let mut i = 0usize;
    while i + RECORD_HEADER_LEN <= bytes.len() {
        if bytes[i..i + 4] == RECORD_MAGIC {
            let mut h = [0u8; RECORD_HEADER_LEN];
            h.copy_from_slice(&bytes[i..i + RECORD_HEADER_LEN]);
            if let Ok((len, crc)) = check_frame_header(&h) {
                let start = i + RECORD_HEADER_LEN;
                if let Some(body) = bytes.get(start..start + len) {
                    if body_crc(len, body) == crc {
                        return Some(i);
                    }
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_segment(path: &Path, first: u64, records: &[Vec<u8>]) {
        let mut f = File::create(path).unwrap();
        f.write_all(&encode_header(first)).unwrap();
        for r in records {
            f.write_all(r).unwrap();
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
    }

    #[test]
    fn records_round_trip_with_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(segment_file_name(5));
        let a = Attachment::new(b"salted record".to_vec());
        let redacted = Attachment::new(b"gone".to_vec()).redacted();
        let r1 = encode_record(b"entry one", std::slice::from_ref(&a));
        let r2 = encode_record(b"entry two", &[redacted.clone(), a.clone()]);
        write_segment(&p, 5, &[r1, r2]);
        let mut rd = SegmentReader::open(&p).unwrap();
        assert_eq!(rd.first_seq(), 5);
        let (o1, x1) = rd.next_record().unwrap().unwrap();
        assert_eq!(o1, SEGMENT_HEADER_LEN as u64);
        assert_eq!(x1.entry_bytes, b"entry one");
        assert_eq!(x1.attachments, vec![a.clone()]);
        let (_, x2) = rd.next_record().unwrap().unwrap();
        assert_eq!(x2.attachments, vec![redacted, a]);
        assert!(rd.next_record().unwrap().is_none());
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_flip_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.seg");
        let rec = encode_record(b"entry", &[Attachment::new(b"meta".to_vec())]);
        let mut full = encode_header(0).to_vec();
        full.extend_from_slice(&rec);
        for cut in SEGMENT_HEADER_LEN + 1..full.len() {
            std::fs::write(&p, &full[..cut]).unwrap();
            let mut rd = SegmentReader::open(&p).unwrap();
            match rd.next_record() {
                Err(SegmentError::Incomplete { offset, .. }) => {
                    assert_eq!(offset, SEGMENT_HEADER_LEN as u64)
                }
                Err(SegmentError::Damaged { .. }) => {} // a cut length field may look implausible
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        for pos in SEGMENT_HEADER_LEN..full.len() {
            let mut bad = full.clone();
            bad[pos] ^= 0x40;
            std::fs::write(&p, &bad).unwrap();
            let mut rd = SegmentReader::open(&p).unwrap();
            assert!(rd.next_record().is_err(), "flip at {pos} went unnoticed");
        }
        for pos in 0..SEGMENT_HEADER_LEN {
            let mut bad = full.clone();
            bad[pos] ^= 0x01;
            std::fs::write(&p, &bad).unwrap();
            assert!(SegmentReader::open(&p).is_err(), "header flip at {pos}");
        }
    }

    #[test]
    fn finds_valid_records_after_damage() {
        let rec = encode_record(b"entry", &[]);
        let mut bytes = vec![0u8; 17];
        assert_eq!(contains_valid_record(&bytes), None);
        bytes.extend_from_slice(&rec);
        assert_eq!(contains_valid_record(&bytes), Some(17));
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert_eq!(contains_valid_record(&bytes), None);
    }

    #[test]
    fn garbage_bodies_do_not_panic() {
        for len in 0..64usize {
            let body: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = decode_body(&body);
        }
    }
}
