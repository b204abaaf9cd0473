//! The journal in PostgreSQL: entries in `akte_entries` (with their attachments in
//! `akte_attachments`), their end in the tenant's `akte_heads` row.
//!
//! # Appends from many instances
//! An append session opens a transaction that locks the tenant's head row
//! (`SELECT … FOR UPDATE`): another instance's session waits there until this one's
//! group has committed, then reads the new end, so sequence numbers stay gapless and
//! unique and every chain link names the entry before it, whichever instance wrote it.
//! The head update also checks the old end (`WHERE next_seq = …`), so even a lost lock
//! could not fork the journal.
//!
//! # Group commit
//! Sessions of this instance queue entries in the open transaction; the first writer
//! that waits for durability becomes the leader, lets writers already queued for the
//! session add theirs, and commits them all in one transaction with their index changes
//! (the [`Overlay`](crate::overlay::Overlay)), so the index never runs ahead of or
//! behind the committed journal. A failed commit fences the journal: the engine opens
//! the tenant again, from what the database holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use akte_core::backend::content::Destruction;
use akte_core::backend::journal::DamageCount;
use akte_core::backend::{AppendSession, FaultKind, JournalBackend, JournalScanItem};
use akte_core::entry::{Attachment, Entry, EntryDraft};
use akte_core::journal::{
    check_attachments, check_sealed, seal_entry, JournalError, JournalStats, Location, Record,
    Recovery, Ticket,
};
use akte_core::merkle::leaf_hash;
use akte_core::Digest;
use deadpool_postgres::Object;
use tokio_postgres::Statement;

use crate::cache::ReadCache;
use crate::db::{Db, PgError};
use crate::overlay::{Changes, Overlay};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Entries read per query when streaming the journal.
const PAGE: u64 = 256;

/// The journal's end as the head row (and the entries queued after it) say.
#[derive(Debug, Clone, Copy)]
struct Head {
    next_seq: u64,
    last_leaf: Digest,
    last_micros: i64,
}

/// An entry queued in the open transaction.
struct Pending {
    seq: u64,
    entry: Vec<u8>,
    leaf: Digest,
    attachments: Vec<Attachment>,
}

struct WriteState {
    /// The transaction that holds the head row's lock, while entries are queued in it.
    txn: Option<Object>,
    /// The end including queued entries.
    head: Head,
    pending: Vec<Pending>,
    /// Entries `0..durable` are committed (as far as this instance knows).
    durable: u64,
    committing: bool,
    fenced: Option<(String, FaultKind)>,
}

/// What the journal and the index of one open tenant share: the append state and the
/// index changes of the entries not yet committed.
pub(crate) struct Shared {
    pub(crate) db: Arc<Db>,
    pub(crate) tenant: String,
    session: Mutex<()>,
    state: Mutex<WriteState>,
    committed: Condvar,
    /// Writers waiting for the session (the leader lets them queue first).
    queued: AtomicUsize,
    pub(crate) overlay: RwLock<Overlay>,
    /// Committed index values (see [`ReadCache`]).
    pub(crate) cache: ReadCache,
    stats: JournalStats,
}

thread_local! {
    /// The [`Shared`] whose append session this thread holds (0: none).
    static IN_SESSION: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether this thread holds any tenant's append session.
pub(crate) fn in_a_session() -> bool {
    IN_SESSION.with(|c| c.get()) != 0
}

/// Whether this thread holds `shared`'s append session (and so its head row lock).
pub(crate) fn holds_session(shared: &Shared) -> bool {
    IN_SESSION.with(|c| c.get()) == shared as *const Shared as usize
}

impl Drop for Shared {
    /// A transaction still open (entries queued by writers that went away, never
    /// acknowledged) holds the head row's lock: its connection is closed, so that the
    /// server rolls it back, instead of going back to the pool with the lock held.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = st.txn.take() {
            drop(Object::take(client));
        }
    }
}

