//! Verification: no destroyed document may remain in a full-text index.
//!
//! The destroyed objects are taken from the tenant's signed destruction records (blobs,
//! readable in a read-only opening), not from the live index, so the check also runs
//! beside akted on a data directory opened read-only. Only destructions the index has
//! reached (the journal position of its last commit) count.

use std::collections::HashSet;
use std::path::Path;

use akte_core::records::TenantRecords;
use uuid::Uuid;

use crate::index::TextIndex;
use crate::service::dir_of;
use crate::FulltextError;

/// What the check found in one tenant's index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether the tenant has a full-text index at all.
    pub present: bool,
    /// Documents indexed.
    pub documents: u64,
    /// Destroyed documents still indexed.
    pub destroyed_indexed: Vec<Uuid>,
}

/// Checks `tenant`'s index under `root` against its destruction records.
pub fn check(records: &TenantRecords, root: &Path) -> Result<Report, FulltextError> {
    let dir = dir_of(root, records.tenant().id());
    let Some(index) = TextIndex::open_read_only(&dir)? else {
        return Ok(Report::default());
    };
    // Indexing follows the journal: a destruction the index has not reached yet is still
    // to come, not a problem (verify right after a destruction found it so).
    let position = index.position()?;
    let mut destroyed = HashSet::new();
    for run in records.list_destruction_records()? {
        let (rec, _) = records.destruction_record(run)?;
        for f in rec.files.into_iter().filter(|f| f.seq < position) {
            destroyed.insert(f.file);
            destroyed.extend(f.objects.iter().map(|o| o.id));
        }
    }
    let ids = index.all_ids()?;
    let mut bad: Vec<Uuid> = ids
        .iter()
        .filter(|id| destroyed.contains(id))
        .copied()
        .collect();
    bad.sort();
    Ok(Report {
        present: true,
        documents: ids.len() as u64,
        destroyed_indexed: bad,
    })
}
