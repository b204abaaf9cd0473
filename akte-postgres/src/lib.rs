//! akte's distributed backend: every tenant's journal, index, metadata and (unless an
//! object store holds it) content in PostgreSQL, shared by any number of akted instances.
//!
//! The database is the only thing the instances share, and it serialises what must be
//! serial: appends to one tenant lock the tenant's head row (see [`journal`]), each
//! append group commits its entries together with their index changes, and an entry is
//! acknowledged only after its transaction committed (with `synchronous_commit` as the
//! server has it; the deployment guide asks for `on`). Reads go to any instance.
//!
//! The schema is created and upgraded at start ([`schema`]); docs/FORMAT.md describes it.

mod cache;
pub mod content;
mod db;
pub mod index;
pub mod journal;
pub mod meta;
mod overlay;
pub mod s3;
pub mod schema;
pub mod seal;
pub mod uploads;

use std::sync::Arc;

use akte_core::backend::{
    Backend, BackendError, FaultKind, IndexBackend, MetaStore, TenantParts, TenantSeed,
};

use db::Db;
pub use db::{round_trips_by_op, thread_round_trips, PgError, PgOptions, ROUND_TRIPS};
pub use schema::SCHEMA_VERSION;

/// The installation's blobs live under this tenant id, which no tenant can have.
const INSTALLATION: &str = "";

/// Tenants in a PostgreSQL database.
pub struct PgBackend {
    db: Arc<Db>,
    install: Arc<meta::PgMeta>,
    seal: Option<seal::SealKey>,
    /// The bucket content goes to, if object storage is configured (else PostgreSQL).
    s3: Option<Arc<s3::S3Store>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("database", &self.db.place())
            .finish()
    }
}

fn io_error(e: PgError, place: &str) -> BackendError {
    BackendError::Io(e.io(place))
}

impl PgBackend {
    /// Connects to the database at `url` (a libpq-style connection string or URL;
    /// `sslmode=require` for TLS) and brings its schema up to this build's version.
    pub fn connect(url: &str, options: PgOptions) -> Result<Arc<PgBackend>, BackendError> {
        Self::connect_at(url, options, SCHEMA_VERSION)
    }

    /// As [`PgBackend::connect`], migrating only up to schema `version` (for tests of
    /// the migrations themselves).
    pub fn connect_at(
        url: &str,
        options: PgOptions,
        version: i32,
    ) -> Result<Arc<PgBackend>, BackendError> {
        let db = Db::connect(url, &options).map_err(|e| match e.kind {
            FaultKind::Other => BackendError::Unusable(e.to_string()),
            _ => io_error(e, "the database"),
        })?;
        schema::migrate(&db, version).map_err(|e| match e.kind {
            FaultKind::Other => BackendError::UnsupportedFormat {
                place: db.place().to_owned(),
                found: e.message.clone(),
                expected: format!("akte schema version {SCHEMA_VERSION} or older"),
            },
            _ => io_error(e, db.place()),
        })?;
        let seal = options.seal_key.clone();
        if seal.is_none() {
            tracing::warn!(database = %db.place(), "no database_key_file: signing keys and tokens are stored in the database unsealed; anyone who can read the database (a replica, a backup) can sign checkpoints");
        }
        let s3 = match &options.content {
            Some(o) => Some(Arc::new(
                s3::S3Store::new(o).map_err(BackendError::Unusable)?,
            )),
            None => None,
        };
        Ok(Arc::new(PgBackend {
            install: Arc::new(meta::PgMeta::new(db.clone(), INSTALLATION, seal.clone())),
            db,
            seal,
            s3,
        }))
    }

    /// The resumable upload sessions of every tenant, in this database.
    pub fn uploads(&self) -> uploads::PgUploads {
        uploads::PgUploads::new(self.db.clone())
    }

    fn parts(&self, id: &str, durable: u64) -> TenantParts {
        let shared = journal::Shared::new(self.db.clone(), id, durable);
        TenantParts {
            journal: Arc::new(journal::PgJournal::new(shared.clone())),
            index: Arc::new(index::PgIndex::new(shared)),
            content: match &self.s3 {
                Some(bucket) => Arc::new(s3::S3Content::new(self.db.clone(), bucket.clone(), id)),
                None => Arc::new(content::PgContent::new(self.db.clone(), id)),
            },
            meta: Arc::new(meta::PgMeta::new(self.db.clone(), id, self.seal.clone())),
        }
    }

