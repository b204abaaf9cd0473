//! Resumable upload sessions in `akte_upload_sessions` and their bytes in
//! `akte_upload_parts`, shared by every instance (akted's `uploads` module decides what
//! the rows mean; this module only keeps them consistent).
//!
//! Every change is one transaction that locks the session's row first, so writers on
//! different instances are serialised by the database:
//! - a write starts by bumping the session's `generation` (the write that bumped it last
//!   holds the session; an older one is refused at its next chunk);
//! - each chunk is inserted at the offset the session holds and `persisted` advances in
//!   the same transaction, only if the writer still holds the session and the offset is
//!   still the session's end: `persisted` is always exactly the bytes stored, and
//!   committed (durable) when the call returns;
//! - an import marks the session until a moment (`importing_until_ms`, renewed while the
//!   bytes are read): writes and deletes are refused meanwhile, and an import whose
//!   instance died gives way when the mark runs out.

use std::io::{self, Read};
use std::sync::Arc;

use crate::db::{Db, PgError};

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    /// The session as akted encoded it.
    pub record: Vec<u8>,
    /// Bytes stored.
    pub persisted: u64,
    /// Until when (Unix ms) an import holds it, if one does.
    pub importing_until_ms: Option<i64>,
}

/// Why a change of a session was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such session.
    Missing,
    /// An import holds it.
    Importing,
    /// The offset is not the session's end (which is given).
    Offset(u64),
    /// Another write took the session over; it holds the bytes given.
    TakenOver(u64),
    /// Not all declared bytes are there (those given are).
    Incomplete(u64),
}

/// What a change did.
pub type Outcome<T> = Result<Result<T, Refusal>, PgError>;

/// Counts the tenant's sessions (for its limit).
const SESSIONS_LIMIT_QUERY: &str = "SELECT count(*) FROM akte_upload_sessions WHERE tenant = $1";
/// Chunk rows read per statement when the bytes are read back.
const READ_BATCH: i64 = 8;

/// The upload sessions of every tenant.
#[derive(Clone)]
pub struct PgUploads {
    db: Arc<Db>,
}

impl std::fmt::Debug for PgUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUploads")
            .field("database", &self.db.place())
            .finish()
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The session row, locked until the transaction ends.
const LOCK_ROW: &str = "SELECT persisted, generation, importing_until_ms FROM akte_upload_sessions
                        WHERE tenant = $1 AND id = $2 FOR UPDATE";

/// A session row as [`lock_row`] read it.
struct Locked {
    persisted: i64,
    generation: i64,
    importing_until_ms: Option<i64>,
}

impl Locked {
    /// Whether an import holds the session at `now_ms`.
    fn importing_at(&self, now_ms: i64) -> bool {
        self.importing_until_ms.is_some_and(|until| until > now_ms)
    }
}

/// Locks the session row in `tx` until it ends; `None` if there is no such session.
async fn lock_row(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    id: &str,
    op: &'static str,
) -> Result<Option<Locked>, PgError> {
    let row = tx
        .query_opt(LOCK_ROW, &[&tenant, &id])
        .await
        .map_err(|e| PgError::of(op, &e))?;
    Ok(row.map(|r| Locked {
        persisted: r.get(0),
        generation: r.get(1),
        importing_until_ms: r.get(2),
    }))
}

impl PgUploads {
    pub(crate) fn new(db: Arc<Db>) -> PgUploads {
        PgUploads { db }
    }

    /// Where the sessions are (for messages).
    pub fn place(&self) -> String {
        format!("{} akte_upload_sessions", self.db.place())
    }

