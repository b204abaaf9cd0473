//! The content-addressed object store of one tenant.
//!
//! Every document version's bytes are stored once per tenant under the SHA-256 of the
//! *original* bytes (invariant 4), so a journal entry can commit to content by digest alone
//! and anyone can check the commitment by hashing what comes back.
//!
//! # Layout
//!
//! ```text
//! <root>/packs/<20-digit number>.pack                   small objects, many to a file
//! <root>/objects/<first 2 hex digits>/<64 hex digits>   one larger object per file
//! <root>/tmp/put-*                                      uploads in progress (or left by a crash)
//! ```
//!
//! Objects shorter than [`ContentOptions::pack_below`] (1 MiB by default) are appended to
//! pack files, where concurrent puts share one flush ([`crate::embedded::pack`]); larger ones get a
//! file of their own. `objects/` and `tmp/` must be on the same file system: an object is
//! committed by hard-linking its finished temporary file into `objects/`.
//!
//! # Object file
//!
//! A 24-byte header ([`MAGIC`], format version, codec byte, six reserved zero bytes, original
//! length as `u64` big-endian) followed by the payload: the original bytes ([`Codec::Raw`]) or
//! exactly one zstd frame ([`Codec::Zstd`]). `docs/FORMAT.md` describes it byte by byte.
//!
//! # Guarantees
//!
//! * **Durable before acknowledged.** [`ContentStore::put`] returns only after the object's
//!   data and its directory entry are flushed to disk (invariant 5). A crash at any earlier
//!   point leaves at most a file in `tmp/`, removed by the next [`ContentStore::open`].
//! * **Nothing half-written is visible.** Objects appear under their final name only when
//!   complete; failed or rejected uploads leave nothing behind.
//! * **Bounded memory.** Uploads and downloads stream through fixed buffers (invariant 6).
//! * **No silent corruption.** [`ContentReader`] hashes what it returns and fails the read
//!   that would report end of input if the length or digest differ from the object's name.
//!
//! # Concurrency
//!
//! A `ContentStore` is `Send + Sync`; puts, gets and removals may run from many threads.
//! Concurrent puts of the same bytes store one object; exactly one of them reports
//! `newly_stored: true`. Two things are left to the caller:
//! * Only one process should have a store open for writing: [`ContentStore::open`] deletes
//!   everything in `tmp/`, so another process's in-flight uploads would fail (with an error,
//!   never with a lost acknowledged object).
//! * Deduplication means one object may back several records. Removing it while a put of the
//!   same bytes is in flight, or while another record still refers to it, is a decision for
//!   the layer that knows those references.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::backend::content::{
    Codec, ContentBackend, ContentError, ContentRead, Destruction, ObjectInfo, PutOutcome,
    StructureProblem, MAX_ZSTD_LEVEL,
};
use crate::backend::FaultKind;
use crate::digest::Digest;
use crate::embedded::fsutil::{
    create_dir_all_durable, fsync_dir, open_new_with_mode, IoContext, IoFailure,
};
use crate::embedded::pack::{self, PackCheck, PackRecovery, PackStore, PackedObject};
use crate::embedded::pack_index::PackIndex;

/// First eight bytes of every object file.
///
/// Modelled on the PNG signature: the high-bit first byte and the CR LF / SUB / LF sequence
/// make the damage done by text-mode transfers and 7-bit channels visible at once, and the
/// letters `AKO` ("akte object") identify the file in a hex dump.
pub const MAGIC: [u8; 8] = [0x89, b'A', b'K', b'O', b'\r', b'\n', 0x1a, b'\n'];

/// The object format version this code writes and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;

/// Length of the fixed object header in bytes.
pub const HEADER_LEN: usize = 24;

/// Size of the buffer uploads are read into and of the compressibility probe.
///
/// Large enough that zstd sees representative data and syscalls stay few, small enough that
/// hundreds of concurrent uploads fit in memory.
pub const PROBE_LEN: usize = 256 * 1024;

/// zstd level used unless [`ContentOptions`] says otherwise (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Minimum saving, in percent of the probe, for a large input to be stored compressed.
const MIN_SAVING_PERCENT: usize = 10;

/// Largest zstd window a reader accepts, as a power of two (zstd's own default limit, 128 MiB).
/// Frames written at levels up to 19 need at most 2^23; the limit caps what a damaged or
/// forged frame can make a reader allocate.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Read buffer of a [`ContentReader`] for raw payloads.
const READ_BUF_LEN: usize = 64 * 1024;

/// Unix mode of object files: committed objects never change, so nobody needs write access.
/// Removal needs only write access to the directory.
const OBJECT_MODE: u32 = 0o440;

/// Byte offset of the original-length field in the header.
const SIZE_OFFSET: u64 = 16;

/// Makes temporary file names unique within this process, alongside the process id and the
/// clock (the latter keeps names unique across PID namespaces sharing a volume).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Settings of a [`ContentStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentOptions {
    /// zstd level for new objects, 1 to [`MAX_ZSTD_LEVEL`]. Only affects writing: objects of
    /// any level are read the same way.
    pub zstd_level: i32,
    /// New objects shorter than this many bytes go to pack files; 0 stores every object in
    /// a file of its own. At most [`pack::MAX_PACKED_LEN`]. Only affects writing.
    pub pack_below: u64,
    /// A new pack file is started once the active one would grow beyond this many bytes.
    pub pack_max_bytes: u64,
}

impl Default for ContentOptions {
    fn default() -> Self {
        ContentOptions {
            zstd_level: DEFAULT_ZSTD_LEVEL,
            pack_below: pack::MAX_PACKED_LEN,
            pack_max_bytes: pack::DEFAULT_PACK_MAX_BYTES,
        }
    }
}

/// Where an object's stored bytes are: a file of its own, or a record in a pack file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The object file or the pack file.
    pub path: PathBuf,
    /// Where the object's bytes start in it (0 for an object file; the record header in a
    /// pack).
    pub offset: u64,
    /// How many bytes belong to the object (the whole object file; header and payload of a
    /// pack record).
    pub len: u64,
    /// Whether it is a pack record.
    pub packed: bool,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.packed {
            write!(
                f,
                "{} (record at byte {})",
                self.path.display(),
                self.offset
            )
        } else {
            write!(f, "{}", self.path.display())
        }
    }
}

/// The decoded fixed header of an object file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    codec: Codec,
    size: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8] = FORMAT_VERSION;
        h[9] = self.codec.to_byte();
        // Bytes 10..16 stay zero (reserved).
        h[16..24].copy_from_slice(&self.size.to_be_bytes());
        h
    }

    /// Parses a header; the error is the reason for a [`ContentError::Corrupt`].
    fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if h[..8] != MAGIC {
            return Err(format!(
                "bad magic bytes {} (expected {}): not an akte content object",
                hex::encode(&h[..8]),
                hex::encode(MAGIC)
            ));
        }
        if h[8] != FORMAT_VERSION {
            return Err(format!(
                "unsupported object format version {} (this build reads version {FORMAT_VERSION})",
                h[8]
            ));
        }
        let codec = Codec::from_byte(h[9]).ok_or_else(|| format!("unknown codec byte {}", h[9]))?;
        // Reserved bytes must be zero so that a later version can give them meaning without
        // old readers misreading new objects, and so that damage there is not ignored.
        if h[10..16].iter().any(|&b| b != 0) {
            return Err(format!(
                "reserved header bytes 10..16 are {}, not zero",
                hex::encode(&h[10..16])
            ));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[16..24]);
        Ok(Header {
            codec,
            size: u64::from_be_bytes(size),
        })
    }
}

