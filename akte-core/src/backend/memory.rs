//! The in-memory backend: every part of every tenant in memory, for fast tests and for
//! embedding where nothing needs to outlive the process.
//!
//! It keeps every promise of the seams except surviving the process: "durable" means
//! "in this process's memory". A tenant's parts are shared, so a tenant opened again (a
//! new [`Store`](crate::store::Store) over the same [`MemoryBackend`]) sees what the
//! previous one wrote, as a reopened data directory would.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use sha2::{Digest as _, Sha256};

use crate::backend::content::{
    check_expected, Codec, ContentError, Destruction, ObjectInfo, PutOutcome,
};
use crate::backend::journal::DamageCount;
use crate::backend::meta::check_name;
use crate::backend::{
    AppendSession, Backend, BackendError, ContentBackend, ContentRead, IndexBackend, IndexBatch,
    JournalBackend, JournalScanItem, KvIter, MetaError, MetaStore, TenantParts, TenantSeed,
    TreeUpdate, Value,
};
use crate::digest::Digest;
use crate::embedded::{node_position, nodes_for};
use crate::entry::{Attachment, Entry, EntryDraft};
use crate::index::IndexError;
use crate::journal::{
    check_sealed, seal_entry, JournalError, JournalStats, Location, Record, Recovery, Ticket,
};
use crate::merkle::leaf_hash;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every tenant in memory.
#[derive(Default)]
pub struct MemoryBackend {
    tenants: Mutex<BTreeMap<String, MemoryTenant>>,
    install: Arc<MemoryMeta>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBackend")
    }
}

#[derive(Clone)]
struct MemoryTenant {
    journal: Arc<MemoryJournal>,
    index: Arc<MemoryIndex>,
    content: Arc<MemoryContent>,
    meta: Arc<MemoryMeta>,
}

impl MemoryTenant {
    fn parts(&self) -> TenantParts {
        TenantParts {
            journal: self.journal.clone(),
            index: self.index.clone(),
            content: self.content.clone(),
            meta: self.meta.clone(),
        }
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Arc<MemoryBackend> {
        Arc::new(MemoryBackend::default())
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn tenant_ids(&self) -> Result<Vec<String>, BackendError> {
        Ok(lock(&self.tenants).keys().cloned().collect())
    }

    fn create_tenant(&self, id: &str, seed: &TenantSeed) -> Result<TenantParts, BackendError> {
        let mut tenants = lock(&self.tenants);
        if tenants.contains_key(id) {
            return Err(BackendError::TenantExists(id.to_owned()));
        }
        let meta = MemoryMeta::default();
        for (name, bytes, secret) in &seed.meta {
            meta.put(name, bytes, *secret)
                .map_err(|e| BackendError::Tenant {
                    tenant: id.to_owned(),
                    reason: e.to_string(),
                    kind: e.kind(),
                })?;
        }
        let tenant = MemoryTenant {
            journal: Arc::new(MemoryJournal::default()),
            index: Arc::new(MemoryIndex::default()),
            content: Arc::new(MemoryContent::default()),
            meta: Arc::new(meta),
        };
        let parts = tenant.parts();
        tenants.insert(id.to_owned(), tenant);
        Ok(parts)
    }

    fn open_tenant(&self, id: &str) -> Result<TenantParts, BackendError> {
        lock(&self.tenants)
            .get(id)
            .map(MemoryTenant::parts)
            .ok_or_else(|| BackendError::UnknownTenant(id.to_owned()))
    }

    fn scratch_index(&self) -> Result<Arc<dyn IndexBackend>, BackendError> {
        Ok(Arc::new(MemoryIndex::default()))
    }

    fn installation_meta(&self) -> Arc<dyn MetaStore> {
        self.install.clone()
    }
}

// ---- journal ----

#[derive(Default)]
struct JournalState {
    records: Vec<Record>,
    durable_len: u64,
    last_micros: i64,
}

/// A journal in memory. Locations are `(0, seq)`.
#[derive(Default)]
pub struct MemoryJournal {
    state: Mutex<JournalState>,
    writer: Mutex<()>,
    durable: Condvar,
    stats: JournalStats,
}

struct MemorySession<'a> {
    journal: &'a MemoryJournal,
    _writer: MutexGuard<'a, ()>,
}

impl AppendSession for MemorySession<'_> {
    fn next_seq(&self) -> u64 {
        lock(&self.journal.state).records.len() as u64
    }

