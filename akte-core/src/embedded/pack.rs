//! Pack files: small content objects appended to shared files and flushed in groups.
//!
//! A file per object costs an inode, a directory entry and two flushes (file and
//! directory) for every document, however small; on the file systems agencies run that is
//! most of the time a 5 KB letter takes to store. Objects whose original bytes are shorter
//! than [`MAX_PACKED_LEN`] (1 MiB) therefore go to the tenant's pack files instead: one
//! append-only file after another, each record a fixed header and the payload.
//! Concurrent puts share one write and one `fdatasync` (group commit, as the journal does).
//!
//! # Layout
//!
//! ```text
//! <content root>/packs/<20-digit pack number>.pack
//! ```
//!
//! A pack starts with a 24-byte header ([`PACK_MAGIC`], version, pack number, CRC-32C),
//! followed by records back to back: a 56-byte [`RecordHeader`] (state, codec, digest,
//! original length, payload length, CRC-32C of the header) and the payload (the original
//! bytes or one zstd frame). `docs/FORMAT.md` describes every byte.
//!
//! # Where an object is
//!
//! The digest → (pack, offset) map lives in a redb database of its own
//! ([`crate::embedded::pack_index`]): derived state, like the rest of the index. It is
//! updated by the flush that made the records durable, in one transaction together with a
//! marker saying how far the packs are indexed. Opening the pack store reads the
//! records beyond the marker again (checking each payload against its digest), so records
//! that were flushed but whose index update was lost in a crash are found again, and a torn
//! tail (a write interrupted by a crash, never acknowledged) is cut back.
//!
//! # Guarantees
//!
//! * **Durable before acknowledged.** [`PackStore::put`] returns once the record is flushed
//!   and indexed. [`PackStore::put_queued`] returns once it is queued, for bytes a journal
//!   entry is about to refer to: the journal's leader flushes the queued records
//!   ([`PackStore::flush_queued`]) before it writes any entry, so the entry is never durable
//!   before its content, and its writer waits for one group commit instead of two.
//! * **Nothing half-written is visible.** A record is found only through the index, which
//!   learns of it after the flush; reading a queued record flushes it first.
//! * **Removal leaves no trace of the bytes.** Destruction overwrites a record's payload
//!   with zeros and marks the record removed, in place: records never move and a pack never
//!   changes length. Repeating a removal is harmless, so an interrupted destruction can be
//!   completed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};

use crate::backend::content::{Codec, ContentError};
use crate::backend::FaultKind;
use crate::digest::Digest;
use crate::embedded::fsutil::{self, IoContext, IoFailure};
use crate::embedded::pack_index::{Commit, PackBatch, PackIndex};

/// First eight bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"AKTE-PAK";
/// The pack format version this code writes and the only one it reads.
pub const PACK_FORMAT_VERSION: u32 = 1;
/// Length of the pack file header.
pub const PACK_HEADER_LEN: u64 = 24;
/// First four bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"AKP1";
/// Length of a record header.
pub const RECORD_HEADER_LEN: u64 = 56;
/// Objects whose original bytes are shorter than this are packed; it also bounds every
/// record's original length and payload length, so a damaged header cannot make a reader
/// allocate or skip more.
pub const MAX_PACKED_LEN: u64 = 1 << 20;
/// A new pack is started once the active one would grow beyond this.
pub const DEFAULT_PACK_MAX_BYTES: u64 = 64 << 20;

/// Unix mode of pack files: records are appended and, on destruction, zeroed by akte only.
const PACK_MODE: u32 = 0o640;
/// Read buffer when scanning packs.
const SCAN_BUF_LEN: usize = 256 * 1024;

const KEY_THROUGH: &[u8] = b"t";

/// Objects a reindex stores per batch (with the place it reaches).
const REINDEX_CHUNK: usize = 16_384;

/// Takes the objects indexed so far (a batch) and the place they reach.
type StoreIndexed<'a> = dyn FnMut(&mut PackBatch, (u64, u64)) -> Result<(), ContentError> + 'a;
const PREFIX_OBJECT: u8 = b'o';

/// Whether a record's payload is there or was removed by destruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// The payload holds the object (state byte 1).
    Present,
    /// The payload was overwritten with zeros (state byte 2).
    Removed,
}

impl RecordState {
    fn to_byte(self) -> u8 {
        match self {
            RecordState::Present => 1,
            RecordState::Removed => 2,
        }
    }

    fn from_byte(b: u8) -> Option<RecordState> {
        match b {
            1 => Some(RecordState::Present),
            2 => Some(RecordState::Removed),
            _ => None,
        }
    }
}

/// The fixed header in front of every record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Present or removed.
    pub state: RecordState,
    /// How the payload is encoded.
    pub codec: Codec,
    /// SHA-256 of the original bytes: the object's key.
    pub digest: Digest,
    /// Length of the original bytes.
    pub size: u64,
    /// Length of the payload that follows the header.
    pub payload_len: u32,
}

impl RecordHeader {
    /// The 56 header bytes, CRC included.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN as usize] {
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        h[..4].copy_from_slice(&RECORD_MAGIC);
        h[4] = self.state.to_byte();
        h[5] = self.codec.to_byte();
        // Bytes 6..8 stay zero (reserved).
        h[8..40].copy_from_slice(self.digest.as_bytes());
        h[40..48].copy_from_slice(&self.size.to_be_bytes());
        h[48..52].copy_from_slice(&self.payload_len.to_be_bytes());
        seal(&mut h);
        h
    }

    /// Parses and checks a header; the error says what is wrong.
    pub fn decode(h: &[u8; RECORD_HEADER_LEN as usize]) -> Result<RecordHeader, String> {
        check_framing(h, &RECORD_MAGIC, "record")?;
        let state = RecordState::from_byte(h[4])
            .ok_or_else(|| format!("unknown record state byte {}", h[4]))?;
        let codec = Codec::from_byte(h[5]).ok_or_else(|| format!("unknown codec byte {}", h[5]))?;
        if h[6..8] != [0, 0] {
            return Err(format!(
                "reserved record bytes 6..8 are {}, not zero",
                hex::encode(&h[6..8])
            ));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&h[8..40]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[40..48]);
        let size = u64::from_be_bytes(size);
        let payload_len = u32::from_be_bytes([h[48], h[49], h[50], h[51]]);
        if size >= MAX_PACKED_LEN {
            return Err(format!(
                "original length {size} is not below the packing limit of {MAX_PACKED_LEN}"
            ));
        }
        if u64::from(payload_len) >= MAX_PACKED_LEN {
            return Err(format!(
                "payload length {payload_len} is not below the packing limit of {MAX_PACKED_LEN}"
            ));
        }
        match codec {
            Codec::Raw if u64::from(payload_len) != size => {
                return Err(format!(
                    "raw record of {size} bytes with a payload of {payload_len} bytes"
                ))
            }
            Codec::Zstd if payload_len == 0 => return Err("empty zstd payload".to_owned()),
            _ => {}
        }
        Ok(RecordHeader {
            state,
            codec,
            digest: Digest(digest),
            size,
            payload_len,
        })
    }

    /// Header plus payload.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN + u64::from(self.payload_len)
    }
}

/// Writes the CRC-32C of all bytes before the last four into the last four (both headers
/// end in their CRC).
fn seal(h: &mut [u8]) {
    let at = h.len() - 4;
    let crc = crc32c::crc32c(&h[..at]);
    h[at..].copy_from_slice(&crc.to_be_bytes());
}

/// Checks a header's magic (its first bytes) and its CRC-32C (its last four bytes, over all
/// before them); `what` names the header in the error.
fn check_framing(h: &[u8], magic: &[u8], what: &str) -> Result<(), String> {
    if &h[..magic.len()] != magic {
        return Err(format!(
            "bad {what} magic {} (expected {})",
            hex::encode(&h[..magic.len()]),
            hex::encode(magic)
        ));
    }
    let at = h.len() - 4;
    let stored = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let crc = crc32c::crc32c(&h[..at]);
    if stored != crc {
        return Err(format!(
            "{what} header CRC-32C is {stored:08x}, the header bytes give {crc:08x}"
        ));
    }
    Ok(())
}

/// The name of pack number `n`.
pub fn pack_file_name(n: u64) -> String {
    format!("{n:020}.pack")
}

/// The pack number a file name stands for, if it is a pack's name.
pub fn parse_pack_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".pack")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The 24-byte header of pack number `n`.
pub fn encode_pack_header(n: u64) -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[..8].copy_from_slice(&PACK_MAGIC);
    h[8..12].copy_from_slice(&PACK_FORMAT_VERSION.to_be_bytes());
    h[12..20].copy_from_slice(&n.to_be_bytes());
    seal(&mut h);
    h
}

/// Parses a pack header; returns the pack number it records.
pub fn decode_pack_header(h: &[u8; PACK_HEADER_LEN as usize]) -> Result<u64, String> {
    check_framing(h, &PACK_MAGIC, "pack")?;
    let version = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if version != PACK_FORMAT_VERSION {
        return Err(format!(
            "unsupported pack format version {version} (this build reads {PACK_FORMAT_VERSION})"
        ));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&h[12..20]);
    Ok(u64::from_be_bytes(n))
}

/// Where a packed object is, and what its header says (the index value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedObject {
    /// Pack number.
    pub pack: u64,
    /// Byte offset of the record header in the pack.
    pub offset: u64,
    /// How the payload is encoded.
    pub codec: Codec,
    /// Length of the original bytes.
    pub size: u64,
    /// Length of the payload.
    pub payload_len: u32,
}

impl PackedObject {
    /// Header plus payload.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN + u64::from(self.payload_len)
    }
}

fn object_key(digest: &Digest, pack: u64, offset: u64) -> [u8; 49] {
    let mut k = [0u8; 49];
    k[0] = PREFIX_OBJECT;
    k[1..33].copy_from_slice(digest.as_bytes());
    k[33..41].copy_from_slice(&pack.to_be_bytes());
    k[41..49].copy_from_slice(&offset.to_be_bytes());
    k
}

fn object_prefix(digest: &Digest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = PREFIX_OBJECT;
    k[1..].copy_from_slice(digest.as_bytes());
    k
}

fn object_value(obj: &PackedObject) -> [u8; 13] {
    let mut v = [0u8; 13];
    v[0] = obj.codec.to_byte();
    v[1..9].copy_from_slice(&obj.size.to_be_bytes());
    v[9..13].copy_from_slice(&obj.payload_len.to_be_bytes());
    v
}

/// The value of the index's marker: packs before `pack`, and `pack` up to `offset`, are
/// indexed.
fn through_value(pack: u64, offset: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&pack.to_be_bytes());
    v[8..].copy_from_slice(&offset.to_be_bytes());
    v
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
}

/// Decodes one location entry of the index; `None` if it is malformed.
fn decode_object(key: &[u8], value: &[u8]) -> Option<(Digest, PackedObject)> {
    if key.len() != 49 || key[0] != PREFIX_OBJECT || value.len() != 13 {
        return None;
    }
    let digest = Digest::from_slice(&key[1..33])?;
    Some((
        digest,
        PackedObject {
            pack: u64_at(key, 33)?,
            offset: u64_at(key, 41)?,
            codec: Codec::from_byte(value[0])?,
            size: u64_at(value, 1)?,
            payload_len: u32::from_be_bytes(value[9..13].try_into().ok()?),
        },
    ))
}

