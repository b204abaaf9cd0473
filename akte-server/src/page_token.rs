//! Signed page tokens.
//!
//! Every `next_page_token` akted hands out is the listing's own cursor (from the records
//! model, or a position of the server's) sealed with an HMAC-SHA256 under a key of this
//! installation, bound to the method and to the request fields a page must repeat (parent,
//! filter, start). A token that was altered, made up, taken from another listing or sent
//! with other fields is refused (INVALID_ARGUMENT, reason INVALID_PAGE_TOKEN) before its
//! cursor is looked at, so cursors never have to defend themselves against forgery.
//!
//! The key is 64 random bytes in `DATA_DIR/page-token.key` (mode 0600), created on the
//! first start. Deleting it invalidates the tokens handed out so far, nothing else.

use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ApiError;

/// File of the installation's page token key, in the data directory.
pub const KEY_FILE: &str = "page-token.key";
/// Bytes of the key: SHA-256's block size, the longest key HMAC uses as it is.
const KEY_LEN: usize = 64;
/// Format byte of a token.
const VERSION: u8 = 1;
/// Bytes of the MAC kept in a token (128 bits: forging one is hopeless).
const TAG_LEN: usize = 16;

/// Errors loading or creating the key.
#[derive(Debug, thiserror::Error)]
pub enum PageTokenError {
    /// The key file could not be read or written.
    #[error("page token key {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold 64 bytes.
    #[error("page token key {path}: holds {len} bytes, expected 64; delete it to make a new one (handed-out page tokens stop working)")]
    Length {
        /// The file.
        path: String,
        /// Its length.
        len: usize,
    },
}

/// What a token is bound to: the method and the request fields every page must repeat.
#[derive(Debug, Clone)]
pub struct Scope(Vec<u8>);

impl Scope {
    /// A scope of `method` (e.g. `ListHolds`) and the values that must not change between
    /// pages. Values are length-prefixed, so no two lists of values share an encoding.
    pub fn new(method: &str, fields: &[&str]) -> Scope {
        let mut out = Vec::with_capacity(64);
        for part in std::iter::once(method).chain(fields.iter().copied()) {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        Scope(out)
    }
}

/// The key that seals and opens page tokens.
#[derive(Clone)]
pub struct PageTokens {
    mac: Hmac<Sha256>,
    #[cfg(test)]
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

fn invalid() -> ApiError {
    ApiError::InvalidPageToken
}

impl PageTokens {
    /// Tokens sealed with `key` (for tests and embedding).
    pub fn with_key(key: [u8; KEY_LEN]) -> PageTokens {
        PageTokens {
            mac: <Hmac<Sha256> as KeyInit>::new(&key.into()),
            #[cfg(test)]
            key,
        }
    }

