//! Document content in PostgreSQL, for installations without object storage: an object
//! row per digest in `akte_objects`, its bytes in 1 MiB chunks in `akte_chunks`.
//!
//! A put writes every chunk and the object row in one transaction, so a put that fails
//! or is cut off by a crash leaves nothing behind, and a committed object is whole. Two
//! puts of the same bytes race harmlessly: the second finds the row and rolls back.

use std::io::{self, Read};
use std::sync::Arc;

use akte_core::backend::content::{
    check_expected, read_full, Codec, ContentError, Destruction, ObjectInfo, PutOutcome,
};
use akte_core::backend::{ContentBackend, ContentRead};
use akte_core::Digest;
use deadpool_postgres::Object;
use sha2::{Digest as _, Sha256};

use crate::db::{Db, PgError};

/// Bytes per chunk row.
const CHUNK: usize = 1 << 20;

/// Digests listed per query.
const LIST_PAGE: i64 = 1000;

/// One tenant's content.
pub struct PgContent {
    db: Arc<Db>,
    tenant: String,
}

impl PgContent {
    pub(crate) fn new(db: Arc<Db>, tenant: &str) -> PgContent {
        PgContent {
            db,
            tenant: tenant.to_owned(),
        }
    }

    fn fail(&self, digest: Option<&Digest>, e: PgError) -> ContentError {
        let place = match digest {
            Some(d) => self.describe(d),
            None => format!("{} akte_objects (tenant {})", self.db.place(), self.tenant),
        };
        ContentError::Io(e.io(place))
    }

    /// Stores an object whose bytes are all in memory: one statement.
    fn put_whole(&self, data: &[u8], digest: Digest) -> Result<bool, ContentError> {
        let tenant = self.tenant.clone();
        let size = data.len() as i64;
        let chunks: Vec<Vec<u8>> = data.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let ns: Vec<i32> = (0..chunks.len() as i32).collect();
        let count = chunks.len() as i32;
        self.db
            .run("store content", move |c| async move {
                let op = "store content";
                let st = c
                    .prepare_cached(
                        "WITH o AS (
                             INSERT INTO akte_objects (tenant, digest, id, size, chunks)
                             VALUES ($1, $2, nextval('akte_object_ids'), $3, $4)
                             ON CONFLICT (tenant, digest) DO NOTHING
                             RETURNING id),
                         c AS (
                             INSERT INTO akte_chunks (object, n, data)
                             SELECT o.id, t.n, t.d FROM o, unnest($5::int4[], $6::bytea[])
                             AS t(n, d))
                         SELECT count(*) FROM o",
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                let row = c
                    .query_one(&st, &[&tenant, &&digest.0[..], &size, &count, &ns, &chunks])
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(row.get::<_, i64>(0) > 0)
            })
            .map_err(|e| self.fail(Some(&digest), e))
    }

    fn object_row(&self, digest: &Digest) -> Result<(i64, u64, i32), ContentError> {
        let tenant = self.tenant.clone();
        let d = *digest;
        let row = self
            .db
            .run("look up content", move |c| async move {
                let op = "look up content";
                let st = c
                    .prepare_cached(
                        "SELECT id, size, chunks FROM akte_objects WHERE tenant = $1 AND digest = $2",
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                let row = c
                    .query_opt(&st, &[&tenant, &&d.0[..]])
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(row.map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64, r.get::<_, i32>(2))))
            })
            .map_err(|e| self.fail(Some(digest), e))?;
        row.ok_or_else(|| ContentError::NotFound {
            digest: *digest,
            place: self.describe(digest),
        })
    }
}

