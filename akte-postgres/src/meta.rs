//! Small named blobs in the `akte_meta` table (a tenant's origin, keys, checkpoints,
//! witness lists, destruction records; the installation's under the empty tenant id).
//!
//! Each put is one committed statement: atomic, and durable when it returns
//! (synchronous commit).

use std::sync::Arc;

use akte_core::backend::meta::check_name;
use akte_core::backend::{MetaError, MetaStore};

use crate::db::{Db, PgError};
use crate::seal::{is_sealed, SealKey};

/// The blobs of one tenant (or of the installation, tenant `""`).
pub struct PgMeta {
    db: Arc<Db>,
    tenant: String,
    seal: Option<SealKey>,
}

impl PgMeta {
    pub(crate) fn new(db: Arc<Db>, tenant: &str, seal: Option<SealKey>) -> PgMeta {
        PgMeta {
            db,
            tenant: tenant.to_owned(),
            seal,
        }
    }

    fn fail(&self, name: &str, e: PgError) -> MetaError {
        MetaError::Io(e.io(self.describe(name)))
    }

    /// The bytes to store for a blob: a secret one sealed when a key is configured.
    fn stored_form(&self, name: &str, bytes: &[u8], secret: bool) -> Result<Vec<u8>, MetaError> {
        match (&self.seal, secret) {
            (Some(key), true) => {
                key.seal(&self.tenant, name, bytes)
                    .map_err(|reason| MetaError::Refused {
                        place: self.describe(name),
                        reason,
                    })
            }
            _ => Ok(bytes.to_vec()),
        }
    }

    /// The blob's bytes from what is stored (a sealed one opened).
    /// The blobs directly under `prefix` in byte order of their names, with their stored
    /// bytes if `with_bytes` (else empty): one query.
    fn under(&self, prefix: &str, with_bytes: bool) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        if !prefix.is_empty() {
            check_name(prefix.trim_end_matches('/'))?;
        }
        let (tenant, prefix_owned) = (self.tenant.clone(), prefix.to_owned());
        let op = if with_bytes {
            "read blobs"
        } else {
            "list blobs"
        };
        let rows = self
            .db
            .run(op, move |c| async move {
                // Names hold no LIKE wildcards except '_' (escaped here).
                let pattern = format!("{}%", prefix_owned.replace('_', "\\_"));
                let sql = if with_bytes {
                    "SELECT name, bytes FROM akte_meta WHERE tenant = $1 AND name LIKE $2
                     ORDER BY name COLLATE \"C\""
                } else {
                    "SELECT name, ''::bytea FROM akte_meta WHERE tenant = $1 AND name LIKE $2
                     ORDER BY name COLLATE \"C\""
                };
                let rows = c
                    .query(sql, &[&tenant, &pattern])
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(rows
                    .into_iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
                    .collect::<Vec<_>>())
            })
            .map_err(|e| self.fail(prefix, e))?;
        Ok(rows
            .into_iter()
            .filter(|(n, _)| n.starts_with(prefix) && !n[prefix.len()..].contains('/'))
            .collect())
    }

    fn opened(&self, name: &str, stored: Vec<u8>) -> Result<Vec<u8>, MetaError> {
        if !is_sealed(&stored) {
            return Ok(stored);
        }
        let refused = |reason: String| MetaError::Refused {
            place: self.describe(name),
            reason,
        };
        match &self.seal {
            Some(key) => key.open(&self.tenant, name, &stored).map_err(refused),
            None => Err(refused(
                "the blob is sealed; configure the key it was sealed with (database_key_file)"
                    .into(),
            )),
        }
    }
}

