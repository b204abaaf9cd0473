//! Signed notes (C2SP signed-note), transparency log checkpoints (C2SP tlog-checkpoint) and
//! Ed25519 witness cosignatures (C2SP tlog-cosignature, `cosignature/v1`).
//!
//! A checkpoint states "the journal of this tenant had `size` entries and this Merkle root";
//! signing it as a note makes that statement checkable with the tenant's verifier key by
//! any C2SP tool, and witnesses can add cosignatures to the same note.
//!
//! Parsing is strict: every accepted note has exactly one byte form, which
//! [`SignedNote::to_bytes`] reproduces, so a note cannot be altered without breaking a
//! signature or being refused outright. The byte-precise description is in
//! `docs/FORMAT.md` (section "Keys and checkpoints").

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::digest::Digest;
use crate::keys::{
    key_id, key_name_problem, truncate, KeyKind, SigningKeyPair, VerifierKey, TYPE_COSIGNATURE_V1,
};

/// Largest note accepted by [`SignedNote::parse`], in bytes. A checkpoint with a few
/// signatures is a few hundred bytes; the bound keeps hostile input cheap to refuse.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Most signature lines accepted in one note (the Go implementation's limit; C2SP asks
/// verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Start of every signature line: EM DASH (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// First line of the message a cosignature/v1 signs.
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// Length of a cosignature/v1 signature after the key id: 8-byte timestamp and 64-byte
/// Ed25519 signature.
const COSIGNATURE_LEN: usize = 8 + 64;

/// Errors from parsing, signing and verifying notes, checkpoints and cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is larger than [`MAX_NOTE_SIZE`].
    #[error("note is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The note does not have the signed-note syntax.
    #[error("malformed note, line {line}: {reason}")]
    Malformed {
        /// 1-based line number in the note.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Text handed to signing that no note may carry.
    #[error("invalid note text: {reason}")]
    InvalidText {
        /// What is wrong.
        reason: String,
    },
    /// A signature line handed to [`SignedNote::push_signature`] (or found in a hand-built
    /// note) that could not be written as a valid line.
    #[error("invalid signature line: {reason}")]
    InvalidSignature {
        /// What is wrong.
        reason: String,
    },
    /// The note has more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has {count} signature lines, more than the limit of {limit}")]
    TooManySignatures {
        /// Number of signature lines.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// No signature line is from one of the given verifier keys (lines by other keys
    /// are ignored, so this is also the answer for a note signed with the wrong key).
    #[error(
        "no signature from a known key: the note is not signed by any of the given verifier keys"
    )]
    NoKnownSignature,
    /// A signature line from a known key does not verify.
    #[error("signature by known key {name}+{key_id} does not verify")]
    BadSignature {
        /// Key name of the signature line.
        name: String,
        /// Key id, 8 hex digits.
        key_id: String,
    },
    /// Two different verifier keys share name and key id, so a signature cannot be
    /// attributed to one of them.
    #[error("ambiguous verifier keys: two different keys are named {name}+{key_id}")]
    AmbiguousVerifier {
        /// The shared key name.
        name: String,
        /// The shared key id, 8 hex digits.
        key_id: String,
    },
    /// The verifier key is of a kind that cannot do what was asked.
    #[error("verifier key {name} is a {kind} key: {reason}")]
    WrongKeyKind {
        /// Key name.
        name: String,
        /// Its kind.
        kind: KeyKind,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// The note text is not a valid checkpoint body.
    #[error("malformed checkpoint, line {line}: {reason}")]
    MalformedCheckpoint {
        /// 1-based line number in the body.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint value that cannot be written as a checkpoint body.
    #[error("invalid checkpoint: {reason}")]
    InvalidCheckpoint {
        /// What is wrong.
        reason: String,
    },
    /// A cosignature does not verify or is not from the given witness.
    #[error("cosignature by {name}: {reason}")]
    BadCosignature {
        /// Key name of the signature.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A cosignature timestamp above 2^63 - 1, which tlog-cosignature forbids.
    #[error("cosignature timestamp {timestamp} is above the maximum 2^63-1")]
    TimestampOutOfRange {
        /// The timestamp.
        timestamp: u64,
    },
}

/// One signature line of a note: key name, key id, and the signature bytes after the id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first 4 bytes of the decoded signature).
    pub key_id: [u8; 4],
    /// Signature bytes after the key id: 64 for Ed25519, 72 for cosignature/v1
    /// (timestamp and signature), other lengths for other algorithms.
    pub signature: Vec<u8>,
}

impl fmt::Debug for NoteSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSignature")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .field("signature", &BASE64.encode(&self.signature))
            .finish()
    }
}

impl NoteSignature {
    /// The signature line, including the final newline:
    /// `— <name> <base64(key id || signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(raw))
    }

    /// Length of [`NoteSignature::to_line`] without building it.
    fn line_len(&self) -> usize {
        SIGNATURE_PREFIX.len()
            + self.name.len()
            + 1
            + (4 + self.signature.len()).div_ceil(3) * 4
            + 1
    }

    /// Parses one signature line without its newline. `line_no` is only for errors.
    fn parse_line(line: &str, line_no: usize) -> Result<Self, NoteError> {
        let bad = |reason: String| NoteError::Malformed {
            line: line_no,
            reason,
        };
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            bad(format!(
                "a signature line must start with an em dash (U+2014) and a space, got {:?}",
                truncate(line, 60)
            ))
        })?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("expected \"\u{2014} <key name> <base64 signature>\"".to_owned()))?;
        if let Some(reason) = key_name_problem(name) {
            return Err(bad(format!(
                "invalid key name {:?}: {reason}",
                truncate(name, 60)
            )));
        }
        let shown = truncate(name, 60);
        if b64.is_empty() {
            return Err(bad(format!("signature of {shown} is empty")));
        }
        // The standard engine refuses missing padding and non-zero trailing bits, so each
        // signature has one encoding only.
        let raw = BASE64.decode(b64).map_err(|e| {
            bad(format!(
                "signature of {shown} is not valid standard base64: {e}"
            ))
        })?;
        if raw.len() < 5 {
            return Err(bad(format!(
                "signature of {shown} is {} bytes; expected a 4-byte key id and a signature",
                raw.len()
            )));
        }
        let key_id = [raw[0], raw[1], raw[2], raw[3]];
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature: raw[4..].to_vec(),
        })
    }
}

