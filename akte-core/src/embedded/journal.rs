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
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::backend::content::Destruction;
use crate::backend::journal::DamageCount;
use crate::backend::{AppendSession, FaultKind, JournalBackend, JournalScanItem};
use crate::digest::Digest;
use crate::embedded::content::ContentStore;
use crate::embedded::fsutil::{self, IoContext, IoFailure};
use crate::embedded::segment::{
    self, Attachment, RawRecord, SegmentError, SegmentReader, SEGMENT_HEADER_LEN,
};
use crate::entry::{Entry, EntryDraft};
use crate::journal::{
    check_attachments, check_sealed, seal_entry, JournalError, JournalStats, Location, Record,
    Recovery, Ticket,
};
use crate::merkle::leaf_hash;

/// What an enqueue seals: a new draft, or an entry sealed elsewhere (a migration).
enum Sealing {
    Draft(EntryDraft),
    Sealed(Entry),
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
    /// Why writes are refused, and the kind of the failure.
    fenced: Option<(String, FaultKind)>,
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
    /// Held by an append session (crate::backend::AppendSession).
    writer: Mutex<()>,
    /// Opened read-only ([`Journal::open_read_only`]): appends and redaction are refused,
    /// and the durable length follows what another process appends.
    read_only: bool,
    /// The tenant's content store, whose queued pack records the leader flushes before it
    /// writes entries ([`Journal::flushing_content_first`]).
    content_first: Option<Arc<ContentStore>>,
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
    fsutil::sync_all(&file, &path)?;
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
                    place: path.display().to_string(),
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
                        place: path.display().to_string(),
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
        place: path.display().to_string(),
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
            place: path.display().to_string(),
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
                    recovery.removed_segment = Some(path.display().to_string());
                    segments.pop();
                }
            }
        }

        // Header of every segment, and the names agree with the headers and ascend.
        for (first, path) in &segments {
            let r = SegmentReader::open(path)?;
            if r.first_seq() != *first {
                return Err(JournalError::Inconsistent {
                    place: path.display().to_string(),
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
                    fsutil::sync_all(&f, path)?;
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
                        place: path.display().to_string(),
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
            writer: Mutex::new(()),
            read_only: false,
            content_first: None,
        })
    }

    /// Opens the journal in `dir` without writing anything (verification of a live store
    /// or of a copy). Nothing is cut, removed or created: a torn tail of the last segment
    /// is noted in [`Recovery::torn_tail`] and left in place, and an empty or torn last
    /// segment left by an interrupted segment change is not read. Damage that is not a
    /// torn tail refuses to open, as [`Journal::open`] does. The durable length is what
    /// the segments hold complete when asked (another process may be appending).
    pub fn open_read_only(dir: &Path, options: JournalOptions) -> Result<Journal, JournalError> {
        let mut segments = list_segments(dir)?;
        let mut recovery = Recovery::default();
        if segments.len() > 1 {
            if let Some((_, path)) = segments.last().cloned() {
                let len = fs::metadata(&path).at("stat", &path)?.len();
                let torn_header = len < SEGMENT_HEADER_LEN as u64
                    || (len == SEGMENT_HEADER_LEN as u64 && SegmentReader::open(&path).is_err());
                if torn_header {
                    recovery.torn_tail = Some((path.display().to_string(), 0, len));
                    segments.pop();
                }
            }
        }
        for (first, path) in &segments {
            let r = SegmentReader::open(path)?;
            if r.first_seq() != *first {
                return Err(JournalError::Inconsistent {
                    place: path.display().to_string(),
                    offset: 0,
                    seq: None,
                    reason: format!(
                        "header says the segment starts at entry {}, its name says {first}",
                        r.first_seq()
                    ),
                });
            }
        }
        let Some((tail_segment, tail_path)) = segments.last().cloned() else {
            return Err(JournalError::Inconsistent {
                place: dir.display().to_string(),
                offset: 0,
                seq: None,
                reason: "the journal has no segment file".into(),
            });
        };
        let scan = scan_segment(&tail_path, true)?;
        if let Some(torn) = scan.torn_at {
            let len = fs::metadata(&tail_path).at("stat", &tail_path)?.len();
            recovery.torn_tail = Some((tail_path.display().to_string(), torn, len - torn));
        }
        let (next_seq, last_leaf, last_micros) = match scan.last {
            Some((seq, leaf, micros)) => (seq + 1, leaf, micros),
            None if segments.len() == 1 => (0, Digest::ZERO, i64::MIN),
            None => {
                let (_, prev_path) = &segments[segments.len() - 2];
                match scan_segment(prev_path, false)?.last {
                    Some((seq, leaf, micros)) => (seq + 1, leaf, micros),
                    None => (tail_segment, Digest::ZERO, i64::MIN),
                }
            }
        };
        // Never written to: the handle only keeps the type of a writable journal.
        let file = File::open(&tail_path).at("open", &tail_path)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(State {
                next_seq,
                last_leaf,
                last_micros,
                tail_segment,
                tail_len: scan.end_offset,
                pending: Vec::new(),
                pending_last_seq: None,
                durable_len: next_seq,
                flushing: false,
                fenced: None,
            }),
            durable: Condvar::new(),
            active: Mutex::new(ActiveSegment {
                file,
                path: tail_path,
            }),
            stats: JournalStats::default(),
            recovery,
            writer: Mutex::new(()),
            read_only: true,
            content_first: None,
        })
    }

    /// Read-only: counts the complete, chained records appended since the journal was last
    /// read, across new segments, and stops before anything incomplete (a record another
    /// process is writing) or inconsistent (left for verification's scan to report).
    fn follow_appends(&self, st: &mut State) {
        loop {
            let path = self.dir.join(segment::segment_file_name(st.tail_segment));
            let Ok(mut reader) = SegmentReader::open_at(&path, st.tail_len) else {
                return;
            };
            while let Ok(Some((off, raw))) = reader.next_record() {
                match decode_record(&path, off, raw) {
                    Ok(rec) if rec.entry.seq == st.next_seq && rec.entry.prev == st.last_leaf => {
                        st.next_seq += 1;
                        st.last_leaf = rec.leaf;
                        st.last_micros = rec.entry.time.timestamp_micros();
                        st.tail_len = reader.offset();
                    }
                    _ => {
                        st.durable_len = st.next_seq;
                        return;
                    }
                }
            }
            st.durable_len = st.next_seq;
            // A writer starts the next segment at the next entry once this one is full.
            let next = self.dir.join(segment::segment_file_name(st.next_seq));
            match SegmentReader::open(&next) {
                Ok(r) if r.first_seq() == st.next_seq && st.next_seq != st.tail_segment => {
                    st.tail_segment = st.next_seq;
                    st.tail_len = SEGMENT_HEADER_LEN as u64;
                }
                _ => return,
            }
        }
    }

    fn refuse_if_read_only(&self, op: &'static str) -> Result<(), JournalError> {
        if !self.read_only {
            return Ok(());
        }
        if let Some(fenced) = &lock(&self.state).fenced {
            return Err(self.fenced(fenced));
        }
        Err(fsutil::read_only(op, &self.dir).into())
    }

    /// Read-only: answers appends as fenced by `reason` of `kind` from now on (a tenant
    /// served for reading while its storage cannot take writes), rather than as read-only.
    pub(crate) fn refuse_as_fenced(&self, reason: String, kind: FaultKind) {
        if self.read_only {
            lock(&self.state).fenced = Some((reason, kind));
        }
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of durable entries (entries `0..durable_len()` are on disk for good).
    pub fn durable_len(&self) -> u64 {
        let mut st = lock(&self.state);
        if self.read_only {
            self.follow_appends(&mut st);
        }
        st.durable_len
    }

    /// Number of entries enqueued so far, durable or not.
    pub fn enqueued_len(&self) -> u64 {
        lock(&self.state).next_seq
    }

    /// Leaf hash of the last enqueued entry (zero for an empty journal).
    pub fn last_leaf(&self) -> Digest {
        lock(&self.state).last_leaf
    }

    /// Makes every flush write the content queued in `content`
    /// ([`ContentStore::put_bytes_for_entry`]) durable before the entries: an entry is
    /// never on disk before the bytes it refers to, and a writer that stored its bytes
    /// that way waits for this one group commit only. A failed content flush fails the
    /// journal's flush too (and fences it), since the entries may refer to what was lost.
    pub fn flushing_content_first(mut self, content: Arc<ContentStore>) -> Journal {
        self.content_first = Some(content);
        self
    }

    /// Assigns sequence number, time and chain link to `draft`, frames it with its
    /// attachments and queues it for the next group flush. The entry is not durable until
    /// [`Journal::wait_durable`] returns for it.
    pub fn enqueue(
        &self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        self.enqueue_as(Sealing::Draft(draft), attachments)
    }

    /// Queues an entry sealed elsewhere, unchanged (a migration); it must continue the
    /// journal.
    pub fn enqueue_sealed(
        &self,
        entry: Entry,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        self.enqueue_as(Sealing::Sealed(entry), attachments)
    }

    fn enqueue_as(
        &self,
        what: Sealing,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        self.refuse_if_read_only("append to")?;
        let mut st = lock(&self.state);
        if let Some(reason) = &st.fenced {
            return Err(self.fenced(reason));
        }
        let (entry, now) = match what {
            Sealing::Draft(draft) => seal_entry(
                draft,
                st.next_seq,
                st.last_leaf,
                st.last_micros,
                &attachments,
            )?,
            Sealing::Sealed(entry) => {
                let now = check_sealed(
                    &entry,
                    st.next_seq,
                    st.last_leaf,
                    st.last_micros,
                    &attachments,
                )?;
                (entry, now)
            }
        };
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
                st.fenced = Some((reason.clone(), FaultKind::Other));
                return Err(self.fenced(&(reason, FaultKind::Other)));
            };
            st.flushing = true;
            drop(st);
            let result = self
                .flush_content()
                .and_then(|()| self.write_chunks(&chunks, last));
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
                    st.fenced = Some((e.to_string(), e.kind()));
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

    fn fenced(&self, (reason, cause): &(String, FaultKind)) -> JournalError {
        JournalError::Fenced {
            place: self.dir.display().to_string(),
            reason: reason.clone(),
            cause: *cause,
        }
    }

    /// Why the journal refuses writes, if it does.
    pub fn fenced_reason(&self) -> Option<String> {
        lock(&self.state).fenced.as_ref().map(|(r, _)| r.clone())
    }

    /// The content the entries about to be written may refer to, made durable first.
    /// Every such object was queued before its entry, and the entries were taken from the
    /// queue before this runs, so flushing what is queued now covers them all.
    fn flush_content(&self) -> Result<(), JournalError> {
        match &self.content_first {
            Some(content) => content.flush_queued().map_err(|e| JournalError::Backend {
                reason: format!("content the entries refer to could not be made durable: {e}"),
                kind: e.kind(),
            }),
            None => Ok(()),
        }
    }

    fn write_chunks(&self, chunks: &[PendingChunk], _last: u64) -> Result<u64, JournalError> {
        let mut active = lock(&self.active);
        let mut written = 0u64;
        for chunk in chunks {
            if let Some(first) = chunk.new_segment {
                // Records written to the old segment must be durable before the new one
                // appears, so that the journal on disk is always a prefix of history.
                fsutil::sync_data(&active.file, &active.path)?;
                *active = create_segment(&self.dir, first)?;
            }
            let path = active.path.clone();
            active.file.write_all(&chunk.bytes).at("write", &path)?;
            written += chunk.bytes.len() as u64;
        }
        let path = active.path.clone();
        fsutil::sync_data(&active.file, &path)?;
        Ok(written)
    }

    /// Removes the bytes of the given attachments (destruction), rewriting each affected
    /// segment into a temporary file that replaces it atomically. Records keep their size
    /// and offsets, entries and hashes stay as they were. Flushes wait meanwhile. Only the
    /// records model's destruction calls this, after the entry that records the destruction
    /// is durable. Returns how many attachments were redacted (already redacted ones count
    /// too, so that an interrupted destruction can be completed).
    fn redact_records(&self, targets: &[(Location, Digest)]) -> Result<usize, JournalError> {
        self.refuse_if_read_only("redact")?;
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
                            place: path.display().to_string(),
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
            let file = out
                .into_inner()
                .map_err(|e| IoFailure::new("write", tmp.display().to_string(), e.into_error()))?;
            let new_len = file.metadata().at("stat", &tmp)?.len();
            if new_len != original_len {
                let _ = fs::remove_file(&tmp);
                return Err(JournalError::Inconsistent {
                    place: path.display().to_string(),
                    offset: new_len.min(original_len),
                    seq: None,
                    reason: format!(
                        "rewritten segment is {new_len} bytes, the original {original_len}"
                    ),
                });
            }
            fsutil::sync_all(&file, &tmp)?;
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
                place: path.display().to_string(),
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
                        place: path.display().to_string(),
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

/// The embedded journal's append session: the journal's writer lock.
struct FileSession<'a> {
    journal: &'a Journal,
    _writer: MutexGuard<'a, ()>,
}

impl AppendSession for FileSession<'_> {
    fn next_seq(&self) -> u64 {
        self.journal.enqueued_len()
    }

    fn last_leaf(&self) -> Digest {
        self.journal.last_leaf()
    }

    fn enqueue(
        &mut self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        self.journal.enqueue(draft, attachments)
    }

    fn enqueue_sealed(
        &mut self,
        entry: Entry,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        self.journal.enqueue_sealed(entry, attachments)
    }
}

