//! The append-only journal of one tenant: segment files, group commit, recovery, reads.
//!
//! Appending is split in two so that callers can keep their own state in step with the
//! journal's order: [`Journal::enqueue`] assigns the sequence number, time and chain link
//! and queues the framed record (fast, under a short lock); [`Journal::wait_durable`]
//! returns once the record has been written and flushed. Whoever waits first while no
//! flush is running becomes the leader and writes and flushes everything queued so far, so
//! concurrent writers share one `fdatasync` (group commit).
//!
//! If a write or flush fails, the journal is fenced: every waiting and later append fails
//! until the journal is reopened, because after a failed `fsync` the state of the file on
//! disk is unknown and retrying could acknowledge lost data.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use chrono::{DateTime, TimeZone, Utc};

use crate::digest::Digest;
use crate::entry::{Entry, EntryDraft, EntryError, PayloadKind};
use crate::fsutil::{self, IoContext, PathIoError};
use crate::merkle::leaf_hash;
use crate::segment::{
    self, Attachment, RawRecord, SegmentError, SegmentReader, SEGMENT_HEADER_LEN,
};

/// Where a record lives: the segment (named by its first sequence number) and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    /// First sequence number of the segment holding the record.
    pub segment: u64,
    /// Byte offset of the record in that segment.
    pub offset: u64,
}

impl Location {
    /// Fixed 16-byte form, used as an index value.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    /// Inverse of [`Location::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Option<Location> {
        if b.len() != 16 {
            return None;
        }
        let mut s = [0u8; 8];
        let mut o = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        o.copy_from_slice(&b[8..]);
        Some(Location {
            segment: u64::from_be_bytes(s),
            offset: u64::from_be_bytes(o),
        })
    }
}

/// A journal record read back: the decoded entry, its leaf hash and its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The entry.
    pub entry: Entry,
    /// SHA-256(0x00 || entry encoding).
    pub leaf: Digest,
    /// Attached records (salted metadata), possibly redacted.
    pub attachments: Vec<Attachment>,
    /// Where the record is stored.
    pub location: Location,
}

impl Record {
    /// The attachment with this digest, if present and not redacted.
    pub fn attachment(&self, digest: &Digest) -> Option<&[u8]> {
        self.attachments
            .iter()
            .find(|a| &a.digest == digest)
            .and_then(|a| a.bytes.as_deref())
    }
}

/// What `enqueue` hands back: everything about the entry except the guarantee that it is
/// durable, which [`Journal::wait_durable`] gives.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The entry as it will be stored.
    pub entry: Entry,
    /// Its leaf hash.
    pub leaf: Digest,
    /// Where it will be stored.
    pub location: Location,
}

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// A segment could not be read.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The journal's history is inconsistent; it will not be opened or repaired silently.
    #[error("journal {path} is inconsistent at byte {offset}{}: {reason}", seq.map(|s| format!(" (entry {s})")).unwrap_or_default())]
    Inconsistent {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in it.
        offset: u64,
        /// Entry concerned, where known.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// The entry draft is invalid.
    #[error(transparent)]
    InvalidEntry(#[from] EntryError),
    /// The attachments do not match the entry's inline payloads.
    #[error("attachments do not match the entry: {0}")]
    AttachmentMismatch(String),
    /// An earlier write failed; the journal accepts nothing until reopened.
    #[error("journal {path} is fenced after a failed write ({reason}); reopen the store")]
    Fenced {
        /// The journal directory.
        path: PathBuf,
        /// The original failure.
        reason: String,
    },
    /// A sequence number beyond the journal's end was asked for.
    #[error("entry {seq} does not exist (the journal holds {len} entries)")]
    OutOfRange {
        /// Requested entry.
        seq: u64,
        /// Number of durable entries.
        len: u64,
    },
}

/// Tunables of a journal.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A new segment is started once the active one reaches this size.
    pub segment_max_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_max_bytes: 64 << 20,
        }
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Number of group flushes (each one `fdatasync`, more at a segment change).
    pub flushes: AtomicU64,
    /// Entries made durable.
    pub entries: AtomicU64,
    /// Bytes written to segments.
    pub bytes: AtomicU64,
}

