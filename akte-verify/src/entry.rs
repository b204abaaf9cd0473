//! Journal entries and their canonical byte encoding.
//!
//! An entry is what the Merkle tree commits to: its leaf hash is SHA-256(0x00 || encoding).
//! The encoding is therefore part of akte's public format (docs/FORMAT.md, "Entry"): every
//! field has one fixed representation, decoding is strict (no trailing bytes, no
//! non-canonical values), and `decode(encode(e)) == e` as well as
//! `encode(decode(b)) == b` for every accepted `b`.
//!
//! Entries never hold personal data themselves: metadata travels as salted records whose
//! digests the entry lists (see [`PayloadKind::Inline`]), documents as content objects.

use chrono::{DateTime, TimeZone, Utc};

use crate::digest::Digest;

/// Version byte of the entry encoding.
pub const ENTRY_FORMAT_VERSION: u8 = 1;
/// Longest actor name, in bytes.
pub const MAX_ACTOR_LEN: usize = 256;
/// Longest event kind, in bytes.
pub const MAX_KIND_LEN: usize = 64;
/// Longest object name, in bytes.
pub const MAX_OBJECT_LEN: usize = 512;
/// Longest payload role, in bytes.
pub const MAX_ROLE_LEN: usize = 64;
/// Most payloads one entry may list (a destruction entry lists many digests).
pub const MAX_PAYLOADS: usize = 4096;

/// Where the bytes behind a payload digest live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// A document's bytes in the tenant's content store, keyed by this digest.
    Content,
    /// A record attached to the same journal record (a salted metadata record).
    Inline,
    /// A digest that is only referred to (for example what a destruction removed); no bytes.
    Reference,
}

impl PayloadKind {
    fn code(self) -> u8 {
        match self {
            PayloadKind::Content => 1,
            PayloadKind::Inline => 2,
            PayloadKind::Reference => 3,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(PayloadKind::Content),
            2 => Some(PayloadKind::Inline),
            3 => Some(PayloadKind::Reference),
            _ => None,
        }
    }
}

/// One digest an entry commits to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    /// Where the bytes live.
    pub kind: PayloadKind,
    /// What the bytes are to this entry, e.g. `rendition`, `meta`, `destroyed`.
    pub role: String,
    /// Length of the bytes in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub digest: Digest,
}

/// What a caller asks to append; the journal adds sequence number, time and chain link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDraft {
    /// Who made the change (principal name).
    pub actor: String,
    /// Event kind, e.g. `file.create`; lower-case ASCII letters, digits, `.`, `_`, `-`.
    pub kind: String,
    /// The object the entry is about (a UUID or resource name); may be empty.
    pub object: String,
    /// Digests of everything the entry commits to.
    pub payloads: Vec<Payload>,
}

/// A journal entry as stored and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the tenant's journal, starting at 0; also the Merkle leaf index.
    pub seq: u64,
    /// When it was appended (UTC, microsecond precision, never decreasing).
    pub time: DateTime<Utc>,
    /// Leaf hash of entry `seq - 1`, or 32 zero bytes for entry 0.
    pub prev: Digest,
    /// Who made the change.
    pub actor: String,
    /// Event kind.
    pub kind: String,
    /// The object the entry is about; may be empty.
    pub object: String,
    /// Digests the entry commits to.
    pub payloads: Vec<Payload>,
}