/// A note: text and one or more signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Signature lines in note order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Signs `text` with `key`.
    ///
    /// The text must be non-empty, end in "\n" and contain no control characters other
    /// than "\n"; otherwise no C2SP verifier would accept the note.
    pub fn sign(text: &str, key: &SigningKeyPair) -> Result<Self, NoteError> {
        let mut note = SignedNote {
            text: text.to_owned(),
            signatures: Vec::new(),
        };
        note.add_signature(key)?;
        Ok(note)
    }

    /// Adds a signature by `key`, replacing an earlier signature line with the same key
    /// name and key id.
    ///
    /// Fails if the text is not valid note text or if the note would exceed
    /// [`MAX_SIGNATURES`] or [`MAX_NOTE_SIZE`], so every note built here can be parsed back.
    pub fn add_signature(&mut self, key: &SigningKeyPair) -> Result<(), NoteError> {
        validate_text(&self.text).map_err(|reason| NoteError::InvalidText { reason })?;
        let sig = NoteSignature {
            name: key.name().to_owned(),
            key_id: key.key_id(),
            signature: key.sign(self.text.as_bytes()).to_vec(),
        };
        self.push_signature(sig)
    }

    /// Adds a signature line made elsewhere (a witness's cosignature, say), replacing an
    /// earlier line with the same key name and key id. Checks syntax and limits only; the
    /// signature itself is checked by [`SignedNote::verify`].
    pub fn push_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        check_signature(&sig)?;
        let same_key = |s: &NoteSignature| s.name == sig.name && s.key_id == sig.key_id;
        let kept = self.signatures.iter().filter(|s| !same_key(s));
        let count = kept.clone().count() + 1;
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count,
                limit: MAX_SIGNATURES,
            });
        }
        let size =
            self.text.len() + 1 + kept.map(NoteSignature::line_len).sum::<usize>() + sig.line_len();
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size,
                limit: MAX_NOTE_SIZE,
            });
        }
        self.signatures.retain(|s| !same_key(s));
        self.signatures.push(sig);
        Ok(())
    }

    /// Parses a note strictly. Nothing is verified: use [`SignedNote::verify`] before
    /// trusting the text.
    ///
    /// Refuses input over [`MAX_NOTE_SIZE`], invalid UTF-8, control characters other than
    /// "\n", a missing blank line, malformed signature lines, no signature line, and more
    /// than [`MAX_SIGNATURES`] of them.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: bytes.len(),
                limit: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|e| {
            let at = e.valid_up_to();
            NoteError::Malformed {
                line: line_number(&bytes[..at]),
                reason: format!("invalid UTF-8 at byte offset {at}"),
            }
        })?;
        if let Some((at, c)) = s.char_indices().find(|&(_, c)| is_forbidden_control(c)) {
            return Err(NoteError::Malformed {
                line: line_number(&bytes[..at]),
                reason: format!("control character U+{:04X} at byte offset {at}", c as u32),
            });
        }
        // The text may contain blank lines; the last blank line separates it from the
        // signatures, which never contain one.
        let Some(split) = s.rfind("\n\n") else {
            return Err(NoteError::Malformed {
                line: line_number(bytes),
                reason: "no blank line separating the text from the signature lines".to_owned(),
            });
        };
        let text = &s[..split + 1];
        let sig_block = &s[split + 2..];
        let first_sig_line = line_number(text.as_bytes()) + 1;
        if sig_block.is_empty() {
            return Err(NoteError::Malformed {
                line: first_sig_line,
                reason: "no signature lines after the blank line".to_owned(),
            });
        }
        let Some(sig_block) = sig_block.strip_suffix('\n') else {
            return Err(NoteError::Malformed {
                line: line_number(bytes),
                reason: "the last signature line does not end in a newline".to_owned(),
            });
        };
        let count = sig_block.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count,
                limit: MAX_SIGNATURES,
            });
        }
        let signatures = sig_block
            .split('\n')
            .enumerate()
            .map(|(i, line)| NoteSignature::parse_line(line, first_sig_line + i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note bytes: text, a blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'\n');
        for sig in &self.signatures {
            out.extend_from_slice(sig.to_line().as_bytes());
        }
        out
    }

    fn encoded_len(&self) -> usize {
        self.text.len()
            + 1
            + self
                .signatures
                .iter()
                .map(NoteSignature::line_len)
                .sum::<usize>()
    }

    /// Checks that this value is a note [`SignedNote::parse`] would accept.
    pub fn validate(&self) -> Result<(), NoteError> {
        validate_text(&self.text).map_err(|reason| NoteError::InvalidText { reason })?;
        if self.signatures.is_empty() {
            return Err(NoteError::InvalidText {
                reason: "a note needs at least one signature".to_owned(),
            });
        }
        for sig in &self.signatures {
            check_signature(sig)?;
        }
        self.check_limits()
    }

    fn check_limits(&self) -> Result<(), NoteError> {
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: self.signatures.len(),
                limit: MAX_SIGNATURES,
            });
        }
        let size = self.encoded_len();
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size,
                limit: MAX_NOTE_SIZE,
            });
        }
        Ok(())
    }

    /// Verifies the note against a set of trusted verifier keys and returns the names of
    /// the keys whose signatures verified (each once, in note order).
    ///
    /// As C2SP signed-note requires: a signature line whose name and key id match no given
    /// key is ignored; every line that matches a key must verify, or the whole note is
    /// refused naming that key; at least one must match. Keys of kind
    /// [`KeyKind::CosignatureV1`] check witness cosignatures over the note text.
    pub fn verify(&self, verifiers: &[VerifierKey]) -> Result<Vec<String>, NoteError> {
        self.validate()?;
        let known = index_verifiers(verifiers)?;
        let mut verified: Vec<String> = Vec::new();
        for sig in &self.signatures {
            let Some(key) = known.get(&(sig.name.as_str(), sig.key_id)) else {
                continue;
            };
            let ok = match key.kind() {
                KeyKind::Ed25519 => key.verify(self.text.as_bytes(), &sig.signature),
                KeyKind::CosignatureV1 => {
                    verify_cosignature_bytes(&self.text, &sig.signature, key).is_ok()
                }
            };
            if !ok {
                return Err(NoteError::BadSignature {
                    name: truncate(&sig.name, 80),
                    key_id: hex::encode(sig.key_id),
                });
            }
            if !verified.iter().any(|n| n == &sig.name) {
                verified.push(sig.name.clone());
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(verified)
    }
}

/// Indexes verifier keys by (name, key id). The same key given twice is fine; two
/// different keys under one (name, key id) are a configuration error, reported rather than
/// resolved by picking one.
fn index_verifiers(
    verifiers: &[VerifierKey],
) -> Result<HashMap<(&str, [u8; 4]), &VerifierKey>, NoteError> {
    let mut known: HashMap<(&str, [u8; 4]), &VerifierKey> = HashMap::with_capacity(verifiers.len());
    for v in verifiers {
        if let Some(prev) = known.insert((v.name(), v.key_id()), v) {
            if prev != v {
                return Err(NoteError::AmbiguousVerifier {
                    name: truncate(v.name(), 80),
                    key_id: hex::encode(v.key_id()),
                });
            }
        }
    }
    Ok(known)
}

/// 1-based number of the line in which the byte after `prefix` lies.
fn line_number(prefix: &[u8]) -> usize {
    prefix.iter().filter(|&&b| b == b'\n').count() + 1
}

/// C2SP signed-note forbids ASCII control characters other than newline.
fn is_forbidden_control(c: char) -> bool {
    c < '\u{20}' && c != '\n'
}

/// Checks that a signature line built in memory can be written as one that parses.
fn check_signature(sig: &NoteSignature) -> Result<(), NoteError> {
    if let Some(reason) = key_name_problem(&sig.name) {
        return Err(NoteError::InvalidSignature {
            reason: format!("invalid key name {:?}: {reason}", truncate(&sig.name, 60)),
        });
    }
    if sig.signature.is_empty() {
        return Err(NoteError::InvalidSignature {
            reason: format!("signature of {} is empty", truncate(&sig.name, 60)),
        });
    }
    Ok(())
}

/// Why `text` cannot be the text of a note, if it cannot.
fn validate_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the text is empty".to_owned());
    }
    if !text.ends_with('\n') {
        return Err("the text must end with a newline".to_owned());
    }
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| is_forbidden_control(c)) {
        return Err(format!(
            "control character U+{:04X} at byte offset {at} (only newline is allowed)",
            c as u32
        ));
    }
    if text.len() >= MAX_NOTE_SIZE {
        return Err(format!(
            "the text is {} bytes, too large for a note",
            text.len()
        ));
    }
    Ok(())
}

