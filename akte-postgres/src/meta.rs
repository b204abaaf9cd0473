//! Small named blobs in the `akte_meta` table (a tenant's origin, keys, checkpoints,
//! witness lists, destruction records; the installation's under the empty tenant id).
//!
//! Each put is one committed statement: atomic, and durable when it returns
//! (synchronous commit).

use std::sync::Arc;

use akte_core::backend::meta::check_name;
use akte_core::backend::{MetaError, MetaStore};

use crate::db::{Db, PgError};

/// The blobs of one tenant (or of the installation, tenant `""`).
pub struct PgMeta {
    db: Arc<Db>,
    tenant: String,
}

impl PgMeta {
    pub(crate) fn new(db: Arc<Db>, tenant: &str) -> PgMeta {
        PgMeta {
            db,
            tenant: tenant.to_owned(),
        }
    }

    fn fail(&self, name: &str, e: PgError) -> MetaError {
        MetaError::Io(e.io(self.describe(name)))
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
            .map_err(|e| self.fail(name, e))
    }

    fn put(&self, name: &str, bytes: &[u8], secret: bool) -> Result<(), MetaError> {
        check_name(name)?;
        let (tenant, key, bytes) = (self.tenant.clone(), name.to_owned(), bytes.to_vec());
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
        let (tenant, key, bytes) = (self.tenant.clone(), name.to_owned(), bytes.to_vec());
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
    }

    fn compare_and_put(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        bytes: &[u8],
        secret: bool,
    ) -> Result<bool, MetaError> {
        check_name(name)?;
        let (tenant, key, bytes) = (self.tenant.clone(), name.to_owned(), bytes.to_vec());
        let expected = expected.map(<[u8]>::to_vec);
        self.db
            .run("replace a blob", move |c| async move {
                let op = "replace a blob";
                let n = match expected {
                    None => {
                        c.execute(
                            "INSERT INTO akte_meta (tenant, name, bytes, secret)
                             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, name) DO NOTHING",
                            &[&tenant, &key, &bytes, &secret],
                        )
                        .await
                    }
                    Some(old) => {
                        c.execute(
                            "UPDATE akte_meta SET bytes = $3, secret = $4
                             WHERE tenant = $1 AND name = $2 AND bytes = $5",
                            &[&tenant, &key, &bytes, &secret, &old],
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
        if !prefix.is_empty() {
            check_name(prefix.trim_end_matches('/'))?;
        }
        let (tenant, prefix_owned) = (self.tenant.clone(), prefix.to_owned());
        let names = self
            .db
            .run("list blobs", move |c| async move {
                // Names hold no LIKE wildcards except '_' (escaped here).
                let pattern = format!("{}%", prefix_owned.replace('_', "\\_"));
                let rows = c
                    .query(
                        "SELECT name FROM akte_meta WHERE tenant = $1 AND name LIKE $2
                         ORDER BY name COLLATE \"C\"",
                        &[&tenant, &pattern],
                    )
                    .await
                    .map_err(|e| PgError::of("list blobs", &e))?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>())
            })
            .map_err(|e| self.fail(prefix, e))?;
        Ok(names
            .into_iter()
            .filter(|n| n.starts_with(prefix) && !n[prefix.len()..].contains('/'))
            .collect())
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
