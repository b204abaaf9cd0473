//! Evidence: proof, checkable years later and without akte, that the files of a transfer
//! (or of one document) are the bytes the agency's journal recorded.
//!
//! An evidence file (`akte-evidence/v1`, a canonical JSON document) lists, for each file,
//! its name, size and SHA-256, the journal entry that recorded it (its canonical bytes, so a
//! verifier recomputes the leaf hash and finds the digest among the entry's payloads), and
//! an RFC 6962 inclusion proof from that leaf to one signed checkpoint of the tenant's
//! journal, together with the checkpoint and the verifier key that signed it. Every 0503
//! transfer ZIP carries one as `{ProzessID}_akte-evidence.json`; the XML does not reference
//! it, so archive intake tools ignore it.
//!
//! - Writing: [`build_evidence`]; the transfer writes its evidence itself (see
//!   [`crate::records::TenantRecords::transfer`]); [`TenantRecords::document_evidence`] and
//!   [`TenantRecords::document_evidence_package`] give the evidence of one document.
//! - Checking, offline and without a data directory: [`verify_package`] (a ZIP),
//!   [`verify_evidence_dir`] (a standalone evidence file and a directory of files), each
//!   returning a [`PackageReport`] that names every damaged object; [`verify_consistency`]
//!   for two checkpoints and a consistency proof.
//!
//! The format and the verification algorithm are specified byte by byte in
//! `docs/FORMAT.md`, section "Evidence"; `tools/verify_transfer.py` implements them
//! independently. Verification never panics and bounds memory: files are hashed as they
//! stream, the evidence file is capped at [`MAX_EVIDENCE_BYTES`], and no read goes more than
//! one byte past the size the evidence states.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ::zip::write::SimpleFileOptions;
use ::zip::{CompressionMethod, ZipArchive, ZipWriter};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::digest::Digest;
use crate::entry::{Entry, PayloadKind};
use crate::keys::{KeyError, KeyKind, VerifierKey};
use crate::merkle::{self, ProofError};
use crate::note::{verify_cosignature, Checkpoint, NoteError, SignedNote};
use crate::records::{RecordsError, TenantRecords};
use crate::store::{StoreError, Tenant};
use crate::witness::WitnessError;
use crate::xdomea::{
    self, primary_file_name, sanitize_file_name, FileObject, MessageHeader, MessageType,
    TransferWriter, XdomeaError,
};

/// The `format` value of this version of the evidence file.
pub const EVIDENCE_FORMAT: &str = "akte-evidence/v1";

/// Suffix of an evidence file's name in a ZIP: `{ProzessID or document UUID}` + this.
pub const EVIDENCE_SUFFIX: &str = "_akte-evidence.json";

/// Largest evidence file a verifier reads (256 MiB, roughly 150 000 files).
pub const MAX_EVIDENCE_BYTES: u64 = 256 * 1024 * 1024;

/// Most hashes in one inclusion proof (a tree of 2^64 entries needs 64).
pub const MAX_PROOF_HASHES: usize = 64;

/// Longest file name in an evidence file, in bytes of UTF-8.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Earliest entry time, in microseconds since 1970, that an entry decoder accepts
/// (-262143-01-01T00:00:00Z); earlier values are out of range (see `docs/FORMAT.md`).
pub const MIN_ENTRY_TIME_MICROS: i64 = -8_334_601_228_800_000_000;

/// Latest entry time, in microseconds since 1970, that an entry decoder accepts
/// (+262142-12-31T23:59:59.999999Z).
pub const MAX_ENTRY_TIME_MICROS: i64 = 8_210_266_876_799_999_999;

/// Read size when hashing files.
const CHUNK: usize = 64 * 1024;

