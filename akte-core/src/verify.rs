//! Verification of a whole store, or of what is new since the last verification.
//!
//! Checks, per tenant: segment headers and record checksums, sequence numbers and chain
//! links, attachments against their digests, every stored checkpoint (signature with the
//! tenant's key, and root against the root recomputed from the entries), the SHA-256 of
//! every referenced content object, and the live index against an index rebuilt from the
//! journal. It streams: memory does not grow with the number of entries or objects (the
//! rebuilt index lives in a temporary sled database on disk).
//!
//! Every problem is collected with its location; verification goes on after a problem
//! wherever the rest can still be checked.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::content::ContentError;
use crate::digest::Digest;
use crate::entry::PayloadKind;
use crate::fsutil::{self, IoContext};
use crate::index::ROLE_DESTROYED;
use crate::index::{Index, TenantIndex};
use crate::journal::{self, Location};
use crate::merkle::{leaf_hash, CompactRange};
use crate::note::Checkpoint;
use crate::segment::{self, SegmentError, SegmentReader};
use crate::store::{Store, StoreError, Tenant};

/// How much to check.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Only entries, checkpoints and content added since the last successful verification
    /// (falls back to a full run when there is none).
    pub incremental: bool,
    /// Hash every referenced content object (the expensive part).
    pub content: bool,
    /// Compare the live index with one rebuilt from the journal (full runs only).
    pub index: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            incremental: false,
            content: true,
            index: true,
        }
    }
}

/// What kind of problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A segment header or record is unreadable (checksum, framing, encoding).
    JournalDamaged,
    /// Sequence numbers or previous-entry hashes do not link up.
    ChainBroken,
    /// A checkpoint file cannot be read or parsed.
    CheckpointUnreadable,
    /// A checkpoint's signature does not verify with the tenant's key.
    CheckpointSignature,
    /// A checkpoint's root differs from the root recomputed from the journal.
    CheckpointRoot,
    /// A checkpoint covers more entries than the journal holds (history was cut).
    CheckpointBeyondJournal,
    /// A referenced content object is missing.
    ContentMissing,
    /// A content object's bytes do not hash to its name.
    ContentCorrupt,
    /// The live index differs from the index rebuilt from the journal.
    IndexMismatch,
    /// The tenant could not be opened at all (the message names file and place).
    TenantUnavailable,
}

/// One problem and where it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// The tenant.
    pub tenant: String,
    /// What is wrong, as a stable code.
    pub kind: ProblemKind,
    /// Entry concerned, if any.
    pub seq: Option<u64>,
    /// Digest concerned (content object, attachment or root), if any.
    pub digest: Option<Digest>,
    /// File concerned, if any.
    pub path: Option<PathBuf>,
    /// Human-readable description.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tenant {}: {:?}", self.tenant, self.kind)?;
        if let Some(s) = self.seq {
            write!(f, " at entry {s}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, " digest {d}")?;
        }
        if let Some(p) = &self.path {
            write!(f, " in {}", p.display())?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result for one tenant.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantReport {
    /// The tenant.
    pub tenant: String,
    /// First entry checked (0 for a full run).
    pub from_seq: u64,
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Content objects hashed.
    pub content_objects: u64,
    /// Bytes of content hashed.
    pub content_bytes: u64,
    /// Attachments (metadata records) removed by destruction, reported as destroyed.
    pub destroyed_records: u64,
    /// Content objects no live entry refers to (left by an interrupted upload, or kept
    /// after destruction released them); not an integrity problem.
    pub unreferenced_objects: u64,
    /// Problems found.
    pub problems: Vec<Problem>,
}

/// The result of a verification run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Per tenant.
    pub tenants: Vec<TenantReport>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.tenants.iter().all(|t| t.problems.is_empty())
    }

    /// All problems, in tenant order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.tenants.iter().flat_map(|t| t.problems.iter())
    }
}

/// Most index differences listed one by one; the rest are counted.
const MAX_INDEX_DIFFS: usize = 20;

/// Where an incremental run resumes: saved after every clean run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct VerifiedState {
    size: u64,
    last_leaf: Digest,
    peaks: Vec<Digest>,
}

const STATE_FILE: &str = "verified.json";

