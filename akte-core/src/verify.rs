//! Verification of a whole store, or of what is new since the last verification.
//!
//! Checks, per tenant: segment headers and record checksums, sequence numbers and chain
//! links, attachments against their digests, every stored checkpoint (signature with the
//! tenant's key, and root against the root recomputed from the entries), the SHA-256 of
//! every referenced content object, and the live index against an index rebuilt from the
//! journal. It streams: memory does not grow with the number of entries or objects (the
//! rebuilt index lives in a temporary redb database on disk).
//!
//! Content objects, the expensive part, are checked on all cores: worker threads read,
//! decompress and hash one object each, streaming it through a fixed buffer, fed through a
//! bounded window of at most [`CONTENT_WINDOW`] checks. Their outcomes are reported in the
//! order the checks were asked for, so the report is the same, problem for problem, as a
//! single-threaded run. On full runs the comparison of the live index with the rebuilt one
//! and the scan for unreferenced objects run beside the content checks.
//!
//! Every problem is collected with its location; verification goes on after a problem
//! wherever the rest can still be checked.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::panic::{self, AssertUnwindSafe};

use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, Scope};

use crate::backend::content::{ContentError, StructureProblem};
use crate::backend::journal::DamageCount;
use crate::backend::{ContentBackend, JournalScanItem};
use crate::digest::Digest;
use crate::entry::{PayloadKind, ROLE_DESTROYED};
use crate::index::TenantIndex;
use crate::keys::VerifierKey;
use crate::merkle::CompactRange;
use crate::note::Checkpoint;
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

/// What an archivist trusts from outside the store, for one tenant: the agency's verifier
/// key (from a separate channel) and a checkpoint they hold (kept from an earlier
/// transfer, cosigned by a witness). Without it verification can only show that the store
/// is consistent with itself: someone who replaces the key and re-signs every checkpoint,
/// or cuts the journal back together with its checkpoints, is not found.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The tenant.
    pub tenant: String,
    /// The verifier key the tenant's checkpoints must verify with.
    pub key: Option<VerifierKey>,
    /// A signed checkpoint note the journal must extend.
    pub checkpoint: Option<Vec<u8>>,
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
    /// A pack file is not well formed: its header, a record header, a record running past
    /// the end, a removed record whose payload is not zeros, or a file that is not a pack.
    PackDamaged,
    /// The live index differs from the index rebuilt from the journal.
    IndexMismatch,
    /// The tenant could not be opened at all (the message names file and place).
    TenantUnavailable,
    /// The store's verifier key is not the one the caller trusts.
    UntrustedKey,
    /// The journal does not extend a checkpoint the caller holds (shorter, or another
    /// root at its size), or that checkpoint does not verify.
    AnchorMismatch,
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
    /// Where, as the backend names it (a file, with the byte offset where it helps), if
    /// anywhere in particular.
    pub place: Option<String>,
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
        if let Some(p) = &self.place {
            write!(f, " in {p}")?;
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

/// Name of the tenant's blob that holds where the last clean run ended.
const STATE_BLOB: &str = "verified.json";

/// Verifies every tenant of the store.
pub fn verify_store(store: &Store, options: VerifyOptions) -> Result<VerifyReport, StoreError> {
    verify_store_trusting(store, options, &[])
}

/// Verifies every tenant of the store, checking the tenants named in `trust` against the
/// key and checkpoint given there (a full run for those, whatever `options` say).
pub fn verify_store_trusting(
    store: &Store,
    options: VerifyOptions,
    trust: &[Trust],
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    for tenant in store.tenants() {
        let t = trust.iter().find(|t| t.tenant == tenant.id());
        report
            .tenants
            .push(verify_tenant_trusting(store, &tenant, options, t)?);
    }
    for (id, reason) in store.unavailable_tenants() {
        report.tenants.push(TenantReport {
            tenant: id.clone(),
            problems: vec![Problem {
                tenant: id.clone(),
                kind: ProblemKind::TenantUnavailable,
                seq: None,
                digest: None,
                place: Some(store.backend().describe()),
                message: reason.clone(),
            }],
            ..TenantReport::default()
        });
    }
    report.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(report)
}

/// Most content checks queued, running, or finished but not yet reported (their place in
/// the order is not reached). Bounds the memory of a run whatever the number of objects.
pub const CONTENT_WINDOW: usize = 256;

/// What checking one content object found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Header, length and digest check out; the object's original length.
    Size(u64),
    /// No object file.
    Missing,
    /// Unreadable or wrong bytes: why.
    Corrupt(String),
}

/// Reads, decompresses and hashes one object, in a fixed amount of memory.
fn check_object(content: &dyn ContentBackend, digest: &Digest) -> Outcome {
    match panic::catch_unwind(AssertUnwindSafe(|| content.verify_object(digest))) {
        Ok(Ok(size)) => Outcome::Size(size),
        Ok(Err(ContentError::NotFound { .. })) => Outcome::Missing,
        Ok(Err(e)) => Outcome::Corrupt(e.to_string()),
        Err(_) => Outcome::Corrupt("checking the object failed (internal error)".into()),
    }
}

/// Number of threads checking content: the available cores.
fn content_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Worker threads checking content objects: tickets in, outcomes out.
struct Pool {
    jobs: mpsc::SyncSender<(u64, Digest)>,
    done: mpsc::Receiver<(u64, Outcome)>,
}

