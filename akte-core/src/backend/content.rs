//! The content seam: document bytes by the SHA-256 of their original bytes.

use std::io::{self, Read};

use crate::backend::{FaultKind, IoFailure};
use crate::digest::Digest;

/// Highest zstd level accepted. Levels 20 to 22 ("ultra") use windows of up to 128 MiB,
/// which every reader would then have to allocate; the gain on documents is negligible.
pub const MAX_ZSTD_LEVEL: i32 = 19;

/// Proof that the caller is the records model's destruction, the only path allowed to
/// remove content or redact journal records (invariant: retention is law). Backends
/// outside this crate implement removal but cannot call it.
#[derive(Debug, Clone, Copy)]
pub struct Destruction(());

impl Destruction {
    /// Only code of this crate may remove what retention protects.
    pub(crate) fn authorised() -> Destruction {
        Destruction(())
    }
}

/// A reader over one stored object that checks what it returns.
///
/// When the stored bytes are exhausted it checks that their length and SHA-256 are the
/// object's; if not, the read that would have returned `Ok(0)` fails instead, so a caller
/// reading to the end never takes damaged content for good. Errors are `io::Error`s
/// wrapping a [`ContentError`] (recover it with [`ContentError::from_read_error`]).
pub trait ContentRead: Read + Send {
    /// Length of the original bytes.
    fn size(&self) -> u64;
    /// The digest the object is stored under.
    fn digest(&self) -> &Digest;
    /// Where the object is stored, as the backend names it (for messages).
    fn place(&self) -> String;
}

impl std::fmt::Debug for dyn ContentRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentRead")
            .field("digest", self.digest())
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

/// A problem with the structure of stored content that no single object's check finds
/// (a damaged pack file, a stray file), for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureProblem {
    /// Where, as the backend names it.
    pub place: String,
    /// Byte offset in it, where it applies.
    pub offset: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Where a tenant's document bytes live.