/// Verifies every tenant of the store.
pub fn verify_store(store: &Store, options: VerifyOptions) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    for tenant in store.tenants() {
        report.tenants.push(verify_tenant(store, &tenant, options)?);
    }
    for (id, reason) in store.unavailable_tenants() {
        report.tenants.push(TenantReport {
            tenant: id.clone(),
            problems: vec![Problem {
                tenant: id.clone(),
                kind: ProblemKind::TenantUnavailable,
                seq: None,
                digest: None,
                path: Some(store.dir().join("tenants").join(id)),
                message: reason.clone(),
            }],
            ..TenantReport::default()
        });
    }
    report.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(report)
}

struct Ctx<'a> {
    tenant: &'a Tenant,
    report: TenantReport,
}

impl Ctx<'_> {
    fn problem(
        &mut self,
        kind: ProblemKind,
        seq: Option<u64>,
        digest: Option<Digest>,
        path: Option<&Path>,
        message: impl Into<String>,
    ) {
        self.report.problems.push(Problem {
            tenant: self.tenant.id().to_owned(),
            kind,
            seq,
            digest,
            path: path.map(Path::to_path_buf),
            message: message.into(),
        });
    }
}

/// Verifies one tenant.
pub fn verify_tenant(
    store: &Store,
    tenant: &Tenant,
    options: VerifyOptions,
) -> Result<TenantReport, StoreError> {
    let end = tenant.size();
    let state_path = tenant.dir().join(STATE_FILE);
    let state = if options.incremental {
        load_state(&state_path)
    } else {
        None
    };
    let mut ctx = Ctx {
        tenant,
        report: TenantReport {
            tenant: tenant.id().to_owned(),
            ..TenantReport::default()
        },
    };

    // Where to start: the beginning, or just after the last verified entry.
    let (mut frontier, start, mut prev) = match &state {
        Some(s) if s.size <= end && s.size > 0 => {
            match (
                tenant.index().location(s.size - 1)?,
                CompactRange::from_parts(s.size, s.peaks.clone()),
            ) {
                // Resume only if the last verified entry is still the one verified then.
                (Some(loc), Ok(range))
                    if tenant.journal().read_at(loc).map(|r| r.leaf).ok() == Some(s.last_leaf) =>
                {
                    (
                        range,
                        Some((loc, s.size - 1, s.last_leaf)),
                        Some(s.last_leaf),
                    )
                }
                _ => (CompactRange::new(), None, None),
            }
        }
        _ => (CompactRange::new(), None, None),
    };
    if start.is_none() {
        prev = Some(Digest::ZERO);
    }
    ctx.report.from_seq = frontier.size();

    let checkpoints: Vec<(u64, PathBuf)> = tenant
        .checkpoint_files()?
        .into_iter()
        .filter(|(s, _)| *s > frontier.size() || (*s == 0 && frontier.size() == 0))
        .collect();
    let mut pending_cps = checkpoints.into_iter().peekable();

    // A fresh index to compare with the live one (full runs only).
    let rebuilt = if options.index && start.is_none() {
        let idx = Index::temporary()?;
        Some((idx.tenant(tenant.id())?, idx))
    } else {
        None
    };
    let projection = store.options().projection.clone();
    let mut seen_content: HashSet<Digest> = HashSet::new();
    let mut journal_ok = true;

    // Checkpoints at size 0 (before any entry).
    while let Some((size, path)) = pending_cps.next_if(|(s, _)| *s == frontier.size()) {
        check_checkpoint(&mut ctx, size, &path, &frontier.root());
    }

    let mut expected_seq = frontier.size();
    let mut last_micros = i64::MIN;
    let mut redacted: Vec<(Digest, u64, PathBuf)> = Vec::new();
    let mut destroyed: HashSet<Digest> = HashSet::new();
    let segments = journal::list_segments(tenant.journal().dir())?;
    for (first, path) in segments {
        if expected_seq >= end {
            break;
        }
        let mut reader = match start {
            Some((loc, _, _)) if first < loc.segment => continue,
            Some((loc, _, _)) if first == loc.segment => match open_after(&path, loc) {
                Ok(r) => r,
                Err(e) => {
                    journal_ok = false;
                    ctx.problem(
                        ProblemKind::JournalDamaged,
                        Some(expected_seq),
                        None,
                        Some(&path),
                        e.to_string(),
                    );
                    continue;
                }
            },
            _ => match SegmentReader::open(&path) {
                Ok(r) => {
                    if r.first_seq() != expected_seq {
                        journal_ok = false;
                        ctx.problem(
                            ProblemKind::ChainBroken,
                            Some(expected_seq),
                            None,
                            Some(&path),
                            format!(
                                "segment starts at entry {}, expected {expected_seq}",
                                r.first_seq()
                            ),
                        );
                    }
                    r
                }
                Err(e) => {
                    journal_ok = false;
                    ctx.problem(
                        ProblemKind::JournalDamaged,
                        Some(expected_seq),
                        None,
                        Some(&path),
                        e.to_string(),
                    );
                    continue;
                }
            },
        };
        loop {
            if expected_seq >= end {
                break;
            }
            let offset = reader.offset();
            let raw = match reader.next_record() {
                Ok(None) => break,
                Ok(Some((_, raw))) => raw,
                Err(e) => {
                    journal_ok = false;
                    let at = match &e {
                        SegmentError::Damaged { offset, .. }
                        | SegmentError::Malformed { offset, .. }
                        | SegmentError::Incomplete { offset, .. } => *offset,
                        SegmentError::Io { .. } => offset,
                    };
                    ctx.problem(
                        ProblemKind::JournalDamaged,
                        Some(expected_seq),
                        None,
                        Some(&path),
                        e.to_string(),
                    );
                    // Count the damaged record as one entry so later numbering stays right,
                    // and resume at the next well-framed record, if any.
                    match resync(&path, at) {
                        Some(r) => {
                            expected_seq += 1;
                            prev = None;
                            let _ = frontier.push(Digest::ZERO);
                            reader = r;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            let leaf = leaf_hash(&raw.entry_bytes);
            let record = journal::decode_record(&path, offset, raw);
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    journal_ok = false;
                    ctx.problem(
                        ProblemKind::JournalDamaged,
                        Some(expected_seq),
                        None,
                        Some(&path),
                        e.to_string(),
                    );
                    let _ = frontier.push(leaf);
                    prev = Some(leaf);
                    expected_seq += 1;
                    continue;
                }
            };
            let seq = record.entry.seq;
            if seq != expected_seq {
                journal_ok = false;
                ctx.problem(
                    ProblemKind::ChainBroken,
                    Some(seq),
                    None,
                    Some(&path),
                    format!(
                        "sequence number {seq} at byte {offset} where {expected_seq} was expected"
                    ),
                );
            }
            if let Some(p) = prev {
                if record.entry.prev != p {
                    journal_ok = false;
                    ctx.problem(ProblemKind::ChainBroken, Some(seq), Some(record.entry.prev), Some(&path),
                        format!("previous-entry hash does not match the leaf hash {p} of the entry before"));
                }
            }
            let micros = record.entry.time.timestamp_micros();
            if micros < last_micros {
                ctx.problem(
                    ProblemKind::ChainBroken,
                    Some(seq),
                    None,
                    Some(&path),
                    "entry time is earlier than the entry before: time never goes backwards in a journal",
                );
            }
            last_micros = micros;
            for a in record.attachments.iter().filter(|a| a.bytes.is_none()) {
                redacted.push((a.digest, seq, path.clone()));
            }
            for p in &record.entry.payloads {
                if p.kind == PayloadKind::Reference && p.role == ROLE_DESTROYED {
                    destroyed.insert(p.digest);
                }
            }
            prev = Some(record.leaf);
            let nodes = frontier.push(record.leaf).unwrap_or_default();
            expected_seq += 1;
            ctx.report.entries += 1;
            ctx.report.destroyed_records += record
                .attachments
                .iter()
                .filter(|a| a.bytes.is_none())
                .count() as u64;

            if let Some((rebuilt_tenant, _)) = &rebuilt {
                // A projection error shows up as an index difference in the comparison.
                let _ = rebuilt_tenant.apply(&record, &nodes, projection.as_ref());
            } else if options.content {
                // Incremental: hash the content the new entries refer to, once each.
                for p in record
                    .entry
                    .payloads
                    .iter()
                    .filter(|p| p.kind == PayloadKind::Content)
                {
                    // Content released by a later destruction is gone on purpose.
                    let live = tenant.index().content_ref(&p.digest)?.is_some();
                    if live && seen_content.insert(p.digest) {
                        check_content(&mut ctx, &p.digest, p.size, Some(seq));
                    }
                }
            }
            while let Some((size, cp_path)) = pending_cps.next_if(|(s, _)| *s == frontier.size()) {
                check_checkpoint(&mut ctx, size, &cp_path, &frontier.root());
            }
        }
    }
    // Removed metadata records must be accounted for by a destruction entry (full runs: an
    // incremental run may not see the destruction of an earlier record's bytes).
    if start.is_none() {
        for (digest, seq, path) in redacted {
            if !destroyed.contains(&digest) {
                ctx.problem(
                    ProblemKind::JournalDamaged,
                    Some(seq),
                    Some(digest),
                    Some(&path),
                    "attachment removed, but no destruction entry lists it",
                );
            }
        }
    }
    if expected_seq < end {
        journal_ok = false;
        ctx.problem(
            ProblemKind::ChainBroken,
            Some(expected_seq),
            None,
            Some(tenant.journal().dir()),
            format!("journal ends at entry {expected_seq}, but {end} entries were acknowledged"),
        );
    }
    for (size, path) in pending_cps {
        if size > end {
            ctx.problem(ProblemKind::CheckpointBeyondJournal, Some(size), None, Some(&path),
                format!("checkpoint covers {size} entries but the journal holds {end}: entries were removed"));
        }
    }

    if let Some((rebuilt_tenant, _idx)) = &rebuilt {
        if options.content {
            for item in rebuilt_tenant.content_refs() {
                let (digest, r) = item?;
                check_content(&mut ctx, &digest, r.size, None);
            }
        }
        if journal_ok {
            compare_indexes(&mut ctx, tenant.index(), rebuilt_tenant)?;
        }
    }
    if options.content && start.is_none() {
        let reference = rebuilt.as_ref().map(|(t, _)| t).unwrap_or(tenant.index());
        for item in tenant.content().iter() {
            match item {
                Ok(digest) => {
                    if reference.content_ref(&digest)?.is_none() {
                        ctx.report.unreferenced_objects += 1;
                    }
                }
                Err(e) => ctx.problem(ProblemKind::ContentCorrupt, None, None, None, e.to_string()),
            }
        }
    }

    if ctx.report.problems.is_empty() && expected_seq == end {
        let st = VerifiedState {
            size: frontier.size(),
            last_leaf: prev.unwrap_or(Digest::ZERO),
            peaks: frontier.peaks().to_vec(),
        };
        if let Ok(bytes) = serde_json::to_vec(&st) {
            fsutil::write_file_atomic(&state_path, &bytes, 0o644)?;
        }
    }
    Ok(ctx.report)
}

fn load_state(path: &Path) -> Option<VerifiedState> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Opens a segment just past the record at `loc` (the last verified one).
fn open_after(path: &Path, loc: Location) -> Result<SegmentReader, StoreError> {
    let mut r = SegmentReader::open_at(path, loc.offset).map_err(journal::JournalError::from)?;
    r.next_record().map_err(journal::JournalError::from)?;
    Ok(r)
}

/// After damage at `offset`, finds the next well-framed record and opens a reader there.
fn resync(path: &Path, offset: u64) -> Option<SegmentReader> {
    let bytes = fs::read(path).at("read", path).ok()?;
    let from = (offset as usize + 1).min(bytes.len());
    let pos = segment::contains_valid_record(&bytes[from..])?;
    SegmentReader::open_at(path, (from + pos) as u64).ok()
}

fn check_checkpoint(ctx: &mut Ctx<'_>, size: u64, path: &Path, root: &Digest) {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            ctx.problem(
                ProblemKind::CheckpointUnreadable,
                Some(size),
                None,
                Some(path),
                e.to_string(),
            );
            return;
        }
    };
    let verifier = ctx.tenant.verifier();
    match Checkpoint::open(&bytes, &verifier) {
        Ok((cp, _)) => {
            ctx.report.checkpoints += 1;
            if cp.size != size {
                ctx.problem(
                    ProblemKind::CheckpointUnreadable,
                    Some(size),
                    None,
                    Some(path),
                    format!(
                        "file name says size {size}, the signed body says {}",
                        cp.size
                    ),
                );
            } else if cp.origin != ctx.tenant.origin() {
                ctx.problem(
                    ProblemKind::CheckpointUnreadable,
                    Some(size),
                    None,
                    Some(path),
                    format!(
                        "origin {:?} is not this tenant's {:?}",
                        cp.origin,
                        ctx.tenant.origin()
                    ),
                );
            } else if &cp.root != root {
                ctx.problem(
                    ProblemKind::CheckpointRoot,
                    Some(size),
                    Some(cp.root),
                    Some(path),
                    format!(
                        "signed root {} differs from the root {root} recomputed from the journal",
                        cp.root
                    ),
                );
            }
        }
        Err(crate::note::NoteError::BadSignature { .. })
        | Err(crate::note::NoteError::NoKnownSignature) => {
            ctx.problem(
                ProblemKind::CheckpointSignature,
                Some(size),
                None,
                Some(path),
                "signature does not verify with the tenant's key",
            );
        }
        Err(e) => ctx.problem(
            ProblemKind::CheckpointUnreadable,
            Some(size),
            None,
            Some(path),
            e.to_string(),
        ),
    }
}

