//! Witness cosignatures on the tenant's stored checkpoints.
//!
//! A cosignature is kept where C2SP puts it: as one more signature line of the checkpoint
//! note, in `checkpoints/<size>.note`. Adding one replaces the file atomically; the note's
//! text (the signed checkpoint) never changes, so the tenant's signature and every earlier
//! cosignature stay valid, and verifiers that do not know a witness ignore its line. A
//! line is stored only if it is a registered witness's cosignature of exactly that stored
//! checkpoint and verifies.
//!
//! A store verifier is stricter than a generic note verifier: every line of a stored note
//! must be by the tenant's key or by a registered-or-removed witness, and must verify
//! ([`check_stored_note`], [`Tenant::verify_stored_cosignatures`]).

use crate::keys::{KeyKind, VerifierKey};
use crate::note::{verify_cosignature, Checkpoint, NoteError, NoteSignature, SignedNote};
use crate::store::{checkpoint_name, StoreError, Tenant};

use super::{root_b64, WitnessError};

/// A registered witness whose cosignature on a checkpoint verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The witness's verifier key (type 0x04).
    pub key: VerifierKey,
    /// When it cosigned, in seconds since 1970 (the cosignature's own timestamp).
    pub timestamp: u64,
}

/// A stored checkpoint with the registered witnesses whose cosignatures on it verify.
#[derive(Debug, Clone)]
pub struct CosignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The stored note: the tenant's signature and every stored cosignature.
    pub note: SignedNote,
    /// Registered witnesses whose cosignature verifies, in registration order (may be
    /// empty).
    pub witnesses: Vec<Witnessed>,
}

/// What [`Tenant::add_cosignatures`] did.
#[derive(Debug, Clone)]
pub struct CosignatureOutcome {
    /// The checkpoint as now stored.
    pub stored: CosignedCheckpoint,
    /// Names of the witnesses whose cosignature was added now (empty when every one was
    /// stored already: repeating a call changes nothing).
    pub added: Vec<String>,
}

/// A signature line of a stored checkpoint note that breaks the store's rule: every line is
/// by the tenant's checkpoint key (type 0x01) or by a registered-or-removed witness (type
/// 0x04), matched by name and key id, and verifies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredLineProblem {
    /// The note does not parse as a signed note whose text is a checkpoint.
    #[error("the note is not a checkpoint note: {0}")]
    Malformed(String),
    /// A line whose name and key id match no known key.
    #[error("signature line {line} by unknown key {name}+{key_id}")]
    UnknownKey {
        /// 1-based number among the note's signature lines.
        line: usize,
        /// The line's key name.
        name: String,
        /// The line's key id, 8 hex digits.
        key_id: String,
    },
    /// The tenant's own line does not verify.
    #[error("signature line {line} by the tenant's key {name}+{key_id} does not verify")]
    BadLogSignature {
        /// 1-based number among the note's signature lines.
        line: usize,
        /// The key name.
        name: String,
        /// The key id, 8 hex digits.
        key_id: String,
    },
    /// A witness's line does not verify.
    #[error("signature line {line} by witness {name}+{key_id} does not verify: {reason}")]
    BadCosignature {
        /// 1-based number among the note's signature lines.
        line: usize,
        /// The witness's key name.
        name: String,
        /// The key id, 8 hex digits.
        key_id: String,
        /// Why.
        reason: String,
    },
}

