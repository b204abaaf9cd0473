//! The journal seam: the order of entries, durability, reads and redaction.

use crate::backend::content::Destruction;
use crate::digest::Digest;
use crate::entry::{Attachment, Entry, EntryDraft};
use crate::journal::{JournalError, JournalStats, Location, Record, Recovery, Ticket};

/// The exclusive right to append to one tenant's journal, held until dropped.
///
/// While a session is held nobody else appends to the tenant, in this process or (for a
/// shared backend) in any other: the engine checks a write against the index and appends
/// it under one session, so no other write comes between the check and the append.
pub trait AppendSession {
    /// The sequence number the next entry gets.
    fn next_seq(&self) -> u64;

    /// Leaf hash of the last entry (zero for an empty journal): the next entry's chain link.
    fn last_leaf(&self) -> Digest;

    /// Assigns sequence number, time (never earlier than the entry before) and chain link
    /// to `draft` and queues it with its attachments. The entry is not durable until
    /// [`JournalBackend::wait_durable`] returns for it.
    fn enqueue(
        &mut self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError>;

    /// Queues an entry sealed elsewhere, unchanged (a migration between backends): it must
    /// continue the journal (see [`crate::journal::check_sealed`]).
    fn enqueue_sealed(
        &mut self,
        entry: Entry,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError>;
}

/// What a verification scan of the journal finds, in order.
#[derive(Debug)]
pub enum JournalScanItem {
    /// A record that reads back well framed, with where it is stored.
    Record {
        /// The record.
        record: Record,
        /// Where it is stored, as the backend names it.
        place: String,
    },
    /// A unit of storage starts here (a segment file) and says which entry comes first.
    Boundary {
        /// Where.
        place: String,
        /// The first sequence number it declares.
        first_seq: u64,
    },
    /// Something could not be read. The scan goes on after it where it can.
    Damaged {
        /// Where.
        place: String,
        /// What is wrong.
        reason: String,
        /// How the damage counts in the sequence of entries.
        counts: DamageCount,
    },
}

/// How a damaged place counts in the sequence of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageCount {
    /// Not as an entry (an unreadable file: what it held is missing from the scan).
    Nothing,
    /// As one entry whose leaf hash is unknown (a record whose framing is damaged).
    UnknownEntry,
    /// As one entry with this leaf hash (framed well, but the entry does not decode).
    Entry(Digest),
}

/// Where a tenant's journal lives.
pub trait JournalBackend: Send + Sync {
    /// Takes the exclusive right to append; see [`AppendSession`].
    fn begin(&self) -> Result<Box<dyn AppendSession + '_>, JournalError>;

    /// Blocks until entry `seq` (enqueued before) is durable. Writers waiting at the same
    /// time share one flush or commit (group commit). An error means the entry may not
    /// be durable: it is not acknowledged.
    fn wait_durable(&self, seq: u64) -> Result<(), JournalError>;

    /// Number of durable entries: entries `0..durable_len()` are stored for good.
    fn durable_len(&self) -> Result<u64, JournalError>;

    /// Reads the record at `location` (as the index recorded it).
    fn read_at(&self, location: Location) -> Result<Record, JournalError>;

    /// Streams durable records from just after `start` (a record location; `None` for the
    /// beginning; the record at `start` itself comes first) up to entry `end`, checking
    /// sequence numbers and chain links. Stops at the first error.
    fn iter(
        &self,
        start: Option<Location>,
        end: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<Record, JournalError>> + Send + '_>, JournalError>;

    /// Streams what is stored, from just after the record at `after` (its location and
    /// sequence number; `None`: from the beginning) up to entry `end`, reporting damage and
    /// going on after it where the storage allows (for verification, which must find every
    /// problem, not only the first). Checks framing only: sequence numbers and chain links
    /// are the caller's to check.
    fn scan(
        &self,
        after: Option<(Location, u64)>,
        end: u64,
    ) -> Box<dyn Iterator<Item = JournalScanItem> + Send + '_>;

    /// Removes the bytes of the given attachments (destruction), keeping entries, digests
    /// and every record's location. Returns how many were redacted (already redacted ones
    /// count, so an interrupted destruction can be completed).
    fn redact(
        &self,
        targets: &[(Location, Digest)],
        authority: Destruction,
    ) -> Result<usize, JournalError>;

    /// What recovery did when the journal was opened.
    fn recovery(&self) -> Recovery;

    /// Why the journal refuses writes after a failure, if it does (the engine then opens
    /// the tenant again once the cause is gone).
    fn fenced(&self) -> Option<String> {
        None
    }

    /// Counters.
    fn stats(&self) -> &JournalStats;

    /// Where the journal is stored, as the backend names it (for messages).
    fn describe(&self) -> String;

    /// Where the record at `location` is stored, as the backend names it (for messages).
    fn describe_location(&self, location: Location) -> String;
}