/// What opening the pack store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackRecovery {
    /// Records found beyond the index's marker and added to it.
    pub reindexed: u64,
    /// Bytes cut from a torn tail of the last pack, and where.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// Damage found while reading records beyond the marker (file, offset, reason); the
    /// records concerned are not indexed, `verify` reports the objects as missing.
    pub damaged: Vec<(PathBuf, u64, String)>,
    /// Packs shorter than the index's marker, or missing: records that were flushed and
    /// acknowledged are gone (file, its length, reason). `check_packs` reports them.
    pub lost: Vec<(PathBuf, u64, String)>,
    /// A torn tail of the last pack found and left in place, and where (a read-only open
    /// never cuts; on a live store it may be a record still being written).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
}

/// What reading packs does with an incomplete or damaged end of the last pack when no
/// well-formed record follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastTail {
    /// Cut it back: a write interrupted by a crash (opening for writing).
    Cut,
    /// Leave it and note it in the recovery (opening read-only). Records are indexed by
    /// their well-formed headers without reading their payloads: verification checks each
    /// payload against its digest and names the pack record, as the live index would
    /// have it.
    Keep,
    /// Report it as damage and leave it (`rebuild-index`: it may be a record in flight).
    Damaged,
}

/// A problem `check_packs` found in the pack files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackProblem {
    /// The file.
    pub path: PathBuf,
    /// Byte offset in it, where there is one.
    pub offset: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Summary of a structural check of every pack file.
#[derive(Debug, Clone, Default)]
pub struct PackCheck {
    /// Pack files read.
    pub packs: u64,
    /// Records with their payload.
    pub present: u64,
    /// Records removed by destruction.
    pub removed: u64,
    /// Bytes of pack files read.
    pub bytes: u64,
    /// Everything wrong.
    pub problems: Vec<PackProblem>,
}

struct Chunk {
    pack: u64,
    start: u64,
    /// The pack is new: write its header (after flushing the previous one) first.
    new_pack: bool,
    bytes: Vec<u8>,
}

struct State {
    /// Number and logical length (queued records included) of the pack being appended to.
    tail_pack: u64,
    tail_len: u64,
    chunks: Vec<Chunk>,
    /// Objects in `chunks`, with their tickets, for the index update after the flush.
    queued: Vec<(Digest, PackedObject, u64)>,
    next_ticket: u64,
    /// Tickets below this are durable and indexed.
    durable: u64,
    /// Pack and offset up to which records are durable: beyond it, a flush may be writing.
    durable_end: (u64, u64),
    /// Objects queued or being flushed, by digest: a second put of the same bytes waits for
    /// the first instead of storing them twice.
    in_flight: HashMap<Digest, (PackedObject, u64)>,
    flushing: bool,
    /// Why writes are refused, and the kind of the failure.
    fenced: Option<(String, FaultKind)>,
}

/// The pack file being appended to.
struct Active {
    number: u64,
    file: File,
    path: PathBuf,
}

/// The pack files of one content store. See the module documentation.
pub(crate) struct PackStore {
    dir: PathBuf,
    index: PackIndex,
    max_bytes: u64,
    state: Mutex<State>,
    durable: Condvar,
    /// The pack being appended to; `None` when opened read-only.
    active: Mutex<Option<Active>>,
    recovery: PackRecovery,
    /// Opened read-only: nothing is written, and the location index (a scratch one) is
    /// brought up to the packs on a miss, since a live store's packs grow meanwhile.
    read_only: bool,
}

/// What [`PackStore::enqueue`] found or did.
enum Queued<'a> {
    /// A sound copy is durable and indexed already.
    Stored(PackedObject),
    /// The record is queued (by this call, or by an earlier one if `newly_stored` is
    /// false) and durable once `ticket` is.
    Pending {
        st: MutexGuard<'a, State>,
        obj: PackedObject,
        ticket: u64,
        newly_stored: bool,
    },
}

impl std::fmt::Debug for PackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> ContentError {
    ContentError::Io(IoFailure::new(
        op,
        path.to_path_buf().display().to_string(),
        source,
    ))
}

/// A failure of the location index, as an I/O failure of the packs (an I/O error keeps its
/// kind: a full disk stays a full disk).
fn index_error(dir: &Path, e: redb::Error) -> ContentError {
    let source = match e {
        redb::Error::Io(io) => io,
        other => io::Error::other(other.to_string()),
    };
    io_error("update the pack index for", dir, source)
}

/// Pack files in `dir`, by number; other files are reported as strays by `check_packs`.
fn list_packs(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ContentError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).at("read directory", dir)? {
        let item = item.at("read directory", dir)?;
        if let Some(n) = item.file_name().to_str().and_then(parse_pack_file_name) {
            out.push((n, item.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn create_pack(dir: &Path, number: u64) -> Result<Active, ContentError> {
    let path = dir.join(pack_file_name(number));
    let _ = fs::remove_file(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PACK_MODE)
        .open(&path)
        .at("create", &path)?;
    file.write_all_at(&encode_pack_header(number), 0)
        .at("write", &path)?;
    fsutil::sync_all(&file, &path)?;
    fsutil::fsync_dir(dir)?;
    Ok(Active { number, file, path })
}

fn open_pack_rw(path: &Path, number: u64) -> Result<Active, ContentError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .at("open for writing", path)?;
    Ok(Active {
        number,
        file,
        path: path.to_path_buf(),
    })
}

/// Reads a pack header from `file`; `Err` holds the reason it is unusable.
fn read_pack_header(file: &File, len: u64, expected: u64) -> Result<(), String> {
    if len < PACK_HEADER_LEN {
        return Err(format!(
            "file is {len} bytes long, shorter than the {PACK_HEADER_LEN}-byte pack header"
        ));
    }
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| format!("reading the pack header: {e}"))?;
    let n = decode_pack_header(&h)?;
    if n != expected {
        return Err(format!(
            "header says pack {n}, the file name says {expected}"
        ));
    }
    Ok(())
}

/// One step of reading a pack from front to back.
enum Step {
    /// A record with a well-formed header that fits in the file.
    Record(u64, RecordHeader),
    /// The end of the file, exactly after the last record.
    End,
    /// Something that is not a complete, well-formed record at this offset.
    Bad(u64, String),
}

/// Reads a pack sequentially, optionally handing out payloads.
struct Scanner {
    reader: BufReader<File>,
    path: PathBuf,
    offset: u64,
    len: u64,
}

impl Scanner {
    fn open(path: &Path, from: u64) -> Result<Scanner, ContentError> {
        let mut file = File::open(path).at("open", path)?;
        let len = file.metadata().at("stat", path)?.len();
        file.seek(SeekFrom::Start(from)).at("seek", path)?;
        Ok(Scanner {
            reader: BufReader::with_capacity(SCAN_BUF_LEN, file),
            path: path.to_path_buf(),
            offset: from,
            len,
        })
    }

    fn next(&mut self) -> Result<Step, ContentError> {
        let at = self.offset;
        if at == self.len {
            return Ok(Step::End);
        }
        if self.len - at < RECORD_HEADER_LEN {
            return Ok(Step::Bad(
                at,
                format!(
                    "{} bytes at the end of the file, shorter than a record header",
                    self.len - at
                ),
            ));
        }
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        self.reader.read_exact(&mut h).at("read", &self.path)?;
        let header = match RecordHeader::decode(&h) {
            Ok(h) => h,
            Err(reason) => return Ok(Step::Bad(at, reason)),
        };
        if self.len - at < header.record_len() {
            return Ok(Step::Bad(
                at,
                format!(
                    "record of {} bytes runs past the end of the file ({} bytes left)",
                    header.record_len(),
                    self.len - at
                ),
            ));
        }
        self.offset = at + header.record_len();
        Ok(Step::Record(at, header))
    }

    fn payload(&mut self, header: &RecordHeader) -> Result<Vec<u8>, ContentError> {
        let mut buf = vec![0u8; header.payload_len as usize];
        self.reader.read_exact(&mut buf).at("read", &self.path)?;
        Ok(buf)
    }

    fn skip_payload(&mut self, header: &RecordHeader) -> Result<(), ContentError> {
        self.reader
            .seek_relative(i64::from(header.payload_len))
            .at("seek", &self.path)?;
        Ok(())
    }

    /// Continues at `offset` (after damage).
    fn resume_at(&mut self, offset: u64) -> Result<(), ContentError> {
        self.reader
            .seek(SeekFrom::Start(offset))
            .at("seek", &self.path)?;
        self.offset = offset;
        Ok(())
    }
}

/// The first offset after `from` at which a well-formed record header starts, if any: after
/// damage, this tells a torn tail (nothing follows) from damage inside a pack.
fn find_next_record(path: &Path, from: u64) -> Result<Option<u64>, ContentError> {
    let file = File::open(path).at("open", path)?;
    let len = file.metadata().at("stat", path)?.len();
    let window = SCAN_BUF_LEN as u64;
    let mut start = from + 1;
    let mut buf = vec![0u8; SCAN_BUF_LEN + RECORD_HEADER_LEN as usize];
    while start + RECORD_HEADER_LEN <= len {
        let n = (len - start).min(window + RECORD_HEADER_LEN) as usize;
        file.read_exact_at(&mut buf[..n], start).at("read", path)?;
        let last = n.saturating_sub(RECORD_HEADER_LEN as usize);
        for i in 0..=last {
            if buf[i..i + 4] != RECORD_MAGIC {
                continue;
            }
            let mut h = [0u8; RECORD_HEADER_LEN as usize];
            h.copy_from_slice(&buf[i..i + RECORD_HEADER_LEN as usize]);
            if let Ok(header) = RecordHeader::decode(&h) {
                if start + i as u64 + header.record_len() <= len {
                    return Ok(Some(start + i as u64));
                }
            }
        }
        start += window;
    }
    Ok(None)
}

/// Decodes the one zstd frame of a record's payload into `hasher`, refusing more than
/// `limit` bytes and anything after the frame; returns the bytes it produced. The
/// decompression context is kept per thread and reset for each record: making one costs
/// more than decoding a small record, and a reindex checks every record of every pack.
fn decode_zstd_into(payload: &[u8], limit: u64, hasher: &mut Sha256) -> Result<u64, String> {
    use zstd::zstd_safe::{get_error_name, DCtx, InBuffer, OutBuffer, ResetDirective};
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let undecodable =
        |code: usize| format!("zstd payload does not decode: {}", get_error_name(code));
    CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = match slot.as_mut() {
            Some(dctx) => dctx,
            None => slot
                .insert(DCtx::try_create().ok_or("zstd: no memory for a decompression context")?),
        };
        dctx.reset(ResetDirective::SessionOnly)
            .map_err(undecodable)?;
        let mut input = InBuffer::around(payload);
        let mut buf = [0u8; 16 * 1024];
        let mut produced = 0u64;
        loop {
            let mut out = OutBuffer::around(&mut buf[..]);
            let left = dctx
                .decompress_stream(&mut out, &mut input)
                .map_err(undecodable)?;
            let n = out.pos();
            produced += n as u64;
            if produced > limit {
                return Err(format!(
                    "payload decodes to more than the {limit} bytes the header records"
                ));
            }
            hasher.update(&buf[..n]);
            if left == 0 {
                break; // the frame is decoded and flushed
            }
            if n == 0 && input.pos() == payload.len() {
                return Err("zstd payload does not decode: the frame is cut short".into());
            }
        }
        if input.pos() != payload.len() {
            return Err(format!(
                "unexpected bytes after the zstd frame ({} bytes)",
                payload.len() - input.pos()
            ));
        }
        Ok(produced)
    })
}

