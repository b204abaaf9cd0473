//! The derived index of a tenant: state derived from its journal, rebuildable at any time.
//!
//! [`TenantIndex`] is what the engine and the records model read and write; it keeps the
//! storage layer's own keys and hands everything to the tenant's
//! [`IndexBackend`](crate::backend::IndexBackend). Every journal entry's changes are
//! applied as one atomic change, together with the journal position they bring the index
//! to, so the index always reflects a prefix of the journal and catching up after a crash
//! means replaying the entries after its position.
//!
//! Keys (all integers big-endian, so byte order is numeric order):
//!
//! | prefix | key                      | value                                   |
//! |--------|--------------------------|-----------------------------------------|
//! | `p`    | —                        | next sequence number u64, last leaf [32] |
//! | `r`    | content digest [32]      | reference count u64, size u64            |
//! | `m`    | (records model)          | owned by the [`Projection`]              |
//!
//! The storage layer owns `p` and `r`; a [`Projection`] (the records model) adds its own
//! keys under `m` in the same change. Perfect Merkle nodes and record locations, which
//! have a fixed shape, are kept by the backend beside the keys.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

pub use crate::backend::IndexBatch;
use crate::backend::{FaultKind, IndexBackend, IoFailure, KvIter, TreeUpdate, Value};
use crate::digest::Digest;
use crate::entry::{PayloadKind, ROLE_RELEASE};
use crate::journal::{Location, Record};
use crate::merkle::{MerkleError, NewNode, NodeSource};

const KEY_POSITION: &[u8] = b"p";
const PREFIX_CONTENT_REF: u8 = b'r';
/// Key prefix reserved for the records model's projection.
pub const PREFIX_MODEL: u8 = b'm';

/// Index errors.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The backend's storage failed.
    #[error("index: {0}")]
    Io(#[from] IoFailure),
    /// The backend failed in a way of its own (a database error, a damaged file).
    #[error("index database: {reason}")]
    Backend {
        /// What happened.
        reason: String,
        /// Its kind.
        kind: FaultKind,
    },
    /// A stored value does not have the expected form.
    #[error("index value for {key} is malformed: {reason}")]
    Malformed {
        /// Which key (described).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The projection rejected an entry while applying it.
    #[error("applying entry {seq} to the index: {reason}")]
    Projection {
        /// The entry.
        seq: u64,
        /// Why.
        reason: String,
    },
}

impl IndexError {
    /// What kind of failure it is.
    pub fn kind(&self) -> FaultKind {
        match self {
            IndexError::Io(e) => e.kind(),
            IndexError::Backend { kind, .. } => *kind,
            IndexError::Malformed { .. } => FaultKind::Corrupt,
            IndexError::Projection { .. } => FaultKind::Other,
        }
    }
}

/// How the records model keeps its own derived state in step with the journal.
///
/// `apply` is called for every entry in journal order, live and during rebuild, and must be
/// a pure function of the index state before the entry and the entry itself, so that a
/// rebuilt index equals the live one.
pub trait Projection: Send + Sync {
    /// Adds the entry's effects to `batch` (keys under [`PREFIX_MODEL`] only).
    fn apply(
        &self,
        index: &TenantIndex,
        record: &Record,
        batch: &mut IndexBatch,
    ) -> Result<(), IndexError>;
}

/// A projection that keeps nothing (the bare storage engine).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProjection;

impl Projection for NoProjection {
    fn apply(&self, _: &TenantIndex, _: &Record, _: &mut IndexBatch) -> Result<(), IndexError> {
        Ok(())
    }
}

/// Where an index stands relative to its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Entries `0..next_seq` have been applied.
    pub next_seq: u64,
    /// Leaf hash of entry `next_seq - 1` (zero when nothing is applied).
    pub last_leaf: Digest,
}

/// Reference count and size of one content object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRef {
    /// How many live references the journal holds.
    pub count: u64,
    /// Original size in bytes.
    pub size: u64,
}

/// The index of one tenant, over its backend.
#[derive(Clone)]
pub struct TenantIndex {
    backend: Arc<dyn IndexBackend>,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantIndex")
    }
}

fn digest_key(prefix: u8, d: &Digest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    k[1..].copy_from_slice(d.as_bytes());
    k
}

fn u64_at(v: &[u8], at: usize) -> Option<u64> {
    v.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
}

