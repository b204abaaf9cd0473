//! Authentication and authorisation: bearer tokens known only by their SHA-256, each
//! mapping to a principal, one tenant (or all, `*`) and roles.
//!
//! Tokens come from two places: the configuration file (`[[tokens]]` with `sha256`, never
//! the token itself) and the token file `DATA_DIR/tokens.json`, written atomically by the
//! API's CreateToken and DeleteToken. On a first start with no token anywhere, one admin
//! token for all tenants is created and written to `DATA_DIR/bootstrap-token` (mode 0600).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use akte_core::backend::MetaStore;
use akte_core::embedded::fsutil;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Name of the token file in the data directory.
pub const TOKEN_FILE: &str = "tokens.json";
/// Name of the bootstrap token file in the data directory.
pub const BOOTSTRAP_FILE: &str = "bootstrap-token";
/// Prefix of generated tokens (makes them easy to recognise in leaked-secret scans).
pub const TOKEN_PREFIX: &str = "akte_";

// Roles, and which operations each may do, are the records model's rules (one table in
// `akte_core::access`); tokens carry roles.
pub use akte_core::access::{Operation, Role};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name, recorded as the actor of its changes.
    pub name: String,
    /// Its tenant; `None` for all tenants.
    pub tenant: Option<String>,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Organisational units (ids) its token is bound to: it acts in them as a member
    /// does, beside the units the principal is a member of.
    pub units: Vec<String>,
}

impl Principal {
    /// Whether the principal may see the tenant at all.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// Whether one of its roles may do `op` (the table in `akte_core::access`).
    pub fn may(&self, op: Operation) -> bool {
        self.roles.iter().any(|r| r.may(op))
    }

    /// Whether it is an administrator of all tenants.
    pub fn is_global_admin(&self) -> bool {
        self.tenant.is_none() && self.roles.contains(&Role::Admin)
    }
}

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token file or configured token is malformed.
    #[error("invalid token configuration: {0}")]
    Config(String),
    /// The token file could not be read or written.
    #[error("token file {path}: {reason}")]
    File {
        /// Where it is stored.
        path: String,
        /// What failed.
        reason: String,
    },
    /// No randomness for a new token.
    #[error("no randomness for a new token: {0}")]
    Random(String),
    /// A field of a new token is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No such token.
    #[error("token {0} not found")]
    NotFound(String),
}

/// A token as configured or stored: its hash and what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Identifier (API tokens: random hex; configured tokens: `config-N`).
    #[serde(default)]
    pub id: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
    /// The principal it acts as.
    pub principal: String,
    /// Tenant id or `*`.
    pub tenant: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Organisational units (ids, in its tenant) the token is bound to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// When it was created (API tokens).
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    /// Free description.
    #[serde(default)]
    pub description: String,
    /// From this moment on the token is refused; `None`: it does not expire.
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

impl TokenRecord {
    fn principal(&self) -> Principal {
        Principal {
            name: self.principal.clone(),
            tenant: (self.tenant != "*").then(|| self.tenant.clone()),
            roles: self.roles.clone(),
            units: self.units.clone(),
        }
    }

    fn check(&self) -> Result<[u8; 32], AuthError> {
        validate_principal(&self.principal)?;
        if self.tenant != "*" {
            akte_core::store::validate_tenant_id(&self.tenant).map_err(|e| AuthError::Invalid {
                field: "tenant",
                reason: e.to_string(),
            })?;
        }
        if !self.units.is_empty() && self.tenant == "*" {
            return Err(AuthError::Invalid {
                field: "units",
                reason: format!(
                    "token {:?} is for all tenants; units belong to one tenant",
                    self.principal
                ),
            });
        }
        if let Some(u) = self.units.iter().find(|u| !is_uuid(u)) {
            return Err(AuthError::Invalid {
                field: "units",
                reason: format!("{u:?} is not a unit id (a UUID)"),
            });
        }
        if self.roles.is_empty() {
            return Err(AuthError::Invalid {
                field: "roles",
                reason: format!("token {:?} has no role", self.principal),
            });
        }
        let raw = hex::decode(&self.sha256)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| AuthError::Invalid {
                field: "sha256",
                reason: format!(
                    "token of {:?}: sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)",
                    self.principal
                ),
            })?;
        Ok(raw)
    }
}

/// Whether `s` is a UUID in its hyphenated form (what unit ids look like).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Checks a principal name: 1 to 128 printable ASCII characters without spaces.
pub fn validate_principal(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Invalid {
            field: "principal",
            reason: "must be 1 to 128 printable ASCII characters without spaces".into(),
        });
    }
    Ok(())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