/// Decodes a payload and checks it against its header: length and digest.
pub fn check_payload(header: &RecordHeader, payload: &[u8]) -> Result<(), String> {
    let mut hasher = Sha256::new();
    let produced = match header.codec {
        Codec::Raw => {
            hasher.update(payload);
            payload.len() as u64
        }
        Codec::Zstd => decode_zstd_into(payload, header.size, &mut hasher)?,
    };
    if produced != header.size {
        return Err(format!(
            "payload decodes to {produced} bytes, the header records {}",
            header.size
        ));
    }
    let actual = Digest(hasher.finalize().into());
    if actual != header.digest {
        return Err(format!(
            "content hashes to {actual}, not to the digest {} the record names",
            header.digest
        ));
    }
    Ok(())
}

impl PackStore {
    /// Opens the packs in `dir` (creating the directory and a first pack if needed), with
    /// `index` as the location index, and brings the index up to the packs.
    pub(crate) fn open(
        dir: &Path,
        index: PackIndex,
        max_bytes: u64,
    ) -> Result<PackStore, ContentError> {
        fsutil::create_dir_all_durable(dir)?;
        let mut packs = list_packs(dir)?;
        let mut recovery = PackRecovery::default();

        // A crash while starting a pack can leave it without a complete header.
        if let Some((n, path)) = packs.last().cloned() {
            let len = fs::metadata(&path).at("stat", &path)?.len();
            let file = File::open(&path).at("open", &path)?;
            if len <= PACK_HEADER_LEN && read_pack_header(&file, len, n).is_err() {
                tracing::warn!(path = %path.display(), "removing a pack file without a complete header, left by an interrupted pack change");
                fs::remove_file(&path).at("remove", &path)?;
                fsutil::fsync_dir(dir)?;
                packs.pop();
            }
        }

        let through = Self::read_through(&index, dir)?;
        let through = match through {
            Some((pack, offset)) if offset >= PACK_HEADER_LEN => {
                // The marker's pack must be there and at least that long: those records
                // were flushed and acknowledged. Anything else is damage, never a torn tail:
                // it is reported, and nothing in that pack is cut or read again.
                match packs.iter().find(|(n, _)| *n == pack) {
                    Some((_, path)) => {
                        let len = fs::metadata(path).at("stat", path)?.len();
                        if len < offset {
                            let reason = format!(
                                "the pack is {len} bytes long, but records up to byte {offset} were flushed and acknowledged"
                            );
                            tracing::error!(path = %path.display(), %reason, "pack lost acknowledged records");
                            recovery.lost.push((path.clone(), len, reason));
                        }
                    }
                    // A pack that held no record yet is missing harmlessly.
                    None if offset == PACK_HEADER_LEN => {}
                    None => {
                        let path = dir.join(pack_file_name(pack));
                        let reason = format!(
                            "the pack is missing, but records up to byte {offset} of it were flushed and acknowledged"
                        );
                        tracing::error!(path = %path.display(), %reason, "pack lost acknowledged records");
                        recovery.lost.push((path, 0, reason));
                    }
                }
                Some((pack, offset))
            }
            Some((pack, offset)) => {
                tracing::warn!(dir = %dir.display(), pack, offset,
                    "the pack index's marker is malformed; reindexing every pack");
                index.clear().map_err(|e| index_error(dir, e))?;
                None
            }
            None => {
                if !index.is_empty().map_err(|e| index_error(dir, e))? {
                    index.clear().map_err(|e| index_error(dir, e))?;
                }
                None
            }
        };

        // Stored in parts with the place reached, as a reindex does: a first open after an
        // upgrade reads every pack, and a part is all it holds in memory; one cut short
        // resumes from the last part stored.
        let mut batch = PackBatch::default();
        let mut store_part = |batch: &mut PackBatch, (pack, offset): (u64, u64)| {
            if batch.is_empty() && through == Some((pack, offset)) {
                return Ok(());
            }
            batch.insert(KEY_THROUGH, &through_value(pack, offset)[..]);
            index
                .apply(std::mem::take(batch), Commit::Durable)
                .map_err(|e| index_error(dir, e))
        };
        // Each pack read ends with a part stored, so the marker is where the last one ends.
        Self::index_packs_each(
            &packs,
            through,
            LastTail::Cut,
            &mut batch,
            &mut recovery,
            &mut store_part,
        )?;

        // Append to the last pack if it is sound and has room, else start a new one.
        let (active, tail_len) = match packs.last() {
            Some((n, path)) => {
                let file = File::open(path).at("open", path)?;
                let len = file.metadata().at("stat", path)?.len();
                let sound = read_pack_header(&file, len, *n).is_ok()
                    && !recovery.damaged.iter().any(|(p, _, _)| p == path)
                    && !recovery.lost.iter().any(|(p, _, _)| p == path);
                if sound && len < max_bytes {
                    (open_pack_rw(path, *n)?, len)
                } else {
                    (create_pack(dir, n + 1)?, PACK_HEADER_LEN)
                }
            }
            None => (create_pack(dir, 0)?, PACK_HEADER_LEN),
        };
        if recovery.reindexed > 0 {
            tracing::info!(dir = %dir.display(), records = recovery.reindexed, "indexed pack records whose index update a crash had lost");
        }
        Ok(PackStore {
            dir: dir.to_path_buf(),
            index,
            max_bytes,
            state: Mutex::new(State {
                tail_pack: active.number,
                tail_len,
                chunks: Vec::new(),
                queued: Vec::new(),
                next_ticket: 0,
                durable: 0,
                durable_end: (active.number, tail_len),
                in_flight: HashMap::new(),
                flushing: false,
                fenced: None,
            }),
            durable: Condvar::new(),
            active: Mutex::new(Some(active)),
            recovery,
            read_only: false,
        })
    }

    /// Opens the packs in `dir` without writing anything, into `index`, an empty scratch
    /// tree that this builds from the packs: no pack is created, removed or cut; a torn
    /// tail of the last pack is noted in the recovery and left as it is. A missing `dir` is
    /// a store without packs (format 1).
    pub(crate) fn open_read_only(
        dir: &Path,
        index: PackIndex,
        max_bytes: u64,
    ) -> Result<PackStore, ContentError> {
        let mut packs = match fs::metadata(dir) {
            Ok(_) => list_packs(dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error("stat", dir, e)),
        };
        let mut recovery = PackRecovery::default();
        // A pack without a complete header (a crash or, live, a pack being started) is
        // not read; opening for writing would remove it.
        if let Some((n, path)) = packs.last().cloned() {
            let len = fs::metadata(&path).at("stat", &path)?.len();
            let file = File::open(&path).at("open", &path)?;
            if len <= PACK_HEADER_LEN && read_pack_header(&file, len, n).is_err() {
                recovery.torn_tail = Some((path, 0, len));
                packs.pop();
            }
        }
        let mut batch = PackBatch::default();
        let mut store_part = |batch: &mut PackBatch, _: (u64, u64)| {
            index
                .apply(std::mem::take(batch), Commit::Lazy)
                .map_err(|e| index_error(dir, e))
        };
        let marker = Self::index_packs_each(
            &packs,
            None,
            LastTail::Keep,
            &mut batch,
            &mut recovery,
            &mut store_part,
        )?;
        let end = marker.unwrap_or((0, PACK_HEADER_LEN));
        Ok(PackStore {
            dir: dir.to_path_buf(),
            index,
            max_bytes,
            state: Mutex::new(State {
                tail_pack: end.0,
                tail_len: end.1,
                chunks: Vec::new(),
                queued: Vec::new(),
                next_ticket: 0,
                durable: 0,
                durable_end: end,
                in_flight: HashMap::new(),
                flushing: false,
                fenced: None,
            }),
            durable: Condvar::new(),
            active: Mutex::new(None),
            recovery,
            read_only: true,
        })
    }

    /// Read-only: indexes the records written to the packs since they were last read
    /// (a live store's writer appends while a verification reads). Cuts nothing.
    fn catch_up(&self) -> Result<(), ContentError> {
        let mut st = lock(&self.state);
        let through = st.durable_end;
        let packs = match fs::metadata(&self.dir) {
            Ok(_) => list_packs(&self.dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("stat", &self.dir, e)),
        };
        let mut batch = PackBatch::default();
        let mut recovery = PackRecovery::default();
        let mut store_part = |batch: &mut PackBatch, _: (u64, u64)| {
            self.index
                .apply(std::mem::take(batch), Commit::Lazy)
                .map_err(|e| index_error(&self.dir, e))
        };
        let marker = Self::index_packs_each(
            &packs,
            Some(through),
            LastTail::Keep,
            &mut batch,
            &mut recovery,
            &mut store_part,
        )?;
        if let Some(end) = marker {
            st.durable_end = end;
        }
        Ok(())
    }

    fn refuse_write(&self, op: &'static str) -> Result<(), ContentError> {
        if self.read_only {
            return Err(fsutil::read_only(op, &self.dir).into());
        }
        Ok(())
    }

    /// Reads the records of `packs` that lie beyond the marker `through` (all of them when
    /// there is none) into `batch`, checking each payload, and hands the batch to
    /// `after_pack` after each pack and every [`REINDEX_CHUNK`] objects, with the place
    /// indexed through (the index is stored in parts). Returns where the last pack read
    /// ends. A torn tail of the last pack is treated as `last_tail` says; a pack shorter
    /// than the marker, or with a damaged header, is skipped (reported by the caller or in
    /// `recovery`).
    fn index_packs_each(
        packs: &[(u64, PathBuf)],
        through: Option<(u64, u64)>,
        last_tail: LastTail,
        batch: &mut PackBatch,
        recovery: &mut PackRecovery,
        after_pack: &mut StoreIndexed<'_>,
    ) -> Result<Option<(u64, u64)>, ContentError> {
        let mut marker = None;
        let last_number = packs.last().map(|(n, _)| *n);
        for (n, path) in packs {
            let start = match through {
                Some((p, _)) if *n < p => continue,
                Some((p, o)) if *n == p => o,
                _ => PACK_HEADER_LEN,
            };
            let file = File::open(path).at("open", path)?;
            let len = file.metadata().at("stat", path)?.len();
            if len < start {
                continue;
            }
            if let Err(reason) = read_pack_header(&file, len, *n) {
                tracing::error!(path = %path.display(), %reason, "pack file is damaged; its objects stay unavailable");
                recovery.damaged.push((path.clone(), 0, reason));
                continue;
            }
            let tail = match last_tail {
                LastTail::Keep => LastTail::Keep,
                _ if Some(*n) == last_number => last_tail,
                _ => LastTail::Damaged,
            };
            let last = Some(*n) == last_number;
            let end = Self::reindex_pack(
                path,
                *n,
                start,
                tail,
                last,
                batch,
                recovery,
                &mut *after_pack,
            )?;
            marker = Some((*n, end));
            after_pack(batch, (*n, end))?;
        }
        Ok(marker)
    }

    fn read_through(index: &PackIndex, dir: &Path) -> Result<Option<(u64, u64)>, ContentError> {
        let v = index.get(KEY_THROUGH).map_err(|e| index_error(dir, e))?;
        Ok(v.and_then(|v| Some((u64_at(&v, 0)?, u64_at(&v, 8)?))))
    }