impl JournalBackend for Journal {
    fn begin(&self) -> Result<Box<dyn AppendSession + '_>, JournalError> {
        // Also read-only: the engine reads under a session what must not move meanwhile;
        // enqueueing is what a read-only journal refuses.
        Ok(Box::new(FileSession {
            journal: self,
            _writer: lock(&self.writer),
        }))
    }

    fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        Journal::wait_durable(self, seq)
    }

    fn durable_len(&self) -> Result<u64, JournalError> {
        Ok(Journal::durable_len(self))
    }

    fn read_at(&self, location: Location) -> Result<Record, JournalError> {
        Journal::read_at(self, location)
    }

    fn iter(
        &self,
        start: Option<Location>,
        end: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<Record, JournalError>> + Send + '_>, JournalError>
    {
        Ok(Box::new(Journal::iter(self, start, end)?))
    }

    fn scan(
        &self,
        after: Option<(Location, u64)>,
        end: u64,
    ) -> Box<dyn Iterator<Item = JournalScanItem> + Send + '_> {
        Box::new(Scan::new(&self.dir, after, end))
    }

    fn redact(
        &self,
        targets: &[(Location, Digest)],
        _authority: Destruction,
    ) -> Result<usize, JournalError> {
        self.redact_records(targets)
    }

    fn recovery(&self) -> Recovery {
        self.recovery.clone()
    }

    fn fenced(&self) -> Option<String> {
        self.fenced_reason()
    }

    fn stats(&self) -> &JournalStats {
        &self.stats
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn describe_location(&self, location: Location) -> String {
        format!(
            "{} (record at byte {})",
            self.dir
                .join(segment::segment_file_name(location.segment))
                .display(),
            location.offset
        )
    }
}

