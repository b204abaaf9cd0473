//! Resumable upload sessions: the bytes of one rendition, written in as many calls as the
//! network needs, kept until they are imported as a version.
//!
//! **Data directory** (no database), per tenant (tenants share nothing here either):
//! `DATA_DIR/uploads/{tenant}/{id}.json` the session (what was declared, by whom, until
//! when), `{id}.part` the bytes received so far, `{id}.synced` the length of `.part` known
//! to be on disk (8 bytes, big-endian). `.part` is flushed and `.synced` rewritten at the
//! end of every write call and every [`SYNC_EVERY`] bytes within one; after a crash `.part`
//! is cut back to `.synced`, so `persisted_size` never counts bytes the disk may not hold.
//! Who writes and whether an import runs is known to the running server only.
//!
//! **Shared backend** (a database): the session and its bytes are rows of the database
//! ([`akte_postgres::uploads`]), so that a write on any instance continues where a write on
//! another one stopped and any instance imports the session. Each received chunk is one
//! committed transaction that checks that the write still holds the session and that the
//! chunk starts at the session's end: `persisted_size` is exactly what the database holds.
//! A new write takes the session over (the older one is refused at its next chunk with
//! UPLOAD_OFFSET_MISMATCH, as on one instance); an import holds the session for
//! [`IMPORT_HOLD`], renewed while its bytes are read, so that an import on an instance that
//! died gives way. Expired sessions are removed when the tenant creates a session.
//!
//! The digest is checked over all bytes when the session is imported, never before.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akte_core::embedded::fsutil;
use akte_postgres::uploads::{PartsReader, PgUploads, Refusal};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// How long a session is kept when it is not imported.
pub const KEEP: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Open sessions per tenant.
pub const MAX_PER_TENANT: usize = 1000;
/// Bytes written between two flushes within one write call.
pub const SYNC_EVERY: u64 = 64 << 20;
/// How long an import holds a session in the database before another may take it (the
/// import renews it every `IMPORT_RENEW` (a minute) while it reads the bytes).
pub const IMPORT_HOLD: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Between two renewals of an import's hold.
const IMPORT_RENEW: Duration = Duration::from_secs(60);

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: Uuid,
    /// The document the version will belong to.
    pub document: Uuid,
    /// Declared file name.
    pub file_name: String,
    /// Declared media type.
    pub media_type: String,
    /// Declared SHA-256, hex.
    pub sha256: String,
    /// Declared size.
    pub size: u64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Removed after.
    pub expire_time: DateTime<Utc>,
    /// Who created it.
    pub creator: String,
}

/// What only a running server knows of a session: who writes and whether it is imported.
///
/// Its lock is a blocking one, taken inside the blocking tasks that touch the session's
/// files: a call whose future is dropped (the client went away) cannot leave a task running
/// outside the lock while another call appends.
#[derive(Debug, Default)]
struct Live {
    state: Mutex<LiveState>,
}

#[derive(Debug, Default)]
struct LiveState {
    /// Bumped by every write call and by imports and deletes; a write whose number is no
    /// longer current has been taken over and stops.
    generation: u64,
    /// An import is running: writes and deletes are refused.
    importing: bool,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A write call's hold on a session: its number, and where it appends.
#[derive(Debug)]
pub struct Writer {
    tenant: String,
    id: Uuid,
    generation: u64,
    sink: Sink,
    /// Bytes the session holds after this writer's appends.
    pub persisted: u64,
    size: u64,
}

/// Where a writer appends.
#[derive(Debug)]
enum Sink {
    /// The session's `.part` file, and the bytes appended since it was last flushed.
    File { file: File, unsynced: u64 },
    /// The database: every chunk is committed on its own.
    Db,
}

fn being_imported(name: &str) -> ApiError {
    ApiError::FailedPrecondition {
        resource: name.to_owned(),
        reason: "the session is being imported".into(),
    }
}

/// The upload sessions of all tenants.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    live: Mutex<HashMap<(String, Uuid), Arc<Live>>>,
    /// The shared backend's sessions, if there is one (then no files are used).
    db: Option<PgUploads>,
}