impl TenantIndex {
    /// The index kept by `backend`.
    pub fn new(backend: Arc<dyn IndexBackend>) -> TenantIndex {
        TenantIndex { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn IndexBackend> {
        &self.backend
    }

    /// A number that tells this tenant's index apart from every other one open in the
    /// process (for caches of decoded values, which also compare the stored bytes).
    pub fn identity(&self) -> usize {
        self.backend.identity()
    }

    /// The value of `key`, as of the last applied entry.
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<Value>, IndexError> {
        self.backend.get(key.as_ref())
    }

    /// Whether `key` has a value.
    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool, IndexError> {
        Ok(self.get(key)?.is_some())
    }

    /// Every key starting with `prefix`, in order, with its value.
    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> KvIter<'_> {
        let prefix = prefix.as_ref().to_vec();
        let end = match prefix_end(&prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.backend.range(Bound::Included(prefix), end)
    }

    /// Every key in `range`, in order, with its value.
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> KvIter<'_> {
        self.backend
            .range(range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// Makes everything applied so far durable (not needed for safety: the journal is the
    /// truth; it shortens the replay after a crash).
    pub fn flush_pending(&self) -> Result<(), IndexError> {
        self.backend.flush()
    }

    /// How many entries the tree state (nodes and locations) holds.
    pub fn file_entries(&self) -> Result<u64, IndexError> {
        self.backend.tree_len()
    }

    /// Cuts the tree state back to the first `n` entries.
    pub fn truncate_files(&self, n: u64) -> Result<(), IndexError> {
        self.backend.truncate_tree(n)
    }

    /// The first place where this index's tree state (nodes and locations of the first
    /// `n` entries) differs from `other`'s, if it does.
    pub fn tree_difference(
        &self,
        other: &TenantIndex,
        n: u64,
    ) -> Result<Option<String>, IndexError> {
        for seq in 0..n {
            let (a, b) = (self.backend.location(seq)?, other.backend.location(seq)?);
            if a != b {
                return Ok(Some(format!(
                    "{}: location of entry {seq}: {a:?} here, {b:?} when rebuilt",
                    self.backend.describe()
                )));
            }
        }
        for seq in 0..n {
            // The nodes completed by leaf `seq`: the leaf and one per trailing one bit.
            let leaves = seq + 1;
            let levels = (seq + 1).trailing_zeros() as u8;
            for level in 0..=levels {
                let index = seq >> level;
                let (a, b) = (
                    self.backend.node(level, index)?,
                    other.backend.node(level, index)?,
                );
                if a != b {
                    return Ok(Some(format!(
                        "{}: Merkle node at level {level}, index {index} (after {leaves} entries) differs from the one rebuilt",
                        self.backend.describe()
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Flushes if enough applied entries wait in memory (single-threaded replays).
    pub fn flush_if_due(&self) -> Result<(), IndexError> {
        self.backend.flush_if_due()
    }

    /// Before a writer queues an entry: lets the backend make room, so that its failure
    /// reaches the caller with nothing written.
    pub fn make_room(&self) -> Result<(), IndexError> {
        self.backend.make_room()
    }

    /// After an applied entry became durable.
    pub fn request_flush(&self) {
        self.backend.entry_durable()
    }

    /// How far the index has applied the journal.
    pub fn position(&self) -> Result<Position, IndexError> {
        match self.get(KEY_POSITION)? {
            None => Ok(Position {
                next_seq: 0,
                last_leaf: Digest::ZERO,
            }),
            Some(v) => {
                let next_seq = u64_at(&v, 0);
                let leaf = v.get(8..40).and_then(Digest::from_slice);
                match (next_seq, leaf, v.len()) {
                    (Some(next_seq), Some(last_leaf), 40) => Ok(Position {
                        next_seq,
                        last_leaf,
                    }),
                    _ => Err(IndexError::Malformed {
                        key: "position".into(),
                        reason: format!("{} bytes", v.len()),
                    }),
                }
            }
        }
    }

    /// Applies one journal record: Merkle nodes, location, content references, the
    /// projection's keys and the new position, all as one atomic change.
    pub fn apply(
        &self,
        record: &Record,
        new_nodes: &[NewNode],
        projection: &dyn Projection,
    ) -> Result<(), IndexError> {
        let mut batch = IndexBatch::default();
        let mut deltas: BTreeMap<Digest, (i64, u64)> = BTreeMap::new();
        for p in &record.entry.payloads {
            match p.kind {
                PayloadKind::Content => {
                    let d = deltas.entry(p.digest).or_insert((0, p.size));
                    d.0 += 1;
                }
                PayloadKind::Reference if p.role == ROLE_RELEASE => {
                    let d = deltas.entry(p.digest).or_insert((0, p.size));
                    d.0 -= 1;
                }
                _ => {}
            }
        }
        for (digest, (delta, size)) in deltas {
            let current = self.content_ref(&digest)?;
            let count = current.map_or(0, |c| c.count) as i64 + delta;
            let key = digest_key(PREFIX_CONTENT_REF, &digest);
            if count <= 0 {
                batch.remove(&key[..]);
            } else {
                let size = current.map_or(size, |c| c.size);
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&(count as u64).to_be_bytes());
                v[8..].copy_from_slice(&size.to_be_bytes());
                batch.insert(&key[..], &v[..]);
            }
        }
        projection.apply(self, record, &mut batch)?;
        let mut pos = [0u8; 40];
        pos[..8].copy_from_slice(&(record.entry.seq + 1).to_be_bytes());
        pos[8..].copy_from_slice(record.leaf.as_bytes());
        batch.insert(KEY_POSITION, &pos[..]);
        self.backend.apply(
            batch,
            TreeUpdate {
                seq: record.entry.seq,
                location: record.location,
                nodes: new_nodes,
            },
        )
    }

    /// Location of entry `seq`, if applied.
    pub fn location(&self, seq: u64) -> Result<Option<Location>, IndexError> {
        if seq >= self.position()?.next_seq {
            return Ok(None);
        }
        self.backend.location(seq)
    }

    /// Reference count of a content object (`None` when no live entry refers to it).
    pub fn content_ref(&self, digest: &Digest) -> Result<Option<ContentRef>, IndexError> {
        match self.get(digest_key(PREFIX_CONTENT_REF, digest))? {
            None => Ok(None),
            Some(v) => match (u64_at(&v, 0), u64_at(&v, 8), v.len()) {
                (Some(count), Some(size), 16) => Ok(Some(ContentRef { count, size })),
                _ => Err(IndexError::Malformed {
                    key: format!("content reference {digest}"),
                    reason: format!("{} bytes", v.len()),
                }),
            },
        }
    }

    /// All referenced content objects, in digest order, streaming.
    pub fn content_refs(
        &self,
    ) -> impl Iterator<Item = Result<(Digest, ContentRef), IndexError>> + '_ {
        self.scan_prefix([PREFIX_CONTENT_REF]).map(|kv| {
            let (k, v) = kv?;
            let digest = Digest::from_slice(&k[1..]).ok_or_else(|| IndexError::Malformed {
                key: "content reference".into(),
                reason: format!("key of {} bytes", k.len()),
            })?;
            match (u64_at(&v, 0), u64_at(&v, 8)) {
                (Some(count), Some(size)) => Ok((digest, ContentRef { count, size })),
                _ => Err(IndexError::Malformed {
                    key: format!("content reference {digest}"),
                    reason: format!("{} bytes", v.len()),
                }),
            }
        })
    }

    /// Every key and value, in order (for comparing a live index with a rebuilt one).
    pub fn iter_all(&self) -> KvIter<'_> {
        self.range::<std::ops::RangeFull>(..)
    }

    /// Removes everything (before a rebuild), without reading the old index.
    pub fn clear(&self) -> Result<(), IndexError> {
        self.backend.reset()
    }
}

/// The first key after every key that starts with `prefix` (`None`: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl TenantIndex {
    /// The perfect nodes at `positions` (level, index), in that order, read together;
    /// a node not stored is [`MerkleError::MissingNode`].
    pub fn perfect_nodes(&self, positions: &[(u8, u64)]) -> Result<Vec<Digest>, MerkleError> {
        let found = self
            .backend
            .nodes(positions)
            .map_err(|e| MerkleError::Source(e.to_string()))?;
        positions
            .iter()
            .zip(found)
            .map(|(&(level, index), node)| node.ok_or(MerkleError::MissingNode { level, index }))
            .collect()
    }
}

impl NodeSource for TenantIndex {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        match self.backend.node(level, index) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(MerkleError::MissingNode { level, index }),
            Err(e) => Err(MerkleError::Source(e.to_string())),
        }
    }
}