/// Why an entry draft or an encoded entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A field is empty, too long or contains characters it may not contain.
    #[error("invalid entry field {field}: {reason}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The byte encoding is malformed.
    #[error("malformed entry encoding at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset within the entry where decoding failed.
        offset: usize,
        /// What was found.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> EntryError {
    EntryError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn check_text(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), EntryError> {
    if s.len() < min || s.len() > max {
        return Err(invalid(
            field,
            format!("length {} bytes, allowed {min}..={max}", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn check_token(field: &'static str, s: &str, max: usize) -> Result<(), EntryError> {
    if s.is_empty() || s.len() > max {
        return Err(invalid(
            field,
            format!("length {} bytes, allowed 1..={max}", s.len()),
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            field,
            format!("{s:?} may only hold a-z, 0-9, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

impl EntryDraft {
    /// Checks every field against the limits of the encoding.
    pub fn validate(&self) -> Result<(), EntryError> {
        check_text("actor", &self.actor, 1, MAX_ACTOR_LEN)?;
        check_token("kind", &self.kind, MAX_KIND_LEN)?;
        check_text("object", &self.object, 0, MAX_OBJECT_LEN)?;
        if self.payloads.len() > MAX_PAYLOADS {
            return Err(invalid(
                "payloads",
                format!("{} payloads, at most {MAX_PAYLOADS}", self.payloads.len()),
            ));
        }
        for p in &self.payloads {
            check_token("payload role", &p.role, MAX_ROLE_LEN)?;
        }
        Ok(())
    }
}

impl Entry {
    /// The canonical encoding (docs/FORMAT.md, "Entry").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.actor.len() + self.kind.len() + self.object.len() + self.payloads.len() * 80,
        );
        out.push(ENTRY_FORMAT_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time.timestamp_micros().to_be_bytes());
        out.extend_from_slice(self.prev.as_bytes());
        put_str(&mut out, &self.actor);
        put_str(&mut out, &self.kind);
        put_str(&mut out, &self.object);
        // The count fits: validate() caps payloads at MAX_PAYLOADS < u16::MAX.
        out.extend_from_slice(&(self.payloads.len() as u16).to_be_bytes());
        for p in &self.payloads {
            out.push(p.kind.code());
            put_str(&mut out, &p.role);
            out.extend_from_slice(&p.size.to_be_bytes());
            out.extend_from_slice(p.digest.as_bytes());
        }
        out
    }

    /// Decodes and validates an encoding; the inverse of [`Entry::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != ENTRY_FORMAT_VERSION {
            return Err(r.err(format!(
                "unknown entry format version {version}, this build reads {ENTRY_FORMAT_VERSION}"
            )));
        }
        let seq = r.u64()?;
        let micros = r.i64()?;
        let time = Utc
            .timestamp_micros(micros)
            .single()
            .ok_or_else(|| r.err(format!("time {micros} µs is out of range")))?;
        let prev = Digest(r.array32()?);
        let actor = r.string()?;
        let kind = r.string()?;
        let object = r.string()?;
        let count = r.u16()? as usize;
        let mut payloads = Vec::with_capacity(count.min(MAX_PAYLOADS));
        for _ in 0..count {
            let code = r.u8()?;
            let kind = PayloadKind::from_code(code)
                .ok_or_else(|| r.err(format!("unknown payload kind {code}")))?;
            let role = r.string()?;
            let size = r.u64()?;
            let digest = Digest(r.array32()?);
            payloads.push(Payload {
                kind,
                role,
                size,
                digest,
            });
        }
        if r.pos != bytes.len() {
            return Err(r.err(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        let draft = EntryDraft {
            actor,
            kind,
            object,
            payloads,
        };
        draft.validate().map_err(|e| EntryError::Malformed {
            offset: 0,
            reason: e.to_string(),
        })?;
        Ok(Entry {
            seq,
            time,
            prev,
            actor: draft.actor,
            kind: draft.kind,
            object: draft.object,
            payloads: draft.payloads,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are capped by EntryDraft::validate far below u16::MAX.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> EntryError {
        EntryError::Malformed {
            offset: self.pos,
            reason: reason.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err(format!("needs {n} more bytes, entry ends")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, EntryError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, EntryError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, EntryError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn array32(&mut self) -> Result<[u8; 32], EntryError> {
        self.array()
    }
    fn string(&mut self) -> Result<String, EntryError> {
        let len = self.u16()? as usize;
        let at = self.pos;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| EntryError::Malformed {
            offset: at,
            reason: "string is not valid UTF-8".into(),
        })
    }
}

/// Payload role of a reference payload that releases one reference to a content object.
/// Part of the journal format, not of the records model: the engine counts references to
/// content (a content payload adds one, a release takes one away), and content may only
/// be removed once no live entry refers to it.
pub const ROLE_RELEASE: &str = "release";

/// Payload role of a reference payload naming an attachment whose bytes were removed by
/// destruction. Part of the journal format: verification accepts a redacted attachment
/// only if a later entry names it so.
pub const ROLE_DESTROYED: &str = "destroyed";

/// A record attached to a journal entry: a salted metadata record, or what is left of it
/// after destruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// SHA-256 of the bytes; matches an inline payload of the entry.
    pub digest: Digest,
    /// The bytes, or `None` once destruction removed them.
    pub bytes: Option<Vec<u8>>,
    /// Length of the bytes. A redacted attachment keeps its length (as zero bytes on disk)
    /// so that no record moves when destruction rewrites a segment.
    pub len: u32,
}

impl Attachment {
    /// An attachment holding `bytes` (at most 16 MiB long; longer records are refused when
    /// the record is appended).
    pub fn new(bytes: Vec<u8>) -> Attachment {
        Attachment {
            digest: Digest::of(&bytes),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            bytes: Some(bytes),
        }
    }

    /// The same attachment with its bytes removed.
    pub fn redacted(&self) -> Attachment {
        Attachment {
            digest: self.digest,
            bytes: None,
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            time: Utc.timestamp_micros(1_790_000_000_123_456).unwrap(),
            prev: Digest::of(b"prev"),
            actor: "registrar:mueller".into(),
            kind: "file.create".into(),
            object: "0b8e6e4e-3c1b-4e8f-9d1a-6a2b3c4d5e6f".into(),
            payloads: vec![
                Payload {
                    kind: PayloadKind::Inline,
                    role: "meta".into(),
                    size: 120,
                    digest: Digest::of(b"meta"),
                },
                Payload {
                    kind: PayloadKind::Content,
                    role: "rendition".into(),
                    size: 5000,
                    digest: Digest::of(b"doc"),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let b = e.encode();
        assert_eq!(Entry::decode(&b).unwrap(), e);
    }

    #[test]
    fn layout_is_stable() {
        // Pins the first bytes of the documented layout: version, seq, time.
        let b = sample().encode();
        assert_eq!(b[0], 1);
        assert_eq!(&b[1..9], &7u64.to_be_bytes());
        assert_eq!(&b[9..17], &1_790_000_000_123_456i64.to_be_bytes());
        assert_eq!(&b[17..49], Digest::of(b"prev").as_bytes());
        assert_eq!(&b[49..51], &17u16.to_be_bytes());
    }

    #[test]
    fn rejects_trailing_truncated_and_unknown() {
        let b = sample().encode();
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            Entry::decode(&longer),
            Err(EntryError::Malformed { .. })
        ));
        for cut in 0..b.len() {
            assert!(Entry::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut v = b.clone();
        v[0] = 2;
        assert!(Entry::decode(&v)
            .unwrap_err()
            .to_string()
            .contains("version"));
    }

    #[test]
    fn draft_validation_names_the_field() {
        let mut d = EntryDraft {
            actor: "a".into(),
            kind: "File.Create".into(),
            object: String::new(),
            payloads: vec![],
        };
        assert!(d.validate().unwrap_err().to_string().contains("kind"));
        d.kind = "file.create".into();
        d.actor = String::new();
        assert!(d.validate().unwrap_err().to_string().contains("actor"));
        d.actor = "x".repeat(MAX_ACTOR_LEN + 1);
        assert!(d.validate().is_err());
        d.actor = "a\nb".into();
        assert!(d.validate().is_err());
    }

    #[test]
    fn time_range_is_the_documented_one() {
        // FORMAT.md, "Entry encoding": -262143-01-01T00:00:00Z to
        // +262142-12-31T23:59:59.999999Z; every other i64 is refused.
        let at = |micros: i64| {
            let e = Entry {
                seq: 0,
                time: Utc.timestamp_micros(0).unwrap(),
                prev: Digest::ZERO,
                actor: "a".into(),
                kind: "x.y".into(),
                object: String::new(),
                payloads: vec![],
            };
            let mut bytes = e.encode();
            bytes[9..17].copy_from_slice(&micros.to_be_bytes());
            Entry::decode(&bytes)
        };
        const MIN: i64 = -8_334_601_228_800_000_000;
        const MAX: i64 = 8_210_266_876_799_999_999;
        assert_eq!(at(MIN).unwrap().time.timestamp_micros(), MIN);
        assert_eq!(at(MAX).unwrap().time.timestamp_micros(), MAX);
        for bad in [MIN - 1, MAX + 1, i64::MIN, i64::MAX] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(e) = Entry::decode(&bytes) {
                prop_assert_eq!(e.encode(), bytes);
            }
        }

        #[test]
        fn encode_decode_round_trip(seq in any::<u64>(), micros in -62_000_000_000_000_000i64..250_000_000_000_000_000i64,
                                    actor in "[a-zA-Z0-9:ä ]{1,40}", object in "[a-z0-9-]{0,40}", n in 0usize..5) {
            let e = Entry {
                seq,
                time: Utc.timestamp_micros(micros).unwrap(),
                prev: Digest::of(&seq.to_be_bytes()),
                actor,
                kind: "x.y".into(),
                object,
                payloads: (0..n).map(|i| Payload { kind: PayloadKind::Reference, role: "r".into(), size: i as u64, digest: Digest::of(&[i as u8]) }).collect(),
            };
            prop_assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }
    }
}