/// What recovery did when the journal was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from a torn tail, if any.
    pub truncated_bytes: u64,
    /// An empty or torn last segment that was removed (left by a crash while rotating).
    pub removed_segment: Option<PathBuf>,
}

struct PendingChunk {
    /// Start a new segment with this first sequence number before writing `bytes`.
    new_segment: Option<u64>,
    bytes: Vec<u8>,
}

struct State {
    next_seq: u64,
    last_leaf: Digest,
    last_micros: i64,
    /// First sequence number and logical length (including queued records) of the last segment.
    tail_segment: u64,
    tail_len: u64,
    pending: Vec<PendingChunk>,
    pending_last_seq: Option<u64>,
    durable_len: u64,
    flushing: bool,
    fenced: Option<String>,
}

struct ActiveSegment {
    file: File,
    path: PathBuf,
}

/// One tenant's journal.
pub struct Journal {
    dir: PathBuf,
    options: JournalOptions,
    state: Mutex<State>,
    durable: Condvar,
    active: Mutex<ActiveSegment>,
    stats: JournalStats,
    recovery: Recovery,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

/// Segment files of a journal directory, sorted by first sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).at("list", dir)? {
        let item = item.at("list", dir)?;
        let name = item.file_name();
        let name = name.to_string_lossy();
        match segment::parse_segment_file_name(&name) {
            Some(first) => out.push((first, item.path())),
            None => {
                tracing::warn!(path = %item.path().display(), "ignoring unexpected file in journal directory")
            }
        }
    }
    out.sort();
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the journal's state half-updated in a way
    // that matters more than the panic itself; keep serving rather than poisoning forever.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<ActiveSegment, JournalError> {
    let path = dir.join(segment::segment_file_name(first_seq));
    let mut file = fsutil::open_new_with_mode(&path, 0o640)?;
    file.write_all(&segment::encode_header(first_seq))
        .at("write", &path)?;
    file.sync_all().at("fsync", &path)?;
    fsutil::fsync_dir(dir)?;
    Ok(ActiveSegment { file, path })
}

fn open_append(path: &Path) -> Result<ActiveSegment, JournalError> {
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .at("open for append", path)?;
    Ok(ActiveSegment {
        file,
        path: path.to_path_buf(),
    })
}

/// Scans a whole segment checking framing, sequence numbers and chain links; returns the
/// last entry's (seq, leaf, micros) and the offset just past the last complete record.
/// `torn_ok` allows an incomplete or damaged tail with nothing valid after it.
struct ScanEnd {
    last: Option<(u64, Digest, i64)>,
    end_offset: u64,
    torn_at: Option<u64>,
}