/// A transparency log checkpoint: the journal's origin, size and Merkle root.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The log's identity, first line of the body.
    pub origin: String,
    /// Number of leaves (journal entries).
    pub size: u64,
    /// RFC 6962 Merkle tree root at `size`.
    pub root: Digest,
    /// Extension lines after the root, without their newlines (usually none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Digest) -> Self {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Checks that the fields can be written as a body that [`Checkpoint::parse_body`]
    /// reads back unchanged.
    pub fn validate(&self) -> Result<(), NoteError> {
        let bad = |reason: String| Err(NoteError::InvalidCheckpoint { reason });
        if self.origin.is_empty() {
            return bad("the origin is empty".to_owned());
        }
        // Same rules as parsing: a note forbids controls other than newline, a newline
        // would end the line, and the origin has no control character at all (Unicode Cc,
        // FORMAT.md "Checkpoint"), as it names the journal in messages and file names.
        let unwritable = |c: char| c == '\n' || is_forbidden_control(c);
        if self.origin.chars().any(|c| c.is_control()) {
            return bad(format!(
                "the origin {:?} contains a control character",
                truncate(&self.origin, 80)
            ));
        }
        for (i, ext) in self.extensions.iter().enumerate() {
            if ext.is_empty() {
                return bad(format!("extension line {} is empty", i + 1));
            }
            if ext.chars().any(unwritable) {
                return bad(format!(
                    "extension line {} contains a control character",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    /// The note text: origin, size, base64 root, extension lines, each ending in "\n".
    ///
    /// Does not validate; [`Checkpoint::sign`] and [`cosign`] do.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.as_bytes())
        );
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body strictly: `to_body(parse_body(t)) == t` for every accepted
    /// `t`, which is what lets a cosignature be checked against the parsed value.
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = |line: usize, reason: String| NoteError::MalformedCheckpoint { line, reason };
        let Some(body) = text.strip_suffix('\n') else {
            return Err(bad(
                line_number(text.as_bytes()),
                "the body must end with a newline".to_owned(),
            ));
        };
        if let Some((at, c)) = text.char_indices().find(|&(_, c)| is_forbidden_control(c)) {
            return Err(bad(
                line_number(&text.as_bytes()[..at]),
                format!("control character U+{:04X}", c as u32),
            ));
        }
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad(1, "the origin line is empty".to_owned()));
        }
        if let Some(c) = origin.chars().find(|c| c.is_control()) {
            return Err(bad(
                1,
                format!("the origin contains control character U+{:04X}", c as u32),
            ));
        }
        let size_line = lines
            .next()
            .ok_or_else(|| bad(2, "missing tree size line".to_owned()))?;
        let size = parse_tree_size(size_line).map_err(|reason| bad(2, reason))?;
        let root_line = lines
            .next()
            .ok_or_else(|| bad(3, "missing root hash line".to_owned()))?;
        let root = parse_root(root_line).map_err(|reason| bad(3, reason))?;
        let mut extensions = Vec::new();
        for (i, ext) in lines.enumerate() {
            if ext.is_empty() {
                return Err(bad(4 + i, "extension lines must not be empty".to_owned()));
            }
            extensions.push(ext.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the checkpoint body with the log's key.
    pub fn sign(&self, key: &SigningKeyPair) -> Result<SignedNote, NoteError> {
        self.validate()?;
        SignedNote::sign(&self.to_body(), key)
    }

    /// Parses a signed checkpoint, verifies it against the log's verifier key (type 0x01),
    /// then parses the body. Other signatures (witnesses) are ignored here; check them with
    /// [`SignedNote::verify`] or [`verify_cosignature`].
    ///
    /// The caller must still check that `origin` is the log it expects: the signature
    /// proves who signed, not which log the signer meant.
    pub fn open(
        note_bytes: &[u8],
        verifier: &VerifierKey,
    ) -> Result<(Checkpoint, SignedNote), NoteError> {
        if verifier.kind() != KeyKind::Ed25519 {
            return Err(NoteError::WrongKeyKind {
                name: truncate(verifier.name(), 80),
                kind: verifier.kind(),
                reason: "a checkpoint must be opened with the log's Ed25519 (type 0x01) key",
            });
        }
        let note = SignedNote::parse(note_bytes)?;
        note.verify(std::slice::from_ref(verifier))?;
        let checkpoint = Checkpoint::parse_body(&note.text)?;
        Ok((checkpoint, note))
    }
}

/// Tree size: ASCII decimal, no sign, no leading zeros except "0" itself, fits in u64.
fn parse_tree_size(line: &str) -> Result<u64, String> {
    if line.is_empty() {
        return Err("the tree size line is empty".to_owned());
    }
    if !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the tree size must be decimal digits only, got {:?}",
            truncate(line, 40)
        ));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(format!(
            "the tree size {:?} has a leading zero",
            truncate(line, 40)
        ));
    }
    line.parse::<u64>().map_err(|_| {
        format!(
            "the tree size {:?} does not fit in 64 bits",
            truncate(line, 40)
        )
    })
}

fn parse_root(line: &str) -> Result<Digest, String> {
    let raw = BASE64
        .decode(line)
        .map_err(|e| format!("the root hash is not valid standard base64: {e}"))?;
    Digest::from_slice(&raw)
        .ok_or_else(|| format!("the root hash is {} bytes, expected 32", raw.len()))
}

