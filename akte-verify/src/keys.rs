//! Ed25519 signing keys of tenants and the verifier keys that check their signatures.
//!
//! The text forms are those of the Go `golang.org/x/mod/sumdb/note` package and C2SP
//! signed-note (<https://c2sp.org/signed-note>), so keys and checkpoints can be checked with
//! existing tools and by an archivist's own script:
//!
//! - verifier key: `<name>+<key id, 8 hex digits>+<base64(type byte || 32-byte public key)>`
//! - private key:  `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`
//! - key id: the first 4 bytes of `SHA-256(name || "\n" || type byte || public key)`
//!
//! The byte-precise description lives in `docs/FORMAT.md` (section "Keys and checkpoints").

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Signature type byte of plain Ed25519 note signatures (C2SP signed-note).
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 witness cosignatures (C2SP tlog-cosignature).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;

/// Unix mode of a private key file: owner read/write only.
pub const PRIVATE_KEY_MODE: u32 = 0o600;
/// Unix mode of a verifier (public) key file.
pub const PUBLIC_KEY_MODE: u32 = 0o644;

/// Upper bound on the size of a key file. A real key file is well under 1 KiB (plus the
/// key name); the bound keeps a wrong path (a log file, a device) from being read whole.
pub const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// What a verifier key checks.
///
/// The same Ed25519 key pair can sign in both ways; the type byte in the key id keeps the
/// two apart, so a cosignature can never be mistaken for a log signature or the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Type 0x01: an Ed25519 signature over the note text (a log's own checkpoint signature).
    Ed25519,
    /// Type 0x04: a timestamped Ed25519 witness cosignature (`cosignature/v1`).
    CosignatureV1,
}

impl KeyKind {
    /// The signature type byte of this kind.
    pub fn type_byte(self) -> u8 {
        match self {
            KeyKind::Ed25519 => TYPE_ED25519,
            KeyKind::CosignatureV1 => TYPE_COSIGNATURE_V1,
        }
    }

    fn from_type_byte(b: u8) -> Option<KeyKind> {
        match b {
            TYPE_ED25519 => Some(KeyKind::Ed25519),
            TYPE_COSIGNATURE_V1 => Some(KeyKind::CosignatureV1),
            _ => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Ed25519 => "Ed25519 (type 0x01)",
            KeyKind::CosignatureV1 => "cosignature/v1 (type 0x04)",
        })
    }
}

/// Errors from creating, parsing, loading and saving keys.
///
/// Messages never contain private key material, not even a fragment of it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key name that C2SP signed-note does not allow.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name (at most 80 characters of it).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key file does not exist.
    #[error("key file {path} does not exist")]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The path exists but is a directory, device, pipe or socket.
    #[error("key file {path} is not a regular file")]
    NotAFile {
        /// The path concerned.
        path: PathBuf,
    },
    /// A private key file that group or others may read or write. Refused like ssh does:
    /// such a key may already have leaked, and signing with it would hide that.
    #[error(
        "private key file {path} has mode {mode:04o}; it must not be accessible by group or \
         others (run: chmod 600 {path})"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is larger than [`MAX_KEY_FILE_SIZE`].
    #[error("key file {path} is larger than {limit} bytes; it cannot be a key")]
    TooLarge {
        /// The key file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The text is not a key of the expected form.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read: "verifier key", "private key" or "private key file PATH".
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The key's type byte is not one this module knows.
    #[error("{what}: unsupported key type byte 0x{byte:02x} ({expected})")]
    UnknownAlgorithm {
        /// What was being read.
        what: String,
        /// The type byte found.
        byte: u8,
        /// Which type bytes are accepted here.
        expected: &'static str,
    },
    /// The stated key id does not belong to the name and key.
    #[error("{what}: key id {stated} does not match the name and key (computed {computed})")]
    KeyIdMismatch {
        /// What was being read.
        what: String,
        /// The key id written in the text.
        stated: String,
        /// The key id computed from the name and key.
        computed: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {reason}")]
    Entropy {
        /// The error reported.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "read", "rename", ...).
        op: &'static str,
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Computes a C2SP key id: the first 4 bytes of
/// `SHA-256(name || 0x0A || type_byte || public_key)`.
pub fn key_id(name: &str, type_byte: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([type_byte]);
    h.update(public_key);
    let sum = h.finalize();
    [sum[0], sum[1], sum[2], sum[3]]
}

/// Checks that `name` may be used as a key name.
///
/// C2SP signed-note requires a non-empty name without Unicode white space and without '+'.
/// Control characters are refused as well: a note may not contain them, so a key with such
/// a name could never sign anything.
pub fn validate_key_name(name: &str) -> Result<(), KeyError> {
    match key_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(KeyError::InvalidName {
            name: truncate(name, 80),
            reason,
        }),
    }
}

/// The reason `name` is not a valid key name, if it is not.
pub(crate) fn key_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a key name must not be empty")
    } else if name.chars().any(char::is_whitespace) {
        Some("a key name must not contain white space")
    } else if name.contains('+') {
        Some("a key name must not contain '+'")
    } else if name.chars().any(char::is_control) {
        Some("a key name must not contain control characters")
    } else {
        None
    }
}

