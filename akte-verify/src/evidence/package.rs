//! Checking a transfer ZIP, or an evidence file with a directory of files, offline.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ::zip::{CompressionMethod, ZipArchive};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::*;
use crate::digest::Digest;
use crate::entry::{Entry, PayloadKind};
use crate::keys::{KeyError, KeyKind, VerifierKey};
use crate::merkle;
use crate::note::{verify_cosignature, Checkpoint, SignedNote};

/// Read size when hashing files.
const CHUNK: usize = 64 * 1024;

/// The name of a 0503 transfer's XML in its ZIP: `{ProzessID}_` and the message's element
/// name (xdomea's rule; akte-core's writer names it the same, which its tests check).
pub fn transfer_xml_name(process_id: Uuid) -> String {
    format!(
        "{}_Aussonderung.Aussonderung.0503.xml",
        process_id.hyphenated()
    )
}

/// Why a verification could not run at all (as opposed to finding problems).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The key given to check against is not a type-0x01 verifier key.
    #[error("the key given is not a usable verifier key: {0}")]
    Key(#[from] KeyError),
    /// The key given is a witness (type 0x04) key.
    #[error("the key given is a cosignature (type 0x04) key; give the tenant's type 0x01 key")]
    WrongKeyKind,
    /// A path given cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn parse_given_key(key: Option<&str>) -> Result<Option<VerifierKey>, VerifyError> {
    let Some(s) = key else { return Ok(None) };
    let k = VerifierKey::parse(s.trim_end_matches('\n'))?;
    if k.kind() != KeyKind::Ed25519 {
        return Err(VerifyError::WrongKeyKind);
    }
    Ok(Some(k))
}

/// Why a file fails, as (code, detail).
type Failure = (ProblemCode, String);

/// Where the files named in an evidence file are read from.
trait FileSource {
    /// Checks `name` against `size` and `sha256` ("Reading a file" and step 6 of the
    /// algorithm): `missing`, `unreadable` (container level), `size`, `unreadable`
    /// (reading), `sha256`, in that order.
    fn check(&mut self, name: &str, size: u64, sha256: &Digest) -> Result<(), Failure>;
}

fn pump(reader: &mut dyn Read, limit: u64, sink: &mut dyn FnMut(&[u8])) -> Result<u64, String> {
    let mut buf = vec![0u8; CHUNK];
    let mut limited = reader.take(limit);
    let mut total = 0u64;
    loop {
        match limited.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                sink(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads at most `size + 1` bytes and compares count and digest.
fn hash_and_compare(reader: &mut dyn Read, size: u64, sha256: &Digest) -> Result<(), Failure> {
    let mut hasher = Sha256::new();
    let count = pump(reader, size.saturating_add(1), &mut |chunk| {
        hasher.update(chunk)
    })
    .map_err(|e| (ProblemCode::Unreadable, e))?;
    if count != size {
        return Err((
            ProblemCode::Unreadable,
            if count > size {
                format!("more than the {size} bytes stated")
            } else {
                format!("read {count} bytes, expected {size}")
            },
        ));
    }
    let actual = Digest(hasher.finalize().into());
    if actual != *sha256 {
        return Err((
            ProblemCode::Sha256,
            format!("the bytes hash to {actual}, the evidence says {sha256}"),
        ));
    }
    Ok(())
}

/// A reader shared between the ZIP archive and our own look at local headers.
struct Shared<R>(Rc<RefCell<R>>);

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Shared(Rc::clone(&self.0))
    }
}

impl<R: Read> Read for Shared<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl<R: Seek> Seek for Shared<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.borrow_mut().seek(pos)
    }
}

struct ZipSource<R: Read + Seek> {
    archive: ZipArchive<Shared<R>>,
    raw: Shared<R>,
    by_name: HashMap<String, usize>,
}

