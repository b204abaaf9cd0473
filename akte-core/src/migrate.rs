//! Copying a store to another backend (`akte migrate`, `akte export-store`): every
//! tenant with its blobs, content and journal, unchanged (the same entries, times, chain
//! links and signatures), then checked on both sides.
//!
//! The copy is resumable: a tenant that exists on the target continues where its journal
//! ends (after checking that it is a prefix of the source's), content the target holds is
//! skipped, and blobs are written again. Content is copied before the entries that name
//! it, so the target never holds an entry without its content. The target's index is
//! built by appending, as the source's was.

use std::sync::Arc;

use crate::backend::TenantSeed;
use crate::digest::Digest;
use crate::entry::{Attachment, Entry};
use crate::store::{Store, StoreError, Tenant, ORIGIN, SIGNING_KEY, VERIFIER_KEY};

/// Every prefix under which akte keeps a tenant's blobs (see [`crate::backend::meta`]).
pub const META_PREFIXES: &[&str] = &[
    "",
    "keys/",
    "checkpoints/",
    "pending-destruction/",
    "destruction-records/",
];

/// Entries appended per flush or commit.
const BATCH: usize = 512;

/// What was copied of one tenant, and what both sides hold after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCopy {
    /// The tenant.
    pub tenant: String,
    /// Entries on both sides after the copy.
    pub entries: u64,
    /// Entries copied now (the rest were there from an earlier run).
    pub copied_entries: u64,
    /// Content objects on both sides.
    pub objects: u64,
    /// Content objects copied now.
    pub copied_objects: u64,
    /// Bytes of content copied now.
    pub copied_bytes: u64,
    /// Blobs written.
    pub blobs: u64,
    /// The Merkle root of all entries, equal on both sides.
    pub root: Digest,
}

/// Errors of a copy.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading the source or writing the target failed.
    #[error("tenant {tenant}: {source}")]
    Store {
        /// The tenant being copied.
        tenant: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The target holds a tenant of that id that is not (a prefix of) the source's.
    #[error("tenant {tenant}: the target holds a different tenant of that id: {reason}")]
    Diverged {
        /// The tenant.
        tenant: String,
        /// How they differ.
        reason: String,
    },
    /// After the copy, the two sides differ.
    #[error("tenant {tenant}: after the copy, {what} differs: source {source_value}, target {target_value}")]
    Mismatch {
        /// The tenant.
        tenant: String,
        /// What differs.
        what: String,
        /// The source's.
        source_value: String,
        /// The target's.
        target_value: String,
    },
}

/// Copies every tenant of `from` to `to`; `progress` hears of each tenant as it is done.
pub fn copy_store(
    from: &Store,
    to: &Store,
    progress: &mut dyn FnMut(&TenantCopy),
) -> Result<Vec<TenantCopy>, MigrateError> {
    let mut tenants = from.tenants();
    tenants.sort_by(|a, b| a.id().cmp(b.id()));
    let mut out = Vec::new();
    for src in tenants {
        let copy = copy_tenant(&src, to)?;
        progress(&copy);
        out.push(copy);
    }
    Ok(out)
}

fn store_err(tenant: &str) -> impl Fn(StoreError) -> MigrateError + '_ {
    move |source| MigrateError::Store {
        tenant: tenant.to_owned(),
        source,
    }
}

/// The source tenant's blobs, with whether each is secret.
fn blobs(src: &Tenant) -> Result<Vec<(String, Vec<u8>, bool)>, StoreError> {
    let mut out = Vec::new();
    for prefix in META_PREFIXES {
        for name in src.meta().list(prefix)? {
            let secret = name == SIGNING_KEY;
            let bytes = if secret {
                src.meta().get_secret(&name)?
            } else {
                src.meta().get(&name)?
            };
            if let Some(bytes) = bytes {
                out.push((name, bytes, secret));
            }
        }
    }
    Ok(out)
}

