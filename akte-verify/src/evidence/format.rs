//! The evidence file (`akte-evidence/v1`) and the proof file: their types, canonical
//! bytes and strict parsing.

use std::collections::HashSet;
use std::io;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::digest::Digest;

/// An evidence file, checkpoint note, proof file or ZIP that does not have the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct FormatError {
    /// What was read.
    pub what: &'static str,
    /// What is wrong.
    pub reason: String,
}

pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> FormatError {
    FormatError {
        what,
        reason: reason.into(),
    }
}

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
pub(crate) fn file_name_problem(name: &str) -> Option<&'static str> {
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
    pub fn from_json(bytes: &[u8]) -> Result<Evidence, FormatError> {
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

    /// The rules beyond the JSON shape (the builder checks what it wrote with them too).
    pub fn validate(&self) -> Result<(), String> {
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

/// `s` cut to `max` characters (with an ellipsis), for quoting input in an error message.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
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
pub fn parse_proof(text: &[u8]) -> Result<Vec<Digest>, FormatError> {
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
pub fn checkpoint_note_from(bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    if bytes.starts_with(b"PK") {
        let json = evidence_in_zip(io::Cursor::new(bytes))?;
        return Ok(Evidence::from_json(&json)?.checkpoint.into_bytes());
    }
    if bytes.first() == Some(&b'{') {
        return Ok(Evidence::from_json(bytes)?.checkpoint.into_bytes());
    }
    Ok(bytes.to_vec())
}