impl Shared {
    pub(crate) fn new(db: Arc<Db>, tenant: &str, durable: u64) -> Arc<Shared> {
        Arc::new(Shared {
            db,
            tenant: tenant.to_owned(),
            session: Mutex::new(()),
            state: Mutex::new(WriteState {
                txn: None,
                head: Head {
                    next_seq: durable,
                    last_leaf: Digest::ZERO,
                    last_micros: i64::MIN,
                },
                pending: Vec::new(),
                durable,
                committing: false,
                fenced: None,
            }),
            committed: Condvar::new(),
            queued: AtomicUsize::new(0),
            overlay: RwLock::new(Overlay::default()),
            cache: ReadCache::new(),
            stats: JournalStats::default(),
        })
    }

    /// Entries `0..n` are committed, as far as this instance knows.
    pub(crate) fn durable_here(&self) -> u64 {
        lock(&self.state).durable
    }

    /// Holds the append session with nothing queued: no entries are queued or committed
    /// meanwhile. A group still queued (its writers are between queueing and waiting for
    /// it) is committed first: its open transaction holds the head row's lock, which the
    /// caller is about to take in a transaction of its own, while the group's leader would
    /// wait for the session this caller holds.
    pub(crate) fn exclusive(&self) -> MutexGuard<'_, ()> {
        let session = lock(&self.session);
        self.commit_queued(&session);
        session
    }

    pub(crate) fn place(&self) -> String {
        format!("{} tenant {}", self.db.place(), self.tenant)
    }
}

fn backend_error(e: PgError) -> JournalError {
    JournalError::Backend {
        reason: e.to_string(),
        kind: e.kind,
    }
}

/// One tenant's journal.
pub struct PgJournal {
    shared: Arc<Shared>,
}

impl PgJournal {
    pub(crate) fn new(shared: Arc<Shared>) -> PgJournal {
        PgJournal { shared }
    }

    fn place(&self) -> String {
        format!("{} akte_entries", self.shared.place())
    }

    fn damaged(&self, seq: u64, detail: String) -> JournalError {
        JournalError::Damaged {
            place: self.describe_location(Location {
                segment: 0,
                offset: seq,
            }),
            detail: format!("entry {seq}: {detail}"),
        }
    }

    /// Reads entries `from..to` as stored rows.
    fn rows(&self, from: u64, to: u64) -> Result<Vec<StoredRow>, JournalError> {
        let tenant = self.shared.tenant.clone();
        self.shared
            .db
            .run("read entries", move |c| async move {
                read_rows(&c, &tenant, from, to).await
            })
            .map_err(backend_error)
    }

    /// A stored row as a record, checked: the entry decodes, is the entry of its row, its
    /// leaf hash is the stored one, and its attachments match it.
    fn decode(&self, row: StoredRow) -> Result<Record, (JournalError, DamageCount)> {
        let seq = row.seq;
        let leaf = leaf_hash(&row.entry);
        let entry = Entry::decode(&row.entry).map_err(|e| {
            (
                self.damaged(seq, format!("does not decode: {e}")),
                DamageCount::Entry(leaf),
            )
        })?;
        if row.leaf != leaf.0[..] {
            return Err((
                self.damaged(
                    seq,
                    "its stored leaf hash is not the hash of its bytes".into(),
                ),
                DamageCount::Entry(leaf),
            ));
        }
        if entry.seq != seq {
            return Err((
                self.damaged(seq, format!("holds entry {} instead", entry.seq)),
                DamageCount::Entry(leaf),
            ));
        }
        check_attachments(&entry, &row.attachments).map_err(|e| {
            (
                self.damaged(seq, format!("attachments: {e}")),
                DamageCount::Entry(leaf),
            )
        })?;
        Ok(Record {
            entry,
            leaf,
            attachments: row.attachments,
            location: Location {
                segment: 0,
                offset: seq,
            },
        })
    }
}

/// An entry row with its attachments, as stored.
struct StoredRow {
    seq: u64,
    entry: Vec<u8>,
    leaf: Vec<u8>,
    attachments: Vec<Attachment>,
}