    /// Reads the records of one pack from `start`, checks each payload against its digest
    /// and adds the present ones to `batch`. A torn tail is treated as `tail` says.
    /// Returns the offset up to which the pack is now indexed.
    // The scan's state, its output and where to hand it on: splitting them into a struct
    // would only rename the arguments.
    #[allow(clippy::too_many_arguments)]
    fn reindex_pack(
        path: &Path,
        number: u64,
        start: u64,
        tail: LastTail,
        last: bool,
        batch: &mut PackBatch,
        recovery: &mut PackRecovery,
        after_chunk: &mut StoreIndexed<'_>,
    ) -> Result<u64, ContentError> {
        let mut scanner = Scanner::open(path, start)?;
        let mut in_batch = 0usize;
        loop {
            let bad = match scanner.next()? {
                Step::End => return Ok(scanner.offset),
                Step::Record(offset, header) if tail == LastTail::Keep => {
                    scanner.skip_payload(&header)?;
                    if header.state == RecordState::Present {
                        let obj = PackedObject {
                            pack: number,
                            offset,
                            codec: header.codec,
                            size: header.size,
                            payload_len: header.payload_len,
                        };
                        batch.insert(
                            &object_key(&header.digest, number, offset)[..],
                            &object_value(&obj)[..],
                        );
                        recovery.reindexed += 1;
                        in_batch += 1;
                        if in_batch == REINDEX_CHUNK {
                            in_batch = 0;
                            after_chunk(batch, (number, scanner.offset))?;
                        }
                    }
                    continue;
                }
                Step::Record(offset, header) => {
                    let payload = scanner.payload(&header)?;
                    let verdict = match header.state {
                        RecordState::Present => check_payload(&header, &payload),
                        RecordState::Removed if payload.iter().all(|&b| b == 0) => Ok(()),
                        RecordState::Removed => {
                            Err("removed record whose payload is not zeros".into())
                        }
                    };
                    match verdict {
                        Ok(()) => {
                            if header.state == RecordState::Present {
                                let obj = PackedObject {
                                    pack: number,
                                    offset,
                                    codec: header.codec,
                                    size: header.size,
                                    payload_len: header.payload_len,
                                };
                                batch.insert(
                                    &object_key(&header.digest, number, offset)[..],
                                    &object_value(&obj)[..],
                                );
                                recovery.reindexed += 1;
                                in_batch += 1;
                                if in_batch == REINDEX_CHUNK {
                                    in_batch = 0;
                                    after_chunk(batch, (number, scanner.offset))?;
                                }
                            }
                            continue;
                        }
                        Err(reason) => (offset, reason),
                    }
                }
                Step::Bad(offset, reason) => (offset, reason),
            };
            let (offset, reason) = bad;
            match find_next_record(path, offset)? {
                Some(next) => {
                    tracing::error!(path = %path.display(), offset, %reason, resumed_at = next,
                        "damaged record inside a pack; it is not indexed");
                    recovery.damaged.push((path.to_path_buf(), offset, reason));
                    scanner.resume_at(next)?;
                }
                None if last && tail == LastTail::Keep => {
                    recovery.torn_tail = Some((path.to_path_buf(), offset, scanner.len - offset));
                    return Ok(offset);
                }
                None if tail == LastTail::Cut => {
                    let len = scanner.len;
                    tracing::warn!(path = %path.display(), offset, bytes = len - offset, %reason,
                        "pack has a torn tail (a write interrupted by a crash, never acknowledged); cutting it back");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .at("open for truncation", path)?;
                    f.set_len(offset).at("truncate", path)?;
                    fsutil::sync_all(&f, path)?;
                    recovery.truncated = Some((path.to_path_buf(), offset, len - offset));
                    return Ok(offset);
                }
                None => {
                    tracing::error!(path = %path.display(), offset, %reason,
                        "damaged end of a pack that is not the last one; left as it is");
                    recovery.damaged.push((path.to_path_buf(), offset, reason));
                    return Ok(offset);
                }
            }
        }
    }

    /// What opening found and did.
    pub(crate) fn recovery(&self) -> &PackRecovery {
        &self.recovery
    }

    /// The pack directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of pack number `n`.
    pub(crate) fn path_of(&self, n: u64) -> PathBuf {
        self.dir.join(pack_file_name(n))
    }

    /// Every indexed copy of `digest`, oldest first.
    pub(crate) fn locate(&self, digest: &Digest) -> Result<Vec<PackedObject>, ContentError> {
        self.settle(digest)?;
        let found = self.locate_indexed(digest)?;
        if found.is_empty() && self.read_only {
            self.catch_up()?;
            return self.locate_indexed(digest);
        }
        Ok(found)
    }