/// A verification scan over the segment files: every record, and every damaged place,
/// going on after damage at the next well-framed record.
struct Scan {
    segments: std::vec::IntoIter<(u64, PathBuf)>,
    /// Resume just after this record (its location and sequence number).
    after: Option<(Location, u64)>,
    reader: Option<(PathBuf, SegmentReader)>,
    /// Entries counted so far (records and damaged records), as a sequence number.
    expected: u64,
    end: u64,
    /// Reported before anything else (the directory could not be listed).
    pending: Option<JournalScanItem>,
}

impl Scan {
    fn new(dir: &Path, after: Option<(Location, u64)>, end: u64) -> Scan {
        let (segments, pending) = match list_segments(dir) {
            Ok(s) => (s, None),
            Err(e) => (
                Vec::new(),
                Some(JournalScanItem::Damaged {
                    place: dir.display().to_string(),
                    reason: e.to_string(),
                    counts: DamageCount::Nothing,
                }),
            ),
        };
        Scan {
            segments: segments.into_iter(),
            after,
            reader: None,
            expected: after.map_or(0, |(_, seq)| seq + 1),
            end,
            pending,
        }
    }

    fn damaged(path: &Path, reason: String, counts: DamageCount) -> JournalScanItem {
        JournalScanItem::Damaged {
            place: path.display().to_string(),
            reason,
            counts,
        }
    }

