//! The verdict of a package check: problems by subject and code, and what was shown.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;
use uuid::Uuid;

use super::*;
use crate::digest::Digest;

/// What a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// The ZIP as a whole.
    Package,
    /// A ZIP entry that is neither the message, the evidence nor a listed file.
    Entry,
    /// The evidence file.
    Evidence,
    /// The verifier key.
    Key,
    /// The checkpoint note.
    Checkpoint,
    /// A witness's cosignature.
    Witness,
    /// The transfer's XML.
    Message,
    /// A file listed in the evidence.
    Object,
}

impl SubjectKind {
    /// The name used in reports and in `verify_transfer.py --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Package => "package",
            SubjectKind::Entry => "entry",
            SubjectKind::Evidence => "evidence",
            SubjectKind::Key => "key",
            SubjectKind::Checkpoint => "checkpoint",
            SubjectKind::Witness => "witness",
            SubjectKind::Message => "message",
            SubjectKind::Object => "object",
        }
    }
}

/// What is wrong (the codes of `docs/FORMAT.md`, "Verifying evidence").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ProblemCode {
    /// Cannot be read (not a ZIP; a damaged, encrypted or oddly compressed entry; a read
    /// error; fewer or more bytes than stated).
    Unreadable,
    /// Two ZIP entries share a name.
    DuplicateNames,
    /// Not there.
    Missing,
    /// More than one evidence entry.
    Ambiguous,
    /// Larger than [`MAX_EVIDENCE_BYTES`].
    TooLarge,
    /// Does not have the format.
    Malformed,
    /// The key's fingerprint in the evidence is not the key's.
    Fingerprint,
    /// The evidence's key is not the key the verifier was given.
    Mismatch,
    /// The checkpoint is not signed by the key.
    Signature,
    /// The checkpoint's origin is not the key's name.
    Origin,
    /// A witness's cosignature does not verify.
    Cosignature,
    /// The size differs from the evidence.
    Size,
    /// The SHA-256 differs from the evidence.
    Sha256,
    /// The entry does not decode, is not entry `seq`, or does not list the file as content.
    Entry,
    /// The inclusion proof does not lead to the checkpoint's root.
    Proof,
    /// A ZIP entry the evidence does not cover.
    Unlisted,
}

impl ProblemCode {
    /// The code's name in reports and in `verify_transfer.py --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::Unreadable => "unreadable",
            ProblemCode::DuplicateNames => "duplicate-names",
            ProblemCode::Missing => "missing",
            ProblemCode::Ambiguous => "ambiguous",
            ProblemCode::TooLarge => "too-large",
            ProblemCode::Malformed => "malformed",
            ProblemCode::Fingerprint => "fingerprint",
            ProblemCode::Mismatch => "mismatch",
            ProblemCode::Signature => "signature",
            ProblemCode::Origin => "origin",
            ProblemCode::Cosignature => "cosignature",
            ProblemCode::Size => "size",
            ProblemCode::Sha256 => "sha256",
            ProblemCode::Entry => "entry",
            ProblemCode::Proof => "proof",
            ProblemCode::Unlisted => "unlisted",
        }
    }
}

/// One problem: what (subject and name), which check failed (code), and the details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The kind of thing.
    pub subject: SubjectKind,
    /// Its name (file name, witness name; empty for package, evidence, key, checkpoint).
    pub name: String,
    /// The first check that failed.
    pub code: ProblemCode,
    /// Human-readable details.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(
                f,
                "{}: {}: {}",
                self.subject.as_str(),
                self.code.as_str(),
                self.detail
            )
        } else {
            write!(
                f,
                "{} {}: {}: {}",
                self.subject.as_str(),
                self.name,
                self.code.as_str(),
                self.detail
            )
        }
    }
}

/// What the entry that recorded a file says (decoded from the entry bytes; authentic when
/// the object verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntrySummary {
    /// Event kind, e.g. `version.add`.
    pub kind: String,
    /// Who recorded it.
    pub actor: String,
    /// The object the entry is about (the document's UUID).
    pub object: String,
    /// When, RFC 3339 in UTC.
    pub time: String,
}

/// The result for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectReport {
    /// Its name.
    pub name: String,
    /// Size stated in the evidence.
    pub size: u64,
    /// SHA-256 stated in the evidence.
    pub sha256: Digest,
    /// The entry that recorded it (`None` for the message).
    pub seq: Option<u64>,
    /// What that entry says, if it decoded.
    pub entry: Option<EntrySummary>,
    /// `None` if every check passed, else the first that failed.
    pub failed: Option<ProblemCode>,
}

/// The checkpoint as read from the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    /// The journal's origin.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Digest,
}