impl Pool {
    /// Starts `threads` workers in `scope` over `content`; they stop when the pool is dropped.
    fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        content: &'scope dyn ContentBackend,
        threads: usize,
    ) -> Pool {
        let (jobs, job_rx) = mpsc::sync_channel::<(u64, Digest)>(CONTENT_WINDOW);
        let (done_tx, done) = mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((ticket, digest)) = job else { return };
                if done_tx
                    .send((ticket, check_object(content, &digest)))
                    .is_err()
                {
                    return;
                }
            });
        }
        Pool { jobs, done }
    }
}

/// Where an item of an [`Ordered`] queue stands.
enum Step {
    /// Nothing to wait for.
    Ready,
    /// Its content check is out.
    Waiting(Digest),
    /// Its content check came back.
    Done(Outcome),
}

/// Items in the order they arose, some waiting for a content check on the pool; they come
/// out in that order, each once everything before it is done.
struct Ordered<'a, T> {
    content: &'a dyn ContentBackend,
    pool: Option<Pool>,
    queue: VecDeque<(T, Step)>,
    /// Ticket of the queue's front.
    front: u64,
    /// Checks sent whose outcome has not come back.
    in_flight: usize,
}

impl<'a, T> Ordered<'a, T> {
    fn new(content: &'a dyn ContentBackend, pool: Option<Pool>) -> Self {
        Ordered {
            content,
            pool,
            queue: VecDeque::new(),
            front: 0,
            in_flight: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the caller must take outcomes (and items) before adding a check.
    fn full(&self) -> bool {
        self.queue.len() >= CONTENT_WINDOW && self.in_flight > 0
    }

    /// Adds an item with nothing to check, or with a known outcome.
    fn push(&mut self, item: T, outcome: Option<Outcome>) {
        self.queue
            .push_back((item, outcome.map_or(Step::Ready, Step::Done)));
    }

    /// Adds an item whose object `digest` is to be checked (on the pool, if there is one).
    fn push_check(&mut self, item: T, digest: Digest) {
        let ticket = self.front + self.queue.len() as u64;
        self.queue.push_back((item, Step::Waiting(digest)));
        let sent = self
            .pool
            .as_ref()
            .is_some_and(|pool| pool.jobs.send((ticket, digest)).is_ok());
        if sent {
            self.in_flight += 1;
        } else {
            self.abandon_pool();
        }
    }

    /// Takes outcomes that came back; waits for one first if `block` and any is out.
    fn receive(&mut self, block: bool) {
        let mut block = block && self.in_flight > 0;
        loop {
            let Some(pool) = &self.pool else { return };
            let msg = if block {
                pool.done
                    .recv()
                    .map_err(|_| mpsc::TryRecvError::Disconnected)
            } else {
                pool.done.try_recv()
            };
            block = false;
            match msg {
                Ok((ticket, outcome)) => {
                    self.in_flight -= 1;
                    let at = (ticket - self.front) as usize;
                    if let Some((_, step)) = self.queue.get_mut(at) {
                        *step = Step::Done(outcome);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => return self.abandon_pool(),
            }
        }
    }

    /// The workers are gone (they never should be): checks what is out here instead.
    fn abandon_pool(&mut self) {
        self.pool = None;
        self.in_flight = 0;
        for (_, step) in self.queue.iter_mut() {
            if let Step::Waiting(digest) = step {
                *step = Step::Done(check_object(self.content, digest));
            }
        }
    }

    /// The front item, if everything it waits for is done.
    fn pop_ready(&mut self) -> Option<(T, Option<Outcome>)> {
        if matches!(self.queue.front(), None | Some((_, Step::Waiting(_)))) {
            return None;
        }
        let (item, step) = self.queue.pop_front()?;
        self.front += 1;
        Some((
            item,
            match step {
                Step::Done(outcome) => Some(outcome),
                _ => None,
            },
        ))
    }

    /// Gives up the pool once nothing is out.
    fn take_pool(&mut self) -> Option<Pool> {
        while self.in_flight > 0 {
            self.receive(true);
        }
        self.pool.take()
    }
}

/// An item of the report's order: a problem, or a content check to report.
enum Pending {
    Problem(Problem),
    Content {
        digest: Digest,
        expected: u64,
        seq: Option<u64>,
    },
}

struct Ctx<'a> {
    tenant: &'a Tenant,
    /// The key checkpoints must verify with: the trusted one, else the store's own.
    verifier: VerifierKey,
    report: TenantReport,
    /// Problems and content checks not yet in the report. A problem waits here only behind
    /// a content check whose outcome is still out.
    order: Ordered<'a, Pending>,
}

impl Ctx<'_> {
    fn problem(
        &mut self,
        kind: ProblemKind,
        seq: Option<u64>,
        digest: Option<Digest>,
        place: Option<&str>,
        message: impl Into<String>,
    ) {
        let p = self.new_problem(kind, seq, digest, place, message);
        if self.order.is_empty() {
            self.report.problems.push(p);
        } else {
            self.order.push(Pending::Problem(p), None);
        }
    }

    fn new_problem(
        &self,
        kind: ProblemKind,
        seq: Option<u64>,
        digest: Option<Digest>,
        place: Option<&str>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            tenant: self.tenant.id().to_owned(),
            kind,
            seq,
            digest,
            place: place.map(str::to_owned),
            message: message.into(),
        }
    }

    /// Checks the object for `digest` (on a worker when there are any); its outcome is
    /// reported in this call's place in the order.
    fn check_content(&mut self, digest: &Digest, expected: u64, seq: Option<u64>) {
        while self.order.full() {
            self.order.receive(true);
            self.drain();
        }
        let item = Pending::Content {
            digest: *digest,
            expected,
            seq,
        };
        self.order.push_check(item, *digest);
        self.order.receive(false);
        self.drain();
    }

    /// Reports the outcome of a check of `digest` made earlier, in this call's place.
    fn content_checked(&mut self, digest: &Digest, expected: u64, outcome: Outcome) {
        let item = Pending::Content {
            digest: *digest,
            expected,
            seq: None,
        };
        self.order.push(item, Some(outcome));
        self.drain();
    }

    /// Waits for every check that is out and reports everything queued.
    fn finish(&mut self) {
        let pool = self.order.take_pool();
        self.drain();
        self.order.pool = pool;
    }

    /// Moves the ready front of the order into the report.
    fn drain(&mut self) {
        while let Some((item, outcome)) = self.order.pop_ready() {
            match (item, outcome) {
                (Pending::Problem(p), _) => self.report.problems.push(p),
                (
                    Pending::Content {
                        digest,
                        expected,
                        seq,
                    },
                    Some(outcome),
                ) => self.content_outcome(&digest, expected, seq, outcome),
                (Pending::Content { .. }, None) => {}
            }
        }
    }

    /// Reports one content check that has reached the front of the order: its problem, if
    /// any, goes straight into the report.
    fn content_outcome(
        &mut self,
        digest: &Digest,
        expected: u64,
        seq: Option<u64>,
        outcome: Outcome,
    ) {
        let (kind, message) = match outcome {
            Outcome::Size(size) if size != expected => (
                ProblemKind::ContentCorrupt,
                format!("object is {size} bytes, the journal says {expected}"),
            ),
            Outcome::Size(size) => {
                self.report.content_objects += 1;
                self.report.content_bytes += size;
                return;
            }
            Outcome::Missing => (
                ProblemKind::ContentMissing,
                "referenced content object is missing".to_owned(),
            ),
            Outcome::Corrupt(message) => (ProblemKind::ContentCorrupt, message),
        };
        // Where to look: the backend names the object file or the pack record.
        let place = self.tenant.content().describe(digest);
        let p = self.new_problem(kind, seq, Some(*digest), Some(&place), message);
        self.report.problems.push(p);
    }
}

/// Outcomes of content checks made ahead, while the journal is read and the index rebuilt,
/// for the objects the live index refers to: in digest order, in an unnamed temporary file
/// (so memory stays bounded however many objects there are).
struct Prefetched {
    reader: BufReader<File>,
    next: Option<(Digest, Outcome)>,
}

/// Checks every object the live index refers to on `pool`, in digest order, and writes the
/// outcomes to a temporary file. `None` if that fails: the caller then checks everything.
/// Gives the pool back once nothing is out.
fn prefetch(tenant: &Tenant, pool: Pool) -> (Option<Prefetched>, Option<Pool>) {
    let mut order: Ordered<'_, Digest> = Ordered::new(tenant.content(), Some(pool));
    let file = prefetch_into(tenant, &mut order);
    (file.ok(), order.take_pool())
}

fn prefetch_into(tenant: &Tenant, order: &mut Ordered<'_, Digest>) -> io::Result<Prefetched> {
    fn write_ready(order: &mut Ordered<'_, Digest>, out: &mut impl Write) -> io::Result<()> {
        while let Some((digest, outcome)) = order.pop_ready() {
            if let Some(outcome) = outcome {
                write_outcome(out, &digest, &outcome)?;
            }
        }
        Ok(())
    }
    let mut out = BufWriter::new(temporary_file()?);
    for item in tenant.index().content_refs() {
        // A damaged live index ends the run ahead; the rest is checked afterwards.
        let Ok((digest, _)) = item else { break };
        while order.full() {
            order.receive(true);
            write_ready(order, &mut out)?;
        }
        order.push_check(digest, digest);
        order.receive(false);
        write_ready(order, &mut out)?;
    }
    let pool = order.take_pool();
    write_ready(order, &mut out)?;
    order.pool = pool;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(file);
    let next = read_outcome(&mut reader)?;
    Ok(Prefetched { reader, next })
}

impl Prefetched {
    /// The outcome for `digest`; asked in increasing digest order.
    fn take(&mut self, digest: &Digest) -> Option<Outcome> {
        while let Some((d, _)) = &self.next {
            match d.0.cmp(&digest.0) {
                std::cmp::Ordering::Less => self.advance(),
                std::cmp::Ordering::Equal => {
                    let outcome = self.next.take().map(|(_, o)| o);
                    self.advance();
                    return outcome;
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    fn advance(&mut self) {
        self.next = read_outcome(&mut self.reader).unwrap_or(None);
    }
}

/// A file in the system's temporary directory, removed at once (it lives while open).
fn temporary_file() -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "akte-verify-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    fs::remove_file(&path)?;
    Ok(file)
}

/// Digest (32 bytes), tag (1), then the size (8, little-endian) or a message (length 4, bytes).
fn write_outcome(out: &mut impl Write, digest: &Digest, outcome: &Outcome) -> io::Result<()> {
    out.write_all(&digest.0)?;
    match outcome {
        Outcome::Size(size) => {
            out.write_all(&[0])?;
            out.write_all(&size.to_le_bytes())
        }
        Outcome::Missing => out.write_all(&[1]),
        Outcome::Corrupt(msg) => {
            out.write_all(&[2])?;
            out.write_all(&(msg.len() as u32).to_le_bytes())?;
            out.write_all(msg.as_bytes())
        }
    }
}

fn read_outcome(r: &mut impl Read) -> io::Result<Option<(Digest, Outcome)>> {
    let mut head = [0u8; 33];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let digest = Digest::from_slice(&head[..32])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "digest"))?;
    let outcome = match head[32] {
        0 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Outcome::Size(u64::from_le_bytes(b))
        }
        1 => Outcome::Missing,
        _ => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            let mut msg = vec![0u8; u32::from_le_bytes(b) as usize];
            r.read_exact(&mut msg)?;
            Outcome::Corrupt(String::from_utf8_lossy(&msg).into_owned())
        }
    };
    Ok(Some((digest, outcome)))
}