/// The message a cosignature/v1 signs: "cosignature/v1\ntime <decimal>\n" and the body.
fn cosignature_message(body: &str, timestamp: u64) -> Vec<u8> {
    let mut msg = format!("{COSIGNATURE_HEADER}time {timestamp}\n").into_bytes();
    msg.extend_from_slice(body.as_bytes());
    msg
}

/// Cosigns a checkpoint as a witness (C2SP tlog-cosignature, Ed25519 `cosignature/v1`).
///
/// `timestamp` is POSIX seconds and must not exceed 2^63-1. The returned line carries the
/// witness name, the type-0x04 key id, and the 8-byte big-endian timestamp followed by the
/// 64-byte signature; add it to the checkpoint's note with [`SignedNote::push_signature`].
pub fn cosign(
    checkpoint: &Checkpoint,
    witness: &SigningKeyPair,
    timestamp: u64,
) -> Result<NoteSignature, NoteError> {
    checkpoint.validate()?;
    if i64::try_from(timestamp).is_err() {
        return Err(NoteError::TimestampOutOfRange { timestamp });
    }
    let msg = cosignature_message(&checkpoint.to_body(), timestamp);
    let mut signature = Vec::with_capacity(COSIGNATURE_LEN);
    signature.extend_from_slice(&timestamp.to_be_bytes());
    signature.extend_from_slice(&witness.sign(&msg));
    Ok(NoteSignature {
        name: witness.name().to_owned(),
        key_id: key_id(
            witness.name(),
            TYPE_COSIGNATURE_V1,
            &witness.public_key_bytes(),
        ),
        signature,
    })
}

/// Verifies a witness cosignature of `checkpoint` and returns its timestamp.
///
/// `witness` may be of either kind; the type-0x04 key id is derived from its name and
/// public key. Refuses a signature whose name or key id is not the witness's, whose length
/// is not 72 bytes, whose timestamp exceeds 2^63-1, or that does not verify. Whether a
/// timestamp in the future is acceptable is the caller's decision.
pub fn verify_cosignature(
    checkpoint: &Checkpoint,
    sig: &NoteSignature,
    witness: &VerifierKey,
) -> Result<u64, NoteError> {
    checkpoint.validate()?;
    let bad = |reason: String| NoteError::BadCosignature {
        name: truncate(&sig.name, 80),
        reason,
    };
    if sig.name != witness.name() {
        return Err(bad(format!(
            "the signature is by key name {:?}, not by witness {:?}",
            truncate(&sig.name, 80),
            truncate(witness.name(), 80)
        )));
    }
    let cosigner = witness.with_kind(KeyKind::CosignatureV1);
    if sig.key_id != cosigner.key_id() {
        return Err(bad(format!(
            "key id {} is not the witness's cosignature/v1 key id {}",
            hex::encode(sig.key_id),
            hex::encode(cosigner.key_id())
        )));
    }
    verify_cosignature_bytes(&checkpoint.to_body(), &sig.signature, &cosigner).map_err(bad)
}