async fn read_rows(
    c: &Object,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Vec<StoredRow>, PgError> {
    let op = "read entries";
    let (from_i, to_i) = (from as i64, to as i64);
    let entries = c
        .prepare_cached(
            "SELECT seq, entry, leaf FROM akte_entries
             WHERE tenant = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
        )
        .await
        .map_err(|e| PgError::of(op, &e))?;
    let atts = c
        .prepare_cached(
            "SELECT seq, digest, len, bytes FROM akte_attachments
             WHERE tenant = $1 AND seq >= $2 AND seq < $3 ORDER BY seq, pos",
        )
        .await
        .map_err(|e| PgError::of(op, &e))?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&tenant, &from_i, &to_i];
    let (rows, att_rows) =
        futures_util::try_join!(c.query(&entries, &params), c.query(&atts, &params))
            .map_err(|e| PgError::of(op, &e))?;
    let mut out: Vec<StoredRow> = rows
        .into_iter()
        .map(|r| StoredRow {
            seq: r.get::<_, i64>(0) as u64,
            entry: r.get(1),
            leaf: r.get(2),
            attachments: Vec::new(),
        })
        .collect();
    let mut i = 0;
    for r in att_rows {
        let seq = r.get::<_, i64>(0) as u64;
        while i < out.len() && out[i].seq < seq {
            i += 1;
        }
        let Some(row) = out.get_mut(i).filter(|row| row.seq == seq) else {
            continue; // an attachment without its entry: the entry's check finds it
        };
        let digest: Vec<u8> = r.get(1);
        row.attachments.push(Attachment {
            digest: Digest::from_slice(&digest).unwrap_or(Digest::ZERO),
            len: r.get::<_, i32>(2) as u32,
            bytes: r.get(3),
        });
    }
    Ok(out)
}

struct PgSession<'a> {
    shared: &'a Shared,
    _guard: MutexGuard<'a, ()>,
}

impl AppendSession for PgSession<'_> {
    fn next_seq(&self) -> u64 {
        lock(&self.shared.state).head.next_seq
    }

    fn last_leaf(&self) -> Digest {
        lock(&self.shared.state).head.last_leaf
    }

    fn enqueue(
        &mut self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        let mut st = lock(&self.shared.state);
        let head = st.head;
        let last = if head.next_seq == 0 {
            i64::MIN
        } else {
            head.last_micros
        };
        let (entry, micros) = seal_entry(draft, head.next_seq, head.last_leaf, last, &attachments)?;
        Ok(queue(&mut st, entry, micros, attachments))
    }

    fn enqueue_sealed(
        &mut self,
        entry: Entry,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        let mut st = lock(&self.shared.state);
        let head = st.head;
        let micros = check_sealed(
            &entry,
            head.next_seq,
            head.last_leaf,
            head.last_micros,
            &attachments,
        )?;
        Ok(queue(&mut st, entry, micros, attachments))
    }
}

/// Queues a sealed entry in the open transaction and advances the end.
fn queue(st: &mut WriteState, entry: Entry, micros: i64, attachments: Vec<Attachment>) -> Ticket {
    let bytes = entry.encode();
    let leaf = leaf_hash(&bytes);
    let seq = entry.seq;
    st.pending.push(Pending {
        seq,
        entry: bytes,
        leaf,
        attachments,
    });
    st.head = Head {
        next_seq: seq + 1,
        last_leaf: leaf,
        last_micros: micros,
    };
    Ticket {
        entry,
        leaf,
        location: Location {
            segment: 0,
            offset: seq,
        },
    }
}

impl Drop for PgSession<'_> {
    /// A session that queued nothing gives the head row's lock back at once.
    fn drop(&mut self) {
        IN_SESSION.with(|c| c.set(0));
        let mut st = lock(&self.shared.state);
        if st.pending.is_empty() && !st.committing {
            if let Some(client) = st.txn.take() {
                drop(st);
                let _ = self.shared.db.block("roll back", async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                    Ok(())
                });
            }
        }
    }
}