    /// Opens the next segment to read; `Some` item to report first.
    fn open_next(&mut self) -> Option<Option<JournalScanItem>> {
        let (first, path) = self.segments.next()?;
        match self.after {
            Some((loc, _)) if first < loc.segment => Some(None),
            Some((loc, _)) if first == loc.segment => {
                let opened = SegmentReader::open_at(&path, loc.offset).and_then(|mut r| {
                    r.next_record()?;
                    Ok(r)
                });
                match opened {
                    Ok(r) => {
                        self.reader = Some((path, r));
                        Some(None)
                    }
                    Err(e) => Some(Some(Self::damaged(
                        &path,
                        e.to_string(),
                        DamageCount::Nothing,
                    ))),
                }
            }
            _ => match SegmentReader::open(&path) {
                Ok(r) => {
                    let first_seq = r.first_seq();
                    let place = path.display().to_string();
                    self.reader = Some((path, r));
                    Some(Some(JournalScanItem::Boundary { place, first_seq }))
                }
                Err(e) => Some(Some(Self::damaged(
                    &path,
                    e.to_string(),
                    DamageCount::Nothing,
                ))),
            },
        }
    }
}

impl Iterator for Scan {
    type Item = JournalScanItem;

    fn next(&mut self) -> Option<JournalScanItem> {
        if let Some(item) = self.pending.take() {
            return Some(item);
        }
        loop {
            if self.expected >= self.end {
                return None;
            }
            let Some((path, reader)) = &mut self.reader else {
                match self.open_next()? {
                    Some(item) => return Some(item),
                    None => continue,
                }
            };
            let offset = reader.offset();
            match reader.next_record() {
                Ok(None) => {
                    self.reader = None;
                }
                Err(e) => {
                    let at = match &e {
                        SegmentError::Damaged { offset, .. }
                        | SegmentError::Malformed { offset, .. }
                        | SegmentError::Incomplete { offset, .. } => *offset,
                        SegmentError::Io { .. } => offset,
                    };
                    let path = path.clone();
                    // The damaged record counts as one entry so later numbering stays
                    // right; reading resumes at the next well-framed record, if any.
                    let item = Self::damaged(&path, e.to_string(), DamageCount::UnknownEntry);
                    match resync(&path, at) {
                        Some(r) => {
                            self.expected += 1;
                            self.reader = Some((path, r));
                        }
                        None => self.reader = None,
                    }
                    return Some(item);
                }
                Ok(Some((_, raw))) => {
                    let leaf = leaf_hash(&raw.entry_bytes);
                    let path = path.clone();
                    self.expected += 1;
                    return Some(match decode_record(&path, offset, raw) {
                        Ok(record) => JournalScanItem::Record {
                            record,
                            place: path.display().to_string(),
                        },
                        Err(e) => Self::damaged(&path, e.to_string(), DamageCount::Entry(leaf)),
                    });
                }
            }
        }
    }
}