/// Checks timestamp-and-signature bytes of a cosignature/v1 over a note text.
fn verify_cosignature_bytes(
    text: &str,
    signature: &[u8],
    witness: &VerifierKey,
) -> Result<u64, String> {
    if signature.len() != COSIGNATURE_LEN {
        return Err(format!(
            "the signature is {} bytes, expected {COSIGNATURE_LEN} (8-byte timestamp and 64-byte Ed25519 signature)",
            signature.len()
        ));
    }
    let (ts_bytes, ed_sig) = signature.split_at(8);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(ts_bytes);
    let timestamp = u64::from_be_bytes(ts);
    if i64::try_from(timestamp).is_err() {
        return Err(format!(
            "the timestamp {timestamp} is above the maximum 2^63-1"
        ));
    }
    if !witness.verify(&cosignature_message(text, timestamp), ed_sig) {
        return Err("the signature does not verify".to_owned());
    }
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the Go implementation: golang/mod, sumdb/note/note_test.go
    // (commit 02c991387e35f9e4c0a9b7ce137717055f8d716d), TestSign and TestOpen.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn peter() -> VerifierKey {
        VerifierKey::parse(PETER_VKEY).unwrap()
    }

    fn enoch() -> VerifierKey {
        VerifierKey::parse(ENOCH_VKEY).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint::new("akte.example/tenant-1", 42, Digest::of(b"root"))
    }

    #[test]
    fn go_vector_signing_reproduces_go_output() {
        let key = SigningKeyPair::from_private_string(PETER_SKEY).unwrap();
        let note = SignedNote::sign(GO_TEXT, &key).unwrap();
        let want = format!("{GO_TEXT}\n{PETER_SIG}");
        assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), want);
        // Signing again replaces the signature instead of adding a second line.
        let mut again = note.clone();
        again.add_signature(&key).unwrap();
        assert_eq!(again, note);
    }

    #[test]
    fn go_vector_open_with_known_and_unknown_keys() {
        let msg = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let note = SignedNote::parse(msg.as_bytes()).unwrap();
        assert_eq!(note.text, GO_TEXT);
        assert_eq!(note.signatures.len(), 2);
        assert_eq!(note.signatures[0].key_id, [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(note.signatures[1].key_id, [0xaf, 0x0c, 0xfe, 0x78]);
        assert_eq!(note.to_bytes(), msg.as_bytes());
        assert_eq!(note.verify(&[peter()]).unwrap(), ["PeterNeumann"]);
        assert_eq!(note.verify(&[enoch()]).unwrap(), ["EnochRoot"]);
        assert_eq!(
            note.verify(&[enoch(), peter(), enoch()]).unwrap(),
            ["PeterNeumann", "EnochRoot"]
        );
        assert_eq!(note.verify(&[]).unwrap_err(), NoteError::NoKnownSignature);
        let stranger = SigningKeyPair::generate("PeterNeumann").unwrap().verifier();
        assert_eq!(
            note.verify(&[stranger]).unwrap_err(),
            NoteError::NoKnownSignature
        );
    }

    #[test]
    fn go_vector_invalid_signature_names_the_key() {
        let bad_sig = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let note = SignedNote::parse(format!("{GO_TEXT}\n{bad_sig}").as_bytes()).unwrap();
        let e = note.verify(&[peter()]).unwrap_err();
        assert_eq!(
            e,
            NoteError::BadSignature {
                name: "PeterNeumann".to_owned(),
                key_id: "c74f20a3".to_owned()
            }
        );
        assert!(e.to_string().contains("PeterNeumann+c74f20a3"));
        // A bad signature from a known key is fatal even if another known key verified.
        let note =
            SignedNote::parse(format!("{GO_TEXT}\n{ENOCH_SIG}{bad_sig}").as_bytes()).unwrap();
        assert!(matches!(
            note.verify(&[peter(), enoch()]),
            Err(NoteError::BadSignature { .. })
        ));
        // ... but ignored when the key is unknown.
        assert_eq!(note.verify(&[enoch()]).unwrap(), ["EnochRoot"]);
    }

    #[test]
    fn go_vector_malformed_notes_are_refused() {
        let bad: Vec<String> = vec![
            GO_TEXT.to_owned(),
            format!("{GO_TEXT}\n"),
            format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\u{1}{GO_TEXT}\n{PETER_SIG}"),
            format!("{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
        ];
        for msg in &bad {
            assert!(
                SignedNote::parse(msg.as_bytes()).is_err(),
                "accepted {msg:?}"
            );
        }
        let mut invalid_utf8 = vec![0xff];
        invalid_utf8.extend_from_slice(format!("{GO_TEXT}\n{PETER_SIG}").as_bytes());
        let e = SignedNote::parse(&invalid_utf8).unwrap_err();
        assert!(e.to_string().contains("invalid UTF-8"), "{e}");
    }

    #[test]
    fn too_many_signatures_are_refused() {
        let ok = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
        let note = SignedNote::parse(ok.as_bytes()).unwrap();
        assert_eq!(note.verify(&[peter()]).unwrap(), ["PeterNeumann"]);
        let too_many = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
        assert_eq!(
            SignedNote::parse(too_many.as_bytes()).unwrap_err(),
            NoteError::TooManySignatures {
                count: 101,
                limit: 100
            }
        );
    }

    #[test]
    fn oversized_notes_are_refused() {
        let huge = vec![b'a'; MAX_NOTE_SIZE + 1];
        assert_eq!(
            SignedNote::parse(&huge).unwrap_err(),
            NoteError::TooLarge {
                size: MAX_NOTE_SIZE + 1,
                limit: MAX_NOTE_SIZE
            }
        );
        let key = SigningKeyPair::generate("big").unwrap();
        let mut text = "a".repeat(MAX_NOTE_SIZE - 50);
        text.push('\n');
        assert!(matches!(
            SignedNote::sign(&text, &key),
            Err(NoteError::TooLarge { .. })
        ));
        text.truncate(MAX_NOTE_SIZE - 200);
        text.push('\n');
        let note = SignedNote::sign(&text, &key).unwrap();
        assert!(note.to_bytes().len() <= MAX_NOTE_SIZE);
        assert_eq!(SignedNote::parse(&note.to_bytes()).unwrap(), note);
    }

    #[test]
    fn round_trip_sign_parse_verify() {
        let a = SigningKeyPair::generate("a.example/log").unwrap();
        let b = SigningKeyPair::generate("b.example/witness").unwrap();
        // Text with blank lines inside, non-ASCII letters, and a line that looks like a
        // signature: only the last blank line separates text and signatures.
        let text = "Akte 4711 — Bauamt Köln\n\n\u{2014} not a signature\n\nEnde\n\n";
        let mut note = SignedNote::sign(text, &a).unwrap();
        note.add_signature(&b).unwrap();
        let bytes = note.to_bytes();
        let parsed = SignedNote::parse(&bytes).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(
            parsed.verify(&[a.verifier(), b.verifier()]).unwrap(),
            ["a.example/log", "b.example/witness"]
        );
        assert_eq!(
            parsed.verify(&[b.verifier()]).unwrap(),
            ["b.example/witness"]
        );
        // The smallest note text is a single newline.
        let tiny = SignedNote::sign("\n", &a).unwrap();
        assert_eq!(SignedNote::parse(&tiny.to_bytes()).unwrap(), tiny);
        tiny.verify(&[a.verifier()]).unwrap();
    }

    #[test]
    fn invalid_text_is_not_signed() {
        let key = SigningKeyPair::generate("k").unwrap();
        for (text, want) in [
            ("", "empty"),
            ("no newline", "end with a newline"),
            ("tab\there\n", "U+0009"),
            ("cr\r\n", "U+000D"),
            ("nul\0\n", "U+0000"),
        ] {
            let e = SignedNote::sign(text, &key).unwrap_err();
            assert!(
                matches!(e, NoteError::InvalidText { .. }),
                "{text:?}: {e:?}"
            );
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
        // A hand-built note with invalid text does not verify either.
        let bad = SignedNote {
            text: "x".to_owned(),
            signatures: vec![NoteSignature {
                name: "k".to_owned(),
                key_id: key.key_id(),
                signature: key.sign(b"x").to_vec(),
            }],
        };
        assert!(matches!(
            bad.verify(&[key.verifier()]),
            Err(NoteError::InvalidText { .. })
        ));
    }

    #[test]
    fn malformed_signature_lines_name_line_and_problem() {
        let key = SigningKeyPair::from_private_string(PETER_SKEY).unwrap();
        let good = SignedNote::sign("a\nb\n", &key).unwrap().to_bytes();
        let good = String::from_utf8(good).unwrap();
        let b64 = good.rsplit(' ').next().unwrap().trim_end().to_owned();
        let cases: Vec<(String, usize, &str)> = vec![
            (format!("a\nb\n\n- PeterNeumann {b64}\n"), 4, "em dash"),
            (
                format!("a\nb\n\n\u{2014}PeterNeumann {b64}\n"),
                4,
                "em dash",
            ),
            (
                format!("a\nb\n\n\u{2014} PeterNeumann{b64}\n"),
                4,
                "expected",
            ),
            (format!("a\nb\n\n\u{2014}  {b64}\n"), 4, "must not be empty"),
            (format!("a\nb\n\n\u{2014} Peter+Neumann {b64}\n"), 4, "'+'"),
            (
                format!("a\nb\n\n\u{2014} PeterNeumann {b64} \n"),
                4,
                "base64",
            ),
            ("a\nb\n\n\u{2014} PeterNeumann \n".to_owned(), 4, "empty"),
            (
                format!("a\nb\n\n\u{2014} PeterNeumann {}\n", &b64[..b64.len() - 1]),
                4,
                "base64",
            ),
            (
                format!(
                    "a\nb\n\n{}\u{2014} PeterNeumann AAAAAA==\n",
                    good.lines().nth(3).unwrap().to_owned() + "\n"
                ),
                5,
                "4 bytes",
            ),
            ("a\nb\n\n".to_owned(), 4, "no signature lines"),
            ("a\nb\n".to_owned(), 3, "no blank line"),
            ("a\tb\n\n".to_owned(), 1, "U+0009"),
            ("a\nb\n\n\n".to_owned(), 5, "no signature lines"),
        ];
        for (msg, line, want) in cases {
            match SignedNote::parse(msg.as_bytes()) {
                Err(NoteError::Malformed { line: l, reason }) => {
                    assert_eq!(l, line, "{msg:?}: {reason}");
                    assert!(reason.contains(want), "{msg:?}: {reason}");
                }
                other => panic!("{msg:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_key_and_unknown_key() {
        let log = SigningKeyPair::generate("akte.example/tenant-1").unwrap();
        let other = SigningKeyPair::generate("akte.example/tenant-1").unwrap();
        let stranger = SigningKeyPair::generate("stranger.example").unwrap();
        let mut note = checkpoint().sign(&log).unwrap();
        // A key of the same name but different public key has another key id: the
        // signature is not attributed to it at all.
        let e = Checkpoint::open(&note.to_bytes(), &other.verifier()).unwrap_err();
        assert!(matches!(e, NoteError::NoKnownSignature), "{e:?}");
        // An unknown signer's line is ignored when a known one verifies.
        note.add_signature(&stranger).unwrap();
        let (cp, _) = Checkpoint::open(&note.to_bytes(), &log.verifier()).unwrap();
        assert_eq!(cp, checkpoint());
        // A line carrying the log's name and key id but another key's signature is an
        // error naming the log key.
        let mut forged = note.clone();
        forged.signatures[0].signature = other.sign(note.text.as_bytes()).to_vec();
        let e = Checkpoint::open(&forged.to_bytes(), &log.verifier()).unwrap_err();
        assert_eq!(
            e,
            NoteError::BadSignature {
                name: "akte.example/tenant-1".to_owned(),
                key_id: hex::encode(log.key_id())
            }
        );
        // A cosignature key cannot open a checkpoint.
        let e = Checkpoint::open(&note.to_bytes(), &log.cosignature_verifier()).unwrap_err();
        assert!(matches!(e, NoteError::WrongKeyKind { .. }), "{e:?}");
    }

    #[test]
    fn every_single_byte_change_of_a_signed_checkpoint_is_rejected() {
        let log = SigningKeyPair::generate("log.example/a").unwrap();
        let witness = SigningKeyPair::generate("w.example/1").unwrap();
        let cp = Checkpoint::new("log.example/a", 7, Digest::of(b"r"));
        let mut note = cp.sign(&log).unwrap();
        note.push_signature(cosign(&cp, &witness, 1_700_000_000).unwrap())
            .unwrap();
        let bytes = note.to_bytes();
        let keys = [log.verifier(), witness.cosignature_verifier()];
        assert_eq!(
            note.verify(&keys).unwrap(),
            ["log.example/a", "w.example/1"]
        );
        Checkpoint::open(&bytes, &log.verifier()).unwrap();
        // Byte ranges: text and blank line, the log's line, the witness's line.
        let log_line_start = note.text.len() + 1;
        let witness_line_start = log_line_start + note.signatures[0].to_line().len();
        let log_only = |m: &[u8]| SignedNote::parse(m).and_then(|n| n.verify(&keys[..1]));
        let witness_only = |m: &[u8]| SignedNote::parse(m).and_then(|n| n.verify(&keys[1..]));
        for pos in 0..bytes.len() {
            for value in 0..=255u8 {
                if value == bytes[pos] {
                    continue;
                }
                let mut m = bytes.clone();
                m[pos] = value;
                // A change to the text breaks every signature; a change to a signature line
                // breaks (or detaches) that signer's signature. An unknown or detached
                // signature line is ignored by design, so a change to one signer's line may
                // leave the other signer's verification intact.
                if pos < witness_line_start {
                    assert!(
                        log_only(&m).is_err(),
                        "log key accepted change at {pos} to {value:#04x}"
                    );
                    assert!(
                        Checkpoint::open(&m, &log.verifier()).is_err(),
                        "open accepted change at {pos} to {value:#04x}"
                    );
                }
                if pos < log_line_start || pos >= witness_line_start {
                    assert!(
                        witness_only(&m).is_err(),
                        "witness key accepted change at {pos} to {value:#04x}"
                    );
                }
            }
        }
    }

    #[test]
    fn origin_has_no_control_character() {
        // Below 0x20 the note rules already refuse; DEL and the C1 controls are refused by
        // the origin rule (Unicode Cc), when writing and when reading.
        for c in ['\u{7f}', '\u{85}', '\u{9f}'] {
            let cp = Checkpoint::new(format!("akte.example/t{c}"), 1, Digest::EMPTY_INPUT);
            assert!(cp.validate().is_err(), "U+{:04X}", c as u32);
            let e = Checkpoint::parse_body(&cp.to_body())
                .unwrap_err()
                .to_string();
            assert!(e.contains("control character"), "{e}");
        }
        let fine = Checkpoint::new("akte.example/stadt-ß", 1, Digest::EMPTY_INPUT);
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn checkpoint_body_round_trip() {
        let mut cp = checkpoint();
        assert_eq!(
            cp.to_body(),
            format!(
                "akte.example/tenant-1\n42\n{}\n",
                BASE64.encode(Digest::of(b"root").as_bytes())
            )
        );
        assert_eq!(Checkpoint::parse_body(&cp.to_body()).unwrap(), cp);
        cp.extensions = vec!["ext one".to_owned(), "— two".to_owned()];
        let body = cp.to_body();
        assert!(body.ends_with("\next one\n— two\n"));
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
        for size in [0, 1, 10, u64::MAX] {
            let c = Checkpoint::new("o", size, Digest::EMPTY_INPUT);
            let body = c.to_body();
            assert_eq!(Checkpoint::parse_body(&body).unwrap(), c);
            assert_eq!(Checkpoint::parse_body(&body).unwrap().to_body(), body);
        }
    }

    #[test]
    fn c2sp_example_checkpoint_parses() {
        // The example in c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature (C2SP/C2SP,
        // tlog-cosignature.md). No public keys are published for it, so only syntax and the
        // timestamp layout are checked.
        let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
                    \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
                    \u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let parsed = SignedNote::parse(note.as_bytes()).unwrap();
        assert_eq!(parsed.to_bytes(), note.as_bytes());
        let cp = Checkpoint::parse_body(&parsed.text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(cp.to_body(), parsed.text);
        let cosig = &parsed.signatures[1];
        assert_eq!(cosig.signature.len(), COSIGNATURE_LEN);
        // The spec's example message uses "time 1679315147".
        let ts = u64::from_be_bytes(cosig.signature[..8].try_into().unwrap());
        assert_eq!(ts, 1679315147);
    }

    #[test]
    fn non_canonical_tree_sizes_are_refused() {
        let root = BASE64.encode([0u8; 32]);
        for size in [
            "01",
            "00",
            "+1",
            "-1",
            " 1",
            "1 ",
            "",
            "1e3",
            "0x10",
            "１",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let body = format!("o\n{size}\n{root}\n");
            match Checkpoint::parse_body(&body) {
                Err(NoteError::MalformedCheckpoint { line: 2, reason }) => {
                    assert!(reason.contains("tree size"), "{size:?}: {reason}")
                }
                other => panic!("{size:?}: {other:?}"),
            }
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
    }

    #[test]
    fn malformed_root_hashes_are_refused() {
        let d = [7u8; 32];
        let canonical = BASE64.encode(d);
        let mut trailing_bits = canonical.clone().into_bytes();
        // The character before '=' carries two unused bits; set one of them.
        let i = trailing_bits.len() - 2;
        trailing_bits[i] = if trailing_bits[i] == b'c' { b'd' } else { b'c' };
        let cases = [
            BASE64.encode([7u8; 31]),
            BASE64.encode([7u8; 33]),
            BASE64.encode([7u8; 64]),
            canonical.trim_end_matches('=').to_owned(),
            String::from_utf8(trailing_bits).unwrap(),
            hex::encode(d),
            format!("{canonical} "),
            base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 32]),
            String::new(),
        ];
        for root in cases {
            match Checkpoint::parse_body(&format!("o\n1\n{root}\n")) {
                Err(NoteError::MalformedCheckpoint { line: 3, reason }) => {
                    assert!(reason.contains("root hash"), "{root:?}: {reason}")
                }
                other => panic!("{root:?}: {other:?}"),
            }
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{canonical}\n"))
                .unwrap()
                .root,
            Digest(d)
        );
    }

    #[test]
    fn malformed_checkpoint_bodies_are_refused() {
        let root = BASE64.encode([0u8; 32]);
        let cases: Vec<(String, usize, &str)> = vec![
            (format!("o\n1\n{root}"), 3, "end with a newline"),
            (format!("\n1\n{root}\n"), 1, "origin"),
            ("o\n".to_owned(), 2, "missing tree size"),
            ("o\n1\n".to_owned(), 3, "missing root"),
            (
                format!("o\n1\n{root}\n\n"),
                4,
                "extension lines must not be empty",
            ),
            (
                format!("o\n1\n{root}\next\n\n"),
                5,
                "extension lines must not be empty",
            ),
            (format!("o\t\n1\n{root}\n"), 1, "U+0009"),
            ("".to_owned(), 1, "end with a newline"),
        ];
        for (body, line, want) in cases {
            match Checkpoint::parse_body(&body) {
                Err(NoteError::MalformedCheckpoint { line: l, reason }) => {
                    assert_eq!(l, line, "{body:?}: {reason}");
                    assert!(reason.contains(want), "{body:?}: {reason}");
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
        let key = SigningKeyPair::generate("k").unwrap();
        for cp in [
            Checkpoint::new("", 1, Digest::ZERO),
            Checkpoint::new("a\nb", 1, Digest::ZERO),
            Checkpoint {
                extensions: vec![String::new()],
                ..Checkpoint::new("o", 1, Digest::ZERO)
            },
            Checkpoint {
                extensions: vec!["x\ny".to_owned()],
                ..Checkpoint::new("o", 1, Digest::ZERO)
            },
        ] {
            assert!(
                matches!(cp.sign(&key), Err(NoteError::InvalidCheckpoint { .. })),
                "{cp:?}"
            );
            assert!(
                matches!(
                    cosign(&cp, &key, 1),
                    Err(NoteError::InvalidCheckpoint { .. })
                ),
                "{cp:?}"
            );
        }
    }

    #[test]
    fn signed_note_that_is_not_a_checkpoint_is_refused_by_open() {
        let key = SigningKeyPair::generate("k").unwrap();
        let note = SignedNote::sign("just some text\n", &key).unwrap();
        let e = Checkpoint::open(&note.to_bytes(), &key.verifier()).unwrap_err();
        assert!(
            matches!(e, NoteError::MalformedCheckpoint { line: 2, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn cosignature_sign_and_verify() {
        let log = SigningKeyPair::generate("akte.example/tenant-1").unwrap();
        let witness = SigningKeyPair::generate("witness.example/w1").unwrap();
        let cp = checkpoint();
        let ts = 1_679_315_147;
        let sig = cosign(&cp, &witness, ts).unwrap();
        assert_eq!(sig.name, "witness.example/w1");
        assert_eq!(sig.key_id, witness.cosignature_verifier().key_id());
        assert_eq!(sig.signature.len(), 72);
        assert_eq!(sig.signature[..8], ts.to_be_bytes());
        // The signature is Ed25519 over the documented message.
        let msg = format!("cosignature/v1\ntime {ts}\n{}", cp.to_body());
        assert!(witness
            .verifier()
            .verify(msg.as_bytes(), &sig.signature[8..]));
        // Either kind of the witness's verifier key works.
        assert_eq!(
            verify_cosignature(&cp, &sig, &witness.verifier()).unwrap(),
            ts
        );
        assert_eq!(
            verify_cosignature(&cp, &sig, &witness.cosignature_verifier()).unwrap(),
            ts
        );
        // Deterministic.
        assert_eq!(cosign(&cp, &witness, ts).unwrap(), sig);

        // In a note, next to the log's signature.
        let mut note = cp.sign(&log).unwrap();
        note.push_signature(sig.clone()).unwrap();
        let parsed = SignedNote::parse(&note.to_bytes()).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(
            parsed
                .verify(&[log.verifier(), witness.cosignature_verifier()])
                .unwrap(),
            ["akte.example/tenant-1", "witness.example/w1"]
        );
        // The witness's plain (type 0x01) key does not accept a cosignature as a note
        // signature, and the log's signature does not count as a cosignature.
        assert!(matches!(
            SignedNote {
                text: note.text.clone(),
                signatures: vec![sig.clone()]
            }
            .verify(&[witness.verifier()]),
            Err(NoteError::NoKnownSignature)
        ));
        assert!(matches!(
            verify_cosignature(&cp, &note.signatures[0], &log.verifier()),
            Err(NoteError::BadCosignature { .. })
        ));
        let (opened, _) = Checkpoint::open(&note.to_bytes(), &log.verifier()).unwrap();
        assert_eq!(
            verify_cosignature(&opened, &parsed.signatures[1], &witness.verifier()).unwrap(),
            ts
        );

        // Limits of the timestamp.
        assert_eq!(
            cosign(&cp, &witness, 1 << 63).unwrap_err(),
            NoteError::TimestampOutOfRange { timestamp: 1 << 63 }
        );
        let max = cosign(&cp, &witness, i64::MAX as u64).unwrap();
        assert_eq!(
            verify_cosignature(&cp, &max, &witness.verifier()).unwrap(),
            i64::MAX as u64
        );
        assert_eq!(
            verify_cosignature(&cp, &cosign(&cp, &witness, 0).unwrap(), &witness.verifier())
                .unwrap(),
            0
        );
    }

    #[test]
    fn tampered_cosignatures_are_rejected() {
        let witness = SigningKeyPair::generate("witness.example/w1").unwrap();
        let other = SigningKeyPair::generate("witness.example/w1").unwrap();
        let cp = checkpoint();
        let sig = cosign(&cp, &witness, 1_700_000_000).unwrap();
        let v = witness.verifier();
        let expect_bad = |cp: &Checkpoint, s: &NoteSignature, v: &VerifierKey, want: &str| {
            match verify_cosignature(cp, s, v) {
                Err(e @ NoteError::BadCosignature { .. }) => {
                    assert!(e.to_string().contains(want), "{e}")
                }
                other => panic!("{other:?}"),
            }
        };
        // Every byte of timestamp and signature, every bit.
        for i in 0..sig.signature.len() {
            for bit in 0..8 {
                let mut s = sig.clone();
                s.signature[i] ^= 1 << bit;
                assert!(
                    verify_cosignature(&cp, &s, &v).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        // Other checkpoints.
        for changed in [
            Checkpoint {
                size: 43,
                ..cp.clone()
            },
            Checkpoint {
                origin: "akte.example/tenant-2".to_owned(),
                ..cp.clone()
            },
            Checkpoint {
                root: Digest::of(b"other"),
                ..cp.clone()
            },
            Checkpoint {
                extensions: vec!["x".to_owned()],
                ..cp.clone()
            },
        ] {
            expect_bad(&changed, &sig, &v, "does not verify");
        }
        expect_bad(
            &cp,
            &sig,
            &other.verifier(),
            "not the witness's cosignature/v1 key id",
        );
        let mut s = sig.clone();
        s.name = "witness.example/w2".to_owned();
        expect_bad(&cp, &s, &v, "not by witness");
        let mut s = sig.clone();
        s.key_id = witness.key_id();
        expect_bad(&cp, &s, &v, "key id");
        let mut s = sig.clone();
        s.signature.truncate(71);
        expect_bad(&cp, &s, &v, "expected 72");
        let mut s = sig.clone();
        s.signature.push(0);
        expect_bad(&cp, &s, &v, "expected 72");
        let mut s = sig.clone();
        s.signature[0] |= 0x80;
        expect_bad(&cp, &s, &v, "maximum 2^63-1");
        // In a note, a bad cosignature from a known witness is an error naming it.
        let log = SigningKeyPair::generate("akte.example/tenant-1").unwrap();
        let mut note = cp.sign(&log).unwrap();
        let mut s = sig.clone();
        s.signature[20] ^= 1;
        note.push_signature(s).unwrap();
        assert_eq!(
            note.verify(&[log.verifier(), witness.cosignature_verifier()])
                .unwrap_err(),
            NoteError::BadSignature {
                name: "witness.example/w1".to_owned(),
                key_id: hex::encode(witness.cosignature_verifier().key_id())
            }
        );
    }

    #[test]
    fn push_signature_replaces_same_key_and_checks_limits() {
        let a = SigningKeyPair::generate("a").unwrap();
        let cp = checkpoint();
        let mut note = cp.sign(&a).unwrap();
        let w = SigningKeyPair::generate("w").unwrap();
        note.push_signature(cosign(&cp, &w, 1).unwrap()).unwrap();
        note.push_signature(cosign(&cp, &w, 2).unwrap()).unwrap();
        assert_eq!(note.signatures.len(), 2);
        assert_eq!(
            verify_cosignature(&cp, &note.signatures[1], &w.verifier()).unwrap(),
            2
        );
        let e = note
            .push_signature(NoteSignature {
                name: "a b".to_owned(),
                key_id: [0; 4],
                signature: vec![1],
            })
            .unwrap_err();
        assert!(matches!(e, NoteError::InvalidSignature { .. }), "{e:?}");
        for i in 0..(MAX_SIGNATURES - 2) {
            note.push_signature(NoteSignature {
                name: format!("n{i}"),
                key_id: [0; 4],
                signature: vec![1],
            })
            .unwrap();
        }
        let e = note
            .push_signature(NoteSignature {
                name: "last".to_owned(),
                key_id: [0; 4],
                signature: vec![1],
            })
            .unwrap_err();
        assert_eq!(
            e,
            NoteError::TooManySignatures {
                count: 101,
                limit: 100
            }
        );
        assert_eq!(note.signatures.len(), MAX_SIGNATURES);
        assert_eq!(SignedNote::parse(&note.to_bytes()).unwrap(), note);
    }

    #[test]
    fn documented_example_is_reproduced() {
        // The worked example of docs/FORMAT.md ("Keys, signed notes and checkpoints"); a
        // change here means the document must change too.
        let log = SigningKeyPair::from_seed(
            "akte.example/tenant-1",
            Digest::of(b"akte example log key").as_bytes(),
        )
        .unwrap();
        let witness = SigningKeyPair::from_seed(
            "witness.example/w1",
            Digest::of(b"akte example witness key").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            log.verifier().to_string(),
            "akte.example/tenant-1+aca78cb3+AYvhPA7eVi8mh3nt5wwKkkvwN5BWg2ejBAI4aDA/BSO7"
        );
        assert_eq!(
            witness.cosignature_verifier().to_string(),
            "witness.example/w1+ecafaf75+BHDvyraLuM13kUHH+usrWqVBKy0ceJn7KsSwIehSWguU"
        );
        assert_eq!(hex::encode(witness.key_id()), "5b4ba5b1");
        let cp = Checkpoint::new("akte.example/tenant-1", 3, Digest::of(b"akte example root"));
        let mut note = cp.sign(&log).unwrap();
        note.push_signature(cosign(&cp, &witness, 1_700_000_000).unwrap())
            .unwrap();
        let want = "akte.example/tenant-1\n3\nU1D9T4MTGtgp5lN6eQyC4pUrM0rQn/xVVydjHj9Hzsg=\n\n\
                    \u{2014} akte.example/tenant-1 rKeMs8t+gafy6vcTrBp0icVQ1j4XdWFuTIpR0RmrVh2SI0481kJlPC4ON8qJ0WRH/uT5gmplSFIFBY86TIwCgMqTYwI=\n\
                    \u{2014} witness.example/w1 7K+vdQAAAABlU/EART/Q6DK+mYMDY8sJhbw5hfFZdPJbeAu0A/Azf3lp9p02UTCq8Ze6sTRIuwxHsgEFT1zecJ+pYl5wcKB7rpxuCQ==\n";
        assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), want);
        assert_eq!(note.text.len(), 69);
    }

    #[test]
    fn line_len_matches_to_line() {
        for len in 1..80 {
            let s = NoteSignature {
                name: "n".to_owned(),
                key_id: [1; 4],
                signature: vec![9; len],
            };
            assert_eq!(s.line_len(), s.to_line().len(), "{len}");
        }
    }
}