fn check_content(ctx: &mut Ctx<'_>, digest: &Digest, expected_size: u64, seq: Option<u64>) {
    let store = ctx.tenant.content();
    match store.verify_object(digest) {
        Ok(size) if size != expected_size => {
            let path = store.path_of(digest);
            ctx.problem(
                ProblemKind::ContentCorrupt,
                seq,
                Some(*digest),
                Some(&path),
                format!("object is {size} bytes, the journal says {expected_size}"),
            );
        }
        Ok(size) => {
            ctx.report.content_objects += 1;
            ctx.report.content_bytes += size;
        }
        Err(ContentError::NotFound { .. }) => {
            let path = store.path_of(digest);
            ctx.problem(
                ProblemKind::ContentMissing,
                seq,
                Some(*digest),
                Some(&path),
                "referenced content object is missing",
            );
        }
        Err(e) => {
            let path = store.path_of(digest);
            ctx.problem(
                ProblemKind::ContentCorrupt,
                seq,
                Some(*digest),
                Some(&path),
                e.to_string(),
            );
        }
    }
}

fn compare_indexes(
    ctx: &mut Ctx<'_>,
    live: &TenantIndex,
    rebuilt: &TenantIndex,
) -> Result<(), StoreError> {
    let mut a = live.iter_all();
    let mut b = rebuilt.iter_all();
    let mut x = a.next().transpose()?;
    let mut y = b.next().transpose()?;
    let mut diffs = 0usize;
    loop {
        let (report, advance_a, advance_b) = match (&x, &y) {
            (None, None) => break,
            (Some((k, _)), None) => (
                Some(format!("key {} only in the live index", show_key(k))),
                true,
                false,
            ),
            (None, Some((k, _))) => (
                Some(format!("key {} missing from the live index", show_key(k))),
                false,
                true,
            ),
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => (
                    Some(format!("key {} only in the live index", show_key(ka))),
                    true,
                    false,
                ),
                std::cmp::Ordering::Greater => (
                    Some(format!("key {} missing from the live index", show_key(kb))),
                    false,
                    true,
                ),
                std::cmp::Ordering::Equal if va != vb => (
                    Some(format!(
                        "value of key {} differs from the journal",
                        show_key(ka)
                    )),
                    true,
                    true,
                ),
                std::cmp::Ordering::Equal => (None, true, true),
            },
        };
        if let Some(msg) = report {
            diffs += 1;
            if diffs <= MAX_INDEX_DIFFS {
                ctx.problem(ProblemKind::IndexMismatch, None, None, None, msg);
            }
        }
        if advance_a {
            x = a.next().transpose()?;
        }
        if advance_b {
            y = b.next().transpose()?;
        }
    }
    if diffs > MAX_INDEX_DIFFS {
        ctx.problem(ProblemKind::IndexMismatch, None, None, None,
            format!("{} more index differences (run `akte rebuild-index` to recreate the index from the journal)", diffs - MAX_INDEX_DIFFS));
    }
    Ok(())
}

fn show_key(k: &[u8]) -> String {
    match k.first() {
        Some(p) if p.is_ascii_graphic() => format!("{}:{}", *p as char, hex::encode(&k[1..])),
        _ => hex::encode(k),
    }
}