impl<R: Read + Seek> ZipSource<R> {
    /// The name bytes of the local header at `offset`.
    fn local_name(&mut self, offset: u64) -> io::Result<Vec<u8>> {
        let mut head = [0u8; 30];
        self.raw.seek(SeekFrom::Start(offset))?;
        self.raw.read_exact(&mut head)?;
        if head[..4] != *b"PK\x03\x04" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no local file header where the central directory points",
            ));
        }
        let len = u16::from_le_bytes([head[26], head[27]]) as usize;
        let mut name = vec![0u8; len];
        self.raw.read_exact(&mut name)?;
        Ok(name)
    }

    /// The container-level checks of an entry; returns its index and stated size.
    fn open_checked(&mut self, name: &str) -> Result<(usize, u64), Failure> {
        let unreadable = |detail: String| (ProblemCode::Unreadable, detail);
        let Some(&index) = self.by_name.get(name) else {
            return Err((ProblemCode::Missing, "not in the package".into()));
        };
        let (header_start, raw_name, method, encrypted, size) = {
            let f = self
                .archive
                .by_index_raw(index)
                .map_err(|e| unreadable(e.to_string()))?;
            (
                f.header_start(),
                f.name_raw().to_vec(),
                f.compression(),
                f.encrypted(),
                f.size(),
            )
        };
        if encrypted {
            return Err(unreadable("the entry is encrypted".into()));
        }
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(unreadable(format!(
                "compression method {method:?} (only stored and deflated are allowed)"
            )));
        }
        let local = self
            .local_name(header_start)
            .map_err(|e| unreadable(e.to_string()))?;
        if local != raw_name {
            return Err(unreadable(
                "the local header names another file than the central directory".into(),
            ));
        }
        Ok((index, size))
    }

    /// Reads the evidence entry (step 1.4 of the algorithm).
    fn read_evidence(&mut self, name: &str) -> Result<Vec<u8>, Failure> {
        let (index, stated) = self.open_checked(name)?;
        if stated > MAX_EVIDENCE_BYTES {
            return Err((
                ProblemCode::TooLarge,
                format!("the ZIP states {stated} bytes, more than {MAX_EVIDENCE_BYTES}"),
            ));
        }
        let mut file = self
            .archive
            .by_index(index)
            .map_err(|e| (ProblemCode::Unreadable, e.to_string()))?;
        read_capped(&mut file)
    }
}

impl<R: Read + Seek> FileSource for ZipSource<R> {
    fn check(&mut self, name: &str, size: u64, sha256: &Digest) -> Result<(), Failure> {
        let (index, stated) = self.open_checked(name)?;
        if stated != size {
            return Err((
                ProblemCode::Size,
                format!("the ZIP states {stated} bytes, the evidence {size}"),
            ));
        }
        let mut file = self
            .archive
            .by_index(index)
            .map_err(|e| (ProblemCode::Unreadable, e.to_string()))?;
        hash_and_compare(&mut file, size, sha256)
    }
}

struct DirSource {
    dir: PathBuf,
}

impl FileSource for DirSource {
    fn check(&mut self, name: &str, size: u64, sha256: &Digest) -> Result<(), Failure> {
        let missing = || (ProblemCode::Missing, "not in the directory".to_owned());
        if file_name_problem(name).is_some() {
            return Err(missing());
        }
        let path = self.dir.join(name);
        let meta = fs::metadata(&path).map_err(|_| missing())?;
        if !meta.is_file() {
            return Err(missing());
        }
        if meta.len() != size {
            return Err((
                ProblemCode::Size,
                format!(
                    "the file has {} bytes, the evidence states {size}",
                    meta.len()
                ),
            ));
        }
        let mut f = fs::File::open(&path).map_err(|e| (ProblemCode::Unreadable, e.to_string()))?;
        hash_and_compare(&mut f, size, sha256)
    }
}

fn summarize(entry: &Entry) -> EntrySummary {
    EntrySummary {
        kind: entry.kind.clone(),
        actor: entry.actor.clone(),
        object: entry.object.clone(),
        time: entry
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    }
}

