//! Checking that a newer checkpoint extends an older one, offline.

use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

use super::*;
use crate::digest::Digest;
use crate::keys::{KeyError, KeyKind, VerifierKey};
use crate::merkle::{self, ProofError};
use crate::note::{Checkpoint, NoteError};

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
    Input(#[from] FormatError),
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