/// A tenant's (or witness's) signing key: a key name and an Ed25519 private key.
///
/// `Debug` shows the name and the public half only.
pub struct SigningKeyPair {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .field(
                "public_key",
                &BASE64.encode(self.key.verifying_key().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// Generates a new key with 32 random bytes from the operating system.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        validate_key_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Entropy {
            reason: e.to_string(),
        })?;
        let pair = Self::from_valid_name_and_seed(name, &seed);
        wipe(&mut seed);
        Ok(pair)
    }

    /// Builds a key pair from a 32-byte Ed25519 seed (the RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        validate_key_name(name)?;
        Ok(Self::from_valid_name_and_seed(name, seed))
    }

    /// The caller has checked the name.
    fn from_valid_name_and_seed(name: &str, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, TYPE_ED25519, key.verifying_key().as_bytes());
        SigningKeyPair {
            name: name.to_owned(),
            key_id,
            key,
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id of the Ed25519 (type 0x01) verifier key.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The verifier key for plain note signatures (type 0x01) made with this key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            kind: KeyKind::Ed25519,
            key_id: self.key_id,
            public: self.key.verifying_key(),
        }
    }

    /// The verifier key for witness cosignatures (type 0x04) made with this key.
    pub fn cosignature_verifier(&self) -> VerifierKey {
        self.verifier().with_kind(KeyKind::CosignatureV1)
    }

    /// Signs `msg` with Ed25519 (RFC 8032; deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// Parses the Go note private key form
    /// `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`.
    ///
    /// The key id must match the name and the public key derived from the seed, so a key
    /// whose name was edited by hand is refused rather than silently producing signatures
    /// nobody can attribute.
    pub fn from_private_string(s: &str) -> Result<Self, KeyError> {
        parse_private(s, "private key")
    }

    /// Loads a private key file written by akte-core's `KeyFile::save` (or by Go's
    /// `note.GenerateKey`, one line with or without a final newline).
    ///
    /// Refuses a missing file, anything but a regular file, a file that group or others
    /// may read or write, a file over [`MAX_KEY_FILE_SIZE`], and malformed content; every
    /// error names the path.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let what = format!("private key file {}", path.display());
        let mut bytes = read_key_file(path, true)?;
        let result = match std::str::from_utf8(&bytes) {
            Ok(text) => single_line(text, &what).and_then(|line| parse_private(line, &what)),
            Err(_) => Err(malformed(&what, "the file is not UTF-8 text")),
        };
        wipe(&mut bytes);
        result
    }

    /// The bytes of a private key file (the private key string and a newline), for a
    /// store that keeps the key as a secret blob. The caller wipes them when done.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut bytes = self.private_string().into_bytes();
        bytes.push(b'\n');
        bytes
    }

    /// Parses the bytes of a private key file (as [`SigningKeyPair::to_file_bytes`] writes
    /// them); `what` names where they come from in errors.
    pub fn from_file_bytes(bytes: &[u8], what: &str) -> Result<Self, KeyError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => single_line(text, what).and_then(|line| parse_private(line, what)),
            Err(_) => Err(malformed(what, "the file is not UTF-8 text")),
        }
    }

    /// The private key string. Kept private: the only ways out of the process are
    /// [`SigningKeyPair::to_file_bytes`] and akte-core's `KeyFile::save`, which gets the
    /// file mode right.
    fn private_string(&self) -> String {
        let mut material = [0u8; 33];
        material[0] = TYPE_ED25519;
        material[1..].copy_from_slice(self.key.as_bytes());
        let s = format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(material)
        );
        wipe(&mut material);
        s
    }
}