/// Errors while writing evidence (the agency's side).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The store failed (reading an entry, a proof or the checkpoint).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The records model failed (looking up a document or version).
    #[error(transparent)]
    Records(Box<RecordsError>),
    /// The checkpoint the store signed does not open with the tenant's own key.
    #[error("checkpoint: {0}")]
    Note(#[from] NoteError),
    /// A file's entry does not list the file as content: the index and the journal disagree.
    #[error(
        "journal entry {seq} does not record {name} ({size} bytes, SHA-256 {digest}) as content"
    )]
    NotRecorded {
        /// The entry.
        seq: u64,
        /// The file's name.
        name: String,
        /// The file's size.
        size: u64,
        /// The file's digest.
        digest: Digest,
    },
    /// An inclusion proof the store produced does not verify.
    #[error("the inclusion proof of entry {seq} does not verify: {source}")]
    Proof {
        /// The entry.
        seq: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
    /// Looking for a witnessed checkpoint failed (the witness list cannot be read).
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// Writing the ZIP failed.
    #[error(transparent)]
    Xdomea(#[from] XdomeaError),
    /// Reading the content store or writing the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An evidence file, checkpoint note or proof file that does not have the format.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<RecordsError> for EvidenceError {
    fn from(e: RecordsError) -> Self {
        EvidenceError::Records(Box::new(e))
    }
}

impl From<EvidenceError> for RecordsError {
    fn from(e: EvidenceError) -> Self {
        match e {
            EvidenceError::Records(e) => *e,
            EvidenceError::Store(e) => RecordsError::Store(e),
            EvidenceError::Xdomea(e) => RecordsError::Invalid {
                field: "message".into(),
                reason: e.to_string(),
            },
            other => RecordsError::Internal(other.to_string()),
        }
    }
}

fn malformed(what: &'static str, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Malformed {
        what,
        reason: reason.into(),
    }
}

// ------------------------------------------------------------------------------ the format

/// What an evidence file covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceKind {
    /// The primary files of a 0503 transfer, and its XML.
    Transfer,
    /// Every rendition of every version of one document.
    Document,
}

/// An evidence file (`akte-evidence/v1`). Field order is the order in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Always [`EVIDENCE_FORMAT`].
    pub format: String,
    /// Transfer or document.
    pub kind: EvidenceKind,
    /// The xdomea process (ProzessID) of a transfer; `None` for a document.
    pub process_id: Option<Uuid>,
    /// The document of a document's evidence; `None` for a transfer.
    pub document_id: Option<Uuid>,
    /// The signed checkpoint note every proof leads to, as text (with any witness
    /// cosignature lines).
    pub checkpoint: String,
    /// The tenant's verifier key string (type 0x01), as in `keys/checkpoint.pub`.
    pub verifier_key: String,
    /// Lower-case hex SHA-256 of the verifier key's 32-byte public key.
    pub key_fingerprint: String,
    /// Verifier keys of witnesses whose cosignatures the checkpoint note carries.
    pub witnesses: Vec<String>,
    /// The transfer's XML (integrity only: it is not in the journal); `None` for a document.
    pub message: Option<EvidenceFile>,
    /// The files, each with the entry that recorded it and its inclusion proof.
    pub objects: Vec<EvidenceObject>,
}

/// A file with its size and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFile {
    /// Name (the ZIP entry, or the file in a directory).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Digest,
}

/// A file recorded in the journal, with the proof that it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceObject {
    /// Name (the ZIP entry, or the file in a directory).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Digest,
    /// Sequence number (leaf index) of the entry that recorded the file.
    pub seq: u64,
    /// That entry's canonical bytes (base64 in the file).
    #[serde(with = "b64_bytes")]
    pub entry: Vec<u8>,
    /// Inclusion proof of the entry's leaf in the checkpoint's tree (base64 each).
    #[serde(with = "b64_hashes")]
    pub proof: Vec<Digest>,
}

mod b64_bytes {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        BASE64.decode(&s).map_err(serde::de::Error::custom)
    }
}

mod b64_hashes {
    use super::{Digest, BASE64};
    use base64::Engine as _;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Digest], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&BASE64.encode(d.as_bytes()))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| {
                let raw = BASE64.decode(s).map_err(serde::de::Error::custom)?;
                Digest::from_slice(&raw).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "a proof hash is {} bytes, expected 32",
                        raw.len()
                    ))
                })
            })
            .collect()
    }
}