/// Opens the append transaction: locks the head row, returns the journal's end.
///
/// One round trip: the statement is prepared once per connection, and the `BEGIN` batch
/// and the locking read are sent together (the driver pipelines requests polled
/// together, in the order they are first polled). Should `BEGIN` fail, the read's
/// result is not used.
async fn lock_head(c: &Object, tenant: &str) -> Result<Head, PgError> {
    let op = "lock the journal's end";
    let read = c
        .prepare_cached(
            "SELECT next_seq, last_leaf, last_micros FROM akte_heads WHERE tenant = $1 FOR UPDATE",
        )
        .await
        .map_err(|e| PgError::of(op, &e))?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant];
    let (begun, row) = futures_util::join!(
        c.batch_execute(
            "BEGIN; SET LOCAL lock_timeout = '30s'; \
             SET LOCAL idle_in_transaction_session_timeout = '60s'",
        ),
        c.query_opt(&read, &params)
    );
    begun.map_err(|e| PgError::of(op, &e))?;
    let row = row
        .map_err(|e| PgError::of(op, &e))?
        .ok_or_else(|| PgError::new(op, FaultKind::NotFound, "the tenant has no journal"))?;
    let leaf: Vec<u8> = row.get(1);
    Ok(Head {
        next_seq: row.get::<_, i64>(0) as u64,
        last_leaf: Digest::from_slice(&leaf).ok_or_else(|| {
            PgError::new(
                op,
                FaultKind::Corrupt,
                "the stored last leaf is not 32 bytes",
            )
        })?,
        last_micros: row.get(2),
    })
}

/// The statements a commit sends, prepared once per connection (the driver caches them),
/// so that a commit's writes and its `COMMIT` go out together without a round trip to
/// prepare any of them.
struct CommitStatements {
    entries: Statement,
    attachments: Statement,
    advance: Statement,
    upsert: Statement,
    delete: Statement,
    nodes: Statement,
    tree_len: Statement,
}

impl CommitStatements {
    async fn prepare(c: &Object) -> Result<CommitStatements, tokio_postgres::Error> {
        let (entries, attachments, advance, upsert, delete, nodes, tree_len) = futures_util::try_join!(
            c.prepare_cached(
                "INSERT INTO akte_entries (tenant, seq, entry, leaf)
                 SELECT $1::text, s, e, l FROM unnest($2::int8[], $3::bytea[], $4::bytea[])
                 AS t(s, e, l)",
            ),
            c.prepare_cached(
                "INSERT INTO akte_attachments (tenant, seq, pos, digest, len, bytes)
                 SELECT $1::text, s, p, d, l, b
                 FROM unnest($2::int8[], $3::int4[], $4::bytea[], $5::int4[], $6::bytea[])
                 AS t(s, p, d, l, b)",
            ),
            // Moves the end only from where this instance read it; if it is elsewhere the
            // division fails, which aborts the transaction, so that the COMMIT sent
            // with it cannot commit entries without their end.
            c.prepare_cached(
                "WITH moved AS (
                     UPDATE akte_heads SET next_seq = $2, last_leaf = $3, last_micros = $4
                     WHERE tenant = $1 AND next_seq = $5 RETURNING 1)
                 SELECT 1 / count(*)::int4 FROM moved",
            ),
            c.prepare_cached(
                "INSERT INTO akte_index (tenant, key, value)
                 SELECT $1::text, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v)
                 ON CONFLICT (tenant, key) DO UPDATE SET value = EXCLUDED.value",
            ),
            c.prepare_cached("DELETE FROM akte_index WHERE tenant = $1 AND key = ANY($2::bytea[])"),
            c.prepare_cached(
                "INSERT INTO akte_nodes (tenant, pos, hash)
                 SELECT $1::text, p, h FROM unnest($2::int8[], $3::bytea[]) AS t(p, h)
                 ON CONFLICT (tenant, pos) DO UPDATE SET hash = EXCLUDED.hash",
            ),
            c.prepare_cached("UPDATE akte_heads SET tree_len = $2 WHERE tenant = $1"),
        )?;
        Ok(CommitStatements {
            entries,
            attachments,
            advance,
            upsert,
            delete,
            nodes,
            tree_len,
        })
    }
}

