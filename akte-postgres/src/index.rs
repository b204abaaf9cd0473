//! The derived index in PostgreSQL: keys and values in `akte_index`, the Merkle tree's
//! perfect nodes in `akte_nodes`, the tree's length in the tenant's head row. Record
//! locations need no table: an entry's location is its sequence number.
//!
//! Applied changes wait in the tenant's [`Overlay`](crate::overlay::Overlay) and are
//! stored by the journal's commit, in the same transaction as their entries, so every
//! instance sees the index exactly at the committed journal's end. This instance's own
//! readers see them at once (as the embedded index's readers do); range reads merge the
//! overlay with one database snapshot by how many entries the snapshot's index holds, so
//! they see whole entries only.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use akte_core::backend::{FaultKind, IndexBackend, IndexBatch, KvIter, TreeUpdate, Value};
use akte_core::embedded::{node_position, nodes_for};
use akte_core::index::IndexError;
use akte_core::journal::Location;
use akte_core::Digest;
use deadpool_postgres::Object;

use crate::cache::{Seen, StoredRange};
use crate::db::PgError;
use crate::journal::{holds_session, write_changes, Shared};

/// Keys read per query in a range read.
const PAGE: i64 = 512;

/// A replay flushes its applied changes once this many are pending.
const FLUSH_AT: usize = 20_000;

fn backend_error(e: PgError) -> IndexError {
    IndexError::Backend {
        reason: e.to_string(),
        kind: e.kind,
    }
}

/// One tenant's index.
pub struct PgIndex {
    shared: Arc<Shared>,
}

impl PgIndex {
    pub(crate) fn new(shared: Arc<Shared>) -> PgIndex {
        PgIndex { shared }
    }

    fn overlay(&self) -> std::sync::RwLockReadGuard<'_, crate::overlay::Overlay> {
        self.shared
            .overlay
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn overlay_mut(&self) -> std::sync::RwLockWriteGuard<'_, crate::overlay::Overlay> {
        self.shared
            .overlay
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn stored_tree_len(&self) -> Result<u64, IndexError> {
        let tenant = self.shared.tenant.clone();
        self.shared
            .db
            .run("read the tree length", move |c| async move {
                let op = "read the tree length";
                let row = c
                    .query_opt(
                        "SELECT tree_len FROM akte_heads WHERE tenant = $1",
                        &[&tenant],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
            })
            .map_err(backend_error)
    }
}

impl IndexBackend for PgIndex {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, IndexError> {
        // A change of this instance not stored yet: queued in the transaction that holds
        // the head row, so nobody else has changed the key since, or being stored, so
        // that another instance may have changed it after the commit: then the database
        // decides, below, by whether its index holds the entry.
        let pending = {
            let o = self.overlay();
            o.kv.get(key)
                .map(|(seq, v)| (*seq, v.clone(), o.storing(*seq)))
        };
        let pending = match pending {
            Some((_, v, false)) => return Ok(v),
            Some((seq, v, true)) => Some((seq, v)),
            None => None,
        };
        let cache = &self.shared.cache;
        if pending.is_none() && cache.trusted(holds_session(&self.shared)) {
            if let Some(v) = cache.get(key) {
                return Ok(v);
            }
        }
        let ticket = cache.ticket();
        let (tenant, owned) = (self.shared.tenant.clone(), key.to_vec());
        let (value, seen) = self
            .shared
            .db
            .run("read the index", move |c| async move {
                let op = "read the index";
                // The head row in the same statement: the value is known to be the
                // index's state at that end (see `crate::cache`).
                let st = c
                    .prepare_cached(
                        "SELECT h.next_seq, h.tree_len, i.value FROM akte_heads AS h
                         LEFT JOIN akte_index AS i ON i.tenant = h.tenant AND i.key = $2
                         WHERE h.tenant = $1",
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                let row = c
                    .query_opt(&st, &[&tenant, &owned])
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                Ok(match row {
                    // No head row: a tenant without a journal has no index either.
                    None => (None, None),
                    Some(r) => (
                        r.get::<_, Option<Vec<u8>>>(2).map(Value::from),
                        Some(Seen {
                            next_seq: r.get::<_, i64>(0) as u64,
                            tree_len: r.get::<_, i64>(1) as u64,
                        }),
                    ),
                })
            })
            .map_err(backend_error)?;
        if let Some(seen) = seen {
            cache.fill(key, value.clone(), ticket, seen);
        }
        match pending {
            Some((seq, v)) if seen.is_none_or(|s| s.tree_len <= seq) => Ok(v),
            _ => Ok(value),
        }
    }