fn db_failed(e: akte_postgres::PgError) -> ApiError {
    ApiError::Store(akte_core::store::StoreError::Meta(
        akte_core::backend::MetaError::Io(e.io("upload sessions")),
    ))
}

fn taken_over(persisted: u64) -> ApiError {
    ApiError::UploadOffsetMismatch {
        persisted,
        reason: "another write to the session took over".into(),
    }
}

/// Reads a session's bytes from the database and renews the import's hold while it does.
struct Held {
    inner: PartsReader,
    db: PgUploads,
    tenant: String,
    id: String,
    renewed: Instant,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.renewed.elapsed() >= IMPORT_RENEW {
            let until = (Utc::now() + IMPORT_HOLD).timestamp_millis();
            self.db
                .renew_import(&self.tenant, &self.id, until)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.renewed = Instant::now();
        }
        self.inner.read(buf)
    }
}

fn internal(what: &str, path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("{what} {}: {e}", path.display()))
}

/// `tenants/{tenant}/documents/{document}/uploadSessions/{id}`.
pub fn session_name(tenant: &str, document: Uuid, id: Uuid) -> String {
    format!("tenants/{tenant}/documents/{document}/uploadSessions/{id}")
}

impl Uploads {
    /// The sessions under `data_dir`: expired ones are removed, and bytes beyond what was
    /// flushed are cut (they may be garbage after a crash).
    pub fn open(data_dir: &Path) -> Uploads {
        let u = Uploads {
            dir: data_dir.join("uploads"),
            live: Mutex::new(HashMap::new()),
            db: None,
        };
        let Ok(tenants) = std::fs::read_dir(&u.dir) else {
            return u;
        };
        for t in tenants.flatten() {
            let tenant = t.file_name().to_string_lossy().into_owned();
            if akte_core::store::validate_tenant_id(&tenant).is_err() {
                continue;
            }
            for id in u.ids(&tenant) {
                match u.read(&tenant, id) {
                    Ok(Some(s)) if s.expire_time > Utc::now() => u.recover(&tenant, id),
                    Ok(_) => u.remove_files(&tenant, id),
                    Err(e) => {
                        tracing::error!(tenant = %tenant, session = %id, "upload session unreadable, left alone: {e}")
                    }
                }
            }
        }
        u
    }

    /// The sessions of an installation whose instances share the database of `db`.
    pub fn open_shared(data_dir: &Path, db: PgUploads) -> Uploads {
        Uploads {
            dir: data_dir.join("uploads"),
            live: Mutex::new(HashMap::new()),
            db: Some(db),
        }
    }

    /// The first `len` bytes of a session, for its import.
    pub fn reader(
        &self,
        tenant: &str,
        id: Uuid,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, ApiError> {
        if let Some(db) = &self.db {
            let key = id.to_string();
            return Ok(Box::new(Held {
                inner: db.reader(tenant, &key, len),
                db: db.clone(),
                tenant: tenant.to_owned(),
                id: key,
                renewed: Instant::now(),
            }));
        }
        let part = self.part(tenant, id);
        let file = File::open(&part).map_err(|e| internal("opening", &part, e))?;
        Ok(Box::new(
            std::io::BufReader::with_capacity(1 << 20, file).take(len),
        ))
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.dir.join(tenant)
    }

    fn path(&self, tenant: &str, id: Uuid, ext: &str) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{id}.{ext}"))
    }

    /// The file holding the bytes.
    pub fn part(&self, tenant: &str, id: Uuid) -> PathBuf {
        self.path(tenant, id, "part")
    }