impl MetaStore for PgMeta {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        check_name(name)?;
        let (tenant, key) = (self.tenant.clone(), name.to_owned());
        self.db
            .run("read a blob", move |c| async move {
                let row = c
                    .query_opt(
                        "SELECT bytes FROM akte_meta WHERE tenant = $1 AND name = $2",
                        &[&tenant, &key],
                    )
                    .await
                    .map_err(|e| PgError::of("read a blob", &e))?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            })
            .map_err(|e| self.fail(name, e))?
            .map(|stored| self.opened(name, stored))
            .transpose()
    }

    fn put(&self, name: &str, bytes: &[u8], secret: bool) -> Result<(), MetaError> {
        check_name(name)?;
        let stored = self.stored_form(name, bytes, secret)?;
        let (tenant, key, bytes) = (self.tenant.clone(), name.to_owned(), stored);
        self.db
            .run("write a blob", move |c| async move {
                c.execute(
                    "INSERT INTO akte_meta (tenant, name, bytes, secret) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, name)
                     DO UPDATE SET bytes = EXCLUDED.bytes, secret = EXCLUDED.secret",
                    &[&tenant, &key, &bytes, &secret],
                )
                .await
                .map_err(|e| PgError::of("write a blob", &e))?;
                Ok(())
            })
            .map_err(|e| self.fail(name, e))
    }

    /// One statement: of instances starting together, the first insert wins and every
    /// instance reads back the winner's bytes.
    fn put_if_absent(&self, name: &str, bytes: &[u8], secret: bool) -> Result<Vec<u8>, MetaError> {
        check_name(name)?;
        let stored = self.stored_form(name, bytes, secret)?;
        let (tenant, key, bytes) = (self.tenant.clone(), name.to_owned(), stored);
        self.db
            .run("write a blob", move |c| async move {
                let op = "write a blob";
                c.execute(
                    "INSERT INTO akte_meta (tenant, name, bytes, secret) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, name) DO NOTHING",
                    &[&tenant, &key, &bytes, &secret],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                let row = c
                    .query_one(
                        "SELECT bytes FROM akte_meta WHERE tenant = $1 AND name = $2",
                        &[&tenant, &key],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(row.get::<_, Vec<u8>>(0))
            })
            .map_err(|e| self.fail(name, e))
            .and_then(|stored| self.opened(name, stored))
    }

    /// In one transaction that locks the row: the stored blob is opened (if sealed) and
    /// compared with `expected`, then replaced.
    fn compare_and_put(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        bytes: &[u8],
        secret: bool,
    ) -> Result<bool, MetaError> {
        check_name(name)?;
        let stored = self.stored_form(name, bytes, secret)?;
        let (tenant, key) = (self.tenant.clone(), name.to_owned());
        let op = "replace a blob";
        let current = {
            let (tenant, key) = (tenant.clone(), key.clone());
            self.db
                .run(op, move |c| async move {
                    let row = c
                        .query_opt(
                            "SELECT bytes FROM akte_meta WHERE tenant = $1 AND name = $2",
                            &[&tenant, &key],
                        )
                        .await
                        .map_err(|e| PgError::of(op, &e))?;
                    Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
                })
                .map_err(|e| self.fail(name, e))?
        };
        // Compare what the blob holds (opened), then replace exactly the stored bytes read
        // (so a replacement by another instance in between is noticed).
        let opened = current
            .clone()
            .map(|stored| self.opened(name, stored))
            .transpose()?;
        if opened.as_deref() != expected {
            return Ok(false);
        }
        self.db
            .run(op, move |c| async move {
                let n = match current {
                    None => {
                        c.execute(
                            "INSERT INTO akte_meta (tenant, name, bytes, secret)
                             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO NOTHING",
                            &[&tenant, &key, &stored, &secret],
                        )
                        .await
                    }
                    Some(old) => {
                        c.execute(
                            "UPDATE akte_meta SET bytes = $3, secret = $4
                             WHERE tenant = $1 AND name = $2 AND bytes = $5",
                            &[&tenant, &key, &stored, &secret, &old],
                        )
                        .await
                    }
                }
                .map_err(|e| PgError::of(op, &e))?;
                Ok(n == 1)
            })
            .map_err(|e| self.fail(name, e))
    }

    fn remove(&self, name: &str) -> Result<bool, MetaError> {
        check_name(name)?;
        let (tenant, key) = (self.tenant.clone(), name.to_owned());
        self.db
            .run("remove a blob", move |c| async move {
                let n = c
                    .execute(
                        "DELETE FROM akte_meta WHERE tenant = $1 AND name = $2",
                        &[&tenant, &key],
                    )
                    .await
                    .map_err(|e| PgError::of("remove a blob", &e))?;
                Ok(n > 0)
            })
            .map_err(|e| self.fail(name, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, MetaError> {
        Ok(self
            .under(prefix, false)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    fn get_all(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.under(prefix, true)?
            .into_iter()
            .map(|(name, stored)| {
                let bytes = self.opened(&name, stored)?;
                Ok((name, bytes))
            })
            .collect()
    }

    fn describe(&self, name: &str) -> String {
        let owner = if self.tenant.is_empty() {
            "installation".to_owned()
        } else {
            format!("tenant {}", self.tenant)
        };
        format!("{} akte_meta ({owner}, {name})", self.db.place())
    }
}
