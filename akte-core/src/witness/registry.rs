//! The witnesses a tenant trusts: `tenants/<id>/keys/witnesses`.
//!
//! The file holds one verifier key per line, each ending in LF, in the order they were
//! registered. akte writes every key with type 0x04 (`cosignature/v1`) in canonical form;
//! a key given with type 0x01 is the same public key and is converted. The file is
//! replaced atomically (temporary file, fsync, rename, fsync of the directory), so a
//! crash leaves either the old or the new list. No file means no witnesses.
//!
//! Only an administrator registers a witness: a registered key's cosignatures are stored
//! in the tenant's checkpoint notes and listed in the evidence of every transfer.
//!
//! Removing a witness moves its key to `keys/witnesses-removed` (same line format, also
//! replaced atomically). A removed key is never used for evidence or to accept new
//! cosignatures; it is kept only so that the lines it signed earlier, which stay in the
//! stored notes, can still be verified: a stored note may carry lines of the tenant's key
//! and of registered-or-removed witnesses only, and every one must verify
//! ([`super::stored::check_stored_note`]). A removed key may be registered again; it then
//! appears in both lists, and verification uses their union.

use crate::keys::{KeyKind, VerifierKey};
use crate::store::Tenant;

use super::WitnessError;
use crate::store::StoreError;

/// Name of the tenant's blob holding the witness list.
pub const WITNESSES_FILE: &str = "keys/witnesses";

/// Name of the tenant's blob holding the list of removed witnesses.
pub const REMOVED_WITNESSES_FILE: &str = "keys/witnesses-removed";

/// Most witnesses one tenant may register. Each adds a line to every cosigned checkpoint
/// note; 32 keeps notes far below the signed-note limit of 100 lines while allowing more
/// witnesses than any agency plausibly needs.
pub const MAX_WITNESSES: usize = 32;

/// Largest witness list read (32 keys are under 5 KiB); a larger file is not one akte
/// wrote.
const MAX_LIST_BYTES: u64 = 64 * 1024;

/// Largest list of removed witnesses read. It only grows (by one line per removal of a key
/// not listed yet, each an administrator's act); 1 MiB holds thousands of keys.
const MAX_REMOVED_LIST_BYTES: u64 = 1024 * 1024;

/// Which of the two lists: the registered witnesses, or the removed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Registered,
    Removed,
}

impl List {
    fn name(self) -> &'static str {
        match self {
            List::Registered => WITNESSES_FILE,
            List::Removed => REMOVED_WITNESSES_FILE,
        }
    }

    fn max_bytes(self) -> u64 {
        match self {
            List::Registered => MAX_LIST_BYTES,
            List::Removed => MAX_REMOVED_LIST_BYTES,
        }
    }
}

/// Parses a witness list strictly: every line a canonical type-0x04 verifier key. In the
/// list of registered witnesses no name or public key appears twice and there are at most
/// [`MAX_WITNESSES`]; in the list of removed witnesses only the same key must not appear
/// twice (a name may have had several keys over time). `place` is only for errors.
fn parse_list(bytes: &[u8], place: &str, list: List) -> Result<Vec<VerifierKey>, WitnessError> {
    let damaged = |line: usize, reason: String| WitnessError::DamagedList {
        place: place.to_owned(),
        line,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        damaged(line, "not UTF-8".to_owned())
    })?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(damaged(
            text.lines().count(),
            "the last line does not end in LF".to_owned(),
        ));
    };
    let mut keys: Vec<VerifierKey> = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let key = VerifierKey::parse(line).map_err(|e| damaged(i + 1, e.to_string()))?;
        if key.kind() != KeyKind::CosignatureV1 || key.to_string() != line {
            return Err(damaged(
                i + 1,
                "not a canonical cosignature/v1 (type 0x04) verifier key".to_owned(),
            ));
        }
        let repeats = |k: &&VerifierKey| match list {
            List::Registered => {
                k.name() == key.name() || k.public_key_bytes() == key.public_key_bytes()
            }
            List::Removed => **k == key,
        };
        if let Some(prev) = keys.iter().find(repeats) {
            return Err(damaged(
                i + 1,
                format!("the key repeats the name or public key of {prev}"),
            ));
        }
        keys.push(key);
    }
    if list == List::Registered && keys.len() > MAX_WITNESSES {
        return Err(damaged(
            keys.len(),
            format!("more than {MAX_WITNESSES} witnesses"),
        ));
    }
    Ok(keys)
}