    /// Loads the key of the data directory, creating it on the first start.
    pub fn load_or_create(data_dir: &Path) -> Result<PageTokens, PageTokenError> {
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| PageTokenError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                    PageTokenError::Length {
                        path: shown.clone(),
                        len: bytes.len(),
                    }
                })?;
                return Ok(PageTokens::with_key(key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        // The store's process lock keeps a second server off this directory, so no other
        // writer races this one; the write is atomic, so a crash leaves no half key.
        akte_core::embedded::fsutil::write_file_atomic(&path, &key, 0o600)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        Ok(PageTokens::with_key(key))
    }

    /// Loads the installation's key from a store every instance shares (the distributed
    /// backend), creating it atomically on the first start of any instance, so that a
    /// token one instance issued is good at every other.
    pub fn load_or_create_shared(
        meta: &dyn akte_core::backend::MetaStore,
    ) -> Result<PageTokens, PageTokenError> {
        let shown = meta.describe(KEY_FILE);
        let io = |e: String| PageTokenError::Io {
            path: shown.clone(),
            source: std::io::Error::other(e),
        };
        let mut fresh = [0u8; KEY_LEN];
        getrandom::fill(&mut fresh).map_err(|e| io(e.to_string()))?;
        let stored = meta
            .put_if_absent(KEY_FILE, &fresh, true)
            .map_err(|e| io(e.to_string()))?;
        fresh.fill(0);
        let key =
            <[u8; KEY_LEN]>::try_from(stored.as_slice()).map_err(|_| PageTokenError::Length {
                path: shown.clone(),
                len: stored.len(),
            })?;
        Ok(PageTokens::with_key(key))
    }

    fn tag(&self, scope: &Scope, cursor: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(&(scope.0.len() as u64).to_be_bytes());
        mac.update(&scope.0);
        mac.update(cursor);
        mac.finalize().into_bytes().into()
    }

    /// The token of `cursor` in `scope`; an empty cursor (no further page) stays empty.
    pub fn seal(&self, scope: &Scope, cursor: &[u8]) -> String {
        if cursor.is_empty() {
            return String::new();
        }
        let tag = self.tag(scope, cursor);
        let mut raw = Vec::with_capacity(1 + TAG_LEN + cursor.len());
        raw.push(VERSION);
        raw.extend_from_slice(&tag[..TAG_LEN]);
        raw.extend_from_slice(cursor);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// The cursor of a token handed out for `scope`; empty for an empty token (the first
    /// page). Anything else is INVALID_PAGE_TOKEN.
    pub fn open(&self, scope: &Scope, token: &str) -> Result<Vec<u8>, ApiError> {
        if token.is_empty() {
            return Ok(Vec::new());
        }
        if token.len() > 4096 {
            return Err(invalid());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        if raw.len() <= 1 + TAG_LEN || raw[0] != VERSION {
            return Err(invalid());
        }
        let (given, cursor) = raw[1..].split_at(TAG_LEN);
        let want = self.tag(scope, cursor);
        // Constant time, so that timing tells nothing about how close a forgery came.
        let diff = given
            .iter()
            .zip(&want[..TAG_LEN])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(invalid());
        }
        Ok(cursor.to_vec())
    }

    /// Seals a cursor that is a UTF-8 string (the records model's tokens).
    pub fn seal_str(&self, scope: &Scope, cursor: Option<&str>) -> String {
        self.seal(scope, cursor.unwrap_or_default().as_bytes())
    }

    /// Opens a token whose cursor is a UTF-8 string.
    pub fn open_str(&self, scope: &Scope, token: &str) -> Result<String, ApiError> {
        String::from_utf8(self.open(scope, token)?).map_err(|_| invalid())
    }

    /// Seals a numeric position (a sequence number or an index into a sorted listing).
    pub fn seal_u64(&self, scope: &Scope, position: Option<u64>) -> String {
        match position {
            Some(p) => self.seal(scope, &p.to_be_bytes()),
            None => String::new(),
        }
    }

    /// Opens a token of a numeric position; `None` for the first page.
    pub fn open_u64(&self, scope: &Scope, token: &str) -> Result<Option<u64>, ApiError> {
        let cursor = self.open(scope, token)?;
        if cursor.is_empty() {
            return Ok(None);
        }
        <[u8; 8]>::try_from(cursor.as_slice())
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::with_key([7; KEY_LEN])
    }

    #[test]
    fn round_trips_and_binds_to_scope() {
        let t = tokens();
        let s = Scope::new("ListFiles", &["tenants/a/planUnits/x"]);
        let tok = t.seal(&s, b"cursor");
        assert_eq!(t.open(&s, &tok).unwrap(), b"cursor");
        assert_eq!(t.open(&s, "").unwrap(), b"");
        for other in [
            Scope::new("ListCases", &["tenants/a/planUnits/x"]),
            Scope::new("ListFiles", &["tenants/b/planUnits/x"]),
            Scope::new("ListFiles", &["tenants/a/planUnits/x", ""]),
        ] {
            assert!(matches!(
                t.open(&other, &tok),
                Err(ApiError::InvalidPageToken)
            ));
        }
        // Another installation's key.
        assert!(PageTokens::with_key([8; KEY_LEN]).open(&s, &tok).is_err());
        assert_eq!(t.seal(&s, b""), "");
    }

    #[test]
    fn every_altered_character_is_refused() {
        let t = tokens();
        let s = Scope::new("ListHolds", &["tenants/a", "active = true"]);
        let tok = t.seal_u64(&s, Some(42));
        assert_eq!(t.open_u64(&s, &tok).unwrap(), Some(42));
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in 0..tok.len() {
            for c in alphabet.chars() {
                let mut changed: Vec<char> = tok.chars().collect();
                if changed[i] == c {
                    continue;
                }
                changed[i] = c;
                let changed: String = changed.into_iter().collect();
                // Some characters differ only in bits base64 drops at the end; those decode
                // to the same bytes and are the same token.
                let same = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&changed)
                    .ok()
                    == base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(&tok)
                        .ok();
                assert_eq!(t.open_u64(&s, &changed).is_ok(), same, "{changed}");
            }
        }
        for junk in ["x", "!!!", "AQ", &"A".repeat(5000)] {
            assert!(t.open(&s, junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = PageTokens::load_or_create(dir.path()).unwrap();
        let b = PageTokens::load_or_create(dir.path()).unwrap();
        assert_eq!(a.key, b.key);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            PageTokens::load_or_create(dir.path()),
            Err(PageTokenError::Length { len: 5, .. })
        ));
    }
}