/// Sends index changes (in the caller's transaction). Every statement is sent when the
/// returned future is first polled: nothing in it waits before its request is out.
async fn send_changes(
    c: &Object,
    st: &CommitStatements,
    tenant: &str,
    ch: &Changes,
) -> Result<(), tokio_postgres::Error> {
    let upsert = async {
        if ch.upsert_keys.is_empty() {
            return Ok(0);
        }
        c.execute(&st.upsert, &[&tenant, &ch.upsert_keys, &ch.upsert_values])
            .await
    };
    let delete = async {
        if ch.delete_keys.is_empty() {
            return Ok(0);
        }
        c.execute(&st.delete, &[&tenant, &ch.delete_keys]).await
    };
    let nodes = async {
        if ch.node_pos.is_empty() {
            return Ok(0);
        }
        c.execute(&st.nodes, &[&tenant, &ch.node_pos, &ch.node_hash])
            .await
    };
    let tree = async {
        let Some(len) = ch.tree_len else {
            return Ok(0);
        };
        c.execute(&st.tree_len, &[&tenant, &len]).await
    };
    let (a, b, n, t) = futures_util::join!(upsert, delete, nodes, tree);
    a.and(b).and(n).and(t).map(|_| ())
}

/// Stores index changes (in the caller's transaction).
pub(crate) async fn write_changes(c: &Object, tenant: &str, ch: &Changes) -> Result<(), PgError> {
    let op = "store index changes";
    let st = CommitStatements::prepare(c)
        .await
        .map_err(|e| PgError::of(op, &e))?;
    send_changes(c, &st, tenant, ch)
        .await
        .map_err(|e| PgError::of(op, &e))
}

/// Writes a group of entries with their index changes and commits, in one round trip:
/// the statements and the `COMMIT` are sent together, in order. If any statement fails
/// the server aborts the transaction and answers the `COMMIT` with a rollback, so the
/// group counts as committed only if every statement succeeded and the `COMMIT` too.
async fn commit_group(
    c: &Object,
    tenant: &str,
    base: u64,
    group: &[Pending],
    changes: &Changes,
    head: Head,
) -> Result<(), PgError> {
    let op = "commit entries";
    let err = |e: tokio_postgres::Error| PgError::of(op, &e);
    let st = CommitStatements::prepare(c).await.map_err(err)?;
    let seqs: Vec<i64> = group.iter().map(|p| p.seq as i64).collect();
    let entries: Vec<&[u8]> = group.iter().map(|p| &p.entry[..]).collect();
    let leaves: Vec<&[u8]> = group.iter().map(|p| &p.leaf.0[..]).collect();
    let mut a_seq = Vec::new();
    let mut a_pos = Vec::new();
    let mut a_digest = Vec::new();
    let mut a_len = Vec::new();
    let mut a_bytes = Vec::new();
    for p in group {
        for (i, a) in p.attachments.iter().enumerate() {
            a_seq.push(p.seq as i64);
            a_pos.push(i as i32);
            a_digest.push(&a.digest.0[..]);
            a_len.push(a.len as i32);
            a_bytes.push(a.bytes.as_deref());
        }
    }
    let entry_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&tenant, &seqs, &entries, &leaves];
    let insert_entries = c.execute(&st.entries, &entry_params);
    let insert_attachments = async {
        if a_seq.is_empty() {
            return Ok(0);
        }
        c.execute(
            &st.attachments,
            &[&tenant, &a_seq, &a_pos, &a_digest, &a_len, &a_bytes],
        )
        .await
    };
    let last_leaf: &[u8] = &head.last_leaf.0[..];
    let (next, base_i) = (head.next_seq as i64, base as i64);
    let advance_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&tenant, &next, &last_leaf, &head.last_micros, &base_i];
    let advance = c.execute(&st.advance, &advance_params);
    let index = send_changes(c, &st, tenant, changes);
    // Polled in this order, so sent in this order: the COMMIT last.
    let (entries_done, attachments_done, advanced, index_done, committed) = futures_util::join!(
        insert_entries,
        insert_attachments,
        advance,
        index,
        c.batch_execute("COMMIT")
    );
    if let Err(e) = &advanced {
        if e.code() == Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO) {
            return Err(PgError::new(
                op,
                FaultKind::Conflict,
                "the journal's end moved under this instance's lock",
            ));
        }
    }
    entries_done.map_err(err)?;
    attachments_done.map_err(err)?;
    advanced.map_err(err)?;
    index_done.map_err(err)?;
    committed.map_err(err)?;
    Ok(())
}