    fn last_leaf(&self) -> Digest {
        lock(&self.journal.state)
            .records
            .last()
            .map_or(Digest::ZERO, |r| r.leaf)
    }

    fn enqueue(
        &mut self,
        draft: EntryDraft,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        let mut st = lock(&self.journal.state);
        let seq = st.records.len() as u64;
        let prev = st.records.last().map_or(Digest::ZERO, |r| r.leaf);
        let last = if st.records.is_empty() {
            i64::MIN
        } else {
            st.last_micros
        };
        let (entry, micros) = seal_entry(draft, seq, prev, last, &attachments)?;
        Ok(push_record(&mut st, entry, micros, attachments))
    }

    fn enqueue_sealed(
        &mut self,
        entry: Entry,
        attachments: Vec<Attachment>,
    ) -> Result<Ticket, JournalError> {
        let mut st = lock(&self.journal.state);
        let seq = st.records.len() as u64;
        let prev = st.records.last().map_or(Digest::ZERO, |r| r.leaf);
        let micros = check_sealed(&entry, seq, prev, st.last_micros, &attachments)?;
        Ok(push_record(&mut st, entry, micros, attachments))
    }
}

fn push_record(
    st: &mut JournalState,
    entry: Entry,
    micros: i64,
    attachments: Vec<Attachment>,
) -> Ticket {
    let leaf = leaf_hash(&entry.encode());
    let location = Location {
        segment: 0,
        offset: entry.seq,
    };
    st.last_micros = micros;
    st.records.push(Record {
        entry: entry.clone(),
        leaf,
        attachments,
        location,
    });
    Ticket {
        entry,
        leaf,
        location,
    }
}

impl MemoryJournal {
    fn record(&self, seq: u64) -> Result<Record, JournalError> {
        let st = lock(&self.state);
        if seq >= st.durable_len {
            return Err(JournalError::OutOfRange {
                seq,
                len: st.durable_len,
            });
        }
        st.records
            .get(seq as usize)
            .cloned()
            .ok_or(JournalError::OutOfRange {
                seq,
                len: st.durable_len,
            })
    }
}

impl JournalBackend for MemoryJournal {
    fn begin(&self) -> Result<Box<dyn AppendSession + '_>, JournalError> {
        Ok(Box::new(MemorySession {
            journal: self,
            _writer: lock(&self.writer),
        }))
    }

    fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let mut st = lock(&self.state);
        let len = st.records.len() as u64;
        if seq >= len {
            return Err(JournalError::OutOfRange { seq, len });
        }
        if st.durable_len <= seq {
            let n = len - st.durable_len;
            st.durable_len = len;
            self.stats.flushes.fetch_add(1, Ordering::Relaxed);
            self.stats.entries.fetch_add(n, Ordering::Relaxed);
            self.durable.notify_all();
        }
        Ok(())
    }

    fn durable_len(&self) -> Result<u64, JournalError> {
        Ok(lock(&self.state).durable_len)
    }

    fn read_at(&self, location: Location) -> Result<Record, JournalError> {
        self.record(location.offset)
    }

    fn iter(
        &self,
        start: Option<Location>,
        end: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<Record, JournalError>> + Send + '_>, JournalError>
    {
        let from = start.map_or(0, |l| l.offset);
        Ok(Box::new((from..end).map(move |seq| self.record(seq))))
    }

    fn scan(
        &self,
        after: Option<(Location, u64)>,
        end: u64,
    ) -> Box<dyn Iterator<Item = JournalScanItem> + Send + '_> {
        let from = after.map_or(0, |(_, seq)| seq + 1);
        Box::new((from..end).map(move |seq| match self.record(seq) {
            Ok(record) => JournalScanItem::Record {
                record,
                place: format!("memory journal, entry {seq}"),
            },
            Err(e) => JournalScanItem::Damaged {
                place: format!("memory journal, entry {seq}"),
                reason: e.to_string(),
                counts: DamageCount::UnknownEntry,
            },
        }))
    }

    fn redact(
        &self,
        targets: &[(Location, Digest)],
        _authority: Destruction,
    ) -> Result<usize, JournalError> {
        let mut st = lock(&self.state);
        let mut count = 0;
        for (loc, digest) in targets {
            let rec = st.records.get_mut(loc.offset as usize).ok_or_else(|| {
                JournalError::Inconsistent {
                    place: "memory journal".into(),
                    offset: loc.offset,
                    seq: Some(loc.offset),
                    reason: "no such record to redact".into(),
                }
            })?;
            let mut found = false;
            for a in rec.attachments.iter_mut().filter(|a| &a.digest == digest) {
                *a = a.redacted();
                found = true;
            }
            if !found {
                return Err(JournalError::Inconsistent {
                    place: "memory journal".into(),
                    offset: loc.offset,
                    seq: Some(loc.offset),
                    reason: format!("no attachment {digest} to redact in this record"),
                });
            }
            count += 1;
        }
        Ok(count)
    }

    fn recovery(&self) -> Recovery {
        Recovery::default()
    }

    fn stats(&self) -> &JournalStats {
        &self.stats
    }

    fn describe(&self) -> String {
        "memory journal".into()
    }

    fn describe_location(&self, location: Location) -> String {
        format!("memory journal, entry {}", location.offset)
    }
}