/// The content-addressed object store of one tenant. See the module documentation.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    zstd_level: i32,
    /// One flag per fan-out directory: set once this store has seen the directory exist *and*
    /// flushed `objects/` afterwards, so its entry is known to be on disk. A directory that
    /// exists may have been created by a concurrent put or by a process that crashed before
    /// flushing; one fsync of `objects/` per directory and store lifetime settles both.
    fanout_durable: Box<[AtomicBool]>,
    packs: PackStore,
    pack_below: u64,
    /// Opened read-only ([`Self::open_read_only`]): every write is refused.
    read_only: bool,
    /// Why writes are refused when that is a fault of the storage, not a read-only open
    /// ([`Self::refusing`]), and its kind.
    refusal: Option<(String, FaultKind)>,
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root` with default options.
    pub fn open(root: &Path) -> Result<Self, ContentError> {
        Self::open_with(root, ContentOptions::default())
    }

    /// Opens (creating if needed) the store at `root`, with a throw-away location index for
    /// its pack files: every pack is read at open. [`Self::open_indexed`] keeps the index.
    pub fn open_with(root: &Path, options: ContentOptions) -> Result<Self, ContentError> {
        let index = PackIndex::temporary().map_err(|e| {
            io_error(
                "open a temporary pack index for",
                root,
                io::Error::other(e.to_string()),
            )
        })?;
        Self::open_indexed(root, options, index)
    }

    /// Opens (creating if needed) the store at `root`, keeping the location of packed
    /// objects in `index` (the tenant's pack location index, [`crate::embedded::pack_index`]).
    ///
    /// Creates `objects/`, `tmp/` and `packs/` durably, removes whatever a crash left in
    /// `tmp/`, and indexes pack records a crash kept from the index (see [`crate::embedded::pack`]).
    pub(crate) fn open_indexed(
        root: &Path,
        options: ContentOptions,
        index: PackIndex,
    ) -> Result<Self, ContentError> {
        if !(1..=MAX_ZSTD_LEVEL).contains(&options.zstd_level) {
            return Err(ContentError::InvalidLevel {
                level: options.zstd_level,
            });
        }
        if options.pack_below > pack::MAX_PACKED_LEN {
            return Err(ContentError::InvalidPackOptions {
                reason: format!(
                    "objects below {} bytes cannot be packed; at most {} is possible",
                    options.pack_below,
                    pack::MAX_PACKED_LEN
                ),
            });
        }
        if options.pack_max_bytes < pack::PACK_HEADER_LEN + pack::RECORD_HEADER_LEN {
            return Err(ContentError::InvalidPackOptions {
                reason: format!(
                    "a pack of at most {} bytes holds no record",
                    options.pack_max_bytes
                ),
            });
        }
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        for dir in [&objects, &tmp] {
            create_dir_all_durable(dir)?;
            // create_dir_all_durable accepts an existing path of any kind; a file here would
            // only show up later as puts failing with a less obvious error.
            if !fs::metadata(dir).at("stat", dir)?.is_dir() {
                return Err(io_error(
                    "open content store",
                    dir,
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "exists but is not a directory",
                    ),
                ));
            }
        }
        let packs = PackStore::open(&root.join("packs"), index, options.pack_max_bytes)?;
        let store = ContentStore {
            root: root.to_path_buf(),
            objects,
            tmp,
            zstd_level: options.zstd_level,
            fanout_durable: (0..256).map(|_| AtomicBool::new(false)).collect(),
            packs,
            pack_below: options.pack_below,
            read_only: false,
            refusal: None,
        };
        store.clean_tmp()?;
        Ok(store)
    }

    /// Opens the store at `root` without writing anything (verification of a live store
    /// or of a copy): no directory is created, `tmp/` is left as it is, pack files are
    /// neither created nor cut, and the location of packed objects is read from the packs
    /// into `index`, an empty scratch index. Puts and removals are refused.
    pub(crate) fn open_read_only(
        root: &Path,
        options: ContentOptions,
        index: PackIndex,
    ) -> Result<Self, ContentError> {
        if !fs::metadata(root).at("stat", root)?.is_dir() {
            return Err(io_error(
                "open content store",
                root,
                io::Error::new(io::ErrorKind::NotADirectory, "is not a directory"),
            ));
        }
        let packs = PackStore::open_read_only(&root.join("packs"), index, options.pack_max_bytes)?;
        Ok(ContentStore {
            root: root.to_path_buf(),
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            fanout_durable: (0..256).map(|_| AtomicBool::new(false)).collect(),
            packs,
            pack_below: options.pack_below,
            read_only: true,
            refusal: None,
        })
    }

    /// A read-only store that answers writes as fenced by `reason` of `kind` (a tenant
    /// served for reading while its storage cannot take writes), rather than as read-only.
    pub(crate) fn refusing(mut self, reason: String, kind: FaultKind) -> Self {
        self.refusal = Some((reason, kind));
        self
    }

    fn refuse_write(&self, op: &'static str) -> Result<(), ContentError> {
        if let Some((reason, cause)) = &self.refusal {
            return Err(ContentError::Fenced {
                place: self.root.display().to_string(),
                reason: reason.clone(),
                cause: *cause,
            });
        }
        if self.read_only {
            return Err(crate::embedded::fsutil::read_only(op, &self.root).into());
        }
        Ok(())
    }

    /// Removes files a crash left in `tmp/`. They were never acknowledged: committed objects
    /// live in `objects/`, and a leftover temporary name of a committed object is only a
    /// second hard link to it.
    fn clean_tmp(&self) -> Result<(), ContentError> {
        let mut removed = 0u64;
        for entry in fs::read_dir(&self.tmp).at("read directory", &self.tmp)? {
            let entry = entry.at("read directory", &self.tmp)?;
            let path = entry.path();
            let file_type = entry.file_type().at("stat", &path)?;
            if file_type.is_dir() {
                // akte never creates directories here; leave them for a human to look at.
                tracing::warn!(path = %path.display(), "unexpected directory in content tmp/, left alone");
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove stale temporary file", &path, e)),
            }
        }
        if removed > 0 {
            fsync_dir(&self.tmp)?;
            tracing::info!(
                count = removed,
                dir = %self.tmp.display(),
                "removed stale temporary content files left by an interrupted write"
            );
        }
        Ok(())
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The zstd level new objects are written with.
    pub fn zstd_level(&self) -> i32 {
        self.zstd_level
    }

    /// Where the object for `digest` is (or would be) stored.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.objects.join(&hex[..2]).join(hex)
    }

    fn fanout_of(&self, digest: &Digest) -> PathBuf {
        self.objects.join(hex::encode([digest.0[0]]))
    }

    /// What opening the pack files found and did (records indexed again after a crash, a
    /// torn tail cut back, damage).
    pub fn pack_recovery(&self) -> &PackRecovery {
        self.packs.recovery()
    }

    /// The directory of the pack files.
    pub fn packs_dir(&self) -> &Path {
        self.packs.dir()
    }

    /// Where the stored bytes of `digest` are: the first sound pack record, else the object
    /// file. `None` if neither is there.
    pub fn place(&self, digest: &Digest) -> Result<Option<Place>, ContentError> {
        let copies = self.packs.locate(digest)?;
        for obj in &copies {
            if self.packs.open_record(digest, obj).is_ok() {
                return Ok(Some(self.packed_place(obj)));
            }
        }
        let path = self.path_of(digest);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                return Ok(Some(Place {
                    path,
                    offset: 0,
                    len: m.len(),
                    packed: false,
                }))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("stat", &path, e)),
        }
        Ok(copies.first().map(|obj| self.packed_place(obj)))
    }

    fn packed_place(&self, obj: &PackedObject) -> Place {
        Place {
            path: self.packs.path_of(obj.pack),
            offset: obj.offset,
            len: obj.record_len(),
            packed: true,
        }
    }

    /// Whether an object is stored for `digest` (its content is not checked).
    pub fn contains(&self, digest: &Digest) -> Result<bool, ContentError> {
        if self.packs.contains(digest)? {
            return Ok(true);
        }
        self.contains_file(digest)
    }

    fn contains_file(&self, digest: &Digest) -> Result<bool, ContentError> {
        let path = self.path_of(digest);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("stat", &path, e)),
        }
    }

    /// Stores the bytes `reader` yields and returns their digest. See [`Self::put_expecting`].
    pub fn put<R: Read>(&self, reader: R) -> Result<PutOutcome, ContentError> {
        self.put_expecting(reader, None, None)
    }

    /// Stores the bytes `reader` yields under their SHA-256, checking them against what the
    /// caller announced.
    ///
    /// The input is streamed through a fixed 256 KiB buffer into a temporary file while being
    /// hashed; memory use does not depend on its length. An input shorter than
    /// [`ContentOptions::pack_below`] (1 MiB by default) is held in memory instead and
    /// appended to a pack file. If `expected_size` or
    /// `expected_digest` is given and differs, the result is
    /// [`ContentError::SizeMismatch`] or [`ContentError::DigestMismatch`] and nothing is stored.
    /// A failing reader gives [`ContentError::Read`], also storing nothing.
    ///
    /// Codec choice: an input shorter than 256 KiB is compressed whole and stored as zstd if
    /// that is smaller than raw. A longer input is stored as zstd if its first 256 KiB
    /// compress by at least 10 %, raw otherwise, so already-compressed data (JPEG, compressed
    /// PDF streams, archives) is not recompressed for nothing.
    ///
    /// Returns once the object is durable. If an identical object exists, the new copy is
    /// discarded and `newly_stored` is `false`.
    pub fn put_expecting<R: Read>(
        &self,
        mut reader: R,
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        self.refuse_write("store content in")?;
        let mut buf = vec![0u8; PROBE_LEN];
        let mut hasher = Sha256::new();

        let probe_len = read_full(&mut reader, &mut buf, 0)?;
        let mut received = probe_len as u64;
        check_not_longer(expected_size, received)?;
        hasher.update(&buf[..probe_len]);

        if probe_len < PROBE_LEN {
            // The whole input is in memory: decide on exact sizes and check the expectations
            // before touching the disk at all.
            let probe = &buf[..probe_len];
            let digest = Digest(hasher.finalize().into());
            check_expectations(expected_digest, expected_size, digest, received)?;
            if received < self.pack_below {
                return self.put_packed(digest, probe, None, Durability::OnReturn);
            }
            let compressed = self.compress_block(probe)?;
            let (codec, payload) = if compressed.len() < probe.len() {
                (Codec::Zstd, &compressed[..])
            } else {
                (Codec::Raw, probe)
            };
            let tmp = TempFile::create(&self.tmp)?;
            let header = Header {
                codec,
                size: received,
            };
            (&tmp.file)
                .write_all(&header.encode())
                .at("write", &tmp.path)?;
            (&tmp.file).write_all(payload).at("write", &tmp.path)?;
            let stored_size = (HEADER_LEN + payload.len()) as u64;
            return self.commit(tmp, digest, received, codec, stored_size);
        }

        // Longer input: the probe decides the codec for the whole stream.
        let codec = if self.probe_pays(&buf)? {
            Codec::Zstd
        } else {
            Codec::Raw
        };
        // Below the packing limit it is still packed: read on into memory (at most
        // `pack_below` bytes) until it ends, or turns out too long for a pack and streams.
        let mut held: Vec<u8> = Vec::new();
        if self.pack_below > PROBE_LEN as u64 {
            held.extend_from_slice(&buf[..probe_len]);
            loop {
                let n = read_full(&mut reader, &mut buf, received)?;
                if n == 0 {
                    let digest = Digest(hasher.finalize().into());
                    check_expectations(expected_digest, expected_size, digest, received)?;
                    return self.put_packed(digest, &held, Some(codec), Durability::OnReturn);
                }
                received += n as u64;
                check_not_longer(expected_size, received)?;
                hasher.update(&buf[..n]);
                held.extend_from_slice(&buf[..n]);
                if received >= self.pack_below {
                    break;
                }
            }
        }
        let tmp = TempFile::create(&self.tmp)?;
        // The length is not known yet; it is patched in once the input has ended. Until the
        // object is committed nobody reads this file, and a crash leaves it only in tmp/.
        let placeholder = Header { codec, size: 0 };
        (&tmp.file)
            .write_all(&placeholder.encode())
            .at("write", &tmp.path)?;
        let mut sink = match codec {
            Codec::Raw => Sink::Raw(&tmp.file),
            Codec::Zstd => Sink::Zstd(
                new_stream_encoder(&tmp.file, self.zstd_level)
                    .at("start zstd stream", &tmp.path)?,
            ),
        };
        if held.is_empty() {
            sink.write_all(&buf[..probe_len]).at("write", &tmp.path)?;
        } else {
            sink.write_all(&held).at("write", &tmp.path)?;
            drop(held);
        }
        loop {
            let n = read_full(&mut reader, &mut buf, received)?;
            if n == 0 {
                break;
            }
            received += n as u64;
            check_not_longer(expected_size, received)?;
            hasher.update(&buf[..n]);
            sink.write_all(&buf[..n]).at("write", &tmp.path)?;
        }
        sink.finish().at("write", &tmp.path)?;

        let digest = Digest(hasher.finalize().into());
        check_expectations(expected_digest, expected_size, digest, received)?;
        tmp.file
            .write_all_at(&received.to_be_bytes(), SIZE_OFFSET)
            .at("write", &tmp.path)?;
        let stored_size = tmp.file.metadata().at("stat", &tmp.path)?.len();
        self.commit(tmp, digest, received, codec, stored_size)
    }

    /// Stores bytes already in memory, checking them against what the caller announced, as
    /// [`Self::put_expecting`] does; an object below the packing limit is packed straight
    /// from `data`, without the copies a reader needs.
    pub fn put_bytes(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        self.put_small(data, expected_digest, expected_size, Durability::OnReturn)
    }

    /// As [`Self::put_bytes`], but an object below the packing limit is only queued in the
    /// packs: it becomes durable with the next flush of the tenant's journal, whose leader
    /// flushes the queued pack records before it writes any entry (a journal opened with
    /// [`crate::embedded::journal::Journal::flushing_content_first`]), or with the next
    /// flush of the packs. For bytes the caller's next journal entry refers to: its writer
    /// then waits for one group commit instead of two. Reads of a queued object wait for
    /// its flush.
    pub fn put_bytes_for_entry(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        self.put_small(
            data,
            expected_digest,
            expected_size,
            Durability::WithNextEntry,
        )
    }

    /// Makes every pack record queued by [`Self::put_bytes_for_entry`] durable. The
    /// journal's leader calls it before writing entries that may refer to them.
    pub fn flush_queued(&self) -> Result<(), ContentError> {
        self.packs.flush_queued()
    }

    fn put_small(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
        durability: Durability,
    ) -> Result<PutOutcome, ContentError> {
        self.refuse_write("store content in")?;
        let size = data.len() as u64;
        if size >= self.pack_below {
            return self.put_expecting(data, expected_digest, expected_size);
        }
        let digest = Digest::of(data);
        check_expectations(expected_digest, expected_size, digest, size)?;
        let probed = match data.get(..PROBE_LEN) {
            Some(probe) if self.probe_pays(probe)? => Some(Codec::Zstd),
            Some(_) => Some(Codec::Raw),
            None => None,
        };
        self.put_packed(digest, data, probed, durability)
    }

    /// Stores a small object as a pack record, unless it is stored already (packed, or in
    /// a file of its own from before packing). `probed` is the codec the 256 KiB probe chose
    /// for a longer input: raw is then stored without compressing the rest for nothing.
    fn put_packed(
        &self,
        digest: Digest,
        data: &[u8],
        probed: Option<Codec>,
        durability: Durability,
    ) -> Result<PutOutcome, ContentError> {
        let size = data.len() as u64;
        if self.contains_file(&digest)? {
            let path = self.path_of(&digest);
            if let Some(info) = self.existing_looks_sound(&digest, &path, size)? {
                return Ok(PutOutcome {
                    digest,
                    size,
                    stored_size: info.stored_size,
                    codec: info.codec,
                    newly_stored: false,
                });
            }
        }
        let compressed = match probed {
            Some(Codec::Raw) => Vec::new(),
            _ => self.compress_block(data)?,
        };
        let (codec, payload) = if !compressed.is_empty() && compressed.len() < data.len() {
            (Codec::Zstd, &compressed[..])
        } else {
            (Codec::Raw, data)
        };
        let (obj, newly_stored) = match durability {
            Durability::OnReturn => self.packs.put(digest, codec, size, payload)?,
            Durability::WithNextEntry => self.packs.put_queued(digest, codec, size, payload)?,
        };
        tracing::debug!(digest = %digest, size, pack = obj.pack, offset = obj.offset,
            codec = %obj.codec, newly_stored, "stored packed content object");
        Ok(PutOutcome {
            digest,
            size,
            stored_size: obj.record_len(),
            codec: obj.codec,
            newly_stored,
        })
    }

    /// Compresses `data` into one zstd frame in memory (with its length and checksum).
    ///
    /// The compression context is kept per thread and reused: a fresh one allocates and
    /// faults in about a megabyte of tables, which cost more than compressing a letter.
    fn compress_block(&self, data: &[u8]) -> Result<Vec<u8>, ContentError> {
        thread_local! {
            static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
                const { std::cell::RefCell::new(None) };
        }
        let level = self.zstd_level;
        COMPRESSOR
            .with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.as_ref().map(|(l, _)| *l) != Some(level) {
                    let mut c = zstd::bulk::Compressor::new(level)?;
                    c.include_checksum(true)?;
                    *slot = Some((level, c));
                }
                match slot.as_mut() {
                    Some((_, c)) => c.compress(data),
                    None => Err(io::Error::other("no zstd compressor")),
                }
            })
            .map_err(|source| ContentError::Compress { source })
    }

    /// Whether compressing the (full) probe saves at least [`MIN_SAVING_PERCENT`].
    fn probe_pays(&self, probe: &[u8]) -> Result<bool, ContentError> {
        let compressed = self.compress_block(probe)?;
        Ok(compressed.len() * 100 <= probe.len() * (100 - MIN_SAVING_PERCENT))
    }

    /// Flushes the finished temporary file and gives it its final name.
    ///
    /// A hard link rather than a rename: `link` fails if the name exists, so of several
    /// concurrent puts of the same bytes exactly one wins, and an existing object is never
    /// replaced behind a reader's back.
    fn commit(
        &self,
        tmp: TempFile,
        digest: Digest,
        size: u64,
        codec: Codec,
        stored_size: u64,
    ) -> Result<PutOutcome, ContentError> {
        crate::embedded::fsutil::sync_all(&tmp.file, &tmp.path)?;
        let fanout = self.fanout_of(&digest);
        self.ensure_fanout(&digest, &fanout)?;
        let target = self.path_of(&digest);
        let mut outcome = PutOutcome {
            digest,
            size,
            stored_size,
            codec,
            newly_stored: true,
        };
        match fs::hard_link(&tmp.path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match self.existing_looks_sound(&digest, &target, size)? {
                    Some(info) => {
                        outcome.stored_size = info.stored_size;
                        outcome.codec = info.codec;
                        outcome.newly_stored = false;
                    }
                    None => {
                        // The existing file is damaged (or was just removed) but the new
                        // copy is good: put it in place. rename is atomic, so readers see the
                        // old or the new file, never a mix.
                        fs::rename(&tmp.path, &target).at("rename", &target)?;
                        tracing::warn!(
                            digest = %digest,
                            path = %target.display(),
                            "replaced a damaged or vanished content object with a fresh upload"
                        );
                    }
                }
            }
            Err(e) => return Err(io_error("link", &target, e)),
        }
        // Also when deduplicating: the object may have been linked by a concurrent put that
        // has not flushed the directory yet, and this caller must not hear "ok" before the
        // entry is on disk.
        fsync_dir(&fanout)?;
        drop(tmp); // Removes the temporary name; the object keeps its own link.
        tracing::debug!(
            digest = %digest,
            size,
            stored_size = outcome.stored_size,
            codec = %outcome.codec,
            newly_stored = outcome.newly_stored,
            "stored content object"
        );
        Ok(outcome)
    }

    /// Makes sure the fan-out directory for `digest` exists and its entry is on disk.
    fn ensure_fanout(&self, digest: &Digest, fanout: &Path) -> Result<(), ContentError> {
        let flag = &self.fanout_durable[usize::from(digest.0[0])];
        if flag.load(Ordering::Acquire) {
            return Ok(());
        }
        match fs::create_dir(fanout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create directory", fanout, e)),
        }
        fsync_dir(&self.objects)?;
        flag.store(true, Ordering::Release);
        Ok(())
    }

    /// Cheap structural check of an object found when committing a duplicate: header valid,
    /// length as expected, raw payload complete. `None` if it is damaged; I/O errors are
    /// reported, not taken for damage. A full check would re-read the whole object on every
    /// duplicate upload; bit rot inside a payload is what periodic `verify_object` is for.
    fn existing_looks_sound(
        &self,
        digest: &Digest,
        path: &Path,
        size: u64,
    ) -> Result<Option<ObjectInfo>, ContentError> {
        match self.open_object(digest) {
            Ok((_, header, file_len)) if header.size == size => Ok(Some(ObjectInfo {
                size,
                stored_size: file_len,
                codec: header.codec,
            })),
            Ok((_, header, _)) => {
                tracing::warn!(
                    digest = %digest,
                    path = %path.display(),
                    header_size = header.size,
                    size,
                    "stored content object records the wrong length"
                );
                Ok(None)
            }
            Err(ContentError::Corrupt { reason, .. }) => {
                tracing::warn!(
                    digest = %digest,
                    path = %path.display(),
                    %reason,
                    "stored content object is corrupt"
                );
                Ok(None)
            }
            // Removed between our failed link and now: the new copy simply takes its place.
            Err(ContentError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens an object file and checks its header (and, for raw objects, its length).
    fn open_object(&self, digest: &Digest) -> Result<(File, Header, u64), ContentError> {
        let path = self.path_of(digest);
        let corrupt = |reason: String| ContentError::Corrupt {
            digest: *digest,
            place: path.clone().display().to_string(),
            reason,
        };
        let mut file = pack::open_stored(digest, &path)?;
        let meta = file.metadata().at("stat", &path)?;
        if !meta.is_file() {
            return Err(corrupt("not a regular file".to_owned()));
        }
        let file_len = meta.len();
        if file_len < HEADER_LEN as u64 {
            return Err(corrupt(format!(
                "file is {file_len} bytes long, shorter than the {HEADER_LEN}-byte header"
            )));
        }
        let mut raw_header = [0u8; HEADER_LEN];
        match file.read_exact(&mut raw_header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(corrupt(
                    "file shrank below the header length while being read".to_owned(),
                ))
            }
            Err(e) => return Err(io_error("read", &path, e)),
        }
        let header = Header::decode(&raw_header).map_err(&corrupt)?;
        let payload_len = file_len - HEADER_LEN as u64;
        match header.codec {
            Codec::Raw if payload_len != header.size => {
                return Err(corrupt(format!(
                    "header records {} bytes but the raw payload holds {payload_len}",
                    header.size
                )))
            }
            Codec::Zstd if payload_len == 0 => {
                return Err(corrupt("zstd payload is empty".to_owned()));
            }
            _ => {}
        }
        Ok((file, header, file_len))
    }

    /// Opens the object for `digest` for reading.
    ///
    /// The header is checked here; the payload is checked while it is read (see
    /// [`ContentReader`]). Callers must read to the end — until `read` returns `Ok(0)` —
    /// before relying on the bytes.
    pub fn get(&self, digest: &Digest) -> Result<ContentReader, ContentError> {
        let found = self.find(digest)?;
        let tracked = TrackedFile {
            file: found.file.take(found.payload_len),
            failed: false,
        };
        let path = found.path;
        let source = match found.codec {
            Codec::Raw => Source::Raw(BufReader::with_capacity(READ_BUF_LEN, tracked)),
            Codec::Zstd => {
                let buffered = BufReader::with_capacity(zstd::zstd_safe::DCtx::in_size(), tracked);
                let decoder = zstd::stream::read::Decoder::with_buffer(buffered)
                    .and_then(|d| {
                        // One frame only: anything after it is damage, detected at the end.
                        let mut d = d.single_frame();
                        d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                        Ok(d)
                    })
                    .at("start zstd decoder for", &path)?;
                Source::Zstd(Box::new(decoder))
            }
        };
        Ok(ContentReader {
            digest: *digest,
            path,
            record: found.record,
            size: found.size,
            codec: found.codec,
            source,
            hasher: Sha256::new(),
            produced: 0,
            state: ReadState::Reading,
        })
    }

    /// Finds the stored bytes of `digest`: the first pack record whose header is sound,
    /// else the object file. The file is positioned at the payload.
    fn find(&self, digest: &Digest) -> Result<Found, ContentError> {
        let mut packed_error = None;
        for obj in self.packs.locate(digest)? {
            match self.packs.open_record(digest, &obj) {
                Ok((file, header)) => {
                    return Ok(Found {
                        file,
                        path: self.packs.path_of(obj.pack),
                        record: Some(obj.offset),
                        codec: header.codec,
                        size: header.size,
                        payload_len: u64::from(header.payload_len),
                    })
                }
                Err(e @ (ContentError::Corrupt { .. } | ContentError::NotFound { .. })) => {
                    packed_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match self.open_object(digest) {
            Ok((file, header, file_len)) => Ok(Found {
                file,
                path: self.path_of(digest),
                record: None,
                codec: header.codec,
                size: header.size,
                payload_len: file_len - HEADER_LEN as u64,
            }),
            Err(ContentError::NotFound { .. }) if packed_error.is_some() => Err(packed_error
                .unwrap_or_else(|| ContentError::NotFound {
                    digest: *digest,
                    place: self.path_of(digest).display().to_string(),
                })),
            Err(e) => Err(e),
        }
    }

    /// Header facts of the object for `digest`, without reading its payload: for a packed
    /// object from the location index, for an object file from its header.
    /// A record still queued ([`Self::put_bytes_for_entry`]) is reported as it will be,
    /// without waiting for its flush: the entry that refers to it is written after it.
    pub fn stat(&self, digest: &Digest) -> Result<ObjectInfo, ContentError> {
        if let Some(obj) = self.packs.queued(digest) {
            return Ok(ObjectInfo {
                size: obj.size,
                stored_size: obj.record_len(),
                codec: obj.codec,
            });
        }
        if let Some(obj) = self.packs.locate(digest)?.first() {
            return Ok(ObjectInfo {
                size: obj.size,
                stored_size: obj.record_len(),
                codec: obj.codec,
            });
        }
        let (_, header, file_len) = self.open_object(digest)?;
        Ok(ObjectInfo {
            size: header.size,
            stored_size: file_len,
            codec: header.codec,
        })
    }

    /// Reads the whole object and checks header, length and digest. Returns the original
    /// length. Memory use is one fixed buffer, whatever the object's size.
    pub fn verify_object(&self, digest: &Digest) -> Result<u64, ContentError> {
        let mut reader = self.get(digest)?;
        let mut buf = vec![0u8; PROBE_LEN];
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

    /// Deletes the object for `digest` durably. Returns whether it existed.
    ///
    /// Used when destruction after retention has been decided; this layer does not check
    /// whether other records still refer to the object.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<bool, ContentError> {
        self.refuse_write("remove content from")?;
        let packed = self.packs.remove(digest)?;
        Ok(self.remove_file(digest)? || packed)
    }

    fn remove_file(&self, digest: &Digest) -> Result<bool, ContentError> {
        let path = self.path_of(digest);
        let fanout = self.fanout_of(digest);
        let existed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("remove", &path, e)),
        };
        // Flush even when the file was already gone: a concurrent or crashed earlier removal
        // may have unlinked it without flushing, and "removed" must survive a crash.
        match fsync_dir(&fanout) {
            Ok(()) => {}
            Err(e) if !existed && e.source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if existed {
            tracing::info!(digest = %digest, path = %path.display(), "removed content object");
        }
        Ok(existed)
    }

    /// Iterates over the digests of all stored objects: object files in no particular
    /// order, then packed objects in digest order. An object stored both ways (a file
    /// from before packing, and a pack record) comes out twice.
    ///
    /// Walks the directories and the location index as it goes (memory does not grow with
    /// the store). Entries of `objects/` that are not correctly named objects come out as
    /// [`ContentError::Stray`] naming the path; iteration continues after them. Object
    /// contents are not read; see [`Self::verify_object`], and [`Self::check_packs`] for
    /// the structure of the pack files.
    pub fn iter(&self) -> impl Iterator<Item = Result<Digest, ContentError>> + '_ {
        self.files().chain(self.packs.digests())
    }

    /// Reads every pack file from front to back and reports what is not well formed (see
    /// [`crate::embedded::pack`]); payloads are checked by [`Self::verify_object`].
    pub fn check_packs(&self) -> Result<PackCheck, ContentError> {
        self.packs.check_packs()
    }

    /// Forgets where packed objects are and reads every pack again (`rebuild-index`).
    /// Returns the number of records indexed.
    pub fn reindex_packs(&self) -> Result<u64, ContentError> {
        self.packs.reindex()
    }

    /// Iterates over the digests of the objects stored in files of their own.
    pub fn files(&self) -> ObjectIter {
        match fs::read_dir(&self.objects).at("read directory", &self.objects) {
            Ok(top) => ObjectIter {
                objects: self.objects.clone(),
                top: Some(top),
                current: None,
                pending: None,
            },
            Err(e) => ObjectIter {
                objects: self.objects.clone(),
                top: None,
                current: None,
                pending: Some(e.into()),
            },
        }
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> ContentError {
    ContentError::Io(IoFailure::new(
        op,
        path.to_path_buf().display().to_string(),
        source,
    ))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    received: u64,
) -> Result<usize, ContentError> {
    let mut filled = 0usize;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                // A `Read` impl claiming more than the buffer holds is broken; slicing with its
                // answer would panic.
                filled = match filled.checked_add(n).filter(|&f| f <= buf.len()) {
                    Some(f) => f,
                    None => {
                        return Err(ContentError::Read {
                            received: received + filled as u64,
                            source: io::Error::other(
                                "reader reported more bytes than the buffer holds",
                            ),
                        })
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ContentError::Read {
                    received: received + filled as u64,
                    source,
                })
            }
        }
    }
    Ok(filled)
}

fn check_not_longer(expected_size: Option<u64>, received: u64) -> Result<(), ContentError> {
    match expected_size {
        Some(expected) if received > expected => Err(ContentError::SizeMismatch {
            expected,
            actual: received,
        }),
        _ => Ok(()),
    }
}

/// Size first: a short or long upload is the likelier fault and the clearer message.
fn check_expectations(
    expected_digest: Option<Digest>,
    expected_size: Option<u64>,
    digest: Digest,
    size: u64,
) -> Result<(), ContentError> {
    if let Some(expected) = expected_size {
        if expected != size {
            return Err(ContentError::SizeMismatch {
                expected,
                actual: size,
            });
        }
    }
    if let Some(expected) = expected_digest {
        if expected != digest {
            return Err(ContentError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
    }
    Ok(())
}

fn new_stream_encoder(
    file: &File,
    level: i32,
) -> io::Result<zstd::stream::write::Encoder<'static, &File>> {
    let mut enc = zstd::stream::write::Encoder::new(file, level)?;
    // zstd's own checksum costs 4 bytes and lets plain `zstd -t` spot damage without akte.
    enc.include_checksum(true)?;
    Ok(enc)
}

/// When a small object's pack record must be durable.
#[derive(Clone, Copy)]
enum Durability {
    /// Before the put returns.
    OnReturn,
    /// Before the tenant's next journal entry is written (see
    /// [`ContentStore::put_bytes_for_entry`]).
    WithNextEntry,
}

/// Where the payload of a streamed upload goes.
enum Sink<'a> {
    Raw(&'a File),
    Zstd(zstd::stream::write::Encoder<'static, &'a File>),
}

impl Sink<'_> {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Raw(f) => f.write_all(data),
            Sink::Zstd(enc) => enc.write_all(data),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Raw(_) => Ok(()),
            Sink::Zstd(enc) => enc.finish().map(|_| ()),
        }
    }
}

/// A temporary file in `tmp/`, removed when dropped.
///
/// Dropping also after a successful commit is intended: the object then has its own hard link
/// in `objects/` (or the temporary name was renamed away), so only the temporary name goes.
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn create(dir: &Path) -> Result<TempFile, IoFailure> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("put-{}-{nanos:x}-{n}", std::process::id()));
        let file = open_new_with_mode(&path, OBJECT_MODE)?;
        Ok(TempFile { path, file })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Harmless: the next open removes it.
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "could not remove temporary content file"
            ),
        }
    }
}

/// What [`ContentStore::find`] found: a file positioned at the payload, and the facts of its
/// header.
struct Found {
    file: File,
    path: PathBuf,
    /// Offset of the pack record, for a packed object.
    record: Option<u64>,
    codec: Codec,
    size: u64,
    payload_len: u64,
}

/// The payload region of an object under a decoder (the rest of an object file, or one
/// pack record's payload), remembering whether the file itself failed, so that a disk error
/// is not reported as a corrupt object (or the other way round).
struct TrackedFile {
    file: io::Take<File>,
    failed: bool,
}

impl Read for TrackedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.file.read(buf);
        if let Err(e) = &r {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed = true;
            }
        }
        r
    }
}

enum Source {
    Raw(BufReader<TrackedFile>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<TrackedFile>>>),
}

enum ReadState {
    Reading,
    /// End reached and length and digest checked.
    Verified,
    /// A read failed; every further read fails the same way.
    Failed(Failure),
}

enum Failure {
    Corrupt(String),
    Io(io::ErrorKind, String),
}

/// Streams the original bytes of one object, checking them as it goes.
///
/// The header was checked when the reader was made. While reading, the bytes are hashed and
/// counted; the read that reaches the end checks that the length equals the header's and that
/// the SHA-256 equals the digest the object is stored under. If not, that read returns an
/// error instead of `Ok(0)`, so a caller reading to the end never mistakes damaged content for
/// good. Bytes returned before the end are not yet verified: forward them, but commit to
/// nothing until `Ok(0)`.
///
/// Errors are `io::Error`s of kind `Other` wrapping a [`ContentError`] (`Corrupt` or `Io`),
/// recoverable with `err.get_ref()` / `err.into_inner()` and a downcast. `Interrupted` is
/// passed through unchanged; after any other error the reader keeps failing.
pub struct ContentReader {
    digest: Digest,
    path: PathBuf,
    /// Offset of the pack record, for a packed object.
    record: Option<u64>,
    size: u64,
    codec: Codec,
    source: Source,
    hasher: Sha256,
    produced: u64,
    state: ReadState,
}

impl std::fmt::Debug for ContentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentReader")
            .field("digest", &self.digest)
            .field("path", &self.path)
            .field("size", &self.size)
            .field("codec", &self.codec)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl ContentReader {
    /// Length of the original bytes, from the object header.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How the payload is encoded.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The digest the object is stored under.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The object file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The object file, and the record's offset in it for a packed object.
    pub fn place(&self) -> String {
        match self.record {
            Some(offset) => format!("{} (record at byte {offset})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    fn error_for(&self, failure: &Failure) -> io::Error {
        match failure {
            Failure::Corrupt(reason) => io::Error::other(ContentError::Corrupt {
                digest: self.digest,
                place: self.path.clone().display().to_string(),
                reason: match self.record {
                    Some(offset) => format!("pack record at byte {offset}: {reason}"),
                    None => reason.clone(),
                },
            }),
            Failure::Io(kind, msg) => io::Error::other(ContentError::Io(IoFailure::new(
                "read",
                self.place(),
                io::Error::new(*kind, msg.clone()),
            ))),
        }
    }

    fn fail(&mut self, failure: Failure) -> io::Error {
        let err = self.error_for(&failure);
        self.state = ReadState::Failed(failure);
        err
    }

    /// Called when the payload is exhausted: checks for trailing data, length and digest.
    fn finish(&mut self) -> io::Result<usize> {
        if let Source::Zstd(decoder) = &mut self.source {
            // The decoder stops after one frame; anything left in the file is not ours.
            match decoder.get_mut().fill_buf() {
                Ok([]) => {}
                Ok(rest) => {
                    let reason = format!(
                        "unexpected bytes after the zstd frame (at least {})",
                        rest.len()
                    );
                    return Err(self.fail(Failure::Corrupt(reason)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(e) => return Err(self.fail(Failure::Io(e.kind(), e.to_string()))),
            }
        }
        if self.produced != self.size {
            let reason = format!(
                "payload decodes to {} bytes, the header records {}",
                self.produced, self.size
            );
            return Err(self.fail(Failure::Corrupt(reason)));
        }
        let actual = Digest(self.hasher.finalize_reset().into());
        if actual != self.digest {
            let reason =
                format!("content hashes to {actual}, not to the digest it is stored under");
            return Err(self.fail(Failure::Corrupt(reason)));
        }
        self.state = ReadState::Verified;
        Ok(0)
    }
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            ReadState::Reading => {}
            ReadState::Verified => return Ok(0),
            ReadState::Failed(f) => return Err(self.error_for(f)),
        }
        // `Ok(0)` for an empty buffer must not be taken for the end of the content.
        if buf.is_empty() {
            return Ok(0);
        }
        let result = match &mut self.source {
            Source::Raw(r) => r.read(buf),
            Source::Zstd(d) => d.read(buf),
        };
        match result {
            Ok(0) => self.finish(),
            Ok(n) => {
                let remaining = self.size - self.produced;
                if n as u64 > remaining {
                    // Stop before handing out bytes the header says do not exist; this also
                    // bounds the work a damaged frame can cause.
                    let reason = format!(
                        "payload decodes to more than the {} bytes the header records",
                        self.size
                    );
                    return Err(self.fail(Failure::Corrupt(reason)));
                }
                let chunk = buf.get(..n).unwrap_or_default();
                self.hasher.update(chunk);
                self.produced += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let file_failed = match &self.source {
                    Source::Raw(_) => true,
                    Source::Zstd(d) => d.get_ref().get_ref().failed,
                };
                let failure = if file_failed {
                    Failure::Io(e.kind(), e.to_string())
                } else {
                    Failure::Corrupt(format!("zstd payload does not decode: {e}"))
                };
                Err(self.fail(failure))
            }
        }
    }
}

impl ContentRead for ContentReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn place(&self) -> String {
        ContentReader::place(self)
    }
}

impl ContentBackend for ContentStore {
    fn put(
        &self,
        reader: &mut dyn Read,
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        self.put_expecting(reader, expected_digest, expected_size)
    }

    fn put_bytes(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        ContentStore::put_bytes(self, data, expected_digest, expected_size)
    }

    fn put_bytes_for_entry(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        ContentStore::put_bytes_for_entry(self, data, expected_digest, expected_size)
    }

    fn get(&self, digest: &Digest) -> Result<Box<dyn ContentRead>, ContentError> {
        Ok(Box::new(ContentStore::get(self, digest)?))
    }

    fn stat(&self, digest: &Digest) -> Result<ObjectInfo, ContentError> {
        ContentStore::stat(self, digest)
    }

    fn contains(&self, digest: &Digest) -> Result<bool, ContentError> {
        ContentStore::contains(self, digest)
    }

    fn remove(&self, digest: &Digest, _authority: Destruction) -> Result<bool, ContentError> {
        ContentStore::remove(self, digest)
    }

    fn list(&self) -> Box<dyn Iterator<Item = Result<Digest, ContentError>> + Send + '_> {
        Box::new(self.iter())
    }

    fn describe(&self, digest: &Digest) -> String {
        match self.place(digest) {
            Ok(Some(place)) => place.to_string(),
            _ => self.path_of(digest).display().to_string(),
        }
    }

    fn verify_object(&self, digest: &Digest) -> Result<u64, ContentError> {
        ContentStore::verify_object(self, digest)
    }

    fn check_structure(&self) -> Result<Vec<StructureProblem>, ContentError> {
        Ok(self
            .check_packs()?
            .problems
            .into_iter()
            .map(|p| StructureProblem {
                place: p.path.display().to_string(),
                offset: p.offset,
                reason: p.reason,
            })
            .collect())
    }

    fn reindex(&self) -> Result<u64, ContentError> {
        self.reindex_packs()
    }

    fn fenced(&self) -> Option<String> {
        self.refusal
            .as_ref()
            .map(|(reason, _)| reason.clone())
            .or_else(|| self.packs.fenced_reason())
    }

    fn torn_tail(&self) -> Option<(String, u64, u64)> {
        let recovery = self.pack_recovery();
        recovery
            .truncated
            .as_ref()
            .or(recovery.torn_tail.as_ref())
            .map(|(pack, offset, bytes)| (pack.display().to_string(), *offset, *bytes))
    }
}

/// Iterator over stored digests; see [`ContentStore::iter`].
pub struct ObjectIter {
    objects: PathBuf,
    top: Option<fs::ReadDir>,
    current: Option<(PathBuf, String, fs::ReadDir)>,
    pending: Option<ContentError>,
}

impl std::fmt::Debug for ObjectIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectIter")
            .field("current", &self.current.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn stray(path: PathBuf, reason: &str) -> ContentError {
    ContentError::Stray {
        place: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

impl ObjectIter {
    fn check_object(prefix: &str, entry: &fs::DirEntry) -> Result<Digest, ContentError> {
        let path = entry.path();
        let file_type = entry.file_type().at("stat", &path)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(stray(path, "file name is not UTF-8"));
        };
        if name.len() != 64 || !is_lower_hex(&name) {
            return Err(stray(
                path,
                "not an object name (64 lower-case hexadecimal digits)",
            ));
        }
        if !name.starts_with(prefix) {
            return Err(stray(
                path,
                "object name does not start with its directory's two digits",
            ));
        }
        if !file_type.is_file() {
            return Err(stray(path, "not a regular file"));
        }
        Digest::from_hex(&name).map_err(|_| stray(path, "not an object name"))
    }
}

impl Iterator for ObjectIter {
    type Item = Result<Digest, ContentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        loop {
            if let Some((dir, prefix, entries)) = &mut self.current {
                match entries.next() {
                    Some(Ok(entry)) => return Some(Self::check_object(prefix, &entry)),
                    Some(Err(e)) => {
                        // Do not keep polling a directory stream that failed.
                        let err =
                            IoFailure::new("read directory", dir.clone().display().to_string(), e);
                        self.current = None;
                        return Some(Err(err.into()));
                    }
                    None => {
                        self.current = None;
                        continue;
                    }
                }
            }
            let top = self.top.as_mut()?;
            let entry = match top.next() {
                None => {
                    self.top = None;
                    return None;
                }
                Some(Err(e)) => {
                    self.top = None;
                    return Some(Err(ContentError::Io(IoFailure::new(
                        "read directory",
                        self.objects.clone().display().to_string(),
                        e,
                    ))));
                }
                Some(Ok(entry)) => entry,
            };
            let path = entry.path();
            let file_type = match entry.file_type().at("stat", &path) {
                Ok(t) => t,
                Err(e) => return Some(Err(e.into())),
            };
            let name = entry.file_name();
            let prefix = match name.to_str() {
                Some(n) if n.len() == 2 && is_lower_hex(n) => n.to_owned(),
                _ => {
                    return Some(Err(stray(
                        path,
                        "not a fan-out directory name (two lower-case hexadecimal digits)",
                    )))
                }
            };
            if !file_type.is_dir() {
                return Some(Err(stray(path, "not a directory")));
            }
            match fs::read_dir(&path).at("read directory", &path) {
                Ok(entries) => self.current = Some((path, prefix, entries)),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    /// A store that keeps every object in a file of its own: most tests here are about that
    /// format; `packed_store` and the tests after it cover pack records.
    fn new_store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open_with(dir.path(), loose_only()).unwrap();
        (dir, store)
    }

    fn loose_only() -> ContentOptions {
        ContentOptions {
            pack_below: 0,
            ..ContentOptions::default()
        }
    }

    fn packed_store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Deterministic incompressible bytes (xorshift64*).
    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
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

    /// Compressible, record-like text.
    fn text_bytes(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 100);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!(
                    "Aktenzeichen 42-{i:06}/2024: Bescheid über den Antrag vom {}.{}.2024\n",
                    i % 28 + 1,
                    i % 12 + 1
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn read_all(store: &ContentStore, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut reader = store.get(digest)?;
        let mut out = Vec::new();
        match reader.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(ContentError::from_read_error(
                e,
                &store.path_of(digest).display().to_string(),
            )),
        }
    }

    fn dir_len(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    fn object_count(store: &ContentStore) -> usize {
        let mut n = 0;
        for item in store.iter() {
            item.unwrap();
            n += 1;
        }
        n
    }

    fn assert_nothing_stored(store: &ContentStore) {
        assert_eq!(object_count(store), 0, "no object may be stored");
        assert_eq!(dir_len(&store.root().join("tmp")), 0, "tmp/ must be empty");
    }

    fn check_round_trip(store: &ContentStore, data: &[u8]) -> PutOutcome {
        let out = store.put(data).unwrap();
        assert_eq!(out.digest, Digest::of(data));
        assert_eq!(out.size, data.len() as u64);
        let path = store.path_of(&out.digest);
        assert_eq!(fs::metadata(&path).unwrap().len(), out.stored_size);
        assert_eq!(read_all(store, &out.digest).unwrap(), data);
        assert_eq!(store.verify_object(&out.digest).unwrap(), data.len() as u64);
        let info = store.stat(&out.digest).unwrap();
        assert_eq!(
            info,
            ObjectInfo {
                size: out.size,
                stored_size: out.stored_size,
                codec: out.codec
            }
        );
        assert_eq!(store.get(&out.digest).unwrap().size(), data.len() as u64);
        assert!(store.contains(&out.digest).unwrap());
        out
    }

    /// Asserts that reading the object to the end and verifying it both report `Corrupt`
    /// naming the digest and the path, and never hand back the whole content as good.
    fn assert_corrupt(store: &ContentStore, digest: &Digest, what: &str) {
        let path = store.path_of(digest);
        let check = |res: Result<String, ContentError>, via: &str| match res {
            Err(e @ ContentError::Corrupt { .. }) => {
                if let ContentError::Corrupt {
                    digest: d,
                    place: p,
                    ..
                } = &e
                {
                    assert_eq!(d, digest, "{what} via {via}");
                    assert!(
                        p.starts_with(&path.display().to_string()),
                        "{what} via {via}"
                    );
                }
                let msg = e.to_string();
                assert!(msg.contains(&digest.to_hex()), "{what} via {via}: {msg}");
                assert!(
                    msg.contains(&path.display().to_string()),
                    "{what} via {via}: {msg}"
                );
            }
            Err(e) => panic!("{what} via {via}: expected Corrupt, got {e:?}"),
            Ok(s) => panic!("{what} via {via}: returned Ok ({s}) for a damaged object"),
        };
        check(
            read_all(store, digest).map(|v| format!("{} bytes", v.len())),
            "get",
        );
        check(
            store.verify_object(digest).map(|n| format!("{n} bytes")),
            "verify_object",
        );
    }

    fn make_writable(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o640)).unwrap();
    }

    #[test]
    fn store_and_reader_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<ContentStore>();
        send_sync::<ContentError>();
        send::<ContentReader>();
        send::<ObjectIter>();
    }

    #[test]
    fn round_trips_at_sizes_around_buffer_boundaries() {
        let (_dir, store) = new_store();
        let sizes = [
            0,
            1,
            2,
            PROBE_LEN - 1,
            PROBE_LEN,
            PROBE_LEN + 1,
            2 * PROBE_LEN - 1,
            2 * PROBE_LEN,
            2 * PROBE_LEN + 1,
            3_000_007,
        ];
        for (i, &len) in sizes.iter().enumerate() {
            check_round_trip(&store, &text_bytes(len));
            check_round_trip(&store, &random_bytes(len, i as u64 + 1));
        }
        let empty = store.put(&b""[..]).unwrap();
        assert_eq!(empty.digest, Digest::EMPTY_INPUT);
        assert_eq!(empty.codec, Codec::Raw);
        assert_eq!(empty.stored_size, HEADER_LEN as u64);
    }

    /// Produces `remaining` bytes of record-like text on the fly, never holding them all.
    struct GeneratedText {
        remaining: u64,
        line: Vec<u8>,
        pos: usize,
        n: u64,
    }

    impl Read for GeneratedText {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut written = 0;
            while written < buf.len() && self.remaining > 0 {
                if self.pos == self.line.len() {
                    self.n += 1;
                    self.line =
                        format!("Vorgang {} / Blatt {}\n", self.n, self.n % 97).into_bytes();
                    self.pos = 0;
                }
                let take = (self.line.len() - self.pos)
                    .min(buf.len() - written)
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                buf[written..written + take].copy_from_slice(&self.line[self.pos..self.pos + take]);
                self.pos += take;
                written += take;
                self.remaining -= take as u64;
            }
            Ok(written)
        }
    }

    #[test]
    fn large_inputs_stream_through_in_both_directions() {
        let (_dir, store) = new_store();
        let len = 48 * 1024 * 1024 + 3;
        let gen = || GeneratedText {
            remaining: len,
            line: Vec::new(),
            pos: 0,
            n: 0,
        };
        let mut hasher = Sha256::new();
        io::copy(&mut gen(), &mut HashWriter(&mut hasher)).unwrap();
        let expected = Digest(hasher.finalize().into());

        let out = store
            .put_expecting(gen(), Some(expected), Some(len))
            .unwrap();
        assert_eq!(out.codec, Codec::Zstd);
        assert!(out.stored_size < len / 4);

        let mut reader = store.get(&expected).unwrap();
        let mut hasher = Sha256::new();
        let copied = io::copy(&mut reader, &mut HashWriter(&mut hasher)).unwrap();
        assert_eq!(copied, len);
        assert_eq!(Digest(hasher.finalize().into()), expected);
    }

    struct HashWriter<'a>(&'a mut Sha256);

    impl Write for HashWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn small_reads_stream_correctly() {
        let (_dir, store) = new_store();
        for data in [text_bytes(700_000), random_bytes(300_000, 9)] {
            let out = store.put(&data[..]).unwrap();
            let mut reader = store.get(&out.digest).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1000];
            loop {
                // An empty buffer must never count as the end.
                assert_eq!(reader.read(&mut []).unwrap(), 0);
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, data);
            assert_eq!(reader.read(&mut buf).unwrap(), 0, "stays at the end");
        }
    }

    #[test]
    fn compressible_text_is_stored_compressed() {
        let (_dir, store) = new_store();
        let big = text_bytes(2_000_000);
        let out = check_round_trip(&store, &big);
        assert_eq!(out.codec, Codec::Zstd);
        assert!(out.stored_size < out.size / 5, "{out:?}");
        let small = text_bytes(10_000);
        let out = check_round_trip(&store, &small);
        assert_eq!(out.codec, Codec::Zstd);
        assert!(out.stored_size < out.size / 2, "{out:?}");
    }

    #[test]
    fn random_bytes_are_stored_raw() {
        let (_dir, store) = new_store();
        for len in [1000, PROBE_LEN - 1, 2_000_000] {
            let out = check_round_trip(&store, &random_bytes(len, 77));
            assert_eq!(out.codec, Codec::Raw);
            assert_eq!(out.stored_size, len as u64 + HEADER_LEN as u64);
        }
    }

    #[test]
    fn the_probe_decides_the_codec_of_long_inputs() {
        let (_dir, store) = new_store();
        let mut text_then_random = text_bytes(PROBE_LEN);
        text_then_random.extend(random_bytes(PROBE_LEN, 5));
        assert_eq!(
            check_round_trip(&store, &text_then_random).codec,
            Codec::Zstd
        );
        let mut random_then_text = random_bytes(PROBE_LEN, 6);
        random_then_text.extend(text_bytes(PROBE_LEN));
        assert_eq!(
            check_round_trip(&store, &random_then_text).codec,
            Codec::Raw
        );
    }

    #[test]
    fn compression_levels_are_validated_and_used() {
        let dir = tempfile::tempdir().unwrap();
        for level in [0, -1, 20, 22] {
            let err = ContentStore::open_with(
                dir.path(),
                ContentOptions {
                    zstd_level: level,
                    ..loose_only()
                },
            )
            .unwrap_err();
            assert!(matches!(err, ContentError::InvalidLevel { level: l } if l == level));
        }
        let store = ContentStore::open_with(
            dir.path(),
            ContentOptions {
                zstd_level: 19,
                ..loose_only()
            },
        )
        .unwrap();
        assert_eq!(store.zstd_level(), 19);
        assert_eq!(
            check_round_trip(&store, &text_bytes(600_000)).codec,
            Codec::Zstd
        );
    }

    #[test]
    fn header_layout_is_exactly_as_documented() {
        let (_dir, store) = new_store();
        let out = store.put(&b"akte"[..]).unwrap();
        assert_eq!(out.codec, Codec::Raw, "4 bytes do not compress");
        let file = fs::read(store.path_of(&out.digest)).unwrap();
        assert_eq!(
            hex::encode(&file),
            concat!(
                "89414b4f0d0a1a0a", // magic
                "01",               // format version
                "00",               // codec: raw
                "000000000000",     // reserved
                "0000000000000004", // original length
                "616b7465",         // payload "akte"
            )
        );
        assert_eq!(
            store.path_of(&out.digest),
            store
                .root()
                .join("objects")
                .join(&out.digest.to_hex()[..2])
                .join(out.digest.to_hex())
        );

        let text = text_bytes(50_000);
        let out = store.put(&text[..]).unwrap();
        let file = fs::read(store.path_of(&out.digest)).unwrap();
        assert_eq!(&file[..8], &MAGIC);
        assert_eq!(file[8], 1);
        assert_eq!(file[9], 1, "zstd");
        assert_eq!(&file[10..16], &[0u8; 6]);
        assert_eq!(&file[16..24], &50_000u64.to_be_bytes());
        // The payload is a plain zstd frame: any zstd implementation decodes it.
        assert_eq!(zstd::stream::decode_all(&file[24..]).unwrap(), text);

        // Streamed objects get their length patched into the header.
        let big = text_bytes(PROBE_LEN * 3 + 5);
        let out = store.put(&big[..]).unwrap();
        let file = fs::read(store.path_of(&out.digest)).unwrap();
        assert_eq!(&file[16..24], &(big.len() as u64).to_be_bytes());
        assert_eq!(zstd::stream::decode_all(&file[24..]).unwrap(), big);
    }

    #[test]
    fn identical_content_is_stored_once() {
        let (_dir, store) = new_store();
        for data in [
            text_bytes(1000),
            text_bytes(900_000),
            random_bytes(600_000, 3),
        ] {
            let first = store.put(&data[..]).unwrap();
            assert!(first.newly_stored);
            let second = store.put(&data[..]).unwrap();
            assert!(!second.newly_stored);
            assert_eq!(second.digest, first.digest);
            assert_eq!(second.stored_size, first.stored_size);
            assert_eq!(second.codec, first.codec);
        }
        assert_eq!(object_count(&store), 3);
        assert_eq!(dir_len(&store.root().join("tmp")), 0);
    }

    /// The boundary between packed and file objects, and what a rejected small upload
    /// leaves in the packs (nothing).
    #[test]
    fn small_objects_are_packed_and_rejected_ones_leave_no_record() {
        let (dir, store) = packed_store();
        let pack = dir.path().join("packs").join(pack::pack_file_name(0));
        let data = text_bytes(5000);
        let bad = Digest::of(b"something else");
        assert!(store.put_expecting(&data[..], Some(bad), None).is_err());
        assert!(store
            .put_expecting(&data[..], None, Some(data.len() as u64 + 1))
            .is_err());
        assert_eq!(object_count(&store), 0);
        assert_eq!(fs::metadata(&pack).unwrap().len(), pack::PACK_HEADER_LEN);
        let limit = pack::MAX_PACKED_LEN as usize;
        for (len, packed) in [
            (0, true),
            (1, true),
            (PROBE_LEN - 1, true),
            (PROBE_LEN, true),
            (PROBE_LEN + 1, true),
            (limit - 1, true),
            (limit, false),
            (limit + 1, false),
        ] {
            let data = random_bytes(len, len as u64 + 7);
            let out = store.put(&data[..]).unwrap();
            let place = store.place(&out.digest).unwrap().unwrap();
            assert_eq!(place.packed, packed, "{len} bytes");
            assert_eq!(place.len, out.stored_size, "{len} bytes");
            assert_eq!(read_all(&store, &out.digest).unwrap(), data);
            assert!(!store.put(&data[..]).unwrap().newly_stored);
        }
        assert_eq!(object_count(&store), 8);
        assert_eq!(dir_len(&store.root().join("tmp")), 0);
        // From memory: the same checks and the same outcome as from a reader.
        let data = random_bytes(400_000, 99);
        let bad = Digest::of(b"other");
        assert!(matches!(
            store.put_bytes(&data, Some(bad), None),
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.put_bytes(&data, None, Some(5)),
            Err(ContentError::SizeMismatch { .. })
        ));
        assert_eq!(object_count(&store), 8);
        let out = store
            .put_bytes(&data, Some(Digest::of(&data)), Some(400_000))
            .unwrap();
        assert!(out.newly_stored);
        assert_eq!(out.codec, Codec::Raw);
        assert!(
            !store
                .put_expecting(&data[..], None, None)
                .unwrap()
                .newly_stored
        );
        let big = random_bytes(limit + 5, 98);
        assert!(
            !store
                .place(&store.put_bytes(&big, None, None).unwrap().digest)
                .unwrap()
                .unwrap()
                .packed
        );
        // Longer than the probe and compressible: packed, as one zstd frame.
        let text = text_bytes(600_000);
        let out = store.put(&text[..]).unwrap();
        assert_eq!(out.codec, Codec::Zstd);
        assert!(store.place(&out.digest).unwrap().unwrap().packed);
        assert_eq!(read_all(&store, &out.digest).unwrap(), text);
    }

    #[test]
    fn wrong_expectations_store_nothing() {
        let (_dir, store) = new_store();
        for data in [
            text_bytes(5000),
            text_bytes(800_000),
            random_bytes(700_000, 4),
        ] {
            let good = Digest::of(&data);
            let len = data.len() as u64;
            let bad = Digest::of(b"something else");

            let err = store.put_expecting(&data[..], Some(bad), None).unwrap_err();
            assert!(
                matches!(err, ContentError::DigestMismatch { expected, actual } if expected == bad && actual == good),
                "{err:?}"
            );
            assert_nothing_stored(&store);

            let err = store
                .put_expecting(&data[..], Some(good), Some(len + 1))
                .unwrap_err();
            assert!(
                matches!(err, ContentError::SizeMismatch { expected, actual } if expected == len + 1 && actual == len),
                "{err:?}"
            );
            assert_nothing_stored(&store);

            let err = store
                .put_expecting(&data[..], None, Some(len - 1))
                .unwrap_err();
            match err {
                ContentError::SizeMismatch { expected, actual } => {
                    assert_eq!(expected, len - 1);
                    assert!(actual > expected && actual <= len);
                    if actual < len {
                        assert!(err.to_string().contains("at least"), "{err}");
                    }
                }
                other => panic!("{other:?}"),
            }
            assert_nothing_stored(&store);
        }
        let data = text_bytes(800_000);
        let out = store
            .put_expecting(&data[..], Some(Digest::of(&data)), Some(data.len() as u64))
            .unwrap();
        assert!(out.newly_stored);
        assert_eq!(object_count(&store), 1);
    }

    /// Yields `data` in uneven pieces, with an `Interrupted` now and then, and fails for good
    /// at `fail_at`.
    struct FlakyReader {
        data: Vec<u8>,
        pos: usize,
        fail_at: Option<usize>,
        calls: u64,
    }

    impl Read for FlakyReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(7) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "signal"));
            }
            if Some(self.pos) == self.fail_at {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "client went away",
                ));
            }
            let limit = self.fail_at.unwrap_or(usize::MAX).min(self.data.len());
            let n = buf
                .len()
                .min(limit - self.pos)
                .min(10_000 + (self.calls as usize % 3) * 4_000);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn failing_reader_stores_nothing() {
        let (_dir, store) = new_store();
        for fail_at in [0, 100, PROBE_LEN, 600_000] {
            let reader = FlakyReader {
                data: text_bytes(900_000),
                pos: 0,
                fail_at: Some(fail_at),
                calls: 0,
            };
            let err = store.put(reader).unwrap_err();
            match &err {
                ContentError::Read { received, source } => {
                    assert_eq!(*received, fail_at as u64);
                    assert_eq!(source.kind(), io::ErrorKind::ConnectionReset);
                }
                other => panic!("{other:?}"),
            }
            assert_nothing_stored(&store);
        }
        // Interruptions alone are retried, not errors.
        let data = text_bytes(900_000);
        let reader = FlakyReader {
            data: data.clone(),
            pos: 0,
            fail_at: None,
            calls: 0,
        };
        assert_eq!(store.put(reader).unwrap().digest, Digest::of(&data));
    }

    #[test]
    fn a_reader_claiming_too_many_bytes_is_an_error_not_a_panic() {
        struct Liar;
        impl Read for Liar {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                Ok(buf.len() + 1)
            }
        }
        let (_dir, store) = new_store();
        assert!(matches!(store.put(Liar), Err(ContentError::Read { .. })));
        assert_nothing_stored(&store);
    }

    /// Stores `data`, applies `damage` to the object file, checks that the damage is
    /// reported, then restores the file.
    fn with_damage(
        store: &ContentStore,
        data: &[u8],
        codec: Codec,
        what: &str,
        damage: impl Fn(&mut Vec<u8>),
    ) {
        let out = store.put(data).unwrap();
        assert_eq!(
            out.codec, codec,
            "{what}: test data stored with the wrong codec"
        );
        let path = store.path_of(&out.digest);
        let pristine = fs::read(&path).unwrap();
        let mut bytes = pristine.clone();
        damage(&mut bytes);
        assert_ne!(bytes, pristine, "{what}: damage changed nothing");
        make_writable(&path);
        fs::write(&path, &bytes).unwrap();
        assert_corrupt(store, &out.digest, what);
        fs::write(&path, &pristine).unwrap();
        assert_eq!(store.verify_object(&out.digest).unwrap(), data.len() as u64);
    }

    #[test]
    fn every_header_byte_is_checked() {
        let (_dir, store) = new_store();
        let raw = random_bytes(5000, 11);
        let zst = text_bytes(5000);
        for (data, codec) in [(&raw, Codec::Raw), (&zst, Codec::Zstd)] {
            for i in 0..HEADER_LEN {
                for mask in [0x01u8, 0x80] {
                    with_damage(
                        &store,
                        data,
                        codec,
                        &format!("{codec} header byte {i} ^ {mask:#x}"),
                        |b| b[i] ^= mask,
                    );
                }
            }
        }
    }

    #[test]
    fn damaged_payloads_are_reported() {
        let (_dir, store) = new_store();
        let raw_small = random_bytes(5000, 12);
        let raw_big = random_bytes(900_000, 13);
        let zst_small = text_bytes(5000);
        let zst_big = text_bytes(900_000);
        for (data, codec) in [
            (&raw_small, Codec::Raw),
            (&raw_big, Codec::Raw),
            (&zst_small, Codec::Zstd),
            (&zst_big, Codec::Zstd),
        ] {
            let name = format!("{codec} {} bytes", data.len());
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: first payload byte"),
                |b| b[HEADER_LEN] ^= 0x01,
            );
            with_damage(&store, data, codec, &format!("{name}: middle byte"), |b| {
                let mid = HEADER_LEN + (b.len() - HEADER_LEN) / 2;
                b[mid] ^= 0x20
            });
            with_damage(&store, data, codec, &format!("{name}: last byte"), |b| {
                let last = b.len() - 1;
                b[last] ^= 0x01
            });
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: truncated by one"),
                |b| {
                    b.pop();
                },
            );
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: truncated to header"),
                |b| b.truncate(HEADER_LEN),
            );
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: truncated into header"),
                |b| b.truncate(10),
            );
            with_damage(&store, data, codec, &format!("{name}: emptied"), |b| {
                b.clear()
            });
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: one byte appended"),
                |b| b.push(0),
            );
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: zstd frame appended"),
                |b| b.extend(zstd::stream::encode_all(&b"more"[..], 3).unwrap()),
            );
            // A skippable frame decodes to nothing: length and digest would still match.
            with_damage(
                &store,
                data,
                codec,
                &format!("{name}: skippable frame appended"),
                |b| b.extend([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]),
            );
        }
    }

    #[test]
    fn an_object_under_the_wrong_name_is_reported() {
        let (_dir, store) = new_store();
        let a = store.put(&text_bytes(3000)[..]).unwrap();
        let b = store.put(&text_bytes(3001)[..]).unwrap();
        let path_a = store.path_of(&a.digest);
        make_writable(&path_a);
        fs::copy(store.path_of(&b.digest), &path_a).unwrap();
        assert_corrupt(&store, &a.digest, "valid object under another digest");
    }

    #[test]
    fn reader_errors_are_typed_and_sticky() {
        let (_dir, store) = new_store();
        let data = random_bytes(1000, 14);
        let out = store.put(&data[..]).unwrap();
        let path = store.path_of(&out.digest);
        make_writable(&path);
        let mut bytes = fs::read(&path).unwrap();
        bytes[500] ^= 1;
        fs::write(&path, &bytes).unwrap();

        let mut reader = store.get(&out.digest).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(
            reader.read(&mut buf).unwrap(),
            1000,
            "bytes before the end are handed out"
        );
        for _ in 0..2 {
            let err = reader.read(&mut buf).unwrap_err();
            let inner = err.get_ref().and_then(|e| e.downcast_ref::<ContentError>());
            assert!(
                matches!(inner, Some(ContentError::Corrupt { .. })),
                "{err:?}"
            );
        }
    }

    #[test]
    fn missing_objects_are_not_found() {
        let (_dir, store) = new_store();
        let d = Digest::of(b"never stored");
        let err = store.get(&d).unwrap_err();
        assert!(matches!(err, ContentError::NotFound { digest, .. } if digest == d));
        assert!(err.to_string().contains(&d.to_hex()));
        assert!(matches!(
            store.verify_object(&d),
            Err(ContentError::NotFound { .. })
        ));
        assert!(matches!(store.stat(&d), Err(ContentError::NotFound { .. })));
        assert!(!store.contains(&d).unwrap());
        assert!(!store.remove(&d).unwrap());
    }

    #[test]
    fn remove_deletes_the_object() {
        let (_dir, store) = new_store();
        let out = store.put(&text_bytes(2000)[..]).unwrap();
        assert!(store.remove(&out.digest).unwrap());
        assert!(!store.contains(&out.digest).unwrap());
        assert!(!store.remove(&out.digest).unwrap());
        assert!(matches!(
            store.get(&out.digest),
            Err(ContentError::NotFound { .. })
        ));
        assert!(store.put(&text_bytes(2000)[..]).unwrap().newly_stored);
    }

    #[test]
    fn a_damaged_object_is_replaced_by_a_good_upload() {
        let (_dir, store) = new_store();
        let data = random_bytes(3000, 15);
        let out = store.put(&data[..]).unwrap();
        let path = store.path_of(&out.digest);
        make_writable(&path);
        fs::write(&path, b"garbage").unwrap();
        let again = store.put(&data[..]).unwrap();
        assert!(again.newly_stored);
        assert_eq!(read_all(&store, &out.digest).unwrap(), data);
        assert_eq!(dir_len(&store.root().join("tmp")), 0);
    }

    #[test]
    fn open_rejects_a_file_where_a_directory_belongs() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("objects"), b"not a directory").unwrap();
        let err = ContentStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&dir.path().join("objects").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn stale_temporary_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let kept = store.put(&text_bytes(4000)[..]).unwrap();
        drop(store);
        let tmp = dir.path().join("tmp");
        fs::write(tmp.join("put-1-abc-0"), b"half an upload").unwrap();
        fs::write(tmp.join("something-else"), b"x").unwrap();
        fs::create_dir(tmp.join("a-directory")).unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a-directory")]);
        assert_eq!(store.verify_object(&kept.digest).unwrap(), 4000);
    }

    #[test]
    fn concurrent_puts_of_the_same_content_store_one_object() {
        let (_dir, store) = new_store();
        let store = Arc::new(store);
        for data in [
            text_bytes(1_500_000),
            random_bytes(700_000, 16),
            text_bytes(3000),
        ] {
            let data = Arc::new(data);
            let barrier = Arc::new(Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (store, data, barrier) = (store.clone(), data.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.put(&data[..]).unwrap()
                    })
                })
                .collect();
            let outcomes: Vec<PutOutcome> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(
                outcomes.iter().filter(|o| o.newly_stored).count(),
                1,
                "{outcomes:?}"
            );
            assert!(outcomes.iter().all(|o| o.digest == Digest::of(&data)));
            assert_eq!(read_all(&store, &outcomes[0].digest).unwrap(), *data);
        }
        assert_eq!(object_count(&store), 3);
        assert_eq!(dir_len(&store.root().join("tmp")), 0);
    }

    #[test]
    fn iter_lists_objects_and_reports_strays() {
        let (_dir, store) = new_store();
        assert_eq!(object_count(&store), 0);
        let mut expected = BTreeSet::new();
        for i in 0..40 {
            expected.insert(store.put(&text_bytes(100 + i)[..]).unwrap().digest);
        }
        let listed: BTreeSet<Digest> = store.iter().map(|r| r.unwrap()).collect();
        assert_eq!(listed, expected);

        let objects = store.root().join("objects");
        let some = *expected.iter().next().unwrap();
        let hex = some.to_hex();
        let fan = objects.join(&hex[..2]);
        let other_fan = if &hex[..2] == "00" { "01" } else { "00" };
        fs::create_dir_all(objects.join(other_fan)).unwrap();
        let strays = [
            fan.join("notes.txt"),
            fan.join(hex.to_uppercase()),
            objects.join(other_fan).join(&hex),
            objects.join("README"),
            objects.join("zz"),
        ];
        for s in &strays[..4] {
            fs::write(s, b"x").unwrap();
        }
        fs::create_dir(&strays[4]).unwrap();

        let mut listed = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for item in store.iter() {
            match item {
                Ok(d) => {
                    listed.insert(d);
                }
                Err(ContentError::Stray { place, .. }) => {
                    reported.insert(std::path::PathBuf::from(place));
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(listed, expected);
        assert_eq!(reported, strays.iter().cloned().collect());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
        #[test]
        fn prop_round_trip(seed in proptest::prelude::any::<u64>(), len in 0usize..700_000, kind in 0u8..4) {
            let data = match kind {
                0 => random_bytes(len, seed),
                1 => text_bytes(len),
                2 => vec![(seed & 0xff) as u8; len],
                // Half compressible, half not, split at a random point.
                _ => {
                    let split = (seed as usize) % (len + 1);
                    let mut d = text_bytes(split);
                    d.extend(random_bytes(len - split, seed));
                    d
                }
            };
            let (_dir, store) = new_store();
            let out = check_round_trip(&store, &data);
            proptest::prop_assert!(out.newly_stored);
            proptest::prop_assert!(!store.put(&data[..]).unwrap().newly_stored);
            proptest::prop_assert!(out.stored_size <= data.len() as u64 + HEADER_LEN as u64 || out.codec == Codec::Zstd);
        }
    }
}