/// How long a leader waits at most for writers queued for the session to add their
/// entries to its group.
const GATHER: Duration = Duration::from_millis(1);

impl PgJournal {
    fn fenced_error(&self, reason: &str, cause: FaultKind) -> JournalError {
        JournalError::Fenced {
            place: self.place(),
            reason: reason.to_owned(),
            cause,
        }
    }

    /// Commits the queued group as its leader; returns once it is committed or failed.
    fn lead_commit(&self) {
        let s = &self.shared;
        let start = std::time::Instant::now();
        while s.queued.load(Ordering::Acquire) > 0 && start.elapsed() < GATHER {
            std::thread::yield_now();
        }
        let session = lock(&s.session);
        s.commit_queued(&session);
    }
}

impl Shared {
    /// Commits the queued group, if any, as its leader (the caller holds the session);
    /// returns once it is committed or failed.
    fn commit_queued(&self, _session: &MutexGuard<'_, ()>) {
        let s = self;
        let mut st = lock(&s.state);
        if st.committing || st.pending.is_empty() || st.fenced.is_some() {
            return;
        }
        let Some(client) = st.txn.take() else {
            st.fenced = Some((
                "entries were queued without a transaction".into(),
                FaultKind::Other,
            ));
            s.committed.notify_all();
            return;
        };
        let group = std::mem::take(&mut st.pending);
        let base = st.durable;
        let head = st.head;
        st.committing = true;
        drop(st);
        let changes = s
            .overlay
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .store(base, head.next_seq);
        let tenant = s.tenant.clone();
        let n = group.len() as u64;
        let changes = Arc::new(changes);
        let written = changes.clone();
        let result = s.db.block("commit entries", async move {
            let r = commit_group(&client, &tenant, base, &group, &written, head).await;
            if r.is_err() {
                // The transaction may still be open: never hand it back to the pool.
                drop(Object::take(client));
            }
            r
        });
        let mut st = lock(&s.state);
        st.committing = false;
        let mut overlay = s.overlay.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                st.durable = head.next_seq;
                s.cache.committed(base, head.next_seq, &changes);
                overlay.settle(base, head.next_seq);
                s.stats.flushes.fetch_add(1, Ordering::Relaxed);
                s.stats.entries.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(tenant = %s.tenant, error = %e,
                    "committing entries failed; the journal accepts no writes until reopened");
                // Nothing of the group is acknowledged; the index forgets it too.
                overlay.settle(base, u64::MAX);
                s.cache.clear();
                st.head = Head {
                    next_seq: base,
                    last_leaf: Digest::ZERO,
                    last_micros: i64::MIN,
                };
                st.fenced = Some((e.to_string(), e.kind));
            }
        }
        drop(overlay);
        s.committed.notify_all();
    }
}