fn format_list(keys: &[VerifierKey]) -> String {
    keys.iter().map(|k| format!("{k}\n")).collect()
}

/// Reads one of the lists; no blob is an empty list.
fn read_list(tenant: &Tenant, list: List) -> Result<Vec<VerifierKey>, WitnessError> {
    let place = tenant.meta().describe(list.name());
    let Some(bytes) = tenant.meta().get(list.name()).map_err(StoreError::from)? else {
        return Ok(Vec::new());
    };
    let max = list.max_bytes();
    if bytes.len() as u64 > max {
        return Err(WitnessError::DamagedList {
            place,
            line: 1,
            reason: format!("larger than {max} bytes"),
        });
    }
    parse_list(&bytes, &place, list)
}

/// Replaces one of the lists atomically.
fn write_list(tenant: &Tenant, list: List, keys: &[VerifierKey]) -> Result<(), WitnessError> {
    tenant
        .meta()
        .put(list.name(), format_list(keys).as_bytes(), false)
        .map_err(StoreError::from)?;
    Ok(())
}

impl Tenant {
    /// The tenant's registered witnesses (type-0x04 verifier keys), in registration order.
    pub fn witnesses(&self) -> Result<Vec<VerifierKey>, WitnessError> {
        read_list(self, List::Registered)
    }

    /// The witnesses removed from the tenant (type-0x04 verifier keys), in the order of
    /// their first removal; a key registered again is listed here too.
    ///
    /// Only for verifying the lines they signed before their removal, which stay in the
    /// stored notes: a removed key is never evidence, and never accepted for new
    /// cosignatures.
    pub fn removed_witnesses(&self) -> Result<Vec<VerifierKey>, WitnessError> {
        read_list(self, List::Removed)
    }

    /// Registers a witness. The key may be given with type 0x01 or 0x04; it is stored as
    /// type 0x04. Returns the stored key and whether it was new: registering the same key
    /// under the same name again changes nothing.
    ///
    /// Refuses the tenant's own key (or its origin as the name), a name registered with
    /// another key, a key registered under another name, and more than [`MAX_WITNESSES`].
    pub fn add_witness(&self, key: &VerifierKey) -> Result<(VerifierKey, bool), WitnessError> {
        let key = key.with_kind(KeyKind::CosignatureV1);
        let own = self.verifier();
        if key.public_key_bytes() == own.public_key_bytes() || key.name() == self.origin() {
            return Err(WitnessError::OwnKey {
                key: key.to_string(),
                origin: self.origin().to_owned(),
            });
        }
        let _notes = self.lock_notes();
        let mut keys = self.witnesses()?;
        if keys.contains(&key) {
            return Ok((key, false));
        }
        if let Some(existing) = keys.iter().find(|k| k.name() == key.name()) {
            return Err(WitnessError::NameTaken {
                name: key.name().to_owned(),
                existing: existing.to_string(),
            });
        }
        if let Some(existing) = keys
            .iter()
            .find(|k| k.public_key_bytes() == key.public_key_bytes())
        {
            return Err(WitnessError::KeyTaken {
                existing: existing.name().to_owned(),
            });
        }
        if keys.len() >= MAX_WITNESSES {
            return Err(WitnessError::TooMany {
                tenant: self.id().to_owned(),
                limit: MAX_WITNESSES,
            });
        }
        keys.push(key.clone());
        write_list(self, List::Registered, &keys)?;
        tracing::info!(tenant = %self.id(), witness = %key, "witness registered");
        Ok((key, true))
    }