// ---- index ----

/// An index in memory.
#[derive(Default)]
pub struct MemoryIndex {
    keys: RwLock<BTreeMap<Vec<u8>, Value>>,
    /// Perfect nodes in post-order (crate::embedded's node positions).
    nodes: RwLock<Vec<Digest>>,
    locations: RwLock<Vec<Location>>,
}

impl IndexBackend for MemoryIndex {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, IndexError> {
        Ok(self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned())
    }

    fn range(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KvIter<'_> {
        // A snapshot: the range as of this call, whatever is applied while it is read.
        let items: Vec<_> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .range((start, end))
            .map(|(k, v)| Ok((Value::from(&k[..]), v.clone())))
            .collect();
        Box::new(items.into_iter())
    }

    fn apply(&self, batch: IndexBatch, tree: TreeUpdate<'_>) -> Result<(), IndexError> {
        {
            let mut locations = self.locations.write().unwrap_or_else(|p| p.into_inner());
            locations.truncate(tree.seq as usize);
            locations.push(tree.location);
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            nodes.truncate(nodes_for(tree.seq) as usize);
            nodes.extend(tree.nodes.iter().map(|n| n.hash));
        }
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        for (k, v) in batch.into_ops() {
            match v {
                Some(v) => keys.insert(k, v),
                None => keys.remove(&k),
            };
        }
        Ok(())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Digest>, IndexError> {
        let Some(pos) = node_position(level, index) else {
            return Ok(None);
        };
        Ok(self
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pos as usize)
            .copied())
    }

    fn location(&self, seq: u64) -> Result<Option<Location>, IndexError> {
        Ok(self
            .locations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(seq as usize)
            .copied())
    }

    fn tree_len(&self) -> Result<u64, IndexError> {
        Ok(self
            .locations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64)
    }

    fn truncate_tree(&self, n: u64) -> Result<(), IndexError> {
        self.locations
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .truncate(n as usize);
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .truncate(nodes_for(n) as usize);
        Ok(())
    }

    fn clear(&self) -> Result<(), IndexError> {
        self.keys.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.truncate_tree(0)
    }

    fn flush(&self) -> Result<(), IndexError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory index".into()
    }

    fn identity(&self) -> usize {
        self as *const MemoryIndex as usize
    }
}

// ---- content ----

/// Document bytes in memory.
#[derive(Default)]
pub struct MemoryContent {
    objects: RwLock<HashMap<Digest, Arc<Vec<u8>>>>,
}

