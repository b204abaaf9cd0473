//! The sled index: state derived from the journals, rebuildable at any time.
//!
//! One sled tree per tenant. Every journal entry is applied as one atomic sled batch that
//! also records the journal position it brings the index to, so after a crash the index is
//! at some position p and catching up means replaying entries p.. from the journal.
//!
//! Keys of a tenant tree (all integers big-endian, so sled's byte order is numeric order):
//!
//! | prefix | key                      | value                                   |
//! |--------|--------------------------|-----------------------------------------|
//! | `p`    | —                        | next sequence number u64, last leaf [32] |
//! | `n`    | level u8, index u64      | perfect Merkle node hash [32]            |
//! | `l`    | seq u64                  | record location (segment u64, offset u64)|
//! | `r`    | content digest [32]      | reference count u64, size u64            |
//! | `m`    | (records model)          | owned by the [`Projection`]              |
//!
//! The storage layer owns `p`, `n`, `l` and `r`; a [`Projection`] (the records model) adds
//! its own keys under `m` in the same batch.

use std::collections::BTreeMap;
use std::path::Path;

use crate::digest::Digest;
use crate::entry::PayloadKind;
use crate::journal::{Location, Record};
use crate::merkle::{MerkleError, NewNode, NodeSource};

/// Payload role that releases one reference to a content object (destruction uses it).
pub const ROLE_RELEASE: &str = "release";
/// Payload role of a reference payload naming a metadata record that destruction removed.
pub const ROLE_DESTROYED: &str = "destroyed";

const KEY_POSITION: &[u8] = b"p";
const PREFIX_NODE: u8 = b'n';
const PREFIX_LOCATION: u8 = b'l';
const PREFIX_CONTENT_REF: u8 = b'r';
/// Key prefix reserved for the records model's projection.
pub const PREFIX_MODEL: u8 = b'm';

/// Index errors.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled reported an error.
    #[error("index database: {0}")]
    Sled(#[from] sled::Error),
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
        batch: &mut sled::Batch,
    ) -> Result<(), IndexError>;
}

/// A projection that keeps nothing (the bare storage engine).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProjection;

impl Projection for NoProjection {
    fn apply(&self, _: &TenantIndex, _: &Record, _: &mut sled::Batch) -> Result<(), IndexError> {
        Ok(())
    }
}

/// The index database of a store.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

fn tree_name(tenant: &str) -> String {
    format!("tenant/{tenant}")
}

fn packs_tree_name(tenant: &str) -> String {
    format!("packs/{tenant}")
}

impl Index {
    /// Opens (or creates) the index database in `dir`.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .flush_every_ms(Some(500));
        // sled releases its file lock from a background thread shortly after the last
        // handle is dropped, so reopening in the same process can find it still held for a
        // moment. Other processes are kept out by the store's own lock, taken before this.
        let mut waited = 0;
        loop {
            match config.open() {
                Ok(db) => return Ok(Index { db }),
                // sled 0.34 reports its lock as ErrorKind::Other with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && waited < 100 =>
                {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens a throw-away index (for verification by rebuild and for tests).
    pub fn temporary() -> Result<Index, IndexError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(32 << 20)
            .open()?;
        Ok(Index { db })
    }

    /// The index tree of one tenant.
    pub fn tenant(&self, tenant: &str) -> Result<TenantIndex, IndexError> {
        Ok(TenantIndex {
            tree: self.db.open_tree(tree_name(tenant))?,
        })
    }

    /// Where a tenant's content store keeps the location of packed objects
    /// ([`crate::pack`]): derived from the pack files, as the tenant tree is from the journal.
    pub fn packs_tree(&self, tenant: &str) -> Result<sled::Tree, IndexError> {
        Ok(self.db.open_tree(packs_tree_name(tenant))?)
    }

    /// Removes a tenant's index trees entirely (before creating a tenant of that name).
    pub fn clear_tenant(&self, tenant: &str) -> Result<(), IndexError> {
        self.db.drop_tree(tree_name(tenant))?;
        self.db.drop_tree(packs_tree_name(tenant))?;
        Ok(())
    }

    /// Flushes sled's buffers to disk. Not needed for safety (the journal is the truth) but
    /// shortens the replay after a crash.
    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
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

/// The index tree of one tenant.
#[derive(Clone)]
pub struct TenantIndex {
    tree: sled::Tree,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantIndex")
    }
}

fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = PREFIX_NODE;
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
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
    /// The raw sled tree (for the records model's reads).
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// How far the index has applied the journal.
    pub fn position(&self) -> Result<Position, IndexError> {
        match self.tree.get(KEY_POSITION)? {
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
    /// projection's keys and the new position, all in one atomic batch.
    pub fn apply(
        &self,
        record: &Record,
        new_nodes: &[NewNode],
        projection: &dyn Projection,
    ) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for n in new_nodes {
            batch.insert(&node_key(n.level, n.index)[..], &n.hash.as_bytes()[..]);
        }
        batch.insert(
            &seq_key(PREFIX_LOCATION, record.entry.seq)[..],
            &record.location.to_bytes()[..],
        );
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
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Location of entry `seq`, if applied.
    pub fn location(&self, seq: u64) -> Result<Option<Location>, IndexError> {
        match self.tree.get(seq_key(PREFIX_LOCATION, seq))? {
            None => Ok(None),
            Some(v) => Location::from_bytes(&v)
                .map(Some)
                .ok_or_else(|| IndexError::Malformed {
                    key: format!("location of entry {seq}"),
                    reason: format!("{} bytes", v.len()),
                }),
        }
    }

    /// Reference count of a content object (`None` when no live entry refers to it).
    pub fn content_ref(&self, digest: &Digest) -> Result<Option<ContentRef>, IndexError> {
        match self.tree.get(digest_key(PREFIX_CONTENT_REF, digest))? {
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
        self.tree.scan_prefix([PREFIX_CONTENT_REF]).map(|kv| {
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
    pub fn iter_all(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), IndexError>> {
        self.tree.iter().map(|kv| kv.map_err(IndexError::from))
    }

    /// Removes everything (before a rebuild).
    pub fn clear(&self) -> Result<(), IndexError> {
        self.tree.clear()?;
        Ok(())
    }
}

impl NodeSource for TenantIndex {
    fn perfect_node(&self, level: u8, index: u64) -> Result<Digest, MerkleError> {
        match self.tree.get(node_key(level, index)) {
            Ok(Some(v)) => Digest::from_slice(&v).ok_or(MerkleError::MissingNode { level, index }),
            Ok(None) => Err(MerkleError::MissingNode { level, index }),
            Err(e) => Err(MerkleError::Source(e.to_string())),
        }
    }
}