impl ContentBackend for PgContent {
    fn put(
        &self,
        reader: &mut dyn Read,
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let limit = expected_size.map_or(u64::MAX, |s| s.saturating_add(1));
        let mut reader = reader.take(limit);
        let mut buf = vec![0u8; CHUNK];
        let mut received = 0u64;
        let n = read_full(&mut reader, &mut buf)
            .map_err(|source| ContentError::Read { received, source })?;
        if n < CHUNK {
            buf.truncate(n);
            return self.put_bytes(&buf, expected_digest, expected_size);
        }
        // Larger than one chunk: stream the chunks into one transaction. On an early
        // return the connection, with its open transaction, is taken out of the pool and
        // dropped, which rolls the transaction back.
        let op = "store content";
        let conn = self.db.connection(op).map_err(|e| self.fail(None, e))?;
        let tenant = self.tenant.clone();
        let (mut conn, id) = self
            .db
            .block(op, async move {
                let r = async {
                    conn.batch_execute("BEGIN").await?;
                    conn.query_one("SELECT nextval('akte_object_ids')", &[])
                        .await
                }
                .await;
                match r {
                    Ok(row) => Ok((conn, row.get::<_, i64>(0))),
                    Err(e) => {
                        drop(Object::take(conn));
                        Err(PgError::of(op, &e))
                    }
                }
            })
            .map_err(|e| self.fail(None, e))?;
        let mut hasher = Sha256::new();
        let mut chunk_no = 0i32;
        let mut filled = n;
        loop {
            let data = buf[..filled].to_vec();
            hasher.update(&data);
            received += filled as u64;
            if let Some(expected) = expected_size.filter(|e| received > *e) {
                drop(Object::take(conn));
                return Err(ContentError::SizeMismatch {
                    expected,
                    actual: received,
                });
            }
            let n_this = chunk_no;
            conn = self
                .db
                .block(op, async move {
                    let r = conn
                        .execute(
                            "INSERT INTO akte_chunks (object, n, data) VALUES ($1, $2, $3)",
                            &[&id, &n_this, &data],
                        )
                        .await;
                    match r {
                        Ok(_) => Ok(conn),
                        Err(e) => {
                            drop(Object::take(conn));
                            Err(PgError::of(op, &e))
                        }
                    }
                })
                .map_err(|e| self.fail(None, e))?;
            chunk_no += 1;
            filled = match read_full(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(source) => {
                    drop(Object::take(conn));
                    return Err(ContentError::Read { received, source });
                }
            };
        }
        let digest = Digest(hasher.finalize().into());
        if let Err(e) = check_expected(digest, received, expected_digest, expected_size) {
            drop(Object::take(conn));
            return Err(e);
        }
        let size = received as i64;
        let newly_stored = self
            .db
            .block(op, async move {
                let r = async {
                    let row = conn
                        .query_opt(
                            "INSERT INTO akte_objects (tenant, digest, id, size, chunks)
                             VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (tenant, digest) DO NOTHING RETURNING id",
                            &[&tenant, &&digest.0[..], &id, &size, &chunk_no],
                        )
                        .await?;
                    // Stored before: its chunks are there already, ours are dropped.
                    let fresh = row.is_some();
                    conn.batch_execute(if fresh { "COMMIT" } else { "ROLLBACK" })
                        .await?;
                    Ok(fresh)
                }
                .await;
                if r.is_err() {
                    drop(Object::take(conn));
                }
                r.map_err(|e: tokio_postgres::Error| PgError::of(op, &e))
            })
            .map_err(|e| self.fail(Some(&digest), e))?;
        Ok(PutOutcome {
            digest,
            size: received,
            stored_size: received,
            codec: Codec::Raw,
            newly_stored,
        })
    }

    fn put_bytes(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let size = data.len() as u64;
        if let Some(expected) = expected_size.filter(|e| *e != size) {
            return Err(ContentError::SizeMismatch {
                expected,
                actual: size,
            });
        }
        let digest = Digest::of(data);
        check_expected(digest, size, expected_digest, expected_size)?;
        let newly_stored = self.put_whole(data, digest)?;
        Ok(PutOutcome {
            digest,
            size,
            stored_size: size,
            codec: Codec::Raw,
            newly_stored,
        })
    }

    fn get(&self, digest: &Digest) -> Result<Box<dyn ContentRead>, ContentError> {
        let (id, size, chunks) = self.object_row(digest)?;
        Ok(Box::new(ChunkReader {
            db: self.db.clone(),
            place: self.describe(digest),
            digest: *digest,
            id,
            size,
            chunks,
            next_chunk: 0,
            buf: Vec::new(),
            at: 0,
            received: 0,
            hasher: Sha256::new(),
            verified: false,
        }))
    }

    fn stat(&self, digest: &Digest) -> Result<ObjectInfo, ContentError> {
        let (_, size, _) = self.object_row(digest)?;
        Ok(ObjectInfo {
            size,
            stored_size: size,
            codec: Codec::Raw,
        })
    }