/// What the thread beside the content checks found: index differences, unreferenced
/// objects, and errors listing the content store.
#[derive(Default)]
struct SideReport {
    index_diffs: Vec<String>,
    unreferenced: u64,
    unlisted: Vec<String>,
    structure: Vec<StructureProblem>,
}

/// Compares the indexes (if `compare`) and counts objects `reference` does not refer to (if
/// `unreferenced`).
/// Times the live index is compared at most while the tenant is being written.
const COMPARE_ATTEMPTS: usize = 5;

/// Compares the live index with the reference rebuilt from the journal. A tenant written
/// during verification has a live index ahead of the reference (and changing during the
/// comparison): the reference catches up with the journal's provable end and the
/// comparison counts only if the live index stood at the reference's position before and
/// after it. If the tenant never holds still long enough, the comparison is left out (and
/// logged) rather than reporting differences that are only new entries.
fn compare_live_index(
    tenant: &Tenant,
    reference: &TenantIndex,
    projection: &dyn crate::index::Projection,
    mut frontier: CompactRange,
) -> Result<Vec<String>, StoreError> {
    let live = tenant.index();
    for _ in 0..COMPARE_ATTEMPTS {
        let end = tenant.size()?;
        let have = frontier.size();
        if end > have {
            let Some(start) = live.location(have)? else {
                continue;
            };
            for record in tenant.journal().iter(Some(start), end)? {
                let record = record?;
                let nodes = frontier.push(record.leaf).unwrap_or_default();
                // As in the main pass: a projection error shows up as a difference.
                let _ = reference.apply(&record, &nodes, projection);
                reference.flush_if_due()?;
            }
        }
        let n = frontier.size();
        if live.position()?.next_seq != n {
            continue;
        }
        let mut diffs = compare_indexes(live, reference)?;
        if let Some(d) = live.tree_difference(reference, n)? {
            diffs.push(d);
        }
        if live.position()?.next_seq == n {
            return Ok(diffs);
        }
    }
    tracing::warn!(
        tenant = %tenant.id(),
        "the live index was not compared: the tenant was written throughout verification"
    );
    Ok(Vec::new())
}

