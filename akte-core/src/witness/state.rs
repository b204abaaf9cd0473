//! The witness's side: its state directory and the decision to cosign.
//!
//! A witness keeps, per log, one directory:
//!
//! ```text
//! STATE/
//!   LOCK              flock: one cosigning run at a time
//!   log.pub           the log's verifier key (type 0x01), pinned on first use
//!   checkpoint.note   the last checkpoint this witness cosigned (with its cosignature)
//! ```
//!
//! The log key is never learned from the log itself: the first run must be given it
//! (obtained out of band, like the key an archive uses to verify transfers), and it is
//! written only once a checkpoint signed by it has been cosigned. A new checkpoint is
//! cosigned only if it is signed by the pinned key, names the pinned key's log, and
//! extends the kept checkpoint: same size and same text, or a larger size with a
//! consistency proof from the kept root to the new root. A smaller size, another
//! checkpoint of the same size, or a proof that fails is refused and the kept checkpoint
//! stays. Two runs at once could each check against the same kept checkpoint and then
//! cosign two diverging successors, so the directory is locked for the whole run.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::embedded::fsutil::{self, IoContext, IoFailure};
use crate::keys::{KeyError, KeyFile, KeyKind, SigningKeyPair, VerifierKey};
use crate::merkle::{self, ProofError};
use crate::note::{cosign, Checkpoint, NoteError, SignedNote};

use super::root_b64;

/// The pinned log key in a witness state directory.
pub const LOG_KEY_FILE: &str = "log.pub";
/// The kept checkpoint in a witness state directory.
pub const KEPT_FILE: &str = "checkpoint.note";
/// The lock file of a witness state directory.
pub const LOCK_FILE: &str = "LOCK";

/// Errors of the witness side. [`WitnessStateError::is_refusal`] tells a refusal to cosign
/// (the log's history does not extend what the witness saw) from a failure to check.
#[derive(Debug, thiserror::Error)]
pub enum WitnessStateError {
    /// Another run holds the state directory.
    #[error("witness state {path} is in use by another run (lock held)")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// No log key is pinned and none was given.
    #[error("witness state {dir} has no pinned log key: on first use, give the log's verifier key (obtained out of band)")]
    NoLogKey {
        /// The state directory.
        dir: PathBuf,
    },
    /// The log key given differs from the pinned one.
    #[error("the log key given ({given}) is not the one pinned in {path} ({pinned}); a log key never changes silently")]
    KeyMismatch {
        /// The key given.
        given: String,
        /// The pinned key.
        pinned: String,
        /// The pinned key file.
        path: PathBuf,
    },
    /// The log key is a witness (type 0x04) key.
    #[error("the log key {0} is a cosignature (type 0x04) key; give the log's type 0x01 key")]
    WrongKeyKind(String),
    /// A key file in the state directory or the key given cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The kept checkpoint does not open with the pinned key.
    #[error("the kept checkpoint {path} does not verify with the pinned log key: {source}")]
    DamagedState {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: NoteError,
    },
    /// The new checkpoint does not parse or is not signed by the pinned key.
    #[error("the new checkpoint is not signed by the log key {key}: {source}")]
    Signature {
        /// The pinned (or given) key.
        key: String,
        /// Why.
        #[source]
        source: NoteError,
    },
    /// The new checkpoint is of another log than the key's.
    #[error("the new checkpoint is of {origin:?}, but the log key is {key:?}'s")]
    Origin {
        /// The checkpoint's origin.
        origin: String,
        /// The key's name.
        key: String,
    },
    /// Refusal: the new checkpoint has fewer entries than the kept one.
    #[error("REFUSED: the log went backwards: the new checkpoint has size {new_size} (root {new_root}), fewer entries than the kept checkpoint of size {kept_size} (root {kept_root})")]
    Backwards {
        /// Kept size.
        kept_size: u64,
        /// Kept root, base64.
        kept_root: String,
        /// New size.
        new_size: u64,
        /// New root, base64.
        new_root: String,
    },
    /// Refusal: another checkpoint of the kept size.
    #[error("REFUSED: fork: the new checkpoint of size {size} has root {new_root}, but the kept checkpoint of the same size has root {kept_root}")]
    Fork {
        /// The size.
        size: u64,
        /// Kept root, base64.
        kept_root: String,
        /// New root, base64.
        new_root: String,
    },
    /// Refusal: the consistency proof does not lead from the kept root to the new one.
    #[error("REFUSED: the new checkpoint of size {new_size} (root {new_root}) is not shown to extend the kept checkpoint of size {kept_size} (root {kept_root}): {source}")]
    Inconsistent {
        /// Kept size.
        kept_size: u64,
        /// Kept root, base64.
        kept_root: String,
        /// New size.
        new_size: u64,
        /// New root, base64.
        new_root: String,
        /// Why the proof fails (boxed: it holds two hashes, and errors travel by value).
        #[source]
        source: Box<ProofError>,
    },
    /// Cosigning failed (note limits, timestamp).
    #[error("cannot cosign: {0}")]
    Cosign(#[source] NoteError),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoFailure),
}

impl WitnessStateError {
    /// Whether this is a refusal: the new checkpoint does not extend what the witness saw.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            WitnessStateError::Backwards { .. }
                | WitnessStateError::Fork { .. }
                | WitnessStateError::Inconsistent { .. }
        )
    }
}