fn parse_private(s: &str, what: &str) -> Result<SigningKeyPair, KeyError> {
    let rest = s.strip_prefix(PRIVATE_PREFIX).ok_or_else(|| {
        malformed(
            what,
            "does not start with \"PRIVATE+KEY+\" (expected PRIVATE+KEY+<name>+<key id>+<base64 key>)",
        )
    })?;
    // Names cannot contain '+' but base64 can, so split at the first two '+' only.
    let mut parts = rest.splitn(3, '+');
    let (name, id_hex, key_b64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(i), Some(k)) => (n, i, k),
        _ => {
            return Err(malformed(
                what,
                "expected PRIVATE+KEY+<name>+<key id>+<base64 key>",
            ))
        }
    };
    if let Some(reason) = key_name_problem(name) {
        // The name is public (it is part of the verifier key), so it may be quoted.
        return Err(malformed(
            what,
            &format!("invalid key name {:?}: {reason}", truncate(name, 80)),
        ));
    }
    let stated_id = parse_key_id_hex(id_hex, what)?;
    // The base64 error is not passed on: it would quote a byte of the secret.
    let mut material = BASE64
        .decode(key_b64)
        .map_err(|_| malformed(what, "the key material is not valid standard base64"))?;
    let result = seed_from_material(&material, what).map(|seed| {
        let pair = SigningKeyPair::from_valid_name_and_seed(name, &seed);
        let mut seed = seed;
        wipe(&mut seed);
        pair
    });
    wipe(&mut material);
    let pair = result?;
    if pair.key_id != stated_id {
        return Err(KeyError::KeyIdMismatch {
            what: what.to_owned(),
            stated: hex::encode(stated_id),
            computed: hex::encode(pair.key_id),
        });
    }
    Ok(pair)
}

fn seed_from_material(material: &[u8], what: &str) -> Result<[u8; 32], KeyError> {
    match material.split_first() {
        None => Err(malformed(what, "the key material is empty")),
        Some((&TYPE_ED25519, seed)) => <[u8; 32]>::try_from(seed).map_err(|_| {
            malformed(
                what,
                &format!(
                    "the key material is {} bytes, expected 33 (type byte 0x01 and a 32-byte seed)",
                    material.len()
                ),
            )
        }),
        Some((&byte, _)) => Err(KeyError::UnknownAlgorithm {
            what: what.to_owned(),
            byte,
            expected: "private keys must be Ed25519, type 0x01",
        }),
    }
}

/// A verifier key: key name, key kind, key id and Ed25519 public key.
///
/// Equality compares all four. Displayed (and serialised) as the verifier key string
/// `<name>+<key id>+<base64(type byte || public key)>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    name: String,
    kind: KeyKind,
    key_id: [u8; 4],
    public: VerifyingKey,
}

impl VerifierKey {
    /// Parses a verifier key string `<name>+<8 hex digits>+<base64(type || 32-byte key)>`.
    ///
    /// Accepts type 0x01 (Ed25519 note signatures) and 0x04 (cosignature/v1). Refuses a
    /// key id that does not match, an invalid or small-order public key, and non-canonical
    /// base64.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        parse_verifier(s, "verifier key")
    }

    /// Builds a verifier key from a raw 32-byte Ed25519 public key.
    pub fn from_public_key(
        name: &str,
        kind: KeyKind,
        public_key: &[u8; 32],
    ) -> Result<Self, KeyError> {
        validate_key_name(name)?;
        let public = decode_public_key(public_key, "public key")?;
        Ok(VerifierKey {
            name: name.to_owned(),
            kind,
            key_id: key_id(name, kind.type_byte(), public_key),
            public,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which signatures this key checks.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key id (computed with this key's type byte).
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Lower-case hex SHA-256 of the 32-byte public key, for comparing keys out of band
    /// (on paper, by phone) independently of the key name.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.public.as_bytes()))
    }

    /// The same name and public key as a verifier of another kind (with the key id
    /// recomputed for that kind's type byte).
    pub fn with_kind(&self, kind: KeyKind) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            kind,
            key_id: key_id(&self.name, kind.type_byte(), self.public.as_bytes()),
            public: self.public,
        }
    }

    /// Checks a raw Ed25519 signature of `msg`, whatever this key's kind.
    ///
    /// Uses strict verification (RFC 8032 with canonical S and no small-order points), so
    /// a signature has exactly one valid encoding. Returns false for a signature that is
    /// not 64 bytes.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match Signature::from_slice(sig) {
            Ok(sig) => self.public.verify_strict(msg, &sig).is_ok(),
            Err(_) => false,
        }
    }

    /// Loads a verifier key file: one verifier key string, with or without a final newline.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let what = format!("verifier key file {}", path.display());
        let bytes = read_key_file(path, false)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| malformed(&what, "the file is not UTF-8 text"))?;
        parse_verifier(single_line(text, &what)?, &what)
    }
}