fn side_checks(
    tenant: &Tenant,
    reference: &TenantIndex,
    compare: Option<(&dyn crate::index::Projection, CompactRange)>,
    unreferenced: bool,
) -> Result<SideReport, StoreError> {
    let mut out = SideReport::default();
    if let Some((projection, frontier)) = compare {
        out.index_diffs = compare_live_index(tenant, reference, projection, frontier)?;
    }
    if unreferenced {
        // The structure of the stored content (pack files); payloads are checked by digest
        // with the rest of the content.
        match tenant.content().check_structure() {
            Ok(problems) => out.structure = problems,
            Err(e) => out.unlisted.push(e.to_string()),
        }
        for item in tenant.content().list() {
            match item {
                Ok(digest) => {
                    if reference.content_ref(&digest)?.is_none() {
                        out.unreferenced += 1;
                    }
                }
                Err(e) => out.unlisted.push(e.to_string()),
            }
        }
    }
    Ok(out)
}

/// Verifies one tenant.
pub fn verify_tenant(
    store: &Store,
    tenant: &Tenant,
    options: VerifyOptions,
) -> Result<TenantReport, StoreError> {
    verify_tenant_trusting(store, tenant, options, None)
}

/// Verifies one tenant against what the caller trusts (see [`Trust`]).
pub fn verify_tenant_trusting(
    store: &Store,
    tenant: &Tenant,
    options: VerifyOptions,
    trust: Option<&Trust>,
) -> Result<TenantReport, StoreError> {
    thread::scope(|scope| verify_tenant_in(scope, store, tenant, options, trust))
}