/// A new checkpoint that verified with the log key, and what is needed to cosign it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The new checkpoint.
    pub checkpoint: Checkpoint,
    /// Its note as received.
    pub note: SignedNote,
    /// The sizes of the consistency proof needed (kept size, new size), or `None` when no
    /// proof is needed (first checkpoint, same checkpoint again, or kept size 0).
    pub proof_needed: Option<(u64, u64)>,
}

/// An open witness state directory, locked for the life of the value.
#[derive(Debug)]
pub struct WitnessState {
    dir: PathBuf,
    key: VerifierKey,
    pinned: bool,
    kept: Option<(Checkpoint, SignedNote)>,
    _lock: File,
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, IoFailure> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IoFailure::new(
            "read",
            path.to_path_buf().display().to_string(),
            source,
        )),
    }
}

impl WitnessState {
    /// Opens (creating if needed) and locks the state directory `dir`.
    ///
    /// `trust` is the log's verifier key: required on first use, and if given later it
    /// must equal the pinned one. The kept checkpoint, if any, must verify with the key.
    pub fn open(
        dir: &Path,
        trust: Option<&VerifierKey>,
    ) -> Result<WitnessState, WitnessStateError> {
        fsutil::create_dir_all_durable(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at("open", &lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(WitnessStateError::Busy { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(fsutil::failure("lock", &lock_path, e).into())
            }
        }
        if let Some(k) = trust {
            if k.kind() != KeyKind::Ed25519 {
                return Err(WitnessStateError::WrongKeyKind(k.to_string()));
            }
        }
        let key_path = dir.join(LOG_KEY_FILE);
        let (key, pinned) = match (key_path.exists(), trust) {
            (true, given) => {
                let pinned = VerifierKey::load(&key_path)?;
                if let Some(g) = given {
                    if g != &pinned {
                        return Err(WitnessStateError::KeyMismatch {
                            given: g.to_string(),
                            pinned: pinned.to_string(),
                            path: key_path,
                        });
                    }
                }
                (pinned, true)
            }
            (false, Some(g)) => (g.clone(), false),
            (false, None) => {
                return Err(WitnessStateError::NoLogKey {
                    dir: dir.to_path_buf(),
                })
            }
        };
        let kept_path = dir.join(KEPT_FILE);
        let kept = match read_optional(&kept_path)? {
            None => None,
            Some(bytes) => {
                let opened = Checkpoint::open(&bytes, &key).map_err(|source| {
                    WitnessStateError::DamagedState {
                        path: kept_path.clone(),
                        source,
                    }
                })?;
                Some(opened)
            }
        };
        Ok(WitnessState {
            dir: dir.to_path_buf(),
            key,
            pinned,
            kept,
            _lock: lock,
        })
    }

    /// The log's verifier key (pinned, or given for the first use).
    pub fn log_key(&self) -> &VerifierKey {
        &self.key
    }

    /// The kept checkpoint, if this witness has cosigned one.
    pub fn kept(&self) -> Option<&Checkpoint> {
        self.kept.as_ref().map(|(cp, _)| cp)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks a new checkpoint note against the log key and the kept checkpoint's size and
    /// root, and says which consistency proof is needed. Refuses a smaller size and another
    /// checkpoint of the kept size here already, before any proof is fetched.
    pub fn plan(&self, note_bytes: &[u8]) -> Result<Plan, WitnessStateError> {
        let (checkpoint, note) = Checkpoint::open(note_bytes, &self.key).map_err(|source| {
            WitnessStateError::Signature {
                key: self.key.to_string(),
                source,
            }
        })?;
        if checkpoint.origin != self.key.name() {
            return Err(WitnessStateError::Origin {
                origin: checkpoint.origin.chars().take(80).collect(),
                key: self.key.name().to_owned(),
            });
        }
        let proof_needed = self.proof_needed(&checkpoint)?;
        Ok(Plan {
            checkpoint,
            note,
            proof_needed,
        })
    }

    /// Which consistency proof `checkpoint` needs against the kept checkpoint, refusing a
    /// smaller size and another checkpoint of the kept size.
    fn proof_needed(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<Option<(u64, u64)>, WitnessStateError> {
        Ok(match self.kept() {
            None => None,
            Some(kept) if checkpoint.size < kept.size => {
                return Err(WitnessStateError::Backwards {
                    kept_size: kept.size,
                    kept_root: root_b64(&kept.root),
                    new_size: checkpoint.size,
                    new_root: root_b64(&checkpoint.root),
                })
            }
            Some(kept) if checkpoint.size == kept.size => {
                // Same size: it must be the very same checkpoint (extension lines
                // included), or the log signed two histories of one size.
                if checkpoint.to_body() != kept.to_body() {
                    return Err(WitnessStateError::Fork {
                        size: kept.size,
                        kept_root: root_b64(&kept.root),
                        new_root: root_b64(&checkpoint.root),
                    });
                }
                None
            }
            Some(kept) if kept.size == 0 => None,
            Some(kept) => Some((kept.size, checkpoint.size)),
        })
    }

    /// Verifies `proof` for `plan` and cosigns the checkpoint with `witness` at `timestamp`
    /// (seconds since 1970). Returns the note with the cosignature added. Keeps nothing:
    /// call [`WitnessState::keep`] once the cosigned note has been delivered.
    pub fn cosign(
        &self,
        plan: &Plan,
        proof: &[Digest],
        witness: &SigningKeyPair,
        timestamp: u64,
    ) -> Result<SignedNote, WitnessStateError> {
        // Checked again here rather than taken from the plan (its fields are public), so
        // that a plan made elsewhere or against another state can never skip a check.
        let checked = self.plan(&plan.note.to_bytes())?;
        let new = &checked.checkpoint;
        match (self.kept(), checked.proof_needed) {
            (Some(kept), Some(_)) => {
                merkle::verify_consistency(kept.size, new.size, &kept.root, &new.root, proof)
                    .map_err(|source| WitnessStateError::Inconsistent {
                        kept_size: kept.size,
                        kept_root: root_b64(&kept.root),
                        new_size: new.size,
                        new_root: root_b64(&new.root),
                        source: Box::new(source),
                    })?;
            }
            _ if !proof.is_empty() => {
                return Err(WitnessStateError::Inconsistent {
                    kept_size: self.kept().map_or(0, |k| k.size),
                    kept_root: self.kept().map_or_else(String::new, |k| root_b64(&k.root)),
                    new_size: new.size,
                    new_root: root_b64(&new.root),
                    source: Box::new(ProofError::WrongLength {
                        expected: 0,
                        got: proof.len(),
                    }),
                })
            }
            _ => {}
        }
        let sig = cosign(new, witness, timestamp).map_err(WitnessStateError::Cosign)?;
        let mut note = checked.note;
        note.push_signature(sig)
            .map_err(WitnessStateError::Cosign)?;
        Ok(note)
    }

    /// Keeps `note` (a checkpoint this witness cosigned) as the reference for the next run,
    /// pinning the log key first if this is the first use. Both files are replaced
    /// atomically. The note must verify with the log key and must not be smaller than the
    /// kept checkpoint or differ from it at the same size; that a larger one extends it is
    /// what [`WitnessState::cosign`] checked, which is where the note must come from.
    pub fn keep(&mut self, note: &SignedNote) -> Result<(), WitnessStateError> {
        let bytes = note.to_bytes();
        // Signature, origin, and never a smaller or another checkpoint of the kept size; that
        // a larger one extends the kept one is what `cosign` checked.
        let Plan {
            checkpoint: cp,
            note,
            ..
        } = self.plan(&bytes)?;
        if !self.pinned {
            self.key.save(&self.dir.join(LOG_KEY_FILE))?;
            self.pinned = true;
        }
        fsutil::write_file_atomic(&self.dir.join(KEPT_FILE), &bytes, 0o644)?;
        self.kept = Some((cp, note));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, MemoryTree};

    const LOG_SEED: [u8; 32] = [7; 32];

    /// A toy log: its leaves and key; checkpoints and proofs computed from the leaves.
    struct Log {
        key: SigningKeyPair,
        leaves: Vec<Digest>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                key: SigningKeyPair::from_seed("akte.local/bauamt", &LOG_SEED).unwrap(),
                leaves: Vec::new(),
            }
        }
        fn grow(&mut self, n: usize, tag: &str) {
            for _ in 0..n {
                let i = self.leaves.len();
                self.leaves.push(leaf_hash(format!("{tag} {i}").as_bytes()));
            }
        }
        fn tree(&self) -> MemoryTree {
            MemoryTree::from_leaves(&self.leaves)
        }
        fn note(&self) -> SignedNote {
            let size = self.leaves.len() as u64;
            let root = merkle::root(&self.tree(), size).unwrap();
            Checkpoint::new(self.key.name(), size, root)
                .sign(&self.key)
                .unwrap()
        }
        fn proof(&self, old: u64, new: u64) -> Vec<Digest> {
            merkle::consistency_proof(&self.tree(), old, new).unwrap()
        }
    }

    fn witness() -> SigningKeyPair {
        SigningKeyPair::generate("archiv.example/zeuge").unwrap()
    }

    fn run(
        dir: &Path,
        trust: Option<&VerifierKey>,
        log: &Log,
        w: &SigningKeyPair,
    ) -> Result<SignedNote, WitnessStateError> {
        let mut state = WitnessState::open(dir, trust)?;
        let plan = state.plan(&log.note().to_bytes())?;
        let proof = match plan.proof_needed {
            Some((a, b)) => log.proof(a, b),
            None => Vec::new(),
        };
        let note = state.cosign(&plan, &proof, w, 1_700_000_000)?;
        state.keep(&note)?;
        Ok(note)
    }

    #[test]
    fn cosigns_a_growing_log_and_refuses_forks() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let w = witness();
        let mut log = Log::new();
        log.grow(3, "a");
        let key = log.key.verifier();

        // First use needs the key.
        assert!(matches!(
            run(&state, None, &log, &w),
            Err(WitnessStateError::NoLogKey { .. })
        ));
        let note = run(&state, Some(&key), &log, &w).unwrap();
        assert_eq!(note.verify(&[w.cosignature_verifier()]).unwrap().len(), 1);
        assert_eq!(VerifierKey::load(&state.join(LOG_KEY_FILE)).unwrap(), key);

        // It grows: cosigned with a proof; the same checkpoint again is fine too.
        log.grow(5, "a");
        run(&state, None, &log, &w).unwrap();
        run(&state, Some(&key), &log, &w).unwrap();
        let kept = WitnessState::open(&state, None).unwrap().kept().cloned();
        assert_eq!(kept.unwrap().size, 8);

        // A fork signed with the same key: a history that differs from entry 5 on.
        let mut fork = Log::new();
        fork.leaves = log.leaves[..5].to_vec();
        fork.grow(6, "b");
        let e = run(&state, None, &fork, &w).unwrap_err();
        assert!(matches!(e, WitnessStateError::Inconsistent { .. }), "{e}");
        assert!(e.is_refusal());
        assert!(e.to_string().contains("size 8"), "{e}");
        assert!(e.to_string().contains("size 11"), "{e}");
        // Same size, other root.
        fork.leaves.truncate(8);
        let e = run(&state, None, &fork, &w).unwrap_err();
        assert!(matches!(e, WitnessStateError::Fork { size: 8, .. }), "{e}");
        // Backwards.
        fork.leaves = log.leaves[..4].to_vec();
        let e = run(&state, None, &fork, &w).unwrap_err();
        assert!(
            matches!(
                e,
                WitnessStateError::Backwards {
                    kept_size: 8,
                    new_size: 4,
                    ..
                }
            ),
            "{e}"
        );
        // The kept checkpoint did not move.
        let st = WitnessState::open(&state, None).unwrap();
        assert_eq!(st.kept().unwrap().size, 8);
        // A damaged proof, or a proof where none is needed, is refused.
        log.grow(1, "a");
        let plan = st.plan(&log.note().to_bytes()).unwrap();
        assert_eq!(plan.proof_needed, Some((8, 9)));
        let mut proof = log.proof(8, 9);
        proof[0].0[0] ^= 1;
        assert!(st.cosign(&plan, &proof, &w, 1).unwrap_err().is_refusal());
        let same = st.plan(&st.kept.as_ref().unwrap().1.to_bytes()).unwrap();
        assert_eq!(same.proof_needed, None);
        assert!(st.cosign(&same, &proof, &w, 1).unwrap_err().is_refusal());
    }

    #[test]
    fn keys_and_state_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let w = witness();
        let mut log = Log::new();
        log.grow(2, "a");
        let key = log.key.verifier();
        // The wrong key on first use: nothing verifies, nothing is pinned.
        let other = SigningKeyPair::generate("akte.local/bauamt")
            .unwrap()
            .verifier();
        assert!(matches!(
            run(&state, Some(&other), &log, &w),
            Err(WitnessStateError::Signature { .. })
        ));
        assert!(!state.join(LOG_KEY_FILE).exists());
        // A witness key as log key.
        assert!(matches!(
            WitnessState::open(&state, Some(&w.cosignature_verifier())),
            Err(WitnessStateError::WrongKeyKind(_))
        ));
        // A checkpoint of another origin, signed by the log's key.
        let st = WitnessState::open(&state, Some(&key)).unwrap();
        let misnamed = Checkpoint::new("akte.local/anderes", 2, Digest::ZERO)
            .sign(&log.key)
            .unwrap();
        assert!(matches!(
            st.plan(&misnamed.to_bytes()),
            Err(WitnessStateError::Origin { .. })
        ));
        drop(st);
        // Pinned by the first cosignature; another key later is refused.
        run(&state, Some(&key), &log, &w).unwrap();
        let e = run(&state, Some(&other), &log, &w).unwrap_err();
        assert!(matches!(e, WitnessStateError::KeyMismatch { .. }), "{e}");
        // Locked while open.
        let held = WitnessState::open(&state, None).unwrap();
        assert!(matches!(
            WitnessState::open(&state, None),
            Err(WitnessStateError::Busy { .. })
        ));
        drop(held);
        // A damaged kept checkpoint is an error, not a fresh start.
        let kept = state.join(KEPT_FILE);
        let mut bytes = fs::read(&kept).unwrap();
        bytes[3] ^= 1;
        fs::write(&kept, bytes).unwrap();
        assert!(matches!(
            WitnessState::open(&state, None),
            Err(WitnessStateError::DamagedState { .. })
        ));
    }
}
