//! The embedded backend's small blobs: files under a directory, replaced atomically.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::backend::meta::check_name;
use crate::backend::{MetaError, MetaStore};
use crate::embedded::fsutil::{self, IoContext};

/// Blobs as files under `root` (a tenant's directory, or the data directory).
#[derive(Debug, Clone)]
pub struct FileMeta {
    root: PathBuf,
    read_only: bool,
}

impl FileMeta {
    /// Blobs under `root`.
    pub fn new(root: &Path) -> FileMeta {
        FileMeta {
            root: root.to_path_buf(),
            read_only: false,
        }
    }

    /// Blobs under `root`, readable only: puts and removals are refused.
    pub fn read_only(root: &Path) -> FileMeta {
        FileMeta {
            root: root.to_path_buf(),
            read_only: true,
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, MetaError> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

impl MetaStore for FileMeta {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let path = self.path(name)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fsutil::failure("read", &path, e).into()),
        }
    }

    fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name)?;
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fsutil::failure("open", &path, e).into()),
        };
        let meta = file.metadata().at("stat", &path)?;
        let refused = |reason: String| MetaError::Refused {
            place: path.display().to_string(),
            reason,
        };
        if !meta.is_file() {
            return Err(refused("is not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(refused(format!(
                "holds a secret but has mode {mode:04o}: group or others may access it (chmod 600)"
            )));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at("read", &path)?;
        Ok(Some(bytes))
    }

    fn put(&self, name: &str, bytes: &[u8], secret: bool) -> Result<(), MetaError> {
        let path = self.path(name)?;
        if self.read_only {
            return Err(fsutil::read_only("write", &path).into());
        }
        if let Some(parent) = path.parent() {
            fsutil::create_dir_all_durable(parent)?;
        }
        let mode = if secret { 0o600 } else { 0o644 };
        fsutil::write_file_atomic(&path, bytes, mode)?;
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<bool, MetaError> {
        let path = self.path(name)?;
        if self.read_only {
            return Err(fsutil::read_only("remove", &path).into());
        }
        let existed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(fsutil::failure("remove", &path, e).into()),
        };
        if let Some(parent) = path.parent() {
            // Flushed even when already gone: an earlier removal may not have been.
            match fsutil::fsync_dir(parent) {
                Ok(()) => {}
                Err(e) if e.source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(existed)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, MetaError> {
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            let trimmed = prefix.strip_suffix('/').ok_or(MetaError::InvalidName {
                name: prefix.chars().take(120).collect(),
                reason: "a prefix to list must end with '/'",
            })?;
            self.path(trimmed)?
        };
        let items = match fs::read_dir(&dir) {
            Ok(items) => items,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(fsutil::failure("list", &dir, e).into()),
        };
        let mut out = Vec::new();
        for item in items {
            let item = item.at("list", &dir)?;
            let name = item.file_name().to_string_lossy().into_owned();
            let full = format!("{prefix}{name}");
            if name.starts_with('.') || check_name(&full).is_err() {
                continue;
            }
            if item.file_type().at("stat", &item.path())?.is_file() {
                out.push(full);
            }
        }
        out.sort();
        Ok(out)
    }

    fn describe(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}