fn verify_tenant_in<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    store: &'env Store,
    tenant: &'env Tenant,
    options: VerifyOptions,
    trust: Option<&Trust>,
) -> Result<TenantReport, StoreError> {
    // Over a read-only backend (beside a running server, or a copy) the tenant has no
    // live index: every run is a full one against an index rebuilt here, the live index
    // is not compared, and nothing is recorded for an incremental run.
    let read_only = store.read_only();
    // Checkpoints are listed before the journal's length is taken: a server appending
    // meanwhile signs only entries already complete on disk, so none listed can lie
    // beyond `end` unless entries were removed.
    let stored_checkpoints = tenant.checkpoint_files()?;
    let end = tenant.size()?;
    let state = if options.incremental && trust.is_none() && !read_only {
        load_state(tenant)
    } else {
        None
    };
    let verifier = trust
        .and_then(|t| t.key.clone())
        .unwrap_or_else(|| tenant.verifier());
    let mut ctx = Ctx {
        tenant,
        verifier: verifier.clone(),
        report: TenantReport {
            tenant: tenant.id().to_owned(),
            ..TenantReport::default()
        },
        order: Ordered::new(tenant.content(), None),
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

    // What the caller trusts: the key, and a checkpoint the journal must extend.
    if verifier != tenant.verifier() {
        let place = tenant.meta().describe(crate::store::VERIFIER_KEY);
        ctx.problem(
            ProblemKind::UntrustedKey,
            None,
            None,
            Some(&place),
            format!(
                "the store's verifier key {} is not the trusted key {verifier}: its checkpoints prove nothing to you",
                tenant.verifier()
            ),
        );
    }
    // The stored verifier key must be the one the signing key makes: a missing or
    // replaced one would send archivists checking on their own to a wrong key.
    let pub_place = tenant.meta().describe(crate::store::VERIFIER_KEY);
    match tenant.meta().get(crate::store::VERIFIER_KEY) {
        Ok(Some(bytes)) => {
            let stored = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| VerifierKey::parse(t.trim_end()).ok());
            if stored.as_ref() != Some(&tenant.verifier()) {
                ctx.problem(
                    ProblemKind::UntrustedKey,
                    None,
                    None,
                    Some(&pub_place),
                    format!(
                        "the stored verifier key is not the one of the tenant's signing key {}",
                        tenant.verifier()
                    ),
                );
            }
        }
        Ok(None) => ctx.problem(
            ProblemKind::UntrustedKey,
            None,
            None,
            Some(&pub_place),
            "the tenant's verifier key is missing",
        ),
        Err(e) => ctx.problem(
            ProblemKind::UntrustedKey,
            None,
            None,
            Some(&pub_place),
            e.to_string(),
        ),
    }
    let mut anchor = None;
    if let Some(bytes) = trust.and_then(|t| t.checkpoint.as_ref()) {
        match Checkpoint::open(bytes, &verifier) {
            Ok((cp, _)) if cp.origin != tenant.origin() => ctx.problem(
                ProblemKind::AnchorMismatch,
                Some(cp.size),
                None,
                None,
                format!(
                    "the checkpoint you hold is of {:?}, not of this tenant's log {:?}",
                    cp.origin,
                    tenant.origin()
                ),
            ),
            Ok((cp, _)) => anchor = Some(cp),
            Err(e) => ctx.problem(
                ProblemKind::AnchorMismatch,
                None,
                None,
                None,
                format!("the checkpoint you hold does not verify with the trusted key: {e}"),
            ),
        }
    }
    let check_anchor = |ctx: &mut Ctx<'_>, anchor: &Option<Checkpoint>, frontier: &CompactRange| {
        if let Some(cp) = anchor {
            if cp.size == frontier.size() && cp.root != frontier.root() {
                ctx.problem(
                    ProblemKind::AnchorMismatch,
                    Some(cp.size),
                    Some(cp.root),
                    None,
                    format!(
                        "the journal's first {} entries hash to {}, not to the root {} of the checkpoint you hold: history was changed",
                        cp.size,
                        frontier.root(),
                        cp.root
                    ),
                );
            }
        }
    };
    check_anchor(&mut ctx, &anchor, &frontier);

    let checkpoints: Vec<(u64, String)> = stored_checkpoints
        .into_iter()
        .filter(|(s, _)| *s > frontier.size() || (*s == 0 && frontier.size() == 0))
        .collect();
    let mut pending_cps = checkpoints.into_iter().peekable();

    // Content checks run on a pool of workers. On full runs with the index comparison they
    // start at once, on what the live index refers to, beside the journal scan and rebuild;
    // otherwise they are asked for as the scan comes upon them.
    let threads = content_threads();
    let full_index = (options.index || read_only) && start.is_none();
    let prefetching = (options.content && full_index).then(|| {
        scope.spawn(move || prefetch(tenant, Pool::start(scope, tenant.content(), threads)))
    });
    if options.content && !full_index {
        ctx.order.pool = Some(Pool::start(scope, tenant.content(), threads));
    }

    // A fresh index to compare with the live one (full runs only).
    let rebuilt = if full_index {
        Some(TenantIndex::new(store.backend().scratch_index()?))
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
    let mut redacted: Vec<(Digest, u64, String)> = Vec::new();
    let mut destroyed: HashSet<Digest> = HashSet::new();
    for item in tenant
        .journal()
        .scan(start.map(|(loc, seq, _)| (loc, seq)), end)
    {
        let record = match item {
            JournalScanItem::Boundary { place, first_seq } => {
                if first_seq != expected_seq {
                    journal_ok = false;
                    ctx.problem(
                        ProblemKind::ChainBroken,
                        Some(expected_seq),
                        None,
                        Some(&place),
                        format!("segment starts at entry {first_seq}, expected {expected_seq}"),
                    );
                }
                continue;
            }
            JournalScanItem::Damaged {
                place,
                reason,
                counts,
            } => {
                journal_ok = false;
                ctx.problem(
                    ProblemKind::JournalDamaged,
                    Some(expected_seq),
                    None,
                    Some(&place),
                    reason,
                );
                // A damaged record counts as one entry so later numbering stays right.
                match counts {
                    DamageCount::Nothing => {}
                    DamageCount::UnknownEntry => {
                        expected_seq += 1;
                        prev = None;
                        let _ = frontier.push(Digest::ZERO);
                    }
                    DamageCount::Entry(leaf) => {
                        let _ = frontier.push(leaf);
                        prev = Some(leaf);
                        expected_seq += 1;
                    }
                }
                continue;
            }
            JournalScanItem::Record { record, place } => (record, place),
        };
        let (record, path) = record;
        let path = path.as_str();
        let seq = record.entry.seq;
        if seq != expected_seq {
            journal_ok = false;
            ctx.problem(
                ProblemKind::ChainBroken,
                Some(seq),
                None,
                Some(path),
                format!(
                    "sequence number {seq} at {} where {expected_seq} was expected",
                    tenant.journal().describe_location(record.location)
                ),
            );
        }
        if let Some(p) = prev {
            if record.entry.prev != p {
                journal_ok = false;
                ctx.problem(
                    ProblemKind::ChainBroken,
                    Some(seq),
                    Some(record.entry.prev),
                    Some(path),
                    format!(
                        "previous-entry hash does not match the leaf hash {p} of the entry before"
                    ),
                );
            }
        }
        let micros = record.entry.time.timestamp_micros();
        if micros < last_micros {
            ctx.problem(
                ProblemKind::ChainBroken,
                Some(seq),
                None,
                Some(path),
                "entry time is earlier than the entry before: time never goes backwards in a journal",
            );
        }
        last_micros = micros;
        for a in record.attachments.iter().filter(|a| a.bytes.is_none()) {
            redacted.push((a.digest, seq, path.to_owned()));
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

        if let Some(rebuilt_tenant) = &rebuilt {
            // A projection error shows up as an index difference in the comparison.
            let _ = rebuilt_tenant.apply(&record, &nodes, projection.as_ref());
            // Keeps the rebuilt index's memory bounded, however long the journal.
            rebuilt_tenant.flush_if_due()?;
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
                    ctx.check_content(&p.digest, p.size, Some(seq));
                }
            }
        }
        while let Some((size, cp_name)) = pending_cps.next_if(|(s, _)| *s == frontier.size()) {
            check_checkpoint(&mut ctx, size, &cp_name, &frontier.root());
        }
        check_anchor(&mut ctx, &anchor, &frontier);
    }
    if let Some(cp) = anchor.as_ref().filter(|cp| cp.size > frontier.size()) {
        ctx.problem(
            ProblemKind::AnchorMismatch,
            Some(cp.size),
            None,
            Some(&tenant.journal().describe()),
            format!(
                "the journal holds {} entries, but the checkpoint you hold covers {}: entries were removed",
                frontier.size(),
                cp.size
            ),
        );
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
            Some(&tenant.journal().describe()),
            format!("journal ends at entry {expected_seq}, but {end} entries were acknowledged"),
        );
    }
    for (size, name) in pending_cps {
        if size > end {
            let place = tenant.meta().describe(&name);
            ctx.problem(ProblemKind::CheckpointBeyondJournal, Some(size), None, Some(&place),
                format!("checkpoint covers {size} entries but the journal holds {end}: entries were removed"));
        }
    }
    // Witness cosignature lines of every stored checkpoint, old ones included: a witness
    // may cosign an old checkpoint at any time. Only lines by the tenant's key and by
    // registered (or removed) witnesses may be there, and all must verify.
    match tenant.verify_stored_cosignatures() {
        Ok(findings) => {
            for (size, path, reason) in findings {
                ctx.problem(
                    ProblemKind::CheckpointSignature,
                    Some(size),
                    None,
                    Some(&path),
                    reason,
                );
            }
        }
        Err(e) => ctx.problem(
            ProblemKind::CheckpointUnreadable,
            None,
            None,
            Some(&tenant.meta().describe("keys")),
            e.to_string(),
        ),
    }

    // The index comparison and the scan for unreferenced objects run beside the content
    // checks; their findings follow the content problems in the report, as they always did.
    let reference: &TenantIndex = rebuilt.as_ref().unwrap_or(tenant.index());
    let compare = rebuilt.is_some() && journal_ok && !read_only;
    let unreferenced = options.content && start.is_none();
    let side = thread::scope(|inner| {
        let side = (compare || unreferenced).then(|| {
            let compare = compare.then(|| (projection.as_ref(), frontier.clone()));
            inner.spawn(move || side_checks(tenant, reference, compare, unreferenced))
        });
        let (mut prefetched, pool) = match prefetching.map(|h| h.join()) {
            None => (None, None),
            Some(Ok(r)) => r,
            Some(Err(p)) => panic::resume_unwind(p),
        };
        if ctx.order.pool.is_none() {
            ctx.order.pool = pool;
        }
        if let Some(rebuilt_tenant) = &rebuilt {
            if options.content {
                // In the rebuilt index's order; what the live index missed is checked now.
                for item in rebuilt_tenant.content_refs() {
                    let (digest, r) = item?;
                    match prefetched.as_mut().and_then(|p| p.take(&digest)) {
                        Some(outcome) => ctx.content_checked(&digest, r.size, outcome),
                        None => ctx.check_content(&digest, r.size, None),
                    }
                }
            }
        }
        ctx.finish();
        match side.map(|h| h.join()) {
            None => Ok(None),
            Some(Ok(r)) => r.map(Some),
            Some(Err(p)) => panic::resume_unwind(p),
        }
    })?;
    ctx.order.pool = None;
    if let Some(side) = side {
        for msg in side.index_diffs {
            ctx.problem(ProblemKind::IndexMismatch, None, None, None, msg);
        }
        ctx.report.unreferenced_objects += side.unreferenced;
        for msg in side.unlisted {
            ctx.problem(ProblemKind::ContentCorrupt, None, None, None, msg);
        }
        for p in side.structure {
            let msg = match p.offset {
                Some(o) => format!("at byte {o}: {}", p.reason),
                None => p.reason,
            };
            ctx.problem(ProblemKind::PackDamaged, None, None, Some(&p.place), msg);
        }
    }

    if ctx.report.problems.is_empty() && expected_seq == end && !read_only {
        let st = VerifiedState {
            size: frontier.size(),
            last_leaf: prev.unwrap_or(Digest::ZERO),
            peaks: frontier.peaks().to_vec(),
        };
        if let Ok(bytes) = serde_json::to_vec(&st) {
            tenant.meta().put(STATE_BLOB, &bytes, false)?;
        }
    }
    Ok(ctx.report)
}