/// After damage at `offset`, finds the next well-framed record and opens a reader there.
fn resync(path: &Path, offset: u64) -> Option<SegmentReader> {
    let bytes = fs::read(path).ok()?;
    let from = (offset as usize + 1).min(bytes.len());
    let pos = segment::contains_valid_record(&bytes[from..])?;
    SegmentReader::open_at(path, (from + pos) as u64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(n: u64) -> EntryDraft {
        EntryDraft {
            actor: "clerk".into(),
            kind: "test.entry".into(),
            object: format!("object-{n}"),
            payloads: Vec::new(),
        }
    }

    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_flush_writes_the_content_queued_for_its_entries_first() {
        let dir = tempfile::tempdir().unwrap();
        let content = Arc::new(ContentStore::open(&dir.path().join("content")).unwrap());
        let jdir = dir.path().join("journal");
        fs::create_dir(&jdir).unwrap();
        let j = Journal::open(&jdir, JournalOptions::default())
            .unwrap()
            .flushing_content_first(content.clone());
        let packed = || -> u64 {
            fs::read_dir(dir.path().join("content/packs"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        let before = packed();
        let put = content
            .put_bytes_for_entry(&b"a letter ".repeat(500), None, None)
            .unwrap();
        let ticket = j.enqueue(draft(0), Vec::new()).unwrap();
        // Queued with the entry, written by the entry's flush.
        assert_eq!(packed(), before);
        j.wait_durable(ticket.entry.seq).unwrap();
        assert_eq!(packed(), before + put.stored_size);
        // A journal without content to flush first writes its entries as before.
        j.append(draft(1), Vec::new()).unwrap();
        assert_eq!(packed(), before + put.stored_size);
    }

    #[test]
    fn a_read_only_open_leaves_a_torn_tail_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        for n in 0..3 {
            j.append(draft(n), Vec::new()).unwrap();
        }
        drop(j);
        let (_, seg) = list_segments(dir.path()).unwrap().pop().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&[0xA5; 9])
            .unwrap();
        let before = files(dir.path());

        let ro = Journal::open_read_only(dir.path(), JournalOptions::default()).unwrap();
        assert_eq!(ro.durable_len(), 3);
        assert_eq!(
            ro.recovery().torn_tail,
            Some((seg.display().to_string(), len, 9))
        );
        assert_eq!(ro.recovery().truncated_bytes, 0);
        assert_eq!(ro.iter(None, 3).unwrap().count(), 3);
        let refused = ro.append(draft(3), Vec::new()).unwrap_err();
        assert!(refused.to_string().contains("read-only"), "{refused}");
        let mut session = JournalBackend::begin(&ro).unwrap();
        assert!(session.enqueue(draft(3), Vec::new()).is_err());
        drop(session);
        ro.refuse_as_fenced("no space".into(), FaultKind::StorageFull);
        let fenced = ro.append(draft(3), Vec::new()).unwrap_err();
        assert_eq!(fenced.kind(), FaultKind::StorageFull, "{fenced}");
        drop(ro);
        assert_eq!(
            files(dir.path()),
            before,
            "a read-only open changed the journal"
        );

        // Opening for writing cuts it.
        let j = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        assert_eq!(j.recovery().truncated_bytes, 9);
    }

    #[test]
    fn a_read_only_journal_follows_what_a_writer_appends_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions {
            segment_max_bytes: 400,
        };
        let w = Journal::open(dir.path(), options.clone()).unwrap();
        w.append(draft(0), Vec::new()).unwrap();
        let ro = Journal::open_read_only(dir.path(), options).unwrap();
        assert_eq!(ro.durable_len(), 1);
        for n in 1..20 {
            w.append(draft(n), Vec::new()).unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() > 2);
        assert_eq!(ro.durable_len(), 20);
        let leaves: Vec<_> = ro
            .iter(None, 20)
            .unwrap()
            .map(|r| r.unwrap().leaf)
            .collect();
        assert_eq!(leaves.len(), 20);
        assert_eq!(leaves[19], w.last_leaf());
        // A record being written (here: its first bytes) is not counted.
        let (_, seg) = list_segments(dir.path()).unwrap().pop().unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&segment::RECORD_MAGIC)
            .unwrap();
        assert_eq!(ro.durable_len(), 20);
    }

    #[test]
    fn a_read_only_open_refuses_what_is_not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(Journal::open_read_only(&missing, JournalOptions::default()).is_err());
        assert!(!missing.exists());
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(Journal::open_read_only(&empty, JournalOptions::default()).is_err());
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    }
}