///
/// Puts are idempotent (the same bytes twice store one object) and durable when they
/// return. Reads verify length and digest. Nothing of another tenant is ever visible.
pub trait ContentBackend: Send + Sync {
    /// Stores what `reader` yields under its SHA-256, in bounded memory, checking it
    /// against the announced digest and size (a mismatch stores nothing). Durable on
    /// return.
    fn put(
        &self,
        reader: &mut dyn Read,
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError>;

    /// Stores bytes already in memory, as [`ContentBackend::put`] does; backends that batch
    /// small objects do it here.
    fn put_bytes(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let mut reader = data;
        self.put(&mut reader, expected_digest, expected_size)
    }

    /// Stores bytes an entry of this tenant's journal is about to refer to. Durable no
    /// later than the next journal entry appended after it returns: a backend that can
    /// make its journal's flush carry the content's flush first (the embedded one) may
    /// return before the bytes are durable, so that the writer waits for one flush, not
    /// two. Reads and [`ContentBackend::stat`] see the object at once. Callers that answer
    /// "stored" without appending an entry use [`ContentBackend::put_bytes`].
    fn put_bytes_for_entry(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        self.put_bytes(data, expected_digest, expected_size)
    }

    /// Opens the object for reading; see [`ContentRead`].
    fn get(&self, digest: &Digest) -> Result<Box<dyn ContentRead>, ContentError>;

    /// Size and encoding of the object, without reading it.
    fn stat(&self, digest: &Digest) -> Result<ObjectInfo, ContentError>;

    /// Whether the object is stored.
    fn contains(&self, digest: &Digest) -> Result<bool, ContentError> {
        match self.stat(digest) {
            Ok(_) => Ok(true),
            Err(ContentError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the object durably; returns whether it existed. Only destruction may.
    fn remove(&self, digest: &Digest, authority: Destruction) -> Result<bool, ContentError>;

    /// The digests of all stored objects (in no promised order; an object may come out
    /// twice if stored twice). Streams: memory does not grow with the store.
    fn list(&self) -> Box<dyn Iterator<Item = Result<Digest, ContentError>> + Send + '_>;

    /// Where the object for `digest` is (or would be) stored, for messages.
    fn describe(&self, digest: &Digest) -> String;

    /// Reads the whole object and checks length and digest; returns the length.
    fn verify_object(&self, digest: &Digest) -> Result<u64, ContentError> {
        let mut reader = self.get(digest)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ContentError::from_read_error(e, &reader.place())),
            }
        }
    }

    /// Structural problems of the stored content beyond single objects (for `verify`).
    fn check_structure(&self) -> Result<Vec<StructureProblem>, ContentError> {
        Ok(Vec::new())
    }

    /// Why the store refuses writes after a failure, if it does.
    fn fenced(&self) -> Option<String> {
        None
    }

    /// A torn tail opening cut from the stored content (a write interrupted by a crash,
    /// never acknowledged), or found and left in place when opened read-only: where, at
    /// which byte offset, and how many bytes.
    fn torn_tail(&self) -> Option<(String, u64, u64)> {
        None
    }

    /// Recreates whatever the backend derives from its stored content (the location
    /// index of pack files); returns how many objects it indexed.
    fn reindex(&self) -> Result<u64, ContentError> {
        Ok(0)
    }

    /// Removes what interrupted uploads left behind (not objects: partial uploads a crash
    /// or a failed connection left) that is older than `older_than`; returns how many
    /// were removed. Backends whose uploads are transactions, or are cleaned when the
    /// store opens, leave nothing behind.
    fn sweep_leftovers(&self, older_than: std::time::Duration) -> Result<u64, ContentError> {
        let _ = older_than;
        Ok(0)
    }
}

/// Checks a put's bytes against what the caller announced: the size first, then the
/// digest (for backends that hash before they store).
pub fn check_expected(
    digest: Digest,
    size: u64,
    expected_digest: Option<Digest>,
    expected_size: Option<u64>,
) -> Result<(), ContentError> {
    if let Some(expected) = expected_size.filter(|e| *e != size) {
        return Err(ContentError::SizeMismatch {
            expected,
            actual: size,
        });
    }
    if let Some(expected) = expected_digest.filter(|e| *e != digest) {
        return Err(ContentError::DigestMismatch {
            expected,
            actual: digest,
        });
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns how many bytes it read.
pub fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// How an object's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// The original bytes, unchanged (codec byte 0).
    Raw,
    /// One zstd frame (RFC 8878) that decodes to the original bytes (codec byte 1).
    Zstd,
}

impl Codec {
    /// The codec byte stored at offset 9 of the header.
    pub fn to_byte(self) -> u8 {
        match self {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        }
    }

    /// The codec for a header byte, if it is one this build knows.
    pub fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Lower-case name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of a content store.
///
/// Messages name the digest and the file concerned wherever there is one, so a log line is
/// enough to find the object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The file system failed (open, write, fsync, rename, ...).
    #[error(transparent)]
    Io(#[from] IoFailure),

    /// No object is stored under this digest.
    #[error("content object {digest} not found (expected at {place})")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
        /// Where the object would be, as the backend names it.
        place: String,
    },

    /// A stored object does not decode to the bytes its name promises.
    #[error("content object {digest} at {place} is corrupt: {reason}")]
    Corrupt {
        /// The digest the object is stored under.
        digest: Digest,
        /// Where it is stored, as the backend names it.
        place: String,
        /// What is wrong, in words.
        reason: String,
    },

    /// The input's SHA-256 differs from the one the caller announced; nothing was stored.
    #[error("content digest mismatch: expected {expected}, the input hashes to {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },

    /// The input's length differs from the one the caller announced; nothing was stored.
    ///
    /// Reading stops as soon as the input exceeds the announced length, so a runaway upload
    /// cannot fill the disk; `actual` is then the number of bytes received so far, a lower
    /// bound of the input's length.
    #[error(
        "content size mismatch: expected {expected} bytes, the input has {}{actual}",
        at_least(.expected, .actual)
    )]
    SizeMismatch {
        /// The announced length.
        expected: u64,
        /// The length received (see above when longer than expected).
        actual: u64,
    },