/// Checks an object's entry: it decodes, is entry `seq`, and lists the file as content.
fn check_entry(o: &EvidenceObject) -> Result<Entry, String> {
    let entry = Entry::decode(&o.entry).map_err(|e| format!("does not decode: {e}"))?;
    if entry.seq != o.seq {
        return Err(format!(
            "is entry {}, the evidence says {}",
            entry.seq, o.seq
        ));
    }
    let listed = entry
        .payloads
        .iter()
        .any(|p| p.kind == PayloadKind::Content && p.digest == o.sha256 && p.size == o.size);
    if !listed {
        return Err(format!(
            "entry {} does not list {} ({} bytes) as content",
            o.seq, o.sha256, o.size
        ));
    }
    Ok(entry)
}

pub(crate) fn read_capped(reader: &mut dyn Read) -> Result<Vec<u8>, (ProblemCode, String)> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_EVIDENCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| (ProblemCode::Unreadable, e.to_string()))?;
    if bytes.len() as u64 > MAX_EVIDENCE_BYTES {
        return Err((
            ProblemCode::TooLarge,
            format!("more than {MAX_EVIDENCE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Counts the central directory's records and returns the raw names, to see duplicates the
/// ZIP library folds together.
fn central_names<R: Read + Seek>(
    raw: &mut Shared<R>,
    start: u64,
    limit: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut pos = start;
    loop {
        let mut head = [0u8; 46];
        raw.seek(SeekFrom::Start(pos))?;
        if raw.read_exact(&mut head).is_err() || head[..4] != *b"PK\x01\x02" {
            return Ok(names);
        }
        let name_len = u16::from_le_bytes([head[28], head[29]]) as u64;
        let extra_len = u16::from_le_bytes([head[30], head[31]]) as u64;
        let comment_len = u16::from_le_bytes([head[32], head[33]]) as u64;
        let mut name = vec![0u8; name_len as usize];
        raw.read_exact(&mut name)?;
        names.push(name);
        if names.len() > limit {
            return Ok(names);
        }
        pos += 46 + name_len + extra_len + comment_len;
    }
}

/// Verifies a transfer ZIP (or a document's evidence package) offline: every file's size
/// and SHA-256 against the evidence, that each file's entry decodes and lists it as content,
/// every inclusion proof against the checkpoint's root, the checkpoint's signature with
/// `key` (a verifier key string; if `None`, the key in the evidence, whose fingerprint the
/// report shows for comparison out of band), any witness cosignatures, and that the ZIP
/// holds nothing the evidence does not cover.
///
/// Returns `Err` only if the check cannot run (unreadable path, unusable `key`); damage of
/// any kind is a [`Problem`] in the report.
pub fn verify_package(path: &Path, key: Option<&str>) -> Result<PackageReport, VerifyError> {
    let key = parse_given_key(key)?;
    let file = fs::File::open(path).map_err(|source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(verify_zip(
        io::BufReader::new(file),
        key.as_ref(),
        path.display().to_string(),
    ))
}

/// [`verify_package`] on a ZIP in memory.
pub fn verify_package_bytes(bytes: &[u8], key: Option<&str>) -> Result<PackageReport, VerifyError> {
    let key = parse_given_key(key)?;
    Ok(verify_zip(
        io::Cursor::new(bytes),
        key.as_ref(),
        "(in memory)".into(),
    ))
}

/// Verifies a standalone evidence file (say a document's, from
/// akte-core's `TenantRecords::document_evidence`) against the files in `dir`, named as in the
/// evidence. The same checks as [`verify_package`], except that other files in `dir` are
/// not looked at and the evidence file may have any name.
pub fn verify_evidence_dir(
    evidence: &Path,
    dir: &Path,
    key: Option<&str>,
) -> Result<PackageReport, VerifyError> {
    let key = parse_given_key(key)?;
    let file = fs::File::open(evidence).map_err(|source| VerifyError::Open {
        path: evidence.to_path_buf(),
        source,
    })?;
    if !dir.is_dir() {
        return Err(VerifyError::Open {
            path: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut report = PackageReport::new(evidence.display().to_string());
    let bytes = match read_capped(&mut io::BufReader::new(file)) {
        Ok(b) => b,
        Err((code, detail)) => {
            report.problem(SubjectKind::Evidence, "", code, detail);
            return Ok(report);
        }
    };
    let mut source = DirSource {
        dir: dir.to_path_buf(),
    };
    check_evidence(&mut report, &bytes, None, &mut source, key.as_ref());
    Ok(report)
}

fn verify_zip<R: Read + Seek>(reader: R, key: Option<&VerifierKey>, name: String) -> PackageReport {
    let mut report = PackageReport::new(name);
    let raw = Shared(Rc::new(RefCell::new(reader)));
    let archive = match ZipArchive::new(raw.clone()) {
        Ok(a) => a,
        Err(e) => {
            report.problem(
                SubjectKind::Package,
                "",
                ProblemCode::Unreadable,
                format!("not a readable ZIP: {e}"),
            );
            return report;
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(archive.len());
    let mut by_name = HashMap::with_capacity(archive.len());
    let mut duplicate = false;
    for i in 0..archive.len() {
        let name = archive.name_for_index(i).unwrap_or_default().to_owned();
        duplicate |= by_name.insert(name.clone(), i).is_some();
        names.push(name);
    }
    let mut raw_reader = raw.clone();
    let cd = central_names(
        &mut raw_reader,
        archive.central_directory_start(),
        archive.len(),
    );
    if duplicate || cd.map(|v| v.len() > archive.len()).unwrap_or(false) {
        report.problem(
            SubjectKind::Package,
            "",
            ProblemCode::DuplicateNames,
            "two entries of the ZIP have the same name",
        );
        return report;
    }
    let mut source = ZipSource {
        archive,
        raw,
        by_name,
    };
    let candidates: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(EVIDENCE_SUFFIX))
        .collect();
    let evidence_name = match candidates[..] {
        [one] => one.clone(),
        [] => {
            report.problem(
                SubjectKind::Evidence,
                "",
                ProblemCode::Missing,
                format!("no entry *{EVIDENCE_SUFFIX} in the ZIP"),
            );
            return report;
        }
        _ => {
            report.problem(
                SubjectKind::Evidence,
                "",
                ProblemCode::Ambiguous,
                format!("more than one entry *{EVIDENCE_SUFFIX} in the ZIP"),
            );
            return report;
        }
    };
    let bytes = match source.read_evidence(&evidence_name) {
        Ok(b) => b,
        Err((code, detail)) => {
            report.problem(SubjectKind::Evidence, "", code, detail);
            return report;
        }
    };
    let covered = check_evidence(&mut report, &bytes, Some(&evidence_name), &mut source, key);
    if let Some(mut covered) = covered {
        covered.insert(evidence_name);
        for name in &names {
            if !covered.contains(name) {
                report.problem(
                    SubjectKind::Entry,
                    name,
                    ProblemCode::Unlisted,
                    "the evidence does not cover this entry",
                );
            }
        }
    }
    report
}

/// Steps 2 to 7 of the algorithm in `docs/FORMAT.md`. Returns the names the evidence
/// covers, or `None` if the evidence is unusable (then nothing else was checked).
fn check_evidence(
    report: &mut PackageReport,
    bytes: &[u8],
    zip_name: Option<&str>,
    source: &mut dyn FileSource,
    given: Option<&VerifierKey>,
) -> Option<HashSet<String>> {
    // The evidence file.
    let evidence = match Evidence::from_json(bytes) {
        Ok(e) => e,
        Err(e) => {
            report.problem(
                SubjectKind::Evidence,
                "",
                ProblemCode::Malformed,
                e.to_string(),
            );
            return None;
        }
    };
    if let Some(zip_name) = zip_name {
        let expected = evidence.zip_name().unwrap_or_default();
        if zip_name != expected {
            report.problem(
                SubjectKind::Evidence,
                "",
                ProblemCode::Malformed,
                format!("the evidence of {expected} is stored as {zip_name}"),
            );
            return None;
        }
        if let (Some(m), Some(p)) = (&evidence.message, evidence.process_id) {
            let expected = transfer_xml_name(p);
            if m.name != expected {
                report.problem(
                    SubjectKind::Evidence,
                    "",
                    ProblemCode::Malformed,
                    format!(
                        "the message of process {p} must be {expected}, the evidence names {:?}",
                        truncate(&m.name, 80)
                    ),
                );
                return None;
            }
        }
    }
    report.kind = Some(evidence.kind);
    report.id = evidence.process_id.or(evidence.document_id);

    // The key.
    let parsed = VerifierKey::parse(&evidence.verifier_key)
        .map_err(|e| e.to_string())
        .and_then(|k| {
            if k.kind() != KeyKind::Ed25519 {
                Err("it is not a type 0x01 (Ed25519) key".to_owned())
            } else if k.to_string() != evidence.verifier_key {
                Err("it is not in canonical form".to_owned())
            } else {
                Ok(k)
            }
        });
    let evidence_key = match parsed {
        Err(reason) => {
            report.problem(
                SubjectKind::Key,
                "",
                ProblemCode::Malformed,
                format!("the evidence's verifier key is not usable: {reason}"),
            );
            None
        }
        Ok(k) => {
            if k.fingerprint() != evidence.key_fingerprint {
                report.problem(
                    SubjectKind::Key,
                    "",
                    ProblemCode::Fingerprint,
                    format!(
                        "the evidence states fingerprint {:?}, the key's is {}",
                        truncate(&evidence.key_fingerprint, 80),
                        k.fingerprint()
                    ),
                );
            } else if let Some(g) = given {
                if g != &k {
                    report.problem(
                        SubjectKind::Key,
                        "",
                        ProblemCode::Mismatch,
                        format!("the evidence names key {k}, not the key given ({g})"),
                    );
                }
            }
            Some(k)
        }
    };
    let trusted = given.cloned().or(evidence_key);
    report.key_given = given.is_some();
    report.key = trusted.as_ref().map(|k| k.to_string());
    report.key_fingerprint = trusted.as_ref().map(|k| k.fingerprint());

    // The checkpoint.
    let parsed_note = SignedNote::parse(evidence.checkpoint.as_bytes())
        .and_then(|note| Checkpoint::parse_body(&note.text).map(|cp| (note, cp)));
    let checkpoint = match parsed_note {
        Err(e) => {
            report.problem(
                SubjectKind::Checkpoint,
                "",
                ProblemCode::Malformed,
                e.to_string(),
            );
            None
        }
        Ok((note, cp)) => {
            report.checkpoint = Some(CheckpointSummary {
                origin: cp.origin.clone(),
                size: cp.size,
                root: cp.root,
            });
            match &trusted {
                None => report.problem(
                    SubjectKind::Checkpoint,
                    "",
                    ProblemCode::Signature,
                    "no usable key to check the signature with",
                ),
                Some(k) => match note.verify(std::slice::from_ref(k)) {
                    Err(e) => report.problem(
                        SubjectKind::Checkpoint,
                        "",
                        ProblemCode::Signature,
                        e.to_string(),
                    ),
                    Ok(_) if cp.origin != k.name() => report.problem(
                        SubjectKind::Checkpoint,
                        "",
                        ProblemCode::Origin,
                        format!(
                            "the checkpoint is of {:?}, the key is {:?}'s",
                            truncate(&cp.origin, 80),
                            k.name()
                        ),
                    ),
                    Ok(_) => report.checkpoint_verified = true,
                },
            }
            // Witnesses.
            for w in &evidence.witnesses {
                check_witness(report, &note, &cp, w);
            }
            Some(cp)
        }
    };

    // The message.
    let mut covered = HashSet::new();
    if let Some(m) = &evidence.message {
        covered.insert(m.name.clone());
        let failed = match source.check(&m.name, m.size, &m.sha256) {
            Ok(()) => None,
            Err((code, detail)) => {
                report.problem(SubjectKind::Message, &m.name, code, detail);
                Some(code)
            }
        };
        report.message = Some(ObjectReport {
            name: m.name.clone(),
            size: m.size,
            sha256: m.sha256,
            seq: None,
            entry: None,
            failed,
        });
    }

    // The objects.
    for o in &evidence.objects {
        covered.insert(o.name.clone());
        let entry = check_entry(o);
        let summary = match &entry {
            Ok(e) => Some(summarize(e)),
            Err(_) => Entry::decode(&o.entry).ok().as_ref().map(summarize),
        };
        let result = source
            .check(&o.name, o.size, &o.sha256)
            .and_then(|()| entry.map(|_| ()).map_err(|d| (ProblemCode::Entry, d)))
            .and_then(|()| match &checkpoint {
                None => Ok(()),
                Some(cp) => merkle::verify_inclusion(
                    &merkle::leaf_hash(&o.entry),
                    o.seq,
                    cp.size,
                    &o.proof,
                    &cp.root,
                )
                .map_err(|e| (ProblemCode::Proof, e.to_string())),
            });
        let failed = match result {
            Ok(()) => None,
            Err((code, detail)) => {
                report.problem(SubjectKind::Object, &o.name, code, detail);
                Some(code)
            }
        };
        report.objects.push(ObjectReport {
            name: o.name.clone(),
            size: o.size,
            sha256: o.sha256,
            seq: Some(o.seq),
            entry: summary,
            failed,
        });
    }
    Some(covered)
}

fn check_witness(report: &mut PackageReport, note: &SignedNote, cp: &Checkpoint, w: &str) {
    let key = match VerifierKey::parse(w) {
        Ok(k) if k.to_string() == w => k,
        Ok(_) => {
            report.problem(
                SubjectKind::Witness,
                w,
                ProblemCode::Malformed,
                "the witness key is not in canonical form",
            );
            return;
        }
        Err(e) => {
            report.problem(
                SubjectKind::Witness,
                w,
                ProblemCode::Malformed,
                e.to_string(),
            );
            return;
        }
    };
    let cosigner = key.with_kind(KeyKind::CosignatureV1);
    let Some(sig) = note
        .signatures
        .iter()
        .find(|s| s.name == key.name() && s.key_id == cosigner.key_id())
    else {
        report.problem(
            SubjectKind::Witness,
            key.name(),
            ProblemCode::Missing,
            "the checkpoint carries no cosignature of this witness",
        );
        return;
    };
    match verify_cosignature(cp, sig, &key) {
        Ok(timestamp) => report.witnesses.push(WitnessReport {
            name: key.name().to_owned(),
            timestamp,
        }),
        Err(e) => report.problem(
            SubjectKind::Witness,
            key.name(),
            ProblemCode::Cosignature,
            e.to_string(),
        ),
    }
}

/// The bytes of the one `*_akte-evidence.json` entry of a ZIP.
pub(crate) fn evidence_in_zip<R: Read + Seek>(reader: R) -> Result<Vec<u8>, FormatError> {
    let mut archive = ZipArchive::new(reader).map_err(|e| malformed("ZIP", e.to_string()))?;
    let found: Vec<usize> = (0..archive.len())
        .filter(|&i| {
            archive
                .name_for_index(i)
                .is_some_and(|n| n.ends_with(EVIDENCE_SUFFIX))
        })
        .collect();
    let [index] = found[..] else {
        return Err(malformed(
            "ZIP",
            "not exactly one *_akte-evidence.json entry",
        ));
    };
    let mut entry = archive
        .by_index(index)
        .map_err(|e| malformed("ZIP", e.to_string()))?;
    read_capped(&mut entry).map_err(|(_, reason)| malformed("ZIP", reason))
}