    /// Removes the witness whose public key has `fingerprint` (lower-case hex SHA-256 of
    /// the public key, [`VerifierKey::fingerprint`]) and returns its key.
    ///
    /// Its cosignatures stay in the stored notes (they remain valid signatures), but
    /// evidence no longer lists it and new cosignatures of it are refused: this is how an
    /// administrator withdraws trust from a compromised or retired witness key. The key is
    /// added to `keys/witnesses-removed` ([`Tenant::removed_witnesses`]) so that its stored
    /// lines can still be verified.
    pub fn remove_witness(&self, fingerprint: &str) -> Result<VerifierKey, WitnessError> {
        let _notes = self.lock_notes();
        let mut keys = self.witnesses()?;
        let Some(at) = keys.iter().position(|k| k.fingerprint() == fingerprint) else {
            return Err(WitnessError::NoSuchWitness {
                tenant: self.id().to_owned(),
                fingerprint: fingerprint.chars().take(80).collect(),
            });
        };
        let removed = keys.remove(at);
        // Crash order: the removed list is written (and fsynced) before the active list.
        // A crash between the two leaves the key in both lists: still registered, its
        // lines verifiable, and repeating the removal finishes it (the key is not listed
        // twice). The other order could leave the key in neither list, and its valid
        // stored cosignatures would then be lines of an unknown key, reported as damage.
        let mut gone = self.removed_witnesses()?;
        if !gone.contains(&removed) {
            gone.push(removed.clone());
            write_list(self, List::Removed, &gone)?;
        }
        write_list(self, List::Registered, &keys)?;
        tracing::info!(tenant = %self.id(), witness = %removed, "witness removed");
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKeyPair;
    use crate::store::{Store, StoreOptions};

    fn witness(name: &str) -> SigningKeyPair {
        SigningKeyPair::generate(name).unwrap()
    }

    #[test]
    fn registers_durably_and_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let w1 = witness("archiv.example/w1");
        let w2 = witness("archiv.example/w2");
        {
            let store = Store::open(
                crate::embedded::open(dir.path()).unwrap(),
                StoreOptions::default(),
            )
            .unwrap();
            let t = store.create_tenant("bauamt").unwrap();
            assert!(t.witnesses().unwrap().is_empty());
            // Given as type 0x01, stored as type 0x04.
            let (k, added) = t.add_witness(&w1.verifier()).unwrap();
            assert!(added);
            assert_eq!(k, w1.cosignature_verifier());
            let (_, again) = t.add_witness(&w1.cosignature_verifier()).unwrap();
            assert!(!again, "the same key twice is no change");
            t.add_witness(&w2.cosignature_verifier()).unwrap();
        }
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.tenant("bauamt").unwrap();
        assert_eq!(
            t.witnesses().unwrap(),
            vec![w1.cosignature_verifier(), w2.cosignature_verifier()]
        );
        let text = String::from_utf8(t.meta().get(WITNESSES_FILE).unwrap().unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                "{}\n{}\n",
                w1.cosignature_verifier(),
                w2.cosignature_verifier()
            )
        );
        let removed = t
            .remove_witness(&w1.cosignature_verifier().fingerprint())
            .unwrap();
        assert_eq!(removed, w1.cosignature_verifier());
        assert_eq!(t.witnesses().unwrap(), vec![w2.cosignature_verifier()]);
        assert_eq!(
            t.removed_witnesses().unwrap(),
            vec![w1.cosignature_verifier()]
        );
        assert!(matches!(
            t.remove_witness(&w1.cosignature_verifier().fingerprint()),
            Err(WitnessError::NoSuchWitness { .. })
        ));
    }

    #[test]
    fn removed_witnesses_are_kept_once_and_may_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.create_tenant("bauamt").unwrap();
        assert!(
            t.removed_witnesses().unwrap().is_empty(),
            "no file, no keys"
        );
        let w1 = witness("archiv.example/w1");
        let fp = w1.cosignature_verifier().fingerprint();
        t.add_witness(&w1.verifier()).unwrap();
        t.remove_witness(&fp).unwrap();
        // Registered again (allowed), then removed again: listed once.
        t.add_witness(&w1.verifier()).unwrap();
        assert_eq!(t.witnesses().unwrap(), vec![w1.cosignature_verifier()]);
        assert_eq!(
            t.removed_witnesses().unwrap(),
            vec![w1.cosignature_verifier()]
        );
        t.remove_witness(&fp).unwrap();
        // Another key under the same name, removed too: both are kept.
        let w1b = witness("archiv.example/w1");
        t.add_witness(&w1b.verifier()).unwrap();
        t.remove_witness(&w1b.cosignature_verifier().fingerprint())
            .unwrap();
        assert!(t.witnesses().unwrap().is_empty());
        assert_eq!(
            t.removed_witnesses().unwrap(),
            vec![w1.cosignature_verifier(), w1b.cosignature_verifier()]
        );
        let text =
            String::from_utf8(t.meta().get(REMOVED_WITNESSES_FILE).unwrap().unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                "{}\n{}\n",
                w1.cosignature_verifier(),
                w1b.cosignature_verifier()
            )
        );
        // The same key twice in the removed list is damage.
        let p = "keys/witnesses-removed";
        let line = format!("{}\n", w1.cosignature_verifier());
        assert!(matches!(
            parse_list(format!("{line}{line}").as_bytes(), p, List::Removed),
            Err(WitnessError::DamagedList { line: 2, .. })
        ));
    }

    #[test]
    fn refuses_conflicts_and_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            crate::embedded::open(dir.path()).unwrap(),
            StoreOptions::default(),
        )
        .unwrap();
        let t = store.create_tenant("bauamt").unwrap();
        let w = witness("archiv.example/w1");
        t.add_witness(&w.verifier()).unwrap();
        let before = t.witnesses().unwrap();
        // Another key under the same name.
        let other = witness("archiv.example/w1");
        assert!(matches!(
            t.add_witness(&other.verifier()),
            Err(WitnessError::NameTaken { .. })
        ));
        // The same key under another name.
        let renamed = VerifierKey::from_public_key(
            "archiv.example/w9",
            KeyKind::CosignatureV1,
            &w.public_key_bytes(),
        )
        .unwrap();
        assert!(matches!(
            t.add_witness(&renamed),
            Err(WitnessError::KeyTaken { .. })
        ));
        // The tenant's own key, and a key named like the log.
        assert!(matches!(
            t.add_witness(&t.verifier()),
            Err(WitnessError::OwnKey { .. })
        ));
        let named_like_log = witness(t.origin());
        assert!(matches!(
            t.add_witness(&named_like_log.verifier()),
            Err(WitnessError::OwnKey { .. })
        ));
        assert_eq!(t.witnesses().unwrap(), before, "nothing changed");
        // The limit.
        for i in 1..MAX_WITNESSES {
            t.add_witness(&witness(&format!("archiv.example/x{i}")).verifier())
                .unwrap();
        }
        assert!(matches!(
            t.add_witness(&witness("archiv.example/one-more").verifier()),
            Err(WitnessError::TooMany { .. })
        ));
        assert_eq!(t.witnesses().unwrap().len(), MAX_WITNESSES);
    }

    #[test]
    fn damaged_lists_are_refused_naming_the_line() {
        let w = witness("archiv.example/w1");
        let good = format!("{}\n", w.cosignature_verifier());
        let p = "keys/witnesses";
        assert_eq!(
            parse_list(good.as_bytes(), p, List::Registered)
                .unwrap()
                .len(),
            1
        );
        assert!(parse_list(b"", p, List::Registered).unwrap().is_empty());
        let cases = [
            (good.trim_end().to_owned(), 1),
            (format!("{good}{good}"), 2),
            (format!("{good}{}\n", w.verifier()), 2),
            (format!("{good}not a key\n"), 2),
            (format!("{good}\n"), 2),
        ];
        for (text, line) in cases {
            match parse_list(text.as_bytes(), p, List::Registered) {
                Err(WitnessError::DamagedList { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(parse_list(&[0xff, b'\n'], p, List::Registered).is_err());
    }
}