/// The SHA-256 of a token, as configured.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token with this hash is known.
    #[error("unknown token")]
    Unknown,
    /// The token is known but expired.
    #[error("the token expired at {0}")]
    Expired(DateTime<Utc>),
}

/// A known token: what it grants and until when.
#[derive(Debug)]
struct Known {
    principal: Arc<Principal>,
    expires: Option<DateTime<Utc>>,
}

/// The stored tokens in the blob's bytes (none if there is no blob).
fn parse_stored(bytes: Option<&[u8]>) -> Result<Vec<TokenRecord>, String> {
    match bytes {
        Some(bytes) => serde_json::from_slice::<TokenFile>(bytes)
            .map(|f| f.tokens)
            .map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    }
}

/// All tokens the server accepts.
pub struct TokenStore {
    meta: Arc<dyn MetaStore>,
    configured: Vec<TokenRecord>,
    stored: Vec<TokenRecord>,
    /// The stored blob as last read or written (what a replacement expects to find).
    stored_bytes: Option<Vec<u8>>,
    /// Counts the changes of `stored_bytes`, so that a refresh which read the blob
    /// before one of them does not put the older blob back.
    generation: u64,
    by_hash: HashMap<[u8; 32], Known>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("tokens", &self.by_hash.len())
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Loads the configured tokens and the stored ones (the installation's blob
    /// `tokens.json`).
    pub fn load(
        meta: Arc<dyn MetaStore>,
        configured: Vec<TokenRecord>,
    ) -> Result<TokenStore, AuthError> {
        let file_error = |reason: String| AuthError::File {
            path: meta.describe(TOKEN_FILE),
            reason,
        };
        let stored_bytes = meta
            .get(TOKEN_FILE)
            .map_err(|e| file_error(e.to_string()))?;
        let stored = parse_stored(stored_bytes.as_deref()).map_err(file_error)?;
        let configured = configured
            .into_iter()
            .enumerate()
            .map(|(i, mut t)| {
                if t.id.is_empty() {
                    t.id = format!("config-{}", i + 1);
                }
                t
            })
            .collect();
        let mut store = TokenStore {
            meta,
            configured,
            stored,
            stored_bytes,
            generation: 0,
            by_hash: HashMap::new(),
        };
        store.reindex()?;
        Ok(store)
    }

    fn reindex(&mut self) -> Result<(), AuthError> {
        let mut map = HashMap::new();
        for t in self.configured.iter().chain(self.stored.iter()) {
            let h = t.check()?;
            let known = Known {
                principal: Arc::new(t.principal()),
                expires: t.expires,
            };
            if map.insert(h, known).is_some() {
                return Err(AuthError::Config(format!(
                    "the same token hash is configured twice (principal {:?})",
                    t.principal
                )));
            }
        }
        self.by_hash = map;
        Ok(())
    }

    /// Whether no token is known at all.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The principal of a bearer token, now.
    pub fn authenticate(&self, token: &str) -> Result<Arc<Principal>, Refusal> {
        self.authenticate_at(token, Utc::now())
    }

    /// The principal of a bearer token at `now`.
    pub fn authenticate_at(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<Principal>, Refusal> {
        let known = self
            .by_hash
            .get(&hash_token(token))
            .ok_or(Refusal::Unknown)?;
        match known.expires {
            Some(at) if at <= now => Err(Refusal::Expired(at)),
            _ => Ok(known.principal.clone()),
        }
    }

    /// The installation's blobs, where the stored tokens are.
    pub fn meta(&self) -> Arc<dyn MetaStore> {
        self.meta.clone()
    }

    /// Changes with every replacement of the stored blob through this store. A refresh
    /// notes it before reading the blob and applies what it read only if it is unchanged.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes the stored blob as a refresh read it, unless it is what this store holds
    /// already or this store replaced the blob itself since the refresh noted
    /// `generation` (then what was read is older than what is held). Whether it loaded.
    pub fn refresh(&mut self, generation: u64, bytes: Option<Vec<u8>>) -> Result<bool, AuthError> {
        if self.generation != generation || self.stored_bytes.as_deref() == bytes.as_deref() {
            return Ok(false);
        }
        self.reload_from(bytes)?;
        Ok(true)
    }

    /// Takes the stored tokens from `bytes` (the blob as read now).
    pub fn reload_from(&mut self, bytes: Option<Vec<u8>>) -> Result<(), AuthError> {
        let stored = parse_stored(bytes.as_deref()).map_err(|reason| AuthError::File {
            path: self.meta.describe(TOKEN_FILE),
            reason,
        })?;
        let previous = std::mem::replace(&mut self.stored, stored);
        if let Err(e) = self.reindex() {
            self.stored = previous;
            self.reindex()?;
            return Err(e);
        }
        self.stored_bytes = bytes;
        self.generation += 1;
        Ok(())
    }

    /// Changes the stored tokens with `change` and stores them, starting again from the
    /// stored blob when another instance replaced it meanwhile (so no instance's change
    /// is lost). Returns what `change` returned.
    fn update<T>(
        &mut self,
        mut change: impl FnMut(&mut Vec<TokenRecord>) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let file_error = |meta: &dyn MetaStore, reason: String| AuthError::File {
            path: meta.describe(TOKEN_FILE),
            reason,
        };
        for _ in 0..16 {
            let mut stored = self.stored.clone();
            let out = change(&mut stored)?;
            let file = TokenFile {
                tokens: stored.clone(),
            };
            let bytes = serde_json::to_vec_pretty(&file)
                .map_err(|e| file_error(self.meta.as_ref(), e.to_string()))?;
            let replaced = self
                .meta
                .compare_and_put(TOKEN_FILE, self.stored_bytes.as_deref(), &bytes, true)
                .map_err(|e| file_error(self.meta.as_ref(), e.to_string()))?;
            if replaced {
                self.stored = stored;
                self.stored_bytes = Some(bytes);
                self.generation += 1;
                self.reindex()?;
                return Ok(out);
            }
            let now = self
                .meta
                .get(TOKEN_FILE)
                .map_err(|e| file_error(self.meta.as_ref(), e.to_string()))?;
            self.reload_from(now)?;
        }
        Err(file_error(
            self.meta.as_ref(),
            "other instances kept replacing the tokens; try again".into(),
        ))
    }

    /// Creates a token, stores its hash durably and returns its record and the secret.
    /// `expires`, if given, must lie in the future.
    pub fn create(
        &mut self,
        principal: &str,
        tenant: Option<&str>,
        roles: Vec<Role>,
        description: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Result<(TokenRecord, String), AuthError> {
        self.create_bound(principal, tenant, roles, Vec::new(), description, expires)
    }

    /// As [`Self::create`], for a token bound to organisational units of its tenant.
    pub fn create_bound(
        &mut self,
        principal: &str,
        tenant: Option<&str>,
        roles: Vec<Role>,
        units: Vec<String>,
        description: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Result<(TokenRecord, String), AuthError> {
        if description.chars().count() > 256 || description.chars().any(char::is_control) {
            return Err(AuthError::Invalid {
                field: "description",
                reason: "at most 256 characters, no control characters".into(),
            });
        }
        let now = Utc::now();
        if let Some(at) = expires {
            if at <= now {
                return Err(AuthError::Invalid {
                    field: "expire_time",
                    reason: format!("{} is not in the future", at.to_rfc3339()),
                });
            }
        }
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
        let record = TokenRecord {
            id: random_hex(8)?,
            sha256: hex::encode(hash_token(&secret)),
            principal: principal.to_owned(),
            tenant: tenant.unwrap_or("*").to_owned(),
            roles,
            units,
            created: Some(now),
            description: description.to_owned(),
            expires,
        };
        record.check()?;
        self.update(|stored| {
            stored.push(record.clone());
            Ok(())
        })?;
        Ok((record, secret))
    }

    /// Tokens stored through the API in a scope (`None`: all-tenant tokens only).
    pub fn list(&self, tenant: Option<&str>) -> Vec<TokenRecord> {
        let scope = tenant.unwrap_or("*");
        self.stored
            .iter()
            .filter(|t| t.tenant == scope)
            .cloned()
            .collect()
    }

    /// Deletes a token stored through the API.
    pub fn delete(&mut self, tenant: Option<&str>, id: &str) -> Result<(), AuthError> {
        let scope = tenant.unwrap_or("*");
        self.update(|stored| {
            let before = stored.len();
            stored.retain(|t| !(t.id == id && t.tenant == scope));
            if stored.len() == before {
                return Err(AuthError::NotFound(id.to_owned()));
            }
            Ok(())
        })
    }

    /// On a first start with no token at all: creates an admin token for all tenants,
    /// writes it to `dir/bootstrap-token` (mode 0600) and returns that path.
    pub fn bootstrap(&mut self, dir: &Path) -> Result<Option<PathBuf>, AuthError> {
        if !self.is_empty() {
            return Ok(None);
        }
        let (_, secret) = self.create(
            "bootstrap-admin",
            None,
            vec![Role::Admin],
            "bootstrap",
            None,
        )?;
        let path = dir.join(BOOTSTRAP_FILE);
        fsutil::write_file_atomic(&path, format!("{secret}\n").as_bytes(), 0o600).map_err(|e| {
            AuthError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dir: &tempfile::TempDir) -> Arc<dyn MetaStore> {
        Arc::new(akte_core::embedded::meta::FileMeta::new(dir.path()))
    }

    #[test]
    fn a_refresh_that_read_before_a_local_change_does_not_undo_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TokenStore::load(meta(&dir), vec![]).unwrap();
        s.bootstrap(dir.path()).unwrap().unwrap();
        // The refresh notes the generation and reads the blob ...
        let generation = s.generation();
        let read = s.meta().get(TOKEN_FILE).unwrap();
        // ... a token is created here meanwhile ...
        let (_, secret) = s
            .create("clerk:neu", Some("t1"), vec![Role::Clerk], "", None)
            .unwrap();
        // ... and the older blob must not replace it.
        assert!(!s.refresh(generation, read.clone()).unwrap());
        assert!(s.authenticate(&secret).is_ok());
        // A refresh that read after the change sees nothing new; one that read another
        // instance's blob takes it.
        let generation = s.generation();
        let now = s.meta().get(TOKEN_FILE).unwrap();
        assert!(!s.refresh(generation, now).unwrap());
        assert!(s.refresh(generation, read).unwrap());
        assert!(s.authenticate(&secret).is_err());
    }

    #[test]
    fn tokens_are_stored_hashed_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TokenStore::load(meta(&dir), vec![]).unwrap();
        assert!(s.is_empty());
        let boot = s.bootstrap(dir.path()).unwrap().unwrap();
        let secret = std::fs::read_to_string(&boot).unwrap();
        let p = s.authenticate(secret.trim()).unwrap();
        assert!(p.is_global_admin());
        let (rec, clerk) = s
            .create("clerk:schmidt", Some("bauamt"), vec![Role::Clerk], "", None)
            .unwrap();
        let file = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert!(!file.contains(&clerk), "the secret is not stored");
        let s2 = TokenStore::load(meta(&dir), vec![]).unwrap();
        let p = s2.authenticate(&clerk).unwrap();
        assert_eq!(p.tenant.as_deref(), Some("bauamt"));
        assert!(p.sees("bauamt") && !p.sees("other"));
        assert_eq!(s2.authenticate("akte_wrong"), Err(Refusal::Unknown));
        let mut s2 = s2;
        s2.delete(Some("bauamt"), &rec.id).unwrap();
        assert_eq!(s2.authenticate(&clerk), Err(Refusal::Unknown));
        assert!(s2.bootstrap(dir.path()).unwrap().is_none());
    }

    #[test]
    fn configured_tokens_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = TokenRecord {
            id: String::new(),
            sha256: hex::encode(hash_token("s3cret")),
            principal: "reader:a".into(),
            tenant: "t".into(),
            roles: vec![Role::Reader],
            units: Vec::new(),
            created: None,
            description: String::new(),
            expires: None,
        };
        let s = TokenStore::load(meta(&dir), vec![good.clone()]).unwrap();
        assert!(s.authenticate("s3cret").is_ok());
        let bad = TokenRecord {
            sha256: "abc".into(),
            ..good.clone()
        };
        assert!(TokenStore::load(meta(&dir), vec![bad]).is_err());
        assert!(TokenStore::load(meta(&dir), vec![good.clone(), good]).is_err());
    }

    #[test]
    fn tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TokenStore::load(meta(&dir), vec![]).unwrap();
        let now = Utc::now();
        let past = now - chrono::Duration::seconds(1);
        let e = s
            .create("clerk:a", Some("t"), vec![Role::Clerk], "", Some(past))
            .unwrap_err();
        assert!(e.to_string().contains("expire_time"), "{e}");
        assert!(
            s.list(Some("t")).is_empty(),
            "a refused token is not stored"
        );
        let at = now + chrono::Duration::days(30);
        let (rec, secret) = s
            .create("clerk:a", Some("t"), vec![Role::Clerk], "", Some(at))
            .unwrap();
        assert_eq!(rec.expires, Some(at));
        assert!(s.authenticate(&secret).is_ok());
        assert_eq!(
            s.authenticate_at(&secret, at),
            Err(Refusal::Expired(at)),
            "refused from the expiry moment on"
        );
        // The expiry survives a reload.
        let s2 = TokenStore::load(meta(&dir), vec![]).unwrap();
        assert_eq!(
            s2.authenticate_at(&secret, at + chrono::Duration::days(1)),
            Err(Refusal::Expired(at))
        );
        assert!(s2
            .authenticate_at(&secret, at - chrono::Duration::seconds(1))
            .is_ok());
    }
}
