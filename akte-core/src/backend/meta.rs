//! The metadata seam: small named blobs of a tenant or of the installation.
//!
//! A tenant keeps here what is neither journal, index nor content: its checkpoint origin,
//! its signing and verifier keys, signed checkpoints with witness cosignatures, the list
//! of registered witnesses, destruction records and markers of destructions in progress.
//! Names are paths of lower-level segments separated by `/` (`checkpoints/…​.note`); each
//! segment holds `A-Z a-z 0-9 . _ -` and does not start with a dot.

use crate::backend::{FaultKind, IoFailure};

/// Errors of a [`MetaStore`].
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] IoFailure),
    /// A stored blob may not be used as it is (a secret others may read).
    #[error("{place}: {reason}")]
    Refused {
        /// Where it is stored.
        place: String,
        /// Why it is refused.
        reason: String,
    },
    /// A name that is not a valid blob name.
    #[error("invalid blob name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl MetaError {
    /// What kind of failure it is.
    pub fn kind(&self) -> FaultKind {
        match self {
            MetaError::Io(e) => e.kind(),
            MetaError::InvalidName { .. } => FaultKind::Other,
            MetaError::Refused { .. } => FaultKind::Corrupt,
        }
    }
}

/// Checks a blob name (see the module documentation).
pub fn check_name(name: &str) -> Result<(), MetaError> {
    let bad = |reason| MetaError::InvalidName {
        name: name.chars().take(120).collect(),
        reason,
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("must be 1 to 255 characters long"));
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return Err(bad("has an empty segment"));
        }
        if segment.starts_with('.') {
            return Err(bad("has a segment starting with a dot"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("may only hold A-Z, a-z, 0-9, '.', '_', '-' and '/'"));
        }
    }
    Ok(())
}

/// Small named blobs, each replaced atomically and durably.
pub trait MetaStore: Send + Sync {
    /// The blob's bytes, if it exists.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError>;

    /// A secret blob's bytes (one written with `secret`), refused if the storage shows
    /// that others than the service could read it.
    fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.get(name)
    }

    /// Creates or replaces the blob, atomically (readers see the old or the new bytes,
    /// after a crash too) and durably on return. A `secret` blob is readable by the
    /// service only (a signing key).
    fn put(&self, name: &str, bytes: &[u8], secret: bool) -> Result<(), MetaError>;

    /// Creates the blob unless it exists, and returns the bytes stored afterwards (the
    /// given ones, or those found). A backend shared by several processes makes this
    /// atomic, so that processes starting together agree on one value (a key they
    /// generate each).
    fn put_if_absent(&self, name: &str, bytes: &[u8], secret: bool) -> Result<Vec<u8>, MetaError> {
        let found = if secret {
            self.get_secret(name)?
        } else {
            self.get(name)?
        };
        match found {
            Some(existing) => Ok(existing),
            None => {
                self.put(name, bytes, secret)?;
                Ok(bytes.to_vec())
            }
        }
    }

    /// Replaces the blob only if it holds `expected` (`None`: only if it does not exist);
    /// returns whether it did. A backend shared by several processes makes this atomic,
    /// so that read-modify-write cycles of different processes never lose an update.
    fn compare_and_put(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        bytes: &[u8],
        secret: bool,
    ) -> Result<bool, MetaError> {
        let found = if secret {
            self.get_secret(name)?
        } else {
            self.get(name)?
        };
        if found.as_deref() != expected {
            return Ok(false);
        }
        self.put(name, bytes, secret)?;
        Ok(true)
    }

    /// Removes the blob durably; returns whether it existed.
    fn remove(&self, name: &str) -> Result<bool, MetaError>;

    /// Names of the blobs under `prefix` (a directory-like prefix ending in `/`, or empty
    /// for all), in byte order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, MetaError>;

    /// The blobs under `prefix` (as [`MetaStore::list`]) with their bytes, in byte order
    /// of their names; a blob removed between listing and reading is left out. Backends
    /// that pay a round trip per read answer this in one.
    fn get_all(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let mut out = Vec::new();
        for name in self.list(prefix)? {
            if let Some(bytes) = self.get(&name)? {
                out.push((name, bytes));
            }
        }
        Ok(out)
    }

    /// Where the blob is stored, as the backend names it (for messages).
    fn describe(&self, name: &str) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in [
            "ORIGIN",
            "keys/checkpoint.key",
            "checkpoints/00000000000000000001.note",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../x", ".hidden", "a/.b", "a b", "ü",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