impl JournalBackend for PgJournal {
    fn begin(&self) -> Result<Box<dyn AppendSession + '_>, JournalError> {
        let s = &self.shared;
        s.queued.fetch_add(1, Ordering::AcqRel);
        let guard = lock(&s.session);
        s.queued.fetch_sub(1, Ordering::AcqRel);
        let mut st = lock(&s.state);
        if let Some((reason, cause)) = &st.fenced {
            return Err(self.fenced_error(reason, *cause));
        }
        if st.txn.is_none() {
            drop(st);
            let tenant = s.tenant.clone();
            let pool = s.db.pool.clone();
            let (client, head) =
                s.db.block("lock the journal's end", async move {
                    let client = pool
                        .get()
                        .await
                        .map_err(|e| PgError::of_pool("lock the journal's end", e))?;
                    match lock_head(&client, &tenant).await {
                        Ok(head) => Ok((client, head)),
                        Err(e) => {
                            drop(Object::take(client));
                            Err(e)
                        }
                    }
                })
                .map_err(backend_error)?;
            st = lock(&s.state);
            st.txn = Some(client);
            st.head = head;
            st.durable = head.next_seq;
            // What this instance read before is still the database's state only if
            // nobody else appended since.
            s.cache.revalidate(head.next_seq);
        }
        drop(st);
        IN_SESSION.with(|c| c.set(Arc::as_ptr(&self.shared) as usize));
        Ok(Box::new(PgSession {
            shared: s,
            _guard: guard,
        }))
    }

    fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let s = &self.shared;
        loop {
            {
                let mut st = lock(&s.state);
                loop {
                    if seq < st.durable {
                        return Ok(());
                    }
                    if let Some((reason, cause)) = &st.fenced {
                        return Err(self.fenced_error(reason, *cause));
                    }
                    if seq >= st.head.next_seq {
                        return Err(JournalError::OutOfRange {
                            seq,
                            len: st.durable,
                        });
                    }
                    if !st.committing {
                        break;
                    }
                    st = s.committed.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
            self.lead_commit();
        }
    }

    fn durable_len(&self) -> Result<u64, JournalError> {
        let tenant = self.shared.tenant.clone();
        self.shared
            .db
            .run("read the journal's end", move |c| async move {
                let st = c
                    .prepare_cached("SELECT next_seq FROM akte_heads WHERE tenant = $1")
                    .await
                    .map_err(|e| PgError::of("read the journal's end", &e))?;
                let row = c
                    .query_opt(&st, &[&tenant])
                    .await
                    .map_err(|e| PgError::of("read the journal's end", &e))?;
                row.map(|r| r.get::<_, i64>(0) as u64).ok_or_else(|| {
                    PgError::new(
                        "read the journal's end",
                        FaultKind::NotFound,
                        "the tenant has no journal",
                    )
                })
            })
            .map_err(backend_error)
    }

    fn read_at(&self, location: Location) -> Result<Record, JournalError> {
        let seq = location.offset;
        if location.segment != 0 {
            return Err(JournalError::OutOfRange {
                seq,
                len: self.durable_len()?,
            });
        }
        let Some(row) = self.rows(seq, seq.saturating_add(1))?.pop() else {
            return Err(JournalError::OutOfRange {
                seq,
                len: self.durable_len()?,
            });
        };
        self.decode(row).map_err(|(e, _)| e)
    }

    fn iter(
        &self,
        start: Option<Location>,
        end: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<Record, JournalError>> + Send + '_>, JournalError>
    {
        let from = start.map_or(0, |l| l.offset);
        let mut next = from;
        let mut prev: Option<Digest> = None;
        let mut page: std::collections::VecDeque<StoredRow> = Default::default();
        let mut failed = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if failed || next >= end {
                return None;
            }
            if page.is_empty() {
                match self.rows(next, end.min(next.saturating_add(PAGE))) {
                    Ok(rows) => page.extend(rows),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            let result = match page.pop_front() {
                None => Err(self.damaged(next, "is missing".into())),
                Some(row) if row.seq != next => Err(self.damaged(next, "is missing".into())),
                Some(row) => self
                    .decode(row)
                    .map_err(|(e, _)| e)
                    .and_then(|rec| match prev {
                        Some(p) if rec.entry.prev != p => Err(JournalError::Inconsistent {
                            place: self.place(),
                            offset: next,
                            seq: Some(next),
                            reason: "its chain link is not the leaf hash of the entry before"
                                .into(),
                        }),
                        _ if prev.is_none() && next == 0 && rec.entry.prev != Digest::ZERO => {
                            Err(JournalError::Inconsistent {
                                place: self.place(),
                                offset: 0,
                                seq: Some(0),
                                reason: "the first entry does not link to zero".into(),
                            })
                        }
                        _ => Ok(rec),
                    }),
            };
            match &result {
                Ok(rec) => {
                    prev = Some(rec.leaf);
                    next += 1;
                }
                Err(_) => failed = true,
            }
            Some(result)
        })))
    }

    fn scan(
        &self,
        after: Option<(Location, u64)>,
        end: u64,
    ) -> Box<dyn Iterator<Item = JournalScanItem> + Send + '_> {
        let mut next = after.map_or(0, |(_, seq)| seq + 1);
        let mut page: std::collections::VecDeque<StoredRow> = Default::default();
        let mut failed = false;
        Box::new(std::iter::from_fn(move || {
            if failed || next >= end {
                return None;
            }
            let place = self.describe_location(Location {
                segment: 0,
                offset: next,
            });
            if page.is_empty() {
                match self.rows(next, end.min(next.saturating_add(PAGE))) {
                    Ok(rows) => page.extend(rows),
                    Err(e) => {
                        // The database cannot be read: nothing after this can be either.
                        failed = true;
                        return Some(JournalScanItem::Damaged {
                            place,
                            reason: e.to_string(),
                            counts: DamageCount::Nothing,
                        });
                    }
                }
            }
            let row = match page.front() {
                Some(row) if row.seq == next => page.pop_front(),
                _ => None,
            };
            let item = match row.map(|row| self.decode(row)) {
                Some(Ok(record)) => JournalScanItem::Record { record, place },
                Some(Err((e, counts))) => JournalScanItem::Damaged {
                    place,
                    reason: e.to_string(),
                    counts,
                },
                None => JournalScanItem::Damaged {
                    place,
                    reason: "the entry's row is missing".into(),
                    counts: DamageCount::UnknownEntry,
                },
            };
            next += 1;
            Some(item)
        }))
    }

    fn redact(
        &self,
        targets: &[(Location, Digest)],
        _authority: Destruction,
    ) -> Result<usize, JournalError> {
        let tenant = self.shared.tenant.clone();
        let seqs: Vec<i64> = targets.iter().map(|(l, _)| l.offset as i64).collect();
        let digests: Vec<Vec<u8>> = targets.iter().map(|(_, d)| d.0.to_vec()).collect();
        let matched = self
            .shared
            .db
            .run("redact attachments", move |mut c| async move {
                let op = "redact attachments";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                let mut matched = Vec::with_capacity(seqs.len());
                for (seq, digest) in seqs.iter().zip(&digests) {
                    let n = tx
                        .execute(
                            "UPDATE akte_attachments SET bytes = NULL
                             WHERE tenant = $1 AND seq = $2 AND digest = $3",
                            &[&tenant, seq, digest],
                        )
                        .await
                        .map_err(|e| PgError::of(op, &e))?;
                    matched.push(n);
                }
                if matched.iter().all(|n| *n > 0) {
                    tx.commit().await.map_err(|e| PgError::of(op, &e))?;
                }
                Ok(matched)
            })
            .map_err(backend_error)?;
        if let Some(i) = matched.iter().position(|n| *n == 0) {
            let (loc, digest) = targets[i];
            return Err(JournalError::Inconsistent {
                place: self.place(),
                offset: loc.offset,
                seq: Some(loc.offset),
                reason: format!("no attachment {digest} to redact in this entry"),
            });
        }
        Ok(targets.len())
    }

    fn recovery(&self) -> Recovery {
        Recovery::default()
    }

    fn fenced(&self) -> Option<String> {
        lock(&self.shared.state)
            .fenced
            .as_ref()
            .map(|(reason, _)| reason.clone())
    }

    fn stats(&self) -> &JournalStats {
        &self.shared.stats
    }

    fn describe(&self) -> String {
        self.place()
    }

    fn describe_location(&self, location: Location) -> String {
        format!("{}, entry {}", self.place(), location.offset)
    }
}