fn load_state(tenant: &Tenant) -> Option<VerifiedState> {
    let bytes = tenant.meta().get(STATE_BLOB).ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn check_checkpoint(ctx: &mut Ctx<'_>, size: u64, name: &str, root: &Digest) {
    let place = ctx.tenant.meta().describe(name);
    let path = place.as_str();
    let bytes = match ctx.tenant.meta().get(name) {
        Ok(Some(b)) => b,
        Ok(None) => {
            ctx.problem(
                ProblemKind::CheckpointUnreadable,
                Some(size),
                None,
                Some(path),
                "the stored checkpoint disappeared during verification",
            );
            return;
        }
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
    let verifier = ctx.verifier.clone();
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

/// Differences between the live and the rebuilt index, as messages (at most
/// [`MAX_INDEX_DIFFS`] one by one, then a count).
fn compare_indexes(live: &TenantIndex, rebuilt: &TenantIndex) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
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
                out.push(msg);
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
        out.push(format!("{} more index differences (run `akte rebuild-index` to recreate the index from the journal)", diffs - MAX_INDEX_DIFFS));
    }
    Ok(out)
}

fn show_key(k: &[u8]) -> String {
    match k.first() {
        Some(p) if p.is_ascii_graphic() => format!("{}:{}", *p as char, hex::encode(&k[1..])),
        _ => hex::encode(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryDraft, Payload};
    use crate::store::StoreOptions;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half the objects compressible (zstd), half not (raw).
                if seed.is_multiple_of(2) {
                    b"abcdefgh"[(x % 8) as usize]
                } else {
                    (x >> (i % 8)) as u8
                }
            })
            .collect()
    }

    fn add(tenant: &Tenant, data: &[u8]) -> Digest {
        let put = tenant.put_content(data).unwrap();
        tenant
            .append(
                EntryDraft {
                    actor: "test".into(),
                    kind: "test.document".into(),
                    object: String::new(),
                    payloads: vec![Payload {
                        kind: PayloadKind::Content,
                        role: "rendition".into(),
                        size: put.size,
                        digest: put.digest,
                    }],
                },
                vec![],
            )
            .unwrap();
        put.digest
    }

    /// Damages each object: a file is removed, changed or cut; a pack record has a byte
    /// of its payload changed (its first, last or middle byte).
    fn damage(dir: &tempfile::TempDir, tenant: &Tenant, digests: &[Digest]) {
        use std::os::unix::fs::FileExt;
        // A second view of the tenant's content directory finds where each object is.
        let content = crate::embedded::content::ContentStore::open(
            &dir.path().join("tenants").join(tenant.id()).join("content"),
        )
        .unwrap();
        for (k, d) in digests.iter().enumerate() {
            let place = content.place(d).unwrap().unwrap();
            let path = place.path.clone();
            if place.packed {
                let payload = place.len - crate::embedded::pack::RECORD_HEADER_LEN;
                let at = place.offset
                    + crate::embedded::pack::RECORD_HEADER_LEN
                    + [0, payload - 1, payload / 2][k % 3];
                let f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .unwrap();
                let mut b = [0u8];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
                continue;
            }
            match k % 3 {
                0 => fs::remove_file(&path).unwrap(),
                1 => {
                    let mut b = fs::read(&path).unwrap();
                    let last = b.len() - 1;
                    b[last] ^= 0x40;
                    fs::write(&path, b).unwrap();
                }
                _ => {
                    let b = fs::read(&path).unwrap();
                    fs::write(&path, &b[..b.len() - 1]).unwrap();
                }
            }
        }
    }

    /// More objects than the window, some large: the report lists the damaged ones in
    /// digest order, the same every run, and counts the rest.
    #[test]
    fn parallel_content_checks_report_in_a_deterministic_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let tenant = store.create_tenant("t").unwrap();
        let n = CONTENT_WINDOW + 150;
        let digests: Vec<Digest> = (0..n)
            .map(|i| {
                let len = if i % 50 == 7 { 700_000 } else { 100 + i * 37 };
                add(&tenant, &bytes(len, i as u64))
            })
            .collect();
        let clean = verify_store(&store, VerifyOptions::default()).unwrap();
        assert!(clean.is_clean(), "{clean:#?}");
        assert_eq!(clean.tenants[0].content_objects, n as u64);

        let victims: Vec<Digest> = digests.iter().copied().step_by(23).collect();
        damage(&dir, &tenant, &victims);
        let mut expected = victims.clone();
        expected.sort_by_key(|d| d.0);
        let first = verify_store(&store, VerifyOptions::default()).unwrap();
        for _ in 0..3 {
            let again = verify_store(&store, VerifyOptions::default()).unwrap();
            assert_eq!(
                format!("{:?}", again.tenants[0].problems),
                format!("{:?}", first.tenants[0].problems)
            );
        }
        let t = &first.tenants[0];
        let found: Vec<Digest> = t.problems.iter().filter_map(|p| p.digest).collect();
        assert_eq!(found, expected, "{:#?}", t.problems);
        assert!(t.problems.iter().all(|p| p.seq.is_none()
            && matches!(
                p.kind,
                ProblemKind::ContentMissing | ProblemKind::ContentCorrupt
            )));
        assert_eq!(t.content_objects, (n - victims.len()) as u64);

        // Without the index comparison the checks follow the journal: entry order.
        let no_index = VerifyOptions {
            index: false,
            ..VerifyOptions::default()
        };
        let r = verify_store(&store, no_index).unwrap();
        let found: Vec<Digest> = r.problems().filter_map(|p| p.digest).collect();
        assert_eq!(found, victims);
        let seqs: Vec<u64> = r.problems().filter_map(|p| p.seq).collect();
        assert_eq!(seqs, (0..n as u64).step_by(23).collect::<Vec<_>>());
    }

    /// An incremental run checks new content as it reads the entries; a damaged object's
    /// problem keeps its place among the journal's problems.
    #[test]
    fn incremental_run_keeps_problems_in_entry_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let tenant = store.create_tenant("t").unwrap();
        for i in 0..5 {
            add(&tenant, &bytes(1000, i));
        }
        assert!(verify_store(&store, VerifyOptions::default())
            .unwrap()
            .is_clean());
        let new: Vec<Digest> = (0..300)
            .map(|i| add(&tenant, &bytes(2000 + i, 1000 + i as u64)))
            .collect();
        let victims = [new[3], new[150], new[299]];
        damage(&dir, &tenant, &victims);
        let inc = VerifyOptions {
            incremental: true,
            ..VerifyOptions::default()
        };
        let r = verify_store(&store, inc).unwrap();
        let t = &r.tenants[0];
        assert_eq!(t.from_seq, 5);
        let found: Vec<(Option<u64>, Option<Digest>)> =
            t.problems.iter().map(|p| (p.seq, p.digest)).collect();
        assert_eq!(
            found,
            vec![
                (Some(8), Some(new[3])),
                (Some(155), Some(new[150])),
                (Some(304), Some(new[299]))
            ]
        );
        assert_eq!(t.content_objects, 297);
    }

    /// Entries appended while a full run verifies are not differences: the live index is
    /// compared once the reference has caught up with them (before, every key of an
    /// entry written after the run took the journal's end was reported).
    #[test]
    fn writes_during_a_full_run_are_no_index_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let tenant = store.create_tenant("t").unwrap();
        for i in 0..200 {
            add(&tenant, &bytes(3000, i));
        }
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                for i in 0..300 {
                    add(&tenant, &bytes(500, 10_000 + i));
                }
            });
            while !writer.is_finished() {
                let r = verify_store(&store, VerifyOptions::default()).unwrap();
                let mismatches: Vec<_> = r
                    .problems()
                    .filter(|p| p.kind == ProblemKind::IndexMismatch)
                    .collect();
                assert!(mismatches.is_empty(), "{mismatches:#?}");
            }
        });
        let r = verify_store(&store, VerifyOptions::default()).unwrap();
        assert!(r.is_clean(), "{r:#?}");
        assert_eq!(r.tenants[0].entries, 500);
    }

    #[test]
    fn prefetched_outcomes_are_found_in_digest_order() {
        let d = |b: u8| Digest([b; 32]);
        let mut file = temporary_file().unwrap();
        {
            let mut w = BufWriter::new(&mut file);
            write_outcome(&mut w, &d(1), &Outcome::Size(10)).unwrap();
            write_outcome(&mut w, &d(3), &Outcome::Missing).unwrap();
            write_outcome(&mut w, &d(5), &Outcome::Corrupt("bad".into())).unwrap();
            write_outcome(&mut w, &d(7), &Outcome::Size(0)).unwrap();
            w.flush().unwrap();
        }
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut reader = BufReader::new(file);
        let next = read_outcome(&mut reader).unwrap();
        let mut p = Prefetched { reader, next };
        assert_eq!(p.take(&d(0)), None);
        assert_eq!(p.take(&d(1)), Some(Outcome::Size(10)));
        assert_eq!(p.take(&d(2)), None);
        assert_eq!(p.take(&d(5)), Some(Outcome::Corrupt("bad".into())));
        assert_eq!(p.take(&d(5)), None);
        assert_eq!(p.take(&d(7)), Some(Outcome::Size(0)));
        assert_eq!(p.take(&d(9)), None);
    }
}