/// Why a file name cannot appear in an evidence file, if it cannot.
fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_FILE_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("is . or ..")
    } else if name.contains(['/', '\\']) {
        Some("contains / or \\")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

impl Evidence {
    /// The canonical bytes: the JSON value with two-space indentation, as
    /// `docs/FORMAT.md` specifies, and a final LF.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs of strings, numbers and vectors cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The name of this evidence file inside a ZIP: `{process or document UUID}` +
    /// [`EVIDENCE_SUFFIX`].
    pub fn zip_name(&self) -> Option<String> {
        self.process_id
            .or(self.document_id)
            .map(evidence_entry_name)
    }

    /// Parses an evidence file strictly: valid JSON of exactly the documented shape, in its
    /// canonical byte form, with the rules of `docs/FORMAT.md` ("The evidence file").
    /// Whether checkpoint, key and proofs hold is [`verify_package`]'s business.
    pub fn from_json(bytes: &[u8]) -> Result<Evidence, EvidenceError> {
        const WHAT: &str = "evidence file";
        let evidence: Evidence =
            serde_json::from_slice(bytes).map_err(|e| malformed(WHAT, e.to_string()))?;
        if evidence.to_json() != bytes {
            return Err(malformed(
                WHAT,
                "not in canonical form (the JSON is not byte for byte as akte writes it)",
            ));
        }
        evidence
            .validate()
            .map_err(|reason| malformed(WHAT, reason))?;
        Ok(evidence)
    }

    /// The rules beyond the JSON shape.
    fn validate(&self) -> Result<(), String> {
        if self.format != EVIDENCE_FORMAT {
            return Err(format!(
                "format is {:?}, expected {EVIDENCE_FORMAT:?}",
                truncate(&self.format, 60)
            ));
        }
        match self.kind {
            EvidenceKind::Transfer => {
                if self.process_id.is_none() || self.document_id.is_some() {
                    return Err(
                        "a transfer's evidence needs a process_id and no document_id".into(),
                    );
                }
                if self.message.is_none() {
                    return Err("a transfer's evidence needs a message".into());
                }
            }
            EvidenceKind::Document => {
                if self.document_id.is_none() || self.process_id.is_some() {
                    return Err(
                        "a document's evidence needs a document_id and no process_id".into(),
                    );
                }
                if self.message.is_some() {
                    return Err("a document's evidence has no message".into());
                }
            }
        }
        let mut names = HashSet::new();
        let files = self
            .message
            .iter()
            .map(|m| m.name.as_str())
            .chain(self.objects.iter().map(|o| o.name.as_str()));
        for name in files {
            if let Some(problem) = file_name_problem(name) {
                return Err(format!("the file name {:?} {problem}", truncate(name, 80)));
            }
            if name.ends_with(EVIDENCE_SUFFIX) {
                return Err(format!(
                    "the file name {:?} ends in {EVIDENCE_SUFFIX}",
                    truncate(name, 80)
                ));
            }
            if !names.insert(name) {
                return Err(format!(
                    "the file name {:?} occurs twice",
                    truncate(name, 80)
                ));
            }
        }
        for o in &self.objects {
            if o.proof.len() > MAX_PROOF_HASHES {
                return Err(format!(
                    "the proof of {:?} has {} hashes, at most {MAX_PROOF_HASHES} are possible",
                    truncate(&o.name, 80),
                    o.proof.len()
                ));
            }
        }
        Ok(())
    }
}

/// `{id}_akte-evidence.json`.
pub fn evidence_entry_name(id: Uuid) -> String {
    format!("{}{EVIDENCE_SUFFIX}", id.hyphenated())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

// ------------------------------------------------------------------------------- writing

/// One file to put into evidence: its name, size and digest, and the journal entry that
/// recorded it (a `version.add` entry listing the digest as a content payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceItem {
    /// Name of the file in the package (or directory).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: Digest,
    /// The entry that recorded it.
    pub seq: u64,
}

/// What an evidence file is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceSubject {
    /// A transfer (0503) with this process id.
    Transfer(Uuid),
    /// A document.
    Document(Uuid),
}