/// A witness cosignature that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessReport {
    /// The witness's key name.
    pub name: String,
    /// Cosigning time, seconds since 1970.
    pub timestamp: u64,
}

/// The outcome of [`verify_package`] or [`verify_evidence_dir`]: what was checked and
/// every problem found. Clean if and only if `problems` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageReport {
    /// The ZIP, or the evidence file, that was checked.
    pub source: String,
    /// Transfer or document, once the evidence parsed.
    pub kind: Option<EvidenceKind>,
    /// The process (transfer) or document id.
    pub id: Option<Uuid>,
    /// The key the checkpoint was checked with (the given key, else the evidence's).
    pub key: Option<String>,
    /// That key's fingerprint: compare it out of band unless a key was given.
    pub key_fingerprint: Option<String>,
    /// Whether the key was given by the caller (`true`) or taken from the evidence.
    pub key_given: bool,
    /// The checkpoint, if it parsed.
    pub checkpoint: Option<CheckpointSummary>,
    /// Whether its signature verified with the key and its origin is the key's name.
    pub checkpoint_verified: bool,
    /// Witness cosignatures that verified.
    pub witnesses: Vec<WitnessReport>,
    /// The transfer's XML.
    pub message: Option<ObjectReport>,
    /// The files, in evidence order.
    pub objects: Vec<ObjectReport>,
    /// Every problem, in the order of the checks.
    pub problems: Vec<Problem>,
}

impl PackageReport {
    pub(crate) fn new(source: String) -> Self {
        PackageReport {
            source,
            kind: None,
            id: None,
            key: None,
            key_fingerprint: None,
            key_given: false,
            checkpoint: None,
            checkpoint_verified: false,
            witnesses: Vec::new(),
            message: None,
            objects: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// True if nothing failed.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(
        &mut self,
        subject: SubjectKind,
        name: &str,
        code: ProblemCode,
        detail: impl Into<String>,
    ) {
        self.problems.push(Problem {
            subject,
            name: name.to_owned(),
            code,
            detail: detail.into(),
        });
    }

    /// `(subject, name, code)` of every problem, sorted: the verdict two verifiers must
    /// agree on.
    pub fn verdict(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = self
            .problems
            .iter()
            .map(|p| {
                (
                    p.subject.as_str().to_owned(),
                    p.name.clone(),
                    p.code.as_str().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl fmt::Display for PackageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "package:    {}", self.source)?;
        if let (Some(kind), Some(id)) = (self.kind, self.id) {
            let what = match kind {
                EvidenceKind::Transfer => "transfer, process",
                EvidenceKind::Document => "document",
            };
            writeln!(f, "evidence:   {what} {id}")?;
        }
        if let Some(key) = &self.key {
            writeln!(f, "key:        {key}")?;
            if let Some(fp) = &self.key_fingerprint {
                let how = if self.key_given {
                    "the key given"
                } else {
                    "taken from the evidence: compare this fingerprint out of band"
                };
                writeln!(f, "            fingerprint {fp} ({how})")?;
            }
        }
        if let Some(cp) = &self.checkpoint {
            writeln!(
                f,
                "checkpoint: {} size {} root {} ({})",
                cp.origin,
                cp.size,
                BASE64.encode(cp.root.as_bytes()),
                if self.checkpoint_verified {
                    "signature OK"
                } else {
                    "NOT VERIFIED"
                }
            )?;
        }
        for w in &self.witnesses {
            writeln!(f, "witness:    {} cosigned at {}", w.name, w.timestamp)?;
        }
        let line = |f: &mut fmt::Formatter<'_>, o: &ObjectReport| -> fmt::Result {
            let status = match o.failed {
                None => "OK    ".to_owned(),
                Some(code) => format!("FAILED ({})", code.as_str()),
            };
            write!(
                f,
                "{status} {} {} bytes sha256 {}",
                o.name, o.size, o.sha256
            )?;
            if let Some(seq) = o.seq {
                write!(f, " entry {seq}")?;
            }
            if let Some(e) = &o.entry {
                write!(
                    f,
                    " ({} of {} by {} at {})",
                    e.kind, e.object, e.actor, e.time
                )?;
            }
            writeln!(f)
        };
        if let Some(m) = &self.message {
            write!(f, "message:    ")?;
            line(f, m)?;
        }
        for o in &self.objects {
            line(f, o)?;
        }
        for p in &self.problems {
            writeln!(f, "PROBLEM {p}")?;
        }
        if self.is_clean() {
            write!(
                f,
                "CLEAN: {} file(s) recorded in the journal and included in the signed checkpoint",
                self.objects.len()
            )
        } else {
            write!(f, "FAILED: {} problem(s)", self.problems.len())
        }
    }
}