/// Checks every signature line of a stored checkpoint note (docs/FORMAT.md, "Witnesses in
/// the data directory"): each must match, by name and key id, the tenant's checkpoint key
/// `tenant_key` (type 0x01 key id) or a witness in `registered` or `removed` (type 0x04
/// key id of its public key), and must verify. Returns every problem, in line order; an
/// empty list means the note is clean.
///
/// Pure: no file, no clock. Whether the checkpoint's origin, size and root are the
/// tenant's is not checked here, nor that the tenant's line is present (opening the note
/// with [`Checkpoint::open`] checks that).
pub fn check_stored_note(
    tenant_key: &VerifierKey,
    registered: &[VerifierKey],
    removed: &[VerifierKey],
    note_bytes: &[u8],
) -> Vec<StoredLineProblem> {
    let parsed = SignedNote::parse(note_bytes)
        .and_then(|note| Checkpoint::parse_body(&note.text).map(|cp| (cp, note)));
    let (checkpoint, note) = match parsed {
        Ok(found) => found,
        Err(e) => return vec![StoredLineProblem::Malformed(e.to_string())],
    };
    let log_key = tenant_key.with_kind(KeyKind::Ed25519);
    let mut problems = Vec::new();
    for (i, sig) in note.signatures.iter().enumerate() {
        let line = i + 1;
        let name: String = sig.name.chars().take(80).collect();
        let key_id = hex::encode(sig.key_id);
        if sig.name == log_key.name() && sig.key_id == log_key.key_id() {
            if !log_key.verify(note.text.as_bytes(), &sig.signature) {
                problems.push(StoredLineProblem::BadLogSignature { line, name, key_id });
            }
            continue;
        }
        // Usually one candidate; a removed key and a registered one could share name and
        // key id only by a 32-bit collision, and then either may have signed the line.
        let mut candidates = registered
            .iter()
            .chain(removed)
            .filter(|w| {
                w.name() == sig.name && w.with_kind(KeyKind::CosignatureV1).key_id() == sig.key_id
            })
            .peekable();
        if candidates.peek().is_none() {
            problems.push(StoredLineProblem::UnknownKey { line, name, key_id });
            continue;
        }
        let mut first_error = None;
        let verified = candidates.any(|w| match verify_cosignature(&checkpoint, sig, w) {
            Ok(_) => true,
            Err(e) => {
                first_error.get_or_insert(e);
                false
            }
        });
        if !verified {
            let reason = match first_error {
                Some(NoteError::BadCosignature { reason, .. }) => reason,
                Some(e) => e.to_string(),
                None => String::new(),
            };
            problems.push(StoredLineProblem::BadCosignature {
                line,
                name,
                key_id,
                reason,
            });
        }
    }
    problems
}

/// The registered witness a signature line belongs to: same name and the type-0x04 key id
/// of its public key.
fn registered<'a>(sig: &NoteSignature, witnesses: &'a [VerifierKey]) -> Option<&'a VerifierKey> {
    witnesses.iter().find(|w| {
        w.name() == sig.name && w.with_kind(KeyKind::CosignatureV1).key_id() == sig.key_id
    })
}

/// The registered witnesses whose cosignatures in `note` verify. A line that does not
/// verify is left out (and logged): it proves nothing, so nothing may claim it does.
fn verified_witnesses(
    checkpoint: &Checkpoint,
    note: &SignedNote,
    witnesses: &[VerifierKey],
    place: &str,
) -> Vec<Witnessed> {
    let mut out = Vec::new();
    for w in witnesses {
        let cosigner = w.with_kind(KeyKind::CosignatureV1);
        let Some(sig) = note
            .signatures
            .iter()
            .find(|s| s.name == w.name() && s.key_id == cosigner.key_id())
        else {
            continue;
        };
        match verify_cosignature(checkpoint, sig, w) {
            Ok(timestamp) => out.push(Witnessed {
                key: cosigner,
                timestamp,
            }),
            Err(e) => {
                tracing::warn!(checkpoint = %place, witness = %w, error = %e,
                    "stored cosignature does not verify; not counted")
            }
        }
    }
    out
}

impl Tenant {
    /// Reads and opens the stored checkpoint note of `size` with the tenant's key.
    fn open_stored(&self, size: u64) -> Result<(Checkpoint, SignedNote), WitnessError> {
        let name = checkpoint_name(size);
        let Some(bytes) = self.meta().get(&name).map_err(StoreError::from)? else {
            return Err(WitnessError::NotStored {
                tenant: self.id().to_owned(),
                size,
            });
        };
        let damaged = |reason: String| WitnessError::DamagedCheckpoint {
            place: self.meta().describe(&name),
            reason,
        };
        let (cp, note) =
            Checkpoint::open(&bytes, &self.verifier()).map_err(|e| damaged(e.to_string()))?;
        if cp.size != size || cp.origin != self.origin() {
            return Err(damaged(format!(
                "it is a checkpoint of {:?} at size {}",
                cp.origin, cp.size
            )));
        }
        Ok((cp, note))
    }