fn parse_verifier(s: &str, what: &str) -> Result<VerifierKey, KeyError> {
    let mut parts = s.splitn(3, '+');
    let (name, id_hex, key_b64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(i), Some(k)) => (n, i, k),
        _ => {
            return Err(malformed(
                what,
                &format!(
                    "expected <name>+<key id>+<base64 key>, got {:?}",
                    truncate(s, 120)
                ),
            ))
        }
    };
    if let Some(reason) = key_name_problem(name) {
        return Err(malformed(
            what,
            &format!("invalid key name {:?}: {reason}", truncate(name, 80)),
        ));
    }
    let stated_id = parse_key_id_hex(id_hex, what)?;
    let material = BASE64
        .decode(key_b64)
        .map_err(|e| malformed(what, &format!("the key is not valid standard base64: {e}")))?;
    let (kind, public_bytes) = match material.split_first() {
        None => return Err(malformed(what, "the key material is empty")),
        Some((&byte, rest)) => {
            let kind = KeyKind::from_type_byte(byte).ok_or_else(|| KeyError::UnknownAlgorithm {
                what: what.to_owned(),
                byte,
                expected: "expected 0x01 for Ed25519 or 0x04 for cosignature/v1",
            })?;
            let bytes = <[u8; 32]>::try_from(rest).map_err(|_| {
                malformed(
                    what,
                    &format!(
                        "the key material is {} bytes, expected 33 (type byte and a 32-byte Ed25519 public key)",
                        material.len()
                    ),
                )
            })?;
            (kind, bytes)
        }
    };
    let computed = key_id(name, kind.type_byte(), &public_bytes);
    if computed != stated_id {
        return Err(KeyError::KeyIdMismatch {
            what: what.to_owned(),
            stated: hex::encode(stated_id),
            computed: hex::encode(computed),
        });
    }
    let public = decode_public_key(&public_bytes, what)?;
    Ok(VerifierKey {
        name: name.to_owned(),
        kind,
        key_id: computed,
        public,
    })
}

fn decode_public_key(bytes: &[u8; 32], what: &str) -> Result<VerifyingKey, KeyError> {
    let public = VerifyingKey::from_bytes(bytes)
        .map_err(|_| malformed(what, "the public key is not a valid Ed25519 point"))?;
    // Decompression accepts a y coordinate that is not reduced mod p, so one point has
    // several 32-byte spellings. Only the canonical one is a key here (FORMAT.md, "Verifier
    // key"), so that an independent verifier that checks canonicity reaches the same verdict.
    if public.to_edwards().compress().to_bytes() != *bytes {
        return Err(malformed(
            what,
            "the public key is not the canonical encoding of its Ed25519 point",
        ));
    }
    // A small-order key verifies forged signatures under lenient verification and none
    // under strict verification; either way it cannot be a real signer's key.
    if public.is_weak() {
        return Err(malformed(
            what,
            "the public key is a small-order (weak) Ed25519 point",
        ));
    }
    Ok(public)
}

fn parse_key_id_hex(id_hex: &str, what: &str) -> Result<[u8; 4], KeyError> {
    let mut id = [0u8; 4];
    if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
        return Err(malformed(
            what,
            &format!(
                "the key id must be 8 hexadecimal digits, got {:?}",
                truncate(id_hex, 40)
            ),
        ));
    }
    Ok(id)
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = [0u8; 33];
        material[0] = self.kind.type_byte();
        material[1..].copy_from_slice(self.public.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(material)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifierKey::parse(s)
    }
}