    fn range(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KvIter<'_> {
        let pending: Vec<PendingChange> = self
            .overlay()
            .kv
            .range((start.clone(), end.clone()))
            .map(|(k, (seq, v))| (k.clone(), *seq, v.clone()))
            .collect();
        Box::new(RangeRead {
            shared: self.shared.clone(),
            from: start,
            end,
            pending: pending.into_iter().peekable(),
            conn: None,
            snapshot_end: 0,
            page: VecDeque::new(),
            stored_done: false,
            tried_small: false,
            failed: false,
        })
    }

    fn apply(&self, batch: IndexBatch, tree: TreeUpdate<'_>) -> Result<(), IndexError> {
        self.overlay_mut().apply(
            tree.seq,
            batch.into_ops(),
            tree.nodes.iter().map(|n| n.hash),
        );
        Ok(())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Digest>, IndexError> {
        let Some(pos) = node_position(level, index) else {
            return Ok(None);
        };
        if let Some((_, hash)) = self.overlay().nodes.get(&pos) {
            return Ok(Some(*hash));
        }
        let tenant = self.shared.tenant.clone();
        self.shared
            .db
            .run("read a tree node", move |c| async move {
                let op = "read a tree node";
                let st = c
                    .prepare_cached("SELECT hash FROM akte_nodes WHERE tenant = $1 AND pos = $2")
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                let row = c
                    .query_opt(&st, &[&tenant, &(pos as i64)])
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                match row {
                    None => Ok(None),
                    Some(r) => {
                        let b: Vec<u8> = r.get(0);
                        Digest::from_slice(&b).map(Some).ok_or_else(|| {
                            PgError::new(op, FaultKind::Corrupt, "a stored node is not 32 bytes")
                        })
                    }
                }
            })
            .map_err(backend_error)
    }

    fn nodes(&self, positions: &[(u8, u64)]) -> Result<Vec<Option<Digest>>, IndexError> {
        let wanted: Vec<Option<u64>> = positions
            .iter()
            .map(|&(level, index)| node_position(level, index))
            .collect();
        let mut found: HashMap<u64, Digest> = HashMap::new();
        let mut missing: Vec<i64> = Vec::new();
        {
            let overlay = self.overlay();
            for pos in wanted.iter().flatten() {
                match overlay.nodes.get(pos) {
                    Some((_, hash)) => {
                        found.insert(*pos, *hash);
                    }
                    None => missing.push(*pos as i64),
                }
            }
        }
        if !missing.is_empty() {
            let tenant = self.shared.tenant.clone();
            let rows = self
                .shared
                .db
                .run("read tree nodes", move |c| async move {
                    let op = "read tree nodes";
                    let st = c
                        .prepare_cached(
                            "SELECT pos, hash FROM akte_nodes WHERE tenant = $1 AND pos = ANY($2)",
                        )
                        .await
                        .map_err(|e| PgError::of(op, &e))?;
                    let rows = c
                        .query(&st, &[&tenant, &missing])
                        .await
                        .map_err(|e| PgError::of(op, &e))?;
                    rows.into_iter()
                        .map(|r| {
                            let pos: i64 = r.get(0);
                            let b: Vec<u8> = r.get(1);
                            Digest::from_slice(&b)
                                .map(|d| (pos as u64, d))
                                .ok_or_else(|| {
                                    PgError::new(
                                        op,
                                        FaultKind::Corrupt,
                                        "a stored node is not 32 bytes",
                                    )
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(backend_error)?;
            found.extend(rows);
        }
        Ok(wanted
            .into_iter()
            .map(|pos| pos.and_then(|p| found.get(&p).copied()))
            .collect())
    }

    fn location(&self, seq: u64) -> Result<Option<Location>, IndexError> {
        Ok((seq < self.tree_len()?).then_some(Location {
            segment: 0,
            offset: seq,
        }))
    }

    fn tree_len(&self) -> Result<u64, IndexError> {
        if let Some(applied) = self.overlay().applied {
            return Ok(applied);
        }
        self.stored_tree_len()
    }

    /// Cuts what the tree holds beyond `n` entries, but never below the committed
    /// journal's end: entries and their tree state commit together here, so nothing
    /// committed is ever beyond it, while another instance may have committed more
    /// since the caller read `n`.
    fn truncate_tree(&self, n: u64) -> Result<(), IndexError> {
        let _session = self.shared.exclusive();
        self.shared.cache.clear();
        {
            let mut o = self.overlay_mut();
            o.nodes.split_off(&nodes_for(n));
            if o.applied.is_some_and(|a| a > n) {
                o.applied = Some(n);
            }
        }
        let tenant = self.shared.tenant.clone();
        self.shared
            .db
            .run("cut the tree", move |mut c| async move {
                let op = "cut the tree";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                let end: i64 = tx
                    .query_opt(
                        "SELECT next_seq FROM akte_heads WHERE tenant = $1 FOR UPDATE",
                        &[&tenant],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?
                    .map_or(0, |r| r.get(0));
                let keep = (n as i64).max(end);
                tx.execute(
                    "DELETE FROM akte_nodes WHERE tenant = $1 AND pos >= $2",
                    &[&tenant, &(nodes_for(keep as u64) as i64)],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                tx.execute(
                    "UPDATE akte_heads SET tree_len = LEAST(tree_len, $2) WHERE tenant = $1",
                    &[&tenant, &keep],
                )
                .await
                .map_err(|e| PgError::of(op, &e))?;
                tx.commit().await.map_err(|e| PgError::of(op, &e))
            })
            .map_err(backend_error)
    }

    fn clear(&self) -> Result<(), IndexError> {
        let _session = self.shared.exclusive();
        self.shared.cache.clear();
        *self.overlay_mut() = Default::default();
        let tenant = self.shared.tenant.clone();
        let cleared = self
            .shared
            .db
            .run("clear the index", move |mut c| async move {
                let op = "clear the index";
                let tx = c.transaction().await.map_err(|e| PgError::of(op, &e))?;
                for sql in [
                    "SELECT 1 FROM akte_heads WHERE tenant = $1 FOR UPDATE",
                    "DELETE FROM akte_index WHERE tenant = $1",
                    "DELETE FROM akte_nodes WHERE tenant = $1",
                    "UPDATE akte_heads SET tree_len = 0 WHERE tenant = $1",
                ] {
                    tx.execute(sql, &[&tenant])
                        .await
                        .map_err(|e| PgError::of(op, &e))?;
                }
                tx.commit().await.map_err(|e| PgError::of(op, &e))
            })
            .map_err(backend_error);
        // Again: a read that started before the index was emptied may have offered what
        // it read after the first clear.
        self.shared.cache.clear();
        cleared
    }

    /// Stores the changes of entries already committed in the journal (a replay's); the
    /// changes of queued entries are the journal commit's to store.
    fn flush(&self) -> Result<(), IndexError> {
        let _session = self.shared.exclusive();
        let durable = self.shared.durable_here();
        let changes = self.overlay_mut().store(0, durable);
        if changes.is_empty() {
            self.overlay_mut().settle(0, durable);
            return Ok(());
        }
        self.shared.cache.clear();
        let tenant = self.shared.tenant.clone();
        let stored = self
            .shared
            .db
            .run("store index changes", move |c| async move {
                let op = "store index changes";
                c.batch_execute("BEGIN")
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                let r = async {
                    c.execute(
                        "SELECT 1 FROM akte_heads WHERE tenant = $1 FOR UPDATE",
                        &[&tenant],
                    )
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                    write_changes(&c, &tenant, &changes).await?;
                    c.batch_execute("COMMIT")
                        .await
                        .map_err(|e| PgError::of(op, &e))
                }
                .await;
                if r.is_err() {
                    drop(Object::take(c));
                }
                r
            })
            .map_err(backend_error);
        // Again: a read that started before the changes were stored may have offered
        // what it read after the first clear.
        self.shared.cache.clear();
        stored?;
        self.overlay_mut().settle(0, durable);
        Ok(())
    }

    fn flush_if_due(&self) -> Result<(), IndexError> {
        if self.overlay().len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} akte_index", self.shared.place())
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
}

/// An overlay change in a range read: key, entry that made it, new value or removal.
type PendingChange = (Vec<u8>, u64, Option<Value>);

/// A range read: one database snapshot, read in pages, merged with the overlay.
struct RangeRead {
    shared: Arc<Shared>,
    /// Where the next page starts.
    from: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    pending: Peekable<std::vec::IntoIter<PendingChange>>,
    /// The snapshot's transaction.
    conn: Option<Object>,
    /// How many entries the snapshot's index holds (its stored tree length, written with
    /// every stored change set): overlay changes of entries before it are in it.
    snapshot_end: u64,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    stored_done: bool,
    /// Whether the one-statement read of a small range was tried.
    tried_small: bool,
    failed: bool,
}

fn bound_sql(from: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> String {
    let mut sql = String::from("SELECT key, value FROM akte_index WHERE tenant = $1");
    match from {
        Bound::Included(_) => sql.push_str(" AND key >= $2"),
        Bound::Excluded(_) => sql.push_str(" AND key > $2"),
        Bound::Unbounded => sql.push_str(" AND $2::bytea IS NULL"),
    }
    match end {
        Bound::Included(_) => sql.push_str(" AND key <= $3"),
        Bound::Excluded(_) => sql.push_str(" AND key < $3"),
        Bound::Unbounded => sql.push_str(" AND $3::bytea IS NULL"),
    }
    sql.push_str(" ORDER BY key LIMIT $4");
    sql
}

fn bound_value(b: &Bound<Vec<u8>>) -> Option<Vec<u8>> {
    match b {
        Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
        Bound::Unbounded => None,
    }
}

impl RangeRead {
    /// Reads the range in one statement (one snapshot, one round trip) if it holds less
    /// than a page: the stored tree length and the keys together. Most range reads are
    /// small (an object's versions, the field definitions a write checks), and a snapshot
    /// transaction costs three round trips more. Returns whether that was the whole
    /// range; if not, nothing is kept and the paged snapshot read starts afresh.
    fn read_small(&mut self) -> Result<bool, PgError> {
        let bounds = (self.from.clone(), self.end.clone());
        let cache = &self.shared.cache;
        if cache.trusted(holds_session(&self.shared)) {
            if let Some((at, rows)) = cache.get_range(&bounds) {
                self.snapshot_end = at;
                self.page.extend(rows);
                self.stored_done = true;
                return Ok(true);
            }
        }
        let ticket = cache.ticket();
        let sql = format!(
            "SELECT h.next_seq, h.tree_len, k.key, k.value
             FROM (SELECT 1) AS one LEFT JOIN akte_heads AS h ON h.tenant = $1
             LEFT JOIN LATERAL ({}) AS k ON true ORDER BY k.key",
            bound_sql(&self.from, &self.end)
        );
        let (tenant, from, end) = (
            self.shared.tenant.clone(),
            bound_value(&self.from),
            bound_value(&self.end),
        );
        let rows = self
            .shared
            .db
            .run("read an index range", move |c| async move {
                let op = "read an index range";
                let st = c
                    .prepare_cached(&sql)
                    .await
                    .map_err(|e| PgError::of(op, &e))?;
                c.query(&st, &[&tenant, &from, &end, &PAGE])
                    .await
                    .map_err(|e| PgError::of(op, &e))
            })?;
        let mut keys: StoredRange = Vec::with_capacity(rows.len());
        let mut seen = None;
        for r in rows {
            let next_seq: Option<i64> = r.get(0);
            let tree_len: Option<i64> = r.get(1);
            if let (Some(n), Some(t)) = (next_seq, tree_len) {
                seen = Some(Seen {
                    next_seq: n as u64,
                    tree_len: t as u64,
                });
            }
            let key: Option<Vec<u8>> = r.get(2);
            let value: Option<Vec<u8>> = r.get(3);
            if let (Some(k), Some(v)) = (key, value) {
                keys.push((k, v));
            }
        }
        if keys.len() as i64 >= PAGE {
            return Ok(false);
        }
        // Overlay changes of entries before the stored tree length are in what was read.
        self.snapshot_end = seen.map_or(0, |s| s.tree_len);
        if let Some(seen) = seen {
            cache.fill_range(bounds, &keys, ticket, seen);
        }
        self.page.extend(keys);
        self.stored_done = true;
        Ok(true)
    }

    fn start_snapshot(&mut self) -> Result<(), PgError> {
        let db = &self.shared.db;
        let conn = db.connection("read an index range")?;
        let tenant = self.shared.tenant.clone();
        let (conn, end) = db.block("read an index range", async move {
            let op = "read an index range";
            let r = async {
                conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?;
                conn.query_opt(
                    "SELECT tree_len FROM akte_heads WHERE tenant = $1",
                    &[&tenant],
                )
                .await
            }
            .await;
            match r {
                Ok(row) => Ok((conn, row.map_or(0, |r| r.get::<_, i64>(0) as u64))),
                Err(e) => {
                    drop(Object::take(conn));
                    Err(PgError::of(op, &e))
                }
            }
        })?;
        self.conn = Some(conn);
        self.snapshot_end = end;
        Ok(())
    }

    fn fetch_page(&mut self) -> Result<(), PgError> {
        let Some(conn) = self.conn.take() else {
            return Err(PgError::new(
                "read an index range",
                FaultKind::Other,
                "the snapshot is gone",
            ));
        };
        let sql = bound_sql(&self.from, &self.end);
        let (tenant, from, end) = (
            self.shared.tenant.clone(),
            bound_value(&self.from),
            bound_value(&self.end),
        );
        let (conn, rows) = self.shared.db.block("read an index range", async move {
            let op = "read an index range";
            let r = async {
                let st = conn.prepare_cached(&sql).await?;
                conn.query(&st, &[&tenant, &from, &end, &PAGE]).await
            }
            .await;
            match r {
                Ok(rows) => Ok((conn, rows)),
                Err(e) => {
                    drop(Object::take(conn));
                    Err(PgError::of(op, &e))
                }
            }
        })?;
        self.conn = Some(conn);
        if (rows.len() as i64) < PAGE {
            self.stored_done = true;
            self.finish();
        }
        for r in rows {
            let (k, v): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
            self.from = Bound::Excluded(k.clone());
            self.page.push_back((k, v));
        }
        Ok(())
    }

    /// Ends the snapshot and hands the connection back.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.db.detach(async move {
                if conn.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(conn));
                }
            });
        }
    }

    /// The next overlay change the snapshot does not already hold.
    fn peek_pending(&mut self) -> Option<&PendingChange> {
        let end = self.snapshot_end;
        while self.pending.next_if(|(_, seq, _)| *seq < end).is_some() {}
        self.pending.peek()
    }
}

impl Iterator for RangeRead {
    type Item = Result<(Value, Value), IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if !self.tried_small && !self.stored_done {
            self.tried_small = true;
            if let Err(e) = self.read_small() {
                self.failed = true;
                return Some(Err(backend_error(e)));
            }
        }
        if self.conn.is_none() && !self.stored_done {
            if let Err(e) = self.start_snapshot() {
                self.failed = true;
                return Some(Err(backend_error(e)));
            }
        }
        loop {
            if self.page.is_empty() && !self.stored_done {
                if let Err(e) = self.fetch_page() {
                    self.failed = true;
                    return Some(Err(backend_error(e)));
                }
            }
            let stored_key = self.page.front().map(|(k, _)| k.clone());
            let pending_key = self.peek_pending().map(|(k, _, _)| k.clone());
            let take_stored = match (&stored_key, &pending_key) {
                (None, None) => return None,
                (Some(_), None) => true,
                (Some(s), Some(p)) => s < p,
                (None, Some(_)) => false,
            };
            if take_stored {
                if let Some((k, v)) = self.page.pop_front() {
                    return Some(Ok((Value::from(k), Value::from(v))));
                }
                continue;
            }
            if stored_key.is_some() && stored_key == pending_key {
                // The overlay's change of this key is newer than the snapshot's.
                self.page.pop_front();
            }
            if let Some((k, _, Some(v))) = self.pending.next() {
                return Some(Ok((Value::from(k), v)));
            }
        }
    }
}

impl Drop for RangeRead {
    fn drop(&mut self) {
        self.finish();
    }
}