fn scan_segment(path: &Path, torn_ok: bool) -> Result<ScanEnd, JournalError> {
    let mut reader = SegmentReader::open(path)?;
    let mut expected = reader.first_seq();
    let mut last: Option<(u64, Digest, i64)> = None;
    loop {
        let offset = reader.offset();
        match reader.next_record() {
            Ok(None) => {
                return Ok(ScanEnd {
                    last,
                    end_offset: offset,
                    torn_at: None,
                })
            }
            Ok(Some((off, raw))) => {
                let rec = decode_record(path, off, raw)?;
                let inconsistent = |reason: String| JournalError::Inconsistent {
                    path: path.to_path_buf(),
                    offset: off,
                    seq: Some(rec.entry.seq),
                    reason,
                };
                if rec.entry.seq != expected {
                    return Err(inconsistent(format!(
                        "sequence number {} where {expected} was expected",
                        rec.entry.seq
                    )));
                }
                if let Some((_, prev_leaf, _)) = last {
                    if rec.entry.prev != prev_leaf {
                        return Err(inconsistent(format!(
                            "previous-entry hash {} does not match entry {}'s leaf hash {prev_leaf}",
                            rec.entry.prev,
                            expected.saturating_sub(1)
                        )));
                    }
                }
                last = Some((rec.entry.seq, rec.leaf, rec.entry.time.timestamp_micros()));
                expected += 1;
            }
            Err(SegmentError::Incomplete { offset, .. }) if torn_ok => {
                return Ok(ScanEnd {
                    last,
                    end_offset: offset,
                    torn_at: Some(offset),
                })
            }
            Err(SegmentError::Damaged {
                offset: bad,
                reason,
                ..
            }) if torn_ok => {
                // Damage is a torn tail only if no well-formed record follows it.
                let all = fs::read(path).at("read", path)?;
                let from = (bad as usize + 1).min(all.len());
                if let Some(pos) = segment::contains_valid_record(&all[from..]) {
                    return Err(JournalError::Inconsistent {
                        path: path.to_path_buf(),
                        offset: bad,
                        seq: Some(expected),
                        reason: format!(
                            "{reason}, and a valid record follows at byte {}: damage inside history, not a torn tail",
                            from + pos
                        ),
                    });
                }
                return Ok(ScanEnd {
                    last,
                    end_offset: bad,
                    torn_at: Some(bad),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Decodes an entry from a raw record and checks its attachments against its payloads.
pub fn decode_record(path: &Path, offset: u64, raw: RawRecord) -> Result<Record, JournalError> {
    let leaf = leaf_hash(&raw.entry_bytes);
    let entry = Entry::decode(&raw.entry_bytes).map_err(|e| JournalError::Inconsistent {
        path: path.to_path_buf(),
        offset,
        seq: None,
        reason: e.to_string(),
    })?;
    let segment = segment::parse_segment_file_name(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
    .unwrap_or(0);
    if let Err(reason) = check_attachments(&entry, &raw.attachments) {
        return Err(JournalError::Inconsistent {
            path: path.to_path_buf(),
            offset,
            seq: Some(entry.seq),
            reason,
        });
    }
    Ok(Record {
        entry,
        leaf,
        attachments: raw.attachments,
        location: Location { segment, offset },
    })
}

/// Every inline payload has exactly one attachment with its digest, whose bytes (unless
/// redacted) hash to that digest and have the declared size; no other attachments.
fn check_attachments(entry: &Entry, attachments: &[Attachment]) -> Result<(), String> {
    let inline: Vec<_> = entry
        .payloads
        .iter()
        .filter(|p| p.kind == PayloadKind::Inline)
        .collect();
    if inline.len() != attachments.len() {
        return Err(format!(
            "{} inline payloads but {} attachments",
            inline.len(),
            attachments.len()
        ));
    }
    for (p, a) in inline.iter().zip(attachments) {
        if p.digest != a.digest {
            return Err(format!(
                "attachment for payload '{}' has digest {}, the entry says {}",
                p.role, a.digest, p.digest
            ));
        }
        if a.len as u64 != p.size {
            return Err(format!(
                "attachment {} is {} bytes long, the entry says {}",
                p.digest, a.len, p.size
            ));
        }
        if let Some(bytes) = &a.bytes {
            if bytes.len() as u64 != p.size {
                return Err(format!(
                    "attachment {} is {} bytes, the entry says {}",
                    p.digest,
                    bytes.len(),
                    p.size
                ));
            }
            let actual = Digest::of(bytes);
            if actual != p.digest {
                return Err(format!(
                    "attachment bytes hash to {actual}, the entry says {}",
                    p.digest
                ));
            }
        }
    }
    Ok(())
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, recovering from a crash: a torn tail of the
    /// last segment is cut back to the last complete record (and logged); any other
    /// inconsistency refuses to open with an error naming the file and offset.
    pub fn open(dir: &Path, options: JournalOptions) -> Result<Journal, JournalError> {
        fsutil::create_dir_all_durable(dir)?;
        let mut segments = list_segments(dir)?;
        let mut recovery = Recovery::default();

        // A crash while starting a new segment can leave it empty or with a torn header.
        if segments.len() > 1 {
            if let Some((first, path)) = segments.last().cloned() {
                let len = fs::metadata(&path).at("stat", &path)?.len();
                let torn_header = len < SEGMENT_HEADER_LEN as u64
                    || (len == SEGMENT_HEADER_LEN as u64 && SegmentReader::open(&path).is_err());
                let empty = len == SEGMENT_HEADER_LEN as u64 && !torn_header;
                if torn_header || empty {
                    tracing::warn!(path = %path.display(), first_seq = first, "removing empty last journal segment left by an interrupted segment change");
                    fs::remove_file(&path).at("remove", &path)?;
                    fsutil::fsync_dir(dir)?;
                    recovery.removed_segment = Some(path);
                    segments.pop();
                }
            }
        }

        // Header of every segment, and the names agree with the headers and ascend.
        for (first, path) in &segments {
            let r = SegmentReader::open(path)?;
            if r.first_seq() != *first {
                return Err(JournalError::Inconsistent {
                    path: path.clone(),
                    offset: 0,
                    seq: None,
                    reason: format!(
                        "header says the segment starts at entry {}, its name says {first}",
                        r.first_seq()
                    ),
                });
            }
        }

        let (next_seq, last_leaf, last_micros, tail_segment, tail_len, active) = match segments
            .last()
        {
            None => {
                let active = create_segment(dir, 0)?;
                (
                    0,
                    Digest::ZERO,
                    i64::MIN,
                    0,
                    SEGMENT_HEADER_LEN as u64,
                    active,
                )
            }
            Some((first, path)) => {
                let scan = scan_segment(path, true)?;
                if let Some(torn) = scan.torn_at {
                    let len = fs::metadata(path).at("stat", path)?.len();
                    tracing::warn!(path = %path.display(), offset = torn, bytes = len - torn,
                            "journal has a torn tail (an unacknowledged write interrupted by a crash); cutting it back to the last complete record");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .at("open for truncation", path)?;
                    f.set_len(torn).at("truncate", path)?;
                    f.sync_all().at("fsync", path)?;
                    recovery.truncated_bytes = len - torn;
                }
                let (next, leaf, micros) = match scan.last {
                    Some((seq, leaf, micros)) => (seq + 1, leaf, micros),
                    None if segments.len() == 1 => (0, Digest::ZERO, i64::MIN),
                    None => {
                        // Only reachable when a segment was removed above and the
                        // previous one is now the last: take its end.
                        let (_, prev_path) = &segments[segments.len() - 2];
                        let prev = scan_segment(prev_path, false)?;
                        match prev.last {
                            Some((seq, leaf, micros)) => (seq + 1, leaf, micros),
                            None => (*first, Digest::ZERO, i64::MIN),
                        }
                    }
                };
                if next < *first {
                    return Err(JournalError::Inconsistent {
                        path: path.clone(),
                        offset: 0,
                        seq: None,
                        reason: format!(
                            "segment starts at entry {first} but the journal ends at entry {next}"
                        ),
                    });
                }
                (
                    next,
                    leaf,
                    micros,
                    *first,
                    scan.end_offset,
                    open_append(path)?,
                )
            }
        };

        Ok(Journal {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(State {
                next_seq,
                last_leaf,
                last_micros,
                tail_segment,
                tail_len,
                pending: Vec::new(),
                pending_last_seq: None,
                durable_len: next_seq,
                flushing: false,
                fenced: None,
            }),
            durable: Condvar::new(),
            active: Mutex::new(active),
            stats: JournalStats::default(),
            recovery,
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery did at open.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Counters.
    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// Number of durable entries (entries `0..durable_len()` are on disk for good).
    pub fn durable_len(&self) -> u64 {
        lock(&self.state).durable_len
    }

    /// Number of entries enqueued so far, durable or not.
    pub fn enqueued_len(&self) -> u64 {
        lock(&self.state).next_seq
    }

    /// Leaf hash of the last enqueued entry (zero for an empty journal).
    pub fn last_leaf(&self) -> Digest {
        lock(&self.state).last_leaf
    }

    /// Assigns sequence number, time and chain link to `draft`, frames it with its
    /// attachments and queues it for the next group flush. The entry is not durable until
    /// [`Journal::wait_durable`] returns for it.
    pub fn enqueue(
        &self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        draft.validate()?;
        let mut st = lock(&self.state);
        if let Some(reason) = &st.fenced {
            return Err(self.fenced(reason));
        }
        // Time never goes backwards within a journal, whatever the wall clock does.
        let now = Utc::now().timestamp_micros().max(st.last_micros);
        let time: DateTime<Utc> = Utc.timestamp_micros(now).single().unwrap_or_else(Utc::now);
        let entry = Entry {
            seq: st.next_seq,
            time,
            prev: st.last_leaf,
            actor: draft.actor,
            kind: draft.kind,
            object: draft.object,
            payloads: draft.payloads,
        };
        check_attachments(&entry, &attachments).map_err(JournalError::AttachmentMismatch)?;
        let entry_bytes = entry.encode();
        let record = segment::encode_record(&entry_bytes, &attachments);
        if record.len() - segment::RECORD_HEADER_LEN > segment::MAX_RECORD_BODY {
            return Err(JournalError::AttachmentMismatch(format!(
                "record of {} bytes exceeds the limit of {} bytes",
                record.len(),
                segment::MAX_RECORD_BODY
            )));
        }
        let leaf = leaf_hash(&entry_bytes);

        let new_segment = if st.tail_len >= self.options.segment_max_bytes {
            st.tail_segment = entry.seq;
            st.tail_len = SEGMENT_HEADER_LEN as u64;
            Some(entry.seq)
        } else {
            None
        };
        let location = Location {
            segment: st.tail_segment,
            offset: st.tail_len,
        };
        st.tail_len += record.len() as u64;
        match (new_segment, st.pending.last_mut()) {
            (None, Some(chunk)) => chunk.bytes.extend_from_slice(&record),
            _ => st.pending.push(PendingChunk {
                new_segment,
                bytes: record,
            }),
        }
        st.pending_last_seq = Some(entry.seq);
        st.next_seq += 1;
        st.last_leaf = leaf;
        st.last_micros = now;
        Ok(Ticket {
            entry,
            leaf,
            location,
        })
    }

    /// Blocks until entry `seq` is durable. The first waiter while no flush runs writes and
    /// flushes everything queued (group commit); the others wait for it.
    pub fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let mut st = lock(&self.state);
        loop {
            if st.durable_len > seq {
                return Ok(());
            }
            if let Some(reason) = &st.fenced {
                return Err(self.fenced(reason));
            }
            if seq >= st.next_seq {
                return Err(JournalError::OutOfRange {
                    seq,
                    len: st.next_seq,
                });
            }
            if st.flushing {
                st = self.durable.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Become the leader for everything queued so far.
            let chunks = std::mem::take(&mut st.pending);
            let Some(last) = st.pending_last_seq.take() else {
                // Every enqueued entry is queued, being flushed or durable; reaching this
                // means that bookkeeping is broken, so refuse rather than spin or lie.
                let reason = format!("entry {seq} is neither queued, in flight nor durable");
                st.fenced = Some(reason.clone());
                return Err(self.fenced(&reason));
            };
            st.flushing = true;
            drop(st);
            let result = self.write_chunks(&chunks, last);
            st = lock(&self.state);
            st.flushing = false;
            match result {
                Ok(bytes) => {
                    let n = last + 1 - st.durable_len;
                    st.durable_len = last + 1;
                    self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                    self.stats.entries.fetch_add(n, Ordering::Relaxed);
                    self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), error = %e, "journal write failed; fencing the journal");
                    st.fenced = Some(e.to_string());
                }
            }
            self.durable.notify_all();
        }
    }

    /// `enqueue` followed by `wait_durable`.
    pub fn append(
        &self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        let t = self.enqueue(draft, attachments)?;
        self.wait_durable(t.entry.seq)?;
        Ok(t)
    }

    fn fenced(&self, reason: &str) -> JournalError {
        JournalError::Fenced {
            path: self.dir.clone(),
            reason: reason.to_owned(),
        }
    }

    fn write_chunks(&self, chunks: &[PendingChunk], _last: u64) -> Result<u64, JournalError> {
        let mut active = lock(&self.active);
        let mut written = 0u64;
        for chunk in chunks {
            if let Some(first) = chunk.new_segment {
                // Records written to the old segment must be durable before the new one
                // appears, so that the journal on disk is always a prefix of history.
                active
                    .file
                    .sync_data()
                    .at("fdatasync", &active.path.clone())?;
                *active = create_segment(&self.dir, first)?;
            }
            let path = active.path.clone();
            active.file.write_all(&chunk.bytes).at("write", &path)?;
            written += chunk.bytes.len() as u64;
        }
        let path = active.path.clone();
        active.file.sync_data().at("fdatasync", &path)?;
        Ok(written)
    }

    /// Removes the bytes of the given attachments (destruction), rewriting each affected
    /// segment into a temporary file that replaces it atomically. Records keep their size
    /// and offsets, entries and hashes stay as they were. Flushes wait meanwhile. Only the
    /// records model's destruction calls this, after the entry that records the destruction
    /// is durable. Returns how many attachments were redacted (already redacted ones count
    /// too, so that an interrupted destruction can be completed).
    pub(crate) fn redact(&self, targets: &[(Location, Digest)]) -> Result<usize, JournalError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(reason) = &st.fenced {
                return Err(self.fenced(reason));
            }
            if !st.flushing {
                break;
            }
            st = self.durable.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        // Holding the flush slot keeps every writer away from the segment files.
        st.flushing = true;
        drop(st);
        let result = self.redact_segments(targets);
        let mut st = lock(&self.state);
        st.flushing = false;
        self.durable.notify_all();
        drop(st);
        result
    }

    fn redact_segments(&self, targets: &[(Location, Digest)]) -> Result<usize, JournalError> {
        let mut by_segment: std::collections::BTreeMap<u64, Vec<(u64, Digest)>> =
            std::collections::BTreeMap::new();
        for (loc, digest) in targets {
            by_segment
                .entry(loc.segment)
                .or_default()
                .push((loc.offset, *digest));
        }
        let mut active = lock(&self.active);
        let mut count = 0usize;
        for (segment, list) in by_segment {
            let path = self.dir.join(segment::segment_file_name(segment));
            let tmp = self
                .dir
                .join(format!(".{}.redact", segment::segment_file_name(segment)));
            let mut reader = SegmentReader::open(&path)?;
            let original_len = reader.len();
            let mut out = std::io::BufWriter::new(fsutil::open_new_with_mode(&tmp, 0o640)?);
            out.write_all(&segment::encode_header(reader.first_seq()))
                .at("write", &tmp)?;
            while let Some((offset, mut raw)) = reader.next_record()? {
                for (_, digest) in list.iter().filter(|(o, _)| *o == offset) {
                    let mut found = false;
                    for a in raw.attachments.iter_mut().filter(|a| &a.digest == digest) {
                        *a = a.redacted();
                        found = true;
                    }
                    if !found {
                        return Err(JournalError::Inconsistent {
                            path: path.clone(),
                            offset,
                            seq: None,
                            reason: format!("no attachment {digest} to redact in this record"),
                        });
                    }
                    count += 1;
                }
                out.write_all(&segment::encode_record(&raw.entry_bytes, &raw.attachments))
                    .at("write", &tmp)?;
            }
            let file = out.into_inner().map_err(|e| PathIoError {
                op: "write",
                path: tmp.clone(),
                source: e.into_error(),
            })?;
            let new_len = file.metadata().at("stat", &tmp)?.len();
            if new_len != original_len {
                let _ = fs::remove_file(&tmp);
                return Err(JournalError::Inconsistent {
                    path: path.clone(),
                    offset: new_len.min(original_len),
                    seq: None,
                    reason: format!(
                        "rewritten segment is {new_len} bytes, the original {original_len}"
                    ),
                });
            }
            file.sync_all().at("fsync", &tmp)?;
            fs::rename(&tmp, &path).at("rename", &path)?;
            fsutil::fsync_dir(&self.dir)?;
            if active.path == path {
                // The writer's descriptor still points at the replaced file.
                *active = open_append(&path)?;
            }
        }
        Ok(count)
    }

    /// Reads the record at `location` (as recorded by the index), checking its framing.
    pub fn read_at(&self, location: Location) -> Result<Record, JournalError> {
        let path = self.dir.join(segment::segment_file_name(location.segment));
        let mut reader = SegmentReader::open_at(&path, location.offset)?;
        match reader.next_record()? {
            Some((off, raw)) => decode_record(&path, off, raw),
            None => Err(JournalError::Inconsistent {
                path,
                offset: location.offset,
                seq: None,
                reason: "no record at this offset".into(),
            }),
        }
    }

    /// Iterates durable records from `start` (a record location, or the journal's start
    /// for `None`) up to, not including, entry `end`.
    pub fn iter(&self, start: Option<Location>, end: u64) -> Result<JournalIter, JournalError> {
        JournalIter::new(&self.dir, start, end)
    }
}

/// Streams records across segments in order, checking framing, sequence and chain links.
pub struct JournalIter {
    segments: std::vec::IntoIter<(u64, PathBuf)>,
    reader: Option<SegmentReader>,
    /// First sequence number declared by a segment just opened, until its first record.
    segment_first: Option<u64>,
    end: u64,
    next_seq: Option<u64>,
    prev_leaf: Option<Digest>,
}

impl JournalIter {
    /// Iterates the journal in `dir` from `start` up to entry `end` (exclusive).
    pub fn new(dir: &Path, start: Option<Location>, end: u64) -> Result<JournalIter, JournalError> {
        let mut segments = list_segments(dir)?;
        let mut reader = None;
        if let Some(loc) = start {
            segments.retain(|(first, _)| *first >= loc.segment);
            if let Some((first, path)) = segments.first().cloned() {
                if first == loc.segment {
                    segments.remove(0);
                    reader = Some(SegmentReader::open_at(&path, loc.offset)?);
                }
            }
        }
        let (next_seq, prev_leaf) = match start {
            None => (Some(0), Some(Digest::ZERO)),
            Some(_) => (None, None),
        };
        Ok(JournalIter {
            segments: segments.into_iter(),
            reader,
            segment_first: None,
            end,
            next_seq,
            prev_leaf,
        })
    }

    fn next_record(&mut self) -> Result<Option<Record>, JournalError> {
        loop {
            if self.next_seq.is_some_and(|n| n >= self.end) {
                return Ok(None);
            }
            let reader = match &mut self.reader {
                Some(r) => r,
                None => match self.segments.next() {
                    Some((_, path)) => {
                        let r = SegmentReader::open(&path)?;
                        self.segment_first = Some(r.first_seq());
                        self.reader.insert(r)
                    }
                    None => return Ok(None),
                },
            };
            let path = reader.path().to_path_buf();
            match reader.next_record()? {
                None => {
                    self.reader = None;
                    continue;
                }
                Some((off, raw)) => {
                    let rec = decode_record(&path, off, raw)?;
                    if rec.entry.seq >= self.end {
                        return Ok(None);
                    }
                    let bad = |reason: String| JournalError::Inconsistent {
                        path: path.clone(),
                        offset: off,
                        seq: Some(rec.entry.seq),
                        reason,
                    };
                    if let Some(n) = self.next_seq {
                        if rec.entry.seq != n {
                            return Err(bad(format!(
                                "sequence number {} where {n} was expected",
                                rec.entry.seq
                            )));
                        }
                    }
                    if let Some(first) = self.segment_first.take() {
                        if rec.entry.seq != first {
                            return Err(bad(format!(
                                "first entry of a segment that declares it starts at entry {first}"
                            )));
                        }
                    }
                    if let Some(p) = self.prev_leaf {
                        if rec.entry.prev != p {
                            return Err(bad(format!(
                                "previous-entry hash {} does not match the leaf hash {p} of entry {}",
                                rec.entry.prev,
                                rec.entry.seq.saturating_sub(1)
                            )));
                        }
                    }
                    self.next_seq = Some(rec.entry.seq + 1);
                    self.prev_leaf = Some(rec.leaf);
                    return Ok(Some(rec));
                }
            }
        }
    }
}

impl Iterator for JournalIter {
    type Item = Result<Record, JournalError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                // Stop after the first error: what follows cannot be placed in the chain.
                self.end = 0;
                self.next_seq = Some(0);
                Some(Err(e))
            }
        }
    }
}