    fn remove(&self, digest: &Digest, _authority: Destruction) -> Result<bool, ContentError> {
        let tenant = self.tenant.clone();
        let d = *digest;
        self.db
            .run("remove content", move |c| async move {
                let op = "remove content";
                let row = c
                    .query_one(
                        "WITH o AS (
                             DELETE FROM akte_objects WHERE tenant = $1 AND digest = $2
                             RETURNING id),
                         c AS (DELETE FROM akte_chunks WHERE object IN (SELECT id FROM o))
                         SELECT count(*) FROM o",
                        &[&tenant, &&d.0[..]],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(row.get::<_, i64>(0) > 0)
            })
            .map_err(|e| self.fail(Some(digest), e))
    }

    fn list(&self) -> Box<dyn Iterator<Item = Result<Digest, ContentError>> + Send + '_> {
        let mut after: Vec<u8> = Vec::new();
        let mut page: std::collections::VecDeque<Digest> = Default::default();
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if page.is_empty() && !done {
                let (tenant, from) = (self.tenant.clone(), after.clone());
                let rows = self.db.run("list content", move |c| async move {
                    let rows = c
                        .query(
                            "SELECT digest FROM akte_objects WHERE tenant = $1 AND digest > $2
                             ORDER BY digest LIMIT $3",
                            &[&tenant, &from, &LIST_PAGE],
                        )
                        .await
                        .map_err(|e| PgError::of("list content", &e))?;
                    Ok(rows
                        .into_iter()
                        .map(|r| r.get::<_, Vec<u8>>(0))
                        .collect::<Vec<_>>())
                });
                match rows {
                    Ok(rows) => {
                        done = (rows.len() as i64) < LIST_PAGE;
                        for d in rows {
                            after = d.clone();
                            match Digest::from_slice(&d) {
                                Some(d) => page.push_back(d),
                                None => {
                                    done = true;
                                    return Some(Err(ContentError::Stray {
                                        place: format!("{} akte_objects", self.db.place()),
                                        reason: "a digest that is not 32 bytes".into(),
                                    }));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(self.fail(None, e)));
                    }
                }
            }
            page.pop_front().map(Ok)
        }))
    }

    fn describe(&self, digest: &Digest) -> String {
        format!(
            "{} akte_objects (tenant {}, {digest})",
            self.db.place(),
            self.tenant
        )
    }
}

/// Reads an object chunk by chunk and checks length and digest at the end.
struct ChunkReader {
    db: Arc<Db>,
    place: String,
    digest: Digest,
    id: i64,
    size: u64,
    chunks: i32,
    next_chunk: i32,
    buf: Vec<u8>,
    at: usize,
    received: u64,
    hasher: Sha256,
    verified: bool,
}

impl ChunkReader {
    fn corrupt(&self, reason: String) -> io::Error {
        io::Error::other(ContentError::Corrupt {
            digest: self.digest,
            place: self.place.clone(),
            reason,
        })
    }

    fn load_next(&mut self) -> io::Result<()> {
        let (id, n) = (self.id, self.next_chunk);
        let data = self
            .db
            .run("read content", move |c| async move {
                let op = "read content";
                let st = c
                    .prepare_cached("SELECT data FROM akte_chunks WHERE object = $1 AND n = $2")
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                let row = c
                    .query_opt(&st, &[&id, &n])
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            })
            .map_err(|e| io::Error::other(ContentError::Io(e.io(self.place.clone()))))?;
        match data {
            Some(d) => {
                self.buf = d;
                self.at = 0;
                self.next_chunk += 1;
                Ok(())
            }
            None => Err(self.corrupt(format!("chunk {n} is missing"))),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.verified {
            return Ok(0);
        }
        while self.at >= self.buf.len() {
            if self.next_chunk >= self.chunks {
                let actual = Digest(self.hasher.finalize_reset().into());
                if self.received != self.size {
                    return Err(self.corrupt(format!(
                        "holds {} bytes, its row says {}",
                        self.received, self.size
                    )));
                }
                if actual != self.digest {
                    return Err(self.corrupt(format!("content hashes to {actual}")));
                }
                self.verified = true;
                return Ok(0);
            }
            self.load_next()?;
        }
        let n = (self.buf.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.hasher.update(&out[..n]);
        self.at += n;
        self.received += n as u64;
        Ok(n)
    }
}

impl ContentRead for ChunkReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn place(&self) -> String {
        self.place.clone()
    }
}

impl std::fmt::Debug for PgContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgContent")
            .field("tenant", &self.tenant)
            .finish()
    }
}