/// Builds the evidence of `items`, and for each item reads its entry, checks that the entry
/// lists the item as content (kind 1, same digest and size), and proves the entry's
/// inclusion in one checkpoint. `message` is the transfer's XML (required for a transfer,
/// refused for a document).
///
/// The checkpoint is the newest stored one that registered witnesses have cosigned, if it
/// covers every item's entry; its note carries the cosignatures, and `witnesses` lists the
/// keys of the witnesses whose cosignatures verify, so the evidence shows that others saw
/// the same history. Otherwise a checkpoint of the journal as it is now is signed
/// (`Tenant::checkpoint`) and `witnesses` is empty.
pub fn build_evidence(
    tenant: &Tenant,
    subject: EvidenceSubject,
    message: Option<EvidenceFile>,
    items: &[EvidenceItem],
) -> Result<Evidence, EvidenceError> {
    let key = tenant.verifier();
    let needed = items
        .iter()
        .map(|i| i.seq.saturating_add(1))
        .max()
        .unwrap_or(0);
    let (note, witnesses) = match tenant.newest_cosigned_checkpoint()? {
        Some(c) if c.checkpoint.size >= needed => (
            c.note,
            c.witnesses.iter().map(|w| w.key.to_string()).collect(),
        ),
        _ => (tenant.checkpoint()?, Vec::new()),
    };
    let (checkpoint, note) = Checkpoint::open(&note.to_bytes(), &key)?;
    let mut objects = Vec::with_capacity(items.len());
    for item in items {
        let record = tenant.entry(item.seq)?;
        let bytes = record.entry.encode();
        let recorded = record.entry.payloads.iter().any(|p| {
            p.kind == PayloadKind::Content && p.digest == item.sha256 && p.size == item.size
        });
        if !recorded || merkle::leaf_hash(&bytes) != record.leaf {
            return Err(EvidenceError::NotRecorded {
                seq: item.seq,
                name: item.name.clone(),
                size: item.size,
                digest: item.sha256,
            });
        }
        let proof = tenant.inclusion_proof(item.seq, checkpoint.size)?;
        merkle::verify_inclusion(
            &record.leaf,
            item.seq,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .map_err(|source| EvidenceError::Proof {
            seq: item.seq,
            source,
        })?;
        objects.push(EvidenceObject {
            name: item.name.clone(),
            size: item.size,
            sha256: item.sha256,
            seq: item.seq,
            entry: bytes,
            proof,
        });
    }
    let (kind, process_id, document_id) = match subject {
        EvidenceSubject::Transfer(p) => (EvidenceKind::Transfer, Some(p), None),
        EvidenceSubject::Document(d) => (EvidenceKind::Document, None, Some(d)),
    };
    let evidence = Evidence {
        format: EVIDENCE_FORMAT.to_owned(),
        kind,
        process_id,
        document_id,
        checkpoint: String::from_utf8_lossy(&note.to_bytes()).into_owned(),
        verifier_key: key.to_string(),
        key_fingerprint: key.fingerprint(),
        witnesses,
        message,
        objects,
    };
    evidence
        .validate()
        .map_err(|reason| malformed("evidence file", reason))?;
    Ok(evidence)
}

/// The items of a transfer, in the order of the 0503 XML, with each rendition's UUID.
fn transfer_items(
    records: &TenantRecords,
    files: &[FileObject],
) -> Result<Vec<(Uuid, EvidenceItem)>, EvidenceError> {
    fn doc(
        records: &TenantRecords,
        d: &xdomea::DocumentObject,
        out: &mut Vec<(Uuid, EvidenceItem)>,
    ) -> Result<(), EvidenceError> {
        for v in &d.versions {
            let version = records.version(d.id, v.number)?;
            for r in &v.renditions {
                if !version.renditions.iter().any(|x| x.id == r.id) {
                    return Err(EvidenceError::Records(Box::new(RecordsError::Internal(
                        format!(
                            "rendition {} is not in version {} of document {}",
                            r.id, v.number, d.id
                        ),
                    ))));
                }
                out.push((
                    r.id,
                    EvidenceItem {
                        name: primary_file_name(r),
                        size: r.size,
                        sha256: r.digest,
                        seq: version.created.seq,
                    },
                ));
            }
        }
        for a in &d.attachments {
            doc(records, &a.document, out)?;
        }
        Ok(())
    }
    fn case(
        records: &TenantRecords,
        c: &xdomea::CaseObject,
        out: &mut Vec<(Uuid, EvidenceItem)>,
    ) -> Result<(), EvidenceError> {
        for d in &c.documents {
            doc(records, d, out)?;
        }
        for s in &c.sub_cases {
            case(records, s, out)?;
        }
        Ok(())
    }
    fn file(
        records: &TenantRecords,
        f: &FileObject,
        out: &mut Vec<(Uuid, EvidenceItem)>,
    ) -> Result<(), EvidenceError> {
        for d in &f.documents {
            doc(records, d, out)?;
        }
        for c in &f.cases {
            case(records, c, out)?;
        }
        for s in &f.sub_files {
            file(records, s, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    for f in files {
        file(records, f, &mut out)?;
    }
    Ok(out)
}

/// Writes a 0503 transfer ZIP with its evidence file: the XML, every primary file streamed
/// from the content store, then `{ProzessID}_akte-evidence.json` with a checkpoint chosen
/// after the files were read (the newest witnessed one covering them, or one signed then;
/// see [`build_evidence`]). The disposal flow calls this; it records nothing itself.
pub(crate) fn write_transfer<W: Write + Seek>(
    records: &TenantRecords,
    header: &MessageHeader,
    files: &[FileObject],
    out: W,
) -> Result<W, EvidenceError> {
    let items = transfer_items(records, files)?;
    let content = records.tenant().content();
    let mut writer = TransferWriter::new(out, header, files)?;
    for (rendition, item) in &items {
        let reader = content.get(&item.sha256).map_err(|e| XdomeaError::Source {
            rendition: *rendition,
            source: Box::new(e),
        })?;
        writer.add_primary_file(*rendition, reader)?;
    }
    let (name, size, sha256) = writer.message_entry();
    let message = EvidenceFile {
        name: name.to_owned(),
        size,
        sha256,
    };
    let items: Vec<EvidenceItem> = items.into_iter().map(|(_, item)| item).collect();
    let evidence = build_evidence(
        records.tenant(),
        EvidenceSubject::Transfer(header.process_id),
        Some(message),
        &items,
    )?;
    writer.add_extra_file(&evidence_entry_name(header.process_id), &evidence.to_json())?;
    Ok(writer.finish()?)
}

impl TenantRecords {
    fn document_items(&self, document: Uuid) -> Result<Vec<EvidenceItem>, EvidenceError> {
        let mut items = Vec::new();
        for v in self.versions(document)? {
            for r in &v.renditions {
                items.push(EvidenceItem {
                    name: format!("{}_{}", r.id.hyphenated(), sanitize_file_name(&r.file_name)),
                    size: r.size,
                    sha256: r.sha256,
                    seq: v.created.seq,
                });
            }
        }
        Ok(items)
    }

    /// The evidence of one document, for a file inspection request or a court: every
    /// rendition of every version, named `{rendition UUID}_{sanitised original name}` as in
    /// a transfer, each with its `version.add` entry and inclusion proof, all leading to one
    /// checkpoint (the newest witnessed one that covers them, or one signed now). Write it with [`Evidence::to_json`] and hand it over with the
    /// files under those names ([`verify_evidence_dir`] checks such a bundle), or use
    /// [`TenantRecords::document_evidence_package`].
    pub fn document_evidence(&self, document: Uuid) -> Result<Evidence, EvidenceError> {
        let items = self.document_items(document)?;
        build_evidence(
            self.tenant(),
            EvidenceSubject::Document(document),
            None,
            &items,
        )
    }

    /// A ZIP holding every rendition of every version of one document and its evidence as
    /// `{document UUID}_akte-evidence.json`; [`verify_package`] checks it like a transfer.
    /// Files stream from the content store.
    pub fn document_evidence_package<W: Write + Seek>(
        &self,
        document: Uuid,
        out: W,
    ) -> Result<W, EvidenceError> {
        let items = self.document_items(document)?;
        let content = self.tenant().content();
        let mut zip = ZipWriter::new(out);
        let zip_err = |what: &str, e: ::zip::result::ZipError| EvidenceError::Io {
            what: what.to_owned(),
            source: io::Error::other(e),
        };
        for item in &items {
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .large_file(item.size >= 0xF000_0000);
            zip.start_file(item.name.as_str(), options)
                .map_err(|e| zip_err("write the ZIP", e))?;
            let mut reader = content.get(&item.sha256).map_err(|e| EvidenceError::Io {
                what: format!("read {} from the content store", item.sha256),
                source: io::Error::other(e),
            })?;
            io::copy(&mut reader, &mut zip).map_err(|source| EvidenceError::Io {
                what: format!("copy {} into the ZIP", item.name),
                source,
            })?;
        }
        let evidence = build_evidence(
            self.tenant(),
            EvidenceSubject::Document(document),
            None,
            &items,
        )?;
        zip.start_file(
            evidence_entry_name(document).as_str(),
            SimpleFileOptions::default().compression_method(CompressionMethod::Deflated),
        )
        .map_err(|e| zip_err("write the ZIP", e))?;
        zip.write_all(&evidence.to_json())
            .map_err(|source| EvidenceError::Io {
                what: "write the evidence into the ZIP".into(),
                source,
            })?;
        zip.finish().map_err(|e| zip_err("finish the ZIP", e))
    }
}

/// The agency's side of a consistency check: given a checkpoint note the archive kept (it
/// must be this tenant's, signed with its key), signs a checkpoint of the journal now and
/// returns it with the consistency proof from the old size to the new one. Hand both to the
/// archive; it checks them with [`verify_consistency`].
pub fn consistency_evidence(
    tenant: &Tenant,
    old_note: &[u8],
) -> Result<(SignedNote, Vec<Digest>), EvidenceError> {
    let key = tenant.verifier();
    let (old, _) = Checkpoint::open(old_note, &key)?;
    if old.origin != tenant.origin() {
        return Err(malformed(
            "checkpoint note",
            format!(
                "its origin {:?} is not this tenant's {:?}",
                truncate(&old.origin, 80),
                tenant.origin()
            ),
        ));
    }
    let note = tenant.checkpoint()?;
    let (new, note) = Checkpoint::open(&note.to_bytes(), &key)?;
    let proof = tenant.consistency_proof(old.size, new.size)?;
    Ok((note, proof))
}

/// A consistency proof as a text file: one canonical base64 hash per line, each ending in
/// LF (an empty file for an empty proof).
pub fn format_proof(proof: &[Digest]) -> String {
    let mut out = String::with_capacity(proof.len() * 45);
    for d in proof {
        out.push_str(&BASE64.encode(d.as_bytes()));
        out.push('\n');
    }
    out
}

/// Parses [`format_proof`]'s text strictly (at most 65 lines of canonical base64 of 32
/// bytes, each ending in LF).
pub fn parse_proof(text: &[u8]) -> Result<Vec<Digest>, EvidenceError> {
    const WHAT: &str = "proof file";
    if text.len() > 66 * 45 {
        return Err(malformed(WHAT, "longer than any proof can be"));
    }
    let text = std::str::from_utf8(text).map_err(|_| malformed(WHAT, "not UTF-8"))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(malformed(WHAT, "the last line does not end in LF"));
    };
    let mut out = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let raw = BASE64
            .decode(line)
            .map_err(|e| malformed(WHAT, format!("line {}: not canonical base64: {e}", i + 1)))?;
        out.push(Digest::from_slice(&raw).ok_or_else(|| {
            malformed(
                WHAT,
                format!("line {}: {} bytes, expected 32", i + 1, raw.len()),
            )
        })?);
    }
    if out.len() > MAX_PROOF_HASHES + 1 {
        return Err(malformed(WHAT, "more hashes than any proof has"));
    }
    Ok(out)
}

/// Extracts a checkpoint note from a signed note file, an evidence file, or a ZIP with an
/// evidence file (as [`verify_package`] finds it), so that an archive can keep "the
/// checkpoint of the last transfer" as any of these. Nothing is verified here.
pub fn checkpoint_note_from(bytes: &[u8]) -> Result<Vec<u8>, EvidenceError> {
    if bytes.starts_with(b"PK") {
        let json = evidence_in_zip(io::Cursor::new(bytes))?;
        return Ok(Evidence::from_json(&json)?.checkpoint.into_bytes());
    }
    if bytes.first() == Some(&b'{') {
        return Ok(Evidence::from_json(bytes)?.checkpoint.into_bytes());
    }
    Ok(bytes.to_vec())
}

// ------------------------------------------------------------------------ the verdict

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
    fn new(source: String) -> Self {
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

    fn problem(
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

// ---------------------------------------------------------------------- verification

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

fn read_capped(reader: &mut dyn Read) -> Result<Vec<u8>, (ProblemCode, String)> {
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
/// [`TenantRecords::document_evidence`]) against the files in `dir`, named as in the
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
            let expected = xdomea::message_xml_name(p, MessageType::Transfer);
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

// ------------------------------------------------------------------------- consistency

/// Two checkpoints of one journal shown consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsistencyReport {
    /// The journal.
    pub origin: String,
    /// Size of the older checkpoint.
    pub old_size: u64,
    /// Its root.
    pub old_root: Digest,
    /// Size of the newer checkpoint.
    pub new_size: u64,
    /// Its root.
    pub new_root: Digest,
}

impl fmt::Display for ConsistencyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CONSISTENT: {} at size {} (root {}) extends size {} (root {}): nothing recorded before was removed or changed",
            self.origin,
            self.new_size,
            BASE64.encode(self.new_root.as_bytes()),
            self.old_size,
            BASE64.encode(self.old_root.as_bytes())
        )
    }
}

/// Why two checkpoints could not be shown consistent.
#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    /// The key is a witness (type 0x04) key.
    #[error("the key is a cosignature (type 0x04) key; give the tenant's type 0x01 key")]
    WrongKeyKind,
    /// The older checkpoint does not parse or is not signed by the key.
    #[error("old checkpoint: {0}")]
    Old(NoteError),
    /// The newer checkpoint does not parse or is not signed by the key.
    #[error("new checkpoint: {0}")]
    New(NoteError),
    /// A checkpoint's origin is not the key's name.
    #[error("{which} checkpoint is of {origin:?}, but the key is {key:?}'s")]
    Origin {
        /// "old" or "new".
        which: &'static str,
        /// The checkpoint's origin.
        origin: String,
        /// The key's name.
        key: String,
    },
    /// The newer checkpoint is smaller: the journal lost entries.
    #[error("the new checkpoint has {new} entries, fewer than the old one's {old}: entries were removed")]
    Shrunk {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The proof does not show the old tree to be a prefix of the new one.
    #[error("the consistency proof from size {old} to {new} does not verify: {source}")]
    Proof {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
    /// Reading an input failed or an input does not have its format.
    #[error(transparent)]
    Input(#[from] EvidenceError),
    /// The key given is not a verifier key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No key was given and the old checkpoint came without one.
    #[error("no key: give the tenant's verifier key, or an evidence file or transfer ZIP as the old checkpoint")]
    NoKey,
}

/// Checks that the journal at the newer checkpoint extends the journal at the older one:
/// both notes are signed by `key` (type 0x01) and of the journal named like the key, the new
/// size is not smaller, and `proof` (RFC 9162 consistency proof) leads from the old root to
/// the new one. An old checkpoint of size 0 is consistent with everything.
pub fn verify_consistency(
    old_note: &[u8],
    new_note: &[u8],
    proof: &[Digest],
    key: &VerifierKey,
) -> Result<ConsistencyReport, ConsistencyError> {
    if key.kind() != KeyKind::Ed25519 {
        return Err(ConsistencyError::WrongKeyKind);
    }
    let (old, _) = Checkpoint::open(old_note, key).map_err(ConsistencyError::Old)?;
    let (new, _) = Checkpoint::open(new_note, key).map_err(ConsistencyError::New)?;
    for (which, cp) in [("old", &old), ("new", &new)] {
        if cp.origin != key.name() {
            return Err(ConsistencyError::Origin {
                which,
                origin: truncate(&cp.origin, 80),
                key: key.name().to_owned(),
            });
        }
    }
    if new.size < old.size {
        return Err(ConsistencyError::Shrunk {
            old: old.size,
            new: new.size,
        });
    }
    if old.size > 0 {
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, proof).map_err(
            |source| ConsistencyError::Proof {
                old: old.size,
                new: new.size,
                source,
            },
        )?;
    } else if !proof.is_empty() {
        return Err(ConsistencyError::Proof {
            old: 0,
            new: new.size,
            source: ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            },
        });
    }
    Ok(ConsistencyReport {
        origin: new.origin,
        old_size: old.size,
        old_root: old.root,
        new_size: new.size,
        new_root: new.root,
    })
}

/// [`verify_consistency`] on files: `old` and `new` may each be a checkpoint note, an
/// evidence file or a ZIP with one ([`checkpoint_note_from`]); `proof` is a proof file
/// ([`parse_proof`]). Without `key`, the verifier key in `old` (an evidence file or ZIP) is
/// used: the key the archive accepted with the earlier transfer.
pub fn verify_consistency_files(
    old: &Path,
    new: &Path,
    proof: &Path,
    key: Option<&str>,
) -> Result<ConsistencyReport, ConsistencyError> {
    let open = |path: &Path| {
        fs::File::open(path).map_err(|source| ConsistencyError::Open {
            path: path.to_path_buf(),
            source,
        })
    };
    let (old_note, old_key) = note_and_key(open(old)?, old)?;
    let (new_note, _) = note_and_key(open(new)?, new)?;
    let mut proof_bytes = Vec::new();
    open(proof)?
        .take(1 << 16)
        .read_to_end(&mut proof_bytes)
        .map_err(|source| ConsistencyError::Open {
            path: proof.to_path_buf(),
            source,
        })?;
    let proof = parse_proof(&proof_bytes)?;
    let key = match key {
        Some(s) => VerifierKey::parse(s.trim_end_matches('\n'))?,
        None => old_key.ok_or(ConsistencyError::NoKey)?,
    };
    verify_consistency(&old_note, &new_note, &proof, &key)
}

/// The checkpoint note in a note file, an evidence file or a ZIP with one, and the verifier
/// key the evidence states (if it is evidence). A ZIP is read through its directory, not
/// into memory.
fn note_and_key(
    mut file: fs::File,
    path: &Path,
) -> Result<(Vec<u8>, Option<VerifierKey>), ConsistencyError> {
    let io_err = |source| ConsistencyError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let bytes = if n == 2 && magic == *b"PK" {
        evidence_in_zip(io::BufReader::new(file))?
    } else {
        read_capped(&mut file).map_err(|(_, reason)| malformed("input", reason))?
    };
    if bytes.first() == Some(&b'{') {
        let evidence = Evidence::from_json(&bytes)?;
        let key = VerifierKey::parse(&evidence.verifier_key).ok();
        Ok((evidence.checkpoint.into_bytes(), key))
    } else {
        Ok((bytes, None))
    }
}

/// The bytes of the one `*_akte-evidence.json` entry of a ZIP.
fn evidence_in_zip<R: Read + Seek>(reader: R) -> Result<Vec<u8>, EvidenceError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Payload;

    fn entry_with_time(micros: i64) -> Vec<u8> {
        let e = Entry {
            seq: 0,
            time: chrono::DateTime::UNIX_EPOCH,
            prev: Digest::ZERO,
            actor: "a".into(),
            kind: "k".into(),
            object: String::new(),
            payloads: vec![Payload {
                kind: PayloadKind::Content,
                role: "rendition".into(),
                size: 1,
                digest: Digest::of(b"x"),
            }],
        };
        let mut bytes = e.encode();
        bytes[9..17].copy_from_slice(&micros.to_be_bytes());
        bytes
    }

    /// FORMAT.md states the range of entry times decoders accept; hold the decoder to it.
    #[test]
    fn documented_time_range_is_the_decoders() {
        for ok in [MIN_ENTRY_TIME_MICROS, 0, MAX_ENTRY_TIME_MICROS] {
            assert!(Entry::decode(&entry_with_time(ok)).is_ok(), "{ok}");
        }
        for bad in [
            MIN_ENTRY_TIME_MICROS - 1,
            MAX_ENTRY_TIME_MICROS + 1,
            i64::MIN,
            i64::MAX,
        ] {
            assert!(Entry::decode(&entry_with_time(bad)).is_err(), "{bad}");
        }
    }

    fn sample() -> Evidence {
        Evidence {
            format: EVIDENCE_FORMAT.into(),
            kind: EvidenceKind::Document,
            process_id: None,
            document_id: Some(Uuid::from_u128(7)),
            checkpoint: "o\n1\nAAAA\n\n\u{2014} o AAAA\n".into(),
            verifier_key: "k".into(),
            key_fingerprint: "f".into(),
            witnesses: vec![],
            message: None,
            objects: vec![EvidenceObject {
                name: "a_ü \u{2028}\"x'.pdf".into(),
                size: 3,
                sha256: Digest::of(b"abc"),
                seq: 0,
                entry: vec![1, 2, 3],
                proof: vec![Digest::of(b"1"), Digest::of(b"2")],
            }],
        }
    }

    #[test]
    fn canonical_form_round_trips_and_every_other_form_is_refused() {
        let json = sample().to_json();
        assert_eq!(Evidence::from_json(&json).unwrap(), sample());
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.starts_with("{\n  \"format\": \"akte-evidence/v1\",\n  \"kind\": \"document\",\n")
        );
        assert!(text.contains("\"proof\": [\n        \""));
        assert!(text.ends_with("  ]\n}\n"));
        let variants = [
            text.replacen("  \"kind\"", "   \"kind\"", 1),
            text.replacen('\n', "\r\n", 1),
            text.trim_end().to_owned(),
            text.replacen(
                &Digest::of(b"abc").to_hex(),
                &Digest::of(b"abc").to_hex().to_uppercase(),
                1,
            ),
            text.replacen("\"seq\": 0", "\"seq\": -0", 1),
            text.replacen("\"seq\": 0", "\"seq\": 0.0", 1),
            text.replacen("\"size\": 3", "\"size\": 3,\n        \"size\": 3", 1),
            text.replacen("\"witnesses\": []", "\"witnesses\": [],\n  \"extra\": 1", 1),
            text.replacen(
                &Uuid::from_u128(7).hyphenated().to_string(),
                &Uuid::from_u128(7).simple().to_string(),
                1,
            ),
            text.replacen("AQID", "AQID=", 1),
            text.replacen("akte-evidence/v1", "akte-evidence/v2", 1),
            text.replacen("\"document\"", "\"transfer\"", 1),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert!(
                Evidence::from_json(v.as_bytes()).is_err(),
                "variant {i} accepted:\n{v}"
            );
        }
    }

    #[test]
    fn proof_files_round_trip_and_are_strict() {
        let proof = vec![Digest::of(b"1"), Digest::of(b"2")];
        let text = format_proof(&proof);
        assert_eq!(parse_proof(text.as_bytes()).unwrap(), proof);
        assert_eq!(parse_proof(b"").unwrap(), Vec::<Digest>::new());
        assert!(parse_proof(text.trim_end().as_bytes()).is_err());
        assert!(parse_proof(format!("{text}\n").as_bytes()).is_err());
        assert!(parse_proof(b"AAAA\n").is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in [0usize, 1, 4, 22, 100, 1000] {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let mut with_magic = b"PK\x03\x04".to_vec();
                with_magic.extend_from_slice(&bytes);
                for input in [&bytes, &with_magic] {
                    let r = verify_package_bytes(input, None).unwrap();
                    assert!(!r.is_clean());
                    let _ = Evidence::from_json(input);
                    let _ = checkpoint_note_from(input);
                    let _ = parse_proof(input);
                }
            }
        }
    }
}