    /// Removes the tenant's sessions expired at `now_ms` (unless an import holds them),
    /// then stores a new one unless the tenant has `max` sessions; returns whether it did.
    pub fn create(
        &self,
        tenant: &str,
        id: &str,
        record: &[u8],
        expire_ms: i64,
        now_ms: i64,
        max: usize,
    ) -> Result<bool, PgError> {
        let (tenant, id, record) = (tenant.to_owned(), id.to_owned(), record.to_vec());
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .run("create an upload session", move |mut c| async move {
                let op = "create an upload session";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                tx.execute(
                    "DELETE FROM akte_upload_sessions WHERE tenant = $1 AND expire_ms <= $2
                 AND (importing_until_ms IS NULL OR importing_until_ms <= $2)",
                    &[&tenant, &now_ms],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                let n: i64 = tx
                    .query_one(SESSIONS_LIMIT_QUERY, &[&tenant])
                    .await
                    .map_err(|e| PgError::of(op, &e))?
                    .get(0);
                if n >= max {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO akte_upload_sessions (tenant, id, record, expire_ms)
                 VALUES ($1, $2, $3, $4)",
                    &[&tenant, &id, &record, &expire_ms],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                tx.commit().await.map_err(|e| PgError::of(op, &e))?;
                Ok(true)
            })
    }

    /// The session, if it exists.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Option<UploadRow>, PgError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db.run("read an upload session", move |c| async move {
            let row = c
                .query_opt(
                    "SELECT record, persisted, importing_until_ms FROM akte_upload_sessions
                     WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id],
                )
                .await
                .map_err(|e| PgError::of("read an upload session", &e))?;
            Ok(row.map(|r| UploadRow {
                record: r.get(0),
                persisted: to_u64(r.get(1)),
                importing_until_ms: r.get(2),
            }))
        })
    }

    /// Starts a write at `offset`, which must be the session's end: takes the session over
    /// and returns the write's number.
    pub fn begin_write(&self, tenant: &str, id: &str, offset: u64, now_ms: i64) -> Outcome<i64> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db
            .run("start an upload write", move |mut c| async move {
                let op = "start an upload write";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                let Some(row) = lock_row(&tx, &tenant, &id, op).await? else {
                    return Ok(Err(Refusal::Missing));
                };
                if row.importing_at(now_ms) {
                    return Ok(Err(Refusal::Importing));
                }
                let (persisted, generation) = (row.persisted, row.generation);
                if to_u64(persisted) != offset {
                    return Ok(Err(Refusal::Offset(to_u64(persisted))));
                }
                let next = generation.saturating_add(1);
                tx.execute(
                    "UPDATE akte_upload_sessions SET generation = $3 WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id, &next],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                tx.commit().await.map_err(|e| PgError::of(op, &e))?;
                Ok(Ok(next))
            })
    }

    /// Stores a chunk of write `generation` at `offset`, if that write still holds the
    /// session and `offset` is its end; returns the bytes stored after it (committed).
    pub fn append(
        &self,
        tenant: &str,
        id: &str,
        generation: i64,
        offset: u64,
        data: &[u8],
    ) -> Outcome<u64> {
        let (tenant, id, data) = (tenant.to_owned(), id.to_owned(), data.to_vec());
        self.db.run("store an upload chunk", move |mut c| async move {
            let op = "store an upload chunk";
            let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
            let Some(row) = lock_row(&tx, &tenant, &id, op).await? else {
                return Ok(Err(Refusal::Missing));
            };
            let (persisted, held_by) = (row.persisted, row.generation);
            if held_by != generation {
                return Ok(Err(Refusal::TakenOver(to_u64(persisted))));
            }
            if to_u64(persisted) != offset {
                return Ok(Err(Refusal::Offset(to_u64(persisted))));
            }
            let end = persisted.saturating_add(data.len() as i64);
            tx.execute(
                "INSERT INTO akte_upload_parts (tenant, session, off, data) VALUES ($1, $2, $3, $4)",
                &[&tenant, &id, &persisted, &data],
            )
            .await
            .map_err(|e| PgError::of(op, &e))?;
            tx.execute(
                "UPDATE akte_upload_sessions SET persisted = $3 WHERE tenant = $1 AND id = $2",
                &[&tenant, &id, &end],
            )
            .await
            .map_err(|e| PgError::of(op, &e))?;
            tx.commit().await.map_err(|e| PgError::of(op, &e))?;
            Ok(Ok(to_u64(end)))
        })
    }

    /// Marks the session as imported until `until_ms`, if all `size` bytes are there and no
    /// other import holds it (at `now_ms`); a write still open stops at its next chunk.
    pub fn begin_import(
        &self,
        tenant: &str,
        id: &str,
        size: u64,
        now_ms: i64,
        until_ms: i64,
    ) -> Outcome<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db
            .run("start an upload import", move |mut c| async move {
                let op = "start an upload import";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                let Some(row) = lock_row(&tx, &tenant, &id, op).await? else {
                    return Ok(Err(Refusal::Missing));
                };
                if row.importing_at(now_ms) {
                    return Ok(Err(Refusal::Importing));
                }
                let persisted = row.persisted;
                if to_u64(persisted) != size {
                    return Ok(Err(Refusal::Incomplete(to_u64(persisted))));
                }
                tx.execute(
                    "UPDATE akte_upload_sessions SET importing_until_ms = $3,
                 generation = generation + 1 WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id, &until_ms],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                tx.commit().await.map_err(|e| PgError::of(op, &e))?;
                Ok(Ok(()))
            })
    }

    /// Extends the import's hold to `until_ms`.
    pub fn renew_import(&self, tenant: &str, id: &str, until_ms: i64) -> Result<(), PgError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db.run("renew an upload import", move |c| async move {
            c.execute(
                "UPDATE akte_upload_sessions SET importing_until_ms = $3
                 WHERE tenant = $1 AND id = $2 AND importing_until_ms IS NOT NULL",
                &[&tenant, &id, &until_ms],
            )
            .await
            .map_err(|e| PgError::of("renew an upload import", &e))?;
            Ok(())
        })
    }

    /// Ends an import: `imported` removes the session with its bytes, else it is released.
    pub fn end_import(&self, tenant: &str, id: &str, imported: bool) -> Result<(), PgError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db.run("end an upload import", move |c| async move {
            let sql = if imported {
                "DELETE FROM akte_upload_sessions WHERE tenant = $1 AND id = $2"
            } else {
                "UPDATE akte_upload_sessions SET importing_until_ms = NULL
                 WHERE tenant = $1 AND id = $2"
            };
            c.execute(sql, &[&tenant, &id])
                .await
                .map_err(|e| PgError::of("end an upload import", &e))?;
            Ok(())
        })
    }

    /// Removes the session and its bytes unless an import holds it (at `now_ms`).
    pub fn delete(&self, tenant: &str, id: &str, now_ms: i64) -> Outcome<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.db
            .run("delete an upload session", move |mut c| async move {
                let op = "delete an upload session";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                let Some(row) = lock_row(&tx, &tenant, &id, op).await? else {
                    return Ok(Err(Refusal::Missing));
                };
                if row.importing_at(now_ms) {
                    return Ok(Err(Refusal::Importing));
                }
                tx.execute(
                    "DELETE FROM akte_upload_sessions WHERE tenant = $1 AND id = $2",
                    &[&tenant, &id],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                tx.commit().await.map_err(|e| PgError::of(op, &e))?;
                Ok(Ok(()))
            })
    }

    /// The session's first `len` bytes, read back chunk row by chunk row in offset order.
    pub fn reader(&self, tenant: &str, id: &str, len: u64) -> PartsReader {
        PartsReader {
            db: self.db.clone(),
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            next: 0,
            len,
            buf: Vec::new(),
            pos: 0,
            pending: std::collections::VecDeque::new(),
        }
    }
}

