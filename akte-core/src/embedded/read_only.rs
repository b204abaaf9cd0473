//! A data directory opened read-only: for `akte verify` beside a running akted, and on a
//! copy that must stay exactly as it is.
//!
//! Opening for writing recovers (cuts a torn journal or pack tail, removes what a crash
//! left in `tmp/`, replays the index) and takes the directory's lock. None of that may
//! happen here: nothing in the data directory is created, changed or locked. Instead
//!
//! - the journal is read as far as its records are complete ([`Journal::open_read_only`]);
//!   a torn tail is reported, never cut, and what a running akted appends meanwhile is
//!   followed;
//! - the packs are read into a scratch location index in the system's temporary
//!   directory ([`ContentStore::open_read_only`]), caught up when an object is not found;
//! - each tenant's index is an empty scratch one: the engine does not replay into it
//!   ([`Backend::read_only`]), verification rebuilds its own from the journal;
//! - blobs are read, never written ([`FileMeta::read_only`]).
//!
//! The data directory's own index (`index/<tenant>/`, redb databases that akted
//! holds exclusively) is not read at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{
    Backend, BackendError, FaultKind, IndexBackend, MetaStore, TenantParts, TenantSeed,
};
use crate::embedded::content::ContentStore;
use crate::embedded::fsutil::IoContext;
use crate::embedded::journal::Journal;
use crate::embedded::meta::FileMeta;
use crate::embedded::redb_index::{Flusher, RedbIndex};
use crate::embedded::{read_format, EmbeddedOptions, STORE_FORMAT, STORE_FORMAT_1};

/// Checks that `dir` is a data directory this build reads, creating and changing nothing:
/// it exists, is a directory, and holds a `FORMAT` file of a version this build reads.
pub fn check_data_dir(dir: &Path) -> Result<(), BackendError> {
    let not_a_store = |reason: &str| BackendError::NotAStore {
        place: dir.display().to_string(),
        reason: reason.to_owned(),
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(not_a_store("it is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_a_store("it does not exist"))
        }
        Err(e) => return Err(crate::embedded::fsutil::failure("stat", dir, e).into()),
    }
    match read_format(dir)? {
        Some(f) if f == STORE_FORMAT || f == STORE_FORMAT_1 => Ok(()),
        Some(found) => Err(BackendError::UnsupportedFormat {
            place: dir.display().to_string(),
            found: found.trim_end().chars().take(80).collect(),
            expected: STORE_FORMAT.trim_end().into(),
        }),
        None => Err(not_a_store("it has no FORMAT file")),
    }
}

/// Opens the data directory `dir` read-only (see the module documentation). A path that
/// is not a data directory is refused with [`BackendError::NotAStore`], and nothing is
/// created.
pub fn open_read_only(dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(Arc::new(ReadOnlyBackend::open(
        dir,
        EmbeddedOptions::default(),
    )?))
}

/// A data directory opened read-only; see the module documentation.
pub struct ReadOnlyBackend {
    dir: PathBuf,
    options: EmbeddedOptions,
    flusher: Arc<Flusher>,
    install: Arc<FileMeta>,
}

impl std::fmt::Debug for ReadOnlyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyBackend")
            .field("dir", &self.dir)
            .finish()
    }
}

impl ReadOnlyBackend {
    /// Opens `dir` read-only with `options` (only the reading parts of them matter).
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<ReadOnlyBackend, BackendError> {
        check_data_dir(dir)?;
        Ok(ReadOnlyBackend {
            dir: dir.to_path_buf(),
            options,
            flusher: Flusher::start(),
            install: Arc::new(FileMeta::read_only(dir)),
        })
    }

    fn tenant_error(id: &str, e: impl std::fmt::Display, kind: FaultKind) -> BackendError {
        BackendError::Tenant {
            tenant: id.to_owned(),
            reason: e.to_string(),
            kind,
        }
    }

    fn scratch(&self, id: &str) -> Result<RedbIndex, BackendError> {
        RedbIndex::scratch(self.flusher.clone()).map_err(|e| BackendError::Tenant {
            tenant: id.to_owned(),
            reason: format!("a scratch index: {e}"),
            kind: e.kind(),
        })
    }
}

impl Backend for ReadOnlyBackend {
    fn describe(&self) -> String {
        format!("data directory {} (read-only)", self.dir.display())
    }

    fn tenant_ids(&self) -> Result<Vec<String>, BackendError> {
        let tenants_dir = self.dir.join("tenants");
        let mut ids = Vec::new();
        for item in fs::read_dir(&tenants_dir).at("list", &tenants_dir)? {
            let item = item.at("list", &tenants_dir)?;
            let name = item.file_name().to_string_lossy().into_owned();
            // A tenant being created (or whose creation a crash interrupted) is not one yet.
            if !name.starts_with('.') {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn create_tenant(&self, _id: &str, _seed: &TenantSeed) -> Result<TenantParts, BackendError> {
        Err(BackendError::ReadOnly {
            place: self.dir.display().to_string(),
        })
    }

    fn open_tenant(&self, id: &str) -> Result<TenantParts, BackendError> {
        let dir = self.dir.join("tenants").join(id);
        if !dir.is_dir() {
            return Err(BackendError::UnknownTenant(id.to_owned()));
        }
        let journal = Journal::open_read_only(&dir.join("journal"), self.options.journal.clone())
            .map_err(|e| Self::tenant_error(id, &e, e.kind()))?;
        let index = Arc::new(self.scratch(id)?);
        let packs = index.packs();
        let content =
            ContentStore::open_read_only(&dir.join("content"), self.options.content, packs)
                .map_err(|e| Self::tenant_error(id, &e, e.kind()))?;
        Ok(TenantParts {
            journal: Arc::new(journal),
            index,
            content: Arc::new(content),
            meta: Arc::new(FileMeta::read_only(&dir)),
        })
    }

    fn scratch_index(&self) -> Result<Arc<dyn IndexBackend>, BackendError> {
        Ok(Arc::new(self.scratch("")?))
    }

    fn installation_meta(&self) -> Arc<dyn MetaStore> {
        self.install.clone()
    }

    fn read_only(&self) -> bool {
        true
    }
}