    fn locate_indexed(&self, digest: &Digest) -> Result<Vec<PackedObject>, ContentError> {
        let mut out = Vec::new();
        for kv in self.index.scan_prefix(&object_prefix(digest)) {
            let (k, v) = kv.map_err(|e| index_error(&self.dir, e))?;
            match decode_object(&k, &v) {
                Some((_, obj)) => out.push(obj),
                None => {
                    return Err(io_error(
                        "read the pack index for",
                        &self.dir,
                        io::Error::other(format!("malformed location entry for {digest}")),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// A record of `digest` that is queued but not yet durable ([`PackStore::put_queued`])
    /// is flushed first, so that readers find only durable records, and find them. Looked
    /// for before the index: a flush indexes a record before it leaves the queue.
    fn settle(&self, digest: &Digest) -> Result<(), ContentError> {
        let st = lock(&self.state);
        match st.in_flight.get(digest) {
            Some(&(_, ticket)) => self.wait_durable(st, ticket),
            None => Ok(()),
        }
    }

    /// Whether any copy of `digest` is indexed.
    pub(crate) fn contains(&self, digest: &Digest) -> Result<bool, ContentError> {
        if self.read_only {
            return Ok(!self.locate(digest)?.is_empty());
        }
        self.settle(digest)?;
        Ok(self
            .index
            .scan_prefix(&object_prefix(digest))
            .next()
            .transpose()
            .map_err(|e| index_error(&self.dir, e))?
            .is_some())
    }

    /// Opens the record of `obj` and checks its header against the index: the file
    /// positioned at the payload, and the header.
    pub(crate) fn open_record(
        &self,
        digest: &Digest,
        obj: &PackedObject,
    ) -> Result<(File, RecordHeader), ContentError> {
        let path = self.path_of(obj.pack);
        let corrupt = |reason: String| ContentError::Corrupt {
            digest: *digest,
            place: path.clone().display().to_string(),
            reason: format!("pack record at byte {}: {reason}", obj.offset),
        };
        let mut file = open_stored(digest, &path)?;
        let len = file.metadata().at("stat", &path)?.len();
        if obj.offset + RECORD_HEADER_LEN > len {
            return Err(corrupt(format!("the pack is only {len} bytes long")));
        }
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        file.read_exact_at(&mut h, obj.offset).at("read", &path)?;
        let header = RecordHeader::decode(&h).map_err(&corrupt)?;
        if header.digest != *digest {
            return Err(corrupt(format!("the record holds {}", header.digest)));
        }
        if header.state == RecordState::Removed {
            return Err(ContentError::NotFound {
                digest: *digest,
                place: path.display().to_string(),
            });
        }
        if (header.codec, header.size, header.payload_len) != (obj.codec, obj.size, obj.payload_len)
        {
            return Err(corrupt(format!(
                "header records {} bytes as {} in a payload of {}, the index {} bytes as {} in {}",
                header.size, header.codec, header.payload_len, obj.size, obj.codec, obj.payload_len
            )));
        }
        if obj.offset + header.record_len() > len {
            return Err(corrupt(format!(
                "the record runs past the end of the pack ({len} bytes)"
            )));
        }
        file.seek(SeekFrom::Start(obj.offset + RECORD_HEADER_LEN))
            .at("seek", &path)?;
        Ok((file, header))
    }

    /// Stores one object's encoded payload, unless the same digest is stored or being
    /// stored already. Returns where it is and whether this call stored it; returns once
    /// the record is durable and indexed.
    pub(crate) fn put(
        &self,
        digest: Digest,
        codec: Codec,
        size: u64,
        payload: &[u8],
    ) -> Result<(PackedObject, bool), ContentError> {
        match self.enqueue(digest, codec, size, payload)? {
            Queued::Stored(obj) => Ok((obj, false)),
            Queued::Pending {
                st,
                obj,
                ticket,
                newly_stored,
            } => {
                self.wait_durable(st, ticket)?;
                Ok((obj, newly_stored))
            }
        }
    }

    /// As [`PackStore::put`], but returns once the record is queued: it becomes durable
    /// with the next flush of the packs, which [`PackStore::flush_queued`] forces. Until
    /// then [`PackStore::queued`] knows it and reads of it wait for that flush. For a
    /// record a journal entry is about to refer to: the journal's leader flushes the packs
    /// before it writes the entry, so the entry's writer waits for one group commit, not
    /// two.
    pub(crate) fn put_queued(
        &self,
        digest: Digest,
        codec: Codec,
        size: u64,
        payload: &[u8],
    ) -> Result<(PackedObject, bool), ContentError> {
        match self.enqueue(digest, codec, size, payload)? {
            Queued::Stored(obj) => Ok((obj, false)),
            Queued::Pending {
                obj, newly_stored, ..
            } => Ok((obj, newly_stored)),
        }
    }

    /// Makes every record queued so far durable and indexed: leads a flush, or waits for
    /// the one under way and the next. Fails if a flush of queued records failed (the
    /// packs are fenced then), so nothing that refers to them may be written.
    pub(crate) fn flush_queued(&self) -> Result<(), ContentError> {
        let st = lock(&self.state);
        if st.next_ticket <= st.durable {
            return Ok(());
        }
        let last = st.next_ticket - 1;
        self.wait_durable(st, last)
    }

    /// The location a record queued but not yet durable will have, if `digest` is one.
    pub(crate) fn queued(&self, digest: &Digest) -> Option<PackedObject> {
        lock(&self.state).in_flight.get(digest).map(|&(obj, _)| obj)
    }

    /// Queues the record of one object unless it is stored already or queued (a duplicate
    /// then waits for that ticket, as the first put does).
    fn enqueue(
        &self,
        digest: Digest,
        codec: Codec,
        size: u64,
        payload: &[u8],
    ) -> Result<Queued<'_>, ContentError> {
        self.refuse_write("pack")?;
        if size >= MAX_PACKED_LEN || payload.len() as u64 >= MAX_PACKED_LEN {
            return Err(io_error(
                "pack",
                &self.dir,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("an object of {size} bytes is too large for a pack"),
                ),
            ));
        }
        // An indexed copy whose header is sound makes this a duplicate. A copy with a
        // damaged header is passed over: the new one is stored beside it, and reads take
        // the first sound copy.
        let mut seen_damaged = false;
        for obj in self.locate_indexed(&digest)? {
            match self.open_record(&digest, &obj) {
                Ok(_) => return Ok(Queued::Stored(obj)),
                Err(ContentError::Corrupt { .. } | ContentError::NotFound { .. }) => {
                    seen_damaged = true
                }
                Err(e) => return Err(e),
            }
        }
        let mut st = lock(&self.state);
        if st.fenced.is_some() {
            return Err(self.fenced(st.fenced.as_ref()));
        }
        if let Some(&(obj, ticket)) = st.in_flight.get(&digest) {
            return Ok(Queued::Pending {
                st,
                obj,
                ticket,
                newly_stored: false,
            });
        }
        // Checked again under the lock: a concurrent put may have finished meanwhile.
        if !seen_damaged {
            if let Some(obj) = self.locate_indexed(&digest)?.first() {
                return Ok(Queued::Stored(*obj));
            }
        }
        let header = RecordHeader {
            state: RecordState::Present,
            codec,
            digest,
            size,
            payload_len: payload.len() as u32,
        };
        let record_len = header.record_len();
        let new_pack = st.tail_len > PACK_HEADER_LEN && st.tail_len + record_len > self.max_bytes;
        if new_pack {
            st.tail_pack += 1;
            st.tail_len = PACK_HEADER_LEN;
        }
        let obj = PackedObject {
            pack: st.tail_pack,
            offset: st.tail_len,
            codec,
            size,
            payload_len: header.payload_len,
        };
        let (pack, start) = (st.tail_pack, st.tail_len);
        match st.chunks.last_mut() {
            Some(c) if !new_pack && c.pack == pack => {
                c.bytes.extend_from_slice(&header.encode());
                c.bytes.extend_from_slice(payload);
            }
            _ => {
                let mut bytes = Vec::with_capacity(record_len as usize);
                bytes.extend_from_slice(&header.encode());
                bytes.extend_from_slice(payload);
                st.chunks.push(Chunk {
                    pack,
                    start,
                    new_pack,
                    bytes,
                });
            }
        }
        st.tail_len += record_len;
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queued.push((digest, obj, ticket));
        st.in_flight.insert(digest, (obj, ticket));
        Ok(Queued::Pending {
            st,
            obj,
            ticket,
            newly_stored: true,
        })
    }

    fn fenced(&self, why: Option<&(String, FaultKind)>) -> ContentError {
        let (reason, cause) = why
            .cloned()
            .unwrap_or_else(|| ("unknown".to_owned(), FaultKind::Other));
        ContentError::Fenced {
            place: self.dir.display().to_string(),
            reason,
            cause,
        }
    }

    /// Why the packs refuse writes, if they do.
    pub(crate) fn fenced_reason(&self) -> Option<String> {
        lock(&self.state).fenced.as_ref().map(|(r, _)| r.clone())
    }

    /// Blocks until `ticket` is durable and indexed. The first waiter while no flush runs
    /// writes and flushes everything queued (group commit); the others wait for it.
    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        ticket: u64,
    ) -> Result<(), ContentError> {
        loop {
            if st.durable > ticket {
                return Ok(());
            }
            if st.fenced.is_some() {
                return Err(self.fenced(st.fenced.as_ref()));
            }
            if st.flushing {
                st = self.durable.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let chunks = std::mem::take(&mut st.chunks);
            let queued = std::mem::take(&mut st.queued);
            let Some(&(_, _, last)) = queued.last() else {
                let reason =
                    format!("pack ticket {ticket} is neither queued, in flight nor durable");
                st.fenced = Some((reason, FaultKind::Other));
                return Err(self.fenced(st.fenced.as_ref()));
            };
            st.flushing = true;
            drop(st);
            let result = self
                .write_chunks(&chunks)
                .and_then(|()| self.index_flushed(&queued, chunks.last()));
            st = lock(&self.state);
            st.flushing = false;
            match result {
                Ok(()) => {
                    st.durable = last + 1;
                    if let Some(c) = chunks.last() {
                        st.durable_end = (c.pack, c.start + c.bytes.len() as u64);
                    }
                    for (digest, _, t) in &queued {
                        if st.in_flight.get(digest).map(|(_, t2)| t2) == Some(t) {
                            st.in_flight.remove(digest);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), error = %e, "pack write failed; fencing the packs");
                    st.fenced = Some((e.to_string(), e.kind()));
                }
            }
            self.durable.notify_all();
        }
    }

    fn write_chunks(&self, chunks: &[Chunk]) -> Result<(), ContentError> {
        let mut guard = lock(&self.active);
        let Some(active) = guard.as_mut() else {
            return Err(fsutil::read_only("write", &self.dir).into());
        };
        for chunk in chunks {
            if chunk.new_pack || chunk.pack != active.number {
                // The records of the old pack are durable before the new pack appears, so
                // the packs on disk are always what was written, in order.
                let path = active.path.clone();
                fsutil::sync_data(&active.file, &path)?;
                *active = create_pack(&self.dir, chunk.pack)?;
            }
            let path = active.path.clone();
            active
                .file
                .write_all_at(&chunk.bytes, chunk.start)
                .at("write", &path)?;
        }
        let path = active.path.clone();
        fsutil::sync_data(&active.file, &path)?;
        Ok(())
    }

    /// Records the flushed objects and the new end of the indexed packs in one batch.
    fn index_flushed(
        &self,
        queued: &[(Digest, PackedObject, u64)],
        last: Option<&Chunk>,
    ) -> Result<(), ContentError> {
        let mut batch = PackBatch::default();
        for (digest, obj, _) in queued {
            batch.insert(
                &object_key(digest, obj.pack, obj.offset)[..],
                &object_value(obj)[..],
            );
        }
        if let Some(c) = last {
            let end = c.start + c.bytes.len() as u64;
            batch.insert(KEY_THROUGH, &through_value(c.pack, end)[..]);
        }
        // Lazy: durable with the tenant index's next durable commit (see `pack_index`);
        // what a crash loses of it, the next open reads again from the packs.
        self.index
            .apply(batch, Commit::Lazy)
            .map_err(|e| index_error(&self.dir, e))
    }

    /// Removes every copy of `digest` (destruction): each record's payload is overwritten
    /// with zeros and its state set to removed, in place and durably, then the index forgets
    /// the copies. Returns whether any copy was indexed. Safe to repeat.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<bool, ContentError> {
        self.refuse_write("remove from")?;
        let copies = self.locate(digest)?;
        if copies.is_empty() {
            return Ok(false);
        }
        // Hold the flush slot, so that no group flush runs while records are rewritten.
        let mut st = lock(&self.state);
        loop {
            if st.fenced.is_some() {
                return Err(self.fenced(st.fenced.as_ref()));
            }
            if !st.flushing {
                break;
            }
            st = self.durable.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.flushing = true;
        drop(st);
        let result = self.zero_copies(digest, &copies);
        let mut st = lock(&self.state);
        st.flushing = false;
        self.durable.notify_all();
        drop(st);
        result?;
        tracing::info!(digest = %digest, copies = copies.len(), "removed packed content object");
        Ok(true)
    }

    fn zero_copies(&self, digest: &Digest, copies: &[PackedObject]) -> Result<(), ContentError> {
        let zeros = vec![0u8; 64 * 1024];
        let mut batch = PackBatch::default();
        for obj in copies {
            let path = self.path_of(obj.pack);
            let file = match OpenOptions::new().write(true).open(&path) {
                Ok(f) => f,
                // The pack is gone: nothing of the object is left to remove.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    batch.remove(&object_key(digest, obj.pack, obj.offset)[..]);
                    continue;
                }
                Err(e) => return Err(io_error("open for removal", &path, e)),
            };
            // Zeros first, then the header: after a crash in between, the record still
            // says present, its digest no longer matches, and completing the destruction
            // writes both again.
            let mut done = 0u64;
            let len = u64::from(obj.payload_len);
            while done < len {
                let n = (len - done).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], obj.offset + RECORD_HEADER_LEN + done)
                    .at("write", &path)?;
                done += n as u64;
            }
            let header = RecordHeader {
                state: RecordState::Removed,
                codec: obj.codec,
                digest: *digest,
                size: obj.size,
                payload_len: obj.payload_len,
            };
            file.write_all_at(&header.encode(), obj.offset)
                .at("write", &path)?;
            fsutil::sync_data(&file, &path)?;
            batch.remove(&object_key(digest, obj.pack, obj.offset)[..]);
        }
        // Durable: a location that came back after a crash would count a destroyed object
        // as present (its record says removed, so reading it still fails).
        self.index
            .apply(batch, Commit::Durable)
            .map_err(|e| index_error(&self.dir, e))
    }

    /// Digests of every indexed object, in digest order, each once.
    pub(crate) fn digests(&self) -> impl Iterator<Item = Result<Digest, ContentError>> + '_ {
        let mut last: Option<Digest> = None;
        self.index
            .scan_prefix(&[PREFIX_OBJECT])
            .filter_map(move |kv| {
                let (k, v) = match kv {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(index_error(&self.dir, e))),
                };
                match decode_object(&k, &v) {
                    Some((d, _)) if last == Some(d) => None,
                    Some((d, _)) => {
                        last = Some(d);
                        Some(Ok(d))
                    }
                    None => Some(Err(io_error(
                        "read the pack index for",
                        &self.dir,
                        io::Error::other("malformed location entry"),
                    ))),
                }
            })
    }

    /// Drops the location index and reads every pack again (`rebuild-index`).
    pub(crate) fn reindex(&self) -> Result<u64, ContentError> {
        self.reindex_parts(usize::MAX)
    }

    /// As [`Self::reindex`], but fails once `parts` parts are stored: a reindex cut short,
    /// for the tests of what the next open makes of it.
    fn reindex_parts(&self, parts: usize) -> Result<u64, ContentError> {
        self.refuse_write("reindex")?;
        // Waiting for the flush slot keeps writers out while the index is rebuilt.
        let mut st = lock(&self.state);
        while st.flushing {
            st = self.durable.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.flushing = true;
        drop(st);
        let result = (|| {
            self.index.clear().map_err(|e| index_error(&self.dir, e))?;
            let packs = list_packs(&self.dir)?;
            let mut batch = PackBatch::default();
            let mut recovery = PackRecovery::default();
            // Stored in parts, each with the place it reaches (so a reindex cut short
            // resumes from there at the next open) and durable: one batch of every object
            // held the whole index in memory twice over (3 GB at 10^6 entries).
            let index = &self.index;
            let dir = &self.dir;
            let mut stored = 0usize;
            let mut store_pack = |batch: &mut PackBatch, (pack, offset): (u64, u64)| {
                if stored == parts {
                    return Err(io_error(
                        "reindex",
                        dir,
                        io::Error::new(io::ErrorKind::Interrupted, "reindex cut short"),
                    ));
                }
                batch.insert(KEY_THROUGH, &through_value(pack, offset)[..]);
                index
                    .apply(std::mem::take(batch), Commit::Durable)
                    .map_err(|e| index_error(dir, e))?;
                stored += 1;
                Ok(())
            };
            // Never cut anything here: the active pack may hold records being written.
            Self::index_packs_each(
                &packs,
                None,
                LastTail::Damaged,
                &mut batch,
                &mut recovery,
                &mut store_pack,
            )?;
            Ok(recovery.reindexed)
        })();
        let mut st = lock(&self.state);
        st.flushing = false;
        self.durable.notify_all();
        drop(st);
        result
    }

    /// Reads every pack file from front to back and reports whatever is not well formed:
    /// pack headers, record headers, records running past the end, removed records whose
    /// payload is not zeros, and files in the pack directory that are not packs. Payloads
    /// of present records are checked against their digests by the content checks, not
    /// here.
    pub(crate) fn check_packs(&self) -> Result<PackCheck, ContentError> {
        let mut out = PackCheck::default();
        if self.read_only {
            if !self.dir.exists() {
                return Ok(out);
            }
            // Checks as far as the packs are read now, not only as far as at open.
            self.catch_up()?;
        }
        for item in fs::read_dir(&self.dir).at("read directory", &self.dir)? {
            let item = item.at("read directory", &self.dir)?;
            let name = item.file_name().to_string_lossy().into_owned();
            if parse_pack_file_name(&name).is_none() && !name.starts_with('.') {
                out.problems.push(PackProblem {
                    path: item.path(),
                    offset: None,
                    reason: "not a pack file name (20 digits and .pack)".into(),
                });
            }
        }
        // The end of what is flushed: records beyond it may still be being written.
        let (durable_pack, durable_offset) = lock(&self.state).durable_end;
        let packs = list_packs(&self.dir)?;
        // Numbers start at 0 and grow by one: a gap is a pack that went missing.
        let mut expected = 0u64;
        let mut gaps = 0usize;
        for (n, _) in &packs {
            while expected < *n && gaps < 100 {
                out.problems.push(PackProblem {
                    path: self.path_of(expected),
                    offset: None,
                    reason: "pack file missing (packs with higher numbers exist)".into(),
                });
                expected += 1;
                gaps += 1;
            }
            expected = n.saturating_add(1);
        }
        for (path, len, reason) in &self.recovery.lost {
            if !out.problems.iter().any(|p| &p.path == path) {
                out.problems.push(PackProblem {
                    path: path.clone(),
                    offset: Some(*len),
                    reason: reason.clone(),
                });
            }
        }
        for (n, path) in packs {
            out.packs += 1;
            let file = File::open(&path).at("open", &path)?;
            let len = file.metadata().at("stat", &path)?.len();
            if let Err(reason) = read_pack_header(&file, len, n) {
                out.problems.push(PackProblem {
                    path: path.clone(),
                    offset: Some(0),
                    reason,
                });
                continue;
            }
            let limit = match n.cmp(&durable_pack) {
                std::cmp::Ordering::Less => len,
                std::cmp::Ordering::Equal => durable_offset.min(len),
                std::cmp::Ordering::Greater => PACK_HEADER_LEN,
            };
            out.bytes += limit;
            let mut scanner = Scanner::open(&path, PACK_HEADER_LEN)?;
            scanner.len = scanner.len.min(limit);
            loop {
                match scanner.next()? {
                    Step::End => break,
                    Step::Record(offset, header) => match header.state {
                        RecordState::Present => {
                            out.present += 1;
                            scanner.skip_payload(&header)?;
                        }
                        RecordState::Removed => {
                            out.removed += 1;
                            let payload = scanner.payload(&header)?;
                            if payload.iter().any(|&b| b != 0) {
                                out.problems.push(PackProblem {
                                    path: path.clone(),
                                    offset: Some(offset),
                                    reason: "removed record whose payload is not zeros".into(),
                                });
                            }
                        }
                    },
                    Step::Bad(offset, reason) => {
                        out.problems.push(PackProblem {
                            path: path.clone(),
                            offset: Some(offset),
                            reason,
                        });
                        match find_next_record(&path, offset)? {
                            Some(next) if next < limit => scanner.resume_at(next)?,
                            _ => break,
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Opens the file that holds `digest` (an object file or a pack); a missing file is
/// [`ContentError::NotFound`]. Here, not in `content.rs`, so that the pack store does not
/// import the object store that uses it.
pub(crate) fn open_stored(digest: &Digest, path: &Path) -> Result<File, ContentError> {
    match File::open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound {
            digest: *digest,
            place: path.display().to_string(),
        }),
        Err(e) => Err(IoFailure::new("open", path.display().to_string(), e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::content::{ContentOptions, ContentStore};
    use std::sync::{Arc, Barrier};

    #[test]
    fn zstd_payloads_are_checked_whole_with_one_context_per_thread() {
        let text = b"Sehr geehrte Damen und Herren, ".repeat(2000);
        let frame = zstd::stream::encode_all(&text[..], 3).unwrap();
        let header = |payload: &[u8]| RecordHeader {
            state: RecordState::Present,
            codec: Codec::Zstd,
            digest: Digest::of(&text),
            size: text.len() as u64,
            payload_len: payload.len() as u32,
        };
        assert_eq!(check_payload(&header(&frame), &frame), Ok(()));
        let refused = |payload: &[u8], h: RecordHeader| check_payload(&h, payload).unwrap_err();
        let cut = &frame[..frame.len() - 3];
        assert!(refused(cut, header(cut)).contains("does not decode"));
        let mut trailing = frame.clone();
        trailing.extend_from_slice(b"xyz");
        assert!(refused(&trailing, header(&trailing)).contains("after the zstd frame (3 bytes)"));
        let small = RecordHeader {
            size: 100,
            ..header(&frame)
        };
        assert!(refused(&frame, small).contains("more than the 100 bytes"));
        let other = RecordHeader {
            digest: Digest::of(b"other"),
            ..header(&frame)
        };
        assert!(refused(&frame, other).contains("hashes to"));
        assert!(refused(b"not zstd", header(b"not zstd")).contains("does not decode"));
        // The context kept for the thread is clean again after each failure.
        assert_eq!(check_payload(&header(&frame), &frame), Ok(()));
    }

    /// Deterministic incompressible bytes.
    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2).wrapping_add(1);
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn text(len: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = seed;
        while out.len() < len {
            out.extend_from_slice(format!("Bescheid {i} vom 3. Mai, Az. 42-{i:06}\n").as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    /// A content store whose pack index survives reopening (a redb database in `dir`).
    struct Fixture {
        dir: tempfile::TempDir,
        db: PackIndex,
        options: ContentOptions,
    }

    impl Fixture {
        fn new(pack_max_bytes: u64) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let db = PackIndex::open(&dir.path().join("packs.redb")).unwrap();
            Fixture {
                dir,
                db,
                options: ContentOptions {
                    pack_max_bytes,
                    ..ContentOptions::default()
                },
            }
        }

        fn open(&self) -> ContentStore {
            ContentStore::open_indexed(
                &self.dir.path().join("content"),
                self.options,
                self.db.clone(),
            )
            .unwrap()
        }

        fn tree(&self) -> PackIndex {
            self.db.clone()
        }

        fn pack(&self, n: u64) -> PathBuf {
            self.dir
                .path()
                .join("content/packs")
                .join(pack_file_name(n))
        }
    }

    fn read_all(store: &ContentStore, d: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut r = store.get(d)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| ContentError::from_read_error(e, "?"))?;
        Ok(out)
    }

    fn patch(path: &Path, offset: u64, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, offset).unwrap();
    }

    fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
        let f = File::open(path).unwrap();
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, offset).unwrap();
        b
    }

    #[test]
    fn record_header_round_trips_and_every_byte_is_checked() {
        let h = RecordHeader {
            state: RecordState::Present,
            codec: Codec::Zstd,
            digest: Digest::of(b"x"),
            size: 5000,
            payload_len: 1234,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..4], b"AKP1");
        assert_eq!(RecordHeader::decode(&bytes).unwrap(), h);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes;
                b[i] ^= 1 << bit;
                assert!(
                    RecordHeader::decode(&b).is_err(),
                    "flip of bit {bit} in byte {i} went unnoticed"
                );
            }
        }
        let raw_mismatch = RecordHeader {
            codec: Codec::Raw,
            ..h
        };
        assert!(RecordHeader::decode(&raw_mismatch.encode())
            .unwrap_err()
            .contains("raw record"));
        let too_big = RecordHeader {
            size: MAX_PACKED_LEN,
            ..h
        };
        assert!(RecordHeader::decode(&too_big.encode()).is_err());
    }

    /// The worked example of docs/FORMAT.md, "Pack files", byte for byte.
    #[test]
    fn the_documented_example_is_what_akte_writes() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        store.put(&b"akte"[..]).unwrap();
        let expected = concat!(
            "414b54452d50414b", // AKTE-PAK
            "00000001",         // version 1
            "0000000000000000", // pack 0
            "666bcc7d",         // CRC-32C
            "414b5031010000",   // AKP1, present, raw, reserved...
            "00",
            "ed500e315f33358824203cee073893311e0a80d77989dc55c5d86247d95b2403",
            "0000000000000004", // original length
            "00000004",         // payload length
            "3e727a9e",         // CRC-32C
            "616b7465",         // "akte"
        );
        assert_eq!(hex::encode(fs::read(f.pack(0)).unwrap()), expected);
    }

    #[test]
    fn pack_header_and_names() {
        let h = encode_pack_header(7);
        assert_eq!(decode_pack_header(&h).unwrap(), 7);
        for i in 0..h.len() {
            let mut b = h;
            b[i] ^= 0x10;
            assert!(decode_pack_header(&b).is_err(), "byte {i}");
        }
        assert_eq!(pack_file_name(42), "00000000000000000042.pack");
        assert_eq!(parse_pack_file_name("00000000000000000042.pack"), Some(42));
        assert_eq!(parse_pack_file_name("42.pack"), None);
        assert_eq!(parse_pack_file_name("0000000000000000004x.pack"), None);
    }

    #[test]
    fn small_objects_round_trip_through_packs_and_large_ones_get_files() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let cases = [
            (Vec::new(), Codec::Raw),
            (b"x".to_vec(), Codec::Raw),
            (text(5000, 1), Codec::Zstd),
            (random_bytes(5000, 2), Codec::Raw),
            (text(MAX_PACKED_LEN as usize - 1, 3), Codec::Zstd),
        ];
        let mut digests = Vec::new();
        for (data, codec) in &cases {
            let out = store.put(&data[..]).unwrap();
            assert!(out.newly_stored);
            assert_eq!(out.codec, *codec, "{} bytes", data.len());
            let place = store.place(&out.digest).unwrap().unwrap();
            assert!(place.packed, "{} bytes", data.len());
            assert_eq!(place.len, out.stored_size);
            assert!(!store.path_of(&out.digest).exists());
            digests.push(out.digest);
        }
        let big = random_bytes(MAX_PACKED_LEN as usize, 4);
        let out = store.put(&big[..]).unwrap();
        assert!(!store.place(&out.digest).unwrap().unwrap().packed);
        assert!(store.path_of(&out.digest).is_file());
        drop(store);
        let store = f.open();
        assert_eq!(store.pack_recovery().reindexed, 0);
        for ((data, _), d) in cases.iter().zip(&digests) {
            assert_eq!(&read_all(&store, d).unwrap(), data);
            assert_eq!(store.stat(d).unwrap().size, data.len() as u64);
            assert_eq!(store.verify_object(d).unwrap(), data.len() as u64);
            assert!(store.contains(d).unwrap());
        }
        assert_eq!(read_all(&store, &out.digest).unwrap(), big);
        let listed: std::collections::BTreeSet<Digest> = store.iter().map(|d| d.unwrap()).collect();
        assert_eq!(listed.len(), digests.len() + 1);
        let check = store.check_packs().unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!(check.present, digests.len() as u64);
    }

    #[test]
    fn concurrent_puts_share_flushes_and_store_each_digest_once() {
        let f = Fixture::new(64 << 10);
        let store = Arc::new(f.open());
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let mut handles = Vec::new();
        for t in 0..threads {
            let store = store.clone();
            let barrier = barrier.clone();
            handles.push(std::thread::spawn(move || {
                barrier.wait();
                let mut newly = Vec::new();
                for i in 0..60u64 {
                    // Half of the documents are the same for every thread.
                    let seed = if i % 2 == 0 {
                        i
                    } else {
                        1000 * (t as u64 + 1) + i
                    };
                    let data = random_bytes(3000 + (seed as usize % 7) * 500, seed);
                    let out = store.put(&data[..]).unwrap();
                    newly.push((out.digest, out.newly_stored, data));
                }
                newly
            }));
        }
        let mut stored: std::collections::BTreeMap<Digest, (usize, Vec<u8>)> = Default::default();
        for h in handles {
            for (d, newly, data) in h.join().unwrap() {
                let e = stored.entry(d).or_insert((0, data));
                e.0 += usize::from(newly);
            }
        }
        for (d, (newly, data)) in &stored {
            assert_eq!(*newly, 1, "{d} stored {newly} times");
            assert_eq!(&read_all(&store, d).unwrap(), data);
        }
        drop(store);
        // Several packs of at most 64 KiB, all readable after reopening, none damaged.
        let store = f.open();
        assert!(f.pack(3).exists());
        let check = store.check_packs().unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!(check.present, stored.len() as u64);
        for (d, (_, data)) in &stored {
            assert_eq!(&read_all(&store, d).unwrap(), data);
        }
    }

    #[test]
    fn queued_puts_are_written_by_the_next_flush_and_reads_wait_for_it() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let len = |f: &Fixture| fs::metadata(f.pack(0)).map(|m| m.len()).unwrap_or(0);
        let before = len(&f);
        let a = text(5000, 1);
        let put = store.put_bytes_for_entry(&a, None, None).unwrap();
        assert!(put.newly_stored);
        // Queued, not written: known to stat (for the entry that will refer to it).
        assert_eq!(len(&f), before);
        assert_eq!(store.stat(&put.digest).unwrap().size, 5000);
        let again = store.put_bytes_for_entry(&a, None, None).unwrap();
        assert!(!again.newly_stored);
        store.flush_queued().unwrap();
        assert_eq!(len(&f), before + put.stored_size);
        // Nothing queued: a flush writes nothing.
        store.flush_queued().unwrap();
        assert_eq!(len(&f), before + put.stored_size);
        // A read of a queued object flushes it first.
        let b = text(4000, 2);
        let put_b = store.put_bytes_for_entry(&b, None, None).unwrap();
        assert_eq!(read_all(&store, &put_b.digest).unwrap(), b);
        assert_eq!(len(&f), before + put.stored_size + put_b.stored_size);
        let c = text(3000, 3);
        let put_c = store.put_bytes_for_entry(&c, None, None).unwrap();
        assert!(store.contains(&put_c.digest).unwrap());
        drop(store);
        let store = f.open();
        for (d, data) in [(put.digest, a), (put_b.digest, b), (put_c.digest, c)] {
            assert_eq!(read_all(&store, &d).unwrap(), data);
        }
        assert!(store.check_packs().unwrap().problems.is_empty());
    }

    #[test]
    fn records_the_index_lost_are_found_again_at_open() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let mut all = Vec::new();
        for i in 0..10 {
            let data = text(2000 + i * 100, i as u64);
            all.push((store.put(&data[..]).unwrap(), data));
        }
        drop(store);
        // As if the last four index updates had not reached the disk before a crash.
        let tree = f.tree();
        let keep_through = {
            let s = f.open();
            let p = s.place(&all[6].0.digest).unwrap().unwrap();
            p.offset
        };
        for (out, _) in &all[6..] {
            for kv in tree.scan_prefix(&object_prefix(&out.digest)) {
                tree.remove(&kv.unwrap().0).unwrap();
            }
        }
        tree.insert(KEY_THROUGH, &through_value(0, keep_through)[..])
            .unwrap();
        let store = f.open();
        assert_eq!(store.pack_recovery().reindexed, 4);
        for (out, data) in &all {
            assert_eq!(&read_all(&store, &out.digest).unwrap(), data);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_back_and_writing_goes_on() {
        for torn in [
            "half a header",
            "header without its payload",
            "payload garbage",
        ] {
            let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
            let store = f.open();
            let kept = store.put(&text(3000, 1)[..]).unwrap();
            drop(store);
            let pack = f.pack(0);
            let good_len = fs::metadata(&pack).unwrap().len();
            let data = random_bytes(4000, 9);
            let header = RecordHeader {
                state: RecordState::Present,
                codec: Codec::Raw,
                digest: Digest::of(&data),
                size: 4000,
                payload_len: 4000,
            }
            .encode();
            let tail: Vec<u8> = match torn {
                "half a header" => header[..30].to_vec(),
                "header without its payload" => [&header[..], &data[..1000]].concat(),
                _ => [&header[..], &random_bytes(4000, 10)[..]].concat(),
            };
            patch(&pack, good_len, &tail);
            let store = f.open();
            let rec = store.pack_recovery();
            assert_eq!(
                rec.truncated,
                Some((pack.clone(), good_len, tail.len() as u64)),
                "{torn}"
            );
            assert_eq!(fs::metadata(&pack).unwrap().len(), good_len, "{torn}");
            assert!(!store.contains(&Digest::of(&data)).unwrap(), "{torn}");
            assert_eq!(read_all(&store, &kept.digest).unwrap(), text(3000, 1));
            let again = store.put(&data[..]).unwrap();
            assert!(again.newly_stored);
            assert_eq!(read_all(&store, &again.digest).unwrap(), data);
            assert!(store.check_packs().unwrap().problems.is_empty(), "{torn}");
        }
    }

    #[test]
    fn damage_beyond_the_marker_inside_a_pack_is_reported_not_cut() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let a = store.put(&random_bytes(3000, 10)[..]).unwrap();
        let b = store.put(&random_bytes(3000, 20)[..]).unwrap();
        let c = store.put(&random_bytes(3000, 30)[..]).unwrap();
        let b_place = store.place(&b.digest).unwrap().unwrap();
        drop(store);
        // The index forgets b and c, and b's payload is damaged.
        let tree = f.tree();
        for d in [&b.digest, &c.digest] {
            for kv in tree.scan_prefix(&object_prefix(d)) {
                tree.remove(&kv.unwrap().0).unwrap();
            }
        }
        tree.insert(KEY_THROUGH, &through_value(0, b_place.offset)[..])
            .unwrap();
        patch(&b_place.path, b_place.offset + 100, b"XX");
        let len = fs::metadata(&b_place.path).unwrap().len();
        let store = f.open();
        let rec = store.pack_recovery();
        assert_eq!(rec.reindexed, 1);
        assert_eq!(rec.truncated, None);
        assert_eq!(rec.damaged.len(), 1);
        assert_eq!(rec.damaged[0].1, b_place.offset);
        assert_eq!(fs::metadata(&b_place.path).unwrap().len(), len);
        assert!(read_all(&store, &a.digest).is_ok());
        assert!(matches!(
            store.get(&b.digest),
            Err(ContentError::NotFound { .. })
        ));
        assert!(read_all(&store, &c.digest).is_ok());
    }

    #[test]
    fn damaged_payloads_and_headers_are_reported_with_their_place() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let raw = store.put(&random_bytes(3000, 1)[..]).unwrap();
        let zst = store.put(&text(9000, 2)[..]).unwrap();
        let hdr = store.put(&random_bytes(2000, 3)[..]).unwrap();
        assert_eq!(zst.codec, Codec::Zstd);
        for (out, at) in [
            (&raw, RECORD_HEADER_LEN + 10),
            (&zst, RECORD_HEADER_LEN + 20),
        ] {
            let p = store.place(&out.digest).unwrap().unwrap();
            let b = read_at(&p.path, p.offset + at, 1);
            patch(&p.path, p.offset + at, &[b[0] ^ 0x55]);
            let err = read_all(&store, &out.digest).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ContentError::Corrupt { .. }), "{msg}");
            assert!(msg.contains(&p.path.display().to_string()), "{msg}");
            assert!(
                msg.contains(&format!("record at byte {}", p.offset)),
                "{msg}"
            );
        }
        let p = store.place(&hdr.digest).unwrap().unwrap();
        patch(&p.path, p.offset + 45, &[0xff]);
        let err = store.get(&hdr.digest).unwrap_err();
        assert!(err.to_string().contains("CRC-32C"), "{err}");
        let check = store.check_packs().unwrap();
        assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
        assert_eq!(check.problems[0].offset, Some(p.offset));
        // A fresh upload of the bytes behind the damaged header is stored beside it.
        let again = store.put(&random_bytes(2000, 3)[..]).unwrap();
        assert!(again.newly_stored);
        assert_eq!(
            read_all(&store, &hdr.digest).unwrap(),
            random_bytes(2000, 3)
        );
    }

    #[test]
    fn removal_zeroes_the_payload_in_place_and_can_be_repeated() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let gone = store.put(&text(6000, 1)[..]).unwrap();
        let stays = store.put(&text(6000, 2)[..]).unwrap();
        let p = store.place(&gone.digest).unwrap().unwrap();
        let pack_len = fs::metadata(&p.path).unwrap().len();
        assert!(store.remove(&gone.digest).unwrap());
        assert_eq!(fs::metadata(&p.path).unwrap().len(), pack_len);
        let header = read_at(&p.path, p.offset, RECORD_HEADER_LEN as usize);
        let h = RecordHeader::decode(&header.try_into().unwrap()).unwrap();
        assert_eq!(h.state, RecordState::Removed);
        let payload = read_at(
            &p.path,
            p.offset + RECORD_HEADER_LEN,
            h.payload_len as usize,
        );
        assert!(payload.iter().all(|&b| b == 0));
        assert!(!store.contains(&gone.digest).unwrap());
        assert!(matches!(
            store.get(&gone.digest),
            Err(ContentError::NotFound { .. })
        ));
        assert!(!store.remove(&gone.digest).unwrap());
        assert_eq!(read_all(&store, &stays.digest).unwrap(), text(6000, 2));
        let check = store.check_packs().unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!((check.present, check.removed), (1, 1));
        // After reopening (the index read again from the packs) it stays removed.
        drop(store);
        f.tree().clear().unwrap();
        let store = f.open();
        assert!(!store.contains(&gone.digest).unwrap());
        // A removed record whose payload is not zeros is reported.
        patch(&p.path, p.offset + RECORD_HEADER_LEN + 3, b"\x01");
        let check = store.check_packs().unwrap();
        assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
        assert!(check.problems[0].reason.contains("not zeros"));
        // The same bytes can be stored again afterwards.
        assert!(store.put(&text(6000, 1)[..]).unwrap().newly_stored);
    }

    #[test]
    fn an_interrupted_removal_is_completed_by_repeating_it() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let gone = store.put(&random_bytes(8000, 1)[..]).unwrap();
        let p = store.place(&gone.digest).unwrap().unwrap();
        // The crash hit after part of the zeros: header still present, payload half zero.
        patch(&p.path, p.offset + RECORD_HEADER_LEN, &vec![0u8; 3000]);
        assert!(store.remove(&gone.digest).unwrap());
        let check = store.check_packs().unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        // A torn header write is repaired the same way.
        let gone2 = store.put(&random_bytes(8000, 2)[..]).unwrap();
        let p2 = store.place(&gone2.digest).unwrap().unwrap();
        patch(&p2.path, p2.offset + 4, &[2]);
        assert!(store.remove(&gone2.digest).unwrap());
        assert!(store.check_packs().unwrap().problems.is_empty());
    }

    #[test]
    fn check_packs_reports_strays_and_bad_pack_headers() {
        let f = Fixture::new(4096);
        let store = f.open();
        for i in 0..6 {
            store.put(&random_bytes(1500, i)[..]).unwrap();
        }
        fs::write(f.dir.path().join("content/packs/notes.txt"), b"x").unwrap();
        patch(&f.pack(1), 9, &[0x77]);
        let check = store.check_packs().unwrap();
        let reasons: Vec<String> = check.problems.iter().map(|p| p.reason.clone()).collect();
        assert_eq!(check.problems.len(), 2, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("not a pack file name")));
        assert!(reasons.iter().any(|r| r.contains("pack header CRC-32C")));
    }

    #[test]
    fn a_pack_shorter_than_its_indexed_records_is_reported_not_cut() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let a = store.put(&random_bytes(3000, 1)[..]).unwrap();
        let b = store.put(&random_bytes(3000, 2)[..]).unwrap();
        let b_place = store.place(&b.digest).unwrap().unwrap();
        drop(store);
        // Acknowledged records lost: the pack ends in the middle of b.
        let cut = b_place.offset + 100;
        OpenOptions::new()
            .write(true)
            .open(f.pack(0))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let store = f.open();
        assert_eq!(
            fs::metadata(f.pack(0)).unwrap().len(),
            cut,
            "nothing is cut"
        );
        assert_eq!(store.pack_recovery().truncated, None);
        assert_eq!(store.pack_recovery().lost.len(), 1);
        assert!(read_all(&store, &a.digest).is_ok());
        let err = store.get(&b.digest).unwrap_err();
        assert!(
            err.to_string().contains(&f.pack(0).display().to_string()),
            "{err}"
        );
        let check = store.check_packs().unwrap();
        assert!(
            check.problems.iter().any(|p| p.path == f.pack(0)),
            "{:?}",
            check.problems
        );
        // New records go to a new pack.
        let c = store.put(&random_bytes(3000, 3)[..]).unwrap();
        assert_eq!(store.place(&c.digest).unwrap().unwrap().path, f.pack(1));
        // A missing pack among later ones is reported as a gap.
        drop(store);
        let store = f.open();
        store.put(&random_bytes(100_000, 4)[..]).unwrap();
        fs::remove_file(f.pack(0)).unwrap();
        let check = store.check_packs().unwrap();
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.path == f.pack(0) && p.reason.contains("missing")),
            "{:?}",
            check.problems
        );
    }

    #[test]
    fn a_last_pack_without_a_complete_header_is_removed_at_open() {
        let f = Fixture::new(DEFAULT_PACK_MAX_BYTES);
        let store = f.open();
        let kept = store.put(&random_bytes(3000, 1)[..]).unwrap();
        drop(store);
        fs::write(f.pack(1), &encode_pack_header(1)[..10]).unwrap();
        let store = f.open();
        assert!(!f.pack(1).exists() || fs::metadata(f.pack(1)).unwrap().len() == PACK_HEADER_LEN);
        assert!(read_all(&store, &kept.digest).is_ok());
        assert!(store.put(&random_bytes(3000, 2)[..]).unwrap().newly_stored);
        assert!(store.check_packs().unwrap().problems.is_empty());
    }

    #[test]
    fn reindex_rebuilds_the_locations_from_the_packs() {
        let f = Fixture::new(8192);
        let store = f.open();
        let mut all = Vec::new();
        for i in 0..12 {
            let data = random_bytes(1000 + i * 50, i as u64);
            all.push((store.put(&data[..]).unwrap().digest, data));
        }
        store.remove(&all[3].0).unwrap();
        f.tree().clear().unwrap();
        assert!(!store.contains(&all[0].0).unwrap());
        assert_eq!(store.reindex_packs().unwrap(), 11);
        for (i, (d, data)) in all.iter().enumerate() {
            if i == 3 {
                assert!(!store.contains(d).unwrap());
            } else {
                assert_eq!(&read_all(&store, d).unwrap(), data);
            }
        }
    }

    /// A pack store in `dir`/packs over `index`.
    fn pack_store(dir: &Path, index: &PackIndex, max_bytes: u64) -> PackStore {
        PackStore::open(&dir.join("packs"), index.clone(), max_bytes).unwrap()
    }

    /// Puts `data` as a raw record and returns its digest.
    fn put_raw(store: &PackStore, data: &[u8]) -> Digest {
        let digest = Digest::of(data);
        store
            .put(digest, Codec::Raw, data.len() as u64, data)
            .unwrap();
        digest
    }

    /// A crash after records reached their pack (flushed, acknowledged) but before the
    /// location index's commit was durable: the index file is what its last durable commit
    /// left. The next open reads the records beyond that commit's marker again and finds
    /// every object.
    #[test]
    fn a_crash_before_the_index_commit_is_durable_loses_no_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("packs.redb");
        let crash_image = dir.path().join("packs.redb.at-crash");
        let index = PackIndex::open(&path).unwrap();
        let store = pack_store(dir.path(), &index, DEFAULT_PACK_MAX_BYTES);
        let early: Vec<(Digest, Vec<u8>)> = (0..3)
            .map(|i| {
                let data = random_bytes(2000, i);
                (put_raw(&store, &data), data)
            })
            .collect();
        index.sync().unwrap();
        // What the disk holds of the index now, and keeps through the crash: the later
        // flushes commit lazily, never durably before the crash.
        fs::copy(&path, &crash_image).unwrap();
        let late: Vec<(Digest, Vec<u8>)> = (10..14)
            .map(|i| {
                let data = random_bytes(2000, i);
                (put_raw(&store, &data), data)
            })
            .collect();
        assert_eq!(store.locate(&late[0].0).unwrap().len(), 1);
        drop(store);
        drop(index);
        fs::rename(&crash_image, &path).unwrap();
        let index = PackIndex::open(&path).unwrap();
        assert!(
            index
                .scan_prefix(&object_prefix(&late[0].0))
                .next()
                .is_none(),
            "the crash image does not hold the late locations"
        );
        let store = pack_store(dir.path(), &index, DEFAULT_PACK_MAX_BYTES);
        assert_eq!(store.recovery().reindexed, late.len() as u64);
        for (d, data) in early.iter().chain(&late) {
            let copies = store.locate(d).unwrap();
            assert_eq!(copies.len(), 1, "{d}");
            let (mut file, header) = store.open_record(d, &copies[0]).unwrap();
            let mut read = vec![0u8; header.payload_len as usize];
            file.read_exact(&mut read).unwrap();
            assert_eq!(&read, data);
        }
        // Stored again, they are duplicates, not second copies.
        assert!(
            !store
                .put(late[0].0, Codec::Raw, 2000, &late[0].1)
                .unwrap()
                .1
        );
    }

    /// A reindex cut short (here after two of its parts, one per pack) leaves the packs it
    /// stored and the marker after them; the next open reads only the packs beyond it.
    #[test]
    fn a_reindex_cut_short_resumes_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let index = PackIndex::open(&dir.path().join("packs.redb")).unwrap();
        let store = pack_store(dir.path(), &index, 8192);
        let all: Vec<(Digest, Vec<u8>)> = (0..20)
            .map(|i| {
                let data = random_bytes(1500, i);
                (put_raw(&store, &data), data)
            })
            .collect();
        let packs = list_packs(store.dir()).unwrap();
        assert!(packs.len() >= 4, "{} packs", packs.len());
        let err = store.reindex_parts(2).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
        // Parts are stored after each pack: packs 0 and 1 are indexed, the marker at the
        // end of pack 1, nothing of the later packs.
        let len1 = fs::metadata(&packs[1].1).unwrap().len();
        assert_eq!(
            PackStore::read_through(&index, store.dir()).unwrap(),
            Some((1, len1))
        );
        let in_first_two = all
            .iter()
            .filter(|(d, _)| store.locate_indexed(d).unwrap().iter().any(|o| o.pack <= 1))
            .count();
        assert!(in_first_two > 0);
        assert_eq!(
            all.iter()
                .filter(|(d, _)| !store.locate_indexed(d).unwrap().is_empty())
                .count(),
            in_first_two
        );
        drop(store);
        let store = pack_store(dir.path(), &index, 8192);
        assert_eq!(
            store.recovery().reindexed,
            (all.len() - in_first_two) as u64,
            "only the packs beyond the marker are read again"
        );
        for (d, data) in &all {
            let copies = store.locate(d).unwrap();
            assert_eq!(copies.len(), 1);
            let (mut file, _) = store.open_record(d, &copies[0]).unwrap();
            let mut read = vec![0u8; data.len()];
            file.read_exact(&mut read).unwrap();
            assert_eq!(&read, data);
        }
        // A full reindex afterwards holds the same.
        assert_eq!(store.reindex().unwrap(), all.len() as u64);
    }

    #[test]
    fn a_file_stored_before_packing_deduplicates_small_puts() {
        let dir = tempfile::tempdir().unwrap();
        let loose = ContentOptions {
            pack_below: 0,
            ..ContentOptions::default()
        };
        let store = ContentStore::open_with(dir.path(), loose).unwrap();
        let data = text(4000, 5);
        let first = store.put(&data[..]).unwrap();
        drop(store);
        let store = ContentStore::open(dir.path()).unwrap();
        let again = store.put(&data[..]).unwrap();
        assert!(!again.newly_stored);
        assert!(!store.place(&first.digest).unwrap().unwrap().packed);
        assert_eq!(read_all(&store, &first.digest).unwrap(), data);
        assert!(store.remove(&first.digest).unwrap());
        assert!(!store.contains(&first.digest).unwrap());
    }

    #[test]
    fn bad_pack_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for options in [
            ContentOptions {
                pack_below: MAX_PACKED_LEN + 1,
                ..ContentOptions::default()
            },
            ContentOptions {
                pack_max_bytes: 10,
                ..ContentOptions::default()
            },
        ] {
            let err = ContentStore::open_with(dir.path(), options).unwrap_err();
            assert!(
                matches!(err, ContentError::InvalidPackOptions { .. }),
                "{err}"
            );
        }
    }

    fn scratch_tree() -> PackIndex {
        PackIndex::temporary().unwrap()
    }

    fn pack_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_read_only_open_finds_objects_leaves_a_torn_tail_and_follows_a_writer() {
        let f = Fixture::new(1 << 20);
        let writer = f.open();
        let first: Vec<Digest> = (0..5)
            .map(|i| writer.put(&text(2_000 + i, i as u64)[..]).unwrap().digest)
            .collect();
        let root = f.dir.path().join("content");
        let reader = ContentStore::open_read_only(&root, f.options, scratch_tree()).unwrap();
        for d in &first {
            assert!(reader.contains(d).unwrap());
            assert_eq!(
                reader.verify_object(d).unwrap() as usize,
                read_all(&writer, d).unwrap().len()
            );
        }
        // Written after the read-only open: found on the first miss.
        let later = writer.put(&text(3_000, 99)[..]).unwrap().digest;
        assert_eq!(read_all(&reader, &later).unwrap(), text(3_000, 99));
        // Writes are refused, and nothing was written.
        let before = pack_files(&root.join("packs"));
        assert!(reader.put(&b"x"[..]).is_err());
        assert!(reader.remove(&first[0]).is_err());
        assert!(reader.reindex_packs().is_err());
        assert_eq!(pack_files(&root.join("packs")), before);
        drop(writer);

        // A torn tail is noted and left; a damaged payload is still indexed, so that
        // verification reports it at its pack record.
        let len = fs::metadata(f.pack(0)).unwrap().len();
        {
            use std::io::Write;
            let mut file = OpenOptions::new().append(true).open(f.pack(0)).unwrap();
            file.write_all(&[0x5A; 30]).unwrap();
        }
        let at = PACK_HEADER_LEN + RECORD_HEADER_LEN + 10;
        let byte = read_at(&f.pack(0), at, 1)[0];
        patch(&f.pack(0), at, &[byte ^ 0xFF]);
        let before = pack_files(&root.join("packs"));
        let reader = ContentStore::open_read_only(&root, f.options, scratch_tree()).unwrap();
        assert_eq!(reader.pack_recovery().torn_tail, Some((f.pack(0), len, 30)));
        assert_eq!(reader.pack_recovery().truncated, None);
        let damaged = reader.verify_object(&first[0]).unwrap_err();
        assert!(
            damaged
                .to_string()
                .contains(&f.pack(0).display().to_string()),
            "{damaged}"
        );
        assert!(reader.check_packs().unwrap().problems.is_empty());
        drop(reader);
        assert_eq!(pack_files(&root.join("packs")), before);
    }
}
