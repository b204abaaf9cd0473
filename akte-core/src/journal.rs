//! Journal records and the types every journal backend shares.
//!
//! The journal is the truth: an append-only, hash-chained list of entries per tenant
//! ([`crate::entry`]), each with the salted records attached to it. The seam a backend
//! implements is [`crate::backend::JournalBackend`]; the embedded backend's segment files
//! are in [`crate::embedded::journal`].

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, TimeZone, Utc};

use crate::backend::{FaultKind, IoFailure};
use crate::digest::Digest;
pub use crate::entry::Attachment;
use crate::entry::{Entry, EntryDraft, EntryError, PayloadKind};

/// Where a record lives, as the backend that stored it says: in the embedded backend the
/// segment (named by its first sequence number) and byte offset. Other backends give it
/// their own meaning; the index stores it and hands it back to the same journal.
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
    /// An I/O operation failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// Stored journal bytes could not be read back (damaged framing, a record cut short).
    #[error("{detail}")]
    Damaged {
        /// Where, as the backend names it.
        place: String,
        /// What is wrong, with the place and offset.
        detail: String,
    },
    /// The journal's history is inconsistent; it will not be opened or repaired silently.
    #[error("journal {place} is inconsistent at byte {offset}{}: {reason}", seq.map(|s| format!(" (entry {s})")).unwrap_or_default())]
    Inconsistent {
        /// Where, as the backend names it (a segment file, a table).
        place: String,
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
    /// An earlier write failed; the journal accepts nothing until it is opened again
    /// (the engine does that by itself once the cause is gone).
    #[error("journal {place} accepts no writes after a failed write ({reason})")]
    Fenced {
        /// The journal, as the backend names it.
        place: String,
        /// The original failure.
        reason: String,
        /// Its kind (a full disk, an I/O error).
        cause: FaultKind,
    },
    /// A sequence number beyond the journal's end was asked for.
    #[error("entry {seq} does not exist (the journal holds {len} entries)")]
    OutOfRange {
        /// Requested entry.
        seq: u64,
        /// Number of durable entries.
        len: u64,
    },
    /// An entry sealed elsewhere (a migration) does not continue this journal.
    #[error("entry {seq} does not continue the journal: {reason}")]
    Misfit {
        /// The entry's sequence number.
        seq: u64,
        /// Why not.
        reason: String,
    },
    /// The backend failed in a way of its own (a database error, a lost connection).
    #[error("journal: {reason}")]
    Backend {
        /// What happened.
        reason: String,
        /// Its kind.
        kind: FaultKind,
    },
}

impl JournalError {
    /// What kind of failure it is.
    pub fn kind(&self) -> FaultKind {
        match self {
            JournalError::Io(e) => e.kind(),
            JournalError::Damaged { .. } | JournalError::Inconsistent { .. } => FaultKind::Corrupt,
            JournalError::InvalidEntry(_) | JournalError::AttachmentMismatch(_) => FaultKind::Other,
            JournalError::Misfit { .. } => FaultKind::Conflict,
            JournalError::Fenced { cause, .. } => match cause {
                FaultKind::StorageFull => FaultKind::StorageFull,
                _ => FaultKind::Unavailable,
            },
            JournalError::OutOfRange { .. } => FaultKind::NotFound,
            JournalError::Backend { kind, .. } => *kind,
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
    /// An empty or torn last segment that was removed (left by a crash while rotating),
    /// as the backend names it.
    pub removed_segment: Option<String>,
    /// A torn tail found and left in place by a read-only open: where (as the backend
    /// names it), at which byte offset, how many bytes. On a live store it may be a record
    /// still being written.
    pub torn_tail: Option<(String, u64, u64)>,
}

/// Every inline payload has exactly one attachment with its digest, whose bytes (unless
/// redacted) hash to that digest and have the declared size; no other attachments.
pub fn check_attachments(entry: &Entry, attachments: &[Attachment]) -> Result<(), String> {
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

/// Checks that `entry`, sealed elsewhere (copied from another backend), continues a
/// journal whose next entry is `seq`, whose last leaf is `prev` and whose last time is
/// `last_micros`, and that its attachments match it. Returns its time in microseconds.
pub fn check_sealed(
    entry: &Entry,
    seq: u64,
    prev: Digest,
    last_micros: i64,
    attachments: &[Attachment],
) -> Result<i64, JournalError> {
    let misfit = |reason: String| JournalError::Misfit {
        seq: entry.seq,
        reason,
    };
    if entry.seq != seq {
        return Err(misfit(format!("the journal's next entry is {seq}")));
    }
    if entry.prev != prev {
        return Err(misfit(format!(
            "it links to {}, the journal's last leaf is {prev}",
            entry.prev
        )));
    }
    let micros = entry.time.timestamp_micros();
    if seq > 0 && micros < last_micros {
        return Err(misfit("its time is before the last entry's".into()));
    }
    check_attachments(entry, attachments).map_err(JournalError::AttachmentMismatch)?;
    Ok(micros)
}

/// Makes the entry that follows an entry with leaf hash `prev` and time `last_micros`: it
/// gets sequence number `seq`, the chain link `prev` and the current time, never earlier
/// than the entry before whatever the wall clock does. Checks the draft and that the
/// attachments match its inline payloads. Returns the entry and its time in microseconds.
pub fn seal_entry(
    draft: EntryDraft,
    seq: u64,
    prev: Digest,
    last_micros: i64,
    attachments: &[Attachment],
) -> Result<(Entry, i64), JournalError> {
    draft.validate()?;
    let now = Utc::now().timestamp_micros().max(last_micros);
    let time: DateTime<Utc> = Utc.timestamp_micros(now).single().unwrap_or_else(Utc::now);
    let entry = Entry {
        seq,
        time,
        prev,
        actor: draft.actor,
        kind: draft.kind,
        object: draft.object,
        payloads: draft.payloads,
    };
    check_attachments(&entry, attachments).map_err(JournalError::AttachmentMismatch)?;
    Ok((entry, now))
}
