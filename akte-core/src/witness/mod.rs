//! Witnesses: independent parties (typically the state archive) that cosign an agency's
//! checkpoints after checking that each extends the last one they saw.
//!
//! A signed checkpoint proves what the agency's journal held, but not that the agency
//! showed the same journal to everyone: it could sign one history for the archive and
//! another for a court. A witness keeps the last checkpoint it cosigned and cosigns a new
//! one only if a consistency proof shows the new tree extends the kept one. Once a
//! checkpoint carries a witness's cosignature, a different history of the same size, or
//! one that rewrites what the witness saw, would need the witness to cosign a fork, which
//! it refuses. The signature format is C2SP tlog-cosignature (`cosignature/v1`,
//! [`crate::note::cosign`]).
//!
//! Two sides live here:
//!
//! - the **log side** (the agency's data directory): [`registry`] keeps the tenant's
//!   trusted witness keys in `keys/witnesses`; [`stored`] adds a registered witness's
//!   cosignature to the stored checkpoint note it signs (`checkpoints/<size>.note`) and
//!   finds the newest checkpoint that carries verified cosignatures, which evidence then
//!   uses ([`crate::evidence::build_evidence`]);
//! - the **witness side** ([`state`]): the witness's own directory with the log key it
//!   pinned and the checkpoint it kept, and the decision whether a new checkpoint may be
//!   cosigned.
//!
//! The byte formats are in `docs/FORMAT.md` ("Cosignature", "Data directory").

pub mod registry;
pub mod state;
pub mod stored;

use crate::backend::IoFailure;
use crate::digest::Digest;
use crate::keys::KeyError;
use crate::note::NoteError;
use crate::store::StoreError;

pub use registry::{MAX_WITNESSES, REMOVED_WITNESSES_FILE, WITNESSES_FILE};
pub use state::{Plan, WitnessState, WitnessStateError};
pub use stored::{
    check_stored_note, CosignatureOutcome, CosignedCheckpoint, StoredLineProblem, Witnessed,
};

/// Errors of the log side: registering witnesses and storing their cosignatures.
///
/// Every refusal leaves the data directory as it was.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The witness key given cannot be used.
    #[error("invalid witness key: {0}")]
    InvalidKey(#[source] KeyError),
    /// The witness key is the tenant's own checkpoint key, or carries the tenant's origin
    /// as its name: a log cannot witness itself.
    #[error("the witness key {key} is the tenant's own key or named like its log {origin:?}; a witness must be an independent party")]
    OwnKey {
        /// The key given.
        key: String,
        /// The tenant's origin.
        origin: String,
    },
    /// Another key is registered under the same key name.
    #[error("a different witness key is already registered under the name {name:?} ({existing}); one name, one key")]
    NameTaken {
        /// The key name.
        name: String,
        /// The registered key.
        existing: String,
    },
    /// The same public key is registered under another name. cosignature/v1 does not sign
    /// the witness's name, so one key under two names would make its cosignatures
    /// ambiguous.
    #[error("the same public key is already registered as witness {existing:?}; a witness key must not be used under two names")]
    KeyTaken {
        /// The name it is registered under.
        existing: String,
    },
    /// The tenant already has [`MAX_WITNESSES`] witnesses.
    #[error("tenant {tenant:?} already has {limit} witnesses, the most it may have")]
    TooMany {
        /// The tenant.
        tenant: String,
        /// The limit.
        limit: usize,
    },
    /// No witness with that fingerprint is registered.
    #[error("no witness with key fingerprint {fingerprint} is registered for tenant {tenant:?}")]
    NoSuchWitness {
        /// The tenant.
        tenant: String,
        /// The fingerprint asked for.
        fingerprint: String,
    },
    /// The witness list file does not have its format.
    #[error("witness list {place}, line {line}: {reason}")]
    DamagedList {
        /// Where it is stored.
        place: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The cosigned note could not be parsed as a checkpoint note.
    #[error("the cosigned note is not a checkpoint note: {0}")]
    MalformedNote(#[source] NoteError),
    /// The note is a checkpoint of another log.
    #[error("the note is a checkpoint of {given:?}, not of this tenant's log {expected:?}")]
    WrongOrigin {
        /// The note's origin.
        given: String,
        /// The tenant's origin.
        expected: String,
    },
    /// No checkpoint of that size is stored.
    #[error("tenant {tenant:?} has no stored checkpoint of size {size}")]
    NotStored {
        /// The tenant.
        tenant: String,
        /// The size asked for.
        size: u64,
    },
    /// The note's checkpoint is not the one stored for its size: another root, or other
    /// extension lines. The tenant never signed it.
    #[error("the note's checkpoint of size {size} (root {given_root}) is not the one tenant {tenant:?} stored for that size (root {stored_root})")]
    CheckpointMismatch {
        /// The tenant.
        tenant: String,
        /// The tree size.
        size: u64,
        /// The stored checkpoint's root (base64).
        stored_root: String,
        /// The note's root (base64).
        given_root: String,
    },
    /// A signature line is by a key that is not a registered witness of the tenant.
    #[error("signature line by {name}+{key_id} is not from a registered witness of tenant {tenant:?} (register its key first)")]
    UnknownWitness {
        /// The tenant.
        tenant: String,
        /// The line's key name.
        name: String,
        /// The line's key id, 8 hex digits.
        key_id: String,
    },
    /// A registered witness's cosignature does not verify.
    #[error("the cosignature of witness {name:?} does not verify: {reason}")]
    BadCosignature {
        /// The witness's key name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The note carries no cosignature of a registered witness at all.
    #[error("the note carries no cosignature of a registered witness of tenant {tenant:?} (only the log's own signature or lines already refused)")]
    NoCosignature {
        /// The tenant.
        tenant: String,
    },
    /// A stored checkpoint note does not open with the tenant's key.
    #[error("stored checkpoint {place} is damaged: {reason}")]
    DamagedCheckpoint {
        /// Where it is stored.
        place: String,
        /// Why.
        reason: String,
    },
    /// The cosigned note would exceed the note limits.
    #[error("cannot add the cosignature: {0}")]
    Note(#[source] NoteError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A Merkle root as checkpoints write it (canonical base64), for messages that name roots.
pub fn root_b64(root: &Digest) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(root.as_bytes())
}