    /// The stored checkpoint of `size` entries with its cosignatures, and which registered
    /// witnesses' cosignatures on it verify.
    pub fn cosigned_checkpoint(&self, size: u64) -> Result<CosignedCheckpoint, WitnessError> {
        let witnesses = self.witnesses()?;
        let (checkpoint, note) = self.open_stored(size)?;
        let place = self.meta().describe(&checkpoint_name(size));
        let witnessed = verified_witnesses(&checkpoint, &note, &witnesses, &place);
        Ok(CosignedCheckpoint {
            checkpoint,
            note,
            witnesses: witnessed,
        })
    }

    /// Checks the signature lines of every stored checkpoint note by the rule of
    /// [`check_stored_note`], with the tenant's key and its registered and removed
    /// witnesses. Returns one finding per line that breaks it, as (tree size from the blob's
    /// name, where the note is stored, reason): a line by an unknown key ("signature line N by
    /// unknown key NAME+KEYID") or a witness's line that does not verify ("signature line
    /// N by witness NAME+KEYID does not verify: ...").
    ///
    /// A note that cannot be read or parsed, and a tenant's line that does not verify, are
    /// left out: verifying the checkpoint itself (opening it with the tenant's key) reports
    /// those already. Fails only if the checkpoint directory or a witness list cannot be
    /// read.
    pub fn verify_stored_cosignatures(&self) -> Result<Vec<(u64, String, String)>, WitnessError> {
        let registered = self.witnesses()?;
        let removed = self.removed_witnesses()?;
        let own = self.verifier();
        let mut findings = Vec::new();
        for (size, name) in self.checkpoint_files()? {
            let Ok(Some(bytes)) = self.meta().get(&name) else {
                continue;
            };
            let place = self.meta().describe(&name);
            for problem in check_stored_note(&own, &registered, &removed, &bytes) {
                match problem {
                    StoredLineProblem::Malformed(_) | StoredLineProblem::BadLogSignature { .. } => {
                    }
                    other => findings.push((size, place.clone(), other.to_string())),
                }
            }
        }
        Ok(findings)
    }