impl serde::Serialize for VerifierKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for VerifierKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VerifierKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Reads a key file after checking what it is. The checks are made on the opened file
/// (fstat), so a file swapped in after the path check is still checked itself; the path is
/// stat'ed first only so that a FIFO is never opened (opening one would block).
fn read_key_file(path: &Path, private: bool) -> Result<Vec<u8>, KeyError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error("stat", path, e)),
    };
    check_key_file_meta(path, &meta, private)?;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error("open", path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error("stat", path, e))?;
    check_key_file_meta(path, &meta, private)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("read", path, e))?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        wipe(&mut bytes);
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    Ok(bytes)
}

fn check_key_file_meta(path: &Path, meta: &fs::Metadata, private: bool) -> Result<(), KeyError> {
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if private && mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_FILE_SIZE {
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    Ok(())
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> KeyError {
    KeyError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// A key file holds exactly one line; the final newline is optional because keys are
/// often pasted by hand.
fn single_line<'a>(text: &'a str, what: &str) -> Result<&'a str, KeyError> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains('\r') {
        return Err(malformed(
            what,
            "the file contains a carriage return (Windows line ending?); expected one line ending in \\n",
        ));
    }
    if line.contains('\n') {
        return Err(malformed(what, "the file must contain exactly one line"));
    }
    if line.is_empty() {
        return Err(malformed(what, "the file is empty"));
    }
    Ok(line)
}