/// Copies one tenant.
pub fn copy_tenant(src: &Tenant, to: &Store) -> Result<TenantCopy, MigrateError> {
    let id = src.id().to_owned();
    let err = store_err(&id);
    let blobs = blobs(src).map_err(&err)?;
    let dst: Arc<Tenant> = match to.tenant(&id) {
        Ok(t) => t,
        Err(StoreError::UnknownTenant(_)) => {
            let seed = TenantSeed {
                meta: blobs
                    .iter()
                    .filter(|(n, _, _)| [ORIGIN, SIGNING_KEY, VERIFIER_KEY].contains(&n.as_str()))
                    .cloned()
                    .collect(),
            };
            to.create_tenant_seeded(&id, &seed).map_err(&err)?
        }
        Err(e) => return Err(err(e)),
    };
    if dst.origin() != src.origin() || dst.verifier() != src.verifier() {
        return Err(MigrateError::Diverged {
            tenant: id.clone(),
            reason: "its checkpoint origin or verifier key differs".into(),
        });
    }

    // Content first: no entry on the target ever lacks its content.
    let mut objects = 0u64;
    let mut copied_objects = 0u64;
    let mut copied_bytes = 0u64;
    for digest in src.content().list() {
        let digest = digest.map_err(|e| err(e.into()))?;
        objects += 1;
        if dst.content().contains(&digest).map_err(|e| err(e.into()))? {
            continue;
        }
        let mut reader = src.content().get(&digest).map_err(|e| err(e.into()))?;
        let size = reader.size();
        dst.content()
            .put(&mut reader, Some(digest), Some(size))
            .map_err(|e| err(e.into()))?;
        copied_objects += 1;
        copied_bytes += size;
    }

    // The journal, from where the target's ends.
    let end = src.size().map_err(&err)?;
    let start = dst.size().map_err(&err)?;
    if start > end {
        return Err(MigrateError::Diverged {
            tenant: id.clone(),
            reason: format!("the target holds {start} entries, the source {end}"),
        });
    }
    if start > 0 && src.root(start).map_err(&err)? != dst.root(start).map_err(&err)? {
        return Err(MigrateError::Diverged {
            tenant: id.clone(),
            reason: format!("their first {start} entries differ"),
        });
    }
    let from = match start {
        0 => None,
        n => src.index().location(n - 1).map_err(|e| err(e.into()))?,
    };
    let mut batch: Vec<(Entry, Vec<Attachment>)> = Vec::with_capacity(BATCH);
    for rec in src.journal().iter(from, end).map_err(|e| err(e.into()))? {
        let rec = rec.map_err(|e| err(e.into()))?;
        if rec.entry.seq < start {
            continue;
        }
        batch.push((rec.entry, rec.attachments));
        if batch.len() == BATCH {
            dst.append_sealed(std::mem::take(&mut batch))
                .map_err(&err)?;
        }
    }
    dst.append_sealed(batch).map_err(&err)?;

    // Blobs last: checkpoints name sizes the target now holds.
    for (name, bytes, secret) in &blobs {
        dst.meta()
            .put(name, bytes, *secret)
            .map_err(|e| err(e.into()))?;
    }

    // Both sides agree.
    let mismatch = |what: &str, s: String, t: String| MigrateError::Mismatch {
        tenant: id.clone(),
        what: what.into(),
        source_value: s,
        target_value: t,
    };
    let dst_end = dst.size().map_err(&err)?;
    if dst_end != end {
        return Err(mismatch(
            "the number of entries",
            end.to_string(),
            dst_end.to_string(),
        ));
    }
    let root = src.root(end).map_err(&err)?;
    let dst_root = dst.root(end).map_err(&err)?;
    if root != dst_root {
        return Err(mismatch(
            "the Merkle root",
            root.to_string(),
            dst_root.to_string(),
        ));
    }
    for digest in src.content().list() {
        let digest = digest.map_err(|e| err(e.into()))?;
        let s = src.content().stat(&digest).map_err(|e| err(e.into()))?;
        match dst.content().stat(&digest) {
            Ok(t) if t.size == s.size => {}
            Ok(t) => {
                return Err(mismatch(
                    &format!("the size of content {digest}"),
                    s.size.to_string(),
                    t.size.to_string(),
                ))
            }
            Err(e) => {
                return Err(mismatch(
                    &format!("content {digest}"),
                    "stored".into(),
                    e.to_string(),
                ))
            }
        }
    }
    Ok(TenantCopy {
        tenant: id.clone(),
        entries: end,
        copied_entries: end - start,
        objects,
        copied_objects,
        copied_bytes,
        blobs: blobs.len() as u64,
        root,
    })
}