    fn ids(&self, tenant: &str) -> Vec<Uuid> {
        let Ok(items) = std::fs::read_dir(self.tenant_dir(tenant)) else {
            return Vec::new();
        };
        items
            .flatten()
            .filter_map(|f| {
                f.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| Uuid::parse_str(n).ok())
            })
            .collect()
    }

    fn recover(&self, tenant: &str, id: Uuid) {
        let part = self.part(tenant, id);
        let synced = self.synced(tenant, id);
        let cut =
            OpenOptions::new()
                .write(true)
                .open(&part)
                .and_then(|f| match f.metadata()?.len() {
                    len if len > synced => f.set_len(synced).and_then(|_| f.sync_all()),
                    _ => Ok(()),
                });
        if let Err(e) = cut {
            tracing::error!(path = %part.display(), "recovering an upload session: {e}");
        }
    }

    fn synced(&self, tenant: &str, id: Uuid) -> u64 {
        std::fs::read(self.path(tenant, id, "synced"))
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    }

    fn read(&self, tenant: &str, id: Uuid) -> Result<Option<Session>, ApiError> {
        let path = self.path(tenant, id, "json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| internal("reading", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(internal("reading", &path, e)),
        }
    }

    fn remove_files(&self, tenant: &str, id: Uuid) {
        // The record goes first: without it the session does not exist, whatever is left.
        for ext in ["json", "part", "synced"] {
            let p = self.path(tenant, id, ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %p.display(), "removing an upload session: {e}"),
            }
        }
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), id));
    }

    /// Removes the tenant's expired sessions.
    fn sweep(&self, tenant: &str) {
        for id in self.ids(tenant) {
            if let Ok(Some(s)) = self.read(tenant, id) {
                let live = self.live(tenant, id);
                let st = live.lock();
                if s.expire_time <= Utc::now() && !st.importing {
                    self.remove_files(tenant, id);
                }
            }
        }
    }

    /// Stores a new session with no bytes yet.
    pub fn create(&self, tenant: &str, session: &Session) -> Result<(), ApiError> {
        let quota = || ApiError::QuotaExceeded {
            what: "open upload sessions",
            limit: MAX_PER_TENANT,
            hint: "import or delete some, or let them expire",
        };
        if let Some(db) = &self.db {
            let record = serde_json::to_vec(session)
                .map_err(|e| ApiError::Internal(format!("encoding an upload session: {e}")))?;
            let created = db
                .create(
                    tenant,
                    &session.id.to_string(),
                    &record,
                    session.expire_time.timestamp_millis(),
                    Utc::now().timestamp_millis(),
                    MAX_PER_TENANT,
                )
                .map_err(db_failed)?;
            return if created { Ok(()) } else { Err(quota()) };
        }
        self.sweep(tenant);
        if self.ids(tenant).len() >= MAX_PER_TENANT {
            return Err(quota());
        }
        let dir = self.tenant_dir(tenant);
        fsutil::create_dir_all_durable(&dir).map_err(|e| internal("creating", &dir, e))?;
        let part = self.part(tenant, session.id);
        fsutil::open_new_with_mode(&part, 0o600).map_err(|e| internal("creating", &part, e))?;
        let synced = self.path(tenant, session.id, "synced");
        fsutil::write_file_atomic(&synced, &0u64.to_be_bytes(), 0o600)
            .map_err(|e| internal("writing", &synced, e))?;
        let json = self.path(tenant, session.id, "json");
        let bytes =
            serde_json::to_vec_pretty(session).map_err(|e| internal("encoding", &json, e))?;
        fsutil::write_file_atomic(&json, &bytes, 0o600).map_err(|e| internal("writing", &json, e))
    }

    /// A session of `document` and the number of bytes it holds; NOT_FOUND (of `name`)
    /// if there is none, it expired, or it belongs to another document.
    pub fn get(
        &self,
        tenant: &str,
        document: Uuid,
        id: Uuid,
        name: &str,
    ) -> Result<(Session, u64), ApiError> {
        let not_found = || ApiError::NotFound {
            resource: name.to_owned(),
        };
        let (s, stored) = match &self.db {
            Some(db) => {
                let row = db
                    .get(tenant, &id.to_string())
                    .map_err(db_failed)?
                    .ok_or_else(not_found)?;
                let s: Session = serde_json::from_slice(&row.record)
                    .map_err(|e| ApiError::Internal(format!("stored upload session {id}: {e}")))?;
                (s, Some(row.persisted))
            }
            None => (self.read(tenant, id)?.ok_or_else(not_found)?, None),
        };
        if s.document != document {
            return Err(not_found());
        }
        if s.expire_time <= Utc::now() {
            // Removed by the next sweep (an import that is running finishes first).
            return Err(not_found());
        }
        if let Some(persisted) = stored {
            return Ok((s, persisted));
        }
        let part = self.part(tenant, id);
        let len = std::fs::metadata(&part)
            .map_err(|e| internal("reading", &part, e))?
            .len();
        Ok((s, len))
    }

    /// What a running server knows of the session.
    fn live(&self, tenant: &str, id: Uuid) -> Arc<Live> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tenant.to_owned(), id))
            .or_default()
            .clone()
    }

    /// Removes a session and its bytes; refused while it is imported. A write still open
    /// stops at its next chunk.
    pub fn delete(
        &self,
        tenant: &str,
        document: Uuid,
        id: Uuid,
        name: &str,
    ) -> Result<(), ApiError> {
        if let Some(db) = &self.db {
            self.get(tenant, document, id, name)?;
            return match db
                .delete(tenant, &id.to_string(), Utc::now().timestamp_millis())
                .map_err(db_failed)?
            {
                Ok(()) => Ok(()),
                Err(Refusal::Importing) => Err(being_imported(name)),
                Err(_) => Err(ApiError::NotFound {
                    resource: name.to_owned(),
                }),
            };
        }
        let live = self.live(tenant, id);
        let mut st = live.lock();
        self.get(tenant, document, id, name)?;
        if st.importing {
            return Err(being_imported(name));
        }
        st.generation += 1;
        self.remove_files(tenant, id);
        Ok(())
    }

    /// Starts a write at `offset`, which must be the number of bytes the session holds; the
    /// session is taken over from any write still open.
    pub fn begin_write(
        &self,
        tenant: &str,
        document: Uuid,
        id: Uuid,
        name: &str,
        offset: u64,
    ) -> Result<Writer, ApiError> {
        if let Some(db) = &self.db {
            let (s, _) = self.get(tenant, document, id, name)?;
            let started = db
                .begin_write(
                    tenant,
                    &id.to_string(),
                    offset,
                    Utc::now().timestamp_millis(),
                )
                .map_err(db_failed)?;
            let generation = match started {
                Ok(g) => g,
                Err(Refusal::Importing) => return Err(being_imported(name)),
                Err(Refusal::Offset(persisted)) => {
                    return Err(ApiError::UploadOffsetMismatch {
                        persisted,
                        reason: format!("the write starts at offset {offset}"),
                    })
                }
                Err(_) => {
                    return Err(ApiError::NotFound {
                        resource: name.to_owned(),
                    })
                }
            };
            return Ok(Writer {
                tenant: tenant.to_owned(),
                id,
                generation: u64::try_from(generation).unwrap_or(0),
                sink: Sink::Db,
                persisted: offset,
                size: s.size,
            });
        }
        let live = self.live(tenant, id);
        let mut st = live.lock();
        if st.importing {
            return Err(being_imported(name));
        }
        let (s, persisted) = self.get(tenant, document, id, name)?;
        if offset != persisted {
            return Err(ApiError::UploadOffsetMismatch {
                persisted,
                reason: format!("the write starts at offset {offset}"),
            });
        }
        st.generation += 1;
        Ok(Writer {
            tenant: tenant.to_owned(),
            id,
            generation: st.generation,
            sink: Sink::File {
                file: self.append_to(tenant, id)?,
                unsynced: 0,
            },
            persisted,
            size: s.size,
        })
    }

    /// Appends a chunk for `w`, unless another write took over or the chunk goes beyond
    /// the declared size (then nothing is appended).
    pub fn append(&self, w: &mut Writer, chunk: &[u8]) -> Result<(), ApiError> {
        let len = chunk.len() as u64;
        let too_much = |w: &Writer| ApiError::SizeMismatch {
            expected: w.size,
            actual: w.persisted + len,
            at_least: true,
        };
        if let Some(db) = &self.db {
            if w.persisted + len > w.size {
                return Err(too_much(w));
            }
            let generation = i64::try_from(w.generation).unwrap_or(i64::MAX);
            let appended = db
                .append(&w.tenant, &w.id.to_string(), generation, w.persisted, chunk)
                .map_err(db_failed)?;
            return match appended {
                Ok(end) => {
                    w.persisted = end;
                    Ok(())
                }
                Err(Refusal::TakenOver(p) | Refusal::Offset(p)) => Err(taken_over(p)),
                // Deleted or imported meanwhile.
                Err(_) => Err(taken_over(w.persisted)),
            };
        }
        let live = self.live(&w.tenant, w.id);
        let st = live.lock();
        if st.generation != w.generation {
            return Err(taken_over(w.persisted));
        }
        if w.persisted + len > w.size {
            return Err(too_much(w));
        }
        let Sink::File { file, unsynced } = &mut w.sink else {
            return Err(ApiError::Internal(
                "a database write on a data directory".into(),
            ));
        };
        file.write_all(chunk)
            .map_err(|e| ApiError::Internal(format!("appending to an upload session: {e}")))?;
        *unsynced += len;
        if *unsynced >= SYNC_EVERY {
            self.sync(&w.tenant, w.id, file)?;
            *unsynced = 0;
        }
        w.persisted += len;
        Ok(())
    }

    /// Ends a write: flushes what it appended and records it as on disk. A write that was
    /// taken over leaves that to the one that took over. Returns the bytes the session holds.
    pub fn end_write(&self, w: &Writer) -> Result<u64, ApiError> {
        let Sink::File { file, .. } = &w.sink else {
            // Every chunk was committed as it came.
            return Ok(w.persisted);
        };
        let live = self.live(&w.tenant, w.id);
        let st = live.lock();
        if st.generation != w.generation {
            return Ok(w.persisted);
        }
        self.sync(&w.tenant, w.id, file)
    }

    /// Starts an import: all declared bytes must be there, no other import may run; writes
    /// and deletes are refused until [`Uploads::end_import`].
    pub fn begin_import(
        &self,
        tenant: &str,
        document: Uuid,
        id: Uuid,
        name: &str,
    ) -> Result<Session, ApiError> {
        if let Some(db) = &self.db {
            let (s, _) = self.get(tenant, document, id, name)?;
            let now = Utc::now();
            let started = db
                .begin_import(
                    tenant,
                    &id.to_string(),
                    s.size,
                    now.timestamp_millis(),
                    (now + IMPORT_HOLD).timestamp_millis(),
                )
                .map_err(db_failed)?;
            return match started {
                Ok(()) => Ok(s),
                Err(Refusal::Importing) => Err(being_imported(name)),
                Err(Refusal::Incomplete(persisted)) => Err(ApiError::UploadIncomplete {
                    persisted,
                    size: s.size,
                }),
                Err(_) => Err(ApiError::NotFound {
                    resource: name.to_owned(),
                }),
            };
        }
        let live = self.live(tenant, id);
        let mut st = live.lock();
        if st.importing {
            return Err(being_imported(name));
        }
        let (s, persisted) = self.get(tenant, document, id, name)?;
        if persisted != s.size {
            return Err(ApiError::UploadIncomplete {
                persisted,
                size: s.size,
            });
        }
        st.importing = true;
        st.generation += 1;
        Ok(s)
    }

    /// Ends an import; `imported` removes the session with its bytes.
    pub fn end_import(&self, tenant: &str, id: Uuid, imported: bool) {
        if let Some(db) = &self.db {
            if let Err(e) = db.end_import(tenant, &id.to_string(), imported) {
                // The hold runs out by itself; an imported session then expires.
                tracing::error!(tenant = %tenant, session = %id, "ending an upload import: {e}");
            }
            return;
        }
        let live = self.live(tenant, id);
        let mut st = live.lock();
        st.importing = false;
        if imported {
            self.remove_files(tenant, id);
        }
    }

    /// Opens the bytes for appending.
    fn append_to(&self, tenant: &str, id: Uuid) -> Result<File, ApiError> {
        let part = self.part(tenant, id);
        OpenOptions::new()
            .append(true)
            .open(&part)
            .map_err(|e| internal("opening", &part, e))
    }

    /// Flushes the bytes and records how many are on disk.
    fn sync(&self, tenant: &str, id: Uuid, file: &File) -> Result<u64, ApiError> {
        let part = self.part(tenant, id);
        file.sync_data()
            .map_err(|e| internal("flushing", &part, e))?;
        let len = file
            .metadata()
            .map_err(|e| internal("reading", &part, e))?
            .len();
        let synced = self.path(tenant, id, "synced");
        fsutil::write_file_atomic(&synced, &len.to_be_bytes(), 0o600)
            .map_err(|e| internal("writing", &synced, e))?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(document: Uuid, expire_time: DateTime<Utc>) -> Session {
        Session {
            id: Uuid::new_v4(),
            document,
            file_name: "a.pdf".into(),
            media_type: "application/pdf".into(),
            sha256: "00".repeat(32),
            size: 10,
            create_time: Utc::now(),
            expire_time,
            creator: "clerk".into(),
        }
    }

    #[test]
    fn unflushed_bytes_are_cut_at_open_and_expired_sessions_removed() {
        let dir = tempfile::tempdir().unwrap();
        let u = Uploads::open(dir.path());
        let doc = Uuid::new_v4();
        let s = session(doc, Utc::now() + KEEP);
        u.create("t", &s).unwrap();
        let mut w = u.begin_write("t", doc, s.id, "n", 0).unwrap();
        u.append(&mut w, b"abcd").unwrap();
        assert_eq!(u.end_write(&w).unwrap(), 4);
        let mut w = u.begin_write("t", doc, s.id, "n", 4).unwrap();
        u.append(&mut w, b"ef").unwrap();
        // A second writer takes over; the first one's next chunk is refused.
        let mut other = u.begin_write("t", doc, s.id, "n", 6).unwrap();
        assert!(matches!(
            u.append(&mut w, b"g"),
            Err(ApiError::UploadOffsetMismatch { .. })
        ));
        assert!(matches!(
            u.append(&mut other, b"too much"),
            Err(ApiError::SizeMismatch { .. })
        ));
        drop((w, other));
        assert_eq!(u.get("t", doc, s.id, "n").unwrap().1, 6);
        // Another document's name for it is no such session.
        assert!(u.get("t", Uuid::new_v4(), s.id, "n").is_err());
        let old = session(doc, Utc::now() - chrono::TimeDelta::seconds(1));
        u.create("t", &old).unwrap();
        // As after a crash: the unflushed "ef" goes, the expired session too.
        let u = Uploads::open(dir.path());
        assert_eq!(u.get("t", doc, s.id, "n").unwrap().1, 4);
        assert!(matches!(
            u.get("t", doc, old.id, "n"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(!u.part("t", old.id).exists());
        assert!(matches!(
            u.begin_import("t", doc, s.id, "n"),
            Err(ApiError::UploadIncomplete {
                persisted: 4,
                size: 10
            })
        ));
        u.delete("t", doc, s.id, "n").unwrap();
        assert!(u.get("t", doc, s.id, "n").is_err());
        assert!(!u.part("t", s.id).exists());
    }
}