impl ContentBackend for MemoryContent {
    fn put(
        &self,
        reader: &mut dyn Read,
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let mut data = Vec::new();
        let limit = expected_size.map_or(u64::MAX, |s| s.saturating_add(1));
        reader
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|source| ContentError::Read {
                received: data.len() as u64,
                source,
            })?;
        self.put_bytes(&data, expected_digest, expected_size)
    }

    fn put_bytes(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let size = data.len() as u64;
        if let Some(expected) = expected_size {
            if size != expected {
                return Err(ContentError::SizeMismatch {
                    expected,
                    actual: size,
                });
            }
        }
        let digest = Digest::of(data);
        check_expected(digest, size, expected_digest, expected_size)?;
        let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
        let newly_stored = !objects.contains_key(&digest);
        if newly_stored {
            objects.insert(digest, Arc::new(data.to_vec()));
        }
        Ok(PutOutcome {
            digest,
            size,
            stored_size: size,
            codec: Codec::Raw,
            newly_stored,
        })
    }

    fn get(&self, digest: &Digest) -> Result<Box<dyn ContentRead>, ContentError> {
        let bytes = self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
            .ok_or_else(|| ContentError::NotFound {
                digest: *digest,
                place: self.describe(digest),
            })?;
        Ok(Box::new(MemoryReader {
            digest: *digest,
            bytes,
            at: 0,
            hasher: Sha256::new(),
            verified: false,
        }))
    }

    fn stat(&self, digest: &Digest) -> Result<ObjectInfo, ContentError> {
        match self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            Some(b) => Ok(ObjectInfo {
                size: b.len() as u64,
                stored_size: b.len() as u64,
                codec: Codec::Raw,
            }),
            None => Err(ContentError::NotFound {
                digest: *digest,
                place: self.describe(digest),
            }),
        }
    }

    fn remove(&self, digest: &Digest, _authority: Destruction) -> Result<bool, ContentError> {
        Ok(self
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest)
            .is_some())
    }

    fn list(&self) -> Box<dyn Iterator<Item = Result<Digest, ContentError>> + Send + '_> {
        let mut all: Vec<Digest> = self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        all.sort();
        Box::new(all.into_iter().map(Ok))
    }

    fn describe(&self, digest: &Digest) -> String {
        format!("memory object {digest}")
    }
}

/// Reads an object from memory, checking its digest at the end like every backend's
/// reader (the bytes could have been changed through a test hook).
struct MemoryReader {
    digest: Digest,
    bytes: Arc<Vec<u8>>,
    at: usize,
    hasher: Sha256,
    verified: bool,
}

impl Read for MemoryReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.verified {
            return Ok(0);
        }
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        if rest.is_empty() {
            let actual = Digest(self.hasher.finalize_reset().into());
            if actual != self.digest {
                return Err(io::Error::other(ContentError::Corrupt {
                    digest: self.digest,
                    place: format!("memory object {}", self.digest),
                    reason: format!("content hashes to {actual}"),
                }));
            }
            self.verified = true;
            return Ok(0);
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.hasher.update(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

impl ContentRead for MemoryReader {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn place(&self) -> String {
        format!("memory object {}", self.digest)
    }
}

// ---- meta ----

/// Blobs in memory.
#[derive(Default)]
pub struct MemoryMeta {
    blobs: RwLock<BTreeMap<String, Vec<u8>>>,
    /// Counts writes, so tests can see that nothing was written.
    writes: AtomicU64,
}

impl MemoryMeta {
    /// How many puts and removals it has seen.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl MetaStore for MemoryMeta {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        check_name(name)?;
        Ok(self
            .blobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned())
    }

    fn put(&self, name: &str, bytes: &[u8], _secret: bool) -> Result<(), MetaError> {
        check_name(name)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.blobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<bool, MetaError> {
        check_name(name)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .blobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, MetaError> {
        if !prefix.is_empty() {
            check_name(prefix.trim_end_matches('/'))?;
        }
        Ok(self
            .blobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|k| k.starts_with(prefix) && !k[prefix.len()..].contains('/'))
            .cloned()
            .collect())
    }

    fn describe(&self, name: &str) -> String {
        format!("memory blob {name}")
    }
}