    fn tenant_error(id: &str, e: PgError) -> BackendError {
        BackendError::Tenant {
            tenant: id.to_owned(),
            reason: e.to_string(),
            kind: e.kind,
        }
    }
}

impl Backend for PgBackend {
    fn describe(&self) -> String {
        match &self.s3 {
            Some(s3) => format!(
                "PostgreSQL database {} with content in {s3:?}",
                self.db.place()
            ),
            None => format!("PostgreSQL database {}", self.db.place()),
        }
    }

    fn tenant_ids(&self) -> Result<Vec<String>, BackendError> {
        self.db
            .run("list tenants", |c| async move {
                let rows = c
                    .query("SELECT id FROM akte_tenants ORDER BY id COLLATE \"C\"", &[])
                    .await
                    .map_err(|e| PgError::of("list tenants", &e))?;
                Ok(rows.into_iter().map(|r| r.get::<_, String>(0)).collect())
            })
            .map_err(|e| io_error(e, self.db.place()))
    }

    fn create_tenant(&self, id: &str, seed: &TenantSeed) -> Result<TenantParts, BackendError> {
        let tenant = id.to_owned();
        let mut blobs = Vec::with_capacity(seed.meta.len());
        for (name, bytes, secret) in &seed.meta {
            let refused = |reason: String| BackendError::Tenant {
                tenant: id.to_owned(),
                reason,
                kind: FaultKind::Other,
            };
            akte_core::backend::meta::check_name(name).map_err(|e| refused(e.to_string()))?;
            let stored = match (&self.seal, secret) {
                (Some(key), true) => key.seal(id, name, bytes).map_err(refused)?,
                _ => bytes.clone(),
            };
            blobs.push((name.clone(), stored, *secret));
        }
        let created = self
            .db
            .run("create a tenant", move |mut c| async move {
                let op = "create a tenant";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                let n = tx
                    .execute(
                        "INSERT INTO akte_tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
                        &[&tenant],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                if n == 0 {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO akte_heads (tenant, next_seq, last_leaf, last_micros, tree_len)
                     VALUES ($1, 0, $2, 0, 0)",
                    &[&tenant, &vec![0u8; 32]],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                for (name, bytes, secret) in &blobs {
                    tx.execute(
                        "INSERT INTO akte_meta (tenant, name, bytes, secret) VALUES ($1, $2, $3, $4)",
                        &[&tenant, name, bytes, secret],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                }
                tx.commit().await.map_err(|e| PgError::of(op, &e))?;
                Ok(true)
            })
            .map_err(|e| Self::tenant_error(id, e))?;
        if !created {
            return Err(BackendError::TenantExists(id.to_owned()));
        }
        Ok(self.parts(id, 0))
    }

    fn open_tenant(&self, id: &str) -> Result<TenantParts, BackendError> {
        let tenant = id.to_owned();
        let head = self
            .db
            .run("open a tenant", move |c| async move {
                let row = c
                    .query_opt(
                        "SELECT next_seq FROM akte_heads WHERE tenant = $1",
                        &[&tenant],
                    )
                    .await
                    .map_err(|e| PgError::of("open a tenant", &e))?;
                Ok(row.map(|r| r.get::<_, i64>(0) as u64))
            })
            .map_err(|e| Self::tenant_error(id, e))?;
        match head {
            Some(durable) => Ok(self.parts(id, durable)),
            None => Err(BackendError::UnknownTenant(id.to_owned())),
        }
    }

    /// Verification's reference index lives in memory: bounded by the tenant's index
    /// size, which is fine for the tenants of a municipality; a temporary schema would
    /// bound it for the largest ones.
    fn scratch_index(&self) -> Result<Arc<dyn IndexBackend>, BackendError> {
        // On local disk, not in memory: verification of a large installation rebuilds
        // every tenant's index in it.
        akte_core::embedded::scratch_index()
    }

    fn installation_meta(&self) -> Arc<dyn MetaStore> {
        self.install.clone()
    }
}
