//! The database schema and its migrations.
//!
//! Every table holds the rows of all tenants, keyed by tenant id first. Migrations are
//! numbered; a new installation gets them all, an older one the missing ones, each in one
//! transaction under an advisory lock so that instances starting together do not race.
//! A database migrated by a newer akte (a higher version than this build knows) is
//! refused: this build would not know what the newer tables promise.
//!
//! docs/FORMAT.md describes the tables column by column.

use akte_core::backend::FaultKind;

use crate::db::{Db, PgError};

/// The migrations, in order: `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: tenants, the journal, the derived index and the metadata blobs.
    r#"
    CREATE TABLE akte_tenants (
        id text PRIMARY KEY,
        created timestamptz NOT NULL DEFAULT now()
    );
    -- One row per tenant: the journal's end, locked by the append that extends it.
    CREATE TABLE akte_heads (
        tenant text PRIMARY KEY REFERENCES akte_tenants (id),
        next_seq bigint NOT NULL,
        last_leaf bytea NOT NULL,
        last_micros bigint NOT NULL,
        tree_len bigint NOT NULL
    );
    CREATE TABLE akte_entries (
        tenant text NOT NULL,
        seq bigint NOT NULL,
        entry bytea NOT NULL,
        leaf bytea NOT NULL,
        PRIMARY KEY (tenant, seq)
    );
    CREATE TABLE akte_attachments (
        tenant text NOT NULL,
        seq bigint NOT NULL,
        pos integer NOT NULL,
        digest bytea NOT NULL,
        len integer NOT NULL,
        bytes bytea,
        PRIMARY KEY (tenant, seq, pos)
    );
    CREATE TABLE akte_index (
        tenant text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    CREATE TABLE akte_nodes (
        tenant text NOT NULL,
        pos bigint NOT NULL,
        hash bytea NOT NULL,
        PRIMARY KEY (tenant, pos)
    );
    CREATE TABLE akte_meta (
        tenant text NOT NULL,
        name text NOT NULL,
        bytes bytea NOT NULL,
        secret boolean NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    "#,
    // 2: document content in the database, in chunks (for installations without object
    // storage). An object's chunks are written in the transaction that records it.
    r#"
    CREATE SEQUENCE akte_object_ids;
    CREATE TABLE akte_objects (
        tenant text NOT NULL,
        digest bytea NOT NULL,
        id bigint NOT NULL UNIQUE,
        size bigint NOT NULL,
        chunks integer NOT NULL,
        PRIMARY KEY (tenant, digest)
    );
    CREATE TABLE akte_chunks (
        object bigint NOT NULL,
        n integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (object, n)
    );
    "#,
    // 3: resumable upload sessions, so that any instance continues and imports them. A
    // session row holds the declared rendition (encoded by akted), the bytes received so
    // far, the number of the write that holds it and, while it is imported, until when the
    // import holds it; its bytes are one row per received chunk, at the chunk's offset.
    r#"
    CREATE TABLE akte_upload_sessions (
        tenant text NOT NULL,
        id text NOT NULL,
        record bytea NOT NULL,
        expire_ms bigint NOT NULL,
        persisted bigint NOT NULL DEFAULT 0,
        generation bigint NOT NULL DEFAULT 0,
        importing_until_ms bigint,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE akte_upload_parts (
        tenant text NOT NULL,
        session text NOT NULL,
        off bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (tenant, session, off),
        FOREIGN KEY (tenant, session) REFERENCES akte_upload_sessions (tenant, id)
            ON DELETE CASCADE
    );
    "#,
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x616b_7465_0001;

/// Brings the schema up to `target` (normally [`SCHEMA_VERSION`]); returns the version
/// found before. Refuses a schema newer than this build.
pub(crate) fn migrate(db: &Db, target: i32) -> Result<i32, PgError> {
    let target = target.clamp(0, SCHEMA_VERSION);
    db.run("migrate the schema", move |mut c| async move {
        let op = "migrate the schema";
        let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| PgError::of(op, &e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS akte_schema (
                 one boolean PRIMARY KEY DEFAULT true CHECK (one),
                 version integer NOT NULL)",
        )
        .await
        .map_err(|e| PgError::of(op, &e))?;
        let found: i32 = match tx
            .query_opt("SELECT version FROM akte_schema", &[])
            .await
            .map_err(|e| PgError::of(op, &e))?
        {
            Some(row) => row.get(0),
            None => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(PgError::new(
                op,
                FaultKind::Other,
                format!(
                    "the database holds akte schema version {found}, written by a newer \
                     akte; this build knows versions up to {SCHEMA_VERSION}"
                ),
            ));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .take(target as usize)
            .skip(found.max(0) as usize)
        {
            tx.batch_execute(sql)
                .await
                .map_err(|e| PgError::of(op, &e))?;
            tracing::info!(version = i + 1, "migrated the akte schema");
        }
        if target > found {
            tx.execute(
                "INSERT INTO akte_schema (one, version) VALUES (true, $1)
                 ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
                &[&target],
            )
            .await
            .map_err(|e| PgError::of(op, &e))?;
        }
        tx.commit().await.map_err(|e| PgError::of(op, &e))?;
        Ok(found)
    })
}