/// The bytes of a session in order; a gap or an overlap between chunk rows is an error.
pub struct PartsReader {
    db: Arc<Db>,
    tenant: String,
    id: String,
    /// Offset of the first byte not yet buffered.
    next: u64,
    len: u64,
    buf: Vec<u8>,
    pos: usize,
    pending: std::collections::VecDeque<(u64, Vec<u8>)>,
}

impl PartsReader {
    fn fetch(&mut self) -> io::Result<()> {
        let (tenant, id, from) = (self.tenant.clone(), self.id.clone(), to_i64(self.next));
        let rows = self
            .db
            .run("read upload chunks", move |c| async move {
                let rows = c
                    .query(
                        "SELECT off, data FROM akte_upload_parts
                         WHERE tenant = $1 AND session = $2 AND off >= $3
                         ORDER BY off LIMIT $4",
                        &[&tenant, &id, &from, &READ_BATCH],
                    )
                    .await
                    .map_err(|e| PgError::of("read upload chunks", &e))?;
                Ok(rows
                    .into_iter()
                    .map(|r| (to_u64(r.get::<_, i64>(0)), r.get::<_, Vec<u8>>(1)))
                    .collect::<Vec<_>>())
            })
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.pending.extend(rows);
        Ok(())
    }
}

impl Read for PartsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.next >= self.len {
                return Ok(0);
            }
            if self.pending.is_empty() {
                self.fetch()?;
            }
            let Some((off, data)) = self.pending.pop_front() else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "upload session {}: bytes end at {} of {}",
                        self.id, self.next, self.len
                    ),
                ));
            };
            if off != self.next || data.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "upload session {}: a chunk at {off} where {} was expected",
                        self.id, self.next
                    ),
                ));
            }
            self.next = off.saturating_add(data.len() as u64);
            self.buf = data;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