    /// The newest stored checkpoint that carries at least one verified cosignature of a
    /// registered witness, or `None`.
    ///
    /// Checkpoints are looked at from the newest down; a note that carries no line of a
    /// registered witness is passed over after parsing, without checking signatures. A
    /// stored note that cannot be read or opened is skipped with a warning: verification
    /// reports it, and evidence must not fail because an old file is damaged.
    pub fn newest_cosigned_checkpoint(&self) -> Result<Option<CosignedCheckpoint>, WitnessError> {
        let witnesses = self.witnesses()?;
        if witnesses.is_empty() {
            return Ok(None);
        }
        for (size, name) in self.checkpoint_files()?.into_iter().rev() {
            let place = self.meta().describe(&name);
            let Ok(Some(bytes)) = self.meta().get(&name) else {
                tracing::warn!(checkpoint = %place, "cannot read stored checkpoint; skipped");
                continue;
            };
            let Ok(note) = SignedNote::parse(&bytes) else {
                tracing::warn!(checkpoint = %place, "stored checkpoint does not parse; skipped");
                continue;
            };
            if !note
                .signatures
                .iter()
                .any(|s| registered(s, &witnesses).is_some())
            {
                continue;
            }
            let (checkpoint, note) = match self.open_stored(size) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(checkpoint = %place, error = %e, "stored checkpoint skipped");
                    continue;
                }
            };
            let witnessed = verified_witnesses(&checkpoint, &note, &witnesses, &place);
            if !witnessed.is_empty() {
                return Ok(Some(CosignedCheckpoint {
                    checkpoint,
                    note,
                    witnesses: witnessed,
                }));
            }
        }
        Ok(None)
    }

    /// Stores the witness cosignatures a checkpoint note carries.
    ///
    /// `note_bytes` is a checkpoint note as a witness returns it: the text of one of the
    /// tenant's stored checkpoints and signature lines. Each line must be the tenant's own
    /// signature, a line the stored note already has, or a cosignature by a registered
    /// witness that verifies; at least one line must be a registered witness's. A witness
    /// whose cosignature is stored already keeps it (so a repeat changes nothing). The
    /// stored note is replaced atomically, and only if something was added.
    ///
    /// Every refusal (malformed note, another log, a size not stored, another checkpoint of
    /// that size, an unknown key, a cosignature that does not verify) changes nothing.
    pub fn add_cosignatures(&self, note_bytes: &[u8]) -> Result<CosignatureOutcome, WitnessError> {
        let note = SignedNote::parse(note_bytes).map_err(WitnessError::MalformedNote)?;
        let given = Checkpoint::parse_body(&note.text).map_err(WitnessError::MalformedNote)?;
        if given.origin != self.origin() {
            return Err(WitnessError::WrongOrigin {
                given: given.origin.chars().take(80).collect(),
                expected: self.origin().to_owned(),
            });
        }
        let own = self.verifier();
        let lines: Vec<NoteSignature> = note
            .signatures
            .into_iter()
            .filter(|s| !(s.name == own.name() && s.key_id == own.key_id()))
            .collect();
        self.store_cosignatures(&given, lines)
    }

    /// Stores one cosignature line of the stored checkpoint `checkpoint` (as
    /// [`Tenant::add_cosignatures`], for a witness that sends only its line).
    pub fn add_cosignature(
        &self,
        checkpoint: &Checkpoint,
        sig: NoteSignature,
    ) -> Result<CosignatureOutcome, WitnessError> {
        if checkpoint.origin != self.origin() {
            return Err(WitnessError::WrongOrigin {
                given: checkpoint.origin.chars().take(80).collect(),
                expected: self.origin().to_owned(),
            });
        }
        self.store_cosignatures(checkpoint, vec![sig])
    }

    fn store_cosignatures(
        &self,
        given: &Checkpoint,
        lines: Vec<NoteSignature>,
    ) -> Result<CosignatureOutcome, WitnessError> {
        let _notes = self.lock_notes();
        let witnesses = self.witnesses()?;
        let (stored_cp, mut note) = self.open_stored(given.size)?;
        if stored_cp.to_body() != given.to_body() {
            return Err(WitnessError::CheckpointMismatch {
                tenant: self.id().to_owned(),
                size: given.size,
                stored_root: root_b64(&stored_cp.root),
                given_root: root_b64(&given.root),
            });
        }
        // Check every line before changing anything.
        let mut witness_lines = 0usize;
        let mut new_lines = Vec::new();
        for sig in lines {
            let Some(key) = registered(&sig, &witnesses) else {
                if note.signatures.contains(&sig) {
                    continue; // stored already (a witness registered earlier, say)
                }
                return Err(WitnessError::UnknownWitness {
                    tenant: self.id().to_owned(),
                    name: sig.name.chars().take(80).collect(),
                    key_id: hex::encode(sig.key_id),
                });
            };
            witness_lines += 1;
            verify_cosignature(&stored_cp, &sig, key).map_err(|e| {
                WitnessError::BadCosignature {
                    name: key.name().to_owned(),
                    reason: e.to_string(),
                }
            })?;
            let kept = note
                .signatures
                .iter()
                .find(|s| s.name == sig.name && s.key_id == sig.key_id)
                .is_some_and(|s| verify_cosignature(&stored_cp, s, key).is_ok());
            if !kept && !new_lines.iter().any(|s: &NoteSignature| s.name == sig.name) {
                new_lines.push(sig);
            }
        }
        if witness_lines == 0 {
            return Err(WitnessError::NoCosignature {
                tenant: self.id().to_owned(),
            });
        }
        let name = checkpoint_name(given.size);
        let place = self.meta().describe(&name);
        let mut added = Vec::new();
        if !new_lines.is_empty() {
            for sig in new_lines {
                added.push(sig.name.clone());
                // Replaces a stored line of the same key that did not verify.
                note.push_signature(sig).map_err(WitnessError::Note)?;
            }
            self.meta()
                .put(&name, &note.to_bytes(), false)
                .map_err(StoreError::from)?;
            tracing::info!(tenant = %self.id(), size = given.size, witnesses = ?added, "cosignatures stored");
        }
        let witnessed = verified_witnesses(&stored_cp, &note, &witnesses, &place);
        Ok(CosignatureOutcome {
            stored: CosignedCheckpoint {
                checkpoint: stored_cp,
                note,
                witnesses: witnessed,
            },
            added,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryDraft, Payload, PayloadKind};
    use crate::keys::SigningKeyPair;
    use crate::note::cosign;
    use crate::store::{Store, StoreOptions};
    use std::sync::Arc;

    fn append(t: &Tenant, n: usize) {
        for i in 0..n {
            let put = t.put_content(format!("doc {i}").as_bytes()).unwrap();
            t.append(
                EntryDraft {
                    actor: "test".into(),
                    kind: "document.version".into(),
                    object: String::new(),
                    payloads: vec![Payload {
                        kind: PayloadKind::Content,
                        role: "rendition".into(),
                        size: put.size,
                        digest: put.digest,
                    }],
                },
                vec![],
            )
            .unwrap();
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        store: Store,
        t: Arc<Tenant>,
        w: SigningKeyPair,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.create_tenant("bauamt").unwrap();
        let w = SigningKeyPair::generate("archiv.example/zeuge").unwrap();
        t.add_witness(&w.cosignature_verifier()).unwrap();
        append(&t, 3);
        Setup {
            _dir: dir,
            store,
            t,
            w,
        }
    }

    /// The stored note of `size` with `w`'s cosignature added, as a witness sends it.
    fn cosigned(t: &Tenant, w: &SigningKeyPair, ts: u64) -> (Checkpoint, SignedNote) {
        let note = t.checkpoint().unwrap();
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        let mut note = note;
        note.push_signature(cosign(&cp, w, ts).unwrap()).unwrap();
        (cp, note)
    }

    fn stored_bytes(t: &Tenant, size: u64) -> Vec<u8> {
        t.meta().get(&checkpoint_name(size)).unwrap().unwrap()
    }

    #[test]
    fn stores_idempotently_and_durably() {
        let s = setup();
        let (cp, note) = cosigned(&s.t, &s.w, 1_700_000_000);
        let out = s.t.add_cosignatures(&note.to_bytes()).unwrap();
        assert_eq!(out.added, vec!["archiv.example/zeuge".to_owned()]);
        assert_eq!(out.stored.witnesses.len(), 1);
        assert_eq!(out.stored.witnesses[0].timestamp, 1_700_000_000);
        assert_eq!(stored_bytes(&s.t, cp.size), note.to_bytes());
        // Again: nothing changes. A later cosignature of the same witness keeps the first.
        let again = s.t.add_cosignatures(&note.to_bytes()).unwrap();
        assert!(again.added.is_empty());
        let (_, later) = cosigned(&s.t, &s.w, 1_800_000_000);
        assert!(s
            .t
            .add_cosignatures(&later.to_bytes())
            .unwrap()
            .added
            .is_empty());
        assert_eq!(stored_bytes(&s.t, cp.size), note.to_bytes());
        // The tenant still serves it, and a new checkpoint call returns it unchanged.
        assert_eq!(s.t.checkpoint().unwrap(), note);
        assert_eq!(s.t.latest_checkpoint().unwrap().1, note);
        // Durable across reopen.
        let dir = s._dir.path().to_path_buf();
        drop(s.t);
        drop(s.store);
        let store = Store::open(
            crate::embedded::open(&dir).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.tenant("bauamt").unwrap();
        let newest = t.newest_cosigned_checkpoint().unwrap().unwrap();
        assert_eq!(newest.note, note);
        assert_eq!(newest.checkpoint, cp);
        assert_eq!(newest.witnesses[0].key, s.w.cosignature_verifier());
    }

    #[test]
    fn a_single_line_can_be_added() {
        let s = setup();
        let note = s.t.checkpoint().unwrap();
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        let sig = cosign(&cp, &s.w, 5).unwrap();
        let out = s.t.add_cosignature(&cp, sig).unwrap();
        assert_eq!(out.added.len(), 1);
        assert_eq!(out.stored.note.signatures.len(), 2);
    }

    #[test]
    fn refusals_change_nothing() {
        let s = setup();
        let note = s.t.checkpoint().unwrap();
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        let before = stored_bytes(&s.t, cp.size);
        let with = |sig: NoteSignature| {
            let mut n = note.clone();
            n.push_signature(sig).unwrap();
            n.to_bytes()
        };

        // An unknown witness.
        let stranger = SigningKeyPair::generate("archiv.example/fremd").unwrap();
        let r =
            s.t.add_cosignatures(&with(cosign(&cp, &stranger, 1).unwrap()));
        assert!(
            matches!(r, Err(WitnessError::UnknownWitness { .. })),
            "{r:?}"
        );

        // A registered witness's name with another key: the key id differs, so unknown too.
        let impostor = SigningKeyPair::generate("archiv.example/zeuge").unwrap();
        let r =
            s.t.add_cosignatures(&with(cosign(&cp, &impostor, 1).unwrap()));
        assert!(
            matches!(r, Err(WitnessError::UnknownWitness { .. })),
            "{r:?}"
        );

        // A bad signature by the registered witness.
        let mut bad = cosign(&cp, &s.w, 1).unwrap();
        bad.signature[30] ^= 1;
        let r = s.t.add_cosignatures(&with(bad.clone()));
        assert!(
            matches!(r, Err(WitnessError::BadCosignature { .. })),
            "{r:?}"
        );
        let r = s.t.add_cosignature(&cp, bad);
        assert!(
            matches!(r, Err(WitnessError::BadCosignature { .. })),
            "{r:?}"
        );

        // A cosignature of another root at the same size: not the stored checkpoint.
        let mut forked = cp.clone();
        forked.root.0[0] ^= 1;
        let mut fork_note = forked.sign(&impostor).unwrap();
        fork_note
            .push_signature(cosign(&forked, &s.w, 1).unwrap())
            .unwrap();
        let r = s.t.add_cosignatures(&fork_note.to_bytes());
        assert!(
            matches!(r, Err(WitnessError::CheckpointMismatch { .. })),
            "{r:?}"
        );

        // A size never stored, another origin, only the log's signature, garbage.
        let mut unstored = cp.clone();
        unstored.size = 2;
        let mut n = unstored.sign(&impostor).unwrap();
        n.push_signature(cosign(&unstored, &s.w, 1).unwrap())
            .unwrap();
        let r = s.t.add_cosignatures(&n.to_bytes());
        assert!(
            matches!(r, Err(WitnessError::NotStored { size: 2, .. })),
            "{r:?}"
        );
        let mut other = cp.clone();
        other.origin = "akte.local/anderes-amt".into();
        let mut n = other.sign(&impostor).unwrap();
        n.push_signature(cosign(&other, &s.w, 1).unwrap()).unwrap();
        let r = s.t.add_cosignatures(&n.to_bytes());
        assert!(matches!(r, Err(WitnessError::WrongOrigin { .. })), "{r:?}");
        let r = s.t.add_cosignatures(&note.to_bytes());
        assert!(
            matches!(r, Err(WitnessError::NoCosignature { .. })),
            "{r:?}"
        );
        let r = s.t.add_cosignatures(b"not a note");
        assert!(matches!(r, Err(WitnessError::MalformedNote(_))), "{r:?}");

        // One good and one unknown line: refused as a whole.
        let mut n = note.clone();
        n.push_signature(cosign(&cp, &s.w, 1).unwrap()).unwrap();
        n.push_signature(cosign(&cp, &stranger, 1).unwrap())
            .unwrap();
        let r = s.t.add_cosignatures(&n.to_bytes());
        assert!(
            matches!(r, Err(WitnessError::UnknownWitness { .. })),
            "{r:?}"
        );

        assert_eq!(stored_bytes(&s.t, cp.size), before, "nothing was changed");
        assert!(s.t.newest_cosigned_checkpoint().unwrap().is_none());
    }

    #[test]
    fn newest_cosigned_is_found_and_removal_withdraws_it() {
        let s = setup();
        let (cp3, note3) = cosigned(&s.t, &s.w, 10);
        s.t.add_cosignatures(&note3.to_bytes()).unwrap();
        append(&s.t, 2);
        let later = s.t.checkpoint().unwrap(); // size 5, not cosigned
        assert_eq!(Checkpoint::parse_body(&later.text).unwrap().size, 5);
        let found = s.t.newest_cosigned_checkpoint().unwrap().unwrap();
        assert_eq!(found.checkpoint, cp3);
        // The uncosigned one is served without witnesses.
        assert!(s.t.cosigned_checkpoint(5).unwrap().witnesses.is_empty());
        assert!(matches!(
            s.t.cosigned_checkpoint(4),
            Err(WitnessError::NotStored { size: 4, .. })
        ));
        // A second witness cosigns the newer one; both are then on their own checkpoints.
        let w2 = SigningKeyPair::generate("archiv.example/zweiter").unwrap();
        s.t.add_witness(&w2.verifier()).unwrap();
        let (cp5, note5) = cosigned(&s.t, &w2, 20);
        s.t.add_cosignatures(&note5.to_bytes()).unwrap();
        assert_eq!(
            s.t.newest_cosigned_checkpoint()
                .unwrap()
                .unwrap()
                .checkpoint,
            cp5
        );
        // Withdrawing trust in w2: its cosignature no longer counts.
        s.t.remove_witness(&w2.cosignature_verifier().fingerprint())
            .unwrap();
        assert_eq!(
            s.t.newest_cosigned_checkpoint()
                .unwrap()
                .unwrap()
                .checkpoint,
            cp3
        );
        // A damaged stored cosignature is not counted.
        let name = checkpoint_name(cp3.size);
        let mut damaged = SignedNote::parse(&stored_bytes(&s.t, cp3.size)).unwrap();
        damaged.signatures[1].signature[40] ^= 1;
        s.t.meta().put(&name, &damaged.to_bytes(), false).unwrap();
        assert!(s.t.newest_cosigned_checkpoint().unwrap().is_none());
        // ... and a valid one replaces it.
        let out = s.t.add_cosignatures(&note3.to_bytes()).unwrap();
        assert_eq!(out.added.len(), 1);
        assert_eq!(stored_bytes(&s.t, cp3.size), note3.to_bytes());
    }
    /// A stored note with one line changed by `f` (applied to the line's text).
    fn with_line_changed(bytes: &[u8], line: usize, f: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let split = text.rfind("\n\n").unwrap() + 2;
        let (head, block) = text.split_at(split);
        let mut lines: Vec<Vec<u8>> = block
            .trim_end_matches('\n')
            .split('\n')
            .map(|l| l.as_bytes().to_vec())
            .collect();
        f(&mut lines[line - 1]);
        let mut out = head.as_bytes().to_vec();
        for l in lines {
            out.extend_from_slice(&l);
            out.push(b'\n');
        }
        out
    }

    /// Replaces the byte at `at` (from the start of the line) by another base64 letter.
    fn swap(line: &mut [u8], at: usize) {
        line[at] = if line[at] == b'A' { b'B' } else { b'A' };
    }

    #[test]
    fn stored_notes_must_carry_only_known_lines_that_verify() {
        let s = setup();
        let (cp, note) = cosigned(&s.t, &s.w, 1_700_000_000);
        s.t.add_cosignatures(&note.to_bytes()).unwrap();
        let own = s.t.verifier();
        let reg = s.t.witnesses().unwrap();
        let bytes = stored_bytes(&s.t, cp.size);
        let check = |b: &[u8]| check_stored_note(&own, &reg, &[], b);
        assert_eq!(check(&bytes), vec![], "a clean note with a cosignature");
        assert!(s.t.verify_stored_cosignatures().unwrap().is_empty());

        // Line 2 is the witness's: "— archiv.example/zeuge <base64>".
        let name_at = "\u{2014} ".len();
        let b64_at = name_at + "archiv.example/zeuge ".len();
        // A flipped byte in the signature: the witness's line does not verify.
        let bad = with_line_changed(&bytes, 2, |l| swap(l, b64_at + 60));
        match check(&bad).as_slice() {
            [StoredLineProblem::BadCosignature { line: 2, name, .. }] => {
                assert_eq!(name, "archiv.example/zeuge")
            }
            other => panic!("{other:?}"),
        }
        // In the key id, or the name: a line by an unknown key.
        for (what, at) in [("key id", b64_at + 2), ("name", name_at + 3)] {
            let bad = with_line_changed(&bytes, 2, |l| swap(l, at));
            assert!(
                matches!(
                    check(&bad).as_slice(),
                    [StoredLineProblem::UnknownKey { line: 2, .. }]
                ),
                "{what}: {:?}",
                check(&bad)
            );
        }
        // The tenant's own line damaged: reported by the pure check ...
        let bad = with_line_changed(&bytes, 1, |l| {
            let at = l.len() - 10;
            swap(l, at)
        });
        assert!(matches!(
            check(&bad).as_slice(),
            [StoredLineProblem::BadLogSignature { line: 1, .. }]
        ));
        // ... and left to checkpoint verification by the tenant's sweep; a damaged
        // cosignature in the stored file is found there, naming size and file.
        let name = checkpoint_name(cp.size);
        s.t.meta().put(&name, &bad, false).unwrap();
        assert!(s.t.verify_stored_cosignatures().unwrap().is_empty());
        s.t.meta()
            .put(
                &name,
                &with_line_changed(&bytes, 2, |l| swap(l, b64_at + 60)),
                false,
            )
            .unwrap();
        let found = s.t.verify_stored_cosignatures().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].0, &found[0].1),
            (cp.size, &s.t.meta().describe(&name))
        );
        assert!(
            found[0].2.contains("witness archiv.example/zeuge+"),
            "{found:?}"
        );
        assert_eq!(check(b"not a note").len(), 1);

        // A line by a key never registered.
        let stranger = SigningKeyPair::generate("archiv.example/fremd").unwrap();
        let mut n = SignedNote::parse(&bytes).unwrap();
        n.push_signature(cosign(&cp, &stranger, 7).unwrap())
            .unwrap();
        match check(&n.to_bytes()).as_slice() {
            [StoredLineProblem::UnknownKey {
                line: 3,
                name,
                key_id,
            }] => {
                assert_eq!(name, "archiv.example/fremd");
                assert_eq!(
                    key_id,
                    &hex::encode(stranger.cosignature_verifier().key_id())
                );
                assert!(check(&n.to_bytes())[0]
                    .to_string()
                    .starts_with("signature line 3 by unknown key archiv.example/fremd+"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_removed_witness_keeps_its_lines_verifiable() {
        let s = setup();
        let (cp, note) = cosigned(&s.t, &s.w, 1_700_000_000);
        s.t.add_cosignatures(&note.to_bytes()).unwrap();
        s.t.remove_witness(&s.w.cosignature_verifier().fingerprint())
            .unwrap();
        assert!(s.t.witnesses().unwrap().is_empty());
        assert!(s.t.verify_stored_cosignatures().unwrap().is_empty());
        let own = s.t.verifier();
        let removed = s.t.removed_witnesses().unwrap();
        let bytes = stored_bytes(&s.t, cp.size);
        assert!(check_stored_note(&own, &[], &removed, &bytes).is_empty());
        // Without the removed list the line would be unknown.
        assert!(matches!(
            check_stored_note(&own, &[], &[], &bytes).as_slice(),
            [StoredLineProblem::UnknownKey { line: 2, .. }]
        ));
        // The removed key is not used for new cosignatures or evidence.
        assert!(s.t.newest_cosigned_checkpoint().unwrap().is_none());
        let r = s.t.add_cosignatures(&cosigned(&s.t, &s.w, 9).1.to_bytes());
        assert!(
            matches!(r, Err(WitnessError::UnknownWitness { .. })),
            "{r:?}"
        );
        // Registered again: the union verifies (the key is in both lists).
        s.t.add_witness(&s.w.verifier()).unwrap();
        assert!(s.t.verify_stored_cosignatures().unwrap().is_empty());
    }
}