fn malformed(what: &str, reason: &str) -> KeyError {
    KeyError::Malformed {
        what: what.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Overwrites secret bytes before the buffer is freed. Best effort: `black_box` keeps the
/// compiler from dropping the writes as dead stores, though copies made earlier (by the
/// allocator on growth, say) are out of reach.
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(&*bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    // Vectors from the Go implementation of signed notes: golang/mod,
    // sumdb/note/note_test.go (commit 02c991387e35f9e4c0a9b7ce137717055f8d716d),
    // TestNewVerifier, TestNewSigner, TestVerifierList.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    // From transparency-dev/formats, note/note_cosigv1_test.go
    // (commit 091ce41666c09683aa9350785e572be27f0c026d), TestCoSigV1NewVerifier: a type-0x01
    // key and a native type-0x04 (cosignature/v1) key.
    const TEST_VKEY: &str = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6";
    const REMORA_COSIG_VKEY: &str =
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";

    fn write_with_mode(p: &Path, content: &[u8], mode: u32) {
        fs::write(p, content).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn go_vector_private_key_gives_go_verifier_key() {
        let pair = SigningKeyPair::from_private_string(PETER_SKEY).unwrap();
        assert_eq!(pair.name(), "PeterNeumann");
        assert_eq!(pair.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(pair.verifier().to_string(), PETER_VKEY);
        assert_eq!(pair.private_string(), PETER_SKEY);
    }

    #[test]
    fn go_vector_key_ids_are_derived_as_specified() {
        for (s, kind) in [
            (PETER_VKEY, KeyKind::Ed25519),
            (ENOCH_VKEY, KeyKind::Ed25519),
            (TEST_VKEY, KeyKind::Ed25519),
            (REMORA_COSIG_VKEY, KeyKind::CosignatureV1),
        ] {
            let v = VerifierKey::parse(s).unwrap();
            assert_eq!(v.kind(), kind, "{s}");
            assert_eq!(v.to_string(), s);
            // Recompute by hand: SHA-256(name || "\n" || type || key)[:4].
            let mut input = v.name().as_bytes().to_vec();
            input.push(b'\n');
            input.push(kind.type_byte());
            input.extend_from_slice(&v.public_key_bytes());
            assert_eq!(v.key_id(), Sha256::digest(&input)[..4], "{s}");
            assert_eq!(s.parse::<VerifierKey>().unwrap(), v);
        }
        let peter = VerifierKey::parse(PETER_VKEY).unwrap();
        assert_eq!(hex::encode(peter.key_id()), "c74f20a3");
        assert_eq!(
            peter.fingerprint(),
            hex::encode(Sha256::digest(peter.public_key_bytes()))
        );
    }

    #[test]
    fn with_kind_recomputes_key_id() {
        let v = VerifierKey::parse(PETER_VKEY).unwrap();
        let c = v.with_kind(KeyKind::CosignatureV1);
        assert_eq!(c.kind(), KeyKind::CosignatureV1);
        assert_eq!(c.public_key_bytes(), v.public_key_bytes());
        assert_ne!(c.key_id(), v.key_id());
        assert_eq!(VerifierKey::parse(&c.to_string()).unwrap(), c);
        assert_eq!(c.with_kind(KeyKind::Ed25519), v);
    }

    #[test]
    fn go_manglings_of_verifier_key_are_refused() {
        // As in Go's TestNewVerifier: every proper substring and every single-byte increment.
        let b = PETER_VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i == 0 && j == b.len() {
                    continue;
                }
                let s = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            let s = String::from_utf8(m).unwrap();
            assert!(VerifierKey::parse(&s).is_err(), "accepted {s:?}");
        }
        // Wrong key length with a matching key id, and an unknown type byte with a
        // matching key id (both from Go's test).
        // (Go refuses the first for its length; the strict base64 decoder here already
        // refuses its non-zero trailing bits.)
        assert!(VerifierKey::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        )
        .is_err());
        let e = VerifierKey::parse(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap_err();
        assert!(
            matches!(e, KeyError::UnknownAlgorithm { byte: 0x65, .. }),
            "{e}"
        );
    }

    #[test]
    fn go_manglings_of_private_key_are_refused() {
        let b = PETER_SKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i == 0 && j == b.len() {
                    continue;
                }
                let s = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(
                    SigningKeyPair::from_private_string(s).is_err(),
                    "accepted {s:?}"
                );
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            let s = String::from_utf8(m).unwrap();
            assert!(
                SigningKeyPair::from_private_string(&s).is_err(),
                "accepted {s:?}"
            );
        }
    }

    #[test]
    fn verifier_key_errors_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "expected <name>+<key id>+<base64 key>"),
            ("PeterNeumann", "expected <name>+<key id>+<base64 key>"),
            (
                "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "must not be empty",
            ),
            (
                "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "white space",
            ),
            (
                "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "8 hexadecimal",
            ),
            (
                "PeterNeumann+c74f20ag+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "8 hexadecimal",
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
                "base64",
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW ",
                "base64",
            ),
            ("PeterNeumann+c74f20a3+", "empty"),
            (
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "computed c74f20a3",
            ),
            // 32-byte key without the type byte.
            ("PeterNeumann+c74f20a3+Glz\u{2d}", "base64"),
        ];
        for (s, want) in cases {
            let e = VerifierKey::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
        }
        // Base64 of a wrong length: type byte and 31 or 32+1 key bytes, id adjusted.
        for len in [0usize, 31, 33, 64] {
            let mut material = vec![TYPE_ED25519];
            material.extend(std::iter::repeat_n(7u8, len));
            let s = format!("x+00000000+{}", BASE64.encode(&material));
            let e = VerifierKey::parse(&s).unwrap_err().to_string();
            assert!(e.contains("expected 33"), "{len}: {e}");
        }
    }

    #[test]
    fn small_order_and_invalid_public_keys_are_refused() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let e = VerifierKey::from_public_key("weak", KeyKind::Ed25519, &identity).unwrap_err();
        assert!(e.to_string().contains("small-order"), "{e}");
        let mut material = vec![TYPE_ED25519];
        material.extend_from_slice(&identity);
        let s = format!(
            "weak+{}+{}",
            hex::encode(key_id("weak", TYPE_ED25519, &identity)),
            BASE64.encode(&material)
        );
        assert!(VerifierKey::parse(&s)
            .unwrap_err()
            .to_string()
            .contains("small-order"));
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        let e = VerifierKey::from_public_key("bad", KeyKind::Ed25519, &off_curve).unwrap_err();
        assert!(e.to_string().contains("not a valid Ed25519 point"), "{e}");
        // y = p + 1 spells the point y = 1 without reducing mod p (p = 2^255 - 19).
        let mut unreduced = [0xffu8; 32];
        unreduced[0] = 0xee;
        unreduced[31] = 0x7f;
        let e = VerifierKey::from_public_key("odd", KeyKind::Ed25519, &unreduced).unwrap_err();
        assert!(e.to_string().contains("canonical"), "{e}");
    }

    #[test]
    fn invalid_key_names_are_refused() {
        for name in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\u{2003}b",
            "a\u{85}b",
            "a\u{1}b",
            "tail\n",
        ] {
            assert!(
                matches!(
                    SigningKeyPair::generate(name),
                    Err(KeyError::InvalidName { .. })
                ),
                "{name:?}"
            );
        }
        for name in ["akte.example/tenant-1", "ämter.example", "x"] {
            SigningKeyPair::generate(name).unwrap();
        }
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        let a = SigningKeyPair::generate("a.example").unwrap();
        let b = SigningKeyPair::generate("a.example").unwrap();
        assert_ne!(a.public_key_bytes(), b.public_key_bytes());
        let sig = a.sign(b"hello");
        assert!(a.verifier().verify(b"hello", &sig));
        assert!(!a.verifier().verify(b"hellp", &sig));
        assert!(!b.verifier().verify(b"hello", &sig));
        assert!(!a.verifier().verify(b"hello", &sig[..63]));
        assert!(!a
            .verifier()
            .verify(b"hello", &[sig.as_slice(), &[0]].concat()));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!a.verifier().verify(b"hello", &bad));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let pair = SigningKeyPair::from_private_string(PETER_SKEY).unwrap();
        let dbg = format!("{pair:?}");
        let seed_b64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let seed = BASE64.decode(seed_b64).unwrap();
        assert!(!dbg.contains(&seed_b64[4..20]), "{dbg}");
        assert!(!dbg.contains(&hex::encode(&seed[1..])[..16]), "{dbg}");
        assert!(!dbg.contains(&BASE64.encode(&seed[1..])[..16]), "{dbg}");
        assert!(dbg.contains("PeterNeumann"), "{dbg}");
    }

    #[test]
    fn private_key_file_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.key");
        let pair = SigningKeyPair::generate("akte.example/t1").unwrap();
        write_with_mode(&path, &pair.to_file_bytes(), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("PRIVATE+KEY+akte.example/t1+"), "{text}");
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let loaded = SigningKeyPair::load(&path).unwrap();
        assert_eq!(loaded.verifier(), pair.verifier());
        assert_eq!(loaded.sign(b"x"), pair.sign(b"x"));
        // A file without the final newline (as Go tools write it) loads too, and so does
        // a stricter mode.
        write_with_mode(&path, text.trim_end().as_bytes(), 0o400);
        assert_eq!(
            SigningKeyPair::load(&path).unwrap().verifier(),
            pair.verifier()
        );
    }

    #[test]
    fn private_key_file_accessible_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.key");
        let content = format!("{PETER_SKEY}\n");
        for mode in [
            0o644,
            0o640,
            0o604,
            0o620,
            0o602,
            0o660,
            0o666,
            0o700 | 0o070,
        ] {
            write_with_mode(&path, content.as_bytes(), mode);
            match SigningKeyPair::load(&path) {
                Err(KeyError::Permissions { path: p, mode: m }) => {
                    assert_eq!(p, path);
                    assert_eq!(m, mode);
                }
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        write_with_mode(&path, content.as_bytes(), 0o644);
        let msg = SigningKeyPair::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("0644") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        // The public key file may be world-readable.
        let vpath = dir.path().join("tenant.pub");
        write_with_mode(&vpath, format!("{PETER_VKEY}\n").as_bytes(), 0o644);
        VerifierKey::load(&vpath).unwrap();
    }

    #[test]
    fn missing_and_non_regular_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.key");
        match SigningKeyPair::load(&missing) {
            Err(KeyError::NotFound { path }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        assert!(SigningKeyPair::load(&missing)
            .unwrap_err()
            .to_string()
            .contains("nope.key"));
        assert!(matches!(
            VerifierKey::load(&missing),
            Err(KeyError::NotFound { .. })
        ));
        assert!(matches!(
            SigningKeyPair::load(dir.path()),
            Err(KeyError::NotAFile { .. })
        ));
        assert!(matches!(
            VerifierKey::load(dir.path()),
            Err(KeyError::NotAFile { .. })
        ));
    }

    #[test]
    fn garbage_private_key_files_are_refused_without_echoing_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        let seed_b64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let wrong_alg = {
            let mut m = BASE64.decode(seed_b64).unwrap();
            m[0] = 0x04;
            BASE64.encode(m)
        };
        let short = BASE64.encode(&BASE64.decode(seed_b64).unwrap()[..32]);
        let long = BASE64.encode([BASE64.decode(seed_b64).unwrap(), vec![0]].concat());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty"),
            (b"\n".to_vec(), "empty"),
            (b"hello world\n".to_vec(), "PRIVATE+KEY+"),
            (PETER_VKEY.as_bytes().to_vec(), "PRIVATE+KEY+"),
            (b"PRIVATE+KEY+\n".to_vec(), "expected PRIVATE+KEY+"),
            (
                format!("PRIVATE+KEY+PeterNeumann+c74f20a3+{seed_b64}\r\n").into_bytes(),
                "carriage return",
            ),
            (
                format!("{PETER_SKEY}\n{PETER_SKEY}\n").into_bytes(),
                "exactly one line",
            ),
            (format!("{PETER_SKEY}\n\n").into_bytes(), "exactly one line"),
            (format!(" {PETER_SKEY}\n").into_bytes(), "PRIVATE+KEY+"),
            (
                format!("PRIVATE+KEY+Peter Neumann+c74f20a3+{seed_b64}").into_bytes(),
                "white space",
            ),
            (
                format!("PRIVATE+KEY+PeterNeumann+c74f20a+{seed_b64}").into_bytes(),
                "8 hexadecimal",
            ),
            (
                format!("PRIVATE+KEY+PeterNeumann+c74f20a3+{}", &seed_b64[..43]).into_bytes(),
                "not valid standard base64",
            ),
            (
                format!("PRIVATE+KEY+PeterNeumann+c74f20a3+{short}").into_bytes(),
                "expected 33",
            ),
            (
                format!("PRIVATE+KEY+PeterNeumann+c74f20a3+{long}").into_bytes(),
                "expected 33",
            ),
            (
                format!("PRIVATE+KEY+PeterNeumann+c74f20a3+{wrong_alg}").into_bytes(),
                "type byte 0x04",
            ),
            (
                format!("PRIVATE+KEY+PeterNeumann+00000000+{seed_b64}").into_bytes(),
                "computed c74f20a3",
            ),
            (
                format!("PRIVATE+KEY+PaulNeumann+c74f20a3+{seed_b64}").into_bytes(),
                "does not match",
            ),
            (vec![0xff, 0xfe, b'\n'], "not UTF-8"),
        ];
        for (content, want) in cases {
            write_with_mode(&path, &content, 0o600);
            let e = SigningKeyPair::load(&path).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(want),
                "{:?}: {msg}",
                String::from_utf8_lossy(&content)
            );
            assert!(msg.contains("bad.key"), "error must name the file: {msg}");
            assert!(
                !msg.contains(&seed_b64[2..12]),
                "error quotes the secret: {msg}"
            );
        }
        let big = vec![b'A'; (MAX_KEY_FILE_SIZE + 1) as usize];
        write_with_mode(&path, &big, 0o600);
        assert!(matches!(
            SigningKeyPair::load(&path),
            Err(KeyError::TooLarge { .. })
        ));
    }

    #[test]
    fn verifier_key_file_round_trip_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.pub");
        let v = VerifierKey::parse(PETER_VKEY).unwrap();
        write_with_mode(&path, format!("{v}\n").as_bytes(), 0o644);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{PETER_VKEY}\n")
        );
        assert_eq!(VerifierKey::load(&path).unwrap(), v);
        fs::write(&path, PETER_VKEY).unwrap();
        assert_eq!(VerifierKey::load(&path).unwrap(), v);
        for (content, want) in [
            ("", "empty"),
            ("garbage\n", "expected <name>+<key id>+<base64 key>"),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\r\n",
                "carriage return",
            ),
        ] {
            fs::write(&path, content).unwrap();
            let msg = VerifierKey::load(&path).unwrap_err().to_string();
            assert!(
                msg.contains(want) && msg.contains("tenant.pub"),
                "{content:?}: {msg}"
            );
        }
    }
}