    /// The caller's reader failed; nothing was stored.
    #[error("reading the content to store failed after {received} bytes: {source}")]
    Read {
        /// Bytes read successfully before the failure.
        received: u64,
        /// The reader's error.
        #[source]
        source: io::Error,
    },

    /// zstd could not compress in memory (it failed to allocate its context).
    #[error("zstd compression failed: {source}")]
    Compress {
        /// zstd's error.
        #[source]
        source: io::Error,
    },

    /// A file or directory in `objects/` that is not a correctly named object.
    #[error("unexpected entry in the content store: {place}: {reason}")]
    Stray {
        /// The offending entry, as the backend names it.
        place: String,
        /// Why it does not belong.
        reason: String,
    },

    /// An earlier write failed; the store accepts no writes until it is opened again (the
    /// engine does that by itself once the cause is gone).
    #[error("content store {place} accepts no writes after a failed write ({reason})")]
    Fenced {
        /// The store, as the backend names it.
        place: String,
        /// The original failure.
        reason: String,
        /// Its kind.
        cause: FaultKind,
    },

    /// A zstd level outside the accepted range was configured.
    #[error("invalid zstd compression level {level}: akte accepts 1 to {MAX_ZSTD_LEVEL}")]
    InvalidLevel {
        /// The rejected level.
        level: i32,
    },

    /// Pack settings outside the accepted range were configured.
    #[error("invalid pack settings: {reason}")]
    InvalidPackOptions {
        /// What is wrong.
        reason: String,
    },
}

fn at_least(expected: &u64, actual: &u64) -> &'static str {
    if actual > expected {
        "at least "
    } else {
        ""
    }
}

/// The result of a successful put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// SHA-256 of the original bytes: the object's key.
    pub digest: Digest,
    /// Length of the original bytes.
    pub size: u64,
    /// Bytes it takes in storage (an object file with its header, a pack record, ...).
    pub stored_size: u64,
    /// How the payload is encoded.
    pub codec: Codec,
    /// `false` if an identical object was already stored (deduplicated).
    pub newly_stored: bool,
}

/// What [`ContentBackend::stat`] reports about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Length of the original bytes, as recorded in the header.
    pub size: u64,
    /// Bytes it takes in storage.
    pub stored_size: u64,
    /// How the payload is encoded.
    pub codec: Codec,
}

impl ContentError {
    /// What kind of failure it is.
    pub fn kind(&self) -> FaultKind {
        match self {
            ContentError::Io(e) => e.kind(),
            ContentError::NotFound { .. } => FaultKind::NotFound,
            ContentError::Corrupt { .. } | ContentError::Stray { .. } => FaultKind::Corrupt,
            ContentError::Read { .. }
            | ContentError::DigestMismatch { .. }
            | ContentError::SizeMismatch { .. } => FaultKind::Other,
            ContentError::Compress { .. } => FaultKind::Unavailable,
            ContentError::Fenced { cause, .. } => match cause {
                FaultKind::StorageFull => FaultKind::StorageFull,
                _ => FaultKind::Unavailable,
            },
            ContentError::InvalidLevel { .. } | ContentError::InvalidPackOptions { .. } => {
                FaultKind::Other
            }
        }
    }

    /// Recovers the typed error from an `io::Error` returned by a [`ContentRead`] (for
    /// callers that read it through `io::copy` and the like). `place` names the object in
    /// case the error did not come from a content reader after all.
    pub fn from_read_error(err: io::Error, place: &str) -> ContentError {
        if err.get_ref().is_none() {
            return ContentError::Io(IoFailure::new("read", place, err));
        }
        let kind = err.kind();
        match err
            .into_inner()
            .map(|inner| inner.downcast::<ContentError>())
        {
            Some(Ok(typed)) => *typed,
            Some(Err(other)) => {
                ContentError::Io(IoFailure::new("read", place, io::Error::new(kind, other)))
            }
            None => ContentError::Io(IoFailure::new("read", place, io::Error::from(kind))),
        }
    }
}
